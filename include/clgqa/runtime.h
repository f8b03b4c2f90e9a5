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

/* Which code paths the kernels take. CPU devices (PoCL) run a work-group's
 * work-items as a loop, so they want few work-items per group and
 * contiguous blocks per thread; GPUs want wide, coalesced groups. AUTO
 * follows the device type; forcing GPU is how the GPU paths are tested on
 * PoCL and Oclgrind. */
typedef enum clgqa_device_class {
    CLGQA_CLASS_AUTO = 0,
    CLGQA_CLASS_CPU,
    CLGQA_CLASS_GPU
} clgqa_device_class;
/* The attention kernels: one work-item per row ("rows", the CPU's) or
 * FlashAttention-2 style tiles in local memory ("tiled", the GPU's); AUTO
 * follows the device class. */
typedef enum clgqa_attention_kernel {
    CLGQA_ATTENTION_AUTO = 0,
    CLGQA_ATTENTION_ROWS,
    CLGQA_ATTENTION_TILED
} clgqa_attention_kernel;
/* CLBlast's two GEMM kernels: the direct one (XgemmDirect: one command per
 * product, operands read in place) or the indirect one (Xgemm, after
 * commands that pad and transpose operands into a temporary buffer: faster
 * per product on large ones, more commands). AUTO keeps CLBlast's choice by
 * size (direct while m*n*k < XGEMM_MIN_INDIRECT_SIZE^3, a per-device tuning
 * parameter). */
typedef enum clgqa_gemm_kernel {
    CLGQA_GEMM_AUTO = 0,
    CLGQA_GEMM_DIRECT,
    CLGQA_GEMM_INDIRECT
} clgqa_gemm_kernel;

/* "auto", "cpu", "gpu" / "auto", "rows", "tiled" / "auto", "direct",
 * "indirect": the names the config keys device_class, attention_kernel and
 * gemm_kernel take. The parsers refuse any other name, listing these. */
const char *clgqa_device_class_name(clgqa_device_class c);
const char *clgqa_attention_kernel_name(clgqa_attention_kernel k);
const char *clgqa_gemm_kernel_name(clgqa_gemm_kernel k);
clgqa_status clgqa_device_class_parse(const char *name, clgqa_device_class *out);
clgqa_status clgqa_attention_kernel_parse(const char *name, clgqa_attention_kernel *out);
clgqa_status clgqa_gemm_kernel_parse(const char *name, clgqa_gemm_kernel *out);

/* How to open a device. A zeroed struct (or NULL) is the default: the first
 * GPU (else PoCL's CPU device, else the first device), code paths by the
 * device type, no disk cache. The library reads no environment variable:
 * `clgqa` fills this from CLGQA_DEVICE, CLGQA_DEVICE_CLASS, ... (README,
 * "Environment"). */
typedef struct clgqa_runtime_options {
    /* An index ("0", as `clgqa devices` numbers them), "gpu", "cpu", or a
     * case-insensitive substring of the device's or its platform's name
     * ("Intel(R) OpenCL"); NULL or "": the default. */
    const char *device;
    clgqa_device_class device_class;
    clgqa_attention_kernel attention_kernel;
    clgqa_gemm_kernel gemm_kernel;
    /* A folder for compiled kernel programs, keyed by platform, device,
     * driver, build options and source (created when missing; one that
     * cannot be written only turns the cache off). NULL or "": no cache. */
    const char *cache_dir;
    /* Appended to every program's build options (e.g. -cl-nv-verbose;
     * part of the cache key). At most 256 characters. */
    const char *build_options;
    /* A file that collects the build log of every program built from
     * source (appended to). */
    const char *build_log;
    /* A folder of CLBlast tuner results (*.json) used beside tuning/'s. */
    const char *tuning_dir;
    /* The largest buffer the model allocates, when lower than the device's
     * (the model then splits its buffers; tests use it); 0: the device's. */
    size_t max_alloc_bytes;
    /* Split-K of the weight gradients (docs/design.md): 0 decides per
     * product (on GPU device classes only: split a product on CLBlast's
     * indirect kernel whose output is a tile multiple and whose tiles
     * would not fill the device); 1 never splits; N > 1 (at most 1024)
     * splits every block and patch-embedding weight gradient into N row
     * chunks (at most one per k-tile of rows; the classifier head, which
     * reduces over the batch alone, never), how the split is tested on
     * CPUs. Each chunk keeps an out x in partial in the model's memory. */
    size_t gemm_split;
} clgqa_runtime_options;

/* An OpenCL device with its context and queues, and the kernel programs
 * built on it (opaque: the accessors below say what it holds). */
typedef struct clgqa_runtime clgqa_runtime;

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

/* Open the device `options` ask for (NULL: the defaults), with its own
 * context and in-order queue. */
clgqa_status clgqa_runtime_create(const clgqa_runtime_options *options, clgqa_runtime **out);
/* A runtime on an application's own OpenCL objects: clgqa enqueues its work
 * on `queue` (which must be in-order, on `device` in `context`) and creates
 * its transfer queue and buffers in `context`; options->device is ignored.
 * clgqa retains the three objects and releases its references in
 * clgqa_runtime_destroy; the application keeps its own references and
 * releases them itself, after clgqa_runtime_destroy or before, as it likes.
 * clgqa_profile_begin needs a queue created with CL_QUEUE_PROFILING_ENABLE. */
clgqa_status clgqa_runtime_wrap(cl_context context, cl_device_id device, cl_command_queue queue,
                                const clgqa_runtime_options *options, clgqa_runtime **out);
/* Waits for the queues, releases everything the runtime created or retained. */
void clgqa_runtime_destroy(clgqa_runtime *rt);

/* What a runtime holds. The strings live as long as the runtime. */
const char *clgqa_runtime_device_name(const clgqa_runtime *rt);
const char *clgqa_runtime_platform_name(const clgqa_runtime *rt);
const char *clgqa_runtime_driver_version(const clgqa_runtime *rt);
/* Device bytes allocated through clgqa_buffer_create on this runtime so far
 * (clgqa_buffer_release does not subtract; the runtime's own buffers count
 * at their current size). */
size_t clgqa_runtime_allocated_bytes(const clgqa_runtime *rt);
clgqa_device_class clgqa_runtime_device_class(const clgqa_runtime *rt);
clgqa_attention_kernel clgqa_runtime_attention_kernel(const clgqa_runtime *rt);
clgqa_gemm_kernel clgqa_runtime_gemm_kernel(const clgqa_runtime *rt);
/* The CLBlast kernels given tuned parameters (the tuning/ files) after the first
 * GEMM, "" if none. */
const char *clgqa_runtime_clblast_tuning(const clgqa_runtime *rt);
/* The OpenCL objects clgqa works on (owned by the runtime, or retained by it
 * for clgqa_runtime_wrap): an application may enqueue its own work on the
 * queue, in order with clgqa's. */
cl_context clgqa_runtime_context(const clgqa_runtime *rt);
cl_device_id clgqa_runtime_device(const clgqa_runtime *rt);
cl_command_queue clgqa_runtime_queue(const clgqa_runtime *rt);

/* Every device `spec` would match, as `clgqa devices` numbers them, in
 * order (clgqa_runtime_create opens the first): an index matches itself,
 * "gpu" / "cpu" every device of that type, "all" every device, other text
 * every device whose name or platform name contains it; NULL or "" every GPU, or when there is
 * none PoCL's device, else device 0.
 * Fills at most `max` indices; *count 0: no match. */
clgqa_status clgqa_runtime_match_devices(const char *spec, int *indices, int max, int *count);

/* Choose the device-dependent code paths again (clgqa_runtime_create chose
 * them from its options). AUTO resolves as in clgqa_runtime_options. A model
 * must be created after the choice of attention kernel, which lays out its
 * activations. */
clgqa_status clgqa_runtime_choose_paths(clgqa_runtime *rt, clgqa_device_class device_class,
                                        clgqa_attention_kernel attention_kernel,
                                        clgqa_gemm_kernel gemm_kernel);

/* Buffers. Allocation fails cleanly (CLGQA_ERR_OUT_OF_MEMORY, with sizes)
 * when `bytes` exceeds the device's maximum allocation. Reads and writes are
 * blocking; offsets and sizes are in bytes. */
clgqa_status clgqa_buffer_create(clgqa_runtime *rt, size_t bytes, cl_mem *out);
void clgqa_buffer_release(cl_mem *mem);
clgqa_status clgqa_buffer_write(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes,
                                size_t bytes, const void *src);
clgqa_status clgqa_buffer_read(clgqa_runtime *rt, cl_mem mem, size_t offset_bytes,
                               size_t bytes, void *dst);
/* Enqueued, not waited for; n and the views' offsets count floats. Fill
 * sets n floats to value; copy moves n floats between views that must not
 * overlap. */
clgqa_status clgqa_buffer_fill(clgqa_runtime *rt, clgqa_view x, size_t n, float value);
clgqa_status clgqa_buffer_copy(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n);
/* Waits until everything enqueued so far is done. */
clgqa_status clgqa_finish(clgqa_runtime *rt);

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
/* Name of an OpenCL status ("CL_OUT_OF_RESOURCES"). */
const char *clgqa_cl_status_name(cl_int status);

#endif
