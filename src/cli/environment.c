/* The environment of `clgqa` into runtime options (environment.h). */
#include "environment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"

/* $name, NULL when unset or empty. */
static const char *variable(const char *name) {
    const char *value = getenv(name);
    return value && *value ? value : NULL;
}

/* A refusal of the parser's, with the variable named in front. */
static clgqa_status named(clgqa_status status, const char *name) {
    return status == CLGQA_OK ? status : clgqa_fail_context(status, "%s", name);
}

clgqa_status cli_read_environment(cli_environment *env) {
    memset(env, 0, sizeof *env);
    clgqa_runtime_options *o = &env->options;
    o->device = variable("CLGQA_DEVICE");
    const char *value;
    if ((value = variable("CLGQA_DEVICE_CLASS")))
        CLGQA_TRY(named(clgqa_device_class_parse(value, &o->device_class), "CLGQA_DEVICE_CLASS"));
    if ((value = variable("CLGQA_ATTENTION")))
        CLGQA_TRY(named(clgqa_attention_kernel_parse(value, &o->attention_kernel),
                        "CLGQA_ATTENTION"));
    if ((value = variable("CLGQA_GEMM")))
        CLGQA_TRY(named(clgqa_gemm_kernel_parse(value, &o->gemm_kernel), "CLGQA_GEMM"));

    const char *cache = variable("CLGQA_CACHE_DIR"), *xdg = variable("XDG_CACHE_HOME"),
               *home = variable("HOME");
    if (cache && strcmp(cache, "off") != 0)
        snprintf(env->cache_dir, sizeof env->cache_dir, "%s", cache);
    else if (!cache && xdg)
        snprintf(env->cache_dir, sizeof env->cache_dir, "%s/clgqa", xdg);
    else if (!cache && home)
        snprintf(env->cache_dir, sizeof env->cache_dir, "%s/.cache/clgqa", home);
    o->cache_dir = env->cache_dir[0] ? env->cache_dir : NULL;

    o->build_options = variable("CLGQA_BUILD_OPTIONS");
    o->build_log = variable("CLGQA_BUILD_LOG");
    o->tuning_dir = variable("CLGQA_TUNING_DIR");
    if ((value = variable("CLGQA_GEMM_SPLIT")) && strcmp(value, "auto") != 0) {
        char *end;
        unsigned long long chunks = strtoull(value, &end, 10);
        if (*end || value[0] == '-' || chunks < 1 || chunks > 1024)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                              "CLGQA_GEMM_SPLIT=%s is not auto or a chunk count from 1 to 1024",
                              value);
        o->gemm_split = (size_t)chunks;
    }
    if ((value = variable("CLGQA_MAX_ALLOC_BYTES"))) {
        char *end;
        unsigned long long bytes = strtoull(value, &end, 10);
        if (*end || bytes < 4096)
            return clgqa_fail(CLGQA_ERR_INVALID_ARG,
                              "CLGQA_MAX_ALLOC_BYTES=%s is not a byte count of at least 4096",
                              value);
        o->max_alloc_bytes = (size_t)bytes;
    }
    return CLGQA_OK;
}

int cli_launched_by_mpi(void) {
    static const char *const rank_variables[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof rank_variables / sizeof rank_variables[0]; i++)
        if (getenv(rank_variables[i]))
            return 1;
    return 0;
}
