/* Helpers for the op suites (tests/test_ops_*.c): problem sizes that shrink
 * under CLGQA_TEST_SMALL (for Oclgrind), and tensors placed at an odd offset
 * inside a larger buffer between guard bands, so every test also checks that
 * launchers honour view offsets and kernels write nothing outside their
 * tensors. Header-only. */
#ifndef CLGQA_OP_TESTS_H
#define CLGQA_OP_TESTS_H

#include <math.h>
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
