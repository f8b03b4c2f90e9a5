/* safetensors files: a validating reader and an atomic writer.
 *
 * The format (as written by Hugging Face's safetensors, used by PyTorch and
 * timm): an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8, then the tensor bytes (little-endian,
 * row-major). Offsets count from the end of the header; the tensors tile the
 * data section exactly, without gaps or overlaps.
 *
 * The reader checks all of that before handing anything out, so a tensor's
 * bytes always lie inside the file and match its dtype and shape. Every
 * failure is CLGQA_ERR_FORMAT (CLGQA_ERR_IO for open/read errors) with a
 * message naming the file and, where one is involved, the tensor. */
#ifndef CLGQA_SAFETENSORS_H
#define CLGQA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "clgqa/error.h"

/* The element types of the format. */
typedef enum clgqa_dtype {
    CLGQA_DTYPE_BOOL = 0,
    CLGQA_DTYPE_U8,
    CLGQA_DTYPE_I8,
    CLGQA_DTYPE_F8_E5M2,
    CLGQA_DTYPE_F8_E4M3,
    CLGQA_DTYPE_I16,
    CLGQA_DTYPE_U16,
    CLGQA_DTYPE_F16,
    CLGQA_DTYPE_BF16,
    CLGQA_DTYPE_I32,
    CLGQA_DTYPE_U32,
    CLGQA_DTYPE_F32,
    CLGQA_DTYPE_F64,
    CLGQA_DTYPE_I64,
    CLGQA_DTYPE_U64
} clgqa_dtype;

/* "F32", "BF16", ... as the format spells them. */
const char *clgqa_dtype_name(clgqa_dtype dtype);
/* Bytes per element. */
size_t clgqa_dtype_size(clgqa_dtype dtype);

#define CLGQA_SAFETENSORS_MAX_DIMS 8

/* One tensor of an open file. */
typedef struct clgqa_safetensor {
    const char *name;
    clgqa_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[CLGQA_SAFETENSORS_MAX_DIMS];
    size_t numel;  /* product of shape (1 for a scalar) */
    size_t nbytes; /* numel * dtype size */
    const void *data; /* little-endian elements, possibly unaligned */
} clgqa_safetensor;

typedef struct clgqa_safetensors clgqa_safetensors;

/* Open and validate a file (memory-mapped, read-only): safetensors, or a
 * PyTorch zip checkpoint (.pth/.pt, recognised by its bytes; clgqa/pth.h),
 * whose tensors then read the same way. */
clgqa_status clgqa_safetensors_open(const char *path, clgqa_safetensors **out);
/* Validate `size` bytes at `bytes` as a safetensors file; `label` names it in
 * messages. The bytes are not copied: keep them alive and unchanged until
 * clgqa_safetensors_close. */
clgqa_status clgqa_safetensors_parse(const void *bytes, size_t size, const char *label,
                                     clgqa_safetensors **out);
void clgqa_safetensors_close(clgqa_safetensors *file);

/* The path or label the file was opened with. */
const char *clgqa_safetensors_label(const clgqa_safetensors *file);

/* Tensors in name order (strcmp), index 0 .. count-1. */
size_t clgqa_safetensors_count(const clgqa_safetensors *file);
const clgqa_safetensor *clgqa_safetensors_at(const clgqa_safetensors *file, size_t index);
/* The tensor called `name`, or NULL. */
const clgqa_safetensor *clgqa_safetensors_find(const clgqa_safetensors *file, const char *name);
/* Same, but a missing tensor is a CLGQA_ERR_FORMAT naming the file and tensor. */
clgqa_status clgqa_safetensors_get(const clgqa_safetensors *file, const char *name,
                                   const clgqa_safetensor **out);

/* Copy tensor `name` converted to float32 into out[0 .. count-1]. count must
 * equal the tensor's numel (CLGQA_ERR_INVALID_ARG otherwise, naming both).
 * Converts F16, BF16, F32, F64 and every integer type and BOOL; FP8 is
 * CLGQA_ERR_UNSUPPORTED. F64 and large integers round to nearest float. */
clgqa_status clgqa_safetensors_read_f32(const clgqa_safetensors *file, const char *name, float *out,
                                        size_t count);
/* Copy an integer or BOOL tensor as int64 / int32. Values that do not fit
 * (U64 above INT64_MAX; anything outside int32 for _i32) are
 * CLGQA_ERR_FORMAT naming the tensor and the element; float tensors are
 * CLGQA_ERR_INVALID_ARG. */
clgqa_status clgqa_safetensors_read_i64(const clgqa_safetensors *file, const char *name, int64_t *out,
                                        size_t count);
clgqa_status clgqa_safetensors_read_i32(const clgqa_safetensors *file, const char *name, int32_t *out,
                                        size_t count);

/* "[768, 3, 16, 16]" into buf, for messages about shape mismatches. */
void clgqa_safetensors_shape_text(const int64_t *shape, int ndim, char *buf, size_t size);

/* __metadata__: the value of `key`, or NULL; and the pairs by index
 * (in key order). */
const char *clgqa_safetensors_metadata(const clgqa_safetensors *file, const char *key);
size_t clgqa_safetensors_metadata_count(const clgqa_safetensors *file);
void clgqa_safetensors_metadata_at(const clgqa_safetensors *file, size_t index, const char **key,
                                   const char **value);

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
