/* Bilinear resize, bit-compatible with Pillow's ImagingResample (Pillow 9,
 * src/libImaging/Resample.c) for 8-bit images.
 *
 * Each output pixel is a weighted sum of the inputs under a triangle filter
 * centred on it. When shrinking by a factor s > 1 the triangle is stretched
 * to s pixels each side, so every input pixel contributes (antialiasing)
 * rather than only the nearest two. Weights are normalised per output pixel,
 * turned into 22-bit fixed point, and each pass rounds to 8 bits, exactly as
 * Pillow does; that is what makes the results agree to the last bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"

#define PRECISION_BITS (32 - 8 - 2)

/* Filter taps along one axis: output i reads inputs first[i] ..
 * first[i] + taps[i] - 1 with weights weight[i * max_taps + k]. */
typedef struct axis_filter {
    int max_taps;
    int *first, *taps;
    int32_t *weight;
} axis_filter;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static clgqa_status axis_filter_build(axis_filter *f, int in_size, int out_size) {
    double scale = (double)in_size / out_size;
    double filter_scale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filter_scale; /* the triangle's support is 1 */
    double inverse_scale = 1.0 / filter_scale; /* multiplied, as Pillow, for equal rounding */
    f->max_taps = (int)ceil(support) * 2 + 1;
    f->first = malloc(sizeof(int) * (size_t)out_size);
    f->taps = malloc(sizeof(int) * (size_t)out_size);
    f->weight = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)f->max_taps);
    double *w = malloc(sizeof(double) * (size_t)f->max_taps);
    if (!f->first || !f->taps || !f->weight || !w) {
        free(w);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate resize filter taps");
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        double total = 0.0;
        for (int k = 0; k < hi - lo; k++) {
            w[k] = triangle((k + lo - center + 0.5) * inverse_scale);
            total += w[k];
        }
        int32_t *fixed = f->weight + (size_t)i * (size_t)f->max_taps;
        for (int k = 0; k < hi - lo; k++) {
            double v = total != 0.0 ? w[k] / total : w[k];
            fixed[k] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                       : 0.5 + v * (1 << PRECISION_BITS));
        }
        f->first[i] = lo;
        f->taps[i] = hi - lo;
    }
    free(w);
    return CLGQA_OK;
}

static void axis_filter_free(axis_filter *f) {
    free(f->first);
    free(f->taps);
    free(f->weight);
}

static uint8_t clip8(int32_t sum) {
    int32_t v = sum >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* One pass along x (stride between taps = channels) or y (stride = a row). */
static void resample_horizontal(const clgqa_image *in, clgqa_image *out, const axis_filter *f) {
    int ch = in->channels;
    for (int y = 0; y < out->height; y++) {
        const uint8_t *src = in->pixels + (size_t)y * (size_t)in->width * (size_t)ch;
        uint8_t *dst = out->pixels + (size_t)y * (size_t)out->width * (size_t)ch;
        for (int x = 0; x < out->width; x++) {
            const int32_t *w = f->weight + (size_t)x * (size_t)f->max_taps;
            for (int c = 0; c < ch; c++) {
                int32_t sum = 1 << (PRECISION_BITS - 1);
                for (int k = 0; k < f->taps[x]; k++)
                    sum += src[(size_t)(f->first[x] + k) * (size_t)ch + (size_t)c] * w[k];
                dst[(size_t)x * (size_t)ch + (size_t)c] = clip8(sum);
            }
        }
    }
}

static void resample_vertical(const clgqa_image *in, clgqa_image *out, const axis_filter *f) {
    size_t row = (size_t)in->width * (size_t)in->channels;
    for (int y = 0; y < out->height; y++) {
        const int32_t *w = f->weight + (size_t)y * (size_t)f->max_taps;
        const uint8_t *src = in->pixels + (size_t)f->first[y] * row;
        uint8_t *dst = out->pixels + (size_t)y * row;
        for (size_t i = 0; i < row; i++) {
            int32_t sum = 1 << (PRECISION_BITS - 1);
            for (int k = 0; k < f->taps[y]; k++)
                sum += src[(size_t)k * row + i] * w[k];
            dst[i] = clip8(sum);
        }
    }
}

clgqa_status clgqa_image_resize(const clgqa_image *in, int width, int height, clgqa_image *out) {
    if (width <= 0 || height <= 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "resize to %dx%d", width, height);
    /* Horizontal pass first (skipped when the width is kept), then vertical. */
    clgqa_image mid = *in;
    mid.pixels = NULL;
    if (width != in->width) {
        axis_filter fx = {0};
        clgqa_status status = axis_filter_build(&fx, in->width, width);
        if (status == CLGQA_OK)
            status = clgqa_image_alloc(&mid, width, in->height, in->channels);
        if (status == CLGQA_OK)
            resample_horizontal(in, &mid, &fx);
        axis_filter_free(&fx);
        CLGQA_TRY(status);
    }
    const clgqa_image *src = mid.pixels ? &mid : in;
    clgqa_status status = clgqa_image_alloc(out, width, height, in->channels);
    if (status == CLGQA_OK && height != in->height) {
        axis_filter fy = {0};
        status = axis_filter_build(&fy, in->height, height);
        if (status == CLGQA_OK)
            resample_vertical(src, out, &fy);
        axis_filter_free(&fy);
    } else if (status == CLGQA_OK) {
        memcpy(out->pixels, src->pixels, (size_t)width * (size_t)height * (size_t)in->channels);
    }
    clgqa_image_free(&mid);
    if (status != CLGQA_OK)
        clgqa_image_free(out);
    return status;
}
