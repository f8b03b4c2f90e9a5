/* Deterministic sum and sum of squares against float64 references.
 *
 * Small integers make every partial sum exact in float (|sum| < 2^24), so
 * those cases must match exactly: a dropped, repeated or misplaced element
 * changes the result. Random floats are checked against the bound for the
 * kernel's summation (each work-item's chain plus two trees of at most 256,
 * all well under 150 terms deep for these sizes): 1e-5 x sum |terms|. */
#include <math.h>
#include <stdlib.h>

#include "clgqa/ops.h"
#include "support/op_tests.h"

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

START_TEST(empty_input_sums_to_zero) {
    clgqa_runtime *rt = test_runtime();
    float one = 3.5f;
    cl_mem out_mem = op_upload_padded(&one, 1);
    TEST_OK(clgqa_sum(rt, op_view(out_mem), op_view(out_mem), 0));
    op_download_padded("empty sum", out_mem, &one, 1);
    ck_assert_msg(one == 0.0f, "empty sum = %g", (double)one);
    clgqa_buffer_release(&out_mem);
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
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_reduce");
    TCase *tc = tcase_create("reduce");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, integer_sums_are_exact);
    tcase_add_test(tc, float_sums_match_reference_and_are_deterministic);
    tcase_add_test(tc, empty_input_sums_to_zero);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
