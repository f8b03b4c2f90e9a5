/* Shared helpers for the Check suites: one runtime per test process, random
 * inputs, device transfers and element-wise comparisons. */
#ifndef CLGQA_TEST_UTIL_H
#define CLGQA_TEST_UTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "clgqa/runtime.h"
#include "config_internal.h"
#include "runtime_internal.h"

/* 1 when CLGQA_TEST_SMALL is set and not "0" (the Oclgrind runs): suites
 * shrink their problem sizes. */
int test_small(void);

/* A fresh folder under $TMPDIR (or /tmp), malloc'ed path; NULL (and a
 * message on stderr) if it cannot be made. test_remove_tree removes a
 * folder and everything in it, without following links. */
char *test_temp_dir(void);
void test_remove_tree(const char *path);

/* The runtime shared by a suite's tests (created on first use from
 * CLGQA_DEVICE or the default device; a failure fails the test). */
clgqa_runtime *test_runtime(void);
/* The runtime options of the environment, as `clgqa` reads them (a failure
 * fails the test); the strings stay valid while the environment is
 * unchanged. */
const clgqa_runtime_options *test_runtime_options(void);
/* A runtime of the test's own, from the environment as test_runtime's. */
clgqa_status test_runtime_create(clgqa_runtime **out);

/* The runtime's code paths by name as the config keys give them (NULL or
 * "auto": the environment's choice, CLGQA_DEVICE_CLASS, CLGQA_ATTENTION,
 * CLGQA_GEMM, as `clgqa` makes it). */
clgqa_status test_choose_paths(clgqa_runtime *rt, const char *device_class,
                               const char *attention_kernel, const char *gemm_kernel);

/* The model and the dataset split a config describes. */
clgqa_status test_model_create(clgqa_runtime *rt, const clgqa_config *cfg, int max_batch,
                               clgqa_model **out);
clgqa_dataset_options test_dataset_options(const clgqa_config *cfg);
/* `flags` are added to the config's (CLGQA_DATASET_SKIP_UNREADABLE). */
clgqa_status test_dataset_open(const clgqa_config *cfg, clgqa_split split, int flags,
                               clgqa_dataset **out);

/* Fresh pseudo-random floats in [lo, hi) from a fixed test seed and a
 * per-call stream, so every tensor in a test differs. */
void test_fill_uniform(float *x, size_t n, float lo, float hi);
float *test_random_array(size_t n, float lo, float hi); /* malloc'ed */

/* Device buffer holding a copy of `host` (n floats), and reading back. */
cl_mem test_upload(const float *host, size_t n);
cl_mem test_upload_int(const int32_t *host, size_t n);
void test_download(cl_mem mem, float *host, size_t n);
void test_download_int(cl_mem mem, int32_t *host, size_t n);

/* Assert |got - want| <= abs_tol + rel_tol * |want| for every element,
 * reporting the first offender by name and index. */
void test_assert_close(const char *what, const float *got, const double *want, size_t n,
                       double rel_tol, double abs_tol);
void test_assert_close_f(const char *what, const float *got, const float *want, size_t n,
                         double rel_tol, double abs_tol);

/* Element-wise: |got - want| <= rel * |want| + floor * max|want|. The floor
 * covers elements near zero by cancellation: float32 rounding in sums over a
 * tensor's typical magnitudes is a fraction of that scale, not of the
 * element. */
void test_assert_close_scaled(const char *what, const float *got, const float *want, size_t n,
                              double rel, double floor);
/* max |x[i]|, and x as doubles (malloc'ed), for references. */
double test_max_abs(const float *x, size_t n);
double *test_to_doubles(const float *x, size_t n);

/* Assert cfg holds the reference's training recipe (docs/attention-variants.md):
 * lr, schedule, warm-up, batch, epochs, augmentation, 224 / patch 16,
 * normalisation, seed, AdamW's constants and decay on every tensor, no
 * clipping, shuffling, none of timm's regularisers. */
void test_assert_reference_recipe(const clgqa_config *cfg);

/* Assert a clgqa call succeeded, showing the error message if not. */
#define TEST_OK(expr)                                                                    \
    do {                                                                                 \
        clgqa_status test_status_ = (expr);                                              \
        ck_assert_msg(test_status_ == CLGQA_OK, "%s -> %s: %s", #expr,                   \
                      clgqa_status_name(test_status_), clgqa_error_message());            \
    } while (0)

/* Runs the clgqa program built beside this test with `env` (shell
 * assignments, may be "") and `args` (shell words). Returns its exit status;
 * its stdout goes to `out` (NULL: discarded) and its stderr to `err`,
 * NUL-terminated. */
int test_run_clgqa(const char *env, const char *args, char *out, size_t out_size, char *err,
                   size_t err_size);
/* Assert `err` is exactly one line and names `what`. */
void test_assert_one_line_naming(const char *err, const char *what);

/* Run a suite (CK_NORMAL), print Check's summary line; returns the exit status. */
int test_run_suite(Suite *suite);

#endif
