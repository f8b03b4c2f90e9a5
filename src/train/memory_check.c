/* The memory estimate of a training run and its check; see memory_check.h. */
#include "memory_check.h"

#include <stdio.h>
#include <string.h>

#include "gemm.h"
#include "model_private.h"
#include "runtime_internal.h"

/* The share of the device's or the host's memory a run may plan to use:
 * drivers, the kernel compiler and the allocator need the rest. */
#define MEMORY_SHARE 0.9
/* Under an address-space limit: what an OpenCL CPU driver maps beyond the
 * buffers while it compiles kernels (LLVM). PoCL: a tiny run needs 0.46 GiB
 * above its VmSize at this check, and with less the driver crashes inside
 * its compiler (SIGSEGV) instead of failing. */
#define COMPILER_ADDRESS_ALLOWANCE ((size_t)512 << 20)

/* The host memory a driver holds for commands queued and not yet run: a
 * training step's kernels, about 30 a layer, are queued at once (PoCL:
 * about 56 KiB a layer, measured at 1000 and 5000 layers). */
#define QUEUED_BYTES_PER_LAYER ((size_t)64 << 10)

#define GIB(bytes) ((double)(bytes) / (1 << 30))

int clgqa_rank_batch(const clgqa_config *cfg, int ranks) {
    return cfg->batch_size / ranks > ranks - 1 ? cfg->batch_size / ranks : ranks - 1;
}

/* The largest workspace CLBlast asks for over the model's big products:
 * every arrangement of (rows, out, in) for the MLP and the q/k/v projection
 * (forward, and the backward's input and weight gradients). */
static clgqa_status gemm_workspace(clgqa_runtime *rt, size_t rows, size_t embed, size_t mlp,
                                   size_t qkv, size_t *bytes) {
    const size_t shapes[2][3] = {{rows, mlp, embed}, {rows, qkv, embed}};
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    *bytes = 0;
    for (int s = 0; s < 2; s++)
        for (int o = 0; o < 6; o++) {
            size_t need;
            CLGQA_TRY(clgqa_gemm_temp_bytes_for(rt, shapes[s][orders[o][0]],
                                                shapes[s][orders[o][1]],
                                                shapes[s][orders[o][2]], &need));
            if (need > *bytes)
                *bytes = need;
        }
    return CLGQA_OK;
}

clgqa_status clgqa_memory_estimate_run(clgqa_runtime *rt, const clgqa_config *cfg, int ranks,
                                       clgqa_memory_estimate *out) {
    memset(out, 0, sizeof *out);
    out->batch = clgqa_rank_batch(cfg, ranks);
    clgqa_model_desc desc;
    clgqa_config_model_desc(cfg, &desc);
    clgqa_model_memory model;
    CLGQA_TRY(clgqa_model_memory_estimate(rt, &desc, out->batch, clgqa_config_storage(cfg),
                                          &model));

    const size_t C = (size_t)cfg->embed_dim, kv = (size_t)desc.num_kv_heads,
                 head_dim = C / (size_t)cfg->num_heads,
                 image = (size_t)cfg->in_chans * cfg->img_size * cfg->img_size;
    out->flat_bytes = model.param_floats * sizeof(float);
    out->flat_buffers = cfg->model_ema_decay > 0 ? 5 : 4;
    /* The arena holds the weights' transposes and the split weight
     * gradients' partials too (the GEMMs', model_gemm). */
    out->activation_bytes = model.arena_floats * sizeof(float);
    out->saved_bytes = model.saved_floats * sizeof(float);
    out->precision = cfg->precision;
    /* Over the rows the GEMMs run on: the batch's, padded to CLBlast's tiles. */
    CLGQA_TRY(gemm_workspace(rt, model.gemm_rows, C, 4 * C, C + 2 * kv * head_dim,
                             &out->gemm_bytes));
    /* Two batch slots (labels padded to 256 bytes, then the pixels), the
     * step's readback (two steps' losses of every micro-batch, sums, group
     * counts) and the model's rest. */
    size_t batch_slot = ((size_t)out->batch * 4 + 255) / 256 * 256 + image * out->batch;
    size_t readback = (2 * (size_t)out->batch * (size_t)cfg->grad_accum_steps + 6 +
                       (size_t)cfg->num_layers * kv) * sizeof(float);
    out->other_device_bytes = 2 * batch_slot + readback + model.other_bytes;
    out->device_bytes = (size_t)out->flat_buffers * out->flat_bytes + out->activation_bytes +
                        out->gemm_bytes + out->other_device_bytes;

    /* Host: each loader keeps 4 batches (as floats until it switches to
     * 8-bit pixels); a training checkpoint gathers the weights, both
     * moments and the EMA; the batch slots' pinned staging mirrors theirs. */
    out->loader_bytes = 2 * 4 * (size_t)cfg->batch_size * image * sizeof(float);
    out->checkpoint_bytes = (size_t)(out->flat_buffers - 1) * out->flat_bytes;
    out->driver_bytes = model.host_bytes + (size_t)cfg->num_layers * QUEUED_BYTES_PER_LAYER;
    out->cpu_device = (rt->device_type & CL_DEVICE_TYPE_CPU) != 0;
    out->host_bytes = out->loader_bytes + out->checkpoint_bytes + out->driver_bytes +
                      2 * batch_slot + readback + (out->cpu_device ? out->device_bytes : 0);
    out->device_memory = (size_t)rt->global_mem_bytes;
    clgqa_host_memory_query(&out->host);
    return CLGQA_OK;
}

/* "512 KiB", "24.0 MiB", "3.25 GiB". */
static const char *bytes_text(size_t bytes, char buf[32]) {
    if (bytes >= (size_t)1 << 30)
        snprintf(buf, 32, "%.2f GiB", GIB(bytes));
    else if (bytes >= (size_t)1 << 20)
        snprintf(buf, 32, "%.1f MiB", (double)bytes / (1 << 20));
    else
        snprintf(buf, 32, "%.0f KiB", (double)bytes / 1024);
    return buf;
}

void clgqa_memory_estimate_print(const clgqa_memory_estimate *e, const char *device_name,
                                 FILE *out) {
    char a[32], b[32], c[32];
    fprintf(out, "memory estimate for %s, batch %d a rank:\n", device_name, e->batch);
    fprintf(out, "  parameters, gradients, AdamW moments%s %d x %s\n",
            e->flat_buffers > 4 ? ", EMA" : "     ", e->flat_buffers, bytes_text(e->flat_bytes, a));
    fprintf(out, "  activations, weight transposes         %s\n", bytes_text(e->activation_bytes, a));
    fprintf(out, "    of which saved for backward          %s (precision %s)\n",
            bytes_text(e->saved_bytes, a), clgqa_precision_name(e->precision));
    fprintf(out, "  GEMM workspace                         %s\n", bytes_text(e->gemm_bytes, a));
    fprintf(out, "  batch slots and the rest               %s\n",
            bytes_text(e->other_device_bytes, a));
    fprintf(out, "  device total                           %s of %s (the limit: %.0f%%, %s)\n",
            bytes_text(e->device_bytes, a), bytes_text(e->device_memory, b), 100 * MEMORY_SHARE,
            bytes_text((size_t)(MEMORY_SHARE * (double)e->device_memory), c));
    fprintf(out, "  host: loader rings %s, checkpoint copies %s, tables and queued commands %s",
            bytes_text(e->loader_bytes, a), bytes_text(e->checkpoint_bytes, b),
            bytes_text(e->driver_bytes, c));
    if (e->cpu_device)
        fprintf(out, ", the device's buffers (a CPU device)");
    fprintf(out, "; total %s of %s available (the limit: %.0f%%)\n", bytes_text(e->host_bytes, a),
            bytes_text(e->host.available_bytes, b), 100 * MEMORY_SHARE);
    if (e->host.address_limit_bytes)
        fprintf(out, "  address space: %s mapped now, limit %s (ulimit -v), %s kept for the OpenCL "
                "compiler\n", bytes_text(e->host.address_used_bytes, a),
                bytes_text(e->host.address_limit_bytes, b),
                bytes_text(e->cpu_device ? COMPILER_ADDRESS_ALLOWANCE : 0, c));
}

clgqa_status clgqa_memory_check(const clgqa_memory_estimate *e, const char *device_name) {
    static const char advice[] = "use a smaller model or batch_size (clgqa train --dry-run "
                                 "prints the estimate)";
    if ((double)e->device_bytes > MEMORY_SHARE * (double)e->device_memory)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                          "the run needs about %.2f GiB of device memory (4 x %.2f GiB of "
                          "parameters and AdamW state, %.2f GiB of activations at batch %d), "
                          "more than %.0f%% of the %.2f GiB %s has: %s",
                          GIB(e->device_bytes), GIB(e->flat_bytes), GIB(e->activation_bytes),
                          e->batch, 100 * MEMORY_SHARE, GIB(e->device_memory), device_name,
                          advice);
    if (e->host.available_bytes &&
        (double)e->host_bytes > MEMORY_SHARE * (double)e->host.available_bytes)
        return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                          "the run needs about %.2f GiB of host memory (%s%.2f GiB for the "
                          "loaders, checkpoint copies and queued commands), more than %.0f%% of "
                          "the %.2f GiB available: %s", GIB(e->host_bytes),
                          e->cpu_device ? "the CPU device's buffers and " : "",
                          GIB(e->loader_bytes + e->checkpoint_bytes + e->driver_bytes),
                          100 * MEMORY_SHARE,
                          GIB(e->host.available_bytes), advice);
    const size_t limit = e->host.address_limit_bytes;
    if (limit) {
        size_t wanted = e->host.address_used_bytes + e->host_bytes +
                        (e->cpu_device ? COMPILER_ADDRESS_ALLOWANCE : 0);
        if (wanted > limit)
            return clgqa_fail(CLGQA_ERR_OUT_OF_MEMORY,
                              "the run needs about %.2f GiB of address space (%.2f GiB mapped "
                              "now, %.2f GiB for the run%s), more than the address-space limit "
                              "of %.2f GiB (ulimit -v): raise the limit or %s", GIB(wanted),
                              GIB(e->host.address_used_bytes), GIB(e->host_bytes),
                              e->cpu_device ? ", 0.5 GiB for the OpenCL compiler" : "",
                              GIB(limit), advice);
    }
    return CLGQA_OK;
}
