/* PyTorch zip checkpoints: the zip container (stored and deflated entries,
 * zip64), then a small pickle machine that knows only what a state_dict
 * needs and refuses the rest by name. See pth.h. */
#include "pth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tensor_set.h"

/* What to tell a user whose file is not a state_dict this reader takes. */
#define SAVE_HINT "save the weights with torch.save(model.state_dict(), path)"
/* Bounds on what a corrupt pickle can make us allocate. */
#define MAX_MEMO 1000000
#define MAX_STACK 1000000

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

int clgqa_pth_is_zip(const void *bytes, size_t size) {
    return size >= 4 && (!memcmp(bytes, "PK\3\4", 4) || !memcmp(bytes, "PK\5\6", 4));
}

int clgqa_pth_is_legacy(const void *bytes, size_t size) {
    const unsigned char *p = bytes;
    return size >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5; /* pickle PROTO */
}

/* ---- the zip container ---------------------------------------------------- */

typedef struct zip_entry {
    char *name;
    const unsigned char *data; /* into the file, or into `inflated` */
    size_t size;
} zip_entry;

typedef struct zip_archive {
    const char *label;
    zip_entry *entries;
    size_t count;
    void **owned; /* inflated entries, handed to the tensor set */
    size_t owned_count;
} zip_archive;

static void zip_free(zip_archive *zip) {
    for (size_t i = 0; i < zip->count; i++)
        free(zip->entries[i].name);
    free(zip->entries);
    for (size_t i = 0; i < zip->owned_count; i++)
        free(zip->owned[i]);
    free(zip->owned);
}

static const zip_entry *zip_find(const zip_archive *zip, const char *name) {
    for (size_t i = 0; i < zip->count; i++)
        if (!strcmp(zip->entries[i].name, name))
            return &zip->entries[i];
    return NULL;
}

#define ZIP_FAIL(...) clgqa_fail(CLGQA_ERR_FORMAT, __VA_ARGS__)

/* The end-of-central-directory record (zip64's when the classic one says
 * so): where the central directory is and how many entries it has. */
static clgqa_status zip_directory(const char *label, const unsigned char *b, size_t size,
                                  uint64_t *cd_offset, uint64_t *cd_size, uint64_t *entries) {
    size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    size_t at = SIZE_MAX;
    for (size_t i = size >= 22 ? size - 22 : 0; size >= 22; i--) {
        if (le32(b + i) == 0x06054b50 && i + 22 + le16(b + i + 20) == size) {
            at = i;
            break;
        }
        if (i == lowest)
            break;
    }
    if (at == SIZE_MAX)
        return ZIP_FAIL("%s: no zip end record (the file is truncated or not a PyTorch checkpoint)", label);
    *entries = le16(b + at + 10);
    *cd_size = le32(b + at + 12);
    *cd_offset = le32(b + at + 16);
    if (*entries == 0xffff || *cd_size == 0xffffffffu || *cd_offset == 0xffffffffu) {
        if (at < 20 || le32(b + at - 20) != 0x07064b50)
            return ZIP_FAIL("%s: zip64 end record locator missing (truncated file?)", label);
        uint64_t z = le64(b + at - 20 + 8);
        if (size < 56 || z > size - 56 || le32(b + z) != 0x06064b50)
            return ZIP_FAIL("%s: zip64 end record missing (truncated file?)", label);
        *entries = le64(b + z + 32);
        *cd_size = le64(b + z + 40);
        *cd_offset = le64(b + z + 48);
    }
    if (*cd_offset > size || *cd_size > size - *cd_offset)
        return ZIP_FAIL("%s: the zip directory lies outside the file (truncated file?)", label);
    return CLGQA_OK;
}

/* Sizes and offset from the zip64 extra field, for those the directory
 * entry marks 0xffffffff. */
static int zip64_extra(const unsigned char *extra, size_t length, uint64_t *uncompressed,
                       uint64_t *compressed, uint64_t *offset) {
    for (size_t i = 0; i + 4 <= length;) {
        size_t id = le16(extra + i), n = le16(extra + i + 2), at = i + 4;
        if (at + n > length)
            return 0;
        if (id == 1) {
            uint64_t *fields[3] = {uncompressed, compressed, offset};
            for (int f = 0; f < 3; f++) {
                if (*fields[f] != 0xffffffffu)
                    continue;
                if (at + 8 > i + 4 + n)
                    return 0;
                *fields[f] = le64(extra + at);
                at += 8;
            }
            return 1;
        }
        i = at + n;
    }
    return *uncompressed != 0xffffffffu && *compressed != 0xffffffffu && *offset != 0xffffffffu;
}

static clgqa_status inflate_entry(zip_archive *zip, const char *name, const unsigned char *src,
                                  uint64_t compressed, uint64_t uncompressed, const unsigned char **out) {
    /* Deflate expands at most ~1032:1; a larger claim is a corrupt size. */
    if (uncompressed > compressed * 1100 + 1024)
        return ZIP_FAIL("%s: entry '%s' claims %llu bytes from %llu compressed (corrupt file)", zip->label, name,
                        (unsigned long long)uncompressed, (unsigned long long)compressed);
    if (uncompressed > (uint64_t)SIZE_MAX / 2 || compressed > UINT32_MAX || uncompressed > UINT32_MAX)
        return ZIP_FAIL("%s: entry '%s' is too large to inflate in memory; save it uncompressed (torch.save "
                        "does)", zip->label, name);
    void **grown = realloc(zip->owned, (zip->owned_count + 1) * sizeof *grown);
    if (!grown)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for entry '%s'", zip->label, name);
    zip->owned = grown;
    unsigned char *dst = malloc(uncompressed ? (size_t)uncompressed : 1);
    if (!dst)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes for entry '%s'",
                          zip->label, (unsigned long long)uncompressed, name);
    zip->owned[zip->owned_count++] = dst;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: zlib cannot start inflating '%s'", zip->label, name);
    zs.next_in = (unsigned char *)src;
    zs.avail_in = (uInt)compressed;
    zs.next_out = dst;
    zs.avail_out = (uInt)uncompressed;
    int rc = inflate(&zs, Z_FINISH);
    size_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != uncompressed)
        return ZIP_FAIL("%s: entry '%s' does not inflate to its %llu bytes (corrupt file)", zip->label, name,
                        (unsigned long long)uncompressed);
    *out = dst;
    return CLGQA_OK;
}

/* libFuzzer builds skip the check: mutations could never satisfy it. */
static int crc_matches(const unsigned char *data, uint64_t size, uint32_t crc) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)data, (void)size, (void)crc;
    return 1;
#else
    uLong sum = crc32(0L, Z_NULL, 0);
    for (uint64_t done = 0; done < size;) {
        uInt chunk = size - done > (1u << 30) ? (1u << 30) : (uInt)(size - done);
        sum = crc32(sum, data + done, chunk);
        done += chunk;
    }
    return (uint32_t)sum == crc;
#endif
}

static clgqa_status zip_open(zip_archive *zip, const unsigned char *b, size_t size) {
    uint64_t cd_offset = 0, cd_size = 0, entries = 0;
    CLGQA_TRY(zip_directory(zip->label, b, size, &cd_offset, &cd_size, &entries));
    if (entries > cd_size / 46)
        return ZIP_FAIL("%s: the zip directory claims %llu entries in %llu bytes (corrupt file)", zip->label,
                        (unsigned long long)entries, (unsigned long long)cd_size);
    zip->entries = calloc(entries ? (size_t)entries : 1, sizeof *zip->entries);
    if (!zip->entries)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for %llu zip entries", zip->label,
                          (unsigned long long)entries);
    const unsigned char *p = b + cd_offset, *end = p + cd_size;
    for (uint64_t e = 0; e < entries; e++) {
        if (end - p < 46 || le32(p) != 0x02014b50)
            return ZIP_FAIL("%s: zip directory entry %llu is damaged (corrupt file)", zip->label,
                            (unsigned long long)e);
        uint32_t flags = le16(p + 8), method = le16(p + 10), crc = le32(p + 16);
        uint64_t compressed = le32(p + 20), uncompressed = le32(p + 24), offset = le32(p + 42);
        size_t name_len = le16(p + 28), extra_len = le16(p + 30), comment_len = le16(p + 32);
        if ((size_t)(end - p) < 46 + name_len + extra_len + comment_len)
            return ZIP_FAIL("%s: zip directory entry %llu runs past the directory (corrupt file)", zip->label,
                            (unsigned long long)e);
        zip_entry *entry = &zip->entries[zip->count];
        if (!(entry->name = malloc(name_len + 1)))
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory for zip names", zip->label);
        memcpy(entry->name, p + 46, name_len);
        entry->name[name_len] = 0;
        zip->count++;
        if (strlen(entry->name) != name_len)
            return ZIP_FAIL("%s: zip entry %llu has a NUL in its name (corrupt file)", zip->label,
                            (unsigned long long)e);
        if (!zip64_extra(p + 46 + name_len, extra_len, &uncompressed, &compressed, &offset))
            return ZIP_FAIL("%s: zip entry '%s' lacks its zip64 sizes (corrupt file)", zip->label, entry->name);
        p += 46 + name_len + extra_len + comment_len;
        if (flags & 1)
            return ZIP_FAIL("%s: zip entry '%s' is encrypted; clgqa reads plain torch.save files", zip->label,
                            entry->name);
        if (offset > size || size - offset < 30 || le32(b + offset) != 0x04034b50)
            return ZIP_FAIL("%s: zip entry '%s' has no local header where the directory says (corrupt file)",
                            zip->label, entry->name);
        uint64_t data_at = offset + 30 + le16(b + offset + 26) + le16(b + offset + 28);
        if (data_at > size || compressed > size - data_at)
            return ZIP_FAIL("%s: zip entry '%s' runs past the end of the file (truncated file?)", zip->label,
                            entry->name);
        const unsigned char *data = b + data_at;
        if (method == 0) {
            if (compressed != uncompressed)
                return ZIP_FAIL("%s: stored zip entry '%s' has two sizes (corrupt file)", zip->label,
                                entry->name);
        } else if (method == 8) {
            CLGQA_TRY(inflate_entry(zip, entry->name, data, compressed, uncompressed, &data));
        } else {
            return ZIP_FAIL("%s: zip entry '%s' uses compression method %u; clgqa reads stored and deflated "
                            "entries (re-save with torch.save)", zip->label, entry->name, method);
        }
        if (!crc_matches(data, uncompressed, crc))
            return ZIP_FAIL("%s: zip entry '%s' fails its CRC check (corrupt file)", zip->label, entry->name);
        entry->data = data;
        entry->size = (size_t)uncompressed;
    }
    return CLGQA_OK;
}

/* ---- the pickle subset -------------------------------------------------------- */

typedef enum pkind {
    P_MARK, P_NONE, P_BOOL, P_INT, P_FLOAT, P_STRING, P_TUPLE, P_LIST, P_DICT, P_GLOBAL, P_STORAGE, P_TENSOR
} pkind;

/* The globals a state_dict pickle names; anything else is refused. */
typedef enum pglobal {
    G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE
} pglobal;

static const struct {
    const char *name;
    clgqa_dtype dtype;
} storage_types[] = {
    {"FloatStorage", CLGQA_DTYPE_F32}, {"HalfStorage", CLGQA_DTYPE_F16}, {"BFloat16Storage", CLGQA_DTYPE_BF16},
    {"DoubleStorage", CLGQA_DTYPE_F64}, {"LongStorage", CLGQA_DTYPE_I64}, {"IntStorage", CLGQA_DTYPE_I32},
    {"ShortStorage", CLGQA_DTYPE_I16}, {"CharStorage", CLGQA_DTYPE_I8}, {"ByteStorage", CLGQA_DTYPE_U8},
    {"BoolStorage", CLGQA_DTYPE_BOOL},
};
#define STORAGE_TYPE_COUNT (sizeof storage_types / sizeof storage_types[0])

typedef struct pvalue {
    pkind kind;
    struct pvalue *next_alloc;
    int64_t integer; /* P_BOOL, P_INT; P_GLOBAL: the pglobal; P_TENSOR: storage offset */
    char *text;      /* P_STRING (NUL-terminated), P_GLOBAL "module.name" */
    struct pvalue **items; /* P_TUPLE, P_LIST; P_DICT: key, value, key, value... */
    size_t count, capacity;
    clgqa_dtype dtype;            /* P_GLOBAL storage type, P_STORAGE, P_TENSOR */
    const unsigned char *data;    /* P_STORAGE, P_TENSOR */
    size_t bytes;                 /* P_STORAGE */
    struct pvalue *storage;       /* P_TENSOR */
    int ndim;                     /* P_TENSOR */
    int64_t shape[CLGQA_TENSOR_SET_MAX_DIMS];
} pvalue;

typedef struct unpickler {
    const char *label;
    const zip_archive *zip;
    const char *prefix; /* "<archive>/" */
    const unsigned char *p, *end, *start;
    pvalue *allocated;
    pvalue **stack;
    size_t depth, stack_capacity;
    pvalue **memo;
    size_t memo_size;
    pvalue mark;
} unpickler;

static clgqa_status bad(const unpickler *u, const char *what) {
    return clgqa_fail(CLGQA_ERR_FORMAT, "%s: data.pkl byte %zu: %s (corrupt file?)", u->label,
                      (size_t)(u->p - u->start), what);
}

static pvalue *new_value(unpickler *u, pkind kind) {
    pvalue *v = calloc(1, sizeof *v);
    if (v) {
        v->kind = kind;
        v->next_alloc = u->allocated;
        u->allocated = v;
    }
    return v;
}

static void free_values(unpickler *u) {
    for (pvalue *v = u->allocated, *next; v; v = next) {
        next = v->next_alloc;
        free(v->text);
        free(v->items);
        free(v);
    }
    free(u->stack);
    free(u->memo);
}

static clgqa_status no_memory(const unpickler *u) {
    return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "%s: no memory to read data.pkl", u->label);
}

static clgqa_status push(unpickler *u, pvalue *v) {
    if (!v)
        return no_memory(u);
    if (u->depth == u->stack_capacity) {
        size_t capacity = u->stack_capacity ? 2 * u->stack_capacity : 64;
        if (capacity > MAX_STACK)
            return bad(u, "the pickle stack grows without bound");
        pvalue **grown = realloc(u->stack, capacity * sizeof *grown);
        if (!grown)
            return no_memory(u);
        u->stack = grown;
        u->stack_capacity = capacity;
    }
    u->stack[u->depth++] = v;
    return CLGQA_OK;
}

static clgqa_status pop(unpickler *u, pvalue **out) {
    if (u->depth == 0 || u->stack[u->depth - 1] == &u->mark)
        return bad(u, "an opcode needs a value the stack does not have");
    *out = u->stack[--u->depth];
    return CLGQA_OK;
}

static clgqa_status append_item(unpickler *u, pvalue *container, pvalue *item) {
    if (container->count == container->capacity) {
        size_t capacity = container->capacity ? 2 * container->capacity : 4;
        pvalue **grown = realloc(container->items, capacity * sizeof *grown);
        if (!grown)
            return no_memory(u);
        container->items = grown;
        container->capacity = capacity;
    }
    container->items[container->count++] = item;
    return CLGQA_OK;
}

/* Index of the topmost mark. */
static clgqa_status find_mark(const unpickler *u, size_t *at) {
    for (size_t i = u->depth; i-- > 0;)
        if (u->stack[i] == &u->mark) {
            *at = i;
            return CLGQA_OK;
        }
    return bad(u, "an opcode needs a mark the stack does not have");
}

/* The values above the topmost mark into a new tuple or list; the mark goes. */
static clgqa_status collect_marked(unpickler *u, pkind kind) {
    size_t at = 0;
    CLGQA_TRY(find_mark(u, &at));
    pvalue *v = new_value(u, kind);
    if (!v)
        return no_memory(u);
    for (size_t i = at + 1; i < u->depth; i++)
        CLGQA_TRY(append_item(u, v, u->stack[i]));
    u->depth = at;
    return push(u, v);
}

static clgqa_status tuple_of(unpickler *u, size_t n) {
    if (u->depth < n)
        return bad(u, "a tuple opcode needs more values than the stack has");
    pvalue *v = new_value(u, P_TUPLE);
    if (!v)
        return no_memory(u);
    for (size_t i = u->depth - n; i < u->depth; i++) {
        if (u->stack[i] == &u->mark)
            return bad(u, "a tuple opcode meets a mark");
        CLGQA_TRY(append_item(u, v, u->stack[i]));
    }
    u->depth -= n;
    return push(u, v);
}

static clgqa_status need(const unpickler *u, size_t n) {
    return (size_t)(u->end - u->p) < n ? bad(u, "the pickle ends inside an opcode") : CLGQA_OK;
}

static clgqa_status push_string(unpickler *u, size_t length) {
    CLGQA_TRY(need(u, length));
    pvalue *v = new_value(u, P_STRING);
    if (!v || !(v->text = malloc(length + 1)))
        return no_memory(u);
    memcpy(v->text, u->p, length);
    v->text[length] = 0;
    u->p += length;
    return push(u, v);
}

static clgqa_status push_int(unpickler *u, pkind kind, int64_t x) {
    pvalue *v = new_value(u, kind);
    if (v)
        v->integer = x;
    return push(u, v);
}

/* module.name -> a known global, or the line that refuses it. */
static clgqa_status push_global(unpickler *u, const char *module, const char *name) {
    pvalue *v = new_value(u, P_GLOBAL);
    size_t length = strlen(module) + strlen(name) + 2;
    if (!v || !(v->text = malloc(length)))
        return no_memory(u);
    snprintf(v->text, length, "%s.%s", module, name);
    if (!strcmp(v->text, "collections.OrderedDict"))
        v->integer = G_ORDERED_DICT;
    else if (!strcmp(v->text, "torch._utils._rebuild_tensor_v2"))
        v->integer = G_REBUILD_TENSOR;
    else if (!strcmp(v->text, "torch._utils._rebuild_parameter"))
        v->integer = G_REBUILD_PARAMETER;
    else {
        size_t i = 0;
        while (i < STORAGE_TYPE_COUNT && (strcmp(module, "torch") || strcmp(name, storage_types[i].name)))
            i++;
        if (i == STORAGE_TYPE_COUNT)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: the pickle uses %s, which is not part of a state_dict "
                              "clgqa reads (tensors of float, half, bfloat16 or integer storages in a dict): "
                              SAVE_HINT, u->label, v->text);
        v->integer = G_STORAGE;
        v->dtype = storage_types[i].dtype;
    }
    return push(u, v);
}

static int is_int(const pvalue *v) { return v->kind == P_INT || v->kind == P_BOOL; }

/* ('storage', torch.<T>Storage, key, location, numel) -> the entry's bytes. */
static clgqa_status persistent_load(unpickler *u, pvalue *pid) {
    if (pid->kind != P_TUPLE || pid->count != 5 || pid->items[0]->kind != P_STRING ||
        strcmp(pid->items[0]->text, "storage") || pid->items[1]->kind != P_GLOBAL ||
        pid->items[1]->integer != G_STORAGE || pid->items[2]->kind != P_STRING || !is_int(pid->items[4]))
        return bad(u, "a persistent id is not a torch storage");
    char name[512];
    snprintf(name, sizeof name, "%sdata/%s", u->prefix, pid->items[2]->text);
    const zip_entry *entry = zip_find(u->zip, name);
    if (!entry)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: the archive lacks '%s', the bytes of a tensor (corrupt "
                          "file?)", u->label, name);
    clgqa_dtype dtype = pid->items[1]->dtype;
    int64_t numel = pid->items[4]->integer;
    size_t elem = clgqa_dtype_size(dtype);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / elem || (size_t)numel * elem != entry->size)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: '%s' holds %zu bytes, its storage needs %lld elements of %zu "
                          "bytes (corrupt file?)", u->label, name, entry->size, (long long)numel, elem);
    pvalue *v = new_value(u, P_STORAGE);
    if (!v)
        return no_memory(u);
    v->dtype = dtype;
    v->data = entry->data;
    v->bytes = entry->size;
    return push(u, v);
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]). */
static clgqa_status rebuild_tensor(unpickler *u, const pvalue *args, pvalue **out) {
    if (args->count < 4 || args->items[0]->kind != P_STORAGE || !is_int(args->items[1]) ||
        args->items[2]->kind != P_TUPLE || args->items[3]->kind != P_TUPLE ||
        args->items[2]->count != args->items[3]->count)
        return bad(u, "_rebuild_tensor_v2 has arguments a tensor does not");
    const pvalue *storage = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (size->count > CLGQA_TENSOR_SET_MAX_DIMS)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: a tensor has %zu dimensions, clgqa reads at most %d", u->label,
                          size->count, CLGQA_TENSOR_SET_MAX_DIMS);
    pvalue *t = new_value(u, P_TENSOR);
    if (!t)
        return no_memory(u);
    t->storage = args->items[0];
    t->dtype = storage->dtype;
    t->integer = args->items[1]->integer;
    t->ndim = (int)size->count;
    /* Contiguous (row-major) strides, checked from the last dimension; a
     * dimension of extent 1, or any in an empty tensor, may have any stride. */
    int empty = 0;
    for (int d = 0; d < t->ndim; d++)
        empty |= is_int(size->items[d]) && size->items[d]->integer == 0;
    uint64_t numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        const pvalue *extent = size->items[d], *step = stride->items[d];
        if (!is_int(extent) || !is_int(step) || extent->integer < 0)
            return bad(u, "a tensor's size or stride is not a non-negative integer");
        if (!empty && extent->integer != 1 && (uint64_t)step->integer != numel)
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: a tensor is not contiguous (a view or a transpose); "
                              "save {k: v.contiguous() for k, v in model.state_dict().items()}", u->label);
        t->shape[d] = extent->integer;
        if (extent->integer && numel > UINT32_MAX * (uint64_t)UINT32_MAX / (uint64_t)extent->integer)
            return bad(u, "a tensor's size overflows");
        numel *= (uint64_t)extent->integer;
    }
    size_t elem = clgqa_dtype_size(t->dtype);
    uint64_t offset = (uint64_t)t->integer;
    if (t->integer < 0 || offset > storage->bytes / elem || numel > storage->bytes / elem - offset)
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: a tensor of %llu elements at offset %lld runs past its "
                          "storage of %zu elements (corrupt file?)", u->label, (unsigned long long)numel,
                          (long long)t->integer, storage->bytes / elem);
    t->data = storage->data + offset * elem;
    *out = t;
    return CLGQA_OK;
}

static clgqa_status reduce(unpickler *u) {
    pvalue *args = NULL, *callable = NULL, *result = NULL;
    CLGQA_TRY(pop(u, &args));
    CLGQA_TRY(pop(u, &callable));
    if (callable->kind != P_GLOBAL || args->kind != P_TUPLE)
        return bad(u, "REDUCE without a global and its arguments");
    switch ((pglobal)callable->integer) {
    case G_ORDERED_DICT:
        if (args->count != 0)
            return bad(u, "OrderedDict called with arguments");
        if (!(result = new_value(u, P_DICT)))
            return no_memory(u);
        break;
    case G_REBUILD_TENSOR:
        CLGQA_TRY(rebuild_tensor(u, args, &result));
        break;
    case G_REBUILD_PARAMETER:
        if (args->count < 1 || args->items[0]->kind != P_TENSOR)
            return bad(u, "_rebuild_parameter without a tensor");
        result = args->items[0];
        break;
    case G_STORAGE:
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: the pickle builds a bare %s, which a state_dict does not: "
                          SAVE_HINT, u->label, callable->text);
    }
    return push(u, result);
}

static clgqa_status set_items(unpickler *u, size_t first) {
    if (first == 0 || (u->depth - first) % 2 != 0)
        return bad(u, "SETITEMS needs a dict and key/value pairs");
    pvalue *dict = u->stack[first - 1];
    if (dict->kind != P_DICT)
        return bad(u, "SETITEM(S) on something that is not a dict");
    for (size_t i = first; i < u->depth; i++) {
        if (u->stack[i] == &u->mark)
            return bad(u, "SETITEMS meets a second mark");
        CLGQA_TRY(append_item(u, dict, u->stack[i]));
    }
    u->depth = first;
    return CLGQA_OK;
}

static clgqa_status memo_put(unpickler *u, uint64_t index) {
    if (u->depth == 0 || u->stack[u->depth - 1] == &u->mark)
        return bad(u, "PUT with nothing to memoize");
    if (index >= MAX_MEMO)
        return bad(u, "a memo index beyond any state_dict");
    if (index >= u->memo_size) {
        size_t size = index + 1 > 2 * u->memo_size ? (size_t)index + 1 : 2 * u->memo_size;
        pvalue **grown = realloc(u->memo, size * sizeof *grown);
        if (!grown)
            return no_memory(u);
        memset(grown + u->memo_size, 0, (size - u->memo_size) * sizeof *grown);
        u->memo = grown;
        u->memo_size = size;
    }
    u->memo[index] = u->stack[u->depth - 1];
    return CLGQA_OK;
}

static clgqa_status memo_get(unpickler *u, uint64_t index) {
    if (index >= u->memo_size || !u->memo[index])
        return bad(u, "GET of a memo entry never PUT");
    return push(u, u->memo[index]);
}

/* Runs the pickle to STOP; *out is the object. */
static clgqa_status unpickle(unpickler *u, pvalue **out) {
    size_t memoized = 0; /* MEMOIZE's next index */
    for (;;) {
        CLGQA_TRY(need(u, 1));
        unsigned op = *u->p++;
        const unsigned char *arg = u->p;
        pvalue *a = NULL, *b = NULL;
        size_t at = 0;
        switch (op) {
        case 0x80: /* PROTO */
            CLGQA_TRY(need(u, 1));
            if (*u->p < 2 || *u->p > 5)
                return clgqa_fail(CLGQA_ERR_FORMAT, "%s: data.pkl uses pickle protocol %u; clgqa reads "
                                  "protocols 2 to 5 (torch.save's default is 2)", u->label, *u->p);
            u->p++;
            break;
        case 0x95: /* FRAME: a length hint */
            CLGQA_TRY(need(u, 8));
            u->p += 8;
            break;
        case '.': /* STOP */
            CLGQA_TRY(pop(u, out));
            return CLGQA_OK;
        case '(': CLGQA_TRY(push(u, &u->mark)); break;
        case ')': CLGQA_TRY(push(u, new_value(u, P_TUPLE))); break;
        case ']': CLGQA_TRY(push(u, new_value(u, P_LIST))); break;
        case '}': CLGQA_TRY(push(u, new_value(u, P_DICT))); break;
        case 't': CLGQA_TRY(collect_marked(u, P_TUPLE)); break;
        case 'l': CLGQA_TRY(collect_marked(u, P_LIST)); break;
        case 0x85: CLGQA_TRY(tuple_of(u, 1)); break;
        case 0x86: CLGQA_TRY(tuple_of(u, 2)); break;
        case 0x87: CLGQA_TRY(tuple_of(u, 3)); break;
        case 'N': CLGQA_TRY(push(u, new_value(u, P_NONE))); break;
        case 0x88: CLGQA_TRY(push_int(u, P_BOOL, 1)); break;
        case 0x89: CLGQA_TRY(push_int(u, P_BOOL, 0)); break;
        case 'J':
            CLGQA_TRY(need(u, 4));
            u->p += 4;
            CLGQA_TRY(push_int(u, P_INT, (int32_t)le32(arg)));
            break;
        case 'K':
            CLGQA_TRY(need(u, 1));
            u->p += 1;
            CLGQA_TRY(push_int(u, P_INT, arg[0]));
            break;
        case 'M':
            CLGQA_TRY(need(u, 2));
            u->p += 2;
            CLGQA_TRY(push_int(u, P_INT, le16(arg)));
            break;
        case 0x8a: { /* LONG1: n little-endian two's-complement bytes */
            CLGQA_TRY(need(u, 1));
            size_t n = *u->p++;
            CLGQA_TRY(need(u, n));
            if (n > 8)
                return bad(u, "an integer wider than 64 bits");
            uint64_t x = 0;
            for (size_t i = 0; i < n; i++)
                x |= (uint64_t)u->p[i] << (8 * i);
            if (n > 0 && n < 8 && (u->p[n - 1] & 0x80))
                x |= ~(uint64_t)0 << (8 * n);
            u->p += n;
            CLGQA_TRY(push_int(u, P_INT, (int64_t)x));
            break;
        }
        case 'G': /* BINFLOAT: big-endian double, kept only as a value */
            CLGQA_TRY(need(u, 8));
            u->p += 8;
            CLGQA_TRY(push(u, new_value(u, P_FLOAT)));
            break;
        case 'X': case 'B': /* BINUNICODE, BINBYTES */
            CLGQA_TRY(need(u, 4));
            u->p += 4;
            CLGQA_TRY(push_string(u, le32(arg)));
            break;
        case 0x8c: case 'U': case 'C': /* SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES */
            CLGQA_TRY(need(u, 1));
            u->p += 1;
            CLGQA_TRY(push_string(u, arg[0]));
            break;
        case 'c': { /* GLOBAL "module\nname\n" */
            const unsigned char *nl1 = memchr(u->p, '\n', (size_t)(u->end - u->p));
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)) : NULL;
            if (!nl2 || nl1 - u->p > 200 || nl2 - nl1 > 200)
                return bad(u, "a GLOBAL without its two lines");
            char module[256], name[256];
            snprintf(module, sizeof module, "%.*s", (int)(nl1 - u->p), (const char *)u->p);
            snprintf(name, sizeof name, "%.*s", (int)(nl2 - nl1 - 1), (const char *)nl1 + 1);
            u->p = nl2 + 1;
            CLGQA_TRY(push_global(u, module, name));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            CLGQA_TRY(pop(u, &b));
            CLGQA_TRY(pop(u, &a));
            if (a->kind != P_STRING || b->kind != P_STRING)
                return bad(u, "STACK_GLOBAL without two strings");
            CLGQA_TRY(push_global(u, a->text, b->text));
            break;
        case 'Q': /* BINPERSID */
            CLGQA_TRY(pop(u, &a));
            CLGQA_TRY(persistent_load(u, a));
            break;
        case 'R': CLGQA_TRY(reduce(u)); break;
        case 'b': /* BUILD: only an OrderedDict's attributes (state_dict's _metadata), dropped */
            CLGQA_TRY(pop(u, &a));
            if (u->depth == 0 || u->stack[u->depth - 1]->kind != P_DICT)
                return bad(u, "BUILD on something that is not a dict");
            break;
        case 's':
            CLGQA_TRY(set_items(u, u->depth >= 2 ? u->depth - 2 : 0));
            break;
        case 'u':
            CLGQA_TRY(find_mark(u, &at));
            memmove(u->stack + at, u->stack + at + 1, (u->depth - at - 1) * sizeof *u->stack);
            u->depth--;
            CLGQA_TRY(set_items(u, at));
            break;
        case 'a':
            CLGQA_TRY(pop(u, &a));
            if (u->depth == 0 || u->stack[u->depth - 1]->kind != P_LIST)
                return bad(u, "APPEND to something that is not a list");
            CLGQA_TRY(append_item(u, u->stack[u->depth - 1], a));
            break;
        case 'e':
            CLGQA_TRY(find_mark(u, &at));
            if (at == 0 || u->stack[at - 1]->kind != P_LIST)
                return bad(u, "APPENDS to something that is not a list");
            for (size_t i = at + 1; i < u->depth; i++)
                CLGQA_TRY(append_item(u, u->stack[at - 1], u->stack[i]));
            u->depth = at;
            break;
        case 'q':
            CLGQA_TRY(need(u, 1));
            u->p += 1;
            CLGQA_TRY(memo_put(u, arg[0]));
            break;
        case 'r':
            CLGQA_TRY(need(u, 4));
            u->p += 4;
            CLGQA_TRY(memo_put(u, le32(arg)));
            break;
        case 0x94: CLGQA_TRY(memo_put(u, memoized++)); break;
        case 'h':
            CLGQA_TRY(need(u, 1));
            u->p += 1;
            CLGQA_TRY(memo_get(u, arg[0]));
            break;
        case 'j':
            CLGQA_TRY(need(u, 4));
            u->p += 4;
            CLGQA_TRY(memo_get(u, le32(arg)));
            break;
        default:
            u->p--;
            return clgqa_fail(CLGQA_ERR_FORMAT, "%s: data.pkl byte %zu has pickle opcode 0x%02x, which a "
                              "state_dict does not use: " SAVE_HINT, u->label, (size_t)(u->p - u->start), op);
        }
    }
}

/* ---- from the object to the tensor set ------------------------------------------ */

/* A dict whose every value is a tensor under a string name. */
static int is_state_dict(const pvalue *v) {
    if (v->kind != P_DICT || v->count == 0)
        return 0;
    for (size_t i = 0; i < v->count; i += 2)
        if (v->items[i]->kind != P_STRING || v->items[i + 1]->kind != P_TENSOR)
            return 0;
    return 1;
}

/* The state_dict itself, or one held under a usual key of a training
 * checkpoint's dict. */
static const pvalue *find_state_dict(const pvalue *top) {
    static const char *const keys[] = {"state_dict", "model_state_dict", "model", "module"};
    if (is_state_dict(top))
        return top;
    if (top->kind != P_DICT)
        return NULL;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t i = 0; i < top->count; i += 2)
            if (top->items[i]->kind == P_STRING && !strcmp(top->items[i]->text, keys[k]) &&
                is_state_dict(top->items[i + 1]))
                return top->items[i + 1];
    return NULL;
}

static clgqa_status to_tensor_set(const unpickler *u, const pvalue *dict, zip_archive *zip,
                                  clgqa_tensor_set **out) {
    size_t count = dict->count / 2;
    const char *strip = "module.";
    for (size_t i = 0; i < count && strip; i++)
        if (strncmp(dict->items[2 * i]->text, strip, strlen(strip)))
            strip = NULL;
    clgqa_tensor *tensors = calloc(count, sizeof *tensors);
    if (!tensors)
        return no_memory(u);
    clgqa_status status = CLGQA_OK;
    for (size_t i = 0; i < count && status == CLGQA_OK; i++) {
        const pvalue *name = dict->items[2 * i], *t = dict->items[2 * i + 1];
        clgqa_tensor *st = &tensors[i];
        if (!(st->name = strdup(name->text + (strip ? strlen(strip) : 0))))
            status = no_memory(u);
        st->dtype = t->dtype;
        st->ndim = t->ndim;
        st->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            st->shape[d] = t->shape[d];
            st->numel *= (size_t)t->shape[d];
        }
        st->nbytes = st->numel * clgqa_dtype_size(t->dtype);
        st->data = t->data;
    }
    if (status != CLGQA_OK) {
        for (size_t i = 0; i < count; i++)
            free((char *)tensors[i].name);
        free(tensors);
        return status;
    }
    status = clgqa_tensor_set_adopt(u->label, tensors, count, zip->owned, zip->owned_count, out);
    zip->owned = NULL;
    zip->owned_count = 0;
    free(tensors);
    return status;
}

clgqa_status clgqa_pth_parse(const void *bytes, size_t size, const char *label, clgqa_tensor_set **out) {
    *out = NULL;
    label = label ? label : "(memory)";
    zip_archive zip = {.label = label};
    clgqa_status status = zip_open(&zip, bytes, size);
    const zip_entry *pickle = NULL;
    char prefix[256] = "";
    for (size_t i = 0; i < zip.count && status == CLGQA_OK && !pickle; i++) {
        const char *name = zip.entries[i].name, *slash = strrchr(name, '/');
        if (slash && !strcmp(slash, "/data.pkl") && (size_t)(slash - name) < sizeof prefix - 1) {
            pickle = &zip.entries[i];
            snprintf(prefix, sizeof prefix, "%.*s", (int)(slash - name + 1), name);
        }
    }
    if (status == CLGQA_OK && !pickle)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s is a zip file without data.pkl, not a PyTorch checkpoint: "
                            SAVE_HINT, label);
    if (status == CLGQA_OK) {
        char name[300];
        snprintf(name, sizeof name, "%sbyteorder", prefix);
        const zip_entry *order = zip_find(&zip, name);
        if (order && !(order->size == 6 && !memcmp(order->data, "little", 6)))
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s was saved on a big-endian machine; re-save it on a "
                                "little-endian one", label);
    }
    unpickler u = {.label = label, .zip = &zip, .prefix = prefix};
    pvalue *top = NULL;
    if (status == CLGQA_OK) {
        u.p = u.start = pickle->data;
        u.end = pickle->data + pickle->size;
        status = unpickle(&u, &top);
    }
    const pvalue *dict = status == CLGQA_OK ? find_state_dict(top) : NULL;
    if (status == CLGQA_OK && !dict)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s does not hold a state_dict (a dict of tensors by name): "
                            SAVE_HINT, label);
    if (status == CLGQA_OK)
        status = to_tensor_set(&u, dict, &zip, out);
    free_values(&u);
    zip_free(&zip);
    return status;
}
