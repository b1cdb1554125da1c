/* tensors.h: the seeded tensors of a measured layer: weights, their gradients, the
 * input tokens and the output gradient. Every value comes from its own stream of
 * sim/rng.h, named by (seed, layer, tensor, index), so every rank draws the same
 * weights for an expert without communication, and a one-process run draws the same
 * inputs as the ranks together (rank r's tokens are global tokens [r T, (r + 1) T)).
 * Values are uniform in (-a, a): a = 1/sqrt(fan-in) for weights, 1 for x and dout.
 * Buffers are backend memory (ops->alloc), filled through ops->upload.
 */
#ifndef MOEPROF_TENSORS_H
#define MOEPROF_TENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "moe.h"

enum tns_kind { TNS_GATE, TNS_W1, TNS_W3, TNS_W2, TNS_SW1, TNS_SW3, TNS_SW2, TNS_X, TNS_DOUT };

/* n values of (seed, layer, kind, index) into host p. */
void tns_draw(float *p, size_t n, float a, uint64_t seed, int layer, enum tns_kind kind,
              int64_t index);

/* Weights (or, with grads, zeroed gradients of the same shapes) for the experts with
 * held[e] true (held NULL: all), the gate and every shared expert. 0, -ENOMEM, or the
 * backend's error; on error everything is freed and *w zeroed. */
int tns_weights(struct moe_weights *w, const struct moe_ops *ops, const struct moe_cfg *c,
                const bool *held, bool grads, uint64_t seed, int layer);
void tns_weights_free(struct moe_weights *w, const struct moe_ops *ops, const struct moe_cfg *c);

/* rows x hidden values of kind (TNS_X or TNS_DOUT) for global tokens [first, first +
 * rows) into backend buffer *out (allocated here). */
int tns_tokens(void **out, const struct moe_ops *ops, int rows, int hidden, int64_t first,
               enum tns_kind kind, uint64_t seed, int layer);

#endif
