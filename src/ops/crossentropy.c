/* Launchers for crossentropy.cl. */
#include "ops.h"
#include "op_args.h"

#define FAMILY "crossentropy"

clgqa_status clgqa_crossentropy_forward(clgqa_runtime *rt, clgqa_view losses, clgqa_view correct,
                                        clgqa_view top5, clgqa_view probs, clgqa_view logits,
                                        clgqa_view labels, clgqa_view targets, size_t rows,
                                        size_t classes) {
    static const char op[] = "clgqa_crossentropy_forward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, classes, &n));
    if (rows == 0)
        return CLGQA_OK;
    if (classes == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: there must be at least one class", op);
    if (classes > INT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %zu classes exceed int labels", op, classes);
    CLGQA_TRY(clgqa_check_view(op, "losses", losses, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "correct", correct, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "probs", probs, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "logits", logits, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "labels", labels, rows, sizeof(cl_int)));
    cl_uint use_top5 = top5.mem != NULL, use_targets = targets.mem != NULL;
    if (use_top5)
        CLGQA_TRY(clgqa_check_view(op, "top5", top5, rows, sizeof(float)));
    else
        top5 = correct; /* a valid buffer the kernel never writes */
    if (use_targets)
        CLGQA_TRY(clgqa_check_view(op, "targets", targets, n, sizeof(float)));
    else
        targets = logits; /* a valid buffer the kernel never reads */
    /* The kernel reads the logits (and targets) after writing probabilities. */
    if (clgqa_views_overlap(probs, sizeof(float), logits, sizeof(float), n))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: probs must not overlap logits", op);
    if (use_targets && clgqa_views_overlap(probs, sizeof(float), targets, sizeof(float), n))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: probs must not overlap targets", op);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "crossentropy_forward", &k));
    size_t local = clgqa_row_group_size(rt, k, classes);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, losses);
    kernel_arg_view(&args, correct);
    kernel_arg_view(&args, top5);
    KERNEL_ARG(&args, use_top5);
    kernel_arg_view(&args, probs);
    kernel_arg_view(&args, logits);
    kernel_arg_view(&args, labels);
    kernel_arg_view(&args, targets);
    KERNEL_ARG(&args, use_targets);
    kernel_arg_uint(&args, classes);
    kernel_arg_local(&args, local * sizeof(cl_float));
    kernel_arg_local(&args, local * sizeof(cl_uint));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}

clgqa_status clgqa_crossentropy_backward(clgqa_runtime *rt, clgqa_view dlogits, clgqa_view probs,
                                         clgqa_view labels, clgqa_view targets, size_t rows,
                                         size_t classes, float dloss, clgqa_view loss_scale) {
    static const char op[] = "clgqa_crossentropy_backward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, classes, &n));
    if (n == 0)
        return CLGQA_OK;
    if (classes > INT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %zu classes exceed int labels", op, classes);
    CLGQA_TRY(clgqa_check_view(op, "dlogits", dlogits, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "probs", probs, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "labels", labels, rows, sizeof(cl_int)));
    cl_uint use_targets = targets.mem != NULL;
    if (use_targets)
        CLGQA_TRY(clgqa_check_view(op, "targets", targets, n, sizeof(float)));
    else
        targets = probs; /* a valid buffer the kernel never reads */
    cl_uint use_loss_scale = loss_scale.mem != NULL;
    if (use_loss_scale)
        CLGQA_TRY(clgqa_check_view(op, "loss_scale", loss_scale, 1, sizeof(float)));
    else
        loss_scale = probs; /* likewise */
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "crossentropy_backward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dlogits);
    kernel_arg_view(&args, probs);
    kernel_arg_view(&args, labels);
    kernel_arg_view(&args, targets);
    KERNEL_ARG(&args, use_targets);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, classes);
    KERNEL_ARG(&args, dloss);
    kernel_arg_view(&args, loss_scale);
    KERNEL_ARG(&args, use_loss_scale);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_soft_targets(clgqa_runtime *rt, clgqa_view targets, clgqa_view labels,
                                size_t rows, size_t classes, double smoothing, double own_weight) {
    static const char op[] = "clgqa_soft_targets";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, classes, &n));
    if (!(smoothing >= 0 && smoothing < 1) || !(own_weight >= 0 && own_weight <= 1))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: smoothing %g must be in [0, 1) and the "
                          "own label's weight %g in [0, 1]", op, smoothing, own_weight);
    if (n == 0)
        return CLGQA_OK;
    if (classes > INT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %zu classes exceed int labels", op, classes);
    CLGQA_TRY(clgqa_check_view(op, "targets", targets, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "labels", labels, rows, sizeof(cl_int)));
    /* timm computes these in Python (double) and PyTorch rounds each to
     * float where it meets a float tensor. */
    const double off = smoothing / (double)classes, on = 1.0 - smoothing + off;
    const float on_value = (float)on, off_value = (float)off;
    const float own = (float)own_weight, partner = (float)(1.0 - own_weight);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "soft_targets", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, targets);
    kernel_arg_view(&args, labels);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, classes);
    KERNEL_ARG(&args, on_value);
    KERNEL_ARG(&args, off_value);
    KERNEL_ARG(&args, own);
    KERNEL_ARG(&args, partner);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}
