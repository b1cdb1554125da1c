/* moe_cuda.h: the CUDA backend of moe.h. Elements are bf16 (elem_bytes 2), every sum
 * is accumulated in fp32 (GEMMs: cuBLAS with CUBLAS_COMPUTE_32F and reduced-precision
 * split-K reductions disallowed); weight gradients are fp32 main_grads (moe.h), added
 * to by the weight-gradient GEMMs themselves (fp32 C, beta = 1: one fp32 rounding per
 * backward, none to bf16); routing arrays are fp32 / int32; "backend memory" is
 * device memory of the current device. A C header without CUDA types, so C code
 * (tests, moeprof) includes it; the implementation is kernels/ *.cu.
 *
 * Streams: a ctx owns one CUDA stream, created blocking, so it is ordered with the
 * legacy default stream on which alloc, upload, download and moe_cuda_copy run:
 * a download after a stage sees its result without an explicit sync. Stages are
 * asynchronous on that stream, except route, which waits once for the per-expert
 * counts, offsets and aux loss (2E + 3 words, the only device-to-host copy of a
 * layer) and fills host_counts, host_offsets and aux_loss, and the experts stages,
 * whose grouped GEMMs wait on the host when it runs 8 grouped calls ahead of the
 * device (every host wait: docs/KERNELS.md). A ctx also owns a cuBLAS handle with its
 * own 32 MiB workspace; two ctxs may run concurrently, but two whose backwards add
 * into the same weight gradient must be bound to one moe_grad_sync (moe.h), which
 * chains their accumulating stages through an event.
 *
 * Expert GEMMs: MOE_CUDA_GEMM_GROUPED (default) runs each phase of an experts stage
 * (gate+up, down; backward: dW2 and dh, then dW1 dW3 dx, then dx += ...) as one
 * cublasGemmGroupedBatchedEx over all groups; MOE_CUDA_GEMM_LOOP runs one
 * cublasGemmEx per group and matrix. Both give the same numbers up to rounding. Where
 * cuBLAS answers NOT_SUPPORTED to the grouped call, one line on stderr says so and
 * that ctx loops from then on.
 *
 * Determinism: same inputs, same device, same bits. Nothing sums floats in an order
 * that depends on scheduling: reductions are fixed trees, per-expert counts use
 * integer atomics, sums over k run in slot order (moe.h), GEMMs are cuBLAS's (whose
 * results are reproducible for a fixed toolkit, architecture and SM count).
 * Splitting experts across ranks (moe_groups) gives the bits of the one-process run
 * in MOE_CUDA_GEMM_LOOP mode, where each expert's GEMMs are the same calls on the
 * same operands; in GROUPED mode cuBLAS picks one kernel per call from all its
 * problems, so a subset may round differently (same numbers within bf16 tolerance).
 *
 * Limits (else -EINVAL): hidden, ffn and shared_ffn multiples of 8 (rows are whole
 * 16-byte vectors), experts <= MOE_CUDA_MAX_EXPERTS, and every elem pointer handed to a stage
 * 16-byte aligned (alloc returns 256-byte aligned memory).
 * Errors: 0 or -EINVAL, -ENOMEM (device or pinned memory), -EIO (a CUDA or cuBLAS call
 * failed; one line on stderr names the call, file and line).
 */
#ifndef MOESIM_MOE_CUDA_H
#define MOESIM_MOE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The top-k kernel keeps a histogram of E ints in shared memory (32 KiB at most). */
#define MOE_CUDA_MAX_EXPERTS 8192

/* Devices visible to the CUDA runtime; 0 when there is none or no usable driver. */
int moe_cuda_device_count(void);

/* As moe_cuda_device_count; when it is 0 and why is not NULL, writes why (e.g.
 * "cudaGetDeviceCount: no CUDA-capable device is detected"), NUL-terminated. */
int moe_cuda_probe(char *why, size_t why_bytes);

/* The backend's table; static storage, never NULL. Its free() frees any pointer from
 * its alloc() or from moe_cuda_malloc(). */
const struct moe_ops *moe_cuda_ops(void);

enum moe_cuda_gemm { MOE_CUDA_GEMM_GROUPED = 0, MOE_CUDA_GEMM_LOOP = 1 };

/* How the experts stages of a ctx from moe_cuda_ops() run their GEMMs. 0 or -EINVAL. */
int moe_cuda_set_gemm(struct moe_ctx *ctx, enum moe_cuda_gemm mode);

/* Raw device memory, zeroed (fp32 bias, int32 buffers of a caller); free with
 * moe_cuda_ops()->free. 0, -EINVAL or -ENOMEM. */
int moe_cuda_malloc(void **out, size_t bytes);

/* bytes from src to dst, host or device either side (unified addressing); returns when
 * done, after all earlier work on every ctx stream. 0, -EINVAL or -EIO. */
int moe_cuda_copy(void *dst, const void *src, size_t bytes);

/* Zeroes bytes of device memory, ordered like moe_cuda_copy. 0, -EINVAL or -EIO. */
int moe_cuda_zero(void *dst, size_t bytes);

/* Waits for every stage queued on ctx. 0, -EINVAL or -EIO. */
int moe_cuda_sync(const struct moe_ctx *ctx);

/* ---- for benchmarks (tests/gpu_bench_moe.c) ---- */

/* The current device and its peaks. hbm_Bps = 2 x memory clock x bus width / 8 (double
 * data rate) from the device attributes, else a table by name; bf16_flops: dense bf16
 * tensor peak from a table by name (H100 SXM 989e12, ...), else SMs x clock x 4096
 * flop/clk on compute capability 9.x, else 0 (unknown). The *_src strings say which. */
struct moe_cuda_device {
    char name[256];
    int cc_major, cc_minor, sms;
    size_t l2_bytes, mem_bytes;
    double hbm_Bps, bf16_flops;
    const char *hbm_src, *flops_src;
};
int moe_cuda_device_info(struct moe_cuda_device *out);

/* n pairs of CUDA events recorded on a ctx's stream. record() marks event i (0..2n-1)
 * after the work queued so far; elapsed_s() waits for event b and gives the time
 * between a and b, in seconds (event resolution about 0.5 us). */
struct moe_cuda_timer;
int moe_cuda_timer_create(struct moe_cuda_timer **out, int n);
int moe_cuda_timer_record(struct moe_cuda_timer *t, const struct moe_ctx *ctx, int i);
int moe_cuda_timer_elapsed_s(struct moe_cuda_timer *t, int a, int b, double *s);
void moe_cuda_timer_free(struct moe_cuda_timer *t);                /* NULL is a no-op */

/* elems bf16 values uniform on [-scale, scale), a hash of (seed, index): same seed,
 * same values. Asynchronous on ctx's stream. */
int moe_cuda_fill_random(const struct moe_ctx *ctx, void *elems, size_t n, uint64_t seed,
                         float scale);

/* Overwrites bytes of scratch on ctx's stream, evicting the L2 cache (give it at least
 * twice l2_bytes), so that a timed kernel reads from HBM. */
int moe_cuda_flush_l2(const struct moe_ctx *ctx, void *scratch, size_t bytes);

/* Row-major bf16 C [m x n] = A [m x k] B [k x n], fp32 compute, on ctx's stream and
 * cuBLAS handle: the dense reference for the grouped expert GEMM. */
int moe_cuda_dense_gemm(struct moe_ctx *ctx, int m, int n, int k, const void *a,
                        const void *b, void *c);

/* One piece of route, asynchronous, for timing; the ctx must hold a route of the same
 * tokens (LOGITS: logits = x W_g; TOPK: scores, top-k, weights, counts and the aux
 * loss's device part; LAYOUT: offsets, slot_pos, perm_slot). Leaves host_* alone. */
enum moe_cuda_route_piece {
    MOE_CUDA_ROUTE_LOGITS,
    MOE_CUDA_ROUTE_TOPK,
    MOE_CUDA_ROUTE_LAYOUT,
};
int moe_cuda_route_piece(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                         int tokens, enum moe_cuda_route_piece piece);

#ifdef __cplusplus
}
#endif

#endif
