/* steps.csv: the training curve between epochs. A row every cfg->log_steps
 * training steps and at the end of each epoch:
 *   epoch,step,loss,accuracy,lr,img_per_s,data_wait,scale
 * epoch counts from 1, step is the global optimizer step (steps done, those
 * the loss scaler skipped included); loss, accuracy, img/s and the share of
 * time spent waiting for batches are over the steps since the previous row
 * of the epoch, lr is the last step's, scale the loss scale after it
 * (precision 16-mixed; 1 in precision 32). */
#ifndef CLGQA_STEP_LOG_H
#define CLGQA_STEP_LOG_H

#include <stdio.h>

#include "clgqa/model.h"
#include "fail.h"

#define CLGQA_STEP_LOG_HEADER "epoch,step,loss,accuracy,lr,img_per_s,data_wait,scale"

typedef struct clgqa_step_log {
    FILE *csv;
    clgqa_metrics since; /* the model's running metrics at the previous row */
    double time_since, wait_since;
} clgqa_step_log;

/* At an epoch start, after clgqa_model_reset_metrics: the window starts here. */
void clgqa_step_log_epoch_start(clgqa_step_log *log, double wait_seconds);
/* Write the row for the window ending now from the epoch's running metrics
 * as copied after the window's last step (the trainer writes it once that
 * copy is done, so the window's time covers its steps' device work; with
 * several ranks, summed over them). wait_seconds: the loader's total wait
 * so far. */
clgqa_status clgqa_step_log_row(clgqa_step_log *log, const clgqa_metrics *running, int epoch,
                                long global_step, float lr, double wait_seconds, float scale);

#endif
