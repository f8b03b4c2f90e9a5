/* timm's Mixup and CutMix in mode 'batch' (timm/data/mixup.py, class
 * Mixup): one draw per training batch decides whether the batch is mixed,
 * how (a blend or a box) and by how much; the device then mixes the
 * normalised images with the batch flipped (ops/patch_embed.h) and the
 * labels likewise (clgqa_soft_targets). The draws come from a Philox stream
 * (seed, CLGQA_RNG_MIXUP, the batch's place in the optimizer step, the
 * step), so a run repeats exactly and resumes bit for bit. */
#ifndef CLGQA_MIXUP_H
#define CLGQA_MIXUP_H

#include "patch_embed.h"
#include "philox.h"

typedef struct clgqa_mixup {
    double mixup_alpha;  /* Mixup's Beta(alpha, alpha); 0: no Mixup */
    double cutmix_alpha; /* CutMix's Beta(alpha, alpha); 0: no CutMix */
    double prob;         /* the chance that a batch is mixed (timm's mix_prob) */
    double switch_prob;  /* with both on, the chance of CutMix over Mixup */
} clgqa_mixup;

/* Whether batches may be mixed at all. */
int clgqa_mixup_on(const clgqa_mixup *settings);

/* One batch's mix, as timm's _params_per_batch and cutmix_bbox_and_lam
 * (correct_lam True) with their draws from `draws`, in this order: u <
 * prob (else no mix, own label weight 1); with both alphas on, u <
 * switch_prob picks CutMix; lambda ~ Beta(alpha, alpha) of the one picked.
 * A blend weighs the own image by lambda. A box is rand_bbox's: side
 * int(size * sqrt(1 - lambda)), centre (cy, cx) uniform integers in
 * [0, size) (rows first), corners clipped to the image; its label weight is
 * then 1 - (box area) / size^2. *label_weight: the own label's weight in the
 * soft targets. */
void clgqa_mixup_draw(const clgqa_mixup *settings, clgqa_host_draws *draws, int img_size,
                      clgqa_image_mix *mix, double *label_weight);

#endif
