/* The `clgqa` command: dispatches to the sub-commands. */
#include <clblast_c.h>
#include <stdio.h>
#include <string.h>

#include "clgqa/error.h"
#include "commands.h"
#include "mpi_ranks.h"

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

/* clgqa --version: the library's version, the CLBlast it was built
 * against and the build's options (no device needed). */
static int version(void) {
    printf("clgqa %s\n", clgqa_version());
    printf("CLBlast %d.%d.%d (the headers built against)\n", CLBLAST_VERSION_MAJOR,
           CLBLAST_VERSION_MINOR, CLBLAST_VERSION_PATCH);
    printf("build: %s, %s; MPI data parallelism %s; sanitizers %s; kernels OpenCL C 1.2\n",
           CLGQA_BUILD_TYPE, CLGQA_COMPILER, clgqa_mpi_built() ? "on" : "off",
           CLGQA_SANITIZERS);
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: clgqa COMMAND [ARGS]   (clgqa --version: the version and build)\n\ncommands:\n");
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
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
        return version();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "clgqa: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
