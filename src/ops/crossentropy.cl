/* Cross-entropy from logits, forward and backward.
 *
 * The forward runs one work-group per row (get_local_size(0) a power of
 * two): max and argmax, then the sum of exponentials, each combined by a
 * fixed tree in local memory. A label outside [0, classes) gives a NaN loss
 * and correct = 0, so a bad label cannot pass unnoticed. Soft targets (label
 * smoothing, Mixup/CutMix) are built on the device by soft_targets and
 * enter the loss and its gradient; the accuracies always compare with the
 * image's own label. */

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

/* probs = softmax(logits). The loss is against soft targets when the
 * launcher passes them (use_targets): -sum_c t[c] log probs[c] = log(sum) *
 * sum_c t[c] - sum_c t[c] (x[c] - max), else against the label:
 * log(sum exp(x - max)) - (x[label] - max), which is -log(probs[label])
 * without rounding probs first. correct and top5 always compare with the
 * label: top5 = 1 when fewer than 5 classes rank above it (a class ranks
 * above it with a larger logit, or an equal one at a lower index, as
 * argmax's ties). */
__kernel void crossentropy_forward(__global float *losses, const uint losses_off,
                                   __global float *correct, const uint correct_off,
                                   __global float *top5, const uint top5_off, const uint use_top5,
                                   __global float *probs, const uint probs_off,
                                   __global const float *logits, const uint logits_off,
                                   __global const int *labels, const uint labels_off,
                                   __global const float *targets, const uint targets_off,
                                   const uint use_targets, const uint classes,
                                   __local float *values, __local uint *indices) {
    const uint row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float *x = logits + logits_off + row * classes;
    __global const float *t = targets + targets_off + row * classes;
    __global float *p = probs + probs_off + row * classes;
    const int label = labels[labels_off + row];
    const int valid = label >= 0 && (uint)label < classes;

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

    /* One exp per element: probs holds exp(x - max) until scaled. The soft
     * targets' two sums and the label's rank are taken in the same pass. */
    float sum = 0.0f, target_sum = 0.0f, target_dot = 0.0f, above = 0.0f;
    const float label_logit = valid ? x[label] : 0.0f;
    for (uint c = lid; c < classes; c += size) {
        const float shifted = x[c] - best;
        const float e = exp(shifted);
        p[c] = e;
        sum += e;
        if (use_targets) {
            target_sum += t[c];
            target_dot += t[c] * shifted;
        }
        if (x[c] > label_logit || (x[c] == label_logit && (int)c < label))
            above += 1.0f;
    }
    sum = group_sum(values, sum);
    if (use_targets) {
        target_sum = group_sum(values, target_sum);
        target_dot = group_sum(values, target_dot);
    }
    if (use_top5)
        above = group_sum(values, above);
    const float inv_sum = 1.0f / sum;
    for (uint c = lid; c < classes; c += size)
        p[c] *= inv_sum;

    if (lid == 0) {
        const float log_sum = log(sum);
        const float loss = use_targets ? log_sum * target_sum - target_dot
                                       : log_sum - (label_logit - best);
        losses[losses_off + row] = valid ? loss : NAN;
        correct[correct_off + row] = valid && (uint)label == best_index ? 1.0f : 0.0f;
        if (use_top5)
            top5[top5_off + row] = valid && above < 5.0f ? 1.0f : 0.0f;
    }
}

/* dlogits[r, c] += dloss * (probs[r, c] - target[r, c]), element-wise; the
 * target is the soft targets' when use_targets, else onehot(label[r]). */
__kernel void crossentropy_backward(__global float *dlogits, const uint dlogits_off,
                                    __global const float *probs, const uint probs_off,
                                    __global const int *labels, const uint labels_off,
                                    __global const float *targets, const uint targets_off,
                                    const uint use_targets, const uint rows, const uint classes,
                                    const float dloss, __global const float *loss_scale,
                                    const uint loss_scale_off, const uint use_loss_scale) {
    const uint i = get_global_id(0);
    if (i < rows * classes) {
        /* The loss scale is a power of 2: the product is exact. */
        const float d = use_loss_scale ? dloss * loss_scale[loss_scale_off] : dloss;
        /* c by subtraction, not i % classes: Oclgrind cannot check the
         * `freeze` that LLVM emits when it pairs a division with a remainder. */
        const uint row = i / classes, c = i - row * classes;
        const float target = use_targets ? targets[targets_off + i]
                                         : labels[labels_off + row] == (int)c ? 1.0f : 0.0f;
        dlogits[dlogits_off + i] += d * (probs[probs_off + i] - target);
    }
}

/* timm's mixup_target over a batch of `rows` whose partner of row r is row
 * rows - 1 - r (x.flip(0)): targets[r] = own_weight * y(label[r]) +
 * partner_weight * y(label[partner]), y(k) = on_value at class k and
 * off_value elsewhere (label smoothing: off = s / classes, on = 1 - s +
 * off). A label outside [0, classes) gives a row of NaN, so it cannot pass
 * unnoticed. */
__kernel void soft_targets(__global float *targets, const uint targets_off,
                           __global const int *labels, const uint labels_off, const uint rows,
                           const uint classes, const float on_value, const float off_value,
                           const float own_weight, const float partner_weight) {
    const uint i = get_global_id(0);
    if (i >= rows * classes)
        return;
    const uint row = i / classes, c = i - row * classes;
    const int own = labels[labels_off + row], partner = labels[labels_off + rows - 1 - row];
    const int valid = own >= 0 && (uint)own < classes && partner >= 0 && (uint)partner < classes;
    const float y_own = own == (int)c ? on_value : off_value;
    const float y_partner = partner == (int)c ? on_value : off_value;
    targets[targets_off + i] = valid ? y_own * own_weight + y_partner * partner_weight : NAN;
}
