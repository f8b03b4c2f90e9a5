/* clgqa train [CONFIG.yaml] [--set key=value ...] [--device SPEC] [--resume DIR]
 * Without CONFIG.yaml the embedded demo config (configs/demo.yaml) is trained.
 *
 * SIGINT and SIGTERM stop the run after the step in progress, with
 * last.safetensors holding it; the command then says how to resume and exits
 * with 128 + the signal's number. A second signal stops at once (the
 * checkpoints are written atomically, so the last whole one stays). */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "config_args.h"
#include "environment.h"
#include "mpi_ranks.h"
#include "train_internal.h"

static const char usage[] =
    "clgqa train [CONFIG.yaml] [--set key=value ...] [--device SPEC] [--resume DIR]\n"
    "       (without CONFIG.yaml: the embedded demo, configs/demo.yaml: a small KDGQA ViT on Fashion-MNIST)";

static volatile sig_atomic_t stop_signal;
static atomic_int signals_seen; /* lock-free, so safe in a handler on any thread */

static void on_stop_signal(int sig) {
    if (atomic_fetch_add(&signals_seen, 1) > 0) { /* the second: stop now, as with no handler */
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

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* file writes and waits go on after the handler */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int clgqa_cmd_train(int argc, char **argv) {
    const char *resume = NULL;
    const cli_option flags[] = {{"--resume", &resume}};
    cli_config_args args;
    int exit_status = clgqa_cli_parse_config_args(usage, argc, argv, flags, 1, 1, &args);
    if (exit_status >= 0)
        return exit_status;

    /* Under mpirun: this process is one rank of a data-parallel job. */
    clgqa_mpi *mpi;
    if (clgqa_mpi_init(cli_launched_by_mpi() ? CLGQA_LAUNCH_MPI : CLGQA_LAUNCH_ALONE, &mpi) !=
        CLGQA_OK)
        return clgqa_cli_error(NULL);
    clgqa_config cfg;
    if (clgqa_run_config(args.config_path, args.sets, args.set_count, &cfg) != CLGQA_OK)
        return clgqa_mpi_fail(mpi, 1);
    clgqa_runtime *rt;
    if (clgqa_cli_open_runtime(&cfg, mpi, args.device, &rt) != 0)
        return clgqa_mpi_fail(mpi, 0);
    if (clgqa_mpi_check_devices(mpi, rt, cfg.allow_shared_device) != CLGQA_OK) {
        clgqa_runtime_destroy(rt);
        return clgqa_mpi_fail(mpi, 0);
    }
    int rank = clgqa_mpi_rank(mpi), ranks = clgqa_mpi_ranks(mpi);
    if (rank == 0 && ranks > 1)
        fprintf(stderr, "clgqa train: %s, %s on %s, %d ranks, global batch %d\n", cfg.dataset,
                clgqa_scheme_name(cfg.att_scheme), cfg.out_dir, ranks, cfg.batch_size);
    else if (rank == 0)
        fprintf(stderr, "clgqa train: %s, %s on %s, device %s\n", cfg.dataset,
                clgqa_scheme_name(cfg.att_scheme), cfg.out_dir, clgqa_runtime_device_name(rt));

    clgqa_train_options options = {0};
    options.resume_dir = resume;
    options.stop_signal = &stop_signal;
    clgqa_train_extras extras = {0};
    extras.mpi = mpi;
    catch_stop_signals();
    clgqa_train_result result;
    clgqa_status status = clgqa_train_with(rt, &cfg, &options, &extras, &result);
    clgqa_runtime_destroy(rt);
    if (status != CLGQA_OK)
        return clgqa_mpi_fail(mpi, 0);
    clgqa_mpi_finalize(mpi);
    if (rank != 0) /* rank 0 speaks for the job */
        return result.stopped ? 128 + result.stop_signal : 0;
    if (result.stopped) {
        const char *name = result.stop_signal == SIGINT ? "SIGINT" : "SIGTERM";
        if (result.epoch_steps > 0)
            fprintf(stderr, "clgqa train: stopped by %s in epoch %d after step %ld/%ld", name,
                    result.epochs_done + 1, result.epoch_steps, result.steps_per_epoch);
        else
            fprintf(stderr, "clgqa train: stopped by %s after epoch %d", name, result.epochs_done);
        /* config.yaml in out_dir is the whole resolved config. */
        char launcher[32] = "";
        if (ranks > 1)
            snprintf(launcher, sizeof launcher, "mpirun -np %d ", ranks);
        fprintf(stderr, "; %s/last.safetensors holds it. Resume with:\n"
                "  %sclgqa train %s/config.yaml --resume %s%s%s\n", cfg.out_dir, launcher,
                cfg.out_dir, cfg.out_dir, args.device ? " --device " : "",
                args.device ? args.device : "");
        return 128 + result.stop_signal;
    }
    printf("test accuracy: %.1f%% (test loss %.4f, train accuracy %.1f%%, epochs %d, %.0f img/s)\n",
           100.0 * result.last.test_acc, result.last.test_loss, 100.0 * result.last.train_acc,
           result.epochs_done, result.images_per_second);
    return 0;
}
