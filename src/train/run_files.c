/* Progress on stderr and the run files of a training run (run.csv,
 * groups.csv, and their trimming when a run resumes); steps.csv has its own
 * file (step_log.c). Used by train.c. */
#include "run_files.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Progress: redraw at most 4 times a second on a terminal; otherwise a plain
 * line every PLAIN_LINE_EVERY steps. */
#define PROGRESS_REFRESH_SECONDS 0.25
#define PLAIN_LINE_EVERY 50

/* ---- progress on stderr -------------------------------------------------- */

static void format_duration(char *buf, size_t size, double seconds) {
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

/* One progress report after `done` steps: running loss and accuracy of the
 * epoch, throughput, the share of time spent waiting for data (and, with
 * several ranks, on the all-reduce), and the ETA. */
void run_progress_show(run_progress *p, long done, const clgqa_metrics *m, double wait_seconds,
                       int top5) {
    double now = clgqa_clock_seconds();
    double elapsed = now - p->started;
    double loss = m->samples ? m->sum_loss / (double)m->samples : 0.0;
    double acc = m->samples ? m->sum_correct / (double)m->samples : 0.0;
    double acc5 = m->samples ? m->sum_top5 / (double)m->samples : 0.0;
    double speed = elapsed > 0 ? (double)(m->samples - p->samples_before) / elapsed : 0.0;
    double wait_share = elapsed > 0 ? (wait_seconds - p->wait_at_start) / elapsed : 0.0;
    char eta[32], allreduce[32] = "", top5_text[32] = "";
    if (p->mpi)
        snprintf(allreduce, sizeof allreduce, " allreduce %.0f%%",
                 elapsed > 0 ? 100.0 * (clgqa_mpi_wait_seconds(p->mpi) - p->allreduce_at_start) / elapsed
                             : 0.0);
    if (top5)
        snprintf(top5_text, sizeof top5_text, p->tty ? " top-5 %5.1f%%" : " top-5 %.1f%%",
                 100.0 * acc5);
    long done_here = done - p->first;
    format_duration(eta, sizeof eta,
                    done_here > 0 ? elapsed / (double)done_here * (double)(p->steps - done) : 0);
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int filled = (int)(WIDTH * done / (p->steps > 0 ? p->steps : 1));
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(p->out, "\repoch %d/%d [%s] %ld/%ld loss %.4f acc %5.1f%%%s %6.0f img/s data %2.0f%%%s ETA %s\x1b[K",
                p->epoch + 1, p->epochs, bar, done, p->steps, loss, 100.0 * acc, top5_text, speed,
                100.0 * wait_share, allreduce, eta);
    } else {
        fprintf(p->out, "epoch %d/%d step %ld/%ld loss %.4f acc %.1f%%%s %.0f img/s data %.0f%%%s ETA %s\n",
                p->epoch + 1, p->epochs, done, p->steps, loss, 100.0 * acc, top5_text, speed,
                100.0 * wait_share, allreduce, eta);
    }
    /* A stream that failed (its reader gone): no more progress, the run goes on. */
    if (fflush(p->out) != 0 || ferror(p->out))
        p->quiet = 1;
    p->last_draw = now;
}

/* Whether step `done` (of p->steps) is due for a report. */
int run_progress_due(const run_progress *p, long done) {
    if (p->quiet)
        return 0;
    if (done == p->steps)
        return 1;
    if (p->tty)
        return clgqa_clock_seconds() - p->last_draw >= PROGRESS_REFRESH_SECONDS;
    return done % PLAIN_LINE_EVERY == 0;
}

/* ---- run files ------------------------------------------------------------- */

clgqa_status run_make_dirs(const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "out_dir is too long: '%s'", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return clgqa_fail(CLGQA_ERR_IO, "cannot create folder '%s': %s", buf, strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return clgqa_fail(CLGQA_ERR_IO, "out_dir '%s' is not a folder", path);
    return CLGQA_OK;
}

void run_join_path(char *buf, size_t size, const char *dir, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

/* The row's first two columns as numbers; 0 when they are not. */
static int row_numbers(const char *row, long *first, long *second) {
    char *end;
    *first = strtol(row, &end, 10);
    if (end == row || *end != ',')
        return 0;
    const char *next = end + 1;
    *second = strtol(next, &end, 10);
    return end != next && *end == ',';
}

/* run.csv: epoch,... */
int run_keep_epoch_row(const char *row, const clgqa_train_state *state) {
    char *end;
    long epoch = strtol(row, &end, 10);
    return end != row && *end == ',' && epoch <= state->epochs_done;
}

/* groups.csv: epoch,step in the epoch (or "eval"),... */
int run_keep_groups_row(const char *row, const clgqa_train_state *state) {
    long epoch, step;
    return run_keep_epoch_row(row, state) ||
           (row_numbers(row, &epoch, &step) && epoch == state->epochs_done + 1 &&
            step < state->epoch_steps);
}

/* steps.csv: epoch,global step,... */
int run_keep_steps_row(const char *row, const clgqa_train_state *state) {
    long epoch, step;
    return row_numbers(row, &epoch, &step) && step <= state->global_step;
}

/* Start a CSV log: a fresh run (resumed NULL) writes the header; a resumed
 * run keeps the header and the rows `keep` accepts. Returns the file open
 * for appending. */
clgqa_status run_open_log(const char *path, const char *header, const clgqa_train_state *resumed,
                             run_keep_row keep, FILE **out) {
    char *kept = NULL;
    size_t kept_size = 0;
    FILE *mem = open_memstream(&kept, &kept_size);
    if (!mem)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "open_memstream failed");
    fprintf(mem, "%s\n", header);
    FILE *old = resumed ? fopen(path, "r") : NULL;
    if (old) {
        char line[4096];
        int first = 1;
        while (fgets(line, sizeof line, old)) {
            if (first) { /* the header, written again above */
                first = 0;
                continue;
            }
            if (keep(line, resumed))
                fputs(line, mem);
        }
        fclose(old);
    }
    fclose(mem);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(kept);
        return clgqa_fail(CLGQA_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    fwrite(kept, 1, kept_size, f);
    free(kept);
    if (fflush(f) != 0) {
        fclose(f);
        return clgqa_fail(CLGQA_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    *out = f;
    return CLGQA_OK;
}

/* groups.csv rows: epoch, step (batch index in the epoch, or "eval" after
 * the evaluation), layer, the query heads of each key/value head ("2 1 1"). */
clgqa_status run_write_groups(FILE *csv, const clgqa_model_dims *dims, const int32_t *counts,
                              int epoch, long step) {
    for (int layer = 0; layer < dims->num_layers; layer++) {
        if (step >= 0)
            fprintf(csv, "%d,%ld,%d,", epoch + 1, step, layer);
        else
            fprintf(csv, "%d,eval,%d,", epoch + 1, layer);
        for (int g = 0; g < dims->kv_heads; g++)
            fprintf(csv, g ? " %d" : "%d", counts[(size_t)layer * dims->kv_heads + g]);
        fputc('\n', csv);
    }
    if (fflush(csv) != 0)
        return clgqa_fail(CLGQA_ERR_IO, "cannot write groups.csv: %s", strerror(errno));
    return CLGQA_OK;
}

clgqa_status run_log_groups(FILE *csv, clgqa_model *model, int32_t *counts, int epoch,
                               long step) {
    CLGQA_TRY(clgqa_model_read_all_group_counts(model, counts));
    return run_write_groups(csv, clgqa_model_get_dims(model), counts, epoch, step);
}
