/* Tensor sets built from another container (host/pth.c), read with the
 * clgqa_safetensors_* functions like a safetensors file. */
#ifndef CLGQA_SAFETENSORS_INTERNAL_H
#define CLGQA_SAFETENSORS_INTERNAL_H

#include "clgqa/safetensors.h"

/* A set of `count` tensors whose names were malloc'ed and whose data lie in
 * caller's bytes or in the `owned` malloc'ed blocks. Takes ownership of the
 * names and of the blocks (also on failure). Refuses duplicate names. */
clgqa_status clgqa_safetensors_adopt(const char *label, const clgqa_safetensor *tensors, size_t count,
                                     void **owned, size_t owned_count, clgqa_safetensors **out);

#endif
