/* Every kernel program builds cleanly on this device's compiler: each
 * family of src/ops/ (attention.cl once per head dimension and blocking
 * the launcher can ask for; the families with activations also in half
 * storage, -DCLGQA_HALF) with -Werror, under OpenCL C 1.2, the version every
 * kernel is written for, and under the newest version the device offers.
 * A compiler that warns where another is silent (a second vendor's, say)
 * fails here with the program named and its build log, not at a user's
 * first run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "embedded_files.h"
#include "ops.h"
#include "support/test_util.h"

/* The -cl-std option of the newest OpenCL C version the device reports
 * (CL_DEVICE_OPENCL_C_VERSION, "OpenCL C 3.0 ..."), "" when it is 1.2. */
static void newest_standard(char *out, size_t size) {
    char version[128] = "";
    clGetDeviceInfo(test_runtime()->device, CL_DEVICE_OPENCL_C_VERSION, sizeof version, version,
                    NULL);
    int major = 0, minor = 0;
    ck_assert_msg(sscanf(version, "OpenCL C %d.%d", &major, &minor) == 2,
                  "CL_DEVICE_OPENCL_C_VERSION '%s' is not 'OpenCL C <major>.<minor>'", version);
    out[0] = 0;
    if (major * 10 + minor > 12)
        snprintf(out, size, "-cl-std=CL%d.%d", major, minor);
}

/* The defines each family is built with: none, or what the attention
 * launcher asks for (clgqa_attention_build_defines) at these head
 * dimensions and local memory sizes (0: this device's): the ViT's, one of 3
 * column groups (24), one not a multiple of 4 (13), and head_dim 64 where
 * 32 and 16 KiB shrink the inner tiles (48 KiB keeps a large device's). */
static const struct {
    int head_dim;
    cl_ulong local_bytes;
} attention_variants[] = {
    {16, 0}, {32, 0}, {64, 0}, {24, 0}, {13, 0}, {64, 32 << 10}, {64, 16 << 10},
};

static int build(const char *family, const char *text, const char *standard,
                 const char *defines) {
    char options[128];
    snprintf(options, sizeof options, "%s -Werror", standard);
    cl_program program = NULL;
    clgqa_status status = clgqa_build_program_options(test_runtime(), family, text, options,
                                                      defines, &program);
    ck_assert_msg(status == CLGQA_OK, "%s.cl with '%s %s' on %s: %s", family, options, defines,
                  test_runtime()->device_name, clgqa_error_message());
    clReleaseProgram(program);
    return 1;
}

START_TEST(every_family_builds_with_werror_under_each_standard) {
    char newest[32];
    newest_standard(newest, sizeof newest);
    const char *standards[2] = {"-cl-std=CL1.2", newest};
    int built = 0, families = 0;
    for (const clgqa_embedded_file *f = clgqa_kernel_sources; f->name; f++) {
        if (!strcmp(f->name, "prelude") || !strcmp(f->name, "storage")) /* prepended to all */
            continue;
        families++;
        for (int s = 0; s < 2 && standards[s][0]; s++) {
            if (!strcmp(f->name, "attention"))
                for (size_t v = 0; v < sizeof attention_variants / sizeof *attention_variants; v++) {
                    clgqa_runtime *rt = test_runtime();
                    char defines[160];
                    cl_ulong local = attention_variants[v].local_bytes;
                    clgqa_attention_build_defines(attention_variants[v].head_dim,
                                                  local ? local : rt->local_mem_bytes,
                                                  rt->max_work_group_size, defines,
                                                  sizeof defines);
                    built += build(f->name, f->text, standards[s], defines);
                    /* and with half activations (clgqa_attention_dims.storage) */
                    strcat(defines, " ");
                    strcat(defines, clgqa_storage_defines(CLGQA_STORAGE_HALF));
                    built += build(f->name, f->text, standards[s], defines);
                }
            else {
                built += build(f->name, f->text, standards[s], "");
                /* and the half storage of the families that store activations */
                if (strstr(f->text, "act_store") || strstr(f->text, "act_load"))
                    built += build(f->name, f->text, standards[s],
                                   clgqa_storage_defines(CLGQA_STORAGE_HALF));
            }
        }
    }
    ck_assert_int_ge(families, 8);
    printf("kernels: %d programs of %d families built with -Werror under CL1.2%s%s on %s\n",
           built, families, newest[0] ? " and " : "", newest + (newest[0] ? 8 : 0),
           test_runtime()->device_name);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_build");
    TCase *tc = tcase_create("kernels_build");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, every_family_builds_with_werror_under_each_standard);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
