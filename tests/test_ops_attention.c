/* Grouped attention forward/backward and the PGQA perturbation, both
 * variants (rows and tiled, forced through rt->attention_kernel whatever
 * the device or CLGQA_ATTENTION picks), against a float64 CPU reference
 * written here: outputs element by element, gradients against an analytic
 * float64 backward (loss = sum(out * w), so dout = w) that is itself
 * checked against central finite differences of the reference forward.
 * q, k, v are read packed or inside one padded fused [B*P, (H+2G)d + 3]
 * buffer; every output region sits between guard values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "ops.h"
#include "support/op_tests.h"
#include "support/test_util.h"

static const clgqa_attention_kernel variants[] = {CLGQA_ATTENTION_ROWS, CLGQA_ATTENTION_TILED};

/* ---- float64 reference ---- */

typedef struct attention_case {
    clgqa_attention_dims dims; /* row_stride 0 here: host arrays are packed */
    int kv_map[16];
    int pgqa;
    int fused; /* device q/k/v inside one padded buffer */
} attention_case;

static size_t q_count(const clgqa_attention_dims *d) {
    return (size_t)d->batch * d->tokens * d->heads * d->head_dim;
}
static size_t kv_count(const clgqa_attention_dims *d) {
    return (size_t)d->batch * d->tokens * d->kv_heads * d->head_dim;
}
static size_t noise_count(const clgqa_attention_dims *d) {
    return (size_t)d->heads * d->tokens * d->head_dim;
}

/* One (sample b, head h) of the reference: probs [P, P] and A [P, d]. */
static void ref_head(const attention_case *tc, int b, int h, const double *q, const double *k,
                     const double *v, double *probs, double *a) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int P = dm->tokens, H = dm->heads, G = dm->kv_heads, d = dm->head_dim;
    const int j = tc->kv_map[h];
    const double scale = 1.0 / sqrt((double)d);
    for (int p = 0; p < P; p++) {
        double *row = probs + (size_t)p * P, top = -INFINITY, sum = 0.0;
        for (int t = 0; t < P; t++) {
            double s = 0.0;
            for (int c = 0; c < d; c++)
                s += scale * q[((size_t)b * P + p) * H * d + (size_t)h * d + c] *
                     k[((size_t)b * P + t) * G * d + (size_t)j * d + c];
            row[t] = s;
            top = fmax(top, s);
        }
        for (int t = 0; t < P; t++) {
            row[t] = exp(row[t] - top);
            sum += row[t];
        }
        for (int t = 0; t < P; t++)
            row[t] /= sum;
        for (int c = 0; c < d; c++) {
            double acc = 0.0;
            for (int t = 0; t < P; t++)
                acc += row[t] * v[((size_t)b * P + t) * G * d + (size_t)j * d + c];
            a[p * d + c] = acc;
        }
    }
}

/* PGQA of one row A [L]: z = standardised U row with U[i][i] = 0, mu and
 * sigma (Bessel) of A. */
static void ref_pgqa_stats(const attention_case *tc, int h, const double *u, const double *a,
                           double *z, double *mu, double *sigma) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int L = dm->tokens * dm->head_dim, diagonal = h % (dm->heads / dm->kv_heads);
    double m = 0.0, var = 0.0, u_mean = 0.0, u_var = 0.0;
    for (int l = 0; l < L; l++) {
        z[l] = l == diagonal ? 0.0 : u[(size_t)h * L + l];
        u_mean += z[l] / L;
        m += a[l] / L;
    }
    for (int l = 0; l < L; l++) {
        u_var += (z[l] - u_mean) * (z[l] - u_mean) / (L - 1);
        var += (a[l] - m) * (a[l] - m) / (L - 1);
    }
    double u_std = u_var > 0.0 ? sqrt(u_var) : 1.0;
    for (int l = 0; l < L; l++)
        z[l] = (z[l] - u_mean) / u_std;
    *mu = m;
    *sigma = sqrt(var);
}

/* out [B*P, H*d]; with u ([H, P*d], the raw noise U) PGQA's A - (z sigma + mu). */
static void ref_forward(const attention_case *tc, const double *q, const double *k,
                        const double *v, const double *u, double *out) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int B = dm->batch, P = dm->tokens, H = dm->heads, d = dm->head_dim, L = P * d;
    double *probs = malloc(sizeof(double) * (size_t)P * P), *a = malloc(sizeof(double) * L);
    double *z = malloc(sizeof(double) * L);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            ref_head(tc, b, h, q, k, v, probs, a);
            if (u) {
                double mu, sigma;
                ref_pgqa_stats(tc, h, u, a, z, &mu, &sigma);
                for (int l = 0; l < L; l++)
                    a[l] -= z[l] * sigma + mu;
            }
            for (int p = 0; p < P; p++)
                for (int c = 0; c < d; c++)
                    out[((size_t)b * P + p) * H * d + (size_t)h * d + c] = a[p * d + c];
        }
    free(probs), free(a), free(z);
}

/* Analytic gradients of sum(out * w): PGQA's dA = g - mean(g) - sum(g z)
 * (A - mu) / ((L - 1) sigma) (0 where sigma == 0), then dP = dA v^T,
 * dS = P (dP - rowsum(P dP)), dq = d^-0.5 dS k, dk = d^-0.5 dS^T q and
 * dv = P^T dA summed over the heads of each group. Overwrites gq, gk, gv. */
static void ref_backward(const attention_case *tc, const double *q, const double *k,
                         const double *v, const double *u, const double *w, double *gq,
                         double *gk, double *gv) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int B = dm->batch, P = dm->tokens, H = dm->heads, G = dm->kv_heads, d = dm->head_dim;
    const int L = P * d;
    const double scale = 1.0 / sqrt((double)d);
    memset(gq, 0, sizeof(double) * q_count(dm));
    memset(gk, 0, sizeof(double) * kv_count(dm));
    memset(gv, 0, sizeof(double) * kv_count(dm));
    double *probs = malloc(sizeof(double) * (size_t)P * P), *a = malloc(sizeof(double) * L);
    double *z = malloc(sizeof(double) * L), *da = malloc(sizeof(double) * L);
    double *ds = malloc(sizeof(double) * P);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int j = tc->kv_map[h];
            ref_head(tc, b, h, q, k, v, probs, a);
            for (int p = 0; p < P; p++)
                for (int c = 0; c < d; c++)
                    da[p * d + c] = w[((size_t)b * P + p) * H * d + (size_t)h * d + c];
            if (u) {
                double mu, sigma, g_sum = 0.0, gz_sum = 0.0;
                ref_pgqa_stats(tc, h, u, a, z, &mu, &sigma);
                for (int l = 0; l < L; l++) {
                    g_sum += da[l];
                    gz_sum += da[l] * z[l];
                }
                for (int l = 0; l < L; l++)
                    da[l] -= g_sum / L + (sigma > 0.0 ? gz_sum * (a[l] - mu) / ((L - 1) * sigma) : 0.0);
            }
            for (int p = 0; p < P; p++) {
                const double *pr = probs + (size_t)p * P;
                double weighted = 0.0;
                for (int t = 0; t < P; t++) {
                    double dp = 0.0;
                    for (int c = 0; c < d; c++)
                        dp += da[p * d + c] * v[((size_t)b * P + t) * G * d + (size_t)j * d + c];
                    ds[t] = dp;
                    weighted += pr[t] * dp;
                }
                const size_t qrow = ((size_t)b * P + p) * H * d + (size_t)h * d;
                for (int t = 0; t < P; t++) {
                    ds[t] = pr[t] * (ds[t] - weighted);
                    const size_t krow = ((size_t)b * P + t) * G * d + (size_t)j * d;
                    for (int c = 0; c < d; c++) {
                        gq[qrow + c] += scale * ds[t] * k[krow + c];
                        gk[krow + c] += scale * ds[t] * q[qrow + c];
                        gv[krow + c] += pr[t] * da[p * d + c];
                    }
                }
            }
        }
    free(probs), free(a), free(z), free(da), free(ds);
}

static double ref_loss(const attention_case *tc, const double *q, const double *k,
                       const double *v, const double *u, const double *w) {
    size_t n = q_count(&tc->dims);
    double *out = malloc(sizeof(double) * n);
    ref_forward(tc, q, k, v, u, out);
    double loss = 0.0;
    for (size_t i = 0; i < n; i++)
        loss += out[i] * w[i];
    free(out);
    return loss;
}

/* Central differences of the reference loss with respect to x[0..n). */
static void fd_gradient(const attention_case *tc, double *q, double *k, double *v,
                        const double *u, const double *w, double *x, size_t n, double *grad) {
    const double eps = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + eps;
        double plus = ref_loss(tc, q, k, v, u, w);
        x[i] = keep - eps;
        double minus = ref_loss(tc, q, k, v, u, w);
        x[i] = keep;
        grad[i] = (plus - minus) / (2 * eps);
    }
}

static double max_abs(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- cases ---- */

static attention_case make_case(int batch, int tokens, int heads, int kv_heads, int head_dim,
                                const int *kv_map, int pgqa, int fused) {
    attention_case tc = {{batch, tokens, heads, kv_heads, head_dim, 0, CLGQA_STORAGE_FLOAT},
                         {0},
                         pgqa,
                         fused};
    for (int h = 0; h < heads; h++)
        tc.kv_map[h] = kv_map ? kv_map[h] : h / (heads / kv_heads);
    return tc;
}

/* Random inputs of a case: q, k, v, w (= dout) and PGQA's U. */
typedef struct case_inputs {
    float *q, *k, *v, *w, *noise;
} case_inputs;

/* zero_v_group >= 0: v of that key head in sample 0 is zero, so its heads'
 * outputs are constant rows and PGQA's sigma == 0 exactly. */
static case_inputs make_inputs(const attention_case *tc, int zero_v_group) {
    const clgqa_attention_dims *dm = &tc->dims;
    case_inputs in;
    in.q = test_random_array(q_count(dm), -1.5f, 1.5f);
    in.k = test_random_array(kv_count(dm), -1.5f, 1.5f);
    in.v = test_random_array(kv_count(dm), -1.0f, 1.0f);
    in.w = test_random_array(q_count(dm), -1.0f, 1.0f);
    in.noise = tc->pgqa ? test_random_array(noise_count(dm), 0.0f, 1.0f) : NULL;
    if (zero_v_group >= 0)
        for (int p = 0; p < dm->tokens; p++)
            for (int c = 0; c < dm->head_dim; c++)
                in.v[(size_t)p * dm->kv_heads * dm->head_dim + (size_t)zero_v_group * dm->head_dim +
                     c] = 0.0f;
    return in;
}

static void free_inputs(case_inputs *in) {
    free(in->q), free(in->k), free(in->v), free(in->w), free(in->noise);
}

/* ---- device buffers ---- */

/* Guard values around every region the ops write, to catch strays. */
#define GUARD 5
#define GUARD_VALUE 12345.0f

/* A buffer holding `data` (n floats; NULL: guard values too) at element
 * offset GUARD, between guards. One whole-buffer write: Oclgrind 21.10
 * loses track of initialised bytes after a write at an offset. */
static cl_mem guarded_buffer(const float *data, size_t n) {
    float *host = malloc(sizeof(float) * (n + 2 * GUARD));
    for (size_t i = 0; i < n + 2 * GUARD; i++)
        host[i] = data && i >= GUARD && i < GUARD + n ? data[i - GUARD] : GUARD_VALUE;
    cl_mem mem = test_upload(host, n + 2 * GUARD);
    free(host);
    return mem;
}

static void assert_guards(const char *what, cl_mem mem, size_t n) {
    float *host = malloc(sizeof(float) * (n + 2 * GUARD));
    test_download(mem, host, n + 2 * GUARD);
    for (size_t i = 0; i < GUARD; i++) {
        ck_assert_msg(host[i] == GUARD_VALUE, "%s: guard before the region overwritten", what);
        ck_assert_msg(host[GUARD + n + i] == GUARD_VALUE, "%s: guard after the region overwritten",
                      what);
    }
    free(host);
}

/* q, k, v (or dq, dk, dv) on the device: three guarded packed buffers, or
 * one guarded fused buffer of rows (H + 2G) d + 3 wide whose 3 padding
 * columns hold `pad` (NaN in inputs: a read would poison the results;
 * GUARD_VALUE in outputs: checked unchanged). */
typedef struct qkv_device {
    cl_mem mem[3]; /* fused: mem[0] only */
    clgqa_view view[3];
    size_t stride, floats; /* fused row stride and buffer floats (with guards) */
} qkv_device;

static size_t fused_stride(const clgqa_attention_dims *dm) {
    return (size_t)(dm->heads + 2 * dm->kv_heads) * dm->head_dim + 3;
}

static qkv_device qkv_upload(const attention_case *tc, const float *const data[3], float pad) {
    const clgqa_attention_dims *dm = &tc->dims;
    size_t width[3] = {(size_t)dm->heads * dm->head_dim, (size_t)dm->kv_heads * dm->head_dim,
                       (size_t)dm->kv_heads * dm->head_dim};
    size_t rows = (size_t)dm->batch * dm->tokens;
    qkv_device x = {{NULL, NULL, NULL}, {{NULL, 0}}, 0, 0};
    if (!tc->fused) {
        for (int i = 0; i < 3; i++) {
            x.mem[i] = guarded_buffer(data[i], rows * width[i]);
            x.view[i] = clgqa_view_at(x.mem[i], GUARD);
        }
        return x;
    }
    x.stride = fused_stride(dm);
    x.floats = rows * x.stride + 2 * GUARD;
    float *host = malloc(sizeof(float) * x.floats);
    for (size_t i = 0; i < x.floats; i++)
        host[i] = i < GUARD || i >= x.floats - GUARD ? GUARD_VALUE : pad;
    for (size_t r = 0, col = 0; r < rows; r++, col = 0)
        for (int i = 0; i < 3; col += width[i], i++)
            for (size_t c = 0; c < width[i]; c++)
                host[GUARD + r * x.stride + col + c] = data[i] ? data[i][r * width[i] + c] : pad;
    x.mem[0] = test_upload(host, x.floats);
    free(host);
    for (int i = 0; i < 3; i++)
        x.view[i] = clgqa_view_at(x.mem[0], GUARD + (i ? width[0] + (i - 1) * width[1] : 0));
    return x;
}

/* Reads the three tensors back packed and checks guards and padding. */
static void qkv_download(const attention_case *tc, const qkv_device *x, float *const out[3]) {
    const clgqa_attention_dims *dm = &tc->dims;
    size_t width[3] = {(size_t)dm->heads * dm->head_dim, (size_t)dm->kv_heads * dm->head_dim,
                       (size_t)dm->kv_heads * dm->head_dim};
    size_t rows = (size_t)dm->batch * dm->tokens;
    static const char *names[3] = {"dq", "dk", "dv"};
    if (!tc->fused) {
        for (int i = 0; i < 3; i++) {
            float *host = malloc(sizeof(float) * (rows * width[i] + 2 * GUARD));
            test_download(x->mem[i], host, rows * width[i] + 2 * GUARD);
            memcpy(out[i], host + GUARD, sizeof(float) * rows * width[i]);
            free(host);
            assert_guards(names[i], x->mem[i], rows * width[i]);
        }
        return;
    }
    float *host = malloc(sizeof(float) * x->floats);
    test_download(x->mem[0], host, x->floats);
    for (size_t i = 0; i < x->floats; i++) {
        int inside = i >= GUARD && i < x->floats - GUARD &&
                     (i - GUARD) % x->stride < width[0] + 2 * width[1];
        if (!inside && host[i] != GUARD_VALUE)
            ck_abort_msg("d(qkv): guard or padding at %zu overwritten", i);
    }
    for (size_t r = 0, col = 0; r < rows; r++, col = 0)
        for (int i = 0; i < 3; col += width[i], i++)
            memcpy(out[i] + r * width[i], host + GUARD + r * x->stride + col,
                   sizeof(float) * width[i]);
    free(host);
}

static void qkv_free(qkv_device *x) {
    for (int i = 0; i < 3; i++)
        if (x->mem[i])
            clgqa_buffer_release(&x->mem[i]);
}

/* ---- device runs ---- */

typedef struct device_run {
    attention_case tc; /* dims.row_stride set for the device layout */
    qkv_device qkv;
    cl_mem out, kv_map, saved, noise;
    clgqa_attention_saved layout;
    size_t saved_floats;
} device_run;

/* Runs the forward pass of `variant` on the inputs (PGQA's U from
 * in->noise unless `drawn`, then Philox (seed, stream)) and reads out. */
static void device_forward(device_run *run, const attention_case *tc, const case_inputs *in,
                           clgqa_attention_kernel variant, int drawn, uint64_t seed,
                           uint64_t stream, float *out) {
    clgqa_runtime *rt = test_runtime();
    run->tc = *tc;
    clgqa_attention_dims *dm = &run->tc.dims;
    size_t nq = q_count(dm);
    const float *data[3] = {in->q, in->k, in->v};
    run->qkv = qkv_upload(tc, data, NAN);
    dm->row_stride = (int)run->qkv.stride;
    run->out = guarded_buffer(NULL, nq);
    int32_t map[16];
    for (int h = 0; h < dm->heads; h++)
        map[h] = tc->kv_map[h];
    run->kv_map = test_upload_int(map, (size_t)dm->heads);
    run->saved_floats = clgqa_attention_saved_floats(dm, tc->pgqa, variant);
    run->saved = guarded_buffer(NULL, run->saved_floats);
    clgqa_attention_saved_layout(dm, tc->pgqa, variant, clgqa_view_at(run->saved, GUARD),
                                 &run->layout);
    run->noise = tc->pgqa && !drawn ? test_upload(in->noise, noise_count(dm)) : NULL;
    clgqa_pgqa pgqa = {seed, stream, {run->noise, 0}};
    clgqa_attention_kernel keep = rt->attention_kernel;
    rt->attention_kernel = variant;
    clgqa_status s = clgqa_attention_forward(rt, dm, clgqa_view_at(run->out, GUARD),
                                             run->qkv.view[0], run->qkv.view[1], run->qkv.view[2],
                                             clgqa_view_at(run->kv_map, 0),
                                             tc->pgqa ? &pgqa : NULL, &run->layout);
    rt->attention_kernel = keep;
    TEST_OK(s);
    TEST_OK(clgqa_buffer_read(rt, run->out, GUARD * sizeof(float), nq * sizeof(float), out));
    assert_guards("out", run->out, nq);
    assert_guards("saved", run->saved, run->saved_floats);
}

static void device_free(device_run *run) {
    qkv_free(&run->qkv);
    clgqa_buffer_release(&run->out);
    clgqa_buffer_release(&run->kv_map);
    clgqa_buffer_release(&run->saved);
    if (run->noise)
        clgqa_buffer_release(&run->noise);
}

/* Backward after device_forward into dq, dk, dv (host, packed); the device
 * outputs start as junk (the op writes, never accumulates). */
static void device_backward(device_run *run, const case_inputs *in,
                            clgqa_attention_kernel variant, float *const grads[3]) {
    clgqa_runtime *rt = test_runtime();
    const clgqa_attention_dims *dm = &run->tc.dims;
    size_t nq = q_count(dm), nkv = kv_count(dm);
    float *junk[3] = {test_random_array(nq, -9.0f, 9.0f), test_random_array(nkv, -9.0f, 9.0f),
                      test_random_array(nkv, -9.0f, 9.0f)};
    qkv_device d = qkv_upload(&run->tc, (const float *const *)junk, GUARD_VALUE);
    cl_mem dout = test_upload(in->w, nq);
    size_t scratch_floats = clgqa_attention_scratch_floats(dm, run->tc.pgqa, variant);
    cl_mem scratch = guarded_buffer(NULL, scratch_floats);
    clgqa_attention_kernel keep = rt->attention_kernel;
    rt->attention_kernel = variant;
    clgqa_status s = clgqa_attention_backward(
        rt, dm, d.view[0], d.view[1], d.view[2], clgqa_view_at(dout, 0),
        clgqa_view_at(run->out, GUARD), run->qkv.view[0], run->qkv.view[1], run->qkv.view[2],
        clgqa_view_at(run->kv_map, 0), run->tc.pgqa, &run->layout, clgqa_view_at(scratch, GUARD));
    rt->attention_kernel = keep;
    TEST_OK(s);
    qkv_download(&run->tc, &d, grads);
    assert_guards("scratch", scratch, scratch_floats);
    assert_guards("saved (after backward)", run->saved, run->saved_floats);
    qkv_free(&d);
    clgqa_buffer_release(&dout);
    clgqa_buffer_release(&scratch);
    for (int i = 0; i < 3; i++)
        free(junk[i]);
}

/* ---- checks ---- */

/* Forward and backward of one case with both variants. Forward tolerance:
 * fp32 dot products over d and softmax sums over P give ~1e-6 relative;
 * 1e-5 relative plus 1e-6 of the output scale absolute covers it (elements
 * near 0 come from cancellation). Gradients pass through fp32 sums over P
 * tokens and the heads of a group (up to ~400 terms): measured errors stay
 * under 1e-6 of the largest |gradient|; we allow 1e-5 relative plus 1e-5 of
 * the largest |gradient| absolute (small entries are cancellations). */
static void check_case(const attention_case *tc, int zero_v_group) {
    const clgqa_attention_dims *dm = &tc->dims;
    size_t nq = q_count(dm), nkv = kv_count(dm);
    case_inputs in = make_inputs(tc, zero_v_group);
    double *qd = test_to_doubles(in.q, nq), *kd = test_to_doubles(in.k, nkv), *vd = test_to_doubles(in.v, nkv);
    double *ud = in.noise ? test_to_doubles(in.noise, noise_count(dm)) : NULL;
    double *wd = test_to_doubles(in.w, nq);
    double *want = malloc(sizeof(double) * nq);
    double *gq = malloc(sizeof(double) * nq), *gk = malloc(sizeof(double) * nkv);
    double *gv = malloc(sizeof(double) * nkv);
    ref_forward(tc, qd, kd, vd, ud, want);
    ref_backward(tc, qd, kd, vd, ud, wd, gq, gk, gv);
    float *out = malloc(sizeof(float) * nq);
    float *grads[3] = {malloc(sizeof(float) * nq), malloc(sizeof(float) * nkv),
                       malloc(sizeof(float) * nkv)};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        device_run run;
        device_forward(&run, tc, &in, variants[i], 0, 0, 0, out);
        test_assert_close(variants[i] == CLGQA_ATTENTION_TILED ? "tiled out" : "rows out", out,
                          want, nq, 1e-5, 1e-6 * max_abs(want, nq));
        device_backward(&run, &in, variants[i], grads);
        const char *tiled = variants[i] == CLGQA_ATTENTION_TILED ? "tiled " : "rows ";
        char name[3][16];
        snprintf(name[0], sizeof name[0], "%sdq", tiled);
        snprintf(name[1], sizeof name[1], "%sdk", tiled);
        snprintf(name[2], sizeof name[2], "%sdv", tiled);
        test_assert_close(name[0], grads[0], gq, nq, 1e-5, 1e-5 * max_abs(gq, nq));
        test_assert_close(name[1], grads[1], gk, nkv, 1e-5, 1e-5 * max_abs(gk, nkv));
        test_assert_close(name[2], grads[2], gv, nkv, 1e-5, 1e-5 * max_abs(gv, nkv));
        /* A key/value head that serves no query head gets exactly zero. */
        for (int j = 0; j < dm->kv_heads; j++) {
            int served = 0;
            for (int h = 0; h < dm->heads; h++)
                served += tc->kv_map[h] == j;
            for (size_t row = 0; !served && row < (size_t)dm->batch * dm->tokens; row++)
                for (int c = 0; c < dm->head_dim; c++) {
                    size_t at = row * dm->kv_heads * dm->head_dim + (size_t)j * dm->head_dim + c;
                    ck_assert_msg(grads[1][at] == 0.0f && grads[2][at] == 0.0f,
                                  "%sunused key head %d has a gradient at %zu", tiled, j, at);
                }
        }
        device_free(&run);
    }
    free_inputs(&in);
    free(qd), free(kd), free(vd), free(ud), free(wd), free(want), free(gq), free(gk), free(gv);
    free(out), free(grads[0]), free(grads[1]), free(grads[2]);
}

static void check_cases(const attention_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++)
        check_case(&cases[i], -1);
}

#define COUNT(a) (sizeof(a) / sizeof(a)[0])

/* The analytic reference gradients against finite differences of the
 * reference forward (error ~1e-9 at eps 1e-6; 1e-6 of the scale allowed),
 * on cases small enough for O(n) forward passes per gradient. */
START_TEST(reference_gradients_match_finite_differences) {
    const attention_case cases[] = {
        make_case(2, 5, 4, 2, 3, NULL, 0, 0),
        make_case(2, 4, 4, 3, 2, (int[]){0, 0, 0, 2}, 0, 0),
        make_case(2, 5, 4, 2, 3, NULL, 1, 0),
        make_case(1, 3, 2, 1, 2, NULL, 1, 0),
    };
    for (size_t i = 0; i < COUNT(cases) + 1; i++) {
        /* The last pass repeats PGQA with a zero v group: sigma == 0. */
        const attention_case *tc = &cases[i < COUNT(cases) ? i : 2];
        const clgqa_attention_dims *dm = &tc->dims;
        size_t nq = q_count(dm), nkv = kv_count(dm);
        case_inputs in = make_inputs(tc, i < COUNT(cases) ? -1 : 1);
        double *q = test_to_doubles(in.q, nq), *k = test_to_doubles(in.k, nkv), *v = test_to_doubles(in.v, nkv);
        double *u = in.noise ? test_to_doubles(in.noise, noise_count(dm)) : NULL;
        double *w = test_to_doubles(in.w, nq);
        double *g[3] = {malloc(sizeof(double) * nq), malloc(sizeof(double) * nkv),
                        malloc(sizeof(double) * nkv)};
        double *fd = malloc(sizeof(double) * nq);
        float *analytic = malloc(sizeof(float) * nq);
        ref_backward(tc, q, k, v, u, w, g[0], g[1], g[2]);
        double *x[3] = {q, k, v};
        size_t n[3] = {nq, nkv, nkv};
        for (int t = 0; t < 3; t++) {
            fd_gradient(tc, q, k, v, u, w, x[t], n[t], fd);
            for (size_t e = 0; e < n[t]; e++)
                analytic[e] = (float)g[t][e];
            /* float-rounded analytic values: 1e-7 relative of their own. */
            test_assert_close("reference gradient", analytic, fd, n[t], 1e-6, 1e-6 * max_abs(fd, n[t]));
        }
        free_inputs(&in);
        free(q), free(k), free(v), free(u), free(w), free(g[0]), free(g[1]), free(g[2]);
        free(fd), free(analytic);
    }
}
END_TEST

/* Tokens 1, 17, 65, 197 and head_dim 16, 32, 64, q/k/v packed and fused,
 * G from 1 to H. Sizes are not multiples of any tile. Head_dim 24, 12 and 13
 * take the rows kernels' vectors of 8, 4 and 1 lanes (attention.cl). The
 * tiled kernels' blocking follows head_dim (column groups: 8 at 64, 4 at
 * 32, 3 at 24, 2 at 16 and 13, 1 at 12 and 4) and the token count
 * (work-groups of 16 rows at P = 1 and 65, 32 at 17 and 197, 64 at 60). */
START_TEST(plain_attention_matches_reference) {
    if (test_small()) {
        const attention_case cases[] = {
            make_case(1, 17, 2, 2, 16, NULL, 0, 1), /* MHSA */
            make_case(2, 17, 3, 1, 32, NULL, 0, 0), /* G = 1 */
            make_case(2, 1, 2, 2, 64, NULL, 0, 1),  /* one token */
            make_case(1, 17, 2, 1, 64, NULL, 0, 1),
            make_case(1, 5, 2, 1, 13, NULL, 0, 1),
            make_case(1, 6, 2, 2, 24, NULL, 0, 0),
            make_case(1, 4, 2, 1, 12, NULL, 0, 1),
            make_case(1, 60, 1, 1, 16, NULL, 0, 1),
        };
        check_cases(cases, COUNT(cases));
        return;
    }
    const attention_case cases[] = {
        make_case(2, 17, 4, 4, 16, NULL, 0, 1),  make_case(2, 65, 4, 2, 32, NULL, 0, 0),
        make_case(1, 197, 2, 1, 64, NULL, 0, 1), make_case(2, 1, 3, 3, 16, NULL, 0, 1),
        make_case(1, 65, 3, 1, 64, NULL, 0, 1),  make_case(3, 197, 2, 2, 16, NULL, 0, 0),
        make_case(2, 20, 2, 2, 13, NULL, 0, 1),  make_case(1, 17, 6, 2, 32, NULL, 0, 1),
        make_case(2, 19, 2, 1, 24, NULL, 0, 0),  make_case(1, 23, 4, 2, 12, NULL, 0, 1),
        make_case(1, 60, 2, 2, 64, NULL, 0, 1),  make_case(1, 7, 2, 1, 4, NULL, 0, 0),
    };
    check_cases(cases, COUNT(cases));
}
END_TEST

START_TEST(uneven_maps_with_empty_groups) {
    if (test_small()) {
        /* Key head 1 serves no query head; head 2 serves one. */
        const attention_case cases[] = {
            make_case(1, 17, 4, 3, 16, (int[]){0, 0, 0, 2}, 0, 1),
        };
        check_cases(cases, COUNT(cases));
        return;
    }
    const attention_case cases[] = {
        make_case(2, 17, 4, 3, 16, (int[]){0, 0, 0, 2}, 0, 1),
        make_case(1, 65, 6, 4, 32, (int[]){1, 1, 3, 3, 3, 3}, 0, 1),
        make_case(1, 197, 3, 3, 16, (int[]){2, 2, 2}, 0, 0),
        make_case(2, 1, 4, 2, 64, (int[]){1, 1, 1, 1}, 0, 1),
        make_case(1, 197, 4, 3, 64, (int[]){0, 0, 2, 2}, 0, 1),
    };
    check_cases(cases, COUNT(cases));
}
END_TEST

START_TEST(pgqa_matches_reference) {
    if (test_small()) {
        attention_case tc = make_case(1, 17, 2, 1, 16, NULL, 1, 1);
        check_case(&tc, -1);
        tc = make_case(2, 1, 4, 2, 16, NULL, 1, 0); /* one token: rows of L = d */
        check_case(&tc, 1);                         /* and sigma == 0 in sample 0 */
        return;
    }
    const attention_case cases[] = {
        make_case(2, 17, 4, 2, 16, NULL, 1, 1),
        make_case(1, 65, 4, 4, 32, NULL, 1, 0),
        make_case(1, 197, 2, 1, 64, NULL, 1, 1),
        /* Rows of L = 2 shorter than the group of 4: U[i][i] exists for i < 2 only. */
        make_case(2, 1, 4, 1, 2, NULL, 1, 1),
    };
    check_cases(cases, COUNT(cases));
    /* Key head 1 of sample 0 has v = 0: rows with sigma == 0 get finite
     * gradients (sigma's derivative taken as 0). */
    attention_case tc = make_case(2, 17, 4, 2, 32, NULL, 1, 1);
    check_case(&tc, 1);
}
END_TEST

START_TEST(pgqa_drawn_noise) {
    attention_case tc = test_small() ? make_case(2, 5, 4, 2, 16, NULL, 1, 1)
                                      : make_case(2, 29, 6, 2, 32, NULL, 1, 1);
    const clgqa_attention_dims *dm = &tc.dims;
    size_t nq = q_count(dm), nkv = kv_count(dm), nu = noise_count(dm);
    case_inputs in = make_inputs(&tc, -1);
    float *out = malloc(sizeof(float) * nq), *again = malloc(sizeof(float) * nq);
    uint64_t seed = 42, stream = clgqa_stream_id(CLGQA_RNG_PGQA, 3, 17);
    float *u = malloc(sizeof(float) * nu);
    clgqa_host_uniform(u, nu, seed, stream);
    double *qd = test_to_doubles(in.q, nq), *kd = test_to_doubles(in.k, nkv), *vd = test_to_doubles(in.v, nkv);
    double *ud = test_to_doubles(u, nu), *want = malloc(sizeof(double) * nq);
    ref_forward(&tc, qd, kd, vd, ud, want);
    for (size_t i = 0; i < COUNT(variants); i++) {
        device_run run;
        device_forward(&run, &tc, &in, variants[i], 1, seed, stream, out);
        device_free(&run);
        /* Every (sample, head) row of the output has mean 0 (z has zero row
         * mean); fp32 sums of L terms leave ~1e-7 of the row's scale. */
        const int L = dm->tokens * dm->head_dim;
        for (int b = 0; b < dm->batch; b++)
            for (int h = 0; h < dm->heads; h++) {
                double sum = 0.0, scale = 0.0;
                for (int p = 0; p < dm->tokens; p++)
                    for (int c = 0; c < dm->head_dim; c++) {
                        double x = out[((size_t)b * dm->tokens + p) * dm->heads * dm->head_dim +
                                       (size_t)h * dm->head_dim + c];
                        sum += x;
                        scale = fmax(scale, fabs(x));
                    }
                ck_assert_msg(scale > 0.0, "row (%d, %d) is all zero", b, h);
                ck_assert_msg(fabs(sum / L) <= 1e-6 * scale, "row (%d, %d) has mean %g (scale %g)",
                              b, h, sum / L, scale);
            }
        /* The draw is the host generator's: element h*L + l of (seed, stream). */
        test_assert_close("drawn-noise out", out, want, nq, 1e-5, 1e-6 * max_abs(want, nq));
        /* Same seed and stream, same output; another stream, other noise. */
        device_forward(&run, &tc, &in, variants[i], 1, seed, stream, again);
        device_free(&run);
        test_assert_close_f("same stream", again, out, nq, 0.0, 0.0);
        device_forward(&run, &tc, &in, variants[i], 1, seed, stream + 1, again);
        device_free(&run);
        size_t differ = 0;
        for (size_t e = 0; e < nq; e++)
            differ += again[e] != out[e];
        ck_assert_msg(differ > nq / 2, "only %zu of %zu outputs changed with the stream", differ,
                      nq);
    }
    free_inputs(&in);
    free(out), free(again), free(u), free(qd), free(kd), free(vd), free(ud), free(want);
}
END_TEST

/* ---- half storage (precision 16-mixed) ----
 * q, k, v, out, the rows variant's probabilities and PGQA's A in half
 * (clgqa_attention_dims.storage); gradients, lse, D and the noise float. The
 * reference takes the half values of q, k and v that the device reads, so
 * what remains is the rounding of what the kernels store in half. With
 * u = 2^-11 (fp16's unit roundoff) and S the largest |score| of the case,
 * to first order:
 *  - rows: a score is stored rounded (u |s|), then its exponential (u),
 *    then the probability the backward reads (u). Through p = e / sum(e)
 *    each probability moves by at most eps = u (2 S + 3) of itself. tiled:
 *    scores and probabilities stay float (eps = 0 forward); its backward
 *    reads out in half for D = g . o: eps = u there.
 *  - out = sum_t p_t v_t, stored rounded:
 *    |d out| <= eps M_out + u |out|, M_out = sum_t p_t |v_t|.
 *  - PGQA: A (saved in half) moves by at most dA = max over its row of
 *    eps M_out + u |A|; mu then by dA, sigma by sqrt(L / (L - 1)) dA
 *    (<= 1.01 dA for rows of L >= 51 elements, as in every half case), so
 *    out = A - (z sigma + mu) by (2 + 1.01 |z|) dA, plus u |out|.
 *  - Backward, with dPabs_t = sum_c |g_c| |v_tc| and the magnitudes
 *    M_dv = sum P |g|, M_dq = d^-0.5 sum_t P_t (dPabs_t + sum_t' P_t'
 *    dPabs_t') |k_t| and M_dk likewise over the queries with |q|: a relative
 *    error eps in P (rows) or |dD| <= u sum_t P_t dPabs_t (tiled) moves dv
 *    by eps M_dv, dS by 2 eps of its magnitude, dq by 2 eps M_dq, dk by
 *    2 eps M_dk. PGQA's dA_g = g - mean(g) - c (A - mu), c = sum(g z) /
 *    ((L - 1) sigma), moves by delta = |c| (2 + 1.01 max|A - mu| / sigma) dA,
 *    which feeds the same sums: + 2 M(delta).
 * First-order bounds, times 1.5 for the second-order terms (eps < 1e-2 at
 * these scores, so eps^2 < 1e-4), plus the float arithmetic's own error as
 * in the fp32 cases (1e-5 relative and 1e-6 (out) or 1e-5 (gradients) of
 * the largest value); that absolute part also covers values rounded in
 * half's subnormal range (below 2^-14, an absolute 2^-25 rather than u of
 * the value). */

#define HALF_U OP_HALF_U
#define HALF_NAN 0x7e00

/* max |d^-0.5 q . k| over the case's (sample, head, query, key). */
static double max_score(const attention_case *tc, const double *q, const double *k) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int P = dm->tokens, d = dm->head_dim;
    const double scale = 1.0 / sqrt((double)d);
    double top = 0.0;
    for (int b = 0; b < dm->batch; b++)
        for (int h = 0; h < dm->heads; h++) {
            const int j = tc->kv_map[h];
            for (int p = 0; p < P; p++)
                for (int t = 0; t < P; t++) {
                    double sc = 0.0;
                    for (int c = 0; c < d; c++)
                        sc += scale * q[((size_t)b * P + p) * dm->heads * d + (size_t)h * d + c] *
                              k[((size_t)b * P + t) * dm->kv_heads * d + (size_t)j * d + c];
                    top = fmax(top, fabs(sc));
                }
        }
    return top;
}

/* The magnitudes of the comment above for |dout| = gabs ([B*P, H*d]):
 * m_out [B*P, H*d] (may be NULL), mq [B*P, H*d], mk and mv [B*P, G*d]. */
static void ref_magnitudes(const attention_case *tc, const double *q, const double *k,
                           const double *v, const double *gabs, double *m_out, double *mq,
                           double *mk, double *mv) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int B = dm->batch, P = dm->tokens, H = dm->heads, G = dm->kv_heads, d = dm->head_dim;
    const double scale = 1.0 / sqrt((double)d);
    memset(mq, 0, sizeof(double) * q_count(dm));
    memset(mk, 0, sizeof(double) * kv_count(dm));
    memset(mv, 0, sizeof(double) * kv_count(dm));
    double *probs = malloc(sizeof(double) * (size_t)P * P), *a = malloc(sizeof(double) * P * d);
    double *dpabs = malloc(sizeof(double) * P);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int j = tc->kv_map[h];
            ref_head(tc, b, h, q, k, v, probs, a);
            for (int p = 0; p < P; p++) {
                const double *pr = probs + (size_t)p * P;
                const size_t qrow = ((size_t)b * P + p) * H * d + (size_t)h * d;
                double weighted = 0.0;
                for (int t = 0; t < P; t++) {
                    const size_t krow = ((size_t)b * P + t) * G * d + (size_t)j * d;
                    dpabs[t] = 0.0;
                    for (int c = 0; c < d; c++)
                        dpabs[t] += gabs[qrow + c] * fabs(v[krow + c]);
                    weighted += pr[t] * dpabs[t];
                }
                for (int c = 0; m_out && c < d; c++) {
                    double sum = 0.0;
                    for (int t = 0; t < P; t++)
                        sum += pr[t] * fabs(v[((size_t)b * P + t) * G * d + (size_t)j * d + c]);
                    m_out[qrow + c] = sum;
                }
                for (int t = 0; t < P; t++) {
                    const size_t krow = ((size_t)b * P + t) * G * d + (size_t)j * d;
                    const double ds = pr[t] * (dpabs[t] + weighted);
                    for (int c = 0; c < d; c++) {
                        mq[qrow + c] += scale * ds * fabs(k[krow + c]);
                        mk[krow + c] += scale * ds * fabs(q[qrow + c]);
                        mv[krow + c] += pr[t] * gabs[qrow + c];
                    }
                }
            }
        }
    free(probs), free(a), free(dpabs);
}

/* PGQA's part of the bounds, per (sample, head) row: out_bound (the
 * forward's, without the float term), gabs = |dA_g| (the gradient the
 * attention's backward sees) and delta (its error bound), all [B*P, H*d]. */
static void ref_pgqa_bounds(const attention_case *tc, const double *q, const double *k,
                            const double *v, const double *u, const double *w,
                            const double *m_out, double eps, double *out_bound, double *gabs,
                            double *delta) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int B = dm->batch, P = dm->tokens, H = dm->heads, d = dm->head_dim, L = P * d;
    double *probs = malloc(sizeof(double) * (size_t)P * P), *a = malloc(sizeof(double) * L);
    double *z = malloc(sizeof(double) * L);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            ref_head(tc, b, h, q, k, v, probs, a);
            double mu, sigma, da_max = 0.0, spread = 0.0, g_sum = 0.0, gz_sum = 0.0;
            ref_pgqa_stats(tc, h, u, a, z, &mu, &sigma);
            ck_assert_msg(sigma > 0.0 && L >= 51, "the half cases keep sigma > 0 and L >= 51");
            for (int l = 0; l < L; l++) {
                const size_t at = ((size_t)b * P + l / d) * H * d + (size_t)h * d + l % d;
                da_max = fmax(da_max, eps * m_out[at] + HALF_U * fabs(a[l]));
                spread = fmax(spread, fabs(a[l] - mu));
                g_sum += w[at];
                gz_sum += w[at] * z[l];
            }
            const double coef = gz_sum / ((L - 1) * sigma);
            for (int l = 0; l < L; l++) {
                const size_t at = ((size_t)b * P + l / d) * H * d + (size_t)h * d + l % d;
                const double out = a[l] - (z[l] * sigma + mu);
                out_bound[at] = (2.0 + 1.01 * fabs(z[l])) * da_max + HALF_U * fabs(out);
                gabs[at] = fabs(w[at] - g_sum / L - coef * (a[l] - mu));
                delta[at] = fabs(coef) * (2.0 + 1.01 * spread / sigma) * da_max;
            }
        }
    free(probs), free(a), free(z);
}

/* |got - want| <= 1.5 bound + 1e-5 |want| + floor for every element;
 * returns the largest share of its allowance an element used. */
static double assert_within(const char *what, const float *got, const double *want,
                            const double *bound, size_t n, double floor) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double allowed = 1.5 * bound[i] + 1e-5 * fabs(want[i]) + floor;
        const double err = fabs((double)got[i] - want[i]);
        ck_assert_msg(err <= allowed, "%s[%zu] = %.9g, want %.9g (error %.3g, bound %.3g)", what,
                      i, (double)got[i], want[i], err, allowed);
        worst = fmax(worst, err / allowed);
    }
    return worst;
}

/* q, k, v rounded to half in the fused layout (padding columns half NaN),
 * between half guards; views in halves. */
static qkv_device qkv_upload_half(const attention_case *tc, const float *const data[3]) {
    const clgqa_attention_dims *dm = &tc->dims;
    size_t width[3] = {(size_t)dm->heads * dm->head_dim, (size_t)dm->kv_heads * dm->head_dim,
                       (size_t)dm->kv_heads * dm->head_dim};
    size_t rows = (size_t)dm->batch * dm->tokens;
    qkv_device x = {{NULL, NULL, NULL}, {{NULL, 0}}, fused_stride(dm), 0};
    size_t halves = rows * x.stride + 2 * GUARD, floats = (halves + 1) / 2;
    uint16_t *host = malloc(sizeof(uint16_t) * 2 * floats);
    for (size_t i = 0; i < 2 * floats; i++)
        host[i] = i < GUARD || i >= halves - GUARD ? OP_TEST_GUARD_HALF : HALF_NAN;
    for (size_t r = 0, col = 0; r < rows; r++, col = 0)
        for (int i = 0; i < 3; col += width[i], i++)
            for (size_t c = 0; c < width[i]; c++)
                host[GUARD + r * x.stride + col + c] = op_half_bits(data[i][r * width[i] + c]);
    x.mem[0] = test_upload((const float *)(const void *)host, floats);
    x.floats = floats;
    free(host);
    for (int i = 0; i < 3; i++)
        x.view[i] = clgqa_view_at(x.mem[0], GUARD + (i ? width[0] + (i - 1) * width[1] : 0));
    return x;
}

/* The float64 side of a half case: the reference from the half inputs (the
 * values the device reads) and one variant's bounds (half_bounds). */
typedef struct half_reference {
    const attention_case *tc;
    size_t n[3];                  /* elements of q (and out), k, v */
    double *q, *k, *v, *w, *u;    /* inputs; w = dout, u = PGQA's noise (or NULL) */
    double *out, *grad[3];        /* out; dq, dk, dv */
    double *out_bound, *bound[3]; /* allowed errors of out, dq, dk, dv (first order) */
    double score_max;             /* S */
} half_reference;

static half_reference half_reference_make(const attention_case *tc, const case_inputs *in) {
    const clgqa_attention_dims *dm = &tc->dims;
    half_reference r;
    memset(&r, 0, sizeof r);
    r.tc = tc;
    r.n[0] = q_count(dm), r.n[1] = kv_count(dm), r.n[2] = kv_count(dm);
    r.q = test_to_doubles(in->q, r.n[0]), r.k = test_to_doubles(in->k, r.n[1]);
    r.v = test_to_doubles(in->v, r.n[2]), r.w = test_to_doubles(in->w, r.n[0]);
    r.u = in->noise ? test_to_doubles(in->noise, noise_count(dm)) : NULL;
    r.out = malloc(sizeof(double) * r.n[0]);
    r.out_bound = malloc(sizeof(double) * r.n[0]);
    for (int g = 0; g < 3; g++) {
        r.grad[g] = malloc(sizeof(double) * r.n[g]);
        r.bound[g] = malloc(sizeof(double) * r.n[g]);
    }
    ref_forward(tc, r.q, r.k, r.v, r.u, r.out);
    ref_backward(tc, r.q, r.k, r.v, r.u, r.w, r.grad[0], r.grad[1], r.grad[2]);
    r.score_max = max_score(tc, r.q, r.k);
    return r;
}

static void half_reference_free(half_reference *r) {
    free(r->q), free(r->k), free(r->v), free(r->w), free(r->u), free(r->out);
    free(r->out_bound);
    for (int g = 0; g < 3; g++)
        free(r->grad[g]), free(r->bound[g]);
}

/* The bounds of the comment above for the rows (tiled 0) or tiled
 * variant: eps from u and S, the magnitudes of |dout| (PGQA: of |dA_g|,
 * plus those of its error delta). */
static void half_bounds(half_reference *r, int tiled) {
    const attention_case *tc = r->tc;
    const size_t nq = r->n[0], nkv = r->n[1];
    const double eps_forward = tiled ? 0.0 : HALF_U * (2.0 * r->score_max + 3.0);
    const double eps_backward = tiled ? HALF_U : eps_forward;
    double *m_out = malloc(sizeof(double) * nq), *gabs = malloc(sizeof(double) * nq);
    double *delta = calloc(nq, sizeof(double)), *m[3], *m_delta[3];
    for (int g = 0; g < 3; g++) {
        m[g] = malloc(sizeof(double) * r->n[g]);
        m_delta[g] = calloc(r->n[g], sizeof(double));
    }
    for (size_t i = 0; i < nq; i++)
        gabs[i] = fabs(r->w[i]);
    ref_magnitudes(tc, r->q, r->k, r->v, gabs, m_out, m[0], m[1], m[2]);
    if (tc->pgqa) {
        ref_pgqa_bounds(tc, r->q, r->k, r->v, r->u, r->w, m_out, eps_forward, r->out_bound, gabs,
                        delta);
        double *unused = malloc(sizeof(double) * nq);
        ref_magnitudes(tc, r->q, r->k, r->v, gabs, unused, m[0], m[1], m[2]);
        ref_magnitudes(tc, r->q, r->k, r->v, delta, unused, m_delta[0], m_delta[1], m_delta[2]);
        free(unused);
    } else {
        for (size_t i = 0; i < nq; i++)
            r->out_bound[i] = eps_forward * m_out[i] + HALF_U * fabs(r->out[i]);
    }
    for (size_t i = 0; i < nq; i++)
        r->bound[0][i] = 2.0 * eps_backward * m[0][i] + 2.0 * m_delta[0][i];
    for (size_t i = 0; i < nkv; i++) {
        r->bound[1][i] = 2.0 * eps_backward * m[1][i] + 2.0 * m_delta[1][i];
        r->bound[2][i] = eps_backward * m[2][i] + 2.0 * m_delta[2][i];
    }
    free(m_out), free(gabs), free(delta);
    for (int g = 0; g < 3; g++)
        free(m[g]), free(m_delta[g]);
}

/* Forward and backward of `variant` with half q, k, v (fused layout), out
 * and saved tensors, checked against r within its bounds; returns the
 * largest share of its allowance an element used. */
static double run_half_variant(const half_reference *r, const case_inputs *in,
                               clgqa_attention_kernel variant) {
    clgqa_runtime *rt = test_runtime();
    const attention_case *tc = r->tc;
    const size_t nq = r->n[0];
    const char *name = variant == CLGQA_ATTENTION_TILED ? "tiled" : "rows";
    const float *data[3] = {in->q, in->k, in->v};
    qkv_device qkv = qkv_upload_half(tc, data);
    clgqa_attention_dims dims = tc->dims;
    dims.row_stride = (int)qkv.stride;
    dims.storage = CLGQA_STORAGE_HALF;
    int32_t map[16];
    for (int h = 0; h < dims.heads; h++)
        map[h] = tc->kv_map[h];
    cl_mem out_mem = op_upload_padded_half(NULL, nq);
    cl_mem map_mem = test_upload_int(map, (size_t)dims.heads);
    size_t saved_floats = clgqa_attention_saved_floats(&dims, tc->pgqa, variant);
    cl_mem saved = guarded_buffer(NULL, saved_floats);
    clgqa_attention_saved layout;
    clgqa_attention_saved_layout(&dims, tc->pgqa, variant, clgqa_view_at(saved, GUARD), &layout);
    cl_mem noise = tc->pgqa ? test_upload(in->noise, noise_count(&dims)) : NULL;
    clgqa_pgqa pgqa = {0, 0, {noise, 0}};
    clgqa_attention_kernel keep = rt->attention_kernel;
    rt->attention_kernel = variant;
    clgqa_status s = clgqa_attention_forward(rt, &dims, op_view(out_mem), qkv.view[0],
                                             qkv.view[1], qkv.view[2], clgqa_view_at(map_mem, 0),
                                             tc->pgqa ? &pgqa : NULL, &layout);

    /* Backward into junk-filled float gradients (the op writes them). */
    float *junk[3], *got[3];
    for (int g = 0; g < 3; g++) {
        junk[g] = test_random_array(r->n[g], -9.0f, 9.0f);
        got[g] = malloc(sizeof(float) * r->n[g]);
    }
    qkv_device dqkv = qkv_upload(tc, (const float *const *)junk, GUARD_VALUE);
    cl_mem dout = test_upload(in->w, nq);
    size_t scratch_floats = clgqa_attention_scratch_floats(&dims, tc->pgqa, variant);
    cl_mem scratch = guarded_buffer(NULL, scratch_floats);
    if (s == CLGQA_OK)
        s = clgqa_attention_backward(rt, &dims, dqkv.view[0], dqkv.view[1], dqkv.view[2],
                                     clgqa_view_at(dout, 0), op_view(out_mem), qkv.view[0],
                                     qkv.view[1], qkv.view[2], clgqa_view_at(map_mem, 0),
                                     tc->pgqa, &layout, clgqa_view_at(scratch, GUARD));
    rt->attention_kernel = keep;
    TEST_OK(s);

    float *out = malloc(sizeof(float) * nq);
    char what[64];
    op_download_padded_half("out (half)", out_mem, out, nq);
    snprintf(what, sizeof what, "%s out (half)", name);
    double used = assert_within(what, out, r->out, r->out_bound, nq, 1e-6 * max_abs(r->out, nq));
    qkv_download(tc, &dqkv, got);
    assert_guards("saved (half)", saved, saved_floats);
    assert_guards("scratch (half)", scratch, scratch_floats);
    static const char *grad_names[3] = {"dq", "dk", "dv"};
    for (int g = 0; g < 3; g++) {
        snprintf(what, sizeof what, "%s %s (half)", name, grad_names[g]);
        used = fmax(used, assert_within(what, got[g], r->grad[g], r->bound[g], r->n[g],
                                        1e-5 * max_abs(r->grad[g], r->n[g])));
    }
    qkv_free(&qkv), qkv_free(&dqkv);
    clgqa_buffer_release(&out_mem), clgqa_buffer_release(&map_mem);
    clgqa_buffer_release(&saved), clgqa_buffer_release(&dout), clgqa_buffer_release(&scratch);
    if (noise)
        clgqa_buffer_release(&noise);
    for (int g = 0; g < 3; g++)
        free(junk[g]), free(got[g]);
    free(out);
    return used;
}

/* One case with half activations, both variants, against the reference of
 * its half inputs within the bounds above. */
static void check_half_case(const attention_case *tc_in) {
    attention_case tc = *tc_in;
    tc.fused = 1; /* the model's layout */
    const clgqa_attention_dims *dm = &tc.dims;
    case_inputs in = make_inputs(&tc, -1);
    for (size_t i = 0; i < q_count(dm); i++)
        in.q[i] = op_to_half(in.q[i]);
    for (size_t i = 0; i < kv_count(dm); i++) {
        in.k[i] = op_to_half(in.k[i]);
        in.v[i] = op_to_half(in.v[i]);
    }
    half_reference r = half_reference_make(&tc, &in);
    for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
        half_bounds(&r, variants[vi] == CLGQA_ATTENTION_TILED);
        double used = run_half_variant(&r, &in, variants[vi]);
        printf("attention (half) B%d P%d H%d G%d d%d%s %s: largest error %.2f of its bound "
               "(S = %.2f)\n", dm->batch, dm->tokens, dm->heads, dm->kv_heads, dm->head_dim,
               tc.pgqa ? " PGQA" : "", variants[vi] == CLGQA_ATTENTION_TILED ? "tiled" : "rows",
               used, r.score_max);
    }
    half_reference_free(&r);
    free_inputs(&in);
}

/* Half activations (no device extension: vload_half and vstore_half are
 * core OpenCL C), on the rows kernels' vector widths (16 at d = 16 and 32,
 * 1 at 13, 8 at 24, 4 at 12), grouped and uneven maps, and PGQA. */
START_TEST(half_storage_matches_reference) {
    if (test_small()) {
        const attention_case cases[] = {
            make_case(1, 17, 2, 1, 16, NULL, 0, 1),
            make_case(1, 5, 2, 1, 13, NULL, 0, 1),
            make_case(1, 6, 2, 2, 24, NULL, 0, 1),
            make_case(1, 17, 2, 1, 16, NULL, 1, 1),
        };
        for (size_t i = 0; i < COUNT(cases); i++)
            check_half_case(&cases[i]);
        return;
    }
    const attention_case cases[] = {
        make_case(2, 65, 4, 2, 32, NULL, 0, 1),
        make_case(1, 197, 2, 1, 64, NULL, 0, 1),
        make_case(1, 17, 4, 3, 16, (int[]){0, 0, 0, 2}, 0, 1),
        make_case(1, 23, 4, 2, 12, NULL, 0, 1),
        make_case(2, 20, 2, 2, 13, NULL, 0, 1),
        make_case(2, 17, 4, 2, 16, NULL, 1, 1),
        make_case(1, 65, 4, 4, 32, NULL, 1, 1),
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        check_half_case(&cases[i]);
}
END_TEST

/* The tiled backward sums each group in a fixed order: two runs agree bit
 * for bit (several query heads per key head, several key tiles). */
START_TEST(tiled_backward_is_deterministic) {
    attention_case tc = make_case(1, test_small() ? 17 : 65, 4, 1, 16, NULL, 0, 1);
    const clgqa_attention_dims *dm = &tc.dims;
    size_t n[3] = {q_count(dm), kv_count(dm), kv_count(dm)};
    case_inputs in = make_inputs(&tc, -1);
    float *first[3], *second[3];
    for (int i = 0; i < 3; i++) {
        first[i] = malloc(sizeof(float) * n[i]);
        second[i] = malloc(sizeof(float) * n[i]);
    }
    float *out = malloc(sizeof(float) * n[0]);
    device_run run;
    device_forward(&run, &tc, &in, CLGQA_ATTENTION_TILED, 0, 0, 0, out);
    device_backward(&run, &in, CLGQA_ATTENTION_TILED, first);
    device_backward(&run, &in, CLGQA_ATTENTION_TILED, second);
    device_free(&run);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(!memcmp(first[i], second[i], sizeof(float) * n[i]),
                      "gradient %d differs between two runs", i);
        free(first[i]), free(second[i]);
    }
    free_inputs(&in);
    free(out);
}
END_TEST

/* Saved activations: the tiled variant keeps one float per query row where
 * the rows variant keeps P. */
START_TEST(tiled_saves_no_score_matrix) {
    clgqa_attention_dims vit_s = {64, 197, 6, 6, 64, 0, CLGQA_STORAGE_FLOAT};
    ck_assert_uint_eq(clgqa_attention_saved_floats(&vit_s, 0, CLGQA_ATTENTION_TILED),
                      (size_t)64 * 6 * 197);
    ck_assert_uint_eq(clgqa_attention_saved_floats(&vit_s, 0, CLGQA_ATTENTION_ROWS),
                      (size_t)64 * 6 * 197 * 197);
    ck_assert_uint_eq(clgqa_attention_scratch_floats(&vit_s, 0, CLGQA_ATTENTION_TILED),
                      (size_t)64 * 6 * 197);
}
END_TEST

/* The blocking shrinks to fit less local memory (clgqa_runtime's
 * local_mem_bytes lowered): at head_dim 64, 16 KiB leaves forward tiles of
 * 8 keys (one per item) and dq and dk/dv work-groups of 8 rows; 8 KiB one
 * key or query per item in every kernel and dq and dk/dv work-groups of 4
 * rows. The kernels still match the reference; with 4 KiB even the
 * smallest work-groups do not fit and the call is refused. */
START_TEST(tiled_fits_small_local_memory) {
    clgqa_runtime *rt = test_runtime();
    const cl_ulong keep = rt->local_mem_bytes, sizes[2] = {16 << 10, 8 << 10};
    for (int i = 0; i < 2; i++) {
        rt->local_mem_bytes = sizes[i] < keep ? sizes[i] : keep;
        if (test_small()) {
            attention_case tc = make_case(1, 17, 3, 2, 32, (int[]){0, 0, 0}, 0, 1);
            check_case(&tc, -1);
        } else {
            const attention_case cases[] = {
                make_case(1, 65, 2, 1, 64, NULL, 0, 1),
                make_case(1, 197, 4, 3, 64, (int[]){0, 0, 2, 2}, 0, 0),
            };
            check_cases(cases, COUNT(cases));
        }
    }
    attention_case tc = make_case(1, 3, 1, 1, 64, NULL, 0, 0);
    float *junk = test_random_array(1000, 0.0f, 1.0f);
    cl_mem buf = test_upload(junk, 1000), kv_map = test_upload_int((int32_t[]){0}, 1);
    clgqa_view x = clgqa_view_at(buf, 0);
    clgqa_attention_saved saved;
    clgqa_attention_saved_layout(&tc.dims, 0, CLGQA_ATTENTION_TILED, x, &saved);
    clgqa_attention_kernel keep_kernel = rt->attention_kernel;
    rt->attention_kernel = CLGQA_ATTENTION_TILED;
    rt->local_mem_bytes = 4 << 10;
    clgqa_status s =
        clgqa_attention_forward(rt, &tc.dims, x, x, x, x, clgqa_view_at(kv_map, 0), NULL, &saved);
    rt->attention_kernel = keep_kernel;
    rt->local_mem_bytes = keep;
    ck_assert_int_eq(s, CLGQA_ERR_DEVICE_FEATURE);
    ck_assert_msg(strstr(clgqa_error_message(), "local memory"), "%s", clgqa_error_message());
    clgqa_buffer_release(&buf);
    clgqa_buffer_release(&kv_map);
    free(junk);
}
END_TEST

START_TEST(bad_input_is_refused) {
    clgqa_runtime *rt = test_runtime();
    attention_case tc = make_case(1, 3, 4, 2, 2, NULL, 1, 0);
    size_t n = 1000;
    float *junk = test_random_array(n, 0.0f, 1.0f);
    cl_mem buf = test_upload(junk, n);
    int32_t map[4] = {0, 0, 1, 1};
    cl_mem kv_map = test_upload_int(map, 4);
    clgqa_attention_saved saved;
    clgqa_attention_saved_layout(&tc.dims, 1, rt->attention_kernel, clgqa_view_at(buf, 0), &saved);
    clgqa_view x = clgqa_view_at(buf, 0), m = clgqa_view_at(kv_map, 0);
    clgqa_pgqa pgqa = {1, 2, {NULL, 0}};

    clgqa_attention_dims uneven = {1, 3, 4, 3, 2, 0, CLGQA_STORAGE_FLOAT};
    ck_assert_int_eq(clgqa_attention_forward(rt, &uneven, x, x, x, x, m, &pgqa, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "PGQA"), "%s", clgqa_error_message());
    clgqa_attention_dims too_many_kv = {1, 3, 2, 4, 2, 0, CLGQA_STORAGE_FLOAT};
    ck_assert_int_eq(clgqa_attention_forward(rt, &too_many_kv, x, x, x, x, m, NULL, &saved),
                     CLGQA_ERR_INVALID_ARG);
    clgqa_attention_dims short_stride = {1, 3, 4, 2, 2, 7, CLGQA_STORAGE_FLOAT};
    ck_assert_int_eq(clgqa_attention_forward(rt, &short_stride, x, x, x, x, m, NULL, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "row_stride"), "%s", clgqa_error_message());
    /* Outputs past the end of the buffer. */
    ck_assert_int_eq(clgqa_attention_forward(rt, &tc.dims, clgqa_view_at(buf, n - 5), x, x, x, m,
                                             &pgqa, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'out'"), "%s", clgqa_error_message());
    /* A strided k whose last row runs past the buffer. */
    clgqa_attention_dims wide = {1, 3, 4, 2, 2, 400, CLGQA_STORAGE_FLOAT};
    ck_assert_int_eq(clgqa_attention_forward(rt, &wide, x, x, clgqa_view_at(buf, 200), x, m, NULL,
                                             &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'k'"), "%s", clgqa_error_message());
    /* Saved views laid out for the other variant. */
    clgqa_attention_kernel keep = rt->attention_kernel;
    rt->attention_kernel = CLGQA_ATTENTION_TILED;
    clgqa_attention_saved rows_layout;
    clgqa_attention_saved_layout(&tc.dims, 0, CLGQA_ATTENTION_ROWS, x, &rows_layout);
    clgqa_status s = clgqa_attention_forward(rt, &tc.dims, x, x, x, x, m, NULL, &rows_layout);
    rt->attention_kernel = keep;
    ck_assert_int_eq(s, CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "tiled"), "%s", clgqa_error_message());
    /* Scratch too small for the backward pass. */
    ck_assert_int_eq(clgqa_attention_backward(rt, &tc.dims, x, x, x, x, x, x, x, x, m, 1, &saved,
                                              clgqa_view_at(buf, n - 10)),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "scratch"), "%s", clgqa_error_message());
    clgqa_attention_dims huge_head = {1, 3, 1, 1, CLGQA_ATTENTION_MAX_HEAD_DIM + 1, 0, CLGQA_STORAGE_FLOAT};
    ck_assert_int_eq(clgqa_attention_forward(rt, &huge_head, x, x, x, x, m, NULL, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "head_dim"), "%s", clgqa_error_message());
    clgqa_buffer_release(&buf);
    clgqa_buffer_release(&kv_map);
    free(junk);
}
END_TEST

static TCase *test_case(Suite *s, const char *name) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void) {
    Suite *s = suite_create("ops_attention");
    TCase *reference = test_case(s, "reference");
    tcase_add_test(reference, reference_gradients_match_finite_differences);
    TCase *variants_case = test_case(s, "variants");
    tcase_add_test(variants_case, plain_attention_matches_reference);
    tcase_add_test(variants_case, uneven_maps_with_empty_groups);
    TCase *pgqa = test_case(s, "pgqa");
    tcase_add_test(pgqa, pgqa_matches_reference);
    tcase_add_test(pgqa, pgqa_drawn_noise);
    TCase *tiled = test_case(s, "tiled");
    tcase_add_test(tiled, tiled_backward_is_deterministic);
    tcase_add_test(tiled, tiled_saves_no_score_matrix);
    tcase_add_test(tiled, tiled_fits_small_local_memory);
    TCase *half = test_case(s, "half");
    tcase_add_test(half, half_storage_matches_reference);
    TCase *errors = test_case(s, "errors");
    tcase_add_test(errors, bad_input_is_refused);
    return test_run_suite(s);
}
