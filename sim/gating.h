/* gating.h: the router of one MoE layer: which top_k experts each token picks.
 *
 * Popularity p (experts, sums to 1) of a (layer, iteration), gating_popularity:
 *   uniform: p_e = 1/E. zipf and affinity: p_e = rank(e)^-s / H(E, s), s = zipf_s, ranks
 *   1..E from a seeded random permutation: one for all layers, or one per layer
 *   (routing.per_layer). Drift d (routing.drift): from iteration i - 1 to i, m = round(d E)
 *   experts drawn uniformly without replacement trade ranks by a uniform random
 *   permutation among themselves. d = 0: the ranking never changes; d = 1: a fresh,
 *   independent ranking every iteration. Every iteration's ranking is uniformly random, so
 *   each iteration alone is the same Zipf law; E[experts whose rank changes] = m - 1 for
 *   m >= 1 (a uniform permutation of m has one fixed point on average).
 * A token's logits l_e and scores s_e:
 *   uniform, zipf: l_e = log p_e + G_e, G_e independent standard Gumbel variates.
 *   affinity: l_e = log theta_e with the token's own preference theta ~ Dirichlet(alpha),
 *   alpha_e = concentration * E * p_e (concentration c per expert at uniform p). E[theta] = p
 *   for every c, Var(theta_e) = p_e (1 - p_e) / (c E + 1): large c, every token's theta
 *   is close to p and tokens pick alike (the top_k of p); small c, sharp favourites, and
 *   as c -> 0 the picks follow the successive-sampling law of p below.
 *   s = softmax(l) or sigmoid(l) (routing.scoring).
 * Selection: the top_k experts by s_e + b_e, highest first; that order is the token's
 *   priority order (first choice, second, ...). The bias b (DeepSeek-V3, arXiv:2412.19437,
 *   sec. 2.1.2, auxiliary-loss-free balancing) changes the selection only, never s.
 *   Node-limited (max_nodes M; DeepSeek-V3 sec. 2.1.2, after DeepSeek-V2's device-limited
 *   routing, arXiv:2405.04434 sec. 2.2.2): each node scores the sum of its q = max(1,
 *   top_k / M) highest s_e + b_e, the token keeps the M best nodes (ties: lower node) and
 *   picks its top_k among their experts. Which experts a node holds is the caller's
 *   (gating_set_nodes; routing.h groups them by home node). If the M nodes hold fewer than
 *   top_k distinct experts, the next nodes by value are added until they hold top_k
 *   (gating_set_nodes says when this cannot happen).
 * Without bias or node limit, uniform and zipf selections are successive draws without
 *   replacement from p (Gumbel-top-k: Kool, van Hoof & Welling, "Stochastic Beams and
 *   Where to Find Them", ICML 2019; Vieira, "Gumbel-max trick and weighted reservoir
 *   sampling", 2014), whatever the scoring (softmax and sigmoid keep the order of l).
 *   Then the picks come from the fast draws (no scores, gating.c), same law; else from
 *   the scores, O(E) per token.
 * Ties in s_e + b_e (underflow, equal biases) are broken by l_e, then by the lower expert.
 */
#ifndef MOESIM_GATING_H
#define MOESIM_GATING_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "rng.h"

#define GATING_EXPERTS_MAX (1 << 20)   /* keeps the integer weights of gating.c exact */
#define GATING_INDEX_MAX (1 << 21)     /* layers, iterations and GPUs are below this */

struct gating;                         /* opaque */

struct gating_spec {
    int experts, top_k;                /* 1 <= top_k <= experts <= GATING_EXPERTS_MAX */
    enum dist_kind distribution;       /* DIST_UNIFORM, DIST_ZIPF or DIST_AFFINITY */
    const double *popularity;          /* experts, each > 0, summing to 1; read at create */
    double concentration;              /* affinity: > 0 */
    enum score_kind scoring;
    const double *bias;                /* experts, finite, or NULL (all 0); copied */
    int max_nodes;                     /* 0: no node limit */
    bool ordered;                      /* picks must come in priority order (capacity) */
};

/* 0; -EINVAL on a bad spec; -ENOMEM. *out is NULL on error. */
int gating_create(struct gating **out, const struct gating_spec *s);

/* The nodes for node-limited picks (max_nodes > 0; until this is called there is no node
 * limit): node n holds the distinct experts experts[first[n] .. first[n+1]), first[0] = 0;
 * copied. Every expert must be on some node.
 * 0; -EINVAL on a bad layout; -ENOMEM. When no expert is on two nodes, any M nodes hold
 * top_k experts iff the M smallest do; *short_nodes (may be NULL) is set true when some M
 * nodes might not (then a token can reach more than M nodes, see above). */
int gating_set_nodes(struct gating *g, int nodes, const int *first, const int *experts,
                     bool *short_nodes);

bool gating_scored(const struct gating *g);     /* picks come from scores */

/* One token: its top_k experts into chosen[0..top_k), in priority order when ordered or
 * scored. With a node limit its nodes go to nodes_out[0..n) and n is returned (at least
 * 1, at most the nodes); without, 0 and nodes_out is not touched (may be NULL). Draws from r. */
int gating_pick(struct gating *g, struct rng *r, int *chosen, int *nodes_out);

/* The last scored token's s (experts); NULL when picks are not scored. Owned by g. */
const double *gating_scores(const struct gating *g);

void gating_free(struct gating *g);             /* NULL is a no-op */

/* p (experts) of (layer, iteration) for c->routing (distribution uniform, zipf or affinity;
 * zipf_s, per_layer, drift) and c->model.experts; O(E (iteration + 1)). 0; -EINVAL when
 * layer or iteration is outside [0, GATING_INDEX_MAX), the distribution is trace, or a
 * value is out of range; -ENOMEM. */
int gating_popularity(double *p, const struct config *c, int layer, int iteration,
                      uint64_t seed);

#endif
