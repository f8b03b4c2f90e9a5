/* The one opener of tensor files (checkpoints, pretrained weights). */
#ifndef CLGQA_TENSOR_FILE_H
#define CLGQA_TENSOR_FILE_H

#include "tensor_set.h"

/* Open and validate a file (memory-mapped, read-only) by its bytes:
 * safetensors, or a PyTorch zip checkpoint (.pth/.pt, pth.h). A legacy
 * (pre-1.6) PyTorch file is refused with how to re-save it. */
clgqa_status clgqa_tensor_file_open(const char *path, clgqa_tensor_set **out);

#endif
