/* The passes of the ViT (include/clgqa/model.h): forward with the per-scheme
 * grouping, backward through the whole model, the AdamW step. Everything is
 * enqueued on the runtime's in-order queue; nothing here waits for the
 * device or allocates. Semantics: docs/attention-variants.md. */
#include "model_internal.h"

#include <math.h>

#include "gemm.h"
#include "ops.h"
#include "patch_embed.h"

/* ---- Linear (PyTorch's nn.Linear: W is [n_out, n_in]) ----
 * The GEMMs run over the rows rounded up to CLBlast's tiles (model_gemm:
 * `rows` below is that count), and take their operands as CLBlast's indirect
 * kernel reads them in place where it can (docs/design.md, "GEMMs without
 * copies"): the forward multiplies by the weight's transpose W^T [n_in,
 * n_out] (m->weights_t, written at the start of the forward), the input
 * gradient by W itself, and the weight gradient sums dy^T x over the rows,
 * split into chunks where its output alone would not fill the device. */

/* y[rows, n_out] = x[rows, n_in] W^T, plus bias when bias.mem is set on
 * the `real` rows (fc1 leaves its bias to the GELU pass, proj and fc2 to the
 * residual pass). */
static clgqa_status linear_forward(clgqa_runtime *rt, clgqa_view y, clgqa_view x,
                                   clgqa_view weight_t, clgqa_view bias, size_t real, size_t rows,
                                   size_t n_in, size_t n_out) {
    CLGQA_TRY(clgqa_sgemm(rt, 0, 0, rows, n_out, n_in, 1.0f, x, n_in, weight_t, n_out, 0.0f, y,
                          n_out));
    return bias.mem ? clgqa_bias_add(rt, y, bias, real, n_out) : CLGQA_OK;
}

/* Linear backward. It WRITES, never adds: dx = dy W (skipped when dx.mem is
 * NULL: the patch embedding's images need no gradient), so the activation
 * gradient needs no zero fill; dW = dy^T x + grad_beta dW: the weight's
 * only gradient in the step, written with grad_beta 0 (which also spares
 * CLBlast's indirect kernel a copy of dW in), or added to the earlier
 * micro-batches' with grad_beta 1 (gradient accumulation). Split in
 * `chunks` (> 1), dW's partials go to `partials` and the finish that
 * follows adds them into the gradients, which a cycle's first backward
 * zeroes, so a split product accumulates whatever grad_beta. dy's rows past
 * the batch's are zero, so the padded rows add nothing. The bias gradient,
 * a column sum of dy, is not here: see bias_partials. */
static clgqa_status linear_backward(clgqa_runtime *rt, clgqa_view dx, clgqa_view dweight,
                                    size_t chunks, clgqa_view partials, clgqa_view dy,
                                    clgqa_view x, clgqa_view weight, size_t rows, size_t n_in,
                                    size_t n_out, float grad_beta) {
    if (dx.mem)
        CLGQA_TRY(clgqa_sgemm(rt, 0, 0, rows, n_in, n_out, 1.0f, dy, n_out, weight, n_in, 0.0f, dx,
                              n_in));
    if (chunks > 1)
        return clgqa_sgemm_split(rt, n_out, n_in, rows, chunks, dy, n_out, x, n_in, partials);
    return clgqa_sgemm(rt, 1, 0, n_out, n_in, rows, 1.0f, dy, n_out, x, n_in, grad_beta, dweight,
                       n_in);
}

/* Block l's Linear `which`: its weight's transpose, and its weight
 * gradient's chunks and partials. */
static clgqa_view block_weight_t(const clgqa_model *m, int l, model_linear which) {
    return m->weights_t[model_block_linear(l, which)];
}
static size_t block_split(const clgqa_model *m, model_linear which) {
    return m->gemm.split[which];
}
static clgqa_view block_gemm_partials(const clgqa_model *m, model_linear which) {
    return clgqa_view_add(m->gemm_partials, m->gemm.partials[which]);
}

/* Every Linear weight's transpose from the parameters (m->weights_t). */
static clgqa_status transpose_weights(clgqa_model *m) {
    for (int i = 0; i < m->transpose_launches; i++) {
        const model_transposes *t = &m->transposes[i];
        CLGQA_TRY(clgqa_transpose_table(m->rt, t->dst, t->src,
                                        clgqa_view_at(m->transpose_tables, t->table), t->entries,
                                        t->count));
    }
    return CLGQA_OK;
}

/* A saved activation as a GEMM operand: itself in float storage; in half,
 * its `elements` widened into the model's float scratch, which *operand
 * then names (valid until the next widening). */
static clgqa_status gemm_operand(clgqa_model *m, clgqa_view act, size_t elements,
                                 clgqa_view *operand) {
    *operand = act;
    if (m->act_storage == CLGQA_STORAGE_FLOAT)
        return CLGQA_OK;
    *operand = m->act_scratch;
    return clgqa_activations_to_float(m->rt, m->act_storage, m->act_scratch, act, elements);
}

/* A LayerNorm's output and saved statistics, and its parameters. */
typedef struct model_norm {
    clgqa_view out, mean, rstd, weight, bias;
    clgqa_storage storage; /* out's */
} model_norm;

/* out[rows, n_out] = residual + (x[rows, n_in] W^T + bias) * s, then the
 * LayerNorm that reads it: the GEMM (over the padded rows), then one pass
 * over the `real` rows for the bias, the residual and the norm. s is the
 * sample's drop-path scale from branch_scales (one per `tokens` rows), or 1
 * when branch_scales.mem is NULL. */
static clgqa_status residual_linear_norm_forward(clgqa_runtime *rt, clgqa_view out,
                                                 clgqa_view residual, clgqa_view x,
                                                 clgqa_view weight_t, clgqa_view bias,
                                                 clgqa_view branch_scales, size_t tokens,
                                                 const model_norm *norm, size_t real, size_t rows,
                                                 size_t n_in, size_t n_out) {
    CLGQA_TRY(linear_forward(rt, out, x, weight_t, clgqa_view_at(NULL, 0), real, rows, n_in, n_out));
    return clgqa_residual_layernorm_forward(rt, norm->storage, out, residual, out, bias,
                                            branch_scales, tokens, norm->out, norm->mean,
                                            norm->rstd, norm->weight, norm->bias, real, n_out,
                                            MODEL_LN_EPS);
}

/* ---- drop path (timm's stochastic depth) ---- */

enum { BRANCH_ATTENTION = 0, BRANCH_MLP = 1 };

/* Block l's per-sample scales of one branch in a forward of `batch`
 * samples, or none when that forward drops no paths. */
static clgqa_view branch_scales(const clgqa_model *m, int l, int branch, int batch) {
    if (!m->dropped_paths)
        return clgqa_view_at(NULL, 0);
    return clgqa_view_add(m->drop_scales, ((size_t)l * 2 + branch) * (size_t)batch);
}

/* ---- grouping per scheme ---- */

/* The batch's key norms of layer l, summed over every process when a
 * data-parallel hook is set (the reference sums over the whole batch). */
static clgqa_status key_norms(clgqa_model *m, int l, const clgqa_attention_dims *ad,
                              clgqa_view k) {
    CLGQA_TRY(clgqa_key_norms(m->rt, ad, model_key_norms(m, l), k, m->attention_scratch));
    if (!m->hooks.key_norms)
        return CLGQA_OK;
    return m->hooks.key_norms(m->hooks.ctx, l, model_key_norms(m, l), m->dims.kv_heads);
}

static clgqa_status update_grouping(clgqa_model *m, int l, const clgqa_attention_dims *ad,
                                    clgqa_view k, const clgqa_pass *pass, int later_micro_batch) {
    const clgqa_scheme_traits *traits = &m->traits;
    if (!traits->dynamic) /* mhsa, gqa, pgqa: the static split set at creation */
        return CLGQA_OK;
    if (!traits->windowed) { /* kdgqa: recomputed on every forward pass */
        if (!m->hooks.key_norms)
            return clgqa_key_norms_kdgqa(m->rt, ad, model_key_norms(m, l), model_kv_map(m, l),
                                         model_group_counts(m, l), k, m->attention_scratch);
        CLGQA_TRY(key_norms(m, l, ad, k));
        return clgqa_grouping_kdgqa(m->rt, ad, model_key_norms(m, l), model_kv_map(m, l),
                                    model_group_counts(m, l));
    }
    /* dgqa: in training only on window steps of the per-epoch counter (other
     * steps keep the last split and cache); in evaluation every pass. */
    const int training = pass->mode == CLGQA_PASS_TRAIN;
    if (training && (pass->step_in_epoch % m->desc.window_size != 0 || later_micro_batch))
        return CLGQA_OK;
    CLGQA_TRY(key_norms(m, l, ad, k));
    return clgqa_grouping_dgqa(
        m->rt, ad, m->desc.scheme == CLGQA_DGQA_EMA, !training, m->desc.window_size, model_key_norms(m, l),
        model_cache(m, l), model_kv_map(m, l), model_group_counts(m, l), m->desc.seed,
        clgqa_stream_id(CLGQA_RNG_DGQA_FIXUP, (uint32_t)l, (uint64_t)pass->global_step));
}

/* ---- forward ---- */

/* Block l's LayerNorm 1 (which = 0) or 2; the final one for l = num_layers. */
static model_norm block_norm(clgqa_model *m, int l, int which) {
    model_norm n;
    if (l == m->dims.num_layers) {
        n.out = m->lnf, n.mean = m->lnf_mean, n.rstd = m->lnf_rstd;
        n.weight = model_param(m, CLGQA_PARAMS, model_final_tensor(m, MODEL_F_NORM_W));
        n.bias = model_param(m, CLGQA_PARAMS, model_final_tensor(m, MODEL_F_NORM_B));
        n.storage = CLGQA_STORAGE_FLOAT; /* the head's GEMM reads lnf in place */
        return n;
    }
    model_layer *a = &m->layers[l];
    n.out = which ? a->ln2 : a->ln1;
    n.mean = which ? a->ln2_mean : a->ln1_mean;
    n.rstd = which ? a->ln2_rstd : a->ln1_rstd;
    n.weight = model_param(m, CLGQA_PARAMS, model_layer_tensor(l, which ? MODEL_L_NORM2_W
                                                                         : MODEL_L_NORM1_W));
    n.bias = model_param(m, CLGQA_PARAMS, model_layer_tensor(l, which ? MODEL_L_NORM2_B
                                                                       : MODEL_L_NORM1_B));
    n.storage = m->act_storage;
    return n;
}

/* Block l from its LayerNorm 1's output (written by the block before, or
 * by forward for block 0) to x_out and the LayerNorm that reads x_out: the
 * next block's LayerNorm 1, or the final one. */
static clgqa_status block_forward(clgqa_model *m, int l, int batch, const clgqa_pass *pass,
                                  int later_micro_batch) {
    clgqa_runtime *rt = m->rt;
    const clgqa_model_dims *d = &m->dims;
    model_layer *a = &m->layers[l];
    size_t rows = (size_t)batch * d->tokens, gemm_rows = model_gemm_rows(m, rows),
           C = d->embed_dim, kv = (size_t)d->kv_heads * d->head_dim, F = d->mlp_dim;
    clgqa_attention_dims ad = model_attention_dims(m, batch);
#define P(which) model_param(m, CLGQA_PARAMS, model_layer_tensor(l, MODEL_L_##which))
#define WT(which) block_weight_t(m, l, LINEAR_##which)

    /* q, k, v in one GEMM: their weights and biases are contiguous. In half
     * storage the GEMM writes floats into dqkv (free until the backward
     * writes the batch's rows), rounded into qkv; its padded rows, which
     * the backward's weight gradient needs zero, then hold ln1's padded
     * rows times W (not zero when a larger batch wrote those): the
     * backward zeroes them as a larger batch's (backward_rows). */
    const int half = m->act_storage != CLGQA_STORAGE_FLOAT;
    clgqa_view x;
    CLGQA_TRY(gemm_operand(m, a->ln1, gemm_rows * C, &x));
    CLGQA_TRY(linear_forward(rt, half ? m->dqkv : a->qkv, x, WT(QKV), P(Q_B), rows, gemm_rows,
                             C, C + 2 * kv));
    if (half) {
        CLGQA_TRY(clgqa_activations_from_float(rt, m->act_storage, a->qkv, m->dqkv,
                                               rows * (C + 2 * kv)));
        if (m->backward_rows < gemm_rows)
            m->backward_rows = gemm_rows;
    }
    CLGQA_TRY(update_grouping(m, l, &ad, a->k, pass, later_micro_batch));

    int pgqa = m->traits.perturbs;
    clgqa_attention_saved_layout(&ad, pgqa, rt->attention_kernel, a->attention_region, &a->saved);
    clgqa_pgqa noise = {m->desc.seed,
                        clgqa_stream_id(CLGQA_RNG_PGQA, (uint32_t)l, (uint64_t)pass->global_step),
                        m->pgqa_fixed[l]};
    CLGQA_TRY(clgqa_attention_forward(rt, &ad, a->heads_out, a->q, a->k, a->v, model_kv_map(m, l),
                                      pgqa ? &noise : NULL, &a->saved));
    model_norm norm2 = block_norm(m, l, 1);
    CLGQA_TRY(gemm_operand(m, a->heads_out, gemm_rows * C, &x));
    CLGQA_TRY(residual_linear_norm_forward(rt, a->x_mid, a->x_in, x, WT(PROJ),
                                           P(PROJ_B), branch_scales(m, l, BRANCH_ATTENTION, batch),
                                           d->tokens, &norm2, rows, gemm_rows, C, C));

    /* fc1 holds ln2 W1^T without the bias, which the GELU pass adds. In
     * half storage the GEMM writes floats into dgelu (free until the
     * backward writes it whole), rounded into fc1 before the GELU reads it. */
    clgqa_view bias_in_gelu = {NULL, 0};
    CLGQA_TRY(gemm_operand(m, a->ln2, gemm_rows * C, &x));
    CLGQA_TRY(linear_forward(rt, half ? m->dgelu : a->fc1, x, WT(FC1), bias_in_gelu, rows,
                             gemm_rows, C, F));
    if (half)
        CLGQA_TRY(clgqa_activations_from_float(rt, m->act_storage, a->fc1, m->dgelu, rows * F));
    CLGQA_TRY(clgqa_gelu_bias_forward(rt, m->act_storage, a->gelu, a->fc1, P(FC1_B), rows, F));
    model_norm next = block_norm(m, l + 1, 0);
    CLGQA_TRY(gemm_operand(m, a->gelu, gemm_rows * F, &x));
    return residual_linear_norm_forward(rt, a->x_out, a->x_mid, x, WT(FC2), P(FC2_B),
                                        branch_scales(m, l, BRANCH_MLP, batch), d->tokens, &next,
                                        rows, gemm_rows, F, C);
#undef P
#undef WT
}

/* What a forward pass reads: float images, or 8-bit pixels with the
 * normalisation im2col applies to them, and for a training pass of the
 * trainer its mix and place in the optimizer step. */
typedef struct model_input {
    clgqa_view images;
    const float *pixel_mean, *pixel_std; /* NULL: the images are floats */
    const clgqa_train_batch *train;      /* NULL: none (no mix, samples from 0) */
} model_input;

static clgqa_status forward(clgqa_model *m, const model_input *input, clgqa_view labels, int batch,
                            const clgqa_pass *pass) {
    clgqa_runtime *rt = m->rt;
    const clgqa_model_dims *d = &m->dims;
    if (batch < 1 || batch > d->max_batch)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_forward: batch %d out of range [1, %d] (max_batch)", batch,
                          d->max_batch);
    if (pass->step_in_epoch < 0 || pass->global_step < 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_forward: negative step (step_in_epoch %ld, global_step %ld)",
                          pass->step_in_epoch, pass->global_step);
    if (rt->attention_kernel != m->attention_kernel)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_forward: the model's activations are laid out for the %s "
                          "attention kernels, but the runtime now selects %s (choose the kernels "
                          "before creating the model)",
                          clgqa_attention_kernel_name(m->attention_kernel),
                          clgqa_attention_kernel_name(rt->attention_kernel));
    m->batch = 0; /* until the pass is fully enqueued */
    size_t B = batch, rows = B * d->tokens, C = d->embed_dim, classes = d->num_classes,
           patch_rows = B * d->grid * d->grid,
           patch_len = (size_t)d->in_chans * d->patch_size * d->patch_size;
    const int training = pass->mode == CLGQA_PASS_TRAIN;
    const clgqa_image_mix *mix = training && input->train ? &input->train->mix : NULL;
    const int mixed = mix && mix->mode != CLGQA_MIX_NONE;

    /* The weights' transposes the forward's GEMMs read (model_gemm). */
    CLGQA_TRY(transpose_weights(m));
    /* Patch embedding (conv as im2col + GEMM, mixing a training batch's
     * images), class token, positions. */
    if (input->pixel_mean)
        CLGQA_TRY(clgqa_patch_im2col_pixels(rt, m->patches, input->images, B, d->in_chans,
                                            d->img_size, d->patch_size, input->pixel_mean,
                                            input->pixel_std, mix));
    else
        CLGQA_TRY(clgqa_patch_im2col(rt, m->patches, input->images, B, d->in_chans, d->img_size,
                                     d->patch_size));
    CLGQA_TRY(linear_forward(rt, m->patch_out, m->patches, m->weights_t[0],
                             model_param(m, CLGQA_PARAMS, MODEL_T_PATCH_B), patch_rows,
                             model_gemm_rows(m, patch_rows), patch_len, C));
    CLGQA_TRY(clgqa_tokens_forward(rt, m->tokens, m->patch_out,
                                   model_param(m, CLGQA_PARAMS, MODEL_T_CLS),
                                   model_param(m, CLGQA_PARAMS, MODEL_T_POS), B, d->tokens, C));

    /* Block 0's LayerNorm 1; every other LayerNorm runs in the pass that
     * adds the residual before it. */
    model_norm norm1 = block_norm(m, 0, 0);
    CLGQA_TRY(clgqa_layernorm_forward(rt, norm1.storage, norm1.out, norm1.mean, norm1.rstd,
                                      m->layers[0].x_in, norm1.weight, norm1.bias, rows, C,
                                      MODEL_LN_EPS));
    /* Every block's drop-path scales in one launch: sample k of the
     * optimizer step draws element 2k (attention) and 2k + 1 (MLP) of its
     * block's stream. */
    m->dropped_paths = training && m->drop_path > 0;
    if (m->dropped_paths)
        CLGQA_TRY(clgqa_drop_path_scales(
            rt, m->drop_scales, clgqa_view_at(m->drop_rates, 0), (size_t)d->num_layers, B,
            (uint64_t)(input->train ? input->train->first_sample : 0), m->desc.seed,
            clgqa_stream_id(CLGQA_RNG_DROP_PATH, 0, (uint64_t)pass->global_step)));
    const int later_micro_batch = input->train && input->train->micro_batch > 0;
    for (int l = 0; l < d->num_layers; l++)
        CLGQA_TRY(block_forward(m, l, batch, pass, later_micro_batch));

    /* The final LayerNorm ran on every token (the op is row-wise, only
     * token 0 is used); head on the class token: rows of lnf with stride
     * P*C. */
    CLGQA_TRY(clgqa_sgemm(rt, 0, 0, B, classes, C, 1.0f, m->lnf, (size_t)d->tokens * C,
                          m->weights_t[model_linear_count(m) - 1], classes, 0.0f, m->logits,
                          classes));
    CLGQA_TRY(clgqa_bias_add(rt, m->logits,
                             model_param(m, CLGQA_PARAMS, model_final_tensor(m, MODEL_F_HEAD_B)), B,
                             classes));

    /* Training targets are soft when smoothed or mixed (timm's
     * mixup_target); the accuracies compare with each image's own label. */
    m->soft_targets = labels.mem && training && (m->label_smoothing > 0 || mixed);
    if (labels.mem) {
        if (m->soft_targets)
            CLGQA_TRY(clgqa_soft_targets(rt, m->targets, labels, B, classes, m->label_smoothing,
                                         mixed ? input->train->label_weight : 1.0));
        const clgqa_view hard = {NULL, 0};
        CLGQA_TRY(clgqa_crossentropy_forward(rt, m->losses, m->correct, m->top5, m->probs,
                                             m->logits, labels, m->soft_targets ? m->targets : hard,
                                             B, classes));
        CLGQA_TRY(clgqa_sum(rt, m->metrics, m->losses, B));
        CLGQA_TRY(clgqa_sum(rt, clgqa_view_add(m->metrics, 1), m->correct, B));
        CLGQA_TRY(clgqa_sum(rt, clgqa_view_add(m->metrics, 2), m->top5, B));
        CLGQA_TRY(clgqa_accumulate(rt, clgqa_view_add(m->metrics, 3), m->metrics, 3));
        m->samples += batch;
    }
    m->labels = labels;
    m->batch = batch;
    return CLGQA_OK;
}

clgqa_status clgqa_model_forward(clgqa_model *m, clgqa_view images, clgqa_view labels, int batch,
                                 const clgqa_pass *pass) {
    const model_input input = {images, NULL, NULL, NULL};
    return forward(m, &input, labels, batch, pass);
}

static clgqa_status forward_pixels(clgqa_model *m, clgqa_view pixels, clgqa_view labels,
                                   int batch, const float *mean, const float *std,
                                   const clgqa_pass *pass, const clgqa_train_batch *train) {
    if (!mean || !std)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_forward_pixels: the normalisation's mean and std are NULL");
    if (m->dims.in_chans > 3)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_forward_pixels: %d channels; 8-bit pixels have at most 3",
                          m->dims.in_chans);
    for (int c = 0; c < m->dims.in_chans; c++)
        if (!(std[c] > 0.0f))
            return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                              "clgqa_model_forward_pixels: std[%d] must be positive, not %g", c,
                              (double)std[c]);
    const model_input input = {pixels, mean, std, train};
    return forward(m, &input, labels, batch, pass);
}

clgqa_status clgqa_model_forward_pixels(clgqa_model *m, clgqa_view pixels, clgqa_view labels,
                                        int batch, const float *mean, const float *std,
                                        const clgqa_pass *pass) {
    return forward_pixels(m, pixels, labels, batch, mean, std, pass, NULL);
}

clgqa_status clgqa_model_forward_train(clgqa_model *m, clgqa_view pixels, clgqa_view labels,
                                       int batch, const float *mean, const float *std,
                                       const clgqa_pass *pass, const clgqa_train_batch *train) {
    if (pass->mode != CLGQA_PASS_TRAIN)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_forward_train: not a training pass");
    if (train->first_sample < 0 || !(train->label_weight >= 0 && train->label_weight <= 1))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_forward_train: first sample %ld "
                          "and label weight %g (in [0, 1])", train->first_sample,
                          train->label_weight);
    return forward_pixels(m, pixels, labels, batch, mean, std, pass, train);
}

/* ---- backward ---- */

/* Tells the gradients_ready hook that the gradients of tensors
 * [first_tensor, end_tensor) are final. */
static clgqa_status gradients_ready(clgqa_model *m, int first_tensor, int end_tensor) {
    if (!m->hooks.gradients_ready || m->defer_gradients)
        return CLGQA_OK;
    size_t first = m->tensors[first_tensor].offset;
    size_t end = end_tensor < m->tensor_count ? m->tensors[end_tensor].offset : m->param_count;
    return m->hooks.gradients_ready(m->hooks.ctx, first, end - first);
}

/* Stage 2 of the column sums of block `group` (num_layers: the final
 * tensors'), whose partials are all stored by now. */
static clgqa_status finish_column_sums(clgqa_model *m, int group) {
    const model_finish *f = &m->finishes[group];
    for (int i = 0; i < f->launches; i++) {
        const model_finish_launch *launch = &f->launch[i];
        CLGQA_TRY(clgqa_column_sums_finish(m->rt, launch->grads, launch->partials,
                                           clgqa_view_at(m->finish_tables, launch->table),
                                           launch->sums, launch->count));
    }
    return CLGQA_OK;
}

/* Partials at `offset` in block l's slot (model_partials). */
static clgqa_view block_partials(const clgqa_model *m, int l, size_t offset) {
    return clgqa_view_add(m->column_partials, (size_t)(l % 2) * m->partials.slot + offset);
}

/* ---- where each Linear's bias gradient comes from ----
 * A bias gradient is the column sum of the Linear's dy over the B*P rows,
 * in two stages (ops.h): partial sums stored in block l's slot, then the
 * block's one finish (finish_column_sums). No extra pass reads dy for it:
 * the op that writes dy stores the partials in the same pass.
 *   qkv:  d(qkv) is written by the attention backward; one column-partials
 *         pass follows it (block_backward).
 *   proj: dy is the residual stream's gradient once LayerNorm 2's backward
 *         has added into it; that pass stores its column sums.
 *   fc1:  dy is written by the GELU backward, which stores them.
 *   fc2:  dy is the residual stream's gradient at the block's output, final
 *         once the LayerNorm above has added into it: the next block's
 *         LayerNorm 1 or the final LayerNorm (clgqa_model_backward) stores
 *         them, in block l's slot (the other slot from the next block's).
 * The head's bias sums dlogits in a column-partials pass, and the patch
 * embedding's sums dpatch_out in a bias_backward pass, each right after its
 * dy is made (clgqa_model_backward). */
typedef enum block_bias { BIAS_QKV, BIAS_PROJ, BIAS_FC1, BIAS_FC2 } block_bias;
static clgqa_view bias_partials(const clgqa_model *m, int l, block_bias which) {
    const model_partials *pp = &m->partials;
    const size_t offsets[] = {pp->qkv_b, pp->proj_b, pp->fc1_b, pp->fc2_b};
    return block_partials(m, l, offsets[which]);
}

/* A branch's output gradient under drop path: dres scaled per sample into
 * the batch's rows of `scratch` (dheads_out or dln), whose padded rows its
 * Linear's weight gradient sums over: they are zero (dln is cleared every
 * backward, dheads_out where a larger batch's backward wrote; the GEMMs
 * write zeros there); its column sums are the Linear's bias partials. */
static clgqa_status scaled_branch_gradient(clgqa_model *m, clgqa_view scratch,
                                           clgqa_view scales, clgqa_view bias_sums, size_t rows) {
    size_t C = m->dims.embed_dim;
    CLGQA_TRY(clgqa_scale_rows(m->rt, scratch, m->dres, scales, m->dims.tokens, rows, C));
    return clgqa_column_partials(m->rt, bias_sums, m->partials.ln_chunks, scratch, rows, C);
}

/* On entry m->dres holds the gradient of the block's x_out; on return, of its
 * x_in. LayerNorm backward accumulates its input gradient straight into
 * dres, which is also the residual path's gradient. With drop path a
 * branch's output was scaled per sample (x_out = x_mid + s * fc2(...)), so
 * its Linear sees s * dres, made in a scratch buffer that also gives the
 * Linear's bias sums; the LayerNorm above then stores none for it. */
static clgqa_status block_backward(clgqa_model *m, int l, float grad_beta) {
    clgqa_runtime *rt = m->rt;
    const clgqa_model_dims *d = &m->dims;
    const model_partials *pp = &m->partials;
    model_layer *a = &m->layers[l];
    size_t rows = (size_t)m->batch * d->tokens, gemm_rows = model_gemm_rows(m, rows),
           C = d->embed_dim, kv = (size_t)d->kv_heads * d->head_dim, F = d->mlp_dim;
    clgqa_attention_dims ad = model_attention_dims(m, m->batch);
    const clgqa_view none = {NULL, 0};
#define P(which) model_param(m, CLGQA_PARAMS, model_layer_tensor(l, MODEL_L_##which))
#define G(which) model_param(m, CLGQA_GRADS, model_layer_tensor(l, MODEL_L_##which))
#define SPLIT(which) block_split(m, LINEAR_##which), block_gemm_partials(m, LINEAR_##which)

    /* MLP: x_out = x_mid + s_mlp * fc2(gelu(fc1(ln2(x_mid)))); dheads_out
     * is free until the attention's backward. */
    clgqa_view dmlp = m->dres;
    if (m->dropped_paths) {
        dmlp = m->dheads_out;
        CLGQA_TRY(scaled_branch_gradient(m, dmlp, branch_scales(m, l, BRANCH_MLP, m->batch),
                                         bias_partials(m, l, BIAS_FC2), rows));
    }
    clgqa_view x;
    CLGQA_TRY(gemm_operand(m, a->gelu, gemm_rows * F, &x));
    CLGQA_TRY(linear_backward(rt, m->dgelu, G(FC2_W), SPLIT(FC2), dmlp, x, P(FC2_W), gemm_rows,
                              F, C, grad_beta));
    CLGQA_TRY(clgqa_gelu_bias_backward(rt, m->act_storage, m->dfc1,
                                       bias_partials(m, l, BIAS_FC1), pp->fc1_chunks, m->dgelu,
                                       a->fc1, P(FC1_B), rows, F));
    CLGQA_TRY(gemm_operand(m, a->ln2, gemm_rows * C, &x));
    CLGQA_TRY(linear_backward(rt, m->dln, G(FC1_W), SPLIT(FC1), m->dfc1, x, P(FC1_W),
                              gemm_rows, C, F, grad_beta));
    CLGQA_TRY(clgqa_layernorm_backward(rt, m->dres, block_partials(m, l, pp->norm2),
                                       m->dropped_paths ? none : bias_partials(m, l, BIAS_PROJ),
                                       pp->ln_chunks, m->dln, a->x_mid, a->ln2_mean, a->ln2_rstd,
                                       P(NORM2_W), rows, C));

    /* Attention: x_mid = x_in + s_attention * proj(attention(q, k, v of
     * ln1(x_in))); dln is free until the q/k/v GEMM writes it. */
    clgqa_view dattention = m->dres;
    if (m->dropped_paths) {
        dattention = m->dln;
        CLGQA_TRY(scaled_branch_gradient(m, dattention,
                                         branch_scales(m, l, BRANCH_ATTENTION, m->batch),
                                         bias_partials(m, l, BIAS_PROJ), rows));
    }
    CLGQA_TRY(gemm_operand(m, a->heads_out, gemm_rows * C, &x));
    CLGQA_TRY(linear_backward(rt, m->dheads_out, G(PROJ_W), SPLIT(PROJ), dattention, x,
                              P(PROJ_W), gemm_rows, C, C, grad_beta));
    /* The attention backward writes d(qkv) whole (no fill); one GEMM each
     * for dx and dW over the fused projection. */
    CLGQA_TRY(clgqa_attention_backward(rt, &ad, m->dqkv, clgqa_view_add(m->dqkv, C),
                                       clgqa_view_add(m->dqkv, C + kv), m->dheads_out,
                                       a->heads_out, a->q, a->k, a->v, model_kv_map(m, l),
                                       m->traits.perturbs, &a->saved,
                                       m->attention_scratch));
    CLGQA_TRY(gemm_operand(m, a->ln1, gemm_rows * C, &x));
    CLGQA_TRY(linear_backward(rt, m->dln, G(Q_W), SPLIT(QKV), m->dqkv, x, P(Q_W), gemm_rows,
                              C, C + 2 * kv, grad_beta));
    CLGQA_TRY(clgqa_column_partials(rt, bias_partials(m, l, BIAS_QKV), pp->qkv_chunks, m->dqkv,
                                    rows, C + 2 * kv));
    /* Block 0's input gradient feeds the tokens, not a Linear's bias; with
     * drop path the block below makes its fc2 bias sums itself. */
    clgqa_view fc2_below = l > 0 && !m->dropped_paths ? bias_partials(m, l - 1, BIAS_FC2) : none;
    CLGQA_TRY(clgqa_layernorm_backward(rt, m->dres, block_partials(m, l, pp->norm1), fc2_below,
                                       pp->ln_chunks, m->dln, a->x_in, a->ln1_mean, a->ln1_rstd,
                                       P(NORM1_W), rows, C));
    return finish_column_sums(m, l);
#undef P
#undef G
#undef SPLIT
}

clgqa_status clgqa_model_backward(clgqa_model *m) {
    if (!m->batch || !m->labels.mem)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_backward: the last forward pass had no labels");
    return clgqa_model_backward_scaled(m, 1.0f / (float)m->batch, 0);
}

clgqa_status clgqa_model_backward_scaled(clgqa_model *m, float loss_scale, int accumulate) {
    clgqa_runtime *rt = m->rt;
    const clgqa_model_dims *d = &m->dims;
    if (!m->batch || !m->labels.mem)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_model_backward: the last forward pass had no labels");
    if (!(loss_scale > 0) || !isfinite(loss_scale))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_backward: loss scale %g is not "
                          "positive", (double)loss_scale);
    size_t B = m->batch, rows = B * d->tokens, C = d->embed_dim, classes = d->num_classes,
           patch_rows = B * d->grid * d->grid,
           patch_len = (size_t)d->in_chans * d->patch_size * d->patch_size;
    int L = d->num_layers;
    int norm_w = model_final_tensor(m, MODEL_F_NORM_W);
    int head_w = model_final_tensor(m, MODEL_F_HEAD_W);
    const model_partials *pp = &m->partials;
    clgqa_view final_partials = clgqa_view_add(m->column_partials, 2 * pp->slot);
    /* Weight gradients are written (beta 0) by a cycle's first micro-batch
     * and added to (beta 1) by the others; the column sums and the tokens'
     * gradients always add, onto a buffer zeroed first. */
    const float grad_beta = accumulate ? 1.0f : 0.0f;

    for (int c = 0; c < m->chunk_count && !accumulate; c++) {
        size_t floats = 0;
        clgqa_view grads = clgqa_model_chunk(m, CLGQA_GRADS, c, NULL, &floats);
        CLGQA_TRY(clgqa_buffer_fill(rt, grads, floats, 0.0f));
    }
    /* dres, dln (only its class-token rows get written below) and dlogits,
     * one after another in one buffer; dres's padded rows stay zero, which
     * the weight gradients summing over them need (linear_backward). */
    size_t dlogits_floats = (size_t)d->max_batch * classes;
    if (m->dln.mem == m->dres.mem && m->dlogits.mem == m->dres.mem) {
        CLGQA_TRY(clgqa_buffer_fill(rt, m->dres, m->dlogits.offset + dlogits_floats - m->dres.offset,
                                    0.0f));
    } else { /* a model split over buffers too small to hold the three together */
        CLGQA_TRY(clgqa_buffer_fill(rt, m->dres, m->gemm.rows * C, 0.0f));
        CLGQA_TRY(clgqa_buffer_fill(rt, m->dln, m->gemm.rows * C, 0.0f));
        CLGQA_TRY(clgqa_buffer_fill(rt, m->dlogits, dlogits_floats, 0.0f));
    }
    /* So do those of dqkv and dfc1, which a larger batch's backward may have
     * written, or in half storage the qkv GEMM of a forward (dqkv's padded
     * rows: block_forward): zeroed when either did. And those of dheads_out, drop path's
     * scratch for the MLP branch (scaled_branch_gradient writes the batch's
     * rows only; the GEMMs that write it over the padded rows write zeros
     * there, from zero rows). */
    if (m->backward_rows > rows) {
        size_t stale = m->backward_rows - rows, qkv = (size_t)model_qkv_width(m);
        CLGQA_TRY(clgqa_buffer_fill(rt, clgqa_view_add(m->dqkv, rows * qkv), stale * qkv, 0.0f));
        CLGQA_TRY(clgqa_buffer_fill(rt, clgqa_view_add(m->dfc1, rows * d->mlp_dim),
                                    stale * d->mlp_dim, 0.0f));
        CLGQA_TRY(clgqa_buffer_fill(rt, clgqa_view_add(m->dheads_out, rows * C), stale * C,
                                    0.0f));
    }
    m->backward_rows = rows;

    /* Cross-entropy (against the soft targets when the forward used them)
     * -> head -> final LayerNorm, whose input gradient's column sums are the
     * last block's fc2 bias gradient (made by the block itself under drop
     * path). With the loss scaler, dloss times its device scale. */
    const clgqa_view hard_labels = {NULL, 0};
    clgqa_view device_scale = {NULL, 0};
    if (m->loss_scaling)
        device_scale = clgqa_view_add(m->scaler, CLGQA_SCALER_SCALE);
    CLGQA_TRY(clgqa_crossentropy_backward(rt, m->dlogits, m->probs, m->labels,
                                          m->soft_targets ? m->targets : hard_labels, B, classes,
                                          loss_scale, device_scale));
    CLGQA_TRY(clgqa_sgemm(rt, 1, 0, classes, C, B, 1.0f, m->dlogits, classes, m->lnf,
                          (size_t)d->tokens * C, grad_beta, model_param(m, CLGQA_GRADS, head_w), C));
    CLGQA_TRY(clgqa_column_partials(rt, clgqa_view_add(final_partials, pp->head_b),
                                    pp->head_chunks, m->dlogits, B, classes));
    CLGQA_TRY(clgqa_sgemm(rt, 0, 0, B, C, classes, 1.0f, m->dlogits, classes,
                          model_param(m, CLGQA_PARAMS, head_w), C, 0.0f, m->dln,
                          (size_t)d->tokens * C));
    const clgqa_view none = {NULL, 0};
    CLGQA_TRY(clgqa_layernorm_backward(
        rt, m->dres, clgqa_view_add(final_partials, pp->norm),
        m->dropped_paths ? none : bias_partials(m, L - 1, BIAS_FC2), pp->ln_chunks, m->dln,
        m->layers[L - 1].x_out, m->lnf_mean, m->lnf_rstd, model_param(m, CLGQA_PARAMS, norm_w),
        rows, C));
    CLGQA_TRY(finish_column_sums(m, L));
    CLGQA_TRY(gradients_ready(m, norm_w, m->tensor_count));

    for (int l = L - 1; l >= 0; l--) {
        CLGQA_TRY(block_backward(m, l, grad_beta));
        CLGQA_TRY(gradients_ready(m, model_layer_tensor(l, 0), model_layer_tensor(l + 1, 0)));
    }

    /* Tokens -> class token, positions, patch embedding (no image gradient). */
    CLGQA_TRY(clgqa_buffer_fill(rt, m->dpatch_out, m->gemm.patch_rows * C, 0.0f));
    CLGQA_TRY(clgqa_tokens_backward(rt, m->dpatch_out, model_param(m, CLGQA_GRADS, MODEL_T_CLS),
                                    model_param(m, CLGQA_GRADS, MODEL_T_POS), m->dres, B, d->tokens,
                                    C));
    clgqa_view no_input_gradient = {NULL, 0};
    CLGQA_TRY(linear_backward(rt, no_input_gradient, model_param(m, CLGQA_GRADS, MODEL_T_PATCH_W),
                              m->gemm.patch_split, m->gemm_partials, m->dpatch_out, m->patches,
                              model_param(m, CLGQA_PARAMS, MODEL_T_PATCH_W),
                              model_gemm_rows(m, patch_rows), patch_len, C, grad_beta));
    CLGQA_TRY(finish_column_sums(m, L + 1)); /* the patch weight's split, if any */
    CLGQA_TRY(clgqa_bias_backward(rt, model_param(m, CLGQA_GRADS, MODEL_T_PATCH_B), m->dpatch_out,
                                  patch_rows, C));
    return gradients_ready(m, 0, MODEL_T_BLOCKS);
}

/* ---- AdamW ---- */

clgqa_status clgqa_model_step(clgqa_model *m, const clgqa_adamw *adamw, long step) {
    if (step < 1)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_model_step: step counts from 1, got %ld",
                          step);
    const clgqa_adamw_hparams hp = {adamw->lr, adamw->beta1, adamw->beta2, adamw->eps,
                                    adamw->weight_decay};
    clgqa_view scaler = {NULL, 0};
    if (m->loss_scaling) { /* GradScaler: an inf or a NaN anywhere skips the step */
        scaler = m->scaler;
        CLGQA_TRY(clgqa_buffer_fill(m->rt, clgqa_view_add(scaler, CLGQA_SCALER_FOUND_INF), 1,
                                    0.0f));
        for (int c = 0; c < m->chunk_count; c++) {
            size_t floats = 0;
            clgqa_view grads = clgqa_model_chunk(m, CLGQA_GRADS, c, NULL, &floats);
            CLGQA_TRY(clgqa_grad_check(m->rt, scaler, grads, floats));
        }
    }
    clgqa_view grad_scale = {NULL, 0};
    if (adamw->clip_grad_norm > 0.0f) {
        /* The gradient's squared norm, summed over the chunks when split;
         * with the scaler, the unscaled gradient's (the scaled one's
         * square could overflow), as PyTorch clips after unscale_. */
        clgqa_view divisor = {NULL, 0};
        if (m->loss_scaling)
            divisor = clgqa_view_add(scaler, CLGQA_SCALER_SCALE);
        for (int c = 0; c < m->chunk_count; c++) {
            size_t floats = 0;
            clgqa_view grads = clgqa_model_chunk(m, CLGQA_GRADS, c, NULL, &floats);
            CLGQA_TRY(clgqa_sum_squares_divided(
                m->rt,
                m->chunk_count == 1 ? m->grad_sum_squares : clgqa_view_add(m->chunk_sum_squares, c),
                grads, floats, divisor));
        }
        if (m->chunk_count > 1)
            CLGQA_TRY(clgqa_sum(m->rt, m->grad_sum_squares, m->chunk_sum_squares,
                                (size_t)m->chunk_count));
        CLGQA_TRY(clgqa_clip_factor(m->rt, m->grad_scale, m->grad_sum_squares,
                                    adamw->clip_grad_norm));
        grad_scale = m->grad_scale;
    }
    for (int c = 0; c < m->chunk_count; c++) {
        size_t floats = 0;
        clgqa_view params = clgqa_model_chunk(m, CLGQA_PARAMS, c, NULL, &floats);
        const clgqa_no_decay no_decay = {clgqa_view_at(m->no_decay_edges, 0), m->no_decay_count,
                                         m->chunk_first[c]};
        CLGQA_TRY(clgqa_adamw_step(m->rt, params, clgqa_model_chunk(m, CLGQA_GRADS, c, NULL, NULL),
                                   clgqa_model_chunk(m, CLGQA_ADAM_M, c, NULL, NULL),
                                   clgqa_model_chunk(m, CLGQA_ADAM_V, c, NULL, NULL), floats, &hp,
                                   step, grad_scale, adamw->no_weight_decay ? &no_decay : NULL,
                                   scaler));
    }
    if (m->loss_scaling)
        CLGQA_TRY(clgqa_loss_scale_update(m->rt, scaler, CLGQA_LOSS_SCALE_GROWTH_INTERVAL));
    return CLGQA_OK;
}
