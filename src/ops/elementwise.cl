/* Element-wise ops: accumulate, activation storage conversions, bias add,
 * bias + exact GELU (the bias
 * gradient is a column sum: reduce.cl; GELU's backward on GPUs computes its
 * partial sums in the same pass). Each tensor arrives as (buffer, element
 * offset); global sizes are rounded up, so every kernel guards its bounds.
 * Fill and copy are the runtime's (clEnqueueFillBuffer, clEnqueueCopyBuffer). */

__kernel void accumulate(__global float *dst, const uint dst_off, __global const float *src,
                         const uint src_off, const uint n) {
    const uint i = get_global_id(0);
    if (i < n)
        dst[dst_off + i] += src[src_off + i];
}

/* An activation to float and back (the GEMMs read and write float: the
 * widened copy of a half operand, the rounding of a GEMM's output into its
 * half tensor; docs/design.md, "Mixed precision"). In the half program
 * (-DCLGQA_HALF) they widen exactly and round to nearest even; in the
 * float one they copy. */
__kernel void activations_to_float(__global float *dst, const uint dst_off,
                                   __global const ACT *src, const uint src_off, const uint n) {
    const uint i = get_global_id(0);
    if (i < n)
        dst[dst_off + i] = act_load(src, src_off + i);
}

__kernel void activations_from_float(__global ACT *dst, const uint dst_off,
                                     __global const float *src, const uint src_off,
                                     const uint n) {
    const uint i = get_global_id(0);
    if (i < n)
        act_store(src[src_off + i], dst, dst_off + i);
}

/* out[r, c] = in[r, c] * scales[r / rows_per_scale]; work-item (c, r). */
__kernel void scale_rows(__global float *out, const uint out_off, __global const float *in,
                         const uint in_off, __global const float *scales, const uint scales_off,
                         const uint rows_per_scale, const uint rows, const uint cols) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows)
        out[out_off + r * cols + c] =
            in[in_off + r * cols + c] * scales[scales_off + r / rows_per_scale];
}

/* x[r, c] += bias[c]; work-item (c, r), so no index division. */
__kernel void bias_add(__global float *x, const uint x_off, __global const float *bias,
                       const uint bias_off, const uint rows, const uint cols) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows)
        x[x_off + r * cols + c] += bias[bias_off + c];
}

/* GELU, exact form x * Phi(x). 0.5 * erfc(-x / sqrt 2) equals
 * 0.5 * (1 + erf(x / sqrt 2)) but keeps full relative precision for
 * negative x, where 1 + erf cancels. */
#define GELU_SQRT1_2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

/* erfc through one exp (Numerical Recipes' erfcc, a Chebyshev fit with
 * relative error < 1.2e-7 for every x). Built-in erfc is a slow scalar
 * routine on PoCL: 50 ms against 2.3 ms for 557k elements on 2 cores, which
 * made GELU a third of a training step. */
static float gelu_erfc(const float x) {
    const float z = fabs(x);
    const float t = 1.0f / (1.0f + 0.5f * z);
    const float poly =
        -1.26551223f +
        t * (1.00002368f +
             t * (0.37409196f +
                  t * (0.09678418f +
                       t * (-0.18628806f +
                            t * (0.27886807f +
                                 t * (-1.13520398f +
                                      t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    const float r = t * exp(-z * z + poly);
    return x >= 0.0f ? r : 2.0f - r;
}

/* out[r, c] = gelu(in[r, c] + bias[c]): fc1's bias and the activation in
 * one pass. Work-item (c, r), as bias_add. out may alias in. in and out
 * are activations (ACT: half under -DCLGQA_HALF, src/ops/storage.h). */
__kernel void gelu_bias_forward(__global ACT *out, const uint out_off, __global const ACT *in,
                                const uint in_off, __global const float *bias,
                                const uint bias_off, const uint rows, const uint cols) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows) {
        const float x = act_load(in, in_off + r * cols + c) + bias[bias_off + c];
        act_store(x * 0.5f * gelu_erfc(-x * GELU_SQRT1_2), out, out_off + r * cols + c);
    }
}

/* gelu'(x) = Phi(x) + x * phi(x). */
static float gelu_grad(const float x) {
    const float cdf = 0.5f * gelu_erfc(-x * GELU_SQRT1_2);
    const float pdf = GELU_INV_SQRT_2PI * exp(-0.5f * x * x);
    return cdf + x * pdf;
}

/* din[r, c] = dout[r, c] * gelu'(in[r, c] + bias[c]), work-item (c, r) as
 * bias_add: CPU devices, where PoCL vectorises the math across neighbouring
 * work-items (in the kernel below each work-item loops over rows, which
 * made GELU's backward several times slower on PoCL); the bias gradient
 * is a column sum after it. Stores din (the one gradient of fc1's output,
 * so nothing needs zeroing first); din may alias dout. in, the forward's,
 * is an activation (ACT); the gradients are float. */
__kernel void gelu_bias_backward(__global float *din, const uint din_off,
                                 __global const float *dout, const uint dout_off,
                                 __global const ACT *in, const uint in_off,
                                 __global const float *bias, const uint bias_off, const uint rows,
                                 const uint cols) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows) {
        const uint i = r * cols + c;
        din[din_off + i] =
            dout[dout_off + i] * gelu_grad(act_load(in, in_off + i) + bias[bias_off + c]);
    }
}

/* The same with the column sums of din (fc1's bias gradient) in the same
 * pass, for GPUs, shaped as reduce.cl's column_sums: group
 * (tile, chunk) of (columns x slices) work-items, work-item (c, s) walks
 * its block of the chunk's rows, the slices combine by a fixed tree, and
 * the chunk's sum is stored to partials[chunk * cols + c]. */
__kernel void gelu_bias_backward_sums(__global float *din, const uint din_off,
                                      __global float *partials, const uint partials_off,
                                      __global const float *dout, const uint dout_off,
                                      __global const ACT *in, const uint in_off,
                                      __global const float *bias, const uint bias_off,
                                      const uint rows, const uint cols, const uint chunk_rows,
                                      __local float *partial) {
    const uint c = get_global_id(0), chunk = get_group_id(1);
    uint begin, end;
    column_sum_rows(rows, chunk_rows, &begin, &end);
    float sum = 0.0f;
    if (c < cols) {
        const float b = bias[bias_off + c];
        for (uint r = begin; r < end; r++) {
            const uint i = r * cols + c;
            const float d = dout[dout_off + i] * gelu_grad(act_load(in, in_off + i) + b);
            din[din_off + i] = d;
            sum += d;
        }
    }
    sum = column_slices_sum(partial, sum);
    if (get_local_id(1) == 0 && c < cols)
        partials[partials_off + chunk * cols + c] = sum;
}
