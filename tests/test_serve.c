/* test_serve.c: an inference step (sim/serve.c, run by the step engine) against hand
 * derivations: the attention roofline's two sides, the KV cache of published models,
 * and a one-GPU step whose time is the sum of its op times. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compute.h"
#include "config.h"
#include "cu_run.h"
#include "ini_text.h"
#include "model.h"
#include "routing.h"
#include "serve.h"
#include "step.h"
#include "topo.h"
#include "traffic.h"

#define REL 1e-12

static void check_rel(double got, double want, double rel)
{
    CU_ASSERT_DOUBLE_EQUAL(got, want, rel * fmax(1e-300, fabs(want)));
}

/* A small GQA model on one GPU: 4 layers (1 dense), 2 experts, top_k 2, so every token
 * goes to both experts of the one GPU: the routing is deterministic. */
static const char gqa1[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 1\ngpu_tflops_bf16 = 100\ngpu_tflops_fp8 = 200\n"
    "hbm_GBps = 1000\nsms = 100\ngemm_efficiency = 0.5\nhbm_efficiency = 0.8\n"
    "gemm_half_rows = 64\n"
    "[model]\nhidden = 1024\nexperts = 2\ntop_k = 2\nshared_experts = 1\n"
    "expert_ffn_hidden = 512\nffn_hidden = 2048\nlayers = 4\nfirst_dense_layers = 1\n"
    "seq_len = 8192\nvocab = 1000\nheads = 16\nkv_heads = 4\nhead_dim = 64\n"
    "[schedule]\nkind = decode\ncomm_sms = 0\n"
    "[serve]\nbatch = 8\n";

/* gqa1 in decode at 4000 tokens of context, then sets[0..n). */
static struct config load_gqa(const char *const *sets, int n)
{
    const char *all[8] = { "serve.context_len=4000" };
    struct config c;
    for (int i = 0; i < n && i < 7; i++)
        all[i + 1] = sets[i];
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, all, n + 1), 0);
    return c;
}

/* Decode, one layer: the core reads the batch's KV cache once. GQA: 2 kv_heads x
 * head_dim elements of 2 B per token. 8 x 4000 x 2 x 4 x 64 x 2 B = 32,768,000 B at
 * 1000 GB/s x 0.8: 40.96 us. Its FLOPs (2 x 8 x 4000 x 16 x 128 = 131 MFLOP at 50 TFLOP/s,
 * 2.6 us) are below: the roofline takes the bytes. */
static void test_decode_attn_hbm(void)
{
    struct config c = load_gqa(NULL, 0);
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
    double bytes = 8.0 * 4000 * 2 * 4 * 64 * 2;
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_kv_read_bytes(&c), bytes, 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 2.0 * 8 * 4000 * 16 * (64 + 64), 0);
    check_rel(serve_attn_core_s(cm, &c), bytes / (1000e9 * 0.8), REL);
    check_rel(serve_attn_core_s(cm, &c), 40.96e-6, 1e-9);
    compute_free(cm);
}

/* Prefill, causal: F = 2 x 2 x b x s^2 x a x d / 2 for b = 2 prompts of s = 2048, a = 16
 * heads of d = 64; with half of each prompt cached (C = n = 1024), each new token also
 * attends to the C cached keys: 2 x b x (n C + n^2 / 2) x a x 2d. */
static void test_prefill_attn_flops(void)
{
    const char *const sets[] = { "schedule.kind=prefill", "serve.batch=2",
                                 "serve.prompt_len=2048" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, sets, 3), 0);
    double b = 2, s = 2048, a = 16, d = 64;
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 2 * 2 * b * s * s * a * d / 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_kv_read_bytes(&c), 0, 0);
    CU_ASSERT_EQUAL(serve_tokens_per_gpu(&c), 4096);
    const char *const half[] = { "schedule.kind=prefill", "serve.batch=2",
                                 "serve.prompt_len=2048", "serve.cached_fraction=0.5" };
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, half, 4), 0);
    double n = 1024, C = 1024;
    CU_ASSERT_EQUAL(serve_cached_tokens(&c), 1024);
    CU_ASSERT_EQUAL(serve_tokens_per_gpu(&c), 2048);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 2 * b * (n * C + n * n / 2) * a * 2 * d, 0);
    /* FLOPs-bound: 2.0 GFLOP... at 100 TFLOP/s x 0.5, above the cached prefix's bytes */
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
    check_rel(serve_attn_core_s(cm, &c), 2 * b * (n * C + n * n / 2) * a * 2 * d / 50e12, REL);
    compute_free(cm);
}

/* MLA: prefill as trained (dqk = 128 + 64, dv = 128), decode absorbed (dqk = 512 + 64,
 * dv = 512), DeepSeek-V3's dims. */
static void test_mla_dims(void)
{
    const char *const pre[] = { "model.attention=mla", "model.kv_lora_rank=512",
                                "model.qk_nope_head_dim=128", "model.qk_rope_head_dim=64",
                                "model.v_head_dim=128", "schedule.kind=prefill",
                                "serve.prompt_len=100" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, pre, 7), 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 2.0 * 8 * 100 * 100 / 2 * 16 * (192 + 128),
                           0);
    c = load_gqa(pre, 5);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 2.0 * 8 * 4000 * 16 * (576 + 512), 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_kv_read_bytes(&c), 8.0 * 4000 * 576 * 2, 0);
}

/* KV cache per GPU by hand from the published configs:
 * Qwen3-235B-A22B (GQA): 94 layers x 2 (K, V) x 4 KV heads x 128 x 2 B = 192,512 B a token;
 * DeepSeek-V3 (MLA): 61 layers x (512 + 64) x 2 B = 70,272 B a token. */
static void test_kv_presets(void)
{
    static const struct { const char *file; double per_token; } m[] = {
        { "configs/models/qwen3-235b-a22b.ini", 94.0 * 2 * 4 * 128 * 2 },
        { "configs/models/deepseek-v3.ini", 61.0 * (512 + 64) * 2 },
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        const char *files[] = { m[i].file };
        const char *const sets[] = { "schedule.kind=decode", "serve.batch=32",
                                     "serve.context_len=4000", "parallel.ep=1" };
        struct config c;
        struct cfg_err err;
        CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 1, sets, 4, &err), 0);
        check_rel(serve_kv_bytes_per_token_layer(&c) * c.model.layers, m[i].per_token, REL);
        check_rel(serve_kv_bytes_per_gpu(&c), 32.0 * 4000 * m[i].per_token, REL);
    }
}

/* FP8 GEMMs: a large weight GEMM runs at gpu_tflops_fp8 and moves 1 B an element. m =
 * 4096 rows, k = n = 4096: 2 k n (m + 16) FLOPs at 200 TFLOP/s x 0.5 (the curve's form,
 * gemm_half_rows 16). */
static void test_fp8_gemm(void)
{
    const char *const sets[] = { "serve.gemm_dtype=fp8", "cluster.gemm_half_rows=16" };
    struct config c = load_gqa(sets, 2);
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
    check_rel(compute_gemm_s(cm, 4096, 4096, 4096), 2.0 * 4096 * 4096 * (4096 + 16) / 100e12,
              REL);
    /* one row: weight-read bound (2 x 4096^2 x 17 FLOPs take 5.7 us, the bytes 21 us),
     * 4096 x 4096 x 1 B (+ the row in and out) at 800 GB/s */
    check_rel(compute_gemm_s(cm, 1, 4096, 4096), (4096.0 * 4096 + 2 * 4096) / 800e9, REL);
    compute_free(cm);
}

/* One GPU, no communication (its all-to-alls move nothing): the step is the sum of its
 * ops, in order: embedding, per layer attention then the dense FFN or gate, shared
 * expert and the two routed experts (each receives all T tokens: top_k = experts = 2),
 * then the head. */
static void test_one_gpu_sum(void)
{
    for (int k = 0; k < 2; k++) {
        const char *const pre[] = { "schedule.kind=prefill", "serve.batch=3",
                                    "serve.prompt_len=500", "serve.cached_fraction=0.2" };
        struct config c;
        if (k)
            c = load_gqa(NULL, 0);
        else
            CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, pre, 4), 0);
        struct model m;
        struct compute *cm;
        struct cfg_err err = { .msg = "" };
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
        CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
        double T = (double)serve_tokens_per_gpu(&c);
        CU_ASSERT_DOUBLE_EQUAL(T, k ? 8 : 3 * 400, 0);
        double want = compute_op(cm, &m, MODEL_EMBED, T).f_s +
                      4 * serve_attn(cm, &m, &c).f_s + compute_op(cm, &m, MODEL_FFN, T).f_s +
                      3 * (compute_op(cm, &m, MODEL_GATE, T).f_s +
                           compute_op(cm, &m, MODEL_SHARED, T).f_s +
                           2 * compute_op(cm, &m, MODEL_EXPERT, T).f_s) +
                      compute_op(cm, &m, MODEL_HEAD, T).f_s;
        struct step_result r;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
        check_rel(r.step_s, want, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r.exposed_comm_s, 0, 1e-15);
        check_rel(r.gpu[0].compute_s, want, 1e-9);
        struct serve_figures f;
        serve_figures(&f, &c, &r);
        if (k) {      /* decode: 1 token per sequence (no MTP), 8 per step */
            check_rel(f.tpot_s, want, 1e-9);
            check_rel(f.tokens_per_s_gpu, 8 / want, 1e-9);
        } else {      /* prefill: the 400 new tokens of 3 prompts */
            check_rel(f.ttft_s, want, 1e-9);
            check_rel(f.tokens_per_s_gpu, 1200 / want, 1e-9);
        }
        step_free(&r);
        compute_free(cm);
    }
}

/* MTP: with 2 speculative tokens accepted at 0.5 each, a step yields 1 + 2 x 0.5 = 2
 * tokens per sequence, and 3 tokens per sequence go through the model. */
static void test_mtp(void)
{
    const char *const sets[] = { "serve.mtp_tokens=2", "serve.mtp_acceptance=0.5" };
    struct config c = load_gqa(sets, 2);
    CU_ASSERT_EQUAL(serve_tokens_per_gpu(&c), 24);
    struct step_result r;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
    struct serve_figures f;
    serve_figures(&f, &c, &r);
    CU_ASSERT_DOUBLE_EQUAL(f.tokens_per_seq, 2, 0);
    check_rel(f.tpot_s, r.step_s / 2, REL);
    check_rel(f.tokens_per_s_gpu, 16 / r.step_s, REL);
    step_free(&r);
}

/* Bytes of m that cross the network: pairs whose topo_route (the all-to-all's route for
 * c, config_a2a_route) takes any link that is not NVLink. */
static double network_bytes(const struct traffic *m, const struct config *c)
{
    struct cfg_cluster cl = c->cluster;
    cl.route = config_a2a_route(c);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &cl), 0);
    double sum = 0;
    for (int s = 0; s < m->gpus; s++)
        for (int d = 0; d < m->gpus; d++) {
            int links[TOPO_MAX_HOPS];
            double lat;
            uint64_t b = m->bytes[(size_t)s * m->gpus + d];
            if (s == d || !b)
                continue;
            int n = topo_route(t, s, d, links, &lat);
            bool net = false;
            for (int k = 0; k < n; k++)
                net |= !topo_link_is_nvlink(t, links[k]);
            sum += net ? (double)b : 0;
        }
    topo_free(t);
    return sum;
}

/* Two nodes of 4 GPUs, route hierarchical, one expert per GPU; one token of GPU 0 whose
 * top_k = 4 experts sit on the 4 GPUs of node 1 (routing counts built by hand, deduped:
 * once per target GPU, once per target node). Normal kernels: it crosses the network once
 * (to GPU 4, the relay with its local index 0), H x bpe bytes, and GPU 4 forwards it over
 * NVLink to GPUs 5, 6, 7. Low-latency: GPU 0 sends it to each of GPUs 4..7 over the
 * network, 4 x H x bpe, nothing over NVLink; the combine likewise in reverse. */
static void test_low_latency_bytes(void)
{
    static const char two_nodes[] =
        "[cluster]\nnodes = 2\ngpus_per_node = 4\nroute = hierarchical\n"
        "[model]\nhidden = 1024\nexperts = 8\ntop_k = 4\nexpert_ffn_hidden = 512\n"
        "ffn_hidden = 2048\nlayers = 2\nseq_len = 8192\nvocab = 1000\nheads = 16\n"
        "kv_heads = 4\nhead_dim = 64\ndispatch_dtype = fp8\nfp8_block = 128\n"
        "[schedule]\nkind = decode\n";
    uint64_t pair[64] = { 0 }, node[16] = { 0 };
    for (int d = 4; d < 8; d++)
        pair[d] = 1;                     /* GPU 0 -> GPUs 4..7 */
    node[1] = 1;                         /* GPU 0 -> node 1, once */
    struct routing r = { .gpus = 8, .experts = 8, .ep = 8, .top_k = 4, .gpus_per_node = 4,
                         .nodes = 2, .pair_tokens = pair, .src_node_tokens = node };
    double H = 1024, dbpe = 1 + 4.0 / 128, cbpe = 2;   /* fp8 with its scales; bf16 */
    for (int ll = 0; ll < 2; ll++) {
        const char *const sets[] = { ll ? "serve.a2a=low_latency" : "serve.a2a=normal" };
        struct config c;
        CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, two_nodes, sets, 1), 0);
        CU_ASSERT_EQUAL(config_low_latency(&c), ll);
        struct traffic d, cb;
        CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
        double copies = ll ? 4 : 1;
        CU_ASSERT_DOUBLE_EQUAL(network_bytes(&d, &c), round(copies * H * dbpe), 0);
        CU_ASSERT_DOUBLE_EQUAL(network_bytes(&cb, &c), copies * H * cbpe, 0);
        double all = 0;
        for (int i = 0; i < 64; i++)
            all += (double)d.bytes[i];
        /* normal: 1 network leg + 3 NVLink forwards; low-latency: the 4 network sends */
        CU_ASSERT_DOUBLE_EQUAL(all, 4 * round(H * dbpe), 0);
        CU_ASSERT_EQUAL(d.bytes[ll ? 5 : 4 * 8 + 5], (uint64_t)round(H * dbpe));
        traffic_free(&d);
        traffic_free(&cb);
    }
}

/* Two GPUs of one node with comm_sms = 50 of 100 SMs: the shared expert runs beside the
 * dispatch. Normal kernels hold half the SMs, so some shared-expert slice takes longer
 * than its time alone; low-latency ones hold none: every slice takes exactly its time. */
static void test_low_latency_no_sms(void)
{
    for (int ll = 0; ll < 2; ll++) {
        const char *const sets[] = { "cluster.gpus_per_node=2", "schedule.comm_sms=50",
                                     ll ? "serve.a2a=low_latency" : "serve.a2a=normal" };
        struct config c = load_gqa(sets, 3);
        struct model m;
        struct compute *cm;
        struct cfg_err err = { .msg = "" };
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
        CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
        double alone = compute_op(cm, &m, MODEL_SHARED, (double)serve_tokens_per_gpu(&c)).f_s;
        struct step_result r;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_SLICES, &err), 0);
        double longest = 0;
        int shared = 0;
        for (int64_t i = 0; i < r.nslices; i++)
            if (r.slices[i].what == STEP_SHARED) {
                shared++;
                longest = fmax(longest, r.slices[i].t1_s - r.slices[i].t0_s);
            }
        CU_ASSERT(shared > 0);
        if (ll)
            check_rel(longest, alone, 1e-9);
        else
            CU_ASSERT(longest > alone * (1 + 1e-6));
        step_free(&r);
        compute_free(cm);
    }
}

/* The op times of one micro-batch of Tm tokens of c on one GPU, the attention as a step's
 * of attn_batch sequences. top_k = experts: every token reaches every expert, so each of
 * a GPU's experts / ep experts gets top_k x Tm x dp / experts rows. */
struct mb_ops {
    double pre, ffn, moe, head;   /* embed + first layer's attention; dense FFN; per MoE
                                   * layer gate + shared + routed; the head */
    double attn;                  /* one layer's attention */
};

static void mb_ops(const struct config *c, double Tm, double attn_batch, struct mb_ops *o)
{
    struct config h = *c;           /* attention of attn_batch sequences, one micro-batch */
    h.serve.batch = (int64_t)attn_batch;
    h.serve.microbatches = 1;
    struct model m;
    struct compute *cm;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(model_init(&m, c), 0);
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, c, &err), 0);
    o->attn = serve_attn(cm, &m, &h).f_s;
    o->pre = compute_op(cm, &m, MODEL_EMBED, Tm).f_s;
    o->ffn = compute_op(cm, &m, MODEL_FFN, Tm).f_s;
    o->moe = compute_op(cm, &m, MODEL_GATE, Tm).f_s + compute_op(cm, &m, MODEL_SHARED, Tm).f_s +
             c->model.experts / c->parallel.ep *
                 compute_op(cm, &m, MODEL_EXPERT,
                            c->model.top_k * Tm * c->parallel.dp / c->model.experts).f_s;
    o->head = compute_op(cm, &m, MODEL_HEAD, Tm).f_s;
    compute_free(cm);
}

/* Two micro-batches on one GPU (its all-to-alls move nothing): the step is the sum of the
 * two halves' op times (gqa1: embedding, 4 attentions, 1 dense FFN, 3 MoE layers of gate,
 * shared expert and 2 experts, head), each half timed as a step of half the batch (the
 * attention core is linear in the batch). Decode (lead 2, attention in two stages) and
 * prefill alike; an odd batch of 3 runs as two micro-batches of 2 tokens (one padded):
 * twice the ops of a batch of 2. */
static void test_two_mb_one_gpu(void)
{
    static const struct { bool prefill; int batch; double Tm, attn_batch; } k[] = {
        { false, 8, 4, 4 }, { true, 2, 500, 1 }, { false, 3, 2, 2 },
    };
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        char b[32];
        snprintf(b, sizeof(b), "serve.batch=%d", k[i].batch);
        const char *const pre[] = { "schedule.kind=prefill", "serve.prompt_len=500", b,
                                    "serve.microbatches=2" };
        const char *const dec[] = { b, "serve.microbatches=2" };
        struct config c;
        if (k[i].prefill) {
            CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, gqa1, pre, 4), 0);
        } else {
            c = load_gqa(dec, 2);
        }
        CU_ASSERT_EQUAL(serve_microbatch_tokens(&c), (int64_t)k[i].Tm);
        struct mb_ops o;
        mb_ops(&c, k[i].Tm, k[i].attn_batch, &o);
        double want = 2 * (o.pre + 4 * o.attn + o.ffn + 3 * o.moe + o.head);
        struct step_result r;
        struct cfg_err err = { .msg = "" };
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
        check_rel(r.step_s, want, 1e-9);
        check_rel(r.gpu[0].compute_s, want, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r.exposed_comm_s, 0, 1e-15);
        CU_ASSERT_EQUAL(r.microbatches, 2);
        step_free(&r);
    }
}

/* Two GPUs of one node (ep 2, one expert each, top_k 2: each GPU sends all its tokens to
 * the other, one flow each way over 2 NVLink hops), one MoE layer, no shared expert,
 * comm_sms 0 (compute keeps its speed beside the all-to-alls). */
static const char moe2[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 2\nnvlink_GBps = 50\nnvlink_latency_us = 3\n"
    "gpu_tflops_bf16 = 100\nhbm_GBps = 1000\nsms = 100\ngemm_efficiency = 0.5\n"
    "[model]\nhidden = 1024\nexperts = 2\ntop_k = 2\nshared_experts = 0\n"
    "expert_ffn_hidden = 512\nffn_hidden = 2048\nlayers = 1\nfirst_dense_layers = 0\n"
    "seq_len = 4096\nvocab = 256\nheads = 16\nkv_heads = 4\nhead_dim = 64\n"
    "dispatch_bytes_per_elem = 1\ncombine_bytes_per_elem = 2\n"
    "[parallel]\nep = 2\n"
    "[schedule]\ncomm_sms = 0\n";

/* moe2's op times for micro-batches of Tm tokens: embedding E, attention projections
 * Ap and core Ac, gate G, experts X (2 Tm rows), head H; dispatch D = 2 lat + Tm x hidden
 * x 1 B / bw, combine C likewise at 2 B. */
struct moe2_times {
    double E, Ap, Ac, G, X, H, D, C;
};

static void moe2_times(const struct config *c, double Tm, struct moe2_times *t)
{
    struct model m;
    struct compute *cm;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(model_init(&m, c), 0);
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, c, &err), 0);
    double lat = 2 * c->cluster.nvlink_lat_s, bw = c->cluster.nvlink_Bps;
    serve_attn_parts(cm, &m, c, &t->Ap, &t->Ac);
    t->E = compute_op(cm, &m, MODEL_EMBED, Tm).f_s;
    t->G = compute_op(cm, &m, MODEL_GATE, Tm).f_s;
    t->X = compute_op(cm, &m, MODEL_EXPERT, 2 * Tm).f_s;
    t->H = compute_op(cm, &m, MODEL_HEAD, Tm).f_s;
    t->D = lat + Tm * c->model.hidden * 1 / bw;
    t->C = lat + Tm * c->model.hidden * 2 / bw;
    compute_free(cm);
}

/* One micro-batch: everything in a row, D and C exposed. Two, prefill of 2 prompts of
 * 1024 tokens (Tm = 1024; P = E + Ap + Ac + G): the pair interleaves A: P | D, B: P | D,
 * A: X | C, B: X | C, A: H, B: H, so D_A runs under P_B, D_B under X_A, C_A under X_B
 * (D <= P, D <= X, C <= X: asserted), C_B beside H_A, and H_B waits for C_B: exposed
 * C - H (C > H), step 2P + 2X + H + C.
 * Two, decode of 64 sequences at 4000 tokens (Tm = 32), in stages, B two behind A:
 * A: E Ap | A: Ac G, D_A | B: E Ap | A: X, C_A | B: Ac G, D_B | A: H | B: X, C_B | B: H.
 * D_A runs under B's E + Ap, C_A under B's Ac + G (the attention core), D_B (after C_A
 * on the in-order stream) under A's H (D <= E + Ap, C <= Ac + G, D <= H: asserted);
 * C_B has nothing left beside it: exposed C, step 2 (E + Ap + Ac + G + X + H) + C. */
static void test_two_mb_closed_form(void)
{
    for (int dec = 0; dec < 2; dec++) {
        double exposed[2];
        for (int mb = 1; mb <= 2; mb++) {
            const char *const pre[] = { "schedule.kind=prefill", "serve.batch=2",
                                        "serve.prompt_len=1024",
                                        mb == 2 ? "serve.microbatches=2" : "serve.microbatches=1" };
            const char *const de[] = { "schedule.kind=decode", "serve.batch=64",
                                       "serve.context_len=4000", "cluster.nvlink_latency_us=1",
                                       "model.vocab=8192",
                                       mb == 2 ? "serve.microbatches=2" : "serve.microbatches=1" };
            struct config c;
            CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, moe2, dec ? de : pre, dec ? 6 : 4), 0);
            struct moe2_times t;
            moe2_times(&c, (dec ? 64.0 : 2048.0) / mb, &t);
            double A = t.Ap + t.Ac, step, exp_s;
            if (mb == 1) {
                step = t.E + A + t.G + t.D + t.X + t.C + t.H;
                exp_s = t.D + t.C;
            } else if (!dec) {
                double P = t.E + A + t.G;
                CU_ASSERT_FATAL(t.D <= P && t.D <= t.X && t.C <= t.X && t.C > t.H);
                step = 2 * P + 2 * t.X + t.H + t.C;
                exp_s = t.C - t.H;
            } else {
                CU_ASSERT_FATAL(t.D <= t.E + t.Ap && t.C <= t.Ac + t.G && t.D <= t.H);
                step = 2 * (t.E + A + t.G + t.X + t.H) + t.C;
                exp_s = t.C;
            }
            struct step_result r;
            struct cfg_err err = { .msg = "" };
            CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
            check_rel(r.step_s, step, 1e-9);
            check_rel(r.exposed_comm_s, exp_s, 1e-9);
            check_rel(r.comm_s, mb * (t.D + t.C), 1e-9);
            exposed[mb - 1] = r.exposed_comm_s;
            step_free(&r);
        }
        CU_ASSERT(exposed[1] < exposed[0]);
    }
}

/* DeepSeek-V3's decode example (EP 144, 18 nodes), shrunk to 8 sequences a GPU and its
 * first 5 layers (3 dense, 2 MoE), with either all-to-all: two micro-batches expose no
 * more communication than one. */
static void test_two_mb_preset(void)
{
    const char *files[] = { "configs/examples/deepseek-v3-decode.ini" };
    for (int ll = 0; ll < 2; ll++) {
        double exposed[2];
        for (int mb = 1; mb <= 2; mb++) {
            const char *const sets[] = { "serve.batch=8", "model.layers=5",
                                         ll ? "serve.a2a=low_latency" : "serve.a2a=normal",
                                         mb == 2 ? "serve.microbatches=2"
                                                 : "serve.microbatches=1" };
            struct config c;
            struct cfg_err err = { .msg = "" };
            CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 1, sets, 4, &err), 0);
            struct step_result r;
            CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
            exposed[mb - 1] = r.exposed_comm_s;
            CU_ASSERT(r.exposed_comm_s <= r.comm_s);
            step_free(&r);
        }
        CU_ASSERT(exposed[1] <= exposed[0]);
        CU_ASSERT(exposed[0] > 0);
    }
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "decode attention = KV bytes / (HBM x eff)", test_decode_attn_hbm },
        { "prefill attention FLOPs = causal formula", test_prefill_attn_flops },
        { "MLA: trained dims in prefill, absorbed in decode", test_mla_dims },
        { "KV cache per GPU: Qwen3-235B (GQA), DeepSeek-V3 (MLA)", test_kv_presets },
        { "fp8 GEMMs at their own peak and bytes", test_fp8_gemm },
        { "one GPU, no communication: step = sum of ops", test_one_gpu_sum },
        { "MTP tokens and acceptance", test_mtp },
        { "low-latency: once per target GPU over the network", test_low_latency_bytes },
        { "low-latency: no SMs taken from compute", test_low_latency_no_sms },
        { "two micro-batches, one GPU: step = the halves' ops", test_two_mb_one_gpu },
        { "two micro-batches: exposed comm by hand", test_two_mb_closed_form },
        { "two micro-batches expose no more (DeepSeek-V3 decode)", test_two_mb_preset },
    };
    return cu_run("serve", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
