/* Files embedded into the library at build time (cmake/embed_files.cmake). */
#ifndef CLGQA_EMBEDDED_FILES_H
#define CLGQA_EMBEDDED_FILES_H

typedef struct clgqa_embedded_file {
    const char *name; /* file name without extension */
    const char *text;
} clgqa_embedded_file;

/* Each table is terminated by {0, 0}. */
/* src/ops/<family>.cl, plus "prelude" (Random123 Philox flattened for OpenCL
 * C) and "storage" (src/ops/storage.h, the activation storage macros), which
 * are prepended to every program. */
extern const clgqa_embedded_file clgqa_kernel_sources[];
/* The JSON files of tuning/: CLBlast tuner results applied at start-up. */
extern const clgqa_embedded_file clgqa_tuning_files[];
/* configs/demo.yaml ("demo"): the configuration of `clgqa train` without a file. */
extern const clgqa_embedded_file clgqa_config_files[];
/* The Python scripts of src/cli, in the clgqa program only: "plot" (clgqa plot). */
extern const clgqa_embedded_file clgqa_cli_scripts[];

#endif
