/* Element-wise, normalisation, loss, reduction, optimizer and random-number
 * ops. Each family lives in src/ops/<family>.cl with its launcher in
 * src/ops/<family>.c, forward and backward side by side.
 *
 * Conventions: float32, row-major; sizes in elements; views carry element
 * offsets. Backward ops ACCUMULATE (+=) into every gradient they produce
 * (input and parameter gradients alike; clgqa_gelu_bias_backward's din and
 * the partial sums below are stored); the trainer zeroes gradients at the
 * start of a step. Out-of-place forward
 * ops may alias out and in unless noted. All launches are asynchronous on
 * rt->queue.
 *
 * Column sums over rows (bias and LayerNorm parameter gradients) run in two
 * deterministic stages: the op that produces a gradient also stores partial
 * sums [chunks, width] in a buffer the caller keeps (`chunks` from
 * clgqa_column_sum_chunks or clgqa_layernorm_backward_chunks, so the
 * partials fill a GPU), and clgqa_column_sums_finish adds any number of
 * such sums to their gradients in one launch: the model's backward finishes
 * a whole block at once (model_pass.c). */
#ifndef CLGQA_OPS_H
#define CLGQA_OPS_H

#include "clgqa/runtime.h"
#include "philox.h"

/* How an op stores its activation operands (precision 16-mixed's saved
 * tensors; docs/design.md, "Mixed precision"): float, or half (2 bytes,
 * rounded to nearest even) with the arithmetic in float either way. Each op
 * taking a clgqa_storage names its activation operands; the others
 * (gradients, parameters, statistics) are float always. The half programs
 * are the float ones built with -DCLGQA_HALF (src/ops/storage.h). */
typedef enum clgqa_storage { CLGQA_STORAGE_FLOAT = 0, CLGQA_STORAGE_HALF = 1 } clgqa_storage;
/* An activation element's bytes, and the build defines of its programs. */
static inline size_t clgqa_storage_bytes(clgqa_storage s) {
    return s == CLGQA_STORAGE_HALF ? 2 : 4;
}
static inline const char *clgqa_storage_defines(clgqa_storage s) {
    return s == CLGQA_STORAGE_HALF ? "-DCLGQA_HALF" : "";
}
/* The half view that starts where the float view `at` does: a half view
 * counts its offset in halves. */
static inline clgqa_view clgqa_view_in_halves(clgqa_view at) {
    at.offset *= 2;
    return at;
}

/* ---- elementwise.cl ---- */
/* dst += src */
clgqa_status clgqa_accumulate(clgqa_runtime *rt, clgqa_view dst, clgqa_view src, size_t n);
/* dst (float) = src (an activation in `storage`), n elements, exactly;
 * and back, dst (an activation) = src (float), rounded to nearest even in
 * half. dst and src must not overlap. */
clgqa_status clgqa_activations_to_float(clgqa_runtime *rt, clgqa_storage storage, clgqa_view dst,
                                        clgqa_view src, size_t n);
clgqa_status clgqa_activations_from_float(clgqa_runtime *rt, clgqa_storage storage,
                                          clgqa_view dst, clgqa_view src, size_t n);
/* x[r, c] += bias[c] */
clgqa_status clgqa_bias_add(clgqa_runtime *rt, clgqa_view x, clgqa_view bias, size_t rows,
                            size_t cols);
/* Exact GELU of a Linear's output and bias: out[r, c] = gelu(in[r, c] +
 * bias[c]), gelu(x) = x * 0.5 * (1 + erf(x / sqrt(2))); out may alias in.
 * Activations (`storage`): in and out. */
clgqa_status clgqa_gelu_bias_forward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view out,
                                     clgqa_view in, clgqa_view bias, size_t rows, size_t cols);
/* din[r, c] = dout[r, c] * gelu'(in[r, c] + bias[c]), and in the same pass
 * the bias gradient's partial sums: partials[k, c] = sum of din[r, c] over
 * the k-th of `chunks` row blocks (clgqa_column_sum_chunks). Unlike the
 * other backward ops it STORES din (it is the only gradient of that
 * tensor), so din needs no zero fill; din may alias dout. Activations
 * (`storage`): in (the forward's). */
clgqa_status clgqa_gelu_bias_backward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view din,
                                      clgqa_view partials, size_t chunks, clgqa_view dout,
                                      clgqa_view in, clgqa_view bias, size_t rows, size_t cols);

/* out[r, c] = in[r, c] * scales[r / rows_per_scale]: a sample's rows
 * scaled alike (drop path's backward); out may alias in. */
clgqa_status clgqa_scale_rows(clgqa_runtime *rt, clgqa_view out, clgqa_view in,
                              clgqa_view scales, size_t rows_per_scale, size_t rows,
                              size_t cols);

/* ---- layernorm.cl ---- */
/* Per row of `cols`: out = (in - mean) * rstd * weight + bias; saves mean and
 * rstd ([rows] each) for backward. Activations (`storage`): out (in is the
 * residual stream, float always; out may alias in in float storage only). */
clgqa_status clgqa_layernorm_forward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view out,
                                     clgqa_view mean, clgqa_view rstd, clgqa_view in,
                                     clgqa_view weight, clgqa_view bias, size_t rows, size_t cols,
                                     float eps);
/* A Linear's bias and the residual add after its GEMM, then the LayerNorm
 * that follows, in one pass: x = residual + (linear + linear_bias) (x may
 * alias linear: the GEMM's output), then out, mean, rstd of x as
 * clgqa_layernorm_forward (out must not overlap x, residual or linear).
 * With branch_scales.mem set the branch is scaled per sample first (drop
 * path): x = residual + (linear + linear_bias) * branch_scales[r /
 * rows_per_scale]. Activations (`storage`): out (x, residual and the GEMM's
 * float output linear are float always). */
clgqa_status clgqa_residual_layernorm_forward(clgqa_runtime *rt, clgqa_storage storage,
                                              clgqa_view x, clgqa_view residual, clgqa_view linear,
                                              clgqa_view linear_bias, clgqa_view branch_scales,
                                              size_t rows_per_scale, clgqa_view out,
                                              clgqa_view mean, clgqa_view rstd, clgqa_view weight,
                                              clgqa_view bias, size_t rows, size_t cols,
                                              float eps);
/* The row chunks of clgqa_layernorm_backward on this device: 4 work-groups
 * per compute unit. */
size_t clgqa_layernorm_backward_chunks(clgqa_runtime *rt);
/* din += the input gradient, one pass per chunk of rows, which also stores
 * partial column sums [chunks, cols]: dweight's (sum of dout * xhat) at
 * params, dbias's (sum of dout) at params + chunks * cols and, when
 * residual.mem is set, those of the updated din at residual. din is the
 * residual stream's gradient in the model, and its column sums are the
 * bias gradient of the Linear added into that stream. */
clgqa_status clgqa_layernorm_backward(clgqa_runtime *rt, clgqa_view din, clgqa_view params,
                                      clgqa_view residual, size_t chunks, clgqa_view dout,
                                      clgqa_view in, clgqa_view mean, clgqa_view rstd,
                                      clgqa_view weight, size_t rows, size_t cols);

/* ---- crossentropy.cl ---- */
/* From logits [rows, classes] and int labels [rows]: probs = softmax(logits);
 * losses[r] = -sum_c targets[r, c] log probs[r, c] when targets.mem is set
 * (soft targets [rows, classes]: smoothed or mixed labels), else
 * -log probs[r, label]; correct[r] = (argmax_c logits[r] == label) and, when
 * top5.mem is set, top5[r] = (the label is among the 5 largest logits), as
 * 1.0f/0.0f (ties rank the lower index first, as argmax). The accuracies
 * always use the label. A label outside [0, classes) gives a NaN loss and 0
 * accuracies. probs must not overlap logits or targets. */
clgqa_status clgqa_crossentropy_forward(clgqa_runtime *rt, clgqa_view losses, clgqa_view correct,
                                        clgqa_view top5, clgqa_view probs, clgqa_view logits,
                                        clgqa_view labels, clgqa_view targets, size_t rows,
                                        size_t classes);
/* dlogits += dloss * (probs - target), the target targets[r] when
 * targets.mem is set, else onehot(label[r]); dloss = 1/rows for the mean.
 * With loss_scale (a device scalar, a power of 2; .mem NULL: none) dloss is
 * multiplied by loss_scale[0] first: the loss scaler's backward. */
clgqa_status clgqa_crossentropy_backward(clgqa_runtime *rt, clgqa_view dlogits, clgqa_view probs,
                                         clgqa_view labels, clgqa_view targets, size_t rows,
                                         size_t classes, float dloss, clgqa_view loss_scale);
/* timm's mixup_target for a batch mixed with itself flipped (row r with row
 * rows - 1 - r): targets[r] = own_weight * y(label[r]) + (1 - own_weight) *
 * y(label[rows - 1 - r]), where y(k) is label smoothing's target for class
 * k: 1 - smoothing + smoothing / classes at k, smoothing / classes elsewhere
 * (own_weight 1: smoothing alone). Weights and values are rounded to float
 * as PyTorch does with timm's Python numbers. A bad label gives NaN rows. */
clgqa_status clgqa_soft_targets(clgqa_runtime *rt, clgqa_view targets, clgqa_view labels,
                                size_t rows, size_t classes, double smoothing, double own_weight);

/* ---- reduce.cl ---- */
/* out[0] = sum x / sum x^2, deterministic (fixed reduction order). */
clgqa_status clgqa_sum(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n);
clgqa_status clgqa_sum_squares(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n);
/* out[0] = sum (x / divisor[0])^2, divisor a device scalar and a power of 2
 * (the loss scale: the unscaled gradients' squared norm, which the scaled
 * ones' could overflow); the same bits as clgqa_sum_squares of x / divisor. */
clgqa_status clgqa_sum_squares_divided(clgqa_runtime *rt, clgqa_view out, clgqa_view x, size_t n,
                                       clgqa_view divisor);
/* dbias[c] += sum_r dy[r, c] (the gradient of clgqa_bias_add), deterministic,
 * both stages. */
clgqa_status clgqa_bias_backward(clgqa_runtime *rt, clgqa_view dbias, clgqa_view dy, size_t rows,
                                 size_t cols);
/* The chunks of a column sum over up to `rows` rows of `cols` columns on
 * this device: 1 on CPU devices; on GPUs enough for 4 work-groups per
 * compute unit and at most 32 rows per work-item. */
size_t clgqa_column_sum_chunks(clgqa_runtime *rt, size_t rows, size_t cols);
/* Stage 1 alone: partials[k, c] = sum of dy[r, c] over the k-th of `chunks`
 * blocks of ceil(rows / chunks) rows. */
clgqa_status clgqa_column_partials(clgqa_runtime *rt, clgqa_view partials, size_t chunks,
                                   clgqa_view dy, size_t rows, size_t cols);
/* One sum of a finish table: out[c] += sum over k < chunks of
 * partials[k * width + c], for c < width (offsets into the views given to
 * clgqa_column_sums_finish). */
typedef struct clgqa_column_sum {
    size_t partials, chunks, width, out;
} clgqa_column_sum;
#define CLGQA_COLUMN_SUM_UINTS 4 /* per sum in the device table */
/* The device table of `count` sums (CLGQA_COLUMN_SUM_UINTS each), for the
 * caller to upload once; fails on a field beyond 32 bits. */
clgqa_status clgqa_column_sum_encode(const clgqa_column_sum *sums, size_t count, cl_uint *table);
/* Stage 2 of every sum in `sums` in one launch, in a fixed order (chunk
 * order on CPU devices; on GPUs blocks of chunks joined by a tree). `table`
 * is the device copy of clgqa_column_sum_encode(sums); the host copy is
 * checked against the views' buffers. */
clgqa_status clgqa_column_sums_finish(clgqa_runtime *rt, clgqa_view out, clgqa_view partials,
                                      clgqa_view table, const clgqa_column_sum *sums,
                                      size_t count);

/* ---- transpose.cl ---- */
/* One transpose of a table: the [rows, cols] matrix at `src` (floats into
 * the source view) written as [cols, rows] at `dst` (into the destination
 * view). */
typedef struct clgqa_transpose {
    size_t src, rows, cols, dst;
} clgqa_transpose;
#define CLGQA_TRANSPOSE_UINTS 4 /* per transpose in the device table */
/* The device table of `count` transposes, for the caller to upload once;
 * fails on a field beyond 32 bits. */
clgqa_status clgqa_transpose_encode(const clgqa_transpose *entries, size_t count, cl_uint *table);
/* Every transpose of `entries` in one launch; `table` is the device copy of
 * clgqa_transpose_encode(entries), the host copy is checked against the
 * views' buffers. Source and destination must not overlap. */
clgqa_status clgqa_transpose_table(clgqa_runtime *rt, clgqa_view dst, clgqa_view src,
                                   clgqa_view table, const clgqa_transpose *entries,
                                   size_t count);

/* ---- adamw.cl ---- */
typedef struct clgqa_adamw_hparams {
    float lr, beta1, beta2, eps, weight_decay;
} clgqa_adamw_hparams;
/* The loss scaler's state (precision 16-mixed: PyTorch's GradScaler), a
 * device array of CLGQA_SCALER_FLOATS floats: the loss scale (a power of 2;
 * the backward's gradients come multiplied by it), the clean steps since it
 * last changed, whether this step's gradients hold an inf or a NaN (0 or 1),
 * and the steps skipped so far. Counts are floats: exact to 2^24. */
typedef enum clgqa_scaler_field {
    CLGQA_SCALER_SCALE = 0,
    CLGQA_SCALER_GROWTH,
    CLGQA_SCALER_FOUND_INF,
    CLGQA_SCALER_SKIPPED,
    CLGQA_SCALER_FLOATS
} clgqa_scaler_field;
/* The ranges of a flat parameter buffer that AdamW leaves undecayed
 * (timm's no_weight_decay: biases, norms, pos_embed, cls_token): `count`
 * sorted edges [start_0, end_0, start_1, end_1, ...] (uint, on the device)
 * over the whole buffer; `first` is the whole buffer's index of the
 * launch's element 0 (a chunk's first element). */
typedef struct clgqa_no_decay {
    clgqa_view edges;
    size_t count;
    size_t first;
} clgqa_no_decay;
/* One torch.optim.AdamW step over n parameters (decoupled decay
 * p -= lr*wd*p, then Adam with bias correction; `step` counts from 1).
 * grad_scale multiplies the gradient first (1.0 normally; the clip factor
 * when clipping by global norm; it is a device scalar so clipping needs no
 * host read: grad_scale.mem NULL means 1.0). no_decay (NULL: none) names
 * the parameters whose decay is skipped, as a second parameter group with
 * weight_decay 0 in PyTorch. With `scaler` (.mem NULL: none), GradScaler's
 * step: nothing changes when the scaler's found_inf is set; otherwise the
 * gradient is divided by the loss scale, and Adam's step count is `step`
 * less the steps skipped so far (adamw.cl). */
clgqa_status clgqa_adamw_step(clgqa_runtime *rt, clgqa_view params, clgqa_view grads,
                              clgqa_view m, clgqa_view v, size_t n,
                              const clgqa_adamw_hparams *hp, long step, clgqa_view grad_scale,
                              const clgqa_no_decay *no_decay, clgqa_view scaler);
/* ema = ema.lerp(params, 1 - decay) over n floats, torch.lerp's formula
 * (timm's ModelEmaV3 after each optimizer step). */
clgqa_status clgqa_ema_update(clgqa_runtime *rt, clgqa_view ema, clgqa_view params, size_t n,
                              double decay);
/* grad_scale[0] = min(1, max_norm / (sqrt(sum_squares[0]) + 1e-6)) as torch's
 * clip_grad_norm_ (with the loss scaler, sum_squares is that of the
 * unscaled gradients: clgqa_sum_squares_divided). */
clgqa_status clgqa_clip_factor(clgqa_runtime *rt, clgqa_view grad_scale, clgqa_view sum_squares,
                               float max_norm);
/* Sets the scaler's found_inf to 1 where one of the n gradients is an inf or
 * a NaN; leaves it as it is otherwise (the caller zeroes it once per step,
 * then checks each chunk of the gradients). */
clgqa_status clgqa_grad_check(clgqa_runtime *rt, clgqa_view scaler, clgqa_view grads, size_t n);
/* GradScaler's update, after the step: found_inf halves the scale, zeroes
 * the clean-step count and counts a skipped step; otherwise the count goes
 * up, and at growth_interval the scale doubles (unless that would be an
 * inf) and the count restarts at 0. */
clgqa_status clgqa_loss_scale_update(clgqa_runtime *rt, clgqa_view scaler, long growth_interval);

/* ---- random.cl ----
 * The device side of the counter-based generator of philox.h: element i of
 * stream `stream` under `seed`, the same numbers as the host's
 * clgqa_host_uniform / clgqa_host_normal. */
clgqa_status clgqa_random_uniform(clgqa_runtime *rt, clgqa_view out, size_t n, uint64_t seed,
                                  uint64_t stream);
clgqa_status clgqa_random_normal(clgqa_runtime *rt, clgqa_view out, size_t n, uint64_t seed,
                                 uint64_t stream, float mean, float std);
/* Stochastic depth (timm's drop_path) for `layers` blocks of a batch of
 * `samples`: scales[(l * 2 + branch) * samples + b] is 1 / keep_prob(l) or
 * 0 for block l's attention (branch 0) and MLP (1) output, kept when u <
 * keep_prob(l), u being element 2 * (first_sample + b) + branch of the
 * stream clgqa_stream_id(purpose, l, step) for `stream` =
 * clgqa_stream_id(purpose, 0, step) (the host's clgqa_host_random_bits
 * draws the same). rates [layers, 2] holds each block's keep_prob and
 * 1 / keep_prob as floats. */
clgqa_status clgqa_drop_path_scales(clgqa_runtime *rt, clgqa_view scales, clgqa_view rates,
                                    size_t layers, size_t samples, uint64_t first_sample,
                                    uint64_t seed, uint64_t stream);

#endif
