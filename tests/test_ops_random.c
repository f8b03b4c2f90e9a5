/* Device Philox random numbers against the host twins: uniform equal bit
 * for bit, normal equal to 1e-5 (the device's log/cos/sin may differ from
 * the C library by a few ulp), and the normal's moments over many samples.
 *
 * Statistical tolerances are 6 standard errors (false failure odds ~1e-9):
 * mean of N(0,1) samples: 6 / sqrt(n); sample std: 6 / sqrt(2n); mean of
 * uniforms: 6 sqrt(1/12) / sqrt(n). The samples are fixed by the seed, so a
 * pass is reproducible. */
#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "support/op_tests.h"

/* Seeds and streams with all 64 bits in play. */
static const uint64_t seeds[] = {0, 1, 0x0123456789abcdefull};
static const uint64_t streams[] = {0, 0xfedcba9876543210ull};

static size_t sizes(size_t i) {
    const size_t n[] = {1, 2, 3, 5, 1027, 1000003};
    return i < 5 ? n[i] : op_test_size(n[5], 4099);
}
#define SIZE_COUNT 6

static float *device_draw(int normal, size_t n, uint64_t seed, uint64_t stream, float mean,
                          float std) {
    clgqa_runtime *rt = test_runtime();
    cl_mem mem = op_upload_padded(NULL, n);
    if (normal)
        TEST_OK(clgqa_random_normal(rt, op_view(mem), n, seed, stream, mean, std));
    else
        TEST_OK(clgqa_random_uniform(rt, op_view(mem), n, seed, stream));
    float *out = op_floats(n);
    op_download_padded(normal ? "normal" : "uniform", mem, out, n);
    clgqa_buffer_release(&mem);
    return out;
}

START_TEST(uniform_equals_host_bit_for_bit) {
    for (size_t s = 0; s < SIZE_COUNT; s++)
        for (size_t k = 0; k < 3; k++)
            for (size_t t = 0; t < 2; t++) {
                size_t n = sizes(s);
                if (n > 5000 && (k != 2 || t != 1))
                    continue; /* the large size once is enough */
                float *got = device_draw(0, n, seeds[k], streams[t], 0, 0);
                float *want = op_floats(n);
                clgqa_host_uniform(want, n, seeds[k], streams[t]);
                for (size_t i = 0; i < n; i++)
                    if (memcmp(&got[i], &want[i], sizeof(float)) != 0 ||
                        !(got[i] >= 0.0f && got[i] < 1.0f))
                        ck_abort_msg("uniform[%zu] (n %zu, seed %llx, stream %llx): device "
                                     "%.9g, host %.9g",
                                     i, n, (unsigned long long)seeds[k],
                                     (unsigned long long)streams[t], (double)got[i],
                                     (double)want[i]);
                free(got);
                free(want);
            }
}
END_TEST

START_TEST(normal_matches_host) {
    for (size_t s = 0; s < SIZE_COUNT; s++) {
        size_t n = sizes(s);
        float *got = device_draw(1, n, seeds[2], streams[1], 2.0f, 0.5f);
        float *want = op_floats(n);
        clgqa_host_normal(want, n, seeds[2], streams[1], 2.0f, 0.5f);
        test_assert_close_f("normal", got, want, n, 1e-5, 1e-5);
        free(got);
        free(want);
    }
}
END_TEST

START_TEST(streams_and_seeds_give_different_numbers) {
    const size_t n = 1000;
    float *a = device_draw(0, n, 7, 1, 0, 0), *b = device_draw(0, n, 7, 2, 0, 0);
    float *c = device_draw(0, n, 8, 1, 0, 0);
    size_t same_ab = 0, same_ac = 0;
    for (size_t i = 0; i < n; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
    }
    /* Independent 24-bit values coincide with odds 2^-24 each. */
    ck_assert_msg(same_ab < 3 && same_ac < 3, "equal draws: %zu across streams, %zu across seeds",
                  same_ab, same_ac);
    free(a), free(b), free(c);
}
END_TEST

START_TEST(moments_match_the_distributions) {
    const size_t n = op_test_size(1000000, 20000);
    float *z = device_draw(1, n, 20261126, clgqa_stream_id(CLGQA_RNG_TEST, 3, 9), 0, 1);
    float *u = device_draw(0, n, 20261126, clgqa_stream_id(CLGQA_RNG_TEST, 3, 10), 0, 0);
    double z_mean = 0, z_var = 0, u_mean = 0;
    for (size_t i = 0; i < n; i++) {
        z_mean += z[i];
        u_mean += u[i];
    }
    z_mean /= n;
    u_mean /= n;
    for (size_t i = 0; i < n; i++)
        z_var += (z[i] - z_mean) * (z[i] - z_mean);
    double z_std = sqrt(z_var / (n - 1));
    ck_assert_msg(fabs(z_mean) < 6 / sqrt((double)n), "normal mean %.6f over %zu", z_mean, n);
    ck_assert_msg(fabs(z_std - 1) < 6 / sqrt(2.0 * n), "normal std %.6f over %zu", z_std, n);
    ck_assert_msg(fabs(u_mean - 0.5) < 6 * sqrt(1 / 12.0) / sqrt((double)n),
                  "uniform mean %.6f over %zu", u_mean, n);
    free(z), free(u);
}
END_TEST

/* Stochastic depth's scales: every element equals the host's draw of the
 * same stream element (sample first_sample + b, branch) compared with the
 * block's keep probability, 1 / keep or 0 exactly; block 0 (keep 1) keeps
 * every sample; a batch split in two (first_sample) draws what the whole
 * batch draws; the share kept over many samples is keep (6 standard
 * errors). */
START_TEST(drop_path_scales_follow_the_host_draws) {
    clgqa_runtime *rt = test_runtime();
    const size_t layers = 4, samples = op_test_size(3001, 37);
    const uint64_t seed = 0x5eedull, step = 123456789;
    const uint64_t stream = clgqa_stream_id(CLGQA_RNG_DROP_PATH, 0, step);
    float rates[8];
    for (size_t l = 0; l < layers; l++) {
        float rate = (float)(0.3 * (double)l / (double)(layers - 1)); /* timm's linspace */
        float keep = (float)(1.0 - (double)rate);
        rates[2 * l] = keep;
        rates[2 * l + 1] = (float)(1.0 / (double)keep);
    }
    cl_mem rates_mem = op_upload_padded(rates, 2 * layers);
    size_t n = layers * 2 * samples;
    cl_mem whole = op_upload_padded(NULL, n);
    TEST_OK(clgqa_drop_path_scales(rt, op_view(whole), op_view(rates_mem), layers, samples, 0,
                                   seed, stream));
    float *got = op_floats(n);
    op_download_padded("drop path scales", whole, got, n);
    for (size_t l = 0; l < layers; l++) {
        size_t kept = 0;
        for (size_t branch = 0; branch < 2; branch++)
            for (size_t b = 0; b < samples; b++) {
                uint32_t bits = clgqa_host_random_bits(
                    seed, clgqa_stream_id(CLGQA_RNG_DROP_PATH, (uint32_t)l, step), 2 * b + branch);
                float u = (float)(bits >> 8) * (1.0f / 16777216.0f);
                float want = u < rates[2 * l] ? rates[2 * l + 1] : 0.0f;
                float value = got[(l * 2 + branch) * samples + b];
                if (memcmp(&value, &want, sizeof value) != 0)
                    ck_abort_msg("scale of block %zu, branch %zu, sample %zu: %.9g, want %.9g", l,
                                 branch, b, (double)value, (double)want);
                kept += value != 0.0f;
            }
        double keep = rates[2 * l], count = 2.0 * samples;
        ck_assert_msg(fabs(kept / count - keep) <= 6 * sqrt(keep * (1 - keep) / count) + 1e-12,
                      "block %zu kept %zu of %.0f, keep %.3f", l, kept, count, keep);
    }
    /* The same samples as two micro-batches. */
    size_t first = samples / 3, rest = samples - first;
    cl_mem part = op_upload_padded(NULL, layers * 2 * rest);
    TEST_OK(clgqa_drop_path_scales(rt, op_view(part), op_view(rates_mem), layers, rest, first,
                                   seed, stream));
    float *second = op_floats(layers * 2 * rest);
    op_download_padded("drop path scales of a micro-batch", part, second, layers * 2 * rest);
    for (size_t lb = 0; lb < layers * 2; lb++)
        for (size_t b = 0; b < rest; b++)
            ck_assert_msg(second[lb * rest + b] == got[lb * samples + first + b],
                          "micro-batch scale %zu of row %zu differs", b, lb);
    clgqa_buffer_release(&rates_mem), clgqa_buffer_release(&whole), clgqa_buffer_release(&part);
    free(got), free(second);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    ck_assert_int_eq(clgqa_random_uniform(rt, clgqa_view_at(mem, 1), 8, 1, 1),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_random_normal(rt, clgqa_view_at(NULL, 0), 8, 1, 1, 0, 1),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_random_normal"), "%s",
                  clgqa_error_message());
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_random");
    TCase *tc = tcase_create("random");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, uniform_equals_host_bit_for_bit);
    tcase_add_test(tc, normal_matches_host);
    tcase_add_test(tc, streams_and_seeds_give_different_numbers);
    tcase_add_test(tc, moments_match_the_distributions);
    tcase_add_test(tc, drop_path_scales_follow_the_host_draws);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
