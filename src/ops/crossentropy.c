/* Launchers for crossentropy.cl. */
#include "ops.h"
#include "op_args.h"

#define FAMILY "crossentropy"

clgqa_status clgqa_crossentropy_forward(clgqa_runtime *rt, clgqa_view losses, clgqa_view correct,
                                        clgqa_view probs, clgqa_view logits, clgqa_view labels,
                                        size_t rows, size_t classes) {
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
    /* The kernel reads the logits after writing probabilities. */
    if (probs.mem == logits.mem && probs.offset < logits.offset + n &&
        logits.offset < probs.offset + n)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: probs must not overlap logits", op);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "crossentropy_forward", &k));
    size_t local = clgqa_row_group_size(rt, k, classes);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, losses);
    kernel_arg_view(&args, correct);
    kernel_arg_view(&args, probs);
    kernel_arg_view(&args, logits);
    kernel_arg_view(&args, labels);
    kernel_arg_uint(&args, classes);
    kernel_arg_local(&args, local * sizeof(cl_float));
    kernel_arg_local(&args, local * sizeof(cl_uint));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}

clgqa_status clgqa_crossentropy_backward(clgqa_runtime *rt, clgqa_view dlogits, clgqa_view probs,
                                         clgqa_view labels, size_t rows, size_t classes,
                                         float dloss, clgqa_view loss_scale) {
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
    cl_uint use_loss_scale = loss_scale.mem != NULL;
    if (use_loss_scale)
        CLGQA_TRY(clgqa_check_view(op, "loss_scale", loss_scale, 1, sizeof(float)));
    else
        loss_scale = probs; /* a valid buffer the kernel never reads */
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "crossentropy_backward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dlogits);
    kernel_arg_view(&args, probs);
    kernel_arg_view(&args, labels);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, classes);
    KERNEL_ARG(&args, dloss);
    kernel_arg_view(&args, loss_scale);
    KERNEL_ARG(&args, use_loss_scale);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}
