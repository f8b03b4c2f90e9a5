/* steps.csv rows; see step_log.h. */
#include "step_log.h"
#include "clock.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void clgqa_step_log_epoch_start(clgqa_step_log *log, double wait_seconds) {
    memset(&log->since, 0, sizeof log->since);
    log->time_since = clgqa_clock_seconds();
    log->wait_since = wait_seconds;
}

clgqa_status clgqa_step_log_row(clgqa_step_log *log, const clgqa_metrics *running, int epoch,
                                long global_step, float lr, double wait_seconds, float scale) {
    clgqa_metrics m = *running;
    double now = clgqa_clock_seconds();
    long samples = m.samples - log->since.samples;
    double seconds = now - log->time_since;
    if (samples > 0) {
        fprintf(log->csv, "%d,%ld,%.6f,%.6f,%.6g,%.1f,%.4f,%.9g\n", epoch + 1, global_step,
                (m.sum_loss - log->since.sum_loss) / (double)samples,
                (m.sum_correct - log->since.sum_correct) / (double)samples, lr,
                seconds > 0 ? (double)samples / seconds : 0.0,
                seconds > 0 ? (wait_seconds - log->wait_since) / seconds : 0.0, (double)scale);
        if (fflush(log->csv) != 0)
            return clgqa_fail(CLGQA_ERR_IO, "cannot write steps.csv: %s", strerror(errno));
    }
    log->since = m;
    log->time_since = now;
    log->wait_since = wait_seconds;
    return CLGQA_OK;
}
