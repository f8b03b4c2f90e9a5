/* OpenCL runtime: device enumeration and choice, context and queue, kernel
 * programs built from embedded sources through an on-disk binary cache,
 * buffers and launches. */
#include "clgqa/runtime.h"
#include "hash.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embedded_files.h"
#include "host_memory.h"
#include "runtime_internal.h"

/* Options every program is built with: OpenCL C 1.2, no fast-math (the
 * results must match a float64 reference to ~1e-5). */
static const char build_options[] = "-cl-std=CL1.2";

/* The two parts prepended to every program: the Random123 prelude
 * (embedded as "prelude") and the activation storage macros ("storage"). */
static const char *embedded_part(const char *name) {
    for (const clgqa_embedded_file *f = clgqa_kernel_sources; f->name; f++)
        if (!strcmp(f->name, name))
            return f->text;
    return "";
}
static const char *kernel_prelude(void) { return embedded_part("prelude"); }
static const char *kernel_storage(void) { return embedded_part("storage"); }

/* ---------------------------------------------------------------- errors */

const char *clgqa_cl_status_name(cl_int status) {
    switch (status) {
#define NAME(s) case s: return #s;
    NAME(CL_SUCCESS) NAME(CL_DEVICE_NOT_FOUND) NAME(CL_DEVICE_NOT_AVAILABLE)
    NAME(CL_COMPILER_NOT_AVAILABLE) NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    NAME(CL_OUT_OF_RESOURCES) NAME(CL_OUT_OF_HOST_MEMORY) NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
    NAME(CL_MEM_COPY_OVERLAP) NAME(CL_IMAGE_FORMAT_MISMATCH) NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    NAME(CL_BUILD_PROGRAM_FAILURE) NAME(CL_MAP_FAILURE) NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) NAME(CL_COMPILE_PROGRAM_FAILURE)
    NAME(CL_LINKER_NOT_AVAILABLE) NAME(CL_LINK_PROGRAM_FAILURE) NAME(CL_DEVICE_PARTITION_FAILED)
    NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) NAME(CL_INVALID_VALUE) NAME(CL_INVALID_DEVICE_TYPE)
    NAME(CL_INVALID_PLATFORM) NAME(CL_INVALID_DEVICE) NAME(CL_INVALID_CONTEXT)
    NAME(CL_INVALID_QUEUE_PROPERTIES) NAME(CL_INVALID_COMMAND_QUEUE) NAME(CL_INVALID_HOST_PTR)
    NAME(CL_INVALID_MEM_OBJECT) NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    NAME(CL_INVALID_IMAGE_SIZE) NAME(CL_INVALID_SAMPLER) NAME(CL_INVALID_BINARY)
    NAME(CL_INVALID_BUILD_OPTIONS) NAME(CL_INVALID_PROGRAM) NAME(CL_INVALID_PROGRAM_EXECUTABLE)
    NAME(CL_INVALID_KERNEL_NAME) NAME(CL_INVALID_KERNEL_DEFINITION) NAME(CL_INVALID_KERNEL)
    NAME(CL_INVALID_ARG_INDEX) NAME(CL_INVALID_ARG_VALUE) NAME(CL_INVALID_ARG_SIZE)
    NAME(CL_INVALID_KERNEL_ARGS) NAME(CL_INVALID_WORK_DIMENSION)
    NAME(CL_INVALID_WORK_GROUP_SIZE) NAME(CL_INVALID_WORK_ITEM_SIZE)
    NAME(CL_INVALID_GLOBAL_OFFSET) NAME(CL_INVALID_EVENT_WAIT_LIST) NAME(CL_INVALID_EVENT)
    NAME(CL_INVALID_OPERATION) NAME(CL_INVALID_GL_OBJECT) NAME(CL_INVALID_BUFFER_SIZE)
    NAME(CL_INVALID_MIP_LEVEL) NAME(CL_INVALID_GLOBAL_WORK_SIZE) NAME(CL_INVALID_PROPERTY)
    NAME(CL_INVALID_IMAGE_DESCRIPTOR) NAME(CL_INVALID_COMPILER_OPTIONS)
    NAME(CL_INVALID_LINKER_OPTIONS) NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_UNKNOWN_ERROR";
}

clgqa_status clgqa_fail_cl(cl_int status, const char *call, const char *file, int line) {
    /* `call` is the stringified expression: keep the function name only. */
    int name_len = 0;
    while (call[name_len] && call[name_len] != '(' && call[name_len] != ' ')
        name_len++;
    return clgqa_fail_code(CLGQA_ERR_OPENCL, status, "%.*s failed: %s (%d) at %s:%d", name_len,
                           call, clgqa_cl_status_name(status), status, file, line);
}

/* ------------------------------------------------------ device enumeration */

typedef struct device_slot {
    cl_platform_id platform;
    cl_device_id device;
} device_slot;

/* Whether an OpenCL status says the driver ran out of memory. */
static int out_of_memory_status(cl_int err) {
    return err == CL_OUT_OF_HOST_MEMORY || err == CL_OUT_OF_RESOURCES ||
           err == CL_MEM_OBJECT_ALLOCATION_FAILURE;
}

/* A driver that cannot map its libraries or threads under an address-space
 * limit (ulimit -v) looks to the ICD loader like no driver at all: under
 * such a limit the message blames the limit, not a missing driver. */
static clgqa_status no_platform(cl_int err) {
    size_t limit = clgqa_address_space_limit();
    if (limit)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                          "no OpenCL driver could be loaded within the address-space limit of "
                          "%.0f MiB (ulimit -v): raise the limit (an OpenCL CPU driver such as "
                          "PoCL maps about 1 GiB), or install a driver if there is none",
                          (double)limit / (1 << 20));
    if (out_of_memory_status(err))
        return clgqa_fail_code(CLGQA_ERR_OUT_OF_MEMORY, err,
                               "the OpenCL driver ran out of memory while loading (%s)",
                               clgqa_cl_status_name(err));
    return clgqa_fail(CLGQA_ERR_NO_PLATFORM,
                      "no OpenCL platform found: install an OpenCL driver (on Debian: "
                      "apt-get install pocl-opencl-icd) or check OCL_ICD_VENDORS");
}

/* All devices of all platforms, in platform order; *count 0 is an error. */
static clgqa_status enumerate_devices(device_slot **slots_out, int *count_out) {
    cl_uint platform_count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &platform_count);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || out_of_memory_status(err) ||
        (err == CL_SUCCESS && platform_count == 0))
        return no_platform(err);
    CLGQA_CL(err);
    cl_platform_id *platforms = calloc(platform_count, sizeof *platforms);
    if (!platforms)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    err = clGetPlatformIDs(platform_count, platforms, NULL);
    if (err != CL_SUCCESS) {
        free(platforms);
        return clgqa_fail_cl(err, "clGetPlatformIDs", __FILE__, __LINE__);
    }
    device_slot *slots = NULL;
    int count = 0;
    cl_int device_err = CL_SUCCESS; /* the last failure listing a platform's devices */
    for (cl_uint p = 0; p < platform_count; p++) {
        cl_uint n = 0;
        cl_int listed = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n);
        if (listed != CL_SUCCESS && listed != CL_DEVICE_NOT_FOUND)
            device_err = listed;
        if (listed != CL_SUCCESS || !n)
            continue;
        cl_device_id *ids = calloc(n, sizeof *ids);
        device_slot *grown = realloc(slots, (size_t)(count + (int)n) * sizeof *slots);
        if (!ids || !grown) {
            free(ids);
            free(grown ? grown : slots);
            free(platforms);
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        slots = grown;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n, ids, NULL) == CL_SUCCESS)
            for (cl_uint d = 0; d < n; d++)
                slots[count++] = (device_slot){platforms[p], ids[d]};
        free(ids);
    }
    free(platforms);
    if (count == 0) {
        free(slots);
        size_t limit = clgqa_address_space_limit();
        if (out_of_memory_status(device_err) || (device_err != CL_SUCCESS && limit))
            return clgqa_fail_code(CLGQA_ERR_OUT_OF_MEMORY, device_err,
                                   "the OpenCL driver ran out of memory listing its devices (%s)%s%.0f MiB%s",
                                   clgqa_cl_status_name(device_err),
                                   limit ? ": raise the address-space limit of " : "",
                                   limit ? (double)limit / (1 << 20) : 0.0,
                                   limit ? " (ulimit -v)" : "");
        if (device_err != CL_SUCCESS)
            return clgqa_fail_code(CLGQA_ERR_NO_DEVICE, device_err,
                                   "OpenCL platforms found, but listing their devices failed: %s",
                                   clgqa_cl_status_name(device_err));
        return clgqa_fail(CLGQA_ERR_NO_DEVICE, "OpenCL platforms found, but no device");
    }
    *slots_out = slots;
    *count_out = count;
    return CLGQA_OK;
}

static void device_string(cl_device_id d, cl_device_info what, char *buf, size_t size) {
    buf[0] = 0;
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
    buf[size - 1] = 0;
}

static const char *device_type_name(cl_device_type type) {
    if (type & CL_DEVICE_TYPE_GPU) return "GPU";
    if (type & CL_DEVICE_TYPE_CPU) return "CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    return "other";
}
/* CL_DEVICE_EXTENSIONS (space-separated) lists cl_khr_fp16, as a whole
 * word: the devices precision 16-mixed trains on. */
static int device_has_fp16(cl_device_id device) {
    size_t size = 0;
    char *extensions = NULL;
    int found = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) == CL_SUCCESS && size &&
        (extensions = malloc(size + 1)) &&
        clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, size, extensions, NULL) == CL_SUCCESS) {
        extensions[size] = 0;
        for (char *at = strstr(extensions, "cl_khr_fp16"); at; at = strstr(at + 1, "cl_khr_fp16"))
            if ((at == extensions || at[-1] == ' ') && (at[11] == ' ' || at[11] == 0))
                found = 1;
    }
    free(extensions);
    return found;
}


clgqa_status clgqa_list_devices(FILE *out) {
    device_slot *slots;
    int count;
    CLGQA_TRY(enumerate_devices(&slots, &count));
    for (int i = 0; i < count; i++) {
        char platform[256], name[256], version[128], driver[128];
        cl_device_type type = 0;
        cl_uint units = 0;
        cl_ulong global = 0, local = 0, max_alloc = 0;
        size_t max_wg = 0;
        clGetPlatformInfo(slots[i].platform, CL_PLATFORM_NAME, sizeof platform, platform, NULL);
        platform[sizeof platform - 1] = 0;
        device_string(slots[i].device, CL_DEVICE_NAME, name, sizeof name);
        device_string(slots[i].device, CL_DEVICE_VERSION, version, sizeof version);
        device_string(slots[i].device, CL_DRIVER_VERSION, driver, sizeof driver);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                        &max_alloc, NULL);
        clGetDeviceInfo(slots[i].device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg,
                        NULL);
        fprintf(out,
                "[%d] %s\n"
                "    platform: %s\n"
                "    type: %s   version: %s   driver: %s\n"
                "    compute units: %u   global memory: %.1f GiB (max allocation %.1f GiB)"
                "   local memory: %lu KiB   max work-group size: %zu\n"
                "    precision: %s\n",
                i, name, platform, device_type_name(type), version, driver, units,
                (double)global / (1 << 30), (double)max_alloc / (1 << 30),
                (unsigned long)(local / 1024), max_wg,
                device_has_fp16(slots[i].device) ? "32, 16-mixed (cl_khr_fp16)"
                                                 : "32 (no cl_khr_fp16: 16-mixed unavailable)");
    }
    free(slots);
    return CLGQA_OK;
}

static int contains_ignore_case(const char *haystack, const char *needle) {
    size_t n = strlen(needle);
    for (; *haystack; haystack++) {
        size_t i = 0;
        while (i < n && haystack[i] &&
               tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

/* Whether device i of slots matches a non-empty `spec` (see runtime.h). */
static int device_matches(const device_slot *slots, int i, const char *spec) {
    char *end;
    long index = strtol(spec, &end, 10);
    if (*end == 0 && end != spec)
        return index == i;
    if (!strcmp(spec, "all"))
        return 1;
    cl_device_type type = 0;
    clGetDeviceInfo(slots[i].device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    if (!strcmp(spec, "gpu"))
        return (type & CL_DEVICE_TYPE_GPU) != 0;
    if (!strcmp(spec, "cpu"))
        return (type & CL_DEVICE_TYPE_CPU) != 0;
    char name[256], platform[256] = "";
    device_string(slots[i].device, CL_DEVICE_NAME, name, sizeof name);
    clGetPlatformInfo(slots[i].platform, CL_PLATFORM_NAME, sizeof platform, platform, NULL);
    platform[sizeof platform - 1] = 0;
    /* The platform's name too: a CPU runtime names its device after the
     * processor, so "Intel(R) OpenCL" or "Portable" is how one tells Intel's
     * runtime from PoCL on the same processor. */
    return contains_ignore_case(name, spec) || contains_ignore_case(platform, spec);
}

/* Indices into slots of the devices `spec` matches, in order (see
 * clgqa_runtime_match_devices); returns how many, at most max. Without a
 * spec: every GPU; without one, PoCL's device (the CPU implementation
 * clgqa's CPU paths and shipped tuning are measured on, whatever order the
 * ICD loader lists the platforms in); without that, device 0. */
static int match_devices(const device_slot *slots, int count, const char *spec, int *indices,
                         int max) {
    int found = 0;
    int by_default = !spec || !*spec;
    for (int i = 0; i < count && found < max; i++)
        if (by_default ? device_matches(slots, i, "gpu") : device_matches(slots, i, spec))
            indices[found++] = i;
    for (int i = 0; by_default && found == 0 && i < count && max > 0; i++)
        if (device_matches(slots, i, "Portable Computing Language"))
            indices[found++] = i;
    if (by_default && found == 0 && max > 0)
        indices[found++] = 0;
    return found;
}

/* ----------------------------------------------------------- binary cache */

/* The options' cache folder, "" when none or unusable (the runtime then
 * always builds from source). */
static void init_cache_dir(clgqa_runtime *rt, const char *wanted) {
    char dir[sizeof rt->cache_dir];
    rt->cache_dir[0] = 0;
    if (!wanted || !*wanted || strlen(wanted) >= sizeof dir)
        return;
    snprintf(dir, sizeof dir, "%s", wanted);
    /* Create the folder and its parent; a failure just disables the cache. */
    char parent[sizeof dir];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdir(parent, 0755);
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return;
    if (access(dir, W_OK | X_OK) != 0)
        return;
    snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s", dir);
}

/* The text's bytes, then a separator between fields. */
static uint64_t hash_field(uint64_t hash, const char *text) {
    static const unsigned char separator = 0xff;
    return clgqa_fnv1a(clgqa_fnv1a(hash, text, strlen(text)), &separator, 1);
}

static void cache_path(const clgqa_runtime *rt, const char *name, const char *source,
                       const char *options, char *path, size_t size) {
    uint64_t key = CLGQA_FNV1A_START;
    key = hash_field(key, rt->platform_name);
    key = hash_field(key, rt->device_name);
    key = hash_field(key, rt->driver_version);
    key = hash_field(key, options);
    key = hash_field(key, kernel_prelude());
    key = hash_field(key, kernel_storage());
    key = hash_field(key, source);
    snprintf(path, size, "%s/%s-%016llx.bin", rt->cache_dir, name, (unsigned long long)key);
}

static cl_program load_cached_binary(clgqa_runtime *rt, const char *path, const char *options) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    cl_program program = NULL;
    unsigned char *binary = NULL;
    long size = 0;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (binary = malloc((size_t)size)) && fread(binary, 1, (size_t)size, f) == (size_t)size) {
        size_t length = (size_t)size;
        const unsigned char *binaries[1] = {binary};
        cl_int binary_status, err;
        program = clCreateProgramWithBinary(rt->context, 1, &rt->device, &length, binaries,
                                            &binary_status, &err);
        if (err != CL_SUCCESS || binary_status != CL_SUCCESS ||
            clBuildProgram(program, 1, &rt->device, options, NULL, NULL) != CL_SUCCESS) {
            if (program)
                clReleaseProgram(program);
            program = NULL; /* stale or foreign binary: rebuild from source */
        }
    }
    free(binary);
    fclose(f);
    return program;
}

/* Best effort: a cache that cannot be written is simply not used. */
static void store_cached_binary(cl_program program, const char *path) {
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS || size == 0)
        return;
    unsigned char *binary = malloc(size);
    if (!binary)
        return;
    unsigned char *binaries[1] = {binary};
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL) ==
        CL_SUCCESS) {
        char tmp[1200];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            int ok = fwrite(binary, 1, size, f) == size;
            ok = (fclose(f) == 0) && ok;
            if (!ok || rename(tmp, path) != 0)
                remove(tmp);
        }
    }
    free(binary);
}

/* ------------------------------------------------------------- programs */

struct clgqa_program_entry {
    const char *family; /* also the profiling label of its kernels */
    char defines[128];  /* the variant's -D options, "" for the plain family */
    cl_program program;
    int kernel_count;
    char **kernel_names;
    cl_kernel *kernels;
};

/* For looking at the compiler's work on a new device: the options'
 * build_options are appended to every program's build options (e.g.
 * -cl-nv-verbose for NVIDIA's register and spill counts; they are part of
 * the binary cache's key) and build_log collects the log of every build
 * from source. */
static void append_build_log(const clgqa_runtime *rt, cl_program program, const char *name,
                             const char *options) {
    FILE *f = rt->build_log[0] ? fopen(rt->build_log, "a") : NULL;
    if (!f)
        return;
    size_t log_size = 0;
    clGetProgramBuildInfo(program, rt->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = malloc(log_size + 1);
    if (log && clGetProgramBuildInfo(program, rt->device, CL_PROGRAM_BUILD_LOG, log_size, log,
                                     NULL) == CL_SUCCESS) {
        log[log_size] = 0;
        fprintf(f, "== %s.cl on %s, options: %s\n%s\n", name, rt->device_name, options,
                log);
    }
    free(log);
    fclose(f);
}

/* clgqa_build_program with `standard` (NULL: build_options' -cl-std=CL1.2)
 * and `defines` in the build options. */
static clgqa_status build_program(clgqa_runtime *rt, const char *name, const char *source,
                                  const char *standard, const char *defines, cl_program *out) {
    char options[sizeof build_options + 130 + sizeof rt->build_options];
    if ((size_t)snprintf(options, sizeof options, "%s %s %s", standard ? standard : build_options,
                         defines, rt->build_options) >= sizeof options)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "the build options are too long: %s %s", defines,
                          rt->build_options);
    char path[1200] = "";
    if (rt->cache_dir[0]) {
        cache_path(rt, name, source, options, path, sizeof path);
        cl_program cached = load_cached_binary(rt, path, options);
        if (cached) {
            *out = cached;
            return CLGQA_OK;
        }
    }
    const char *parts[3] = {kernel_prelude(), kernel_storage(), source};
    cl_int err;
    cl_program program = clCreateProgramWithSource(rt->context, 3, parts, NULL, &err);
    CLGQA_CL(err);
    err = clBuildProgram(program, 1, &rt->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t log_size = 0;
        clGetProgramBuildInfo(program, rt->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
        char *log = malloc(log_size + 1);
        if (log) {
            log[0] = 0;
            clGetProgramBuildInfo(program, rt->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
            log[log_size] = 0;
        }
        clgqa_fail(CLGQA_ERR_BUILD, "building %s.cl for %s failed (%s):\n%s", name,
                   rt->device_name, clgqa_cl_status_name(err), log ? log : "(no build log)");
        free(log);
        clReleaseProgram(program);
        return CLGQA_ERR_BUILD;
    }
    append_build_log(rt, program, name, options);
    if (path[0])
        store_cached_binary(program, path);
    *out = program;
    return CLGQA_OK;
}

clgqa_status clgqa_build_program(clgqa_runtime *rt, const char *name, const char *source,
                                 cl_program *out) {
    return build_program(rt, name, source, NULL, "", out);
}

clgqa_status clgqa_build_program_options(clgqa_runtime *rt, const char *name, const char *source,
                                         const char *standard, const char *defines,
                                         cl_program *out) {
    return build_program(rt, name, source, standard, defines, out);
}

static clgqa_status find_program(clgqa_runtime *rt, const char *family, const char *defines,
                                 clgqa_program_entry **out) {
    if (strlen(defines) >= sizeof rt->programs[0].defines)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s.cl: build options '%s' too long",
                          family, defines);
    for (int i = 0; i < rt->program_count; i++)
        if (!strcmp(rt->programs[i].family, family) && !strcmp(rt->programs[i].defines, defines)) {
            *out = &rt->programs[i];
            return CLGQA_OK;
        }
    const clgqa_embedded_file *src = clgqa_kernel_sources;
    while (src->name && (strcmp(src->name, family) || !strcmp(family, "prelude") ||
                         !strcmp(family, "storage")))
        src++;
    if (!src->name)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "no embedded kernel family '%s'", family);
    cl_program program;
    CLGQA_TRY(build_program(rt, family, src->text, NULL, defines, &program));
    clgqa_program_entry *grown =
        realloc(rt->programs, (size_t)(rt->program_count + 1) * sizeof *grown);
    if (!grown) {
        clReleaseProgram(program);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    rt->programs = grown;
    clgqa_program_entry *entry = &rt->programs[rt->program_count++];
    *entry = (clgqa_program_entry){src->name, "", program, 0, NULL, NULL};
    snprintf(entry->defines, sizeof entry->defines, "%s", defines);
    *out = entry;
    return CLGQA_OK;
}

clgqa_status clgqa_kernel(clgqa_runtime *rt, const char *family, const char *kernel_name,
                          cl_kernel *out) {
    return clgqa_kernel_variant(rt, family, "", kernel_name, out);
}

clgqa_status clgqa_kernel_variant(clgqa_runtime *rt, const char *family, const char *defines,
                                  const char *kernel_name, cl_kernel *out) {
    clgqa_program_entry *entry = NULL;
    CLGQA_TRY(find_program(rt, family, defines, &entry));
    for (int i = 0; i < entry->kernel_count; i++)
        if (!strcmp(entry->kernel_names[i], kernel_name)) {
            *out = entry->kernels[i];
            return CLGQA_OK;
        }
    cl_int err;
    cl_kernel kernel = clCreateKernel(entry->program, kernel_name, &err);
    if (err != CL_SUCCESS)
        return clgqa_fail_code(CLGQA_ERR_OPENCL, err, "clCreateKernel(%s) in %s.cl failed: %s",
                               kernel_name, family, clgqa_cl_status_name(err));
    int n = entry->kernel_count;
    char **names = realloc(entry->kernel_names, (size_t)(n + 1) * sizeof *names);
    if (names)
        entry->kernel_names = names;
    cl_kernel *kernels = realloc(entry->kernels, (size_t)(n + 1) * sizeof *kernels);
    if (kernels)
        entry->kernels = kernels;
    char *name_copy = strdup(kernel_name);
    if (!names || !kernels || !name_copy) {
        free(name_copy);
        clReleaseKernel(kernel);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    entry->kernel_names[n] = name_copy;
    entry->kernels[n] = kernel;
    entry->kernel_count = n + 1;
    *out = kernel;
    return CLGQA_OK;
}

/* ------------------------------------------------------------- runtime */

clgqa_status clgqa_runtime_match_devices(const char *spec, int *indices, int max, int *count) {
    device_slot *slots;
    int slot_count;
    CLGQA_TRY(enumerate_devices(&slots, &slot_count));
    *count = match_devices(slots, slot_count, spec, indices, max);
    free(slots);
    return CLGQA_OK;
}

/* The device's names and limits into rt (rt->platform and rt->device set). */
static clgqa_status query_device(clgqa_runtime *rt) {
    clGetPlatformInfo(rt->platform, CL_PLATFORM_NAME, sizeof rt->platform_name,
                      rt->platform_name, NULL);
    rt->platform_name[sizeof rt->platform_name - 1] = 0;
    device_string(rt->device, CL_DEVICE_NAME, rt->device_name, sizeof rt->device_name);
    device_string(rt->device, CL_DEVICE_VERSION, rt->device_version, sizeof rt->device_version);
    device_string(rt->device, CL_DRIVER_VERSION, rt->driver_version, sizeof rt->driver_version);
    clGetDeviceInfo(rt->device, CL_DEVICE_TYPE, sizeof rt->device_type, &rt->device_type, NULL);
    clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof rt->max_work_group_size,
                    &rt->max_work_group_size, NULL);
    clGetDeviceInfo(rt->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof rt->compute_units,
                    &rt->compute_units, NULL);
    clGetDeviceInfo(rt->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof rt->device_max_alloc_bytes,
                    &rt->device_max_alloc_bytes, NULL);
    rt->max_alloc_bytes = rt->device_max_alloc_bytes;
    clGetDeviceInfo(rt->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof rt->global_mem_bytes,
                    &rt->global_mem_bytes, NULL);
    clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof rt->local_mem_bytes,
                    &rt->local_mem_bytes, NULL);
    cl_uint align_bits = 0;
    clGetDeviceInfo(rt->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits,
                    NULL);
    rt->base_align_bytes = align_bits / 8;
    rt->has_fp16 = device_has_fp16(rt->device);
    return CLGQA_OK;
}

/* The options a runtime keeps (copied: the caller's strings need not
 * outlive the call), checked. */
static clgqa_status take_options(clgqa_runtime *rt, const clgqa_runtime_options *o) {
    const char *fields[3] = {o->build_options, o->build_log, o->tuning_dir};
    char *copies[3] = {rt->build_options, rt->build_log, rt->tuning_dir};
    const size_t sizes[3] = {sizeof rt->build_options, sizeof rt->build_log,
                             sizeof rt->tuning_dir};
    static const char *const names[3] = {"build_options", "build_log", "tuning_dir"};
    for (int i = 0; i < 3; i++) {
        const char *value = fields[i] ? fields[i] : "";
        if (strlen(value) >= sizes[i])
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "runtime option %s is too long (at most %zu "
                              "characters): %s", names[i], sizes[i] - 1, value);
        snprintf(copies[i], sizes[i], "%s", value);
    }
    /* A lower limit splits the model's buffers, as a driver that caps one
     * allocation at a quarter of memory would (how the split is tested). */
    if (o->max_alloc_bytes && o->max_alloc_bytes < 4096)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "runtime option max_alloc_bytes %zu is below 4096", o->max_alloc_bytes);
    if (o->max_alloc_bytes && o->max_alloc_bytes < rt->max_alloc_bytes)
        rt->max_alloc_bytes = o->max_alloc_bytes;
    if (o->gemm_split > 1024)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "runtime option gemm_split %zu is above 1024 chunks", o->gemm_split);
    rt->gemm_split = o->gemm_split;
    init_cache_dir(rt, o->cache_dir);
    return CLGQA_OK;
}

/* What create and wrap share once the context and queue exist: the
 * options, the transfer queue and the code paths. Destroys rt on failure. */
static clgqa_status finish_runtime(clgqa_runtime *rt, const clgqa_runtime_options *options,
                                   clgqa_runtime **out) {
    static const clgqa_runtime_options defaults;
    if (!options)
        options = &defaults;
    clgqa_status s = take_options(rt, options);
    if (s == CLGQA_OK)
        s = clgqa_runtime_choose_paths(rt, options->device_class, options->attention_kernel,
                                       options->gemm_kernel);
    if (s != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return s;
    }
    cl_int err;
    rt->transfer_queue = clCreateCommandQueue(rt->context, rt->device, 0, &err);
    if (err != CL_SUCCESS) {
        s = clgqa_fail_code(CLGQA_ERR_OPENCL, err, "creating a transfer queue on %s failed: %s",
                            rt->device_name, clgqa_cl_status_name(err));
        clgqa_runtime_destroy(rt);
        return s;
    }
    *out = rt;
    return CLGQA_OK;
}

clgqa_status clgqa_runtime_create(const clgqa_runtime_options *options, clgqa_runtime **out) {
    *out = NULL;
    const char *spec = options ? options->device : NULL;
    device_slot *slots;
    int count;
    CLGQA_TRY(enumerate_devices(&slots, &count));
    int chosen;
    if (match_devices(slots, count, spec, &chosen, 1) == 0) {
        free(slots);
        return clgqa_fail(CLGQA_ERR_NO_DEVICE,
                          "no OpenCL device matches '%s' (give an index, 'gpu', 'cpu' or part "
                          "of a device name; `clgqa devices` lists them)",
                          spec ? spec : "");
    }
    clgqa_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        free(slots);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    rt->platform = slots[chosen].platform;
    rt->device = slots[chosen].device;
    rt->device_index = chosen;
    free(slots);

    clgqa_status s = query_device(rt);
    if (s != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return s;
    }
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)rt->platform, 0};
    rt->context = clCreateContext(props, 1, &rt->device, NULL, NULL, &err);
    if (err == CL_SUCCESS)
        rt->queue = clCreateCommandQueue(rt->context, rt->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        s = clgqa_fail_code(CLGQA_ERR_OPENCL, err, "creating a context and queue on %s failed: %s",
                            rt->device_name, clgqa_cl_status_name(err));
        clgqa_runtime_destroy(rt);
        return s;
    }
    rt->queue_profiling = 1;
    return finish_runtime(rt, options, out);
}

clgqa_status clgqa_runtime_wrap(cl_context context, cl_device_id device, cl_command_queue queue,
                                const clgqa_runtime_options *options, clgqa_runtime **out) {
    *out = NULL;
    if (!context || !device || !queue)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_runtime_wrap needs a context, a device "
                                                 "and a queue");
    cl_context queue_context;
    cl_device_id queue_device;
    cl_command_queue_properties properties;
    CLGQA_CL(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof queue_context, &queue_context,
                                   NULL));
    CLGQA_CL(clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof queue_device, &queue_device,
                                   NULL));
    CLGQA_CL(clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof properties, &properties,
                                   NULL));
    if (queue_context != context || queue_device != device)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_runtime_wrap: the queue belongs to another context or device");
    if (properties & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_runtime_wrap: the queue must be in-order "
                                                 "(clgqa relies on the order of its commands)");
    clgqa_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    rt->device = device;
    rt->device_index = -1;
    clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof rt->platform, &rt->platform, NULL);
    /* Where `clgqa devices` lists this device, its index. */
    device_slot *slots;
    int count;
    if (enumerate_devices(&slots, &count) == CLGQA_OK) {
        for (int i = 0; i < count; i++)
            if (slots[i].device == device)
                rt->device_index = i;
        free(slots);
    }
    clRetainContext(context);
    rt->context = context;
    clRetainCommandQueue(queue);
    rt->queue = queue;
    rt->queue_profiling = (properties & CL_QUEUE_PROFILING_ENABLE) != 0;
    clgqa_status s = query_device(rt);
    if (s != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return s;
    }
    return finish_runtime(rt, options, out);
}

const char *clgqa_runtime_device_name(const clgqa_runtime *rt) { return rt->device_name; }
int clgqa_runtime_has_fp16(const clgqa_runtime *rt) { return rt->has_fp16; }
const char *clgqa_runtime_platform_name(const clgqa_runtime *rt) { return rt->platform_name; }
const char *clgqa_runtime_driver_version(const clgqa_runtime *rt) { return rt->driver_version; }
size_t clgqa_runtime_allocated_bytes(const clgqa_runtime *rt) { return rt->allocated_bytes; }
clgqa_device_class clgqa_runtime_device_class(const clgqa_runtime *rt) { return rt->device_class; }
clgqa_attention_kernel clgqa_runtime_attention_kernel(const clgqa_runtime *rt) {
    return rt->attention_kernel;
}
clgqa_gemm_kernel clgqa_runtime_gemm_kernel(const clgqa_runtime *rt) { return rt->gemm_kernel; }
const char *clgqa_runtime_clblast_tuning(const clgqa_runtime *rt) { return rt->clblast_tuning; }
cl_context clgqa_runtime_context(const clgqa_runtime *rt) { return rt->context; }
cl_device_id clgqa_runtime_device(const clgqa_runtime *rt) { return rt->device; }
cl_command_queue clgqa_runtime_queue(const clgqa_runtime *rt) { return rt->queue; }


/* ------------------------------------------------------------- code paths */

/* In enum order. */
static const char *const device_class_names[] = {"auto", "cpu", "gpu"};
static const char *const attention_kernel_names[] = {"auto", "rows", "tiled"};
static const char *const gemm_kernel_names[] = {"auto", "direct", "indirect"};

const char *clgqa_device_class_name(clgqa_device_class c) {
    return (unsigned)c < 3 ? device_class_names[c] : "unknown";
}
const char *clgqa_attention_kernel_name(clgqa_attention_kernel k) {
    return (unsigned)k < 3 ? attention_kernel_names[k] : "unknown";
}
const char *clgqa_gemm_kernel_name(clgqa_gemm_kernel k) {
    return (unsigned)k < 3 ? gemm_kernel_names[k] : "unknown";
}

/* The index of `name` in names[0..3), or a message naming `what`. */
static clgqa_status parse_choice(const char *name, const char *what, const char *const names[3],
                                 int *out) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, names[i])) {
            *out = i;
            return CLGQA_OK;
        }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s '%s' is not one of %s, %s, %s", what,
                      name ? name : "", names[0], names[1], names[2]);
}

clgqa_status clgqa_device_class_parse(const char *name, clgqa_device_class *out) {
    int i = 0;
    CLGQA_TRY(parse_choice(name, "device class", device_class_names, &i));
    *out = (clgqa_device_class)i;
    return CLGQA_OK;
}
clgqa_status clgqa_attention_kernel_parse(const char *name, clgqa_attention_kernel *out) {
    int i = 0;
    CLGQA_TRY(parse_choice(name, "attention kernel", attention_kernel_names, &i));
    *out = (clgqa_attention_kernel)i;
    return CLGQA_OK;
}
clgqa_status clgqa_gemm_kernel_parse(const char *name, clgqa_gemm_kernel *out) {
    int i = 0;
    CLGQA_TRY(parse_choice(name, "GEMM kernel", gemm_kernel_names, &i));
    *out = (clgqa_gemm_kernel)i;
    return CLGQA_OK;
}

clgqa_status clgqa_runtime_choose_paths(clgqa_runtime *rt, clgqa_device_class device_class,
                                        clgqa_attention_kernel attention_kernel,
                                        clgqa_gemm_kernel gemm_kernel) {
    if ((unsigned)device_class > CLGQA_CLASS_GPU ||
        (unsigned)attention_kernel > CLGQA_ATTENTION_TILED ||
        (unsigned)gemm_kernel > CLGQA_GEMM_INDIRECT)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_runtime_choose_paths: a path outside its enum (%d, %d, %d)",
                          (int)device_class, (int)attention_kernel, (int)gemm_kernel);
    rt->device_class = device_class != CLGQA_CLASS_AUTO ? device_class
                       : (rt->device_type & CL_DEVICE_TYPE_CPU) ? CLGQA_CLASS_CPU
                                                                : CLGQA_CLASS_GPU;
    /* auto: the row kernels on CPU devices, tiles on GPUs. On PoCL the rows
     * variant is the faster, measured side by side (`CLGQA_ATTENTION=rows|
     * tiled clgqa bench --schemes gqa,pgqa`, 4 alternating runs, 2 cores
     * shared with other jobs): demo batch 64, fastest gqa step 115 ms vs
     * 338 ms, attention 11-44 vs 66-173 ms of device time per step;
     * ViT-S/16 batch 2 gqa, attention 2.3-2.8 s vs 4.3-5.2 s per step;
     * batch 4 kdgqa, fastest step 14.6 s vs 22.2 s (attention 4.7 vs 11.1 s). */
    rt->attention_kernel = attention_kernel != CLGQA_ATTENTION_AUTO ? attention_kernel
                           : rt->device_class == CLGQA_CLASS_CPU    ? CLGQA_ATTENTION_ROWS
                                                                    : CLGQA_ATTENTION_TILED;
    /* auto stays auto: CLBlast picks per product by size (gemm.c applies the
     * choice before the next GEMM). */
    rt->gemm_kernel = gemm_kernel;
    return CLGQA_OK;
}

void clgqa_runtime_destroy(clgqa_runtime *rt) {
    if (!rt)
        return;
    if (rt->profiler) {
        clgqa_profile_total unused[1];
        int count;
        clgqa_profile_end(rt, unused, 0, &count);
    }
    if (rt->queue)
        clFinish(rt->queue);
    if (rt->transfer_queue)
        clFinish(rt->transfer_queue);
    for (int i = 0; i < rt->program_count; i++) {
        clgqa_program_entry *e = &rt->programs[i];
        for (int k = 0; k < e->kernel_count; k++) {
            clReleaseKernel(e->kernels[k]);
            free(e->kernel_names[k]);
        }
        free(e->kernels);
        free(e->kernel_names);
        clReleaseProgram(e->program);
    }
    free(rt->programs);
    clgqa_buffer_release(&rt->scratch);
    clgqa_buffer_release(&rt->gemm_temp);
    clgqa_gemm_release(rt);
    if (rt->queue)
        clReleaseCommandQueue(rt->queue);
    if (rt->transfer_queue)
        clReleaseCommandQueue(rt->transfer_queue);
    if (rt->context)
        clReleaseContext(rt->context);
    free(rt);
}

/* ------------------------------------------------------------- buffers */

clgqa_status clgqa_buffer_create(clgqa_runtime *rt, size_t bytes, cl_mem *out) {
    *out = NULL;
    if (bytes == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "cannot allocate an empty device buffer");
    if ((cl_ulong)bytes > rt->device_max_alloc_bytes)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                          "device buffer of %.3f GiB exceeds the largest allocation %s allows "
                          "(%.3f GiB): use a smaller model or batch",
                          (double)bytes / (1 << 30), rt->device_name,
                          (double)rt->device_max_alloc_bytes / (1 << 30));
    cl_int err;
    cl_mem mem = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "clCreateBuffer(%zu bytes) failed: %s", bytes,
                          clgqa_cl_status_name(err));
    rt->allocated_bytes += bytes;
    *out = mem;
    return CLGQA_OK;
}

void clgqa_buffer_release(cl_mem *mem) {
    if (*mem)
        clReleaseMemObject(*mem);
    *mem = NULL;
}

clgqa_status clgqa_buffer_write(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes, size_t bytes,
                                const void *src) {
    if (bytes == 0)
        return CLGQA_OK;
    CLGQA_CL(clEnqueueWriteBuffer(rt->queue, mem, CL_TRUE, offset_bytes, bytes, src, 0, NULL,
                                  clgqa_profile_slot(rt, "transfer", 0)));
    return CLGQA_OK;
}

clgqa_status clgqa_buffer_read(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes, size_t bytes,
                               void *dst) {
    if (bytes == 0)
        return CLGQA_OK;
    CLGQA_CL(clEnqueueReadBuffer(rt->queue, mem, CL_TRUE, offset_bytes, bytes, dst, 0, NULL,
                                 clgqa_profile_slot(rt, "transfer", 0)));
    return CLGQA_OK;
}

clgqa_status clgqa_buffer_fill(clgqa_runtime *rt, clgqa_view x, size_t n, float value) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_buffer_fill", "x", x, n, sizeof(float)));
    CLGQA_CL(clEnqueueFillBuffer(rt->queue, x.mem, &value, sizeof value, x.offset * sizeof(float),
                                 n * sizeof(float), 0, NULL, NULL));
    return CLGQA_OK;
}

clgqa_status clgqa_buffer_copy(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_buffer_copy", "dst", dst, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_buffer_copy", "src", src, n, sizeof(float)));
    if (clgqa_views_overlap(dst, sizeof(float), src, sizeof(float), n))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_buffer_copy: source [%zu, %zu) and destination [%zu, %zu) overlap",
                          src.offset, src.offset + n, dst.offset, dst.offset + n);
    CLGQA_CL(clEnqueueCopyBuffer(rt->queue, src.mem, dst.mem, src.offset * sizeof(float),
                                 dst.offset * sizeof(float), n * sizeof(float), 0, NULL, NULL));
    return CLGQA_OK;
}

clgqa_status clgqa_finish(clgqa_runtime *rt) {
    CLGQA_CL(clFinish(rt->queue));
    return CLGQA_OK;
}

/* ------------------------------------------------------------ profiling */

typedef struct profiled_event {
    const char *label; /* static strings: family names, "gemm", "transfer" */
    cl_event event;
    cl_event span_start; /* a marker before a span (its end starts the span), or NULL */
    double flops;
} profiled_event;

struct clgqa_profiler {
    profiled_event *events;
    int count, capacity;
    cl_event span_start; /* marker of an open span */
};

clgqa_status clgqa_profile_begin(clgqa_runtime *rt) {
    if (!rt->queue_profiling)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "profiling needs a queue created with "
                                                 "CL_QUEUE_PROFILING_ENABLE (clgqa_runtime_wrap)");
    if (rt->profiler)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "profiling already active");
    rt->profiler = calloc(1, sizeof *rt->profiler);
    if (!rt->profiler)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    return CLGQA_OK;
}

cl_event *clgqa_profile_slot(clgqa_runtime *rt, const char *label, double flops) {
    clgqa_profiler *p = rt->profiler;
    if (!p)
        return NULL;
    if (p->count == p->capacity) {
        int capacity = p->capacity ? 2 * p->capacity : 1024;
        profiled_event *grown = realloc(p->events, (size_t)capacity * sizeof *grown);
        if (!grown)
            return NULL; /* the command still runs, just unprofiled */
        p->events = grown;
        p->capacity = capacity;
    }
    p->events[p->count] = (profiled_event){label, NULL, NULL, flops};
    return &p->events[p->count++].event;
}

void clgqa_profile_span_begin(clgqa_runtime *rt) {
    clgqa_profiler *p = rt->profiler;
    if (p && !p->span_start &&
        clEnqueueMarkerWithWaitList(rt->queue, 0, NULL, &p->span_start) != CL_SUCCESS)
        p->span_start = NULL;
}

void clgqa_profile_span_end(clgqa_runtime *rt, const char *label, double flops) {
    clgqa_profiler *p = rt->profiler;
    if (!p || !p->span_start)
        return;
    cl_event start = p->span_start;
    p->span_start = NULL;
    cl_event *slot = clgqa_profile_slot(rt, label, flops);
    if (!slot || clEnqueueMarkerWithWaitList(rt->queue, 0, NULL, slot) != CL_SUCCESS) {
        if (slot)
            *slot = NULL;
        clReleaseEvent(start);
        return;
    }
    p->events[p->count - 1].span_start = start;
}

clgqa_status clgqa_profile_end(clgqa_runtime *rt, clgqa_profile_total *totals, int max_totals,
                               int *count) {
    clgqa_profiler *p = rt->profiler;
    *count = 0;
    if (!p)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "profiling was not started");
    rt->profiler = NULL;
    clgqa_status status = clgqa_finish(rt);
    for (int i = 0; i < p->count; i++) {
        cl_event e = p->events[i].event, span_start = p->events[i].span_start;
        if (!e) {
            if (span_start)
                clReleaseEvent(span_start);
            continue;
        }
        /* A span runs from the end of its start marker to the end of its
         * closing marker (in-order queue: everything between them). */
        cl_ulong start = 0, end = 0;
        if (status == CLGQA_OK &&
            clGetEventProfilingInfo(span_start ? span_start : e,
                                    span_start ? CL_PROFILING_COMMAND_END
                                               : CL_PROFILING_COMMAND_START,
                                    sizeof start, &start, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) ==
                CL_SUCCESS) {
            int t = 0;
            while (t < *count && strcmp(totals[t].label, p->events[i].label))
                t++;
            if (t == *count && *count < max_totals) {
                memset(&totals[t], 0, sizeof totals[t]);
                snprintf(totals[t].label, sizeof totals[t].label, "%s", p->events[i].label);
                (*count)++;
            }
            if (t < *count) {
                totals[t].milliseconds += (double)(end - start) * 1e-6;
                totals[t].launches++;
                totals[t].flops += p->events[i].flops;
            }
        }
        clReleaseEvent(e);
        if (span_start)
            clReleaseEvent(span_start);
    }
    if (p->span_start)
        clReleaseEvent(p->span_start);
    free(p->events);
    free(p);
    return status;
}

/* Profiling label of a kernel: the family it was created from, except that
 * the PGQA and GELU kernels get their own labels (benchmarks report them
 * apart from the rest of attention and elementwise). */
static const char *kernel_label(clgqa_runtime *rt, cl_kernel kernel) {
    for (int i = 0; i < rt->program_count; i++)
        for (int k = 0; k < rt->programs[i].kernel_count; k++)
            if (rt->programs[i].kernels[k] == kernel) {
                const char *name = rt->programs[i].kernel_names[k];
                if (!strncmp(name, "pgqa_", 5))
                    return "pgqa";
                if (!strncmp(name, "gelu_", 5))
                    return "gelu";
                return rt->programs[i].family;
            }
    return "other";
}

const char *clgqa_kernel_family(const clgqa_runtime *rt, const char *kernel_name) {
    for (int i = 0; i < rt->program_count; i++)
        for (int k = 0; k < rt->programs[i].kernel_count; k++)
            if (!strcmp(rt->programs[i].kernel_names[k], kernel_name))
                return rt->programs[i].family;
    return NULL;
}

/* ------------------------------------------------------------- launches */

clgqa_status clgqa_set_arg(cl_kernel kernel, cl_uint index, size_t size, const void *value,
                           const char *what) {
    cl_int err = clSetKernelArg(kernel, index, size, value);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        name[sizeof name - 1] = 0;
        return clgqa_fail_code(CLGQA_ERR_OPENCL, err, "clSetKernelArg(%s, %u) failed: %s", name,
                               index, clgqa_cl_status_name(err));
    }
    (void)what;
    return CLGQA_OK;
}

size_t clgqa_work_group_size(clgqa_runtime *rt, cl_kernel kernel, size_t want) {
    size_t kernel_max = 0;
    if (clGetKernelWorkGroupInfo(kernel, rt->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                                 &kernel_max, NULL) != CL_SUCCESS || kernel_max == 0)
        kernel_max = 1;
    size_t limit = want < kernel_max ? want : kernel_max;
    if (limit > rt->max_work_group_size)
        limit = rt->max_work_group_size;
    size_t size = 1;
    while (size * 2 <= limit)
        size *= 2;
    return size;
}

static size_t round_up(size_t n, size_t multiple) {
    return multiple ? (n + multiple - 1) / multiple * multiple : n;
}

static clgqa_status enqueue(clgqa_runtime *rt, cl_kernel kernel, cl_uint dims,
                            const size_t *global, const size_t *local) {
    cl_event *event = rt->profiler ? clgqa_profile_slot(rt, kernel_label(rt, kernel), 0) : NULL;
    cl_int err =
        clEnqueueNDRangeKernel(rt->queue, kernel, dims, NULL, global, local, 0, NULL, event);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        name[sizeof name - 1] = 0;
        return clgqa_fail_code(CLGQA_ERR_OPENCL, err, "clEnqueueNDRangeKernel(%s) failed: %s", name,
                               clgqa_cl_status_name(err));
    }
    return CLGQA_OK;
}

clgqa_status clgqa_launch_1d(clgqa_runtime *rt, cl_kernel kernel, size_t global, size_t local) {
    if (global == 0)
        return CLGQA_OK;
    size_t g = round_up(global, local);
    return enqueue(rt, kernel, 1, &g, local ? &local : NULL);
}

clgqa_status clgqa_launch_2d(clgqa_runtime *rt, cl_kernel kernel, size_t global0, size_t global1,
                             size_t local0, size_t local1) {
    if (global0 == 0 || global1 == 0)
        return CLGQA_OK;
    size_t g[2] = {round_up(global0, local0), round_up(global1, local1)};
    size_t l[2] = {local0, local1};
    return enqueue(rt, kernel, 2, g, (local0 && local1) ? l : NULL);
}
