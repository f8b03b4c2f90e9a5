/* libclgqa_counter.so: an LD_PRELOAD interposer that counts the OpenCL
 * commands, buffer creations and host waits of the process, whoever makes
 * them (clgqa or CLBlast), and passes every call on to the real OpenCL
 * library. `clgqa bench` re-executes itself with it preloaded and reads the
 * counts around a training step; CLGQA_COUNTER_REPORT=1 prints the totals
 * of any command at exit. */
#define _GNU_SOURCE
#include <CL/cl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "command_counter.h"

static clgqa_command_counts counts;

/* Whether a wait leaves the device work: each queue remembers the event of
 * its last command (NULL when that command gave none). A wait on an event
 * that is not its queue's last has later work queued behind it; a wait on
 * the last one lets the queue run dry. */
enum { MAX_QUEUES = 16 };
static struct { cl_command_queue queue; cl_event last; } queues[MAX_QUEUES];
static pthread_mutex_t queues_lock = PTHREAD_MUTEX_INITIALIZER;

/* The queue's entry (added when new); NULL when the table is full. */
static cl_event *last_event_of(cl_command_queue q) {
    int i = 0;
    while (i < MAX_QUEUES && queues[i].queue && queues[i].queue != q)
        i++;
    if (i == MAX_QUEUES)
        return NULL;
    queues[i].queue = q;
    return &queues[i].last;
}

/* A command was enqueued on `q` (`event`: where its event went, if asked). */
static void note_command(cl_command_queue q, const cl_event *event, cl_int err) {
    if (err != CL_SUCCESS)
        return;
    pthread_mutex_lock(&queues_lock);
    cl_event *last = last_event_of(q);
    if (last)
        *last = event ? *event : NULL;
    pthread_mutex_unlock(&queues_lock);
}

/* Whether every one of the events has a later command queued behind it. */
static int behind_queued_work(cl_uint n, const cl_event *list) {
    static __typeof__(clGetEventInfo) *info;
    if (!info)
        *(void **)&info = dlsym(RTLD_NEXT, "clGetEventInfo");
    int behind = n > 0 && info;
    for (cl_uint k = 0; k < n && behind; k++) {
        cl_command_queue q = NULL; /* NULL for user events: counted as host waits */
        info(list[k], CL_EVENT_COMMAND_QUEUE, sizeof q, &q, NULL);
        pthread_mutex_lock(&queues_lock);
        cl_event *last = q ? last_event_of(q) : NULL;
        behind = last && *last != list[k];
        pthread_mutex_unlock(&queues_lock);
    }
    return behind;
}

/* CLGQA_COUNTER_REPORT: the totals on stderr at exit. */
__attribute__((destructor)) static void report_at_exit(void) {
    if (!getenv("CLGQA_COUNTER_REPORT"))
        return;
    fprintf(stderr,
            "clgqa_counter: kernels %ld transfers %ld other_commands %ld buffers_created %ld "
            "host_waits %ld queued_waits %ld\n",
            counts.kernels, counts.transfers, counts.other_commands, counts.buffers_created,
            counts.host_waits, counts.queued_waits);
}

__attribute__((visibility("default"))) void clgqa_command_counts_read(clgqa_command_counts *out) {
    __atomic_load(&counts.kernels, &out->kernels, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.transfers, &out->transfers, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.other_commands, &out->other_commands, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.buffers_created, &out->buffers_created, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.host_waits, &out->host_waits, __ATOMIC_SEQ_CST);
    __atomic_load(&counts.queued_waits, &out->queued_waits, __ATOMIC_SEQ_CST);
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
    cl_int err = real_(q, k, dims, offset, global, local, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueReadBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                           size_t size, void *ptr, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueReadBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    cl_int err = real_(q, mem, blocking, offset, size, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueWriteBuffer(cl_command_queue q, cl_mem mem, cl_bool blocking, size_t offset,
                            size_t size, const void *ptr, cl_uint n, const cl_event *wait,
                            cl_event *event) {
    REAL(clEnqueueWriteBuffer);
    add(&counts.transfers, 1);
    add(&counts.host_waits, blocking);
    cl_int err = real_(q, mem, blocking, offset, size, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueCopyBuffer(cl_command_queue q, cl_mem src, cl_mem dst, size_t src_offset,
                           size_t dst_offset, size_t size, cl_uint n, const cl_event *wait,
                           cl_event *event) {
    REAL(clEnqueueCopyBuffer);
    add(&counts.transfers, 1);
    cl_int err = real_(q, src, dst, src_offset, dst_offset, size, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueFillBuffer(cl_command_queue q, cl_mem mem, const void *pattern,
                           size_t pattern_size, size_t offset, size_t size, cl_uint n,
                           const cl_event *wait, cl_event *event) {
    REAL(clEnqueueFillBuffer);
    add(&counts.transfers, 1);
    cl_int err = real_(q, mem, pattern, pattern_size, offset, size, n, wait, event);
    note_command(q, event, err);
    return err;
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
    void *mapped = real_(q, mem, blocking, flags, offset, size, n, wait, event, err);
    note_command(q, event, mapped ? CL_SUCCESS : CL_INVALID_OPERATION);
    return mapped;
}

cl_int clEnqueueUnmapMemObject(cl_command_queue q, cl_mem mem, void *ptr, cl_uint n,
                               const cl_event *wait, cl_event *event) {
    REAL(clEnqueueUnmapMemObject);
    add(&counts.transfers, 1);
    cl_int err = real_(q, mem, ptr, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                   cl_event *event) {
    REAL(clEnqueueMarkerWithWaitList);
    add(&counts.other_commands, 1);
    cl_int err = real_(q, n, wait, event);
    note_command(q, event, err);
    return err;
}

cl_int clEnqueueBarrierWithWaitList(cl_command_queue q, cl_uint n, const cl_event *wait,
                                    cl_event *event) {
    REAL(clEnqueueBarrierWithWaitList);
    add(&counts.other_commands, 1);
    cl_int err = real_(q, n, wait, event);
    note_command(q, event, err);
    return err;
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
    int behind = behind_queued_work(n, events);
    add(&counts.queued_waits, behind);
    add(&counts.host_waits, !behind);
    return real_(n, events);
}
