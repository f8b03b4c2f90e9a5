/* Position embeddings for another patch grid, as timm's
 * resample_abs_pos_embed: a checkpoint trained on a grid of old x old patches
 * (ViT-S/16 at 224: 14x14) used by a model with new x new patches (32x32
 * CIFAR images at patch 16: 2x2). The prefix (class) tokens are kept as they
 * are; the grid part, viewed as an image of `channels` planes, is resized
 * with PyTorch's bicubic interpolation (align_corners=False). Runs on the
 * host once, when a checkpoint is loaded.
 *
 * Two kernels, both exactly as torch.nn.functional.interpolate computes them:
 *  - antialias = 0 (interpolate's default): Keys' cubic convolution with
 *    a = -0.75 at source position scale * (o + 0.5) - 0.5, scale = old/new,
 *    four taps with indices clamped to the grid.
 *  - antialias = 1 (timm's default when it loads a checkpoint at another
 *    size): Keys' cubic with a = -0.5, stretched by old/new when
 *    down-sampling so that every source cell contributes (a low-pass
 *    filter); taps outside the grid are dropped and the weights renormalised
 *    to sum to 1. Up-sampling keeps the 4-tap support (still a = -0.5). */
#ifndef CLGQA_POS_EMBED_H
#define CLGQA_POS_EMBED_H

#include "clgqa/error.h"
#include "fail.h"

/* src: [prefix_tokens + old_grid^2, channels], dst: [prefix_tokens +
 * new_grid^2, channels], token-major (row-major [1, P, C] as in a
 * checkpoint); grid tokens in row order (y, then x). Both grids >= 1,
 * channels >= 1, prefix_tokens >= 0; src and dst must not overlap. */
clgqa_status clgqa_pos_embed_resample(const float *src, int old_grid, float *dst, int new_grid,
                                      int channels, int prefix_tokens, int antialias);

#endif
