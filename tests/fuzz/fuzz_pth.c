/* libFuzzer target: arbitrary bytes through the PyTorch .pth reader (zip
 * container and pickle subset); every accepted file is used through every
 * accessor (tensor_file_check.h), so a view outside the file or an inflated
 * entry would trip ASan. */
#include <stdint.h>

#include "pth.h"
#include "tensor_file_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clgqa_tensor_set *file;
    if (clgqa_pth_parse(data, size, "fuzz", &file) != CLGQA_OK)
        return 0;
    check_tensor_file(file);
    return 0;
}
