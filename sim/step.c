/* step.c: the execution engine of a training step; see step.h.
 *
 * Three parts: (1) tables, once per step: per-layer op times, routing, all-to-all and
 * send durations (memoised collectives), activation and parameter bytes; (2) the graph:
 * every sub-op of every scheduled op of every lane, with its dependencies, in the
 * lanes' stream queues; (3) the run: a discrete-event loop (des.h) that starts a
 * queue's head when its stream is free and its dependencies are done. Cost: O(sub-ops
 * + dependencies) events, each O(log pending); the collectives cost one network run
 * per distinct matrix.
 */
#include "step.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "coll.h"
#include "compute.h"
#include "des.h"
#include "fabric.h"
#include "limits.h"
#include "model.h"
#include "placement.h"
#include "routing.h"
#include "rtrace.h"
#include "sched.h"
#include "topo.h"
#include "traffic.h"

#define BF16_BYTES 2.0

/* ---- growable int array ---- */

struct ivec {
    int *v;
    int n, cap;
};

static int ivec_push(struct ivec *a, int x)
{
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        int *v = realloc(a->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ---- the engine's state ---- */

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
    int gpus, pp, dp, ep, groups, pieces, M;
    double T;                 /* tokens per micro-batch per GPU */
    bool overlap;
    bool fill_w;              /* W ops are fillers (zb1p): see try_start */
    double share;
    int *piece_lo, *piece_hi; /* layers [lo, hi) of each piece */
    struct compute_t attn, ffn, gate, shared, embed, head;
    struct moe_tab *moe;      /* per layer (only MoE layers filled) */
    double *send_s;           /* [(a * pp + b) * groups + g]: piece send rank a -> b; <0 unknown */
    double *act_bytes;        /* [(piece * groups + g) * ep + j] */
    double *reduce_s;         /* [piece * groups + g] */
    double *straggler;        /* per stage GPU index: [rank * dp + g * ep + j] */
    struct sop *sops;
    int64_t nsops, capsops;
    struct ivec from, to;     /* dependency edges, then CSR */
    int *succ;
    struct lane *lanes;
    int nlanes;
    /* per (mb, piece, kind, group) */
    int *entry, *exitp, *lastc;
    struct ivec pair_f, pair_b;  /* op indices of overlapped F&B pairs */
    struct des *des;
    int rc;
    int64_t events;
    struct seg { int id; double t0_s, t1_s; } *segs;  /* fill_w: the parts of weight-
                                                       * gradient chunks that yielded */
    int64_t nsegs, capsegs;
    const struct limits_progress *prog;  /* NULL: none */
    int64_t every;            /* events between progress ticks */
};

static int op_index(const struct eng *e, int mb, int piece, int kind, int g)
{
    return ((mb * e->pieces + piece) * 3 + kind) * e->groups + g;
}

/* ---- (1) tables ---- */

/* A cluster config of one stage's dp GPUs (same links), for routing and stage collectives. */
static int stage_config(struct config *cc, const struct config *c, struct cfg_err *err)
{
    *cc = *c;
    int gpn = c->cluster.gpus_per_node, dp = c->parallel.dp;
    if (dp % gpn == 0) {
        cc->cluster.nodes = dp / gpn;
    } else if (gpn % dp == 0) {
        cc->cluster.nodes = 1;
        cc->cluster.gpus_per_node = dp;
    } else {
        snprintf(err->msg, sizeof(err->msg),
                 "parallel.dp: a stage of %d GPUs neither fills whole nodes of %d GPUs "
                 "nor divides one", dp, gpn);
        return -EINVAL;
    }
    if (cc->cluster.nodes_per_leaf > cc->cluster.nodes)
        cc->cluster.nodes_per_leaf = 0;
    cc->routing.tokens_per_gpu = c->schedule.micro_batch_tokens;
    return 0;
}

static double group_max(const double *v, int ep)
{
    double m = 0;
    for (int j = 0; j < ep; j++)
        m = fmax(m, v[j]);
    return m;
}

/* Lane durations (per group) of a collective from per-GPU finish times. */
static void lane_times(const struct eng *e, const double *fin, double *out)
{
    for (int g = 0; g < e->groups; g++)
        out[g] = group_max(fin + g * e->ep, e->ep);
}

/* A layer's routing on one stage's GPUs (routing_run at the layer, iteration 0), with
 * the configured gating, capacity and placement (an eplb placement from the layer's own
 * loads, balance.h) and, for a trace, the counts of the trace's (MoE layer, iteration 0):
 * a trace numbers the MoE layers only (traces/FORMAT.md), model_moe_index. */
static int layer_routing(const struct eng *e, const struct config *cc, int layer,
                         uint64_t seed, struct routing *rt)
{
    struct routing_in in = { .c = cc, .seed = seed,
                             .layer = e->have_trace ? model_moe_index(&e->m, layer) : layer,
                             .trace = e->have_trace ? &e->trace : NULL };
    struct placement pl;
    bool placed;
    int rc = balance_place_for(&in, &pl, &placed);
    if (rc)
        return rc;
    in.pl = placed ? &pl : NULL;
    rc = routing_run(rt, &in);
    if (placed)
        placement_free(&pl);
    return rc;
}

/* ---- stages on one fabric (fabric.h) ---- */

/* Where a leaf's links are below its NICs, the collectives also go to the fabric, which
 * couples those of different lanes that meet on such a link at the same time. */
static int fab_setup(struct eng *e)
{
    if (!fabric_couples(e->full_topo))
        return 0;
    e->reduce_fab = calloc((size_t)e->pieces, sizeof(int));
    if (!e->reduce_fab)
        return -ENOMEM;
    return fabric_create(&e->fab, e->full_topo, e->stage_topo, e->dp, e->ep);
}

/* A MoE layer's four all-to-alls, in moe_tab's order. */
static int fab_layer(struct eng *e, struct moe_tab *t, const struct traffic *const m[4])
{
    for (int k = 0; k < 4; k++) {
        struct fabric_part part = { m[k], 1, 0.0 };
        int id = fabric_coll(e->fab, &part, 1);
        if (id < 0)
            return id;
        t->fab[k] = id;
    }
    return 0;
}

/* Piece p's DP reduce: the dense weights' all-reduce, then the routed experts'. */
static int fab_reduce(struct eng *e, int p, double dense_bytes, double expert_bytes)
{
    enum reduce_kind k = e->c->schedule.dp_reduce;
    struct traffic m[2] = { { 0 }, { 0 } };
    struct fabric_part part[2] = { { &m[0], 0, 0 }, { &m[1], 0, 0 } };
    int rc = coll_allreduce_plan(e->stage_topo, 1, dense_bytes, k, &m[0], &part[0].repeat,
                                 &part[0].tail_s);
    if (!rc)
        rc = coll_allreduce_plan(e->stage_topo, e->ep, expert_bytes, k, &m[1],
                                 &part[1].repeat, &part[1].tail_s);
    int id = rc ? rc : fabric_coll(e->fab, part, 2);
    traffic_free(&m[0]);
    traffic_free(&m[1]);
    e->reduce_fab[p] = id;
    return id < 0 ? id : 0;
}

/* The fabric collective a communication sub-op travels. emit_forward and emit_backward
 * time F's dispatch by disp_s and its combine by comb_s, B's combine gradient
 * (STEP_COMBINE) by bdisp_s and its dispatch gradient by bcomb_s. */
static int sop_coll(const struct eng *e, const struct sop *s)
{
    if (s->what == STEP_DP_REDUCE)
        return e->reduce_fab[s->piece];
    const int *f = e->moe[s->layer].fab;
    if (s->kind == SCHED_F)
        return f[s->what == STEP_DISPATCH ? 0 : 1];
    return f[s->what == STEP_COMBINE ? 2 : 3];
}

static int moe_layer_tables(struct eng *e, const struct config *cc, int layer, uint64_t seed)
{
    struct moe_tab *t = &e->moe[layer];
    int G = e->groups, ep = e->ep;
    size_t n = (size_t)G * ep;
    t->f_s = calloc(n, sizeof(double));
    t->b_s = calloc(n, sizeof(double));
    t->w_s = calloc(n, sizeof(double));
    t->pairs = calloc(n, sizeof(double));
    t->disp_s = calloc((size_t)G * 4, sizeof(double));
    if (!t->f_s || !t->b_s || !t->w_s || !t->pairs || !t->disp_s)
        return -ENOMEM;
    t->comb_s = t->disp_s + G;
    t->bdisp_s = t->disp_s + 2 * G;
    t->bcomb_s = t->disp_s + 3 * G;

    struct routing rt;
    int rc = layer_routing(e, cc, layer, seed, &rt);
    if (rc)
        return rc;
    for (size_t i = 0; i < (size_t)G * rt.experts; i++) {
        e->demand += (double)rt.expert_demand[i];
        e->dropped += (double)rt.dropped[i];
    }
    if (e->drawn.tokens)
        memcpy(rtrace_at(&e->drawn, model_moe_index(&e->m, layer), 0, 0), rt.src_demand,
               (size_t)e->dp * (size_t)rt.experts * sizeof(*rt.src_demand));
    struct step_layer *sl = &e->layer[layer];
    sl->moe = 1;
    sl->drop_rate = rt.drop_rate;
    sl->expert_load_max_over_mean = rt.expert_load_max_over_mean;
    sl->gpu_load_max_over_mean = rt.gpu_load_max_over_mean;
    struct compute_t *ct = malloc(n * sizeof(*ct));
    if (!ct) {
        routing_free(&rt);
        return -ENOMEM;
    }
    compute_routed_experts(e->cm, &e->m, &rt, ct);
    for (size_t k = 0; k < n; k++) {
        t->f_s[k] = ct[k].f_s;
        t->b_s[k] = ct[k].b_s;
        t->w_s[k] = ct[k].w_s;
        t->pairs[k] = (double)rt.gpu_tokens[k];
    }
    free(ct);

    /* Forward: dispatch and combine. Backward: the combine's gradient travels the
     * dispatch's way (its paths and directions, traffic.h) and the dispatch's gradient the
     * combine's (with the relays' reduction under route hierarchical), each at its own
     * bytes per element (config.h). */
    struct config bc = *cc;
    bc.model.dispatch_bytes_per_elem = cc->model.combine_grad_bytes_per_elem;
    bc.model.combine_bytes_per_elem = cc->model.dispatch_grad_bytes_per_elem;
    struct traffic d = { 0 }, cb = { 0 }, bd = { 0 }, bcb = { 0 };
    const double *fin;
    rc = traffic_moe(&d, &cb, &rt, cc);
    if (!rc)
        rc = traffic_moe(&bd, &bcb, &rt, &bc);
    if (!rc && !(rc = coll_run(e->memo, e->stage_topo, &d, &fin)))
        lane_times(e, fin, t->disp_s);
    if (!rc && !(rc = coll_run(e->memo, e->stage_topo, &cb, &fin)))
        lane_times(e, fin, t->comb_s);
    if (!rc && !(rc = coll_run(e->memo, e->stage_topo, &bd, &fin)))
        lane_times(e, fin, t->bdisp_s);
    if (!rc && !(rc = coll_run(e->memo, e->stage_topo, &bcb, &fin)))
        lane_times(e, fin, t->bcomb_s);
    if (!rc && e->fab)
        rc = fab_layer(e, t, (const struct traffic *[4]){ &d, &cb, &bd, &bcb });
    traffic_free(&d);
    traffic_free(&cb);
    traffic_free(&bd);
    traffic_free(&bcb);
    routing_free(&rt);
    sl->dispatch_s = group_max(t->disp_s, G);
    sl->combine_s = group_max(t->comb_s, G);
    sl->experts_fwd_s = group_max(t->f_s, G * ep);
    return rc;
}

static void moe_tab_free(struct moe_tab *t)
{
    free(t->f_s);
    free(t->b_s);
    free(t->w_s);
    free(t->pairs);
    free(t->disp_s);
}

/* Send of one micro-batch's activations (or their gradients) from every GPU of stage a
 * to its counterpart in stage b: dp concurrent flows through the network on the whole
 * cluster (they share leaf uplinks where the fabric has them). Lane time: its slowest
 * flow. */
static int send_times(struct eng *e, int a, int b)
{
    double *out = &e->send_s[((size_t)a * e->pp + b) * e->groups];
    if (out[0] >= 0)
        return 0;
    for (int g = 0; g < e->groups; g++)
        out[g] = 0;
    if (a == b)
        return 0;
    int *src = malloc((size_t)e->dp * sizeof(int));
    int *dst = malloc((size_t)e->dp * sizeof(int));
    double *end = malloc((size_t)e->dp * sizeof(double));
    int rc = src && dst && end ? 0 : -ENOMEM;
    for (int i = 0; !rc && i < e->dp; i++) {
        src[i] = a * e->dp + i;
        dst[i] = b * e->dp + i;
    }
    if (!rc)
        rc = coll_pairs(e->full_topo, src, dst, e->dp, e->T * e->c->model.hidden * BF16_BYTES,
                        end);
    for (int i = 0; !rc && i < e->dp; i++)
        out[i / e->ep] = fmax(out[i / e->ep], end[i]);
    free(src);
    free(dst);
    free(end);
    return rc;
}

static double piece_dense_params(const struct eng *e, int p)
{
    const struct model *m = &e->m;
    double prm = 0;
    if (p == 0)
        prm += m->op[MODEL_EMBED].params;
    if (p == e->pieces - 1)
        prm += m->op[MODEL_HEAD].params;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        prm += m->op[MODEL_ATTN].params;
        if (model_layer_is_moe(m, l))
            prm += m->op[MODEL_GATE].params + m->op[MODEL_SHARED].params;
        else
            prm += m->op[MODEL_FFN].params;
    }
    return prm;
}

static double piece_expert_params(const struct eng *e, int p)
{
    int moe = 0;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++)
        moe += model_layer_is_moe(&e->m, l);
    int slots = (e->c->model.experts + e->c->balance.redundant_experts) / e->ep;
    return (double)moe * slots * e->m.op[MODEL_EXPERT].params;
}

/* A routing trace for a step holds one stage's routing: its GPUs are the dp GPUs of a
 * stage, its layers the model's MoE layers (layer 0: the first MoE layer); every stage
 * holding a layer replays the layer's iteration 0, one micro-batch's worth (tokens as the
 * trace counts them). A longer trace's later layers are not used. */
static int load_trace(struct eng *e, struct cfg_err *err)
{
    const struct config *c = e->c;
    int moe_layers = model_moe_layers(&e->m);
    if (c->routing.distribution != DIST_TRACE)
        return 0;
    struct rtrace_err te;
    int rc = rtrace_load(&e->trace, c->routing.trace, e->dp, c->model.experts, &te);
    if (rc == -EINVAL)
        snprintf(err->msg, sizeof(err->msg), "%.200s: routing.trace: %.1000s (a step replays "
                 "one stage of %d GPUs)", c->routing.trace_src.where, te.msg, e->dp);
    else if (!rc && e->trace.layers < moe_layers) {
        snprintf(err->msg, sizeof(err->msg), "%.200s: routing.trace: %d layers, the model has "
                 "%d MoE layers", c->routing.trace_src.where, e->trace.layers, moe_layers);
        rtrace_free(&e->trace);
        rc = -EINVAL;
    }
    e->have_trace = rc == 0;
    return rc;
}

static int build_tables(struct eng *e, uint64_t seed, struct cfg_err *err)
{
    struct config cc;
    int rc = stage_config(&cc, e->c, err);
    if (rc)
        return rc;
    if ((rc = topo_create(&e->stage_topo, &cc.cluster)) ||
        (rc = topo_create(&e->full_topo, &e->c->cluster)) || (rc = load_trace(e, err)) ||
        (rc = fab_setup(e)))
        return rc;
    int L = e->c->model.layers, P = e->pieces, G = e->groups;
    e->piece_lo = calloc((size_t)P, sizeof(int));
    e->piece_hi = calloc((size_t)P, sizeof(int));
    e->moe = calloc((size_t)L, sizeof(*e->moe));
    e->layer = calloc((size_t)L, sizeof(*e->layer));
    e->send_s = malloc((size_t)e->pp * e->pp * G * sizeof(double));
    e->act_bytes = calloc((size_t)P * G * e->ep, sizeof(double));
    e->reduce_s = calloc((size_t)P * G, sizeof(double));
    if (!e->piece_lo || !e->piece_hi || !e->moe || !e->layer || !e->send_s || !e->act_bytes ||
        !e->reduce_s)
        return -ENOMEM;
    for (size_t i = 0; i < (size_t)e->pp * e->pp * G; i++)
        e->send_s[i] = -1;
    /* Layers split evenly over the pieces, the remainder to the later pieces' front. */
    for (int p = 0; p < P; p++) {
        e->piece_lo[p] = (int)((int64_t)p * L / P);
        e->piece_hi[p] = (int)((int64_t)(p + 1) * L / P);
    }
    const struct model *m = &e->m;
    e->attn = compute_op(e->cm, m, MODEL_ATTN, e->T);
    e->ffn = compute_op(e->cm, m, MODEL_FFN, e->T);
    e->gate = compute_op(e->cm, m, MODEL_GATE, e->T);
    e->shared = compute_op(e->cm, m, MODEL_SHARED, e->T);
    e->embed = compute_op(e->cm, m, MODEL_EMBED, e->T);
    e->head = compute_op(e->cm, m, MODEL_HEAD, e->T);
    for (int l = 0; l < L; l++) {
        if (model_layer_is_moe(m, l) && (rc = moe_layer_tables(e, &cc, l, seed)))
            return rc;
        limits_tick(e->prog, 0.9 * (l + 1) / L, "layer", l + 1, L);
    }
    /* Activation bytes of one micro-batch through each piece, per GPU. */
    for (int p = 0; p < P; p++)
        for (int g = 0; g < G; g++)
            for (int j = 0; j < e->ep; j++) {
                double b = 0;
                if (p == 0)
                    b += m->op[MODEL_EMBED].act_bytes_per_token * e->T;
                if (p == P - 1)
                    b += m->op[MODEL_HEAD].act_bytes_per_token * e->T;
                for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
                    b += m->op[MODEL_ATTN].act_bytes_per_token * e->T;
                    if (!model_layer_is_moe(m, l)) {
                        b += m->op[MODEL_FFN].act_bytes_per_token * e->T;
                        continue;
                    }
                    b += (m->op[MODEL_GATE].act_bytes_per_token +
                          m->op[MODEL_SHARED].act_bytes_per_token) * e->T;
                    b += m->op[MODEL_EXPERT].act_bytes_per_token *
                         e->moe[l].pairs[(size_t)g * e->ep + j];
                }
                e->act_bytes[((size_t)p * G + g) * e->ep + j] = b;
            }
    /* DP reduce of each piece's gradients: dense weights over the stage, routed experts
     * over the GPUs that hold the same experts (stride ep). */
    double gb = e->c->schedule.grad_bytes_per_param;
    for (int p = 0; p < P; p++) {
        double dense_s, exp_s;
        enum reduce_kind k = e->c->schedule.dp_reduce;
        if ((rc = coll_allreduce(e->memo, e->stage_topo, 1, piece_dense_params(e, p) * gb, k,
                                 &dense_s)) ||
            (rc = coll_allreduce(e->memo, e->stage_topo, e->ep, piece_expert_params(e, p) * gb,
                                 k, &exp_s)))
            return rc;
        for (int g = 0; g < G; g++)
            e->reduce_s[(size_t)p * G + g] = dense_s + exp_s;
        if (e->fab && (rc = fab_reduce(e, p, piece_dense_params(e, p) * gb,
                                       piece_expert_params(e, p) * gb)))
            return rc;
    }
    return 0;
}

/* ---- (2) the graph ---- */

static int add_sop(struct eng *e, int lane, int stream, int what, int kind, int mb, int piece,
                   int layer, double work_s)
{
    if (e->nsops == e->capsops) {
        int64_t cap = e->capsops ? 2 * e->capsops : 4096;
        struct sop *s = realloc(e->sops, (size_t)cap * sizeof(*s));
        if (!s)
            return -ENOMEM;
        e->sops = s;
        e->capsops = cap;
    }
    if (e->nsops >= INT32_MAX)
        return -ENOMEM;
    struct sop *s = &e->sops[e->nsops];
    memset(s, 0, sizeof(*s));
    s->eng = e;
    s->work_s = work_s;
    s->lane = lane;
    s->mb = mb;
    s->piece = piece;
    s->layer = layer;
    s->stream = (uint8_t)stream;
    s->what = (uint8_t)what;
    s->kind = (uint8_t)kind;
    s->t0_s = s->t1_s = NAN;
    return (int)e->nsops++;
}

static int add_dep(struct eng *e, int from, int to)
{
    if (from < 0 || to < 0)
        return 0;
    int rc = ivec_push(&e->from, from);
    return rc ? rc : ivec_push(&e->to, to);
}

/* Emission of one scheduled op: appends its sub-ops to `seq` (in order) and chains them. */
struct emit {
    struct eng *e;
    int lane, g, mb, piece, kind;
    bool full;                /* B: with the weight gradient */
    struct ivec *seq;
    int rc;
};

static int emit(struct emit *x, int stream, int what, int layer, double work_s, int dep1, int dep2)
{
    if (x->rc)
        return -1;
    int id = add_sop(x->e, x->lane, stream, what, x->kind, x->mb, x->piece, layer, work_s);
    if (id < 0) {
        x->rc = id;
        return -1;
    }
    int rc = add_dep(x->e, dep1, id);
    if (!rc && dep2 != dep1)
        rc = add_dep(x->e, dep2, id);
    if (!rc && stream != STEP_P2P)
        rc = ivec_push(x->seq, id);
    if (rc) {
        x->rc = rc;
        return -1;
    }
    return id;
}

/* Forward of one micro-batch on one piece. *first: a zero-time join that the op's
 * inputs feed; *exit_id: what the next piece waits for (the send); *lastc: the last
 * sub-op on the lane's streams. */
static void emit_forward(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    int p = x->piece, side = -1;
    int prev = *first = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, -1, -1);
    if (p == 0)
        prev = emit(x, STEP_COMPUTE, STEP_EMBED, -1, e->embed.f_s, prev, prev);
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        int id = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn.f_s, prev, side);
        side = -1;
        if (!model_layer_is_moe(&e->m, l)) {
            prev = emit(x, STEP_COMPUTE, STEP_FFN, l, e->ffn.f_s, id, id);
            continue;
        }
        const struct moe_tab *t = &e->moe[l];
        int gate = emit(x, STEP_COMPUTE, STEP_GATE, l, e->gate.f_s, id, id);
        int disp = emit(x, STEP_COMM, STEP_DISPATCH, l, t->disp_s[x->g], gate, gate);
        if (e->c->model.shared_experts > 0)
            side = emit(x, STEP_COMPUTE, STEP_SHARED, l, e->shared.f_s, gate, gate);
        int exp = emit(x, STEP_COMPUTE, STEP_EXPERTS, l,
                       group_max(t->f_s + (size_t)x->g * e->ep, e->ep), disp, disp);
        prev = emit(x, STEP_COMM, STEP_COMBINE, l, t->comb_s[x->g], exp, exp);
    }
    if (p == e->pieces - 1) {
        prev = emit(x, STEP_COMPUTE, STEP_HEAD, -1, e->head.f_s, prev, side);
        side = -1;
    }
    *lastc = prev;
    *exit_id = prev;
    if (p < e->pieces - 1) {
        int a = sched_rank(e->s, x->mb, p), b = sched_rank(e->s, x->mb, p + 1);
        *exit_id = emit(x, STEP_P2P, STEP_SEND, -1, e->send_s[((size_t)a * e->pp + b) *
                        e->groups + x->g], prev, side);
    } else if (side >= 0) {
        *exit_id = *lastc = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, prev, side);
    }
}

/* Backward (input gradient; with the weight gradient when the schedule does not split). */
static void emit_backward(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    bool w = x->full;
    int p = x->piece, id;
    int prev = *first = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, -1, -1);
    if (p == e->pieces - 1)
        prev = emit(x, STEP_COMPUTE, STEP_HEAD, -1, e->head.b_s + (w ? e->head.w_s : 0),
                    prev, prev);
    for (int l = e->piece_hi[p] - 1; l >= e->piece_lo[p]; l--) {
        if (!model_layer_is_moe(&e->m, l)) {
            id = emit(x, STEP_COMPUTE, STEP_FFN, l, e->ffn.b_s + (w ? e->ffn.w_s : 0), prev, prev);
        } else {
            const struct moe_tab *t = &e->moe[l];
            const double *bs = t->b_s + (size_t)x->g * e->ep, *ws = t->w_s + (size_t)x->g * e->ep;
            int side = -1;
            int cg = emit(x, STEP_COMM, STEP_COMBINE, l, t->bdisp_s[x->g], prev, prev);
            if (e->c->model.shared_experts > 0)
                side = emit(x, STEP_COMPUTE, STEP_SHARED, l,
                            e->shared.b_s + (w ? e->shared.w_s : 0), prev, prev);
            int exb = emit(x, STEP_COMPUTE, STEP_EXPERTS, l, group_max(bs, e->ep), cg, cg);
            if (w)
                emit(x, STEP_COMPUTE, STEP_EXPERTS_W, l, group_max(ws, e->ep), exb, exb);
            int dg = emit(x, STEP_COMM, STEP_DISPATCH, l, t->bcomb_s[x->g], exb, exb);
            id = emit(x, STEP_COMPUTE, STEP_GATE, l, e->gate.b_s + (w ? e->gate.w_s : 0), dg, side);
        }
        prev = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn.b_s + (w ? e->attn.w_s : 0), id, id);
    }
    if (p == 0 && w)
        prev = emit(x, STEP_COMPUTE, STEP_EMBED, -1, e->embed.w_s, prev, prev);
    *lastc = prev;
    *exit_id = prev;
    if (p > 0) {
        int a = sched_rank(e->s, x->mb, p), b = sched_rank(e->s, x->mb, p - 1);
        *exit_id = emit(x, STEP_P2P, STEP_SEND, -1,
                        e->send_s[((size_t)a * e->pp + b) * e->groups + x->g], prev, prev);
    }
}

/* All weight gradients of a piece for one micro-batch (split-W schedules). */
static double piece_wgrad_s(const struct eng *e, int p, int g)
{
    double s = 0;
    if (p == 0)
        s += e->embed.w_s;
    if (p == e->pieces - 1)
        s += e->head.w_s;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        s += e->attn.w_s;
        if (!model_layer_is_moe(&e->m, l)) {
            s += e->ffn.w_s;
            continue;
        }
        s += e->gate.w_s + e->shared.w_s;
        s += group_max(e->moe[l].w_s + (size_t)g * e->ep, e->ep);
    }
    return s;
}

/* The compute sub-op `what` of `layer` (-1: head) in B(x->mb, x->piece) on x's lane, or -1
 * when that B has none. A B's sub-ops are contiguous from its entry to its exit. */
static int b_subop(const struct emit *x, int what, int layer)
{
    const struct eng *e = x->e;
    int oi = op_index(e, x->mb, x->piece, SCHED_B, x->g);
    int hi = e->exitp[oi] > e->lastc[oi] ? e->exitp[oi] : e->lastc[oi];
    for (int i = e->entry[oi]; i >= 0 && i <= hi; i++)
        if (e->sops[i].stream == STEP_COMPUTE && e->sops[i].what == what &&
            e->sops[i].layer == layer)
            return i;
    return -1;
}

/* A W op of a filling schedule (fill_w) as chunks, each after the sub-op of its own B
 * that makes the chunk's output gradient, in the order the B makes them: the head's,
 * then per layer from the top: the shared experts', the routed experts', the rest
 * (attention, gate or dense FFN, and the embedding below the first layer). The sum is
 * piece_wgrad_s. *first is -1: the chunks' dependencies replace the op's. */
static void emit_wgrad_chunks(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    int p = x->piece, id = -1;
    *first = -1;
    if (p == e->pieces - 1)
        id = emit(x, STEP_COMPUTE, STEP_WGRAD, -1, e->head.w_s, b_subop(x, STEP_HEAD, -1), -1);
    for (int l = e->piece_hi[p] - 1; l >= e->piece_lo[p]; l--) {
        double rest = e->attn.w_s + (p == 0 && l == e->piece_lo[p] ? e->embed.w_s : 0);
        if (!model_layer_is_moe(&e->m, l)) {
            rest += e->ffn.w_s;
        } else {
            rest += e->gate.w_s;
            if (e->c->model.shared_experts > 0)
                emit(x, STEP_COMPUTE, STEP_WGRAD, l, e->shared.w_s,
                     b_subop(x, STEP_SHARED, l), -1);
            else
                rest += e->shared.w_s;
            emit(x, STEP_COMPUTE, STEP_WGRAD, l,
                 group_max(e->moe[l].w_s + (size_t)x->g * e->ep, e->ep),
                 b_subop(x, STEP_EXPERTS, l), -1);
        }
        id = emit(x, STEP_COMPUTE, STEP_WGRAD, l, rest, b_subop(x, STEP_ATTN, l), -1);
    }
    *exit_id = *lastc = id;
}

/* Straggler wait of each GPU of lane (rank, g) in one op (at full speed). */
static void add_straggler(struct eng *e, int rank, int g, int piece, int kind, bool w_in_b)
{
    for (int l = e->piece_lo[piece]; l < e->piece_hi[piece]; l++) {
        if (!model_layer_is_moe(&e->m, l))
            continue;
        const struct moe_tab *t = &e->moe[l];
        const double *v[2] = { NULL, NULL };
        if (kind == SCHED_F)
            v[0] = t->f_s;
        else if (kind == SCHED_B)
            v[0] = t->b_s, v[1] = w_in_b ? t->w_s : NULL;
        else
            v[0] = t->w_s;
        for (int k = 0; k < 2 && v[k]; k++) {
            const double *x = v[k] + (size_t)g * e->ep;
            double mx = group_max(x, e->ep);
            for (int j = 0; j < e->ep; j++)
                e->straggler[(size_t)rank * e->dp + (size_t)g * e->ep + j] += mx - x[j];
        }
    }
}

/* Queue the sub-ops of seq on their lane's streams. A pair (two seqs) is interleaved
 * segment by segment: a segment is a run of compute sub-ops and the communication
 * sub-ops right after it. */
static int enqueue(struct eng *e, struct lane *ln, const struct ivec *a, const struct ivec *b)
{
    int ia = 0, ib = 0, rc = 0;
    const struct ivec *src[2] = { a, b };
    int *pos[2] = { &ia, &ib };
    int turn = 0;
    while (!rc && (ia < a->n || (b && ib < b->n))) {
        const struct ivec *q = src[turn];
        int *i = pos[turn];
        bool seen_comm = false;
        while (q && *i < q->n && !rc) {
            struct sop *s = &e->sops[q->v[*i]];
            bool comm = s->stream == STEP_COMM;
            if (!comm && seen_comm)
                break;
            seen_comm |= comm;
            if (comm && !e->overlap)
                s->queued_comm = 1;
            rc = ivec_push(comm && e->overlap ? &ln->mq : &ln->cq, q->v[*i]);
            (*i)++;
        }
        if (b)
            turn ^= 1;
    }
    return rc;
}

/* The sub-ops whose end op `oi` (an op_index) waits for, by the dependencies of
 * sched.h; -1 where none. */
static void op_inputs(const struct eng *e, int oi, int in[3])
{
    int g = oi % e->groups, kind = (oi / e->groups) % 3;
    int p = (oi / e->groups / 3) % e->pieces, m = oi / e->groups / 3 / e->pieces;
    in[0] = in[1] = in[2] = -1;
    if (kind == SCHED_F && p > 0)
        in[0] = e->exitp[op_index(e, m, p - 1, SCHED_F, g)];
    if (kind == SCHED_B) {
        in[0] = e->lastc[op_index(e, m, p, SCHED_F, g)];
        if (p < e->pieces - 1)
            in[1] = e->exitp[op_index(e, m, p + 1, SCHED_B, g)];
    }
    if (kind == SCHED_W)
        in[0] = e->lastc[op_index(e, m, p, SCHED_B, g)];
}

static int build_graph(struct eng *e)
{
    const struct sched *s = e->s;
    int G = e->groups, rc = 0;
    size_t nop = (size_t)e->M * e->pieces * 3 * G;
    e->entry = malloc(nop * sizeof(int));
    e->exitp = malloc(nop * sizeof(int));
    e->lastc = malloc(nop * sizeof(int));
    if (!e->entry || !e->exitp || !e->lastc)
        return -ENOMEM;
    for (size_t i = 0; i < nop; i++)
        e->entry[i] = e->exitp[i] = e->lastc[i] = -1;
    struct ivec seq[2] = { { 0 }, { 0 } };
    int *left = calloc((size_t)e->pieces, sizeof(int));   /* ops left per piece on a rank */
    if (!left)
        return -ENOMEM;
    for (int r = 0; r < e->pp && !rc; r++) {
        for (int g = 0; g < G && !rc; g++) {
            int lane = r * G + g;
            struct lane *ln = &e->lanes[lane];
            memset(left, 0, (size_t)e->pieces * sizeof(int));
            for (int k = 0; k < s->nops[r]; k++)
                left[s->ops[r][k].piece]++;
            for (int k = 0; k < s->nops[r] && !rc; k++) {
                int nseq = s->ops[r][k].pair_next && e->overlap && k + 1 < s->nops[r] ? 2 : 1;
                for (int q = 0; q < nseq; q++) {
                    const struct sched_op *op = &s->ops[r][k + q];
                    struct emit x = { e, lane, g, op->mb, op->piece, op->kind,
                                      op->kind != SCHED_B || op->full, &seq[q], 0 };
                    int first = -1, ex = -1, lc = -1;
                    seq[q].n = 0;
                    if (op->kind == SCHED_F)
                        emit_forward(&x, &first, &ex, &lc);
                    else if (op->kind == SCHED_B)
                        emit_backward(&x, &first, &ex, &lc);
                    else if (e->fill_w)
                        emit_wgrad_chunks(&x, &first, &ex, &lc);
                    else
                        first = ex = lc = emit(&x, STEP_COMPUTE, STEP_WGRAD, -1,
                                               piece_wgrad_s(e, op->piece, g), -1, -1);
                    if ((rc = x.rc))
                        break;
                    if (op->kind == SCHED_F)
                        e->sops[seq[q].v[0]].act = ACT_ADD;
                    else if (op->kind == SCHED_B)
                        e->sops[lc].act = ACT_SUB;
                    size_t oi = (size_t)op_index(e, op->mb, op->piece, op->kind, g);
                    e->entry[oi] = first;
                    e->exitp[oi] = ex;
                    e->lastc[oi] = lc;
                    add_straggler(e, r, g, op->piece, op->kind,
                                  op->kind == SCHED_B && op->full);
                }
                if (!rc && nseq == 2) {
                    const struct sched_op *f = &s->ops[r][k], *b = &s->ops[r][k + 1];
                    rc = ivec_push(&e->pair_f, op_index(e, f->mb, f->piece, f->kind, g));
                    if (!rc)
                        rc = ivec_push(&e->pair_b, op_index(e, b->mb, b->piece, b->kind, g));
                }
                if (!rc)
                    rc = enqueue(e, ln, &seq[0], nseq == 2 ? &seq[1] : NULL);
                /* fill_w: a W's chunks may also start early, in this order (try_start). */
                if (!rc && e->fill_w && s->ops[r][k].kind == SCHED_W)
                    for (int i = 0; i < seq[0].n && !rc; i++)
                        rc = ivec_push(&ln->wq, seq[0].v[i]);
                /* The DP reduce of a piece follows its last backward op on this rank. */
                for (int q = 0; q < nseq && !rc; q++) {
                    const struct sched_op *op = &s->ops[r][k + q];
                    if (--left[op->piece] || (op->kind == SCHED_F))
                        continue;
                    struct ivec one = { 0 };
                    struct emit x = { e, lane, g, -1, op->piece, op->kind, true, &one, 0 };
                    int lc = e->lastc[op_index(e, op->mb, op->piece, op->kind, g)];
                    emit(&x, STEP_COMM, STEP_DP_REDUCE, -1,
                         e->reduce_s[(size_t)op->piece * G + g], lc, lc);
                    rc = x.rc ? x.rc : enqueue(e, ln, &one, NULL);
                    free(one.v);
                }
                k += nseq - 1;
            }
        }
    }
    free(left);
    free(seq[0].v);
    free(seq[1].v);
    if (rc)
        return rc;
    /* Dependencies between ops (sched.h): F(m,p-1) -> F(m,p); F(m,p) -> B(m,p);
     * B(m,p+1) -> B(m,p); B(m,p) -> W(m,p). */
    for (int m = 0; m < e->M && !rc; m++)
        for (int p = 0; p < e->pieces && !rc; p++)
            for (int g = 0; g < G && !rc; g++) {
                for (int kind = SCHED_F; kind <= SCHED_W && !rc; kind++) {
                    int oi = op_index(e, m, p, kind, g), in[3];
                    op_inputs(e, oi, in);
                    for (int k = 0; k < 3 && !rc; k++)
                        rc = add_dep(e, in[k], e->entry[oi]);
                }
            }
    /* An overlapped pair starts when the inputs of both its ops are there (the
     * reference DualPipe receives both before it runs the chunk pair): each op's entry
     * also waits for its partner's inputs. */
    for (int i = 0; i < e->pair_f.n && !rc; i++) {
        int fi = e->pair_f.v[i], bi = e->pair_b.v[i];
        int in[2][3];
        op_inputs(e, fi, in[0]);
        op_inputs(e, bi, in[1]);
        for (int k = 0; k < 3 && !rc; k++) {
            rc = add_dep(e, in[1][k], e->entry[fi]);
            if (!rc)
                rc = add_dep(e, in[0][k], e->entry[bi]);
        }
    }
    if (rc)
        return rc;
    /* CSR of successors. */
    e->succ = malloc((size_t)(e->from.n ? e->from.n : 1) * sizeof(int));
    if (!e->succ)
        return -ENOMEM;
    for (int i = 0; i < e->from.n; i++) {
        e->sops[e->from.v[i]].nsucc++;
        e->sops[e->to.v[i]].nwait++;
    }
    int64_t acc = 0;
    for (int64_t i = 0; i < e->nsops; i++) {
        e->sops[i].succ0 = (int)acc;
        acc += e->sops[i].nsucc;
        e->sops[i].nsucc = 0;
    }
    for (int i = 0; i < e->from.n; i++) {
        struct sop *f = &e->sops[e->from.v[i]];
        e->succ[f->succ0 + f->nsucc++] = e->to.v[i];
    }
    return 0;
}

/* ---- (3) the run ---- */

static bool comm_busy(const struct eng *e, const struct lane *ln)
{
    return ln->comm_run >= 0 || (ln->comp_run >= 0 && e->sops[ln->comp_run].queued_comm);
}

static bool comp_busy(const struct eng *e, const struct lane *ln)
{
    return ln->comp_run >= 0 && !e->sops[ln->comp_run].queued_comm;
}

/* Time since the lane's last change goes to one account. */
static void account(struct eng *e, struct lane *ln, double now)
{
    double dt = now - ln->last_s;
    bool cp = comp_busy(e, ln), cm = comm_busy(e, ln);
    if (cp)
        ln->busy_comp_s += dt;
    if (cm)
        ln->busy_comm_s += dt;
    if (cm && !cp)
        ln->exposed_s += dt;
    if (!cm && !cp)
        ln->idle_s += dt;
    ln->last_s = now;
}

static void on_done(struct des *d, void *arg);

static void schedule_end(struct eng *e, int id, double t_s, uint64_t *ev)
{
    int rc = des_at(e->des, t_s, on_done, &e->sops[id], ev);
    if (rc && !e->rc)
        e->rc = rc;
}

static void set_comp_rate(struct eng *e, struct lane *ln, double rate)
{
    if (ln->comp_run < 0 || ln->comp_rate == rate)
        return;
    double now = des_now(e->des);
    ln->comp_left_s = fmax(0.0, ln->comp_left_s - (now - ln->comp_since_s) * ln->comp_rate);
    ln->comp_since_s = now;
    ln->comp_rate = rate;
    des_cancel(e->des, ln->comp_ev);
    schedule_end(e, ln->comp_run, now + ln->comp_left_s / rate, &ln->comp_ev);
}

static void act_change(struct eng *e, struct lane *ln, const struct sop *s, int sign)
{
    const double *b = &e->act_bytes[((size_t)s->piece * e->groups + ln->group) * e->ep];
    for (int j = 0; j < e->ep; j++) {
        ln->act_cur[j] += sign * b[j];
        ln->act_peak[j] = fmax(ln->act_peak[j], ln->act_cur[j]);
    }
}

/* fill_w (zb1p): the weight-gradient chunk a lane may run while the head of its compute
 * queue waits and its communication stream runs, rather than leave the compute idle
 * under the all-to-all: the first chunk of the queue's W's not started, if its inputs
 * are done; -1 otherwise. Taking them in order keeps the started ones a prefix of the
 * queue's W's, so a W's last chunk still ends after every earlier one. */
static int next_filler(struct eng *e, struct lane *ln)
{
    while (ln->wh < ln->wq.n && !isnan(e->sops[ln->wq.v[ln->wh]].t0_s))
        ln->wh++;
    if (ln->wh < ln->wq.n && e->sops[ln->wq.v[ln->wh]].nwait == 0)
        return ln->wq.v[ln->wh];
    return -1;
}

/* A filler yields the compute stream to the queue's head, which is ready: the part of
 * its work done is logged for the trace and the rest waits as a chunk not started.
 * False (it keeps running) when it is about to end anyway or the log cannot grow. */
static bool yield_filler(struct eng *e, struct lane *ln, double now)
{
    int id = ln->comp_run;
    struct sop *s = &e->sops[id];
    double left = ln->comp_left_s - (now - ln->comp_since_s) * ln->comp_rate;
    if (left <= 1e-9 * s->work_s)
        return false;
    if (now > s->t0_s && e->nsegs == e->capsegs) {
        int64_t cap = e->capsegs ? 2 * e->capsegs : 64;
        struct seg *v = realloc(e->segs, (size_t)cap * sizeof(*v));
        if (!v) {
            e->rc = -ENOMEM;
            return false;
        }
        e->segs = v;
        e->capsegs = cap;
    }
    if (now > s->t0_s)                 /* it started at this instant: nothing to log */
        e->segs[e->nsegs++] = (struct seg){ id, s->t0_s, now };
    account(e, ln, now);
    des_cancel(e->des, ln->comp_ev);
    ln->comp_run = -1;
    s->work_s = left;
    s->t0_s = NAN;
    s->filling = 0;
    return true;
}

/* The compute sub-op to start now, -1 for none: the queue's head when its inputs are
 * done (a running filler yields to it), else, while the communication stream runs and
 * the compute stream is free, a filler (*fill set). */
static int next_compute(struct eng *e, struct lane *ln, double now, bool *fill)
{
    if (ln->comp_run >= 0 && !e->sops[ln->comp_run].filling)
        return -1;
    /* Past what started early as a filler: done, or running and from here on in its own
     * place (it no longer yields). */
    while (ln->ch < ln->cq.n && !isnan(e->sops[ln->cq.v[ln->ch]].t0_s))
        e->sops[ln->cq.v[ln->ch++]].filling = 0;
    bool ready = ln->ch < ln->cq.n && e->sops[ln->cq.v[ln->ch]].nwait == 0;
    if (ln->comp_run >= 0 &&
        (!e->sops[ln->comp_run].filling || !ready || !yield_filler(e, ln, now)))
        return -1;
    if (ready)
        return ln->cq.v[ln->ch++];
    *fill = true;
    return ln->comm_run >= 0 ? next_filler(e, ln) : -1;
}

/* The end of communication sub-op id, starting now, where there is a fabric: the fabric
 * schedules it (after work_s where its collective crosses no coupling link). False
 * without a fabric: the caller schedules it. */
static bool fabric_end(struct eng *e, int id)
{
    if (!e->fab)
        return false;
    struct sop *s = &e->sops[id];
    const struct lane *ln = &e->lanes[s->lane];
    int rc = fabric_start(e->fab, e->des, sop_coll(e, s), ln->rank, ln->group, s->work_s,
                          on_done, s);
    if (rc && !e->rc)
        e->rc = rc;
    return true;
}

static void try_start(struct eng *e, struct lane *ln)
{
    double now = des_now(e->des);
    if (ln->comm_run < 0 && ln->mh < ln->mq.n && e->sops[ln->mq.v[ln->mh]].nwait == 0) {
        int id = ln->mq.v[ln->mh++];
        account(e, ln, now);
        ln->comm_run = id;
        e->sops[id].t0_s = now;
        if (!fabric_end(e, id))
            schedule_end(e, id, now + e->sops[id].work_s, NULL);
        set_comp_rate(e, ln, e->share);
    }
    bool fill = false;
    int id = next_compute(e, ln, now, &fill);
    if (id >= 0) {
        struct sop *s = &e->sops[id];
        s->filling = fill;
        account(e, ln, now);
        ln->comp_run = id;
        s->t0_s = now;
        if (s->act == ACT_ADD)
            act_change(e, ln, s, +1);
        ln->comp_left_s = s->work_s;
        ln->comp_since_s = now;
        ln->comp_rate = ln->comm_run >= 0 && !s->queued_comm ? e->share : 1.0;
        if (s->queued_comm && fabric_end(e, id))
            ln->comp_ev = 0;
        else
            schedule_end(e, id, now + s->work_s / ln->comp_rate, &ln->comp_ev);
    }
}

static void start_p2p(struct eng *e, int id)
{
    double now = des_now(e->des);
    e->sops[id].t0_s = now;
    schedule_end(e, id, now + e->sops[id].work_s, NULL);
}

static void on_done(struct des *d, void *arg)
{
    struct sop *s = arg;
    struct eng *e = s->eng;
    double now = des_now(d);
    struct lane *ln = &e->lanes[s->lane];
    int id = (int)(s - e->sops);
    e->events++;
    if (e->prog && e->events % e->every == 0)
        limits_tick(e->prog, 0.9 + 0.1 * (double)e->events / e->nsops, "event", e->events,
                    e->nsops);
    s->t1_s = now;
    if (s->stream != STEP_P2P) {
        account(e, ln, now);
        if (ln->comp_run == id) {
            ln->comp_run = -1;
        } else {
            ln->comm_run = -1;
            set_comp_rate(e, ln, 1.0);
        }
        if (s->act == ACT_SUB)
            act_change(e, ln, s, -1);
    }
    for (int i = 0; i < s->nsucc; i++) {
        int t = e->succ[s->succ0 + i];
        if (--e->sops[t].nwait)
            continue;
        if (e->sops[t].stream == STEP_P2P)
            start_p2p(e, t);
        else
            try_start(e, &e->lanes[e->sops[t].lane]);
    }
    if (s->stream != STEP_P2P)
        try_start(e, ln);
    if (e->rc)
        des_stop(d);
}

static int run_events(struct eng *e)
{
    int rc = des_create(&e->des);
    if (rc)
        return rc;
    e->every = e->nsops / 100 > 1 ? e->nsops / 100 : 1;
    for (int64_t i = 0; i < e->nsops; i++)
        if (e->sops[i].nwait == 0 && e->sops[i].stream == STEP_P2P)
            start_p2p(e, (int)i);
    for (int l = 0; l < e->nlanes; l++)
        try_start(e, &e->lanes[l]);
    if (e->rc)
        return e->rc;
    int64_t n = des_run(e->des, INFINITY);
    if (n < 0)
        return (int)n;
    if (!e->rc && e->fab)
        e->rc = fabric_error(e->fab);
    if (e->rc)
        return e->rc;
    for (int64_t i = 0; i < e->nsops; i++)
        if (isnan(e->sops[i].t1_s))
            return -EDEADLK;   /* a schedule order the streams cannot run */
    return 0;
}

/* ---- results ---- */

/* Appends the slice of s from t0_s to t1_s (r->slices has room). */
static void put_slice(struct step_result *r, const struct sop *s, double t0_s, double t1_s)
{
    struct step_slice *x = &r->slices[r->nslices++];
    x->t0_s = t0_s;
    x->t1_s = t1_s;
    x->lane = s->lane;
    x->mb = s->mb;
    x->piece = s->piece;
    x->layer = s->layer;
    x->stream = s->queued_comm ? STEP_COMPUTE : s->stream;
    x->what = s->what;
    x->kind = s->kind;
}

static int fill_result(struct eng *e, struct step_result *r, bool keep_slices)
{
    r->routing = e->drawn;    /* ownership moves to the result (zeroed when not kept) */
    memset(&e->drawn, 0, sizeof(e->drawn));
    double T = 0;
    for (int64_t i = 0; i < e->nsops; i++)
        T = fmax(T, e->sops[i].t1_s);
    r->gpus = e->gpus;
    r->pp = e->pp;
    r->dp = e->dp;
    r->ep = e->ep;
    r->vpp = e->c->parallel.vpp;
    r->lanes = e->nlanes;
    r->pieces = e->pieces;
    r->microbatches = e->M;
    r->step_s = T;
    r->tokens = (double)e->M * e->T * e->dp;
    r->tokens_per_s = T > 0 ? r->tokens / T : 0;
    r->model_flops = model_flops_per_token(&e->m) * r->tokens;
    r->mfu = T > 0 ? r->model_flops / (T * e->gpus * compute_peak_flops(e->cm)) : 0;
    r->drop_rate = e->demand > 0 ? e->dropped / e->demand : 0;
    r->layer = e->layer;      /* ownership moves to the result */
    r->layers = e->c->model.layers;
    e->layer = NULL;
    r->subops = e->nsops;
    r->events = e->events;
    coll_counts(e->memo, &r->a2a_simulated, &r->a2a_reused);
    if (e->fab) {
        struct fabric_counts k = fabric_get_counts(e->fab);
        r->fabric_shared = k.shared;
        r->fabric_alone = k.alone;
        r->fabric_simulated = k.simulated;
    }
    r->gpu = calloc((size_t)e->gpus, sizeof(*r->gpu));
    r->stage = calloc((size_t)e->pp, sizeof(*r->stage));
    if (!r->gpu || !r->stage)
        return -ENOMEM;
    for (int p = 0; p < e->pieces; p++)
        for (int g = 0; g < e->groups; g++)
            r->dp_reduce_s = fmax(r->dp_reduce_s, e->reduce_s[(size_t)p * e->groups + g]);
    /* Parameters per GPU: the pieces its rank holds (dualpipe: two model copies). */
    double *rank_dense = calloc((size_t)e->pp, sizeof(double));
    double *rank_exp = calloc((size_t)e->pp, sizeof(double));
    if (!rank_dense || !rank_exp) {
        free(rank_dense);
        free(rank_exp);
        return -ENOMEM;
    }
    for (int r0 = 0; r0 < e->pp; r0++) {
        bool *held = calloc((size_t)e->pieces, sizeof(bool));
        if (!held) {
            free(rank_dense);
            free(rank_exp);
            return -ENOMEM;
        }
        for (int k = 0; k < e->s->nops[r0]; k++)
            held[e->s->ops[r0][k].piece] = true;
        for (int p = 0; p < e->pieces; p++)
            if (held[p]) {
                rank_dense[r0] += piece_dense_params(e, p);
                rank_exp[r0] += piece_expert_params(e, p);
            }
        free(held);
    }
    for (int l = 0; l < e->nlanes; l++) {
        struct lane *ln = &e->lanes[l];
        account(e, ln, T);
        for (int j = 0; j < e->ep; j++) {
            int gi = ln->rank * e->dp + ln->group * e->ep + j;
            struct step_gpu *g = &r->gpu[gi];
            g->straggler_s = e->straggler[gi];
            g->compute_s = ln->busy_comp_s - g->straggler_s;
            g->comm_s = ln->busy_comm_s;
            g->exposed_comm_s = ln->exposed_s;
            g->bubble_s = ln->idle_s;
            g->peak_act_bytes = ln->act_peak[j];
            g->param_bytes = (rank_dense[ln->rank] + rank_exp[ln->rank]) * BF16_BYTES;
        }
    }
    free(rank_dense);
    free(rank_exp);
    for (int gi = 0; gi < e->gpus; gi++) {
        const struct step_gpu *g = &r->gpu[gi];
        struct step_stage *st = &r->stage[gi / e->dp];
        st->compute_s += g->compute_s / e->dp;
        st->comm_s += g->comm_s / e->dp;
        st->exposed_comm_s += g->exposed_comm_s / e->dp;
        st->bubble_s += g->bubble_s / e->dp;
        st->peak_act_bytes = fmax(st->peak_act_bytes, g->peak_act_bytes);
        st->param_bytes = fmax(st->param_bytes, g->param_bytes);
        r->compute_s += g->compute_s / e->gpus;
        r->comm_s += g->comm_s / e->gpus;
        r->exposed_comm_s += g->exposed_comm_s / e->gpus;
        r->bubble_s += g->bubble_s / e->gpus;
        r->peak_act_bytes = fmax(r->peak_act_bytes, g->peak_act_bytes);
        r->param_bytes = fmax(r->param_bytes, g->param_bytes);
    }
    for (int k = 0; k < e->pp; k++)
        r->stage[k].bubble_frac = T > 0 ? r->stage[k].bubble_s / T : 0;
    r->bubble_frac = T > 0 ? r->bubble_s / T : 0;
    if (!keep_slices)
        return 0;
    r->slices = malloc((size_t)(e->nsops + e->nsegs + 1) * sizeof(*r->slices));
    if (!r->slices)
        return -ENOMEM;
    for (int64_t i = 0; i < e->nsops; i++)
        if (e->sops[i].work_s > 0)
            put_slice(r, &e->sops[i], e->sops[i].t0_s, e->sops[i].t1_s);
    for (int64_t i = 0; i < e->nsegs; i++)
        put_slice(r, &e->sops[e->segs[i].id], e->segs[i].t0_s, e->segs[i].t1_s);
    return 0;
}

static void eng_free(struct eng *e)
{
    if (e->moe)
        for (int l = 0; l < e->c->model.layers; l++)
            moe_tab_free(&e->moe[l]);
    free(e->moe);
    if (e->lanes)
        for (int l = 0; l < e->nlanes; l++) {
            free(e->lanes[l].cq.v);
            free(e->lanes[l].mq.v);
            free(e->lanes[l].wq.v);
            free(e->lanes[l].act_cur);
            free(e->lanes[l].act_peak);
        }
    free(e->lanes);
    free(e->layer);
    free(e->piece_lo);
    free(e->piece_hi);
    free(e->send_s);
    free(e->act_bytes);
    free(e->reduce_s);
    free(e->straggler);
    free(e->sops);
    free(e->from.v);
    free(e->to.v);
    free(e->succ);
    free(e->entry);
    free(e->exitp);
    free(e->lastc);
    free(e->pair_f.v);
    free(e->pair_b.v);
    free(e->segs);
    fabric_free(e->fab);      /* before the queue its events are on */
    free(e->reduce_fab);
    des_free(e->des);
    coll_memo_free(e->memo);
    if (e->have_trace)
        rtrace_free(&e->trace);
    rtrace_free(&e->drawn);
    topo_free(e->stage_topo);
    topo_free(e->full_topo);
    compute_free(e->cm);
    sched_free((struct sched *)e->s);
}

static int eng_setup(struct eng *e, const struct config *c, struct cfg_err *err)
{
    const char *why;
    e->c = c;
    e->pp = c->parallel.pp;
    e->dp = c->parallel.dp;
    e->ep = c->parallel.ep;
    e->gpus = e->pp * e->dp;
    e->groups = e->dp / e->ep;
    e->M = c->schedule.microbatches;
    e->T = (double)c->schedule.micro_batch_tokens;
    e->overlap = c->schedule.overlap;
    e->fill_w = c->schedule.kind == SCHED_ZB1P;
    if (c->schedule.kind == SCHED_NONE) {
        snprintf(err->msg, sizeof(err->msg), "schedule.kind: none: no training step to run");
        return -EINVAL;
    }
    why = sched_check(c->schedule.kind, e->pp, e->M, c->parallel.vpp);
    if (why) {
        snprintf(err->msg, sizeof(err->msg), "schedule.kind: %s", why);
        return -EINVAL;
    }
    int rc = model_init(&e->m, c);
    if (rc) {
        snprintf(err->msg, sizeof(err->msg), "model: these [model] values cannot describe a "
                 "training step (dense layers need ffn_hidden, MoE layers expert_ffn_hidden; "
                 "hidden, layers, seq_len, vocab, heads and the attention sizes >= 1)");
        return rc;
    }
    if ((rc = compute_create(&e->cm, c, err)))
        return rc;
    e->share = e->overlap ? compute_share(e->cm) : 1.0;
    struct sched *s;
    if ((rc = sched_create(&s, c->schedule.kind, e->pp, e->M, c->parallel.vpp)))
        return rc;
    e->s = s;
    e->pieces = s->pieces;
    if (c->model.layers < e->pieces) {
        snprintf(err->msg, sizeof(err->msg), "model.layers: %d layers cannot fill %d pipeline "
                 "pieces", c->model.layers, e->pieces);
        return -EINVAL;
    }
    if ((rc = coll_memo_create(&e->memo)))
        return rc;
    e->nlanes = e->pp * e->groups;
    e->lanes = calloc((size_t)e->nlanes, sizeof(*e->lanes));
    e->straggler = calloc((size_t)e->gpus, sizeof(double));
    if (!e->lanes || !e->straggler)
        return -ENOMEM;
    for (int l = 0; l < e->nlanes; l++) {
        struct lane *ln = &e->lanes[l];
        ln->rank = l / e->groups;
        ln->group = l % e->groups;
        ln->comp_run = ln->comm_run = -1;
        ln->act_cur = calloc((size_t)e->ep, sizeof(double));
        ln->act_peak = calloc((size_t)e->ep, sizeof(double));
        if (!ln->act_cur || !ln->act_peak)
            return -ENOMEM;
    }
    return 0;
}

static int build_sends(struct eng *e)
{
    int rc = 0;
    for (int m = 0; m < e->M && !rc; m++)
        for (int p = 0; p + 1 < e->pieces && !rc; p++) {
            int a = sched_rank(e->s, m, p), b = sched_rank(e->s, m, p + 1);
            rc = send_times(e, a, b);
            if (!rc)
                rc = send_times(e, b, a);
        }
    return rc;
}

/* The record of the routing drawn: one iteration of every MoE layer on a stage's GPUs. */
static int keep_routing(struct eng *e, struct cfg_err *err)
{
    const struct config *c = e->c;
    int moe_layers = model_moe_layers(&e->m);
    if (moe_layers < 1) {
        snprintf(err->msg, sizeof(err->msg), "model.first_dense_layers: all %d layers are "
                 "dense (model.moe_every = %d): no routing to record", c->model.layers,
                 c->model.moe_every);
        return -EINVAL;
    }
    int rc = rtrace_create(&e->drawn, moe_layers, 1, e->dp, c->model.experts);
    if (rc == -E2BIG) {
        snprintf(err->msg, sizeof(err->msg), "the routing record of %d MoE layers x %d GPUs x "
                 "%d experts passes %d entries", moe_layers, e->dp, c->model.experts,
                 RTRACE_ENTRIES_MAX);
        rc = -EINVAL;
    }
    return rc;
}

int step_run(struct step_result *r, const struct config *c, uint64_t seed, unsigned keep,
             struct cfg_err *err)
{
    return step_run_with(r, c, seed, keep, err, NULL);
}

int step_run_with(struct step_result *r, const struct config *c, uint64_t seed,
                  unsigned keep, struct cfg_err *err, const struct limits_progress *p)
{
    struct eng e;
    bool keep_slices = keep & STEP_KEEP_SLICES;
    memset(r, 0, sizeof(*r));
    memset(&e, 0, sizeof(e));
    e.prog = p && p->fn ? p : NULL;
    int rc = eng_setup(&e, c, err);
    if (!rc && (keep & STEP_KEEP_ROUTING))
        rc = keep_routing(&e, err);
    if (!rc)
        rc = build_tables(&e, seed, err);
    if (!rc)
        rc = build_sends(&e);
    if (!rc)
        rc = build_graph(&e);
    if (!rc)
        rc = run_events(&e);
    if (!rc)
        rc = fill_result(&e, r, keep_slices);
    eng_free(&e);
    if (rc) {
        step_free(r);
        if (rc == -EDEADLK)
            snprintf(err->msg, sizeof(err->msg), "schedule.kind: the %s order deadlocks on "
                     "in-order streams", config_sched_name(c->schedule.kind));
        if (rc == -EDEADLK)
            rc = -EINVAL;
    }
    return rc;
}

void step_free(struct step_result *r)
{
    rtrace_free(&r->routing);
    free(r->layer);
    free(r->gpu);
    free(r->stage);
    free(r->slices);
    memset(r, 0, sizeof(*r));
}

const char *step_what_name(enum step_what w)
{
    /* In enum step_what order. */
    static const char *const names[STEP_NWHAT] = {
        "embed", "attn", "ffn", "gate", "shared", "experts", "experts_w",
        "head", "dispatch", "combine", "wgrad", "send", "dp_reduce",
    };
    return (unsigned)w < STEP_NWHAT ? names[w] : "?";
}
