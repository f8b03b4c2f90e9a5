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

/* An activation's bytes per element, and the floats that n of them take
 * (rounded up to whole floats, so the next view stays float-aligned). */
static size_t act_bytes(const clgqa_attention_dims *dims) {
    return clgqa_storage_bytes(dims->storage);
}
static size_t act_floats(const clgqa_attention_dims *dims, size_t n) {
    return dims->storage == CLGQA_STORAGE_HALF ? (n + 1) / 2 : n;
}
/* The activation view that starts at float view `at` (offset in halves
 * for half). */
static clgqa_view act_view(const clgqa_attention_dims *dims, clgqa_view at) {
    return dims->storage == CLGQA_STORAGE_HALF ? clgqa_view_in_halves(at) : at;
}

/* rows: probs (activations); tiled: lse; PGQA adds heads_out (A, an
 * activation), noise_z and row_stats. */
size_t clgqa_attention_saved_floats(const clgqa_attention_dims *dims, int pgqa,
                                    clgqa_attention_kernel kernel) {
    attention_sizes s = sizes_of(dims);
    size_t floats = kernel == CLGQA_ATTENTION_TILED ? s.row_scores : act_floats(dims, s.probs);
    if (pgqa)
        floats += act_floats(dims, s.out) + (size_t)dims->heads * s.row_length + 2 * s.pairs;
    return floats;
}

void clgqa_attention_saved_layout(const clgqa_attention_dims *dims, int pgqa,
                                  clgqa_attention_kernel kernel, clgqa_view base,
                                  clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    clgqa_view none = {NULL, 0}, at = base;
    int tiled = kernel == CLGQA_ATTENTION_TILED;
    saved->probs = tiled ? none : act_view(dims, at);
    saved->lse = tiled ? at : none;
    at = clgqa_view_add(at, tiled ? s.row_scores : act_floats(dims, s.probs));
    saved->heads_out = pgqa ? act_view(dims, at) : none;
    at = clgqa_view_add(at, act_floats(dims, s.out));
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

/* q, k, v (activations, `bytes` per element) or dq, dk, dv (float). */
static clgqa_status check_qkv(const char *op, const attention_sizes *s, const char *names[3],
                              clgqa_view q, clgqa_view k, clgqa_view v, size_t bytes) {
    CLGQA_TRY(clgqa_check_view(op, names[0], q, s->q_extent, bytes));
    CLGQA_TRY(clgqa_check_view(op, names[1], k, s->kv_extent, bytes));
    return clgqa_check_view(op, names[2], v, s->kv_extent, bytes);
}

static clgqa_status check_saved(const char *op, const clgqa_attention_dims *dims, int pgqa,
                                int tiled, const clgqa_attention_saved *saved) {
    attention_sizes s = sizes_of(dims);
    if (tiled)
        CLGQA_TRY(clgqa_check_view(op, "saved.lse (laid out for the tiled kernels)", saved->lse,
                                   s.row_scores, sizeof(float)));
    else
        CLGQA_TRY(clgqa_check_view(op, "saved.probs (laid out for the rows kernels)", saved->probs,
                                   s.probs, act_bytes(dims)));
    if (pgqa) {
        CLGQA_TRY(clgqa_check_view(op, "saved.heads_out", saved->heads_out, s.out,
                                   act_bytes(dims)));
        CLGQA_TRY(clgqa_check_view(op, "saved.noise_z", saved->noise_z,
                                   (size_t)dims->heads * s.row_length, sizeof(float)));
        CLGQA_TRY(
            clgqa_check_view(op, "saved.row_stats", saved->row_stats, 2 * s.pairs, sizeof(float)));
    }
    return CLGQA_OK;
}

/* ---- programs and shapes ---- */

/* The tiled kernels' register blocking (attention.cl, "Register
 * blocking"): a work-item owns 4 rows and COL_VECS = row_vecs / col_groups
 * float4 columns of their output or gradient. The inner tiles (keys per
 * K/V tile of the forward and dq kernels, queries per Q/dout tile of the
 * dk/dv kernel) are built into the program (inner_tile); the rows of a
 * work-group are picked per launch (tiled_rows). */
typedef struct tiled_shape {
    int col_groups; /* items per block of 4 rows */
    int inner[3];   /* per kernel (tiled_kernel): FWD_K, DQ_K, DKV_Q */
} tiled_shape;

typedef enum { TILED_FORWARD, TILED_DQ, TILED_DKV } tiled_kernel;

/* float4s of a tile row: head_dim rounded up to whole vectors. */
static size_t row_vecs(int head_dim) {
    return ((size_t)head_dim + 3) / 4;
}

/* Items per block of 4 rows: the largest divisor of row_vecs up to 8 that
 * leaves each item at least 2 vectors (1 for rows of one vector). At
 * head_dim 64: 8 groups of 2 vectors, so 64 rows take 128 items. */
static int column_groups(int head_dim) {
    int vecs = (int)row_vecs(head_dim), best = 1;
    for (int g = 2; g <= 8 && g <= vecs / 2; g++)
        if (vecs % g == 0)
            best = g;
    return best;
}

/* The __local arguments of `which` with `rows` rows per work-group and
 * `inner` rows per inner tile, in bytes, in the kernel's order; returns
 * their count. A tile row is row_vecs + 1 float4s (the spare vector moves
 * consecutive rows to other banks), the probability and dS tiles are
 * [inner][rows / 4 + 1] float4s. */
static int tiled_local_args(tiled_kernel which, int head_dim, int col_groups, size_t rows,
                            size_t inner, size_t bytes[7]) {
    const size_t vec = 4 * sizeof(float), tile_row = (row_vecs(head_dim) + 1) * vec;
    const size_t by_block = inner * (rows / 4 + 1) * vec;
    switch (which) {
    case TILED_FORWARD: /* Q, K, V, probabilities, row maxima [col_groups][rows / 4] */
        bytes[0] = rows * tile_row;
        bytes[1] = bytes[2] = inner * tile_row;
        bytes[3] = by_block;
        bytes[4] = (size_t)col_groups * (rows / 4) * vec;
        return 5;
    case TILED_DQ: /* Q, dout, K, V, dS, the rows' lse and D */
        bytes[0] = bytes[1] = rows * tile_row;
        bytes[2] = bytes[3] = inner * tile_row;
        bytes[4] = by_block;
        bytes[5] = 2 * rows * sizeof(float);
        return 6;
    default: /* K, V, Q, dout, P, dS, the queries' lse and D */
        bytes[0] = bytes[1] = rows * tile_row;
        bytes[2] = bytes[3] = inner * tile_row;
        bytes[4] = bytes[5] = by_block;
        bytes[6] = 2 * inner * sizeof(float);
        return 7;
    }
}

static size_t tiled_local_bytes(tiled_kernel which, int head_dim, int col_groups, size_t rows,
                                size_t inner) {
    size_t bytes[7], total = 0;
    int n = tiled_local_args(which, head_dim, col_groups, rows, inner, bytes);
    for (int i = 0; i < n; i++)
        total += bytes[i];
    return total;
}

/* Inner tiles: up to `inner_rows` rows, at most `per_item_max` per item,
 * so that the private floats stay within 128 at head_dim 64 (attention.cl
 * states them): the forward and dq take 32 keys (4 per item), dk/dv 16
 * queries (2 per item: it holds dk and dv). More per item means more
 * multiply-adds per vector read from local memory. */
static const struct {
    int inner_rows, per_item_max;
} inner_target[3] = {{32, 8}, {32, 4}, {16, 2}};

/* The inner tile of `which`: its target, halved down to col_groups rows
 * until it fits beside 32 rows per work-group, or failing that beside 4;
 * col_groups where nothing fits. */
static int inner_tile(tiled_kernel which, int head_dim, int groups, cl_ulong local_bytes) {
    const size_t beside[2] = {32, 4};
    int first = inner_target[which].inner_rows / groups;
    if (first > inner_target[which].per_item_max)
        first = inner_target[which].per_item_max;
    for (int r = 0; r < 2; r++)
        for (int each = first > 1 ? first : 1; each >= 1; each /= 2)
            if (tiled_local_bytes(which, head_dim, groups, beside[r], (size_t)each * groups) <=
                local_bytes)
                return each * groups;
    return groups;
}

/* The blocking for a device with `local_bytes` of local memory and
 * work-groups of up to `max_group` items; returns whether the smallest
 * work-groups (4 rows, col_groups items) fit. */
static int tiled_shape_for(int head_dim, cl_ulong local_bytes, size_t max_group,
                           tiled_shape *shape) {
    int groups = column_groups(head_dim), fits = (size_t)groups <= max_group;
    shape->col_groups = groups;
    for (int which = TILED_FORWARD; which <= TILED_DKV; which++) {
        shape->inner[which] = inner_tile(which, head_dim, groups, local_bytes);
        fits = fits && tiled_local_bytes(which, head_dim, groups, 4, shape->inner[which]) <=
                           local_bytes;
    }
    return fits;
}

void clgqa_attention_build_defines(int head_dim, cl_ulong local_bytes, size_t max_group,
                                   char *out, size_t size) {
    tiled_shape t;
    tiled_shape_for(head_dim, local_bytes, max_group, &t);
    snprintf(out, size, "-DHEAD_DIM=%d -DCOL_GROUPS=%d -DFWD_K=%d -DDQ_K=%d -DDKV_Q=%d",
             head_dim, t.col_groups, t.inner[TILED_FORWARD], t.inner[TILED_DQ],
             t.inner[TILED_DKV]);
}

/* The tiled kernels need their smallest work-groups (4 rows) in local
 * memory: a device with less cannot run them, whatever the batch. */
static clgqa_status check_tiled_fits(const char *op, const clgqa_runtime *rt,
                                     const clgqa_attention_dims *dims) {
    tiled_shape t;
    if (tiled_shape_for(dims->head_dim, rt->local_mem_bytes, rt->max_work_group_size, &t))
        return CLGQA_OK;
    size_t need = 0;
    for (int which = TILED_FORWARD; which <= TILED_DKV; which++) {
        size_t bytes = tiled_local_bytes(which, dims->head_dim, t.col_groups, 4, t.inner[which]);
        need = bytes > need ? bytes : need;
    }
    return clgqa_fail(CLGQA_ERR_DEVICE_FEATURE,
                      "%s: %s has %llu bytes of local memory and work-groups of up to %zu "
                      "items, the tiled attention kernels need %zu bytes and %d items at "
                      "head_dim %d (attention_kernel rows needs neither)",
                      op, rt->device_name, (unsigned long long)rt->local_mem_bytes,
                      rt->max_work_group_size, need, t.col_groups, dims->head_dim);
}

/* The attention program for this head dimension, device and storage (both
 * variants and PGQA share it). */
static clgqa_status attention_kernel(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     const char *name, cl_kernel *out) {
    char shape[128], defines[160];
    clgqa_attention_build_defines(dims->head_dim, rt->local_mem_bytes, rt->max_work_group_size,
                                  shape, sizeof shape);
    snprintf(defines, sizeof defines, "%s %s", shape, clgqa_storage_defines(dims->storage));
    return clgqa_kernel_variant(rt, FAMILY, defines, name, out);
}

/* Rows per work-group of a tiled kernel (query rows; key rows in dk/dv),
 * 4 to 64 while its local memory and items fit: the largest whose padded
 * row count (P rounded up to it) is within 1/4 of the least padded among
 * 16 rows and up. Larger blocks load each K/V (Q/dout) tile for more rows,
 * padding computes rows for nothing. P = 197 takes 64 rows (256 against
 * 208 with 16: each K/V tile loaded for 64 rows instead of 32, half the
 * tile loads of a 32-row block, for 14% more rows than its 224), 65 takes
 * 32, 17 takes 32, 64 takes 64. */
static size_t tiled_rows(clgqa_runtime *rt, cl_kernel kern, tiled_kernel which,
                         const clgqa_attention_dims *dims, const tiled_shape *t) {
    size_t kernel_max = 0;
    if (clGetKernelWorkGroupInfo(kern, rt->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                                 &kernel_max, NULL) != CL_SUCCESS || kernel_max == 0)
        kernel_max = rt->max_work_group_size;
    size_t limit = kernel_max < rt->max_work_group_size ? kernel_max : rt->max_work_group_size;
    size_t tokens = (size_t)dims->tokens, fitting[5], n = 0;
    for (size_t rows = 64; rows >= 4; rows /= 2)
        if (rows / 4 * t->col_groups <= limit &&
            tiled_local_bytes(which, dims->head_dim, t->col_groups, rows, t->inner[which]) <=
                rt->local_mem_bytes)
            fitting[n++] = rows;
    if (n == 0)
        return 0;
    size_t least = 0;
    for (size_t i = 0; i < n; i++) {
        size_t padded = (tokens + fitting[i] - 1) / fitting[i] * fitting[i];
        if ((fitting[i] >= 16 || i == 0) && (least == 0 || padded < least))
            least = padded;
    }
    for (size_t i = 0; i < n; i++)
        if ((tokens + fitting[i] - 1) / fitting[i] * fitting[i] * 4 <= least * 5)
            return fitting[i];
    return fitting[n - 1];
}

/* The work-group of `which` for this launch, its items and the number of
 * row tiles covering P; fails where none fits the compiled kernel. */
static clgqa_status tiled_group(const char *op, clgqa_runtime *rt, cl_kernel kern,
                                tiled_kernel which, const clgqa_attention_dims *dims,
                                tiled_shape *t, size_t *rows, size_t *items, cl_uint *tiles) {
    tiled_shape_for(dims->head_dim, rt->local_mem_bytes, rt->max_work_group_size, t);
    *rows = tiled_rows(rt, kern, which, dims, t);
    if (*rows == 0)
        return clgqa_fail(CLGQA_ERR_DEVICE_FEATURE,
                          "%s: the tiled attention kernels' smallest work-group (%d items) "
                          "does not fit this kernel on %s",
                          op, t->col_groups, rt->device_name);
    *items = *rows / 4 * t->col_groups;
    *tiles = (cl_uint)(((size_t)dims->tokens + *rows - 1) / *rows);
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

/* The __local arguments of `which`, sized for `rows` rows per work-group. */
static void tiled_local_arg_list(kernel_args *args, tiled_kernel which,
                                 const clgqa_attention_dims *dims, const tiled_shape *t,
                                 size_t rows) {
    size_t bytes[7];
    int n = tiled_local_args(which, dims->head_dim, t->col_groups, rows, t->inner[which], bytes);
    for (int i = 0; i < n; i++)
        kernel_arg_local(args, bytes[i]);
}

/* attention_tiled or attention_tiled_dq: their arguments after the ones
 * already in `args` are the same (q, k, v, kv_map, P, H, query tiles, scale,
 * then the local tiles). */
static clgqa_status launch_query_tiles(clgqa_runtime *rt, const char *op, kernel_args *args,
                                       tiled_kernel which, const clgqa_attention_dims *dims,
                                       clgqa_view q, clgqa_view k, clgqa_view v,
                                       clgqa_view kv_map) {
    cl_kernel kern = args->kernel;
    attention_sizes s = sizes_of(dims);
    tiled_shape t;
    size_t rows = 0, items = 0;
    cl_uint query_tiles = 0;
    CLGQA_TRY(tiled_group(op, rt, kern, which, dims, &t, &rows, &items, &query_tiles));
    cl_uint tokens = (cl_uint)dims->tokens, heads = (cl_uint)dims->heads;
    float scale = query_scale(dims);
    qkv_args(args, &s, q, k, v, kv_map);
    KERNEL_ARG(args, tokens);
    KERNEL_ARG(args, heads);
    KERNEL_ARG(args, query_tiles);
    KERNEL_ARG(args, scale);
    tiled_local_arg_list(args, which, dims, &t, rows);
    CLGQA_TRY(kernel_args_done(args));
    return clgqa_launch_1d(rt, kern, s.pairs * query_tiles * items, items);
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
    CLGQA_TRY(clgqa_check_view(op, "out", out, s.out, act_bytes(dims)));
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"q", "k", "v"}, q, k, v, act_bytes(dims)));
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
        CLGQA_TRY(launch_query_tiles(rt, op, &args, TILED_FORWARD, dims, q, k, v, kv_map));
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
    const char *op = "clgqa_attention_backward";
    attention_sizes s = sizes_of(dims);
    cl_kernel dq_kern;
    CLGQA_TRY(attention_kernel(rt, dims, "attention_tiled_dq", &dq_kern));
    kernel_args dq_args = kernel_args_start(dq_kern);
    kernel_arg_view(&dq_args, dq);
    kernel_arg_view(&dq_args, delta);
    kernel_arg_view(&dq_args, g);
    kernel_arg_view(&dq_args, o);
    kernel_arg_view(&dq_args, saved->lse);
    CLGQA_TRY(launch_query_tiles(rt, op, &dq_args, TILED_DQ, dims, q, k, v, kv_map));

    cl_kernel kv;
    CLGQA_TRY(attention_kernel(rt, dims, "attention_tiled_dkv", &kv));
    tiled_shape t;
    size_t rows = 0, items = 0;
    cl_uint key_tiles = 0;
    CLGQA_TRY(tiled_group(op, rt, kv, TILED_DKV, dims, &t, &rows, &items, &key_tiles));
    cl_uint tokens = (cl_uint)dims->tokens, heads = (cl_uint)dims->heads;
    cl_uint kv_heads = (cl_uint)dims->kv_heads;
    float scale = query_scale(dims);
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
    tiled_local_arg_list(&kv_args, TILED_DKV, dims, &t, rows);
    CLGQA_TRY(kernel_args_done(&kv_args));
    return clgqa_launch_1d(rt, kv, (size_t)dims->batch * dims->kv_heads * key_tiles * items,
                           items);
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
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"dq", "dk", "dv"}, dq, dk, dv, sizeof(float)));
    CLGQA_TRY(check_qkv(op, &s, (const char *[]){"q", "k", "v"}, q, k, v, act_bytes(dims)));
    CLGQA_TRY(clgqa_check_view(op, "dout", dout, s.out, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "out", out, s.out, act_bytes(dims)));
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
