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
    CLGQA_TRY(clgqa_set_view_arg(k, 0, out));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, mean));
    CLGQA_TRY(clgqa_set_view_arg(k, 4, rstd));
    CLGQA_TRY(clgqa_set_view_arg(k, 6, in));
    CLGQA_TRY(clgqa_set_view_arg(k, 8, weight));
    CLGQA_TRY(clgqa_set_view_arg(k, 10, bias));
    CLGQA_TRY(clgqa_set_uint_arg(k, 12, cols));
    const clgqa_view rows_read[] = {out, in, weight, bias};
    CLGQA_TRY(clgqa_set_uint_arg(k, 13, quads_per_row(cols, rows_read, 4)));
    CLGQA_TRY(CLGQA_ARG(k, 14, eps));
    CLGQA_TRY(clgqa_set_local_arg(k, 15, local * sizeof(float)));
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
    CLGQA_TRY(clgqa_set_view_arg(k, 0, din));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, dout));
    CLGQA_TRY(clgqa_set_view_arg(k, 4, in));
    CLGQA_TRY(clgqa_set_view_arg(k, 6, mean));
    CLGQA_TRY(clgqa_set_view_arg(k, 8, rstd));
    CLGQA_TRY(clgqa_set_view_arg(k, 10, weight));
    CLGQA_TRY(clgqa_set_uint_arg(k, 12, cols));
    const clgqa_view rows_read[] = {din, dout, in, weight};
    CLGQA_TRY(clgqa_set_uint_arg(k, 13, quads_per_row(cols, rows_read, 4)));
    CLGQA_TRY(clgqa_set_local_arg(k, 14, local * sizeof(float)));
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
    CLGQA_TRY(clgqa_set_view_arg(k, 0, w_sums));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, b_sums));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, stride));
    CLGQA_TRY(CLGQA_ARG(k, 5, accumulate));
    CLGQA_TRY(clgqa_set_view_arg(k, 6, dout));
    CLGQA_TRY(clgqa_set_view_arg(k, 8, in));
    CLGQA_TRY(clgqa_set_view_arg(k, 10, mean));
    CLGQA_TRY(clgqa_set_view_arg(k, 12, rstd));
    CLGQA_TRY(clgqa_set_uint_arg(k, 14, rows));
    CLGQA_TRY(clgqa_set_uint_arg(k, 15, cols));
    CLGQA_TRY(clgqa_set_uint_arg(k, 16, p.chunk_rows));
    CLGQA_TRY(clgqa_set_local_arg(k, 17, p.columns * p.slices * sizeof(float)));
    CLGQA_TRY(clgqa_set_local_arg(k, 18, p.columns * p.slices * sizeof(float)));
    CLGQA_TRY(clgqa_launch_2d(rt, k, cols, p.chunks * p.slices, p.columns, p.slices));
    if (accumulate)
        return CLGQA_OK;
    return clgqa_column_sums_finish(rt, dweight, dbias, w_sums, p.chunks, stride, cols);
}
