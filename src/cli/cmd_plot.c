/* clgqa plot RUN_DIR [--out DIR] [--csv]
 * clgqa plot --compare DIR [--out DIR] [--csv]
 * clgqa plot --uptrain DIR [--out DIR] [--csv]
 * Pictures of a training run (curves.png, groups.png), of a scripts/compare
 * folder (compare.png) or of a scripts/uptrain folder (uptrain.png), drawn by
 * matplotlib: the embedded src/cli/plot.py
 * runs under /usr/bin/python3 (CLGQA_PYTHON overrides), so the command works
 * from a build tree and an installed binary alike. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "embedded_files.h"

static const char usage[] =
    "usage: clgqa plot RUN_DIR [--out DIR] [--csv]\n"
    "       clgqa plot --compare DIR [--out DIR] [--csv]\n"
    "       clgqa plot --uptrain DIR [--out DIR] [--csv]\n"
    "  RUN_DIR: a training run's out_dir; writes curves.png and groups.png there (or in --out)\n"
    "  --compare DIR: a scripts/compare folder; writes compare.png\n"
    "  --uptrain DIR: a scripts/uptrain folder; writes uptrain.png\n"
    "  --csv: also plot.csv, every plotted series (figure,panel,series,x,y)\n";

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_file(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

static const char *plot_script(void) {
    for (const clgqa_embedded_file *f = clgqa_cli_scripts; f->name; f++)
        if (!strcmp(f->name, "plot"))
            return f->text;
    return NULL;
}

/* Runs `python - argv...` with the script on its standard input; returns its
 * exit status (its own messages are on stderr). */
static int run_python(const char *python, const char *script, char *const args[]) {
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "clgqa plot: pipe failed: %s\n", strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "clgqa plot: fork failed: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        dup2(fds[0], STDIN_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(python, args);
        fprintf(stderr, "clgqa plot: cannot run %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN); /* python gone early: its status says why */
    size_t left = strlen(script);
    while (left > 0) {
        ssize_t n = write(fds[1], script, left);
        if (n <= 0)
            break;
        script += n;
        left -= (size_t)n;
    }
    close(fds[1]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status) ? 1 : 0;
}

int clgqa_cmd_plot(int argc, char **argv) {
    const char *in_dir = NULL, *out_dir = NULL;
    /* What the folder holds: a run, or the table of scripts/compare or scripts/uptrain. */
    const char *mode = "run";
    int export_csv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--csv")) {
            export_csv = 1;
        } else if (!strcmp(a, "--compare")) {
            mode = "compare";
        } else if (!strcmp(a, "--uptrain")) {
            mode = "uptrain";
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "clgqa plot: --out needs a folder\n%s", usage);
                return 2;
            }
            out_dir = argv[++i];
        } else if (a[0] == '-' || in_dir) {
            fprintf(stderr, "clgqa plot: unexpected argument '%s'\n%s", a, usage);
            return 2;
        } else {
            in_dir = a;
        }
    }
    if (!in_dir) {
        fputs(usage, stderr);
        return 2;
    }
    if (!is_dir(in_dir)) {
        fprintf(stderr, "clgqa plot: no such folder '%s'\n", in_dir);
        return 1;
    }
    const char *needed = !strcmp(mode, "compare")   ? "compare.csv"
                         : !strcmp(mode, "uptrain") ? "uptrain.csv"
                                                    : "run.csv";
    if (!has_file(in_dir, needed)) {
        fprintf(stderr, "clgqa plot: '%s' holds no %s (no %s)\n", in_dir,
                !strcmp(mode, "compare")   ? "comparison: run scripts/compare"
                : !strcmp(mode, "uptrain") ? "uptraining sweep: run scripts/uptrain"
                                           : "training run: train into it first",
                needed);
        return 1;
    }
    const char *python = getenv("CLGQA_PYTHON");
    if (!python || !*python)
        python = "/usr/bin/python3";
    if (access(python, X_OK) != 0) {
        fprintf(stderr, "clgqa plot: %s not found: apt-get install python3-matplotlib\n", python);
        return 1;
    }
    const char *script = plot_script();
    if (!script) {
        fprintf(stderr, "clgqa plot: this clgqa was built without its plot script\n");
        return 1;
    }
    char *args[] = {(char *)python, "-", (char *)mode, (char *)in_dir,
                    (char *)(out_dir ? out_dir : in_dir), export_csv ? "--csv" : NULL, NULL};
    return run_python(python, script, args);
}
