/* Matrix transposes, a table of them in one launch: the model writes the
 * transpose of every Linear weight this way before a forward pass, so that
 * CLBlast reads each forward GEMM's weight operand in place (gemm.h). */

/* Entry e of the table is 4 uints: (source offset, rows, cols, destination
 * offset) of a [rows, cols] matrix whose transpose [cols, rows] is written
 * at the destination. Each entry is cut into tile x tile blocks, numbered
 * entry by entry, row of blocks by row of blocks; work-group g transposes
 * block g through local memory, so reads and writes both go along rows.
 * A work-group is tile x `slices` work-items, each moving tile / slices
 * elements of a column of the block. */
__kernel void transpose_table(__global float *dst, const uint dst_off, __global const float *src,
                              const uint src_off, __global const uint *table,
                              const uint table_off, const uint entries, const uint tile,
                              __local float *block) {
    const uint x = get_local_id(0), y = get_local_id(1), slices = get_local_size(1);
    uint g = get_group_id(1), e = 0, blocks_across = 1, rows = 0, cols = 0;
    __global const uint *entry = table + table_off;
    for (; e < entries; e++, entry += 4) {
        rows = entry[1];
        cols = entry[2];
        blocks_across = (cols + tile - 1) / tile;
        const uint blocks = ((rows + tile - 1) / tile) * blocks_across;
        if (g < blocks)
            break;
        g -= blocks;
    }
    if (e == entries) /* past the last block: the launch is rounded up */
        return;
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
