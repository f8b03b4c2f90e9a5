/* clgqa convert CONFIG.yaml --in FILE --out FILE [--allow-nonfinite] [--set key=value ...]
 *               [--device SPEC]
 * Converts a timm ViT, reference or clgqa checkpoint (safetensors, or a
 * PyTorch .pth/.pt state_dict) to the model of the
 * config (k/v heads averaged per group, pos_embed resampled to the config's
 * patch grid, head re-initialised when the class count differs) and writes a
 * clgqa model checkpoint. Weights that are not all finite are refused,
 * naming the tensor, unless --allow-nonfinite. */
#include <stdio.h>

#include "clgqa/checkpoint.h"
#include "commands.h"
#include "config_args.h"
#include "config_internal.h"

static const char usage[] =
    "clgqa convert CONFIG.yaml --in FILE --out FILE [--allow-nonfinite] [--set key=value ...] "
    "[--device SPEC]";

static int convert(const clgqa_config *cfg, const char *device, const char *in, const char *out,
                   int allow_nonfinite) {
    clgqa_runtime *rt = NULL;
    clgqa_model *model = NULL;
    int exit_status = 0;
    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    const clgqa_resample resample =
        cfg->pos_embed_antialias ? CLGQA_RESAMPLE_ANTIALIAS : CLGQA_RESAMPLE_BICUBIC;
    if (clgqa_cli_open_runtime(cfg, NULL, device, &rt) != 0 ||
        clgqa_model_create(rt, &desc, 1, &model) != CLGQA_OK ||
        clgqa_checkpoint_load_pretrained(model, in, resample, stderr) != CLGQA_OK)
        exit_status = clgqa_cli_error(NULL);
    else if (!allow_nonfinite && clgqa_model_check_finite(model) != CLGQA_OK) {
        fprintf(stderr, "clgqa: %s: %s; --allow-nonfinite converts it anyway\n", in,
                clgqa_error_message());
        exit_status = 1;
    } else if (clgqa_checkpoint_save_model(model, out) != CLGQA_OK)
        exit_status = clgqa_cli_error(NULL);
    else
        printf("wrote %s (%s, %d key/value heads)\n", out, clgqa_scheme_name(cfg->att_scheme),
               clgqa_model_get_dims(model)->kv_heads);
    clgqa_model_destroy(model);
    clgqa_runtime_destroy(rt);
    return exit_status;
}

int clgqa_cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int allow_nonfinite = 0;
    const cli_option flags[] = {{"--in", &in, "a checkpoint file"},
                                {"--out", &out, "the file to write"}};
    const cli_switch switches[] = {{"--allow-nonfinite", &allow_nonfinite}};
    cli_config_args args;
    int exit_status = clgqa_cli_parse_config_args(usage, argc, argv, flags, 2, switches, 1, 0, &args);
    if (exit_status >= 0)
        return exit_status;
    if (!in || !out)
        return clgqa_cli_usage(usage);
    clgqa_config cfg;
    if (clgqa_run_config(args.config_path, args.sets, args.set_count, &cfg) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    return convert(&cfg, args.device, in, out, allow_nonfinite);
}
