/* The timm-layout Vision Transformer with grouped-query attention
 * (arXiv:2408.08454) on an OpenCL device: parameters, gradients and AdamW
 * moments in one flat device buffer each with a named tensor table; the
 * activation arena sized once at creation; forward, backward and the AdamW
 * step enqueue work without waiting. Semantics:
 * docs/attention-variants.md.
 *
 * Tensor names are those of the reference PyTorch model's state_dict:
 *   cls_token [1,1,C], pos_embed [1,P,C],
 *   patch_embed.proj.weight [C,in_chans,p,p], patch_embed.proj.bias [C],
 *   blocks.{i}.norm1.weight/bias [C],
 *   blocks.{i}.attn.q.weight [C,C], attn.k.weight [G*d,C], attn.v.weight [G*d,C],
 *   blocks.{i}.attn.q.bias [C], attn.k.bias [G*d], attn.v.bias [G*d],
 *   blocks.{i}.attn.proj.weight [C,C] / .bias [C],
 *   blocks.{i}.norm2.weight/bias [C],
 *   blocks.{i}.mlp.fc1.weight [4C,C] / .bias [4C],
 *   blocks.{i}.mlp.fc2.weight [C,4C] / .bias [C],
 *   norm.weight/bias [C], head.weight [classes,C] / head.bias [classes].
 * The table lists them in that order (the order of the flat buffer: the
 * state_dict's, except that q, k, v weights and then their biases are
 * adjacent, so the three projections are one GEMM). The
 * per-layer grouping state (DGQA `cache` and the split) is not a parameter:
 * see clgqa_model_read_grouping. */
#ifndef CLGQA_MODEL_H
#define CLGQA_MODEL_H

#include <stdint.h>

#include "clgqa/runtime.h"

/* The attention schemes of arXiv:2408.08454 (docs/attention-variants.md). */
typedef enum clgqa_scheme {
    CLGQA_MHSA = 0,
    CLGQA_GQA,
    CLGQA_KDGQA,
    CLGQA_DGQA_DIFF,
    CLGQA_DGQA_EMA,
    CLGQA_PGQA
} clgqa_scheme;
/* "mhsa", "gqa", "kdgqa", "dgqa_diff", "dgqa_ema", "pgqa" ("unknown" outside). */
const char *clgqa_scheme_name(clgqa_scheme scheme);
/* The scheme of that name; the message lists the names. */
clgqa_status clgqa_scheme_parse(const char *name, clgqa_scheme *out);

/* What a model is: everything that fixes its shapes, its initial weights
 * and its grouping rule (the config keys of the same names give it, see
 * clgqa_config_model_desc). */
typedef struct clgqa_model_desc {
    clgqa_scheme scheme;
    int img_size, patch_size, in_chans;
    int embed_dim, num_layers, num_heads;
    int num_kv_heads;   /* G; ignored for mhsa (G = num_heads) */
    int num_classes;
    int window_size;    /* DGQA's regrouping window W (dgqa_* only) */
    uint64_t seed;      /* the initial weights' Philox streams, PGQA noise, DGQA fix-ups */
} clgqa_model_desc;
/* Whether desc describes a model clgqa can build: sizes positive,
 * num_heads % G, embed_dim % num_heads and img_size % patch_size zero,
 * window_size >= 1 for the DGQA schemes. The message names the keys. */
clgqa_status clgqa_model_desc_check(const clgqa_model_desc *desc);

#define CLGQA_TENSOR_NAME_MAX 64
#define CLGQA_TENSOR_MAX_DIMS 4

typedef struct clgqa_tensor_info {
    char name[CLGQA_TENSOR_NAME_MAX];
    size_t offset; /* floats from the start of the flat buffers */
    size_t numel;
    int ndim;
    int shape[CLGQA_TENSOR_MAX_DIMS];
} clgqa_tensor_info;

/* Model dimensions derived from its description. */
typedef struct clgqa_model_dims {
    int img_size, patch_size, in_chans;
    int grid;     /* img_size / patch_size */
    int tokens;   /* P = grid^2 + 1 */
    int embed_dim, num_layers, num_heads;
    int kv_heads; /* G (= num_heads for mhsa) */
    int head_dim; /* d = C / H */
    int mlp_dim;  /* 4C */
    int num_classes;
    int max_batch;
} clgqa_model_dims;

/* The flat buffers (same layout, same tensor table). CLGQA_EMA exists once
 * clgqa_model_ema_start has made it. */
typedef enum clgqa_model_buffer {
    CLGQA_PARAMS = 0,
    CLGQA_GRADS,
    CLGQA_ADAM_M,
    CLGQA_ADAM_V,
    CLGQA_EMA
} clgqa_model_buffer;

typedef struct clgqa_model clgqa_model;

/* Build the model `desc` describes, for batches of up to max_batch images.
 * Weights are initialised as the reference does (Linear weights and
 * pos_embed normal std 0.02 truncated at +-2, Linear biases and cls_token 0,
 * LayerNorm 1/0, the patch conv's weight and bias PyTorch's default uniform
 * +-1/sqrt(in_chans*p*p)) from Philox streams keyed by the seed and the
 * tensor's index; AdamW moments are 0; the grouping state is the static split with a
 * zero DGQA cache. Refuses shapes the semantics page refuses (H % G != 0,
 * img_size % patch_size != 0, ...). */
clgqa_status clgqa_model_create(clgqa_runtime *rt, const clgqa_model_desc *desc, int max_batch,
                                clgqa_model **out);
void clgqa_model_destroy(clgqa_model *model);

const clgqa_model_dims *clgqa_model_get_dims(const clgqa_model *model);
/* The description it was created from (num_kv_heads = G, also for mhsa). */
const clgqa_model_desc *clgqa_model_get_desc(const clgqa_model *model);

/* ---- named tensor table ---- */
size_t clgqa_model_param_count(const clgqa_model *model); /* floats in each flat buffer */
int clgqa_model_tensor_count(const clgqa_model *model);
const clgqa_tensor_info *clgqa_model_tensor(const clgqa_model *model, int index);
/* NULL when no tensor has that name. */
const clgqa_tensor_info *clgqa_model_find_tensor(const clgqa_model *model, const char *name);

/* Blocking transfers of one tensor (numel floats) of a flat buffer. */
clgqa_status clgqa_model_read_tensor(clgqa_model *model, clgqa_model_buffer which,
                                     const clgqa_tensor_info *tensor, float *host);
clgqa_status clgqa_model_write_tensor(clgqa_model *model, clgqa_model_buffer which,
                                      const clgqa_tensor_info *tensor, const float *host);
/* Blocking transfers of a whole flat buffer (param_count floats). */
clgqa_status clgqa_model_read_buffer(clgqa_model *model, clgqa_model_buffer which, float *host);
/* CLGQA_ERR_FORMAT unless every parameter is finite; the message names the
 * first tensor holding a NaN or an infinity, where, and how many of its
 * values are not finite (weights of a diverged run evaluate as garbage). */
clgqa_status clgqa_model_check_finite(clgqa_model *model);
clgqa_status clgqa_model_write_buffer(clgqa_model *model, clgqa_model_buffer which,
                                      const float *host);

/* ---- grouping state ----
 * Per layer: the DGQA cache [G] and the query heads per key/value head
 * (group_counts [G], the "split"; the head -> kv-head map follows from it, as
 * groups are contiguous in head order). Meaningful for every scheme (static
 * schemes always show H/G). Either pointer may be NULL. Blocking. */
clgqa_status clgqa_model_read_grouping(clgqa_model *model, int layer, float *cache,
                                       int32_t *group_counts);
/* Refuses counts that are negative or do not sum to H. */
clgqa_status clgqa_model_write_grouping(clgqa_model *model, int layer, const float *cache,
                                        const int32_t *group_counts);

/* ---- training and evaluation ----
 * images: [batch, in_chans, img_size, img_size] floats on the device;
 * labels: [batch] int32 on the device, or labels.mem NULL for logits only;
 * `pass` says where the run stands (clgqa_pass). Produces logits [batch, classes] and,
 * with labels, per-sample losses, correct and top-5 flags and the batch's
 * sums of them (added to the running metrics). The images and labels must
 * stay unchanged until clgqa_model_backward has been enqueued. */
/* Which rule the grouping follows: training regroups DGQA on window steps
 * only; evaluation regroups on every pass (as the reference's eval mode). */
typedef enum clgqa_pass_mode { CLGQA_PASS_EVAL = 0, CLGQA_PASS_TRAIN } clgqa_pass_mode;
typedef struct clgqa_pass {
    clgqa_pass_mode mode;
    long step_in_epoch; /* the batch's index within its epoch (DGQA's window counter) */
    long global_step;   /* optimizer steps since the run began: keys the PGQA noise
                           and DGQA fix-up streams */
} clgqa_pass;
clgqa_status clgqa_model_forward(clgqa_model *model, clgqa_view images, clgqa_view labels,
                                 int batch, const clgqa_pass *pass);
/* The same from 8-bit pixels [batch, in_chans, img_size, img_size] (uchar;
 * pixels.offset in bytes), normalised on the device as the loader does on
 * the host: (x / 255 - mean[c]) / std[c], in_chans <= 3 values each. */
clgqa_status clgqa_model_forward_pixels(clgqa_model *model, clgqa_view pixels, clgqa_view labels,
                                        int batch, const float *mean, const float *std,
                                        const clgqa_pass *pass);
/* Gradients of the mean cross-entropy of the last forward (which must have
 * had labels): zeroes the gradient buffer, then backpropagates through the
 * whole model. */
clgqa_status clgqa_model_backward(clgqa_model *model);
/* The same for one micro-batch of gradient accumulation: the gradient of
 * loss_scale times the sum of the last forward's per-sample losses replaces
 * the gradient buffer (accumulate 0: a cycle's first micro-batch) or is
 * added to it (1). Over k micro-batches of b images, loss_scale 1 / (k b)
 * gives the gradient of the mean loss over all of them, as one batch of k b
 * (to float summation order). clgqa_model_backward is
 * clgqa_model_backward_scaled(model, 1 / batch, 0). */
clgqa_status clgqa_model_backward_scaled(clgqa_model *model, float loss_scale, int accumulate);
/* torch.optim.AdamW's settings for one step (lr: this step's learning
 * rate), and clip_grad_norm_'s max_norm (0: no clipping). no_weight_decay
 * 1 leaves 1-D tensors (biases, LayerNorm), pos_embed and cls_token
 * undecayed, as timm's optimizer groups; 0 decays every tensor, as the
 * reference's AdamW(model.parameters()). */
typedef struct clgqa_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    float clip_grad_norm;
    int no_weight_decay;
} clgqa_adamw;
/* One AdamW step over the flat buffer (step counts from 1). With
 * clip_grad_norm > 0 the gradient is first scaled so its global L2 norm is
 * at most clip_grad_norm (torch's clip_grad_norm_), without a host read. */
clgqa_status clgqa_model_step(clgqa_model *model, const clgqa_adamw *adamw, long step);

/* ---- weight EMA (timm's ModelEmaV3) ----
 * An exponential moving average of the parameters in the flat buffer
 * CLGQA_EMA. clgqa_model_ema_start makes it a copy of the parameters (again
 * when called again); clgqa_model_ema_update, after each optimizer step,
 * does ema = ema + (1 - decay) (params - ema) in one kernel (torch.lerp's
 * formula). clgqa_model_ema_swap exchanges the parameters and the EMA (no
 * copy), so the model computes, evaluates and saves with the averaged
 * weights until it is swapped back. The grouping state (DGQA cache and
 * split) is shared, not averaged. */
clgqa_status clgqa_model_ema_start(clgqa_model *model);
clgqa_status clgqa_model_ema_update(clgqa_model *model, double decay);
clgqa_status clgqa_model_ema_swap(clgqa_model *model);
int clgqa_model_has_ema(const clgqa_model *model);

/* Device views of the last forward's outputs. */
clgqa_view clgqa_model_logits(const clgqa_model *model); /* [batch, classes] */
clgqa_view clgqa_model_losses(const clgqa_model *model); /* [batch] */

typedef struct clgqa_metrics {
    float last_loss;      /* mean loss of the last forward with labels */
    float last_accuracy;  /* fraction correct in that batch */
    float last_top5;      /* fraction with the label among the 5 largest logits */
    double sum_loss;      /* running sums since clgqa_model_reset_metrics */
    double sum_correct;
    double sum_top5;
    long samples;
} clgqa_metrics;
/* One small blocking read (waits for the queue). */
clgqa_status clgqa_model_read_metrics(clgqa_model *model, clgqa_metrics *out);
/* Zero the running sums (an epoch's start). */
clgqa_status clgqa_model_reset_metrics(clgqa_model *model);
/* Blocking read of the last forward's logits, [batch * classes]. */
clgqa_status clgqa_model_read_logits(clgqa_model *model, float *host);

#endif
