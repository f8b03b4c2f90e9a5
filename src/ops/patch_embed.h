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

/* How a training batch's images are mixed with each other, as timm's
 * Mixup with mode 'batch' does on the normalised batch x: image b with its
 * partner, image batch - 1 - b (timm's x.flip(0)). */
typedef enum clgqa_mix_mode {
    CLGQA_MIX_NONE = 0, /* as loaded */
    CLGQA_MIX_BLEND,    /* Mixup: lambda * own + (1 - lambda) * partner */
    CLGQA_MIX_BOX       /* CutMix: the partner's pixels inside the box */
} clgqa_mix_mode;
typedef struct clgqa_image_mix {
    clgqa_mix_mode mode;
    double lambda;      /* CLGQA_MIX_BLEND: the own image's weight, in [0, 1] */
    int y0, y1, x0, x1; /* CLGQA_MIX_BOX: rows [y0, y1), columns [x0, x1) */
} clgqa_image_mix;

/* The same from 8-bit pixels (uchar, offset in bytes), normalised as the
 * loader does on the host: (x / 255 - mean[c]) / std[c]; in_chans <= 3.
 * Then mixed as `mix` says (NULL: not mixed); the weights are rounded to
 * float as PyTorch does with timm's Python numbers (x * lambda + x.flip(0)
 * * (1 - lambda)). */
clgqa_status clgqa_patch_im2col_pixels(clgqa_runtime *rt, clgqa_view patches, clgqa_view pixels,
                                       size_t batch, size_t in_chans, size_t img_size,
                                       size_t patch, const float *mean, const float *std,
                                       const clgqa_image_mix *mix);

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
