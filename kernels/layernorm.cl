/* LayerNorm over the last dimension, forward and backward.
 *
 * Row kernels run one work-group per row (get_local_size(0) a power of two);
 * each work-item strides over the row and partial results are combined by a
 * fixed tree in local memory, so results never depend on scheduling. */

/* Rows are read as float4 where every row starts 16-byte aligned (the
 * launcher passes quads = cols / 4 then, 0 otherwise): work-item k takes
 * quads k, k + size, ... and then the scalar elements from 4 * quads on.
 * Sums add a quad's lanes one by one in a fixed order, so they stay
 * deterministic; they use scalar arithmetic on the loaded lanes because
 * Oclgrind 21.10 crashes on reductions of vector arithmetic. */
static float quad_sum(const float4 v) { return (v.x + v.y) + (v.z + v.w); }
static float squared_deviation(const float x, const float mean) {
    const float d = x - mean;
    return d * d;
}

/* out = (in - mean) * rstd * weight + bias, with the variance from a second
 * pass over (in - mean)^2 (no cancellation as with E[x^2] - mean^2). */
__kernel void layernorm_forward(__global float *out, const uint out_off, __global float *mean,
                                const uint mean_off, __global float *rstd, const uint rstd_off,
                                __global const float *in, const uint in_off,
                                __global const float *weight, const uint weight_off,
                                __global const float *bias, const uint bias_off, const uint cols,
                                const uint quads, const float eps, __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *x = in + in_off + row * cols;
    __global const float *w = weight + weight_off, *b = bias + bias_off;
    __global float *y = out + out_off + row * cols;
    __global const float4 *x4 = (__global const float4 *)x, *w4 = (__global const float4 *)w,
                          *b4 = (__global const float4 *)b;
    __global float4 *y4 = (__global float4 *)y;

    float sum = 0.0f;
    for (uint q = lid; q < quads; q += size)
        sum += quad_sum(x4[q]);
    for (uint c = 4 * quads + lid; c < cols; c += size)
        sum += x[c];
    const float row_mean = group_sum(scratch, sum) / cols;

    float squares = 0.0f;
    for (uint q = lid; q < quads; q += size) {
        const float4 v = x4[q];
        squares += (squared_deviation(v.x, row_mean) + squared_deviation(v.y, row_mean)) +
                   (squared_deviation(v.z, row_mean) + squared_deviation(v.w, row_mean));
    }
    for (uint c = 4 * quads + lid; c < cols; c += size)
        squares += squared_deviation(x[c], row_mean);
    const float row_rstd = rsqrt(group_sum(scratch, squares) / cols + eps);

    /* `out` may alias `in`: every read of the row happened before the
     * barriers in group_sum, except this pass's own element. */
    for (uint q = lid; q < quads; q += size)
        y4[q] = (x4[q] - row_mean) * row_rstd * w4[q] + b4[q];
    for (uint c = 4 * quads + lid; c < cols; c += size)
        y[c] = (x[c] - row_mean) * row_rstd * w[c] + b[c];
    if (lid == 0) {
        mean[mean_off + row] = row_mean;
        rstd[rstd_off + row] = row_rstd;
    }
}

/* g = dout * weight and g * xhat, xhat = (in - mean) * rstd, of one element,
 * added to the row's two sums. */
static void add_g_terms(const float dy, const float w, const float x, const float mean,
                        const float rstd, float *g_sum, float *g_xhat_sum) {
    const float g = dy * w;
    *g_sum += g;
    *g_xhat_sum += g * ((x - mean) * rstd);
}

/* din += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight,
 * xhat = (in - mean) * rstd. One work-group per row, float4 as above. */
__kernel void layernorm_backward_input(__global float *din, const uint din_off,
                                       __global const float *dout, const uint dout_off,
                                       __global const float *in, const uint in_off,
                                       __global const float *mean, const uint mean_off,
                                       __global const float *rstd, const uint rstd_off,
                                       __global const float *weight, const uint weight_off,
                                       const uint cols, const uint quads,
                                       __local float *scratch) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *dy = dout + dout_off + row * cols, *x = in + in_off + row * cols;
    __global const float *w = weight + weight_off;
    __global float *dx = din + din_off + row * cols;
    __global const float4 *dy4 = (__global const float4 *)dy, *x4 = (__global const float4 *)x,
                          *w4 = (__global const float4 *)w;
    __global float4 *dx4 = (__global float4 *)dx;
    const float row_mean = mean[mean_off + row], row_rstd = rstd[rstd_off + row];

    float g_sum = 0.0f, g_xhat_sum = 0.0f;
    for (uint q = lid; q < quads; q += size) {
        const float4 dyq = dy4[q], wq = w4[q], xq = x4[q];
        add_g_terms(dyq.x, wq.x, xq.x, row_mean, row_rstd, &g_sum, &g_xhat_sum);
        add_g_terms(dyq.y, wq.y, xq.y, row_mean, row_rstd, &g_sum, &g_xhat_sum);
        add_g_terms(dyq.z, wq.z, xq.z, row_mean, row_rstd, &g_sum, &g_xhat_sum);
        add_g_terms(dyq.w, wq.w, xq.w, row_mean, row_rstd, &g_sum, &g_xhat_sum);
    }
    for (uint c = 4 * quads + lid; c < cols; c += size)
        add_g_terms(dy[c], w[c], x[c], row_mean, row_rstd, &g_sum, &g_xhat_sum);
    const float g_mean = group_sum(scratch, g_sum) / cols;
    const float g_xhat_mean = group_sum(scratch, g_xhat_sum) / cols;

    for (uint q = lid; q < quads; q += size) {
        const float4 g = dy4[q] * w4[q];
        const float4 xhat = (x4[q] - row_mean) * row_rstd;
        dx4[q] += row_rstd * (g - g_mean - xhat * g_xhat_mean);
    }
    for (uint c = 4 * quads + lid; c < cols; c += size) {
        const float g = dy[c] * w[c];
        const float xhat = (x[c] - row_mean) * row_rstd;
        dx[c] += row_rstd * (g - g_mean - xhat * g_xhat_mean);
    }
}

/* dweight[c] += sum_r dout[r, c] * xhat[r, c]; dbias[c] += sum_r dout[r, c].
 * The column sums of reduce.cl's column_sums, two at once: group (tile,
 * chunk) sums the rows of its chunk, each work-item a fixed block of rows,
 * the blocks combined by a fixed tree. The sums go to dweight[chunk * stride
 * + c] and dbias[chunk * stride + c], added when `accumulate` (one chunk),
 * stored otherwise (partials for column_sums_finish). */
__kernel void layernorm_backward_params(__global float *dweight, const uint dweight_off,
                                        __global float *dbias, const uint dbias_off,
                                        const uint stride, const uint accumulate,
                                        __global const float *dout, const uint dout_off,
                                        __global const float *in, const uint in_off,
                                        __global const float *mean, const uint mean_off,
                                        __global const float *rstd, const uint rstd_off,
                                        const uint rows, const uint cols, const uint chunk_rows,
                                        __local float *dweight_part, __local float *dbias_part) {
    const uint c = get_global_id(0), chunk = get_group_id(1);
    const uint lc = get_local_id(0), s = get_local_id(1);
    const uint columns = get_local_size(0), slices = get_local_size(1);
    uint begin, end;
    column_sum_rows(rows, chunk_rows, &begin, &end);
    float dw = 0.0f, db = 0.0f;
    if (c < cols)
        for (uint r = begin; r < end; r++) {
            const float dy = dout[dout_off + r * cols + c];
            const float xhat = (in[in_off + r * cols + c] - mean[mean_off + r]) * rstd[rstd_off + r];
            dw += dy * xhat;
            db += dy;
        }
    dweight_part[s * columns + lc] = dw;
    dbias_part[s * columns + lc] = db;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint step = slices / 2; step > 0; step /= 2) {
        if (s < step) {
            dweight_part[s * columns + lc] += dweight_part[(s + step) * columns + lc];
            dbias_part[s * columns + lc] += dbias_part[(s + step) * columns + lc];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (s == 0 && c < cols) {
        __global float *w = dweight + dweight_off + chunk * stride + c;
        __global float *b = dbias + dbias_off + chunk * stride + c;
        *w = accumulate ? *w + dweight_part[lc] : dweight_part[lc];
        *b = accumulate ? *b + dbias_part[lc] : dbias_part[lc];
    }
}
