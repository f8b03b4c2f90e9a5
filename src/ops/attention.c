/* Launchers for attention.cl: grouped attention forward and
 * backward, rows or tiled (rt->attention_kernel), with the PGQA
 * perturbation. q, k and v are read in their projection layout with a row
 * stride, so there are no gather/scatter copies. (The products are P x d per
 * (sample, head): too small for CLBlast's batched GEMM, which ran ~9x slower
 * than the row kernels on PoCL at the demo's shapes.) */
#include <math.h>
#include <stdio.h>

#include "attention.h"
#include "op_args.h"

#define FAMILY "attention"

/* Element counts and strides of the tensors. */
typedef struct attention_sizes {
    size_t row_scores; /* B*H*P: one per query row (lse, D) */
    size_t probs;      /* B*H*P*P */
    size_t out;        /* B*P*H*d, out, dout, A, dA */
    size_t q_stride, kv_stride;
    size_t q_extent, kv_extent; /* elements a strided q / k view spans */
    size_t pairs;               /* B*H (sample, head) rows */
    size_t row_length;          /* P*d, the PGQA row */
} attention_sizes;

static attention_sizes sizes_of(const clgqa_attention_dims *dims) {
    attention_sizes s;
    size_t b = (size_t)dims->batch, p = (size_t)dims->tokens, h = (size_t)dims->heads;
    size_t g = (size_t)dims->kv_heads, d = (size_t)dims->head_dim;
    s.row_scores = b * h * p;
    s.probs = b * h * p * p;
    s.out = b * p * h * d;
    s.q_stride = dims->row_stride ? (size_t)dims->row_stride : h * d;
    s.kv_stride = dims->row_stride ? (size_t)dims->row_stride : g * d;
    s.q_extent = (b * p - 1) * s.q_stride + h * d;
    s.kv_extent = (b * p - 1) * s.kv_stride + g * d;
    s.pairs = b * h;
    s.row_length = p * d;
    return s;
}

/* ---- saved activations and scratch ---- */

/* rows: probs; tiled: lse; PGQA adds heads_out, noise_z and row_stats. */
size_t clgqa_attention_saved_floats(const clgqa_attention_dims *dims, int pgqa,
                                    clgqa_attention_kernel kernel) {
    attention_sizes s = sizes_of(dims);
    size_t floats = kernel == CLGQA_ATTENTION_TILED ? s.row_scores : s.probs;
    if (pgqa)
        floats += s.out + (size_t)dims->heads * s.row_length + 2 * s.pairs;
    return floats;
}

void clgqa_attention_saved_layout(const clgqa_attention_dims *dims, int pgqa,
                                  clgqa_attention_kernel kernel, clgqa_view base,
                                  clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    clgqa_view none = {NULL, 0}, at = base;
    int tiled = kernel == CLGQA_ATTENTION_TILED;
    saved->probs = tiled ? none : at;
    saved->lse = tiled ? at : none;
    at = clgqa_view_add(at, tiled ? s.row_scores : s.probs);
    saved->heads_out = pgqa ? at : none;
    at = clgqa_view_add(at, s.out);
    saved->noise_z = pgqa ? at : none;
    at = clgqa_view_add(at, (size_t)dims->heads * s.row_length);
    saved->row_stats = pgqa ? at : none;
}

/* rows: dscores [B, H, P, P]; tiled: D [B, H, P]; PGQA: then dA [B*P, H*d]. */
size_t clgqa_attention_scratch_floats(const clgqa_attention_dims *dims, int pgqa,
                                      clgqa_attention_kernel kernel) {
    attention_sizes s = sizes_of(dims);
    return (kernel == CLGQA_ATTENTION_TILED ? s.row_scores : s.probs) + (pgqa ? s.out : 0);
}

/* ---- checks ---- */

static clgqa_status check_dims(const char *op, const clgqa_attention_dims *dims, int pgqa) {
    if (dims->batch <= 0 || dims->tokens <= 0 || dims->heads <= 0 || dims->kv_heads <= 0 ||
        dims->head_dim <= 0 || dims->row_stride < 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: batch %d, tokens %d, heads %d, kv_heads %d, head_dim %d must all "
                          "be positive (row_stride %d >= 0)",
                          op, dims->batch, dims->tokens, dims->heads, dims->kv_heads,
                          dims->head_dim, dims->row_stride);
    if (dims->kv_heads > dims->heads)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %d key/value heads exceed %d query heads", op,
                          dims->kv_heads, dims->heads);
    if (dims->row_stride && dims->row_stride < dims->heads * dims->head_dim)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: row_stride %d is shorter than a row of q (%d heads x %d)", op,
                          dims->row_stride, dims->heads, dims->head_dim);
    if (dims->head_dim > CLGQA_ATTENTION_MAX_HEAD_DIM)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: head_dim %d exceeds %d (the kernels keep a row in registers)", op,
                          dims->head_dim, CLGQA_ATTENTION_MAX_HEAD_DIM);
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

static clgqa_status check_qkv(const char *op, const attention_sizes *s, const char *names[3],
                              clgqa_view q, clgqa_view k, clgqa_view v) {
    CLGQA_TRY(clgqa_check_view(op, names[0], q, s->q_extent, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, names[1], k, s->kv_extent, sizeof(float)));
    return clgqa_check_view(op, names[2], v, s->kv_extent, sizeof(float));
}

static clgqa_status check_saved(const char *op, const clgqa_attention_dims *dims, int pgqa,
                                int tiled, const clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    if (tiled)
        CLGQA_TRY(clgqa_check_view(op, "saved.lse (laid out for the tiled kernels)", saved->lse,
                                   s.row_scores, sizeof(float)));
    else
        CLGQA_TRY(clgqa_check_view(op, "saved.probs (laid out for the rows kernels)", saved->probs,
                                   s.probs, sizeof(float)));
    if (pgqa) {
        CLGQA_TRY(clgqa_check_view(op, "saved.heads_out", saved->heads_out, s.out, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "saved.noise_z", saved->noise_z,
                                   (size_t)dims->heads * s.row_length, sizeof(float)));
        CLGQA_TRY(
            clgqa_check_view(op, "saved.row_stats", saved->row_stats, 2 * s.pairs, sizeof(float)));
    }
    return CLGQA_OK;
}

/* ---- programs and shapes ---- */

/* Rows of the K/V (or Q) tiles the tiled kernels stream through local
 * memory: 32, halved while the two tiles of the backward (plus its row
 * statistics) would take more than half the device's local memory, so two
 * work-groups fit on a compute unit. It is also the length of the private
 * score array of the forward, which 32 keeps within registers on GPUs. */
static int stream_tile_rows(const clgqa_runtime *rt, int head_dim) {
    int rows = 32;
    while (rows > 1 &&
           (2 * (cl_ulong)rows * head_dim + 2 * (cl_ulong)rows) * sizeof(float) >
               rt->local_mem_bytes / 2)
        rows /= 2;
    return rows;
}

/* The tiled kernels need their smallest tiles (one K/V row, and the dK/dV
 * kernel's row statistics) in local memory: a device with less cannot run
 * them, whatever the batch. */
static clgqa_status check_tiled_fits(const char *op, const clgqa_runtime *rt,
                                     const clgqa_attention_dims *dims) {
    cl_ulong need = (2 * (cl_ulong)dims->head_dim + 2) * sizeof(float);
    if (need > rt->local_mem_bytes)
        return clgqa_fail(CLGQA_ERR_DEVICE_FEATURE,
                          "%s: %s has %llu bytes of local memory, the tiled attention kernels "
                          "need %llu at head_dim %d (attention_kernel rows needs none)",
                          op, rt->device_name, (unsigned long long)rt->local_mem_bytes,
                          (unsigned long long)need, dims->head_dim);
    return CLGQA_OK;
}

/* The attention program for this head dimension (both variants and PGQA
 * share it). */
static clgqa_status attention_kernel(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     const char *name, cl_kernel *out) {
    char defines[64];
    snprintf(defines, sizeof defines, "-DHEAD_DIM=%d -DTILE=%d", dims->head_dim,
             stream_tile_rows(rt, dims->head_dim));
    return clgqa_kernel_variant(rt, FAMILY, defines, name, out);
}

/* Work-items (rows) per work-group of a tiled kernel, one per query or key
 * row: among the powers of two from the device's preferred multiple (at
 * least 8, at most 32) up to 64, within the kernel's limit, the one that
 * pads P to the fewest rows, ties going to the larger tile (fewer passes
 * over K/V). With 32-wide lanes (NVIDIA) P = 197, 65 and 17 get 32 (224, 96
 * and 32 rows); with 8 or less, 8 (200, 72 and 24 rows). */
static size_t tile_rows(clgqa_runtime *rt, cl_kernel kern, size_t tokens) {
    size_t lane = 0;
    clGetKernelWorkGroupInfo(kern, rt->device, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
                             sizeof lane, &lane, NULL);
    size_t smallest = lane < 8 ? 8 : lane > 32 ? 32 : lane;
    size_t limit = clgqa_work_group_size(rt, kern, 64);
    if (smallest > limit)
        return limit;
    size_t best = smallest, best_rows = (tokens + smallest - 1) / smallest * smallest;
    for (size_t r = smallest * 2; r <= limit; r *= 2) {
        size_t padded = (tokens + r - 1) / r * r;
        if (padded <= best_rows) {
            best = r;
            best_rows = padded;
        }
    }
    return best;
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

/* ---- PGQA ---- */

static clgqa_status launch_pgqa_noise(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      const clgqa_pgqa *pgqa, clgqa_view noise_z) {
    const char *op = "clgqa_attention_forward";
    attention_sizes s = sizes_of(dims);
    int use_fixed = pgqa->fixed_noise.mem != NULL;
    clgqa_view fixed = pgqa->fixed_noise;
    if (use_fixed)
        CLGQA_TRY(clgqa_check_view(op, "pgqa.fixed_noise", fixed,
                                   (size_t)dims->heads * s.row_length, sizeof(float)));
    else
        fixed = noise_z; /* unread placeholder: never a NULL buffer argument */
    cl_kernel kern;
    CLGQA_TRY(attention_kernel(rt, dims, "pgqa_noise", &kern));
    size_t local = row_local_size(rt, kern, s.row_length);
    cl_uint group_size = (cl_uint)(dims->heads / dims->kv_heads);
    cl_uint seed_lo = (cl_uint)pgqa->seed, seed_hi = (cl_uint)(pgqa->seed >> 32);
    cl_uint stream_lo = (cl_uint)pgqa->stream, stream_hi = (cl_uint)(pgqa->stream >> 32);
    kernel_args args = kernel_args_start(kern);
    kernel_arg_view(&args, noise_z);
    kernel_arg_view(&args, fixed);
    KERNEL_ARG(&args, use_fixed);
    kernel_arg_uint(&args, s.row_length);
    KERNEL_ARG(&args, group_size);
    KERNEL_ARG(&args, seed_lo);
    KERNEL_ARG(&args, seed_hi);
    KERNEL_ARG(&args, stream_lo);
    KERNEL_ARG(&args, stream_hi);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, kern, (size_t)dims->heads * local, local);
}

/* pgqa_output (dst = out) or pgqa_grad (dst = dA, with dout): (dst,
 * [dout,] heads_out, noise_z, row_stats, H, P, scratch), one work-group per
 * (sample, head) row. */
static clgqa_status launch_pgqa_rows(clgqa_runtime *rt, const char *name,
                                     const clgqa_attention_dims *dims, clgqa_view dst,
                                     clgqa_view dout, const clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    cl_kernel kern;
    CLGQA_TRY(attention_kernel(rt, dims, name, &kern));
    size_t local = row_local_size(rt, kern, s.row_length);
    cl_uint heads = (cl_uint)dims->heads, tokens = (cl_uint)dims->tokens;
    kernel_args args = kernel_args_start(kern);
    kernel_arg_view(&args, dst);
    if (dout.mem)
        kernel_arg_view(&args, dout);
    kernel_arg_view(&args, saved->heads_out);
    kernel_arg_view(&args, saved->noise_z);
    kernel_arg_view(&args, saved->row_stats);
    KERNEL_ARG(&args, heads);
    KERNEL_ARG(&args, tokens);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, kern, s.pairs * local, local);
}

/* ---- forward ---- */

/* The next arguments: q (+ stride), k, v (+ stride) and kv_map. */
static void qkv_args(kernel_args *args, const attention_sizes *s, clgqa_view q, clgqa_view k,
                     clgqa_view v, clgqa_view kv_map) {
    kernel_arg_view(args, q);
    kernel_arg_uint(args, s->q_stride);
    kernel_arg_view(args, k);
    kernel_arg_view(args, v);
    kernel_arg_uint(args, s->kv_stride);
    kernel_arg_view(args, kv_map);
}

/* attention_tiled or attention_tiled_dq: their arguments after the ones
 * already in `args` are the same (q, k, v, kv_map, P, H, query tiles, scale,
 * two local tiles). */
static clgqa_status launch_query_tiles(clgqa_runtime *rt, kernel_args *args,
                                       const clgqa_attention_dims *dims, clgqa_view q,
                                       clgqa_view k, clgqa_view v, clgqa_view kv_map) {
    cl_kernel kern = args->kernel;
    attention_sizes s = sizes_of(dims);
    size_t local = tile_rows(rt, kern, (size_t)dims->tokens);
    cl_uint tokens = (cl_uint)dims->tokens, heads = (cl_uint)dims->heads;
    cl_uint query_tiles = (cl_uint)(((size_t)dims->tokens + local - 1) / local);
    float scale = query_scale(dims);
    size_t tile_bytes = (size_t)stream_tile_rows(rt, dims->head_dim) * dims->head_dim * sizeof(float);
    qkv_args(args, &s, q, k, v, kv_map);
    KERNEL_ARG(args, tokens);
    KERNEL_ARG(args, heads);
    KERNEL_ARG(args, query_tiles);
    KERNEL_ARG(args, scale);
    kernel_arg_local(args, tile_bytes);
    kernel_arg_local(args, tile_bytes);
    CLGQA_TRY(kernel_args_done(args));
    return clgqa_launch_1d(rt, kern, s.pairs * query_tiles * local, local);
}

/* The work-group of the rows kernels, one (sample, head) pair's tokens: a
 * power of two covering them, at most 64, so a group never spans two pairs
 * and what the pair shares is the same for every item of a group. */
static size_t token_group(clgqa_runtime *rt, cl_kernel kern, size_t tokens) {
    size_t want = 1;
    while (want < tokens && want < 64)
        want *= 2;
    return clgqa_work_group_size(rt, kern, want);
}

clgqa_status clgqa_attention_forward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     clgqa_view out, clgqa_view q, clgqa_view k, clgqa_view v,
                                     clgqa_view kv_map, const clgqa_pgqa *pgqa,
                                     const clgqa_attention_saved *saved) {
    const char *op = "clgqa_attention_forward";
    int tiled = rt->attention_kernel == CLGQA_ATTENTION_TILED;
    CLGQA_TRY(check_dims(op, dims, pgqa != NULL));
    attention_sizes s = sizes_of(dims);
    CLGQA_TRY(clgqa_check_view(op, "out", out, s.out, sizeof(float)));
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"q", "k", "v"}, q, k, v));
    CLGQA_TRY(clgqa_check_view(op, "kv_map", kv_map, (size_t)dims->heads, sizeof(cl_int)));
    CLGQA_TRY(check_saved(op, dims, pgqa != NULL, tiled, saved));
    if (tiled)
        CLGQA_TRY(check_tiled_fits(op, rt, dims));
    /* PGQA's attention output A goes to saved->heads_out first. */
    clgqa_view attended = pgqa ? saved->heads_out : out;

    cl_kernel kern;
    if (tiled) {
        CLGQA_TRY(attention_kernel(rt, dims, "attention_tiled", &kern));
        kernel_args args = kernel_args_start(kern);
        kernel_arg_view(&args, attended);
        kernel_arg_view(&args, saved->lse);
        CLGQA_TRY(launch_query_tiles(rt, &args, dims, q, k, v, kv_map));
    } else {
        CLGQA_TRY(attention_kernel(rt, dims, "attention_rows", &kern));
        cl_uint heads = (cl_uint)dims->heads, tokens = (cl_uint)dims->tokens;
        float scale = query_scale(dims);
        kernel_args args = kernel_args_start(kern);
        kernel_arg_view(&args, saved->probs);
        kernel_arg_view(&args, attended);
        qkv_args(&args, &s, q, k, v, kv_map);
        KERNEL_ARG(&args, tokens);
        KERNEL_ARG(&args, heads);
        KERNEL_ARG(&args, scale);
        CLGQA_TRY(kernel_args_done(&args));
        CLGQA_TRY(clgqa_launch_2d(rt, kern, tokens, (size_t)dims->batch * heads,
                                  token_group(rt, kern, tokens), 1));
    }
    if (!pgqa)
        return CLGQA_OK;
    CLGQA_TRY(launch_pgqa_noise(rt, dims, pgqa, saved->noise_z));
    clgqa_view no_dout = {NULL, 0};
    return launch_pgqa_rows(rt, "pgqa_output", dims, out, no_dout, saved);
}

/* ---- backward ---- */

/* rows: attention_rows_backward (dS, dq), then kv_grads (dk, dv). */
static clgqa_status rows_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                  clgqa_view dq, clgqa_view dk, clgqa_view dv, clgqa_view g,
                                  clgqa_view q, clgqa_view k, clgqa_view v, clgqa_view kv_map,
                                  const clgqa_attention_saved *saved, clgqa_view dscores) {
    attention_sizes s = sizes_of(dims);
    cl_uint batch = (cl_uint)dims->batch, tokens = (cl_uint)dims->tokens;
    cl_uint heads = (cl_uint)dims->heads, kv_heads = (cl_uint)dims->kv_heads;
    float scale = query_scale(dims);
    cl_kernel rows;
    CLGQA_TRY(attention_kernel(rt, dims, "attention_rows_backward", &rows));
    kernel_args args = kernel_args_start(rows);
    kernel_arg_view(&args, dscores);
    kernel_arg_view(&args, dq);
    kernel_arg_view(&args, g);
    kernel_arg_view(&args, saved->probs);
    kernel_arg_uint(&args, s.q_stride);
    kernel_arg_view(&args, k);
    kernel_arg_view(&args, v);
    kernel_arg_uint(&args, s.kv_stride);
    kernel_arg_view(&args, kv_map);
    KERNEL_ARG(&args, tokens);
    KERNEL_ARG(&args, heads);
    KERNEL_ARG(&args, scale);
    CLGQA_TRY(kernel_args_done(&args));
    CLGQA_TRY(clgqa_launch_2d(rt, rows, tokens, (size_t)batch * heads,
                              token_group(rt, rows, tokens), 1));

    cl_kernel kv;
    CLGQA_TRY(attention_kernel(rt, dims, "kv_grads", &kv));
    kernel_args kv_args = kernel_args_start(kv);
    kernel_arg_view(&kv_args, dk);
    kernel_arg_view(&kv_args, dv);
    kernel_arg_view(&kv_args, dscores);
    kernel_arg_view(&kv_args, saved->probs);
    kernel_arg_view(&kv_args, q);
    kernel_arg_uint(&kv_args, s.q_stride);
    kernel_arg_view(&kv_args, g);
    kernel_arg_uint(&kv_args, s.kv_stride);
    kernel_arg_view(&kv_args, kv_map);
    KERNEL_ARG(&kv_args, batch);
    KERNEL_ARG(&kv_args, tokens);
    KERNEL_ARG(&kv_args, heads);
    KERNEL_ARG(&kv_args, kv_heads);
    KERNEL_ARG(&kv_args, scale);
    CLGQA_TRY(kernel_args_done(&kv_args));
    return clgqa_launch_2d(rt, kv, (size_t)dims->tokens, (size_t)dims->batch * dims->kv_heads,
                           token_group(rt, kv, (size_t)dims->tokens), 1);
}

/* tiled: attention_tiled_dq (dq and D), then attention_tiled_dkv (dk, dv). */
static clgqa_status tiled_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                   clgqa_view dq, clgqa_view dk, clgqa_view dv, clgqa_view g,
                                   clgqa_view o, clgqa_view q, clgqa_view k, clgqa_view v,
                                   clgqa_view kv_map, const clgqa_attention_saved *saved,
                                   clgqa_view delta) {
    attention_sizes s = sizes_of(dims);
    cl_kernel dq_kern;
    CLGQA_TRY(attention_kernel(rt, dims, "attention_tiled_dq", &dq_kern));
    kernel_args dq_args = kernel_args_start(dq_kern);
    kernel_arg_view(&dq_args, dq);
    kernel_arg_view(&dq_args, delta);
    kernel_arg_view(&dq_args, g);
    kernel_arg_view(&dq_args, o);
    kernel_arg_view(&dq_args, saved->lse);
    CLGQA_TRY(launch_query_tiles(rt, &dq_args, dims, q, k, v, kv_map));

    cl_kernel kv;
    CLGQA_TRY(attention_kernel(rt, dims, "attention_tiled_dkv", &kv));
    size_t local = tile_rows(rt, kv, (size_t)dims->tokens);
    cl_uint tokens = (cl_uint)dims->tokens, heads = (cl_uint)dims->heads;
    cl_uint kv_heads = (cl_uint)dims->kv_heads;
    cl_uint key_tiles = (cl_uint)(((size_t)dims->tokens + local - 1) / local);
    float scale = query_scale(dims);
    size_t stream_rows = (size_t)stream_tile_rows(rt, dims->head_dim);
    kernel_args kv_args = kernel_args_start(kv);
    kernel_arg_view(&kv_args, dk);
    kernel_arg_view(&kv_args, dv);
    kernel_arg_view(&kv_args, g);
    kernel_arg_view(&kv_args, saved->lse);
    kernel_arg_view(&kv_args, delta);
    qkv_args(&kv_args, &s, q, k, v, kv_map);
    KERNEL_ARG(&kv_args, tokens);
    KERNEL_ARG(&kv_args, heads);
    KERNEL_ARG(&kv_args, kv_heads);
    KERNEL_ARG(&kv_args, key_tiles);
    KERNEL_ARG(&kv_args, scale);
    kernel_arg_local(&kv_args, stream_rows * dims->head_dim * sizeof(float));
    kernel_arg_local(&kv_args, stream_rows * dims->head_dim * sizeof(float));
    kernel_arg_local(&kv_args, 2 * stream_rows * sizeof(float));
    CLGQA_TRY(kernel_args_done(&kv_args));
    return clgqa_launch_1d(rt, kv, (size_t)dims->batch * dims->kv_heads * key_tiles * local,
                           local);
}

clgqa_status clgqa_attention_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      clgqa_view dq, clgqa_view dk, clgqa_view dv,
                                      clgqa_view dout, clgqa_view out, clgqa_view q, clgqa_view k,
                                      clgqa_view v, clgqa_view kv_map, int pgqa,
                                      const clgqa_attention_saved *saved, clgqa_view scratch) {
    const char *op = "clgqa_attention_backward";
    int tiled = rt->attention_kernel == CLGQA_ATTENTION_TILED;
    CLGQA_TRY(check_dims(op, dims, pgqa));
    attention_sizes s = sizes_of(dims);
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"dq", "dk", "dv"}, dq, dk, dv));
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"q", "k", "v"}, q, k, v));
    CLGQA_TRY(clgqa_check_view(op, "dout", dout, s.out, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "out", out, s.out, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "kv_map", kv_map, (size_t)dims->heads, sizeof(cl_int)));
    CLGQA_TRY(check_saved(op, dims, pgqa, tiled, saved));
    if (tiled)
        CLGQA_TRY(check_tiled_fits(op, rt, dims));
    CLGQA_TRY(clgqa_check_view(op, "scratch", scratch,
                               clgqa_attention_scratch_floats(dims, pgqa, rt->attention_kernel),
                               sizeof(float)));
    /* Scratch: dscores (rows) or D (tiled), then dA (PGQA). The attention
     * kernels see PGQA's dA and A where plain attention has dout and out. */
    clgqa_view per_row = scratch;
    clgqa_view g = dout, o = out;
    if (pgqa) {
        g = clgqa_view_add(scratch, tiled ? s.row_scores : s.probs);
        o = saved->heads_out;
        CLGQA_TRY(launch_pgqa_rows(rt, "pgqa_grad", dims, g, dout, saved));
    }
    if (tiled)
        return tiled_backward(rt, dims, dq, dk, dv, g, o, q, k, v, kv_map, saved, per_row);
    return rows_backward(rt, dims, dq, dk, dv, g, q, k, v, kv_map, saved, per_row);
}
