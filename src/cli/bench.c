/* clgqa bench: per attention scheme, train-step time and img/s (median of N
 * steps after warm-up, with min and max), inference img/s, the device time of
 * each op family in one profiled step (OpenCL events) as shares of the step,
 * attention forward and backward milliseconds, achieved GEMM GFLOP/s against
 * a CLBlast SGEMM peak measured in the same run, the device memory the model
 * allocates, which CLBlast GEMM kernel (direct or indirect) ran each of a
 * step's products, and what one training step asks of the OpenCL runtime: commands
 * enqueued (CLBlast's included), buffers created and host waits, counted by
 * libclgqa_counter.so (bench/counter), which the command preloads by running
 * itself again, and the step's kernel launches per family (launches,
 * work-groups per launch, CLBlast's helper kernels) from the counter's
 * launch record. Under the counter's pose (CLGQA_COUNTER_POSE) PoCL stands
 * in for another device; with CLGQA_COUNTER_MARKERS no kernel runs, and the
 * output says that its times are meaningless. A table on stdout and, with
 * --json, every figure in a file (same schema as bench/torch_ref.py). */
#include <cjson/cJSON.h>
#include <clblast_c.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attention.h"
#include "batch_upload.h"
#include "clock.h"
#include "commands.h"
#include "config_internal.h"
#include "counter/command_counter.h"
#include "environment.h"
#include "gemm.h"
#include "memory_check.h"
#include "mixup.h"
#include "model_private.h"
#include "ops.h"
#include "runtime_internal.h"
#include "scheme.h"

#define MAX_SCHEMES 6
#define MAX_DEVICES 16
#define MAX_LABELS 24
#define MAX_SETS 16
#define MAX_KERNELS 96

typedef struct bench_options {
    const char *size; /* "demo" (the README demo's ViT) or s, b, l (patch 16 at 224) */
    int batch, steps, warmup;
    int kv_heads;     /* 0: the preset's */
    const char *schemes;
    const char *device;
    const char *json_path;
    const char *precision; /* "32" or "16-mixed" (the loss scaler on) */
    int memory_only;       /* --memory: the memory table by precision, no steps */
    /* --set key=value over the demo config: the training recipe's keys
     * (label_smoothing, mixup_alpha, cutmix_alpha, drop_path,
     * model_ema_decay, no_weight_decay, ...) make each step the trainer's
     * step with them. */
    const char *sets[MAX_SETS];
    int set_count;
} bench_options;

/* A kernel's or a kernel family's launches in the counted step. */
typedef enum kernel_role { OWN_KERNEL, CLBLAST_GEMM, CLBLAST_HELPER } kernel_role;
typedef struct launch_stats {
    char name[64];
    char family[64];         /* a kernel's family ("" in the family table) */
    kernel_role role;        /* clgqa's, CLBlast's GEMM kernel or CLBlast's helper */
    long launches;
    long groups_min, groups_median; /* work-groups per launch; 0 when the local
                                       size was left to the driver */
} launch_stats;

typedef struct scheme_result {
    clgqa_scheme scheme;
    double step_ms_median, step_ms_min, step_ms_max;
    double infer_ms_median;
    double profiled_step_ms; /* wall time of the profiled step */
    double device_ms;        /* sum of its event times */
    clgqa_profile_total totals[MAX_LABELS];
    int total_count;
    double attention_forward_ms, attention_backward_ms; /* in the profiled step */
    double gemm_gflops;
    size_t model_bytes;          /* allocated by clgqa_model_create */
    size_t attention_saved_bytes; /* what attention keeps for backward, all layers */
    size_t gemm_temp_bytes;      /* CLBlast's temporary buffer after the steps */
    long gemm_direct, gemm_indirect; /* products of one training step, per kernel */
    int counted;                 /* the counts below were measured */
    clgqa_command_counts step;   /* one training step after warm-up */
    clgqa_command_counts first_step; /* the first step (buffers grow there) */
    int launches_recorded;       /* the counter recorded the counted step's launches */
    launch_stats kernels[MAX_KERNELS], families[MAX_KERNELS];
    int kernel_count, family_count;
    long gemm_launches, helper_launches; /* CLBlast's GEMM kernels and its helpers */
    long smallest_gemm_groups;   /* fewest work-groups of any GEMM launch, 0 if none */
} scheme_result;

static double now_ms(void) { return 1e3 * clgqa_clock_seconds(); }

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(double *ms, int n, double *median, double *min, double *max) {
    qsort(ms, (size_t)n, sizeof *ms, compare_double);
    *median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    *min = ms[0];
    *max = ms[n - 1];
}

/* The model config of a benchmark size. */
static clgqa_status bench_config(const bench_options *opt, clgqa_scheme scheme, clgqa_config *cfg) {
    CLGQA_TRY(clgqa_config_demo(cfg));
    if (strcmp(opt->size, "demo") != 0) {
        if (strlen(opt->size) != 1 || !strchr("sbl", opt->size[0]))
            return clgqa_fail(CLGQA_ERR_INVALID_ARG, "--size must be demo, s, b or l, not '%s'",
                              opt->size);
        cfg->size = opt->size[0];
        cfg->img_size = 224;
        cfg->patch_size = 16;
        cfg->in_chans = 3;
        cfg->num_classes = 1000;
        cfg->num_kv_heads = opt->size[0] == 's' ? 3 : opt->size[0] == 'b' ? 6 : 8;
    }
    if (opt->kv_heads > 0)
        cfg->num_kv_heads = opt->kv_heads;
    cfg->att_scheme = scheme;
    cfg->batch_size = opt->batch;
    char precision[64];
    snprintf(precision, sizeof precision, "precision=%s", opt->precision);
    if (clgqa_config_set(cfg, precision) != CLGQA_OK)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "--precision must be 32 or 16-mixed, not '%s'",
                          opt->precision);
    for (int i = 0; i < opt->set_count; i++)
        CLGQA_TRY(clgqa_config_set(cfg, opt->sets[i]));
    return clgqa_config_finalize(cfg);
}

/* A synthetic batch, uploaded as training does: 8-bit pixels through pinned
 * staging on the transfer queue, normalised on the device; and the recipe
 * its steps follow (the config's regularisers, EMA and decay groups). */
typedef struct bench_batch {
    clgqa_batch host;
    clgqa_batch_upload *upload;
    const clgqa_config *cfg;
    clgqa_mixup mixup;
    clgqa_adamw adamw;
} bench_batch;

static const float bench_mean[3] = {0.5f, 0.5f, 0.5f}, bench_std[3] = {0.5f, 0.5f, 0.5f};

/* The forward of a training step as the trainer runs it: the batch's
 * upload, its Mixup/CutMix draw, the forward with the recipe's soft
 * targets and drop path. */
static clgqa_status enqueue_train_forward(clgqa_model *model, const bench_batch *b, long step) {
    clgqa_view pixels, labels;
    CLGQA_TRY(clgqa_batch_upload_next(b->upload, &b->host, &pixels, &labels));
    clgqa_train_batch train = {.label_weight = 1.0};
    clgqa_host_draws draws = {b->cfg->seed, clgqa_stream_id(CLGQA_RNG_MIXUP, 0, (uint64_t)step), 0};
    clgqa_mixup_draw(&b->mixup, &draws, b->cfg->img_size, &train.mix, &train.label_weight);
    return clgqa_model_forward_train(model, pixels, labels, b->host.count, bench_mean, bench_std,
                                     &(clgqa_pass){CLGQA_PASS_TRAIN, step, step}, &train);
}

/* The rest of it: backward, AdamW and the weights' EMA. */
static clgqa_status enqueue_train_update(clgqa_model *model, const bench_batch *b, long step) {
    CLGQA_TRY(clgqa_model_backward(model));
    CLGQA_TRY(clgqa_model_step(model, &b->adamw, step + 1));
    return b->cfg->model_ema_decay > 0 ? clgqa_model_ema_update(model, b->cfg->model_ema_decay)
                                       : CLGQA_OK;
}

static clgqa_status enqueue_train_step(clgqa_model *model, const bench_batch *b, long step) {
    CLGQA_TRY(enqueue_train_forward(model, b, step));
    return enqueue_train_update(model, b, step);
}

/* The counter library's read function when it is loaded, else NULL. */
static clgqa_command_counts_fn *command_counter(void) {
    clgqa_command_counts_fn *read;
    *(void **)&read = dlsym(RTLD_DEFAULT, CLGQA_COMMAND_COUNTS_SYMBOL);
    return read;
}

/* The counter's launch record and its mode, NULL and none when not loaded. */
static clgqa_kernel_launches_fn *launch_record(void) {
    clgqa_kernel_launches_fn *read;
    *(void **)&read = dlsym(RTLD_DEFAULT, CLGQA_KERNEL_LAUNCHES_SYMBOL);
    return read;
}
static clgqa_counter_mode counter_mode(void) {
    clgqa_counter_mode mode = {"", "", 0};
    clgqa_counter_mode_fn *read;
    *(void **)&read = dlsym(RTLD_DEFAULT, CLGQA_COUNTER_MODE_SYMBOL);
    if (read)
        read(&mode);
    return mode;
}

/* Enqueue one step, counting what it asks of OpenCL (when the counter is
 * loaded) and noting the numbers of its first and past-last kernel launch
 * in `launches` (when given), then wait for it (not counted: the harness's
 * own wait). */
static clgqa_status train_step(clgqa_runtime *rt, clgqa_model *model, const bench_batch *b,
                               long step, clgqa_command_counts *counts, long launches[2]) {
    clgqa_command_counts_fn *read = counts ? command_counter() : NULL;
    clgqa_kernel_launches_fn *record = launches ? launch_record() : NULL;
    clgqa_command_counts before = {0}, after = {0};
    if (read)
        read(&before);
    if (record)
        launches[0] = record(0, NULL, 0);
    CLGQA_TRY(enqueue_train_step(model, b, step));
    if (record)
        launches[1] = record(0, NULL, 0);
    if (read) {
        read(&after);
        counts->kernels = after.kernels - before.kernels;
        counts->transfers = after.transfers - before.transfers;
        counts->other_commands = after.other_commands - before.other_commands;
        counts->buffers_created = after.buffers_created - before.buffers_created;
        counts->host_waits = after.host_waits - before.host_waits;
        counts->queued_waits = after.queued_waits - before.queued_waits;
    }
    return clgqa_finish(rt);
}

static long command_total(const clgqa_command_counts *c) {
    return c->kernels + c->transfers + c->other_commands;
}

/* ------------------------------------------------ launches per family */

static int compare_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* CLBlast's kernels (those of no clgqa family) by role: its GEMM kernels,
 * all named Xgemm... (Xgemm, XgemmDirect in its NN, NT, TN and TT variants,
 * one family, and the strided-batched XgemmStridedBatched and
 * XgemmDirectStridedBatched* of split-K), and the helpers it runs around
 * the indirect ones (pad, copy, transpose). */
static kernel_role clblast_role(const char *kernel) {
    return !strncmp(kernel, "Xgemm", 5) ? CLBLAST_GEMM : CLBLAST_HELPER;
}

/* The entry of `name` in table[0..*count), added when new (NULL: full). */
static launch_stats *stats_entry(launch_stats *table, int *count, const char *name) {
    for (int i = 0; i < *count; i++)
        if (!strcmp(table[i].name, name))
            return &table[i];
    if (*count == MAX_KERNELS)
        return NULL;
    launch_stats *s = &table[(*count)++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

/* Minimum and median (the lower middle one of an even count) of the
 * work-groups of the launches whose key (kernel or family) is `name`. */
static void work_group_figures(const clgqa_kernel_launch *l, const char *const *keys, long n,
                               long *groups, launch_stats *s) {
    long known = 0;
    for (long i = 0; i < n; i++)
        if (!strcmp(keys[i], s->name) && l[i].work_groups > 0)
            groups[known++] = l[i].work_groups;
    if (known == 0)
        return;
    qsort(groups, (size_t)known, sizeof *groups, compare_long);
    s->groups_min = groups[0];
    s->groups_median = groups[(known - 1) / 2];
}

/* The counted step's launches `first` to `end` (the counter's numbers) per
 * kernel and per family into res. */
static clgqa_status tally_launches(const clgqa_runtime *rt, long first, long end,
                                   scheme_result *res) {
    clgqa_kernel_launches_fn *record = launch_record();
    long n = end - first;
    if (!record || n <= 0 || n > CLGQA_LAUNCH_RECORD_SIZE)
        return CLGQA_OK; /* not recorded (or more than the record keeps) */
    clgqa_kernel_launch *l = malloc((size_t)n * sizeof *l);
    const char **kernel_keys = malloc((size_t)n * sizeof *kernel_keys);
    const char **family_keys = malloc((size_t)n * sizeof *family_keys);
    long *groups = malloc((size_t)n * sizeof *groups);
    clgqa_status status = CLGQA_OK;
    if (!l || !kernel_keys || !family_keys || !groups) {
        status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
        goto done;
    }
    record(first, l, n);
    res->kernel_count = res->family_count = 0;
    for (long i = 0; i < n; i++) {
        const char *family = clgqa_kernel_family(rt, l[i].kernel);
        kernel_role role = family ? OWN_KERNEL : clblast_role(l[i].kernel);
        if (!family)
            family = strncmp(l[i].kernel, "XgemmDirect", 11) ? l[i].kernel : "XgemmDirect";
        launch_stats *k = stats_entry(res->kernels, &res->kernel_count, l[i].kernel);
        launch_stats *f = stats_entry(res->families, &res->family_count, family);
        if (!k || !f) {
            status = clgqa_fail(CLGQA_ERR_INVALID_ARG, "more than %d kernels in a step",
                                MAX_KERNELS);
            goto done;
        }
        snprintf(k->family, sizeof k->family, "%s", family);
        k->role = f->role = role;
        k->launches++;
        f->launches++;
        kernel_keys[i] = k->name;
        family_keys[i] = f->name;
        if (role == CLBLAST_GEMM) {
            res->gemm_launches++;
            if (l[i].work_groups > 0 &&
                (!res->smallest_gemm_groups || l[i].work_groups < res->smallest_gemm_groups))
                res->smallest_gemm_groups = l[i].work_groups;
        }
        res->helper_launches += role == CLBLAST_HELPER;
    }
    for (int i = 0; i < res->kernel_count; i++)
        work_group_figures(l, kernel_keys, n, groups, &res->kernels[i]);
    for (int i = 0; i < res->family_count; i++)
        work_group_figures(l, family_keys, n, groups, &res->families[i]);
    res->launches_recorded = 1;
done:
    free(l);
    free(kernel_keys);
    free(family_keys);
    free(groups);
    return status;
}

/* Adds a profile's attention time (the attention and PGQA labels) to *ms and
 * its totals to the step's. */
static void merge_profile(scheme_result *res, const clgqa_profile_total *totals, int count,
                          double *attention_ms) {
    for (int i = 0; i < count; i++) {
        if (!strcmp(totals[i].label, "attention") || !strcmp(totals[i].label, "pgqa"))
            *attention_ms += totals[i].milliseconds;
        int t = 0;
        while (t < res->total_count && strcmp(res->totals[t].label, totals[i].label))
            t++;
        if (t == res->total_count) {
            if (t == MAX_LABELS)
                continue;
            res->totals[t] = totals[i];
            res->total_count++;
            continue;
        }
        res->totals[t].milliseconds += totals[i].milliseconds;
        res->totals[t].launches += totals[i].launches;
        res->totals[t].flops += totals[i].flops;
    }
}

/* The profiled step: forward and backward profiled apart, so that
 * attention's forward and backward times are told apart. */
static clgqa_status profiled_step(clgqa_runtime *rt, clgqa_model *model, const bench_batch *b,
                                  long step, scheme_result *res) {
    clgqa_profile_total totals[MAX_LABELS];
    int count;
    double t0 = now_ms();
    clgqa_view pixels, labels;
    CLGQA_TRY(clgqa_profile_begin(rt));
    (void)pixels, (void)labels;
    clgqa_status status = enqueue_train_forward(model, b, step);
    clgqa_status end = clgqa_profile_end(rt, totals, MAX_LABELS, &count);
    CLGQA_TRY(status ? status : end);
    merge_profile(res, totals, count, &res->attention_forward_ms);
    CLGQA_TRY(clgqa_profile_begin(rt));
    status = enqueue_train_update(model, b, step);
    end = clgqa_profile_end(rt, totals, MAX_LABELS, &count);
    CLGQA_TRY(status ? status : end);
    merge_profile(res, totals, count, &res->attention_backward_ms);
    res->profiled_step_ms = now_ms() - t0;
    return CLGQA_OK;
}

static clgqa_status bench_scheme(clgqa_runtime *rt, const bench_options *opt, clgqa_scheme scheme,
                                 scheme_result *res) {
    clgqa_config cfg;
    CLGQA_TRY(bench_config(opt, scheme, &cfg));
    memset(res, 0, sizeof *res);
    res->scheme = scheme;
    size_t before = clgqa_runtime_allocated_bytes(rt);
    clgqa_model *model;
    clgqa_model_desc desc;
    clgqa_config_model_desc(&cfg, &desc);
    const clgqa_storage storage = clgqa_config_storage(&cfg);
    CLGQA_TRY(clgqa_model_create_stored(rt, &desc, opt->batch, storage, &model));
    const clgqa_regularisation regularisation = {cfg.label_smoothing, cfg.drop_path};
    clgqa_status status = clgqa_model_set_regularisation(model, &regularisation);
    if (status == CLGQA_OK && cfg.model_ema_decay > 0)
        status = clgqa_model_ema_start(model);
    if (status != CLGQA_OK) {
        clgqa_model_destroy(model);
        return status;
    }
    res->model_bytes = clgqa_runtime_allocated_bytes(rt) - before;
    static const clgqa_loss_scaler fresh = {CLGQA_LOSS_SCALE_INIT, 0, 0, 0};
    clgqa_status scaler = cfg.precision == CLGQA_PRECISION_16_MIXED
                              ? clgqa_model_set_loss_scaler(model, &fresh) : CLGQA_OK;
    if (scaler != CLGQA_OK) {
        clgqa_model_destroy(model);
        return scaler;
    }
    const clgqa_model_dims *dims = clgqa_model_get_dims(model);
    clgqa_attention_dims ad = {opt->batch, dims->tokens, dims->num_heads, dims->kv_heads,
                               dims->head_dim, 0, storage};
    res->attention_saved_bytes =
        (size_t)dims->num_layers * sizeof(float) *
        clgqa_attention_saved_floats(&ad, clgqa_scheme_traits_of(scheme)->perturbs,
                                     clgqa_runtime_attention_kernel(rt));

    /* Synthetic batch: the benchmark measures compute, not data loading. */
    size_t pixels = (size_t)opt->batch * cfg.in_chans * cfg.img_size * cfg.img_size;
    bench_batch b = {{NULL, malloc(pixels), malloc((size_t)opt->batch * sizeof(int32_t)),
                      opt->batch, 0, 0, 0},
                     NULL,
                     &cfg,
                     {cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mixup_prob, cfg.mixup_switch_prob},
                     {1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.0f, cfg.no_weight_decay}};
    double *ms = malloc((size_t)(opt->steps > 0 ? opt->steps : 1) * sizeof *ms);
    if (!b.host.pixels || !b.host.labels || !ms) {
        status = clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
        goto done;
    }
    for (size_t i = 0; i < pixels; i++)
        b.host.pixels[i] = (uint8_t)clgqa_host_random_bits(cfg.seed, 1, (uint64_t)i);
    for (int i = 0; i < opt->batch; i++)
        b.host.labels[i] = (int32_t)(clgqa_host_random_bits(cfg.seed, 2, (uint64_t)i) %
                                     (uint32_t)cfg.num_classes);
    if ((status = clgqa_batch_upload_create(rt, dims, opt->batch, &b.upload)))
        goto done;

    long step = 0;
    for (int i = 0; i < opt->warmup; i++)
        if ((status = train_step(rt, model, &b, step++, i ? NULL : &res->first_step, NULL)))
            goto done;
    for (int i = 0; i < opt->steps; i++) {
        double t0 = now_ms();
        if ((status = train_step(rt, model, &b, step++, NULL, NULL)))
            goto done;
        ms[i] = now_ms() - t0;
    }
    summarise(ms, opt->steps, &res->step_ms_median, &res->step_ms_min, &res->step_ms_max);
    clgqa_gemm_paths gemms = clgqa_gemm_paths_taken(rt);
    long launches[2] = {0, 0};
    if ((status = train_step(rt, model, &b, step++, &res->step, launches)) ||
        (status = tally_launches(rt, launches[0], launches[1], res)))
        goto done;
    res->gemm_direct = clgqa_gemm_paths_taken(rt).direct_calls - gemms.direct_calls;
    res->gemm_indirect = clgqa_gemm_paths_taken(rt).indirect_calls - gemms.indirect_calls;
    res->counted = command_counter() != NULL;
    res->gemm_temp_bytes = clgqa_gemm_temp_bytes(rt);

    /* One more step with every command's events recorded. */
    if ((status = profiled_step(rt, model, &b, step++, res)))
        goto done;
    for (int i = 0; i < res->total_count; i++) {
        res->device_ms += res->totals[i].milliseconds;
        if (!strcmp(res->totals[i].label, "gemm") && res->totals[i].milliseconds > 0)
            res->gemm_gflops = res->totals[i].flops / (res->totals[i].milliseconds * 1e6);
    }

    for (int i = 0; i < opt->steps; i++) {
        double t1 = now_ms();
        clgqa_view pv, no_labels = {NULL, 0};
        if ((status = clgqa_batch_upload_next(b.upload, &b.host, &pv, &no_labels)) ||
            (status = clgqa_model_forward_pixels(model, pv, clgqa_view_at(NULL, 0), opt->batch,
                                                 bench_mean, bench_std,
                                                 &(clgqa_pass){CLGQA_PASS_EVAL, 0, step})) ||
            (status = clgqa_finish(rt)))
            goto done;
        ms[i] = now_ms() - t1;
    }
    double lo, hi;
    summarise(ms, opt->steps, &res->infer_ms_median, &lo, &hi);
done:
    clgqa_batch_upload_destroy(b.upload);
    free(b.host.pixels);
    free(b.host.labels);
    free(ms);
    clgqa_model_destroy(model);
    return status;
}

/* CLBlast SGEMM throughput on an n^3 product (best of a few after a warm-up). */
static clgqa_status gemm_peak(clgqa_runtime *rt, size_t n, double *gflops) {
    cl_mem a = NULL, b = NULL, c = NULL;
    clgqa_status status;
    if ((status = clgqa_buffer_create(rt, n * n * sizeof(float), &a)) ||
        (status = clgqa_buffer_create(rt, n * n * sizeof(float), &b)) ||
        (status = clgqa_buffer_create(rt, n * n * sizeof(float), &c)) ||
        (status = clgqa_random_uniform(rt, clgqa_view_at(a, 0), n * n, 1, 1)) ||
        (status = clgqa_random_uniform(rt, clgqa_view_at(b, 0), n * n, 1, 2)))
        goto done;
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        if ((status = clgqa_finish(rt)))
            goto done;
        double t0 = now_ms();
        if ((status = clgqa_sgemm(rt, 0, 0, n, n, n, 1.0f, clgqa_view_at(a, 0), n,
                                  clgqa_view_at(b, 0), n, 0.0f, clgqa_view_at(c, 0), n)) ||
            (status = clgqa_finish(rt)))
            goto done;
        double ms = now_ms() - t0;
        if (rep > 0 && ms < best) /* rep 0 compiles CLBlast's kernels */
            best = ms;
    }
    *gflops = 2.0 * (double)n * n * n / (best * 1e6);
done:
    clgqa_buffer_release(&a);
    clgqa_buffer_release(&b);
    clgqa_buffer_release(&c);
    return status;
}

/* The GEMM path in words: CLBlast's choice, or the kernel forced. */
static void describe_gemm_path(const clgqa_runtime *rt, char *text, size_t size) {
    clgqa_gemm_kernel kernel = clgqa_runtime_gemm_kernel(rt);
    if (kernel == CLGQA_GEMM_AUTO)
        snprintf(text, size, "auto (CLBlast's choice: direct while m*n*k < %zu^3, else indirect)",
                 clgqa_gemm_paths_taken(rt).min_indirect_size);
    else
        snprintf(text, size, "%s (forced by CLGQA_GEMM)", clgqa_gemm_kernel_name(kernel));
}

/* What a run under the counter's pose or markers is, in words. */
#define PLAN_NOTE                                                                          \
    "PLAN RUN (CLGQA_COUNTER_MARKERS): no kernel ran, each was replaced by a marker. Every " \
    "time, img/s and GFLOP/s is meaningless; only the counts and launch shapes are real."
#define POSE_NOTE "posed by libclgqa_counter.so on PoCL (CLGQA_COUNTER_POSE=%s)"

/* The counted step's kernel launches per family, then the GEMM figures. */
static void print_launches(const scheme_result *results, int count) {
    if (!results[0].launches_recorded)
        return;
    printf("\nkernel launches of the counted step per family (CLBlast's kernels by name; "
           "work-groups per launch):\n");
    printf("%-10s %-36s %9s %9s %10s\n", "scheme", "family", "launches", "wg min", "wg median");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        for (int f = 0; f < r->family_count; f++) {
            const launch_stats *s = &r->families[f];
            char name[80];
            snprintf(name, sizeof name, "%s%s", s->name,
                     s->role == CLBLAST_GEMM     ? " (CLBlast GEMM)"
                     : s->role == CLBLAST_HELPER ? " (CLBlast helper)"
                                                 : "");
            printf("%-10s %-36s %9ld %9ld %10ld\n", f ? "" : clgqa_scheme_name(r->scheme), name,
                   s->launches, s->groups_min, s->groups_median);
        }
        long gemms = r->gemm_direct + r->gemm_indirect;
        printf("%-10s %ld GEMMs (%ld direct, %ld indirect) in %ld GEMM launches; %ld CLBlast helper "
               "kernels (%.2f per GEMM); smallest GEMM launch %ld work-groups; %ld commands\n",
               "", gemms, r->gemm_direct, r->gemm_indirect, r->gemm_launches, r->helper_launches,
               gemms ? (double)r->helper_launches / (double)gemms : 0.0, r->smallest_gemm_groups,
               command_total(&r->step));
    }
}

static void print_table(const clgqa_runtime *rt, const bench_options *opt,
                        const scheme_result *results, int count, double peak) {
    char gemm_path[128];
    describe_gemm_path(rt, gemm_path, sizeof gemm_path);
    clgqa_counter_mode mode = counter_mode();
    if (mode.markers)
        printf("%s\n\n", PLAN_NOTE);
    printf("device: %s (%s, driver %s), CLBlast %d.%d.%d\n", clgqa_runtime_device_name(rt), clgqa_runtime_platform_name(rt),
           clgqa_runtime_driver_version(rt), CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR,
           CLBLAST_VERSION_PATCH);
    if (mode.pose[0]) {
        printf(POSE_NOTE, mode.pose);
        printf("\n");
    }
    printf("model: %s, batch %d, precision %s, %d steps after %d warm-up; CLBlast SGEMM peak "
           "%.1f GFLOP/s\n", opt->size, opt->batch, opt->precision, opt->steps, opt->warmup, peak);
    if (opt->set_count) {
        printf("recipe:");
        for (int i = 0; i < opt->set_count; i++)
            printf(" %s", opt->sets[i]);
        printf("\n");
    }
    printf("GEMM kernel: %s\n\n", gemm_path);
    printf("%-10s %12s %12s %12s %10s %10s %10s %9s %14s\n", "scheme", "step ms", "min", "max",
           "train img/s", "infer img/s", "GEMM GF/s", "memory MiB", "GEMMs dir/ind");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        printf("%-10s %12.2f %12.2f %12.2f %10.1f %10.1f %10.1f %9.1f %8ld/%-5ld\n",
               clgqa_scheme_name(r->scheme), r->step_ms_median, r->step_ms_min, r->step_ms_max,
               opt->batch * 1e3 / r->step_ms_median, opt->batch * 1e3 / r->infer_ms_median,
               r->gemm_gflops, r->model_bytes / 1048576.0, r->gemm_direct, r->gemm_indirect);
    }
    printf("\nshare of the profiled step's device time per op family "
           "(device time / wall time of that step):\n");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        printf("%-10s", clgqa_scheme_name(r->scheme));
        for (int t = 0; t < r->total_count; t++)
            printf(" %s %.1f%%", r->totals[t].label, 100 * r->totals[t].milliseconds / r->device_ms);
        printf("  [%.1f / %.1f ms = %.0f%%]\n", r->device_ms, r->profiled_step_ms,
               100 * r->device_ms / r->profiled_step_ms);
    }
    printf("\nattention (profiled step) and memory:\n");
    printf("%-10s %12s %12s %16s %14s\n", "scheme", "forward ms", "backward ms",
           "saved MiB", "GEMM temp MiB");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        printf("%-10s %12.2f %12.2f %16.1f %14.1f\n", clgqa_scheme_name(r->scheme),
               r->attention_forward_ms, r->attention_backward_ms,
               r->attention_saved_bytes / 1048576.0, r->gemm_temp_bytes / 1048576.0);
    }
    if (!results[0].counted) {
        printf("\nOpenCL calls per training step: not counted (%s)\n",
               getenv("CLGQA_BENCH_NO_COUNTER") ? "CLGQA_BENCH_NO_COUNTER is set"
                                                : "libclgqa_counter.so could not be preloaded");
        return;
    }
    printf("\nOpenCL calls per training step after warm-up (CLBlast's included; "
           "classes %s, attention %s, GEMM %s):\n",
           clgqa_device_class_name(clgqa_runtime_device_class(rt)),
           clgqa_attention_kernel_name(clgqa_runtime_attention_kernel(rt)),
           clgqa_gemm_kernel_name(clgqa_runtime_gemm_kernel(rt)));
    printf("%-10s %9s %9s %10s %7s %16s %11s\n", "scheme", "commands", "kernels", "transfers",
           "other", "buffers created", "host waits");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        printf("%-10s %9ld %9ld %10ld %7ld %7ld (first %ld) %11ld\n",
               clgqa_scheme_name(r->scheme), command_total(&r->step), r->step.kernels,
               r->step.transfers, r->step.other_commands, r->step.buffers_created,
               r->first_step.buffers_created, r->step.host_waits);
    }
    print_launches(results, count);
    if (mode.markers)
        printf("\n%s\n", PLAN_NOTE);
}

/* One launch_stats as a JSON object. */
static void add_launch_stats(cJSON *parent, const launch_stats *s, int with_family) {
    cJSON *o = cJSON_AddObjectToObject(parent, s->name);
    if (with_family)
        cJSON_AddStringToObject(o, "family", s->family);
    cJSON_AddStringToObject(o, "role", s->role == CLBLAST_GEMM     ? "clblast_gemm"
                                       : s->role == CLBLAST_HELPER ? "clblast_helper"
                                                                   : "clgqa");
    cJSON_AddNumberToObject(o, "launches", (double)s->launches);
    cJSON_AddNumberToObject(o, "work_groups_min", (double)s->groups_min);
    cJSON_AddNumberToObject(o, "work_groups_median", (double)s->groups_median);
}

/* One device's results as the JSON object bench/report reads. */
static cJSON *device_json(const clgqa_runtime *rt, const bench_options *opt,
                          const clgqa_config *cfg, const scheme_result *results, int count,
                          double peak) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tool", "clgqa");
    cJSON_AddStringToObject(root, "device", clgqa_runtime_device_name(rt));
    cJSON_AddStringToObject(root, "platform", clgqa_runtime_platform_name(rt));
    cJSON_AddStringToObject(root, "driver", clgqa_runtime_driver_version(rt));
    char clblast[32];
    snprintf(clblast, sizeof clblast, "%d.%d.%d", CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR,
             CLBLAST_VERSION_PATCH);
    cJSON_AddStringToObject(root, "clblast_version", clblast);
    cJSON_AddStringToObject(root, "clblast_tuning", clgqa_runtime_clblast_tuning(rt));
    cJSON_AddStringToObject(root, "device_class", clgqa_device_class_name(clgqa_runtime_device_class(rt)));
    cJSON_AddStringToObject(root, "attention_kernel",
                            clgqa_attention_kernel_name(clgqa_runtime_attention_kernel(rt)));
    cJSON_AddStringToObject(root, "gemm_kernel", clgqa_gemm_kernel_name(clgqa_runtime_gemm_kernel(rt)));
    cJSON_AddNumberToObject(root, "gemm_min_indirect_size",
                            (double)clgqa_gemm_paths_taken(rt).min_indirect_size);
    clgqa_counter_mode mode = counter_mode();
    if (mode.pose[0])
        cJSON_AddStringToObject(root, "counter_pose", mode.pose);
    if (mode.markers) {
        cJSON_AddBoolToObject(root, "plan_only", 1);
        cJSON_AddStringToObject(root, "plan_note", PLAN_NOTE);
    }
    cJSON *config = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(config, "size", opt->size);
    cJSON_AddNumberToObject(config, "batch", opt->batch);
    cJSON_AddStringToObject(config, "precision", opt->precision);
    cJSON_AddNumberToObject(config, "steps", opt->steps);
    cJSON_AddNumberToObject(config, "warmup", opt->warmup);
    cJSON_AddNumberToObject(config, "img_size", cfg->img_size);
    cJSON_AddNumberToObject(config, "patch_size", cfg->patch_size);
    cJSON_AddNumberToObject(config, "in_chans", cfg->in_chans);
    cJSON_AddNumberToObject(config, "embed_dim", cfg->embed_dim);
    cJSON *recipe = cJSON_AddArrayToObject(config, "recipe"); /* the --set keys */
    for (int i = 0; recipe && i < opt->set_count; i++)
        cJSON_AddItemToArray(recipe, cJSON_CreateString(opt->sets[i]));
    cJSON_AddNumberToObject(config, "depth", cfg->num_layers);
    cJSON_AddNumberToObject(config, "num_heads", cfg->num_heads);
    cJSON_AddNumberToObject(config, "num_kv_heads", cfg->num_kv_heads);
    cJSON_AddNumberToObject(config, "num_classes", cfg->num_classes);
    cJSON_AddNumberToObject(root, "gemm_peak_gflops", peak);
    cJSON *schemes = cJSON_AddObjectToObject(root, "schemes");
    for (int i = 0; i < count; i++) {
        const scheme_result *r = &results[i];
        cJSON *s = cJSON_AddObjectToObject(schemes, clgqa_scheme_name(r->scheme));
        cJSON *step = cJSON_AddObjectToObject(s, "train_step_ms");
        cJSON_AddNumberToObject(step, "median", r->step_ms_median);
        cJSON_AddNumberToObject(step, "min", r->step_ms_min);
        cJSON_AddNumberToObject(step, "max", r->step_ms_max);
        cJSON_AddNumberToObject(s, "train_img_s", opt->batch * 1e3 / r->step_ms_median);
        cJSON_AddNumberToObject(s, "infer_img_s", opt->batch * 1e3 / r->infer_ms_median);
        cJSON_AddNumberToObject(s, "gemm_gflops", r->gemm_gflops);
        cJSON_AddNumberToObject(s, "device_memory_bytes", (double)r->model_bytes);
        cJSON_AddNumberToObject(s, "profiled_step_ms", r->profiled_step_ms);
        cJSON_AddNumberToObject(s, "profiled_device_ms", r->device_ms);
        cJSON_AddNumberToObject(s, "attention_forward_ms", r->attention_forward_ms);
        cJSON_AddNumberToObject(s, "attention_backward_ms", r->attention_backward_ms);
        cJSON_AddNumberToObject(s, "attention_saved_bytes", (double)r->attention_saved_bytes);
        cJSON_AddNumberToObject(s, "gemm_temp_bytes", (double)r->gemm_temp_bytes);
        cJSON *gemms = cJSON_AddObjectToObject(s, "step_gemm_calls");
        cJSON_AddNumberToObject(gemms, "direct", (double)r->gemm_direct);
        cJSON_AddNumberToObject(gemms, "indirect", (double)r->gemm_indirect);
        if (r->counted) {
            cJSON *calls = cJSON_AddObjectToObject(s, "step_opencl_calls");
            cJSON_AddNumberToObject(calls, "commands", (double)command_total(&r->step));
            cJSON_AddNumberToObject(calls, "kernels", (double)r->step.kernels);
            cJSON_AddNumberToObject(calls, "transfers", (double)r->step.transfers);
            cJSON_AddNumberToObject(calls, "other_commands", (double)r->step.other_commands);
            cJSON_AddNumberToObject(calls, "buffers_created", (double)r->step.buffers_created);
            cJSON_AddNumberToObject(calls, "host_waits", (double)r->step.host_waits);
            cJSON_AddNumberToObject(calls, "queued_waits", (double)r->step.queued_waits);
            cJSON_AddNumberToObject(calls, "first_step_buffers_created",
                                    (double)r->first_step.buffers_created);
        }
        if (r->launches_recorded) {
            cJSON *launches = cJSON_AddObjectToObject(s, "step_kernel_launches");
            long gemms = r->gemm_direct + r->gemm_indirect;
            cJSON_AddNumberToObject(launches, "gemm_launches", (double)r->gemm_launches);
            cJSON_AddNumberToObject(launches, "clblast_helper_kernels",
                                    (double)r->helper_launches);
            cJSON_AddNumberToObject(launches, "clblast_helpers_per_gemm",
                                    gemms ? (double)r->helper_launches / (double)gemms : 0.0);
            cJSON_AddNumberToObject(launches, "smallest_gemm_work_groups",
                                    (double)r->smallest_gemm_groups);
            cJSON *families = cJSON_AddObjectToObject(launches, "families");
            for (int f = 0; f < r->family_count; f++)
                add_launch_stats(families, &r->families[f], 0);
            cJSON *kernels = cJSON_AddObjectToObject(launches, "kernels");
            for (int k = 0; k < r->kernel_count; k++)
                add_launch_stats(kernels, &r->kernels[k], 1);
        }
        cJSON *ops = cJSON_AddObjectToObject(s, "op_ms");
        for (int t = 0; t < r->total_count; t++)
            cJSON_AddNumberToObject(ops, r->totals[t].label, r->totals[t].milliseconds);
    }
    return root;
}

/* `root` (deleted here) into `path`. */
static clgqa_status write_json(const char *path, cJSON *root) {
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    FILE *f = text ? fopen(path, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f)
        ok = (fclose(f) == 0) && ok;
    free(text);
    return ok ? CLGQA_OK : clgqa_fail(CLGQA_ERR_IO, "cannot write %s", path);
}

/* Device memory per scheme in both precisions side by side: what training
 * at this batch allocates (clgqa_memory_estimate_run, the model's own
 * sizing, so no allocation and no fp16 needed): the blocks' activations
 * saved for backward, the whole activation arena (with the backward's
 * float scratch, the weights' transposes and the split-K partials) and
 * the device total (with the parameters, gradients, moments and CLBlast's
 * workspace, which precision does not change). */
static clgqa_status print_memory_by_precision(clgqa_runtime *rt, const bench_options *opt,
                                              const clgqa_scheme *schemes, int count) {
    printf("\ndevice memory by precision, %s batch %d, %s attention kernels (MiB; what "
           "training allocates):\n", opt->size, opt->batch,
           clgqa_attention_kernel_name(clgqa_runtime_attention_kernel(rt)));
    printf("%-10s %10s %10s %6s   %10s %10s %6s   %10s %10s %6s\n", "scheme", "saved 32",
           "16-mixed", "ratio", "arena 32", "16-mixed", "ratio", "device 32", "16-mixed",
           "ratio");
    static const char *precisions[2] = {"32", "16-mixed"};
    for (int i = 0; i < count; i++) {
        clgqa_memory_estimate e[2];
        for (int p = 0; p < 2; p++) {
            bench_options one = *opt;
            one.precision = precisions[p];
            clgqa_config cfg;
            CLGQA_TRY(bench_config(&one, schemes[i], &cfg));
            CLGQA_TRY(clgqa_memory_estimate_run(rt, &cfg, 1, &e[p]));
        }
#define MIB(x) ((double)(x) / 1048576.0)
        printf("%-10s %10.1f %10.1f %6.3f   %10.1f %10.1f %6.3f   %10.1f %10.1f %6.3f\n",
               clgqa_scheme_name(schemes[i]), MIB(e[0].saved_bytes), MIB(e[1].saved_bytes),
               (double)e[1].saved_bytes / (double)e[0].saved_bytes, MIB(e[0].activation_bytes),
               MIB(e[1].activation_bytes),
               (double)e[1].activation_bytes / (double)e[0].activation_bytes,
               MIB(e[0].device_bytes), MIB(e[1].device_bytes),
               (double)e[1].device_bytes / (double)e[0].device_bytes);
#undef MIB
    }
    return CLGQA_OK;
}

/* One device's whole benchmark: its runtime (kept for the tables), the
 * CLBlast SGEMM peak, then each scheme. */
typedef struct device_result {
    clgqa_runtime *rt;
    scheme_result *results; /* [scheme count] */
    double peak;
} device_result;

static clgqa_status bench_device(const clgqa_runtime_options *options, const bench_options *opt,
                                 const clgqa_scheme *schemes, int scheme_count,
                                 device_result *out) {
    CLGQA_TRY(clgqa_runtime_create(options, &out->rt));
    if (opt->memory_only) {
        printf("device: %s (%s)\n", clgqa_runtime_device_name(out->rt),
               clgqa_runtime_platform_name(out->rt));
        return print_memory_by_precision(out->rt, opt, schemes, scheme_count);
    }
    if (!strcmp(opt->precision, "16-mixed") && !clgqa_runtime_has_fp16(out->rt))
        return clgqa_fail(CLGQA_ERR_UNSUPPORTED, "precision 16-mixed: the device '%s' has no "
                          "half-precision floats (its OpenCL driver lists no cl_khr_fp16)",
                          clgqa_runtime_device_name(out->rt));
    out->results = calloc(MAX_SCHEMES, sizeof *out->results);
    if (!out->results)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY, "out of host memory");
    fprintf(stderr, "measuring the CLBlast SGEMM peak on %s (%s) ...\n",
            clgqa_runtime_device_name(out->rt), clgqa_runtime_platform_name(out->rt));
    CLGQA_TRY(gemm_peak(out->rt, strcmp(opt->size, "demo") ? 2048 : 1024, &out->peak));
    for (int i = 0; i < scheme_count; i++) {
        fprintf(stderr, "benchmarking %s ...\n", clgqa_scheme_name(schemes[i]));
        clgqa_status status = bench_scheme(out->rt, opt, schemes[i], &out->results[i]);
        if (status != CLGQA_OK)
            return clgqa_fail_context(status, "%s", clgqa_scheme_name(schemes[i]));
    }
    return CLGQA_OK;
}

/* --device all: one row per device and scheme, its speed against the first
 * device's (the fastest training step of each, as the tables above). */
static void print_devices_table(const device_result *all, int devices, const bench_options *opt,
                                int scheme_count) {
    printf("\nevery device, %s batch %d, fastest of %d steps:\n", opt->size, opt->batch,
           opt->steps);
    printf("%-48s %-10s %9s %9s %9s %9s\n", "device (platform)", "scheme", "step ms", "img/s",
           "GEMM GF/s", "vs first");
    for (int d = 0; d < devices; d++)
        for (int i = 0; i < scheme_count; i++) {
            const scheme_result *r = &all[d].results[i], *first = &all[0].results[i];
            char name[160];
            snprintf(name, sizeof name, "%.80s (%.60s)", clgqa_runtime_device_name(all[d].rt),
                     clgqa_runtime_platform_name(all[d].rt));
            printf("%-48.48s %-10s %9.2f %9.1f %9.1f %8.2fx\n", name,
                   clgqa_scheme_name(r->scheme), r->step_ms_min,
                   opt->batch * 1e3 / r->step_ms_min, r->gemm_gflops,
                   first->step_ms_min / r->step_ms_min);
        }
}

static int usage(void) {
    fprintf(stderr,
            "usage: clgqa bench [--size demo|s|b|l] [--batch N] [--steps N] [--warmup N]\n"
            "                   [--schemes mhsa,gqa,kdgqa,dgqa_diff,dgqa_ema,pgqa] [--kv-heads G]\n"
            "                   [--device SPEC|all] [--json FILE] [--precision 32|16-mixed]\n"
            "                   [--set key=value ...] [--memory]\n"
            "       (--set: a training-recipe key of the step, e.g. drop_path=0.1, mixup_alpha=0.8;\n"
            "        --memory: only the device memory of both precisions, no steps)\n"
            "       mpirun -np N clgqa bench --allreduce [--help]   (the gradient all-reduce)\n");
    return 2;
}

static int parse_positive(const char *flag, const char *value, int *out) {
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v <= 0 || v > 1000000) {
        fprintf(stderr, "clgqa bench: %s needs a positive integer, not '%s'\n", flag,
                value ? value : "");
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* Run this command again with libclgqa_counter.so (built beside the clgqa
 * program) preloaded, so every OpenCL call of the process is counted.
 * Returns only when that cannot be done; the bench then runs uncounted.
 * Sanitizer builds skip it: their runtime must be the first library loaded. */
static void preload_counter(void) {
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    if (command_counter() || getenv("CLGQA_BENCH_NO_COUNTER") || getenv("CLGQA_BENCH_COUNTING"))
        return;
    char exe[4096], library[4200], preload[8400];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    snprintf(library, sizeof library, "%.*s/libclgqa_counter.so", (int)(slash - exe), exe);
    if (access(library, R_OK) != 0)
        return;
    /* The original command line, from /proc (argv here starts at "bench"). */
    FILE *f = fopen("/proc/self/cmdline", "rb");
    static char cmdline[65536];
    size_t size = f ? fread(cmdline, 1, sizeof cmdline - 1, f) : 0;
    if (f)
        fclose(f);
    if (size == 0 || size == sizeof cmdline - 1)
        return;
    char *args[1024];
    int n = 0;
    for (size_t at = 0; at < size && n < 1023; at += strlen(cmdline + at) + 1)
        args[n++] = cmdline + at;
    args[n] = NULL;
    const char *old = getenv("LD_PRELOAD");
    snprintf(preload, sizeof preload, "%s%s%s", library, old && *old ? ":" : "", old ? old : "");
    setenv("LD_PRELOAD", preload, 1);
    setenv("CLGQA_BENCH_COUNTING", "1", 1); /* no second re-execution if preloading fails */
    fflush(NULL);
    execv(exe, args);
    unsetenv("CLGQA_BENCH_COUNTING"); /* exec failed: run uncounted */
#endif
}

int clgqa_cmd_bench(int argc, char **argv) {
    bench_options opt = {"demo", 64, 5, 2, 0, "mhsa,gqa,kdgqa,dgqa_diff,dgqa_ema,pgqa", NULL, NULL,
                         "32", 0, {NULL}, 0};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--allreduce")) /* under mpirun: the gradient sums */
            return clgqa_bench_allreduce(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(flag, "--size") && value) opt.size = argv[++i];
        else if (!strcmp(flag, "--schemes") && value) opt.schemes = argv[++i];
        else if (!strcmp(flag, "--device") && value) opt.device = argv[++i];
        else if (!strcmp(flag, "--json") && value) opt.json_path = argv[++i];
        else if (!strcmp(flag, "--precision") && value) opt.precision = argv[++i];
        else if (!strcmp(flag, "--memory")) opt.memory_only = 1;
        else if (!strcmp(flag, "--set") && value) {
            if (opt.set_count == MAX_SETS) {
                fprintf(stderr, "clgqa bench: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            opt.sets[opt.set_count++] = argv[++i];
        }
        else if (!strcmp(flag, "--batch")) { if (!parse_positive(flag, value, &opt.batch)) return 2; i++; }
        else if (!strcmp(flag, "--steps")) { if (!parse_positive(flag, value, &opt.steps)) return 2; i++; }
        else if (!strcmp(flag, "--warmup")) { if (!parse_positive(flag, value, &opt.warmup)) return 2; i++; }
        else if (!strcmp(flag, "--kv-heads")) { if (!parse_positive(flag, value, &opt.kv_heads)) return 2; i++; }
        else return usage();
    }
    clgqa_scheme schemes[MAX_SCHEMES];
    int scheme_count = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", opt.schemes);
    for (char *save, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (scheme_count == MAX_SCHEMES || clgqa_scheme_parse(name, &schemes[scheme_count]))
            return clgqa_cli_error("--schemes");
        scheme_count++;
    }
    /* The config reported: a grouped scheme's, so num_kv_heads shows G (MHSA's
     * is H). Also validates the size flags before any device work. */
    clgqa_config cfg;
    if (bench_config(&opt, CLGQA_GQA, &cfg))
        return clgqa_cli_error("bench");

    preload_counter();
    /* A pose or markers asked for but not in force would measure PoCL as
     * itself, under another device's name in the reader's mind. */
    const char *pose = getenv("CLGQA_COUNTER_POSE"), *markers = getenv("CLGQA_COUNTER_MARKERS");
    if (((pose && *pose) || (markers && *markers && strcmp(markers, "0"))) && !command_counter()) {
        fprintf(stderr, "clgqa bench: CLGQA_COUNTER_POSE and CLGQA_COUNTER_MARKERS need "
                        "libclgqa_counter.so preloaded (not with CLGQA_BENCH_NO_COUNTER nor in "
                        "sanitizer builds)\n");
        return 1;
    }
    if (counter_mode().markers)
        fprintf(stderr, "%s\n", PLAN_NOTE);
    cli_environment env;
    if (cli_read_environment(&env))
        return clgqa_cli_error(NULL);
    /* --device all: every device of the machine, one after the other. */
    int devices[MAX_DEVICES], device_count = 1;
    int every = opt.device && !strcmp(opt.device, "all");
    if (every && clgqa_runtime_match_devices("all", devices, MAX_DEVICES, &device_count))
        return clgqa_cli_error(NULL);
    if (device_count == 0) {
        fprintf(stderr, "clgqa bench: --device all: no OpenCL device\n");
        return 1;
    }
    device_result *all = calloc((size_t)device_count, sizeof *all);
    cJSON *json = every ? cJSON_CreateObject() : NULL, *json_devices = NULL;
    if (!all || (every && !json))
        return clgqa_cli_error("out of host memory");
    if (json) {
        cJSON_AddStringToObject(json, "tool", "clgqa");
        json_devices = cJSON_AddArrayToObject(json, "devices");
    }
    int rc = 0;
    for (int d = 0; d < device_count && rc == 0; d++) {
        char spec[16];
        clgqa_runtime_options options = env.options;
        if (every) {
            snprintf(spec, sizeof spec, "%d", devices[d]);
            options.device = spec;
        } else if (opt.device) {
            options.device = opt.device;
        }
        if (bench_device(&options, &opt, schemes, scheme_count, &all[d]) != CLGQA_OK) {
            rc = clgqa_cli_error(all[d].rt ? clgqa_runtime_device_name(all[d].rt) : NULL);
            break;
        }
        if (opt.memory_only)
            continue;
        print_table(all[d].rt, &opt, all[d].results, scheme_count, all[d].peak);
        if (print_memory_by_precision(all[d].rt, &opt, schemes, scheme_count) != CLGQA_OK) {
            rc = clgqa_cli_error(NULL);
            break;
        }
        cJSON *one = device_json(all[d].rt, &opt, &cfg, all[d].results, scheme_count, all[d].peak);
        if (json_devices)
            cJSON_AddItemToArray(json_devices, one);
        else if (opt.json_path)
            json = one;
        else
            cJSON_Delete(one);
    }
    if (rc == 0 && every && !opt.memory_only)
        print_devices_table(all, device_count, &opt, scheme_count);
    if (rc == 0 && opt.json_path && !opt.memory_only) {
        if (write_json(opt.json_path, json))
            rc = clgqa_cli_error(NULL);
    } else {
        cJSON_Delete(json);
    }
    for (int d = 0; d < device_count; d++) {
        free(all[d].results);
        clgqa_runtime_destroy(all[d].rt);
    }
    free(all);
    return rc;
}
