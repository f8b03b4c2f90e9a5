/* The ViT of include/clgqa/model.h: construction, the named tensor table over
 * the flat buffers, weight initialisation, transfers, the per-layer grouping
 * state and the metrics. The passes (forward, backward, AdamW) are in
 * model_pass.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#include "ops.h"

/* ---- tensor table ---- */

static void add_tensor(clgqa_model *m, const char *name, int ndim, int s0, int s1, int s2,
                       int s3) {
    clgqa_tensor_info *t = &m->tensors[m->tensor_count++];
    int shape[CLGQA_TENSOR_MAX_DIMS] = {s0, s1, s2, s3};
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->offset = m->param_count;
    m->param_count += t->numel;
}

/* From the lists of model_internal.h, whose order fixes the MODEL_T_* /
 * MODEL_L_* / MODEL_F_* indices. */
static void build_tensor_table(clgqa_model *m) {
    const clgqa_model_dims *d = &m->dims;
    const int C = d->embed_dim, KV = d->kv_heads * d->head_dim, F = d->mlp_dim,
              p = d->patch_size, P = d->tokens, in = d->in_chans, K = d->num_classes;
#define ADD_TENSOR(id, name, ndim, s0, s1, s2, s3) add_tensor(m, name, ndim, s0, s1, s2, s3);
    MODEL_EMBED_TENSORS(ADD_TENSOR)
    for (int l = 0; l < d->num_layers; l++) {
        char name[CLGQA_TENSOR_NAME_MAX];
#define ADD_BLOCK_TENSOR(id, suffix, rows, cols, init)               \
    snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);          \
    add_tensor(m, name, (cols) ? 2 : 1, rows, cols, 0, 0);
        MODEL_BLOCK_TENSORS(ADD_BLOCK_TENSOR)
#undef ADD_BLOCK_TENSOR
    }
    MODEL_FINAL_TENSORS(ADD_TENSOR)
#undef ADD_TENSOR
}

/* ---- initialisation (the reference's) ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The Philox stream of each tensor: its index in the table as it was before
 * q, k and v were made contiguous (q.weight, q.bias, k.weight, ... in a
 * block), so a seed still gives the same initial weights. */
static uint32_t init_stream_index(const clgqa_model *m, int index) {
#define INIT_POSITION(id, suffix, rows, cols, init) init,
    static const int block_position[MODEL_L_TENSORS] = {MODEL_BLOCK_TENSORS(INIT_POSITION)};
#undef INIT_POSITION
    int block = (index - MODEL_T_BLOCKS) / MODEL_L_TENSORS;
    int which = (index - MODEL_T_BLOCKS) - block * MODEL_L_TENSORS;
    if (index < MODEL_T_BLOCKS || block >= m->dims.num_layers)
        return (uint32_t)index;
    return (uint32_t)(MODEL_T_BLOCKS + block * MODEL_L_TENSORS + block_position[which]);
}

/* Each tensor draws from its own Philox stream (seed, INIT, tensor), so one
 * tensor's values do not depend on the sizes of the others. */
static void init_tensor(const clgqa_model *m, int index, float *out) {
    const clgqa_tensor_info *t = &m->tensors[index];
    uint64_t stream = clgqa_stream_id(CLGQA_RNG_INIT, init_stream_index(m, index), 0);
    int is_norm = !strncmp(t->name, "norm.", 5) || strstr(t->name, ".norm1.") ||
                  strstr(t->name, ".norm2.");
    if (index == MODEL_T_PATCH_W || index == MODEL_T_PATCH_B) {
        /* PyTorch's Conv2d default: weight and bias uniform +-1/sqrt(fan_in). */
        const clgqa_model_dims *d = &m->dims;
        float bound = 1.0f / sqrtf((float)(d->in_chans * d->patch_size * d->patch_size));
        clgqa_host_uniform(out, t->numel, m->desc.seed, stream);
        for (size_t i = 0; i < t->numel; i++)
            out[i] = (2.0f * out[i] - 1.0f) * bound;
    } else if (is_norm) {
        float value = ends_with(t->name, ".weight") ? 1.0f : 0.0f;
        for (size_t i = 0; i < t->numel; i++)
            out[i] = value;
    } else if (index == MODEL_T_CLS || ends_with(t->name, ".bias")) {
        memset(out, 0, t->numel * sizeof *out);
    } else {
        /* pos_embed and Linear weights: normal, std 0.02 (timm's trunc_normal_
         * cuts at +-2, 100 standard deviations out: never reached). */
        clgqa_host_normal(out, t->numel, m->desc.seed, stream, 0.0f, 0.02f);
    }
}

static clgqa_status init_parameters(clgqa_model *m) {
    float *host = malloc(m->param_count * sizeof *host);
    if (!host)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: %zu parameters on the host",
                          m->param_count);
    for (int i = 0; i < m->tensor_count; i++)
        init_tensor(m, i, host + m->tensors[i].offset);
    clgqa_status s = clgqa_model_write_buffer(m, CLGQA_PARAMS, host);
    free(host);
    return s;
}

/* ---- configuration checks ---- */

static clgqa_status derive_dims(const clgqa_model_desc *cfg, int max_batch, clgqa_model_dims *d) {
    if (max_batch < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_create: max_batch must be >= 1, got %d",
                          max_batch);
    if (cfg->num_classes < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_create: num_classes must be >= 1, got %d", cfg->num_classes);
    clgqa_status shape = clgqa_model_desc_check(cfg);
    if (shape != CLGQA_OK)
        return clgqa_fail_context(shape, "clgqa_model_create");
    /* MHSA is G = H whatever num_kv_heads says (the reference ignores it). */
    int kv_heads = clgqa_scheme_traits_of(cfg->scheme)->kv_per_head ? cfg->num_heads
                                                                         : cfg->num_kv_heads;
    d->img_size = cfg->img_size;
    d->patch_size = cfg->patch_size;
    d->in_chans = cfg->in_chans;
    d->grid = cfg->img_size / cfg->patch_size;
    d->tokens = d->grid * d->grid + 1;
    d->embed_dim = cfg->embed_dim;
    d->num_layers = cfg->num_layers;
    d->num_heads = cfg->num_heads;
    d->kv_heads = kv_heads;
    d->head_dim = cfg->embed_dim / cfg->num_heads;
    d->mlp_dim = 4 * cfg->embed_dim;
    d->num_classes = cfg->num_classes;
    d->max_batch = max_batch;
    return CLGQA_OK;
}

/* ---- activation arena ---- */

/* Carves consecutive views from the arena's buffers, starting the next
 * buffer when a view would cross `limit` floats (the device's largest
 * allocation), so every view lies inside one buffer. A first pass with mems
 * NULL only measures: it records each buffer's floats in sizes. */
typedef struct carver {
    cl_mem *mems;   /* NULL while measuring */
    size_t *sizes;  /* [MAX_ARENA_BUFFERS] floats per buffer (measuring) */
    size_t limit;
    int index;      /* the buffer being carved */
    size_t used;    /* floats carved from it */
    size_t too_big; /* a view larger than limit, 0 if none */
    size_t align;   /* floats every view starts on (clgqa_gemm_operand_alignment) */
    clgqa_runtime *rt;   /* registers GEMM operands (gemm.h) when carving for real */
    clgqa_status status; /* the first registration's failure */
} carver;

#define MAX_ARENA_BUFFERS 256

/* Start the next buffer unless `floats` more fit in this one (views that
 * must be contiguous, e.g. what one fill clears, are kept together). */
static void keep_together(carver *c, size_t floats) {
    if (c->used > 0 && c->used + floats > c->limit && c->index + 1 < MAX_ARENA_BUFFERS) {
        c->index++;
        c->used = 0;
    }
}

/* The next view, right after the previous one (views one fill clears). */
static clgqa_view carve_joined(carver *c, size_t floats) {
    if (floats > c->limit && floats > c->too_big)
        c->too_big = floats;
    keep_together(c, floats);
    clgqa_view v = clgqa_view_at(c->mems ? c->mems[c->index] : NULL, c->used);
    c->used += floats;
    if (!c->mems)
        c->sizes[c->index] = c->used;
    return v;
}

/* The next view, starting on the alignment a sub-buffer needs (at least
 * 64 bytes: rows stay aligned for the kernels' vector loads whatever the
 * sizes before). */
static clgqa_view carve(carver *c, size_t floats) {
    c->used = (c->used + c->align - 1) / c->align * c->align;
    return carve_joined(c, floats);
}

/* A view that GEMMs read or write: carved, then registered with the
 * runtime, so that CLBlast reads it in place (gemm.h). */
static clgqa_view carve_operand(carver *c, size_t floats) {
    clgqa_view v = carve(c, floats);
    if (c->rt && c->status == CLGQA_OK)
        c->status = clgqa_gemm_operand_region(c->rt, v, floats);
    return v;
}

/* A view of `elements` activations in the model's activation storage: in
 * float, a GEMM operand; in half, (elements + 1) / 2 floats of the arena,
 * its offset in halves (the GEMMs read its float copy, act_scratch). */
static clgqa_view carve_activation(clgqa_model *m, carver *c, size_t elements) {
    if (m->act_storage == CLGQA_STORAGE_FLOAT)
        return carve_operand(c, elements);
    return clgqa_view_in_halves(carve(c, (elements + 1) / 2));
}

/* A block's views. Those GEMMs read or write have m->gemm.rows rows (the
 * padded count, model_gemm); the statistics have the real rows. */
static void carve_layer(clgqa_model *m, model_layer *a, carver *c) {
    const clgqa_model_dims *d = &m->dims;
    size_t real = (size_t)d->max_batch * d->tokens, rows = m->gemm.rows, C = d->embed_dim,
           kv = (size_t)d->kv_heads * d->head_dim, F = d->mlp_dim;
    clgqa_attention_dims ad = model_attention_dims(m, d->max_batch);
    /* Sized for m->attention_kernel. */
    const int pgqa = m->traits.perturbs;
    size_t saved = clgqa_attention_saved_floats(&ad, pgqa, m->attention_kernel);
    /* A block's views in one buffer when they fit. */
    keep_together(c, rows * (6 * C + 2 * F + 2 * kv) + 4 * real + saved + c->align * 15);
    a->ln1 = carve_activation(m, c, rows * C);
    a->ln1_mean = carve(c, real);
    a->ln1_rstd = carve(c, real);
    a->qkv = carve_activation(m, c, rows * (C + 2 * kv));
    a->q = a->qkv;
    a->k = clgqa_view_add(a->qkv, C);
    a->v = clgqa_view_add(a->qkv, C + kv);
    a->attention_region = carve(c, saved);
    a->heads_out = carve_activation(m, c, rows * C);
    a->x_mid = carve_operand(c, rows * C);
    a->ln2 = carve_activation(m, c, rows * C);
    a->ln2_mean = carve(c, real);
    a->ln2_rstd = carve(c, real);
    a->fc1 = carve_activation(m, c, rows * F);
    a->gelu = carve_activation(m, c, rows * F);
    a->x_out = carve_operand(c, rows * C);
}

/* Each Linear weight's shape [n_out, n_in] and tensor, in the order of
 * model_linear_count's list. */
typedef struct linear_weight {
    int tensor;
    size_t n_out, n_in;
} linear_weight;
static linear_weight linear_weight_of(const clgqa_model *m, int i) {
    const clgqa_model_dims *d = &m->dims;
    size_t C = d->embed_dim, F = d->mlp_dim, qkv = (size_t)model_qkv_width(m),
           patch_len = (size_t)d->in_chans * d->patch_size * d->patch_size;
    if (i == 0) {
        linear_weight w = {MODEL_T_PATCH_W, C, patch_len};
        return w;
    }
    if (i == model_linear_count(m) - 1) {
        linear_weight w = {model_final_tensor(m, MODEL_F_HEAD_W), (size_t)d->num_classes, C};
        return w;
    }
    int l = (i - 1) / LINEAR_BLOCK, which = (i - 1) % LINEAR_BLOCK;
    static const int tensors[LINEAR_BLOCK] = {MODEL_L_Q_W, MODEL_L_PROJ_W, MODEL_L_FC1_W,
                                              MODEL_L_FC2_W};
    const size_t outs[LINEAR_BLOCK] = {qkv, C, F, C}, ins[LINEAR_BLOCK] = {C, C, C, F};
    linear_weight w = {model_layer_tensor(l, tensors[which]), outs[which], ins[which]};
    return w;
}

static void carve_shared(clgqa_model *m, carver *c) {
    const clgqa_model_dims *d = &m->dims;
    size_t B = d->max_batch, rows = B * d->tokens, C = d->embed_dim,
           kv = (size_t)d->kv_heads * d->head_dim, F = d->mlp_dim, classes = d->num_classes,
           patch_len = (size_t)d->in_chans * d->patch_size * d->patch_size;
    clgqa_attention_dims ad = model_attention_dims(m, d->max_batch);
    size_t gemm_rows = m->gemm.rows, gemm_patch_rows = m->gemm.patch_rows;
    m->patches = carve_operand(c, gemm_patch_rows * patch_len);
    m->patch_out = carve_operand(c, gemm_patch_rows * C);
    m->tokens = carve(c, rows * C);
    /* An operand too (the head reads its class-token rows): a buffer must
     * not be read directly while a sub-buffer of it is written. */
    m->lnf = carve_operand(c, rows * C);
    m->lnf_mean = carve(c, rows);
    m->lnf_rstd = carve(c, rows);
    m->logits = carve_operand(c, B * classes);
    m->probs = carve(c, B * classes);
    m->losses = carve(c, B);
    m->correct = carve(c, B);
    m->top5 = carve(c, B);
    m->targets = carve(c, B * classes);
    m->metrics = carve(c, MODEL_METRICS);
    m->drop_scales = carve(c, (size_t)d->num_layers * 2 * B);
    /* dres, dln and dlogits in one buffer: one fill clears them. */
    keep_together(c, 2 * gemm_rows * C + B * classes + 3 * c->align);
    m->dres = carve_operand(c, gemm_rows * C);
    m->dln = carve_operand(c, gemm_rows * C);
    m->dlogits = carve_operand(c, B * classes);
    m->dgelu = carve_operand(c, gemm_rows * F);
    m->dfc1 = carve_operand(c, gemm_rows * F);
    m->dheads_out = carve_operand(c, gemm_rows * C);
    m->dqkv = carve_operand(c, gemm_rows * (C + 2 * kv));
    const int pgqa = m->traits.perturbs;
    size_t attention_scratch = clgqa_attention_scratch_floats(&ad, pgqa, m->attention_kernel);
    size_t key_norms_scratch = clgqa_key_norms_scratch_floats(&ad);
    m->attention_scratch = carve(c, attention_scratch > key_norms_scratch ? attention_scratch
                                                                           : key_norms_scratch);
    m->dpatch_out = carve_operand(c, gemm_patch_rows * C);
    if (m->act_storage != CLGQA_STORAGE_FLOAT)
        m->act_scratch = carve_operand(c, gemm_rows * (F > C ? F : C));
    /* The column sums' partials and the split weight gradients' beside
     * them, in one buffer when they fit: one finish launch adds both. */
    size_t column_floats = 2 * m->partials.slot + m->partials.final;
    keep_together(c, column_floats + m->gemm.partial_floats + 2 * c->align);
    m->column_partials = carve(c, column_floats);
    m->gemm_partials = carve_operand(c, m->gemm.partial_floats);
    const model_gemm *g = &m->gemm;
    for (int j = 0; j < LINEAR_BLOCK && c->rt && c->status == CLGQA_OK; j++)
        if (g->split[j] > 1 && g->partials[j] > 0) {
            linear_weight w = linear_weight_of(m, model_block_linear(0, (model_linear)j));
            c->status = clgqa_gemm_operand_region(
                c->rt, clgqa_view_add(m->gemm_partials, g->partials[j]), g->split[j] * w.n_out * w.n_in);
        }
    m->grad_sum_squares = carve(c, 1);
    m->grad_scale = carve(c, 1);
    m->scaler = carve(c, CLGQA_SCALER_FLOATS);
    m->chunk_sum_squares = carve(c, (size_t)m->chunk_count);
    /* The weights' transposes, each [n_in, n_out]. */
    for (int i = 0; i < model_linear_count(m); i++) {
        linear_weight w = linear_weight_of(m, i);
        clgqa_view v = carve_operand(c, w.n_out * w.n_in);
        if (m->weights_t)
            m->weights_t[i] = v;
    }
}

/* A device allocation that failed, named: some drivers (PoCL) allocate
 * lazily, so running out shows as a failed fill rather than a failed
 * clCreateBuffer, with a status that says so. */
static clgqa_status allocation_failed(clgqa_runtime *rt, clgqa_status status, const char *what,
                                      size_t bytes) {
    int code = status == CLGQA_ERR_OPENCL ? clgqa_error_code() : 0;
    if (status == CLGQA_ERR_OUT_OF_MEMORY || code == CL_OUT_OF_HOST_MEMORY ||
        code == CL_OUT_OF_RESOURCES || code == CL_MEM_OBJECT_ALLOCATION_FAILURE)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of memory allocating %s (%.1f MiB) on %s, "
                          "after %.1f MiB: %s", what, (double)bytes / (1 << 20), rt->device_name,
                          (double)rt->allocated_bytes / (1 << 20), clgqa_error_message());
    return clgqa_fail_context(status, "allocating %s (%.1f MiB)", what, (double)bytes / (1 << 20));
}

/* A zero-filled device buffer of `floats` floats (zeroed once, so no kernel
 * ever reads uninitialised memory, e.g. a GEMM's C with beta 0); `what`
 * names it in an error. */
static clgqa_status create_zeroed(clgqa_runtime *rt, size_t floats, cl_mem *out,
                                  const char *what) {
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    clgqa_status s = clgqa_buffer_create(rt, bytes, out);
    if (s == CLGQA_OK)
        s = clgqa_buffer_fill(rt, clgqa_view_at(*out, 0), floats ? floats : 1, 0.0f);
    if (s == CLGQA_OK)
        s = clgqa_finish(rt); /* a lazy allocation fails here, while we know which */
    return s == CLGQA_OK ? CLGQA_OK : allocation_failed(rt, s, what, bytes);
}

/* Every layer's views, then the shared ones. Measuring (m->layers NULL
 * allowed) every layer is carved into one scratch entry. */
static void carve_arena(clgqa_model *m, carver *c) {
    model_layer scratch;
    for (int l = 0; l < m->dims.num_layers; l++)
        carve_layer(m, m->layers ? &m->layers[l] : &scratch, c);
    carve_shared(m, c);
}

/* The device's largest allocation in floats, a multiple of 64 (256 bytes,
 * so every buffer start stays aligned for the kernels' vector loads). */
static size_t allocation_limit_floats(const clgqa_runtime *rt) {
    size_t floats = (size_t)(rt->max_alloc_bytes / sizeof(float));
    return floats / 64 * 64;
}

/* An arena buffer's floats: the device's largest allocation, and in half
 * storage at most 2^31, since a half view's offset counts halves and the
 * kernels take 32-bit offsets. */
static size_t arena_limit_floats(const clgqa_model *m) {
    size_t limit = allocation_limit_floats(m->rt), half_cap = (size_t)1 << 31;
    return m->act_storage == CLGQA_STORAGE_HALF && limit > half_cap ? half_cap : limit;
}

static clgqa_status create_arena(clgqa_model *m) {
    size_t sizes[MAX_ARENA_BUFFERS] = {0};
    carver measure = {NULL, sizes, arena_limit_floats(m), 0, 0, 0,
                      clgqa_gemm_operand_alignment(m->rt), NULL, CLGQA_OK};
    carve_arena(m, &measure);
    if (measure.too_big || measure.index + 1 == MAX_ARENA_BUFFERS)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                          "clgqa_model_create: an activation of %.2f MiB exceeds the largest "
                          "allocation %s allows (%.2f MiB), or needs over %d buffers: use a "
                          "smaller batch",
                          (double)measure.too_big * sizeof(float) / (1 << 20),
                          m->rt->device_name,
                          (double)measure.limit * sizeof(float) / (1 << 20), MAX_ARENA_BUFFERS);
    m->arena_count = measure.index + 1;
    m->arena = calloc((size_t)m->arena_count, sizeof *m->arena);
    if (!m->arena)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: arena table");
    for (int i = 0; i < m->arena_count; i++) {
        m->arena_bytes += sizes[i] * sizeof(float);
        char what[64];
        snprintf(what, sizeof what, "activation buffer %d of %d", i + 1, m->arena_count);
        CLGQA_TRY(create_zeroed(m->rt, sizes[i], &m->arena[i], what));
    }
    carver c = {m->arena, NULL, measure.limit, 0, 0, 0, measure.align, m->rt, CLGQA_OK};
    carve_arena(m, &c);
    for (int l = 0; l < m->dims.num_layers; l++)
        m->layers[l].x_in = l == 0 ? m->tokens : m->layers[l - 1].x_out;
    return c.status;
}

/* ---- the GEMMs' layout (model_gemm) ---- */

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* CLBlast's tiles, the rows of the GEMMs' views, the split of each weight
 * gradient and where its partials go: the block products' one after
 * another (a block's finish adds them all), the patch embedding's from the
 * start (its product comes after every block's finish). */
static clgqa_status plan_gemm(clgqa_model *m) {
    const clgqa_model_dims *d = &m->dims;
    model_gemm *g = &m->gemm;
    CLGQA_TRY(clgqa_gemm_tiles_of(m->rt, &g->tiles));
    size_t align = clgqa_gemm_operand_alignment(m->rt), floats = 0;
    size_t rows = round_up((size_t)d->max_batch * d->tokens, g->tiles.rows);
    size_t patch_rows = round_up((size_t)d->max_batch * d->grid * d->grid, g->tiles.rows);
    g->rows = rows;
    g->patch_rows = patch_rows;
    for (int j = 0; j < LINEAR_BLOCK; j++) {
        linear_weight w = linear_weight_of(m, model_block_linear(0, (model_linear)j));
        size_t chunks;
        CLGQA_TRY(clgqa_gemm_split_chunks(m->rt, w.n_out, w.n_in, rows, &chunks));
        g->split[j] = chunks;
        g->partials[j] = floats;
        if (chunks > 1) {
            size_t held = chunks * clgqa_gemm_chunk_rows(&g->tiles, rows, chunks);
            g->rows = held > g->rows ? held : g->rows;
            floats = round_up(floats + chunks * w.n_out * w.n_in, align);
        }
    }
    linear_weight patch = linear_weight_of(m, 0);
    CLGQA_TRY(clgqa_gemm_split_chunks(m->rt, patch.n_out, patch.n_in, patch_rows,
                                      &g->patch_split));
    if (g->patch_split > 1) {
        size_t held = g->patch_split * clgqa_gemm_chunk_rows(&g->tiles, patch_rows, g->patch_split);
        g->patch_rows = held > g->patch_rows ? held : g->patch_rows;
        size_t patch_floats = g->patch_split * patch.n_out * patch.n_in;
        floats = patch_floats > floats ? patch_floats : floats;
    }
    g->partial_floats = floats;
    return CLGQA_OK;
}

/* The transposes of every Linear weight into m->weights_t, one launch per
 * pair of parameter chunk and arena buffer (usually one), with their device
 * tables written once. */
static clgqa_status build_transposes(clgqa_model *m) {
    int count = model_linear_count(m);
    m->transposes = calloc((size_t)count, sizeof *m->transposes);
    if (!m->transposes)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: transpose tables");
    for (int i = 0; i < count; i++) {
        linear_weight w = linear_weight_of(m, i);
        clgqa_view src = model_param(m, CLGQA_PARAMS, w.tensor), dst = m->weights_t[i];
        model_transposes *launch = NULL;
        for (int k = 0; k < m->transpose_launches && !launch; k++)
            if (m->transposes[k].src.mem == src.mem && m->transposes[k].dst.mem == dst.mem)
                launch = &m->transposes[k];
        if (!launch) {
            launch = &m->transposes[m->transpose_launches++];
            launch->src = clgqa_view_at(src.mem, 0);
            launch->dst = clgqa_view_at(dst.mem, 0);
            launch->entries = calloc((size_t)count, sizeof *launch->entries);
            if (!launch->entries)
                return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: transpose tables");
        }
        clgqa_transpose t = {src.offset, w.n_out, w.n_in, dst.offset};
        launch->entries[launch->count++] = t;
    }
    size_t uints = (size_t)count * CLGQA_TRANSPOSE_UINTS, used = 0;
    cl_uint *table = calloc(uints, sizeof *table);
    if (!table)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: transpose tables");
    clgqa_status s = CLGQA_OK;
    for (int k = 0; k < m->transpose_launches && s == CLGQA_OK; k++) {
        model_transposes *launch = &m->transposes[k];
        launch->table = used;
        s = clgqa_transpose_encode(launch->entries, launch->count, table + used);
        used += launch->count * CLGQA_TRANSPOSE_UINTS;
    }
    if (s == CLGQA_OK)
        s = clgqa_buffer_create(m->rt, uints * sizeof *table, &m->transpose_tables);
    if (s == CLGQA_OK)
        s = clgqa_buffer_write(m->rt, m->transpose_tables, 0, uints * sizeof *table, table);
    free(table);
    return s;
}

/* The Linear weights and their gradients, where GEMMs read and write them
 * in place (when their offsets allow a sub-buffer). */
static clgqa_status register_weights(clgqa_model *m) {
    for (int i = 0; i < model_linear_count(m); i++) {
        linear_weight w = linear_weight_of(m, i);
        CLGQA_TRY(clgqa_gemm_operand_region(m->rt, model_param(m, CLGQA_PARAMS, w.tensor),
                                            w.n_out * w.n_in));
        CLGQA_TRY(clgqa_gemm_operand_region(m->rt, model_param(m, CLGQA_GRADS, w.tensor),
                                            w.n_out * w.n_in));
    }
    return CLGQA_OK;
}

/* ---- the backward's column sums ---- */

/* The chunks of every partial column sum at the largest batch, and where
 * they sit (model_partials). */
static void plan_partials(clgqa_model *m) {
    const clgqa_model_dims *d = &m->dims;
    size_t rows = (size_t)d->max_batch * d->tokens, C = d->embed_dim, F = d->mlp_dim,
           qkv = (size_t)model_qkv_width(m);
    model_partials *p = &m->partials;
    p->ln_chunks = clgqa_layernorm_backward_chunks(m->rt);
    p->fc1_chunks = clgqa_column_sum_chunks(m->rt, rows, F);
    p->qkv_chunks = clgqa_column_sum_chunks(m->rt, rows, qkv);
    p->head_chunks = clgqa_column_sum_chunks(m->rt, d->max_batch, d->num_classes);
    size_t ln = p->ln_chunks * C; /* one LayerNorm sum's partials */
    p->fc2_b = 0;
    p->norm2 = p->fc2_b + ln;
    p->proj_b = p->norm2 + 2 * ln;
    p->fc1_b = p->proj_b + ln;
    p->qkv_b = p->fc1_b + p->fc1_chunks * F;
    p->norm1 = p->qkv_b + p->qkv_chunks * qkv;
    p->slot = p->norm1 + 2 * ln;
    p->head_b = 0;
    p->norm = p->head_b + p->head_chunks * d->num_classes;
    p->final = p->norm + 2 * ln;
}

/* Adds the sum of tensor t's gradient from `partials` ([chunks, width]) to
 * finish f, in the launch for its gradients' and partials' buffers (a new
 * one when no launch has both). */
static void add_finish_sum(clgqa_model *m, model_finish *f, int t, clgqa_view partials,
                           size_t chunks, size_t width) {
    clgqa_view grads = model_param(m, CLGQA_GRADS, t);
    model_finish_launch *launch = NULL;
    for (int i = 0; i < f->launches && !launch; i++)
        if (f->launch[i].grads.mem == grads.mem && f->launch[i].partials.mem == partials.mem)
            launch = &f->launch[i];
    if (!launch) {
        launch = &f->launch[f->launches++];
        launch->grads = clgqa_view_at(grads.mem, 0);
        launch->partials = clgqa_view_at(partials.mem, 0);
        launch->count = 0;
    }
    clgqa_column_sum sum = {partials.offset, chunks, width, grads.offset};
    launch->sums[launch->count++] = sum;
}

/* Every block's finish, the final tensors' and the patch embedding
 * weight's, with their device tables written once. A block's finish also
 * adds its split weight gradients' partials (model_gemm). */
static clgqa_status build_finishes(clgqa_model *m) {
    const clgqa_model_dims *d = &m->dims;
    const model_partials *p = &m->partials;
    const model_gemm *g = &m->gemm;
    size_t C = d->embed_dim, F = d->mlp_dim, qkv = (size_t)model_qkv_width(m), R = p->ln_chunks;
    int L = d->num_layers;
    m->finishes = calloc((size_t)L + 2, sizeof *m->finishes);
    if (!m->finishes)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: finish tables");
#define COLUMNS(offset) clgqa_view_add(m->column_partials, (offset))
    for (int l = 0; l < L; l++) {
        model_finish *f = &m->finishes[l];
        size_t slot = (size_t)(l % 2) * p->slot;
#define T(which) model_layer_tensor(l, MODEL_L_##which)
        add_finish_sum(m, f, T(NORM1_W), COLUMNS(slot + p->norm1), R, C);
        add_finish_sum(m, f, T(NORM1_B), COLUMNS(slot + p->norm1 + R * C), R, C);
        add_finish_sum(m, f, T(Q_B), COLUMNS(slot + p->qkv_b), p->qkv_chunks, qkv); /* q, k, v biases */
        add_finish_sum(m, f, T(PROJ_B), COLUMNS(slot + p->proj_b), R, C);
        add_finish_sum(m, f, T(NORM2_W), COLUMNS(slot + p->norm2), R, C);
        add_finish_sum(m, f, T(NORM2_B), COLUMNS(slot + p->norm2 + R * C), R, C);
        add_finish_sum(m, f, T(FC1_B), COLUMNS(slot + p->fc1_b), p->fc1_chunks, F);
        add_finish_sum(m, f, T(FC2_B), COLUMNS(slot + p->fc2_b), R, C);
#undef T
        for (int j = 0; j < LINEAR_BLOCK; j++)
            if (g->split[j] > 1) {
                linear_weight w = linear_weight_of(m, model_block_linear(l, (model_linear)j));
                add_finish_sum(m, f, w.tensor, clgqa_view_add(m->gemm_partials, g->partials[j]),
                               g->split[j], w.n_out * w.n_in);
            }
    }
    model_finish *f = &m->finishes[L];
    size_t final = 2 * p->slot;
    add_finish_sum(m, f, model_final_tensor(m, MODEL_F_NORM_W), COLUMNS(final + p->norm), R, C);
    add_finish_sum(m, f, model_final_tensor(m, MODEL_F_NORM_B), COLUMNS(final + p->norm + R * C),
                   R, C);
    add_finish_sum(m, f, model_final_tensor(m, MODEL_F_HEAD_B), COLUMNS(final + p->head_b),
                   p->head_chunks, d->num_classes);
#undef COLUMNS
    if (g->patch_split > 1) {
        linear_weight w = linear_weight_of(m, 0);
        add_finish_sum(m, &m->finishes[L + 1], w.tensor, m->gemm_partials, g->patch_split,
                       w.n_out * w.n_in);
    }

    size_t uints = (size_t)(L + 2) * MODEL_FINISH_SUMS * CLGQA_COLUMN_SUM_UINTS, used = 0;
    cl_uint *table = calloc(uints, sizeof *table);
    if (!table)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: finish tables");
    clgqa_status s = CLGQA_OK;
    for (int group = 0; group <= L + 1 && s == CLGQA_OK; group++)
        for (int i = 0; i < m->finishes[group].launches && s == CLGQA_OK; i++) {
            model_finish_launch *launch = &m->finishes[group].launch[i];
            launch->table = used;
            s = clgqa_column_sum_encode(launch->sums, launch->count, table + used);
            used += launch->count * CLGQA_COLUMN_SUM_UINTS;
        }
    if (s == CLGQA_OK)
        s = clgqa_buffer_create(m->rt, uints * sizeof *table, &m->finish_tables);
    if (s == CLGQA_OK)
        s = clgqa_buffer_write(m->rt, m->finish_tables, 0, uints * sizeof *table, table);
    free(table);
    return s;
}

/* ---- flat buffers in chunks ---- */

/* Chunks of whole tensors in table order, each at most the device's largest
 * allocation; then the four buffers' chunks, zero-filled. */
static clgqa_status create_flat_buffers(clgqa_model *m) {
    size_t limit = allocation_limit_floats(m->rt);
    m->chunk_first = calloc((size_t)m->tensor_count + 1, sizeof *m->chunk_first);
    m->tensor_chunk = calloc((size_t)m->tensor_count, sizeof *m->tensor_chunk);
    if (!m->chunk_first || !m->tensor_chunk)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: chunk table");
    int c = 0;
    for (int i = 0; i < m->tensor_count; i++) {
        /* A block's q, k, v weights are one GEMM operand, their biases one
         * bias: each triple stays in one chunk (k and v never start one). */
        int which = i < MODEL_T_BLOCKS ? -1 : (i - MODEL_T_BLOCKS) % MODEL_L_TENSORS;
        int block = i >= MODEL_T_BLOCKS && i < model_final_tensor(m, 0);
        int joined = block && (which == MODEL_L_K_W || which == MODEL_L_V_W ||
                               which == MODEL_L_K_B || which == MODEL_L_V_B);
        int group = block && (which == MODEL_L_Q_W || which == MODEL_L_Q_B) ? 3 : 1;
        const clgqa_tensor_info *t = &m->tensors[i];
        size_t end = m->tensors[i + group - 1].offset + m->tensors[i + group - 1].numel;
        if (end - t->offset > limit)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                              "clgqa_model_create: tensor %s%s (%.2f MiB) exceeds the largest "
                              "allocation %s allows (%.2f MiB)",
                              t->name, group > 1 ? " with k and v" : "",
                              (double)(end - t->offset) * sizeof(float) / (1 << 20),
                              m->rt->device_name, (double)m->rt->max_alloc_bytes / (1 << 20));
        if (!joined && end - m->chunk_first[c] > limit)
            m->chunk_first[++c] = t->offset;
        m->tensor_chunk[i] = c;
    }
    m->chunk_count = c + 1;
    m->chunk_first[m->chunk_count] = m->param_count;
    static const char *const names[4] = {"the parameters", "the gradients",
                                         "AdamW's first moments", "AdamW's second moments"};
    for (int b = 0; b < 4; b++) {
        m->flat[b] = calloc((size_t)m->chunk_count, sizeof *m->flat[b]);
        if (!m->flat[b])
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: chunk table");
        for (int k = 0; k < m->chunk_count; k++) {
            char what[96];
            snprintf(what, sizeof what, "%s (chunk %d of %d)", names[b], k + 1, m->chunk_count);
            CLGQA_TRY(create_zeroed(m->rt, m->chunk_first[k + 1] - m->chunk_first[k],
                                    &m->flat[b][k], what));
        }
    }
    return CLGQA_OK;
}

/* ---- AdamW's no-decay ranges ---- */

/* timm's rule (param.ndim <= 1 or a name in no_weight_decay(): pos_embed,
 * cls_token). */
static int skips_decay(const clgqa_tensor_info *t, int index) {
    return t->ndim <= 1 || index == MODEL_T_POS || index == MODEL_T_CLS;
}

/* The no-decay tensors as ranges of flat indices, neighbours merged, in a
 * device table of edges (clgqa_no_decay). */
static clgqa_status build_no_decay_edges(clgqa_model *m) {
    cl_uint *edges = malloc(2 * (size_t)m->tensor_count * sizeof *edges);
    if (!edges)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: no-decay table");
    size_t count = 0;
    for (int i = 0; i < m->tensor_count; i++) {
        const clgqa_tensor_info *t = &m->tensors[i];
        if (!skips_decay(t, i))
            continue;
        if (count && edges[count - 1] == t->offset)
            edges[count - 1] = (cl_uint)(t->offset + t->numel); /* extends the last range */
        else {
            edges[count++] = (cl_uint)t->offset;
            edges[count++] = (cl_uint)(t->offset + t->numel);
        }
    }
    m->no_decay_count = count;
    clgqa_status s = clgqa_buffer_create(m->rt, count * sizeof *edges, &m->no_decay_edges);
    if (s == CLGQA_OK)
        s = clgqa_buffer_write(m->rt, m->no_decay_edges, 0, count * sizeof *edges, edges);
    free(edges);
    return s;
}

/* ---- create / destroy ---- */

static clgqa_status create_model(clgqa_model *m, const clgqa_model_desc *desc, int max_batch) {
    CLGQA_TRY(derive_dims(desc, max_batch, &m->dims));
    const clgqa_model_dims *d = &m->dims;
    int L = d->num_layers;
    m->desc = *desc;
    m->desc.num_kv_heads = m->dims.kv_heads;
    m->traits = *clgqa_scheme_traits_of(desc->scheme);
    m->attention_kernel = m->rt->attention_kernel;
    m->tensors = calloc(MODEL_T_BLOCKS + (size_t)L * MODEL_L_TENSORS + MODEL_F_TENSORS,
                        sizeof *m->tensors);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->pgqa_fixed = calloc((size_t)L, sizeof *m->pgqa_fixed);
    m->weights_t = calloc((size_t)model_linear_count(m), sizeof *m->weights_t);
    if (!m->tensors || !m->layers || !m->pgqa_fixed || !m->weights_t)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: host tables");
    build_tensor_table(m);
    CLGQA_TRY(create_flat_buffers(m));
    CLGQA_TRY(register_weights(m));
    CLGQA_TRY(init_parameters(m));
    CLGQA_TRY(plan_gemm(m));
    plan_partials(m);
    CLGQA_TRY(create_arena(m));
    CLGQA_TRY(build_finishes(m));
    CLGQA_TRY(build_transposes(m));
    if (m->param_count > UINT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_create: %zu parameters exceed the "
                          "2^32 of the optimizer's tables", m->param_count);
    CLGQA_TRY(build_no_decay_edges(m));

    size_t grouping_ints = (size_t)L * (d->num_heads + d->kv_heads);
    CLGQA_TRY(clgqa_buffer_create(m->rt, grouping_ints * sizeof(cl_int), &m->group_ints));
    CLGQA_TRY(create_zeroed(m->rt, (size_t)2 * L * d->kv_heads, &m->group_floats,
                            "the grouping state"));
    int32_t *split = malloc((size_t)d->kv_heads * sizeof *split);
    if (!split)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: split");
    for (int j = 0; j < d->kv_heads; j++)
        split[j] = d->num_heads / d->kv_heads;
    clgqa_status s = CLGQA_OK;
    for (int l = 0; l < L && s == CLGQA_OK; l++)
        s = clgqa_model_write_grouping(m, l, NULL, split);
    free(split);
    CLGQA_TRY(s);
    CLGQA_TRY(clgqa_model_reset_metrics(m));
    return clgqa_finish(m->rt);
}

/* ---- memory, before anything is allocated ---- */

/* The parameter count the tensor table would have, from the same lists,
 * without building it (a model too large to build is what this is for). */
static size_t count_parameters(const clgqa_model_dims *d) {
    const size_t C = (size_t)d->embed_dim, KV = (size_t)d->kv_heads * d->head_dim,
                 F = (size_t)d->mlp_dim, p = (size_t)d->patch_size, P = (size_t)d->tokens,
                 in = (size_t)d->in_chans, K = (size_t)d->num_classes;
    size_t outside = 0, block = 0;
#define NUMEL(ndim, s0, s1, s2, s3)                                                         \
    ((size_t)(s0) * ((ndim) > 1 ? (size_t)(s1) : 1) * ((ndim) > 2 ? (size_t)(s2) : 1) *    \
     ((ndim) > 3 ? (size_t)(s3) : 1))
#define COUNT_OUTSIDE(id, name, ndim, s0, s1, s2, s3) outside += NUMEL(ndim, s0, s1, s2, s3);
#define COUNT_BLOCK(id, suffix, rows, cols, init) block += (size_t)(rows) * ((cols) ? (size_t)(cols) : 1);
    MODEL_EMBED_TENSORS(COUNT_OUTSIDE)
    MODEL_BLOCK_TENSORS(COUNT_BLOCK)
    MODEL_FINAL_TENSORS(COUNT_OUTSIDE)
#undef COUNT_BLOCK
#undef COUNT_OUTSIDE
#undef NUMEL
    return outside + (size_t)d->num_layers * block;
}

clgqa_status clgqa_model_memory_estimate(clgqa_runtime *rt, const clgqa_model_desc *desc,
                                         int max_batch, clgqa_storage storage,
                                         clgqa_model_memory *out) {
    memset(out, 0, sizeof *out);
    clgqa_model m;
    memset(&m, 0, sizeof m);
    m.rt = rt;
    m.act_storage = storage;
    CLGQA_TRY(derive_dims(desc, max_batch, &m.dims));
    m.desc = *desc;
    m.traits = *clgqa_scheme_traits_of(desc->scheme);
    m.attention_kernel = rt->attention_kernel;
    m.param_count = count_parameters(&m.dims);
    size_t limit = allocation_limit_floats(rt);
    m.chunk_count = (int)(limit ? (m.param_count + limit - 1) / limit : 1);
    CLGQA_TRY(plan_gemm(&m));
    plan_partials(&m);
    size_t sizes[MAX_ARENA_BUFFERS] = {0};
    carver measure = {NULL, sizes, arena_limit_floats(&m), 0, 0, 0,
                      clgqa_gemm_operand_alignment(rt), NULL, CLGQA_OK};
    carve_arena(&m, &measure);
    out->gemm_rows = m.gemm.rows;
    for (int i = 0; i < MAX_ARENA_BUFFERS; i++)
        out->arena_floats += sizes[i];
    /* The blocks' views alone, in one unlimited buffer. */
    size_t block_sizes[MAX_ARENA_BUFFERS] = {0};
    carver blocks = {NULL, block_sizes, (size_t)-1, 0, 0, 0, measure.align, NULL, CLGQA_OK};
    model_layer scratch;
    for (int l = 0; l < m.dims.num_layers; l++)
        carve_layer(&m, &scratch, &blocks);
    out->saved_floats = block_sizes[0];
    const size_t L = (size_t)m.dims.num_layers;
    out->param_floats = m.param_count;
    const size_t linears = (size_t)model_linear_count(&m);
    out->host_bytes = L * (sizeof(model_layer) + sizeof(model_finish) + sizeof(clgqa_view) +
                           MODEL_L_TENSORS * sizeof(clgqa_tensor_info)) +
                      linears * (sizeof(clgqa_view) + sizeof(model_transposes) +
                                 linears * sizeof(clgqa_transpose));
    out->other_bytes = L * (size_t)(m.dims.num_heads + m.dims.kv_heads) * sizeof(cl_int) +
                       2 * L * (size_t)m.dims.kv_heads * sizeof(float) +
                       (L + 2) * MODEL_FINISH_SUMS * CLGQA_COLUMN_SUM_UINTS * sizeof(cl_uint) +
                       linears * CLGQA_TRANSPOSE_UINTS * sizeof(cl_uint) +
                       (2 * (MODEL_T_BLOCKS + L * MODEL_L_TENSORS + MODEL_F_TENSORS) + 2 * L) *
                           sizeof(cl_uint); /* no-decay edges, drop-path rates */
    return CLGQA_OK;
}

clgqa_status clgqa_model_create(clgqa_runtime *rt, const clgqa_model_desc *desc, int max_batch,
                                clgqa_model **out) {
    return clgqa_model_create_stored(rt, desc, max_batch, CLGQA_STORAGE_FLOAT, out);
}

clgqa_status clgqa_model_create_stored(clgqa_runtime *rt, const clgqa_model_desc *desc,
                                       int max_batch, clgqa_storage storage, clgqa_model **out) {
    *out = NULL;
    if (storage != CLGQA_STORAGE_FLOAT && storage != CLGQA_STORAGE_HALF)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_create: unknown storage %d",
                          (int)storage);
    clgqa_model *m = calloc(1, sizeof *m);
    if (!m)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_create: model");
    m->rt = rt;
    m->act_storage = storage;
    clgqa_status s = create_model(m, desc, max_batch);
    if (s != CLGQA_OK) {
        clgqa_model_destroy(m);
        return s;
    }
    *out = m;
    return CLGQA_OK;
}

void clgqa_model_destroy(clgqa_model *m) {
    if (!m)
        return;
    for (int b = 0; b < MODEL_FLAT_BUFFERS; b++) {
        for (int k = 0; m->flat[b] && k < m->chunk_count; k++) {
            if (m->flat[b][k])
                clgqa_gemm_operand_regions_release(m->rt, m->flat[b][k]);
            clgqa_buffer_release(&m->flat[b][k]);
        }
        free(m->flat[b]);
    }
    clgqa_buffer_release(&m->no_decay_edges);
    clgqa_buffer_release(&m->drop_rates);
    free(m->chunk_first);
    free(m->tensor_chunk);
    for (int i = 0; i < m->arena_count; i++) {
        if (m->arena[i])
            clgqa_gemm_operand_regions_release(m->rt, m->arena[i]);
        clgqa_buffer_release(&m->arena[i]);
    }
    clgqa_buffer_release(&m->group_ints);
    clgqa_buffer_release(&m->group_floats);
    clgqa_buffer_release(&m->pgqa_noise);
    clgqa_buffer_release(&m->finish_tables);
    clgqa_buffer_release(&m->transpose_tables);
    for (int k = 0; m->transposes && k < m->transpose_launches; k++)
        free(m->transposes[k].entries);
    free(m->transposes);
    free(m->weights_t);
    free(m->finishes);
    free(m->arena);
    free(m->layers);
    free(m->pgqa_fixed);
    free(m->tensors);
    free(m);
}

const clgqa_model_dims *clgqa_model_get_dims(const clgqa_model *m) { return &m->dims; }
const clgqa_model_desc *clgqa_model_get_desc(const clgqa_model *m) { return &m->desc; }

/* ---- tensor table and transfers ---- */

size_t clgqa_model_param_count(const clgqa_model *m) { return m->param_count; }
int clgqa_model_tensor_count(const clgqa_model *m) { return m->tensor_count; }

const clgqa_tensor_info *clgqa_model_tensor(const clgqa_model *m, int index) {
    return index >= 0 && index < m->tensor_count ? &m->tensors[index] : NULL;
}

const clgqa_tensor_info *clgqa_model_find_tensor(const clgqa_model *m, const char *name) {
    for (int i = 0; i < m->tensor_count; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

clgqa_view clgqa_model_buffer_view(const clgqa_model *m, clgqa_model_buffer which) {
    return clgqa_view_at(m->flat[which][0], 0);
}

int clgqa_model_chunk_count(const clgqa_model *m) { return m->chunk_count; }

clgqa_view clgqa_model_chunk(const clgqa_model *m, clgqa_model_buffer which, int chunk,
                             size_t *first, size_t *floats) {
    if (first)
        *first = m->chunk_first[chunk];
    if (floats)
        *floats = m->chunk_first[chunk + 1] - m->chunk_first[chunk];
    return clgqa_view_at(m->flat[which][chunk], 0);
}

static clgqa_status check_buffer(const clgqa_model *m, clgqa_model_buffer which) {
    if ((int)which < 0 || which >= MODEL_FLAT_BUFFERS)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "model: no flat buffer %d", (int)which);
    if (!m->flat[which])
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "model: the weights' EMA was never started "
                          "(clgqa_model_ema_start)");
    return CLGQA_OK;
}

/* The table index of t (a pointer into the table, or a copy of an entry). */
static clgqa_status tensor_index(const clgqa_model *m, const clgqa_tensor_info *t, int *index) {
    for (int i = 0; i < m->tensor_count; i++)
        if (m->tensors[i].offset == t->offset && m->tensors[i].numel == t->numel) {
            *index = i;
            return CLGQA_OK;
        }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "model: '%s' is not a tensor of this model", t->name);
}

clgqa_status clgqa_model_read_tensor(clgqa_model *m, clgqa_model_buffer which,
                                     const clgqa_tensor_info *t, float *host) {
    int i = 0;
    CLGQA_TRY(check_buffer(m, which));
    CLGQA_TRY(tensor_index(m, t, &i));
    clgqa_view v = model_param(m, which, i);
    return clgqa_buffer_read(m->rt, v.mem, v.offset * sizeof(float), t->numel * sizeof(float),
                             host);
}

clgqa_status clgqa_model_write_tensor(clgqa_model *m, clgqa_model_buffer which,
                                      const clgqa_tensor_info *t, const float *host) {
    int i = 0;
    CLGQA_TRY(check_buffer(m, which));
    CLGQA_TRY(tensor_index(m, t, &i));
    clgqa_view v = model_param(m, which, i);
    return clgqa_buffer_write(m->rt, v.mem, v.offset * sizeof(float), t->numel * sizeof(float),
                              host);
}

clgqa_status clgqa_model_read_buffer(clgqa_model *m, clgqa_model_buffer which, float *host) {
    CLGQA_TRY(check_buffer(m, which));
    for (int c = 0; c < m->chunk_count; c++)
        CLGQA_TRY(clgqa_buffer_read(m->rt, m->flat[which][c], 0,
                                    (m->chunk_first[c + 1] - m->chunk_first[c]) * sizeof(float),
                                    host + m->chunk_first[c]));
    return CLGQA_OK;
}

clgqa_status clgqa_model_check_finite(clgqa_model *m) {
    float *host = malloc((m->param_count ? m->param_count : 1) * sizeof *host);
    if (!host)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate %zu floats to check the weights",
                          m->param_count);
    clgqa_status s = clgqa_model_read_buffer(m, CLGQA_PARAMS, host);
    for (int i = 0; i < m->tensor_count && s == CLGQA_OK; i++) {
        const clgqa_tensor_info *t = &m->tensors[i];
        const float *x = host + t->offset;
        size_t bad = 0, first = 0;
        for (size_t j = 0; j < t->numel; j++)
            if (!isfinite(x[j]) && bad++ == 0)
                first = j;
        if (bad)
            s = clgqa_fail(CLGQA_ERR_FORMAT, "tensor '%s' holds %g at element %zu (%zu of its %zu "
                           "values are not finite)", t->name, (double)x[first], first, bad,
                           t->numel);
    }
    free(host);
    return s;
}

clgqa_status clgqa_model_write_buffer(clgqa_model *m, clgqa_model_buffer which,
                                      const float *host) {
    CLGQA_TRY(check_buffer(m, which));
    for (int c = 0; c < m->chunk_count; c++)
        CLGQA_TRY(clgqa_buffer_write(m->rt, m->flat[which][c], 0,
                                     (m->chunk_first[c + 1] - m->chunk_first[c]) * sizeof(float),
                                     host + m->chunk_first[c]));
    return CLGQA_OK;
}

/* A non-blocking read on the compute queue, after what is queued. */
static clgqa_status copy_without_waiting(clgqa_model *m, cl_mem mem, size_t offset_bytes,
                                         size_t bytes, void *host, cl_event *copied) {
    CLGQA_CL(clEnqueueReadBuffer(m->rt->queue, mem, CL_FALSE, offset_bytes, bytes, host, 0, NULL,
                                 copied));
    return CLGQA_OK;
}

/* ---- grouping state ---- */

static clgqa_status check_layer(const clgqa_model *m, const char *op, int layer) {
    if (layer < 0 || layer >= m->dims.num_layers)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: layer %d out of range [0, %d)", op, layer,
                          m->dims.num_layers);
    return CLGQA_OK;
}

clgqa_status clgqa_model_read_grouping(clgqa_model *m, int layer, float *cache,
                                       int32_t *group_counts) {
    CLGQA_TRY(check_layer(m, "clgqa_model_read_grouping", layer));
    size_t G = m->dims.kv_heads;
    if (cache)
        CLGQA_TRY(clgqa_buffer_read(m->rt, m->group_floats,
                                    model_cache(m, layer).offset * sizeof(float),
                                    G * sizeof(float), cache));
    if (group_counts)
        CLGQA_TRY(clgqa_buffer_read(m->rt, m->group_ints,
                                    model_group_counts(m, layer).offset * sizeof(cl_int),
                                    G * sizeof(cl_int), group_counts));
    return CLGQA_OK;
}

clgqa_status clgqa_model_write_grouping(clgqa_model *m, int layer, const float *cache,
                                        const int32_t *group_counts) {
    const char *op = "clgqa_model_write_grouping";
    CLGQA_TRY(check_layer(m, op, layer));
    int H = m->dims.num_heads, G = m->dims.kv_heads;
    if (cache)
        CLGQA_TRY(clgqa_buffer_write(m->rt, m->group_floats,
                                     model_cache(m, layer).offset * sizeof(float),
                                     (size_t)G * sizeof(float), cache));
    if (!group_counts)
        return CLGQA_OK;
    int total = 0;
    for (int j = 0; j < G; j++) {
        if (group_counts[j] < 0 || group_counts[j] > H)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                              "%s: layer %d: key/value head %d has %d query heads (must be 0..%d)",
                              op, layer, j, (int)group_counts[j], H);
        total += group_counts[j];
    }
    if (total != H)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: layer %d: the split gives %d query heads, the model has %d", op,
                          layer, total, H);
    /* Groups are contiguous in head order. */
    cl_int *kv_map = malloc((size_t)H * sizeof *kv_map);
    if (!kv_map)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: kv_map", op);
    for (int j = 0, h = 0; j < G; j++)
        for (int i = 0; i < group_counts[j]; i++)
            kv_map[h++] = j;
    clgqa_status s = clgqa_buffer_write(m->rt, m->group_ints,
                                        model_kv_map(m, layer).offset * sizeof(cl_int),
                                        (size_t)H * sizeof(cl_int), kv_map);
    free(kv_map);
    CLGQA_TRY(s);
    return clgqa_buffer_write(m->rt, m->group_ints,
                              model_group_counts(m, layer).offset * sizeof(cl_int),
                              (size_t)G * sizeof(cl_int), group_counts);
}

static size_t all_group_counts_bytes(const clgqa_model *m) {
    return (size_t)m->dims.num_layers * m->dims.kv_heads * sizeof(cl_int);
}

clgqa_status clgqa_model_read_all_group_counts(clgqa_model *m, int32_t *group_counts) {
    return clgqa_buffer_read(m->rt, m->group_ints, model_group_counts(m, 0).offset * sizeof(cl_int),
                             all_group_counts_bytes(m), group_counts);
}

clgqa_status clgqa_model_copy_all_group_counts(clgqa_model *m, int32_t *group_counts,
                                               cl_event *copied) {
    return copy_without_waiting(m, m->group_ints, model_group_counts(m, 0).offset * sizeof(cl_int),
                                all_group_counts_bytes(m), group_counts, copied);
}

void clgqa_model_freeze_grouping(clgqa_model *m, model_grouping grouping) {
    m->traits = *clgqa_scheme_traits_of(m->desc.scheme);
    if (grouping == MODEL_GROUPING_FROZEN)
        m->traits.dynamic = 0;
}

void clgqa_model_defer_gradients(clgqa_model *m, int defer) { m->defer_gradients = defer; }

clgqa_status clgqa_model_set_regularisation(clgqa_model *m, const clgqa_regularisation *r) {
    const char *op = "clgqa_model_set_regularisation";
    if (!(r->label_smoothing >= 0 && r->label_smoothing < 1) ||
        !(r->drop_path >= 0 && r->drop_path < 1))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: label_smoothing %g and drop_path %g must "
                          "be in [0, 1)", op, r->label_smoothing, r->drop_path);
    m->label_smoothing = r->label_smoothing;
    m->drop_path = r->drop_path;
    if (r->drop_path == 0)
        return CLGQA_OK;
    /* timm: dpr = [x.item() for x in torch.linspace(0, drop_path_rate,
     * depth)] (float32 values), keep_prob = 1 - dpr[l] in Python, then
     * float division by it on the device's float tensors. */
    int L = m->dims.num_layers;
    float *rates = malloc((size_t)2 * L * sizeof *rates);
    if (!rates)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: rate table", op);
    for (int l = 0; l < L; l++) {
        float rate = L > 1 ? (float)(r->drop_path * l / (L - 1)) : 0.0f;
        float keep = (float)(1.0 - (double)rate);
        rates[2 * l] = keep;
        rates[2 * l + 1] = (float)(1.0 / (double)keep);
    }
    clgqa_status s = CLGQA_OK;
    if (!m->drop_rates)
        s = clgqa_buffer_create(m->rt, (size_t)2 * L * sizeof *rates, &m->drop_rates);
    if (s == CLGQA_OK)
        s = clgqa_buffer_write(m->rt, m->drop_rates, 0, (size_t)2 * L * sizeof *rates, rates);
    free(rates);
    return s;
}

/* ---- weight EMA ---- */

int clgqa_model_has_ema(const clgqa_model *m) { return m->flat[CLGQA_EMA] != NULL; }

clgqa_status clgqa_model_ema_start(clgqa_model *m) {
    if (!m->flat[CLGQA_EMA]) {
        m->flat[CLGQA_EMA] = calloc((size_t)m->chunk_count, sizeof *m->flat[CLGQA_EMA]);
        if (!m->flat[CLGQA_EMA])
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clgqa_model_ema_start: chunk table");
        for (int k = 0; k < m->chunk_count; k++) {
            char what[96];
            snprintf(what, sizeof what, "the weights' EMA (chunk %d of %d)", k + 1,
                     m->chunk_count);
            CLGQA_TRY(create_zeroed(m->rt, m->chunk_first[k + 1] - m->chunk_first[k],
                                    &m->flat[CLGQA_EMA][k], what));
        }
    }
    for (int k = 0; k < m->chunk_count; k++)
        CLGQA_TRY(clgqa_buffer_copy(m->rt, clgqa_view_at(m->flat[CLGQA_EMA][k], 0),
                                    clgqa_view_at(m->flat[CLGQA_PARAMS][k], 0),
                                    m->chunk_first[k + 1] - m->chunk_first[k]));
    return CLGQA_OK;
}

clgqa_status clgqa_model_ema_update(clgqa_model *m, double decay) {
    CLGQA_TRY(check_buffer(m, CLGQA_EMA));
    for (int k = 0; k < m->chunk_count; k++)
        CLGQA_TRY(clgqa_ema_update(m->rt, clgqa_view_at(m->flat[CLGQA_EMA][k], 0),
                                   clgqa_view_at(m->flat[CLGQA_PARAMS][k], 0),
                                   m->chunk_first[k + 1] - m->chunk_first[k], decay));
    return CLGQA_OK;
}

clgqa_status clgqa_model_ema_swap(clgqa_model *m) {
    CLGQA_TRY(check_buffer(m, CLGQA_EMA));
    /* The forward's weight transposes name the parameters' buffers they
     * read (build_transposes): they follow the swap. */
    for (int i = 0; i < m->transpose_launches; i++)
        for (int k = 0; k < m->chunk_count; k++)
            if (m->transposes[i].src.mem == m->flat[CLGQA_PARAMS][k]) {
                m->transposes[i].src.mem = m->flat[CLGQA_EMA][k];
                break;
            }
    cl_mem *params = m->flat[CLGQA_PARAMS];
    m->flat[CLGQA_PARAMS] = m->flat[CLGQA_EMA];
    m->flat[CLGQA_EMA] = params;
    return CLGQA_OK;
}

void clgqa_model_set_hooks(clgqa_model *m, const clgqa_model_hooks *hooks) {
    static const clgqa_model_hooks none;
    m->hooks = hooks ? *hooks : none;
}

clgqa_status clgqa_model_set_pgqa_noise(clgqa_model *m, int layer, const float *noise) {
    const char *op = "clgqa_model_set_pgqa_noise";
    CLGQA_TRY(check_layer(m, op, layer));
    if (!m->traits.perturbs)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: the model's scheme is %s, not pgqa", op,
                          clgqa_scheme_name(m->desc.scheme));
    if (!noise) {
        m->pgqa_fixed[layer] = clgqa_view_at(NULL, 0);
        return CLGQA_OK;
    }
    size_t per_layer = (size_t)m->dims.num_heads * m->dims.tokens * m->dims.head_dim;
    if (!m->pgqa_noise)
        CLGQA_TRY(create_zeroed(m->rt, per_layer * m->dims.num_layers, &m->pgqa_noise,
                                "the fixed PGQA noise"));
    CLGQA_TRY(clgqa_buffer_write(m->rt, m->pgqa_noise, layer * per_layer * sizeof(float),
                                 per_layer * sizeof(float), noise));
    m->pgqa_fixed[layer] = clgqa_view_at(m->pgqa_noise, (size_t)layer * per_layer);
    return CLGQA_OK;
}

/* ---- the loss scaler (precision 16-mixed) ---- */

_Static_assert(CLGQA_SCALER_FLOATS == CLGQA_LOSS_SCALER_FLOATS, "model_private.h's copy size");

clgqa_status clgqa_model_set_loss_scaler(clgqa_model *m, const clgqa_loss_scaler *state) {
    m->loss_scaling = state != NULL;
    if (!state)
        return CLGQA_OK;
    if (!(state->scale > 0) || !isfinite(state->scale) || frexpf(state->scale, &(int){0}) != 0.5f ||
        state->growth < 0 || state->growth >= CLGQA_LOSS_SCALE_GROWTH_INTERVAL ||
        state->skipped < 0 || state->skipped > (1L << 24)) {
        m->loss_scaling = 0;
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_set_loss_scaler: scale %g (a power "
                          "of 2), clean steps %ld (below %d), skipped steps %ld (at most 2^24)",
                          (double)state->scale, state->growth, CLGQA_LOSS_SCALE_GROWTH_INTERVAL,
                          state->skipped);
    }
    float fields[CLGQA_SCALER_FLOATS] = {0};
    fields[CLGQA_SCALER_SCALE] = state->scale;
    fields[CLGQA_SCALER_GROWTH] = (float)state->growth;
    fields[CLGQA_SCALER_SKIPPED] = (float)state->skipped;
    return clgqa_buffer_write(m->rt, m->scaler.mem, m->scaler.offset * sizeof(float),
                              sizeof fields, fields);
}

int clgqa_model_loss_scaling(const clgqa_model *m) { return m->loss_scaling; }

clgqa_status clgqa_model_copy_loss_scaler(clgqa_model *m, float *fields, cl_event *copied) {
    return copy_without_waiting(m, m->scaler.mem, m->scaler.offset * sizeof(float),
                                CLGQA_SCALER_FLOATS * sizeof(float), fields, copied);
}

void clgqa_loss_scaler_of_copy(const float *fields, clgqa_loss_scaler *out) {
    out->scale = fields[CLGQA_SCALER_SCALE];
    out->growth = (long)fields[CLGQA_SCALER_GROWTH];
    out->skipped = (long)fields[CLGQA_SCALER_SKIPPED];
    out->found_inf = fields[CLGQA_SCALER_FOUND_INF] != 0.0f;
}

clgqa_status clgqa_model_read_loss_scaler(clgqa_model *m, clgqa_loss_scaler *out) {
    float fields[CLGQA_SCALER_FLOATS];
    CLGQA_TRY(clgqa_buffer_read(m->rt, m->scaler.mem, m->scaler.offset * sizeof(float),
                                sizeof fields, fields));
    clgqa_loss_scaler_of_copy(fields, out);
    return CLGQA_OK;
}

/* ---- metrics and outputs ---- */

clgqa_view clgqa_model_logits(const clgqa_model *m) { return m->logits; }
clgqa_view clgqa_model_losses(const clgqa_model *m) { return m->losses; }

clgqa_status clgqa_model_reset_metrics(clgqa_model *m) {
    m->samples = 0;
    return clgqa_buffer_fill(m->rt, m->metrics, MODEL_METRICS, 0.0f);
}

clgqa_status clgqa_model_restore_metrics(clgqa_model *m, const clgqa_metrics *in) {
    /* The device keeps float sums: the doubles read from them convert back exactly. */
    float sums[MODEL_METRICS] = {0.0f, 0.0f, 0.0f, (float)in->sum_loss, (float)in->sum_correct,
                                 (float)in->sum_top5};
    m->samples = in->samples;
    return clgqa_buffer_write(m->rt, m->metrics.mem, m->metrics.offset * sizeof(float),
                              sizeof sums, sums);
}

/* The device keeps [the last batch's loss, correct and top-5 sums, their
 * running sums]; the host counts the samples. */
clgqa_status clgqa_model_copy_metrics(clgqa_model *m, float *sums, clgqa_metrics_copy *copy,
                                      cl_event *copied) {
    copy->sums = sums;
    copy->batch = m->labels.mem ? m->batch : 0;
    copy->samples = m->samples;
    return copy_without_waiting(m, m->metrics.mem, m->metrics.offset * sizeof(float),
                                MODEL_METRICS * sizeof(float), sums, copied);
}

void clgqa_metrics_of_copy(const clgqa_metrics_copy *copy, clgqa_metrics *out) {
    const float *sums = copy->sums;
    int batch = copy->batch;
    out->last_loss = batch ? sums[0] / (float)batch : 0.0f;
    out->last_accuracy = batch ? sums[1] / (float)batch : 0.0f;
    out->last_top5 = batch ? sums[2] / (float)batch : 0.0f;
    out->sum_loss = sums[3];
    out->sum_correct = sums[4];
    out->sum_top5 = sums[5];
    out->samples = copy->samples;
}

clgqa_status clgqa_model_read_metrics(clgqa_model *m, clgqa_metrics *out) {
    float sums[MODEL_METRICS];
    clgqa_metrics_copy copy;
    cl_event copied;
    CLGQA_TRY(clgqa_model_copy_metrics(m, sums, &copy, &copied));
    cl_int err = clWaitForEvents(1, &copied);
    clReleaseEvent(copied);
    CLGQA_CL(err);
    clgqa_metrics_of_copy(&copy, out);
    return CLGQA_OK;
}

clgqa_status clgqa_model_copy_losses(clgqa_model *m, int count, float *losses, cl_event *copied) {
    if (count < 0 || count > m->batch)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "copying %d losses of a batch of %d", count,
                          m->batch);
    return copy_without_waiting(m, m->losses.mem, m->losses.offset * sizeof(float),
                                (size_t)count * sizeof(float), losses, copied);
}

clgqa_status clgqa_model_copy_logits(clgqa_model *m, float *logits, cl_event *copied) {
    return copy_without_waiting(m, m->logits.mem, m->logits.offset * sizeof(float),
                                (size_t)m->batch * m->dims.num_classes * sizeof(float), logits,
                                copied);
}

clgqa_status clgqa_model_read_logits(clgqa_model *m, float *host) {
    return clgqa_buffer_read(m->rt, m->logits.mem, m->logits.offset * sizeof(float),
                             (size_t)m->batch * m->dims.num_classes * sizeof(float), host);
}

size_t clgqa_model_arena_bytes(const clgqa_model *m) { return m->arena_bytes; }
