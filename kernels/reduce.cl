/* Deterministic reductions: the sum (or sum of squares) of a vector, and
 * column sums of a matrix (bias gradients). Both run in two stages where
 * the input is large: work-groups reduce fixed shares to partial sums, then
 * a second launch reduces the partials. Every step has a fixed order
 * (per-work-item loops, then a fixed tree in local memory), so results are
 * the same on every run. */

/* out[group] = sum over this group's share of x (of x^2 when `square`).
 * Work-item k of all T sums elements k, k + T, k + 2T, ... (`contiguous` 0:
 * neighbouring work-items read neighbouring elements, as GPUs want) or the
 * k-th contiguous block of ceil(n / T) elements (`contiguous` 1: each CPU
 * thread streams through memory). */
__kernel void reduce_sum(__global float *out, const uint out_off, __global const float *x,
                         const uint x_off, const uint n, const uint square,
                         const uint contiguous, __local float *scratch) {
    const uint lid = get_local_id(0);
    const uint k = get_global_id(0), items = get_global_size(0);
    const uint block = contiguous ? (n + items - 1) / items : 1;
    const uint begin = contiguous ? k * block : k;
    const uint end = contiguous ? min(n, begin + block) : n;
    const uint step = contiguous ? 1 : items;
    float sum = 0.0f;
    for (uint i = begin; i < end; i += step) {
        const float v = x[x_off + i];
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
 * a fixed tree (get_local_size(1) is a power of two). The sum goes to
 * out[chunk * stride + c]: added when `accumulate` (one chunk: the result
 * itself), stored otherwise (a partial sum for column_sums_finish). */
__kernel void column_sums(__global float *out, const uint out_off, const uint stride,
                          const uint accumulate, __global const float *x, const uint x_off,
                          const uint rows, const uint cols, const uint chunk_rows,
                          __local float *partial) {
    const uint c = get_global_id(0), chunk = get_group_id(1);
    const uint lc = get_local_id(0), s = get_local_id(1);
    const uint columns = get_local_size(0), slices = get_local_size(1);
    uint begin, end;
    column_sum_rows(rows, chunk_rows, &begin, &end);
    float sum = 0.0f;
    if (c < cols)
        for (uint r = begin; r < end; r++)
            sum += x[x_off + r * cols + c];
    partial[s * columns + lc] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint step = slices / 2; step > 0; step /= 2) {
        if (s < step)
            partial[s * columns + lc] += partial[(s + step) * columns + lc];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (s == 0 && c < cols) {
        __global float *o = out + out_off + chunk * stride + c;
        *o = accumulate ? *o + partial[lc] : partial[lc];
    }
}

/* Column sums, stage 2: the partial sums partials[k, c] (k < chunks, rows of
 * `width`) in chunk order, added to a[c] for c < split and to b[c - split]
 * for the rest (LayerNorm's dweight and dbias in one launch). */
__kernel void column_sums_finish(__global float *a, const uint a_off, __global float *b,
                                 const uint b_off, __global const float *partials,
                                 const uint partials_off, const uint chunks, const uint width,
                                 const uint split) {
    const uint c = get_global_id(0);
    if (c >= width)
        return;
    float sum = 0.0f;
    for (uint k = 0; k < chunks; k++)
        sum += partials[partials_off + k * width + c];
    if (c < split)
        a[a_off + c] += sum;
    else
        b[b_off + c - split] += sum;
}
