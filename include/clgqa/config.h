/* Run configuration: YAML with the reference repo's keys plus clgqa's own.
 * Every key is validated; unknown keys are refused by name. */
#ifndef CLGQA_CONFIG_H
#define CLGQA_CONFIG_H

#include "clgqa/error.h"

typedef enum clgqa_scheme {
    CLGQA_MHSA = 0,
    CLGQA_GQA,
    CLGQA_KDGQA,
    CLGQA_DGQA_DIFF,
    CLGQA_DGQA_EMA,
    CLGQA_PGQA
} clgqa_scheme;

typedef enum clgqa_schedule { CLGQA_SCHEDULE_CONSTANT = 0, CLGQA_SCHEDULE_COSINE } clgqa_schedule;

typedef struct clgqa_config {
    /* reference keys */
    char dataset[64];     /* fashion-mnist, mnist, cifar10, cifar100, ... */
    int in_chans;         /* 1 or 3 */
    char size;            /* 's', 'b', 'l' or 'c' (custom) */
    clgqa_scheme att_scheme;
    int num_classes;
    int pretrained;       /* reference flag: start from pretrained_ckpt */
    int window_size;      /* DGQA window W */
    int num_kv_heads;     /* G */
    char out_dir[1024];
    int embed_dim, num_layers, num_heads; /* size c; filled in for s/b/l */
    /* clgqa keys */
    char data_dir[1024];
    int img_size, patch_size;
    int epochs, batch_size;
    float lr, weight_decay, beta1, beta2, eps;
    clgqa_schedule schedule;
    int warmup_steps;
    float clip_grad_norm; /* 0 = off */
    unsigned long long seed;
    int max_steps_per_epoch; /* 0 = whole epoch */
    int max_eval_batches;    /* 0 = whole test split */
    int shuffle;
    char augment[32];        /* none | flip | crop_flip | randaugment */
    char pretrained_ckpt[1024];
    int save_model;
    char device[256];
    int label_mode_coarse;   /* cifar100: 1 = coarse labels */
    float norm_mean[3], norm_std[3];
} clgqa_config;

/* Defaults: the README demo (small kdgqa ViT on Fashion-MNIST). */
void clgqa_config_defaults(clgqa_config *cfg);
/* Apply a YAML file over cfg. */
clgqa_status clgqa_config_load(clgqa_config *cfg, const char *path);
/* Apply one "key=value" override (--set). */
clgqa_status clgqa_config_set(clgqa_config *cfg, const char *key_value);
/* Cross-key checks and size presets (s/b/l fill embed_dim, num_layers,
 * num_heads; G must divide H for static schemes, ...). */
clgqa_status clgqa_config_finalize(clgqa_config *cfg);
/* Write cfg as YAML (saved beside checkpoints). */
clgqa_status clgqa_config_write(const clgqa_config *cfg, const char *path);

const char *clgqa_scheme_name(clgqa_scheme scheme);
clgqa_status clgqa_scheme_parse(const char *name, clgqa_scheme *out);

#endif
