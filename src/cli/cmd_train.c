/* clgqa train [CONFIG.yaml | -c CONFIG.yaml] [--set key=value ...] [--KEY VALUE ...]
 *             [--device SPEC] [--resume DIR] [--overwrite] [--allow-changes] [--dry-run]
 * Without a config the embedded demo config (configs/demo.yaml) is trained.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP (a closed terminal) stop the run after
 * the step in progress, with last.safetensors holding it; the command then
 * says how to resume and dies by the same signal (its default action,
 * raised again), so a calling shell or scheduler sees an interrupted run as
 * such (exit status 128 + n in a shell's $?). SIGUSR1 (Slurm's warning
 * before a time limit, --signal=USR1@90) writes last.safetensors after the
 * step in progress and the run goes on. A second stop signal stops at once:
 * the temporary file of a checkpoint being written is removed first (the
 * checkpoints are renamed into place, so the last whole one stays). SIGPIPE
 * is ignored: progress written to a closed pipe is dropped and the run goes
 * on. SIGQUIT keeps its default (a core dump). A crash (SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE, SIGABRT) says so in one line before the default action. */
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "commands.h"
#include "config_args.h"
#include "environment.h"
#include "mpi_ranks.h"
#include "train_internal.h"

static const char usage[] =
    "clgqa train [CONFIG.yaml | -c CONFIG.yaml] [--set key=value ...] [--KEY VALUE ...]\n"
    "       [--device SPEC] [--resume DIR] [--overwrite] [--allow-changes] [--dry-run]\n"
    "       (--KEY VALUE or --KEY=VALUE sets any config key, as --set KEY=VALUE: --lr 1e-3,\n"
    "       --label-smoothing=0.1; without a config: the embedded demo, configs/demo.yaml:\n"
    "       a small KDGQA ViT on Fashion-MNIST)";

/* ---- signals ------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal, checkpoint_request;
static atomic_int signals_seen; /* lock-free, so safe in a handler on any thread */

/* SIGUSR1: a checkpoint after the step in progress, then on. */
static void on_checkpoint_signal(int sig) {
    (void)sig;
    checkpoint_request = 1;
    static const char notice[] =
        "\nclgqa train: SIGUSR1: writing last.safetensors after this step, then going on\n";
    ssize_t ignored = write(STDERR_FILENO, notice, sizeof notice - 1);
    (void)ignored;
}

static void on_stop_signal(int sig) {
    if (atomic_fetch_add(&signals_seen, 1) > 0) { /* the second: stop now, as with no handler */
        clgqa_atomic_remove_pending(); /* no checkpoint-sized temporary left behind */
        signal(sig, SIG_DFL);
        raise(sig); /* delivered when this handler returns */
        return;
    }
    stop_signal = sig;
    static const char notice[] =
        "\nclgqa train: stopping after this step (signal again to stop at once)\n";
    ssize_t ignored = write(STDERR_FILENO, notice, sizeof notice - 1);
    (void)ignored;
}

/* The line a crash prints, composed before the run (a handler may only
 * write(2) it). */
static char crash_notice[2048];
static struct sigaction crash_previous[32];

static void on_crash(int sig, siginfo_t *info, void *context) {
    (void)context;
    ssize_t ignored = write(STDERR_FILENO, crash_notice, strlen(crash_notice));
    (void)ignored;
    clgqa_atomic_remove_pending();
    /* The previous action (the default, or a sanitizer's report) takes the
     * fault when the instruction runs again; a signal sent by kill is raised
     * again. */
    sigaction(sig, &crash_previous[sig], NULL);
    if (info->si_code <= 0)
        raise(sig);
}

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* file writes and waits go on after the handler */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_checkpoint_signal;
    sigaction(SIGUSR1, &sa, NULL);
    /* A write to a pipe whose reader is gone fails with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    /* The OpenCL driver's LLVM (PoCL's, at clGetPlatformIDs) installs a
     * handler for these that removes itself and returns, so the first one
     * sent was lost (a SIGQUIT, or a scheduler's SIGXCPU, did nothing): their
     * default actions back, a core dump or death by the signal. */
    static const int default_signals[] = {SIGQUIT, SIGTRAP, SIGSYS, SIGXCPU, SIGXFSZ, SIGUSR2};
    for (size_t i = 0; i < sizeof default_signals / sizeof default_signals[0]; i++)
        signal(default_signals[i], SIG_DFL);
    struct sigaction crash;
    memset(&crash, 0, sizeof crash);
    crash.sa_sigaction = on_crash;
    sigemptyset(&crash.sa_mask);
    crash.sa_flags = SA_SIGINFO;
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        sigaction(crash_signals[i], &crash, &crash_previous[crash_signals[i]]);
}

static const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* ---- messages ------------------------------------------------------------- */

/* `word` as one shell word: as it is when it has only characters no shell
 * treats specially, else in single quotes, a quote inside as '\''. So a
 * pasted command does what it says, whatever the folder is called. */
static void shell_quote(const char *word, char *out, size_t size) {
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789@%+=:,./-_";
    if (word[0] && strspn(word, plain) == strlen(word)) {
        snprintf(out, size, "%s", word);
        return;
    }
    size_t used = 0;
    if (used + 1 < size)
        out[used++] = '\'';
    for (const char *p = word; *p && used + 5 < size; p++) {
        if (*p == '\'') {
            memcpy(out + used, "'\\''", 4);
            used += 4;
        } else {
            out[used++] = *p;
        }
    }
    if (used + 1 < size)
        out[used++] = '\'';
    out[used] = '\0';
}

/* The command that resumes the run in out_dir (its config.yaml is the whole
 * resolved config). */
static void resume_command(const char *out_dir, const char *device, int ranks, char *out,
                           size_t size) {
    char config[2200], folder[2200], config_path[1200], device_word[600] = "";
    snprintf(config_path, sizeof config_path, "%s/config.yaml", out_dir);
    shell_quote(config_path, config, sizeof config);
    shell_quote(out_dir, folder, sizeof folder);
    if (device) {
        char quoted[520];
        shell_quote(device, quoted, sizeof quoted);
        snprintf(device_word, sizeof device_word, " --device %s", quoted);
    }
    char launcher[32] = "";
    if (ranks > 1)
        snprintf(launcher, sizeof launcher, "mpirun -np %d ", ranks);
    snprintf(out, size, "%sclgqa train %s --resume %s%s", launcher, config, folder, device_word);
}

/* The run's outcome, on `first`, or on `second` when `first` cannot take it
 * (a pipe whose reader went): it reaches a stream that is still open. */
static void say(FILE *first, FILE *second, const char *fmt, ...) {
    char text[4096];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    clearerr(first);
    if (fputs(text, first) >= 0 && fflush(first) == 0 && !ferror(first))
        return;
    fputs(text, second);
    fflush(second);
}

/* After a stop by `sig` (its checkpoint written, its message said): die by
 * it, with its default action, so the parent sees the signal (a shell's $?
 * is 128 + its number). Returns 128 + sig only if the signal did not end
 * the process. */
static int die_by(int sig) {
    fflush(NULL);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    return 128 + sig;
}

/* ---- the command ------------------------------------------------------------ */

/* --resume DIR: DIR is the output folder. A config that names another
 * out_dir itself (the file or --set; the embedded demo's does not count)
 * is refused by the trainer, which checks that both are one folder. */
static int resume_folder(const cli_config_args *args, const char *resume, clgqa_config *cfg) {
    int given = args->config_path && clgqa_config_given(cfg, "out_dir");
    for (int i = 0; i < args->set_count; i++)
        given |= !strncmp(args->sets[i], "out_dir=", 8);
    if (given)
        return 0;
    if (strlen(resume) >= sizeof cfg->out_dir) {
        fprintf(stderr, "clgqa train: --resume '%s' is longer than %zu characters\n", resume,
                sizeof cfg->out_dir - 1);
        return -1;
    }
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "%s", resume);
    return 0;
}

int clgqa_cmd_train(int argc, char **argv) {
    const char *resume = NULL;
    int overwrite = 0, allow_changes = 0, dry_run = 0;
    const cli_option flags[] = {{"--resume", &resume, "the folder of the run to continue"}};
    const cli_switch switches[] = {{"--overwrite", &overwrite},
                                   {"--allow-changes", &allow_changes},
                                   {"--dry-run", &dry_run}};
    cli_config_args args;
    int exit_status = clgqa_cli_parse_config_args(usage, argc, argv, flags, 1, switches, 3, 1, &args);
    if (exit_status >= 0)
        return exit_status;
    if (resume && overwrite) {
        fprintf(stderr, "clgqa train: --resume continues a run and --overwrite starts over: give "
                "one of them\n");
        return 2;
    }

    /* Under mpirun: this process is one rank of a data-parallel job. */
    clgqa_mpi *mpi;
    if (clgqa_mpi_init(cli_launched_by_mpi() ? CLGQA_LAUNCH_MPI : CLGQA_LAUNCH_ALONE, &mpi) !=
        CLGQA_OK)
        return clgqa_cli_error(NULL);
    clgqa_config cfg;
    if (clgqa_run_config(args.config_path, args.sets, args.set_count, &cfg) != CLGQA_OK)
        return clgqa_mpi_fail(mpi, 1);
    if (resume && resume_folder(&args, resume, &cfg) != 0) {
        clgqa_mpi_finalize(mpi);
        return 1;
    }
    clgqa_runtime *rt;
    if (clgqa_cli_open_runtime(&cfg, mpi, args.device, &rt) != 0)
        return clgqa_mpi_fail(mpi, 0);
    if (clgqa_mpi_check_devices(mpi, rt, cfg.allow_shared_device) != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return clgqa_mpi_fail(mpi, 0);
    }
    int rank = clgqa_mpi_rank(mpi), ranks = clgqa_mpi_ranks(mpi);
    char start_line[2048]; /* printed by the trainer once its checks pass */
    if (ranks > 1)
        snprintf(start_line, sizeof start_line, "clgqa train: %s, %s on %s, %d ranks, global batch %d",
                 cfg.dataset, clgqa_scheme_name(cfg.att_scheme), cfg.out_dir, ranks, cfg.batch_size);
    else
        snprintf(start_line, sizeof start_line, "clgqa train: %s, %s on %s, device %s", cfg.dataset,
                 clgqa_scheme_name(cfg.att_scheme), cfg.out_dir, clgqa_runtime_device_name(rt));
    if (cfg.precision != CLGQA_PRECISION_32) /* "32" is the default, said nowhere */
        snprintf(start_line + strlen(start_line), sizeof start_line - strlen(start_line),
                 ", precision %s", clgqa_precision_name(cfg.precision));

    clgqa_train_options options = {0};
    options.resume_dir = resume;
    options.stop_signal = &stop_signal;
    options.checkpoint_request = &checkpoint_request;
    options.flags = (overwrite ? CLGQA_TRAIN_OVERWRITE : 0) |
                    (allow_changes ? CLGQA_TRAIN_ALLOW_CHANGES : 0) |
                    (dry_run ? CLGQA_TRAIN_DRY_RUN : 0);
    if (dry_run)
        options.log = stdout; /* the estimate is the command's output */
    clgqa_train_extras extras = {0};
    extras.mpi = mpi;
    extras.start_line = rank == 0 ? start_line : NULL;
    char resume_line[8192];
    resume_command(cfg.out_dir, args.device, ranks, resume_line, sizeof resume_line);
    snprintf(crash_notice, sizeof crash_notice,
             "\nclgqa train: crashed (a fatal signal in clgqa or the OpenCL driver, which under "
             "a low ulimit -v can fail this way); the last whole checkpoint, if any, resumes "
             "with:\n  %s\n", resume_line);
    catch_signals();
    clgqa_train_result result;
    clgqa_status status = clgqa_train_with(rt, &cfg, &options, &extras, &result);
    clgqa_runtime_destroy(rt);
    if (status != CLGQA_OK)
        return clgqa_mpi_fail(mpi, 0);
    clgqa_mpi_finalize(mpi);
    if (rank != 0) /* rank 0 speaks for the job */
        return result.stopped ? die_by(result.stop_signal) : 0;
    if (dry_run) {
        say(stdout, stderr, "dry run: the run fits; nothing was allocated or written\n");
        return 0;
    }
    if (result.stopped) {
        char where[256];
        if (result.epoch_steps > 0)
            snprintf(where, sizeof where, "in epoch %d after step %ld/%ld", result.epochs_done + 1,
                     result.epoch_steps, result.steps_per_epoch);
        else
            snprintf(where, sizeof where, "after epoch %d", result.epochs_done);
        say(stderr, stdout, "clgqa train: stopped by %s %s; %s/last.safetensors holds it. "
            "Resume with:\n  %s\n", signal_name(result.stop_signal), where, cfg.out_dir,
            resume_line);
        return die_by(result.stop_signal);
    }
    say(stdout, stderr,
        "test accuracy: %.1f%% (test loss %.4f, train accuracy %.1f%%, epochs %d, %.0f img/s)\n",
        100.0 * result.last.test_acc, result.last.test_loss, 100.0 * result.last.train_acc,
        result.epochs_done, result.images_per_second);
    return 0;
}
