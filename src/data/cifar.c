/* CIFAR binary batches: fixed-size records of label byte(s) then a 32x32
 * image stored as the red plane, the green plane, the blue plane. */
#include "dataset_internal.h"

clgqa_status clgqa_cifar_count(size_t size, const char *name, const clgqa_cifar_format *fmt,
                               size_t *count) {
    size_t record = (size_t)fmt->label_bytes + CLGQA_CIFAR_PIXELS;
    if (size == 0 || size % record != 0)
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: %zu bytes is not a whole number of %zu-byte CIFAR records "
                          "(truncated or not a CIFAR%s binary file?)",
                          name, size, record, fmt->label_bytes == 1 ? "-10" : "-100");
    *count = size / record;
    return CLGQA_OK;
}

clgqa_status clgqa_cifar_decode(const uint8_t *data, size_t count, const char *name,
                                const clgqa_cifar_format *fmt, uint8_t *pixels_hwc,
                                int32_t *labels) {
    const size_t record = (size_t)fmt->label_bytes + CLGQA_CIFAR_PIXELS;
    const size_t plane = CLGQA_CIFAR_SIDE * CLGQA_CIFAR_SIDE;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *rec = data + i * record;
        int label = rec[fmt->label_offset];
        if (label >= fmt->num_classes)
            return clgqa_fail(CLGQA_ERR_FORMAT,
                              "%s: record %zu has label %d, outside 0..%d", name, i, label,
                              fmt->num_classes - 1);
        labels[i] = label;
        const uint8_t *planes = rec + fmt->label_bytes;
        uint8_t *out = pixels_hwc + i * CLGQA_CIFAR_PIXELS;
        for (size_t p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                out[p * 3 + (size_t)c] = planes[(size_t)c * plane + p];
    }
    return CLGQA_OK;
}
