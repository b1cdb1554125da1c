/* moe_cuda_priv.cuh: what the .cu files of the CUDA backend share (C++, CUDA types):
 * the error macros, the ctx's private state, bf16 vector helpers for device code
 * (each .cu is its own device compilation unit, so device helpers live here as
 * static inline), and the stages each file defines for the ops table in moe_cuda.cu.
 *   gemm.cu      row-major bf16 GEMMs through cuBLAS, one by one or grouped
 *   gate.cu      route (gate GEMM, fused scores + top-k, aux loss) and route_bwd
 *   permute.cu   layout (offsets, stable grouping), permute, combine and backward
 *   expert.cu    SwiGLU experts (routed groups, shared), forward and backward
 *   moe_cuda.cu  ops table, ctx, memory, fp32 <-> bf16
 *   cuda_bench.cu  device peaks, timers, fills for the benchmark
 */
#ifndef MOESIM_MOE_CUDA_PRIV_CUH
#define MOESIM_MOE_CUDA_PRIV_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "moe.h"
}
#include "moe_cuda.h"
#include "moe_sync.h"

typedef __nv_bfloat16 bf16;

/* The only macros that change control flow: on failure, one line on stderr
 * ("file:line: call: error") and return -ENOMEM (out of memory) or -EIO. */
#define TRY_CUDA(call)                                                                   \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            return cuda_fail(e_, #call, __FILE__, __LINE__);                             \
    } while (0)
#define TRY_CUBLAS(call)                                                                 \
    do {                                                                                 \
        cublasStatus_t s_ = (call);                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return cublas_fail(s_, #call, __FILE__, __LINE__);                           \
    } while (0)

static inline int cuda_fail(cudaError_t e, const char *call, const char *file, int line)
{
    fprintf(stderr, "%s:%d: %s: %s\n", file, line, call, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

static inline int cublas_fail(cublasStatus_t s, const char *call, const char *file, int line)
{
    fprintf(stderr, "%s:%d: %s: %s\n", file, line, call, cublasGetStatusString(s));
    return s == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
}

/* ---- gemm.cu ---- */

/* One row-major GEMM, C [m x n] = op(A) op(B) + beta C, bf16 A and B, fp32 compute,
 * C bf16 or (c32) fp32: a weight gradient's main_grad (moe.h), accumulated with
 * beta = 1 and rounded once per call to fp32, never to bf16.
 * A is stored [m x k] with row stride lda, or (ta) [k x m]; B [k x n] with ldb, or
 * (tb) [n x k]; C [m x n] with ldc. */
struct gemm_cuda_op {
    bool ta, tb;
    int m, n, k;
    const void *a;
    int lda;
    const void *b;
    int ldb;
    void *c;
    int ldc;
    float beta;
    bool c32;
};

/* A batch of independent GEMMs (no two C overlap), run in the order added. */
struct gemm_cuda;
int gemm_cuda_create(struct gemm_cuda **out, int cap);    /* cap >= 1: ops per batch */
void gemm_cuda_free(struct gemm_cuda *g);                  /* NULL is a no-op */
int gemm_cuda_room(const struct gemm_cuda *g);             /* ops that still fit */
void gemm_cuda_reset(struct gemm_cuda *g);                 /* drops the queued ops */
/* Queues op; m or n = 0, or k = 0 with beta = 1 (C unchanged), is dropped; k = 0 with
 * beta != 1 is -EINVAL. -ENOSPC when full. */
int gemm_cuda_add(struct gemm_cuda *g, const struct gemm_cuda_op *op);
/* Runs the queued ops on h's stream s and empties the batch (also on failure).
 * GROUPED: one cublasGemmGroupedBatchedEx per C type present (bf16 C first, then
 * fp32 C); consecutive ops of equal shape share a cuBLAS group; its device pointer
 * arrays go through a pinned ring of GEMM_CUDA_SLOTS slots, each reused only after
 * the event of its last copy: the host waits there (cudaEventSynchronize) when it is
 * GEMM_CUDA_SLOTS grouped calls ahead of the device. Where cuBLAS refuses the grouped
 * call for a C type it says so once on stderr and that type loops from then on. */
int gemm_cuda_run(struct gemm_cuda *g, cublasHandle_t h, cudaStream_t s,
                  enum moe_cuda_gemm mode);
/* One op now through cublasGemmEx, C of the op's type. */
int gemm_cuda_one(cublasHandle_t h, const struct gemm_cuda_op *op);

/* ---- the ctx's private state (moe_cuda.cu creates it) ---- */

#define MOE_CUDA_MAGIC 0x6d6f6563u       /* "moec": a ctx of this backend */
#define MOE_CUDA_BLAS_WS ((size_t)32 << 20) /* cuBLAS workspace: 32 MiB (Hopper guidance) */
#define MOE_CUDA_AUX_CHUNKS 128          /* token chunks of the aux-loss column sums */

struct moe_cuda_priv {
    uint32_t magic;
    cudaStream_t stream;
    cublasHandle_t blas;
    enum moe_cuda_gemm gemm_mode;
    struct gemm_cuda *gemm;          /* expert batches, cap 3 E */
    int *seen;                       /* host [E]: batch stamp of each expert's last op */
    int stamp;                       /* current batch stamp, >= 1 */
    void *block;                     /* the one device allocation behind every buffer */
    size_t block_bytes;
    /* device scratch, inside block */
    void *blas_ws;                   /* MOE_CUDA_BLAS_WS bytes */
    bf16 *s1, *s2;                   /* [srows x F]: h or da; dh or db */
    float *ztok;                     /* [max_tokens]: sum_e s_t,e */
    double *aux_part;                /* [MOE_CUDA_AUX_CHUNKS x E]: partial sum_t s / Z */
    bf16 *dl16;                      /* [max_tokens x E]: dlogits in bf16 for the GEMMs */
    uint32_t *sort_keys;             /* [T K]: sorted expert ids (unused output) */
    int32_t *iota;                   /* [T K]: 0, 1, 2, ... (slot ids to sort) */
    void *sort_tmp;                  /* CUB radix sort scratch */
    size_t sort_tmp_bytes;
    int32_t *route_out;              /* [2 E + 3]: counts, 0, offsets (E + 1), aux bits */
    int32_t *route_host;             /* pinned copy of route_out */
};

static inline struct moe_cuda_priv *cuda_priv(const struct moe_ctx *ctx)
{
    return (struct moe_cuda_priv *)ctx->priv;
}

/* A ctx of this backend (checked before any stage touches priv). */
static inline bool cuda_ctx_ok(const struct moe_ctx *ctx)
{
    return ctx && ctx->priv && cuda_priv(ctx)->magic == MOE_CUDA_MAGIC;
}

static inline bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* Blocks of `threads` covering n items, at least 1. */
static inline unsigned blocks_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return b ? (unsigned)b : 1u;
}

/* ---- bf16 vectors of 8 (16 bytes), fp32 in registers ---- */

union bf16x8 {
    uint4 u;
    __nv_bfloat162 h[4];
};

static __device__ __forceinline__ void load8(const bf16 *p, float f[8])
{
    bf16x8 v;
    v.u = *(const uint4 *)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __bfloat1622float2(v.h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

static __device__ __forceinline__ void store8(bf16 *p, const float f[8])
{
    bf16x8 v;
#pragma unroll
    for (int i = 0; i < 4; i++)
        v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *(uint4 *)p = v.u;
}

/* ---- warp reductions: xor butterflies, so every lane ends with the same bits
 * (each step adds the same two values, in either order) ---- */

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The larger of a and b, NaN when either is, +0 over -0: the same value whichever
 * comes first (up to a NaN's payload). fmaxf would drop a NaN; moe.h wants it kept. */
static __device__ __forceinline__ float max_nan(float a, float b)
{
    return isnan(a) || a > b || (a == b && !signbit(a)) ? a : b;
}

/* Warp maximum by max_nan: NaN on every lane when any lane holds one. */
static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- stages (the ops table in moe_cuda.cu) ---- */

/* gate.cu */
int gate_cuda_route(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                    int tokens);
int gate_cuda_route_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                        void *dx, struct moe_weights *dw);

/* permute.cu */
int permute_cuda_key_bits(int experts);   /* bits of ids 0..E-1 (>= 1): the sort's width */
int permute_cuda_layout(struct moe_ctx *ctx, int tokens);   /* offsets, perm_slot, slot_pos */
int permute_cuda_fwd(const struct moe_ctx *ctx, const void *x, void *xp);
int permute_cuda_combine(const struct moe_ctx *ctx, const void *yp, void *out);
int permute_cuda_combine_bwd(struct moe_ctx *ctx, const void *dout, const void *yp,
                             void *dyp);
int permute_cuda_bwd(const struct moe_ctx *ctx, const void *dxp, void *dx);

/* expert.cu */
int expert_cuda_fwd(struct moe_ctx *ctx, const struct moe_weights *w,
                    const struct moe_groups *g, const void *x, void *y);
int expert_cuda_bwd(struct moe_ctx *ctx, const struct moe_weights *w,
                    const struct moe_groups *g, const void *x, const void *dy, void *dx,
                    struct moe_weights *dw);
int expert_cuda_shared_fwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                           void *out);
int expert_cuda_shared_bwd(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                           const void *dout, void *dx, struct moe_weights *dw);

#endif
