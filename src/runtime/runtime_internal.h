/* The runtime's internals, for the library's own code (launchers, model,
 * trainer), the clgqa program and the tests; not installed. Launchers get
 * their kernels, set arguments and enqueue through these. */
#ifndef CLGQA_RUNTIME_INTERNAL_H
#define CLGQA_RUNTIME_INTERNAL_H

#include <stdint.h>

#include "clgqa/runtime.h"
#include "fail.h"

typedef struct clgqa_program_entry clgqa_program_entry;
typedef struct clgqa_profiler clgqa_profiler;

struct clgqa_runtime {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue; /* in-order */
    int queue_profiling;    /* queue has CL_QUEUE_PROFILING_ENABLE (wrapped ones may not) */
    cl_command_queue transfer_queue; /* in-order: batch uploads overlapping `queue` */
    int device_index;       /* position in `clgqa devices`, -1 if not listed (wrapped) */
    char platform_name[256];
    char device_name[256];
    char device_version[128];
    char driver_version[128];
    cl_device_type device_type;
    int has_fp16;           /* CL_DEVICE_EXTENSIONS lists cl_khr_fp16 (precision 16-mixed) */
    clgqa_device_class device_class;          /* see clgqa_runtime_choose_paths */
    clgqa_attention_kernel attention_kernel; /* likewise */
    clgqa_gemm_kernel gemm_kernel;            /* likewise; gemm.c applies it */
    size_t max_work_group_size;
    cl_uint compute_units;
    cl_ulong max_alloc_bytes;        /* what the model splits its buffers by: the driver's
                                        limit, or the options' max_alloc_bytes when lower */
    cl_ulong device_max_alloc_bytes; /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    cl_ulong global_mem_bytes;
    cl_ulong local_mem_bytes;
    char cache_dir[1024]; /* "" when the binary cache is off or unwritable */
    char build_options[257]; /* clgqa_runtime_options' copies ("" when not given) */
    char build_log[1024];
    char tuning_dir[1024];
    clgqa_program_entry *programs; /* built kernel families, built lazily */
    int program_count;
    clgqa_profiler *profiler; /* non-NULL while clgqa_profile_begin is active */
    size_t allocated_bytes;   /* device bytes allocated through clgqa_buffer_create */
    cl_mem scratch;           /* the ops' partial sums (src/ops/reduce.c), grown, kept */
    size_t scratch_bytes;
    int clblast_tuning_done;  /* tuning files looked at (first GEMM) */
    char clblast_tuning[256]; /* CLBlast kernels given tuned parameters, "" if none */
    cl_mem gemm_temp;         /* CLBlast's temporary buffer, shared by every GEMM (gemm.c) */
    size_t gemm_temp_bytes;
    size_t gemm_tuned_min_indirect; /* XGEMM_MIN_INDIRECT_SIZE from the tuning files,
                                       SIZE_MAX if none set it (gemm.c) */
    size_t gemm_min_indirect;       /* the value this runtime's last product ran with */
    long gemm_direct_calls, gemm_indirect_calls; /* products run by each kernel so far */
    size_t gemm_split;              /* runtime option gemm_split: 0 auto, else the chunks */
    size_t base_align_bytes;        /* CL_DEVICE_MEM_BASE_ADDR_ALIGN: sub-buffer origins */
    struct clgqa_gemm_region *gemm_regions; /* operands' sub-buffers (gemm.c) */
    int gemm_region_count, gemm_region_capacity;
    size_t gemm_tiles[4];           /* clgqa_gemm_tiles_of, once probed */
    int gemm_tiles_known;
};

/* Whether the device has half-precision arithmetic (cl_khr_fp16), which
 * precision 16-mixed needs. PoCL 3.1's CPU device and Oclgrind lack it;
 * NVIDIA's OpenCL driver does not advertise it. */
int clgqa_runtime_has_fp16(const clgqa_runtime *rt);

/* Releases what gemm.c keeps in rt (the operands' sub-buffers). */
void clgqa_gemm_release(clgqa_runtime *rt);


/* The kernel `kernel_name` from the embedded program family `family`
 * (src/ops/<family>.cl), building the program on first use. The runtime owns
 * the returned kernel; it is shared by all callers on this runtime. */
clgqa_status clgqa_kernel(clgqa_runtime *rt, const char *family, const char *kernel_name,
                          cl_kernel *out);
/* The same from the family built with extra build options `defines` (e.g.
 * "-DHEAD_DIM=64"): one program per distinct option string, built on first
 * use and cached like the plain family. */
clgqa_status clgqa_kernel_variant(clgqa_runtime *rt, const char *family, const char *defines,
                                  const char *kernel_name, cl_kernel *out);

/* The family (src/ops/<family>.cl) of a kernel this runtime has created,
 * by the kernel's function name; NULL for any other (CLBlast's). */
const char *clgqa_kernel_family(const clgqa_runtime *rt, const char *kernel_name);

/* Build a program from `source` (with the same prelude and options as the
 * embedded families, through the binary cache). Used for the embedded
 * families and by tests that need a deliberately broken kernel. The caller
 * releases the program. */
clgqa_status clgqa_build_program(clgqa_runtime *rt, const char *name, const char *source,
                                 cl_program *out);
/* The same with `standard` (e.g. "-cl-std=CL3.0 -Werror") in place of the
 * -cl-std=CL1.2 every program is built with, and `defines` after it: the
 * tests build every family under each OpenCL C version a device has. */
clgqa_status clgqa_build_program_options(clgqa_runtime *rt, const char *name, const char *source,
                                         const char *standard, const char *defines,
                                         cl_program *out);

clgqa_status clgqa_set_arg(cl_kernel kernel, cl_uint index, size_t size, const void *value,
                           const char *what);

/* Largest usable work-group size for `kernel` on this device, at most `want`,
 * rounded down to a power of two. */
size_t clgqa_work_group_size(clgqa_runtime *rt, cl_kernel kernel, size_t want);

/* Enqueue a 1-D or 2-D launch; global sizes are rounded up to a multiple of
 * the local size (kernels guard their own bounds). local 0 = let the
 * implementation choose. */
clgqa_status clgqa_launch_1d(clgqa_runtime *rt, cl_kernel kernel, size_t global, size_t local);
clgqa_status clgqa_launch_2d(clgqa_runtime *rt, cl_kernel kernel, size_t global0, size_t global1,
                             size_t local0, size_t local1);

/* The event slot for the next command under `label`: NULL when not profiling.
 * `flops` is the arithmetic that command performs (0 when not counted). */
cl_event *clgqa_profile_slot(clgqa_runtime *rt, const char *label, double flops);
/* For a library call that enqueues several commands with one event or none
 * (CLBlast): markers around it time everything between them. */
void clgqa_profile_span_begin(clgqa_runtime *rt);
void clgqa_profile_span_end(clgqa_runtime *rt, const char *label, double flops);

/* Check an OpenCL call returning cl_int; on failure record "<function> failed:
 * <status>" and return CLGQA_ERR_OPENCL from the enclosing function. */
#define CLGQA_CL(call)                                                  \
    do {                                                                \
        cl_int cl_status_ = (call);                                     \
        if (cl_status_ != CL_SUCCESS)                                   \
            return clgqa_fail_cl(cl_status_, #call, __FILE__, __LINE__); \
    } while (0)
clgqa_status clgqa_fail_cl(cl_int status, const char *call, const char *file, int line);

/* Fails unless `view` holds `count` elements of `elem_bytes` inside its
 * buffer and offset + count fits in a cl_uint. `op` and `name` label the
 * message ("clgqa_add: tensor 'b' ..."). */
static inline clgqa_status clgqa_check_view(const char *op, const char *name, clgqa_view view,
                                            size_t count, size_t elem_bytes) {
    if (!view.mem)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: tensor '%s' has no buffer", op, name);
    if (view.offset > UINT32_MAX || count > UINT32_MAX - view.offset)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: tensor '%s' (offset %zu, %zu elements) exceeds the 2^32-element "
                          "limit of the kernels",
                          op, name, view.offset, count);
    size_t bytes = 0;
    CLGQA_CL(clGetMemObjectInfo(view.mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL));
    if ((view.offset + count) > bytes / elem_bytes)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: tensor '%s' needs elements [%zu, %zu) but its buffer holds %zu",
                          op, name, view.offset, view.offset + count, bytes / elem_bytes);
    return CLGQA_OK;
}

/* Whether n elements of `a` (a_bytes each) and n of `b` (b_bytes each)
 * share a byte of one buffer: an op that reads one after writing the other
 * refuses that. */
static inline int clgqa_views_overlap(clgqa_view a, size_t a_bytes, clgqa_view b,
                                      size_t b_bytes, size_t n) {
    return a.mem == b.mem && a.offset * a_bytes < (b.offset + n) * b_bytes &&
           b.offset * b_bytes < (a.offset + n) * a_bytes;
}

#endif
