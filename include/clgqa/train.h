/* Training and evaluation driver: the epoch loop behind `clgqa train` and
 * `clgqa eval`.
 *
 * One run, for epochs e = start .. epochs - 1 (the config keys):
 *   - the loader serves epoch e in an order fixed by (seed, e);
 *   - batch b of the epoch is DGQA's step counter (it restarts every epoch, as
 *     in the reference); the global step g (optimizer steps since the start
 *     of the run) drives the learning-rate schedule and keys every random
 *     stream (PGQA noise, DGQA fix-up picks);
 *   - after the epoch: evaluation on the test split, a row in run.csv,
 *     best.safetensors when its test loss is the lowest so far, and the
 *     training checkpoint last.safetensors (weights, DGQA state, AdamW
 *     moments, counters), written atomically; also every
 *     checkpoint_steps steps, and when a stop is requested
 *     (options->stop_signal), after the step in progress.
 *   - every step's loss is checked (one step behind, so the host does not
 *     wait for the device): a non-finite loss stops the run at that step with
 *     an error naming epoch, step and learning rate, before any checkpoint
 *     holds the diverged weights.
 * Every random choice depends only on (seed, epoch, step), so a run resumed
 * from last.safetensors, at an epoch's end or mid-epoch, ends with the
 * weights of an uninterrupted run.
 *
 * Files in out_dir: config.yaml, run.csv, groups.csv, steps.csv (a row
 * every log_steps steps), last.safetensors and, when save_model is set,
 * best.safetensors and at the end model.safetensors (and ema.safetensors,
 * the weights' EMA, with model_ema_decay); resumes.csv when a resume
 * changed a setting (CLGQA_TRAIN_ALLOW_CHANGES); .lock.
 *
 * The folder has one owner: the run holds an exclusive lock (flock) on
 * out_dir/.lock while it lasts, and a second run into it fails at once,
 * naming the holder's pid. A fresh run into a folder that holds a run
 * (run.csv or a checkpoint) is refused unless CLGQA_TRAIN_OVERWRITE. A
 * resumed run's out_dir must be resume_dir, and its settings those of
 * resume_dir/config.yaml on every key the exact resume depends on (a
 * changed recipe key is refused unless CLGQA_TRAIN_ALLOW_CHANGES; a shape
 * key or the seed, always). Before the model is created the run's memory is
 * estimated and a run that would not fit the device (or, on a CPU device,
 * the host) is refused with CLGQA_ERR_OUT_OF_MEMORY. */
#ifndef CLGQA_TRAIN_H
#define CLGQA_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "clgqa/config.h"
#include "clgqa/dataset.h"
#include "clgqa/model.h"
#include "clgqa/runtime.h"

/* Flags of clgqa_train_options. */
enum {
    CLGQA_TRAIN_QUIET = 1,         /* no progress output at all */
    CLGQA_TRAIN_OVERWRITE = 2,     /* a fresh run into a folder that holds a run removes that
                                      run's files first (without it: refused) */
    CLGQA_TRAIN_ALLOW_CHANGES = 4, /* a resume may change the recipe's settings (recorded in
                                      out_dir/resumes.csv; without it: refused) */
    CLGQA_TRAIN_DRY_RUN = 8        /* check the folder, the data and the memory, print the memory
                                      estimate on the log, and stop before allocating or
                                      writing anything */
};

typedef struct clgqa_train_options {
    const char *resume_dir;  /* continue the run saved in this folder (NULL: start fresh) */
    /* When not NULL and it becomes non-zero (a signal handler stores the
     * signal's number), the run stops after the step in progress (after the
     * evaluation when one is running): last.safetensors then holds that step,
     * and the result says where the run stood. */
    volatile sig_atomic_t *stop_signal;
    /* When not NULL and it becomes non-zero (SIGUSR1's handler, for a
     * scheduler's warning before a time limit), last.safetensors is written
     * after the step in progress, the flag is set back to 0 and the run goes
     * on. */
    volatile sig_atomic_t *checkpoint_request;
    int flags;               /* CLGQA_TRAIN_* */
    FILE *log;               /* progress and notices (NULL: stderr) */
} clgqa_train_options;

/* train_loss is the loss trained on: against the soft targets of label
 * smoothing and Mixup/CutMix when those are on. The accuracies compare the
 * prediction with each image's own label (with Mixup, the label of the
 * image before it was mixed). */
typedef struct clgqa_epoch_metrics {
    double train_loss, train_acc; /* mean over the epoch's training batches */
    double test_loss, test_acc;   /* over the evaluated test batches */
    double train_acc5, test_acc5; /* top-5 accuracies */
    double ema_test_loss, ema_test_acc; /* the weights' EMA (model_ema_decay), else 0 */
} clgqa_epoch_metrics;

typedef struct clgqa_train_result {
    int epochs_done;             /* epochs completed by the run so far (all calls) */
    long global_step;            /* optimizer steps completed */
    clgqa_epoch_metrics last;    /* the last epoch of this call */
    double images_per_second;    /* training throughput of this call */
    double data_wait_share;      /* share of training time spent waiting for batches */
    size_t skipped_images;       /* unreadable images left out (skip_unreadable), both splits */
    int stopped;                 /* 1: stopped early by stop_signal */
    int stop_signal;             /* the signal number read from stop_signal, 0 if none */
    long epoch_steps;            /* when stopped mid-epoch: steps done in epoch epochs_done + 1 */
    long steps_per_epoch;
    int best_epoch;              /* the epoch of lowest test loss so far, from 1 (0: none) */
    double best_test_loss;
} clgqa_train_result;

/* Train the model cfg describes on rt, on its dataset, with its recipe.
 * Writes the files of its out_dir. The config's device and code-path keys
 * are the caller's to apply when it creates rt (clgqa_config_runtime_options). With options->resume_dir, weights, optimizer state, counters and,
 * for a checkpoint written mid-epoch, where the epoch stood come from
 * <resume_dir>/last.safetensors (its model shape and seed must match cfg).
 * A stop (stop_signal) returns CLGQA_OK with result->stopped set; a
 * non-finite loss returns CLGQA_ERR_DIVERGED. */
clgqa_status clgqa_train(clgqa_runtime *rt, const clgqa_config *cfg,
                         const clgqa_train_options *options, clgqa_train_result *result);

typedef struct clgqa_eval_result {
    double loss, accuracy;
    double top5; /* the share of images whose label is among the 5 largest logits */
    long samples;
} clgqa_eval_result;

/* Evaluate `model` (created on rt) on `ds` in batches of the config's
 * batch_size, normalised with its norm_mean and norm_std (at most
 * max_batches batches, 0 = all). The model runs in evaluation mode (DGQA
 * updates its cache on every pass, PGQA perturbs, as in the reference).
 * `predictions`, when not NULL, receives CSV rows index,label,pred,logit_0,...
 * (the header included). */
clgqa_status clgqa_evaluate(clgqa_runtime *rt, clgqa_model *model, clgqa_dataset *ds,
                            const clgqa_config *cfg, long max_batches, FILE *predictions,
                            clgqa_eval_result *result);

#endif
