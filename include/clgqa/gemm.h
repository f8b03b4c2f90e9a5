/* Matrix products through CLBlast. Row-major, float32; offsets in floats. */
#ifndef CLGQA_GEMM_H
#define CLGQA_GEMM_H

#include "clgqa/runtime.h"

/* Give CLBlast the tuned parameters for this device: the tuner results
 * shipped in tuning/ (embedded at build time) and the *.json files in
 * $CLGQA_TUNING_DIR (written by Debian's clblast_tuner_* programs), matched by
 * device name (or, when the file has "clgqa_device_match", by that substring
 * of the name). Done once per runtime, by the first GEMM; records the tuned
 * kernels (clgqa_runtime_clblast_tuning). A malformed file is an error naming it.
 * Every GEMM then runs with the runtime's GEMM path (clgqa_runtime_gemm_kernel)
 * put in force. */
clgqa_status clgqa_gemm_apply_tuning(clgqa_runtime *rt);

/* Which CLBlast kernel ran this runtime's products so far: calls through the
 * direct and the indirect kernel (a strided batch counts once), and the
 * XGEMM_MIN_INDIRECT_SIZE of the last (direct while m*n*k is below its
 * cube: 2^21 when forced direct, 0 when forced indirect; 0 before any). */
typedef struct clgqa_gemm_paths {
    long direct_calls, indirect_calls;
    size_t min_indirect_size;
} clgqa_gemm_paths;
clgqa_gemm_paths clgqa_gemm_paths_taken(const clgqa_runtime *rt);

/* Bytes of CLBlast's temporary buffer, one per runtime shared by every GEMM
 * (0 until a GEMM needs one); counted in clgqa_runtime_allocated_bytes. */
size_t clgqa_gemm_temp_bytes(const clgqa_runtime *rt);

/* C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T.
 * op(A) is M x K, op(B) is K x N; lda/ldb/ldc are row strides of the stored
 * matrices (A stored M x K when !trans_a, K x M when trans_a). */
clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc);

/* `batch` independent products; item i uses a + i*stride_a, b + i*stride_b,
 * c + i*stride_c (strides in floats). */
clgqa_status clgqa_sgemm_strided_batched(clgqa_runtime *rt, int trans_a, int trans_b, size_t m,
                                         size_t n, size_t k, float alpha, clgqa_view a,
                                         size_t lda, size_t stride_a, clgqa_view b, size_t ldb,
                                         size_t stride_b, float beta, clgqa_view c, size_t ldc,
                                         size_t stride_c, size_t batch);

/* y[rows, out] = x[rows, in] W^T + bias (PyTorch Linear; W is [out, in]).
 * bias.mem may be NULL. */
clgqa_status clgqa_linear_forward(clgqa_runtime *rt, clgqa_view y, clgqa_view x, clgqa_view weight,
                                  clgqa_view bias, size_t rows, size_t in, size_t out);
/* Accumulates: dx += dy W, dW += dy^T x, dbias += sum_rows dy.
 * dx.mem may be NULL (input needs no gradient); dbias.mem may be NULL. */
clgqa_status clgqa_linear_backward(clgqa_runtime *rt, clgqa_view dx, clgqa_view dweight,
                                   clgqa_view dbias, clgqa_view dy, clgqa_view x,
                                   clgqa_view weight, size_t rows, size_t in, size_t out);

#endif
