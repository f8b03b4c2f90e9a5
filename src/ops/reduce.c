/* Launchers for reduce.cl: sums of vectors and column sums (bias
 * gradients, and the finish of the partial sums other ops store), the
 * column-sum plan GELU's backward shares, and the ops' scratch
 * (ops/op_args.h). */
#include <stdlib.h>

#include "ops.h"
#include "op_args.h"

#define FAMILY "reduce"
#define MAX_LOCAL 256 /* work-group size cap */

/* ---- scratch ---- */

clgqa_status clgqa_scratch(clgqa_runtime *rt, size_t floats, clgqa_view *out) {
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    if (bytes > rt->scratch_bytes) {
        /* Doubling: a few growths in the first step, then none. Commands
         * still using the old buffer keep it alive until they finish. */
        size_t grown = rt->scratch_bytes * 2 > bytes ? rt->scratch_bytes * 2 : bytes;
        clgqa_buffer_release(&rt->scratch);
        rt->scratch_bytes = 0;
        CLGQA_TRY(clgqa_buffer_create(rt, grown, &rt->scratch));
        rt->scratch_bytes = grown;
        /* Written whole from the host once: Oclgrind 21.10 misreports
         * kernel-written fresh buffers that reuse a freed buffer's address
         * as uninitialised, and a fill does not prevent it. */
        float *zeros = calloc(grown, 1);
        if (!zeros)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
        clgqa_status status = clgqa_buffer_write(rt, rt->scratch, 0, grown, zeros);
        free(zeros);
        CLGQA_TRY(status);
    }
    *out = clgqa_view_at(rt->scratch, 0);
    return CLGQA_OK;
}

/* ---- sum and sum of squares ---- */

static clgqa_status launch_reduce(clgqa_runtime *rt, cl_kernel k, clgqa_view out, clgqa_view x,
                                  size_t n, cl_uint square, clgqa_view divisor, size_t groups,
                                  size_t local) {
    cl_uint use_divisor = divisor.mem != NULL;
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_view(&args, x);
    kernel_arg_uint(&args, n);
    KERNEL_ARG(&args, square);
    kernel_arg_view(&args, use_divisor ? divisor : x); /* x: a valid buffer never read */
    KERNEL_ARG(&args, use_divisor);
    /* CPU threads stream through contiguous blocks (on PoCL 8x faster than
     * interleaved reads, which jump a page per element); GPUs read
     * interleaved, coalesced. */
    cl_uint contiguous = rt->device_class == CLGQA_CLASS_CPU;
    KERNEL_ARG(&args, contiguous);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, groups * local, local);
}

/* out[0] = sum of x (or of x^2). Inputs up to a few work-groups' worth take
 * one launch; longer ones store one partial sum per group in the scratch,
 * which one more group adds up. */
static clgqa_status reduce(clgqa_runtime *rt, const char *op, clgqa_view out, clgqa_view x,
                           size_t n, cl_uint square, clgqa_view divisor) {
    CLGQA_TRY(clgqa_check_view(op, "out", out, 1, sizeof(float)));
    if (divisor.mem)
        CLGQA_TRY(clgqa_check_view(op, "divisor", divisor, 1, sizeof(float)));
    if (n == 0)
        return clgqa_buffer_fill(rt, out, 1, 0.0f);
    CLGQA_TRY(clgqa_check_view(op, "x", x, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "reduce_sum", &k));
    size_t local = clgqa_work_group_size(rt, k, MAX_LOCAL);
    /* Each work-item of the first stage sums at least 4 elements; GPUs get
     * up to 4 groups per compute unit, CPUs `local` (plenty for few cores). */
    size_t groups = (n + 4 * local - 1) / (4 * local);
    size_t most = local;
    if (rt->device_class == CLGQA_CLASS_GPU && 4 * (size_t)rt->compute_units > most)
        most = 4 * (size_t)rt->compute_units;
    if (groups > most)
        groups = most;
    if (groups == 1)
        return launch_reduce(rt, k, out, x, n, square, divisor, 1, local);
    clgqa_view partials, none = {NULL, 0};
    CLGQA_TRY(clgqa_scratch(rt, groups, &partials));
    CLGQA_TRY(launch_reduce(rt, k, partials, x, n, square, divisor, groups, local));
    return launch_reduce(rt, k, out, partials, groups, 0, none, 1, local);
}

clgqa_status clgqa_sum(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n) {
    return reduce(rt, "clgqa_sum", out, x, n, 0, (clgqa_view){NULL, 0});
}

clgqa_status clgqa_sum_squares(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n) {
    return reduce(rt, "clgqa_sum_squares", out, x, n, 1, (clgqa_view){NULL, 0});
}

clgqa_status clgqa_sum_squares_divided(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n,
                                       clgqa_view divisor) {
    return reduce(rt, "clgqa_sum_squares_divided", out, x, n, 1, divisor);
}

/* ---- column sums ---- */

/* A column-sum work-group of `local` work-items: 32 adjacent columns (or
 * fewer) by row slices. */
static clgqa_column_plan column_group(size_t local) {
    clgqa_column_plan p;
    p.columns = local < 32 ? local : 32;
    p.slices = local / p.columns;
    return p;
}

clgqa_column_plan clgqa_column_sum_plan(clgqa_device_class device_class, size_t compute_units,
                                        size_t local, size_t rows, size_t cols) {
    clgqa_column_plan p = column_group(local);
    p.chunks = 1;
    if (device_class == CLGQA_CLASS_GPU && rows > 0) {
        size_t tiles = (cols + p.columns - 1) / p.columns;
        size_t for_groups = (4 * compute_units + tiles - 1) / tiles;
        size_t for_items = (rows + p.slices * CLGQA_COLUMN_ROWS_PER_ITEM - 1) /
                           (p.slices * CLGQA_COLUMN_ROWS_PER_ITEM);
        p.chunks = for_groups > for_items ? for_groups : for_items;
        if (p.chunks > rows)
            p.chunks = rows;
    }
    /* Rounded down, so there are at least as many chunks as wanted, and
     * none empty. */
    p.chunk_rows = rows / p.chunks > 1 ? rows / p.chunks : 1;
    p.chunks = rows ? (rows + p.chunk_rows - 1) / p.chunk_rows : 1;
    while (p.slices > 1 && p.slices / 2 >= p.chunk_rows)
        p.slices /= 2;
    return p;
}

clgqa_column_plan clgqa_column_sum_plan_for(clgqa_runtime *rt, cl_kernel kernel, size_t rows,
                                            size_t chunks) {
    clgqa_column_plan p = column_group(clgqa_work_group_size(rt, kernel, MAX_LOCAL));
    p.chunks = chunks;
    p.chunk_rows = (rows + chunks - 1) / chunks;
    while (p.slices > 1 && p.slices / 2 >= p.chunk_rows)
        p.slices /= 2;
    return p;
}

size_t clgqa_column_sum_chunks(clgqa_runtime *rt, size_t rows, size_t cols) {
    size_t local = rt->max_work_group_size < MAX_LOCAL ? rt->max_work_group_size : MAX_LOCAL;
    return clgqa_column_sum_plan(rt->device_class, rt->compute_units, local, rows, cols).chunks;
}

clgqa_status clgqa_check_chunks(const char *op, size_t chunks, size_t cols) {
    if (chunks == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: partial sums need at least one chunk", op);
    size_t n;
    return clgqa_matrix_elements(op, chunks, cols, &n);
}

/* Stage 1 over `plan` (clgqa_column_sum_plan_for): column sums of x [rows,
 * cols] per chunk, stored as [chunks, cols] at out, or added to out [cols]
 * when `accumulate` (one chunk). */
static clgqa_status launch_column_sums(clgqa_runtime *rt, cl_kernel k, clgqa_view out,
                                       cl_uint accumulate, clgqa_view x, size_t rows,
                                       size_t cols, clgqa_column_plan p) {
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    KERNEL_ARG(&args, accumulate);
    kernel_arg_view(&args, x);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    kernel_arg_uint(&args, p.chunk_rows);
    kernel_arg_local(&args, p.columns * p.slices * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_2d(rt, k, cols, p.chunks * p.slices, p.columns, p.slices);
}

clgqa_status clgqa_begin_partials(clgqa_runtime *rt, const char *op, clgqa_view partials,
                                  size_t chunks, size_t rows, size_t cols, size_t *n, int *done) {
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, n));
    CLGQA_TRY(clgqa_check_chunks(op, chunks, cols));
    *done = rows == 0 || cols == 0;
    if (cols == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "partials", partials, chunks * cols, sizeof(float)));
    return rows == 0 ? clgqa_buffer_fill(rt, partials, chunks * cols, 0.0f) : CLGQA_OK;
}

clgqa_status clgqa_column_partials(clgqa_runtime *rt, clgqa_view partials, size_t chunks,
                                   clgqa_view dy, size_t rows, size_t cols) {
    static const char op[] = "clgqa_column_partials";
    size_t n;
    int done;
    CLGQA_TRY(clgqa_begin_partials(rt, op, partials, chunks, rows, cols, &n, &done));
    if (done)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "dy", dy, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "column_sums", &k));
    return launch_column_sums(rt, k, partials, 0, dy, rows, cols,
                              clgqa_column_sum_plan_for(rt, k, rows, chunks));
}

/* The GPUs' stage 2 (column_sums_finish, column_sums_finish_table_tree)
 * for partials of up to `chunks` chunks: groups of `columns` adjacent
 * columns by `slices` blocks of chunks, enough slices that a work-item adds
 * at most CLGQA_COLUMN_ROWS_PER_ITEM partials, with 8 columns (32 bytes of
 * each chunk's row) or more: a 132-unit GPU's 528 LayerNorm chunks are 32
 * slices of at most 17, joined by a tree of 5 levels. */
static clgqa_column_plan finish_plan(clgqa_runtime *rt, cl_kernel k, size_t chunks) {
    size_t local = clgqa_work_group_size(rt, k, MAX_LOCAL);
    clgqa_column_plan p = {local, 1, chunks, 1};
    while (p.slices * CLGQA_COLUMN_ROWS_PER_ITEM < chunks && 16 * p.slices <= local)
        p.slices *= 2;
    p.columns = local / p.slices;
    return p;
}

clgqa_status clgqa_bias_backward(clgqa_runtime *rt, clgqa_view dbias, clgqa_view dy, size_t rows,
                                 size_t cols) {
    static const char op[] = "clgqa_bias_backward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "dbias", dbias, cols, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dy", dy, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "column_sums", &k));
    clgqa_column_plan p = clgqa_column_sum_plan_for(rt, k, rows,
                                                    clgqa_column_sum_chunks(rt, rows, cols));
    if (p.chunks == 1)
        return launch_column_sums(rt, k, dbias, 1, dy, rows, cols, p);
    clgqa_view sums;
    CLGQA_TRY(clgqa_scratch(rt, p.chunks * cols, &sums));
    CLGQA_TRY(launch_column_sums(rt, k, sums, 0, dy, rows, cols, p));
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "column_sums_finish", &k));
    clgqa_column_plan finish = finish_plan(rt, k, p.chunks);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dbias);
    kernel_arg_view(&args, sums);
    kernel_arg_uint(&args, p.chunks);
    kernel_arg_uint(&args, cols);
    kernel_arg_local(&args, finish.columns * finish.slices * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_2d(rt, k, cols, finish.slices, finish.columns, finish.slices);
}

/* ---- the finish of a table of column sums ---- */

clgqa_status clgqa_column_sum_encode(const clgqa_column_sum *sums, size_t count, cl_uint *table) {
    for (size_t i = 0; i < count; i++) {
        const size_t fields[CLGQA_COLUMN_SUM_UINTS] = {sums[i].partials, sums[i].chunks,
                                                       sums[i].width, sums[i].out};
        for (int f = 0; f < CLGQA_COLUMN_SUM_UINTS; f++) {
            CLGQA_TRY(clgqa_check_size("clgqa_column_sum_encode", "a table field", fields[f]));
            table[i * CLGQA_COLUMN_SUM_UINTS + f] = (cl_uint)fields[f];
        }
    }
    return CLGQA_OK;
}

clgqa_status clgqa_column_sums_finish(clgqa_runtime *rt, clgqa_view out, clgqa_view partials,
                                      clgqa_view table, const clgqa_column_sum *sums,
                                      size_t count) {
    static const char op[] = "clgqa_column_sums_finish";
    size_t columns = 0, most_chunks = 1;
    for (size_t i = 0; i < count; i++) {
        const clgqa_column_sum *s = &sums[i];
        CLGQA_TRY(clgqa_check_chunks(op, s->chunks, s->width));
        CLGQA_TRY(clgqa_check_view(op, "out", clgqa_view_add(out, s->out), s->width,
                                   sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "partials", clgqa_view_add(partials, s->partials),
                                   s->chunks * s->width, sizeof(float)));
        columns += s->width;
        if (s->chunks > most_chunks)
            most_chunks = s->chunks;
    }
    CLGQA_TRY(clgqa_check_size(op, "the columns of all sums", columns));
    if (columns == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "table", table, count * CLGQA_COLUMN_SUM_UINTS,
                               sizeof(cl_uint)));
    /* CPU devices: a work-item per column, the loop in chunk order (the
     * tree's 2D groups cost Intel's CPU runtime about 3 us more a launch,
     * 18.2 against 15.5 for a ViT-S block's table). GPUs: slices and a
     * tree (finish_plan). */
    int tree = rt->device_class == CLGQA_CLASS_GPU;
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY,
                           tree ? "column_sums_finish_table_tree" : "column_sums_finish_table",
                           &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_view(&args, partials);
    kernel_arg_view(&args, table);
    kernel_arg_uint(&args, count);
    if (!tree) {
        CLGQA_TRY(kernel_args_done(&args));
        return clgqa_launch_1d(rt, k, columns, clgqa_work_group_size(rt, k, MAX_LOCAL));
    }
    clgqa_column_plan finish = finish_plan(rt, k, most_chunks);
    kernel_arg_local(&args, finish.columns * finish.slices * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_2d(rt, k, columns, finish.slices, finish.columns, finish.slices);
}
