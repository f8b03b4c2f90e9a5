/* Position-embedding resampling (timm's resample_abs_pos_embed): one
 * interpolation matrix per axis, applied separably in double precision.
 * See pos_embed.h for the two kernels. */
#include "pos_embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keys' cubic convolution kernel with parameter a (PyTorch's
 * cubic_convolution1 for |x| <= 1, cubic_convolution2 for 1 < |x| < 2). */
static double keys_cubic(double x, double a) {
    x = fabs(x);
    if (x <= 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    return 0.0;
}

/* interpolate(mode="bicubic", align_corners=False, antialias=False):
 * weights[o][i] for out_size x in_size (upsample_bicubic2d). */
static void bicubic_weights(int in_size, int out_size, double *weights) {
    const double a = -0.75, scale = (double)in_size / out_size;
    for (int o = 0; o < out_size; o++) {
        double source = scale * (o + 0.5) - 0.5;
        double first = floor(source), t = source - first;
        double taps[4] = {keys_cubic(t + 1.0, a), keys_cubic(t, a), keys_cubic(1.0 - t, a),
                          keys_cubic(2.0 - t, a)};
        for (int k = 0; k < 4; k++) {
            long i = (long)first - 1 + k;
            i = i < 0 ? 0 : i >= in_size ? in_size - 1 : i; /* border clamp */
            weights[(size_t)o * in_size + i] += taps[k];
        }
    }
}

/* interpolate(mode="bicubic", align_corners=False, antialias=True): the
 * separable anti-aliasing filter of PyTorch's _upsample_bicubic2d_aa
 * (UpSampleKernel.cpp, _compute_weights_aa with its bicubic aa_filter). */
static void bicubic_antialias_weights(int in_size, int out_size, double *weights) {
    const double a = -0.5, scale = (double)in_size / out_size;
    /* Down-sampling widens the kernel by the scale; up-sampling keeps it. */
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double stretch = scale >= 1.0 ? 1.0 / scale : 1.0;
    for (int o = 0; o < out_size; o++) {
        double center = scale * (o + 0.5);
        long lo = (long)floor(center - support + 0.5), hi = (long)floor(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in_size ? in_size : hi;
        double *row = weights + (size_t)o * in_size, total = 0.0;
        for (long i = lo; i < hi; i++) {
            row[i] = keys_cubic((i - center + 0.5) * stretch, a);
            total += row[i];
        }
        /* Taps past the border are dropped, so the rest are renormalised. */
        if (total != 0.0)
            for (long i = lo; i < hi; i++)
                row[i] /= total;
    }
}

clgqa_status clgqa_pos_embed_resample(const float *src, int old_grid, float *dst, int new_grid,
                                      int channels, int prefix_tokens, int antialias) {
    if (old_grid < 1 || new_grid < 1 || channels < 1 || prefix_tokens < 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "pos_embed resampling from a %dx%d to a %dx%d grid "
                          "of %d channels with %d prefix tokens", old_grid, old_grid, new_grid,
                          new_grid, channels, prefix_tokens);
    size_t C = (size_t)channels, old_n = (size_t)old_grid, new_n = (size_t)new_grid;
    double *weights = calloc(new_n * old_n, sizeof *weights);
    double *rows = calloc(old_n * new_n * C, sizeof *rows); /* [old y][new x][C] */
    if (!weights || !rows) {
        free(weights);
        free(rows);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate pos_embed resampling buffers "
                          "(%dx%d to %dx%d, %d channels)", old_grid, old_grid, new_grid, new_grid, channels);
    }
    /* Square grids: the same matrix serves both axes. */
    if (antialias)
        bicubic_antialias_weights(old_grid, new_grid, weights);
    else
        bicubic_weights(old_grid, new_grid, weights);

    memcpy(dst, src, (size_t)prefix_tokens * C * sizeof(float));
    const float *grid_in = src + (size_t)prefix_tokens * C;
    float *grid_out = dst + (size_t)prefix_tokens * C;
    /* Along x: rows[y][ox] = sum_x w[ox][x] in[y][x]. */
    for (size_t y = 0; y < old_n; y++)
        for (size_t ox = 0; ox < new_n; ox++) {
            double *acc = rows + (y * new_n + ox) * C;
            for (size_t x = 0; x < old_n; x++) {
                double w = weights[ox * old_n + x];
                if (w == 0.0)
                    continue;
                const float *in = grid_in + (y * old_n + x) * C;
                for (size_t c = 0; c < C; c++)
                    acc[c] += w * in[c];
            }
        }
    /* Along y: out[oy][ox] = sum_y w[oy][y] rows[y][ox]. */
    for (size_t oy = 0; oy < new_n; oy++)
        for (size_t ox = 0; ox < new_n; ox++) {
            float *out = grid_out + (oy * new_n + ox) * C;
            for (size_t c = 0; c < C; c++) {
                double sum = 0.0;
                for (size_t y = 0; y < old_n; y++)
                    sum += weights[oy * old_n + y] * rows[(y * new_n + ox) * C + c];
                out[c] = (float)sum;
            }
        }
    free(weights);
    free(rows);
    return CLGQA_OK;
}
