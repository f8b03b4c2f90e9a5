/* Patch embedding ops of the ViT: patch_embed.cl <->
 * src/ops/patch_embed.c. The conv with kernel = stride = patch is im2col +
 * one Linear GEMM (src/model/model_pass.c's linear_forward, with the conv
 * weight viewed as [C, in_chans*p*p]); the images need no gradient, so there is no col2im.
 * Backward ops ACCUMULATE (+=) into every gradient. */
#ifndef CLGQA_PATCH_EMBED_H
#define CLGQA_PATCH_EMBED_H

#include "clgqa/runtime.h"

/* images [batch, in_chans, img_size, img_size] -> patches
 * [batch * grid^2, in_chans * patch^2] (patches row-major over the grid;
 * channel-major inside a patch: c, then y, then x). img_size % patch == 0. */
clgqa_status clgqa_patch_im2col(clgqa_runtime *rt, clgqa_view patches, clgqa_view images,
                                size_t batch, size_t in_chans, size_t img_size, size_t patch);

/* The same from 8-bit pixels (uchar, offset in bytes), normalised as the
 * loader does on the host: (x / 255 - mean[c]) / std[c]; in_chans <= 3. */
clgqa_status clgqa_patch_im2col_pixels(clgqa_runtime *rt, clgqa_view patches, clgqa_view pixels,
                                       size_t batch, size_t in_chans, size_t img_size,
                                       size_t patch, const float *mean, const float *std);

/* tokens [batch, n_tokens, dim]: row 0 = cls [dim], row t = patch_out
 * [batch * (n_tokens-1), dim] row t-1 of the sample; plus pos [n_tokens, dim]. */
clgqa_status clgqa_tokens_forward(clgqa_runtime *rt, clgqa_view tokens, clgqa_view patch_out,
                                  clgqa_view cls, clgqa_view pos, size_t batch, size_t n_tokens,
                                  size_t dim);
/* dpatch_out += the patch rows of dtokens, dcls += sum_b dtokens[b, 0],
 * dpos += sum_b dtokens[b]. */
clgqa_status clgqa_tokens_backward(clgqa_runtime *rt, clgqa_view dpatch_out, clgqa_view dcls,
                                   clgqa_view dpos, clgqa_view dtokens, size_t batch,
                                   size_t n_tokens, size_t dim);

#endif
