/* Prepended to every kernel program (flattened by the C preprocessor at build
 * time, see CMakeLists.txt): Random123's Philox4x32-10 for OpenCL C, and the
 * work-group reductions the row and column-sum kernels share. */
#define R123_USE_PHILOX_64BIT 0
#include <Random123/philox.h>

/* Work-group reductions shared by the row kernels (LayerNorm,
 * cross-entropy, reductions, attention): every work-item of the group must
 * call them, and every one gets the result. get_local_size(0) is a power of
 * two; `scratch` holds that many floats and is free again on return. A fixed
 * tree, so results never depend on scheduling. */
float group_sum(__local float *scratch, float value) {
    const uint lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint stride = get_local_size(0) / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            scratch[lid] += scratch[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next call */
    return total;
}

float group_max(__local float *scratch, float value) {
    const uint lid = get_local_id(0);
    scratch[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint stride = get_local_size(0) / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            scratch[lid] = fmax(scratch[lid], scratch[lid + stride]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float result = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return result;
}

/* The rows [*begin, *end) work-item (c, s) of a column-sum group adds up
 * (reduce.cl's column_sums, GELU's backward): the s-th of
 * get_local_size(1) contiguous blocks of chunk get_group_id(1), which holds
 * rows [chunk * chunk_rows, (chunk + 1) * chunk_rows) of `rows`. */
void column_sum_rows(const uint rows, const uint chunk_rows, uint *begin, uint *end) {
    const uint slices = get_local_size(1), s = get_local_id(1);
    const uint first = min(rows, (uint)get_group_id(1) * chunk_rows);
    const uint last = min(rows, first + chunk_rows);
    const uint block = (last - first + slices - 1) / slices;
    *begin = min(last, first + s * block);
    *end = min(last, first + (s + 1) * block);
}

/* The sum over the slices s of a column-sum group of each work-item's
 * `value` for its column, by a fixed tree in `partial` (columns x slices
 * floats; get_local_size(1) a power of two): every work-item gets its
 * column's sum. Called once per kernel (no barrier after the last read). */
float column_slices_sum(__local float *partial, const float value) {
    const uint lc = get_local_id(0), s = get_local_id(1), columns = get_local_size(0);
    partial[s * columns + lc] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint step = get_local_size(1) / 2; step > 0; step /= 2) {
        if (s < step)
            partial[s * columns + lc] += partial[(s + step) * columns + lc];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return partial[lc];
}
