/* libFuzzer target: JPEG and PNG decoding, then the rest of the per-image
 * pipeline (channel conversion, resize, an augmentation op), on any bytes. */
#include <stdlib.h>

#include "dataset_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Odd sizes decode at full size, even ones with the DCT shrink. */
    clgqa_image img = {0};
    if (clgqa_image_decode(data, size, "fuzz", size % 2 ? 0 : 16, &img) != CLGQA_OK)
        return 0;
    int channels = img.channels == 1 ? 3 : 1;
    clgqa_image small = {0};
    if (clgqa_image_convert(&img, channels) == CLGQA_OK &&
        clgqa_image_resize(&img, 12, 9, &small) == CLGQA_OK) {
        clgqa_randaugment_op(&small, (int)(size % CLGQA_RANDAUGMENT_OPS),
                             clgqa_randaugment_magnitude((int)(size % CLGQA_RANDAUGMENT_OPS), 12));
        clgqa_image_free(&small);
    }
    clgqa_image_free(&img);
    return 0;
}
