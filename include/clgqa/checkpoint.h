/* Checkpoints in safetensors, under the reference PyTorch model's state_dict
 * names and shapes (the tensor table of clgqa/model.h), so PyTorch loads them.
 *
 * A model checkpoint holds every parameter (F32), and for the DGQA schemes
 * each layer's `blocks.{i}.attn.cache` (F32 [G]) and `blocks.{i}.attn.split`
 * (I64 [G]), the reference's buffers. Its metadata names the model: img_size,
 * patch_size, in_chans, embed_dim, depth, heads, kv_heads, num_classes,
 * att_scheme, window_size (decimal strings; att_scheme by name).
 *
 * A training checkpoint adds the AdamW moments `optim.m.<name>` and
 * `optim.v.<name>` of every parameter, the weights' EMA `ema.<name>` when
 * the model keeps one (clgqa_model_ema_start), and in its metadata the counters a
 * resumed run needs: epochs_done, global_step and seed (every random stream
 * is keyed by (seed, epoch, step), so they are the whole generator state);
 * written mid-epoch, also where the epoch stands (epoch_steps, next_batch)
 * and its running loss sums (epoch_samples, epoch_sum_loss,
 * epoch_sum_correct, epoch_sum_top5); the best epoch so far (best_epoch,
 * best_test_loss); and ranks, the MPI processes that trained it (a resume
 * keeps the count); for a precision 16-mixed run, the loss scaler's state
 * (loss_scale, loss_scale_growth, skipped_steps), which an fp32 run ignores.
 *
 * Files are written to a temporary file beside the target and renamed over
 * it (clgqa_safetensors_write), so a crash never leaves a torn checkpoint. */
#ifndef CLGQA_CHECKPOINT_H
#define CLGQA_CHECKPOINT_H

#include <stdio.h>

#include "clgqa/model.h"

typedef struct clgqa_train_state {
    long epochs_done; /* epochs completed */
    long global_step; /* optimizer steps completed (AdamW's step count) */
    /* Within epoch epochs_done + 1, when the checkpoint was written mid-epoch
     * (all 0 at an epoch's end): */
    long epoch_steps;           /* optimizer steps done in it */
    long next_batch;            /* the loader's next batch (past skipped ones) */
    clgqa_metrics epoch_metrics; /* the model's running sums over those steps */
    long best_epoch;            /* the epoch of lowest test loss, from 1; 0: none yet */
    double best_test_loss;      /* its test loss */
    int ranks;                  /* MPI processes that trained it (0 is taken as 1) */
    /* precision 16-mixed: the loss scaler (loss_scale 0: none; a run starts
     * from 2^16) */
    double loss_scale;          /* a power of 2 */
    long loss_scale_growth;     /* clean steps since it last changed */
    long skipped_steps;         /* steps skipped for an inf or NaN gradient */
} clgqa_train_state;

/* The model's weights (and DGQA state), its description in the metadata. */
clgqa_status clgqa_checkpoint_save_model(clgqa_model *model, const char *path);
/* The same plus the AdamW moments and `state`: what a resumed run needs. */
clgqa_status clgqa_checkpoint_save_training(clgqa_model *model, const clgqa_train_state *state,
                                            const char *path);

/* Load a model checkpoint (clgqa's, or the reference's state_dict as
 * safetensors or a PyTorch .pth in torch's zip format) into model: every parameter
 * must be present with the model's shape (errors name the tensor and both
 * shapes); q, k and v may come fused as `attn.qkv` ([C + 2*G*d, C], the
 * reference's grouped models). DGQA state is loaded when present; a file with
 * the `cache` but no `split` (the reference saves only the cache) starts from
 * the static split, said in one line on `log` (may be NULL). */
clgqa_status clgqa_checkpoint_load_model(clgqa_model *model, const char *path, FILE *log);
/* Load a training checkpoint: weights, moments, grouping state and the
 * counters, and into a model keeping an EMA the file's EMA (or, from a file
 * without one, a fresh copy of the weights). Refuses a file without
 * optimizer state or whose seed differs from the model's. */
clgqa_status clgqa_checkpoint_load_training(clgqa_model *model, const char *path,
                                            clgqa_train_state *state);

/* How a pos_embed of another patch grid is resampled: timm's antialiased
 * bicubic (its default when it loads a checkpoint at another size), or
 * plain bicubic (torch interpolate's default). */
typedef enum clgqa_resample {
    CLGQA_RESAMPLE_ANTIALIAS = 0,
    CLGQA_RESAMPLE_BICUBIC
} clgqa_resample;

/* Start from pretrained weights (pretrained_ckpt): a clgqa checkpoint, the
 * reference model's state_dict (safetensors or .pth), or a timm ViT (fused
 * attn.qkv [3C, C]; the reference's grouped models fuse [C + 2*G*d, C]).
 * Converted as docs/attention-variants.md's "Uptraining": q kept, k and v
 * averaged over groups of heads; the head keeps the model's fresh initialisation when the class
 * count differs or the file has no head (said on `log`); a pos_embed of
 * another square patch grid is resampled to the model's, class token kept
 * (`resample`; the config key pos_embed_antialias; said on `log`); a file
 * with more blocks than the model, or any
 * other shape mismatch, is refused, naming the tensor and both shapes.
 * F16/BF16 tensors are widened to float32. A DGQA file with the model's
 * number of key/value heads brings its cache and split (the static split when
 * it has only the cache, said on `log`); otherwise the DGQA state starts
 * fresh (static split, zero cache). */
clgqa_status clgqa_checkpoint_load_pretrained(clgqa_model *model, const char *path,
                                              clgqa_resample resample, FILE *log);

#endif
