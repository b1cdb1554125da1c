/* model.h: a transformer's structure, tensor-free: per-op weight GEMM shapes,
 * elementwise traffic, parameters and activation bytes, all per token where they scale
 * with tokens. Built from [model] (see config.h); no times here (compute.h adds them).
 *
 * A layer is dense (an FFN of ffn_hidden) or MoE: a gate, shared experts (expert_ffn_hidden
 * each, run on every token locally) and routed experts (expert_ffn_hidden, top_k per
 * token). Every FFN has the activation ffn_act: gated with three matrices (swiglu, geglu:
 * gate and up h x f, down f x h) or plain with two (relu, gelu: up and down). Every layer
 * has attention (GQA or MLA) with its norms. The embedding sits before layer 0, the final
 * norm and output head after the last layer.
 *
 * Which layers are MoE: layers 0..F-1 are dense (F = first_dense_layers); after them,
 * layer l is MoE when (l + 1) % N == 0 (N = moe_every), counted from the model's first
 * layer. N = 1: every layer from F on (DeepSeek's first_k_dense_replace, Mixtral, Qwen3).
 * N = 2: layers 1, 3, 5, ... (0-based), "every other FFN layer" of GShard (Lepikhin et
 * al. 2020, arXiv:2006.16668, sec. 2.1) and Switch (Fedus et al., arXiv:2101.03961,
 * expert frequency 1/2), as the released Switch checkpoints run it (Hugging Face
 * SwitchTransformersStack: block i sparse when i % 2 == 1) and as Qwen-MoE's
 * decoder_sparse_step counts ((l + 1) % step == 0) for any N. Megatron-LM's integer
 * moe_layer_freq puts MoE on layers 0, N, 2N, ... instead (as many MoE layers when N
 * divides layers; the parameter count is then the same). Every caller asks
 * model_layer_is_moe (or the cfg_ forms below) rather than testing the rule itself.
 */
#ifndef MOESIM_MODEL_H
#define MOESIM_MODEL_H

#include <stdbool.h>

#include "config.h"

enum model_op {
    MODEL_EMBED,   /* token embedding lookup (no GEMM) */
    MODEL_ATTN,    /* norm + attention projections + attention core */
    MODEL_FFN,     /* norm + dense FFN */
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
    double mem_bytes_per_token;    /* forward elementwise HBM traffic (norms, FFN activation,
                                    * softmax) */
    double params;                 /* weights of this op (one layer; one expert for EXPERT) */
    double act_bytes_per_token;    /* activations kept for the backward, BF16 */
};

struct model {
    int hidden, layers, first_dense_layers, moe_every, experts, top_k, shared_experts, seq_len;
    struct model_opdesc op[MODEL_NOPS];
};

/* 0, or -EINVAL when the config cannot describe a step (no ffn_hidden with dense
 * layers, no expert_ffn_hidden with MoE layers; also hidden, layers, seq_len, vocab or
 * heads < 1, first_dense_layers outside 0..layers, moe_every < 1, an ffn_act not in
 * enum ffn_act, top_k outside 1..experts, GQA kv_heads outside 1..heads, MLA
 * kv_lora_rank or v_head_dim < 1); c borrowed.
 * kv_heads and head_dim of 0 are read as config.h fills them in. Formulas, byte counts
 * and sources: model.c. */
int model_init(struct model *m, const struct config *c);

/* Whether model layer `layer` (0-based) is MoE, by the rule above; false outside
 * 0..layers-1. */
bool model_layer_is_moe(const struct model *m, int layer);

/* MoE layers in the model. */
int model_moe_layers(const struct model *m);

/* The MoE layer number of model layer `layer` (the MoE layers before it: what a routing
 * trace numbers, traces/FORMAT.md); -1 when the layer is dense or outside the model. */
int model_moe_index(const struct model *m, int layer);

/* The same rule read straight from [model], for code that has no struct model (the
 * config's checks, the work estimates); c borrowed. Values out of range count as no
 * MoE layer rather than fail: 0 for layers < 1 or moe_every < 1. */
bool model_cfg_layer_is_moe(const struct cfg_model *c, int layer);
int model_cfg_moe_layers(const struct cfg_model *c);

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
