/* Deterministic sum, sum of squares and column sums (bias gradients)
 * against float64 references, on both device classes' code paths.
 *
 * Small integers make every partial sum exact in float (|sum| < 2^24), so
 * those cases must match exactly: a dropped, repeated or misplaced element
 * changes the result. Random floats are checked against the bound for the
 * kernel's summation (each work-item's chain plus two trees of at most 256,
 * all well under 150 terms deep for these sizes): 1e-5 x sum |terms|.
 * Column sums use the classic bound for any summation order,
 * |error| <= (terms) * 2^-24 * sum |terms|. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "op_args.h"
#include "support/op_tests.h"

#define U 5.9604644775390625e-08 /* 2^-24, float unit roundoff */

/* 1, one work-group and a bit, several groups, many groups (odd). */
static size_t sizes(size_t i) {
    const size_t n[] = {1, 257, 5003, 1000003};
    return i < 3 ? n[i] : op_test_size(n[3], 12289);
}
#define SIZE_COUNT 4

/* Device result of sum (square 0) or sum_squares (square 1) over x[0..n). */
static float device_reduce(const float *x, size_t n, int square) {
    clgqa_runtime *rt = test_runtime();
    cl_mem x_mem = op_upload_padded(x, n), out_mem = op_upload_padded(NULL, 1);
    if (square)
        TEST_OK(clgqa_sum_squares(rt, op_view(out_mem), op_view(x_mem), n));
    else
        TEST_OK(clgqa_sum(rt, op_view(out_mem), op_view(x_mem), n));
    float out;
    op_download_padded(square ? "sum_squares" : "sum", out_mem, &out, 1);
    clgqa_buffer_release(&x_mem);
    clgqa_buffer_release(&out_mem);
    return out;
}

START_TEST(integer_sums_are_exact) {
    op_test_class(_i);
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *x = test_random_array(n, -8, 9);
        double sum = 0, squares = 0;
        for (size_t i = 0; i < n; i++) {
            x[i] = floorf(x[i]); /* integers in [-8, 8]: |sum| <= 8e6 < 2^24 */
            sum += x[i];
        }
        ck_assert_msg(device_reduce(x, n, 0) == sum, "sum of %zu integers: got %.9g want %.9g", n,
                      (double)device_reduce(x, n, 0), sum);
        for (size_t i = 0; i < n; i++) {
            x[i] = fmodf(x[i], 4.0f); /* integers in [-3, 3]: sum of squares <= 9e6 */
            squares += (double)x[i] * x[i];
        }
        ck_assert_msg(device_reduce(x, n, 1) == squares,
                      "sum of squares of %zu integers: got %.9g want %.9g", n,
                      (double)device_reduce(x, n, 1), squares);
        free(x);
    }
}
END_TEST

START_TEST(float_sums_match_reference_and_are_deterministic) {
    op_test_class(_i);
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *x = test_random_array(n, -1, 1);
        double sum = 0, magnitude = 0, squares = 0;
        for (size_t i = 0; i < n; i++) {
            sum += x[i];
            magnitude += fabs(x[i]);
            squares += (double)x[i] * x[i];
        }
        float got = device_reduce(x, n, 0);
        ck_assert_msg(fabs(got - sum) <= 1e-5 * magnitude, "sum of %zu: got %.9g want %.9g", n,
                      (double)got, sum);
        float again = device_reduce(x, n, 0);
        ck_assert_msg(memcmp(&got, &again, sizeof got) == 0, "sum of %zu differs between runs", n);
        got = device_reduce(x, n, 1);
        ck_assert_msg(fabs(got - squares) <= 1e-5 * squares,
                      "sum of squares of %zu: got %.9g want %.9g", n, (double)got, squares);
        free(x);
    }
}
END_TEST

/* The loss scaler's squared norm: x scaled by 2^100 squares past
 * FLT_MAX, but divided by 2^100 first (an exact power of 2) it gives the
 * bits of clgqa_sum_squares of x, on one launch and on two. */
START_TEST(divided_sum_squares_are_those_of_the_unscaled_input) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *x = test_random_array(n, -1, 1), *big = malloc(n * sizeof *big);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < n; i++)
            big[i] = x[i] * 0x1p100f;
        float want = device_reduce(x, n, 1), divisor = 0x1p100f, got;
        cl_mem x_mem = op_upload_padded(big, n), out_mem = op_upload_padded(NULL, 1);
        cl_mem divisor_mem = op_upload_padded(&divisor, 1);
        TEST_OK(clgqa_sum_squares_divided(rt, op_view(out_mem), op_view(x_mem), n,
                                          op_view(divisor_mem)));
        op_download_padded("sum_squares_divided", out_mem, &got, 1);
        ck_assert_msg(!memcmp(&got, &want, sizeof got), "n %zu: %.9g, undivided %.9g", n,
                      (double)got, (double)want);
        clgqa_buffer_release(&x_mem), clgqa_buffer_release(&out_mem);
        clgqa_buffer_release(&divisor_mem);
        free(x), free(big);
    }
}
END_TEST

START_TEST(empty_input_sums_to_zero) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    float one = 3.5f;
    cl_mem out_mem = op_upload_padded(&one, 1);
    TEST_OK(clgqa_sum(rt, op_view(out_mem), op_view(out_mem), 0));
    op_download_padded("empty sum", out_mem, &one, 1);
    ck_assert_msg(one == 0.0f, "empty sum = %g", (double)one);
    clgqa_buffer_release(&out_mem);
    /* Column sums over no rows: every partial sum is 0. */
    float *partials = test_random_array(3 * 5, -1, 1);
    cl_mem partials_mem = op_upload_padded(partials, 3 * 5);
    TEST_OK(clgqa_column_partials(rt, op_view(partials_mem), 3, op_view(partials_mem), 0, 5));
    op_download_padded("empty column partials", partials_mem, partials, 3 * 5);
    for (int i = 0; i < 3 * 5; i++)
        ck_assert_msg(partials[i] == 0.0f, "partial %d of no rows = %g", i, (double)partials[i]);
    clgqa_buffer_release(&partials_mem);
    free(partials);
}
END_TEST

/* (rows, cols) with neither a multiple of a work-group size; the tall ones
 * take several chunks (two stages) on the GPU path even on a 1- or 2-core
 * device, the last more than CLGQA_COLUMN_ROWS_PER_ITEM chunks, so that
 * the finish splits them into slices (a tree). */
static const size_t shapes[][2] = {{37, 389}, {1, 1},     {1, 700},   {1029, 3},
                                   {5, 33},   {3001, 70}, {8500, 2}};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])
/* Rows of shape s, fewer of the tallest under CLGQA_TEST_SMALL (Oclgrind). */
static size_t shape_rows(size_t s) {
    return s == 5 ? op_test_size(shapes[5][0], 600) : shapes[s][0];
}

START_TEST(bias_backward_matches_reference_and_is_deterministic) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        size_t rows = shape_rows(s), cols = shapes[s][1], n = rows * cols;
        if (s == SHAPE_COUNT - 1 && _i == 1)
            ck_assert_uint_gt(clgqa_column_sum_chunks(rt, rows, cols), CLGQA_COLUMN_ROWS_PER_ITEM);
        float *dy = test_random_array(n, -1, 1), *dbias = test_random_array(cols, -1, 1);
        float *got = op_floats(cols), *again = op_floats(cols);
        cl_mem dy_mem = op_upload_padded(dy, n), dbias_mem = op_upload_padded(dbias, cols);
        TEST_OK(clgqa_bias_backward(rt, op_view(dbias_mem), op_view(dy_mem), rows, cols));
        op_download_padded("bias_backward", dbias_mem, got, cols);
        for (size_t c = 0; c < cols; c++) {
            double want = dbias[c], magnitude = fabs(dbias[c]);
            for (size_t r = 0; r < rows; r++) {
                want += dy[r * cols + c];
                magnitude += fabs(dy[r * cols + c]);
            }
            double tol = (double)(rows + 1) * U * magnitude;
            ck_assert_msg(fabs(got[c] - want) <= tol,
                          "bias_backward %zux%zu [%zu]: got %.9g want %.9g (tolerance %.3g)",
                          rows, cols, c, (double)got[c], want, tol);
        }
        /* Same inputs, same bits: the reduction order is fixed. */
        op_write_padded(dbias_mem, dbias, cols);
        TEST_OK(clgqa_bias_backward(rt, op_view(dbias_mem), op_view(dy_mem), rows, cols));
        op_download_padded("bias_backward again", dbias_mem, again, cols);
        ck_assert_msg(memcmp(got, again, cols * sizeof *got) == 0,
                      "bias_backward %zux%zu differs between two identical runs", rows, cols);
        clgqa_buffer_release(&dy_mem);
        clgqa_buffer_release(&dbias_mem);
        free(dy);
        free(dbias);
        free(got);
        free(again);
    }
}
END_TEST

/* Stage 1 alone into partials kept by the caller, then one finish launch
 * for several sums at once (as the model finishes a block): four column
 * sums in this device's chunks, in one, in more chunks than rows, and in
 * 530 chunks of a row each (as many as a 132-unit GPU's LayerNorm sums:
 * the GPU path adds them in 32 slices and a tree), their partials side by
 * side in one buffer and their results in another, with gaps between them
 * that must keep their values. */
#define TABLE_SUMS 4
START_TEST(column_partials_and_a_finish_table_match_reference) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    const size_t shape[TABLE_SUMS][2] = {{37, 389}, {shape_rows(5), 70}, {5, 33}, {530, 9}};
    const size_t gap = 3;
    clgqa_column_sum sums[TABLE_SUMS];
    size_t partial_floats = 0, out_floats = 0;
    for (int i = 0; i < TABLE_SUMS; i++) {
        size_t rows = shape[i][0], cols = shape[i][1];
        const size_t chunk_counts[TABLE_SUMS] = {clgqa_column_sum_chunks(rt, rows, cols), 1,
                                                 rows + 2, rows};
        size_t chunks = chunk_counts[i];
        clgqa_column_sum sum = {partial_floats, chunks, cols, out_floats + gap};
        sums[i] = sum;
        partial_floats += chunks * cols;
        out_floats += gap + cols;
    }
    float *out0 = test_random_array(out_floats, -1, 1), *got = op_floats(out_floats);
    float *first = op_floats(out_floats);
    float *x[TABLE_SUMS];
    cl_mem x_mem[TABLE_SUMS];
    for (int i = 0; i < TABLE_SUMS; i++) {
        x[i] = test_random_array(shape[i][0] * shape[i][1], -1, 1);
        x_mem[i] = op_upload_padded(x[i], shape[i][0] * shape[i][1]);
    }
    cl_mem partials_mem = op_upload_padded(NULL, partial_floats);
    cl_mem out_mem = op_upload_padded(out0, out_floats);
    for (int run = 0; run < 2; run++) {
        op_write_padded(out_mem, out0, out_floats);
        for (int i = 0; i < TABLE_SUMS; i++)
            TEST_OK(clgqa_column_partials(rt, clgqa_view_add(op_view(partials_mem), sums[i].partials),
                                          sums[i].chunks, op_view(x_mem[i]), shape[i][0],
                                          shape[i][1]));
        op_column_sums_finish(op_view(out_mem), op_view(partials_mem), sums, TABLE_SUMS);
        op_download_padded("finish table", out_mem, got, out_floats);
        for (int i = 0; i < TABLE_SUMS; i++) {
            size_t rows = shape[i][0], cols = shape[i][1];
            for (size_t g = 0; g < gap; g++)
                ck_assert_msg(got[sums[i].out - gap + g] == out0[sums[i].out - gap + g],
                              "finish table: the gap before sum %d was written", i);
            for (size_t c = 0; c < cols; c++) {
                double want = out0[sums[i].out + c], magnitude = fabs(want);
                for (size_t r = 0; r < rows; r++) {
                    want += x[i][r * cols + c];
                    magnitude += fabs(x[i][r * cols + c]);
                }
                double tol = (double)(rows + 1) * U * magnitude;
                ck_assert_msg(fabs(got[sums[i].out + c] - want) <= tol,
                              "sum %d (%zux%zu in %zu chunks) [%zu]: got %.9g want %.9g", i, rows,
                              cols, sums[i].chunks, c, (double)got[sums[i].out + c], want);
            }
        }
        if (run == 0)
            memcpy(first, got, out_floats * sizeof *got);
        else
            ck_assert_msg(memcmp(first, got, out_floats * sizeof *got) == 0,
                          "the finish table's sums differ between two identical runs");
    }
    for (int i = 0; i < TABLE_SUMS; i++) {
        clgqa_buffer_release(&x_mem[i]);
        free(x[i]);
    }
    clgqa_buffer_release(&partials_mem);
    clgqa_buffer_release(&out_mem);
    free(out0), free(got), free(first);
}
END_TEST

/* The column-sum plan covers every row exactly once, with no empty chunk,
 * within the work-group size; on GPUs it gives at least 4 work-groups per
 * compute unit (as rows allow) and at most CLGQA_COLUMN_ROWS_PER_ITEM rows
 * per work-item; on CPUs one chunk. */
START_TEST(column_sum_plan_fills_gpus) {
    const size_t units[] = {1, 2, 28, 132}, locals[] = {1, 8, 64, 256};
    const size_t row_counts[] = {1, 2, 7, 64, 197, 1000, 12608, 50432};
    const size_t col_counts[] = {1, 3, 33, 384, 1536};
    for (size_t u = 0; u < 4; u++)
        for (size_t l = 0; l < 4; l++)
            for (size_t r = 0; r < 8; r++)
                for (size_t c = 0; c < 5; c++) {
                    size_t rows = row_counts[r], cols = col_counts[c];
                    for (int gpu = 0; gpu < 2; gpu++) {
                        clgqa_column_plan p = clgqa_column_sum_plan(
                            gpu ? CLGQA_CLASS_GPU : CLGQA_CLASS_CPU, units[u], locals[l], rows,
                            cols);
                        size_t tiles = (cols + p.columns - 1) / p.columns;
                        ck_assert_msg(p.columns * p.slices <= locals[l] && p.slices >= 1,
                                      "plan %zux%zu exceeds the work-group", rows, cols);
                        ck_assert_msg(p.chunks * p.chunk_rows >= rows &&
                                          (p.chunks - 1) * p.chunk_rows < rows,
                                      "plan %zux%zu: %zu chunks of %zu rows", rows, cols,
                                      p.chunks, p.chunk_rows);
                        if (!gpu) {
                            ck_assert_uint_eq(p.chunks, 1);
                            continue;
                        }
                        ck_assert_msg(tiles * p.chunks >= 4 * units[u] || p.chunk_rows == 1,
                                      "%zux%zu on %zu units: %zu groups", rows, cols, units[u],
                                      tiles * p.chunks);
                        ck_assert_msg((p.chunk_rows + p.slices - 1) / p.slices <=
                                          CLGQA_COLUMN_ROWS_PER_ITEM,
                                      "%zux%zu: %zu rows per work-item", rows, cols,
                                      (p.chunk_rows + p.slices - 1) / p.slices);
                    }
                }
}
END_TEST

/* The partial sums live in the runtime's scratch: once it has grown for a
 * size, the same calls allocate nothing (no buffer created inside a step). */
START_TEST(reductions_allocate_nothing_after_the_first_call) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    size_t rows = op_test_size(3001, 600), cols = 70, n = rows * cols;
    float *x = test_random_array(n, -1, 1);
    cl_mem x_mem = op_upload_padded(x, n), out_mem = op_upload_padded(x, cols);
    for (int pass = 0; pass < 2; pass++) {
        size_t before = rt->allocated_bytes;
        TEST_OK(clgqa_sum(rt, op_view(out_mem), op_view(x_mem), n));
        TEST_OK(clgqa_sum_squares(rt, op_view(out_mem), op_view(x_mem), n));
        TEST_OK(clgqa_bias_backward(rt, op_view(out_mem), op_view(x_mem), rows, cols));
        TEST_OK(clgqa_finish(rt));
        if (pass == 1)
            ck_assert_msg(rt->allocated_bytes == before, "%zu bytes allocated by a repeat",
                          rt->allocated_bytes - before);
    }
    clgqa_buffer_release(&x_mem);
    clgqa_buffer_release(&out_mem);
    free(x);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    ck_assert_int_eq(clgqa_sum(rt, clgqa_view_at(mem, 0), clgqa_view_at(mem, 1), 8),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_sum_squares(rt, clgqa_view_at(mem, 8), clgqa_view_at(mem, 0), 8),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_sum_squares"), "%s", clgqa_error_message());
    /* No chunks; a finish whose sum reaches past its output, or past the
     * partials; a table field beyond 32 bits. */
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_column_partials(rt, v, 0, v, 2, 4), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "chunk"), "%s", clgqa_error_message());
    clgqa_column_sum past_out = {0, 1, 4, 5}, past_partials = {0, 3, 4, 0};
    ck_assert_int_eq(clgqa_column_sums_finish(rt, v, v, v, &past_out, 1), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'out'"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_column_sums_finish(rt, v, v, v, &past_partials, 1),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'partials'"), "%s", clgqa_error_message());
    clgqa_column_sum huge = {(size_t)1 << 33, 1, 4, 0};
    cl_uint table[CLGQA_COLUMN_SUM_UINTS];
    ck_assert_int_eq(clgqa_column_sum_encode(&huge, 1, table), CLGQA_ERR_INVALID_ARG);
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_reduce");
    TCase *tc = tcase_create("reduce");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, integer_sums_are_exact, 0, OP_TEST_CLASSES);
    tcase_add_loop_test(tc, float_sums_match_reference_and_are_deterministic, 0, OP_TEST_CLASSES);
    tcase_add_loop_test(tc, divided_sum_squares_are_those_of_the_unscaled_input, 0,
                        OP_TEST_CLASSES);
    tcase_add_loop_test(tc, empty_input_sums_to_zero, 0, OP_TEST_CLASSES);
    tcase_add_loop_test(tc, bias_backward_matches_reference_and_is_deterministic, 0,
                        OP_TEST_CLASSES);
    tcase_add_loop_test(tc, column_partials_and_a_finish_table_match_reference, 0,
                        OP_TEST_CLASSES);
    tcase_add_test(tc, column_sum_plan_fills_gpus);
    tcase_add_loop_test(tc, reductions_allocate_nothing_after_the_first_call, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
