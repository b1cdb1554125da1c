/* gate_cpu.h: the MoE router on the host in fp32: scores from gate logits, top-k
 * selection with an optional selection bias, routing weights, per-expert counts, the
 * auxiliary balance loss, and the backward from dL/dw (plus the aux loss) to
 * dL/dlogits. The formulas are those of moe.h. Plain loops: O(T E K) forward, O(T E)
 * backward; the gate GEMMs are the caller's. Nothing here allocates or fails.
 */
#ifndef MOESIM_GATE_CPU_H
#define MOESIM_GATE_CPU_H

#include <stdint.h>

#include "moe.h"

/* logits [T x E] -> scores [T x E], topk_idx and topk_w [T x K], counts [E], all
 * overwritten; *aux = L_aux (0 when c->aux_alpha == 0). bias: [E] or NULL. NaN
 * follows moe.h's rule: a softmax row with a NaN logit is NaN throughout, and a NaN
 * score + bias ranks above every number (ties among NaNs to the lower index), so K
 * distinct experts are always chosen and a NaN is never dropped. */
void gate_cpu_fwd(const struct moe_cfg *c, const float *bias, int tokens, const float *logits,
                  float *scores, int32_t *topk_idx, float *topk_w, int32_t *counts,
                  float *aux);

/* gate_cpu_fwd in two parts, for callers that split tokens across threads: _tokens
 * writes the scores, topk_idx and topk_w rows of tokens [t0, t1) and reads only their
 * logits rows, so disjoint ranges may run concurrently; _counts, once every row is
 * written, overwrites counts and *aux. Together they give gate_cpu_fwd's bits. */
void gate_cpu_fwd_tokens(const struct moe_cfg *c, const float *bias, int t0, int t1,
                         const float *logits, float *scores, int32_t *topk_idx,
                         float *topk_w);
void gate_cpu_fwd_counts(const struct moe_cfg *c, int tokens, const float *scores,
                         const int32_t *topk_idx, int32_t *counts, float *aux);

/* dtopk_w [T x K] = dL/dw -> dlogits [T x E] (overwritten), adding dL_aux/dlogits;
 * scores, topk_idx and counts as gate_cpu_fwd left them. */
void gate_cpu_bwd(const struct moe_cfg *c, int tokens, const float *scores,
                  const int32_t *topk_idx, const int32_t *counts, const float *dtopk_w,
                  float *dlogits);

/* gate_cpu_bwd's dlogits rows of tokens [t0, t1) of `tokens`; each row depends only on
 * its own token (and the shared counts), so disjoint ranges may run concurrently.
 * `tokens` and counts enter only the aux loss's gradient: a batch larger than the
 * rows given (moe.h: aux_counts, aux_tokens) passes its own. */
void gate_cpu_bwd_tokens(const struct moe_cfg *c, int tokens, int t0, int t1,
                         const float *scores, const int32_t *topk_idx, const int32_t *counts,
                         const float *dtopk_w, float *dlogits);

#endif
