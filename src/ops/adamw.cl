/* One torch.optim.AdamW step over a flat parameter buffer, in the order of
 * PyTorch's single-tensor implementation:
 *   p *= 1 - lr * wd
 *   m = lerp(m, g, 1 - beta1)            (m + (1 - beta1) (g - m))
 *   v = v * beta2 + (1 - beta2) g^2
 *   p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
 * with 1 - beta1, 1 - beta2, 1 - lr * wd, step_size = lr / (1 - beta1^t)
 * and bias_correction2_sqrt = sqrt(1 - beta2^t) computed on the host in
 * double, as Python does, and rounded once to float.
 * g = grad * grad_scale[0] when use_scale (clipping by global norm without a
 * host read), else grad. Decay skips the elements in the no-decay ranges
 * of `decay_edges` (see in_no_decay_range); `first` is element 0's index in
 * the whole flat buffer (a chunk's first). */

/* Whether flat element `index` lies in one of the ranges [edges[2k],
 * edges[2k + 1]) (sorted, disjoint): the count of edges at or below it is
 * odd. A binary search over a table of a few entries per block, which
 * stays in cache. */
static uint in_no_decay_range(__global const uint *edges, const uint count, const uint index) {
    uint lo = 0, hi = count; /* the first edge above index */
    while (lo < hi) {
        const uint mid = (lo + hi) / 2;
        if (edges[mid] <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo & 1;
}

__kernel void adamw_step(__global float *params, const uint params_off,
                         __global const float *grads, const uint grads_off, __global float *m,
                         const uint m_off, __global float *v, const uint v_off, const uint n,
                         const float decay, const float one_minus_beta1, const float beta2,
                         const float one_minus_beta2, const float eps, const float step_size,
                         const float bias_correction2_sqrt, __global const float *grad_scale,
                         const uint grad_scale_off, const uint use_scale,
                         __global const uint *decay_edges, const uint decay_edges_off,
                         const uint edge_count, const uint first) {
    const uint i = get_global_id(0);
    if (i >= n)
        return;
    float g = grads[grads_off + i];
    if (use_scale)
        g *= grad_scale[grad_scale_off];
    float p = params[params_off + i];
    if (!in_no_decay_range(decay_edges + decay_edges_off, edge_count, first + i))
        p *= decay;
    float m_i = m[m_off + i];
    m_i += one_minus_beta1 * (g - m_i);
    const float v_i = v[v_off + i] * beta2 + one_minus_beta2 * g * g;
    p -= step_size * (m_i / (sqrt(v_i) / bias_correction2_sqrt + eps));
    params[params_off + i] = p;
    m[m_off + i] = m_i;
    v[v_off + i] = v_i;
}

/* The weights' exponential moving average, as timm's ModelEmaV3:
 * ema.lerp_(params, weight) with weight = 1 - decay, in torch.lerp's two
 * forms (the second keeps precision for weights of 0.5 and more). */
__kernel void ema_update(__global float *ema, const uint ema_off, __global const float *params,
                         const uint params_off, const uint n, const float weight) {
    const uint i = get_global_id(0);
    if (i >= n)
        return;
    const float start = ema[ema_off + i], end = params[params_off + i];
    ema[ema_off + i] = weight < 0.5f ? start + weight * (end - start)
                                     : end - (end - start) * (1.0f - weight);
}

/* grad_scale[0] = min(1, max_norm / (sqrt(sum_squares[0]) + 1e-6)), as
 * torch.nn.utils.clip_grad_norm_. One work-item. */
__kernel void clip_factor(__global float *grad_scale, const uint grad_scale_off,
                          __global const float *sum_squares, const uint sum_squares_off,
                          const float max_norm) {
    if (get_global_id(0) == 0) {
        const float coef = max_norm / (sqrt(sum_squares[sum_squares_off]) + 1e-6f);
        grad_scale[grad_scale_off] = fmin(coef, 1.0f);
    }
}
