/* eplayer.h: one rank's share of an expert-parallel MoE layer, forward and backward,
 * on a backend of kernels/moe.h with the all-to-alls of exchange.h between its stages.
 *
 * Each rank routes its own T tokens with the real gate and top-k, sends each token's
 * rows to the ranks holding its experts (layout.h: slots and replicas), runs the FFNs
 * of its slots on the rows it received, sends the outputs back, and sums each
 * token's K outputs with its routing weights; then the shared experts. The backward
 * mirrors it with its own two all-to-alls and accumulates dx, and the gradients of
 * the gate, of the experts this rank holds and of the shared experts.
 *
 * Equality with the one-process layer (moe_forward / moe_backward on the ranks'
 * tokens concatenated in rank order): an expert's rank receives its rows source by
 * source and regroups them slot by slot, so an expert with one slot sees its rows in
 * the global token order, in one GEMM, as in one process; the per-token stages read
 * the same values in the same order. Where OpenBLAS gives a row the same bits in any
 * GEMM (the CPU backend's gate GEMM runs in blocks of 128 tokens: T a multiple of
 * 128), outputs, expert gradients and dx match bit for bit; the gate and shared
 * gradients are per-rank partial sums (their sum over ranks is the one-process
 * gradient up to rounding). The aux loss (aux_alpha > 0) is the group's: with the
 * count exchange, an MPI_Allreduce gives every rank the group's per-expert counts and
 * sums of normalized scores, hence the loss of the whole batch (epl_aux_loss) and the
 * gradient route_bwd adds for this rank's tokens (moe.h: aux_counts, aux_tokens).
 *
 * Send order: the rank rewrites ctx->slot_pos after route so that permute writes the
 * rows straight into the dispatch order (destination rank, then its slots, then
 * token order); the per-token stages (permute, combine and their backward) read
 * slot_pos only, so their results do not change. The routing arrays go through host
 * copies (epl_io.copy), so backend memory may be a device's.
 *
 * Memory: a source-side ctx for the T tokens, and the expert side sized from the
 * counts: after the count exchange a rank knows the R rows it will receive, and its
 * 5 row buffers of R x H elems and its experts ctx (activations 2 R F elems) grow to
 * hold them (to R + R / 8, at most ranks T K, the most a rank can receive), kept
 * across iterations. They start at T K rows, a balanced layer's, with the same eighth.
 */
#ifndef MOEPROF_EPLAYER_H
#define MOEPROF_EPLAYER_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "moe.h"
#include "timer.h"

struct lay;

/* How the layer reaches its backend's memory and moves rows between ranks. */
struct epl_io {
    /* bytes from src to dst, host or backend memory either side; done on return. */
    int (*copy)(void *dst, const void *src, size_t bytes);
    /* The rows all-to-all (exchange.h's xch_rows contract) on backend memory. */
    int (*rows)(void *arg, const void *send, const int32_t *send_rows, void *recv,
                const int32_t *recv_rows);
    void *rows_arg;
    /* Waits for the backend's queued work, before a phase's end is read; NULL when the
     * stages are synchronous (CPU). */
    int (*sync)(void);
    /* Device timing (gpu.h): mark(mark_arg, k) records device event k = 2 i at the
     * start and 2 i + 1 at the end of the timer's record i, in place of a sync; the
     * caller rewrites the records' times from the events after the iteration. NULL:
     * the host clock (after sync). */
    int (*mark)(void *arg, size_t k);
    void *mark_arg;
};

struct epl_spec {
    struct moe_cfg cfg;          /* aux_alpha > 0: the group's aux loss (above) */
    const struct lay *lay;       /* borrowed for the layer's life; lay->ranks = comm size */
    MPI_Comm comm;               /* the EP group, borrowed */
    int tokens;                  /* T per rank, >= 0 */
    uint64_t seed;               /* tensors.h: the weights */
    int layer;
    const float *bias;           /* [E] selection bias (moe.h), copied; NULL: none */
    const struct epl_io *io;     /* copied; NULL: host memory, rows over MPI (exchange.h) */
};

struct epl;                      /* opaque */

/* 0, -EINVAL (bad spec), -ENOMEM, -EIO (MPI), or the backend's error. */
int epl_create(struct epl **out, const struct moe_ops *ops, const struct epl_spec *s);
void epl_free(struct epl *l);                    /* NULL is a no-op */

/* x [T x H] -> out [T x H] (overwritten). t: the timer (NULL: untimed). Collective
 * over the group. Borrows everything. */
int epl_forward(struct epl *l, const void *x, void *out, struct tmr *t);

/* After epl_forward on the same x: dx += dL/dx, gradients += (epl_grads) for
 * L = sum(out * dout). Collective. */
int epl_backward(struct epl *l, const void *x, const void *dout, void *dx, struct tmr *t);

/* The selection bias (moe.h), [E] host, copied; NULL: none. 0, -ENOMEM, or the
 * backend's error. */
int epl_set_bias(struct epl *l, const float *bias);

/* Forced routing (force.h) for the forwards that follow, on any backend (the scores
 * come to the host, the forced arrays go back through epl_io.copy): idx [T x K]
 * (copied), or NULL for the gate's own top-k again. 0; -ENOMEM; -EINVAL (an expert id out of range or
 * twice in a token: checked at the next forward, which then fails). */
int epl_force(struct epl *l, const int32_t *idx);

/* The weights and gradients: gate and shared experts on every rank; expert e's only
 * where this rank holds a slot of e (NULL elsewhere). Owned by the layer. */
const struct moe_weights *epl_weights(const struct epl *l);
struct moe_weights *epl_grads(struct epl *l);
void epl_zero_grads(struct epl *l);

/* After a forward: expert e's token-expert assignments from this rank ([E] host) and
 * the rows this rank sent to each rank of the group ([ranks] host). */
const int32_t *epl_expert_counts(const struct epl *l);
const int32_t *epl_send_rows(const struct epl *l);

/* After a forward: L_aux of the group's batch (0 when aux_alpha = 0), the same on
 * every rank of the group. */
float epl_aux_loss(const struct epl *l);

/* The expert side's rows: peak, the most one forward received so far; cap, what the
 * buffers hold now (>= peak); worst, ranks T K; cap_bytes, the bytes of the row buffers
 * and the experts' saved activations at cap ((5 H + 2 F) elems a row; a backend's own
 * scratch is not counted). */
struct epl_rows {
    int peak, cap, worst;
    double cap_bytes;
};
struct epl_rows epl_rows(const struct epl *l);

#endif
