/* test_step.c: the training-step engine (sim/step.c) against hand-derived timelines.
 *
 * Every expected time is composed here from the compute model's op times (compute.h)
 * and closed-form transfer times, following the dependencies step.h states; the engine
 * must reproduce them by running its event loop. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "config.h"
#include "cu_run.h"
#include "ini_text.h"
#include "model.h"
#include "rtrace.h"
#include "sched.h"
#include "step.h"

#define REL 1e-9

static int load(struct config *c, const char *text, const char *const *sets, int nsets)
{
    return ini_text_load(c, text, sets, nsets);
}

/* Two GPUs on one node, one MoE layer with 2 experts and top_k 2: every token goes to
 * both experts, one per GPU, so the routing is deterministic: each GPU sends all T of
 * its tokens to the other (one flow each way, 2 NVLink hops of latency) and each
 * expert receives 2T token-expert pairs. */
static const char moe2[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 2\nnvlink_GBps = 50\nnvlink_latency_us = 3\n"
    "gpu_tflops_bf16 = 100\nhbm_GBps = 1000\nsms = 100\n"
    "[model]\nhidden = 512\nexperts = 2\ntop_k = 2\nshared_experts = 1\n"
    "expert_ffn_hidden = 1024\nffn_hidden = 2048\nlayers = 1\nfirst_dense_layers = 0\n"
    "seq_len = 256\nvocab = 1000\nheads = 4\n"
    "dispatch_bytes_per_elem = 1\ncombine_bytes_per_elem = 2\n"
    "[parallel]\npp = 1\nep = 2\n"
    "[schedule]\nkind = gpipe\nmicrobatches = 1\nmicro_batch_tokens = 256\ncomm_sms = 0\n"
    "grad_bytes_per_param = 4\n";

struct layer_times {
    struct compute_t emb, attn, gate, shared, exp, head;
    double d, c, cg, dg, reduce;
};

static void times_moe2(const struct config *c, struct layer_times *t)
{
    struct model m;
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, c), 0);
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, c, &err), 0);
    double T = (double)c->schedule.micro_batch_tokens, h = c->model.hidden;
    double bw = c->cluster.nvlink_Bps, lat = 2 * c->cluster.nvlink_lat_s;
    t->emb = compute_op(cm, &m, MODEL_EMBED, T);
    t->attn = compute_op(cm, &m, MODEL_ATTN, T);
    t->gate = compute_op(cm, &m, MODEL_GATE, T);
    t->shared = compute_op(cm, &m, MODEL_SHARED, T);
    t->exp = compute_op(cm, &m, MODEL_EXPERT, 2 * T);
    t->head = compute_op(cm, &m, MODEL_HEAD, T);
    t->d = lat + T * h * c->model.dispatch_bytes_per_elem / bw;
    t->c = lat + T * h * c->model.combine_bytes_per_elem / bw;
    /* the combine's gradient goes the dispatch's way, the dispatch's the combine's; each at
     * its own bytes per element (the combine's unless set: config.h) */
    t->cg = lat + T * h * c->model.combine_grad_bytes_per_elem / bw;
    t->dg = lat + T * h * c->model.dispatch_grad_bytes_per_elem / bw;
    /* Dense weights reduced over the 2 GPUs (ring of 2: 2 steps of half the bytes); the
     * routed experts are not replicated (dp / ep = 1). */
    double dense = m.op[MODEL_EMBED].params + m.op[MODEL_ATTN].params +
                   m.op[MODEL_GATE].params + m.op[MODEL_SHARED].params + m.op[MODEL_HEAD].params;
    double bytes = llround(dense * c->schedule.grad_bytes_per_param / 2);
    t->reduce = 2 * (lat + bytes / bw);
    compute_free(cm);
}

static void check_rel(double got, double want)
{
    CU_ASSERT_DOUBLE_EQUAL(got, want, REL * fmax(1e-12, fabs(want)));
    if (fabs(got - want) > REL * fmax(1e-12, fabs(want)))
        fprintf(stderr, "  got %.12g want %.12g\n", got, want);
}

/* Overlap on, no SM share lost (comm_sms 0). Forward: embed, attn, gate, then the
 * dispatch beside the shared expert, experts (queued after the shared expert on the
 * in-order compute stream), combine, head:
 *   F = e + a + g + max(D, S) + X + C + h
 * Backward: head, the combine-gradient a2a beside the shared expert's backward,
 * experts B, then the dispatch-gradient a2a beside the experts' W, gate, attn, embed W:
 *   B = h_bw + max(CG, S_bw) + X_b + max(X_w, DG) + g_bw + a_bw + e_w
 * then the DP reduce R on the communication stream. Exposed communication: what of
 * each a2a no compute covers, all of C and R. */
static void test_overlap_closed_form(void)
{
    for (int on = 0; on < 2; on++) {
        struct config c;
        const char *sets[1] = { on ? "schedule.overlap=on" : "schedule.overlap=off" };
        CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 1), 0);
        struct layer_times t;
        times_moe2(&c, &t);
        double S = t.shared.f_s, Sb = t.shared.b_s + t.shared.w_s;
        double F, B, exposed;
        if (on) {
            F = t.emb.f_s + t.attn.f_s + t.gate.f_s + fmax(t.d, S) + t.exp.f_s + t.c + t.head.f_s;
            B = t.head.b_s + t.head.w_s + fmax(t.cg, Sb) + t.exp.b_s + fmax(t.exp.w_s, t.dg) +
                t.gate.b_s + t.gate.w_s + t.attn.b_s + t.attn.w_s + t.emb.w_s;
            exposed = fmax(0, t.d - S) + t.c + fmax(0, t.cg - Sb) + fmax(0, t.dg - t.exp.w_s) +
                      t.reduce;
        } else {
            F = t.emb.f_s + t.attn.f_s + t.gate.f_s + t.d + S + t.exp.f_s + t.c + t.head.f_s;
            B = t.head.b_s + t.head.w_s + t.cg + Sb + t.exp.b_s + t.exp.w_s + t.dg +
                t.gate.b_s + t.gate.w_s + t.attn.b_s + t.attn.w_s + t.emb.w_s;
            exposed = t.d + t.c + t.cg + t.dg + t.reduce;
        }
        struct step_result r;
        struct cfg_err err;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
        check_rel(r.step_s, F + B + t.reduce);
        check_rel(r.exposed_comm_s, exposed);
        check_rel(r.comm_s, t.d + t.c + t.cg + t.dg + t.reduce);
        CU_ASSERT_DOUBLE_EQUAL(r.bubble_s, 0, 1e-15);
        /* both GPUs got 2T pairs: nobody waits for a straggler */
        CU_ASSERT_DOUBLE_EQUAL(r.gpu[0].straggler_s, 0, 1e-15);
        step_free(&r);
    }
}

/* The backward's all-to-alls at their own precision: the combine's gradient in FP32 (4
 * bytes), the dispatch's in FP8 with one 4-byte scale per 128 elements (1 + 4/128), the
 * forward as before (FP8 1 byte, BF16 2). Overlap off: every all-to-all is exposed,
 *   comm = D + C + CG + DG + R, CG = 2 L + T h 4 / B, DG = 2 L + T h 1.03125 / B. */
static void test_grad_precision(void)
{
    struct config c;
    const char *sets[3] = { "schedule.overlap=off", "model.combine_grad_dtype=fp32",
                            "model.dispatch_grad_dtype=fp8" };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 3), 0);
    struct layer_times t;
    times_moe2(&c, &t);
    double T = 256, h = 512, B = 50e9, L = 3e-6;
    check_rel(t.cg, 2 * L + T * h * 4 / B);
    check_rel(t.dg, 2 * L + T * h * (1 + 4.0 / 128) / B);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
    check_rel(r.comm_s, t.d + t.c + t.cg + t.dg + t.reduce);
    check_rel(r.exposed_comm_s, t.d + t.c + t.cg + t.dg + t.reduce);
    step_free(&r);
}

/* Communication kernels take comm_sms = 40 of 100 SMs: the shared expert that runs
 * beside the dispatch does D * 0.6 of its work during it (here D < S) and the rest at
 * full speed: max(D, S) becomes D + (S - 0.6 D). */
static void test_sm_share(void)
{
    struct config c;
    const char *sets[2] = { "schedule.comm_sms=40", "model.shared_experts=4" };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 2), 0);
    struct layer_times t;
    times_moe2(&c, &t);
    double S = t.shared.f_s, Sb = t.shared.b_s + t.shared.w_s;
    CU_ASSERT_FATAL(t.d < S && t.cg < Sb);
    CU_ASSERT_FATAL(t.dg < t.exp.w_s * 0.6);
    double F = t.emb.f_s + t.attn.f_s + t.gate.f_s + (t.d + S - 0.6 * t.d) + t.exp.f_s + t.c +
               t.head.f_s;
    double B = t.head.b_s + t.head.w_s + (t.cg + Sb - 0.6 * t.cg) + t.exp.b_s +
               (t.dg + t.exp.w_s - 0.6 * t.dg) + t.gate.b_s + t.gate.w_s + t.attn.b_s +
               t.attn.w_s + t.emb.w_s;
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
    check_rel(r.step_s, F + B + t.reduce);
    check_rel(r.exposed_comm_s, t.c + t.reduce);
    step_free(&r);
}

/* zb1p, one stage, one micro-batch: F0, B0 (input gradient), W0. The W runs as chunks,
 * each after the sub-op of B0 that makes its output gradient: the head's (Hw, after the
 * head), the shared expert's (Sw, after its backward), the routed experts' (Xw, after
 * theirs), the rest (attention, gate, embedding). While the head of the compute queue
 * waits on an all-to-all, the oldest chunk whose inputs are done runs; it yields when
 * that head can start, and what is left of it waits for the next gap or its own place.
 * comm_sms 0 (no slowdown). With Sb the shared expert's input gradient:
 *   F  = e + a + g + max(D, S) + X + C + h (as 1F1B)
 *   B0 = h_b + max(CG, Sb) + X_b + DG + g_b + a_b, the gaps filled as follows:
 *     gap 1 = max(0, CG - Sb) takes fill1 = min(gap 1, Hw + Sw) (Xw is not ready yet),
 *     gap 2 = DG takes fill2 = min(DG, Hw + Sw - fill1 + Xw),
 *   then the W work left in its own place: Hw + Sw + Xw - fill1 - fill2 + a_w + g_w + e_w,
 *   then the DP reduce R.
 * Exposed: max(0, D - S) + C + (gap 1 - fill1) + (DG - fill2) + R; never more than
 * 1F1B's (test_overlap_closed_form), whose full B hides CG under Sb + Sw and DG under
 * Xw. Three NVLink rates: 50 GB/s (no gap 1; the experts' chunk yields at the end of
 * DG), 15 (gap 1 ends inside the shared chunk), 5 (the chunks run out in both gaps). */
static void test_zb1p_fill_closed_form(void)
{
    static const char *const rates[] = { "cluster.nvlink_GBps=50", "cluster.nvlink_GBps=15",
                                         "cluster.nvlink_GBps=5" };
    for (int k = 0; k < 3; k++) {
        const char *sets[2] = { "schedule.kind=zb1p", rates[k] };
        struct config c;
        CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 2), 0);
        struct layer_times t;
        times_moe2(&c, &t);
        double S = t.shared.f_s, Sb = t.shared.b_s, Sw = t.shared.w_s, Hw = t.head.w_s;
        double Xw = t.exp.w_s;
        double F = t.emb.f_s + t.attn.f_s + t.gate.f_s + fmax(t.d, S) + t.exp.f_s + t.c +
                   t.head.f_s;
        double gap1 = fmax(0, t.cg - Sb), fill1 = fmin(gap1, Hw + Sw);
        double fill2 = fmin(t.dg, Hw + Sw - fill1 + Xw);
        double B = t.head.b_s + fmax(t.cg, Sb) + t.exp.b_s + t.dg + t.gate.b_s + t.attn.b_s;
        double W = Hw + Sw + Xw - fill1 - fill2 + t.attn.w_s + t.gate.w_s + t.emb.w_s;
        double exposed = fmax(0, t.d - S) + t.c + (gap1 - fill1) + (t.dg - fill2) + t.reduce;
        double exposed_1f1b = fmax(0, t.d - S) + t.c + fmax(0, t.cg - Sb - Sw) +
                              fmax(0, t.dg - Xw) + t.reduce;
        /* the three regimes the rates are for */
        CU_ASSERT(k == 0 ? gap1 == 0 && fill2 < Hw + Sw - fill1 + Xw
                  : k == 1 ? gap1 > Hw && gap1 < Hw + Sw
                           : gap1 > Hw + Sw && t.dg > Xw);
        struct step_result r;
        struct cfg_err err;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_SLICES, &err), 0);
        check_rel(r.step_s, F + B + W + t.reduce);
        check_rel(r.exposed_comm_s, exposed);
        CU_ASSERT(r.exposed_comm_s <= exposed_1f1b * (1 + REL));
        /* the W slices, pieces of yielded chunks included, add up to the W's work */
        double wsum = 0;
        for (int64_t i = 0; i < r.nslices; i++)
            if (r.slices[i].what == STEP_WGRAD)
                wsum += r.slices[i].t1_s - r.slices[i].t0_s;
        check_rel(wsum, Hw + Sw + Xw + t.attn.w_s + t.gate.w_s + t.emb.w_s);
        step_free(&r);
    }
}

/* EP across nodes: 4 nodes of 4 GPUs, 2 (or 4) pipeline stages, EP groups of 8 over two
 * nodes, skewed routing, a 50 GB/s NIC and 20 of 132 SMs for communication. zb1p hides
 * at least as much communication as 1F1B on the same step (W chunks fill the gaps the
 * all-to-alls leave; 1F1B only runs the experts' weight gradient beside the dispatch
 * gradient), and the step is no longer. The per-GPU accounts add up to the step and
 * each lane's compute slices (yielded pieces included) neither overlap nor miss time. */
static const char ep2nodes[] =
    "[cluster]\nnodes = 4\ngpus_per_node = 4\nnvlink_GBps = 450\nnic_GBps = 50\n"
    "gpu_tflops_bf16 = 989\nhbm_GBps = 3350\nsms = 132\n"
    "[model]\nhidden = 1024\nexperts = 16\ntop_k = 4\nshared_experts = 1\n"
    "expert_ffn_hidden = 512\nffn_hidden = 4096\nlayers = 8\nfirst_dense_layers = 1\n"
    "seq_len = 1024\nvocab = 8192\nheads = 8\n"
    "[parallel]\nep = 8\n"
    "[routing]\ndistribution = zipf\nzipf_s = 1.0\n"
    "[schedule]\nmicrobatches = 8\nmicro_batch_tokens = 2048\noverlap = on\ncomm_sms = 20\n";

static int slice_cmp(const void *a, const void *b)
{
    const struct step_slice *x = a, *y = b;
    if (x->lane != y->lane)
        return x->lane - y->lane;
    return (x->t0_s > y->t0_s) - (x->t0_s < y->t0_s);
}

static void check_lanes(struct step_result *r)
{
    qsort(r->slices, (size_t)r->nslices, sizeof(*r->slices), slice_cmp);
    double *busy = calloc((size_t)r->lanes, sizeof(double));
    CU_ASSERT_FATAL(busy != NULL);
    const struct step_slice *prev = NULL;
    for (int64_t i = 0; i < r->nslices; i++) {
        const struct step_slice *x = &r->slices[i];
        if (x->stream != STEP_COMPUTE)
            continue;
        busy[x->lane] += x->t1_s - x->t0_s;
        if (prev && prev->lane == x->lane)
            CU_ASSERT(x->t0_s >= prev->t1_s - 1e-12);
        prev = x;
    }
    for (int l = 0; l < r->lanes; l++) {
        const struct step_gpu *g = &r->gpu[(l / (r->dp / r->ep)) * r->dp + (l % (r->dp / r->ep)) *
                                           r->ep];
        check_rel(busy[l], g->compute_s + g->straggler_s);
    }
    for (int g = 0; g < r->gpus; g++) {
        const struct step_gpu *x = &r->gpu[g];
        CU_ASSERT_DOUBLE_EQUAL(x->compute_s + x->straggler_s + x->exposed_comm_s + x->bubble_s,
                               r->step_s, 1e-9 * r->step_s);
    }
    free(busy);
}

static void test_zb1p_hides_multinode(void)
{
    for (int pp = 2; pp <= 4; pp += 2) {
        char pps[32];
        snprintf(pps, sizeof(pps), "parallel.pp=%d", pp);
        struct step_result r[2];
        for (int k = 0; k < 2; k++) {
            char nodes[32];
            snprintf(nodes, sizeof(nodes), "cluster.nodes=%d", 2 * pp);
            const char *sets[3] = { k ? "schedule.kind=zb1p" : "schedule.kind=1f1b", pps, nodes };
            struct config c;
            struct cfg_err err;
            CU_ASSERT_EQUAL_FATAL(load(&c, ep2nodes, sets, 3), 0);
            CU_ASSERT_FATAL(c.parallel.dp > c.cluster.gpus_per_node);   /* EP over nodes */
            CU_ASSERT_EQUAL_FATAL(step_run(&r[k], &c, 1, STEP_KEEP_SLICES, &err), 0);
            check_lanes(&r[k]);
        }
        CU_ASSERT(r[1].exposed_comm_s <= r[0].exposed_comm_s);
        CU_ASSERT(r[1].step_s <= r[0].step_s);
        if (r[1].exposed_comm_s > r[0].exposed_comm_s || r[1].step_s > r[0].step_s)
            fprintf(stderr, "  pp %d: zb1p exposed %.6g step %.6g, 1f1b %.6g %.6g\n", pp,
                    r[1].exposed_comm_s, r[1].step_s, r[0].exposed_comm_s, r[0].step_s);
        step_free(&r[0]);
        step_free(&r[1]);
    }
}

/* One stage, M micro-batches, overlap off: every schedule runs the same ops back to
 * back, step = M (F + B) + R. */
static void test_one_stage_sum(void)
{
    static const char *const kinds[] = { "gpipe", "1f1b", "zb1p", "interleaved-1f1b" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, NULL, 0), 0);
    struct layer_times t;
    times_moe2(&c, &t);
    double S = t.shared.f_s, Sb = t.shared.b_s + t.shared.w_s;
    double F = t.emb.f_s + t.attn.f_s + t.gate.f_s + t.d + S + t.exp.f_s + t.c + t.head.f_s;
    double B = t.head.b_s + t.head.w_s + t.cg + Sb + t.exp.b_s + t.exp.w_s + t.dg + t.gate.b_s +
               t.gate.w_s + t.attn.b_s + t.attn.w_s + t.emb.w_s;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char kind[64];
        snprintf(kind, sizeof(kind), "schedule.kind=%s", kinds[k]);
        const char *sets[3] = { kind, "schedule.microbatches=5", "schedule.overlap=off" };
        CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 3), 0);
        struct step_result r;
        struct cfg_err err;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
        check_rel(r.step_s, 5 * (F + B) + t.reduce);
        /* five micro-batches reuse the layer's four collectives */
        CU_ASSERT(r.a2a_reused > 0);
        step_free(&r);
    }
}

/* A dense model on 4 stages of 2 GPUs with (nearly) free communication. A fixed-order
 * list schedule's makespan only grows with op times, so the step lies between the
 * schedule's ideal runs (sched_ideal_run) with every op at the smallest and at the
 * largest per-piece time. The first and last pieces carry the embedding and head. */
static const char dense8[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 8\nnvlink_GBps = 1e9\nnvlink_latency_us = 0\n"
    "nic_latency_us = 0\nswitch_latency_us = 0\n"
    "gpu_tflops_bf16 = 100\nhbm_GBps = 1000\nsms = 100\n"
    "[model]\nhidden = 1024\nexperts = 2\ntop_k = 1\nexpert_ffn_hidden = 1024\n"
    "ffn_hidden = 4096\nlayers = 16\nfirst_dense_layers = 16\nseq_len = 1024\nvocab = 512\n"
    "heads = 8\n"
    "[parallel]\npp = 4\nep = 2\n"
    "[schedule]\nmicrobatches = 8\nmicro_batch_tokens = 1024\noverlap = on\ncomm_sms = 0\n";

static void piece_range(const struct config *c, int pieces, double out[6])
{
    struct model m;
    struct compute *cm;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, c), 0);
    CU_ASSERT_EQUAL_FATAL(compute_create(&cm, c, &err), 0);
    double T = (double)c->schedule.micro_batch_tokens;
    struct compute_t a = compute_op(cm, &m, MODEL_ATTN, T), f = compute_op(cm, &m, MODEL_FFN, T);
    struct compute_t e = compute_op(cm, &m, MODEL_EMBED, T), h = compute_op(cm, &m, MODEL_HEAD, T);
    for (int i = 0; i < 3; i++)
        out[2 * i] = INFINITY, out[2 * i + 1] = 0;
    int L = c->model.layers;
    for (int p = 0; p < pieces; p++) {
        int n = (int)((int64_t)(p + 1) * L / pieces - (int64_t)p * L / pieces);
        double v[3] = { n * (a.f_s + f.f_s), n * (a.b_s + f.b_s), n * (a.w_s + f.w_s) };
        if (p == 0)
            v[0] += e.f_s, v[1] += e.b_s, v[2] += e.w_s;
        if (p == pieces - 1)
            v[0] += h.f_s, v[1] += h.b_s, v[2] += h.w_s;
        for (int i = 0; i < 3; i++) {
            out[2 * i] = fmin(out[2 * i], v[i]);
            out[2 * i + 1] = fmax(out[2 * i + 1], v[i]);
        }
    }
    compute_free(cm);
}

static void test_pipeline_bounds(void)
{
    static const char *const kinds[] = { "gpipe", "1f1b", "interleaved-1f1b", "zb1p",
                                         "dualpipe", "dualpipev" };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char kind[64];
        snprintf(kind, sizeof(kind), "schedule.kind=%s", kinds[k]);
        const char *sets[2] = { kind, k == 2 ? "parallel.vpp=2" : "parallel.vpp=1" };
        struct config c;
        CU_ASSERT_EQUAL_FATAL(load(&c, dense8, sets, 2), 0);
        struct sched *s;
        CU_ASSERT_EQUAL_FATAL(sched_create(&s, c.schedule.kind, 4, 8, c.parallel.vpp), 0);
        double v[6];
        piece_range(&c, s->pieces, v);
        struct sched_ideal lo, hi;
        CU_ASSERT_EQUAL_FATAL(sched_ideal_run(s, v[0], v[2], v[4], v[0] + v[2] + v[4], &lo), 0);
        CU_ASSERT_EQUAL_FATAL(sched_ideal_run(s, v[1], v[3], v[5], v[1] + v[3] + v[5], &hi), 0);
        struct step_result r;
        struct cfg_err err;
        CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_SLICES, &err), 0);
        CU_ASSERT(r.step_s >= lo.makespan_s * (1 - 1e-9));
        CU_ASSERT(r.step_s <= hi.makespan_s * (1 + 1e-6));
        if (r.step_s < lo.makespan_s * (1 - 1e-9) || r.step_s > hi.makespan_s * (1 + 1e-6))
            fprintf(stderr, "  %s: %.9g not in [%.9g, %.9g]\n", kinds[k], r.step_s,
                    lo.makespan_s, hi.makespan_s);
        /* every GPU's time adds up to the step */
        for (int g = 0; g < r.gpus; g++) {
            const struct step_gpu *x = &r.gpu[g];
            CU_ASSERT_DOUBLE_EQUAL(x->compute_s + x->straggler_s + x->exposed_comm_s +
                                   x->bubble_s, r.step_s, 1e-9 * r.step_s);
        }
        /* no lane runs two compute (or two comm) sub-ops at once */
        for (int64_t i = 1; i < r.nslices; i++)
            for (int64_t j = i - 1; j >= 0 && j >= i - 64; j--) {
                const struct step_slice *a = &r.slices[i], *b = &r.slices[j];
                if (a->lane != b->lane || a->stream != b->stream || a->stream == STEP_P2P)
                    continue;
                CU_ASSERT(a->t0_s >= b->t1_s - 1e-12 || b->t0_s >= a->t1_s - 1e-12);
            }
        sched_ideal_free(&lo);
        sched_ideal_free(&hi);
        sched_free(s);
        step_free(&r);
    }
}

/* 1F1B holds at most pp micro-batches' activations on stage 0 (min(pp, M)) and one on
 * the last stage: peak = count x (tokens x activation bytes per token of the piece). */
static void test_activation_memory(void)
{
    const char *sets[1] = { "schedule.kind=1f1b" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, dense8, sets, 1), 0);
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    double T = (double)c.schedule.micro_batch_tokens;
    double layer = m.op[MODEL_ATTN].act_bytes_per_token + m.op[MODEL_FFN].act_bytes_per_token;
    double first = T * (m.op[MODEL_EMBED].act_bytes_per_token + 4 * layer);
    double last = T * (m.op[MODEL_HEAD].act_bytes_per_token + 4 * layer);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
    check_rel(r.stage[0].peak_act_bytes, 4 * first);
    check_rel(r.stage[3].peak_act_bytes, 1 * last);
    step_free(&r);
}

/* Zipf routing over 8 experts on 4 GPUs: loads differ, so some GPUs wait; in each EP
 * group the slowest GPU waits for nobody. Same seed: identical result. */
static void test_stragglers_and_determinism(void)
{
    const char *sets[8] = { "cluster.gpus_per_node=8", "model.experts=8", "model.top_k=2",
                            "parallel.ep=4", "routing.distribution=zipf", "routing.zipf_s=1.2",
                            "schedule.microbatches=3", "schedule.kind=1f1b" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 8), 0);
    struct step_result r1, r2;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r1, &c, 7, false, &err), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&r2, &c, 7, false, &err), 0);
    CU_ASSERT_EQUAL(r1.gpus, 8);
    for (int grp = 0; grp < 2; grp++) {
        double mn = INFINITY, mx = 0;
        for (int j = 0; j < 4; j++) {
            mn = fmin(mn, r1.gpu[grp * 4 + j].straggler_s);
            mx = fmax(mx, r1.gpu[grp * 4 + j].straggler_s);
        }
        CU_ASSERT_DOUBLE_EQUAL(mn, 0, 1e-15);
        CU_ASSERT(mx > 0);
    }
    CU_ASSERT_EQUAL(r1.step_s, r2.step_s);
    CU_ASSERT_EQUAL(memcmp(r1.gpu, r2.gpu, (size_t)r1.gpus * sizeof(*r1.gpu)), 0);
    step_free(&r1);
    step_free(&r2);
}

/* A routing trace that records what the two-GPU layer routes anyway (every token to
 * both experts: T per source GPU and expert) replays to the identical step. */
static void test_trace_replay(void)
{
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, NULL, 0), 0);
    struct step_result a, b;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&a, &c, 1, false, &err), 0);
    struct rtrace t;
    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 1, 1, 2, 2), 0);
    for (int g = 0; g < 2; g++)
        for (int e = 0; e < 2; e++)
            rtrace_at(&t, 0, 0, g)[e] = (uint64_t)c.schedule.micro_batch_tokens;
    char path[] = "/tmp/test_step_trace_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_EQUAL(rtrace_write(f, &t), 0);
    fclose(f);
    rtrace_free(&t);
    char set[128];
    snprintf(set, sizeof(set), "routing.trace=%s", path);
    const char *sets[2] = { "routing.distribution=trace", set };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 2), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&b, &c, 1, false, &err), 0);
    CU_ASSERT_DOUBLE_EQUAL(b.step_s, a.step_s, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(b.exposed_comm_s, a.exposed_comm_s, 1e-15);
    step_free(&b);
    /* a trace for another GPU count is refused with its name */
    const char *bad[3] = { "routing.distribution=trace", set, "cluster.gpus_per_node=4" };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, bad, 3), 0);
    CU_ASSERT_EQUAL(step_run(&b, &c, 1, false, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "routing.trace"));
    remove(path);
    step_free(&a);
    step_free(&b);
}

/* The routing a step records (STEP_KEEP_ROUTING): moe2 with 3 layers, the first dense,
 * so 2 MoE layers; every token goes to both experts, so each of the 2 GPUs demands
 * T = 256 of each expert in each MoE layer, and the dense layer has no number. */
static void test_routing_record(void)
{
    static const char *const sets[] = { "model.layers=3", "model.first_dense_layers=1" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 2), 0);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_ROUTING, &err), 0);
    const struct rtrace *t = &r.routing;
    CU_ASSERT_EQUAL(t->layers, 2);
    CU_ASSERT_EQUAL(t->iterations, 1);
    CU_ASSERT_EQUAL(t->gpus, 2);
    CU_ASSERT_EQUAL(t->experts, 2);
    for (int i = 0; i < 2 * 2 * 2; i++)
        CU_ASSERT_EQUAL(t->tokens[i], 256u);
    CU_ASSERT_PTR_NULL(r.slices);
    step_free(&r);
    /* without the flag nothing is kept */
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
    CU_ASSERT_PTR_NULL(r.routing.tokens);
    step_free(&r);
    /* an all-dense model has no routing to record: refused, naming the key */
    static const char *const dense[] = { "model.layers=3", "model.first_dense_layers=3" };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, dense, 2), 0);
    CU_ASSERT_EQUAL(step_run(&r, &c, 1, STEP_KEEP_ROUTING, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "model.first_dense_layers"));
}

/* A skewed routing recorded, written, replayed: the replay records the same counts and
 * (no dedup, no capacity: the traffic is the demand) runs the same step. Each record
 * sums, per MoE layer and GPU, to T * top_k = 256 * 2 assignments. A trace with fewer
 * layers than the model's MoE layers is refused. */
static void test_routing_record_replay(void)
{
    static const char *const sets[] = {
        "model.layers=3", "model.first_dense_layers=1", "model.experts=8",
        "routing.distribution=zipf", "routing.zipf_s=1.2", "routing.per_layer=on",
        "routing.dedup=false",
    };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 7), 0);
    struct step_result a, b;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&a, &c, 3, STEP_KEEP_ROUTING, &err), 0);
    for (int l = 0; l < 2; l++)
        for (int g = 0; g < 2; g++) {
            uint64_t sum = 0, *x = rtrace_at(&a.routing, l, 0, g);
            for (int e = 0; e < 8; e++)
                sum += x[e];
            CU_ASSERT_EQUAL(sum, 512u);
        }
    char path[] = "/tmp/test_step_record_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_EQUAL(rtrace_write(f, &a.routing), 0);
    fclose(f);
    char set[128];
    snprintf(set, sizeof(set), "routing.trace=%s", path);
    const char *replay[9] = { sets[0], sets[1], sets[2], sets[3], sets[4], sets[5], sets[6],
                              "routing.distribution=trace", set };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, replay, 9), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&b, &c, 3, STEP_KEEP_ROUTING, &err), 0);
    CU_ASSERT_EQUAL(b.routing.layers, a.routing.layers);
    CU_ASSERT(memcmp(b.routing.tokens, a.routing.tokens, 2 * 2 * 8 * sizeof(uint64_t)) == 0);
    CU_ASSERT_DOUBLE_EQUAL(b.step_s, a.step_s, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(b.layer[2].dispatch_s, a.layer[2].dispatch_s, 1e-15);
    step_free(&b);
    /* the same file for a model with 3 MoE layers: one too few */
    const char *more[9] = { sets[0], "model.first_dense_layers=0", sets[2], sets[3], sets[4],
                            sets[5], sets[6], "routing.distribution=trace", set };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, more, 9), 0);
    CU_ASSERT_EQUAL(step_run(&b, &c, 3, 0, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "2 layers, the model has 3 MoE layers"));
    remove(path);
    step_free(&a);
}

/* moe2 with 4 layers and moe_every 2: layers 1 and 3 are MoE, 0 and 2 dense (model.h).
 * Overlap off, so every kernel counts: comm = two MoE layers' four all-to-alls, each the
 * closed form of times_moe2, and the DP reduce of the dense weights, now the embedding,
 * 4 attentions, 2 dense FFNs, 2 gates and shared experts and the head (ring of 2 GPUs:
 * 2 steps of half the bytes). The layer table and the slices show all-to-alls on layers
 * 1 and 3 only, FFNs on 0 and 2 only; the routing record holds the 2 MoE layers. */
static void test_moe_every_step(void)
{
    static const char *const sets[] = { "model.layers=4", "model.moe_every=2",
                                        "schedule.overlap=off" };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 3), 0);
    struct layer_times t;
    times_moe2(&c, &t);
    struct model m;
    CU_ASSERT_EQUAL_FATAL(model_init(&m, &c), 0);
    double dense = m.op[MODEL_EMBED].params + 4 * m.op[MODEL_ATTN].params +
                   2 * m.op[MODEL_FFN].params +
                   2 * (m.op[MODEL_GATE].params + m.op[MODEL_SHARED].params) +
                   m.op[MODEL_HEAD].params;
    double bytes = llround(dense * c.schedule.grad_bytes_per_param / 2);
    double reduce = 2 * (2 * c.cluster.nvlink_lat_s + bytes / c.cluster.nvlink_Bps);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, STEP_KEEP_SLICES | STEP_KEEP_ROUTING, &err), 0);
    check_rel(r.comm_s, 2 * (t.d + t.c + t.cg + t.dg) + reduce);
    check_rel(r.exposed_comm_s, r.comm_s);
    CU_ASSERT_EQUAL_FATAL(r.layers, 4);
    for (int l = 0; l < 4; l++) {
        CU_ASSERT_EQUAL(r.layer[l].moe, l % 2);
        if (l % 2) {
            check_rel(r.layer[l].dispatch_s, t.d);
            check_rel(r.layer[l].combine_s, t.c);
        } else {
            CU_ASSERT_DOUBLE_EQUAL(r.layer[l].dispatch_s, 0, 0);
            CU_ASSERT_DOUBLE_EQUAL(r.layer[l].combine_s, 0, 0);
        }
    }
    int a2a[4] = { 0 }, ffn[4] = { 0 };
    for (int64_t i = 0; i < r.nslices; i++) {
        const struct step_slice *x = &r.slices[i];
        if (x->layer < 0 || x->layer >= 4)
            continue;
        a2a[x->layer] += x->what == STEP_DISPATCH || x->what == STEP_COMBINE;
        ffn[x->layer] += x->what == STEP_FFN;
    }
    /* as many all-to-all slices on layer 3 as on layer 1, FFN slices on 2 as on 0 */
    CU_ASSERT(a2a[0] == 0 && a2a[2] == 0 && a2a[1] > 0 && a2a[1] == a2a[3]);
    CU_ASSERT(ffn[1] == 0 && ffn[3] == 0 && ffn[0] > 0 && ffn[0] == ffn[2]);
    CU_ASSERT_EQUAL(r.routing.layers, 2);
    for (int i = 0; i < 2 * 2 * 2; i++)
        CU_ASSERT_EQUAL(r.routing.tokens[i], 256u);
    step_free(&r);
}

/* With moe_every 2 a trace's MoE layer i is model layer 2i + 1: a skewed, per-layer
 * routing recorded, written and replayed gives the same counts and the same step. */
static void test_moe_every_replay(void)
{
    static const char *const sets[] = {
        "model.layers=4", "model.moe_every=2", "model.experts=8",
        "routing.distribution=zipf", "routing.zipf_s=1.2", "routing.per_layer=on",
        "routing.dedup=false",
    };
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, sets, 7), 0);
    struct step_result a, b;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&a, &c, 5, STEP_KEEP_ROUTING, &err), 0);
    CU_ASSERT_EQUAL_FATAL(a.routing.layers, 2);
    char path[] = "/tmp/test_step_every_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_EQUAL(rtrace_write(f, &a.routing), 0);
    fclose(f);
    char set[128];
    snprintf(set, sizeof(set), "routing.trace=%s", path);
    const char *replay[9] = { sets[0], sets[1], sets[2], sets[3], sets[4], sets[5], sets[6],
                              "routing.distribution=trace", set };
    CU_ASSERT_EQUAL_FATAL(load(&c, moe2, replay, 9), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(&b, &c, 5, STEP_KEEP_ROUTING, &err), 0);
    CU_ASSERT(memcmp(b.routing.tokens, a.routing.tokens, 2 * 2 * 8 * sizeof(uint64_t)) == 0);
    CU_ASSERT_DOUBLE_EQUAL(b.step_s, a.step_s, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(b.layer[3].dispatch_s, a.layer[3].dispatch_s, 1e-15);
    remove(path);
    step_free(&b);
    step_free(&a);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "overlap on/off: closed-form step and exposed comm", test_overlap_closed_form },
        { "backward all-to-alls at their own precision", test_grad_precision },
        { "comm SMs slow the compute beside them", test_sm_share },
        { "zb1p: W chunks fill the all-to-all gaps (closed form)", test_zb1p_fill_closed_form },
        { "zb1p hides at least 1F1B's communication, EP over nodes",
          test_zb1p_hides_multinode },
        { "one stage: M (F + B) + R for every schedule", test_one_stage_sum },
        { "pipelines between ideal runs; times add up; streams serial", test_pipeline_bounds },
        { "1f1b activation memory: pp and 1 micro-batches", test_activation_memory },
        { "stragglers under zipf; deterministic", test_stragglers_and_determinism },
        { "trace replay: the same routing, the same step", test_trace_replay },
        { "routing record: MoE layers only, T per expert", test_routing_record },
        { "routing record written and replayed: same counts, same step",
          test_routing_record_replay },
        { "moe_every 2: all-to-alls on MoE layers only", test_moe_every_step },
        { "moe_every 2: a trace's MoE layers replayed", test_moe_every_replay },
    };
    return cu_run("step", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
