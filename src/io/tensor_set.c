/* The tensor set both file parsers give (safetensors.c, pth.c): named
 * tensors with their bytes, and string metadata, validated before anyone
 * sees them; reading converts to float32 or integers. */
#include "tensor_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Tensor bytes are used in place (memcpy into host types), which matches the
 * file's little-endian order only on a little-endian host. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "clgqa's safetensors I/O assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [CLGQA_DTYPE_BOOL] = {"BOOL", 1}, [CLGQA_DTYPE_U8] = {"U8", 1},
    [CLGQA_DTYPE_I8] = {"I8", 1},     [CLGQA_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [CLGQA_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [CLGQA_DTYPE_I16] = {"I16", 2},
    [CLGQA_DTYPE_U16] = {"U16", 2},   [CLGQA_DTYPE_F16] = {"F16", 2},
    [CLGQA_DTYPE_BF16] = {"BF16", 2}, [CLGQA_DTYPE_I32] = {"I32", 4},
    [CLGQA_DTYPE_U32] = {"U32", 4},   [CLGQA_DTYPE_F32] = {"F32", 4},
    [CLGQA_DTYPE_F64] = {"F64", 8},   [CLGQA_DTYPE_I64] = {"I64", 8},
    [CLGQA_DTYPE_U64] = {"U64", 8},
};
#define DTYPE_COUNT (sizeof dtypes / sizeof dtypes[0])

const char *clgqa_dtype_name(clgqa_dtype dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? dtypes[dtype].name : "unknown";
}

size_t clgqa_dtype_size(clgqa_dtype dtype) { return (unsigned)dtype < DTYPE_COUNT ? dtypes[dtype].size : 0; }

int clgqa_dtype_parse(const char *name, clgqa_dtype *out) {
    for (size_t i = 0; i < DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (clgqa_dtype)i;
            return 1;
        }
    return 0;
}

void clgqa_tensor_set_shape_text(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

clgqa_status clgqa_tensor_set_new(const char *label, clgqa_tensor_set **out) {
    clgqa_tensor_set *file = calloc(1, sizeof *file);
    if (file)
        file->label = strdup(label ? label : "(memory)");
    if (!file || !file->label) {
        free(file);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "no memory to open '%s'", label ? label : "(memory)");
    }
    *out = file;
    return CLGQA_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const tensor_entry *)a)->t.name, ((const tensor_entry *)b)->t.name);
}

void clgqa_tensor_set_sort(clgqa_tensor_set *set) {
    qsort(set->tensors, set->count, sizeof *set->tensors, by_name);
}

void clgqa_tensor_set_close(clgqa_tensor_set *file) {
    if (!file)
        return;
    for (size_t i = 0; i < file->count; i++)
        free((char *)file->tensors[i].t.name);
    for (size_t i = 0; i < file->meta_count; i++) {
        free(file->meta_keys[i]);
        free(file->meta_values[i]);
    }
    free(file->tensors);
    free(file->meta_keys);
    free(file->meta_values);
    for (size_t i = 0; i < file->owned_count; i++)
        free(file->owned[i]);
    free(file->owned);
    if (file->mapping)
        munmap(file->mapping, file->mapping_size);
    free(file->label);
    free(file);
}

clgqa_status clgqa_tensor_set_adopt(const char *label, const clgqa_tensor *tensors, size_t count,
                                     void **owned, size_t owned_count, clgqa_tensor_set **out) {
    *out = NULL;
    clgqa_tensor_set *file = NULL;
    clgqa_status status = clgqa_tensor_set_new(label, &file);
    if (status == CLGQA_OK) {
        file->tensors = calloc(count ? count : 1, sizeof *file->tensors);
        file->owned = owned;
        file->owned_count = owned_count;
        if (!file->tensors)
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for %zu tensors", label, count);
    }
    for (size_t i = 0; i < count; i++) {
        if (status == CLGQA_OK)
            file->tensors[file->count++].t = tensors[i];
        else
            free((char *)tensors[i].name);
    }
    if (!file) {
        for (size_t i = 0; i < owned_count; i++)
            free(owned[i]);
        free(owned);
        return status;
    }
    if (status == CLGQA_OK) {
        clgqa_tensor_set_sort(file);
        for (size_t i = 1; i < file->count && status == CLGQA_OK; i++)
            if (strcmp(file->tensors[i - 1].t.name, file->tensors[i].t.name) == 0)
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' appears twice", label,
                                    file->tensors[i].t.name);
    }
    if (status != CLGQA_OK) {
        clgqa_tensor_set_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
}

const char *clgqa_tensor_set_label(const clgqa_tensor_set *file) { return file->label; }

size_t clgqa_tensor_set_count(const clgqa_tensor_set *file) { return file->count; }

const clgqa_tensor *clgqa_tensor_set_at(const clgqa_tensor_set *file, size_t index) {
    return index < file->count ? &file->tensors[index].t : NULL;
}

const clgqa_tensor *clgqa_tensor_set_find(const clgqa_tensor_set *file, const char *name) {
    tensor_entry key = {.t = {.name = name}};
    const tensor_entry *e = bsearch(&key, file->tensors, file->count, sizeof key, by_name);
    return e ? &e->t : NULL;
}

clgqa_status clgqa_tensor_set_get(const clgqa_tensor_set *file, const char *name, const clgqa_tensor **out) {
    *out = clgqa_tensor_set_find(file, name);
    if (!*out)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: no tensor '%s'", file->label, name);
    return CLGQA_OK;
}

/* ---- conversion ----------------------------------------------------------- */

/* IEEE half -> float, exact (every half is a float), subnormals included. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13); /* inf, nan (payload kept) */
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        /* Subnormal half: renormalise into a float's wider exponent range. */
        int shift = 0;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            shift++;
        }
        bits = sign | ((uint32_t)(113 - shift) << 23) | ((mantissa & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* bfloat16 is the top half of a float. */
static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element i of a little-endian array of `type` (memcpy: data may be unaligned). */
#define DEFINE_LOAD(fn, type)                                     \
    static type fn(const void *base, size_t i) {                  \
        type x;                                                   \
        memcpy(&x, (const char *)base + i * sizeof x, sizeof x);  \
        return x;                                                 \
    }
DEFINE_LOAD(load_u8, uint8_t)
DEFINE_LOAD(load_i8, int8_t)
DEFINE_LOAD(load_u16, uint16_t)
DEFINE_LOAD(load_i16, int16_t)
DEFINE_LOAD(load_u32, uint32_t)
DEFINE_LOAD(load_i32, int32_t)
DEFINE_LOAD(load_u64, uint64_t)
DEFINE_LOAD(load_i64, int64_t)
DEFINE_LOAD(load_f64, double)

static clgqa_status check_count(const clgqa_tensor_set *file, const clgqa_tensor *t, size_t count) {
    if (count != t->numel) {
        char shape[256];
        clgqa_tensor_set_shape_text(t->shape, t->ndim, shape, sizeof shape);
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor '%s' has %zu elements (shape %s), caller expected %zu",
                          file->label, t->name, t->numel, shape, count);
    }
    return CLGQA_OK;
}

clgqa_status clgqa_tensor_set_read_f32(const clgqa_tensor_set *file, const char *name, float *out,
                                        size_t count) {
    const clgqa_tensor *t;
    CLGQA_TRY(clgqa_tensor_set_get(file, name, &t));
    CLGQA_TRY(check_count(file, t, count));
    switch (t->dtype) {
    case CLGQA_DTYPE_F32:
        if (count) /* memcpy with NULL is undefined even for 0 bytes */
            memcpy(out, t->data, t->nbytes);
        break;
    case CLGQA_DTYPE_F16: for (size_t i = 0; i < count; i++) out[i] = half_to_float(load_u16(t->data, i)); break;
    case CLGQA_DTYPE_BF16: for (size_t i = 0; i < count; i++) out[i] = bf16_to_float(load_u16(t->data, i)); break;
    case CLGQA_DTYPE_F64: for (size_t i = 0; i < count; i++) out[i] = (float)load_f64(t->data, i); break;
    case CLGQA_DTYPE_BOOL: for (size_t i = 0; i < count; i++) out[i] = load_u8(t->data, i) ? 1.0f : 0.0f; break;
    case CLGQA_DTYPE_U8: for (size_t i = 0; i < count; i++) out[i] = (float)load_u8(t->data, i); break;
    case CLGQA_DTYPE_I8: for (size_t i = 0; i < count; i++) out[i] = (float)load_i8(t->data, i); break;
    case CLGQA_DTYPE_I16: for (size_t i = 0; i < count; i++) out[i] = (float)load_i16(t->data, i); break;
    case CLGQA_DTYPE_U16: for (size_t i = 0; i < count; i++) out[i] = (float)load_u16(t->data, i); break;
    case CLGQA_DTYPE_I32: for (size_t i = 0; i < count; i++) out[i] = (float)load_i32(t->data, i); break;
    case CLGQA_DTYPE_U32: for (size_t i = 0; i < count; i++) out[i] = (float)load_u32(t->data, i); break;
    case CLGQA_DTYPE_I64: for (size_t i = 0; i < count; i++) out[i] = (float)load_i64(t->data, i); break;
    case CLGQA_DTYPE_U64: for (size_t i = 0; i < count; i++) out[i] = (float)load_u64(t->data, i); break;
    case CLGQA_DTYPE_F8_E5M2:
    case CLGQA_DTYPE_F8_E4M3:
        return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be converted to float32",
                          file->label, name, dtypes[t->dtype].name);
    }
    return CLGQA_OK;
}

static int is_integer(clgqa_dtype dtype) {
    switch (dtype) {
    case CLGQA_DTYPE_BOOL: case CLGQA_DTYPE_U8: case CLGQA_DTYPE_I8: case CLGQA_DTYPE_I16: case CLGQA_DTYPE_U16:
    case CLGQA_DTYPE_I32: case CLGQA_DTYPE_U32: case CLGQA_DTYPE_I64: case CLGQA_DTYPE_U64: return 1;
    default: return 0;
    }
}

/* Element i of integer tensor t as int64; 0 for a U64 above INT64_MAX. */
static int integer_at(const clgqa_tensor *t, size_t i, int64_t *x) {
    switch (t->dtype) {
    case CLGQA_DTYPE_BOOL: *x = load_u8(t->data, i) != 0; break;
    case CLGQA_DTYPE_U8: *x = load_u8(t->data, i); break;
    case CLGQA_DTYPE_I8: *x = load_i8(t->data, i); break;
    case CLGQA_DTYPE_I16: *x = load_i16(t->data, i); break;
    case CLGQA_DTYPE_U16: *x = load_u16(t->data, i); break;
    case CLGQA_DTYPE_I32: *x = load_i32(t->data, i); break;
    case CLGQA_DTYPE_U32: *x = load_u32(t->data, i); break;
    case CLGQA_DTYPE_I64: *x = load_i64(t->data, i); break;
    default: {
        uint64_t u = load_u64(t->data, i);
        if (u > (uint64_t)INT64_MAX)
            return 0;
        *x = (int64_t)u;
    }
    }
    return 1;
}

/* Copy an integer tensor into out64 or out32 (one of them non-NULL),
 * refusing values outside [lo, hi]. */
static clgqa_status read_integers(const clgqa_tensor_set *file, const char *name, size_t count, int64_t lo,
                                  int64_t hi, int64_t *out64, int32_t *out32) {
    const char *target = out64 ? "int64" : "int32";
    const clgqa_tensor *t;
    CLGQA_TRY(clgqa_tensor_set_get(file, name, &t));
    if (!is_integer(t->dtype))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor '%s' is %s, not an integer tensor", file->label, name,
                          dtypes[t->dtype].name);
    CLGQA_TRY(check_count(file, t, count));
    for (size_t i = 0; i < count; i++) {
        int64_t x;
        if (!integer_at(t, i, &x) || x < lo || x > hi)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': element %zu does not fit %s", file->label, name,
                              i, target);
        if (out64)
            out64[i] = x;
        else
            out32[i] = (int32_t)x;
    }
    return CLGQA_OK;
}

clgqa_status clgqa_tensor_set_read_i64(const clgqa_tensor_set *file, const char *name, int64_t *out,
                                        size_t count) {
    return read_integers(file, name, count, INT64_MIN, INT64_MAX, out, NULL);
}

clgqa_status clgqa_tensor_set_read_i32(const clgqa_tensor_set *file, const char *name, int32_t *out,
                                        size_t count) {
    return read_integers(file, name, count, INT32_MIN, INT32_MAX, NULL, out);
}

/* ---- metadata --------------------------------------------------------------- */

const char *clgqa_tensor_set_metadata(const clgqa_tensor_set *file, const char *key) {
    size_t lo = 0, hi = file->meta_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(file->meta_keys[mid], key);
        if (c == 0)
            return file->meta_values[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t clgqa_tensor_set_metadata_count(const clgqa_tensor_set *file) { return file->meta_count; }

void clgqa_tensor_set_metadata_at(const clgqa_tensor_set *file, size_t index, const char **key,
                                   const char **value) {
    *key = index < file->meta_count ? file->meta_keys[index] : NULL;
    *value = index < file->meta_count ? file->meta_values[index] : NULL;
}


void clgqa_tensor_set_keep_mapping(clgqa_tensor_set *set, void *mapping, size_t size) {
    set->mapping = mapping;
    set->mapping_size = size;
}
