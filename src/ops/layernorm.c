/* Launchers for layernorm.cl. */
#include "ops.h"
#include "op_args.h"

#define FAMILY "layernorm"

/* The float4 count per row when every row of every operand starts 16-byte
 * aligned (cols and all offsets multiples of 4; buffers themselves are
 * aligned), else 0: the kernels then read scalars only. */
static size_t quads_per_row(size_t cols, const clgqa_view *views, int count) {
    if (cols % 4)
        return 0;
    for (int i = 0; i < count; i++)
        if (views[i].offset % 4)
            return 0;
    return cols / 4;
}

/* The checks both forwards share; *skip when there are no rows. */
static clgqa_status check_forward(const char *op, clgqa_storage storage, clgqa_view out,
                                  clgqa_view mean, clgqa_view rstd, clgqa_view weight,
                                  clgqa_view bias, size_t rows, size_t cols, float eps, size_t *n,
                                  int *skip) {
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, n));
    *skip = rows == 0;
    if (rows == 0)
        return CLGQA_OK;
    if (cols == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: rows of 0 columns have no mean", op);
    if (!(eps > 0.0f))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: eps must be positive (got %g)", op,
                          (double)eps);
    CLGQA_TRY(clgqa_check_view(op, "out", out, *n, clgqa_storage_bytes(storage)));
    CLGQA_TRY(clgqa_check_view(op, "mean", mean, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "rstd", rstd, rows, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "weight", weight, cols, sizeof(float)));
    return clgqa_check_view(op, "bias", bias, cols, sizeof(float));
}

/* The arguments both forwards end with (out ... eps, scratch), and the
 * launch, one work-group per row; `rows_read` are the views whose rows the
 * kernel reads or writes as float4. */
static clgqa_status launch_forward(clgqa_runtime *rt, cl_kernel k, kernel_args *args,
                                   clgqa_view out, clgqa_view mean, clgqa_view rstd,
                                   clgqa_view weight, clgqa_view bias, size_t rows, size_t cols,
                                   float eps, const clgqa_view *rows_read, int count) {
    size_t local = clgqa_row_group_size(rt, k, (cols + 3) / 4); /* a float4 each */
    kernel_arg_view(args, out);
    kernel_arg_view(args, mean);
    kernel_arg_view(args, rstd);
    kernel_arg_view(args, weight);
    kernel_arg_view(args, bias);
    kernel_arg_uint(args, cols);
    kernel_arg_uint(args, quads_per_row(cols, rows_read, count));
    KERNEL_ARG(args, eps);
    kernel_arg_local(args, local * sizeof(float));
    CLGQA_TRY(kernel_args_done(args));
    return clgqa_launch_1d(rt, k, rows * local, local);
}

clgqa_status clgqa_layernorm_forward(clgqa_runtime *rt, clgqa_storage storage, clgqa_view out,
                                     clgqa_view mean, clgqa_view rstd, clgqa_view in,
                                     clgqa_view weight, clgqa_view bias, size_t rows, size_t cols,
                                     float eps) {
    static const char op[] = "clgqa_layernorm_forward";
    size_t n;
    int skip;
    CLGQA_TRY(
        check_forward(op, storage, out, mean, rstd, weight, bias, rows, cols, eps, &n, &skip));
    if (skip)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
    /* In place only in float: a half row written over the float row it
     * reads would overwrite elements other work-items have yet to read. */
    if (storage != CLGQA_STORAGE_FLOAT &&
        clgqa_views_overlap(out, clgqa_storage_bytes(storage), in, sizeof(float), n))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: a half out must not overlap in (in place is float only)", op);
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(storage),
                                   "layernorm_forward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, in);
    const clgqa_view rows_read[] = {out, in, weight, bias};
    return launch_forward(rt, k, &args, out, mean, rstd, weight, bias, rows, cols, eps, rows_read,
                          4);
}

clgqa_status clgqa_residual_layernorm_forward(clgqa_runtime *rt, clgqa_storage storage,
                                              clgqa_view x, clgqa_view residual, clgqa_view linear,
                                              clgqa_view linear_bias, clgqa_view branch_scales,
                                              size_t rows_per_scale, clgqa_view out,
                                              clgqa_view mean, clgqa_view rstd, clgqa_view weight,
                                              clgqa_view bias, size_t rows, size_t cols,
                                              float eps) {
    static const char op[] = "clgqa_residual_layernorm_forward";
    size_t n;
    int skip;
    CLGQA_TRY(
        check_forward(op, storage, out, mean, rstd, weight, bias, rows, cols, eps, &n, &skip));
    if (skip)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "x", x, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "residual", residual, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "linear", linear, n, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "linear_bias", linear_bias, cols, sizeof(float)));
    cl_uint use_scales = branch_scales.mem != NULL;
    if (use_scales) {
        if (rows_per_scale == 0)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: rows_per_scale must be positive", op);
        CLGQA_TRY(clgqa_check_view(op, "branch_scales", branch_scales,
                                   (rows + rows_per_scale - 1) / rows_per_scale, sizeof(float)));
    } else {
        branch_scales = linear_bias; /* a valid buffer the kernel never reads */
        rows_per_scale = 1;
    }
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel_variant(rt, FAMILY, clgqa_storage_defines(storage),
                                   "residual_layernorm_forward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, x);
    kernel_arg_view(&args, residual);
    kernel_arg_view(&args, linear);
    kernel_arg_view(&args, linear_bias);
    kernel_arg_view(&args, branch_scales);
    KERNEL_ARG(&args, use_scales);
    kernel_arg_uint(&args, rows_per_scale);
    const clgqa_view rows_read[] = {x, residual, linear, linear_bias, out, weight, bias};
    return launch_forward(rt, k, &args, out, mean, rstd, weight, bias, rows, cols, eps, rows_read,
                          7);
}

size_t clgqa_layernorm_backward_chunks(clgqa_runtime *rt) {
    return 4 * (size_t)(rt->compute_units ? rt->compute_units : 1);
}

/* The columns each work-item of a layernorm_backward_teams team covers
 * (LN_TEAM_SLOTS in layernorm.cl). */
#define TEAM_SLOTS 16

/* layernorm_backward_teams' shape on GPUs: teams of *team work-items (a
 * power of two, at least 4, with at most TEAM_SLOTS columns each), as many
 * teams as the chunk has rows, up to 256 work-items a group (fewer where
 * the local memory needs it). */
static clgqa_status teams_shape(clgqa_runtime *rt, cl_kernel k, const char *op, size_t cols,
                                size_t chunk_rows, size_t *team, size_t *local,
                                size_t *local_bytes) {
    *team = 4;
    while (*team * TEAM_SLOTS < cols)
        *team *= 2;
    size_t most = clgqa_work_group_size(rt, k, *team > 256 ? *team : 256);
    if (most < *team)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: rows of %zu columns need work-groups of %zu, %s allows %zu", op,
                          cols, *team, rt->device_name, most);
    size_t teams = 1;
    while (teams < chunk_rows && 2 * teams * *team <= most)
        teams *= 2;
    for (;;) { /* partials [2, 2, local], then the teams' column sums [teams, cols] */
        *local = teams * *team;
        *local_bytes = (4 * *local + teams * cols) * sizeof(float);
        if (*local_bytes <= rt->local_mem_bytes || teams == 1)
            return CLGQA_OK;
        teams /= 2;
    }
}

clgqa_status clgqa_layernorm_backward(clgqa_runtime *rt, clgqa_view din, clgqa_view params,
                                      clgqa_view residual, size_t chunks, clgqa_view dout,
                                      clgqa_view in, clgqa_view mean, clgqa_view rstd,
                                      clgqa_view weight, size_t rows, size_t cols) {
    static const char op[] = "clgqa_layernorm_backward";
    size_t n;
    CLGQA_TRY(clgqa_matrix_elements(op, rows, cols, &n));
    if (cols == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_chunks(op, 2 * chunks, cols));
    CLGQA_TRY(clgqa_check_view(op, "params", params, 2 * chunks * cols, sizeof(float)));
    cl_uint residual_sums = residual.mem != NULL;
    if (residual_sums)
        CLGQA_TRY(clgqa_check_view(op, "residual", residual, chunks * cols, sizeof(float)));
    else
        residual = params; /* a valid buffer the kernel does not touch */
    if (rows) {
        CLGQA_TRY(clgqa_check_view(op, "din", din, n, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "dout", dout, n, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "in", in, n, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "mean", mean, rows, sizeof(float)));
        CLGQA_TRY(clgqa_check_view(op, "rstd", rstd, rows, sizeof(float)));
    } else { /* no rows: the partials are 0; the kernel only writes them */
        din = dout = in = mean = rstd = params;
    }
    CLGQA_TRY(clgqa_check_view(op, "weight", weight, cols, sizeof(float)));
    size_t chunk_rows = (rows + chunks - 1) / chunks;

    /* CPU devices: one work-group of 4 work-items per chunk, crossing a
     * tree on every row (layernorm_backward). CPU runtimes run a group's
     * work-items as a loop around each barrier-free region, so small
     * groups pay: with 4 it took 0.12-0.15 ms against 0.22 with 16 on this
     * project's PoCL (1088 x 64, the demo), 0.7-1.2 against 1.6 (1576 x 384,
     * ViT-S at batch 8), and several rows a group made PoCL slower and
     * Intel's runtime no faster. GPUs: a team of work-items per row and
     * several rows a group (layernorm_backward_teams), one barrier per
     * round of rows instead of log2(local) + 2 per row. */
    int by_teams = rt->device_class == CLGQA_CLASS_GPU;
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY,
                           by_teams ? "layernorm_backward_teams" : "layernorm_backward", &k));
    size_t team = 0, local = 0, local_bytes = 0, scratch_bytes;
    if (by_teams) {
        CLGQA_TRY(teams_shape(rt, k, op, cols, chunk_rows, &team, &local, &local_bytes));
        scratch_bytes = 4 * local * sizeof(float);
    } else {
        local = clgqa_row_group_size(rt, k, 4);
        scratch_bytes = 2 * local * sizeof(float);
        local_bytes = scratch_bytes + 3 * cols * sizeof(float); /* the chunk's column sums */
    }
    if (local_bytes > rt->local_mem_bytes)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: rows of %zu columns need %zu bytes of local memory, %s has %llu",
                          op, cols, local_bytes, rt->device_name,
                          (unsigned long long)rt->local_mem_bytes);
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, din);
    kernel_arg_view(&args, params);
    kernel_arg_view(&args, residual);
    KERNEL_ARG(&args, residual_sums);
    kernel_arg_view(&args, dout);
    kernel_arg_view(&args, in);
    kernel_arg_view(&args, mean);
    kernel_arg_view(&args, rstd);
    kernel_arg_view(&args, weight);
    kernel_arg_uint(&args, rows);
    kernel_arg_uint(&args, cols);
    const clgqa_view rows_read[] = {din, dout, in, weight};
    kernel_arg_uint(&args, quads_per_row(cols, rows_read, 4));
    kernel_arg_uint(&args, chunk_rows);
    if (by_teams)
        kernel_arg_uint(&args, team);
    kernel_arg_local(&args, scratch_bytes);
    kernel_arg_local(&args, local_bytes - scratch_bytes);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, chunks * local, local);
}
