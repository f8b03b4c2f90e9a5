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
    CLGQA_TRY(clgqa_set_view_arg(k, 0, out));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, in));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, cols));
    CLGQA_TRY(clgqa_set_local_arg(k, 5, local * sizeof(float)));
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
    CLGQA_TRY(clgqa_set_view_arg(k, 0, din));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, dout));
    CLGQA_TRY(clgqa_set_view_arg(k, 4, out));
    CLGQA_TRY(clgqa_set_uint_arg(k, 6, cols));
    CLGQA_TRY(clgqa_set_local_arg(k, 7, local * sizeof(float)));
    return clgqa_launch_1d(rt, k, rows * local, local);
}
