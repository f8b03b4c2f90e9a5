/* libclgqa_counter.so: an LD_PRELOAD interposer that counts the OpenCL
 * commands, buffer creations and host waits of the process, whoever makes
 * them (clgqa or CLBlast), and passes every call on to the real OpenCL
 * library. `clgqa bench` re-executes itself with it preloaded and reads the
 * counts around a training step. */
#define _GNU_SOURCE
#include <CL/cl.h>
#include <dlfcn.h>

#include "command_counter.h"

static clgqa_command_counts counts;

__attribute__((visibility("default"))) void clgqa_command_counts_read(clgqa_command_counts *out) {
    __atomic_load(&counts.kernels, &out->kernels, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.transfers, &out->transfers, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.other_commands, &out->other_commands, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.buffers_created, &out->buffers_created, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.host_waits, &out->host_waits, __ATOMIC_SEQ_CST);
}

static void add(long *counter, int yes) {
    if (yes)
        __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
}

/* The next definition of the function this wrapper is named after. */
#define REAL(name)                                                           \
    static __typeof__(name) *real_;                                          \
    if (!real_)                                                              \
        *(void **)&real_ = dlsym(RTLD_NEXT, #name);                          \
    if (!real_)                                                              \
        return CL_INVALID_OPERATION

cl_int clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dims, const size_t *offset,
                              const size_t *global, const size_t *local, cl_uint n,
                              const cl_event *wait, cl_event *event) {
    REAL(clEnqueueNDRangeKernel);
    add(&counts.kernels, 1);
    return real_(q, k, dims, offset, global, local, n, wait, event);
}

cl_int clEnqueueReadBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                           size_t size, void *ptr, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueReadBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    return real_(q, mem, blocking, offset, size, ptr, n, wait, event);
}

cl_int clEnqueueWriteBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                            size_t size, const void *ptr, cl_uint n, const cl_event *wait,
                            cl_event *event) {
    REAL(clEnqueueWriteBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    return real_(q, mem, blocking, offset, size, ptr, n, wait, event);
}

cl_int clEnqueueCopyBuffer(cl_command_queue q, cl_mem src, cl_mem dst, size_t src_offset,
                           size_t dst_offset, size_t size, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueCopyBuffer);
    add(&counts.transfers, 1);
    return real_(q, src, dst, src_offset, dst_offset, size, n, wait, event);
}

cl_int clEnqueueFillBuffer(cl_command_queue q, cl_mem mem, const void *pattern,
                           size_t pattern_size, size_t offset, size_t size, cl_uint n,
                           const cl_event *wait, cl_event *event) {
    REAL(clEnqueueFillBuffer);
    add(&counts.transfers, 1);
    return real_(q, mem, pattern, pattern_size, offset, size, n, wait, event);
}

void *clEnqueueMapBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, cl_map_flags flags,
                         size_t offset, size_t size, cl_uint n, const cl_event *wait,
                         cl_event *event, cl_int *err) {
    static __typeof__(clEnqueueMapBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clEnqueueMapBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    return real_(q, mem, blocking, flags, offset, size, n, wait, event, err);
}

cl_int clEnqueueUnmapMemObject(cl_command_queue q, cl_mem mem, void *ptr, cl_uint n,
                               const cl_event *wait, cl_event *event) {
    REAL(clEnqueueUnmapMemObject);
    add(&counts.transfers, 1);
    return real_(q, mem, ptr, n, wait, event);
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                   cl_event *event) {
    REAL(clEnqueueMarkerWithWaitList);
    add(&counts.other_commands, 1);
    return real_(q, n, wait, event);
}

cl_int clEnqueueBarrierWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                    cl_event *event) {
    REAL(clEnqueueBarrierWithWaitList);
    add(&counts.other_commands, 1);
    return real_(q, n, wait, event);
}

cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size, void *host,
                      cl_int *err) {
    static __typeof__(clCreateBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clCreateBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.buffers_created, 1);
    return real_(context, flags, size, host, err);
}

cl_mem clCreateSubBuffer(cl_mem buffer, cl_mem_flags flags, cl_buffer_create_type type,
                         const void *info, cl_int *err) {
    static __typeof__(clCreateSubBuffer) *real_;
    if (!real_)
        *(void **)&real_ = dlsym(RTLD_NEXT, "clCreateSubBuffer");
    if (!real_) {
        if (err)
            *err = CL_INVALID_OPERATION;
        return NULL;
    }
    add(&counts.buffers_created, 1);
    return real_(buffer, flags, type, info, err);
}

cl_int clFinish(cl_command_queue q) {
    REAL(clFinish);
    add(&counts.host_waits, 1);
    return real_(q);
}

cl_int clWaitForEvents(cl_uint n, const cl_event *events) {
    REAL(clWaitForEvents);
    add(&counts.host_waits, 1);
    return real_(n, events);
}
