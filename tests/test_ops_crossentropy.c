/* Cross-entropy from logits (losses, correct and top-5 flags,
 * probabilities) and its gradient against a float64 CPU reference, whose
 * gradient is first checked by central differences; label smoothing, soft
 * targets and timm's Mixup targets against PyTorch
 * (tests/ref/make_loss_fixture.py).
 *
 * Tolerances: probabilities 1e-5 relative (exp 3 ulp, float tree sum);
 * losses 1e-5 relative + 1e-6 absolute (a loss near 0 is log of a sum near
 * 1); the gradient is dloss * (p - target) over the device's own p, three
 * float roundings: 1e-6 of its terms' magnitude; against PyTorch, whose p
 * comes from its own exp and sum order, 1e-5 of that magnitude. Soft
 * targets are two products and a sum of float values PyTorch rounds alike:
 * 2 ulp. */
#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "support/op_tests.h"
#include "tensor_file.h"

/* float64 reference: probabilities, per-row losses, argmax (first wins)
 * and the label's rank (the classes ahead of it, ties to the lower index). */
static void crossentropy_ref(const double *logits, const int32_t *labels, size_t rows,
                             size_t classes, double *probs, double *losses, size_t *argmax,
                             size_t *rank) {
    for (size_t r = 0; r < rows; r++) {
        const double *x = logits + r * classes;
        size_t best = 0, ahead = 0;
        for (size_t c = 1; c < classes; c++)
            if (x[c] > x[best])
                best = c;
        for (size_t c = 0; c < classes; c++)
            ahead += x[c] > x[labels[r]] || (x[c] == x[labels[r]] && c < (size_t)labels[r]);
        if (rank)
            rank[r] = ahead;
        double sum = 0;
        for (size_t c = 0; c < classes; c++)
            sum += exp(x[c] - x[best]);
        if (probs)
            for (size_t c = 0; c < classes; c++)
                probs[r * classes + c] = exp(x[c] - x[best]) / sum;
        losses[r] = log(sum) - (x[labels[r]] - x[best]);
        if (argmax)
            argmax[r] = best;
    }
}

static int32_t *random_labels(size_t rows, size_t classes) {
    float *u = test_random_array(rows, 0, 1);
    int32_t *labels = malloc(rows * sizeof *labels);
    ck_assert_ptr_nonnull(labels);
    for (size_t r = 0; r < rows; r++)
        labels[r] = (int32_t)(u[r] * classes) % (int32_t)classes;
    free(u);
    return labels;
}

START_TEST(reference_gradient_matches_finite_differences) {
    /* Mean loss over rows; its gradient is (probs - onehot) / rows.
     * h = 1e-5: truncation ~1e-10, rounding ~1e-11; tolerance 1e-8. */
    const size_t rows = 4, classes = 13;
    float *f_logits = test_random_array(rows * classes, -4, 4);
    double *logits = test_to_doubles(f_logits, rows * classes), *probs = op_doubles(rows * classes);
    double *losses = op_doubles(rows);
    int32_t *labels = random_labels(rows, classes);
    crossentropy_ref(logits, labels, rows, classes, probs, losses, NULL, NULL);
    for (size_t i = 0; i < rows * classes; i++) {
        double analytic = (probs[i] - (labels[i / classes] == (int32_t)(i % classes))) / rows;
        double saved = logits[i], h = 1e-5, up = 0, down = 0;
        logits[i] = saved + h;
        crossentropy_ref(logits, labels, rows, classes, NULL, losses, NULL, NULL);
        for (size_t r = 0; r < rows; r++)
            up += losses[r] / rows;
        logits[i] = saved - h;
        crossentropy_ref(logits, labels, rows, classes, NULL, losses, NULL, NULL);
        for (size_t r = 0; r < rows; r++)
            down += losses[r] / rows;
        logits[i] = saved;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(fd - analytic) < 1e-8, "dlogits[%zu]: analytic %.10g, fd %.10g", i,
                      analytic, fd);
    }
    free(f_logits), free(logits), free(probs), free(losses), free(labels);
}
END_TEST

/* (rows, classes): odd, the model's 10 and 100 classes, wider than a
 * work-group, a single class. */
static const size_t shapes[][2] = {{37, 389}, {128, 10}, {65, 100}, {3, 1000}, {5, 1}};
static const size_t small_shapes[][2] = {{5, 389}, {16, 10}, {3, 100}, {1, 300}, {2, 1}};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

START_TEST(forward_and_backward_match_reference) {
    clgqa_runtime *rt = test_runtime();
    for (size_t s = 0; s < SHAPE_COUNT; s++) {
        const size_t *shape = test_small() ? small_shapes[s] : shapes[s];
        size_t rows = shape[0], classes = shape[1], n = rows * classes;
        float *logits = test_random_array(n, -8, 8), *dlogits0 = test_random_array(n, -1, 1);
        int32_t *labels = random_labels(rows, classes);
        /* Make the label the argmax in about half the rows, so `correct`
         * is checked both ways, and give others a rank of 4 or 5, the edges
         * of the top 5 (with a tie that the lower index wins). */
        for (size_t r = 0; r < rows; r += 2)
            logits[r * classes + labels[r]] = 9.0f;
        for (size_t r = 1; r < rows && classes > 6; r += 2) {
            size_t ahead = r % 4 == 1 ? 4 : 5;
            for (size_t k = 0, c = 0; c < classes; c++) {
                float *x = &logits[r * classes + c];
                if ((int32_t)c == labels[r])
                    *x = 8.5f;
                else if (k < ahead)
                    *x = 9.0f - 0.1f * (float)k++;
                else
                    *x = fminf(*x, 8.0f);
            }
            if (ahead == 5 && labels[r] > 0) /* an equal logit at a lower index ranks above */
                logits[r * classes + labels[r] - 1] = 8.5f;
        }
        cl_mem logits_mem = op_upload_padded(logits, n), labels_mem = op_upload_padded_int(labels, rows);
        cl_mem probs_mem = op_upload_padded(NULL, n), losses_mem = op_upload_padded(NULL, rows);
        cl_mem correct_mem = op_upload_padded(NULL, rows), dlogits_mem = op_upload_padded(dlogits0, n);
        cl_mem top5_mem = op_upload_padded(NULL, rows);
        const float dloss = 1.0f / (float)rows;
        const clgqa_view hard = {NULL, 0};

        TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem),
                                           op_view(top5_mem), op_view(probs_mem),
                                           op_view(logits_mem), op_view(labels_mem), hard, rows,
                                           classes));
        TEST_OK(clgqa_crossentropy_backward(rt, op_view(dlogits_mem), op_view(probs_mem),
                                            op_view(labels_mem), hard, rows, classes, dloss,
                                            clgqa_view_at(NULL, 0)));

        double *d_logits = test_to_doubles(logits, n), *probs = op_doubles(n), *losses = op_doubles(rows);
        size_t *argmax = malloc(rows * sizeof *argmax), *rank = malloc(rows * sizeof *rank);
        crossentropy_ref(d_logits, labels, rows, classes, probs, losses, argmax, rank);
        float *got = op_floats(n), *got_rows = op_floats(rows);
        op_download_padded("probs", probs_mem, got, n);
        test_assert_close("probs", got, probs, n, 1e-5, 0);
        op_download_padded("losses", losses_mem, got_rows, rows);
        test_assert_close("losses", got_rows, losses, rows, 1e-5, 1e-6);
        op_download_padded("correct", correct_mem, got_rows, rows);
        for (size_t r = 0; r < rows; r++)
            ck_assert_msg(got_rows[r] == (argmax[r] == (size_t)labels[r] ? 1.0f : 0.0f),
                          "correct[%zu] = %g (argmax %zu, label %d)", r, (double)got_rows[r],
                          argmax[r], labels[r]);
        op_download_padded("top5", top5_mem, got_rows, rows);
        for (size_t r = 0; r < rows; r++)
            ck_assert_msg(got_rows[r] == (rank[r] < 5 ? 1.0f : 0.0f),
                          "top5[%zu] = %g (the label %d ranks %zu)", r, (double)got_rows[r],
                          labels[r], rank[r]);

        float *device_probs = op_floats(n);
        op_download_padded("probs", probs_mem, device_probs, n);
        double *want = op_doubles(n), *scale = op_doubles(n);
        for (size_t i = 0; i < n; i++) {
            double target = labels[i / classes] == (int32_t)(i % classes);
            want[i] = dlogits0[i] + (double)dloss * (device_probs[i] - target);
            scale[i] = fabs(dlogits0[i]) + dloss * (device_probs[i] + target);
        }
        op_download_padded("dlogits", dlogits_mem, got, n);
        op_assert_close_scaled("dlogits", got, want, scale, n, 1e-6);

        cl_mem mems[] = {logits_mem, labels_mem, probs_mem, losses_mem, correct_mem, dlogits_mem,
                         top5_mem};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
            clgqa_buffer_release(&mems[i]);
        free(logits), free(dlogits0), free(labels), free(d_logits), free(probs), free(losses);
        free(argmax), free(rank), free(got), free(got_rows), free(device_probs), free(want), free(scale);
    }
}
END_TEST

START_TEST(ties_go_to_the_first_index_and_bad_labels_give_nan) {
    clgqa_runtime *rt = test_runtime();
    /* Rows 0 and 1 hold the maximum twice (columns 3 and 300); row 2 has
     * an out-of-range label, row 3 a negative one. */
    const size_t rows = 4, classes = 389, n = rows * classes;
    float *logits = test_random_array(n, -1, 1);
    for (size_t r = 0; r < rows; r++) {
        memcpy(logits + r * classes, logits, classes * sizeof *logits);
        logits[r * classes + 3] = logits[r * classes + 300] = 5.0f;
    }
    int32_t labels[4] = {3, 300, (int32_t)classes, -1};
    cl_mem logits_mem = op_upload_padded(logits, n), labels_mem = op_upload_padded_int(labels, rows);
    cl_mem probs_mem = op_upload_padded(NULL, n), losses_mem = op_upload_padded(NULL, rows);
    cl_mem correct_mem = op_upload_padded(NULL, rows), top5_mem = op_upload_padded(NULL, rows);
    const clgqa_view hard = {NULL, 0};
    TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem),
                                       op_view(top5_mem), op_view(probs_mem), op_view(logits_mem),
                                       op_view(labels_mem), hard, rows, classes));
    float correct[4], losses[4], top5[4];
    op_download_padded("correct", correct_mem, correct, rows);
    op_download_padded("losses", losses_mem, losses, rows);
    op_download_padded("top5", top5_mem, top5, rows);
    ck_assert_msg(top5[0] == 1.0f && top5[1] == 1.0f && top5[2] == 0.0f && top5[3] == 0.0f,
                  "top5 = %g %g %g %g", (double)top5[0], (double)top5[1], (double)top5[2],
                  (double)top5[3]);
    ck_assert_msg(correct[0] == 1.0f && correct[1] == 0.0f, "ties: correct = %g, %g",
                  (double)correct[0], (double)correct[1]);
    ck_assert_msg(isfinite(losses[0]) && fabs(losses[0] - losses[1]) < 1e-6,
                  "tied labels: losses %g, %g", (double)losses[0], (double)losses[1]);
    ck_assert_msg(isnan(losses[2]) && isnan(losses[3]) && correct[2] == 0 && correct[3] == 0,
                  "bad labels: losses %g, %g, correct %g, %g", (double)losses[2],
                  (double)losses[3], (double)correct[2], (double)correct[3]);
    cl_mem mems[] = {logits_mem, labels_mem, probs_mem, losses_mem, correct_mem, top5_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(logits);
}
END_TEST

START_TEST(loss_scaled_gradient_is_the_scale_times_the_gradient) {
    /* The loss scaler's backward: dloss * scale with a power-of-2 scale is
     * exact, so every element is exactly scale times the unscaled one (and
     * 2^-16 of the scaled one is what AdamW then divides back). The scale
     * sits at an offset in its buffer, as in the scaler's state. */
    clgqa_runtime *rt = test_runtime();
    const size_t rows = 9, classes = 37, n = rows * classes;
    float *logits = test_random_array(n, -8, 8);
    int32_t *labels = random_labels(rows, classes);
    const float state[3] = {-1.0f, 65536.0f, -1.0f};
    cl_mem logits_mem = op_upload_padded(logits, n), labels_mem = op_upload_padded_int(labels, rows);
    cl_mem probs_mem = op_upload_padded(NULL, n), losses_mem = op_upload_padded(NULL, rows);
    float *zeros = calloc(n, sizeof *zeros); /* the backward adds into dlogits */
    ck_assert_ptr_nonnull(zeros);
    cl_mem correct_mem = op_upload_padded(NULL, rows), plain_mem = op_upload_padded(zeros, n);
    cl_mem scaled_mem = op_upload_padded(zeros, n), state_mem = op_upload_padded(state, 3);
    const clgqa_view none = {NULL, 0};
    TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem), none,
                                       op_view(probs_mem), op_view(logits_mem),
                                       op_view(labels_mem), none, rows, classes));
    TEST_OK(clgqa_crossentropy_backward(rt, op_view(plain_mem), op_view(probs_mem),
                                        op_view(labels_mem), none, rows, classes,
                                        1.0f / (float)rows, none));
    TEST_OK(clgqa_crossentropy_backward(rt, op_view(scaled_mem), op_view(probs_mem),
                                        op_view(labels_mem), none, rows, classes,
                                        1.0f / (float)rows, clgqa_view_add(op_view(state_mem), 1)));
    float *plain = op_floats(n), *scaled = op_floats(n);
    op_download_padded("dlogits", plain_mem, plain, n);
    op_download_padded("scaled dlogits", scaled_mem, scaled, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(scaled[i] == 65536.0f * plain[i] && plain[i] != 0.0f,
                      "dlogits[%zu]: scaled %.9g, unscaled %.9g", i, (double)scaled[i],
                      (double)plain[i]);
    cl_mem mems[] = {logits_mem, labels_mem, probs_mem, losses_mem, correct_mem, plain_mem,
                     scaled_mem, state_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(logits), free(labels), free(plain), free(scaled), free(zeros);
}
END_TEST

START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_mem mem = test_upload(x, 8);
    clgqa_view v = clgqa_view_at(mem, 0), none = {NULL, 0};
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, v, v, none, v, v, v, none, 2, 0),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, v, v, none, v, v, v, none, 3, 3),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, clgqa_view_at(mem, 6), clgqa_view_at(mem, 7),
                                                none, clgqa_view_at(mem, 1), v,
                                                clgqa_view_at(mem, 5), none, 1, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "overlap"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, clgqa_view_at(mem, 6), clgqa_view_at(mem, 7),
                                                none, clgqa_view_at(mem, 0), clgqa_view_at(mem, 4),
                                                clgqa_view_at(mem, 5), clgqa_view_at(mem, 2), 1, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "targets"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_crossentropy_backward(rt, v, v, v, none, 3, 3, 1.0f, none),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_crossentropy_backward"), "%s",
                  clgqa_error_message());
    ck_assert_int_eq(clgqa_soft_targets(rt, v, v, 2, 2, 1.0, 1.0), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_soft_targets(rt, v, v, 2, 2, 0.1, 1.5), CLGQA_ERR_INVALID_ARG);
    clgqa_buffer_release(&mem);
}
END_TEST

/* One case of the PyTorch fixture: `name` its tensors' prefix. */
typedef struct loss_case {
    clgqa_tensor_set *file;
    char name[16];
    size_t rows, classes;
} loss_case;

static float *fixture_floats(const loss_case *lc, const char *suffix, size_t n) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", lc->name, suffix);
    float *x = op_floats(n);
    TEST_OK(clgqa_tensor_set_read_f32(lc->file, name, x, n));
    return x;
}

/* The case's losses and mean-loss gradient with `targets` (a device view, or
 * none for the hard labels) against the fixture's `<which>.losses` and
 * `<which>.dlogits`. */
static void check_against_torch(const loss_case *lc, cl_mem logits_mem, cl_mem labels_mem,
                                clgqa_view targets, const float *host_targets,
                                const char *which) {
    clgqa_runtime *rt = test_runtime();
    size_t rows = lc->rows, classes = lc->classes, n = rows * classes;
    cl_mem probs_mem = op_upload_padded(NULL, n), losses_mem = op_upload_padded(NULL, rows);
    cl_mem correct_mem = op_upload_padded(NULL, rows), dlogits_mem = op_upload_padded(NULL, n);
    float *zeros = op_floats(n);
    op_write_padded(dlogits_mem, zeros, n);
    const clgqa_view none = {NULL, 0};
    TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem), none,
                                       op_view(probs_mem), op_view(logits_mem),
                                       op_view(labels_mem), targets, rows, classes));
    TEST_OK(clgqa_crossentropy_backward(rt, op_view(dlogits_mem), op_view(probs_mem),
                                        op_view(labels_mem), targets, rows, classes,
                                        1.0f / (float)rows, none));
    char suffix[64];
    snprintf(suffix, sizeof suffix, "%s.losses", which);
    float *want_losses = fixture_floats(lc, suffix, rows);
    snprintf(suffix, sizeof suffix, "%s.dlogits", which);
    float *want_grad = fixture_floats(lc, suffix, n);
    float *got = op_floats(n), *probs = op_floats(n);
    char what[96];
    op_download_padded("losses", losses_mem, got, rows);
    double *want = test_to_doubles(want_losses, rows);
    snprintf(what, sizeof what, "%s %s losses", lc->name, which);
    /* Both sides are float32: a log-sum-exp over up to 300 classes and the
     * targets' dot product, each summed in its own order, agree to a few
     * ulp of the sums (1e-5 relative, 1e-6 for losses near 0). */
    test_assert_close(what, got, want, rows, 1e-5, 1e-6);
    free(want);
    op_download_padded("probs", probs_mem, probs, n);
    op_download_padded("dlogits", dlogits_mem, got, n);
    double *want_d = test_to_doubles(want_grad, n), *scale = op_doubles(n);
    for (size_t i = 0; i < n; i++)
        scale[i] = (fabs(probs[i]) + fabs(host_targets[i])) / (double)rows + 1e-12;
    snprintf(what, sizeof what, "%s %s dlogits", lc->name, which);
    /* (probs - targets) / rows: the difference of two float32 values whose
     * probabilities differ from PyTorch's by ~1e-6 relative; 1e-5 of the
     * terms' magnitude, (|p| + |t|) / rows. */
    op_assert_close_scaled(what, got, want_d, scale, n, 1e-5);
    cl_mem mems[] = {probs_mem, losses_mem, correct_mem, dlogits_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clgqa_buffer_release(&mems[i]);
    free(zeros), free(want_losses), free(want_grad), free(got), free(probs), free(want_d);
    free(scale);
}

START_TEST(smoothing_soft_targets_and_mixup_match_pytorch) {
    clgqa_runtime *rt = test_runtime();
    op_test_class(_i);
    const double smoothing = 0.1, lam = 0.3; /* the fixture's metadata */
    static const struct { const char *name; size_t rows, classes; } cases[] = {
        {"small", 7, 13}, {"wide", 4, 300}};
    loss_case lc = {0};
    TEST_OK(clgqa_tensor_file_open(CLGQA_SOURCE_DIR "/tests/ref/fixtures/crossentropy_soft.safetensors",
                                   &lc.file));
    ck_assert_str_eq(clgqa_tensor_set_metadata(lc.file, "smoothing"), "0.1");
    ck_assert_str_eq(clgqa_tensor_set_metadata(lc.file, "lam"), "0.3");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(lc.name, sizeof lc.name, "%s", cases[k].name);
        lc.rows = cases[k].rows, lc.classes = cases[k].classes;
        size_t rows = lc.rows, classes = lc.classes, n = rows * classes;
        float *logits = fixture_floats(&lc, "logits", n);
        int32_t *labels = malloc(rows * sizeof *labels);
        char name[64];
        snprintf(name, sizeof name, "%s.labels", lc.name);
        TEST_OK(clgqa_tensor_set_read_i32(lc.file, name, labels, rows));
        cl_mem logits_mem = op_upload_padded(logits, n), labels_mem = op_upload_padded_int(labels, rows);
        cl_mem targets_mem = op_upload_padded(NULL, n);
        float *targets = op_floats(n);

        /* Label smoothing: the device's smoothed targets, then the soft loss. */
        TEST_OK(clgqa_soft_targets(rt, op_view(targets_mem), op_view(labels_mem), rows, classes,
                                   smoothing, 1.0));
        op_download_padded("smoothed targets", targets_mem, targets, n);
        check_against_torch(&lc, logits_mem, labels_mem, op_view(targets_mem), targets, "smooth");

        /* Soft targets given as they are. */
        float *soft = fixture_floats(&lc, "soft.targets", n);
        op_write_padded(targets_mem, soft, n);
        check_against_torch(&lc, logits_mem, labels_mem, op_view(targets_mem), soft, "soft");

        /* timm's mixup_target: the batch with itself flipped, smoothed. */
        float *mixed = fixture_floats(&lc, "mix.targets", n);
        TEST_OK(clgqa_soft_targets(rt, op_view(targets_mem), op_view(labels_mem), rows, classes,
                                   smoothing, lam));
        op_download_padded("mixed targets", targets_mem, targets, n);
        double *want = test_to_doubles(mixed, n);
        snprintf(name, sizeof name, "%s mixed targets", lc.name);
        /* Values in [0, 1] from two products and a sum in float (PyTorch's
         * too): a few roundings of 6e-8 each, 2.5e-7 relative. */
        test_assert_close(name, targets, want, n, 2.5e-7, 0);
        check_against_torch(&lc, logits_mem, labels_mem, op_view(targets_mem), mixed, "mix");

        cl_mem mems[] = {logits_mem, labels_mem, targets_mem};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
            clgqa_buffer_release(&mems[i]);
        free(logits), free(labels), free(targets), free(soft), free(mixed), free(want);
    }
    clgqa_tensor_set_close(lc.file);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("ops_crossentropy");
    TCase *tc = tcase_create("crossentropy");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, reference_gradient_matches_finite_differences);
    tcase_add_test(tc, forward_and_backward_match_reference);
    tcase_add_test(tc, ties_go_to_the_first_index_and_bad_labels_give_nan);
    tcase_add_test(tc, loss_scaled_gradient_is_the_scale_times_the_gradient);
    tcase_add_loop_test(tc, smoothing_soft_targets_and_mixup_match_pytorch, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
