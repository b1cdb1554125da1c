/* routing.h: synthetic token -> expert choices of one MoE layer on every GPU,
 * summarised as counts.
 *
 * Layout: gpus = nodes * gpus_per_node; GPUs form gpus/ep EP groups of ep
 * consecutive GPUs (GPU s is in group s / ep). Each group holds all `experts`
 * experts, placed contiguously: expert e of group g lives on GPU
 * g * ep + e / (experts / ep).
 * Every GPU has tokens_per_gpu tokens; each token picks top_k distinct experts of
 * its own group by successive draws without replacement from `popularity`
 * (uniform: 1/E each; zipf: p = rank^-s / H(E, s), the rank of each expert,
 * 1 = most popular, given by a seeded random permutation shared by all groups).
 * Source GPU s draws from its own stream, rng_seed_stream(seed, s), so the result
 * does not depend on the order GPUs are visited. Cost: O(gpus * tokens * top_k)
 * expected, O(experts) memory besides the result.
 */
#ifndef MOESIM_ROUTING_H
#define MOESIM_ROUTING_H

#include <stdint.h>

#include "config.h"

#define ROUTING_EXPERTS_MAX (1 << 20)    /* keeps the integer weights of routing.c exact */

struct routing {
    int gpus, experts, ep, top_k;
    /* gpus * gpus, [src * gpus + dst]: tokens src sends to dst. With dedup a token
     * counts once per destination GPU however many of its experts are there;
     * without, once per chosen expert. Zero outside src's EP group. Owned. */
    uint64_t *pair_tokens;
    /* (gpus / ep) * experts, [group * experts + e]: token-expert assignments expert
     * e of EP group `group` receives. Owned. */
    uint64_t *expert_tokens;
    double *popularity;       /* experts, sums to 1: P(a single draw picks e). Owned. */
};

/* Fill *r (overwritten, not freed: free an earlier result first) from c->cluster
 * (nodes, gpus_per_node), c->model (experts, top_k), c->parallel.ep and c->routing
 * (tokens_per_gpu, distribution, zipf_s, dedup); borrows c for the call only.
 * Returns 0; -EINVAL when ep does not divide the GPUs or the experts, experts is
 * not in 1..ROUTING_EXPERTS_MAX, top_k is not in 1..experts, tokens_per_gpu < 0 or zipf_s is negative or not finite;
 * -EOVERFLOW when a count could pass 2^64 - 1; -ENOMEM. On error *r is zeroed. */
int routing_generate(struct routing *r, const struct config *c, uint64_t seed);

void routing_free(struct routing *r);     /* frees the arrays, zeroes *r; zeroed *r is a no-op */

#endif
