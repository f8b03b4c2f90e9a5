/* IDX files (MNIST, Fashion-MNIST): a big-endian header, magic 0x0000 08 NN
 * (08: unsigned bytes, NN: number of dimensions), one 32-bit size per
 * dimension, then the bytes in row-major order. */
#include "dataset_internal.h"

static uint32_t read_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

clgqa_status clgqa_idx_parse(const uint8_t *data, size_t size, const char *name, int dims,
                             uint32_t shape[3], const uint8_t **payload) {
    size_t header = 4 + 4 * (size_t)dims;
    if (size < header)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: truncated IDX header (%zu bytes)", name, size);
    uint32_t magic = read_be32(data);
    uint32_t want = 0x0800u | (uint32_t)dims;
    if (magic != want)
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: wrong IDX magic number 0x%08x (expected 0x%08x: unsigned bytes, "
                          "%d dimension%s)",
                          name, magic, want, dims, dims == 1 ? "" : "s");
    uint64_t elements = 1;
    for (int d = 0; d < dims; d++) {
        shape[d] = read_be32(data + 4 + 4 * d);
        /* Saturate: anything above the file size is a mismatch anyway. */
        elements = elements > (uint64_t)size ? elements : elements * shape[d];
    }
    if (shape[0] == 0 || (dims == 3 && (shape[1] == 0 || shape[2] == 0)))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: IDX sizes include a zero", name);
    if (elements != (uint64_t)(size - header)) {
        /* Short: cut off in a copy; long: bytes after the data, or another
         * file's header. */
        const char *why = elements > (uint64_t)(size - header) ? "truncated?" : "extra bytes after the data";
        if (dims == 3)
            return clgqa_fail(CLGQA_ERR_FORMAT,
                              "%s: header says %u x %u x %u bytes but the file holds %zu (%s)",
                              name, shape[0], shape[1], shape[2], size - header, why);
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: header says %u labels but the file holds %zu (%s)", name,
                          shape[0], size - header, why);
    }
    *payload = data + header;
    return CLGQA_OK;
}
