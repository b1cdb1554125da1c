/* steptab.c: a step's tables, once per step, before the graph; see stepeng.h.
 *
 * Per layer the op times; per MoE layer the routing on one stage's GPUs, the routed
 * experts' times and the four all-to-alls' lane durations; the pipeline sends between
 * ranks; activation and parameter bytes; each piece's DP reduce. Collectives go through
 * the network model, memoised by matrix (coll.h), and with a fabric are registered there
 * too. Cost: one network run per distinct collective matrix.
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
#include "routing.h"
#include "sched.h"
#include "serve.h"
#include "topo.h"
#include "traffic.h"

/* A cluster config of one stage's dp GPUs (same links), for routing and stage collectives. */
static int stage_config(struct config *cc, const struct config *c, double T,
                        struct cfg_err *err)
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
    cc->routing.tokens_per_gpu = (int64_t)T;
    /* The shared experts served as routed (serve.h): more experts, each token picks them. */
    cc->model.experts += config_shared_routed(c);
    cc->model.top_k += config_shared_routed(c);
    cc->cluster.route = config_a2a_route(c);
    return 0;
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
 * a trace numbers the MoE layers only (traces/FORMAT.md), model_moe_index. With the
 * aux-loss-free bias, each MoE layer has its own (a router's bias is its layer's):
 * the layer's last of balance.iterations rounds, as `moesim balance` routes layer 0. */
static int layer_routing(const struct eng *e, const struct config *cc, int layer,
                         uint64_t seed, struct routing *rt)
{
    struct routing_in in = { .c = cc, .seed = seed,
                             .layer = e->have_trace ? model_moe_index(&e->m, layer) : layer,
                             .trace = e->have_trace ? &e->trace : NULL,
                             .always = config_shared_routed(e->c) };
    if (balance_run_iterates(cc))
        return balance_iterate(rt, &in, NULL, NULL, NULL, NULL);
    return balance_route(rt, &in);
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

/* The low-latency kernels' cost per message (serve.h): GPU s posts one message per
 * (token, target GPU) pair it dispatches to another GPU, pair_tokens[s][d], and in the
 * combine each expert GPU one back per pair; posted one after another, added to the
 * flow model's time: a lane's dispatch (combine) grows by its busiest sender's messages
 * x msg_s. */
static void ll_message_times(const struct eng *e, struct moe_tab *t, const struct routing *rt,
                             double msg_s)
{
    int n = rt->gpus;
    for (int g = 0; g < e->groups; g++) {
        uint64_t out_max = 0, back_max = 0;
        for (int a = g * e->ep; a < (g + 1) * e->ep; a++) {
            uint64_t out = 0, back = 0;
            for (int b = 0; b < n; b++)
                if (b != a) {
                    out += rt->pair_tokens[(size_t)a * n + b];
                    back += rt->pair_tokens[(size_t)b * n + a];
                }
            out_max = out > out_max ? out : out_max;
            back_max = back > back_max ? back : back_max;
        }
        t->disp_s[g] += (double)out_max * msg_s;
        t->comb_s[g] += (double)back_max * msg_s;
    }
}

/* The lane times of a layer's four all-to-alls (memoised), and with a fabric their
 * collectives there. Forward: dispatch and combine. Backward: the combine's gradient
 * travels the dispatch's way (its paths and directions, traffic.h) and the dispatch's
 * gradient the combine's (with the relays' reduction under route hierarchical), each at
 * its own bytes per element (config.h). */
static int a2a_times(struct eng *e, struct moe_tab *t, const struct config *cc,
                     const struct routing *rt, int layer)
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
    if (!rc && config_low_latency(cc))
        ll_message_times(e, t, rt, cc->serve.ll_message_s);
    /* An inference step has no backward: its gradients' all-to-alls stay 0. */
    if (!rc && !e->serve && !(rc = coll_run(e->memo, e->stage_topo, &bd, &fin)))
        lane_times(e, fin, t->bdisp_s);
    if (!rc && !e->serve && !(rc = coll_run(e->memo, e->stage_topo, &bcb, &fin)))
        lane_times(e, fin, t->bcomb_s);
    if (!rc && e->fab)
        rc = fab_layer(e, t, (const struct traffic *[4]){ &d, &cb, &bd, &bcb });
    const struct traffic *kept[4] = { &d, &cb, &bd, &bcb };
    for (int k = 0; k < 4 && !rc; k++)
        rc = stepres_comm_add(e, kept[k], 1, &e->comm.a2a[4 * layer + k]);
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
        rc = a2a_times(e, t, cc, &rt, layer);
    routing_free(&rt);
    struct step_layer *sl = &e->layer[layer];
    sl->dispatch_s = group_max(t->disp_s, e->groups);
    sl->combine_s = group_max(t->comb_s, e->groups);
    sl->experts_fwd_s = group_max(t->f_s, e->groups * e->ep);
    return rc;
}

/* Attention TP's SP all-gather and reduce-scatter (serve.h): one ring step inside every TP
 * group through the network on the stage, sent n - 1 times; a lane's time: n - 1 times
 * its slowest GPU's step. With a fabric, its collective there. */
static int sp_tables(struct eng *e)
{
    int n = serve_attn_tp(e->c);
    if (n < 2)
        return 0;
    struct traffic m;
    const double *fin;
    int rc = coll_group_ring_plan(e->stage_topo, n,
                                  (uint64_t)llround(serve_sp_chunk_bytes(e->c)), &m);
    if (rc)
        return rc;
    e->sp_s = calloc((size_t)e->groups, sizeof(double));
    rc = e->sp_s ? coll_run(e->memo, e->stage_topo, &m, &fin) : -ENOMEM;
    if (!rc) {
        lane_times(e, fin, e->sp_s);
        for (int g = 0; g < e->groups; g++)
            e->sp_s[g] *= n - 1;
    }
    if (!rc && e->fab) {
        struct fabric_part part = { &m, n - 1, 0.0 };
        e->sp_fab = fabric_coll(e->fab, &part, 1);
        rc = e->sp_fab < 0 ? e->sp_fab : 0;
    }
    if (!rc)
        rc = stepres_comm_add(e, &m, n - 1, &e->comm.sp);
    traffic_free(&m);
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

double steptab_dense_params(const struct eng *e, int p)
{
    const struct model *m = &e->m;
    double prm = 0;
    if (p == 0)
        prm += m->op[MODEL_EMBED].params;
    if (p == e->pieces - 1)
        prm += m->op[MODEL_HEAD].params;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        prm += m->op[MODEL_ATTN].params / serve_attn_tp(e->c);   /* split n ways (serve.h) */
        if (model_layer_is_moe(m, l))   /* shared experts served as routed: in the slots */
            prm += m->op[MODEL_GATE].params +
                   (config_shared_routed(e->c) ? 0 : m->op[MODEL_SHARED].params);
        else
            prm += m->op[MODEL_FFN].params;
    }
    return prm;
}

double steptab_expert_params(const struct eng *e, int p)
{
    int moe = 0;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++)
        moe += model_layer_is_moe(&e->m, l);
    int slots = (e->c->model.experts + config_shared_routed(e->c) +
                 e->c->balance.redundant_experts) / e->ep;
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
    if (e->keep_comm) {
        e->comm.sp = -1;
        e->comm.a2a = malloc((size_t)4 * L * sizeof(int));
        e->comm.reduce = malloc((size_t)P * sizeof(int));
        if (!e->comm.a2a || !e->comm.reduce)
            return -ENOMEM;
        for (int i = 0; i < 4 * L; i++)
            e->comm.a2a[i] = -1;
        for (int p = 0; p < P; p++)
            e->comm.reduce[p] = -1;
    }
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

/* The bytes of piece p's DP reduce (its two rings' plans, steps summed) into e->comm. */
static int keep_reduce(struct eng *e, int p, double dense_bytes, double expert_bytes)
{
    enum reduce_kind k = e->c->schedule.dp_reduce;
    int stride[2] = { 1, e->ep }, rc = 0;
    double bytes[2] = { dense_bytes, expert_bytes };
    for (int i = 0; i < 2 && !rc; i++) {
        struct traffic m;
        int repeat;
        double tail_s;
        rc = coll_allreduce_plan(e->stage_topo, stride[i], bytes[i], k, &m, &repeat, &tail_s);
        if (!rc)
            rc = stepres_comm_add(e, &m, repeat, &e->comm.reduce[p]);
        traffic_free(&m);
    }
    return rc;
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
                                 steptab_dense_params(e, p) * gb, k, &dense_s)) ||
            (rc = coll_allreduce(e->memo, e->stage_topo, e->ep,
                                 steptab_expert_params(e, p) * gb, k, &exp_s)))
            return rc;
        for (int g = 0; g < G; g++)
            e->reduce_s[(size_t)p * G + g] = dense_s + exp_s;
        if (e->keep_comm && (rc = keep_reduce(e, p, steptab_dense_params(e, p) * gb,
                                              steptab_expert_params(e, p) * gb)))
            return rc;
        if (e->fab && (rc = fab_reduce(e, p, steptab_dense_params(e, p) * gb,
                                       steptab_expert_params(e, p) * gb)))
            return rc;
    }
    return 0;
}

int steptab_build(struct eng *e, uint64_t seed, struct cfg_err *err)
{
    struct config cc;
    int rc = stage_config(&cc, e->c, e->T, err);
    if (rc)
        return rc;
    struct cfg_cluster full = e->c->cluster;
    full.route = cc.cluster.route;
    if ((rc = topo_create(&e->stage_topo, &cc.cluster)) ||
        (rc = topo_create(&e->full_topo, &full)) || (rc = load_trace(e, err)) ||
        (rc = fab_setup(e)) || (rc = tables_alloc(e)))
        return rc;
    const struct model *m = &e->m;
    e->attn = e->serve ? serve_attn(e->cm, m, e->c) : compute_op(e->cm, m, MODEL_ATTN, e->T);
    if (e->lead) {            /* decode's two micro-batches: attention in two stages */
        serve_attn_parts(e->cm, m, e->c, &e->attn_split_s[0], &e->attn_split_s[1]);
    }
    e->ffn = compute_op(e->cm, m, MODEL_FFN, e->T);
    e->gate = compute_op(e->cm, m, MODEL_GATE, e->T);
    e->shared = compute_op(e->cm, m, MODEL_SHARED, e->T);
    e->embed = compute_op(e->cm, m, MODEL_EMBED, e->T);
    e->head = compute_op(e->cm, m, MODEL_HEAD, e->T);
    if ((rc = sp_tables(e)))
        return rc;
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
    return e->serve ? 0 : reduce_tables(e);   /* inference: no gradients */
}

int steptab_sends(struct eng *e)
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
int steptab_keep_routing(struct eng *e, struct cfg_err *err)
{
    const struct config *c = e->c;
    int moe_layers = model_moe_layers(&e->m);
    if (moe_layers < 1) {
        snprintf(err->msg, sizeof(err->msg), "model.first_dense_layers: all %d layers are "
                 "dense (model.moe_every = %d): no routing to record", c->model.layers,
                 c->model.moe_every);
        return -EINVAL;
    }
    if (config_shared_routed(c)) {
        snprintf(err->msg, sizeof(err->msg), "serve.shared_as_routed: the routing record has "
                 "no column for the shared experts; run without it to record the routing");
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
