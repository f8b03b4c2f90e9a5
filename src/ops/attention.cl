/* Grouped attention (semantics: docs/attention-variants.md; launchers:
 * src/ops/attention.c). Built once per head dimension with -DHEAD_DIM=d,
 * so the per-row vectors below are private arrays, and the tiled kernels'
 * blocking (-DCOL_GROUPS=... : "Register blocking" below).
 *
 * Layouts: q, k, v (and dq, dk, dv) are read where the projection wrote
 * them: token row (b, p) of q starts at (b*P + p) * q_stride and head h
 * occupies columns h*d ... h*d + d - 1; k and v likewise with kv_stride and
 * key/value head j = kv_map[h]. out, dout and the PGQA tensors A, dA are
 * [B*P, H*d]. Scores are (d^-0.5 q) . k.
 *
 * Two variants (rt->attention_kernel):
 * - rows: one work-item per query row; saves the probabilities [B, H, P, P]
 *   (attention_rows, attention_rows_backward for dS and dq, kv_grads for dk
 *   and dv summed over the heads of a group). The CPU's choice.
 * - tiled (FlashAttention-2): one work-group per (sample, query head, query
 *   tile) streams the key/value tiles of its group through local memory with
 *   an online softmax and saves only the log-sum-exp [B, H, P]; each item
 *   computes a register block of 4 rows x several keys. Backward
 *   recomputes the probabilities from it: attention_tiled_dq per query tile
 *   (also writing D = rowsum(dO * O)), then attention_tiled_dkv per (sample,
 *   key/value head, key tile), looping over the query heads of the group in
 *   head order: fixed summation order, no atomics.
 * PGQA adds pgqa_noise and pgqa_output after either forward and pgqa_grad
 * before either backward.
 *
 * Activations (q, k, v, out, the rows variant's probabilities and PGQA's
 * A) are ACT (src/ops/storage.h): half in a program built with
 * -DCLGQA_HALF, read and written through the act_ macros; gradients,
 * lse, D and the noise are float in both, and all arithmetic is float.
 *
 * Index decompositions write x - (x / n) * n instead of x % n next to
 * x / n: LLVM turns such a div/rem pair into a `freeze` that Oclgrind
 * cannot check. No barrier sits under a branch (PoCL crashed on one that
 * did): work-items past the last row of a tile still take part in the
 * barriers and only skip their stores. */

#if !defined(HEAD_DIM)
#error "attention.cl is built with -DHEAD_DIM=<d> (src/ops/attention.c)"
#endif

/* ---- rows variant ---- */

/* The rows kernels work on a head row as COLUMN_VECTORS vectors of LANES
 * floats (the widest of 16, 8, 4, 2, 1 dividing HEAD_DIM), and say so with
 * vec_type_hint: a compiler that vectorises across work-items (Intel's CPU
 * runtime, 16 lanes) then vectorises within the work-item instead, as PoCL
 * does, where its own vectorising kept 2 * HEAD_DIM accumulators per lane
 * and spilled them (kv_grads took 10x PoCL's time there). */
#if HEAD_DIM % 16 == 0
#define LANES 16
#define floatL float16
#define vloadL vload16
#define vstoreL vstore16
#elif HEAD_DIM % 8 == 0
#define LANES 8
#define floatL float8
#define vloadL vload8
#define vstoreL vstore8
#elif HEAD_DIM % 4 == 0
#define LANES 4
#define floatL float4
#define vloadL vload4
#define vstoreL vstore4
#elif HEAD_DIM % 2 == 0
#define LANES 2
#define floatL float2
#define vloadL vload2
#define vstoreL vstore2
#else
#define LANES 1
#define floatL float
#define vloadL(i, p) ((p)[i])
#define vstoreL(x, i, p) ((p)[i] = (x))
#endif
#define COLUMN_VECTORS (HEAD_DIM / LANES)

/* LANES activations as floats, and back (rounded to nearest even). */
#if defined(CLGQA_HALF) && LANES == 16
#define act_vloadL vload_half16
#define act_vstoreL vstore_half16_rte
#elif defined(CLGQA_HALF) && LANES == 8
#define act_vloadL vload_half8
#define act_vstoreL vstore_half8_rte
#elif defined(CLGQA_HALF) && LANES == 4
#define act_vloadL vload_half4
#define act_vstoreL vstore_half4_rte
#elif defined(CLGQA_HALF) && LANES == 2
#define act_vloadL vload_half2
#define act_vstoreL vstore_half2_rte
#elif defined(CLGQA_HALF)
#define act_vloadL vload_half
#define act_vstoreL vstore_half_rte
#else
#define act_vloadL vloadL
#define act_vstoreL vstoreL
#endif

/* The sum of a vector's lanes, halving it: lane l plus lane l + LANES/2,
 * then again. Written on a private copy with constant indices: Oclgrind's
 * uninitialised-value check crashed on vector swizzles and constructors,
 * and PoCL was 2x slower on a loop over the copy. */
static float lanes_sum(const floatL x) {
    float l[LANES];
    vstoreL(x, 0, l);
#if LANES == 16
    l[0] += l[8], l[1] += l[9], l[2] += l[10], l[3] += l[11];
    l[4] += l[12], l[5] += l[13], l[6] += l[14], l[7] += l[15];
#endif
#if LANES >= 8
    l[0] += l[4], l[1] += l[5], l[2] += l[6], l[3] += l[7];
#endif
#if LANES >= 4
    l[0] += l[2], l[1] += l[3];
#endif
#if LANES >= 2
    l[0] += l[1];
#endif
    return l[0];
}

/* a . b for two head rows, b an activation's. */
static float row_dot(const floatL *a, __global const ACT *b) {
    floatL sum = a[0] * act_vloadL(0, b);
    for (uint u = 1; u < COLUMN_VECTORS; u++)
        sum += a[u] * act_vloadL(u, b);
    return lanes_sum(sum);
}

/* One work-item per query row i = (b, h, p): probs[i, t] = softmax over t of
 * (d^-0.5 q) . k_t, out row = sum_t probs[i, t] v_t. The keys and values of a
 * (sample, head) pair are shared by its P work-items, so they stay in cache.
 * The grid is [tokens, B*H]: a work-group holds one pair's rows. */
__kernel __attribute__((vec_type_hint(floatL))) void attention_rows(
    __global ACT *probs, const uint probs_off, __global ACT *out, const uint out_off,
    __global const ACT *q, const uint q_off, const uint q_stride, __global const ACT *k,
    const uint k_off, __global const ACT *v, const uint v_off, const uint kv_stride,
    __global const int *kv_map, const uint kv_map_off, const uint tokens, const uint heads,
    const float scale) {
    /* (b, h) from the group's row of the grid, the same for a whole
     * work-group (see kv_grads). */
    const uint p = get_global_id(0), bh = get_global_id(1);
    if (p >= tokens)
        return;
    const uint i = bh * tokens + p;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    __global const ACT *qr = q + q_off + (size_t)(b * tokens + p) * q_stride + h * HEAD_DIM;
    __global const ACT *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const ACT *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global ACT *pr = probs + probs_off + (size_t)i * tokens;
    floatL qs[COLUMN_VECTORS], acc[COLUMN_VECTORS];
    for (uint u = 0; u < COLUMN_VECTORS; u++) {
        qs[u] = scale * act_vloadL(u, qr);
        acc[u] = 0.0f;
    }
    /* The scores, then their exponentials, pass through the probabilities'
     * row: in half rounded as PyTorch's autocast rounds its fp16 scores
     * (the max, the sum and the output accumulate in float). */
    float top = -INFINITY;
    for (uint t = 0; t < tokens; t++) {
        const float s = row_dot(qs, kb + (size_t)t * kv_stride);
        act_store(s, pr, t);
        top = fmax(top, s);
    }
    float sum = 0.0f;
    for (uint t = 0; t < tokens; t++) {
        const float e = exp(act_load(pr, t) - top);
        act_store(e, pr, t);
        sum += e;
    }
    const float inv = 1.0f / sum;
    for (uint t = 0; t < tokens; t++) {
        const float w = act_load(pr, t) * inv;
        act_store(w, pr, t);
        for (uint u = 0; u < COLUMN_VECTORS; u++)
            acc[u] += w * act_vloadL(u, vb + (size_t)t * kv_stride);
    }
    __global ACT *o = out + out_off + (size_t)(b * tokens + p) * heads * HEAD_DIM + h * HEAD_DIM;
    for (uint u = 0; u < COLUMN_VECTORS; u++)
        act_vstoreL(acc[u], u, o);
}

/* Backward of attention_rows for query row i = (b, h, p), with g its row of
 * dout: dP[t] = g . v_t, dS = P * (dP - sum_t P dP) (saved in dscores for
 * kv_grads), dq row = d^-0.5 sum_t dS[t] k_t (written, not accumulated). */
__kernel __attribute__((vec_type_hint(floatL))) void attention_rows_backward(
    __global float *dscores, const uint dscores_off, __global float *dq, const uint dq_off,
    __global const float *dout, const uint dout_off, __global const ACT *probs,
    const uint probs_off, const uint q_stride, __global const ACT *k, const uint k_off,
    __global const ACT *v, const uint v_off, const uint kv_stride, __global const int *kv_map,
    const uint kv_map_off, const uint tokens, const uint heads, const float scale) {
    const uint p = get_global_id(0), bh = get_global_id(1); /* (b, h): see kv_grads */
    if (p >= tokens)
        return;
    const uint i = bh * tokens + p;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    __global const ACT *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const ACT *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const ACT *pr = probs + probs_off + (size_t)i * tokens;
    __global float *ds = dscores + dscores_off + (size_t)i * tokens;
    __global const float *gr =
        dout + dout_off + (size_t)(b * tokens + p) * heads * HEAD_DIM + h * HEAD_DIM;
    floatL g[COLUMN_VECTORS], acc[COLUMN_VECTORS];
    for (uint u = 0; u < COLUMN_VECTORS; u++) {
        g[u] = vloadL(u, gr);
        acc[u] = 0.0f;
    }
    float weighted = 0.0f;
    for (uint t = 0; t < tokens; t++) {
        const float dp = row_dot(g, vb + (size_t)t * kv_stride);
        ds[t] = dp;
        weighted += act_load(pr, t) * dp;
    }
    for (uint t = 0; t < tokens; t++) {
        const float d = act_load(pr, t) * (ds[t] - weighted);
        ds[t] = d;
        for (uint u = 0; u < COLUMN_VECTORS; u++)
            acc[u] += d * act_vloadL(u, kb + (size_t)t * kv_stride);
    }
    __global float *dqr = dq + dq_off + (size_t)(b * tokens + p) * q_stride + h * HEAD_DIM;
    for (uint u = 0; u < COLUMN_VECTORS; u++)
        vstoreL(scale * acc[u], u, dqr);
}

/* dk and dv rows for key row t of key/value head j in sample b, one
 * work-item per (b, j, t) owning them (no atomics), on a [tokens, B*G]
 * grid: over the query heads h
 * with kv_map[h] == j in head order and their rows p,
 * dk = sum dS[b, h, p, t] d^-0.5 q[b, p, h] and dv = sum P[b, h, p, t]
 * g[b, p, h]. Written, so a head serving no query head gets zeros. */
__kernel __attribute__((vec_type_hint(floatL))) void kv_grads(
    __global float *dk, const uint dk_off, __global float *dv, const uint dv_off,
    __global const float *dscores, const uint dscores_off, __global const ACT *probs,
    const uint probs_off, __global const ACT *q, const uint q_off, const uint q_stride,
    __global const float *dout, const uint dout_off, const uint kv_stride,
    __global const int *kv_map, const uint kv_map_off, const uint batch, const uint tokens,
    const uint heads, const uint kv_heads, const float scale) {
    /* (b, j) from the group's row of the grid: the same for every item of a
     * work-group. */
    const uint t = get_global_id(0), bj = get_global_id(1);
    if (t >= tokens)
        return;
    const uint b = bj / kv_heads, j = bj - b * kv_heads;
    floatL dk_acc[COLUMN_VECTORS], dv_acc[COLUMN_VECTORS];
    for (uint u = 0; u < COLUMN_VECTORS; u++) {
        dk_acc[u] = 0.0f;
        dv_acc[u] = 0.0f;
    }
    for (uint h = 0; h < heads; h++) {
        if (kv_map[kv_map_off + h] != (int)j)
            continue;
        for (uint p = 0; p < tokens; p++) {
            const size_t score = (((size_t)b * heads + h) * tokens + p) * tokens + t;
            const size_t row = (size_t)b * tokens + p;
            const float ds = scale * dscores[dscores_off + score];
            const float pr = act_load(probs + probs_off, score);
            __global const ACT *qr = q + q_off + row * q_stride + h * HEAD_DIM;
            __global const float *gr = dout + dout_off + row * heads * HEAD_DIM + h * HEAD_DIM;
            for (uint u = 0; u < COLUMN_VECTORS; u++) {
                dk_acc[u] += ds * act_vloadL(u, qr);
                dv_acc[u] += pr * vloadL(u, gr);
            }
        }
    }
    __global float *dkr = dk + dk_off + ((size_t)b * tokens + t) * kv_stride + j * HEAD_DIM;
    __global float *dvr = dv + dv_off + ((size_t)b * tokens + t) * kv_stride + j * HEAD_DIM;
    for (uint u = 0; u < COLUMN_VECTORS; u++) {
        vstoreL(dk_acc[u], u, dkr);
        vstoreL(dv_acc[u], u, dvr);
    }
}

/* ---- tiled variant ---- */

/* Register blocking. A work-item owns a block of 4 query rows (4 key rows
 * in attention_tiled_dkv) and, of their output or gradient, the COL_VECS
 * float4 columns cg, cg + COL_GROUPS, ... of the row (interleaved, so that
 * neighbouring items read neighbouring vectors of a tile row); COL_GROUPS
 * items share a block, item lid = block * COL_GROUPS + cg. For the scores
 * the same item takes its 4 rows against the keys (queries in dk/dv)
 * cg, cg + COL_GROUPS, ... of the tile, so it keeps its rows from the scores
 * to the update. Tiles are float4 rows, zero past HEAD_DIM and past the last
 * token, and every float4 read from local memory feeds 4 to 16
 * multiply-adds. The launcher (tiled_shape in src/ops/attention.c) sizes
 * the inner tiles to the device's local memory and passes them as defines:
 *   COL_GROUPS  items per block of 4 rows (divides ROW_VECS)
 *   FWD_K       attention_tiled: keys per K/V tile
 *   DQ_K        attention_tiled_dq likewise
 *   DKV_Q       attention_tiled_dkv: queries per Q/dO tile
 * all multiples of COL_GROUPS. The rows of a work-group (query rows, key
 * rows in dk/dv) follow from its size, 4 * get_local_size(0) / COL_GROUPS,
 * which the launcher picks per launch from the token count. Each kernel
 * states its private floats per item at head_dim 64, where COL_GROUPS is
 * 8 and COL_VECS 2 (src/ops/attention.c, inner_target): its arrays and the
 * vectors it holds at once. */
#if !defined(COL_GROUPS) || !defined(FWD_K) || !defined(DQ_K) || !defined(DKV_Q)
#error "the tiled kernels are built with the blocking of src/ops/attention.c (tiled_shape)"
#endif
#define ROW_VECS ((HEAD_DIM + 3) / 4)    /* float4s of a tile row */
#define TILE_LD (ROW_VECS + 1)           /* float4s from one tile row to the next: the unused
                                            vector puts consecutive rows in other banks */
#define COL_VECS (ROW_VECS / COL_GROUPS) /* output float4s of a row per item */
#define FWD_KEYS_PER_ITEM (FWD_K / COL_GROUPS)
#define DQ_KEYS_PER_ITEM (DQ_K / COL_GROUPS)
#define DKV_QUERIES_PER_ITEM (DKV_Q / COL_GROUPS)

/* acc + a . b as four multiply-adds. */
static float dot4_add(const float4 a, const float4 b, float acc) {
    acc = a.x * b.x + acc;
    acc = a.y * b.y + acc;
    acc = a.z * b.z + acc;
    return a.w * b.w + acc;
}

/* Lane i of x, where the lanes are the 4 rows of a block. */
static float lane(const float4 x, const uint i) {
    return i == 0 ? x.x : i == 1 ? x.y : i == 2 ? x.z : x.w;
}

/* Copies rows first .. first + n - 1 of a strided tensor (HEAD_DIM columns
 * from `base`, `stride` apart, times `scale`) into rows 0 .. n - 1 of a
 * local tile of `rows` rows and zeros the rest of the tile's ROW_VECS
 * vectors, so that the loops over a tile run a constant count and padding
 * adds zeros. The work-group's items take consecutive elements. */
static void load_rows(__local float4 *tile, const uint rows, __global const float *base,
                      const uint stride, const uint first, const uint n, const float scale) {
    __local float *t = (__local float *)tile;
    for (uint e = get_local_id(0); e < rows * (ROW_VECS * 4); e += get_local_size(0)) {
        const uint r = e / (ROW_VECS * 4), c = e - r * (ROW_VECS * 4);
        t[r * (TILE_LD * 4) + c] =
            r < n && c < HEAD_DIM ? scale * base[(size_t)(first + r) * stride + c] : 0.0f;
    }
}

/* load_rows for an activation (q, k, v): widened from half in a half
 * program, load_rows itself in a float one. */
#ifdef CLGQA_HALF
static void load_act_rows(__local float4 *tile, const uint rows, __global const half *base,
                          const uint stride, const uint first, const uint n, const float scale) {
    __local float *t = (__local float *)tile;
    for (uint e = get_local_id(0); e < rows * (ROW_VECS * 4); e += get_local_size(0)) {
        const uint r = e / (ROW_VECS * 4), c = e - r * (ROW_VECS * 4);
        t[r * (TILE_LD * 4) + c] =
            r < n && c < HEAD_DIM ? scale * vload_half((size_t)(first + r) * stride + c, base)
                                  : 0.0f;
    }
}
#else
#define load_act_rows load_rows
#endif

/* Writes vector c4 (columns 4 c4 .. 4 c4 + 3) of a row, without the lanes
 * past HEAD_DIM. */
static void store_vec(__global float *row, const uint c4, const float4 x) {
    row[4 * c4] = x.x;
    if (4 * c4 + 1 < HEAD_DIM)
        row[4 * c4 + 1] = x.y;
    if (4 * c4 + 2 < HEAD_DIM)
        row[4 * c4 + 2] = x.z;
    if (4 * c4 + 3 < HEAD_DIM)
        row[4 * c4 + 3] = x.w;
}

/* store_vec for an activation (out). */
#ifdef CLGQA_HALF
static void store_act_vec(__global half *row, const uint c4, const float4 x) {
    vstore_half_rte(x.x, 4 * c4, row);
    if (4 * c4 + 1 < HEAD_DIM)
        vstore_half_rte(x.y, 4 * c4 + 1, row);
    if (4 * c4 + 2 < HEAD_DIM)
        vstore_half_rte(x.z, 4 * c4 + 2, row);
    if (4 * c4 + 3 < HEAD_DIM)
        vstore_half_rte(x.w, 4 * c4 + 3, row);
}
#else
#define store_act_vec store_vec
#endif

/* Forward, one work-group per (sample b, query head h, query block),
 * streaming the FWD_K-key tiles of K and V of head j = kv_map[h] through
 * local memory with an online softmax. Per tile each item computes its 4 x
 * FWD_KEYS_PER_ITEM scores; the rows' maxima over the tile meet in max_tile;
 * the probabilities exp(s - running max) go to p_tile as [key][row block]
 * float4s, so the output update reads, per key, one float4 of probabilities
 * (4 rows) and COL_VECS of V. out row = acc / sum, lse[b, h, p] = max +
 * log(sum). Private floats per item at head_dim 64 (32-key tiles, 4 keys
 * per item): acc 32, scores 16, the block's Q vectors 16, a K vector 4,
 * running max and sum 8: 76. */
__kernel void attention_tiled(__global ACT *out, const uint out_off,
                              __global float *lse, const uint lse_off,
                              __global const ACT *q, const uint q_off, const uint q_stride,
                              __global const ACT *k, const uint k_off,
                              __global const ACT *v, const uint v_off, const uint kv_stride,
                              __global const int *kv_map, const uint kv_map_off,
                              const uint tokens, const uint heads, const uint query_tiles,
                              const float scale, __local float4 *q_tile, __local float4 *k_tile,
                              __local float4 *v_tile, __local float4 *p_tile,
                              __local float4 *max_tile) {
    const uint group = get_group_id(0);
    const uint bh = group / query_tiles, tile = group - bh * query_tiles;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    const uint lid = get_local_id(0), block = lid / COL_GROUPS, cg = lid - block * COL_GROUPS;
    const uint blocks = get_local_size(0) / COL_GROUPS, p0 = tile * 4 * blocks;
    __global const ACT *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const ACT *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    load_act_rows(q_tile, 4 * blocks, q + q_off + (size_t)b * tokens * q_stride + h * HEAD_DIM,
                  q_stride, p0, min(4 * blocks, tokens - p0), scale);
    float4 acc[4][COL_VECS];
    for (uint i = 0; i < 4; i++)
        for (uint cv = 0; cv < COL_VECS; cv++)
            acc[i][cv] = 0.0f;
    float4 top = -INFINITY, sum = 0.0f; /* lanes: the block's rows */
    for (uint t0 = 0; t0 < tokens; t0 += FWD_K) {
        const uint n = min((uint)FWD_K, tokens - t0);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed (and q_tile written) */
        load_act_rows(k_tile, FWD_K, kb, kv_stride, t0, n, 1.0f);
        load_act_rows(v_tile, FWD_K, vb, kv_stride, t0, n, 1.0f);
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[4][FWD_KEYS_PER_ITEM];
        for (uint i = 0; i < 4; i++)
            for (uint kk = 0; kk < FWD_KEYS_PER_ITEM; kk++)
                s[i][kk] = 0.0f;
        for (uint c = 0; c < ROW_VECS; c++) {
            float4 qv[4];
            for (uint i = 0; i < 4; i++)
                qv[i] = q_tile[(4 * block + i) * TILE_LD + c];
            for (uint kk = 0; kk < FWD_KEYS_PER_ITEM; kk++) {
                const float4 kv = k_tile[(cg + COL_GROUPS * kk) * TILE_LD + c];
                for (uint i = 0; i < 4; i++)
                    s[i][kk] = dot4_add(qv[i], kv, s[i][kk]);
            }
        }
        float4 item_top = -INFINITY;
        for (uint kk = 0; kk < FWD_KEYS_PER_ITEM; kk++)
            if (cg + COL_GROUPS * kk < n)
                item_top = fmax(item_top, (float4)(s[0][kk], s[1][kk], s[2][kk], s[3][kk]));
        max_tile[cg * blocks + block] = item_top;
        barrier(CLK_LOCAL_MEM_FENCE);
        float4 tile_top = top;
        for (uint g = 0; g < COL_GROUPS; g++)
            tile_top = fmax(tile_top, max_tile[g * blocks + block]);
        for (uint kk = 0; kk < FWD_KEYS_PER_ITEM; kk++) {
            const uint key = cg + COL_GROUPS * kk;
            const float4 sk = (float4)(s[0][kk], s[1][kk], s[2][kk], s[3][kk]);
            p_tile[key * (blocks + 1) + block] = key < n ? exp(sk - tile_top) : (float4)(0.0f);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const float4 rescale = exp(top - tile_top); /* 0 on the first tile */
        top = tile_top;
        sum *= rescale;
        for (uint cv = 0; cv < COL_VECS; cv++) {
            acc[0][cv] *= rescale.x;
            acc[1][cv] *= rescale.y;
            acc[2][cv] *= rescale.z;
            acc[3][cv] *= rescale.w;
        }
        for (uint t = 0; t < n; t++) { /* the padding's probabilities are 0: skipped */
            const float4 pr = p_tile[t * (blocks + 1) + block];
            sum += pr;
            for (uint cv = 0; cv < COL_VECS; cv++) {
                const float4 vv = v_tile[t * TILE_LD + cg + COL_GROUPS * cv];
                acc[0][cv] = pr.x * vv + acc[0][cv];
                acc[1][cv] = pr.y * vv + acc[1][cv];
                acc[2][cv] = pr.z * vv + acc[2][cv];
                acc[3][cv] = pr.w * vv + acc[3][cv];
            }
        }
    }
    const float4 inv = 1.0f / sum;
    for (uint i = 0; i < 4; i++) {
        const uint p = p0 + 4 * block + i;
        if (p >= tokens)
            continue;
        __global ACT *o =
            out + out_off + ((size_t)b * tokens + p) * heads * HEAD_DIM + h * HEAD_DIM;
        for (uint cv = 0; cv < COL_VECS; cv++)
            store_act_vec(o, cg + COL_GROUPS * cv, acc[i][cv] * lane(inv, i));
        if (cg == 0)
            lse[lse_off + (size_t)bh * tokens + p] = lane(top, i) + log(lane(sum, i));
    }
}

/* dq, one work-group per (sample, query head, query block) as the
 * forward: with g the row of dout and o the forward's output row,
 * D = g . o (stored in delta [B, H, P] for attention_tiled_dkv), and over
 * the key tiles P = exp(s - lse), dS = P (g . v_t - D) (through ds_tile,
 * [key][row block] float4s), dq = d^-0.5 sum dS k_t. Private floats per
 * item at head_dim 64 (32-key tiles, 4 keys per item): acc 32, scores and
 * g . v 32, the block's Q and dout vectors 32, a K and a V vector 8, lse
 * and D 8: 112. */
__kernel void attention_tiled_dq(__global float *dq, const uint dq_off,
                                 __global float *delta, const uint delta_off,
                                 __global const float *dout, const uint dout_off,
                                 __global const ACT *out, const uint out_off,
                                 __global const float *lse, const uint lse_off,
                                 __global const ACT *q, const uint q_off, const uint q_stride,
                                 __global const ACT *k, const uint k_off,
                                 __global const ACT *v, const uint v_off, const uint kv_stride,
                                 __global const int *kv_map, const uint kv_map_off,
                                 const uint tokens, const uint heads, const uint query_tiles,
                                 const float scale, __local float4 *q_tile,
                                 __local float4 *g_tile, __local float4 *k_tile,
                                 __local float4 *v_tile, __local float4 *ds_tile,
                                 __local float4 *stats_tile) {
    const uint group = get_group_id(0);
    const uint bh = group / query_tiles, tile = group - bh * query_tiles;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    const uint lid = get_local_id(0), block = lid / COL_GROUPS, cg = lid - block * COL_GROUPS;
    const uint blocks = get_local_size(0) / COL_GROUPS, p0 = tile * 4 * blocks;
    const uint rows = min(4 * blocks, tokens - p0);
    const size_t first_row = (size_t)b * tokens + p0, row_stride = (size_t)heads * HEAD_DIM;
    __global const ACT *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const ACT *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *gb = dout + dout_off + (size_t)b * tokens * row_stride + h * HEAD_DIM;
    load_act_rows(q_tile, 4 * blocks, q + q_off + (size_t)b * tokens * q_stride + h * HEAD_DIM,
                  q_stride, p0, rows, scale);
    load_rows(g_tile, 4 * blocks, gb, (uint)row_stride, p0, rows, 1.0f);
    /* Row statistics, lse then D, as [2][4 * blocks] floats. */
    __local float *stats = (__local float *)stats_tile;
    for (uint r = lid; r < 4 * blocks; r += get_local_size(0)) {
        float row_lse = 0.0f, d_row = 0.0f;
        if (r < rows) {
            __global const float *gr = gb + (size_t)(p0 + r) * row_stride;
            __global const ACT *orow = out + out_off + (first_row + r) * row_stride + h * HEAD_DIM;
            for (uint c = 0; c < HEAD_DIM; c++)
                d_row += gr[c] * act_load(orow, c);
            row_lse = lse[lse_off + (size_t)bh * tokens + p0 + r];
            delta[delta_off + (size_t)bh * tokens + p0 + r] = d_row;
        }
        stats[r] = row_lse;
        stats[4 * blocks + r] = d_row;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float4 row_lse = stats_tile[block], d_row = stats_tile[blocks + block];
    float4 acc[4][COL_VECS];
    for (uint i = 0; i < 4; i++)
        for (uint cv = 0; cv < COL_VECS; cv++)
            acc[i][cv] = 0.0f;
    for (uint t0 = 0; t0 < tokens; t0 += DQ_K) {
        const uint n = min((uint)DQ_K, tokens - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        load_act_rows(k_tile, DQ_K, kb, kv_stride, t0, n, 1.0f);
        load_act_rows(v_tile, DQ_K, vb, kv_stride, t0, n, 1.0f);
        barrier(CLK_LOCAL_MEM_FENCE);
        float s[4][DQ_KEYS_PER_ITEM], dp[4][DQ_KEYS_PER_ITEM];
        for (uint i = 0; i < 4; i++)
            for (uint kk = 0; kk < DQ_KEYS_PER_ITEM; kk++) {
                s[i][kk] = 0.0f;
                dp[i][kk] = 0.0f;
            }
        for (uint c = 0; c < ROW_VECS; c++) {
            float4 qv[4], gv[4];
            for (uint i = 0; i < 4; i++) {
                qv[i] = q_tile[(4 * block + i) * TILE_LD + c];
                gv[i] = g_tile[(4 * block + i) * TILE_LD + c];
            }
            for (uint kk = 0; kk < DQ_KEYS_PER_ITEM; kk++) {
                const float4 kv = k_tile[(cg + COL_GROUPS * kk) * TILE_LD + c];
                const float4 vv = v_tile[(cg + COL_GROUPS * kk) * TILE_LD + c];
                for (uint i = 0; i < 4; i++) {
                    s[i][kk] = dot4_add(qv[i], kv, s[i][kk]);
                    dp[i][kk] = dot4_add(gv[i], vv, dp[i][kk]);
                }
            }
        }
        for (uint kk = 0; kk < DQ_KEYS_PER_ITEM; kk++) {
            const uint key = cg + COL_GROUPS * kk;
            const float4 sk = (float4)(s[0][kk], s[1][kk], s[2][kk], s[3][kk]);
            const float4 dpk = (float4)(dp[0][kk], dp[1][kk], dp[2][kk], dp[3][kk]);
            ds_tile[key * (blocks + 1) + block] =
                key < n ? exp(sk - row_lse) * (dpk - d_row) : (float4)(0.0f);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint t = 0; t < n; t++) { /* dS is 0 past n */
            const float4 ds = ds_tile[t * (blocks + 1) + block];
            for (uint cv = 0; cv < COL_VECS; cv++) {
                const float4 kv = k_tile[t * TILE_LD + cg + COL_GROUPS * cv];
                acc[0][cv] = ds.x * kv + acc[0][cv];
                acc[1][cv] = ds.y * kv + acc[1][cv];
                acc[2][cv] = ds.z * kv + acc[2][cv];
                acc[3][cv] = ds.w * kv + acc[3][cv];
            }
        }
    }
    for (uint i = 0; i < 4; i++) {
        const uint p = p0 + 4 * block + i;
        if (p >= tokens)
            continue;
        __global float *dqr = dq + dq_off + (first_row + 4 * block + i) * q_stride + h * HEAD_DIM;
        for (uint cv = 0; cv < COL_VECS; cv++)
            store_vec(dqr, cg + COL_GROUPS * cv, scale * acc[i][cv]);
    }
}

/* dk and dv, one work-group per (sample b, key/value head j, key block),
 * whose K and V tiles stay in local memory; each item owns 4 key rows
 * and COL_VECS float4 columns of their dk and dv. For every query head h
 * with kv_map[h] == j, in head order, the DKV_Q-row tiles of (d^-0.5 q,
 * dout, lse, D) stream through local memory: P = exp(s - lse) and
 * dS = P (g . v_t - D) go through p_tile and ds_tile ([query][key block]
 * float4s), then dv += P g and dk += dS d^-0.5 q. Fixed order, no atomics;
 * written, so a head serving no query head gets zeros. Private floats per
 * item at head_dim 64 (16-query tiles, 2 queries per item): dk and dv 64,
 * scores and g . v 16, its queries' Q and dout vectors 16, a K and a V
 * vector 8: 104. */
__kernel void attention_tiled_dkv(__global float *dk, const uint dk_off,
                                  __global float *dv, const uint dv_off,
                                  __global const float *dout, const uint dout_off,
                                  __global const float *lse, const uint lse_off,
                                  __global const float *delta, const uint delta_off,
                                  __global const ACT *q, const uint q_off, const uint q_stride,
                                  __global const ACT *k, const uint k_off,
                                  __global const ACT *v, const uint v_off,
                                  const uint kv_stride, __global const int *kv_map,
                                  const uint kv_map_off, const uint tokens, const uint heads,
                                  const uint kv_heads, const uint key_tiles, const float scale,
                                  __local float4 *k_tile, __local float4 *v_tile,
                                  __local float4 *q_tile, __local float4 *g_tile,
                                  __local float4 *p_tile, __local float4 *ds_tile,
                                  __local float *stats) {
    const uint group = get_group_id(0);
    const uint bj = group / key_tiles, tile = group - bj * key_tiles;
    const uint b = bj / kv_heads, j = bj - b * kv_heads;
    const uint lid = get_local_id(0), block = lid / COL_GROUPS, cg = lid - block * COL_GROUPS;
    const uint blocks = get_local_size(0) / COL_GROUPS, t0 = tile * 4 * blocks;
    const uint keys = min(4 * blocks, tokens - t0);
    const size_t first_key = (size_t)b * tokens + t0;
    load_act_rows(k_tile, 4 * blocks, k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM,
                  kv_stride, t0, keys, 1.0f);
    load_act_rows(v_tile, 4 * blocks, v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM,
                  kv_stride, t0, keys, 1.0f);
    float4 dk_acc[4][COL_VECS], dv_acc[4][COL_VECS];
    for (uint i = 0; i < 4; i++)
        for (uint cv = 0; cv < COL_VECS; cv++) {
            dk_acc[i][cv] = 0.0f;
            dv_acc[i][cv] = 0.0f;
        }
    const uint query_tiles = (tokens + DKV_Q - 1) / DKV_Q;
    for (uint h = 0; h < heads; h++) {
        /* The same for the whole group: the barriers below run in a loop of
         * uniform length, never under a branch. */
        const uint tiles_here = kv_map[kv_map_off + h] == (int)j ? query_tiles : 0;
        __global const ACT *qb = q + q_off + (size_t)b * tokens * q_stride + h * HEAD_DIM;
        __global const float *gb =
            dout + dout_off + (size_t)b * tokens * heads * HEAD_DIM + h * HEAD_DIM;
        const size_t stats_at = ((size_t)b * heads + h) * tokens;
        for (uint qt = 0; qt < tiles_here; qt++) {
            const uint p0 = qt * DKV_Q, n = min((uint)DKV_Q, tokens - p0);
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed (K, V written) */
            load_act_rows(q_tile, DKV_Q, qb, q_stride, p0, n, scale);
            load_rows(g_tile, DKV_Q, gb, heads * HEAD_DIM, p0, n, 1.0f);
            for (uint r = lid; r < DKV_Q; r += get_local_size(0)) {
                stats[r] = r < n ? lse[lse_off + stats_at + p0 + r] : 0.0f;
                stats[DKV_Q + r] = r < n ? delta[delta_off + stats_at + p0 + r] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            float s[4][DKV_QUERIES_PER_ITEM], dp[4][DKV_QUERIES_PER_ITEM];
            for (uint i = 0; i < 4; i++)
                for (uint r = 0; r < DKV_QUERIES_PER_ITEM; r++) {
                    s[i][r] = 0.0f;
                    dp[i][r] = 0.0f;
                }
            for (uint c = 0; c < ROW_VECS; c++) {
                float4 qv[DKV_QUERIES_PER_ITEM], gv[DKV_QUERIES_PER_ITEM];
                for (uint r = 0; r < DKV_QUERIES_PER_ITEM; r++) {
                    qv[r] = q_tile[(cg + COL_GROUPS * r) * TILE_LD + c];
                    gv[r] = g_tile[(cg + COL_GROUPS * r) * TILE_LD + c];
                }
                for (uint i = 0; i < 4; i++) {
                    const float4 kv = k_tile[(4 * block + i) * TILE_LD + c];
                    const float4 vv = v_tile[(4 * block + i) * TILE_LD + c];
                    for (uint r = 0; r < DKV_QUERIES_PER_ITEM; r++) {
                        s[i][r] = dot4_add(kv, qv[r], s[i][r]);
                        dp[i][r] = dot4_add(vv, gv[r], dp[i][r]);
                    }
                }
            }
            for (uint r = 0; r < DKV_QUERIES_PER_ITEM; r++) {
                const uint query = cg + COL_GROUPS * r;
                const float4 sq = (float4)(s[0][r], s[1][r], s[2][r], s[3][r]);
                const float4 dpq = (float4)(dp[0][r], dp[1][r], dp[2][r], dp[3][r]);
                const float4 pr = query < n ? exp(sq - stats[query]) : (float4)(0.0f);
                p_tile[query * (blocks + 1) + block] = pr;
                ds_tile[query * (blocks + 1) + block] = pr * (dpq - stats[DKV_Q + query]);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint i = 0; i < n; i++) { /* P and dS are 0 past n */
                const float4 pr = p_tile[i * (blocks + 1) + block];
                const float4 ds = ds_tile[i * (blocks + 1) + block];
                for (uint cv = 0; cv < COL_VECS; cv++) {
                    const float4 gv = g_tile[i * TILE_LD + cg + COL_GROUPS * cv];
                    const float4 qv = q_tile[i * TILE_LD + cg + COL_GROUPS * cv];
                    dv_acc[0][cv] = pr.x * gv + dv_acc[0][cv];
                    dv_acc[1][cv] = pr.y * gv + dv_acc[1][cv];
                    dv_acc[2][cv] = pr.z * gv + dv_acc[2][cv];
                    dv_acc[3][cv] = pr.w * gv + dv_acc[3][cv];
                    dk_acc[0][cv] = ds.x * qv + dk_acc[0][cv];
                    dk_acc[1][cv] = ds.y * qv + dk_acc[1][cv];
                    dk_acc[2][cv] = ds.z * qv + dk_acc[2][cv];
                    dk_acc[3][cv] = ds.w * qv + dk_acc[3][cv];
                }
            }
        }
    }
    for (uint i = 0; i < 4; i++) {
        if (4 * block + i >= keys)
            continue;
        const size_t at = (first_key + 4 * block + i) * kv_stride + j * HEAD_DIM;
        for (uint cv = 0; cv < COL_VECS; cv++) {
            store_vec(dk + dk_off + at, cg + COL_GROUPS * cv, dk_acc[i][cv]);
            store_vec(dv + dv_off + at, cg + COL_GROUPS * cv, dv_acc[i][cv]);
        }
    }
}

/* ---- PGQA ---- */

/* PGQA row kernels run one work-group per (sample, head) row of A, whose
 * work-items touch only the elements lid, lid + wg, ... of the row, so only
 * the reductions need barriers. Local sizes are powers of two
 * (clgqa_work_group_size). Element l = p*d + c of row (b, h) lies at
 * (b*P + p) * H*d + h*d + c of the [B*P, H*d] tensors. */

/* Noise, one work-group per query head h, which is row i = h % group_size of
 * its group's U [group_size, L]: U is uniform from Philox (seed, stream) at
 * element h*L + l, or fixed_noise when use_fixed; U[i][i] = 0 (no element
 * when i >= L); z = (U - mean) / std with Bessel's std, a zero std replaced
 * by 1. */
__kernel void pgqa_noise(__global float *noise_z, const uint noise_z_off,
                         __global const float *fixed_noise, const uint fixed_noise_off,
                         const int use_fixed, const uint row_length, const uint group_size,
                         const uint seed_lo, const uint seed_hi, const uint stream_lo,
                         const uint stream_hi, __local float *scratch) {
    const uint h = get_group_id(0);
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint diagonal = h - (h / group_size) * group_size;
    __global float *z = noise_z + noise_z_off + (size_t)h * row_length;
    const philox4x32_key_t key = {{seed_lo, seed_hi}};
    float sum = 0.0f;
    for (uint l = lid; l < row_length; l += wg) {
        const uint e = h * row_length + l;
        float u;
        if (use_fixed) {
            u = fixed_noise[fixed_noise_off + e];
        } else {
            philox4x32_ctr_t ctr = {{e / 4, 0, stream_lo, stream_hi}};
            philox4x32_ctr_t bits = philox4x32_R(philox4x32_rounds, ctr, key);
            u = (float)(bits.v[e - (e / 4) * 4] >> 8) * (1.0f / 16777216.0f);
        }
        if (l == diagonal)
            u = 0.0f;
        z[l] = u;
        sum += u;
    }
    const float mean = group_sum(scratch, sum) / (float)row_length;
    float squares = 0.0f;
    for (uint l = lid; l < row_length; l += wg)
        squares += (z[l] - mean) * (z[l] - mean);
    float std = sqrt(group_sum(scratch, squares) / (float)(row_length - 1));
    if (std == 0.0f)
        std = 1.0f;
    for (uint l = lid; l < row_length; l += wg)
        z[l] = (z[l] - mean) / std;
}

/* Output: mu and sigma (Bessel) of row A go to row_stats [B*H, 2], and
 * out = A - (z[h] * sigma + mu). */
__kernel void pgqa_output(__global ACT *out, const uint out_off,
                          __global const ACT *heads_out, const uint heads_out_off,
                          __global const float *noise_z, const uint noise_z_off,
                          __global float *row_stats, const uint row_stats_off, const uint heads,
                          const uint tokens, __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * HEAD_DIM, row_stride = heads * HEAD_DIM;
    const size_t row_at = (size_t)b * tokens * row_stride + h * HEAD_DIM;
    __global const ACT *a = heads_out + heads_out_off + row_at;
    __global const float *z = noise_z + noise_z_off + (size_t)h * length;
    __global ACT *o = out + out_off + row_at;
    float sum = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        sum += act_load(a, p * row_stride + c);
    }
    const float mu = group_sum(scratch, sum) / (float)length;
    float squares = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        const float x = act_load(a, p * row_stride + c) - mu;
        squares += x * x;
    }
    const float sigma = sqrt(group_sum(scratch, squares) / (float)(length - 1));
    if (lid == 0) {
        row_stats[row_stats_off + 2 * bh] = mu;
        row_stats[row_stats_off + 2 * bh + 1] = sigma;
    }
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        act_store(act_load(a, p * row_stride + c) - (z[l] * sigma + mu), o, p * row_stride + c);
    }
}

/* Backward of pgqa_output: with g the row of dout,
 * dA = g - sum(g) / L - sum(g z) (A - mu) / ((L - 1) sigma), the last term 0
 * where sigma == 0. Writes d_heads. */
__kernel void pgqa_grad(__global float *d_heads, const uint d_heads_off,
                        __global const float *dout, const uint dout_off,
                        __global const ACT *heads_out, const uint heads_out_off,
                        __global const float *noise_z, const uint noise_z_off,
                        __global const float *row_stats, const uint row_stats_off,
                        const uint heads, const uint tokens, __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * HEAD_DIM, row_stride = heads * HEAD_DIM;
    const size_t row_at = (size_t)b * tokens * row_stride + h * HEAD_DIM;
    __global const ACT *a = heads_out + heads_out_off + row_at;
    __global const float *z = noise_z + noise_z_off + (size_t)h * length;
    __global const float *g = dout + dout_off + row_at;
    __global float *da = d_heads + d_heads_off + row_at;
    float g_sum = 0.0f, gz_sum = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        const float gl = g[p * row_stride + c];
        g_sum += gl;
        gz_sum += gl * z[l];
    }
    g_sum = group_sum(scratch, g_sum);
    gz_sum = group_sum(scratch, gz_sum);
    const float mu = row_stats[row_stats_off + 2 * bh];
    const float sigma = row_stats[row_stats_off + 2 * bh + 1];
    const float mean_grad = g_sum / (float)length;
    const float sigma_coef = sigma > 0.0f ? gz_sum / ((float)(length - 1) * sigma) : 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        const size_t at = p * row_stride + c;
        da[at] = g[at] - mean_grad - sigma_coef * (act_load(a, at) - mu);
    }
}
