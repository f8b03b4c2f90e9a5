/* The input path in 8 bits: the loader's pixel mode against its normalised
 * floats, and batches uploaded through pinned staging on the transfer queue
 * (normalised in im2col: ops_patch_embed tests that kernel) against float
 * batches written straight to the device, with the host enqueueing ahead of
 * the device so that slot reuse depends on the events. */
#include <stdlib.h>
#include <string.h>

#include "batch_upload.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define SIDE 32
#define BATCH 6 /* 20 training images: batches of 6, 6, 6, 2 */

static char *root;

/* The CIFAR-10 folder main writes: 20 training images, cropped and flipped at random
 * (so the pixel path must see the same augmentation), a third of the stats
 * per channel apart. */
static clgqa_config cifar_config(void) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    TEST_OK(clgqa_config_set(&cfg, "size=c"));
    TEST_OK(clgqa_config_set(&cfg, "dataset=cifar10"));
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", root);
    TEST_OK(clgqa_config_set(&cfg, "img_size=32"));
    TEST_OK(clgqa_config_set(&cfg, "patch_size=8"));
    TEST_OK(clgqa_config_set(&cfg, "in_chans=3"));
    TEST_OK(clgqa_config_set(&cfg, "augment=crop_flip"));
    TEST_OK(clgqa_config_set(&cfg, "embed_dim=32"));
    TEST_OK(clgqa_config_set(&cfg, "num_layers=2"));
    TEST_OK(clgqa_config_set(&cfg, "num_heads=4"));
    TEST_OK(clgqa_config_set(&cfg, "num_kv_heads=2"));
    TEST_OK(clgqa_config_set(&cfg, "norm_mean=[0.49, 0.48, 0.45]"));
    TEST_OK(clgqa_config_set(&cfg, "norm_std=[0.25, 0.24, 0.26]"));
    TEST_OK(clgqa_config_finalize(&cfg));
    return cfg;
}

/* What the loader does on the host: ToTensor then Normalize. */
static void normalise(const clgqa_config *cfg, const uint8_t *pixels, int count, float *out) {
    size_t plane = (size_t)SIDE * SIDE;
    for (int b = 0; b < count; b++)
        for (int c = 0; c < 3; c++)
            for (size_t p = 0; p < plane; p++) {
                size_t i = ((size_t)b * 3 + (size_t)c) * plane + p;
                out[i] = ((float)pixels[i] / 255.0f - cfg->norm_mean[c]) / cfg->norm_std[c];
            }
}

START_TEST(pixel_batches_normalise_to_the_float_batches) {
    clgqa_config cfg = cifar_config();
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    clgqa_loader *floats, *pixels;
    TEST_OK(clgqa_loader_create(ds, BATCH, 1, 2, &floats));
    TEST_OK(clgqa_loader_create(ds, BATCH, 1, 2, &pixels));
    TEST_OK(clgqa_loader_use_pixels(pixels));
    size_t image = (size_t)3 * SIDE * SIDE;
    float *want = malloc(BATCH * image * sizeof *want);
    for (long epoch = 0; epoch < 2; epoch++) {
        TEST_OK(clgqa_loader_start(floats, epoch));
        TEST_OK(clgqa_loader_start(pixels, epoch));
        int batches = 0;
        for (;;) {
            clgqa_batch f, p;
            TEST_OK(clgqa_loader_next(floats, &f));
            TEST_OK(clgqa_loader_next(pixels, &p));
            ck_assert_int_eq(f.count, p.count);
            if (f.count == 0)
                break;
            ck_assert_ptr_null(p.images);
            ck_assert_ptr_null(f.pixels);
            ck_assert_mem_eq(f.labels, p.labels, (size_t)f.count * sizeof *f.labels);
            normalise(&cfg, p.pixels, p.count, want);
            /* The same expression on the same bytes: bit for bit. */
            ck_assert_mem_eq(f.images, want, (size_t)f.count * image * sizeof *want);
            batches++;
        }
        ck_assert_int_eq(batches, 4);
    }
    /* Too late once started. */
    ck_assert_int_eq(clgqa_loader_use_pixels(floats), CLGQA_ERR_INVALID_ARG);
    free(want);
    clgqa_loader_destroy(floats);
    clgqa_loader_destroy(pixels);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(uploaded_batches_give_the_float_batches_logits) {
    clgqa_config cfg = cifar_config();
    clgqa_runtime *rt = test_runtime();
    clgqa_dataset *ds;
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TRAIN, 0, &ds));
    cfg.num_classes = clgqa_dataset_num_classes(ds);
    clgqa_loader *loader;
    TEST_OK(clgqa_loader_create(ds, BATCH, 1, 2, &loader));
    TEST_OK(clgqa_loader_use_pixels(loader));
    clgqa_model *model;
    TEST_OK(test_model_create(rt, &cfg, BATCH, &model));
    clgqa_batch_upload *up;
    TEST_OK(clgqa_batch_upload_create(rt, clgqa_model_get_dims(model), BATCH, &up));

    /* Enqueue every batch's upload and forward before reading anything: the
     * host runs ahead, the third and fourth uploads reuse the slots of the
     * first two and must wait for their forwards (the logits of each go to
     * their own place by a copy on the compute queue). */
    enum { MAX_BATCHES = 4 };
    size_t image = (size_t)3 * SIDE * SIDE, classes = (size_t)cfg.num_classes;
    uint8_t *kept_pixels = malloc(MAX_BATCHES * BATCH * image);
    int32_t kept_labels[MAX_BATCHES * BATCH];
    int counts[MAX_BATCHES], batches = 0;
    cl_mem all_logits;
    TEST_OK(clgqa_buffer_create(rt, MAX_BATCHES * BATCH * classes * sizeof(float), &all_logits));
    TEST_OK(clgqa_loader_start(loader, 0));
    for (;; batches++) {
        clgqa_batch b;
        TEST_OK(clgqa_loader_next(loader, &b));
        if (b.count == 0)
            break;
        ck_assert_int_lt(batches, MAX_BATCHES);
        counts[batches] = b.count;
        memcpy(kept_pixels + (size_t)batches * BATCH * image, b.pixels, (size_t)b.count * image);
        memcpy(kept_labels + batches * BATCH, b.labels, (size_t)b.count * sizeof *b.labels);
        clgqa_view pixels, labels;
        TEST_OK(clgqa_batch_upload_next(up, &b, &pixels, &labels));
        TEST_OK(clgqa_model_forward_pixels(model, pixels, labels, b.count, cfg.norm_mean,
                                           cfg.norm_std,
                                           &(clgqa_pass){CLGQA_PASS_EVAL, batches, batches}));
        TEST_OK(clgqa_buffer_copy(rt, clgqa_view_at(all_logits, (size_t)batches * BATCH * classes),
                           clgqa_model_logits(model), (size_t)b.count * classes));
    }
    ck_assert_int_eq(batches, 4);
    float *got = malloc(MAX_BATCHES * BATCH * classes * sizeof *got);
    test_download(all_logits, got, MAX_BATCHES * BATCH * classes);

    /* The float path, one batch at a time, with the host's normalisation. */
    float *images = malloc(BATCH * image * sizeof *images);
    float *want = malloc(BATCH * classes * sizeof *want);
    double *want_d = malloc(BATCH * classes * sizeof *want_d);
    for (int k = 0; k < batches; k++) {
        normalise(&cfg, kept_pixels + (size_t)k * BATCH * image, counts[k], images);
        cl_mem di = test_upload(images, (size_t)counts[k] * image);
        cl_mem dl = test_upload_int(kept_labels + k * BATCH, (size_t)counts[k]);
        TEST_OK(clgqa_model_forward(model, clgqa_view_at(di, 0), clgqa_view_at(dl, 0), counts[k],
                                    &(clgqa_pass){0, k, k}));
        TEST_OK(clgqa_model_read_logits(model, want));
        for (size_t i = 0; i < (size_t)counts[k] * classes; i++)
            want_d[i] = want[i];
        /* Inputs equal to ~1 ulp (the device's division), logits of a
         * 2-layer ViT of them: 1e-5 relative and absolute. */
        test_assert_close("logits", got + (size_t)k * BATCH * classes, want_d,
                          (size_t)counts[k] * classes, 1e-5, 1e-5);
        clgqa_buffer_release(&di);
        clgqa_buffer_release(&dl);
    }
    free(images), free(want), free(want_d), free(got), free(kept_pixels);
    clgqa_buffer_release(&all_logits);
    clgqa_batch_upload_destroy(up);
    clgqa_model_destroy(model);
    clgqa_loader_destroy(loader);
    clgqa_dataset_close(ds);
}
END_TEST

START_TEST(bad_batches_are_refused) {
    clgqa_config cfg = cifar_config();
    clgqa_runtime *rt = test_runtime();
    clgqa_model *model;
    TEST_OK(test_model_create(rt, &cfg, 2, &model));
    clgqa_batch_upload *up;
    TEST_OK(clgqa_batch_upload_create(rt, clgqa_model_get_dims(model), 2, &up));
    uint8_t pixels[3 * 3 * SIDE * SIDE] = {0};
    float images[4] = {0};
    int32_t labels[3] = {0, 1, 2};
    clgqa_view p, l;
    clgqa_batch too_many = {NULL, pixels, labels, 3, 0, 0, 0};
    ck_assert_int_eq(clgqa_batch_upload_next(up, &too_many, &p, &l), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "3 images"), "%s", clgqa_error_message());
    clgqa_batch floats_only = {images, NULL, labels, 1, 0, 0, 0};
    ck_assert_int_eq(clgqa_batch_upload_next(up, &floats_only, &p, &l), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_loader_use_pixels"), "%s",
                  clgqa_error_message());
    clgqa_batch_upload_destroy(up);
    clgqa_model_destroy(model);
}
END_TEST

int main(void) {
    Suite *s = suite_create("batch_upload");
    TCase *tc = tcase_create("batch_upload");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pixel_batches_normalise_to_the_float_batches);
    tcase_add_test(tc, uploaded_batches_give_the_float_batches_logits);
    tcase_add_test(tc, bad_batches_are_refused);
    suite_add_tcase(s, tc);
    root = test_temp_dir();
    if (gen_cifar(root, 0, 4, 6) != 0)
        return 1;
    int failed = test_run_suite(s);
    test_remove_tree(root);
    return failed;
}
