/* Image-file layouts: Tiny ImageNet, Food-101, Oxford-IIIT Pet, and class-per-folder trees
 * (CINIC-10, imagefolder). Opening only lists files and labels; the loader
 * decodes each image when its batch is built, so even Food-101's 101,000
 * JPEGs cost memory for their paths only. Folder listings are sorted by name
 * (byte order, as Python's sorted()) so labels and order are the same on every
 * machine and match torchvision's ImageFolder. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset_internal.h"

#define MAX_TEXT_FILE_BYTES ((size_t)64 << 20)

/* ---- small containers ---- */

typedef struct name_list {
    char **names;
    size_t count, capacity;
} name_list;

static void name_list_free(name_list *l) {
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static clgqa_status name_list_add(name_list *l, const char *name) {
    if (l->count == l->capacity) {
        size_t capacity = l->capacity ? l->capacity * 2 : 64;
        char **grown = realloc(l->names, capacity * sizeof *grown);
        if (!grown)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot grow a file list");
        l->names = grown;
        l->capacity = capacity;
    }
    if (!(l->names[l->count] = strdup(name)))
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot copy a file name");
    l->count++;
    return CLGQA_OK;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Samples gathered while opening, handed to the dataset at the end. */
typedef struct sample_list {
    name_list paths;
    int32_t *labels;
    size_t label_capacity;
} sample_list;

static clgqa_status sample_add(sample_list *s, const char *path, int32_t label) {
    if (s->paths.count == s->label_capacity) {
        size_t capacity = s->label_capacity ? s->label_capacity * 2 : 64;
        int32_t *grown = realloc(s->labels, capacity * sizeof *grown);
        if (!grown)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot grow a label list");
        s->labels = grown;
        s->label_capacity = capacity;
    }
    s->labels[s->paths.count] = label;
    return name_list_add(&s->paths, path);
}

/* Moves the samples into ds (on success) or frees them. */
static clgqa_status samples_finish(sample_list *s, clgqa_dataset *ds, int num_classes,
                                   clgqa_status status) {
    if (status != CLGQA_OK) {
        name_list_free(&s->paths);
        free(s->labels);
        return status;
    }
    ds->paths = s->paths.names;
    ds->labels = s->labels;
    ds->count = s->paths.count;
    ds->num_classes = num_classes;
    return CLGQA_OK;
}

/* ---- folders and text files ---- */

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

/* Sorted entries of `folder`: its subfolders (want_dirs) or its image files.
 * Hidden entries are left out. */
static clgqa_status list_folder(const char *folder, int want_dirs, name_list *out) {
    DIR *dir = opendir(folder);
    if (!dir)
        return clgqa_fail(CLGQA_ERR_IO, "cannot open folder %s: %s", folder, strerror(errno));
    char path[4096];
    struct dirent *entry;
    clgqa_status status = CLGQA_OK;
    while (status == CLGQA_OK && (entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        status = clgqa_path_format(path, sizeof path, "%s/%s", folder, entry->d_name);
        struct stat st;
        if (status != CLGQA_OK || stat(path, &st) != 0)
            continue; /* a dangling link: not an image */
        if (want_dirs ? S_ISDIR(st.st_mode)
                      : S_ISREG(st.st_mode) && has_image_extension(entry->d_name))
            status = name_list_add(out, entry->d_name);
    }
    closedir(dir);
    if (status != CLGQA_OK)
        name_list_free(out);
    else
        qsort(out->names, out->count, sizeof *out->names, compare_names);
    return status;
}

/* The non-empty lines of a text file, trimmed of surrounding blanks. */
static clgqa_status read_lines(const char *path, name_list *lines) {
    uint8_t *data;
    size_t size;
    CLGQA_TRY(clgqa_read_file(path, MAX_TEXT_FILE_BYTES, &data, &size));
    char *buffer = realloc(data, size + 1);
    if (!buffer) {
        free(data);
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot read %s", path);
    }
    buffer[size] = '\0';
    clgqa_status status = CLGQA_OK;
    if (memchr(buffer, '\0', size))
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: not a text file", path);
    for (char *line = buffer; status == CLGQA_OK && line < buffer + size;) {
        char *end = strchr(line, '\n');
        char *next = end ? end + 1 : buffer + size;
        if (!end)
            end = buffer + size;
        while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line)
            status = name_list_add(lines, line);
        line = next;
    }
    free(buffer);
    return status;
}

/* Class names -> labels, looked up by binary search. */
typedef struct class_entry {
    const char *name;
    int32_t label;
} class_entry;

static int compare_classes(const void *a, const void *b) {
    return strcmp(((const class_entry *)a)->name, ((const class_entry *)b)->name);
}

/* Table for names[i] with label i; refuses duplicates (naming `source`). */
static clgqa_status class_table_build(const name_list *names, const char *source,
                                      class_entry **out) {
    class_entry *table = malloc((names->count ? names->count : 1) * sizeof *table);
    if (!table)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate a class table");
    for (size_t i = 0; i < names->count; i++)
        table[i] = (class_entry){names->names[i], (int32_t)i};
    qsort(table, names->count, sizeof *table, compare_classes);
    for (size_t i = 1; i < names->count; i++)
        if (strcmp(table[i - 1].name, table[i].name) == 0) {
            clgqa_status status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: class '%s' appears twice",
                                             source, table[i].name);
            free(table);
            return status;
        }
    *out = table;
    return CLGQA_OK;
}

static int class_lookup(const class_entry *table, size_t count, const char *name) {
    class_entry key = {name, 0};
    const class_entry *hit = bsearch(&key, table, count, sizeof key, compare_classes);
    return hit ? hit->label : -1;
}

/* Every image file of `folder`, labelled `label`. */
static clgqa_status add_folder_images(sample_list *samples, const char *folder, int32_t label) {
    name_list files = {0};
    CLGQA_TRY(list_folder(folder, 0, &files));
    char path[4096];
    clgqa_status status = CLGQA_OK;
    for (size_t i = 0; status == CLGQA_OK && i < files.count; i++) {
        status = clgqa_path_format(path, sizeof path, "%s/%s", folder, files.names[i]);
        if (status == CLGQA_OK)
            status = sample_add(samples, path, label);
    }
    name_list_free(&files);
    return status;
}

/* ---- Tiny ImageNet ----
 * root/wnids.txt: the 200 class ids, labels in file order (as the reference
 * code numbers them); train/<wnid>/images/<name>.JPEG; the test split
 * is val/images/ labelled by val/val_annotations.txt ("file<TAB>wnid<TAB>box"). */
clgqa_status clgqa_open_tiny_imagenet(clgqa_dataset *ds, const char *root) {
    char path[4096], folder[4096];
    name_list wnids = {0}, lines = {0};
    sample_list samples = {0};
    class_entry *classes = NULL;
    clgqa_status status = clgqa_path_format(path, sizeof path, "%s/wnids.txt", root);
    if (status == CLGQA_OK)
        status = read_lines(path, &wnids);
    if (status == CLGQA_OK)
        status = class_table_build(&wnids, path, &classes);
    if (status == CLGQA_OK && ds->split == CLGQA_SPLIT_TRAIN) {
        for (size_t k = 0; status == CLGQA_OK && k < wnids.count; k++) {
            status = clgqa_path_format(folder, sizeof folder, "%s/train/%s/images", root,
                                       wnids.names[k]);
            if (status == CLGQA_OK)
                status = add_folder_images(&samples, folder, (int32_t)k);
        }
    } else if (status == CLGQA_OK) {
        status = clgqa_path_format(path, sizeof path, "%s/val/val_annotations.txt", root);
        if (status == CLGQA_OK)
            status = read_lines(path, &lines);
        for (size_t i = 0; status == CLGQA_OK && i < lines.count; i++) {
            char *file = lines.names[i];
            char *wnid = strchr(file, '\t');
            if (wnid) {
                *wnid++ = '\0';
                wnid[strcspn(wnid, "\t ")] = '\0';
            }
            int label = wnid ? class_lookup(classes, wnids.count, wnid) : -1;
            if (label < 0) {
                status = clgqa_fail(CLGQA_ERR_FORMAT,
                                    "%s: entry %zu has class '%s', which is not in wnids.txt",
                                    path, i + 1, wnid ? wnid : "(none)");
                break;
            }
            status = clgqa_path_format(folder, sizeof folder, "%s/val/images/%s", root, file);
            if (status == CLGQA_OK)
                status = sample_add(&samples, folder, label);
        }
    }
    status = samples_finish(&samples, ds, (int)wnids.count, status);
    free(classes);
    name_list_free(&wnids);
    name_list_free(&lines);
    return status;
}

/* ---- Food-101 ----
 * root/meta/classes.txt: class names in label order; meta/train.txt and
 * meta/test.txt: "<class>/<id>" per image, stored as images/<class>/<id>.jpg. */
clgqa_status clgqa_open_food101(clgqa_dataset *ds, const char *root) {
    char classes_path[4096], list_path[4096], path[4096];
    name_list names = {0}, lines = {0};
    sample_list samples = {0};
    class_entry *classes = NULL;
    clgqa_status status =
        clgqa_path_format(classes_path, sizeof classes_path, "%s/meta/classes.txt", root);
    if (status == CLGQA_OK)
        status = clgqa_path_format(list_path, sizeof list_path, "%s/meta/%s.txt", root,
                                   ds->split == CLGQA_SPLIT_TRAIN ? "train" : "test");
    if (status == CLGQA_OK)
        status = read_lines(classes_path, &names);
    if (status == CLGQA_OK)
        status = class_table_build(&names, classes_path, &classes);
    if (status == CLGQA_OK)
        status = read_lines(list_path, &lines);
    for (size_t i = 0; status == CLGQA_OK && i < lines.count; i++) {
        const char *entry = lines.names[i];
        const char *slash = strchr(entry, '/');
        char class_name[256] = "";
        if (slash && (size_t)(slash - entry) < sizeof class_name)
            memcpy(class_name, entry, (size_t)(slash - entry));
        int label = class_lookup(classes, names.count, class_name);
        if (label < 0) {
            status = clgqa_fail(CLGQA_ERR_FORMAT,
                                "%s: entry %zu '%s' names no class of classes.txt", list_path,
                                i + 1, entry);
            break;
        }
        status = clgqa_path_format(path, sizeof path, "%s/images/%s.jpg", root, entry);
        if (status == CLGQA_OK)
            status = sample_add(&samples, path, label);
    }
    status = samples_finish(&samples, ds, (int)names.count, status);
    free(classes);
    name_list_free(&names);
    name_list_free(&lines);
    return status;
}

/* ---- Oxford-IIIT Pet (torchvision's folder oxford-iiit-pet) ----
 * root/annotations/trainval.txt and test.txt: "<image> <class id> <species>
 * <breed id>" per line, class ids 1..37; the image is images/<image>.jpg.
 * Labels are class id - 1, as torchvision's OxfordIIITPet. */
#define PET_CLASSES 37

clgqa_status clgqa_open_oxford_pet(clgqa_dataset *ds, const char *root) {
    char list_path[4096], path[4096];
    name_list lines = {0};
    sample_list samples = {0};
    clgqa_status status = clgqa_path_format(list_path, sizeof list_path, "%s/annotations/%s.txt", root,
                                            ds->split == CLGQA_SPLIT_TRAIN ? "trainval" : "test");
    if (status == CLGQA_OK)
        status = read_lines(list_path, &lines);
    for (size_t i = 0; status == CLGQA_OK && i < lines.count; i++) {
        const char *entry = lines.names[i];
        if (entry[0] == '#')
            continue;
        char image[256];
        int class_id, species, breed, used = 0;
        if (sscanf(entry, "%255s %d %d %d%n", image, &class_id, &species, &breed, &used) != 4 ||
            entry[used] != '\0' || class_id < 1 || class_id > PET_CLASSES) {
            status = clgqa_fail(CLGQA_ERR_FORMAT, "%s: line %zu '%s' is not '<image> <class id 1..%d> "
                                "<species> <breed id>'", list_path, i + 1, entry, PET_CLASSES);
            break;
        }
        status = clgqa_path_format(path, sizeof path, "%s/images/%s.jpg", root, image);
        if (status == CLGQA_OK)
            status = sample_add(&samples, path, class_id - 1);
    }
    status = samples_finish(&samples, ds, PET_CLASSES, status);
    name_list_free(&lines);
    return status;
}

/* Labels are positions in the sorted class list of each split, so a test
 * split whose class folders differ from train's would be labelled wrongly
 * without a word. When root/train exists, its classes must be the same. */
static clgqa_status check_same_classes(const char *root, const char *test_dir,
                                       const name_list *test_classes) {
    char train_dir[4096];
    name_list train_classes = {0};
    CLGQA_TRY(clgqa_path_format(train_dir, sizeof train_dir, "%s/train", root));
    if (list_folder(train_dir, 1, &train_classes) != CLGQA_OK)
        return CLGQA_OK; /* no train split here: nothing to agree with */
    clgqa_status status = CLGQA_OK;
    for (size_t k = 0; status == CLGQA_OK && k < test_classes->count; k++)
        if (k >= train_classes.count ||
            strcmp(test_classes->names[k], train_classes.names[k]) != 0)
            status = clgqa_fail(CLGQA_ERR_FORMAT,
                                "%s: class folders differ from %s (class %zu: %s here, %s there)",
                                test_dir, train_dir, k, test_classes->names[k],
                                k < train_classes.count ? train_classes.names[k] : "none");
    if (status == CLGQA_OK && train_classes.count != test_classes->count)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s has %zu class folders but %s has %zu",
                            test_dir, test_classes->count, train_dir, train_classes.count);
    name_list_free(&train_classes);
    return status;
}

/* ---- CINIC-10 and image folders ----
 * root/<split>/<class>/<image>: split "train" or "test", classes sorted by
 * name, .jpg/.jpeg/.png files (any case) directly inside each class folder. */
clgqa_status clgqa_open_image_folder(clgqa_dataset *ds, const char *root) {
    char split_dir[4096], folder[4096];
    name_list class_names = {0};
    sample_list samples = {0};
    clgqa_status status = clgqa_path_format(split_dir, sizeof split_dir, "%s/%s", root,
                                            ds->split == CLGQA_SPLIT_TRAIN ? "train" : "test");
    if (status == CLGQA_OK)
        status = list_folder(split_dir, 1, &class_names);
    for (size_t k = 0; status == CLGQA_OK && k < class_names.count; k++) {
        status = clgqa_path_format(folder, sizeof folder, "%s/%s", split_dir,
                                   class_names.names[k]);
        if (status == CLGQA_OK)
            status = add_folder_images(&samples, folder, (int32_t)k);
    }
    if (status == CLGQA_OK && class_names.count == 0)
        status = clgqa_fail(CLGQA_ERR_FORMAT, "%s holds no class folders", split_dir);
    if (status == CLGQA_OK && ds->split == CLGQA_SPLIT_TEST)
        status = check_same_classes(root, split_dir, &class_names);
    status = samples_finish(&samples, ds, (int)class_names.count, status);
    name_list_free(&class_names);
    return status;
}
