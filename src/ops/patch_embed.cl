/* Patch embedding of the ViT: im2col of non-overlapping patches (the conv with
 * kernel = stride = patch becomes one GEMM), and the token assembly (class
 * token + patch embeddings + position embedding) with its backward. Each
 * tensor arrives as (buffer, element offset); every kernel guards its bounds
 * (global sizes are rounded up). Index decompositions write x - (x / n) * n
 * instead of x % n next to x / n: LLVM turns such a div/rem pair into a
 * `freeze` that Oclgrind cannot check. */

/* patches[b * n + patch, k] = images[b, c, py * p + y, px * p + x] with
 * k = (c * p + y) * p + x: channel-major inside the patch, as the conv weight
 * [C, in_chans, p, p] is laid out. n = grid^2 patches, row-major. Where
 * patches[i] comes from: sample b, channel c, image row y and column x. */
void im2col_position(const uint i, const uint in_chans, const uint img_size, const uint patch,
                     uint *sample, uint *channel, uint *row_in_image, uint *column) {
    const uint grid = img_size / patch;
    const uint n = grid * grid;
    const uint k_len = in_chans * patch * patch;
    const uint row = i / k_len, k = i - row * k_len;
    const uint b = row / n, p_index = row - b * n;
    const uint py = p_index / grid, px = p_index - py * grid;
    const uint c = k / (patch * patch), yx = k - c * patch * patch;
    const uint y = yx / patch, x = yx - y * patch;
    *sample = b;
    *channel = c;
    *row_in_image = py * patch + y;
    *column = px * patch + x;
}

/* The element of image b at (c, y, x) in [batch, in_chans, img, img]. */
uint image_element(const uint b, const uint c, const uint y, const uint x, const uint in_chans,
                   const uint img_size) {
    return ((b * in_chans + c) * img_size + y) * img_size + x;
}

__kernel void patch_im2col(__global float *patches, const uint patches_off,
                           __global const float *images, const uint images_off,
                           const uint batch, const uint in_chans, const uint img_size,
                           const uint patch) {
    const uint i = get_global_id(0);
    if (i >= batch * in_chans * img_size * img_size)
        return;
    uint b, c, y, x;
    im2col_position(i, in_chans, img_size, patch, &b, &c, &y, &x);
    patches[patches_off + i] = images[images_off + image_element(b, c, y, x, in_chans, img_size)];
}

/* How patch_im2col_pixels mixes the batch (ops/patch_embed.h). */
#define MIX_NONE 0
#define MIX_BLEND 1
#define MIX_BOX 2

/* patch_im2col from 8-bit pixels, normalised on the way as the loader
 * would on the host: (x / 255 - mean[c]) / std[c] (ToTensor, Normalize;
 * up to 3 channels, in mean.x/y/z and std.x/y/z). Then, as timm's Mixup
 * (mode 'batch') on the normalised batch x and its partner x.flip(0) (image
 * b with image batch - 1 - b): MIX_BLEND gives x * own_weight + partner *
 * partner_weight; MIX_BOX takes the partner's pixels in rows [box.x, box.y)
 * and columns [box.z, box.w) (CutMix). */
float normalised_pixel(__global const uchar *pixels, const uint index, const uint c,
                       const float4 mean, const float4 std) {
    const float m = c == 0 ? mean.x : c == 1 ? mean.y : mean.z;
    const float s = c == 0 ? std.x : c == 1 ? std.y : std.z;
    return ((float)pixels[index] / 255.0f - m) / s;
}

__kernel void patch_im2col_pixels(__global float *patches, const uint patches_off,
                                  __global const uchar *pixels, const uint pixels_off,
                                  const uint batch, const uint in_chans, const uint img_size,
                                  const uint patch, const float4 mean, const float4 std,
                                  const uint mix, const float own_weight,
                                  const float partner_weight, const uint4 box) {
    const uint i = get_global_id(0);
    if (i >= batch * in_chans * img_size * img_size)
        return;
    uint b, c, y, x;
    im2col_position(i, in_chans, img_size, patch, &b, &c, &y, &x);
    const uint partner = batch - 1 - b;
    const uint own_index = pixels_off + image_element(b, c, y, x, in_chans, img_size);
    const uint partner_index = pixels_off + image_element(partner, c, y, x, in_chans, img_size);
    float value;
    if (mix == MIX_BLEND)
        value = normalised_pixel(pixels, own_index, c, mean, std) * own_weight +
                normalised_pixel(pixels, partner_index, c, mean, std) * partner_weight;
    else if (mix == MIX_BOX && y >= box.x && y < box.y && x >= box.z && x < box.w)
        value = normalised_pixel(pixels, partner_index, c, mean, std);
    else
        value = normalised_pixel(pixels, own_index, c, mean, std);
    patches[patches_off + i] = value;
}

/* tokens[b, 0, :] = cls + pos[0]; tokens[b, t, :] = patch_out[b * n + t - 1] + pos[t]. */
__kernel void tokens_forward(__global float *tokens, const uint tokens_off,
                             __global const float *patch_out, const uint patch_out_off,
                             __global const float *cls, const uint cls_off,
                             __global const float *pos, const uint pos_off, const uint batch,
                             const uint n_tokens, const uint dim) {
    const uint i = get_global_id(0);
    if (i >= batch * n_tokens * dim)
        return;
    const uint row = i / dim, c = i - row * dim;
    const uint b = row / n_tokens, t = row - b * n_tokens;
    const float token = t == 0 ? cls[cls_off + c]
                               : patch_out[patch_out_off + (b * (n_tokens - 1) + t - 1) * dim + c];
    tokens[tokens_off + i] = token + pos[pos_off + t * dim + c];
}

/* One work-item per (token, channel): dpos[t, c] += sum_b dtokens[b, t, c]
 * (summed in batch order, so the result does not depend on scheduling),
 * dcls[c] += the t = 0 sum, dpatch_out[b * n + t - 1, c] += dtokens[b, t, c].
 * The class token (t = 0) and the patch tokens take separate loops, and dpos
 * is stored last on both paths. Written as one loop holding `if (t > 0)`
 * and a trailing `if (t == 0) dcls[c] += sum`, Intel's CPU OpenCL runtime
 * (2026.2) merged the two paths' last stores (dpos, dcls) into one store
 * through a per-work-item pointer, and its vectorizer used the first active
 * lane's pointer for the whole vector: where a vector held t = 0 and t = 1
 * work-items (dim not a multiple of its width), their dpos went to dcls,
 * past its end (tests/test_ops_patch_embed.c keeps a reproducer). */
__kernel void tokens_backward(__global float *dpatch_out, const uint dpatch_out_off,
                              __global float *dcls, const uint dcls_off, __global float *dpos,
                              const uint dpos_off, __global const float *dtokens,
                              const uint dtokens_off, const uint batch, const uint n_tokens,
                              const uint dim) {
    const uint i = get_global_id(0);
    if (i >= n_tokens * dim)
        return;
    const uint t = i / dim, c = i - t * dim;
    float sum = 0.0f;
    if (t == 0) {
        for (uint b = 0; b < batch; b++)
            sum += dtokens[dtokens_off + b * n_tokens * dim + c];
        dcls[dcls_off + c] += sum;
    } else {
        for (uint b = 0; b < batch; b++) {
            const float g = dtokens[dtokens_off + (b * n_tokens + t) * dim + c];
            sum += g;
            dpatch_out[dpatch_out_off + (b * (n_tokens - 1) + t - 1) * dim + c] += g;
        }
    }
    dpos[dpos_off + i] += sum;
}
