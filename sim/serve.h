/* serve.h: one inference step of an expert-parallel MoE model, prefill or decode
 * (schedule.kind prefill | decode, [serve] in config.h): its shape, the attention
 * times the step engine (step.h) uses in place of a training step's, and the figures
 * a server is judged by, from the engine's result.
 *
 * Layout (as DeepSeek-V3 deploys it, arXiv:2412.19437 sec. 3.4): one pipeline stage
 * (pp = 1); attention data-parallel, every GPU runs its own `batch` sequences; the first
 * dense layers on every GPU; routed experts over EP groups of ep GPUs with the placement
 * and redundant experts of [balance]; dispatch and combine through the flow model as a
 * training step's forward. One forward of the whole model per step.
 *
 * Attention tensor parallelism with sequence parallelism (serve.attn_tp = n > 1;
 * DeepSeek-V3 serves prefill as TP4 + SP with DP8 and decode as TP4 + SP with DP80, sec.
 * 3.4.1, 3.4.2): n consecutive GPUs of one node (and of one EP group) form a TP group
 * that runs the attention of the group's n x batch sequences, the heads split n ways.
 * serve.batch stays the sequences per GPU on average, so T below and every per-GPU
 * throughput are unchanged. Before each layer's attention an all-gather gives every GPU
 * of the group the group's n T tokens x hidden; after it a reduce-scatter sums the
 * partial outputs and leaves each GPU its own T tokens, which it gates and dispatches
 * as without TP. Both are rings inside each group (NCCL's: n - 1 steps, each GPU sends
 * T x hidden x SERVE_SP_BYTES to the next), one step run through the flow model on the
 * stage's GPUs (coll.h) and taken n - 1 times, as communication sub-ops (step.h). Per
 * GPU the attention then runs: every projection GEMM on n T rows with 1/n of its weight
 * (N / n; the output projection splits K in practice, the same FLOPs and weight bytes);
 * the core's FLOPs unchanged (n x batch sequences, heads / n); its elementwise traffic
 * as for T tokens; its KV cache as below. The attention weights per GPU are 1/n of a
 * layer's. With two micro-batches (below) each gathers and scatters its own M_t tokens.
 *
 * Shared experts as routed (serve.shared_as_routed; DeepSeek-V3 sec. 3.4.2, the shared
 * expert a heavy-load routed one every token selects): the step routes E + ns experts,
 * the last ns picked by every token after its top_k drawn ones (routing.h's always),
 * placed and replicated by [balance] like the others (config_shared_routed); no shared
 * sub-op runs on the GPUs, and the shared weights are in the expert slots, (E + ns + R) /
 * ep a GPU.
 *
 * KV cache with TP: a GPU holds the cache of its group's n x batch sequences. GQA splits
 * the KV heads, ceil(kv_heads / n) a GPU (replicated when kv_heads < n), so with n
 * dividing kv_heads the bytes per GPU are as without TP; MLA's latent is shared by all
 * heads, so every GPU of the group holds, and in decode reads, the latent of all n x
 * batch sequences: n times the bytes without TP.
 *
 * Dispatch and combine (serve.a2a): normal, DeepEP's normal kernels, through the flow
 * model as a training step's forward (cluster.route: NVLink forwarding within a node,
 * one network copy per target node), taking schedule.comm_sms SMs from compute beside
 * them; or low_latency, DeepEP's low-latency kernels: every token once to each GPU that
 * holds one of its experts on the pair's direct path (config_a2a_route: rail), plus
 * serve.ll_message_s per (token, target GPU) message of a lane's busiest sender, taking
 * no SMs.
 *
 * Micro-batches (serve.microbatches): 1, or 2 of M_t = ceil(T / 2) tokens each (an odd
 * T: the second carries one padding token, timed like a real one), run by the step
 * engine as one overlapped pair of F ops, as it runs DualPipe's F&B pairs (with
 * schedule.overlap off: one after the other, communication on the compute stream).
 * Both route alike (one routing per layer drawn for M_t tokens; DeepSeek pair
 * micro-batches of similar load), each has its own all-to-alls, and each computes on its
 * own, so weights are read twice. Prefill (DeepSeek-V3 sec. 3.4: one micro-batch's attention and MoE
 * overlapped with the other's dispatch and combine): the two interleave segment by
 * segment, A's attention + gate, B's, A's shared + routed experts, B's, ... Decode
 * (sec. 3.4: one micro-batch's attention beside the other's dispatch, MoE and combine;
 * "DeepSeek-V3/R1 Inference System Overview", deepseek-ai/open-infra-index, 2025: the
 * attention split in two steps, a pipeline of 5 stages): ATTN-0 its
 * projections and elementwise traffic, ATTN-1 its core; a MoE layer runs ATTN-0 |
 * ATTN-1, gate, dispatch | shared expert | experts, combine | the combine's arrival, and
 * B runs two stages behind A, so a combine hides under the other's ATTN-1 and a
 * dispatch under its ATTN-0 and shared expert. What ran under compute and what was
 * exposed are the step's comm_s and exposed_comm_s (step.h).
 *
 * Tokens per GPU through the step (T): prefill batch x n, with n = prompt_len - C new
 * tokens per sequence and C = floor(cached_fraction x prompt_len) already cached;
 * decode batch x q, q = 1 + mtp_tokens (the next token and the speculative ones).
 *
 * Attention of one layer on one GPU, per micro-batch: the projections as model.h's ATTN
 * GEMMs for M_t tokens (at the GEMM peak: fp8 when serve.gemm_dtype is), its
 * elementwise traffic, and M_t / T of the core, a roofline of the batch's FLOPs and its
 * KV-cache reads (a balanced split: each micro-batch its share of the sequences' work):
 *     core_s = max(F / (peak_bf16 x gemm_efficiency), B / (hbm x hbm_efficiency))
 *   prefill  F = 2 x b x (n C + n^2 / 2) x a x (dqk + dv): each new token attends to the
 *            C cached keys and, causally, half of the n new ones; with C = 0 and GQA
 *            (dqk = dv = head_dim d) this is 2 x 2 x b x s^2 x a x d / 2. MLA runs
 *            prefill as trained (model.h): dqk = qk_nope + qk_rope, dv = v_head_dim.
 *            B = b x C x kv_width x kv bytes (the cached prefix).
 *   decode   F = 2 x b x q x L x a x (dqk + dv) with L = context_len (each new token
 *            attends to the L cached keys; its own few are not counted); MLA with the
 *            up-projections absorbed (DeepSeek-V2, arXiv:2405.04434, sec. 2.1.2; as
 *            FlashMLA runs decode): dqk = kv_lora_rank + qk_rope, dv = kv_lora_rank.
 *            B = b x L x kv_width x kv bytes: the whole cache of the batch, read once.
 * (b: serve.batch, and with TP the group's sequences a GPU reads, n x batch; a: heads,
 * with TP heads / n, so F is the same.)
 * kv_width per token per layer: GQA 2 x kv_heads x head_dim (K and V); MLA
 * kv_lora_rank + qk_rope_head_dim (the latent and the shared RoPE key). kv bytes per
 * element: config_dtype_bytes(serve.kv_dtype) (2 for bf16).
 * The other ops (embedding, dense FFN, gate, shared and routed experts, head) are
 * compute.h's forward for M_t tokens (routed experts: per slot, the tokens it received,
 * through the small-GEMM curve or the calibration table).
 */
#ifndef MOESIM_SERVE_H
#define MOESIM_SERVE_H

#include <stdint.h>

#include "compute.h"
#include "config.h"
#include "model.h"
#include "step.h"

/* Prefill: the cached tokens C and the new ones n of each prompt; decode: C = 0 and
 * n = q = 1 + mtp_tokens. */
int64_t serve_cached_tokens(const struct config *c);
int64_t serve_new_tokens(const struct config *c);
/* T: tokens per GPU through the step, batch x n. */
int64_t serve_tokens_per_gpu(const struct config *c);

/* The attention TP group's GPUs: serve.attn_tp in an inference step, else 1. */
int serve_attn_tp(const struct config *c);

/* KV-cache bytes of one token in one layer on one GPU: kv_width x kv bytes (above; with
 * TP, GQA's ceil(kv_heads / n) heads). */
double serve_kv_bytes_per_token_layer(const struct config *c);
/* The KV cache one GPU holds: n x batch x S x layers x the above, S = prompt_len
 * (prefill) or context_len (decode), n = serve_attn_tp. */
double serve_kv_bytes_per_gpu(const struct config *c);

/* Tokens of one micro-batch as the engine times it: ceil(T / microbatches) (an odd T
 * with two: the second micro-batch carries one padding token). */
int64_t serve_microbatch_tokens(const struct config *c);

/* Sequence parallelism's activations: 2 B (BF16) an element. */
#define SERVE_SP_BYTES 2.0
/* What each GPU sends in one ring step of the SP all-gather or reduce-scatter: T x
 * hidden x SERVE_SP_BYTES (T of one micro-batch); 0 without TP. */
double serve_sp_chunk_bytes(const struct config *c);

/* Attention core of one layer on one GPU: F and B above. */
double serve_attn_core_flops(const struct config *c);
double serve_attn_kv_read_bytes(const struct config *c);
/* Its time: the roofline above. */
double serve_attn_core_s(const struct compute *cm, const struct config *c);
/* One layer's attention for one micro-batch on one GPU, in two parts: *proj_s the
 * projections and elementwise traffic for serve_microbatch_tokens tokens, *core_s the
 * micro-batch's share of the core (its tokens / T of serve_attn_core_s). */
void serve_attn_parts(const struct compute *cm, const struct model *m, const struct config *c,
                      double *proj_s, double *core_s);
/* Their sum (forward only: b_s = w_s = 0); with one micro-batch the whole batch's. */
struct compute_t serve_attn(const struct compute *cm, const struct model *m,
                            const struct config *c);

/* What a server is judged by, from a finished step of c (r borrowed). */
struct serve_figures {
    double step_s;
    double ttft_s;            /* prefill: the step (the first token ends the prefill) */
    double tokens_per_seq;    /* decode: 1 + mtp_tokens x mtp_acceptance per step */
    double tpot_s;            /* decode: step_s / tokens_per_seq */
    double tokens_per_s_gpu;  /* prefill: new prompt tokens; decode: output tokens */
    double tokens_per_s_node;
    double kv_bytes_gpu;      /* serve_kv_bytes_per_gpu */
    double weight_bytes_gpu;  /* the largest GPU's weights, 1 B a weight with
                               * gemm_dtype fp8, else 2 */
    int fits;                 /* weights + KV cache <= gpu_mem_GiB */
    double expert_imbalance;  /* mean over MoE layers of the busiest expert / the mean */
    double gpu_imbalance;     /* the same of GPUs' token-expert pairs */
    double skew_wait_s;       /* mean over GPUs of the wait for slower GPUs at experts */
};
void serve_figures(struct serve_figures *f, const struct config *c,
                   const struct step_result *r);

#endif
