/* Grouped-query attention of arXiv:2408.08454 on the device: key norms,
 * query-to-key-head grouping (KDGQA, DGQA diff/EMA), grouped
 * attention forward/backward and the PGQA perturbation.
 * attention.cl + grouping.cl <-> src/ops/attention.c +
 * src/ops/grouping.c. Semantics: docs/attention-variants.md.
 *
 * Layouts: q [B*P, H*d], k and v [B*P, G*d] as the projections write them,
 * each token row `row_stride` elements from the next (the model's fused q/k/v
 * projection writes [B*P, (H + 2G) d] and passes views into it).
 * kv_map [H] (int): the key/value head each query head reads (values in
 * [0, G); groups are contiguous in head order).
 * group_counts [G] (int): query heads per key/value head.
 * Everything is enqueued on rt->queue; nothing is read back to the host. */
#ifndef CLGQA_ATTENTION_H
#define CLGQA_ATTENTION_H

#include "clgqa/runtime.h"
#include "ops.h"

typedef struct clgqa_attention_dims {
    int batch;    /* B */
    int tokens;   /* P (patches + class token) */
    int heads;    /* H query heads */
    int kv_heads; /* G key/value heads */
    int head_dim; /* d, at most CLGQA_ATTENTION_MAX_HEAD_DIM */
    /* Elements (floats, or halves for half q, k, v) from one token row of
     * q, k, v (and dq, dk, dv) to the next; 0:
     * packed, H*d for q and G*d for k and v. Key norms read k with it too. */
    int row_stride;
    /* The activations' storage (ops.h): q, k, v, out, and the saved
     * probabilities (rows) and PGQA's A; half views count their offsets in
     * halves. The gradients, lse, D and the PGQA noise are float. */
    clgqa_storage storage;
} clgqa_attention_dims;

#define CLGQA_ATTENTION_MAX_HEAD_DIM 256

/* ---- grouping.cl ---- */
/* key_norms[j] = sum over the batch of the Frobenius norm of key head j (k
 * rows dims->row_stride apart), in two deterministic stages through
 * `scratch` (clgqa_key_norms_scratch_floats floats, contents not kept). */
clgqa_status clgqa_key_norms(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                             clgqa_view key_norms, clgqa_view k, clgqa_view scratch);
size_t clgqa_key_norms_scratch_floats(const clgqa_attention_dims *dims);
/* Every grouping launcher refuses H % G != 0 (the static split H/G, in
 * contiguous groups, is the fallback of the dynamic schemes). */
/* KDGQA allocation from key_norms (min-max, round half to even, argmax/argmin
 * fix-up; all-equal norms -> static split). */
clgqa_status clgqa_grouping_kdgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                  clgqa_view key_norms, clgqa_view kv_map,
                                  clgqa_view group_counts);
/* clgqa_key_norms then clgqa_grouping_kdgqa in two launches instead of
 * three, with the same results, for when nothing has to see the norms in
 * between (a data-parallel run all-reduces them first). */
clgqa_status clgqa_key_norms_kdgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                   clgqa_view key_norms, clgqa_view kv_map,
                                   clgqa_view group_counts, clgqa_view k, clgqa_view scratch);
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

/* ---- attention.cl ----
 * Two variants, picked by clgqa_runtime_attention_kernel (clgqa_runtime_choose_paths):
 * rows (one work-item per query row, saves the P x P probabilities) and
 * tiled (FlashAttention-2: K/V tiles in local memory, online softmax, saves
 * one log-sum-exp per query row; the backward recomputes the probabilities).
 * Both give the same numbers up to float rounding. */
/* PGQA options. Noise is drawn from Philox (seed, stream) unless fixed_noise
 * is set: then fixed_noise [H, P*d] holds U (before the diagonal zeroing and
 * standardisation), for tests against PyTorch. */
typedef struct clgqa_pgqa {
    uint64_t seed;
    uint64_t stream;
    clgqa_view fixed_noise; /* .mem NULL: draw */
} clgqa_pgqa;

/* What one layer saves for backward besides q, k, v and out (which the
 * caller keeps); carved from one region by clgqa_attention_saved_layout for
 * one variant. Views a variant or scheme does not use have .mem NULL. */
typedef struct clgqa_attention_saved {
    clgqa_view probs;     /* rows: [B, H, P, P] softmax probabilities */
    clgqa_view lse;       /* tiled: [B, H, P] log-sum-exp of each query row's scores */
    clgqa_view heads_out; /* PGQA: [B*P, H*d] attention output before the perturbation */
    clgqa_view noise_z;   /* PGQA: [H, P*d] standardised noise */
    clgqa_view row_stats; /* PGQA: [B*H, 2] mean and std of the heads_out rows */
} clgqa_attention_saved;

size_t clgqa_attention_saved_floats(const clgqa_attention_dims *dims, int pgqa,
                                    clgqa_attention_kernel kernel);
void clgqa_attention_saved_layout(const clgqa_attention_dims *dims, int pgqa,
                                  clgqa_attention_kernel kernel, clgqa_view base,
                                  clgqa_attention_saved *saved);
/* Scratch the backward pass needs (floats); contents need not survive
 * between calls. */
size_t clgqa_attention_scratch_floats(const clgqa_attention_dims *dims, int pgqa,
                                      clgqa_attention_kernel kernel);
/* The -D options attention.cl is built with at head_dim on a device with
 * `local_bytes` of local memory and work-groups of up to `max_group` items
 * (HEAD_DIM and the tiled kernels' blocking), for the build test. */
void clgqa_attention_build_defines(int head_dim, cl_ulong local_bytes, size_t max_group,
                                   char *out, size_t size);

/* out [B*P, H*d] = concat_h softmax(q_h * d^-0.5 k_{map h}^T) v_{map h},
 * minus the PGQA perturbation when pgqa != NULL (PGQA needs H % G == 0, the
 * static kv_map, and P*d >= 2). Needs G <= H. Writes every saved view of
 * rt->attention_kernel's layout. */
clgqa_status clgqa_attention_forward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                     clgqa_view out, clgqa_view q, clgqa_view k, clgqa_view v,
                                     clgqa_view kv_map, const clgqa_pgqa *pgqa,
                                     const clgqa_attention_saved *saved);
/* Writes dq, dk, dv (same layout and row stride as q, k, v; dk/dv summed
 * over the query heads sharing a key head in head order, deterministically;
 * a key head serving no query head gets zeros), from the forward's inputs,
 * its output `out` and the views it saved, with the same kv_map, pgqa flag
 * and variant. */
clgqa_status clgqa_attention_backward(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                      clgqa_view dq, clgqa_view dk, clgqa_view dv,
                                      clgqa_view dout, clgqa_view out, clgqa_view q, clgqa_view k,
                                      clgqa_view v, clgqa_view kv_map, int pgqa,
                                      const clgqa_attention_saved *saved, clgqa_view scratch);

#endif
