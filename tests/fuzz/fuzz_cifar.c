/* libFuzzer target: CIFAR-10 and CIFAR-100 binary batches (fine and coarse
 * labels), as the reader parses them. */
#include <stdlib.h>

#include "dataset_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const clgqa_cifar_format formats[] = {{1, 0, 10}, {2, 1, 100}, {2, 0, 20}};
    for (int f = 0; f < 3; f++) {
        size_t count;
        if (clgqa_cifar_count(size, "fuzz", &formats[f], &count) != CLGQA_OK)
            continue;
        uint8_t *pixels = malloc(count * CLGQA_CIFAR_PIXELS);
        int32_t *labels = malloc(count * sizeof *labels);
        if (pixels && labels)
            clgqa_cifar_decode(data, count, "fuzz", &formats[f], pixels, labels);
        free(pixels);
        free(labels);
    }
    return 0;
}
