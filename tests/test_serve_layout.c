/* test_serve_layout.c: an inference step's parallel layout (sim/serve.c, run by the
 * step engine) against hand counts: attention tensor parallelism with sequence
 * parallelism (serve.attn_tp): the KV cache per GPU of a GQA and an MLA model, decode
 * attention's time, the SP all-gather's and reduce-scatter's bytes and time, the
 * attention weights per GPU; the shared expert served as a routed one
 * (serve.shared_as_routed): every token's copies, the shared expert's replicas' load. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compute.h"
#include "config.h"
#include "cu_run.h"
#include "ini_text.h"
#include "balance.h"
#include "model.h"
#include "placement.h"
#include "routing.h"
#include "serve.h"
#include "step.h"
#include "topo.h"

#define REL 1e-12

static void check_rel(double got, double want, double rel)
{
    CU_ASSERT_DOUBLE_EQUAL(got, want, rel * fmax(1e-300, fabs(want)));
}

/* One node of 8 GPUs, EP 8 over 8 experts; a small GQA model (16 heads, 4 KV heads of
 * 64), decoding 8 sequences per GPU at 4000 tokens of context. */
static const char node8[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 8\ngpu_tflops_bf16 = 100\nhbm_GBps = 1000\n"
    "sms = 100\ngemm_efficiency = 0.5\nhbm_efficiency = 0.8\ngemm_half_rows = 64\n"
    "nvlink_GBps = 100\nnvlink_efficiency = 1\n"
    "[model]\nhidden = 1024\nexperts = 8\ntop_k = 2\nshared_experts = 1\n"
    "expert_ffn_hidden = 512\nffn_hidden = 2048\nlayers = 4\nfirst_dense_layers = 1\n"
    "seq_len = 8192\nvocab = 1000\nheads = 16\nkv_heads = 4\nhead_dim = 64\n"
    "[schedule]\nkind = decode\ncomm_sms = 0\n"
    "[serve]\nbatch = 8\ncontext_len = 4000\n";

/* The same model with DeepSeek-V3's MLA sizes: a 512-wide latent and a 64-wide RoPE key. */
static const char *const mla[] = { "model.attention=mla", "model.kv_lora_rank=512",
                                   "model.qk_nope_head_dim=128", "model.qk_rope_head_dim=64",
                                   "model.v_head_dim=128" };

/* node8 with attn_tp = tp, then sets[0..n). */
static struct config load(int tp, const char *const *sets, int n)
{
    char tps[32];
    const char *all[8];
    snprintf(tps, sizeof(tps), "serve.attn_tp=%d", tp);
    all[0] = tps;
    for (int i = 0; i < n && i < 7; i++)
        all[i + 1] = sets[i];
    struct config c;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, node8, all, n + 1), 0);
    return c;
}

/* GQA: a GPU of a TP group of n holds its group's n x 8 sequences with ceil(4 / n) of
 * the 4 KV heads: per token and layer 2 (K, V) x ceil(4 / n) x 64 x 2 B. n = 1: 8 x 4000
 * x 4 layers x 1024 B = 131,072,000 B; n = 2: 16 sequences x 512 B, the same; n = 4: 32 x
 * 256 B, the same; n = 8: 64 sequences x 256 B (a KV head on 2 GPUs), twice. */
static void test_kv_gqa(void)
{
    static const struct { int tp; double per_tok_layer, per_gpu; } w[] = {
        { 1, 1024, 131072000.0 }, { 2, 512, 131072000.0 },
        { 4, 256, 131072000.0 }, { 8, 256, 262144000.0 },
    };
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        struct config c = load(w[i].tp, NULL, 0);
        CU_ASSERT_EQUAL(serve_attn_tp(&c), w[i].tp);
        CU_ASSERT_DOUBLE_EQUAL(serve_kv_bytes_per_token_layer(&c), w[i].per_tok_layer, 0);
        CU_ASSERT_DOUBLE_EQUAL(serve_kv_bytes_per_gpu(&c), w[i].per_gpu, 0);
        CU_ASSERT_DOUBLE_EQUAL(serve_attn_kv_read_bytes(&c), w[i].per_gpu / 4, 0);
    }
}

/* MLA: every head reads the whole latent, so a GPU of a TP group of n holds the (512 +
 * 64) x 2 B = 1152 B a token and layer of all n x 8 sequences: n x 8 x 4000 x 4 x 1152
 * = n x 147,456,000 B. */
static void test_kv_mla(void)
{
    for (int tp = 1; tp <= 8; tp *= 2) {
        struct config c = load(tp, mla, 5);
        CU_ASSERT_DOUBLE_EQUAL(serve_kv_bytes_per_token_layer(&c), 1152, 0);
        CU_ASSERT_DOUBLE_EQUAL(serve_kv_bytes_per_gpu(&c), tp * 147456000.0, 0);
    }
}

/* Decode attention core with MLA and TP 4, one layer, one GPU: its 4 x 8 sequences' latent,
 * 4 x 8 x 4000 x 1152 B = 147,456,000 B, at 1000 GB/s x 0.8: 184.32 us. Its FLOPs, 4 x 8
 * sequences x 4000 keys x 16 / 4 heads x 2 x (576 + 512) = 557 MFLOP at 50 TFLOP/s (11 us),
 * are the same as without TP, and below. */
static void test_decode_attn_tp(void)
{
    struct config c = load(4, mla, 5);
    struct config c1 = load(1, mla, 5);
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, &c, &err), 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), 4.0 * 8 * 4000 * 4 * 2 * (576 + 512), 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_core_flops(&c), serve_attn_core_flops(&c1), 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_attn_kv_read_bytes(&c), 147456000.0, 0);
    check_rel(serve_attn_core_s(cm, &c), 184.32e-6, 1e-9);
    /* The projections: each GEMM on 4 x 8 rows with a quarter of its columns. */
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    const struct model_opdesc *d = &m.op[MODEL_ATTN];
    double proj = 0;
    for (int i = 0; i < d->ngemm; i++)
        proj += compute_gemm_s(cm, 32, d->gemm[i].k, d->gemm[i].n / 4);
    check_rel(serve_attn(cm, &m, &c).f_s,
              proj + compute_mem_s(cm, 8 * d->mem_bytes_per_token) + 184.32e-6, REL);
    compute_free(cm);
}

/* The SP collectives of TP 4 on 8 GPUs: rings {0..3} and {4..7}, 3 steps each; every GPU
 * sends its T = 8 tokens x 1024 x 2 B = 16,384 B a step to the next GPU of its ring, 3 x
 * 16,384 = 49,152 B in all per collective, and nothing to any other GPU. Each step is one
 * NVLink flow per GPU, none sharing a link: path latency + 16,384 B / 100 GB/s; the
 * all-gather and the reduce-scatter each take 3 of them, once per layer (4 layers). */
static void test_sp_collectives(void)
{
    struct config c = load(4, NULL, 0);
    CU_ASSERT_DOUBLE_EQUAL(serve_sp_chunk_bytes(&c), 16384, 0);
    struct step_result r;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_SLICES, &err), 0);
    CU_ASSERT_FATAL(r.comm.sp >= 0);
    const double *b = r.comm.m[r.comm.sp];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            int next = i / 4 * 4 + (i % 4 + 1) % 4;
            CU_ASSERT_DOUBLE_EQUAL(b[i * 8 + j], j == next ? 49152.0 : 0.0, 0);
        }
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    int links[TOPO_MAX_HOPS];
    double lat;
    topo_route(t, 0, 1, links, &lat);
    double want = 3 * (lat + 16384 / 100e9);
    topo_free(t);
    int gather = 0, scatter = 0;
    for (int64_t i = 0; i < r.nslices; i++) {
        const struct step_slice *x = &r.slices[i];
        if (x->what != STEP_ATTN_GATHER && x->what != STEP_ATTN_SCATTER)
            continue;
        gather += x->what == STEP_ATTN_GATHER;
        scatter += x->what == STEP_ATTN_SCATTER;
        check_rel(x->t1_s - x->t0_s, want, 1e-9);
    }
    CU_ASSERT_EQUAL(gather, 4);       /* one lane (EP 8), 4 layers */
    CU_ASSERT_EQUAL(scatter, 4);
    step_free(&r);
}

/* Without TP nothing is gathered or scattered; with TP 4 the attention weights per GPU are
 * a quarter of a layer's: the weights differ by 4 layers x 3/4 x the attention's
 * parameters x 2 B. */
static void test_tp_weights_and_off(void)
{
    struct config c1 = load(1, NULL, 0), c4 = load(4, NULL, 0);
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c1), 0);
    struct step_result r1, r4;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(step_run(&r1, &c1, 1, STEP_KEEP_SLICES, &err), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&r4, &c4, 1, 0, &err), 0);
    CU_ASSERT_EQUAL(r1.comm.sp, -1);
    for (int64_t i = 0; i < r1.nslices; i++)
        CU_ASSERT(r1.slices[i].what != STEP_ATTN_GATHER &&
                  r1.slices[i].what != STEP_ATTN_SCATTER);
    check_rel(r1.param_bytes - r4.param_bytes, 4 * 0.75 * m.op[MODEL_ATTN].params * 2, 1e-9);
    step_free(&r1);
    step_free(&r4);
}

/* 4 GPUs of one node, EP 4, 4 routed experts, top-2, one shared expert (uniform routing,
 * no dedup: a pair counts every assignment), 12 tokens per GPU (decode batch 12). */
static const char node4[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 4\n"
    "[model]\nhidden = 256\nexperts = 4\ntop_k = 2\nshared_experts = 1\n"
    "expert_ffn_hidden = 128\nffn_hidden = 512\nlayers = 2\nfirst_dense_layers = 1\n"
    "seq_len = 4096\nvocab = 1000\nheads = 4\n"
    "[routing]\ndistribution = uniform\ndedup = false\n"
    "[balance]\nplacement = eplb-global\n"
    "[schedule]\nkind = decode\n"
    "[serve]\nbatch = 12\ncontext_len = 100\n";

/* shared_as_routed on, 3 redundant slots: 4 + 1 + 3 = 8 slots, 2 a GPU. The step's
 * routing, as steptab.c draws it: 5 experts, top 3, the last always picked. By hand:
 * every token sends top_k + 1 = 3 copies, so every GPU's row of pairs sums to 12 x 3 = 36;
 * each GPU asks the shared expert for its 12 tokens, 48 in all; EPLB replicates it (48
 * against about 24 for a routed expert), and each source's 12 tokens split evenly over
 * its r replicas (r divides 12), so each replica carries 48 / r. The routed experts'
 * draws are those without it (same seed): off changes nothing of theirs. */
static void test_shared_routed_counts(void)
{
    const char *const on[] = { "serve.shared_as_routed=on", "balance.redundant_experts=3" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, node4, on, 2), 0);
    CU_ASSERT_EQUAL(config_shared_routed(&c), 1);
    struct config cc = c;
    cc.model.experts += 1;
    cc.model.top_k += 1;
    cc.routing.tokens_per_gpu = 12;
    struct routing_in in = { .c = &cc, .seed = 7, .always = 1 };
    struct placement pl;
    bool placed;
    CU_ASSERT_EQUAL_FATAL(balance_place_for(&in, &pl, &placed), 0);
    CU_ASSERT_FATAL(placed);
    in.pl = &pl;
    struct routing rt;
    CU_ASSERT_EQUAL_FATAL(routing_run(&rt, &in), 0);
    CU_ASSERT_EQUAL(rt.experts, 5);
    for (int s = 0; s < 4; s++) {
        uint64_t row = 0;
        for (int d = 0; d < 4; d++)
            row += rt.pair_tokens[s * 4 + d];
        CU_ASSERT_EQUAL(row, 36);
        CU_ASSERT_EQUAL(rt.src_demand[s * 5 + 4], 12);
    }
    CU_ASSERT_EQUAL(rt.expert_demand[4], 48);
    int r = pl.replica0[5] - pl.replica0[4];
    CU_ASSERT(r >= 2);
    for (int i = pl.replica0[4]; i < pl.replica0[5]; i++)
        CU_ASSERT_EQUAL(rt.slot_tokens[pl.replica_slot[i]], (uint64_t)(48 / r));
    uint64_t all = 0;
    for (int x = 0; x < 8; x++)
        all += rt.slot_tokens[x];
    CU_ASSERT_EQUAL(all, 4 * 12 * 3);
    /* off: the same draws of the 4 routed experts (contiguous, no shared column) */
    struct config oc = cc;
    oc.model.experts = 4;
    oc.model.top_k = 2;
    oc.balance.placement = PLACE_CONTIGUOUS;
    oc.balance.redundant_experts = 0;
    struct routing_in oin = { .c = &oc, .seed = 7 };
    struct routing ro;
    CU_ASSERT_EQUAL_FATAL(routing_run(&ro, &oin), 0);
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < 4; e++)
            CU_ASSERT_EQUAL(rt.src_demand[s * 5 + e], ro.src_demand[s * 4 + e]);
    CU_ASSERT_DOUBLE_EQUAL(rt.expert_load_max_over_mean, ro.expert_load_max_over_mean, 0);
    routing_free(&ro);
    routing_free(&rt);
    placement_free(&pl);
}

/* The step: with the shared expert routed no GPU runs it locally (no shared sub-op) and its
 * weights sit in the expert slots: both layouts hold 8 slots, 2 a GPU (4 + 1 + 3 on, 4 + 4
 * off), so on holds the MoE layer's shared expert's weights less: 1 layer x its parameters
 * x 2 B. */
static void test_shared_routed_step(void)
{
    const char *const on[] = { "serve.shared_as_routed=on", "balance.redundant_experts=3" };
    const char *const off[] = { "balance.redundant_experts=4" };
    struct config c_on, c_off;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c_on, node4, on, 2), 0);
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c_off, node4, off, 1), 0);
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c_on), 0);
    struct step_result r_on, r_off;
    struct cfg_err err = { .msg = "" };
    CU_ASSERT_EQUAL_FATAL(step_run(&r_on, &c_on, 1, STEP_KEEP_SLICES, &err), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&r_off, &c_off, 1, STEP_KEEP_SLICES, &err), 0);
    int shared_on = 0, shared_off = 0;
    for (int64_t i = 0; i < r_on.nslices; i++)
        shared_on += r_on.slices[i].what == STEP_SHARED;
    for (int64_t i = 0; i < r_off.nslices; i++)
        shared_off += r_off.slices[i].what == STEP_SHARED;
    CU_ASSERT_EQUAL(shared_on, 0);
    CU_ASSERT_EQUAL(shared_off, 1);    /* one lane, one MoE layer */
    check_rel(r_off.param_bytes - r_on.param_bytes, m.op[MODEL_SHARED].params * 2, 1e-12);
    step_free(&r_on);
    step_free(&r_off);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "attn TP: GQA KV cache per GPU (heads split, replicated)", test_kv_gqa },
        { "attn TP: MLA KV cache per GPU (latent of the group)", test_kv_mla },
        { "attn TP: decode attention time", test_decode_attn_tp },
        { "attn TP: SP all-gather and reduce-scatter bytes and time", test_sp_collectives },
        { "attn TP: weights per GPU; attn_tp = 1 adds nothing", test_tp_weights_and_off },
        { "shared as routed: copies per token, replicas' load", test_shared_routed_counts },
        { "shared as routed: no local shared op, its weights in slots",
          test_shared_routed_step },
    };
    return cu_run("serve_layout", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
