/* The `clgqa` command: dispatches to the sub-commands. */
#include <stdio.h>
#include <string.h>

#include "clgqa/error.h"
#include "commands.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"devices", clgqa_cmd_devices, "list OpenCL devices"},
    {"bench", clgqa_cmd_bench, "train-step and inference speed per attention scheme"},
    {"train", clgqa_cmd_train, "train a ViT (a YAML config, or the embedded default)"},
    {"eval", clgqa_cmd_eval, "evaluate a checkpoint on the test split"},
    {"convert", clgqa_cmd_convert, "convert a timm or reference checkpoint to a config"},
    {"plot", clgqa_cmd_plot, "pictures of a run: training curves and group allocation (matplotlib)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: clgqa COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nThe device is chosen by --device, else the config's device key, else "
                 "CLGQA_DEVICE: an index, 'gpu', 'cpu' or part of a device name (README, "
                 "Environment).\n");
}

int clgqa_cli_error(const char *context) {
    fprintf(stderr, "clgqa: %s%s%s\n", context ? context : "", context ? ": " : "",
            clgqa_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "clgqa: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
