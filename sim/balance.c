/* balance.c: a routing and balancing policy over iterations; see balance.h. */
#include "balance.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a2a.h"
#include "compute.h"
#include "limits.h"
#include "model.h"
#include "placement.h"
#include "routing.h"
#include "rtrace.h"
#include "topo.h"
#include "traffic.h"

/* config's placement words in placement.h's terms. */
static enum placement_kind place_kind(enum place_kind k)
{
    switch (k) {
    case PLACE_ROUND_ROBIN: return PLACEMENT_ROUND_ROBIN;
    case PLACE_EPLB: return PLACEMENT_EPLB;
    case PLACE_EPLB_GLOBAL: return PLACEMENT_EPLB_GLOBAL;
    default: return PLACEMENT_CONTIGUOUS;
    }
}

struct bal {
    const struct config *c;
    struct routing_in in;     /* c, seed, layer, trace; pl, bias, iteration set per round */
    double *bias;             /* experts, or NULL without bias updates */
    double *load;             /* experts: last observed demand, summed over EP groups */
    struct placement pl;
    bool have_pl;
};

int balance_place(const struct config *c, const double *load, struct placement *pl,
                  bool *placed)
{
    enum placement_kind k = place_kind(c->balance.placement);
    *placed = false;
    if (k == PLACEMENT_CONTIGUOUS)
        return 0;
    int ep = c->parallel.ep, gpn = c->cluster.gpus_per_node;
    int rc = placement_create_grouped(pl, k, c->model.experts, ep, gpn < ep ? gpn : ep,
                                      c->balance.redundant_experts,
                                      c->balance.expert_groups, load);
    *placed = rc == 0;
    return rc;
}

/* Per-expert demand of r summed over its EP groups into load[experts]. */
static void demand(const struct routing *r, double *load)
{
    int E = r->experts, groups = r->gpus / r->ep;
    for (int e = 0; e < E; e++) {
        load[e] = 0;
        for (int g = 0; g < groups; g++)
            load[e] += (double)r->expert_demand[(size_t)g * E + e];
    }
}

int balance_place_for(const struct routing_in *in, struct placement *pl, bool *placed)
{
    const struct config *c = in->c;
    enum place_kind k = c->balance.placement;
    *placed = false;
    if (k != PLACE_EPLB && k != PLACE_EPLB_GLOBAL)
        return balance_place(c, NULL, pl, placed);
    struct routing_in first = *in;
    struct routing r;
    first.pl = NULL;
    /* The measuring pass routes without a placement, whose home layout needs ep | experts;
     * where it does not (256 experts on EP 320 with 64 redundant ones), it measures on EP
     * groups of gcd(ep, experts) GPUs: the experts' loads are the gating's, whatever the
     * groups (but for max_nodes, whose home nodes then differ). */
    struct config cg = *c;
    int g = c->parallel.ep, x = c->model.experts;
    while (x) {
        int t = g % x;
        g = x;
        x = t;
    }
    cg.parallel.ep = g;
    first.c = &cg;
    double *load = calloc((size_t)c->model.experts, sizeof(double));
    if (!load)
        return -ENOMEM;
    int rc = routing_run(&r, &first);
    if (!rc) {
        demand(&r, load);
        routing_free(&r);
        rc = balance_place(c, load, pl, placed);
    }
    free(load);
    return rc;
}

int balance_route(struct routing *r, const struct routing_in *in)
{
    enum place_kind k = in->c->balance.placement;
    struct routing_picks picks = { 0 };
    struct routing_in with = *in;
    struct placement pl;
    bool placed;
    with.picks = k == PLACE_EPLB || k == PLACE_EPLB_GLOBAL ? &picks : NULL;
    int rc = balance_place_for(&with, &pl, &placed);
    if (!rc) {
        with.pl = placed ? &pl : NULL;
        rc = routing_run(r, &with);
        if (placed)
            placement_free(&pl);
    }
    routing_picks_free(&picks);
    return rc;
}

/* The placement of iteration `it`: fixed kinds once; eplb kinds from the loads of the
 * iteration before (the first from a pass of iteration 0 itself). */
static int place(struct bal *b, int it)
{
    enum place_kind k = b->c->balance.placement;
    bool eplb = k == PLACE_EPLB || k == PLACE_EPLB_GLOBAL;
    if (it > 0 && !eplb)
        return 0;
    if (b->have_pl)
        placement_free(&b->pl);
    if (it > 0)
        return balance_place(b->c, b->load, &b->pl, &b->have_pl);
    struct routing_in in = b->in;
    in.bias = b->bias;
    in.iteration = 0;
    return balance_place_for(&in, &b->pl, &b->have_pl);
}

/* Forward time of each GPU's routed experts: one GEMM chain per physical slot. */
static int expert_times(const struct config *c, const struct routing *r, double *max_s,
                        double *mean_s)
{
    struct config mc = *c;
    struct model m;
    struct compute *cm = NULL;
    struct cfg_err err;
    *max_s = *mean_s = NAN;
    mc.model.first_dense_layers = 0;    /* only the expert op is asked for */
    mc.model.moe_every = 1;
    if (mc.model.ffn_hidden < 1)
        mc.model.ffn_hidden = 1;
    if (c->model.expert_ffn_hidden < 1 || model_init(&m, &mc) || compute_create(&cm, c, &err))
        return 0;
    struct compute_t *gpu = malloc((size_t)r->gpus * sizeof(*gpu));
    if (!gpu) {
        compute_free(cm);
        return -ENOMEM;
    }
    compute_routed_experts(cm, &m, r, gpu);
    *max_s = *mean_s = 0;
    for (int i = 0; i < r->gpus; i++) {
        *max_s = fmax(*max_s, gpu[i].f_s);
        *mean_s += gpu[i].f_s / r->gpus;
    }
    free(gpu);
    compute_free(cm);
    return 0;
}

/* The measured iteration's collectives and expert time. */
static int measure(struct balance_result *out, const struct config *c, const struct routing *r)
{
    struct topo *t = NULL;
    struct traffic d = { 0 }, cb = { 0 };
    struct a2a_result ad, ac;
    memset(&ad, 0, sizeof(ad));
    memset(&ac, 0, sizeof(ac));
    int rc = topo_create(&t, &c->cluster);
    if (!rc)
        rc = traffic_moe(&d, &cb, r, c);
    if (!rc)
        rc = a2a_run(&ad, t, &d, 0.0, false);
    if (!rc)
        rc = a2a_run(&ac, t, &cb, ad.time_s, false);
    if (!rc) {
        out->dispatch_s = ad.time_s;
        out->combine_s = ac.time_s;
        out->nvlink_bytes = ad.nvlink_bytes + ac.nvlink_bytes;
        out->net_bytes = ad.net_bytes + ac.net_bytes;
        rc = expert_times(c, r, &out->expert_s, &out->expert_mean_s);
        out->layer_s = out->dispatch_s + out->expert_s + out->combine_s;
    }
    a2a_free(&ad);
    a2a_free(&ac);
    traffic_free(&d);
    traffic_free(&cb);
    topo_free(t);
    return rc;
}

/* The last iteration's per-expert counts and the replica count of each expert. */
static int keep_experts(struct balance_result *out, const struct routing *r,
                        const struct placement *pl)
{
    size_t n = (size_t)(r->gpus / r->ep) * r->experts;
    out->groups = r->gpus / r->ep;
    out->experts = r->experts;
    out->demand = malloc(n * sizeof(uint64_t));
    out->kept = malloc(n * sizeof(uint64_t));
    out->replicas = malloc((size_t)r->experts * sizeof(int));
    if (!out->demand || !out->kept || !out->replicas)
        return -ENOMEM;
    memcpy(out->demand, r->expert_demand, n * sizeof(uint64_t));
    memcpy(out->kept, r->expert_tokens, n * sizeof(uint64_t));
    for (int e = 0; e < r->experts; e++)
        out->replicas[e] = pl ? pl->replica0[e + 1] - pl->replica0[e] : 1;
    return 0;
}

/* Iteration it's per-expert counts into out->iter_demand, iter_kept (allocated for every
 * iteration at the first). */
static int keep_iter_experts(struct balance_result *out, const struct routing *r, int it)
{
    size_t n = (size_t)(r->gpus / r->ep) * r->experts;
    if (!out->iter_demand) {
        out->iter_demand = malloc((size_t)out->iterations * n * sizeof(uint64_t));
        out->iter_kept = malloc((size_t)out->iterations * n * sizeof(uint64_t));
        if (!out->iter_demand || !out->iter_kept)
            return -ENOMEM;
    }
    memcpy(out->iter_demand + (size_t)it * n, r->expert_demand, n * sizeof(uint64_t));
    memcpy(out->iter_kept + (size_t)it * n, r->expert_tokens, n * sizeof(uint64_t));
    return 0;
}

static void keep_summary(struct balance_result *out, const struct routing *r)
{
    out->drop_rate = r->drop_rate;
    out->expert_load_max_over_mean = r->expert_load_max_over_mean;
    out->gpu_load_max_over_mean = r->gpu_load_max_over_mean;
    out->node_load_max_over_mean = r->node_load_max_over_mean;
    out->nodes_per_token = r->nodes_per_token;
    out->experts_per_node_per_token = r->experts_per_node_per_token;
    out->redundant = r->nslots - r->experts;
}

/* routing.c's trace, loaded when the distribution is trace; *have says whether it was. */
static int load_trace(struct rtrace *t, bool *have, const struct config *c, struct cfg_err *err)
{
    *have = false;
    if (c->routing.distribution != DIST_TRACE)
        return 0;
    struct rtrace_err te;
    int rc = rtrace_load(t, c->routing.trace, config_gpus(c), c->model.experts, &te);
    if (rc == -EINVAL)
        snprintf(err->msg, sizeof(err->msg), "%.200s: routing.trace: %.1000s", c->routing.trace_src.where,
                 te.msg);
    *have = rc == 0;
    return rc;
}

bool balance_run_iterates(const struct config *c)
{
    return c->balance.bias_gamma > 0 && c->routing.distribution != DIST_TRACE;
}

int balance_bias_rounds(const struct config *c)
{
    return balance_run_iterates(c) ? c->balance.iterations : 0;
}

int balance_iterate(struct routing *r, const struct routing_in *in, struct balance_result *out,
                    struct placement *pl, bool *placed, const struct limits_progress *p)
{
    const struct config *c = in->c;
    struct bal b = { .c = c, .in = *in };
    int E = c->model.experts, n = c->balance.iterations;
    memset(r, 0, sizeof(*r));
    if (placed)
        *placed = false;
    b.load = calloc((size_t)E, sizeof(double));
    if (c->balance.bias_gamma > 0)
        b.bias = calloc((size_t)E, sizeof(double));
    int rc = b.load && (b.bias || c->balance.bias_gamma <= 0) ? 0 : -ENOMEM;
    for (int it = 0; !rc && it < n; it++) {
        routing_free(r);
        if ((rc = place(&b, it)))
            break;
        b.in.pl = b.have_pl ? &b.pl : NULL;
        b.in.bias = b.bias;
        b.in.iteration = it;
        if ((rc = routing_run(r, &b.in)))
            break;
        if (out) {
            out->iter[it] = (struct balance_iter){ r->expert_load_max_over_mean,
                                                   r->gpu_load_max_over_mean, r->drop_rate };
            if ((rc = keep_iter_experts(out, r, it)))
                break;
        }
        demand(r, b.load);
        if (b.bias)
            routing_bias_update(b.bias, r, c->balance.bias_gamma);
        limits_tick(p, (it + 1.0) / n, "iteration", it + 1, n);
    }
    if (rc)
        routing_free(r);
    if (!rc && pl && b.have_pl) {       /* handed over */
        *pl = b.pl;
        *placed = true;
    } else if (b.have_pl) {
        placement_free(&b.pl);
    }
    free(b.bias);
    free(b.load);
    return rc;
}

int balance_run(struct balance_result *out, const struct config *c, uint64_t seed,
                struct cfg_err *err)
{
    return balance_run_with(out, c, seed, err, NULL);
}

int balance_run_with(struct balance_result *out, const struct config *c, uint64_t seed,
                     struct cfg_err *err, const struct limits_progress *p)
{
    memset(out, 0, sizeof(*out));
    struct rtrace trace;
    struct placement pl;
    struct routing r;
    bool have_trace = false, placed = false;
    int E = c->model.experts, n = c->balance.iterations;
    memset(&r, 0, sizeof(r));
    out->iterations = n;
    out->iter = calloc((size_t)n, sizeof(*out->iter));
    int rc = out->iter ? 0 : -ENOMEM;
    if (!rc)
        rc = load_trace(&trace, &have_trace, c, err);
    struct routing_in in = { .c = c, .seed = seed, .trace = have_trace ? &trace : NULL };
    if (!rc)
        rc = balance_iterate(&r, &in, out, &pl, &placed, p);
    if (!rc) {
        keep_summary(out, &r);
        rc = keep_experts(out, &r, placed ? &pl : NULL);
        if (!rc)
            rc = measure(out, c, &r);
    }
    routing_free(&r);
    if (placed)
        placement_free(&pl);
    if (have_trace)
        rtrace_free(&trace);
    if (rc) {
        if (rc == -EINVAL && !err->msg[0])
            snprintf(err->msg, sizeof(err->msg), "balance.placement: %s cannot place %d experts "
                     "(+%d redundant) on EP groups of %d GPUs", config_place_name(c->balance.placement),
                     E, c->balance.redundant_experts, c->parallel.ep);
        balance_free(out);
    }
    return rc;
}

void balance_free(struct balance_result *r)
{
    free(r->iter);
    free(r->demand);
    free(r->kept);
    free(r->replicas);
    free(r->iter_demand);
    free(r->iter_kept);
    memset(r, 0, sizeof(*r));
}
