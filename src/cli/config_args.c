#include "config_args.h"

#include "config_internal.h"
#include "environment.h"
#include "mpi_ranks.h"

#include <stdio.h>
#include <string.h>

int clgqa_cli_usage(const char *usage) {
    fprintf(stderr, "usage: %s\n", usage);
    return 2;
}

/* The value after option argv[*i], or NULL after a usage line saying it is
 * missing or empty. */
static const char *option_value(const char *command, int argc, char **argv, int *i,
                                const char *what) {
    const char *flag = argv[*i];
    if (*i + 1 >= argc) {
        fprintf(stderr, "clgqa %s: %s needs a value (%s)\n", command, flag, what);
        return NULL;
    }
    const char *value = argv[++*i];
    if (!value[0]) {
        fprintf(stderr, "clgqa %s: %s needs a value (%s), not an empty string\n", command, flag,
                what);
        return NULL;
    }
    return value;
}

int clgqa_cli_parse_config_args(const char *usage, int argc, char **argv,
                                const cli_option *options, int option_count,
                                const cli_switch *switches, int switch_count,
                                int config_optional, cli_config_args *out) {
    memset(out, 0, sizeof *out);
    const char *command = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int matched = 0;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            printf("usage: %s\n", usage);
            return 0;
        }
        if (!strcmp(arg, "--set")) {
            if (out->set_count == CLGQA_CLI_MAX_SETS) {
                fprintf(stderr, "clgqa %s: more than %d --set options\n", command,
                        CLGQA_CLI_MAX_SETS);
                return 2;
            }
            const char *value = option_value(command, argc, argv, &i, "key=value");
            if (!value)
                return clgqa_cli_usage(usage);
            out->sets[out->set_count++] = value;
            continue;
        }
        if (!strcmp(arg, "--device")) {
            out->device = option_value(command, argc, argv, &i,
                                       "an index, gpu, cpu or part of a device name");
            if (!out->device)
                return clgqa_cli_usage(usage);
            continue;
        }
        for (int o = 0; o < option_count && !matched; o++)
            if (!strcmp(arg, options[o].flag)) {
                if (!(*options[o].value = option_value(command, argc, argv, &i, options[o].what)))
                    return clgqa_cli_usage(usage);
                matched = 1;
            }
        for (int s = 0; s < switch_count && !matched; s++)
            if (!strcmp(arg, switches[s].flag)) {
                *switches[s].on = 1;
                matched = 1;
            }
        if (matched)
            continue;
        if (arg[0] == '-' || out->config_path) {
            fprintf(stderr, "clgqa %s: unexpected argument '%s'\n", command, arg);
            return clgqa_cli_usage(usage);
        }
        out->config_path = arg;
    }
    if (!out->config_path && !config_optional)
        return clgqa_cli_usage(usage);
    return -1;
}

int clgqa_cli_open_runtime(const clgqa_config *cfg, clgqa_mpi *mpi, const char *device,
                           clgqa_runtime **rt) {
    *rt = NULL;
    /* The device: --device, else the config's, else $CLGQA_DEVICE (a rank
     * takes its own from a list, or from the devices a spec matches); the
     * code paths: the config's unless "auto", else the environment's. */
    cli_environment env;
    if (cli_read_environment(&env) != CLGQA_OK)
        return -1;
    clgqa_config_runtime_options(cfg, &env.options);
    const char *wanted = device && *device        ? device
                         : cfg->device[0]         ? cfg->device
                         : env.options.device     ? env.options.device
                                                  : "";
    char spec[sizeof cfg->device];
    if (clgqa_mpi_device_spec(mpi, wanted, spec, sizeof spec) != CLGQA_OK)
        return -1;
    env.options.device = spec;
    return clgqa_runtime_create(&env.options, rt) == CLGQA_OK ? 0 : -1;
}
