/* Config: defaults, every key, presets, cross-key checks, refusals with
 * messages naming key/value/line, --set, and write -> load round trips. */
#include "config_internal.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/test_util.h"

#define TMP_TEMPLATE "/tmp/clgqa_test_config_XXXXXX"
static char tmp_dir[sizeof TMP_TEMPLATE];

/* The template is reset here, not in teardown, which a failed test in
 * no-fork mode may skip. */
static void setup(void) {
    strcpy(tmp_dir, TMP_TEMPLATE);
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void teardown(void) { test_remove_tree(tmp_dir); }

/* Write `text` to a file in the temp folder and return its path. */
static const char *write_yaml(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

#define ASSERT_MESSAGE_HAS(needle)                                                               \
    ck_assert_msg(strstr(clgqa_error_message(), needle), "message '%s' lacks '%s'", clgqa_error_message(), \
                  needle)

/* Keys left out take the reference's recipe (attention-variants.md,
 * "Training recipe of the reference") and ViT-S with MHSA on CIFAR-10. */
START_TEST(defaults_are_the_reference_recipe) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_str_eq(cfg.dataset, "cifar10");
    ck_assert_int_eq(cfg.in_chans, 3);
    ck_assert_int_eq(cfg.size, 's');
    ck_assert_int_eq(cfg.att_scheme, CLGQA_MHSA);
    test_assert_reference_recipe(&cfg);
    ck_assert_int_eq(cfg.checkpoint_steps, 0);
    ck_assert_int_eq(cfg.save_model, 1);
    ck_assert_int_eq(cfg.precision, CLGQA_PRECISION_32);
    ck_assert_uint_eq(cfg.keys_given, 0);

    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.embed_dim, 384);
    ck_assert_int_eq(cfg.num_layers, 12);
    ck_assert_int_eq(cfg.num_heads, 6);
    ck_assert_int_eq(cfg.num_kv_heads, 6); /* MHSA: G = H */
    ck_assert_int_eq(cfg.num_classes, 10);
    ck_assert_str_eq(cfg.data_dir, ""); /* the reader's default folder */
    ck_assert_int_eq(cfg.pretrained, 0);
    ck_assert_int_eq(cfg.pos_embed_antialias, 1); /* timm's resampling */

    /* A custom size keeps 224 and patch 16 too, as in the reference. */
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_set(&cfg, "size=c"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "embed_dim=96"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.img_size, 224);
    ck_assert_int_eq(cfg.patch_size, 16);
    ck_assert_int_eq(cfg.embed_dim, 96);
}
END_TEST

/* The demo (`clgqa train` without a file) keeps its own complete values,
 * which were the defaults before the reference's recipe. */
START_TEST(demo_keeps_its_own_values) {
    clgqa_config cfg;
    ck_assert_int_eq(clgqa_config_demo(&cfg), CLGQA_OK);
    ck_assert_str_eq(cfg.dataset, "fashion-mnist");
    ck_assert_int_eq(cfg.in_chans, 1);
    ck_assert_int_eq(cfg.size, 'c');
    ck_assert_int_eq(cfg.att_scheme, CLGQA_KDGQA);
    ck_assert_int_eq(cfg.img_size, 28);
    ck_assert_int_eq(cfg.patch_size, 7);
    ck_assert_int_eq(cfg.embed_dim, 64);
    ck_assert_int_eq(cfg.num_layers, 4);
    ck_assert_int_eq(cfg.num_heads, 4);
    ck_assert_int_eq(cfg.num_kv_heads, 2);
    ck_assert_float_eq(cfg.lr, 2e-3f);
    ck_assert_float_eq(cfg.weight_decay, 0.01f);
    ck_assert_int_eq(cfg.no_weight_decay, 1); /* a new config's choice: timm's groups */
    ck_assert_float_eq(cfg.beta1, 0.9f);
    ck_assert_float_eq(cfg.beta2, 0.999f);
    ck_assert_float_eq(cfg.eps, 1e-8f);
    ck_assert_int_eq(cfg.batch_size, 64);
    ck_assert_int_eq(cfg.epochs, 3);
    ck_assert_int_eq(cfg.schedule, CLGQA_SCHEDULE_COSINE);
    ck_assert_int_eq(cfg.warmup_steps, 200);
    ck_assert_uint_eq(cfg.seed, 42);
    ck_assert_float_eq(cfg.norm_mean[2], 0.5f);
    ck_assert_float_eq(cfg.norm_std[0], 0.5f);
    ck_assert_int_eq(cfg.augment, CLGQA_AUGMENT_NONE);
    ck_assert_str_eq(cfg.out_dir, "runs/demo");
    ck_assert_int_eq(cfg.save_model, 1);
    ck_assert_int_eq(cfg.window_size, 100);
    ck_assert_int_eq(cfg.shuffle, 1);

    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.num_classes, 10);
    ck_assert_str_eq(cfg.data_dir, ""); /* the reader's default folder */
    ck_assert_int_eq(cfg.num_kv_heads, 2);
    ck_assert_int_eq(cfg.pretrained, 0);
    ck_assert_int_eq(cfg.pos_embed_antialias, 1); /* timm's resampling */
}
END_TEST

/* A file setting every key to a non-default value. */
static const char *every_key =
    "# all keys\n"
    "dataset: cifar100\n"
    "in_chans: 1\n"
    "size: c\n"
    "att_scheme: dgqa_diff\n"
    "num_classes: 20\n"
    "pretrained: True\n"
    "window_size: 50\n"
    "num_kv_heads: 3\n"
    "out_dir: \"runs/a b: c\"\n"
    "embed_dim: 96\n"
    "num_layers: 2\n"
    "num_heads: 6\n"
    "data_dir: /data/cifar-100-binary\n"
    "img_size: 32\n"
    "patch_size: 4\n"
    "epochs: 7\n"
    "batch_size: 64\n"
    "lr: 3.0e-4\n"
    "weight_decay: 0.05\n"
    "betas: [0.8, 0.95]\n"
    "eps: 1e-6\n"
    "schedule: cosine\n"
    "warmup_steps: 10\n"
    "min_lr: 1.0e-5\n"
    "clip_grad_norm: 1.5\n"
    "grad_accum_steps: 4\n"
    "no_weight_decay: true\n"
    "label_smoothing: 0.1\n"
    "mixup_alpha: 0.8\n"
    "cutmix_alpha: 1.0\n"
    "mixup_prob: 0.7\n"
    "mixup_switch_prob: 0.25\n"
    "drop_path: 0.1\n"
    "model_ema_decay: 0.9998\n"
    "best_follows: ema\n"
    "seed: 18446744073709551615\n"
    "max_steps_per_epoch: 5\n"
    "max_eval_batches: 2\n"
    "log_steps: 7\n"
    "checkpoint_steps: 25\n"
    "shuffle: false\n"
    "augment: crop_flip\n"
    "pretrained_ckpt: 'ckpt/vit s.safetensors'\n"
    "pos_embed_antialias: false\n"
    "save_model: 0\n"
    "device: cpu\n"
    "allow_shared_device: true\n"
    "gemm_kernel: direct\n"
    "precision: 16-mixed\n"
    "label_mode: coarse\n"
    "norm_mean: [0.4914, 0.4822, 0.4465]\n"
    "norm_std:\n"
    "  - 0.247\n"
    "  - 0.243\n"
    "  - 0.261\n";

static void check_every_key(const clgqa_config *cfg) {
    ck_assert_str_eq(cfg->dataset, "cifar100");
    ck_assert_int_eq(cfg->in_chans, 1);
    ck_assert_int_eq(cfg->size, 'c');
    ck_assert_int_eq(cfg->att_scheme, CLGQA_DGQA_DIFF);
    ck_assert_int_eq(cfg->num_classes, 20);
    ck_assert_int_eq(cfg->pretrained, 1);
    ck_assert_int_eq(cfg->window_size, 50);
    ck_assert_int_eq(cfg->num_kv_heads, 3);
    ck_assert_str_eq(cfg->out_dir, "runs/a b: c");
    ck_assert_int_eq(cfg->embed_dim, 96);
    ck_assert_int_eq(cfg->num_layers, 2);
    ck_assert_int_eq(cfg->num_heads, 6);
    ck_assert_str_eq(cfg->data_dir, "/data/cifar-100-binary");
    ck_assert_int_eq(cfg->img_size, 32);
    ck_assert_int_eq(cfg->patch_size, 4);
    ck_assert_int_eq(cfg->epochs, 7);
    ck_assert_int_eq(cfg->batch_size, 64);
    ck_assert_float_eq(cfg->lr, 3e-4f);
    ck_assert_float_eq(cfg->weight_decay, 0.05f);
    ck_assert_float_eq(cfg->beta1, 0.8f);
    ck_assert_float_eq(cfg->beta2, 0.95f);
    ck_assert_float_eq(cfg->eps, 1e-6f);
    ck_assert_int_eq(cfg->schedule, CLGQA_SCHEDULE_COSINE);
    ck_assert_int_eq(cfg->warmup_steps, 10);
    ck_assert_float_eq(cfg->clip_grad_norm, 1.5f);
    ck_assert_float_eq(cfg->min_lr, 1e-5f);
    ck_assert_int_eq(cfg->grad_accum_steps, 4);
    ck_assert_int_eq(cfg->no_weight_decay, 1);
    ck_assert_float_eq(cfg->label_smoothing, 0.1f);
    ck_assert_float_eq(cfg->mixup_alpha, 0.8f);
    ck_assert_float_eq(cfg->cutmix_alpha, 1.0f);
    ck_assert_float_eq(cfg->mixup_prob, 0.7f);
    ck_assert_float_eq(cfg->mixup_switch_prob, 0.25f);
    ck_assert_float_eq(cfg->drop_path, 0.1f);
    ck_assert_float_eq(cfg->model_ema_decay, 0.9998f);
    ck_assert_int_eq(cfg->best_follows_ema, 1);
    ck_assert(cfg->seed == 18446744073709551615ull);
    ck_assert_int_eq(cfg->max_steps_per_epoch, 5);
    ck_assert_int_eq(cfg->max_eval_batches, 2);
    ck_assert_int_eq(cfg->log_steps, 7);
    ck_assert_int_eq(cfg->checkpoint_steps, 25);
    ck_assert_int_eq(cfg->shuffle, 0);
    ck_assert_int_eq(cfg->augment, CLGQA_AUGMENT_CROP_FLIP);
    ck_assert_str_eq(cfg->pretrained_ckpt, "ckpt/vit s.safetensors");
    ck_assert_int_eq(cfg->pos_embed_antialias, 0);
    ck_assert_int_eq(cfg->save_model, 0);
    ck_assert_str_eq(cfg->device, "cpu");
    ck_assert_int_eq(cfg->allow_shared_device, 1);
    ck_assert_str_eq(cfg->gemm_kernel, "direct");
    ck_assert_int_eq(cfg->precision, CLGQA_PRECISION_16_MIXED);
    ck_assert_int_eq(cfg->label_mode_coarse, 1);
    ck_assert_float_eq(cfg->norm_mean[0], 0.4914f);
    ck_assert_float_eq(cfg->norm_mean[1], 0.4822f);
    ck_assert_float_eq(cfg->norm_mean[2], 0.4465f);
    ck_assert_float_eq(cfg->norm_std[0], 0.247f);
    ck_assert_float_eq(cfg->norm_std[1], 0.243f);
    ck_assert_float_eq(cfg->norm_std[2], 0.261f);
}

START_TEST(every_key_is_parsed) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("all.yaml", every_key)), CLGQA_OK);
    check_every_key(&cfg);
    ck_assert(clgqa_config_given(&cfg, "img_size"));
    ck_assert(clgqa_config_given(&cfg, "norm_std"));
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    check_every_key(&cfg); /* a valid custom config passes finalize unchanged */
}
END_TEST

START_TEST(empty_file_keeps_defaults) {
    clgqa_config cfg, defaults;
    clgqa_config_defaults(&cfg);
    clgqa_config_defaults(&defaults);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("empty.yaml", "# nothing\n")), CLGQA_OK);
    ck_assert_int_eq(memcmp(&cfg, &defaults, sizeof cfg), 0);
}
END_TEST

START_TEST(scalar_norms_fill_every_channel) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("n.yaml", "norm_mean: 0.25\nnorm_std: [2]\n")), CLGQA_OK);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(cfg.norm_mean[c], 0.25f);
        ck_assert_float_eq(cfg.norm_std[c], 2.0f);
    }
}
END_TEST

START_TEST(size_presets) {
    static const struct { const char *size; int embed, layers, heads; } presets[] = {
        {"s", 384, 12, 6}, {"b", 768, 12, 12}, {"l", 1024, 24, 16}};
    for (size_t i = 0; i < 3; i++) {
        clgqa_config cfg;
        clgqa_config_defaults(&cfg);
        char set[32];
        snprintf(set, sizeof set, "size=%s", presets[i].size);
        ck_assert_int_eq(clgqa_config_set(&cfg, set), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_set(&cfg, "num_kv_heads=2"), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
        ck_assert_int_eq(cfg.embed_dim, presets[i].embed);
        ck_assert_int_eq(cfg.num_layers, presets[i].layers);
        ck_assert_int_eq(cfg.num_heads, presets[i].heads);
        ck_assert_int_eq(cfg.img_size, 224);
        ck_assert_int_eq(cfg.patch_size, 16);
    }
    /* An explicit img_size / patch_size survives the preset. */
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("b.yaml", "size: b\nimg_size: 32\npatch_size: 4\n"
                                                                  "att_scheme: gqa\nnum_kv_heads: 4\n"
                                                                  "embed_dim: 8\n")),
                     CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.embed_dim, 768);
    ck_assert_int_eq(cfg.img_size, 32);
    ck_assert_int_eq(cfg.patch_size, 4);
    ck_assert_int_eq(cfg.num_kv_heads, 4);
}
END_TEST

START_TEST(mhsa_ignores_num_kv_heads) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("m.yaml", "att_scheme: mhsa\nnum_heads: 6\n"
                                                                  "embed_dim: 96\nnum_kv_heads: 4\n")),
                     CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.num_kv_heads, 6);
}
END_TEST

START_TEST(heads_not_divisible_refused_for_every_scheme) {
    static const char *const schemes[] = {"gqa", "kdgqa", "dgqa_diff", "dgqa_ema", "pgqa"};
    for (size_t i = 0; i < 5; i++) {
        clgqa_config cfg;
        clgqa_config_defaults(&cfg);
        char set[64];
        snprintf(set, sizeof set, "att_scheme=%s", schemes[i]);
        ck_assert_int_eq(clgqa_config_set(&cfg, set), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_set(&cfg, "num_heads=6"), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_set(&cfg, "embed_dim=96"), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_set(&cfg, "num_kv_heads=4"), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_ERR_INVALID_ARG);
        ASSERT_MESSAGE_HAS("num_heads 6");
        ASSERT_MESSAGE_HAS("num_kv_heads 4");
        ASSERT_MESSAGE_HAS(schemes[i]);
    }
}
END_TEST

/* finalize refusals: --set lines applied to the demo config, then the message. */
START_TEST(cross_key_refusals) {
    static const struct { const char *sets[3]; const char *message; } cases[] = {
        {{"embed_dim=66"}, "embed_dim 66 is not a multiple of num_heads 4"},
        {{"img_size=30"}, "img_size 30 is not a multiple of patch_size 7"},
        {{"num_kv_heads=8"}, "num_heads 4 is not a multiple of num_kv_heads 8"},
        {{"label_mode=coarse"}, "label_mode coarse"},
        {{"pretrained=true"}, "pretrained_ckpt"},
        {{"pretrained=true", "size=s"}, "clgqa convert CONFIG.yaml --in vit.safetensors --out "
                                        "checkpoints/vit_small_patch16_224.safetensors"},
        {{"min_lr=0.01"}, "min_lr 0.01 is above lr 0.002"},
        {{"best_follows=ema"}, "best_follows: ema needs the weights' EMA"},
        {{"pretrained=false", "pretrained_ckpt=x.safetensors"}, "contradicts pretrained_ckpt 'x.safetensors'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clgqa_config cfg;
        ck_assert_int_eq(clgqa_config_demo(&cfg), CLGQA_OK);
        for (int j = 0; j < 3 && cases[i].sets[j]; j++)
            ck_assert_int_eq(clgqa_config_set(&cfg, cases[i].sets[j]), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_ERR_INVALID_ARG);
        ASSERT_MESSAGE_HAS(cases[i].message);
    }
}
END_TEST

START_TEST(num_classes_from_dataset) {
    static const struct { const char *dataset; const char *label_mode; int classes; } cases[] = {
        {"fashion-mnist", "fine", 10}, {"mnist", "fine", 10},  {"cifar10", "fine", 10},
        {"cifar100", "fine", 100},     {"cifar100", "coarse", 20}, {"tiny-imagenet-200", "fine", 200},
        {"food101", "fine", 101},      {"cinic10", "fine", 10},  {"imagefolder", "fine", 0},
        {"oxfordiiitpet", "fine", 37}, {"oxfordiitpet", "fine", 37}, /* the paper's spelling */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clgqa_config cfg;
        clgqa_config_defaults(&cfg);
        char set[64];
        snprintf(set, sizeof set, "dataset=%s", cases[i].dataset);
        ck_assert_int_eq(clgqa_config_set(&cfg, set), CLGQA_OK);
        snprintf(set, sizeof set, "label_mode=%s", cases[i].label_mode);
        ck_assert_int_eq(clgqa_config_set(&cfg, set), CLGQA_OK);
        ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
        ck_assert_int_eq(cfg.num_classes, cases[i].classes);
        if (!strcmp(cases[i].dataset, "oxfordiitpet")) /* kept under clgqa's name */
            ck_assert_str_eq(cfg.dataset, "oxfordiiitpet");
    }
    /* A given num_classes wins. */
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_set(&cfg, "num_classes=3"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(cfg.num_classes, 3);
}
END_TEST

/* One bad line per case, after a valid first line, so the message must say
 * line 2; each message names the key and echoes the value. */
START_TEST(bad_values_refused) {
    static const struct { const char *line, *key, *shown; } cases[] = {
        {"in_chans: 2", "in_chans", "'2'"},
        {"num_heads: abc", "num_heads", "'abc'"},
        {"num_heads: 0", "num_heads", "'0'"},
        {"num_heads: -3", "num_heads", "'-3'"},
        {"num_heads: 1.5", "num_heads", "'1.5'"},
        {"batch_size: 99999999999", "batch_size", "'99999999999'"},
        {"epochs:", "epochs", "bad value"},
        {"warmup_steps: -1", "warmup_steps", "'-1'"},
        {"checkpoint_steps: -5", "checkpoint_steps", "'-5'"},
        {"num_classes: -2", "num_classes", "'-2'"},
        {"lr: 0", "lr", "'0'"},
        {"lr: -1e-3", "lr", "'-1e-3'"},
        {"lr: nan", "lr", "'nan'"},
        {"lr: 1e999", "lr", "'1e999'"},
        {"lr: fast", "lr", "'fast'"},
        {"eps: 0", "eps", "'0'"},
        {"weight_decay: -0.1", "weight_decay", "'-0.1'"},
        {"clip_grad_norm: -1", "clip_grad_norm", "'-1'"},
        {"min_lr: -1e-6", "min_lr", "'-1e-6'"},
        {"grad_accum_steps: 0", "grad_accum_steps", "'0'"},
        {"no_weight_decay: biases", "no_weight_decay", "'biases'"},
        {"label_smoothing: 1", "label_smoothing", "'1'"},
        {"mixup_alpha: -0.2", "mixup_alpha", "'-0.2'"},
        {"cutmix_alpha: x", "cutmix_alpha", "'x'"},
        {"mixup_prob: 1.5", "mixup_prob", "'1.5'"},
        {"mixup_switch_prob: -0.5", "mixup_switch_prob", "'-0.5'"},
        {"drop_path: 1.0", "drop_path", "'1.0'"},
        {"model_ema_decay: 1", "model_ema_decay", "'1'"},
        {"best_follows: mean", "best_follows", "'mean'"},
        {"betas: [0.9]", "betas", "'[0.9]'"},
        {"betas: [0.9, 1.0]", "betas", "'[0.9, 1.0]'"},
        {"betas: 0.9", "betas", "'0.9'"},
        {"betas: [0.9, x]", "betas", "'[0.9, x]'"},
        {"att_scheme: mqa", "att_scheme", "'mqa'"},
        {"size: xl", "size", "'xl'"},
        {"dataset: imagenet", "dataset", "'imagenet'"},
        {"schedule: linear", "schedule", "'linear'"},
        {"augment: cutmix", "augment", "'cutmix'"},
        {"label_mode: medium", "label_mode", "'medium'"},
        {"gemm_kernel: fastest", "gemm_kernel", "'fastest'"},
        {"precision: 16", "precision", "'16' (expected 32 or 16-mixed)"},
        {"precision: bf16-mixed", "precision", "'bf16-mixed'"},
        {"shuffle: maybe", "shuffle", "'maybe'"},
        {"pretrained: yes", "pretrained", "'yes'"},
        {"save_model: 2", "save_model", "'2'"},
        {"seed: -1", "seed", "'-1'"},
        {"seed: 18446744073709551616", "seed", "'18446744073709551616'"},
        {"seed: 4.2", "seed", "'4.2'"},
        {"norm_std: [0.5, 0, 0.5]", "norm_std", "'[0.5, 0, 0.5]'"},
        {"norm_mean: [0.5, 0.5]", "norm_mean", "'[0.5, 0.5]'"},
        {"norm_mean: [1, 2, 3, 4]", "norm_mean", "a list of 1 or 3"},
        {"norm_mean: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]", "norm_mean",
         "more than 16"},
        {"out_dir: [a, b]", "out_dir", "'[a, b]'"},
        {"num_heads: {a: 1}", "num_heads", "mapping"},
        {"betas: [[0.9], 0.9]", "betas", "nested"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clgqa_config cfg, before;
        clgqa_config_defaults(&cfg);
        before = cfg;
        char text[256];
        snprintf(text, sizeof text, "device: cpu\n%s\n", cases[i].line);
        const char *path = write_yaml("bad.yaml", text);
        ck_assert_msg(clgqa_config_load(&cfg, path) == CLGQA_ERR_INVALID_ARG, "'%s' accepted", cases[i].line);
        char expect[600];
        snprintf(expect, sizeof expect, "%s:2: key '%s'", path, cases[i].key);
        ASSERT_MESSAGE_HAS(expect);
        ASSERT_MESSAGE_HAS(cases[i].shown);
        /* A failed load changes nothing, not even the valid first line. */
        ck_assert_int_eq(memcmp(&cfg, &before, sizeof cfg), 0);
    }
}
END_TEST

START_TEST(too_long_string_refused) {
    char text[1200] = "out_dir: ";
    memset(text + 9, 'a', 1100);
    text[1109] = '\n';
    text[1110] = '\0';
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("long.yaml", text)), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("key 'out_dir': value is 1100 characters, the limit is 1023");
}
END_TEST

START_TEST(unknown_and_duplicate_keys_refused) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    const char *path = write_yaml("u.yaml", "epochs: 2\nnum_head: 4\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_INVALID_ARG);
    char expect[600];
    snprintf(expect, sizeof expect, "%s:2: unknown key 'num_head' (did you mean 'num_heads'?)", path);
    ASSERT_MESSAGE_HAS(expect);

    path = write_yaml("far.yaml", "learning_rate: 0.1\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_INVALID_ARG);
    snprintf(expect, sizeof expect, "%s:1: unknown key 'learning_rate'", path);
    ASSERT_MESSAGE_HAS(expect);
    ck_assert_ptr_null(strstr(clgqa_error_message(), "did you mean"));
    ck_assert_int_eq(cfg.epochs, 5); /* the default: failed loads change nothing */

    path = write_yaml("d.yaml", "epochs: 2\nlr: 0.1\nepochs: 4\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_INVALID_ARG);
    snprintf(expect, sizeof expect, "%s:3: key 'epochs' given twice", path);
    ASSERT_MESSAGE_HAS(expect);
}
END_TEST

START_TEST(malformed_files_refused) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    const char *path = write_yaml("syntax.yaml", "epochs: 2\nbetas: [0.9, 0.99\nlr: 1\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("YAML syntax error");
    ASSERT_MESSAGE_HAS(path);

    path = write_yaml("list.yaml", "- epochs\n- 3\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("expected a mapping");

    path = write_yaml("two.yaml", "epochs: 2\n---\nepochs: 3\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("more than one YAML document");

    ck_assert_int_eq(clgqa_config_load(&cfg, "/nonexistent/clgqa.yaml"), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("/nonexistent/clgqa.yaml");
    ck_assert_int_eq(cfg.epochs, 5); /* the default: failed loads change nothing */
}
END_TEST

/* A config is at most 1 MiB and 8 levels deep: larger or deeper input is
 * refused before it is parsed; the limits themselves load. */
START_TEST(config_files_are_bounded) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    /* 1 MiB exactly: a comment filling it, then a key. */
    static char text[(1 << 20) + 2];
    const char *key = "\nepochs: 7\n";
    size_t fill = (1 << 20) - strlen(key);
    text[0] = '#';
    memset(text + 1, 'x', fill - 1);
    strcpy(text + fill, key);
    const char *path = write_yaml("page.yaml", text);
    TEST_OK(clgqa_config_load(&cfg, path));
    ck_assert_int_eq(cfg.epochs, 7);
    text[fill - 1] = 'y'; /* one byte more */
    strcpy(text + fill, " ");
    strcat(text, key);
    path = write_yaml("over.yaml", text);
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("is over 1024 KiB");

    /* The mapping and 7 lists (8 levels) reach the value check; 8 lists do not parse. */
    path = write_yaml("deep7.yaml", "betas: [[[[[[[0.9]]]]]]]\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("nested list");
    path = write_yaml("deep8.yaml", "betas: [[[[[[[[0.9]]]]]]]]\n");
    ck_assert_int_eq(clgqa_config_load(&cfg, path), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("deep8.yaml:1: lists or mappings nested more than 8 deep");

    ck_assert_int_eq(clgqa_config_load(&cfg, tmp_dir), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("is a folder");
    ck_assert_int_eq(cfg.epochs, 7);
}
END_TEST

/* A number no float holds is refused, saying so, not stored as 0 or inf. */
START_TEST(numbers_beyond_float_refused) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_set(&cfg, "lr=1e39"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("beyond a 32-bit float");
    ck_assert_int_eq(clgqa_config_set(&cfg, "lr=1e-50"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("beyond a 32-bit float");
    ck_assert_int_eq(clgqa_config_set(&cfg, "lr=-3"), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(!strstr(clgqa_error_message(), "beyond"), "%s", clgqa_error_message());
    ck_assert_float_eq(cfg.lr, 1e-5f);
    TEST_OK(clgqa_config_set(&cfg, "lr=3e38"));
    ck_assert_float_eq(cfg.lr, 3e38f);
}
END_TEST

START_TEST(set_overrides) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_set(&cfg, "epochs=9"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "betas=[0.5, 0.75]"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "norm_mean=[0.1,0.2,0.3]"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "out_dir=runs/x y#z"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "att_scheme=pgqa"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "shuffle=0"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "pretrained_ckpt="), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "precision=16-mixed"), CLGQA_OK);
    ck_assert_int_eq(cfg.precision, CLGQA_PRECISION_16_MIXED);
    char text[16];
    ck_assert_int_eq(clgqa_config_get(&cfg, "precision", text, sizeof text), CLGQA_OK);
    ck_assert_str_eq(text, "16-mixed");
    ck_assert_int_eq(cfg.epochs, 9);
    ck_assert_float_eq(cfg.beta1, 0.5f);
    ck_assert_float_eq(cfg.beta2, 0.75f);
    ck_assert_float_eq(cfg.norm_mean[1], 0.2f);
    ck_assert_str_eq(cfg.out_dir, "runs/x y#z");
    ck_assert_int_eq(cfg.att_scheme, CLGQA_PGQA);
    ck_assert_int_eq(cfg.shuffle, 0);
    ck_assert(clgqa_config_given(&cfg, "epochs"));
    ck_assert(!clgqa_config_given(&cfg, "lr"));
    ck_assert(!clgqa_config_given(&cfg, "no_such_key"));

    /* A --set after a file wins over the file. */
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("s.yaml", "epochs: 2\n")), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "epochs=5"), CLGQA_OK);
    ck_assert_int_eq(cfg.epochs, 5);

    ck_assert_int_eq(clgqa_config_set(&cfg, "epochs=zero"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("--set: key 'epochs': bad value 'zero'");
    ck_assert_int_eq(clgqa_config_set(&cfg, "epoch=3"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("--set: unknown key 'epoch' (did you mean 'epochs'?)");
    ck_assert_int_eq(clgqa_config_set(&cfg, "epochs"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("expected key=value");
    ck_assert_int_eq(clgqa_config_set(&cfg, "=3"), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_config_set(&cfg, "betas=[0.9, 0.99"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("betas");
    ck_assert_int_eq(clgqa_config_set(&cfg, "betas=[0.9, 2]"), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("--set: key 'betas': bad value '[0.9, 2]'");
    ck_assert_int_eq(cfg.epochs, 5);
    ck_assert_float_eq(cfg.beta1, 0.5f);
}
END_TEST

/* Field by field: bytes after a string's terminator may differ. */
static void assert_same(const clgqa_config *a, const clgqa_config *b) {
    ck_assert_str_eq(a->dataset, b->dataset);
    ck_assert_int_eq(a->in_chans, b->in_chans);
    ck_assert_int_eq(a->size, b->size);
    ck_assert_int_eq(a->att_scheme, b->att_scheme);
    ck_assert_int_eq(a->num_classes, b->num_classes);
    ck_assert_int_eq(a->pretrained, b->pretrained);
    ck_assert_int_eq(a->window_size, b->window_size);
    ck_assert_int_eq(a->num_kv_heads, b->num_kv_heads);
    ck_assert_str_eq(a->out_dir, b->out_dir);
    ck_assert_int_eq(a->embed_dim, b->embed_dim);
    ck_assert_int_eq(a->num_layers, b->num_layers);
    ck_assert_int_eq(a->num_heads, b->num_heads);
    ck_assert_str_eq(a->data_dir, b->data_dir);
    ck_assert_int_eq(a->img_size, b->img_size);
    ck_assert_int_eq(a->patch_size, b->patch_size);
    ck_assert_int_eq(a->epochs, b->epochs);
    ck_assert_int_eq(a->batch_size, b->batch_size);
    /* Floats must come back bit for bit. */
    ck_assert(a->lr == b->lr);
    ck_assert(a->weight_decay == b->weight_decay);
    ck_assert(a->beta1 == b->beta1);
    ck_assert(a->beta2 == b->beta2);
    ck_assert(a->eps == b->eps);
    ck_assert_int_eq(a->schedule, b->schedule);
    ck_assert_int_eq(a->warmup_steps, b->warmup_steps);
    ck_assert(a->clip_grad_norm == b->clip_grad_norm);
    ck_assert(a->seed == b->seed);
    ck_assert_int_eq(a->max_steps_per_epoch, b->max_steps_per_epoch);
    ck_assert_int_eq(a->max_eval_batches, b->max_eval_batches);
    ck_assert_int_eq(a->log_steps, b->log_steps);
    ck_assert_int_eq(a->checkpoint_steps, b->checkpoint_steps);
    ck_assert_int_eq(a->shuffle, b->shuffle);
    ck_assert_int_eq(a->augment, b->augment);
    ck_assert_str_eq(a->pretrained_ckpt, b->pretrained_ckpt);
    ck_assert_int_eq(a->pos_embed_antialias, b->pos_embed_antialias);
    ck_assert_int_eq(a->save_model, b->save_model);
    ck_assert_str_eq(a->device, b->device);
    ck_assert_str_eq(a->gemm_kernel, b->gemm_kernel);
    ck_assert_int_eq(a->precision, b->precision);
    ck_assert_int_eq(a->label_mode_coarse, b->label_mode_coarse);
    for (int c = 0; c < 3; c++) {
        ck_assert(a->norm_mean[c] == b->norm_mean[c]);
        ck_assert(a->norm_std[c] == b->norm_std[c]);
    }
}

START_TEST(write_load_round_trip) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_load(&cfg, write_yaml("all.yaml", every_key)), CLGQA_OK);
    /* Values that need quoting in YAML, and floats without short decimals. */
    ck_assert_int_eq(clgqa_config_set(&cfg, "device=0"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_set(&cfg, "data_dir=- [x]: #y 'z\""), CLGQA_OK);
    cfg.lr = 1.0f / 3.0f;
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);

    char path[512];
    snprintf(path, sizeof path, "%s/written.yaml", tmp_dir);
    ck_assert_int_eq(clgqa_config_write(&cfg, path), CLGQA_OK);
    clgqa_config back;
    clgqa_config_defaults(&back);
    ck_assert_int_eq(clgqa_config_load(&back, path), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&back), CLGQA_OK);
    assert_same(&cfg, &back);
    ck_assert_str_eq(back.data_dir, "- [x]: #y 'z\"");

    /* A device list (one device per rank of a node) is kept joined by commas. */
    ck_assert_int_eq(clgqa_config_set(&cfg, "device=[0, 2, gpu]"), CLGQA_OK);
    ck_assert_str_eq(cfg.device, "0,2,gpu");
    ck_assert_int_eq(clgqa_config_write(&cfg, path), CLGQA_OK);
    clgqa_config_defaults(&back);
    ck_assert_int_eq(clgqa_config_load(&back, path), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&back), CLGQA_OK);
    assert_same(&cfg, &back);

    /* The finalized defaults round-trip too (empty strings included). */
    clgqa_config_defaults(&cfg);
    ck_assert_int_eq(clgqa_config_finalize(&cfg), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_write(&cfg, path), CLGQA_OK);
    clgqa_config_defaults(&back);
    ck_assert_int_eq(clgqa_config_set(&back, "device=gpu"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_load(&back, path), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&back), CLGQA_OK);
    assert_same(&cfg, &back);

    /* Written atomically: no temporary left beside it. */
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, ".tmp."), "temporary '%s' left behind", e->d_name);
    closedir(d);

    ck_assert_int_eq(clgqa_config_write(&cfg, "/nonexistent/dir/c.yaml"), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("/nonexistent/dir/c.yaml");
}
END_TEST

/* configs/demo.yaml, read as a file, is what the build embedded. */
START_TEST(demo_config_is_the_embedded_demo) {
    clgqa_config file, embedded;
    clgqa_config_defaults(&file);
    ck_assert_int_eq(clgqa_config_load(&file, "configs/demo.yaml"), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_demo(&embedded), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&file), CLGQA_OK);
    ck_assert_int_eq(clgqa_config_finalize(&embedded), CLGQA_OK);
    assert_same(&file, &embedded);
}
END_TEST

START_TEST(shipped_configs_load) {
    DIR *d = opendir("configs");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "configs/%s", e->d_name);
        clgqa_config cfg;
        clgqa_config_defaults(&cfg);
        clgqa_status status = clgqa_config_load(&cfg, path);
        if (status == CLGQA_OK)
            status = clgqa_config_finalize(&cfg);
        ck_assert_msg(status == CLGQA_OK, "%s: %s", path, clgqa_error_message());
        count++;
    }
    closedir(d);
    ck_assert_int_ge(count, 1);
}
END_TEST

START_TEST(scheme_names) {
    for (int s = CLGQA_MHSA; s <= CLGQA_PGQA; s++) {
        clgqa_scheme back;
        ck_assert_int_eq(clgqa_scheme_parse(clgqa_scheme_name((clgqa_scheme)s), &back), CLGQA_OK);
        ck_assert_int_eq(back, s);
    }
    ck_assert_str_eq(clgqa_scheme_name(CLGQA_DGQA_EMA), "dgqa_ema");
    clgqa_scheme back;
    ck_assert_int_eq(clgqa_scheme_parse("GQA", &back), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("'GQA'");
}
END_TEST

int main(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults_are_the_reference_recipe);
    tcase_add_test(tc, demo_keeps_its_own_values);
    tcase_add_test(tc, every_key_is_parsed);
    tcase_add_test(tc, empty_file_keeps_defaults);
    tcase_add_test(tc, scalar_norms_fill_every_channel);
    tcase_add_test(tc, size_presets);
    tcase_add_test(tc, mhsa_ignores_num_kv_heads);
    tcase_add_test(tc, heads_not_divisible_refused_for_every_scheme);
    tcase_add_test(tc, cross_key_refusals);
    tcase_add_test(tc, num_classes_from_dataset);
    tcase_add_test(tc, bad_values_refused);
    tcase_add_test(tc, too_long_string_refused);
    tcase_add_test(tc, unknown_and_duplicate_keys_refused);
    tcase_add_test(tc, malformed_files_refused);
    tcase_add_test(tc, config_files_are_bounded);
    tcase_add_test(tc, numbers_beyond_float_refused);
    tcase_add_test(tc, set_overrides);
    tcase_add_test(tc, write_load_round_trip);
    tcase_add_test(tc, demo_config_is_the_embedded_demo);
    tcase_add_test(tc, shipped_configs_load);
    tcase_add_test(tc, scheme_names);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
