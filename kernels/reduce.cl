/* Deterministic sum and sum of squares in two stages: `groups` work-groups
 * each reduce a fixed share of the input to one partial sum, then one
 * work-group reduces the partial sums. Every step has a fixed order
 * (per-work-item loops, then a fixed tree in local memory), so the result
 * is the same on every run. */

/* out[group] = sum over this group's share of x (of x^2 when `square`).
 * Work-item k of all T sums elements k, k + T, k + 2T, ... (`contiguous` 0:
 * neighbouring work-items read neighbouring elements, as GPUs want) or the
 * k-th contiguous block of ceil(n / T) elements (`contiguous` 1: each CPU
 * thread streams through memory). */
__kernel void reduce_sum(__global float *out, const uint out_off, __global const float *x,
                         const uint x_off, const uint n, const uint square,
                         const uint contiguous, __local float *scratch) {
    const uint lid = get_local_id(0);
    const uint k = get_global_id(0), items = get_global_size(0);
    const uint block = contiguous ? (n + items - 1) / items : 1;
    const uint begin = contiguous ? k * block : k;
    const uint end = contiguous ? min(n, begin + block) : n;
    const uint step = contiguous ? 1 : items;
    float sum = 0.0f;
    for (uint i = begin; i < end; i += step) {
        const float v = x[x_off + i];
        sum += square ? v * v : v;
    }
    sum = group_sum(scratch, sum);
    if (lid == 0)
        out[out_off + get_group_id(0)] = sum;
}
