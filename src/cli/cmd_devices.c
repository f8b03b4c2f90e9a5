/* clgqa devices: list every OpenCL device with its index. */
#include <stdio.h>

#include "clgqa/runtime.h"
#include "commands.h"

int clgqa_cmd_devices(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: clgqa devices\n");
        return 2;
    }
    if (clgqa_list_devices(stdout) != CLGQA_OK)
        return clgqa_cli_error(NULL);
    return 0;
}
