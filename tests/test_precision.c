/* precision (32 | 16-mixed) in the trainer: the refusal on devices without
 * half-precision floats, and on devices with them (Intel's CPU runtime) a
 * 16-mixed run's loss scaler in steps.csv, config.yaml and its checkpoints,
 * its bit-exact resume mid-epoch (also after SIGTERM to the command), and
 * checkpoints moving between the two precisions. (The scaler's arithmetic:
 * test_ops_adamw and test_model.)
 *
 * The runs use a tiny synthetic MNIST (8x8), a 2-layer 16-wide ViT and 2
 * epochs of 5 steps. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_internal.h"
#include "runtime_internal.h"
#include "safetensors.h"
#include "train_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define TRAIN_COUNT 80 /* 5 batches of 16 */

static char data_dir[64];

static void make_dataset(void) {
    if (data_dir[0])
        return;
    snprintf(data_dir, sizeof data_dir, "/tmp/clgqa-test-precision-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    ck_assert_int_eq(gen_mnist(data_dir, TRAIN_COUNT, 32, 8, 0), 0);
}

static void set(clgqa_config *cfg, const char *key_value) { TEST_OK(clgqa_config_set(cfg, key_value)); }

/* The tiny run in a fresh folder (out_dir), at `precision`. */
static void tiny_config(clgqa_config *cfg, const char *precision, char *out_dir, size_t size) {
    make_dataset();
    clgqa_config_defaults(cfg);
    char buf[1200];
    static const char *const keys[] = {
        "dataset=mnist", "in_chans=1",  "size=c",       "att_scheme=kdgqa", "embed_dim=16",
        "num_layers=2",  "num_heads=4", "num_kv_heads=2", "img_size=8",     "patch_size=4",
        "epochs=2",      "batch_size=16", "lr=0.003",   "schedule=cosine", "warmup_steps=3",
        "clip_grad_norm=1", "seed=5",   "log_steps=1"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        set(cfg, keys[i]);
    snprintf(buf, sizeof buf, "data_dir=%s", data_dir);
    set(cfg, buf);
    snprintf(buf, sizeof buf, "precision=%s", precision);
    set(cfg, buf);
    snprintf(out_dir, size, "%s/run-XXXXXX", data_dir);
    ck_assert_ptr_nonnull(mkdtemp(out_dir));
    snprintf(buf, sizeof buf, "out_dir=%s", out_dir);
    set(cfg, buf);
    TEST_OK(clgqa_config_finalize(cfg));
}

static clgqa_status train(const clgqa_config *cfg, const char *resume_dir, long stop_after_steps,
                          int flags, clgqa_train_result *result) {
    clgqa_train_options options = {0};
    options.resume_dir = resume_dir;
    options.flags = CLGQA_TRAIN_QUIET | flags;
    clgqa_train_extras extras = {0};
    extras.stop_after_steps = stop_after_steps;
    return clgqa_train_with(test_runtime(), cfg, &options, &extras, result);
}

static char *read_text(const char *dir, const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *text = calloc(1, 1 << 20);
    ck_assert_ptr_nonnull(text);
    text[fread(text, 1, (1 << 20) - 1, f)] = '\0';
    fclose(f);
    return text;
}

/* Every tensor of `name` in the two folders, bit for bit. */
static void assert_same_tensors(const char *dir_a, const char *dir_b, const char *name) {
    char path_a[1200], path_b[1200];
    snprintf(path_a, sizeof path_a, "%s/%s", dir_a, name);
    snprintf(path_b, sizeof path_b, "%s/%s", dir_b, name);
    clgqa_tensor_set *a, *b;
    TEST_OK(clgqa_tensor_file_open(path_a, &a));
    TEST_OK(clgqa_tensor_file_open(path_b, &b));
    ck_assert_uint_eq(clgqa_tensor_set_count(a), clgqa_tensor_set_count(b));
    for (size_t i = 0; i < clgqa_tensor_set_count(a); i++) {
        const clgqa_tensor *ta = clgqa_tensor_set_at(a, i);
        const clgqa_tensor *tb = clgqa_tensor_set_find(b, ta->name);
        ck_assert_msg(tb && tb->nbytes == ta->nbytes && !memcmp(ta->data, tb->data, ta->nbytes),
                      "%s: %s differs between the uninterrupted and the resumed run", name,
                      ta->name);
    }
    clgqa_tensor_set_close(a);
    clgqa_tensor_set_close(b);
}

/* The device the suite runs on has no half floats: say so, and skip. */
static int skipped_without_fp16(const char *test) {
    if (clgqa_runtime_has_fp16(test_runtime()))
        return 0;
    printf("%s: skipped: '%s' has no cl_khr_fp16 (run with CLGQA_DEVICE=\"Intel(R) OpenCL\")\n",
           test, clgqa_runtime_device_name(test_runtime()));
    return 1;
}

/* ---- the refusal ---------------------------------------------------------- */

/* Through the command on PoCL, whose CPU device lacks cl_khr_fp16 (PoCL
 * 3.1): one line naming the device and the extension, exit status 1, and
 * no run folder. And through the library on the suite's device, when it
 * lacks the extension too. */
START_TEST(sixteen_mixed_is_refused_in_one_line_without_half_floats) {
    make_dataset();
    char out_dir[300], args[1200], err[4096];
    snprintf(out_dir, sizeof out_dir, "%s/refused", data_dir);
    snprintf(args, sizeof args, "train --set precision=16-mixed --set 'out_dir=%s' --set "
             "dataset=mnist --set 'data_dir=%s'",
             out_dir, data_dir);
    clgqa_runtime_options options = {0};
    options.device = "Portable Computing Language";
    clgqa_runtime *pocl = NULL;
    if (clgqa_runtime_create(&options, &pocl) == CLGQA_OK && !clgqa_runtime_has_fp16(pocl)) {
        int code = test_run_clgqa("CLGQA_DEVICE='Portable Computing Language'", args, NULL, 0,
                                  err, sizeof err);
        ck_assert_int_eq(code, 1);
        test_assert_one_line_naming(err, "cl_khr_fp16");
        ck_assert_msg(strstr(err, clgqa_runtime_device_name(pocl)) && strstr(err, "16-mixed"),
                      "the refusal names neither the device nor the precision: %s", err);
        ck_assert_msg(access(out_dir, F_OK) != 0, "a refused run made its folder");
    } else {
        printf("sixteen_mixed_is_refused: no PoCL device without cl_khr_fp16 here: the command "
               "is not tried\n");
    }
    clgqa_runtime_destroy(pocl);

    if (clgqa_runtime_has_fp16(test_runtime()))
        return;
    clgqa_config cfg;
    char run_dir[300];
    tiny_config(&cfg, "16-mixed", run_dir, sizeof run_dir);
    clgqa_train_result result;
    ck_assert_int_eq(train(&cfg, NULL, 0, 0, &result), CLGQA_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(clgqa_error_message(), clgqa_runtime_device_name(test_runtime())) &&
                      strstr(clgqa_error_message(), "cl_khr_fp16"),
                  "%s", clgqa_error_message());
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    ck_assert_msg(access(path, F_OK) != 0, "a refused run wrote its config");
    test_remove_tree(run_dir);
}
END_TEST

/* ---- 16-mixed runs (devices with cl_khr_fp16) -------------------------------- */

/* steps.csv's last column of every row. */
static void assert_scale_column(const char *dir, double want) {
    char *text = read_text(dir, "steps.csv");
    ck_assert_msg(!strncmp(text, "epoch,step,loss,accuracy,lr,img_per_s,data_wait,scale\n", 54),
                  "steps.csv header: %.80s", text);
    int rows = 0;
    for (char *line = strchr(text, '\n') + 1; *line; line = strchr(line, '\n') + 1, rows++) {
        char *end = strchr(line, '\n'), *comma = end;
        while (comma > line && comma[-1] != ',')
            comma--;
        ck_assert_msg(strtod(comma, NULL) == want, "steps.csv row %d: scale %.*s, want %g",
                      rows + 1, (int)(end - comma), comma, want);
    }
    ck_assert_int_eq(rows, 10); /* log_steps 1: every step */
    free(text);
}

/* Stopped after `stop` steps as a signal stops it (a mid-epoch checkpoint)
 * and resumed: the weights, moments, checkpoints and logs are the
 * uninterrupted run's bit for bit, the loss scaler's state included. */
START_TEST(sixteen_mixed_resumes_bit_for_bit_and_logs_its_scale) {
    if (skipped_without_fp16("sixteen_mixed_resumes_bit_for_bit"))
        return;
    clgqa_config straight, split;
    char straight_dir[300], split_dir[300];
    tiny_config(&straight, "16-mixed", straight_dir, sizeof straight_dir);
    tiny_config(&split, "16-mixed", split_dir, sizeof split_dir);
    clgqa_train_result result;
    TEST_OK(train(&straight, NULL, 0, 0, &result));
    TEST_OK(train(&split, NULL, 3, 0, &result));
    ck_assert_int_eq(result.stopped, 1);
    ck_assert_int_eq(result.global_step, 3);
    TEST_OK(train(&split, split_dir, 0, 0, &result));
    ck_assert_int_eq(result.epochs_done, 2);
    static const char *const files[] = {"model.safetensors", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 3; i++)
        assert_same_tensors(straight_dir, split_dir, files[i]);
    static const char *const logs[] = {"run.csv", "groups.csv"};
    for (int i = 0; i < 2; i++) {
        char *a = read_text(straight_dir, logs[i]), *b = read_text(split_dir, logs[i]);
        ck_assert_msg(!strcmp(a, b), "%s differs:\n%s\n----\n%s", logs[i], a, b);
        free(a), free(b);
    }
    /* No overflow in 10 steps of fp32 storage: the scale stays 2^16. */
    assert_scale_column(straight_dir, 65536);
    assert_scale_column(split_dir, 65536);
    char *yaml = read_text(straight_dir, "config.yaml");
    ck_assert_msg(strstr(yaml, "\nprecision: 16-mixed\n"), "config.yaml: %s", yaml);
    free(yaml);
    char path[1200];
    snprintf(path, sizeof path, "%s/last.safetensors", straight_dir);
    clgqa_tensor_set *last;
    TEST_OK(clgqa_tensor_file_open(path, &last));
    const char *scale = clgqa_tensor_set_metadata(last, "loss_scale");
    const char *growth = clgqa_tensor_set_metadata(last, "loss_scale_growth");
    const char *skipped = clgqa_tensor_set_metadata(last, "skipped_steps");
    ck_assert_msg(scale && strtod(scale, NULL) == 65536.0 && growth && !strcmp(growth, "10") &&
                      skipped && !strcmp(skipped, "0"),
                  "scaler metadata: %s, %s, %s", scale ? scale : "(none)",
                  growth ? growth : "(none)", skipped ? skipped : "(none)");
    clgqa_tensor_set_close(last);
    test_remove_tree(straight_dir);
    test_remove_tree(split_dir);
}
END_TEST

/* A 16-mixed checkpoint resumes as precision 32 and the other way round
 * (with --allow-changes, which records the change): the weights are fp32
 * masters in both, an fp32 run ignores the scaler's state, and a 16-mixed
 * run resumed from fp32 starts its scaler at 2^16. Both finish their epochs
 * with finite losses, and precision 32 logs a scale of 1. */
START_TEST(checkpoints_move_between_precisions) {
    if (skipped_without_fp16("checkpoints_move_between_precisions"))
        return;
    static const char *const pairs[2][2] = {{"16-mixed", "32"}, {"32", "16-mixed"}};
    for (int p = 0; p < 2; p++) {
        clgqa_config cfg;
        char dir[300];
        tiny_config(&cfg, pairs[p][0], dir, sizeof dir);
        clgqa_train_result result;
        TEST_OK(train(&cfg, NULL, 0, 0, &result));
        ck_assert_int_eq(result.epochs_done, 2);
        char buf[64];
        snprintf(buf, sizeof buf, "precision=%s", pairs[p][1]);
        set(&cfg, buf);
        set(&cfg, "epochs=3");
        TEST_OK(clgqa_config_finalize(&cfg));
        ck_assert_int_eq(train(&cfg, dir, 0, 0, &result), CLGQA_ERR_INVALID_ARG);
        ck_assert_msg(strstr(clgqa_error_message(), "precision"), "%s", clgqa_error_message());
        TEST_OK(train(&cfg, dir, 0, CLGQA_TRAIN_ALLOW_CHANGES, &result));
        ck_assert_int_eq(result.epochs_done, 3);
        ck_assert_msg(isfinite(result.last.train_loss) && isfinite(result.last.test_loss),
                      "%s -> %s: losses %g, %g", pairs[p][0], pairs[p][1],
                      result.last.train_loss, result.last.test_loss);
        char *steps = read_text(dir, "steps.csv");
        const char *last_row = steps + strlen(steps) - 1;
        while (last_row > steps && last_row[-1] != '\n')
            last_row--;
        double want = p == 0 ? 1.0 : 65536.0;
        ck_assert_msg(strtod(strrchr(last_row, ',') + 1, NULL) == want,
                      "%s -> %s: last steps.csv row %s", pairs[p][0], pairs[p][1], last_row);
        free(steps);
        char *changes = read_text(dir, "resumes.csv");
        ck_assert_msg(strstr(changes, "precision"), "resumes.csv: %s", changes);
        free(changes);
        test_remove_tree(dir);
    }
}
END_TEST

/* SIGTERM to `clgqa train` mid-epoch in 16-mixed (one epoch of 250 steps of
 * 4 images; the signal at the progress line of step 50), then the command's
 * resume: the weights, moments and the scaler's state are those of the
 * uninterrupted run, bit for bit. */
START_TEST(sixteen_mixed_resumes_exactly_after_sigterm) {
    if (skipped_without_fp16("sixteen_mixed_resumes_exactly_after_sigterm"))
        return;
    make_dataset();
    char dir[300], yaml[400], out[700], reference[300], cmd[4096], exe[1024];
    snprintf(dir, sizeof dir, "%s/long", data_dir);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    ck_assert_int_eq(gen_mnist(dir, 1000, 16, 8, 0), 0);
    snprintf(yaml, sizeof yaml, "%s/long.yaml", data_dir);
    FILE *f = fopen(yaml, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: dgqa_diff\n"
               "window_size: 2\nembed_dim: 16\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
               "img_size: 8\npatch_size: 4\nepochs: 1\nbatch_size: 4\nlr: 0.003\n"
               "schedule: cosine\nwarmup_steps: 3\nseed: 5\nprecision: 16-mixed\n", dir);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(reference, sizeof reference, "%s/reference", data_dir);
    snprintf(out, sizeof out, "out_dir=%s", reference);
    const char *sets[] = {out};
    clgqa_config cfg;
    TEST_OK(clgqa_run_config(yaml, sets, 1, &cfg));
    clgqa_train_result result;
    TEST_OK(train(&cfg, NULL, 0, 0, &result));
    ck_assert_int_eq(result.global_step, 250);

    /* The command, stopped by SIGTERM once it reports step 50. */
    char stopped[300];
    snprintf(stopped, sizeof stopped, "%s/stopped", data_dir);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(cmd, sizeof cmd, "exec '%s/clgqa' train '%s' --set 'out_dir=%s' >/dev/null 2>'%s/err'",
             exe, yaml, stopped, data_dir);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char err_path[400];
    snprintf(err_path, sizeof err_path, "%s/err", data_dir);
    int signalled = 0;
    for (int tries = 0; tries < 6000 && !signalled; tries++) { /* up to 60 s */
        usleep(10000);
        FILE *e = fopen(err_path, "r");
        char text[8192] = "";
        if (e) {
            text[fread(text, 1, sizeof text - 1, e)] = '\0';
            fclose(e);
        }
        if (strstr(text, "step 50/")) {
            ck_assert_int_eq(kill(pid, SIGTERM), 0);
            signalled = 1;
        }
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(signalled, "the run never reported step 50");
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "wait status %#x", status);
    char *err = read_text(data_dir, "err");
    ck_assert_msg(strstr(err, "in epoch 1 after step "), "not stopped mid-epoch:\n%s", err);
    free(err);

    char args[1200], resume_err[8192];
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s'", stopped, stopped);
    int code = test_run_clgqa("", args, NULL, 0, resume_err, sizeof resume_err);
    ck_assert_msg(code == 0, "resuming failed (%d): %s", code, resume_err);
    static const char *const files[] = {"model.safetensors", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 3; i++)
        assert_same_tensors(reference, stopped, files[i]);
    char path[1200];
    clgqa_tensor_set *a, *b;
    snprintf(path, sizeof path, "%s/last.safetensors", reference);
    TEST_OK(clgqa_tensor_file_open(path, &a));
    snprintf(path, sizeof path, "%s/last.safetensors", stopped);
    TEST_OK(clgqa_tensor_file_open(path, &b));
    static const char *const keys[] = {"loss_scale", "loss_scale_growth", "skipped_steps"};
    for (int i = 0; i < 3; i++) {
        const char *x = clgqa_tensor_set_metadata(a, keys[i]), *y = clgqa_tensor_set_metadata(b, keys[i]);
        ck_assert_msg(x && y && !strcmp(x, y), "%s: %s vs %s", keys[i], x ? x : "(none)",
                      y ? y : "(none)");
    }
    clgqa_tensor_set_close(a);
    clgqa_tensor_set_close(b);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("precision");
    TCase *tc = tcase_create("precision");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, sixteen_mixed_is_refused_in_one_line_without_half_floats);
    tcase_add_test(tc, sixteen_mixed_resumes_bit_for_bit_and_logs_its_scale);
    tcase_add_test(tc, checkpoints_move_between_precisions);
    tcase_add_test(tc, sixteen_mixed_resumes_exactly_after_sigterm);
    suite_add_tcase(suite, tc);
    int status = test_run_suite(suite);
    if (data_dir[0])
        test_remove_tree(data_dir);
    return status;
}
