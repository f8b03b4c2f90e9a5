/* safetensors reader (validate everything up front, then hand out views and
 * converted copies) and atomic writer. The JSON header goes through cJSON. */
#include "clgqa/safetensors.h"

#include "atomic_file.h"
#include "clgqa/pth.h"
#include "safetensors_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are used in place (memcpy into host types), which matches the
 * file's little-endian order only on a little-endian host. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "clgqa's safetensors I/O assumes a little-endian host"
#endif

/* Python's safetensors refuses headers above 100 MB; so do we, which also
 * bounds what a corrupt length can make us allocate. */
#define MAX_HEADER_BYTES 100000000ull

/* JSON numbers are doubles in cJSON: integers are exact up to 2^53. */
#define MAX_EXACT_INTEGER 9007199254740992.0

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

static int dtype_parse(const char *name, clgqa_dtype *out) {
    for (size_t i = 0; i < DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (clgqa_dtype)i;
            return 1;
        }
    return 0;
}

void clgqa_safetensors_shape_text(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* ---- the reader --------------------------------------------------------- */

typedef struct tensor_entry {
    clgqa_safetensor t;
    size_t begin, end; /* data_offsets */
} tensor_entry;

struct clgqa_safetensors {
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

void clgqa_safetensors_close(clgqa_safetensors *file) {
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

/* A JSON number that is a non-negative integer exactly representable. */
static int json_size(const cJSON *item, size_t *out) {
    if (!cJSON_IsNumber(item))
        return 0;
    double x = item->valuedouble;
    if (!(x >= 0.0 && x <= MAX_EXACT_INTEGER && x == floor(x)) || x > (double)SIZE_MAX)
        return 0;
    *out = (size_t)x;
    return 1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const tensor_entry *)a)->t.name, ((const tensor_entry *)b)->t.name);
}

static int by_offsets(const void *a, const void *b) {
    const tensor_entry *x = *(const tensor_entry *const *)a, *y = *(const tensor_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static clgqa_status parse_metadata(clgqa_safetensors *file, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: __metadata__ is not a JSON object", file->label);
    size_t n = (size_t)cJSON_GetArraySize(meta);
    file->meta_keys = calloc(n ? n : 1, sizeof *file->meta_keys);
    file->meta_values = calloc(n ? n : 1, sizeof *file->meta_values);
    if (!file->meta_keys || !file->meta_values)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for __metadata__", file->label);
    for (const cJSON *item = meta->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", file->label,
                              item->string);
        /* Insertion sort keeps the pairs in key order for bsearch. */
        size_t at = file->meta_count;
        while (at > 0 && strcmp(file->meta_keys[at - 1], item->string) > 0)
            at--;
        if (at > 0 && strcmp(file->meta_keys[at - 1], item->string) == 0)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice", file->label,
                              item->string);
        char *key = strdup(item->string), *value = strdup(item->valuestring);
        if (!key || !value) {
            free(key);
            free(value);
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for __metadata__", file->label);
        }
        memmove(file->meta_keys + at + 1, file->meta_keys + at, (file->meta_count - at) * sizeof(char *));
        memmove(file->meta_values + at + 1, file->meta_values + at, (file->meta_count - at) * sizeof(char *));
        file->meta_keys[at] = key;
        file->meta_values[at] = value;
        file->meta_count++;
    }
    return CLGQA_OK;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry. */
static clgqa_status parse_tensor(const clgqa_safetensors *file, const cJSON *item, const unsigned char *data,
                                 size_t data_size, tensor_entry *e) {
    const char *label = file->label, *name = item->string;
    if (!name[0])
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: a tensor has an empty name", label);
    if (!cJSON_IsObject(item))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", label, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", label, name);
    if (!dtype_parse(dtype->valuestring, &e->t.dtype))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': missing or non-list shape", label, name);
    if (cJSON_GetArraySize(shape) > CLGQA_SAFETENSORS_MAX_DIMS)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': %d dimensions, at most %d supported", label, name,
                          cJSON_GetArraySize(shape), CLGQA_SAFETENSORS_MAX_DIMS);
    size_t numel = 1;
    int overflow = 0;
    e->t.ndim = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next) {
        size_t extent;
        if (!json_size(dim, &extent))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                              label, name, e->t.ndim);
        e->t.shape[e->t.ndim++] = (int64_t)extent;
        if (extent && numel > SIZE_MAX / extent)
            overflow = 1;
        numel *= extent;
    }
    size_t elem = dtypes[e->t.dtype].size;
    char shape_text[256];
    clgqa_safetensors_shape_text(e->t.shape, e->t.ndim, shape_text, sizeof shape_text);
    if (overflow || numel > SIZE_MAX / elem)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': shape %s is too large", label, name, shape_text);
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || !json_size(offsets->child, &e->begin) ||
        !json_size(offsets->child->next, &e->end))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] integers", label,
                          name);
    if (e->end < e->begin)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': data_offsets [%zu, %zu] end before they begin",
                          label, name, e->begin, e->end);
    if (e->end > data_size)
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu] run past the end of the data (%zu bytes)", label,
                          name, e->begin, e->end, data_size);
    if (e->end - e->begin != numel * elem)
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: tensor '%s': shape %s of %s needs %zu bytes but data_offsets [%zu, %zu] hold %zu",
                          label, name, shape_text, dtypes[e->t.dtype].name, numel * elem, e->begin, e->end,
                          e->end - e->begin);
    e->t.numel = numel;
    e->t.nbytes = numel * elem;
    e->t.data = data + e->begin;
    e->t.name = strdup(name);
    if (!e->t.name)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for tensor names", label);
    return CLGQA_OK;
}

/* The tensors must tile the data section: sorted by offset, each begins
 * where the previous ended, the first at 0, the last at the end. */
static clgqa_status check_tiling(const clgqa_safetensors *file, size_t data_size) {
    tensor_entry **order = malloc((file->count ? file->count : 1) * sizeof *order);
    if (!order)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory to check offsets", file->label);
    for (size_t i = 0; i < file->count; i++)
        order[i] = &file->tensors[i];
    qsort(order, file->count, sizeof *order, by_offsets);
    clgqa_status status = CLGQA_OK;
    size_t covered = 0;
    for (size_t i = 0; i < file->count && status == CLGQA_OK; i++) {
        const tensor_entry *e = order[i];
        if (e->begin < covered)
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
                                file->label, order[i - 1]->t.name, order[i - 1]->begin, order[i - 1]->end,
                                e->t.name, e->begin, e->end);
        else if (e->begin > covered)
            status = clgqa_fail(CLGQA_ERR_FORMAT,
                                "%s: data bytes [%zu, %zu) belong to no tensor (gap before tensor '%s')",
                                file->label, covered, e->begin, e->t.name);
        covered = e->end;
    }
    if (status == CLGQA_OK && covered != data_size)
        status = clgqa_fail(CLGQA_ERR_FORMAT,
                            "%s: the tensors cover %zu bytes but the data section has %zu (trailing bytes)",
                            file->label, covered, data_size);
    free(order);
    return status;
}

static clgqa_status parse_header(clgqa_safetensors *file, const unsigned char *bytes, size_t size) {
    const char *label = file->label;
    if (size < 8)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", label, size);
    uint64_t header_len;
    memcpy(&header_len, bytes, 8);
    if (header_len > size - 8)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                          label, (unsigned long long)header_len, size);
    if (header_len > MAX_HEADER_BYTES)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte limit", label,
                          (unsigned long long)header_len, MAX_HEADER_BYTES);
    /* cJSON gets a NUL-terminated copy: it then never reads past the header. */
    char *text = malloc((size_t)header_len + 1);
    if (!text)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for a %llu-byte header", label,
                          (unsigned long long)header_len);
    memcpy(text, bytes + 8, (size_t)header_len);
    text[header_len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)header_len, &end, 0);
    clgqa_status status = CLGQA_OK;
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %llu)", label,
                            at, (unsigned long long)header_len);
    } else {
        /* The writer pads with spaces; anything else after the JSON is junk. */
        for (const char *p = end; p < text + header_len && status == CLGQA_OK; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: header has bytes after its JSON object (at byte %zu)",
                                    label, (size_t)(p - text));
        if (status == CLGQA_OK && !cJSON_IsObject(root))
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: header is not a JSON object", label);
    }

    const unsigned char *data = bytes + 8 + header_len;
    size_t data_size = size - 8 - (size_t)header_len;
    if (status == CLGQA_OK) {
        size_t n = (size_t)cJSON_GetArraySize(root);
        file->tensors = calloc(n ? n : 1, sizeof *file->tensors);
        if (!file->tensors)
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for %zu tensors", label, n);
    }
    for (const cJSON *item = root ? root->child : NULL; item && status == CLGQA_OK; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (file->meta_keys)
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: __metadata__ appears twice", label);
            else
                status = parse_metadata(file, item);
            continue;
        }
        status = parse_tensor(file, item, data, data_size, &file->tensors[file->count]);
        if (status == CLGQA_OK)
            file->count++;
    }
    cJSON_Delete(root);
    free(text);
    if (status != CLGQA_OK)
        return status;

    qsort(file->tensors, file->count, sizeof *file->tensors, by_name);
    for (size_t i = 1; i < file->count; i++)
        if (strcmp(file->tensors[i - 1].t.name, file->tensors[i].t.name) == 0)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' appears twice", label, file->tensors[i].t.name);
    return check_tiling(file, data_size);
}

static clgqa_status new_file(const char *label, clgqa_safetensors **out) {
    clgqa_safetensors *file = calloc(1, sizeof *file);
    if (file)
        file->label = strdup(label ? label : "(memory)");
    if (!file || !file->label) {
        free(file);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "no memory to open '%s'", label ? label : "(memory)");
    }
    *out = file;
    return CLGQA_OK;
}

clgqa_status clgqa_safetensors_parse(const void *bytes, size_t size, const char *label, clgqa_safetensors **out) {
    *out = NULL;
    clgqa_safetensors *file = NULL;
    CLGQA_TRY(new_file(label, &file));
    clgqa_status status = parse_header(file, bytes, size);
    if (status != CLGQA_OK) {
        clgqa_safetensors_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
}

clgqa_status clgqa_safetensors_adopt(const char *label, const clgqa_safetensor *tensors, size_t count,
                                     void **owned, size_t owned_count, clgqa_safetensors **out) {
    *out = NULL;
    clgqa_safetensors *file = NULL;
    clgqa_status status = new_file(label, &file);
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
        qsort(file->tensors, file->count, sizeof *file->tensors, by_name);
        for (size_t i = 1; i < file->count && status == CLGQA_OK; i++)
            if (strcmp(file->tensors[i - 1].t.name, file->tensors[i].t.name) == 0)
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' appears twice", label,
                                    file->tensors[i].t.name);
    }
    if (status != CLGQA_OK) {
        clgqa_safetensors_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
}

static int has_torch_suffix(const char *path) {
    size_t len = strlen(path);
    return (len > 4 && !strcmp(path + len - 4, ".pth")) || (len > 3 && !strcmp(path + len - 3, ".pt"));
}

clgqa_status clgqa_safetensors_open(const char *path, clgqa_safetensors **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return clgqa_fail(CLGQA_ERR_IO, "cannot stat '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return clgqa_fail(CLGQA_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) { /* also keeps mmap away from empty files */
        close(fd);
        if (has_torch_suffix(path))
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %zu bytes, not a PyTorch checkpoint (truncated?): save the "
                              "weights with torch.save(model.state_dict(), path)", path, size);
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", path, size);
    }
    void *mapping = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (mapping == MAP_FAILED)
        return clgqa_fail(CLGQA_ERR_IO, "cannot map '%s' (%zu bytes): %s", path, size, strerror(err));
    clgqa_safetensors *file = NULL;
    clgqa_status status = new_file(path, &file);
    if (status != CLGQA_OK) {
        munmap(mapping, size);
        return status;
    }
    if (clgqa_pth_is_zip(mapping, size)) {
        clgqa_safetensors_close(file);
        status = clgqa_pth_parse(mapping, size, path, &file);
        if (status != CLGQA_OK) {
            munmap(mapping, size);
            return status;
        }
        file->mapping = mapping;
        file->mapping_size = size;
        *out = file;
        return CLGQA_OK;
    }
    file->mapping = mapping;
    file->mapping_size = size;
    if (clgqa_pth_is_legacy(mapping, size))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is a PyTorch file in the legacy format (torch < 1.6, or "
                            "_use_new_zipfile_serialization=False), which clgqa does not read: re-save it "
                            "with torch >= 1.6: torch.save(torch.load(path), 'new.pth')", path);
    else if ((status = parse_header(file, mapping, size)) == CLGQA_ERR_FORMAT && has_torch_suffix(path))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is neither a PyTorch zip checkpoint nor safetensors (corrupt, "
                            "or not a checkpoint): save the weights with torch.save(model.state_dict(), path)", path);
    if (status != CLGQA_OK) {
        clgqa_safetensors_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
}

const char *clgqa_safetensors_label(const clgqa_safetensors *file) { return file->label; }

size_t clgqa_safetensors_count(const clgqa_safetensors *file) { return file->count; }

const clgqa_safetensor *clgqa_safetensors_at(const clgqa_safetensors *file, size_t index) {
    return index < file->count ? &file->tensors[index].t : NULL;
}

const clgqa_safetensor *clgqa_safetensors_find(const clgqa_safetensors *file, const char *name) {
    tensor_entry key = {.t = {.name = name}};
    const tensor_entry *e = bsearch(&key, file->tensors, file->count, sizeof key, by_name);
    return e ? &e->t : NULL;
}

clgqa_status clgqa_safetensors_get(const clgqa_safetensors *file, const char *name, const clgqa_safetensor **out) {
    *out = clgqa_safetensors_find(file, name);
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

static clgqa_status check_count(const clgqa_safetensors *file, const clgqa_safetensor *t, size_t count) {
    if (count != t->numel) {
        char shape[256];
        clgqa_safetensors_shape_text(t->shape, t->ndim, shape, sizeof shape);
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor '%s' has %zu elements (shape %s), caller expected %zu",
                          file->label, t->name, t->numel, shape, count);
    }
    return CLGQA_OK;
}

clgqa_status clgqa_safetensors_read_f32(const clgqa_safetensors *file, const char *name, float *out,
                                        size_t count) {
    const clgqa_safetensor *t;
    CLGQA_TRY(clgqa_safetensors_get(file, name, &t));
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
static int integer_at(const clgqa_safetensor *t, size_t i, int64_t *x) {
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
static clgqa_status read_integers(const clgqa_safetensors *file, const char *name, size_t count, int64_t lo,
                                  int64_t hi, int64_t *out64, int32_t *out32) {
    const char *target = out64 ? "int64" : "int32";
    const clgqa_safetensor *t;
    CLGQA_TRY(clgqa_safetensors_get(file, name, &t));
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

clgqa_status clgqa_safetensors_read_i64(const clgqa_safetensors *file, const char *name, int64_t *out,
                                        size_t count) {
    return read_integers(file, name, count, INT64_MIN, INT64_MAX, out, NULL);
}

clgqa_status clgqa_safetensors_read_i32(const clgqa_safetensors *file, const char *name, int32_t *out,
                                        size_t count) {
    return read_integers(file, name, count, INT32_MIN, INT32_MAX, NULL, out);
}

/* ---- metadata --------------------------------------------------------------- */

const char *clgqa_safetensors_metadata(const clgqa_safetensors *file, const char *key) {
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

size_t clgqa_safetensors_metadata_count(const clgqa_safetensors *file) { return file->meta_count; }

void clgqa_safetensors_metadata_at(const clgqa_safetensors *file, size_t index, const char **key,
                                   const char **value) {
    *key = index < file->meta_count ? file->meta_keys[index] : NULL;
    *value = index < file->meta_count ? file->meta_values[index] : NULL;
}

/* ---- writing ---------------------------------------------------------------- */

/* Python's order: its dtype list (BOOL ... U64, the enum order here) from
 * last to first, then by name. That puts 8-byte types before 4-, 2- and
 * 1-byte ones, and the data section starts 8-aligned, so each tensor lands
 * aligned to its element size. */
static int write_order(const void *a, const void *b) {
    const clgqa_safetensor_out *x = *(const clgqa_safetensor_out *const *)a;
    const clgqa_safetensor_out *y = *(const clgqa_safetensor_out *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int name_order(const void *a, const void *b) {
    return strcmp((*(const clgqa_safetensor_out *const *)a)->name, (*(const clgqa_safetensor_out *const *)b)->name);
}

/* Bytes of one tensor to write, or 0 with *bad set when it is malformed. */
static size_t output_bytes(const clgqa_safetensor_out *t, const char **bad) {
    *bad = NULL;
    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
        *bad = "an empty or reserved name";
    else if ((unsigned)t->dtype >= DTYPE_COUNT)
        *bad = "an unknown dtype";
    else if (t->ndim < 0 || t->ndim > CLGQA_SAFETENSORS_MAX_DIMS || (t->ndim > 0 && !t->shape))
        *bad = "a bad number of dimensions";
    if (*bad)
        return 0;
    size_t bytes = dtypes[t->dtype].size;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (double)t->shape[i] > MAX_EXACT_INTEGER) {
            *bad = "a negative or huge dimension";
            return 0;
        }
        size_t extent = (size_t)t->shape[i];
        if (extent && bytes > SIZE_MAX / extent) {
            *bad = "a shape too large to address";
            return 0;
        }
        bytes *= extent;
    }
    if (bytes && !t->data)
        *bad = "no data";
    return bytes;
}

/* The JSON header, space-padded to a multiple of 8; NULL on failure. */
static char *build_header(const char *path, const clgqa_safetensor_out **order, size_t count,
                          const clgqa_metadata_pair *metadata, size_t metadata_count, size_t *length,
                          clgqa_status *status) {
    *status = CLGQA_OK;
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && metadata_count) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (size_t i = 0; ok && i < metadata_count; i++) {
            if (!metadata[i].key || !metadata[i].value || cJSON_GetObjectItemCaseSensitive(meta, metadata[i].key)) {
                cJSON_Delete(root);
                *status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: metadata pair %zu is empty or repeats a key", path, i);
                return NULL;
            }
            ok = cJSON_AddStringToObject(meta, metadata[i].key, metadata[i].value) != NULL;
        }
    }
    size_t offset = 0;
    for (size_t i = 0; ok && i < count; i++) {
        const char *bad;
        size_t bytes = output_bytes(order[i], &bad);
        /* Field order as serde writes it: dtype, shape, data_offsets. */
        cJSON *entry = cJSON_AddObjectToObject(root, order[i]->name);
        ok = entry && cJSON_AddStringToObject(entry, "dtype", dtypes[order[i]->dtype].name);
        cJSON *shape = ok ? cJSON_AddArrayToObject(entry, "shape") : NULL;
        ok = shape != NULL;
        for (int d = 0; ok && d < order[i]->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)order[i]->shape[d]));
        cJSON *offsets = ok ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
        ok = offsets && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        *status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for the safetensors header", path);
        return NULL;
    }
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *header = realloc(json, padded + 1);
    if (!header) {
        free(json);
        *status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for the safetensors header", path);
        return NULL;
    }
    memset(header + n, ' ', padded - n);
    header[padded] = '\0';
    *length = padded;
    return header;
}

clgqa_status clgqa_safetensors_write(const char *path, const clgqa_safetensor_out *tensors, size_t count,
                                     const clgqa_metadata_pair *metadata, size_t metadata_count) {
    const clgqa_safetensor_out **order = malloc((count ? count : 1) * sizeof *order);
    if (!order)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory to order %zu tensors", path, count);
    clgqa_status status = CLGQA_OK;
    for (size_t i = 0; i < count && status == CLGQA_OK; i++) {
        const char *bad;
        output_bytes(&tensors[i], &bad);
        if (bad)
            status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor %zu ('%s') has %s", path, i,
                                tensors[i].name ? tensors[i].name : "(null)", bad);
        order[i] = &tensors[i];
    }
    if (status == CLGQA_OK) {
        qsort(order, count, sizeof *order, name_order);
        for (size_t i = 1; i < count && status == CLGQA_OK; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0)
                status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor name '%s' given twice", path, order[i]->name);
    }
    size_t header_len = 0;
    char *header = NULL;
    if (status == CLGQA_OK) {
        qsort(order, count, sizeof *order, write_order);
        header = build_header(path, order, count, metadata, metadata_count, &header_len, &status);
    }
    if (status != CLGQA_OK) {
        free(order);
        return status;
    }

    clgqa_atomic_file af;
    status = clgqa_atomic_begin(path, &af);
    if (status == CLGQA_OK) {
        uint64_t n = header_len;
        int ok = fwrite(&n, sizeof n, 1, af.f) == 1 && fwrite(header, 1, header_len, af.f) == header_len;
        for (size_t i = 0; ok && i < count; i++) {
            const char *bad;
            size_t bytes = output_bytes(order[i], &bad);
            ok = bytes == 0 || fwrite(order[i]->data, 1, bytes, af.f) == bytes;
        }
        if (ok) {
            status = clgqa_atomic_commit(&af);
        } else {
            status = clgqa_fail(CLGQA_ERR_IO, "writing '%s' failed: %s", path, strerror(errno));
            clgqa_atomic_abort(&af);
        }
    }
    free(header);
    free(order);
    return status;
}
