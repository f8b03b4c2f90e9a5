/* clgqa eval CONFIG.yaml --checkpoint FILE [--predictions FILE.csv]
 *            [--allow-nonfinite] [--set key=value ...] [--device SPEC]
 * Only reads the run folder: it takes no lock, so it can evaluate a
 * checkpoint while the run goes on. Weights that are not all finite (a
 * diverged run's) are refused, naming the tensor, unless --allow-nonfinite. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clgqa/checkpoint.h"
#include "commands.h"
#include "config_args.h"
#include "train_internal.h"

static const char usage[] = "clgqa eval CONFIG.yaml --checkpoint FILE [--predictions FILE.csv] "
                            "[--allow-nonfinite] [--set key=value ...] [--device SPEC]";

static int evaluate(const clgqa_config *cfg, const char *device, const char *checkpoint,
                    const char *predictions_path, int allow_nonfinite) {
    clgqa_runtime *rt = NULL;
    clgqa_dataset *ds = NULL;
    clgqa_model *model = NULL;
    FILE *predictions = NULL;
    clgqa_eval_result result;
    int exit_status = 1;
    clgqa_dataset_options data;
    clgqa_model_desc desc;
    clgqa_config_dataset_options(cfg, &data);
    clgqa_config_model_desc(cfg, &desc);
    if (clgqa_cli_open_runtime(cfg, NULL, device, &rt) != 0 ||
        clgqa_dataset_open(&data, CLGQA_SPLIT_TEST, &ds) != CLGQA_OK ||
        clgqa_model_create(rt, &desc, cfg->batch_size, &model) != CLGQA_OK ||
        clgqa_checkpoint_load_model(model, checkpoint, stderr) != CLGQA_OK) {
        exit_status = clgqa_cli_error(NULL);
        goto done;
    }
    if (!allow_nonfinite && clgqa_model_check_finite(model) != CLGQA_OK) {
        fprintf(stderr, "clgqa: %s: %s; --allow-nonfinite evaluates it anyway\n", checkpoint,
                clgqa_error_message());
        goto done;
    }
    if (predictions_path && !(predictions = fopen(predictions_path, "w"))) {
        fprintf(stderr, "clgqa: cannot write %s: %s\n", predictions_path, strerror(errno));
        goto done;
    }
    if (clgqa_evaluate(rt, model, ds, cfg, cfg->max_eval_batches, predictions, &result) != CLGQA_OK) {
        exit_status = clgqa_cli_error(NULL);
        goto done;
    }
    if (predictions && fclose(predictions) != 0) {
        predictions = NULL;
        fprintf(stderr, "clgqa: cannot write %s: %s\n", predictions_path, strerror(errno));
        goto done;
    }
    predictions = NULL;
    printf("test loss: %.4f\ntest accuracy: %.2f%% (%ld images)\n", result.loss,
           100.0 * result.accuracy, result.samples);
    if (clgqa_model_get_dims(model)->num_classes > 5)
        printf("test top-5 accuracy: %.2f%%\n", 100.0 * result.top5);
    exit_status = 0;
done:
    if (predictions)
        fclose(predictions);
    clgqa_model_destroy(model);
    clgqa_dataset_close(ds);
    clgqa_runtime_destroy(rt);
    return exit_status;
}

int clgqa_cmd_eval(int argc, char **argv) {
    const char *checkpoint = NULL, *predictions = NULL;
    int allow_nonfinite = 0;
    const cli_option flags[] = {{"--checkpoint", &checkpoint, "a checkpoint file"},
                                {"--predictions", &predictions, "a CSV file to write"}};
    const cli_switch switches[] = {{"--allow-nonfinite", &allow_nonfinite}};
    cli_config_args args;
    int exit_status = clgqa_cli_parse_config_args(usage, argc, argv, flags, 2, switches, 1, 0, &args);
    if (exit_status >= 0)
        return exit_status;
    if (!checkpoint)
        return clgqa_cli_usage(usage);
    clgqa_config cfg;
    if (clgqa_run_config(args.config_path, args.sets, args.set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    return evaluate(&cfg, args.device, checkpoint, predictions, allow_nonfinite);
}
