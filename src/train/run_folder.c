/* Locking, sweeping, takeover and resume checks of a run folder; see
 * run_folder.h. */
#include "run_folder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The files clgqa writes through a temporary file and a rename. */
static const char *const atomic_files[] = {"config.yaml", "last.safetensors", "best.safetensors",
                                           "model.safetensors"};
/* The files that show a folder holds a run. */
static const char *const run_markers[] = {"run.csv", "last.safetensors", "model.safetensors",
                                          "best.safetensors"};
/* Everything a run writes, which --overwrite removes. */
static const char *const run_outputs[] = {"run.csv",          "groups.csv",       "steps.csv",
                                          "resumes.csv",      "config.yaml",      "last.safetensors",
                                          "best.safetensors", "model.safetensors"};
#define COUNT(a) (sizeof a / sizeof a[0])

static void join(char *buf, size_t size, const char *dir, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

/* ---- the lock ---------------------------------------------------------------- */

/* The refusal when another process holds the lock of `fd`, naming the pid
 * it wrote there. Closes fd. */
static clgqa_status in_use(const char *dir, int fd) {
    char holder[32] = "";
    ssize_t got = pread(fd, holder, sizeof holder - 1, 0);
    close(fd);
    holder[got > 0 ? got : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    return clgqa_fail(CLGQA_ERR_IO, "out_dir '%s' is in use by another training run (pid %s): "
                      "two runs in one folder would mix their files; wait for it to end, or "
                      "give this run another out_dir", dir, holder[0] ? holder : "unknown");
}

clgqa_status run_folder_check_free(const char *dir) {
    char path[1200];
    join(path, sizeof path, dir, ".lock");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) /* no lock file: no run has held it */
        return CLGQA_OK;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        return in_use(dir, fd);
    close(fd); /* releases what it took */
    return CLGQA_OK;
}

clgqa_status run_folder_lock(const char *dir, FILE *log, int *out) {
    char path[1200];
    join(path, sizeof path, dir, ".lock");
    *out = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot create the lock file '%s': %s", path,
                          strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err == EWOULDBLOCK)
            return in_use(dir, fd);
        /* A file system without locks: go on, unprotected. */
        close(fd);
        fprintf(log, "clgqa: cannot lock '%s' (%s): a second run into '%s' would not be "
                "stopped\n", path, strerror(err), dir);
        return CLGQA_OK;
    }
    /* Ours now: the pid, for the message above. */
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int err = errno;
        close(fd);
        return clgqa_fail(CLGQA_ERR_IO, "cannot write the lock file '%s': %s", path, strerror(err));
    }
    *out = fd;
    return CLGQA_OK;
}

void run_folder_unlock(int *fd) {
    if (*fd >= 0)
        close(*fd); /* releases the flock */
    *fd = -1;
}

/* ---- leftovers of interrupted writes -------------------------------------------- */

/* "<one of atomic_files>.tmp.XXXXXX", as clgqa_atomic_begin names them. */
static int is_temporary(const char *name) {
    for (size_t i = 0; i < COUNT(atomic_files); i++) {
        size_t len = strlen(atomic_files[i]);
        if (strncmp(name, atomic_files[i], len) || strncmp(name + len, ".tmp.", 5))
            continue;
        const char *suffix = name + len + 5;
        if (strlen(suffix) != 6)
            continue;
        int plain = 1;
        for (int c = 0; c < 6; c++)
            plain &= isalnum((unsigned char)suffix[c]) != 0;
        if (plain)
            return 1;
    }
    return 0;
}

void run_folder_sweep_temporaries(const char *dir, FILE *log) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_temporary(e->d_name))
            continue;
        char path[1200];
        join(path, sizeof path, dir, e->d_name);
        if (unlink(path) == 0)
            fprintf(log, "removed %s, left by an interrupted write\n", path);
    }
    closedir(d);
}

/* ---- takeover ---------------------------------------------------------------------- */

const char *run_folder_run_file(const char *dir) {
    for (size_t i = 0; i < COUNT(run_markers); i++) {
        char path[1200];
        join(path, sizeof path, dir, run_markers[i]);
        if (access(path, F_OK) == 0)
            return run_markers[i];
    }
    return NULL;
}

clgqa_status run_folder_clear(const char *dir) {
    for (size_t i = 0; i < COUNT(run_outputs); i++) {
        char path[1200];
        join(path, sizeof path, dir, run_outputs[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            return clgqa_fail(CLGQA_ERR_IO, "--overwrite: cannot remove '%s': %s", path,
                              strerror(errno));
    }
    return CLGQA_OK;
}

int run_folder_same(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- resume checks ----------------------------------------------------------------- */

/* Keys that change the model's shapes or its random streams: a checkpoint
 * cannot continue under another value, whatever --allow-changes says. */
static const char *const fixed_keys[] = {"att_scheme", "in_chans",     "embed_dim",
                                         "num_layers", "num_heads",    "num_kv_heads",
                                         "num_classes", "img_size",    "patch_size", "seed"};
/* Keys the bit-identical resume depends on (the batches, the optimiser and
 * its schedule, augmentation and timm's regularisers, the weights' EMA and
 * which weights best.safetensors follows, the DGQA window, the data).
 * epochs may grow under the constant schedule (length_keys below), and the
 * logging, evaluation and checkpoint cadence change no weight. */
static const char *const recipe_keys[] = {
    "dataset",         "label_mode",       "batch_size",        "max_steps_per_epoch",
    "grad_accum_steps", "lr",              "min_lr",            "weight_decay",
    "no_weight_decay", "betas",            "eps",               "schedule",
    "warmup_steps",    "clip_grad_norm",   "augment",           "label_smoothing",
    "mixup_alpha",     "cutmix_alpha",     "mixup_prob",        "mixup_switch_prob",
    "drop_path",       "model_ema_decay",  "best_follows",      "shuffle",
    "window_size",     "norm_mean",        "norm_std",          "precision"};

/* Under a schedule that spans the run (cosine), its length sets
 * every remaining step's learning rate, so more epochs change the run. */
static const char *const length_keys[] = {"epochs"};

/* Appends "key old -> new" to the message being built. */
static void describe(char *buf, size_t size, const run_change *c) {
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "%s%s %s -> %s", used ? ", " : "", c->key, c->old_value,
             c->new_value);
}

/* The keys of `keys` whose value differs between saved and cfg. */
static int find_changes(const clgqa_config *saved, const clgqa_config *cfg,
                        const char *const *keys, size_t key_count, run_change *changes,
                        int count) {
    for (size_t i = 0; i < key_count && count < RUN_MAX_CHANGES; i++) {
        run_change *c = &changes[count];
        c->key = keys[i];
        if (clgqa_config_get(saved, keys[i], c->old_value, sizeof c->old_value) != CLGQA_OK ||
            clgqa_config_get(cfg, keys[i], c->new_value, sizeof c->new_value) != CLGQA_OK)
            continue; /* too long to show: a path, never one of these keys */
        if (strcmp(c->old_value, c->new_value))
            count++;
    }
    return count;
}

clgqa_status run_folder_compare_config(const clgqa_config *cfg, const char *dir,
                                       int allow_changes, run_change *changes, int *count) {
    *count = 0;
    char path[1200];
    join(path, sizeof path, dir, "config.yaml");
    if (access(path, F_OK) != 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot resume '%s': it has no config.yaml, the settings "
                          "of the run to continue (is it a run folder?)", dir);
    clgqa_config saved;
    clgqa_config_defaults(&saved);
    clgqa_status status = clgqa_config_load(&saved, path);
    if (status != CLGQA_OK)
        return clgqa_fail_context(status, "cannot read the resumed run's settings");

    char message[2048] = "";
    int fixed = find_changes(&saved, cfg, fixed_keys, COUNT(fixed_keys), changes, 0);
    for (int i = 0; i < fixed; i++)
        describe(message, sizeof message, &changes[i]);
    if (fixed)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "cannot resume '%s' with %s: the checkpoint holds "
                          "a model of the saved shapes and seed (%s); resume with its config.yaml",
                          dir, message, path);
    int changed = find_changes(&saved, cfg, recipe_keys, COUNT(recipe_keys), changes, 0);
    char schedule[64];
    if (clgqa_config_get(cfg, "schedule", schedule, sizeof schedule) == CLGQA_OK &&
        strcmp(schedule, "constant"))
        changed = find_changes(&saved, cfg, length_keys, COUNT(length_keys), changes, changed);
    for (int i = 0; i < changed; i++)
        describe(message, sizeof message, &changes[i]);
    if (changed && !allow_changes)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "resuming '%s' would change %s: the run would no "
                          "longer be the one it continues; resume with its config.yaml, or pass "
                          "--allow-changes to accept the change (recorded in resumes.csv)", dir,
                          message);
    *count = changed;
    return CLGQA_OK;
}

/* A CSV field: quoted when it holds a comma or a quote. */
static void csv_field(FILE *f, const char *text) {
    if (!strpbrk(text, ",\"\n")) {
        fputs(text, f);
        return;
    }
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

clgqa_status run_folder_record_changes(const char *dir, long step, const run_change *changes,
                                       int count) {
    if (count == 0)
        return CLGQA_OK;
    char path[1200];
    join(path, sizeof path, dir, "resumes.csv");
    int fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f)
        return clgqa_fail(CLGQA_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (fresh)
        fputs("step,key,old,new\n", f);
    for (int i = 0; i < count; i++) {
        fprintf(f, "%ld,%s,", step, changes[i].key);
        csv_field(f, changes[i].old_value);
        fputc(',', f);
        csv_field(f, changes[i].new_value);
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return CLGQA_OK;
}
