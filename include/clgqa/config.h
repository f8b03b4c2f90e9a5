/* The configuration of a run: YAML with the reference repo's keys plus
 * clgqa's own (configs/README.md lists every one). Every key is validated;
 * unknown keys are refused by name, with the nearest key suggested.
 *
 * A configuration is opaque: create it from a file and overrides, read any
 * key back as text, write it as YAML, and take from it the model's
 * description and the dataset's options. */
#ifndef CLGQA_CONFIG_H
#define CLGQA_CONFIG_H

#include <stddef.h>

#include "clgqa/dataset.h"
#include "clgqa/error.h"
#include "clgqa/model.h"
#include "clgqa/runtime.h"

typedef struct clgqa_config clgqa_config;

/* The defaults (the reference's recipe), the YAML file at `path` over them
 * (NULL: the embedded demo of the README instead, a small kdgqa ViT on
 * Fashion-MNIST), then each "key=value" of `sets` in order ("betas=[0.9,
 * 0.95]" for a list), then the cross-key checks and presets. Errors name the
 * file:line or --set, the key and the value. */
clgqa_status clgqa_config_create(const char *path, const char *const *sets, int set_count,
                                 clgqa_config **out);
void clgqa_config_destroy(clgqa_config *cfg);

/* The value of `key` as text, as config.yaml writes it ("0.0001", "kdgqa",
 * "[0.9, 0.999]"); CLGQA_ERR_INVALID_ARG for an unknown key, and when the
 * text does not fit in `size` bytes. */
clgqa_status clgqa_config_get(const clgqa_config *cfg, const char *key, char *value, size_t size);
/* Write cfg as YAML (saved beside checkpoints, atomically); loads back to
 * the same configuration. */
clgqa_status clgqa_config_write(const clgqa_config *cfg, const char *path);

/* The code paths the config keys device_class, attention_kernel and
 * gemm_kernel ask for, into `out` where they are not "auto" (the other
 * fields, the device among them, are left as they are: the device key may
 * list a device per MPI rank, which `clgqa train` resolves). */
void clgqa_config_runtime_options(const clgqa_config *cfg, clgqa_runtime_options *out);

/* The model the configuration describes (att_scheme, img_size, patch_size,
 * in_chans, embed_dim, num_layers, num_heads, num_kv_heads, num_classes,
 * window_size, seed). */
void clgqa_config_model_desc(const clgqa_config *cfg, clgqa_model_desc *out);
/* The dataset the configuration names, and how its samples are prepared
 * (dataset, data_dir, img_size, in_chans, num_classes, augment, norm_mean,
 * norm_std, seed, skip_unreadable, label_mode). The strings point into cfg. */
void clgqa_config_dataset_options(const clgqa_config *cfg, clgqa_dataset_options *out);

#endif
