/* Private layout of clgqa_model, shared by model.c (construction,
 * tensor table, state) and model_pass.c (forward, backward, AdamW). */
#ifndef CLGQA_MODEL_INTERNAL_H
#define CLGQA_MODEL_INTERNAL_H

#include "attention.h"
#include "gemm.h"
#include "model_private.h"
#include "ops.h"
#include "runtime_internal.h"
#include "scheme.h"

#define MODEL_LN_EPS 1e-6f
#define MODEL_FLAT_BUFFERS 5 /* parameters, gradients, AdamW's m and v, the EMA */

/* The tensor table: the embedding tensors, MODEL_L_TENSORS per block, then
 * the final ones. Each list is written once as X(id, state_dict name, ndim,
 * shape...) (C = embed_dim, P = tokens, p = patch_size, in = in_chans,
 * K = num_classes), which gives its indices and build_tensor_table's
 * entries. */
#define MODEL_EMBED_TENSORS(X)                              \
    X(CLS, "cls_token", 3, 1, 1, C, 0)                      \
    X(POS, "pos_embed", 3, 1, P, C, 0)                      \
    X(PATCH_W, "patch_embed.proj.weight", 4, C, in, p, p)   \
    X(PATCH_B, "patch_embed.proj.bias", 1, C, 0, 0, 0)
#define MODEL_FINAL_TENSORS(X)                   \
    X(NORM_W, "norm.weight", 1, C, 0, 0, 0)      \
    X(NORM_B, "norm.bias", 1, C, 0, 0, 0)        \
    X(HEAD_W, "head.weight", 2, K, C, 0, 0)      \
    X(HEAD_B, "head.bias", 1, K, 0, 0, 0)
enum {
#define MODEL_T_INDEX(id, name, ndim, s0, s1, s2, s3) MODEL_T_##id,
    MODEL_EMBED_TENSORS(MODEL_T_INDEX)
#undef MODEL_T_INDEX
    MODEL_T_BLOCKS
};

/* A block's tensors, in table order: X(id, state_dict suffix,
 * rows, cols, init) gives MODEL_L_<id>, the name blocks.{i}.<suffix>, the
 * shape ([rows, cols] of a Linear weight, [rows] when cols is 0; C =
 * embed_dim, KV = G * head_dim, F = mlp_dim) and the tensor's position in
 * the block before q, k, v were made contiguous (its Philox init stream, so
 * a seed keeps its initial weights). The q, k, v weights are contiguous (one
 * [C + 2 KV, C] GEMM operand), then their biases (one [C + 2 KV] bias). */
#define MODEL_BLOCK_TENSORS(X)                \
    X(NORM1_W, "norm1.weight", C, 0, 0)      \
    X(NORM1_B, "norm1.bias", C, 0, 1)        \
    X(Q_W, "attn.q.weight", C, C, 2)         \
    X(K_W, "attn.k.weight", KV, C, 4)        \
    X(V_W, "attn.v.weight", KV, C, 6)        \
    X(Q_B, "attn.q.bias", C, 0, 3)           \
    X(K_B, "attn.k.bias", KV, 0, 5)          \
    X(V_B, "attn.v.bias", KV, 0, 7)          \
    X(PROJ_W, "attn.proj.weight", C, C, 8)   \
    X(PROJ_B, "attn.proj.bias", C, 0, 9)     \
    X(NORM2_W, "norm2.weight", C, 0, 10)     \
    X(NORM2_B, "norm2.bias", C, 0, 11)       \
    X(FC1_W, "mlp.fc1.weight", F, C, 12)     \
    X(FC1_B, "mlp.fc1.bias", F, 0, 13)       \
    X(FC2_W, "mlp.fc2.weight", C, F, 14)     \
    X(FC2_B, "mlp.fc2.bias", C, 0, 15)
enum {
#define MODEL_L_INDEX(id, suffix, rows, cols, init) MODEL_L_##id,
    MODEL_BLOCK_TENSORS(MODEL_L_INDEX)
#undef MODEL_L_INDEX
    MODEL_L_TENSORS
};
enum {
#define MODEL_F_INDEX(id, name, ndim, s0, s1, s2, s3) MODEL_F_##id,
    MODEL_FINAL_TENSORS(MODEL_F_INDEX)
#undef MODEL_F_INDEX
    MODEL_F_TENSORS
};

/* Activations one block saves for backward (views into its arena buffer). */
typedef struct model_layer {
    clgqa_view x_in; /* residual stream in: the previous block's x_out, or the tokens */
    clgqa_view ln1, ln1_mean, ln1_rstd;
    clgqa_view qkv;              /* fused projection [B*P, C + 2Gd] */
    clgqa_view q, k, v;          /* its column blocks, rows C + 2Gd apart */
    clgqa_view attention_region; /* carved by clgqa_attention_saved_layout per batch */
    clgqa_attention_saved saved; /* laid out for the last forward's batch */
    clgqa_view heads_out;        /* attention output, heads concatenated [B*P, C] */
    clgqa_view x_mid;            /* x_in + proj(heads_out) */
    clgqa_view ln2, ln2_mean, ln2_rstd;
    clgqa_view fc1, gelu; /* fc1: ln2 W1^T before its bias; gelu(fc1 + b1) */
    clgqa_view x_out; /* x_mid + fc2(gelu) */
} model_layer;

/* The backward's column sums (bias and LayerNorm parameter gradients) in
 * two stages (ops.h): the ops store partial sums in column_partials,
 * and one finish per block (and one for the final tensors) adds them up just
 * before the gradients_ready hook. A block's partials sit in slot l % 2:
 * LayerNorm 1 of block l also stores those of block l - 1's fc2 bias (its
 * input gradient's column sums), in the other slot, whose block is not
 * finished yet. Offsets are floats into a slot (into the final region). */
typedef struct model_partials {
    size_t ln_chunks, fc1_chunks, qkv_chunks, head_chunks;
    size_t slot;                                      /* floats per block slot */
    size_t fc2_b, norm2, proj_b, fc1_b, qkv_b, norm1; /* in a slot */
    size_t head_b, norm, final; /* in the final region; its floats */
} model_partials;
/* Sums a finish adds up at most: a block's 8 column sums (2 LayerNorms x 2,
 * 4 biases) and its 4 weight gradients when split. */
#define MODEL_FINISH_SUMS 12
/* One finish launch: sums whose gradients share a buffer and whose
 * partials share one (a block's all do unless the model is split over
 * several buffers). */
typedef struct model_finish_launch {
    clgqa_view grads;    /* the gradients' buffer, at offset 0 */
    clgqa_view partials; /* the partials' buffer, at offset 0 */
    size_t table;        /* the launch's first uint in finish_tables */
    size_t count;
    clgqa_column_sum sums[MODEL_FINISH_SUMS];
} model_finish_launch;
typedef struct model_finish {
    int launches;
    model_finish_launch launch[MODEL_FINISH_SUMS];
} model_finish;

/* ---- the GEMMs' layout (docs/design.md, "GEMMs without copies") ----
 * The model's products, for their weights' transposes and the split-K of
 * their weight gradients: the patch embedding, a block's four Linears, the
 * head. */
typedef enum model_linear {
    LINEAR_QKV,
    LINEAR_PROJ,
    LINEAR_FC1,
    LINEAR_FC2,
    LINEAR_BLOCK, /* Linears per block */
} model_linear;
/* Where the products' operands lie and how the weight gradients split.
 * Every [rows, .] activation a GEMM reads or writes has `rows` rows: the
 * largest batch's B * P rounded up to the tiles, and up to the chunks of the
 * split products; a pass over batch B multiplies over B * P rounded up to
 * the tiles (the rows past B * P hold values no kernel reads, and zeros
 * where a weight gradient sums over them: model_pass.c). Likewise for the
 * patch rows. */
typedef struct model_gemm {
    clgqa_gemm_tiles tiles;
    size_t rows, patch_rows;
    size_t split[LINEAR_BLOCK], patch_split; /* chunks of each weight gradient */
    size_t partials[LINEAR_BLOCK];           /* their partials in gemm_partials */
    size_t partial_floats;                   /* gemm_partials' floats */
} model_gemm;
/* One transposes launch: weights of one parameter buffer into one arena
 * buffer. */
typedef struct model_transposes {
    clgqa_view src, dst; /* the buffers, at offset 0 */
    size_t table;        /* the launch's first uint in transpose_tables */
    size_t count;
    clgqa_transpose *entries;
} model_transposes;

struct clgqa_model {
    clgqa_runtime *rt;
    clgqa_model_desc desc; /* num_kv_heads is G, also for mhsa */
    /* The scheme's row (scheme.h), a copy: the tests' frozen grouping is a
     * row whose grouping is static (clgqa_model_freeze_grouping). */
    clgqa_scheme_traits traits;
    clgqa_model_dims dims;
    /* The attention variant the arena was sized for (rt->attention_kernel at
     * creation); a pass refuses to run with another. */
    clgqa_attention_kernel attention_kernel;

    clgqa_tensor_info *tensors;
    int tensor_count;
    size_t param_count;
    /* The flat buffers (indexed by clgqa_model_buffer; the EMA's NULL until
     * clgqa_model_ema_start), each split the same way into chunks of whole
     * tensors, so that no allocation exceeds the device's largest: chunk c
     * holds flat floats [chunk_first[c], chunk_first[c + 1]). One chunk
     * unless the model is that large. */
    cl_mem *flat[MODEL_FLAT_BUFFERS];
    int chunk_count;
    size_t *chunk_first;  /* [chunk_count + 1] */
    int *tensor_chunk;    /* [tensor_count] */

    /* Activation arena, allocated at creation: views carved one after
     * another from buffers of at most the device's largest allocation
     * (usually one; a block's views stay in one buffer when they fit). */
    cl_mem *arena;
    int arena_count;
    size_t arena_bytes; /* the arena's buffers together */
    /* How the blocks' activations saved for the backward are stored (ln1,
     * qkv, heads_out, attention's saved probabilities and PGQA's A, ln2,
     * fc1, gelu; docs/design.md, "Mixed precision"):
     * float, or half under precision 16-mixed, each then a half view (its
     * offset counts halves) read by the GEMMs through act_scratch, a float
     * copy widened before each GEMM that reads one ({NULL, 0} in float). */
    clgqa_storage act_storage;
    clgqa_view act_scratch; /* [gemm rows, max(C, F)] */
    model_layer *layers;
    clgqa_view patches;   /* im2col [B*n, in_chans*p*p] */
    clgqa_view patch_out; /* [B*n, C] */
    clgqa_view tokens;    /* [B*P, C], block 0's x_in */
    clgqa_view lnf, lnf_mean, lnf_rstd;
    clgqa_view logits, probs, losses, correct, top5; /* [B, classes], [B] */
    clgqa_view targets; /* soft targets [B, classes] of a training pass */
    clgqa_view metrics; /* the last batch's loss, correct and top-5 sums, then running sums
                           of the three (MODEL_METRICS floats) */
    clgqa_view drop_scales; /* drop path's [L][2][B] per-sample branch scales */
    /* backward scratch, reused by every block */
    clgqa_view dres;    /* gradient of the residual stream [B*P, C] */
    clgqa_view dln;     /* gradient of a LayerNorm output [B*P, C] */
    clgqa_view dlogits; /* [B, classes]; dres, dln, dlogits contiguous (one fill) */
    clgqa_view dgelu, dfc1;             /* [B*P, 4C] */
    clgqa_view dheads_out;              /* [B*P, C] */
    clgqa_view dqkv;                    /* [B*P, C + 2Gd], as qkv */
    clgqa_view attention_scratch;       /* also the key norms' scratch */
    clgqa_view dpatch_out;              /* [B*n, C] */
    clgqa_view column_partials; /* two block slots, then the final region */
    model_partials partials;
    model_finish *finishes; /* [L + 2]: the blocks', the final tensors', the patch weight's */
    cl_mem finish_tables;   /* their device tables (clgqa_column_sum_encode) */
    model_gemm gemm;
    clgqa_view gemm_partials; /* split weight gradients' partials (model_gemm) */
    /* Each Linear weight transposed ([n_in, n_out]), the forward's GEMM
     * operand, written from the parameters at the start of every forward:
     * the patch embedding's, each block's LINEAR_BLOCK, the head's. */
    clgqa_view *weights_t;
    model_transposes *transposes;
    int transpose_launches;
    cl_mem transpose_tables;
    /* Rows the last backward wrote into dqkv and dfc1, or in half storage
     * the forward's qkv GEMM into dqkv, if more (the rows past them are
     * zero). */
    size_t backward_rows;
    clgqa_view grad_sum_squares, grad_scale; /* clipping scalars */
    clgqa_view scaler;  /* the loss scaler's state (ops.h, clgqa_scaler_field) */
    int loss_scaling;   /* the scaler is on (clgqa_model_set_loss_scaler) */
    clgqa_view chunk_sum_squares;            /* [chunk_count], when split */

    /* Grouping state. group_ints: kv_map [L][H] then group_counts [L][G];
     * group_floats: DGQA cache [L][G] then key_norms [L][G]. */
    cl_mem group_ints, group_floats;
    cl_mem pgqa_noise;     /* [L][H][P*d], created when a test fixes the noise */
    clgqa_view *pgqa_fixed; /* [L]: each layer's fixed noise; .mem NULL: drawn */
    clgqa_model_hooks hooks; /* zeroed: none */
    int defer_gradients;     /* backward leaves out the gradients_ready hook */

    /* timm's recipe (clgqa_model_set_regularisation) */
    double label_smoothing, drop_path;
    cl_mem drop_rates; /* [L][2]: each block's keep probability and 1 / keep, as floats */
    /* AdamW's no-decay ranges (1-D tensors, pos_embed, cls_token) as sorted
     * flat-index edges on the device (clgqa_no_decay). */
    cl_mem no_decay_edges;
    size_t no_decay_count;

    /* last forward */
    int batch;
    clgqa_view labels; /* .mem NULL: the last forward had no labels */
    int soft_targets;  /* its loss was against m->targets */
    int dropped_paths; /* it scaled its branches by m->drop_scales */
    long samples;      /* running metrics count */
};

#define MODEL_METRICS 6 /* floats of the metrics view */

static inline clgqa_view model_param(const clgqa_model *m, clgqa_model_buffer which, int tensor) {
    int c = m->tensor_chunk[tensor];
    return clgqa_view_at(m->flat[which][c], m->tensors[tensor].offset - m->chunk_first[c]);
}
static inline int model_layer_tensor(int layer, int which) {
    return MODEL_T_BLOCKS + layer * MODEL_L_TENSORS + which;
}
static inline int model_final_tensor(const clgqa_model *m, int which) {
    return MODEL_T_BLOCKS + m->dims.num_layers * MODEL_L_TENSORS + which;
}
static inline clgqa_view model_kv_map(const clgqa_model *m, int layer) {
    return clgqa_view_at(m->group_ints, (size_t)layer * m->dims.num_heads);
}
static inline clgqa_view model_group_counts(const clgqa_model *m, int layer) {
    return clgqa_view_at(m->group_ints, (size_t)m->dims.num_layers * m->dims.num_heads +
                                            (size_t)layer * m->dims.kv_heads);
}
static inline clgqa_view model_cache(const clgqa_model *m, int layer) {
    return clgqa_view_at(m->group_floats, (size_t)layer * m->dims.kv_heads);
}
static inline clgqa_view model_key_norms(const clgqa_model *m, int layer) {
    return clgqa_view_at(m->group_floats, (size_t)(m->dims.num_layers + layer) * m->dims.kv_heads);
}
/* The Linear weights in one list (model->weights_t and its transposes):
 * the patch embedding's, each block's LINEAR_BLOCK in model_linear order,
 * the head's. */
static inline int model_linear_count(const clgqa_model *m) {
    return 2 + LINEAR_BLOCK * m->dims.num_layers;
}
static inline int model_block_linear(int layer, model_linear which) {
    return 1 + LINEAR_BLOCK * layer + (int)which;
}
/* Rows a pass over `rows` real rows multiplies over: rounded up to the
 * tiles (model_gemm). */
static inline size_t model_gemm_rows(const clgqa_model *m, size_t rows) {
    size_t t = m->gemm.tiles.rows ? m->gemm.tiles.rows : 1;
    return (rows + t - 1) / t * t;
}
/* Columns of the fused q/k/v projection: C + 2Gd. */
static inline int model_qkv_width(const clgqa_model *m) {
    return m->dims.embed_dim + 2 * m->dims.kv_heads * m->dims.head_dim;
}
static inline clgqa_attention_dims model_attention_dims(const clgqa_model *m, int batch) {
    clgqa_attention_dims ad = {batch, m->dims.tokens, m->dims.num_heads, m->dims.kv_heads,
                               m->dims.head_dim, model_qkv_width(m), m->act_storage};
    return ad;
}

/* ---- test hooks (not installed) ---- */
/* Tests: keep the current grouping state on every forward (no key-norm,
 * KDGQA or DGQA update), so the loss is a smooth function of the
 * parameters for finite differences; or follow the scheme again. */
typedef enum model_grouping { MODEL_GROUPING_SCHEME = 0, MODEL_GROUPING_FROZEN } model_grouping;
void clgqa_model_freeze_grouping(clgqa_model *model, model_grouping grouping);
/* Tests (PGQA parity): use noise [H, P*d] (raw uniforms U, before diagonal
 * zeroing and standardisation) for `layer` instead of drawing; NULL goes back
 * to drawing. Blocking. */
clgqa_status clgqa_model_set_pgqa_noise(clgqa_model *model, int layer, const float *noise);

#endif
