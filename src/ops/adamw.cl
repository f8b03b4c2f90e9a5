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
 * the whole flat buffer (a chunk's first).
 *
 * With the loss scaler (use_scaler, precision 16-mixed), PyTorch's
 * GradScaler: the gradients arrive multiplied by the loss scale, and
 * - a step whose gradients hold an inf or a NaN (found_inf, set by
 *   grad_check) changes nothing: no decay, no moment, no parameter;
 * - otherwise g is first divided by the scale (a power of 2: exact), and
 *   Adam's step count t is `step` less the steps skipped so far. While none
 *   was skipped t = step and the host's scalars serve; after a skip the
 *   bias corrections of t are computed here in float (PyTorch computes them
 *   in double: they differ by a few ulp).
 * scaler[] is the scaler's state, SCALER_* below (ops.h's clgqa_scaler_field). */
#define SCALER_SCALE 0     /* the loss scale, a power of 2 */
#define SCALER_GROWTH 1    /* clean steps since the scale last changed */
#define SCALER_FOUND_INF 2 /* 1: this step's gradients hold an inf or a NaN */
#define SCALER_SKIPPED 3   /* steps skipped so far (Adam's t = step - skipped) */

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
                         const float one_minus_beta2, const float eps, float step_size,
                         float bias_correction2_sqrt, __global const float *grad_scale,
                         const uint grad_scale_off, const uint use_scale,
                         __global const float *scaler, const uint scaler_off,
                         const uint use_scaler, const float lr, const uint step,
                         __global const uint *decay_edges, const uint decay_edges_off,
                         const uint edge_count, const uint first) {
    const uint i = get_global_id(0);
    if (i >= n)
        return;
    float g = grads[grads_off + i];
    if (use_scaler) {
        if (scaler[scaler_off + SCALER_FOUND_INF] != 0.0f)
            return;
        g *= 1.0f / scaler[scaler_off + SCALER_SCALE];
        const uint skipped = (uint)scaler[scaler_off + SCALER_SKIPPED];
        if (skipped) {
            /* 1 - beta^t as -expm1(t log1p(-(1 - beta))), from the host's
             * 1 - beta: no cancellation (1 - pown(0.999f, t) would lose 5
             * digits). */
            const float t = (float)(step - skipped);
            step_size = lr / -expm1(t * log1p(-one_minus_beta1));
            bias_correction2_sqrt = sqrt(-expm1(t * log1p(-one_minus_beta2)));
        }
    }
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
 * torch.nn.utils.clip_grad_norm_. One work-item. (With the loss scaler,
 * sum_squares is the unscaled gradients': reduce.cl divides first.) */
__kernel void clip_factor(__global float *grad_scale, const uint grad_scale_off,
                          __global const float *sum_squares, const uint sum_squares_off,
                          const float max_norm) {
    if (get_global_id(0) == 0) {
        const float coef = max_norm / (sqrt(sum_squares[sum_squares_off]) + 1e-6f);
        grad_scale[grad_scale_off] = fmin(coef, 1.0f);
    }
}

/* found_inf: scaler[SCALER_FOUND_INF] = 1 where a gradient is an inf or a
 * NaN (PyTorch's _amp_foreach_non_finite_check_and_unscale_, without the
 * unscale: adamw_step divides). The host sets the flag to 0 first; every
 * work-item that writes writes the same 1, so the order does not matter. */
__kernel void grad_check(__global const float *grads, const uint grads_off, const uint n,
                         __global float *scaler, const uint scaler_off) {
    const uint i = get_global_id(0);
    if (i < n && !isfinite(grads[grads_off + i]))
        scaler[scaler_off + SCALER_FOUND_INF] = 1.0f;
}

/* After the step: PyTorch's _amp_update_scale_. An inf or NaN halves the
 * scale and restarts the count of clean steps (and counts a skipped step);
 * `growth_interval` clean steps in a row double it, unless the double would
 * be an inf. One work-item. */
__kernel void loss_scale_update(__global float *scaler, const uint scaler_off,
                                const uint growth_interval) {
    if (get_global_id(0) != 0)
        return;
    __global float *s = scaler + scaler_off;
    if (s[SCALER_FOUND_INF] != 0.0f) {
        s[SCALER_SCALE] *= 0.5f;
        s[SCALER_GROWTH] = 0.0f;
        s[SCALER_SKIPPED] += 1.0f;
    } else if ((uint)s[SCALER_GROWTH] + 1 == growth_interval) {
        const float doubled = s[SCALER_SCALE] * 2.0f;
        if (isfinite(doubled))
            s[SCALER_SCALE] = doubled;
        s[SCALER_GROWTH] = 0.0f;
    } else {
        s[SCALER_GROWTH] += 1.0f;
    }
}
