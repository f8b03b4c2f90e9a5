/* The run configuration's fields and the functions the library, the
 * command and the tests build it with (include/clgqa/config.h has the
 * public, opaque side). Every key lives in config.c's one table. */
#ifndef CLGQA_CONFIG_INTERNAL_H
#define CLGQA_CONFIG_INTERNAL_H

#include "clgqa/config.h"
#include "fail.h"
#include "ops.h"

typedef enum clgqa_schedule { CLGQA_SCHEDULE_CONSTANT = 0, CLGQA_SCHEDULE_COSINE } clgqa_schedule;
/* PyTorch Lightning's names: "32" and "16-mixed" (dynamic loss scaling;
 * needs a device with cl_khr_fp16, checked when the run opens its device). */
typedef enum clgqa_precision { CLGQA_PRECISION_32 = 0, CLGQA_PRECISION_16_MIXED } clgqa_precision;

typedef struct clgqa_config {
    /* reference keys */
    char dataset[64];     /* fashion-mnist, mnist, cifar10, cifar100, tiny-imagenet-200,
                             food101, cinic10, imagefolder */
    int in_chans;         /* 1 or 3 (gray or RGB; the readers convert) */
    char size;            /* 's', 'b', 'l' or 'c' (custom) */
    clgqa_scheme att_scheme;
    int num_classes;      /* 0 = from the dataset (finalize fills it in, except for
                             imagefolder, whose reader counts the classes) */
    int pretrained;       /* reference flag: start from pretrained_ckpt */
    int window_size;      /* DGQA window W */
    int num_kv_heads;     /* G */
    char out_dir[1024];
    int embed_dim, num_layers, num_heads; /* size c; filled in for s/b/l */
    /* clgqa keys */
    char data_dir[1024];  /* the dataset's folder; "" = the reader's default
                             (see clgqa_dataset_open) */
    int img_size, patch_size;
    int epochs, batch_size;
    float lr, weight_decay, beta1, beta2, eps;
    clgqa_schedule schedule;
    int warmup_steps;
    float min_lr;         /* cosine's floor */
    float clip_grad_norm; /* 0 = off */
    int grad_accum_steps; /* micro-batches per optimizer step */
    int no_weight_decay;  /* 1-D tensors, pos_embed and cls_token not decayed (timm's groups) */
    /* timm's regularisers, each 0 = off */
    float label_smoothing;
    float mixup_alpha, cutmix_alpha; /* Beta(alpha, alpha) of Mixup and CutMix */
    float mixup_prob, mixup_switch_prob;
    float drop_path;       /* the last block's rate, linear over depth from 0 */
    float model_ema_decay; /* the weights' EMA (timm's ModelEmaV3) */
    int best_follows_ema;  /* best.safetensors: the EMA's best epoch (1) or the raw weights' (0) */
    unsigned long long seed;
    int max_steps_per_epoch; /* 0 = whole epoch */
    int max_eval_batches;    /* 0 = whole test split */
    int log_steps;           /* training steps between steps.csv and groups.csv rows */
    int checkpoint_steps;    /* >0: also write last.safetensors every this many
                                optimizer steps; 0 = at epoch ends only */
    int shuffle;
    clgqa_augment augment;   /* none | flip | crop_flip | randaugment */
    char pretrained_ckpt[1024];
    int pos_embed_antialias; /* resampling a checkpoint's pos_embed to another
                                patch grid: 1 = timm's antialiased bicubic,
                                0 = plain bicubic (see src/io/pos_embed.h) */
    int save_model;
    int skip_unreadable;     /* image datasets: leave undecodable images out (counted) */
    char device[256];        /* clgqa_runtime_create spec, "" = default device; a
                                list (one spec per rank of a node) is kept joined
                                by commas: see clgqa_mpi_device_spec */
    int allow_shared_device; /* MPI: let ranks of a node share one device */
    char device_class[8];     /* auto | cpu | gpu (clgqa_runtime_choose_paths) */
    char attention_kernel[8]; /* auto | rows | tiled (likewise) */
    char gemm_kernel[9];      /* auto | direct | indirect (likewise) */
    clgqa_precision precision; /* 32 | 16-mixed */
    int label_mode_coarse;   /* cifar100: 1 = coarse labels */
    float norm_mean[3], norm_std[3]; /* per channel; a single number fills all 3 */
    /* Bookkeeping: one bit per key set by load or set (see clgqa_config_given). */
    unsigned long long keys_given;
} clgqa_config;

/* "32" or "16-mixed", as the precision key is written. */
const char *clgqa_precision_name(clgqa_precision precision);
/* How the model stores its saved activations under the config's precision:
 * half under 16-mixed (docs/design.md, "Mixed precision"), else float. */
static inline clgqa_storage clgqa_config_storage(const clgqa_config *cfg) {
    return cfg->precision == CLGQA_PRECISION_16_MIXED ? CLGQA_STORAGE_HALF : CLGQA_STORAGE_FLOAT;
}

/* Defaults: the reference's training recipe (lr 1e-5, constant schedule, no
 * warm-up, batch 32, 5 epochs, RandAugment, 224x224 with patch 16 for every
 * size, normalisation 0.5/0.5, seed 42) and ViT-S with MHSA on CIFAR-10 for
 * the model keys; configs/README.md lists every one. */
void clgqa_config_defaults(clgqa_config *cfg);
/* The README demo (a small kdgqa ViT on Fashion-MNIST): the defaults with
 * configs/demo.yaml, embedded at build time, applied over them. This is what
 * `clgqa train` trains without a config file. */
clgqa_status clgqa_config_demo(clgqa_config *cfg);
/* Apply a YAML file (a flat mapping) over cfg. On failure cfg is unchanged
 * and the message names the file:line, the key and the value. */
clgqa_status clgqa_config_load(clgqa_config *cfg, const char *path);
/* Apply one "key=value" override (--set), validated as in a file. A value
 * starting with '[' is a list ("betas=[0.9,0.95]"); others are literal. */
clgqa_status clgqa_config_set(clgqa_config *cfg, const char *key_value);
/* Cross-key checks and size presets: s/b/l fill embed_dim, num_layers,
 * num_heads; mhsa sets num_kv_heads = num_heads; the model's shape rules
 * (clgqa_model_desc_check); num_classes from the dataset when 0
 * (imagefolder stays 0: its reader counts the classes); pretrained is 1
 * exactly when pretrained_ckpt is set. */
clgqa_status clgqa_config_finalize(clgqa_config *cfg);
/* The whole configuration of a run, as clgqa_config_create makes it, into
 * caller's memory: defaults, the file at `path` or the embedded demo (NULL),
 * each "key=value" of `sets` in order, then clgqa_config_finalize. */
clgqa_status clgqa_run_config(const char *path, const char *const *sets, int set_count,
                              clgqa_config *cfg);
/* Whether `key` was set by clgqa_config_load or clgqa_config_set (not just
 * defaulted). */
int clgqa_config_given(const clgqa_config *cfg, const char *key);
/* Whether `name` is a config key (the command's --KEY options). */
int clgqa_config_has_key(const char *name);

#endif
