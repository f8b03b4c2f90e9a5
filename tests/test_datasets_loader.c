/* Background loader: batches in order with the last one partial, shuffles
 * and augmentations that repeat exactly whatever the thread count, restarts
 * mid-epoch, a worker's failure reported with its message, skipping
 * unreadable images, and the consumer's wait on a JPEG dataset at the demo's
 * batch size. Batches are compared bit for bit with clgqa_dataset_get. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clgqa/dataset.h"
#include "clock.h"
#include "dataset_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

static char *root;

static void setup(void) { root = test_temp_dir(); }
static void teardown(void) {
    test_remove_tree(root);
    free(root);
}

static clgqa_config config(const char *dataset, int img_size, int in_chans, const char *augment) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    snprintf(cfg.dataset, sizeof cfg.dataset, "%s", dataset);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", root);
    TEST_OK(clgqa_augment_parse(augment, &cfg.augment));
    cfg.img_size = img_size;
    cfg.in_chans = in_chans;
    cfg.num_classes = 0;
    cfg.seed = 1234;
    return cfg;
}

/* Every batch of one epoch, concatenated. */
typedef struct epoch_data {
    float *images;
    int32_t *labels;
    int *batch_counts;
    size_t samples, batches;
} epoch_data;

static epoch_data run_epoch(clgqa_dataset *ds, int batch_size, int shuffle, int threads,
                            long epoch) {
    clgqa_loader *ld;
    TEST_OK(clgqa_loader_create(ds, batch_size, shuffle, threads, &ld));
    TEST_OK(clgqa_loader_start(ld, epoch));
    size_t floats = (size_t)clgqa_dataset_channels(ds) * (size_t)clgqa_dataset_img_size(ds) *
                    (size_t)clgqa_dataset_img_size(ds);
    size_t count = clgqa_dataset_count(ds);
    epoch_data e = {malloc(sizeof(float) * floats * count), malloc(sizeof(int32_t) * count),
                    calloc(clgqa_loader_num_batches(ld) + 1, sizeof(int)), 0, 0};
    clgqa_batch b;
    for (;;) {
        TEST_OK(clgqa_loader_next(ld, &b));
        if (b.count == 0)
            break;
        ck_assert_int_eq(b.index, (long)e.batches);
        ck_assert_uint_le(e.samples + (size_t)b.count, count);
        memcpy(e.images + e.samples * floats, b.images, sizeof(float) * floats * (size_t)b.count);
        memcpy(e.labels + e.samples, b.labels, sizeof(int32_t) * (size_t)b.count);
        e.batch_counts[e.batches++] = b.count;
        e.samples += (size_t)b.count;
    }
    TEST_OK(clgqa_loader_next(ld, &b)); /* still over */
    ck_assert_int_eq(b.count, 0);
    clgqa_loader_destroy(ld);
    return e;
}

static void epoch_free(epoch_data *e) {
    free(e->images);
    free(e->labels);
    free(e->batch_counts);
}

/* Index of the dataset sample whose (un-augmented) image equals `image`. */
static int find_sample(clgqa_dataset *ds, const float *image, size_t floats) {
    float *probe = malloc(sizeof(float) * floats);
    int32_t label;
    int found = -1;
    for (size_t i = 0; i < clgqa_dataset_count(ds) && found < 0; i++) {
        TEST_OK(clgqa_dataset_get(ds, i, 0, probe, &label));
        if (memcmp(probe, image, sizeof(float) * floats) == 0)
            found = (int)i;
    }
    free(probe);
    return found;
}

START_TEST(batches_in_order_with_partial_last) {
    ck_assert_int_eq(gen_mnist(root, 23, 4, 28, 0), 0);
    clgqa_config cfg = config("mnist", 28, 1, "none");
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    clgqa_loader *ld;
    TEST_OK(clgqa_loader_create(ds, 5, 0, 2, &ld));
    ck_assert_uint_eq(clgqa_loader_num_batches(ld), 5);
    clgqa_batch b;
    ck_assert_int_eq(clgqa_loader_next(ld, &b), CLGQA_ERR_INVALID_ARG); /* not started */
    clgqa_loader_destroy(ld);

    epoch_data e = run_epoch(ds, 5, 0, 2, 0);
    ck_assert_uint_eq(e.batches, 5);
    ck_assert_uint_eq(e.samples, 23);
    ck_assert_int_eq(e.batch_counts[4], 3);
    float want[28 * 28];
    int32_t label;
    for (size_t i = 0; i < 23; i++) {
        TEST_OK(clgqa_dataset_get(ds, i, 0, want, &label));
        ck_assert_int_eq(e.labels[i], label);
        ck_assert_int_eq(label, gen_label((int)i, 10));
        ck_assert_msg(memcmp(e.images + i * 784, want, sizeof want) == 0, "sample %zu differs", i);
    }
    epoch_free(&e);
    ck_assert_int_eq(clgqa_loader_create(ds, 0, 0, 1, &ld), CLGQA_ERR_INVALID_ARG);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(shuffle_repeats_per_epoch_whatever_the_threads) {
    ck_assert_int_eq(gen_mnist(root, 40, 4, 28, 0), 0);
    clgqa_config cfg = config("mnist", 28, 1, "none");
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    epoch_data a = run_epoch(ds, 8, 1, 1, 3), b = run_epoch(ds, 8, 1, 4, 3);
    epoch_data c = run_epoch(ds, 8, 1, 2, 4);
    ck_assert_uint_eq(a.samples, 40);
    ck_assert_int_eq(memcmp(a.images, b.images, sizeof(float) * 784 * 40), 0);
    ck_assert_int_eq(memcmp(a.labels, b.labels, sizeof(int32_t) * 40), 0);
    /* Each epoch is a permutation of the samples, and epochs differ. */
    int seen[40] = {0}, order_a[40], order_c[40], moved = 0, changed = 0;
    for (int i = 0; i < 40; i++) {
        order_a[i] = find_sample(ds, a.images + (size_t)i * 784, 784);
        order_c[i] = find_sample(ds, c.images + (size_t)i * 784, 784);
        ck_assert_int_ge(order_a[i], 0);
        ck_assert_int_ge(order_c[i], 0);
        ck_assert_int_eq(a.labels[i], gen_label(order_a[i], 10));
        seen[order_a[i]]++;
        moved += order_a[i] != i;
        changed += order_a[i] != order_c[i];
    }
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(seen[i], 1);
    ck_assert_int_gt(moved, 30);
    ck_assert_int_gt(changed, 30);
    epoch_free(&a), epoch_free(&b), epoch_free(&c);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(augmentation_repeats_and_test_split_is_plain) {
    ck_assert_int_eq(gen_cifar(root, 0, 6, 6), 0);
    clgqa_config cfg = config("cifar10", 32, 3, "randaugment");
    clgqa_dataset *train, *test;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &train));
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TEST, 0, &test));
    const size_t floats = 3 * 32 * 32;
    epoch_data a = run_epoch(train, 7, 1, 1, 2), b = run_epoch(train, 7, 1, 3, 2);
    ck_assert_uint_eq(a.samples, 30);
    ck_assert_int_eq(memcmp(a.images, b.images, sizeof(float) * floats * 30), 0);
    /* Augmented: most samples differ from the plain image of their label's
     * sample (RandAugment draws Identity twice with p = 1/196). */
    epoch_data plain = run_epoch(train, 30, 0, 1, 2);
    clgqa_config none = cfg;
    none.augment = CLGQA_AUGMENT_NONE;
    clgqa_dataset *raw;
    TEST_OK(test_dataset_open(&none, CLGQA_SPLIT_TRAIN, 0, &raw));
    float *img = malloc(sizeof(float) * floats);
    int32_t label;
    int augmented = 0;
    for (size_t i = 0; i < 30; i++) {
        TEST_OK(clgqa_dataset_get(raw, i, 0, img, &label));
        augmented += memcmp(plain.images + i * floats, img, sizeof(float) * floats) != 0;
    }
    ck_assert_int_ge(augmented, 25);
    /* The test split is never augmented. */
    epoch_data t = run_epoch(test, 4, 0, 2, 2);
    clgqa_dataset *plain_test;
    TEST_OK(test_dataset_open(&none, CLGQA_SPLIT_TEST, 0, &plain_test));
    for (size_t i = 0; i < 6; i++) {
        TEST_OK(clgqa_dataset_get(plain_test, i, 0, img, &label));
        ck_assert_int_eq(memcmp(t.images + i * floats, img, sizeof(float) * floats), 0);
    }
    clgqa_dataset_close(plain_test);
    free(img);
    epoch_free(&a), epoch_free(&b), epoch_free(&plain), epoch_free(&t);
    clgqa_dataset_close(raw);
    clgqa_dataset_close(train);
    clgqa_dataset_close(test);
}
END_TEST

START_TEST(restart_mid_epoch_matches_fresh_start) {
    ck_assert_int_eq(gen_cifar(root, 0, 5, 2), 0);
    clgqa_config cfg = config("cifar10", 32, 3, "crop_flip");
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    const size_t floats = 3 * 32 * 32;
    epoch_data fresh = run_epoch(ds, 4, 1, 2, 1);
    clgqa_loader *ld;
    TEST_OK(clgqa_loader_create(ds, 4, 1, 2, &ld));
    TEST_OK(clgqa_loader_start(ld, 0));
    clgqa_batch b;
    TEST_OK(clgqa_loader_next(ld, &b));
    TEST_OK(clgqa_loader_next(ld, &b));
    TEST_OK(clgqa_loader_start(ld, 1)); /* abandon epoch 0 halfway */
    size_t at = 0;
    for (;;) {
        TEST_OK(clgqa_loader_next(ld, &b));
        if (b.count == 0)
            break;
        ck_assert_int_eq(memcmp(b.images, fresh.images + at * floats,
                                sizeof(float) * floats * (size_t)b.count),
                         0);
        ck_assert_int_eq(memcmp(b.labels, fresh.labels + at, sizeof(int32_t) * (size_t)b.count),
                         0);
        at += (size_t)b.count;
    }
    ck_assert_uint_eq(at, 25);
    ck_assert_double_ge(clgqa_loader_wait_seconds(ld), 0.0);
    clgqa_loader_destroy(ld);
    epoch_free(&fresh);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(worker_failure_reaches_the_consumer) {
    ck_assert_int_eq(gen_image_folder(root, 2, 6, 1, 16, 1), 0);
    char bad[4096];
    snprintf(bad, sizeof bad, "%s/train/class_01/img_002.png", root);
    ck_assert_int_eq(gen_write_text(bad, "\x89PNG\r\n\x1a\n garbage"), 0);
    clgqa_config cfg = config("imagefolder", 16, 3, "none");
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    clgqa_loader *ld;
    TEST_OK(clgqa_loader_create(ds, 4, 0, 3, &ld));
    TEST_OK(clgqa_loader_start(ld, 0));
    clgqa_batch b;
    TEST_OK(clgqa_loader_next(ld, &b)); /* samples 0-3 */
    TEST_OK(clgqa_loader_next(ld, &b)); /* samples 4-7 */
    clgqa_status s = clgqa_loader_next(ld, &b); /* 8 = class_01/img_002.png */
    ck_assert_int_eq(s, CLGQA_ERR_FORMAT);
    ck_assert_msg(strstr(clgqa_error_message(), bad) && strstr(clgqa_error_message(), "decode"),
                  "%s", clgqa_error_message());
    clgqa_loader_destroy(ld);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(unreadable_images_skipped_and_counted) {
    ck_assert_int_eq(gen_image_folder(root, 2, 5, 1, 16, 0), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/train/class_00/img_001.jpg", root);
    ck_assert_int_eq(gen_write_text(path, "not an image"), 0);
    snprintf(path, sizeof path, "%s/train/class_01/img_004.jpg", root);
    ck_assert_int_eq(gen_write_text(path, "\xff\xd8\xff"), 0);
    clgqa_config cfg = config("imagefolder", 16, 3, "flip");
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, CLGQA_DATASET_SKIP_UNREADABLE, &ds));
    for (long epoch = 0; epoch < 2; epoch++) {
        epoch_data e = run_epoch(ds, 3, 1, 2, epoch);
        ck_assert_uint_eq(e.samples, 8);
        int per_label[2] = {0, 0};
        for (size_t i = 0; i < 8; i++)
            per_label[e.labels[i]]++;
        ck_assert_int_eq(per_label[0], 4);
        ck_assert_int_eq(per_label[1], 4);
        ck_assert_uint_eq(clgqa_dataset_skipped(ds), 2); /* distinct files, not events */
        epoch_free(&e);
    }
    clgqa_dataset_close(ds);
}
END_TEST

/* The workers decode ahead of the consumer: while it holds a batch, the
 * other slots of the ring fill with the next batches, and taking those then
 * costs no wait at all (the loader adds to its wait time only when a batch
 * was not ready). Checked on the ring's state, not on a clock, so a loaded
 * or sanitized machine cannot make it flaky; the poll's deadline only guards
 * against a hang. Tiny-ImageNet-shaped JPEGs (64x64, shrunk to 32), batch 128
 * as in the demo. */
static int wait_until_ready(clgqa_loader *ld, int want) {
    double deadline = clgqa_clock_seconds() + 120.0;
    while (clgqa_loader_batches_ready(ld) < want) {
        if (clgqa_clock_seconds() > deadline)
            return 0;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 1;
}

START_TEST(workers_decode_ahead_of_the_consumer) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tiny", root);
    ck_assert_int_eq(gen_tiny_imagenet(dir, 8, 128, 1, 64), 0);
    clgqa_config cfg = config("tiny-imagenet-200", 32, 3, "crop_flip");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", dir);
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    clgqa_loader *ld;
    TEST_OK(clgqa_loader_create(ds, 128, 2, 0, &ld));
    int ahead = clgqa_loader_depth(ld) - 1; /* every slot but the one held */
    ck_assert_int_ge(ahead, 2);
    TEST_OK(clgqa_loader_start(ld, 0));
    clgqa_batch b;
    int batches = 0;
    for (;;) {
        /* Hold batch `batches` until the ring is full behind it (or holds
         * the rest of the epoch), then take the ones decoded meanwhile. */
        TEST_OK(clgqa_loader_next(ld, &b));
        if (b.count == 0)
            break;
        ck_assert_int_eq(b.index, batches);
        batches++;
        int left = 8 - batches, want = left < ahead ? left : ahead;
        ck_assert_msg(wait_until_ready(ld, want), "the workers never filled %d slots", want);
        double waited = clgqa_loader_wait_seconds(ld);
        for (int i = 0; i < want; i++) {
            TEST_OK(clgqa_loader_next(ld, &b));
            ck_assert_int_eq(b.count, 128);
            ck_assert_int_eq(b.index, batches);
            batches++;
        }
        ck_assert_msg(clgqa_loader_wait_seconds(ld) == waited,
                      "taking %d prepared batches waited %.6f s", want,
                      clgqa_loader_wait_seconds(ld) - waited);
    }
    ck_assert_int_eq(batches, 8);
    clgqa_loader_destroy(ld);
    clgqa_dataset_close(ds);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("datasets_loader");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, batches_in_order_with_partial_last);
    tcase_add_test(tc, shuffle_repeats_per_epoch_whatever_the_threads);
    tcase_add_test(tc, augmentation_repeats_and_test_split_is_plain);
    tcase_add_test(tc, restart_mid_epoch_matches_fresh_start);
    tcase_add_test(tc, worker_failure_reaches_the_consumer);
    tcase_add_test(tc, unreadable_images_skipped_and_counted);
    tcase_add_test(tc, workers_decode_ahead_of_the_consumer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }
