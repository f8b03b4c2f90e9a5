/* safetensors files: the reader (validates the whole header up front, then
 * gives a tensor set) and the atomic writer. The JSON header goes through
 * cJSON. */
#include "safetensors.h"

#include "atomic_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's safetensors refuses headers above 100 MB; so do we, which also
 * bounds what a corrupt length can make us allocate. */
#define MAX_HEADER_BYTES 100000000ull

/* JSON numbers are doubles in cJSON: integers are exact up to 2^53. */
#define MAX_EXACT_INTEGER 9007199254740992.0

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

static int by_offsets(const void *a, const void *b) {
    const tensor_entry *x = *(const tensor_entry *const *)a, *y = *(const tensor_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static clgqa_status parse_metadata(clgqa_tensor_set *file, const cJSON *meta) {
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
static clgqa_status parse_tensor(const clgqa_tensor_set *file, const cJSON *item, const unsigned char *data,
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
    if (!clgqa_dtype_parse(dtype->valuestring, &e->t.dtype))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", label, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': missing or non-list shape", label, name);
    if (cJSON_GetArraySize(shape) > CLGQA_TENSOR_SET_MAX_DIMS)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s': %d dimensions, at most %d supported", label, name,
                          cJSON_GetArraySize(shape), CLGQA_TENSOR_SET_MAX_DIMS);
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
    size_t elem = clgqa_dtype_size(e->t.dtype);
    char shape_text[256];
    clgqa_tensor_set_shape_text(e->t.shape, e->t.ndim, shape_text, sizeof shape_text);
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
                          label, name, shape_text, clgqa_dtype_name(e->t.dtype), numel * elem, e->begin, e->end,
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
static clgqa_status check_tiling(const clgqa_tensor_set *file, size_t data_size) {
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

clgqa_status clgqa_safetensors_parse_into(clgqa_tensor_set *file, const unsigned char *bytes, size_t size) {
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

    clgqa_tensor_set_sort(file);
    for (size_t i = 1; i < file->count; i++)
        if (strcmp(file->tensors[i - 1].t.name, file->tensors[i].t.name) == 0)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: tensor '%s' appears twice", label, file->tensors[i].t.name);
    return check_tiling(file, data_size);
}

clgqa_status clgqa_safetensors_parse(const void *bytes, size_t size, const char *label, clgqa_tensor_set **out) {
    *out = NULL;
    clgqa_tensor_set *file = NULL;
    CLGQA_TRY(clgqa_tensor_set_new(label, &file));
    clgqa_status status = clgqa_safetensors_parse_into(file, bytes, size);
    if (status != CLGQA_OK) {
        clgqa_tensor_set_close(file);
        return status;
    }
    *out = file;
    return CLGQA_OK;
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
    else if (clgqa_dtype_size(t->dtype) == 0)
        *bad = "an unknown dtype";
    else if (t->ndim < 0 || t->ndim > CLGQA_TENSOR_SET_MAX_DIMS || (t->ndim > 0 && !t->shape))
        *bad = "a bad number of dimensions";
    if (*bad)
        return 0;
    size_t bytes = clgqa_dtype_size(t->dtype);
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
        ok = entry && cJSON_AddStringToObject(entry, "dtype", clgqa_dtype_name(order[i]->dtype));
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
