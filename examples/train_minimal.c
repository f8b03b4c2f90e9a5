/* train_minimal: the smallest complete use of clgqa. Takes the embedded demo
 * configuration (a small KDGQA ViT on Fashion-MNIST, configs/demo.yaml),
 * opens the default OpenCL device, trains two epochs and prints the test
 * accuracy. Checkpoints and run files go to runs/train_minimal.
 *
 *   ./train_minimal [key=value ...]     e.g. max_steps_per_epoch=20 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgqa/train.h"

int main(int argc, char **argv) {
    /* The demo config, two epochs and our own folder, then the command
     * line's overrides; clgqa_config_create validates every key. */
    const char *sets[64] = {"epochs=2", "out_dir=runs/train_minimal"};
    int set_count = 2;
    for (int i = 1; i < argc && set_count < 64; i++)
        sets[set_count++] = argv[i];
    clgqa_config *cfg;
    if (clgqa_config_create(NULL, sets, set_count, &cfg) != CLGQA_OK) {
        fprintf(stderr, "train_minimal: %s\n", clgqa_error_message());
        return 1;
    }

    /* The library reads no environment: this program lets clgqa's own
     * variables pick the device and the compiled-kernel cache (CLGQA_DEVICE,
     * CLGQA_CACHE_DIR; "off" or unset: no cache), and takes the config's
     * code-path keys. Unset, the device is the first GPU, else PoCL's CPU
     * device, else the first device. */
    clgqa_runtime_options runtime_options = {0};
    const char *cache = getenv("CLGQA_CACHE_DIR");
    runtime_options.device = getenv("CLGQA_DEVICE");
    runtime_options.cache_dir = cache && strcmp(cache, "off") ? cache : NULL;
    clgqa_config_runtime_options(cfg, &runtime_options);
    clgqa_runtime *rt;
    if (clgqa_runtime_create(&runtime_options, &rt) != CLGQA_OK) {
        fprintf(stderr, "train_minimal: %s\n", clgqa_error_message());
        clgqa_config_destroy(cfg);
        return 1;
    }

    /* The whole run: data loading, training, evaluation after each epoch,
     * checkpoints. Options left zero: start fresh, progress on stderr. A
     * folder that holds a run already is refused (its files are kept):
     * CLGQA_TRAIN_OVERWRITE in options.flags starts over there instead. */
    clgqa_train_options options = {0};
    clgqa_train_result result;
    clgqa_status status = clgqa_train(rt, cfg, &options, &result);
    if (status == CLGQA_OK)
        printf("test accuracy after %d epochs: %.2f%%\n", result.epochs_done,
               100.0 * result.last.test_acc);
    else
        fprintf(stderr, "train_minimal: %s\n", clgqa_error_message());
    clgqa_runtime_destroy(rt);
    clgqa_config_destroy(cfg);
    return status == CLGQA_OK ? 0 : 1;
}
