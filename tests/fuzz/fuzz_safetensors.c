/* libFuzzer target: arbitrary bytes through the safetensors parser; every
 * accepted file is used through every accessor (tensor_file_check.h). */
#include <stdint.h>

#include "safetensors.h"
#include "tensor_file_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clgqa_tensor_set *file;
    if (clgqa_safetensors_parse(data, size, "fuzz", &file) != CLGQA_OK)
        return 0;
    check_tensor_file(file);
    return 0;
}
