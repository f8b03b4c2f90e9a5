/* Command-line arguments of the config-driven commands (train, eval,
 * convert): CONFIG.yaml (or -c/--config CONFIG.yaml), repeatable --set
 * key=value, --KEY VALUE for every config key (--label_smoothing 0.1, also
 * spelled --label-smoothing, as timm's flags), --device SPEC, and each
 * command's own options. Every option that takes a value takes it as the
 * next argument or after '=' (--resume=DIR, --lr=1e-3). */
#ifndef CLGQA_CLI_CONFIG_ARGS_H
#define CLGQA_CLI_CONFIG_ARGS_H

#define CLGQA_CLI_MAX_SETS 64

typedef struct cli_option {
    const char *flag;   /* "--resume" */
    const char **value; /* receives the argument after it */
    const char *what;   /* what the value is, for messages ("a run folder") */
} cli_option;

/* An option without a value ("--overwrite"): *on becomes 1. */
typedef struct cli_switch {
    const char *flag;
    int *on;
} cli_switch;

typedef struct cli_config_args {
    const char *config_path;
    const char *device; /* NULL: the config's device */
    const char *sets[CLGQA_CLI_MAX_SETS]; /* "key=value", --set's and --KEY's in order */
    int set_count;
    char set_text[CLGQA_CLI_MAX_SETS][1200]; /* "key=value" made of a --KEY VALUE */
} cli_config_args;

/* Parses argv[1..] (argv[0] is the command name). Returns -1 when the command
 * should go on, else the exit status to return: 0 after --help (usage on
 * stdout), 2 for a usage error (one line on stderr, then the usage): an
 * unknown option, an option without its value or with an empty one, a
 * second CONFIG.yaml, a value given to an option that takes none. `usage` is the text after "usage: ". Without
 * config_optional a missing CONFIG.yaml is a usage error; with it,
 * config_path stays NULL. */
int clgqa_cli_parse_config_args(const char *usage, int argc, char **argv,
                                const cli_option *options, int option_count,
                                const cli_switch *switches, int switch_count,
                                int config_optional, cli_config_args *out);

/* The runtime a config asks for: the device (--device SPEC, else the
 * config's device key, else $CLGQA_DEVICE; under mpirun, this rank's) and
 * the code paths (device_class, attention_kernel, gemm_kernel, else the
 * environment's). Returns 0, or -1 with the message recorded. */
typedef struct clgqa_config clgqa_config;
typedef struct clgqa_runtime clgqa_runtime;
typedef struct clgqa_mpi clgqa_mpi;
int clgqa_cli_open_runtime(const clgqa_config *cfg, clgqa_mpi *mpi, const char *device,
                           clgqa_runtime **rt);

/* Print "usage: <usage>" on stderr; returns 2. */
int clgqa_cli_usage(const char *usage);

#endif
