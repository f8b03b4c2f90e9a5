/* Datasets: readers for the published layouts of MNIST, Fashion-MNIST,
 * CIFAR-10/100, Tiny ImageNet, Food-101, Oxford-IIIT Pet, CINIC-10 and plain
 * image folders,
 * and a background loader that turns them into normalised float batches.
 *
 * Every sample goes through the same pipeline, in 8-bit pixels until the end:
 *   decode (JPEG, PNG, or the in-memory IDX/CIFAR bytes)
 *   -> channels converted to in_chans (gray replicated; RGB to luma)
 *   -> resized to img_size x img_size (Pillow's BILINEAR, antialiased)
 *   -> training augmentation (augment, train split only)
 *   -> (x / 255 - norm_mean[c]) / norm_std[c], stored channel-major (CHW).
 *
 * Randomness (epoch shuffle, augmentation) comes from a counter-based
 * generator (Philox) keyed by (seed, epoch, sample index), so a
 * batch's contents never depend on thread timing: two runs with one seed see
 * the same batches, and a resumed run sees what an uninterrupted one would.
 *
 * MNIST and CIFAR are read into memory once; the JPEG/PNG datasets keep only
 * file paths and decode on the fly in the loader's threads. */
#ifndef CLGQA_DATASET_H
#define CLGQA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "clgqa/error.h"

typedef enum clgqa_split { CLGQA_SPLIT_TRAIN = 0, CLGQA_SPLIT_TEST } clgqa_split;

/* Training augmentation (train split only; src/data/augment.c). */
typedef enum clgqa_augment {
    CLGQA_AUGMENT_NONE = 0,
    CLGQA_AUGMENT_FLIP,        /* horizontal flip with p = 0.5 */
    CLGQA_AUGMENT_CROP_FLIP,   /* zero-pad by side/8, random crop, then flip */
    CLGQA_AUGMENT_RANDAUGMENT  /* torchvision RandAugment(num_ops=2, magnitude=9) */
} clgqa_augment;
/* "none", "flip", "crop_flip", "randaugment" ("unknown" outside). */
const char *clgqa_augment_name(clgqa_augment augment);
clgqa_status clgqa_augment_parse(const char *name, clgqa_augment *out);

/* The datasets clgqa reads, one row each. */
typedef struct clgqa_dataset_info {
    const char *name;   /* the config's `dataset` */
    int classes;        /* 0: counted from the data (imagefolder) */
    int coarse_classes; /* classes under CLGQA_DATASET_COARSE_LABELS; 0: none */
} clgqa_dataset_info;
/* The row of the dataset called `name` (or by another spelling it accepts:
 * "oxfordiitpet", the paper's, for oxfordiiitpet), or NULL. */
const clgqa_dataset_info *clgqa_dataset_find(const char *name);
/* Every name, joined by ", " (for messages). */
const char *clgqa_dataset_names(void);

/* Flags of clgqa_dataset_options. */
enum {
    /* Image datasets: an image that cannot be read or decoded is left out of
     * its batch (and counted by clgqa_dataset_skipped) instead of failing. */
    CLGQA_DATASET_SKIP_UNREADABLE = 1,
    /* cifar100: the 20 coarse labels instead of the 100 fine ones. */
    CLGQA_DATASET_COARSE_LABELS = 2
};

/* What to open and how each sample is prepared (the config keys of the same
 * names give them, see clgqa_config_dataset_options). */
typedef struct clgqa_dataset_options {
    const char *name;      /* a clgqa_dataset_names() entry */
    const char *data_dir;  /* the dataset's folder; NULL or "": see clgqa_dataset_open */
    int img_size;          /* samples are resized to img_size x img_size */
    int in_chans;          /* 1 (gray) or 3 (RGB); the readers convert */
    int num_classes;       /* 0: the dataset's; otherwise it must equal the dataset's */
    clgqa_augment augment; /* training augmentation (train split only) */
    float norm_mean[3], norm_std[3]; /* per channel */
    uint64_t seed;         /* keys the shuffle and augmentation streams */
    int flags;             /* CLGQA_DATASET_* */
} clgqa_dataset_options;

typedef struct clgqa_dataset clgqa_dataset;

/* Opens one split of the dataset `options` name. An empty data_dir looks
 * in ./<name> (where the reference's torchvision code downloads it;
 * torchvision's folders inside, such as MNIST/raw, are found), then, for
 * fashion-mnist, in /usr/share/datasets/fashion-mnist. Reads the fixed-size
 * datasets into memory and lists the files of the image datasets. The
 * options are copied. Errors name the file: missing folder or file
 * (CLGQA_ERR_IO), truncated file, wrong magic or sizes, label out of range
 * (CLGQA_ERR_FORMAT). */
clgqa_status clgqa_dataset_open(const clgqa_dataset_options *options, clgqa_split split,
                                clgqa_dataset **out);
void clgqa_dataset_close(clgqa_dataset *ds);

size_t clgqa_dataset_count(const clgqa_dataset *ds);
int clgqa_dataset_num_classes(const clgqa_dataset *ds);
int clgqa_dataset_channels(const clgqa_dataset *ds); /* in_chans */
int clgqa_dataset_img_size(const clgqa_dataset *ds); /* img_size */
/* Distinct images skipped so far under CLGQA_DATASET_SKIP_UNREADABLE. */
size_t clgqa_dataset_skipped(const clgqa_dataset *ds);

/* One sample through the whole pipeline: image is [channels, img_size,
 * img_size] floats. `epoch` keys the augmentation (ignored for the test split
 * or augment: none). Thread-safe. An unreadable image fails here even under
 * CLGQA_DATASET_SKIP_UNREADABLE (the loader does the skipping). */
clgqa_status clgqa_dataset_get(clgqa_dataset *ds, size_t index, long epoch, float *image,
                               int32_t *label);
/* The same sample before normalisation: [channels, img_size, img_size]
 * 8-bit pixels (what the device normalises, see clgqa_model_forward_pixels). */
clgqa_status clgqa_dataset_get_pixels(clgqa_dataset *ds, size_t index, long epoch,
                                      uint8_t *pixels, int32_t *label);

/* One JPEG or PNG file through the test split's pipeline (decode, channels,
 * resize, normalise; no augmentation), for classifying images outside a
 * dataset, prepared as `options` say: image is [in_chans, img_size,
 * img_size] floats. Errors name the file. */
clgqa_status clgqa_image_load(const clgqa_dataset_options *options, const char *path,
                              float *image);

/* ---- loader: batches prepared by background threads ---- */

typedef struct clgqa_loader clgqa_loader;

typedef struct clgqa_batch {
    float *images;   /* [count, channels, img_size, img_size]; NULL in pixel mode */
    uint8_t *pixels; /* the same, 8-bit before normalisation, in pixel mode; else NULL */
    int32_t *labels; /* [count] */
    int count;       /* batch_size, fewer for the epoch's last batch (or when
                        images were skipped); 0 when the epoch is over */
    long index;      /* position of this batch in the epoch, from 0 */
    int replicated;  /* sharded loader: the batch had fewer samples than parts,
                        so every part has all of it (clgqa_loader_shard) */
    int first;       /* sharded loader: this part's first position in the whole
                        batch (0 unsharded, and for a replicated batch) */
} clgqa_batch;

/* A loader over ds (which must outlive it), serving batches in `order`.
 * threads: worker threads, 0 for one
 * per online CPU (at most 8). Nothing is decoded until clgqa_loader_start. */
typedef enum clgqa_order {
    CLGQA_ORDER_DATASET = 0, /* the dataset's order (evaluation) */
    CLGQA_ORDER_SHUFFLED     /* a new order each epoch, from the options' seed */
} clgqa_order;
clgqa_status clgqa_loader_create(clgqa_dataset *ds, int batch_size, clgqa_order order,
                                 int threads, clgqa_loader **out);
/* Data-parallel runs: the loader's batch_size is the global batch, split
 * into `parts` contiguous shards, and the loader yields shard `part` only:
 * positions [n*part/parts, n*(part+1)/parts) of a batch of n samples, with
 * the order and augmentation draws of the whole batch. A batch of fewer than
 * `parts` samples goes whole to every part (batch->replicated). Call before
 * clgqa_loader_start. */
clgqa_status clgqa_loader_shard(clgqa_loader *ld, int part, int parts);
/* Pixel mode, before the first clgqa_loader_start: batches carry 8-bit
 * pixels (batch->pixels) instead of normalised floats, a quarter of the
 * bytes to move, for normalising on the device. */
clgqa_status clgqa_loader_use_pixels(clgqa_loader *ld);
/* Begins epoch `epoch` (any epoch number, e.g. when resuming): the workers
 * start preparing its first batches at once. Abandons the rest of the
 * previous epoch if it was not consumed. */
clgqa_status clgqa_loader_start(clgqa_loader *ld, long epoch);
/* Begins epoch `epoch` at batch `first_batch` (a run resumed mid-epoch):
 * the batches from there are those clgqa_loader_start would serve. */
clgqa_status clgqa_loader_start_at(clgqa_loader *ld, long epoch, size_t first_batch);
/* Number of batches in an epoch: ceil(count / batch_size). */
size_t clgqa_loader_num_batches(const clgqa_loader *ld);
/* The next batch of the epoch, in order, waiting if it is not ready yet.
 * The batch's arrays stay valid until the next call to clgqa_loader_next,
 * clgqa_loader_start or clgqa_loader_destroy. batch->count == 0 marks the
 * end of the epoch. A worker's failure (an unreadable image, ...) is
 * returned here with its message. */
clgqa_status clgqa_loader_next(clgqa_loader *ld, clgqa_batch *batch);
/* Seconds clgqa_loader_next has spent waiting for data since creation. */
double clgqa_loader_wait_seconds(const clgqa_loader *ld);
/* Stops the workers and frees the loader (not the dataset). */
void clgqa_loader_destroy(clgqa_loader *ld);

#endif
