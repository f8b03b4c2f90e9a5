/* clgqa eval CONFIG.yaml --checkpoint FILE [--predictions FILE.csv]
 *            [--set key=value ...] [--device SPEC] */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clgqa/checkpoint.h"
#include "clgqa/config.h"
#include "clgqa/dataset.h"
#include "clgqa/model.h"
#include "clgqa/runtime.h"
#include "clgqa/train.h"
#include "commands.h"

#define MAX_SETS 64

static int usage(void) {
    fprintf(stderr, "usage: clgqa eval CONFIG.yaml --checkpoint FILE [--predictions FILE.csv] "
                    "[--set key=value ...] [--device SPEC]\n");
    return 2;
}

static int evaluate(const clgqa_config *cfg, const char *device, const char *checkpoint,
                    const char *predictions_path) {
    clgqa_runtime *rt = NULL;
    clgqa_dataset *ds = NULL;
    clgqa_model *model = NULL;
    FILE *predictions = NULL;
    clgqa_eval_result result;
    int exit_status = 1;
    if (clgqa_runtime_create(device ? device : cfg->device, &rt) != CLGQA_OK ||
        clgqa_dataset_open(cfg, CLGQA_SPLIT_TEST, 0, &ds) != CLGQA_OK ||
        clgqa_model_create(rt, cfg, cfg->batch_size, &model) != CLGQA_OK ||
        clgqa_checkpoint_load_model(model, checkpoint) != CLGQA_OK) {
        exit_status = clgqa_cli_error(NULL);
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
    const char *config_path = NULL, *device = NULL, *checkpoint = NULL, *predictions = NULL;
    const char *sets[MAX_SETS];
    int set_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--set") && has_value) {
            if (set_count == MAX_SETS) {
                fprintf(stderr, "clgqa eval: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            sets[set_count++] = argv[++i];
        } else if (!strcmp(arg, "--device") && has_value) {
            device = argv[++i];
        } else if (!strcmp(arg, "--checkpoint") && has_value) {
            checkpoint = argv[++i];
        } else if (!strcmp(arg, "--predictions") && has_value) {
            predictions = argv[++i];
        } else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage();
            return 0;
        } else if (arg[0] == '-' || config_path) {
            fprintf(stderr, "clgqa eval: unexpected argument '%s'\n", arg);
            return usage();
        } else {
            config_path = arg;
        }
    }
    if (!config_path || !checkpoint)
        return usage();
    clgqa_config cfg;
    if (clgqa_run_config(config_path, sets, set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    return evaluate(&cfg, device, checkpoint, predictions);
}
