/* clgqa train CONFIG.yaml [--set key=value ...] [--device SPEC] [--resume DIR] */
#include <stdio.h>
#include <string.h>

#include "clgqa/config.h"
#include "clgqa/runtime.h"
#include "clgqa/train.h"
#include "commands.h"

#define MAX_SETS 64

static int usage(void) {
    fprintf(stderr, "usage: clgqa train CONFIG.yaml [--set key=value ...] [--device SPEC] "
                    "[--resume DIR]\n");
    return 2;
}

int clgqa_cmd_train(int argc, char **argv) {
    const char *config_path = NULL, *device = NULL, *resume = NULL;
    const char *sets[MAX_SETS];
    int set_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--set") && has_value) {
            if (set_count == MAX_SETS) {
                fprintf(stderr, "clgqa train: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            sets[set_count++] = argv[++i];
        } else if (!strcmp(arg, "--device") && has_value) {
            device = argv[++i];
        } else if (!strcmp(arg, "--resume") && has_value) {
            resume = argv[++i];
        } else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage();
            return 0;
        } else if (arg[0] == '-' || config_path) {
            fprintf(stderr, "clgqa train: unexpected argument '%s'\n", arg);
            return usage();
        } else {
            config_path = arg;
        }
    }
    if (!config_path)
        return usage();

    clgqa_config cfg;
    if (clgqa_run_config(config_path, sets, set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    clgqa_runtime *rt;
    if (clgqa_runtime_create(device ? device : cfg.device, &rt) != CLGQA_OK)
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
