/* Argument checks and kernel-argument helpers shared by the op launchers
 * (src/ops/). Kernels take every tensor as (buffer, uint element offset)
 * and sizes as uint, so launchers check that views are present, that sizes
 * fit in 32 bits and that each view lies inside its buffer: bad input gives a
 * clear error here instead of an out-of-bounds access on the device. */
#ifndef CLGQA_OP_ARGS_H
#define CLGQA_OP_ARGS_H

#include <stdint.h>

#include "clgqa/runtime.h"
#include "runtime_internal.h"

/* Fails unless `size` fits in a cl_uint (sizes are passed to kernels as uint). */
static inline clgqa_status clgqa_check_size(const char *op, const char *name, size_t size) {
    if (size > UINT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %s = %zu exceeds the 2^32 limit", op, name,
                          size);
    return CLGQA_OK;
}

/* A kernel's arguments set in order: each call takes the next index, so a
 * launcher cannot skip or repeat one, and kernel_args_done checks that
 * every argument of the kernel was set. The first failure is kept and
 * returned by kernel_args_done:
 *     kernel_args args = kernel_args_start(k);
 *     kernel_arg_view(&args, out);      (buffer, then uint element offset)
 *     kernel_arg_uint(&args, cols);
 *     KERNEL_ARG(&args, eps);           (any lvalue of the kernel's type)
 *     kernel_arg_local(&args, local * sizeof(float));
 *     CLGQA_TRY(kernel_args_done(&args)); */
typedef struct kernel_args {
    cl_kernel kernel;
    cl_uint next;
    clgqa_status status;
} kernel_args;

static inline kernel_args kernel_args_start(cl_kernel kernel) {
    kernel_args a = {kernel, 0, CLGQA_OK};
    return a;
}
static inline void kernel_arg_bytes(kernel_args *a, size_t size, const void *value) {
    if (a->status == CLGQA_OK)
        a->status = clgqa_set_arg(a->kernel, a->next, size, value, "kernel_args");
    a->next++;
}
#define KERNEL_ARG(args, value) kernel_arg_bytes((args), sizeof(value), &(value))
static inline void kernel_arg_view(kernel_args *a, clgqa_view view) {
    cl_uint offset = (cl_uint)view.offset;
    KERNEL_ARG(a, view.mem);
    KERNEL_ARG(a, offset);
}
/* A size as cl_uint (checked by clgqa_check_size or clgqa_matrix_elements). */
static inline void kernel_arg_uint(kernel_args *a, size_t value) {
    cl_uint v = (cl_uint)value;
    KERNEL_ARG(a, v);
}
static inline void kernel_arg_local(kernel_args *a, size_t bytes) {
    kernel_arg_bytes(a, bytes, NULL);
}
static inline clgqa_status kernel_args_done(kernel_args *a) {
    CLGQA_TRY(a->status);
    cl_uint count = 0;
    CLGQA_CL(clGetKernelInfo(a->kernel, CL_KERNEL_NUM_ARGS, sizeof count, &count, NULL));
    if (count != a->next) {
        char name[128] = "?";
        clGetKernelInfo(a->kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        name[sizeof name - 1] = 0;
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "kernel %s takes %u arguments, its launcher set %u",
                          name, count, a->next);
    }
    return CLGQA_OK;
}

/* Work-group size for kernels that give one group to each row of `cols`
 * elements and reduce it in local memory: the power of two covering the row,
 * within the kernel's and device's limits, at most 256 on GPUs and 16 on CPU
 * devices. CPU runtimes (PoCL) run a group's work-items as a loop around
 * each barrier-free region, so every tree level costs a pass over the group:
 * on this project's PoCL, LayerNorm over 8320 x 192 took 150 ms with 256
 * work-items per row and 3-5 ms with 16. */
static inline size_t clgqa_row_group_size(clgqa_runtime *rt, cl_kernel kernel, size_t cols) {
    size_t cap = rt->device_class == CLGQA_CLASS_CPU ? 16 : 256;
    size_t want = 1;
    while (want < cols && want < cap)
        want *= 2;
    return clgqa_work_group_size(rt, kernel, want);
}

/* How a column sum over `rows` (a bias gradient) is split (src/ops/
 * reduce.c). Work-groups are `columns` adjacent columns (contiguous loads
 * on GPUs) by `slices` row blocks; `chunks` groups of `chunk_rows` rows
 * each cover every column tile. One chunk: the groups may add their sums to
 * the result. Several: they store partial sums [chunks, cols], which a
 * finish kernel adds up in chunk order. CPU devices take one chunk (their
 * few threads are busy with the column tiles); GPUs take enough chunks for
 * at least 4 work-groups per compute unit and at most
 * CLGQA_COLUMN_ROWS_PER_ITEM rows per work-item (clgqa_column_sum_chunks
 * in ops.h). */
typedef struct clgqa_column_plan {
    size_t columns, slices, chunks, chunk_rows;
} clgqa_column_plan;
#define CLGQA_COLUMN_ROWS_PER_ITEM 32
clgqa_column_plan clgqa_column_sum_plan(clgqa_device_class device_class, size_t compute_units,
                                        size_t local, size_t rows, size_t cols);
/* The work-group shape for `kernel` on this runtime's device, over `rows`
 * split into `chunks` blocks of ceil(rows / chunks) (the trailing ones may
 * be empty, and sum to 0). */
clgqa_column_plan clgqa_column_sum_plan_for(clgqa_runtime *rt, cl_kernel kernel, size_t rows,
                                            size_t chunks);
/* Fails unless chunks > 0 and chunks * cols partial sums fit the kernels'
 * 32-bit indices. */
clgqa_status clgqa_check_chunks(const char *op, size_t chunks, size_t cols);
/* The start of an op over [rows, cols] that stores partial column sums
 * [chunks, cols]: checks the sizes, the chunks and `partials`; sets *n to
 * rows * cols, and *done when nothing is left to launch (no columns; no
 * rows, where the partials are set to 0 here). */
clgqa_status clgqa_begin_partials(clgqa_runtime *rt, const char *op, clgqa_view partials,
                                  size_t chunks, size_t rows, size_t cols, size_t *n, int *done);
/* A view of the runtime's scratch buffer holding at least `floats`: created
 * on first use and grown when a call needs more, then kept, so steps after
 * the first allocate nothing. Ops use it between two of their own launches
 * only (the queue is in order). */
clgqa_status clgqa_scratch(clgqa_runtime *rt, size_t floats, clgqa_view *out);

/* rows * cols, failing when it overflows the kernels' 32-bit indices. */
static inline clgqa_status clgqa_matrix_elements(const char *op, size_t rows, size_t cols,
                                                 size_t *out) {
    *out = 0; /* defined on failure too (and GCC's -Wmaybe-uninitialized can see it) */
    if (cols != 0 && rows > UINT32_MAX / cols)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: %zu x %zu elements exceed the 2^32 limit of the kernels", op, rows,
                          cols);
    *out = rows * cols;
    return CLGQA_OK;
}

#endif
