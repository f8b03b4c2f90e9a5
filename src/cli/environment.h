/* The environment variables of `clgqa` (README, "Environment"), read here
 * and nowhere in the library: the library takes clgqa_runtime_options. The
 * tests read the same variables through this file, so CLGQA_DEVICE and the
 * path knobs steer them as they steer the command. */
#ifndef CLGQA_CLI_ENVIRONMENT_H
#define CLGQA_CLI_ENVIRONMENT_H

#include "clgqa/runtime.h"

typedef struct cli_environment {
    clgqa_runtime_options options; /* its strings point into the environment or below */
    char cache_dir[1024];
} cli_environment;

/* The runtime options of the environment:
 *   CLGQA_DEVICE           options.device
 *   CLGQA_DEVICE_CLASS     options.device_class    (auto | cpu | gpu)
 *   CLGQA_ATTENTION        options.attention_kernel (auto | rows | tiled)
 *   CLGQA_GEMM             options.gemm_kernel     (auto | direct | indirect)
 *   CLGQA_CACHE_DIR        options.cache_dir; unset: $XDG_CACHE_HOME/clgqa or
 *                          ~/.cache/clgqa; "off": no cache
 *   CLGQA_BUILD_OPTIONS    options.build_options
 *   CLGQA_BUILD_LOG        options.build_log
 *   CLGQA_TUNING_DIR       options.tuning_dir
 *   CLGQA_MAX_ALLOC_BYTES  options.max_alloc_bytes (a byte count >= 4096)
 *   CLGQA_GEMM_SPLIT       options.gemm_split (auto, or chunks from 1 to 1024)
 * A value it cannot take is refused with a message naming the variable. */
clgqa_status cli_read_environment(cli_environment *env);

/* Whether this process was started by an MPI launcher: mpirun sets
 * OMPI_COMM_WORLD_RANK, PMIx launchers PMIX_RANK, PMI-1/2 ones PMI_RANK. */
int cli_launched_by_mpi(void);

#endif
