/* What the trainer, its data-parallel ranks and the tests use of the model
 * beyond the public API (clgqa/model.h): the flat buffers' chunks, copies
 * to the host without waiting, the data-parallel hooks and restoring the
 * running metrics of a resumed epoch. */
#ifndef CLGQA_MODEL_PRIVATE_H
#define CLGQA_MODEL_PRIVATE_H

#include "clgqa/model.h"
#include "ops.h"
#include "patch_embed.h"

/* The flat buffers are split into chunks of whole tensors (in table order)
 * when param_count floats exceed the device's largest allocation
 * (CL_DEVICE_MAX_MEM_ALLOC_SIZE, or the runtime option max_alloc_bytes when smaller);
 * chunk c of each of the four buffers holds the same tensors. Work over a
 * whole buffer (zeroing, norms, optimiser, all-reduce) goes chunk by chunk. */
int clgqa_model_chunk_count(const clgqa_model *model);
/* Chunk `chunk` of buffer `which` (offset 0); *first: the flat offset of its
 * first float, *floats: its length. Either pointer may be NULL. */
clgqa_view clgqa_model_chunk(const clgqa_model *model, clgqa_model_buffer which, int chunk,
                             size_t *first, size_t *floats);
/* Device view of a flat buffer (offset 0), for a model in one chunk
 * (otherwise chunk 0); add a tensor's offset for its view. */
clgqa_view clgqa_model_buffer_view(const clgqa_model *model, clgqa_model_buffer which);

/* What clgqa_model_create_stored(rt, desc, max_batch, storage) would
 * allocate on the device, computed without allocating: one flat buffer's
 * floats (the model has four: parameters, gradients and AdamW's two
 * moments), the activation arena's floats at max_batch (with the weights'
 * transposes and the split weight gradients' partials the GEMMs use; of it,
 * saved_floats the blocks' saved activations), and the small rest
 * (grouping state, the backward's tables) in bytes. Fails as
 * clgqa_model_create would on a bad description. host_bytes: the model's own tables on the host.
 * gemm_rows: the rows of the largest batch's GEMMs (padded to CLBlast's
 * tiles), for CLBlast's workspace. */
typedef struct clgqa_model_memory {
    size_t param_floats;
    size_t arena_floats;
    size_t saved_floats; /* of the arena: the blocks' activations saved for backward */
    size_t other_bytes;
    size_t host_bytes;
    size_t gemm_rows;
} clgqa_model_memory;
clgqa_status clgqa_model_memory_estimate(clgqa_runtime *rt, const clgqa_model_desc *desc,
                                         int max_batch, clgqa_storage storage,
                                         clgqa_model_memory *out);

/* clgqa_model_create with the blocks' activations saved for the backward
 * (ln1, qkv, heads_out, attention's probabilities and PGQA's A, ln2, fc1,
 * gelu; not the residual stream) in `storage`: half under
 * precision 16-mixed (docs/design.md, "Mixed precision"), float otherwise
 * (clgqa_model_create). Half needs no device extension (vload_half and
 * vstore_half are core OpenCL C); the arithmetic stays float. */
clgqa_status clgqa_model_create_stored(clgqa_runtime *rt, const clgqa_model_desc *desc,
                                       int max_batch, clgqa_storage storage, clgqa_model **out);
/* The activation arena's bytes: every saved activation, the backward's
 * scratch, the weights' transposes and the split gradients' partials. */
size_t clgqa_model_arena_bytes(const clgqa_model *model);

/* group_counts of every layer, [num_layers][G], in one read (groups.csv). */
clgqa_status clgqa_model_read_all_group_counts(clgqa_model *model, int32_t *group_counts);
/* The same without waiting: see "Copies without waiting" below. */
clgqa_status clgqa_model_copy_all_group_counts(clgqa_model *model, int32_t *group_counts,
                                               cl_event *copied);

/* Copies without waiting. The _copy_ calls queue a non-blocking copy, after
 * every command queued so far, into host memory the caller keeps valid until
 * the copy is done (pinned staging, CL_MEM_ALLOC_HOST_PTR, is best: some
 * drivers copy into pageable memory synchronously). `copied` (may be NULL)
 * receives the copy's event, which the caller waits for and releases; the
 * queue is in order, so the event of the last copy covers the earlier ones. */
typedef struct clgqa_metrics_copy {
    const float *sums; /* [4]: the device's sums, once copied */
    int batch;         /* the host's counts when the copy was queued */
    long samples;
} clgqa_metrics_copy;
/* The running metrics: `sums` ([4] floats) receives the device's part,
 * `copy` the rest; clgqa_metrics_of_copy then gives what
 * clgqa_model_read_metrics would have returned at this call. */
clgqa_status clgqa_model_copy_metrics(clgqa_model *model, float *sums, clgqa_metrics_copy *copy,
                                      cl_event *copied);
void clgqa_metrics_of_copy(const clgqa_metrics_copy *copy, clgqa_metrics *out);
/* The last forward's per-sample losses, [count]. */
clgqa_status clgqa_model_copy_losses(clgqa_model *model, int count, float *losses,
                                     cl_event *copied);
/* The last forward's logits, [batch * classes]. */
clgqa_status clgqa_model_copy_logits(clgqa_model *model, float *logits, cl_event *copied);

/* Set the running sums (sum_loss, sum_correct, samples of `m`), as read by
 * clgqa_model_read_metrics, so a run resumed mid-epoch goes on counting. */
clgqa_status clgqa_model_restore_metrics(clgqa_model *model, const clgqa_metrics *m);

/* ---- the loss scaler (precision 16-mixed: PyTorch's GradScaler) ----
 * Off by default. On, the backward's gradients come multiplied by the loss
 * scale; clgqa_model_step checks them on the device for an inf or a NaN,
 * skips the whole AdamW step when it finds one (the weights, the moments
 * and Adam's step count stay as they were) and halves the scale, or else
 * divides them by the scale, steps, and doubles the scale after
 * CLGQA_LOSS_SCALE_GROWTH_INTERVAL clean steps in a row. No host read. */
#define CLGQA_LOSS_SCALE_INIT 65536.0f /* 2^16, GradScaler's init_scale */
#define CLGQA_LOSS_SCALE_GROWTH_INTERVAL 2000
#define CLGQA_LOSS_SCALER_FLOATS 4 /* the device state's floats */
typedef struct clgqa_loss_scaler {
    float scale;   /* a power of 2 */
    long growth;   /* clean steps since the scale last changed, < the interval */
    long skipped;  /* steps skipped so far */
    int found_inf; /* the last step was skipped (read only) */
} clgqa_loss_scaler;
/* Turn the scaler on from `state` (a fresh one: {CLGQA_LOSS_SCALE_INIT, 0,
 * 0}), or off (NULL). Blocking; refuses a scale that is not a power of 2. */
clgqa_status clgqa_model_set_loss_scaler(clgqa_model *model, const clgqa_loss_scaler *state);
int clgqa_model_loss_scaling(const clgqa_model *model);
/* The scaler's state now (blocking), or copied without waiting into
 * `fields` ([CLGQA_LOSS_SCALER_FLOATS]) and turned into a state once the
 * copy is done. */
clgqa_status clgqa_model_read_loss_scaler(clgqa_model *model, clgqa_loss_scaler *out);
clgqa_status clgqa_model_copy_loss_scaler(clgqa_model *model, float *fields, cl_event *copied);
void clgqa_loss_scaler_of_copy(const float *fields, clgqa_loss_scaler *out);

/* ---- timm's training recipe ----
 * Label smoothing and stochastic depth, set once for training passes
 * (evaluation passes use neither): label_smoothing s makes every training
 * target (1 - s) onehot + s / classes; drop_path r drops each block's
 * attention and MLP outputs per sample with probability r l / (depth - 1)
 * in block l (timm's linspace over depth), scaling the kept ones by
 * 1 / keep (timm's drop_path). Both 0: the plain model. */
typedef struct clgqa_regularisation {
    double label_smoothing; /* [0, 1) */
    double drop_path;       /* [0, 1) */
} clgqa_regularisation;
clgqa_status clgqa_model_set_regularisation(clgqa_model *model, const clgqa_regularisation *r);

/* What a training batch brings beyond its pixels and labels: its mix
 * (timm's Mixup/CutMix in mode 'batch', drawn by the trainer), the weight of
 * each image's own label in its soft target (lambda, 1 without a mix), and
 * the batch's first sample's index among the optimizer step's samples
 * (micro-batches of gradient accumulation and MPI ranks), which keys the
 * drop-path draws, so a sample draws alike in any micro-batch. A DGQA
 * window step regroups in its first micro-batch (the window counts
 * optimizer steps); KDGQA regroups on every forward, so on each
 * micro-batch's own key norms. */
typedef struct clgqa_train_batch {
    clgqa_image_mix mix;
    double label_weight;
    long first_sample;
    int micro_batch; /* its place in the optimizer step: DGQA regroups on the first only */
} clgqa_train_batch;
/* clgqa_model_forward_pixels for a training pass (pass->mode TRAIN) with
 * `train`'s mix, the soft targets that label smoothing or a mix make, and
 * drop path. */
clgqa_status clgqa_model_forward_train(clgqa_model *model, clgqa_view pixels, clgqa_view labels,
                                       int batch, const float *mean, const float *std,
                                       const clgqa_pass *pass, const clgqa_train_batch *train);

/* While set, backward passes do not call the gradients_ready hook: the
 * micro-batches of a gradient-accumulation cycle before its last, whose
 * gradient is not final yet. */
void clgqa_model_defer_gradients(clgqa_model *model, int defer);

/* ---- data-parallel hooks ----
 * A data-parallel trainer (src/train/mpi_ranks.c) makes its processes agree through
 * these callbacks; the model itself knows nothing of other processes. Either
 * function may be NULL; a failure they return fails the pass. */
typedef struct clgqa_model_hooks {
    void *ctx;
    /* The key norms of `layer` (count = G floats, summed over this process's
     * batch) have been enqueued into `norms`; the grouping reads them next,
     * so the hook may replace them by the sum over every process's batch. */
    clgqa_status (*key_norms)(void *ctx, int layer, clgqa_view norms, int count);
    /* The backward pass has enqueued the last write to floats
     * [first, first + count) of the gradient buffer. One backward calls it
     * for consecutive ranges from the end of the buffer to its start (the
     * head and final norm, each block from the last, the embeddings). */
    clgqa_status (*gradients_ready)(void *ctx, size_t first, size_t count);
} clgqa_model_hooks;
/* NULL removes the hooks. */
void clgqa_model_set_hooks(clgqa_model *model, const clgqa_model_hooks *hooks);

#endif
