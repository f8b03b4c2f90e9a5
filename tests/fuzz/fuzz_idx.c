/* libFuzzer target: IDX (MNIST) files, plain or gzip, through the same
 * inflate and header checks the reader uses. Must never crash, leak or read
 * out of bounds, whatever the bytes. */
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where the payload bytes are summed, so the reads cannot be optimised away. */
volatile unsigned fuzz_idx_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buffer = malloc(size ? size : 1);
    if (!buffer)
        return 0;
    memcpy(buffer, data, size);
    size_t length = size;
    /* A small inflate cap keeps gzip bombs cheap; the reader's is 1 GiB. */
    if (clgqa_gunzip_in_place("fuzz", 1u << 20, &buffer, &length) == CLGQA_OK) {
        for (int dims = 1; dims <= 3; dims += 2) {
            uint32_t shape[3];
            const uint8_t *payload;
            if (clgqa_idx_parse(buffer, length, "fuzz", dims, shape, &payload) != CLGQA_OK)
                continue;
            /* Touch every byte the header promises. */
            size_t count = (size_t)shape[0] * (dims == 3 ? (size_t)shape[1] * shape[2] : 1);
            for (size_t i = 0; i < count; i++)
                fuzz_idx_sink += payload[i];
        }
    }
    free(buffer);
    return 0;
}
