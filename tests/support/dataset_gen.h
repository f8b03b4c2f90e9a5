/* Writes small datasets in every published layout clgqa reads, with real
 * JPEG (libjpeg-turbo) and PNG (libspng) files, for the dataset suites.
 *
 * Pixel values come from gen_pixel(), labels from gen_label(), so a test can
 * recompute what any sample must hold. Writers return 0 on success and
 * print the failing path otherwise. */
#ifndef CLGQA_DATASET_GEN_H
#define CLGQA_DATASET_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Pixel (x, y, channel c) of generated image `sample`: a folded ramp with a
 * per-sample and per-channel offset, in 20..220. */
uint8_t gen_pixel(int sample, int x, int y, int c);
/* Label of generated sample i among `classes`. */
int gen_label(int sample, int classes);
/* The generated image as interleaved pixels (malloc'ed). */
uint8_t *gen_image(int sample, int width, int height, int channels);

int gen_mkdirs(const char *path); /* mkdir -p */
int gen_write_bytes(const char *path, const void *data, size_t size);
int gen_write_text(const char *path, const char *text); /* without the final NUL */

/* Image files of gen_image(sample, ...). channels: 1 gray, 3 RGB, 4 CMYK
 * (JPEG only). */
int gen_write_jpeg(const char *path, int sample, int width, int height, int channels,
                   int quality);
int gen_write_png(const char *path, int sample, int width, int height, int channels);

/* MNIST layout: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] with
 * `train` and `test` samples of side x side (labels gen_label(i, 10); the
 * test split's samples are numbered from 1000). */
int gen_mnist(const char *dir, int train, int test, int side, int gzip);
/* One IDX split of your own: <dir>/<prefix>-images-idx3-ubyte (count
 * side x side images, `pixels` row-major) and -labels-idx1-ubyte, gzipped
 * (.gz) when gzip. */
int gen_write_idx(const char *dir, const char *prefix, int count, int side,
                  const uint8_t *pixels, const uint8_t *labels, int gzip);
/* CIFAR-10 (data_batch_1..5.bin with per_batch records each, test_batch.bin
 * with `test`) or CIFAR-100 (train.bin with 5 * per_batch, test.bin;
 * coarse label = fine % 20). Test samples are numbered from 1000. */
int gen_cifar(const char *dir, int hundred, int per_batch, int test);

/* Image layouts: `classes` classes of `per_class` train images and
 * `test_per_class` test images, side x side, named so that clgqa's listing
 * order is the generation order. Train sample i is generated image i with
 * label i / per_class. Test sample i is generated image 1000 + i with label
 * i % classes for Tiny ImageNet and Food-101 (annotation-file order) and
 * i / test_per_class for image folders (sorted folders). Tiny ImageNet's
 * class k is wnid gen_wnid(k), which sort in reverse: labels must follow
 * wnids.txt's order, not the names'. */
void gen_wnid(int k, char out[16]);
int gen_tiny_imagenet(const char *root, int classes, int per_class, int test_per_class, int side);
int gen_food101(const char *root, int classes, int per_class, int test_per_class, int side);
/* Oxford-IIIT Pet as torchvision unpacks it into oxford-iiit-pet/:
 * root/images/<name>.jpg and root/annotations/{trainval,test}.txt lines
 * "<name> <class id> <species> <breed id>"; `train` samples numbered from 0,
 * `test` from 1000, class id gen_pet_label(sample) + 1 (of 37). */
int gen_oxford_pet(const char *root, int train, int test, int side);
int gen_pet_label(int sample);
/* root/{train,test}/<class>/..., PNG when png, else JPEG */
int gen_image_folder(const char *root, int classes, int per_class, int test_per_class, int side,
                     int png);

#endif
