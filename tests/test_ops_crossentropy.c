/* Cross-entropy from logits (losses, correct flags, probabilities) and its
 * gradient against a float64 CPU reference, whose gradient is first checked
 * by central differences.
 *
 * Tolerances: probabilities 1e-5 relative (exp 3 ulp, float tree sum);
 * losses 1e-5 relative + 1e-6 absolute (a loss near 0 is log of a sum near
 * 1); the gradient is dloss * (p - onehot) over the device's own p, three
 * float roundings: 1e-6 of its terms' magnitude. */
#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "support/op_tests.h"

/* float64 reference: probabilities, per-row losses, argmax (first wins). */
static void crossentropy_ref(const double *logits, const int32_t *labels, size_t rows,
                             size_t classes, double *probs, double *losses, size_t *argmax) {
    for (size_t r = 0; r < rows; r++) {
        const double *x = logits + r * classes;
        size_t best = 0;
        for (size_t c = 1; c < classes; c++)
            if (x[c] > x[best])
                best = c;
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
    crossentropy_ref(logits, labels, rows, classes, probs, losses, NULL);
    for (size_t i = 0; i < rows * classes; i++) {
        double analytic = (probs[i] - (labels[i / classes] == (int32_t)(i % classes))) / rows;
        double saved = logits[i], h = 1e-5, up = 0, down = 0;
        logits[i] = saved + h;
        crossentropy_ref(logits, labels, rows, classes, NULL, losses, NULL);
        for (size_t r = 0; r < rows; r++)
            up += losses[r] / rows;
        logits[i] = saved - h;
        crossentropy_ref(logits, labels, rows, classes, NULL, losses, NULL);
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
         * is checked both ways. */
        for (size_t r = 0; r < rows; r += 2)
            logits[r * classes + labels[r]] = 9.0f;
        cl_mem logits_mem = op_upload_padded(logits, n), labels_mem = op_upload_padded_int(labels, rows);
        cl_mem probs_mem = op_upload_padded(NULL, n), losses_mem = op_upload_padded(NULL, rows);
        cl_mem correct_mem = op_upload_padded(NULL, rows), dlogits_mem = op_upload_padded(dlogits0, n);
        const float dloss = 1.0f / (float)rows;

        TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem),
                                           op_view(probs_mem), op_view(logits_mem),
                                           op_view(labels_mem), rows, classes));
        TEST_OK(clgqa_crossentropy_backward(rt, op_view(dlogits_mem), op_view(probs_mem),
                                            op_view(labels_mem), rows, classes, dloss,
                                            clgqa_view_at(NULL, 0)));

        double *d_logits = test_to_doubles(logits, n), *probs = op_doubles(n), *losses = op_doubles(rows);
        size_t *argmax = malloc(rows * sizeof *argmax);
        crossentropy_ref(d_logits, labels, rows, classes, probs, losses, argmax);
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

        cl_mem mems[] = {logits_mem, labels_mem, probs_mem, losses_mem, correct_mem, dlogits_mem};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
            clgqa_buffer_release(&mems[i]);
        free(logits), free(dlogits0), free(labels), free(d_logits), free(probs), free(losses);
        free(argmax), free(got), free(got_rows), free(device_probs), free(want), free(scale);
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
    cl_mem correct_mem = op_upload_padded(NULL, rows);
    TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem),
                                       op_view(probs_mem), op_view(logits_mem),
                                       op_view(labels_mem), rows, classes));
    float correct[4], losses[4];
    op_download_padded("correct", correct_mem, correct, rows);
    op_download_padded("losses", losses_mem, losses, rows);
    ck_assert_msg(correct[0] == 1.0f && correct[1] == 0.0f, "ties: correct = %g, %g",
                  (double)correct[0], (double)correct[1]);
    ck_assert_msg(isfinite(losses[0]) && fabs(losses[0] - losses[1]) < 1e-6,
                  "tied labels: losses %g, %g", (double)losses[0], (double)losses[1]);
    ck_assert_msg(isnan(losses[2]) && isnan(losses[3]) && correct[2] == 0 && correct[3] == 0,
                  "bad labels: losses %g, %g, correct %g, %g", (double)losses[2],
                  (double)losses[3], (double)correct[2], (double)correct[3]);
    cl_mem mems[] = {logits_mem, labels_mem, probs_mem, losses_mem, correct_mem};
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
    TEST_OK(clgqa_crossentropy_forward(rt, op_view(losses_mem), op_view(correct_mem),
                                       op_view(probs_mem), op_view(logits_mem),
                                       op_view(labels_mem), rows, classes));
    TEST_OK(clgqa_crossentropy_backward(rt, op_view(plain_mem), op_view(probs_mem),
                                        op_view(labels_mem), rows, classes, 1.0f / (float)rows,
                                        clgqa_view_at(NULL, 0)));
    TEST_OK(clgqa_crossentropy_backward(rt, op_view(scaled_mem), op_view(probs_mem),
                                        op_view(labels_mem), rows, classes, 1.0f / (float)rows,
                                        clgqa_view_add(op_view(state_mem), 1)));
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
    clgqa_view v = clgqa_view_at(mem, 0);
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, v, v, v, v, v, 2, 0), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, v, v, v, v, v, 3, 3), CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(clgqa_crossentropy_forward(rt, clgqa_view_at(mem, 6), clgqa_view_at(mem, 7),
                                                clgqa_view_at(mem, 1), v, clgqa_view_at(mem, 5),
                                                1, 4),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "overlap"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_crossentropy_backward(rt, v, v, v, 3, 3, 1.0f, clgqa_view_at(NULL, 0)), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "clgqa_crossentropy_backward"), "%s",
                  clgqa_error_message());
    clgqa_buffer_release(&mem);
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
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
