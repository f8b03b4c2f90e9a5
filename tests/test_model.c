/* The whole ViT (model.c, model_pass.c): PyTorch parity on the
 * committed fixtures (tests/ref/fixtures), finite differences of the loss for
 * every scheme, an overfit run, and the API's checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "clgqa/model.h"
#include "safetensors.h"
#include "model_internal.h" /* white box: the PGQA zero-mean check reads the attention output */
#include "support/test_util.h"

/* A tiny model: 8x8 images in 4x4 patches (P = 5 tokens), C 8, 4 query heads
 * of dim 2, 2 key/value heads, 2 blocks, 3 classes. */
static clgqa_config tiny_config(clgqa_scheme scheme) {
    clgqa_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.att_scheme = scheme;
    cfg.img_size = 8;
    cfg.patch_size = 4;
    cfg.in_chans = 2;
    cfg.embed_dim = 8;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_classes = 3;
    cfg.window_size = 2;
    cfg.seed = 77;
    return cfg;
}

static const clgqa_scheme all_schemes[] = {CLGQA_MHSA,      CLGQA_GQA,      CLGQA_KDGQA,
                                           CLGQA_DGQA_DIFF, CLGQA_DGQA_EMA, CLGQA_PGQA};
#define N_SCHEMES (sizeof all_schemes / sizeof *all_schemes)

static int is_dgqa(clgqa_scheme s) { return s == CLGQA_DGQA_DIFF || s == CLGQA_DGQA_EMA; }

static float read_param(clgqa_model *m, size_t index) {
    float value;
    TEST_OK(clgqa_buffer_read(test_runtime(), clgqa_model_buffer_view(m, CLGQA_PARAMS).mem,
                              index * sizeof value, sizeof value, &value));
    return value;
}

static void write_param(clgqa_model *m, size_t index, float value) {
    TEST_OK(clgqa_buffer_write(test_runtime(), clgqa_model_buffer_view(m, CLGQA_PARAMS).mem,
                               index * sizeof value, sizeof value, &value));
}

/* Fresh random parameters, scaled like the fixtures' (never zeros): Linear
 * and conv weights uniform with std ~ fan_in^-1/2, LayerNorm gains 1 +- 0.3,
 * biases +- 0.3, cls_token and pos_embed +- 0.8. */
static void randomise_parameters(clgqa_model *m) {
    size_t n = clgqa_model_param_count(m);
    float *p = test_random_array(n, -1.0f, 1.0f);
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        float *x = p + t->offset;
        int is_norm = strstr(t->name, "norm") != NULL;
        int is_bias = strstr(t->name, ".bias") != NULL;
        for (size_t k = 0; k < t->numel; k++) {
            if (is_norm && !is_bias)
                x[k] = 1.0f + 0.3f * x[k];
            else if (is_bias)
                x[k] *= 0.3f;
            else if (t->ndim >= 2 && strcmp(t->name, "pos_embed") && strcmp(t->name, "cls_token"))
                x[k] *= sqrtf(3.0f / (float)(t->numel / (size_t)t->shape[0]));
            else
                x[k] *= 0.8f;
        }
    }
    TEST_OK(clgqa_model_write_buffer(m, CLGQA_PARAMS, p));
    free(p);
}

/* Device images and labels of a batch. */
typedef struct batch_data {
    cl_mem images, labels;
    int batch;
} batch_data;

static batch_data random_batch(const clgqa_model *m, int batch) {
    const clgqa_model_dims *d = clgqa_model_get_dims(m);
    size_t n = (size_t)batch * d->in_chans * d->img_size * d->img_size;
    float *images = test_random_array(n, -1.5f, 1.5f);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    for (int i = 0; i < batch; i++)
        labels[i] = (i * 2 + 1) % d->num_classes;
    batch_data b = {test_upload(images, n), test_upload_int(labels, (size_t)batch), batch};
    free(images);
    free(labels);
    return b;
}

static void release_batch(batch_data *b) {
    clgqa_buffer_release(&b->images);
    clgqa_buffer_release(&b->labels);
}

static float forward_loss(clgqa_model *m, const batch_data *b, int training, long step_in_epoch,
                          long global_step) {
    TEST_OK(clgqa_model_forward(m, clgqa_view_at(b->images, 0), clgqa_view_at(b->labels, 0),
                                b->batch, &(clgqa_pass){training, step_in_epoch, global_step}));
    clgqa_metrics metrics;
    TEST_OK(clgqa_model_read_metrics(m, &metrics));
    return metrics.last_loss;
}

/* ---------------------------------------------------------------------------
 * PyTorch parity
 * ------------------------------------------------------------------------- */

typedef struct fixture {
    clgqa_tensor_set *file;
    clgqa_config cfg;
    int batch;
    clgqa_adamw hp;
} fixture;

static long metadata_long(const clgqa_tensor_set *f, const char *key) {
    const char *v = clgqa_tensor_set_metadata(f, key);
    ck_assert_msg(v != NULL, "fixture metadata lacks %s", key);
    return strtol(v, NULL, 10);
}

static float metadata_float(const clgqa_tensor_set *f, const char *key) {
    const char *v = clgqa_tensor_set_metadata(f, key);
    ck_assert_msg(v != NULL, "fixture metadata lacks %s", key);
    return strtof(v, NULL);
}

static fixture open_fixture(const char *stem) {
    fixture fx;
    char path[256];
    snprintf(path, sizeof path, "tests/ref/fixtures/%s.safetensors", stem);
    TEST_OK(clgqa_tensor_file_open(path, &fx.file));
    memset(&fx.cfg, 0, sizeof fx.cfg);
    const char *scheme = clgqa_tensor_set_metadata(fx.file, "att_scheme");
    ck_assert_msg(scheme != NULL, "%s: no att_scheme", path);
    TEST_OK(clgqa_scheme_parse(scheme, &fx.cfg.att_scheme));
    fx.cfg.img_size = (int)metadata_long(fx.file, "img_size");
    fx.cfg.patch_size = (int)metadata_long(fx.file, "patch_size");
    fx.cfg.in_chans = (int)metadata_long(fx.file, "in_chans");
    fx.cfg.embed_dim = (int)metadata_long(fx.file, "embed_dim");
    fx.cfg.num_layers = (int)metadata_long(fx.file, "depth");
    fx.cfg.num_heads = (int)metadata_long(fx.file, "heads");
    fx.cfg.num_kv_heads = (int)metadata_long(fx.file, "kv_heads");
    fx.cfg.num_classes = (int)metadata_long(fx.file, "num_classes");
    fx.cfg.window_size = (int)metadata_long(fx.file, "window_size");
    fx.cfg.seed = 1;
    fx.batch = (int)metadata_long(fx.file, "batch_size");
    fx.hp.lr = metadata_float(fx.file, "lr");
    fx.hp.beta1 = metadata_float(fx.file, "beta1");
    fx.hp.beta2 = metadata_float(fx.file, "beta2");
    fx.hp.eps = metadata_float(fx.file, "eps");
    fx.hp.weight_decay = metadata_float(fx.file, "weight_decay");
    return fx;
}

static float *fixture_floats(const fixture *fx, const char *name, size_t numel) {
    float *x = malloc((numel ? numel : 1) * sizeof *x);
    TEST_OK(clgqa_tensor_set_read_f32(fx->file, name, x, numel));
    return x;
}

/* The fixture's batch (its images and labels) on the device. */
static batch_data fixture_batch(const fixture *fx, const clgqa_model_dims *d) {
    size_t n_images = (size_t)fx->batch * d->in_chans * d->img_size * d->img_size;
    float *images = fixture_floats(fx, "input", n_images);
    int32_t labels[16];
    ck_assert_int_le(fx->batch, 16);
    TEST_OK(clgqa_tensor_set_read_i32(fx->file, "labels", labels, (size_t)fx->batch));
    batch_data data = {test_upload(images, n_images), test_upload_int(labels, (size_t)fx->batch),
                       fx->batch};
    free(images);
    return data;
}

/* Load the initial grouping state (DGQA cache and split) of the fixture. */
static void load_grouping(clgqa_model *m, const fixture *fx) {
    if (!is_dgqa(fx->cfg.att_scheme))
        return;
    int G = clgqa_model_get_dims(m)->kv_heads;
    for (int l = 0; l < fx->cfg.num_layers; l++) {
        char name[64];
        float cache[64];
        int32_t split[64];
        snprintf(name, sizeof name, "blocks.%d.attn.cache", l);
        TEST_OK(clgqa_tensor_set_read_f32(fx->file, name, cache, (size_t)G));
        snprintf(name, sizeof name, "blocks.%d.attn.split", l);
        TEST_OK(clgqa_tensor_set_read_i32(fx->file, name, split, (size_t)G));
        TEST_OK(clgqa_model_write_grouping(m, l, cache, split));
    }
}

/* Tolerances against PyTorch. Both sides are float32 with different
 * summation orders and libm's; through two blocks forward and back the
 * difference stays ~1e-6 relative, so 1e-4 relative (with a 1e-5 floor of the
 * tensor's scale, see check_scaled) has room and still catches any wrong
 * term. The key bias gradient is zero in exact arithmetic (a constant shift
 * of each score row): compared absolutely against 1e-6, float noise of the
 * O(0.1) gradients around it. */
#define PARITY_REL 1e-4
#define PARITY_FLOOR 1e-5
#define K_BIAS_ABS 1e-6

static int is_key_bias(const char *name) {
    size_t n = strlen(name);
    return n >= 11 && !strcmp(name + n - 11, "attn.k.bias");
}

/* The fixture's weights by state_dict name (shapes checked), its initial
 * grouping state and PGQA noise, into m. */
static void load_fixture_model(clgqa_model *m, const fixture *fx_in) {
    fixture fx = *fx_in;
    const clgqa_model_dims *d = clgqa_model_get_dims(m);
    int L = d->num_layers;
    /* Weights by state_dict name, shapes checked. */
    ck_assert_int_eq(clgqa_model_tensor_count(m), 4 + 16 * L + 4);
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        const clgqa_tensor *st;
        TEST_OK(clgqa_tensor_set_get(fx.file, t->name, &st));
        ck_assert_msg(st->ndim == t->ndim, "%s: %d dims, fixture %d", t->name, t->ndim, st->ndim);
        for (int k = 0; k < t->ndim; k++)
            ck_assert_msg(st->shape[k] == t->shape[k], "%s: dim %d is %d, fixture %lld", t->name, k,
                          t->shape[k], (long long)st->shape[k]);
        float *w = fixture_floats(&fx, t->name, t->numel);
        TEST_OK(clgqa_model_write_tensor(m, CLGQA_PARAMS, t, w));
        free(w);
    }
    load_grouping(m, &fx);
    if (fx.cfg.att_scheme == CLGQA_PGQA)
        for (int l = 0; l < L; l++) {
            char name[64];
            snprintf(name, sizeof name, "pgqa_noise.%d", l);
            float *u = fixture_floats(&fx, name, (size_t)d->num_heads * d->tokens * d->head_dim);
            TEST_OK(clgqa_model_set_pgqa_noise(m, l, u));
            free(u);
        }
}

static void check_fixture(const char *stem) {
    clgqa_runtime *rt = test_runtime();
    fixture fx = open_fixture(stem);
    clgqa_model *m;
    /* max_batch above the batch: the arena's views must not assume B = max. */
    TEST_OK(test_model_create(rt, &fx.cfg, fx.batch + 2, &m));
    const clgqa_model_dims *d = clgqa_model_get_dims(m);
    int L = d->num_layers, G = d->kv_heads, B = fx.batch, classes = d->num_classes;
    load_fixture_model(m, &fx);
    batch_data data = fixture_batch(&fx, d);

    /* Evaluation pass of the initial model. */
    float *logits = malloc((size_t)B * classes * sizeof *logits);
    forward_loss(m, &data, 0, 0, 0);
    TEST_OK(clgqa_model_read_logits(m, logits));
    float *want = fixture_floats(&fx, "expected.eval_logits", (size_t)B * classes);
    test_assert_close_scaled("eval logits", logits, want, (size_t)B * classes, PARITY_REL, PARITY_FLOOR);
    free(want);
    if (is_dgqa(fx.cfg.att_scheme)) {
        /* evaluation: cache = m, the batch-summed key norms (equal to the
         * training pass's, which starts from the same state) */
        for (int l = 0; l < L; l++) {
            char name[64];
            float cache[64];
            snprintf(name, sizeof name, "expected.key_norms.%d", l);
            want = fixture_floats(&fx, name, (size_t)G);
            TEST_OK(clgqa_model_read_grouping(m, l, cache, NULL));
            test_assert_close_scaled("cache after evaluation", cache, want, (size_t)G, PARITY_REL, 0.0);
            free(want);
        }
        load_grouping(m, &fx); /* back to the initial state for the training step */
    }

    /* One training step at step 0 of an epoch. */
    float loss = forward_loss(m, &data, 1, 0, 0);
    TEST_OK(clgqa_model_read_logits(m, logits));
    want = fixture_floats(&fx, "expected.logits", (size_t)B * classes);
    test_assert_close_scaled("logits", logits, want, (size_t)B * classes, PARITY_REL, PARITY_FLOOR);
    free(want);
    want = fixture_floats(&fx, "expected.loss", 1);
    test_assert_close_scaled("loss", &loss, want, 1, PARITY_REL, 0.0);
    free(want);
    if (fx.cfg.att_scheme == CLGQA_KDGQA || is_dgqa(fx.cfg.att_scheme))
        for (int l = 0; l < L; l++) {
            char name[64];
            int32_t split[64], want_split[64];
            float cache[64];
            snprintf(name, sizeof name, "expected.split.%d", l);
            TEST_OK(clgqa_tensor_set_read_i32(fx.file, name, want_split, (size_t)G));
            TEST_OK(clgqa_model_read_grouping(m, l, cache, split));
            for (int j = 0; j < G; j++)
                ck_assert_msg(split[j] == want_split[j], "%s layer %d: split[%d] = %d, want %d",
                              stem, l, j, (int)split[j], (int)want_split[j]);
            if (is_dgqa(fx.cfg.att_scheme)) {
                snprintf(name, sizeof name, "expected.cache.%d", l);
                want = fixture_floats(&fx, name, (size_t)G);
                test_assert_close_scaled("cache", cache, want, (size_t)G, PARITY_REL, 0.0);
                free(want);
            }
        }

    TEST_OK(clgqa_model_backward(m));
    float *grads = malloc(clgqa_model_param_count(m) * sizeof *grads);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, grads));
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        char name[96];
        snprintf(name, sizeof name, "grad.%s", t->name);
        want = fixture_floats(&fx, name, t->numel);
        if (is_key_bias(t->name))
            test_assert_close_f(name, grads + t->offset, want, t->numel, 0.0, K_BIAS_ABS);
        else
            test_assert_close_scaled(name, grads + t->offset, want, t->numel, PARITY_REL, PARITY_FLOOR);
        free(want);
    }

    /* AdamW step 1: update = lr * g / (|g| + eps) ~ lr * sign(g). Where the
     * gradient's sign is not determined within its tolerance (the key bias,
     * whose gradient is rounding noise), the update may differ by up to
     * 2 lr; elsewhere the weights match to float rounding of O(1) values. */
    fx.hp.clip_grad_norm = 0.0f;
    TEST_OK(clgqa_model_step(m, &fx.hp, 1));
    float *params = malloc(clgqa_model_param_count(m) * sizeof *params);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_PARAMS, params));
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        char name[96];
        snprintf(name, sizeof name, "grad.%s", t->name);
        float *want_grad = fixture_floats(&fx, name, t->numel);
        double grad_tol = is_key_bias(t->name) ? K_BIAS_ABS
                                               : PARITY_FLOOR * test_max_abs(want_grad, t->numel);
        snprintf(name, sizeof name, "step1.%s", t->name);
        want = fixture_floats(&fx, name, t->numel);
        for (size_t k = 0; k < t->numel; k++) {
            int sign_uncertain = fabs(want_grad[k]) <= grad_tol + PARITY_REL * fabs(want_grad[k]);
            double tol = sign_uncertain ? 2.0 * fx.hp.lr + 1e-6 : 1e-6 + 1e-5 * fabs(want[k]);
            double err = fabs((double)params[t->offset + k] - want[k]);
            ck_assert_msg(err <= tol, "%s[%zu]: got %.9g, want %.9g (error %.3g, tolerance %.3g)",
                          name, k, (double)params[t->offset + k], (double)want[k], err, tol);
        }
        free(want);
        free(want_grad);
    }

    if (is_dgqa(fx.cfg.att_scheme)) {
        /* Step 1 of the epoch is not a window step (W > 1): split and cache
         * stay as step 0 left them. */
        ck_assert_int_gt(fx.cfg.window_size, 1);
        forward_loss(m, &data, 1, 1, 1);
        for (int l = 0; l < L; l++) {
            char name[64];
            int32_t split[64], want_split[64];
            float cache[64];
            snprintf(name, sizeof name, "expected.split.%d", l);
            TEST_OK(clgqa_tensor_set_read_i32(fx.file, name, want_split, (size_t)G));
            snprintf(name, sizeof name, "expected.cache.%d", l);
            want = fixture_floats(&fx, name, (size_t)G);
            TEST_OK(clgqa_model_read_grouping(m, l, cache, split));
            for (int j = 0; j < G; j++)
                ck_assert_int_eq(split[j], want_split[j]);
            test_assert_close_scaled("cache off the window", cache, want, (size_t)G, PARITY_REL, 0.0);
            free(want);
        }
    }

    free(grads);
    free(params);
    free(logits);
    release_batch(&data);
    clgqa_model_destroy(m);
    clgqa_tensor_set_close(fx.file);
}

/* Half storage of the blocks' saved activations (ln1, qkv, heads_out,
 * attention's probabilities, ln2, fc1, gelu; precision 16-mixed's model,
 * attention's kernels as the device picks them) against the fp32 model on each
 * PyTorch fixture: the same weights, batch and grouping state. Half keeps
 * 11 significant bits (a relative rounding of at most 2^-11 = 4.9e-4 per
 * stored value); each block rounds six activations and attention's
 * probabilities and the fixtures have two blocks, so the logits move by a
 * few 1e-3 of their scale: within 1e-2
 * of the fp32 logits relative and of their largest magnitude. They must
 * also differ somewhere (the half path ran). The gradients of the training
 * pass likewise (half_grad_floor), and the weights after one AdamW step
 * against PyTorch's. The arena must shrink by at
 * least the halved activations less the float scratch the GEMMs read. No
 * device extension is needed (vload_half/vstore_half are core OpenCL C),
 * so this runs on every device. */
/* The half model's gradient tolerance for tensor t, rel |g| + the floor
 * returned, from the fp32 model's gradients g32 (all of them). Each block
 * rounds six activations and attention's probabilities, and the backward
 * reads them rounded: a gradient passes through some ten to twenty
 * roundings of u = 2^-11 each, a few 1e-3 of its own size and of its
 * tensor's largest (measured: at most 2.0e-3, median 4.8e-4 on PoCL):
 * 1e-2 of both. The key bias's gradient is zero but for rounding
 * (check_fixture); in half storage the rows kernels' saved probabilities
 * sum to 1 within P u (5e-3 at the fixtures' P = 10), so sum_t dS_t, and
 * with it this gradient, is off zero by about that share of the scores'
 * gradient, which the query bias's gradient carries: 5e-2 of its largest. */
static double half_grad_floor(const clgqa_model *m, const float *g32, const clgqa_tensor_info *t,
                              double *rel) {
    if (!is_key_bias(t->name)) {
        *rel = 1e-2;
        return 1e-2 * test_max_abs(g32 + t->offset, t->numel);
    }
    char query_bias[96];
    snprintf(query_bias, sizeof query_bias, "%.*sq.bias",
             (int)(strlen(t->name) - strlen("k.bias")), t->name);
    const clgqa_tensor_info *q = clgqa_model_find_tensor(m, query_bias);
    ck_assert_msg(q != NULL, "no tensor %s", query_bias);
    *rel = 0.0;
    return 5e-2 * test_max_abs(g32 + q->offset, q->numel);
}

static const char *const half_stems[] = {"model_mhsa",      "model_gqa",       "model_kdgqa",
                                         "model_dgqa_diff", "model_dgqa_ema",  "model_pgqa"};
START_TEST(half_storage_matches_fp32_and_halves_saved_activations) {
    const char *stem = half_stems[_i];
    clgqa_runtime *rt = test_runtime();
    fixture fx = open_fixture(stem);
    clgqa_model_desc desc;
    clgqa_config_model_desc(&fx.cfg, &desc);
    clgqa_model *m[2]; /* fp32, half */
    TEST_OK(clgqa_model_create_stored(rt, &desc, fx.batch + 2, CLGQA_STORAGE_FLOAT, &m[0]));
    TEST_OK(clgqa_model_create_stored(rt, &desc, fx.batch + 2, CLGQA_STORAGE_HALF, &m[1]));
    const clgqa_model_dims *d = clgqa_model_get_dims(m[0]);
    int B = fx.batch, classes = d->num_classes;
    batch_data data = fixture_batch(&fx, d);
    size_t n_logits = (size_t)B * classes, n_params = clgqa_model_param_count(m[0]);
    float *logits[2], *grads[2];
    for (int i = 0; i < 2; i++) {
        load_fixture_model(m[i], &fx);
        logits[i] = malloc(n_logits * sizeof *logits[i]);
        grads[i] = malloc(n_params * sizeof *grads[i]);
        ck_assert(logits[i] && grads[i]);
        forward_loss(m[i], &data, 0, 0, 0);
        TEST_OK(clgqa_model_read_logits(m[i], logits[i]));
        load_grouping(m[i], &fx); /* the training pass from the initial state */
        forward_loss(m[i], &data, 1, 0, 0);
        TEST_OK(clgqa_model_backward(m[i]));
        TEST_OK(clgqa_model_read_buffer(m[i], CLGQA_GRADS, grads[i]));
    }
    double worst = 0, scale = test_max_abs(logits[0], n_logits);
    for (size_t k = 0; k < n_logits; k++)
        worst = fmax(worst, fabs((double)logits[1][k] - logits[0][k]));
    ck_assert_msg(worst > 0, "%s: half-storage logits equal fp32's bit for bit", stem);
    test_assert_close_scaled("half-storage logits", logits[1], logits[0], n_logits, 1e-2, 1e-2);
    for (int i = 0; i < clgqa_model_tensor_count(m[0]); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m[0], i);
        char name[96];
        snprintf(name, sizeof name, "half-storage grad.%s", t->name);
        double rel, floor = half_grad_floor(m[0], grads[0], t, &rel);
        test_assert_close_f(name, grads[1] + t->offset, grads[0] + t->offset, t->numel, rel,
                            floor);
    }

    /* One AdamW step of the half model against PyTorch's fp32 step (the
     * fixture's step1): update = lr g / (|g| + eps) ~ lr sign(g), as in
     * check_fixture, with the half gradient's tolerance tol (half_grad_floor).
     * Where |g| <= 2 tol its sign may differ from fp32's: up to 2 lr.
     * Elsewhere the signs agree and the updates differ by lr eps |dg| /
     * (|g1| |g2|) <= lr eps / tol (|g2| >= |g1| / 2 there), on top of
     * check_fixture's float rounding (1e-6 + 1e-5 |w|). */
    fx.hp.clip_grad_norm = 0.0f;
    TEST_OK(clgqa_model_step(m[1], &fx.hp, 1));
    float *params = malloc(n_params * sizeof *params);
    TEST_OK(clgqa_model_read_buffer(m[1], CLGQA_PARAMS, params));
    size_t uncertain = 0;
    for (int i = 0; i < clgqa_model_tensor_count(m[1]); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m[1], i);
        char name[96];
        snprintf(name, sizeof name, "step1.%s", t->name);
        float *want = fixture_floats(&fx, name, t->numel);
        const float *g = grads[0] + t->offset;
        double rel, floor = half_grad_floor(m[0], grads[0], t, &rel);
        for (size_t k = 0; k < t->numel; k++) {
            double tol_g = rel * fabs(g[k]) + floor;
            int sign_uncertain = fabs(g[k]) <= 2.0 * tol_g;
            uncertain += sign_uncertain;
            double tol = sign_uncertain ? 2.0 * fx.hp.lr + 1e-6
                                        : 1e-6 + 1e-5 * fabs(want[k]) + fx.hp.lr * fx.hp.eps / tol_g;
            double err = fabs((double)params[t->offset + k] - want[k]);
            ck_assert_msg(err <= tol, "half %s[%zu]: got %.9g, PyTorch %.9g (error %.3g, "
                          "tolerance %.3g)", name, k, (double)params[t->offset + k],
                          (double)want[k], err, tol);
        }
        free(want);
    }
    printf("%s: half-storage AdamW step 1 within the bounds; %zu of %zu weights where the "
           "gradient's sign is within its tolerance (2 lr allowed)\n", stem, uncertain,
           n_params);
    free(params);

    /* Memory: the six saved activations per block (ln1, qkv, heads_out,
     * ln2, fc1, gelu), [gemm rows, 4C + 2Gd + 2F]. */
    size_t saved = (size_t)d->num_layers * m[0]->gemm.rows *
                   (4 * d->embed_dim + 2 * (size_t)d->kv_heads * d->head_dim + 2 * d->mlp_dim);
    size_t arena[2] = {clgqa_model_arena_bytes(m[0]), clgqa_model_arena_bytes(m[1])};
    size_t scratch = m[1]->gemm.rows * (size_t)(d->mlp_dim > d->embed_dim ? d->mlp_dim
                                                                          : d->embed_dim);
    size_t align = 6 * (size_t)d->num_layers * clgqa_gemm_operand_alignment(rt) + 1;
    ck_assert_msg(arena[1] / sizeof(float) + saved / 2 <= arena[0] / sizeof(float) + scratch + align,
                  "%s: arena %zu bytes in half, %zu in fp32: saved activations %zu floats",
                  stem, arena[1], arena[0], saved);
    printf("%s: half-storage logits within %.2g of fp32's (max |logit| %.3g); saved "
           "activations %.1f KiB in half, %.1f KiB in fp32; arena %.1f KiB vs "
           "%.1f KiB (%.3f)\n", stem, worst, scale, saved * 2 / 1024.0, saved * 4 / 1024.0,
           arena[1] / 1024.0, arena[0] / 1024.0, (double)arena[1] / (double)arena[0]);
    for (int i = 0; i < 2; i++) {
        free(logits[i]);
        free(grads[i]);
        clgqa_model_destroy(m[i]);
    }
    release_batch(&data);
    clgqa_tensor_set_close(fx.file);
}
END_TEST

START_TEST(parity_mhsa) { check_fixture("model_mhsa"); }
END_TEST
START_TEST(parity_gqa) { check_fixture("model_gqa"); }
END_TEST
START_TEST(parity_kdgqa) { check_fixture("model_kdgqa"); }
END_TEST
START_TEST(parity_kdgqa_edge) { check_fixture("model_kdgqa_edge"); }
END_TEST
START_TEST(parity_dgqa_diff) { check_fixture("model_dgqa_diff"); }
END_TEST
START_TEST(parity_dgqa_ema) { check_fixture("model_dgqa_ema"); }
END_TEST
START_TEST(parity_pgqa_fixed_noise) { check_fixture("model_pgqa"); }
END_TEST

/* PGQA with drawn noise: every (sample, head) row of the perturbed attention
 * output has zero mean; the noise is fresh per global step and reproducible. */
START_TEST(pgqa_drawn_noise_rows_have_zero_mean) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(CLGQA_PGQA);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 3, &m));
    randomise_parameters(m);
    const clgqa_model_dims *d = clgqa_model_get_dims(m);
    batch_data data = random_batch(m, 3);
    size_t rows = (size_t)data.batch * d->tokens, C = d->embed_dim, P = d->tokens,
           hd = d->head_dim;
    float *out = malloc(rows * C * sizeof *out);
    float *first = malloc(rows * C * sizeof *first);

    float loss7 = forward_loss(m, &data, 1, 0, 7);
    for (int l = 0; l < d->num_layers; l++) {
        clgqa_view v = m->layers[l].heads_out;
        TEST_OK(clgqa_buffer_read(rt, v.mem, v.offset * sizeof(float), rows * C * sizeof(float),
                                  out));
        if (l == 0)
            memcpy(first, out, rows * C * sizeof *out);
        for (int b = 0; b < data.batch; b++)
            for (int h = 0; h < d->num_heads; h++) {
                double sum = 0.0, scale = 0.0;
                for (size_t t = 0; t < P; t++)
                    for (size_t i = 0; i < hd; i++) {
                        double x = out[((size_t)b * P + t) * C + (size_t)h * hd + i];
                        sum += x;
                        scale = fmax(scale, fabs(x));
                    }
                /* float32 rounding of A - (z sigma + mu) per element, summed
                 * over P*d elements: far below 1e-5 of the row's scale. */
                ck_assert_msg(scale > 0.1, "layer %d row (%d, %d) is degenerate", l, b, h);
                ck_assert_msg(fabs(sum / (double)(P * hd)) <= 1e-5 * scale,
                              "layer %d row (%d, %d): mean %.3g (scale %.3g)", l, b, h,
                              sum / (double)(P * hd), scale);
            }
    }
    /* Same step: the same noise (bit for bit); another step: other noise. */
    ck_assert_float_eq(forward_loss(m, &data, 1, 0, 7), loss7);
    float loss8 = forward_loss(m, &data, 1, 0, 8);
    ck_assert_msg(loss8 != loss7, "the noise did not change with the global step");
    forward_loss(m, &data, 1, 0, 8);
    clgqa_view v = m->layers[0].heads_out;
    TEST_OK(clgqa_buffer_read(rt, v.mem, v.offset * sizeof(float), rows * C * sizeof(float), out));
    ck_assert_msg(memcmp(out, first, rows * C * sizeof *out) != 0, "layer 0 output unchanged");

    free(out);
    free(first);
    release_batch(&data);
    clgqa_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Finite differences of the whole model's loss
 * ------------------------------------------------------------------------- */

/* Central differences of the float32 loss, step h = 1e-2 on parameters of
 * magnitude ~0.1..1:
 *   rounding    the loss is float32 of magnitude ~1 with an error of a few
 *               1e-7, divided by 2h: ~3e-5;
 *   truncation  h^2/6 |L'''| ~ 2e-5 |L'''|: relative, as |L'''| scales
 *               with |L'| for these smooth maps.
 * So |fd - g| <= 5e-3 |g| + 1.5e-4. Measured over all schemes: at most 0.2
 * of that (3e-4 at |g| ~ 1.5, 2.4e-5 at |g| ~ 7e-3). Each
 * tensor is checked at its largest gradient, which must be well above that
 * tolerance so the check means something, and at random elements. */
#define FD_STEP 1e-2f
#define FD_REL 5e-3
#define FD_ABS 1.5e-4

/* The global step of the training passes: PGQA's noise and drop path's
 * draws come from it, so every pass of the check sees the same ones. With
 * drop path (rate 0.6 in block 1 of 2, 0 in block 0), the first step from 5
 * on where each of block 1's branches keeps one of the 2 samples (scaled by
 * 1 / 0.4) and drops the other, so both cases are differentiated. */
static long fd_step(clgqa_model *m, const batch_data *data, int drop_path) {
    if (!drop_path)
        return 5;
    /* timm's keep_prob = 1 - float(0.6), then 1 / keep in float. */
    const float keep = (float)(1.0 - (double)0.6f), keep_scale = (float)(1.0 / (double)keep);
    for (long step = 5; step < 200; step++) {
        forward_loss(m, data, 1, 0, step);
        float scales[2][2];
        clgqa_view v = clgqa_view_add(m->drop_scales, 2 * 2); /* block 1: [2 branches][2 samples] */
        TEST_OK(clgqa_buffer_read(test_runtime(), v.mem, v.offset * sizeof(float), sizeof scales,
                                  scales));
        int mixed = 1;
        for (int branch = 0; branch < 2; branch++) {
            int kept = (scales[branch][0] == keep_scale) + (scales[branch][1] == keep_scale);
            int dropped = (scales[branch][0] == 0.0f) + (scales[branch][1] == 0.0f);
            mixed &= kept == 1 && dropped == 1;
        }
        if (mixed)
            return step;
    }
    ck_abort_msg("no step in [5, 200) keeps one sample of two in both branches");
    return 0;
}

/* With `recipe`: label smoothing 0.1 (soft targets in the loss) and drop
 * path 0.6 at the last block, whose per-sample mask is fixed by the step. */
static void finite_differences_with(clgqa_scheme scheme, int recipe) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(scheme);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 3, &m)); /* batch 2 < max_batch 3 */
    randomise_parameters(m);
    if (recipe) {
        const clgqa_regularisation regularisation = {0.1, 0.6};
        TEST_OK(clgqa_model_set_regularisation(m, &regularisation));
    }
    /* KDGQA/DGQA: a frozen, uneven allocation (one with an unused key head
     * for EMA): the allocation is an integer decision, no gradient flows
     * through the norms. */
    static const int32_t uneven[3][2] = {{3, 1}, {1, 3}, {4, 0}};
    if (scheme == CLGQA_KDGQA || is_dgqa(scheme)) {
        const int32_t *split = uneven[scheme == CLGQA_KDGQA ? 0 : scheme == CLGQA_DGQA_DIFF ? 1 : 2];
        for (int l = 0; l < cfg.num_layers; l++)
            TEST_OK(clgqa_model_write_grouping(m, l, NULL, split));
        clgqa_model_freeze_grouping(m, MODEL_GROUPING_FROZEN);
    }
    batch_data data = random_batch(m, 2);
    /* PGQA draws its noise and drop path its mask from the global step:
     * fixed here, so every pass sees the same ones. */
    const long step = fd_step(m, &data, recipe);
    forward_loss(m, &data, 1, 0, step);
    TEST_OK(clgqa_model_backward(m));
    size_t n = clgqa_model_param_count(m);
    float *grads = malloc(n * sizeof *grads);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, grads));

    int random_samples = test_small() ? 0 : 2;
    int checked = 0;
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        size_t picks[3];
        int n_picks = 0;
        size_t largest = 0;
        for (size_t k = 1; k < t->numel; k++)
            if (fabsf(grads[t->offset + k]) > fabsf(grads[t->offset + largest]))
                largest = k;
        picks[n_picks++] = largest;
        for (int r = 0; r < random_samples; r++) {
            size_t k = clgqa_host_random_bits(3, clgqa_stream_id(CLGQA_RNG_TEST, (uint32_t)i, 0),
                                              (uint64_t)r) % t->numel;
            if (k != largest && (n_picks < 2 || k != picks[1]))
                picks[n_picks++] = k;
        }
        if (!is_key_bias(t->name))
            ck_assert_msg(fabsf(grads[t->offset + largest]) > 30 * FD_ABS,
                          "%s: largest gradient %.3g is too small to check", t->name,
                          (double)grads[t->offset + largest]);
        for (int p = 0; p < n_picks; p++) {
            size_t index = t->offset + picks[p];
            float original = read_param(m, index);
            write_param(m, index, original + FD_STEP);
            double up = forward_loss(m, &data, 1, 0, step);
            write_param(m, index, original - FD_STEP);
            double down = forward_loss(m, &data, 1, 0, step);
            write_param(m, index, original);
            double fd = (up - down) / (2.0 * FD_STEP), g = grads[index];
            ck_assert_msg(fabs(fd - g) <= FD_REL * fabs(g) + FD_ABS,
                          "%s%s %s[%zu]: backward %.6g, finite difference %.6g",
                          clgqa_scheme_name(scheme), recipe ? " (drop path, smoothing)" : "",
                          t->name, picks[p], g, fd);
            checked++;
        }
    }
    ck_assert_int_ge(checked, clgqa_model_tensor_count(m));
    if (scheme == CLGQA_DGQA_EMA) {
        /* Key/value head 1 serves no query head: its k and v rows get no
         * gradient at all. */
        const clgqa_model_dims *d = clgqa_model_get_dims(m);
        const char *names[] = {"blocks.0.attn.k.weight", "blocks.0.attn.v.weight",
                               "blocks.1.attn.v.bias"};
        for (int i = 0; i < 3; i++) {
            const clgqa_tensor_info *t = clgqa_model_find_tensor(m, names[i]);
            size_t row_len = t->ndim == 2 ? (size_t)t->shape[1] : 1;
            for (size_t k = d->head_dim * row_len; k < 2 * d->head_dim * row_len; k++)
                ck_assert_msg(grads[t->offset + k] == 0.0f, "%s[%zu] = %g", names[i], k,
                              (double)grads[t->offset + k]);
        }
    }
    free(grads);
    release_batch(&data);
    clgqa_model_destroy(m);
}

START_TEST(finite_differences_every_scheme) { finite_differences_with(all_schemes[_i], 0); }
END_TEST

/* Drop path's backward (each branch's per-sample scale, the Linear's bias
 * sums made from the scaled gradient) and label smoothing's soft targets,
 * through the whole model: a static and a grouped scheme. */
START_TEST(finite_differences_with_drop_path_and_smoothing) {
    static const clgqa_scheme schemes[] = {CLGQA_GQA, CLGQA_DGQA_DIFF};
    finite_differences_with(schemes[_i], 1);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Overfit one batch
 * ------------------------------------------------------------------------- */

START_TEST(overfits_one_batch) {
    clgqa_scheme scheme = all_schemes[_i];
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(scheme);
    cfg.embed_dim = 16;
    cfg.num_classes = 4;
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 8, &m)); /* the reference's initialisation */
    batch_data data = random_batch(m, 8);
    clgqa_adamw hp = {3e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0};
    float first = forward_loss(m, &data, 1, 0, 0), loss = first;
    int max_steps = 300, step;
    for (step = 1; step <= max_steps && loss > 0.1f * first; step++) {
        TEST_OK(clgqa_model_backward(m));
        TEST_OK(clgqa_model_step(m, &hp, step));
        loss = forward_loss(m, &data, 1, step, step);
    }
    ck_assert_msg(loss <= 0.1f * first, "%s: loss %.4f -> %.4f after %d steps",
                  clgqa_scheme_name(scheme), first, loss, max_steps);
    release_batch(&data);
    clgqa_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------
 * Weight gradients split over row chunks (split-K)
 * ------------------------------------------------------------------------- */

/* The gradients of one forward and backward of `data` (malloc'ed). */
static float *gradients_of(clgqa_model *m, const batch_data *data) {
    forward_loss(m, data, 1, 0, 0);
    TEST_OK(clgqa_model_backward(m));
    float *grads = malloc(clgqa_model_param_count(m) * sizeof *grads);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, grads));
    return grads;
}

/* With every weight gradient split into 3 row chunks (the runtime option
 * gemm_split; 2 where the rows hold only 2 k-tiles), a backward gives the
 * same bits twice, and the same bits after a larger batch's backward as
 * without it (rows the larger batch left behind are zeroed, not summed);
 * the split gradients match the unsplit ones to float32 summation order:
 * each is a sum of the same 16 * 5 products, so they differ by a few units
 * in the last place of the gradient's scale (1e-5 of it, with room). */
START_TEST(split_gradients_repeat_bit_for_bit) {
    clgqa_runtime *rt = test_runtime();
    size_t saved = rt->gemm_split;
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    cfg.embed_dim = 16;
    clgqa_model *m[3];
    float *params = NULL, *grads[4];
    batch_data big, small;
    for (int i = 0; i < 3; i++) {
        rt->gemm_split = i < 2 ? 3 : 1;
        TEST_OK(test_model_create(rt, &cfg, 16, &m[i]));
        clgqa_model_freeze_grouping(m[i], MODEL_GROUPING_FROZEN);
        if (i == 0) {
            randomise_parameters(m[0]);
            params = malloc(clgqa_model_param_count(m[0]) * sizeof *params);
            TEST_OK(clgqa_model_read_buffer(m[0], CLGQA_PARAMS, params));
            big = random_batch(m[0], 16);
            small = random_batch(m[0], 3);
        }
        TEST_OK(clgqa_model_write_buffer(m[i], CLGQA_PARAMS, params));
    }
    rt->gemm_split = saved;
    for (int j = 0; j < LINEAR_BLOCK; j++)
        ck_assert_msg(m[0]->gemm.split[j] > 1 && m[2]->gemm.split[j] == 1,
                      "Linear %d: split %zu and %zu", j, m[0]->gemm.split[j], m[2]->gemm.split[j]);
    ck_assert_uint_gt(m[0]->gemm.patch_split, 1);
    size_t n = clgqa_model_param_count(m[0]);
    free(gradients_of(m[0], &big));
    grads[0] = gradients_of(m[0], &small); /* after the larger batch */
    grads[1] = gradients_of(m[1], &small);
    grads[2] = gradients_of(m[1], &small); /* again */
    grads[3] = gradients_of(m[2], &small); /* unsplit */
    ck_assert_msg(!memcmp(grads[1], grads[2], n * sizeof(float)), "split-K not repeatable");
    ck_assert_msg(!memcmp(grads[0], grads[1], n * sizeof(float)),
                  "a larger batch before changed the split gradients");
    for (int i = 0; i < clgqa_model_tensor_count(m[0]); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m[0], i);
        test_assert_close_scaled(t->name, grads[1] + t->offset, grads[3] + t->offset, t->numel,
                                 1e-5, 1e-5);
    }
    for (int i = 0; i < 4; i++)
        free(grads[i]);
    for (int i = 0; i < 3; i++)
        clgqa_model_destroy(m[i]);
    release_batch(&big);
    release_batch(&small);
    free(params);
}
END_TEST

/* ---------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------- */

START_TEST(tensor_table_has_reference_names_and_shapes) {
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    clgqa_model *m;
    TEST_OK(test_model_create(test_runtime(), &cfg, 2, &m));
    ck_assert_int_eq(clgqa_model_tensor_count(m), 4 + 16 * 2 + 4);
    size_t offset = 0;
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        ck_assert_uint_eq(t->offset, offset); /* packed in table order */
        size_t numel = 1;
        for (int k = 0; k < t->ndim; k++)
            numel *= (size_t)t->shape[k];
        ck_assert_uint_eq(t->numel, numel);
        ck_assert_ptr_eq(clgqa_model_find_tensor(m, t->name), t);
        offset += t->numel;
    }
    ck_assert_uint_eq(clgqa_model_param_count(m), offset);
    const clgqa_tensor_info *t = clgqa_model_find_tensor(m, "blocks.1.attn.k.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 2 * 2); /* G * d */
    ck_assert_int_eq(t->shape[1], 8);
    t = clgqa_model_find_tensor(m, "patch_embed.proj.weight");
    ck_assert_int_eq(t->ndim, 4);
    ck_assert_int_eq(t->shape[1], 2);
    ck_assert_int_eq(t->shape[3], 4);
    t = clgqa_model_find_tensor(m, "pos_embed");
    ck_assert_int_eq(t->shape[1], 5);
    ck_assert_ptr_null(clgqa_model_find_tensor(m, "blocks.2.norm1.weight"));
    ck_assert_ptr_null(clgqa_model_tensor(m, clgqa_model_tensor_count(m)));
    clgqa_model_destroy(m);
}
END_TEST

START_TEST(initialisation_follows_the_reference) {
    clgqa_config cfg = tiny_config(CLGQA_KDGQA);
    cfg.embed_dim = 32; /* fc1.weight has 4096 elements: a usable sample std */
    clgqa_model *m, *again;
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &m));
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &again));
    size_t n = clgqa_model_param_count(m);
    float *p = malloc(n * sizeof *p), *q = malloc(n * sizeof *q);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_PARAMS, p));
    TEST_OK(clgqa_model_read_buffer(again, CLGQA_PARAMS, q));
    ck_assert_msg(!memcmp(p, q, n * sizeof *p), "the same seed gave other weights");
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        const float *x = p + t->offset;
        double sum = 0, sum2 = 0, largest = test_max_abs(x, t->numel);
        for (size_t k = 0; k < t->numel; k++) {
            sum += x[k];
            sum2 += (double)x[k] * x[k];
        }
        double std = sqrt(sum2 / (double)t->numel - (sum / (double)t->numel) * (sum / (double)t->numel));
        int is_bias = strstr(t->name, ".bias") != NULL;
        if (!strncmp(t->name, "patch_embed.", 12)) {
            double bound = 1.0 / sqrt(2.0 * 4 * 4); /* 1 / sqrt(in_chans p p) */
            ck_assert_msg(largest <= bound && largest > 0.5 * bound, "%s: max %.3g", t->name,
                          largest);
        } else if (strstr(t->name, "norm")) {
            for (size_t k = 0; k < t->numel; k++)
                ck_assert_float_eq(x[k], is_bias ? 0.0f : 1.0f);
        } else if (is_bias || !strcmp(t->name, "cls_token")) {
            ck_assert_msg(largest == 0.0, "%s is not zero", t->name);
        } else if (t->numel >= 4096) {
            /* sample std of 4096 normals: within 5% of 0.02 (~4.5 sigma) */
            ck_assert_msg(fabs(std - 0.02) < 0.001 && fabs(sum / (double)t->numel) < 0.002,
                          "%s: std %.4g", t->name, std);
        } else {
            ck_assert_msg(std > 0.01 && std < 0.03 && largest < 0.2, "%s: std %.4g", t->name, std);
        }
    }
    cfg.seed = 78;
    clgqa_model_destroy(again);
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &again));
    TEST_OK(clgqa_model_read_buffer(again, CLGQA_PARAMS, q));
    ck_assert_msg(memcmp(p, q, n * sizeof *p) != 0, "another seed gave the same weights");
    free(p);
    free(q);
    clgqa_model_destroy(m);
    clgqa_model_destroy(again);
}
END_TEST

static void expect_refused(clgqa_config cfg, int max_batch, const char *fragment) {
    clgqa_model *m = (clgqa_model *)&cfg; /* must be reset to NULL */
    ck_assert_int_eq(test_model_create(test_runtime(), &cfg, max_batch, &m),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(clgqa_error_message(), fragment), "message '%s' lacks '%s'",
                  clgqa_error_message(), fragment);
}

START_TEST(bad_configurations_are_refused) {
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    cfg.num_kv_heads = 3;
    expect_refused(cfg, 2, "not a multiple of num_kv_heads");
    cfg = tiny_config(CLGQA_KDGQA);
    cfg.num_kv_heads = 3;
    expect_refused(cfg, 2, "not a multiple of num_kv_heads");
    cfg = tiny_config(CLGQA_GQA);
    cfg.img_size = 9;
    expect_refused(cfg, 2, "patch_size");
    cfg = tiny_config(CLGQA_GQA);
    cfg.embed_dim = 10;
    expect_refused(cfg, 2, "num_heads");
    cfg = tiny_config(CLGQA_DGQA_EMA);
    cfg.window_size = 0;
    expect_refused(cfg, 2, "window_size");
    expect_refused(tiny_config(CLGQA_GQA), 0, "max_batch");
    /* MHSA ignores num_kv_heads (G = H), as the reference does. */
    cfg = tiny_config(CLGQA_MHSA);
    cfg.num_kv_heads = 3;
    clgqa_model *m;
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &m));
    ck_assert_int_eq(clgqa_model_get_dims(m)->kv_heads, 4);
    clgqa_model_destroy(m);
}
END_TEST

START_TEST(bad_calls_are_refused) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(CLGQA_DGQA_DIFF);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 2, &m));
    batch_data data = random_batch(m, 2);
    clgqa_view no_labels = {NULL, 0};
    ck_assert_int_eq(clgqa_model_backward(m), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_model_forward(m, clgqa_view_at(data.images, 0), no_labels, 3,
                                         &(clgqa_pass){1, 0, 0}),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "max_batch"), "%s", clgqa_error_message());
    TEST_OK(clgqa_model_forward(m, clgqa_view_at(data.images, 0), no_labels, 2, &(clgqa_pass){0}));
    ck_assert_int_eq(clgqa_model_backward(m), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "labels"), "%s", clgqa_error_message());
    clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0};
    ck_assert_int_eq(clgqa_model_step(m, &hp, 0), CLGQA_ERR_INVALID_ARG);
    int32_t bad_sum[2] = {3, 2}, negative[2] = {5, -1}, good[2] = {4, 0}, got[2];
    ck_assert_int_eq(clgqa_model_write_grouping(m, 0, NULL, bad_sum), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_model_write_grouping(m, 0, NULL, negative), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_model_write_grouping(m, 2, NULL, good), CLGQA_ERR_INVALID_ARG);
    TEST_OK(clgqa_model_write_grouping(m, 1, NULL, good));
    TEST_OK(clgqa_model_read_grouping(m, 1, NULL, got));
    ck_assert_int_eq(got[0], 4);
    ck_assert_int_eq(got[1], 0);
    int32_t all[4];
    TEST_OK(clgqa_model_read_all_group_counts(m, all));
    ck_assert_int_eq(all[0], 2); /* layer 0: still the static split */
    ck_assert_int_eq(all[2], 4);
    float noise[40] = {0};
    ck_assert_int_eq(clgqa_model_set_pgqa_noise(m, 0, noise), CLGQA_ERR_INVALID_ARG);
    /* The arena holds the saved attention activations of the variant chosen
     * at creation: a forward with the other one is refused, not run. */
    clgqa_attention_kernel keep = rt->attention_kernel;
    rt->attention_kernel = keep == CLGQA_ATTENTION_ROWS ? CLGQA_ATTENTION_TILED
                                                        : CLGQA_ATTENTION_ROWS;
    clgqa_status other = clgqa_model_forward(m, clgqa_view_at(data.images, 0), no_labels, 2,
                                             &(clgqa_pass){0});
    rt->attention_kernel = keep;
    ck_assert_int_eq(other, CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "attention kernels"), "%s", clgqa_error_message());
    release_batch(&data);
    clgqa_model_destroy(m);
}
END_TEST

/* Gradient accumulation: the gradient of a batch of 4 equals two
 * micro-batches of 2, each backward scaled by 1 / 4 and the second added
 * to the first (clgqa_model_backward_scaled), for every parameter, within
 * float summation order: 1e-5 of each element plus 1e-6 of its tensor's
 * largest. A wrong scale (1 / 2) or a lost micro-batch fails by far. GQA
 * and DGQA-EMA with a frozen split, so both passes group alike. */
START_TEST(accumulated_micro_batches_give_the_batch_gradient) {
    static const clgqa_scheme schemes[] = {CLGQA_GQA, CLGQA_DGQA_EMA};
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(schemes[_i]);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 4, &m));
    randomise_parameters(m);
    clgqa_model_freeze_grouping(m, MODEL_GROUPING_FROZEN);
    batch_data data = random_batch(m, 4);
    const clgqa_model_dims *d = clgqa_model_get_dims(m);
    size_t image = (size_t)d->in_chans * d->img_size * d->img_size, n = clgqa_model_param_count(m);
    const clgqa_pass pass = {CLGQA_PASS_TRAIN, 1, 3};
    TEST_OK(clgqa_model_forward(m, clgqa_view_at(data.images, 0), clgqa_view_at(data.labels, 0), 4,
                                &pass));
    TEST_OK(clgqa_model_backward(m));
    float *whole = malloc(n * sizeof *whole), *parts = malloc(n * sizeof *parts);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, whole));
    for (int half = 0; half < 2; half++) {
        TEST_OK(clgqa_model_forward(m, clgqa_view_at(data.images, (size_t)half * 2 * image),
                                    clgqa_view_at(data.labels, (size_t)half * 2), 2, &pass));
        TEST_OK(clgqa_model_backward_scaled(m, 1.0f / 4.0f, half));
    }
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, parts));
    for (int i = 0; i < clgqa_model_tensor_count(m); i++) {
        const clgqa_tensor_info *t = clgqa_model_tensor(m, i);
        double largest = test_max_abs(whole + t->offset, t->numel);
        if (is_key_bias(t->name)) /* 0 in exact arithmetic: rounding noise either way */
            continue;
        ck_assert_msg(largest > 1e-4, "%s: no gradient to compare", t->name);
        for (size_t k = 0; k < t->numel; k++) {
            double a = whole[t->offset + k], b = parts[t->offset + k];
            if (!(fabs(a - b) <= 1e-5 * fabs(a) + 1e-6 * largest))
                ck_abort_msg("%s %s[%zu]: %.9g as one batch, %.9g from two micro-batches",
                             clgqa_scheme_name(schemes[_i]), t->name, k, a, b);
        }
    }
    free(whole), free(parts);
    release_batch(&data);
    clgqa_model_destroy(m);
}
END_TEST

/* A batch of 2 (of random weights set here) gives the same gradient, bit
 * for bit, fresh and as each of the `repeats` batches of 2 after a batch
 * of 4 (the same step, so the same drop-path masks): the rows the larger
 * batch left behind, past the smaller one's (inside the rows padded to
 * CLBlast's tiles on GPU paths), reach no weight gradient. */
static void assert_larger_batch_leaves_no_trace(clgqa_model *m, int repeats) {
    randomise_parameters(m);
    batch_data small = random_batch(m, 2), large = random_batch(m, 4);
    size_t n = clgqa_model_param_count(m);
    float *first = gradients_of(m, &small);
    free(gradients_of(m, &large));
    for (int after = 1; after <= repeats; after++) {
        float *again = gradients_of(m, &small);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&first[i], &again[i], sizeof(float)) != 0)
                ck_abort_msg("gradient %zu: %.9g, as batch %d after a batch of 4 %.9g", i,
                             (double)first[i], after, (double)again[i]);
        free(again);
    }
    free(first);
    release_batch(&small), release_batch(&large);
}

/* Drop path's backward after a larger batch's: the branch gradients'
 * scratch buffers then hold that batch's rows past the smaller batch's,
 * which the weight-gradient GEMMs must not see. */
START_TEST(drop_path_gradient_ignores_a_larger_batchs_rows) {
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    clgqa_model *m;
    TEST_OK(test_model_create(test_runtime(), &cfg, 4, &m));
    const clgqa_regularisation regularisation = {0.0, 0.5};
    TEST_OK(clgqa_model_set_regularisation(m, &regularisation));
    assert_larger_batch_leaves_no_trace(m, 1);
    clgqa_model_destroy(m);
}
END_TEST

/* Half storage after a larger batch: the qkv GEMM writes its float output
 * into dqkv over the padded rows, where ln1's rows past the smaller batch
 * still hold the larger batch's, and the backward must zero them before
 * dqkv is the weight gradient's dy. Two batches of 2 after the batch of 4:
 * the first of them zeroes the larger backward's rows, the second finds
 * only what its forward wrote. */
START_TEST(half_storage_gradient_ignores_a_larger_batchs_rows) {
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    clgqa_model_desc desc;
    clgqa_config_model_desc(&cfg, &desc);
    clgqa_model *m;
    TEST_OK(clgqa_model_create_stored(test_runtime(), &desc, 4, CLGQA_STORAGE_HALF, &m));
    clgqa_model_freeze_grouping(m, MODEL_GROUPING_FROZEN);
    assert_larger_batch_leaves_no_trace(m, 2);
    clgqa_model_destroy(m);
}
END_TEST

/* The model's weight EMA on a constant-weight toy: started from weights
 * w0, then the weights set to w1 and left there (no optimizer step), N
 * updates give the closed form w1 + (w0 - w1) (1 - a)^N, a = 1 - decay
 * (tolerance as the op's: 50 ulp of the magnitudes); a swap exchanges the
 * two buffers, twice restores them; reading the EMA before it starts is
 * refused. */
START_TEST(ema_of_constant_weights_is_the_closed_form) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 2, &m));
    size_t n = clgqa_model_param_count(m);
    float *w0 = malloc(n * sizeof *w0), *w1 = test_random_array(n, -1, 1), *got = malloc(n * sizeof *got);
    ck_assert_int_eq(clgqa_model_read_buffer(m, CLGQA_EMA, got), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_model_has_ema(m), 0);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_PARAMS, w0));
    TEST_OK(clgqa_model_ema_start(m));
    ck_assert_int_eq(clgqa_model_has_ema(m), 1);
    TEST_OK(clgqa_model_write_buffer(m, CLGQA_PARAMS, w1));
    const double decay = 0.9;
    const int updates = 20;
    for (int u = 0; u < updates; u++)
        TEST_OK(clgqa_model_ema_update(m, decay));
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_EMA, got));
    double factor = pow(1.0 - (double)(float)(1.0 - decay), updates);
    for (size_t i = 0; i < n; i++) {
        double want = w1[i] + ((double)w0[i] - w1[i]) * factor;
        double scale = fabs((double)w0[i] - w1[i]) + fmax(fabs(w0[i]), fabs(w1[i]));
        ck_assert_msg(fabs(got[i] - want) <= 3e-6 * scale, "ema[%zu]: %.9g, want %.9g", i,
                      (double)got[i], want);
    }
    float *params = malloc(n * sizeof *params);
    TEST_OK(clgqa_model_ema_swap(m));
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_PARAMS, params));
    ck_assert(memcmp(params, got, n * sizeof *got) == 0); /* the EMA is now the weights */
    TEST_OK(clgqa_model_ema_swap(m));
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_PARAMS, params));
    ck_assert(memcmp(params, w1, n * sizeof *w1) == 0);
    free(w0), free(w1), free(got), free(params);
    clgqa_model_destroy(m);
}
END_TEST

/* Running metrics sum the batches; the last-batch figures match the
 * per-sample losses; clipping scales the gradient AdamW sees. */
START_TEST(metrics_and_clipping) {
    clgqa_runtime *rt = test_runtime();
    clgqa_config cfg = tiny_config(CLGQA_MHSA);
    clgqa_model *m;
    TEST_OK(test_model_create(rt, &cfg, 3, &m));
    randomise_parameters(m);
    batch_data data = random_batch(m, 3);
    TEST_OK(clgqa_model_reset_metrics(m));
    float first = forward_loss(m, &data, 1, 0, 0);
    float losses[3];
    clgqa_view v = clgqa_model_losses(m);
    TEST_OK(clgqa_buffer_read(rt, v.mem, v.offset * sizeof(float), sizeof losses, losses));
    double mean = (losses[0] + (double)losses[1] + losses[2]) / 3.0;
    ck_assert_msg(fabs(first - mean) <= 1e-6 * fabs(mean), "last_loss %.7g, mean %.7g", first, mean);
    float second = forward_loss(m, &data, 1, 1, 1);
    clgqa_metrics metrics;
    TEST_OK(clgqa_model_read_metrics(m, &metrics));
    ck_assert_int_eq(metrics.samples, 6);
    ck_assert_msg(fabs(metrics.sum_loss - 3.0 * (first + second)) <= 1e-5 * metrics.sum_loss,
                  "sum %.7g", metrics.sum_loss);
    ck_assert_msg(metrics.last_accuracy >= 0.0f && metrics.last_accuracy <= 1.0f &&
                      fabs(metrics.sum_correct - 2.0 * 3.0 * metrics.last_accuracy) < 1e-5,
                  "accuracy %.3g, correct %.3g", metrics.last_accuracy, metrics.sum_correct);

    TEST_OK(clgqa_model_backward(m));
    size_t n = clgqa_model_param_count(m);
    float *g = malloc(n * sizeof *g), *adam_m = malloc(n * sizeof *adam_m);
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_GRADS, g));
    double norm = 0;
    for (size_t i = 0; i < n; i++)
        norm += (double)g[i] * g[i];
    norm = sqrt(norm);
    float max_norm = (float)(0.25 * norm);
    clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, max_norm, 0};
    TEST_OK(clgqa_model_step(m, &hp, 1));
    TEST_OK(clgqa_model_read_buffer(m, CLGQA_ADAM_M, adam_m));
    /* m = (1 - beta1) * g * max_norm / (norm + 1e-6) after the first step */
    double scale = (1.0 - 0.9) * max_norm / (norm + 1e-6);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(adam_m[i] - scale * g[i]) <= 1e-5 * fabs(scale * g[i]) + 1e-12,
                      "adam_m[%zu] = %.7g, want %.7g", i, (double)adam_m[i], scale * g[i]);
    free(g);
    free(adam_m);
    release_batch(&data);
    clgqa_model_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------
 * The loss scaler (precision 16-mixed)
 * ------------------------------------------------------------------------- */

typedef struct model_state {
    float *p, *m, *v;
} model_state;
static model_state read_state(clgqa_model *model) {
    size_t n = clgqa_model_param_count(model);
    model_state s = {malloc(n * sizeof(float)), malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    ck_assert(s.p && s.m && s.v);
    TEST_OK(clgqa_model_read_buffer(model, CLGQA_PARAMS, s.p));
    TEST_OK(clgqa_model_read_buffer(model, CLGQA_ADAM_M, s.m));
    TEST_OK(clgqa_model_read_buffer(model, CLGQA_ADAM_V, s.v));
    return s;
}
static void free_state(model_state *s) { free(s->p), free(s->m), free(s->v); }
static int same_bits(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

/* Two tiny GQA models with the same random weights, the second with the
 * loss scaler on from `start` (NULL: off); the final LayerNorm's gain times
 * `norm_gain` (the head's input, hence its weight gradient, grows with it). */
static void scaler_pair(clgqa_model *m[2], const clgqa_loss_scaler *start, float norm_gain,
                        batch_data *data) {
    clgqa_config cfg = tiny_config(CLGQA_GQA);
    float *params = NULL;
    for (int i = 0; i < 2; i++) {
        TEST_OK(test_model_create(test_runtime(), &cfg, 3, &m[i]));
        if (i == 0) {
            randomise_parameters(m[0]);
            params = malloc(clgqa_model_param_count(m[0]) * sizeof *params);
            TEST_OK(clgqa_model_read_buffer(m[0], CLGQA_PARAMS, params));
            for (int t = 0; t < clgqa_model_tensor_count(m[0]); t++) {
                const clgqa_tensor_info *info = clgqa_model_tensor(m[0], t);
                if (!strcmp(info->name, "norm.weight"))
                    for (size_t k = 0; k < info->numel; k++)
                        params[info->offset + k] *= norm_gain;
            }
            *data = random_batch(m[0], 3);
        }
        TEST_OK(clgqa_model_write_buffer(m[i], CLGQA_PARAMS, params));
    }
    TEST_OK(clgqa_model_set_loss_scaler(m[1], start));
    ck_assert(clgqa_model_loss_scaling(m[1]) && !clgqa_model_loss_scaling(m[0]));
    free(params);
}

/* With the scaler at 2^16 and no overflow, steps are those of fp32 bit for
 * bit, clipped or not: the backward is linear in the loss's gradient, so
 * every gradient is exactly 2^16 times fp32's (a power of 2 commutes with
 * rounding) and AdamW divides it back exactly. */
START_TEST(loss_scaled_steps_are_fp32_steps_bit_for_bit) {
    const clgqa_loss_scaler fresh = {CLGQA_LOSS_SCALE_INIT, 0, 0, 0};
    clgqa_model *m[2];
    batch_data data;
    scaler_pair(m, &fresh, 1.0f, &data);
    size_t n = clgqa_model_param_count(m[0]);
    for (long step = 1; step <= 3; step++) {
        clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, step == 2 ? 0.1f : 0.0f, 0};
        for (int i = 0; i < 2; i++) {
            forward_loss(m[i], &data, 1, step - 1, step - 1);
            TEST_OK(clgqa_model_backward(m[i]));
            TEST_OK(clgqa_model_step(m[i], &hp, step));
        }
        model_state a = read_state(m[0]), b = read_state(m[1]);
        ck_assert_msg(same_bits(a.p, b.p, n) && same_bits(a.m, b.m, n) && same_bits(a.v, b.v, n),
                      "step %ld: the scaled step differs from fp32's", step);
        free_state(&a), free_state(&b);
        clgqa_loss_scaler scaler;
        TEST_OK(clgqa_model_read_loss_scaler(m[1], &scaler));
        ck_assert_msg(scaler.scale == 65536.0f && scaler.growth == step && scaler.skipped == 0 &&
                          !scaler.found_inf,
                      "step %ld: scale %g, clean steps %ld, skipped %ld", step,
                      (double)scaler.scale, scaler.growth, scaler.skipped);
    }
    release_batch(&data);
    clgqa_model_destroy(m[0]), clgqa_model_destroy(m[1]);
}
END_TEST

/* A forced overflow: from a scale of 2^127, with the head's input 1e3
 * times larger than usual, the scaled head weight gradient overflows.
 * Each such step leaves the weights and moments bit for bit and halves the
 * scale, until the scale fits; the first step taken is then Adam's step 1,
 * as if the skipped ones never were: fp32's one step on the same batch (the
 * moments bit for bit; the weights within one ulp: the bias correction the
 * device computes in float after a skip is a few ulp of the update ~lr
 * apart from the host's double one, which can round a weight the other
 * way). */
START_TEST(overflowing_steps_are_skipped_and_halve_the_scale) {
    const clgqa_loss_scaler huge = {0x1p127f, 0, 0, 0};
    clgqa_model *m[2];
    batch_data data;
    scaler_pair(m, &huge, 1e3f, &data);
    size_t n = clgqa_model_param_count(m[0]);
    const clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, 1.0f, 0};
    forward_loss(m[0], &data, 1, 0, 0);
    TEST_OK(clgqa_model_backward(m[0]));
    TEST_OK(clgqa_model_step(m[0], &hp, 1));
    model_state want = read_state(m[0]);

    long step = 1;
    clgqa_loss_scaler scaler = huge;
    for (;; step++) {
        ck_assert_msg(step < 100, "still overflowing at scale %g", (double)scaler.scale);
        model_state before = read_state(m[1]);
        forward_loss(m[1], &data, 1, 0, 0);
        TEST_OK(clgqa_model_backward(m[1]));
        if (step == 1) { /* the overflow is real */
            float *g = malloc(n * sizeof *g);
            TEST_OK(clgqa_model_read_buffer(m[1], CLGQA_GRADS, g));
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += !isfinite(g[i]);
            ck_assert_msg(bad > 0, "no gradient overflowed at scale 2^127");
            free(g);
        }
        float expected_scale = scaler.scale * 0.5f;
        TEST_OK(clgqa_model_step(m[1], &hp, step));
        TEST_OK(clgqa_model_read_loss_scaler(m[1], &scaler));
        model_state after = read_state(m[1]);
        int unchanged = same_bits(before.p, after.p, n) && same_bits(before.m, after.m, n) &&
                        same_bits(before.v, after.v, n);
        free_state(&before), free_state(&after);
        if (!scaler.found_inf) {
            ck_assert_msg(!unchanged, "step %ld was taken but changed nothing", step);
            break;
        }
        ck_assert_msg(unchanged, "skipped step %ld changed the weights or moments", step);
        ck_assert_msg(scaler.scale == expected_scale && scaler.growth == 0 &&
                          scaler.skipped == step,
                      "after skipped step %ld: scale %g (want %g), clean steps %ld, skipped %ld",
                      step, (double)scaler.scale, (double)expected_scale, scaler.growth,
                      scaler.skipped);
    }
    ck_assert_msg(step > 1, "the first step did not overflow");
    ck_assert_msg(scaler.growth == 1 && scaler.skipped == step - 1, "clean steps %ld, skipped %ld",
                  scaler.growth, scaler.skipped);
    model_state got = read_state(m[1]);
    ck_assert_msg(same_bits(got.m, want.m, n) && same_bits(got.v, want.v, n),
                  "the moments after the skips differ from fp32's first step");
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got.p[i] - want.p[i]) <= 0x1p-23f * fabsf(want.p[i]) + 1e-9f,
                      "param %zu: %.9g, fp32 %.9g", i,
                      (double)got.p[i], (double)want.p[i]);
    free_state(&got), free_state(&want);
    ck_assert_int_eq(clgqa_model_set_loss_scaler(m[1], &(clgqa_loss_scaler){3.0f, 0, 0, 0}),
                     CLGQA_ERR_INVALID_ARG);
    release_batch(&data);
    clgqa_model_destroy(m[0]), clgqa_model_destroy(m[1]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *api = tcase_create("api");
    tcase_add_test(api, tensor_table_has_reference_names_and_shapes);
    tcase_add_test(api, initialisation_follows_the_reference);
    tcase_add_test(api, bad_configurations_are_refused);
    tcase_add_test(api, bad_calls_are_refused);
    tcase_add_test(api, metrics_and_clipping);
    tcase_add_test(api, ema_of_constant_weights_is_the_closed_form);
    suite_add_tcase(s, api);

    TCase *parity = tcase_create("pytorch_parity");
    tcase_set_timeout(parity, 300);
    tcase_add_test(parity, parity_mhsa);
    tcase_add_test(parity, parity_gqa);
    tcase_add_test(parity, parity_kdgqa);
    tcase_add_test(parity, parity_kdgqa_edge);
    tcase_add_test(parity, parity_dgqa_diff);
    tcase_add_test(parity, parity_dgqa_ema);
    tcase_add_test(parity, parity_pgqa_fixed_noise);
    tcase_add_test(parity, pgqa_drawn_noise_rows_have_zero_mean);
    tcase_add_loop_test(parity, half_storage_matches_fp32_and_halves_saved_activations, 0,
                        (int)(sizeof half_stems / sizeof *half_stems));
    suite_add_tcase(s, parity);

    TCase *gradients = tcase_create("finite_differences");
    tcase_set_timeout(gradients, 600);
    tcase_add_loop_test(gradients, finite_differences_every_scheme, 0, (int)N_SCHEMES);
    tcase_add_loop_test(gradients, finite_differences_with_drop_path_and_smoothing, 0, 2);
    tcase_add_loop_test(gradients, accumulated_micro_batches_give_the_batch_gradient, 0, 2);
    suite_add_tcase(s, gradients);

    /* A smaller batch after a larger one: the rows the larger left behind
     * (past the smaller batch, inside the rows padded to CLBlast's tiles on
     * GPU paths) must not reach a weight gradient. */
    TCase *stale_rows = tcase_create("stale_rows");
    tcase_set_timeout(stale_rows, 300);
    tcase_add_test(stale_rows, split_gradients_repeat_bit_for_bit);
    tcase_add_test(stale_rows, drop_path_gradient_ignores_a_larger_batchs_rows);
    tcase_add_test(stale_rows, half_storage_gradient_ignores_a_larger_batchs_rows);
    suite_add_tcase(s, stale_rows);

    TCase *overfit = tcase_create("overfit");
    tcase_set_timeout(overfit, 600);
    tcase_add_loop_test(overfit, overfits_one_batch, 0, (int)N_SCHEMES);
    tcase_add_test(overfit, loss_scaled_steps_are_fp32_steps_bit_for_bit);
    tcase_add_test(overfit, overflowing_steps_are_skipped_and_halve_the_scale);
    suite_add_tcase(s, overfit);
    return test_run_suite(s);
}
