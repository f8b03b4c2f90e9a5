/* Launchers for adamw.cl. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops.h"
#include "op_args.h"

#define FAMILY "adamw"

/* The shortest decimal that rounds to `x` ("0.999" for 0.999f), as a
 * double: the value Python holds for a hyper-parameter written in a config,
 * so scalars derived from it (1 - beta2, ...) round as PyTorch's do. */
static double config_value(float x) {
    char text[32];
    for (int digits = 1; digits < 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)x);
        double d = strtod(text, NULL);
        if ((float)d == x)
            return d;
    }
    return x;
}

clgqa_status clgqa_adamw_step(clgqa_runtime *rt, clgqa_view params, clgqa_view grads,
                              clgqa_view m, clgqa_view v, size_t n,
                              const clgqa_adamw_hparams *hp, long step, clgqa_view grad_scale,
                              const clgqa_no_decay *no_decay, clgqa_view scaler) {
    static const char op[] = "clgqa_adamw_step";
    if (step < 1 || step > UINT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: step counts from 1 (got %ld)", op, step);
    if (!(hp->lr >= 0) || !(hp->beta1 >= 0 && hp->beta1 < 1) || !(hp->beta2 >= 0 && hp->beta2 < 1) ||
        !(hp->eps >= 0) || !(hp->weight_decay >= 0))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: invalid hyper-parameters (lr %g, betas %g %g, eps %g, weight "
                          "decay %g): need lr, eps, weight decay >= 0 and betas in [0, 1)",
                          op, (double)hp->lr, (double)hp->beta1, (double)hp->beta2,
                          (double)hp->eps, (double)hp->weight_decay);
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "params", params, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "grads", grads, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "m", m, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "v", v, n, sizeof(float)));
    cl_uint use_scale = grad_scale.mem != NULL;
    if (use_scale)
        CLGQA_TRY(clgqa_check_view(op, "grad_scale", grad_scale, 1, sizeof(float)));
    else
        grad_scale = params; /* a valid buffer the kernel never reads */
    cl_uint use_scaler = scaler.mem != NULL;
    if (use_scaler)
        CLGQA_TRY(clgqa_check_view(op, "scaler", scaler, CLGQA_SCALER_FLOATS, sizeof(float)));
    else
        scaler = params; /* likewise */
    clgqa_view edges = params; /* with no edges, a valid buffer the kernel never reads */
    size_t edge_count = 0, first = 0;
    if (no_decay && no_decay->count) {
        if (no_decay->count % 2 || no_decay->first > UINT32_MAX - n)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %zu no-decay edges from element %zu: "
                              "need pairs, within 2^32 elements", op, no_decay->count,
                              no_decay->first);
        CLGQA_TRY(clgqa_check_view(op, "no_decay edges", no_decay->edges, no_decay->count,
                                   sizeof(cl_uint)));
        edges = no_decay->edges;
        edge_count = no_decay->count;
        first = no_decay->first;
    }

    /* Python computes these scalars in double; the kernel gets them rounded
     * once to float, as PyTorch passes them to its float kernels. */
    double lr = config_value(hp->lr), beta1 = config_value(hp->beta1);
    double beta2 = config_value(hp->beta2), weight_decay = config_value(hp->weight_decay);
    float decay = (float)(1.0 - lr * weight_decay);
    float one_minus_beta1 = (float)(1.0 - beta1), one_minus_beta2 = (float)(1.0 - beta2);
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)step)));
    float bias_correction2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));

    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "adamw_step", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, params);
    kernel_arg_view(&args, grads);
    kernel_arg_view(&args, m);
    kernel_arg_view(&args, v);
    kernel_arg_uint(&args, n);
    KERNEL_ARG(&args, decay);
    KERNEL_ARG(&args, one_minus_beta1);
    KERNEL_ARG(&args, hp->beta2);
    KERNEL_ARG(&args, one_minus_beta2);
    KERNEL_ARG(&args, hp->eps);
    KERNEL_ARG(&args, step_size);
    KERNEL_ARG(&args, bias_correction2_sqrt);
    kernel_arg_view(&args, grad_scale);
    KERNEL_ARG(&args, use_scale);
    kernel_arg_view(&args, scaler);
    KERNEL_ARG(&args, use_scaler);
    KERNEL_ARG(&args, hp->lr);
    cl_uint step_arg = (cl_uint)step;
    KERNEL_ARG(&args, step_arg);
    kernel_arg_view(&args, edges);
    kernel_arg_uint(&args, edge_count);
    kernel_arg_uint(&args, first);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_ema_update(clgqa_runtime *rt, clgqa_view ema, clgqa_view params, size_t n,
                              double decay) {
    static const char op[] = "clgqa_ema_update";
    if (!(decay >= 0 && decay <= 1))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: decay %g is not in [0, 1]", op, decay);
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_size(op, "n", n));
    CLGQA_TRY(clgqa_check_view(op, "ema", ema, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "params", params, n, sizeof(float)));
    /* timm computes 1 - decay in Python; torch rounds it to float. */
    float weight = (float)(1.0 - decay);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "ema_update", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, ema);
    kernel_arg_view(&args, params);
    kernel_arg_uint(&args, n);
    KERNEL_ARG(&args, weight);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_clip_factor(clgqa_runtime *rt, clgqa_view grad_scale, clgqa_view sum_squares,
                               float max_norm) {
    static const char op[] = "clgqa_clip_factor";
    if (!(max_norm > 0))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: max_norm must be positive (got %g)", op,
                          (double)max_norm);
    CLGQA_TRY(clgqa_check_view(op, "grad_scale", grad_scale, 1, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "sum_squares", sum_squares, 1, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "clip_factor", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, grad_scale);
    kernel_arg_view(&args, sum_squares);
    KERNEL_ARG(&args, max_norm);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, 1, 1);
}

clgqa_status clgqa_grad_check(clgqa_runtime *rt, clgqa_view scaler, clgqa_view grads, size_t n) {
    static const char op[] = "clgqa_grad_check";
    CLGQA_TRY(clgqa_check_view(op, "scaler", scaler, CLGQA_SCALER_FLOATS, sizeof(float)));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "grads", grads, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "grad_check", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, grads);
    kernel_arg_uint(&args, n);
    kernel_arg_view(&args, scaler);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_loss_scale_update(clgqa_runtime *rt, clgqa_view scaler, long growth_interval) {
    static const char op[] = "clgqa_loss_scale_update";
    if (growth_interval < 1 || growth_interval > (1L << 24))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: growth_interval %ld is outside [1, 2^24] "
                          "(the count is a float)", op, growth_interval);
    CLGQA_TRY(clgqa_check_view(op, "scaler", scaler, CLGQA_SCALER_FLOATS, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "loss_scale_update", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, scaler);
    kernel_arg_uint(&args, (size_t)growth_interval);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, 1, 1);
}
