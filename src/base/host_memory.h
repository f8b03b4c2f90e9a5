/* What the host can still give this process: the kernel's estimate of
 * memory available without swapping (MemAvailable in /proc/meminfo), and,
 * under an address-space limit (ulimit -v, RLIMIT_AS), the room left below
 * it. The memory check before a run compares its estimate with these. */
#ifndef CLGQA_HOST_MEMORY_H
#define CLGQA_HOST_MEMORY_H

#include <stddef.h>

typedef struct clgqa_host_memory {
    size_t available_bytes;     /* MemAvailable; 0 when /proc/meminfo cannot be read */
    size_t address_limit_bytes; /* RLIMIT_AS; 0 when unlimited */
    size_t address_used_bytes;  /* this process's address space now (VmSize) */
} clgqa_host_memory;

void clgqa_host_memory_query(clgqa_host_memory *out);

/* The address-space limit in bytes (RLIMIT_AS), 0 when there is none. */
size_t clgqa_address_space_limit(void);

#endif
