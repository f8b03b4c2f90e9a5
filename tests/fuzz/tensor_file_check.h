/* For the fuzz targets of parsers that yield a clgqa_tensor_set (the
 * safetensors and .pth readers): whatever parses must also be safe to use,
 * so every tensor is read back through every accessor and every metadata
 * entry looked up (views outside the file would trip ASan), then the file
 * is closed. */
#ifndef CLGQA_FUZZ_TENSOR_FILE_CHECK_H
#define CLGQA_FUZZ_TENSOR_FILE_CHECK_H

#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

static void check_tensor_file(clgqa_tensor_set *file) {
    for (size_t i = 0; i < clgqa_tensor_set_count(file); i++) {
        const clgqa_tensor *t = clgqa_tensor_set_at(file, i);
        if (clgqa_tensor_set_find(file, t->name) != t)
            abort(); /* lookup must agree with enumeration */
        /* Bounded so a huge declared (but validated) shape stays cheap. */
        if (t->numel > (1u << 20))
            continue;
        float *f = malloc(t->numel * sizeof *f + 1);
        int64_t *i64 = malloc(t->numel * sizeof *i64 + 1);
        int32_t *i32 = malloc(t->numel * sizeof *i32 + 1);
        if (f && i64 && i32) {
            clgqa_tensor_set_read_f32(file, t->name, f, t->numel);
            clgqa_tensor_set_read_i64(file, t->name, i64, t->numel);
            clgqa_tensor_set_read_i32(file, t->name, i32, t->numel);
        }
        free(f);
        free(i64);
        free(i32);
    }
    for (size_t i = 0; i < clgqa_tensor_set_metadata_count(file); i++) {
        const char *key, *value;
        clgqa_tensor_set_metadata_at(file, i, &key, &value);
        if (clgqa_tensor_set_metadata(file, key) != value)
            abort();
    }
    clgqa_tensor_set_close(file);
}

#endif
