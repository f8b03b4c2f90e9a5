/* Query-head grouping on the device (semantics: docs/attention-variants.md).
 *
 * key_norm_partials + key_norms reduce k [B*P, G*d] (rows `row_stride`
 * apart) to one number per key/value head. The
 * allocation kernels turn those numbers into group_counts [G] (query heads
 * per key/value head) and kv_map [H] (the key/value head each query head
 * reads; groups are contiguous in head order). G and H are a handful, so
 * the allocations run as one work-item: the fix-up loops are sequential by
 * definition. */

/* Key norms in two deterministic stages. key_norm_partials: one work-group
 * per (sample b, key head j, slice s of `slices` token ranges) sums the
 * squares of k over its tokens and d, into partials [B, G, slices]. The
 * slices exist to give a GPU enough work-groups (src/ops/grouping.c).
 * k rows are `row_stride` elements apart; k is an activation (ACT, half
 * in a program built with -DCLGQA_HALF), its squares summed in float. */
__kernel void key_norm_partials(__global float *partials, const uint partials_off,
                                __global const ACT *k, const uint k_off, const uint tokens,
                                const uint kv_heads, const uint head_dim, const uint row_stride,
                                const uint slices, __local float *scratch) {
    const uint group = get_group_id(0);
    const uint bj = group / slices, s = group - bj * slices;
    const uint b = bj / kv_heads, j = bj - b * kv_heads;
    const uint chunk = (tokens + slices - 1) / slices;
    const uint first = min(s * chunk, tokens), n = min(chunk, tokens - first);
    __global const ACT *kb = k + k_off + ((size_t)b * tokens + first) * row_stride + j * head_dim;
    float sum = 0.0f;
    for (uint e = get_local_id(0); e < n * head_dim; e += get_local_size(0)) {
        const uint p = e / head_dim, c = e - p * head_dim;
        const float x = act_load(kb, (size_t)p * row_stride + c);
        sum += x * x;
    }
    sum = group_sum(scratch, sum);
    if (get_local_id(0) == 0)
        partials[partials_off + group] = sum;
}

/* This work-item's part of key_norms[j] = sum over b of sqrt(sum over s of
 * partials[b, j, s]): samples lid, lid + wg, ..., each in a fixed order. */
static float sample_norms(__global const float *partials, const uint partials_off,
                          const uint batch, const uint kv_heads, const uint slices,
                          const uint j) {
    float total = 0.0f;
    for (uint b = get_local_id(0); b < batch; b += get_local_size(0)) {
        __global const float *row = partials + partials_off + ((size_t)b * kv_heads + j) * slices;
        float squares = 0.0f;
        for (uint s = 0; s < slices; s++)
            squares += row[s];
        total += sqrt(squares);
    }
    return total;
}

/* The second stage: one work-group per key head. */
__kernel void key_norms(__global float *key_norms, const uint key_norms_off,
                        __global const float *partials, const uint partials_off,
                        const uint batch, const uint kv_heads, const uint slices,
                        __local float *scratch) {
    const uint j = get_group_id(0);
    const float total =
        group_sum(scratch, sample_norms(partials, partials_off, batch, kv_heads, slices, j));
    if (get_local_id(0) == 0)
        key_norms[key_norms_off + j] = total;
}

/* kv_map from group_counts: group j serves the next n_j heads in order. */
static void write_kv_map(__global int *kv_map, const uint kv_map_off,
                         __global const int *group_counts, const uint group_counts_off,
                         const uint heads, const uint kv_heads) {
    uint h = 0;
    for (uint j = 0; j < kv_heads; j++)
        for (int i = 0; i < group_counts[group_counts_off + j] && h < heads; i++)
            kv_map[kv_map_off + h++] = (int)j;
}

static void static_split(__global int *group_counts, const uint group_counts_off,
                         const uint heads, const uint kv_heads) {
    for (uint j = 0; j < kv_heads; j++)
        group_counts[group_counts_off + j] = (int)(heads / kv_heads);
}

/* n_j = rint(share_j / sum(share) * H) (rint rounds half to even, as
 * torch.round); returns the sum of the n_j. */
static int round_shares(__global int *group_counts, const uint group_counts_off,
                        const float share_sum, const uint heads, const uint j,
                        const float share) {
    int n = (int)rint(share / share_sum * (float)heads);
    group_counts[group_counts_off + j] = n;
    return n;
}

/* KDGQA: min-max normalised norms, rounded shares, then the deterministic
 * fix-up (decrement the first largest count, increment the first smallest).
 * max == min (or non-finite norms) falls back to the static split. */
static void kdgqa_split(__global const float *key_norms, const uint key_norms_off,
                        __global int *kv_map, const uint kv_map_off,
                        __global int *group_counts, const uint group_counts_off,
                        const uint heads, const uint kv_heads) {
    __global const float *norms = key_norms + key_norms_off;
    __global int *counts = group_counts + group_counts_off;
    float lo = norms[0], hi = norms[0];
    for (uint j = 1; j < kv_heads; j++) {
        lo = fmin(lo, norms[j]);
        hi = fmax(hi, norms[j]);
    }
    float range = hi - lo;
    float r_sum = 0.0f;
    for (uint j = 0; j < kv_heads; j++)
        r_sum += (norms[j] - lo) / range;
    if (!(range > 0.0f) || !isfinite(r_sum)) {
        static_split(group_counts, group_counts_off, heads, kv_heads);
    } else {
        int total = 0;
        for (uint j = 0; j < kv_heads; j++)
            total += round_shares(group_counts, group_counts_off, r_sum, heads, j,
                                  (norms[j] - lo) / range);
        while (total > (int)heads) {
            uint arg = 0;
            for (uint j = 1; j < kv_heads; j++)
                if (counts[j] > counts[arg])
                    arg = j;
            counts[arg]--;
            total--;
        }
        while (total < (int)heads) {
            uint arg = 0;
            for (uint j = 1; j < kv_heads; j++)
                if (counts[j] < counts[arg])
                    arg = j;
            counts[arg]++;
            total++;
        }
    }
    write_kv_map(kv_map, kv_map_off, group_counts, group_counts_off, heads, kv_heads);
}

__kernel void grouping_kdgqa(__global const float *key_norms, const uint key_norms_off,
                             __global int *kv_map, const uint kv_map_off,
                             __global int *group_counts, const uint group_counts_off,
                             const uint heads, const uint kv_heads) {
    if (get_global_id(0) == 0)
        kdgqa_split(key_norms, key_norms_off, kv_map, kv_map_off, group_counts,
                    group_counts_off, heads, kv_heads);
}

/* KDGQA's key norms and allocation in one launch, for when nothing needs the
 * norms in between (no data-parallel all-reduce): one work-group takes the
 * second stage of every key head, then work-item 0, which wrote the norms,
 * allocates from them. The sums run in key_norms' order. */
__kernel void key_norms_kdgqa(__global float *key_norms, const uint key_norms_off,
                              __global const float *partials, const uint partials_off,
                              __global int *kv_map, const uint kv_map_off,
                              __global int *group_counts, const uint group_counts_off,
                              const uint batch, const uint heads, const uint kv_heads,
                              const uint slices, __local float *scratch) {
    for (uint j = 0; j < kv_heads; j++) {
        const float total =
            group_sum(scratch, sample_norms(partials, partials_off, batch, kv_heads, slices, j));
        if (get_local_id(0) == 0)
            key_norms[key_norms_off + j] = total;
    }
    if (get_local_id(0) == 0)
        kdgqa_split(key_norms, key_norms_off, kv_map, kv_map_off, group_counts,
                    group_counts_off, heads, kv_heads);
}

/* Uniform pick in [0, kv_heads) from draw `index` of the Philox stream
 * (seed, stream): bits as ops.h's uniform, (bits >> 8) * 2^-24. */
static uint random_pick(const uint seed_lo, const uint seed_hi, const uint stream_lo,
                        const uint stream_hi, const uint index, const uint kv_heads) {
    philox4x32_ctr_t ctr = {{index / 4, 0, stream_lo, stream_hi}};
    philox4x32_key_t key = {{seed_lo, seed_hi}};
    philox4x32_ctr_t r = philox4x32_R(philox4x32_rounds, ctr, key);
    float u = (float)(r.v[index % 4] >> 8) * (1.0f / 16777216.0f);
    return min((uint)(u * (float)kv_heads), kv_heads - 1);
}

/* DGQA diff (ema = 0) or EMA (ema = 1): shares from the batch-summed key
 * norms m and the cache, rounded, fixed up by random picks (decrement only
 * when positive), then the cache update: evaluation cache = m, training
 * cache = (cache + m) / window. sum(shares) == 0 (or non-finite) falls back
 * to the static split. */
__kernel void grouping_dgqa(__global const float *key_norms, const uint key_norms_off,
                            __global float *cache, const uint cache_off,
                            __global int *kv_map, const uint kv_map_off,
                            __global int *group_counts, const uint group_counts_off,
                            const uint heads, const uint kv_heads, const int ema,
                            const int evaluation, const uint window_size, const uint seed_lo,
                            const uint seed_hi, const uint stream_lo, const uint stream_hi) {
    if (get_global_id(0) != 0)
        return;
    __global const float *m = key_norms + key_norms_off;
    __global float *c = cache + cache_off;
    __global int *counts = group_counts + group_counts_off;
    float s_sum = 0.0f;
    for (uint j = 0; j < kv_heads; j++)
        s_sum += ema ? 0.9f * m[j] + 0.1f * c[j] : fabs(c[j] - m[j]);
    if (!(s_sum > 0.0f) || !isfinite(s_sum)) {
        static_split(group_counts, group_counts_off, heads, kv_heads);
    } else {
        int total = 0;
        for (uint j = 0; j < kv_heads; j++)
            total += round_shares(group_counts, group_counts_off, s_sum, heads, j,
                                  ema ? 0.9f * m[j] + 0.1f * c[j] : fabs(c[j] - m[j]));
        uint draw = 0;
        while (total > (int)heads) {
            uint j = random_pick(seed_lo, seed_hi, stream_lo, stream_hi, draw++, kv_heads);
            if (counts[j] > 0) {
                counts[j]--;
                total--;
            }
        }
        while (total < (int)heads) {
            uint j = random_pick(seed_lo, seed_hi, stream_lo, stream_hi, draw++, kv_heads);
            counts[j]++;
            total++;
        }
    }
    for (uint j = 0; j < kv_heads; j++)
        c[j] = evaluation ? m[j] : (c[j] + m[j]) / (float)window_size;
    write_kv_map(kv_map, kv_map_off, group_counts, group_counts_off, heads, kv_heads);
}
