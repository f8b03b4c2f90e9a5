/* timm's Mixup/CutMix decisions per batch (mixup.h). */
#include "mixup.h"

#include <math.h>

int clgqa_mixup_on(const clgqa_mixup *s) {
    return s->prob > 0 && (s->mixup_alpha > 0 || s->cutmix_alpha > 0);
}

/* np.random.randint(0, n): a uniform integer in [0, n). */
static int draw_index(clgqa_host_draws *draws, int n) {
    int i = (int)(clgqa_draw_uniform(draws) * n);
    return i < n ? i : n - 1;
}

static int clip(int x, int hi) { return x < 0 ? 0 : x > hi ? hi : x; }

void clgqa_mixup_draw(const clgqa_mixup *s, clgqa_host_draws *draws, int img_size,
                      clgqa_image_mix *mix, double *label_weight) {
    const clgqa_image_mix none = {CLGQA_MIX_NONE, 1.0, 0, 0, 0, 0};
    *mix = none;
    *label_weight = 1.0;
    if (!clgqa_mixup_on(s) || clgqa_draw_uniform(draws) >= s->prob)
        return;
    int cutmix = s->cutmix_alpha > 0;
    if (s->mixup_alpha > 0 && s->cutmix_alpha > 0)
        cutmix = clgqa_draw_uniform(draws) < s->switch_prob;
    double alpha = cutmix ? s->cutmix_alpha : s->mixup_alpha;
    double lambda = clgqa_draw_beta(draws, alpha, alpha);
    if (!cutmix) {
        mix->mode = CLGQA_MIX_BLEND;
        mix->lambda = lambda;
        *label_weight = lambda;
        return;
    }
    /* rand_bbox: the cut's side is int(size * sqrt(1 - lambda)), its
     * centre uniform over the image, the corners clipped. */
    double ratio = sqrt(1.0 - lambda);
    int cut = (int)(img_size * ratio);
    int cy = draw_index(draws, img_size), cx = draw_index(draws, img_size);
    mix->mode = CLGQA_MIX_BOX;
    mix->y0 = clip(cy - cut / 2, img_size);
    mix->y1 = clip(cy + cut / 2, img_size);
    mix->x0 = clip(cx - cut / 2, img_size);
    mix->x1 = clip(cx + cut / 2, img_size);
    /* correct_lam: the weight is the share of the image left unboxed. */
    double area = (double)(mix->y1 - mix->y0) * (mix->x1 - mix->x0);
    *label_weight = 1.0 - area / ((double)img_size * img_size);
    mix->lambda = *label_weight;
}
