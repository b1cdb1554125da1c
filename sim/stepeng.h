/* stepeng.h: the inside of one step_run call, shared by step.c (the set-up, the run:
 * lanes, streams, the event loop, the fabric's hooks; the public API), steptab.c (the
 * tables: op times, each MoE layer's routing and all-to-alls, sends, DP reduces),
 * stepgraph.c (the sub-op graph from the schedule) and stepres.c (the step_result from
 * a finished run). Private to those four files; the API is step.h.
 *
 * Order of one call (step.c): set up the engine, steptab_build, steptab_sends,
 * stepgraph_build, the run, stepres_fill, free. Every array below is owned by the
 * engine and freed by step.c's eng_free.
 */
#ifndef MOESIM_STEPENG_H
#define MOESIM_STEPENG_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "compute.h"
#include "model.h"
#include "rtrace.h"
#include "step.h"
#include "traffic.h"

struct coll_memo;
struct des;
struct fabric;
struct limits_progress;
struct sched;
struct topo;

#define BF16_BYTES 2.0

/* The largest of v[0 .. ep): a lane's time from its GPUs' (0 for none). */
static inline double group_max(const double *v, int ep)
{
    double m = 0;
    for (int j = 0; j < ep; j++)
        m = fmax(m, v[j]);
    return m;
}

/* A growable int array (stepgraph.c appends). */
struct ivec {
    int *v;
    int n, cap;
};

/* What a sub-op does to its lane's activation memory when it starts (ADD: the first
 * sub-op of an F) or ends (SUB: the last compute sub-op of a B). */
enum { ACT_NONE, ACT_ADD, ACT_SUB };

struct eng;

struct sop {
    struct eng *eng;          /* for the event callback */
    double work_s;            /* compute: at full speed; others: duration */
    double t0_s, t1_s;
    int lane, mb, piece, layer;
    int nwait;                /* dependencies not yet done */
    int succ0, nsucc;         /* into eng.succ */
    uint8_t stream, what, kind, act;
    uint8_t queued_comm;      /* a communication sub-op that runs on the compute stream */
    uint8_t filling;          /* fill_w: running ahead of its queue place; yields (try_start) */
    int stage;                /* its op's stage (enqueue): 0 but in a staged pair */
};

struct lane {
    int rank, group;
    struct ivec cq, mq;       /* compute and communication queues, in order */
    int ch, mh;               /* their heads */
    struct ivec wq;           /* fill_w: the weight-gradient sub-ops of cq, in cq order */
    int wh;                   /* its first entry not known to have started */
    int comp_run, comm_run;   /* running sub-op or -1 */
    double comp_left_s, comp_rate, comp_since_s;
    uint64_t comp_ev;
    double last_s, busy_comp_s, busy_comm_s, exposed_s, idle_s;
    double *act_cur, *act_peak; /* per GPU of the lane */
};

/* Per MoE layer and EP group: per GPU of the group, routed-expert times and
 * token-expert pairs received; lane values are the maxima. */
struct moe_tab {
    double *f_s, *b_s, *w_s, *pairs;     /* groups * ep */
    double *disp_s, *comb_s, *bdisp_s, *bcomb_s; /* groups: a2a durations */
    int fab[4];               /* with a fabric: the collectives of disp_s .. bcomb_s */
};

struct eng {
    const struct config *c;
    const struct sched *s;
    struct model m;
    struct compute *cm;
    struct topo *stage_topo, *full_topo;
    struct coll_memo *memo;
    struct fabric *fab;       /* NULL unless stages can meet on a leaf link (fabric.h) */
    int *reduce_fab;          /* with a fabric: per piece, its DP reduce's collective */
    double demand, dropped;   /* token-expert assignments over the MoE layers (capacity) */
    struct step_layer *layer; /* per model layer */
    struct rtrace trace;      /* distribution = trace: one stage's routing per MoE layer */
    bool have_trace;
    struct rtrace drawn;      /* STEP_KEEP_ROUTING: the routing drawn, per MoE layer */
    bool keep_comm;           /* STEP_KEEP_SLICES: fill comm */
    struct step_comm comm;    /* the collectives' bytes (step.h), moved to the result */
    int gpus, pp, dp, ep, groups, pieces, M;
    double T;                 /* tokens per micro-batch per GPU */
    bool overlap;
    bool fill_w;              /* W ops are fillers (zb1p): see try_start */
    bool serve;               /* an inference step (serve.h): F ops only, no DP reduce */
    bool serve_pair;          /* serve.microbatches = 2: F(0) and F(1) run as a pair */
    int lead;                 /* staged pair: stages the first op runs before the second
                               * starts (decode 2, else 0; stepgraph.c) */
    double share;
    int *piece_lo, *piece_hi; /* layers [lo, hi) of each piece */
    struct compute_t attn, ffn, gate, shared, embed, head;
    double attn_split_s[2];   /* lead > 0: attention as two sub-ops, ATTN-0 its
                               * projections and ATTN-1 its core (sum attn.f_s) */
    struct moe_tab *moe;      /* per layer (only MoE layers filled) */
    double *send_s;           /* [(a * pp + b) * groups + g]: piece send rank a -> b; <0 unknown */
    double *act_bytes;        /* [(piece * groups + g) * ep + j] */
    double *reduce_s;         /* [piece * groups + g] */
    double *sp_s;             /* attention TP: per group, one SP all-gather (= one
                               * reduce-scatter); NULL without TP (serve.h) */
    int sp_fab;               /* with a fabric and sp_s: their collective */
    double *straggler;        /* per stage GPU index: [rank * dp + g * ep + j] */
    struct sop *sops;
    int64_t nsops, capsops;
    struct ivec from, to;     /* dependency edges, then CSR */
    int *succ;
    struct lane *lanes;
    int nlanes;
    /* per (mb, piece, kind, group), stepgraph.c's op_index */
    int *entry, *exitp, *lastc;
    struct ivec pair_f, pair_b;  /* op indices of overlapped F&B pairs */
    struct des *des;
    int rc;
    int64_t events;
    double end_s;             /* the step's end: the last sub-op's (the run sets it) */
    struct seg { int id; double t0_s, t1_s; } *segs;  /* fill_w: the parts of weight-
                                                       * gradient chunks that yielded */
    int64_t nsegs, capsegs;
    const struct limits_progress *prog;  /* NULL: none */
    int64_t every;            /* events between progress ticks */
};

/* ---- steptab.c ---- */

/* The tables, once per step: the pieces' layers, the op times, each MoE layer's
 * routing, expert times and all-to-alls (moe_tab), activation bytes and the DP
 * reduces; with a fabric, their collectives registered there. 0; -EINVAL with err->msg
 * set (a stage layout or routing trace the step cannot use); -ENOMEM; a collective's
 * error. */
int steptab_build(struct eng *e, uint64_t seed, struct cfg_err *err);
/* The pipeline sends between every pair of ranks the schedule uses (send_s). */
int steptab_sends(struct eng *e);
/* The record of the routing drawn (STEP_KEEP_ROUTING): 0; -EINVAL with err->msg set (no
 * MoE layer, or a record too large); -ENOMEM. */
int steptab_keep_routing(struct eng *e, struct cfg_err *err);
/* Parameters of piece p: its dense weights (embedding, head, attention, gates, shared
 * experts, dense FFNs), and the routed experts one GPU holds. */
double steptab_dense_params(const struct eng *e, int p);
double steptab_expert_params(const struct eng *e, int p);

/* ---- stepgraph.c ---- */

/* The sub-ops of every op of every lane, their dependencies (CSR: succ), and the lanes'
 * queues. 0 or -ENOMEM. */
int stepgraph_build(struct eng *e);

/* ---- stepres.c ---- */

/* *r from a run that finished (every lane's accounts closed at e->end_s): totals, per
 * GPU, per stage; the sub-ops as slices when keep_slices. Moves e->layer and e->drawn
 * to r. 0 or -ENOMEM (r then holds what was filled: step_free frees it). */
int stepres_fill(struct eng *e, struct step_result *r, bool keep_slices);
/* With e->keep_comm, adds times x m (stage numbering, m->gpus = dp) to matrix *slot of
 * e->comm, a new zeroed one when *slot < 0 (*slot then names it); else does nothing.
 * 0 or -ENOMEM. */
int stepres_comm_add(struct eng *e, const struct traffic *m, double times, int *slot);

#endif
