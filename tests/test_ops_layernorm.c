/* LayerNorm forward (with saved mean and rstd) and backward against a
 * float64 CPU reference, whose gradients are first checked by central
 * differences.
 *
 * Tolerances: the device works in float32 with tree sums over a row, so the
 * forward is checked to 1e-5 relative (plus 1e-5 absolute for outputs near
 * zero after the bias). Gradients are sums of terms of mixed sign; each is
 * checked to 1e-5 of the magnitude of its terms (plus (rows + 1) 2^-24 for
 * the sums over rows of dweight and dbias), so cancellation is allowed for
 * and a wrong formula, a missing term or a lost row still fails. */
#include <math.h>
#include <stdlib.h>

#include "clgqa/ops.h"
#include "support/op_tests.h"

#define U 5.9604644775390625e-08 /* 2^-24 */

/* float64 reference forward; mean and rstd may be NULL. */
static void layernorm_ref(const double *in, const double *weight, const double *bias, size_t rows,
                          size_t cols, double eps, double *out, double *mean, double *rstd) {
    for (size_t r = 0; r < rows; r++) {
        const double *x = in + r * cols;
        double m = 0, var = 0;
        for (size_t c = 0; c < cols; c++)
            m += x[c];
        m /= cols;
        for (size_t c = 0; c < cols; c++)
            var += (x[c] - m) * (x[c] - m);
        double s = 1.0 / sqrt(var / cols + eps);
        for (size_t c = 0; c < cols; c++)
            out[r * cols + c] = (x[c] - m) * s * weight[c] + bias[c];
        if (mean)
            mean[r] = m;
        if (rstd)
            rstd[r] = s;
    }
}

/* float64 reference backward (gradients only, not accumulated), and the
 * magnitude of the terms behind each gradient element (see the header). */
static void layernorm_backward_ref(const double *dout, const double *in, const double *weight,
                                   size_t rows, size_t cols, double eps, double *din,
                                   double *dweight, double *dbias, double *din_scale,
                                   double *dweight_scale, double *dbias_scale) {
    double *out = op_doubles(rows * cols), *mean = op_doubles(rows), *rstd = op_doubles(rows);
    double *zero = op_doubles(cols);
    layernorm_ref(in, weight, zero, rows, cols, eps, out, mean, rstd);
    for (size_t c = 0; c < cols; c++)
        dweight[c] = dbias[c] = dweight_scale[c] = dbias_scale[c] = 0;
    for (size_t r = 0; r < rows; r++) {
        double g_mean = 0, gx_mean = 0, g_abs = 0, gx_abs = 0;
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            double g = dout[i] * weight[c], xhat = (in[i] - mean[r]) * rstd[r];
            g_mean += g / cols;
            gx_mean += g * xhat / cols;
            g_abs += fabs(g) / cols;
            gx_abs += fabs(g * xhat) / cols;
            dweight[c] += dout[i] * xhat;
            dbias[c] += dout[i];
            dweight_scale[c] += fabs(dout[i] * xhat);
            dbias_scale[c] += fabs(dout[i]);
        }
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            double g = dout[i] * weight[c], xhat = (in[i] - mean[r]) * rstd[r];
            din[i] = rstd[r] * (g - g_mean - xhat * gx_mean);
            din_scale[i] = rstd[r] * (fabs(g) + g_abs + fabs(xhat) * gx_abs);
        }
    }
    free(out);
    free(mean);
    free(rstd);
    free(zero);
}

static double *to_doubles(const float *x, size_t n) {
    double *d = op_doubles(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* sum(out * dout): the scalar whose gradient the backward computes. */
static double probe_loss(const double *in, const double *weight, const double *bias,
                         const double *dout, size_t rows, size_t cols, double eps) {
    double *out = op_doubles(rows * cols), loss = 0;
    layernorm_ref(in, weight, bias, rows, cols, eps, out, NULL, NULL);
    for (size_t i = 0; i < rows * cols; i++)
        loss += out[i] * dout[i];
    free(out);
    return loss;
}

/* Central difference of probe_loss in x[i]. h = 1e-5: truncation
 * ~h^2 |f'''| ~ 1e-9, rounding ~1e-16 |loss| / h ~ 1e-10. */
static double central_difference(double *x, size_t i, const double *in, const double *weight,
                                 const double *bias, const double *dout, size_t rows, size_t cols,
                                 double eps) {
    const double h = 1e-5, saved = x[i];
    x[i] = saved + h;
    double up = probe_loss(in, weight, bias, dout, rows, cols, eps);
    x[i] = saved - h;
    double down = probe_loss(in, weight, bias, dout, rows, cols, eps);
    x[i] = saved;
    return (up - down) / (2 * h);
}

START_TEST(reference_gradients_match_finite_differences) {
    const size_t rows = 3, cols = 37;
    const double eps = 1e-6;
    float *f_in = test_random_array(rows * cols, -2, 2), *f_w = test_random_array(cols, 0.5f, 1.5f);
    float *f_b = test_random_array(cols, -1, 1), *f_dout = test_random_array(rows * cols, -1, 1);
    double *in = to_doubles(f_in, rows * cols), *weight = to_doubles(f_w, cols);
    double *bias = to_doubles(f_b, cols), *dout = to_doubles(f_dout, rows * cols);
    double *din = op_doubles(rows * cols), *dweight = op_doubles(cols), *dbias = op_doubles(cols);
    double *s1 = op_doubles(rows * cols), *s2 = op_doubles(cols), *s3 = op_doubles(cols);
    layernorm_backward_ref(dout, in, weight, rows, cols, eps, din, dweight, dbias, s1, s2, s3);
    for (size_t i = 0; i < rows * cols; i++) {
        double fd = central_difference(in, i, in, weight, bias, dout, rows, cols, eps);
        ck_assert_msg(fabs(fd - din[i]) < 1e-7, "din[%zu]: analytic %.10g, fd %.10g", i, din[i], fd);
    }
    for (size_t c = 0; c < cols; c++) {
        double fd_w = central_difference(weight, c, in, weight, bias, dout, rows, cols, eps);
        double fd_b = central_difference(bias, c, in, weight, bias, dout, rows, cols, eps);
        ck_assert_msg(fabs(fd_w - dweight[c]) < 1e-7, "dweight[%zu]: %.10g vs fd %.10g", c,
                      dweight[c], fd_w);
        ck_assert_msg(fabs(fd_b - dbias[c]) < 1e-7, "dbias[%zu]: %.10g vs fd %.10g", c, dbias[c],
                      fd_b);
    }
    free(f_in), free(f_w), free(f_b), free(f_dout);
    free(in), free(weight), free(bias), free(dout), free(din), free(dweight), free(dbias);
    free(s1), free(s2), free(s3);
}
END_TEST

/* (rows, cols): odd sizes, the model's width, rows longer than a
 * work-group, 1-wide, tall enough for several chunks of the parameter
 * gradients' two-stage sums on the GPU path; fewer rows under
 * CLGQA_TEST_SMALL (Oclgrind). */
static const size_t shapes[][2] = {{37, 389}, {65, 192}, {3, 1000}, {1, 1}, {1029, 7},
                                   {3001, 66}};
static const size_t small_shapes[][2] = {{5, 389}, {2, 192}, {1, 300}, {1, 1}, {41, 7},
                                         {600, 9}};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

static void check_shape(size_t rows, size_t cols, float eps) {
    clgqa_runtime *rt = test_runtime();
    size_t n = rows * cols;
    float *in = test_random_array(n, -2, 2), *weight = test_random_array(cols, 0.5f, 1.5f);
    float *bias = test_random_array(cols, -1, 1), *dout = test_random_array(n, -1, 1);
    /* Accumulation targets start non-zero: backward must add, not assign. */
    float *din0 = test_random_array(n, -1, 1), *dweight0 = test_random_array(cols, -1, 1);
    float *dbias0 = test_random_array(cols, -1, 1);
    for (size_t r = 0; r < rows; r++) /* row means away from 0, as activations have */
        for (size_t c = 0; c < cols; c++)
            in[r * cols + c] += (float)r / rows * 3.0f - 1.0f;

    cl_mem in_mem = op_upload_padded(in, n), w_mem = op_upload_padded(weight, cols);
    cl_mem b_mem = op_upload_padded(bias, cols), out_mem = op_upload_padded(NULL, n);
    cl_mem mean_mem = op_upload_padded(NULL, rows), rstd_mem = op_upload_padded(NULL, rows);
    cl_mem dout_mem = op_upload_padded(dout, n), din_mem = op_upload_padded(din0, n);
    cl_mem dw_mem = op_upload_padded(dweight0, cols), db_mem = op_upload_padded(dbias0, cols);

    TEST_OK(clgqa_layernorm_forward(rt, op_view(out_mem), op_view(mean_mem), op_view(rstd_mem),
                                    op_view(in_mem), op_view(w_mem), op_view(b_mem), rows, cols,
                                    eps));
    TEST_OK(clgqa_layernorm_backward(rt, op_view(din_mem), op_view(dw_mem), op_view(db_mem),
                                     op_view(dout_mem), op_view(in_mem), op_view(mean_mem),
                                     op_view(rstd_mem), op_view(w_mem), rows, cols));

    double *d_in = to_doubles(in, n), *d_w = to_doubles(weight, cols), *d_b = to_doubles(bias, cols);
    double *d_dout = to_doubles(dout, n);
    double *want = op_doubles(n), *want_mean = op_doubles(rows), *want_rstd = op_doubles(rows);
    float *got = op_floats(n), *got_rows = op_floats(rows);
    layernorm_ref(d_in, d_w, d_b, rows, cols, eps, want, want_mean, want_rstd);
    op_download_padded("out", out_mem, got, n);
    test_assert_close("layernorm out", got, want, n, 1e-5, 1e-5);
    op_download_padded("mean", mean_mem, got_rows, rows);
    test_assert_close("layernorm mean", got_rows, want_mean, rows, 1e-5, 1e-6);
    op_download_padded("rstd", rstd_mem, got_rows, rows);
    test_assert_close("layernorm rstd", got_rows, want_rstd, rows, 1e-5, 0);

    double *din = op_doubles(n), *dweight = op_doubles(cols), *dbias = op_doubles(cols);
    double *din_scale = op_doubles(n), *dw_scale = op_doubles(cols), *db_scale = op_doubles(cols);
    layernorm_backward_ref(d_dout, d_in, d_w, rows, cols, eps, din, dweight, dbias, din_scale,
                           dw_scale, db_scale);
    for (size_t i = 0; i < n; i++) {
        din[i] += din0[i];
        din_scale[i] += fabs(din0[i]);
    }
    for (size_t c = 0; c < cols; c++) {
        dweight[c] += dweight0[c];
        dbias[c] += dbias0[c];
        dw_scale[c] += fabs(dweight0[c]);
        db_scale[c] += fabs(dbias0[c]);
    }
    op_download_padded("din", din_mem, got, n);
    op_assert_close_scaled("layernorm din", got, din, din_scale, n, 1e-5);
    float *got_cols = op_floats(cols);
    op_download_padded("dweight", dw_mem, got_cols, cols);
    op_assert_close_scaled("layernorm dweight", got_cols, dweight, dw_scale, cols,
                           1e-5 + (rows + 1) * U);
    op_download_padded("dbias", db_mem, got_cols, cols);
    op_assert_close_scaled("layernorm dbias", got_cols, dbias, db_scale, cols,
                           1e-5 + (rows + 1) * U);

    /* Same inputs, same parameter-gradient bits: the row sums have a fixed
     * order. */
    float *first_dw = op_floats(cols), *first_db = op_floats(cols), *again = op_floats(cols);
    op_download_padded("dweight", dw_mem, first_dw, cols);
    op_download_padded("dbias", db_mem, first_db, cols);
    op_write_padded(dw_mem, dweight0, cols);
    op_write_padded(db_mem, dbias0, cols);
    TEST_OK(clgqa_layernorm_backward(rt, op_view(din_mem), op_view(dw_mem), op_view(db_mem),
                                     op_view(dout_mem), op_view(in_mem), op_view(mean_mem),
                                     op_view(rstd_mem), op_view(w_mem), rows, cols));
    op_download_padded("dweight again", dw_mem, again, cols);
    ck_assert_msg(memcmp(again, first_dw, cols * sizeof *again) == 0,
                  "layernorm dweight differs between two identical runs");
    op_download_padded("dbias again", db_mem, again, cols);
    ck_assert_msg(memcmp(again, first_db, cols * sizeof *again) == 0,
                  "layernorm dbias differs between two identical runs");
    free(first_dw), free(first_db), free(again);

    /* In place (out aliases in) gives the same output. */
    TEST_OK(clgqa_layernorm_forward(rt, op_view(in_mem), op_view(mean_mem), op_view(rstd_mem),
                                    op_view(in_mem), op_view(w_mem), op_view(b_mem), rows, cols,
                                    eps));
    op_download_padded("in place", in_mem, got, n);
    test_assert_close("layernorm in place", got, want, n, 1e-5, 1e-5);

    cl_mem mems[] = {in_mem, w_mem, b_mem, out_mem, mean_mem, rstd_mem, dout_mem, din_mem, dw_mem, db_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(in), free(weight), free(bias), free(dout), free(din0), free(dweight0), free(dbias0);
    free(d_in), free(d_w), free(d_b), free(d_dout), free(want), free(want_mean), free(want_rstd);
    free(got), free(got_rows), free(got_cols), free(din), free(dweight), free(dbias);
    free(din_scale), free(dw_scale), free(db_scale);
}

/* _i: the device class (bit 0) and the tensors' offset (bit 1: 16-byte
 * aligned, so rows with cols % 4 == 0 take the float4 path). */
START_TEST(forward_and_backward_match_reference) {
    op_test_class(_i & 1);
    op_test_pad = _i & 2 ? 4 : OP_TEST_PAD;
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        const size_t *shape = test_small() ? small_shapes[s] : shapes[s];
        check_shape(shape[0], shape[1], 1e-6f);
    }
}
END_TEST

START_TEST(eps_is_honoured) {
    op_test_class(_i);
    op_test_pad = OP_TEST_PAD;
    /* A large eps changes rstd visibly: the kernel must use the given one. */
    check_shape(op_test_size(37, 3), 389, 0.5f);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_layernorm_forward(rt, v, v, v, v, v, v, 2, 4, 0.0f),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_layernorm_forward(rt, v, v, v, v, v, v, 3, 4, 1e-6f),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_layernorm_forward"), "%s",
                  clgqa_error_message());
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_layernorm");
    TCase *tc = tcase_create("layernorm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, reference_gradients_match_finite_differences);
    tcase_add_loop_test(tc, forward_and_backward_match_reference, 0, 2 * OP_TEST_CLASSES);
    tcase_add_loop_test(tc, eps_is_honoured, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
