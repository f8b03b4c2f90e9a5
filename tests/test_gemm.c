/* CLBlast GEMM wrappers against a float64 CPU reference, on awkward shapes:
 * sizes that are not multiples of CLBlast's tiles, 1-wide matrices, both
 * transposes, offsets and padded leading dimensions; each through CLBlast's
 * own choice of kernel and through each kernel forced (CLGQA_GEMM). */
#include <clblast_c.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "support/test_util.h"

/* float64 reference of C = alpha op(A) op(B) + beta C (row-major). */
static void reference_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
                           const float *a, size_t lda, const float *b, size_t ldb, double beta,
                           double *c, size_t ldc) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = 0;
            for (size_t p = 0; p < k; p++) {
                double av = trans_a ? a[p * lda + i] : a[i * lda + p];
                double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                sum += av * bv;
            }
            c[i * ldc + j] = alpha * sum + beta * c[i * ldc + j];
        }
}

/* A K-long dot product of values in [-1, 1] has rounding error of about
 * sqrt(K) * 2^-24 relative to sum|a||b|; 1e-5 relative plus 1e-5 absolute
 * covers K up to ~300 with margin while catching any indexing error. */
#define GEMM_REL 1e-5
#define GEMM_ABS 1e-5

/* The GEMM paths every product test runs: loop index _i picks path
 * _i % GEMM_PATHS. */
#define GEMM_PATHS 3
static const char *const gemm_paths[GEMM_PATHS] = {"auto", "direct", "indirect"};

/* Whether CLBlast, as its parameters stand now, runs an s^3 product through
 * the indirect kernel: only that one needs a temporary buffer for an A at an
 * offset. */
static int clblast_runs_indirect(size_t s) {
    size_t bytes = 0;
    ck_assert_int_eq(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                                CLBlastTransposeNo, s, s, s, 1, s, 0, s, 0, s,
                                                &test_runtime()->queue, &bytes),
                     CLBlastSuccess);
    return bytes > 0;
}

static clgqa_gemm_paths use_gemm_path(int path) {
    TEST_OK(test_choose_paths(test_runtime(), NULL, NULL, gemm_paths[path]));
    return clgqa_gemm_paths_taken(test_runtime());
}

/* After one product of m x n x k (and nothing else since `before`): a forced
 * kernel is the one counted, and the one CLBlast's parameters now pick. */
static void assert_path_taken(int path, clgqa_gemm_paths before) {
    clgqa_gemm_paths after = clgqa_gemm_paths_taken(test_runtime());
    long direct = after.direct_calls - before.direct_calls,
         indirect = after.indirect_calls - before.indirect_calls;
    ck_assert_int_eq(direct + indirect, 1);
    if (!strcmp(gemm_paths[path], "direct"))
        ck_assert_msg(direct == 1 && !clblast_runs_indirect(4096), "forced direct ran indirect");
    if (!strcmp(gemm_paths[path], "indirect"))
        ck_assert_msg(indirect == 1 && clblast_runs_indirect(1), "forced indirect ran direct");
    TEST_OK(test_choose_paths(test_runtime(), NULL, NULL, "auto"));
}

typedef struct shape {
    size_t m, n, k;
    int trans_a, trans_b;
} shape;

static const shape shapes[] = {
    {1, 1, 1, 0, 0},   {17, 1, 33, 0, 0},  {1, 29, 7, 1, 0},  {37, 41, 19, 0, 1},
    {65, 3, 129, 1, 1}, {100, 77, 50, 0, 0}, {33, 65, 257, 1, 0},
};

START_TEST(sgemm_matches_reference) {
    const shape *s = &shapes[_i / GEMM_PATHS];
    clgqa_gemm_paths before = use_gemm_path(_i % GEMM_PATHS);
    /* Padded leading dimensions and non-zero offsets exercise the strides. */
    size_t a_rows = s->trans_a ? s->k : s->m, a_cols = s->trans_a ? s->m : s->k;
    size_t b_rows = s->trans_b ? s->n : s->k, b_cols = s->trans_b ? s->k : s->n;
    size_t lda = a_cols + 3, ldb = b_cols + 1, ldc = s->n + 2;
    size_t a_off = 5, b_off = 7, c_off = 11;
    size_t a_len = a_off + a_rows * lda, b_len = b_off + b_rows * ldb, c_len = c_off + s->m * ldc;
    float *a = test_random_array(a_len, -1, 1), *b = test_random_array(b_len, -1, 1);
    float *c = test_random_array(c_len, -1, 1), *got = malloc(c_len * sizeof *got);
    double *want = malloc(c_len * sizeof *want);
    for (size_t i = 0; i < c_len; i++)
        want[i] = c[i];
    const float alpha = 0.75f, beta = -0.5f;
    reference_gemm(s->trans_a, s->trans_b, s->m, s->n, s->k, alpha, a + a_off, lda, b + b_off, ldb,
                   beta, want + c_off, ldc);
    cl_mem da = test_upload(a, a_len), db = test_upload(b, b_len), dc = test_upload(c, c_len);
    TEST_OK(clgqa_sgemm(test_runtime(), s->trans_a, s->trans_b, s->m, s->n, s->k, alpha,
                        clgqa_view_at(da, a_off), lda, clgqa_view_at(db, b_off), ldb, beta,
                        clgqa_view_at(dc, c_off), ldc));
    assert_path_taken(_i % GEMM_PATHS, before);
    test_download(dc, got, c_len);
    /* Every element, including the padding, which must stay untouched. */
    test_assert_close("C", got, want, c_len, GEMM_REL, GEMM_ABS);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    free(a), free(b), free(c), free(got), free(want);
}
END_TEST

/* auto is CLBlast's own choice, put back after a forced one: the same
 * XGEMM_MIN_INDIRECT_SIZE, and CLBlast's parameters pick by it again. */
START_TEST(auto_gemm_path_is_restored) {
    float host[4] = {0.5f, -1, 2, 0.25f};
    cl_mem mem = test_upload(host, 4);
    clgqa_view v = clgqa_view_at(mem, 0);
    size_t sizes[GEMM_PATHS];
    for (int round = 0; round < 2; round++)
        for (int path = 0; path < GEMM_PATHS; path++) {
            use_gemm_path(path);
            TEST_OK(clgqa_sgemm(test_runtime(), 0, 0, 1, 1, 1, 1, v, 1, v, 1, 0, v, 1));
            size_t s = clgqa_gemm_paths_taken(test_runtime()).min_indirect_size;
            if (round == 0)
                sizes[path] = s;
            ck_assert_uint_eq(s, sizes[path]);
            /* Below s^3 CLBlast runs direct, from s^3 up indirect (s is
             * capped at 2^21, whose cube no product reaches). */
            if (s > 1)
                ck_assert_msg(!clblast_runs_indirect(s - 1), "%s: %zu", gemm_paths[path], s);
            if (s > 0 && s < 1u << 21)
                ck_assert_msg(clblast_runs_indirect(s), "%s: %zu", gemm_paths[path], s);
        }
    ck_assert_uint_eq(sizes[2], 0);
    TEST_OK(test_choose_paths(test_runtime(), NULL, NULL, "auto"));
    clReleaseMemObject(mem);
}
END_TEST

START_TEST(bad_leading_dimension_is_a_clear_error) {
    float host[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    cl_mem mem = test_upload(host, 16);
    clgqa_view v = clgqa_view_at(mem, 0);
    /* lda 2 < k 4 for a non-transposed row-major A. */
    clgqa_status s = clgqa_sgemm(test_runtime(), 0, 0, 2, 2, 4, 1, v, 2, v, 2, 0, v, 2);
    ck_assert_int_eq(s, CLGQA_ERR_CLBLAST);
    ck_assert_msg(strstr(clgqa_error_message(), "CLBlastSgemm") != NULL, "%s", clgqa_error_message());
    clReleaseMemObject(mem);
}
END_TEST

/* A tuner result as clblast_tuner_xgemm_direct writes it (trimmed). */
static void write_tuning(const char *dir, const char *file, const char *device, const char *params) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"kernel_family\": \"xgemm_direct_1\", \"precision\": \"32\",\n"
            " \"best_kernel\": \"XgemmDirectTN\", \"best_parameters\": \"%s\",\n"
            " \"device\": \"%s\"}\n",
            params, device);
    fclose(f);
}

START_TEST(tuning_files_are_applied_by_device_name) {
    char dir[] = "/tmp/clgqa-tuning-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    clgqa_runtime *rt;
    TEST_OK(test_runtime_create(&rt));
    /* Valid parameters for this device, and a file for another device. */
    write_tuning(dir, "mine.json", rt->device_name,
                 "KWID=2 MDIMAD=8 MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 PRECISION=32 VWMD=1 "
                 "VWND=1 WGD=16");
    write_tuning(dir, "other.json", "some other device", "KWID=2 NONSENSE=1");
    /* The runtime option (runtimes created from here on take the variable). */
    snprintf(rt->tuning_dir, sizeof rt->tuning_dir, "%s", dir);
    setenv("CLGQA_TUNING_DIR", dir, 1);
    TEST_OK(clgqa_gemm_apply_tuning(rt));
    ck_assert_msg(strstr(rt->clblast_tuning, "XgemmDirect") && strstr(rt->clblast_tuning, "mine.json"),
                  "applied: '%s'", rt->clblast_tuning);
    ck_assert_msg(!strstr(rt->clblast_tuning, "other.json"), "applied: '%s'", rt->clblast_tuning);
    /* Products are still right with the overridden kernel: 7x5 * 5x3. */
    float a[35], b[15], c[21];
    test_fill_uniform(a, 35, -1, 1);
    test_fill_uniform(b, 15, -1, 1);
    double want[21] = {0};
    reference_gemm(0, 0, 7, 3, 5, 1, a, 5, b, 3, 0, want, 3);
    cl_mem da, db, dc;
    TEST_OK(clgqa_buffer_create(rt, sizeof a, &da));
    TEST_OK(clgqa_buffer_create(rt, sizeof b, &db));
    TEST_OK(clgqa_buffer_create(rt, sizeof c, &dc));
    TEST_OK(clgqa_buffer_write(rt, da, 0, sizeof a, a));
    TEST_OK(clgqa_buffer_write(rt, db, 0, sizeof b, b));
    TEST_OK(clgqa_sgemm(rt, 0, 0, 7, 3, 5, 1, clgqa_view_at(da, 0), 5, clgqa_view_at(db, 0), 3, 0,
                        clgqa_view_at(dc, 0), 3));
    TEST_OK(clgqa_buffer_read(rt, dc, 0, sizeof c, c));
    test_assert_close("C", c, want, 21, GEMM_REL, GEMM_ABS);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    clgqa_runtime_destroy(rt);

    /* clgqa_device_match widens the match to names containing it. */
    char part[5] = {0};
    TEST_OK(test_runtime_create(&rt));
    memcpy(part, rt->device_name, 4);
    char path[600];
    snprintf(path, sizeof path, "%s/other.json", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/mine.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"precision\": \"32\", \"best_kernel\": \"XgemmDirect\", \"device\": \"another "
            "name\", \"clgqa_device_match\": \"%s\", \"best_parameters\": \"KWID=2 MDIMAD=8 "
            "MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 VWMD=1 VWND=1 WGD=16\"}",
            part);
    fclose(f);
    TEST_OK(clgqa_gemm_apply_tuning(rt));
    ck_assert_msg(strstr(rt->clblast_tuning, "mine.json"), "applied: '%s'", rt->clblast_tuning);
    clgqa_runtime_destroy(rt);

    /* ... or one of a list of texts (a family of devices); a list holding
     * anything but texts is an error naming the file. */
    static const char *const lists[] = {"[\"no such device\", \"%s\"]", "[\"no such device\"]",
                                        "[\"%s\", 3]", "[]"};
    for (int i = 0; i < 4; i++) {
        char list[64];
        snprintf(list, sizeof list, lists[i], part);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "{\"precision\": \"32\", \"best_kernel\": \"XgemmDirect\", \"device\": \"another "
                "name\", \"clgqa_device_match\": %s, \"best_parameters\": \"KWID=2 MDIMAD=8 "
                "MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 VWMD=1 VWND=1 WGD=16\"}",
                list);
        fclose(f);
        TEST_OK(test_runtime_create(&rt));
        clgqa_status status = clgqa_gemm_apply_tuning(rt);
        if (i < 2) {
            TEST_OK(status);
            ck_assert_msg(!strstr(rt->clblast_tuning, "mine.json") == (i == 1), "%s: applied '%s'",
                          list, rt->clblast_tuning);
        } else {
            ck_assert_int_eq(status, CLGQA_ERR_FORMAT);
            ck_assert_msg(strstr(clgqa_error_message(), "mine.json") &&
                              strstr(clgqa_error_message(), "clgqa_device_match"),
                          "%s", clgqa_error_message());
        }
        clgqa_runtime_destroy(rt);
    }

    /* clgqa_platform: every device of that platform, whatever its name (a
     * CPU runtime's device is named after the processor); another platform's
     * file is left alone; a platform that is not a text is an error. */
    static const char *const platforms[] = {"\"%s\"", "\"%s (another)\"", "7"};
    for (int i = 0; i < 3; i++) {
        TEST_OK(test_runtime_create(&rt));
        char platform[300];
        snprintf(platform, sizeof platform, platforms[i], rt->platform_name);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "{\"precision\": \"32\", \"best_kernel\": \"XgemmDirect\", \"device\": \"a CPU "
                "model\", \"clgqa_platform\": %s, \"best_parameters\": \"KWID=2 MDIMAD=8 "
                "MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 VWMD=1 VWND=1 WGD=16\"}",
                platform);
        fclose(f);
        clgqa_status status = clgqa_gemm_apply_tuning(rt);
        if (i < 2) {
            TEST_OK(status);
            ck_assert_msg(!strstr(rt->clblast_tuning, "mine.json") == (i == 1), "%s: applied '%s'",
                          platform, rt->clblast_tuning);
        } else {
            ck_assert_int_eq(status, CLGQA_ERR_FORMAT);
            ck_assert_msg(strstr(clgqa_error_message(), "clgqa_platform"), "%s",
                          clgqa_error_message());
        }
        clgqa_runtime_destroy(rt);
    }

    /* The shipped H100 file serves the Hopper family by name. (Applying it
     * overrides this device's Xgemm parameters for the process; the next
     * runtime's tuning puts this device's own back.) */
    unsetenv("CLGQA_TUNING_DIR");
    static const struct {
        const char *name;
        int hopper;
    } names[] = {{"NVIDIA H100 80GB HBM3", 1}, {"NVIDIA H100 PCIe", 1}, {"NVIDIA H100 NVL", 1},
                 {"NVIDIA H200", 1},           {"NVIDIA GH200 480GB", 1}, {"NVIDIA A100-SXM4-80GB", 0}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        TEST_OK(test_runtime_create(&rt));
        snprintf(rt->device_name, sizeof rt->device_name, "%s", names[i].name);
        TEST_OK(clgqa_gemm_apply_tuning(rt));
        ck_assert_msg(!strstr(rt->clblast_tuning, "nvidia-h100-xgemm.json") == !names[i].hopper,
                      "%s: applied '%s'", names[i].name, rt->clblast_tuning);
        clgqa_runtime_destroy(rt);
    }
    TEST_OK(test_runtime_create(&rt));
    TEST_OK(clgqa_gemm_apply_tuning(rt));
    clgqa_runtime_destroy(rt);
    setenv("CLGQA_TUNING_DIR", dir, 1);

    /* A malformed file is an error naming it. */
    write_tuning(dir, "mine.json", "x\" broken", "");
    TEST_OK(test_runtime_create(&rt));
    ck_assert_int_eq(clgqa_gemm_apply_tuning(rt), CLGQA_ERR_FORMAT);
    ck_assert_msg(strstr(clgqa_error_message(), "mine.json"), "%s", clgqa_error_message());
    clgqa_runtime_destroy(rt);
    unsetenv("CLGQA_TUNING_DIR");
    test_remove_tree(dir);
}
END_TEST

/* ---- operands read in place, and split-K ---- */

/* A fresh runtime (no temporary buffer yet) on the suite's context and
 * queue, so buffers outlive it, with `path` ("auto", "direct", "indirect")
 * and split option `split`. */
static clgqa_runtime *runtime_with(const char *path, size_t split) {
    clgqa_runtime *rt, *shared = test_runtime();
    TEST_OK(clgqa_runtime_wrap(shared->context, shared->device, shared->queue,
                               test_runtime_options(), &rt));
    TEST_OK(test_choose_paths(rt, NULL, NULL, path));
    rt->gemm_split = split;
    return rt;
}

static cl_mem upload_to(clgqa_runtime *rt, const float *host, size_t n) {
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(rt, n * sizeof(float), &mem));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, n * sizeof(float), host));
    return mem;
}

/* The tiles are the smallest sizes that need no padding: a weight
 * gradient's product (C = A^T B, both stored K-major, the layout the model
 * gives CLBlast) of tile-multiple sizes runs on the indirect kernel without
 * a temporary buffer, from buffers at offset 0 or from registered regions
 * at aligned offsets; unregistered offsets, sizes off the tiles, and the
 * forward's layout (C = A B^T) make CLBlast copy. */
START_TEST(tiled_products_copy_nothing) {
    clgqa_runtime *rt = runtime_with("indirect", 1);
    clgqa_gemm_tiles t;
    TEST_OK(clgqa_gemm_tiles_of(rt, &t));
    ck_assert_msg(t.m >= 1 && t.n >= 1 && t.k >= 1 && t.rows % t.m == 0 && t.rows % t.n == 0 &&
                      t.rows % t.k == 0,
                  "tiles %zu %zu %zu rows %zu", t.m, t.n, t.k, t.rows);
    /* PoCL's and Intel's shipped tuning (tuning/) and CLBlast's default
     * kernels are all GEMMK=0 with 16- to 128-wide tiles. */
    ck_assert_msg(t.m >= 16 && t.n >= 16 && t.k >= 16, "tiles %zu %zu %zu", t.m, t.n, t.k);
    size_t m = 2 * t.n, n = t.m, k = 3 * t.k, align = clgqa_gemm_operand_alignment(rt);
    size_t a_len = k * m, b_len = k * n, c_len = m * n;
    float *a = test_random_array(align + a_len, -1, 1), *b = test_random_array(b_len, -1, 1);
    float *got = malloc(c_len * sizeof *got);
    double *want = calloc(c_len, sizeof *want);
    reference_gemm(1, 0, m, n, k, 1, a + align, m, b, n, 0, want, n);
    cl_mem da = upload_to(rt, a, align + a_len), db = upload_to(rt, b, b_len), dc;
    TEST_OK(clgqa_buffer_create(rt, (align + c_len) * sizeof(float), &dc));
    clgqa_view av = clgqa_view_at(da, align), bv = clgqa_view_at(db, 0),
               cv = clgqa_view_at(dc, align);

    /* At aligned offsets, unregistered: CLBlast copies A and C. */
    TEST_OK(clgqa_sgemm(rt, 1, 0, m, n, k, 1, av, m, bv, n, 0, cv, n));
    TEST_OK(clgqa_finish(rt));
    ck_assert_uint_gt(clgqa_gemm_temp_bytes(rt), 0);
    clgqa_runtime_destroy(rt);

    rt = runtime_with("indirect", 1);
    TEST_OK(clgqa_gemm_operand_region(rt, av, a_len));
    TEST_OK(clgqa_gemm_operand_region(rt, cv, c_len));
    TEST_OK(clgqa_sgemm(rt, 1, 0, m, n, k, 1, av, m, bv, n, 0, cv, n));
    TEST_OK(clgqa_buffer_read(rt, dc, align * sizeof(float), c_len * sizeof(float), got));
    ck_assert_uint_eq(clgqa_gemm_temp_bytes(rt), 0);
    test_assert_close("C", got, want, c_len, GEMM_REL, GEMM_ABS);
    /* One row of K short of a tile: padding needed. */
    TEST_OK(clgqa_sgemm(rt, 1, 0, m, n, k - 1, 1, av, m, bv, n, 0, cv, n));
    TEST_OK(clgqa_finish(rt));
    ck_assert_uint_gt(clgqa_gemm_temp_bytes(rt), 0);
    clgqa_gemm_operand_regions_release(rt, da);
    clgqa_gemm_operand_regions_release(rt, dc);
    clgqa_runtime_destroy(rt);

    /* The forward's C = A B^T with A [m, k] and B [n, k]: one operand is
     * read along its rows whatever the layout, so CLBlast copies it. */
    rt = runtime_with("indirect", 1);
    TEST_OK(clgqa_sgemm(rt, 0, 1, m, n, k, 1, clgqa_view_at(da, 0), k, bv, k, 0,
                        clgqa_view_at(dc, 0), n));
    TEST_OK(clgqa_finish(rt));
    ck_assert_uint_gt(clgqa_gemm_temp_bytes(rt), 0);
    clgqa_runtime_destroy(rt);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    free(a), free(b), free(got), free(want);
}
END_TEST

/* The auto plan with an H100's tiles (128 x 128, k 32) and 132 compute
 * units: ViT-S/16's weight gradients at batch 64 (12672 padded rows) split
 * to at least 264 work-groups, the count padding the rows least; products
 * that fill the device, run direct, have an output off the tiles or few
 * rows are not split; a forced
 * count is kept up to one chunk per k tile. */
START_TEST(split_plan) {
    const clgqa_gemm_tiles h100 = {128, 128, 32, 128};
    const size_t rows = 12672;
    /* qkv: 768 x 384 is 18 tiles; 15 to 18 chunks, 18 divides 396 k tiles. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 768, 384, rows), 18);
    /* fc1 and fc2: 36 tiles; 8 would pad to 12800 rows, 9 to none. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 1536, 384, rows), 9);
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 384, 1536, rows), 9);
    ck_assert_uint_eq(clgqa_gemm_chunk_rows(&h100, rows, 9) * 9, rows);
    /* The forward's products fill it; a direct product is left alone. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, rows, 768, 384), 1);
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 0, 0, 384, 384, rows), 1);
    /* An output off the tiles would be copied chunk by chunk: not split. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 384, 16, rows), 1);
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 1000, 384, rows), 1);
    /* Too few rows for two chunks of 4 k tiles; 64 chunks at most. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 0, 768, 384, 200), 1);
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 10000, 1, 0, 128, 128, 1 << 20), 64);
    /* Forced: as asked, at most one chunk per k tile. */
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 0, 3, 64, 64, rows), 3);
    ck_assert_uint_eq(clgqa_gemm_split_plan(&h100, 132, 1, 5, 64, 64, 64), 2);
    ck_assert_uint_eq(clgqa_gemm_chunk_rows(&h100, 100, 3), 64);
}
END_TEST

/* Split-K against the unsplit product and a float64 reference, and bitwise
 * run to run: C = A^T B over K rows in `chunks` chunks, the partials summed
 * by the column-sum finish as the model sums them, on each GEMM path, with
 * shapes on the tiles (one batched call) and off them (one call per chunk)
 * and with A at a registered and an unregistered offset. */
typedef struct split_case {
    size_t m, n, k, chunks;
    int on_tiles, registered;
} split_case;
static const split_case split_cases[] = {
    {0, 0, 0, 3, 1, 1}, {0, 0, 0, 4, 1, 0}, {37, 19, 250, 3, 0, 0}, {5, 70, 97, 3, 0, 1},
};

START_TEST(split_matches_unsplit_and_reference) {
    const split_case *sc = &split_cases[_i / GEMM_PATHS];
    clgqa_runtime *rt = runtime_with(gemm_paths[_i % GEMM_PATHS], sc->chunks);
    clgqa_gemm_tiles t;
    TEST_OK(clgqa_gemm_tiles_of(rt, &t));
    size_t m = sc->on_tiles ? 2 * t.n : sc->m, n = sc->on_tiles ? t.m : sc->n,
           k = sc->on_tiles ? 5 * t.k + 1 : sc->k;
    size_t chunks;
    TEST_OK(clgqa_gemm_split_chunks(rt, m, n, k, &chunks));
    ck_assert_uint_eq(chunks, sc->chunks);
    size_t rows = clgqa_gemm_chunk_rows(&t, k, chunks), held = chunks * rows;
    ck_assert_uint_ge(held, k);
    size_t align = clgqa_gemm_operand_alignment(rt), off = sc->registered ? align : 3;
    /* A and B hold chunks x rows rows; the rows past K are zero in B only
     * (A's are random: a product with them must be 0, as in the model). */
    float *a = test_random_array(off + held * m, -1, 1), *b = test_random_array(held * n, -1, 1);
    memset(b + k * n, 0, (held - k) * n * sizeof *b);
    double *want = calloc(m * n, sizeof *want), *bound = calloc(m * n, sizeof *bound);
    reference_gemm(1, 0, m, n, k, 1, a + off, m, b, n, 0, want, n);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            for (size_t p = 0; p < k; p++)
                bound[i * n + j] += fabs((double)a[off + p * m + i] * b[p * n + j]);
    cl_mem da = upload_to(rt, a, off + held * m), db = upload_to(rt, b, held * n), dp, dout;
    size_t partial_floats = chunks * m * n;
    TEST_OK(clgqa_buffer_create(rt, partial_floats * sizeof(float), &dp));
    TEST_OK(clgqa_buffer_create(rt, 2 * m * n * sizeof(float), &dout));
    clgqa_view av = clgqa_view_at(da, off);
    if (sc->registered)
        TEST_OK(clgqa_gemm_operand_region(rt, av, held * m));
    /* The finish: out += the chunks' sum, in chunk order. */
    clgqa_column_sum sum = {0, chunks, m * n, 0};
    cl_uint table[CLGQA_COLUMN_SUM_UINTS];
    TEST_OK(clgqa_column_sum_encode(&sum, 1, table));
    cl_mem dtable;
    TEST_OK(clgqa_buffer_create(rt, sizeof table, &dtable));
    TEST_OK(clgqa_buffer_write(rt, dtable, 0, sizeof table, table));
    float *split[2], *unsplit = malloc(m * n * sizeof *unsplit);
    for (int run = 0; run < 2; run++) {
        split[run] = malloc(m * n * sizeof *split[run]);
        TEST_OK(clgqa_buffer_fill(rt, clgqa_view_at(dout, 0), m * n, 0.0f));
        TEST_OK(clgqa_sgemm_split(rt, m, n, k, chunks, av, m, clgqa_view_at(db, 0), n,
                                  clgqa_view_at(dp, 0)));
        TEST_OK(clgqa_column_sums_finish(rt, clgqa_view_at(dout, 0), clgqa_view_at(dp, 0),
                                         clgqa_view_at(dtable, 0), &sum, 1));
        TEST_OK(clgqa_buffer_read(rt, dout, 0, m * n * sizeof(float), split[run]));
    }
    TEST_OK(clgqa_sgemm(rt, 1, 0, m, n, k, 1, av, m, clgqa_view_at(db, 0), n, 0,
                        clgqa_view_at(dout, m * n), n));
    TEST_OK(clgqa_buffer_read(rt, dout, m * n * sizeof(float), m * n * sizeof(float), unsplit));
    /* Bit for bit the same twice. Against float64 and the unsplit product:
     * a float32 sum of K products errs by at most K * 2^-24 times the sum of
     * their magnitudes (Higham's bound, whatever the order), so split and
     * unsplit results differ by at most twice that; a chunk lost or summed
     * twice moves an element by about sqrt(rows) / 3, far beyond it. */
    ck_assert_msg(!memcmp(split[0], split[1], m * n * sizeof(float)), "split-K not repeatable");
    const double u = ldexp(1.0, -24);
    for (size_t i = 0; i < m * n; i++) {
        double tol = (double)k * u * bound[i] + 1e-30;
        ck_assert_msg(fabs(split[0][i] - want[i]) <= tol, "[%zu] split %.9g want %.9g (tol %g)", i,
                      (double)split[0][i], want[i], tol);
        ck_assert_msg(fabs((double)split[0][i] - unsplit[i]) <= 2 * tol,
                      "[%zu] split %.9g unsplit %.9g", i, (double)split[0][i], (double)unsplit[i]);
    }
    if (sc->registered)
        clgqa_gemm_operand_regions_release(rt, da);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dp);
    clReleaseMemObject(dout);
    clReleaseMemObject(dtable);
    clgqa_runtime_destroy(rt);
    free(a), free(b), free(want), free(bound), free(split[0]), free(split[1]), free(unsplit);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, sgemm_matches_reference, 0,
                        (int)(sizeof shapes / sizeof shapes[0]) * GEMM_PATHS);
    tcase_add_test(tc, auto_gemm_path_is_restored);
    tcase_add_test(tc, bad_leading_dimension_is_a_clear_error);
    tcase_add_test(tc, tuning_files_are_applied_by_device_name);
    tcase_add_test(tc, tiled_products_copy_nothing);
    tcase_add_test(tc, split_plan);
    tcase_add_loop_test(tc, split_matches_unsplit_and_reference, 0,
                        (int)(sizeof split_cases / sizeof split_cases[0]) * GEMM_PATHS);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
