/* Uptraining: timm and reference checkpoints imported through
 * clgqa_checkpoint_load_pretrained (what pretrained_ckpt and `clgqa convert`
 * call), position-embedding resampling, F16/BF16 files, the s/b/l presets at
 * 224, and scripts/uptrain's conversions of an MHSA checkpoint to every
 * scheme and key/value-head count.
 *
 * Fixtures: tests/ref/make_timm_fixture.py (timm_vit, timm_uptrain_expected),
 * make_fixtures.py (model_<scheme>) and make_uptrain_fixture.py
 * (uptrain_mhsa, uptrain_expected); see tests/ref/README.md. Their model:
 * 9x9 RGB, patch 3 (3x3 grid), C 12, depth 2, H 6, converted to G 3, 5
 * classes (uptrain_*: C 16, H 8, converted to G 1, 2 and 4). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clgqa/checkpoint.h"
#include "config_internal.h"
#include "clgqa/model.h"
#include "model_internal.h"
#include "ops.h"
#include "pos_embed.h"
#include "safetensors.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define TIMM_FIXTURE "tests/ref/fixtures/timm_vit.safetensors"
#define TIMM_EXPECTED "tests/ref/fixtures/timm_uptrain_expected.safetensors"
#define REF_GQA "tests/ref/fixtures/model_gqa.safetensors"
#define REF_MHSA "tests/ref/fixtures/model_mhsa.safetensors"
#define UPTRAIN_CONFIG "configs/vit-s-cifar100-uptrain.yaml"
#define UPTRAIN_MHSA "tests/ref/fixtures/uptrain_mhsa.safetensors"
#define UPTRAIN_EXPECTED "tests/ref/fixtures/uptrain_expected.safetensors"

/* Tolerances. PyTorch's float32 interpolation against our float64 weights
 * differ by ~2e-6 on O(1) values: 1e-5. Averages of 2 heads: 1e-6 relative.
 * Whole-model logits against PyTorch: 1e-4 of the largest logit (different
 * summation orders through two blocks stay ~1e-6; see test_model.c). */
#define RESAMPLE_TOL 1e-5
#define CONVERT_REL 1e-6
#define LOGITS_REL 1e-4

/* ---- helpers -------------------------------------------------------------------- */

static void set(clgqa_config *cfg, const char *key_value) { TEST_OK(clgqa_config_set(cfg, key_value)); }

static void setf(clgqa_config *cfg, const char *key, long value) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s=%ld", key, value);
    set(cfg, buf);
}

/* The fixtures' model at img_size `img`, finalized. */
static void fixture_config(clgqa_config *cfg, const char *scheme, int classes, int img) {
    clgqa_config_defaults(cfg);
    char buf[64];
    set(cfg, "dataset=cifar10");
    set(cfg, "in_chans=3");
    set(cfg, "size=c");
    setf(cfg, "img_size", img);
    set(cfg, "patch_size=3");
    set(cfg, "embed_dim=12");
    set(cfg, "num_layers=2");
    set(cfg, "num_heads=6");
    set(cfg, "num_kv_heads=3");
    setf(cfg, "num_classes", classes);
    snprintf(buf, sizeof buf, "att_scheme=%s", scheme);
    set(cfg, buf);
    TEST_OK(clgqa_config_finalize(cfg));
}

/* Tensor `name` of an open file as floats (malloc'ed); *numel set. */
static float *file_floats(const clgqa_tensor_set *file, const char *name, size_t *numel) {
    const clgqa_tensor *st = clgqa_tensor_set_find(file, name);
    ck_assert_msg(st != NULL, "%s lacks %s", clgqa_tensor_set_label(file), name);
    float *x = malloc(st->numel * sizeof(float));
    ck_assert_ptr_nonnull(x);
    TEST_OK(clgqa_tensor_set_read_f32(file, name, x, st->numel));
    if (numel)
        *numel = st->numel;
    return x;
}

static float *path_floats(const char *path, const char *name, size_t *numel) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    float *x = file_floats(file, name, numel);
    clgqa_tensor_set_close(file);
    return x;
}

/* Model parameter `name` (malloc'ed). */
static float *model_floats(clgqa_model *model, const char *name) {
    const clgqa_tensor_info *t = clgqa_model_find_tensor(model, name);
    ck_assert_msg(t != NULL, "model lacks %s", name);
    float *x = malloc(t->numel * sizeof(float));
    ck_assert_ptr_nonnull(x);
    TEST_OK(clgqa_model_read_tensor(model, CLGQA_PARAMS, t, x));
    return x;
}

static size_t model_numel(clgqa_model *model, const char *name) {
    return clgqa_model_find_tensor(model, name)->numel;
}

/* Loads `path` into a fresh model of `cfg` as pretrained_ckpt does; returns
 * the model and what it said (malloc'ed, via *said when non-NULL). */
static clgqa_model *load_pretrained(const clgqa_config *cfg, int max_batch, const char *path,
                                    char **said) {
    clgqa_model *model;
    TEST_OK(test_model_create(test_runtime(), cfg, max_batch, &model));
    char *text = NULL;
    size_t size = 0;
    FILE *log = open_memstream(&text, &size);
    ck_assert_ptr_nonnull(log);
    clgqa_status status = clgqa_checkpoint_load_pretrained(
        model, path, cfg->pos_embed_antialias ? CLGQA_RESAMPLE_ANTIALIAS : CLGQA_RESAMPLE_BICUBIC,
        log);
    fclose(log);
    ck_assert_msg(status == CLGQA_OK, "loading %s: %s (said: %s)", path, clgqa_error_message(), text);
    if (said)
        *said = text;
    else
        free(text);
    return model;
}

/* The status and message of loading `path` into a model of `cfg`. */
static clgqa_status load_refused(const clgqa_config *cfg, const char *path) {
    clgqa_model *model;
    TEST_OK(test_model_create(test_runtime(), cfg, 1, &model));
    clgqa_status status = clgqa_checkpoint_load_pretrained(model, path, CLGQA_RESAMPLE_ANTIALIAS, NULL);
    clgqa_model_destroy(model);
    return status;
}

/* Eval-mode logits of `model` on tensor `input` of `file` (malloc'ed). */
static float *eval_logits(clgqa_model *model, const clgqa_tensor_set *file, const char *input) {
    size_t n;
    float *x = file_floats(file, input, &n);
    const clgqa_tensor *st = clgqa_tensor_set_find(file, input);
    int batch = (int)st->shape[0];
    cl_mem images = test_upload(x, n);
    clgqa_view no_labels = {NULL, 0};
    TEST_OK(clgqa_model_forward(model, clgqa_view_at(images, 0), no_labels, batch,
                                &(clgqa_pass){0}));
    float *logits = malloc((size_t)batch * clgqa_model_get_dims(model)->num_classes * sizeof(float));
    TEST_OK(clgqa_model_read_logits(model, logits));
    clgqa_buffer_release(&images);
    free(x);
    return logits;
}

static void check_logits(clgqa_model *model, const clgqa_tensor_set *expected, const char *input,
                         const char *want_name, double rel) {
    size_t n;
    float *want = file_floats(expected, want_name, &n);
    float *got = eval_logits(model, expected, input);
    test_assert_close_scaled(want_name, got, want, n, 0.0, rel);
    free(got);
    free(want);
}

/* ---- safetensors files assembled in memory -------------------------------------- */

#define SET_MAX 256

/* Float32 tensors to write as a safetensors file, in any float dtype. */
typedef struct tensor_set {
    size_t count;
    char names[SET_MAX][CLGQA_TENSOR_NAME_MAX];
    int ndim[SET_MAX];
    int64_t shape[SET_MAX][4];
    size_t numel[SET_MAX];
    float *data[SET_MAX];
} tensor_set;

static float *set_add(tensor_set *s, const char *name, int ndim, const int64_t *shape) {
    ck_assert_uint_lt(s->count, SET_MAX);
    size_t i = s->count++, numel = 1;
    snprintf(s->names[i], sizeof s->names[i], "%s", name);
    s->ndim[i] = ndim;
    for (int d = 0; d < ndim; d++)
        numel *= (size_t)(s->shape[i][d] = shape[d]);
    s->numel[i] = numel;
    s->data[i] = malloc(numel * sizeof(float));
    ck_assert_ptr_nonnull(s->data[i]);
    return s->data[i];
}

static float *set_find(tensor_set *s, const char *name) {
    for (size_t i = 0; i < s->count; i++)
        if (!strcmp(s->names[i], name))
            return s->data[i];
    return NULL;
}

static void set_remove(tensor_set *s, const char *name) {
    for (size_t i = 0; i < s->count; i++)
        if (!strcmp(s->names[i], name)) {
            free(s->data[i]);
            s->count--;
            memmove(s->names[i], s->names[i + 1], (s->count - i) * sizeof s->names[0]);
            memmove(&s->ndim[i], &s->ndim[i + 1], (s->count - i) * sizeof s->ndim[0]);
            memmove(s->shape[i], s->shape[i + 1], (s->count - i) * sizeof s->shape[0]);
            memmove(&s->numel[i], &s->numel[i + 1], (s->count - i) * sizeof s->numel[0]);
            memmove(&s->data[i], &s->data[i + 1], (s->count - i) * sizeof s->data[0]);
            return;
        }
    ck_abort_msg("no tensor %s to remove", name);
}

/* Every tensor of a file, as float32. */
static void set_load(tensor_set *s, const char *path) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    for (size_t i = 0; i < s->count; i++) /* replaces what the set held */
        free(s->data[i]);
    s->count = 0;
    for (size_t i = 0; i < clgqa_tensor_set_count(file); i++) {
        const clgqa_tensor *st = clgqa_tensor_set_at(file, i);
        float *x = set_add(s, st->name, st->ndim, st->shape);
        TEST_OK(clgqa_tensor_set_read_f32(file, st->name, x, st->numel));
    }
    clgqa_tensor_set_close(file);
}

static void set_free(tensor_set *s) {
    for (size_t i = 0; i < s->count; i++)
        free(s->data[i]);
    s->count = 0;
}

/* float32 -> IEEE half, round to nearest even (subnormals included). */
static uint16_t to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00); /* the fixtures hold no such values */
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        half += rest > mid || (rest == mid && (half & 1));
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13), rest = mant & 0x1fff;
    half += rest > 0x1000 || (rest == 0x1000 && (half & 1)); /* a carry bumps the exponent */
    return (uint16_t)half;
}

/* float32 -> bfloat16, round to nearest even (finite values). */
static uint16_t to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static void set_write(const tensor_set *s, const char *path, clgqa_dtype dtype) {
    clgqa_safetensor_out out[SET_MAX];
    void *converted[SET_MAX];
    for (size_t i = 0; i < s->count; i++) {
        converted[i] = NULL;
        const void *data = s->data[i];
        if (dtype != CLGQA_DTYPE_F32) {
            uint16_t *h = malloc(s->numel[i] * sizeof *h);
            ck_assert_ptr_nonnull(h);
            for (size_t j = 0; j < s->numel[i]; j++)
                h[j] = dtype == CLGQA_DTYPE_F16 ? to_f16(s->data[i][j]) : to_bf16(s->data[i][j]);
            data = converted[i] = h;
        }
        clgqa_safetensor_out t = {s->names[i], dtype, s->ndim[i], s->shape[i], data};
        out[i] = t;
    }
    clgqa_metadata_pair format = {"format", "pt"};
    TEST_OK(clgqa_safetensors_write(path, out, s->count, &format, 1));
    for (size_t i = 0; i < s->count; i++)
        free(converted[i]);
}

/* A timm ViT state_dict (fused attn.qkv) with random weights: patch `patch`,
 * `grid` x `grid` patches, width C, `depth` blocks, `classes` outputs. */
static void timm_vit(tensor_set *s, int patch, int grid, int C, int depth, int classes) {
    s->count = 0;
    int64_t cls[3] = {1, 1, C}, pos[3] = {1, 1 + grid * grid, C}, conv[4] = {C, 3, patch, patch};
    int64_t vec[1] = {C}, qkv[2] = {3 * C, C}, qkv_b[1] = {3 * C}, sq[2] = {C, C};
    int64_t fc1[2] = {4 * C, C}, fc1_b[1] = {4 * C}, fc2[2] = {C, 4 * C};
    int64_t head[2] = {classes, C}, head_b[1] = {classes};
    char name[CLGQA_TENSOR_NAME_MAX];
    set_add(s, "cls_token", 3, cls);
    set_add(s, "pos_embed", 3, pos);
    set_add(s, "patch_embed.proj.weight", 4, conv);
    set_add(s, "patch_embed.proj.bias", 1, vec);
    for (int b = 0; b < depth; b++) {
        static const char *const parts[] = {"norm1.weight", "norm1.bias", "attn.qkv.weight",
                                            "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                            "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                                            "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
        const int64_t *shapes[] = {vec, vec, qkv, qkv_b, sq, vec, vec, vec, fc1, fc1_b, fc2, vec};
        for (int p = 0; p < 12; p++) {
            snprintf(name, sizeof name, "blocks.%d.%s", b, parts[p]);
            set_add(s, name, strstr(parts[p], "weight") && !strstr(parts[p], "norm") ? 2 : 1, shapes[p]);
        }
    }
    set_add(s, "norm.weight", 1, vec);
    set_add(s, "norm.bias", 1, vec);
    set_add(s, "head.weight", 2, head);
    set_add(s, "head.bias", 1, head_b);
    /* Small weights (a trained ViT's are O(0.02..0.1)); LayerNorm gains near
     * 1. xorshift64* rather than test_fill_uniform: 22M Philox draws take
     * seconds in a Debug build, and any varied values serve here. */
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < s->count; i++) {
        int gain = strstr(s->names[i], "norm") && strstr(s->names[i], "weight");
        for (size_t j = 0; j < s->numel[i]; j++) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            float u = (float)((state * 0x2545f4914f6cdd1dull) >> 40) * 0x1p-24f; /* [0, 1) */
            s->data[i][j] = gain ? 0.8f + 0.4f * u : 0.1f * u - 0.05f;
        }
    }
}

/* ---- position embeddings --------------------------------------------------------- */

START_TEST(pos_embed_resampling_matches_torch) {
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(TIMM_EXPECTED, &expected));
    static const struct {
        const char *stem;
        int old_grid, new_grid;
    } cases[] = {{"posemb.up", 3, 5}, {"posemb.down", 4, 3}};
    for (int c = 0; c < 2; c++) {
        char name[64];
        snprintf(name, sizeof name, "%s.input", cases[c].stem);
        size_t in_n, out_n;
        float *in = file_floats(expected, name, &in_n);
        ck_assert_uint_eq(in_n, (size_t)(1 + cases[c].old_grid * cases[c].old_grid) * 12);
        for (int antialias = 0; antialias < 2; antialias++) {
            snprintf(name, sizeof name, "%s.%s", cases[c].stem, antialias ? "expected_antialias" : "expected");
            float *want = file_floats(expected, name, &out_n);
            float *got = malloc(out_n * sizeof(float));
            TEST_OK(clgqa_pos_embed_resample(in, cases[c].old_grid, got, cases[c].new_grid, 12, 1, antialias));
            test_assert_close_f(name, got, want, out_n, RESAMPLE_TOL, RESAMPLE_TOL);
            /* The class token is copied, not interpolated. */
            ck_assert(memcmp(got, in, 12 * sizeof(float)) == 0);
            free(got);
            free(want);
        }
        free(in);
    }
    clgqa_tensor_set_close(expected);

    /* The same grid is the identity for both kernels (their weights are
     * exactly 1 and 0 there). */
    float *in = test_random_array(7 * 7 * 5 + 1 * 5, -2.0f, 2.0f), out[7 * 7 * 5 + 5];
    for (int antialias = 0; antialias < 2; antialias++) {
        TEST_OK(clgqa_pos_embed_resample(in, 7, out, 7, 5, 1, antialias));
        ck_assert(memcmp(in, out, sizeof out) == 0);
    }
    /* A constant grid stays constant: the weights of every output sum to 1,
     * down to one cell and up from one. */
    float flat[1 + 16], one[1 + 1], back[1 + 9];
    for (int i = 0; i < 17; i++)
        flat[i] = i ? 0.375f : -1.0f;
    for (int antialias = 0; antialias < 2; antialias++) {
        TEST_OK(clgqa_pos_embed_resample(flat, 4, one, 1, 1, 1, antialias));
        ck_assert_float_eq_tol(one[1], 0.375f, 1e-7f);
        TEST_OK(clgqa_pos_embed_resample(one, 1, back, 3, 1, 1, antialias));
        ck_assert_float_eq(back[0], -1.0f);
        for (int i = 1; i < 10; i++)
            ck_assert_float_eq_tol(back[i], 0.375f, 1e-7f);
    }
    ck_assert_int_eq(clgqa_pos_embed_resample(in, 0, out, 2, 5, 1, 0), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_pos_embed_resample(in, 2, out, 2, 0, 1, 0), CLGQA_ERR_INVALID_ARG);
    free(in);
}
END_TEST

/* ---- timm checkpoints ---------------------------------------------------------------- */

START_TEST(timm_converts_as_the_reference_for_gqa_and_kdgqa) {
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(TIMM_EXPECTED, &expected));
    for (int s = 0; s < 2; s++) {
        const char *scheme = s ? "kdgqa" : "gqa";
        clgqa_config cfg;
        fixture_config(&cfg, scheme, 5, 9);
        char *said;
        clgqa_model *model = load_pretrained(&cfg, 4, TIMM_FIXTURE, &said);
        /* Same grid and classes: nothing resampled or re-initialised. */
        ck_assert_msg(!strstr(said, "resampled") && !strstr(said, "initialised"), "%s", said);
        free(said);
        for (int layer = 0; layer < 2; layer++)
            for (const char *part = "qkv"; *part; part++)
                for (int bias = 0; bias < 2; bias++) {
                    char name[64], ref_name[80];
                    snprintf(name, sizeof name, "blocks.%d.attn.%c.%s", layer, *part, bias ? "bias" : "weight");
                    snprintf(ref_name, sizeof ref_name, "converted.%s", name);
                    size_t n;
                    float *want = file_floats(expected, ref_name, &n);
                    ck_assert_uint_eq(n, model_numel(model, name));
                    float *got = model_floats(model, name);
                    test_assert_close_f(name, got, want, n, CONVERT_REL, 1e-7);
                    free(got);
                    free(want);
                }
        /* Every other tensor copies over exactly. */
        float *norm = model_floats(model, "blocks.1.mlp.fc2.weight");
        size_t n;
        float *timm = path_floats(TIMM_FIXTURE, "blocks.1.mlp.fc2.weight", &n);
        ck_assert(memcmp(norm, timm, n * sizeof(float)) == 0);
        free(norm);
        free(timm);

        char want_name[64];
        snprintf(want_name, sizeof want_name, "expected.%s.logits", scheme);
        check_logits(model, expected, "input", want_name, LOGITS_REL);
        if (s == 1)
            for (int layer = 0; layer < 2; layer++) {
                int32_t got[3], want[3];
                char name[64];
                snprintf(name, sizeof name, "expected.kdgqa.split.%d", layer);
                TEST_OK(clgqa_tensor_set_read_i32(expected, name, want, 3));
                TEST_OK(clgqa_model_read_grouping(model, layer, NULL, got));
                for (int g = 0; g < 3; g++)
                    ck_assert_msg(got[g] == want[g], "layer %d split[%d] = %d, want %d", layer, g,
                                  (int)got[g], (int)want[g]);
                /* The fixture's allocation is not the static one. */
                ck_assert(got[0] != 2 || got[1] != 2);
            }
        clgqa_model_destroy(model);
    }
    clgqa_tensor_set_close(expected);
}
END_TEST

/* img_size 15 from the 9-px checkpoint: grid 3 -> 5. */
START_TEST(timm_at_another_grid_resamples_pos_embed) {
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(TIMM_EXPECTED, &expected));
    clgqa_config cfg;
    fixture_config(&cfg, "gqa", 5, 15);
    /* The fixture's expectation is plain bicubic (F.interpolate's default). */
    set(&cfg, "pos_embed_antialias=false");
    char *said;
    clgqa_model *model = load_pretrained(&cfg, 2, TIMM_FIXTURE, &said);
    ck_assert_msg(strstr(said, "pos_embed resampled from 3x3 to 5x5"), "%s", said);
    free(said);
    size_t n;
    float *want = file_floats(expected, "expected.gqa.img15.pos_embed", &n);
    ck_assert_uint_eq(n, model_numel(model, "pos_embed"));
    float *got = model_floats(model, "pos_embed");
    test_assert_close_f("img15 pos_embed", got, want, n, RESAMPLE_TOL, RESAMPLE_TOL);
    free(got);
    free(want);
    check_logits(model, expected, "input.img15", "expected.gqa.img15.logits", LOGITS_REL);
    clgqa_model_destroy(model);

    /* The default: timm's antialiased kernel (a different result upsampling too). */
    fixture_config(&cfg, "gqa", 5, 15);
    ck_assert_int_eq(cfg.pos_embed_antialias, 1);
    model = load_pretrained(&cfg, 2, TIMM_FIXTURE, &said);
    ck_assert_msg(strstr(said, "pos_embed resampled from 3x3 to 5x5") && strstr(said, "antialiased"),
                  "%s", said);
    free(said);
    want = file_floats(expected, "posemb.up.expected_antialias", &n);
    got = model_floats(model, "pos_embed");
    test_assert_close_f("img15 pos_embed, antialiased", got, want, n, RESAMPLE_TOL, RESAMPLE_TOL);
    free(got);
    free(want);
    clgqa_model_destroy(model);
    clgqa_tensor_set_close(expected);
}
END_TEST

START_TEST(head_is_reinitialised_when_classes_differ) {
    clgqa_config cfg;
    fixture_config(&cfg, "kdgqa", 7, 9);
    clgqa_model *fresh;
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &fresh));
    char *said;
    clgqa_model *model = load_pretrained(&cfg, 1, TIMM_FIXTURE, &said);
    ck_assert_msg(strstr(said, "head has 5 classes, the config 7: head re-initialised"), "%s", said);
    free(said);
    /* The head keeps the model's own initialisation; the rest is the file's. */
    for (int b = 0; b < 2; b++) {
        const char *name = b ? "head.bias" : "head.weight";
        float *init = model_floats(fresh, name), *got = model_floats(model, name);
        ck_assert(memcmp(init, got, model_numel(fresh, name) * sizeof(float)) == 0);
        free(init);
        free(got);
    }
    float *got = model_floats(model, "norm.weight"), *want = path_floats(TIMM_FIXTURE, "norm.weight", NULL);
    ck_assert(memcmp(got, want, 12 * sizeof(float)) == 0);
    free(got);
    free(want);
    clgqa_model_destroy(model);

    /* A checkpoint exported without a head (timm num_classes=0). */
    char dir[] = "/tmp/clgqa-test-uptrain-XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/headless.safetensors", dir);
    tensor_set *s = calloc(1, sizeof *s);
    set_load(s, TIMM_FIXTURE);
    set_remove(s, "head.weight");
    set_remove(s, "head.bias");
    set_write(s, path, CLGQA_DTYPE_F32);
    model = load_pretrained(&cfg, 1, path, &said);
    ck_assert_msg(strstr(said, "has no head: head initialised fresh (7 classes)"), "%s", said);
    free(said);
    got = model_floats(model, "head.weight");
    want = model_floats(fresh, "head.weight");
    ck_assert(memcmp(got, want, model_numel(fresh, "head.weight") * sizeof(float)) == 0);
    free(got);
    free(want);
    clgqa_model_destroy(model);
    clgqa_model_destroy(fresh);
    set_free(s);
    free(s);
    test_remove_tree(dir);
}
END_TEST

static void assert_message_names(const char *a, const char *b, const char *c) {
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, a) && strstr(msg, b) && (!c || strstr(msg, c)), "%s", msg);
}

START_TEST(other_mismatches_are_refused_by_name) {
    clgqa_config cfg;
    /* Gray input: the patch embedding's channels differ. */
    fixture_config(&cfg, "gqa", 5, 9);
    set(&cfg, "in_chans=1");
    TEST_OK(clgqa_config_finalize(&cfg));
    ck_assert_int_eq(load_refused(&cfg, TIMM_FIXTURE), CLGQA_ERR_FORMAT);
    assert_message_names("patch_embed.proj.weight", "[12, 3, 3, 3]", "[12, 1, 3, 3]");
    /* Wider: the first tensor already differs. */
    fixture_config(&cfg, "gqa", 5, 9);
    set(&cfg, "embed_dim=18");
    TEST_OK(clgqa_config_finalize(&cfg));
    ck_assert_int_eq(load_refused(&cfg, TIMM_FIXTURE), CLGQA_ERR_FORMAT);
    assert_message_names("cls_token", "[1, 1, 12]", "[1, 1, 18]");
    /* Shallower than the checkpoint: not silently truncated. */
    fixture_config(&cfg, "gqa", 5, 9);
    set(&cfg, "num_layers=1");
    TEST_OK(clgqa_config_finalize(&cfg));
    ck_assert_int_eq(load_refused(&cfg, TIMM_FIXTURE), CLGQA_ERR_FORMAT);
    assert_message_names("blocks.1.", "block 1", "1 blocks");
    /* Key/value heads that cannot be averaged: 3 in the file, 2 in the model. */
    fixture_config(&cfg, "gqa", 5, 9);
    set(&cfg, "num_kv_heads=2");
    TEST_OK(clgqa_config_finalize(&cfg));
    ck_assert_int_eq(load_refused(&cfg, REF_GQA), CLGQA_ERR_FORMAT);
    assert_message_names("blocks.0.attn.k.weight", "[6, 12]", "3 key/value heads");

    /* A pos_embed whose grid part is not square cannot be resampled. */
    char dir[] = "/tmp/clgqa-test-uptrain-XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/odd.safetensors", dir);
    tensor_set *s = calloc(1, sizeof *s);
    set_load(s, TIMM_FIXTURE);
    set_remove(s, "pos_embed");
    int64_t odd[3] = {1, 12, 12};
    test_fill_uniform(set_add(s, "pos_embed", 3, odd), 12 * 12, -0.1f, 0.1f);
    set_write(s, path, CLGQA_DTYPE_F32);
    fixture_config(&cfg, "gqa", 5, 9);
    ck_assert_int_eq(load_refused(&cfg, path), CLGQA_ERR_FORMAT);
    assert_message_names("pos_embed", "[1, 12, 12]", "[1, 10, 12]");
    /* A fused qkv whose width is no C + 2*G*d. */
    set_load(s, TIMM_FIXTURE);
    set_remove(s, "blocks.0.attn.qkv.bias");
    int64_t short_bias[1] = {30};
    test_fill_uniform(set_add(s, "blocks.0.attn.qkv.bias", 1, short_bias), 30, -0.1f, 0.1f);
    set_write(s, path, CLGQA_DTYPE_F32);
    ck_assert_int_eq(load_refused(&cfg, path), CLGQA_ERR_FORMAT);
    assert_message_names("blocks.0.attn.qkv.bias", "[30]", "[C + 2*G*d] with C 12, d 2");
    set_free(s);
    free(s);
    test_remove_tree(dir);
}
END_TEST

/* ---- reference-layout and clgqa checkpoints -------------------------------------------- */

START_TEST(reference_and_clgqa_checkpoints_load) {
    clgqa_config cfg;
    fixture_config(&cfg, "gqa", 5, 9);
    /* The reference's gqa state_dict: as is, same eval logits. */
    clgqa_model *model = load_pretrained(&cfg, 3, REF_GQA, NULL);
    clgqa_tensor_set *ref;
    TEST_OK(clgqa_tensor_file_open(REF_GQA, &ref));
    check_logits(model, ref, "input", "expected.eval_logits", LOGITS_REL);
    clgqa_tensor_set_close(ref);

    /* clgqa's own checkpoint of that model loads back bit for bit. */
    char dir[] = "/tmp/clgqa-test-uptrain-XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/clgqa.safetensors", dir);
    TEST_OK(clgqa_checkpoint_save_model(model, path));
    clgqa_model *again = load_pretrained(&cfg, 3, path, NULL);
    size_t floats = clgqa_model_param_count(model);
    float *a = malloc(floats * sizeof(float)), *b = malloc(floats * sizeof(float));
    TEST_OK(clgqa_model_read_buffer(model, CLGQA_PARAMS, a));
    TEST_OK(clgqa_model_read_buffer(again, CLGQA_PARAMS, b));
    ck_assert(memcmp(a, b, floats * sizeof(float)) == 0);
    free(a);
    free(b);
    clgqa_model_destroy(again);
    clgqa_model_destroy(model);
    test_remove_tree(dir);

    /* The reference's MHSA state_dict (separate q/k/v, 6 key heads) into
     * G = 3: q as is, k and v averaged over pairs of heads (d = 2). */
    model = load_pretrained(&cfg, 1, REF_MHSA, NULL);
    for (int layer = 0; layer < 2; layer++)
        for (const char *part = "qkv"; *part; part++)
            for (int bias = 0; bias < 2; bias++) {
                char name[64];
                snprintf(name, sizeof name, "blocks.%d.attn.%c.%s", layer, *part, bias ? "bias" : "weight");
                size_t n;
                float *src = path_floats(REF_MHSA, name, &n);
                size_t cols = bias ? 1 : 12, head = 2 * cols, out_n = model_numel(model, name);
                float *want = malloc(out_n * sizeof(float));
                if (*part == 'q') {
                    ck_assert_uint_eq(out_n, n);
                    memcpy(want, src, n * sizeof(float));
                } else {
                    ck_assert_uint_eq(out_n, n / 2);
                    for (size_t g = 0; g < 3; g++)
                        for (size_t i = 0; i < head; i++)
                            want[g * head + i] =
                                (float)(((double)src[(2 * g) * head + i] + src[(2 * g + 1) * head + i]) / 2);
                }
                float *got = model_floats(model, name);
                test_assert_close_f(name, got, want, out_n, CONVERT_REL, 1e-7);
                free(got);
                free(want);
                free(src);
            }
    clgqa_model_destroy(model);
}
END_TEST

/* ---- PyTorch .pth files of the reference model ---------------------------------------- */

#define PTH_EXPECTED "tests/ref/fixtures/pth_expected.safetensors"

/* The fixtures' model as a YAML config for the command. */
static void write_fixture_config(const char *path, const char *scheme) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "dataset: cifar10\nin_chans: 3\nsize: c\nimg_size: 9\npatch_size: 3\nembed_dim: 12\n"
               "num_layers: 2\nnum_heads: 6\nnum_kv_heads: 3\nnum_classes: 5\natt_scheme: %s\n", scheme);
    ck_assert_int_eq(fclose(f), 0);
}

/* The DGQA state right after loading the reference's dgqa .pth: its cache,
 * and the static split its state_dict does not carry. */
static void check_static_split_and_cache(clgqa_model *model, const char *pth) {
    for (int layer = 0; layer < 2; layer++) {
        float cache[3], want[3];
        int32_t split[3];
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.cache", layer);
        clgqa_tensor_set *file;
        TEST_OK(clgqa_tensor_file_open(pth, &file));
        TEST_OK(clgqa_tensor_set_read_f32(file, name, want, 3));
        clgqa_tensor_set_close(file);
        TEST_OK(clgqa_model_read_grouping(model, layer, cache, split));
        for (int g = 0; g < 3; g++) {
            ck_assert_msg(split[g] == 2, "layer %d split[%d] = %d, want the static 2", layer, g, (int)split[g]);
            ck_assert_msg(cache[g] == want[g], "layer %d cache[%d] = %g, want %g", layer, g, cache[g], want[g]);
            ck_assert(want[g] != 0.0f);
        }
    }
}

/* torch.save(model.state_dict()) of the reference model for gqa (also with
 * a fused qkv [C + 2*G*d, C]) and for dgqa_diff without the split gives the
 * reference's evaluation logits to 1e-4 (LOGITS_REL) through every way in:
 * `clgqa convert` then the converted file (eval --checkpoint), the .pth
 * itself as eval --checkpoint, and as pretrained_ckpt. */
START_TEST(reference_pth_files_give_the_reference_logits) {
    static const struct {
        const char *pth, *scheme;
    } cases[] = {
        {"tests/ref/fixtures/reference_gqa.pth", "gqa"},
        {"tests/ref/fixtures/reference_gqa_qkv.pth", "gqa"},
        {"tests/ref/fixtures/reference_dgqa_diff.pth", "dgqa_diff"},
    };
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(PTH_EXPECTED, &expected));
    char *dir = test_temp_dir();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *scheme = cases[c].scheme, *pth = cases[c].pth;
        int dgqa = !strcmp(scheme, "dgqa_diff");
        char config[600], converted[600], args[2048], err[4096], input[64], want[64];
        snprintf(config, sizeof config, "%s/%s.yaml", dir, scheme);
        snprintf(converted, sizeof converted, "%s/converted.safetensors", dir);
        snprintf(input, sizeof input, "%s.input", scheme);
        snprintf(want, sizeof want, "%s.eval_logits", scheme);
        write_fixture_config(config, scheme);
        clgqa_config cfg;
        fixture_config(&cfg, scheme, 5, 9);

        snprintf(args, sizeof args, "convert '%s' --in '%s' --out '%s'", config, pth, converted);
        ck_assert_msg(test_run_clgqa("", args, NULL, 0, err, sizeof err) == 0, "%s: %s", pth, err);
        ck_assert_msg(!dgqa == !strstr(err, "no split"), "%s: %s", pth, err);
        clgqa_model *model;
        TEST_OK(test_model_create(test_runtime(), &cfg, 3, &model));
        TEST_OK(clgqa_checkpoint_load_model(model, converted, NULL));
        if (dgqa)
            check_static_split_and_cache(model, pth);
        check_logits(model, expected, input, want, LOGITS_REL);
        clgqa_model_destroy(model);

        char *said = NULL;
        size_t said_size = 0;
        FILE *log = open_memstream(&said, &said_size);
        TEST_OK(test_model_create(test_runtime(), &cfg, 3, &model));
        TEST_OK(clgqa_checkpoint_load_model(model, pth, log));
        fclose(log);
        if (dgqa) {
            ck_assert_msg(strstr(said, "no split") && strstr(said, "static split") &&
                          strchr(said, '\n') == said + strlen(said) - 1, "said (one line): %s", said);
            check_static_split_and_cache(model, pth);
        } else {
            ck_assert_msg(!*said, "said: %s", said);
        }
        free(said);
        check_logits(model, expected, input, want, LOGITS_REL);
        clgqa_model_destroy(model);

        model = load_pretrained(&cfg, 3, pth, &said);
        ck_assert_msg(!dgqa == !strstr(said, "no split"), "said: %s", said);
        free(said);
        if (dgqa)
            check_static_split_and_cache(model, pth);
        check_logits(model, expected, input, want, LOGITS_REL);
        clgqa_model_destroy(model);
    }
    /* `clgqa eval --checkpoint` takes the .pth itself, saying in one line
     * that the DGQA split starts static (on 5 generated 9x9 images, one per
     * class: the command runs end to end; the logits are checked above). */
    char data[600], config[600], args[2048], out[4096], err[4096];
    snprintf(data, sizeof data, "%s/images", dir);
    ck_assert_int_eq(gen_image_folder(data, 5, 1, 1, 9, 1), 0);
    snprintf(config, sizeof config, "%s/dgqa_diff.yaml", dir);
    snprintf(args, sizeof args, "eval '%s' --checkpoint tests/ref/fixtures/reference_dgqa_diff.pth --set "
             "dataset=imagefolder --set data_dir='%s' --set batch_size=5", config, data);
    ck_assert_msg(test_run_clgqa("", args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    test_assert_one_line_naming(err, "no split");
    ck_assert_msg(strstr(out, "(5 images)"), "%s", out);

    /* The fused qkv of a grouped model holds G = 3 key heads: a model with
     * G = 1 takes it through conversion (averaged), not as a checkpoint. */
    clgqa_config one;
    fixture_config(&one, "gqa", 5, 9);
    set(&one, "num_kv_heads=1");
    TEST_OK(clgqa_config_finalize(&one));
    clgqa_model *model;
    TEST_OK(test_model_create(test_runtime(), &one, 1, &model));
    ck_assert_int_eq(clgqa_checkpoint_load_model(model, "tests/ref/fixtures/reference_gqa_qkv.pth", NULL),
                     CLGQA_ERR_FORMAT);
    ck_assert_msg(strstr(clgqa_error_message(), "holds 3 key/value heads, the model has 1"), "%s",
                  clgqa_error_message());
    TEST_OK(clgqa_checkpoint_load_pretrained(model, "tests/ref/fixtures/reference_gqa_qkv.pth",
                                             CLGQA_RESAMPLE_ANTIALIAS, NULL));
    clgqa_model_destroy(model);
    clgqa_tensor_set_close(expected);
    test_remove_tree(dir);
    free(dir);
}
END_TEST

/* ---- half-precision files ------------------------------------------------------------- */

/* Rounding a weight to F16 changes it by at most 2^-11 of itself (normal
 * range; 2^-25 absolute below it), to BF16 by 2^-8. The logits move by a
 * few times that relative to their scale: the PyTorch reference on the
 * rounded weights moves them by 4.5e-4 (F16) and 3.9e-3 (BF16) of the
 * largest logit; the bounds below leave ~4x room and stay far below what a
 * mis-decoded tensor gives (O(1)). */
START_TEST(f16_and_bf16_checkpoints_load) {
    static const struct {
        clgqa_dtype dtype;
        double weight_rel, logits_rel;
    } cases[] = {{CLGQA_DTYPE_F16, 0x1p-11, 2e-3}, {CLGQA_DTYPE_BF16, 0x1p-8, 1.5e-2}};
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(TIMM_EXPECTED, &expected));
    char dir[] = "/tmp/clgqa-test-uptrain-XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tensor_set *s = calloc(1, sizeof *s);
    set_load(s, TIMM_FIXTURE);
    clgqa_config cfg;
    fixture_config(&cfg, "gqa", 5, 9);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, clgqa_dtype_name(cases[c].dtype));
        set_write(s, path, cases[c].dtype);
        clgqa_tensor_set *file;
        TEST_OK(clgqa_tensor_file_open(path, &file));
        ck_assert_int_eq(clgqa_tensor_set_find(file, "pos_embed")->dtype, cases[c].dtype);
        clgqa_tensor_set_close(file);
        clgqa_model *model = load_pretrained(&cfg, 4, path, NULL);
        static const char *const copied[] = {"pos_embed", "patch_embed.proj.weight",
                                             "blocks.0.mlp.fc1.weight", "head.weight"};
        for (int t = 0; t < 4; t++) {
            float *got = model_floats(model, copied[t]);
            test_assert_close_f(copied[t], got, set_find(s, copied[t]), model_numel(model, copied[t]),
                                cases[c].weight_rel, 0x1p-25);
            free(got);
        }
        check_logits(model, expected, "input", "expected.gqa.logits", cases[c].logits_rel);
        clgqa_model_destroy(model);
    }
    set_free(s);
    free(s);
    test_remove_tree(dir);
    clgqa_tensor_set_close(expected);
}
END_TEST

/* ---- ViT-S/B/L at 224 ------------------------------------------------------------------ */

/* One training step of ViT-S/16 at 224 (batch 1): the preset's shapes, a
 * loss near ln(100) from the initialisation, and a lower loss on the same
 * image after one AdamW step. */
START_TEST(vit_s_at_224_trains_a_step) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    set(&cfg, "dataset=cifar100");
    set(&cfg, "in_chans=3");
    set(&cfg, "size=s");
    set(&cfg, "att_scheme=kdgqa");
    set(&cfg, "num_kv_heads=3");
    TEST_OK(clgqa_config_finalize(&cfg));
    clgqa_model *model;
    TEST_OK(test_model_create(test_runtime(), &cfg, 1, &model));
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    ck_assert_int_eq(dims->img_size, 224);
    ck_assert_int_eq(dims->patch_size, 16);
    ck_assert_int_eq(dims->tokens, 197);
    ck_assert_int_eq(dims->embed_dim, 384);
    ck_assert_int_eq(dims->num_layers, 12);
    ck_assert_int_eq(dims->num_heads, 6);
    ck_assert_int_eq(dims->num_classes, 100);
    /* timm's ViT-S/16 has 22,050,664 with 1000 classes; 100 classes and k, v
     * at 3 of 6 heads leave 19,930,084. */
    ck_assert_uint_eq(clgqa_model_param_count(model), 19930084);

    size_t pixels = 3 * 224 * 224;
    float *x = test_random_array(pixels, -1.0f, 1.0f);
    int32_t label = 42;
    cl_mem images = test_upload(x, pixels), labels = test_upload_int(&label, 1);
    clgqa_adamw hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 0};
    clgqa_metrics before, after;
    TEST_OK(clgqa_model_forward(model, clgqa_view_at(images, 0), clgqa_view_at(labels, 0), 1,
                                &(clgqa_pass){1, 0, 0}));
    TEST_OK(clgqa_model_backward(model));
    TEST_OK(clgqa_model_step(model, &hp, 1));
    TEST_OK(clgqa_model_read_metrics(model, &before));
    TEST_OK(clgqa_model_forward(model, clgqa_view_at(images, 0), clgqa_view_at(labels, 0), 1,
                                &(clgqa_pass){0, 1, 1}));
    TEST_OK(clgqa_model_read_metrics(model, &after));
    /* Initial logits are O(0.1) (std-0.02 head on a LayerNormed token). */
    ck_assert_msg(fabs(before.last_loss - log(100.0)) < 0.5, "initial loss %g", before.last_loss);
    ck_assert_msg(after.last_loss < before.last_loss - 0.1, "loss %g -> %g", before.last_loss,
                  after.last_loss);
    clgqa_buffer_release(&images);
    clgqa_buffer_release(&labels);
    free(x);
    clgqa_model_destroy(model);
}
END_TEST

/* ---- scripts/uptrain's conversions ------------------------------------------------------ */

/* An MHSA checkpoint as scripts/uptrain's stage 1 writes it (separate q/k/v,
 * H 8) converted to every scheme with G = 1, 2 and 4 as `clgqa convert`
 * does (load_pretrained, then the file written), loaded back as `clgqa eval`
 * and `pretrained_ckpt` load it: the evaluation logits are the PyTorch
 * reference's after its mean-pooled conversion, within 1e-4 of the largest
 * logit (LOGITS_REL), and KDGQA and DGQA group as it does. */
START_TEST(mhsa_checkpoint_converts_to_every_scheme_as_torch) {
    static const char *const schemes[] = {"mhsa", "gqa", "kdgqa", "dgqa_diff", "dgqa_ema", "pgqa"};
    static const int kv_heads[] = {1, 2, 4};
    clgqa_tensor_set *expected;
    TEST_OK(clgqa_tensor_file_open(UPTRAIN_EXPECTED, &expected));
    char *dir = test_temp_dir(), path[600];
    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/converted.safetensors", dir);
    int checked = 0;
    for (int s = 0; s < 6; s++)
        for (int k = 0; k < 3; k++) {
            const char *scheme = schemes[s];
            const int G = kv_heads[k];
            if (s == 0 && k > 0)
                continue; /* mhsa: G = H whatever num_kv_heads says */
            clgqa_config cfg;
            clgqa_config_defaults(&cfg);
            char buf[64];
            const char *const sets[] = {"dataset=cifar10", "in_chans=3", "size=c", "img_size=9",
                                        "patch_size=3", "embed_dim=16", "num_layers=2", "num_heads=8",
                                        "num_classes=5", "window_size=3"};
            for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
                set(&cfg, sets[i]);
            setf(&cfg, "num_kv_heads", G);
            snprintf(buf, sizeof buf, "att_scheme=%s", scheme);
            set(&cfg, buf);
            TEST_OK(clgqa_config_finalize(&cfg));
            clgqa_model *converted = load_pretrained(&cfg, 4, UPTRAIN_MHSA, NULL);
            TEST_OK(clgqa_checkpoint_save_model(converted, path));
            clgqa_model_destroy(converted);
            clgqa_model *model;
            TEST_OK(test_model_create(test_runtime(), &cfg, 4, &model));
            TEST_OK(clgqa_checkpoint_load_model(model, path, NULL));
            const int dgqa = !strncmp(scheme, "dgqa", 4), groups = s == 0 ? 8 : G;
            ck_assert_int_eq(clgqa_model_get_dims(model)->kv_heads, groups);
            if (dgqa) /* as converted: cache 0, the static split */
                for (int layer = 0; layer < 2; layer++) {
                    float cache[4];
                    int32_t split[4];
                    TEST_OK(clgqa_model_read_grouping(model, layer, cache, split));
                    for (int g = 0; g < G; g++)
                        ck_assert_msg(cache[g] == 0.0f && split[g] == 8 / G, "%s G %d layer %d: cache %g, split %d",
                                      scheme, G, layer, cache[g], (int)split[g]);
                }
            if (!strcmp(scheme, "pgqa"))
                for (int layer = 0; layer < 2; layer++) {
                    char name[64];
                    snprintf(name, sizeof name, "pgqa_noise.g%d.%d", G, layer);
                    float *u = file_floats(expected, name, NULL);
                    TEST_OK(clgqa_model_set_pgqa_noise(model, layer, u));
                    free(u);
                }
            char want[64];
            if (s == 0)
                snprintf(want, sizeof want, "expected.mhsa.logits");
            else
                snprintf(want, sizeof want, "expected.%s.g%d.logits", scheme, G);
            check_logits(model, expected, "input", want, LOGITS_REL);
            if (!strcmp(scheme, "kdgqa") || dgqa)
                for (int layer = 0; layer < 2; layer++) {
                    int32_t got[4], split[4];
                    char name[64];
                    snprintf(name, sizeof name, "expected.%s.g%d.split.%d", scheme, G, layer);
                    TEST_OK(clgqa_tensor_set_read_i32(expected, name, split, (size_t)G));
                    TEST_OK(clgqa_model_read_grouping(model, layer, NULL, got));
                    for (int g = 0; g < G; g++)
                        ck_assert_msg(got[g] == split[g], "%s G %d layer %d: split[%d] = %d, want %d", scheme,
                                      G, layer, g, (int)got[g], (int)split[g]);
                }
            clgqa_model_destroy(model);
            checked++;
        }
    ck_assert_int_eq(checked, 1 + 5 * 3);
    clgqa_tensor_set_close(expected);
    test_remove_tree(dir);
    free(dir);
}
END_TEST

/* ---- the shipped uptraining config through the CLI -------------------------------------- */

/* The README's recipe: a timm vit_small_patch16_224 state_dict (random
 * weights, ImageNet head) converted with configs/vit-s-cifar100-uptrain.yaml
 * (32x32 CIFAR-100: grid 2), then one training step from the result. */
START_TEST(uptrain_config_converts_and_trains) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    TEST_OK(clgqa_config_load(&cfg, UPTRAIN_CONFIG));
    TEST_OK(clgqa_config_finalize(&cfg));
    ck_assert_int_eq(cfg.size, 's');
    ck_assert_int_eq(cfg.embed_dim, 384);
    ck_assert_int_eq(cfg.img_size, 32);
    ck_assert_int_eq(cfg.patch_size, 16);
    ck_assert_int_eq(cfg.num_classes, 100);
    ck_assert_int_eq(cfg.in_chans, 3);
    ck_assert_int_eq(cfg.pretrained, 1);
    ck_assert_int_eq(cfg.num_heads % cfg.num_kv_heads, 0);

    char *dir = test_temp_dir(), timm_path[512], out_path[512], args[4096], err[8192];
    snprintf(timm_path, sizeof timm_path, "%s/vit_s16.safetensors", dir);
    snprintf(out_path, sizeof out_path, "%s/vit_s16_gqa.safetensors", dir);
    tensor_set *s = calloc(1, sizeof *s);
    timm_vit(s, 16, 14, 384, 12, 1000);
    set_write(s, timm_path, CLGQA_DTYPE_F32);

    snprintf(args, sizeof args, "convert %s --in '%s' --out '%s'", UPTRAIN_CONFIG, timm_path, out_path);
    ck_assert_msg(test_run_clgqa("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(strstr(err, "pos_embed resampled from 14x14 to 2x2") &&
                  strstr(err, "head has 1000 classes, the config 100: head re-initialised"), "%s", err);
    clgqa_tensor_set *out;
    TEST_OK(clgqa_tensor_file_open(out_path, &out));
    float *pos = file_floats(out, "pos_embed", NULL), want_pos[5 * 384];
    TEST_OK(clgqa_pos_embed_resample(set_find(s, "pos_embed"), 14, want_pos, 2, 384, 1, 1));
    ck_assert(memcmp(pos, want_pos, sizeof want_pos) == 0);
    size_t n;
    float *v = file_floats(out, "blocks.11.attn.v.bias", &n);
    const float *qkv_bias = set_find(s, "blocks.11.attn.qkv.bias");
    ck_assert_uint_eq(n, 3 * 64); /* G 3, d 64 */
    for (size_t g = 0; g < 3; g++)
        for (size_t i = 0; i < 64; i++) {
            double mean = ((double)qkv_bias[768 + 2 * g * 64 + i] + qkv_bias[768 + (2 * g + 1) * 64 + i]) / 2;
            ck_assert_float_eq_tol(v[g * 64 + i], (float)mean, 1e-7f);
        }
    free(pos);
    free(v);
    clgqa_tensor_set_close(out);
    set_free(s);
    free(s);

    /* One step on a generated CIFAR-100 from the converted checkpoint. */
    char data[600];
    snprintf(data, sizeof data, "%s/cifar-100-binary", dir);
    ck_assert_int_eq(gen_mkdirs(data), 0);
    ck_assert_int_eq(gen_cifar(data, 1, 2, 4), 0);
    snprintf(args, sizeof args,
             "train %s --set data_dir='%s' --set pretrained_ckpt='%s' --set out_dir='%s/run' "
             "--set epochs=1 --set max_steps_per_epoch=1 --set batch_size=2 --set max_eval_batches=1 "
             "--set save_model=false", UPTRAIN_CONFIG, data, out_path, dir);
    ck_assert_msg(test_run_clgqa("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    char run_csv[600];
    snprintf(run_csv, sizeof run_csv, "%s/run/run.csv", dir);
    FILE *f = fopen(run_csv, "r");
    ck_assert_msg(f != NULL, "no %s: %s", run_csv, err);
    char header[256], row[256];
    ck_assert_ptr_nonnull(fgets(header, sizeof header, f));
    ck_assert_ptr_nonnull(fgets(row, sizeof row, f));
    fclose(f);
    ck_assert_msg(!strncmp(row, "1,", 2), "%s", row);
    test_remove_tree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("uptrain");
    TCase *tc = tcase_create("uptrain");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pos_embed_resampling_matches_torch);
    tcase_add_test(tc, timm_converts_as_the_reference_for_gqa_and_kdgqa);
    tcase_add_test(tc, timm_at_another_grid_resamples_pos_embed);
    tcase_add_test(tc, head_is_reinitialised_when_classes_differ);
    tcase_add_test(tc, other_mismatches_are_refused_by_name);
    tcase_add_test(tc, reference_and_clgqa_checkpoints_load);
    tcase_add_test(tc, reference_pth_files_give_the_reference_logits);
    tcase_add_test(tc, f16_and_bf16_checkpoints_load);
    tcase_add_test(tc, vit_s_at_224_trains_a_step);
    tcase_add_test(tc, uptrain_config_converts_and_trains);
    tcase_add_test(tc, mhsa_checkpoint_converts_to_every_scheme_as_torch);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
