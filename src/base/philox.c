/* The host side of the counter-based generator (philox.h); the device side
 * is src/ops/random.cl, which draws the same numbers. */
#include "philox.h"

#include <math.h>

#include <Random123/philox.h>

uint64_t clgqa_stream_id(uint32_t purpose, uint32_t layer, uint64_t step) {
    /* 8 bits purpose | 16 bits layer | 40 bits step */
    return ((uint64_t)(purpose & 0xffu) << 56) | ((uint64_t)(layer & 0xffffu) << 40) |
           (step & 0xffffffffffull);
}

uint32_t clgqa_host_random_bits(uint64_t seed, uint64_t stream, uint64_t index) {
    philox4x32_ctr_t ctr = {{(uint32_t)(index / 4), (uint32_t)(index / 4 >> 32),
                             (uint32_t)stream, (uint32_t)(stream >> 32)}};
    philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    philox4x32_ctr_t r = philox4x32(ctr, key);
    return r.v[index % 4];
}

static float bits_to_uniform(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

void clgqa_host_uniform(float *out, size_t n, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; i++)
        out[i] = bits_to_uniform(clgqa_host_random_bits(seed, stream, i));
}

void clgqa_host_normal(float *out, size_t n, uint64_t seed, uint64_t stream, float mean,
                       float std) {
    for (size_t i = 0; i < n; i++) {
        size_t pair = i / 2 * 2;
        float u1 = 1.0f - bits_to_uniform(clgqa_host_random_bits(seed, stream, pair));
        float u2 = bits_to_uniform(clgqa_host_random_bits(seed, stream, pair + 1));
        float radius = sqrtf(-2.0f * logf(u1));
        float angle = 6.28318530717958647692f * u2;
        float z = (i % 2 == 0) ? radius * cosf(angle) : radius * sinf(angle);
        out[i] = mean + std * z;
    }
}

double clgqa_draw_uniform(clgqa_host_draws *d) {
    uint64_t high = clgqa_host_random_bits(d->seed, d->stream, d->next++) >> 6; /* 26 bits */
    uint64_t low = clgqa_host_random_bits(d->seed, d->stream, d->next++) >> 5;  /* 27 bits */
    return (double)(high << 27 | low) * (1.0 / 9007199254740992.0);            /* 2^-53 */
}

double clgqa_draw_normal(clgqa_host_draws *d) {
    double u1 = 1.0 - clgqa_draw_uniform(d); /* in (0, 1]: log() stays finite */
    double u2 = clgqa_draw_uniform(d);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

double clgqa_draw_gamma(clgqa_host_draws *d, double shape) {
    if (shape < 1.0) {
        double u = 1.0 - clgqa_draw_uniform(d); /* (0, 1] */
        return clgqa_draw_gamma(d, shape + 1.0) * pow(u, 1.0 / shape);
    }
    const double dd = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * dd);
    for (;;) {
        double z = clgqa_draw_normal(d), v = 1.0 + c * z;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = 1.0 - clgqa_draw_uniform(d);
        if (log(u) < 0.5 * z * z + dd - dd * v + dd * log(v))
            return dd * v;
    }
}

double clgqa_draw_beta(clgqa_host_draws *d, double a, double b) {
    double x = clgqa_draw_gamma(d, a), y = clgqa_draw_gamma(d, b);
    /* Both underflow to 0 only for tiny shapes: the Beta is then nearly a
     * coin between 0 and 1. */
    if (x + y == 0.0)
        return clgqa_draw_uniform(d) < a / (a + b) ? 1.0 : 0.0;
    return x / (x + y);
}
