/* infer: classify the images of a folder with a trained model. The model's
 * shape comes from the configuration it was trained with (the embedded demo
 * unless a YAML file is given), its weights from a checkpoint; each JPEG or
 * PNG in the folder goes through the test split's preprocessing, and the
 * program prints the most probable class and its probability.
 *
 *   ./infer CHECKPOINT FOLDER [CONFIG.yaml]
 *   e.g. ./infer runs/train_minimal/model.safetensors my_images */
#define _POSIX_C_SOURCE 200809L /* scandir */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgqa/checkpoint.h"
#include "clgqa/config.h"

static int fail(const char *what) {
    fprintf(stderr, "infer: %s: %s\n", what, clgqa_error_message());
    return 1;
}

static int is_image(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".png") || !strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg") ||
                   !strcmp(dot, ".PNG") || !strcmp(dot, ".JPG") || !strcmp(dot, ".JPEG"));
}

/* Softmax of the image's logits: the most probable class and its probability. */
static int best_class(const float *logits, int classes, double *probability) {
    int best = 0;
    for (int c = 1; c < classes; c++)
        if (logits[c] > logits[best])
            best = c;
    double sum = 0.0;
    for (int c = 0; c < classes; c++)
        sum += exp((double)logits[c] - (double)logits[best]);
    *probability = 1.0 / sum;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: infer CHECKPOINT FOLDER [CONFIG.yaml]\n");
        return 2;
    }
    const char *checkpoint = argv[1], *folder = argv[2];
    /* The model and the preprocessing the configuration describes. */
    clgqa_config *cfg;
    if (clgqa_config_create(argc == 4 ? argv[3] : NULL, NULL, 0, &cfg) != CLGQA_OK)
        return fail("config");
    clgqa_model_desc desc;
    clgqa_dataset_options preprocessing;
    clgqa_config_model_desc(cfg, &desc);
    clgqa_config_dataset_options(cfg, &preprocessing);
    if (desc.num_classes == 0)
        return fail("the config must give num_classes");

    /* One image at a time: a model for batches of 1, on the device
     * $CLGQA_DEVICE names (unset: the first GPU, else PoCL's CPU device,
     * else the first device), caching kernels in $CLGQA_CACHE_DIR ("off"
     * or unset: no cache). */
    clgqa_runtime_options runtime_options = {0};
    const char *cache = getenv("CLGQA_CACHE_DIR");
    runtime_options.device = getenv("CLGQA_DEVICE");
    runtime_options.cache_dir = cache && strcmp(cache, "off") ? cache : NULL;
    clgqa_config_runtime_options(cfg, &runtime_options);
    clgqa_runtime *rt = NULL;
    clgqa_model *model = NULL;
    if (clgqa_runtime_create(&runtime_options, &rt) != CLGQA_OK)
        return fail("device");
    if (clgqa_model_create(rt, &desc, 1, &model) != CLGQA_OK ||
        clgqa_checkpoint_load_model(model, checkpoint, stderr) != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return fail(checkpoint);
    }

    const size_t pixels = (size_t)desc.in_chans * (size_t)desc.img_size * (size_t)desc.img_size;
    float *image = malloc(pixels * sizeof *image);
    float *logits = malloc((size_t)desc.num_classes * sizeof *logits);
    cl_mem device_image = NULL;
    struct dirent **entries = NULL;
    int count = scandir(folder, &entries, NULL, alphasort); /* in name order */
    int exit_status = 0;
    if (count < 0 || !image || !logits ||
        clgqa_buffer_create(rt, pixels * sizeof *image, &device_image) != CLGQA_OK) {
        fprintf(stderr, "infer: cannot list %s or allocate its images\n", folder);
        exit_status = 1;
    }
    for (int i = 0; exit_status == 0 && i < count; i++) {
        const char *name = entries[i]->d_name;
        if (!is_image(name))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", folder, name);
        /* Decode and normalise on the host, upload, and run the model in
         * evaluation mode without labels (logits only). */
        if (clgqa_image_load(&preprocessing, path, image) != CLGQA_OK ||
            clgqa_buffer_write(rt, device_image, 0, pixels * sizeof *image, image) != CLGQA_OK ||
            clgqa_model_forward(model, clgqa_view_at(device_image, 0), clgqa_view_at(NULL, 0), 1,
                                &(clgqa_pass){CLGQA_PASS_EVAL, 0, 0}) != CLGQA_OK ||
            clgqa_model_read_logits(model, logits) != CLGQA_OK) {
            exit_status = fail(path);
            break;
        }
        double probability;
        int c = best_class(logits, desc.num_classes, &probability);
        printf("%s: class %d (p = %.3f)\n", name, c, probability);
    }
    for (int i = 0; i < count; i++)
        free(entries[i]);
    free(entries);
    clgqa_buffer_release(&device_image);
    free(image);
    free(logits);
    clgqa_model_destroy(model);
    clgqa_runtime_destroy(rt);
    clgqa_config_destroy(cfg);
    return exit_status;
}
