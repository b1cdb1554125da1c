/* force.h: forced routing, the token-expert assignments of a routing trace replayed
 * through the real layer in place of the gate's top-k (routing.distribution = trace).
 *
 * A trace keeps counts per (source rank, expert), not which token went where, so
 * frc_fill deals them out deterministically: the T K assignments, listed expert by
 * expert (count_e times e, e ascending), go to slot (t, k) = entry k T + t. Token t
 * gets entries t, T + t, 2 T + t, ...: one from each block of T consecutive entries, so
 * its K experts are distinct whenever every count is at most T (an expert's entries are
 * consecutive), and they come in increasing expert order.
 *
 * frc_apply overwrites the choice of a routed ctx (after ops->route) with the given
 * one: topk_idx; the weights from the gate's own scores by moe.h's formula
 * (w_t,k = route_scale s_t,e_k [/ sum_j s_t,e_j if norm_topk]); counts, offsets and the
 * permutation in moe.h's layout (grouped by expert, token order). The backward then
 * differentiates these weights through the gate as it would the gate's own choice.
 * The ctx must be host memory (the CPU backend). Cost O(T K + E); nothing allocates.
 */
#ifndef MOEPROF_FORCE_H
#define MOEPROF_FORCE_H

#include <stdint.h>

#include "moe.h"

/* idx [tokens x top_k] from counts [experts]. 0; -EINVAL when the counts do not add up
 * to tokens x top_k or one passes tokens (an expert can take a token once). */
int frc_fill(int32_t *idx, const uint64_t *counts, int experts, int tokens, int top_k);

/* ctx's routing := idx [ctx->tokens x K] (borrowed, read only). 0; -EINVAL when an
 * expert id is out of range or appears twice in a token, or the aux loss is on (its
 * counts would change; ctx unchanged then). */
int frc_apply(struct moe_ctx *ctx, const int32_t *idx);

#endif
