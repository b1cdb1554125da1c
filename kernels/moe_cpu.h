/* moe_cpu.h: the fp32 host backend of moe.h, the oracle the other backends are tested
 * against. Elements are float (elem_bytes 4); "backend memory" is host memory. The
 * expert and gate GEMMs go through CBLAS (OpenBLAS, threaded inside each GEMM); the
 * rest is plain loops. Same inputs, same bits, for a fixed OpenBLAS build and thread
 * count; a GEMM's result depends only on its own operands, so running any subset of
 * the groups, from any buffer, gives the bits the whole layer gives them.
 *
 * ctx_create allocates one block and touches every page of it, so no stage allocates
 * or page-faults. Its size is, in floats, about
 *   T (4 E + 5 K + 4 K H + S H + 2 S Fs) + 2 R F + 2 max(R F, S T Fs)
 * (T = max_tokens, R = max_rows, Fs = moe_shared_ffn; -ENOMEM above 2^60 bytes).
 * Stages are not thread-safe on one ctx. dtopk_w's dot products accumulate in double.
 */
#ifndef MOESIM_MOE_CPU_H
#define MOESIM_MOE_CPU_H

#include "moe.h"

#define MOE_CPU_MAX_THREADS 64

/* The backend's table; static storage, never NULL. */
const struct moe_ops *moe_cpu_ops(void);

/* Runs the experts and shared stages of a ctx from moe_cpu_ops() on `threads` pthreads
 * (1, the default: on the caller, each GEMM threaded inside OpenBLAS). With n > 1 the
 * n pthreads (the caller's included) claim the expert groups one at a time, in order,
 * and the shared experts are dealt round-robin.
 * That pays where groups are small (measured: 256 experts x 64 rows, 2 cores, about
 * 1.5x) but only with OpenBLAS on one thread (openblas_set_num_threads(1), a
 * process-wide setting that is the caller's to make); otherwise OpenBLAS runs one
 * GEMM at a time. A backward whose groups name an expert twice runs on the caller.
 * Bits are those of threads = 1 under the same OpenBLAS setting.
 * The per-token loops of route, permute, combine and their backward are cut into n
 * ranges of about T / n tokens, one per pthread. The forward gate GEMM runs in blocks of 128 tokens, fixed
 * by token index (a row's bits in OpenBLAS may depend on its place in the GEMM's
 * tiles), each block routed by the thread that computed it; the backward's two gate
 * GEMMs stay whole, on two threads when n > 1. 0 or -EINVAL. */
int moe_cpu_set_threads(struct moe_ctx *ctx, int threads);

#endif
