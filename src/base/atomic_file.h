/* Files that appear whole or not at all: the bytes go to a temporary file
 * beside the target, which is flushed to disk and renamed over it, so a
 * crash leaves either the old file or the new one, never a torn mix.
 * Used for checkpoints (safetensors) and saved configs. */
#ifndef CLGQA_ATOMIC_FILE_H
#define CLGQA_ATOMIC_FILE_H

#include <stdio.h>

#include "clgqa/error.h"
#include "fail.h"

typedef struct clgqa_atomic_file {
    FILE *f; /* write the content here */
    char *tmp_path;
    const char *path; /* the target; must outlive the atomic file */
} clgqa_atomic_file;

/* Create the temporary file for `path` (CLGQA_ERR_IO naming the target). */
clgqa_status clgqa_atomic_begin(const char *path, clgqa_atomic_file *af);
/* Flush, fsync, close and rename over the target. On failure the temporary
 * is removed and the target is untouched. Either way af is finished. */
clgqa_status clgqa_atomic_commit(clgqa_atomic_file *af);
/* Give up: close and remove the temporary. */
void clgqa_atomic_abort(clgqa_atomic_file *af);

/* Remove the temporary file being written right now, if any. Only unlink(2)
 * runs, which is async-signal-safe: a program's fatal-signal handler calls
 * this before it dies, so an interrupted checkpoint write leaves no
 * checkpoint-sized temporary behind. The library writes one atomic file at a
 * time (from one thread); a second one begun meanwhile is not registered. */
void clgqa_atomic_remove_pending(void);

#endif
