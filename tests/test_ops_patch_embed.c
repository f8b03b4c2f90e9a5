/* Patch embedding ops (patch_embed.cl): im2col and the token assembly
 * forward/backward against CPU references. */
#include <stdlib.h>
#include <string.h>

#include "clgqa/error.h"
#include "ops.h"
#include "patch_embed.h"
#include "support/test_util.h"

/* Sizes chosen so no count is a multiple of a work-group size; smaller under
 * CLGQA_TEST_SMALL (Oclgrind). */
typedef struct sizes {
    size_t batch, in_chans, img_size, patch, dim;
} sizes;

static sizes test_sizes(void) {
    return test_small() ? (sizes){2, 3, 6, 3, 5} : (sizes){3, 3, 15, 5, 13};
}

START_TEST(im2col_matches_cpu) {
    sizes s = test_sizes();
    size_t grid = s.img_size / s.patch, n = grid * grid, k_len = s.in_chans * s.patch * s.patch;
    size_t total = s.batch * s.in_chans * s.img_size * s.img_size;
    float *images = test_random_array(total, -2.0f, 2.0f);
    /* pre-filled output: every element must be overwritten */
    float *got = test_random_array(total + 7, 5.0f, 6.0f);
    float *want = malloc(total * sizeof *want);
    for (size_t b = 0; b < s.batch; b++)
        for (size_t py = 0; py < grid; py++)
            for (size_t px = 0; px < grid; px++)
                for (size_t c = 0; c < s.in_chans; c++)
                    for (size_t y = 0; y < s.patch; y++)
                        for (size_t x = 0; x < s.patch; x++)
                            want[(b * n + py * grid + px) * k_len + (c * s.patch + y) * s.patch +
                                 x] = images[((b * s.in_chans + c) * s.img_size + py * s.patch +
                                              y) * s.img_size +
                                             px * s.patch + x];
    cl_mem d_images = test_upload(images, total), d_patches = test_upload(got, total + 7);
    TEST_OK(clgqa_patch_im2col(test_runtime(), clgqa_view_at(d_patches, 7),
                               clgqa_view_at(d_images, 0), s.batch, s.in_chans, s.img_size,
                               s.patch));
    float *out = malloc((total + 7) * sizeof *out);
    test_download(d_patches, out, total + 7);
    /* A pure copy: exact. */
    test_assert_close_f("patches", out + 7, want, total, 0.0, 0.0);
    test_assert_close_f("before the view", out, got, 7, 0.0, 0.0);
    clgqa_buffer_release(&d_images);
    clgqa_buffer_release(&d_patches);
    free(images);
    free(got);
    free(want);
    free(out);
}
END_TEST

/* From 8-bit pixels, normalised on the way as the loader does on the host:
 * (x / 255 - mean[c]) / std[c], at an odd byte offset, with a guard band. */
START_TEST(im2col_pixels_normalises_like_the_host) {
    sizes s = test_sizes();
    size_t grid = s.img_size / s.patch, n = grid * grid, k_len = s.in_chans * s.patch * s.patch;
    size_t total = s.batch * s.in_chans * s.img_size * s.img_size;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    uint8_t *pixels = malloc(total + 3);
    for (size_t i = 0; i < total + 3; i++) /* 0 and 255 included */
        pixels[i] = (uint8_t)(i % 3 ? clgqa_host_random_bits(9, 1, i) : i % 2 ? 255 : 0);
    double *want = malloc(total * sizeof *want);
    for (size_t b = 0; b < s.batch; b++)
        for (size_t py = 0; py < grid; py++)
            for (size_t px = 0; px < grid; px++)
                for (size_t c = 0; c < s.in_chans; c++)
                    for (size_t y = 0; y < s.patch; y++)
                        for (size_t x = 0; x < s.patch; x++) {
                            uint8_t v = pixels[3 + ((b * s.in_chans + c) * s.img_size +
                                                    py * s.patch + y) * s.img_size +
                                               px * s.patch + x];
                            want[(b * n + py * grid + px) * k_len + (c * s.patch + y) * s.patch +
                                 x] = ((float)v / 255.0f - mean[c]) / std[c];
                        }
    cl_mem d_pixels;
    TEST_OK(clgqa_buffer_create(test_runtime(), total + 3, &d_pixels));
    TEST_OK(clgqa_buffer_write(test_runtime(), d_pixels, 0, total + 3, pixels));
    float *before = test_random_array(total + 14, 5.0f, 6.0f);
    cl_mem d_patches = test_upload(before, total + 14);
    TEST_OK(clgqa_patch_im2col_pixels(test_runtime(), clgqa_view_at(d_patches, 7),
                                      clgqa_view_at(d_pixels, 3), s.batch, s.in_chans,
                                      s.img_size, s.patch, mean, std));
    float *out = malloc((total + 14) * sizeof *out);
    test_download(d_patches, out, total + 14);
    /* OpenCL C allows 2.5 ulp for a float division: 1e-6 relative (values
     * are at most ~2.7) plus 1e-7 absolute near 0. */
    test_assert_close("patches", out + 7, want, total, 1e-6, 1e-7);
    test_assert_close_f("before the view", out, before, 7, 0.0, 0.0);
    test_assert_close_f("after the view", out + 7 + total, before + 7 + total, 7, 0.0, 0.0);
    clgqa_buffer_release(&d_pixels);
    clgqa_buffer_release(&d_patches);
    free(pixels);
    free(want);
    free(before);
    free(out);
}
END_TEST

START_TEST(tokens_forward_and_backward_match_cpu) {
    sizes s = test_sizes();
    size_t grid = s.img_size / s.patch, n = grid * grid, P = n + 1, C = s.dim, B = s.batch;
    float *patch_out = test_random_array(B * n * C, -1.0f, 1.0f);
    float *cls = test_random_array(C, -1.0f, 1.0f);
    float *pos = test_random_array(P * C, -1.0f, 1.0f);
    double *want = malloc(B * P * C * sizeof *want);
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < P; t++)
            for (size_t c = 0; c < C; c++)
                want[(b * P + t) * C + c] =
                    (double)(t == 0 ? cls[c] : patch_out[(b * n + t - 1) * C + c]) +
                    pos[t * C + c];
    cl_mem d_patch_out = test_upload(patch_out, B * n * C), d_cls = test_upload(cls, C),
           d_pos = test_upload(pos, P * C);
    float *tokens = test_random_array(B * P * C, 5.0f, 6.0f);
    cl_mem d_tokens = test_upload(tokens, B * P * C);
    clgqa_runtime *rt = test_runtime();
    TEST_OK(clgqa_tokens_forward(rt, clgqa_view_at(d_tokens, 0), clgqa_view_at(d_patch_out, 0),
                                 clgqa_view_at(d_cls, 0), clgqa_view_at(d_pos, 0), B, P, C));
    test_download(d_tokens, tokens, B * P * C);
    /* One float addition per element: within one rounding of the double sum. */
    test_assert_close("tokens", tokens, want, B * P * C, 1e-7, 0.0);

    /* Backward accumulates into pre-filled gradients. */
    float *dtokens = test_random_array(B * P * C, -1.0f, 1.0f);
    float *dpatch = test_random_array(B * n * C, -1.0f, 1.0f);
    float *dcls = test_random_array(C, -1.0f, 1.0f);
    float *dpos = test_random_array(P * C, -1.0f, 1.0f);
    double *want_dpatch = malloc(B * n * C * sizeof(double));
    double *want_dcls = malloc(C * sizeof(double));
    double *want_dpos = malloc(P * C * sizeof(double));
    for (size_t i = 0; i < B * n * C; i++)
        want_dpatch[i] = dpatch[i];
    for (size_t c = 0; c < C; c++)
        want_dcls[c] = dcls[c];
    for (size_t i = 0; i < P * C; i++)
        want_dpos[i] = dpos[i];
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < P; t++)
            for (size_t c = 0; c < C; c++) {
                double g = dtokens[(b * P + t) * C + c];
                want_dpos[t * C + c] += g;
                if (t == 0)
                    want_dcls[c] += g;
                else
                    want_dpatch[(b * n + t - 1) * C + c] += g;
            }
    cl_mem d_dtokens = test_upload(dtokens, B * P * C), d_dpatch = test_upload(dpatch, B * n * C),
           d_dcls = test_upload(dcls, C), d_dpos = test_upload(dpos, P * C);
    TEST_OK(clgqa_tokens_backward(rt, clgqa_view_at(d_dpatch, 0), clgqa_view_at(d_dcls, 0),
                                  clgqa_view_at(d_dpos, 0), clgqa_view_at(d_dtokens, 0), B, P, C));
    test_download(d_dpatch, dpatch, B * n * C);
    test_download(d_dcls, dcls, C);
    test_download(d_dpos, dpos, P * C);
    /* Sums of at most batch + 1 terms of magnitude <= 1 in float: relative
     * error a few ulp of the largest term, i.e. < 1e-6 absolute. */
    test_assert_close("dpatch_out", dpatch, want_dpatch, B * n * C, 0.0, 1e-6);
    test_assert_close("dcls", dcls, want_dcls, C, 0.0, 1e-6);
    test_assert_close("dpos", dpos, want_dpos, P * C, 0.0, 1e-6);

    cl_mem mems[] = {d_patch_out, d_cls, d_pos, d_tokens, d_dtokens, d_dpatch, d_dcls, d_dpos};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        clgqa_buffer_release(&mems[i]);
    free(patch_out);
    free(cls);
    free(pos);
    free(want);
    free(tokens);
    free(dtokens);
    free(dpatch);
    free(dcls);
    free(dpos);
    free(want_dpatch);
    free(want_dcls);
    free(want_dpos);
}
END_TEST

START_TEST(bad_shapes_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float dummy[64] = {0};
    cl_mem mem = test_upload(dummy, 64);
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_patch_im2col(rt, v, v, 1, 1, 7, 3), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "not a multiple"), "%s", clgqa_error_message());
    /* 2 x 2 x 8 x 8 images do not fit in 64 floats */
    ck_assert_int_eq(clgqa_patch_im2col(rt, v, v, 2, 2, 8, 4), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_tokens_forward(rt, v, v, v, v, 1, 1, 4), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "n_tokens"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_tokens_backward(rt, v, v, v, v, 1, 1, 4), CLGQA_ERR_INVALID_ARG);
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_patch_embed");
    TCase *tc = tcase_create("patch_embed");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, im2col_matches_cpu);
    tcase_add_test(tc, im2col_pixels_normalises_like_the_host);
    tcase_add_test(tc, tokens_forward_and_backward_match_cpu);
    tcase_add_test(tc, bad_shapes_are_refused);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
