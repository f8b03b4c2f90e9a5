/* Counts of the OpenCL calls a process makes, kept by libclgqa_counter.so
 * (command_counter.c), which `clgqa bench` preloads so that CLBlast's own
 * commands are counted with clgqa's. */
#ifndef CLGQA_COMMAND_COUNTER_H
#define CLGQA_COMMAND_COUNTER_H

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

/* With CLGQA_COUNTER_REPORT set, the library prints the process's totals on
 * stderr at exit (one line, "clgqa_counter: kernels N transfers N ..."), so
 * any command can be counted, e.g. a `clgqa train` run. */

#endif
