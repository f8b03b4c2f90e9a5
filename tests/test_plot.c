/* Pictures and reports: steps.csv, `clgqa plot`, scripts/compare,
 * scripts/uptrain and bench/report.
 *
 * Training runs use a tiny synthetic MNIST (8x8 images from
 * support/dataset_gen) and a 2-layer 16-wide ViT: 2 epochs of 5 steps. The
 * plot tests check that the pictures are real PNGs and, through the series
 * `clgqa plot --csv` exports, that they show exactly the run's CSV files.
 * They skip, saying so, where /usr/bin/python3 has no matplotlib
 * (scripts/setup installs python3-matplotlib, so CI runs them). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clgqa/checkpoint.h"
#include "config_internal.h"
#include "tensor_set.h"
#include "train_internal.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define TRAIN_COUNT 80 /* 5 batches of 16 */
#define TEST_COUNT 32
#define STEPS_PER_EPOCH 5
#define EPOCHS 2
#define HEADS 4
#define KV_HEADS 2
#define LAYERS 2

/* The dataset, written once by main() before the tests fork; each run's
 * folder is made inside it. */
static char *data_dir;

/* ---- fixtures ------------------------------------------------------------- */

/* The --set words of the tiny run (also handed to scripts/compare). */
static const char *const tiny_sets[] = {
    "dataset=mnist", "in_chans=1",  "size=c",        "embed_dim=16",   "num_layers=2",
    "num_heads=4",   "num_kv_heads=2", "window_size=2", "img_size=8",   "patch_size=4",
    "epochs=2",      "batch_size=16", "lr=0.003",     "schedule=cosine", "warmup_steps=3",
    "augment=none",  "save_model=0",
};
#define TINY_SET_COUNT (sizeof tiny_sets / sizeof tiny_sets[0])

/* The tiny run of `scheme` with steps.csv/groups.csv rows every `log_steps`
 * steps, into a fresh folder (out_dir). */
static void tiny_config(clgqa_config *cfg, const char *scheme, int log_steps, char *out_dir,
                        size_t out_size) {
    clgqa_config_defaults(cfg);
    char buf[4200];
    for (size_t i = 0; i < TINY_SET_COUNT; i++)
        TEST_OK(clgqa_config_set(cfg, tiny_sets[i]));
    snprintf(buf, sizeof buf, "data_dir=%s", data_dir);
    TEST_OK(clgqa_config_set(cfg, buf));
    snprintf(buf, sizeof buf, "att_scheme=%s", scheme);
    TEST_OK(clgqa_config_set(cfg, buf));
    snprintf(buf, sizeof buf, "log_steps=%d", log_steps);
    TEST_OK(clgqa_config_set(cfg, buf));
    snprintf(out_dir, out_size, "%s/run-XXXXXX", data_dir);
    ck_assert_ptr_nonnull(mkdtemp(out_dir));
    snprintf(buf, sizeof buf, "out_dir=%s", out_dir);
    TEST_OK(clgqa_config_set(cfg, buf));
    TEST_OK(clgqa_config_finalize(cfg));
}

static void train_quietly(const clgqa_config *cfg, const char *resume_dir, int stop_after) {
    clgqa_train_options options = {0};
    options.resume_dir = resume_dir;
    options.flags = CLGQA_TRAIN_QUIET;
    clgqa_train_extras extras = {0};
    extras.stop_after_epochs = stop_after;
    clgqa_train_result result;
    TEST_OK(clgqa_train_with(test_runtime(), cfg, &options, &extras, &result));
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 20;
    char *text = calloc(1, cap);
    ck_assert_ptr_nonnull(text);
    size_t n = fread(text, 1, cap - 1, f);
    ck_assert_msg(n < cap - 1, "%s is larger than the test expects", path);
    fclose(f);
    return text;
}

static int have_matplotlib(const char *test) {
    if (system("/usr/bin/python3 -c 'import matplotlib' 2>/dev/null") == 0)
        return 1;
    fprintf(stderr, "%s: skipped, /usr/bin/python3 has no matplotlib (Debian python3-matplotlib)\n",
            test);
    return 0;
}

/* The folder holding this test program (and the clgqa program beside it). */
static void build_dir(char *buf, size_t size) {
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    ck_assert(n > 0);
    buf[n] = '\0';
    *strrchr(buf, '/') = '\0';
}

/* Runs a shell command with its output into `log` (read back, NUL-ended);
 * returns the exit status. */
static int run_logged(const char *cmd, char *log, size_t log_size) {
    char log_path[] = "/tmp/clgqa-plot-log-XXXXXX", full[16384];
    int fd = mkstemp(log_path);
    ck_assert(fd >= 0);
    close(fd);
    snprintf(full, sizeof full, "%s >'%s' 2>&1", cmd, log_path);
    int status = system(full);
    char *text = read_text(log_path);
    snprintf(log, log_size, "%s", text);
    free(text);
    unlink(log_path);
    ck_assert_msg(WIFEXITED(status), "'%s' did not exit normally", cmd);
    return WEXITSTATUS(status);
}

/* ---- CSV ---------------------------------------------------------------- */

#define MAX_FIELDS 12
#define MAX_ROWS 4096

/* A CSV file as rows of fields (double quotes around a field are honoured,
 * as Python's csv writer uses them); row 0 is the header. */
typedef struct csv_table {
    char *text;
    int rows, fields[MAX_ROWS];
    char *cell[MAX_ROWS][MAX_FIELDS];
} csv_table;

static csv_table *csv_read(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    csv_table *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->text = read_text(path);
    for (char *p = t->text; *p;) {
        ck_assert_msg(t->rows < MAX_ROWS, "%s has too many rows", path);
        int f = 0;
        for (;;) {
            ck_assert_msg(f < MAX_FIELDS, "%s: too many fields in row %d", path, t->rows);
            if (*p == '"') {
                t->cell[t->rows][f++] = ++p;
                p = strchr(p, '"');
                ck_assert_msg(p != NULL, "%s: unterminated quote", path);
                *p++ = '\0';
            } else {
                t->cell[t->rows][f++] = p;
                p += strcspn(p, ",\r\n");
            }
            char end = *p;
            if (end)
                *p++ = '\0';
            if (end == '\r' && *p == '\n')
                p++;
            if (end != ',')
                break;
        }
        t->fields[t->rows++] = f;
    }
    return t;
}

static void csv_free(csv_table *t) {
    free(t->text);
    free(t);
}

static int csv_column(const csv_table *t, const char *name) {
    for (int f = 0; f < t->fields[0]; f++)
        if (!strcmp(t->cell[0][f], name))
            return f;
    ck_abort_msg("no column '%s'", name);
    return -1;
}

static double cell_number(const csv_table *t, int row, int col) {
    char *end;
    double v = strtod(t->cell[row][col], &end);
    ck_assert_msg(end != t->cell[row][col] && *end == '\0', "'%s' is not a number",
                  t->cell[row][col]);
    return v;
}

/* The points of one exported series of plot.csv, in file order. */
static int series(const csv_table *plot, const char *figure, const char *panel, const char *name,
                  double *x, double *y, int max) {
    int n = 0;
    for (int r = 1; r < plot->rows; r++) {
        if (strcmp(plot->cell[r][0], figure) || strcmp(plot->cell[r][1], panel) ||
            strcmp(plot->cell[r][2], name))
            continue;
        ck_assert_int_lt(n, max);
        x[n] = cell_number(plot, r, 3);
        y[n] = cell_number(plot, r, 4);
        n++;
    }
    return n;
}

/* ---- PNG ------------------------------------------------------------------ */

static unsigned be32(const unsigned char *b) {
    return (unsigned)b[0] << 24 | (unsigned)b[1] << 16 | (unsigned)b[2] << 8 | b[3];
}

/* A whole PNG file: the signature, IHDR first with at least min_width x
 * min_height pixels, IEND last. */
static void assert_png(const char *dir, const char *name, unsigned min_width, unsigned min_height) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s was not written", path);
    unsigned char head[24], tail[12];
    ck_assert_int_eq(fread(head, 1, sizeof head, f), sizeof head);
    ck_assert_int_eq(fseek(f, -12, SEEK_END), 0);
    ck_assert_int_eq(fread(tail, 1, sizeof tail, f), sizeof tail);
    fclose(f);
    ck_assert_msg(!memcmp(head, signature, 8), "%s is not a PNG", path);
    ck_assert_msg(be32(head + 8) == 13 && !memcmp(head + 12, "IHDR", 4), "%s: no IHDR first", path);
    unsigned width = be32(head + 16), height = be32(head + 20);
    ck_assert_msg(width >= min_width && height >= min_height, "%s is %ux%u px", path, width, height);
    ck_assert_msg(be32(tail) == 0 && !memcmp(tail + 4, "IEND", 4), "%s does not end in IEND", path);
}

/* ---- steps.csv -------------------------------------------------------------- */

START_TEST(steps_csv_windows_add_up_to_run_csv) {
    /* Rows every 2 steps and at each epoch end: global steps 2 4 5 | 7 9 10. */
    clgqa_config cfg;
    char out_dir[4200];
    tiny_config(&cfg, "kdgqa", 2, out_dir, sizeof out_dir);
    train_quietly(&cfg, NULL, 0);
    csv_table *steps = csv_read(out_dir, "steps.csv"), *run = csv_read(out_dir, "run.csv");
    ck_assert_str_eq(steps->cell[0][0], "epoch");
    const char *header[] = {"epoch", "step", "loss", "accuracy", "lr", "img_per_s", "data_wait",
                            "scale"};
    ck_assert_int_eq(steps->fields[0], 8);
    for (int f = 0; f < 8; f++)
        ck_assert_str_eq(steps->cell[0][f], header[f]);
    const int want_step[] = {2, 4, 5, 7, 9, 10};
    ck_assert_int_eq(steps->rows, 1 + 6);
    ck_assert_int_eq(run->rows, 1 + EPOCHS);
    double loss_sum[EPOCHS] = {0}, acc_sum[EPOCHS] = {0};
    for (int r = 1; r < steps->rows; r++) {
        int epoch = (int)cell_number(steps, r, 0), step = (int)cell_number(steps, r, 1);
        ck_assert_int_eq(step, want_step[r - 1]);
        ck_assert_int_eq(epoch, r <= 3 ? 1 : 2);
        int window = step - (r == 1 || r == 4 ? (epoch - 1) * STEPS_PER_EPOCH : want_step[r - 2]);
        loss_sum[epoch - 1] += window * cell_number(steps, r, 2);
        acc_sum[epoch - 1] += window * cell_number(steps, r, 3);
        /* lr: the schedule's value at the row's last step (printed to 6 digits) */
        double lr = clgqa_schedule_lr(&cfg, step - 1, EPOCHS * STEPS_PER_EPOCH);
        ck_assert_msg(fabs(cell_number(steps, r, 4) - lr) <= 1e-5 * lr, "lr %s, want %g",
                      steps->cell[r][4], lr);
        double speed = cell_number(steps, r, 5), wait = cell_number(steps, r, 6);
        ck_assert_msg(speed > 0 && wait >= 0 && wait <= 1, "row %d: %g img/s, wait %g", r, speed, wait);
        ck_assert_msg(cell_number(steps, r, 7) == 1.0, "row %d: scale %s in precision 32", r,
                      steps->cell[r][7]);
    }
    /* Every batch holds 16 images, so the step-weighted mean of the windows
     * is the epoch's mean. Both files print 6 decimals: 1.5e-6 covers their
     * rounding. */
    for (int e = 0; e < EPOCHS; e++) {
        double train_loss = cell_number(run, e + 1, 1), train_acc = cell_number(run, e + 1, 2);
        ck_assert_msg(fabs(loss_sum[e] / STEPS_PER_EPOCH - train_loss) <= 1.5e-6,
                      "epoch %d: windows give loss %.7f, run.csv %.7f", e + 1,
                      loss_sum[e] / STEPS_PER_EPOCH, train_loss);
        ck_assert_msg(fabs(acc_sum[e] / STEPS_PER_EPOCH - train_acc) <= 1.5e-6,
                      "epoch %d: windows give accuracy %.7f, run.csv %.7f", e + 1,
                      acc_sum[e] / STEPS_PER_EPOCH, train_acc);
    }
    csv_free(steps);
    csv_free(run);
    test_remove_tree(out_dir);
}
END_TEST

START_TEST(steps_csv_survives_resume) {
    /* An uninterrupted run, and one stopped after epoch 1 that had written
     * steps.csv rows past its checkpoint (as a killed run would), resumed. */
    clgqa_config whole, parts;
    char whole_dir[4200], parts_dir[4200], path[4300];
    tiny_config(&whole, "dgqa_ema", 1, whole_dir, sizeof whole_dir);
    tiny_config(&parts, "dgqa_ema", 1, parts_dir, sizeof parts_dir);
    train_quietly(&whole, NULL, 0);
    train_quietly(&parts, NULL, 1);
    snprintf(path, sizeof path, "%s/steps.csv", parts_dir);
    FILE *f = fopen(path, "a");
    ck_assert_ptr_nonnull(f);
    fputs("2,6,9.999999,0.000000,0.001,1.0,0.0000\n", f);
    fclose(f);
    train_quietly(&parts, parts_dir, 0);
    csv_table *a = csv_read(whole_dir, "steps.csv"), *b = csv_read(parts_dir, "steps.csv");
    ck_assert_int_eq(a->rows, 1 + EPOCHS * STEPS_PER_EPOCH);
    ck_assert_int_eq(b->rows, a->rows);
    /* epoch, step, loss, accuracy and lr repeat exactly; speed and wait vary */
    for (int r = 0; r < a->rows; r++)
        for (int c = 0; c < 5; c++)
            ck_assert_msg(!strcmp(a->cell[r][c], b->cell[r][c]), "row %d column %d: %s vs %s", r, c,
                          a->cell[r][c], b->cell[r][c]);
    csv_free(a);
    csv_free(b);
    test_remove_tree(whole_dir);
    test_remove_tree(parts_dir);
}
END_TEST

/* ---- clgqa plot ------------------------------------------------------------- */

/* Trains `scheme` (rows every step), runs `clgqa plot RUN --out OUT --csv`,
 * checks both PNGs and that the curves' series are run.csv's and steps.csv's.
 * Returns plot.csv and the run's groups.csv for the caller's checks. */
static void plot_run(const char *scheme, char *out_dir, size_t out_size, csv_table **plot,
                     csv_table **groups) {
    clgqa_config cfg;
    char run_dir[4200], args[8600], out[4096], err[4096];
    tiny_config(&cfg, scheme, 1, run_dir, sizeof run_dir);
    train_quietly(&cfg, NULL, 0);
    snprintf(out_dir, out_size, "%s/pictures", run_dir);
    snprintf(args, sizeof args, "plot '%s' --out '%s' --csv", run_dir, out_dir);
    ck_assert_msg(test_run_clgqa("", args, out, sizeof out, err, sizeof err) == 0, "clgqa %s: %s",
                  args, err);
    ck_assert_msg(strstr(out, "curves.png") && strstr(out, "groups.png"), "printed: %s", out);
    assert_png(out_dir, "curves.png", 640, 300);
    assert_png(out_dir, "groups.png", 640, 300);

    *plot = csv_read(out_dir, "plot.csv");
    csv_table *steps = csv_read(run_dir, "steps.csv"), *run = csv_read(run_dir, "run.csv");
    *groups = csv_read(run_dir, "groups.csv");
    double x[MAX_ROWS], y[MAX_ROWS];
    /* per step: loss, accuracy (%) and lr of every steps.csv row, at
     * x = epoch - 1 + (fraction of the epoch done) */
    const struct {
        const char *panel, *name;
        int column;
        double scale;
    } per_step[] = {{"loss", "training, per step", 2, 1},
                    {"accuracy", "training, per step", 3, 100},
                    {"lr", "learning rate", 4, 1}};
    for (size_t s = 0; s < sizeof per_step / sizeof per_step[0]; s++) {
        int n = series(*plot, "curves", per_step[s].panel, per_step[s].name, x, y, MAX_ROWS);
        ck_assert_int_eq(n, steps->rows - 1);
        for (int i = 0; i < n; i++) {
            ck_assert_msg(y[i] == per_step[s].scale * cell_number(steps, i + 1, per_step[s].column),
                          "%s '%s' point %d: %.17g, steps.csv says %s", per_step[s].panel,
                          per_step[s].name, i, y[i], steps->cell[i + 1][per_step[s].column]);
            double step = cell_number(steps, i + 1, 1), epoch = cell_number(steps, i + 1, 0);
            double want_x = epoch - 1 + (step - (epoch - 1) * STEPS_PER_EPOCH) / STEPS_PER_EPOCH;
            ck_assert_msg(fabs(x[i] - want_x) <= 1e-12, "point %d at x %.17g, want %.17g", i, x[i], want_x);
        }
    }
    /* per epoch: run.csv's four columns at x = epoch */
    const struct {
        const char *panel, *name;
        int column;
        double scale;
    } per_epoch[] = {{"loss", "training, per epoch", 1, 1},
                     {"loss", "test, per epoch", 3, 1},
                     {"accuracy", "training, per epoch", 2, 100},
                     {"accuracy", "test, per epoch", 4, 100}};
    for (size_t s = 0; s < sizeof per_epoch / sizeof per_epoch[0]; s++) {
        int n = series(*plot, "curves", per_epoch[s].panel, per_epoch[s].name, x, y, MAX_ROWS);
        ck_assert_int_eq(n, EPOCHS);
        for (int i = 0; i < n; i++) {
            ck_assert(x[i] == i + 1);
            ck_assert_msg(y[i] == per_epoch[s].scale * cell_number(run, i + 1, per_epoch[s].column),
                          "%s '%s' epoch %d: %.17g vs run.csv %s", per_epoch[s].panel,
                          per_epoch[s].name, i + 1, y[i], run->cell[i + 1][per_epoch[s].column]);
        }
    }
    csv_free(steps);
    csv_free(run);
}

/* Every groups.csv row of `layer`, in file order, must be a point of each
 * key/value head's series: x the global step after which it was read (the
 * evaluation rows at their epoch's end), y that head's query heads. */
static void assert_groups_series(const csv_table *plot, const csv_table *groups, int layer) {
    double x[KV_HEADS][MAX_ROWS], y[KV_HEADS][MAX_ROWS];
    int n[KV_HEADS];
    char panel[32], name[32];
    snprintf(panel, sizeof panel, "layer %d", layer);
    for (int g = 0; g < KV_HEADS; g++) {
        snprintf(name, sizeof name, "key/value head %d", g);
        n[g] = series(plot, "groups", panel, name, x[g], y[g], MAX_ROWS);
    }
    int point = 0;
    for (int r = 1; r < groups->rows; r++) {
        if ((int)cell_number(groups, r, 2) != layer)
            continue;
        int epoch = (int)cell_number(groups, r, 0);
        double want_x = !strcmp(groups->cell[r][1], "eval")
                            ? epoch * STEPS_PER_EPOCH
                            : (epoch - 1) * STEPS_PER_EPOCH + cell_number(groups, r, 1) + 1;
        int counts[KV_HEADS];
        ck_assert_int_eq(sscanf(groups->cell[r][3], "%d %d", &counts[0], &counts[1]), KV_HEADS);
        for (int g = 0; g < KV_HEADS; g++) {
            ck_assert_msg(point < n[g], "layer %d head %d: fewer points than groups.csv rows", layer, g);
            ck_assert_msg(x[g][point] == want_x && y[g][point] == counts[g],
                          "layer %d head %d point %d: (%g, %g), groups.csv row %d says (%g, %d)",
                          layer, g, point, x[g][point], y[g][point], r, want_x, counts[g]);
        }
        point++;
    }
    for (int g = 0; g < KV_HEADS; g++)
        ck_assert_int_eq(n[g], point);
}

START_TEST(plot_draws_a_dgqa_run) {
    if (!have_matplotlib("plot_draws_a_dgqa_run"))
        return;
    char out_dir[4400];
    csv_table *plot, *groups;
    plot_run("dgqa_diff", out_dir, sizeof out_dir, &plot, &groups);
    /* DGQA logs its split on window steps (0, 2, 4 of each epoch here) and
     * after each evaluation */
    ck_assert_int_eq(groups->rows - 1, LAYERS * EPOCHS * (3 + 1));
    for (int layer = 0; layer < LAYERS; layer++)
        assert_groups_series(plot, groups, layer);
    /* and the split moved, so the order of the points was checked too */
    int moved = 0;
    for (int r = 2; r < groups->rows; r++)
        for (int q = 1; q < r; q++)
            moved |= !strcmp(groups->cell[r][2], groups->cell[q][2]) &&
                     strcmp(groups->cell[r][3], groups->cell[q][3]);
    ck_assert_msg(moved, "the DGQA split never moved: the test shows too little");
    csv_free(plot);
    csv_free(groups);
}
END_TEST

START_TEST(plot_shows_a_static_split_as_flat_lines) {
    if (!have_matplotlib("plot_shows_a_static_split_as_flat_lines"))
        return;
    char out_dir[4400];
    csv_table *plot, *groups;
    plot_run("gqa", out_dir, sizeof out_dir, &plot, &groups);
    for (int layer = 0; layer < LAYERS; layer++) {
        assert_groups_series(plot, groups, layer);
        char panel[32], name[32];
        snprintf(panel, sizeof panel, "layer %d", layer);
        for (int g = 0; g < KV_HEADS; g++) {
            double x[MAX_ROWS], y[MAX_ROWS];
            snprintf(name, sizeof name, "key/value head %d", g);
            int n = series(plot, "groups", panel, name, x, y, MAX_ROWS);
            ck_assert_int_eq(n, EPOCHS); /* static splits: a row per evaluation */
            for (int i = 0; i < n; i++)
                ck_assert_msg(y[i] == HEADS / KV_HEADS, "GQA layer %d head %d: %g query heads",
                              layer, g, y[i]);
        }
    }
    csv_free(plot);
    csv_free(groups);
}
END_TEST

START_TEST(plot_refuses_bad_input) {
    char out[4096], err[4096], args[8600], env[4400];
    char *empty = test_temp_dir();
    ck_assert_ptr_nonnull(empty);
    ck_assert_int_eq(test_run_clgqa("", "plot /no/such/run", out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "/no/such/run");
    snprintf(args, sizeof args, "plot '%s'", empty);
    ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no run.csv");
    snprintf(args, sizeof args, "plot --compare '%s'", empty);
    ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no compare.csv");
    snprintf(args, sizeof args, "plot --uptrain '%s'", empty);
    ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no uptrain.csv");
    ck_assert_int_eq(test_run_clgqa("", "plot", out, sizeof out, err, sizeof err), 2);
    ck_assert_int_eq(test_run_clgqa("", "plot a b", out, sizeof out, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "unexpected argument 'b'"), "%s", err);
    ck_assert_int_eq(test_run_clgqa("", "plot a --out", out, sizeof out, err, sizeof err), 2);

    /* A run that has written its headers only: nothing to draw yet. */
    char path[4300];
    snprintf(path, sizeof path, "%s/run.csv", empty);
    ck_assert_int_eq(gen_write_text(path, "epoch,train_loss,train_acc,test_loss,test_acc\n"), 0);
    snprintf(path, sizeof path, "%s/steps.csv", empty);
    ck_assert_int_eq(gen_write_text(path, "epoch,step,loss,accuracy,lr,img_per_s,data_wait\n"), 0);
    snprintf(args, sizeof args, "plot '%s'", empty);
    if (have_matplotlib("plot_refuses_bad_input (empty run)")) {
        ck_assert_int_eq(test_run_clgqa("", args, out, sizeof out, err, sizeof err), 1);
        test_assert_one_line_naming(err, "no training rows yet");
    }

    /* No Python at all, and a Python without matplotlib (-S hides the
     * system's site packages). */
    ck_assert_int_eq(test_run_clgqa("CLGQA_PYTHON=/no/python3", args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "/no/python3 not found");
    snprintf(path, sizeof path, "%s/python-without-matplotlib", empty);
    ck_assert_int_eq(gen_write_text(path, "#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n"), 0);
    ck_assert_int_eq(chmod(path, 0755), 0);
    snprintf(env, sizeof env, "CLGQA_PYTHON='%s'", path);
    ck_assert_int_eq(test_run_clgqa(env, args, out, sizeof out, err, sizeof err), 1);
    test_assert_one_line_naming(err, "no matplotlib");
    test_remove_tree(empty);
    free(empty);
}
END_TEST

/* ---- scripts/compare ---------------------------------------------------------- */

START_TEST(compare_prints_mean_and_std_over_seeds) {
    if (!have_matplotlib("compare_prints_mean_and_std_over_seeds"))
        return;
    char exe[1024], out_dir[4200], cmd[12000], log[65536];
    build_dir(exe, sizeof exe);
    snprintf(out_dir, sizeof out_dir, "%s/compare-XXXXXX", data_dir);
    ck_assert_ptr_nonnull(mkdtemp(out_dir));
    int len = snprintf(cmd, sizeof cmd,
                       "CLGQA='%s/clgqa' scripts/compare --seeds 2 --schemes gqa,kdgqa --out '%s' "
                       "--set data_dir='%s'",
                       exe, out_dir, data_dir);
    for (size_t i = 0; i < TINY_SET_COUNT; i++)
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " --set %s", tiny_sets[i]);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);

    /* compare.csv: a row per run, whose test accuracy is its run.csv's */
    csv_table *table = csv_read(out_dir, "compare.csv");
    ck_assert_int_eq(table->rows, 1 + 4);
    const char *schemes[] = {"gqa", "kdgqa"};
    for (int s = 0; s < 2; s++) {
        double acc[2];
        for (int seed = 1; seed <= 2; seed++) {
            int r = 1 + 2 * s + (seed - 1);
            ck_assert_str_eq(table->cell[r][csv_column(table, "scheme")], schemes[s]);
            ck_assert_int_eq((int)cell_number(table, r, csv_column(table, "seed")), seed);
            ck_assert(cell_number(table, r, csv_column(table, "img_per_s")) > 0);
            char run_dir[4400];
            snprintf(run_dir, sizeof run_dir, "%s/%s/seed-%d", out_dir, schemes[s], seed);
            csv_table *run = csv_read(run_dir, "run.csv");
            ck_assert_int_eq(run->rows, 1 + EPOCHS);
            ck_assert_str_eq(table->cell[r][csv_column(table, "test_acc")], run->cell[EPOCHS][4]);
            csv_free(run);
            acc[seed - 1] = cell_number(table, r, csv_column(table, "test_acc"));
        }
        /* the printed row: mean and sample standard deviation, in % */
        double mean = 50 * (acc[0] + acc[1]), sd = 100 * fabs(acc[0] - acc[1]) / sqrt(2.0);
        char want[64];
        snprintf(want, sizeof want, "| %s | ", schemes[s]);
        const char *row = strstr(log, want);
        ck_assert_msg(row != NULL, "no row for %s in:\n%s", schemes[s], log);
        double got_mean, got_sd;
        ck_assert_int_eq(sscanf(row + strlen(want), "%lf%% ± %lf", &got_mean, &got_sd), 2);
        ck_assert_msg(fabs(got_mean - mean) <= 0.006 && fabs(got_sd - sd) <= 0.006,
                      "%s: printed %.2f ± %.2f, want %.4f ± %.4f", schemes[s], got_mean, got_sd,
                      mean, sd);
    }
    csv_free(table);
    /* the seeds reached the runs: their training curves differ */
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s/gqa/seed-1", out_dir);
    snprintf(b, sizeof b, "%s/gqa/seed-2", out_dir);
    csv_table *ra = csv_read(a, "run.csv"), *rb = csv_read(b, "run.csv");
    ck_assert_str_ne(ra->cell[1][1], rb->cell[1][1]);
    csv_free(ra);
    csv_free(rb);
    assert_png(out_dir, "compare.png", 640, 300);
    char *md = read_text(strcat(strcpy(a, out_dir), "/compare.md"));
    ck_assert_msg(strstr(md, "| scheme | test accuracy (2 seeds) | img/s |"), "%s", md);
    free(md);

    ck_assert_int_eq(run_logged("scripts/compare --seeds 0", log, sizeof log), 2);
    test_assert_one_line_naming(log, "--seeds");
    test_remove_tree(out_dir);
}
END_TEST

/* ---- scripts/uptrain ---------------------------------------------------------- */

/* The test accuracy and loss of a run's converted.safetensors, evaluated
 * here as `clgqa eval` does (clgqa_evaluate), with the run's config. */
static clgqa_eval_result evaluate_converted(const char *run) {
    char path[4400];
    snprintf(path, sizeof path, "%s/config.yaml", run);
    clgqa_config cfg;
    TEST_OK(clgqa_run_config(path, NULL, 0, &cfg));
    clgqa_model *model;
    clgqa_dataset *test;
    TEST_OK(test_model_create(test_runtime(), &cfg, cfg.batch_size, &model));
    snprintf(path, sizeof path, "%s/converted.safetensors", run);
    TEST_OK(clgqa_checkpoint_load_model(model, path, NULL));
    TEST_OK(test_dataset_open(&cfg, CLGQA_SPLIT_TEST, 0, &test));
    clgqa_eval_result result;
    TEST_OK(clgqa_evaluate(test_runtime(), model, test, &cfg, cfg.max_eval_batches, NULL, &result));
    clgqa_dataset_close(test);
    clgqa_model_destroy(model);
    return result;
}

/* Tensor `name` of a checkpoint file (malloc'ed floats; *n its size). */
static float *checkpoint_floats(const char *path, const char *name, size_t *n) {
    clgqa_tensor_set *file;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    const clgqa_tensor *t = clgqa_tensor_set_find(file, name);
    ck_assert_msg(t != NULL, "%s lacks %s", path, name);
    float *x = malloc(t->numel * sizeof(float));
    ck_assert_ptr_nonnull(x);
    TEST_OK(clgqa_tensor_set_read_f32(file, name, x, t->numel));
    *n = t->numel;
    clgqa_tensor_set_close(file);
    return x;
}

static struct timespec modified(const char *dir, const char *name) {
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
    return st.st_mtim;
}

#define ASSERT_UNCHANGED(a, b, what) \
    ck_assert_msg((a).tv_sec == (b).tv_sec && (a).tv_nsec == (b).tv_nsec, "%s was written again", what)

/* The whole protocol on the tiny data, 2 schemes x 2 key/value-head counts
 * x 1 seed, in two goes: --kv-heads 2, then --resume with --kv-heads 1,2,
 * after one run lost its row (as if killed after its training). Checks the
 * table's rows, the accuracy after conversion against an evaluation of the
 * kept converted file, the conversion itself, and that --resume redid
 * nothing done. (Few clgqa processes: on Intel's CPU runtime each one
 * compiles CLBlast's kernels anew, seconds each.) */
START_TEST(uptrain_converts_fine_tunes_and_resumes) {
    if (!have_matplotlib("uptrain_converts_fine_tunes_and_resumes"))
        return;
    char exe[1024], out_dir[4200], config[4300], sweep[8192], cmd[16384], log[1 << 16];
    char path[4400], want[4400], sweep_dir[4300];
    build_dir(exe, sizeof exe);
    snprintf(out_dir, sizeof out_dir, "%s/uptrain-XXXXXX", data_dir);
    ck_assert_ptr_nonnull(mkdtemp(out_dir));
    /* The base config as a file ("any config works as the base"). */
    snprintf(config, sizeof config, "%s/tiny.yaml", out_dir);
    FILE *f = fopen(config, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < TINY_SET_COUNT; i++) {
        const char *eq = strchr(tiny_sets[i], '=');
        fprintf(f, "%.*s: %s\n", (int)(eq - tiny_sets[i]), tiny_sets[i], eq + 1);
    }
    fprintf(f, "data_dir: %s\nlog_steps: 1\n", data_dir);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(sweep_dir, sizeof sweep_dir, "%s/sweep", out_dir);
    snprintf(sweep, sizeof sweep,
             "CLGQA='%s/clgqa' scripts/uptrain '%s' --schemes gqa,kdgqa --seeds 1 --epochs 1 --lr 0.001 "
             "--out '%s'",
             exe, config, sweep_dir);
    snprintf(cmd, sizeof cmd, "%s --kv-heads 2", sweep);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);

    /* gqa's run loses its row; kdgqa's and stage 1 are done */
    char lost[4400], done[4400];
    snprintf(lost, sizeof lost, "%s/gqa/kv-2/seed-1", sweep_dir);
    snprintf(done, sizeof done, "%s/kdgqa/kv-2/seed-1", sweep_dir);
    snprintf(path, sizeof path, "%s/result.csv", lost);
    ck_assert_int_eq(unlink(path), 0);
    char *lost_run_csv = read_text(strcat(strcpy(path, lost), "/run.csv"));
    struct timespec pretrained_at = modified(sweep_dir, "pretrain/model.safetensors"),
                    done_at = modified(done, "last.safetensors"), lost_at = modified(lost, "last.safetensors");
    snprintf(cmd, sizeof cmd, "%s --kv-heads 1,2 --resume", sweep);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);
    ck_assert_msg(strstr(log, "stage 1: done before") && !strstr(log, "pretraining"), "%s", log);
    snprintf(want, sizeof want, "==== kdgqa, 2 key/value heads, seed 1: done before (%s)", done);
    ck_assert_msg(strstr(log, want), "%s", log);
    snprintf(want, sizeof want, "uptrain: resuming %s", lost);
    ck_assert_msg(strstr(log, want), "%s", log);
    ck_assert_msg(strstr(log, "==== gqa, 1 key/value heads, seed 1 of 1") &&
                  strstr(log, "==== kdgqa, 1 key/value heads, seed 1 of 1"), "%s", log);
    ASSERT_UNCHANGED(pretrained_at, modified(sweep_dir, "pretrain/model.safetensors"), "stage 1's checkpoint");
    ASSERT_UNCHANGED(done_at, modified(done, "last.safetensors"), "the done run's checkpoint");
    ASSERT_UNCHANGED(lost_at, modified(lost, "last.safetensors"), "the finished run's checkpoint");
    char *again = read_text(strcat(strcpy(path, lost), "/run.csv"));
    ck_assert_str_eq(again, lost_run_csv);
    free(again);
    free(lost_run_csv);

    /* uptrain.csv: every run asked for, a row each in the order run, with
     * its run's figures */
    const char *schemes[] = {"gqa", "kdgqa"}, *kvs[] = {"1", "2"};
    csv_table *table = csv_read(sweep_dir, "uptrain.csv");
    ck_assert_int_eq(table->rows, 1 + 4);
    char pretrained[4400];
    snprintf(pretrained, sizeof pretrained, "%s/pretrain/model.safetensors", sweep_dir);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) {
            int r = 1 + 2 * s + k;
            char run[4400];
            snprintf(run, sizeof run, "%s/%s/kv-%s/seed-1", sweep_dir, schemes[s], kvs[k]);
            ck_assert_str_eq(table->cell[r][csv_column(table, "scheme")], schemes[s]);
            ck_assert_str_eq(table->cell[r][csv_column(table, "kv_heads")], kvs[k]);
            ck_assert_str_eq(table->cell[r][csv_column(table, "seed")], "1");
            csv_table *epochs = csv_read(run, "run.csv");
            ck_assert_int_eq(epochs->rows, 1 + 1); /* --epochs 1 */
            ck_assert_str_eq(table->cell[r][csv_column(table, "test_acc")], epochs->cell[1][4]);
            ck_assert_str_eq(table->cell[r][csv_column(table, "test_loss")], epochs->cell[1][3]);
            csv_free(epochs);
            /* the fine-tuning started from the converted file ... */
            snprintf(path, sizeof path, "%s/config.yaml", run);
            char *yaml = read_text(path);
            snprintf(want, sizeof want, "pretrained_ckpt: %s/converted.safetensors", run);
            ck_assert_msg(strstr(yaml, want), "%s lacks '%s'", path, want);
            free(yaml);
            /* ... whose accuracy and loss are those recorded as converted
             * (accuracy written with 6 decimals, loss with 4 as clgqa eval
             * prints it) */
            clgqa_eval_result converted = evaluate_converted(run);
            double acc = cell_number(table, r, csv_column(table, "converted_acc")),
                   loss = cell_number(table, r, csv_column(table, "converted_loss"));
            ck_assert_msg(fabs(acc - converted.accuracy) <= 5e-7 && fabs(loss - converted.loss) <= 5e-5,
                          "%s: recorded %.6f, %.4f; evaluated %.6f, %.4f", run, acc, loss,
                          converted.accuracy, converted.loss);
            /* ... and which is stage 1's MHSA checkpoint with its 4 key heads
             * mean-pooled into G groups (layer 1's key weight: d x C = 4 x
             * 16 floats a head) */
            size_t n_mhsa, n_conv;
            snprintf(path, sizeof path, "%s/converted.safetensors", run);
            float *mhsa = checkpoint_floats(pretrained, "blocks.1.attn.k.weight", &n_mhsa);
            float *conv = checkpoint_floats(path, "blocks.1.attn.k.weight", &n_conv);
            int groups = atoi(kvs[k]), per = HEADS / groups, head = 16 / HEADS * 16;
            ck_assert_uint_eq(n_mhsa, 16 * 16);
            ck_assert_uint_eq(n_conv, (size_t)groups * head);
            for (int g = 0; g < groups; g++)
                for (int i = 0; i < head; i++) {
                    double mean = 0;
                    for (int h = 0; h < per; h++)
                        mean += mhsa[(g * per + h) * head + i];
                    mean /= per;
                    /* the mean of 2 or 4 floats, rounded to float: 1e-6 relative */
                    ck_assert_msg(fabs(conv[g * head + i] - mean) <= 1e-6 * fabs(mean) + 1e-9,
                                  "%s: k[%d][%d] = %g, mean %g", path, g, i, conv[g * head + i], mean);
                }
            free(mhsa);
            free(conv);
        }
    /* ... and for one run, `clgqa eval` on the file prints those figures */
    snprintf(cmd, sizeof cmd,
             "'%s/clgqa' eval '%s' --set att_scheme=kdgqa --set num_kv_heads=1 "
             "--checkpoint '%s/kdgqa/kv-1/seed-1/converted.safetensors'",
             exe, config, sweep_dir);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);
    double printed;
    char printed_loss[64];
    ck_assert_msg(strstr(log, "test accuracy: ") && strstr(log, "test loss: "), "%s", log);
    ck_assert_int_eq(sscanf(strstr(log, "test accuracy: "), "test accuracy: %lf%%", &printed), 1);
    ck_assert_int_eq(sscanf(strstr(log, "test loss: "), "test loss: %63s", printed_loss), 1);
    ck_assert_msg(fabs(100 * cell_number(table, 3, csv_column(table, "converted_acc")) - printed) <= 0.005 + 1e-9,
                  "%s vs %s", table->cell[3][csv_column(table, "converted_acc")], log);
    ck_assert_str_eq(table->cell[3][csv_column(table, "converted_loss")], printed_loss);
    /* the figure shows those figures: per scheme, accuracy against G (one
     * seed: the mean is the run's, the std 0) */
    char pics[4400];
    snprintf(pics, sizeof pics, "%s/pics", out_dir);
    snprintf(cmd, sizeof cmd, "'%s/clgqa' plot --uptrain '%s' --out '%s' --csv", exe, sweep_dir, pics);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);
    csv_table *plot = csv_read(pics, "plot.csv");
    for (int s = 0; s < 2; s++)
        for (int p = 0; p < 2; p++) {
            double x[4], y[4];
            char name[64];
            snprintf(name, sizeof name, "%s mean", schemes[s]);
            ck_assert_int_eq(series(plot, "uptrain", p ? "converted" : "fine-tuned", name, x, y, 4), 2);
            for (int k = 0; k < 2; k++) {
                ck_assert_int_eq((int)x[k], k + 1);
                double acc = cell_number(table, 1 + 2 * s + k, csv_column(table, p ? "converted_acc" : "test_acc"));
                ck_assert_msg(fabs(y[k] - 100 * acc) <= 1e-9, "%s %s G %d: %g, want %g", name,
                              p ? "converted" : "fine-tuned", k + 1, y[k], 100 * acc);
            }
            snprintf(name, sizeof name, "%s std", schemes[s]);
            ck_assert_int_eq(series(plot, "uptrain", p ? "converted" : "fine-tuned", name, x, y, 4), 2);
            ck_assert(y[0] == 0 && y[1] == 0);
        }
    csv_free(plot);
    csv_free(table);
    char *md = read_text(strcat(strcpy(path, sweep_dir), "/uptrain.md"));
    ck_assert_msg(strstr(md, "| scheme | key/value heads | right after conversion | after fine-tuning (1 seed) |"),
                  "%s", md);
    ck_assert_msg(strstr(md, "| gqa | 1 | ") && strstr(md, "| kdgqa | 2 | "), "%s", md);
    free(md);
    assert_png(sweep_dir, "uptrain.png", 640, 300);
    snprintf(path, sizeof path, "%s/kdgqa", sweep_dir);
    assert_png(path, "groups.png", 640, 200);

    /* a sweep's folder is not taken over; a resume keeps its recipe; bad
     * lists are one line */
    ck_assert_int_eq(run_logged(sweep, log, sizeof log), 1);
    test_assert_one_line_naming(log, "holds a sweep: --resume continues it, --overwrite starts over");
    snprintf(cmd, sizeof cmd, "%s --resume --lr 0.002", sweep);
    ck_assert_int_eq(run_logged(cmd, log, sizeof log), 1);
    test_assert_one_line_naming(log, "now lr: 0.002");
    ck_assert_int_eq(run_logged("scripts/uptrain --kv-heads 1,x", log, sizeof log), 2);
    test_assert_one_line_naming(log, "--kv-heads");
    test_remove_tree(out_dir);
}
END_TEST

/* ---- bench/report ------------------------------------------------------------ */

#define BENCH_FIXTURES "tests/fixtures/bench/pocl-cpu"

static cJSON *read_json(const char *path) {
    char *text = read_text(path);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    ck_assert_msg(doc != NULL, "%s is not JSON", path);
    return doc;
}

static double json_number(const cJSON *scheme, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(scheme, key);
    ck_assert_msg(cJSON_IsNumber(item), "no number '%s'", key);
    return item->valuedouble;
}

START_TEST(bench_report_merges_clgqa_and_pytorch_files) {
    if (!have_matplotlib("bench_report_merges_clgqa_and_pytorch_files"))
        return;
    /* Real files: clgqa bench and bench/torch_ref.py, both
     * --batch 8 --steps 2 --warmup 1, on this project's 2-core machine. */
    char *out_dir = test_temp_dir(), cmd[8192], log[8192];
    ck_assert_ptr_nonnull(out_dir);
    snprintf(cmd, sizeof cmd, "bench/report %s/clgqa.json %s/pytorch.json --out '%s'",
             BENCH_FIXTURES, BENCH_FIXTURES, out_dir);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);
    assert_png(out_dir, "throughput.png", 640, 300);
    assert_png(out_dir, "ops.png", 640, 300);
    char path[4300];
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    char *md = read_text(path);
    ck_assert_msg(strstr(md, "## demo: 28x28x1 images, patch 7, 64 wide, 4 layers"), "%s", md);

    /* a clgqa row per scheme: img/s, the ratio to PyTorch, GEMM against the
     * peak, memory and the op family that took the most device time */
    cJSON *mine = read_json(BENCH_FIXTURES "/clgqa.json"), *torch = read_json(BENCH_FIXTURES "/pytorch.json");
    double peak = json_number(mine, "gemm_peak_gflops");
    const cJSON *scheme;
    int rows = 0;
    cJSON_ArrayForEach(scheme, cJSON_GetObjectItemCaseSensitive(mine, "schemes")) {
        const cJSON *theirs = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(torch, "schemes"), scheme->string);
        ck_assert_ptr_nonnull(theirs);
        const cJSON *ops = cJSON_GetObjectItemCaseSensitive(scheme, "op_ms"), *op, *top = NULL;
        cJSON_ArrayForEach(op, ops) if (!top || op->valuedouble > top->valuedouble) top = op;
        char want[1024];
        snprintf(want, sizeof want,
                 "| pocl-cpu | clgqa | %s | %s | 8 | %.1f | %.1f | %.2fx | %.2fx | %.1f (%.0f%% of %.0f) | "
                 "%.1f | %s %.0f%%",
                 cJSON_GetObjectItemCaseSensitive(mine, "device")->valuestring, scheme->string,
                 json_number(scheme, "train_img_s"), json_number(scheme, "infer_img_s"),
                 json_number(scheme, "train_img_s") / json_number(theirs, "train_img_s"),
                 json_number(scheme, "infer_img_s") / json_number(theirs, "infer_img_s"),
                 json_number(scheme, "gemm_gflops"), 100 * json_number(scheme, "gemm_gflops") / peak,
                 peak, json_number(scheme, "device_memory_bytes") / (1 << 20), top->string,
                 100 * top->valuedouble / json_number(scheme, "profiled_device_ms"));
        ck_assert_msg(strstr(md, want), "report.md lacks\n%s\nin\n%s", want, md);
        rows++;
    }
    ck_assert_int_eq(rows, 6);
    ck_assert_msg(strstr(md, "| pocl-cpu | PyTorch | AMD EPYC (1 threads) | gqa | 8 |"), "%s", md);
    cJSON_Delete(mine);
    cJSON_Delete(torch);
    free(md);
    test_remove_tree(out_dir);
    free(out_dir);
}
END_TEST

/* `clgqa bench --device all` (a real file: batch 8, 2 steps, on PoCL and
 * Intel's CPU runtime of this project's machine): every device a machine of
 * its own, "<folder>: <platform>", with its own figures. */
START_TEST(bench_report_takes_every_device_of_one_file) {
    if (!have_matplotlib("bench_report_takes_every_device_of_one_file"))
        return;
    char *out_dir = test_temp_dir(), cmd[8192], log[8192];
    ck_assert_ptr_nonnull(out_dir);
    snprintf(cmd, sizeof cmd, "bench/report tests/fixtures/bench/two-devices/clgqa.json --out '%s'",
             out_dir);
    ck_assert_msg(run_logged(cmd, log, sizeof log) == 0, "%s:\n%s", cmd, log);
    ck_assert_msg(strstr(log, "2 results"), "%s", log);
    char path[4300];
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    char *md = read_text(path);
    cJSON *all = read_json("tests/fixtures/bench/two-devices/clgqa.json"), *device;
    int rows = 0;
    cJSON_ArrayForEach(device, cJSON_GetObjectItemCaseSensitive(all, "devices")) {
        const cJSON *scheme;
        cJSON_ArrayForEach(scheme, cJSON_GetObjectItemCaseSensitive(device, "schemes")) {
            char want[1024];
            snprintf(want, sizeof want, "| two-devices: %s | clgqa | %s | %s | 8 | %.1f | %.1f |",
                     cJSON_GetObjectItemCaseSensitive(device, "platform")->valuestring,
                     cJSON_GetObjectItemCaseSensitive(device, "device")->valuestring,
                     scheme->string, json_number(scheme, "train_img_s"),
                     json_number(scheme, "infer_img_s"));
            ck_assert_msg(strstr(md, want), "report.md lacks\n%s\nin\n%s", want, md);
            rows++;
        }
    }
    ck_assert_int_eq(rows, 4);
    cJSON_Delete(all);
    free(md);
    test_remove_tree(out_dir);
    free(out_dir);
}
END_TEST

START_TEST(bench_report_refuses_other_files) {
    char *dir = test_temp_dir(), cmd[8192], log[8192], path[4300];
    ck_assert_ptr_nonnull(dir);
    /* a JSON file of another schema (a CLBlast tuning file), by name */
    ck_assert_int_eq(run_logged("bench/report " BENCH_FIXTURES "/clgqa.json tuning/nvidia-h100-xgemm.json",
                                log, sizeof log), 1);
    test_assert_one_line_naming(log, "tuning/nvidia-h100-xgemm.json is not a clgqa bench");
    snprintf(path, sizeof path, "%s/truncated.json", dir);
    ck_assert_int_eq(gen_write_text(path, "{\"tool\": \"clgqa\", \"schemes\": {"), 0);
    snprintf(cmd, sizeof cmd, "bench/report '%s'", path);
    ck_assert_int_eq(run_logged(cmd, log, sizeof log), 1);
    test_assert_one_line_naming(log, "truncated.json is not JSON");
    snprintf(path, sizeof path, "%s/no-schemes.json", dir);
    ck_assert_int_eq(gen_write_text(path, "{\"tool\": \"pytorch\", \"device\": \"x\", "
                                          "\"config\": {\"size\": \"s\", \"batch\": 4}}"), 0);
    snprintf(cmd, sizeof cmd, "bench/report '%s'", path);
    ck_assert_int_eq(run_logged(cmd, log, sizeof log), 1);
    test_assert_one_line_naming(log, "no \"schemes\"");
    ck_assert_int_eq(run_logged("bench/report /no/such.json", log, sizeof log), 1);
    test_assert_one_line_naming(log, "/no/such.json");
    test_remove_tree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("plot");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, steps_csv_windows_add_up_to_run_csv);
    tcase_add_test(tc, steps_csv_survives_resume);
    tcase_add_test(tc, plot_draws_a_dgqa_run);
    tcase_add_test(tc, plot_shows_a_static_split_as_flat_lines);
    tcase_add_test(tc, plot_refuses_bad_input);
    tcase_add_test(tc, compare_prints_mean_and_std_over_seeds);
    tcase_add_test(tc, uptrain_converts_fine_tunes_and_resumes);
    tcase_add_test(tc, bench_report_merges_clgqa_and_pytorch_files);
    tcase_add_test(tc, bench_report_takes_every_device_of_one_file);
    tcase_add_test(tc, bench_report_refuses_other_files);
    suite_add_tcase(s, tc);
    data_dir = test_temp_dir();
    if (!data_dir || gen_mnist(data_dir, TRAIN_COUNT, TEST_COUNT, 8, 0) != 0)
        return 1;
    int status = test_run_suite(s);
    test_remove_tree(data_dir);
    free(data_dir);
    return status;
}
