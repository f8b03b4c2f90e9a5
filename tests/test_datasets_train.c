/* `clgqa train` (the library's clgqa_train) on every dataset layout, with
 * generated data: a tiny ViT takes two steps of one epoch and is evaluated
 * on one test batch, reading MNIST (gzip), CIFAR-10, CIFAR-100, Tiny
 * ImageNet, Food-101, Oxford-IIIT Pet, CINIC-10 (PNG) and a JPEG image folder. The readers'
 * values are checked in test_datasets; this shows each layout feeding the
 * trainer end to end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "train_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

static char *root;

static void setup(void) { root = test_temp_dir(); }
static void teardown(void) {
    test_remove_tree(root);
    free(root);
}

static void set(clgqa_config *cfg, const char *fmt, const char *value) {
    char buf[1200];
    snprintf(buf, sizeof buf, fmt, value);
    TEST_OK(clgqa_config_set(cfg, buf));
}

/* Trains 2 steps on `dataset` read from `dir` and checks the run finished. */
static void train_on(const char *dataset, const char *dir, const char *in_chans,
                     const char *num_classes, const char *augment) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    char out_dir[4096];
    snprintf(out_dir, sizeof out_dir, "%s/run-%s", root, dataset);
    set(&cfg, "dataset=%s", dataset);
    set(&cfg, "data_dir=%s", dir);
    set(&cfg, "out_dir=%s", out_dir);
    set(&cfg, "in_chans=%s", in_chans);
    set(&cfg, "num_classes=%s", num_classes);
    set(&cfg, "augment=%s", augment);
    static const char *tiny[] = {"size=c", "embed_dim=16", "num_layers=1", "num_heads=2",
                                 "num_kv_heads=1", "att_scheme=gqa", "img_size=8",
                                 "patch_size=4", "epochs=1", "batch_size=4",
                                 "max_steps_per_epoch=2", "max_eval_batches=1", "save_model=0"};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++)
        TEST_OK(clgqa_config_set(&cfg, tiny[i]));
    TEST_OK(clgqa_config_finalize(&cfg));
    clgqa_train_options options = {0};
    options.flags = CLGQA_TRAIN_QUIET;
    clgqa_train_result result;
    TEST_OK(clgqa_train(test_runtime(), &cfg, &options, &result));
    ck_assert_int_eq(result.epochs_done, 1);
    ck_assert_int_eq(result.global_step, 2);
    ck_assert_msg(result.last.train_loss > 0 && result.last.test_loss > 0,
                  "%s: losses %f / %f", dataset, result.last.train_loss, result.last.test_loss);
    /* Top-5 accuracy columns in run.csv only with more than 5 classes. */
    int classes = atoi(num_classes);
    if (classes > 0) {
        char path[4200], header[256] = "";
        snprintf(path, sizeof path, "%s/run.csv", out_dir);
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "%s: no run.csv", dataset);
        ck_assert_ptr_nonnull(fgets(header, sizeof header, f));
        fclose(f);
        ck_assert_str_eq(header, classes > 5
                                     ? "epoch,train_loss,train_acc,test_loss,test_acc,train_acc5,test_acc5\n"
                                     : "epoch,train_loss,train_acc,test_loss,test_acc\n");
    }
}

START_TEST(trains_on_mnist_gzip) {
    ck_assert_int_eq(gen_mnist(root, 12, 4, 28, 1), 0);
    train_on("mnist", root, "1", "10", "crop_flip");
}
END_TEST

START_TEST(trains_on_cifar10_and_cifar100) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/c10", root);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_cifar(dir, 0, 2, 4), 0);
    train_on("cifar10", dir, "3", "10", "randaugment");
    snprintf(dir, sizeof dir, "%s/c100", root);
    ck_assert_int_eq(gen_mkdirs(dir) | gen_cifar(dir, 1, 2, 4), 0);
    train_on("cifar100", dir, "3", "100", "flip");
}
END_TEST

START_TEST(trains_on_tiny_imagenet_and_food101) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tiny", root);
    ck_assert_int_eq(gen_tiny_imagenet(dir, 3, 3, 2, 24), 0);
    train_on("tiny-imagenet-200", dir, "3", "3", "randaugment");
    snprintf(dir, sizeof dir, "%s/food", root);
    ck_assert_int_eq(gen_food101(dir, 3, 3, 2, 40), 0);
    train_on("food101", dir, "1", "3", "crop_flip");
}
END_TEST

START_TEST(trains_on_oxford_pet) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/oxford-iiit-pet", root);
    ck_assert_int_eq(gen_oxford_pet(dir, 8, 4, 40), 0);
    train_on("oxfordiiitpet", root, "3", "37", "randaugment");
}
END_TEST

START_TEST(trains_on_cinic10_and_image_folder) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cinic", root);
    ck_assert_int_eq(gen_image_folder(dir, 10, 1, 1, 16, 1), 0);
    train_on("cinic10", dir, "3", "10", "none");
    snprintf(dir, sizeof dir, "%s/folder", root);
    ck_assert_int_eq(gen_image_folder(dir, 3, 3, 2, 20, 0), 0);
    train_on("imagefolder", dir, "3", "0", "flip");
}
END_TEST

START_TEST(unreadable_images_stop_the_run_or_are_skipped) {
    char dir[4096], bad[8192];
    snprintf(dir, sizeof dir, "%s/broken", root);
    ck_assert_int_eq(gen_image_folder(dir, 2, 3, 1, 20, 0), 0);
    /* Replace the first training image of the first class with junk. */
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "f=$(ls '%s'/train/*/* | head -n 1) && printf 'not a jpeg' > \"$f\" && echo \"$f\"",
             dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(bad, sizeof bad, p));
    pclose(p);
    bad[strcspn(bad, "\n")] = 0;

    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    char out_dir[4200];
    snprintf(out_dir, sizeof out_dir, "%s/run-broken", root);
    set(&cfg, "data_dir=%s", dir);
    set(&cfg, "out_dir=%s", out_dir);
    static const char *keys[] = {"dataset=imagefolder", "in_chans=3", "num_classes=0", "size=c",
                                 "embed_dim=16", "num_layers=1", "num_heads=2", "num_kv_heads=1",
                                 "att_scheme=gqa", "img_size=8", "patch_size=4", "epochs=1",
                                 "batch_size=4", "save_model=0", "shuffle=0"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        TEST_OK(clgqa_config_set(&cfg, keys[i]));
    TEST_OK(clgqa_config_finalize(&cfg));
    clgqa_train_options options = {0};
    options.flags = CLGQA_TRAIN_QUIET;
    clgqa_train_result result;
    /* By default the run stops with the file named. */
    ck_assert_int_ne(clgqa_train(test_runtime(), &cfg, &options, &result), CLGQA_OK);
    ck_assert_msg(strstr(clgqa_error_message(), bad), "message does not name %s: %s", bad,
                  clgqa_error_message());
    /* With skip_unreadable the epoch completes without that image (starting
     * over in the failed run's folder, which holds its run.csv). */
    TEST_OK(clgqa_config_set(&cfg, "skip_unreadable=true"));
    options.flags |= CLGQA_TRAIN_OVERWRITE;
    char log_text[4096] = "";
    FILE *log = fmemopen(log_text, sizeof log_text - 1, "w");
    options.log = log;
    TEST_OK(clgqa_train(test_runtime(), &cfg, &options, &result));
    fclose(log);
    ck_assert_int_eq(result.epochs_done, 1);
    ck_assert_uint_eq(result.skipped_images, 1);
    ck_assert_msg(strstr(log_text, "skipped 1 unreadable images (1 training, 0 test)"), "log: %s",
                  log_text);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("datasets_train");
    TCase *tc = tcase_create("layouts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, trains_on_mnist_gzip);
    tcase_add_test(tc, trains_on_cifar10_and_cifar100);
    tcase_add_test(tc, trains_on_tiny_imagenet_and_food101);
    tcase_add_test(tc, trains_on_oxford_pet);
    tcase_add_test(tc, trains_on_cinic10_and_image_folder);
    tcase_add_test(tc, unreadable_images_stop_the_run_or_are_skipped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }
