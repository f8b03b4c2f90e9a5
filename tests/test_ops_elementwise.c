/* Element-wise ops against a float64 CPU reference, on both device classes'
 * code paths: fill, copy, scale, add, accumulate, bias add, bias + exact
 * GELU forward and backward with the bias gradient it sums (bias add's
 * gradient is tested with the other reductions in test_ops_reduce.c; bias
 * + residual add with the LayerNorm it is fused with, in
 * test_ops_layernorm.c).
 *
 * GELU's half storage (precision 16-mixed) as well, and the conversions
 * of activations between half and float (exact, bit for bit).
 *
 * Tolerances: scale/add/accumulate/bias_add are one IEEE float operation per
 * element, correctly rounded: relative error <= 2^-24, checked at 2.5e-7.
 * GELU: 1e-5 relative (see the test); in half storage plus the store's
 * rounding, 2^-11 relative (see gelu_half_storage_matches_reference). */
#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "support/op_tests.h"

#define ONE_ROUNDING 2.5e-7 /* a few units of 2^-24 */

/* n = 1, a size just over one work-group, a large odd size. */
static size_t sizes(size_t i) {
    const size_t n[] = {1, 257, 1000003};
    return i < 2 ? n[i] : op_test_size(n[2], 4099);
}
#define SIZE_COUNT 3

START_TEST(fill_sets_every_element) {
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *x = test_random_array(n, -1, 1);
        cl_mem mem = op_upload_padded(x, n);
        TEST_OK(clgqa_buffer_fill(rt, op_view(mem), n, 0.375f));
        op_download_padded("fill", mem, x, n);
        for (size_t i = 0; i < n; i++)
            if (x[i] != 0.375f)
                ck_abort_msg("fill[%zu] = %g", i, (double)x[i]);
        clgqa_buffer_release(&mem);
        free(x);

    }
}
END_TEST

START_TEST(copy_moves_every_element) {
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *src = test_random_array(n, -1, 1), *got = op_floats(n);
        cl_mem src_mem = op_upload_padded(src, n), dst_mem = op_upload_padded(NULL, n);
        TEST_OK(clgqa_buffer_copy(rt, op_view(dst_mem), op_view(src_mem), n));
        op_download_padded("copy", dst_mem, got, n);
        for (size_t i = 0; i < n; i++)
            if (got[i] != src[i])
                ck_abort_msg("copy[%zu]: %g != %g", i, (double)got[i], (double)src[i]);
        clgqa_buffer_release(&src_mem);
        clgqa_buffer_release(&dst_mem);
        free(src);
        free(got);
    }
}
END_TEST

START_TEST(accumulate_matches_reference) {
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *a = test_random_array(n, -2, 2), *b = test_random_array(n, -2, 2);
        float *got = op_floats(n);
        double *want = op_doubles(n);
        cl_mem b_mem = op_upload_padded(b, n), out_mem = op_upload_padded(a, n);

        /* accumulate: out (a copy of a) += b */
        TEST_OK(clgqa_accumulate(rt, op_view(out_mem), op_view(b_mem), n));
        op_download_padded("accumulate", out_mem, got, n);
        for (size_t i = 0; i < n; i++)
            want[i] = (double)a[i] + b[i];
        test_assert_close("accumulate", got, want, n, ONE_ROUNDING, 0);

        clgqa_buffer_release(&b_mem);
        clgqa_buffer_release(&out_mem);
        free(a);
        free(b);
        free(got);
        free(want);
    }
}
END_TEST

/* (rows, cols) with neither a multiple of a work-group size. */
static const size_t shapes[][2] = {{37, 389}, {1, 1}, {1, 700}, {1029, 3}, {5, 33}};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

START_TEST(bias_add_matches_reference) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
        float *x = test_random_array(n, -1, 1), *bias = test_random_array(cols, -1, 1);
        float *got = op_floats(n);
        double *want = op_doubles(n);
        cl_mem x_mem = op_upload_padded(x, n), bias_mem = op_upload_padded(bias, cols);
        TEST_OK(clgqa_bias_add(rt, op_view(x_mem), op_view(bias_mem), rows, cols));
        op_download_padded("bias_add", x_mem, got, n);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                want[r * cols + c] = (double)x[r * cols + c] + bias[c];
        test_assert_close("bias_add", got, want, n, ONE_ROUNDING, 0);
        clgqa_buffer_release(&x_mem);
        clgqa_buffer_release(&bias_mem);
        free(x);
        free(bias);
        free(got);
        free(want);
    }
}
END_TEST

/* Drop path's backward: a sample's rows (rows_per_scale of them, the last
 * sample short) scaled alike by 0, 1 or 1 / keep; in place and not. One
 * product: one rounding. */
START_TEST(scale_rows_matches_reference) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    const float choices[4] = {0.0f, 1.0f, 1.0f / 0.9f, 1.0f / 0.75f};
    for (size_t s = 0; s < SHAPE_COUNT; s++)
        for (int in_place = 0; in_place < 2; in_place++) {
            size_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
            size_t rows_per_scale = 5, samples = (rows + 4) / 5;
            float *x = test_random_array(n, -1, 1), *scales = op_floats(samples);
            for (size_t b = 0; b < samples; b++)
                scales[b] = choices[(b + s) % 4];
            float *got = op_floats(n);
            double *want = op_doubles(n);
            for (size_t i = 0; i < n; i++)
                want[i] = (double)x[i] * scales[i / cols / rows_per_scale];
            cl_mem x_mem = op_upload_padded(x, n), scales_mem = op_upload_padded(scales, samples);
            cl_mem out_mem = in_place ? x_mem : op_upload_padded(NULL, n);
            TEST_OK(clgqa_scale_rows(rt, op_view(out_mem), op_view(x_mem), op_view(scales_mem),
                                     rows_per_scale, rows, cols));
            op_download_padded("scale_rows", out_mem, got, n);
            test_assert_close("scale_rows", got, want, n, ONE_ROUNDING, 0);
            if (!in_place)
                clgqa_buffer_release(&out_mem);
            clgqa_buffer_release(&x_mem);
            clgqa_buffer_release(&scales_mem);
            free(x), free(scales), free(got), free(want);
        }
}
END_TEST

/* float64 reference: gelu(x) = x Phi(x), gelu'(x) = Phi(x) + x phi(x). */
static double gelu_ref(double x) { return x * 0.5 * erfc(-x / sqrt(2.0)); }
static double gelu_grad_ref(double x) {
    return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

START_TEST(gelu_reference_gradient_matches_finite_differences) {
    /* Central differences with h = 1e-4: truncation h^2 |gelu'''| / 6 < 1e-8,
     * rounding 1e-16 / h = 1e-12. */
    float *x = test_random_array(1000, -6, 6);
    for (size_t i = 0; i < 1000; i++) {
        double h = 1e-4, fd = (gelu_ref(x[i] + h) - gelu_ref(x[i] - h)) / (2 * h);
        ck_assert_msg(fabs(fd - gelu_grad_ref(x[i])) < 1e-8, "gelu'(%g): analytic %.12g, fd %.12g",
                      (double)x[i], gelu_grad_ref(x[i]), fd);
    }
    free(x);
}
END_TEST

/* GELU shapes (rows, cols): odd widths, and a million elements, which
 * shrinks under CLGQA_TEST_SMALL (Oclgrind). */
static size_t gelu_shape(size_t i, size_t *cols) {
    static const size_t shape[][2] = {{1, 1}, {3, 257}, {1303, 767}};
    *cols = shape[i][1];
    return i < 2 ? shape[i][0] : op_test_size(shape[i][0], 5);
}

START_TEST(gelu_bias_forward_and_backward_match_reference) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < 3; s++) {
        size_t cols, rows = gelu_shape(s, &cols), n = rows * cols;
        /* Out to |x| = 9, where Phi(-9) ~ 1e-19 tests the tail's relative
         * precision. */
        float *in = test_random_array(n, -8, 8), *bias = test_random_array(cols, -1, 1);
        float *dout = test_random_array(n, -1, 1), *din = test_random_array(n, -1, 1);
        float *got = op_floats(n);
        double *want = op_doubles(n);
        cl_mem in_mem = op_upload_padded(in, n), out_mem = op_upload_padded(NULL, n);
        cl_mem bias_mem = op_upload_padded(bias, cols);
        cl_mem dout_mem = op_upload_padded(dout, n), din_mem = op_upload_padded(din, n);
        /* x = in + bias is one float addition, rounded as the device rounds
         * it; GELU of that x is what is checked. */
        double *x = op_doubles(n);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                x[r * cols + c] = (float)((double)in[r * cols + c] + bias[c]);

        TEST_OK(clgqa_gelu_bias_forward(rt, CLGQA_STORAGE_FLOAT, op_view(out_mem),
                                        op_view(in_mem), op_view(bias_mem), rows, cols));
        op_download_padded("gelu_bias_forward", out_mem, got, n);
        for (size_t i = 0; i < n; i++)
            want[i] = gelu_ref(x[i]);
        /* Relative 1e-5: the erfc fit is good to 1.2e-7, exp to 3 ulp, and
         * z^2 rounds with relative 2^-24, i.e. 2.4e-6 at |x| = 9; the
         * absolute part only covers gelu(x) underflowing to 0. */
        test_assert_close("gelu_bias_forward", got, want, n, 1e-5, 1e-30);

        /* din starts non-zero: the backward stores, it does not add. The
         * bias gradient's partials come in this device's chunks, in one, and
         * in more chunks than rows (empty ones sum to 0); each set adds to
         * a non-zero dbias. */
        for (size_t h = 0; h < n; h++)
            want[h] = dout[h] * gelu_grad_ref(x[h]);
        float *dbias0 = test_random_array(cols, -1, 1), *dbias = op_floats(cols);
        float *first = op_floats(cols);
        double *want_dbias = op_doubles(cols), *dbias_scale = op_doubles(cols);
        for (size_t c = 0; c < cols; c++) {
            want_dbias[c] = dbias0[c];
            dbias_scale[c] = fabs(dbias0[c]);
            for (size_t r = 0; r < rows; r++) {
                want_dbias[c] += want[r * cols + c];
                dbias_scale[c] += fabs(want[r * cols + c]);
            }
        }
        const size_t chunk_counts[] = {clgqa_column_sum_chunks(rt, rows, cols), 1, rows + 2};
        for (size_t k = 0; k < 3; k++) {
            size_t chunks = chunk_counts[k];
            cl_mem partials_mem = op_upload_padded(NULL, chunks * cols);
            cl_mem dbias_mem = op_upload_padded(dbias0, cols);
            /* This device's chunks run twice: the same bits. */
            for (int run = 0; run < (k == 0 ? 2 : 1); run++) {
                op_write_padded(din_mem, din, n);
                op_write_padded(dbias_mem, dbias0, cols);
                TEST_OK(clgqa_gelu_bias_backward(rt, CLGQA_STORAGE_FLOAT, op_view(din_mem),
                                                 op_view(partials_mem), chunks, op_view(dout_mem),
                                                 op_view(in_mem), op_view(bias_mem), rows, cols));
                clgqa_column_sum sum = {0, chunks, cols, 0};
                op_column_sums_finish(op_view(dbias_mem), op_view(partials_mem), &sum, 1);
                op_download_padded("gelu_bias_backward", din_mem, got, n);
                /* Phi + x phi cancels near its zero (x ~ -0.75), so the
                 * absolute error there is that of Phi (~1e-7). */
                test_assert_close("gelu_bias_backward", got, want, n, 1e-5, 1e-6);
                /* The bias gradient sums rows of din, each within the bound
                 * above: 1e-5 of the terms' magnitude plus 1e-6 a row, and
                 * (rows + 1) 2^-24 of it for the float summation. */
                op_download_padded("gelu dbias", dbias_mem, dbias, cols);
                for (size_t c = 0; c < cols; c++) {
                    double tol = (1e-5 + (rows + 1) * 5.9604644775390625e-08) * dbias_scale[c] +
                                 1e-6 * rows;
                    ck_assert_msg(fabs(dbias[c] - want_dbias[c]) <= tol,
                                  "gelu dbias %zux%zu in %zu chunks [%zu]: got %.9g want %.9g", rows,
                                  cols, chunks, c, (double)dbias[c], want_dbias[c]);
                }
                if (run == 0)
                    memcpy(first, dbias, cols * sizeof *first);
                else /* the same bits again: the sums have a fixed order */
                    ck_assert_msg(memcmp(first, dbias, cols * sizeof *first) == 0,
                                  "gelu dbias %zux%zu differs between two runs", rows, cols);
            }
            clgqa_buffer_release(&partials_mem);
            clgqa_buffer_release(&dbias_mem);
        }

        /* In place (din aliases dout, out aliases in). */
        cl_mem partials_mem = op_upload_padded(NULL, cols);
        TEST_OK(clgqa_gelu_bias_backward(rt, CLGQA_STORAGE_FLOAT, op_view(dout_mem),
                                         op_view(partials_mem), 1, op_view(dout_mem),
                                         op_view(in_mem), op_view(bias_mem), rows, cols));
        op_download_padded("gelu_bias_backward in place", dout_mem, got, n);
        test_assert_close("gelu_bias_backward in place", got, want, n, 1e-5, 1e-6);
        clgqa_buffer_release(&partials_mem);
        free(dbias0), free(dbias), free(first), free(want_dbias), free(dbias_scale);
        TEST_OK(clgqa_gelu_bias_forward(rt, CLGQA_STORAGE_FLOAT, op_view(in_mem),
                                        op_view(in_mem), op_view(bias_mem), rows, cols));
        op_download_padded("gelu_bias_forward in place", in_mem, got, n);
        for (size_t i = 0; i < n; i++)
            want[i] = gelu_ref(x[i]);
        test_assert_close("gelu_bias_forward in place", got, want, n, 1e-5, 1e-30);

        cl_mem mems[] = {in_mem, out_mem, bias_mem, dout_mem, din_mem};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
            clgqa_buffer_release(&mems[i]);
        free(in), free(bias), free(dout), free(din), free(got), free(want), free(x);
    }
}
END_TEST

/* The half storage of precision 16-mixed (clgqa_storage; docs/design.md,
 * "Mixed precision"): in and out in half, dout, din, bias and the bias
 * gradient in float. The inputs are half values (fresh random floats
 * rounded to half on the host), so the reference sees exactly what the
 * device reads, and the float64 reference is GELU of those. Tolerances:
 *   forward: the float GELU's 1e-5 relative (the float test's bound) and
 *     then the store's rounding to half, 2^-11 relative in half's normal
 *     range and 2^-25 absolute below it (GELU's tail, x < -5, is that
 *     small): |got - want| <= (2^-11 + 1e-5 (1 + 2^-11)) |want| + 2^-25;
 *   backward: din is float and its input exact, so the float test's
 *     bounds hold unchanged (1e-5 relative, 1e-6 absolute), and so do the
 *     bias gradient's (a sum of rows: (1e-5 + (rows + 1) 2^-24) of the
 *     terms' magnitude plus 1e-6 a row).
 * vload_half/vstore_half are core OpenCL C 1.2, so this runs on every
 * device, cl_khr_fp16 or not. */
START_TEST(gelu_half_storage_matches_reference) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    const clgqa_storage half = CLGQA_STORAGE_HALF;
    for (size_t s = 0; s < 3; s++) {
        size_t cols, rows = gelu_shape(s, &cols), n = rows * cols;
        float *in = test_random_array(n, -8, 8), *bias = test_random_array(cols, -1, 1);
        float *dout = test_random_array(n, -1, 1), *got = op_floats(n);
        for (size_t i = 0; i < n; i++)
            in[i] = op_to_half(in[i]);
        double *want = op_doubles(n), *x = op_doubles(n);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) /* one float addition, as the device */
                x[r * cols + c] = (float)((double)in[r * cols + c] + bias[c]);
        cl_mem in_mem = op_upload_padded_half(in, n), out_mem = op_upload_padded_half(NULL, n);
        cl_mem bias_mem = op_upload_padded(bias, cols), dout_mem = op_upload_padded(dout, n);
        cl_mem din_mem = op_upload_padded(NULL, n);

        TEST_OK(clgqa_gelu_bias_forward(rt, half, op_view(out_mem), op_view(in_mem),
                                        op_view(bias_mem), rows, cols));
        op_download_padded_half("gelu_bias_forward (half)", out_mem, got, n);
        for (size_t i = 0; i < n; i++)
            want[i] = gelu_ref(x[i]);
        test_assert_close("gelu_bias_forward (half)", got, want, n,
                          OP_HALF_U + 1e-5 * (1 + OP_HALF_U), OP_HALF_SUBNORMAL_ERR);
        /* In place: out aliases in (both half). */
        TEST_OK(clgqa_gelu_bias_forward(rt, half, op_view(in_mem), op_view(in_mem),
                                        op_view(bias_mem), rows, cols));
        op_download_padded_half("gelu_bias_forward (half, in place)", in_mem, got, n);
        test_assert_close("gelu_bias_forward (half, in place)", got, want, n,
                          OP_HALF_U + 1e-5 * (1 + OP_HALF_U), OP_HALF_SUBNORMAL_ERR);
        clgqa_buffer_release(&in_mem); /* in again, for the backward */
        in_mem = op_upload_padded_half(in, n);

        size_t chunks = clgqa_column_sum_chunks(rt, rows, cols);
        cl_mem partials_mem = op_upload_padded(NULL, chunks * cols);
        float *dbias0 = test_random_array(cols, -1, 1), *dbias = op_floats(cols);
        cl_mem dbias_mem = op_upload_padded(dbias0, cols);
        TEST_OK(clgqa_gelu_bias_backward(rt, half, op_view(din_mem), op_view(partials_mem), chunks,
                                         op_view(dout_mem), op_view(in_mem), op_view(bias_mem),
                                         rows, cols));
        clgqa_column_sum sum = {0, chunks, cols, 0};
        op_column_sums_finish(op_view(dbias_mem), op_view(partials_mem), &sum, 1);
        op_download_padded("gelu_bias_backward (half)", din_mem, got, n);
        for (size_t i = 0; i < n; i++)
            want[i] = dout[i] * gelu_grad_ref(x[i]);
        test_assert_close("gelu_bias_backward (half)", got, want, n, 1e-5, 1e-6);
        op_download_padded("gelu dbias (half)", dbias_mem, dbias, cols);
        for (size_t c = 0; c < cols; c++) {
            double w = dbias0[c], scale = fabs(dbias0[c]);
            for (size_t r = 0; r < rows; r++) {
                w += want[r * cols + c];
                scale += fabs(want[r * cols + c]);
            }
            double tol = (1e-5 + (rows + 1) * 5.9604644775390625e-08) * scale + 1e-6 * rows;
            ck_assert_msg(fabs(dbias[c] - w) <= tol,
                          "gelu dbias (half) %zux%zu [%zu]: got %.9g want %.9g", rows, cols, c,
                          (double)dbias[c], w);
        }

        cl_mem mems[] = {in_mem, out_mem, bias_mem, dout_mem, din_mem, partials_mem, dbias_mem};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
            clgqa_buffer_release(&mems[i]);
        free(in), free(bias), free(dout), free(got), free(want), free(x), free(dbias0),
            free(dbias);
    }
}
END_TEST

/* Half to float, every one of the 65536 half values: exact (each is a
 * float), against the host's decoding; NaNs stay NaN. */
START_TEST(activations_widen_every_half_exactly) {
    clgqa_runtime *rt = test_runtime();
    const size_t n = 65536;
    float *values = op_floats(n), *got = op_floats(n);
    for (size_t i = 0; i < n; i++)
        values[i] = op_half_value((uint16_t)i); /* uploaded as the same half bits */
    cl_mem half_mem = op_upload_padded_half(values, n), float_mem = op_upload_padded(NULL, n);
    TEST_OK(clgqa_activations_to_float(rt, CLGQA_STORAGE_HALF, op_view(float_mem),
                                       op_view(half_mem), n));
    op_download_padded("activations_to_float", float_mem, got, n);
    for (size_t i = 0; i < n; i++)
        if (!(isnan(values[i]) ? isnan(got[i]) : memcmp(&got[i], &values[i], sizeof *got) == 0))
            ck_abort_msg("half 0x%04zx: got %.9g, want %.9g", i, (double)got[i],
                         (double)values[i]);
    clgqa_buffer_release(&half_mem);
    clgqa_buffer_release(&float_mem);
    free(values), free(got);
}
END_TEST

/* Float to half: bit for bit the host's round to nearest even, on random
 * floats from 2^-30 (below half's subnormals) to 2^17 (beyond its 65504)
 * of both signs, and on the edges: zeros, infinities, NaN, half's largest
 * value and the ties around it and at 1 and in the subnormals. In float
 * storage both conversions copy. */
START_TEST(activations_round_to_nearest_even) {
    clgqa_runtime *rt = test_runtime();
    const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.996f, 65520.0f,
                           -65520.0f, 1.0f + 0x1p-11f, 1.0f + 0x3p-11f, 0x1p-24f, 0x1p-25f,
                           0x3p-25f, 0x1.000002p-25f, 0x1p-14f, 0x1.ff8p-15f, 6.1e-5f};
    const size_t edge_count = sizeof edges / sizeof edges[0], n = op_test_size(100003, 4099);
    float *x = test_random_array(n, -1, 1), *got = op_floats(n), *back = op_floats(n);
    float *exponent = test_random_array(n, -30, 17);
    for (size_t i = 0; i < n; i++)
        x[i] = i < edge_count ? edges[i]
                              : copysignf(ldexpf(1.0f + fabsf(x[i]), (int)exponent[i]), x[i]);
    cl_mem float_mem = op_upload_padded(x, n), half_mem = op_upload_padded_half(NULL, n);
    TEST_OK(clgqa_activations_from_float(rt, CLGQA_STORAGE_HALF, op_view(half_mem),
                                         op_view(float_mem), n));
    op_download_padded_half("activations_from_float", half_mem, got, n);
    for (size_t i = 0; i < n; i++) {
        float want = op_half_value(op_half_bits(x[i]));
        if (!(isnan(want) ? isnan(got[i]) : memcmp(&got[i], &want, sizeof want) == 0))
            ck_abort_msg("float %a: got %a, want %a", (double)x[i], (double)got[i], (double)want);
    }
    /* Float storage: a copy each way. */
    cl_mem copy_mem = op_upload_padded(NULL, n);
    TEST_OK(clgqa_activations_from_float(rt, CLGQA_STORAGE_FLOAT, op_view(copy_mem),
                                         op_view(float_mem), n));
    TEST_OK(clgqa_activations_to_float(rt, CLGQA_STORAGE_FLOAT, op_view(float_mem),
                                       op_view(copy_mem), n));
    op_download_padded("activations (float storage)", float_mem, back, n);
    /* (the edges aside: a copy may quiet or change a NaN's payload) */
    ck_assert(memcmp(back + edge_count, x + edge_count, (n - edge_count) * sizeof *x) == 0);
    /* Overlapping views are refused. */
    ck_assert_int_eq(clgqa_activations_from_float(rt, CLGQA_STORAGE_HALF, op_view(float_mem),
                                                  op_view(float_mem), n),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "overlap"), "%s", clgqa_error_message());
    cl_mem mems[] = {float_mem, half_mem, copy_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(x), free(got), free(back), free(exponent);
}
END_TEST

/* A half view is checked in halves: n halves fit where n floats do not. */
START_TEST(half_views_are_checked_in_halves) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {0.5f, -1, 2, 0.25f, 3, -4, 1, 0};
    cl_mem mem = test_upload(x, 8), bias = test_upload(x, 4); /* room for 16 halves */
    clgqa_view v = clgqa_view_at(mem, 0);
    TEST_OK(clgqa_gelu_bias_forward(rt, CLGQA_STORAGE_HALF, v, v, clgqa_view_at(bias, 0), 4, 4));
    ck_assert_int_eq(
        clgqa_gelu_bias_forward(rt, CLGQA_STORAGE_FLOAT, v, v, clgqa_view_at(bias, 0), 4, 4),
        CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_gelu_bias_forward(rt, CLGQA_STORAGE_HALF, v, clgqa_view_at(mem, 1),
                                             clgqa_view_at(bias, 0), 4, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'in'"), "%s", clgqa_error_message());
    TEST_OK(clgqa_finish(rt));
    clgqa_buffer_release(&mem);
    clgqa_buffer_release(&bias);
}
END_TEST

START_TEST(bad_views_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    cl_mem mem = test_upload(x, 10);
    /* A view running past the end of its buffer. */
    ck_assert_int_eq(clgqa_accumulate(rt, clgqa_view_at(mem, 4), clgqa_view_at(mem, 0), 7),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_accumulate"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_bias_add(rt, clgqa_view_at(mem, 0), clgqa_view_at(mem, 0), 3, 4),
                     CLGQA_ERR_INVALID_ARG);
    /* A missing buffer. */
    ck_assert_int_eq(clgqa_accumulate(rt, clgqa_view_at(mem, 0), clgqa_view_at(NULL, 0), 5),
                     CLGQA_ERR_INVALID_ARG);
    /* GELU's backward with no chunks, or partials shorter than its chunks. */
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_gelu_bias_backward(rt, CLGQA_STORAGE_FLOAT, v, v, 0, v, v, v, 2, 2),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_gelu_bias_backward(rt, CLGQA_STORAGE_FLOAT, v, v, 6, v, v, v, 2, 2),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'partials'"), "%s", clgqa_error_message());
    /* Overlapping copy. */
    ck_assert_int_eq(clgqa_buffer_copy(rt, clgqa_view_at(mem, 2), clgqa_view_at(mem, 0), 5),
                     CLGQA_ERR_INVALID_ARG);
    /* Nothing was launched: the buffer is unchanged. */
    float back[10];
    test_download(mem, back, 10);
    ck_assert(memcmp(back, x, sizeof x) == 0);
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fill_sets_every_element);
    tcase_add_test(tc, copy_moves_every_element);
    tcase_add_test(tc, accumulate_matches_reference);
    tcase_add_loop_test(tc, bias_add_matches_reference, 0, OP_TEST_CLASSES);
    tcase_add_loop_test(tc, scale_rows_matches_reference, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, gelu_reference_gradient_matches_finite_differences);
    tcase_add_loop_test(tc, gelu_bias_forward_and_backward_match_reference, 0, OP_TEST_CLASSES);
    tcase_add_loop_test(tc, gelu_half_storage_matches_reference, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, half_views_are_checked_in_halves);
    tcase_add_test(tc, activations_widen_every_half_exactly);
    tcase_add_test(tc, activations_round_to_nearest_even);
    tcase_add_test(tc, bad_views_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
