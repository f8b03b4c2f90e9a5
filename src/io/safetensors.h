/* safetensors files: a validating reader and an atomic writer.
 *
 * The format (as written by Hugging Face's safetensors, used by PyTorch and
 * timm): an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8, then the tensor bytes (little-endian,
 * row-major). Offsets count from the end of the header; the tensors tile the
 * data section exactly, without gaps or overlaps. The reader checks all of
 * that before handing out the tensor set. */
#ifndef CLGQA_SAFETENSORS_H
#define CLGQA_SAFETENSORS_H

#include "tensor_set.h"

/* Validate `size` bytes at `bytes` as a safetensors file; `label` names it in
 * messages. The bytes are not copied: keep them alive and unchanged until
 * clgqa_tensor_set_close. */
clgqa_status clgqa_safetensors_parse(const void *bytes, size_t size, const char *label,
                                     clgqa_tensor_set **out);
/* The same into an empty set (tensor_file.c names it by its path). */
clgqa_status clgqa_safetensors_parse_into(clgqa_tensor_set *set, const unsigned char *bytes,
                                          size_t size);

/* ---- writing ------------------------------------------------------------ */

/* One tensor to write: `data` holds numel elements of `dtype` in host order
 * (little-endian; clgqa builds only on little-endian hosts). */
typedef struct clgqa_safetensor_out {
    const char *name;
    clgqa_dtype dtype;
    int ndim;
    const int64_t *shape; /* ndim entries, each >= 0 */
    const void *data;
} clgqa_safetensor_out;

typedef struct clgqa_metadata_pair {
    const char *key, *value;
} clgqa_metadata_pair;

/* Write tensors and metadata to `path` the way Python's safetensors does
 * (data ordered by dtype size, largest first, then by name, so every tensor
 * is aligned to its element size; header padded with spaces to 8 bytes).
 * The file appears atomically: the bytes go to a temporary file in the same
 * folder, which is fsynced and renamed over `path`; on any failure the
 * temporary is removed and `path` is untouched. Names must be unique,
 * non-empty and not "__metadata__". */
clgqa_status clgqa_safetensors_write(const char *path, const clgqa_safetensor_out *tensors, size_t count,
                                     const clgqa_metadata_pair *metadata, size_t metadata_count);

#endif
