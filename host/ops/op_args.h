/* Argument checks and kernel-argument helpers shared by the op launchers
 * (host/ops/). Kernels take every tensor as (buffer, uint element offset)
 * and sizes as uint, so launchers check that views are present, that sizes
 * fit in 32 bits and that each view lies inside its buffer: bad input gives a
 * clear error here instead of an out-of-bounds access on the device. */
#ifndef CLGQA_OP_ARGS_H
#define CLGQA_OP_ARGS_H

#include <stdint.h>

#include "clgqa/runtime.h"

/* Fails unless `view` holds `count` elements of `elem_bytes` inside its
 * buffer and offset + count fits in a cl_uint. `op` and `name` label the
 * message ("clgqa_add: view 'b' ..."). */
static inline clgqa_status clgqa_check_view(const char *op, const char *name, clgqa_view view,
                                            size_t count, size_t elem_bytes) {
    if (!view.mem)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor '%s' has no buffer", op, name);
    if (view.offset > UINT32_MAX || count > UINT32_MAX - view.offset)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: tensor '%s' (offset %zu, %zu elements) exceeds the 2^32-element "
                          "limit of the kernels",
                          op, name, view.offset, count);
    size_t bytes = 0;
    CLGQA_CL(clGetMemObjectInfo(view.mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL));
    if ((view.offset + count) > bytes / elem_bytes)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: tensor '%s' needs elements [%zu, %zu) but its buffer holds %zu",
                          op, name, view.offset, view.offset + count, bytes / elem_bytes);
    return CLGQA_OK;
}

/* Fails unless `size` fits in a cl_uint (sizes are passed to kernels as uint). */
static inline clgqa_status clgqa_check_size(const char *op, const char *name, size_t size) {
    if (size > UINT32_MAX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %s = %zu exceeds the 2^32 limit", op, name,
                          size);
    return CLGQA_OK;
}

/* Set arguments `index` (buffer) and `index + 1` (uint element offset). */
static inline clgqa_status clgqa_set_view_arg(cl_kernel kernel, cl_uint index, clgqa_view view) {
    cl_uint offset = (cl_uint)view.offset;
    CLGQA_TRY(CLGQA_ARG(kernel, index, view.mem));
    return CLGQA_ARG(kernel, index + 1, offset);
}

/* Set argument `index` to a size as cl_uint (checked by clgqa_check_size). */
static inline clgqa_status clgqa_set_uint_arg(cl_kernel kernel, cl_uint index, size_t value) {
    cl_uint v = (cl_uint)value;
    return CLGQA_ARG(kernel, index, v);
}

#endif
