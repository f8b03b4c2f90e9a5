/* What libclgqa_counter.so (command_counter.c) tells the process it is
 * preloaded into: counts of the OpenCL calls, the record of each kernel
 * launch, and whether it poses PoCL as another device and runs markers in
 * place of kernels. `clgqa bench` preloads it so that CLBlast's own commands
 * are counted with clgqa's, and finds these functions with dlsym. */
#ifndef CLGQA_COMMAND_COUNTER_H
#define CLGQA_COMMAND_COUNTER_H

#include <stddef.h>

typedef struct clgqa_command_counts {
    long kernels;         /* clEnqueueNDRangeKernel */
    long transfers;       /* clEnqueue{Read,Write,Copy,Fill}Buffer, clEnqueue{Map,Unmap}... */
    long other_commands;  /* markers and barriers */
    long buffers_created; /* clCreateBuffer, clCreateSubBuffer */
    long host_waits;      /* clFinish, blocking reads, writes and maps, and clWaitForEvents
                           * on the last command of its queue: the queue runs dry */
    long queued_waits;    /* clWaitForEvents on commands with later ones queued behind
                           * them: the device keeps working while the host waits */
} clgqa_command_counts;

/* The counts so far (the library's exported entry point, found with dlsym). */
typedef void clgqa_command_counts_fn(clgqa_command_counts *out);
#define CLGQA_COMMAND_COUNTS_SYMBOL "clgqa_command_counts_read"

/* One kernel launch as it was enqueued. Launches are numbered from 0 in the
 * order the process enqueued them; the counter keeps the last
 * CLGQA_LAUNCH_RECORD_SIZE. */
typedef struct clgqa_kernel_launch {
    const char *kernel;         /* the kernel's function name (kept by the counter) */
    unsigned dims;
    size_t global[3], local[3]; /* unused dimensions 1; local all 0: left to the driver */
    long work_groups;           /* the product of global / local rounded up; 0 when the
                                 * local size was left to the driver */
} clgqa_kernel_launch;
#define CLGQA_LAUNCH_RECORD_SIZE 65536

/* Copies launches first, first + 1, ... (at most max, none older than the
 * record keeps) into out and returns how many launches the process has made
 * so far; first - the return value is how many were copied when none had
 * been dropped: read(0, NULL, 0) gives the next launch's number. */
typedef long clgqa_kernel_launches_fn(long first, clgqa_kernel_launch *out, long max);
#define CLGQA_KERNEL_LAUNCHES_SYMBOL "clgqa_kernel_launches_read"

/* What the counter does beside counting. */
typedef struct clgqa_counter_mode {
    const char *pose;       /* CLGQA_COUNTER_POSE: the pose's key ("h100"), "" when none */
    const char *posed_name; /* the device name PoCL reports under it, "" when none */
    int markers;            /* CLGQA_COUNTER_MARKERS: kernels are recorded, not run */
} clgqa_counter_mode;
typedef void clgqa_counter_mode_fn(clgqa_counter_mode *out);
#define CLGQA_COUNTER_MODE_SYMBOL "clgqa_counter_mode_read"

/* Environment variables the library reads (README "Benchmarks"):
 *   CLGQA_COUNTER_REPORT=1   the process's totals on stderr at exit (one line,
 *                            "clgqa_counter: kernels N transfers N ..."), so any
 *                            command can be counted, e.g. a `clgqa train` run;
 *   CLGQA_COUNTER_POSE=KEY   PoCL's devices pose as the device of that key in the
 *                            counter's table (h100, mi210, a770): its name, vendor,
 *                            platform, type, limits and vendor attributes; launches
 *                            are checked against the posed limits;
 *   CLGQA_COUNTER_MARKERS=1  each kernel launch is checked against the (posed)
 *                            device's limits, recorded, and replaced by a marker:
 *                            a run shows its plan in seconds and computes nothing;
 *   CLGQA_COUNTER_LAUNCHES=F every launch as a line in file F (name, global and
 *                            local sizes, work-groups), to compare two plans. */

#endif
