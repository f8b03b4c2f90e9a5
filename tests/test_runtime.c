/* Runtime: device listing and choice, program build and binary cache,
 * buffers, and the clear failures of bad input. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clgqa/runtime.h"
#include "config_internal.h"
#include "environment.h"
#include "op_args.h"
#include "support/test_util.h"

START_TEST(lists_devices) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    TEST_OK(clgqa_list_devices(out));
    fclose(out);
    ck_assert_msg(strstr(text, "[0] ") != NULL, "listing lacks device 0:\n%s", text);
    ck_assert_msg(strstr(text, "max work-group size") != NULL, "listing:\n%s", text);
    free(text);
}
END_TEST

/* A runtime on the device `spec` names, with the options' other fields zero. */
static clgqa_status open_device(const char *spec, clgqa_runtime **out) {
    clgqa_runtime_options options = {0};
    options.device = spec;
    return clgqa_runtime_create(&options, out);
}

/* The index of the device the suite runs on, as a device spec. */
static const char *this_device(void) {
    static char spec[16];
    snprintf(spec, sizeof spec, "%d", test_runtime()->device_index);
    return spec;
}

/* Whether `name` contains `part`, ignoring case. */
static int contains_ignoring_case(const char *name, const char *part) {
    for (; *name; name++)
        if (!strncasecmp(name, part, strlen(part)))
            return 1;
    return 0;
}

START_TEST(chooses_device_by_index_type_and_name) {
    clgqa_runtime *rt = test_runtime();
    clgqa_runtime *by_index, *by_name, *by_type;
    char index[16];
    snprintf(index, sizeof index, "%d", rt->device_index);
    TEST_OK(open_device(index, &by_index));
    ck_assert_str_eq(by_index->device_name, rt->device_name);
    ck_assert_int_eq(by_index->device_index, rt->device_index);
    /* A substring of the name, in another case: the first device whose name
     * holds it (another platform may list one of the same name first). */
    char part[8] = {0};
    for (int i = 0; i < 4 && rt->device_name[i]; i++)
        part[i] = (char)(rt->device_name[i] ^ 0x20 * (rt->device_name[i] >= 'a' && rt->device_name[i] <= 'z'));
    TEST_OK(open_device(part, &by_name));
    ck_assert_msg(contains_ignoring_case(by_name->device_name, part), "%s does not hold %s",
                  by_name->device_name, part);
    ck_assert_int_le(by_name->device_index, rt->device_index);
    TEST_OK(open_device((rt->device_type & CL_DEVICE_TYPE_GPU) ? "gpu" : "cpu", &by_type));
    ck_assert(by_type->device_type & rt->device_type);
    clgqa_runtime_destroy(by_index);
    clgqa_runtime_destroy(by_name);
    clgqa_runtime_destroy(by_type);
}
END_TEST

/* The code paths a runtime takes from its options: auto follows the
 * device type (class), the class (attention) and CLBlast (GEMM); any can
 * be forced, and chosen again later; a value outside the enums is refused
 * and leaves rt unchanged. */
START_TEST(code_paths_follow_device_unless_forced) {
    clgqa_runtime *rt;
    clgqa_runtime_options options = {0};
    options.device = this_device();
    TEST_OK(clgqa_runtime_create(&options, &rt));
    clgqa_device_class natural =
        (rt->device_type & CL_DEVICE_TYPE_CPU) ? CLGQA_CLASS_CPU : CLGQA_CLASS_GPU;
    ck_assert_int_eq(rt->device_class, natural);
    ck_assert_int_eq(rt->attention_kernel,
                     natural == CLGQA_CLASS_CPU ? CLGQA_ATTENTION_ROWS : CLGQA_ATTENTION_TILED);
    ck_assert_int_eq(rt->gemm_kernel, CLGQA_GEMM_AUTO);
    ck_assert_str_eq(clgqa_gemm_kernel_name(rt->gemm_kernel), "auto");
    clgqa_runtime_destroy(rt);

    options.device_class = CLGQA_CLASS_GPU;
    options.gemm_kernel = CLGQA_GEMM_INDIRECT;
    TEST_OK(clgqa_runtime_create(&options, &rt));
    ck_assert_int_eq(rt->device_class, CLGQA_CLASS_GPU);
    ck_assert_int_eq(rt->attention_kernel, CLGQA_ATTENTION_TILED);
    ck_assert_int_eq(rt->gemm_kernel, CLGQA_GEMM_INDIRECT);
    TEST_OK(clgqa_runtime_choose_paths(rt, CLGQA_CLASS_CPU, CLGQA_ATTENTION_TILED,
                                       CLGQA_GEMM_DIRECT));
    ck_assert_int_eq(rt->device_class, CLGQA_CLASS_CPU);
    ck_assert_int_eq(rt->attention_kernel, CLGQA_ATTENTION_TILED);
    ck_assert_int_eq(rt->gemm_kernel, CLGQA_GEMM_DIRECT);
    ck_assert_str_eq(clgqa_device_class_name(rt->device_class), "cpu");
    ck_assert_str_eq(clgqa_attention_kernel_name(rt->attention_kernel), "tiled");
    ck_assert_str_eq(clgqa_gemm_kernel_name(rt->gemm_kernel), "direct");
    ck_assert_int_eq(clgqa_runtime_choose_paths(rt, (clgqa_device_class)7, CLGQA_ATTENTION_AUTO,
                                                CLGQA_GEMM_AUTO),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_int_eq(rt->device_class, CLGQA_CLASS_CPU);
    ck_assert_int_eq(rt->attention_kernel, CLGQA_ATTENTION_TILED);
    ck_assert_int_eq(rt->gemm_kernel, CLGQA_GEMM_DIRECT);
    clgqa_runtime_destroy(rt);

    /* Names: the parsers take the config keys' values and refuse others. */
    clgqa_gemm_kernel g;
    TEST_OK(clgqa_gemm_kernel_parse("indirect", &g));
    ck_assert_int_eq(g, CLGQA_GEMM_INDIRECT);
    ck_assert_int_eq(clgqa_gemm_kernel_parse("fastest", &g), CLGQA_ERR_INVALID_ARG);
    ck_assert_str_eq(clgqa_error_message(),
                     "GEMM kernel 'fastest' is not one of auto, direct, indirect");
}
END_TEST

/* What `clgqa` and the tests read from the environment (src/cli/
 * environment.c): each variable fills its option, a config key that is not
 * "auto" beats the variable, and a bad value is refused on one line naming
 * the variable or the key. */
/* The variables the environment test sets, and what they were before it:
 * scripts/test picks each suite's device with CLGQA_DEVICE. */
static const char *const runtime_variables[] = {
    "CLGQA_DEVICE",     "CLGQA_DEVICE_CLASS", "CLGQA_ATTENTION",  "CLGQA_GEMM",
    "CLGQA_CACHE_DIR",  "CLGQA_BUILD_OPTIONS", "CLGQA_BUILD_LOG", "CLGQA_TUNING_DIR",
    "CLGQA_MAX_ALLOC_BYTES", "XDG_CACHE_HOME"};
#define RUNTIME_VARIABLES (sizeof runtime_variables / sizeof *runtime_variables)

START_TEST(environment_fills_the_runtime_options) {
    char *before[RUNTIME_VARIABLES];
    for (size_t i = 0; i < RUNTIME_VARIABLES; i++) {
        const char *value = getenv(runtime_variables[i]);
        before[i] = value ? strdup(value) : NULL;
    }
    cli_environment env;
    setenv("CLGQA_DEVICE", "gpu", 1);
    setenv("CLGQA_DEVICE_CLASS", "gpu", 1);
    setenv("CLGQA_ATTENTION", "rows", 1);
    setenv("CLGQA_GEMM", "indirect", 1);
    setenv("CLGQA_CACHE_DIR", "/tmp/some-cache", 1);
    setenv("CLGQA_BUILD_OPTIONS", "-DX=1", 1);
    setenv("CLGQA_BUILD_LOG", "/tmp/build.log", 1);
    setenv("CLGQA_TUNING_DIR", "/tmp/tuning", 1);
    setenv("CLGQA_MAX_ALLOC_BYTES", "65536", 1);
    TEST_OK(cli_read_environment(&env));
    ck_assert_str_eq(env.options.device, "gpu");
    ck_assert_int_eq(env.options.device_class, CLGQA_CLASS_GPU);
    ck_assert_int_eq(env.options.attention_kernel, CLGQA_ATTENTION_ROWS);
    ck_assert_int_eq(env.options.gemm_kernel, CLGQA_GEMM_INDIRECT);
    ck_assert_str_eq(env.options.cache_dir, "/tmp/some-cache");
    ck_assert_str_eq(env.options.build_options, "-DX=1");
    ck_assert_str_eq(env.options.build_log, "/tmp/build.log");
    ck_assert_str_eq(env.options.tuning_dir, "/tmp/tuning");
    ck_assert_uint_eq(env.options.max_alloc_bytes, 65536);
    /* Config keys: "auto" keeps the environment's choice, others win. */
    clgqa_config cfg;
    clgqa_config_defaults(&cfg);
    TEST_OK(clgqa_config_set(&cfg, "attention_kernel=tiled"));
    TEST_OK(clgqa_config_set(&cfg, "gemm_kernel=direct"));
    clgqa_config_runtime_options(&cfg, &env.options);
    ck_assert_int_eq(env.options.device_class, CLGQA_CLASS_GPU);
    ck_assert_int_eq(env.options.attention_kernel, CLGQA_ATTENTION_TILED);
    ck_assert_int_eq(env.options.gemm_kernel, CLGQA_GEMM_DIRECT);
    ck_assert_int_eq(clgqa_config_set(&cfg, "device_class=fast"), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "device_class") &&
                      strstr(clgqa_error_message(), "'fast'") &&
                      !strchr(clgqa_error_message(), '\n'),
                  "%s", clgqa_error_message());

    /* The cache: off, or $XDG_CACHE_HOME/clgqa when unset. */
    setenv("CLGQA_CACHE_DIR", "off", 1);
    TEST_OK(cli_read_environment(&env));
    ck_assert_ptr_null(env.options.cache_dir);
    unsetenv("CLGQA_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
    TEST_OK(cli_read_environment(&env));
    ck_assert_str_eq(env.options.cache_dir, "/tmp/xdg/clgqa");
    unsetenv("XDG_CACHE_HOME");

    static const char *const bad[][2] = {{"CLGQA_GEMM", "sideways"},
                                         {"CLGQA_ATTENTION", "sideways"},
                                         {"CLGQA_DEVICE_CLASS", "tpu"},
                                         {"CLGQA_MAX_ALLOC_BYTES", "12k"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(bad[i][0], bad[i][1], 1);
        ck_assert_int_eq(cli_read_environment(&env), CLGQA_ERR_INVALID_ARG);
        ck_assert_msg(strstr(clgqa_error_message(), bad[i][0]) &&
                          strstr(clgqa_error_message(), bad[i][1]),
                      "%s", clgqa_error_message());
        unsetenv(bad[i][0]);
    }
    for (size_t i = 0; i < RUNTIME_VARIABLES; i++) {
        if (before[i])
            setenv(runtime_variables[i], before[i], 1);
        else
            unsetenv(runtime_variables[i]);
        free(before[i]);
    }
}
END_TEST

START_TEST(unknown_device_spec_is_refused) {
    clgqa_runtime *rt = NULL;
    ck_assert_int_eq(open_device("no-such-device-xyz", &rt), CLGQA_ERR_NO_DEVICE);
    ck_assert_ptr_null(rt);
    ck_assert_msg(strstr(clgqa_error_message(), "no-such-device-xyz"), "%s", clgqa_error_message());
    ck_assert_int_eq(open_device("99", &rt), CLGQA_ERR_NO_DEVICE);
}
END_TEST

/* Child mode: with OCL_ICD_VENDORS pointing at an empty folder, the runtime
 * must report CLGQA_ERR_NO_PLATFORM. */
static int probe_no_platform(void) {
    clgqa_runtime *rt;
    clgqa_status s = clgqa_runtime_create(NULL, &rt);
    return s == CLGQA_ERR_NO_PLATFORM && strstr(clgqa_error_message(), "no OpenCL platform") ? 0 : 1;
}

START_TEST(no_platform_is_a_clear_error) {
    /* The ICD loader reads OCL_ICD_VENDORS once per process, and this process
     * already loaded it: check in a freshly exec'ed copy of this program. */
    char empty[] = "/tmp/clgqa-no-icd-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(empty));
    pid_t pid = fork();
    if (pid == 0) {
        setenv("OCL_ICD_VENDORS", empty, 1);
        execl("/proc/self/exe", "test_runtime", "--probe-no-platform", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    rmdir(empty);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "without platforms the runtime did not report CLGQA_ERR_NO_PLATFORM");
}
END_TEST

START_TEST(broken_kernel_reports_build_log) {
    cl_program program = NULL;
    clgqa_status s = clgqa_build_program(test_runtime(), "broken",
                                         "__kernel void k(__global float *x) { x[0] = y; }",
                                         &program);
    ck_assert_int_eq(s, CLGQA_ERR_BUILD);
    ck_assert_ptr_null(program);
    const char *msg = clgqa_error_message();
    ck_assert_msg(strstr(msg, "broken") && strstr(msg, "y"), "message lacks the log: %s", msg);
}
END_TEST

START_TEST(binary_cache_is_written_and_reused) {
    char dir[] = "/tmp/clgqa-cache-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    clgqa_runtime_options options = {0};
    options.device = this_device();
    options.cache_dir = dir;
    clgqa_runtime *rt;
    TEST_OK(clgqa_runtime_create(&options, &rt));
    ck_assert_str_eq(rt->cache_dir, dir);
    const char *src = "__kernel void twice(__global float *x) { x[get_global_id(0)] *= 2.0f; }";
    cl_program first, second;
    TEST_OK(clgqa_build_program(rt, "twice", src, &first));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/twice-*.bin >/dev/null 2>&1", dir);
    ck_assert_msg(system(cmd) == 0, "no cached binary in %s", dir);
    TEST_OK(clgqa_build_program(rt, "twice", src, &second)); /* from the cache */
    /* The cached program runs. */
    cl_int err;
    cl_kernel k = clCreateKernel(second, "twice", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float host[3] = {1.5f, -2.0f, 3.25f};
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(rt, sizeof host, &mem));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, sizeof host, host));
    TEST_OK(clgqa_set_arg(k, 0, sizeof mem, &mem, "x"));
    TEST_OK(clgqa_launch_1d(rt, k, 3, 0));
    TEST_OK(clgqa_buffer_read(rt, mem, 0, sizeof host, host));
    ck_assert_float_eq(host[0], 3.0f);
    ck_assert_float_eq(host[1], -4.0f);
    ck_assert_float_eq(host[2], 6.5f);
    clReleaseMemObject(mem);
    clReleaseKernel(k);
    clReleaseProgram(first);
    clReleaseProgram(second);
    clgqa_runtime_destroy(rt);
    test_remove_tree(dir);
}
END_TEST

START_TEST(unwritable_cache_still_builds) {
    clgqa_runtime_options options = {0};
    options.device = this_device();
    options.cache_dir = "/proc/clgqa-cannot-exist";
    clgqa_runtime *rt;
    TEST_OK(clgqa_runtime_create(&options, &rt));
    ck_assert_str_eq(rt->cache_dir, "");
    cl_program p;
    TEST_OK(clgqa_build_program(rt, "ok", "__kernel void k(__global float *x) { x[0] = 1.0f; }", &p));
    clReleaseProgram(p);
    clgqa_runtime_destroy(rt);
}
END_TEST

/* The build options reach the compiler (the kernel below only builds and
 * stores 7.5 with the define they add), the build log collects the build,
 * and a bad or overlong option is an error, not a silent default. */
START_TEST(build_options_and_log) {
    char log_path[] = "/tmp/clgqa-build-log-XXXXXX";
    int fd = mkstemp(log_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    clgqa_runtime_options options = {0};
    options.device = this_device();
    options.build_options = "-DPROBE_VALUE=7.5f";
    options.build_log = log_path;
    clgqa_runtime *rt;
    TEST_OK(clgqa_runtime_create(&options, &rt));
    cl_program program;
    TEST_OK(clgqa_build_program(rt, "probe", "__kernel void k(__global float *x) { x[0] = PROBE_VALUE; }",
                                &program));
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float value = -1.0f;
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(rt, sizeof value, &mem));
    TEST_OK(clgqa_set_arg(k, 0, sizeof mem, &mem, "x"));
    TEST_OK(clgqa_launch_1d(rt, k, 1, 0));
    TEST_OK(clgqa_buffer_read(rt, mem, 0, sizeof value, &value));
    ck_assert_float_eq(value, 7.5f);
    char log[4096] = "";
    FILE *f = fopen(log_path, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(log, 1, sizeof log - 1, f);
    log[got] = 0;
    fclose(f);
    ck_assert_msg(strstr(log, "== probe.cl") && strstr(log, "-DPROBE_VALUE=7.5f"),
                  "build log: %s", log);
    clReleaseMemObject(mem);
    clReleaseKernel(k);
    clReleaseProgram(program);

    clgqa_runtime_destroy(rt);

    options.build_options = "-no-such-option-anywhere";
    TEST_OK(clgqa_runtime_create(&options, &rt));
    program = NULL;
    ck_assert_int_eq(clgqa_build_program(rt, "probe", "__kernel void k(__global float *x) { }",
                                         &program),
                     CLGQA_ERR_BUILD);
    ck_assert_ptr_null(program);
    clgqa_runtime_destroy(rt);
    char overlong[400];
    memset(overlong, 'x', sizeof overlong - 1);
    overlong[sizeof overlong - 1] = 0;
    options.build_options = overlong;
    rt = NULL;
    ck_assert_int_eq(clgqa_runtime_create(&options, &rt), CLGQA_ERR_INVALID_ARG);
    ck_assert_ptr_null(rt);
    ck_assert_msg(strstr(clgqa_error_message(), "build_options is too long"), "%s",
                  clgqa_error_message());
    /* A split into more chunks than the CLI allows is refused the same. */
    options.build_options = NULL;
    options.gemm_split = 1025;
    rt = NULL;
    ck_assert_int_eq(clgqa_runtime_create(&options, &rt), CLGQA_ERR_INVALID_ARG);
    ck_assert_ptr_null(rt);
    ck_assert_msg(strstr(clgqa_error_message(), "gemm_split 1025 is above 1024"), "%s",
                  clgqa_error_message());
    remove(log_path);
}
END_TEST

START_TEST(oversized_buffer_is_refused) {
    clgqa_runtime *rt = test_runtime();
    cl_mem mem = NULL;
    clgqa_status s = clgqa_buffer_create(rt, (size_t)rt->device_max_alloc_bytes + 4096, &mem);
    ck_assert_int_eq(s, CLGQA_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(mem);
    ck_assert_msg(strstr(clgqa_error_message(), "exceeds"), "%s", clgqa_error_message());
}
END_TEST

START_TEST(unknown_kernel_family_and_name) {
    cl_kernel k;
    ck_assert_int_eq(clgqa_kernel(test_runtime(), "no_such_family", "k", &k), CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "no_such_family"), "%s", clgqa_error_message());
}
END_TEST

START_TEST(profiler_sums_device_time_per_label) {
    clgqa_runtime *rt = test_runtime();
    cl_program program;
    TEST_OK(clgqa_build_program(rt, "busy",
                                "__kernel void busy(__global float *x) {\n"
                                "  float v = x[get_global_id(0)];\n"
                                "  for (int i = 0; i < 2000; i++) v = v * 0.999f + 0.001f;\n"
                                "  x[get_global_id(0)] = v; }",
                                &program));
    cl_int err;
    cl_kernel k = clCreateKernel(program, "busy", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float host[64];
    for (int i = 0; i < 64; i++)
        host[i] = (float)i;
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(rt, sizeof host, &mem));
    TEST_OK(clgqa_profile_begin(rt));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, sizeof host, host));
    TEST_OK(clgqa_set_arg(k, 0, sizeof mem, &mem, "x"));
    TEST_OK(clgqa_launch_1d(rt, k, 64, 0));
    TEST_OK(clgqa_launch_1d(rt, k, 64, 0));
    /* A span (as around a CLBlast call): its launches count once, under its label. */
    clgqa_profile_span_begin(rt);
    cl_event inside;
    ck_assert_int_eq(clEnqueueNDRangeKernel(rt->queue, k, 1, NULL, (size_t[]){64}, NULL, 0, NULL,
                                            &inside), CL_SUCCESS);
    clgqa_profile_span_end(rt, "span", 1000.0);
    clgqa_profile_total totals[8];
    int count;
    TEST_OK(clgqa_profile_end(rt, totals, 8, &count));
    ck_assert_ptr_null(rt->profiler);
    int found_kernel = 0, found_transfer = 0;
    for (int i = 0; i < count; i++) {
        ck_assert(totals[i].milliseconds >= 0);
        /* Built outside the embedded families, so labelled "other". */
        if (!strcmp(totals[i].label, "other")) {
            ck_assert_int_eq(totals[i].launches, 2);
            ck_assert(totals[i].milliseconds > 0);
            found_kernel = 1;
        }
        if (!strcmp(totals[i].label, "transfer"))
            found_transfer = (int)totals[i].launches;
    }
    ck_assert(found_kernel);
    ck_assert_int_eq(found_transfer, 1);
    int found_span = 0;
    for (int i = 0; i < count; i++)
        if (!strcmp(totals[i].label, "span")) {
            found_span = 1;
            ck_assert_int_eq(totals[i].launches, 1);
            ck_assert(totals[i].flops == 1000.0);
            /* The span covers the kernel inside it. */
            cl_ulong start, end;
            clGetEventProfilingInfo(inside, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
            clGetEventProfilingInfo(inside, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
            ck_assert_msg(totals[i].milliseconds >= (double)(end - start) * 1e-6 * 0.999,
                          "span %.4f ms < kernel %.4f ms", totals[i].milliseconds,
                          (double)(end - start) * 1e-6);
        }
    ck_assert(found_span);
    clReleaseEvent(inside);
    /* end without begin is an error, not a crash. */
    ck_assert_int_eq(clgqa_profile_end(rt, totals, 8, &count), CLGQA_ERR_INVALID_ARG);
    clReleaseMemObject(mem);
    clReleaseKernel(k);
    clReleaseProgram(program);
}
END_TEST

/* The launchers' argument cursor: indices follow each other (a view takes
 * two), and a launcher that sets fewer arguments than the kernel takes is
 * refused by kernel_args_done, naming the kernel and both counts. */
START_TEST(kernel_args_set_every_index_in_order) {
    clgqa_runtime *rt = test_runtime();
    cl_program program;
    TEST_OK(clgqa_build_program(rt, "args",
                                "__kernel void scaled(__global float *x, uint x_off, uint n, float s) {\n"
                                "  uint i = get_global_id(0); if (i < n) x[x_off + i] *= s; }",
                                &program));
    cl_int err;
    cl_kernel k = clCreateKernel(program, "scaled", &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    float host[5] = {1, 2, 3, 4, 5}, got[5];
    cl_mem mem;
    TEST_OK(clgqa_buffer_create(rt, sizeof host, &mem));
    TEST_OK(clgqa_buffer_write(rt, mem, 0, sizeof host, host));

    kernel_args args = kernel_args_start(k);
    kernel_arg_view(&args, clgqa_view_at(mem, 1));
    kernel_arg_uint(&args, 3);
    ck_assert_int_eq(kernel_args_done(&args), CLGQA_ERR_INVALID_ARG);
    ck_assert_str_eq(clgqa_error_message(), "kernel scaled takes 4 arguments, its launcher set 3");

    float scale = -2.0f;
    KERNEL_ARG(&args, scale);
    TEST_OK(kernel_args_done(&args));
    TEST_OK(clgqa_launch_1d(rt, k, 3, 0));
    TEST_OK(clgqa_buffer_read(rt, mem, 0, sizeof got, got));
    const float want[5] = {1, -4, -6, -8, 5}; /* elements 1..3 of the view, scaled exactly */
    for (int i = 0; i < 5; i++)
        ck_assert_msg(got[i] == want[i], "element %d: %g, expected %g", i, (double)got[i],
                      (double)want[i]);
    clgqa_buffer_release(&mem);
    clReleaseKernel(k);
    clReleaseProgram(program);
}
END_TEST

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--probe-no-platform"))
        return probe_no_platform();
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("runtime");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, lists_devices);
    tcase_add_test(tc, chooses_device_by_index_type_and_name);
    tcase_add_test(tc, code_paths_follow_device_unless_forced);
    tcase_add_test(tc, environment_fills_the_runtime_options);
    tcase_add_test(tc, unknown_device_spec_is_refused);
    tcase_add_test(tc, no_platform_is_a_clear_error);
    tcase_add_test(tc, broken_kernel_reports_build_log);
    tcase_add_test(tc, binary_cache_is_written_and_reused);
    tcase_add_test(tc, unwritable_cache_still_builds);
    tcase_add_test(tc, build_options_and_log);
    tcase_add_test(tc, oversized_buffer_is_refused);
    tcase_add_test(tc, unknown_kernel_family_and_name);
    tcase_add_test(tc, profiler_sums_device_time_per_label);
    tcase_add_test(tc, kernel_args_set_every_index_in_order);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
