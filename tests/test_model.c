/* test_model.c: CUnit suite for sim/model.c. Configs are filled by hand (memset, then
 * the fields a model needs); every expected count is summed by hand in its comment
 * from the per-op formulas stated in model.c or from a published figure, which the
 * comment names. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "cu_run.h"
#include "model.h"

/* A GQA model: all the [model] fields model_init reads; MoE fields left 0 when moe is 0. */
static void gqa_config(struct config *c, int hidden, int heads, int kv_heads, int head_dim,
                       int seq_len, int vocab, int layers, int first_dense, int ffn_hidden)
{
    memset(c, 0, sizeof(*c));
    c->model.attention = ATTN_GQA;
    c->model.hidden = hidden;
    c->model.heads = heads;
    c->model.kv_heads = kv_heads;
    c->model.head_dim = head_dim;
    c->model.seq_len = seq_len;
    c->model.vocab = vocab;
    c->model.layers = layers;
    c->model.first_dense_layers = first_dense;
    c->model.moe_every = 1;
    c->model.ffn_hidden = ffn_hidden;
    c->model.ffn_act = FFN_SWIGLU;
}

static void moe_fields(struct config *c, int experts, int top_k, int shared, int expert_ffn)
{
    c->model.experts = experts;
    c->model.top_k = top_k;
    c->model.shared_experts = shared;
    c->model.expert_ffn_hidden = expert_ffn;
}

static void mla_config(struct config *c, int hidden, int heads, int q_lora, int kv_lora,
                       int nope, int rope, int v_dim)
{
    c->model.attention = ATTN_MLA;
    c->model.heads = heads;
    c->model.hidden = hidden;
    c->model.q_lora_rank = q_lora;
    c->model.kv_lora_rank = kv_lora;
    c->model.qk_nope_head_dim = nope;
    c->model.qk_rope_head_dim = rope;
    c->model.v_head_dim = v_dim;
}

/* The tiny model used below: h 8, a 2 heads, g 1 kv head, d 4, s 16, V 10, 2 layers of
 * which the first dense (f 12), MoE: E 4, top 2, 1 shared, fe 6. */
static void tiny(struct config *c)
{
    gqa_config(c, 8, 2, 1, 4, 16, 10, 2, 1, 12);
    moe_fields(c, 4, 2, 1, 6);
}

static void expect_gemm(const struct model_opdesc *d, int i, double k, double n)
{
    CU_ASSERT_DOUBLE_EQUAL(d->gemm[i].k, k, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->gemm[i].n, n, 0);
}

/* Shapes (k x n) by hand from model.h: ATTN q 8x8 (a d = 8), k 8x4, v 8x4 (g d = 4),
 * o 8x8; FFN 8x12, 8x12, 12x8; GATE 8x4; SHARED 8x6, 8x6, 6x8 (ns fe = 6); EXPERT the
 * same; HEAD 8x10; EMBED none. Core: 2 a (d + d) s / 2 = 2*2*8*16/2 = 256 FLOPs. */
static void test_tiny_shapes(void)
{
    struct config c;
    struct model m;

    tiny(&c);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL(m.op[MODEL_EMBED].ngemm, 0);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_ATTN].ngemm, 4);
    expect_gemm(&m.op[MODEL_ATTN], 0, 8, 8);
    expect_gemm(&m.op[MODEL_ATTN], 1, 8, 4);
    expect_gemm(&m.op[MODEL_ATTN], 2, 8, 4);
    expect_gemm(&m.op[MODEL_ATTN], 3, 8, 8);
    CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_ATTN].core_flops_per_token, 256, 0);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_FFN].ngemm, 3);
    expect_gemm(&m.op[MODEL_FFN], 0, 8, 12);
    expect_gemm(&m.op[MODEL_FFN], 1, 8, 12);
    expect_gemm(&m.op[MODEL_FFN], 2, 12, 8);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_GATE].ngemm, 1);
    expect_gemm(&m.op[MODEL_GATE], 0, 8, 4);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_SHARED].ngemm, 3);
    expect_gemm(&m.op[MODEL_SHARED], 2, 6, 8);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_EXPERT].ngemm, 3);
    expect_gemm(&m.op[MODEL_EXPERT], 0, 8, 6);
    CU_ASSERT_EQUAL_FATAL(m.op[MODEL_HEAD].ngemm, 1);
    expect_gemm(&m.op[MODEL_HEAD], 0, 8, 10);
    CU_ASSERT_FALSE(model_layer_is_moe(&m, 0));
    CU_ASSERT_TRUE(model_layer_is_moe(&m, 1));
    CU_ASSERT_FALSE(model_layer_is_moe(&m, 2));
}

/* Forward FLOPs per token, 2 k n per GEMM: ATTN 2 (64 + 32 + 32 + 64) + 256 = 640;
 * FFN 2 * 3 * 96 = 576; GATE 2 * 32 = 64; SHARED and EXPERT 2 * 3 * 48 = 288 each;
 * HEAD 2 * 80 = 160. One token: layer 0 640 + 576, layer 1 640 + 64 + 288 + 2 * 288,
 * head 160: 2944 forward, 3 x 2944 = 8832 for MFU. Three tokens of ATTN: 1920. */
static void test_tiny_flops(void)
{
    struct config c;
    struct model m;

    tiny(&c);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_ATTN, 1), 640, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_ATTN, 3), 1920, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_FFN, 1), 576, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_GATE, 1), 64, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_SHARED, 1), 288, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_EXPERT, 2), 576, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_HEAD, 1), 160, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_op_flops(&m, MODEL_EMBED, 5), 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_flops_per_token(&m), 8832, 0);
}

/* Parameters: EMBED V h = 80; ATTN norm 8 + 64 + 32 + 32 + 64 = 200; FFN 8 + 3 * 96 =
 * 296; GATE 8 + 32 = 40; SHARED = EXPERT = 3 * 48 = 144; HEAD 8 + 80 = 88.
 * Total 80 + 2 * 200 + 296 + (40 + 144 + 4 * 144) + 88 = 1624; active (2 of 4 experts)
 * 1624 - 2 * 144 = 1336.
 * Traffic (model.c's table): EMBED 4h = 32; ATTN norm 4h 32 + RoPE 4 (a + g) d 48 +
 * residual 6h 48 = 128; FFN 32 + 6f 72 + 48 = 152; GATE 32 + 48 + 12E 48 = 128; SHARED,
 * EXPERT 6 fe = 36; HEAD 32 + 2V 20 = 52.
 * Activations: ATTN norm 2h + 4 = 20, normed x 16, q 2ad 16, k and v 2gd 8 each, o 16,
 * logsumexp 4a 8: 92; FFN 20 + 16 + 6f 72 = 108; GATE 20 + 16 + 4E 16 + 4 top_k 8 = 60;
 * SHARED 6 fe = 36 (its input is the gate's); EXPERT its input 2h 16 + 36 = 52; HEAD
 * 20 + 16 + logits 2V 20 + 4 = 60; EMBED 0. */
static void test_tiny_params_and_bytes(void)
{
    static const double params[MODEL_NOPS] = { 80, 200, 296, 40, 144, 144, 88 };
    static const double mem[MODEL_NOPS] = { 32, 128, 152, 128, 36, 36, 52 };
    static const double act[MODEL_NOPS] = { 0, 92, 108, 60, 36, 52, 60 };
    struct config c;
    struct model m;

    tiny(&c);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    for (int op = 0; op < MODEL_NOPS; op++) {
        CU_ASSERT_DOUBLE_EQUAL(m.op[op].params, params[op], 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[op].mem_bytes_per_token, mem[op], 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[op].act_bytes_per_token, act[op], 0);
    }
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 1624, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_active(&m), 1336, 0);
}

/* The tiny model with each activation. GeGLU has SwiGLU's three matrices and bytes:
 * the numbers of test_tiny_params_and_bytes. ReLU and GeLU have two matrices, up h x f
 * and down f x h: FFN 8x12, 12x8; SHARED and EXPERT 8x6, 6x8.
 *   params  FFN 8 + 2 * 96 = 200; SHARED = EXPERT = 2 * 48 = 96; total 80 + 2 * 200 +
 *           200 + (40 + 96 + 4 * 96) + 88 = 1288; active 1288 - 2 * 96 = 1096.
 *   FLOPs   FFN 2 * 2 * 96 = 384, SHARED and EXPERT 2 * 2 * 48 = 192; a token: layer 0
 *           640 + 384, layer 1 640 + 64 + 192 + 2 * 192, head 160: 2464, 3x: 7392.
 *   traffic act(up) reads one and writes one, 4f: FFN 32 + 48 + 48 = 128; SHARED,
 *           EXPERT 4 fe = 24.
 *   kept    GeLU its input and output, 4f: FFN 20 + 16 + 48 = 84, SHARED 24, EXPERT
 *           16 + 24 = 40. ReLU its output alone, 2f: FFN 20 + 16 + 24 = 60, SHARED 12,
 *           EXPERT 16 + 12 = 28. */
static void test_tiny_activations(void)
{
    static const struct {
        enum ffn_act act;
        int ngemm;
        double ffn, expert, total, active, flops;        /* params, params, ..., per token */
        double ffn_mem, expert_mem, ffn_act, shared_act, expert_act;
    } cases[] = {
        { FFN_SWIGLU, 3, 296, 144, 1624, 1336, 8832, 152, 36, 108, 36, 52 },
        { FFN_GEGLU, 3, 296, 144, 1624, 1336, 8832, 152, 36, 108, 36, 52 },
        { FFN_GELU, 2, 200, 96, 1288, 1096, 7392, 128, 24, 84, 24, 40 },
        { FFN_RELU, 2, 200, 96, 1288, 1096, 7392, 128, 24, 60, 12, 28 },
    };
    struct config c;
    struct model m;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tiny(&c);
        c.model.ffn_act = cases[i].act;
        CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
        CU_ASSERT_EQUAL_FATAL(m.op[MODEL_FFN].ngemm, cases[i].ngemm);
        CU_ASSERT_EQUAL_FATAL(m.op[MODEL_SHARED].ngemm, cases[i].ngemm);
        CU_ASSERT_EQUAL_FATAL(m.op[MODEL_EXPERT].ngemm, cases[i].ngemm);
        expect_gemm(&m.op[MODEL_FFN], 0, 8, 12);
        expect_gemm(&m.op[MODEL_FFN], cases[i].ngemm - 1, 12, 8);
        expect_gemm(&m.op[MODEL_EXPERT], 0, 8, 6);
        expect_gemm(&m.op[MODEL_EXPERT], cases[i].ngemm - 1, 6, 8);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_FFN].params, cases[i].ffn, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_SHARED].params, cases[i].expert, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_EXPERT].params, cases[i].expert, 0);
        CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), cases[i].total, 0);
        CU_ASSERT_DOUBLE_EQUAL(model_params_active(&m), cases[i].active, 0);
        CU_ASSERT_DOUBLE_EQUAL(model_flops_per_token(&m), cases[i].flops, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_FFN].mem_bytes_per_token, cases[i].ffn_mem, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_SHARED].mem_bytes_per_token, cases[i].expert_mem, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_EXPERT].mem_bytes_per_token, cases[i].expert_mem, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_FFN].act_bytes_per_token, cases[i].ffn_act, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_SHARED].act_bytes_per_token, cases[i].shared_act, 0);
        CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_EXPERT].act_bytes_per_token, cases[i].expert_act, 0);
    }
}

/* Korthikanti et al.'s own GeLU MLP (f = 4h) keeps 20h + 4 with its norm: their 19h MLP
 * (2h input, 8h GeLU input, 8h second GEMM input, 1h dropout mask) less the mask, plus
 * the RMSNorm's 2h input and 1/rms. h 768: 15364. */
static void test_gelu_korthikanti(void)
{
    struct config c;
    struct model m;

    gqa_config(&c, 768, 12, 12, 64, 2048, 50257, 1, 1, 4 * 768);
    c.model.ffn_act = FFN_GELU;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_FFN].act_bytes_per_token, 20 * 768 + 4, 0);
}

/* MoE layers by brute force: l >= F and (l + 1) % N == 0 (model.h). */
static int moe_layers_by_hand(int layers, int first_dense, int every, int *index_of)
{
    int n = 0;
    for (int l = 0; l < layers; l++)
        index_of[l] = l >= first_dense && (l + 1) % every == 0 ? n++ : -1;
    return n;
}

/* Every (layers, first_dense_layers, moe_every) up to 12: the helpers against the loop
 * above, and both helper families agree. */
static void test_moe_every_rule(void)
{
    struct config c;
    struct model m;
    int index_of[12];

    for (int L = 1; L <= 12; L++)
        for (int F = 0; F <= L; F++)
            for (int N = 1; N <= 13; N++) {
                int n = moe_layers_by_hand(L, F, N, index_of);
                tiny(&c);
                c.model.layers = L;
                c.model.first_dense_layers = F;
                c.model.moe_every = N;
                CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
                CU_ASSERT_EQUAL(model_moe_layers(&m), n);
                CU_ASSERT_EQUAL(model_cfg_moe_layers(&c.model), n);
                for (int l = -1; l <= L; l++) {
                    int want = l >= 0 && l < L ? index_of[l] : -1;
                    CU_ASSERT_EQUAL(model_moe_index(&m, l), want);
                    CU_ASSERT_EQUAL(model_layer_is_moe(&m, l), want >= 0);
                    CU_ASSERT_EQUAL(model_cfg_layer_is_moe(&c.model, l), want >= 0);
                }
            }
    /* GShard / Switch, every other layer: 1, 3, 5 of 6 */
    tiny(&c);
    c.model.layers = 6;
    c.model.first_dense_layers = 0;
    c.model.moe_every = 2;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_FALSE(model_layer_is_moe(&m, 0));
    CU_ASSERT_TRUE(model_layer_is_moe(&m, 1));
    CU_ASSERT_FALSE(model_layer_is_moe(&m, 4));
    CU_ASSERT_TRUE(model_layer_is_moe(&m, 5));
    CU_ASSERT_EQUAL(model_moe_index(&m, 5), 2);
}

/* The tiny model with 6 layers, the first dense, then MoE every 2nd: layers 1, 3, 5 MoE,
 * 0, 2, 4 dense. Per-op counts of test_tiny_params_and_bytes and test_tiny_flops:
 *   params  80 + 6 * 200 + 3 * 296 + 3 * (40 + 144 + 4 * 144) + 88 = 4536; active
 *           4536 - 3 * 2 * 144 = 3672; with ReLU (test_tiny_activations' per-op counts)
 *           80 + 1200 + 3 * 200 + 3 * (40 + 96 + 4 * 96) + 88 = 3528.
 *   FLOPs   6 * 640 + 3 * 576 + 3 * (64 + 288 + 2 * 288) + 160 = 8512, 3x: 25536.
 * moe_every 7 > 6 layers: all dense, no expert width needed: 80 + 6 * 496 + 88 = 3144. */
static void test_moe_every_counts(void)
{
    struct config c;
    struct model m;

    tiny(&c);
    c.model.layers = 6;
    c.model.moe_every = 2;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL(model_moe_layers(&m), 3);
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 4536, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_active(&m), 3672, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_flops_per_token(&m), 25536, 0);
    c.model.ffn_act = FFN_RELU;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 3528, 0);
    tiny(&c);
    c.model.layers = 6;
    c.model.first_dense_layers = 0;
    c.model.moe_every = 7;
    c.model.expert_ffn_hidden = 0;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL(model_moe_layers(&m), 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 3144, 0);
    /* moe_every 2 with no dense prefix still has dense layers: ffn_hidden is needed */
    c.model.moe_every = 2;
    c.model.expert_ffn_hidden = 6;
    c.model.ffn_hidden = 0;
    CU_ASSERT_EQUAL(model_init(&m, &c), -EINVAL);
}

/* MLA with h 16, a 2, ql 8, kvl 4, dn 3, dr 2, dv 4, s 10 (DeepSeek-V2 sec. 2.1 shapes):
 * GEMMs 16x8 (W_qa), 8x10 (W_qb: a (dn + dr)), 16x6 (W_kva: kvl + dr), 4x14 (W_kvb:
 * a (dn + dv)), 8x16 (W_o: a dv). Core a (dn + dr + dv) s = 2 * 9 * 10 = 180.
 * Params 16 (norm) + 128 + 8 (q norm) + 80 + 96 + 4 (kv norm) + 56 + 128 = 516.
 * Traffic norms 4 (h + ql + kvl) = 112, RoPE 4 (a + 1) dr = 24, residual 6h = 96: 232.
 * Activations: norm 36, normed x 32, q norm 20, normed q 16, kv norm 12, normed kv 8,
 * q and k 2 * 2a (dn + dr) = 40, v and o 2 * 2 a dv = 32, logsumexp 4a = 8: 204.
 * Without the q latent (ql 0, DeepSeek-V2-Lite): W_q 16x10 replaces W_qa, its norm and
 * W_qb: params 16 + 160 + 96 + 4 + 56 + 128 = 460; traffic 232 - 32 = 200;
 * activations 204 - 20 - 16 = 168. */
static void test_mla(void)
{
    struct config c;
    struct model m;
    const struct model_opdesc *d = &m.op[MODEL_ATTN];

    gqa_config(&c, 16, 2, 0, 0, 10, 10, 1, 1, 4);
    mla_config(&c, 16, 2, 8, 4, 3, 2, 4);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL_FATAL(d->ngemm, 5);
    expect_gemm(d, 0, 16, 8);
    expect_gemm(d, 1, 8, 10);
    expect_gemm(d, 2, 16, 6);
    expect_gemm(d, 3, 4, 14);
    expect_gemm(d, 4, 8, 16);
    CU_ASSERT_DOUBLE_EQUAL(d->core_flops_per_token, 180, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->params, 516, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->mem_bytes_per_token, 232, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->act_bytes_per_token, 204, 0);

    c.model.q_lora_rank = 0;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL_FATAL(d->ngemm, 4);
    expect_gemm(d, 0, 16, 10);
    expect_gemm(d, 1, 16, 6);
    CU_ASSERT_DOUBLE_EQUAL(d->params, 460, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->mem_bytes_per_token, 200, 0);
    CU_ASSERT_DOUBLE_EQUAL(d->act_bytes_per_token, 168, 0);
}

/* Korthikanti et al. 2022, eq. (1): 34h + 5as bytes per token per layer (no tensor
 * parallelism). Without the two h dropout masks and the 5as scores/softmax/mask (flash
 * attention, no dropout): 32h. A GPT-2-small-sized dense layer (h 768, a 12, d 64) with
 * a SwiGLU of f = 8h/3 = 2048 (the FLOPs of their 4h GeLU MLP) keeps
 * 32h + 4a (logsumexp) + 8 (two 1/rms) = 24576 + 48 + 8 = 24632 bytes per token. */
static void test_activations_korthikanti(void)
{
    struct config c;
    struct model m;

    gqa_config(&c, 768, 12, 12, 64, 2048, 50257, 1, 1, 2048);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_ATTN].act_bytes_per_token +
                           m.op[MODEL_FFN].act_bytes_per_token, 32 * 768 + 4 * 12 + 8, 0);
}

/* A published model: its config.json shapes, its total and active parameters summed by
 * hand from them (model.c's rules), and the published figures with the tolerance each
 * is held to. */
struct published {
    const char *name;
    enum attn_kind attention;
    int hidden, heads, kv_heads, head_dim, vocab, layers, dense, ffn;
    int q_lora, kv_lora, nope, rope, v_dim;                   /* MLA */
    int experts, top_k, shared, expert_ffn;
    double total, active;             /* by hand, exact */
    double total_pub, total_tol;      /* published, |ours / published - 1| <= tol */
    double active_pub, active_tol;
    bool active_pub_no_embed;         /* the published active count leaves the embedding out */
};

/* How to add a model: its config.json fields, then the two sums worked by hand below.
 *
 * DeepSeek-V3 (arXiv:2412.19437, abstract and sec. 4.2: 671B total, 37B activated per
 * token); config.json of deepseek-ai/DeepSeek-V3. Attention per layer 7168*1536 +
 * 1536*128*192 + 7168*576 + 512*128*256 + 128*128*7168 + norms (7168 + 1536 + 512) =
 * 187,114,496; dense FFN 3*7168*18432 + 7168 = 396,368,896; MoE layer 7168*256 + 7168 +
 * (1 + 256) * 3*7168*2048 = 11,320,171,520; embedding and head 129280*7168 each, final
 * norm 7168: 61 * 187,114,496 + 3 * 396,368,896 + 58 * 11,320,171,520 +
 * 2 * 926,679,040 + 7168 = 671,026,404,352, 0.004% over 671B (the router biases, 256 a
 * layer, are left out; the 14B multi-token-prediction module is in neither). Active
 * (8 of 256): less 58 * 248 * 44,040,192 = 37,552,282,624 with the embedding, 1.5% over
 * 37B; 36,625,603,584 without it, 1.0% under.
 * DeepSeek-V2 (arXiv:2405.04434, abstract: 236B total, 21B activated); config.json of
 * deepseek-ai/DeepSeek-V2. Attention 5120*1536 + 37,748,736 + 5120*576 + 16,777,216 +
 * 128*128*5120 + 7168 = 149,232,640; dense 3*5120*12288 + 5120; MoE layer 5120*160 + 5120
 * + (2 + 160) * 3*5120*1536; 60 layers, 1 dense: 235,741,434,880 (0.1% under 236B);
 * active 21,375,800,320 (1.8% over 21B; 20.85B without the embedding, 0.7% under).
 * DeepSeek-V2-Lite (same report, appendix B: 15.7B total, 2.4B activated); config.json of
 * deepseek-ai/DeepSeek-V2-Lite, no q latent. Attention 2048 + 2048*16*192 + 2048*576 +
 * 512 + 512*16*256 + 16*128*2048 = 13,765,120; dense 3*2048*10944 + 2048; MoE layer
 * 2048*64 + 2048 + (2 + 64) * 3*2048*1408; 27 layers, 1 dense: 15,706,484,224 (0.04%
 * over); active 2,661,150,208 with the embedding, 11% over 2.4B, 2,451,435,008 without,
 * 2.1% over: DeepSeek's activated counts leave the input embedding out. 2.5% for a
 * figure given to one decimal.
 * Mixtral 8x7B; config.json of mistralai/Mixtral-8x7B-v0.1. Attention 4096*4096 * 2 +
 * 4096*1024 * 2 + 4096 = 41,947,136; gate 4096*8 + 4096; expert 3*4096*14336 =
 * 176,160,768; 32 MoE layers, embedding and head 32000*4096 each, final norm:
 * 46,702,792,704. Mistral AI's release note gives 46.7B total and 12.9B per token (the
 * paper, arXiv:2401.04088, rounds to 47B and 13B). Active: less 32 * 6 * 176,160,768 =
 * 12,879,925,248, 0.2% under 12.9B with the embedding.
 * Qwen3-30B-A3B (Qwen3 Technical Report, arXiv:2505.09388: 30.5B total, 3.3B activated);
 * config.json of Qwen/Qwen3-30B-A3B, head_dim 128 (not hidden / heads = 64). Attention
 * 2048*4096 * 2 + 2048*512 * 2 + 2048 = 18,876,416; gate 2048*128 + 2048; expert
 * 3*2048*768 = 4,718,592; 48 MoE layers: 30,532,110,336 (0.1% over 30.5B; its per-head
 * q/k norms, 256 a layer, are not counted); active 3,353,020,416 (1.6% over 3.3B). */
static const struct published published[] = {
    { "DeepSeek-V3", ATTN_MLA, 7168, 128, 0, 0, 129280, 61, 3, 18432,
      1536, 512, 128, 64, 128, 256, 8, 1, 2048,
      671026404352.0, 37552282624.0, 671e9, 0.001, 37e9, 0.02, true },
    { "DeepSeek-V2", ATTN_MLA, 5120, 128, 0, 0, 102400, 60, 1, 12288,
      1536, 512, 128, 64, 128, 160, 6, 2, 1536,
      235741434880.0, 21375800320.0, 236e9, 0.002, 21e9, 0.02, true },
    { "DeepSeek-V2-Lite", ATTN_MLA, 2048, 16, 0, 0, 102400, 27, 1, 10944,
      0, 512, 128, 64, 128, 64, 6, 2, 1408,
      15706484224.0, 2661150208.0, 15.7e9, 0.001, 2.4e9, 0.025, true },
    { "Mixtral-8x7B", ATTN_GQA, 4096, 32, 8, 128, 32000, 32, 0, 0,
      0, 0, 0, 0, 0, 8, 2, 0, 14336,
      46702792704.0, 12879925248.0, 46.7e9, 0.001, 12.9e9, 0.005, false },
    { "Qwen3-30B-A3B", ATTN_GQA, 2048, 32, 4, 128, 151936, 48, 0, 0,
      0, 0, 0, 0, 0, 128, 8, 0, 768,
      30532110336.0, 3353020416.0, 30.5e9, 0.002, 3.3e9, 0.02, false },
};

static int published_model(struct model *m, const struct published *p)
{
    struct config c;

    gqa_config(&c, p->hidden, p->heads, p->kv_heads, p->head_dim, 4096, p->vocab, p->layers,
               p->dense, p->ffn);
    if (p->attention == ATTN_MLA)
        mla_config(&c, p->hidden, p->heads, p->q_lora, p->kv_lora, p->nope, p->rope,
                   p->v_dim);
    moe_fields(&c, p->experts, p->top_k, p->shared, p->expert_ffn);
    return model_init(m, &c);
}

static void test_published(void)
{
    for (size_t i = 0; i < sizeof(published) / sizeof(published[0]); i++) {
        const struct published *p = &published[i];
        struct model m;
        double total, active;

        CU_ASSERT_EQUAL_FATAL(published_model(&m, p), 0);
        total = model_params_total(&m);
        active = model_params_active(&m);
        CU_ASSERT_DOUBLE_EQUAL(total, p->total, 0);
        CU_ASSERT_DOUBLE_EQUAL(active, p->active, 0);
        if (p->active_pub_no_embed)
            active -= m.op[MODEL_EMBED].params;
        CU_ASSERT_TRUE(fabs(total / p->total_pub - 1) <= p->total_tol);
        CU_ASSERT_TRUE(fabs(active / p->active_pub - 1) <= p->active_tol);
        if (fabs(total / p->total_pub - 1) > p->total_tol ||
            fabs(active / p->active_pub - 1) > p->active_tol)
            fprintf(stderr, "\n  %s: total %.4g, active %.4g\n", p->name, total, active);
    }
}

/* Switch-Base-128 (configs/models/switch-base-128.ini; config.json of
 * google/switch-base-128): h 768, 12 heads of 64, V 32128, ReLU FFNs of 3072, 128 experts,
 * top-1, its 12 encoder and 12 decoder blocks as one stack of 24 with MoE on every other
 * block. Ours: embedding 32128 * 768 = 24,674,304; attention 768 + 4 * 768^2 =
 * 2,360,064 a layer; dense FFN 768 + 2 * 768 * 3072 = 4,719,360; MoE layer 768 +
 * 768 * 128 + 128 * 4,718,592 = 604,078,848; head 768 + 24,674,304: 24,674,304 +
 * 24 * 2,360,064 + 12 * 4,719,360 + 12 * 604,078,848 + 24,675,072 = 7,411,569,408;
 * active (1 of 128 experts) less 12 * 127 * 4,718,592: 220,435,200.
 * The checkpoint by hand, from the same config.json and the Hugging Face
 * SwitchTransformers layout: shared embedding (tied to the head) 24,674,304; encoder 12 x
 * (attention 2,359,296 + 2 norms of 768) + relative bias 32 * 12 + 6 dense FFNs of
 * 4,718,592 + 6 x (router 98,304 + 128 experts) + final norm = 3,681,111,168; decoder
 * the same with cross-attention (2,359,296 + a norm of 768 more a block) =
 * 3,709,431,936: total 7,415,217,408. Ours is 0.05% under: no cross-attention (-28.3M),
 * an untied head (+24.7M). The paper's Table 9 (arXiv:2101.03961) gives 7B, to the
 * billion. */
static void test_switch_base(void)
{
    struct config c;
    struct model m;

    gqa_config(&c, 768, 12, 12, 64, 512, 32128, 24, 0, 3072);
    moe_fields(&c, 128, 1, 0, 3072);
    c.model.moe_every = 2;
    c.model.ffn_act = FFN_RELU;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    CU_ASSERT_EQUAL(model_moe_layers(&m), 12);
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 7411569408.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_active(&m), 220435200.0, 0);
    CU_ASSERT(fabs(model_params_total(&m) / 7415217408.0 - 1) <= 0.001);
    CU_ASSERT(fabs(model_params_total(&m) - 7e9) <= 0.5e9);
}

/* DeepSeek-V3's attention alone, 187,114,496 (summed above), and the MLA core:
 * 128 heads of dqk 192 and dv 128 over s = 4096: 128 * 320 * 4096 = 167,772,160 FLOPs. */
static void test_published_v3_attention(void)
{
    struct model m;

    CU_ASSERT_EQUAL_FATAL(published_model(&m, &published[0]), 0);
    CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_ATTN].params, 187114496.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(m.op[MODEL_ATTN].core_flops_per_token, 167772160.0, 0);
}

/* MFU numerator against PaLM (Chowdhery et al. 2022, appendix B: 6N + 12 L H Q T per
 * token, the full square; we count the causal half, 6 L H Q T). Mixtral 8x7B at
 * s = 4096: N = active less the embedding and the norms (65 * 4096 = 266,240) =
 * 12,879,925,248 - 131,072,000 - 266,240 = 12,748,587,008;
 * 6 N + 6 * 32 * 32 * 128 * 4096 = 76,491,522,048 + 3,221,225,472. */
static void test_flops_palm(void)
{
    struct model m;

    CU_ASSERT_EQUAL_FATAL(published_model(&m, &published[3]), 0);
    CU_ASSERT_DOUBLE_EQUAL(model_flops_per_token(&m),
                           6.0 * 12748587008.0 + 6.0 * 32 * 32 * 128 * 4096, 0);
}

/* kv_heads 0 and head_dim 0 read as config.h fills them in: heads and hidden / heads.
 * h 8, a 2: q, k, v, o all 8x8. */
static void test_gqa_defaults(void)
{
    struct config c;
    struct model m;

    gqa_config(&c, 8, 2, 0, 0, 4, 10, 1, 1, 4);
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    for (int i = 0; i < 4; i++)
        expect_gemm(&m.op[MODEL_ATTN], i, 8, 8);
}

/* model.h's -EINVAL list, one field of the good tiny model wrong at a time. */
static void test_invalid(void)
{
    static const struct {
        size_t field;                        /* offsetof(struct cfg_model, an int field) */
        int value;
    } bad[] = {
        { offsetof(struct cfg_model, ffn_hidden), 0 },        /* dense layer, no ffn_hidden */
        { offsetof(struct cfg_model, expert_ffn_hidden), 0 }, /* MoE layer, no expert ffn */
        { offsetof(struct cfg_model, first_dense_layers), 3 },/* more than the 2 layers */
        { offsetof(struct cfg_model, first_dense_layers), -1 },
        { offsetof(struct cfg_model, top_k), 5 },             /* more than the 4 experts */
        { offsetof(struct cfg_model, kv_heads), 3 },          /* more than the 2 heads */
        { offsetof(struct cfg_model, seq_len), 0 },
        { offsetof(struct cfg_model, vocab), 0 },
        { offsetof(struct cfg_model, heads), 0 },
        { offsetof(struct cfg_model, hidden), 0 },
        { offsetof(struct cfg_model, moe_every), 0 },
        { offsetof(struct cfg_model, ffn_act), 4 },           /* past FFN_GELU */
    };
    struct config c;
    struct model m;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tiny(&c);
        memcpy((char *)&c.model + bad[i].field, &bad[i].value, sizeof(int));
        CU_ASSERT_EQUAL(model_init(&m, &c), -EINVAL);
    }
    tiny(&c);
    mla_config(&c, 8, 2, 0, 0, 2, 2, 4);     /* MLA without kv_lora_rank */
    CU_ASSERT_EQUAL(model_init(&m, &c), -EINVAL);
    tiny(&c);
    c.model.attention = (enum attn_kind)7;
    CU_ASSERT_EQUAL(model_init(&m, &c), -EINVAL);
    /* All layers dense: the expert fields are not needed; params as in
     * test_tiny_params_and_bytes: 80 + 2 * (200 + 296) + 88. */
    tiny(&c);
    c.model.first_dense_layers = 2;
    c.model.expert_ffn_hidden = 0;
    CU_ASSERT_EQUAL(model_init(&m, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(model_params_total(&m), 80 + 2 * (200 + 296) + 88, 0);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "tiny model: GEMM shapes and core", test_tiny_shapes },
        { "tiny model: FLOPs per op and per token", test_tiny_flops },
        { "tiny model: params, traffic, activations", test_tiny_params_and_bytes },
        { "tiny model: each FFN activation", test_tiny_activations },
        { "GeLU MLP against Korthikanti et al. 2022", test_gelu_korthikanti },
        { "moe_every: which layers are MoE", test_moe_every_rule },
        { "moe_every: params and FLOPs", test_moe_every_counts },
        { "MLA shapes, with and without the q latent", test_mla },
        { "activations against Korthikanti et al. 2022", test_activations_korthikanti },
        { "published totals and active counts", test_published },
        { "DeepSeek-V3 attention params and MLA core", test_published_v3_attention },
        { "Switch-Base-128: ReLU experts every other layer", test_switch_base },
        { "MFU numerator: PaLM's 6N + causal core", test_flops_palm },
        { "GQA kv_heads and head_dim defaults", test_gqa_defaults },
        { "configs that cannot describe a step", test_invalid },
    };
    return cu_run("model", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
