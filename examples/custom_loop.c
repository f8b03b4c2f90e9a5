/* custom_loop: your own training loop over clgqa_model_forward / backward /
 * step, on batches you make in memory. The model is the demo's (28x28 gray
 * images, 10 classes); the data is synthetic: an image of class c is noise
 * with a bright band at rows [c*28/10, (c+1)*28/10), which the model learns
 * to find in a few hundred steps.
 *
 *   ./custom_loop [steps]      (default 300) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "clgqa/config.h"
#include "clgqa/model.h"

enum { BATCH = 32 };

static int fail(const char *what) {
    fprintf(stderr, "custom_loop: %s: %s\n", what, clgqa_error_message());
    return 1;
}

/* A batch of synthetic images [BATCH, 1, side, side], normalised to about
 * [-1, 1] as the demo's datasets are, and their labels. */
static void make_batch(int side, int classes, float *images, int32_t *labels) {
    for (int b = 0; b < BATCH; b++) {
        int label = rand() % classes;
        labels[b] = label;
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++) {
                int in_band = y * classes / side == label;
                float noise = (float)rand() / (float)RAND_MAX;
                images[((size_t)b * side + y) * side + x] = (in_band ? 0.6f : -0.6f) + 0.4f * noise;
            }
    }
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 300;
    /* The demo config gives the model's shape and its learning rate. */
    clgqa_config *cfg;
    if (clgqa_config_create(NULL, NULL, 0, &cfg) != CLGQA_OK)
        return fail("config");
    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    char lr[32];
    if (clgqa_config_get(cfg, "lr", lr, sizeof lr) != CLGQA_OK)
        return fail("config");
    clgqa_config_destroy(cfg);
    /* Every runtime option left zero: the first GPU, else PoCL's CPU device,
     * else the first device; no kernel cache. */
    clgqa_runtime *rt;
    if (clgqa_runtime_create(NULL, &rt) != CLGQA_OK)
        return fail("device");
    clgqa_model *model;
    if (clgqa_model_create(rt, &desc, BATCH, &model) != CLGQA_OK)
        return fail("model");

    const int side = desc.img_size, classes = desc.num_classes;
    const size_t image_floats = (size_t)BATCH * (size_t)side * (size_t)side;
    float *images = malloc(image_floats * sizeof *images);
    int32_t labels[BATCH];
    cl_mem device_images = NULL, device_labels = NULL;
    if (!images || clgqa_buffer_create(rt, image_floats * sizeof *images, &device_images) != CLGQA_OK ||
        clgqa_buffer_create(rt, sizeof labels, &device_labels) != CLGQA_OK)
        return fail("buffers");

    /* AdamW: the config's learning rate, torch's betas and eps, a little
     * weight decay, no gradient clipping. */
    const clgqa_adamw adamw = {strtof(lr, NULL), 0.9f, 0.999f, 1e-8f, 0.01f, 0.0f, 1};
    srand(1);
    for (long step = 1; step <= steps; step++) {
        /* The buffer writes block, and the queue runs in order, so the next
         * batch never overwrites one the device is still using. */
        make_batch(side, classes, images, labels);
        if (clgqa_buffer_write(rt, device_images, 0, image_floats * sizeof *images, images) ||
            clgqa_buffer_write(rt, device_labels, 0, sizeof labels, labels))
            return fail("upload");
        /* Where the run stands: the step within the epoch and the global
         * step drive DGQA's window and the random streams (this is one long
         * epoch). */
        const clgqa_pass pass = {CLGQA_PASS_TRAIN, .step_in_epoch = step - 1,
                                 .global_step = step - 1};
        if (clgqa_model_forward(model, clgqa_view_at(device_images, 0),
                                clgqa_view_at(device_labels, 0), BATCH, &pass) != CLGQA_OK ||
            clgqa_model_backward(model) != CLGQA_OK ||
            clgqa_model_step(model, &adamw, step) != CLGQA_OK)
            return fail("training step");
        if (step % 50 == 0 || step == steps) {
            /* Reading the metrics waits for the device: do it now and then. */
            clgqa_metrics m;
            if (clgqa_model_read_metrics(model, &m) != CLGQA_OK)
                return fail("metrics");
            printf("step %ld: loss %.4f, accuracy %.2f\n", step, m.last_loss, m.last_accuracy);
        }
    }
    clgqa_buffer_release(&device_images);
    clgqa_buffer_release(&device_labels);
    free(images);
    clgqa_model_destroy(model);
    clgqa_runtime_destroy(rt);
    return 0;
}
