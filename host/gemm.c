/* Matrix products through CLBlast (row-major, float32), and the Linear layer
 * built on them. */
#include "clgqa/gemm.h"

#include <clblast_c.h>

#include "clgqa/ops.h"

static const char *clblast_status_name(CLBlastStatusCode status) {
    switch (status) {
    case CLBlastInvalidDimension: return "CLBlastInvalidDimension";
    case CLBlastInvalidLeadDimA: return "CLBlastInvalidLeadDimA";
    case CLBlastInvalidLeadDimB: return "CLBlastInvalidLeadDimB";
    case CLBlastInvalidLeadDimC: return "CLBlastInvalidLeadDimC";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
    case CLBlastInvalidBatchCount: return "CLBlastInvalidBatchCount";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
    default:
        /* The remaining codes are OpenCL status codes. */
        return clgqa_cl_status_name((cl_int)status);
    }
}

static clgqa_status check_clblast(CLBlastStatusCode status, const char *call, size_t m, size_t n,
                                  size_t k) {
    if (status == CLBlastSuccess)
        return CLGQA_OK;
    return clgqa_fail(CLGQA_ERR_CLBLAST, "%s (m=%zu n=%zu k=%zu) failed: %s (%d)", call, m, n, k,
                      clblast_status_name(status), (int)status);
}

clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc) {
    if (m == 0 || n == 0)
        return CLGQA_OK;
    if (k == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_sgemm: k must be positive");
    CLBlastStatusCode status = CLBlastSgemm(
        CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a.mem, a.offset, lda,
        b.mem, b.offset, ldb, beta, c.mem, c.offset, ldc, &rt->queue,
        clgqa_profile_slot(rt, "gemm", 2.0 * (double)m * (double)n * (double)k));
    return check_clblast(status, "CLBlastSgemm", m, n, k);
}

clgqa_status clgqa_sgemm_strided_batched(clgqa_runtime *rt, int trans_a, int trans_b, size_t m,
                                         size_t n, size_t k, float alpha, clgqa_view a,
                                         size_t lda, size_t stride_a, clgqa_view b, size_t ldb,
                                         size_t stride_b, float beta, clgqa_view c, size_t ldc,
                                         size_t stride_c, size_t batch) {
    if (m == 0 || n == 0 || batch == 0)
        return CLGQA_OK;
    if (k == 0)
        return clgqa_fail(CLGQA_ERR_INVALID_ARG, "clgqa_sgemm_strided_batched: k must be positive");
    CLBlastStatusCode status = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a.mem, a.offset, lda,
        stride_a, b.mem, b.offset, ldb, stride_b, beta, c.mem, c.offset, ldc, stride_c, batch,
        &rt->queue,
        clgqa_profile_slot(rt, "gemm", 2.0 * (double)m * (double)n * (double)k * (double)batch));
    return check_clblast(status, "CLBlastSgemmStridedBatched", m, n, k);
}

clgqa_status clgqa_linear_forward(clgqa_runtime *rt, clgqa_view y, clgqa_view x, clgqa_view weight,
                                  clgqa_view bias, size_t rows, size_t in, size_t out) {
    /* y[rows, out] = x[rows, in] * W[out, in]^T */
    CLGQA_TRY(clgqa_sgemm(rt, 0, 1, rows, out, in, 1.0f, x, in, weight, in, 0.0f, y, out));
    if (bias.mem)
        CLGQA_TRY(clgqa_bias_add(rt, y, bias, rows, out));
    return CLGQA_OK;
}

clgqa_status clgqa_linear_backward(clgqa_runtime *rt, clgqa_view dx, clgqa_view dweight,
                                   clgqa_view dbias, clgqa_view dy, clgqa_view x,
                                   clgqa_view weight, size_t rows, size_t in, size_t out) {
    /* dx[rows, in] += dy[rows, out] * W[out, in] */
    if (dx.mem)
        CLGQA_TRY(clgqa_sgemm(rt, 0, 0, rows, in, out, 1.0f, dy, out, weight, in, 1.0f, dx, in));
    /* dW[out, in] += dy^T[out, rows] * x[rows, in] */
    CLGQA_TRY(clgqa_sgemm(rt, 1, 0, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dweight, in));
    if (dbias.mem)
        CLGQA_TRY(clgqa_bias_backward(rt, dbias, dy, rows, out));
    return CLGQA_OK;
}
