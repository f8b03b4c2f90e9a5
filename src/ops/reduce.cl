/* Deterministic reductions: the sum (or sum of squares) of a vector, and
 * column sums of a matrix (bias gradients). Both run in two stages where
 * the input is large: work-groups reduce fixed shares to partial sums, then
 * a second launch reduces the partials. Every step has a fixed order
 * (per-work-item loops, then a fixed tree in local memory), so results are
 * the same on every run. */

/* out[group] = sum over this group's share of x (of x^2 when `square`;
 * when `use_divisor`, of (x / divisor[0])^2, divisor a power of 2 so that
 * its reciprocal is exact: the loss scaler's unscaled gradient norm).
 * Work-item k of all T sums elements k, k + T, k + 2T, ... (`contiguous` 0:
 * neighbouring work-items read neighbouring elements, as GPUs want) or the
 * k-th contiguous block of ceil(n / T) elements (`contiguous` 1: each CPU
 * thread streams through memory). */
__kernel void reduce_sum(__global float *out, const uint out_off, __global const float *x,
                         const uint x_off, const uint n, const uint square,
                         __global const float *divisor, const uint divisor_off,
                         const uint use_divisor, const uint contiguous,
                         __local float *scratch) {
    const uint lid = get_local_id(0);
    const uint k = get_global_id(0), items = get_global_size(0);
    const uint block = contiguous ? (n + items - 1) / items : 1;
    const uint begin = contiguous ? k * block : k;
    const uint end = contiguous ? min(n, begin + block) : n;
    const uint step = contiguous ? 1 : items;
    const float times = use_divisor ? 1.0f / divisor[divisor_off] : 1.0f;
    float sum = 0.0f;
    for (uint i = begin; i < end; i += step) {
        const float v = use_divisor ? x[x_off + i] * times : x[x_off + i];
        sum += square ? v * v : v;
    }
    sum = group_sum(scratch, sum);
    if (lid == 0)
        out[out_off + get_group_id(0)] = sum;
}

/* Column sums, stage 1: the sum of x[r, c] over the rows of this group's
 * chunk [chunk * chunk_rows, (chunk + 1) * chunk_rows). A work-group is
 * (columns x slices) and group (tile, chunk) covers `columns` adjacent
 * columns, so loads are contiguous. Work-item (c, s) sums the s-th
 * contiguous block of the chunk's rows in order, then the slices combine by
 * a fixed tree. The sum goes to out[chunk * cols + c]: added when
 * `accumulate` (one chunk: the result itself), stored otherwise (a partial
 * sum for a finish kernel below). */
__kernel void column_sums(__global float *out, const uint out_off, const uint accumulate,
                          __global const float *x, const uint x_off, const uint rows,
                          const uint cols, const uint chunk_rows, __local float *partial) {
    const uint c = get_global_id(0), chunk = get_group_id(1);
    uint begin, end;
    column_sum_rows(rows, chunk_rows, &begin, &end);
    float sum = 0.0f;
    if (c < cols)
        for (uint r = begin; r < end; r++)
            sum += x[x_off + r * cols + c];
    sum = column_slices_sum(partial, sum);
    if (get_local_id(1) == 0 && c < cols) {
        __global float *o = out + out_off + chunk * cols + c;
        *o = accumulate ? *o + sum : sum;
    }
}

/* Column c of partial sums [chunks, width], in chunk order (the finish on
 * CPU devices, column_sums_finish_table). */
static float chunk_sum(__global const float *partials, const uint chunks, const uint width,
                       const uint c) {
    float sum = 0.0f;
    for (uint k = 0; k < chunks; k++)
        sum += partials[k * width + c];
    return sum;
}

/* Column sums, stage 2 on GPUs: column c of partial sums [chunks, width]
 * by a group of (columns x slices) work-items, as stage 1 over the chunks:
 * work-item (c, s) adds the s-th of get_local_size(1) contiguous blocks of
 * chunks in order (nothing when `valid` is 0), then the slices combine by
 * a fixed tree, so no work-item reads more than a few dozen partials (a
 * 132-unit GPU's LayerNorm sums have 528 chunks). Every work-item of the
 * group must call it; every one gets its column's sum. */
static float chunk_slices_sum(__local float *scratch, __global const float *partials,
                              const uint chunks, const uint width, const uint c,
                              const int valid) {
    const uint slices = get_local_size(1), s = get_local_id(1);
    const uint block = (chunks + slices - 1) / slices;
    const uint begin = min(chunks, s * block), end = min(chunks, begin + block);
    float sum = 0.0f;
    if (valid)
        for (uint k = begin; k < end; k++)
            sum += partials[k * width + c];
    return column_slices_sum(scratch, sum);
}

/* Column sums, stage 2 of one sum (the GPUs' bias_backward): out[c] += the
 * partials' column c. */
__kernel void column_sums_finish(__global float *out, const uint out_off,
                                 __global const float *partials, const uint partials_off,
                                 const uint chunks, const uint width, __local float *scratch) {
    const uint c = get_global_id(0);
    const float sum =
        chunk_slices_sum(scratch, partials + partials_off, chunks, width, c, c < width);
    if (c < width && get_local_id(1) == 0)
        out[out_off + c] += sum;
}

/* column_sums_finish_table (below) on GPUs: the entries' columns laid end
 * to end over dimension 0, each column's chunks in slices. */
__kernel void column_sums_finish_table_tree(__global float *out, const uint out_off,
                                            __global const float *partials,
                                            const uint partials_off,
                                            __global const uint *table, const uint table_off,
                                            const uint entries, __local float *scratch) {
    uint c = get_global_id(0), e = 0;
    __global const uint *entry = table + table_off;
    for (; e < entries && c >= entry[2]; e++, entry += 4)
        c -= entry[2];
    const int valid = e < entries; /* not past the last entry's columns */
    const float sum =
        chunk_slices_sum(scratch, partials + partials_off + (valid ? entry[0] : 0),
                         valid ? entry[1] : 0, valid ? entry[2] : 0, c, valid);
    if (valid && get_local_id(1) == 0)
        out[out_off + entry[3] + c] += sum;
}

/* Column sums, stage 2 of a table of sums (a model block's bias and
 * LayerNorm parameter gradients, from several kernels, in one launch).
 * Entry e is 4 uints (partials offset, chunks, width, out offset); the
 * entries' columns are laid end to end over the work-items, and work-item i
 * adds column c of its entry's partials [chunks, width] to out[c]. */
__kernel void column_sums_finish_table(__global float *out, const uint out_off,
                                       __global const float *partials, const uint partials_off,
                                       __global const uint *table, const uint table_off,
                                       const uint entries) {
    uint c = get_global_id(0);
    for (uint e = 0; e < entries; e++) {
        __global const uint *entry = table + table_off + 4 * e;
        const uint width = entry[2];
        if (c < width) {
            out[out_off + entry[3] + c] +=
                chunk_sum(partials + partials_off + entry[0], entry[1], width, c);
            return;
        }
        c -= width;
    }
}
