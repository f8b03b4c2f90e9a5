/* clgqa_runtime_wrap: clgqa on an application's own context and queue.
 * Work runs on the application's queue (an op's result read back through
 * it), the runtime reports the device, profiling is refused on a queue
 * without CL_QUEUE_PROFILING_ENABLE, and destroying the runtime leaves the
 * application's objects alive with their reference counts back where they
 * were. Queues that cannot be used are refused in one line. */
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "clgqa/runtime.h"
#include "support/test_util.h"

typedef struct app_objects {
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
} app_objects;

/* What an application would create: a context and an in-order queue on the
 * test device, with the given queue properties. */
static app_objects app_create(cl_command_queue_properties properties) {
    app_objects app = {clgqa_runtime_device(test_runtime()), NULL, NULL};
    cl_int err;
    app.context = clCreateContext(NULL, 1, &app.device, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    app.queue = clCreateCommandQueue(app.context, app.device, properties, &err);
    ck_assert_msg(err == CL_SUCCESS || err == CL_INVALID_QUEUE_PROPERTIES, "%s",
                  clgqa_cl_status_name(err));
    return app;
}

static void app_release(app_objects *app) {
    if (app->queue)
        ck_assert_int_eq(clReleaseCommandQueue(app->queue), CL_SUCCESS);
    ck_assert_int_eq(clReleaseContext(app->context), CL_SUCCESS);
}

/* A refusal: one line (no newline) naming `what`. */
static void assert_refused(const char *what) {
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, what) && !strchr(msg, '\n'), "message: %s", msg);
}

static cl_uint context_references(cl_context context) {
    cl_uint count = 0;
    ck_assert_int_eq(clGetContextInfo(context, CL_CONTEXT_REFERENCE_COUNT, sizeof count, &count,
                                      NULL),
                     CL_SUCCESS);
    return count;
}

static cl_uint queue_references(cl_command_queue queue) {
    cl_uint count = 0;
    ck_assert_int_eq(clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof count, &count,
                                           NULL),
                     CL_SUCCESS);
    return count;
}

START_TEST(runs_on_the_applications_queue) {
    app_objects app = app_create(0);
    const cl_uint context_refs = context_references(app.context);
    const cl_uint queue_refs = queue_references(app.queue);
    clgqa_runtime *rt = NULL;
    TEST_OK(clgqa_runtime_wrap(app.context, app.device, app.queue, test_runtime_options(), &rt));
    ck_assert_ptr_eq(clgqa_runtime_context(rt), app.context);
    ck_assert_ptr_eq(clgqa_runtime_queue(rt), app.queue);
    ck_assert_str_eq(clgqa_runtime_device_name(rt), clgqa_runtime_device_name(test_runtime()));
    ck_assert_int_eq(clgqa_runtime_device_class(rt), clgqa_runtime_device_class(test_runtime()));

    /* x = fresh random values, doubled on the device (a copy added to it);
     * the application reads the result itself, through its own queue. */
    enum { N = 1000 };
    float *x = test_random_array(N, -2.0f, 2.0f), got[N];
    cl_mem mem = NULL, copy = NULL;
    TEST_OK(clgqa_buffer_create(rt, sizeof(float) * N, &mem));
    TEST_OK(clgqa_buffer_create(rt, sizeof(float) * N, &copy));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, sizeof(float) * N, x));
    TEST_OK(clgqa_buffer_copy(rt, clgqa_view_at(copy, 0), clgqa_view_at(mem, 0), N));
    TEST_OK(clgqa_accumulate(rt, clgqa_view_at(mem, 0), clgqa_view_at(copy, 0), N));
    ck_assert_int_eq(clEnqueueReadBuffer(app.queue, mem, CL_TRUE, 0, sizeof got, got, 0, NULL, NULL),
                     CL_SUCCESS);
    for (int i = 0; i < N; i++)
        ck_assert_msg(got[i] == 2.0f * x[i], "element %d: %g, expected %g", i, (double)got[i],
                      2.0 * (double)x[i]); /* x + x is exact */
    clgqa_buffer_release(&mem);
    clgqa_buffer_release(&copy);

    /* This queue has no profiling: refused with the reason. */
    ck_assert_int_eq(clgqa_profile_begin(rt), CLGQA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(clgqa_error_message(), "CL_QUEUE_PROFILING_ENABLE"));

    /* clgqa released what it retained; the application's objects live on. */
    clgqa_runtime_destroy(rt);
    ck_assert_uint_eq(context_references(app.context), context_refs);
    ck_assert_uint_eq(queue_references(app.queue), queue_refs);
    ck_assert_int_eq(clFinish(app.queue), CL_SUCCESS);
    app_release(&app);
    free(x);
}
END_TEST

START_TEST(profiles_on_a_profiling_queue) {
    app_objects app = app_create(CL_QUEUE_PROFILING_ENABLE);
    clgqa_runtime *rt = NULL;
    TEST_OK(clgqa_runtime_wrap(app.context, app.device, app.queue, test_runtime_options(), &rt));
    cl_mem mem = NULL, other = NULL;
    TEST_OK(clgqa_buffer_create(rt, sizeof(float) * 64, &mem));
    TEST_OK(clgqa_buffer_create(rt, sizeof(float) * 64, &other));
    float host[64] = {0};
    TEST_OK(clgqa_profile_begin(rt));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, sizeof host, host));
    TEST_OK(clgqa_accumulate(rt, clgqa_view_at(other, 0), clgqa_view_at(mem, 0), 64));
    clgqa_profile_total totals[8];
    int count = 0;
    TEST_OK(clgqa_profile_end(rt, totals, 8, &count));
    /* One transfer and one elementwise launch, each timed. */
    ck_assert_int_eq(count, 2);
    for (int i = 0; i < count; i++) {
        ck_assert_msg(!strcmp(totals[i].label, "transfer") || !strcmp(totals[i].label, "elementwise"),
                      "label %s", totals[i].label);
        ck_assert_int_eq(totals[i].launches, 1);
        ck_assert(totals[i].milliseconds >= 0.0);
    }
    clgqa_buffer_release(&mem);
    clgqa_buffer_release(&other);
    clgqa_runtime_destroy(rt);
    app_release(&app);
}
END_TEST

START_TEST(unusable_queues_are_refused) {
    clgqa_runtime *rt = (clgqa_runtime *)1;
    app_objects app = app_create(0), other = app_create(0);
    /* A queue of another context. */
    const clgqa_runtime_options *options = test_runtime_options();
    ck_assert_int_eq(clgqa_runtime_wrap(app.context, app.device, other.queue, options, &rt),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_ptr_null(rt);
    assert_refused("another context");
    ck_assert_int_eq(clgqa_runtime_wrap(NULL, app.device, app.queue, options, &rt),
                     CLGQA_ERR_INVALID_ARG);
    assert_refused("needs a context");
    app_release(&other);
    app_release(&app);
    /* An out-of-order queue, where the device offers them. */
    app = app_create(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE);
    if (app.queue) {
        ck_assert_int_eq(clgqa_runtime_wrap(app.context, app.device, app.queue, options, &rt),
                         CLGQA_ERR_INVALID_ARG);
        assert_refused("in-order");
    }
    app_release(&app);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("runtime_wrap");
    TCase *tc = tcase_create("wrap");
    tcase_add_test(tc, runs_on_the_applications_queue);
    tcase_add_test(tc, profiles_on_a_profiling_queue);
    tcase_add_test(tc, unusable_queues_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return test_run_suite(suite()); }
