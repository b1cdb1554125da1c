/* routing.c: one MoE layer's routing as counts; see routing.h for the model.
 *
 * Per EP group: the slot layout (placement or contiguous) and, under a node limit, which
 * experts each of the group's nodes holds (handed to the gating); then its source GPUs in
 * order, each token picked by the gating and emitted: demand, capacity, replica, dedup,
 * node visits. With capacity a first pass over the group's tokens counts each (choice
 * rank, expert) demand; re-seeding the per-source streams replays the same tokens in the
 * second pass, which keeps assignment (rank j, expert e) iff the assignments ahead of it
 * in priority order, before[j][e] (all ranks < j) + seen[j][e] (rank j, earlier sources
 * and tokens), are fewer than C. O(top_k * experts) memory instead of every token's picks.
 */
#include "routing.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gating.h"
#include "placement.h"
#include "rng.h"
#include "rtrace.h"

_Static_assert(RTRACE_ERR_MAX == CFG_ERR_MAX, "a routing trace message fits a config one");

/* One routing_run. */
struct run {
    const struct routing_in *in;
    const struct config *c;
    struct routing *r;
    struct gating *gate;
    bool dedup, capped, limited;
    bool fast;                 /* dropless, one slot per expert, no node limit: emit_fast */
    uint64_t tokens;           /* per GPU */
    /* slots of one group */
    int per_gpu;               /* slots per GPU */
    const int *slot_expert, *rep0, *rep;
    int *slot_gpu;             /* nslots: x / per_gpu, the group's GPU of slot x */
    int *expert_gpu;           /* experts: GPU of its first replica */
    int *own;                  /* contiguous layout when no placement: the three above */
    /* the group being routed */
    int group, span;           /* span: nodes the group spans */
    int node0;                 /* global node of the group's first GPU */
    int *gpu_node;             /* ep: node (0 .. span-1 within the group) of its GPU j */
    int *built_node;           /* ep: gpu_node of the layout last given to the gating */
    int *node_first, *node_members, *node_fill; /* node -> home experts, scratch */
    uint64_t cap;              /* C of the group */
    uint64_t *before, *seen;   /* top_k * experts: capacity ranks, [j * experts + e] */
    /* the token being emitted */
    int *chosen, *nodes;
    uint64_t stamp;
    uint64_t *gpu_mark, *node_mark, *node_ok; /* ep, span, span: stamps */
    uint64_t *rep_next;        /* experts: kept assignments of e from the current source
                                * (node-limited), else (s + those) mod e's replicas */
    const int *replay;         /* in->picks' picks replayed, or NULL */
    int *record;               /* in->picks' picks being kept, or NULL */
    uint64_t recorded;         /* tokens whose picks are kept */
    /* totals */
    uint64_t routed, visits, kept;
    int visits_max;
};

/* Token stream of source GPU s: layer 0, iteration 0 gives stream s (routing.h). */
static uint64_t token_stream(int s, int layer, int iteration)
{
    return (uint64_t)s + ((uint64_t)iteration << 21) + ((uint64_t)layer << 42);
}

/* ---- checks ---- */

static bool placement_ok(const struct placement *p, int experts, int ep)
{
    if (p->experts != experts || p->ep != ep || p->slots_per_gpu < 1 ||
        p->nslots != ep * p->slots_per_gpu || !p->slot_expert || !p->replica0 ||
        !p->replica_slot || p->replica0[0] != 0 || p->replica0[experts] != p->nslots)
        return false;
    for (int e = 0; e < experts; e++) {
        if (p->replica0[e + 1] <= p->replica0[e])
            return false;
        for (int i = p->replica0[e]; i < p->replica0[e + 1]; i++) {
            int x = p->replica_slot[i];
            if (x < 0 || x >= p->nslots || p->slot_expert[x] != e)
                return false;
        }
    }
    return true;
}

static int check_routing(const struct routing_in *in)
{
    const struct cfg_routing *rc = &in->c->routing;
    double f = in->c->balance.capacity_factor;
    if (rc->distribution == DIST_TRACE) {
        const struct rtrace *t = in->trace;
        if (!t || rc->max_nodes || t->gpus != config_gpus(in->c) ||
            t->experts != in->c->model.experts || !rtrace_at(t, in->layer, in->iteration, 0))
            return -EINVAL;
    } else if (rc->distribution != DIST_UNIFORM && rc->distribution != DIST_ZIPF &&
               rc->distribution != DIST_AFFINITY) {
        return -EINVAL;
    }
    if (rc->distribution != DIST_UNIFORM && rc->distribution != DIST_TRACE &&
        !(isfinite(rc->zipf_s) && rc->zipf_s >= 0))
        return -EINVAL;
    if (rc->distribution == DIST_AFFINITY &&
        !(isfinite(rc->concentration) && rc->concentration > 0))
        return -EINVAL;
    if (!(rc->drift >= 0 && rc->drift <= 1) || rc->max_nodes < 0 || !(isfinite(f) && f >= 0))
        return -EINVAL;
    if (in->layer < 0 || in->layer >= GATING_INDEX_MAX || in->iteration < 0 ||
        in->iteration >= GATING_INDEX_MAX)
        return -EINVAL;
    return 0;
}

static int check_input(const struct routing_in *in, int *gpus)
{
    const struct config *c = in->c;
    long long g = (long long)c->cluster.nodes * c->cluster.gpus_per_node;
    int ep = c->parallel.ep, experts = c->model.experts, top_k = c->model.top_k;
    int64_t tokens = c->routing.tokens_per_gpu;

    if (c->cluster.nodes < 1 || c->cluster.gpus_per_node < 1 || g >= GATING_INDEX_MAX)
        return -EINVAL;
    if (ep < 1 || g % ep != 0 || experts < 1 || experts > ROUTING_EXPERTS_MAX)
        return -EINVAL;
    if (in->pl ? !placement_ok(in->pl, experts, ep) : experts % ep != 0)
        return -EINVAL;
    if (top_k < 1 || top_k > experts || tokens < 0)
        return -EINVAL;
    if (in->always < 0 || in->always >= top_k || in->always >= experts ||
        (in->always && (c->balance.capacity_factor > 0 ||
                        c->routing.distribution == DIST_TRACE)))
        return -EINVAL;
    int rc = check_routing(in);
    if (rc)
        return rc;
    /* Largest count: an expert receives up to ep * tokens * 1, a pair up to tokens * top_k. */
    if ((uint64_t)tokens > UINT64_MAX / (uint64_t)top_k / (uint64_t)ep)
        return -EOVERFLOW;
    if ((size_t)g > SIZE_MAX / sizeof(uint64_t) / (size_t)g)
        return -ENOMEM;
    *gpus = (int)g;
    return 0;
}

/* ---- setup ---- */

static int result_alloc(struct routing *r, const struct config *c, int gpus, int nslots,
                        int always)
{
    size_t groups = (size_t)(gpus / c->parallel.ep), experts = (size_t)c->model.experts;
    r->gpus = gpus;
    r->experts = c->model.experts;
    r->ep = c->parallel.ep;
    r->top_k = c->model.top_k;
    r->gpus_per_node = c->cluster.gpus_per_node;
    r->nodes = gpus / r->gpus_per_node;
    r->nslots = nslots;
    r->always = always;
    r->pair_tokens = calloc((size_t)gpus * gpus, sizeof(*r->pair_tokens));
    r->src_node_tokens = calloc((size_t)gpus * r->nodes, sizeof(*r->src_node_tokens));
    r->expert_demand = calloc(groups * experts, sizeof(*r->expert_demand));
    r->expert_tokens = calloc(groups * experts, sizeof(*r->expert_tokens));
    r->dropped = calloc(groups * experts, sizeof(*r->dropped));
    r->src_demand = calloc((size_t)gpus * experts, sizeof(*r->src_demand));
    r->slot_tokens = calloc(groups * (size_t)nslots, sizeof(*r->slot_tokens));
    r->gpu_tokens = calloc((size_t)gpus, sizeof(*r->gpu_tokens));
    r->popularity = calloc(experts, sizeof(*r->popularity));
    if (!r->pair_tokens || !r->src_node_tokens || !r->expert_demand || !r->expert_tokens ||
        !r->dropped || !r->src_demand || !r->slot_tokens || !r->gpu_tokens || !r->popularity)
        return -ENOMEM;
    return 0;
}

/* The slot layout: the placement's, or contiguous (slot e holds expert e). */
static int layout_init(struct run *u)
{
    const struct placement *p = u->in->pl;
    int experts = u->r->experts;
    if (p) {
        u->per_gpu = p->slots_per_gpu;
        u->slot_expert = p->slot_expert;
        u->rep0 = p->replica0;
        u->rep = p->replica_slot;
        return 0;
    }
    u->own = malloc(((size_t)experts * 2 + 1) * sizeof(*u->own));
    if (!u->own)
        return -ENOMEM;
    for (int e = 0; e < experts; e++) {
        u->own[e] = e;                       /* slot_expert and replica_slot */
        u->own[experts + e] = e;             /* replica0 */
    }
    u->own[2 * experts] = experts;
    u->per_gpu = experts / u->r->ep;
    u->slot_expert = u->rep = u->own;
    u->rep0 = u->own + experts;
    return 0;
}

static int scratch_init(struct run *u)
{
    int ep = u->r->ep, experts = u->r->experts, k = u->r->top_k;
    u->gpu_node = calloc((size_t)ep, sizeof(*u->gpu_node));
    u->built_node = calloc((size_t)ep, sizeof(*u->built_node));
    u->node_first = calloc((size_t)ep + 1, sizeof(*u->node_first));
    u->node_members = calloc((size_t)experts, sizeof(*u->node_members));
    u->node_fill = calloc((size_t)ep, sizeof(*u->node_fill));
    u->slot_gpu = calloc((size_t)u->r->nslots, sizeof(*u->slot_gpu));
    u->expert_gpu = calloc((size_t)experts, sizeof(*u->expert_gpu));
    u->chosen = calloc((size_t)k, sizeof(*u->chosen));
    u->nodes = calloc((size_t)ep, sizeof(*u->nodes));
    u->gpu_mark = calloc((size_t)ep, sizeof(*u->gpu_mark));
    u->node_mark = calloc((size_t)ep, sizeof(*u->node_mark));
    u->node_ok = calloc((size_t)ep, sizeof(*u->node_ok));
    u->rep_next = calloc((size_t)experts, sizeof(*u->rep_next));
    if (!u->gpu_node || !u->built_node || !u->node_first || !u->node_members ||
        !u->node_fill || !u->chosen || !u->nodes || !u->gpu_mark || !u->node_mark ||
        !u->node_ok || !u->rep_next || !u->slot_gpu || !u->expert_gpu)
        return -ENOMEM;
    for (int x = 0; x < u->r->nslots; x++)
        u->slot_gpu[x] = x / u->per_gpu;
    u->fast = !u->capped && !u->limited && u->r->nslots == experts;
    for (int e = 0; e < experts; e++)
        u->expert_gpu[e] = u->slot_gpu[u->rep[u->rep0[e]]];
    if (u->capped) {
        u->before = calloc((size_t)k * experts, sizeof(*u->before));
        u->seen = calloc((size_t)k * experts, sizeof(*u->seen));
        if (!u->before || !u->seen)
            return -ENOMEM;
    }
    return 0;
}

/* The gating draws among the experts not always picked (routing_in.always): its
 * popularity is theirs, as without the always-picked ones. */
static int gate_init(struct run *u)
{
    const struct config *c = u->c;
    struct config drawn = *c;
    drawn.model.experts -= u->in->always;
    drawn.model.top_k -= u->in->always;
    int rc = gating_popularity(u->r->popularity, &drawn, u->in->layer, u->in->iteration,
                               u->in->seed);
    if (rc)
        return rc;
    struct gating_spec s = {
        .experts = drawn.model.experts, .top_k = drawn.model.top_k,
        .distribution = c->routing.distribution, .popularity = u->r->popularity,
        .concentration = c->routing.concentration, .scoring = c->routing.scoring,
        .bias = u->in->bias, .max_nodes = c->routing.max_nodes, .ordered = u->capped,
    };
    return gating_create(&u->gate, &s);
}

static void run_free(struct run *u)
{
    gating_free(u->gate);
    free(u->own);
    free(u->gpu_node);
    free(u->built_node);
    free(u->node_first);
    free(u->node_members);
    free(u->node_fill);
    free(u->slot_gpu);
    free(u->expert_gpu);
    free(u->chosen);
    free(u->nodes);
    free(u->gpu_mark);
    free(u->node_mark);
    free(u->node_ok);
    free(u->rep_next);
    free(u->before);
    free(u->seen);
}

/* The group's nodes: gpu_node[] and span; under a node limit, when they differ from the
 * layout the gating has, each node's experts by home node (routing.h: expert e's home is
 * GPU e * ep / E of the group) go to the gating, grouped by a counting sort. */
static int group_nodes(struct run *u, int group)
{
    int ep = u->r->ep, gpn = u->r->gpus_per_node, lo = group * ep;
    int experts = u->r->experts - u->in->always;     /* the gating's */
    bool same = group > 0;
    u->group = group;
    u->node0 = lo / gpn;
    for (int j = 0; j < ep; j++) {
        u->gpu_node[j] = (lo + j) / gpn - lo / gpn;
        same &= u->gpu_node[j] == u->built_node[j];
    }
    u->span = u->gpu_node[ep - 1] + 1;
    if (!u->limited || same)
        return 0;
    memset(u->node_first, 0, ((size_t)u->span + 1) * sizeof(*u->node_first));
    for (int e = 0; e < experts; e++)
        u->node_first[u->gpu_node[(int64_t)e * ep / experts] + 1]++;
    for (int n = 0; n < u->span; n++)
        u->node_first[n + 1] += u->node_first[n];
    for (int e = 0, n; e < experts; e++) {        /* node_fill: next free place per node */
        n = u->gpu_node[(int64_t)e * ep / experts];
        u->node_members[u->node_first[n] + u->node_fill[n]++] = e;
    }
    memset(u->node_fill, 0, (size_t)u->span * sizeof(*u->node_fill));
    memcpy(u->built_node, u->gpu_node, (size_t)ep * sizeof(*u->gpu_node));
    return gating_set_nodes(u->gate, u->span, u->node_first, u->node_members, NULL);
}

/* ---- emitting assignments ---- */

/* Replica i of an expert (an index into rep) is on one of the token's nodes. */
static bool replica_on_nodes(const struct run *u, int i)
{
    return u->node_ok[u->gpu_node[u->slot_gpu[u->rep[i]]]] == u->stamp;
}

/* The slot of a kept assignment of e from source s (routing.h, "Replicas"): among the
 * replicas on the token's nodes when node-limited and there are some, else among all. */
static int replica(struct run *u, int s, int e)
{
    int r0 = u->rep0[e], nr = u->rep0[e + 1] - r0, ok = 0;
    if (!u->limited) {  /* (s + j) mod nr, stepped: no division, no branch on nr */
        uint64_t w = u->rep_next[e];
        u->rep_next[e] = w + 1 == (uint64_t)nr ? 0 : w + 1;
        return u->rep[r0 + (int)w];
    }
    if (nr == 1)
        return u->rep[r0];
    for (int i = r0; u->limited && i < r0 + nr; i++)
        ok += replica_on_nodes(u, i);
    bool any = ok == 0;
    uint64_t want = ((uint64_t)s + u->rep_next[e]++) % (uint64_t)(any ? nr : ok);
    for (int i = r0;; i++)
        if ((any || replica_on_nodes(u, i)) && want-- == 0)
            return u->rep[i];
}

/* Adds node nd to the token's nodes (mask for spans up to 64, stamps beyond); 1 if new. */
static inline int node_reach(uint64_t *mask, uint64_t *mark, uint64_t stamp, int span, int nd)
{
    if (span <= 64) {
        uint64_t bit = UINT64_C(1) << nd;
        int fresh = !(*mask & bit);
        *mask |= bit;
        return fresh;
    }
    int fresh = mark[nd] != stamp;
    mark[nd] = stamp;
    return fresh;
}

/* A token on the fast path (dropless, one slot per expert, no node limit): per-source
 * demand only; the group's demand, kept and slot counts follow from it (fast_totals).
 * The hot loop of routing: what it reads of *u is copied to locals first, as the
 * counter stores could alias it. */
static void emit_fast(struct run *u, int s)
{
    struct routing *r = u->r;
    const int k = r->top_k, span = u->span, *chosen = u->chosen;
    const int *expert_gpu = u->expert_gpu, *gpu_node = u->gpu_node;
    uint64_t *src = r->src_demand + (size_t)s * r->experts;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)u->group * r->ep;
    uint64_t *nrow = r->src_node_tokens + (size_t)s * r->nodes + u->node0;
    uint64_t *gpu_mark = u->gpu_mark;
    const uint64_t stamp = ++u->stamp, dup = !u->dedup;
    uint64_t mask = 0;
    int reached = 0;

    for (int j = 0; j < k; j++) {
        int e = chosen[j], g = expert_gpu[e];
        src[e]++;
        row[g] += dup | (gpu_mark[g] != stamp);   /* no branch to mispredict */
        gpu_mark[g] = stamp;
        int fresh = node_reach(&mask, u->node_mark, stamp, span, gpu_node[g]);
        nrow[gpu_node[g]] += dup | (uint64_t)fresh;
        reached += fresh;
    }
    u->kept += (uint64_t)k;
    u->visits += (uint64_t)reached;
    if (reached > u->visits_max)
        u->visits_max = reached;
}

/* One token of source s (global id) with its picks in u->chosen (nnodes nodes in
 * u->nodes when node-limited): capacity, replicas, every count. */
static void emit_token(struct run *u, int s, int nnodes)
{
    struct routing *r = u->r;
    const int n = r->experts, k = r->top_k, span = u->span, *chosen = u->chosen;
    const int *slot_gpu = u->slot_gpu, *gpu_node = u->gpu_node;
    size_t gE = (size_t)u->group * n;
    uint64_t *demand = r->expert_demand + gE, *kept_e = r->expert_tokens + gE;
    uint64_t *src = r->src_demand + (size_t)s * n;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)u->group * r->ep;
    uint64_t *nrow = r->src_node_tokens + (size_t)s * r->nodes + u->node0;
    uint64_t *slots = r->slot_tokens + (size_t)u->group * r->nslots;
    uint64_t *gpu_mark = u->gpu_mark;
    const uint64_t stamp = ++u->stamp, dup = !u->dedup, cap = u->cap;
    uint64_t mask = 0;
    int reached = 0, kept = 0;

    for (int i = 0; i < nnodes; i++)
        u->node_ok[u->nodes[i]] = stamp;
    for (int j = 0; j < k; j++) {
        int e = chosen[j];
        demand[e]++;
        src[e]++;
        if (u->capped) {
            size_t je = (size_t)j * n + e;
            if (u->before[je] + u->seen[je]++ >= cap) {
                r->dropped[gE + e]++;
                continue;
            }
        }
        kept++;
        kept_e[e]++;
        int x = replica(u, s, e), g = slot_gpu[x];
        slots[x]++;
        row[g] += dup | (gpu_mark[g] != stamp);
        gpu_mark[g] = stamp;
        int fresh = node_reach(&mask, u->node_mark, stamp, span, gpu_node[g]);
        nrow[gpu_node[g]] += dup | (uint64_t)fresh;
        reached += fresh;
    }
    u->kept += (uint64_t)kept;
    u->visits += (uint64_t)reached;
    if (reached > u->visits_max)
        u->visits_max = reached;
}

/* Source s's tokens: counted by choice rank (capacity's first pass) or emitted; their
 * picks drawn (and kept in in->picks) or replayed from in->picks. */
static void route_source(struct run *u, int s, bool count_only)
{
    struct rng rng;
    int k = u->r->top_k, nn = 0;
    size_t k_bytes = (size_t)k * sizeof(*u->chosen), at = (size_t)s * u->tokens * k;

    rng_seed_stream(&rng, u->in->seed, token_stream(s, u->in->layer, u->in->iteration));
    for (int e = 0; e < u->r->experts; e++)
        u->rep_next[e] = u->limited ? 0 : (uint64_t)s % (uint64_t)(u->rep0[e + 1] - u->rep0[e]);
    int drawn = k - u->in->always;
    for (int j = drawn; j < k; j++)       /* the always-picked experts: the last ones */
        u->chosen[j] = u->r->experts - k + j;
    for (uint64_t t = 0; t < u->tokens; t++, at += (size_t)k) {
        if (u->replay) {
            memcpy(u->chosen, u->replay + at, k_bytes);
        } else {
            nn = gating_pick(u->gate, &rng, u->chosen, u->nodes);
            if (u->record)
                memcpy(u->record + at, u->chosen, k_bytes);
        }
        if (count_only) {
            for (int j = 0; j < k; j++)
                u->before[(size_t)j * u->r->experts + u->chosen[j]]++;
            continue;
        }
        if (u->fast)
            emit_fast(u, s);
        else
            emit_token(u, s, nn);
    }
    if (!count_only)
        u->routed += u->tokens;
    if (!count_only && u->record)
        u->recorded += u->tokens;
}

/* top_k == experts on the fast path: each token reaches every expert and every GPU
 * and node of its group; counts in closed form, no draws. */
static void route_all(struct run *u, int s)
{
    struct routing *r = u->r;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)u->group * r->ep;
    uint64_t *nrow = r->src_node_tokens + (size_t)s * r->nodes + u->node0;
    uint64_t t = u->tokens;

    for (int g = 0; g < r->ep; g++) {
        row[g] += u->dedup ? t : t * (uint64_t)u->per_gpu;
        if (!u->dedup)
            nrow[u->gpu_node[g]] += t * (uint64_t)u->per_gpu;
        else if (g == 0 || u->gpu_node[g] != u->gpu_node[g - 1])
            nrow[u->gpu_node[g]] += t;
    }
    for (int e = 0; e < r->experts; e++)
        r->src_demand[(size_t)s * r->experts + e] += t;
    u->routed += t;
    u->kept += t * (uint64_t)r->experts;
    u->visits += t * (uint64_t)u->span;
    if (t && u->span > u->visits_max)
        u->visits_max = u->span;
}

/* The fast path's group counts from its sources' demand: nothing is dropped and expert
 * e's one slot gets all of it. */
static void fast_totals(struct run *u)
{
    struct routing *r = u->r;
    size_t gE = (size_t)u->group * r->experts;
    for (int s = u->group * r->ep; s < (u->group + 1) * r->ep; s++)
        for (int e = 0; e < r->experts; e++)
            r->expert_demand[gE + e] += r->src_demand[(size_t)s * r->experts + e];
    for (int e = 0; e < r->experts; e++) {
        r->expert_tokens[gE + e] = r->expert_demand[gE + e];
        r->slot_tokens[(size_t)u->group * r->nslots + u->rep[u->rep0[e]]] =
            r->expert_demand[gE + e];
    }
}

/* C = floor(f * A / E) of the group, A its assignments (routing.h). */
static uint64_t capacity_of(double f, uint64_t assignments, int experts)
{
    double c = floor(f * (double)assignments / experts);
    return c >= 0x1p64 ? UINT64_MAX : (uint64_t)c;
}

/* before[j][e]: the group's demand of (rank j, expert e) -> of all ranks below j. */
static void capacity_ranks(struct run *u)
{
    int n = u->r->experts;
    for (int e = 0; e < n; e++) {
        uint64_t below = 0;
        for (int j = 0; j < u->r->top_k; j++) {
            uint64_t here = u->before[(size_t)j * n + e];
            u->before[(size_t)j * n + e] = below;
            below += here;
        }
    }
    memset(u->seen, 0, (size_t)u->r->top_k * n * sizeof(*u->seen));
}

static void route_group(struct run *u)
{
    int ep = u->r->ep, lo = u->group * ep;
    bool all = u->fast && u->r->top_k == u->r->experts && !gating_scored(u->gate);
    if (u->capped) {
        memset(u->before, 0, (size_t)u->r->top_k * u->r->experts * sizeof(*u->before));
        for (int s = lo; s < lo + ep; s++)
            route_source(u, s, true);
        capacity_ranks(u);
        u->cap = capacity_of(u->c->balance.capacity_factor,
                             (uint64_t)ep * u->tokens * (uint64_t)u->r->top_k, u->r->experts);
    }
    for (int s = lo; s < lo + ep; s++) {
        if (all)
            route_all(u, s);
        else
            route_source(u, s, false);
    }
    if (u->fast)
        fast_totals(u);
}

/* ---- trace replay ---- */

/* n kept assignments of e from source s over e's replicas, as the per-token rule. */
static void trace_split(struct run *u, int s, int e, uint64_t n)
{
    struct routing *r = u->r;
    int r0 = u->rep0[e], nr = u->rep0[e + 1] - r0;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)u->group * r->ep;
    uint64_t *nrow = r->src_node_tokens + (size_t)s * r->nodes + u->node0;
    for (int i = 0; i < nr; i++) {
        /* replica i gets the j < n with (s + j) mod nr = i */
        uint64_t first = ((uint64_t)i + (uint64_t)nr - (uint64_t)s % (uint64_t)nr) % (uint64_t)nr;
        uint64_t share = n > first ? (n - first + (uint64_t)nr - 1) / (uint64_t)nr : 0;
        int x = u->rep[r0 + i];
        r->slot_tokens[(size_t)u->group * r->nslots + x] += share;
        row[x / u->per_gpu] += share;
        nrow[u->gpu_node[x / u->per_gpu]] += share;
    }
}

static void trace_group(struct run *u)
{
    struct routing *r = u->r;
    int ep = r->ep, lo = u->group * ep, n = r->experts;
    size_t gE = (size_t)u->group * n;
    uint64_t total = 0;
    for (int s = lo; s < lo + ep; s++) {
        const uint64_t *cnt = rtrace_at(u->in->trace, u->in->layer, u->in->iteration, s);
        for (int e = 0; e < n; e++) {
            r->expert_demand[gE + e] += cnt[e];
            r->src_demand[(size_t)s * n + e] = cnt[e];
            total += cnt[e];
        }
    }
    uint64_t cap = u->capped ? capacity_of(u->c->balance.capacity_factor, total, n) : UINT64_MAX;
    for (int s = lo; s < lo + ep; s++) {
        const uint64_t *cnt = rtrace_at(u->in->trace, u->in->layer, u->in->iteration, s);
        for (int e = 0; e < n; e++) {
            uint64_t room = cap - r->expert_tokens[gE + e];
            uint64_t keep = cnt[e] < room ? cnt[e] : room;
            r->expert_tokens[gE + e] += keep;
            r->dropped[gE + e] += cnt[e] - keep;
            trace_split(u, s, e, keep);
        }
    }
}

/* popularity = each expert's share of the demand (uniform when there is none). */
static void trace_popularity(struct routing *r)
{
    int groups = r->gpus / r->ep;
    double total = 0;
    for (int e = 0; e < r->experts; e++) {
        double d = 0;
        for (int g = 0; g < groups; g++)
            d += (double)r->expert_demand[(size_t)g * r->experts + e];
        r->popularity[e] = d;
        total += d;
    }
    for (int e = 0; e < r->experts; e++)
        r->popularity[e] = total > 0 ? r->popularity[e] / total : 1.0 / r->experts;
}

/* ---- summary ---- */

static double max_over_mean(const uint64_t *v, size_t n)
{
    double sum = 0, max = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)v[i];
        max = (double)v[i] > max ? (double)v[i] : max;
    }
    return sum > 0 ? max / (sum / (double)n) : 0;
}

/* max_over_mean of the first n of each of `rows` rows of w (n = w: of all of v). */
static double max_over_mean_rows(const uint64_t *v, size_t rows, size_t w, size_t n)
{
    double sum = 0, max = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < n; j++) {
            double x = (double)v[i * w + j];
            sum += x;
            max = x > max ? x : max;
        }
    return sum > 0 ? max / (sum / (double)(rows * n)) : 0;
}

static int summarise(struct run *u, bool traced)
{
    struct routing *r = u->r;
    size_t groups = (size_t)(r->gpus / r->ep), ge = groups * r->experts;
    int nodes = r->gpus / r->gpus_per_node;
    uint64_t demand = 0, dropped = 0;
    for (size_t i = 0; i < ge; i++) {
        demand += r->expert_demand[i];
        dropped += r->dropped[i];
    }
    for (size_t g = 0; g < groups; g++)
        for (int x = 0; x < r->nslots; x++)
            r->gpu_tokens[g * r->ep + x / u->per_gpu] += r->slot_tokens[g * r->nslots + x];
    uint64_t *node_tokens = calloc((size_t)nodes, sizeof(*node_tokens));
    if (!node_tokens)
        return -ENOMEM;
    for (int s = 0; s < r->gpus; s++)
        node_tokens[s / r->gpus_per_node] += r->gpu_tokens[s];
    r->drop_rate = demand ? (double)dropped / (double)demand : 0;
    r->expert_load_max_over_mean = max_over_mean_rows(r->expert_demand, groups,
                                                      (size_t)r->experts,
                                                      (size_t)(r->experts - r->always));
    r->gpu_load_max_over_mean = max_over_mean(r->gpu_tokens, (size_t)r->gpus);
    r->node_load_max_over_mean = max_over_mean(node_tokens, (size_t)nodes);
    free(node_tokens);
    if (traced) {
        r->nodes_per_token = r->experts_per_node_per_token = NAN;
        r->nodes_per_token_max = -1;
        return 0;
    }
    r->nodes_per_token = u->routed ? (double)u->visits / (double)u->routed : 0;
    r->experts_per_node_per_token = u->visits ? (double)u->kept / (double)u->visits : 0;
    r->nodes_per_token_max = u->visits_max;
    return 0;
}

/* ---- API ---- */

static int run_groups(struct run *u, bool traced)
{
    int groups = u->r->gpus / u->r->ep, rc;
    for (int g = 0; g < groups; g++) {
        if ((rc = group_nodes(u, g)))
            return rc;
        if (traced)
            trace_group(u);
        else
            route_group(u);
    }
    if (traced)
        trace_popularity(u->r);
    return summarise(u, traced);
}

/* Replays in->picks when they are this run's, or keeps this run's picks there (routing.h,
 * struct routing_picks), or neither. */
static int picks_init(struct run *u, bool traced)
{
    struct routing_picks *p = u->in->picks;
    size_t n = (size_t)u->r->gpus * (size_t)u->tokens * (size_t)u->r->top_k;
    if (!p || traced || u->limited || n > ROUTING_PICKS_MAX)
        return 0;
    if (p->filled) {
        if (p->n == n && p->seed == u->in->seed && p->layer == u->in->layer &&
            p->iteration == u->in->iteration)
            u->replay = p->chosen;
        return 0;
    }
    routing_picks_free(p);
    if (!(p->chosen = malloc((n ? n : 1) * sizeof(*p->chosen))))
        return -ENOMEM;
    *p = (struct routing_picks){ .chosen = p->chosen, .n = n, .seed = u->in->seed,
                                 .layer = u->in->layer, .iteration = u->in->iteration };
    u->record = p->chosen;
    return 0;
}

void routing_picks_free(struct routing_picks *p)
{
    free(p->chosen);
    memset(p, 0, sizeof(*p));
}

int routing_run(struct routing *r, const struct routing_in *in)
{
    struct run u = { .in = in, .c = in->c, .r = r };
    int gpus, rc;
    bool traced = in->c->routing.distribution == DIST_TRACE;

    memset(r, 0, sizeof(*r));
    if ((rc = check_input(in, &gpus)))
        return rc;
    u.dedup = in->c->routing.dedup;
    u.capped = in->c->balance.capacity_factor > 0;
    u.limited = !traced && in->c->routing.max_nodes > 0;
    u.tokens = (uint64_t)in->c->routing.tokens_per_gpu;
    rc = result_alloc(r, in->c, gpus, in->pl ? in->pl->nslots : in->c->model.experts,
                      in->always);
    if (!rc)
        rc = layout_init(&u);
    if (!rc)
        rc = scratch_init(&u);
    if (!rc && !traced)
        rc = gate_init(&u);
    if (!rc)
        rc = picks_init(&u, traced);
    if (!rc)
        rc = run_groups(&u, traced);
    if (!rc && u.record)        /* top_k = experts draws nothing: then not all are kept */
        in->picks->filled = u.recorded == (uint64_t)gpus * u.tokens;
    run_free(&u);
    if (rc)
        routing_free(r);
    return rc;
}

int routing_generate(struct routing *r, const struct config *c, uint64_t seed)
{
    struct routing_in in = { .c = c, .seed = seed };
    return routing_run(r, &in);
}

void routing_bias_update(double *bias, const struct routing *r, double gamma)
{
    int groups = r->gpus / r->ep, n = r->experts - r->always;   /* the drawn experts */
    double total = 0;
    for (int g = 0; g < groups; g++)
        for (int e = 0; e < n; e++)
            total += (double)r->expert_demand[(size_t)g * r->experts + e];
    double mean = total / n;
    for (int e = 0; e < n; e++) {
        double load = 0;
        for (int g = 0; g < groups; g++)
            load += (double)r->expert_demand[(size_t)g * r->experts + e];
        if (load > mean)
            bias[e] -= gamma;
        else if (load < mean)
            bias[e] += gamma;
    }
}

void routing_free(struct routing *r)
{
    free(r->pair_tokens);
    free(r->src_node_tokens);
    free(r->expert_demand);
    free(r->expert_tokens);
    free(r->dropped);
    free(r->src_demand);
    free(r->slot_tokens);
    free(r->gpu_tokens);
    free(r->popularity);
    memset(r, 0, sizeof(*r));
}
