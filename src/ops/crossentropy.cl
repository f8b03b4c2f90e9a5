/* Cross-entropy from logits, forward and backward.
 *
 * The forward runs one work-group per row (get_local_size(0) a power of
 * two): max and argmax, then the sum of exponentials, each combined by a
 * fixed tree in local memory. A label outside [0, classes) gives a NaN loss
 * and correct = 0, so a bad label cannot pass unnoticed. */

/* (value, index) of the row maximum over the work-group, the lowest index
 * winning ties (as torch.argmax); NaN values never win. */
void group_argmax(__local float *values, __local uint *indices, float *value, uint *index) {
    const uint lid = get_local_id(0);
    values[lid] = *value;
    indices[lid] = *index;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint stride = get_local_size(0) / 2; stride > 0; stride /= 2) {
        if (lid < stride) {
            const float other = values[lid + stride];
            const uint other_index = indices[lid + stride];
            if (other > values[lid] || (other == values[lid] && other_index < indices[lid])) {
                values[lid] = other;
                indices[lid] = other_index;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *value = values[0];
    *index = indices[0];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* probs = softmax(logits); losses = log(sum exp(x - max)) - (x[label] - max),
 * which is -log(probs[label]) without rounding probs first. */
__kernel void crossentropy_forward(__global float *losses, const uint losses_off,
                                   __global float *correct, const uint correct_off,
                                   __global float *probs, const uint probs_off,
                                   __global const float *logits, const uint logits_off,
                                   __global const int *labels, const uint labels_off,
                                   const uint classes, __local float *values,
                                   __local uint *indices) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *x = logits + logits_off + row * classes;
    __global float *p = probs + probs_off + row * classes;

    /* Each work-item scans its indices in increasing order, keeping the
     * first of equal maxima. */
    float best = -INFINITY;
    uint best_index = UINT_MAX;
    for (uint c = lid; c < classes; c += size)
        if (x[c] > best || best_index == UINT_MAX) {
            best = x[c];
            best_index = c;
        }
    group_argmax(values, indices, &best, &best_index);

    /* One exp per element: probs holds exp(x - max) until scaled. */
    float sum = 0.0f;
    for (uint c = lid; c < classes; c += size) {
        const float e = exp(x[c] - best);
        p[c] = e;
        sum += e;
    }
    sum = group_sum(values, sum);
    const float inv_sum = 1.0f / sum;
    for (uint c = lid; c < classes; c += size)
        p[c] *= inv_sum;

    if (lid == 0) {
        const int label = labels[labels_off + row];
        const int valid = label >= 0 && (uint)label < classes;
        losses[losses_off + row] = valid ? log(sum) - (x[label] - best) : NAN;
        correct[correct_off + row] = valid && (uint)label == best_index ? 1.0f : 0.0f;
    }
}

/* dlogits[r, c] += dloss * (probs[r, c] - (c == label[r])), element-wise. */
__kernel void crossentropy_backward(__global float *dlogits, const uint dlogits_off,
                                    __global const float *probs, const uint probs_off,
                                    __global const int *labels, const uint labels_off,
                                    const uint rows, const uint classes, const float dloss,
                                    __global const float *loss_scale, const uint loss_scale_off,
                                    const uint use_loss_scale) {
    const uint i = get_global_id(0);
    if (i < rows * classes) {
        /* The loss scale is a power of 2: the product is exact. */
        const float d = use_loss_scale ? dloss * loss_scale[loss_scale_off] : dloss;
        /* c by subtraction, not i % classes: Oclgrind cannot check the
         * `freeze` that LLVM emits when it pairs a division with a remainder. */
        const uint row = i / classes, c = i - row * classes;
        const float target = labels[labels_off + row] == (int)c ? 1.0f : 0.0f;
        dlogits[dlogits_off + i] += d * (probs[probs_off + i] - target);
    }
}
