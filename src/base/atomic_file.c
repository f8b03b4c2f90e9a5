/* Temporary file + fsync + rename. */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The temporary file being written, for clgqa_atomic_remove_pending: the
 * name is complete before `pending` says so, and `pending` is cleared before
 * the name changes or the file is renamed. */
static char pending_path[4096];
static volatile sig_atomic_t pending;

static void register_pending(const char *tmp_path) {
    if (pending || strlen(tmp_path) >= sizeof pending_path)
        return;
    memcpy(pending_path, tmp_path, strlen(tmp_path) + 1);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    pending = 1;
}

static void unregister_pending(const char *tmp_path) {
    if (pending && !strcmp(pending_path, tmp_path))
        pending = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void clgqa_atomic_remove_pending(void) {
    if (pending)
        unlink(pending_path);
}

clgqa_status clgqa_atomic_begin(const char *path, clgqa_atomic_file *af) {
    af->f = NULL;
    af->path = path;
    /* Same folder as the target, so the rename cannot cross file systems. */
    size_t size = strlen(path) + sizeof ".tmp.XXXXXX";
    af->tmp_path = malloc(size);
    if (!af->tmp_path)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "no memory for a temporary name beside '%s'", path);
    snprintf(af->tmp_path, size, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int err = errno;
        free(af->tmp_path);
        af->tmp_path = NULL;
        return clgqa_fail(CLGQA_ERR_IO, "cannot create a temporary file beside '%s': %s", path, strerror(err));
    }
    /* mkstemp makes the file 0600; the result is an ordinary file. */
    if (fchmod(fd, 0644) != 0 || !(af->f = fdopen(fd, "wb"))) {
        int err = errno;
        close(fd);
        unlink(af->tmp_path);
        free(af->tmp_path);
        af->tmp_path = NULL;
        return clgqa_fail(CLGQA_ERR_IO, "cannot open a temporary file beside '%s': %s", path, strerror(err));
    }
    register_pending(af->tmp_path);
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
