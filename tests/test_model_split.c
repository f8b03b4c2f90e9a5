/* Large models on small allocation limits: with CLGQA_MAX_ALLOC_BYTES
 * capping one allocation, the flat parameter buffers split into chunks of
 * whole tensors and the activation arena into several buffers. The split
 * model must compute exactly what the unsplit one does (the same kernels on
 * the same numbers, only in other buffers): logits and, after a training
 * step, every parameter and AdamW moment bit for bit; the gradient norm for
 * clipping is summed per chunk, so clipping agrees to rounding. Checkpoints
 * written by one load into the other. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clgqa/checkpoint.h"
#include "clgqa/model.h"
#include "model_internal.h"
#include "support/test_util.h"

/* 64 KiB: above the largest tensor (fc1's weight, 16 KiB) and the largest
 * activation (what attention saves, ~55 KiB), below a block's activations
 * (~140 KiB) and the ~150 KiB of parameters. */
#define SMALL_LIMIT "65536"
#define BATCH 4

static clgqa_config small_config(clgqa_scheme scheme) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    TEST_OK(clgqa_config_set(&cfg, "size=c"));
    cfg.img_size = 16;
    cfg.patch_size = 4;
    cfg.in_chans = 3;
    cfg.embed_dim = 32;
    cfg.num_layers = 3;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_classes = 10;
    cfg.att_scheme = scheme;
    cfg.seed = 11;
    TEST_OK(clgqa_config_finalize(&cfg));
    return cfg;
}

typedef struct run {
    clgqa_runtime *rt;
    clgqa_model *model;
    cl_mem images, labels;
} run;

/* A runtime (capped to SMALL_LIMIT when `split`), its model and one batch. */
static run open_run(int split, const clgqa_config *cfg, const char *device_class,
                    const float *images, const int32_t *labels, size_t pixels) {
    run r;
    if (split)
        setenv("CLGQA_MAX_ALLOC_BYTES", SMALL_LIMIT, 1);
    TEST_OK(test_runtime_create(&r.rt));
    unsetenv("CLGQA_MAX_ALLOC_BYTES");
    TEST_OK(test_choose_paths(r.rt, device_class, NULL, NULL));
    TEST_OK(test_model_create(r.rt, cfg, BATCH, &r.model));
    TEST_OK(clgqa_buffer_create(r.rt, pixels * sizeof(float), &r.images));
    TEST_OK(clgqa_buffer_create(r.rt, BATCH * sizeof(int32_t), &r.labels));
    TEST_OK(clgqa_buffer_write(r.rt, r.images, 0, pixels * sizeof(float), images));
    TEST_OK(clgqa_buffer_write(r.rt, r.labels, 0, BATCH * sizeof(int32_t), labels));
    return r;
}

static void close_run(run *r) {
    clgqa_buffer_release(&r->images);
    clgqa_buffer_release(&r->labels);
    clgqa_model_destroy(r->model);
    clgqa_runtime_destroy(r->rt);
}

static void train_step(run *r, long step, float clip) {
    clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, clip, 0};
    TEST_OK(clgqa_model_forward(r->model, clgqa_view_at(r->images, 0),
                                clgqa_view_at(r->labels, 0), BATCH, &(clgqa_pass){1, step, step}));
    TEST_OK(clgqa_model_backward(r->model));
    TEST_OK(clgqa_model_step(r->model, &hp, step + 1));
}

/* Buffer `which` of both models, bit for bit (tolerance 0), or within
 * `tolerance` absolute. */
static void assert_same_buffer(run *a, run *b, clgqa_model_buffer which, const char *what,
                               float tolerance) {
    size_t n = clgqa_model_param_count(a->model);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    TEST_OK(clgqa_model_read_buffer(a->model, which, x));
    TEST_OK(clgqa_model_read_buffer(b->model, which, y));
    for (size_t i = 0; i < n; i++) {
        float diff = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i];
        ck_assert_msg(tolerance ? diff <= tolerance : memcmp(&x[i], &y[i], sizeof x[i]) == 0,
                      "%s[%zu]: unsplit %.9g, split %.9g", what, i, (double)x[i], (double)y[i]);
    }
    free(x);
    free(y);
}

static void split_matches_unsplit(clgqa_scheme scheme, const char *device_class) {
    clgqa_config cfg = small_config(scheme);
    size_t pixels = (size_t)BATCH * cfg.in_chans * cfg.img_size * cfg.img_size;
    float *images = test_random_array(pixels, -1.5f, 1.5f);
    int32_t labels[BATCH] = {3, 7, 0, 9};
    run whole = open_run(0, &cfg, device_class, images, labels, pixels);
    run split = open_run(1, &cfg, device_class, images, labels, pixels);
    free(images);
    ck_assert_int_eq(clgqa_model_chunk_count(whole.model), 1);
    ck_assert_int_ge(clgqa_model_chunk_count(split.model), 3);
    ck_assert_int_ge(split.model->arena_count, 3);
    /* Every chunk within the limit, tensors whole, each block's q, k, v
     * weights (one GEMM operand) and biases in one chunk. */
    for (int c = 0; c < clgqa_model_chunk_count(split.model); c++) {
        size_t floats;
        clgqa_model_chunk(split.model, CLGQA_PARAMS, c, NULL, &floats);
        ck_assert_uint_le(floats * sizeof(float), (size_t)atoi(SMALL_LIMIT));
    }
    for (int l = 0; l < cfg.num_layers; l++)
        for (int q = MODEL_L_Q_W; q <= MODEL_L_Q_B; q += MODEL_L_Q_B - MODEL_L_Q_W) {
            int first = model_layer_tensor(l, q);
            ck_assert_int_eq(split.model->tensor_chunk[first], split.model->tensor_chunk[first + 1]);
            ck_assert_int_eq(split.model->tensor_chunk[first], split.model->tensor_chunk[first + 2]);
        }
    assert_same_buffer(&whole, &split, CLGQA_PARAMS, "initial params", 0);

    /* One step without clipping: bit for bit. */
    train_step(&whole, 0, 0.0f);
    train_step(&split, 0, 0.0f);
    size_t logits = (size_t)BATCH * cfg.num_classes;
    float x[BATCH * 10], y[BATCH * 10];
    TEST_OK(clgqa_model_read_logits(whole.model, x));
    TEST_OK(clgqa_model_read_logits(split.model, y));
    ck_assert_msg(memcmp(x, y, logits * sizeof *x) == 0, "logits differ");
    assert_same_buffer(&whole, &split, CLGQA_GRADS, "grads", 0);
    assert_same_buffer(&whole, &split, CLGQA_PARAMS, "params", 0);
    assert_same_buffer(&whole, &split, CLGQA_ADAM_M, "adam m", 0);
    assert_same_buffer(&whole, &split, CLGQA_ADAM_V, "adam v", 0);

    /* A clipped step: the norm is summed in another order, so the scale
     * differs by rounding (~1e-7 relative); Adam's update is nearly
     * scale-invariant, so parameters (|p| < 2, lr 1e-3) agree to 1e-7. */
    train_step(&whole, 1, 0.05f);
    train_step(&split, 1, 0.05f);
    assert_same_buffer(&whole, &split, CLGQA_PARAMS, "clipped params", 1e-7f);

    /* A training checkpoint of the split model loads into the unsplit one. */
    char path[] = "/tmp/clgqa-split-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    clgqa_train_state state;
    memset(&state, 0, sizeof state);
    state.epochs_done = 1;
    state.global_step = 2;
    TEST_OK(clgqa_checkpoint_save_training(split.model, &state, path));
    TEST_OK(clgqa_checkpoint_load_training(whole.model, path, &state));
    unlink(path);
    ck_assert_int_eq(state.global_step, 2);
    assert_same_buffer(&whole, &split, CLGQA_PARAMS, "loaded params", 0);
    assert_same_buffer(&whole, &split, CLGQA_ADAM_V, "loaded adam v", 0);
    close_run(&whole);
    close_run(&split);
}

static const clgqa_scheme schemes[] = {CLGQA_KDGQA, CLGQA_PGQA};

START_TEST(split_model_matches_unsplit_cpu_paths) { split_matches_unsplit(schemes[_i], "cpu"); }
END_TEST

START_TEST(split_model_matches_unsplit_gpu_paths) { split_matches_unsplit(schemes[_i], "gpu"); }
END_TEST

START_TEST(limits_below_a_tensor_or_malformed_are_refused) {
    clgqa_config cfg = small_config(CLGQA_GQA);
    clgqa_runtime *rt;
    clgqa_model *m;
    /* 8 KiB: fc1's 16 KiB weight cannot fit. */
    setenv("CLGQA_MAX_ALLOC_BYTES", "8192", 1);
    TEST_OK(test_runtime_create(&rt));
    ck_assert_int_eq(test_model_create(rt, &cfg, BATCH, &m), CLGQA_ERR_OUT_OF_MEMORY);
    ck_assert_msg(strstr(clgqa_error_message(), "mlp.fc1.weight") &&
                      strstr(clgqa_error_message(), "largest allocation"),
                  "%s", clgqa_error_message());
    clgqa_runtime_destroy(rt);
    /* Parameters fit, a batch of 64's fc1 activation (544 KiB) does not. */
    setenv("CLGQA_MAX_ALLOC_BYTES", SMALL_LIMIT, 1);
    TEST_OK(test_runtime_create(&rt));
    ck_assert_int_eq(test_model_create(rt, &cfg, 64, &m), CLGQA_ERR_OUT_OF_MEMORY);
    ck_assert_msg(strstr(clgqa_error_message(), "activation"), "%s", clgqa_error_message());
    clgqa_runtime_destroy(rt);
    setenv("CLGQA_MAX_ALLOC_BYTES", "12kb", 1);
    ck_assert_int_eq(test_runtime_create(&rt), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "CLGQA_MAX_ALLOC_BYTES=12kb"), "%s",
                  clgqa_error_message());
    unsetenv("CLGQA_MAX_ALLOC_BYTES");
}
END_TEST

int main(void) {
    Suite *s = suite_create("model_split");
    TCase *tc = tcase_create("model_split");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, split_model_matches_unsplit_cpu_paths, 0, 2);
    tcase_add_loop_test(tc, split_model_matches_unsplit_gpu_paths, 0, 2);
    tcase_add_test(tc, limits_below_a_tensor_or_malformed_are_refused);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
