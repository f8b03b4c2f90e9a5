/* Temporary file + fsync + rename. */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The temporary file being written, for clgqa_atomic_remove_pending (which
 * a signal handler calls, maybe on another thread): its name is registered
 * before the file exists, and unregistered before it is renamed, so a
 * signal at any moment finds either nothing or the name of a file that is
 * this process's alone. One at a time: a second begun meanwhile is written
 * without being registered. */
static char pending_path[4096];
static atomic_int pending; /* lock-free, so usable in a handler */

static int register_pending(const char *tmp_path) {
    if (atomic_load_explicit(&pending, memory_order_acquire) ||
        strlen(tmp_path) >= sizeof pending_path)
        return 0;
    memcpy(pending_path, tmp_path, strlen(tmp_path) + 1);
    atomic_store_explicit(&pending, 1, memory_order_release);
    return 1;
}

static void unregister_pending(const char *tmp_path) {
    if (atomic_load_explicit(&pending, memory_order_acquire) && !strcmp(pending_path, tmp_path))
        atomic_store_explicit(&pending, 0, memory_order_release);
}

void clgqa_atomic_remove_pending(void) {
    if (atomic_load_explicit(&pending, memory_order_acquire))
        unlink(pending_path);
}

/* Six letters or digits for a temporary name (as mkstemp's XXXXXX, which
 * cannot be used: the name must be registered before the file exists). */
static void random_suffix(char out[7]) {
    static const char letters[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_ulong counter;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t x = (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30) ^
                 ((uint64_t)getpid() << 20) ^ (uint64_t)atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 6; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 29;
        out[i] = letters[x % (sizeof letters - 1)];
    }
    out[6] = '\0';
}

clgqa_status clgqa_atomic_begin(const char *path, clgqa_atomic_file *af) {
    af->f = NULL;
    af->path = path;
    /* Same folder as the target, so the rename cannot cross file systems. */
    size_t size = strlen(path) + sizeof ".tmp.XXXXXX";
    af->tmp_path = malloc(size);
    if (!af->tmp_path)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "no memory for a temporary name beside '%s'", path);
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        char suffix[7];
        random_suffix(suffix);
        snprintf(af->tmp_path, size, "%s.tmp.%s", path, suffix);
        int registered = register_pending(af->tmp_path);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        err = errno;
        if (fd < 0 && registered)
            unregister_pending(af->tmp_path);
        if (fd < 0 && err != EEXIST)
            break;
    }
    if (fd < 0) {
        free(af->tmp_path);
        af->tmp_path = NULL;
        return clgqa_fail(CLGQA_ERR_IO, "cannot create a temporary file beside '%s': %s", path, strerror(err));
    }
    /* Created with 0644 less the umask: an ordinary file, as the target. */
    if (!(af->f = fdopen(fd, "wb"))) {
        err = errno;
        close(fd);
        clgqa_atomic_abort(af);
        return clgqa_fail(CLGQA_ERR_IO, "cannot open a temporary file beside '%s': %s", path, strerror(err));
    }
    return CLGQA_OK;
}

void clgqa_atomic_abort(clgqa_atomic_file *af) {
    if (af->f)
        fclose(af->f);
    if (af->tmp_path) {
        unregister_pending(af->tmp_path);
        unlink(af->tmp_path);
        free(af->tmp_path);
    }
    af->f = NULL;
    af->tmp_path = NULL;
}

/* Make the rename itself durable. Best effort: some file systems refuse
 * fsync on a folder, and the file's own bytes are already on disk. */
static void sync_parent_folder(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

clgqa_status clgqa_atomic_commit(clgqa_atomic_file *af) {
    /* errno is read right after the call that failed. */
    const char *problem = NULL;
    if (ferror(af->f))
        problem = "a write failed";
    else if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        problem = strerror(errno);
    if (fclose(af->f) != 0 && !problem)
        problem = strerror(errno);
    af->f = NULL;
    clgqa_status status = CLGQA_OK;
    /* From here a signal handler leaves the file alone: the rename makes it
     * the target, and a failure removes it below. */
    unregister_pending(af->tmp_path);
    if (problem)
        status = clgqa_fail(CLGQA_ERR_IO, "writing '%s' failed: %s", af->path, problem);
    else if (rename(af->tmp_path, af->path) != 0)
        status = clgqa_fail(CLGQA_ERR_IO, "cannot rename '%s' to '%s': %s", af->tmp_path, af->path, strerror(errno));
    if (status != CLGQA_OK) {
        clgqa_atomic_abort(af);
        return status;
    }
    free(af->tmp_path);
    af->tmp_path = NULL;
    sync_parent_folder(af->path);
    return CLGQA_OK;
}
