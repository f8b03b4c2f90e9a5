/* Opening a dataset split by name, the in-memory readers (MNIST-style IDX,
 * CIFAR binary), and the per-sample pipeline: load -> channels -> resize ->
 * augment -> normalise. The image-file layouts live in folders.c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset_internal.h"

#define DEFAULT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* Largest file read whole (CIFAR-100 train.bin is 150 MB, MNIST 47 MB). */
#define MAX_DATA_FILE_BYTES ((size_t)1 << 30)
#define MAX_IMAGE_FILE_BYTES ((size_t)64 << 20)

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* root, or root/archive_folder when only the latter holds `marker` (the
 * folder a published archive unpacks into). */
static void dataset_root(const char *root, const char *marker, const char *archive_folder,
                         char *out, size_t out_size) {
    char probe[4096];
    snprintf(out, out_size, "%s", root);
    snprintf(probe, sizeof probe, "%s/%s", root, marker);
    if (is_file(probe) || is_directory(probe))
        return;
    snprintf(probe, sizeof probe, "%s/%s/%s", root, archive_folder, marker);
    if (is_file(probe) || is_directory(probe))
        snprintf(out, out_size, "%s/%s", root, archive_folder);
}

/* ---- MNIST / Fashion-MNIST ---- */

static int has_mnist_train_images(const char *dir) {
    char plain[4096], gzipped[4096];
    snprintf(plain, sizeof plain, "%s/train-images-idx3-ubyte", dir);
    snprintf(gzipped, sizeof gzipped, "%s/train-images-idx3-ubyte.gz", dir);
    return is_file(plain) || is_file(gzipped);
}

/* dir, or dir/<torchvision_folder>/raw where torchvision's MNIST and
 * FashionMNIST keep the IDX files, whichever holds the training images. */
static void mnist_root(const char *dir, const char *torchvision_folder, char *out, size_t out_size) {
    char raw[4096];
    snprintf(out, out_size, "%s", dir);
    snprintf(raw, sizeof raw, "%s/%s/raw", dir, torchvision_folder);
    if (!has_mnist_train_images(dir) && has_mnist_train_images(raw))
        snprintf(out, out_size, "%s", raw);
}

/* Reads `dir/base` or, failing that, `dir/base.gz`, inflated. */
static clgqa_status read_idx_file(const char *dir, const char *base, char *path, size_t path_size,
                                  uint8_t **data, size_t *size) {
    snprintf(path, path_size, "%s/%s", dir, base);
    if (!is_file(path)) {
        snprintf(path, path_size, "%s/%s.gz", dir, base);
        if (!is_file(path))
            return clgqa_fail(CLGQA_ERR_IO, "cannot open %s/%s (or %s.gz): no such file", dir,
                              base, base);
    }
    CLGQA_TRY(clgqa_read_file(path, MAX_DATA_FILE_BYTES, data, size));
    return clgqa_gunzip_in_place(path, MAX_DATA_FILE_BYTES, data, size);
}

static clgqa_status open_mnist(clgqa_dataset *ds, const char *root, const char *torchvision_folder) {
    char dir[4096];
    mnist_root(root, torchvision_folder, dir, sizeof dir);
    const char *prefix = ds->split == CLGQA_SPLIT_TRAIN ? "train" : "t10k";
    char image_base[64], label_base[64], image_path[4096], label_path[4096];
    snprintf(image_base, sizeof image_base, "%s-images-idx3-ubyte", prefix);
    snprintf(label_base, sizeof label_base, "%s-labels-idx1-ubyte", prefix);
    uint8_t *images = NULL, *labels = NULL;
    size_t images_size = 0, labels_size = 0;
    uint32_t image_shape[3], label_shape[3];
    const uint8_t *image_bytes, *label_bytes;
    clgqa_status status =
        read_idx_file(dir, image_base, image_path, sizeof image_path, &images, &images_size);
    if (status == CLGQA_OK)
        status = read_idx_file(dir, label_base, label_path, sizeof label_path, &labels,
                               &labels_size);
    if (status == CLGQA_OK)
        status = clgqa_idx_parse(images, images_size, image_path, 3, image_shape, &image_bytes);
    if (status == CLGQA_OK)
        status = clgqa_idx_parse(labels, labels_size, label_path, 1, label_shape, &label_bytes);
    if (status == CLGQA_OK && image_shape[0] != label_shape[0])
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s holds %u images but %s holds %u labels",
                            image_path, image_shape[0], label_path, label_shape[0]);
    if (status == CLGQA_OK) {
        ds->count = image_shape[0];
        ds->height = (int)image_shape[1];
        ds->width = (int)image_shape[2];
        ds->channels = 1;
        ds->num_classes = 10;
        size_t bytes = ds->count * (size_t)ds->height * (size_t)ds->width;
        ds->pixels = malloc(bytes);
        ds->labels = malloc(sizeof(int32_t) * ds->count);
        if (!ds->pixels || !ds->labels)
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot hold %s in memory", image_path);
        else
            memcpy(ds->pixels, image_bytes, bytes);
        for (size_t i = 0; status == CLGQA_OK && i < ds->count; i++) {
            if (label_bytes[i] >= ds->num_classes)
                status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: label %zu is %d, outside 0..9",
                                    label_path, i, label_bytes[i]);
            else
                ds->labels[i] = label_bytes[i];
        }
    }
    free(images);
    free(labels);
    return status;
}

/* ---- CIFAR-10 / CIFAR-100 ---- */

/* torchvision downloads CIFAR's python version (pickled numpy arrays in
 * cifar-10-batches-py/, cifar-100-python/); clgqa reads the binary version.
 * When only the former is there, say so and where to get the latter. */
static clgqa_status refuse_cifar_python(const char *root, const char *dir, const char *binary_file,
                                        int hundred) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/%s", dir, binary_file);
    if (is_file(probe))
        return CLGQA_OK;
    const char *folder = hundred ? "cifar-100-python" : "cifar-10-batches-py";
    const char *marker = hundred ? "train" : "data_batch_1";
    snprintf(probe, sizeof probe, "%s/%s/%s", root, folder, marker);
    if (!is_file(probe)) {
        snprintf(probe, sizeof probe, "%s/%s", root, marker);
        if (!is_file(probe))
            return CLGQA_OK; /* neither: the missing binary file is the error */
    }
    return clgqa_fail(CLGQA_ERR_IO, "%s is torchvision's python (pickled) %s, which clgqa does not read: "
                      "get the binary version with scripts/fetch-datasets %s %s (or %s from "
                      "https://www.cs.toronto.edu/~kriz/cifar.html)", probe, hundred ? "CIFAR-100" : "CIFAR-10",
                      hundred ? "cifar100" : "cifar10", root,
                      hundred ? "cifar-100-binary.tar.gz" : "cifar-10-binary.tar.gz");
}

static clgqa_status open_cifar(clgqa_dataset *ds, const char *root, int hundred) {
    char dir[4096];
    const char *train_files10[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin"};
    const char *test_files10[] = {"test_batch.bin"};
    const char *train_files100[] = {"train.bin"};
    const char *test_files100[] = {"test.bin"};
    const char **files;
    int file_count;
    if (hundred) {
        files = ds->split == CLGQA_SPLIT_TRAIN ? train_files100 : test_files100;
        file_count = 1;
        dataset_root(root, files[0], "cifar-100-binary", dir, sizeof dir);
    } else {
        files = ds->split == CLGQA_SPLIT_TRAIN ? train_files10 : test_files10;
        file_count = ds->split == CLGQA_SPLIT_TRAIN ? 5 : 1;
        dataset_root(root, files[0], "cifar-10-batches-bin", dir, sizeof dir);
    }
    CLGQA_TRY(refuse_cifar_python(root, dir, files[0], hundred));
    /* CIFAR-100 records hold the coarse label (20 classes) then the fine one. */
    clgqa_cifar_format fmt = {1, 0, 10};
    if (hundred && (ds->opt.flags & CLGQA_DATASET_COARSE_LABELS))
        fmt = (clgqa_cifar_format){2, 0, 20};
    else if (hundred)
        fmt = (clgqa_cifar_format){2, 1, 100};
    ds->num_classes = fmt.num_classes;
    ds->width = ds->height = CLGQA_CIFAR_SIDE;
    ds->channels = 3;

    uint8_t *data[5] = {NULL};
    size_t sizes[5] = {0}, counts[5] = {0}, total = 0;
    char path[4096];
    clgqa_status status = CLGQA_OK;
    for (int f = 0; status == CLGQA_OK && f < file_count; f++) {
        status = clgqa_path_format(path, sizeof path, "%s/%s", dir, files[f]);
        if (status == CLGQA_OK)
            status = clgqa_read_file(path, MAX_DATA_FILE_BYTES, &data[f], &sizes[f]);
        if (status == CLGQA_OK)
            status = clgqa_cifar_count(sizes[f], path, &fmt, &counts[f]);
        total += counts[f];
    }
    if (status == CLGQA_OK) {
        ds->count = total;
        ds->pixels = malloc(total * CLGQA_CIFAR_PIXELS);
        ds->labels = malloc(sizeof(int32_t) * total);
        if (!ds->pixels || !ds->labels)
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot hold %s in memory", dir);
    }
    size_t done = 0;
    for (int f = 0; status == CLGQA_OK && f < file_count; f++) {
        status = clgqa_path_format(path, sizeof path, "%s/%s", dir, files[f]);
        if (status == CLGQA_OK)
            status = clgqa_cifar_decode(data[f], counts[f], path, &fmt,
                                    ds->pixels + done * CLGQA_CIFAR_PIXELS, ds->labels + done);
        done += counts[f];
    }
    for (int f = 0; f < file_count; f++)
        free(data[f]);
    return status;
}

/* ---- opening ---- */

static clgqa_status check_options(const clgqa_dataset_options *cfg) {
    if (cfg->in_chans != 1 && cfg->in_chans != 3)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "in_chans must be 1 or 3, not %d",
                          cfg->in_chans);
    if (cfg->img_size < 1 || cfg->img_size > 4096)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "img_size must be in 1..4096, not %d",
                          cfg->img_size);
    for (int c = 0; c < cfg->in_chans; c++)
        if (!(cfg->norm_std[c] > 0.0f))
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "norm_std[%d] must be positive, not %g", c,
                              (double)cfg->norm_std[c]);
    return CLGQA_OK;
}

/* Without data_dir, a dataset is looked for where the reference's
 * torchvision code downloads it, ./<dataset> (torchvision's own folders
 * inside are found by each reader), then where clgqa knows it is. */
static clgqa_status find_data_dir(const char *name, const char *alias, char *dir, size_t size) {
    snprintf(dir, size, "./%s", name);
    if (is_directory(dir))
        return CLGQA_OK;
    if (alias) { /* where the reference's code, spelling it so, has torchvision put it */
        snprintf(dir, size, "./%s", alias);
        if (is_directory(dir))
            return CLGQA_OK;
    }
    if (strcmp(name, "fashion-mnist") == 0 && is_directory(DEFAULT_FASHION_MNIST_DIR)) {
        snprintf(dir, size, "%s", DEFAULT_FASHION_MNIST_DIR);
        return CLGQA_OK;
    }
    return clgqa_fail(CLGQA_ERR_INVALID_ARG, "dataset %s: no data_dir, and no folder ./%s%s: set data_dir "
                      "(scripts/fetch-datasets %s DIR downloads it)", name, name,
                      strcmp(name, "fashion-mnist") == 0 ? " or " DEFAULT_FASHION_MNIST_DIR
                                                        " (Debian package dataset-fashion-mnist)" : "",
                      name);
}

/* Each layout's opener takes the dataset's folder (data_dir, or what
 * find_data_dir found) and finds the layout's own root inside it. */
static clgqa_status open_mnist_dir(clgqa_dataset *ds, const char *dir) {
    return open_mnist(ds, dir, "MNIST");
}
static clgqa_status open_fashion_mnist_dir(clgqa_dataset *ds, const char *dir) {
    return open_mnist(ds, dir, "FashionMNIST");
}
static clgqa_status open_cifar10_dir(clgqa_dataset *ds, const char *dir) {
    return open_cifar(ds, dir, 0);
}
static clgqa_status open_cifar100_dir(clgqa_dataset *ds, const char *dir) {
    return open_cifar(ds, dir, 1);
}
static clgqa_status open_tiny_imagenet_dir(clgqa_dataset *ds, const char *dir) {
    char root[4096];
    dataset_root(dir, "wnids.txt", "tiny-imagenet-200", root, sizeof root);
    return clgqa_open_tiny_imagenet(ds, root);
}
static clgqa_status open_food101_dir(clgqa_dataset *ds, const char *dir) {
    char root[4096];
    dataset_root(dir, "meta", "food-101", root, sizeof root);
    return clgqa_open_food101(ds, root);
}
static clgqa_status open_oxford_pet_dir(clgqa_dataset *ds, const char *dir) {
    char root[4096];
    dataset_root(dir, "annotations", "oxford-iiit-pet", root, sizeof root);
    return clgqa_open_oxford_pet(ds, root);
}

/* The datasets clgqa reads, one row each: config validation, the class
 * counts, the opener and every message listing them read this table. */
static const dataset_kind dataset_kinds[] = {
    {{"fashion-mnist", 10, 0}, open_fashion_mnist_dir, NULL},
    {{"mnist", 10, 0}, open_mnist_dir, NULL},
    {{"cifar10", 10, 0}, open_cifar10_dir, NULL},
    {{"cifar100", 100, 20}, open_cifar100_dir, NULL},
    {{"tiny-imagenet-200", 200, 0}, open_tiny_imagenet_dir, NULL},
    {{"food101", 101, 0}, open_food101_dir, NULL},
    {{"oxfordiiitpet", 37, 0}, open_oxford_pet_dir, "oxfordiitpet"},
    {{"cinic10", 10, 0}, clgqa_open_image_folder, NULL},
    {{"imagefolder", 0, 0}, clgqa_open_image_folder, NULL},
};
#define DATASET_KINDS (sizeof dataset_kinds / sizeof dataset_kinds[0])

/* The row of a name or its alias. */
static const dataset_kind *kind_of(const char *name) {
    for (size_t i = 0; name && i < DATASET_KINDS; i++)
        if (strcmp(dataset_kinds[i].info.name, name) == 0 ||
            (dataset_kinds[i].alias && strcmp(dataset_kinds[i].alias, name) == 0))
            return &dataset_kinds[i];
    return NULL;
}

const clgqa_dataset_info *clgqa_dataset_find(const char *name) {
    const dataset_kind *kind = kind_of(name);
    return kind ? &kind->info : NULL;
}

static char dataset_names[256];
static void write_dataset_names(void) {
    for (size_t i = 0; i < DATASET_KINDS; i++)
        snprintf(dataset_names + strlen(dataset_names),
                 sizeof dataset_names - strlen(dataset_names), "%s%s", i ? ", " : "",
                 dataset_kinds[i].info.name);
}

const char *clgqa_dataset_names(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* any thread may ask first */
    pthread_once(&once, write_dataset_names);
    return dataset_names;
}

static clgqa_status open_by_name(clgqa_dataset *ds) {
    const char *name = ds->opt.name;
    const dataset_kind *kind = kind_of(name);
    if (!kind)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "unknown dataset '%s' (%s)", name ? name : "",
                          clgqa_dataset_names());
    char dir[4096];
    if (!ds->opt.data_dir || ds->opt.data_dir[0] == '\0')
        CLGQA_TRY(find_data_dir(kind->info.name, kind->alias, dir, sizeof dir));
    else
        snprintf(dir, sizeof dir, "%s", ds->opt.data_dir);
    if (!is_directory(dir))
        return clgqa_fail(CLGQA_ERR_IO, "%s: data_dir %s is not a folder", name, dir);
    return kind->open(ds, dir);
}

clgqa_status clgqa_dataset_open(const clgqa_dataset_options *options, clgqa_split split,
                                clgqa_dataset **out) {
    *out = NULL;
    CLGQA_TRY(check_options(options));
    clgqa_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a dataset");
    /* The options are the dataset's own copy, strings included. */
    ds->opt = *options;
    ds->name = strdup(options->name ? options->name : "");
    ds->data_dir = strdup(options->data_dir ? options->data_dir : "");
    ds->opt.name = ds->name;
    ds->opt.data_dir = ds->data_dir;
    ds->split = split;
    ds->augment = split == CLGQA_SPLIT_TRAIN ? options->augment : CLGQA_AUGMENT_NONE;
    atomic_init(&ds->skipped, 0);
    clgqa_status status = ds->name && ds->data_dir
                              ? open_by_name(ds)
                              : clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a dataset");
    if (status == CLGQA_OK && ds->count == 0)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: the %s split holds no samples", ds->name,
                            split == CLGQA_SPLIT_TRAIN ? "train" : "test");
    if (status == CLGQA_OK && options->num_classes != 0 && ds->num_classes != options->num_classes)
        status = clgqa_fail(CLGQA_ERR_INVALID_ARG,
                            "num_classes is %d but %s has %d classes", options->num_classes,
                            ds->name, ds->num_classes);
    if (status == CLGQA_OK && ds->paths) {
        ds->unreadable = calloc(ds->count, sizeof *ds->unreadable);
        if (!ds->unreadable)
            status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate image flags");
    }
    if (status != CLGQA_OK) {
        clgqa_dataset_close(ds);
        return status;
    }
    *out = ds;
    return CLGQA_OK;
}

void clgqa_dataset_close(clgqa_dataset *ds) {
    if (!ds)
        return;
    if (ds->paths)
        for (size_t i = 0; i < ds->count; i++)
            free(ds->paths[i]);
    free(ds->paths);
    free(ds->labels);
    free(ds->pixels);
    free(ds->unreadable);
    free(ds->name);
    free(ds->data_dir);
    free(ds);
}

size_t clgqa_dataset_count(const clgqa_dataset *ds) { return ds->count; }
int clgqa_dataset_num_classes(const clgqa_dataset *ds) { return ds->num_classes; }
int clgqa_dataset_channels(const clgqa_dataset *ds) { return ds->opt.in_chans; }
int clgqa_dataset_img_size(const clgqa_dataset *ds) { return ds->opt.img_size; }
size_t clgqa_dataset_skipped(const clgqa_dataset *ds) { return atomic_load(&ds->skipped); }

/* ---- one sample ---- */

static clgqa_status load_image(const clgqa_dataset *ds, size_t index, clgqa_image *img) {
    if (ds->pixels) {
        size_t bytes = (size_t)ds->width * (size_t)ds->height * (size_t)ds->channels;
        CLGQA_TRY(clgqa_image_alloc(img, ds->width, ds->height, ds->channels));
        memcpy(img->pixels, ds->pixels + index * bytes, bytes);
        return CLGQA_OK;
    }
    uint8_t *data;
    size_t size;
    CLGQA_TRY(clgqa_read_file(ds->paths[index], MAX_IMAGE_FILE_BYTES, &data, &size));
    clgqa_status status = clgqa_image_decode(data, size, ds->paths[index], ds->opt.img_size, img);
    free(data);
    return status;
}

/* The decoded image converted to the options' channels and resized to their side. */
static clgqa_status fit_image(const clgqa_dataset_options *cfg, clgqa_image *img) {
    const int side = cfg->img_size;
    CLGQA_TRY(clgqa_image_convert(img, cfg->in_chans));
    if (img->width == side && img->height == side)
        return CLGQA_OK;
    clgqa_image resized = {0};
    clgqa_status status = clgqa_image_resize(img, side, side, &resized);
    clgqa_image_free(img);
    *img = resized;
    return status;
}

/* ToTensor (x / 255) then Normalize, into channel-major order. */
static void normalise(const clgqa_dataset_options *cfg, const clgqa_image *img, float *image) {
    const int channels = cfg->in_chans;
    const size_t plane = (size_t)cfg->img_size * (size_t)cfg->img_size;
    for (int c = 0; c < channels; c++) {
        const float mean = cfg->norm_mean[c], std = cfg->norm_std[c];
        for (size_t p = 0; p < plane; p++)
            image[(size_t)c * plane + p] =
                ((float)img->pixels[p * (size_t)channels + (size_t)c] / 255.0f - mean) / std;
    }
}

/* Sample `index` through decode, channel conversion, resize and
 * augmentation: img_size x img_size 8-bit pixels, HWC. */
static clgqa_status load_processed(clgqa_dataset *ds, size_t index, long epoch, clgqa_image *img,
                                   int32_t *label) {
    if (index >= ds->count)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "sample %zu of a %zu-sample dataset", index,
                          ds->count);
    clgqa_status status = load_image(ds, index, img);
    if (status == CLGQA_OK)
        status = fit_image(&ds->opt, img);
    if (status == CLGQA_OK)
        status = clgqa_augment_apply(img, ds->augment, ds->opt.seed, epoch, index);
    if (status == CLGQA_OK)
        *label = ds->labels[index];
    return status;
}

clgqa_status clgqa_dataset_get(clgqa_dataset *ds, size_t index, long epoch, float *image,
                               int32_t *label) {
    clgqa_image img = {0};
    clgqa_status status = load_processed(ds, index, epoch, &img, label);
    if (status == CLGQA_OK)
        normalise(&ds->opt, &img, image);
    clgqa_image_free(&img);
    return status;
}

clgqa_status clgqa_dataset_get_pixels(clgqa_dataset *ds, size_t index, long epoch,
                                      uint8_t *pixels, int32_t *label) {
    const int channels = ds->opt.in_chans;
    clgqa_image img = {0};
    clgqa_status status = load_processed(ds, index, epoch, &img, label);
    if (status == CLGQA_OK) {
        const size_t plane = (size_t)ds->opt.img_size * (size_t)ds->opt.img_size;
        for (int c = 0; c < channels; c++)
            for (size_t p = 0; p < plane; p++)
                pixels[(size_t)c * plane + p] = img.pixels[p * (size_t)channels + (size_t)c];
    }
    clgqa_image_free(&img);
    return status;
}

clgqa_status clgqa_image_load(const clgqa_dataset_options *cfg, const char *path, float *image) {
    CLGQA_TRY(check_options(cfg));
    uint8_t *data;
    size_t size;
    CLGQA_TRY(clgqa_read_file(path, MAX_IMAGE_FILE_BYTES, &data, &size));
    clgqa_image img = {0};
    clgqa_status status = clgqa_image_decode(data, size, path, cfg->img_size, &img);
    free(data);
    if (status == CLGQA_OK)
        status = fit_image(cfg, &img);
    if (status == CLGQA_OK)
        normalise(cfg, &img, image);
    clgqa_image_free(&img);
    return status;
}
