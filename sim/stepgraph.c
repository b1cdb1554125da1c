/* stepgraph.c: a step's graph, built once before the run; see stepeng.h and step.h.
 *
 * Two parts: (1) tables, once per step: per-layer op times, routing, all-to-all and
 * send durations (memoised collectives), activation and parameter bytes; (2) the graph:
 * every sub-op of every scheduled op of every lane, with its dependencies, in the
 * lanes' stream queues. Cost: one network run per distinct collective matrix, then
 * O(sub-ops + dependencies).
 */
#include "stepeng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "coll.h"
#include "fabric.h"
#include "limits.h"
#include "placement.h"
#include "routing.h"
#include "sched.h"
#include "topo.h"
#include "traffic.h"

/* ---- growable int array ---- */

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

/* moe_tab's arrays for G lanes of ep GPUs; the four all-to-alls' share one block. */
static int moe_tab_alloc(struct moe_tab *t, int G, int ep)
{
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
    return 0;
}

/* What the step reports of a layer's routing: assignments and drops (over all MoE
 * layers), the routing drawn (STEP_KEEP_ROUTING), the layer's balance. */
static void note_routing(struct eng *e, int layer, const struct routing *rt)
{
    for (size_t i = 0; i < (size_t)e->groups * rt->experts; i++) {
        e->demand += (double)rt->expert_demand[i];
        e->dropped += (double)rt->dropped[i];
    }
    if (e->drawn.tokens)
        memcpy(rtrace_at(&e->drawn, model_moe_index(&e->m, layer), 0, 0), rt->src_demand,
               (size_t)e->dp * (size_t)rt->experts * sizeof(*rt->src_demand));
    struct step_layer *sl = &e->layer[layer];
    sl->moe = 1;
    sl->drop_rate = rt->drop_rate;
    sl->expert_load_max_over_mean = rt->expert_load_max_over_mean;
    sl->gpu_load_max_over_mean = rt->gpu_load_max_over_mean;
}

/* Routed-expert F, B, W times and token-expert pairs of every GPU of the stage. */
static int expert_times(const struct eng *e, struct moe_tab *t, const struct routing *rt)
{
    size_t n = (size_t)e->groups * e->ep;
    struct compute_t *ct = malloc(n * sizeof(*ct));
    if (!ct)
        return -ENOMEM;
    compute_routed_experts(e->cm, &e->m, rt, ct);
    for (size_t k = 0; k < n; k++) {
        t->f_s[k] = ct[k].f_s;
        t->b_s[k] = ct[k].b_s;
        t->w_s[k] = ct[k].w_s;
        t->pairs[k] = (double)rt->gpu_tokens[k];
    }
    free(ct);
    return 0;
}

/* The lane times of a layer's four all-to-alls (memoised), and with a fabric their
 * collectives there. Forward: dispatch and combine. Backward: the combine's gradient
 * travels the dispatch's way (its paths and directions, traffic.h) and the dispatch's
 * gradient the combine's (with the relays' reduction under route hierarchical), each at
 * its own bytes per element (config.h). */
static int a2a_times(struct eng *e, struct moe_tab *t, const struct config *cc,
                     const struct routing *rt)
{
    struct config bc = *cc;
    bc.model.dispatch_bytes_per_elem = cc->model.combine_grad_bytes_per_elem;
    bc.model.combine_bytes_per_elem = cc->model.dispatch_grad_bytes_per_elem;
    struct traffic d = { 0 }, cb = { 0 }, bd = { 0 }, bcb = { 0 };
    const double *fin;
    int rc = traffic_moe(&d, &cb, rt, cc);
    if (!rc)
        rc = traffic_moe(&bd, &bcb, rt, &bc);
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
    return rc;
}

/* A MoE layer's tables: its routing on one stage (drawn or replayed), expert times and
 * all-to-alls. */
static int moe_layer_tables(struct eng *e, const struct config *cc, int layer, uint64_t seed)
{
    struct moe_tab *t = &e->moe[layer];
    struct routing rt;
    int rc = moe_tab_alloc(t, e->groups, e->ep);
    if (rc || (rc = layer_routing(e, cc, layer, seed, &rt)))
        return rc;
    note_routing(e, layer, &rt);
    rc = expert_times(e, t, &rt);
    if (!rc)
        rc = a2a_times(e, t, cc, &rt);
    routing_free(&rt);
    struct step_layer *sl = &e->layer[layer];
    sl->dispatch_s = group_max(t->disp_s, e->groups);
    sl->combine_s = group_max(t->comb_s, e->groups);
    sl->experts_fwd_s = group_max(t->f_s, e->groups * e->ep);
    return rc;
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

double stepgraph_dense_params(const struct eng *e, int p)
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

double stepgraph_expert_params(const struct eng *e, int p)
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

/* The per-step arrays of the tables; the pieces' layers, split evenly, the remainder
 * to the later pieces' front; every send not yet known. */
static int tables_alloc(struct eng *e)
{
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
    for (int p = 0; p < P; p++) {
        e->piece_lo[p] = (int)((int64_t)p * L / P);
        e->piece_hi[p] = (int)((int64_t)(p + 1) * L / P);
    }
    return 0;
}

/* Activation bytes of one micro-batch through piece p on GPU j of lane g. */
static double piece_act_bytes(const struct eng *e, int p, int g, int j)
{
    const struct model *m = &e->m;
    double b = 0;
    if (p == 0)
        b += m->op[MODEL_EMBED].act_bytes_per_token * e->T;
    if (p == e->pieces - 1)
        b += m->op[MODEL_HEAD].act_bytes_per_token * e->T;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        b += m->op[MODEL_ATTN].act_bytes_per_token * e->T;
        if (!model_layer_is_moe(m, l)) {
            b += m->op[MODEL_FFN].act_bytes_per_token * e->T;
            continue;
        }
        b += (m->op[MODEL_GATE].act_bytes_per_token +
              m->op[MODEL_SHARED].act_bytes_per_token) * e->T;
        b += m->op[MODEL_EXPERT].act_bytes_per_token * e->moe[l].pairs[(size_t)g * e->ep + j];
    }
    return b;
}

/* DP reduce of each piece's gradients: dense weights over the stage, routed experts
 * over the GPUs that hold the same experts (stride ep). */
static int reduce_tables(struct eng *e)
{
    double gb = e->c->schedule.grad_bytes_per_param;
    enum reduce_kind k = e->c->schedule.dp_reduce;
    int rc = 0, G = e->groups;
    for (int p = 0; p < e->pieces; p++) {
        double dense_s, exp_s;
        if ((rc = coll_allreduce(e->memo, e->stage_topo, 1,
                                 stepgraph_dense_params(e, p) * gb, k, &dense_s)) ||
            (rc = coll_allreduce(e->memo, e->stage_topo, e->ep,
                                 stepgraph_expert_params(e, p) * gb, k, &exp_s)))
            return rc;
        for (int g = 0; g < G; g++)
            e->reduce_s[(size_t)p * G + g] = dense_s + exp_s;
        if (e->fab && (rc = fab_reduce(e, p, stepgraph_dense_params(e, p) * gb,
                                       stepgraph_expert_params(e, p) * gb)))
            return rc;
    }
    return 0;
}

int stepgraph_tables(struct eng *e, uint64_t seed, struct cfg_err *err)
{
    struct config cc;
    int rc = stage_config(&cc, e->c, err);
    if (rc)
        return rc;
    if ((rc = topo_create(&e->stage_topo, &cc.cluster)) ||
        (rc = topo_create(&e->full_topo, &e->c->cluster)) || (rc = load_trace(e, err)) ||
        (rc = fab_setup(e)) || (rc = tables_alloc(e)))
        return rc;
    const struct model *m = &e->m;
    e->attn = compute_op(e->cm, m, MODEL_ATTN, e->T);
    e->ffn = compute_op(e->cm, m, MODEL_FFN, e->T);
    e->gate = compute_op(e->cm, m, MODEL_GATE, e->T);
    e->shared = compute_op(e->cm, m, MODEL_SHARED, e->T);
    e->embed = compute_op(e->cm, m, MODEL_EMBED, e->T);
    e->head = compute_op(e->cm, m, MODEL_HEAD, e->T);
    int L = e->c->model.layers;
    for (int l = 0; l < L; l++) {
        if (model_layer_is_moe(m, l) && (rc = moe_layer_tables(e, &cc, l, seed)))
            return rc;
        limits_tick(e->prog, 0.9 * (l + 1) / L, "layer", l + 1, L);
    }
    for (int p = 0; p < e->pieces; p++)
        for (int g = 0; g < e->groups; g++)
            for (int j = 0; j < e->ep; j++)
                e->act_bytes[((size_t)p * e->groups + g) * e->ep + j] =
                    piece_act_bytes(e, p, g, j);
    return reduce_tables(e);
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

/* The op tables (entry, exitp, lastc), every op not laid out yet (-1). */
static int op_tables_alloc(struct eng *e)
{
    size_t nop = (size_t)e->M * e->pieces * 3 * e->groups;
    e->entry = malloc(nop * sizeof(int));
    e->exitp = malloc(nop * sizeof(int));
    e->lastc = malloc(nop * sizeof(int));
    if (!e->entry || !e->exitp || !e->lastc)
        return -ENOMEM;
    for (size_t i = 0; i < nop; i++)
        e->entry[i] = e->exitp[i] = e->lastc[i] = -1;
    return 0;
}

/* Scheduled op `op` of rank r on EP group g: its sub-ops into seq (emptied first), the
 * activations it holds from its first sub-op (F) to its last compute (B), its entry,
 * exit and last sub-op in the op tables, its GPUs' straggler waits. */
static int emit_op(struct eng *e, int r, int g, const struct sched_op *op, struct ivec *seq)
{
    struct emit x = { e, r * e->groups + g, g, op->mb, op->piece, op->kind,
                      op->kind != SCHED_B || op->full, seq, 0 };
    int first = -1, ex = -1, lc = -1;
    seq->n = 0;
    if (op->kind == SCHED_F)
        emit_forward(&x, &first, &ex, &lc);
    else if (op->kind == SCHED_B)
        emit_backward(&x, &first, &ex, &lc);
    else if (e->fill_w)
        emit_wgrad_chunks(&x, &first, &ex, &lc);
    else
        first = ex = lc = emit(&x, STEP_COMPUTE, STEP_WGRAD, -1,
                               piece_wgrad_s(e, op->piece, g), -1, -1);
    if (x.rc)
        return x.rc;
    if (op->kind == SCHED_F)
        e->sops[seq->v[0]].act = ACT_ADD;
    else if (op->kind == SCHED_B)
        e->sops[lc].act = ACT_SUB;
    size_t oi = (size_t)op_index(e, op->mb, op->piece, op->kind, g);
    e->entry[oi] = first;
    e->exitp[oi] = ex;
    e->lastc[oi] = lc;
    add_straggler(e, r, g, op->piece, op->kind, op->kind == SCHED_B && op->full);
    return 0;
}

/* The DP reduce of op's piece on lane `lane` (EP group g), after op's last sub-op. */
static int emit_reduce(struct eng *e, int lane, int g, const struct sched_op *op)
{
    struct ivec one = { 0 };
    struct emit x = { e, lane, g, -1, op->piece, op->kind, true, &one, 0 };
    int lc = e->lastc[op_index(e, op->mb, op->piece, op->kind, g)];
    emit(&x, STEP_COMM, STEP_DP_REDUCE, -1, e->reduce_s[(size_t)op->piece * e->groups + g],
         lc, lc);
    int rc = x.rc ? x.rc : enqueue(e, &e->lanes[lane], &one, NULL);
    free(one.v);
    return rc;
}

/* Queues the nseq ops emitted into seq (one op, or an overlapped F&B pair, recorded in
 * pair_f and pair_b) from rank r's k-th on lane (r, g); fill_w: a W's chunks also on the
 * lane's filler list, in order, for they may start early (try_start). */
static int queue_ops(struct eng *e, int r, int g, int k, int nseq, struct ivec seq[2])
{
    const struct sched_op *ops = &e->s->ops[r][k];
    struct lane *ln = &e->lanes[r * e->groups + g];
    int rc = 0;
    if (nseq == 2) {
        rc = ivec_push(&e->pair_f, op_index(e, ops[0].mb, ops[0].piece, ops[0].kind, g));
        if (!rc)
            rc = ivec_push(&e->pair_b, op_index(e, ops[1].mb, ops[1].piece, ops[1].kind, g));
    }
    if (!rc)
        rc = enqueue(e, ln, &seq[0], nseq == 2 ? &seq[1] : NULL);
    if (!rc && e->fill_w && ops[0].kind == SCHED_W)
        for (int i = 0; i < seq[0].n && !rc; i++)
            rc = ivec_push(&ln->wq, seq[0].v[i]);
    return rc;
}

/* Lays out the ops of rank r's schedule on its EP group g, in order, each piece's DP
 * reduce after the piece's last backward op on the rank. left: scratch, per piece. */
static int emit_lane(struct eng *e, int r, int g, int *left, struct ivec seq[2])
{
    const struct sched *s = e->s;
    int rc = 0;
    memset(left, 0, (size_t)e->pieces * sizeof(int));
    for (int k = 0; k < s->nops[r]; k++)
        left[s->ops[r][k].piece]++;
    for (int k = 0; k < s->nops[r] && !rc; k++) {
        int nseq = s->ops[r][k].pair_next && e->overlap && k + 1 < s->nops[r] ? 2 : 1;
        for (int q = 0; q < nseq && !rc; q++)
            rc = emit_op(e, r, g, &s->ops[r][k + q], &seq[q]);
        if (!rc)
            rc = queue_ops(e, r, g, k, nseq, seq);
        for (int q = 0; q < nseq && !rc; q++) {
            const struct sched_op *op = &s->ops[r][k + q];
            if (--left[op->piece] || (op->kind == SCHED_F))
                continue;
            rc = emit_reduce(e, r * e->groups + g, g, op);
        }
        k += nseq - 1;
    }
    return rc;
}

/* Dependencies between ops (sched.h): F(m,p-1) -> F(m,p); F(m,p) -> B(m,p);
 * B(m,p+1) -> B(m,p); B(m,p) -> W(m,p). */
static int op_deps(struct eng *e)
{
    int rc = 0;
    for (int m = 0; m < e->M && !rc; m++)
        for (int p = 0; p < e->pieces && !rc; p++)
            for (int g = 0; g < e->groups && !rc; g++) {
                for (int kind = SCHED_F; kind <= SCHED_W && !rc; kind++) {
                    int oi = op_index(e, m, p, kind, g), in[3];
                    op_inputs(e, oi, in);
                    for (int k = 0; k < 3 && !rc; k++)
                        rc = add_dep(e, in[k], e->entry[oi]);
                }
            }
    return rc;
}

/* An overlapped pair starts when the inputs of both its ops are there (the reference
 * DualPipe receives both before it runs the chunk pair): each op's entry also waits for
 * its partner's inputs. */
static int pair_deps(struct eng *e)
{
    int rc = 0;
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
    return rc;
}

/* The dependency edges as successor lists (CSR: succ0, nsucc into succ), in the order
 * the edges were added; nwait counts each sub-op's inputs. */
static int succ_csr(struct eng *e)
{
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

int stepgraph_build(struct eng *e)
{
    int rc = op_tables_alloc(e);
    if (rc)
        return rc;
    struct ivec seq[2] = { { 0 }, { 0 } };
    int *left = calloc((size_t)e->pieces, sizeof(int));   /* ops left per piece on a rank */
    if (!left)
        return -ENOMEM;
    for (int r = 0; r < e->pp && !rc; r++)
        for (int g = 0; g < e->groups && !rc; g++)
            rc = emit_lane(e, r, g, left, seq);
    free(left);
    free(seq[0].v);
    free(seq[1].v);
    if (!rc)
        rc = op_deps(e);
    if (!rc)
        rc = pair_deps(e);
    return rc ? rc : succ_csr(e);
}

int stepgraph_sends(struct eng *e)
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
int stepgraph_keep_routing(struct eng *e, struct cfg_err *err)
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
