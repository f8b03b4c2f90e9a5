/* The trainer's internals, for the command (MPI), the tests and the
 * library's own trainer: the schedule and what clgqa_train takes beyond
 * its public options. */
#ifndef CLGQA_TRAIN_INTERNAL_H
#define CLGQA_TRAIN_INTERNAL_H

#include "clgqa/train.h"
#include "config_internal.h"

struct clgqa_mpi;

/* Learning rate at global step `step` (0-based) of a run of `total_steps`:
 *   constant: lr
 *   cosine:   lr * (step + 1) / warmup_steps        while step < warmup_steps,
 *             then lr * 0.5 * (1 + cos(pi * t)),   t = (step - warmup) / (total - warmup)
 *             (t clamped to [0, 1]). */
float clgqa_schedule_lr(const clgqa_config *cfg, long step, long total_steps);

/* Steps per epoch for a training split of `batches` batches under
 * cfg->max_steps_per_epoch. */
long clgqa_steps_per_epoch(const clgqa_config *cfg, long batches);

/* What clgqa_train_with takes beyond the public options. */
typedef struct clgqa_train_extras {
    /* The data-parallel job this process is a rank of (mpi_ranks.h); NULL:
     * one process. */
    struct clgqa_mpi *mpi;
    /* Tests: >0 stops the run as a signal would, after this many epochs or
     * steps of this call. */
    int stop_after_epochs;
    long stop_after_steps;
    /* The command's first line ("clgqa train: mnist, kdgqa on runs/x, ..."),
     * printed on the log once the run's folder, settings and memory checks
     * have passed, so that a refusal stays one line; NULL: none. */
    const char *start_line;
} clgqa_train_extras;

/* clgqa_train with `extras` (NULL: none, which is clgqa_train). */
clgqa_status clgqa_train_with(clgqa_runtime *rt, const clgqa_config *cfg,
                              const clgqa_train_options *options, const clgqa_train_extras *extras,
                              clgqa_train_result *result);

#endif
