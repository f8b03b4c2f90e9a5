/* The PyTorch .pth reader (pth.c) on files torch.save wrote
 * (tests/ref/make_pth_fixture.py): every dtype, a 0-d tensor, a view at a
 * storage offset, a training script's checkpoint dict, deflated entries,
 * zip64 records; and
 * damaged or foreign files refused with one line saying what to do. The
 * reference model's .pth files are checked end to end in test_uptrain.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pth.h"
#include "safetensors.h"
#include "support/dataset_gen.h"
#include "support/test_util.h"

#define FIXTURES "tests/ref/fixtures/"
#define EXPECTED FIXTURES "pth_expected.safetensors"

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(*size);
    ck_assert_uint_eq(fread(bytes, 1, *size, f), *size);
    fclose(f);
    return bytes;
}

static void spill(const char *path, const unsigned char *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

/* Each tensor of dtypes.pth has its dtype and shape, and its values widened
 * to float32 equal torch's .float() bit for bit (F16 and BF16 widen
 * exactly). */
static void check_dtypes_file(const char *path) {
    static const struct {
        const char *name;
        clgqa_dtype dtype;
        int ndim;
        int64_t shape[2];
    } want[] = {
        {"f32", CLGQA_DTYPE_F32, 2, {2, 3}}, {"f16", CLGQA_DTYPE_F16, 1, {4}},
        {"bf16", CLGQA_DTYPE_BF16, 2, {3, 2}}, {"i64", CLGQA_DTYPE_I64, 1, {5}},
        {"scalar", CLGQA_DTYPE_F32, 0, {0}}, {"view", CLGQA_DTYPE_F32, 1, {3}},
        {"base", CLGQA_DTYPE_F32, 1, {10}},
    };
    clgqa_tensor_set *file, *expected;
    TEST_OK(clgqa_tensor_file_open(path, &file));
    TEST_OK(clgqa_tensor_file_open(EXPECTED, &expected));
    /* model_state_dict only: the epoch, the optimizer and the float beside it are not tensors of the set. */
    ck_assert_uint_eq(clgqa_tensor_set_count(file), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const clgqa_tensor *t = clgqa_tensor_set_find(file, want[i].name);
        ck_assert_msg(t != NULL, "%s lacks %s", path, want[i].name);
        ck_assert_msg(t->dtype == want[i].dtype, "%s: dtype %s", want[i].name, clgqa_dtype_name(t->dtype));
        ck_assert_int_eq(t->ndim, want[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            ck_assert_int_eq(t->shape[d], want[i].shape[d]);
        char name[64];
        snprintf(name, sizeof name, "dtypes.%s", want[i].name);
        const clgqa_tensor *e = clgqa_tensor_set_find(expected, name);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(t->numel, e->numel);
        float got[16], ref[16];
        TEST_OK(clgqa_tensor_set_read_f32(file, want[i].name, got, t->numel));
        TEST_OK(clgqa_tensor_set_read_f32(expected, name, ref, e->numel));
        ck_assert_msg(memcmp(got, ref, t->numel * sizeof(float)) == 0, "%s: %s differs from torch", path,
                      want[i].name);
    }
    clgqa_tensor_set_close(expected);
    clgqa_tensor_set_close(file);
}

START_TEST(pth_tensors_read_as_torch_saved_them) {
    check_dtypes_file(FIXTURES "dtypes.pth");
    check_dtypes_file(FIXTURES "dtypes_deflated.pth");
    check_dtypes_file(FIXTURES "dtypes_zip64.pth");
}
END_TEST

/* The message of opening `path`, which must fail with CLGQA_ERR_FORMAT and
 * contain `what`. */
static void check_refused(const char *path, const char *what) {
    clgqa_tensor_set *file = NULL;
    clgqa_status status = clgqa_tensor_file_open(path, &file);
    ck_assert_msg(status == CLGQA_ERR_FORMAT, "%s: %s (%s)", path, clgqa_status_name(status),
                  status ? clgqa_error_message() : "opened");
    const char *message = clgqa_error_message();
    ck_assert_msg(strstr(message, path) && strstr(message, what), "%s: '%s' lacks '%s'", path, message, what);
    ck_assert_msg(!strchr(message, '\n'), "more than one line: %s", message);
}

START_TEST(damaged_and_foreign_files_are_refused_with_one_line) {
    char *dir = test_temp_dir(), path[512];
    size_t size;
    unsigned char *good = slurp(FIXTURES "reference_gqa.pth", &size);

    snprintf(path, sizeof path, "%s/truncated.pth", dir);
    spill(path, good, size / 2);
    check_refused(path, "truncated");

    /* A flipped bit in a tensor's bytes: the zip CRC catches it. */
    unsigned char *flipped = malloc(size);
    memcpy(flipped, good, size);
    flipped[size / 2] ^= 0x10;
    snprintf(path, sizeof path, "%s/flipped.pth", dir);
    spill(path, flipped, size);
    check_refused(path, "CRC");
    free(flipped);

    /* Not a checkpoint at all, under a .pth name. */
    snprintf(path, sizeof path, "%s/notes.pth", dir);
    spill(path, (const unsigned char *)"these are not weights, just text\n", 33);
    check_refused(path, "torch.save(model.state_dict(), path)");

    snprintf(path, sizeof path, "%s/empty.pt", dir);
    spill(path, good, 0);
    check_refused(path, "0 bytes, not a PyTorch checkpoint");

    check_refused(FIXTURES "legacy.pt", "torch.save(torch.load(path), 'new.pth')");
    /* torch.save(module): the pickle names a class; nothing is run. */
    check_refused(FIXTURES "whole_module.pth", "torch.nn.modules.linear.Linear");

    /* Every prefix of a valid file is refused cleanly (no crash, one line). */
    for (size_t cut = 0; cut < size; cut += size / 97 + 1) {
        clgqa_tensor_set *file = NULL;
        ck_assert_int_ne(clgqa_pth_parse(good, cut, "cut", &file), CLGQA_OK);
        ck_assert_ptr_null(file);
        ck_assert(!strchr(clgqa_error_message(), '\n'));
    }

    /* The command says it in one line and exits non-zero. */
    char args[2048], err[4096];
    snprintf(path, sizeof path, "%s/truncated.pth", dir);
    snprintf(args, sizeof args, "convert configs/demo.yaml --in '%s' --out '%s/out.safetensors'", path, dir);
    ck_assert_int_ne(test_run_clgqa("", args, NULL, 0, err, sizeof err), 0);
    test_assert_one_line_naming(err, path);
    free(good);
    test_remove_tree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("pth");
    TCase *tc = tcase_create("pth");
    tcase_add_test(tc, pth_tensors_read_as_torch_saved_them);
    tcase_add_test(tc, damaged_and_foreign_files_are_refused_with_one_line);
    suite_add_tcase(suite, tc);
    return test_run_suite(suite);
}
