/* Counter-based random numbers: Random123 Philox4x32-10 from the prelude,
 * the same numbers as the host twins in src/ops/random.c (see ops.h).
 * Work-item j makes elements 4j .. 4j+3 from one Philox call with counter
 * {j, 0, lo(stream), hi(stream)} (the kernels stop below 2^32 elements, so
 * hi(j) = 0) and key {lo(seed), hi(seed)}, lane = element % 4. */

philox4x32_ctr_t random_block(uint j, uint seed_lo, uint seed_hi, uint stream_lo,
                              uint stream_hi) {
    philox4x32_ctr_t ctr = {{j, 0u, stream_lo, stream_hi}};
    philox4x32_key_t key = {{seed_lo, seed_hi}};
    /* philox4x32() is a macro, gone from the flattened prelude: call the
     * function it names, with the default 10 rounds. */
    return philox4x32_R(philox4x32_rounds, ctr, key);
}

/* (bits >> 8) * 2^-24: 24 random bits, exactly representable, in [0, 1). */
float bits_to_uniform(uint bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

__kernel void random_uniform(__global float *out, const uint out_off, const uint n,
                             const uint seed_lo, const uint seed_hi, const uint stream_lo,
                             const uint stream_hi) {
    const uint j = get_global_id(0);
    if (j >= (n + 3) / 4)
        return;
    const philox4x32_ctr_t r = random_block(j, seed_lo, seed_hi, stream_lo, stream_hi);
    for (uint lane = 0; lane < 4; lane++)
        if (4 * j + lane < n)
            out[out_off + 4 * j + lane] = bits_to_uniform(r.v[lane]);
}

/* Box-Muller on the pairs (4j, 4j+1) and (4j+2, 4j+3): u1 = 1 - uniform
 * (never 0, so log is finite), u2 = uniform; even element r cos, odd r sin. */
__kernel void random_normal(__global float *out, const uint out_off, const uint n,
                            const uint seed_lo, const uint seed_hi, const uint stream_lo,
                            const uint stream_hi, const float mean, const float std) {
    const uint j = get_global_id(0);
    if (j >= (n + 3) / 4)
        return;
    const philox4x32_ctr_t r = random_block(j, seed_lo, seed_hi, stream_lo, stream_hi);
    for (uint pair = 0; pair < 2; pair++) {
        const float u1 = 1.0f - bits_to_uniform(r.v[2 * pair]);
        const float u2 = bits_to_uniform(r.v[2 * pair + 1]);
        const float radius = sqrt(-2.0f * log(u1));
        const float angle = 6.28318530717958647692f * u2;
        const uint i = 4 * j + 2 * pair;
        if (i < n)
            out[out_off + i] = mean + std * (radius * cos(angle));
        if (i + 1 < n)
            out[out_off + i + 1] = mean + std * (radius * sin(angle));
    }
}

/* Stochastic depth's per-sample scales of every block (timm's drop_path):
 * scales[(l * 2 + branch) * samples + b] = keep ? 1 / keep_prob : 0, keep =
 * u < keep_prob as torch's bernoulli_, for block l's attention (branch 0)
 * and MLP (branch 1) outputs. u is element 2 * (first_sample + b) + branch
 * of block l's stream, whose high word is stream_hi + (l << 8) (the
 * layer's bits of clgqa_stream_id), so sample k of an optimizer step draws
 * the same numbers whichever micro-batch it is in. `rates` holds [keep_prob,
 * 1 / keep_prob] per block, rounded to float on the host. */
__kernel void drop_path_scales(__global float *scales, const uint scales_off,
                               __global const float *rates, const uint rates_off,
                               const uint layers, const uint samples, const uint first_sample,
                               const uint seed_lo, const uint seed_hi, const uint stream_lo,
                               const uint stream_hi) {
    const uint i = get_global_id(0);
    if (i >= layers * 2 * samples)
        return;
    const uint lb = i / samples, b = i - lb * samples;
    const uint l = lb / 2, branch = lb - 2 * l;
    const uint element = 2 * (first_sample + b) + branch;
    const philox4x32_ctr_t r =
        random_block(element / 4, seed_lo, seed_hi, stream_lo, stream_hi + (l << 8));
    const float u = bits_to_uniform(r.v[element - element / 4 * 4]);
    const float keep_prob = rates[rates_off + 2 * l], scale = rates[rates_off + 2 * l + 1];
    scales[scales_off + i] = u < keep_prob ? scale : 0.0f;
}
