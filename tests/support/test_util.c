#define _XOPEN_SOURCE 700 /* nftw */
#include "support/test_util.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ops.h"
#include "environment.h"

int test_small(void) {
    const char *s = getenv("CLGQA_TEST_SMALL");
    return s && *s && strcmp(s, "0") != 0;
}

char *test_temp_dir(void) {
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/clgqa-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void test_remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static clgqa_runtime *shared_runtime;

clgqa_runtime *test_runtime(void) {
    if (!shared_runtime) {
        cli_environment env;
        clgqa_status s = cli_read_environment(&env);
        ck_assert_msg(s == CLGQA_OK, "%s", clgqa_error_message());
        s = clgqa_runtime_create(&env.options, &shared_runtime);
        ck_assert_msg(s == CLGQA_OK, "no OpenCL runtime: %s", clgqa_error_message());
    }
    return shared_runtime;
}

void test_fill_uniform(float *x, size_t n, float lo, float hi) {
    static uint64_t stream = 1;
    clgqa_host_uniform(x, n, 20261126, clgqa_stream_id(CLGQA_RNG_TEST, 0, stream++));
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * x[i];
}

float *test_random_array(size_t n, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    test_fill_uniform(x, n, lo, hi);
    return x;
}

static cl_mem upload_bytes(const void *host, size_t bytes) {
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(test_runtime(), bytes, &mem));
    TEST_OK(clgqa_buffer_write(test_runtime(), mem, 0, bytes, host));
    return mem;
}

cl_mem test_upload(const float *host, size_t n) { return upload_bytes(host, n * sizeof(float)); }
cl_mem test_upload_int(const int32_t *host, size_t n) {
    return upload_bytes(host, n * sizeof(int32_t));
}

void test_download(cl_mem mem, float *host, size_t n) {
    TEST_OK(clgqa_buffer_read(test_runtime(), mem, 0, n * sizeof(float), host));
}
void test_download_int(cl_mem mem, int32_t *host, size_t n) {
    TEST_OK(clgqa_buffer_read(test_runtime(), mem, 0, n * sizeof(int32_t), host));
}

void test_assert_close(const char *what, const float *got, const double *want, size_t n,
                       double rel_tol, double abs_tol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        /* Check records every assertion it evaluates (~2 us each): assert
         * only on failure, so million-element checks stay fast. */
        if (!(isfinite(got[i]) && err <= abs_tol + rel_tol * fabs(want[i])))
            ck_abort_msg("%s[%zu]: got %.9g, want %.9g (error %.3g, tolerance %.3g rel + %.3g abs)",
                         what, i, (double)got[i], want[i], err, rel_tol, abs_tol);
    }
}

void test_assert_close_f(const char *what, const float *got, const float *want, size_t n,
                         double rel_tol, double abs_tol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        if (!(isfinite(got[i]) && err <= abs_tol + rel_tol * fabs((double)want[i])))
            ck_abort_msg("%s[%zu]: got %.9g, want %.9g (error %.3g, tolerance %.3g rel + %.3g abs)",
                         what, i, (double)got[i], (double)want[i], err, rel_tol, abs_tol);
    }
}

int test_run_suite(Suite *suite) {
    SRunner *runner = srunner_create(suite);
    /* Tests share one runtime: no fork, so the OpenCL context is built once. */
    srunner_set_fork_status(runner, CK_NOFORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (shared_runtime) {
        clgqa_runtime_destroy(shared_runtime);
        shared_runtime = NULL;
    }
    return failed ? 1 : 0;
}

static void read_and_remove(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(buf, 1, size - 1, f);
    buf[got] = '\0';
    fclose(f);
    unlink(path);
}

int test_run_clgqa(const char *env, const char *args, char *out, size_t out_size, char *err,
                   size_t err_size) {
    char exe[1024], cmd[8192];
    char out_path[] = "/tmp/clgqa-cli-out-XXXXXX", err_path[] = "/tmp/clgqa-cli-err-XXXXXX";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    ck_assert(out_fd >= 0 && err_fd >= 0);
    close(out_fd);
    close(err_fd);
    snprintf(cmd, sizeof cmd, "%s '%s/clgqa' %s >'%s' 2>'%s'", env, exe, args, out_path, err_path);
    int status = system(cmd);
    if (out)
        read_and_remove(out_path, out, out_size);
    else
        unlink(out_path);
    read_and_remove(err_path, err, err_size);
    ck_assert_msg(WIFEXITED(status), "clgqa %s did not exit normally", args);
    return WEXITSTATUS(status);
}

void test_assert_one_line_naming(const char *err, const char *what) {
    ck_assert_msg(strstr(err, what) != NULL, "stderr does not name '%s': %s", what, err);
    const char *newline = strchr(err, '\n');
    ck_assert_msg(newline && newline[1] == '\0', "not one line: %s", err);
}

void test_assert_reference_recipe(const clgqa_config *cfg) {
    ck_assert_float_eq(cfg->lr, 1e-5f);
    ck_assert_int_eq(cfg->schedule, CLGQA_SCHEDULE_CONSTANT);
    ck_assert_int_eq(cfg->warmup_steps, 0);
    ck_assert_int_eq(cfg->batch_size, 32);
    ck_assert_int_eq(cfg->epochs, 5);
    ck_assert_int_eq(cfg->augment, CLGQA_AUGMENT_RANDAUGMENT);
    ck_assert_int_eq(cfg->img_size, 224);
    ck_assert_int_eq(cfg->patch_size, 16);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(cfg->norm_mean[c], 0.5f);
        ck_assert_float_eq(cfg->norm_std[c], 0.5f);
    }
    ck_assert_uint_eq(cfg->seed, 42);
    ck_assert_float_eq(cfg->weight_decay, 0.01f);
    ck_assert_float_eq(cfg->beta1, 0.9f);
    ck_assert_float_eq(cfg->beta2, 0.999f);
    ck_assert_float_eq(cfg->eps, 1e-8f);
    ck_assert_float_eq(cfg->clip_grad_norm, 0.0f);
    ck_assert_int_eq(cfg->shuffle, 1);
    /* AdamW(model.parameters()): every tensor decays; none of timm's
     * regularisers, one batch a step, no EMA, no floor under the lr. */
    ck_assert_int_eq(cfg->no_weight_decay, 0);
    ck_assert_float_eq(cfg->label_smoothing, 0.0f);
    ck_assert_float_eq(cfg->mixup_alpha, 0.0f);
    ck_assert_float_eq(cfg->cutmix_alpha, 0.0f);
    ck_assert_float_eq(cfg->drop_path, 0.0f);
    ck_assert_float_eq(cfg->model_ema_decay, 0.0f);
    ck_assert_int_eq(cfg->grad_accum_steps, 1);
    ck_assert_float_eq(cfg->min_lr, 0.0f);
}

clgqa_status test_choose_paths(clgqa_runtime *rt, const char *device_class,
                               const char *attention_kernel, const char *gemm_kernel) {
    cli_environment env;
    CLGQA_TRY(cli_read_environment(&env));
    clgqa_runtime_options *o = &env.options;
    clgqa_device_class c = CLGQA_CLASS_AUTO;
    clgqa_attention_kernel a = CLGQA_ATTENTION_AUTO;
    clgqa_gemm_kernel g = CLGQA_GEMM_AUTO;
    if (device_class)
        CLGQA_TRY(clgqa_device_class_parse(device_class, &c));
    if (attention_kernel)
        CLGQA_TRY(clgqa_attention_kernel_parse(attention_kernel, &a));
    if (gemm_kernel)
        CLGQA_TRY(clgqa_gemm_kernel_parse(gemm_kernel, &g));
    /* As the config keys: a name other than auto beats the environment. */
    return clgqa_runtime_choose_paths(rt, c != CLGQA_CLASS_AUTO ? c : o->device_class,
                                      a != CLGQA_ATTENTION_AUTO ? a : o->attention_kernel,
                                      g != CLGQA_GEMM_AUTO ? g : o->gemm_kernel);
}

clgqa_status test_model_create(clgqa_runtime *rt, const clgqa_config *cfg, int max_batch,
                               clgqa_model **out) {
    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    return clgqa_model_create(rt, &desc, max_batch, out);
}

clgqa_dataset_options test_dataset_options(const clgqa_config *cfg) {
    clgqa_dataset_options options;
    clgqa_config_dataset_options(cfg, &options);
    return options;
}

clgqa_status test_dataset_open(const clgqa_config *cfg, clgqa_split split, int flags,
                               clgqa_dataset **out) {
    clgqa_dataset_options options = test_dataset_options(cfg);
    options.flags |= flags;
    return clgqa_dataset_open(&options, split, out);
}

clgqa_status test_runtime_create(clgqa_runtime **out) {
    cli_environment env;
    *out = NULL;
    CLGQA_TRY(cli_read_environment(&env));
    return clgqa_runtime_create(&env.options, out);
}

double test_max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

void test_assert_close_scaled(const char *what, const float *got, const float *want, size_t n,
                              double rel, double floor) {
    test_assert_close_f(what, got, want, n, rel, floor * test_max_abs(want, n));
}

double *test_to_doubles(const float *x, size_t n) {
    double *d = malloc(sizeof(double) * (n ? n : 1));
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

const clgqa_runtime_options *test_runtime_options(void) {
    static cli_environment env;
    clgqa_status s = cli_read_environment(&env);
    ck_assert_msg(s == CLGQA_OK, "%s", clgqa_error_message());
    return &env.options;
}
