/* The clgqa command's device handling and bad input: one clear line on
 * stderr and a non-zero exit, never a crash. Runs the clgqa program built
 * beside this test. */
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
                      strstr(out, "compute units:") && strstr(out, "max work-group size:"),
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
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
