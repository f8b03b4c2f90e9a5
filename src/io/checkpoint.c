/* Checkpoints: the model's flat buffers to and from safetensors under the
 * reference state_dict names, plus the uptraining conversion of timm and
 * MHSA checkpoints. See clgqa/checkpoint.h. */
#include "clgqa/checkpoint.h"

#include "fail.h"
#include "scheme.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pos_embed.h"
#include "safetensors.h"
#include "tensor_file.h"

#define OPTIM_M_PREFIX "optim.m."
#define OPTIM_V_PREFIX "optim.v."
#define EMA_PREFIX "ema." /* the weights' EMA in a training checkpoint */
#define NAME_BUF (CLGQA_TENSOR_NAME_MAX + 16)
/* Metadata pairs a file can hold: the model's 10, a training checkpoint's
 * 12 more and the loss scaler's 3 (25), and room to grow. */
#define CHECKPOINT_META_MAX 32

static int has_cache(const clgqa_model *model) {
    return clgqa_scheme_traits_of(clgqa_model_get_desc(model)->scheme)->has_cache;
}

static void *alloc_or_fail(size_t bytes, const char *what, clgqa_status *status) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        *status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for %s", bytes, what);
    return p;
}

/* ---- writing ------------------------------------------------------------- */

/* Everything one checkpoint file holds, gathered on the host. */
typedef struct checkpoint_out {
    clgqa_safetensor_out *tensors;
    int64_t *shapes;   /* CLGQA_TENSOR_MAX_DIMS per tensor */
    char (*names)[NAME_BUF];
    size_t count, capacity;
    float *buffers[4]; /* params, adam m, adam v, the EMA */
    float *cache;      /* [layers * G] */
    int64_t *split;    /* [layers * G] */
    char meta_values[CHECKPOINT_META_MAX][64];
    clgqa_metadata_pair meta[CHECKPOINT_META_MAX];
    size_t meta_count;
} checkpoint_out;

static void out_free(checkpoint_out *out) {
    free(out->tensors);
    free(out->shapes);
    free(out->names);
    for (int i = 0; i < 4; i++)
        free(out->buffers[i]);
    free(out->cache);
    free(out->split);
}

static void out_add(checkpoint_out *out, const char *prefix, const char *name, clgqa_dtype dtype,
                    int ndim, const int *shape, const void *data) {
    size_t i = out->count++;
    snprintf(out->names[i], NAME_BUF, "%s%s", prefix, name);
    int64_t *dims = out->shapes + i * CLGQA_TENSOR_MAX_DIMS;
    for (int d = 0; d < ndim; d++)
        dims[d] = shape[d];
    clgqa_safetensor_out t = {out->names[i], dtype, ndim, dims, data};
    out->tensors[i] = t;
}

static void out_meta(checkpoint_out *out, const char *key, const char *fmt, long long value) {
    assert(out->meta_count < CHECKPOINT_META_MAX);
    size_t i = out->meta_count++;
    snprintf(out->meta_values[i], sizeof out->meta_values[i], fmt, value);
    out->meta[i].key = key;
    out->meta[i].value = out->meta_values[i];
}

static void out_text(checkpoint_out *out, const char *key, double value) {
    assert(out->meta_count < CHECKPOINT_META_MAX);
    size_t i = out->meta_count++;
    snprintf(out->meta_values[i], sizeof out->meta_values[i], "%a", value);
    out->meta[i].key = key;
    out->meta[i].value = out->meta_values[i];
}

static clgqa_status gather(clgqa_model *model, int training,
                           checkpoint_out *out) {
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    int tensor_count = clgqa_model_tensor_count(model);
    size_t floats = clgqa_model_param_count(model);
    size_t layers_g = (size_t)dims->num_layers * dims->kv_heads;
    clgqa_status status = CLGQA_OK;
    out->capacity = (size_t)tensor_count * 4 + (size_t)dims->num_layers * 2;
    out->tensors = alloc_or_fail(out->capacity * sizeof *out->tensors, "the checkpoint table", &status);
    out->shapes = alloc_or_fail(out->capacity * CLGQA_TENSOR_MAX_DIMS * sizeof(int64_t), "shapes", &status);
    out->names = alloc_or_fail(out->capacity * sizeof *out->names, "tensor names", &status);
    out->cache = alloc_or_fail(layers_g * sizeof(float), "the DGQA cache", &status);
    out->split = alloc_or_fail(layers_g * sizeof(int64_t), "the DGQA split", &status);
    static const clgqa_model_buffer which[4] = {CLGQA_PARAMS, CLGQA_ADAM_M, CLGQA_ADAM_V,
                                                CLGQA_EMA};
    static const char *const prefixes[4] = {"", OPTIM_M_PREFIX, OPTIM_V_PREFIX, EMA_PREFIX};
    int buffers = training ? (clgqa_model_has_ema(model) ? 4 : 3) : 1;
    for (int b = 0; b < buffers && status == CLGQA_OK; b++)
        if ((out->buffers[b] = alloc_or_fail(floats * sizeof(float), "a flat buffer", &status)))
            status = clgqa_model_read_buffer(model, which[b], out->buffers[b]);
    CLGQA_TRY(status);

    for (int b = 0; b < buffers; b++) {
        for (int i = 0; i < tensor_count; i++) {
            const clgqa_tensor_info *t = clgqa_model_tensor(model, i);
            out_add(out, prefixes[b], t->name, CLGQA_DTYPE_F32, t->ndim, t->shape,
                    out->buffers[b] + t->offset);
        }
    }
    if (has_cache(model)) {
        int32_t counts[64];
        int g_shape[1] = {dims->kv_heads};
        if (dims->kv_heads > 64)
            return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "more than 64 key/value heads");
        for (int layer = 0; layer < dims->num_layers; layer++) {
            float *cache = out->cache + (size_t)layer * dims->kv_heads;
            int64_t *split = out->split + (size_t)layer * dims->kv_heads;
            CLGQA_TRY(clgqa_model_read_grouping(model, layer, cache, counts));
            for (int g = 0; g < dims->kv_heads; g++)
                split[g] = counts[g];
            char name[NAME_BUF];
            snprintf(name, sizeof name, "blocks.%d.attn.cache", layer);
            out_add(out, "", name, CLGQA_DTYPE_F32, 1, g_shape, cache);
            snprintf(name, sizeof name, "blocks.%d.attn.split", layer);
            out_add(out, "", name, CLGQA_DTYPE_I64, 1, g_shape, split);
        }
    }

    out_meta(out, "img_size", "%lld", dims->img_size);
    out_meta(out, "patch_size", "%lld", dims->patch_size);
    out_meta(out, "in_chans", "%lld", dims->in_chans);
    out_meta(out, "embed_dim", "%lld", dims->embed_dim);
    out_meta(out, "depth", "%lld", dims->num_layers);
    out_meta(out, "heads", "%lld", dims->num_heads);
    out_meta(out, "kv_heads", "%lld", dims->kv_heads);
    out_meta(out, "num_classes", "%lld", dims->num_classes);
    out_meta(out, "window_size", "%lld", clgqa_model_get_desc(model)->window_size);
    assert(out->meta_count < CHECKPOINT_META_MAX);
    size_t i = out->meta_count++;
    out->meta[i].key = "att_scheme";
    out->meta[i].value = clgqa_scheme_name(clgqa_model_get_desc(model)->scheme);
    return CLGQA_OK;
}

clgqa_status clgqa_checkpoint_save_model(clgqa_model *model, const char *path) {
    checkpoint_out out;
    memset(&out, 0, sizeof out);
    clgqa_status status = gather(model, 0, &out);
    if (status == CLGQA_OK)
        status = clgqa_safetensors_write(path, out.tensors, out.count, out.meta, out.meta_count);
    out_free(&out);
    return status;
}

clgqa_status clgqa_checkpoint_save_training(clgqa_model *model, const clgqa_train_state *state,
                                            const char *path) {
    checkpoint_out out;
    memset(&out, 0, sizeof out);
    clgqa_status status = gather(model, 1, &out);
    if (status == CLGQA_OK) {
        out_meta(&out, "epochs_done", "%lld", state->epochs_done);
        out_meta(&out, "global_step", "%lld", state->global_step);
        out_meta(&out, "seed", "%llu", (long long)clgqa_model_get_desc(model)->seed);
        out_meta(&out, "epoch_steps", "%lld", state->epoch_steps);
        out_meta(&out, "next_batch", "%lld", state->next_batch);
        out_meta(&out, "epoch_samples", "%lld", state->epoch_metrics.samples);
        out_meta(&out, "best_epoch", "%lld", state->best_epoch);
        /* Doubles in hex ("%a"), so they read back exactly. */
        out_text(&out, "epoch_sum_loss", state->epoch_metrics.sum_loss);
        out_text(&out, "epoch_sum_correct", state->epoch_metrics.sum_correct);
        out_text(&out, "epoch_sum_top5", state->epoch_metrics.sum_top5);
        out_text(&out, "best_test_loss", state->best_test_loss);
        out_meta(&out, "ranks", "%d", state->ranks > 0 ? state->ranks : 1);
        if (state->loss_scale > 0) {
            out_text(&out, "loss_scale", state->loss_scale);
            out_meta(&out, "loss_scale_growth", "%lld", state->loss_scale_growth);
            out_meta(&out, "skipped_steps", "%lld", state->skipped_steps);
        }
        status = clgqa_safetensors_write(path, out.tensors, out.count, out.meta, out.meta_count);
    }
    out_free(&out);
    return status;
}

/* ---- reading ------------------------------------------------------------- */

static int same_shape(const clgqa_tensor *st, const clgqa_tensor_info *t) {
    if (st->ndim != t->ndim)
        return 0;
    for (int d = 0; d < t->ndim; d++)
        if (st->shape[d] != t->shape[d])
            return 0;
    return 1;
}

static clgqa_status shape_mismatch(const clgqa_tensor_set *file, const clgqa_tensor *st,
                                   const clgqa_tensor_info *t) {
    int64_t want[CLGQA_TENSOR_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        want[d] = t->shape[d];
    char got_text[96], want_text[96];
    clgqa_tensor_set_shape_text(st->shape, st->ndim, got_text, sizeof got_text);
    clgqa_tensor_set_shape_text(want, t->ndim, want_text, sizeof want_text);
    return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model needs %s",
                      clgqa_tensor_set_label(file), t->name, got_text, want_text);
}

/* Parses "blocks.<i>.attn.<q|k|v>.<weight|bias>": the projection letter and
 * the kind, or 0. */
static char attn_projection(const char *name, const char **kind) {
    const char *p = strstr(name, ".attn.");
    if (strncmp(name, "blocks.", 7) || !p)
        return 0;
    p += 6;
    if ((p[0] != 'q' && p[0] != 'k' && p[0] != 'v') || p[1] != '.')
        return 0;
    if (strcmp(p + 2, "weight") && strcmp(p + 2, "bias"))
        return 0;
    *kind = p + 2;
    return p[0];
}

/* Where the model's q, k or v tensor `t` lies in a fused
 * `blocks.{i}.attn.qkv.{weight|bias}`: q (C rows), then the file's G' key
 * heads, then its G' value heads ([C + 2*G'*d, C]; timm's MHSA has G' = H,
 * the reference's grouped models their own G). part->st is NULL when the
 * file has no such tensor. */
typedef struct fused_part {
    const clgqa_tensor *st;
    char name[NAME_BUF];
    size_t row_offset; /* rows before the part */
    int rows;          /* rows of the part */
} fused_part;

static clgqa_status find_fused_qkv(const clgqa_tensor_set *file, const clgqa_model_dims *dims,
                                   const clgqa_tensor_info *t, fused_part *part) {
    const char *kind = NULL;
    char proj = attn_projection(t->name, &kind);
    part->st = NULL;
    if (!proj)
        return CLGQA_OK;
    snprintf(part->name, sizeof part->name, "%.*sqkv.%s", (int)(strstr(t->name, ".attn.") + 6 - t->name),
             t->name, kind);
    const clgqa_tensor *st = clgqa_tensor_set_find(file, part->name);
    if (!st)
        return CLGQA_OK;
    int is_weight = !strcmp(kind, "weight");
    int64_t C = dims->embed_dim, d = dims->head_dim, rows = st->ndim ? st->shape[0] : 0;
    if (st->ndim != (is_weight ? 2 : 1) || (is_weight && st->shape[1] != C) || rows <= C ||
        (rows - C) % (2 * d) != 0) {
        char text[96];
        clgqa_tensor_set_shape_text(st->shape, st->ndim, text, sizeof text);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' has shape %s; a fused qkv needs [C + 2*G*d%s] "
                          "with C %d, d %d", clgqa_tensor_set_label(file), part->name, text,
                          is_weight ? ", C" : "", dims->embed_dim, dims->head_dim);
    }
    int64_t kv_rows = (rows - C) / 2;
    part->st = st;
    part->row_offset = (size_t)(proj == 'q' ? 0 : proj == 'k' ? C : C + kv_rows);
    part->rows = (int)(proj == 'q' ? C : kv_rows);
    return CLGQA_OK;
}

/* All of `st` as floats in *scratch, grown as needed. */
static clgqa_status read_scratch(const clgqa_tensor_set *file, const clgqa_tensor *st, float **scratch,
                                 size_t *scratch_floats) {
    if (*scratch_floats < st->numel) {
        float *grown = realloc(*scratch, st->numel * sizeof(float));
        if (!grown)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu floats for '%s'", st->numel,
                              st->name);
        *scratch = grown;
        *scratch_floats = st->numel;
    }
    return clgqa_tensor_set_read_f32(file, st->name, *scratch, st->numel);
}

/* Every tensor of `prefix` + the model's names from `file` into `host` (a
 * flat buffer), shapes checked exactly; the model's q, k, v may come from a
 * fused qkv with the model's key/value heads. */
static clgqa_status read_flat(clgqa_model *model, const clgqa_tensor_set *file,
                              const char *prefix, float *host) {
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    int count = clgqa_model_tensor_count(model);
    float *scratch = NULL;
    size_t scratch_floats = 0;
    clgqa_status status = CLGQA_OK;
    for (int i = 0; i < count && status == CLGQA_OK; i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(model, i);
        char name[NAME_BUF];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const clgqa_tensor *st = clgqa_tensor_set_find(file, name);
        fused_part part = {0};
        if (!st && !*prefix && (status = find_fused_qkv(file, dims, t, &part)) == CLGQA_OK && part.st) {
            if (part.rows != t->shape[0])
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' holds %d key/value heads, the model has "
                                    "%d (clgqa convert averages them into the model's)",
                                    clgqa_tensor_set_label(file), part.name, part.rows / dims->head_dim,
                                    dims->kv_heads);
            if (status == CLGQA_OK)
                status = read_scratch(file, part.st, &scratch, &scratch_floats);
            if (status == CLGQA_OK)
                memcpy(host + t->offset, scratch + part.row_offset * (t->ndim == 2 ? t->shape[1] : 1),
                       t->numel * sizeof(float));
            continue;
        }
        if (status == CLGQA_OK)
            status = clgqa_tensor_set_get(file, name, &st);
        if (status == CLGQA_OK && !same_shape(st, t))
            status = shape_mismatch(file, st, t);
        if (status == CLGQA_OK)
            status = clgqa_tensor_set_read_f32(file, name, host + t->offset, t->numel);
    }
    free(scratch);
    return status;
}

/* DGQA state of every layer, when the file has it and the model uses it. The
 * reference's state_dict keeps only `cache` (its split is not a buffer and
 * starts static when a model is built): such a file starts from the static
 * split, said on `log`, except for resuming (`need_split`), which must
 * continue the exact split. */
static clgqa_status read_grouping(clgqa_model *model, const clgqa_tensor_set *file, int need_split,
                                  FILE *log) {
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    if (!has_cache(model) ||
        !clgqa_tensor_set_find(file, "blocks.0.attn.cache"))
        return CLGQA_OK;
    int32_t split[64];
    float cache[64];
    if (dims->kv_heads > 64)
        return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "more than 64 key/value heads");
    int static_layers = 0;
    for (int layer = 0; layer < dims->num_layers; layer++) {
        char cache_name[NAME_BUF], split_name[NAME_BUF];
        snprintf(cache_name, sizeof cache_name, "blocks.%d.attn.cache", layer);
        snprintf(split_name, sizeof split_name, "blocks.%d.attn.split", layer);
        CLGQA_TRY(clgqa_tensor_set_read_f32(file, cache_name, cache, (size_t)dims->kv_heads));
        if (clgqa_tensor_set_find(file, split_name) || need_split) {
            CLGQA_TRY(clgqa_tensor_set_read_i32(file, split_name, split, (size_t)dims->kv_heads));
        } else {
            for (int g = 0; g < dims->kv_heads; g++)
                split[g] = dims->num_heads / dims->kv_heads;
            static_layers++;
        }
        clgqa_status status = clgqa_model_write_grouping(model, layer, cache, split);
        if (status != CLGQA_OK)
            return clgqa_fail_context(status, "%s: %s", clgqa_tensor_set_label(file), split_name);
    }
    if (static_layers && log)
        fprintf(log, "%s has the DGQA cache but no split (as the reference saves it): %d of %d layers start "
                "from the static split, %d query heads per key/value head\n", clgqa_tensor_set_label(file),
                static_layers, dims->num_layers, dims->num_heads / dims->kv_heads);
    return CLGQA_OK;
}

/* A tensor of the file that the model has no place for: refused, so that a
 * checkpoint of a deeper or different model is not half-loaded. */
static clgqa_status check_no_strangers(clgqa_model *model, const clgqa_tensor_set *file) {
    size_t count = clgqa_tensor_set_count(file);
    for (size_t i = 0; i < count; i++) {
        const char *name = clgqa_tensor_set_at(file, i)->name;
        if (!strncmp(name, OPTIM_M_PREFIX, strlen(OPTIM_M_PREFIX)) ||
            !strncmp(name, OPTIM_V_PREFIX, strlen(OPTIM_V_PREFIX)) ||
            !strncmp(name, EMA_PREFIX, strlen(EMA_PREFIX)))
            continue;
        size_t len = strlen(name);
        if ((len > 6 && !strcmp(name + len - 6, ".cache")) ||
            (len > 6 && !strcmp(name + len - 6, ".split")))
            continue;
        /* A fused qkv stands for the model's q, k and v (read_flat). */
        const char *fused = strstr(name, ".attn.qkv.");
        if (fused && !strncmp(name, "blocks.", 7)) {
            char q_name[NAME_BUF];
            snprintf(q_name, sizeof q_name, "%.*s.attn.q.%s", (int)(fused - name), name, fused + 10);
            if (clgqa_model_find_tensor(model, q_name) && !clgqa_tensor_set_find(file, q_name))
                continue;
        }
        if (!clgqa_model_find_tensor(model, name))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' does not belong to this model",
                              clgqa_tensor_set_label(file), name);
    }
    return CLGQA_OK;
}

clgqa_status clgqa_checkpoint_load_model(clgqa_model *model, const char *path, FILE *log) {
    clgqa_tensor_set *file;
    CLGQA_TRY(clgqa_tensor_file_open(path, &file));
    clgqa_status status = CLGQA_OK;
    float *params = alloc_or_fail(clgqa_model_param_count(model) * sizeof(float), "weights", &status);
    if (status == CLGQA_OK)
        status = check_no_strangers(model, file);
    if (status == CLGQA_OK)
        status = read_flat(model, file, "", params);
    if (status == CLGQA_OK)
        status = clgqa_model_write_buffer(model, CLGQA_PARAMS, params);
    if (status == CLGQA_OK)
        status = read_grouping(model, file, 0, log);
    free(params);
    clgqa_tensor_set_close(file);
    return status;
}

static clgqa_status metadata_long(const clgqa_tensor_set *file, const char *key, long long *out) {
    const char *text = clgqa_tensor_set_metadata(file, key);
    char *end = NULL;
    errno = 0;
    long long value = text ? strtoll(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || errno || value < 0)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: metadata '%s' is %s%s%s (a training checkpoint "
                          "needs a count)", clgqa_tensor_set_label(file), key,
                          text ? "'" : "missing", text ? text : "", text ? "'" : "");
    *out = value;
    return CLGQA_OK;
}

/* Where the epoch stood and the best epoch: absent from checkpoints written
 * before they were saved, which are all at an epoch's end with no best. */
static clgqa_status read_progress(const clgqa_tensor_set *file, clgqa_train_state *state) {
    static const char *const counts[] = {"epoch_steps",   "next_batch",        "epoch_samples",
                                         "best_epoch",    "loss_scale_growth", "skipped_steps"};
    long long values[6] = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        if (clgqa_tensor_set_metadata(file, counts[i]))
            CLGQA_TRY(metadata_long(file, counts[i], &values[i]));
    /* epoch_sum_top5 is absent from checkpoints older than top-5 (0),
     * loss_scale from those of precision 32 runs (0: none). */
    static const char *const sums[] = {"epoch_sum_loss", "epoch_sum_correct", "best_test_loss",
                                       "epoch_sum_top5", "loss_scale"};
    double numbers[5] = {0, 0, INFINITY, 0, 0};
    for (int i = 0; i < 5; i++) {
        const char *text = clgqa_tensor_set_metadata(file, sums[i]);
        char *end = NULL;
        if (text)
            numbers[i] = strtod(text, &end);
        if (text && (end == text || *end != '\0'))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: metadata '%s' is '%s', not a number",
                              clgqa_tensor_set_label(file), sums[i], text);
    }
    state->epoch_steps = (long)values[0];
    state->next_batch = (long)values[1];
    state->epoch_metrics.samples = (long)values[2];
    state->best_epoch = (long)values[3];
    state->epoch_metrics.sum_loss = numbers[0];
    state->epoch_metrics.sum_correct = numbers[1];
    state->best_test_loss = numbers[2];
    state->epoch_metrics.sum_top5 = numbers[3];
    state->loss_scale = numbers[4];
    state->loss_scale_growth = (long)values[4];
    state->skipped_steps = (long)values[5];
    return CLGQA_OK;
}

clgqa_status clgqa_checkpoint_load_training(clgqa_model *model, const char *path,
                                            clgqa_train_state *state) {
    const unsigned long long seed = clgqa_model_get_desc(model)->seed;
    clgqa_tensor_set *file;
    CLGQA_TRY(clgqa_tensor_file_open(path, &file));
    clgqa_status status = CLGQA_OK;
    const char *scheme = clgqa_tensor_set_metadata(file, "att_scheme");
    const char *model_scheme = clgqa_scheme_name(clgqa_model_get_desc(model)->scheme);
    long long epochs_done = 0, global_step = 0, ranks = 1;
    clgqa_train_state progress;
    memset(&progress, 0, sizeof progress);
    char first_m[NAME_BUF];
    snprintf(first_m, sizeof first_m, OPTIM_M_PREFIX "%s", clgqa_model_tensor(model, 0)->name);
    if (!clgqa_tensor_set_find(file, first_m))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is not a training checkpoint (it has no optimizer "
                            "state); use it as pretrained_ckpt instead", path);
    else if (scheme && strcmp(scheme, model_scheme))
        status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s was trained with att_scheme %s, the config "
                            "says %s", path, scheme, model_scheme);
    if (status == CLGQA_OK)
        status = metadata_long(file, "epochs_done", &epochs_done);
    if (status == CLGQA_OK)
        status = metadata_long(file, "global_step", &global_step);
    if (status == CLGQA_OK)
        status = read_progress(file, &progress);
    if (status == CLGQA_OK && clgqa_tensor_set_metadata(file, "ranks")) /* older files: 1 */
        status = metadata_long(file, "ranks", &ranks);
    if (status == CLGQA_OK) {
        const char *text = clgqa_tensor_set_metadata(file, "seed");
        char *end = NULL;
        unsigned long long value = text ? strtoull(text, &end, 10) : 0;
        if (!text || end == text || *end != '\0')
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: metadata 'seed' is missing or not a number", path);
        else if (value != seed)
            status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s was trained with seed %llu, the config "
                                "says %llu: a resumed run must keep its seed", path, value, seed);
    }
    size_t floats = clgqa_model_param_count(model);
    float *host = status == CLGQA_OK ? alloc_or_fail(floats * sizeof(float), "weights", &status) : NULL;
    static const clgqa_model_buffer which[3] = {CLGQA_PARAMS, CLGQA_ADAM_M, CLGQA_ADAM_V};
    static const char *const prefixes[3] = {"", OPTIM_M_PREFIX, OPTIM_V_PREFIX};
    if (status == CLGQA_OK)
        status = check_no_strangers(model, file);
    for (int b = 0; b < 3 && status == CLGQA_OK; b++) {
        status = read_flat(model, file, prefixes[b], host);
        if (status == CLGQA_OK)
            status = clgqa_model_write_buffer(model, which[b], host);
    }
    /* A model keeping an EMA takes the file's, or starts it from the
     * weights when the file has none (the EMA was turned on at a resume). */
    char first_ema[NAME_BUF];
    snprintf(first_ema, sizeof first_ema, EMA_PREFIX "%s", clgqa_model_tensor(model, 0)->name);
    if (status == CLGQA_OK && clgqa_model_has_ema(model)) {
        if (clgqa_tensor_set_find(file, first_ema)) {
            status = read_flat(model, file, EMA_PREFIX, host);
            if (status == CLGQA_OK)
                status = clgqa_model_write_buffer(model, CLGQA_EMA, host);
        } else {
            status = clgqa_model_ema_start(model);
        }
    }
    if (status == CLGQA_OK)
        status = read_grouping(model, file, 1, NULL);
    if (status == CLGQA_OK) {
        progress.epochs_done = (long)epochs_done;
        progress.global_step = (long)global_step;
        progress.ranks = (int)ranks;
        *state = progress;
    }
    free(host);
    clgqa_tensor_set_close(file);
    return status;
}

/* ---- pretrained weights (uptraining) -------------------------------------- */

/* Average contiguous groups of key/value heads: `rows_in` = heads_in * d rows
 * of `cols` (cols 1 for a bias) down to kv_heads * d rows, as the
 * semantics page's conversion (view [H, d, C], mean over groups of H/G). */
static void average_heads(float *dst, const float *src, int heads_in, int kv_heads, int head_dim,
                          int cols) {
    int per_group = heads_in / kv_heads;
    size_t head_floats = (size_t)head_dim * cols;
    for (int g = 0; g < kv_heads; g++) {
        float *out = dst + (size_t)g * head_floats;
        for (size_t i = 0; i < head_floats; i++) {
            double sum = 0;
            for (int h = 0; h < per_group; h++)
                sum += src[(size_t)(g * per_group + h) * head_floats + i];
            out[i] = (float)(sum / per_group);
        }
    }
}

/* A pos_embed [1, 1 + n*n, C] of another patch grid (a 224 checkpoint for
 * 32x32 images): the class token kept, the n x n grid resampled to the
 * model's (timm's resample_abs_pos_embed). 0 when `st` is not such a tensor. */
static int is_square_pos_embed(const clgqa_tensor *st, const clgqa_model_dims *dims, int *grid) {
    if (st->ndim != 3 || st->shape[0] != 1 || st->shape[2] != dims->embed_dim || st->shape[1] < 2)
        return 0;
    int64_t cells = st->shape[1] - 1, n = (int64_t)sqrt((double)cells);
    while (n * n > cells)
        n--;
    while ((n + 1) * (n + 1) <= cells)
        n++;
    *grid = (int)n;
    return n * n == cells;
}

static clgqa_status read_resampled_pos_embed(const clgqa_tensor_set *file, const clgqa_tensor *st,
                                             const clgqa_model_dims *dims, int old_grid,
                                             clgqa_resample resample,
                                             float *dst, FILE *log) {
    clgqa_status status = CLGQA_OK;
    float *src = alloc_or_fail(st->numel * sizeof(float), "the checkpoint's pos_embed", &status);
    if (status == CLGQA_OK)
        status = clgqa_tensor_set_read_f32(file, st->name, src, st->numel);
    if (status == CLGQA_OK)
        status = clgqa_pos_embed_resample(src, old_grid, dst, dims->grid, dims->embed_dim, 1,
                                          resample == CLGQA_RESAMPLE_ANTIALIAS);
    if (status == CLGQA_OK && log)
        fprintf(log, "%s: pos_embed resampled from %dx%d to %dx%d (bicubic%s)\n",
                clgqa_tensor_set_label(file), old_grid, old_grid, dims->grid, dims->grid,
                resample == CLGQA_RESAMPLE_ANTIALIAS ? ", antialiased as timm" : ", not antialiased");
    free(src);
    return status;
}

/* Reads the model tensor `t` from `file`, converting: fused qkv (timm) split;
 * k and v with more heads than the model averaged over groups; pos_embed of
 * another patch grid resampled. Sets *skip when the tensor is the classifier
 * head and only its class count differs, or the file has no head. */
static clgqa_status read_converted(clgqa_model *model, const clgqa_tensor_set *file,
                                   const clgqa_tensor_info *t, float *dst, float **scratch,
                                   size_t *scratch_floats, clgqa_resample resample, FILE *log,
                                   int *skip) {
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    const char *label = clgqa_tensor_set_label(file);
    int d = dims->head_dim, G = dims->kv_heads;
    *skip = 0;
    const char *kind = NULL;
    char proj = attn_projection(t->name, &kind);
    const clgqa_tensor *st = clgqa_tensor_set_find(file, t->name);
    const char *source_name = t->name;
    size_t row_offset = 0; /* rows of the source tensor before ours (fused qkv) */
    int source_rows;
    if (!st && proj) {
        fused_part part;
        CLGQA_TRY(find_fused_qkv(file, dims, t, &part));
        if (!part.st)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s lacks tensor '%s' (and a fused '%s')", label,
                              t->name, part.name);
        st = part.st;
        source_name = st->name;
        row_offset = part.row_offset;
        source_rows = part.rows;
    } else if (!st && !strncmp(t->name, "head.", 5)) {
        /* A checkpoint exported without its classifier (timm num_classes=0). */
        *skip = 1;
        if (!strcmp(t->name, "head.weight") && log)
            fprintf(log, "%s has no head: head initialised fresh (%d classes)\n", label,
                    dims->num_classes);
        return CLGQA_OK;
    } else if (!st) {
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s lacks tensor '%s'", label, t->name);
    } else {
        if (same_shape(st, t))
            return clgqa_tensor_set_read_f32(file, t->name, dst, t->numel);
        int old_grid;
        if (!strcmp(t->name, "pos_embed") && is_square_pos_embed(st, dims, &old_grid))
            return read_resampled_pos_embed(file, st, dims, old_grid, resample, dst, log);
        if (!strncmp(t->name, "head.", 5) && st->ndim == t->ndim &&
            (t->ndim == 1 || st->shape[1] == t->shape[1])) {
            *skip = 1;
            if (!strcmp(t->name, "head.weight") && log)
                fprintf(log, "%s: the head has %" PRId64 " classes, the config %d: head re-initialised\n",
                        label, st->shape[0], dims->num_classes);
            return CLGQA_OK;
        }
        /* k or v of a checkpoint with more key/value heads (MHSA -> GQA). */
        int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
        if (!(proj == 'k' || proj == 'v') || st->ndim != t->ndim ||
            (t->ndim == 2 && st->shape[1] != cols) || st->shape[0] % d != 0)
            return shape_mismatch(file, st, t);
        source_rows = (int)st->shape[0];
    }
    int cols = t->ndim == 2 ? t->shape[1] : 1;
    CLGQA_TRY(read_scratch(file, st, scratch, scratch_floats));
    const float *rows = *scratch + row_offset * cols;
    if (proj == 'q') {
        memcpy(dst, rows, t->numel * sizeof(float));
        return CLGQA_OK;
    }
    int heads_in = source_rows / d;
    if (heads_in % G != 0 || heads_in < G) {
        char text[96];
        clgqa_tensor_set_shape_text(st->shape, st->ndim, text, sizeof text);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' (%s) has %d key/value heads, which "
                          "cannot be averaged into the model's %d", label, source_name, text,
                          heads_in, G);
    }
    average_heads(dst, rows, heads_in, G, d, cols);
    return CLGQA_OK;
}

/* A checkpoint with more blocks than the model is refused rather than
 * silently truncated (the shapes of the blocks it shares would all match). */
static clgqa_status check_depth(const clgqa_model *model, const clgqa_tensor_set *file) {
    int depth = clgqa_model_get_dims(model)->num_layers;
    size_t count = clgqa_tensor_set_count(file);
    for (size_t i = 0; i < count; i++) {
        const char *name = clgqa_tensor_set_at(file, i)->name;
        char *end;
        if (strncmp(name, "blocks.", 7))
            continue;
        long block = strtol(name + 7, &end, 10);
        if (end != name + 7 && *end == '.' && block >= depth)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' is in block %ld, the model has %d "
                              "blocks (num_layers)", clgqa_tensor_set_label(file), name, block, depth);
    }
    return CLGQA_OK;
}

clgqa_status clgqa_checkpoint_load_pretrained(clgqa_model *model, const char *path,
                                              clgqa_resample resample, FILE *log) {
    clgqa_tensor_set *file;
    CLGQA_TRY(clgqa_tensor_file_open(path, &file));
    clgqa_status status = check_depth(model, file);
    size_t floats = clgqa_model_param_count(model);
    float *params = status == CLGQA_OK ? alloc_or_fail(floats * sizeof(float), "weights", &status) : NULL;
    float *scratch = NULL;
    size_t scratch_floats = 0;
    /* Start from the model's own initialisation, which a re-initialised head keeps. */
    if (status == CLGQA_OK)
        status = clgqa_model_read_buffer(model, CLGQA_PARAMS, params);
    int count = clgqa_model_tensor_count(model);
    for (int i = 0; i < count && status == CLGQA_OK; i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(model, i);
        int skip;
        status = read_converted(model, file, t, params + t->offset, &scratch, &scratch_floats,
                                resample, log, &skip);
    }
    if (status == CLGQA_OK)
        status = clgqa_model_write_buffer(model, CLGQA_PARAMS, params);
    /* A DGQA checkpoint with the model's key/value heads brings its cache
     * (and split, when saved), as the reference's load_state_dict does. */
    const clgqa_tensor *cache = clgqa_tensor_set_find(file, "blocks.0.attn.cache");
    if (status == CLGQA_OK && cache && cache->numel == (size_t)clgqa_model_get_dims(model)->kv_heads)
        status = read_grouping(model, file, 0, log);
    if (status == CLGQA_OK && log)
        fprintf(log, "loaded pretrained weights from %s\n", path);
    free(params);
    free(scratch);
    clgqa_tensor_set_close(file);
    return status;
}
