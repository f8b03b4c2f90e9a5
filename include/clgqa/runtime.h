/* OpenCL runtime: device choice, context and queue, embedded kernel programs
 * with an on-disk binary cache, buffers, and status checking.
 *
 * Every OpenCL status is checked and turned into a clgqa_status whose message
 * names the failing call and the status (e.g. "clCreateBuffer failed:
 * CL_INVALID_BUFFER_SIZE"). */
#ifndef CLGQA_RUNTIME_H
#define CLGQA_RUNTIME_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clgqa/error.h"

typedef struct clgqa_program_entry clgqa_program_entry;
typedef struct clgqa_profiler clgqa_profiler;

/* Which code paths the kernels take. CPU devices (PoCL) run a work-group's
 * work-items as a loop, so they want few work-items per group and
 * contiguous blocks per thread; GPUs want wide, coalesced groups. The class
 * follows the device type unless CLGQA_DEVICE_CLASS or the config key
 * device_class forces it, which is how the GPU paths are tested on PoCL and
 * Oclgrind. */
typedef enum clgqa_device_class { CLGQA_CLASS_CPU = 0, CLGQA_CLASS_GPU } clgqa_device_class;
/* The attention kernels: one work-item per row ("rows", the CPU's) or
 * FlashAttention-2 style tiles in local memory ("tiled", the GPU's). */
typedef enum clgqa_attention_kernel {
    CLGQA_ATTENTION_ROWS = 0,
    CLGQA_ATTENTION_TILED
} clgqa_attention_kernel;

typedef struct clgqa_runtime {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue; /* in-order, profiling enabled */
    cl_command_queue transfer_queue; /* in-order: batch uploads overlapping `queue` */
    int device_index;       /* position in `clgqa devices` */
    char platform_name[256];
    char device_name[256];
    char device_version[128];
    char driver_version[128];
    cl_device_type device_type;
    clgqa_device_class device_class;          /* see clgqa_runtime_choose_paths */
    clgqa_attention_kernel attention_kernel; /* likewise */
    size_t max_work_group_size;
    cl_uint compute_units;
    cl_ulong max_alloc_bytes;        /* what the model splits its buffers by: the driver's
                                        limit, or $CLGQA_MAX_ALLOC_BYTES when lower */
    cl_ulong device_max_alloc_bytes; /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    cl_ulong global_mem_bytes;
    cl_ulong local_mem_bytes;
    char cache_dir[1024]; /* "" when the binary cache is off or unwritable */
    clgqa_program_entry *programs; /* built kernel families, built lazily */
    int program_count;
    clgqa_profiler *profiler; /* non-NULL while clgqa_profile_begin is active */
    size_t allocated_bytes;   /* device bytes allocated through clgqa_buffer_create */
    cl_mem scratch;           /* the ops' partial sums (host/ops/reduce.c), grown, kept */
    size_t scratch_bytes;
    int clblast_tuning_done;  /* tuning files looked at (first GEMM) */
    char clblast_tuning[256]; /* CLBlast kernels given tuned parameters, "" if none */
    cl_mem gemm_temp;         /* CLBlast's temporary buffer, shared by every GEMM (gemm.c) */
    size_t gemm_temp_bytes;
} clgqa_runtime;

/* A typed slice of a device buffer: `offset` counts elements (floats for
 * float tensors, ints for int tensors), never bytes. Kernels take the buffer
 * and the offset as two arguments, so views need no sub-buffer alignment. */
typedef struct clgqa_view {
    cl_mem mem;
    size_t offset;
} clgqa_view;

static inline clgqa_view clgqa_view_at(cl_mem mem, size_t offset) {
    clgqa_view v = {mem, offset};
    return v;
}
static inline clgqa_view clgqa_view_add(clgqa_view v, size_t offset) {
    v.offset += offset;
    return v;
}

/* Print every OpenCL device (index, platform, name, type, versions, compute
 * units, memory, max work-group size) to `out`. */
clgqa_status clgqa_list_devices(FILE *out);

/* Open the device chosen by `spec`: NULL or "" uses $CLGQA_DEVICE, and when
 * that is unset the first GPU, else the first device. A spec is an index
 * ("0"), "gpu", "cpu", or a case-insensitive substring of the device name. */
clgqa_status clgqa_runtime_create(const char *spec, clgqa_runtime **out);
void clgqa_runtime_destroy(clgqa_runtime *rt);

/* Every device `spec` would match, as `clgqa devices` numbers them, in
 * order (clgqa_runtime_create opens the first): an index matches itself,
 * "gpu" / "cpu" every device of that type, other text every device whose
 * name contains it; NULL or "" ($CLGQA_DEVICE when set) every GPU, or device
 * 0 when there is none. Fills at most `max` indices; *count 0: no match. */
clgqa_status clgqa_runtime_match_devices(const char *spec, int *indices, int max, int *count);

/* Choose the device-dependent code paths. device_class is "auto", "cpu" or
 * "gpu"; attention_kernel is "auto", "rows" or "tiled". NULL, "" or "auto"
 * defers to $CLGQA_DEVICE_CLASS / $CLGQA_ATTENTION, and where those are unset
 * or "auto", class follows the device type and attention follows the class.
 * clgqa_runtime_create calls it with NULLs; the CLI calls it again with the
 * config keys device_class and attention_kernel. A value outside those lists
 * is refused with a message naming it; then rt is unchanged. */
clgqa_status clgqa_runtime_choose_paths(clgqa_runtime *rt, const char *device_class,
                                        const char *attention_kernel);
const char *clgqa_device_class_name(clgqa_device_class c);
const char *clgqa_attention_kernel_name(clgqa_attention_kernel k);

/* The kernel `kernel_name` from the embedded program family `family`
 * (kernels/<family>.cl), building the program on first use. The runtime owns
 * the returned kernel; it is shared by all callers on this runtime. */
clgqa_status clgqa_kernel(clgqa_runtime *rt, const char *family, const char *kernel_name,
                          cl_kernel *out);
/* The same from the family built with extra build options `defines` (e.g.
 * "-DHEAD_DIM=64"): one program per distinct option string, built on first
 * use and cached like the plain family. */
clgqa_status clgqa_kernel_variant(clgqa_runtime *rt, const char *family, const char *defines,
                                  const char *kernel_name, cl_kernel *out);

/* Build a program from `source` (with the same prelude and options as the
 * embedded families, through the binary cache). Used for the embedded
 * families and by tests that need a deliberately broken kernel. The caller
 * releases the program. */
clgqa_status clgqa_build_program(clgqa_runtime *rt, const char *name, const char *source,
                                 cl_program *out);

/* Buffers. Allocation fails cleanly (CLGQA_ERR_OUT_OF_MEMORY, with sizes)
 * when `bytes` exceeds the device's maximum allocation. Reads and writes are
 * blocking; offsets and sizes are in bytes. */
clgqa_status clgqa_buffer_create(clgqa_runtime *rt, size_t bytes, cl_mem *out);
void clgqa_buffer_release(cl_mem *mem);
clgqa_status clgqa_buffer_write(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes,
                                size_t bytes, const void *src);
clgqa_status clgqa_buffer_read(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes,
                               size_t bytes, void *dst);
clgqa_status clgqa_finish(clgqa_runtime *rt);

/* Set kernel argument `index` from an lvalue, e.g. CLGQA_ARG(k, 0, view.mem). */
#define CLGQA_ARG(kernel, index, value) \
    clgqa_set_arg((kernel), (index), sizeof(value), &(value), #kernel)
clgqa_status clgqa_set_arg(cl_kernel kernel, cl_uint index, size_t size, const void *value,
                           const char *what);
/* Local memory argument of `bytes`. */
clgqa_status clgqa_set_local_arg(cl_kernel kernel, cl_uint index, size_t bytes);

/* Largest usable work-group size for `kernel` on this device, at most `want`,
 * rounded down to a power of two. */
size_t clgqa_work_group_size(clgqa_runtime *rt, cl_kernel kernel, size_t want);

/* Enqueue a 1-D or 2-D launch; global sizes are rounded up to a multiple of
 * the local size (kernels guard their own bounds). local 0 = let the
 * implementation choose. */
clgqa_status clgqa_launch_1d(clgqa_runtime *rt, cl_kernel kernel, size_t global, size_t local);
clgqa_status clgqa_launch_2d(clgqa_runtime *rt, cl_kernel kernel, size_t global0, size_t global1,
                             size_t local0, size_t local1);

/* Profiling (benchmarks): between begin and end, every kernel launch, GEMM
 * and transfer records an event under a label (the kernel family, "gemm",
 * "transfer"); end waits for the queue and sums device time per label. */
typedef struct clgqa_profile_total {
    char label[32];
    double milliseconds;
    long launches;
    double flops; /* floating-point operations counted under the label (GEMMs) */
} clgqa_profile_total;
clgqa_status clgqa_profile_begin(clgqa_runtime *rt);
/* Fills totals (at most max_totals, sorted by label) and *count. */
clgqa_status clgqa_profile_end(clgqa_runtime *rt, clgqa_profile_total *totals, int max_totals,
                               int *count);
/* The event slot for the next command under `label`: NULL when not profiling.
 * `flops` is the arithmetic that command performs (0 when not counted). */
cl_event *clgqa_profile_slot(clgqa_runtime *rt, const char *label, double flops);
/* For a library call that enqueues several commands with one event or none
 * (CLBlast): markers around it time everything between them. */
void clgqa_profile_span_begin(clgqa_runtime *rt);
void clgqa_profile_span_end(clgqa_runtime *rt, const char *label, double flops);

/* Name of an OpenCL status ("CL_OUT_OF_RESOURCES"). */
const char *clgqa_cl_status_name(cl_int status);

/* Check an OpenCL call returning cl_int; on failure record "<function> failed:
 * <status>" and return CLGQA_ERR_OPENCL from the enclosing function. */
#define CLGQA_CL(call)                                                  \
    do {                                                                \
        cl_int cl_status_ = (call);                                     \
        if (cl_status_ != CL_SUCCESS)                                   \
            return clgqa_fail_cl(cl_status_, #call, __FILE__, __LINE__); \
    } while (0)
clgqa_status clgqa_fail_cl(cl_int status, const char *call, const char *file, int line);

#endif
