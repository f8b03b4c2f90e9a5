/* Row-wise softmax, forward and backward: one work-group per row
 * (get_local_size(0) a power of two), each work-item striding over the row,
 * partial results combined by a fixed tree in local memory. */

/* out = exp(in - max) / sum exp(in - max), with one exp per element: the
 * second pass stores exp(in - max) in out and the third scales it. out may
 * alias in: after the first pass's barrier, each work-item reads and writes
 * only its own elements. */
__kernel void softmax_forward(__global float *out, const uint out_off, __global const float *in,
                              const uint in_off, const uint cols, __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *x = in + in_off + row * cols;
    __global float *y = out + out_off + row * cols;

    float row_max = -INFINITY;
    for (uint c = lid; c < cols; c += size)
        row_max = fmax(row_max, x[c]);
    row_max = group_max(scratch, row_max);

    float sum = 0.0f;
    for (uint c = lid; c < cols; c += size) {
        const float e = exp(x[c] - row_max);
        y[c] = e;
        sum += e;
    }
    const float inv_sum = 1.0f / group_sum(scratch, sum);

    for (uint c = lid; c < cols; c += size)
        y[c] *= inv_sum;
}

/* din += out * (dout - sum_c dout * out) */
__kernel void softmax_backward(__global float *din, const uint din_off, __global const float *dout,
                               const uint dout_off, __global const float *out, const uint out_off,
                               const uint cols, __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const uint base = row * cols;

    float dot = 0.0f;
    for (uint c = lid; c < cols; c += size)
        dot += dout[dout_off + base + c] * out[out_off + base + c];
    dot = group_sum(scratch, dot);

    for (uint c = lid; c < cols; c += size) {
        const float y = out[out_off + base + c];
        din[din_off + base + c] += y * (dout[dout_off + base + c] - dot);
    }
}
