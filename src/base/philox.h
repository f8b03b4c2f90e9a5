/* Counter-based random numbers: Random123's Philox4x32-10, identical on the
 * host (here) and on the device (src/ops/random.cl, through the prelude).
 * Every random number of a run (initialisation, shuffles, augmentation,
 * PGQA noise, DGQA fix-ups) is element i of a stream: counter
 * {lo(i/4), hi(i/4), lo(stream), hi(stream)}, key {lo(seed), hi(seed)},
 * lane i % 4. uniform = (bits >> 8) * 2^-24, in [0, 1). normal: Box-Muller
 * on the pair (2j, 2j+1) of uniforms, u1 = 1 - uniform so log() never sees
 * 0. Plain C: no OpenCL. */
#ifndef CLGQA_PHILOX_H
#define CLGQA_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* What a stream is for: the top 8 bits of clgqa_stream_id. */
enum {
    CLGQA_RNG_INIT = 1,
    CLGQA_RNG_SHUFFLE = 2,
    CLGQA_RNG_AUGMENT = 3,
    CLGQA_RNG_PGQA = 4,
    CLGQA_RNG_DGQA_FIXUP = 5,
    CLGQA_RNG_TEST = 6,
    CLGQA_RNG_MIXUP = 7,    /* a training batch's Mixup/CutMix draws (host) */
    CLGQA_RNG_DROP_PATH = 8 /* stochastic depth: a block's per-sample keep draws (device) */
};

/* The stream of (purpose, layer, step): 8 | 16 | 40 bits. */
uint64_t clgqa_stream_id(uint32_t purpose, uint32_t layer, uint64_t step);
/* Element `index` of the stream as raw 32 bits. */
uint32_t clgqa_host_random_bits(uint64_t seed, uint64_t stream, uint64_t index);
/* Elements 0 .. n-1 as uniforms and normals (the device's numbers; normals
 * equal to float rounding of log/cos). */
void clgqa_host_uniform(float *out, size_t n, uint64_t seed, uint64_t stream);
void clgqa_host_normal(float *out, size_t n, uint64_t seed, uint64_t stream, float mean,
                       float std);

/* A stream read in order, for samplers that take a varying number of
 * elements (rejection): each draw takes the elements from `next` on. */
typedef struct clgqa_host_draws {
    uint64_t seed, stream, next;
} clgqa_host_draws;
/* A uniform double in [0, 1) with 53 random bits (two elements). */
double clgqa_draw_uniform(clgqa_host_draws *d);
/* A standard normal: Box-Muller's cosine half on two uniforms. */
double clgqa_draw_normal(clgqa_host_draws *d);
/* Gamma(shape, 1), shape > 0, by Marsaglia and Tsang's method (ACM TOMS
 * 26(3), 2000): for shape >= 1, with d = shape - 1/3 and c = 1/sqrt(9d),
 * draw a normal z and a uniform u until v = (1 + cz)^3 > 0 and log u <
 * z^2/2 + d - dv + d log v, and return dv; for shape < 1,
 * Gamma(shape + 1) * u^(1/shape). */
double clgqa_draw_gamma(clgqa_host_draws *d, double shape);
/* Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b); a, b > 0. */
double clgqa_draw_beta(clgqa_host_draws *d, double a, double b);

#endif
