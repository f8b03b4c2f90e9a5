/* The embedded kernel sources (generated into the build tree). */
#ifndef CLGQA_KERNEL_SOURCES_H
#define CLGQA_KERNEL_SOURCES_H

typedef struct clgqa_kernel_source {
    const char *family; /* kernels/<family>.cl */
    const char *text;
} clgqa_kernel_source;

/* Terminated by {0, 0}. */
extern const clgqa_kernel_source clgqa_kernel_sources[];
/* Random123 Philox, flattened for OpenCL C; prepended to every program. */
extern const char *const clgqa_kernel_prelude;

#endif
