/* sched.h: pipeline-parallel schedules, tensor-free: which op each pipeline rank runs,
 * in what order.
 *
 * The model is cut into `pieces` consecutive pieces (virtual stages); a micro-batch
 * passes through piece 0, 1, ..., pieces-1 forward and back in reverse. Each rank
 * holds one or more pieces (its chunks). Ops: F (forward of one micro-batch on one
 * piece), B (backward: the input gradient, or with `full` the full backward, input and
 * weight gradient in one op), W (weight gradient of a B that is not full; only when
 * split_w). Without split_w every B is full; zb1p splits every B; dualpipe/dualpipev
 * split only the B's the reference runs "zero bubble" (enable_zb), the others are full.
 *   gpipe, 1f1b          pieces = pp, piece r on rank r
 *   interleaved-1f1b     pieces = pp * vpp, piece p on rank p % pp (Narayanan et al. 2021)
 *   zb1p                 pieces = pp, ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline
 *                        Parallelism"): 1F1B with W split off and deferred
 *   dualpipe             pieces = pp; two model copies: micro-batches 0..M/2-1 enter at
 *                        rank 0 (piece p on rank p), M/2..M-1 at rank pp-1 (piece p on
 *                        rank pp-1-p); DeepSeek-V3 report sec. 3.2.1
 *   dualpipev            pieces = 2 * pp in a V: piece p on rank p for p < pp, else
 *                        on rank 2pp-1-p (DeepSeek's "cut-in-half" DualPipe)
 * Pairs: in dualpipe/dualpipev, an F and a B of different micro-batches may be run as
 * one overlapped "F&B" pair: the first op of the pair (always the F) has pair_next set
 * and the next op in the rank's list is its partner (always a full B, of the other
 * phase: the other direction in dualpipe, the other arm of the V in dualpipev).
 *
 * Dependencies every schedule respects (checked by tests):
 *   F(m, p) after F(m, p-1); B(m, p) after F(m, p) and B(m, p+1) (B(m, last) after
 *   F(m, last)); W(m, p) after B(m, p). A full B releases B(m, p-1) at its end.
 * Every rank's list holds each F and B of its pieces once and a W for each B not full.
 */
#ifndef MOESIM_SCHED_H
#define MOESIM_SCHED_H

#include <stdbool.h>

#include "config.h"

enum sched_op_kind { SCHED_F, SCHED_B, SCHED_W };

struct sched_op {
    enum sched_op_kind kind;
    int mb;                   /* micro-batch, 0..microbatches-1 */
    int piece;                /* 0..pieces-1 */
    bool pair_next;           /* runs overlapped with the next op of the list (F&B) */
    bool full;                /* B only: full backward (input + weight gradient), no W */
};

struct sched {
    enum sched_kind kind;
    int pp, microbatches, vpp;
    int pieces;
    bool split_w;             /* some B's are not full and have W ops (zb1p: all; dualpipe,
                               * dualpipev: some); false: every B is full */
    int *nops;                /* per rank */
    struct sched_op **ops;    /* per rank, in execution order; owned */
};

/* NULL when (kind, pp, microbatches, vpp) can be scheduled, else a static one-line
 * reason naming the rule ("dualpipe needs an even pp"). kind SCHED_NONE is invalid. */
const char *sched_check(enum sched_kind kind, int pp, int microbatches, int vpp);

/* 0, -EINVAL (sched_check fails, or out is NULL), -ENOMEM; *out is written only on
 * success and owned by the caller. O(pp * microbatches * vpp) time and memory. */
int sched_create(struct sched **out, enum sched_kind kind, int pp, int microbatches, int vpp);
void sched_free(struct sched *s);                         /* NULL is a no-op */

/* The rank that runs (mb, piece), or -EINVAL when either is out of range. */
int sched_rank(const struct sched *s, int mb, int piece);

/* Ideal run for checking schedules against published formulas: every F takes f_s, a B
 * that is not full b_s (input gradient), a W w_s, a full B b_s + w_s (gpipe's backward
 * is b_s + w_s: pass w_s = 0 to give it b_s), an F&B pair fb_s (both ops start and end
 * together); no communication; each rank runs its list in order, an op (a pair: both
 * ops) as soon as the rank is free and its dependencies are done. Times >= 0, finite. */
struct sched_ideal {
    double makespan_s;        /* last end over all ranks; every rank starts at t = 0 */
    double *busy_s;           /* per rank: time running ops (a pair counts fb_s) */
    double *bubble_s;         /* per rank: makespan - busy */
    double *peak_act;         /* per rank: most micro-batch activations held at once, in
                               * units of one micro-batch through 1/pp of the model
                               * (a piece's activation counts pp/pieces); held from
                               * the start of F to the end of B */
    int nranks;               /* = pp; length of the per-rank arrays */
    double **start_s, **end_s;/* per rank, per op of s->ops[r]: when it ran */
};
/* 0; -EINVAL: NULL or a bad time, an op out of range, on the wrong rank, run twice, a
 * W or a B not full without split_w, a pair_next with no partner or chained, an op
 * missing, or lists that wait on each other (deadlock); -ENOMEM. The caller frees *out
 * (sched_ideal_free); on error it is left zeroed. O(ops * pp) time worst case. */
int sched_ideal_run(const struct sched *s, double f_s, double b_s, double w_s, double fb_s,
                    struct sched_ideal *out);
void sched_ideal_free(struct sched_ideal *r);             /* frees the arrays; NULL ok */

#endif
