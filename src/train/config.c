/* Run configuration: defaults, YAML loading (libyaml), --set overrides,
 * cross-key checks and YAML writing.
 *
 * Every key lives in one table (`keys` below) with its parser and its
 * printer, so loading, --set and writing cannot disagree about a key. A value
 * reaches a parser as `value`: one scalar, or the items of a flow/block list,
 * as text. The parser validates and stores it or fails with a message that
 * names the key, the value and where it came from (file:line or --set). */
#include "config_internal.h"

#include "atomic_file.h"
#include "embedded_files.h"
#include "scheme.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* ---- names ------------------------------------------------------------ */

const char *clgqa_precision_name(clgqa_precision precision) {
    return precision == CLGQA_PRECISION_16_MIXED ? "16-mixed" : "32";
}

/* ---- defaults --------------------------------------------------------- */

void clgqa_config_defaults(clgqa_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    /* The reference's recipe (its training script and timm's ViT-S): a
     * config written for the paper's code trains as it would there. */
    snprintf(cfg->dataset, sizeof cfg->dataset, "cifar10");
    cfg->in_chans = 3;
    cfg->size = 's';
    cfg->att_scheme = CLGQA_MHSA;
    cfg->num_classes = 0; /* from the dataset at finalize */
    cfg->pretrained = 0;
    cfg->window_size = 100;
    cfg->num_kv_heads = 2;
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "runs/train");
    cfg->embed_dim = 384; /* size c without dimensions: ViT-S's */
    cfg->num_layers = 12;
    cfg->num_heads = 6;
    cfg->img_size = 224; /* every size, custom too: the reference resizes to 224 */
    cfg->patch_size = 16;
    cfg->epochs = 5;
    cfg->batch_size = 32;
    cfg->lr = 1e-5f;
    cfg->weight_decay = 0.01f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->schedule = CLGQA_SCHEDULE_CONSTANT;
    cfg->warmup_steps = 0;
    cfg->min_lr = 0.0f;
    cfg->clip_grad_norm = 0.0f;
    cfg->grad_accum_steps = 1;
    /* The reference's AdamW(model.parameters()) decays every tensor; the
     * example configs turn timm's groups on. */
    cfg->no_weight_decay = 0;
    /* timm's regularisers are off in the reference's recipe; the Mixup
     * probabilities are timm's defaults, used once an alpha is set. */
    cfg->label_smoothing = 0.0f;
    cfg->mixup_alpha = 0.0f;
    cfg->cutmix_alpha = 0.0f;
    cfg->mixup_prob = 1.0f;
    cfg->mixup_switch_prob = 0.5f;
    cfg->drop_path = 0.0f;
    cfg->model_ema_decay = 0.0f;
    cfg->best_follows_ema = 0;
    cfg->seed = 42;
    cfg->max_steps_per_epoch = 0;
    cfg->max_eval_batches = 0;
    cfg->log_steps = 50;
    cfg->checkpoint_steps = 0;
    cfg->shuffle = 1;
    cfg->augment = CLGQA_AUGMENT_RANDAUGMENT;
    snprintf(cfg->device_class, sizeof cfg->device_class, "auto");
    snprintf(cfg->attention_kernel, sizeof cfg->attention_kernel, "auto");
    snprintf(cfg->gemm_kernel, sizeof cfg->gemm_kernel, "auto");
    cfg->pos_embed_antialias = 1; /* what timm does loading a checkpoint at another size */
    cfg->save_model = 1;
    cfg->skip_unreadable = 0;
    cfg->label_mode_coarse = 0;
    for (int c = 0; c < 3; c++) {
        cfg->norm_mean[c] = 0.5f;
        cfg->norm_std[c] = 0.5f;
    }
}

/* ---- values and their origin ------------------------------------------ */

#define MAX_ITEMS 16 /* the longest list: a device per rank of a node */

typedef struct value {
    const char *items[MAX_ITEMS];
    int count;
    int is_list;
    int is_null; /* a plain empty, ~ or null scalar */
} value;

/* Where a value came from, for messages: "file:line" or "--set". */
typedef struct origin {
    const char *file; /* NULL for --set */
    size_t line;
} origin;

static void origin_text(const origin *at, char *buf, size_t size) {
    if (at->file)
        snprintf(buf, size, "%s:%zu", at->file, at->line);
    else
        snprintf(buf, size, "--set");
}

/* The value as the user wrote it, for messages. */
static void value_text(const value *v, char *buf, size_t size) {
    if (!v->is_list) {
        snprintf(buf, size, "%s", v->items[0]);
        return;
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < v->count && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", v->items[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

static clgqa_status bad_value(const origin *at, const char *key, const value *v, const char *expected) {
    char where[1100], shown[256];
    origin_text(at, where, sizeof where);
    value_text(v, shown, sizeof shown);
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: key '%s': bad value '%s' (expected %s)", where, key,
                      shown, expected);
}

/* ---- scalar parsing --------------------------------------------------- */

static int parse_long(const char *text, long long lo, long long hi, long long *out) {
    if (!text[0])
        return 0;
    errno = 0;
    char *end;
    long long x = strtoll(text, &end, 10);
    if (*end || errno == ERANGE || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

/* The accepted range of a float key: [lo, hi], an end excluded when its
 * *_open flag is set. */
typedef struct float_range {
    double lo, hi;
    int lo_open, hi_open;
    const char *expected; /* words for messages */
} float_range;

static int parse_float(const char *text, const float_range *r, float *out) {
    if (!text[0])
        return 0;
    errno = 0;
    char *end;
    double x = strtod(text, &end);
    if (*end || errno == ERANGE || !isfinite(x) || fabs(x) > FLT_MAX ||
        (x != 0 && (float)x == 0)) /* no float so small: it would be 0 */
        return 0;
    if (x < r->lo || (r->lo_open && x == r->lo) || x > r->hi || (r->hi_open && x == r->hi))
        return 0;
    *out = (float)x;
    return 1;
}

/* A number that is fine as a double but has no float of its magnitude
 * (1e39, 1e-50): its refusal says so, not just the key's range. */
static int beyond_float(const char *text) {
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    return end != text && !*end && isfinite(x) && x != 0 &&
           (fabs(x) > FLT_MAX || fabs(x) < FLT_MIN || errno == ERANGE);
}

static int parse_u64(const char *text, unsigned long long *out) {
    /* strtoull would accept "-1" as 2^64 - 1. */
    if (!text[0] || text[0] == '-')
        return 0;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(text, &end, 10);
    if (*end || errno == ERANGE)
        return 0;
    *out = x;
    return 1;
}

static int parse_bool(const char *text, int *out) {
    if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0) {
        *out = 1;
        return 1;
    }
    if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0) {
        *out = 0;
        return 1;
    }
    return 0;
}

/* ---- the key table ---------------------------------------------------- */

enum kind { K_INT, K_FLOAT, K_BOOL, K_STRING, K_SEED, K_CUSTOM };

struct key;
typedef clgqa_status (*custom_set)(clgqa_config *cfg, const struct key *k, const value *v,
                                   const origin *at);
/* Print a key's value as up to MAX_ITEMS scalars; returns the count, or -1
 * for a scalar (1 item, written without brackets). */
typedef int (*custom_show)(const clgqa_config *cfg, char items[MAX_ITEMS][1024]);

typedef struct key {
    const char *name;
    enum kind kind;
    size_t offset;     /* field in clgqa_config (not K_CUSTOM) */
    size_t size;       /* K_STRING: field capacity */
    long long min_int; /* K_INT: smallest accepted */
    float_range range; /* K_FLOAT */
    custom_set set;    /* K_CUSTOM */
    custom_show show;  /* K_CUSTOM */
} key;

#define FIELD(f) offsetof(clgqa_config, f)
#define INT_KEY(n, min) {.name = #n, .kind = K_INT, .offset = FIELD(n), .min_int = (min)}
#define FLOAT_KEY(n, ...) {.name = #n, .kind = K_FLOAT, .offset = FIELD(n), .range = __VA_ARGS__}
#define BOOL_KEY(n) {.name = #n, .kind = K_BOOL, .offset = FIELD(n)}
#define STRING_KEY(n) {.name = #n, .kind = K_STRING, .offset = FIELD(n), .size = sizeof(((clgqa_config *)0)->n)}
#define CUSTOM_KEY(n) {.name = #n, .kind = K_CUSTOM, .set = set_##n, .show = show_##n}

static int one_scalar(const value *v) { return !v->is_list && !v->is_null; }

static clgqa_status set_choice(const char *const *names, size_t count, const char *expected,
                               const struct key *k, const value *v, const origin *at, size_t *index) {
    if (one_scalar(v))
        for (size_t i = 0; i < count; i++)
            if (strcmp(v->items[0], names[i]) == 0) {
                *index = i;
                return CLGQA_OK;
            }
    return bad_value(at, k->name, v, expected);
}

static clgqa_status set_dataset(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    if (!one_scalar(v) || !clgqa_dataset_find(v->items[0])) {
        char expected[300];
        snprintf(expected, sizeof expected, "one of %s", clgqa_dataset_names());
        return bad_value(at, k->name, v, expected);
    }
    /* An alias (the paper's "oxfordiitpet") is kept by its clgqa name. */
    snprintf(cfg->dataset, sizeof cfg->dataset, "%s", clgqa_dataset_find(v->items[0])->name);
    return CLGQA_OK;
}
static int show_dataset(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->dataset);
    return -1;
}

/* The dataset readers deliver gray (1) or RGB (3) images. */
static clgqa_status set_in_chans(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"1", "3"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 2, "1 or 3", k, v, at, &i));
    cfg->in_chans = i == 0 ? 1 : 3;
    return CLGQA_OK;
}
static int show_in_chans(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%d", cfg->in_chans);
    return -1;
}

static clgqa_status set_size(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"s", "b", "l", "c"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 4, "s, b, l or c", k, v, at, &i));
    cfg->size = names[i][0];
    return CLGQA_OK;
}
static int show_size(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%c", cfg->size);
    return -1;
}

static clgqa_status set_att_scheme(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    clgqa_scheme scheme;
    if (!one_scalar(v) || clgqa_scheme_parse(v->items[0], &scheme) != CLGQA_OK)
        return bad_value(at, k->name, v, clgqa_scheme_list());
    cfg->att_scheme = scheme;
    return CLGQA_OK;
}
static int show_att_scheme(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", clgqa_scheme_name(cfg->att_scheme));
    return -1;
}

static clgqa_status set_schedule(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"constant", "cosine"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 2, "constant or cosine", k, v, at, &i));
    cfg->schedule = i == 0 ? CLGQA_SCHEDULE_CONSTANT : CLGQA_SCHEDULE_COSINE;
    return CLGQA_OK;
}
static int show_schedule(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->schedule == CLGQA_SCHEDULE_COSINE ? "cosine" : "constant");
    return -1;
}

static clgqa_status set_augment(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    clgqa_augment augment;
    if (!one_scalar(v) || clgqa_augment_parse(v->items[0], &augment) != CLGQA_OK)
        return bad_value(at, k->name, v, "none, flip, crop_flip or randaugment");
    cfg->augment = augment;
    return CLGQA_OK;
}
static int show_augment(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", clgqa_augment_name(cfg->augment));
    return -1;
}

/* The code-path knobs, kept as their names; "auto" leaves the choice to
 * whoever opens the runtime (clgqa_config_runtime_options). */
static clgqa_status set_knob(char *field, size_t size, const char *const names[3],
                             const char *expected, const struct key *k, const value *v,
                             const origin *at) {
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 3, expected, k, v, at, &i));
    snprintf(field, size, "%s", names[i]);
    return CLGQA_OK;
}
static clgqa_status set_device_class(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"auto", "cpu", "gpu"};
    return set_knob(cfg->device_class, sizeof cfg->device_class, names, "auto, cpu or gpu", k, v, at);
}
static int show_device_class(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->device_class);
    return -1;
}
static clgqa_status set_attention_kernel(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"auto", "rows", "tiled"};
    return set_knob(cfg->attention_kernel, sizeof cfg->attention_kernel, names, "auto, rows or tiled",
                    k, v, at);
}
static int show_attention_kernel(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->attention_kernel);
    return -1;
}
static clgqa_status set_gemm_kernel(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"auto", "direct", "indirect"};
    return set_knob(cfg->gemm_kernel, sizeof cfg->gemm_kernel, names, "auto, direct or indirect", k,
                    v, at);
}
static int show_gemm_kernel(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->gemm_kernel);
    return -1;
}

static clgqa_status set_precision(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"32", "16-mixed"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 2, "32 or 16-mixed", k, v, at, &i));
    cfg->precision = i == 0 ? CLGQA_PRECISION_32 : CLGQA_PRECISION_16_MIXED;
    return CLGQA_OK;
}
static int show_precision(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", clgqa_precision_name(cfg->precision));
    return -1;
}

/* device: one spec, or a list of specs, one per rank of a node (stored
 * joined by commas, see clgqa_mpi_device_spec). */
static clgqa_status set_device(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char expected[] = "a device (index, gpu, cpu or part of a name) or a list of them";
    char joined[sizeof cfg->device];
    size_t used = 0;
    if (v->is_null) {
        cfg->device[0] = '\0';
        return CLGQA_OK;
    }
    for (int i = 0; i < v->count; i++) {
        if (!v->items[i][0] || strchr(v->items[i], ','))
            return bad_value(at, k->name, v, expected);
        used += (size_t)snprintf(joined + used, sizeof joined - used, "%s%s", i ? "," : "",
                                 v->items[i]);
        if (used >= sizeof joined)
            return bad_value(at, k->name, v, expected);
    }
    snprintf(cfg->device, sizeof cfg->device, "%s", v->count ? joined : "");
    return CLGQA_OK;
}
static int show_device(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    if (!strchr(cfg->device, ',')) {
        snprintf(items[0], 1024, "%s", cfg->device);
        return -1;
    }
    int count = 0;
    for (const char *p = cfg->device; count < MAX_ITEMS; count++) {
        size_t n = strcspn(p, ",");
        snprintf(items[count], 1024, "%.*s", (int)n, p);
        if (!p[n]) {
            count++;
            break;
        }
        p += n + 1;
    }
    return count;
}

static clgqa_status set_best_follows(clgqa_config *cfg, const struct key *k, const value *v,
                                     const origin *at) {
    static const char *const names[] = {"raw", "ema"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 2, "raw or ema", k, v, at, &i));
    cfg->best_follows_ema = (int)i;
    return CLGQA_OK;
}
static int show_best_follows(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->best_follows_ema ? "ema" : "raw");
    return -1;
}

static clgqa_status set_label_mode(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const char *const names[] = {"fine", "coarse"};
    size_t i = 0;
    CLGQA_TRY(set_choice(names, 2, "fine or coarse", k, v, at, &i));
    cfg->label_mode_coarse = (int)i;
    return CLGQA_OK;
}
static int show_label_mode(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    snprintf(items[0], 1024, "%s", cfg->label_mode_coarse ? "coarse" : "fine");
    return -1;
}

/* Shortest decimal that reads back as the same float, so written configs
 * say 0.001 rather than 0.00100000005. */
static void format_float(float x, char *buf, size_t size) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x)
            break;
    }
    /* YAML 1.1 readers (PyYAML) take "1e-05" for a string; "1.0e-05" is a float. */
    char *e = strchr(buf, 'e');
    if (e && !memchr(buf, '.', (size_t)(e - buf)) && strlen(buf) + 2 < size) {
        memmove(e + 2, e, strlen(e) + 1);
        memcpy(e, ".0", 2);
    }
}

static clgqa_status set_betas(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const float_range beta = {0.0, 1.0, 0, 1, NULL};
    float b[2];
    if (!v->is_list || v->count != 2 || !parse_float(v->items[0], &beta, &b[0]) ||
        !parse_float(v->items[1], &beta, &b[1]))
        return bad_value(at, k->name, v, "a list [beta1, beta2] of numbers in [0, 1)");
    cfg->beta1 = b[0];
    cfg->beta2 = b[1];
    return CLGQA_OK;
}
static int show_betas(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    format_float(cfg->beta1, items[0], 1024);
    format_float(cfg->beta2, items[1], 1024);
    return 2;
}

/* norm_mean / norm_std: one number for every channel, or one per channel of
 * a 3-channel input. */
static clgqa_status set_channels(float out[3], const float_range *r, const struct key *k, const value *v,
                                 const origin *at) {
    char expected[128];
    snprintf(expected, sizeof expected, "a number %s, or a list of 1 or 3 such numbers", r->expected);
    float x[3];
    if (v->is_null || (v->count != 1 && v->count != 3))
        return bad_value(at, k->name, v, expected);
    for (int i = 0; i < v->count; i++)
        if (!parse_float(v->items[i], r, &x[i]))
            return bad_value(at, k->name, v, expected);
    for (int c = 0; c < 3; c++)
        out[c] = x[v->count == 1 ? 0 : c];
    return CLGQA_OK;
}
static int show_channels(const float in[3], char items[MAX_ITEMS][1024]) {
    for (int c = 0; c < 3; c++)
        format_float(in[c], items[c], 1024);
    return 3;
}
static clgqa_status set_norm_mean(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const float_range any = {-FLT_MAX, FLT_MAX, 0, 0, "(finite)"};
    return set_channels(cfg->norm_mean, &any, k, v, at);
}
static int show_norm_mean(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    return show_channels(cfg->norm_mean, items);
}
static clgqa_status set_norm_std(clgqa_config *cfg, const struct key *k, const value *v, const origin *at) {
    static const float_range positive = {0.0, FLT_MAX, 1, 0, "> 0"};
    return set_channels(cfg->norm_std, &positive, k, v, at);
}
static int show_norm_std(const clgqa_config *cfg, char items[MAX_ITEMS][1024]) {
    return show_channels(cfg->norm_std, items);
}

#define POSITIVE {0.0, FLT_MAX, 1, 0, "> 0"}
#define NON_NEGATIVE {0.0, FLT_MAX, 0, 0, ">= 0"}
#define UNIT_OPEN {0.0, 1.0, 0, 1, "in [0, 1)"}
#define UNIT {0.0, 1.0, 0, 0, "in [0, 1]"}

/* Order here is the order of written configs: the reference keys first. */
static const key keys[] = {
    CUSTOM_KEY(dataset),
    CUSTOM_KEY(in_chans),
    CUSTOM_KEY(size),
    CUSTOM_KEY(att_scheme),
    INT_KEY(num_classes, 0),
    BOOL_KEY(pretrained),
    INT_KEY(window_size, 1),
    INT_KEY(num_kv_heads, 1),
    STRING_KEY(out_dir),
    INT_KEY(embed_dim, 1),
    INT_KEY(num_layers, 1),
    INT_KEY(num_heads, 1),
    STRING_KEY(data_dir),
    INT_KEY(img_size, 1),
    INT_KEY(patch_size, 1),
    INT_KEY(epochs, 1),
    INT_KEY(batch_size, 1),
    FLOAT_KEY(lr, POSITIVE),
    FLOAT_KEY(weight_decay, NON_NEGATIVE),
    CUSTOM_KEY(betas),
    FLOAT_KEY(eps, POSITIVE),
    CUSTOM_KEY(schedule),
    INT_KEY(warmup_steps, 0),
    FLOAT_KEY(min_lr, NON_NEGATIVE),
    FLOAT_KEY(clip_grad_norm, NON_NEGATIVE),
    INT_KEY(grad_accum_steps, 1),
    BOOL_KEY(no_weight_decay),
    FLOAT_KEY(label_smoothing, UNIT_OPEN),
    FLOAT_KEY(mixup_alpha, NON_NEGATIVE),
    FLOAT_KEY(cutmix_alpha, NON_NEGATIVE),
    FLOAT_KEY(mixup_prob, UNIT),
    FLOAT_KEY(mixup_switch_prob, UNIT),
    FLOAT_KEY(drop_path, UNIT_OPEN),
    FLOAT_KEY(model_ema_decay, UNIT_OPEN),
    CUSTOM_KEY(best_follows),
    {.name = "seed", .kind = K_SEED},
    INT_KEY(max_steps_per_epoch, 0),
    INT_KEY(max_eval_batches, 0),
    INT_KEY(log_steps, 1),
    INT_KEY(checkpoint_steps, 0),
    BOOL_KEY(shuffle),
    CUSTOM_KEY(augment),
    STRING_KEY(pretrained_ckpt),
    BOOL_KEY(pos_embed_antialias),
    BOOL_KEY(save_model),
    BOOL_KEY(skip_unreadable),
    CUSTOM_KEY(device),
    BOOL_KEY(allow_shared_device),
    CUSTOM_KEY(device_class),
    CUSTOM_KEY(attention_kernel),
    CUSTOM_KEY(gemm_kernel),
    CUSTOM_KEY(precision),
    CUSTOM_KEY(label_mode),
    CUSTOM_KEY(norm_mean),
    CUSTOM_KEY(norm_std),
};
#define KEY_COUNT (sizeof keys / sizeof keys[0])
_Static_assert(KEY_COUNT <= 64, "keys_given is a 64-bit mask");

static const key *find_key(const char *name, size_t *index) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0) {
            *index = i;
            return &keys[i];
        }
    return NULL;
}

/* Edit distance (insertions, deletions, substitutions), capped: names past
 * the longest key are never near one. */
static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(b), row[64];
    if (strlen(a) >= 64 || n >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= n; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[n];
}

static clgqa_status unknown_key(const char *name, const origin *at) {
    char where[1100];
    origin_text(at, where, sizeof where);
    const char *nearest = NULL;
    size_t best = 3; /* suggest only for a typo or two */
    for (size_t i = 0; i < KEY_COUNT; i++) {
        size_t d = edit_distance(name, keys[i].name);
        if (d < best) {
            best = d;
            nearest = keys[i].name;
        }
    }
    if (nearest)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: unknown key '%s' (did you mean '%s'?)", where, name, nearest);
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: unknown key '%s'", where, name);
}

static clgqa_status set_key(clgqa_config *cfg, const char *name, const value *v, const origin *at) {
    size_t index;
    const key *k = find_key(name, &index);
    if (!k)
        return unknown_key(name, at);
    char *field = (char *)cfg + k->offset;
    switch (k->kind) {
    case K_INT: {
        long long x;
        if (!one_scalar(v) || !parse_long(v->items[0], k->min_int, INT_MAX, &x))
            return bad_value(at, k->name, v, k->min_int > 0 ? "a positive integer" : "an integer >= 0");
        *(int *)field = (int)x;
        break;
    }
    case K_FLOAT: {
        char expected[160];
        snprintf(expected, sizeof expected, "a number %s", k->range.expected);
        if (one_scalar(v) && beyond_float(v->items[0]))
            snprintf(expected, sizeof expected, "a number %s; this one is beyond a 32-bit float, "
                     "whose magnitudes lie in [1.2e-38, 3.4e+38]", k->range.expected);
        if (!one_scalar(v) || !parse_float(v->items[0], &k->range, (float *)field))
            return bad_value(at, k->name, v, expected);
        break;
    }
    case K_BOOL:
        if (!one_scalar(v) || !parse_bool(v->items[0], (int *)field))
            return bad_value(at, k->name, v, "true, false, 1 or 0");
        break;
    case K_STRING:
        if (v->is_list)
            return bad_value(at, k->name, v, "a string");
        if (strlen(v->items[0]) >= k->size) {
            char where[1100];
            origin_text(at, where, sizeof where);
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: key '%s': value is %zu characters, the limit is %zu",
                              where, k->name, strlen(v->items[0]), k->size - 1);
        }
        snprintf(field, k->size, "%s", v->is_null ? "" : v->items[0]);
        break;
    case K_SEED:
        if (!one_scalar(v) || !parse_u64(v->items[0], &cfg->seed))
            return bad_value(at, k->name, v, "an integer in [0, 2^64)");
        break;
    case K_CUSTOM:
        CLGQA_TRY(k->set(cfg, k, v, at));
        break;
    }
    cfg->keys_given |= 1ull << index;
    return CLGQA_OK;
}

int clgqa_config_has_key(const char *name) {
    size_t index;
    return find_key(name, &index) != NULL;
}

int clgqa_config_given(const clgqa_config *cfg, const char *name) {
    size_t index;
    return find_key(name, &index) && (cfg->keys_given >> index & 1);
}

/* ---- YAML loading ----------------------------------------------------- */

static int is_plain_null(const yaml_node_t *node) {
    const char *text = (const char *)node->data.scalar.value;
    return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!text[0] || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
            strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0);
}

static clgqa_status yaml_error(const char *path, const yaml_parser_t *parser) {
    return clgqa_fail(CLGQA_ERR_FORMAT, "%s:%zu: YAML syntax error: %s%s%s", path,
                      parser->problem_mark.line + 1, parser->problem ? parser->problem : "unknown problem",
                      parser->context ? " " : "", parser->context ? parser->context : "");
}

/* Turn one mapping value node into a `value`. */
static clgqa_status node_value(yaml_document_t *doc, yaml_node_t *node, const char *name, const origin *at,
                               value *v) {
    memset(v, 0, sizeof *v);
    if (node->type == YAML_SCALAR_NODE) {
        v->items[0] = (const char *)node->data.scalar.value;
        v->count = 1;
        v->is_null = is_plain_null(node);
        return CLGQA_OK;
    }
    char where[1100];
    origin_text(at, where, sizeof where);
    if (node->type == YAML_MAPPING_NODE)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: key '%s': bad value (a mapping; expected a scalar or a list)",
                          where, name);
    v->is_list = 1;
    for (yaml_node_item_t *item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++) {
        yaml_node_t *child = yaml_document_get_node(doc, *item);
        if (v->count == MAX_ITEMS)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: key '%s': bad value (a list of more than %d items)", where,
                              name, MAX_ITEMS);
        if (child->type != YAML_SCALAR_NODE)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: key '%s': bad value (a nested list or mapping)", where,
                              name);
        v->items[v->count++] = (const char *)child->data.scalar.value;
    }
    return CLGQA_OK;
}

static clgqa_status apply_document(clgqa_config *cfg, const char *path, yaml_document_t *doc) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root)
        return CLGQA_OK; /* an empty file keeps every value */
    if (root->type == YAML_SCALAR_NODE && is_plain_null(root))
        return CLGQA_OK;
    if (root->type != YAML_MAPPING_NODE)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s:%zu: expected a mapping of key: value lines", path,
                          root->start_mark.line + 1);
    unsigned long long seen = 0;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = yaml_document_get_node(doc, pair->key);
        yaml_node_t *value_node = yaml_document_get_node(doc, pair->value);
        origin at = {path, key_node->start_mark.line + 1};
        if (key_node->type != YAML_SCALAR_NODE)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s:%zu: a key must be a plain name", path, at.line);
        const char *name = (const char *)key_node->data.scalar.value;
        size_t index;
        if (find_key(name, &index)) {
            if (seen >> index & 1)
                return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s:%zu: key '%s' given twice", path, at.line, name);
            seen |= 1ull << index;
        }
        value v;
        CLGQA_TRY(node_value(doc, value_node, name, &at, &v));
        CLGQA_TRY(set_key(cfg, name, &v, &at));
    }
    return CLGQA_OK;
}

/* The one document `parser` reads, applied to a copy of cfg so that a
 * failing file leaves cfg untouched; `label` names the file in messages. */
static clgqa_status apply_yaml(clgqa_config *cfg, const char *label, yaml_parser_t *parser) {
    clgqa_config next = *cfg;
    clgqa_status status = CLGQA_OK;
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        status = yaml_error(label, parser);
    } else {
        status = apply_document(&next, label, &doc);
        yaml_document_delete(&doc);
        /* A second document would be silently ignored otherwise. */
        if (status == CLGQA_OK) {
            if (!yaml_parser_load(parser, &doc)) {
                status = yaml_error(label, parser);
            } else {
                if (yaml_document_get_root_node(&doc))
                    status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: more than one YAML document", label);
                yaml_document_delete(&doc);
            }
        }
    }
    if (status == CLGQA_OK)
        *cfg = next;
    return status;
}

/* A config is a page of keys: a file over this is not one (a mistaken path,
 * or a file made to exhaust the parser), and is refused before parsing. */
#define CONFIG_MAX_BYTES (1 << 20)
/* A flat mapping whose values are scalars or lists is 2 levels deep; a few
 * more give a clear "nested list" message. Deeper input is refused by the
 * event scan below before any document is built (libyaml's scanner slows
 * with the square of the depth). */
#define CONFIG_MAX_DEPTH 8

/* The whole file, at most CONFIG_MAX_BYTES (malloc'ed, NUL-terminated). */
static clgqa_status read_config_file(const char *path, char **text, size_t *size) {
    *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return clgqa_fail(CLGQA_ERR_IO, "cannot open config '%s': %s", path, strerror(errno));
    char *buf = malloc(CONFIG_MAX_BYTES + 2);
    if (!buf) {
        fclose(f);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a buffer for config '%s'", path);
    }
    size_t got = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    clgqa_status status = CLGQA_OK;
    if (err == EISDIR)
        status = clgqa_fail(CLGQA_ERR_IO, "config '%s' is a folder, not a YAML file", path);
    else if (err)
        status = clgqa_fail(CLGQA_ERR_IO, "cannot read config '%s': %s", path, strerror(err));
    else if (got > CONFIG_MAX_BYTES)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "config '%s' is over %d KiB: a config is a page of "
                            "key: value lines (is this the right file?)", path,
                            CONFIG_MAX_BYTES / 1024);
    if (status != CLGQA_OK) {
        free(buf);
        return status;
    }
    buf[got] = '\0';
    *text = buf;
    *size = got;
    return CLGQA_OK;
}

/* Refuses text nested deeper than CONFIG_MAX_DEPTH, reading only its events
 * up to that depth. Syntax errors are left to the real parse. */
static clgqa_status check_depth(const char *label, const char *text, size_t size) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_parser_initialize failed for '%s'", label);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, size);
    clgqa_status status = CLGQA_OK;
    int depth = 0;
    for (;;) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event))
            break;
        yaml_event_type_t type = event.type;
        size_t line = event.start_mark.line + 1;
        yaml_event_delete(&event);
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
            depth--;
        if (depth > CONFIG_MAX_DEPTH) {
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s:%zu: lists or mappings nested more than %d "
                                "deep: a config is a flat mapping of key: value lines", label, line,
                                CONFIG_MAX_DEPTH);
            break;
        }
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return status;
}

clgqa_status clgqa_config_load(clgqa_config *cfg, const char *path) {
    char *text = NULL;
    size_t size = 0;
    CLGQA_TRY(read_config_file(path, &text, &size));
    clgqa_status status = check_depth(path, text, size);
    yaml_parser_t parser;
    if (status == CLGQA_OK && !yaml_parser_initialize(&parser))
        status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_parser_initialize failed for '%s'", path);
    else if (status == CLGQA_OK) {
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, size);
        status = apply_yaml(cfg, path, &parser);
        yaml_parser_delete(&parser);
    }
    free(text);
    return status;
}

/* configs/demo.yaml, embedded at build time (cmake/embed_files.cmake). */
clgqa_status clgqa_config_demo(clgqa_config *cfg) {
    clgqa_config_defaults(cfg);
    const char *text = NULL;
    for (const clgqa_embedded_file *f = clgqa_config_files; f->name; f++)
        if (!strcmp(f->name, "demo"))
            text = f->text;
    if (!text)
        return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "configs/demo.yaml was not embedded at build time");
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_parser_initialize failed");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    clgqa_status status = apply_yaml(cfg, "configs/demo.yaml (embedded)", &parser);
    yaml_parser_delete(&parser);
    return status;
}

/* ---- --set ------------------------------------------------------------ */

/* "key=value". A value that starts with '[' is a YAML flow list
 * ("betas=[0.9, 0.95]"); any other value is taken literally, so paths need
 * no quoting. */
clgqa_status clgqa_config_set(clgqa_config *cfg, const char *key_value) {
    const char *eq = strchr(key_value, '=');
    if (!eq || eq == key_value)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "--set '%s': expected key=value", key_value);
    char name[64];
    size_t name_len = (size_t)(eq - key_value);
    if (name_len >= sizeof name)
        return unknown_key(key_value, &(origin){NULL, 0});
    memcpy(name, key_value, name_len);
    name[name_len] = '\0';
    const char *text = eq + 1;
    origin at = {NULL, 0};
    if (text[0] != '[') {
        value v = {{text}, 1, 0, 0};
        return set_key(cfg, name, &v, &at);
    }

    CLGQA_TRY(check_depth("--set", text, strlen(text)));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_parser_initialize failed");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    yaml_document_t doc;
    clgqa_status status;
    if (!yaml_parser_load(&parser, &doc)) {
        status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "--set: key '%s': bad list '%s': %s", name, text,
                            parser.problem ? parser.problem : "YAML syntax error");
    } else {
        value v;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        status = root ? node_value(&doc, root, name, &at, &v)
                      : clgqa_fail(CLGQA_ERR_INVALID_ARG, "--set: key '%s': empty list", name);
        if (status == CLGQA_OK)
            status = set_key(cfg, name, &v, &at);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return status;
}

/* ---- cross-key checks ------------------------------------------------- */

/* pretrained: true without a file: clgqa downloads nothing, so say which
 * conversion makes the file the config needs (timm's ViT of the config's
 * size, at 224 with patch 16). */
static clgqa_status pretrained_without_file(const clgqa_config *cfg) {
    static const struct { char size; const char *timm; } models[] = {
        {'s', "vit_small_patch16_224"}, {'b', "vit_base_patch16_224"}, {'l', "vit_large_patch16_224"}};
    const char *timm = NULL;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (cfg->size == models[i].size)
            timm = models[i].timm;
    char source[160];
    if (timm)
        snprintf(source, sizeof source, "timm's %s weights (timm.create_model('%s', "
                 "pretrained=True).state_dict() saved with safetensors)", timm, timm);
    else
        snprintf(source, sizeof source, "a timm or reference checkpoint of this model's shape");
    return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                      "pretrained: true needs pretrained_ckpt, a file (clgqa downloads nothing): "
                      "from %s, run `clgqa convert CONFIG.yaml --in vit.safetensors --out "
                      "checkpoints/%s.safetensors` and set pretrained_ckpt: "
                      "checkpoints/%s.safetensors",
                      source, timm ? timm : "pretrained", timm ? timm : "pretrained");
}

clgqa_status clgqa_config_finalize(clgqa_config *cfg) {
    /* The reference's timm sizes; each replaces embed_dim, num_layers and
     * num_heads (img_size and patch_size default to 224 and 16 for every size). */
    static const struct { char size; int embed_dim, num_layers, num_heads; } presets[] = {
        {'s', 384, 12, 6}, {'b', 768, 12, 12}, {'l', 1024, 24, 16}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (cfg->size != presets[i].size)
            continue;
        cfg->embed_dim = presets[i].embed_dim;
        cfg->num_layers = presets[i].num_layers;
        cfg->num_heads = presets[i].num_heads;
    }

    const clgqa_dataset_info *data = clgqa_dataset_find(cfg->dataset);
    if (!data)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "dataset '%s' is not one of %s", cfg->dataset,
                          clgqa_dataset_names());
    if (cfg->label_mode_coarse && !data->coarse_classes)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "label_mode coarse: dataset '%s' has no coarse labels (only cifar100)",
                          cfg->dataset);
    if (cfg->num_classes == 0)
        cfg->num_classes = cfg->label_mode_coarse ? data->coarse_classes : data->classes;

    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    CLGQA_TRY(clgqa_model_desc_check(&desc));
    /* MHSA is G = H whatever num_kv_heads says (the reference ignores it). */
    if (clgqa_scheme_traits_of(cfg->att_scheme)->kv_per_head)
        cfg->num_kv_heads = cfg->num_heads;

    if (cfg->pretrained && !cfg->pretrained_ckpt[0])
        return pretrained_without_file(cfg);
    if (cfg->min_lr > cfg->lr)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "min_lr %g is above lr %g: cosine decays from lr "
                          "down to min_lr", (double)cfg->min_lr, (double)cfg->lr);
    if (cfg->best_follows_ema && cfg->model_ema_decay == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "best_follows: ema needs the weights' EMA: set "
                          "model_ema_decay (timm's default is 0.9998)");
    if (cfg->pretrained_ckpt[0]) {
        if (clgqa_config_given(cfg, "pretrained") && !cfg->pretrained)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "pretrained: false contradicts pretrained_ckpt '%s'",
                              cfg->pretrained_ckpt);
        cfg->pretrained = 1;
    }
    return CLGQA_OK;
}

/* ---- YAML writing ----------------------------------------------------- */

static int add_scalar(yaml_document_t *doc, const char *text) {
    return yaml_document_add_scalar(doc, NULL, (yaml_char_t *)text, -1, YAML_ANY_SCALAR_STYLE);
}

/* The value of key k as a YAML node in doc; 0 on allocation failure. */
/* The value of key k as text: one scalar in items[0] (returns -1), or a
 * list of that many items. */
static int key_items(const clgqa_config *cfg, const key *k, char items[MAX_ITEMS][1024]) {
    int count = -1;
    const char *field = (const char *)cfg + k->offset;
    switch (k->kind) {
    case K_INT: snprintf(items[0], 1024, "%d", *(const int *)field); break;
    case K_FLOAT: format_float(*(const float *)field, items[0], 1024); break;
    case K_BOOL: snprintf(items[0], 1024, "%s", *(const int *)field ? "true" : "false"); break;
    case K_STRING: snprintf(items[0], 1024, "%s", field); break;
    case K_SEED: snprintf(items[0], 1024, "%llu", cfg->seed); break;
    case K_CUSTOM: count = k->show(cfg, items); break;
    }
    return count;
}

static int key_node(yaml_document_t *doc, const clgqa_config *cfg, const key *k) {
    char items[MAX_ITEMS][1024];
    int count = key_items(cfg, k, items);
    if (count < 0)
        return add_scalar(doc, items[0]);
    int seq = yaml_document_add_sequence(doc, NULL, YAML_FLOW_SEQUENCE_STYLE);
    for (int i = 0; seq && i < count; i++) {
        int item = add_scalar(doc, items[i]);
        if (!item || !yaml_document_append_sequence_item(doc, seq, item))
            return 0;
    }
    return seq;
}

clgqa_status clgqa_config_write(const clgqa_config *cfg, const char *path) {
    yaml_document_t doc;
    if (!yaml_document_initialize(&doc, NULL, NULL, NULL, 1, 1))
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_document_initialize failed writing '%s'", path);
    int map = yaml_document_add_mapping(&doc, NULL, YAML_BLOCK_MAPPING_STYLE);
    int ok = map != 0;
    for (size_t i = 0; ok && i < KEY_COUNT; i++) {
        int name = add_scalar(&doc, keys[i].name);
        int val = name ? key_node(&doc, cfg, &keys[i]) : 0;
        ok = val && yaml_document_append_mapping_pair(&doc, map, name, val);
    }
    if (!ok) {
        yaml_document_delete(&doc);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "building the YAML document for '%s' failed", path);
    }

    /* Atomic: a resumed run reads this file back, so it must never be torn. */
    clgqa_atomic_file af;
    clgqa_status status = clgqa_atomic_begin(path, &af);
    if (status != CLGQA_OK) {
        yaml_document_delete(&doc);
        return status;
    }
    yaml_emitter_t emitter;
    if (!yaml_emitter_initialize(&emitter)) {
        yaml_document_delete(&doc);
        clgqa_atomic_abort(&af);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "yaml_emitter_initialize failed writing '%s'", path);
    }
    yaml_emitter_set_output_file(&emitter, af.f);
    yaml_emitter_set_unicode(&emitter, 1);
    yaml_emitter_set_width(&emitter, -1); /* keep long paths on one line */
    /* yaml_emitter_dump deletes the document whether or not it succeeds. */
    ok = yaml_emitter_dump(&emitter, &doc) && yaml_emitter_close(&emitter) && yaml_emitter_flush(&emitter);
    if (ok) {
        status = clgqa_atomic_commit(&af);
    } else {
        status = clgqa_fail(CLGQA_ERR_IO, "writing config '%s' failed: %s", path,
                            emitter.problem ? emitter.problem : "emitter error");
        clgqa_atomic_abort(&af);
    }
    yaml_emitter_delete(&emitter);
    return status;
}

/* ---- the public, opaque side (clgqa/config.h) ------------------------- */

clgqa_status clgqa_run_config(const char *path, const char *const *sets, int set_count,
                              clgqa_config *cfg) {
    if (path) {
        clgqa_config_defaults(cfg);
        CLGQA_TRY(clgqa_config_load(cfg, path));
    } else {
        CLGQA_TRY(clgqa_config_demo(cfg));
    }
    for (int i = 0; i < set_count; i++)
        CLGQA_TRY(clgqa_config_set(cfg, sets[i]));
    return clgqa_config_finalize(cfg);
}

clgqa_status clgqa_config_create(const char *path, const char *const *sets, int set_count,
                                 clgqa_config **out) {
    *out = NULL;
    clgqa_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a configuration");
    clgqa_status status = clgqa_run_config(path, sets, set_count, cfg);
    if (status != CLGQA_OK) {
        free(cfg);
        return status;
    }
    *out = cfg;
    return CLGQA_OK;
}

void clgqa_config_destroy(clgqa_config *cfg) { free(cfg); }

clgqa_status clgqa_config_get(const clgqa_config *cfg, const char *name, char *text, size_t size) {
    size_t index;
    const key *k = find_key(name, &index);
    if (!k)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_config_get: no key '%s'", name);
    char items[MAX_ITEMS][1024];
    int count = key_items(cfg, k, items);
    /* The whole text's length, even where it does not fit (for the message). */
    size_t used = 0;
    if (count < 0) {
        used = (size_t)snprintf(text, size, "%s", items[0]);
    } else {
        used = (size_t)snprintf(text, size, "[");
        for (int i = 0; i < count; i++)
            used += (size_t)snprintf(used < size ? text + used : NULL, used < size ? size - used : 0,
                                     "%s%s", i ? ", " : "", items[i]);
        used += (size_t)snprintf(used < size ? text + used : NULL, used < size ? size - used : 0,
                                 "]");
    }
    if (used >= size)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_config_get: the value of '%s' needs %zu bytes, "
                          "not %zu", name, used + 1, size);
    return CLGQA_OK;
}

void clgqa_config_model_desc(const clgqa_config *cfg, clgqa_model_desc *out) {
    memset(out, 0, sizeof *out);
    out->scheme = cfg->att_scheme;
    out->img_size = cfg->img_size;
    out->patch_size = cfg->patch_size;
    out->in_chans = cfg->in_chans;
    out->embed_dim = cfg->embed_dim;
    out->num_layers = cfg->num_layers;
    out->num_heads = cfg->num_heads;
    out->num_kv_heads = cfg->num_kv_heads;
    out->num_classes = cfg->num_classes;
    out->window_size = cfg->window_size;
    out->seed = cfg->seed;
}

void clgqa_config_dataset_options(const clgqa_config *cfg, clgqa_dataset_options *out) {
    memset(out, 0, sizeof *out);
    out->name = cfg->dataset;
    out->data_dir = cfg->data_dir;
    out->img_size = cfg->img_size;
    out->in_chans = cfg->in_chans;
    out->num_classes = cfg->num_classes;
    out->augment = cfg->augment;
    memcpy(out->norm_mean, cfg->norm_mean, sizeof out->norm_mean);
    memcpy(out->norm_std, cfg->norm_std, sizeof out->norm_std);
    out->seed = cfg->seed;
    out->flags = (cfg->skip_unreadable ? CLGQA_DATASET_SKIP_UNREADABLE : 0) |
                 (cfg->label_mode_coarse ? CLGQA_DATASET_COARSE_LABELS : 0);
}

void clgqa_config_runtime_options(const clgqa_config *cfg, clgqa_runtime_options *out) {
    /* The keys were validated on the way in: a name that does not parse
     * cannot reach here, and would leave the field as it is. */
    clgqa_device_class device_class;
    clgqa_attention_kernel attention_kernel;
    clgqa_gemm_kernel gemm_kernel;
    if (clgqa_device_class_parse(cfg->device_class, &device_class) == CLGQA_OK &&
        device_class != CLGQA_CLASS_AUTO)
        out->device_class = device_class;
    if (clgqa_attention_kernel_parse(cfg->attention_kernel, &attention_kernel) == CLGQA_OK &&
        attention_kernel != CLGQA_ATTENTION_AUTO)
        out->attention_kernel = attention_kernel;
    if (clgqa_gemm_kernel_parse(cfg->gemm_kernel, &gemm_kernel) == CLGQA_OK &&
        gemm_kernel != CLGQA_GEMM_AUTO)
        out->gemm_kernel = gemm_kernel;
}
