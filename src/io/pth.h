/* PyTorch checkpoints (`torch.save(model.state_dict(), path)`, the zip
 * format of torch >= 1.6), read natively.
 *
 * The file is a zip archive holding `<archive>/data.pkl`, a pickle of the
 * state_dict, and `<archive>/data/<key>`, the raw little-endian bytes of each
 * storage. The reader takes stored and deflated entries (zip64 included) and
 * the pickle subset a state_dict uses: protocols 2-5, dicts and
 * collections.OrderedDict, tuples, lists, ints, floats, strings, booleans,
 * None, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
 * persistent ids of torch's typed storages (Float, Half, BFloat16, Double,
 * Long, Int, Short, Char, Byte, Bool). Any other global is refused by name:
 * unpickling never runs anything. The tensors must be contiguous.
 *
 * The object may be the state_dict itself or a dict holding one under
 * "state_dict", "model_state_dict", "model" or "module" (a training script's
 * checkpoint); a "module." prefix on every name (DataParallel) is dropped.
 *
 * The result is an ordinary tensor set (tensor_set.h); tensor_file.c opens
 * .pth files through this reader. */
#ifndef CLGQA_PTH_H
#define CLGQA_PTH_H

#include <stddef.h>

#include "tensor_set.h"

/* 1 when `bytes` start as a zip archive. */
int clgqa_pth_is_zip(const void *bytes, size_t size);
/* 1 when they start as a bare pickle: torch's legacy (pre-1.6) format. */
int clgqa_pth_is_legacy(const void *bytes, size_t size);

/* Parse a zip checkpoint; `label` names it in messages. The tensors point
 * into `bytes` (stored entries) or into memory the set owns (deflated
 * ones): keep the bytes alive and unchanged until clgqa_tensor_set_close.
 * Every failure is one CLGQA_ERR_FORMAT message naming the file and saying
 * what to do. */
clgqa_status clgqa_pth_parse(const void *bytes, size_t size, const char *label,
                             clgqa_tensor_set **out);

#endif
