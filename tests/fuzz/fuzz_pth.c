/* libFuzzer target: arbitrary bytes through the PyTorch .pth reader (zip
 * container and pickle subset). Whatever parses must also be safe to use, so
 * every accepted file has each tensor read back through every accessor
 * (views outside the file or an inflated entry would trip ASan). */
#include <stdint.h>
#include <stdlib.h>

#include "clgqa/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clgqa_safetensors *file;
    if (clgqa_pth_parse(data, size, "fuzz", &file) != CLGQA_OK)
        return 0;
    for (size_t i = 0; i < clgqa_safetensors_count(file); i++) {
        const clgqa_safetensor *t = clgqa_safetensors_at(file, i);
        if (clgqa_safetensors_find(file, t->name) != t)
            abort(); /* lookup must agree with enumeration */
        if (t->numel > (1u << 20))
            continue;
        float *f = malloc(t->numel * sizeof *f + 1);
        int64_t *i64 = malloc(t->numel * sizeof *i64 + 1);
        if (f && i64) {
            clgqa_safetensors_read_f32(file, t->name, f, t->numel);
            clgqa_safetensors_read_i64(file, t->name, i64, t->numel);
        }
        free(f);
        free(i64);
    }
    clgqa_safetensors_close(file);
    return 0;
}
