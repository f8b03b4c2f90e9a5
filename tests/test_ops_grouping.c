/* Key norms and query-head allocation (static, KDGQA, DGQA diff/EMA) against
 * CPU references: float64 for the norms, exact integers for the splits (the
 * hand-made cases use norms whose shares are exact in float32, so the
 * rounding and fix-up rules are what is tested). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "ops.h"
#include "support/op_tests.h"
#include "support/test_util.h"

/* Device state of one grouping call: norms, cache, kv_map, group_counts. */
typedef struct grouping_buffers {
    cl_mem norms, cache, kv_map, counts;
} grouping_buffers;

static grouping_buffers grouping_alloc(const float *norms, const float *cache, int heads,
                                       int kv_heads) {
    grouping_buffers g;
    g.norms = test_upload(norms, (size_t)kv_heads);
    float zeros[64] = {0};
    g.cache = test_upload(cache ? cache : zeros, (size_t)kv_heads);
    /* Poisoned outputs: every entry must be written by the op. */
    int32_t poison[64];
    for (int i = 0; i < 64; i++)
        poison[i] = -7;
    g.kv_map = test_upload_int(poison, (size_t)heads);
    g.counts = test_upload_int(poison, (size_t)kv_heads);
    return g;
}

static void grouping_free(grouping_buffers *g) {
    clgqa_buffer_release(&g->norms);
    clgqa_buffer_release(&g->cache);
    clgqa_buffer_release(&g->kv_map);
    clgqa_buffer_release(&g->counts);
}

static clgqa_attention_dims dims_hg(int heads, int kv_heads) {
    clgqa_attention_dims d = {1, 1, heads, kv_heads, 1, 0, CLGQA_STORAGE_FLOAT};
    return d;
}

/* The map must be the contiguous expansion of the counts. */
static void assert_map_matches_counts(const int32_t *kv_map, const int32_t *counts, int heads,
                                      int kv_heads) {
    int h = 0, total = 0;
    for (int j = 0; j < kv_heads; j++) {
        ck_assert_msg(counts[j] >= 0, "group_counts[%d] = %d is negative", j, counts[j]);
        total += counts[j];
        for (int i = 0; i < counts[j]; i++, h++) {
            ck_assert_msg(h < heads, "counts sum past %d heads", heads);
            ck_assert_msg(kv_map[h] == j, "kv_map[%d] = %d, want %d", h, kv_map[h], j);
        }
    }
    ck_assert_int_eq(total, heads);
}

static void read_split(const grouping_buffers *g, int heads, int kv_heads, int32_t *counts,
                       int32_t *kv_map) {
    test_download_int(g->counts, counts, (size_t)kv_heads);
    test_download_int(g->kv_map, kv_map, (size_t)heads);
    assert_map_matches_counts(kv_map, counts, heads, kv_heads);
}

static void assert_counts(const char *what, const int32_t *got, const int *want, int kv_heads) {
    for (int j = 0; j < kv_heads; j++)
        ck_assert_msg(got[j] == want[j], "%s: group_counts[%d] = %d, want %d", what, j, got[j],
                      want[j]);
}

/* ---- key norms ---- */

/* k with rows dims->row_stride apart (0: packed); the columns between rows
 * hold 1e3, which would swamp the norms if read. Checked on both device
 * classes (their work-group sizes differ), twice each: bit-identical. */
static void check_key_norms(const clgqa_attention_dims *dims) {
    clgqa_runtime *rt = test_runtime();
    size_t width = (size_t)dims->kv_heads * dims->head_dim;
    size_t stride = dims->row_stride ? (size_t)dims->row_stride : width;
    size_t rows = (size_t)dims->batch * dims->tokens, n = rows * stride;
    float *k = test_random_array(n, -2.0f, 2.0f);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = width; c < stride; c++)
            k[r * stride + c] = 1e3f;
    double want[16] = {0};
    for (int j = 0; j < dims->kv_heads; j++)
        for (int b = 0; b < dims->batch; b++) {
            double sum = 0.0;
            for (int p = 0; p < dims->tokens; p++)
                for (int c = 0; c < dims->head_dim; c++) {
                    double x = k[((size_t)b * dims->tokens + p) * stride +
                                 (size_t)j * dims->head_dim + c];
                    sum += x * x;
                }
            want[j] += sqrt(sum);
        }
    cl_mem k_mem = test_upload(k, n);
    size_t scratch_floats = clgqa_key_norms_scratch_floats(dims);
    float *junk = test_random_array(scratch_floats, 0.0f, 1.0f);
    cl_mem scratch = test_upload(junk, scratch_floats);
    clgqa_device_class keep = rt->device_class;
    float first[16];
    for (int run = 0; run < 4; run++) {
        rt->device_class = run < 2 ? CLGQA_CLASS_CPU : CLGQA_CLASS_GPU;
        /* The norms land at an element offset inside a larger buffer. */
        float out[20];
        test_fill_uniform(out, 20, 5.0f, 6.0f);
        cl_mem out_mem = test_upload(out, 20);
        TEST_OK(clgqa_key_norms(rt, dims, clgqa_view_at(out_mem, 3), clgqa_view_at(k_mem, 0),
                                clgqa_view_at(scratch, 0)));
        float got[20];
        test_download(out_mem, got, 20);
        /* fp32 sums of up to ~2600 squares per sample and of up to 300
         * sample norms: relative error well under 1e-5. */
        test_assert_close("key_norms", got + 3, want, (size_t)dims->kv_heads, 1e-5, 0.0);
        ck_assert_float_eq(got[2], out[2]);
        ck_assert_float_eq(got[3 + dims->kv_heads], out[3 + dims->kv_heads]);
        if (run % 2 == 0)
            memcpy(first, got + 3, sizeof(float) * (size_t)dims->kv_heads);
        else
            ck_assert_msg(!memcmp(first, got + 3, sizeof(float) * (size_t)dims->kv_heads),
                          "key norms differ between two identical runs");
        clgqa_buffer_release(&out_mem);
    }
    rt->device_class = keep;
    clgqa_buffer_release(&k_mem);
    clgqa_buffer_release(&scratch);
    free(k);
    free(junk);
}

START_TEST(key_norms_match_float64) {
    /* B, P, G, d not multiples of any work-group size. */
    clgqa_attention_dims dims = test_small() ? (clgqa_attention_dims){2, 5, 8, 3, 3, 0, CLGQA_STORAGE_FLOAT}
                                              : (clgqa_attention_dims){3, 197, 10, 5, 13, 0, CLGQA_STORAGE_FLOAT};
    check_key_norms(&dims);
    /* The fused q/k/v layout: k rows inside wider rows. */
    dims.row_stride = dims.heads * dims.head_dim + 2 * dims.kv_heads * dims.head_dim;
    check_key_norms(&dims);
    /* One sample, one head: the token slices give the work-groups. */
    clgqa_attention_dims one = {1, test_small() ? 17 : 197, 1, 1, 16, 0, CLGQA_STORAGE_FLOAT};
    check_key_norms(&one);
    /* More samples than work-items (at most 256): each takes several. */
    clgqa_attention_dims many = {300, 3, 4, 2, 2, 0, CLGQA_STORAGE_FLOAT};
    check_key_norms(&many);
}
END_TEST

START_TEST(bad_shapes_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float norms[4] = {1, 2, 3, 4};
    grouping_buffers g = grouping_alloc(norms, NULL, 6, 4);
    clgqa_attention_dims dims = dims_hg(6, 4);
    clgqa_view map = clgqa_view_at(g.kv_map, 0), counts = clgqa_view_at(g.counts, 0);
    ck_assert_int_eq(clgqa_grouping_kdgqa(rt, &dims, clgqa_view_at(g.norms, 0), map, counts),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "multiple of kv_heads"), "%s",
                  clgqa_error_message());
    ck_assert_int_eq(clgqa_grouping_dgqa(rt, &dims, 0, 0, 1, clgqa_view_at(g.norms, 0),
                                         clgqa_view_at(g.cache, 0), map, counts, 1, 2),
                     CLGQA_ERR_INVALID_ARG);
    /* window_size 0 */
    clgqa_attention_dims ok = dims_hg(4, 4);
    ck_assert_int_eq(clgqa_grouping_dgqa(rt, &ok, 0, 0, 0, clgqa_view_at(g.norms, 0),
                                         clgqa_view_at(g.cache, 0), map, counts, 1, 2),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "window_size"), "%s", clgqa_error_message());
    /* kv_map too small for 8 heads (the buffer holds 6). */
    clgqa_attention_dims big = dims_hg(8, 4);
    ck_assert_int_eq(clgqa_grouping_kdgqa(rt, &big, clgqa_view_at(g.norms, 0), map, counts),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "kv_map"), "%s", clgqa_error_message());
    grouping_free(&g);
}
END_TEST

/* ---- KDGQA ---- */

static void run_kdgqa(const float *norms, int heads, int kv_heads, int32_t *counts,
                      int32_t *kv_map) {
    clgqa_attention_dims dims = dims_hg(heads, kv_heads);
    grouping_buffers g = grouping_alloc(norms, NULL, heads, kv_heads);
    TEST_OK(clgqa_grouping_kdgqa(test_runtime(), &dims, clgqa_view_at(g.norms, 0),
                                 clgqa_view_at(g.kv_map, 0), clgqa_view_at(g.counts, 0)));
    read_split(&g, heads, kv_heads, counts, kv_map);
    grouping_free(&g);
}

START_TEST(kdgqa_rounds_half_to_even) {
    /* r = [0, 1, 0.25, 0.75], sum 2: shares * 12 = [0, 6, 1.5, 4.5] -> [0, 6, 2, 4]
     * (half away from zero would give 13 heads and a fix-up to [0, 5, 2, 5]). */
    float norms[] = {1, 5, 2, 4};
    int want[] = {0, 6, 2, 4};
    int32_t counts[4], kv_map[12];
    run_kdgqa(norms, 12, 4, counts, kv_map);
    assert_counts("half to even", counts, want, 4);
}
END_TEST

START_TEST(kdgqa_fixup_decrements_first_argmax) {
    /* shares * 8 = [0, 2.6, 2.6, 2.8] -> [0, 3, 3, 3] = 9: the first of the tied
     * largest (index 1) gives one up. Key head 0 serves no query head. */
    float norms[] = {0.0f, 2.6f, 2.6f, 2.8f};
    int want[] = {0, 2, 3, 3};
    int32_t counts[4], kv_map[8];
    run_kdgqa(norms, 8, 4, counts, kv_map);
    assert_counts("fix-up down", counts, want, 4);
    ck_assert_int_eq(kv_map[0], 1);
}
END_TEST

START_TEST(kdgqa_fixup_increments_first_argmin) {
    /* shares * 8 = [0, 2.4, 2.4, 3.2] -> [0, 2, 2, 3] = 7: the smallest gets one. */
    float norms[] = {0.0f, 2.4f, 2.4f, 3.2f};
    int want[] = {1, 2, 2, 3};
    int32_t counts[4], kv_map[8];
    run_kdgqa(norms, 8, 4, counts, kv_map);
    assert_counts("fix-up up", counts, want, 4);
    /* Tied smallest: shares * 10 = [0, 0, 3.3, 3.3, 3.4] -> 9, index 0 wins. */
    float tied[] = {0.0f, 0.0f, 3.3f, 3.3f, 3.4f};
    int want_tied[] = {1, 0, 3, 3, 3};
    int32_t counts5[5], kv_map10[10];
    run_kdgqa(tied, 10, 5, counts5, kv_map10);
    assert_counts("fix-up up, tie", counts5, want_tied, 5);
}
END_TEST

START_TEST(kdgqa_equal_norms_use_static_split) {
    float norms[] = {3.5f, 3.5f, 3.5f, 3.5f};
    int want[] = {3, 3, 3, 3};
    int32_t counts[4], kv_map[12];
    run_kdgqa(norms, 12, 4, counts, kv_map);
    assert_counts("equal norms", counts, want, 4);
    float one[] = {2.0f};
    int32_t count1[1], kv_map6[6];
    int want1[] = {6};
    run_kdgqa(one, 6, 1, count1, kv_map6); /* G = 1: max == min */
    assert_counts("one key head", count1, want1, 1);
}
END_TEST

START_TEST(kdgqa_zero_query_head) {
    /* shares * 8 = [0, 2, 3, 3]: key head 0 receives no query. */
    float norms[] = {1.0f, 3.0f, 4.0f, 4.0f};
    int want[] = {0, 2, 3, 3};
    int32_t counts[4], kv_map[8];
    run_kdgqa(norms, 8, 4, counts, kv_map);
    assert_counts("zero queries", counts, want, 4);
    for (int h = 0; h < 8; h++)
        ck_assert_int_ne(kv_map[h], 0);
}
END_TEST

/* float64 rendering of the KDGQA rule; random norms keep shares away from
 * .5 boundaries by a margin float32 cannot cross. */
static void kdgqa_reference(const float *norms, int heads, int kv_heads, int *counts) {
    double lo = norms[0], hi = norms[0], sum = 0.0;
    for (int j = 1; j < kv_heads; j++) {
        lo = fmin(lo, norms[j]);
        hi = fmax(hi, norms[j]);
    }
    for (int j = 0; j < kv_heads; j++)
        sum += (norms[j] - lo) / (hi - lo);
    int total = 0;
    for (int j = 0; j < kv_heads; j++) {
        counts[j] = (int)nearbyint((norms[j] - lo) / (hi - lo) / sum * heads);
        total += counts[j];
    }
    for (; total > heads; total--) {
        int arg = 0;
        for (int j = 1; j < kv_heads; j++)
            if (counts[j] > counts[arg])
                arg = j;
        counts[arg]--;
    }
    for (; total < heads; total++) {
        int arg = 0;
        for (int j = 1; j < kv_heads; j++)
            if (counts[j] < counts[arg])
                arg = j;
        counts[arg]++;
    }
}

START_TEST(kdgqa_random_norms_match_reference) {
    int shapes[][2] = {{12, 4}, {12, 6}, {16, 8}, {6, 3}, {6, 2}};
    int checked = 0;
    for (int trial = 0; trial < 40; trial++) {
        int heads = shapes[trial % 5][0], kv_heads = shapes[trial % 5][1];
        float norms[8];
        test_fill_uniform(norms, (size_t)kv_heads, 1.0f, 40.0f);
        int want[8];
        kdgqa_reference(norms, heads, kv_heads, want);
        int32_t counts[8], kv_map[16];
        run_kdgqa(norms, heads, kv_heads, counts, kv_map);
        assert_counts("random norms", counts, want, kv_heads);
        checked++;
    }
    ck_assert_int_eq(checked, 40);
}
END_TEST

/* The fused launch (key_norms_kdgqa) against the two-launch path on random
 * keys, on both device classes: the same norms bit for bit (one summation
 * order), the same split, and that split is the float64 rule's. */
static void check_key_norms_kdgqa(const clgqa_attention_dims *dims) {
    clgqa_runtime *rt = test_runtime();
    size_t width = (size_t)dims->kv_heads * dims->head_dim;
    size_t stride = dims->row_stride ? (size_t)dims->row_stride : width;
    size_t n = (size_t)dims->batch * dims->tokens * stride;
    float *k = test_random_array(n, -2.0f, 2.0f);
    cl_mem k_mem = test_upload(k, n);
    size_t scratch_floats = clgqa_key_norms_scratch_floats(dims);
    float *junk = test_random_array(scratch_floats, 0.0f, 1.0f);
    cl_mem scratch = test_upload(junk, scratch_floats);
    clgqa_device_class keep = rt->device_class;
    for (int run = 0; run < 2; run++) {
        rt->device_class = run == 0 ? CLGQA_CLASS_CPU : CLGQA_CLASS_GPU;
        float none[16] = {0};
        grouping_buffers two = grouping_alloc(none, NULL, dims->heads, dims->kv_heads),
                         one = grouping_alloc(none, NULL, dims->heads, dims->kv_heads);
        TEST_OK(clgqa_key_norms(rt, dims, clgqa_view_at(two.norms, 0), clgqa_view_at(k_mem, 0),
                                clgqa_view_at(scratch, 0)));
        TEST_OK(clgqa_grouping_kdgqa(rt, dims, clgqa_view_at(two.norms, 0),
                                     clgqa_view_at(two.kv_map, 0), clgqa_view_at(two.counts, 0)));
        TEST_OK(clgqa_key_norms_kdgqa(rt, dims, clgqa_view_at(one.norms, 0),
                                      clgqa_view_at(one.kv_map, 0), clgqa_view_at(one.counts, 0),
                                      clgqa_view_at(k_mem, 0), clgqa_view_at(scratch, 0)));
        float norms_two[16], norms_one[16];
        test_download(two.norms, norms_two, (size_t)dims->kv_heads);
        test_download(one.norms, norms_one, (size_t)dims->kv_heads);
        ck_assert_msg(!memcmp(norms_two, norms_one, sizeof(float) * (size_t)dims->kv_heads),
                      "the fused key norms differ from clgqa_key_norms");
        int32_t counts_two[16], map_two[64], counts_one[16], map_one[64];
        read_split(&two, dims->heads, dims->kv_heads, counts_two, map_two);
        read_split(&one, dims->heads, dims->kv_heads, counts_one, map_one);
        int want[16];
        kdgqa_reference(norms_one, dims->heads, dims->kv_heads, want);
        assert_counts("fused kdgqa", counts_one, want, dims->kv_heads);
        assert_counts("two-launch kdgqa", counts_two, want, dims->kv_heads);
        ck_assert(!memcmp(map_two, map_one, sizeof(int32_t) * (size_t)dims->heads));
        grouping_free(&two);
        grouping_free(&one);
    }
    rt->device_class = keep;
    clgqa_buffer_release(&k_mem);
    clgqa_buffer_release(&scratch);
    free(k);
    free(junk);
}

/* Key norms from half keys (precision 16-mixed: clgqa_attention_dims.storage
 * CLGQA_STORAGE_HALF) in the fused q/k/v layout, the padding columns half
 * 1e3 (a read would show). The sums stay float: against float64 norms of
 * the same half values, the fp32 bound above (1e-5 relative). (The
 * rounding of the keys themselves, |k~ - k| <= 2^-11 |k| elementwise, then
 * moves each norm by at most 2^-11 of it: docs/attention-variants.md,
 * "Half keys".) */
START_TEST(key_norms_of_half_keys) {
    clgqa_runtime *rt = test_runtime();
    clgqa_attention_dims dims = {test_small() ? 2 : 5, test_small() ? 17 : 197, 6, 3, 16, 0,
                                 CLGQA_STORAGE_HALF};
    dims.row_stride = dims.heads * dims.head_dim + 2 * dims.kv_heads * dims.head_dim;
    size_t width = (size_t)dims.kv_heads * dims.head_dim, stride = (size_t)dims.row_stride;
    size_t rows = (size_t)dims.batch * dims.tokens, n = rows * stride;
    float *k = test_random_array(n, -2.0f, 2.0f), *rounded = malloc(n * sizeof *rounded);
    for (size_t i = 0; i < n; i++) {
        if (i % stride >= width)
            k[i] = 1e3f;
        rounded[i] = op_to_half(k[i]);
    }
    double want[8] = {0};
    for (int j = 0; j < dims.kv_heads; j++)
        for (int b = 0; b < dims.batch; b++) {
            double sum = 0.0;
            for (int p = 0; p < dims.tokens; p++)
                for (int c = 0; c < dims.head_dim; c++) {
                    size_t at = ((size_t)b * dims.tokens + p) * stride + (size_t)j * dims.head_dim + c;
                    sum += (double)rounded[at] * rounded[at];
                }
            want[j] += sqrt(sum);
        }
    cl_mem k_mem = op_upload_padded_half(k, n), out_mem = op_upload_padded(NULL, 8);
    size_t scratch_floats = clgqa_key_norms_scratch_floats(&dims);
    cl_mem scratch = op_upload_padded(NULL, scratch_floats);
    TEST_OK(clgqa_key_norms(rt, &dims, op_view(out_mem), op_view(k_mem), op_view(scratch)));
    float got[8];
    op_download_padded("key_norms (half keys)", out_mem, got, (size_t)dims.kv_heads);
    test_assert_close("key_norms (half keys)", got, want, (size_t)dims.kv_heads, 1e-5, 0.0);
    clgqa_buffer_release(&k_mem);
    clgqa_buffer_release(&out_mem);
    clgqa_buffer_release(&scratch);
    free(k);
    free(rounded);
}
END_TEST

START_TEST(key_norms_kdgqa_matches_two_launches) {
    /* ViT-S-like (6 heads over 3 groups) in the fused q/k/v layout, a packed
     * odd shape, and more samples than the work-group's items. */
    clgqa_attention_dims vit = {test_small() ? 2 : 8, test_small() ? 17 : 197, 6, 3, 16, 0, CLGQA_STORAGE_FLOAT};
    vit.row_stride = vit.heads * vit.head_dim + 2 * vit.kv_heads * vit.head_dim;
    check_key_norms_kdgqa(&vit);
    clgqa_attention_dims odd = {3, 5, 12, 4, 13, 0, CLGQA_STORAGE_FLOAT};
    check_key_norms_kdgqa(&odd);
    clgqa_attention_dims many = {300, 3, 16, 8, 2, 0, CLGQA_STORAGE_FLOAT};
    check_key_norms_kdgqa(&many);
    /* Refused like the two-launch ops: H not a multiple of G. */
    clgqa_attention_dims bad = {2, 5, 6, 4, 8, 0, CLGQA_STORAGE_FLOAT};
    float none[16] = {0};
    grouping_buffers g = grouping_alloc(none, NULL, 6, 4);
    cl_mem k_mem = test_upload(none, 16);
    ck_assert_int_ne(clgqa_key_norms_kdgqa(test_runtime(), &bad, clgqa_view_at(g.norms, 0),
                                           clgqa_view_at(g.kv_map, 0), clgqa_view_at(g.counts, 0),
                                           clgqa_view_at(k_mem, 0), clgqa_view_at(k_mem, 0)),
                     CLGQA_OK);
    clgqa_buffer_release(&k_mem);
    grouping_free(&g);
}
END_TEST

/* ---- DGQA ---- */

/* The DGQA rule in float32 as specified, with the fix-up picks drawn from
 * the host twin of the device generator; updates cache in place. */
static void dgqa_reference(const float *m, float *cache, int heads, int kv_heads, int ema,
                           int evaluation, int window, uint64_t seed, uint64_t stream,
                           int *counts) {
    float share[8], sum = 0.0f;
    for (int j = 0; j < kv_heads; j++) {
        share[j] = ema ? 0.9f * m[j] + 0.1f * cache[j] : fabsf(cache[j] - m[j]);
        sum += share[j];
    }
    if (sum == 0.0f) {
        for (int j = 0; j < kv_heads; j++)
            counts[j] = heads / kv_heads;
    } else {
        int total = 0;
        for (int j = 0; j < kv_heads; j++) {
            counts[j] = (int)nearbyintf(share[j] / sum * (float)heads);
            total += counts[j];
        }
        uint64_t draw = 0;
        while (total != heads) {
            float u = (float)(clgqa_host_random_bits(seed, stream, draw++) >> 8) / 16777216.0f;
            int j = (int)(u * (float)kv_heads);
            if (j > kv_heads - 1)
                j = kv_heads - 1;
            if (total > heads && counts[j] > 0) {
                counts[j]--;
                total--;
            } else if (total < heads) {
                counts[j]++;
                total++;
            }
        }
    }
    for (int j = 0; j < kv_heads; j++)
        cache[j] = evaluation ? m[j] : (cache[j] + m[j]) / (float)window;
}

typedef struct dgqa_case {
    int heads, kv_heads, ema, evaluation, window;
    uint64_t seed, stream;
} dgqa_case;

/* Runs one DGQA call on device; returns counts and the updated cache. */
static void run_dgqa(const dgqa_case *c, const float *m, const float *cache_in, int32_t *counts,
                     int32_t *kv_map, float *cache_out) {
    clgqa_attention_dims dims = dims_hg(c->heads, c->kv_heads);
    grouping_buffers g = grouping_alloc(m, cache_in, c->heads, c->kv_heads);
    TEST_OK(clgqa_grouping_dgqa(test_runtime(), &dims, c->ema, c->evaluation, c->window,
                                clgqa_view_at(g.norms, 0), clgqa_view_at(g.cache, 0),
                                clgqa_view_at(g.kv_map, 0), clgqa_view_at(g.counts, 0), c->seed,
                                c->stream));
    read_split(&g, c->heads, c->kv_heads, counts, kv_map);
    test_download(g.cache, cache_out, (size_t)c->kv_heads);
    grouping_free(&g);
}

/* Device vs reference for one case: counts exact, cache to float rounding
 * (OpenCL allows 2.5 ulp on division; 1e-6 relative covers it). */
static void check_dgqa(const char *what, const dgqa_case *c, const float *m, const float *cache) {
    float want_cache[8];
    memcpy(want_cache, cache, sizeof(float) * (size_t)c->kv_heads);
    int want[8];
    dgqa_reference(m, want_cache, c->heads, c->kv_heads, c->ema, c->evaluation, c->window, c->seed,
                   c->stream, want);
    int32_t counts[8], kv_map[16];
    float got_cache[8];
    run_dgqa(c, m, cache, counts, kv_map, got_cache);
    assert_counts(what, counts, want, c->kv_heads);
    test_assert_close_f(what, got_cache, want_cache, (size_t)c->kv_heads, 1e-6, 0.0);
}

START_TEST(dgqa_diff_hand_case_and_cache_update) {
    /* s = |cache - m| = [1, 3, 0, 0], sum 4, * 8 -> [2, 6, 0, 0]. */
    float m[] = {2, 4, 1, 1}, cache[] = {1, 1, 1, 1};
    int want[] = {2, 6, 0, 0};
    int32_t counts[4], kv_map[8];
    float got_cache[4];
    dgqa_case train = {8, 4, 0, 0, 3, 1, 2};
    run_dgqa(&train, m, cache, counts, kv_map, got_cache);
    assert_counts("diff", counts, want, 4);
    /* Training: cache = (cache + m) / window. */
    double want_train[] = {1.0, 5.0 / 3, 2.0 / 3, 2.0 / 3};
    test_assert_close("training cache", got_cache, want_train, 4, 1e-6, 0.0);
    /* Evaluation: same split, cache = m. */
    dgqa_case eval = {8, 4, 0, 1, 3, 1, 2};
    run_dgqa(&eval, m, cache, counts, kv_map, got_cache);
    assert_counts("diff eval", counts, want, 4);
    test_assert_close_f("evaluation cache", got_cache, m, 4, 0.0, 0.0);
}
END_TEST

START_TEST(dgqa_ema_hand_case) {
    /* s = 0.9 m + 0.1 cache = [1, 2, 3, 2] (to float rounding), * 8 / 8. */
    float m[] = {1, 2, 3, 2}, cache[] = {1, 2, 3, 2};
    int want[] = {1, 2, 3, 2};
    int32_t counts[4], kv_map[8];
    float got_cache[4];
    dgqa_case c = {8, 4, 1, 0, 1, 5, 6};
    run_dgqa(&c, m, cache, counts, kv_map, got_cache);
    assert_counts("ema", counts, want, 4);
    double want_cache[] = {2, 4, 6, 4}; /* window 1: cache + m */
    test_assert_close("ema cache", got_cache, want_cache, 4, 1e-6, 0.0);
}
END_TEST

START_TEST(dgqa_zero_shares_use_static_split) {
    /* diff with cache == m: every share is 0. */
    float m[] = {2, 3, 4}, cache[] = {2, 3, 4};
    int want[] = {2, 2, 2};
    int32_t counts[3], kv_map[6];
    float got_cache[3];
    dgqa_case c = {6, 3, 0, 0, 2, 1, 1};
    run_dgqa(&c, m, cache, counts, kv_map, got_cache);
    assert_counts("zero shares", counts, want, 3);
    double want_cache[] = {2, 3, 4}; /* (cache + m) / 2 */
    test_assert_close("cache", got_cache, want_cache, 3, 1e-6, 0.0);
}
END_TEST

START_TEST(dgqa_random_fixup_is_seeded) {
    /* diff from a zero cache: shares * 8 = [2.6, 2.6, 2.8, 0] -> 9 (one random
     * decrement, never of the empty head 3), and [2.4, 2.4, 3.2, 0] -> 7 (one
     * random increment, any head). */
    float down[] = {2.6f, 2.6f, 2.8f, 0.0f}, up[] = {2.4f, 2.4f, 3.2f, 0.0f};
    float zero_cache[4] = {0};
    int outcomes_down = 0, outcomes_up = 0; /* bit sets of the picked head */
    for (uint64_t seed = 1; seed <= 24; seed++) {
        dgqa_case c = {8, 4, 0, 0, 1, seed, clgqa_stream_id(CLGQA_RNG_DGQA_FIXUP, 2, 7)};
        check_dgqa("fix-up down", &c, down, zero_cache);
        check_dgqa("fix-up up", &c, up, zero_cache);
        int32_t first[4], again[4], kv_map[8];
        float cache_out[4];
        run_dgqa(&c, down, zero_cache, first, kv_map, cache_out);
        run_dgqa(&c, down, zero_cache, again, kv_map, cache_out);
        ck_assert_int_eq(first[3], 0);
        for (int j = 0; j < 4; j++) {
            ck_assert_int_eq(first[j], again[j]); /* same seed, same split */
            if (first[j] == 2)
                outcomes_down |= 1 << j;
        }
        run_dgqa(&c, up, zero_cache, first, kv_map, cache_out);
        int base_up[] = {2, 2, 3, 0};
        for (int j = 0; j < 4; j++)
            if (first[j] > base_up[j])
                outcomes_up |= 1 << j;
    }
    /* Over 24 seeds the picks must actually vary. */
    ck_assert_msg(outcomes_down == 0x7, "decremented heads seen: 0x%x", outcomes_down);
    ck_assert_msg(outcomes_up == 0xf, "incremented heads seen: 0x%x", outcomes_up);
}
END_TEST

START_TEST(dgqa_window_sequence_matches_reference) {
    /* Training over several window steps: each call splits from the cache the
     * previous one left, then folds the new norms in. */
    int ema_kinds[] = {0, 1};
    for (int e = 0; e < 2; e++) {
        const int heads = 12, kv_heads = 4, window = 3;
        float cache_ref[4] = {0}, m[4];
        clgqa_attention_dims dims = dims_hg(heads, kv_heads);
        grouping_buffers g = grouping_alloc(cache_ref, cache_ref, heads, kv_heads);
        for (int step = 0; step < 5; step++) {
            test_fill_uniform(m, 4, 5.0f, 50.0f);
            TEST_OK(clgqa_buffer_write(test_runtime(), g.norms, 0, sizeof m, m));
            uint64_t stream = clgqa_stream_id(CLGQA_RNG_DGQA_FIXUP, 0, (uint64_t)step);
            int want[4];
            dgqa_reference(m, cache_ref, heads, kv_heads, ema_kinds[e], 0, window, 42, stream, want);
            TEST_OK(clgqa_grouping_dgqa(test_runtime(), &dims, ema_kinds[e], 0, window,
                                        clgqa_view_at(g.norms, 0), clgqa_view_at(g.cache, 0),
                                        clgqa_view_at(g.kv_map, 0), clgqa_view_at(g.counts, 0),
                                        42, stream));
            int32_t counts[4], kv_map[12];
            float cache[4];
            read_split(&g, heads, kv_heads, counts, kv_map);
            test_download(g.cache, cache, 4);
            assert_counts(ema_kinds[e] ? "ema sequence" : "diff sequence", counts, want, kv_heads);
            test_assert_close_f("sequence cache", cache, cache_ref, 4, 1e-6, 0.0);
        }
        grouping_free(&g);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_grouping");
    TCase *tc = tcase_create("grouping");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, key_norms_match_float64);
    tcase_add_test(tc, key_norms_of_half_keys);
    tcase_add_test(tc, bad_shapes_are_refused);
    tcase_add_test(tc, kdgqa_rounds_half_to_even);
    tcase_add_test(tc, kdgqa_fixup_decrements_first_argmax);
    tcase_add_test(tc, kdgqa_fixup_increments_first_argmin);
    tcase_add_test(tc, kdgqa_equal_norms_use_static_split);
    tcase_add_test(tc, kdgqa_zero_query_head);
    tcase_add_test(tc, kdgqa_random_norms_match_reference);
    tcase_add_test(tc, key_norms_kdgqa_matches_two_launches);
    tcase_add_test(tc, dgqa_diff_hand_case_and_cache_update);
    tcase_add_test(tc, dgqa_ema_hand_case);
    tcase_add_test(tc, dgqa_zero_shares_use_static_split);
    tcase_add_test(tc, dgqa_random_fixup_is_seeded);
    tcase_add_test(tc, dgqa_window_sequence_matches_reference);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
