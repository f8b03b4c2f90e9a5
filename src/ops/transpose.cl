/* Matrix transposes, a table of them in one launch: the model writes the
 * transpose of every Linear weight this way before a forward pass, so that
 * CLBlast reads each forward GEMM's weight operand in place (gemm.h). Two
 * variants: blocks through local memory for GPUs, and a block per
 * work-item for CPU devices, whose runtimes run a work-group as loops split
 * at each barrier (PoCL took 1.4 s for ViT-S's weights through local
 * memory). */

/* The entry of block g (numbered entry by entry, each entry's blocks of
 * tile x tile row by row), with g made the block's number in its entry;
 * entries when g is past the last block. */
static uint block_entry(__global const uint *table, const uint entries, const uint tile,
                        uint *g) {
    uint e = 0;
    for (; e < entries; e++) {
        __global const uint *entry = table + 4 * e;
        const uint blocks = ((entry[1] + tile - 1) / tile) * ((entry[2] + tile - 1) / tile);
        if (*g < blocks)
            break;
        *g -= blocks;
    }
    return e;
}

/* Entry e of the table is 4 uints: (source offset, rows, cols, destination
 * offset) of a [rows, cols] matrix whose transpose [cols, rows] is written
 * at the destination. Work-group g transposes block g through local
 * memory, so reads and writes both go along rows. A work-group is tile x
 * `slices` work-items, each moving tile / slices elements of a column of
 * the block. */
__kernel void transpose_table(__global float *dst, const uint dst_off, __global const float *src,
                              const uint src_off, __global const uint *table,
                              const uint table_off, const uint entries, const uint tile,
                              __local float *block) {
    const uint x = get_local_id(0), y = get_local_id(1), slices = get_local_size(1);
    uint g = get_group_id(1);
    const uint e = block_entry(table + table_off, entries, tile, &g);
    if (e == entries) /* past the last block: the launch is rounded up */
        return;
    __global const uint *entry = table + table_off + 4 * e;
    const uint rows = entry[1], cols = entry[2], blocks_across = (cols + tile - 1) / tile;
    /* g - (g / n) * n, not g % n beside g / n: LLVM turns such a div/rem
     * pair into a `freeze` that Oclgrind cannot check. */
    const uint block_row = g / blocks_across;
    const uint r0 = block_row * tile, c0 = (g - block_row * blocks_across) * tile;
    /* block[i][j] (row stride tile + 1, so a column read hits no bank twice)
     * = source (r0 + i, c0 + j). */
    for (uint i = y; i < tile; i += slices)
        if (r0 + i < rows && c0 + x < cols)
            block[i * (tile + 1) + x] = src[src_off + entry[0] + (r0 + i) * cols + c0 + x];
    barrier(CLK_LOCAL_MEM_FENCE);
    /* Destination (c0 + j, r0 + i) = block[i][j], along destination rows. */
    for (uint j = y; j < tile; j += slices)
        if (c0 + j < cols && r0 + x < rows)
            dst[dst_off + entry[3] + (c0 + j) * rows + r0 + x] = block[x * (tile + 1) + j];
}

/* The same on CPU devices: work-item g transposes block g alone, writing
 * each destination row's `tile` elements in turn (its source lines stay in
 * the core's cache). */
__kernel void transpose_table_blocks(__global float *dst, const uint dst_off,
                                     __global const float *src, const uint src_off,
                                     __global const uint *table, const uint table_off,
                                     const uint entries, const uint tile) {
    uint g = get_global_id(0);
    const uint e = block_entry(table + table_off, entries, tile, &g);
    if (e == entries)
        return;
    __global const uint *entry = table + table_off + 4 * e;
    const uint rows = entry[1], cols = entry[2], blocks_across = (cols + tile - 1) / tile;
    const uint block_row = g / blocks_across;
    const uint r0 = block_row * tile, c0 = (g - block_row * blocks_across) * tile;
    const uint r_end = min(rows, r0 + tile), c_end = min(cols, c0 + tile);
    __global const float *from = src + src_off + entry[0];
    __global float *to = dst + dst_off + entry[3];
    for (uint c = c0; c < c_end; c++)
        for (uint r = r0; r < r_end; r++)
            to[c * rows + r] = from[r * cols + c];
}
