/* Launchers for kernels/softmax.cl. */
#include "clgqa/ops.h"
#include "ops/op_args.h"

#define FAMILY "softmax"

clgqa_status clgqa_softmax_forward(clgqa_runtime *rt, clgqa_view out, clgqa_view in, size_t rows,
                                   size_t cols) {
    static const char op[] = "clgqa_softmax_forward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "out", out, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "softmax_forward", &k));
    size_t local = clgqa_row_group_size(rt, k, cols);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_view(&args, in);
    kernel_arg_uint(&args, cols);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}

clgqa_status clgqa_softmax_backward(clgqa_runtime *rt, clgqa_view din, clgqa_view dout,
                                    clgqa_view out, size_t rows, size_t cols) {
    static const char op[] = "clgqa_softmax_backward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "din", din, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dout", dout, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "out", out, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "softmax_backward", &k));
    size_t local = clgqa_row_group_size(rt, k, cols);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, din);
    kernel_arg_view(&args, dout);
    kernel_arg_view(&args, out);
    kernel_arg_uint(&args, cols);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}
