/* sched.h: pipeline-parallel schedules, tensor-free: which op each pipeline rank runs,
 * in what order.
 *
 * The model is cut into `pieces` consecutive pieces (virtual stages); a micro-batch
 * passes through piece 0, 1, ..., pieces-1 forward and back in reverse. Each rank
 * holds one or more pieces (its chunks). Ops: F (forward of one micro-batch on one
 * piece), B (backward: input gradient; the full backward when the schedule does not
 * split W), W (weight gradient; only when split_w).
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
 * one overlapped "F&B" pair: the first op of the pair has pair_next set and the next op
 * in the rank's list is its partner.
 *
 * Dependencies every schedule respects (checked by tests):
 *   F(m, p) after F(m, p-1); B(m, p) after F(m, p) and B(m, p+1) (B(m, last) after
 *   F(m, last)); W(m, p) after B(m, p).
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
};

struct sched {
    enum sched_kind kind;
    int pp, microbatches, vpp;
    int pieces;
    bool split_w;             /* W ops are separate (zb1p, dualpipe, dualpipev) */
    int *nops;                /* per rank */
    struct sched_op **ops;    /* per rank, in execution order; owned */
};

/* NULL when (kind, pp, microbatches, vpp) can be scheduled, else a static one-line
 * reason naming the rule ("dualpipe needs an even pp"). kind SCHED_NONE is invalid. */
const char *sched_check(enum sched_kind kind, int pp, int microbatches, int vpp);

/* 0, -EINVAL (sched_check fails), -ENOMEM. */
int sched_create(struct sched **out, enum sched_kind kind, int pp, int microbatches, int vpp);
void sched_free(struct sched *s);                         /* NULL is a no-op */

int sched_rank(const struct sched *s, int mb, int piece); /* the rank that runs it */

/* Ideal run for checking schedules against published formulas: every F takes f_s, every
 * B b_s (input gradient only when split_w, else the full backward), every W w_s, an
 * F&B pair fb_s; no communication; each rank runs its list in order, an op as soon as
 * its dependencies are done. */
struct sched_ideal {
    double makespan_s;
    double *busy_s;           /* per rank: time running ops (a pair counts fb_s) */
    double *bubble_s;         /* per rank: makespan - busy */
    double *peak_act;         /* per rank: most micro-batch activations held at once, in
                               * units of one micro-batch through 1/pp of the model
                               * (a piece's activation counts pp/pieces); held from
                               * the start of F to the end of B */
};
int sched_ideal_run(const struct sched *s, double f_s, double b_s, double w_s, double fb_s,
                    struct sched_ideal *out);              /* 0, -EINVAL, -ENOMEM */
void sched_ideal_free(struct sched_ideal *r);

#endif
