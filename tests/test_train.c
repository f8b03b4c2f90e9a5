/* Training driver: run files, checkpoints, resume (at epoch ends and
 * mid-epoch), best.safetensors, divergence, stopping the command by signals
 * and kill -9, the reference's recipe as defaults, schedule, uptraining
 * conversion and the CLI's refusals of bad input.
 *
 * Training runs use a tiny synthetic MNIST-style dataset (8x8 IDX files
 * written into a temporary folder), a 2-layer 16-wide ViT and a few steps,
 * so each run takes a fraction of a second after the kernels are built; the
 * signal tests run the command for one epoch of 250 steps (about a second). */
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch_upload.h"
#include "clgqa/checkpoint.h"
#include "config_internal.h"
#include "clgqa/dataset.h"
#include "clgqa/model.h"
#include "safetensors.h"
#include "train_internal.h"
#include "mixup.h"
#include "model_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define IMG 8
#define TRAIN_COUNT 80 /* 5 batches of 16 */
#define TEST_COUNT 40

static char data_dir[64];

/* ---- fixtures ------------------------------------------------------------- */

/* An IDX pair (images, labels) of `count` 8x8 images in `dir` whose
 * brightness follows the label, so the tiny model has something to learn. */
static void write_idx_split(const char *dir, const char *prefix, int count, uint64_t stream) {
    float *noise = malloc((size_t)count * IMG * IMG * sizeof(float));
    uint8_t *pixels = malloc((size_t)count * IMG * IMG), *labels = malloc((size_t)count);
    ck_assert(noise && pixels && labels);
    clgqa_host_uniform(noise, (size_t)count * IMG * IMG, 7, stream);
    for (int i = 0; i < count; i++) {
        labels[i] = (uint8_t)(i * 7 % 10);
        for (int p = 0; p < IMG * IMG; p++)
            pixels[(size_t)i * IMG * IMG + p] =
                (uint8_t)(labels[i] * 20 + noise[(size_t)i * IMG * IMG + p] * 60);
    }
    ck_assert_int_eq(gen_write_idx(dir, prefix, count, IMG, pixels, labels, 0), 0);
    free(noise);
    free(pixels);
    free(labels);
}

static void make_dataset(void) {
    if (data_dir[0])
        return;
    snprintf(data_dir, sizeof data_dir, "/tmp/clgqa-test-train-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    write_idx_split(data_dir, "train", TRAIN_COUNT, 1);
    write_idx_split(data_dir, "t10k", TEST_COUNT, 2);
}

static void set(clgqa_config *cfg, const char *key_value) {
    TEST_OK(clgqa_config_set(cfg, key_value));
}

/* The tiny run: 2 epochs of 5 steps, cosine schedule with warmup, `scheme`,
 * outputs under a fresh folder (returned in out_dir). */
static void tiny_config(clgqa_config *cfg, const char *scheme, char *out_dir, size_t out_size) {
    make_dataset();
    clgqa_config_defaults(cfg);
    char buf[1200];
    set(cfg, "dataset=mnist");
    snprintf(buf, sizeof buf, "data_dir=%s", data_dir);
    set(cfg, buf);
    snprintf(buf, sizeof buf, "att_scheme=%s", scheme);
    set(cfg, buf);
    set(cfg, "in_chans=1");
    set(cfg, "size=c");
    set(cfg, "embed_dim=16");
    set(cfg, "num_layers=2");
    set(cfg, "num_heads=4");
    set(cfg, "num_kv_heads=2");
    set(cfg, "window_size=2");
    set(cfg, "img_size=8");
    set(cfg, "patch_size=4");
    set(cfg, "epochs=2");
    set(cfg, "batch_size=16");
    set(cfg, "lr=0.003");
    set(cfg, "schedule=cosine");
    set(cfg, "warmup_steps=3");
    set(cfg, "seed=5");
    snprintf(out_dir, out_size, "%s/run-XXXXXX", data_dir);
    ck_assert_ptr_nonnull(mkdtemp(out_dir));
    snprintf(buf, sizeof buf, "out_dir=%s", out_dir);
    set(cfg, buf);
    TEST_OK(clgqa_config_finalize(cfg));
}

static void train_steps(const clgqa_config *cfg, const char *resume_dir, int stop_after_epochs,
                        long stop_after_steps, clgqa_train_result *result) {
    clgqa_train_options options = {0};
    options.resume_dir = resume_dir;
    clgqa_train_extras extras = {0};
    extras.stop_after_epochs = stop_after_epochs;
    extras.stop_after_steps = stop_after_steps;
    options.flags = CLGQA_TRAIN_QUIET;
    TEST_OK(clgqa_train_with(test_runtime(), cfg, &options, &extras, result));
}

static void train_quietly(const clgqa_config *cfg, const char *resume_dir, int stop_after,
                          clgqa_train_result *result) {
    train_steps(cfg, resume_dir, stop_after, 0, result);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    char *text = calloc(1, 1 << 20);
    ck_assert_ptr_nonnull(text);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* ---- run files ----------------------------------------------------------- */

START_TEST(run_writes_csv_logs_config_and_model) {
    clgqa_config cfg;
    char out_dir[256], path[512];
    tiny_config(&cfg, "kdgqa", out_dir, sizeof out_dir);
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 0, &result);
    ck_assert_int_eq(result.epochs_done, 2);
    ck_assert_int_eq(result.global_step, 2 * (TRAIN_COUNT / 16));

    snprintf(path, sizeof path, "%s/run.csv", out_dir);
    char *text = read_text(path);
    char *line = strtok(text, "\n");
    /* 10 classes: the top-5 accuracies follow the reference's columns. */
    ck_assert_str_eq(line, "epoch,train_loss,train_acc,test_loss,test_acc,train_acc5,test_acc5");
    for (int epoch = 1; epoch <= 2; epoch++) {
        line = strtok(NULL, "\n");
        ck_assert_msg(line != NULL, "run.csv lacks the row of epoch %d", epoch);
        int e;
        double v[6];
        ck_assert_int_eq(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf", &e, &v[0], &v[1], &v[2],
                                &v[3], &v[4], &v[5]),
                         7);
        ck_assert_int_eq(e, epoch);
        for (int i = 0; i < 6; i++)
            ck_assert_msg(isfinite(v[i]) && v[i] >= 0, "run.csv row %d: %s", epoch, line);
        /* accuracies are fractions, top-5 at least top-1 */
        ck_assert(v[1] <= v[4] && v[4] <= 1.0 && v[3] <= v[5] && v[5] <= 1.0);
    }
    ck_assert_ptr_null(strtok(NULL, "\n"));
    ck_assert(result.last.test_acc >= 0 && result.last.test_acc <= 1);
    free(text);

    /* groups.csv: the header, then rows whose counts sum to H = 4. */
    snprintf(path, sizeof path, "%s/groups.csv", out_dir);
    text = read_text(path);
    line = strtok(text, "\n");
    ck_assert_str_eq(line, "epoch,step,layer,counts");
    int rows = 0, eval_rows = 0;
    while ((line = strtok(NULL, "\n"))) {
        int epoch, layer, a, b;
        char step[16];
        ck_assert_msg(sscanf(line, "%d,%15[^,],%d,%d %d", &epoch, step, &layer, &a, &b) == 5,
                      "groups.csv row '%s'", line);
        ck_assert_int_eq(a + b, 4);
        ck_assert(layer >= 0 && layer < 2 && epoch >= 1 && epoch <= 2);
        eval_rows += !strcmp(step, "eval");
        rows++;
    }
    /* Step 0 of each epoch and each evaluation, for both layers. */
    ck_assert_int_eq(eval_rows, 4);
    ck_assert_int_eq(rows, 8);
    free(text);

    /* config.yaml loads back to the run's configuration. */
    clgqa_config again;
    clgqa_config_defaults(&again);
    snprintf(path, sizeof path, "%s/config.yaml", out_dir);
    TEST_OK(clgqa_config_load(&again, path));
    TEST_OK(clgqa_config_finalize(&again));
    ck_assert_int_eq(again.embed_dim, 16);
    ck_assert_int_eq(again.att_scheme, CLGQA_KDGQA);
    ck_assert_str_eq(again.data_dir, cfg.data_dir);

    /* The model checkpoint carries the reference's metadata. */
    clgqa_tensor_set *file;
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "att_scheme"), "kdgqa");
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "depth"), "2");
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "heads"), "4");
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "kv_heads"), "2");
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "num_classes"), "10");
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "img_size"), "8");
    ck_assert_ptr_nonnull(clgqa_tensor_set_find(file, "blocks.1.attn.k.weight"));
    ck_assert_ptr_null(clgqa_tensor_set_find(file, "optim.m.head.weight"));
    clgqa_tensor_set_close(file);
    test_remove_tree(out_dir);
}
END_TEST

/* ---- checkpoints ----------------------------------------------------------- */

/* Fresh random inputs for a batch of the tiny model, on the device. */
static cl_mem random_images(int batch) {
    float *x = test_random_array((size_t)batch * IMG * IMG, -1.0f, 1.0f);
    cl_mem mem = test_upload(x, (size_t)batch * IMG * IMG);
    free(x);
    return mem;
}

START_TEST(checkpoint_round_trip_gives_identical_logits) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg, other;
    char out_dir[256], other_dir[256], path[512];
    tiny_config(&cfg, "dgqa_diff", out_dir, sizeof out_dir);
    tiny_config(&other, "dgqa_diff", other_dir, sizeof other_dir);
    set(&other, "seed=99"); /* a different initialisation */
    const int batch = 7;
    clgqa_model *saved, *loaded;
    TEST_OK(test_model_create(rt, &cfg, batch, &saved));
    TEST_OK(test_model_create(rt, &other, batch, &loaded));
    /* A non-trivial DGQA state that must travel with the weights. */
    float cache[2] = {1.25f, 0.5f};
    int32_t split[2] = {3, 1};
    TEST_OK(clgqa_model_write_grouping(saved, 1, cache, split));

    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    TEST_OK(clgqa_checkpoint_save_model(saved, path));
    TEST_OK(clgqa_checkpoint_load_model(loaded, path, NULL));

    size_t n = clgqa_model_param_count(saved);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    TEST_OK(clgqa_model_read_buffer(saved, CLGQA_PARAMS, a));
    TEST_OK(clgqa_model_read_buffer(loaded, CLGQA_PARAMS, b));
    ck_assert_msg(memcmp(a, b, n * sizeof(float)) == 0, "weights differ after the round trip");
    float got_cache[2];
    int32_t got_split[2];
    TEST_OK(clgqa_model_read_grouping(loaded, 1, got_cache, got_split));
    ck_assert(got_cache[0] == 1.25f && got_cache[1] == 0.5f);
    ck_assert(got_split[0] == 3 && got_split[1] == 1);

    cl_mem images = random_images(batch);
    clgqa_view no_labels = {NULL, 0};
    float logits_a[7 * 10], logits_b[7 * 10];
    TEST_OK(clgqa_model_forward(saved, clgqa_view_at(images, 0), no_labels, batch,
                                &(clgqa_pass){0}));
    TEST_OK(clgqa_model_read_logits(saved, logits_a));
    TEST_OK(clgqa_model_forward(loaded, clgqa_view_at(images, 0), no_labels, batch,
                                &(clgqa_pass){0}));
    TEST_OK(clgqa_model_read_logits(loaded, logits_b));
    ck_assert_msg(memcmp(logits_a, logits_b, sizeof logits_a) == 0, "logits differ after loading");

    clgqa_buffer_release(&images);
    free(a);
    free(b);
    clgqa_model_destroy(saved);
    clgqa_model_destroy(loaded);
    test_remove_tree(out_dir);
    test_remove_tree(other_dir);
}
END_TEST

START_TEST(bad_checkpoints_are_refused_clearly) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg, wider;
    char out_dir[256], wider_dir[256], path[512];
    tiny_config(&cfg, "gqa", out_dir, sizeof out_dir);
    tiny_config(&wider, "gqa", wider_dir, sizeof wider_dir);
    set(&wider, "embed_dim=20");
    TEST_OK(clgqa_config_finalize(&wider));
    clgqa_model *model, *wide;
    TEST_OK(test_model_create(rt, &cfg, 4, &model));
    TEST_OK(test_model_create(rt, &wider, 4, &wide));

    /* Missing file. */
    snprintf(path, sizeof path, "%s/absent.safetensors", out_dir);
    ck_assert_int_ne(clgqa_checkpoint_load_model(model, path, NULL), CLGQA_OK);
    ck_assert_msg(strstr(clgqa_error_message(), "absent.safetensors"), "%s", clgqa_error_message());
    /* Not a safetensors file. */
    snprintf(path, sizeof path, "%s/garbage.safetensors", out_dir);
    FILE *f = fopen(path, "wb");
    fputs("this is not a checkpoint", f);
    fclose(f);
    ck_assert_int_ne(clgqa_checkpoint_load_model(model, path, NULL), CLGQA_OK);
    /* Another model's shapes: the tensor and both shapes are named. */
    snprintf(path, sizeof path, "%s/wide.safetensors", out_dir);
    TEST_OK(clgqa_checkpoint_save_model(wide, path));
    ck_assert_int_eq(clgqa_checkpoint_load_model(model, path, NULL), CLGQA_ERR_FORMAT);
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, "cls_token") && strstr(msg, "[1, 1, 20]") && strstr(msg, "[1, 1, 16]"),
                  "%s", msg);
    ck_assert_int_eq(clgqa_checkpoint_load_pretrained(model, path, CLGQA_RESAMPLE_ANTIALIAS, NULL), CLGQA_ERR_FORMAT);
    /* A model checkpoint cannot resume training. */
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    TEST_OK(clgqa_checkpoint_save_model(model, path));
    clgqa_train_state state;
    ck_assert_int_ne(clgqa_checkpoint_load_training(model, path, &state), CLGQA_OK);
    ck_assert_msg(strstr(clgqa_error_message(), "optimizer"), "%s", clgqa_error_message());
    clgqa_model_destroy(model);
    clgqa_model_destroy(wide);
    test_remove_tree(out_dir);
    test_remove_tree(wider_dir);
}
END_TEST

/* ---- resume ------------------------------------------------------------------ */

static void assert_same_tensors(const char *path_a, const char *path_b) {
    clgqa_tensor_set *a, *b;
    TEST_OK(clgqa_tensor_file_open(path_a, &a));
    TEST_OK(clgqa_tensor_file_open(path_b, &b));
    ck_assert_uint_eq(clgqa_tensor_set_count(a), clgqa_tensor_set_count(b));
    for (size_t i = 0; i < clgqa_tensor_set_count(a); i++) {
        const clgqa_tensor *ta = clgqa_tensor_set_at(a, i);
        const clgqa_tensor *tb = clgqa_tensor_set_find(b, ta->name);
        ck_assert_msg(tb != NULL, "%s lacks %s", path_b, ta->name);
        ck_assert_uint_eq(ta->nbytes, tb->nbytes);
        ck_assert_msg(memcmp(ta->data, tb->data, ta->nbytes) == 0,
                      "%s differs between the uninterrupted and the resumed run", ta->name);
    }
    clgqa_tensor_set_close(a);
    clgqa_tensor_set_close(b);
}

/* Train 2 epochs straight, and 1 epoch + resume for 1: same bits. DGQA
 * (state, windows, random fix-ups) and PGQA (noise per step) are the schemes
 * with the most state to carry. */
static void check_resume(const char *scheme) {
    clgqa_config straight, split;
    char straight_dir[256], split_dir[256], a[512], b[512];
    tiny_config(&straight, scheme, straight_dir, sizeof straight_dir);
    tiny_config(&split, scheme, split_dir, sizeof split_dir);
    clgqa_train_result result;
    train_quietly(&straight, NULL, 0, &result);
    train_quietly(&split, NULL, 1, &result);
    ck_assert_int_eq(result.epochs_done, 1);
    snprintf(a, sizeof a, "%s/model.safetensors", split_dir);
    ck_assert_msg(access(a, F_OK) != 0, "a stopped run wrote its final model");
    train_quietly(&split, split_dir, 0, &result);
    ck_assert_int_eq(result.epochs_done, 2);

    snprintf(a, sizeof a, "%s/model.safetensors", straight_dir);
    snprintf(b, sizeof b, "%s/model.safetensors", split_dir);
    assert_same_tensors(a, b);
    snprintf(a, sizeof a, "%s/last.safetensors", straight_dir);
    snprintf(b, sizeof b, "%s/last.safetensors", split_dir);
    assert_same_tensors(a, b);
    /* The logs agree too (the resumed run keeps epoch 1's row). */
    snprintf(a, sizeof a, "%s/run.csv", straight_dir);
    snprintf(b, sizeof b, "%s/run.csv", split_dir);
    char *text_a = read_text(a), *text_b = read_text(b);
    ck_assert_str_eq(text_a, text_b);
    free(text_a);
    free(text_b);
    test_remove_tree(straight_dir);
    test_remove_tree(split_dir);
}

START_TEST(resume_matches_uninterrupted_run_dgqa) { check_resume("dgqa_diff"); }
END_TEST

START_TEST(resume_matches_uninterrupted_run_pgqa) { check_resume("pgqa"); }
END_TEST

START_TEST(resume_refuses_another_seed) {
    clgqa_config cfg;
    char out_dir[256];
    tiny_config(&cfg, "gqa", out_dir, sizeof out_dir);
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 1, &result);
    set(&cfg, "seed=6");
    clgqa_train_options options = {0};
    options.resume_dir = out_dir;
    options.flags = CLGQA_TRAIN_QUIET;
    ck_assert_int_eq(clgqa_train(test_runtime(), &cfg, &options, &result), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "seed"), "%s", clgqa_error_message());
    test_remove_tree(out_dir);
}
END_TEST

/* Stopped after `stop_steps` steps (as a signal would stop it), then
 * resumed mid-epoch: the weights, the checkpoint and the logs are those of
 * the uninterrupted run. The stopped run also checkpoints every 2 steps,
 * which must change nothing. */
static void check_resume_mid_epoch(const char *scheme, long stop_steps) {
    clgqa_config straight, split;
    char straight_dir[256], split_dir[256], a[512], b[512];
    tiny_config(&straight, scheme, straight_dir, sizeof straight_dir);
    tiny_config(&split, scheme, split_dir, sizeof split_dir);
    set(&split, "checkpoint_steps=2");
    clgqa_train_result result;
    train_quietly(&straight, NULL, 0, &result);
    train_steps(&split, NULL, 0, stop_steps, &result);
    const long per_epoch = TRAIN_COUNT / 16;
    ck_assert_int_eq(result.stopped, 1);
    ck_assert_int_eq(result.global_step, stop_steps);
    ck_assert_int_eq(result.epochs_done, (stop_steps - 1) / per_epoch);
    ck_assert_int_eq(result.epoch_steps, stop_steps - result.epochs_done * per_epoch);
    train_quietly(&split, split_dir, 0, &result);
    ck_assert_int_eq(result.stopped, 0);
    ck_assert_int_eq(result.epochs_done, 2);
    static const char *const files[] = {"model.safetensors", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/%s", straight_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", split_dir, files[i]);
        assert_same_tensors(a, b);
    }
    static const char *const logs[] = {"run.csv", "groups.csv"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", straight_dir, logs[i]);
        snprintf(b, sizeof b, "%s/%s", split_dir, logs[i]);
        char *text_a = read_text(a), *text_b = read_text(b);
        ck_assert_msg(!strcmp(text_a, text_b), "%s differs:\n%s\n----\n%s", logs[i], text_a, text_b);
        free(text_a);
        free(text_b);
    }
    test_remove_tree(straight_dir);
    test_remove_tree(split_dir);
}

/* Mid-epoch 1, at the last step of epoch 1 (before its evaluation) and
 * mid-epoch 2 (5 steps an epoch). */
START_TEST(resume_mid_epoch_matches_uninterrupted_run) {
    check_resume_mid_epoch("dgqa_diff", 3);
    check_resume_mid_epoch("dgqa_diff", 5);
    check_resume_mid_epoch("dgqa_ema", 7);
    check_resume_mid_epoch("pgqa", 2);
    check_resume_mid_epoch("kdgqa", 9);
}
END_TEST

/* ---- the logs against blocking reads ------------------------------------------ */

#define EPOCHS 2
#define STEPS_PER_EPOCH (TRAIN_COUNT / 16)
#define TOTAL_STEPS (EPOCHS * STEPS_PER_EPOCH)

/* What the trainer's non-blocking readback replaced: the running metrics
 * and the group counts read blocking after every step, by a training loop
 * of the test's own with the trainer's batches, passes and learning rates.
 * KDGQA keeps no state from one batch to the next, so the evaluations a run
 * makes between epochs change nothing here. */
typedef struct blocking_reads {
    clgqa_metrics after[TOTAL_STEPS];  /* after global step s + 1 */
    int32_t groups[TOTAL_STEPS][2 * 2]; /* [layer][G] */
} blocking_reads;

static void train_reading_blocking(const clgqa_config *cfg, blocking_reads *out) {
    clgqa_runtime *rt = test_runtime();
    clgqa_dataset *ds;
    clgqa_loader *loader;
    clgqa_model *model;
    clgqa_batch_upload *up;
    TEST_OK(test_dataset_open(cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    TEST_OK(clgqa_loader_create(ds, cfg->batch_size, cfg->shuffle, 0, &loader));
    TEST_OK(clgqa_loader_use_pixels(loader));
    TEST_OK(test_model_create(rt, cfg, cfg->batch_size, &model));
    TEST_OK(clgqa_batch_upload_create(rt, clgqa_model_get_dims(model), cfg->batch_size, &up));
    clgqa_adamw hp = {cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay,
                      cfg->clip_grad_norm, cfg->no_weight_decay};
    for (long epoch = 0, global = 0; epoch < EPOCHS; epoch++) {
        TEST_OK(clgqa_loader_start(loader, epoch));
        TEST_OK(clgqa_model_reset_metrics(model));
        for (long step = 0; step < STEPS_PER_EPOCH; step++, global++) {
            clgqa_batch batch;
            clgqa_view pixels, labels;
            TEST_OK(clgqa_loader_next(loader, &batch));
            ck_assert_int_eq(batch.count, 16);
            TEST_OK(clgqa_batch_upload_next(up, &batch, &pixels, &labels));
            const clgqa_pass pass = {.mode = CLGQA_PASS_TRAIN, .step_in_epoch = step,
                                     .global_step = global};
            TEST_OK(clgqa_model_forward_pixels(model, pixels, labels, batch.count, cfg->norm_mean,
                                               cfg->norm_std, &pass));
            TEST_OK(clgqa_model_backward(model));
            hp.lr = clgqa_schedule_lr(cfg, global, TOTAL_STEPS);
            TEST_OK(clgqa_model_step(model, &hp, global + 1));
            TEST_OK(clgqa_model_read_metrics(model, &out->after[global]));
            TEST_OK(clgqa_model_read_all_group_counts(model, out->groups[global]));
        }
    }
    clgqa_batch_upload_destroy(up);
    clgqa_model_destroy(model);
    clgqa_loader_destroy(loader);
    clgqa_dataset_close(ds);
}

/* steps.csv's first five columns (epoch,step,loss,accuracy,lr; the rest are
 * timings), one row a line, as the blocking reads give them: rows every
 * log_steps steps and at each epoch end, each over the steps since the
 * previous row of its epoch, or since `resumed_after` (the global step a
 * resumed run went on from; 0: none). */
static void expected_step_rows(const clgqa_config *cfg, const blocking_reads *ref,
                               long resumed_after, char *out, size_t size) {
    size_t used = 0;
    for (long global = 1; global <= TOTAL_STEPS; global++) {
        long done = (global - 1) % STEPS_PER_EPOCH + 1; /* in the epoch */
        if (done % cfg->log_steps != 0 && done != STEPS_PER_EPOCH)
            continue;
        long since = global - done; /* the epoch's start */
        for (long s = global - 1; s > global - done; s--)
            if (s == resumed_after || s % STEPS_PER_EPOCH % cfg->log_steps == 0) {
                since = s;
                break;
            }
        const clgqa_metrics *now = &ref->after[global - 1];
        clgqa_metrics zero = {0};
        const clgqa_metrics *then = since > global - done ? &ref->after[since - 1] : &zero;
        long samples = now->samples - then->samples;
        used += (size_t)snprintf(out + used, size - used, "%ld,%ld,%.6f,%.6f,%.6g\n",
                                 (global - 1) / STEPS_PER_EPOCH + 1, global,
                                 (now->sum_loss - then->sum_loss) / (double)samples,
                                 (now->sum_correct - then->sum_correct) / (double)samples,
                                 (double)clgqa_schedule_lr(cfg, global - 1, TOTAL_STEPS));
        ck_assert_uint_lt(used, size);
    }
}

/* A file's rows, past its header, cut to their first `fields` fields. */
static void first_fields(const char *path, int fields, char *out, size_t size) {
    char *text = read_text(path), *line = strchr(text, '\n');
    size_t used = 0;
    ck_assert_ptr_nonnull(line);
    for (line++; *line; line = strchr(line, '\n') + 1) {
        size_t n = 0;
        for (int f = 0; line[n] != '\n' && (line[n] != ',' || ++f < fields); n++)
            ;
        ck_assert_uint_lt(used + n + 1, size);
        memcpy(out + used, line, n);
        used += n;
        out[used++] = '\n';
    }
    out[used] = '\0';
    free(text);
}

/* The progress lines and epoch summaries a run printed (`log`): their
 * loss and accuracy are those of the blocking reads. */
static void assert_progress_matches(const char *log, const blocking_reads *ref) {
    for (int e = 0; e < EPOCHS; e++) {
        const clgqa_metrics *m = &ref->after[(e + 1) * STEPS_PER_EPOCH - 1];
        double loss = m->sum_loss / (double)m->samples, acc = m->sum_correct / (double)m->samples;
        char want[256];
        snprintf(want, sizeof want, "epoch %d/%d step %d/%d loss %.4f acc %.1f%% ", e + 1, EPOCHS,
                 STEPS_PER_EPOCH, STEPS_PER_EPOCH, loss, 100.0 * acc);
        ck_assert_msg(strstr(log, want), "the progress lacks '%s':\n%s", want, log);
        snprintf(want, sizeof want, "epoch %d/%d: train loss %.4f acc %.2f%% | ", e + 1, EPOCHS,
                 loss, 100.0 * acc);
        ck_assert_msg(strstr(log, want), "the progress lacks '%s':\n%s", want, log);
    }
}

/* clgqa_train with its progress in `log` (a string the caller frees). */
static void train_logged(const clgqa_config *cfg, const char *resume_dir, long stop_after_steps,
                         char **log) {
    size_t size;
    FILE *f = open_memstream(log, &size);
    ck_assert_ptr_nonnull(f);
    clgqa_train_options options = {0};
    options.resume_dir = resume_dir;
    options.log = f;
    clgqa_train_extras extras = {0};
    extras.stop_after_steps = stop_after_steps;
    clgqa_train_result result;
    TEST_OK(clgqa_train_with(test_runtime(), cfg, &options, &extras, &result));
    ck_assert_int_eq(fclose(f), 0);
}

/* steps.csv, groups.csv, the progress lines and run.csv's training columns
 * of a run, and of a run stopped after step 3 and resumed, are what the
 * blocking reads after every step give, to the last printed digit. */
START_TEST(logs_equal_the_rows_of_blocking_reads) {
    clgqa_config straight, split;
    char straight_dir[256], split_dir[256], path[512];
    tiny_config(&straight, "kdgqa", straight_dir, sizeof straight_dir);
    tiny_config(&split, "kdgqa", split_dir, sizeof split_dir);
    set(&straight, "log_steps=2");
    set(&split, "log_steps=2");
    blocking_reads *ref = calloc(1, sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    train_reading_blocking(&straight, ref);

    char *log, *log_stopped, *log_resumed;
    train_logged(&straight, NULL, 0, &log);
    train_logged(&split, NULL, 3, &log_stopped);
    train_logged(&split, split_dir, 0, &log_resumed);
    enum { SIZE = 8192 };
    char *want = malloc(SIZE), *got = malloc(SIZE);
    ck_assert(want && got);
    const char *dirs[] = {straight_dir, split_dir};
    for (int run = 0; run < 2; run++) {
        expected_step_rows(&straight, ref, run ? 3 : 0, want, SIZE);
        snprintf(path, sizeof path, "%s/steps.csv", dirs[run]);
        first_fields(path, 5, got, SIZE);
        ck_assert_msg(!strcmp(want, got), "%s: steps.csv\n%s\nthe blocking reads give\n%s",
                      dirs[run], got, want);
    }
    assert_progress_matches(log, ref);
    size_t both = strlen(log_stopped) + strlen(log_resumed) + 1;
    char *split_log = malloc(both);
    ck_assert_ptr_nonnull(split_log);
    snprintf(split_log, both, "%s%s", log_stopped, log_resumed);
    assert_progress_matches(split_log, ref);

    /* groups.csv: every layer's counts after steps 0, 2 and 4 of each epoch
     * (every log_steps), then after the evaluation (not checked here). */
    size_t used = 0;
    for (long global = 0; global < TOTAL_STEPS; global++)
        if (global % STEPS_PER_EPOCH % 2 == 0)
            for (int layer = 0; layer < 2; layer++)
                used += (size_t)snprintf(want + used, SIZE - used, "%ld,%ld,%d,%d %d\n",
                                         global / STEPS_PER_EPOCH + 1, global % STEPS_PER_EPOCH,
                                         layer, ref->groups[global][2 * layer],
                                         ref->groups[global][2 * layer + 1]);
    for (int run = 0; run < 2; run++) {
        snprintf(path, sizeof path, "%s/groups.csv", dirs[run]);
        char *text = read_text(path), *kept = got;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
            if (strcmp(line, "epoch,step,layer,counts") && !strstr(line, ",eval,"))
                kept += sprintf(kept, "%s\n", line);
        ck_assert_msg(!strcmp(want, got), "%s: groups.csv\n%s\nthe blocking reads give\n%s",
                      dirs[run], got, want);
        free(text);
    }

    /* run.csv's train_loss and train_acc. */
    used = 0;
    for (int e = 0; e < EPOCHS; e++) {
        const clgqa_metrics *m = &ref->after[(e + 1) * STEPS_PER_EPOCH - 1];
        used += (size_t)snprintf(want + used, SIZE - used, "%d,%.6f,%.6f\n", e + 1,
                                 m->sum_loss / (double)m->samples,
                                 m->sum_correct / (double)m->samples);
    }
    for (int run = 0; run < 2; run++) {
        snprintf(path, sizeof path, "%s/run.csv", dirs[run]);
        first_fields(path, 3, got, SIZE);
        ck_assert_msg(!strcmp(want, got), "%s: run.csv\n%s\nthe blocking reads give\n%s",
                      dirs[run], got, want);
    }
    free(want);
    free(got);
    free(split_log);
    free(log);
    free(log_stopped);
    free(log_resumed);
    free(ref);
    test_remove_tree(straight_dir);
    test_remove_tree(split_dir);
}
END_TEST

/* `clgqa train CONFIG` for `steps` steps under libclgqa_counter.so (built
 * beside this test), which prints its totals at exit: the host waits that
 * let a queue run dry and the waits with later work queued behind them. */
static void counted_train(const char *config, int steps, long *host_waits, long *queued_waits) {
    char dir[1024], env[1200], args[1200], err[16384];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    ck_assert(n > 0);
    dir[n] = '\0';
    *strrchr(dir, '/') = '\0';
    snprintf(env, sizeof env, "CLGQA_COUNTER_REPORT=1 LD_PRELOAD='%s/libclgqa_counter.so'", dir);
    snprintf(args, sizeof args, "train '%s' --set max_steps_per_epoch=%d --overwrite", config,
             steps);
    ck_assert_msg(test_run_clgqa(env, args, NULL, 0, err, sizeof err) == 0, "%s", err);
    const char *line = strstr(err, "clgqa_counter:");
    ck_assert_msg(line, "the counter printed nothing: %s", err);
    const char *waits = strstr(line, "host_waits ");
    ck_assert_msg(waits && sscanf(waits, "host_waits %ld queued_waits %ld", host_waits,
                                  queued_waits) == 2, "%s", line);
}

/* A training step costs no wait that lets the device run dry, even with a
 * steps.csv row, a groups.csv row and the divergence check at every step:
 * 3 more steps add no host wait, and one wait each on the step before
 * (the readback, with this step queued behind it; the batch upload may add
 * one when the host is two batches ahead). */
START_TEST(training_steps_never_let_the_queue_run_dry) {
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer's runtime must come first: nothing can be preloaded. */
    return;
#endif
    char path[512];
    make_dataset();
    snprintf(path, sizeof path, "%s/counted.yaml", data_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: kdgqa\n"
               "embed_dim: 16\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\nimg_size: 8\n"
               "patch_size: 4\nepochs: 1\nbatch_size: 16\nlog_steps: 1\nmax_eval_batches: 1\n"
               "save_model: false\nout_dir: %s/counted\n", data_dir, data_dir);
    ck_assert_int_eq(fclose(f), 0);
    long host[2], queued[2];
    counted_train(path, 2, &host[0], &queued[0]);
    counted_train(path, 5, &host[1], &queued[1]);
    ck_assert_msg(host[1] == host[0], "3 more training steps added %ld host waits (%ld -> %ld)",
                  host[1] - host[0], host[0], host[1]);
    ck_assert_msg(queued[1] - queued[0] >= 3 && queued[1] - queued[0] <= 6,
                  "3 more training steps added %ld waits behind queued work", queued[1] - queued[0]);
}
END_TEST

/* clgqa_evaluate's predictions file (each batch's logits copied without
 * waiting, written after the next batch is queued) holds, row for row and
 * digit for digit, what a forward and a blocking read of the logits after
 * every batch give; its loss and accuracy are those of the running metrics
 * after the last batch. 40 test images in batches of 16: 16, 16 and 8. */
START_TEST(predictions_equal_blocking_reads_of_the_logits) {
    clgqa_config cfg;
    char out_dir[256];
    tiny_config(&cfg, "kdgqa", out_dir, sizeof out_dir);
    clgqa_runtime *rt = test_runtime();
    clgqa_model *model;
    clgqa_dataset *ds;
    TEST_OK(test_model_create(rt, &cfg, 16, &model));
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TEST, 0, &ds));
    char *got;
    size_t got_size;
    FILE *f = open_memstream(&got, &got_size);
    ck_assert_ptr_nonnull(f);
    clgqa_eval_result result;
    TEST_OK(clgqa_evaluate(rt, model, ds, &cfg, 0, f, &result));
    ck_assert_int_eq(fclose(f), 0);

    char *want;
    size_t want_size;
    f = open_memstream(&want, &want_size);
    ck_assert_ptr_nonnull(f);
    fprintf(f, "index,label,pred");
    for (int c = 0; c < 10; c++)
        fprintf(f, ",logit_%d", c);
    fputc('\n', f);
    clgqa_loader *loader;
    clgqa_batch_upload *up;
    TEST_OK(clgqa_loader_create(ds, 16, 0, 0, &loader));
    TEST_OK(clgqa_loader_use_pixels(loader));
    TEST_OK(clgqa_batch_upload_create(rt, clgqa_model_get_dims(model), 16, &up));
    TEST_OK(clgqa_loader_start(loader, 0));
    TEST_OK(clgqa_model_reset_metrics(model));
    float logits[16 * 10];
    long index = 0;
    for (long b = 0;; b++) {
        clgqa_batch batch;
        clgqa_view pixels, labels;
        TEST_OK(clgqa_loader_next(loader, &batch));
        if (batch.count == 0)
            break;
        TEST_OK(clgqa_batch_upload_next(up, &batch, &pixels, &labels));
        /* The evaluation's random streams (train.c), unused by KDGQA. */
        const clgqa_pass pass = {.mode = CLGQA_PASS_EVAL, .step_in_epoch = b,
                                 .global_step = (long)((1ull << 39) + (uint64_t)b)};
        TEST_OK(clgqa_model_forward_pixels(model, pixels, labels, batch.count, cfg.norm_mean,
                                               cfg.norm_std, &pass));
        TEST_OK(clgqa_model_read_logits(model, logits));
        for (int i = 0; i < batch.count; i++, index++) {
            const float *row = logits + i * 10;
            int pred = 0;
            for (int c = 1; c < 10; c++)
                if (row[c] > row[pred])
                    pred = c;
            fprintf(f, "%ld,%d,%d", index, batch.labels[i], pred);
            for (int c = 0; c < 10; c++)
                fprintf(f, ",%.9g", row[c]);
            fputc('\n', f);
        }
    }
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(index, TEST_COUNT);
    size_t same = 0, line = 0;
    for (; got[same] && got[same] == want[same]; same++)
        if (got[same] == '\n')
            line = same + 1;
    ck_assert_msg(!got[same] && !want[same], "the predictions file says\n%.300s\nthe blocking reads "
                  "give\n%.300s", got + line, want + line);
    clgqa_metrics m;
    TEST_OK(clgqa_model_read_metrics(model, &m));
    ck_assert_int_eq(result.samples, TEST_COUNT);
    ck_assert_int_eq(m.samples, TEST_COUNT);
    ck_assert(result.loss == m.sum_loss / TEST_COUNT && result.accuracy == m.sum_correct / TEST_COUNT);
    free(got);
    free(want);
    clgqa_batch_upload_destroy(up);
    clgqa_loader_destroy(loader);
    clgqa_dataset_close(ds);
    clgqa_model_destroy(model);
    test_remove_tree(out_dir);
}
END_TEST

/* ---- best checkpoint and divergence ------------------------------------------- */

/* The tensors of `best` are those of `last` (which also holds the optimizer
 * state and may hold more). */
static void assert_tensors_within(const char *best, const char *last) {
    clgqa_tensor_set *a, *b;
    TEST_OK(clgqa_tensor_file_open(best, &a));
    TEST_OK(clgqa_tensor_file_open(last, &b));
    for (size_t i = 0; i < clgqa_tensor_set_count(a); i++) {
        const clgqa_tensor *ta = clgqa_tensor_set_at(a, i);
        const clgqa_tensor *tb = clgqa_tensor_set_find(b, ta->name);
        ck_assert_msg(tb != NULL, "%s lacks %s", last, ta->name);
        ck_assert_uint_eq(ta->nbytes, tb->nbytes);
        ck_assert_msg(memcmp(ta->data, tb->data, ta->nbytes) == 0, "%s differs", ta->name);
    }
    clgqa_tensor_set_close(a);
    clgqa_tensor_set_close(b);
}

START_TEST(best_checkpoint_is_the_lowest_test_loss_epoch) {
    clgqa_config cfg, again;
    char out_dir[256], again_dir[256], path[512], other[512];
    /* A high learning rate, so the test loss does not just fall every epoch. */
    tiny_config(&cfg, "dgqa_diff", out_dir, sizeof out_dir);
    set(&cfg, "epochs=4");
    set(&cfg, "lr=0.02");
    set(&cfg, "schedule=constant");
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 0, &result);

    /* The lowest test loss of run.csv (ties: the first, as only a lower loss replaces it). */
    snprintf(path, sizeof path, "%s/run.csv", out_dir);
    char *text = read_text(path);
    int best = 0;
    double best_loss = INFINITY;
    char *line = strtok(text, "\n"); /* the header */
    for (int epoch = 1; (line = strtok(NULL, "\n")); epoch++) {
        int e;
        double v[4];
        ck_assert_int_eq(sscanf(line, "%d,%lf,%lf,%lf,%lf", &e, &v[0], &v[1], &v[2], &v[3]), 5);
        if (v[2] < best_loss) {
            best_loss = v[2];
            best = e;
        }
    }
    free(text);
    fprintf(stderr, "best_checkpoint_is_the_lowest_test_loss_epoch: epoch %d of 4 (test loss %.6f)\n",
            best, best_loss);
    ck_assert_int_eq(result.best_epoch, best);
    /* run.csv rounds to 6 decimals */
    ck_assert_msg(fabs(result.best_test_loss - best_loss) <= 5e-7, "%.9f vs %.6f",
                  result.best_test_loss, best_loss);

    /* Its weights: those the same run had at the end of that epoch. */
    tiny_config(&again, "dgqa_diff", again_dir, sizeof again_dir);
    set(&again, "epochs=4");
    set(&again, "lr=0.02");
    set(&again, "schedule=constant");
    train_quietly(&again, NULL, best, &result);
    snprintf(path, sizeof path, "%s/best.safetensors", out_dir);
    snprintf(other, sizeof other, "%s/last.safetensors", again_dir);
    assert_tensors_within(path, other);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_ptr_null(clgqa_tensor_set_find(file, "optim.m.head.weight")); /* a model checkpoint */
    clgqa_tensor_set_close(file);
    test_remove_tree(out_dir);
    test_remove_tree(again_dir);
}
END_TEST

static char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    char *bytes = malloc(*size);
    ck_assert_uint_eq(fread(bytes, 1, *size, f), *size);
    fclose(f);
    return bytes;
}

/* lr 1e30: the first step's update (Adam moves each weight by about lr)
 * makes the second step's activations overflow, so its loss is not finite. */
START_TEST(non_finite_loss_stops_at_its_step) {
    clgqa_config cfg;
    char out_dir[256], path[512];
    tiny_config(&cfg, "gqa", out_dir, sizeof out_dir);
    set(&cfg, "schedule=constant");
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 1, &result);
    snprintf(path, sizeof path, "%s/last.safetensors", out_dir);
    size_t size_before, size_after;
    char *before = read_bytes(path, &size_before);

    set(&cfg, "lr=1e30");
    clgqa_train_options options = {0};
    options.resume_dir = out_dir;
    options.flags = CLGQA_TRAIN_QUIET;
    /* A resume that changes lr is refused unless it is allowed. */
    ck_assert_int_eq(clgqa_train(test_runtime(), &cfg, &options, &result), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "lr 0.003 -> 1.0e+30"), "%s", clgqa_error_message());
    options.flags |= CLGQA_TRAIN_ALLOW_CHANGES;
    ck_assert_int_eq(clgqa_train(test_runtime(), &cfg, &options, &result), CLGQA_ERR_DIVERGED);
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, "diverged at epoch 2, step 2/5 (lr 1e+30)"), "%s", msg);
    /* The checkpoint it names is the one this run resumed from. */
    ck_assert_msg(strstr(msg, "last.safetensors keeps the last checkpoint"), "%s", msg);
    snprintf(path, sizeof path, "%s/resumes.csv", out_dir);
    char *changes = read_text(path);
    ck_assert_str_eq(changes, "step,key,old,new\n5,lr,0.003,1.0e+30\n");
    free(changes);
    snprintf(path, sizeof path, "%s/last.safetensors", out_dir);
    char *after = read_bytes(path, &size_after);
    ck_assert_msg(size_before == size_after && !memcmp(before, after, size_after),
                  "last.safetensors changed after the divergence");
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    ck_assert_msg(access(path, F_OK) != 0, "a diverged run wrote its final model");
    free(before);
    free(after);
    test_remove_tree(out_dir);
}
END_TEST

/* ---- timm's recipe: regularisers, EMA, gradient accumulation ----------------- */

/* The run's keys of timm's recipe, every one on: label smoothing, Mixup
 * and CutMix on every batch (half each), drop path, the weights' EMA, two
 * micro-batches a step (the tiny split's 5 batches: steps of 2, 2 and 1). */
static void set_recipe(clgqa_config *cfg) {
    set(cfg, "label_smoothing=0.1");
    set(cfg, "mixup_alpha=0.8");
    set(cfg, "cutmix_alpha=1.0");
    set(cfg, "drop_path=0.2");
    set(cfg, "model_ema_decay=0.9");
    set(cfg, "grad_accum_steps=2");
    set(cfg, "no_weight_decay=true");
    set(cfg, "min_lr=0.0003");
    TEST_OK(clgqa_config_finalize(cfg));
}

/* The host's Gamma and Beta samplers (Marsaglia-Tsang, the shape < 1
 * boost) have their distributions' moments over 40000 draws: the mean
 * within 6 standard errors (sd / sqrt n), the sample variance within 6 of
 * its own standard errors, sqrt((mu4 - var^2) / n): var sqrt((2 + 6 / a) /
 * n) for Gamma(a) (excess kurtosis 6 / a), below var sqrt(2 / n) for the
 * symmetric Beta (negative excess kurtosis). The same stream draws the same
 * numbers. */
START_TEST(gamma_and_beta_draws_have_their_moments) {
    const int n = 40000;
    const double shapes[] = {0.3, 1.0, 2.5};
    for (size_t k = 0; k < 3; k++) {
        clgqa_host_draws d = {11, clgqa_stream_id(CLGQA_RNG_TEST, 1, k), 0};
        double sum = 0, squares = 0, a = shapes[k];
        for (int i = 0; i < n; i++) {
            double x = clgqa_draw_gamma(&d, a);
            ck_assert(x >= 0 && isfinite(x));
            sum += x;
            squares += x * x;
        }
        double mean = sum / n, var = squares / n - mean * mean;
        ck_assert_msg(fabs(mean - a) <= 6 * sqrt(a / n), "Gamma(%g): mean %.4f", a, mean);
        ck_assert_msg(fabs(var - a) <= 6 * a * sqrt((2 + 6 / a) / n), "Gamma(%g): variance %.4f",
                      a, var);
    }
    const double alphas[] = {0.8, 1.0};
    for (size_t k = 0; k < 2; k++) {
        clgqa_host_draws d = {12, clgqa_stream_id(CLGQA_RNG_TEST, 2, k), 0}, again = d;
        double sum = 0, squares = 0, a = alphas[k];
        for (int i = 0; i < n; i++) {
            double x = clgqa_draw_beta(&d, a, a);
            ck_assert(x >= 0 && x <= 1);
            ck_assert(x == clgqa_draw_beta(&again, a, a)); /* deterministic */
            sum += x;
            squares += x * x;
        }
        double mean = sum / n, var = squares / n - mean * mean, want_var = 1 / (4 * (2 * a + 1));
        ck_assert_msg(fabs(mean - 0.5) <= 6 * sqrt(want_var / n), "Beta(%g): mean %.4f", a, mean);
        ck_assert_msg(fabs(var - want_var) <= 6 * want_var * sqrt(2.0 / n), "Beta(%g): var %.5f",
                      a, var);
    }
}
END_TEST

/* timm's Mixup(mode='batch') decisions per batch, each against timm's
 * algorithm replayed on the same draws: with prob 0.3 a share
 * 0.3 of batches is mixed, the others not (label weight 1); with both
 * alphas on, CutMix in a share switch_prob (0.5) of the mixed ones; a blend
 * weighs the own label by its lambda; a box lies in the image with its
 * sides at most int(size sqrt(1 - lambda)) and its label weight is 1 -
 * area / size^2 exactly, timm's corrected lambda (so the box area matches
 * the targets); shares within 6 standard errors over 20000 batches. */
START_TEST(mixup_draws_follow_timm) {
    const clgqa_mixup settings = {0.8, 1.0, 0.3, 0.5};
    const int n = 20000, size = 28;
    int mixed = 0, boxes = 0, empty_boxes = 0;
    double blend_sum = 0;
    for (int step = 0; step < n; step++) {
        clgqa_host_draws d = {42, clgqa_stream_id(CLGQA_RNG_MIXUP, 0, (uint64_t)step), 0};
        clgqa_host_draws replay = d;
        clgqa_image_mix mix;
        double weight;
        clgqa_mixup_draw(&settings, &d, size, &mix, &weight);
        /* timm's _params_per_batch and rand_bbox on the same draws, in
         * float64: u < prob mixes, u < switch_prob picks CutMix, lambda ~
         * Beta(alpha, alpha), the cut's side int(size sqrt(1 - lambda)),
         * its centre np.random.randint(0, size) for rows then columns. */
        if (clgqa_draw_uniform(&replay) < settings.prob) {
            int cutmix = clgqa_draw_uniform(&replay) < settings.switch_prob;
            double alpha = cutmix ? settings.cutmix_alpha : settings.mixup_alpha;
            double lambda = clgqa_draw_beta(&replay, alpha, alpha);
            ck_assert_int_eq(mix.mode, cutmix ? CLGQA_MIX_BOX : CLGQA_MIX_BLEND);
            if (cutmix) {
                int cut = (int)(size * sqrt(1.0 - lambda));
                int cy = (int)(clgqa_draw_uniform(&replay) * size);
                int cx = (int)(clgqa_draw_uniform(&replay) * size);
                int want[4] = {cy - cut / 2, cy + cut / 2, cx - cut / 2, cx + cut / 2};
                for (int k = 0; k < 4; k++)
                    want[k] = want[k] < 0 ? 0 : want[k] > size ? size : want[k];
                ck_assert_msg(mix.y0 == want[0] && mix.y1 == want[1] && mix.x0 == want[2] &&
                                  mix.x1 == want[3],
                              "lambda %.6f: box [%d, %d) x [%d, %d), timm's [%d, %d) x [%d, %d)",
                              lambda, mix.y0, mix.y1, mix.x0, mix.x1, want[0], want[1], want[2],
                              want[3]);
            } else {
                ck_assert(mix.lambda == lambda);
            }
        } else {
            ck_assert_int_eq(mix.mode, CLGQA_MIX_NONE);
        }
        if (mix.mode == CLGQA_MIX_NONE) {
            ck_assert(weight == 1.0);
            continue;
        }
        mixed++;
        if (mix.mode == CLGQA_MIX_BLEND) {
            ck_assert(weight == mix.lambda && weight >= 0 && weight <= 1);
            blend_sum += weight;
            continue;
        }
        boxes++;
        ck_assert_msg(mix.y0 >= 0 && mix.y0 <= mix.y1 && mix.y1 <= size && mix.x0 >= 0 &&
                          mix.x0 <= mix.x1 && mix.x1 <= size,
                      "box [%d, %d) x [%d, %d)", mix.y0, mix.y1, mix.x0, mix.x1);
        int area = (mix.y1 - mix.y0) * (mix.x1 - mix.x0);
        empty_boxes += area == 0;
        ck_assert_msg(weight == 1.0 - (double)area / (size * size), "box area %d, weight %.9g",
                      area, weight);
        /* rand_bbox's cut: 2 (cut / 2) rows and columns around the centre,
         * clipped, so never more than the image's. */
        ck_assert(mix.y1 - mix.y0 <= size && mix.x1 - mix.x0 <= size);
    }
    double p = 0.3;
    ck_assert_msg(fabs((double)mixed / n - p) <= 6 * sqrt(p * (1 - p) / n), "mixed %d of %d",
                  mixed, n);
    ck_assert_msg(fabs((double)boxes / mixed - 0.5) <= 6 * sqrt(0.25 / mixed), "boxes %d of %d",
                  boxes, mixed);
    int blends = mixed - boxes;
    double want_var = 1 / (4 * (2 * 0.8 + 1));
    ck_assert_msg(fabs(blend_sum / blends - 0.5) <= 6 * sqrt(want_var / blends),
                  "mean Mixup lambda %.4f", blend_sum / blends);
    ck_assert_msg(empty_boxes < boxes / 4, "%d of %d boxes are empty", empty_boxes, boxes);
    /* Off: no alpha, or prob 0. */
    const clgqa_mixup off = {0, 0, 1.0, 0.5}, never = {0.8, 1.0, 0.0, 0.5};
    ck_assert(!clgqa_mixup_on(&off) && !clgqa_mixup_on(&never) && clgqa_mixup_on(&settings));
}
END_TEST

/* Every draw of the recipe (Mixup's, drop path's) comes from (seed, step),
 * and the EMA is in last.safetensors: a run stopped mid-epoch (after 2 of
 * its 3 optimizer steps) and resumed ends with the uninterrupted run's
 * bits, EMA included. DGQA: its window counts optimizer steps and regroups
 * on a window step's first micro-batch. */
START_TEST(recipe_resumes_bit_for_bit) {
    clgqa_config straight, split, plain;
    char straight_dir[256], split_dir[256], plain_dir[256], a[512], b[512];
    tiny_config(&straight, "dgqa_diff", straight_dir, sizeof straight_dir);
    tiny_config(&split, "dgqa_diff", split_dir, sizeof split_dir);
    tiny_config(&plain, "dgqa_diff", plain_dir, sizeof plain_dir);
    set_recipe(&straight);
    set_recipe(&split);
    clgqa_train_result result;
    train_quietly(&straight, NULL, 0, &result);
    ck_assert_int_eq(result.global_step, 2 * 3); /* 3 optimizer steps an epoch */
    train_steps(&split, NULL, 0, 2, &result);
    ck_assert_int_eq(result.global_step, 2);
    train_quietly(&split, split_dir, 0, &result);
    ck_assert_int_eq(result.global_step, 6);
    static const char *const files[] = {"model.safetensors", "last.safetensors",
                                        "ema.safetensors", "best.safetensors"};
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", straight_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", split_dir, files[i]);
        assert_same_tensors(a, b);
    }
    snprintf(a, sizeof a, "%s/last.safetensors", straight_dir);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(a, &file));
    ck_assert_ptr_nonnull(clgqa_tensor_set_find(file, "ema.head.weight"));
    clgqa_tensor_set_close(file);
    snprintf(a, sizeof a, "%s/run.csv", straight_dir);
    snprintf(b, sizeof b, "%s/run.csv", split_dir);
    char *text_a = read_text(a), *text_b = read_text(b);
    ck_assert_str_eq(text_a, text_b);
    ck_assert_msg(!strncmp(text_a, "epoch,train_loss,train_acc,test_loss,test_acc,train_acc5,"
                           "test_acc5,ema_test_loss,ema_test_acc,ema_test_acc5\n", 88),
                  "%s", text_a);
    free(text_a);
    free(text_b);
    /* The recipe changed the training: the plain run's weights differ. */
    train_quietly(&plain, NULL, 0, &result);
    snprintf(a, sizeof a, "%s/model.safetensors", straight_dir);
    snprintf(b, sizeof b, "%s/model.safetensors", plain_dir);
    size_t size_a, size_b;
    char *bytes_a = read_bytes(a, &size_a), *bytes_b = read_bytes(b, &size_b);
    ck_assert_msg(size_a != size_b || memcmp(bytes_a, bytes_b, size_a), "the recipe changed nothing");
    free(bytes_a), free(bytes_b);
    test_remove_tree(straight_dir);
    test_remove_tree(split_dir);
    test_remove_tree(plain_dir);
}
END_TEST

/* The weights' EMA: evaluated beside the raw weights each epoch (run.csv's
 * ema_ columns and the epoch line), written as ema.safetensors, and
 * followed by best.safetensors with best_follows: ema. The EMA's test loss
 * in run.csv is what clgqa_evaluate gives for ema.safetensors. */
START_TEST(ema_is_evaluated_saved_and_followed_by_best) {
    clgqa_config cfg;
    char out_dir[256], path[512], other[512];
    tiny_config(&cfg, "gqa", out_dir, sizeof out_dir);
    set(&cfg, "epochs=1");
    set(&cfg, "model_ema_decay=0.6");
    set(&cfg, "best_follows=ema");
    TEST_OK(clgqa_config_finalize(&cfg));
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 0, &result);
    snprintf(path, sizeof path, "%s/ema.safetensors", out_dir);
    snprintf(other, sizeof other, "%s/best.safetensors", out_dir);
    assert_tensors_within(path, other); /* epoch 1 is the best so far */
    snprintf(other, sizeof other, "%s/model.safetensors", out_dir);
    size_t size_a, size_b;
    char *bytes_a = read_bytes(path, &size_a), *bytes_b = read_bytes(other, &size_b);
    ck_assert_msg(size_a == size_b && memcmp(bytes_a, bytes_b, size_a), "the EMA is the weights");
    free(bytes_a), free(bytes_b);

    snprintf(other, sizeof other, "%s/run.csv", out_dir);
    char *text = read_text(other), *row = strchr(text, '\n') + 1;
    double v[9];
    int e;
    ck_assert_int_eq(sscanf(row, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &e, &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]),
                     10);
    free(text);
    clgqa_model *model;
    clgqa_dataset *ds;
    TEST_OK(test_model_create(test_runtime(), &cfg, cfg.batch_size, &model));
    TEST_OK(clgqa_checkpoint_load_model(model, path, NULL));
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TEST, 0, &ds));
    clgqa_eval_result eval;
    TEST_OK(clgqa_evaluate(test_runtime(), model, ds, &cfg, 0, NULL, &eval));
    /* run.csv keeps 6 decimals */
    ck_assert_msg(fabs(eval.loss - v[6]) <= 5e-7 && fabs(eval.accuracy - v[7]) <= 5e-7 &&
                      fabs(eval.top5 - v[8]) <= 5e-7,
                  "ema.safetensors evaluates to %.6f %.6f %.6f, run.csv says %.6f %.6f %.6f",
                  eval.loss, eval.accuracy, eval.top5, v[6], v[7], v[8]);
    ck_assert_msg(fabs(result.best_test_loss - v[6]) <= 5e-7, "best follows %.6f", result.best_test_loss);
    clgqa_dataset_close(ds);
    clgqa_model_destroy(model);
    test_remove_tree(out_dir);
}
END_TEST

/* Gradient accumulation on the demo: its model, data and recipe, 10
 * optimizer steps of 2 micro-batches of 16 end within 1e-5 of 10 steps of
 * batches of 32, every weight (the same 320 images in the same order; the
 * sums differ only in float order). The demo's warm-up keeps lr at most
 * 1e-4 over these steps, so the key biases, whose gradient is only
 * rounding noise that AdamW turns into steps of ~lr (tests/ref/README.md),
 * stay within it too; a lost micro-batch still moves weights by ~lr
 * (AdamW's steps are ~lr whatever the gradient's scale), 1e-4 here. A wrong
 * scale AdamW would not show: test_model checks the accumulated gradient
 * itself. The demo's KDGQA splits each micro-batch on its own key norms;
 * with its 2 key heads the split gives every query to the head of larger
 * norm, which the two halves of a batch pick alike here. */
START_TEST(gradient_accumulation_equals_the_larger_batch) {
    char dirs[2][256], a[512], b[512];
    for (int run = 0; run < 2; run++) {
        clgqa_config cfg;
        TEST_OK(clgqa_config_demo(&cfg));
        make_dataset(); /* the folder the runs go in */
        snprintf(dirs[run], sizeof dirs[run], "%s/accumulate-XXXXXX", data_dir);
        ck_assert_ptr_nonnull(mkdtemp(dirs[run]));
        char buf[400];
        snprintf(buf, sizeof buf, "out_dir=%s", dirs[run]);
        set(&cfg, buf);
        set(&cfg, "epochs=1");
        set(&cfg, "max_steps_per_epoch=10");
        set(&cfg, "max_eval_batches=1");
        set(&cfg, run ? "batch_size=16" : "batch_size=32");
        set(&cfg, run ? "grad_accum_steps=2" : "grad_accum_steps=1");
        TEST_OK(clgqa_config_finalize(&cfg));
        clgqa_train_result result;
        train_quietly(&cfg, NULL, 0, &result);
        ck_assert_int_eq(result.global_step, 10);
    }
    snprintf(a, sizeof a, "%s/model.safetensors", dirs[0]);
    snprintf(b, sizeof b, "%s/model.safetensors", dirs[1]);
    clgqa_tensor_set *fa, *fb;
    TEST_OK(clgqa_tensor_file_open(a, &fa));
    TEST_OK(clgqa_tensor_file_open(b, &fb));
    double worst = 0;
    for (size_t i = 0; i < clgqa_tensor_set_count(fa); i++) {
        const clgqa_tensor *ta = clgqa_tensor_set_at(fa, i);
        if (ta->dtype != CLGQA_DTYPE_F32)
            continue;
        float *x = malloc(ta->numel * sizeof *x), *y = malloc(ta->numel * sizeof *y);
        TEST_OK(clgqa_tensor_set_read_f32(fa, ta->name, x, ta->numel));
        TEST_OK(clgqa_tensor_set_read_f32(fb, ta->name, y, ta->numel));
        for (size_t k = 0; k < ta->numel; k++) {
            double d = fabs((double)x[k] - y[k]);
            if (d > worst)
                worst = d;
            if (!(d <= 1e-5))
                ck_abort_msg("%s[%zu]: %.9g after 1 x 32, %.9g after 2 x 16", ta->name, k,
                             (double)x[k], (double)y[k]);
        }
        free(x), free(y);
    }
    fprintf(stderr, "gradient_accumulation_equals_the_larger_batch: largest difference %.3g\n",
            worst);
    clgqa_tensor_set_close(fa);
    clgqa_tensor_set_close(fb);
    test_remove_tree(dirs[0]);
    test_remove_tree(dirs[1]);
}
END_TEST

/* ---- stopping the command ------------------------------------------------------- */

/* A longer run for signals: one epoch of 250 steps of 4 images, DGQA
 * with RandAugment (the default), so that a signal sent at the first
 * progress line (step 50) lands mid-epoch with room to spare. */
#define LONG_TRAIN 1000
static char long_yaml[256], reference_dir[256];

static void make_long_run(void) {
    if (reference_dir[0])
        return;
    make_dataset();
    char dir[128];
    snprintf(dir, sizeof dir, "%s/long", data_dir);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    write_idx_split(dir, "train", LONG_TRAIN, 3);
    write_idx_split(dir, "t10k", TEST_COUNT, 4);
    snprintf(long_yaml, sizeof long_yaml, "%s/long.yaml", data_dir);
    FILE *f = fopen(long_yaml, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: dgqa_diff\n"
               "window_size: 2\nembed_dim: 16\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
               "img_size: 8\npatch_size: 4\nepochs: 1\nbatch_size: 4\nlr: 0.003\n"
               "schedule: cosine\nwarmup_steps: 3\nseed: 5\n", dir);
    ck_assert_int_eq(fclose(f), 0);
    /* The uninterrupted run, once for every test below. */
    snprintf(reference_dir, sizeof reference_dir, "%s/reference", data_dir);
    char out[300];
    snprintf(out, sizeof out, "out_dir=%s", reference_dir);
    const char *sets[] = {out};
    clgqa_config cfg;
    TEST_OK(clgqa_run_config(long_yaml, sets, 1, &cfg));
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 0, &result);
    ck_assert_int_eq(result.global_step, LONG_TRAIN / 4);
}

/* Runs `clgqa train <long.yaml> --set out_dir=<out_dir> <extra>`; once a
 * stderr line contains `trigger`, sends each signal of `signals` (ended by
 * 0), and once a later line contains `second_trigger` (when not NULL), the
 * signal `second`. Returns the wait status; `err` receives stderr. */
static int train_and_signal_at(const char *out_dir, const char *extra, const char *trigger,
                               const int *signals, const char *second_trigger, int second,
                               char *err, size_t err_size) {
    char exe[1024], cmd[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(cmd, sizeof cmd, "exec '%s/clgqa' train '%s' --set 'out_dir=%s' %s >/dev/null", exe,
             long_yaml, out_dir, extra);
    int pipe_fds[2];
    ck_assert_int_eq(pipe(pipe_fds), 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(pipe_fds[1], STDERR_FILENO);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipe_fds[1]);
    FILE *from = fdopen(pipe_fds[0], "r");
    ck_assert_ptr_nonnull(from);
    size_t used = 0;
    int signalled = 0, second_sent = 0;
    char line[1024];
    err[0] = '\0';
    while (fgets(line, sizeof line, from)) {
        used += (size_t)snprintf(err + used, used < err_size ? err_size - used : 0, "%s", line);
        if (used >= err_size)
            used = err_size - 1;
        if (signalled && second_trigger && !second_sent && strstr(line, second_trigger)) {
            ck_assert_int_eq(kill(pid, second), 0);
            second_sent = 1;
        }
        if (!signalled && strstr(line, trigger)) {
            for (const int *sig = signals; *sig; sig++)
                ck_assert_int_eq(kill(pid, *sig), 0);
            signalled = 1;
        }
    }
    fclose(from);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(signalled, "the run never printed '%s':\n%s", trigger, err);
    ck_assert_msg(!second_trigger || second_sent, "the run never printed '%s':\n%s",
                  second_trigger, err);
    return status;
}

static int train_and_signal(const char *out_dir, const char *extra, const char *trigger,
                            const int *signals, char *err, size_t err_size) {
    return train_and_signal_at(out_dir, extra, trigger, signals, NULL, 0, err, err_size);
}

static int train_and_signal_twice(const char *out_dir, const char *trigger, const int *signals,
                                  const char *second_trigger, int second, char *err,
                                  size_t err_size) {
    return train_and_signal_at(out_dir, "", trigger, signals, second_trigger, second, err,
                               err_size);
}

/* Resumes the stopped run in out_dir as its message says, through the
 * command, and compares the final weights with the uninterrupted run's. */
static void resume_and_compare(const char *out_dir) {
    char args[1200], err[16384], a[512], b[512];
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s'", out_dir, out_dir);
    int code = test_run_clgqa("", args, NULL, 0, err, sizeof err);
    ck_assert_msg(code == 0, "resuming failed (%d): %s", code, err);
    static const char *const files[] = {"model.safetensors", "last.safetensors", "best.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/%s", reference_dir, files[i]);
        snprintf(b, sizeof b, "%s/%s", out_dir, files[i]);
        assert_same_tensors(a, b);
    }
    snprintf(a, sizeof a, "%s/run.csv", reference_dir);
    snprintf(b, sizeof b, "%s/run.csv", out_dir);
    char *text_a = read_text(a), *text_b = read_text(b);
    ck_assert_str_eq(text_a, text_b);
    free(text_a);
    free(text_b);
}

static void check_stop_by(int sig, const char *name) {
    make_long_run();
    char out_dir[256], err[16384];
    snprintf(out_dir, sizeof out_dir, "%s/stopped-%s", data_dir, name);
    int signals[] = {sig, 0};
    int status = train_and_signal(out_dir, "", "step 50/", signals, err, sizeof err);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == sig,
                  "%s: wait status %#x, stderr:\n%s", name, status, err);
    /* Mid-epoch, and the message says how to resume. */
    const char *stopped = strstr(err, "stopped by ");
    ck_assert_msg(stopped && !strncmp(stopped + 11, name, strlen(name)), "%s", err);
    long step, steps;
    const char *at = strstr(err, "in epoch 1 after step ");
    ck_assert_msg(at && sscanf(at, "in epoch 1 after step %ld/%ld", &step, &steps) == 2, "%s", err);
    ck_assert_int_eq(steps, LONG_TRAIN / 4);
    ck_assert_msg(step >= 50 && step < steps, "stopped after step %ld", step);
    /* 10 classes: the progress line shows the top-5 accuracy. */
    ck_assert_msg(strstr(err, "step 50/250 loss ") && strstr(err, "% top-5 "), "%s", err);
    char resume_line[700];
    snprintf(resume_line, sizeof resume_line, "clgqa train %s/config.yaml --resume %s\n", out_dir,
             out_dir);
    ck_assert_msg(strstr(err, resume_line), "no resume command in:\n%s", err);
    resume_and_compare(out_dir);
    test_remove_tree(out_dir);
}

START_TEST(sigterm_stops_mid_epoch_and_resumes_exactly) { check_stop_by(SIGTERM, "SIGTERM"); }
END_TEST

START_TEST(sigint_stops_mid_epoch_and_resumes_exactly) { check_stop_by(SIGINT, "SIGINT"); }
END_TEST

/* A shell running the command sees it die by the signal that stopped it
 * (after its checkpoint and resume message): $? is 128 + SIGTERM, not an
 * exit status the program chose. The job runs in the background of the
 * shell, which waits for it, so the test knows the program's pid. */
START_TEST(a_shell_sees_death_by_the_signal) {
    make_long_run();
    char exe[1024], cmd[4096], out_dir[256];
    snprintf(out_dir, sizeof out_dir, "%s/shell-sees", data_dir);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(cmd, sizeof cmd,
             "'%s/clgqa' train '%s' --set 'out_dir=%s' >/dev/null & echo \"pid=$!\" >&2; "
             "wait $!; echo \"status=$?\" >&2",
             exe, long_yaml, out_dir);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t shell = fork();
    ck_assert(shell >= 0);
    if (shell == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *from = fdopen(fds[0], "r");
    ck_assert_ptr_nonnull(from);
    char line[1024], log[16384] = "";
    size_t used = 0;
    long pid = 0, shell_status = -1;
    while (fgets(line, sizeof line, from)) {
        used += (size_t)snprintf(log + used, used < sizeof log ? sizeof log - used : 0, "%s", line);
        if (used >= sizeof log)
            used = sizeof log - 1;
        if (!pid)
            sscanf(line, "pid=%ld", &pid);
        if (pid && strstr(line, "step 50/"))
            ck_assert_int_eq(kill((pid_t)pid, SIGTERM), 0);
        sscanf(line, "status=%ld", &shell_status);
    }
    fclose(from);
    int status;
    ck_assert_int_eq(waitpid(shell, &status, 0), shell);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the shell: %#x", status);
    ck_assert_msg(shell_status == 128 + SIGTERM, "the shell saw $? = %ld:\n%s", shell_status, log);
    ck_assert_msg(strstr(log, "stopped by SIGTERM") && strstr(log, "Resume with"), "%s", log);
    test_remove_tree(out_dir);
}
END_TEST

/* SIGUSR1 (a scheduler's warning before its time limit) writes
 * last.safetensors after the step in progress and the run goes on, to the
 * end of the epoch, with the uninterrupted run's weights and run.csv. The
 * checkpoint is checked the hard way: the run is killed (SIGKILL, which
 * nothing catches) at its next progress line, and resuming from what
 * SIGUSR1 wrote ends with the uninterrupted run's weights. */
START_TEST(sigusr1_checkpoints_and_goes_on) {
    make_long_run();
    char out_dir[256], err[16384], path[512];
    snprintf(out_dir, sizeof out_dir, "%s/usr1", data_dir);
    int signals[] = {SIGUSR1, 0};
    int status = train_and_signal(out_dir, "", "step 50/", signals, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %#x:\n%s", status,
                  err);
    const char *said = strstr(err, "checkpoint requested: ");
    long step = 0, steps = 0;
    ck_assert_msg(said && strstr(said, "after step ") &&
                      sscanf(strstr(said, "after step "), "after step %ld/%ld", &step, &steps) == 2,
                  "%s", err);
    ck_assert_msg(step >= 50 && step < steps, "checkpoint after step %ld of %ld", step, steps);
    ck_assert_msg(strstr(said, "training goes on") && strstr(said, "step 250/250"),
                  "no progress after the checkpoint:\n%s", err);
    char a[512];
    snprintf(a, sizeof a, "%s/model.safetensors", reference_dir);
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    assert_same_tensors(a, path);
    test_remove_tree(out_dir);

    /* Killed at the progress line after the SIGUSR1 checkpoint. */
    snprintf(out_dir, sizeof out_dir, "%s/usr1-killed", data_dir);
    int usr1[] = {SIGUSR1, 0};
    status = train_and_signal_twice(out_dir, "step 50/", usr1, "training goes on", SIGKILL, err,
                                    sizeof err);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%#x:\n%s", status, err);
    snprintf(path, sizeof path, "%s/last.safetensors", out_dir);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    long saved = strtol(clgqa_tensor_set_metadata(file, "epoch_steps"), NULL, 10);
    clgqa_tensor_set_close(file);
    ck_assert_msg(saved >= 50 && saved < LONG_TRAIN / 4, "last.safetensors after step %ld", saved);
    resume_and_compare(out_dir);
    test_remove_tree(out_dir);
}
END_TEST

/* kill -9 cannot be caught: with checkpoint_steps 20, last.safetensors is at
 * most 20 steps behind, and the run resumes from it exactly. */
START_TEST(kill_9_loses_at_most_checkpoint_steps) {
    make_long_run();
    char out_dir[256], err[16384], path[512];
    snprintf(out_dir, sizeof out_dir, "%s/killed", data_dir);
    int signals[] = {SIGKILL, 0};
    int status = train_and_signal(out_dir, "--set checkpoint_steps=20", "step 50/", signals, err,
                                  sizeof err);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "wait status %#x", status);
    snprintf(path, sizeof path, "%s/last.safetensors", out_dir);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    long saved = strtol(clgqa_tensor_set_metadata(file, "global_step"), NULL, 10);
    clgqa_tensor_set_close(file);
    /* The run had done at least 50 steps when killed. */
    ck_assert_msg(saved % 20 == 0 && saved >= 50 - 20, "last.safetensors at step %ld", saved);
    resume_and_compare(out_dir);
    test_remove_tree(out_dir);
}
END_TEST

/* SIGTERM then SIGINT at once: the second stops the program without the
 * orderly stop (it dies of the signal, with no resume message); the last
 * whole checkpoint (checkpoint_steps 20) resumes exactly. */
START_TEST(second_signal_stops_at_once) {
    make_long_run();
    char out_dir[256], err[16384];
    snprintf(out_dir, sizeof out_dir, "%s/twice", data_dir);
    int signals[] = {SIGTERM, SIGINT, 0};
    int status = train_and_signal(out_dir, "--set checkpoint_steps=20", "step 50/", signals, err,
                                  sizeof err);
    /* Both pending at once, the lower-numbered SIGINT may be handled first. */
    ck_assert_msg(WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM),
                  "wait status %#x, stderr:\n%s", status, err);
    ck_assert_msg(!strstr(err, "Resume with"), "%s", err);
    resume_and_compare(out_dir);
    test_remove_tree(out_dir);
}
END_TEST

/* ---- the reference's recipe ----------------------------------------------------- */

/* A config with only the reference repository's keys trains with the
 * reference's recipe: config.yaml in out_dir says so. (Cut to one step and
 * one test batch an epoch by --set, which leaves the recipe's keys alone.) */
START_TEST(reference_keys_only_config_trains_with_the_reference_recipe) {
    make_dataset();
    char path[512], out_dir[256], args[1400], err[16384];
    snprintf(out_dir, sizeof out_dir, "%s/reference-keys", data_dir);
    snprintf(path, sizeof path, "%s/reference-keys.yaml", data_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    /* The reference's keys; data_dir only because the data is not in ./mnist. */
    fprintf(f, "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: gqa\nnum_classes: 10\n"
               "pretrained: false\nwindow_size: 100\nnum_kv_heads: 2\nout_dir: %s\nembed_dim: 16\n"
               "num_layers: 1\nnum_heads: 4\n", data_dir, out_dir);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(args, sizeof args, "train '%s' --set max_steps_per_epoch=1 --set max_eval_batches=1",
             path);
    int code = test_run_clgqa("", args, NULL, 0, err, sizeof err);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);

    /* Read over the demo's values, so every value checked comes from the file. */
    clgqa_config cfg;
    TEST_OK(clgqa_config_demo(&cfg));
    snprintf(path, sizeof path, "%s/config.yaml", out_dir);
    TEST_OK(clgqa_config_load(&cfg, path));
    test_assert_reference_recipe(&cfg);
    /* and the file's own keys */
    ck_assert_int_eq(cfg.att_scheme, CLGQA_GQA);
    ck_assert_int_eq(cfg.embed_dim, 16);
    snprintf(path, sizeof path, "%s/run.csv", out_dir);
    char *text = read_text(path);
    ck_assert_msg(strstr(text, "\n5,"), "run.csv lacks epoch 5:\n%s", text);
    free(text);
    test_remove_tree(out_dir);
}
END_TEST

/* The command line of the ecosystem: -c/--config FILE beside the
 * positional config, and every config key as --KEY VALUE or --KEY=VALUE
 * (hyphens for underscores, as timm's flags), applied in order with --set;
 * config.yaml of the run shows each value. Then the refusals, one line and
 * exit status 2 (a usage error) or 1 (a bad value). */
START_TEST(config_flag_and_key_options_set_the_run) {
    make_dataset();
    char path[512], out_dir[256], args[2400], err[16384];
    snprintf(out_dir, sizeof out_dir, "%s/key-options", data_dir);
    snprintf(path, sizeof path, "%s/key-options.yaml", data_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: gqa\n"
               "embed_dim: 16\nnum_layers: 1\nnum_heads: 4\nnum_kv_heads: 2\nimg_size: 8\n"
               "patch_size: 4\nbatch_size: 8\nlr: 0.01\n", data_dir);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(args, sizeof args,
             "train -c '%s' --out_dir '%s' --lr=0.002 --epochs 1 --max-steps-per-epoch 2 "
             "--max_eval_batches=1 --label-smoothing 0.1 --set drop_path=0.05 --no_weight_decay=true "
             "--betas=[0.9,0.95]",
             path, out_dir);
    int code = test_run_clgqa("", args, NULL, 0, err, sizeof err);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/config.yaml", out_dir);
    TEST_OK(clgqa_config_load(&cfg, path));
    ck_assert_float_eq(cfg.lr, 0.002f);
    ck_assert_int_eq(cfg.epochs, 1);
    ck_assert_int_eq(cfg.max_steps_per_epoch, 2);
    ck_assert_int_eq(cfg.max_eval_batches, 1);
    ck_assert_float_eq(cfg.label_smoothing, 0.1f);
    ck_assert_float_eq(cfg.drop_path, 0.05f);
    ck_assert_int_eq(cfg.no_weight_decay, 1);
    ck_assert_float_eq(cfg.beta2, 0.95f);
    ck_assert_int_eq(cfg.att_scheme, CLGQA_GQA); /* the file's */
    test_remove_tree(out_dir);

    /* Refusals. */
    snprintf(path, sizeof path, "%s/key-options.yaml", data_dir);
    snprintf(args, sizeof args, "train -c '%s' '%s'", path, path);
    ck_assert_int_eq(test_run_clgqa("", args, NULL, 0, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "a second config"), "%s", err);
    snprintf(args, sizeof args, "train '%s' --lr", path);
    ck_assert_int_eq(test_run_clgqa("", args, NULL, 0, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--lr needs a value"), "%s", err);
    snprintf(args, sizeof args, "train '%s' --lr=", path);
    ck_assert_int_eq(test_run_clgqa("", args, NULL, 0, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "not an empty string"), "%s", err);
    snprintf(args, sizeof args, "train '%s' --dry-run=yes", path);
    ck_assert_int_eq(test_run_clgqa("", args, NULL, 0, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--dry-run takes no value"), "%s", err);
    snprintf(args, sizeof args, "train '%s' --learning-rate 3", path);
    ck_assert_int_eq(test_run_clgqa("", args, NULL, 0, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "unexpected argument '--learning-rate'"), "%s", err);
    snprintf(args, sizeof args, "train --config='%s' --lr=fast", path);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);
    test_assert_one_line_naming(err, "'lr'");
}
END_TEST

/* ---- schedule --------------------------------------------------------------- */

START_TEST(schedule_follows_its_formula) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    cfg.lr = 0.002f;
    cfg.schedule = CLGQA_SCHEDULE_CONSTANT;
    cfg.warmup_steps = 10;
    /* Warm-up under every schedule: linear to lr over warmup_steps. */
    for (long step = 0; step < 10; step++)
        ck_assert_float_eq_tol(clgqa_schedule_lr(&cfg, step, 100), 0.002f * (step + 1) / 10,
                               1e-9f);
    for (long step = 10; step < 200; step += 37)
        ck_assert_float_eq(clgqa_schedule_lr(&cfg, step, 100), 0.002f);

    cfg.schedule = CLGQA_SCHEDULE_COSINE;
    const long total = 110, warmup = 10;
    const long steps[] = {0, 4, 9, 10, 35, 60, 109};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        long s = steps[i];
        double want = s < warmup ? 0.002 * (double)(s + 1) / (double)warmup
                                 : 0.002 * 0.5 * (1 + cos(M_PI * (double)(s - warmup) / (double)(total - warmup)));
        /* float32 result of a double formula: 1e-6 relative */
        float got = clgqa_schedule_lr(&cfg, s, total);
        ck_assert_msg(fabs(got - want) <= 1e-6 * want, "step %ld: lr %.9g, want %.9g", s, got, want);
    }
    /* Values at landmarks: end of warmup = peak, halfway = half, never negative. */
    ck_assert_float_eq_tol(clgqa_schedule_lr(&cfg, 9, total), 0.002f, 1e-9f);
    ck_assert_float_eq_tol(clgqa_schedule_lr(&cfg, 60, total), 0.001f, 1e-8f);
    ck_assert(clgqa_schedule_lr(&cfg, 500, total) >= 0.0f);
    cfg.warmup_steps = 0;
    ck_assert_float_eq_tol(clgqa_schedule_lr(&cfg, 0, 100), 0.002f, 1e-9f);

    /* Cosine down to min_lr: min_lr + (lr - min_lr) (1 + cos(pi t)) / 2. */
    cfg.min_lr = 0.0005f;
    cfg.warmup_steps = 10;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        long s = steps[i];
        double lr = 0.002, min_lr = (double)0.0005f;
        double want = s < warmup ? lr * (double)(s + 1) / (double)warmup
                                 : min_lr + (lr - min_lr) * 0.5 *
                                                (1 + cos(M_PI * (double)(s - warmup) / (double)(total - warmup)));
        float got = clgqa_schedule_lr(&cfg, s, total);
        ck_assert_msg(fabs(got - want) <= 1e-6 * want, "min_lr, step %ld: lr %.9g, want %.9g", s,
                      got, want);
    }
    ck_assert_float_eq_tol(clgqa_schedule_lr(&cfg, 500, total), 0.0005f, 1e-10f);

    cfg.max_steps_per_epoch = 3;
    ck_assert_int_eq(clgqa_steps_per_epoch(&cfg, 5), 3);
    ck_assert_int_eq(clgqa_steps_per_epoch(&cfg, 2), 2);
    /* Optimizer steps of grad_accum_steps micro-batches, the last short. */
    cfg.max_steps_per_epoch = 0;
    cfg.grad_accum_steps = 2;
    ck_assert_int_eq(clgqa_steps_per_epoch(&cfg, 5), 3);
    ck_assert_int_eq(clgqa_steps_per_epoch(&cfg, 4), 2);
}
END_TEST

/* ---- PyTorch loads clgqa's checkpoints ------------------------------------------ */

#define PYTHON "/usr/bin/python3"

/* The trained tiny model of `scheme` saved by clgqa, its evaluation logits on
 * fresh inputs (with fixed PGQA noise, written beside them), then
 * tests/ref/check_checkpoint.py loads the checkpoint into the PyTorch
 * reference and compares the logits (1e-4 relative, its default). */
static void check_in_pytorch(const char *scheme) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg;
    char out_dir[256], ckpt[512], input_path[512], cmd[1400];
    tiny_config(&cfg, scheme, out_dir, sizeof out_dir);
    clgqa_train_result result;
    train_quietly(&cfg, NULL, 0, &result);
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", out_dir);

    const int batch = 6;
    clgqa_model *model;
    TEST_OK(test_model_create(rt, &cfg, batch, &model));
    TEST_OK(clgqa_checkpoint_load_model(model, ckpt, NULL));
    const clgqa_model_dims *d = clgqa_model_get_dims(model);
    size_t noise_floats = (size_t)d->num_heads * d->tokens * d->head_dim;
    float *noise = test_random_array(noise_floats * d->num_layers, 0.0f, 1.0f);
    if (!strcmp(scheme, "pgqa"))
        for (int layer = 0; layer < d->num_layers; layer++)
            TEST_OK(clgqa_model_set_pgqa_noise(model, layer, noise + layer * noise_floats));
    size_t image_floats = (size_t)batch * IMG * IMG;
    float *x = test_random_array(image_floats, -1.0f, 1.0f);
    cl_mem images = test_upload(x, image_floats);
    clgqa_view no_labels = {NULL, 0};
    float logits[6 * 10];
    TEST_OK(clgqa_model_forward(model, clgqa_view_at(images, 0), no_labels, batch,
                                &(clgqa_pass){0}));
    TEST_OK(clgqa_model_read_logits(model, logits));

    int64_t x_shape[4] = {batch, 1, IMG, IMG}, logit_shape[2] = {batch, 10};
    int64_t noise_shape[2] = {d->num_heads, (int64_t)d->tokens * d->head_dim};
    char noise_names[2][32];
    clgqa_safetensor_out tensors[4] = {{"input", CLGQA_DTYPE_F32, 4, x_shape, x},
                                       {"logits", CLGQA_DTYPE_F32, 2, logit_shape, logits}};
    size_t count = 2;
    for (int layer = 0; !strcmp(scheme, "pgqa") && layer < d->num_layers; layer++) {
        snprintf(noise_names[layer], sizeof noise_names[layer], "pgqa_noise.%d", layer);
        clgqa_safetensor_out t = {noise_names[layer], CLGQA_DTYPE_F32, 2, noise_shape,
                                  noise + layer * noise_floats};
        tensors[count++] = t;
    }
    snprintf(input_path, sizeof input_path, "%s/input.safetensors", out_dir);
    TEST_OK(clgqa_safetensors_write(input_path, tensors, count, NULL, 0));
    snprintf(cmd, sizeof cmd, PYTHON " tests/ref/check_checkpoint.py '%s' '%s' >&2", ckpt,
             input_path);
    int status = system(cmd);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the PyTorch reference disagrees with clgqa's %s checkpoint", scheme);
    clgqa_buffer_release(&images);
    free(x);
    free(noise);
    clgqa_model_destroy(model);
    test_remove_tree(out_dir);
}

START_TEST(checkpoints_load_into_the_pytorch_reference) {
    if (system(PYTHON " -c 'import torch' 2>/dev/null") != 0) {
        fprintf(stderr, "checkpoints_load_into_the_pytorch_reference: skipped, " PYTHON
                        " has no torch (Debian python3-torch)\n");
        return;
    }
    check_in_pytorch("kdgqa");
    check_in_pytorch("dgqa_ema");
    check_in_pytorch("pgqa");
}
END_TEST

/* ---- uptraining ---------------------------------------------------------------- */

#define TIMM_FIXTURE "tests/ref/fixtures/timm_vit.safetensors"
#define TIMM_EXPECTED "tests/ref/fixtures/timm_uptrain_expected.safetensors"

/* The fixture's model (tests/ref/make_timm_fixture.py): 9x9 RGB, patch 3,
 * C 12, depth 2, H 6, G 3, 5 classes. */
static void timm_config(clgqa_config *cfg, const char *scheme, int classes) {
    clgqa_config_defaults(cfg);
    char buf[64];
    set(cfg, "dataset=cifar10");
    set(cfg, "in_chans=3");
    set(cfg, "size=c");
    set(cfg, "img_size=9");
    set(cfg, "patch_size=3");
    set(cfg, "embed_dim=12");
    set(cfg, "num_layers=2");
    set(cfg, "num_heads=6");
    set(cfg, "num_kv_heads=3");
    snprintf(buf, sizeof buf, "num_classes=%d", classes);
    set(cfg, buf);
    snprintf(buf, sizeof buf, "att_scheme=%s", scheme);
    set(cfg, buf);
    TEST_OK(clgqa_config_finalize(cfg));
}

START_TEST(timm_checkpoint_converts_as_the_reference) {
    clgqa_runtime *rt = test_runtime();
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(TIMM_EXPECTED, &expected));
    const clgqa_tensor *input = clgqa_tensor_set_find(expected, "input");
    ck_assert_ptr_nonnull(input);
    int batch = (int)input->shape[0];
    float *x = malloc(input->numel * sizeof(float));
    TEST_OK(clgqa_tensor_set_read_f32(expected, "input", x, input->numel));
    cl_mem images = test_upload(x, input->numel);

    clgqa_config cfg;
    timm_config(&cfg, "gqa", 5);
    clgqa_model *model;
    TEST_OK(test_model_create(rt, &cfg, batch, &model));
    TEST_OK(clgqa_checkpoint_load_pretrained(model, TIMM_FIXTURE, CLGQA_RESAMPLE_ANTIALIAS, NULL));
    /* q, k, v: the reference conversion; float32 averages of 2 heads
     * against PyTorch's: 1e-6 relative. */
    for (int layer = 0; layer < 2; layer++) {
        for (const char *part = "qkv"; *part; part++) {
            for (int w = 0; w < 2; w++) {
                char name[64], ref_name[80];
                snprintf(name, sizeof name, "blocks.%d.attn.%c.%s", layer, *part, w ? "bias" : "weight");
                snprintf(ref_name, sizeof ref_name, "converted.%s", name);
                const clgqa_tensor_info *t = clgqa_model_find_tensor(model, name);
                ck_assert_ptr_nonnull(t);
                float *got = malloc(t->numel * sizeof(float)), *want = malloc(t->numel * sizeof(float));
                TEST_OK(clgqa_model_read_tensor(model, CLGQA_PARAMS, t, got));
                TEST_OK(clgqa_tensor_set_read_f32(expected, ref_name, want, t->numel));
                test_assert_close_f(name, got, want, t->numel, 1e-6, 1e-7);
                free(got);
                free(want);
            }
        }
    }
    /* Logits of the converted model in evaluation mode against PyTorch's:
     * whole model, 1e-4 relative (design brief). */
    float logits[64], want[64];
    const clgqa_tensor *ref = clgqa_tensor_set_find(expected, "expected.gqa.logits");
    ck_assert_ptr_nonnull(ref);
    ck_assert_uint_le(ref->numel, 64);
    clgqa_view no_labels = {NULL, 0};
    TEST_OK(clgqa_model_forward(model, clgqa_view_at(images, 0), no_labels, batch,
                                &(clgqa_pass){0}));
    TEST_OK(clgqa_model_read_logits(model, logits));
    TEST_OK(clgqa_tensor_set_read_f32(expected, "expected.gqa.logits", want, ref->numel));
    test_assert_close_f("logits", logits, want, ref->numel, 1e-4, 1e-5);
    clgqa_model_destroy(model);

    /* Another class count: the head keeps its fresh initialisation (said),
     * everything else converts. */
    timm_config(&cfg, "kdgqa", 7);
    clgqa_model *fresh, *uptrained;
    TEST_OK(test_model_create(rt, &cfg, batch, &fresh));
    TEST_OK(test_model_create(rt, &cfg, batch, &uptrained));
    char *said = NULL;
    size_t said_size = 0;
    FILE *log = open_memstream(&said, &said_size);
    TEST_OK(clgqa_checkpoint_load_pretrained(uptrained, TIMM_FIXTURE, CLGQA_RESAMPLE_ANTIALIAS, log));
    fclose(log);
    ck_assert_msg(strstr(said, "re-initialised") && strstr(said, "5 classes"), "%s", said);
    free(said);
    const clgqa_tensor_info *head = clgqa_model_find_tensor(fresh, "head.weight");
    const clgqa_tensor_info *norm = clgqa_model_find_tensor(fresh, "norm.weight");
    float *h0 = malloc(head->numel * sizeof(float)), *h1 = malloc(head->numel * sizeof(float));
    TEST_OK(clgqa_model_read_tensor(fresh, CLGQA_PARAMS, head, h0));
    TEST_OK(clgqa_model_read_tensor(uptrained, CLGQA_PARAMS, head, h1));
    ck_assert(memcmp(h0, h1, head->numel * sizeof(float)) == 0);
    float n1[12], n_ref[12];
    TEST_OK(clgqa_model_read_tensor(uptrained, CLGQA_PARAMS, norm, n1));
    clgqa_tensor_set *timm;
    TEST_OK(clgqa_tensor_file_open(TIMM_FIXTURE, &timm));
    TEST_OK(clgqa_tensor_set_read_f32(timm, "norm.weight", n_ref, 12));
    ck_assert(memcmp(n1, n_ref, sizeof n1) == 0);
    clgqa_tensor_set_close(timm);
    free(h0);
    free(h1);
    clgqa_model_destroy(fresh);
    clgqa_model_destroy(uptrained);

    /* Any other mismatch is refused, naming the tensor and both shapes. */
    clgqa_config_defaults(&cfg);
    timm_config(&cfg, "gqa", 5);
    set(&cfg, "in_chans=1");
    TEST_OK(clgqa_config_finalize(&cfg));
    TEST_OK(test_model_create(rt, &cfg, 1, &model));
    ck_assert_int_eq(clgqa_checkpoint_load_pretrained(model, TIMM_FIXTURE, CLGQA_RESAMPLE_ANTIALIAS, NULL), CLGQA_ERR_FORMAT);
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, "patch_embed.proj.weight") && strstr(msg, "[12, 3, 3, 3]") &&
                  strstr(msg, "[12, 1, 3, 3]"), "%s", msg);
    clgqa_model_destroy(model);
    clgqa_buffer_release(&images);
    free(x);
    clgqa_tensor_set_close(expected);
}
END_TEST

/* ---- the CLI --------------------------------------------------------------------- */

START_TEST(cli_refuses_bad_input_clearly) {
    char err[4096], args[2048], path[512];
    make_dataset();
    ck_assert_int_ne(test_run_clgqa("", "train /nonexistent/run.yaml", NULL, 0, err, sizeof err), 0);
    test_assert_one_line_naming(err, "/nonexistent/run.yaml");

    snprintf(path, sizeof path, "%s/bad-key.yaml", data_dir);
    FILE *f = fopen(path, "w");
    fputs("dataset: mnist\nbogus_key: 3\n", f);
    fclose(f);
    snprintf(args, sizeof args, "train '%s'", path);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);
    test_assert_one_line_naming(err, "bogus_key");

    snprintf(args, sizeof args, "train '%s' --set nonsense=1", path);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);

    snprintf(path, sizeof path, "%s/no-data.yaml", data_dir);
    f = fopen(path, "w");
    fprintf(f, "dataset: mnist\ndata_dir: %s/absent\nout_dir: %s/out\n", data_dir, data_dir);
    fclose(f);
    snprintf(args, sizeof args, "train '%s' --set epochs=1", path);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "absent") != NULL, "stderr does not name the folder: %s", err);

    snprintf(path, sizeof path, "%s/eval.yaml", data_dir);
    f = fopen(path, "w");
    fprintf(f, "dataset: mnist\ndata_dir: %s\nimg_size: 8\npatch_size: 4\nembed_dim: 16\n"
               "num_layers: 1\nnum_heads: 4\nnum_kv_heads: 2\nbatch_size: 8\n", data_dir);
    fclose(f);
    snprintf(args, sizeof args, "eval '%s' --checkpoint '%s/no-such.safetensors'", path, data_dir);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);
    test_assert_one_line_naming(err, "no-such.safetensors");
}
END_TEST

int main(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, schedule_follows_its_formula);
    tcase_add_test(tc, run_writes_csv_logs_config_and_model);
    tcase_add_test(tc, checkpoint_round_trip_gives_identical_logits);
    tcase_add_test(tc, bad_checkpoints_are_refused_clearly);
    tcase_add_test(tc, resume_matches_uninterrupted_run_dgqa);
    tcase_add_test(tc, resume_matches_uninterrupted_run_pgqa);
    tcase_add_test(tc, resume_refuses_another_seed);
    tcase_add_test(tc, resume_mid_epoch_matches_uninterrupted_run);
    tcase_add_test(tc, logs_equal_the_rows_of_blocking_reads);
    tcase_add_test(tc, training_steps_never_let_the_queue_run_dry);
    tcase_add_test(tc, predictions_equal_blocking_reads_of_the_logits);
    tcase_add_test(tc, best_checkpoint_is_the_lowest_test_loss_epoch);
    tcase_add_test(tc, non_finite_loss_stops_at_its_step);
    tcase_add_test(tc, gamma_and_beta_draws_have_their_moments);
    tcase_add_test(tc, mixup_draws_follow_timm);
    tcase_add_test(tc, recipe_resumes_bit_for_bit);
    tcase_add_test(tc, ema_is_evaluated_saved_and_followed_by_best);
    tcase_add_test(tc, gradient_accumulation_equals_the_larger_batch);
    tcase_add_test(tc, sigterm_stops_mid_epoch_and_resumes_exactly);
    tcase_add_test(tc, sigint_stops_mid_epoch_and_resumes_exactly);
    tcase_add_test(tc, a_shell_sees_death_by_the_signal);
    tcase_add_test(tc, sigusr1_checkpoints_and_goes_on);
    tcase_add_test(tc, kill_9_loses_at_most_checkpoint_steps);
    tcase_add_test(tc, second_signal_stops_at_once);
    tcase_add_test(tc, reference_keys_only_config_trains_with_the_reference_recipe);
    tcase_add_test(tc, config_flag_and_key_options_set_the_run);
    tcase_add_test(tc, checkpoints_load_into_the_pytorch_reference);
    tcase_add_test(tc, timm_checkpoint_converts_as_the_reference);
    tcase_add_test(tc, cli_refuses_bad_input_clearly);
    suite_add_tcase(s, tc);
    int status = test_run_suite(s);
    if (data_dir[0])
        test_remove_tree(data_dir);
    return status;
}
