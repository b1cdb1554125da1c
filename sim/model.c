/* model.c: a transformer's ops, tensor-free; see model.h.
 *
 * Notation, per token and one layer: h hidden, a heads, g kv_heads, d head_dim, s seq_len,
 * V vocab, f ffn_hidden, fe expert_ffn_hidden, E experts, ns shared_experts; MLA: ql
 * q_lora_rank, kvl kv_lora_rank, dn qk_nope_head_dim, dr qk_rope_head_dim, dv v_head_dim.
 * Tensors are BF16 (2 B an element) but for the FP32 statistics named below (4 B).
 *
 * Forward elementwise traffic (mem_bytes_per_token), each pass reads its inputs and
 * writes its output once:
 *   RMSNorm        reads x, writes y                              4h
 *   residual add   reads two, writes one (one per sublayer, on    6h
 *                  ATTN and on FFN or GATE)
 *   RoPE           reads and writes the rotated part of q and k   GQA 4(a + g)d, MLA 4(a + 1)dr
 *   gated act      act(gate) * up (SwiGLU, GeGLU): reads two,     6f
 *                  writes one
 *   plain act      act(up) (ReLU, GeLU): reads one, writes one    4f
 *   router         FP32 softmax (reads, writes E) and top-k       12E
 *                  (reads E)
 *   embedding      reads a row, writes it                         4h
 *   loss           fused cross-entropy, one pass over the logits  2V
 * The attention core's own traffic (q, k, v, o) is not counted: flash attention keeps
 * the scores on chip and the core is timed by its FLOPs.
 *
 * Activations kept for the backward (act_bytes_per_token):
 *   RMSNorm        its input and the FP32 1/rms                   2h + 4
 *   weight GEMM    its input, once for GEMMs that share it        2k
 *   SwiGLU, GeGLU  gate and up outputs, and the product (the      6f
 *                  down GEMM's input)
 *   GeLU           its input (the up output) and its output (the  4f
 *                  down GEMM's input)
 *   ReLU           its output only: the down GEMM's input, whose  2f
 *                  sign is all its backward needs
 *   flash attn     q, k, v, o and the FP32 logsumexp per head     GQA 2(2ad + 2gd) + 4a
 *                  (no s^2 scores: recomputed in the backward;    MLA 2(2a(dn+dr) + 2a dv) + 4a
 *                  Dao et al. 2022, FlashAttention, sec. 3.1)
 *   router         FP32 probabilities and int32 top-k indices     4E + 4 top_k
 *   head           logits and their FP32 logsumexp                2V + 4
 * Compared with Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
 * Transformer Models", sec. 4.1, eq. (1): 34h + 5as bytes per token per layer (no tensor
 * parallelism: LayerNorms 4h, attention 11h + 5as, GeLU MLP with 4h intermediate 19h).
 * Ours keeps no dropout masks (1h after attention, 1h after the MLP, as^2 of the s^2
 * terms: LLM pre-training runs without dropout) and no s^2 scores or softmax (5as: flash
 * attention), and counts the 1/rms and logsumexp statistics. For g = a, d = h/a and a
 * SwiGLU of f = 8h/3 (the FLOPs of their 4h GeLU MLP), or their GeLU MLP itself (f = 4h),
 * a dense layer keeps 12h + 4a + 4 (attention) + 20h + 4 (FFN) = 32h + 4a + 8: their 34h
 * less the two masks.
 *
 * FFN FLOPs are the GEMMs' (3 for gated, 2 for plain activations); the activation's own
 * few FLOPs per element are timed as the memory traffic above.
 *
 * Parameters: every weight GEMM's k * n, RMSNorm weights (h each; MLA's two latent norms
 * ql and kvl), embedding and head V * h each (untied: tie_word_embeddings is false in the
 * config.json of DeepSeek-V2/V3, Mixtral and Qwen3-MoE). Not counted: biases (none in
 * these models but DeepSeek-V3's E router bias), Qwen3's per-head q/k norms (2d), and
 * DeepSeek-V3's multi-token-prediction module (not one of its layers).
 */
#include "model.h"

#include <errno.h>
#include <string.h>

#define BF16_B 2.0                /* bytes per BF16 element */
#define FP32_B 4.0                /* bytes per FP32 statistic */

static void add_gemm(struct model_opdesc *d, double k, double n)
{
    d->gemm[d->ngemm].k = k;
    d->gemm[d->ngemm].n = n;
    d->ngemm++;
    d->params += k * n;
}

/* RMSNorm of width h: weight h, traffic 4h, keeps its input and 1/rms. */
static void add_norm(struct model_opdesc *d, double h)
{
    d->params += h;
    d->mem_bytes_per_token += 2 * BF16_B * h;
    d->act_bytes_per_token += BF16_B * h + FP32_B;
}

/* FFN h -> f -> h, not keeping its input (the caller keeps that once). Gated (SwiGLU,
 * GeGLU; Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202): gate and up
 * (h x f), down (f x h). Plain (ReLU, GeLU; Vaswani et al. 2017, eq. 2): up (h x f), down
 * (f x h). Traffic and kept activations: the tables at the top. */
static void add_ffn(struct model_opdesc *d, double h, double f, enum ffn_act act)
{
    bool gated = act == FFN_SWIGLU || act == FFN_GEGLU;

    add_gemm(d, h, f);
    if (gated)
        add_gemm(d, h, f);
    add_gemm(d, f, h);
    d->mem_bytes_per_token += (gated ? 3 : 2) * BF16_B * f;
    d->act_bytes_per_token += (gated ? 3 : act == FFN_GELU ? 2 : 1) * BF16_B * f;
}

/* Causal attention core per token: QK^T is 2 * a * dqk FLOPs per (query, key) pair and
 * PV 2 * a * dv, over s / 2 keys on average (the causal half; exactly (s + 1) / 2).
 * Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
 * Using Megatron-LM", sec. 5.1, count 4 s h per token per layer forward (dqk = dv = h/a,
 * the full square), as PaLM's 12 L H Q T (Chowdhery et al. 2022, appendix B) for
 * forward + backward; we count the half a causal kernel computes. */
static void add_core(struct model_opdesc *d, double a, double dqk, double dv, double s)
{
    d->core_flops_per_token = 2 * a * (dqk + dv) * s / 2;
}

/* Norm, Q, K, V, O GEMMs (Q, K, V share the normed input), RoPE, core, residual add. */
static void build_gqa(struct model_opdesc *d, double h, double a, double g, double hd,
                      double s)
{
    add_norm(d, h);
    add_gemm(d, h, a * hd);
    add_gemm(d, h, g * hd);
    add_gemm(d, h, g * hd);
    add_gemm(d, a * hd, h);
    add_core(d, a, hd, hd, s);
    d->mem_bytes_per_token += 2 * BF16_B * (a + g) * hd + 3 * BF16_B * h;
    d->act_bytes_per_token += BF16_B * (h + 2 * a * hd + 2 * g * hd) + FP32_B * a;
}

/* Multi-head latent attention: DeepSeek-V2 report, arXiv:2405.04434, sec. 2.1.2-2.1.3,
 * as trained (keys and values expanded per head, no weight absorption):
 *   q = W_qb norm(W_qa x)   x: h -> ql, then ql -> a (dn + dr)   (ql = 0: h -> a (dn + dr))
 *   [c_kv, k_r] = W_kva x   h -> kvl + dr (k_r is one RoPE key shared by all heads)
 *   [k_n, v] = W_kvb norm(c_kv)   kvl -> a (dn + dv)
 *   o: a dv -> h
 * The core runs with a heads of dqk = dn + dr and dv. */
static void build_mla(struct model_opdesc *d, const struct cfg_model *c, double h, double s)
{
    double a = c->heads, ql = c->q_lora_rank, kvl = c->kv_lora_rank;
    double dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;

    add_norm(d, h);
    d->act_bytes_per_token += BF16_B * h;            /* normed x: input of W_qa, W_kva */
    if (ql > 0) {
        add_gemm(d, h, ql);
        add_norm(d, ql);
        add_gemm(d, ql, a * (dn + dr));
        d->act_bytes_per_token += BF16_B * ql;       /* normed q latent: input of W_qb */
    } else {
        add_gemm(d, h, a * (dn + dr));
    }
    add_gemm(d, h, kvl + dr);
    add_norm(d, kvl);
    add_gemm(d, kvl, a * (dn + dv));
    add_gemm(d, a * dv, h);
    d->act_bytes_per_token += BF16_B * kvl;          /* normed kv latent: input of W_kvb */
    add_core(d, a, dn + dr, dv, s);
    d->mem_bytes_per_token += 2 * BF16_B * (a + 1) * dr + 3 * BF16_B * h;
    d->act_bytes_per_token += BF16_B * (2 * a * (dn + dr) + 2 * a * dv) + FP32_B * a;
}

/* The config checks model_init makes; kv_heads and head_dim of 0 are taken as config.h
 * fills them in (heads, hidden / heads). */
static int check(const struct cfg_model *c, int kv_heads, int head_dim)
{
    int moe = model_cfg_moe_layers(c), dense = c->layers - moe;

    if (c->hidden < 1 || c->layers < 1 || c->first_dense_layers < 0 ||
        c->first_dense_layers > c->layers || c->moe_every < 1 || c->seq_len < 1 ||
        c->vocab < 1 || c->heads < 1 || (unsigned)c->ffn_act > FFN_GELU)
        return -EINVAL;
    if (dense > 0 && c->ffn_hidden < 1)
        return -EINVAL;
    if (moe > 0 && (c->expert_ffn_hidden < 1 || c->experts < 1 || c->top_k < 1 ||
                    c->top_k > c->experts || c->shared_experts < 0))
        return -EINVAL;
    if (c->attention == ATTN_GQA)
        return kv_heads >= 1 && kv_heads <= c->heads && head_dim >= 1 ? 0 : -EINVAL;
    if (c->attention == ATTN_MLA)
        return c->q_lora_rank >= 0 && c->kv_lora_rank >= 1 && c->qk_nope_head_dim >= 0 &&
               c->qk_rope_head_dim >= 0 && c->qk_nope_head_dim + c->qk_rope_head_dim >= 1 &&
               c->v_head_dim >= 1 ? 0 : -EINVAL;
    return -EINVAL;
}

int model_init(struct model *m, const struct config *cfg)
{
    const struct cfg_model *c = &cfg->model;
    int g = c->kv_heads ? c->kv_heads : c->heads;
    int hd = c->head_dim ? c->head_dim : c->heads > 0 ? c->hidden / c->heads : 0;
    double h = c->hidden, fe = c->expert_ffn_hidden, E = c->experts;
    struct model_opdesc *op = m->op;
    int rc, moe = model_cfg_moe_layers(c);

    memset(m, 0, sizeof(*m));
    rc = check(c, g, hd);
    if (rc)
        return rc;
    m->hidden = c->hidden;
    m->layers = c->layers;
    m->first_dense_layers = c->first_dense_layers;
    m->moe_every = c->moe_every;
    m->experts = c->experts;
    m->top_k = c->top_k;
    m->shared_experts = c->shared_experts;
    m->seq_len = c->seq_len;

    op[MODEL_EMBED].params = (double)c->vocab * h;
    op[MODEL_EMBED].mem_bytes_per_token = 2 * BF16_B * h;

    if (c->attention == ATTN_GQA)
        build_gqa(&op[MODEL_ATTN], h, c->heads, g, hd, c->seq_len);
    else
        build_mla(&op[MODEL_ATTN], c, h, c->seq_len);

    if (moe < c->layers) {
        add_norm(&op[MODEL_FFN], h);
        add_ffn(&op[MODEL_FFN], h, c->ffn_hidden, c->ffn_act);
        op[MODEL_FFN].mem_bytes_per_token += 3 * BF16_B * h;
        op[MODEL_FFN].act_bytes_per_token += BF16_B * h;
    }

    if (moe > 0) {
        /* The normed x kept here is also the shared experts' input and what is dispatched. */
        add_norm(&op[MODEL_GATE], h);
        add_gemm(&op[MODEL_GATE], h, E);
        op[MODEL_GATE].mem_bytes_per_token += 3 * BF16_B * h + 3 * FP32_B * E;
        op[MODEL_GATE].act_bytes_per_token += BF16_B * h + FP32_B * (E + c->top_k);
        /* Shared experts as one FFN of width ns * fe, as DeepSeek-V2/V3 run them. */
        if (c->shared_experts > 0)
            add_ffn(&op[MODEL_SHARED], h, c->shared_experts * fe, c->ffn_act);
        /* One routed expert, per token-expert pair: its own (dispatched) input copy. */
        add_ffn(&op[MODEL_EXPERT], h, fe, c->ffn_act);
        op[MODEL_EXPERT].act_bytes_per_token += BF16_B * h;
    }

    add_norm(&op[MODEL_HEAD], h);
    add_gemm(&op[MODEL_HEAD], h, c->vocab);
    op[MODEL_HEAD].mem_bytes_per_token += BF16_B * c->vocab;
    op[MODEL_HEAD].act_bytes_per_token += BF16_B * (h + c->vocab) + FP32_B;
    return 0;
}

/* The one rule (model.h): MoE layers among 0..layer-1, the first F dense, then every
 * N-th counted from the model's first layer: the multiples of N in F+1..layer. */
static int moe_before(int first_dense, int every, int layer)
{
    if (every < 1 || first_dense < 0 || layer <= first_dense)
        return 0;
    return layer / every - first_dense / every;
}

static bool is_moe(int layers, int first_dense, int every, int layer)
{
    return layer >= 0 && layer < layers &&
           moe_before(first_dense, every, layer + 1) > moe_before(first_dense, every, layer);
}

bool model_layer_is_moe(const struct model *m, int layer)
{
    return is_moe(m->layers, m->first_dense_layers, m->moe_every, layer);
}

int model_moe_layers(const struct model *m)
{
    return moe_before(m->first_dense_layers, m->moe_every, m->layers);
}

int model_moe_index(const struct model *m, int layer)
{
    return model_layer_is_moe(m, layer) ? moe_before(m->first_dense_layers, m->moe_every, layer)
                                        : -1;
}

bool model_cfg_layer_is_moe(const struct cfg_model *c, int layer)
{
    return is_moe(c->layers, c->first_dense_layers, c->moe_every, layer);
}

int model_cfg_moe_layers(const struct cfg_model *c)
{
    return c->layers < 1 ? 0 : moe_before(c->first_dense_layers, c->moe_every, c->layers);
}

double model_op_flops(const struct model *m, enum model_op op, double tokens)
{
    const struct model_opdesc *d = &m->op[op];
    double per_token = d->core_flops_per_token;

    for (int i = 0; i < d->ngemm; i++)
        per_token += 2 * d->gemm[i].k * d->gemm[i].n;
    return tokens * per_token;
}

/* 3 x forward, the forward being every layer's attention (with the causal core), the
 * dense FFN or gate + shared experts + top_k routed experts, and the head; the embedding
 * lookup has no FLOPs. For GQA this is 6 N + 6 L a d s, N the weights of the GEMMs one
 * token passes through: PaLM's 6 N + 12 L H Q T with the causal half of the core. */
double model_flops_per_token(const struct model *m)
{
    int moe = model_moe_layers(m), dense = m->layers - moe;
    double fwd = m->layers * model_op_flops(m, MODEL_ATTN, 1) +
                 dense * model_op_flops(m, MODEL_FFN, 1) +
                 moe * (model_op_flops(m, MODEL_GATE, 1) + model_op_flops(m, MODEL_SHARED, 1) +
                        m->top_k * model_op_flops(m, MODEL_EXPERT, 1)) +
                 model_op_flops(m, MODEL_HEAD, 1);
    return 3 * fwd;
}

/* Every weight, with `routed` of the routed experts in each MoE layer. */
static double params_with(const struct model *m, double routed)
{
    const struct model_opdesc *op = m->op;
    int moe = model_moe_layers(m), dense = m->layers - moe;

    return op[MODEL_EMBED].params + m->layers * op[MODEL_ATTN].params +
           dense * op[MODEL_FFN].params +
           moe * (op[MODEL_GATE].params + op[MODEL_SHARED].params +
                  routed * op[MODEL_EXPERT].params) +
           op[MODEL_HEAD].params;
}

double model_params_total(const struct model *m)
{
    return params_with(m, m->experts);
}

double model_params_active(const struct model *m)
{
    return params_with(m, m->top_k);
}
