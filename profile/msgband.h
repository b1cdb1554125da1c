/* msgband.h: the all-to-all messages a configured MoE layer sends, per peer, which is
 * what `moeprof calibrate` fits its link figures to (fit.h's bands: MPI switches
 * protocol with the size, so one line over 8 B .. MiB misses the layer's sizes).
 *
 * moeprof's layer sends one row per (token, expert) (no per-GPU dedup, no capacity; the
 * forward dispatch, and the combine back the same rows), each row hidden x elem_bytes.
 * On one rank of an EP group of ep ranks, T = routing.tokens_per_gpu tokens x top_k
 * rows go to the experts; the rows for the m experts a peer holds (m = experts / ep,
 * rounded down for the fewest and up for the most when ep does not divide them) are
 *   T top_k hidden elem_bytes sum_{e on the peer} p_e
 * with p the routing's popularity (sim/gating.h: uniform 1/E; Zipf and affinity from
 * zipf_s). Whatever the placement, a peer's share lies between the sum of the m least
 * popular and the sum of the m most popular experts: the range [lo, hi] below. Top-k
 * without replacement flattens the shares, so the real range is inside it. Redundant
 * experts and trace routing are not looked at: the range is then the uniform size.
 * MPI-free; uses sim's config and gating.
 */
#ifndef MOEPROF_MSGBAND_H
#define MOEPROF_MSGBAND_H

#include <stdint.h>

#include "config.h"

struct mband_span {
    int ep;                   /* ranks of the EP group (parallel.ep) */
    double uniform_B;         /* bytes per peer under uniform routing; 0 when ep < 2 */
    double lo_B, hi_B;        /* the range over peers under the config's routing */
};

/* *s for config c (borrowed) and rows of elem_bytes per element; seed: the popularity's
 * ranking (its sorted shares, all that is used here, do not depend on it). 0, or
 * -EINVAL (no experts, a popularity gating refuses), -ENOMEM. */
int mband_layer(const struct config *c, int elem_bytes, uint64_t seed, struct mband_span *s);

#endif
