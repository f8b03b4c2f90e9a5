/* MemAvailable, RLIMIT_AS and VmSize; see host_memory.h. */
#include "host_memory.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* The "<name>: <n> kB" line of a /proc file, in bytes; 0 if absent. */
static size_t proc_kilobytes(const char *path, const char *name) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    size_t bytes = 0, name_len = strlen(name);
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (!strncmp(line, name, name_len) && line[name_len] == ':' &&
            sscanf(line + name_len + 1, "%llu", &kib) == 1) {
            bytes = (size_t)kib * 1024;
            break;
        }
    }
    fclose(f);
    return bytes;
}

size_t clgqa_address_space_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return 0;
    return (size_t)limit.rlim_cur;
}

void clgqa_host_memory_query(clgqa_host_memory *out) {
    out->available_bytes = proc_kilobytes("/proc/meminfo", "MemAvailable");
    out->address_limit_bytes = clgqa_address_space_limit();
    out->address_used_bytes = proc_kilobytes("/proc/self/status", "VmSize");
}
