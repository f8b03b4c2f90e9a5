/* clgqa train [CONFIG.yaml] [--set key=value ...] [--device SPEC] [--resume DIR]
 * Without CONFIG.yaml the embedded demo config (configs/demo.yaml) is trained. */
#include <stdio.h>

#include "clgqa/config.h"
#include "clgqa/runtime.h"
#include "clgqa/train.h"
#include "commands.h"
#include "config_args.h"

static const char usage[] =
    "clgqa train [CONFIG.yaml] [--set key=value ...] [--device SPEC] [--resume DIR]\n"
    "       (without CONFIG.yaml: the embedded demo, configs/demo.yaml: a small KDGQA ViT on Fashion-MNIST)";

int clgqa_cmd_train(int argc, char **argv) {
    const char *resume = NULL;
    const cli_option flags[] = {{"--resume", &resume}};
    cli_config_args args;
    int exit_status = clgqa_cli_parse_config_args(usage, argc, argv, flags, 1, 1, &args);
    if (exit_status >= 0)
        return exit_status;

    clgqa_config cfg;
    if (clgqa_run_config(args.config_path, args.sets, args.set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    clgqa_runtime *rt;
    if (clgqa_cli_open_runtime(&cfg, args.device, &rt) != 0)
        return clgqa_cli_error(NULL);
    fprintf(stderr, "clgqa train: %s, %s on %s, device %s\n", cfg.dataset,
            clgqa_scheme_name(cfg.att_scheme), cfg.out_dir, rt->device_name);

    clgqa_train_options options = {0};
    options.resume_dir = resume;
    clgqa_train_result result;
    clgqa_status status = clgqa_train(rt, &cfg, &options, &result);
    clgqa_runtime_destroy(rt);
    if (status != CLGQA_OK)
        return clgqa_cli_error(NULL);
    printf("test accuracy: %.1f%% (test loss %.4f, train accuracy %.1f%%, epochs %d, %.0f img/s)\n",
           100.0 * result.last.test_acc, result.last.test_loss, 100.0 * result.last.train_acc,
           result.epochs_done, result.images_per_second);
    return 0;
}
