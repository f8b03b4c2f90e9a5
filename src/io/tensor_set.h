/* A set of named tensors read from a file, whatever its container
 * (safetensors.c, pth.c; tensor_file.c opens either): each tensor's dtype,
 * shape and bytes, and string metadata. The parsers validate everything
 * before handing a set out, so a tensor's bytes always lie inside the file
 * and match its dtype and shape. Failures are CLGQA_ERR_FORMAT (CLGQA_ERR_IO
 * for open/read errors) with a message naming the file and, where one is
 * involved, the tensor. */
#ifndef CLGQA_TENSOR_SET_H
#define CLGQA_TENSOR_SET_H

#include <stddef.h>
#include <stdint.h>

#include "clgqa/error.h"
#include "fail.h"

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

#define CLGQA_TENSOR_SET_MAX_DIMS 8

/* One tensor of an open file. */
typedef struct clgqa_tensor {
    const char *name;
    clgqa_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[CLGQA_TENSOR_SET_MAX_DIMS];
    size_t numel;  /* product of shape (1 for a scalar) */
    size_t nbytes; /* numel * dtype size */
    const void *data; /* little-endian elements, possibly unaligned */
} clgqa_tensor;

typedef struct clgqa_tensor_set clgqa_tensor_set;

/* Open and validate a file (memory-mapped, read-only): safetensors, or a
 * PyTorch zip checkpoint (.pth/.pt, recognised by its bytes; pth.h),
 * whose tensors then read the same way. */
clgqa_status clgqa_tensor_file_open(const char *path, clgqa_tensor_set **out);
/* Validate `size` bytes at `bytes` as a safetensors file; `label` names it in
 * messages. The bytes are not copied: keep them alive and unchanged until
 * clgqa_tensor_set_close. */
clgqa_status clgqa_safetensors_parse(const void *bytes, size_t size, const char *label,
                                     clgqa_tensor_set **out);
void clgqa_tensor_set_close(clgqa_tensor_set *file);

/* The path or label the file was opened with. */
const char *clgqa_tensor_set_label(const clgqa_tensor_set *file);

/* Tensors in name order (strcmp), index 0 .. count-1. */
size_t clgqa_tensor_set_count(const clgqa_tensor_set *file);
const clgqa_tensor *clgqa_tensor_set_at(const clgqa_tensor_set *file, size_t index);
/* The tensor called `name`, or NULL. */
const clgqa_tensor *clgqa_tensor_set_find(const clgqa_tensor_set *file, const char *name);
/* Same, but a missing tensor is a CLGQA_ERR_FORMAT naming the file and tensor. */
clgqa_status clgqa_tensor_set_get(const clgqa_tensor_set *file, const char *name,
                                   const clgqa_tensor **out);

/* Copy tensor `name` converted to float32 into out[0 .. count-1]. count must
 * equal the tensor's numel (CLGQA_ERR_INVALID_ARG otherwise, naming both).
 * Converts F16, BF16, F32, F64 and every integer type and BOOL; FP8 is
 * CLGQA_ERR_UNSUPPORTED. F64 and large integers round to nearest float. */
clgqa_status clgqa_tensor_set_read_f32(const clgqa_tensor_set *file, const char *name, float *out,
                                        size_t count);
/* Copy an integer or BOOL tensor as int64 / int32. Values that do not fit
 * (U64 above INT64_MAX; anything outside int32 for _i32) are
 * CLGQA_ERR_FORMAT naming the tensor and the element; float tensors are
 * CLGQA_ERR_INVALID_ARG. */
clgqa_status clgqa_tensor_set_read_i64(const clgqa_tensor_set *file, const char *name, int64_t *out,
                                        size_t count);
clgqa_status clgqa_tensor_set_read_i32(const clgqa_tensor_set *file, const char *name, int32_t *out,
                                        size_t count);

/* "[768, 3, 16, 16]" into buf, for messages about shape mismatches. */
void clgqa_tensor_set_shape_text(const int64_t *shape, int ndim, char *buf, size_t size);

/* __metadata__: the value of `key`, or NULL; and the pairs by index
 * (in key order). */
const char *clgqa_tensor_set_metadata(const clgqa_tensor_set *file, const char *key);
size_t clgqa_tensor_set_metadata_count(const clgqa_tensor_set *file);
void clgqa_tensor_set_metadata_at(const clgqa_tensor_set *file, size_t index, const char **key,
                                   const char **value);

/* ---- for the parsers ---------------------------------------------------- */

/* The dtype the format spells `name` ("F32"); 0 when none. */
int clgqa_dtype_parse(const char *name, clgqa_dtype *out);

typedef struct tensor_entry {
    clgqa_tensor t;
    size_t begin, end; /* data_offsets */
} tensor_entry;

struct clgqa_tensor_set {
    char *label;
    void *mapping; /* munmap on close (NULL when parsing caller's bytes) */
    size_t mapping_size;
    tensor_entry *tensors; /* sorted by name */
    size_t count;
    char **meta_keys, **meta_values; /* sorted by key */
    size_t meta_count;
    void **owned; /* blocks the tensors point into (.pth: inflated entries) */
    size_t owned_count;
};


/* An empty set named `label` (NULL: "(memory)"). */
clgqa_status clgqa_tensor_set_new(const char *label, clgqa_tensor_set **out);
/* Sort the tensors by name (the order the accessors assume). */
void clgqa_tensor_set_sort(clgqa_tensor_set *set);
/* A set of `count` tensors whose names were malloc'ed and whose data lie in
 * caller's bytes or in the `owned` malloc'ed blocks. Takes ownership of the
 * names and of the blocks (also on failure). Refuses duplicate names. */
clgqa_status clgqa_tensor_set_adopt(const char *label, const clgqa_tensor *tensors, size_t count,
                                   void **owned, size_t owned_count, clgqa_tensor_set **out);
/* Unmap `mapping` when the set is closed. */
void clgqa_tensor_set_keep_mapping(clgqa_tensor_set *set, void *mapping, size_t size);

#endif
