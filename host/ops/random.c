/* Counter-based random numbers (Random123 Philox4x32-10), identical on host
 * and device: kernels/random.cl holds the device side. */
#include <math.h>

#include <Random123/philox.h>

#include "clgqa/ops.h"
#include "ops/op_args.h"

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

/* ---- device launchers (kernels/random.cl) ---- */

/* Arguments shared by both kernels: out, n, seed and stream halves. */
static kernel_args random_args(cl_kernel k, clgqa_view out, size_t n, uint64_t seed,
                               uint64_t stream) {
    cl_uint words[4] = {(cl_uint)seed, (cl_uint)(seed >> 32), (cl_uint)stream,
                        (cl_uint)(stream >> 32)};
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, out);
    kernel_arg_uint(&args, n);
    for (int i = 0; i < 4; i++)
        KERNEL_ARG(&args, words[i]);
    return args;
}

clgqa_status clgqa_random_uniform(clgqa_runtime *rt, clgqa_view out, size_t n, uint64_t seed,
                                  uint64_t stream) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_random_uniform", "out", out, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, "random", "random_uniform", &k));
    kernel_args args = random_args(k, out, n, seed, stream);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, (n + 3) / 4, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_random_normal(clgqa_runtime *rt, clgqa_view out, size_t n, uint64_t seed,
                                 uint64_t stream, float mean, float std) {
    if (n == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_random_normal", "out", out, n, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, "random", "random_normal", &k));
    kernel_args args = random_args(k, out, n, seed, stream);
    KERNEL_ARG(&args, mean);
    KERNEL_ARG(&args, std);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, (n + 3) / 4, clgqa_work_group_size(rt, k, 256));
}
