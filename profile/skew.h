/* skew.h: a configured routing skew (routing.distribution = zipf) made real in the
 * gate's own top-k.
 *
 * moesim's router (sim/gating.h) picks a token's top_k experts by successive sampling
 * from the popularity p, so expert e gets a share pi_e of the token-expert assignments
 * (pi_e <= 1/K; for K = 1, pi = p). skw_target estimates pi with that router itself, from
 * draws of a seeded stream. The real gate's logits come from its weights and the tokens,
 * not from p, so skw_calibrate finds a per-expert selection bias b (moe.h: it picks,
 * never weighs) under which the gate's top-k over a set of calibration tokens gives
 * each expert its share: b_e += step (pi_e - f_e), f the shares under b, with a step
 * that shrinks, keeping the b of least max_e |pi_e - f_e|. The layer's weights and
 * scores stay the gate's; only which experts win changes.
 * Cost: target, draws x O(E); calibration, one route of the calibration tokens (their
 * gate GEMM) and rounds x tokens x O(E K) for the top-k.
 */
#ifndef MOEPROF_SKEW_H
#define MOEPROF_SKEW_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "moe.h"

/* share[E] of the assignments under moesim's router with popularity p[E] (c: experts,
 * top_k, scoring), estimated from `draws` tokens of stream `seed`. 0, -EINVAL, -ENOMEM. */
int skw_target(double *share, const struct config *c, const double *p, int draws,
               uint64_t seed);

struct skw_fit {
    int rounds;                  /* rounds run */
    double err;                  /* max_e |share_e - f_e| of the bias kept */
};

/* bias[E] for weights w (its bias ignored) so that the top-k of x [tokens x H] (backend
 * memory) gives `share`; at most `rounds` rounds, stopping below tol. copy brings the
 * scores to the host (eplayer.h's epl_io.copy; NULL: they are host memory, CPU).
 * 0, -EINVAL, -ENOMEM, or the backend's error. */
int skw_calibrate(float *bias, struct skw_fit *fit, const struct moe_ops *ops,
                  int (*copy)(void *dst, const void *src, size_t bytes),
                  const struct moe_cfg *cfg, const struct moe_weights *w, const void *x,
                  int tokens, const double *share, int rounds, double tol);

#endif
