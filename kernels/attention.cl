/* Grouped attention (semantics: docs/attention-variants.md; launchers:
 * host/ops/attention.c).
 *
 * Forward:  gather_qkv -> attention_rows (scores, softmax, weighted values)
 *           -> scatter_heads, or with PGQA pgqa_noise + pgqa_output
 *           (scatter minus the perturbation).
 * Backward: gather_heads (or pgqa_grad) -> attention_rows_backward (dS, dq)
 *           -> kv_grads (dk, dv summed over the heads of each group).
 *
 * Per-head tensors are [B, H, P, d]: row (b, h, p) is query token p of head
 * h in sample b. Index decompositions write x - (x / n) * n instead of
 * x % n next to x / n: LLVM turns such a div/rem pair into a `freeze` that
 * Oclgrind cannot check. PGQA row kernels run one work-group per
 * (sample, head) row, whose work-items touch only the elements lid,
 * lid + wg, ... of the row, so only the reductions need barriers. Local
 * sizes are powers of two (clgqa_work_group_size). No barrier sits under a
 * branch (PoCL crashed on one that did), hence the separate plain and PGQA
 * kernels. */

/* q_heads = d^-0.5 q, k_heads / v_heads = k / v of the key/value head
 * kv_map[h], all [B, H, P, d]; q is [B*P, H*d], k and v [B*P, G*d]. */
__kernel void gather_qkv(__global float *q_heads, const uint q_heads_off,
                         __global float *k_heads, const uint k_heads_off,
                         __global float *v_heads, const uint v_heads_off,
                         __global const float *q, const uint q_off,
                         __global const float *k, const uint k_off,
                         __global const float *v, const uint v_off,
                         __global const int *kv_map, const uint kv_map_off, const uint batch,
                         const uint tokens, const uint heads, const uint kv_heads,
                         const uint head_dim, const float scale) {
    const uint i = get_global_id(0);
    if (i >= batch * heads * tokens * head_dim)
        return;
    const uint t = i / head_dim, c = i - t * head_dim;
    const uint bh = t / tokens, p = t - bh * tokens;
    const uint b = bh / heads, h = bh - b * heads;
    const uint j = (uint)kv_map[kv_map_off + h];
    const uint row = b * tokens + p;
    q_heads[q_heads_off + i] = scale * q[q_off + row * heads * head_dim + h * head_dim + c];
    k_heads[k_heads_off + i] = k[k_off + row * kv_heads * head_dim + j * head_dim + c];
    v_heads[v_heads_off + i] = v[v_off + row * kv_heads * head_dim + j * head_dim + c];
}

/* Row helpers over global memory (n contiguous floats). */
static float dot_row(__global const float *a, __global const float *b, const uint n) {
    float acc = 0.0f;
    for (uint c = 0; c < n; c++)
        acc += a[c] * b[c];
    return acc;
}

static void axpy_row(__global float *y, const float w, __global const float *x, const uint n) {
    for (uint c = 0; c < n; c++)
        y[c] += w * x[c];
}

/* One work-item per query row i = (b, h, p) of the [B, H, P, d] tensors:
 * probs[i] = softmax over t of q_heads[i] . k_heads[b, h, t] (q_heads holds
 * d^-0.5 q), heads_out[i] = sum_t probs[i, t] v_heads[b, h, t]. The keys
 * and values of a (sample, head) pair are shared by its P work-items, so
 * they stay in cache; a work-item per row beats CLBlast's batched GEMMs on
 * these small products by ~9x on PoCL and needs no separate softmax pass. */
__kernel void attention_rows(__global float *probs, const uint probs_off,
                             __global float *heads_out, const uint heads_out_off,
                             __global const float *q_heads, const uint q_heads_off,
                             __global const float *k_heads, const uint k_heads_off,
                             __global const float *v_heads, const uint v_heads_off,
                             const uint rows, const uint tokens, const uint head_dim) {
    const uint i = get_global_id(0);
    if (i >= rows)
        return;
    const uint bh = i / tokens;
    __global const float *qr = q_heads + q_heads_off + (size_t)i * head_dim;
    __global const float *kb = k_heads + k_heads_off + (size_t)bh * tokens * head_dim;
    __global const float *vb = v_heads + v_heads_off + (size_t)bh * tokens * head_dim;
    __global float *pr = probs + probs_off + (size_t)i * tokens;
    __global float *o = heads_out + heads_out_off + (size_t)i * head_dim;
    float top = -INFINITY;
    for (uint t = 0; t < tokens; t++) {
        const float s = dot_row(qr, kb + t * head_dim, head_dim);
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
    for (uint c = 0; c < head_dim; c++)
        o[c] = 0.0f;
    for (uint t = 0; t < tokens; t++) {
        pr[t] *= inv;
        axpy_row(o, pr[t], vb + t * head_dim, head_dim);
    }
}

/* Backward of attention_rows for query row i = (b, h, p), with g = d_heads[i]:
 * dP[t] = g . v[t], dS = P * (dP - sum_t P dP) (saved in dscores for
 * kv_grads), and dq[b*P + p, h*d ...] += d^-0.5 sum_t dS[t] k[t] (scores are
 * (d^-0.5 q) k^T; this work-item owns that slice of dq). */
__kernel void attention_rows_backward(__global float *dscores, const uint dscores_off,
                                      __global float *dq, const uint dq_off,
                                      __global const float *d_heads, const uint d_heads_off,
                                      __global const float *probs, const uint probs_off,
                                      __global const float *k_heads, const uint k_heads_off,
                                      __global const float *v_heads, const uint v_heads_off,
                                      const uint batch, const uint tokens, const uint heads,
                                      const uint head_dim, const float scale) {
    const uint i = get_global_id(0);
    if (i >= batch * heads * tokens)
        return;
    const uint bh = i / tokens, p = i - bh * tokens;
    const uint b = bh / heads, h = bh - b * heads;
    __global const float *g = d_heads + d_heads_off + (size_t)i * head_dim;
    __global const float *kb = k_heads + k_heads_off + (size_t)bh * tokens * head_dim;
    __global const float *vb = v_heads + v_heads_off + (size_t)bh * tokens * head_dim;
    __global const float *pr = probs + probs_off + (size_t)i * tokens;
    __global float *ds = dscores + dscores_off + (size_t)i * tokens;
    __global float *dqr = dq + dq_off + ((size_t)b * tokens + p) * heads * head_dim + h * head_dim;
    float weighted = 0.0f;
    for (uint t = 0; t < tokens; t++) {
        const float dp = dot_row(g, vb + t * head_dim, head_dim);
        ds[t] = dp;
        weighted += pr[t] * dp;
    }
    for (uint t = 0; t < tokens; t++) {
        ds[t] = pr[t] * (ds[t] - weighted);
        axpy_row(dqr, scale * ds[t], kb + t * head_dim, head_dim);
    }
}

/* dk, dv [B*P, G*d] for key row t of key/value head j in sample b, one
 * work-item per (b, j, t) owning that slice (no atomics): over the query
 * heads h with kv_map[h] == j in head order and their rows p,
 * dk += dS[b, h, p, t] q_heads[b, h, p] (q_heads already holds d^-0.5 q) and
 * dv += P[b, h, p, t] g[b, h, p]. A head serving no query head gets nothing. */
__kernel void kv_grads(__global float *dk, const uint dk_off, __global float *dv,
                       const uint dv_off, __global const float *dscores, const uint dscores_off,
                       __global const float *probs, const uint probs_off,
                       __global const float *q_heads, const uint q_heads_off,
                       __global const float *d_heads, const uint d_heads_off,
                       __global const int *kv_map, const uint kv_map_off, const uint batch,
                       const uint tokens, const uint heads, const uint kv_heads,
                       const uint head_dim) {
    const uint i = get_global_id(0);
    if (i >= batch * kv_heads * tokens)
        return;
    const uint bj = i / tokens, t = i - bj * tokens;
    const uint b = bj / kv_heads, j = bj - b * kv_heads;
    const size_t out_at = ((size_t)b * tokens + t) * kv_heads * head_dim + j * head_dim;
    __global float *dkr = dk + dk_off + out_at;
    __global float *dvr = dv + dv_off + out_at;
    for (uint h = 0; h < heads; h++) {
        if (kv_map[kv_map_off + h] != (int)j)
            continue;
        for (uint p = 0; p < tokens; p++) {
            const size_t row = ((size_t)b * heads + h) * tokens + p;
            axpy_row(dkr, dscores[dscores_off + row * tokens + t],
                     q_heads + q_heads_off + row * head_dim, head_dim);
            axpy_row(dvr, probs[probs_off + row * tokens + t],
                     d_heads + d_heads_off + row * head_dim, head_dim);
        }
    }
}

/* PGQA noise, one work-group per query head h, which is row
 * i = h % group_size of its group's U [group_size, L]: U is uniform from
 * Philox (seed, stream) at element h*L + l, or fixed_noise when use_fixed;
 * U[i][i] = 0 (no element when i >= L); z = (U - mean) / std with Bessel's
 * std, a zero std replaced by 1. */
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

/* Position in [B, H, P, d] of element i of a [B*P, H*d] tensor. */
static uint heads_index(const uint i, const uint heads, const uint tokens, const uint head_dim) {
    const uint cols = heads * head_dim;
    const uint row = i / cols, col = i - row * cols;
    const uint h = col / head_dim, c = col - h * head_dim;
    const uint b = row / tokens, p = row - b * tokens;
    return ((b * heads + h) * tokens + p) * head_dim + c;
}

/* out [B*P, H*d] = heads_out [B, H, P, d] with the heads concatenated. */
__kernel void scatter_heads(__global float *out, const uint out_off,
                            __global const float *heads_out, const uint heads_out_off,
                            const uint batch, const uint tokens, const uint heads,
                            const uint head_dim) {
    const uint i = get_global_id(0);
    if (i >= batch * tokens * heads * head_dim)
        return;
    out[out_off + i] = heads_out[heads_out_off + heads_index(i, heads, tokens, head_dim)];
}

/* Backward of scatter_heads: d_heads [B, H, P, d] = dout [B*P, H*d]. */
__kernel void gather_heads(__global float *d_heads, const uint d_heads_off,
                           __global const float *dout, const uint dout_off, const uint batch,
                           const uint tokens, const uint heads, const uint head_dim) {
    const uint i = get_global_id(0);
    if (i >= batch * tokens * heads * head_dim)
        return;
    d_heads[d_heads_off + heads_index(i, heads, tokens, head_dim)] = dout[dout_off + i];
}

/* PGQA output, one work-group per (sample, head) row A of heads_out
 * ([B*H, L], L = P*d): mu and sigma (Bessel) of A go to row_stats [B*H, 2],
 * and out[b*P + p, h*d + c] = A[l] - (z[h, l] * sigma + mu), l = p*d + c. */
__kernel void pgqa_output(__global float *out, const uint out_off,
                          __global const float *heads_out, const uint heads_out_off,
                          __global const float *noise_z, const uint noise_z_off,
                          __global float *row_stats, const uint row_stats_off, const uint heads,
                          const uint tokens, const uint head_dim, __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * head_dim;
    __global const float *a = heads_out + heads_out_off + (size_t)bh * length;
    __global const float *z = noise_z + noise_z_off + (size_t)h * length;
    __global float *o = out + out_off + (size_t)b * tokens * heads * head_dim + h * head_dim;
    float sum = 0.0f;
    for (uint l = lid; l < length; l += wg)
        sum += a[l];
    const float mu = group_sum(scratch, sum) / (float)length;
    float squares = 0.0f;
    for (uint l = lid; l < length; l += wg)
        squares += (a[l] - mu) * (a[l] - mu);
    const float sigma = sqrt(group_sum(scratch, squares) / (float)(length - 1));
    if (lid == 0) {
        row_stats[row_stats_off + 2 * bh] = mu;
        row_stats[row_stats_off + 2 * bh + 1] = sigma;
    }
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / head_dim, c = l - p * head_dim;
        o[p * heads * head_dim + c] = a[l] - (z[l] * sigma + mu);
    }
}

/* Backward of pgqa_output, one work-group per (sample, head) row: with
 * g = dout gathered to the row and A' = A - z sigma - mu,
 * dA = g - sum(g) / L - sum(g z) (A - mu) / ((L - 1) sigma), the last term 0
 * where sigma == 0. Overwrites d_heads. */
__kernel void pgqa_grad(__global float *d_heads, const uint d_heads_off,
                        __global const float *dout, const uint dout_off,
                        __global const float *heads_out, const uint heads_out_off,
                        __global const float *noise_z, const uint noise_z_off,
                        __global const float *row_stats, const uint row_stats_off,
                        const uint heads, const uint tokens, const uint head_dim,
                        __local float *scratch) {
    const uint bh = get_group_id(0);
    const uint b = bh / heads, h = bh - b * heads;
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const uint length = tokens * head_dim;
    __global const float *a = heads_out + heads_out_off + (size_t)bh * length;
    __global const float *z = noise_z + noise_z_off + (size_t)h * length;
    __global const float *g =
        dout + dout_off + (size_t)b * tokens * heads * head_dim + h * head_dim;
    __global float *da = d_heads + d_heads_off + (size_t)bh * length;
    float g_sum = 0.0f, gz_sum = 0.0f;
    for (uint l = lid; l < length; l += wg) {
        const uint p = l / head_dim, c = l - p * head_dim;
        const float gl = g[p * heads * head_dim + c];
        da[l] = gl;
        g_sum += gl;
        gz_sum += gl * z[l];
    }
    g_sum = group_sum(scratch, g_sum);
    gz_sum = group_sum(scratch, gz_sum);
    const float mu = row_stats[row_stats_off + 2 * bh];
    const float sigma = row_stats[row_stats_off + 2 * bh + 1];
    const float mean_grad = g_sum / (float)length;
    const float sigma_coef = sigma > 0.0f ? gz_sum / ((float)(length - 1) * sigma) : 0.0f;
    for (uint l = lid; l < length; l += wg)
        da[l] = da[l] - mean_grad - sigma_coef * (a[l] - mu);
}
