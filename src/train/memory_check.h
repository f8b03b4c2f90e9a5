/* The memory a training run needs, estimated before anything is allocated,
 * and the check that refuses a run that cannot fit (README "Stopping and
 * resuming", configs/README.md): a model too large for the device would
 * otherwise grow until the driver fails or the kernel's out-of-memory killer
 * ends the process without a word.
 *
 * The estimate adds up what the trainer allocates: the model's four flat
 * buffers (parameters, gradients, AdamW's two moments), its activation arena
 * at the rank's batch (clgqa_model_memory_estimate, the arena's own sizing),
 * CLBlast's GEMM workspace for the largest product, the batch slots and the
 * small rest on the device; on the host, the loaders' rings, the copies a
 * training checkpoint gathers (weights and both moments), the model's tables
 * and what the driver holds for a step's queued commands. A run is refused
 * when
 *   - the device part exceeds MEMORY_SHARE (90%) of the device's global
 *     memory (CL_DEVICE_GLOBAL_MEM_SIZE);
 *   - the host part (and on a CPU device, whose buffers are host memory, the
 *     device part too) exceeds 90% of the memory the host has available
 *     (MemAvailable);
 *   - under an address-space limit (ulimit -v), that plus what the process
 *     maps already and an allowance for the OpenCL compiler exceeds it. */
#ifndef CLGQA_MEMORY_CHECK_H
#define CLGQA_MEMORY_CHECK_H

#include <stdio.h>

#include "config_internal.h"
#include "host_memory.h"

typedef struct clgqa_memory_estimate {
    int batch;                 /* the rank's batch the activations are sized for */
    size_t flat_bytes;         /* one flat buffer (the model has four, five with the EMA) */
    int flat_buffers;          /* 4, or 5 with the weights' EMA (model_ema_decay) */
    size_t activation_bytes;   /* the activation arena */
    size_t saved_bytes;        /* of it, the blocks' activations saved for backward */
    clgqa_precision precision; /* the config's: half activations under 16-mixed */
    size_t gemm_bytes;         /* CLBlast's workspace for the largest product */
    size_t other_device_bytes; /* batch slots, step readback, grouping state, tables */
    size_t device_bytes;       /* the sum of the above, the flat buffers four times */
    size_t loader_bytes;       /* the training and test loaders' rings (host) */
    size_t checkpoint_bytes;   /* a training checkpoint's host copies */
    size_t driver_bytes;       /* the model's host tables, the driver's queued commands */
    size_t host_bytes;         /* all of the host's (+ device_bytes on a CPU device) */
    int cpu_device;            /* the device's buffers are host memory */
    size_t device_memory;      /* CL_DEVICE_GLOBAL_MEM_SIZE */
    clgqa_host_memory host;
} clgqa_memory_estimate;

/* The largest batch one rank's model holds: its shard of the global batch,
 * or a whole batch smaller than the ranks (replicated). */
int clgqa_rank_batch(const clgqa_config *cfg, int ranks);

/* The estimate for training cfg (num_classes filled in) on rt with `ranks`
 * ranks. */
clgqa_status clgqa_memory_estimate_run(clgqa_runtime *rt, const clgqa_config *cfg, int ranks,
                                       clgqa_memory_estimate *out);
/* The estimate, one item a line, and what there is to hold it. */
void clgqa_memory_estimate_print(const clgqa_memory_estimate *e, const char *device_name,
                                 FILE *out);
/* CLGQA_ERR_OUT_OF_MEMORY, one line saying what does not fit and by how
 * much, when the run would not fit; CLGQA_OK when it would. */
clgqa_status clgqa_memory_check(const clgqa_memory_estimate *e, const char *device_name);

#endif
