/* Counter-based random numbers on the device (random.cl): the same
 * Philox4x32-10 draws as the host generator of src/base/philox.c. */
#include "ops.h"
#include "op_args.h"

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

clgqa_status clgqa_drop_path_scales(clgqa_runtime *rt, clgqa_view scales, clgqa_view rates,
                                    size_t layers, size_t samples, uint64_t first_sample,
                                    uint64_t seed, uint64_t stream) {
    static const char op[] = "clgqa_drop_path_scales";
    size_t n = layers * 2 * samples;
    if (n == 0)
        return CLGQA_OK;
    if (layers > 0xffff || (stream & 0xffffull << 40) || first_sample + samples > UINT32_MAX / 2)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: %zu layers, samples from %llu and a stream "
                          "with layer bits %llu are beyond the stream id's fields", op, layers,
                          (unsigned long long)first_sample,
                          (unsigned long long)(stream >> 40 & 0xffff));
    CLGQA_TRY(clgqa_check_size(op, "layers * 2 * samples", n));
    CLGQA_TRY(clgqa_check_view(op, "scales", scales, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "rates", rates, 2 * layers, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, "random", "drop_path_scales", &k));
    cl_uint words[4] = {(cl_uint)seed, (cl_uint)(seed >> 32), (cl_uint)stream,
                        (cl_uint)(stream >> 32)};
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, scales);
    kernel_arg_view(&args, rates);
    kernel_arg_uint(&args, layers);
    kernel_arg_uint(&args, samples);
    kernel_arg_uint(&args, (size_t)first_sample);
    for (int i = 0; i < 4; i++)
        KERNEL_ARG(&args, words[i]);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n, clgqa_work_group_size(rt, k, 256));
}
