/* clgqa convert CONFIG.yaml --in FILE --out FILE [--set key=value ...] [--device SPEC]
 * Converts a timm ViT, reference or clgqa checkpoint to the model of the
 * config (k/v heads averaged per group, pos_embed resampled to the config's
 * patch grid, head re-initialised when the class count differs) and writes a
 * clgqa model checkpoint. */
#include <stdio.h>
#include <string.h>

#include "clgqa/checkpoint.h"
#include "clgqa/config.h"
#include "clgqa/model.h"
#include "clgqa/runtime.h"
#include "clgqa/train.h"
#include "commands.h"

#define MAX_SETS 64

static int usage(void) {
    fprintf(stderr, "usage: clgqa convert CONFIG.yaml --in FILE --out FILE [--set key=value ...] "
                    "[--device SPEC]\n");
    return 2;
}

static int convert(const clgqa_config *cfg, const char *device, const char *in, const char *out) {
    clgqa_runtime *rt = NULL;
    clgqa_model *model = NULL;
    int exit_status = 0;
    if (clgqa_runtime_create(device ? device : cfg->device, &rt) != CLGQA_OK ||
        clgqa_model_create(rt, cfg, 1, &model) != CLGQA_OK ||
        clgqa_checkpoint_load_pretrained(model, in, cfg->pos_embed_antialias, stderr) != CLGQA_OK ||
        clgqa_checkpoint_save_model(model, cfg, out) != CLGQA_OK)
        exit_status = clgqa_cli_error(NULL);
    else
        printf("wrote %s (%s, %d key/value heads)\n", out, clgqa_scheme_name(cfg->att_scheme),
               clgqa_model_get_dims(model)->kv_heads);
    clgqa_model_destroy(model);
    clgqa_runtime_destroy(rt);
    return exit_status;
}

int clgqa_cmd_convert(int argc, char **argv) {
    const char *config_path = NULL, *device = NULL, *in = NULL, *out = NULL;
    const char *sets[MAX_SETS];
    int set_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--set") && has_value) {
            if (set_count == MAX_SETS) {
                fprintf(stderr, "clgqa convert: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            sets[set_count++] = argv[++i];
        } else if (!strcmp(arg, "--device") && has_value) {
            device = argv[++i];
        } else if (!strcmp(arg, "--in") && has_value) {
            in = argv[++i];
        } else if (!strcmp(arg, "--out") && has_value) {
            out = argv[++i];
        } else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage();
            return 0;
        } else if (arg[0] == '-' || config_path) {
            fprintf(stderr, "clgqa convert: unexpected argument '%s'\n", arg);
            return usage();
        } else {
            config_path = arg;
        }
    }
    if (!config_path || !in || !out)
        return usage();
    clgqa_config cfg;
    if (clgqa_run_config(config_path, sets, set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    return convert(&cfg, device, in, out);
}
