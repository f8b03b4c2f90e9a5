/* Launchers for kernels/attention.cl: grouped attention forward and
 * backward with the PGQA perturbation. Keys and values are gathered per
 * query head through kv_map, each query row's scores, softmax and weighted
 * values are one work-item's job, and key/value gradients are summed back
 * per key/value head through the same map. (The products are P x d per
 * (sample, head): too small for CLBlast's batched GEMM, which ran ~9x slower
 * on PoCL at the demo's shapes.) */
#include <math.h>

#include "clgqa/attention.h"
#include "ops/op_args.h"

#define FAMILY "attention"

/* Element counts of the per-head tensors. */
typedef struct attention_sizes {
    size_t heads_elems; /* B*H*P*d */
    size_t probs_elems; /* B*H*P*P */
    size_t q_elems;     /* B*P*H*d */
    size_t kv_elems;    /* B*P*G*d */
    size_t pairs;       /* B*H (sample, head) rows */
    size_t row_length;  /* P*d, the PGQA row */
} attention_sizes;

static attention_sizes sizes_of(const clgqa_attention_dims *dims) {
    attention_sizes s;
    size_t b = (size_t)dims->batch, p = (size_t)dims->tokens, h = (size_t)dims->heads;
    size_t g = (size_t)dims->kv_heads, d = (size_t)dims->head_dim;
    s.heads_elems = b * h * p * d;
    s.probs_elems = b * h * p * p;
    s.q_elems = b * p * h * d;
    s.kv_elems = b * p * g * d;
    s.pairs = b * h;
    s.row_length = p * d;
    return s;
}

size_t clgqa_attention_saved_floats(const clgqa_attention_dims *dims, int pgqa) {
    attention_sizes s = sizes_of(dims);
    size_t floats = 4 * s.heads_elems + s.probs_elems;
    if (pgqa)
        floats += (size_t)dims->heads * s.row_length + 2 * s.pairs;
    return floats;
}

void clgqa_attention_saved_layout(const clgqa_attention_dims *dims, int pgqa, clgqa_view base,
                                  clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    clgqa_view at = base;
    saved->q_heads = at;
    at = clgqa_view_add(at, s.heads_elems);
    saved->k_heads = at;
    at = clgqa_view_add(at, s.heads_elems);
    saved->v_heads = at;
    at = clgqa_view_add(at, s.heads_elems);
    saved->probs = at;
    at = clgqa_view_add(at, s.probs_elems);
    saved->heads_out = at;
    at = clgqa_view_add(at, s.heads_elems);
    clgqa_view none = {NULL, 0};
    saved->noise_z = pgqa ? at : none;
    at = clgqa_view_add(at, (size_t)dims->heads * s.row_length);
    saved->row_stats = pgqa ? at : none;
}

/* d_heads [B, H, P, d] (gradient of heads_out), then dscores [B, H, P, P]. */
size_t clgqa_attention_scratch_floats(const clgqa_attention_dims *dims) {
    attention_sizes s = sizes_of(dims);
    return s.heads_elems + s.probs_elems;
}

static clgqa_status check_dims(const char *op, const clgqa_attention_dims *dims, int pgqa) {
    if (dims->batch <= 0 || dims->tokens <= 0 || dims->heads <= 0 || dims->kv_heads <= 0 ||
        dims->head_dim <= 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: batch %d, tokens %d, heads %d, kv_heads %d, head_dim %d must all "
                          "be positive",
                          op, dims->batch, dims->tokens, dims->heads, dims->kv_heads,
                          dims->head_dim);
    if (dims->kv_heads > dims->heads)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %d key/value heads exceed %d query heads", op,
                          dims->kv_heads, dims->heads);
    if (pgqa && dims->heads % dims->kv_heads != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: PGQA needs static groups, but %d heads are not a multiple of %d "
                          "kv_heads",
                          op, dims->heads, dims->kv_heads);
    if (pgqa && (size_t)dims->tokens * dims->head_dim < 2)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: PGQA's standard deviation needs rows of at least 2 elements "
                          "(tokens * head_dim = %d)",
                          op, dims->tokens * dims->head_dim);
    return CLGQA_OK;
}

static clgqa_status check_saved(const char *op, const clgqa_attention_dims *dims, int pgqa,
                                const clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    CLGQA_TRY(clgqa_check_view(op, "saved.q_heads", saved->q_heads, s.heads_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "saved.k_heads", saved->k_heads, s.heads_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "saved.v_heads", saved->v_heads, s.heads_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "saved.probs", saved->probs, s.probs_elems, sizeof(float)));
    CLGQA_TRY(
        clgqa_check_view(op, "saved.heads_out", saved->heads_out, s.heads_elems, sizeof(float)));
    if (pgqa) {
        CLGQA_TRY(clgqa_check_view(op, "saved.noise_z", saved->noise_z,
                                   (size_t)dims->heads * s.row_length, sizeof(float)));
        CLGQA_TRY(
            clgqa_check_view(op, "saved.row_stats", saved->row_stats, 2 * s.pairs, sizeof(float)));
    }
    return CLGQA_OK;
}

/* Local size for a one-work-group-per-row (PGQA) kernel: a power of two
 * covering the row, up to 256, within the kernel's and device's limits. */
static size_t row_local_size(clgqa_runtime *rt, cl_kernel kern, size_t row_length) {
    size_t want = 1;
    while (want < row_length && want < 256)
        want *= 2;
    return clgqa_work_group_size(rt, kern, want);
}

static float query_scale(const clgqa_attention_dims *dims) {
    return (float)pow((double)dims->head_dim, -0.5);
}

/* Local size of the one-work-item-per-row kernels. */
static size_t rows_local_size(clgqa_runtime *rt, cl_kernel kern) {
    return clgqa_work_group_size(rt, kern, 64);
}

static clgqa_status launch_pgqa_noise(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      const clgqa_pgqa *pgqa, clgqa_view noise_z) {
    const char *op = "clgqa_attention_forward";
    attention_sizes s = sizes_of(dims);
    cl_int use_fixed = pgqa->fixed_noise.mem != NULL;
    clgqa_view fixed = pgqa->fixed_noise;
    if (use_fixed)
        CLGQA_TRY(clgqa_check_view(op, "pgqa.fixed_noise", fixed,
                                   (size_t)dims->heads * s.row_length, sizeof(float)));
    else
        fixed = noise_z; /* unread placeholder: never a NULL buffer argument */
    cl_kernel kern;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "pgqa_noise", &kern));
    size_t local = row_local_size(rt, kern, s.row_length);
    cl_uint group_size = (cl_uint)(dims->heads / dims->kv_heads);
    cl_uint seed_lo = (cl_uint)pgqa->seed, seed_hi = (cl_uint)(pgqa->seed >> 32);
    cl_uint stream_lo = (cl_uint)pgqa->stream, stream_hi = (cl_uint)(pgqa->stream >> 32);
    CLGQA_TRY(clgqa_set_view_arg(kern, 0, noise_z));
    CLGQA_TRY(clgqa_set_view_arg(kern, 2, fixed));
    CLGQA_TRY(CLGQA_ARG(kern, 4, use_fixed));
    CLGQA_TRY(clgqa_set_uint_arg(kern, 5, s.row_length));
    CLGQA_TRY(CLGQA_ARG(kern, 6, group_size));
    CLGQA_TRY(CLGQA_ARG(kern, 7, seed_lo));
    CLGQA_TRY(CLGQA_ARG(kern, 8, seed_hi));
    CLGQA_TRY(CLGQA_ARG(kern, 9, stream_lo));
    CLGQA_TRY(CLGQA_ARG(kern, 10, stream_hi));
    CLGQA_TRY(clgqa_set_local_arg(kern, 11, local * sizeof(float)));
    return clgqa_launch_1d(rt, kern, (size_t)dims->heads * local, local);
}

/* scatter_heads / gather_heads: (dst, src, B, P, H, d) over B*P*H*d. */
static clgqa_status launch_heads_layout(clgqa_runtime *rt, const char *name,
                                        const clgqa_attention_dims *dims, clgqa_view dst,
                                        clgqa_view src) {
    cl_kernel kern;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, name, &kern));
    cl_uint batch = (cl_uint)dims->batch, tokens = (cl_uint)dims->tokens;
    cl_uint heads = (cl_uint)dims->heads, head_dim = (cl_uint)dims->head_dim;
    CLGQA_TRY(clgqa_set_view_arg(kern, 0, dst));
    CLGQA_TRY(clgqa_set_view_arg(kern, 2, src));
    CLGQA_TRY(CLGQA_ARG(kern, 4, batch));
    CLGQA_TRY(CLGQA_ARG(kern, 5, tokens));
    CLGQA_TRY(CLGQA_ARG(kern, 6, heads));
    CLGQA_TRY(CLGQA_ARG(kern, 7, head_dim));
    return clgqa_launch_1d(rt, kern, sizes_of(dims).q_elems, clgqa_work_group_size(rt, kern, 256));
}

/* pgqa_output (dst = out) or pgqa_grad (dst = d_heads, with dout): (dst,
 * [dout,] heads_out, noise_z, row_stats, H, P, d, scratch), one work-group
 * per (sample, head) row. */
static clgqa_status launch_pgqa_rows(clgqa_runtime *rt, const char *name,
                                     const clgqa_attention_dims *dims, clgqa_view dst,
                                     clgqa_view dout, const clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    cl_kernel kern;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, name, &kern));
    size_t local = row_local_size(rt, kern, s.row_length);
    cl_uint heads = (cl_uint)dims->heads, tokens = (cl_uint)dims->tokens;
    cl_uint head_dim = (cl_uint)dims->head_dim;
    cl_uint arg = 0;
    CLGQA_TRY(clgqa_set_view_arg(kern, arg, dst));
    arg += 2;
    if (dout.mem) {
        CLGQA_TRY(clgqa_set_view_arg(kern, arg, dout));
        arg += 2;
    }
    CLGQA_TRY(clgqa_set_view_arg(kern, arg, saved->heads_out));
    CLGQA_TRY(clgqa_set_view_arg(kern, arg + 2, saved->noise_z));
    CLGQA_TRY(clgqa_set_view_arg(kern, arg + 4, saved->row_stats));
    CLGQA_TRY(CLGQA_ARG(kern, arg + 6, heads));
    CLGQA_TRY(CLGQA_ARG(kern, arg + 7, tokens));
    CLGQA_TRY(CLGQA_ARG(kern, arg + 8, head_dim));
    CLGQA_TRY(clgqa_set_local_arg(kern, arg + 9, local * sizeof(float)));
    return clgqa_launch_1d(rt, kern, s.pairs * local, local);
}

clgqa_status clgqa_attention_forward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     clgqa_view out, clgqa_view q, clgqa_view k, clgqa_view v,
                                     clgqa_view kv_map, const clgqa_pgqa *pgqa,
                                     const clgqa_attention_saved *saved) {
    const char *op = "clgqa_attention_forward";
    CLGQA_TRY(check_dims(op, dims, pgqa != NULL));
    attention_sizes s = sizes_of(dims);
    CLGQA_TRY(clgqa_check_view(op, "out", out, s.q_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "q", q, s.q_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "k", k, s.kv_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "v", v, s.kv_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "kv_map", kv_map, (size_t)dims->heads, sizeof(cl_int)));
    CLGQA_TRY(check_saved(op, dims, pgqa != NULL, saved));

    /* Per-head q (scaled), k and v. */
    cl_kernel gather;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "gather_qkv", &gather));
    cl_uint batch = (cl_uint)dims->batch, tokens = (cl_uint)dims->tokens;
    cl_uint heads = (cl_uint)dims->heads, kv_heads = (cl_uint)dims->kv_heads;
    cl_uint head_dim = (cl_uint)dims->head_dim;
    float scale = query_scale(dims);
    CLGQA_TRY(clgqa_set_view_arg(gather, 0, saved->q_heads));
    CLGQA_TRY(clgqa_set_view_arg(gather, 2, saved->k_heads));
    CLGQA_TRY(clgqa_set_view_arg(gather, 4, saved->v_heads));
    CLGQA_TRY(clgqa_set_view_arg(gather, 6, q));
    CLGQA_TRY(clgqa_set_view_arg(gather, 8, k));
    CLGQA_TRY(clgqa_set_view_arg(gather, 10, v));
    CLGQA_TRY(clgqa_set_view_arg(gather, 12, kv_map));
    CLGQA_TRY(CLGQA_ARG(gather, 14, batch));
    CLGQA_TRY(CLGQA_ARG(gather, 15, tokens));
    CLGQA_TRY(CLGQA_ARG(gather, 16, heads));
    CLGQA_TRY(CLGQA_ARG(gather, 17, kv_heads));
    CLGQA_TRY(CLGQA_ARG(gather, 18, head_dim));
    CLGQA_TRY(CLGQA_ARG(gather, 19, scale));
    CLGQA_TRY(clgqa_launch_1d(rt, gather, s.heads_elems, clgqa_work_group_size(rt, gather, 256)));

    /* probs = softmax(q_heads k_heads^T), heads_out = probs v_heads. */
    cl_kernel rows;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "attention_rows", &rows));
    size_t row_count = s.pairs * (size_t)dims->tokens;
    CLGQA_TRY(clgqa_set_view_arg(rows, 0, saved->probs));
    CLGQA_TRY(clgqa_set_view_arg(rows, 2, saved->heads_out));
    CLGQA_TRY(clgqa_set_view_arg(rows, 4, saved->q_heads));
    CLGQA_TRY(clgqa_set_view_arg(rows, 6, saved->k_heads));
    CLGQA_TRY(clgqa_set_view_arg(rows, 8, saved->v_heads));
    CLGQA_TRY(clgqa_set_uint_arg(rows, 10, row_count));
    CLGQA_TRY(CLGQA_ARG(rows, 11, tokens));
    CLGQA_TRY(CLGQA_ARG(rows, 12, head_dim));
    CLGQA_TRY(clgqa_launch_1d(rt, rows, row_count, rows_local_size(rt, rows)));

    if (!pgqa)
        return launch_heads_layout(rt, "scatter_heads", dims, out, saved->heads_out);
    CLGQA_TRY(launch_pgqa_noise(rt, dims, pgqa, saved->noise_z));
    clgqa_view no_dout = {NULL, 0};
    return launch_pgqa_rows(rt, "pgqa_output", dims, out, no_dout, saved);
}

clgqa_status clgqa_attention_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      clgqa_view dq, clgqa_view dk, clgqa_view dv,
                                      clgqa_view dout, clgqa_view kv_map, int pgqa,
                                      const clgqa_attention_saved *saved, clgqa_view scratch) {
    const char *op = "clgqa_attention_backward";
    CLGQA_TRY(check_dims(op, dims, pgqa));
    attention_sizes s = sizes_of(dims);
    CLGQA_TRY(clgqa_check_view(op, "dq", dq, s.q_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dk", dk, s.kv_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dv", dv, s.kv_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dout", dout, s.q_elems, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "kv_map", kv_map, (size_t)dims->heads, sizeof(cl_int)));
    CLGQA_TRY(check_saved(op, dims, pgqa, saved));
    CLGQA_TRY(clgqa_check_view(op, "scratch", scratch, clgqa_attention_scratch_floats(dims),
                               sizeof(float)));
    clgqa_view d_heads = scratch;
    clgqa_view dscores = clgqa_view_add(d_heads, s.heads_elems);
    if (pgqa)
        CLGQA_TRY(launch_pgqa_rows(rt, "pgqa_grad", dims, d_heads, dout, saved));
    else
        CLGQA_TRY(launch_heads_layout(rt, "gather_heads", dims, d_heads, dout));

    cl_uint batch = (cl_uint)dims->batch, tokens = (cl_uint)dims->tokens;
    cl_uint heads = (cl_uint)dims->heads, kv_heads = (cl_uint)dims->kv_heads;
    cl_uint head_dim = (cl_uint)dims->head_dim;
    float scale = query_scale(dims);
    cl_kernel rows;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "attention_rows_backward", &rows));
    CLGQA_TRY(clgqa_set_view_arg(rows, 0, dscores));
    CLGQA_TRY(clgqa_set_view_arg(rows, 2, dq));
    CLGQA_TRY(clgqa_set_view_arg(rows, 4, d_heads));
    CLGQA_TRY(clgqa_set_view_arg(rows, 6, saved->probs));
    CLGQA_TRY(clgqa_set_view_arg(rows, 8, saved->k_heads));
    CLGQA_TRY(clgqa_set_view_arg(rows, 10, saved->v_heads));
    CLGQA_TRY(CLGQA_ARG(rows, 12, batch));
    CLGQA_TRY(CLGQA_ARG(rows, 13, tokens));
    CLGQA_TRY(CLGQA_ARG(rows, 14, heads));
    CLGQA_TRY(CLGQA_ARG(rows, 15, head_dim));
    CLGQA_TRY(CLGQA_ARG(rows, 16, scale));
    CLGQA_TRY(clgqa_launch_1d(rt, rows, s.pairs * (size_t)dims->tokens, rows_local_size(rt, rows)));

    cl_kernel kv;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "kv_grads", &kv));
    CLGQA_TRY(clgqa_set_view_arg(kv, 0, dk));
    CLGQA_TRY(clgqa_set_view_arg(kv, 2, dv));
    CLGQA_TRY(clgqa_set_view_arg(kv, 4, dscores));
    CLGQA_TRY(clgqa_set_view_arg(kv, 6, saved->probs));
    CLGQA_TRY(clgqa_set_view_arg(kv, 8, saved->q_heads));
    CLGQA_TRY(clgqa_set_view_arg(kv, 10, d_heads));
    CLGQA_TRY(clgqa_set_view_arg(kv, 12, kv_map));
    CLGQA_TRY(CLGQA_ARG(kv, 14, batch));
    CLGQA_TRY(CLGQA_ARG(kv, 15, tokens));
    CLGQA_TRY(CLGQA_ARG(kv, 16, heads));
    CLGQA_TRY(CLGQA_ARG(kv, 17, kv_heads));
    CLGQA_TRY(CLGQA_ARG(kv, 18, head_dim));
    return clgqa_launch_1d(rt, kv, (size_t)dims->batch * dims->kv_heads * dims->tokens,
                           rows_local_size(rt, kv));
}
