/* Launchers for kernels/layernorm.cl. */
#include "clgqa/ops.h"
#include "ops/op_args.h"

#define FAMILY "layernorm"

/* The float4 count per row when every row of every operand starts 16-byte
 * aligned (cols and all offsets multiples of 4; buffers themselves are
 * aligned), else 0: the kernels then read scalars only. */
static size_t quads_per_row(size_t cols, const clgqa_view *views, int count) {
    if (cols % 4)
        return 0;
    for (int i = 0; i < count; i++)
        if (views[i].offset % 4)
            return 0;
    return cols / 4;
}

clgqa_status clgqa_layernorm_forward(clgqa_runtime *rt, clgqa_view out, clgqa_view mean,
                                     clgqa_view rstd, clgqa_view in, clgqa_view weight,
                                     clgqa_view bias, size_t rows, size_t cols, float eps) {
    static const char op[] = "clgqa_layernorm_forward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (rows == 0)
        return CLGQA_OK;
    if (cols == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: rows of 0 columns have no mean", op);
    if (!(eps > 0.0f))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: eps must be positive (got %g)", op,
                          (double)eps);
    CLGQA_TRY(clgqa_check_view(op, "out", out, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "mean", mean, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "rstd", rstd, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "weight", weight, cols, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "bias", bias, cols, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "layernorm_forward", &k));
    size_t local = clgqa_row_group_size(rt, k, (cols + 3) / 4); /* a float4 each */
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_view(&args, mean);
    kernel_arg_view(&args, rstd);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, weight);
    kernel_arg_view(&args, bias);
    kernel_arg_uint(&args, cols);
    const clgqa_view rows_read[] = {out, in, weight, bias};
    kernel_arg_uint(&args, quads_per_row(cols, rows_read, 4));
    KERNEL_ARG(&args, eps);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}

clgqa_status clgqa_layernorm_backward(clgqa_runtime *rt, clgqa_view din, clgqa_view dweight,
                                      clgqa_view dbias, clgqa_view dout, clgqa_view in,
                                      clgqa_view mean, clgqa_view rstd, clgqa_view weight,
                                      size_t rows, size_t cols) {
    static const char op[] = "clgqa_layernorm_backward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "din", din, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dweight", dweight, cols, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dbias", dbias, cols, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dout", dout, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "mean", mean, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "rstd", rstd, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "weight", weight, cols, sizeof(float)));

    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "layernorm_backward_input", &k));
    size_t local = clgqa_row_group_size(rt, k, (cols + 3) / 4); /* a float4 each */
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, din);
    kernel_arg_view(&args, dout);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, mean);
    kernel_arg_view(&args, rstd);
    kernel_arg_view(&args, weight);
    kernel_arg_uint(&args, cols);
    const clgqa_view rows_read[] = {din, dout, in, weight};
    kernel_arg_uint(&args, quads_per_row(cols, rows_read, 4));
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    CLGQA_TRY(clgqa_launch_1d(rt, k, rows * local, local));

    /* Parameter gradients: column sums over the rows (ops/op_args.h). With
     * several chunks, the partials sit in the scratch as [chunks, 2 cols]:
     * dweight's columns, then dbias's. */
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "layernorm_backward_params", &k));
    clgqa_column_plan p = clgqa_column_sum_plan_for(rt, k, rows, cols);
    cl_uint accumulate = p.chunks == 1;
    clgqa_view w_sums = dweight, b_sums = dbias;
    size_t stride = 2 * cols;
    if (!accumulate) {
        CLGQA_TRY(clgqa_scratch(rt, p.chunks * stride, &w_sums));
        b_sums = clgqa_view_add(w_sums, cols);
    }
    args = kernel_args_start(k);
    kernel_arg_view(&args, w_sums);
    kernel_arg_view(&args, b_sums);
    kernel_arg_uint(&args, stride);
    KERNEL_ARG(&args, accumulate);
    kernel_arg_view(&args, dout);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, mean);
    kernel_arg_view(&args, rstd);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    kernel_arg_uint(&args, p.chunk_rows);
    kernel_arg_local(&args, p.columns * p.slices * sizeof(float));
    kernel_arg_local(&args, p.columns * p.slices * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    CLGQA_TRY(clgqa_launch_2d(rt, k, cols, p.chunks * p.slices, p.columns, p.slices));
    if (accumulate)
        return CLGQA_OK;
    return clgqa_column_sums_finish(rt, dweight, dbias, w_sums, p.chunks, stride, cols);
}
