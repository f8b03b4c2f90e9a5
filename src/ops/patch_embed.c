/* Launchers for patch_embed.cl. */
#include "patch_embed.h"
#include "op_args.h"

#define FAMILY "patch_embed"

clgqa_status clgqa_patch_im2col(clgqa_runtime *rt, clgqa_view patches, clgqa_view images,
                                size_t batch, size_t in_chans, size_t img_size, size_t patch) {
    if (patch == 0 || img_size % patch != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "clgqa_patch_im2col: img_size %zu is not a multiple of patch %zu",
                          img_size, patch);
    size_t n_images = batch * in_chans * img_size * img_size;
    if (n_images == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view("clgqa_patch_im2col", "images", images, n_images, sizeof(float)));
    CLGQA_TRY(clgqa_check_view("clgqa_patch_im2col", "patches", patches, n_images, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "patch_im2col", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, patches);
    kernel_arg_view(&args, images);
    kernel_arg_uint(&args, batch);
    kernel_arg_uint(&args, in_chans);
    kernel_arg_uint(&args, img_size);
    kernel_arg_uint(&args, patch);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n_images, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_patch_im2col_pixels(clgqa_runtime *rt, clgqa_view patches, clgqa_view pixels,
                                       size_t batch, size_t in_chans, size_t img_size,
                                       size_t patch, const float *mean, const float *std,
                                       const clgqa_image_mix *mix) {
    const char *op = "clgqa_patch_im2col_pixels";
    static const clgqa_image_mix unmixed = {CLGQA_MIX_NONE, 1.0, 0, 0, 0, 0};
    if (!mix)
        mix = &unmixed;
    if (mix->mode == CLGQA_MIX_BLEND && !(mix->lambda >= 0 && mix->lambda <= 1))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: the blend's weight %g is not in [0, 1]", op,
                          mix->lambda);
    if (mix->mode == CLGQA_MIX_BOX &&
        (mix->y0 < 0 || mix->y0 > mix->y1 || (size_t)mix->y1 > img_size || mix->x0 < 0 ||
         mix->x0 > mix->x1 || (size_t)mix->x1 > img_size))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: the box rows [%d, %d) x columns [%d, %d) "
                          "is not inside a %zu x %zu image", op, mix->y0, mix->y1, mix->x0,
                          mix->x1, img_size, img_size);
    if ((int)mix->mode < CLGQA_MIX_NONE || mix->mode > CLGQA_MIX_BOX)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: no mix mode %d", op, (int)mix->mode);
    if (patch == 0 || img_size % patch != 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: img_size %zu is not a multiple of patch %zu",
                          op, img_size, patch);
    if (in_chans > 3)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s: at most 3 channels, not %zu", op, in_chans);
    size_t n_pixels = batch * in_chans * img_size * img_size;
    if (n_pixels == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "pixels", pixels, n_pixels, 1));
    CLGQA_TRY(clgqa_check_view(op, "patches", patches, n_pixels, sizeof(float)));
    cl_float4 m = {{0, 0, 0, 0}}, s = {{1, 1, 1, 1}};
    for (size_t c = 0; c < in_chans; c++) {
        m.s[c] = mean[c];
        s.s[c] = std[c];
    }
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "patch_im2col_pixels", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, patches);
    kernel_arg_view(&args, pixels);
    kernel_arg_uint(&args, batch);
    kernel_arg_uint(&args, in_chans);
    kernel_arg_uint(&args, img_size);
    kernel_arg_uint(&args, patch);
    KERNEL_ARG(&args, m);
    KERNEL_ARG(&args, s);
    cl_uint mode = (cl_uint)mix->mode;
    float own = (float)mix->lambda, partner = (float)(1.0 - mix->lambda);
    cl_uint4 box = {{(cl_uint)mix->y0, (cl_uint)mix->y1, (cl_uint)mix->x0, (cl_uint)mix->x1}};
    KERNEL_ARG(&args, mode);
    KERNEL_ARG(&args, own);
    KERNEL_ARG(&args, partner);
    KERNEL_ARG(&args, box);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n_pixels, clgqa_work_group_size(rt, k, 256));
}

static clgqa_status check_tokens(const char *op, size_t batch, size_t n_tokens, size_t dim) {
    if (n_tokens < 2)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                          "%s: n_tokens must be at least 2 (class token and a patch), got %zu", op,
                          n_tokens);
    return clgqa_check_size(op, "batch * n_tokens * dim", batch * n_tokens * dim);
}

clgqa_status clgqa_tokens_forward(clgqa_runtime *rt, clgqa_view tokens, clgqa_view patch_out,
                                  clgqa_view cls, clgqa_view pos, size_t batch, size_t n_tokens,
                                  size_t dim) {
    const char *op = "clgqa_tokens_forward";
    CLGQA_TRY(check_tokens(op, batch, n_tokens, dim));
    size_t total = batch * n_tokens * dim;
    if (total == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "tokens", tokens, total, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "patch_out", patch_out, batch * (n_tokens - 1) * dim,
                               sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "cls", cls, dim, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "pos", pos, n_tokens * dim, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "tokens_forward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, tokens);
    kernel_arg_view(&args, patch_out);
    kernel_arg_view(&args, cls);
    kernel_arg_view(&args, pos);
    kernel_arg_uint(&args, batch);
    kernel_arg_uint(&args, n_tokens);
    kernel_arg_uint(&args, dim);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, total, clgqa_work_group_size(rt, k, 256));
}

clgqa_status clgqa_tokens_backward(clgqa_runtime *rt, clgqa_view dpatch_out, clgqa_view dcls,
                                   clgqa_view dpos, clgqa_view dtokens, size_t batch,
                                   size_t n_tokens, size_t dim) {
    const char *op = "clgqa_tokens_backward";
    CLGQA_TRY(check_tokens(op, batch, n_tokens, dim));
    if (batch * dim == 0)
        return CLGQA_OK;
    CLGQA_TRY(clgqa_check_view(op, "dtokens", dtokens, batch * n_tokens * dim, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dpatch_out", dpatch_out, batch * (n_tokens - 1) * dim,
                               sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dcls", dcls, dim, sizeof(float)));
    CLGQA_TRY(clgqa_check_view(op, "dpos", dpos, n_tokens * dim, sizeof(float)));
    cl_kernel k;
    CLGQA_TRY(clgqa_kernel(rt, FAMILY, "tokens_backward", &k));
    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, dpatch_out);
    kernel_arg_view(&args, dcls);
    kernel_arg_view(&args, dpos);
    kernel_arg_view(&args, dtokens);
    kernel_arg_uint(&args, batch);
    kernel_arg_uint(&args, n_tokens);
    kernel_arg_uint(&args, dim);
    CLGQA_TRY(kernel_args_done(&args));
    return clgqa_launch_1d(rt, k, n_tokens * dim, clgqa_work_group_size(rt, k, 256));
}
