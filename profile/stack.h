/* stack.h: expert-parallel MoE layers stacked as a model runs them (moeprof --layers N).
 *
 * Block l takes the residual stream h_l [T x H] and gives h_{l+1} = h_l + moe_l(h_l),
 * moe_l being layer l's epl_forward; h_0 is the input x. The backward runs from the last
 * block to the first: dh_L = dout, and dh_l = dh_{l+1} + J_l^T dh_{l+1}, J_l the
 * Jacobian of moe_l at h_l, which is epl_backward's dx += with dx starting at dh_{l+1};
 * so each block's dx is the output gradient of the block below.
 * The residual is the transformer's (a pre-norm block without its norm and attention):
 * without it every layer's SwiGLU FFNs with 1/sqrt(fan-in) weights (tensors.h) shrink
 * the stream (tests/mpi_test_eplayer.c's layer, H 32, F 24: output RMS 0.024 to 0.056
 * for input RMS 0.58), the next gate's logits with it, and a deep stack would route on
 * the bias alone. With it, every layer's gate sees inputs of the scale its Zipf bias
 * was calibrated on (skew.h).
 * The residual add goes through host memory (ops->download, a float add, ops->upload:
 * the elem rounding of one add on every backend); it is between layers, in no phase.
 * Memory: 2 L buffers of T x H elems (h_1..h_L, dh_0..dh_{L-1}), 2 host T x H floats.
 */
#ifndef MOEPROF_STACK_H
#define MOEPROF_STACK_H

#include <stddef.h>

#include "eplayer.h"

struct stk {
    const struct moe_ops *ops;
    int (*copy)(void *dst, const void *src, size_t bytes);  /* epl_io.copy */
    int layers, tokens, hidden;
    struct epl **l;              /* [layers], borrowed */
    void **h;                    /* [layers + 1]: h[0] the input (borrowed), the rest owned */
    void **dh;                   /* [layers + 1]: dh[layers] = dout (borrowed), the rest owned */
    float *ha, *hb;              /* host [T x H] scratch */
};

/* For layers l[0..n) (borrowed; each built for the same tokens and hidden) on ops, with
 * copy moving bytes between any two buffers (NULL: host memcpy). 0, -EINVAL, -ENOMEM,
 * or the backend's error; on error *s is freed and zeroed. */
int stk_create(struct stk *s, const struct moe_ops *ops,
               int (*copy)(void *dst, const void *src, size_t bytes), struct epl **l, int n,
               int tokens, int hidden);
void stk_free(struct stk *s);                    /* zeroed *s is a no-op */

/* h_0 = x (borrowed until the backward is done), then every block; the output h_L is
 * stk_out. t: stamped with each block's layer (t->iter is the caller's); NULL untimed. */
int stk_forward(struct stk *s, const void *x, struct tmr *t);

/* After stk_forward: from dout (borrowed) down to dh_0 = stk_dx; adds into every
 * layer's gradients (epl_grads). */
int stk_backward(struct stk *s, const void *dout, struct tmr *t);

static inline const void *stk_out(const struct stk *s) { return s->h[s->layers]; }
static inline const void *stk_dx(const struct stk *s) { return s->dh[0]; }

#endif
