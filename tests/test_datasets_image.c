/* Image decode, channel conversion and resize against Pillow
 * (tests/ref/images, written by tests/ref/make_image_fixture.py), and the
 * augmentations: determinism from the seed, the RandAugment ops on
 * hand-checked cases and against torch (tests/ref/randaugment). Tolerance
 * 0 everywhere (every byte equal): decode goes through the same
 * libjpeg-turbo, the resize replicates Pillow's fixed-point arithmetic and
 * the ops torchvision's float32 arithmetic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define FIXTURES "tests/ref/images/"

static clgqa_image load(const char *name, int min_side) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "%s", name);
    uint8_t *data;
    size_t size;
    clgqa_image img = {0};
    TEST_OK(clgqa_read_file(path, 1 << 24, &data, &size));
    TEST_OK(clgqa_image_decode(data, size, path, min_side, &img));
    free(data);
    return img;
}

static void assert_same_image(const char *what, const clgqa_image *got, const clgqa_image *want) {
    ck_assert_msg(got->width == want->width && got->height == want->height &&
                      got->channels == want->channels,
                  "%s: %dx%dx%d, expected %dx%dx%d", what, got->width, got->height,
                  got->channels, want->width, want->height, want->channels);
    size_t n = (size_t)got->width * (size_t)got->height * (size_t)got->channels;
    size_t differing = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got->pixels[i] != want->pixels[i] && differing++ == 0)
            first = i;
    ck_assert_msg(differing == 0, "%s: %zu of %zu values differ, first at %zu: %d vs Pillow %d",
                  what, differing, n, first, got->pixels[first], want->pixels[first]);
}

static const char *inputs[] = {"rgb.png", "gray.png", "rgba.png", "rgb.jpg", "gray.jpg",
                               "cmyk.jpg"};

START_TEST(decode_matches_pillow) {
    const char *name = inputs[_i];
    char expected[256];
    snprintf(expected, sizeof expected, "%s.decoded.png", name);
    clgqa_image got = load(name, 0), want = load(expected, 0);
    assert_same_image(name, &got, &want);
    ck_assert_int_eq(got.channels, strncmp(name, "gray", 4) == 0 ? 1 : 3);
    if (got.channels == 3) { /* RGB -> L as Pillow's convert("L") */
        snprintf(expected, sizeof expected, "%s.luma.png", name);
        clgqa_image luma = load(expected, 0);
        TEST_OK(clgqa_image_convert(&got, 1));
        assert_same_image(expected, &got, &luma);
        clgqa_image_free(&luma);
    }
    clgqa_image_free(&got);
    clgqa_image_free(&want);
}
END_TEST

START_TEST(resize_matches_pillow_bilinear) {
    const char *name = inputs[_i];
    static const int sizes[][2] = {{16, 16}, {64, 64}, {20, 50}, {7, 5}};
    clgqa_image src = load(name, 0);
    for (int s = 0; s < 4; s++) {
        char expected[256];
        snprintf(expected, sizeof expected, "%s.%dx%d.png", name, sizes[s][0], sizes[s][1]);
        clgqa_image want = load(expected, 0), got = {0};
        TEST_OK(clgqa_image_resize(&src, sizes[s][0], sizes[s][1], &got));
        assert_same_image(expected, &got, &want);
        clgqa_image_free(&got);
        clgqa_image_free(&want);
    }
    clgqa_image_free(&src);
}
END_TEST

/* Decode-time DCT shrink for big JPEGs, then resize: Pillow's draft(). */
START_TEST(jpeg_draft_then_resize_matches_pillow) {
    static const char *jpegs[] = {"rgb.jpg", "gray.jpg", "cmyk.jpg"};
    for (int j = 0; j < 3; j++)
        for (int side = 12; side <= 24; side += 12) {
            char expected[256];
            snprintf(expected, sizeof expected, "%s.draft%d.png", jpegs[j], side);
            clgqa_image img = load(jpegs[j], side), want = load(expected, 0), got = {0};
            TEST_OK(clgqa_image_resize(&img, side, side, &got));
            assert_same_image(expected, &got, &want);
            clgqa_image_free(&img);
            clgqa_image_free(&got);
            clgqa_image_free(&want);
        }
}
END_TEST

START_TEST(gray_to_rgb_replicates) {
    clgqa_image img = load("gray.png", 0);
    clgqa_image copy = load("gray.png", 0);
    TEST_OK(clgqa_image_convert(&img, 3));
    ck_assert_int_eq(img.channels, 3);
    for (int i = 0; i < img.width * img.height; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(img.pixels[i * 3 + c], copy.pixels[i]);
    clgqa_image_free(&img);
    clgqa_image_free(&copy);
}
END_TEST

/* ---- augmentation ---- */

static clgqa_image generated(int sample, int side, int channels) {
    clgqa_image img = {side, side, channels, gen_image(sample, side, side, channels)};
    return img;
}

static int images_equal(const clgqa_image *a, const clgqa_image *b) {
    size_t n = (size_t)a->width * (size_t)a->height * (size_t)a->channels;
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, n) == 0;
}

START_TEST(augmentation_repeats_from_seed_epoch_sample) {
    static const clgqa_augment modes[] = {CLGQA_AUGMENT_FLIP, CLGQA_AUGMENT_CROP_FLIP,
                                          CLGQA_AUGMENT_RANDAUGMENT};
    for (int m = 0; m < 3; m++) {
        int changed_by_epoch = 0, changed_by_sample = 0;
        for (int sample = 0; sample < 16; sample++) {
            clgqa_image a = generated(5, 32, 3), b = generated(5, 32, 3);
            clgqa_image c = generated(5, 32, 3), d = generated(5, 32, 3);
            TEST_OK(clgqa_augment_apply(&a, modes[m], 7, 3, (size_t)sample));
            TEST_OK(clgqa_augment_apply(&b, modes[m], 7, 3, (size_t)sample));
            TEST_OK(clgqa_augment_apply(&c, modes[m], 7, 4, (size_t)sample));
            TEST_OK(clgqa_augment_apply(&d, modes[m], 7, 3, (size_t)sample + 100));
            ck_assert_msg(images_equal(&a, &b), "mode %d sample %d: same key, different image", m,
                          sample);
            changed_by_epoch += !images_equal(&a, &c);
            changed_by_sample += !images_equal(&a, &d);
            clgqa_image_free(&a), clgqa_image_free(&b), clgqa_image_free(&c),
                clgqa_image_free(&d);
        }
        /* Over 16 samples the draws must differ somewhere (flip: p=1/2 each). */
        ck_assert_msg(changed_by_epoch >= 3 && changed_by_sample >= 3,
                      "mode %d: epoch changed %d of 16, sample changed %d of 16", m,
                      changed_by_epoch, changed_by_sample);
    }
}
END_TEST

START_TEST(flip_and_crop_move_pixels_exactly) {
    /* Find a sample key that flips, and check every pixel is mirrored. */
    clgqa_image orig = generated(9, 16, 3);
    int flipped = 0;
    for (size_t sample = 0; sample < 8 && !flipped; sample++) {
        clgqa_image img = generated(9, 16, 3);
        TEST_OK(clgqa_augment_apply(&img, CLGQA_AUGMENT_FLIP, 1, 0, sample));
        if (!images_equal(&img, &orig)) {
            flipped = 1;
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++)
                    for (int c = 0; c < 3; c++)
                        ck_assert_int_eq(img.pixels[(y * 16 + x) * 3 + c],
                                         orig.pixels[(y * 16 + 15 - x) * 3 + c]);
        }
        clgqa_image_free(&img);
    }
    ck_assert_msg(flipped, "no flip in 8 draws");
    /* crop_flip: each output pixel is 0 (padding) or an input pixel at a
     * fixed shift (|shift| <= side/8 = 2), possibly mirrored. */
    for (size_t sample = 0; sample < 8; sample++) {
        clgqa_image img = generated(9, 16, 3);
        TEST_OK(clgqa_augment_apply(&img, CLGQA_AUGMENT_CROP_FLIP, 1, 0, sample));
        int matched = 0;
        for (int mirror = 0; mirror < 2 && !matched; mirror++)
            for (int dy = -2; dy <= 2 && !matched; dy++)
                for (int dx = -2; dx <= 2 && !matched; dx++) {
                    int ok = 1;
                    for (int y = 0; y < 16 && ok; y++)
                        for (int x = 0; x < 16 && ok; x++) {
                            int sx = (mirror ? 15 - x : x) + dx, sy = y + dy;
                            for (int c = 0; c < 3; c++) {
                                int want = sx < 0 || sx > 15 || sy < 0 || sy > 15
                                               ? 0
                                               : orig.pixels[(sy * 16 + sx) * 3 + c];
                                ok &= img.pixels[(y * 16 + x) * 3 + c] == want;
                            }
                        }
                    matched = ok;
                }
        ck_assert_msg(matched, "crop_flip sample %zu is no shifted (mirrored) copy", sample);
        clgqa_image_free(&img);
    }
    clgqa_image_free(&orig);
}
END_TEST

/* Expected values worked out from torchvision's tensor code (comments give
 * the formula) on a 4x4 RGB image. */
START_TEST(randaugment_ops_follow_torchvision) {
    const int side = 4;
    /* Magnitudes at bin 9 of 31. */
    ck_assert_float_eq_tol(clgqa_randaugment_magnitude(1, 32), 0.09f, 1e-6f);
    ck_assert_float_eq_tol(clgqa_randaugment_magnitude(3, 32), 150.0f / 331.0f * 32 * 0.3f, 1e-4f);
    ck_assert_float_eq_tol(clgqa_randaugment_magnitude(5, 32), 9.0f, 1e-6f);
    ck_assert_float_eq_tol(clgqa_randaugment_magnitude(6, 32), 0.27f, 1e-6f);
    ck_assert_float_eq(clgqa_randaugment_magnitude(10, 32), 7.0f);
    ck_assert_float_eq_tol(clgqa_randaugment_magnitude(11, 32), 178.5f, 1e-4f);

    clgqa_image img = generated(3, side, 3);
    uint8_t orig[48];
    memcpy(orig, img.pixels, 48);

    /* Brightness 1.27: min(255, trunc(1.27 p)). */
    TEST_OK(clgqa_randaugment_op(&img, 6, 0.27f));
    for (int i = 0; i < 48; i++) {
        float v = (1.0f + 0.27f) * orig[i];
        ck_assert_int_eq(img.pixels[i], v > 255 ? 255 : (int)v);
    }
    /* Posterize 7 bits: clear the low bit. */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 10, 7.0f));
    for (int i = 0; i < 48; i++)
        ck_assert_int_eq(img.pixels[i], orig[i] & 0xfe);
    /* Solarize at 178.5: invert p >= 178.5. */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 11, 178.5f));
    for (int i = 0; i < 48; i++)
        ck_assert_int_eq(img.pixels[i], orig[i] >= 179 ? 255 - orig[i] : orig[i]);
    /* AutoContrast: per channel (p - min) * 255 / (max - min), truncated. */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 12, 0.0f));
    for (int c = 0; c < 3; c++) {
        int lo = 255, hi = 0;
        for (int i = 0; i < 16; i++)
            lo = orig[i * 3 + c] < lo ? orig[i * 3 + c] : lo,
            hi = orig[i * 3 + c] > hi ? orig[i * 3 + c] : hi;
        for (int i = 0; i < 16; i++) {
            float v = (float)(orig[i * 3 + c] - lo) * (255.0f / (float)(hi - lo));
            ck_assert_int_eq(img.pixels[i * 3 + c], (int)v);
        }
    }
    /* TranslateX by +2 (int(2.9)): out(x) = in(x - 2), zero fill on the left. */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 3, 2.9f));
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_int_eq(img.pixels[(y * side + x) * 3 + c],
                                 x < 2 ? 0 : orig[(y * side + x - 2) * 3 + c]);
    /* Rotate by 90 degrees (counter-clockwise, about the centre): out(x, y) =
     * in(side - 1 - y, x). */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 5, 90.0f));
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_int_eq(img.pixels[(y * side + x) * 3 + c],
                                 orig[(x * side + (side - 1 - y)) * 3 + c]);
    /* ShearX by 0.5 about the top-left corner: out(x, y) = in(x + 0.5 * (y + 0.5) - ... ),
     * nearest: row 0 unmoved except rounding; a row far down shifts left. */
    memcpy(img.pixels, orig, 48);
    TEST_OK(clgqa_randaugment_op(&img, 1, 0.5f));
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            /* source x = x + 0.5 * (y + 0.5) - 0.5*0 ... in pixel centres:
             * xs = (x + 0.5) + 0.5 * (y + 0.5) - 0.5, rounded half to even. */
            float xs = nearbyintf((float)x + 0.5f * ((float)y + 0.5f));
            for (int c = 0; c < 3; c++)
                ck_assert_int_eq(img.pixels[(y * side + x) * 3 + c],
                                 xs < side ? orig[(y * side + (int)xs) * 3 + c] : 0);
        }
    /* Equalize on a two-valued channel: the lower value maps to 0 and the
     * upper to (count below + step / 2) / step with step = count below / 255. */
    clgqa_image gray = {4, 4, 1, malloc(16)};
    for (int i = 0; i < 16; i++)
        gray.pixels[i] = i < 6 ? 40 : 200;
    TEST_OK(clgqa_randaugment_op(&gray, 13, 0.0f));
    for (int i = 0; i < 16; i++) /* step = 6 / 255 = 0: the channel is kept */
        ck_assert_int_eq(gray.pixels[i], i < 6 ? 40 : 200);
    clgqa_image_free(&gray);
    clgqa_image big = {32, 32, 1, malloc(1024)};
    for (int i = 0; i < 1024; i++)
        big.pixels[i] = i < 600 ? 40 : 200;
    TEST_OK(clgqa_randaugment_op(&big, 13, 0.0f));
    for (int i = 0; i < 1024; i++) /* step = 600 / 255 = 2: 200 -> (600 + 1) / 2 = 300 -> 255 */
        ck_assert_int_eq(big.pixels[i], i < 600 ? 0 : 255);
    clgqa_image_free(&big);
    /* Color on gray is the identity; Contrast 0 -> the mean everywhere. */
    clgqa_image g = generated(4, side, 1);
    uint8_t gorig[16];
    memcpy(gorig, g.pixels, 16);
    TEST_OK(clgqa_randaugment_op(&g, 7, 0.27f));
    ck_assert_int_eq(memcmp(g.pixels, gorig, 16), 0);
    TEST_OK(clgqa_randaugment_op(&g, 8, -1.0f));
    float mean = 0;
    for (int i = 0; i < 16; i++)
        mean += gorig[i];
    mean /= 16;
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(g.pixels[i], (int)mean);
    clgqa_image_free(&g);
    clgqa_image_free(&img);
}
END_TEST

/* Every op at bin 9, both signs, against tests/ref/randaugment/expected.bin
 * (torch running torchvision's uint8 tensor code; see
 * tests/ref/make_randaugment_fixture.py). Tolerance 0. */
START_TEST(randaugment_ops_match_torch_fixture) {
    static const int images[][3] = {{7, 12, 3}, {11, 12, 1}, {5, 9, 3}}; /* sample, side, ch */
    uint8_t *expected;
    size_t size, at = 0;
    TEST_OK(clgqa_read_file("tests/ref/randaugment/expected.bin", 1 << 20, &expected, &size));
    for (int i = 0; i < 3; i++) {
        int side = images[i][1], ch = images[i][2];
        size_t bytes = (size_t)(side * side * ch);
        for (int op = 0; op < CLGQA_RANDAUGMENT_OPS; op++)
            for (int sign = 1; sign >= -1; sign -= 2) {
                clgqa_image img = generated(images[i][0], side, ch);
                float magnitude = clgqa_randaugment_magnitude(op, side);
                if (op >= 1 && op <= 9) /* ShearX .. Sharpness take a random sign */
                    magnitude *= (float)sign;
                TEST_OK(clgqa_randaugment_op(&img, op, magnitude));
                ck_assert_uint_le(at + bytes, size);
                size_t differing = 0;
                for (size_t k = 0; k < bytes; k++)
                    differing += img.pixels[k] != expected[at + k];
                ck_assert_msg(differing == 0, "image %d op %d sign %d: %zu of %zu bytes differ", i,
                              op, sign, differing, bytes);
                at += bytes;
                clgqa_image_free(&img);
            }
    }
    ck_assert_uint_eq(at, size);
    free(expected);
}
END_TEST

START_TEST(unknown_augment_is_refused) {
    clgqa_augment mode;
    ck_assert_int_eq(clgqa_augment_parse("mixup", &mode), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "mixup"), "%s", clgqa_error_message());
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("datasets_image");
    TCase *tc = tcase_create("image");
    tcase_add_loop_test(tc, decode_matches_pillow, 0, 6);
    tcase_add_loop_test(tc, resize_matches_pillow_bilinear, 0, 6);
    tcase_add_test(tc, jpeg_draft_then_resize_matches_pillow);
    tcase_add_test(tc, gray_to_rgb_replicates);
    tcase_add_test(tc, augmentation_repeats_from_seed_epoch_sample);
    tcase_add_test(tc, flip_and_crop_move_pixels_exactly);
    tcase_add_test(tc, randaugment_ops_follow_torchvision);
    tcase_add_test(tc, randaugment_ops_match_torch_fixture);
    tcase_add_test(tc, unknown_augment_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }
