/* Dataset generator for the tests: see dataset_gen.h. */
#include "support/dataset_gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <spng.h>
#include <zlib.h>

uint8_t gen_pixel(int sample, int x, int y, int c) {
    /* A folded ramp (triangle wave): continuous, so JPEG keeps it well, and
     * different for every sample and channel. Values 20..220. */
    int t = (sample * 37 + x * 5 + y * 3 + c * 50) % 400;
    return (uint8_t)(20 + (t < 200 ? t : 400 - t));
}

int gen_label(int sample, int classes) { return (sample * 7 + 3) % classes; }

uint8_t *gen_image(int sample, int width, int height, int channels) {
    uint8_t *px = malloc((size_t)width * (size_t)height * (size_t)channels);
    for (int y = 0; px && y < height; y++)
        for (int x = 0; x < width; x++)
            for (int c = 0; c < channels; c++)
                px[((size_t)y * (size_t)width + (size_t)x) * (size_t)channels + (size_t)c] =
                    gen_pixel(sample, x, y, c);
    return px;
}

int gen_mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkdir %s: %s\n", buf, strerror(errno));
        return -1;
    }
    return 0;
}

int gen_write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int gen_write_jpeg(const char *path, int sample, int width, int height, int channels,
                   int quality) {
    uint8_t *px = gen_image(sample, width, height, channels);
    FILE *f = fopen(path, "wb");
    if (!px || !f) {
        fprintf(stderr, "cannot write %s\n", path);
        free(px);
        if (f)
            fclose(f);
        return -1;
    }
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = px + (size_t)cinfo.next_scanline * (size_t)width * (size_t)channels;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(px);
    return fclose(f) == 0 ? 0 : -1;
}

int gen_write_png(const char *path, int sample, int width, int height, int channels) {
    uint8_t *px = gen_image(sample, width, height, channels);
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {(uint32_t)width, (uint32_t)height, 8,
                             channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE
                                           : SPNG_COLOR_TYPE_TRUECOLOR,
                             0, 0, 0};
    size_t size = 0;
    int rc = px && ctx ? spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1) : SPNG_EMEM;
    if (!rc)
        rc = spng_set_ihdr(ctx, &ihdr);
    if (!rc)
        rc = spng_encode_image(ctx, px, (size_t)width * (size_t)height * (size_t)channels,
                               SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    void *png = rc ? NULL : spng_get_png_buffer(ctx, &size, &rc);
    spng_ctx_free(ctx);
    free(px);
    if (!png) {
        fprintf(stderr, "cannot encode %s: %s\n", path, spng_strerror(rc));
        return -1;
    }
    int result = gen_write_bytes(path, png, size);
    free(png);
    return result;
}

int gen_write_text(const char *path, const char *text) {
    return gen_write_bytes(path, text, strlen(text));
}

/* ---- fixed-size formats ---- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static int write_maybe_gz(const char *path, const uint8_t *data, size_t size, int gzip) {
    if (!gzip)
        return gen_write_bytes(path, data, size);
    char gz_path[4096];
    snprintf(gz_path, sizeof gz_path, "%s.gz", path);
    gzFile f = gzopen(gz_path, "wb");
    if (!f || gzwrite(f, data, (unsigned)size) != (int)size || gzclose(f) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", gz_path);
        return -1;
    }
    return 0;
}

int gen_write_idx(const char *dir, const char *prefix, int count, int side,
                  const uint8_t *pixels, const uint8_t *labels, int gzip) {
    size_t image_bytes = (size_t)side * (size_t)side;
    uint8_t *images = malloc(16 + (size_t)count * image_bytes);
    uint8_t *label_file = malloc(8 + (size_t)count);
    if (!images || !label_file) {
        free(images);
        free(label_file);
        return -1;
    }
    put_be32(images, 0x803), put_be32(images + 4, (uint32_t)count);
    put_be32(images + 8, (uint32_t)side), put_be32(images + 12, (uint32_t)side);
    put_be32(label_file, 0x801), put_be32(label_file + 4, (uint32_t)count);
    memcpy(images + 16, pixels, (size_t)count * image_bytes);
    memcpy(label_file + 8, labels, (size_t)count);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    int rc = write_maybe_gz(path, images, 16 + (size_t)count * image_bytes, gzip);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    rc |= write_maybe_gz(path, label_file, 8 + (size_t)count, gzip);
    free(images);
    free(label_file);
    return rc;
}

static int mnist_split(const char *dir, const char *prefix, int count, int first, int side,
                       int gzip) {
    size_t image_bytes = (size_t)side * (size_t)side;
    uint8_t *pixels = malloc((size_t)count * image_bytes), *labels = malloc((size_t)count);
    for (int i = 0; pixels && labels && i < count; i++) {
        uint8_t *px = gen_image(first + i, side, side, 1);
        memcpy(pixels + (size_t)i * image_bytes, px, image_bytes);
        free(px);
        labels[i] = (uint8_t)gen_label(first + i, 10);
    }
    int rc = pixels && labels ? gen_write_idx(dir, prefix, count, side, pixels, labels, gzip) : -1;
    free(pixels);
    free(labels);
    return rc;
}

int gen_mnist(const char *dir, int train, int test, int side, int gzip) {
    return mnist_split(dir, "train", train, 0, side, gzip) |
           mnist_split(dir, "t10k", test, 1000, side, gzip);
}

static int cifar_file(const char *path, int hundred, int count, int first) {
    size_t record = (size_t)(hundred ? 2 : 1) + 3072;
    uint8_t *data = malloc(record * (size_t)count);
    for (int i = 0; i < count; i++) {
        uint8_t *rec = data + record * (size_t)i;
        int fine = gen_label(first + i, hundred ? 100 : 10);
        if (hundred)
            rec[0] = (uint8_t)(fine % 20), rec[1] = (uint8_t)fine;
        else
            rec[0] = (uint8_t)fine;
        uint8_t *planes = rec + (hundred ? 2 : 1);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    planes[c * 1024 + y * 32 + x] = gen_pixel(first + i, x, y, c);
    }
    int rc = gen_write_bytes(path, data, record * (size_t)count);
    free(data);
    return rc;
}

int gen_cifar(const char *dir, int hundred, int per_batch, int test) {
    char path[4096];
    int rc = 0;
    if (hundred) {
        snprintf(path, sizeof path, "%s/train.bin", dir);
        rc |= cifar_file(path, 1, 5 * per_batch, 0);
        snprintf(path, sizeof path, "%s/test.bin", dir);
        return rc | cifar_file(path, 1, test, 1000);
    }
    for (int b = 0; b < 5; b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b + 1);
        rc |= cifar_file(path, 0, per_batch, b * per_batch);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    return rc | cifar_file(path, 0, test, 1000);
}

/* ---- image layouts ---- */

static int append_line(const char *path, const char *line) {
    FILE *f = fopen(path, "a");
    if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

void gen_wnid(int k, char out[16]) { snprintf(out, 16, "n%08d", 99999 - k); }

int gen_tiny_imagenet(const char *root, int classes, int per_class, int test_per_class, int side) {
    char path[4096], line[256], wnid[16];
    int rc = gen_mkdirs(root);
    snprintf(path, sizeof path, "%s/wnids.txt", root);
    for (int k = 0; k < classes; k++) {
        gen_wnid(k, wnid);
        rc |= append_line(path, wnid);
    }
    for (int k = 0; k < classes; k++) {
        gen_wnid(k, wnid);
        snprintf(path, sizeof path, "%s/train/%s/images", root, wnid);
        rc |= gen_mkdirs(path);
        for (int j = 0; j < per_class; j++) {
            snprintf(path, sizeof path, "%s/train/%s/images/%s_%03d.JPEG", root, wnid, wnid, j);
            rc |= gen_write_jpeg(path, k * per_class + j, side, side, 3, 95);
        }
        snprintf(path, sizeof path, "%s/train/%s/%s_boxes.txt", root, wnid, wnid);
        rc |= append_line(path, "unused by clgqa");
    }
    snprintf(path, sizeof path, "%s/val/images", root);
    rc |= gen_mkdirs(path);
    for (int i = 0; i < classes * test_per_class; i++) {
        snprintf(path, sizeof path, "%s/val/images/val_%d.JPEG", root, i);
        rc |= gen_write_jpeg(path, 1000 + i, side, side, 3, 95);
        gen_wnid(i % classes, wnid);
        snprintf(path, sizeof path, "%s/val/val_annotations.txt", root);
        snprintf(line, sizeof line, "val_%d.JPEG\t%s\t0\t0\t%d\t%d", i, wnid, side - 1, side - 1);
        rc |= append_line(path, line);
    }
    return rc;
}

int gen_food101(const char *root, int classes, int per_class, int test_per_class, int side) {
    char path[4096], line[256];
    int rc = 0;
    snprintf(path, sizeof path, "%s/meta", root);
    rc |= gen_mkdirs(path);
    for (int k = 0; k < classes; k++) {
        snprintf(path, sizeof path, "%s/meta/classes.txt", root);
        snprintf(line, sizeof line, "dish_%02d", k);
        rc |= append_line(path, line);
        snprintf(path, sizeof path, "%s/images/dish_%02d", root, k);
        rc |= gen_mkdirs(path);
    }
    for (int i = 0; i < classes * per_class; i++) {
        snprintf(line, sizeof line, "dish_%02d/%d", i / per_class, 100000 + i);
        snprintf(path, sizeof path, "%s/meta/train.txt", root);
        rc |= append_line(path, line);
        snprintf(path, sizeof path, "%s/images/%s.jpg", root, line);
        rc |= gen_write_jpeg(path, i, side, side, 3, 95);
    }
    for (int i = 0; i < classes * test_per_class; i++) {
        snprintf(line, sizeof line, "dish_%02d/%d", i % classes, 200000 + i);
        snprintf(path, sizeof path, "%s/meta/test.txt", root);
        rc |= append_line(path, line);
        snprintf(path, sizeof path, "%s/images/%s.jpg", root, line);
        rc |= gen_write_jpeg(path, 1000 + i, side, side, 3, 95);
    }
    return rc;
}

int gen_oxford_pet(const char *root, int train, int test, int side) {
    char path[4096], line[256];
    int rc = 0;
    snprintf(path, sizeof path, "%s/images", root);
    rc |= gen_mkdirs(path);
    snprintf(path, sizeof path, "%s/annotations", root);
    rc |= gen_mkdirs(path);
    for (int i = 0; i < train + test; i++) {
        int sample = i < train ? i : 1000 + i - train, class_id = gen_pet_label(sample) + 1;
        snprintf(line, sizeof line, "Breed_%d_%d %d %d %d", class_id, sample, class_id, class_id <= 12 ? 1 : 2,
                 class_id <= 12 ? class_id : class_id - 12);
        snprintf(path, sizeof path, "%s/annotations/%s.txt", root, i < train ? "trainval" : "test");
        rc |= append_line(path, line);
        snprintf(path, sizeof path, "%s/images/Breed_%d_%d.jpg", root, class_id, sample);
        rc |= gen_write_jpeg(path, sample, side, side, 3, 95);
    }
    return rc;
}

int gen_pet_label(int sample) { return (sample * 7 + 3) % 37; }

int gen_image_folder(const char *root, int classes, int per_class, int test_per_class, int side,
                     int png) {
    char path[4096];
    int rc = 0;
    for (int split = 0; split < 2; split++) {
        int n = split == 0 ? per_class : test_per_class;
        for (int k = 0; k < classes; k++) {
            snprintf(path, sizeof path, "%s/%s/class_%02d", root, split == 0 ? "train" : "test",
                     k);
            rc |= gen_mkdirs(path);
            for (int j = 0; j < n; j++) {
                int sample = (split == 0 ? 0 : 1000) + k * n + j;
                snprintf(path, sizeof path, "%s/%s/class_%02d/img_%03d.%s", root,
                         split == 0 ? "train" : "test", k, j, png ? "png" : "jpg");
                rc |= png ? gen_write_png(path, sample, side, side, 3)
                          : gen_write_jpeg(path, sample, side, side, 3, 95);
            }
        }
    }
    return rc;
}
