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
 * frc_route computes the same on host arrays, for a ctx in device memory: the caller
 * copies the scores out and the routing arrays back (eplayer.c does so on every
 * backend). Cost O(T K + E); nothing allocates.
 */
#ifndef MOEPROF_FORCE_H
#define MOEPROF_FORCE_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

/* idx [tokens x top_k] from counts [experts]. 0; -EINVAL when the counts do not add up
 * to tokens x top_k or one passes tokens (an expert can take a token once). */
int frc_fill(int32_t *idx, const uint64_t *counts, int experts, int tokens, int top_k);

/* ctx's routing := idx [ctx->tokens x K] (borrowed, read only); the ctx in host
 * memory. 0; -EINVAL when an expert id is out of range or appears twice in a token, or
 * the aux loss is on (its counts would change; ctx unchanged then). */
int frc_apply(struct moe_ctx *ctx, const int32_t *idx);

/* The routing arrays of a forced routing, host memory, moe.h's shapes for T tokens. */
struct frc_out {
    int32_t *topk_idx;           /* [T K] */
    float *topk_w;               /* [T K] */
    int32_t *counts;             /* [E] */
    int32_t *offsets;            /* [E + 1] */
    int32_t *slot_pos, *perm_slot;   /* [T K] */
    int32_t *cursor;             /* [E] scratch */
};

/* frc_apply's arrays for idx [tokens x K] from the gate's scores [tokens x E] (host
 * copies); the same checks and errors, nothing written on error. */
int frc_route(const struct moe_cfg *c, int tokens, const int32_t *idx, const float *scores,
              const struct frc_out *o);

/* Host scratch for frc_apply_copy, sized for max_tokens tokens. */
struct frc_host {
    float *scores;               /* [T x E] */
    struct frc_out o;
};
int frc_host_create(struct frc_host *h, int max_tokens, int top_k, int experts); /* 0, -ENOMEM */
void frc_host_free(struct frc_host *h);          /* zeroed *h is a no-op */

/* frc_apply on a ctx in any memory (a device's too): the scores to h through copy
 * (bytes; host or backend memory either side, done on return), frc_route, the
 * routing arrays back; host_counts, host_offsets set; the gate's own top-k is
 * overwritten. 0, frc_route's -EINVAL, or copy's error. O(T E) bytes moved. */
int frc_apply_copy(struct moe_ctx *ctx, const int32_t *idx,
                   int (*copy)(void *dst, const void *src, size_t bytes),
                   const struct frc_host *h);

#endif
