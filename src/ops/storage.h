/* Activation storage, prepended to every program after the prelude (and
 * not flattened with it, so the build's defines reach it): a family built
 * with -DCLGQA_HALF keeps its activation operands (each op's comment in
 * ops.h names them) in half, read with vload_half and written with
 * vstore_half_rte (round to nearest even, fp16's unit roundoff 2^-11),
 * and computes in float all the same; without it they are float and the
 * macros are the plain loads and stores. Both are core OpenCL C 1.2: a
 * half pointer needs no cl_khr_fp16, only arithmetic on half would.
 * docs/design.md, "Mixed precision", says which tensors are activations. */
#ifdef CLGQA_HALF
#define ACT half
#define act_load(p, i) vload_half((i), (p))
#define act_store(v, p, i) vstore_half_rte((v), (i), (p))
#define act_store4(v, p, q) vstore_half4_rte((v), (q), (p))
#else
#define ACT float
#define act_load(p, i) ((p)[i])
#define act_store(v, p, i) ((p)[i] = (v))
#define act_store4(v, p, q) (((__global float4 *)(p))[q] = (v))
#endif
