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

/* Puts this runtime's choice in force for its next product. */
static clgqa_status gemm_path(clgqa_runtime *rt) {
    CLGQA_TRY(clgqa_gemm_apply_tuning(rt));
    struct gemm_device *d;
    CLGQA_TRY(gemm_device_of(rt, &d));
    size_t want = rt->gemm_kernel == CLGQA_GEMM_DIRECT     ? MIN_INDIRECT_ALWAYS_DIRECT
                  : rt->gemm_kernel == CLGQA_GEMM_INDIRECT ? 0
                  : rt->gemm_tuned_min_indirect != SIZE_MAX ? rt->gemm_tuned_min_indirect
                                                            : d->database_min_indirect;
    if (want != d->min_indirect) {
        const char *name = "XGEMM_MIN_INDIRECT_SIZE";
        CLBlastStatusCode code = CLBlastOverrideParameters(rt->device, "GemmRoutine",
                                                           CLBlastPrecisionSingle, 1, &name, &want);
        if (code != CLBlastSuccess)
            return clgqa_fail_code(CLGQA_ERR_CLBLAST, (int)code,
                                   "CLBlastOverrideParameters(GemmRoutine, %s=%zu) failed: %d",
                                   name, want, (int)code);
        d->min_indirect = want;
    }
    rt->gemm_min_indirect = want;
    return CLGQA_OK;
}

/* Counts a product CLBlast has enqueued (status success). */
static void count_path(clgqa_runtime *rt, CLBlastStatusCode status, size_t m, size_t n,
                       size_t k) {
    if (status != CLBlastSuccess)
        return;
    if (runs_direct(m, n, k, rt->gemm_min_indirect))
        rt->gemm_direct_calls++;
    else
        rt->gemm_indirect_calls++;
}

clgqa_gemm_paths clgqa_gemm_paths_taken(const clgqa_runtime *rt) {
    clgqa_gemm_paths p = {rt->gemm_direct_calls, rt->gemm_indirect_calls, rt->gemm_min_indirect};
    return p;
}

/* --------------------------------------------------------------- products */

/* CLBlast's indirect GEMM pads and transposes operands into a temporary
 * buffer, and left to itself allocates one on every call. One buffer per
 * runtime serves every call instead (the in-order queue runs the GEMMs one
 * after another): it grows to the largest call seen, so after a model's
 * first training step no GEMM allocates. Direct-kernel calls need none. */
static clgqa_status gemm_temp_buffer(clgqa_runtime *rt, CLBlastTranspose ta, CLBlastTranspose tb,
                                     size_t m, size_t n, size_t k, const clgqa_view *a,
                                     size_t lda, const clgqa_view *b, size_t ldb,
                                     const clgqa_view *c, size_t ldc) {
    size_t bytes = 0;
    CLGQA_TRY(check_clblast(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, ta, tb, m, n, k,
                                                       a->offset, lda, b->offset, ldb, c->offset,
                                                       ldc, &rt->queue, &bytes),
                            "CLBlastSGemmTempBufferSize", m, n, k));
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
    for (int trans_a = 0; trans_a < 2; trans_a++)
        for (int trans_b = 0; trans_b < 2; trans_b++) {
            size_t need = 0;
            CLGQA_TRY(check_clblast(
                CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor,
                                           trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                                           trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m,
                                           n, k, 0, trans_a ? m : k, 0, trans_b ? k : n, 0, n,
                                           &rt->queue, &need),
                "CLBlastSGemmTempBufferSize", m, n, k));
            if (need > *bytes)
                *bytes = need;
        }
    return CLGQA_OK;
}

clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc) {
    if (m == 0 || n == 0)
        return CLGQA_OK;
    if (k == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_sgemm: k must be positive");
    CLGQA_TRY(gemm_path(rt));
    CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                     tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLGQA_TRY(gemm_temp_buffer(rt, ta, tb, m, n, k, &a, lda, &b, ldb, &c, ldc));
    /* CLBlast may enqueue several kernels (pad, transpose, product): a
     * profiling span covers them all. Operands stay where they are: the
     * direct kernel reads them at their offsets, the indirect one copies
     * them into the temporary buffer only when it must pad or transpose. */
    clgqa_profile_span_begin(rt);
    CLBlastStatusCode status = CLBlastSgemmWithTempBuffer(
        CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha, a.mem, a.offset, lda, b.mem, b.offset, ldb,
        beta, c.mem, c.offset, ldc, &rt->queue, NULL, rt->gemm_temp);
    clgqa_profile_span_end(rt, "gemm", 2.0 * (double)m * (double)n * (double)k);
    count_path(rt, status, m, n, k);
    return check_clblast(status, "CLBlastSgemmWithTempBuffer", m, n, k);
}
