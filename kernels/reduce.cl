/* Deterministic sum and sum of squares in two stages: `groups` work-groups
 * each reduce a fixed, interleaved share of the input to one partial sum,
 * then one work-group reduces the partial sums. Every step has a fixed order
 * (per-work-item loops, then a fixed tree in local memory), so the result
 * is the same on every run. */

float group_sum(__local float *scratch, float value) {
    const uint lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint stride = get_local_size(0) / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            scratch[lid] += scratch[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

/* out[group] = sum over this group's share of x (of x^2 when `square`). */
__kernel void reduce_sum(__global float *out, const uint out_off, __global const float *x,
                         const uint x_off, const uint n, const uint square,
                         __local float *scratch) {
    const uint lid = get_local_id(0), size = get_local_size(0);
    const uint stride = get_num_groups(0) * size;
    float sum = 0.0f;
    for (uint i = get_group_id(0) * size + lid; i < n; i += stride) {
        const float v = x[x_off + i];
        sum += square ? v * v : v;
    }
    sum = group_sum(scratch, sum);
    if (lid == 0)
        out[out_off + get_group_id(0)] = sum;
}
