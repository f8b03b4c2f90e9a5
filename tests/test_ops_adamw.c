/* AdamW over several steps against a float64 reference of PyTorch's
 * torch.optim.AdamW update, alone and after clipping by global norm
 * (sum_squares -> clip_factor -> adamw_step with the device grad_scale).
 *
 * Tolerances: one float step rounds each of p, m, v a few times (relative
 * ~1e-7) and m / (sqrt(v) / c2 + eps) to ~1e-6 relative; the update has
 * size ~lr = 0.05, so after 6 steps |p error| <= 1e-6 + 1e-6 |p|, m and v
 * within 2e-6 relative. A wrong formula (eps inside the square root, a
 * missing bias correction or decay) moves p by >= 1e-4. The no-decay
 * ranges and the weights' EMA (closed form on constant weights) too. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "support/op_tests.h"

#define STEPS 6

static const clgqa_view no_scaler = {NULL, 0};

typedef struct reference_state {
    double *p, *m, *v;
} reference_state;

/* The no-decay ranges of the tests that use them: flat indices of a buffer
 * whose element 0 is the launch's element NO_DECAY_FIRST; one range ends
 * before the launch, one covers the launch's first element, one the last
 * and past it. */
#define NO_DECAY_FIRST 1000
static const cl_uint no_decay_edges[] = {0,    500,  1000, 1003, 1010,   1050,
                                         1051, 1099, 1200, 1201, 1256,   5000000};
#define NO_DECAY_EDGES (sizeof no_decay_edges / sizeof no_decay_edges[0])
static int skips_decay(size_t i) {
    size_t count = 0;
    for (size_t e = 0; e < NO_DECAY_EDGES; e++)
        count += no_decay_edges[e] <= NO_DECAY_FIRST + i;
    return count % 2;
}

/* torch.optim.AdamW (decoupled decay, bias correction), in float64; with
 * no_decay, the elements skips_decay names are a group of weight decay 0. */
static void adamw_ref(reference_state *s, const float *grads, double scale, size_t n, double lr,
                      double beta1, double beta2, double eps, double weight_decay, long step,
                      int no_decay) {
    double bias_correction1 = 1 - pow(beta1, (double)step);
    double bias_correction2 = 1 - pow(beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        double g = grads[i] * scale;
        if (!(no_decay && skips_decay(i)))
            s->p[i] *= 1 - lr * weight_decay;
        s->m[i] = beta1 * s->m[i] + (1 - beta1) * g;
        s->v[i] = beta2 * s->v[i] + (1 - beta2) * g * g;
        double m_hat = s->m[i] / bias_correction1, v_hat = s->v[i] / bias_correction2;
        s->p[i] -= lr * m_hat / (sqrt(v_hat) + eps);
    }
}

/* Hyper-parameters as a config writes them: Python holds these decimals as
 * doubles; the device op gets them as floats. */
typedef struct decimal_hparams {
    double lr, beta1, beta2, eps, weight_decay;
} decimal_hparams;

/* Runs STEPS steps from `first_step` on device and reference, checking p, m
 * and v after each. With clip, gradients are clipped to max_norm by global
 * norm on the device, and by torch's clip_grad_norm_ formula in float64. */
static void run_steps(size_t n, const decimal_hparams *d, long first_step, int zero_moments,
                      int clip, int no_decay) {
    clgqa_runtime *rt = test_runtime();
    const clgqa_adamw_hparams hparams = {(float)d->lr, (float)d->beta1, (float)d->beta2,
                                         (float)d->eps, (float)d->weight_decay};
    const clgqa_adamw_hparams *hp = &hparams;
    float *p = test_random_array(n, -1, 1), *m = test_random_array(n, -0.1f, 0.1f);
    float *v = test_random_array(n, 0.001f, 0.01f);
    if (zero_moments) /* a fresh optimizer: torch starts both moments at 0 */
        for (size_t i = 0; i < n; i++)
            m[i] = v[i] = 0;
    reference_state ref = {test_to_doubles(p, n), test_to_doubles(m, n), test_to_doubles(v, n)};
    cl_mem p_mem = op_upload_padded(p, n), m_mem = op_upload_padded(m, n);
    cl_mem v_mem = op_upload_padded(v, n), g_mem = op_upload_padded(NULL, n);
    cl_mem norm_mem = op_upload_padded(NULL, 1), scale_mem = op_upload_padded(NULL, 1);
    float *got = op_floats(n);
    const float max_norm = 0.5f;
    cl_mem edges_mem = op_upload_padded_int((const int32_t *)no_decay_edges, NO_DECAY_EDGES);
    const clgqa_no_decay ranges = {op_view(edges_mem), NO_DECAY_EDGES, NO_DECAY_FIRST};

    for (long step = first_step; step < first_step + STEPS; step++) {
        float *g = test_random_array(n, -1, 1);
        op_write_padded(g_mem, g, n);
        double scale = 1.0;
        clgqa_view scale_view = clgqa_view_at(NULL, 0);
        if (clip) {
            double norm = 0;
            for (size_t i = 0; i < n; i++)
                norm += (double)g[i] * g[i];
            scale = fmin(1.0, max_norm / (sqrt(norm) + 1e-6));
            TEST_OK(clgqa_sum_squares(rt, op_view(norm_mem), op_view(g_mem), n));
            TEST_OK(clgqa_clip_factor(rt, op_view(scale_mem), op_view(norm_mem), max_norm));
            scale_view = op_view(scale_mem);
        }
        TEST_OK(clgqa_adamw_step(rt, op_view(p_mem), op_view(g_mem), op_view(m_mem),
                                 op_view(v_mem), n, hp, step, scale_view,
                                 no_decay ? &ranges : NULL, no_scaler));
        adamw_ref(&ref, g, scale, n, d->lr, d->beta1, d->beta2, d->eps, d->weight_decay, step,
                  no_decay);
        if (clip) {
            float device_scale;
            op_download_padded("grad_scale", scale_mem, &device_scale, 1);
            ck_assert_msg(fabs(device_scale - scale) <= 1e-6 * scale,
                          "clip factor: got %.9g want %.9g", (double)device_scale, scale);
        }
        op_download_padded("m", m_mem, got, n);
        /* m = beta1 m + (1 - beta1) g can cancel: absolute part ~ 2^-24 x
         * the terms' size (<= 0.3). */
        test_assert_close("adamw m", got, ref.m, n, 2e-6, 1e-7);
        op_download_padded("v", v_mem, got, n);
        test_assert_close("adamw v", got, ref.v, n, 2e-6, 1e-12);
        op_download_padded("params", p_mem, got, n);
        test_assert_close("adamw params", got, ref.p, n, 1e-6, 1e-6);
        free(g);
    }
    cl_mem mems[] = {p_mem, m_mem, v_mem, g_mem, norm_mem, scale_mem, edges_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(p), free(m), free(v), free(got), free(ref.p), free(ref.m), free(ref.v);
}

static size_t big_n(void) { return op_test_size(100003, 4099); }

START_TEST(steps_from_a_fresh_optimizer_match_torch) {
    const decimal_hparams hp = {0.05, 0.9, 0.999, 1e-8, 0.05};
    run_steps(big_n(), &hp, 1, 1, 0, 0);
    run_steps(1, &hp, 1, 1, 0, 0);
}
END_TEST

START_TEST(steps_mid_training_match_torch) {
    /* A large eps makes its place in the denominator matter. */
    const decimal_hparams hp = {0.05, 0.8, 0.99, 0.01, 0.1};
    run_steps(257, &hp, 1000, 0, 0, 0);
}
END_TEST

/* timm's no_weight_decay as a second group with decay 0: the ranges of
 * no_decay_edges, relative to a chunk that starts at flat element 1000.
 * A large decay makes a missed or wrong range visible (>= 1e-3). */
START_TEST(no_decay_ranges_are_not_decayed) {
    const decimal_hparams hp = {0.05, 0.9, 0.999, 1e-8, 0.5};
    run_steps(257, &hp, 1, 1, 0, 1);
    run_steps(1, &hp, 1, 1, 0, 1);
}
END_TEST

/* The EMA of weights that stay constant (a toy whose optimizer does not
 * move it): after N updates ema = p + (e0 - p) (1 - w)^N in closed form, w
 * = 1 - decay, for decays below and above torch.lerp's switch at w = 0.5.
 * Each update rounds its result once at the magnitude of max(|e|, |p|)
 * (1 ulp, 6e-8 of it) and its product and difference at |e - p|, which
 * only shrinks: 50 updates stay within 50 ulp, 3e-6 of max(|e0|, |p|) +
 * |e0 - p|. */
START_TEST(ema_of_constant_weights_is_the_closed_form) {
    clgqa_runtime *rt = test_runtime();
    const size_t n = op_test_size(100003, 1031);
    const double decays[] = {0.9998, 0.9, 0.3};
    for (size_t k = 0; k < sizeof decays / sizeof decays[0]; k++) {
        const int updates = 50;
        float *p = test_random_array(n, -1, 1), *e0 = test_random_array(n, -1, 1);
        cl_mem p_mem = op_upload_padded(p, n), e_mem = op_upload_padded(e0, n);
        for (int u = 0; u < updates; u++)
            TEST_OK(clgqa_ema_update(rt, op_view(e_mem), op_view(p_mem), n, decays[k]));
        float *got = op_floats(n);
        op_download_padded("ema", e_mem, got, n);
        double w = (float)(1.0 - decays[k]), factor = pow(1.0 - w, updates);
        double *want = op_doubles(n), *scale = op_doubles(n);
        for (size_t i = 0; i < n; i++) {
            want[i] = p[i] + ((double)e0[i] - p[i]) * factor;
            scale[i] = fabs((double)e0[i] - p[i]) + fmax(fabs(e0[i]), fabs(p[i])) + 1e-30;
        }
        op_assert_close_scaled("ema", got, want, scale, n, 3e-6);
        op_download_padded("params", p_mem, got, n);
        test_assert_close_f("params unchanged", got, p, n, 0, 0);
        clgqa_buffer_release(&p_mem), clgqa_buffer_release(&e_mem);
        free(p), free(e0), free(got), free(want), free(scale);
    }
}
END_TEST

START_TEST(clipped_steps_match_torch) {
    const decimal_hparams hp = {0.05, 0.9, 0.999, 1e-8, 0.05};
    run_steps(op_test_size(100003, 1031), &hp, 3, 0, 1, 0);
}
END_TEST

START_TEST(clip_factor_is_one_below_max_norm) {
    clgqa_runtime *rt = test_runtime();
    float sum_squares = 0.16f, scale = -1;
    cl_mem ss_mem = op_upload_padded(&sum_squares, 1), scale_mem = op_upload_padded(&scale, 1);
    TEST_OK(clgqa_clip_factor(rt, op_view(scale_mem), op_view(ss_mem), 1.0f));
    op_download_padded("grad_scale", scale_mem, &scale, 1);
    ck_assert_msg(scale == 1.0f, "norm 0.4 under max 1: factor %g", (double)scale);
    TEST_OK(clgqa_clip_factor(rt, op_view(scale_mem), op_view(ss_mem), 0.1f));
    op_download_padded("grad_scale", scale_mem, &scale, 1);
    ck_assert_msg(fabs(scale - 0.1 / (0.4 + 1e-6)) < 1e-7, "norm 0.4, max 0.1: factor %.9g",
                  (double)scale);
    clgqa_buffer_release(&ss_mem), clgqa_buffer_release(&scale_mem);
}
END_TEST

/* ---- the loss scaler (GradScaler) ---- */

/* A scaler state {scale, clean steps, found_inf, skipped} on the device. */
static cl_mem scaler_upload(float scale, float growth, float found_inf, float skipped) {
    const float state[CLGQA_SCALER_FLOATS] = {scale, growth, found_inf, skipped};
    return op_upload_padded(state, CLGQA_SCALER_FLOATS);
}
static void scaler_expect(cl_mem mem, float scale, float growth, float skipped, const char *when) {
    float got[CLGQA_SCALER_FLOATS];
    op_download_padded("scaler", mem, got, CLGQA_SCALER_FLOATS);
    ck_assert_msg(got[CLGQA_SCALER_SCALE] == scale && got[CLGQA_SCALER_GROWTH] == growth &&
                      got[CLGQA_SCALER_SKIPPED] == skipped,
                  "%s: scale %.9g, clean steps %g, skipped %g; want %.9g, %g, %g", when,
                  (double)got[CLGQA_SCALER_SCALE], (double)got[CLGQA_SCALER_GROWTH],
                  (double)got[CLGQA_SCALER_SKIPPED], (double)scale, (double)growth,
                  (double)skipped);
}

START_TEST(loss_scale_doubles_after_2000_clean_steps_and_halves_on_overflow) {
    clgqa_runtime *rt = test_runtime();
    const long interval = 2000;
    cl_mem mem = scaler_upload(65536.0f, 0, 0, 3);
    for (long i = 0; i < interval - 1; i++)
        TEST_OK(clgqa_loss_scale_update(rt, op_view(mem), interval));
    scaler_expect(mem, 65536.0f, 1999, 3, "after 1999 clean steps");
    TEST_OK(clgqa_loss_scale_update(rt, op_view(mem), interval));
    scaler_expect(mem, 131072.0f, 0, 3, "after 2000 clean steps");
    TEST_OK(clgqa_loss_scale_update(rt, op_view(mem), interval));
    scaler_expect(mem, 131072.0f, 1, 3, "one more");
    /* An overflow: half the scale, the clean count restarts, one more skip. */
    float found = 1.0f;
    op_write_padded(mem, (const float[]){131072.0f, 1, found, 3}, CLGQA_SCALER_FLOATS);
    TEST_OK(clgqa_loss_scale_update(rt, op_view(mem), interval));
    scaler_expect(mem, 65536.0f, 0, 4, "after an overflow");
    /* The largest power of 2 does not double into an inf. */
    op_write_padded(mem, (const float[]){0x1p127f, 1999, 0, 0}, CLGQA_SCALER_FLOATS);
    TEST_OK(clgqa_loss_scale_update(rt, op_view(mem), interval));
    scaler_expect(mem, 0x1p127f, 0, 0, "at 2^127");
    ck_assert_int_eq(clgqa_loss_scale_update(rt, op_view(mem), 0), CLGQA_ERR_INVALID_ARG);
    clgqa_buffer_release(&mem);
}
END_TEST

START_TEST(grad_check_finds_every_inf_and_nan) {
    clgqa_runtime *rt = test_runtime();
    const size_t n = op_test_size(100003, 1031);
    float *g = test_random_array(n, -1, 1);
    g[0] = FLT_MAX, g[n / 2] = -FLT_MAX, g[n - 1] = 1e-45f; /* finite extremes */
    cl_mem g_mem = op_upload_padded(g, n), mem = scaler_upload(65536.0f, 7, 0, 0);
    TEST_OK(clgqa_grad_check(rt, op_view(mem), op_view(g_mem), n));
    float state[CLGQA_SCALER_FLOATS];
    op_download_padded("scaler", mem, state, CLGQA_SCALER_FLOATS);
    ck_assert_msg(state[CLGQA_SCALER_FOUND_INF] == 0.0f, "finite gradients flagged");
    ck_assert_msg(state[CLGQA_SCALER_SCALE] == 65536.0f && state[CLGQA_SCALER_GROWTH] == 7.0f,
                  "grad_check changed the scale or the count");
    float *u = test_random_array(3, 0, 1);
    const float bad[3] = {INFINITY, -INFINITY, NAN};
    for (int k = 0; k < 3; k++) {
        size_t at = (size_t)(u[k] * (float)(n - 1));
        float saved = g[at];
        g[at] = bad[k];
        op_write_padded(g_mem, g, n);
        op_write_padded(mem, (const float[]){65536.0f, 7, 0, 0}, CLGQA_SCALER_FLOATS);
        TEST_OK(clgqa_grad_check(rt, op_view(mem), op_view(g_mem), n));
        op_download_padded("scaler", mem, state, CLGQA_SCALER_FLOATS);
        ck_assert_msg(state[CLGQA_SCALER_FOUND_INF] == 1.0f, "%g at %zu of %zu not found",
                      (double)bad[k], at, n);
        g[at] = saved;
    }
    clgqa_buffer_release(&g_mem), clgqa_buffer_release(&mem);
    free(g), free(u);
}
END_TEST

/* One step on a copy of (p, m, v): grads g (scaled by `scale` when a scaler
 * state is given), clipped when max_norm > 0; returns p, m, v after it. */
static void one_step(const float *p, const float *m, const float *v, const float *g, size_t n,
                     long step, float max_norm, cl_mem scaler, float scale, float *out) {
    clgqa_runtime *rt = test_runtime();
    const clgqa_adamw_hparams hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f};
    float *scaled = malloc(n * sizeof *scaled);
    ck_assert_ptr_nonnull(scaled);
    for (size_t i = 0; i < n; i++)
        scaled[i] = g[i] * scale; /* a power of 2: exact */
    cl_mem p_mem = op_upload_padded(p, n), m_mem = op_upload_padded(m, n);
    cl_mem v_mem = op_upload_padded(v, n), g_mem = op_upload_padded(scaled, n);
    cl_mem ss_mem = op_upload_padded(NULL, 1), clip_mem = op_upload_padded(NULL, 1);
    clgqa_view scaler_view = scaler ? op_view(scaler) : no_scaler, clip = no_scaler;
    if (scaler)
        TEST_OK(clgqa_grad_check(rt, scaler_view, op_view(g_mem), n));
    if (max_norm > 0) {
        clgqa_view divisor = scaler ? clgqa_view_add(scaler_view, CLGQA_SCALER_SCALE) : no_scaler;
        TEST_OK(clgqa_sum_squares_divided(rt, op_view(ss_mem), op_view(g_mem), n, divisor));
        TEST_OK(clgqa_clip_factor(rt, op_view(clip_mem), op_view(ss_mem), max_norm));
        clip = op_view(clip_mem);
    }
    TEST_OK(clgqa_adamw_step(rt, op_view(p_mem), op_view(g_mem), op_view(m_mem), op_view(v_mem),
                             n, &hp, step, clip, NULL, scaler_view));
    op_download_padded("p", p_mem, out, n);
    op_download_padded("m", m_mem, out + n, n);
    op_download_padded("v", v_mem, out + 2 * n, n);
    cl_mem mems[] = {p_mem, m_mem, v_mem, g_mem, ss_mem, clip_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(scaled);
}

static void assert_same_bits(const char *what, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof a[i]) == 0, "%s[%zu]: %.9g vs %.9g", what, i,
                      (double)a[i], (double)b[i]);
}

START_TEST(scaled_steps_equal_unscaled_ones_and_overflows_change_nothing) {
    /* Scaling by 2^16 and dividing by it are exact, so a scaled step gives
     * the unscaled step's bits, clipped or not; a step whose gradients
     * overflowed leaves p, m and v bit for bit. */
    const size_t n = op_test_size(20011, 1031);
    float *p = test_random_array(n, -1, 1), *m = test_random_array(n, -0.1f, 0.1f);
    float *v = test_random_array(n, 0.001f, 0.01f), *g = test_random_array(n, -1, 1);
    float *plain = malloc(3 * n * sizeof *plain), *scaled = malloc(3 * n * sizeof *scaled);
    float *pmv = malloc(3 * n * sizeof *pmv);
    ck_assert_ptr_nonnull(plain);
    ck_assert_ptr_nonnull(scaled);
    ck_assert_ptr_nonnull(pmv);
    memcpy(pmv, p, n * sizeof *p), memcpy(pmv + n, m, n * sizeof *m);
    memcpy(pmv + 2 * n, v, n * sizeof *v);
    for (int clip = 0; clip < 2; clip++) {
        const float max_norm = clip ? 0.5f : 0.0f;
        cl_mem mem = scaler_upload(65536.0f, 0, 0, 0);
        one_step(p, m, v, g, n, 5, max_norm, NULL, 1.0f, plain);
        one_step(p, m, v, g, n, 5, max_norm, mem, 65536.0f, scaled);
        assert_same_bits(clip ? "clipped scaled step" : "scaled step", scaled, plain, 3 * n);
        ck_assert_msg(memcmp(plain, pmv, n * sizeof *p) != 0, "the step moved no weight");
        clgqa_buffer_release(&mem);
    }
    g[n / 3] = INFINITY;
    cl_mem mem = scaler_upload(65536.0f, 0, 0, 0);
    one_step(p, m, v, g, n, 5, 0.5f, mem, 65536.0f, scaled);
    assert_same_bits("after an overflow", scaled, pmv, 3 * n);
    clgqa_buffer_release(&mem);
    free(p), free(m), free(v), free(g), free(plain), free(scaled), free(pmv);
}
END_TEST

START_TEST(after_skipped_steps_adam_counts_only_the_steps_taken) {
    /* Global step 9 after 4 skipped steps is Adam's step 5 (torch's
     * optimizer never saw the skipped ones): the float64 reference at
     * t = 5. The device computes that t's bias corrections in float, a few
     * ulp from the double ones: the tolerances of run_steps. At t = 9 the
     * step size differs by 1 - (1 - 0.9^9) / (1 - 0.9^5) = 34%. */
    const size_t n = op_test_size(4099, 257);
    float *p = test_random_array(n, -1, 1), *m = test_random_array(n, -0.1f, 0.1f);
    float *v = test_random_array(n, 0.001f, 0.01f), *g = test_random_array(n, -1, 1);
    float *got = malloc(3 * n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    cl_mem mem = scaler_upload(1024.0f, 0, 0, 4);
    one_step(p, m, v, g, n, 9, 0.0f, mem, 1024.0f, got);
    reference_state ref = {test_to_doubles(p, n), test_to_doubles(m, n), test_to_doubles(v, n)};
    adamw_ref(&ref, g, 1.0, n, (double)1e-3f, 0.9, 0.999, 1e-8, 0.05, 5, 0);
    test_assert_close("adamw m", got + n, ref.m, n, 2e-6, 1e-7);
    test_assert_close("adamw v", got + 2 * n, ref.v, n, 2e-6, 1e-12);
    test_assert_close("adamw params", got, ref.p, n, 1e-6, 1e-6);
    clgqa_buffer_release(&mem);
    free(p), free(m), free(v), free(g), free(got), free(ref.p), free(ref.m), free(ref.v);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    clgqa_view v = clgqa_view_at(mem, 0), none = clgqa_view_at(NULL, 0);
    clgqa_adamw_hparams hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f};
    ck_assert_int_eq(clgqa_adamw_step(rt, v, v, v, v, 8, &hp, 0, none, NULL, none), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_adamw_step(rt, v, v, v, v, 9, &hp, 1, none, NULL, none), CLGQA_ERR_INVALID_ARG);
    const clgqa_no_decay odd = {v, 3, 0};
    ck_assert_int_eq(clgqa_adamw_step(rt, v, v, v, v, 8, &hp, 1, none, &odd, none), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "pairs"), "%s", clgqa_error_message());
    hp.beta2 = 1.0f;
    ck_assert_int_eq(clgqa_adamw_step(rt, v, v, v, v, 8, &hp, 1, none, NULL, none), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_ema_update(rt, v, v, 8, 1.5), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_ema_update(rt, v, v, 9, 0.9), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_clip_factor(rt, v, v, 0.0f), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "max_norm"), "%s", clgqa_error_message());
    clgqa_buffer_release(&mem);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_adamw");
    TCase *tc = tcase_create("adamw");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, steps_from_a_fresh_optimizer_match_torch);
    tcase_add_test(tc, steps_mid_training_match_torch);
    tcase_add_test(tc, clipped_steps_match_torch);
    tcase_add_test(tc, no_decay_ranges_are_not_decayed);
    tcase_add_test(tc, ema_of_constant_weights_is_the_closed_form);
    tcase_add_test(tc, clip_factor_is_one_below_max_norm);
    tcase_add_test(tc, loss_scale_doubles_after_2000_clean_steps_and_halves_on_overflow);
    tcase_add_test(tc, grad_check_finds_every_inf_and_nan);
    tcase_add_test(tc, scaled_steps_equal_unscaled_ones_and_overflows_change_nothing);
    tcase_add_test(tc, after_skipped_steps_adam_counts_only_the_steps_taken);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
