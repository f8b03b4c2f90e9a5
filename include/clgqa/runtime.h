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
/* CLBlast's two GEMM kernels: the direct one (XgemmDirect: one command per
 * product, operands read in place) or the indirect one (Xgemm, after
 * commands that pad and transpose operands into a temporary buffer: faster
 * per product on large ones, more commands). CLBlast picks by size (auto:
 * direct while m*n*k < XGEMM_MIN_INDIRECT_SIZE^3, a per-device tuning
 * parameter); CLGQA_GEMM or the config key gemm_kernel forces one. */
typedef enum clgqa_gemm_kernel {
    CLGQA_GEMM_DIRECT = 0,
    CLGQA_GEMM_INDIRECT,
    CLGQA_GEMM_AUTO
} clgqa_gemm_kernel;

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

/* Open the device chosen by `spec`: NULL or "" uses $CLGQA_DEVICE, and when
 * that is unset the first GPU, else the first device. A spec is an index
 * ("0"), "gpu", "cpu", or a case-insensitive substring of the device name. */
clgqa_status clgqa_runtime_create(const char *spec, clgqa_runtime **out);
/* A runtime on an application's own OpenCL objects: clgqa enqueues its work
 * on `queue` (which must be in-order, on `device` in `context`) and creates
 * its transfer queue and buffers in `context`. clgqa retains the three
 * objects and releases its references in clgqa_runtime_destroy; the
 * application keeps its own references and releases them itself, after
 * clgqa_runtime_destroy or before, as it likes. clgqa_profile_begin needs a
 * queue created with CL_QUEUE_PROFILING_ENABLE. */
clgqa_status clgqa_runtime_wrap(cl_context context, cl_device_id device, cl_command_queue queue,
                                clgqa_runtime **out);
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
 * "gpu" / "cpu" every device of that type, other text every device whose
 * name contains it; NULL or "" ($CLGQA_DEVICE when set) every GPU, or device
 * 0 when there is none. Fills at most `max` indices; *count 0: no match. */
clgqa_status clgqa_runtime_match_devices(const char *spec, int *indices, int max, int *count);

/* Choose the device-dependent code paths. device_class is "auto", "cpu" or
 * "gpu"; attention_kernel is "auto", "rows" or "tiled"; gemm_kernel is
 * "auto", "direct" or "indirect". NULL, "" or "auto" defers to
 * $CLGQA_DEVICE_CLASS / $CLGQA_ATTENTION / $CLGQA_GEMM, and where those are
 * unset or "auto", class follows the device type, attention follows the
 * class and the GEMMs follow CLBlast (its database or the tuning/ files).
 * clgqa_runtime_create calls it with NULLs; the CLI calls it again with the
 * config keys device_class, attention_kernel and gemm_kernel. A value
 * outside those lists is refused with a message naming it; then rt is
 * unchanged. */
clgqa_status clgqa_runtime_choose_paths(clgqa_runtime *rt, const char *device_class,
                                        const char *attention_kernel, const char *gemm_kernel);
const char *clgqa_device_class_name(clgqa_device_class c);
const char *clgqa_attention_kernel_name(clgqa_attention_kernel k);
const char *clgqa_gemm_kernel_name(clgqa_gemm_kernel k);

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
