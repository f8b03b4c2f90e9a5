/* The table of transposes (transpose.cl) on both device classes' paths:
 * matrices of awkward shapes (1 x 1, a row, a column, sizes off every
 * block, several blocks each way) in one launch, each destination between
 * guard values. A transpose moves values without arithmetic, so every
 * element must match exactly, and every guard must survive. */
#include <stdlib.h>

#include "ops.h"
#include "support/op_tests.h"

#define GAP 5 /* guard elements between the destinations */

START_TEST(table_transposes_exactly) {
    op_test_class(_i);
    clgqa_runtime *rt = test_runtime();
    const size_t shapes[][2] = {{1, 1}, {1, 37}, {29, 1}, {33, 65}, {64, 64}, {0, 7},
                                {test_small() ? 70 : 130, test_small() ? 45 : 259}};
    enum { COUNT = sizeof shapes / sizeof shapes[0] };
    clgqa_transpose entries[COUNT];
    size_t src_len = 0, dst_len = GAP;
    for (int i = 0; i < COUNT; i++) {
        /* Sources back to back; destinations apart, in the reverse order. */
        entries[i].rows = shapes[i][0], entries[i].cols = shapes[i][1];
        entries[i].src = src_len;
        src_len += shapes[i][0] * shapes[i][1];
    }
    for (int i = COUNT - 1; i >= 0; i--) {
        entries[i].dst = dst_len;
        dst_len += shapes[i][0] * shapes[i][1] + GAP;
    }
    float *src = test_random_array(src_len, -1, 1), *guards = malloc(dst_len * sizeof *guards);
    float *got = malloc(dst_len * sizeof *got);
    for (size_t i = 0; i < dst_len; i++)
        guards[i] = OP_TEST_GUARD;
    cl_uint table[COUNT * CLGQA_TRANSPOSE_UINTS];
    TEST_OK(clgqa_transpose_encode(entries, COUNT, table));
    cl_mem src_mem = op_upload_padded(src, src_len), dst_mem = op_upload_padded(guards, dst_len);
    cl_mem table_mem;
    TEST_OK(clgqa_buffer_create(rt, sizeof table, &table_mem));
    TEST_OK(clgqa_buffer_write(rt, table_mem, 0, sizeof table, table));
    TEST_OK(clgqa_transpose_table(rt, op_view(dst_mem), op_view(src_mem),
                                  clgqa_view_at(table_mem, 0), entries, COUNT));
    op_download_padded("dst", dst_mem, got, dst_len);
    float *want = malloc(dst_len * sizeof *want);
    memcpy(want, guards, dst_len * sizeof *want);
    for (int e = 0; e < COUNT; e++)
        for (size_t r = 0; r < entries[e].rows; r++)
            for (size_t c = 0; c < entries[e].cols; c++)
                want[entries[e].dst + c * entries[e].rows + r] =
                    src[entries[e].src + r * entries[e].cols + c];
    for (size_t i = 0; i < dst_len; i++)
        ck_assert_msg(got[i] == want[i], "dst[%zu]: got %.9g want %.9g", i, (double)got[i],
                      (double)want[i]);
    clgqa_buffer_release(&src_mem);
    clgqa_buffer_release(&dst_mem);
    clgqa_buffer_release(&table_mem);
    free(src), free(guards), free(got), free(want);
}
END_TEST

/* A transpose reaching past its buffer, and a table too short for its
 * entries, are refused before anything is enqueued, naming what is wrong. */
START_TEST(bad_arguments_are_refused) {
    clgqa_runtime *rt = test_runtime();
    float host[12] = {0};
    cl_mem mem = test_upload(host, 12), out = test_upload(host, 12);
    clgqa_transpose past = {4, 3, 3, 0}, fits = {0, 3, 4, 0};
    cl_uint table[CLGQA_TRANSPOSE_UINTS];
    TEST_OK(clgqa_transpose_encode(&fits, 1, table));
    cl_mem table_mem = test_upload_int((const int32_t *)table, 2);
    ck_assert_int_eq(clgqa_transpose_table(rt, clgqa_view_at(out, 0), clgqa_view_at(mem, 0),
                                           clgqa_view_at(table_mem, 0), &past, 1),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "src"), "%s", clgqa_error_message());
    ck_assert_int_eq(clgqa_transpose_table(rt, clgqa_view_at(out, 0), clgqa_view_at(mem, 0),
                                           clgqa_view_at(table_mem, 0), &fits, 1),
                     CLGQA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(clgqa_error_message(), "table"), "%s", clgqa_error_message());
    clgqa_buffer_release(&mem);
    clgqa_buffer_release(&out);
    clgqa_buffer_release(&table_mem);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_transpose");
    TCase *tc = tcase_create("transpose");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, table_transposes_exactly, 0, OP_TEST_CLASSES);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
