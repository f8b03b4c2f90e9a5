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

/* One option as given: its flag ("--resume"), and its value when given
 * after '=' in the same argument ("--resume=DIR"). */
typedef struct given_option {
    char flag[128];
    const char *inline_value; /* NULL: none in the argument */
} given_option;

static void split_option(const char *arg, given_option *opt) {
    const char *eq = arg[0] == '-' && arg[1] == '-' ? strchr(arg, '=') : NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= sizeof opt->flag)
        len = sizeof opt->flag - 1; /* no flag is that long: it stays unknown */
    memcpy(opt->flag, arg, len);
    opt->flag[len] = '\0';
    opt->inline_value = eq ? eq + 1 : NULL;
}

/* The value of option `opt` (argv[*i]): after its '=', else the next
 * argument; NULL after a line saying it is missing or empty. */
static const char *option_value(const char *command, const given_option *opt, int argc,
                                char **argv, int *i, const char *what) {
    const char *value = opt->inline_value;
    if (!value) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "clgqa %s: %s needs a value (%s)\n", command, opt->flag, what);
            return NULL;
        }
        value = argv[++*i];
    }
    if (!value[0]) {
        fprintf(stderr, "clgqa %s: %s needs a value (%s), not an empty string\n", command,
                opt->flag, what);
        return NULL;
    }
    return value;
}

/* The config key a --KEY option names (hyphens read as underscores), or 0. */
static int config_key_option(const char *flag, char *key, size_t size) {
    if (strncmp(flag, "--", 2) || !flag[2] || strlen(flag + 2) >= size)
        return 0;
    snprintf(key, size, "%s", flag + 2);
    for (char *p = key; *p; p++)
        if (*p == '-')
            *p = '_';
    return clgqa_config_has_key(key);
}

static int add_set(const char *command, cli_config_args *out, const char *key_value) {
    if (out->set_count == CLGQA_CLI_MAX_SETS) {
        fprintf(stderr, "clgqa %s: more than %d --set and --KEY options\n", command,
                CLGQA_CLI_MAX_SETS);
        return 0;
    }
    out->sets[out->set_count++] = key_value;
    return 1;
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
        given_option opt;
        split_option(arg, &opt);
        if (!strcmp(opt.flag, "-c") || !strcmp(opt.flag, "--config")) {
            const char *path = option_value(command, &opt, argc, argv, &i, "a YAML config file");
            if (!path)
                return clgqa_cli_usage(usage);
            if (out->config_path) {
                fprintf(stderr, "clgqa %s: a second config '%s' (the first is '%s')\n", command,
                        path, out->config_path);
                return clgqa_cli_usage(usage);
            }
            out->config_path = path;
            continue;
        }
        if (!strcmp(opt.flag, "--set")) {
            const char *value = option_value(command, &opt, argc, argv, &i, "key=value");
            if (!value || !add_set(command, out, value))
                return clgqa_cli_usage(usage);
            continue;
        }
        if (!strcmp(opt.flag, "--device")) {
            out->device = option_value(command, &opt, argc, argv, &i,
                                       "an index, gpu, cpu or part of a device name");
            if (!out->device)
                return clgqa_cli_usage(usage);
            continue;
        }
        for (int o = 0; o < option_count && !matched; o++)
            if (!strcmp(opt.flag, options[o].flag)) {
                if (!(*options[o].value =
                          option_value(command, &opt, argc, argv, &i, options[o].what)))
                    return clgqa_cli_usage(usage);
                matched = 1;
            }
        for (int s = 0; s < switch_count && !matched; s++)
            if (!strcmp(opt.flag, switches[s].flag)) {
                if (opt.inline_value) {
                    fprintf(stderr, "clgqa %s: %s takes no value\n", command, opt.flag);
                    return clgqa_cli_usage(usage);
                }
                *switches[s].on = 1;
                matched = 1;
            }
        if (matched)
            continue;
        /* --KEY VALUE or --KEY=VALUE: the same as --set KEY=VALUE. */
        char key[64];
        if (config_key_option(opt.flag, key, sizeof key)) {
            const char *value = option_value(command, &opt, argc, argv, &i, "the key's value");
            if (!value)
                return clgqa_cli_usage(usage);
            char *text = out->set_text[out->set_count < CLGQA_CLI_MAX_SETS ? out->set_count : 0];
            snprintf(text, sizeof out->set_text[0], "%s=%s", key, value);
            if (!add_set(command, out, text))
                return clgqa_cli_usage(usage);
            continue;
        }
        if (arg[0] == '-') {
            fprintf(stderr, "clgqa %s: unexpected argument '%s'\n", command, arg);
            return clgqa_cli_usage(usage);
        }
        if (out->config_path) {
            fprintf(stderr, "clgqa %s: a second config '%s' (the first is '%s')\n", command, arg,
                    out->config_path);
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
