/* Grouped attention forward/backward and the PGQA perturbation against a
 * float64 CPU reference written here: outputs element by element, gradients
 * against central finite differences of that reference (loss = sum(out * w),
 * so dout = w). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clgqa/attention.h"
#include "clgqa/ops.h"
#include "support/test_util.h"

static int small_sizes(void) {
    const char *s = getenv("CLGQA_TEST_SMALL");
    return s && *s && strcmp(s, "0") != 0;
}

/* ---- float64 reference ---- */

typedef struct attention_case {
    clgqa_attention_dims dims;
    int kv_map[16];
    int pgqa;
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

/* out [B*P, H*d]. With u ([H, P*d], the raw noise U) the PGQA perturbation
 * is applied: z = standardised U with U[i][i] = 0, A' = A - (z sigma + mu). */
static void ref_forward(const attention_case *tc, const double *q, const double *k,
                        const double *v, const double *u, double *out) {
    const clgqa_attention_dims *dm = &tc->dims;
    const int B = dm->batch, P = dm->tokens, H = dm->heads, G = dm->kv_heads, d = dm->head_dim;
    const int L = P * d;
    const double scale = 1.0 / sqrt((double)d);
    double *a = malloc(sizeof(double) * (size_t)L);
    double *z = malloc(sizeof(double) * (size_t)L);
    double *scores = malloc(sizeof(double) * (size_t)P);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int j = tc->kv_map[h];
            for (int p = 0; p < P; p++) {
                double top = -INFINITY, sum = 0.0;
                for (int p2 = 0; p2 < P; p2++) {
                    double s = 0.0;
                    for (int c = 0; c < d; c++)
                        s += scale * q[((size_t)b * P + p) * H * d + (size_t)h * d + c] *
                             k[((size_t)b * P + p2) * G * d + (size_t)j * d + c];
                    scores[p2] = s;
                    top = fmax(top, s);
                }
                for (int p2 = 0; p2 < P; p2++) {
                    scores[p2] = exp(scores[p2] - top);
                    sum += scores[p2];
                }
                for (int c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (int p2 = 0; p2 < P; p2++)
                        acc += scores[p2] / sum * v[((size_t)b * P + p2) * G * d + (size_t)j * d + c];
                    a[p * d + c] = acc;
                }
            }
            if (u) {
                double mu = 0.0, var = 0.0, u_mean = 0.0, u_var = 0.0;
                const int diagonal = h % (H / G);
                for (int l = 0; l < L; l++) {
                    z[l] = l == diagonal ? 0.0 : u[(size_t)h * L + l];
                    u_mean += z[l] / L;
                    mu += a[l] / L;
                }
                for (int l = 0; l < L; l++) {
                    u_var += (z[l] - u_mean) * (z[l] - u_mean) / (L - 1);
                    var += (a[l] - mu) * (a[l] - mu) / (L - 1);
                }
                double u_std = u_var > 0.0 ? sqrt(u_var) : 1.0, sigma = sqrt(var);
                for (int l = 0; l < L; l++)
                    a[l] -= (z[l] - u_mean) / u_std * sigma + mu;
            }
            for (int p = 0; p < P; p++)
                for (int c = 0; c < d; c++)
                    out[((size_t)b * P + p) * H * d + (size_t)h * d + c] = a[p * d + c];
        }
    free(a);
    free(z);
    free(scores);
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
static void ref_gradient(const attention_case *tc, double *q, double *k, double *v,
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

static double *to_double(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

static double max_abs(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- device runs ---- */

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

typedef struct device_run {
    cl_mem q, k, v, out, kv_map, saved, scratch, noise;
    clgqa_attention_saved layout;
    size_t saved_floats, scratch_floats;
} device_run;

/* Uploads q, k, v (each at offset GUARD of its buffer) and the map, and runs
 * the forward pass; `noise` (may be NULL) is PGQA's fixed U. */
static void device_forward(device_run *run, const attention_case *tc, const float *q,
                           const float *k, const float *v, const float *noise, uint64_t seed,
                           uint64_t stream, float *out) {
    clgqa_runtime *rt = test_runtime();
    const clgqa_attention_dims *dm = &tc->dims;
    size_t nq = q_count(dm), nkv = kv_count(dm);
    run->q = guarded_buffer(q, nq);
    run->k = guarded_buffer(k, nkv);
    run->v = guarded_buffer(v, nkv);
    run->out = guarded_buffer(NULL, nq);
    int32_t map[16];
    for (int h = 0; h < dm->heads; h++)
        map[h] = tc->kv_map[h];
    run->kv_map = test_upload_int(map, (size_t)dm->heads);
    run->saved_floats = clgqa_attention_saved_floats(dm, tc->pgqa);
    run->scratch_floats = clgqa_attention_scratch_floats(dm);
    run->saved = guarded_buffer(NULL, run->saved_floats);
    run->scratch = guarded_buffer(NULL, run->scratch_floats);
    clgqa_attention_saved_layout(dm, tc->pgqa, clgqa_view_at(run->saved, GUARD), &run->layout);
    run->noise = noise ? test_upload(noise, noise_count(dm)) : NULL;
    clgqa_pgqa pgqa = {seed, stream, {run->noise, 0}};
    TEST_OK(clgqa_attention_forward(rt, dm, clgqa_view_at(run->out, GUARD),
                                    clgqa_view_at(run->q, GUARD), clgqa_view_at(run->k, GUARD),
                                    clgqa_view_at(run->v, GUARD), clgqa_view_at(run->kv_map, 0),
                                    tc->pgqa ? &pgqa : NULL, &run->layout));
    TEST_OK(clgqa_buffer_read(rt, run->out, GUARD * sizeof(float), nq * sizeof(float), out));
    assert_guards("out", run->out, nq);
    assert_guards("saved", run->saved, run->saved_floats);
}

static void device_free(device_run *run) {
    clgqa_buffer_release(&run->q);
    clgqa_buffer_release(&run->k);
    clgqa_buffer_release(&run->v);
    clgqa_buffer_release(&run->out);
    clgqa_buffer_release(&run->kv_map);
    clgqa_buffer_release(&run->saved);
    clgqa_buffer_release(&run->scratch);
    if (run->noise)
        clgqa_buffer_release(&run->noise);
}

/* ---- forward ---- */

/* Forward of every element against the reference. fp32 GEMMs over P and d
 * terms and an fp32 softmax: ~1e-6 relative; 1e-5 relative plus 1e-6 of the
 * output scale absolute covers it (elements near 0 come from cancellation). */
static void check_forward(const attention_case *tc) {
    const clgqa_attention_dims *dm = &tc->dims;
    size_t nq = q_count(dm), nkv = kv_count(dm);
    float *q = test_random_array(nq, -1.5f, 1.5f);
    float *k = test_random_array(nkv, -1.5f, 1.5f);
    float *v = test_random_array(nkv, -1.0f, 1.0f);
    float *noise = tc->pgqa ? test_random_array(noise_count(dm), 0.0f, 1.0f) : NULL;
    float *out = malloc(sizeof(float) * nq);
    device_run run;
    device_forward(&run, tc, q, k, v, noise, 0, 0, out);
    double *qd = to_double(q, nq), *kd = to_double(k, nkv), *vd = to_double(v, nkv);
    double *ud = noise ? to_double(noise, noise_count(dm)) : NULL;
    double *want = malloc(sizeof(double) * nq);
    ref_forward(tc, qd, kd, vd, ud, want);
    test_assert_close("attention out", out, want, nq, 1e-5, 1e-6 * max_abs(want, nq));
    device_free(&run);
    free(q), free(k), free(v), free(noise), free(out);
    free(qd), free(kd), free(vd), free(ud), free(want);
}

static attention_case make_case(int batch, int tokens, int heads, int kv_heads, int head_dim,
                                const int *kv_map, int pgqa) {
    attention_case tc = {{batch, tokens, heads, kv_heads, head_dim}, {0}, pgqa};
    for (int h = 0; h < heads; h++)
        tc.kv_map[h] = kv_map ? kv_map[h] : h / (heads / kv_heads);
    return tc;
}

START_TEST(forward_mhsa) {
    attention_case tc = make_case(2, 5, 4, 4, 3, NULL, 0);
    check_forward(&tc);
    /* Rows of P*d = 740 > 256: the row kernels loop over their elements. */
    tc = small_sizes() ? make_case(1, 20, 2, 2, 13, NULL, 0) : make_case(2, 37, 6, 6, 20, NULL, 0);
    check_forward(&tc);
}
END_TEST

START_TEST(forward_static_groups) {
    attention_case tc = make_case(2, 5, 4, 2, 3, NULL, 0);
    check_forward(&tc);
    tc = small_sizes() ? make_case(1, 7, 3, 1, 4, NULL, 0) : make_case(3, 50, 6, 2, 16, NULL, 0);
    check_forward(&tc);
}
END_TEST

START_TEST(forward_uneven_map_with_empty_group) {
    /* Key head 1 serves no query head; head 2 serves one. */
    attention_case tc = make_case(2, 5, 4, 3, 3, (int[]){0, 0, 0, 2}, 0);
    check_forward(&tc);
    tc = make_case(2, 9, 6, 4, 5, (int[]){1, 1, 3, 3, 3, 3}, 0);
    check_forward(&tc);
}
END_TEST

/* ---- backward ---- */

/* Runs forward and backward on device with dq/dk/dv pre-filled (backward
 * accumulates) and checks each against init + finite differences of the
 * reference. The device gradient passes through four fp32 GEMMs and fp32
 * row reductions: measured errors stay below 5e-7 of the largest |gradient|
 * (the finite-difference error is ~1e-9). We allow 1e-5 relative plus 3e-6
 * of the largest |gradient| absolute, since small entries come from
 * cancellation in sums over tokens and heads. */
static void check_backward(const attention_case *tc, int zero_v_group) {
    const clgqa_attention_dims *dm = &tc->dims;
    clgqa_runtime *rt = test_runtime();
    size_t nq = q_count(dm), nkv = kv_count(dm);
    float *q = test_random_array(nq, -1.5f, 1.5f);
    float *k = test_random_array(nkv, -1.5f, 1.5f);
    float *v = test_random_array(nkv, -1.0f, 1.0f);
    if (zero_v_group >= 0) {
        /* v of this key head in sample 0 is zero: its heads' outputs are
         * constant rows, sigma == 0 exactly. */
        for (int p = 0; p < dm->tokens; p++)
            for (int c = 0; c < dm->head_dim; c++)
                v[(size_t)p * dm->kv_heads * dm->head_dim + (size_t)zero_v_group * dm->head_dim + c] =
                    0.0f;
    }
    float *noise = tc->pgqa ? test_random_array(noise_count(dm), 0.0f, 1.0f) : NULL;
    float *w = test_random_array(nq, -1.0f, 1.0f);
    float *out = malloc(sizeof(float) * nq);
    device_run run;
    device_forward(&run, tc, q, k, v, noise, 0, 0, out);

    float *dq0 = test_random_array(nq, -0.5f, 0.5f);
    float *dk0 = test_random_array(nkv, -0.5f, 0.5f);
    float *dv0 = test_random_array(nkv, -0.5f, 0.5f);
    cl_mem dq = guarded_buffer(dq0, nq), dk = guarded_buffer(dk0, nkv);
    cl_mem dv = guarded_buffer(dv0, nkv);
    cl_mem dout = test_upload(w, nq);
    TEST_OK(clgqa_attention_backward(rt, dm, clgqa_view_at(dq, GUARD), clgqa_view_at(dk, GUARD),
                                     clgqa_view_at(dv, GUARD), clgqa_view_at(dout, 0),
                                     clgqa_view_at(run.kv_map, 0), tc->pgqa, &run.layout,
                                     clgqa_view_at(run.scratch, GUARD)));
    float *got_q = malloc(sizeof(float) * nq), *got_k = malloc(sizeof(float) * nkv);
    float *got_v = malloc(sizeof(float) * nkv);
    TEST_OK(clgqa_buffer_read(rt, dq, GUARD * sizeof(float), nq * sizeof(float), got_q));
    TEST_OK(clgqa_buffer_read(rt, dk, GUARD * sizeof(float), nkv * sizeof(float), got_k));
    TEST_OK(clgqa_buffer_read(rt, dv, GUARD * sizeof(float), nkv * sizeof(float), got_v));
    assert_guards("dq", dq, nq);
    assert_guards("dk", dk, nkv);
    assert_guards("dv", dv, nkv);
    assert_guards("scratch", run.scratch, run.scratch_floats);

    double *qd = to_double(q, nq), *kd = to_double(k, nkv), *vd = to_double(v, nkv);
    double *ud = noise ? to_double(noise, noise_count(dm)) : NULL;
    double *wd = to_double(w, nq);
    double *gq = malloc(sizeof(double) * nq), *gk = malloc(sizeof(double) * nkv);
    double *gv = malloc(sizeof(double) * nkv);
    ref_gradient(tc, qd, kd, vd, ud, wd, qd, nq, gq);
    ref_gradient(tc, qd, kd, vd, ud, wd, kd, nkv, gk);
    ref_gradient(tc, qd, kd, vd, ud, wd, vd, nkv, gv);
    double scale_q = max_abs(gq, nq), scale_k = max_abs(gk, nkv), scale_v = max_abs(gv, nkv);
    for (size_t i = 0; i < nq; i++)
        gq[i] += dq0[i];
    for (size_t i = 0; i < nkv; i++) {
        gk[i] += dk0[i];
        gv[i] += dv0[i];
    }
    test_assert_close("dq", got_q, gq, nq, 1e-5, 3e-6 * scale_q);
    test_assert_close("dk", got_k, gk, nkv, 1e-5, 3e-6 * scale_k);
    test_assert_close("dv", got_v, gv, nkv, 1e-5, 3e-6 * scale_v);

    /* A key/value head that serves no query head gets exactly nothing. */
    for (int j = 0; j < dm->kv_heads; j++) {
        int served = 0;
        for (int h = 0; h < dm->heads; h++)
            served += tc->kv_map[h] == j;
        if (served)
            continue;
        for (size_t row = 0; row < (size_t)dm->batch * dm->tokens; row++)
            for (int c = 0; c < dm->head_dim; c++) {
                size_t at = row * dm->kv_heads * dm->head_dim + (size_t)j * dm->head_dim + c;
                ck_assert_msg(got_k[at] == dk0[at] && got_v[at] == dv0[at],
                              "unused key head %d received a gradient at %zu", j, at);
            }
    }

    clgqa_buffer_release(&dq);
    clgqa_buffer_release(&dk);
    clgqa_buffer_release(&dv);
    clgqa_buffer_release(&dout);
    device_free(&run);
    free(q), free(k), free(v), free(noise), free(w), free(out);
    free(dq0), free(dk0), free(dv0), free(got_q), free(got_k), free(got_v);
    free(qd), free(kd), free(vd), free(ud), free(wd), free(gq), free(gk), free(gv);
}

START_TEST(backward_mhsa) {
    attention_case tc = make_case(2, 5, 4, 4, 3, NULL, 0);
    check_backward(&tc, -1);
    if (!small_sizes()) {
        tc = make_case(2, 11, 3, 3, 7, NULL, 0);
        check_backward(&tc, -1);
    }
}
END_TEST

START_TEST(backward_static_groups) {
    attention_case tc = make_case(2, 5, 4, 2, 3, NULL, 0);
    check_backward(&tc, -1);
    if (!small_sizes()) {
        tc = make_case(3, 7, 6, 2, 5, NULL, 0);
        check_backward(&tc, -1);
    }
}
END_TEST

START_TEST(backward_uneven_map_with_empty_group) {
    attention_case tc = make_case(2, 5, 4, 3, 3, (int[]){0, 0, 0, 2}, 0);
    check_backward(&tc, -1);
    if (!small_sizes()) {
        tc = make_case(2, 9, 6, 4, 5, (int[]){1, 1, 3, 3, 3, 3}, 0);
        check_backward(&tc, -1);
    }
}
END_TEST

/* ---- PGQA ---- */

START_TEST(pgqa_forward_fixed_noise) {
    attention_case tc = make_case(2, 5, 4, 2, 3, NULL, 1);
    check_forward(&tc);
    /* Rows of L = 2 shorter than the group of 4: U[i][i] exists for i < 2 only. */
    tc = make_case(2, 1, 4, 1, 2, NULL, 1);
    check_forward(&tc);
    tc = small_sizes() ? make_case(1, 20, 2, 1, 13, NULL, 1) : make_case(2, 37, 6, 3, 20, NULL, 1);
    check_forward(&tc);
}
END_TEST

START_TEST(pgqa_forward_drawn_noise) {
    attention_case tc = small_sizes() ? make_case(2, 5, 4, 2, 3, NULL, 1)
                                      : make_case(2, 29, 6, 2, 11, NULL, 1);
    const clgqa_attention_dims *dm = &tc.dims;
    size_t nq = q_count(dm), nkv = kv_count(dm), nu = noise_count(dm);
    float *q = test_random_array(nq, -1.5f, 1.5f);
    float *k = test_random_array(nkv, -1.5f, 1.5f);
    float *v = test_random_array(nkv, -1.0f, 1.0f);
    float *out = malloc(sizeof(float) * nq), *again = malloc(sizeof(float) * nq);
    uint64_t seed = 42, stream = clgqa_stream_id(CLGQA_RNG_PGQA, 3, 17);
    device_run run;
    device_forward(&run, &tc, q, k, v, NULL, seed, stream, out);
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
            ck_assert_msg(fabs(sum / L) <= 1e-6 * scale, "row (%d, %d) has mean %g (scale %g)", b,
                          h, sum / L, scale);
        }

    /* The draw is the host generator's: element h*L + l of (seed, stream). */
    float *u = malloc(sizeof(float) * nu);
    clgqa_host_uniform(u, nu, seed, stream);
    double *qd = to_double(q, nq), *kd = to_double(k, nkv), *vd = to_double(v, nkv);
    double *ud = to_double(u, nu), *want = malloc(sizeof(double) * nq);
    ref_forward(&tc, qd, kd, vd, ud, want);
    test_assert_close("drawn-noise out", out, want, nq, 1e-5, 1e-6 * max_abs(want, nq));

    /* Same seed and stream, same output; another stream, other noise. */
    device_forward(&run, &tc, q, k, v, NULL, seed, stream, again);
    device_free(&run);
    test_assert_close_f("same stream", again, out, nq, 0.0, 0.0);
    device_forward(&run, &tc, q, k, v, NULL, seed, stream + 1, again);
    device_free(&run);
    size_t differ = 0;
    for (size_t i = 0; i < nq; i++)
        differ += again[i] != out[i];
    ck_assert_msg(differ > nq / 2, "only %zu of %zu outputs changed with the stream", differ, nq);

    free(q), free(k), free(v), free(out), free(again), free(u);
    free(qd), free(kd), free(vd), free(ud), free(want);
}
END_TEST

START_TEST(pgqa_backward) {
    attention_case tc = make_case(2, 5, 4, 2, 3, NULL, 1);
    check_backward(&tc, -1);
    /* Key head 1 of sample 0 has v = 0: rows with sigma == 0 get finite
     * gradients (sigma's derivative taken as 0, as the central difference). */
    check_backward(&tc, 1);
    if (!small_sizes()) {
        tc = make_case(2, 6, 6, 3, 4, NULL, 1);
        check_backward(&tc, 0);
    }
}
END_TEST

START_TEST(bad_input_is_refused) {
    clgqa_runtime *rt = test_runtime();
    attention_case tc = make_case(1, 3, 4, 2, 2, NULL, 1);
    size_t n = 1000;
    float *junk = test_random_array(n, 0.0f, 1.0f);
    cl_mem buf = test_upload(junk, n);
    int32_t map[4] = {0, 0, 1, 1};
    cl_mem kv_map = test_upload_int(map, 4);
    clgqa_attention_saved saved;
    clgqa_attention_saved_layout(&tc.dims, 1, clgqa_view_at(buf, 0), &saved);
    clgqa_view x = clgqa_view_at(buf, 0), m = clgqa_view_at(kv_map, 0);
    clgqa_pgqa pgqa = {1, 2, {NULL, 0}};

    clgqa_attention_dims uneven = {1, 3, 4, 3, 2};
    ck_assert_int_eq(clgqa_attention_forward(rt, &uneven, x, x, x, x, m, &pgqa, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "PGQA"), "%s", clgqa_error_message());
    clgqa_attention_dims too_many_kv = {1, 3, 2, 4, 2};
    ck_assert_int_eq(clgqa_attention_forward(rt, &too_many_kv, x, x, x, x, m, NULL, &saved),
                     CLGQA_ERR_INVALID_ARG);
    /* Outputs past the end of the buffer. */
    ck_assert_int_eq(clgqa_attention_forward(rt, &tc.dims, clgqa_view_at(buf, n - 5), x, x, x, m,
                                             &pgqa, &saved),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "'out'"), "%s", clgqa_error_message());
    /* Scratch too small for the backward pass. */
    ck_assert_int_eq(clgqa_attention_backward(rt, &tc.dims, x, x, x, x, m, 1, &saved,
                                              clgqa_view_at(buf, n - 10)),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "scratch"), "%s", clgqa_error_message());
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
    Suite *s = suite_create("attention");
    TCase *forward = test_case(s, "forward");
    tcase_add_test(forward, forward_mhsa);
    tcase_add_test(forward, forward_static_groups);
    tcase_add_test(forward, forward_uneven_map_with_empty_group);
    TCase *backward = test_case(s, "backward");
    tcase_add_test(backward, backward_mhsa);
    tcase_add_test(backward, backward_static_groups);
    tcase_add_test(backward, backward_uneven_map_with_empty_group);
    TCase *pgqa = test_case(s, "pgqa");
    tcase_add_test(pgqa, pgqa_forward_fixed_noise);
    tcase_add_test(pgqa, pgqa_forward_drawn_noise);
    tcase_add_test(pgqa, pgqa_backward);
    TCase *errors = test_case(s, "errors");
    tcase_add_test(errors, bad_input_is_refused);
    return test_run_suite(s);
}
