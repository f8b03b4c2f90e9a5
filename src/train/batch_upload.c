/* Batch upload through pinned staging on the transfer queue (see
 * batch_upload.h). Each slot is a pinned staging buffer, mapped once,
 * and a device buffer, both laid out as [labels: max_batch int32, padded to
 * 256 bytes][pixels], so one write moves a batch. */
#include "batch_upload.h"
#include "runtime_internal.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS 2
#define LABELS_BYTES_ALIGN 256

typedef struct upload_slot {
    cl_mem staging; /* CL_MEM_ALLOC_HOST_PTR, mapped for the slot's lifetime */
    void *host;     /* its mapping */
    cl_mem device;
    cl_event copied;   /* the last write into `device` (staging free again) */
    cl_event consumed; /* the compute queue is done with `device`'s batch */
} upload_slot;

struct clgqa_batch_upload {
    clgqa_runtime *rt;
    size_t image_bytes, labels_bytes, slot_bytes;
    int max_batch;
    upload_slot slots[SLOTS];
    int next, last; /* the slot for the next batch; the last one used (-1 none) */
};

static void release_event(cl_event *e) {
    if (*e)
        clReleaseEvent(*e);
    *e = NULL;
}

clgqa_status clgqa_batch_upload_create(clgqa_runtime *rt, const clgqa_model_dims *dims,
                                       int max_batch, clgqa_batch_upload **out) {
    *out = NULL;
    clgqa_batch_upload *up = calloc(1, sizeof *up);
    if (!up)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate the batch upload");
    up->rt = rt;
    up->max_batch = max_batch;
    up->last = -1;
    up->image_bytes = (size_t)dims->in_chans * dims->img_size * dims->img_size;
    up->labels_bytes = ((size_t)max_batch * sizeof(int32_t) + LABELS_BYTES_ALIGN - 1) /
                       LABELS_BYTES_ALIGN * LABELS_BYTES_ALIGN;
    up->slot_bytes = up->labels_bytes + up->image_bytes * (size_t)max_batch;
    clgqa_status status = CLGQA_OK;
    for (int s = 0; s < SLOTS && status == CLGQA_OK; s++) {
        upload_slot *slot = &up->slots[s];
        cl_int err;
        slot->staging = clCreateBuffer(rt->context, CL_MEM_READ_ONLY | CL_MEM_ALLOC_HOST_PTR,
                                       up->slot_bytes, NULL, &err);
        if (err == CL_SUCCESS)
            slot->host = clEnqueueMapBuffer(rt->transfer_queue, slot->staging, CL_TRUE,
                                            CL_MAP_WRITE, 0, up->slot_bytes, 0, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                                "pinned staging of %zu bytes for a batch failed: %s",
                                up->slot_bytes, clgqa_cl_status_name(err));
            break;
        }
        status = clgqa_buffer_create(rt, up->slot_bytes, &slot->device);
    }
    if (status != CLGQA_OK) {
        clgqa_batch_upload_destroy(up);
        return status;
    }
    *out = up;
    return CLGQA_OK;
}

void clgqa_batch_upload_destroy(clgqa_batch_upload *up) {
    if (!up)
        return;
    clFinish(up->rt->transfer_queue);
    for (int s = 0; s < SLOTS; s++) {
        upload_slot *slot = &up->slots[s];
        if (slot->host)
            clEnqueueUnmapMemObject(up->rt->transfer_queue, slot->staging, slot->host, 0, NULL,
                                    NULL);
        release_event(&slot->copied);
        release_event(&slot->consumed);
    }
    clFinish(up->rt->transfer_queue);
    for (int s = 0; s < SLOTS; s++) {
        clgqa_buffer_release(&up->slots[s].staging);
        clgqa_buffer_release(&up->slots[s].device);
    }
    free(up);
}

clgqa_status clgqa_batch_upload_next(clgqa_batch_upload *up, const clgqa_batch *batch,
                                     clgqa_view *pixels, clgqa_view *labels) {
    clgqa_runtime *rt = up->rt;
    if (batch->count < 1 || batch->count > up->max_batch)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "batch of %d images: the upload takes 1 to %d",
                          batch->count, up->max_batch);
    if (!batch->pixels)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_batch_upload_next needs 8-bit pixels (clgqa_loader_use_pixels)");
    /* Everything the compute queue has been given so far is the last
     * batch's work: its slot is free once that is done. */
    if (up->last >= 0) {
        upload_slot *last = &up->slots[up->last];
        release_event(&last->consumed);
        CLGQA_CL(clEnqueueMarkerWithWaitList(rt->queue, 0, NULL, &last->consumed));
    }
    upload_slot *slot = &up->slots[up->next];
    /* The staging memory is rewritten below: its previous copy must be done
     * (it almost always is; waiting only when the host is this far ahead). */
    if (slot->copied) {
        cl_int state = CL_QUEUED;
        clGetEventInfo(slot->copied, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state,
                       NULL);
        if (state != CL_COMPLETE)
            CLGQA_CL(clWaitForEvents(1, &slot->copied));
        release_event(&slot->copied);
    }
    size_t image_bytes = up->image_bytes * (size_t)batch->count;
    memcpy(slot->host, batch->labels, (size_t)batch->count * sizeof(int32_t));
    memcpy((char *)slot->host + up->labels_bytes, batch->pixels, image_bytes);
    /* A write from the pinned mapping (the staging buffer itself is never a
     * command's operand while mapped), after the slot's previous batch. */
    CLGQA_CL(clEnqueueWriteBuffer(rt->transfer_queue, slot->device, CL_FALSE, 0,
                                  up->labels_bytes + image_bytes, slot->host,
                                  slot->consumed ? 1 : 0, slot->consumed ? &slot->consumed : NULL,
                                  &slot->copied));
    CLGQA_CL(clFlush(rt->transfer_queue));
    CLGQA_CL(clEnqueueBarrierWithWaitList(rt->queue, 1, &slot->copied, NULL));
    *labels = clgqa_view_at(slot->device, 0);
    *pixels = clgqa_view_at(slot->device, up->labels_bytes);
    up->last = up->next;
    up->next = (up->next + 1) % SLOTS;
    return CLGQA_OK;
}
