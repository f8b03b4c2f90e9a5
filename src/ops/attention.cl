/* Grouped attention (semantics: docs/attention-variants.md; launchers:
 * src/ops/attention.c). Built once per head dimension with -DHEAD_DIM=d
 * and -DTILE=t (rows of a K/V or Q tile in local memory), so the per-row
 * vectors below are private arrays.
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
 *   an online softmax and saves only the log-sum-exp [B, H, P]. Backward
 *   recomputes the probabilities from it: attention_tiled_dq per query tile
 *   (also writing D = rowsum(dO * O)), then attention_tiled_dkv per (sample,
 *   key/value head, key tile), looping over the query heads of the group in
 *   head order: fixed summation order, no atomics.
 * PGQA adds pgqa_noise and pgqa_output after either forward and pgqa_grad
 * before either backward.
 *
 * Index decompositions write x - (x / n) * n instead of x % n next to
 * x / n: LLVM turns such a div/rem pair into a `freeze` that Oclgrind
 * cannot check. No barrier sits under a branch (PoCL crashed on one that
 * did): work-items past the last row of a tile still take part in the
 * barriers and only skip their stores. */

#if !defined(HEAD_DIM) || !defined(TILE)
#error "attention.cl is built with -DHEAD_DIM=<d> -DTILE=<rows> (src/ops/attention.c)"
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

/* a . b for two head rows. */
static float row_dot(const floatL *a, __global const float *b) {
    floatL sum = a[0] * vloadL(0, b);
    for (uint u = 1; u < COLUMN_VECTORS; u++)
        sum += a[u] * vloadL(u, b);
    return lanes_sum(sum);
}

/* One work-item per query row i = (b, h, p): probs[i, t] = softmax over t of
 * (d^-0.5 q) . k_t, out row = sum_t probs[i, t] v_t. The keys and values of a
 * (sample, head) pair are shared by its P work-items, so they stay in cache.
 * The grid is [tokens, B*H]: a work-group holds one pair's rows. */
__kernel __attribute__((vec_type_hint(floatL))) void attention_rows(
    __global float *probs, const uint probs_off, __global float *out, const uint out_off,
    __global const float *q, const uint q_off, const uint q_stride, __global const float *k,
    const uint k_off, __global const float *v, const uint v_off, const uint kv_stride,
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
    __global const float *qr = q + q_off + (size_t)(b * tokens + p) * q_stride + h * HEAD_DIM;
    __global const float *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global float *pr = probs + probs_off + (size_t)i * tokens;
    floatL qs[COLUMN_VECTORS], acc[COLUMN_VECTORS];
    for (uint u = 0; u < COLUMN_VECTORS; u++) {
        qs[u] = scale * vloadL(u, qr);
        acc[u] = 0.0f;
    }
    float top = -INFINITY;
    for (uint t = 0; t < tokens; t++) {
        const float s = row_dot(qs, kb + (size_t)t * kv_stride);
        pr[t] = s;
        top = fmax(top, s);
    }
    float sum = 0.0f;
    for (uint t = 0; t < tokens; t++) {
        const float e = exp(pr[t] - top);
        pr[t] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    for (uint t = 0; t < tokens; t++) {
        const float w = pr[t] * inv;
        pr[t] = w;
        for (uint u = 0; u < COLUMN_VECTORS; u++)
            acc[u] += w * vloadL(u, vb + (size_t)t * kv_stride);
    }
    __global float *o = out + out_off + (size_t)(b * tokens + p) * heads * HEAD_DIM + h * HEAD_DIM;
    for (uint u = 0; u < COLUMN_VECTORS; u++)
        vstoreL(acc[u], u, o);
}

/* Backward of attention_rows for query row i = (b, h, p), with g its row of
 * dout: dP[t] = g . v_t, dS = P * (dP - sum_t P dP) (saved in dscores for
 * kv_grads), dq row = d^-0.5 sum_t dS[t] k_t (written, not accumulated). */
__kernel __attribute__((vec_type_hint(floatL))) void attention_rows_backward(
    __global float *dscores, const uint dscores_off, __global float *dq, const uint dq_off,
    __global const float *dout, const uint dout_off, __global const float *probs,
    const uint probs_off, const uint q_stride, __global const float *k, const uint k_off,
    __global const float *v, const uint v_off, const uint kv_stride, __global const int *kv_map,
    const uint kv_map_off, const uint tokens, const uint heads, const float scale) {
    const uint p = get_global_id(0), bh = get_global_id(1); /* (b, h): see kv_grads */
    if (p >= tokens)
        return;
    const uint i = bh * tokens + p;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    __global const float *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *pr = probs + probs_off + (size_t)i * tokens;
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
        weighted += pr[t] * dp;
    }
    for (uint t = 0; t < tokens; t++) {
        const float d = pr[t] * (ds[t] - weighted);
        ds[t] = d;
        for (uint u = 0; u < COLUMN_VECTORS; u++)
            acc[u] += d * vloadL(u, kb + (size_t)t * kv_stride);
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
    __global const float *dscores, const uint dscores_off, __global const float *probs,
    const uint probs_off, __global const float *q, const uint q_off, const uint q_stride,
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
            const float pr = probs[probs_off + score];
            __global const float *qr = q + q_off + row * q_stride + h * HEAD_DIM;
            __global const float *gr = dout + dout_off + row * heads * HEAD_DIM + h * HEAD_DIM;
            for (uint u = 0; u < COLUMN_VECTORS; u++) {
                dk_acc[u] += ds * vloadL(u, qr);
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

/* Copies rows first .. first + n - 1 of a strided tensor (HEAD_DIM columns
 * from `base`, `stride` apart, times `scale`) into a [TILE, HEAD_DIM] local
 * tile and zeros its rows n .. TILE - 1, the work-group's items taking
 * consecutive elements. The loops over a tile then run TILE times (a
 * constant, so the compiler can unroll them and keep the scores in
 * registers) and mask the rows past n. */
static void load_tile(__local float *tile, __global const float *base, const uint stride,
                      const uint first, const uint n, const float scale) {
    for (uint e = get_local_id(0); e < TILE * HEAD_DIM; e += get_local_size(0)) {
        const uint t = e / HEAD_DIM, c = e - t * HEAD_DIM;
        tile[e] = t < n ? scale * base[(size_t)(first + t) * stride + c] : 0.0f;
    }
}

/* Where a work-item of a query-tile work-group stands: group (b*H + h) *
 * query_tiles + tile, query row p = tile * local size + local id; rows past
 * P (valid 0) read row P - 1 so that they can join the loads and barriers;
 * j = kv_map[h] is the key/value head. */
typedef struct query_row {
    uint bh, b, h, j, p;
    int valid;
    size_t row; /* token row b*P + p of q, out, dout */
} query_row;

static query_row query_tile_row(__global const int *kv_map, const uint tokens, const uint heads,
                                const uint query_tiles) {
    query_row r;
    const uint group = get_group_id(0);
    r.bh = group / query_tiles;
    const uint tile = group - r.bh * query_tiles;
    r.b = r.bh / heads;
    r.h = r.bh - r.b * heads;
    r.j = (uint)kv_map[r.h];
    r.p = tile * get_local_size(0) + get_local_id(0);
    r.valid = r.p < tokens;
    r.row = (size_t)r.b * tokens + (r.valid ? r.p : tokens - 1);
    return r;
}

/* Forward, one work-group per (sample b, query head h, query tile), one
 * work-item per query row p: scores against each key tile of head
 * kv_map[h] in private memory, then the online-softmax update of the running
 * maximum, sum and output. out row = acc / sum, lse[b, h, p] = max + log(sum). */
__kernel void attention_tiled(__global float *out, const uint out_off,
                              __global float *lse, const uint lse_off,
                              __global const float *q, const uint q_off, const uint q_stride,
                              __global const float *k, const uint k_off,
                              __global const float *v, const uint v_off, const uint kv_stride,
                              __global const int *kv_map, const uint kv_map_off,
                              const uint tokens, const uint heads, const uint query_tiles,
                              const float scale, __local float *k_tile, __local float *v_tile) {
    const query_row at = query_tile_row(kv_map + kv_map_off, tokens, heads, query_tiles);
    const uint bh = at.bh, b = at.b, h = at.h, j = at.j, p = at.p;
    const int valid = at.valid;
    const size_t row = at.row;
    __global const float *qr = q + q_off + row * q_stride + h * HEAD_DIM;
    __global const float *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    float qs[HEAD_DIM], acc[HEAD_DIM], s[TILE];
    for (uint c = 0; c < HEAD_DIM; c++) {
        qs[c] = scale * qr[c];
        acc[c] = 0.0f;
    }
    float top = -INFINITY, sum = 0.0f;
    for (uint t0 = 0; t0 < tokens; t0 += TILE) {
        const uint n = min((uint)TILE, tokens - t0);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        load_tile(k_tile, kb, kv_stride, t0, n, 1.0f);
        load_tile(v_tile, vb, kv_stride, t0, n, 1.0f);
        barrier(CLK_LOCAL_MEM_FENCE);
        float tile_top = top;
        for (uint t = 0; t < TILE; t++) {
            float dot = 0.0f;
            for (uint c = 0; c < HEAD_DIM; c++)
                dot += qs[c] * k_tile[t * HEAD_DIM + c];
            s[t] = t < n ? dot : -INFINITY;
            tile_top = fmax(tile_top, s[t]);
        }
        const float rescale = exp(top - tile_top); /* 0 on the first tile */
        sum *= rescale;
        for (uint c = 0; c < HEAD_DIM; c++)
            acc[c] *= rescale;
        for (uint t = 0; t < TILE; t++) {
            const float e = exp(s[t] - tile_top); /* 0 past n */
            sum += e;
            for (uint c = 0; c < HEAD_DIM; c++)
                acc[c] += e * v_tile[t * HEAD_DIM + c];
        }
        top = tile_top;
    }
    if (valid) {
        const float inv = 1.0f / sum;
        __global float *o = out + out_off + row * heads * HEAD_DIM + h * HEAD_DIM;
        for (uint c = 0; c < HEAD_DIM; c++)
            o[c] = acc[c] * inv;
        lse[lse_off + (size_t)bh * tokens + p] = top + log(sum);
    }
}

/* dq, one work-group per (sample, query head, query tile) as the forward:
 * with g the row of dout and o the forward's output row,
 * D = g . o (stored in delta [B, H, P] for attention_tiled_dkv), and over the
 * key tiles P = exp(s - lse), dS = P (g . v_t - D), dq = d^-0.5 sum dS k_t. */
__kernel void attention_tiled_dq(__global float *dq, const uint dq_off,
                                 __global float *delta, const uint delta_off,
                                 __global const float *dout, const uint dout_off,
                                 __global const float *out, const uint out_off,
                                 __global const float *lse, const uint lse_off,
                                 __global const float *q, const uint q_off, const uint q_stride,
                                 __global const float *k, const uint k_off,
                                 __global const float *v, const uint v_off, const uint kv_stride,
                                 __global const int *kv_map, const uint kv_map_off,
                                 const uint tokens, const uint heads, const uint query_tiles,
                                 const float scale, __local float *k_tile,
                                 __local float *v_tile) {
    const query_row at = query_tile_row(kv_map + kv_map_off, tokens, heads, query_tiles);
    const uint bh = at.bh, b = at.b, h = at.h, j = at.j, p = at.p;
    const int valid = at.valid;
    const size_t row = at.row;
    __global const float *qr = q + q_off + row * q_stride + h * HEAD_DIM;
    __global const float *gr = dout + dout_off + row * heads * HEAD_DIM + h * HEAD_DIM;
    __global const float *orow = out + out_off + row * heads * HEAD_DIM + h * HEAD_DIM;
    __global const float *kb = k + k_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    __global const float *vb = v + v_off + (size_t)b * tokens * kv_stride + j * HEAD_DIM;
    float qs[HEAD_DIM], g[HEAD_DIM], acc[HEAD_DIM];
    float d_row = 0.0f;
    for (uint c = 0; c < HEAD_DIM; c++) {
        qs[c] = scale * qr[c];
        g[c] = gr[c];
        acc[c] = 0.0f;
        d_row += g[c] * orow[c];
    }
    const float row_lse = lse[lse_off + (size_t)bh * tokens + (valid ? p : tokens - 1)];
    for (uint t0 = 0; t0 < tokens; t0 += TILE) {
        const uint n = min((uint)TILE, tokens - t0);
        barrier(CLK_LOCAL_MEM_FENCE);
        load_tile(k_tile, kb, kv_stride, t0, n, 1.0f);
        load_tile(v_tile, vb, kv_stride, t0, n, 1.0f);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint t = 0; t < TILE; t++) {
            float s = 0.0f, dp = 0.0f;
            for (uint c = 0; c < HEAD_DIM; c++) {
                s += qs[c] * k_tile[t * HEAD_DIM + c];
                dp += g[c] * v_tile[t * HEAD_DIM + c];
            }
            const float ds = t < n ? exp(s - row_lse) * (dp - d_row) : 0.0f;
            for (uint c = 0; c < HEAD_DIM; c++)
                acc[c] += ds * k_tile[t * HEAD_DIM + c];
        }
    }
    if (valid) {
        __global float *dqr = dq + dq_off + row * q_stride + h * HEAD_DIM;
        for (uint c = 0; c < HEAD_DIM; c++)
            dqr[c] = scale * acc[c];
        delta[delta_off + (size_t)bh * tokens + p] = d_row;
    }
}

/* dk and dv, one work-group per (sample b, key/value head j, key tile), one
 * work-item per key row t holding k_t, v_t and its two accumulators: for
 * every query head h with kv_map[h] == j, in head order, the tiles of
 * (d^-0.5 q, dout, lse, D) stream through local memory and
 * dv += P g, dk += dS d^-0.5 q with P = exp(s - lse), dS = P (g . v_t - D).
 * Written, so a head serving no query head gets zeros. */
__kernel void attention_tiled_dkv(__global float *dk, const uint dk_off,
                                  __global float *dv, const uint dv_off,
                                  __global const float *dout, const uint dout_off,
                                  __global const float *lse, const uint lse_off,
                                  __global const float *delta, const uint delta_off,
                                  __global const float *q, const uint q_off, const uint q_stride,
                                  __global const float *k, const uint k_off,
                                  __global const float *v, const uint v_off,
                                  const uint kv_stride, __global const int *kv_map,
                                  const uint kv_map_off, const uint tokens, const uint heads,
                                  const uint kv_heads, const uint key_tiles, const float scale,
                                  __local float *q_tile, __local float *g_tile,
                                  __local float *stats_tile) {
    const uint group = get_group_id(0);
    const uint bj = group / key_tiles, tile = group - bj * key_tiles;
    const uint b = bj / kv_heads, j = bj - b * kv_heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint t = tile * wg + lid;
    const int valid = t < tokens;
    const size_t key_row = (size_t)b * tokens + (valid ? t : tokens - 1);
    __global const float *kr = k + k_off + key_row * kv_stride + j * HEAD_DIM;
    __global const float *vr = v + v_off + key_row * kv_stride + j * HEAD_DIM;
    float kk[HEAD_DIM], vv[HEAD_DIM], dk_acc[HEAD_DIM], dv_acc[HEAD_DIM];
    for (uint c = 0; c < HEAD_DIM; c++) {
        kk[c] = kr[c];
        vv[c] = vr[c];
        dk_acc[c] = 0.0f;
        dv_acc[c] = 0.0f;
    }
    const uint query_tiles = (tokens + TILE - 1) / TILE;
    for (uint h = 0; h < heads; h++) {
        /* The same for the whole group: the barriers below run in a loop of
         * uniform length, never under a branch. */
        const uint tiles_here = kv_map[kv_map_off + h] == (int)j ? query_tiles : 0;
        __global const float *qb = q + q_off + (size_t)b * tokens * q_stride + h * HEAD_DIM;
        __global const float *gb =
            dout + dout_off + (size_t)b * tokens * heads * HEAD_DIM + h * HEAD_DIM;
        const size_t stats_at = ((size_t)b * heads + h) * tokens;
        for (uint qt = 0; qt < tiles_here; qt++) {
            const uint p0 = qt * TILE, n = min((uint)TILE, tokens - p0);
            barrier(CLK_LOCAL_MEM_FENCE);
            load_tile(q_tile, qb, q_stride, p0, n, scale);
            load_tile(g_tile, gb, heads * HEAD_DIM, p0, n, 1.0f);
            for (uint i = lid; i < TILE; i += wg) {
                stats_tile[i] = i < n ? lse[lse_off + stats_at + p0 + i] : 0.0f;
                stats_tile[TILE + i] = i < n ? delta[delta_off + stats_at + p0 + i] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint i = 0; i < TILE; i++) {
                float s = 0.0f, dp = 0.0f;
                for (uint c = 0; c < HEAD_DIM; c++) {
                    s += q_tile[i * HEAD_DIM + c] * kk[c];
                    dp += g_tile[i * HEAD_DIM + c] * vv[c];
                }
                const float pr = i < n ? exp(s - stats_tile[i]) : 0.0f;
                const float ds = pr * (dp - stats_tile[TILE + i]);
                for (uint c = 0; c < HEAD_DIM; c++) {
                    dv_acc[c] += pr * g_tile[i * HEAD_DIM + c];
                    dk_acc[c] += ds * q_tile[i * HEAD_DIM + c];
                }
            }
        }
    }
    if (valid) {
        const size_t at = key_row * kv_stride + j * HEAD_DIM;
        for (uint c = 0; c < HEAD_DIM; c++) {
            dk[dk_off + at + c] = dk_acc[c];
            dv[dv_off + at + c] = dv_acc[c];
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
__kernel void pgqa_output(__global float *out, const uint out_off,
                          __global const float *heads_out, const uint heads_out_off,
                          __global const float *noise_z, const uint noise_z_off,
                          __global float *row_stats, const uint row_stats_off, const uint heads,
                          const uint tokens, __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * HEAD_DIM, row_stride = heads * HEAD_DIM;
    const size_t row_at = (size_t)b * tokens * row_stride + h * HEAD_DIM;
    __global const float *a = heads_out + heads_out_off + row_at;
    __global const float *z = noise_z + noise_z_off + (size_t)h * length;
    __global float *o = out + out_off + row_at;
    float sum = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        sum += a[p * row_stride + c];
    }
    const float mu = group_sum(scratch, sum) / (float)length;
    float squares = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        const float x = a[p * row_stride + c] - mu;
        squares += x * x;
    }
    const float sigma = sqrt(group_sum(scratch, squares) / (float)(length - 1));
    if (lid == 0) {
        row_stats[row_stats_off + 2 * bh] = mu;
        row_stats[row_stats_off + 2 * bh + 1] = sigma;
    }
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / HEAD_DIM, c = l - p * HEAD_DIM;
        o[p * row_stride + c] = a[p * row_stride + c] - (z[l] * sigma + mu);
    }
}

/* Backward of pgqa_output: with g the row of dout,
 * dA = g - sum(g) / L - sum(g z) (A - mu) / ((L - 1) sigma), the last term 0
 * where sigma == 0. Writes d_heads. */
__kernel void pgqa_grad(__global float *d_heads, const uint d_heads_off,
                        __global const float *dout, const uint dout_off,
                        __global const float *heads_out, const uint heads_out_off,
                        __global const float *noise_z, const uint noise_z_off,
                        __global const float *row_stats, const uint row_stats_off,
                        const uint heads, const uint tokens, __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * HEAD_DIM, row_stride = heads * HEAD_DIM;
    const size_t row_at = (size_t)b * tokens * row_stride + h * HEAD_DIM;
    __global const float *a = heads_out + heads_out_off + row_at;
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
        da[at] = g[at] - mean_grad - sigma_coef * (a[at] - mu);
    }
}
