/* Helpers for the op suites (tests/test_ops_*.c): problem sizes that shrink
 * under CLGQA_TEST_SMALL (for Oclgrind), and tensors placed at an odd offset
 * inside a larger buffer between guard bands, so every test also checks that
 * launchers honour view offsets and kernels write nothing outside their
 * tensors. Header-only. */
#ifndef CLGQA_OP_TESTS_H
#define CLGQA_OP_TESTS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "support/test_util.h"

/* Elements of guard band on each side of a padded tensor: odd on purpose,
 * so tensors sit at unaligned offsets; a suite sets op_test_pad to 4 to run
 * the float4 paths that aligned tensors take. */
#define OP_TEST_PAD 3
static size_t op_test_pad = OP_TEST_PAD;
/* Guard values: no op in these suites produces them from their inputs. */
#define OP_TEST_GUARD (-7777.25f)
#define OP_TEST_GUARD_INT (-77777)

/* `full` normally, `small` under CLGQA_TEST_SMALL. */
static inline size_t op_test_size(size_t full, size_t small) {
    return test_small() ? small : full;
}

/* The device classes whose code paths the op suites run, whatever the
 * device: loop tests (tcase_add_loop_test(tc, test, 0, OP_TEST_CLASSES))
 * start with op_test_class(_i), so the GPU paths run on PoCL and Oclgrind
 * as well as the CPU ones. */
#define OP_TEST_CLASSES 2
static inline const char *op_test_class(int i) {
    static const char *const names[OP_TEST_CLASSES] = {"cpu", "gpu"};
    TEST_OK(test_choose_paths(test_runtime(), names[i], NULL, NULL));
    return names[i];
}

/* A buffer [guard x PAD | host[0..n) | guard x PAD]; the tensor's view is
 * clgqa_view_at(mem, op_test_pad). host NULL leaves the tensor all guard. */
static inline cl_mem op_upload_padded(const float *host, size_t n) {
    size_t total = n + 2 * op_test_pad;
    float *buf = malloc(total * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < total; i++)
        buf[i] = OP_TEST_GUARD;
    if (host)
        memcpy(buf + op_test_pad, host, n * sizeof *buf);
    cl_mem mem = test_upload(buf, total);
    free(buf);
    return mem;
}

/* Overwrite a padded tensor with host[0..n) (and fresh guards). The whole
 * buffer is written: Oclgrind 21.10 mis-tracks which bytes a write at an
 * offset initialises. */
static inline void op_write_padded(cl_mem mem, const float *host, size_t n) {
    size_t total = n + 2 * op_test_pad;
    float *buf = malloc(total * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < total; i++)
        buf[i] = OP_TEST_GUARD;
    memcpy(buf + op_test_pad, host, n * sizeof *buf);
    TEST_OK(clgqa_buffer_write(test_runtime(), mem, 0, total * sizeof *buf, buf));
    free(buf);
}

static inline cl_mem op_upload_padded_int(const int32_t *host, size_t n) {
    size_t total = n + 2 * op_test_pad;
    int32_t *buf = malloc(total * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < total; i++)
        buf[i] = OP_TEST_GUARD_INT;
    if (host)
        memcpy(buf + op_test_pad, host, n * sizeof *buf);
    cl_mem mem = test_upload_int(buf, total);
    free(buf);
    return mem;
}

static inline clgqa_view op_view(cl_mem mem) { return clgqa_view_at(mem, op_test_pad); }

/* Read the tensor back into host[0..n), asserting the guard bands are intact. */
static inline void op_download_padded(const char *what, cl_mem mem, float *host, size_t n) {
    size_t total = n + 2 * op_test_pad;
    float *buf = malloc(total * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    test_download(mem, buf, total);
    for (size_t i = 0; i < op_test_pad; i++) {
        ck_assert_msg(buf[i] == OP_TEST_GUARD, "%s: guard before the tensor overwritten", what);
        ck_assert_msg(buf[total - 1 - i] == OP_TEST_GUARD, "%s: guard after the tensor overwritten",
                      what);
    }
    memcpy(host, buf + op_test_pad, n * sizeof *buf);
    free(buf);
}

static inline void op_download_padded_int(const char *what, cl_mem mem, int32_t *host, size_t n) {
    size_t total = n + 2 * op_test_pad;
    int32_t *buf = malloc(total * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    test_download_int(mem, buf, total);
    for (size_t i = 0; i < op_test_pad; i++) {
        ck_assert_msg(buf[i] == OP_TEST_GUARD_INT && buf[total - 1 - i] == OP_TEST_GUARD_INT,
                      "%s: guard band overwritten", what);
    }
    memcpy(host, buf + op_test_pad, n * sizeof *buf);
    free(buf);
}

/* ---- half storage (clgqa_storage CLGQA_STORAGE_HALF) ----
 * fp16's unit roundoff: rounding to nearest even moves a value in the
 * normal range (|x| >= 2^-14) by at most 2^-11 |x|, a smaller one (half's
 * subnormals, spaced 2^-24) by at most 2^-25. */
#define OP_HALF_U 4.8828125e-04           /* 2^-11 */
#define OP_HALF_SUBNORMAL_ERR 2.98023224e-08 /* 2^-25 */

/* IEEE half bits of f rounded to nearest even, written out here rather
 * than taken from a library so the reference does not share the device's
 * conversion. */
static inline uint16_t op_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf, NaN */
        return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
    if (a >= 0x477ff000u) /* >= 65520, half-way past 65504: rounds to inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) /* below 2^-14: a multiple of 2^-24, exact in float */
        return sign | (uint16_t)nearbyintf(fabsf(f) * 16777216.0f);
    uint32_t h = ((a >> 23) - 112) << 10 | (a & 0x7fffff) >> 13, rest = a & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++; /* a carry out of the mantissa steps the exponent, as it should */
    return sign | (uint16_t)h;
}

static inline float op_half_value(uint16_t h) {
    const int exponent = h >> 10 & 0x1f, mantissa = h & 0x3ff;
    float v = exponent == 0    ? ldexpf((float)mantissa, -24)
              : exponent == 31 ? (mantissa ? NAN : INFINITY)
                               : ldexpf((float)(mantissa | 0x400), exponent - 25);
    return h & 0x8000 ? -v : v;
}

/* f rounded to half, as a float. */
static inline float op_to_half(float f) { return op_half_value(op_half_bits(f)); }

/* A half guard value (-7776, exact in half). */
#define OP_TEST_GUARD_HALF 0xef98

/* op_upload_padded for a half tensor: host[i] rounded to half, between
 * half guard bands of op_test_pad elements (the buffer holds a whole
 * number of floats). */
static inline cl_mem op_upload_padded_half(const float *host, size_t n) {
    size_t total = n + 2 * op_test_pad, floats = (total + 1) / 2;
    uint16_t *buf = malloc(2 * floats * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < 2 * floats; i++)
        buf[i] = OP_TEST_GUARD_HALF;
    for (size_t i = 0; host && i < n; i++)
        buf[op_test_pad + i] = op_half_bits(host[i]);
    cl_mem mem = test_upload((const float *)(const void *)buf, floats);
    free(buf);
    return mem;
}

/* op_download_padded for a half tensor: the values as floats. */
static inline void op_download_padded_half(const char *what, cl_mem mem, float *host, size_t n) {
    size_t total = n + 2 * op_test_pad, floats = (total + 1) / 2;
    uint16_t *buf = malloc(2 * floats * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    test_download(mem, (float *)(void *)buf, floats);
    for (size_t i = 0; i < op_test_pad; i++)
        ck_assert_msg(buf[i] == OP_TEST_GUARD_HALF && buf[total - 1 - i] == OP_TEST_GUARD_HALF,
                      "%s: half guard band overwritten", what);
    for (size_t i = 0; i < n; i++)
        host[i] = op_half_value(buf[op_test_pad + i]);
    free(buf);
}

/* Assert |got - want| <= tol * scale[i] for every element: `scale` is the
 * magnitude of the terms that produced want[i] (e.g. sum of |terms| for a
 * sum), so cancellation does not demand more than float can deliver. */
static inline void op_assert_close_scaled(const char *what, const float *got, const double *want,
                                          const double *scale, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        /* Assert only on failure: Check records every assertion (~2 us). */
        if (!(isfinite(got[i]) && err <= tol * scale[i]))
            ck_abort_msg("%s[%zu]: got %.9g, want %.9g (error %.3g, tolerance %.3g = %.3g x %.3g)",
                         what, i, (double)got[i], want[i], err, tol * scale[i], tol, scale[i]);
    }
}

/* Stage 2 of column sums whose partials an op stored (clgqa_column_sums_finish),
 * with the table uploaded between guard bands for the one call. */
static inline void op_column_sums_finish(clgqa_view out, clgqa_view partials,
                                         const clgqa_column_sum *sums, size_t count) {
    size_t uints = count * CLGQA_COLUMN_SUM_UINTS;
    cl_uint *table = calloc(uints ? uints : 1, sizeof *table);
    ck_assert_ptr_nonnull(table);
    TEST_OK(clgqa_column_sum_encode(sums, count, table));
    cl_mem table_mem = op_upload_padded_int((const int32_t *)table, uints);
    TEST_OK(clgqa_column_sums_finish(test_runtime(), out, partials, op_view(table_mem), sums,
                                     count));
    clgqa_buffer_release(&table_mem);
    free(table);
}

/* malloc'ed doubles, asserted non-NULL. */
static inline double *op_doubles(size_t n) {
    double *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static inline float *op_floats(size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

#endif
