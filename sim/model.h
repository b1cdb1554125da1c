/* model.h: a transformer's structure, tensor-free: per-op weight GEMM shapes,
 * elementwise traffic, parameters and activation bytes, all per token where they scale
 * with tokens. Built from [model] (see config.h); no times here (compute.h adds them).
 *
 * Layers 0..first_dense_layers-1 have a dense SwiGLU FFN (ffn_hidden), the rest are MoE:
 * a gate, shared experts (SwiGLU, expert_ffn_hidden each, run on every token locally)
 * and routed experts (SwiGLU, expert_ffn_hidden, top_k per token). Every layer has
 * attention (GQA or MLA) with its norms. The embedding sits before layer 0, the final
 * norm and output head after the last layer.
 */
#ifndef MOESIM_MODEL_H
#define MOESIM_MODEL_H

#include <stdbool.h>

#include "config.h"

enum model_op {
    MODEL_EMBED,   /* token embedding lookup (no GEMM) */
    MODEL_ATTN,    /* norm + attention projections + attention core */
    MODEL_FFN,     /* norm + dense SwiGLU FFN */
    MODEL_GATE,    /* norm + router GEMM (hidden x experts) + scores/top-k */
    MODEL_SHARED,  /* all shared experts of a layer */
    MODEL_EXPERT,  /* ONE routed expert, per token it receives */
    MODEL_HEAD,    /* final norm + output projection (hidden x vocab) + loss */
    MODEL_NOPS
};

#define MODEL_GEMMS_MAX 8

/* One weight GEMM: (tokens x k) times (k x n). */
struct model_gemm {
    double k, n;
};

struct model_opdesc {
    int ngemm;
    struct model_gemm gemm[MODEL_GEMMS_MAX];
    double core_flops_per_token;   /* forward FLOPs outside weight GEMMs (attention scores
                                    * and values, causal: half of the square) */
    double mem_bytes_per_token;    /* forward elementwise HBM traffic (norms, SwiGLU, softmax) */
    double params;                 /* weights of this op (one layer; one expert for EXPERT) */
    double act_bytes_per_token;    /* activations kept for the backward, BF16 */
};

struct model {
    int hidden, layers, first_dense_layers, experts, top_k, shared_experts, seq_len;
    struct model_opdesc op[MODEL_NOPS];
};

/* 0, or -EINVAL when the config cannot describe a step (no ffn_hidden with dense
 * layers, no expert_ffn_hidden with MoE layers; also hidden, layers, seq_len, vocab or
 * heads < 1, first_dense_layers outside 0..layers, top_k outside 1..experts, GQA
 * kv_heads outside 1..heads, MLA kv_lora_rank or v_head_dim < 1); c borrowed.
 * kv_heads and head_dim of 0 are read as config.h fills them in. Formulas, byte counts
 * and sources: model.c. */
int model_init(struct model *m, const struct config *c);

bool model_layer_is_moe(const struct model *m, int layer);

/* Forward FLOPs of op for `tokens` tokens (EXPERT: token-expert pairs): 2 * tokens * k * n
 * summed over its GEMMs plus the core FLOPs. */
double model_op_flops(const struct model *m, enum model_op op, double tokens);

/* Model FLOPs of one token through the whole model, forward + backward (3x forward),
 * routed experts counted top_k times, the attention core's causal half, no FLOPs for the
 * embedding lookup: the numerator of MFU. */
double model_flops_per_token(const struct model *m);

/* Every weight: embedding, all layers with all routed experts, final norm and head
 * (untied). */
double model_params_total(const struct model *m);

/* As model_params_total with top_k routed experts per MoE layer instead of all: the
 * weights one token uses, embedding included (DeepSeek's published activated counts
 * appear to leave the embedding out: DeepSeek-V2-Lite's 2.4B fits only without it;
 * Mistral's 12.9B for Mixtral-8x7B includes it). */
double model_params_active(const struct model *m);

#endif
