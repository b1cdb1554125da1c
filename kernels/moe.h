/* moe.h: a Mixture-of-Experts layer, forward and backward, behind one backend-neutral
 * API. A backend (moe_cpu.h: fp32 on the host, the oracle; a CUDA twin: bf16 storage
 * with fp32 accumulation) is a `struct moe_ops` table of stages; moe_forward() and
 * moe_backward() chain them for one process, and an expert-parallel caller calls
 * them one by one with its own all-to-all in between.
 *
 * The layer, for token t with input x_t (H wide):
 *   logits  l_t = x_t W_g                                     W_g [H x E]
 *   scores  s_t = softmax(l_t) or sigmoid(l_t)   (cfg.score)
 *   choice  the K experts with the largest s_t,e + bias_e; ties go to the lower
 *           expert index; slot k = 0..K-1 in that order (deterministic)
 *   NaN     ranks above every number, NaNs tie (lower index first), as PyTorch's
 *           topk and sort order it (pytorch/pytorch#16762); a softmax row with a NaN
 *           logit is NaN throughout (so is one with +inf, or all -inf). A token whose
 *           router made a NaN is sent to that expert with a NaN weight, and its output
 *           row is NaN: the fault reaches the loss instead of being routed around. A
 *           NaN bias alone picks its expert but, being in no weight, stays out of the
 *           output. Every backend ranks this way (gate_cpu.c, gate.cu).
 *   weights w_t,k = route_scale * s_t,e_k [/ sum_j s_t,e_j if norm_topk]
 *           (the bias picks experts but never enters a weight: DeepSeek-V3's
 *           auxiliary-loss-free balancing, arXiv:2412.19437 sec. 2.1.2)
 *   out_t   = sum_k w_t,k FFN_e_k(x_t) + sum_s FFN_shared_s(x_t)
 *   FFN(x)  = (silu(x W1) * (x W3)) W2,  W1 and W3 [H x F], W2 [F x H],
 *           silu(a) = a sigmoid(a); F = cfg.ffn for routed experts, cfg.shared_ffn
 *           (Fs) for shared ones. S shared experts of width Fs are one of width S Fs
 *           whose W1, W3 are theirs side by side and W2 theirs stacked (the sum over
 *           s is the product over the concatenated inner dimension), so a model that
 *           counts its shared experts as one FFN of width ns fe (DeepSeek-V2/V3, and
 *           moesim's model.shared_experts x model.expert_ffn_hidden) maps to S = 1,
 *           Fs = ns fe, or equally S = ns, Fs = fe.
 * Aux loss (cfg.aux_alpha > 0): DeepSeek-V3's balance loss (arXiv:2412.19437 eqs.
 * 17-20) taken over the whole batch of T tokens:
 *   L_aux = alpha * sum_e f_e P_e,  f_e = E / (K T) * count_e,
 *   P_e = (1/T) sum_t s'_t,e,       s'_t,e = s_t,e / sum_j s_t,j
 * For softmax scores s' = s, and L_aux = alpha E sum_e (count_e / (K T)) P_e is
 * Switch's alpha N sum_i f_i P_i (Fedus et al., arXiv:2101.03961 eq. 4) with N = E and
 * f_i the fraction of the T*K token slots routed to i (for K = 1, of the tokens).
 * count_e (hence f_e) is a constant for the gradient, as in both papers: the loss
 * reaches the gate only through P.
 * The loss the backward differentiates is sum(out * dout) + L_aux.
 *
 * Layouts: every matrix is row-major and dense, [rows x cols], sizes in elements.
 * "elem" buffers (activations, weights, the input gradient dx) hold the backend's
 * element type (ops->elem_bytes: 4 = fp32 on CPU, 2 = bf16 on CUDA). "grad" buffers,
 * the weight gradients (every buffer of a gradient struct moe_weights), are fp32 on
 * every backend: a main_grad beside each weight, as Megatron-LM keeps for bf16
 * training, into which each backward adds in fp32, so that many micro-batches' small
 * updates add up (a bf16 sum at 1.0 drops any update below 2^-8 = 0.0039; fp32 keeps
 * down to 2^-24). Make them with ops->grad_alloc, move them with ops->grad_upload
 * and ops->grad_download. Routing arrays are fp32 / int32 on every backend. "Backend
 * memory" is host memory on CPU, device memory on CUDA; "host" arrays are host memory
 * everywhere.
 *
 * The permuted buffer (what the dispatch all-to-all sends): T*K rows, grouped by
 * expert in expert order; expert e owns rows [offsets[e], offsets[e] + counts[e]),
 * offsets being the exclusive prefix sum of counts (offsets[E] = T*K); inside a group
 * rows follow token order (stable). Slot (t, k) sits at row slot_pos[t*K + k]; row p
 * holds slot perm_slot[p], i.e. token perm_slot[p] / K.
 */
#ifndef MOESIM_MOE_H
#define MOESIM_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum moe_score { MOE_SCORE_SOFTMAX = 0, MOE_SCORE_SIGMOID = 1 };

struct moe_cfg {
    int hidden;                /* H */
    int ffn;                   /* F: intermediate width of every routed expert */
    int experts;               /* E: routed experts */
    int shared;                /* S >= 0: shared experts, weight 1 for every token */
    int top_k;                 /* K, 1 <= K <= E */
    enum moe_score score;
    bool norm_topk;            /* divide the K selected scores by their sum */
    float route_scale;         /* multiplies every routing weight; 1 = none */
    float aux_alpha;           /* >= 0; 0 = no aux loss */
    int shared_ffn;            /* Fs: intermediate width of every shared expert; 0 = F
                                  (the default: a cfg written before this field was
                                  added keeps its meaning). Last, so positional
                                  initializers of the fields above still fit. */
};

/* Weights (elem buffers) or their gradients (grad buffers: fp32, see Layouts; same
 * shapes). Pointer arrays are host arrays of backend-memory pointers, so a rank holds
 * only its experts: an entry may be NULL where the expert is not used here. Gradients
 * are accumulated (+=): zero them first. */
struct moe_weights {
    void *gate;                /* elem [H x E] (a gradient: fp32) */
    const float *bias;         /* fp32 [E] backend memory, or NULL; selection only, so
                                  no gradient (unused in a gradient struct) */
    void **w1, **w3;           /* [E] -> elem [H x F] */
    void **w2;                 /* [E] -> elem [F x H] */
    void **sw1, **sw3;         /* [S] -> elem [H x Fs]; NULL when S = 0 */
    void **sw2;                /* [S] -> elem [Fs x H]; NULL when S = 0 */
};

/* A run of expert groups back to back in one buffer: group g is rows[g] rows (from
 * row rows[0] + ... + rows[g-1]) through expert expert[g] (expert == NULL: first + g).
 * Host arrays. One process: n = E, first = 0, rows = host_counts. A rank of an
 * expert-parallel run: its experts, with the rows it received for each. */
struct moe_groups {
    int n;
    int first;
    const int32_t *expert;     /* [n] or NULL */
    const int32_t *rows;       /* [n], each >= 0 */
};

/* Gradient ordering. The stages that add into weight gradients (experts_bwd,
 * route_bwd, shared_bwd) read, add and write back. One ctx's stages are ordered (its
 * one CUDA stream; its one caller thread on CPU); two ctxs' are not. Two ctxs whose
 * backwards add into the same dw (micro-batches in flight, or a source ctx and an
 * experts ctx sharing a tensor) would race and lose updates on CUDA, where each ctx
 * runs on a stream of its own, and on CPU when called from two threads. Bind them to
 * one sync (ops->sync_create, ops->sync_bind): the accumulating stages of the ctxs
 * bound to one sync then run one after another, in the order the host called them,
 * and the sums are those one ctx would make running them all in that order. CUDA:
 * such a stage makes its stream wait for an event that the previous one recorded on
 * its own stream (the device waits, the host does not); CPU: it holds the sync's
 * mutex. Stages of unbound ctxs are ordered by nobody but their caller. A sync serves
 * the backend that made it. */
struct moe_grad_sync;          /* opaque */

/* Forward activations and routing, one per layer and micro-batch in flight. Created by
 * ops->ctx_create, which allocates every buffer (backend memory unless marked host);
 * the ctx owns them until ops->ctx_free. The caller may read every field, and may use
 * xp..dxp as its dispatch/combine buffers; stages write only what their contract says.
 * Source side (tokens of this rank; T = tokens of the last route <= max_tokens): */
struct moe_ctx {
    struct moe_cfg cfg;        /* copy, fixed at create; its shared_ffn is Fs (never 0) */
    int max_tokens;            /* source-side capacity (0: an experts-only ctx) */
    int max_rows;              /* expert-side capacity in rows (0: a source-only ctx) */
    int tokens;                /* T, set by route */
    float aux_loss;            /* host; L_aux of the last route (0 when aux_alpha == 0) */

    float *logits;             /* [T x E] */
    float *scores;             /* [T x E] s, before the bias */
    int32_t *topk_idx;         /* [T x K] e of slot (t, k) */
    float *topk_w;             /* [T x K] w of slot (t, k) */
    int32_t *counts;           /* [E] */
    int32_t *offsets;          /* [E + 1] */
    int32_t *slot_pos;         /* [T x K] */
    int32_t *perm_slot;        /* [T * K] */
    int32_t *host_counts;      /* host [E], same values */
    int32_t *host_offsets;     /* host [E + 1], same values */
    float *dtopk_w;            /* [T x K] dL/dw, written by combine_bwd */
    float *dlogits;            /* [T x E] dL/dl, written by route_bwd */
    void *xp, *yp, *dyp, *dxp; /* elem [T*K x H] permuted buffers */
    void *shared_a, *shared_b; /* elem [S][max_tokens x Fs]: x W1, x W3 of the shared
                                  experts, expert s from element s max_tokens Fs */
    /* Expert side (rows received for the experts run here; <= max_rows): */
    void *act_a, *act_b;       /* elem [max_rows x F]: x W1, x W3 of row r, saved for backward */
    /* The aux loss over a batch larger than this ctx's tokens (an expert-parallel
     * group's, spread over one ctx per rank): by default (NULL, 0) the ctx's own
     * counts and T. A caller may set, between route and route_bwd, aux_counts to the
     * batch's per-expert counts (int32 [E], backend memory, borrowed) and aux_tokens
     * to its tokens; route_bwd then adds the gradient of L_aux taken over that batch
     * (f_e and the 1/T of P_e from them) for this ctx's tokens, so the ranks'
     * gradients are the slices of the one-process gradient. aux_loss stays the
     * ctx's own (the caller sums P_e over the batch for the batch's loss). */
    const int32_t *aux_counts;
    int aux_tokens;
    struct moe_grad_sync *grad_sync;  /* the sync of ops->sync_bind, or NULL */
    void *priv;                /* backend scratch */
};

/* A backend. Every stage returns 0 or a negative errno (-EINVAL: bad argument or a
 * capacity exceeded; -ENOMEM; a backend may add its own). Stages that read a ctx
 * use the tokens T of its last route. */
struct moe_ops {
    const char *name;          /* "cpu", "cuda" */
    size_t elem_bytes;         /* bytes of one elem */

    int  (*alloc)(void **out, size_t elems);                 /* zeroed elem buffer */
    void (*free)(void *p);                                   /* NULL is a no-op */
    int  (*upload)(void *dst, const float *src, size_t n);   /* host fp32 -> elem (rounded) */
    int  (*download)(float *dst, const void *src, size_t n); /* elem -> host fp32 */
    /* Weight gradients: fp32 n-element grad buffers (main_grad) on every backend; free
     * with ->free. Copies are exact. On CPU these are alloc, upload and download. */
    int  (*grad_alloc)(void **out, size_t n);                      /* zeroed */
    int  (*grad_upload)(void *dst, const float *src, size_t n);    /* host -> grad */
    int  (*grad_download)(float *dst, const void *src, size_t n);  /* grad -> host */

    int  (*ctx_create)(struct moe_ctx **out, const struct moe_cfg *c, int max_tokens,
                       int max_rows);
    void (*ctx_free)(struct moe_ctx *ctx);                   /* NULL is a no-op */

    /* Forward. route: x [T x H] -> logits, scores, topk_*, counts, offsets, slot_pos,
     * perm_slot, host_*, aux_loss; sets ctx->tokens. */
    int (*route)(struct moe_ctx *ctx, const struct moe_weights *w, const void *x, int tokens);
    /* xp[slot_pos[t*K + k]] = x[t] for every slot; xp [T*K x H]. */
    int (*permute)(const struct moe_ctx *ctx, const void *x, void *xp);
    /* y = FFN_e(x) per group (row for row); saves act_a/act_b at the same rows. */
    int (*experts_fwd)(struct moe_ctx *ctx, const struct moe_weights *w,
                       const struct moe_groups *g, const void *x, void *y);
    /* out[t] = sum_k topk_w[t, k] yp[slot_pos[t*K + k]], k in order (overwrites). */
    int (*combine)(const struct moe_ctx *ctx, const void *yp, void *out);
    /* out[t] += FFN_shared_s(x[t]) for s = 0..S-1 in order; saves shared_a/b. */
    int (*shared_fwd)(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                      void *out);

    /* Backward; gradient outputs dx (elem) and dw (grad buffers, fp32) are accumulated
     * (+=); a dw update is rounded to fp32 only. combine_bwd first:
     * dyp[slot_pos[t*K + k]] = topk_w[t, k] dout[t] (overwrites) and
     * dtopk_w[t, k] = <dout[t], yp[slot_pos[t*K + k]]>. */
    int (*combine_bwd)(struct moe_ctx *ctx, const void *dout, const void *yp, void *dyp);
    /* Same groups and x as experts_fwd on this ctx: dx = dL/dx (overwrites, row for
     * row), dw->w1/w3/w2[e] += for each group's e. */
    int (*experts_bwd)(struct moe_ctx *ctx, const struct moe_weights *w,
                       const struct moe_groups *g, const void *x, const void *dy,
                       void *dx, struct moe_weights *dw);
    /* dx[t] += (sum_k dxp[slot_pos[t*K + k]], k in order). */
    int (*permute_bwd)(const struct moe_ctx *ctx, const void *dxp, void *dx);
    /* From dtopk_w and the aux loss (over aux_counts / aux_tokens when set): dlogits;
     * dw->gate += x^T dlogits; dx += dlogits W_g^T. */
    int (*route_bwd)(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                     void *dx, struct moe_weights *dw);
    /* dx += d(sum_s FFN_shared_s)/dx, dw->sw1/sw3/sw2[s] +=. */
    int (*shared_bwd)(struct moe_ctx *ctx, const struct moe_weights *w, const void *x,
                      const void *dout, void *dx, struct moe_weights *dw);

    /* Gradient ordering (struct moe_grad_sync above). sync_create: 0, -EINVAL (out
     * NULL), -ENOMEM or -EIO. sync_free: NULL is a no-op; a sync with ctxs still
     * bound is kept, not freed (one line on stderr), since they point at it: unbind
     * or free them first. sync_bind(ctx, s) binds ctx to s, or unbinds it when s is
     * NULL: 0; binding the sync ctx has is a no-op; -EINVAL when ctx is not this
     * backend's or s is another backend's; -EBUSY when ctx is bound to another sync
     * (a ctx is in one order at a time: unbind it first). ctx_free unbinds. Not
     * concurrent with a stage of the same ctx. */
    int  (*sync_create)(struct moe_grad_sync **out);
    void (*sync_free)(struct moe_grad_sync *s);
    int  (*sync_bind)(struct moe_ctx *ctx, struct moe_grad_sync *s);
};

/* 0, or -EINVAL when a size is < 1 (S < 0, shared_ffn < 0), K > E, the score is
 * unknown, route_scale is not finite or aux_alpha is negative or not finite. */
int moe_cfg_check(const struct moe_cfg *c);

/* Fs: c->shared_ffn, or c->ffn where that is 0. A ctx's cfg copy holds Fs itself. */
int moe_shared_ffn(const struct moe_cfg *c);

/* FLOPs of the expert GEMMs over `rows` token-expert pairs, 2 m n k per GEMM:
 * forward 3 GEMMs = 6 H F rows; backward 6 GEMMs = 12 H F rows. The gate GEMM
 * (2 T H E) is not included. */
double moe_expert_flops(const struct moe_cfg *c, double rows, bool backward);

/* One process, every expert here: route, permute into ctx->xp, experts into ctx->yp,
 * combine into out [T x H] (overwritten), shared experts added. Needs
 * ctx->max_rows >= tokens * K. Borrows everything. */
int moe_forward(const struct moe_ops *ops, struct moe_ctx *ctx, const struct moe_weights *w,
                const void *x, int tokens, void *out);

/* After moe_forward on the same ctx, x and w: dx += dL/dx, dw += dL/dw for
 * L = sum(out * dout) + L_aux; uses ctx->dyp and ctx->dxp. Borrows everything. */
int moe_backward(const struct moe_ops *ops, struct moe_ctx *ctx, const struct moe_weights *w,
                 const void *x, const void *dout, void *dx, struct moe_weights *dw);

#endif
