/* Launcher for transpose.cl. */
#include "ops.h"
#include "op_args.h"

#define FAMILY "transpose"

clgqa_status clgqa_transpose_encode(const clgqa_transpose *entries, size_t count, cl_uint *table) {
    for (size_t i = 0; i < count; i++) {
        const size_t fields[CLGQA_TRANSPOSE_UINTS] = {entries[i].src, entries[i].rows,
                                                      entries[i].cols, entries[i].dst};
        for (int f = 0; f < CLGQA_TRANSPOSE_UINTS; f++) {
            CLGQA_TRY(clgqa_check_size("clgqa_transpose_encode", "a table field", fields[f]));
            table[i * CLGQA_TRANSPOSE_UINTS + f] = (cl_uint)fields[f];
        }
    }
    return CLGQA_OK;
}

/* The block's side and the work-items down it on GPUs: 32 x 8 (coalesced
 * rows of 32, 4 elements a work-item), smaller where the device's limits
 * ask. */
static void block_shape(clgqa_runtime *rt, cl_kernel k, size_t *tile, size_t *slices) {
    size_t local = clgqa_work_group_size(rt, k, 256);
    *tile = 32;
    while (*tile > 1 && (*tile > local || *tile * (*tile + 1) * sizeof(float) > rt->local_mem_bytes / 2))
        *tile /= 2;
    *slices = local / *tile < *tile / 4 ? local / *tile : *tile / 4;
    if (*slices == 0)
        *slices = 1;
}

/* A CPU work-item's block: 16 x 16 floats, a cache line wide. */
#define CPU_TILE 16

clgqa_status clgqa_transpose_table(clgqa_runtime *rt, clgqa_view dst, clgqa_view src,
                                   clgqa_view table, const clgqa_transpose *entries,
                                   size_t count) {
    static const char op[] = "clgqa_transpose_table";
    const int cpu = rt->device_class == CLGQA_CLASS_CPU;
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, cpu ? "transpose_table_blocks" : "transpose_table", &k));
    size_t tile = CPU_TILE, slices = 1, blocks = 0;
    if (!cpu)
        block_shape(rt, k, &tile, &slices);
    for (size_t i = 0; i < count; i++) {
        const clgqa_transpose *t = &entries[i];
        size_t n;
        CLGQA_TRY(clgqa_matrix_elements(op, t->rows, t->cols, &n));
        CLGQA_TRY(clgqa_check_view(op, "src", clgqa_view_add(src, t->src), n, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "dst", clgqa_view_add(dst, t->dst), n, sizeof(float)));
        blocks += ((t->rows + tile - 1) / tile) * ((t->cols + tile - 1) / tile);
    }
    if (blocks == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_size(op, "the work-items", blocks * slices));
    CLGQA_TRY(clgqa_check_view(op, "table", table, count * CLGQA_TRANSPOSE_UINTS,
                               sizeof(cl_uint)));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dst);
    kernel_arg_view(&args, src);
    kernel_arg_view(&args, table);
    kernel_arg_uint(&args, count);
    kernel_arg_uint(&args, tile);
    if (cpu) {
        CLGQA_TRY(kernel_args_done(&args));
        return clgqa_launch_1d(rt, k, blocks, clgqa_work_group_size(rt, k, 64));
    }
    kernel_arg_local(&args, tile * (tile + 1) * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_2d(rt, k, tile, blocks * slices, tile, slices);
}
