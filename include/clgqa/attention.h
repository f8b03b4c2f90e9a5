/* Grouped-query attention of arXiv:2408.08454 on the device: key norms,
 * query-to-key-head grouping (static, KDGQA, DGQA diff/EMA), grouped
 * attention forward/backward and the PGQA perturbation.
 * kernels/attention.cl + kernels/grouping.cl <-> host/ops/attention.c +
 * host/ops/grouping.c. Semantics: docs/attention-variants.md.
 *
 * Layouts: q [B*P, H*d], k and v [B*P, G*d] as the projections write them.
 * kv_map [H] (int): the key/value head each query head reads (values in
 * [0, G); groups are contiguous in head order).
 * group_counts [G] (int): query heads per key/value head.
 * Everything is enqueued on rt->queue; nothing is read back to the host. */
#ifndef CLGQA_ATTENTION_H
#define CLGQA_ATTENTION_H

#include "clgqa/runtime.h"

typedef struct clgqa_attention_dims {
    int batch;    /* B */
    int tokens;   /* P (patches + class token) */
    int heads;    /* H query heads */
    int kv_heads; /* G key/value heads */
    int head_dim; /* d */
} clgqa_attention_dims;

/* ---- grouping.cl ---- */
/* key_norms[j] = sum over the batch of the Frobenius norm of key head j. */
clgqa_status clgqa_key_norms(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                             clgqa_view key_norms, clgqa_view k);
/* Static split H/G (contiguous groups). Every grouping launcher refuses
 * H % G != 0 (the static split is the fallback of the dynamic schemes). */
clgqa_status clgqa_grouping_static(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                   clgqa_view kv_map, clgqa_view group_counts);
/* KDGQA allocation from key_norms (min-max, round half to even, argmax/argmin
 * fix-up; all-equal norms -> static split). */
clgqa_status clgqa_grouping_kdgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                  clgqa_view key_norms, clgqa_view kv_map,
                                  clgqa_view group_counts);
/* DGQA: computes the split from key_norms and cache, then updates cache
 * (training: cache = (cache + m) / window; evaluation: cache = m). The caller
 * launches it on window steps only during training and keeps kv_map and
 * group_counts (the layer's split) in between. Fix-up pick t uses draw t of
 * Philox (seed, stream), index floor(uniform * G); sum(shares) == 0 falls
 * back to the static split. */
clgqa_status clgqa_grouping_dgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims, int ema,
                                 int evaluation, int window_size, clgqa_view key_norms,
                                 clgqa_view cache, clgqa_view kv_map, clgqa_view group_counts,
                                 uint64_t seed, uint64_t stream);

/* ---- attention.cl ---- */
/* PGQA options. Noise is drawn from Philox (seed, stream) unless fixed_noise
 * is set: then fixed_noise [H, P*d] holds U (before the diagonal zeroing and
 * standardisation), for tests against PyTorch. */
typedef struct clgqa_pgqa {
    uint64_t seed;
    uint64_t stream;
    clgqa_view fixed_noise; /* .mem NULL: draw */
} clgqa_pgqa;

/* Activations one layer saves for backward; carved from one region by
 * clgqa_attention_saved_layout. */
typedef struct clgqa_attention_saved {
    clgqa_view q_heads;   /* [B, H, P, d] scaled queries */
    clgqa_view k_heads;   /* [B, H, P, d] keys gathered through kv_map */
    clgqa_view v_heads;   /* [B, H, P, d] */
    clgqa_view probs;     /* [B, H, P, P] */
    clgqa_view heads_out; /* [B, H, P, d] before perturbation */
    clgqa_view noise_z;   /* [H, P*d] standardised noise (PGQA) */
    clgqa_view row_stats; /* [B*H, 2] mean and std of heads_out rows (PGQA) */
} clgqa_attention_saved;

size_t clgqa_attention_saved_floats(const clgqa_attention_dims *dims, int pgqa);
void clgqa_attention_saved_layout(const clgqa_attention_dims *dims, int pgqa, clgqa_view base,
                                  clgqa_attention_saved *saved);
/* Scratch the backward pass needs (floats); contents need not survive
 * between calls. */
size_t clgqa_attention_scratch_floats(const clgqa_attention_dims *dims);

/* out [B*P, H*d] = concat_h softmax(q_h * d^-0.5 k_{map h}^T) v_{map h},
 * minus the PGQA perturbation when pgqa != NULL (PGQA needs H % G == 0, the
 * static kv_map, and P*d >= 2). Needs G <= H. Writes every saved view. */
clgqa_status clgqa_attention_forward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     clgqa_view out, clgqa_view q, clgqa_view k, clgqa_view v,
                                     clgqa_view kv_map, const clgqa_pgqa *pgqa,
                                     const clgqa_attention_saved *saved);
/* Accumulates dq, dk, dv (dk/dv summed over the query heads sharing a key
 * head, in head order; a key head serving no query head gets nothing), from
 * the views the forward pass saved with the same kv_map and pgqa flag. */
clgqa_status clgqa_attention_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      clgqa_view dq, clgqa_view dk, clgqa_view dv,
                                      clgqa_view dout, clgqa_view kv_map, int pgqa,
                                      const clgqa_attention_saved *saved, clgqa_view scratch);

#endif
