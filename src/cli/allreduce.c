/* clgqa bench --allreduce, under mpirun: the time to sum the gradient
 * buffer of ViT-S, B and L/16 (224, 1000 classes, every head its own keys:
 * the largest buffer of each size) over the ranks, in the buckets training
 * uses (mpi_ranks.h), and the data-parallel efficiency the model below
 * projects for N GPUs from a step time and an interconnect bandwidth.
 *
 * The model (README "Several GPUs and machines"): S gradient bytes in K
 * buckets, one GPU's step time t on its share of the batch, a ring
 * all-reduce that sends 2(N-1)/N * S per rank at bandwidth B_net in 2(N-1)
 * messages of latency a per bucket, the staging copies at B_host each way.
 * The backward (about 2/3 of t) finishes the buckets evenly and each is
 * summed while the rest of the backward runs, so only what outlasts the
 * backward shows, at least one bucket's share:
 *   c(N)    = 2(N-1)/N * S / B_net + 2(N-1) K a + S / B_host   (network, read)
 *   exposed = max(c(N) - 2t/3, c(N) / K) + S / B_host          (+ write back)
 *   E(N)    = t / (t + exposed) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "commands.h"
#include "environment.h"
#include "mpi_ranks.h"

#define MAX_BLOCKS 64

static const char usage_text[] =
    "usage: mpirun -np N clgqa bench --allreduce [--sizes s,b,l] [--repeats R]\n"
    "       [--step-ms S,B,L] [--net-gbps GB/s] [--latency-us US] [--host-gbps GB/s]\n"
    "  --step-ms: one GPU's training step per size, for the projected efficiency";

/* Gradient buckets of a ViT preset, in the order backward finishes them:
 * the head with the final norm, each block from the last, the embeddings
 * (clgqa/model.h's tensor table). Returns the bucket count. */
static int vit_buckets(char size, size_t *floats, size_t *total) {
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    char preset[16];
    snprintf(preset, sizeof preset, "size=%c", size);
    if (clgqa_config_set(&cfg, preset) || clgqa_config_set(&cfg, "att_scheme=mhsa") ||
        clgqa_config_set(&cfg, "in_chans=3") || clgqa_config_set(&cfg, "num_classes=1000") ||
        clgqa_config_finalize(&cfg))
        return -1;
    size_t C = (size_t)cfg.embed_dim, classes = 1000, kv = C;
    size_t patches = (size_t)(cfg.img_size / cfg.patch_size) * (cfg.img_size / cfg.patch_size);
    size_t patch_len = 3 * (size_t)cfg.patch_size * cfg.patch_size;
    size_t block = 2 * C                       /* norm1 */
                   + C * C + C + 2 * (kv * C + kv) /* q, k, v */
                   + C * C + C                 /* proj */
                   + 2 * C                     /* norm2 */
                   + 4 * C * C + 4 * C + 4 * C * C + C; /* fc1, fc2 */
    int n = 0;
    if (cfg.num_layers + 2 > MAX_BLOCKS)
        return -1;
    floats[n++] = 2 * C + classes * C + classes;
    for (int l = 0; l < cfg.num_layers; l++)
        floats[n++] = block;
    floats[n++] = C + (patches + 1) * C + C * patch_len + C;
    *total = 0;
    for (int i = 0; i < n; i++)
        *total += floats[i];
    return n;
}

static int parse_list(const char *text, double *out, int max) {
    int n = 0;
    for (const char *p = text; *p && n < max;) {
        char *end;
        out[n++] = strtod(p, &end);
        if (end == p || out[n - 1] <= 0)
            return -1;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

int clgqa_bench_allreduce(int argc, char **argv) {
    const char *sizes = "s,b,l";
    int repeats = 5;
    /* Defaults: 100 Gb/s InfiniBand (12.5 GB/s, ~2 us a message on RDMA:
     * 5 us allows for MPI's own), PCIe 4.0 x16 (25 GB/s). */
    double step_ms[3] = {0, 0, 0}, net_gbps = 12.5, latency_us = 5.0, host_gbps = 25.0;
    int steps_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(flag, "--allreduce"))
            continue;
        if (!value) {
            fprintf(stderr, "%s\n", usage_text);
            return 2;
        }
        i++;
        if (!strcmp(flag, "--sizes"))
            sizes = value;
        else if (!strcmp(flag, "--repeats") && atoi(value) > 0)
            repeats = atoi(value);
        else if (!strcmp(flag, "--step-ms") && (steps_given = parse_list(value, step_ms, 3)) > 0)
            continue;
        else if (!strcmp(flag, "--net-gbps") && parse_list(value, &net_gbps, 1) == 1)
            continue;
        else if (!strcmp(flag, "--latency-us") && parse_list(value, &latency_us, 1) == 1)
            continue;
        else if (!strcmp(flag, "--host-gbps") && parse_list(value, &host_gbps, 1) == 1)
            continue;
        else {
            fprintf(stderr, "%s\n", usage_text);
            return 2;
        }
    }
    clgqa_mpi *mpi;
    if (clgqa_mpi_init(cli_launched_by_mpi() ? CLGQA_LAUNCH_MPI : CLGQA_LAUNCH_ALONE, &mpi) !=
        CLGQA_OK)
        return clgqa_cli_error(NULL);
    if (!mpi) {
        fprintf(stderr, "clgqa bench --allreduce: run it under mpirun -np 2 (or more)\n");
        return 2;
    }
    int rank = clgqa_mpi_rank(mpi), ranks = clgqa_mpi_ranks(mpi);
    if (rank == 0)
        printf("all-reduce of the gradient buffer over %d ranks (float sum, one MPI_Allreduce per "
               "bucket), least of %d rounds\n"
               "%-5s %10s %9s %8s %10s %8s\n",
               ranks, repeats, "size", "params", "MB", "buckets", "time ms", "GB/s");
    int index = 0;
    for (const char *p = sizes; *p; p++) {
        if (*p == ',')
            continue;
        size_t floats[MAX_BLOCKS], total = 0;
        int buckets = vit_buckets(*p, floats, &total);
        if (buckets < 0) { /* every rank reads the same flags */
            clgqa_fail(CLGQA_ERR_INVALID_ARG, "bench --allreduce: unknown size '%c' (s, b or l)", *p);
            return clgqa_mpi_fail(mpi, 1);
        }
        double seconds;
        if (clgqa_mpi_time_allreduce(mpi, floats, buckets, repeats, &seconds) != CLGQA_OK)
            return clgqa_mpi_fail(mpi, 0);
        double bytes = 4.0 * (double)total;
        if (rank == 0)
            printf("%-5c %10zu %9.1f %8d %10.2f %8.2f\n", *p, total, bytes / 1e6, buckets,
                   1e3 * seconds, bytes / seconds / 1e9);
        double t = index < steps_given ? step_ms[index] / 1e3 : 0;
        if (rank == 0 && t > 0) {
            printf("      projected efficiency, step %.0f ms, network %.1f GB/s and %.0f us, host "
                   "link %.1f GB/s:", 1e3 * t, net_gbps, latency_us, host_gbps);
            static const int gpus[] = {2, 4, 8, 16, 32, 64};
            for (size_t g = 0; g < sizeof gpus / sizeof gpus[0]; g++) {
                int n = gpus[g];
                double host = bytes / (host_gbps * 1e9);
                double comm = 2.0 * (n - 1) / n * bytes / (net_gbps * 1e9) +
                              2.0 * (n - 1) * buckets * latency_us * 1e-6 + host;
                double hidden = comm - 2.0 * t / 3.0;
                double exposed = (hidden > comm / buckets ? hidden : comm / buckets) + host;
                printf(" N=%d %.0f%%", n, 100.0 * t / (t + exposed));
            }
            printf("\n");
        }
        index++;
    }
    clgqa_mpi_finalize(mpi);
    return 0;
}
