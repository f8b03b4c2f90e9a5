/* Batches onto the device, overlapping compute: the loader's 8-bit pixels
 * and labels are staged in pinned host memory (CL_MEM_ALLOC_HOST_PTR) and
 * copied on the runtime's transfer queue into one of two device slots, while
 * the compute queue still runs the previous step; events order the two
 * queues (the copy into a slot waits until the compute queue is done with
 * the batch that used it before; compute waits for its batch's copy). The
 * model normalises the pixels on the device (clgqa_model_forward_pixels). */
#ifndef CLGQA_BATCH_UPLOAD_H
#define CLGQA_BATCH_UPLOAD_H

#include "clgqa/dataset.h"
#include "clgqa/model.h"
#include "clgqa/runtime.h"

typedef struct clgqa_batch_upload clgqa_batch_upload;

/* Slots for batches of up to max_batch images of the model's shape. */
clgqa_status clgqa_batch_upload_create(clgqa_runtime *rt, const clgqa_model_dims *dims,
                                       int max_batch, clgqa_batch_upload **out);
/* Waits for the copies in flight, then frees everything. */
void clgqa_batch_upload_destroy(clgqa_batch_upload *up);

/* Stage `batch` (which must carry pixels: clgqa_loader_use_pixels) and
 * enqueue its copy. Call it once the previous batch's work is enqueued on
 * the compute queue: it marks the end of that batch's use of its slot.
 * *pixels (uchar, offset in bytes) and *labels (int32) are the device views
 * for the forward pass; the compute queue waits for the copy before any
 * later command. The host waits only when it is two batches ahead of the
 * transfer queue. */
clgqa_status clgqa_batch_upload_next(clgqa_batch_upload *up, const clgqa_batch *batch,
                                     clgqa_view *pixels, clgqa_view *labels);

#endif
