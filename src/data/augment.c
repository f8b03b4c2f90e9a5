/* Training augmentation on 8-bit images: flip, pad-crop-flip, and
 * torchvision's RandAugment (num_ops=2, magnitude=9, 31 bins, fill 0).
 *
 * The RandAugment ops follow torchvision's tensor implementations
 * (torchvision/transforms/functional_tensor.py): float32 arithmetic, results
 * clamped to 0..255 and truncated back to 8 bits; geometric ops use the
 * inverse affine matrix and nearest-neighbour sampling of grid_sample
 * (align_corners=False), filling outside pixels with 0.
 *
 * Every random choice is a draw from the counter-based generator at
 * (seed, CLGQA_RNG_AUGMENT stream of the epoch, sample * 16 + k), so an
 * augmented sample depends only on the seed, the epoch and the sample. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "dataset_internal.h"

#define DRAWS_PER_SAMPLE 16

typedef struct draws {
    uint64_t seed, stream, next;
} draws;

/* Uniform integer in [0, n): the high word of bits * n (bias below n / 2^32). */
static uint32_t draw_below(draws *d, uint32_t n) {
    uint32_t bits = clgqa_host_random_bits(d->seed, d->stream, d->next++);
    return (uint32_t)(((uint64_t)bits * n) >> 32);
}

static uint8_t to_u8(float v) { return (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v); }

static size_t pixel_count(const clgqa_image *img) {
    return (size_t)img->width * (size_t)img->height;
}

static void flip_horizontal(clgqa_image *img) {
    int ch = img->channels;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->pixels + (size_t)y * (size_t)img->width * (size_t)ch;
        for (int a = 0, b = img->width - 1; a < b; a++, b--)
            for (int c = 0; c < ch; c++) {
                uint8_t t = row[a * ch + c];
                row[a * ch + c] = row[b * ch + c];
                row[b * ch + c] = t;
            }
    }
}

/* ---- geometric ops ---- */

/* torchvision's _get_inverse_affine_matrix: maps output coordinates
 * (relative to the image centre) back to input coordinates. */
static void inverse_affine(float m[6], double cx, double cy, double angle_deg, double tx,
                           double ty, double shear_x_deg, double shear_y_deg) {
    double rot = angle_deg * M_PI / 180.0;
    double sx = shear_x_deg * M_PI / 180.0, sy = shear_y_deg * M_PI / 180.0;
    double a = cos(rot - sy) / cos(sy);
    double b = -cos(rot - sy) * tan(sx) / cos(sy) - sin(rot);
    double c = sin(rot - sy) / cos(sy);
    double d = -sin(rot - sy) * tan(sx) / cos(sy) + cos(rot);
    double mat[6] = {d, -b, 0.0, -c, a, 0.0};
    mat[2] += mat[0] * (-cx - tx) + mat[1] * (-cy - ty) + cx;
    mat[5] += mat[3] * (-cx - tx) + mat[4] * (-cy - ty) + cy;
    for (int i = 0; i < 6; i++)
        m[i] = (float)mat[i];
}

/* grid_sample(mode="nearest", padding_mode="zeros", align_corners=False)
 * on the grid torchvision's _gen_affine_grid builds from m. */
static clgqa_status affine_nearest(clgqa_image *img, const float m[6]) {
    int w = img->width, h = img->height, ch = img->channels;
    clgqa_image out;
    CLGQA_TRY(clgqa_image_alloc(&out, w, h, ch));
    float half_w = 0.5f * (float)w, half_h = 0.5f * (float)h;
    for (int y = 0; y < h; y++) {
        float yc = (float)y - half_h + 0.5f;
        for (int x = 0; x < w; x++) {
            float xc = (float)x - half_w + 0.5f;
            float gx = xc * (m[0] / half_w) + yc * (m[1] / half_w) + m[2] / half_w;
            float gy = xc * (m[3] / half_h) + yc * (m[4] / half_h) + m[5] / half_h;
            float sx = nearbyintf(((gx + 1.0f) * (float)w - 1.0f) * 0.5f);
            float sy = nearbyintf(((gy + 1.0f) * (float)h - 1.0f) * 0.5f);
            uint8_t *dst = out.pixels + ((size_t)y * (size_t)w + (size_t)x) * (size_t)ch;
            if (sx >= 0.0f && sx < (float)w && sy >= 0.0f && sy < (float)h)
                memcpy(dst, img->pixels + ((size_t)sy * (size_t)w + (size_t)sx) * (size_t)ch,
                       (size_t)ch);
            else
                memset(dst, 0, (size_t)ch);
        }
    }
    clgqa_image_free(img);
    *img = out;
    return CLGQA_OK;
}

/* ---- colour ops ---- */

/* torchvision's rgb_to_grayscale for uint8: weights 0.2989/0.587/0.114,
 * truncated to 8 bits. */
static uint8_t gray_of(const uint8_t *p) {
    return (uint8_t)(0.2989f * p[0] + 0.587f * p[1] + 0.114f * p[2]);
}

/* _blend(img, other, ratio) where other is a constant. */
static void blend_constant(clgqa_image *img, float other, float ratio) {
    size_t n = pixel_count(img) * (size_t)img->channels;
    for (size_t i = 0; i < n; i++)
        img->pixels[i] = to_u8(ratio * img->pixels[i] + (1.0f - ratio) * other);
}

static void adjust_saturation(clgqa_image *img, float ratio) {
    if (img->channels == 1) /* torchvision leaves gray images alone */
        return;
    for (size_t i = 0; i < pixel_count(img); i++) {
        uint8_t *p = img->pixels + i * 3;
        float gray = gray_of(p);
        for (int c = 0; c < 3; c++)
            p[c] = to_u8(ratio * p[c] + (1.0f - ratio) * gray);
    }
}

static void adjust_contrast(clgqa_image *img, float ratio) {
    double sum = 0.0;
    for (size_t i = 0; i < pixel_count(img); i++)
        sum += img->channels == 3 ? gray_of(img->pixels + i * 3) : img->pixels[i];
    blend_constant(img, (float)(sum / (double)pixel_count(img)), ratio);
}

/* Blend with a 3x3 smoothing (weights 1, centre 5, over 13) of the interior,
 * the border kept as is. */
static clgqa_status adjust_sharpness(clgqa_image *img, float ratio) {
    int w = img->width, h = img->height, ch = img->channels;
    if (w < 3 || h < 3) /* no interior: the degenerate image is the image */
        return CLGQA_OK;
    clgqa_image smooth;
    CLGQA_TRY(clgqa_image_alloc(&smooth, w, h, ch));
    memcpy(smooth.pixels, img->pixels, pixel_count(img) * (size_t)ch);
    const float side = 1.0f / 13.0f, centre = 5.0f / 13.0f;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++)
            for (int c = 0; c < ch; c++) {
                float sum = 0.0f;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        sum += img->pixels[((size_t)(y + dy) * (size_t)w + (size_t)(x + dx)) *
                                               (size_t)ch + (size_t)c] *
                               (dx == 0 && dy == 0 ? centre : side);
                smooth.pixels[((size_t)y * (size_t)w + (size_t)x) * (size_t)ch + (size_t)c] =
                    to_u8(nearbyintf(sum));
            }
    size_t n = pixel_count(img) * (size_t)ch;
    for (size_t i = 0; i < n; i++)
        img->pixels[i] = to_u8(ratio * img->pixels[i] + (1.0f - ratio) * smooth.pixels[i]);
    clgqa_image_free(&smooth);
    return CLGQA_OK;
}

static void autocontrast(clgqa_image *img) {
    int ch = img->channels;
    for (int c = 0; c < ch; c++) {
        int lo = 255, hi = 0;
        for (size_t i = 0; i < pixel_count(img); i++) {
            int v = img->pixels[i * (size_t)ch + (size_t)c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (lo == hi) /* infinite scale: torchvision keeps the channel */
            continue;
        float scale = 255.0f / (float)(hi - lo);
        for (size_t i = 0; i < pixel_count(img); i++) {
            uint8_t *p = img->pixels + i * (size_t)ch + c;
            *p = to_u8((float)(*p - lo) * scale);
        }
    }
}

/* torchvision's _scale_channel: a lookup table from the cumulative
 * histogram, with step = (pixels not of the last used value) / 255. */
static void equalize(clgqa_image *img) {
    int ch = img->channels;
    for (int c = 0; c < ch; c++) {
        long hist[256] = {0};
        for (size_t i = 0; i < pixel_count(img); i++)
            hist[img->pixels[i * (size_t)ch + (size_t)c]]++;
        int last = 255;
        while (hist[last] == 0)
            last--;
        long step = ((long)pixel_count(img) - hist[last]) / 255;
        if (step == 0)
            continue;
        uint8_t lut[256];
        long cumulative = 0;
        for (int v = 0; v < 256; v++) { /* lut[v] uses the counts below v */
            long mapped = (cumulative + step / 2) / step;
            lut[v] = (uint8_t)(mapped > 255 ? 255 : mapped);
            cumulative += hist[v];
        }
        for (size_t i = 0; i < pixel_count(img); i++) {
            uint8_t *p = img->pixels + i * (size_t)ch + c;
            *p = lut[*p];
        }
    }
}

/* ---- RandAugment ---- */

enum {
    OP_IDENTITY, OP_SHEAR_X, OP_SHEAR_Y, OP_TRANSLATE_X, OP_TRANSLATE_Y, OP_ROTATE,
    OP_BRIGHTNESS, OP_COLOR, OP_CONTRAST, OP_SHARPNESS, OP_POSTERIZE, OP_SOLARIZE,
    OP_AUTOCONTRAST, OP_EQUALIZE
};

/* Ops whose magnitude gets a random sign. */
static int op_is_signed(int op) { return op >= OP_SHEAR_X && op <= OP_SHARPNESS; }

float clgqa_randaugment_magnitude(int op, int side) {
    /* torch.linspace(0, top, 31)[9] for the linear ops. */
    const int bin = 9;
    switch (op) {
    case OP_SHEAR_X:
    case OP_SHEAR_Y: return (float)bin * (0.3f / 30.0f);
    case OP_TRANSLATE_X:
    case OP_TRANSLATE_Y: return (float)bin * ((float)(150.0 / 331.0 * side) / 30.0f);
    case OP_ROTATE: return (float)bin * (30.0f / 30.0f);
    case OP_BRIGHTNESS:
    case OP_COLOR:
    case OP_CONTRAST:
    case OP_SHARPNESS: return (float)bin * (0.9f / 30.0f);
    case OP_POSTERIZE: return (float)(8 - (int)roundf((float)bin / (30.0f / 4.0f))); /* 7 bits */
    case OP_SOLARIZE: return 255.0f - (float)bin * (255.0f / 30.0f);
    default: return 0.0f;
    }
}

clgqa_status clgqa_randaugment_op(clgqa_image *img, int op, float magnitude) {
    float m[6];
    double shear_deg = atan(magnitude) * 180.0 / M_PI;
    switch (op) {
    case OP_IDENTITY: return CLGQA_OK;
    case OP_SHEAR_X: /* sheared about the top-left corner (center=[0, 0]) */
        inverse_affine(m, -0.5 * img->width, -0.5 * img->height, 0, 0, 0, shear_deg, 0);
        return affine_nearest(img, m);
    case OP_SHEAR_Y:
        inverse_affine(m, -0.5 * img->width, -0.5 * img->height, 0, 0, 0, 0, shear_deg);
        return affine_nearest(img, m);
    case OP_TRANSLATE_X: /* whole pixels: int() truncates toward zero */
        inverse_affine(m, 0, 0, 0, (int)magnitude, 0, 0, 0);
        return affine_nearest(img, m);
    case OP_TRANSLATE_Y:
        inverse_affine(m, 0, 0, 0, 0, (int)magnitude, 0, 0);
        return affine_nearest(img, m);
    case OP_ROTATE: /* F.rotate turns counter-clockwise: the matrix gets -angle */
        inverse_affine(m, 0, 0, -magnitude, 0, 0, 0, 0);
        return affine_nearest(img, m);
    case OP_BRIGHTNESS: blend_constant(img, 0.0f, 1.0f + magnitude); return CLGQA_OK;
    case OP_COLOR: adjust_saturation(img, 1.0f + magnitude); return CLGQA_OK;
    case OP_CONTRAST: adjust_contrast(img, 1.0f + magnitude); return CLGQA_OK;
    case OP_SHARPNESS: return adjust_sharpness(img, 1.0f + magnitude);
    case OP_POSTERIZE: {
        uint8_t mask = (uint8_t)(0xff << (8 - (int)magnitude));
        for (size_t i = 0; i < pixel_count(img) * (size_t)img->channels; i++)
            img->pixels[i] &= mask;
        return CLGQA_OK;
    }
    case OP_SOLARIZE:
        for (size_t i = 0; i < pixel_count(img) * (size_t)img->channels; i++)
            if (img->pixels[i] >= magnitude)
                img->pixels[i] = (uint8_t)(255 - img->pixels[i]);
        return CLGQA_OK;
    case OP_AUTOCONTRAST: autocontrast(img); return CLGQA_OK;
    case OP_EQUALIZE: equalize(img); return CLGQA_OK;
    }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "RandAugment op %d out of range", op);
}

/* ---- the configured augmentation ---- */

/* torchvision RandomCrop(side, padding=side/8) on a zero-padded image. */
static clgqa_status pad_crop(clgqa_image *img, int top, int left, int pad) {
    int w = img->width, h = img->height, ch = img->channels;
    clgqa_image out;
    CLGQA_TRY(clgqa_image_alloc(&out, w, h, ch));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sy = y + top - pad, sx = x + left - pad;
            uint8_t *dst = out.pixels + ((size_t)y * (size_t)w + (size_t)x) * (size_t)ch;
            if (sy >= 0 && sy < h && sx >= 0 && sx < w)
                memcpy(dst, img->pixels + ((size_t)sy * (size_t)w + (size_t)sx) * (size_t)ch,
                       (size_t)ch);
            else
                memset(dst, 0, (size_t)ch);
        }
    clgqa_image_free(img);
    *img = out;
    return CLGQA_OK;
}

clgqa_status clgqa_augment_apply(clgqa_image *img, clgqa_augment mode, uint64_t seed, long epoch,
                                 size_t sample) {
    draws d = {seed, clgqa_stream_id(CLGQA_RNG_AUGMENT, 0, (uint64_t)epoch),
               (uint64_t)sample * DRAWS_PER_SAMPLE};
    switch (mode) {
    case CLGQA_AUGMENT_NONE: return CLGQA_OK;
    case CLGQA_AUGMENT_FLIP:
        if (draw_below(&d, 2))
            flip_horizontal(img);
        return CLGQA_OK;
    case CLGQA_AUGMENT_CROP_FLIP: {
        int pad = img->width / 8 > 0 ? img->width / 8 : 1;
        int top = (int)draw_below(&d, (uint32_t)(2 * pad + 1));
        int left = (int)draw_below(&d, (uint32_t)(2 * pad + 1));
        CLGQA_TRY(pad_crop(img, top, left, pad));
        if (draw_below(&d, 2))
            flip_horizontal(img);
        return CLGQA_OK;
    }
    case CLGQA_AUGMENT_RANDAUGMENT:
        for (int i = 0; i < 2; i++) {
            int op = (int)draw_below(&d, CLGQA_RANDAUGMENT_OPS);
            float magnitude = clgqa_randaugment_magnitude(op, img->width);
            int negate = (int)draw_below(&d, 2); /* drawn for every op: fixed draw positions */
            if (op_is_signed(op) && negate)
                magnitude = -magnitude;
            CLGQA_TRY(clgqa_randaugment_op(img, op, magnitude));
        }
        return CLGQA_OK;
    }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "augment mode %d out of range", (int)mode);
}

/* ---- names ---- */

/* In clgqa_augment order. */
static const char *const augment_names[] = {"none", "flip", "crop_flip", "randaugment"};
#define AUGMENT_COUNT (sizeof augment_names / sizeof augment_names[0])

const char *clgqa_augment_name(clgqa_augment augment) {
    return (unsigned)augment < AUGMENT_COUNT ? augment_names[augment] : "unknown";
}

clgqa_status clgqa_augment_parse(const char *name, clgqa_augment *out) {
    for (size_t i = 0; i < AUGMENT_COUNT; i++)
        if (strcmp(name, augment_names[i]) == 0) {
            *out = (clgqa_augment)i;
            return CLGQA_OK;
        }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                      "augment: unknown value '%s' (none, flip, crop_flip, randaugment)", name);
}
