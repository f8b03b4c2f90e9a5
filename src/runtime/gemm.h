/* Matrix products through CLBlast. Row-major, float32; offsets in floats. */
#ifndef CLGQA_GEMM_H
#define CLGQA_GEMM_H

#include "clgqa/runtime.h"

/* Give CLBlast the tuned parameters for this device: the tuner results
 * shipped in tuning/ (embedded at build time) and the *.json files in
 * the runtime options' tuning_dir (written by Debian's clblast_tuner_* programs), matched by
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
/* The temporary buffer a product of these sizes needs, the largest over its
 * four transpose cases (the memory check before a run; nothing allocated). */
clgqa_status clgqa_gemm_temp_bytes_for(clgqa_runtime *rt, size_t m, size_t n, size_t k,
                                       size_t *bytes);

/* C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T.
 * op(A) is M x K, op(B) is K x N; lda/ldb/ldc are row strides of the stored
 * matrices (A stored M x K when !trans_a, K x M when trans_a). */
clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc);

#endif
