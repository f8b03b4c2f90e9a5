/* The run folder (out_dir) and who owns it: a training run holds an
 * exclusive lock on out_dir/.lock while it lasts, never starts over a run it
 * was not told to replace, and resumes only the run it was given, with the
 * settings that run was trained with. Internal to the trainer (train.c);
 * README "Stopping and resuming" states the guarantees. */
#ifndef CLGQA_RUN_FOLDER_H
#define CLGQA_RUN_FOLDER_H

#include <stdio.h>

#include "config_internal.h"

/* Take the exclusive lock (flock) of dir/.lock and write this process's pid
 * into it; *fd holds it until run_folder_unlock. Another process holding it
 * is one line naming its pid. On a file system without locks the run goes
 * on (*fd -1) after a line on `log` saying it is not protected. */
clgqa_status run_folder_lock(const char *dir, FILE *log, int *fd);
void run_folder_unlock(int *fd);
/* The same refusal when another process holds the lock, writing nothing (a
 * check before the lock is taken). */
clgqa_status run_folder_check_free(const char *dir);

/* Remove the temporary files (<name>.tmp.XXXXXX beside config.yaml and the
 * checkpoints) that an interrupted atomic write left, saying so on `log`.
 * Call it holding the lock, so no live writer's file is taken. */
void run_folder_sweep_temporaries(const char *dir, FILE *log);

/* The first file that shows dir holds a run (run.csv or a checkpoint), or
 * NULL. */
const char *run_folder_run_file(const char *dir);
/* --overwrite: remove the files of the run dir holds (run.csv, groups.csv,
 * steps.csv, resumes.csv, config.yaml, last/best/model.safetensors), and
 * nothing else of the folder. */
clgqa_status run_folder_clear(const char *dir);

/* Whether two paths name one folder (both must exist). */
int run_folder_same(const char *a, const char *b);

/* A setting a resumed run changes against its saved config.yaml. */
typedef struct run_change {
    const char *key;
    char old_value[256], new_value[256];
} run_change;
#define RUN_MAX_CHANGES 32

/* Compare cfg with dir/config.yaml, the settings the run was trained with,
 * on every key the bit-identical resume depends on. A changed key of the
 * model's shapes or the seed is refused always; any other changed key is
 * refused unless allow_changes, and then listed in changes (*count). One
 * line names every changed key, old -> new. */
clgqa_status run_folder_compare_config(const clgqa_config *cfg, const char *dir,
                                       int allow_changes, run_change *changes, int *count);
/* Append a line per change to dir/resumes.csv (step,key,old,new; the header
 * when the file is new): the step is the optimizer step the run resumed
 * after. */
clgqa_status run_folder_record_changes(const char *dir, long step, const run_change *changes,
                                       int count);

#endif
