/* Launchers for elementwise.cl. */
#include "ops.h"
#include "op_args.h"

#define FAMILY "elementwise"

/* Work-group size for the element-wise kernels, within the kernel's and
 * device's limits: 256 on GPUs; on CPU devices large enough to amortise the
 * runtime's cost per work-group. Intel's CPU runtime pays about a
 * microsecond a group: GELU's forward over fc1's 1088 x 256 (the demo at
 * batch 64) took 2.0 ms in groups of 256 against 0.66 ms in groups of 4096,
 * its backward 3.0 against 0.85 ms; PoCL took the same either way (0.54 and
 * 1.0 ms). */
static size_t elementwise_local(clgqa_runtime *rt, cl_kernel k) {
    return clgqa_work_group_size(rt, k, rt->device_class == CLGQA_CLASS_CPU ? 4096 : 256);
}

/* Launch a (c, r) kernel over rows x cols: a group spans the columns (up to
 * its size, a power of two covering cols) and as many rows as fit. */
static clgqa_status launch_columns_rows(clgqa_runtime *rt, cl_kernel k, size_t rows, size_t cols) {
    size_t local = elementwise_local(rt, k), columns = 1;
    while (columns < cols && columns < local)
        columns *= 2;
    return clgqa_launch_2d(rt, k, cols, rows, columns, local / columns);
}

/* ---- accumulate ---- */

clgqa_status clgqa_accumulate(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_accumulate", "dst", dst, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_accumulate", "src", src, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "accumulate", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dst);
    kernel_arg_view(&args, src);
    kernel_arg_uint(&args, n);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

/* ---- activations to float and back ---- */

/* `kernel` of the storage's program over n elements, dst then src. */
static clgqa_status convert(clgqa_runtime *rt, const char *op, const char *kernel,
                            clgqa_storage storage, clgqa_view dst, size_t dst_bytes,
                            clgqa_view src, size_t src_bytes, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_size(op, "n", n));
    CLGQA_TRY(clgqa_check_view(op, "dst", dst, n, dst_bytes));
    CLGQA_TRY(clgqa_check_view(op, "src", src, n, src_bytes));
    if (clgqa_views_overlap(dst, dst_bytes, src, src_bytes, n))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: dst and src overlap", op);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(storage), kernel, &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dst);
    kernel_arg_view(&args, src);
    kernel_arg_uint(&args, n);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, elementwise_local(rt, k));
}

clgqa_status clgqa_activations_to_float(clgqa_runtime *rt, clgqa_storage storage, clgqa_view dst,
                                        clgqa_view src, size_t n) {
    return convert(rt, "clgqa_activations_to_float", "activations_to_float", storage, dst,
                   sizeof(float), src, clgqa_storage_bytes(storage), n);
}

clgqa_status clgqa_activations_from_float(clgqa_runtime *rt, clgqa_storage storage,
                                          clgqa_view dst, clgqa_view src, size_t n) {
    return convert(rt, "clgqa_activations_from_float", "activations_from_float", storage, dst,
                   clgqa_storage_bytes(storage), src, sizeof(float), n);
}

/* ---- scale rows ---- */

clgqa_status clgqa_scale_rows(clgqa_runtime *rt, clgqa_view out, clgqa_view in,
                              clgqa_view scales, size_t rows_per_scale, size_t rows,
                              size_t cols) {
    static const char op[] = "clgqa_scale_rows";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (rows_per_scale == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: rows_per_scale must be positive", op);
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "out", out, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "scales", scales, (rows + rows_per_scale - 1) / rows_per_scale,
                               sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "scale_rows", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, scales);
    kernel_arg_uint(&args, rows_per_scale);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    CLGQA_TRY(kernel_args_done(&args));
    return launch_columns_rows(rt, k, rows, cols);
}

/* ---- bias add (its gradient, a column sum, is in reduce.c) ---- */

/* Checks the n-element tensors of a bias op (view i an activation in
 * `storage` where bit i of `activations` is set, else float) and its
 * [cols] bias. */
static clgqa_status check_bias_tensors(const char *op, clgqa_storage storage,
                                       unsigned activations, size_t n, size_t cols,
                                       const char *const names[], const clgqa_view views[],
                                       int count, clgqa_view bias) {
    for (int i = 0; i < count; i++)
        CLGQA_TRY(clgqa_check_view(op, names[i], views[i], n,
                                   activations >> i & 1 ? clgqa_storage_bytes(storage)
                                                        : sizeof(float)));
    return clgqa_check_view(op, "bias", bias, cols, sizeof(float));
}

/* The ops over [rows, cols] tensors plus a [cols] bias: checks the tensors
 * (check_bias_tensors), then runs `kernel` of the storage's program with
 * the arguments (tensors in order, bias, rows, cols), one work-item per
 * element. */
static clgqa_status bias_op(clgqa_runtime *rt, const char *op, const char *kernel,
                            clgqa_storage storage, unsigned activations, size_t rows, size_t cols,
                            const char *const names[], const clgqa_view views[], int count,
                            clgqa_view bias) {
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(check_bias_tensors(op, storage, activations, n, cols, names, views, count, bias));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(storage), kernel, &k));
    kernel_args args = kernel_args_start(k);
    for (int i = 0; i < count; i++)
        kernel_arg_view(&args, views[i]);
    kernel_arg_view(&args, bias);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    CLGQA_TRY(kernel_args_done(&args));
    return launch_columns_rows(rt, k, rows, cols);
}

clgqa_status clgqa_bias_add(clgqa_runtime *rt, clgqa_view x, clgqa_view bias, size_t rows,
                            size_t cols) {
    return bias_op(rt, "clgqa_bias_add", "bias_add", CLGQA_STORAGE_FLOAT, 0, rows, cols,
                   (const char *const[]){"x"}, (const clgqa_view[]){x}, 1, bias);
}

/* ---- bias + GELU ---- */

clgqa_status clgqa_gelu_bias_forward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view out,
                                     clgqa_view in, clgqa_view bias, size_t rows, size_t cols) {
    return bias_op(rt, "clgqa_gelu_bias_forward", "gelu_bias_forward", storage, 0x3, rows, cols,
                   (const char *const[]){"out", "in"}, (const clgqa_view[]){out, in}, 2, bias);
}

clgqa_status clgqa_gelu_bias_backward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view din,
                                      clgqa_view partials, size_t chunks, clgqa_view dout,
                                      clgqa_view in, clgqa_view bias, size_t rows, size_t cols) {
    static const char op[] = "clgqa_gelu_bias_backward";
    size_t n;
    int done;
    CLGQA_TRY(clgqa_begin_partials(rt, op, partials, chunks, rows, cols, &n, &done));
    if (done)
        return CLGQA_OK;
    const char *const names[] = {"din", "dout", "in"};
    const clgqa_view views[] = {din, dout, in};
    const unsigned activations = 0x4; /* in */
    if (rt->device_class == CLGQA_CLASS_CPU) {
        /* Two passes, each vectorised across work-items by PoCL
         * (elementwise.cl): din (bias_op checks the tensors), then its
         * column sums. */
        CLGQA_TRY(bias_op(rt, op, "gelu_bias_backward", storage, activations, rows, cols, names,
                          views, 3, bias));
        return clgqa_column_partials(rt, partials, chunks, din, rows, cols);
    }
    CLGQA_TRY(check_bias_tensors(op, storage, activations, n, cols, names, views, 3, bias));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(storage),
                                   "gelu_bias_backward_sums", &k));
    clgqa_column_plan p = clgqa_column_sum_plan_for(rt, k, rows, chunks);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, din);
    kernel_arg_view(&args, partials);
    kernel_arg_view(&args, dout);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, bias);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    kernel_arg_uint(&args, p.chunk_rows);
    kernel_arg_local(&args, p.columns * p.slices * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_2d(rt, k, cols, chunks * p.slices, p.columns, p.slices);
}
