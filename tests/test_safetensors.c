/* safetensors: a file written by Python's safetensors read value for value
 * and rewritten byte for byte; F16/BF16 decoding checked exhaustively;
 * write/read round trips of every dtype; every corruption class refused
 * with a message naming the problem; atomic writes. */
#include "safetensors.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/test_util.h"

#define FIXTURE "tests/fixtures/python.safetensors"

#define TMP_TEMPLATE "/tmp/clgqa_test_safetensors_XXXXXX"
static char tmp_dir[sizeof TMP_TEMPLATE];

/* The template is reset here, not in teardown, which a failed test in
 * no-fork mode may skip. */
static void setup(void) {
    strcpy(tmp_dir, TMP_TEMPLATE);
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static size_t count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void teardown(void) { test_remove_tree(tmp_dir); }

static const char *tmp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static unsigned char *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(*size ? *size : 1);
    ck_assert_uint_eq(fread(bytes, 1, *size, f), *size);
    fclose(f);
    return bytes;
}

#define ASSERT_MESSAGE_HAS(needle)                                                                       \
    ck_assert_msg(strstr(clgqa_error_message(), needle), "message '%s' lacks '%s'", clgqa_error_message(), \
                  needle)

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- a file from Python's safetensors ------------------------------------ */

START_TEST(python_file_values) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(FIXTURE, &file));
    ck_assert_uint_eq(clgqa_tensor_set_count(file), 12);
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "format"), "pt");
    ck_assert_ptr_null(clgqa_tensor_set_metadata(file, "missing"));
    ck_assert_str_eq(clgqa_tensor_set_label(file), FIXTURE);
    /* Enumeration is in name order. */
    ck_assert_str_eq(clgqa_tensor_set_at(file, 0)->name, "bf16");
    ck_assert_str_eq(clgqa_tensor_set_at(file, 11)->name, "step");
    ck_assert_ptr_null(clgqa_tensor_set_at(file, 12));

    const clgqa_tensor *t = clgqa_tensor_set_find(file, "blocks.0.attn.q.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, CLGQA_DTYPE_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 4);
    ck_assert_int_eq(t->shape[1], 6);
    ck_assert_uint_eq(t->numel, 24);
    ck_assert_uint_eq(t->nbytes, 96);
    float w[24];
    TEST_OK(clgqa_tensor_set_read_f32(file, "blocks.0.attn.q.weight", w, 24));
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(w[i], (float)i / 8.0f - 1.0f);
    float b[4];
    TEST_OK(clgqa_tensor_set_read_f32(file, "blocks.0.attn.q.bias", b, 4));
    ck_assert(same_bits(b[1], -0.2f) && same_bits(b[3], 1e-30f));

    /* F16, BF16 and F64 decode exactly as torch's .float() does. */
    static const char *const low[] = {"f16", "bf16", "f64"};
    for (int k = 0; k < 3; k++) {
        char as_f32[32];
        snprintf(as_f32, sizeof as_f32, "%s.as_f32", low[k]);
        float got[12], want[12];
        size_t n = clgqa_tensor_set_find(file, low[k])->numel;
        TEST_OK(clgqa_tensor_set_read_f32(file, low[k], got, n));
        TEST_OK(clgqa_tensor_set_read_f32(file, as_f32, want, n));
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(same_bits(got[i], want[i]), "%s[%zu]: %a, torch %a", low[k], i, got[i], want[i]);
    }
    /* ... and those are the values the script wrote. */
    float f16[12], bf16[12];
    TEST_OK(clgqa_tensor_set_read_f32(file, "f16", f16, 12));
    TEST_OK(clgqa_tensor_set_read_f32(file, "bf16", bf16, 12));
    ck_assert(signbit(f16[1]) && f16[1] == 0.0f);
    ck_assert_float_eq(f16[3], -2.5f);
    ck_assert_float_eq(f16[5], 65504.0f);
    ck_assert_float_eq(f16[8], ldexpf(1.0f, -24)); /* smallest subnormal */
    ck_assert_float_eq(f16[9], ldexpf(1.0f, -15)); /* a subnormal */
    ck_assert(isinf(f16[10]) && f16[10] > 0 && isinf(f16[11]) && f16[11] < 0);
    ck_assert_float_eq(bf16[4], 3.140625f);
    ck_assert_float_eq(bf16[7], ldexpf(1.0f, -133)); /* smallest subnormal */
    ck_assert_float_eq(bf16[9], -7.0f);

    int64_t split[3];
    TEST_OK(clgqa_tensor_set_read_i64(file, "blocks.0.attn.split", split, 3));
    ck_assert(split[0] == 3 && split[1] == 0 && split[2] == 1);
    int32_t split32[3];
    TEST_OK(clgqa_tensor_set_read_i32(file, "blocks.0.attn.split", split32, 3));
    ck_assert(split32[0] == 3 && split32[1] == 0 && split32[2] == 1);
    float splitf[3];
    TEST_OK(clgqa_tensor_set_read_f32(file, "blocks.0.attn.split", splitf, 3));
    ck_assert(splitf[0] == 3.0f && splitf[2] == 1.0f);

    t = clgqa_tensor_set_find(file, "step");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_uint_eq(t->numel, 1);
    int64_t step;
    TEST_OK(clgqa_tensor_set_read_i64(file, "step", &step, 1));
    ck_assert(step == 123456789012ll);
    int32_t step32;
    ck_assert_int_eq(clgqa_tensor_set_read_i32(file, "step", &step32, 1), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("tensor 'step': element 0 does not fit int32");

    int32_t i32[4];
    TEST_OK(clgqa_tensor_set_read_i32(file, "i32", i32, 4));
    ck_assert(i32[0] == INT32_MIN && i32[1] == INT32_MAX && i32[2] == 0 && i32[3] == -1);

    t = clgqa_tensor_set_find(file, "empty");
    ck_assert_uint_eq(t->numel, 0);
    ck_assert_int_eq(t->shape[0], 0);
    ck_assert_int_eq(t->shape[1], 5);
    TEST_OK(clgqa_tensor_set_read_f32(file, "empty", NULL, 0));
    ck_assert_int_eq(clgqa_tensor_set_read_i64(file, "empty", NULL, 0), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("tensor 'empty' is F32, not an integer tensor");
    clgqa_tensor_set_close(file);
}
END_TEST

/* clgqa's writer, given the tensors of the Python file, writes the same bytes. */
START_TEST(writer_matches_python_bytes) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(FIXTURE, &file));
    size_t n = clgqa_tensor_set_count(file);
    clgqa_safetensor_out out[16];
    for (size_t i = 0; i < n; i++) {
        const clgqa_tensor *t = clgqa_tensor_set_at(file, i);
        out[i] = (clgqa_safetensor_out){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    clgqa_metadata_pair meta = {"format", "pt"};
    const char *path = tmp_path("rewritten.safetensors");
    TEST_OK(clgqa_safetensors_write(path, out, n, &meta, 1));
    clgqa_tensor_set_close(file);

    size_t want_size, got_size;
    unsigned char *want = read_whole(FIXTURE, &want_size), *got = read_whole(path, &got_size);
    ck_assert_uint_eq(got_size, want_size);
    ck_assert_int_eq(memcmp(got, want, want_size), 0);
    free(want);
    free(got);
}
END_TEST

/* ---- F16 / BF16 decoding, all 65536 patterns each --------------------------- */

/* The value of a half / bfloat16 from its fields by arithmetic, independent
 * of the library's bit manipulation. */
static float half_value(uint16_t h) {
    int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    float magnitude = exponent == 0x1f ? (mantissa ? NAN : INFINITY)
                      : exponent == 0  ? ldexpf((float)mantissa, -24)
                                       : ldexpf((float)(1024 + mantissa), exponent - 25);
    return sign ? -magnitude : magnitude;
}

static float bf16_value(uint16_t b) {
    int sign = b >> 15, exponent = (b >> 7) & 0xff, mantissa = b & 0x7f;
    float magnitude = exponent == 0xff ? (mantissa ? NAN : INFINITY)
                      : exponent == 0  ? ldexpf((float)mantissa, -133)
                                       : ldexpf((float)(128 + mantissa), exponent - 134);
    return sign ? -magnitude : magnitude;
}

START_TEST(half_and_bfloat16_exhaustive) {
    static uint16_t bits[65536];
    static float got[65536];
    for (uint32_t i = 0; i < 65536; i++)
        bits[i] = (uint16_t)i;
    int64_t shape[1] = {65536};
    clgqa_safetensor_out out[2] = {{"h", CLGQA_DTYPE_F16, 1, shape, bits}, {"b", CLGQA_DTYPE_BF16, 1, shape, bits}};
    const char *path = tmp_path("halves.safetensors");
    TEST_OK(clgqa_safetensors_write(path, out, 2, NULL, 0));
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));

    TEST_OK(clgqa_tensor_set_read_f32(file, "h", got, 65536));
    for (uint32_t i = 0; i < 65536; i++) {
        float want = half_value((uint16_t)i);
        ck_assert_msg(isnan(want) ? isnan(got[i]) : same_bits(got[i], want), "F16 0x%04x: got %a want %a", i,
                      (double)got[i], (double)want);
    }
    TEST_OK(clgqa_tensor_set_read_f32(file, "b", got, 65536));
    for (uint32_t i = 0; i < 65536; i++) {
        float want = bf16_value((uint16_t)i);
        ck_assert_msg(isnan(want) ? isnan(got[i]) : same_bits(got[i], want), "BF16 0x%04x: got %a want %a", i,
                      (double)got[i], (double)want);
    }
    clgqa_tensor_set_close(file);
}
END_TEST

/* A few patterns spelled out, as documentation of the formats. */
START_TEST(half_and_bfloat16_known_values) {
    static const struct { uint16_t bits; float f16, bf16; } cases[] = {
        {0x3c00, 1.0f, 0x1p-7f},           {0xc000, -2.0f, -2.0f},
        {0x7bff, 65504.0f, 0x1.fep+120f},  {0x0001, 0x1p-24f, 0x1p-133f},
        {0x0400, 0x1p-14f, 0x1p-119f},     {0x3f80, 1.875f, 1.0f},
        {0x4049, 2.142578125f, 3.140625f}, {0x8000, -0.0f, -0.0f},
    };
    uint16_t bits[8];
    for (int i = 0; i < 8; i++)
        bits[i] = cases[i].bits;
    int64_t shape[1] = {8};
    clgqa_safetensor_out out[2] = {{"h", CLGQA_DTYPE_F16, 1, shape, bits}, {"b", CLGQA_DTYPE_BF16, 1, shape, bits}};
    const char *path = tmp_path("known.safetensors");
    TEST_OK(clgqa_safetensors_write(path, out, 2, NULL, 0));
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    float h[8], b[8];
    TEST_OK(clgqa_tensor_set_read_f32(file, "h", h, 8));
    TEST_OK(clgqa_tensor_set_read_f32(file, "b", b, 8));
    for (int i = 0; i < 8; i++) {
        ck_assert_msg(same_bits(h[i], cases[i].f16), "F16 0x%04x: %a", cases[i].bits, (double)h[i]);
        ck_assert_msg(same_bits(b[i], cases[i].bf16), "BF16 0x%04x: %a", cases[i].bits, (double)b[i]);
    }
    clgqa_tensor_set_close(file);
}
END_TEST

/* ---- round trip of every dtype ------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) {
    /* xorshift64*: deterministic test data, not the library's generator. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Element i of raw little-endian bytes of dtype as a double (the value the
 * reader should produce before rounding to float), for integer dtypes. */
static double integer_value(clgqa_dtype dtype, const unsigned char *bytes, size_t i) {
    switch (dtype) {
    case CLGQA_DTYPE_BOOL: return bytes[i] != 0;
    case CLGQA_DTYPE_U8: return bytes[i];
    case CLGQA_DTYPE_I8: return (int8_t)bytes[i];
    case CLGQA_DTYPE_I16: { int16_t x; memcpy(&x, bytes + 2 * i, 2); return x; }
    case CLGQA_DTYPE_U16: { uint16_t x; memcpy(&x, bytes + 2 * i, 2); return x; }
    case CLGQA_DTYPE_I32: { int32_t x; memcpy(&x, bytes + 4 * i, 4); return x; }
    case CLGQA_DTYPE_U32: { uint32_t x; memcpy(&x, bytes + 4 * i, 4); return x; }
    default: ck_abort_msg("not a small integer dtype"); return 0;
    }
}

START_TEST(round_trip_every_dtype) {
    enum { N = 15 };
    int64_t shape[3] = {3, 1, 5};
    static const clgqa_dtype all[] = {
        CLGQA_DTYPE_BOOL, CLGQA_DTYPE_U8,  CLGQA_DTYPE_I8,  CLGQA_DTYPE_F8_E5M2, CLGQA_DTYPE_F8_E4M3,
        CLGQA_DTYPE_I16,  CLGQA_DTYPE_U16, CLGQA_DTYPE_F16, CLGQA_DTYPE_BF16,    CLGQA_DTYPE_I32,
        CLGQA_DTYPE_U32,  CLGQA_DTYPE_F32, CLGQA_DTYPE_F64, CLGQA_DTYPE_I64,     CLGQA_DTYPE_U64};
    enum { TYPES = sizeof all / sizeof all[0] };
    unsigned char data[TYPES][N * 8];
    char names[TYPES][16];
    clgqa_safetensor_out out[TYPES];
    for (int k = 0; k < TYPES; k++) {
        size_t size = clgqa_dtype_size(all[k]);
        for (size_t i = 0; i < N; i++) {
            uint64_t r = next_random();
            if (all[k] == CLGQA_DTYPE_F32) {
                float x = (float)((double)(r >> 11) / 9007199254740992.0 * 200.0 - 100.0);
                memcpy(data[k] + 4 * i, &x, 4);
            } else if (all[k] == CLGQA_DTYPE_F64) {
                double x = (double)(r >> 11) / 9007199254740992.0 * 2e6 - 1e6;
                memcpy(data[k] + 8 * i, &x, 8);
            } else if (all[k] == CLGQA_DTYPE_BOOL) {
                data[k][i] = r & 1;
            } else if (all[k] == CLGQA_DTYPE_U64) {
                r >>= 1; /* stays within int64 so read_i64 accepts it */
                memcpy(data[k] + 8 * i, &r, 8);
            } else {
                memcpy(data[k] + size * i, &r, size);
            }
        }
        /* Names in reverse dtype order, so name order and write order differ. */
        snprintf(names[k], sizeof names[k], "t%02d_%s", TYPES - k, clgqa_dtype_name(all[k]));
        out[k] = (clgqa_safetensor_out){names[k], all[k], 3, shape, data[k]};
    }
    clgqa_metadata_pair meta[2] = {{"step", "7"}, {"config", "att_scheme: kdgqa\n\"quoted\""}};
    const char *path = tmp_path("all.safetensors");
    TEST_OK(clgqa_safetensors_write(path, out, TYPES, meta, 2));

    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_uint_eq(clgqa_tensor_set_count(file), TYPES);
    ck_assert_str_eq(clgqa_tensor_set_metadata(file, "config"), "att_scheme: kdgqa\n\"quoted\"");
    ck_assert_uint_eq(clgqa_tensor_set_metadata_count(file), 2);
    const char *key, *value;
    clgqa_tensor_set_metadata_at(file, 1, &key, &value);
    ck_assert_str_eq(key, "step");
    ck_assert_str_eq(value, "7");

    for (int k = 0; k < TYPES; k++) {
        const clgqa_tensor *t = clgqa_tensor_set_find(file, names[k]);
        ck_assert_ptr_nonnull(t);
        size_t size = clgqa_dtype_size(all[k]);
        ck_assert_int_eq(t->dtype, all[k]);
        ck_assert_int_eq(t->ndim, 3);
        ck_assert(t->shape[0] == 3 && t->shape[1] == 1 && t->shape[2] == 5);
        ck_assert_int_eq(memcmp(t->data, data[k], N * size), 0);
        /* Python's layout: every tensor aligned to its element size. */
        ck_assert_uint_eq((uintptr_t)t->data % size, 0);

        float f[N];
        int64_t i64[N];
        clgqa_status status = clgqa_tensor_set_read_f32(file, names[k], f, N);
        switch (all[k]) {
        case CLGQA_DTYPE_F8_E5M2:
        case CLGQA_DTYPE_F8_E4M3:
            ck_assert_int_eq(status, CLGQA_ERR_UNSUPPORTED);
            ASSERT_MESSAGE_HAS(names[k]);
            break;
        case CLGQA_DTYPE_F32:
            TEST_OK(status);
            ck_assert_int_eq(memcmp(f, data[k], sizeof f), 0);
            break;
        case CLGQA_DTYPE_F64:
            TEST_OK(status);
            for (size_t i = 0; i < N; i++) {
                double x;
                memcpy(&x, data[k] + 8 * i, 8);
                ck_assert(same_bits(f[i], (float)x));
            }
            break;
        case CLGQA_DTYPE_F16:
        case CLGQA_DTYPE_BF16:
            TEST_OK(status);
            for (size_t i = 0; i < N; i++) {
                uint16_t h;
                memcpy(&h, data[k] + 2 * i, 2);
                float want = all[k] == CLGQA_DTYPE_F16 ? half_value(h) : bf16_value(h);
                ck_assert(isnan(want) ? isnan(f[i]) : same_bits(f[i], want));
            }
            break;
        case CLGQA_DTYPE_I64:
        case CLGQA_DTYPE_U64:
            TEST_OK(status);
            TEST_OK(clgqa_tensor_set_read_i64(file, names[k], i64, N));
            for (size_t i = 0; i < N; i++) {
                int64_t x;
                memcpy(&x, data[k] + 8 * i, 8);
                ck_assert(i64[i] == x);
                ck_assert(same_bits(f[i], (float)x));
            }
            break;
        default: /* the integer types up to 32 bits, and BOOL */
            TEST_OK(status);
            TEST_OK(clgqa_tensor_set_read_i64(file, names[k], i64, N));
            for (size_t i = 0; i < N; i++) {
                double x = integer_value(all[k], data[k], i);
                ck_assert(i64[i] == (int64_t)x);
                ck_assert(same_bits(f[i], (float)x));
            }
        }
        if (all[k] == CLGQA_DTYPE_F32 || all[k] == CLGQA_DTYPE_F16) {
            ck_assert_int_eq(clgqa_tensor_set_read_i64(file, names[k], i64, N), CLGQA_ERR_INVALID_ARG);
            ASSERT_MESSAGE_HAS("not an integer tensor");
        }
    }
    clgqa_tensor_set_close(file);
}
END_TEST

START_TEST(lookup_errors) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(FIXTURE, &file));
    const clgqa_tensor *t;
    ck_assert_ptr_null(clgqa_tensor_set_find(file, "head.weight"));
    ck_assert_int_eq(clgqa_tensor_set_get(file, "head.weight", &t), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS(FIXTURE ": no tensor 'head.weight'");
    float x[25];
    ck_assert_int_eq(clgqa_tensor_set_read_f32(file, "blocks.0.attn.q.weight", x, 25), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("'blocks.0.attn.q.weight' has 24 elements (shape [4, 6]), caller expected 25");
    clgqa_tensor_set_close(file);

    ck_assert_int_eq(clgqa_tensor_file_open("/nonexistent/x.safetensors", &file), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("/nonexistent/x.safetensors");
    ck_assert_ptr_null(file);
    ck_assert_int_eq(clgqa_tensor_file_open("/tmp", &file), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("not a regular file");

    /* A U64 beyond int64 is refused, not wrapped. */
    uint64_t big[2] = {1, (uint64_t)1 << 63};
    int64_t two[1] = {2}, got[2];
    clgqa_safetensor_out out = {"big", CLGQA_DTYPE_U64, 1, two, big};
    const char *path = tmp_path("u64.safetensors");
    TEST_OK(clgqa_safetensors_write(path, &out, 1, NULL, 0));
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_int_eq(clgqa_tensor_set_read_i64(file, "big", got, 2), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("tensor 'big': element 1 does not fit int64");
    clgqa_tensor_set_close(file);

    char text[64];
    int64_t shape[4] = {768, 3, 16, 16};
    clgqa_tensor_set_shape_text(shape, 4, text, sizeof text);
    ck_assert_str_eq(text, "[768, 3, 16, 16]");
    clgqa_tensor_set_shape_text(shape, 0, text, sizeof text);
    ck_assert_str_eq(text, "[]");
}
END_TEST

/* ---- corrupt files ---------------------------------------------------------- */

/* A file image: header length, `json` padded with spaces to 8 bytes, then
 * data_size bytes of data. */
static unsigned char *make_file(const char *json, size_t data_size, size_t *size) {
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    *size = 8 + padded + data_size;
    unsigned char *bytes = calloc(1, *size);
    uint64_t len = padded;
    memcpy(bytes, &len, 8);
    memset(bytes + 8, ' ', padded);
    memcpy(bytes + 8, json, n);
    return bytes;
}

START_TEST(corrupt_files_refused) {
    static const struct { const char *json; size_t data_size; const char *message; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]", 8, "header is not valid JSON"},
        {"[1, 2]", 0, "header is not a JSON object"},
        {"{} x", 0, "bytes after its JSON object"},
        {"{\"w\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'w': unknown dtype 'F7'"},
        {"{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'w': missing or non-string dtype"},
        {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'w': missing or non-list shape"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape entry 1 is not a non-negative integer"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape entry 0 is not a non-negative integer"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': 9 dimensions, at most 8"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape [4503599627370496, 4503599627370496] is too large"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
         "tensor 'w': data_offsets must be [begin, end] integers"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "tensor 'w': data_offsets [8, 0] end before"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 8,
         "tensor 'w': data_offsets [0, 400] run past the end of the data (8 bytes)"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
         "tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20"},
        {"{\"w\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12,
         "tensor 'w': shape [3] of I64 needs 24 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         24, "tensors 'a' [0, 16] and 'b' [8, 24] overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
         24, "data bytes [8, 16) belong to no tensor (gap before tensor 'b')"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "data bytes [0, 8) belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 24,
         "the tensors cover 8 bytes but the data section has 24"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "tensor 'a' appears twice"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "a tensor has an empty name"},
        {"{\"w\":[1,2]}", 0, "tensor 'w': entry is not a JSON object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is not a string"},
        {"{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is not a JSON object"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t size;
        unsigned char *bytes = make_file(cases[i].json, cases[i].data_size, &size);
        clgqa_tensor_set *file = (clgqa_tensor_set *)1;
        ck_assert_msg(clgqa_safetensors_parse(bytes, size, "bad.safetensors", &file) == CLGQA_ERR_FORMAT,
                      "case %zu accepted: %s", i, cases[i].json);
        ck_assert_ptr_null(file);
        ASSERT_MESSAGE_HAS("bad.safetensors: ");
        ASSERT_MESSAGE_HAS(cases[i].message);
        free(bytes);
    }
}
END_TEST

/* Damage to the length prefix, through the file path (open + mmap). */
START_TEST(bad_header_length_refused) {
    const char *path = tmp_path("short.safetensors");
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    clgqa_tensor_set *file;
    ck_assert_int_eq(clgqa_tensor_file_open(path, &file), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("short.safetensors: 3 bytes, too short for the 8-byte header length");

    size_t size;
    unsigned char *bytes = make_file("{}", 0, &size);
    uint64_t too_long = 4096;
    memcpy(bytes, &too_long, 8);
    path = tmp_path("long.safetensors");
    f = fopen(path, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    ck_assert_int_eq(clgqa_tensor_file_open(path, &file), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("long.safetensors: header length 4096 runs past the end of the file (16 bytes)");
    uint64_t huge = UINT64_MAX;
    memcpy(bytes, &huge, 8);
    ck_assert_int_eq(clgqa_safetensors_parse(bytes, size, "huge", &file), CLGQA_ERR_FORMAT);
    ASSERT_MESSAGE_HAS("header length 18446744073709551615 runs past the end");
    free(bytes);
}
END_TEST

/* Every truncation of a valid file is refused, never crashes. */
START_TEST(every_truncation_refused) {
    size_t size;
    unsigned char *bytes = read_whole(FIXTURE, &size);
    for (size_t cut = 0; cut < size; cut++) {
        clgqa_tensor_set *file;
        ck_assert_int_eq(clgqa_safetensors_parse(bytes, cut, "cut", &file), CLGQA_ERR_FORMAT);
    }
    clgqa_tensor_set *file;
    TEST_OK(clgqa_safetensors_parse(bytes, size, "whole", &file));
    clgqa_tensor_set_close(file);
    free(bytes);
}
END_TEST

/* ---- writing ------------------------------------------------------------------ */

START_TEST(atomic_write) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[2] = {7, 8};
    int64_t shape_a[2] = {2, 3}, shape_b[1] = {2};
    clgqa_safetensor_out out[2] = {{"a", CLGQA_DTYPE_F32, 2, shape_a, a}, {"b", CLGQA_DTYPE_I32, 1, shape_b, b}};
    const char *path = tmp_path("ckpt.safetensors");
    TEST_OK(clgqa_safetensors_write(path, out, 2, NULL, 0));
    ck_assert_uint_eq(count_dir_entries(tmp_dir), 1); /* no temporary left behind */
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);

    /* Overwriting replaces the whole file. */
    a[0] = 42;
    TEST_OK(clgqa_safetensors_write(path, out, 1, NULL, 0));
    ck_assert_uint_eq(count_dir_entries(tmp_dir), 1);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_uint_eq(clgqa_tensor_set_count(file), 1);
    float back[6];
    TEST_OK(clgqa_tensor_set_read_f32(file, "a", back, 6));
    ck_assert_float_eq(back[0], 42.0f);
    clgqa_tensor_set_close(file);

    /* A rename that fails (the target is a non-empty folder) leaves neither
     * a temporary nor a change. */
    const char *folder = tmp_path("folder");
    ck_assert_int_eq(mkdir(folder, 0755), 0);
    char inside[600];
    snprintf(inside, sizeof inside, "%s/keep", folder);
    fclose(fopen(inside, "wb"));
    ck_assert_int_eq(clgqa_safetensors_write(folder, out, 2, NULL, 0), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("folder");
    ck_assert_uint_eq(count_dir_entries(tmp_dir), 2);
    unlink(inside);

    ck_assert_int_eq(clgqa_safetensors_write("/nonexistent/dir/x.safetensors", out, 2, NULL, 0), CLGQA_ERR_IO);
    ASSERT_MESSAGE_HAS("/nonexistent/dir/x.safetensors");
}
END_TEST

START_TEST(bad_writes_refused) {
    float a[2] = {1, 2};
    int64_t shape[1] = {2}, negative[1] = {-2};
    const struct { clgqa_safetensor_out t[2]; size_t n; const char *message; } cases[] = {
        {{{"a", CLGQA_DTYPE_F32, 1, shape, a}, {"a", CLGQA_DTYPE_F32, 1, shape, a}}, 2, "'a' given twice"},
        {{{"__metadata__", CLGQA_DTYPE_F32, 1, shape, a}}, 1, "an empty or reserved name"},
        {{{"", CLGQA_DTYPE_F32, 1, shape, a}}, 1, "an empty or reserved name"},
        {{{"a", CLGQA_DTYPE_F32, 1, negative, a}}, 1, "('a') has a negative or huge dimension"},
        {{{"a", (clgqa_dtype)99, 1, shape, a}}, 1, "('a') has an unknown dtype"},
        {{{"a", CLGQA_DTYPE_F32, 9, shape, a}}, 1, "('a') has a bad number of dimensions"},
        {{{"a", CLGQA_DTYPE_F32, 1, shape, NULL}}, 1, "('a') has no data"},
    };
    const char *path = tmp_path("bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(clgqa_safetensors_write(path, cases[i].t, cases[i].n, NULL, 0), CLGQA_ERR_INVALID_ARG);
        ASSERT_MESSAGE_HAS(cases[i].message);
    }
    clgqa_metadata_pair twice[2] = {{"k", "1"}, {"k", "2"}};
    clgqa_safetensor_out ok = {"a", CLGQA_DTYPE_F32, 1, shape, a};
    ck_assert_int_eq(clgqa_safetensors_write(path, &ok, 1, twice, 2), CLGQA_ERR_INVALID_ARG);
    ASSERT_MESSAGE_HAS("metadata pair 1");
    ck_assert_uint_eq(count_dir_entries(tmp_dir), 0);
}
END_TEST

/* No tensors at all is a valid file: "{}" padded to 8. */
START_TEST(empty_file_round_trip) {
    const char *path = tmp_path("empty.safetensors");
    TEST_OK(clgqa_safetensors_write(path, NULL, 0, NULL, 0));
    size_t size;
    unsigned char *bytes = read_whole(path, &size);
    ck_assert_uint_eq(size, 16);
    ck_assert_int_eq(memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(bytes);
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    ck_assert_uint_eq(clgqa_tensor_set_count(file), 0);
    ck_assert_uint_eq(clgqa_tensor_set_metadata_count(file), 0);
    clgqa_tensor_set_close(file);
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, python_file_values);
    tcase_add_test(tc, writer_matches_python_bytes);
    tcase_add_test(tc, half_and_bfloat16_exhaustive);
    tcase_add_test(tc, half_and_bfloat16_known_values);
    tcase_add_test(tc, round_trip_every_dtype);
    tcase_add_test(tc, lookup_errors);
    tcase_add_test(tc, corrupt_files_refused);
    tcase_add_test(tc, bad_header_length_refused);
    tcase_add_test(tc, every_truncation_refused);
    tcase_add_test(tc, atomic_write);
    tcase_add_test(tc, bad_writes_refused);
    tcase_add_test(tc, empty_file_round_trip);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
