/* routing.h: the token -> expert choices of one MoE layer on every GPU, summarised as
 * counts: per GPU pair (the all-to-all), per expert and physical slot (the load), and
 * load-balance metrics.
 *
 * Layout: gpus = nodes * gpus_per_node, GPU s on node s / gpus_per_node. EP groups of ep
 * consecutive GPUs (GPU s in group s / ep) each hold every expert, in nslots physical
 * slots: slot x of group g is on GPU g * ep + x / (nslots / ep). The placement says which
 * expert each slot holds (NULL: contiguous, slot e holds expert e, nslots = experts).
 * Every GPU has tokens_per_gpu tokens; each picks top_k distinct experts of its own group
 * by the gating model of gating.h (popularity of the (layer, iteration), scores, bias,
 * node limit), in priority order.
 * Capacity (balance.capacity_factor f > 0; GShard, Lepikhin et al., arXiv:2006.16668,
 *   sec. 2.2; Switch Transformer, Fedus et al., arXiv:2101.03961, sec. 2.2): in each EP
 *   group, expert e keeps at most C = floor(f * A / E) assignments, A = the group's
 *   token-expert assignments (ep * tokens_per_gpu * top_k). They are kept in priority
 *   order, every token's first choice before any token's second choice (GShard's top-2
 *   gating), and within a choice by source GPU, then token; the rest are dropped (dropped).
 *   f = 0: dropless. Replicas share their expert's C: placement does not change which
 *   assignments the model computes.
 * Node limit (routing.max_nodes M, gating.h): the router's node groups are a property of
 *   the model, not of the placement: expert e belongs to its home node, that of GPU
 *   e * ep / E of the group (where contiguous puts it; DeepSeek-V3's expert groups, one per
 *   node, which the hierarchical eplb keeps on their node unless balance.expert_groups
 *   exceeds the nodes).
 * Replicas: the j-th kept assignment (j = 0, 1, ...) of expert e from source GPU s goes
 *   to replica (s + j) mod r of the r replicas (in slot order) it may use: all of them, or
 *   under a node limit those on the token's nodes; if a placement moved all of e's
 *   replicas off the token's nodes, all of them (the token then reaches more than M nodes,
 *   as nodes_per_token_max shows). Each source splits its tokens evenly, within one per
 *   replica.
 * Dedup (routing.dedup): a token counts once in pair_tokens per destination GPU however
 *   many of its kept experts are there, and once in src_node_tokens per destination node
 *   however many of its kept experts' GPUs are there; without, once per kept expert in
 *   both.
 * Trace (routing.distribution = trace): rtrace_at(trace, layer, iteration, s) is source
 *   s's demand. A trace has counts, not per-token sets or ranks, so there is no dedup
 *   (pair_tokens and src_node_tokens count assignments), capacity keeps by source GPU
 *   order alone, the token metrics are NaN, and source s's kept count n of expert e is
 *   split over its r replicas as above: n / r each, one more to the (n mod r) replicas
 *   from s mod r on. popularity is each expert's share of all the demand.
 * Streams: source GPU s draws from rng_seed_stream(seed, s + 2^21 iteration + 2^42 layer),
 *   so layer 0, iteration 0 is stream s, as routing_generate has always used; results do
 *   not depend on the order GPUs are visited. The popularity comes from the same seed
 *   (gating_popularity).
 * Cost: O(gpus * tokens * top_k) expected on the fast draws, O(gpus * tokens * experts)
 *   on scores (gating.h); twice the draws with capacity (one pass counts each choice
 *   rank's demand, the second keeps); memory O(gpus^2 + gpus * experts + top_k * experts).
 */
#ifndef MOESIM_ROUTING_H
#define MOESIM_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define ROUTING_EXPERTS_MAX (1 << 20)    /* gating.h's GATING_EXPERTS_MAX */

struct placement;
struct rtrace;

struct routing {
    int gpus, experts, ep, top_k;
    int gpus_per_node;
    int nodes;                /* gpus / gpus_per_node */
    int nslots;               /* physical slots per EP group */
    int always;               /* routing_in.always: the last experts, picked by every token */
    /* gpus * gpus, [src * gpus + dst]: tokens src sends to dst (kept assignments, deduped
     * as above). Zero outside src's EP group. */
    uint64_t *pair_tokens;
    /* gpus * nodes, [src * nodes + node]: tokens src sends to a node (kept assignments,
     * deduped per node as above), its own node included: what a two-level dispatch sends
     * over the network once per remote node (traffic.h). Zero outside src's EP group. */
    uint64_t *src_node_tokens;
    /* (gpus / ep) * experts, [group * experts + e]: the assignments logical expert e of
     * EP group `group` was chosen for (expert_demand) and kept (expert_tokens); dropped =
     * demand - kept. Dropless, expert_tokens = expert_demand. */
    uint64_t *expert_demand, *expert_tokens, *dropped;
    uint64_t *src_demand;     /* gpus * experts, [s * experts + e]: demand from source s */
    uint64_t *slot_tokens;    /* (gpus / ep) * nslots: kept assignments per physical slot */
    uint64_t *gpu_tokens;     /* gpus: kept assignments (token-expert pairs) GPU computes */
    double *popularity;       /* experts, sums to 1: p of the (layer, iteration) */
    /* Summary. max_over_mean is max / mean over the items, 0 when they are all 0. */
    double drop_rate;                   /* sum dropped / sum demand (0 without demand) */
    double expert_load_max_over_mean;   /* over (group, logical expert), of demand */
    double gpu_load_max_over_mean;      /* over GPUs, of gpu_tokens */
    double node_load_max_over_mean;     /* over nodes, of their GPUs' gpu_tokens summed */
    double nodes_per_token;             /* mean over tokens of the distinct nodes holding
                                         * the slots of its kept assignments (0 if none) */
    double experts_per_node_per_token;  /* mean over (token, node it reaches) of its kept
                                         * assignments on that node = kept / node visits */
    int nodes_per_token_max;            /* most nodes any token reached; -1 for a trace */
};

/* A run's draws kept for a second run of the same tokens (routing_in.picks): the eplb
 * placements measure the experts' loads with one run and route with the placement those
 * give in a second (balance_route), which replays the first's picks instead of drawing
 * them again: the same picks, as the second run differs from the first in parallel.ep
 * and the placement alone, which the gating does not read without a node limit. Kept
 * only without a node limit and a trace, and up to ROUTING_PICKS_MAX token-expert picks
 * (4 B each); else each run draws its own. Caller-owned: zeroed before the first run,
 * routing_picks_free after the last. */
#define ROUTING_PICKS_MAX (1u << 24)
struct routing_picks {
    int *chosen;              /* [(s * tokens_per_gpu + t) * top_k + j]: source s's token t */
    size_t n;                 /* entries */
    uint64_t seed;            /* of the run that drew them, with its layer and iteration */
    int layer, iteration;
    bool filled;              /* every token's picks are there */
};
void routing_picks_free(struct routing_picks *p);   /* zeroed is a no-op */

/* One routing run. The pointers are borrowed for the call. */
struct routing_in {
    const struct config *c;   /* cluster, model, parallel.ep, routing, balance.capacity_factor */
    const struct placement *pl; /* slots of each EP group; NULL: contiguous */
    const double *bias;       /* experts, finite: aux-loss-free bias (gating.h); NULL: none */
    int layer, iteration;     /* 0 .. 2^21 - 1 */
    uint64_t seed;
    const struct rtrace *trace; /* distribution = trace: its gpus and experts must match */
    /* The last `always` of the c->model.experts experts are picked by every token, after
     * its c->model.top_k - always drawn among the others (the gating sees only those):
     * the shared experts served as routed ones (config_shared_routed). Their demand,
     * replicas and all-to-all counts are the routed experts'; expert_load_max_over_mean
     * is over the drawn experts only. Not with capacity or a trace (-EINVAL). 0: none. */
    int always;
    struct routing_picks *picks; /* NULL; or empty: this run's picks are kept there; or
                                  * filled by a run of the same draws: replayed (above) */
};

/* Fill *r (overwritten, not freed: free an earlier result first). Returns 0; -EINVAL when
 * ep does not divide the GPUs or (without placement) the experts, experts is not in
 * 1..ROUTING_EXPERTS_MAX, top_k is not in 1..experts, tokens_per_gpu < 0, a routing or
 * balance value is out of range, layer or iteration is outside 0..2^21 - 1, the placement
 * does not match (experts, ep) or is not a valid slot map, the trace is missing, does not
 * match or lacks (layer, iteration), or max_nodes is set with a trace; -EOVERFLOW when a
 * count could pass 2^64 - 1; -ENOMEM. On error *r is zeroed. */
int routing_run(struct routing *r, const struct routing_in *in);

/* routing_run with no placement, no bias, layer 0, iteration 0 and no trace. */
int routing_generate(struct routing *r, const struct config *c, uint64_t seed);

/* DeepSeek-V3 (arXiv:2412.19437) sec. 2.1.2, aux-loss-free balancing, after a step: with
 * load_e = expert e's demand summed over the EP groups and mean its average over the
 * experts, bias[e] -= gamma when load_e > mean, += gamma when load_e < mean. */
void routing_bias_update(double *bias, const struct routing *r, double gamma);

void routing_free(struct routing *r);     /* frees the arrays, zeroes *r; zeroed *r is a no-op */

#endif
