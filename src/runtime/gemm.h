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
 * matrices (A stored M x K when !trans_a, K x M when trans_a).
 * The product goes to CLBlast as it is given (row-major) or as the same
 * product of the transposes in column-major, C^T = op(B)^T op(A)^T,
 * whichever makes CLBlast's indirect kernel copy less (docs/design.md, "GEMMs
 * without copies"): with CLBlast's usual GEMMK=0 kernels that is
 * column-major, whose C the kernel writes in place. */
clgqa_status clgqa_sgemm(clgqa_runtime *rt, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, clgqa_view a, size_t lda, clgqa_view b,
                         size_t ldb, float beta, clgqa_view c, size_t ldc);

/* ---- operands CLBlast reads in place ----
 * CLBlast's indirect kernel reads an operand where it is only at offset 0
 * of its buffer, with its leading dimension equal to its tile-multiple size
 * and in the layout the kernel wants (docs/design.md). Offset 0 is had
 * without moving anything by a sub-buffer starting at the operand: a
 * caller registers the regions its products read and write once (the
 * model: its activations, transposed weights, weights and gradients, at
 * creation), and every product whose operand lies inside a registered
 * region reaches it through that region's sub-buffer. */

/* The alignment, in floats, a region's start needs for a sub-buffer
 * (CL_DEVICE_MEM_BASE_ADDR_ALIGN, at least 16 floats). */
size_t clgqa_gemm_operand_alignment(const clgqa_runtime *rt);
/* Registers `floats` floats at `region` as a home of operands: a sub-buffer
 * from there (none needed at offset 0; none made when the start is not
 * aligned: such operands are copied as before). */
clgqa_status clgqa_gemm_operand_region(clgqa_runtime *rt, clgqa_view region, size_t floats);
/* Releases the sub-buffers of every region registered in `buffer` (before
 * the buffer is released). */
void clgqa_gemm_operand_regions_release(clgqa_runtime *rt, cl_mem buffer);

/* The indirect kernel's tiles on this device, probed from CLBlast as its
 * parameters stand (tuning files applied): it computes C in m x n tiles,
 * k rows of the reduction at a time (MWG, NWG, KWG * KREG of its database),
 * and `rows`, a multiple of all three, is what a caller pads a row count
 * to so that a product over it needs no padding. 1s when no layout lets
 * CLBlast read its operands in place. Probed once per runtime. */
typedef struct clgqa_gemm_tiles {
    size_t m, n, k, rows;
} clgqa_gemm_tiles;
clgqa_status clgqa_gemm_tiles_of(clgqa_runtime *rt, clgqa_gemm_tiles *out);

/* ---- split-K: products whose output does not fill the device ----
 * C[M,N] = A^T B with A [K, M] and B [K, N] (a weight gradient, K the
 * rows of a batch) is computed as `chunks` partial products over
 * consecutive row blocks of K, summed afterwards by the caller in chunk
 * order (the model adds them in its column-sum finish): deterministic, and
 * bit for bit the same run to run with the same chunks on the same device. */

/* The chunks for such a product, decided once (the model, at creation, for
 * its largest batch): the runtime option gemm_split when set (1: none);
 * else, on GPU device classes (clgqa_runtime_choose_paths), 1 unless CLBlast runs the product on its indirect kernel with fewer
 * output tiles than 2 work-groups per compute unit and M and N are tile
 * multiples (the chunks then run as one batched call that copies nothing),
 * then enough chunks of at least 4 k-tiles for that many (at most 64), the
 * count in the next quarter that pads K least. */
clgqa_status clgqa_gemm_split_chunks(clgqa_runtime *rt, size_t m, size_t n, size_t k,
                                     size_t *chunks);
/* The same decision from its inputs: tiles, compute units, whether the
 * product runs on the indirect kernel, and the forced count (0: auto). */
size_t clgqa_gemm_split_plan(const clgqa_gemm_tiles *tiles, size_t compute_units,
                             int indirect, size_t forced, size_t m, size_t n, size_t k);
/* The rows of each chunk: ceil(k / chunks) rounded up to the k tile. The
 * operands must hold chunks * chunk_rows rows, those past K zero in A or B. */
size_t clgqa_gemm_chunk_rows(const clgqa_gemm_tiles *tiles, size_t k, size_t chunks);
/* partials[s] [M,N] (row stride N, one after another) = A_s^T B_s for the
 * row blocks s < chunks of clgqa_gemm_chunk_rows(k, chunks) rows of A [.., M]
 * (row stride lda) and B [.., N] (ldb). One strided-batched CLBlast call
 * (the chunks run on the kernel the whole product would: the indirect one
 * for a product that large), or one call per chunk where CLBlast would
 * have to copy an operand (its batched call would allocate). */
clgqa_status clgqa_sgemm_split(clgqa_runtime *rt, size_t m, size_t n, size_t k, size_t chunks,
                               clgqa_view a, size_t lda, clgqa_view b, size_t ldb,
                               clgqa_view partials);

#endif
