/* LayerNorm forward (with saved mean and rstd), its fusion with the bias
 * and residual add before it, and backward (the input gradient, and the
 * partial column sums of the parameter gradients and of the updated input
 * gradient, finished as the model does) against a float64 CPU reference,
 * whose gradients are first checked by central differences.
 *
 * Tolerances: the device works in float32 with tree sums over a row, so the
 * forward is checked to 1e-5 relative (plus 1e-5 absolute for outputs near
 * zero after the bias). Gradients are sums of terms of mixed sign; each is
 * checked to 1e-5 of the magnitude of its terms (plus (rows + 1) 2^-24 for
 * the sums over rows of dweight and dbias), so cancellation is allowed for
 * and a wrong formula, a missing term or a lost row still fails. Half
 * storage (precision 16-mixed) adds the store's rounding, 2^-11 relative
 * (see check_half_forward). */
#include <math.h>
#include <stdlib.h>

#include "ops.h"
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
    double *in = test_to_doubles(f_in, rows * cols), *weight = test_to_doubles(f_w, cols);
    double *bias = test_to_doubles(f_b, cols), *dout = test_to_doubles(f_dout, rows * cols);
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
    float *din0 = test_random_array(n, -1, 1), *sums0 = test_random_array(3 * cols, -1, 1);
    for (size_t r = 0; r < rows; r++) /* row means away from 0, as activations have */
        for (size_t c = 0; c < cols; c++)
            in[r * cols + c] += (float)r / rows * 3.0f - 1.0f;

    cl_mem in_mem = op_upload_padded(in, n), w_mem = op_upload_padded(weight, cols);
    cl_mem b_mem = op_upload_padded(bias, cols), out_mem = op_upload_padded(NULL, n);
    cl_mem mean_mem = op_upload_padded(NULL, rows), rstd_mem = op_upload_padded(NULL, rows);
    cl_mem dout_mem = op_upload_padded(dout, n), din_mem = op_upload_padded(din0, n);

    TEST_OK(clgqa_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, op_view(out_mem), op_view(mean_mem),
                                    op_view(rstd_mem), op_view(in_mem), op_view(w_mem),
                                    op_view(b_mem), rows, cols, eps));

    double *d_in = test_to_doubles(in, n), *d_w = test_to_doubles(weight, cols), *d_b = test_to_doubles(bias, cols);
    double *d_dout = test_to_doubles(dout, n);
    double *want = op_doubles(n), *want_mean = op_doubles(rows), *want_rstd = op_doubles(rows);
    float *got = op_floats(n), *got_rows = op_floats(rows);
    layernorm_ref(d_in, d_w, d_b, rows, cols, eps, want, want_mean, want_rstd);
    op_download_padded("out", out_mem, got, n);
    test_assert_close("layernorm out", got, want, n, 1e-5, 1e-5);
    op_download_padded("mean", mean_mem, got_rows, rows);
    test_assert_close("layernorm mean", got_rows, want_mean, rows, 1e-5, 1e-6);
    op_download_padded("rstd", rstd_mem, got_rows, rows);
    test_assert_close("layernorm rstd", got_rows, want_rstd, rows, 1e-5, 0);

    /* The parameter gradients and the updated din's column sums (the bias
     * gradient of the Linear added into the residual stream in the model)
     * side by side in one buffer: [dweight | dbias | din sums]. */
    double *din = op_doubles(n), *din_scale = op_doubles(n);
    double *sums = op_doubles(3 * cols), *sums_scale = op_doubles(3 * cols);
    layernorm_backward_ref(d_dout, d_in, d_w, rows, cols, eps, din, sums, sums + cols, din_scale,
                           sums_scale, sums_scale + cols);
    for (size_t i = 0; i < n; i++) {
        din[i] += din0[i];
        din_scale[i] += fabs(din0[i]);
    }
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++) {
            sums[2 * cols + c] += din[r * cols + c];
            sums_scale[2 * cols + c] += din_scale[r * cols + c];
        }
    for (size_t c = 0; c < 3 * cols; c++) {
        sums[c] += sums0[c];
        sums_scale[c] += fabs(sums0[c]);
    }

    /* This device's chunks, one, and more than rows (empty ones sum to 0,
     * and this one leaves the din sums out). */
    const size_t chunk_counts[] = {clgqa_layernorm_backward_chunks(rt), 1, rows + 3};
    float *got_sums = op_floats(3 * cols), *first_sums = op_floats(3 * cols);
    float *first_din = op_floats(n);
    for (size_t k = 0; k < 3; k++) {
        size_t chunks = chunk_counts[k];
        int residual = k < 2;
        /* Partials [dweight's | dbias's | din's], each [chunks, cols]. */
        cl_mem partials_mem = op_upload_padded(NULL, 3 * chunks * cols);
        cl_mem sums_mem = op_upload_padded(sums0, 3 * cols);
        clgqa_column_sum finish[3] = {{0, chunks, cols, 0},
                                      {chunks * cols, chunks, cols, cols},
                                      {2 * chunks * cols, chunks, cols, 2 * cols}};
        /* This device's chunks run twice: the same bits. */
        for (int run = 0; run < (k == 0 ? 2 : 1); run++) {
            op_write_padded(din_mem, din0, n);
            op_write_padded(sums_mem, sums0, 3 * cols);
            clgqa_view residual_view =
                residual ? clgqa_view_add(op_view(partials_mem), 2 * chunks * cols)
                         : clgqa_view_at(NULL, 0);
            TEST_OK(clgqa_layernorm_backward(rt, op_view(din_mem), op_view(partials_mem),
                                             residual_view, chunks, op_view(dout_mem),
                                             op_view(in_mem), op_view(mean_mem), op_view(rstd_mem),
                                             op_view(w_mem), rows, cols));
            op_column_sums_finish(op_view(sums_mem), op_view(partials_mem), finish, residual ? 3 : 2);
            op_download_padded("din", din_mem, got, n);
            op_assert_close_scaled("layernorm din", got, din, din_scale, n, 1e-5);
            op_download_padded("sums", sums_mem, got_sums, 3 * cols);
            op_assert_close_scaled("layernorm dweight", got_sums, sums, sums_scale, cols,
                                   1e-5 + (rows + 1) * U);
            op_assert_close_scaled("layernorm dbias", got_sums + cols, sums + cols,
                                   sums_scale + cols, cols, 1e-5 + (rows + 1) * U);
            if (residual) /* each din element within 1e-5 of its scale, then summed */
                op_assert_close_scaled("layernorm din sums", got_sums + 2 * cols, sums + 2 * cols,
                                       sums_scale + 2 * cols, cols, 1e-5 + (rows + 1) * U);
            else
                ck_assert_msg(memcmp(got_sums + 2 * cols, sums0 + 2 * cols, cols * sizeof *got) == 0,
                              "layernorm: din sums written though not asked for");
            /* Same inputs, same bits: the row sums have a fixed order. */
            if (run == 0) {
                memcpy(first_sums, got_sums, 3 * cols * sizeof *got);
                memcpy(first_din, got, n * sizeof *got);
            } else {
                ck_assert_msg(memcmp(first_sums, got_sums, 3 * cols * sizeof *got) == 0,
                              "layernorm parameter gradients differ between two identical runs");
                ck_assert_msg(memcmp(first_din, got, n * sizeof *got) == 0,
                              "layernorm din differs between two identical runs");
            }
        }
        clgqa_buffer_release(&partials_mem);
        clgqa_buffer_release(&sums_mem);
    }
    free(got_sums), free(first_sums), free(first_din);

    /* In place (out aliases in) gives the same output. */
    TEST_OK(clgqa_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, op_view(in_mem), op_view(mean_mem),
                                    op_view(rstd_mem), op_view(in_mem), op_view(w_mem),
                                    op_view(b_mem), rows, cols, eps));
    op_download_padded("in place", in_mem, got, n);
    test_assert_close("layernorm in place", got, want, n, 1e-5, 1e-5);

    cl_mem mems[] = {in_mem, w_mem, b_mem, out_mem, mean_mem, rstd_mem, dout_mem, din_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(in), free(weight), free(bias), free(dout), free(din0), free(sums0);
    free(d_in), free(d_w), free(d_b), free(d_dout), free(want), free(want_mean), free(want_rstd);
    free(got), free(got_rows), free(din), free(din_scale), free(sums), free(sums_scale);
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

/* The bias + residual add fused with the LayerNorm after it: x = residual
 * + (linear + bias) is two float additions, each within 2^-24 of the
 * magnitudes involved (checked at 2.5e-7 of |residual| + |linear| +
 * |bias|); the LayerNorm is checked as the plain forward's, on x as the
 * host computes it in float (the same two roundings). x written over
 * linear (as the model does, the GEMM's output) and apart from it. With
 * drop path's per-sample scales (`scaled`: samples of 3 rows, each dropped
 * (0), kept as is (1) or scaled by 1 / keep for keep 0.8 and 0.9) the
 * branch is multiplied first: one more rounding, 3.5e-7. */
static void check_residual_forward(size_t rows, size_t cols, float eps, int scaled) {
    clgqa_runtime *rt = test_runtime();
    size_t n = rows * cols, rows_per_scale = 3, samples = (rows + 2) / 3;
    const float choices[4] = {0.0f, 1.0f, 1.0f / 0.8f, 1.0f / 0.9f};
    float *scales = op_floats(samples);
    for (size_t b = 0; b < samples; b++)
        scales[b] = scaled ? choices[b % 4] : 1.0f;
    float *residual = test_random_array(n, -2, 2), *linear = test_random_array(n, -2, 2);
    float *linear_bias = test_random_array(cols, -1, 1), *weight = test_random_array(cols, 0.5f, 1.5f);
    float *bias = test_random_array(cols, -1, 1), *got = op_floats(n), *got_rows = op_floats(rows);
    double *want_x = op_doubles(n), *x_scale = op_doubles(n), *x = op_doubles(n);
    double *want = op_doubles(n), *want_mean = op_doubles(rows), *want_rstd = op_doubles(rows);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            float sc = scales[r / rows_per_scale];
            residual[i] += (float)r / rows * 3.0f - 1.0f; /* row means away from 0 */
            want_x[i] = (double)residual[i] + ((double)linear[i] + linear_bias[c]) * sc;
            x_scale[i] = fabs(residual[i]) + (fabs(linear[i]) + fabs(linear_bias[c])) * sc;
            x[i] = residual[i] + (linear[i] + linear_bias[c]) * sc;
        }
    double *d_w = test_to_doubles(weight, cols), *d_b = test_to_doubles(bias, cols);
    layernorm_ref(x, d_w, d_b, rows, cols, eps, want, want_mean, want_rstd);
    cl_mem residual_mem = op_upload_padded(residual, n), linear_mem = op_upload_padded(linear, n);
    cl_mem lb_mem = op_upload_padded(linear_bias, cols), w_mem = op_upload_padded(weight, cols);
    cl_mem b_mem = op_upload_padded(bias, cols), x_mem = op_upload_padded(NULL, n);
    cl_mem out_mem = op_upload_padded(NULL, n), mean_mem = op_upload_padded(NULL, rows);
    cl_mem rstd_mem = op_upload_padded(NULL, rows), scales_mem = op_upload_padded(scales, samples);
    const clgqa_view unscaled = {NULL, 0};
    for (int in_place = 0; in_place < 2; in_place++) {
        cl_mem target = in_place ? linear_mem : x_mem;
        if (in_place)
            op_write_padded(linear_mem, linear, n);
        TEST_OK(clgqa_residual_layernorm_forward(
            rt, CLGQA_STORAGE_FLOAT, op_view(target), op_view(residual_mem), op_view(linear_mem),
            op_view(lb_mem), scaled ? op_view(scales_mem) : unscaled, rows_per_scale,
            op_view(out_mem), op_view(mean_mem), op_view(rstd_mem), op_view(w_mem), op_view(b_mem),
            rows, cols, eps));
        op_download_padded("residual x", target, got, n);
        op_assert_close_scaled("residual x", got, want_x, x_scale, n, scaled ? 3.5e-7 : 2.5e-7);
        op_download_padded("residual layernorm out", out_mem, got, n);
        test_assert_close("residual layernorm out", got, want, n, 1e-5, 1e-5);
        op_download_padded("residual layernorm mean", mean_mem, got_rows, rows);
        test_assert_close("residual layernorm mean", got_rows, want_mean, rows, 1e-5, 1e-6);
        op_download_padded("residual layernorm rstd", rstd_mem, got_rows, rows);
        test_assert_close("residual layernorm rstd", got_rows, want_rstd, rows, 1e-5, 0);
    }
    cl_mem mems[] = {residual_mem, linear_mem, lb_mem, w_mem, b_mem, x_mem, out_mem, mean_mem,
                     rstd_mem, scales_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(residual), free(linear), free(linear_bias), free(weight), free(bias), free(got);
    free(got_rows), free(want_x), free(x_scale), free(x), free(want), free(want_mean);
    free(want_rstd), free(d_w), free(d_b), free(scales);
}

/* _i as forward_and_backward_match_reference. */
START_TEST(residual_forward_matches_reference) {
    op_test_class(_i & 1);
    op_test_pad = _i & 2 ? 4 : OP_TEST_PAD;
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        const size_t *shape = test_small() ? small_shapes[s] : shapes[s];
        check_residual_forward(shape[0], shape[1], 1e-6f, 0);
        check_residual_forward(shape[0], shape[1], 1e-6f, 1);
    }
}
END_TEST

/* The half storage of precision 16-mixed (clgqa_storage; docs/design.md,
 * "Mixed precision"): out in half, in (the residual stream), mean, rstd and
 * the parameters in float, for both forwards. The device computes as in
 * float storage and rounds the stored result to half, so with y the
 * float64 value and y_f the float result (|y_f - y| <= 1e-5 |y| + 1e-5,
 * the float tests' bound: rows of K <= 1000 columns reduce by trees of
 * ceil(log2 K) <= 10 levels, <= 6e-7 relative for the mean and variance,
 * well inside it) the half h = fl16(y_f) has |h - y_f| <= 2^-11 |y_f| in
 * half's normal range and <= 2^-25 below it, so
 *     |h - y| <= (2^-11 + (1 + 2^-11) 1e-5) |y| + (1 + 2^-11) 1e-5 + 2^-25.
 * The rounding is 50 times the float error: a store that truncated (up to
 * 2^-10) would fail. mean and rstd keep the float bounds. */
static void check_half_forward(size_t rows, size_t cols, float eps) {
    clgqa_runtime *rt = test_runtime();
    const clgqa_storage half = CLGQA_STORAGE_HALF;
    const double rel = OP_HALF_U + (1 + OP_HALF_U) * 1e-5;
    const double abs = (1 + OP_HALF_U) * 1e-5 + OP_HALF_SUBNORMAL_ERR;
    size_t n = rows * cols;
    float *in = test_random_array(n, -2, 2), *linear = test_random_array(n, -2, 2);
    float *linear_bias = test_random_array(cols, -1, 1);
    float *weight = test_random_array(cols, 0.5f, 1.5f), *bias = test_random_array(cols, -1, 1);
    float *got = op_floats(n), *got_rows = op_floats(rows);
    double *x = op_doubles(n), *want = op_doubles(n), *want_mean = op_doubles(rows),
           *want_rstd = op_doubles(rows);
    for (size_t r = 0; r < rows; r++) /* row means away from 0, as activations have */
        for (size_t c = 0; c < cols; c++)
            in[r * cols + c] += (float)r / rows * 3.0f - 1.0f;
    double *d_w = test_to_doubles(weight, cols), *d_b = test_to_doubles(bias, cols);
    cl_mem in_mem = op_upload_padded(in, n), linear_mem = op_upload_padded(linear, n);
    cl_mem lb_mem = op_upload_padded(linear_bias, cols), w_mem = op_upload_padded(weight, cols);
    cl_mem b_mem = op_upload_padded(bias, cols), x_mem = op_upload_padded(NULL, n);
    cl_mem out_mem = op_upload_padded_half(NULL, n), mean_mem = op_upload_padded(NULL, rows);
    cl_mem rstd_mem = op_upload_padded(NULL, rows);

    for (int fused = 0; fused < 2; fused++) {
        const char *what = fused ? "residual layernorm (half out)" : "layernorm (half out)";
        if (fused) { /* x = in + (linear + linear_bias), two float additions */
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < cols; c++) {
                    size_t i = r * cols + c;
                    x[i] = in[i] + (linear[i] + linear_bias[c]);
                }
            TEST_OK(clgqa_residual_layernorm_forward(
                rt, half, op_view(x_mem), op_view(in_mem), op_view(linear_mem), op_view(lb_mem),
                clgqa_view_at(NULL, 0), 1, op_view(out_mem), op_view(mean_mem), op_view(rstd_mem), op_view(w_mem),
                op_view(b_mem), rows, cols, eps));
        } else {
            for (size_t i = 0; i < n; i++)
                x[i] = in[i];
            TEST_OK(clgqa_layernorm_forward(rt, half, op_view(out_mem), op_view(mean_mem),
                                            op_view(rstd_mem), op_view(in_mem), op_view(w_mem),
                                            op_view(b_mem), rows, cols, eps));
        }
        layernorm_ref(x, d_w, d_b, rows, cols, eps, want, want_mean, want_rstd);
        op_download_padded_half(what, out_mem, got, n);
        test_assert_close(what, got, want, n, rel, abs);
        op_download_padded("mean (half out)", mean_mem, got_rows, rows);
        test_assert_close("layernorm mean (half out)", got_rows, want_mean, rows, 1e-5, 1e-6);
        op_download_padded("rstd (half out)", rstd_mem, got_rows, rows);
        test_assert_close("layernorm rstd (half out)", got_rows, want_rstd, rows, 1e-5, 0);
    }

    cl_mem mems[] = {in_mem, linear_mem, lb_mem, w_mem, b_mem, x_mem, out_mem, mean_mem, rstd_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(in), free(linear), free(linear_bias), free(weight), free(bias), free(got);
    free(got_rows), free(x), free(want), free(want_mean), free(want_rstd), free(d_w), free(d_b);
}

/* _i as forward_and_backward_match_reference (an offset of 4 takes the
 * vstore_half4 path where cols % 4 == 0). vload_half/vstore_half are core
 * OpenCL C 1.2: this runs on every device, cl_khr_fp16 or not. */
START_TEST(half_storage_forwards_match_reference) {
    op_test_class(_i & 1);
    op_test_pad = _i & 2 ? 4 : OP_TEST_PAD;
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        const size_t *shape = test_small() ? small_shapes[s] : shapes[s];
        check_half_forward(shape[0], shape[1], 1e-6f);
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
    ck_assert_int_eq(
        clgqa_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, v, v, v, v, v, v, 2, 4, 0.0f),
        CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(
        clgqa_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, v, v, v, v, v, v, 3, 4, 1e-6f),
        CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_layernorm_forward"), "%s",
                  clgqa_error_message());
    /* A half out over its own float input (in place is float only). */
    ck_assert_int_eq(
        clgqa_layernorm_forward(rt, CLGQA_STORAGE_HALF, v, v, v, v, v, v, 2, 4, 1e-6f),
        CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "in place"), "%s", clgqa_error_message());
    /* A residual shorter than x; no chunks; partials too short for the
     * chunks asked for. */
    clgqa_view none = clgqa_view_at(NULL, 0);
    ck_assert_int_eq(clgqa_residual_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, v,
                                                      clgqa_view_at(mem, 1), v, v, none, 1, v, v,
                                                      v, v, v, 2, 4, 1e-6f),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'residual'"), "%s", clgqa_error_message());
    /* Scales for 2 rows of 1 sample each, from the buffer's last float. */
    ck_assert_int_eq(clgqa_residual_layernorm_forward(rt, CLGQA_STORAGE_FLOAT, v, v, v, v,
                                                      clgqa_view_at(mem, 7), 1, v, v, v, v, v, 2,
                                                      4, 1e-6f),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'branch_scales'"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_layernorm_backward(rt, v, v, none, 0, v, v, v, v, v, 2, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "chunk"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_layernorm_backward(rt, v, v, none, 2, v, v, v, v, v, 2, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'params'"), "%s", clgqa_error_message());
    clgqa_buffer_release(&mem);
}
END_TEST

/* The GPU path holds a row in one team of work-items (16 columns each):
 * rows wider than the device's work-groups or local memory allow are
 * refused with the op's name, not launched (70000 columns: teams of 8192
 * work-items, beyond the 4096 PoCL and Intel's runtime allow this kernel
 * and Oclgrind's 1024; a device allowing them would lack the 411 KB of
 * local memory). */
START_TEST(rows_too_wide_for_the_gpu_path_are_refused) {
    op_test_class(1);
    clgqa_runtime *rt = test_runtime();
    const size_t cols = 70000;
    float *row = test_random_array(cols, -1, 1);
    cl_mem mem = test_upload(row, cols), params = NULL;
    clgqa_view v = clgqa_view_at(mem, 0), none = clgqa_view_at(NULL, 0);
    TEST_OK(clgqa_buffer_create(rt, 2 * cols * sizeof(float), &params));
    ck_assert_int_eq(clgqa_layernorm_backward(rt, v, clgqa_view_at(params, 0), none, 1, v, v, v,
                                              v, v, 1, cols),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_layernorm_backward"), "%s",
                  clgqa_error_message());
    clgqa_buffer_release(&mem);
    clgqa_buffer_release(&params);
    free(row);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_layernorm");
    TCase *tc = tcase_create("layernorm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, reference_gradients_match_finite_differences);
    tcase_add_loop_test(tc, forward_and_backward_match_reference, 0, 2 * OP_TEST_CLASSES);
    tcase_add_loop_test(tc, residual_forward_matches_reference, 0, 2 * OP_TEST_CLASSES);
    tcase_add_loop_test(tc, half_storage_forwards_match_reference, 0, 2 * OP_TEST_CLASSES);
    tcase_add_loop_test(tc, eps_is_honoured, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, rows_too_wide_for_the_gpu_path_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
