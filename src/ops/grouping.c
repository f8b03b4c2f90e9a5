/* Launchers for grouping.cl: key norms and the query-head
 * allocations (KDGQA, DGQA diff/EMA; each falls back to the static split). Everything stays on the
 * device: the allocation kernels read key_norms where key_norms wrote them
 * and write kv_map / group_counts where attention reads them. */
#include "attention.h"
#include "op_args.h"

#define FAMILY "grouping"

/* Shapes every grouping launcher shares; H % G == 0 is required because the
 * static split is the fallback of every dynamic scheme. */
static clgqa_status check_grouping_dims(const char *op, const clgqa_attention_dims *dims) {
    if (dims->heads <= 0 || dims->kv_heads <= 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: heads (%d) and kv_heads (%d) must be positive",
                          op, dims->heads, dims->kv_heads);
    if (dims->heads % dims->kv_heads != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: %d query heads cannot be split statically over %d key/value heads "
                          "(heads must be a multiple of kv_heads)",
                          op, dims->heads, dims->kv_heads);
    return CLGQA_OK;
}

static clgqa_status check_map_views(const char *op, const clgqa_attention_dims *dims,
                                    clgqa_view kv_map, clgqa_view group_counts) {
    CLGQA_TRY(clgqa_check_view(op, "kv_map", kv_map, (size_t)dims->heads, sizeof(cl_int)));
    return clgqa_check_view(op, "group_counts", group_counts, (size_t)dims->kv_heads,
                            sizeof(cl_int));
}

/* Token slices per (sample, key head) for key_norm_partials: enough for 4
 * work-groups per compute unit (1 when B*G already gives that), never more
 * than the tokens. */
static size_t key_norm_slices(clgqa_runtime *rt, const clgqa_attention_dims *dims) {
    cl_uint units = 1;
    clGetDeviceInfo(rt->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    size_t pairs = (size_t)dims->batch * dims->kv_heads, want = 4 * (size_t)units;
    size_t slices = (want + pairs - 1) / pairs;
    return slices > (size_t)dims->tokens ? (size_t)dims->tokens : slices;
}

size_t clgqa_key_norms_scratch_floats(const clgqa_attention_dims *dims) {
    return (size_t)dims->batch * dims->kv_heads * dims->tokens;
}

/* key_norm_partials into scratch; returns the slices per (sample, key head). */
static clgqa_status key_norm_partials(clgqa_runtime *rt, const char *op,
                                      const clgqa_attention_dims *dims, clgqa_view key_norms,
                                      clgqa_view k, clgqa_view scratch, cl_uint *slices_out) {
    if (dims->batch <= 0 || dims->tokens <= 0 || dims->kv_heads <= 0 || dims->head_dim <= 0 ||
        dims->row_stride < 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: batch %d, tokens %d, kv_heads %d, head_dim %d must be positive "
                          "(row_stride %d >= 0)",
                          op, dims->batch, dims->tokens, dims->kv_heads, dims->head_dim,
                          dims->row_stride);
    size_t width = (size_t)dims->kv_heads * dims->head_dim;
    size_t stride = dims->row_stride ? (size_t)dims->row_stride : width;
    if (stride < width)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: row_stride %zu is shorter than a row of k (%zu)",
                          op, stride, width);
    size_t rows = (size_t)dims->batch * dims->tokens;
    CLGQA_TRY(clgqa_check_view(op, "key_norms", key_norms, (size_t)dims->kv_heads, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "k", k, (rows - 1) * stride + width,
                               clgqa_storage_bytes(dims->storage)));
    CLGQA_TRY(clgqa_check_view(op, "scratch", scratch, clgqa_key_norms_scratch_floats(dims),
                               sizeof(float)));
    size_t slices = key_norm_slices(rt, dims);
    size_t chunk = ((size_t)dims->tokens + slices - 1) / slices;
    cl_uint tokens = (cl_uint)dims->tokens;
    cl_uint kv_heads = (cl_uint)dims->kv_heads, head_dim = (cl_uint)dims->head_dim;

    cl_kernel partials;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(dims->storage),
                                   "key_norm_partials", &partials));
    size_t local = clgqa_row_group_size(rt, partials, chunk * dims->head_dim);
    kernel_args args = kernel_args_start(partials);
    kernel_arg_view(&args, scratch);
    kernel_arg_view(&args, k);
    KERNEL_ARG(&args, tokens);
    KERNEL_ARG(&args, kv_heads);
    KERNEL_ARG(&args, head_dim);
    kernel_arg_uint(&args, stride);
    kernel_arg_uint(&args, slices);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    *slices_out = (cl_uint)slices;
    return clgqa_launch_1d(rt, partials, (size_t)dims->batch * dims->kv_heads * slices * local,
                           local);
}

/* The work-group size of the second stage, the same for key_norms and
 * key_norms_kdgqa so that both sum in one order. */
static clgqa_status second_stage_group_size(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                            size_t *local) {
    cl_kernel norms, fused;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "key_norms", &norms));
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "key_norms_kdgqa", &fused));
    size_t a = clgqa_row_group_size(rt, norms, (size_t)dims->batch),
           b = clgqa_row_group_size(rt, fused, (size_t)dims->batch);
    *local = a < b ? a : b;
    return CLGQA_OK;
}

clgqa_status clgqa_key_norms(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                             clgqa_view key_norms, clgqa_view k, clgqa_view scratch) {
    cl_uint slices;
    CLGQA_TRY(key_norm_partials(rt, "clgqa_key_norms", dims, key_norms, k, scratch, &slices));
    cl_uint batch = (cl_uint)dims->batch, kv_heads = (cl_uint)dims->kv_heads;
    size_t local;
    CLGQA_TRY(second_stage_group_size(rt, dims, &local));
    cl_kernel norms;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "key_norms", &norms));
    kernel_args args = kernel_args_start(norms);
    kernel_arg_view(&args, key_norms);
    kernel_arg_view(&args, scratch);
    KERNEL_ARG(&args, batch);
    KERNEL_ARG(&args, kv_heads);
    KERNEL_ARG(&args, slices);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, norms, (size_t)dims->kv_heads * local, local);
}

clgqa_status clgqa_key_norms_kdgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                   clgqa_view key_norms, clgqa_view kv_map,
                                   clgqa_view group_counts, clgqa_view k, clgqa_view scratch) {
    const char *op = "clgqa_key_norms_kdgqa";
    CLGQA_TRY(check_grouping_dims(op, dims));
    CLGQA_TRY(check_map_views(op, dims, kv_map, group_counts));
    cl_uint slices;
    CLGQA_TRY(key_norm_partials(rt, op, dims, key_norms, k, scratch, &slices));
    cl_uint batch = (cl_uint)dims->batch, heads = (cl_uint)dims->heads,
            kv_heads = (cl_uint)dims->kv_heads;
    size_t local;
    CLGQA_TRY(second_stage_group_size(rt, dims, &local));
    cl_kernel fused;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "key_norms_kdgqa", &fused));
    kernel_args args = kernel_args_start(fused);
    kernel_arg_view(&args, key_norms);
    kernel_arg_view(&args, scratch);
    kernel_arg_view(&args, kv_map);
    kernel_arg_view(&args, group_counts);
    KERNEL_ARG(&args, batch);
    KERNEL_ARG(&args, heads);
    KERNEL_ARG(&args, kv_heads);
    KERNEL_ARG(&args, slices);
    kernel_arg_local(&args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, fused, local, local);
}

clgqa_status clgqa_grouping_kdgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims,
                                  clgqa_view key_norms, clgqa_view kv_map,
                                  clgqa_view group_counts) {
    const char *op = "clgqa_grouping_kdgqa";
    CLGQA_TRY(check_grouping_dims(op, dims));
    CLGQA_TRY(clgqa_check_view(op, "key_norms", key_norms, (size_t)dims->kv_heads, sizeof(float)));
    CLGQA_TRY(check_map_views(op, dims, kv_map, group_counts));
    cl_kernel kern;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "grouping_kdgqa", &kern));
    cl_uint heads = (cl_uint)dims->heads, kv_heads = (cl_uint)dims->kv_heads;
    kernel_args args = kernel_args_start(kern);
    kernel_arg_view(&args, key_norms);
    kernel_arg_view(&args, kv_map);
    kernel_arg_view(&args, group_counts);
    KERNEL_ARG(&args, heads);
    KERNEL_ARG(&args, kv_heads);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, kern, 1, 1);
}

clgqa_status clgqa_grouping_dgqa(clgqa_runtime *rt, const clgqa_attention_dims *dims, int ema,
                                 int evaluation, int window_size, clgqa_view key_norms,
                                 clgqa_view cache, clgqa_view kv_map, clgqa_view group_counts,
                                 uint64_t seed, uint64_t stream) {
    const char *op = "clgqa_grouping_dgqa";
    CLGQA_TRY(check_grouping_dims(op, dims));
    if (window_size <= 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: window_size must be positive, got %d", op,
                          window_size);
    CLGQA_TRY(clgqa_check_view(op, "key_norms", key_norms, (size_t)dims->kv_heads, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "cache", cache, (size_t)dims->kv_heads, sizeof(float)));
    CLGQA_TRY(check_map_views(op, dims, kv_map, group_counts));
    cl_kernel kern;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "grouping_dgqa", &kern));
    cl_uint heads = (cl_uint)dims->heads, kv_heads = (cl_uint)dims->kv_heads;
    cl_int ema_flag = ema != 0, evaluation_flag = evaluation != 0;
    cl_uint window = (cl_uint)window_size;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint stream_lo = (cl_uint)stream, stream_hi = (cl_uint)(stream >> 32);
    kernel_args args = kernel_args_start(kern);
    kernel_arg_view(&args, key_norms);
    kernel_arg_view(&args, cache);
    kernel_arg_view(&args, kv_map);
    kernel_arg_view(&args, group_counts);
    KERNEL_ARG(&args, heads);
    KERNEL_ARG(&args, kv_heads);
    KERNEL_ARG(&args, ema_flag);
    KERNEL_ARG(&args, evaluation_flag);
    KERNEL_ARG(&args, window);
    KERNEL_ARG(&args, seed_lo);
    KERNEL_ARG(&args, seed_hi);
    KERNEL_ARG(&args, stream_lo);
    KERNEL_ARG(&args, stream_hi);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, kern, 1, 1);
}
