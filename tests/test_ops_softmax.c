/* Row softmax forward and backward against a float64 CPU reference, whose
 * gradient is first checked by central differences.
 *
 * Tolerances: exp is allowed 3 ulp and the row sum is a float tree sum, so
 * probabilities are checked to 1e-5 relative. The backward is a difference
 * of terms; it is checked to 1e-5 of the magnitude of its terms,
 * out * (|dout| + sum |dout * out|) + |din before|. */
#include <math.h>
#include <stdlib.h>

#include "clgqa/ops.h"
#include "support/op_tests.h"

static void softmax_ref(const double *in, size_t rows, size_t cols, double *out) {
    for (size_t r = 0; r < rows; r++) {
        const double *x = in + r * cols;
        double max = x[0], sum = 0;
        for (size_t c = 1; c < cols; c++)
            max = fmax(max, x[c]);
        for (size_t c = 0; c < cols; c++)
            sum += exp(x[c] - max);
        for (size_t c = 0; c < cols; c++)
            out[r * cols + c] = exp(x[c] - max) / sum;
    }
}

/* din = out * (dout - sum dout * out) and the magnitude of its terms. */
static void softmax_backward_ref(const double *dout, const double *out, size_t rows, size_t cols,
                                 double *din, double *scale) {
    for (size_t r = 0; r < rows; r++) {
        double dot = 0, dot_abs = 0;
        for (size_t c = 0; c < cols; c++) {
            dot += dout[r * cols + c] * out[r * cols + c];
            dot_abs += fabs(dout[r * cols + c] * out[r * cols + c]);
        }
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            din[i] = out[i] * (dout[i] - dot);
            scale[i] = out[i] * (fabs(dout[i]) + dot_abs);
        }
    }
}

static double *to_doubles(const float *x, size_t n) {
    double *d = op_doubles(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

START_TEST(reference_gradient_matches_finite_differences) {
    /* Probe loss sum(out * dout); h = 1e-5: truncation ~1e-10, rounding
     * ~1e-11; tolerance 1e-8. */
    const size_t rows = 3, cols = 29;
    float *f_in = test_random_array(rows * cols, -4, 4), *f_dout = test_random_array(rows * cols, -1, 1);
    double *in = to_doubles(f_in, rows * cols), *dout = to_doubles(f_dout, rows * cols);
    double *out = op_doubles(rows * cols), *din = op_doubles(rows * cols);
    double *scale = op_doubles(rows * cols);
    softmax_ref(in, rows, cols, out);
    softmax_backward_ref(dout, out, rows, cols, din, scale);
    for (size_t i = 0; i < rows * cols; i++) {
        double saved = in[i], h = 1e-5, up = 0, down = 0;
        in[i] = saved + h;
        softmax_ref(in, rows, cols, out);
        for (size_t j = 0; j < rows * cols; j++)
            up += out[j] * dout[j];
        in[i] = saved - h;
        softmax_ref(in, rows, cols, out);
        for (size_t j = 0; j < rows * cols; j++)
            down += out[j] * dout[j];
        in[i] = saved;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - din[i]) < 1e-8, "din[%zu]: analytic %.10g, fd %.10g", i, din[i], fd);
    }
    free(f_in), free(f_dout), free(in), free(dout), free(out), free(din), free(scale);
}
END_TEST

static const size_t shapes[][2] = {{37, 389}, {65, 65}, {3, 1000}, {1, 1}, {1029, 7}};
static const size_t small_shapes[][2] = {{5, 389}, {3, 65}, {1, 300}, {1, 1}, {41, 7}};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

/* Inputs in [lo, hi): with lo = 80, exp without the max subtraction
 * overflows float. */
static void check_shape(size_t rows, size_t cols, float lo, float hi) {
    clgqa_runtime *rt = test_runtime();
    size_t n = rows * cols;
    float *in = test_random_array(n, lo, hi), *dout = test_random_array(n, -1, 1);
    float *din0 = test_random_array(n, -1, 1), *got = op_floats(n);
    cl_mem in_mem = op_upload_padded(in, n), out_mem = op_upload_padded(NULL, n);
    cl_mem dout_mem = op_upload_padded(dout, n), din_mem = op_upload_padded(din0, n);

    TEST_OK(clgqa_softmax_forward(rt, op_view(out_mem), op_view(in_mem), rows, cols));
    TEST_OK(clgqa_softmax_backward(rt, op_view(din_mem), op_view(dout_mem), op_view(out_mem), rows,
                                   cols));

    double *d_in = to_doubles(in, n), *d_dout = to_doubles(dout, n);
    double *want = op_doubles(n), *din = op_doubles(n), *scale = op_doubles(n);
    softmax_ref(d_in, rows, cols, want);
    op_download_padded("softmax out", out_mem, got, n);
    test_assert_close("softmax out", got, want, n, 1e-5, 0);

    /* The reference backward takes the device's probabilities, so it checks
     * the backward kernel alone. */
    double *got_out = to_doubles(got, n);
    softmax_backward_ref(d_dout, got_out, rows, cols, din, scale);
    for (size_t i = 0; i < n; i++) {
        din[i] += din0[i];
        scale[i] += fabs(din0[i]);
    }
    op_download_padded("softmax din", din_mem, got, n);
    op_assert_close_scaled("softmax din", got, din, scale, n, 1e-5);

    /* In place (out aliases in). */
    TEST_OK(clgqa_softmax_forward(rt, op_view(in_mem), op_view(in_mem), rows, cols));
    op_download_padded("softmax in place", in_mem, got, n);
    test_assert_close("softmax in place", got, want, n, 1e-5, 0);

    clgqa_buffer_release(&in_mem), clgqa_buffer_release(&out_mem);
    clgqa_buffer_release(&dout_mem), clgqa_buffer_release(&din_mem);
    free(in), free(dout), free(din0), free(got), free(d_in), free(d_dout), free(want), free(din);
    free(scale), free(got_out);
}

START_TEST(forward_and_backward_match_reference) {
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        const size_t *shape = test_small() ? small_shapes[s] : shapes[s];
        check_shape(shape[0], shape[1], -6, 6);
    }
}
END_TEST

START_TEST(large_inputs_are_max_subtracted) {
    check_shape(op_test_size(37, 3), 389, 80, 100);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_softmax_forward(rt, v, v, 3, 3), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_softmax_backward(rt, v, clgqa_view_at(mem, 1), v, 2, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "dout"), "%s", clgqa_error_message());
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_softmax");
    TCase *tc = tcase_create("softmax");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, reference_gradient_matches_finite_differences);
    tcase_add_test(tc, forward_and_backward_match_reference);
    tcase_add_test(tc, large_inputs_are_max_subtracted);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
