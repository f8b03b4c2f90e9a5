/* FNV-1a, 64 bits: the kernel cache's keys and the ranks' weight check. Not
 * for security, only to tell contents apart. */
#ifndef CLGQA_HASH_H
#define CLGQA_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CLGQA_FNV1A_START 14695981039346656037ull

/* `hash` (CLGQA_FNV1A_START for a new one) continued over `size` bytes. */
static inline uint64_t clgqa_fnv1a(uint64_t hash, const void *bytes, size_t size) {
    const unsigned char *p = (const unsigned char *)bytes;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ p[i]) * 1099511628211ull;
    return hash;
}

#endif
