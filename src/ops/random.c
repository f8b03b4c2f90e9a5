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
