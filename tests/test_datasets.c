/* Dataset readers on generated data in every published layout: counts,
 * labels and pixel values through the whole pipeline, and every error of
 * issue 4 point 8 (missing folder or file, truncated file, wrong magic or
 * sizes, undecodable image, label out of range) with a message naming the
 * file. Lossless sources (IDX, CIFAR, PNG) are checked exactly (tolerance
 * 1e-6 on the normalised floats); JPEG sources by mean absolute difference
 * against the generated pattern (under 4 of 255 at quality 95). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clgqa/dataset.h"
#include "dataset_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

static char *root; /* a fresh folder per test */

static void setup(void) { root = test_temp_dir(); }
static void teardown(void) {
    test_remove_tree(root);
    free(root);
}

static clgqa_config config(const char *dataset, const char *dir, int img_size, int in_chans) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", dataset);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    cfg.img_size = img_size;
    cfg.in_chans = in_chans;
    cfg.num_classes = 0;
    cfg.augment = CLGQA_AUGMENT_NONE; /* the samples as stored */
    cfg.norm_mean[0] = 0.5f, cfg.norm_mean[1] = 0.4f, cfg.norm_mean[2] = 0.3f;
    cfg.norm_std[0] = 0.5f, cfg.norm_std[1] = 0.25f, cfg.norm_std[2] = 0.2f;
    return cfg;
}

static clgqa_dataset *open_ok(const clgqa_config *cfg, clgqa_split split) {
    clgqa_dataset *ds = NULL;
    TEST_OK(test_dataset_open(cfg, split, 0, &ds));
    return ds;
}

/* Opening must fail with `status` and a message containing `needle`. */
static void assert_open_fails(const clgqa_config *cfg, clgqa_split split, clgqa_status status,
                              const char *needle) {
    clgqa_dataset *ds = NULL;
    clgqa_status got = test_dataset_open(cfg, split, 0, &ds);
    ck_assert_msg(got == status, "expected %s, got %s: %s", clgqa_status_name(status),
                  clgqa_status_name(got), clgqa_error_message());
    ck_assert_ptr_null(ds);
    ck_assert_msg(strstr(clgqa_error_message(), needle), "message '%s' lacks '%s'",
                  clgqa_error_message(), needle);
}

/* Sample i of ds equals generated image `sample` (8-bit, interleaved,
 * already at img_size) after normalisation. */
static void assert_sample_exact(clgqa_dataset *ds, const clgqa_config *cfg, size_t i,
                                const uint8_t *want, int want_label) {
    int s = cfg->img_size, ch = cfg->in_chans;
    float *img = malloc(sizeof(float) * (size_t)(ch * s * s));
    int32_t label = -1;
    TEST_OK(clgqa_dataset_get(ds, i, 0, img, &label));
    ck_assert_int_eq(label, want_label);
    for (int c = 0; c < ch; c++)
        for (int p = 0; p < s * s; p++) {
            float level = (float)want[p * ch + c] / 255.0f;
            float expect = (level - cfg->norm_mean[c]) / cfg->norm_std[c];
            ck_assert_msg(fabsf(img[c * s * s + p] - expect) <= 1e-6f,
                          "sample %zu channel %d pixel %d: %f, expected %f", i, c, p,
                          (double)img[c * s * s + p], (double)expect);
        }
    free(img);
}

/* Mean |decoded - generated| in 8-bit levels for a JPEG sample. */
static double jpeg_sample_error(clgqa_dataset *ds, const clgqa_config *cfg, size_t i,
                                int sample, int side, int *label) {
    int s = cfg->img_size;
    float *img = malloc(sizeof(float) * (size_t)(3 * s * s));
    TEST_OK(clgqa_dataset_get(ds, i, 0, img, label));
    clgqa_image gen = {side, side, 3, gen_image(sample, side, side, 3)}, want = gen;
    if (side != s)
        TEST_OK(clgqa_image_resize(&gen, s, s, &want));
    double total = 0;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < s * s; p++) {
            float level = (img[c * s * s + p] * cfg->norm_std[c] + cfg->norm_mean[c]) * 255.0f;
            total += fabs(level - want.pixels[p * 3 + c]);
        }
    if (want.pixels != gen.pixels)
        clgqa_image_free(&want);
    clgqa_image_free(&gen);
    free(img);
    return total / (3.0 * s * s);
}

/* ---- MNIST / Fashion-MNIST ---- */

START_TEST(mnist_plain_and_gzip) {
    for (int gz = 0; gz < 2; gz++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/mnist%d", root, gz);
        ck_assert_int_eq(gen_mkdirs(dir) | gen_mnist(dir, 30, 12, 28, gz), 0);
        clgqa_config cfg = config(gz ? "fashion-mnist" : "mnist", dir, 28, 1);
        for (int split = 0; split < 2; split++) {
            clgqa_dataset *ds = open_ok(&cfg, (clgqa_split)split);
            ck_assert_uint_eq(clgqa_dataset_count(ds), split ? 12 : 30);
            ck_assert_int_eq(clgqa_dataset_num_classes(ds), 10);
            ck_assert_int_eq(clgqa_dataset_channels(ds), 1);
            ck_assert_int_eq(clgqa_dataset_img_size(ds), 28);
            for (int i = 0; i < (split ? 12 : 30); i++) {
                int sample = (split ? 1000 : 0) + i;
                uint8_t *want = gen_image(sample, 28, 28, 1);
                assert_sample_exact(ds, &cfg, (size_t)i, want, gen_label(sample, 10));
                free(want);
            }
            clgqa_dataset_close(ds);
        }
    }
}
END_TEST

START_TEST(mnist_to_three_channels_and_resized) {
    ck_assert_int_eq(gen_mnist(root, 5, 3, 28, 1), 0);
    clgqa_config cfg = config("mnist", root, 28, 3);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    for (int i = 0; i < 5; i++) { /* gray replicated into R, G and B */
        clgqa_image gray = {28, 28, 1, gen_image(i, 28, 28, 1)};
        TEST_OK(clgqa_image_convert(&gray, 3));
        assert_sample_exact(ds, &cfg, (size_t)i, gray.pixels, gen_label(i, 10));
        clgqa_image_free(&gray);
    }
    clgqa_dataset_close(ds);
    cfg = config("mnist", root, 32, 1); /* the pipeline's resize is Pillow's (see image suite) */
    ds = open_ok(&cfg, CLGQA_SPLIT_TEST);
    for (int i = 0; i < 3; i++) {
        clgqa_image gen = {28, 28, 1, gen_image(1000 + i, 28, 28, 1)}, big = {0};
        TEST_OK(clgqa_image_resize(&gen, 32, 32, &big));
        assert_sample_exact(ds, &cfg, (size_t)i, big.pixels, gen_label(1000 + i, 10));
        clgqa_image_free(&gen);
        clgqa_image_free(&big);
    }
    clgqa_dataset_close(ds);
}
END_TEST

/* The demo's dataset at its Debian location, with data_dir left empty. */
START_TEST(fashion_mnist_defaults_to_debian_folder) {
    clgqa_config cfg = config("fashion-mnist", "", 28, 1);
    clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(train), 60000);
    ck_assert_uint_eq(clgqa_dataset_count(test), 10000);
    float img[28 * 28];
    int32_t label;
    TEST_OK(clgqa_dataset_get(train, 0, 0, img, &label));
    ck_assert_int_eq(label, 9); /* the first training image is an ankle boot */
    TEST_OK(clgqa_dataset_get(test, 0, 0, img, &label));
    ck_assert_int_eq(label, 9);
    clgqa_dataset_close(train);
    clgqa_dataset_close(test);
}
END_TEST

/* ---- CIFAR ---- */

START_TEST(cifar10_batches) {
    char dir[4096]; /* inside the folder the archive unpacks to */
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", root);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_cifar(dir, 0, 4, 6), 0);
    clgqa_config cfg = config("cifar10", root, 32, 3);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    ck_assert_uint_eq(clgqa_dataset_count(ds), 20);
    ck_assert_int_eq(clgqa_dataset_num_classes(ds), 10);
    for (int i = 0; i < 20; i++) {
        uint8_t *want = gen_image(i, 32, 32, 3);
        assert_sample_exact(ds, &cfg, (size_t)i, want, gen_label(i, 10));
        free(want);
    }
    clgqa_dataset_close(ds);
    cfg = config("cifar10", dir, 32, 1); /* RGB -> luma */
    ds = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(ds), 6);
    for (int i = 0; i < 6; i++) {
        clgqa_image rgb = {32, 32, 3, gen_image(1000 + i, 32, 32, 3)};
        TEST_OK(clgqa_image_convert(&rgb, 1));
        assert_sample_exact(ds, &cfg, (size_t)i, rgb.pixels, gen_label(1000 + i, 10));
        clgqa_image_free(&rgb);
    }
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(cifar100_fine_and_coarse) {
    ck_assert_int_eq(gen_cifar(root, 1, 3, 5), 0);
    for (int coarse = 0; coarse < 2; coarse++) {
        clgqa_config cfg = config("cifar100", root, 32, 3);
        cfg.label_mode_coarse = coarse;
        cfg.num_classes = coarse ? 20 : 100;
        clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
        ck_assert_uint_eq(clgqa_dataset_count(ds), 15);
        ck_assert_int_eq(clgqa_dataset_num_classes(ds), coarse ? 20 : 100);
        for (int i = 0; i < 15; i++) {
            uint8_t *want = gen_image(i, 32, 32, 3);
            int fine = gen_label(i, 100);
            assert_sample_exact(ds, &cfg, (size_t)i, want, coarse ? fine % 20 : fine);
            free(want);
        }
        clgqa_dataset_close(ds);
    }
}
END_TEST

/* ---- image layouts ---- */

START_TEST(tiny_imagenet_layout) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tiny-imagenet-200", root);
    ck_assert_int_eq(gen_tiny_imagenet(dir, 3, 4, 2, 64), 0);
    clgqa_config cfg = config("tiny-imagenet-200", root, 32, 3); /* 64 -> 32: DCT shrink */
    clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(train), 12);
    ck_assert_uint_eq(clgqa_dataset_count(test), 6);
    ck_assert_int_eq(clgqa_dataset_num_classes(train), 3);
    for (int i = 0; i < 12; i++) {
        int label;
        double err = jpeg_sample_error(train, &cfg, (size_t)i, i, 64, &label);
        ck_assert_int_eq(label, i / 4);
        ck_assert_msg(err < 4.0, "train sample %d: mean error %.2f levels", i, err);
    }
    for (int i = 0; i < 6; i++) {
        int label;
        double err = jpeg_sample_error(test, &cfg, (size_t)i, 1000 + i, 64, &label);
        ck_assert_int_eq(label, i % 3);
        ck_assert_msg(err < 4.0, "val sample %d: mean error %.2f levels", i, err);
    }
    clgqa_dataset_close(train);
    clgqa_dataset_close(test);
}
END_TEST

START_TEST(food101_layout) {
    ck_assert_int_eq(gen_food101(root, 4, 3, 2, 32), 0);
    clgqa_config cfg = config("food101", root, 32, 3);
    clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(train), 12);
    ck_assert_uint_eq(clgqa_dataset_count(test), 8);
    ck_assert_int_eq(clgqa_dataset_num_classes(test), 4);
    for (int i = 0; i < 12; i++) {
        int label;
        double err = jpeg_sample_error(train, &cfg, (size_t)i, i, 32, &label);
        ck_assert_int_eq(label, i / 3);
        ck_assert_msg(err < 4.0, "train sample %d: mean error %.2f levels", i, err);
    }
    for (int i = 0; i < 8; i++) {
        int label;
        double err = jpeg_sample_error(test, &cfg, (size_t)i, 1000 + i, 32, &label);
        ck_assert_int_eq(label, i % 4);
        ck_assert_msg(err < 4.0, "test sample %d: mean error %.2f levels", i, err);
    }
    clgqa_dataset_close(train);
    clgqa_dataset_close(test);
}
END_TEST

/* Labels from the class id column (id - 1), whichever of the folder or its
 * parent data_dir names; trainval is the train split. */
START_TEST(oxford_pet_layout) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/oxford-iiit-pet", root);
    ck_assert_int_eq(gen_oxford_pet(dir, 8, 5, 32), 0);
    for (int parent = 0; parent < 2; parent++) {
        clgqa_config cfg = config("oxfordiiitpet", parent ? root : dir, 32, 3);
        clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
        clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
        ck_assert_uint_eq(clgqa_dataset_count(train), 8);
        ck_assert_uint_eq(clgqa_dataset_count(test), 5);
        ck_assert_int_eq(clgqa_dataset_num_classes(train), 37);
        for (int i = 0; i < 13; i++) {
            int sample = i < 8 ? i : 1000 + i - 8, label;
            double err = jpeg_sample_error(i < 8 ? train : test, &cfg, (size_t)(i < 8 ? i : i - 8), sample, 32,
                                           &label);
            ck_assert_int_eq(label, gen_pet_label(sample));
            ck_assert_msg(err < 4.0, "sample %d: mean error %.2f levels", sample, err);
        }
        clgqa_dataset_close(train);
        clgqa_dataset_close(test);
    }
    /* A line without the class id column, and a class id outside 1..37. */
    char path[4096];
    snprintf(path, sizeof path, "%s/annotations/test.txt", dir);
    ck_assert_int_eq(gen_write_text(path, "Breed_1_1000 38 2 26\n"), 0);
    clgqa_config cfg = config("oxfordiiitpet", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "test.txt: line 1 'Breed_1_1000 38 2 26'");
    ck_assert_int_eq(gen_write_text(path, "Breed_1_1000\n"), 0);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "is not '<image> <class id 1..37>");
}
END_TEST

/* Without data_dir, ./<dataset> in torchvision's folders, as the reference
 * code downloads them: ./mnist/MNIST/raw (gzipped), ./fashion-mnist/FashionMNIST/raw
 * (before Debian's folder), ./cifar10/cifar-10-batches-bin,
 * ./oxfordiiitpet/oxford-iiit-pet. A data_dir naming torchvision's root
 * finds the same folders. */
START_TEST(torchvision_folders_found_without_data_dir) {
    char cwd[4096], dir[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(root), 0);
    ck_assert_int_eq(gen_mkdirs("mnist/MNIST/raw") | gen_mnist("mnist/MNIST/raw", 6, 3, 28, 1), 0);
    ck_assert_int_eq(gen_mkdirs("fashion-mnist/FashionMNIST/raw") |
                     gen_mnist("fashion-mnist/FashionMNIST/raw", 5, 2, 28, 0), 0);
    ck_assert_int_eq(gen_mkdirs("cifar10/cifar-10-batches-bin") | gen_cifar("cifar10/cifar-10-batches-bin", 0, 2, 3),
                     0);
    ck_assert_int_eq(gen_oxford_pet("oxfordiiitpet/oxford-iiit-pet", 3, 2, 16), 0);
    static const struct {
        const char *dataset;
        int channels, side;
        size_t train, test;
    } cases[] = {{"mnist", 1, 28, 6, 3}, {"fashion-mnist", 1, 28, 5, 2}, {"cifar10", 3, 32, 10, 3},
                 {"oxfordiiitpet", 3, 16, 3, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        clgqa_config cfg = config(cases[c].dataset, "", cases[c].side, cases[c].channels);
        clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
        clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
        ck_assert_uint_eq(clgqa_dataset_count(train), cases[c].train);
        ck_assert_uint_eq(clgqa_dataset_count(test), cases[c].test);
        if (cases[c].channels == 1) {
            uint8_t *want = gen_image(1000 + 1, 28, 28, 1);
            assert_sample_exact(test, &cfg, 1, want, gen_label(1000 + 1, 10));
            free(want);
        }
        clgqa_dataset_close(train);
        clgqa_dataset_close(test);
    }
    snprintf(dir, sizeof dir, "%s/mnist", root);
    clgqa_config cfg = config("mnist", dir, 28, 1);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    ck_assert_uint_eq(clgqa_dataset_count(ds), 6);
    clgqa_dataset_close(ds);
    ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

/* torchvision's CIFAR download is the python (pickled) version: refused
 * with the way to the binary one. */
START_TEST(cifar_python_version_points_to_the_binary_one) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/cifar10/cifar-10-batches-py", root);
    snprintf(path, sizeof path, "%s/data_batch_1", dir);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_write_text(path, "pickle"), 0);
    snprintf(dir, sizeof dir, "%s/cifar10", root);
    clgqa_config cfg = config("cifar10", dir, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "cifar-10-batches-py/data_batch_1 is torchvision's "
                      "python (pickled) CIFAR-10, which clgqa does not read: get the binary version with "
                      "scripts/fetch-datasets cifar10");
    snprintf(dir, sizeof dir, "%s/cifar100/cifar-100-python", root);
    snprintf(path, sizeof path, "%s/train", dir);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_write_text(path, "pickle"), 0);
    snprintf(dir, sizeof dir, "%s/cifar100", root);
    cfg = config("cifar100", dir, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "scripts/fetch-datasets cifar100");
    /* Both versions there: the binary one is read. */
    snprintf(dir, sizeof dir, "%s/cifar10/cifar-10-batches-bin", root);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_cifar(dir, 0, 2, 3), 0);
    snprintf(dir, sizeof dir, "%s/cifar10", root);
    cfg = config("cifar10", dir, 32, 3);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(ds), 3);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(cinic10_png_folders_exact) {
    ck_assert_int_eq(gen_image_folder(root, 3, 4, 2, 16, 1), 0);
    /* A stray non-image file and a hidden folder are not samples. */
    char path[4096];
    snprintf(path, sizeof path, "%s/train/class_01/notes.txt", root);
    ck_assert_int_eq(gen_write_text(path, "x"), 0);
    snprintf(path, sizeof path, "%s/train/.cache", root);
    ck_assert_int_eq(gen_mkdirs(path), 0);
    clgqa_config cfg = config("cinic10", root, 16, 3);
    clgqa_dataset *train = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
    ck_assert_uint_eq(clgqa_dataset_count(train), 12);
    ck_assert_uint_eq(clgqa_dataset_count(test), 6);
    ck_assert_int_eq(clgqa_dataset_num_classes(train), 3);
    for (int i = 0; i < 12; i++) {
        uint8_t *want = gen_image(i, 16, 16, 3);
        assert_sample_exact(train, &cfg, (size_t)i, want, i / 4);
        free(want);
    }
    for (int i = 0; i < 6; i++) {
        uint8_t *want = gen_image(1000 + i, 16, 16, 3);
        assert_sample_exact(test, &cfg, (size_t)i, want, i / 2);
        free(want);
    }
    clgqa_dataset_close(train);
    clgqa_dataset_close(test);
}
END_TEST

START_TEST(imagefolder_jpeg_with_gray_and_cmyk_files) {
    ck_assert_int_eq(gen_image_folder(root, 2, 3, 1, 24, 0), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/train/class_01/z_gray.JPG", root);
    ck_assert_int_eq(gen_write_jpeg(path, 77, 24, 24, 1, 95), 0);
    snprintf(path, sizeof path, "%s/train/class_01/z_cmyk.jpeg", root);
    ck_assert_int_eq(gen_write_jpeg(path, 78, 24, 24, 4, 95), 0);
    clgqa_config cfg = config("imagefolder", root, 24, 3);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    ck_assert_uint_eq(clgqa_dataset_count(ds), 8);
    for (int i = 0; i < 6; i++) {
        int label;
        double err = jpeg_sample_error(ds, &cfg, (size_t)i, i, 24, &label);
        ck_assert_int_eq(label, i / 3);
        ck_assert_msg(err < 4.0, "sample %d: mean error %.2f levels", i, err);
    }
    /* The gray file comes out as three equal channels. */
    float img[3 * 24 * 24];
    int32_t label;
    TEST_OK(clgqa_dataset_get(ds, 7, 0, img, &label)); /* z_gray sorts after z_cmyk */
    ck_assert_int_eq(label, 1);
    for (int p = 0; p < 24 * 24; p++) {
        float level = (img[p] * 0.5f + 0.5f) * 255.0f;
        ck_assert_float_eq_tol((img[24 * 24 + p] * 0.25f + 0.4f) * 255.0f, level, 1e-3f);
        ck_assert_float_eq_tol((img[2 * 24 * 24 + p] * 0.2f + 0.3f) * 255.0f, level, 1e-3f);
    }
    TEST_OK(clgqa_dataset_get(ds, 6, 0, img, &label)); /* CMYK decodes */
    clgqa_dataset_close(ds);
}
END_TEST

/* ---- errors ---- */

START_TEST(missing_folder_and_files) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/nowhere", root);
    clgqa_config cfg = config("cifar10", dir, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, dir);
    cfg = config("cifar10", root, 32, 3); /* folder present, batches absent */
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "data_batch_1.bin");
    ck_assert_int_eq(gen_mnist(root, 4, 2, 28, 0), 0);
    snprintf(dir, sizeof dir, "%s/t10k-labels-idx1-ubyte", root);
    unlink(dir);
    cfg = config("mnist", root, 28, 1);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_IO, "t10k-labels-idx1-ubyte");
    cfg = config("tiny-imagenet-200", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "wnids.txt");
    cfg = config("food101", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "meta/classes.txt");
    cfg = config("imagefolder", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_IO, "/train");
    cfg = config("cifar10", "", 32, 3); /* and no ./cifar10 in the working folder */
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_INVALID_ARG, "no data_dir, and no folder ./cifar10");
    cfg = config("svhn", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_INVALID_ARG, "svhn");
}
END_TEST

/* Rewrites `path` with `size` bytes from its start, or with byte `at` set
 * to `value` when size is 0. */
static void damage(const char *path, size_t size, size_t at, int value) {
    uint8_t *data;
    size_t length;
    TEST_OK(clgqa_read_file(path, 1 << 30, &data, &length));
    if (size == 0)
        data[at] = (uint8_t)value;
    ck_assert_int_eq(gen_write_bytes(path, data, size ? size : length), 0);
    free(data);
}

START_TEST(truncated_files) {
    char path[4096];
    ck_assert_int_eq(gen_mnist(root, 6, 2, 28, 0), 0);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", root);
    damage(path, 16 + 5 * 784 + 100, 0, 0);
    clgqa_config cfg = config("mnist", root, 28, 1);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, path);
    damage(path, 10, 0, 0); /* inside the header */
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "truncated IDX header");

    char gz[4096];
    snprintf(gz, sizeof gz, "%s/gz", root);
    ck_assert_int_eq(gen_mkdirs(gz) | gen_mnist(gz, 6, 2, 28, 1), 0);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", gz);
    damage(path, 40, 0, 0);
    cfg = config("mnist", gz, 28, 1);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "truncated gzip stream");
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, path);

    ck_assert_int_eq(gen_cifar(root, 0, 2, 2), 0);
    snprintf(path, sizeof path, "%s/data_batch_3.bin", root);
    damage(path, 3073 + 1000, 0, 0);
    cfg = config("cifar10", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "data_batch_3.bin");
}
END_TEST

START_TEST(wrong_magic_and_sizes) {
    char path[4096];
    ck_assert_int_eq(gen_mnist(root, 6, 2, 28, 0), 0);
    clgqa_config cfg = config("mnist", root, 28, 1);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", root);
    damage(path, 0, 3, 0x03); /* labels file claiming 3 dimensions */
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "wrong IDX magic number");
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, path);
    /* Counts that disagree between images and labels. */
    ck_assert_int_eq(gen_mnist(root, 6, 2, 28, 0), 0);
    char other[4096];
    snprintf(other, sizeof other, "%s/other", root);
    ck_assert_int_eq(gen_mkdirs(other) | gen_mnist(other, 5, 2, 28, 0), 0);
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/train-labels-idx1-ubyte", other);
    snprintf(to, sizeof to, "%s/train-labels-idx1-ubyte", root);
    ck_assert_int_eq(rename(from, to), 0);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "holds 6 images but");
    /* A header whose sizes do not match the file. */
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", root);
    damage(path, 0, 11, 27); /* rows 28 -> 27 */
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "header says 2 x 27 x 28");
    /* num_classes that disagrees with the dataset. */
    ck_assert_int_eq(gen_cifar(root, 0, 1, 1), 0);
    cfg = config("cifar10", root, 32, 3);
    cfg.num_classes = 100;
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_INVALID_ARG, "num_classes is 100");
}
END_TEST

START_TEST(labels_out_of_range) {
    char path[4096];
    ck_assert_int_eq(gen_mnist(root, 6, 2, 28, 0), 0);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", root);
    damage(path, 0, 8 + 4, 10);
    clgqa_config cfg = config("mnist", root, 28, 1);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "label 4 is 10");
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, path);

    ck_assert_int_eq(gen_cifar(root, 0, 2, 3), 0);
    snprintf(path, sizeof path, "%s/test_batch.bin", root);
    damage(path, 0, 2 * 3073, 12);
    cfg = config("cifar10", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "record 2 has label 12");
    ck_assert_int_eq(gen_cifar(root, 1, 2, 3), 0);
    snprintf(path, sizeof path, "%s/train.bin", root);
    damage(path, 0, 3074 + 1, 100); /* fine label of record 1 */
    cfg = config("cifar100", root, 32, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "train.bin: record 1");

    char tiny[4096];
    snprintf(tiny, sizeof tiny, "%s/tiny", root);
    ck_assert_int_eq(gen_tiny_imagenet(tiny, 2, 1, 1, 8), 0);
    snprintf(path, sizeof path, "%s/val/val_annotations.txt", tiny);
    ck_assert_int_eq(gen_write_text(path, "val_0.JPEG\tn00099999\nval_1.JPEG\tn99\n"), 0);
    cfg = config("tiny-imagenet-200", tiny, 8, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT,
                      "val_annotations.txt: entry 2 has class 'n99'");

    char food[4096];
    snprintf(food, sizeof food, "%s/food", root);
    ck_assert_int_eq(gen_food101(food, 2, 1, 1, 8), 0);
    snprintf(path, sizeof path, "%s/meta/train.txt", food);
    ck_assert_int_eq(gen_write_text(path, "dish_00/1\nsushi/2\n"), 0);
    cfg = config("food101", food, 8, 3);
    assert_open_fails(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_ERR_FORMAT, "train.txt: entry 2 'sushi/2'");
}
END_TEST

START_TEST(image_folder_splits_must_share_classes) {
    ck_assert_int_eq(gen_image_folder(root, 3, 1, 1, 8, 1), 0);
    char path[4096], moved[4096];
    snprintf(path, sizeof path, "%s/test/class_01", root);
    snprintf(moved, sizeof moved, "%s/test/class_99", root);
    ck_assert_int_eq(rename(path, moved), 0);
    clgqa_config cfg = config("imagefolder", root, 8, 3);
    /* Sorted, test holds class_00, class_02, class_99. */
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT,
                      "class folders differ from");
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT,
                      "(class 1: class_02 here, class_01 there)");
    snprintf(path, sizeof path, "%s/test/class_01", root);
    ck_assert_int_eq(rename(moved, path), 0);
    snprintf(path, sizeof path, "%s/test/class_02", root);
    test_remove_tree(path);
    assert_open_fails(&cfg, CLGQA_SPLIT_TEST, CLGQA_ERR_FORMAT, "test has 2 class folders but");
}
END_TEST

START_TEST(undecodable_and_missing_images) {
    ck_assert_int_eq(gen_image_folder(root, 2, 2, 1, 16, 0), 0);
    char bad[4096], cut[4096], png[4096], missing[4096];
    snprintf(bad, sizeof bad, "%s/train/class_00/img_000.jpg", root);
    ck_assert_int_eq(gen_write_text(bad, "\xff\xd8\xff\xe0 not really a JPEG"), 0);
    snprintf(cut, sizeof cut, "%s/train/class_00/img_001.jpg", root);
    damage(cut, 300, 0, 0);
    snprintf(png, sizeof png, "%s/train/class_01/img_000.png", root);
    ck_assert_int_eq(gen_write_png(png, 3, 16, 16, 3), 0);
    damage(png, 0, 40, 0x55); /* corrupt the IHDR chunk: its CRC fails */
    snprintf(missing, sizeof missing, "%s/train/class_01/img_001.jpg", root);
    clgqa_config cfg = config("imagefolder", root, 16, 3);
    clgqa_dataset *ds = open_ok(&cfg, CLGQA_SPLIT_TRAIN);
    unlink(missing); /* vanishes after the listing */
    float img[3 * 16 * 16];
    int32_t label;
    const char *paths[] = {bad, cut, png, missing};
    const char *needles[] = {"cannot decode", "file is truncated", "cannot decode",
                             "cannot open"};
    const clgqa_status want[] = {CLGQA_ERR_FORMAT, CLGQA_ERR_FORMAT, CLGQA_ERR_FORMAT,
                                 CLGQA_ERR_IO};
    /* Sorted listing: class_00/img_000.jpg, img_001.jpg; class_01/img_000.jpg,
     * img_000.png (the extra file), img_001.jpg. */
    ck_assert_uint_eq(clgqa_dataset_count(ds), 5);
    const int index_of[] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        clgqa_status got = clgqa_dataset_get(ds, (size_t)index_of[k], 0, img, &label);
        ck_assert_msg(got == want[k], "%s: got %s (%s)", paths[k], clgqa_status_name(got),
                      clgqa_error_message());
        ck_assert_msg(strstr(clgqa_error_message(), paths[k]) &&
                          strstr(clgqa_error_message(), needles[k]),
                      "message '%s' should name %s and say '%s'", clgqa_error_message(),
                      paths[k], needles[k]);
    }
    TEST_OK(clgqa_dataset_get(ds, 2, 0, img, &label)); /* class_01/img_000.jpg is fine */
    clgqa_dataset_close(ds);
}
END_TEST

/* clgqa_image_load (one file outside a dataset): PNGs at the model's size
 * exactly as generated, and resized / gray-converted JPEGs bit for bit as
 * the test split serves the same file; a missing file is named. */
START_TEST(image_load_is_the_test_split_pipeline) {
    ck_assert_int_eq(gen_image_folder(root, 2, 1, 2, 16, 1), 0);
    clgqa_config cfg = config("imagefolder", root, 16, 3);
    clgqa_dataset_options image_options = test_dataset_options(&cfg);
    float *got = malloc(sizeof(float) * 3 * 16 * 16);
    char path[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/test/class_%02d/img_%03d.png", root, i / 2, i % 2);
        TEST_OK(clgqa_image_load(&image_options, path, got));
        uint8_t *want = gen_image(1000 + i, 16, 16, 3);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 16 * 16; p++) {
                float expect = ((float)want[p * 3 + c] / 255.0f - cfg.norm_mean[c]) / cfg.norm_std[c];
                ck_assert_msg(fabsf(got[c * 256 + p] - expect) <= 1e-6f, "%s channel %d pixel %d",
                              path, c, p);
            }
        free(want);
    }
    test_remove_tree(root);
    ck_assert_int_eq(gen_image_folder(root, 2, 1, 2, 40, 0), 0);
    cfg = config("imagefolder", root, 16, 1);
    image_options = test_dataset_options(&cfg);
    clgqa_dataset *test = open_ok(&cfg, CLGQA_SPLIT_TEST);
    float *want = malloc(sizeof(float) * 16 * 16);
    for (int i = 0; i < 4; i++) {
        int32_t label;
        TEST_OK(clgqa_dataset_get(test, (size_t)i, 0, want, &label));
        snprintf(path, sizeof path, "%s/test/class_%02d/img_%03d.jpg", root, i / 2, i % 2);
        TEST_OK(clgqa_image_load(&image_options, path, got));
        ck_assert_msg(memcmp(got, want, sizeof(float) * 16 * 16) == 0, "%s differs", path);
    }
    clgqa_dataset_close(test);
    snprintf(path, sizeof path, "%s/no-such.png", root);
    ck_assert_int_eq(clgqa_image_load(&image_options, path, got), CLGQA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(clgqa_error_message(), path));
    free(want);
    free(got);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("datasets");
    TCase *tc = tcase_create("readers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, mnist_plain_and_gzip);
    tcase_add_test(tc, mnist_to_three_channels_and_resized);
    tcase_add_test(tc, fashion_mnist_defaults_to_debian_folder);
    tcase_add_test(tc, cifar10_batches);
    tcase_add_test(tc, cifar100_fine_and_coarse);
    tcase_add_test(tc, tiny_imagenet_layout);
    tcase_add_test(tc, food101_layout);
    tcase_add_test(tc, oxford_pet_layout);
    tcase_add_test(tc, torchvision_folders_found_without_data_dir);
    tcase_add_test(tc, cifar_python_version_points_to_the_binary_one);
    tcase_add_test(tc, cinic10_png_folders_exact);
    tcase_add_test(tc, imagefolder_jpeg_with_gray_and_cmyk_files);
    tcase_add_test(tc, image_load_is_the_test_split_pipeline);
    suite_add_tcase(s, tc);
    TCase *errors = tcase_create("errors");
    tcase_add_checked_fixture(errors, setup, teardown);
    tcase_add_test(errors, missing_folder_and_files);
    tcase_add_test(errors, truncated_files);
    tcase_add_test(errors, wrong_magic_and_sizes);
    tcase_add_test(errors, labels_out_of_range);
    tcase_add_test(errors, image_folder_splits_must_share_classes);
    tcase_add_test(errors, undecodable_and_missing_images);
    suite_add_tcase(s, errors);
    return s;
}

int main(void) { return test_run_suite(suite()); }
