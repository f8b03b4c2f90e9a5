/* Data-parallel training over MPI: `mpirun -np N clgqa train CONFIG` runs N
 * ranks, one per device, that stay identical to one process training on the
 * same global batch (README "Several GPUs and machines").
 *
 *   - Every global batch of batch_size images is split into N contiguous
 *     shards, one per rank, in the epoch order and with the augmentation
 *     draws of the whole batch (clgqa_loader_shard).
 *   - KDGQA and DGQA sum the key norms of every layer over the ranks before
 *     the grouping reads them (a clgqa_model_hooks hook), so every rank takes
 *     the grouping of the whole batch.
 *   - The backward pass hands the gradient buffer over in buckets (the head,
 *     each block, the embeddings) as it finishes them; each bucket is read to
 *     the host and summed over the ranks with MPI_Allreduce while the device
 *     goes on with the rest of the backward. Each rank's gradient (the mean
 *     over its shard) is weighted by its share of the batch, so the sum is
 *     the mean over the whole batch. The sum is written back before AdamW.
 *   - Every random stream is keyed by (seed, epoch, step), never by rank, so
 *     PGQA noise and DGQA fix-ups are drawn alike everywhere.
 *
 * Failures: a refusal every rank reaches alike (a batch not divisible by the
 * ranks, ranks sharing a device, a resume with another rank count) is
 * recorded with clgqa_mpi_refuse and ends every rank cleanly with one line
 * from rank 0; any other failure of one rank aborts the whole job
 * (MPI_Abort) with one line naming the rank and the cause.
 *
 * Built without MPI (cmake -DCLGQA_MPI=OFF, or no MPI found), clgqa_mpi_init
 * refuses a launch of several ranks and the rest is never reached. Every
 * function takes a NULL context as "one process". */
#ifndef CLGQA_MPI_RANKS_H
#define CLGQA_MPI_RANKS_H

#include <stdint.h>
#include <stdio.h>

#include "clgqa/dataset.h"
#include "clgqa/error.h"
#include "model_private.h"
#include "clgqa/runtime.h"
#include "fail.h"

typedef struct clgqa_mpi clgqa_mpi;

/* How this process was started (the command asks its environment). */
typedef enum clgqa_launch { CLGQA_LAUNCH_ALONE = 0, CLGQA_LAUNCH_MPI } clgqa_launch;
/* Joins the job when this process was started by an MPI launcher; started
 * alone, *out is NULL and the program runs as one process. */
clgqa_status clgqa_mpi_init(clgqa_launch launch, clgqa_mpi **out);
/* Whether this build has MPI (clgqa --version). */
int clgqa_mpi_built(void);
/* Leaves the job (MPI_Finalize) and frees the context. */
void clgqa_mpi_finalize(clgqa_mpi *mpi);

int clgqa_mpi_rank(const clgqa_mpi *mpi);  /* 0 for NULL */
int clgqa_mpi_ranks(const clgqa_mpi *mpi); /* 1 for NULL */

/* Fail with a message every rank reaches alike (see above). */
clgqa_status clgqa_mpi_refuse(clgqa_mpi *mpi, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ends this rank after a failure (clgqa_error_message()) and returns the
 * exit status: a refusal (or `everywhere`: a failure every rank reached
 * alike) prints one line from rank 0 and leaves the job cleanly; anything
 * else prints "clgqa: rank R of N (host): <message>" and aborts the job.
 * For NULL: prints "clgqa: <message>" and returns 1. */
int clgqa_mpi_fail(clgqa_mpi *mpi, int everywhere);

/* The device spec this rank opens, from the config's `device` (one spec, or
 * a list kept joined by commas). One process: the spec, or a list's first
 * item. Several ranks: the local rank (rank within the node) picks the
 * list's item, or else the local-rank-th device the spec matches
 * (clgqa_runtime_match_devices; "": the node's GPUs, else PoCL's CPU
 * device, else device 0), as a device index;
 * more ranks than devices wrap around (and clgqa_mpi_check_devices refuses
 * the sharing unless it is allowed). */
clgqa_status clgqa_mpi_device_spec(const clgqa_mpi *mpi, const char *spec, char *out,
                                   size_t size);
/* Refuses two ranks of a node on one device unless allow_shared. */
clgqa_status clgqa_mpi_check_devices(clgqa_mpi *mpi, const clgqa_runtime *rt, int allow_shared);
/* One line on `log` saying this rank's host, device and shard of a global
 * batch of batch_size. */
void clgqa_mpi_describe(const clgqa_mpi *mpi, const clgqa_runtime *rt, int batch_size, FILE *log);

/* Installs the model hooks (key norms, gradient buckets) and the host
 * staging of the gradient buffer. */
clgqa_status clgqa_mpi_attach(clgqa_mpi *mpi, clgqa_runtime *rt, clgqa_model *model);
/* Before each forward pass: the batch this rank got from its sharded loader.
 * In training a gradient will follow (its weight, count / the ranks' total,
 * is agreed here). A replicated batch (fewer images than ranks) is whole on
 * every rank: no key-norm sum, and only rank 0's gradient counts. */
clgqa_status clgqa_mpi_begin_pass(clgqa_mpi *mpi, const clgqa_batch *batch, clgqa_pass_mode mode);
/* After clgqa_model_backward: sums the buckets over the ranks and enqueues
 * the write of the sum into the gradient buffer. */
clgqa_status clgqa_mpi_reduce_gradients(clgqa_mpi *mpi);
/* Sums loss, correct and sample counts over the ranks. */
clgqa_status clgqa_mpi_sum_metrics(clgqa_mpi *mpi, clgqa_metrics *metrics);
/* Sums counts over the ranks (in place). */
clgqa_status clgqa_mpi_sum_longs(clgqa_mpi *mpi, long *values, int count);
/* The largest of the ranks' values (in place). */
clgqa_status clgqa_mpi_max_long(clgqa_mpi *mpi, long *value);
/* Refuses unless every rank has the same weights; *hash gets their hash
 * (FNV-1a of the parameter bytes; 0 for one process, which has nothing to
 * compare). */
clgqa_status clgqa_mpi_check_weights(clgqa_mpi *mpi, clgqa_model *model, uint64_t *hash);
/* Benchmark (clgqa bench --allreduce): the least time over `repeats`
 * rounds (each round timed by its slowest rank) to sum, over every rank, a
 * host float buffer in the given buckets, one MPI_Allreduce each, as
 * training does. */
clgqa_status clgqa_mpi_time_allreduce(clgqa_mpi *mpi, const size_t *bucket_floats, int buckets,
                                      int repeats, double *seconds);
/* Seconds this rank has spent waiting on sums over the ranks (the gradient
 * sums not hidden behind the backward pass, key norms, metrics). */
double clgqa_mpi_wait_seconds(const clgqa_mpi *mpi);

#endif
