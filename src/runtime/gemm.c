/* Matrix products through CLBlast (row-major, float32): the tuning files,
 * the choice of kernel, one temporary buffer per runtime. */
#include "gemm.h"

#include <cjson/cJSON.h>
#include <clblast_c.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded_files.h"
#include "runtime_internal.h"

static const char *clblast_status_name(CLBlastStatusCode status) {
    switch (status) {
    case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
    case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
    case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
    case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
    case CLBlastInsufficientMemoryTemp: return "CLBlastInsufficientMemoryTemp";
    case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
    default:
        /* The remaining codes are OpenCL status codes. */
        return clgqa_cl_status_name((cl_int)status);
    }
}

static clgqa_status check_clblast(CLBlastStatusCode status, const char *call, size_t m, size_t n,
                                  size_t k) {
    if (status == CLBlastSuccess)
        return CLGQA_OK;
    return clgqa_fail_code(CLGQA_ERR_CLBLAST, (int)status, "%s (m=%zu n=%zu k=%zu) failed: %s (%d)",
                           call, m, n, k, clblast_status_name(status), (int)status);
}

/* ---------------------------------------------------------------- tuning */

#define MAX_TUNED_PARAMETERS 32

/* Whether a tuner result is for this device. Two keys of our own widen the
 * match from the tuned device's exact name. "clgqa_device_match": every
 * device whose name contains that text, or one of a list of texts: a family
 * of parts with one design (H100 SXM, PCIe and NVL, H200, GH200) shares a
 * file. "clgqa_platform": every device of the platform of exactly that name
 * (with clgqa_device_match, those of them that match it too): a CPU
 * runtime names its device after the processor, so Intel's CPU runtime is
 * known by its platform, "Intel(R) OpenCL", whatever the CPU. */
static clgqa_status device_matches(const clgqa_runtime *rt, const char *origin, const cJSON *root,
                                   const char *tuned_device, int *match) {
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(root, "clgqa_device_match");
    const cJSON *platform = cJSON_GetObjectItemCaseSensitive(root, "clgqa_platform");
    *match = 0;
    if (platform && !(cJSON_IsString(platform) && platform->valuestring[0]))
        return clgqa_fail(CLGQA_ERR_FORMAT, "%s: clgqa_platform must be a non-empty string",
                          origin);
    if (platform && strcmp(platform->valuestring, rt->platform_name))
        return CLGQA_OK; /* another platform */
    if (platform && !texts) {
        *match = 1;
        return CLGQA_OK;
    }
    if (!texts) {
        *match = !strcmp(tuned_device, rt->device_name);
        return CLGQA_OK;
    }
    if (cJSON_IsString(texts) && texts->valuestring[0]) {
        *match = strstr(rt->device_name, texts->valuestring) != NULL;
        return CLGQA_OK;
    }
    int count = cJSON_IsArray(texts) ? cJSON_GetArraySize(texts) : 0, valid = count > 0;
    for (int i = 0; i < count && valid; i++) {
        const cJSON *text = cJSON_GetArrayItem(texts, i);
        valid = cJSON_IsString(text) && text->valuestring[0];
        *match |= valid && strstr(rt->device_name, text->valuestring) != NULL;
    }
    if (!valid)
        return clgqa_fail(CLGQA_ERR_FORMAT,
                          "%s: clgqa_device_match must be a non-empty string or a list of them",
                          origin);
    return CLGQA_OK;
}

/* Apply one tuner result (the JSON a clblast_tuner_* program writes) if it is
 * for this device: "device", "precision", "best_kernel" and
 * "best_parameters" ("NAME=value ..."; PRECISION is implied). */
static clgqa_status apply_tuning_json(clgqa_runtime *rt, const char *origin, const char *text) {
    cJSON *root = cJSON_Parse(text);
    clgqa_status status = CLGQA_OK;
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(root, "device");
    const cJSON *precision = cJSON_GetObjectItemCaseSensitive(root, "precision");
    const cJSON *kernel = cJSON_GetObjectItemCaseSensitive(root, "best_kernel");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "best_parameters");
    if (!cJSON_IsString(device) || !cJSON_IsString(precision) || !cJSON_IsString(kernel) ||
        !cJSON_IsString(params)) {
        status = clgqa_fail(CLGQA_ERR_FORMAT,
                            "%s: not a CLBlast tuner result (needs the string fields device, "
                            "precision, best_kernel, best_parameters)",
                            origin);
        goto done;
    }
    int same_device;
    status = device_matches(rt, origin, root, device->valuestring, &same_device);
    if (status != CLGQA_OK || !same_device || strcmp(precision->valuestring, "32"))
        goto done; /* another device or precision */

    char names_text[1024];
    snprintf(names_text, sizeof names_text, "%s", params->valuestring);
    const char *names[MAX_TUNED_PARAMETERS];
    size_t values[MAX_TUNED_PARAMETERS], count = 0;
    for (char *save, *item = strtok_r(names_text, " ", &save); item;
         item = strtok_r(NULL, " ", &save)) {
        char *equals = strchr(item, '='), *end;
        long value = equals ? strtol(equals + 1, &end, 10) : -1;
        if (!equals || *end || value < 0 || count == MAX_TUNED_PARAMETERS) {
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: bad parameter '%s' in best_parameters",
                                origin, item);
            goto done;
        }
        *equals = 0;
        if (!strcmp(item, "PRECISION"))
            continue;
        names[count] = item;
        values[count++] = (size_t)value;
    }
    /* The direct GEMM tuner names its best variant (XgemmDirectTN, ...); the
     * parameters apply to all variants under the name XgemmDirect. */
    const char *target = strncmp(kernel->valuestring, "XgemmDirect", 11) ? kernel->valuestring
                                                                         : "XgemmDirect";
    CLBlastStatusCode code =
        CLBlastOverrideParameters(rt->device, target, CLBlastPrecisionSingle, count, names, values);
    if (code != CLBlastSuccess) {
        status = clgqa_fail_code(CLGQA_ERR_CLBLAST, (int)code,
                                 "%s: CLBlastOverrideParameters(%s) failed: %d", origin, target,
                                 (int)code);
        goto done;
    }
    for (size_t i = 0; i < count && !strcmp(target, "GemmRoutine"); i++)
        if (!strcmp(names[i], "XGEMM_MIN_INDIRECT_SIZE"))
            rt->gemm_tuned_min_indirect = values[i]; /* what auto keeps (gemm_path) */
    size_t used = strlen(rt->clblast_tuning);
    snprintf(rt->clblast_tuning + used, sizeof rt->clblast_tuning - used, "%s%s (%s)",
             used ? ", " : "", target, origin);
done:
    cJSON_Delete(root);
    return status;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    long size;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)size + 1)) && fread(text, 1, (size_t)size, f) == (size_t)size)
        text[size] = 0;
    else {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

static clgqa_status apply_tuning_files(clgqa_runtime *rt) {
    for (const clgqa_embedded_file *f = clgqa_tuning_files; f->name; f++) {
        char origin[128];
        snprintf(origin, sizeof origin, "tuning/%s.json", f->name);
        CLGQA_TRY(apply_tuning_json(rt, origin, f->text));
    }
    /* The user's own tuner results, applied last so they win. */
    const char *dir_path = rt->tuning_dir;
    if (!*dir_path)
        return CLGQA_OK;
    DIR *dir = opendir(dir_path);
    if (!dir)
        return clgqa_fail(CLGQA_ERR_IO, "tuning folder %s: cannot open it", dir_path);
    clgqa_status status = CLGQA_OK;
    for (struct dirent *e; status == CLGQA_OK && (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        char *text = read_text_file(path);
        status = text ? apply_tuning_json(rt, path, text)
                      : clgqa_fail(CLGQA_ERR_IO, "cannot read %s", path);
        free(text);
    }
    closedir(dir);
    return status;
}

/* ------------------------------------------------------------- GEMM path */

/* CLBlast runs a product through its direct kernel while m*n*k <
 * XGEMM_MIN_INDIRECT_SIZE^3 (the parameter of its "GemmRoutine", per
 * device), else through the indirect one. rt->gemm_kernel forces either by
 * overriding that parameter: 2^21, whose cube 2^63 no product reaches, for
 * direct; 0 for indirect. auto keeps CLBlast's choice: the tuning files'
 * value, else its database's. */
#define MIN_INDIRECT_ALWAYS_DIRECT ((size_t)1 << 21)
#define MAX_GEMM_DEVICES 16

/* CLBlast keeps its parameters per process and device, shared by every
 * runtime on that device; so does this table (the library is single-
 * threaded): the database's choice, read before clgqa overrides it, and the
 * value in force (SIZE_MAX: unknown), set again by a runtime that wants
 * another before its product. */
static struct gemm_device {
    cl_device_id device;
    size_t database_min_indirect, min_indirect;
} gemm_devices[MAX_GEMM_DEVICES];
static int gemm_device_count;

static int runs_direct(size_t m, size_t n, size_t k, size_t min_indirect) {
    /* CLBlast's own test (Xgemm::UseDirectKernel), in its arithmetic. */
    unsigned long long s = min_indirect;
    return (unsigned long long)m * n * k < s * s * s;
}

/* XGEMM_MIN_INDIRECT_SIZE as CLBlast has it, read from what it tells:
 * CLBlastSGemmTempBufferSize is 0 for an s^3 product the direct kernel runs
 * and positive for an indirect one whose A sits at an offset (the indirect
 * kernel must copy it). The smallest s that runs indirect is the value. */
static clgqa_status clblast_min_indirect(clgqa_runtime *rt, size_t *out) {
    size_t lo = 1, hi = MIN_INDIRECT_ALWAYS_DIRECT; /* the answer is in [lo, hi] */
    while (lo < hi) {
        size_t s = lo + (hi - lo) / 2, bytes = 0;
        CLGQA_TRY(check_clblast(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor,
                                                           CLBlastTransposeNo, CLBlastTransposeNo,
                                                           s, s, s, 1, s, 0, s, 0, s, &rt->queue,
                                                           &bytes),
                                "CLBlastSGemmTempBufferSize", s, s, s));
        if (bytes)
            hi = s;
        else
            lo = s + 1;
    }
    *out = lo;
    return CLGQA_OK;
}

static clgqa_status gemm_device_of(clgqa_runtime *rt, struct gemm_device **out) {
    for (int i = 0; i < gemm_device_count; i++)
        if (gemm_devices[i].device == rt->device) {
            *out = &gemm_devices[i];
            return CLGQA_OK;
        }
    if (gemm_device_count == MAX_GEMM_DEVICES)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "GEMMs on more than %d devices in one process",
                          MAX_GEMM_DEVICES);
    struct gemm_device *d = &gemm_devices[gemm_device_count];
    CLGQA_TRY(clblast_min_indirect(rt, &d->database_min_indirect));
    d->device = rt->device;
    d->min_indirect = d->database_min_indirect;
    gemm_device_count++;
    *out = d;
    return CLGQA_OK;
}

clgqa_status clgqa_gemm_apply_tuning(clgqa_runtime *rt) {
    if (rt->clblast_tuning_done)
        return CLGQA_OK;
    rt->clblast_tuning_done = 1;
    rt->gemm_tuned_min_indirect = SIZE_MAX;
    /* CLBlast's own GEMM path choice is read before any file overrides it. */
    struct gemm_device *d;
    CLGQA_TRY(gemm_device_of(rt, &d));
    clgqa_status status = apply_tuning_files(rt);
    d->min_indirect = SIZE_MAX; /* a file may have set it: gemm_path sets it again */
    return status;
}

/* XGEMM_MIN_INDIRECT_SIZE as this runtime's GEMM path wants it. */
static size_t wanted_min_indirect(const clgqa_runtime *rt, const struct gemm_device *d) {
    return rt->gemm_kernel == CLGQA_GEMM_DIRECT     ? MIN_INDIRECT_ALWAYS_DIRECT
           : rt->gemm_kernel == CLGQA_GEMM_INDIRECT ? 0
           : rt->gemm_tuned_min_indirect != SIZE_MAX ? rt->gemm_tuned_min_indirect
                                                     : d->database_min_indirect;
}

/* Puts `want` in force on the device (CLBlast keeps it per device). */
static clgqa_status put_min_indirect(clgqa_runtime *rt, struct gemm_device *d, size_t want) {
    if (want == d->min_indirect)
        return CLGQA_OK;
    const char *name = "XGEMM_MIN_INDIRECT_SIZE";
    CLBlastStatusCode code = CLBlastOverrideParameters(rt->device, "GemmRoutine",
                                                       CLBlastPrecisionSingle, 1, &name, &want);
    if (code != CLBlastSuccess)
        return clgqa_fail_code(CLGQA_ERR_CLBLAST, (int)code,
                               "CLBlastOverrideParameters(GemmRoutine, %s=%zu) failed: %d", name,
                               want, (int)code);
    d->min_indirect = want;
    return CLGQA_OK;
}

/* Puts this runtime's choice in force for its next product. */
static clgqa_status gemm_path(clgqa_runtime *rt) {
    CLGQA_TRY(clgqa_gemm_apply_tuning(rt));
    struct gemm_device *d;
    CLGQA_TRY(gemm_device_of(rt, &d));
    size_t want = wanted_min_indirect(rt, d);
    CLGQA_TRY(put_min_indirect(rt, d, want));
    rt->gemm_min_indirect = want;
    return CLGQA_OK;
}

/* Counts a product CLBlast has enqueued (status success), run with
 * XGEMM_MIN_INDIRECT_SIZE `min_indirect`. */
static void count_path(clgqa_runtime *rt, CLBlastStatusCode status, size_t m, size_t n, size_t k,
                       size_t min_indirect) {
    if (status != CLBlastSuccess)
        return;
    if (runs_direct(m, n, k, min_indirect))
        rt->gemm_direct_calls++;
    else
        rt->gemm_indirect_calls++;
}

clgqa_gemm_paths clgqa_gemm_paths_taken(const clgqa_runtime *rt) {
    clgqa_gemm_paths p = {rt->gemm_direct_calls, rt->gemm_indirect_calls, rt->gemm_min_indirect};
    return p;
}

/* ------------------------------------------------- operands read in place */

/* A registered region of a buffer and the sub-buffer that starts there. */
struct clgqa_gemm_region {
    cl_mem buffer;
    size_t offset, floats;
    cl_mem sub;
};

size_t clgqa_gemm_operand_alignment(const clgqa_runtime *rt) {
    size_t floats = rt->base_align_bytes / sizeof(float);
    return floats > 16 ? floats : 16;
}

clgqa_status clgqa_gemm_operand_region(clgqa_runtime *rt, clgqa_view region, size_t floats) {
    size_t bytes = region.offset * sizeof(float);
    if (!region.mem || region.offset == 0 || floats == 0 ||
        (rt->base_align_bytes && bytes % rt->base_align_bytes))
        return CLGQA_OK; /* read in place already, or never */
    if (rt->gemm_region_count == rt->gemm_region_capacity) {
        int capacity = rt->gemm_region_capacity ? 2 * rt->gemm_region_capacity : 64;
        struct clgqa_gemm_region *grown =
            realloc(rt->gemm_regions, (size_t)capacity * sizeof *grown);
        if (!grown)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "GEMM operand regions: out of host memory");
        rt->gemm_regions = grown;
        rt->gemm_region_capacity = capacity;
    }
    cl_buffer_region where = {bytes, floats * sizeof(float)};
    cl_int err;
    cl_mem sub = clCreateSubBuffer(region.mem, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION,
                                   &where, &err);
    if (err != CL_SUCCESS)
        return clgqa_fail_code(CLGQA_ERR_OPENCL, err,
                               "clCreateSubBuffer (%zu floats at float %zu) failed: %s", floats,
                               region.offset, clgqa_cl_status_name(err));
    struct clgqa_gemm_region r = {region.mem, region.offset, floats, sub};
    rt->gemm_regions[rt->gemm_region_count++] = r;
    return CLGQA_OK;
}

void clgqa_gemm_operand_regions_release(clgqa_runtime *rt, cl_mem buffer) {
    int kept = 0;
    for (int i = 0; i < rt->gemm_region_count; i++) {
        if (rt->gemm_regions[i].buffer == buffer)
            clReleaseMemObject(rt->gemm_regions[i].sub);
        else
            rt->gemm_regions[kept++] = rt->gemm_regions[i];
    }
    rt->gemm_region_count = kept;
}

void clgqa_gemm_release(clgqa_runtime *rt) {
    for (int i = 0; i < rt->gemm_region_count; i++)
        clReleaseMemObject(rt->gemm_regions[i].sub);
    free(rt->gemm_regions);
    rt->gemm_regions = NULL;
    rt->gemm_region_count = rt->gemm_region_capacity = 0;
}

/* The operand at `v`, `extent` floats long, as CLBlast should be given it:
 * through the sub-buffer of the registered region that holds it whole and
 * starts nearest before it (at it, ideally), else as it is. */
static clgqa_view operand(const clgqa_runtime *rt, clgqa_view v, size_t extent) {
    const struct clgqa_gemm_region *best = NULL;
    for (int i = 0; i < rt->gemm_region_count; i++) {
        const struct clgqa_gemm_region *r = &rt->gemm_regions[i];
        if (r->buffer == v.mem && v.offset >= r->offset && extent <= r->floats &&
            v.offset - r->offset <= r->floats - extent &&
            (!best || r->offset > best->offset))
            best = r;
    }
    return best ? clgqa_view_at(best->sub, v.offset - best->offset) : v;
}

/* Floats a row-major matrix of `rows` x `cols` with row stride ld spans. */
static size_t matrix_extent(size_t rows, size_t cols, size_t ld) {
    return rows ? (rows - 1) * ld + cols : 0;
}

/* ------------------------------------------------------------ formulation */

/* A product as it goes to CLBlast: C = op(A) op(B) in `layout`. */
typedef struct gemm_form {
    CLBlastLayout layout;
    CLBlastTranspose ta, tb;
    size_t m, n, k;
    clgqa_view a, b, c;
    size_t lda, ldb, ldc;
} gemm_form;

static CLBlastTranspose transpose_of(int yes) {
    return yes ? CLBlastTransposeYes : CLBlastTransposeNo;
}

/* The row-major product (the caller's) and the same product in column
 * major, C^T = op(B)^T op(A)^T: a row-major matrix with row stride ld is its
 * transpose in column major with that leading dimension, so only the
 * operands' roles and the transposes' owners change. Operands reach CLBlast
 * through their regions' sub-buffers. */
static gemm_form row_major_form(const clgqa_runtime *rt, int trans_a, int trans_b, size_t m,
                                size_t n, size_t k, clgqa_view a, size_t lda, clgqa_view b,
                                size_t ldb, clgqa_view c, size_t ldc) {
    gemm_form f = {CLBlastLayoutRowMajor, transpose_of(trans_a), transpose_of(trans_b), m, n, k,
                   a, b, c, lda, ldb, ldc};
    f.a = operand(rt, a, matrix_extent(trans_a ? k : m, trans_a ? m : k, lda));
    f.b = operand(rt, b, matrix_extent(trans_b ? n : k, trans_b ? k : n, ldb));
    f.c = operand(rt, c, matrix_extent(m, n, ldc));
    return f;
}
static gemm_form column_major_form(gemm_form row) {
    gemm_form f = {CLBlastLayoutColMajor, row.tb, row.ta, row.n, row.m, row.k,
                   row.b, row.a, row.c, row.ldb, row.lda, row.ldc};
    return f;
}

/* The temporary buffer CLBlast needs for f, in bytes: 0 when it runs the
 * direct kernel or reads every operand in place. */
static clgqa_status form_temp_bytes(clgqa_runtime *rt, const gemm_form *f, size_t *bytes) {
    *bytes = 0;
    return check_clblast(CLBlastSGemmTempBufferSize(f->layout, f->ta, f->tb, f->m, f->n, f->k,
                                                    f->a.offset, f->lda, f->b.offset, f->ldb,
                                                    f->c.offset, f->ldc, &rt->queue, bytes),
                         "CLBlastSGemmTempBufferSize", f->m, f->n, f->k);
}

/* The form of the two that needs the smaller temporary buffer (the fewer
 * copies), and that buffer's bytes; the caller's row-major one on a tie,
 * which keeps the direct kernel's variant as it was. */
static clgqa_status best_form(clgqa_runtime *rt, const gemm_form *row, gemm_form *out,
                              size_t *bytes) {
    gemm_form column = column_major_form(*row);
    size_t row_bytes, column_bytes;
    CLGQA_TRY(form_temp_bytes(rt, row, &row_bytes));
    CLGQA_TRY(form_temp_bytes(rt, &column, &column_bytes));
    *out = column_bytes < row_bytes ? column : *row;
    *bytes = column_bytes < row_bytes ? column_bytes : row_bytes;
    return CLGQA_OK;
}

/* --------------------------------------------------------------- products */

/* CLBlast's indirect GEMM pads and transposes operands into a temporary
 * buffer, and left to itself allocates one on every call. One buffer per
 * runtime serves every call instead (the in-order queue runs the GEMMs one
 * after another): it grows to the largest call seen, so after a model's
 * first training step no GEMM allocates. Direct-kernel calls need none. */
static clgqa_status gemm_temp_buffer(clgqa_runtime *rt, size_t bytes) {
    if (bytes <= rt->gemm_temp_bytes)
        return CLGQA_OK;
    /* Commands already enqueued keep the old buffer alive until they finish. */
    clgqa_buffer_release(&rt->gemm_temp);
    rt->allocated_bytes -= rt->gemm_temp_bytes;
    rt->gemm_temp_bytes = 0;
    CLGQA_TRY(clgqa_buffer_create(rt, bytes, &rt->gemm_temp));
    rt->gemm_temp_bytes = bytes;
    return CLGQA_OK;
}

size_t clgqa_gemm_temp_bytes(const clgqa_runtime *rt) { return rt->gemm_temp_bytes; }

clgqa_status clgqa_gemm_temp_bytes_for(clgqa_runtime *rt, size_t m, size_t n, size_t k,
                                       size_t *bytes) {
    *bytes = 0;
    CLGQA_TRY(gemm_path(rt));
    /* Every transpose case in row major at offset 0: the column-major form
     * a product may take instead needs no more (it is chosen only when it
     * needs less). */
    for (int trans_a = 0; trans_a < 2; trans_a++)
        for (int trans_b = 0; trans_b < 2; trans_b++) {
            size_t need = 0;
            CLGQA_TRY(check_clblast(
                CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, transpose_of(trans_a),
                                           transpose_of(trans_b), m, n, k, 0, trans_a ? m : k, 0,
                                           trans_b ? k : n, 0, n, &rt->queue, &need),
                "CLBlastSGemmTempBufferSize", m, n, k));
            if (need > *bytes)
                *bytes = need;
        }
    return CLGQA_OK;
}

/* One CLBlast product of form f (temporary buffer sized), in a profiling
 * span that covers the helper kernels it may enqueue. */
static clgqa_status run_form(clgqa_runtime *rt, const gemm_form *f, float alpha, float beta,
                             size_t temp_bytes) {
    CLGQA_TRY(gemm_temp_buffer(rt, temp_bytes));
    clgqa_profile_span_begin(rt);
    CLBlastStatusCode status = CLBlastSgemmWithTempBuffer(
        f->layout, f->ta, f->tb, f->m, f->n, f->k, alpha, f->a.mem, f->a.offset, f->lda, f->b.mem,
        f->b.offset, f->ldb, beta, f->c.mem, f->c.offset, f->ldc, &rt->queue, NULL, rt->gemm_temp);
    clgqa_profile_span_end(rt, "gemm", 2.0 * (double)f->m * (double)f->n * (double)f->k);
    count_path(rt, status, f->m, f->n, f->k, rt->gemm_min_indirect);
    return check_clblast(status, "CLBlastSgemmWithTempBuffer", f->m, f->n, f->k);
}

clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc) {
    if (m == 0 || n == 0)
        return CLGQA_OK;
    if (k == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_sgemm: k must be positive");
    CLGQA_TRY(gemm_path(rt));
    gemm_form row = row_major_form(rt, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc), f;
    size_t temp_bytes;
    CLGQA_TRY(best_form(rt, &row, &f, &temp_bytes));
    return run_form(rt, &f, alpha, beta, temp_bytes);
}

/* ------------------------------------------------------------------ tiles */

/* Whether CLBlast's indirect kernel reads every operand of an m x n x k
 * product in place in one of the two layouts its kernels want: column
 * major with B transposed (GEMMK=0: A and C as they are, B^T), or row major
 * without transposes (GEMMK=1); offsets 0, leading dimensions tight. */
static clgqa_status copies_nothing(clgqa_runtime *rt, int layout, size_t m, size_t n, size_t k,
                                   int *yes) {
    gemm_form f;
    if (layout == 0) {
        gemm_form column = {CLBlastLayoutColMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                            m, n, k, {NULL, 0}, {NULL, 0}, {NULL, 0}, m, n, m};
        f = column;
    } else {
        gemm_form row = {CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                         m, n, k, {NULL, 0}, {NULL, 0}, {NULL, 0}, k, n, n};
        f = row;
    }
    size_t bytes;
    CLGQA_TRY(form_temp_bytes(rt, &f, &bytes));
    *yes = bytes == 0;
    return CLGQA_OK;
}

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}
static size_t lcm(size_t a, size_t b) { return a / gcd(a, b) * b; }

/* Probes the tiles with the indirect kernel in force: the smallest size of
 * each dimension that needs no padding, the others at a size that is a
 * multiple of any tile (2^9 * 3 * 5 * 7). */
static clgqa_status probe_tiles(clgqa_runtime *rt, clgqa_gemm_tiles *t) {
    const size_t big = 512 * 3 * 5 * 7, most = 1024;
    struct gemm_device *d;
    CLGQA_TRY(gemm_device_of(rt, &d));
    CLGQA_TRY(put_min_indirect(rt, d, 0));
    t->m = t->n = t->k = t->rows = 1;
    for (int layout = 0; layout < 2; layout++) {
        int yes;
        CLGQA_TRY(copies_nothing(rt, layout, big, big, big, &yes));
        if (!yes)
            continue;
        size_t *dims[3] = {&t->m, &t->n, &t->k};
        for (int i = 0; i < 3; i++) {
            size_t size = 1;
            for (yes = 0; !yes && size <= most; size += !yes) {
                size_t mnk[3] = {big, big, big};
                mnk[i] = size;
                CLGQA_TRY(copies_nothing(rt, layout, mnk[0], mnk[1], mnk[2], &yes));
            }
            *dims[i] = yes ? size : 1;
        }
        t->rows = lcm(lcm(t->m, t->n), t->k);
        break;
    }
    return gemm_path(rt); /* the runtime's own choice back */
}

clgqa_status clgqa_gemm_tiles_of(clgqa_runtime *rt, clgqa_gemm_tiles *out) {
    if (!rt->gemm_tiles_known) {
        CLGQA_TRY(gemm_path(rt)); /* the tuning files first: they set the tiles */
        clgqa_gemm_tiles t;
        CLGQA_TRY(probe_tiles(rt, &t));
        rt->gemm_tiles[0] = t.m, rt->gemm_tiles[1] = t.n, rt->gemm_tiles[2] = t.k;
        rt->gemm_tiles[3] = t.rows;
        rt->gemm_tiles_known = 1;
    }
    clgqa_gemm_tiles t = {rt->gemm_tiles[0], rt->gemm_tiles[1], rt->gemm_tiles[2],
                          rt->gemm_tiles[3]};
    *out = t;
    return CLGQA_OK;
}

/* ---------------------------------------------------------------- split-K */

#define SPLIT_MOST 64          /* chunks at most (their partials take memory) */
#define SPLIT_GROUPS_PER_UNIT 2 /* work-groups per compute unit that fill it */
#define SPLIT_CHUNK_TILES 4    /* k tiles per chunk at least, in auto */

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

size_t clgqa_gemm_chunk_rows(const clgqa_gemm_tiles *tiles, size_t k, size_t chunks) {
    size_t tk = tiles->k ? tiles->k : 1;
    return ceil_div(k, chunks * tk) * tk;
}

size_t clgqa_gemm_split_plan(const clgqa_gemm_tiles *tiles, size_t compute_units, int indirect,
                             size_t forced, size_t m, size_t n, size_t k) {
    size_t tk = tiles->k ? tiles->k : 1, k_tiles = ceil_div(k, tk);
    if (forced)
        return forced < k_tiles ? forced : k_tiles > 0 ? k_tiles : 1;
    /* The column-major form the product takes: C^T is n x m, in tiles of
     * tiles->m x tiles->n. */
    size_t groups = ceil_div(n, tiles->m ? tiles->m : 1) * ceil_div(m, tiles->n ? tiles->n : 1);
    size_t want = SPLIT_GROUPS_PER_UNIT * (compute_units ? compute_units : 1);
    size_t most = k_tiles / SPLIT_CHUNK_TILES;
    if (most > SPLIT_MOST)
        most = SPLIT_MOST;
    /* Only chunks CLBlast reads in place, in one batched call: their
     * outputs must be tile multiples (the rows are by construction). */
    int in_place = tiles->m && tiles->n && n % tiles->m == 0 && m % tiles->n == 0;
    if (!indirect || !in_place || groups >= want || most < 2)
        return 1;
    size_t fewest = ceil_div(want, groups);
    if (fewest > most)
        return most;
    /* Of the counts up to a quarter more, the one whose chunks pad K least
     * (the operands must hold chunks x chunk rows). */
    size_t best = fewest, best_rows = fewest * clgqa_gemm_chunk_rows(tiles, k, fewest);
    for (size_t s = fewest + 1; s <= fewest + fewest / 4 && s <= most; s++) {
        size_t rows = s * clgqa_gemm_chunk_rows(tiles, k, s);
        if (rows < best_rows)
            best = s, best_rows = rows;
    }
    return best;
}

clgqa_status clgqa_gemm_split_chunks(clgqa_runtime *rt, size_t m, size_t n, size_t k,
                                     size_t *chunks) {
    clgqa_gemm_tiles t;
    *chunks = 1;
    /* auto splits on GPUs only: a CPU device's few compute units are kept
     * busy by the products' tiles, and on PoCL the demo's step took 40 ms
     * with its two small splits against 37 without (fastest of 90 steps). */
    if (rt->gemm_split == 1 || (!rt->gemm_split && rt->device_class != CLGQA_CLASS_GPU))
        return CLGQA_OK;
    CLGQA_TRY(clgqa_gemm_tiles_of(rt, &t));
    CLGQA_TRY(gemm_path(rt));
    int indirect = !runs_direct(m, n, k, rt->gemm_min_indirect);
    *chunks = clgqa_gemm_split_plan(&t, rt->compute_units, indirect, rt->gemm_split, m, n, k);
    return CLGQA_OK;
}

clgqa_status clgqa_sgemm_split(clgqa_runtime *rt, size_t m, size_t n, size_t k, size_t chunks,
                               clgqa_view a, size_t lda, clgqa_view b, size_t ldb,
                               clgqa_view partials) {
    if (chunks <= 1)
        return clgqa_sgemm(rt, 1, 0, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, partials, n);
    clgqa_gemm_tiles t;
    CLGQA_TRY(clgqa_gemm_tiles_of(rt, &t));
    CLGQA_TRY(gemm_path(rt));
    size_t rows = clgqa_gemm_chunk_rows(&t, k, chunks);
    /* The chunks run on the kernel the whole product would: a product large
     * enough for the indirect kernel keeps it in chunks that alone would
     * fall below XGEMM_MIN_INDIRECT_SIZE^3. */
    size_t wanted = rt->gemm_min_indirect, min_indirect = wanted;
    if (!runs_direct(m, n, k, wanted) && runs_direct(m, n, rows, wanted)) {
        struct gemm_device *d;
        CLGQA_TRY(gemm_device_of(rt, &d));
        CLGQA_TRY(put_min_indirect(rt, d, 0));
        min_indirect = rt->gemm_min_indirect = 0; /* counted so (run_form) */
    }
    /* Chunk s: rows [s * rows, (s + 1) * rows) of A and B, partials[s]; in
     * the column-major form, partial^T (n x m) = B_s^T A_s. */
    gemm_form row = row_major_form(rt, 1, 0, m, n, rows, a, lda, b, ldb, partials, n), f;
    row.a = operand(rt, a, matrix_extent(chunks * rows, m, lda));
    row.b = operand(rt, b, matrix_extent(chunks * rows, n, ldb));
    row.c = operand(rt, partials, chunks * m * n);
    f = column_major_form(row);
    size_t temp_bytes = 0;
    /* No early return from here on: the threshold is put back below. */
    clgqa_status status = form_temp_bytes(rt, &f, &temp_bytes);
    if (status == CLGQA_OK && temp_bytes == 0) {
        /* Nothing to copy (or the direct kernel): one batched call, which
         * then allocates nothing. Its indirect kernel takes the batches
         * tight (strides = sizes) at offset 0, as they are here. */
        clgqa_profile_span_begin(rt);
        CLBlastStatusCode code = CLBlastSgemmStridedBatched(
            f.layout, f.ta, f.tb, f.m, f.n, f.k, 1.0f, f.a.mem, f.a.offset, f.lda, rows * f.lda,
            f.b.mem, f.b.offset, f.ldb, rows * f.ldb, 0.0f, f.c.mem, f.c.offset, f.ldc, m * n,
            chunks, &rt->queue, NULL);
        clgqa_profile_span_end(rt, "gemm", 2.0 * (double)m * (double)n * (double)(chunks * rows));
        count_path(rt, code, m, n, rows, min_indirect);
        status = check_clblast(code, "CLBlastSgemmStridedBatched", m, n, rows);
    } else if (status == CLGQA_OK) {
        /* CLBlast would copy: one product per chunk with the shared
         * temporary buffer. */
        for (size_t s = 0; s < chunks && status == CLGQA_OK; s++) {
            gemm_form chunk = f;
            chunk.a.offset += s * rows * f.lda;
            chunk.b.offset += s * rows * f.ldb;
            chunk.c.offset += s * m * n;
            size_t bytes;
            status = form_temp_bytes(rt, &chunk, &bytes);
            if (status == CLGQA_OK)
                status = run_form(rt, &chunk, 1.0f, 0.0f, bytes);
        }
    }
    rt->gemm_min_indirect = wanted; /* what the runtime's own products run with */
    return status;
}
