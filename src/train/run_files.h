/* Progress on stderr and the run files of a training run: run.csv and
 * groups.csv, created or, when a run resumes, trimmed to the rows its
 * checkpoint had seen. Internal to the library (train.c). */
#ifndef CLGQA_RUN_FILES_H
#define CLGQA_RUN_FILES_H

#include <stdint.h>
#include <stdio.h>

#include "clgqa/checkpoint.h"
#include "clock.h"
#include "model_private.h"
#include "mpi_ranks.h"
#include "fail.h"

typedef struct run_progress {
    FILE *out;
    int tty;
    int quiet;
    int epoch, epochs;
    long steps;           /* in this epoch */
    long first;           /* steps already done when this call began it (resumed) */
    long samples_before;  /* the running metrics' samples at that point */
    double started;       /* epoch start (seconds) */
    double wait_at_start; /* loader wait seconds at the epoch start */
    double last_draw;
    const clgqa_mpi *mpi; /* several ranks: the line shows the all-reduce wait */
    double allreduce_at_start;
} run_progress;

/* Which rows of a log a resumed run keeps: those written before its
 * checkpoint (`state`), so rows a stopped run wrote after it are dropped.
 * Every log's first column is the epoch, counted from 1. */
typedef int (*run_keep_row)(const char *row, const clgqa_train_state *state);

/* One progress report after `done` steps: running loss and accuracy (and
 * with `top5`, the top-5 accuracy) of the epoch, throughput, the share of
 * time spent waiting for data (and, with several ranks, on the
 * all-reduce), and the ETA. */
void run_progress_show(run_progress *p, long done, const clgqa_metrics *m, double wait_seconds,
                       int top5);
/* Whether step `done` (of p->steps) is due for a report. */
int run_progress_due(const run_progress *p, long done);
clgqa_status run_make_dirs(const char *path);
void run_join_path(char *buf, size_t size, const char *dir, const char *name);
/* run.csv: epoch,... */
int run_keep_epoch_row(const char *row, const clgqa_train_state *state);
/* groups.csv: epoch,step in the epoch (or "eval"),... */
int run_keep_groups_row(const char *row, const clgqa_train_state *state);
/* steps.csv: epoch,global step,... */
int run_keep_steps_row(const char *row, const clgqa_train_state *state);
/* Start a CSV log: a fresh run (resumed NULL) writes the header; a resumed
 * run keeps the header and the rows `keep` accepts. Returns the file open
 * for appending. */
clgqa_status run_open_log(const char *path, const char *header, const clgqa_train_state *resumed,
                             run_keep_row keep, FILE **out);
/* groups.csv rows: epoch, step (batch index in the epoch, or "eval" after
 * the evaluation), layer, the query heads of each key/value head ("2 1 1"),
 * from `counts` ([num_layers][G], clgqa_model_copy_all_group_counts). */
clgqa_status run_write_groups(FILE *csv, const clgqa_model_dims *dims, const int32_t *counts,
                              int epoch, long step);
/* The same, reading the counts into `counts` first (waits for the queue). */
clgqa_status run_log_groups(FILE *csv, clgqa_model *model, int32_t *counts, int epoch,
                               long step);

#endif
