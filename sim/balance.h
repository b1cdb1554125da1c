/* balance.h: one routing and balancing policy on one MoE layer, over iterations, and
 * what it does to load, traffic and time.
 *
 * The policy is the config: [routing] (distribution, scoring, max_nodes, ...) and
 * [balance] (capacity_factor, bias_gamma, iterations, placement, redundant_experts,
 * expert_groups).
 * Layer 0 is routed `iterations` times (routing.h; the popularity drifts between
 * iterations when routing.drift > 0). Between iterations:
 *   - bias_gamma > 0: the aux-loss-free bias is updated from the iteration's loads
 *     (routing_bias_update; DeepSeek-V3, arXiv:2412.19437, sec. 2.1.2);
 *   - eplb placements are rebuilt from the loads just observed (EPLB's use: place for the
 *     next steps from the loads of the last ones); the first iteration's placement comes
 *     from a routing pass under contiguous placement with the same seed.
 * The last iteration is the one measured: its dispatch and combine run through the
 * network model (a2a.h) one after the other, and each GPU's routed-expert forward GEMMs
 * (one per physical slot, compute.h) give the expert time of the slowest GPU.
 * balance_iterate is that loop for any layer; `moesim run` (a layer, and each MoE layer of
 * a step with its own bias) routes through it when the bias applies (balance_run_iterates),
 * so that a run sees the bias at the state `moesim balance` measures.
 */
#ifndef MOESIM_BALANCE_H
#define MOESIM_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct limits_progress;
struct placement;
struct routing;
struct routing_in;

struct balance_iter {
    double expert_load_max_over_mean, gpu_load_max_over_mean, drop_rate;
};

struct balance_result {
    int iterations;
    struct balance_iter *iter;          /* iterations, owned */
    /* the last iteration (routing.h defines them) */
    double drop_rate, expert_load_max_over_mean, gpu_load_max_over_mean;
    double node_load_max_over_mean, nodes_per_token, experts_per_node_per_token;
    uint64_t nvlink_bytes, net_bytes;   /* dispatch + combine */
    double dispatch_s, combine_s;
    double expert_s;                    /* slowest GPU's routed-expert forward; NaN when
                                         * the model has no expert_ffn_hidden */
    double expert_mean_s;               /* mean over GPUs */
    double layer_s;                     /* dispatch + expert_s + combine */
    int redundant;                      /* replicas beyond one per expert, per EP group */
    /* per (EP group, logical expert) of the last iteration, [group * experts + e] */
    int groups, experts;
    uint64_t *demand, *kept;            /* owned; dropped = demand - kept */
    int *replicas;                      /* experts: replicas of each expert (1 without) */
    /* the same counts of every iteration, [(it * groups + g) * experts + e]; owned */
    uint64_t *iter_demand, *iter_kept;
};

/* 0; -EINVAL with err->msg set (bad trace: "file:line: what"; a layout the policy cannot
 * use); -ENOMEM. c borrowed. On error *r is zeroed. */
int balance_run(struct balance_result *r, const struct config *c, uint64_t seed,
                struct cfg_err *err);
/* balance_run telling p (limits.h; borrowed, may be NULL) each iteration done. */
int balance_run_with(struct balance_result *r, const struct config *c, uint64_t seed,
                     struct cfg_err *err, const struct limits_progress *p);
void balance_free(struct balance_result *r);    /* zeroed *r is a no-op */

/* Routes in->c's policy over its balance.iterations rounds as above: round i is `in` (its
 * c, seed, layer and trace; in->pl, in->bias and in->iteration are ignored) at iteration
 * i, with the bias after i updates and the placement of round i. The last round stays in
 * *r (free with routing_free). out (may be NULL: balance_run's result, its iter
 * allocated) gets every round's loads and per-expert demand and kept tokens; pl (may be NULL) takes ownership of the last round's placement when *placed is
 * set (free with placement_free); p (may be NULL) hears of each round. Cost: iterations
 * routing runs (one more under an eplb placement). 0; -EINVAL, -ENOMEM as routing_run and
 * balance_place; on error *r is zeroed and *placed false. */
int balance_iterate(struct routing *r, const struct routing_in *in, struct balance_result *out,
                    struct placement *pl, bool *placed, const struct limits_progress *p);

/* Whether `moesim run` routes c through balance_iterate: balance.bias_gamma > 0 on drawn
 * routing. A routing trace has counts, not scores (routing.h): no bias can move them, so
 * a replayed trace routes as without bias. */
bool balance_run_iterates(const struct config *c);
/* The routing rounds of the bias before and including the one a run measures:
 * balance.iterations when balance_run_iterates, else 0 (the run CSVs' bias_rounds). */
int balance_bias_rounds(const struct config *c);

/* The placement c->balance asks for, from per-expert loads (experts entries, summed over
 * the EP groups; used by the eplb kinds only, may be NULL otherwise). Contiguous is
 * routing's own layout: *placed = false and nothing to free. Else *placed = true and pl
 * is freed with placement_free. 0, -EINVAL, -ENOMEM. */
int balance_place(const struct config *c, const double *load, struct placement *pl,
                  bool *placed);

/* The same, for the routing `in` (in->pl is ignored): the eplb kinds balance the demand
 * of a first routing pass of `in` itself under contiguous placement, so EPLB sees the
 * loads it is judged on (the most a placement from past statistics could achieve). */
int balance_place_for(const struct routing_in *in, struct placement *pl, bool *placed);

/* routing_run of `in` (in->pl and in->picks are ignored) with the placement
 * balance_place_for gives; the eplb kinds' second pass replays the first's draws
 * (routing.h, struct routing_picks): the same result at the cost of one draw. 0, or
 * balance_place_for's or routing_run's error. */
int balance_route(struct routing *r, const struct routing_in *in);

#endif
