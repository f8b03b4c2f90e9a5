/* Patch embedding ops (patch_embed.cl): im2col and the token assembly
 * forward/backward against CPU references. */
#include <stdlib.h>
#include <string.h>

#include "clgqa/error.h"
#include "patch_embed.h"
#include "support/op_tests.h"

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
                                      s.img_size, s.patch, mean, std, NULL));
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

/* Mixup and CutMix (timm's Mixup, mode 'batch') inside the im2col of 8-bit
 * pixels: every element against a float64 reference of the normalised
 * batch x mixed with x.flip(0) for the same lambda and box. Batches of 3
 * (the middle image is its own partner) and 2. */
START_TEST(im2col_pixels_mixes_like_timm) {
    sizes s = test_sizes();
    size_t grid = s.img_size / s.patch, n = grid * grid, k_len = s.in_chans * s.patch * s.patch;
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.5f, 0.2f};
    const int img = (int)s.img_size;
    const clgqa_image_mix mixes[] = {
        {CLGQA_MIX_BLEND, 0.37, 0, 0, 0, 0},
        {CLGQA_MIX_BLEND, 1.0, 0, 0, 0, 0},
        {CLGQA_MIX_BOX, 0, 1, img - 2, 2, img},   /* touching the right edge */
        {CLGQA_MIX_BOX, 0, 0, img, 0, img / 2},   /* whole rows */
        {CLGQA_MIX_BOX, 0, 2, 2, 0, img},         /* empty */
    };
    for (size_t batch = 2; batch <= 3; batch++)
        for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
            const clgqa_image_mix *mix = &mixes[m];
            size_t image = s.in_chans * s.img_size * s.img_size, total = batch * image;
            uint8_t *pixels = malloc(total);
            for (size_t i = 0; i < total; i++)
                pixels[i] = (uint8_t)clgqa_host_random_bits(11, 3 + batch * 8 + m, i);
            double *want = malloc(total * sizeof *want), *scale = malloc(total * sizeof *scale);
            size_t from_partner = 0;
            for (size_t b = 0; b < batch; b++)
                for (size_t c = 0; c < s.in_chans; c++)
                    for (size_t y = 0; y < s.img_size; y++)
                        for (size_t x = 0; x < s.img_size; x++) {
                            size_t own = ((b * s.in_chans + c) * s.img_size + y) * s.img_size + x;
                            size_t partner = own + (batch - 1 - 2 * b) * image; /* wraps back */
                            double a = ((double)pixels[own] / 255.0 - mean[c]) / std[c];
                            double p = ((double)pixels[partner] / 255.0 - mean[c]) / std[c];
                            int in_box = mix->mode == CLGQA_MIX_BOX && (int)y >= mix->y0 &&
                                         (int)y < mix->y1 && (int)x >= mix->x0 &&
                                         (int)x < mix->x1;
                            double value = mix->mode == CLGQA_MIX_BLEND
                                               ? mix->lambda * a + (1 - mix->lambda) * p
                                           : in_box ? p
                                                    : a;
                            from_partner += in_box;
                            size_t py = y / s.patch, px = x / s.patch;
                            size_t k = (c * s.patch + y % s.patch) * s.patch + x % s.patch;
                            size_t at = (b * n + py * grid + px) * k_len + k;
                            want[at] = value;
                            /* The magnitude of the terms: x / 255 and mean
                             * (they cancel near the mean), divided by std. */
                            double a_terms = ((double)pixels[own] / 255.0 + mean[c]) / std[c];
                            double p_terms = ((double)pixels[partner] / 255.0 + mean[c]) / std[c];
                            scale[at] = (mix->mode == CLGQA_MIX_BLEND
                                             ? mix->lambda * a_terms + (1 - mix->lambda) * p_terms
                                         : in_box ? p_terms
                                                  : a_terms) +
                                        1e-7;
                        }
            if (mix->mode == CLGQA_MIX_BOX) /* the box's share is what timm's lambda loses */
                ck_assert_uint_eq(from_partner, batch * s.in_chans *
                                                    (size_t)((mix->y1 - mix->y0) * (mix->x1 - mix->x0)));
            cl_mem d_pixels;
            TEST_OK(clgqa_buffer_create(test_runtime(), total, &d_pixels));
            TEST_OK(clgqa_buffer_write(test_runtime(), d_pixels, 0, total, pixels));
            cl_mem d_patches = op_upload_padded(NULL, total);
            TEST_OK(clgqa_patch_im2col_pixels(test_runtime(), op_view(d_patches),
                                              clgqa_view_at(d_pixels, 0), batch, s.in_chans,
                                              s.img_size, s.patch, mean, std, mix));
            float *out = op_floats(total);
            op_download_padded("mixed patches", d_patches, out, total);
            /* The normalisation as above (1e-6), then at most two products
             * and a sum in float: 1e-6 of the terms' magnitude. */
            op_assert_close_scaled("mixed patches", out, want, scale, total, 2e-6);
            clgqa_buffer_release(&d_pixels);
            clgqa_buffer_release(&d_patches);
            free(pixels), free(want), free(scale), free(out);
        }
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
    /* The gradients sit between guard bands: a store past one's end (as a
     * driver's miscompile once made, below) fails here by name. */
    cl_mem d_dtokens = test_upload(dtokens, B * P * C), d_dpatch = op_upload_padded(dpatch, B * n * C),
           d_dcls = op_upload_padded(dcls, C), d_dpos = op_upload_padded(dpos, P * C);
    TEST_OK(clgqa_tokens_backward(rt, op_view(d_dpatch), op_view(d_dcls), op_view(d_dpos),
                                  clgqa_view_at(d_dtokens, 0), B, P, C));
    op_download_padded("dpatch_out", d_dpatch, dpatch, B * n * C);
    op_download_padded("dcls", d_dcls, dcls, C);
    op_download_padded("dpos", d_dpos, dpos, P * C);
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

/* A driver bug this suite found, kept as a reproducer: Intel's CPU OpenCL
 * runtime (2026.2) miscompiled the first kernel below, tokens_backward's
 * old shape reduced to its bones. It merged the two paths' last stores (a
 * and b) into one store through a per-work-item pointer, and its
 * vectorizer used the first lane's pointer for the whole vector: where a
 * vector held work-items on both sides of `split`, a's sums went to b (past
 * b's end in tokens_backward). Both kernels are valid OpenCL C and compute
 * the same. The second is the shape tokens_backward has now (a loop per
 * path, the common store last) and must be right on every device; the
 * first is reported, not failed, where a driver gets it wrong. */
static const char merged_stores_source[] =
    "__kernel void merged(__global float *a, __global float *b, __global float *x,\n"
    "                     const uint split, const uint iters) {\n"
    "    const uint i = get_global_id(0);\n"
    "    float sum = 0.0f;\n"
    "    for (uint j = 0; j < iters; j++) {\n"
    "        sum += 1.0f;\n"
    "        if (i >= split)\n"
    "            x[i] += 1.0f;\n"
    "    }\n"
    "    a[i] += sum;\n"
    "    if (i < split)\n"
    "        b[i] += sum;\n"
    "}\n"
    "__kernel void split_paths(__global float *a, __global float *b, __global float *x,\n"
    "                          const uint split, const uint iters) {\n"
    "    const uint i = get_global_id(0);\n"
    "    float sum = 0.0f;\n"
    "    if (i < split) {\n"
    "        for (uint j = 0; j < iters; j++)\n"
    "            sum += 1.0f;\n"
    "        b[i] += sum;\n"
    "    } else {\n"
    "        for (uint j = 0; j < iters; j++) {\n"
    "            sum += 1.0f;\n"
    "            x[i] += 1.0f;\n"
    "        }\n"
    "    }\n"
    "    a[i] += sum;\n"
    "}\n";

/* Runs one of the two kernels over 64 work-items (split 5, 3 iterations) on
 * zeroed buffers; returns how many of the 3 x 64 results are wrong. */
static int merged_stores_errors(cl_program program, const char *name) {
    enum { N = 64, SPLIT = 5, ITERS = 3 };
    clgqa_runtime *rt = test_runtime();
    cl_int err;
    cl_kernel k = clCreateKernel(program, name, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float zeros[N] = {0}, a[N], b[N], x[N];
    cl_mem mems[3];
    for (int m = 0; m < 3; m++)
        mems[m] = test_upload(zeros, N);
    cl_uint split = SPLIT, iters = ITERS;
    for (cl_uint i = 0; i < 3; i++)
        TEST_OK(clgqa_set_arg(k, i, sizeof(cl_mem), &mems[i], name));
    TEST_OK(clgqa_set_arg(k, 3, sizeof split, &split, name));
    TEST_OK(clgqa_set_arg(k, 4, sizeof iters, &iters, name));
    TEST_OK(clgqa_launch_1d(rt, k, N, 16));
    test_download(mems[0], a, N);
    test_download(mems[1], b, N);
    test_download(mems[2], x, N);
    int errors = 0;
    for (int i = 0; i < N; i++)
        errors += (a[i] != ITERS) + (b[i] != (i < SPLIT ? ITERS : 0)) +
                  (x[i] != (i < SPLIT ? 0 : ITERS));
    for (int m = 0; m < 3; m++)
        clgqa_buffer_release(&mems[m]);
    clReleaseKernel(k);
    return errors;
}

START_TEST(merged_stores_driver_bug_reproducer) {
    clgqa_runtime *rt = test_runtime();
    cl_program program;
    TEST_OK(clgqa_build_program(rt, "merged_stores", merged_stores_source, &program));
    int wrong = merged_stores_errors(program, "split_paths");
    ck_assert_msg(wrong == 0, "%d results of the split-paths kernel are wrong on %s", wrong,
                  rt->device_name);
    wrong = merged_stores_errors(program, "merged");
    if (wrong)
        printf("merged_stores_driver_bug_reproducer: %s (%s, driver %s) miscompiles the merged-"
               "store pattern (%d of 192 results wrong); clgqa's kernels avoid it\n",
               rt->device_name, rt->platform_name, rt->driver_version, wrong);
    clReleaseProgram(program);
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
    const float mean[1] = {0.5f}, std[1] = {0.5f};
    const clgqa_image_mix outside = {CLGQA_MIX_BOX, 0, 0, 5, 1, 2}, heavy = {CLGQA_MIX_BLEND, 1.5, 0, 0, 0, 0};
    ck_assert_int_eq(clgqa_patch_im2col_pixels(rt, v, v, 1, 1, 4, 2, mean, std, &outside),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "box"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_patch_im2col_pixels(rt, v, v, 1, 1, 4, 2, mean, std, &heavy),
                     CLGQA_ERR_INVALID_ARG);
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_patch_embed");
    TCase *tc = tcase_create("patch_embed");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, im2col_matches_cpu);
    tcase_add_test(tc, im2col_pixels_normalises_like_the_host);
    tcase_add_test(tc, im2col_pixels_mixes_like_timm);
    tcase_add_test(tc, tokens_forward_and_backward_match_cpu);
    tcase_add_test(tc, merged_stores_driver_bug_reproducer);
    tcase_add_test(tc, bad_shapes_are_refused);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
