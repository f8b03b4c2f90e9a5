/* JPEG (libjpeg-turbo) and PNG (libspng) decoding into 8-bit gray or RGB, and
 * gray/RGB conversion. Colour handling follows Pillow, so that pixels agree
 * with a PyTorch pipeline built on Image.open(...).convert(...). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* JWRN_ codes */
#include <spng.h>

#include "dataset_internal.h"

clgqa_status clgqa_image_alloc(clgqa_image *img, int width, int height, int channels) {
    img->pixels = malloc((size_t)width * (size_t)height * (size_t)channels);
    if (!img->pixels)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a %dx%dx%d image", width,
                          height, channels);
    img->width = width;
    img->height = height;
    img->channels = channels;
    return CLGQA_OK;
}

void clgqa_image_free(clgqa_image *img) {
    free(img->pixels);
    img->pixels = NULL;
}

static clgqa_status check_dimensions(const char *name, unsigned long width, unsigned long height) {
    if (width == 0 || height == 0 || width > CLGQA_IMAGE_MAX_SIDE ||
        height > CLGQA_IMAGE_MAX_SIDE || width * height > CLGQA_IMAGE_MAX_PIXELS)
        return clgqa_fail(CLGQA_ERR_FORMAT, "cannot decode %s: image size %lux%lu is not accepted",
                          name, width, height);
    return CLGQA_OK;
}

/* ---- JPEG ---- */

/* libjpeg reports errors through error_exit, which must not return: jump
 * back to the decoder with the message. Missing data is only a warning to
 * libjpeg (it pads the image with gray): the file ending early (JPEG_EOF) or
 * the compressed data stopping before the image is complete (HIT_MARKER).
 * Both are failures here, the first being the truncated file it looks like;
 * stopping at once also keeps a tiny corrupt file from costing a full-size
 * decode. */
typedef struct jpeg_error {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error;

static void jpeg_error_exit(j_common_ptr cinfo) {
    jpeg_error *err = (jpeg_error *)cinfo->err;
    err->mgr.format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void jpeg_emit_message(j_common_ptr cinfo, int level) {
    jpeg_error *err = (jpeg_error *)cinfo->err;
    int code = err->mgr.msg_code;
    if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) {
        snprintf(err->message, sizeof err->message, "%s",
                 code == JWRN_JPEG_EOF ? "file is truncated" : "compressed data ends early");
        longjmp(err->jump, 1);
    }
    /* Other warnings (extraneous bytes, ...) are as harmless as Pillow
     * treats them; traces are not printed. */
}

/* Pillow's draft(): the largest of 8, 4, 2 with side / scale >= min_side. */
static int jpeg_scale_denominator(unsigned width, unsigned height, int min_side) {
    if (min_side <= 0)
        return 1;
    unsigned fit = width / (unsigned)min_side < height / (unsigned)min_side
                       ? width / (unsigned)min_side
                       : height / (unsigned)min_side;
    return fit >= 8 ? 8 : fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
}

/* Pillow reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts
 * CMYK -> RGB as (255 - k) - c * (255 - k) / 255, rounded as MULDIV255. */
static uint8_t cmyk_channel(int stored_c, int stored_k) {
    int c = 255 - stored_c, nk = stored_k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v);
}

static clgqa_status decode_jpeg(const uint8_t *data, size_t size, const char *name, int min_side,
                                clgqa_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_error err;
    /* Locals changed after setjmp must be volatile to survive the longjmp. */
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_error_exit;
    err.mgr.emit_message = jpeg_emit_message;
    err.message[0] = '\0';
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return clgqa_fail(CLGQA_ERR_FORMAT, "cannot decode %s: %s", name, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    clgqa_status status = check_dimensions(name, cinfo.image_width, cinfo.image_height);
    if (status != CLGQA_OK) {
        jpeg_destroy_decompress(&cinfo);
        return status;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    cinfo.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom =
        (unsigned)jpeg_scale_denominator(cinfo.image_width, cinfo.image_height, min_side);
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;
    int in_channels = cinfo.output_components, channels = gray ? 1 : 3;
    pixels = malloc((size_t)width * (size_t)height * (size_t)channels);
    row = malloc((size_t)width * (size_t)in_channels);
    if (!pixels || !row) {
        snprintf(err.message, sizeof err.message, "out of memory for %dx%d pixels", width,
                 height);
        longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = pixels + (size_t)cinfo.output_scanline * (size_t)width * (size_t)channels;
        JSAMPROW rows[1] = {cmyk ? row : dst};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (cmyk)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                    dst[x * 3 + c] = cmyk_channel(row[x * 4 + c], row[x * 4 + 3]);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->pixels = pixels;
    return CLGQA_OK;
}

/* ---- PNG ---- */

static clgqa_status decode_png(const uint8_t *data, size_t size, const char *name,
                               clgqa_image *out) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot decode %s: spng_ctx_new failed", name);
    uint8_t *rgba = NULL;
    struct spng_ihdr ihdr;
    size_t rgba_size = 0;
    int rc = spng_set_image_limits(ctx, CLGQA_IMAGE_MAX_SIDE, CLGQA_IMAGE_MAX_SIDE);
    if (!rc)
        rc = spng_set_chunk_limits(ctx, 1u << 24, 1u << 26);
    if (!rc)
        rc = spng_set_png_buffer(ctx, data, size);
    if (!rc)
        rc = spng_get_ihdr(ctx, &ihdr);
    if (rc) {
        spng_ctx_free(ctx);
        return clgqa_fail(CLGQA_ERR_FORMAT, "cannot decode %s: %s", name, spng_strerror(rc));
    }
    clgqa_status status = check_dimensions(name, ihdr.width, ihdr.height);
    if (status != CLGQA_OK) {
        spng_ctx_free(ctx);
        return status;
    }
    /* Every PNG colour type expands to RGBA8; alpha is then dropped, as
     * Pillow's convert("RGB") does. */
    rc = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &rgba_size);
    if (!rc) {
        rgba = malloc(rgba_size);
        rc = rgba ? spng_decode_image(ctx, rgba, rgba_size, SPNG_FMT_RGBA8, 0) : SPNG_EMEM;
    }
    spng_ctx_free(ctx);
    if (rc) {
        free(rgba);
        return clgqa_fail(CLGQA_ERR_FORMAT, "cannot decode %s: %s", name, spng_strerror(rc));
    }
    int gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
               ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
    int channels = gray ? 1 : 3;
    size_t count = (size_t)ihdr.width * ihdr.height;
    /* Compact RGBA in place: the write index never passes the read index. */
    for (size_t i = 0; i < count; i++)
        for (int c = 0; c < channels; c++)
            rgba[i * (size_t)channels + (size_t)c] = rgba[i * 4 + (size_t)c];
    out->width = (int)ihdr.width;
    out->height = (int)ihdr.height;
    out->channels = channels;
    out->pixels = rgba;
    return CLGQA_OK;
}

clgqa_status clgqa_image_decode(const uint8_t *data, size_t size, const char *name, int min_side,
                                clgqa_image *out) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(data, size, name, min_side, out);
    if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        return decode_png(data, size, name, out);
    return clgqa_fail(CLGQA_ERR_FORMAT, "cannot decode %s: neither a JPEG nor a PNG file", name);
}

clgqa_status clgqa_image_convert(clgqa_image *img, int channels) {
    if (img->channels == channels)
        return CLGQA_OK;
    size_t count = (size_t)img->width * (size_t)img->height;
    if (channels == 1) {
        /* Pillow's L24 luma: fixed point 19595 R + 38470 G + 7471 B, rounded. */
        for (size_t i = 0; i < count; i++) {
            const uint8_t *p = img->pixels + i * 3;
            img->pixels[i] = (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
        }
        img->channels = 1;
        return CLGQA_OK;
    }
    uint8_t *rgb = malloc(count * 3);
    if (!rgb)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a %dx%d RGB image",
                          img->width, img->height);
    for (size_t i = 0; i < count; i++)
        rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = img->pixels[i];
    free(img->pixels);
    img->pixels = rgb;
    img->channels = 3;
    return CLGQA_OK;
}
