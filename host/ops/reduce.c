/* Launchers for kernels/reduce.cl. */
#include "clgqa/ops.h"
#include "ops/op_args.h"

#define FAMILY "reduce"
#define MAX_LOCAL 256 /* work-group size cap, hence also the most partial sums */

static clgqa_status launch_reduce(clgqa_runtime *rt, cl_kernel k, clgqa_view out, clgqa_view x,
                                  size_t n, cl_uint square, size_t groups, size_t local) {
    CLGQA_TRY(clgqa_set_view_arg(k, 0, out));
    CLGQA_TRY(clgqa_set_view_arg(k, 2, x));
    CLGQA_TRY(clgqa_set_uint_arg(k, 4, n));
    CLGQA_TRY(CLGQA_ARG(k, 5, square));
    /* CPU threads stream through contiguous blocks (on PoCL 8x faster than
     * interleaved reads, which jump a page per element); GPUs read
     * interleaved, coalesced. */
    cl_uint contiguous = rt->device_class == CLGQA_CLASS_CPU;
    CLGQA_TRY(CLGQA_ARG(k, 6, contiguous));
    CLGQA_TRY(clgqa_set_local_arg(k, 7, local * sizeof(float)));
    return clgqa_launch_1d(rt, k, groups * local, local);
}

/* out[0] = sum of x (or of x^2). Inputs up to a few work-groups' worth take
 * one launch; longer ones get at most `local` partial sums in a temporary
 * buffer, released at once (OpenCL keeps it until the kernels finish). */
static clgqa_status reduce(clgqa_runtime *rt, const char *op, clgqa_view out, clgqa_view x,
                           size_t n, cl_uint square) {
    CLGQA_TRY(clgqa_check_view(op, "out", out, 1, sizeof(float)));
    if (n == 0)
        return clgqa_fill(rt, out, 1, 0.0f);
    CLGQA_TRY(clgqa_check_view(op, "x", x, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "reduce_sum", &k));
    size_t local = clgqa_work_group_size(rt, k, MAX_LOCAL);
    /* Each work-item of the first stage sums at least 4 elements. */
    size_t groups = (n + 4 * local - 1) / (4 * local);
    if (groups > local)
        groups = local;
    if (groups == 1)
        return launch_reduce(rt, k, out, x, n, square, 1, local);
    /* Created from host zeros rather than uninitialised: Oclgrind 21.10
     * misreports kernel-written fresh buffers that reuse a freed buffer's
     * address as uninitialised. */
    float zeros[MAX_LOCAL] = {0};
    cl_int err;
    cl_mem partials = clCreateBuffer(rt->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                     groups * sizeof(float), zeros, &err);
    CLGQA_CL(err);
    clgqa_view partial_view = clgqa_view_at(partials, 0);
    clgqa_status status = launch_reduce(rt, k, partial_view, x, n, square, groups, local);
    if (status == CLGQA_OK)
        status = launch_reduce(rt, k, out, partial_view, groups, 0, 1, local);
    clgqa_buffer_release(&partials);
    return status;
}

clgqa_status clgqa_sum(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n) {
    return reduce(rt, "clgqa_sum", out, x, n, 0);
}

clgqa_status clgqa_sum_squares(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n) {
    return reduce(rt, "clgqa_sum_squares", out, x, n, 1);
}
