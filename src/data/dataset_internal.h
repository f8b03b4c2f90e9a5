/* Private pieces of the dataset code, shared by the src/data/ sources, the tests and
 * the fuzz targets. Images are 8-bit, interleaved (HWC) until the very end of
 * the pipeline, where dataset.c normalises them into channel-major floats. */
#ifndef CLGQA_DATASET_INTERNAL_H
#define CLGQA_DATASET_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "clgqa/dataset.h"
#include "fail.h"

typedef struct clgqa_image {
    int width, height, channels; /* channels: 1 (gray) or 3 (RGB) */
    uint8_t *pixels;             /* [height][width][channels], malloc'ed */
} clgqa_image;

/* Largest image side and pixel count accepted from a file: keeps a corrupt
 * or hostile header from asking for gigabytes. */
#define CLGQA_IMAGE_MAX_SIDE 16384
#define CLGQA_IMAGE_MAX_PIXELS (64u << 20)


/* ---- loader.c: its ring, for the tests ---- */
/* Slots in the loader's ring: the batch the consumer holds plus those the
 * workers may prepare ahead of it. */
int clgqa_loader_depth(const clgqa_loader *ld);
/* Batches decoded and waiting for clgqa_loader_next (not the one held). */
int clgqa_loader_batches_ready(clgqa_loader *ld);

/* ---- fileio.c ---- */
/* Whole file into a malloc'ed buffer; refuses files over max_bytes. */
clgqa_status clgqa_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size);
/* If data starts with the gzip magic, replaces it by its inflated contents
 * (at most max_bytes); plain data is left alone. `name` is for messages. */
clgqa_status clgqa_gunzip_in_place(const char *name, size_t max_bytes, uint8_t **data,
                                   size_t *size);

/* printf into a path buffer; a path that does not fit is an IO error. */
clgqa_status clgqa_path_format(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- idx.c: MNIST-style IDX files ---- */
/* Checks an unsigned-byte IDX buffer with `dims` dimensions (1: labels,
 * 3: images) and returns its shape and payload (pointing into data). */
clgqa_status clgqa_idx_parse(const uint8_t *data, size_t size, const char *name, int dims,
                             uint32_t shape[3], const uint8_t **payload);

/* ---- cifar.c: CIFAR binary batches ---- */
/* Layout of one record: `label_bytes` label bytes (1 for CIFAR-10; coarse
 * then fine for CIFAR-100), then 3x32x32 channel-major pixels. */
typedef struct clgqa_cifar_format {
    int label_bytes;  /* 1 or 2 */
    int label_offset; /* which label byte to use */
    int num_classes;  /* labels must be below this */
} clgqa_cifar_format;
#define CLGQA_CIFAR_SIDE 32
#define CLGQA_CIFAR_PIXELS (3 * 32 * 32)
/* Number of records in a buffer, or a FORMAT error if the size is not a
 * whole number of records. */
clgqa_status clgqa_cifar_count(size_t size, const char *name, const clgqa_cifar_format *fmt,
                               size_t *count);
/* Decodes `count` records into interleaved 32x32x3 pixels and labels,
 * checking every label. */
clgqa_status clgqa_cifar_decode(const uint8_t *data, size_t count, const char *name,
                                const clgqa_cifar_format *fmt, uint8_t *pixels_hwc,
                                int32_t *labels);

/* ---- image.c: JPEG and PNG decode, channel conversion ---- */
clgqa_status clgqa_image_alloc(clgqa_image *img, int width, int height, int channels);
void clgqa_image_free(clgqa_image *img);
/* Decodes a JPEG (gray, RGB, YCbCr, CMYK) or PNG from memory into gray or RGB.
 * For a JPEG at least twice min_side in both directions, libjpeg's DCT
 * scaling first shrinks it by 2, 4 or 8 while staying at least min_side (as
 * Pillow's Image.draft does); min_side 0 decodes at full size. */
clgqa_status clgqa_image_decode(const uint8_t *data, size_t size, const char *name, int min_side,
                                clgqa_image *out);
/* Gray -> RGB by replication, RGB -> gray by Pillow's luma
 * (299 R + 587 G + 114 B) / 1000, rounded; in place. */
clgqa_status clgqa_image_convert(clgqa_image *img, int channels);

/* ---- resize.c ---- */
/* Pillow's Image.resize(BILINEAR): separable triangle filter whose support
 * widens by the scale factor when shrinking (antialiasing), 22-bit fixed
 * point coefficients, horizontal pass then vertical, each rounded to 8 bits. */
clgqa_status clgqa_image_resize(const clgqa_image *in, int width, int height, clgqa_image *out);

/* ---- augment.c ---- */
/* Augments a square image in place. Draws come from the generator's
 * CLGQA_RNG_AUGMENT stream of `epoch`, elements sample * 16 onwards. */
clgqa_status clgqa_augment_apply(clgqa_image *img, clgqa_augment mode, uint64_t seed, long epoch,
                                 size_t sample);
/* The RandAugment ops, exposed for the tests: op index in torchvision's
 * order (Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate,
 * Brightness, Color, Contrast, Sharpness, Posterize, Solarize, AutoContrast,
 * Equalize) with a signed magnitude. */
enum { CLGQA_RANDAUGMENT_OPS = 14 };
clgqa_status clgqa_randaugment_op(clgqa_image *img, int op, float magnitude);
/* torchvision's magnitude of `op` at bin 9 of 31 for an image of this side. */
float clgqa_randaugment_magnitude(int op, int side);

/* ---- dataset.c, folders.c: the dataset object ---- */
struct clgqa_dataset {
    clgqa_dataset_options opt; /* name and data_dir point at the copies below */
    char *name, *data_dir;
    clgqa_split split;
    clgqa_augment augment; /* always NONE for the test split */
    size_t count;
    int num_classes;
    int32_t *labels; /* [count] */
    /* MNIST and CIFAR: every image in memory, interleaved 8-bit */
    uint8_t *pixels;
    int width, height, channels;
    /* Image datasets: one file per sample, decoded on demand */
    char **paths;                /* [count] */
    atomic_uchar *unreadable;    /* [count]: set once a skipped image is counted */
    atomic_size_t skipped;
};

/* The datasets clgqa reads (dataset.c's table): config validation, the
 * opener and the messages that list them all read it, so a new dataset is
 * a row there and its reader. */
typedef struct dataset_kind {
    clgqa_dataset_info info; /* name, classes (0: counted from the data), coarse classes */
    /* Fills paths or pixels, labels, count and num_classes of ds from the
     * dataset's folder. */
    clgqa_status (*open)(clgqa_dataset *ds, const char *dir);
    /* Another spelling accepted for the name (NULL: none): the paper's
     * data.py writes the pets dataset "oxfordiitpet". */
    const char *alias;
} dataset_kind;

/* Readers of the image-file layouts: fill paths, labels, count, num_classes
 * of ds from the dataset root. */
clgqa_status clgqa_open_tiny_imagenet(clgqa_dataset *ds, const char *root);
clgqa_status clgqa_open_food101(clgqa_dataset *ds, const char *root);
clgqa_status clgqa_open_oxford_pet(clgqa_dataset *ds, const char *root);
clgqa_status clgqa_open_image_folder(clgqa_dataset *ds, const char *root);

#endif
