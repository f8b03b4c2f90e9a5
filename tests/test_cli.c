/* The clgqa command's device handling and bad input: one clear line on
 * stderr and a non-zero exit, never a crash. Runs the clgqa program built
 * beside this test. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/test_util.h"

START_TEST(devices_lists_the_default_device) {
    char out[8192], err[4096];
    ck_assert_int_eq(test_run_clgqa("", "devices", out, sizeof out, err, sizeof err), 0);
    ck_assert_msg(strstr(out, "[0] ") && strstr(out, "platform:") && strstr(out, "driver:") &&
                      strstr(out, "compute units:") && strstr(out, "max work-group size:") &&
                          strstr(out, "    precision: 32"),
                  "devices printed: %s", out);
    ck_assert_msg(strstr(out, test_runtime()->device_name), "the default device is missing: %s",
                  out);
}
END_TEST

START_TEST(no_platform_is_one_clear_line) {
    char out[4096], err[4096], empty[] = "/tmp/clgqa-no-icd-XXXXXX", env[128];
    ck_assert_ptr_nonnull(mkdtemp(empty));
    snprintf(env, sizeof env, "OCL_ICD_VENDORS=%s", empty);
    ck_assert_int_eq(test_run_clgqa(env, "devices", out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no OpenCL platform");
    ck_assert_int_eq(test_run_clgqa(env, "bench --steps 1", out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no OpenCL platform");
    rmdir(empty);
}
END_TEST

START_TEST(unknown_device_is_one_clear_line) {
    char out[4096], err[4096];
    ck_assert_int_eq(test_run_clgqa("", "bench --device no-such-gpu-9 --steps 1", out, sizeof out, err,
                               sizeof err), 1);
    test_assert_one_line_naming(err, "no-such-gpu-9");
    ck_assert_int_eq(test_run_clgqa("CLGQA_DEVICE=77", "bench --steps 1", out, sizeof out, err,
                               sizeof err), 1);
    test_assert_one_line_naming(err, "'77'");
}
END_TEST

/* clgqa --version: the library's version, the CLBlast it was built with
 * and the build's options, with no OpenCL platform needed. */
START_TEST(version_names_the_library_clblast_and_the_build) {
    char out[4096], err[4096], empty[] = "/tmp/clgqa-no-icd-XXXXXX", env[128], want[64];
    ck_assert_ptr_nonnull(mkdtemp(empty));
    snprintf(env, sizeof env, "OCL_ICD_VENDORS=%s", empty);
    ck_assert_int_eq(test_run_clgqa(env, "--version", out, sizeof out, err, sizeof err), 0);
    snprintf(want, sizeof want, "clgqa %s\n", clgqa_version());
    ck_assert_msg(!strncmp(out, want, strlen(want)), "%s", out);
    ck_assert_msg(strstr(out, "\nCLBlast 1.") && strstr(out, "MPI data parallelism o") &&
                      strstr(out, "sanitizers ") && strstr(out, "build: "),
                  "%s", out);
    ck_assert_str_eq(err, "");
    rmdir(empty);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    char out[4096], err[4096];
    ck_assert_int_eq(test_run_clgqa("", "no-such-command", out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "unknown command 'no-such-command'"), "%s", err);
    ck_assert_int_eq(test_run_clgqa("", "devices extra", out, sizeof out, err, sizeof err), 2);
    ck_assert_int_eq(test_run_clgqa("", "bench --steps 0", out, sizeof out, err, sizeof err), 2);
    test_assert_one_line_naming(err, "--steps");
    ck_assert_int_eq(test_run_clgqa("", "bench --schemes mhsa,nope", out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "nope");
    ck_assert_int_eq(test_run_clgqa("", "bench --size xl", out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "xl");
}
END_TEST

START_TEST(train_without_config_uses_the_embedded_default) {
    /* The demo's model on Fashion-MNIST, cut to 2 steps and 1 test batch. */
    char out[4096], err[16384], dir[] = "/tmp/clgqa-cli-train-XXXXXX", args[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(args, sizeof args,
             "train --set epochs=1 --set max_steps_per_epoch=2 --set max_eval_batches=1 "
             "--set save_model=false --set out_dir=%s", dir);
    ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 0);
    ck_assert_msg(strstr(out, "test accuracy:"), "stdout: %s\nstderr: %s", out, err);
    ck_assert_msg(strstr(err, "fashion-mnist, kdgqa"), "stderr: %s", err);
    char run_csv[256];
    struct stat st;
    snprintf(run_csv, sizeof run_csv, "%s/run.csv", dir);
    ck_assert_msg(stat(run_csv, &st) == 0 && st.st_size > 0, "no %s", run_csv);
    test_remove_tree(dir);
}
END_TEST

START_TEST(bench_reports_every_figure) {
    /* A tiny run: the figures' presence and consistency, not their values. */
    char out[16384], err[8192], json[] = "/tmp/clgqa-bench-XXXXXX";
    int fd = mkstemp(json);
    ck_assert(fd >= 0);
    close(fd);
    char args[256];
    snprintf(args, sizeof args, "bench --batch 4 --steps 2 --warmup 1 --schemes gqa,pgqa --json %s",
             json);
    ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 0);
    ck_assert_msg(strstr(out, "gqa") && strstr(out, "pgqa") && strstr(out, "gemm") &&
                      strstr(out, "GFLOP/s"), "bench printed: %s", out);
    FILE *f = fopen(json, "r");
    ck_assert_ptr_nonnull(f);
    char text[16384];
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    unlink(json);
    const char *keys[] = {"\"tool\"", "\"clgqa\"", "\"device\"", "\"driver\"", "\"clblast_version\"",
                          "\"gemm_peak_gflops\"", "\"train_step_ms\"", "\"median\"", "\"train_img_s\"",
                          "\"infer_img_s\"", "\"op_ms\"", "\"device_memory_bytes\"", "\"pgqa\"",
                          "\"gelu\"", "\"layernorm\"", "\"attention\"", "\"adamw\"", "\"gemm\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(strstr(text, keys[i]), "JSON lacks %s:\n%s", keys[i], text);
    ck_assert_msg(strstr(text, "\"attention_forward_ms\"") &&
                      strstr(text, "\"attention_backward_ms\"") &&
                      strstr(text, "\"attention_saved_bytes\""),
                  "JSON lacks the attention figures:\n%s", text);
#if defined(__SANITIZE_ADDRESS__)
    /* Sanitizer builds cannot preload the counter, and say so. */
    ck_assert_msg(strstr(out, "not counted"), "bench printed: %s", out);
#else
    /* The counter sees the step's commands; a step after warm-up creates no
     * buffer and, its batch uploaded on the transfer queue, never waits. */
    const char *calls = strstr(text, "\"step_opencl_calls\"");
    ck_assert_msg(calls, "JSON lacks the OpenCL call counts:\n%s", text);
    long commands = -1, kernels = -1, buffers = -1, waits = -1;
    const char *at;
    if ((at = strstr(calls, "\"host_waits\":")))
        waits = strtol(at + strlen("\"host_waits\":"), NULL, 10);
    if ((at = strstr(calls, "\"commands\":")))
        commands = strtol(at + strlen("\"commands\":"), NULL, 10);
    if ((at = strstr(calls, "\"kernels\":")))
        kernels = strtol(at + strlen("\"kernels\":"), NULL, 10);
    if ((at = strstr(calls, "\"buffers_created\":")))
        buffers = strtol(at + strlen("\"buffers_created\":"), NULL, 10);
    ck_assert_msg(kernels > 50 && commands >= kernels && buffers == 0 && waits == 0,
                  "commands %ld, kernels %ld, buffers created %ld, host waits %ld:\n%s", commands,
                  kernels, buffers, waits, text);
#endif
}
END_TEST

/* The counter's pose and markers (bench/counter, README "Another device's
 * launch shapes"): PoCL reports an H100's figures, clgqa and CLBlast make
 * that device's choices, and a plan run (kernels replaced by markers)
 * reports each family's launches and work-groups. */
#if !defined(__SANITIZE_ADDRESS__)
static const cJSON *json_at(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    ck_assert_msg(item, "JSON lacks \"%s\"", key);
    return item;
}
static double json_value(const cJSON *object, const char *key) {
    const cJSON *item = json_at(object, key);
    ck_assert_msg(cJSON_IsNumber(item), "\"%s\" is not a number", key);
    return item->valuedouble;
}
static const char *json_text(const cJSON *object, const char *key) {
    const cJSON *item = json_at(object, key);
    ck_assert_msg(cJSON_IsString(item), "\"%s\" is not a string", key);
    return item->valuestring;
}
#endif

START_TEST(counter_poses_pocl_as_an_h100) {
#if defined(__SANITIZE_ADDRESS__)
    return; /* the sanitizer's runtime must be the first library loaded: no preload */
#else
    char out[16384], err[8192], env[2048], dir[1024];
    ck_assert_int_eq(test_run_clgqa("", "devices", out, sizeof out, err, sizeof err), 0);
    if (!strstr(out, "Portable Computing Language")) {
        fprintf(stderr, "counter_poses_pocl_as_an_h100: no PoCL device here, skipped\n");
        return;
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    ck_assert(n > 0);
    dir[n] = 0;
    *strrchr(dir, '/') = 0;

    /* The device as clgqa lists it: the H100's name, platform, type and
     * limits (tuning/nvidia-h100-xgemm.json's run: 132 SMs, 48 KiB). */
    snprintf(env, sizeof env, "CLGQA_COUNTER_POSE=h100 LD_PRELOAD='%s/libclgqa_counter.so'", dir);
    ck_assert_int_eq(test_run_clgqa(env, "devices", out, sizeof out, err, sizeof err), 0);
    const char *h100 = strstr(out, "NVIDIA H100 80GB HBM3\n    platform: NVIDIA CUDA\n");
    ck_assert_msg(h100 && strstr(h100, "type: GPU") && strstr(h100, "posing as h100") &&
                      strstr(h100, "compute units: 132 ") && strstr(h100, "local memory: 48 KiB") &&
                      strstr(h100, "max work-group size: 1024"),
                  "devices printed: %s", out);
    snprintf(env, sizeof env, "CLGQA_COUNTER_POSE=h200x LD_PRELOAD='%s/libclgqa_counter.so'", dir);
    ck_assert_int_eq(test_run_clgqa(env, "devices", out, sizeof out, err, sizeof err), 2);
    test_assert_one_line_naming(err, "CLGQA_COUNTER_POSE=h200x");

    /* A plan run of the demo's ViT at batch 8 on the posed H100. */
    char json_path[] = "/tmp/clgqa-plan-XXXXXX", args[512];
    int fd = mkstemp(json_path);
    ck_assert(fd >= 0);
    close(fd);
    snprintf(args, sizeof args,
             "bench --batch 8 --steps 1 --warmup 1 --schemes gqa --json %s", json_path);
    ck_assert_int_eq(test_run_clgqa("CLGQA_DEVICE=H100 CLGQA_COUNTER_POSE=h100 "
                                    "CLGQA_COUNTER_MARKERS=1",
                                    args, out, sizeof out, err, sizeof err),
                     0);
    ck_assert_msg(strstr(out, "PLAN RUN") && strstr(out, "meaningless") &&
                      strstr(out, "CLBlast helper kernels") && strstr(out, "wg median"),
                  "bench printed: %s", out);
    static char text[1 << 18];
    FILE *f = fopen(json_path, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    ck_assert(got < sizeof text - 1);
    text[got] = 0;
    fclose(f);
    unlink(json_path);
    cJSON *doc = cJSON_Parse(text);
    ck_assert_msg(doc, "not JSON: %s", text);
    ck_assert(cJSON_IsTrue(json_at(doc, "plan_only")));
    ck_assert_str_eq(json_text(doc, "counter_pose"), "h100");
    ck_assert_str_eq(json_text(doc, "device"), "NVIDIA H100 80GB HBM3");
    /* clgqa's choices for a GPU, and the shipped H100 tuning matched by name. */
    ck_assert_str_eq(json_text(doc, "device_class"), "gpu");
    ck_assert_str_eq(json_text(doc, "attention_kernel"), "tiled");
    ck_assert_msg(strstr(json_text(doc, "clblast_tuning"), "tuning/nvidia-h100-xgemm.json"),
                  "tuning: %s", json_text(doc, "clblast_tuning"));
    /* CLBlast's database entry for an NVIDIA GPU (768-1984 in its tables),
     * not PoCL's tuned 64. */
    double min_indirect = json_value(doc, "gemm_min_indirect_size");
    ck_assert_msg(min_indirect >= 512 && min_indirect <= 4096, "XGEMM_MIN_INDIRECT_SIZE %g",
                  min_indirect);

    const cJSON *gqa = json_at(json_at(doc, "schemes"), "gqa");
    const cJSON *launches = json_at(gqa, "step_kernel_launches");
    const cJSON *calls = json_at(gqa, "step_opencl_calls");
    const cJSON *gemm_calls = json_at(gqa, "step_gemm_calls");
    /* Every launch of the step sits in one family; CLBlast runs one GEMM
     * kernel per product, and its helpers are its other kernels. */
    double family_sum = 0, helpers = 0;
    const cJSON *family;
    cJSON_ArrayForEach(family, json_at(launches, "families")) {
        double count = json_value(family, "launches");
        family_sum += count;
        if (!strcmp(json_text(family, "role"), "clblast_helper"))
            helpers += count;
        ck_assert_msg(json_value(family, "work_groups_min") >= 1 &&
                          json_value(family, "work_groups_min") <=
                              json_value(family, "work_groups_median"),
                      "family %s: work-groups min %g, median %g", family->string,
                      json_value(family, "work_groups_min"),
                      json_value(family, "work_groups_median"));
    }
    ck_assert_double_eq(family_sum, json_value(calls, "kernels"));
    ck_assert_double_eq(helpers, json_value(launches, "clblast_helper_kernels"));
    ck_assert_double_eq(json_value(launches, "gemm_launches"),
                        json_value(gemm_calls, "direct") + json_value(gemm_calls, "indirect"));
    ck_assert(json_value(launches, "gemm_launches") > 0);
    /* GELU's forward, one launch per layer over (batch x 17 tokens) rows of
     * the 256 hidden columns (the demo: 4 layers, width 64, MLP ratio 4),
     * in the GPU class's work-groups of 256 work-items: a row of 256 each
     * (PoCL as itself, a CPU, takes groups of 4096: 16 rows). */
    const cJSON *gelu = json_at(json_at(launches, "kernels"), "gelu_bias_forward");
    double rows = 8 * 17, expected = rows * ceil(4 * 64 / 256.0);
    ck_assert_double_eq(json_value(gelu, "launches"), 4);
    ck_assert_double_eq(json_value(gelu, "work_groups_min"), expected);
    ck_assert_double_eq(json_value(gelu, "work_groups_median"), expected);
    ck_assert_str_eq(json_text(gelu, "family"), "elementwise");
    cJSON_Delete(doc);
#endif
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, devices_lists_the_default_device);
    tcase_add_test(tc, no_platform_is_one_clear_line);
    tcase_add_test(tc, unknown_device_is_one_clear_line);
    tcase_add_test(tc, version_names_the_library_clblast_and_the_build);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, train_without_config_uses_the_embedded_default);
    tcase_add_test(tc, bench_reports_every_figure);
    tcase_add_test(tc, counter_poses_pocl_as_an_h100);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
