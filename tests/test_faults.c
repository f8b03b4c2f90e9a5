/* Fault injection against the clgqa command (issue 20): what happens around
 * a run when a user is careless or hostile. Each case checks the exit status,
 * the first line printed and that every file of the earlier run is
 * byte-identical afterwards:
 *   - two trainers on one folder (the lock), eval beside a running trainer;
 *   - a forgotten --resume, --resume with another run's out_dir, --overwrite;
 *   - SIGHUP, SIGPIPE (progress into a closed pipe), and a second SIGINT
 *     while the checkpoint of the stop is being written (its temporary is
 *     removed, and the next start sweeps stale ones);
 *   - a resume with a changed batch size (and other keys), --allow-changes;
 *   - a model over the device's memory, --dry-run, ulimit -v in a child;
 *   - the YAML bombs (deep nesting, a 50 MB file, a folder);
 *   - the shell quoting of the printed resume command, and the small
 *     messages (a missing option value, lr 1e39, an IDX file too long, NaN
 *     weights in eval and convert, a divergence with no checkpoint).
 *
 * Runs use an 8x8 synthetic MNIST of 1000 training images, a 2-layer
 * 16-wide DGQA ViT and batch 4 (250 steps an epoch, about half a second);
 * the checkpoint-write case a 384-wide one, whose checkpoint is large enough
 * to signal into. */
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clgqa/checkpoint.h"
#include "philox.h"
#include "safetensors.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define IMG 8
#define TRAIN_COUNT 1000
#define TEST_COUNT 40
#define STEPS (TRAIN_COUNT / 4)

static char root[256];        /* everything of this suite */
static char data_dir[300];    /* the IDX files */
static char run_yaml[400];    /* the tiny run, without out_dir */
static char clgqa_path[1100]; /* the program beside this test */

/* ---- fixtures ---------------------------------------------------------------- */

static void write_split(const char *prefix, int count, uint64_t stream) {
    float *noise = malloc((size_t)count * IMG * IMG * sizeof(float));
    uint8_t *pixels = malloc((size_t)count * IMG * IMG), *labels = malloc((size_t)count);
    ck_assert(noise && pixels && labels);
    clgqa_host_uniform(noise, (size_t)count * IMG * IMG, 11, stream);
    for (int i = 0; i < count; i++) {
        labels[i] = (uint8_t)(i * 7 % 10);
        for (int p = 0; p < IMG * IMG; p++)
            pixels[(size_t)i * IMG * IMG + p] =
                (uint8_t)(labels[i] * 20 + noise[(size_t)i * IMG * IMG + p] * 60);
    }
    ck_assert_int_eq(gen_write_idx(data_dir, prefix, count, IMG, pixels, labels, 0), 0);
    free(noise);
    free(pixels);
    free(labels);
}

static void write_text(const char *path, const char *text) {
    ck_assert_int_eq(gen_write_text(path, text), 0);
}

static void setup(void) {
    if (root[0])
        return;
    char *dir = test_temp_dir();
    ck_assert_ptr_nonnull(dir);
    snprintf(root, sizeof root, "%s", dir);
    free(dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    ck_assert_int_eq(gen_mkdirs(data_dir), 0);
    write_split("train", TRAIN_COUNT, 1);
    write_split("t10k", TEST_COUNT, 2);
    snprintf(run_yaml, sizeof run_yaml, "%s/run.yaml", root);
    char text[1024];
    snprintf(text, sizeof text,
             "dataset: mnist\ndata_dir: %s\nin_chans: 1\nsize: c\natt_scheme: dgqa_diff\n"
             "window_size: 2\nembed_dim: 16\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
             "img_size: 8\npatch_size: 4\nepochs: 1\nbatch_size: 4\nlr: 0.003\n"
             "schedule: cosine\nwarmup_steps: 3\nseed: 5\n", data_dir);
    write_text(run_yaml, text);
    ssize_t n = readlink("/proc/self/exe", clgqa_path, sizeof clgqa_path - 7);
    ck_assert(n > 0);
    clgqa_path[n] = '\0';
    strcpy(strrchr(clgqa_path, '/') + 1, "clgqa");
}

/* A fresh folder name under root (not created). */
static void run_dir(const char *name, char *out, size_t size) {
    setup();
    snprintf(out, size, "%s/%s", root, name);
}

/* `clgqa ARGS` with `env` before it (shell words: assignments, or a
 * command ending in ';'): its exit status; stderr (and stdout) kept. */
static int run(const char *env, const char *args, char *out, size_t out_size, char *err,
               size_t err_size) {
    setup();
    return test_run_clgqa(env, args, out, out_size, err, err_size);
}

/* The first line of `text`, without its newline. */
static const char *first_line(const char *text) {
    static char line[4096];
    size_t n = strcspn(text, "\n");
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), text);
    return line;
}

static void assert_first_line(const char *err, const char *want) {
    ck_assert_msg(strstr(first_line(err), want), "the first line does not name '%s':\n%s", want,
                  err);
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- a folder's files, byte for byte ---------------------------------------------- */

#define MAX_FILES 32
typedef struct snapshot {
    int count;
    char names[MAX_FILES][256];
    char *bytes[MAX_FILES];
    long sizes[MAX_FILES];
} snapshot;

static char *read_bytes(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    *size = ftell(f);
    rewind(f);
    char *bytes = malloc((size_t)*size + 1);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_int_eq((long)fread(bytes, 1, (size_t)*size, f), *size);
    bytes[*size] = '\0';
    fclose(f);
    return bytes;
}

static void snapshot_take(const char *dir, snapshot *s) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
            continue;
        ck_assert_int_lt(s->count, MAX_FILES);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(s->names[s->count], sizeof s->names[0], "%s", e->d_name);
        s->bytes[s->count] = read_bytes(path, &s->sizes[s->count]);
        s->count++;
    }
    closedir(d);
}

static void snapshot_free(snapshot *s) {
    for (int i = 0; i < s->count; i++)
        free(s->bytes[i]);
    s->count = 0;
}

/* Every file of `before` is in dir, byte for byte, and dir has no other. */
static void assert_unchanged(const snapshot *before, const char *dir) {
    snapshot now;
    snapshot_take(dir, &now);
    ck_assert_msg(now.count == before->count, "%s held %d files, now %d", dir, before->count,
                  now.count);
    for (int i = 0; i < before->count; i++) {
        int found = 0;
        for (int j = 0; j < now.count && !found; j++) {
            if (strcmp(before->names[i], now.names[j]))
                continue;
            found = 1;
            ck_assert_msg(before->sizes[i] == now.sizes[j] &&
                              !memcmp(before->bytes[i], now.bytes[j], (size_t)now.sizes[j]),
                          "%s/%s changed", dir, before->names[i]);
        }
        ck_assert_msg(found, "%s/%s is gone", dir, before->names[i]);
    }
    snapshot_free(&now);
}

/* The global_step a checkpoint's metadata holds. */
static long checkpoint_step(const char *path) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    long step = strtol(clgqa_tensor_set_metadata(file, "global_step"), NULL, 10);
    clgqa_tensor_set_close(file);
    return step;
}

/* ---- runs in the background ------------------------------------------------------- */

typedef struct job {
    pid_t pid;
    FILE *err;         /* its stderr */
    char log[32768];   /* what it printed so far */
    size_t used;
} job;

/* `clgqa ARGS` (shell words) in the background, stdout to `out_path`
 * (NULL: /dev/null; "-": with stderr), stderr to a pipe this process reads. */
static void job_start(job *j, const char *args, const char *out_path) {
    setup();
    char cmd[8192];
    if (out_path && !strcmp(out_path, "-"))
        snprintf(cmd, sizeof cmd, "exec '%s' %s 1>&2", clgqa_path, args);
    else
        snprintf(cmd, sizeof cmd, "exec '%s' %s >'%s'", clgqa_path, args,
                 out_path ? out_path : "/dev/null");
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    memset(j, 0, sizeof *j);
    j->pid = fork();
    ck_assert(j->pid >= 0);
    if (j->pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    j->err = fdopen(fds[0], "r");
    ck_assert_ptr_nonnull(j->err);
}

/* Reads stderr lines until one contains `needle` (1) or the stream ends (0). */
static int job_wait_for(job *j, const char *needle) {
    char line[4096];
    while (fgets(line, sizeof line, j->err)) {
        j->used += (size_t)snprintf(j->log + j->used, sizeof j->log - j->used, "%s", line);
        if (j->used >= sizeof j->log)
            j->used = sizeof j->log - 1;
        if (strstr(line, needle))
            return 1;
    }
    return 0;
}

/* The rest of stderr, then the wait status. */
static int job_end(job *j) {
    job_wait_for(j, "\x01never\x01");
    fclose(j->err);
    int status;
    ck_assert_int_eq(waitpid(j->pid, &status, 0), j->pid);
    return status;
}

/* A run stopped by SIGTERM at its first progress line (step 50 of 250):
 * a folder that holds a run, mid-epoch. */
static void stopped_run(const char *out_dir, const char *extra) {
    char args[2048];
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' %s", run_yaml, out_dir, extra);
    job j;
    job_start(&j, args, NULL);
    ck_assert_msg(job_wait_for(&j, "step 50/"), "no progress line:\n%s", j.log);
    ck_assert_int_eq(kill(j.pid, SIGTERM), 0);
    int status = job_end(&j);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
                  "wait status %#x:\n%s", status, j.log);
}

/* ---- one owner per folder --------------------------------------------------------- */

START_TEST(two_trainers_on_one_folder) {
    char dir[512], args[2048], err[16384], out[4096];
    run_dir("two", dir, sizeof dir);
    /* The first trainer, 20 epochs, held still once it has a checkpoint. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set epochs=20 "
             "--set checkpoint_steps=20", run_yaml, dir);
    job first;
    job_start(&first, args, NULL);
    ck_assert_msg(job_wait_for(&first, "step 50/"), "%s", first.log);
    ck_assert_int_eq(kill(first.pid, SIGSTOP), 0);
    snapshot before;
    snapshot_take(dir, &before);

    /* The second: refused at once, naming the first's pid; nothing written. */
    double started = seconds_now();
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    char pid[32];
    snprintf(pid, sizeof pid, "(pid %d)", (int)first.pid);
    assert_first_line(err, "is in use by another training run");
    assert_first_line(err, pid);
    test_assert_one_line_naming(err, dir);
    ck_assert_msg(seconds_now() - started < 10, "the refusal took %.1f s", seconds_now() - started);
    assert_unchanged(&before, dir);

    /* eval only reads: it takes no lock and runs beside the trainer. */
    snprintf(args, sizeof args, "eval '%s' --checkpoint '%s/last.safetensors'", run_yaml, dir);
    ck_assert_msg(run("", args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(strstr(out, "test accuracy:"), "%s", out);
    assert_unchanged(&before, dir);
    snapshot_free(&before);

    ck_assert_int_eq(kill(first.pid, SIGCONT), 0);
    ck_assert_int_eq(kill(first.pid, SIGTERM), 0);
    int status = job_end(&first);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "%#x:\n%s", status,
                  first.log);
}
END_TEST

/* ---- no silent takeover ---------------------------------------------------------- */

START_TEST(a_forgotten_resume_is_refused) {
    char dir[512], finished[512], args[2048], err[16384], yaml[600], text[2048], path[700];
    run_dir("forgotten", dir, sizeof dir);
    stopped_run(dir, "");
    snapshot before;
    snapshot_take(dir, &before);

    /* The original command again, without --resume. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s'", run_yaml, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    assert_first_line(err, "holds a run (run.csv)");
    assert_first_line(err, "--resume");
    assert_first_line(err, "--overwrite");
    test_assert_one_line_naming(err, dir);
    assert_unchanged(&before, dir);

    /* --resume with a config whose out_dir is another, finished run. */
    run_dir("finished", finished, sizeof finished);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set max_steps_per_epoch=5",
             run_yaml, finished);
    ck_assert_msg(run("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    snapshot other;
    snapshot_take(finished, &other);
    snprintf(yaml, sizeof yaml, "%s/finished.yaml", root);
    long size;
    char *base = read_bytes(run_yaml, &size);
    snprintf(text, sizeof text, "%sout_dir: %s\n", base, finished);
    free(base);
    write_text(yaml, text);
    snprintf(args, sizeof args, "train '%s' --resume '%s'", yaml, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    assert_first_line(err, "is not out_dir");
    assert_first_line(err, "belong to the folder it resumes");
    assert_unchanged(&before, dir);
    assert_unchanged(&other, finished);
    snapshot_free(&other);

    /* --overwrite starts over: the old run's files are replaced. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set max_steps_per_epoch=7 "
             "--overwrite", run_yaml, dir);
    ck_assert_msg(run("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(checkpoint_step(path), 7);
    snapshot_free(&before);
}
END_TEST

/* ---- signals ------------------------------------------------------------------ */

START_TEST(sighup_stops_like_sigterm) {
    char dir[512], args[2048], err[16384], path[700];
    run_dir("hangup", dir, sizeof dir);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s'", run_yaml, dir);
    job j;
    job_start(&j, args, NULL);
    ck_assert_msg(job_wait_for(&j, "step 50/"), "%s", j.log);
    ck_assert_int_eq(kill(j.pid, SIGHUP), 0);
    int status = job_end(&j);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP, "%#x:\n%s", status,
                  j.log);
    const char *stopped = strstr(j.log, "clgqa train: stopped by SIGHUP in epoch 1 after step ");
    ck_assert_msg(stopped, "%s", j.log);
    long step = strtol(stopped + strlen("clgqa train: stopped by SIGHUP in epoch 1 after step "),
                       NULL, 10);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(checkpoint_step(path), step);
    ck_assert(step >= 50 && step < STEPS);
    /* It resumes to the end. */
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s'", dir, dir);
    ck_assert_msg(run("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(checkpoint_step(path), STEPS);
}
END_TEST

/* SIGQUIT keeps its default action, a core dump: the OpenCL driver's LLVM
 * installs a handler for it (PoCL, at clGetPlatformIDs) that swallows the
 * first one, so the command puts the default back. */
START_TEST(sigquit_keeps_its_default) {
    char dir[512], args[2048];
    run_dir("quit", dir, sizeof dir);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s'", run_yaml, dir);
    struct rlimit saved, no_core;
    ck_assert_int_eq(getrlimit(RLIMIT_CORE, &saved), 0);
    no_core = saved;
    no_core.rlim_cur = 0; /* no core file; the child inherits it */
    ck_assert_int_eq(setrlimit(RLIMIT_CORE, &no_core), 0);
    job j;
    job_start(&j, args, NULL);
    ck_assert_int_eq(setrlimit(RLIMIT_CORE, &saved), 0);
    ck_assert_msg(job_wait_for(&j, "step 50/"), "%s", j.log);
    ck_assert_int_eq(kill(j.pid, SIGQUIT), 0);
    int status = job_end(&j);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGQUIT, "%#x:\n%s", status, j.log);
}
END_TEST

/* `clgqa train ... | head -2`: the reader goes after two lines. The run goes
 * on, ends with its files and exit status 0, and its result reaches the
 * stream that is still open. */
START_TEST(sigpipe_never_kills_a_run) {
    char dir[512], args[2048], result_path[700], path[700];
    run_dir("pipe", dir, sizeof dir);
    snprintf(result_path, sizeof result_path, "%s/pipe.out", root);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set epochs=2", run_yaml, dir);
    job j;
    job_start(&j, args, result_path);
    char line[4096];
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_nonnull(fgets(line, sizeof line, j.err));
    fclose(j.err); /* the reader is gone */
    int status;
    ck_assert_int_eq(waitpid(j.pid, &status, 0), j.pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %#x", status);
    long size;
    char *result = read_bytes(result_path, &size);
    ck_assert_msg(!strncmp(result, "test accuracy:", 14), "stdout: %s", result);
    free(result);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_int_eq(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(checkpoint_step(path), 2 * STEPS);
    snprintf(path, sizeof path, "%s/run.csv", dir);
    char *csv = read_bytes(path, &size);
    ck_assert_msg(strstr(csv, "\n2,"), "run.csv: %s", csv);
    free(csv);

    /* Both streams into the dead pipe (2>&1 | head -2): still exit status 0. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --overwrite", run_yaml, dir);
    job_start(&j, args, "-");
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_nonnull(fgets(line, sizeof line, j.err));
    fclose(j.err);
    ck_assert_int_eq(waitpid(j.pid, &status, 0), j.pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status %#x", status);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(checkpoint_step(path), STEPS);
}
END_TEST

/* SIGTERM, then SIGINT the moment the stop's checkpoint file is created:
 * the program dies of SIGINT, the temporary is gone, and last.safetensors
 * is still the whole checkpoint of step 100, which the next run resumes
 * after sweeping a stale temporary (and keeping a file of the user's). */
START_TEST(second_signal_during_the_checkpoint_write) {
    char dir[512], args[2048], err[16384], path[700], stale[700], mine[700];
    run_dir("twice", dir, sizeof dir);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    int watch = inotify_init1(IN_CLOEXEC);
    ck_assert(watch >= 0);
    ck_assert(inotify_add_watch(watch, dir, IN_CREATE) >= 0);
    /* 384 wide: a 21 MB training checkpoint, written and synced in tens of ms. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set embed_dim=384 "
             "--set num_heads=4 --set checkpoint_steps=100", run_yaml, dir);
    job j;
    job_start(&j, args, NULL);
    ck_assert_msg(job_wait_for(&j, "step 150/"), "%s", j.log);
    ck_assert_int_eq(kill(j.pid, SIGTERM), 0);
    /* The checkpoint at step 100 made one temporary already: wait for the
     * stop's, the next one. */
    int temporaries = 0, signalled = 0;
    char events[4096] __attribute__((aligned(8)));
    while (!signalled) {
        ssize_t n = read(watch, events, sizeof events);
        ck_assert_msg(n > 0, "inotify: %s", strerror(errno));
        for (char *p = events; p < events + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->len && strstr(e->name, "last.safetensors.tmp.") && ++temporaries == 2 &&
                !signalled) {
                ck_assert_int_eq(kill(j.pid, SIGINT), 0);
                signalled = 1;
            }
            p += sizeof *e + e->len;
        }
    }
    close(watch);
    int status = job_end(&j);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "%#x:\n%s", status, j.log);
    ck_assert_msg(!strstr(j.log, "Resume with"), "%s", j.log);
    snapshot after;
    snapshot_take(dir, &after);
    for (int i = 0; i < after.count; i++)
        ck_assert_msg(!strstr(after.names[i], ".tmp."), "%s/%s was left", dir, after.names[i]);
    snapshot_free(&after);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(checkpoint_step(path), 100);

    /* A stale temporary (as a kill -9 mid-write leaves) is swept at the next
     * start; a file of the user's with a like name is not. */
    snprintf(stale, sizeof stale, "%s/last.safetensors.tmp.Ab12Cd", dir);
    snprintf(mine, sizeof mine, "%s/notes.tmp.txt", dir);
    write_text(stale, "half a checkpoint");
    write_text(mine, "mine");
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s' --set max_steps_per_epoch=120 "
             "--allow-changes", dir, dir);
    ck_assert_msg(run("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    assert_first_line(err, "removed ");
    assert_first_line(err, "last.safetensors.tmp.Ab12Cd");
    ck_assert_int_ne(access(stale, F_OK), 0);
    ck_assert_int_eq(access(mine, F_OK), 0);
    ck_assert_int_eq(checkpoint_step(path), 120);
}
END_TEST

/* ---- resume checks ---------------------------------------------------------------- */

START_TEST(a_changed_batch_size_on_resume_is_refused) {
    char dir[512], args[2048], err[16384], path[700];
    run_dir("changed", dir, sizeof dir);
    stopped_run(dir, "");
    snapshot before;
    snapshot_take(dir, &before);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    long stopped_at = checkpoint_step(path);

    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s' --set batch_size=8", dir, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "batch_size 4 -> 8");
    assert_first_line(err, "--allow-changes");
    assert_unchanged(&before, dir);

    /* Every changed key is named. */
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s' --set lr=0.001 "
             "--set augment=flip --set max_steps_per_epoch=100 --set window_size=3 "
             "--set epochs=2", dir, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "lr 0.003 -> 0.001");
    /* More epochs stretch the cosine schedule: every remaining step's lr. */
    assert_first_line(err, "epochs 1 -> 2");
    assert_first_line(err, "max_steps_per_epoch 0 -> 100");
    assert_first_line(err, "augment randaugment -> flip");
    assert_first_line(err, "window_size 2 -> 3");
    assert_unchanged(&before, dir);

    /* A change of the model's shapes, even allowed. */
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s' --set embed_dim=32 "
             "--allow-changes", dir, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "embed_dim 16 -> 32");
    assert_unchanged(&before, dir);
    snapshot_free(&before);

    /* Allowed: the run goes on, and resumes.csv says what changed and when. */
    snprintf(args, sizeof args, "train '%s/config.yaml' --resume '%s' --set batch_size=8 "
             "--allow-changes", dir, dir);
    ck_assert_msg(run("", args, NULL, 0, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/resumes.csv", dir);
    long size;
    char *csv = read_bytes(path, &size), want[128];
    snprintf(want, sizeof want, "step,key,old,new\n%ld,batch_size,4,8\n", stopped_at);
    ck_assert_str_eq(csv, want);
    free(csv);
}
END_TEST

/* ---- memory ---------------------------------------------------------------------- */

START_TEST(a_model_over_the_device_memory_is_refused) {
    char dir[512], args[2048], err[16384], out[16384];
    run_dir("huge", dir, sizeof dir);
    /* embed_dim 16384: 3.2e9 parameters, 4 x 12 GiB before any activation. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set embed_dim=16384 "
             "--set num_heads=4", run_yaml, dir);
    double started = seconds_now();
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "GiB of device memory");
    assert_first_line(err, "GiB of parameters and AdamW state");
    ck_assert_msg(seconds_now() - started < 20, "the refusal took %.1f s", seconds_now() - started);
    ck_assert_msg(access(dir, F_OK) != 0, "a refused run created %s", dir);

    /* --dry-run prints the estimate; it exits 0 when the run fits. */
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --dry-run", run_yaml, dir);
    ck_assert_msg(run("", args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(!strncmp(out, "memory estimate for ", 20) && strstr(out, "device total") &&
                      strstr(out, "dry run: the run fits"), "%s", out);
    ck_assert_msg(access(dir, F_OK) != 0, "a dry run created %s", dir);
}
END_TEST

/* Under ulimit -v the OpenCL driver cannot load, or could crash in its
 * compiler: a refusal naming the limit instead, never a crash or a blamed
 * driver. */
START_TEST(ulimit_v_in_a_child_is_one_line) {
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer reserves terabytes of address space at start: under
     * any ulimit -v it stops the program before clgqa runs. */
    return;
#endif
    char dir[512], args[2048], err[16384];
    run_dir("limited", dir, sizeof dir);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s'", run_yaml, dir);
    static const char *const limits[] = {"ulimit -v 150000;", "ulimit -v 1000000;"};
    for (int i = 0; i < 2; i++) {
        int code = run(limits[i], args, NULL, 0, err, sizeof err);
        ck_assert_msg(code == 1, "%s exit status %d:\n%s", limits[i], code, err);
        test_assert_one_line_naming(err, "ulimit -v");
        ck_assert_msg(!strstr(err, "no OpenCL platform found"), "%s", err);
        ck_assert_msg(access(dir, F_OK) != 0, "a refused run created %s", dir);
    }
}
END_TEST

/* ---- config files ------------------------------------------------------------------ */

START_TEST(yaml_bombs_are_refused_at_once) {
    char path[600], args[2048], err[16384];
    setup();
    /* 100 000 nested lists, 200 KB. */
    snprintf(path, sizeof path, "%s/nested.yaml", root);
    char *text = malloc(200010);
    ck_assert_ptr_nonnull(text);
    memcpy(text, "a: ", 3);
    memset(text + 3, '[', 100000);
    text[100003] = '\0';
    write_text(path, text);
    free(text);
    snprintf(args, sizeof args, "train '%s'", path);
    double started = seconds_now();
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "nested more than 8 deep");
    ck_assert_msg(seconds_now() - started < 2, "took %.1f s", seconds_now() - started);

    /* 50 MB (sparse): refused by its size, before any parsing. */
    snprintf(path, sizeof path, "%s/huge.yaml", root);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), 50 << 20), 0);
    fclose(f);
    snprintf(args, sizeof args, "train '%s'", path);
    started = seconds_now();
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "is over 1024 KiB");
    ck_assert_msg(seconds_now() - started < 2, "took %.1f s", seconds_now() - started);
    unlink(path);

    /* A folder. */
    snprintf(args, sizeof args, "train '%s'", root);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "is a folder, not a YAML file");
    /* Deep lists on the command line too. */
    ck_assert_int_eq(run("", "train --set 'betas=[[[[[[[[[[0.9]]]]]]]]]]'", NULL, 0, err,
                         sizeof err), 1);
    test_assert_one_line_naming(err, "nested more than 8 deep");
}
END_TEST

/* ---- messages ---------------------------------------------------------------------- */

/* The printed resume command is one shell word per argument: pasted, it
 * resumes a folder named with a space, a quote and a command substitution,
 * and runs nothing else. */
START_TEST(the_resume_command_is_shell_quoted) {
    char dir[512], marker[600], args[2048];
    setup();
    snprintf(marker, sizeof marker, "%s/PWNED", root);
    snprintf(dir, sizeof dir, "%s/my run's $(touch PWNED)", root);
    /* The folder name in single quotes for the shell, ' as '\''. */
    char quoted[1200];
    size_t used = 0;
    for (const char *p = dir; *p; p++)
        used += (size_t)snprintf(quoted + used, sizeof quoted - used, *p == '\'' ? "'\\''" : "%c", *p);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s'", run_yaml, quoted);
    job j;
    job_start(&j, args, NULL);
    ck_assert_msg(job_wait_for(&j, "step 50/"), "%s", j.log);
    ck_assert_int_eq(kill(j.pid, SIGINT), 0);
    int status = job_end(&j);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "%#x", status);
    char want[2048];
    snprintf(want, sizeof want, "  clgqa train '%s/config.yaml' --resume '%s'\n", quoted, quoted);
    ck_assert_msg(strstr(j.log, want), "want %s in:\n%s", want, j.log);
    /* Pasted (with this build's clgqa), from root. */
    char cmd[4096], *line = strstr(j.log, want) + strlen("  clgqa");
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s'%s", root, clgqa_path, line);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(access(marker, F_OK) != 0, "the pasted command ran touch");
}
END_TEST

START_TEST(small_messages_are_clear) {
    char args[2048], err[16384], dir[512], path[700];
    setup();
    /* A missing or empty option value. */
    ck_assert_int_eq(run("", "train --set", NULL, 0, err, sizeof err), 2);
    ck_assert_str_eq(first_line(err), "clgqa train: --set needs a value (key=value)");
    ck_assert_int_eq(run("", "eval x.yaml --device", NULL, 0, err, sizeof err), 2);
    assert_first_line(err, "--device needs a value");
    ck_assert_int_eq(run("", "train --device ''", NULL, 0, err, sizeof err), 2);
    assert_first_line(err, "not an empty string");
    ck_assert_int_eq(run("", "train --resume", NULL, 0, err, sizeof err), 2);
    assert_first_line(err, "--resume needs a value");
    /* A folder to resume that is not there. */
    snprintf(args, sizeof args, "train '%s' --resume '%s/no-such-run'", run_yaml, root);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no-such-run': No such file or directory");
    /* A number beyond float. */
    ck_assert_int_eq(run("", "train --set lr=1e39", NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "beyond a 32-bit float");

    /* An IDX file too long is not called truncated. */
    run_dir("long-idx", dir, sizeof dir);
    ck_assert_int_eq(gen_mkdirs(dir), 0);
    uint8_t pixels[3 * IMG * IMG] = {0}, labels[3] = {1, 2, 3};
    ck_assert_int_eq(gen_write_idx(dir, "train", 3, IMG, pixels, labels, 0), 0);
    ck_assert_int_eq(gen_write_idx(dir, "t10k", 3, IMG, pixels, labels, 0), 0);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    FILE *f = fopen(path, "ab");
    fputs("extra", f);
    fclose(f);
    snprintf(args, sizeof args, "train '%s' --set 'data_dir=%s' --set 'out_dir=%s/out'", run_yaml,
             dir, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    test_assert_one_line_naming(err, "(extra bytes after the data)");

    /* A divergence with no checkpoint written says so. */
    run_dir("diverged", dir, sizeof dir);
    snprintf(args, sizeof args, "train '%s' --set 'out_dir=%s' --set lr=1e30", run_yaml, dir);
    ck_assert_int_eq(run("", args, NULL, 0, err, sizeof err), 1);
    ck_assert_msg(strstr(err, "training diverged at epoch 1") &&
                      strstr(err, "no checkpoint was written before it") &&
                      !strstr(err, "last.safetensors"), "%s", err);
}
END_TEST

START_TEST(nan_weights_are_refused_by_eval_and_convert) {
    char dir[512], args[2048], out[4096], err[16384], checkpoint[700], converted[700];
    run_dir("nan", dir, sizeof dir);
    ck_assert_int_eq(gen_mkdirs(dir), 0);
    /* The run's model with one NaN in block 1's fc1 weight. */
    clgqa_config cfg;
    TEST_OK(clgqa_run_config(run_yaml, NULL, 0, &cfg));
    clgqa_model *model;
    TEST_OK(test_model_create(test_runtime(), &cfg, 4, &model));
    const clgqa_tensor_info *t = clgqa_model_find_tensor(model, "blocks.1.mlp.fc1.weight");
    ck_assert_ptr_nonnull(t);
    float *w = malloc(t->numel * sizeof *w);
    TEST_OK(clgqa_model_read_tensor(model, CLGQA_PARAMS, t, w));
    w[5] = NAN;
    TEST_OK(clgqa_model_write_tensor(model, CLGQA_PARAMS, t, w));
    free(w);
    snprintf(checkpoint, sizeof checkpoint, "%s/nan.safetensors", dir);
    TEST_OK(clgqa_checkpoint_save_model(model, checkpoint));
    clgqa_model_destroy(model);

    snprintf(args, sizeof args, "eval '%s' --checkpoint '%s'", run_yaml, checkpoint);
    ck_assert_int_eq(run("", args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "tensor 'blocks.1.mlp.fc1.weight' holds nan at element 5");
    assert_first_line(err, "--allow-nonfinite");
    snprintf(args, sizeof args, "eval '%s' --checkpoint '%s' --allow-nonfinite", run_yaml,
             checkpoint);
    ck_assert_msg(run("", args, out, sizeof out, err, sizeof err) == 0, "%s", err);

    snprintf(converted, sizeof converted, "%s/converted.safetensors", dir);
    snprintf(args, sizeof args, "convert '%s' --in '%s' --out '%s'", run_yaml, checkpoint, converted);
    ck_assert_int_eq(run("", args, out, sizeof out, err, sizeof err), 1);
    /* After convert's notes on what it loaded, the refusal. */
    ck_assert_msg(strstr(err, "clgqa: ") && strstr(strstr(err, "clgqa: "), "blocks.1.mlp.fc1.weight"),
                  "%s", err);
    ck_assert_int_ne(access(converted, F_OK), 0);
    snprintf(args, sizeof args, "convert '%s' --in '%s' --out '%s' --allow-nonfinite", run_yaml,
             checkpoint, converted);
    ck_assert_msg(run("", args, out, sizeof out, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(access(converted, F_OK), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, two_trainers_on_one_folder);
    tcase_add_test(tc, a_forgotten_resume_is_refused);
    tcase_add_test(tc, sighup_stops_like_sigterm);
    tcase_add_test(tc, sigquit_keeps_its_default);
    tcase_add_test(tc, sigpipe_never_kills_a_run);
    tcase_add_test(tc, second_signal_during_the_checkpoint_write);
    tcase_add_test(tc, a_changed_batch_size_on_resume_is_refused);
    tcase_add_test(tc, a_model_over_the_device_memory_is_refused);
    tcase_add_test(tc, ulimit_v_in_a_child_is_one_line);
    tcase_add_test(tc, yaml_bombs_are_refused_at_once);
    tcase_add_test(tc, the_resume_command_is_shell_quoted);
    tcase_add_test(tc, small_messages_are_clear);
    tcase_add_test(tc, nan_weights_are_refused_by_eval_and_convert);
    suite_add_tcase(s, tc);
    int status = test_run_suite(s);
    if (root[0])
        test_remove_tree(root);
    return status;
}
