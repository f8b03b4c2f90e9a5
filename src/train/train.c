/* The training and evaluation driver: epochs of (load batch -> forward ->
 * backward -> AdamW), evaluation after each epoch, run.csv / groups.csv /
 * steps.csv, progress on stderr (run_files.c, step_log.c),
 * checkpoints. See clgqa/train.h. */
#include "train_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch_upload.h"
#include "clgqa/checkpoint.h"
#include "memory_check.h"
#include "mixup.h"
#include "mpi_ranks.h"
#include "run_files.h"
#include "run_folder.h"
#include "runtime_internal.h"
#include "scheme.h"
#include "step_log.h"

/* Evaluation passes key their random streams (PGQA noise, DGQA fix-up) from
 * this step on, apart from every training step, so that evaluating the same
 * weights twice gives the same numbers. */
#define EVAL_STREAM_STEP (1ull << 39)

/* ---- configuration and schedule ---------------------------------------- */

float clgqa_schedule_lr(const clgqa_config *cfg, long step, long total_steps) {
    long warmup = cfg->warmup_steps > 0 ? cfg->warmup_steps : 0;
    if (step < warmup)
        return (float)((double)cfg->lr * (double)(step + 1) / (double)warmup);
    if (cfg->schedule == CLGQA_SCHEDULE_CONSTANT)
        return cfg->lr;
    double t = total_steps > warmup ? (double)(step - warmup) / (double)(total_steps - warmup) : 1.0;
    if (t > 1.0)
        t = 1.0;
    double lr = cfg->lr, min_lr = cfg->min_lr;
    return (float)(min_lr + (lr - min_lr) * 0.5 * (1.0 + cos(M_PI * t)));
}

long clgqa_steps_per_epoch(const clgqa_config *cfg, long batches) {
    long accum = cfg->grad_accum_steps > 1 ? cfg->grad_accum_steps : 1;
    long steps = (batches + accum - 1) / accum; /* the last takes what is left */
    if (cfg->max_steps_per_epoch > 0 && cfg->max_steps_per_epoch < steps)
        return cfg->max_steps_per_epoch;
    return steps;
}

/* ---- host memory for copies without waiting ------------------------------- */

/* Pinned host memory (CL_MEM_ALLOC_HOST_PTR, mapped once) that the device
 * copies into without waiting: some drivers copy into pageable memory
 * synchronously. `what` names it in the error. */
static clgqa_status pinned_open(clgqa_runtime *rt, size_t bytes, const char *what, cl_mem *buffer,
                                void **mapped) {
    cl_int err;
    *buffer = clCreateBuffer(rt->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL,
                             &err);
    if (err == CL_SUCCESS)
        *mapped = clEnqueueMapBuffer(rt->queue, *buffer, CL_TRUE, CL_MAP_READ, 0, bytes, 0, NULL,
                                     NULL, &err);
    if (err != CL_SUCCESS)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "pinned staging of %zu bytes for %s failed: %s",
                          bytes, what, clgqa_cl_status_name(err));
    return CLGQA_OK;
}

/* Wait for a copy queued into it and release the copy's event. */
static clgqa_status pinned_wait(cl_event *copied) {
    cl_int err = clWaitForEvents(1, copied);
    clReleaseEvent(*copied);
    *copied = NULL;
    CLGQA_CL(err);
    return CLGQA_OK;
}

/* Waits for `pending` (if any), then unmaps and releases. */
static void pinned_close(clgqa_runtime *rt, cl_event *pending, cl_mem *buffer, void **mapped) {
    if (*pending)
        pinned_wait(pending);
    if (*mapped) {
        clEnqueueUnmapMemObject(rt->queue, *buffer, *mapped, 0, NULL, NULL);
        clFinish(rt->queue);
        *mapped = NULL;
    }
    clgqa_buffer_release(buffer);
}

/* ---- evaluation ---------------------------------------------------------- */

/* The predictions file (clgqa eval --predictions): each batch's logits are
 * copied without waiting and written once the next batch is queued. */
typedef struct predictions_out {
    FILE *csv;
    clgqa_runtime *rt;
    cl_mem pinned;
    void *mapped;     /* the logits, [max batch, classes] */
    int32_t *labels;  /* [max batch]: the batch's (the loader's go with the next batch) */
    cl_event copied;  /* NULL: nothing pending */
    int count, classes;
    long first_index;
} predictions_out;

static clgqa_status predictions_open(predictions_out *p, clgqa_runtime *rt,
                                     const clgqa_model_dims *dims, FILE *csv) {
    memset(p, 0, sizeof *p);
    p->csv = csv;
    p->rt = rt;
    p->classes = dims->num_classes;
    p->labels = malloc((size_t)dims->max_batch * sizeof(int32_t));
    if (!p->labels)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate the labels of a batch");
    CLGQA_TRY(pinned_open(rt, (size_t)dims->max_batch * dims->num_classes * sizeof(float),
                          "the logits of a batch", &p->pinned, &p->mapped));
    fprintf(csv, "index,label,pred");
    for (int c = 0; c < dims->num_classes; c++)
        fprintf(csv, ",logit_%d", c);
    fputc('\n', csv);
    return CLGQA_OK;
}

static void predictions_close(predictions_out *p) {
    pinned_close(p->rt, &p->copied, &p->pinned, &p->mapped);
    free(p->labels);
}

/* Queue the copy of the batch just forwarded. */
static clgqa_status predictions_queue(predictions_out *p, clgqa_model *model,
                                      const clgqa_batch *batch, long first_index) {
    CLGQA_TRY(clgqa_model_copy_logits(model, p->mapped, &p->copied));
    memcpy(p->labels, batch->labels, (size_t)batch->count * sizeof(int32_t));
    p->count = batch->count;
    p->first_index = first_index;
    return CLGQA_OK;
}

/* Wait for the pending copy, if any, and write its rows. */
static clgqa_status predictions_write(predictions_out *p) {
    if (!p->copied)
        return CLGQA_OK;
    CLGQA_TRY(pinned_wait(&p->copied));
    for (int i = 0; i < p->count; i++) {
        const float *row = (const float *)p->mapped + (size_t)i * p->classes;
        int pred = 0;
        for (int c = 1; c < p->classes; c++)
            if (row[c] > row[pred])
                pred = c;
        fprintf(p->csv, "%ld,%d,%d", p->first_index + i, p->labels[i], pred);
        for (int c = 0; c < p->classes; c++)
            fprintf(p->csv, ",%.9g", row[c]);
        fputc('\n', p->csv);
    }
    if (ferror(p->csv))
        return clgqa_fail(CLGQA_ERR_IO, "writing predictions failed: %s", strerror(errno));
    return CLGQA_OK;
}

/* With mpi, each rank evaluates its shard of every batch and the metrics are
 * summed over the ranks. */
static clgqa_status evaluate_with(clgqa_model *model, const clgqa_config *cfg,
                                  clgqa_loader *loader, clgqa_batch_upload *up, long max_batches,
                                  predictions_out *predictions, clgqa_mpi *mpi,
                                  clgqa_eval_result *result) {
    clgqa_status status = clgqa_loader_start(loader, 0);
    if (status == CLGQA_OK)
        status = clgqa_model_reset_metrics(model);
    long first_index = 0;
    clgqa_metrics metrics, before_replicated = {0};
    int replicated = 0;
    for (long b = 0; status == CLGQA_OK && (max_batches <= 0 || b < max_batches); b++) {
        clgqa_batch batch;
        status = clgqa_loader_next(loader, &batch);
        if (status != CLGQA_OK || batch.count == 0)
            break;
        /* A batch smaller than the ranks (the last) is whole on every rank:
         * only rank 0's metrics count it. */
        if (batch.replicated && !replicated && clgqa_mpi_rank(mpi) != 0)
            status = clgqa_model_read_metrics(model, &before_replicated);
        replicated |= batch.replicated;
        if (status == CLGQA_OK)
            status = clgqa_mpi_begin_pass(mpi, &batch, CLGQA_PASS_EVAL);
        clgqa_view pixels, labels;
        if (status == CLGQA_OK)
            status = clgqa_batch_upload_next(up, &batch, &pixels, &labels);
        const clgqa_pass pass = {.mode = CLGQA_PASS_EVAL, .step_in_epoch = b,
                                 .global_step = (long)(EVAL_STREAM_STEP + (uint64_t)b)};
        if (status == CLGQA_OK)
            status = clgqa_model_forward_pixels(model, pixels, labels, batch.count, cfg->norm_mean,
                                                cfg->norm_std, &pass);
        if (status == CLGQA_OK && predictions) /* the previous batch's, now that this one is queued */
            status = predictions_write(predictions);
        if (status == CLGQA_OK && predictions)
            status = predictions_queue(predictions, model, &batch, first_index);
        first_index += batch.count;
    }
    if (status == CLGQA_OK && predictions)
        status = predictions_write(predictions);
    CLGQA_TRY(status);
    if (replicated && clgqa_mpi_rank(mpi) != 0)
        metrics = before_replicated;
    else
        CLGQA_TRY(clgqa_model_read_metrics(model, &metrics));
    CLGQA_TRY(clgqa_mpi_sum_metrics(mpi, &metrics));
    if (metrics.samples == 0)
        return clgqa_fail(CLGQA_ERR_NO_DATA, "evaluation saw no test images");
    result->samples = metrics.samples;
    result->loss = metrics.sum_loss / (double)metrics.samples;
    result->accuracy = metrics.sum_correct / (double)metrics.samples;
    result->top5 = metrics.sum_top5 / (double)metrics.samples;
    return CLGQA_OK;
}

clgqa_status clgqa_evaluate(clgqa_runtime *rt, clgqa_model *model, clgqa_dataset *ds,
                            const clgqa_config *cfg, long max_batches, FILE *predictions,
                            clgqa_eval_result *result) {
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    int batch_size = cfg->batch_size < dims->max_batch ? cfg->batch_size : dims->max_batch;
    clgqa_loader *loader = NULL;
    clgqa_batch_upload *up = NULL;
    predictions_out out = {0};
    clgqa_status status = clgqa_batch_upload_create(rt, dims, batch_size, &up);
    if (status == CLGQA_OK)
        status = clgqa_loader_create(ds, batch_size, CLGQA_ORDER_DATASET, 0, &loader);
    if (status == CLGQA_OK)
        status = clgqa_loader_use_pixels(loader);
    if (status == CLGQA_OK && predictions)
        status = predictions_open(&out, rt, dims, predictions);
    if (status == CLGQA_OK)
        status = evaluate_with(model, cfg, loader, up, max_batches, predictions ? &out : NULL, NULL,
                               result);
    if (out.rt)
        predictions_close(&out);
    clgqa_loader_destroy(loader);
    clgqa_batch_upload_destroy(up);
    return status;
}

/* ---- the run ------------------------------------------------------------- */

/* What the host learns of a training step: its per-sample losses (every
 * micro-batch's: the divergence check), the running metrics (steps.csv, the
 * progress line) and,
 * on groups.csv steps, every layer's group counts. They are copied without
 * waiting, right after the step's kernels, into pinned host memory, and
 * consumed once the next step is queued, so the device never idles for
 * them; a checkpoint and the epoch's end consume them at once. */
typedef struct step_readback {
    cl_mem pinned;         /* CL_MEM_ALLOC_HOST_PTR, mapped while the run lasts */
    void *mapped;          /* losses [2][max batch * accumulation], sums [STEP_SUMS],
                              the loss scaler [CLGQA_LOSS_SCALER_FLOATS],
                              group counts [layers * G] */
    /* The losses of two steps: the pending step's (`losses`, read once the
     * next step is queued) and the next step's, copied after each of its
     * micro-batches meanwhile (`loss_halves[write_half]`). */
    float *loss_halves[2], *losses, *sums;
    int write_half;
    float *scaler;         /* precision 16-mixed: the loss scaler after the step */
    int32_t *group_counts;
    cl_event copied;       /* the step's last copy (the queue is in order); NULL: none pending */
    clgqa_metrics_copy metrics;
    int count, epoch;      /* count: the step's images, every micro-batch's */
    long step;             /* in the epoch, from 0 */
    long global_step;      /* optimizer steps done */
    float lr;
    int groups;            /* the group counts were copied (a groups.csv step) */
    int replicated;        /* the epoch had a replicated batch by this step */
    clgqa_metrics taken;   /* this rank's metrics at the last step taken (or the epoch's start) */
    clgqa_metrics held;    /* this rank's metrics before the epoch's replicated batch */
    int hold;              /* the pending step is the one before that batch: keep its metrics */
} step_readback;

/* The step's metrics: six sums, the model's (clgqa_model_copy_metrics). */
#define STEP_SUMS 6

static clgqa_status readback_open(step_readback *r, clgqa_runtime *rt, const clgqa_model_dims *dims,
                                  int micro_batches) {
    size_t group_ints = (size_t)dims->num_layers * dims->kv_heads;
    size_t losses = (size_t)dims->max_batch * (size_t)micro_batches;
    size_t bytes = (2 * losses + STEP_SUMS + CLGQA_LOSS_SCALER_FLOATS + group_ints) *
                   sizeof(float);
    CLGQA_TRY(pinned_open(rt, bytes, "the step's metrics", &r->pinned, &r->mapped));
    r->loss_halves[0] = r->mapped;
    r->loss_halves[1] = r->loss_halves[0] + losses;
    r->losses = r->loss_halves[0];
    r->sums = r->loss_halves[1] + losses;
    r->scaler = r->sums + STEP_SUMS;
    r->group_counts = (int32_t *)(r->scaler + CLGQA_LOSS_SCALER_FLOATS);
    return CLGQA_OK;
}

typedef struct trainer {
    clgqa_runtime *rt;
    clgqa_config cfg; /* finalized; num_classes filled from the dataset if 0 */
    const clgqa_train_options *options;
    const clgqa_train_extras *extras;
    int quiet;      /* CLGQA_TRAIN_QUIET */
    FILE *log;      /* rank 0's progress and notices; /dev/null on the other ranks */
    FILE *rank_log; /* every rank's own lines */
    clgqa_mpi *mpi; /* NULL: one process */
    long rank_images; /* training images this rank processed in this call */
    int stop_signal;  /* the signal that stopped the run (agreed by the ranks) */
    clgqa_dataset *train_set, *test_set;
    clgqa_loader *train_loader, *test_loader;
    clgqa_model *model;
    clgqa_batch_upload *upload;
    FILE *run_csv, *groups_csv;
    clgqa_step_log steps; /* steps.csv */
    clgqa_train_state state;
    step_readback readback;
    long steps_this_call;
    long steps_per_epoch, total_steps;
    int groups_every; /* training steps between groups.csv rows, 0: only after evaluation */
    int lock_fd;      /* rank 0's lock on out_dir/.lock, -1 when none */
    int checkpointed; /* last.safetensors is this run's: resumed from or written by this call */
    run_change changes[RUN_MAX_CHANGES]; /* settings a resume changed (--allow-changes) */
    int change_count;
    clgqa_mixup mixup; /* timm's Mixup/CutMix settings (off when no alpha is set) */
    int top5;          /* more than 5 classes: top-5 accuracy in run.csv and the progress */
    int ema;           /* the weights' EMA is kept, evaluated and saved */
} trainer;

static void trainer_free(trainer *t) {
    run_folder_unlock(&t->lock_fd);
    if (t->log != t->rank_log)
        fclose(t->log);
    if (t->run_csv)
        fclose(t->run_csv);
    if (t->groups_csv)
        fclose(t->groups_csv);
    if (t->steps.csv)
        fclose(t->steps.csv);
    pinned_close(t->rt, &t->readback.copied, &t->readback.pinned, &t->readback.mapped);
    clgqa_loader_destroy(t->train_loader);
    clgqa_loader_destroy(t->test_loader);
    clgqa_batch_upload_destroy(t->upload);
    clgqa_model_destroy(t->model);
    clgqa_dataset_close(t->train_set);
    clgqa_dataset_close(t->test_set);
}

/* The splits, their loaders (this rank's shard of each batch, as 8-bit
 * pixels for the device to normalise), and num_classes when the dataset
 * gives it. */
static clgqa_status open_data(trainer *t, int rank, int ranks) {
    clgqa_config *cfg = &t->cfg;
    clgqa_dataset_options data;
    clgqa_config_dataset_options(cfg, &data);
    CLGQA_TRY(clgqa_dataset_open(&data, CLGQA_SPLIT_TRAIN, &t->train_set));
    CLGQA_TRY(clgqa_dataset_open(&data, CLGQA_SPLIT_TEST, &t->test_set));
    if (cfg->num_classes == 0)
        cfg->num_classes = clgqa_dataset_num_classes(t->train_set);
    CLGQA_TRY(clgqa_loader_create(t->train_set, cfg->batch_size,
                                  cfg->shuffle ? CLGQA_ORDER_SHUFFLED : CLGQA_ORDER_DATASET, 0,
                                  &t->train_loader));
    CLGQA_TRY(clgqa_loader_create(t->test_set, cfg->batch_size, CLGQA_ORDER_DATASET, 0,
                                  &t->test_loader));
    CLGQA_TRY(clgqa_loader_shard(t->train_loader, rank, ranks));
    CLGQA_TRY(clgqa_loader_shard(t->test_loader, rank, ranks));
    CLGQA_TRY(clgqa_loader_use_pixels(t->train_loader));
    return clgqa_loader_use_pixels(t->test_loader);
}

/* precision 16-mixed: the loss scaler, from a resumed run's checkpoint
 * when it holds one (a checkpoint of a precision 32 run does not: its
 * scaler starts afresh), else from 2^16. */
static clgqa_status start_loss_scaler(trainer *t) {
    if (t->cfg.precision != CLGQA_PRECISION_16_MIXED)
        return CLGQA_OK;
    clgqa_loss_scaler scaler = {CLGQA_LOSS_SCALE_INIT, 0, 0, 0};
    if (t->state.loss_scale > 0) {
        scaler.scale = (float)t->state.loss_scale;
        scaler.growth = t->state.loss_scale_growth;
        scaler.skipped = t->state.skipped_steps;
    }
    return clgqa_model_set_loss_scaler(t->model, &scaler);
}

/* The model, its batch slots and readback, and its weights: a resumed
 * run's last.safetensors, a pretrained checkpoint, or the initialisation. */
static clgqa_status open_model(trainer *t, int ranks) {
    const clgqa_config *cfg = &t->cfg;
    int max_batch = clgqa_rank_batch(cfg, ranks);
    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    /* precision 16-mixed: the blocks' saved activations in half. */
    const clgqa_storage storage = clgqa_config_storage(cfg);
    CLGQA_TRY(clgqa_model_create_stored(t->rt, &desc, max_batch, storage, &t->model));
    CLGQA_TRY(clgqa_mpi_attach(t->mpi, t->rt, t->model));
    const clgqa_model_dims *dims = clgqa_model_get_dims(t->model);
    CLGQA_TRY(clgqa_batch_upload_create(t->rt, dims, max_batch, &t->upload));
    CLGQA_TRY(readback_open(&t->readback, t->rt, dims, cfg->grad_accum_steps));
    const clgqa_regularisation regularisation = {cfg->label_smoothing, cfg->drop_path};
    CLGQA_TRY(clgqa_model_set_regularisation(t->model, &regularisation));
    /* The EMA starts as a copy of the weights the run starts from (a resumed
     * run's comes from its checkpoint). */
    const char *resume_dir = t->options->resume_dir;
    if (!resume_dir && cfg->pretrained_ckpt[0])
        CLGQA_TRY(clgqa_checkpoint_load_pretrained(
            t->model, cfg->pretrained_ckpt,
            cfg->pos_embed_antialias ? CLGQA_RESAMPLE_ANTIALIAS : CLGQA_RESAMPLE_BICUBIC, t->log));
    if (t->ema)
        CLGQA_TRY(clgqa_model_ema_start(t->model));
    if (!resume_dir)
        return start_loss_scaler(t);
    char path[1200];
    run_join_path(path, sizeof path, resume_dir, "last.safetensors");
    CLGQA_TRY(clgqa_checkpoint_load_training(t->model, path, &t->state));
    t->checkpointed = 1;
    CLGQA_TRY(start_loss_scaler(t));
    int trained_on = t->state.ranks > 0 ? t->state.ranks : 1;
    if (trained_on != ranks)
        return clgqa_mpi_refuse(t->mpi, "%s was trained on %d rank%s, this run has %d: resume "
                                "with mpirun -np %d", path, trained_on, trained_on > 1 ? "s" : "",
                                ranks, trained_on);
    if (!t->quiet && t->state.epoch_steps > 0)
        fprintf(t->log, "resuming %s in epoch %ld after step %ld (global step %ld)\n", path,
                t->state.epochs_done + 1, t->state.epoch_steps, t->state.global_step);
    else if (!t->quiet)
        fprintf(t->log, "resuming %s after epoch %ld (step %ld)\n", path, t->state.epochs_done,
                t->state.global_step);
    return CLGQA_OK;
}

/* Rank 0's files: config.yaml, and run.csv, groups.csv and steps.csv,
 * created or, for a resumed run, trimmed to what its checkpoint had seen. */
static clgqa_status open_run_files(trainer *t) {
    const clgqa_config *cfg = &t->cfg;
    char path[1200];
    run_join_path(path, sizeof path, cfg->out_dir, "config.yaml");
    CLGQA_TRY(clgqa_config_write(cfg, path));
    run_join_path(path, sizeof path, cfg->out_dir, "run.csv");
    const clgqa_train_state *resumed = t->options->resume_dir ? &t->state : NULL;
    char header[256];
    snprintf(header, sizeof header, "epoch,train_loss,train_acc,test_loss,test_acc%s%s",
             t->top5 ? ",train_acc5,test_acc5" : "",
             t->ema ? (t->top5 ? ",ema_test_loss,ema_test_acc,ema_test_acc5"
                               : ",ema_test_loss,ema_test_acc")
                    : "");
    CLGQA_TRY(run_open_log(path, header, resumed, run_keep_epoch_row, &t->run_csv));
    run_join_path(path, sizeof path, cfg->out_dir, "groups.csv");
    CLGQA_TRY(run_open_log(path, "epoch,step,layer,counts", resumed, run_keep_groups_row,
                           &t->groups_csv));
    run_join_path(path, sizeof path, cfg->out_dir, "steps.csv");
    CLGQA_TRY(run_open_log(path, CLGQA_STEP_LOG_HEADER, resumed, run_keep_steps_row,
                           &t->steps.csv));
    return run_folder_record_changes(cfg->out_dir, t->state.global_step, t->changes,
                                     t->change_count);
}

/* Rank 0's verdict shared by every rank: all fail alike (one line, from rank
 * 0) or all go on. One process: `status` itself. */
static clgqa_status agree(trainer *t, clgqa_status status) {
    if (!t->mpi)
        return status;
    char message[2048] = "";
    if (status != CLGQA_OK)
        snprintf(message, sizeof message, "%s", clgqa_error_message());
    long failed = status != CLGQA_OK;
    CLGQA_TRY(clgqa_mpi_max_long(t->mpi, &failed));
    if (!failed)
        return CLGQA_OK;
    if (status != CLGQA_OK)
        return clgqa_mpi_refuse(t->mpi, "%s", message);
    return clgqa_mpi_refuse(t->mpi, "another rank refused the run");
}

/* Rank 0's checks of the folder that write nothing, so that a refused run
 * leaves every file as it was: a resumed run's out_dir is the folder it
 * resumes, and its settings are those it was trained with; a fresh run
 * never takes over a folder that holds a run unless told to start over
 * (--overwrite). `locked`: this run holds the folder's lock already. */
static clgqa_status check_folder(trainer *t, int locked) {
    const clgqa_config *cfg = &t->cfg;
    const char *resume_dir = t->options->resume_dir;
    if (!locked) /* a live run first: nothing else matters */
        CLGQA_TRY(run_folder_check_free(cfg->out_dir));
    struct stat folder;
    if (resume_dir && stat(resume_dir, &folder) != 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot resume '%s': %s", resume_dir, strerror(errno));
    if (resume_dir && !S_ISDIR(folder.st_mode))
        return clgqa_fail(CLGQA_ERR_IO, "cannot resume '%s': not a folder", resume_dir);
    if (resume_dir && !run_folder_same(resume_dir, cfg->out_dir))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "the run to resume, '%s', is not out_dir '%s': a "
                          "resumed run's files belong to the folder it resumes; leave out_dir out "
                          "or set it to '%s'", resume_dir, cfg->out_dir, resume_dir);
    if (resume_dir)
        return run_folder_compare_config(cfg, cfg->out_dir,
                                         (t->options->flags & CLGQA_TRAIN_ALLOW_CHANGES) != 0,
                                         t->changes, &t->change_count);
    const char *held = run_folder_run_file(cfg->out_dir);
    if (held && !(t->options->flags & CLGQA_TRAIN_OVERWRITE))
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "out_dir '%s' holds a run (%s): continue it with "
                          "--resume '%s', or start over with --overwrite (which removes its files)",
                          cfg->out_dir, held, cfg->out_dir);
    return CLGQA_OK;
}

/* Rank 0 takes the folder for the whole run: creates it, locks it, removes
 * what interrupted writes left, and with --overwrite the old run's files.
 * The checks run again under the lock: another run may have begun since. */
static clgqa_status claim_folder(trainer *t) {
    const clgqa_config *cfg = &t->cfg;
    CLGQA_TRY(run_make_dirs(cfg->out_dir));
    CLGQA_TRY(run_folder_lock(cfg->out_dir, t->rank_log, &t->lock_fd));
    CLGQA_TRY(check_folder(t, 1));
    run_folder_sweep_temporaries(cfg->out_dir, t->rank_log);
    if (!t->options->resume_dir && run_folder_run_file(cfg->out_dir))
        CLGQA_TRY(run_folder_clear(cfg->out_dir)); /* --overwrite, checked above */
    return CLGQA_OK;
}

/* The memory the run needs, against what the device and the host have
 * (memory_check.h): printed for a dry run, refused when it does not fit. */
static clgqa_status check_memory(trainer *t, int ranks) {
    clgqa_memory_estimate estimate;
    CLGQA_TRY(clgqa_memory_estimate_run(t->rt, &t->cfg, ranks, &estimate));
    if (t->options->flags & CLGQA_TRAIN_DRY_RUN)
        clgqa_memory_estimate_print(&estimate, clgqa_runtime_device_name(t->rt), t->log);
    return clgqa_memory_check(&estimate, clgqa_runtime_device_name(t->rt));
}

/* precision 16-mixed needs a device with half-precision floats. */
static clgqa_status check_precision(trainer *t) {
    if (t->cfg.precision != CLGQA_PRECISION_16_MIXED || clgqa_runtime_has_fp16(t->rt))
        return CLGQA_OK;
    return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "precision 16-mixed: the device '%s' has no "
                      "half-precision floats (its OpenCL driver lists no cl_khr_fp16); train "
                      "with precision 32", clgqa_runtime_device_name(t->rt));
}

static clgqa_status trainer_open(trainer *t) {
    const clgqa_config *cfg = &t->cfg;
    int rank = clgqa_mpi_rank(t->mpi), ranks = clgqa_mpi_ranks(t->mpi);
    CLGQA_TRY(agree(t, check_precision(t)));
    if (cfg->batch_size % ranks != 0)
        return clgqa_mpi_refuse(t->mpi, "batch_size %d is the global batch: it must divide by the %d ranks",
                                cfg->batch_size, ranks);
    CLGQA_TRY(open_data(t, rank, ranks)); /* num_classes, for the checks below */
    t->top5 = cfg->num_classes > 5;
    t->ema = cfg->model_ema_decay > 0;
    const clgqa_mixup mixup = {cfg->mixup_alpha, cfg->cutmix_alpha, cfg->mixup_prob,
                               cfg->mixup_switch_prob};
    t->mixup = mixup;
    /* Several ranks weigh their gradients by their share of each batch; a
     * batch smaller than the ranks (whole on every rank, rank 0's gradient
     * only) cannot share a step with other micro-batches. */
    size_t last_batch = clgqa_dataset_count(t->train_set) % (size_t)cfg->batch_size;
    long batches_used =
        clgqa_steps_per_epoch(cfg, (long)clgqa_loader_num_batches(t->train_loader)) *
        cfg->grad_accum_steps;
    if (cfg->grad_accum_steps > 1 && last_batch > 0 && last_batch < (size_t)ranks &&
        batches_used >= (long)clgqa_loader_num_batches(t->train_loader))
        return clgqa_mpi_refuse(t->mpi, "grad_accum_steps %d with %d ranks: the training split's "
                                "last batch has %zu images, fewer than the ranks; choose a "
                                "batch_size that leaves none or at least %d, or set "
                                "max_steps_per_epoch", cfg->grad_accum_steps, ranks, last_batch,
                                ranks);
    /* Every refusal comes before anything is written: a refused run leaves
     * the folder as it was. Only rank 0 writes files, so only it owns the
     * folder. */
    CLGQA_TRY(agree(t, check_memory(t, ranks)));
    CLGQA_TRY(agree(t, rank == 0 ? check_folder(t, 0) : CLGQA_OK));
    if (!(t->options->flags & CLGQA_TRAIN_DRY_RUN))
        CLGQA_TRY(agree(t, rank == 0 ? claim_folder(t) : CLGQA_OK));
    if (t->extras && t->extras->start_line)
        fprintf(t->rank_log, "%s\n", t->extras->start_line);
    if (t->options->flags & CLGQA_TRAIN_DRY_RUN)
        return CLGQA_OK;
    CLGQA_TRY(open_model(t, ranks));

    const long epochs_begun = t->state.epochs_done + (t->state.epoch_steps > 0);
    if (t->options->resume_dir && epochs_begun > cfg->epochs)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s/last.safetensors is %s epoch %ld, the config "
                          "says epochs %d: a resume may add epochs, not drop those begun",
                          cfg->out_dir, t->state.epoch_steps > 0 ? "in" : "after", epochs_begun,
                          cfg->epochs);
    t->steps_per_epoch = clgqa_steps_per_epoch(cfg, (long)clgqa_loader_num_batches(t->train_loader));
    t->total_steps = t->steps_per_epoch * cfg->epochs;
    if (t->state.epoch_steps > t->steps_per_epoch)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "%s/last.safetensors stopped after step %ld of an "
                          "epoch, which now has %ld steps: resume with the config it was trained "
                          "with", t->options->resume_dir, t->state.epoch_steps, t->steps_per_epoch);
    /* groups.csv: a row per layer every log_steps training steps (every
     * window for DGQA) and after each evaluation, so a file stays small. */
    const clgqa_scheme_traits *traits = clgqa_scheme_traits_of(cfg->att_scheme);
    if (!traits->dynamic) /* static groups never move */
        t->groups_every = 0;
    else if (traits->windowed) /* on window steps, where the split changes */
        t->groups_every = (cfg->log_steps + cfg->window_size - 1) / cfg->window_size * cfg->window_size;
    else
        t->groups_every = cfg->log_steps;

    t->state.ranks = ranks;
    if (!t->quiet)
        clgqa_mpi_describe(t->mpi, t->rt, cfg->batch_size, t->rank_log);
    return rank == 0 ? open_run_files(t) : CLGQA_OK;
}

/* Progress goes to a stream the run does not own (a terminal, a pipe): once
 * a write to it fails (EPIPE after the reader went, EIO after a hangup), the
 * rest of the progress is dropped and the run goes on. */
static void log_check(trainer *t) {
    if (!ferror(t->log))
        return;
    t->quiet = 1;
    clearerr(t->log);
}

/* Whether the run should stop after the step just done. Several ranks stop
 * together, after the first step any of them was signalled in. */
static clgqa_status stop_requested(trainer *t, int *stop) {
    const clgqa_train_options *opt = t->options;
    long signal = opt->stop_signal ? (long)*opt->stop_signal : 0;
    CLGQA_TRY(clgqa_mpi_max_long(t->mpi, &signal));
    if (signal)
        t->stop_signal = (int)signal;
    long stop_after = t->extras ? t->extras->stop_after_steps : 0;
    *stop = signal || (stop_after > 0 && t->steps_this_call >= stop_after);
    return CLGQA_OK;
}

/* The epoch's running metrics over every rank, from this rank's `local`
 * (NULL: read them now, waiting for the queue); `held` (when not NULL) is
 * what this rank had before a replicated batch. */
static clgqa_status epoch_metrics(trainer *t, const clgqa_metrics *held, const clgqa_metrics *local,
                                  clgqa_metrics *m) {
    if (held && clgqa_mpi_rank(t->mpi) != 0)
        *m = *held;
    else if (local)
        *m = *local;
    else
        CLGQA_TRY(clgqa_model_read_metrics(t->model, m));
    return clgqa_mpi_sum_metrics(t->mpi, m);
}

/* Rank 0's file. */
static clgqa_status save_last(trainer *t) {
    if (clgqa_mpi_rank(t->mpi) != 0)
        return CLGQA_OK;
    char path[1200];
    run_join_path(path, sizeof path, t->cfg.out_dir, "last.safetensors");
    t->state.loss_scale = 0;
    if (clgqa_model_loss_scaling(t->model)) { /* the queue is drained for the weights anyway */
        clgqa_loss_scaler scaler;
        CLGQA_TRY(clgqa_model_read_loss_scaler(t->model, &scaler));
        t->state.loss_scale = scaler.scale;
        t->state.loss_scale_growth = scaler.growth;
        t->state.skipped_steps = scaler.skipped;
    }
    CLGQA_TRY(clgqa_checkpoint_save_training(t->model, &t->state, path));
    t->checkpointed = 1;
    return CLGQA_OK;
}

/* last.safetensors after `steps` steps of the current epoch, the loader at
 * `next_batch`: what a resumed run needs to go on from the next step. */
static clgqa_status save_mid_epoch(trainer *t, long steps, long next_batch,
                                   const clgqa_metrics *held) {
    t->state.epoch_steps = steps;
    t->state.next_batch = next_batch;
    /* Several ranks: the sums over all of them (a resumed rank 0 starts from
     * them, the others from 0). Summing also waits for every rank's loss
     * check of this step, so rank 0 never saves weights one found diverged. */
    CLGQA_TRY(epoch_metrics(t, held, NULL, &t->state.epoch_metrics));
    return save_last(t);
}

/* Queue the copies of the step just queued (after its kernels); its
 * micro-batches' losses, `count` in all, were queued after each forward. */
static clgqa_status readback_queue(trainer *t, int count, int epoch, long step, float lr,
                                   int replicated) {
    step_readback *r = &t->readback;
    r->groups = t->groups_csv && t->groups_every && step % t->groups_every == 0;
    if (r->groups)
        CLGQA_TRY(clgqa_model_copy_all_group_counts(t->model, r->group_counts, NULL));
    if (clgqa_model_loss_scaling(t->model))
        CLGQA_TRY(clgqa_model_copy_loss_scaler(t->model, r->scaler, NULL));
    CLGQA_TRY(clgqa_model_copy_metrics(t->model, r->sums, &r->metrics, &r->copied));
    r->losses = r->loss_halves[r->write_half];
    r->write_half ^= 1;
    r->count = count;
    r->epoch = epoch;
    r->step = step;
    r->global_step = t->state.global_step;
    r->lr = lr;
    r->replicated = replicated;
    return CLGQA_OK;
}

/* Consume the pending copies, if any: wait for them, write the step's
 * groups.csv and steps.csv rows and its progress report when due, then stop
 * the run if a loss is not finite (before any checkpoint could hold the
 * weights that produced it). */
static clgqa_status readback_take(trainer *t, run_progress *p) {
    step_readback *r = &t->readback;
    if (!r->copied)
        return CLGQA_OK;
    CLGQA_TRY(pinned_wait(&r->copied));
    const clgqa_config *cfg = &t->cfg;
    long done = r->step + 1;
    clgqa_metrics_of_copy(&r->metrics, &r->taken);
    if (r->hold)
        r->held = r->taken;
    r->hold = 0;
    if (r->groups)
        CLGQA_TRY(run_write_groups(t->groups_csv, clgqa_model_get_dims(t->model), r->group_counts,
                                   r->epoch, r->step));
    int row = done % cfg->log_steps == 0 || done == t->steps_per_epoch;
    int report = run_progress_due(p, done);
    if (row || report) {
        clgqa_metrics m;
        CLGQA_TRY(epoch_metrics(t, r->replicated ? &r->held : NULL, &r->taken, &m));
        double wait_seconds = clgqa_loader_wait_seconds(t->train_loader);
        clgqa_loss_scaler scaler = {1.0f, 0, 0, 0};
        if (clgqa_model_loss_scaling(t->model))
            clgqa_loss_scaler_of_copy(r->scaler, &scaler);
        if (row && t->steps.csv) /* rank 0's file */
            CLGQA_TRY(clgqa_step_log_row(&t->steps, &m, r->epoch, r->global_step, r->lr,
                                         wait_seconds, scaler.scale));
        if (report)
            run_progress_show(p, done, &m, wait_seconds, t->top5);
    }
    for (int i = 0; i < r->count; i++) {
        if (isfinite(r->losses[i]))
            continue;
        /* Name a checkpoint only when it is this run's (a folder's older
         * file could be another run's). */
        char kept[1200];
        if (t->checkpointed)
            snprintf(kept, sizeof kept, "%s/last.safetensors keeps the last checkpoint before "
                     "it (resume from there: --resume with --allow-changes takes a lower lr or a "
                     "clip_grad_norm)", cfg->out_dir);
        else
            snprintf(kept, sizeof kept, "no checkpoint was written before it");
        return clgqa_fail(CLGQA_ERR_DIVERGED,
                          "training diverged at epoch %d, step %ld/%ld (lr %g): the loss is %g; "
                          "%s. Lower lr or set clip_grad_norm", r->epoch + 1, done,
                          t->steps_per_epoch, (double)r->lr, (double)r->losses[i], kept);
    }
    return CLGQA_OK;
}

/* Where an epoch stands, for the functions of its step loop. */
typedef struct epoch_run {
    long batches;         /* the loader batches the epoch trains on */
    int epoch;
    long next_batch;      /* the loader's next batch, for a mid-epoch checkpoint */
    int replicated;       /* the epoch had a batch smaller than the ranks by now */
    clgqa_metrics before; /* the running metrics when this call began the epoch */
    run_progress progress;
} epoch_run;

/* The step's batch from the loader. With several ranks, a batch smaller
 * than the ranks (the epoch's last) is whole on every rank: only rank 0's
 * metrics count it, the others keep theirs from the step before (pending:
 * taken once this step is queued). */
static clgqa_status load_batch(trainer *t, epoch_run *e, long step, clgqa_batch *batch) {
    CLGQA_TRY(clgqa_loader_next(t->train_loader, batch));
    if (batch->count == 0)
        return clgqa_fail(CLGQA_ERR_NO_DATA, "the loader ended epoch %d after %ld of %ld batches",
                          e->epoch + 1, step, t->steps_per_epoch);
    e->next_batch = batch->index + 1;
    if (batch->replicated && !e->replicated) {
        if (t->readback.copied)
            t->readback.hold = 1;
        else
            t->readback.held = t->readback.taken;
    }
    e->replicated |= batch->replicated;
    return clgqa_mpi_begin_pass(t->mpi, batch, CLGQA_PASS_TRAIN);
}

/* The previous step's losses and metrics (its log rows, progress and
 * divergence check), now that this step is queued; then this step's
 * copies. */
static clgqa_status log_step(trainer *t, epoch_run *e, long step, int count, float lr) {
    CLGQA_TRY(readback_take(t, &e->progress));
    return readback_queue(t, count, e->epoch, step, lr, e->replicated);
}

/* Whether a checkpoint was requested (SIGUSR1) since the last one; the
 * request is taken. Several ranks take it together. */
static clgqa_status checkpoint_requested(trainer *t, int *requested) {
    volatile sig_atomic_t *flag = t->options->checkpoint_request;
    long request = flag ? (long)*flag : 0;
    CLGQA_TRY(clgqa_mpi_max_long(t->mpi, &request));
    if (request && flag)
        *flag = 0;
    *requested = request != 0;
    return CLGQA_OK;
}

/* After step `step`: a mid-epoch checkpoint when one is due, asked for
 * (SIGUSR1: then the run goes on) or a stop was requested (*stop set). A
 * request at the epoch's last step is left for the epoch's end, which
 * writes last.safetensors anyway. */
static clgqa_status checkpoint_or_stop(trainer *t, epoch_run *e, long step, int *stop) {
    CLGQA_TRY(stop_requested(t, stop));
    int last_step = step + 1 == t->steps_per_epoch, requested = 0;
    if (!last_step)
        CLGQA_TRY(checkpoint_requested(t, &requested));
    int due = t->cfg.checkpoint_steps > 0 && t->state.global_step % t->cfg.checkpoint_steps == 0 &&
              !last_step;
    if (!*stop && !due && !requested)
        return CLGQA_OK;
    CLGQA_TRY(readback_take(t, &e->progress));
    CLGQA_TRY(save_mid_epoch(t, step + 1, e->next_batch, e->replicated ? &t->readback.held : NULL));
    if (requested && !*stop && !t->quiet) {
        if (e->progress.tty)
            fputc('\n', t->log);
        fprintf(t->log, "checkpoint requested: %s/last.safetensors holds epoch %d after step "
                "%ld/%ld; training goes on\n", t->cfg.out_dir, e->epoch + 1, step + 1,
                t->steps_per_epoch);
        log_check(t);
    }
    return CLGQA_OK;
}

/* The epoch's start: the loader at the resumed position, the running
 * metrics (a resumed rank 0 holds the sums over every rank), the progress
 * line and steps.csv's window. */
static clgqa_status epoch_begin(trainer *t, epoch_run *e) {
    const clgqa_metrics none = {0};
    const long first = t->state.epoch_steps;
    const int rank0 = clgqa_mpi_rank(t->mpi) == 0;
    /* Several ranks: every rank takes part in each report's metric sums, so
     * reports come on step counts (plain lines), never on a clock. */
    const long batches = (long)clgqa_loader_num_batches(t->train_loader);
    const long accum = t->cfg.grad_accum_steps;
    e->batches = t->steps_per_epoch * accum < batches ? t->steps_per_epoch * accum : batches;
    run_progress p = {t->log, isatty(fileno(t->log)) && !t->mpi, t->quiet, e->epoch,
                      t->cfg.epochs, t->steps_per_epoch, first, e->before.samples,
                      clgqa_clock_seconds(), clgqa_loader_wait_seconds(t->train_loader), 0, t->mpi,
                      clgqa_mpi_wait_seconds(t->mpi)};
    e->progress = p;
    CLGQA_TRY(clgqa_loader_start_at(t->train_loader, e->epoch, (size_t)e->next_batch));
    if (first > 0)
        CLGQA_TRY(clgqa_model_restore_metrics(t->model, rank0 ? &e->before : &none));
    else
        CLGQA_TRY(clgqa_model_reset_metrics(t->model));
    t->readback.taken = first > 0 && rank0 ? e->before : none;
    clgqa_step_log_epoch_start(&t->steps, clgqa_loader_wait_seconds(t->train_loader));
    t->steps.since = e->before;
    return CLGQA_OK;
}

/* The epoch's end (or its stop): the last step's readback, the epoch's
 * training metrics over every rank, and this call's counts. */
static clgqa_status epoch_end(trainer *t, epoch_run *e, clgqa_epoch_metrics *metrics,
                              long *images, double *seconds, double *wait_seconds, int stopped) {
    clgqa_metrics m;
    CLGQA_TRY(readback_take(t, &e->progress));
    CLGQA_TRY(epoch_metrics(t, e->replicated ? &t->readback.held : NULL, NULL, &m));
    if (e->progress.tty && !e->progress.quiet)
        fputc('\n', t->log);
    if (e->progress.quiet) /* set when a progress line could not be written */
        t->quiet = 1;
    log_check(t);
    *images += m.samples - e->before.samples;
    *seconds += clgqa_clock_seconds() - e->progress.started;
    *wait_seconds += clgqa_loader_wait_seconds(t->train_loader) - e->progress.wait_at_start;
    if (stopped)
        return CLGQA_OK;
    if (m.samples == 0)
        return clgqa_fail(CLGQA_ERR_NO_DATA, "epoch %d trained on no images", e->epoch + 1);
    metrics->train_loss = m.sum_loss / (double)m.samples;
    metrics->train_acc = m.sum_correct / (double)m.samples;
    metrics->train_acc5 = m.sum_top5 / (double)m.samples;
    return CLGQA_OK;
}

/* One micro-batch of optimizer step `step`: load, upload, its mix, forward
 * and the backward that adds its share (1 / (count * micro_batches) of
 * each loss) to the step's gradient; its losses are copied for the
 * divergence check at `losses_at`. */
static clgqa_status train_micro_batch(trainer *t, epoch_run *e, long step, int micro,
                                      int micro_batches, int losses_at, int *count) {
    const clgqa_config *cfg = &t->cfg;
    clgqa_batch batch;
    CLGQA_TRY(load_batch(t, e, step, &batch));
    clgqa_view pixels, labels;
    CLGQA_TRY(clgqa_batch_upload_next(t->upload, &batch, &pixels, &labels));
    /* timm's Mixup draws per batch, from (seed, MIXUP, micro-batch, step). */
    clgqa_train_batch train = {.label_weight = 1.0,
                               .first_sample = (long)micro * cfg->batch_size + batch.first,
                               .micro_batch = micro};
    clgqa_host_draws draws = {cfg->seed,
                              clgqa_stream_id(CLGQA_RNG_MIXUP, (uint32_t)micro,
                                              (uint64_t)t->state.global_step),
                              0};
    clgqa_mixup_draw(&t->mixup, &draws, cfg->img_size, &train.mix, &train.label_weight);
    const clgqa_pass pass = {CLGQA_PASS_TRAIN, step, t->state.global_step};
    CLGQA_TRY(clgqa_model_forward_train(t->model, pixels, labels, batch.count, cfg->norm_mean,
                                        cfg->norm_std, &pass, &train));
    step_readback *r = &t->readback;
    CLGQA_TRY(clgqa_model_copy_losses(t->model, batch.count,
                                      r->loss_halves[r->write_half] + losses_at, NULL));
    /* Only the cycle's last backward hands final gradients to MPI's buckets. */
    clgqa_model_defer_gradients(t->model, micro + 1 < micro_batches);
    CLGQA_TRY(clgqa_model_backward_scaled(t->model,
                                          1.0f / ((float)batch.count * (float)micro_batches),
                                          micro > 0));
    *count = batch.count;
    return CLGQA_OK;
}

/* One training epoch, from the step a resumed run stopped after; fills the
 * training half of `metrics`. Sets *stopped when a stop was requested (the
 * epoch's state is then in last.safetensors). An optimizer step is
 * grad_accum_steps micro-batches (the epoch's last step those left). */
static clgqa_status train_epoch(trainer *t, int epoch, clgqa_epoch_metrics *metrics,
                                long *images, double *seconds, double *wait_seconds, int *stopped) {
    const clgqa_config *cfg = &t->cfg;
    epoch_run e = {.epoch = epoch, .next_batch = t->state.next_batch,
                   .before = t->state.epoch_metrics};
    CLGQA_TRY(epoch_begin(t, &e));
    clgqa_adamw adamw = {cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay,
                         cfg->clip_grad_norm, cfg->no_weight_decay};
    for (long step = t->state.epoch_steps; step < t->steps_per_epoch; step++) {
        long left = e.batches - step * cfg->grad_accum_steps;
        int micro_batches = left < cfg->grad_accum_steps ? (int)left : cfg->grad_accum_steps;
        int step_images = 0;
        for (int micro = 0; micro < micro_batches; micro++) {
            int count = 0;
            CLGQA_TRY(train_micro_batch(t, &e, step, micro, micro_batches, step_images, &count));
            step_images += count;
        }
        CLGQA_TRY(clgqa_mpi_reduce_gradients(t->mpi));
        adamw.lr = clgqa_schedule_lr(cfg, t->state.global_step, t->total_steps);
        CLGQA_TRY(clgqa_model_step(t->model, &adamw, ++t->state.global_step));
        if (t->ema)
            CLGQA_TRY(clgqa_model_ema_update(t->model, cfg->model_ema_decay));
        t->steps_this_call++;
        t->rank_images += step_images;
        CLGQA_TRY(log_step(t, &e, step, step_images, adamw.lr));
        CLGQA_TRY(checkpoint_or_stop(t, &e, step, stopped));
        if (*stopped)
            break;
    }
    return epoch_end(t, &e, metrics, images, seconds, wait_seconds, *stopped);
}

/* The grouping state (DGQA cache and split) of every layer, so the EMA's
 * evaluation starts where the raw weights' did and training goes on from
 * where the raw weights' evaluation left it (evaluation updates DGQA's
 * cache, as the reference's eval mode). */
typedef struct grouping_state {
    float *cache;
    int32_t *counts;
} grouping_state;

static clgqa_status grouping_read(clgqa_model *model, grouping_state *g) {
    const clgqa_model_dims *d = clgqa_model_get_dims(model);
    size_t n = (size_t)d->num_layers * d->kv_heads;
    g->cache = malloc(n * sizeof *g->cache);
    g->counts = malloc(n * sizeof *g->counts);
    if (!g->cache || !g->counts)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "cannot allocate the grouping state");
    for (int l = 0; l < d->num_layers; l++)
        CLGQA_TRY(clgqa_model_read_grouping(model, l, g->cache + (size_t)l * d->kv_heads,
                                            g->counts + (size_t)l * d->kv_heads));
    return CLGQA_OK;
}

static clgqa_status grouping_write(clgqa_model *model, const grouping_state *g) {
    const clgqa_model_dims *d = clgqa_model_get_dims(model);
    for (int l = 0; l < d->num_layers; l++)
        CLGQA_TRY(clgqa_model_write_grouping(model, l, g->cache + (size_t)l * d->kv_heads,
                                             g->counts + (size_t)l * d->kv_heads));
    return CLGQA_OK;
}

static void grouping_free(grouping_state *g) {
    free(g->cache);
    free(g->counts);
}

/* The epoch's evaluations: the raw weights', and with an EMA the EMA's
 * from the same grouping state (then the raw evaluation's state is put
 * back for training). */
static clgqa_status evaluate_epoch(trainer *t, clgqa_eval_result *raw, clgqa_eval_result *ema) {
    const clgqa_config *cfg = &t->cfg;
    if (!t->ema)
        return evaluate_with(t->model, cfg, t->test_loader, t->upload, cfg->max_eval_batches,
                             NULL, t->mpi, raw);
    grouping_state before = {0}, after = {0};
    clgqa_status status = grouping_read(t->model, &before);
    if (status == CLGQA_OK)
        status = evaluate_with(t->model, cfg, t->test_loader, t->upload, cfg->max_eval_batches,
                               NULL, t->mpi, raw);
    if (status == CLGQA_OK)
        status = grouping_read(t->model, &after);
    if (status == CLGQA_OK)
        status = grouping_write(t->model, &before);
    if (status == CLGQA_OK)
        status = clgqa_model_ema_swap(t->model);
    if (status == CLGQA_OK) {
        status = evaluate_with(t->model, cfg, t->test_loader, t->upload, cfg->max_eval_batches,
                               NULL, t->mpi, ema);
        clgqa_status back = clgqa_model_ema_swap(t->model);
        if (status == CLGQA_OK)
            status = back;
    }
    if (status == CLGQA_OK)
        status = grouping_write(t->model, &after);
    grouping_free(&before);
    grouping_free(&after);
    return status;
}

/* A model file of the EMA's weights (swapped in for the write). */
static clgqa_status save_ema_model(trainer *t, const char *path) {
    CLGQA_TRY(clgqa_model_ema_swap(t->model));
    clgqa_status status = clgqa_checkpoint_save_model(t->model, path);
    clgqa_status back = clgqa_model_ema_swap(t->model);
    return status != CLGQA_OK ? status : back;
}

/* After epoch `epoch`'s training: its evaluation (and the EMA's), the
 * ranks' weight check, run.csv and groups.csv rows, the progress line,
 * best.safetensors when the test loss best_follows is the lowest so far,
 * and last.safetensors. */
static clgqa_status end_of_epoch(trainer *t, int epoch, clgqa_epoch_metrics *metrics) {
    const clgqa_config *cfg = &t->cfg;
    clgqa_eval_result eval, ema = {0};
    CLGQA_TRY(evaluate_epoch(t, &eval, &ema));
    metrics->test_loss = eval.loss;
    metrics->test_acc = eval.accuracy;
    metrics->test_acc5 = eval.top5;
    metrics->ema_test_loss = ema.loss;
    metrics->ema_test_acc = ema.accuracy;
    uint64_t weights_hash;
    CLGQA_TRY(clgqa_mpi_check_weights(t->mpi, t->model, &weights_hash));
    if (t->mpi && !t->quiet)
        fprintf(t->log, "epoch %d/%d: the %d ranks agree on the weights (hash %016llx)\n",
                epoch + 1, cfg->epochs, clgqa_mpi_ranks(t->mpi), (unsigned long long)weights_hash);
    const int files = clgqa_mpi_rank(t->mpi) == 0; /* the files are rank 0's */
    if (files) {
        CLGQA_TRY(run_log_groups(t->groups_csv, t->model, t->readback.group_counts, epoch, -1));
        fprintf(t->run_csv, "%d,%.6f,%.6f,%.6f,%.6f", epoch + 1, metrics->train_loss,
                metrics->train_acc, metrics->test_loss, metrics->test_acc);
        if (t->top5)
            fprintf(t->run_csv, ",%.6f,%.6f", metrics->train_acc5, metrics->test_acc5);
        if (t->ema)
            fprintf(t->run_csv, ",%.6f,%.6f", ema.loss, ema.accuracy);
        if (t->ema && t->top5)
            fprintf(t->run_csv, ",%.6f", ema.top5);
        fputc('\n', t->run_csv);
        if (fflush(t->run_csv) != 0)
            return clgqa_fail(CLGQA_ERR_IO, "cannot write run.csv: %s", strerror(errno));
    }
    if (!t->quiet) {
        char top5[64] = "", ema_text[128] = "";
        if (t->top5)
            snprintf(top5, sizeof top5, " top-5 %.2f%%", 100.0 * metrics->test_acc5);
        if (t->ema)
            snprintf(ema_text, sizeof ema_text, " | EMA test loss %.4f acc %.2f%%", ema.loss,
                     100.0 * ema.accuracy);
        fprintf(t->log, "epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%%%s%s "
                "(%ld images)\n", epoch + 1, cfg->epochs, metrics->train_loss,
                100.0 * metrics->train_acc, metrics->test_loss, 100.0 * metrics->test_acc, top5,
                ema_text, eval.samples);
    }
    log_check(t);
    /* best.pth of the reference: the epoch of lowest test loss, of the raw
     * weights or (best_follows: ema) of the EMA's. */
    const double followed = cfg->best_follows_ema ? ema.loss : eval.loss;
    if (followed < t->state.best_test_loss) {
        t->state.best_epoch = epoch + 1;
        t->state.best_test_loss = followed;
        if (cfg->save_model && files) {
            char path[1200];
            run_join_path(path, sizeof path, cfg->out_dir, "best.safetensors");
            CLGQA_TRY(cfg->best_follows_ema ? save_ema_model(t, path)
                                            : clgqa_checkpoint_save_model(t->model, path));
        }
    }
    t->state.epochs_done = epoch + 1;
    t->state.epoch_steps = t->state.next_batch = 0; /* left by mid-epoch checkpoints */
    memset(&t->state.epoch_metrics, 0, sizeof t->state.epoch_metrics);
    return save_last(t);
}

/* The run's end: model.safetensors once every epoch is done, and what the
 * result reports (counts over every rank). */
static clgqa_status end_of_run(trainer *t, int epochs_this_call, long images, double seconds,
                               double wait_seconds, clgqa_train_result *result) {
    const clgqa_config *cfg = &t->cfg;
    if (t->state.epochs_done == cfg->epochs && cfg->save_model && clgqa_mpi_rank(t->mpi) == 0) {
        char path[1200];
        run_join_path(path, sizeof path, cfg->out_dir, "model.safetensors");
        CLGQA_TRY(clgqa_checkpoint_save_model(t->model, path));
        if (t->ema) {
            run_join_path(path, sizeof path, cfg->out_dir, "ema.safetensors");
            CLGQA_TRY(save_ema_model(t, path));
        }
    }
    result->epochs_done = (int)t->state.epochs_done;
    result->global_step = t->state.global_step;
    result->stop_signal = t->stop_signal;
    result->epoch_steps = t->state.epoch_steps;
    result->steps_per_epoch = t->steps_per_epoch;
    result->best_epoch = (int)t->state.best_epoch;
    result->best_test_loss = t->state.best_test_loss;
    result->images_per_second = seconds > 0 ? (double)images / seconds : 0;
    result->data_wait_share = seconds > 0 ? wait_seconds / seconds : 0;
    /* The ranks' shards are disjoint: their counts add up. */
    long skipped[2] = {(long)clgqa_dataset_skipped(t->train_set),
                       (long)clgqa_dataset_skipped(t->test_set)};
    CLGQA_TRY(clgqa_mpi_sum_longs(t->mpi, skipped, 2));
    result->skipped_images = (size_t)(skipped[0] + skipped[1]);
    if (cfg->skip_unreadable)
        fprintf(t->log, "skipped %zu unreadable images (%ld training, %ld test)\n",
                result->skipped_images, skipped[0], skipped[1]);
    if (t->mpi && !t->quiet)
        fprintf(t->rank_log, "rank %d of %d: trained on %ld images in %d epochs\n",
                clgqa_mpi_rank(t->mpi), clgqa_mpi_ranks(t->mpi), t->rank_images, epochs_this_call);
    return CLGQA_OK;
}

static clgqa_status trainer_run(trainer *t, clgqa_train_result *result) {
    const clgqa_config *cfg = &t->cfg;
    long images = 0;
    double seconds = 0, wait_seconds = 0;
    int epochs_this_call = 0;
    memset(result, 0, sizeof *result);
    for (int epoch = (int)t->state.epochs_done; epoch < cfg->epochs; epoch++) {
        clgqa_epoch_metrics metrics;
        CLGQA_TRY(train_epoch(t, epoch, &metrics, &images, &seconds, &wait_seconds,
                              &result->stopped));
        if (result->stopped)
            break;
        CLGQA_TRY(end_of_epoch(t, epoch, &metrics));
        result->last = metrics;
        epochs_this_call++;
        if (t->extras && t->extras->stop_after_epochs > 0 &&
            epochs_this_call >= t->extras->stop_after_epochs)
            break;
        int stop;
        CLGQA_TRY(stop_requested(t, &stop));
        if (epoch + 1 < cfg->epochs && stop) { /* came during the evaluation */
            result->stopped = 1;
            break;
        }
    }
    if (epochs_this_call == 0 && !result->stopped) { /* resumed a finished run: report its test figures */
        clgqa_eval_result eval;
        CLGQA_TRY(evaluate_with(t->model, cfg, t->test_loader, t->upload, cfg->max_eval_batches,
                                NULL, t->mpi, &eval));
        result->last.test_loss = eval.loss;
        result->last.test_acc = eval.accuracy;
    }
    return end_of_run(t, epochs_this_call, images, seconds, wait_seconds, result);
}

clgqa_status clgqa_train_with(clgqa_runtime *rt, const clgqa_config *cfg,
                              const clgqa_train_options *options, const clgqa_train_extras *extras,
                              clgqa_train_result *result) {
    static const clgqa_train_options no_options;
    trainer t;
    memset(&t, 0, sizeof t);
    t.rt = rt;
    t.cfg = *cfg;
    t.options = options ? options : &no_options;
    t.extras = extras;
    t.quiet = (t.options->flags & CLGQA_TRAIN_QUIET) != 0;
    t.rank_log = t.options->log ? t.options->log : stderr;
    t.log = t.rank_log;
    t.mpi = extras ? extras->mpi : NULL;
    if (clgqa_mpi_rank(t.mpi) != 0 && !(t.log = fopen("/dev/null", "w")))
        return clgqa_fail(CLGQA_ERR_IO, "cannot open /dev/null: %s", strerror(errno));
    t.state.best_test_loss = INFINITY; /* a resumed run reads its own */
    t.lock_fd = -1;
    memset(result, 0, sizeof *result);
    clgqa_status status = trainer_open(&t);
    if (status == CLGQA_OK && !(t.options->flags & CLGQA_TRAIN_DRY_RUN))
        status = trainer_run(&t, result);
    trainer_free(&t);
    return status;
}

clgqa_status clgqa_train(clgqa_runtime *rt, const clgqa_config *cfg,
                         const clgqa_train_options *options, clgqa_train_result *result) {
    return clgqa_train_with(rt, cfg, options, NULL, result);
}
