/* Launchers for kernels/elementwise.cl (and fill/copy, which are plain
 * OpenCL commands). */
#include "clgqa/ops.h"
#include "ops/op_args.h"

#define FAMILY "elementwise"

/* Work-group size for simple 1-D kernels: large enough to amortise the
 * per-group cost on CPU devices, within the kernel's and device's limits. */
static size_t elementwise_local(clgqa_runtime *rt, cl_kernel k) {
    return clgqa_work_group_size(rt, k, 256);
}

/* ---- fill and copy ---- */

clgqa_status clgqa_fill(clgqa_runtime *rt, clgqa_view x, size_t n, float value) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_fill", "x", x, n, sizeof(float)));
    CLGQA_CL(clEnqueueFillBuffer(rt->queue, x.mem, &value, sizeof value, x.offset * sizeof(float),
                                 n * sizeof(float), 0, NULL, NULL));
    return CLGQA_OK;
}

clgqa_status clgqa_fill_int(clgqa_runtime *rt, clgqa_view x, size_t n, int value) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_fill_int", "x", x, n, sizeof(cl_int)));
    cl_int pattern = value;
    CLGQA_CL(clEnqueueFillBuffer(rt->queue, x.mem, &pattern, sizeof pattern,
                                 x.offset * sizeof(cl_int), n * sizeof(cl_int), 0, NULL, NULL));
    return CLGQA_OK;
}

clgqa_status clgqa_copy(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_copy", "dst", dst, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_copy", "src", src, n, sizeof(float)));
    if (dst.mem == src.mem && dst.offset < src.offset + n && src.offset < dst.offset + n)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_copy: source [%zu, %zu) and destination [%zu, %zu) overlap",
                          src.offset, src.offset + n, dst.offset, dst.offset + n);
    CLGQA_CL(clEnqueueCopyBuffer(rt->queue, src.mem, dst.mem, src.offset * sizeof(float),
                                 dst.offset * sizeof(float), n * sizeof(float), 0, NULL, NULL));
    return CLGQA_OK;
}

/* ---- scale, add, accumulate ---- */

clgqa_status clgqa_scale(clgqa_runtime *rt, clgqa_view x, size_t n, float alpha) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_scale", "x", x, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "scale", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, x));
    CLGQA_TRY(clgqa_set_uint_arg(k, 2, n));
    CLGQA_TRY(CLGQA_ARG(k, 3, alpha));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

clgqa_status clgqa_add(clgqa_runtime *rt, clgqa_view out, clgqa_view a, clgqa_view b, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_add", "out", out, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_add", "a", a, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_add", "b", b, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "add", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, out));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, a));
    CLGQA_TRY(clgqa_set_view_arg(k, 4, b));
    CLGQA_TRY(clgqa_set_uint_arg(k, 6, n));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

clgqa_status clgqa_accumulate(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_accumulate", "dst", dst, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_accumulate", "src", src, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "accumulate", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, dst));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, src));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, n));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

/* ---- bias add (its gradient, a column sum, is in reduce.c) ---- */

clgqa_status clgqa_bias_add(clgqa_runtime *rt, clgqa_view x, clgqa_view bias, size_t rows,
                            size_t cols) {
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements("clgqa_bias_add", rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_bias_add", "x", x, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_bias_add", "bias", bias, cols, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "bias_add", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, x));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, bias));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, rows));
    CLGQA_TRY(clgqa_set_uint_arg(k, 5, cols));
    size_t local = elementwise_local(rt, k), columns = 1;
    while (columns < cols && columns < local)
        columns *= 2;
    return clgqa_launch_2d(rt, k, cols, rows, columns, local / columns);
}

/* ---- GELU ---- */

clgqa_status clgqa_gelu_forward(clgqa_runtime *rt, clgqa_view out, clgqa_view in, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_gelu_forward", "out", out, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_gelu_forward", "in", in, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "gelu_forward", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, out));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, in));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, n));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

clgqa_status clgqa_gelu_backward(clgqa_runtime *rt, clgqa_view din, clgqa_view dout,
                                 clgqa_view in, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_gelu_backward", "din", din, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_gelu_backward", "dout", dout, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_gelu_backward", "in", in, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "gelu_backward", &k));
    CLGQA_TRY(clgqa_set_view_arg(k, 0, din));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, dout));
    CLGQA_TRY(clgqa_set_view_arg(k, 4, in));
    CLGQA_TRY(clgqa_set_uint_arg(k, 6, n));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}
