/* test_fabric.c: stages' collectives on one network (sim/fabric.c) against closed forms.
 *
 * The cluster: 6 nodes of 1 GPU, NICs of B = 1 GB/s, leaves of 2 nodes (leaf l holds
 * nodes 2l and 2l + 1), switch latency 0, so every path has the latency L = 2 NIC hops.
 * Two stages of 3 GPUs: stage 0 = GPUs 0 1 2 (leaves 0 0 1), stage 1 = GPUs 3 4 5 (leaves
 * 1 2 2): leaf 1 holds one GPU of each. A leaf's links carry 2 B / oversubscription.
 * The collective: every GPU of a stage sends b bytes to each other one (6 flows).
 *
 * Alone, each flow gets B/2 (every NIC carries two flows; with oversubscription 2 the
 * lone GPU's leaf links carry its two flows at B), so it takes L + 2b/B. When both
 * stages run it at once, leaf 1's uplink carries 2 -> 0, 2 -> 1, 3 -> 4, 3 -> 5 and its
 * downlink the reverse four: B/4 each on a leaf of capacity B; the flows inside a leaf
 * (0 <-> 1, 4 <-> 5) take the 3B/4 their NICs leave and end first, so both take
 * L + 4b/B: the spine-bound part doubles.
 *
 * The last tests run whole steps (step.h) on that cluster, where the step hands its
 * collectives to the fabric. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "config.h"
#include "cu_run.h"
#include "des.h"
#include "fabric.h"
#include "ini_text.h"
#include "sched.h"
#include "step.h"
#include "topo.h"

#define B_BPS 1e9
#define LAT 1e-6              /* NIC latency: a path's latency is 2 LAT */
#define BYTES 1e6             /* b: b / B = 1 ms */
#define REL 1e-9

static struct topo *make_topo(double oversub, int nodes_per_leaf)
{
    struct cfg_cluster c = { .nodes = 6, .gpus_per_node = 1, .nvlink_Bps = 100e9,
                             .nic_Bps = B_BPS, .nvlink_lat_s = 0.5e-6, .nic_lat_s = LAT,
                             .switch_lat_s = 0, .oversubscription = oversub,
                             .nodes_per_leaf = nodes_per_leaf, .route = ROUTE_RAIL,
                             .nvlink_eff = 1, .nic_eff = 1 };
    struct topo *t = NULL;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    return t;
}

/* The uniform all-to-all of one stage (3 GPUs), b bytes per ordered pair. */
static int add_a2a(struct fabric *f)
{
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 3, (uint64_t)BYTES), 0);
    struct fabric_part p = { &m, 1, 0.0 };
    int id = fabric_coll(f, &p, 1);
    traffic_free(&m);
    CU_ASSERT_FATAL(id >= 0);
    return id;
}

struct start {
    struct fabric *f;
    int coll, stage;
    double alone_s;
    double end_s;
};

static void on_end(struct des *d, void *arg)
{
    struct start *s = arg;
    s->end_s = des_now(d);
}

static void on_start(struct des *d, void *arg)
{
    struct start *s = arg;
    CU_ASSERT_EQUAL(fabric_start(s->f, d, s->coll, s->stage, 0, s->alone_s, on_end, s), 0);
}

/* Runs the starts (at t[i]) to the end; their end times in s[i].end_s. */
static void run(struct fabric *f, struct start *s, const double *t, int n)
{
    struct des *d;
    CU_ASSERT_EQUAL_FATAL(des_create(&d), 0);
    for (int i = 0; i < n; i++) {
        s[i].f = f;
        s[i].end_s = NAN;
        CU_ASSERT_EQUAL_FATAL(des_at(d, t[i], on_start, &s[i], NULL), 0);
    }
    CU_ASSERT(des_run(d, INFINITY) >= 0);
    CU_ASSERT_EQUAL(fabric_error(f), 0);
    des_free(d);
}

static void check_rel(double got, double want)
{
    CU_ASSERT_DOUBLE_EQUAL(got, want, REL * fabs(want));
    if (!(fabs(got - want) <= REL * fabs(want)))
        fprintf(stderr, "  got %.15g want %.15g\n", got, want);
}

static void test_couples(void)
{
    struct topo *a = make_topo(2, 2), *b = make_topo(1, 2), *c = make_topo(2, 0);
    CU_ASSERT(fabric_couples(a));
    CU_ASSERT(!fabric_couples(b));   /* a full spine: leaf links as fast as their NICs */
    CU_ASSERT(!fabric_couples(c));   /* one switch */
    topo_free(a);
    topo_free(b);
    topo_free(c);
}

/* Both stages at t = 0: L + 4b/B each, against L + 2b/B for one alone. */
static void test_same_time(void)
{
    struct topo *t = make_topo(2, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    int id = add_a2a(f);
    struct start s[2] = { { .coll = id, .stage = 0 }, { .coll = id, .stage = 1 } };
    run(f, s, (double[]){ 0, 0 }, 2);
    check_rel(s[0].end_s, 2 * LAT + 4 * BYTES / B_BPS);
    check_rel(s[1].end_s, 2 * LAT + 4 * BYTES / B_BPS);
    struct fabric_counts k = fabric_get_counts(f);
    CU_ASSERT_EQUAL(k.shared, 2);
    CU_ASSERT_EQUAL(k.alone, 0);
    fabric_free(f);
    topo_free(t);
}

/* One after the other: neither meets the other, each takes its standalone L + 2b/B. */
static void test_apart(void)
{
    struct topo *t = make_topo(2, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    int id = add_a2a(f);
    double alone = 2 * LAT + 2 * BYTES / B_BPS, t1 = alone + 1e-6;
    struct start s[3] = { { .coll = id, .stage = 0 }, { .coll = id, .stage = 1 },
                          { .coll = id, .stage = 0 } };
    run(f, s, (double[]){ 0, t1, 2 * t1 }, 3);
    check_rel(s[0].end_s, alone);
    check_rel(s[1].end_s, t1 + alone);
    check_rel(s[2].end_s, 2 * t1 + alone);
    struct fabric_counts k = fabric_get_counts(f);
    CU_ASSERT_EQUAL(k.shared, 0);
    CU_ASSERT_EQUAL(k.alone, 3);
    /* stage 0 sits on leaves 0 0 1, stage 1 on 1 2 2: two layouts, one run each; the
     * second start of stage 0 is a lookup */
    CU_ASSERT_EQUAL(k.simulated, 2);
    fabric_free(f);
    topo_free(t);
}

/* Stage 1 starts at t1 = b/(2B) while stage 0 runs alone. Stage 0's flows have sent
 * t1 B/2 each when stage 1's begin (at t1 + L); from then on the leaf flows get B/4, so
 * stage 0's leaf flows end at t1 + L + (b - t1 B/2) / (B/4) = L + 4b/B - t1 (its flows
 * inside leaf 0, at 3B/4, end before). Stage 1's leaf flows have then sent b - t1 B/2 and
 * finish the rest alone at B/2: at L + 4b/B (its leaf-2 flows, at 3B/4, end at
 * t1 + L + 4b/(3B), before). Stage 0 is replayed to t1 and carried over. */
static void test_overlap(void)
{
    struct topo *t = make_topo(2, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    int id = add_a2a(f);
    double t1 = 0.5 * BYTES / B_BPS;
    struct start s[2] = { { .coll = id, .stage = 0 }, { .coll = id, .stage = 1 } };
    run(f, s, (double[]){ 0, t1 }, 2);
    check_rel(s[0].end_s, 2 * LAT + 4 * BYTES / B_BPS - t1);
    check_rel(s[1].end_s, 2 * LAT + 4 * BYTES / B_BPS);
    CU_ASSERT_EQUAL(fabric_get_counts(f).shared, 2);
    fabric_free(f);
    topo_free(t);
}

/* With a full spine nothing couples: every job ends after the duration it is given,
 * exactly, at the same time or not. */
static void test_full_spine(void)
{
    struct topo *t = make_topo(1, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    int id = add_a2a(f);
    struct start s[2] = { { .coll = id, .stage = 0, .alone_s = 0.123 },
                          { .coll = id, .stage = 1, .alone_s = 0.456 } };
    run(f, s, (double[]){ 0, 0 }, 2);
    CU_ASSERT_EQUAL(s[0].end_s, 0.123);
    CU_ASSERT_EQUAL(s[1].end_s, 0.456);
    struct fabric_counts k = fabric_get_counts(f);
    CU_ASSERT(k.shared == 0 && k.alone == 0 && k.simulated == 0);
    fabric_free(f);
    topo_free(t);
}

/* Parts and repeats: a ring 0 -> 1 -> 2 -> 0 on stage 0 of c bytes per step, 4 steps,
 * then 3 us of tail, then the a2a. Each ring step has one flow per link (leaf links
 * carry B): L + c/B; alone the job takes 4 (L + c/B) + 3 us + L + 2b/B. */
static void test_parts(void)
{
    struct topo *t = make_topo(2, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    struct traffic ring, a2a;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&ring, 3), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&a2a, 3, (uint64_t)BYTES), 0);
    double c = 2.5e5;
    for (int i = 0; i < 3; i++)
        ring.bytes[i * 3 + (i + 1) % 3] = (uint64_t)c;
    struct fabric_part p[2] = { { &ring, 4, 3e-6 }, { &a2a, 1, 0 } };
    int id = fabric_coll(f, p, 2);
    CU_ASSERT_FATAL(id >= 0);
    CU_ASSERT_EQUAL(fabric_coll(f, p, 2), id);      /* the same collective again */
    traffic_free(&ring);
    traffic_free(&a2a);
    struct start s = { .coll = id, .stage = 0 };
    run(f, &s, (double[]){ 0 }, 1);
    check_rel(s.end_s, 4 * (2 * LAT + c / B_BPS) + 3e-6 + 2 * LAT + 2 * BYTES / B_BPS);
    fabric_free(f);
    topo_free(t);
}

static void test_bad(void)
{
    struct topo *t = make_topo(2, 2);
    struct fabric *f;
    CU_ASSERT_EQUAL(fabric_create(&f, t, NULL, 4, 1), -EINVAL);   /* 4 does not divide 6 */
    CU_ASSERT_EQUAL(fabric_create(&f, t, NULL, 3, 2), -EINVAL);   /* 2 does not divide 3 */
    CU_ASSERT_EQUAL_FATAL(fabric_create(&f, t, NULL, 3, 3), 0);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 2), 0);
    struct fabric_part p = { &m, 1, 0 };
    CU_ASSERT_EQUAL(fabric_coll(f, &p, 1), -EINVAL);        /* not a stage wide */
    traffic_free(&m);
    struct des *d;
    CU_ASSERT_EQUAL_FATAL(des_create(&d), 0);
    CU_ASSERT_EQUAL(fabric_start(f, d, 0, 0, 0, 1.0, on_end, NULL), -EINVAL);   /* no coll */
    des_free(d);
    fabric_free(f);
    fabric_free(NULL);
    topo_free(t);
}

/* ---- the step on that cluster ---- */

/* Two stages of one EP group of 3 GPUs, one MoE layer per stage with 3 experts and top_k 3:
 * every token goes to every GPU of its stage, so each all-to-all sends b = T h 2 bytes
 * (BF16) between every ordered pair of the stage's GPUs, as above. */
static const char two_stages[] =
    "[cluster]\nnodes = 6\ngpus_per_node = 1\nnvlink_GBps = 100\nnic_GBps = 1\n"
    "nvlink_latency_us = 1\nnic_latency_us = 1\nswitch_latency_us = 0\nnodes_per_leaf = 2\n"
    "gpu_tflops_bf16 = 100\nhbm_GBps = 1000\nsms = 100\n"
    "[model]\nhidden = 512\nexperts = 3\ntop_k = 3\nshared_experts = 0\n"
    "expert_ffn_hidden = 1024\nffn_hidden = 2048\nlayers = 2\nfirst_dense_layers = 0\n"
    "seq_len = 256\nvocab = 1000\nheads = 4\n"
    "dispatch_bytes_per_elem = 2\ncombine_bytes_per_elem = 2\n"
    "[parallel]\npp = 2\nep = 3\n"
    "[schedule]\nmicro_batch_tokens = 256\ncomm_sms = 0\n";

static void run_step(struct step_result *r, const char *kind, const char *mb, const char *os,
                     const char *npl)
{
    const char *sets[4] = { kind, mb, os, npl };
    struct config c;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, two_stages, sets, 4), 0);
    CU_ASSERT_EQUAL_FATAL(step_run(r, &c, 1, STEP_KEEP_SLICES, &err), 0);
}

/* The first forward dispatch of each lane (lane r = stage r). */
static const struct step_slice *first_dispatch(const struct step_result *r, int lane)
{
    const struct step_slice *best = NULL;
    for (int64_t i = 0; i < r->nslices; i++) {
        const struct step_slice *x = &r->slices[i];
        if (x->lane == lane && x->what == STEP_DISPATCH && x->kind == SCHED_F &&
            (!best || x->t0_s < best->t0_s))
            best = x;
    }
    CU_ASSERT_FATAL(best != NULL);
    return best;
}

/* DualPipe on 2 ranks starts both directions at once: rank 0 and rank 1 both run the
 * forward of piece 0 (embedding, attention, gate) from t = 0, so their first dispatches
 * start together and meet on leaf 1. With a 2:1 spine each takes L + 4b/B, with a full
 * one L + 2b/B (nothing is shared: the fabric is not even used, the step is the one
 * without leaves at all), and the oversubscribed step is the longer. */
static void test_step_same_time(void)
{
    double b = 256.0 * 512 * 2;
    double alone = 2 * LAT + 2 * b / B_BPS, shared = 2 * LAT + 4 * b / B_BPS;
    struct step_result r2, r1, r0;
    run_step(&r2, "schedule.kind=dualpipe", "schedule.microbatches=4",
             "cluster.oversubscription=2", "cluster.nodes_per_leaf=2");
    run_step(&r1, "schedule.kind=dualpipe", "schedule.microbatches=4",
             "cluster.oversubscription=1", "cluster.nodes_per_leaf=2");
    run_step(&r0, "schedule.kind=dualpipe", "schedule.microbatches=4",
             "cluster.oversubscription=1", "cluster.nodes_per_leaf=0");
    const struct step_slice *a = first_dispatch(&r2, 0), *c = first_dispatch(&r2, 1);
    CU_ASSERT_DOUBLE_EQUAL(a->t0_s, c->t0_s, 1e-15);
    check_rel(a->t1_s - a->t0_s, shared);
    check_rel(c->t1_s - c->t0_s, shared);
    CU_ASSERT(r2.fabric_shared >= 2);
    for (int lane = 0; lane < 2; lane++) {
        const struct step_slice *x = first_dispatch(&r1, lane);
        check_rel(x->t1_s - x->t0_s, alone);
    }
    CU_ASSERT(r1.fabric_shared == 0 && r1.fabric_alone == 0);
    CU_ASSERT(r2.step_s > r1.step_s);
    CU_ASSERT_DOUBLE_EQUAL(r1.step_s, r0.step_s, 1e-12 * r0.step_s);
    step_free(&r2);
    step_free(&r1);
    step_free(&r0);
}

/* GPipe with one micro-batch: stage 0's forward runs while stage 1 waits for it, then
 * stage 1's forward and backward while stage 0 waits: these all-to-alls never meet one
 * of the other stage, so on the 2:1 spine they keep their standalone L + 2b/B (stage
 * 0's backward may meet stage 1's DP reduce, so it is left out). */
static void test_step_apart(void)
{
    double b = 256.0 * 512 * 2, alone = 2 * LAT + 2 * b / B_BPS;
    struct step_result r;
    run_step(&r, "schedule.kind=gpipe", "schedule.microbatches=1", "cluster.oversubscription=2",
             "cluster.nodes_per_leaf=2");
    int n = 0;
    for (int64_t i = 0; i < r.nslices; i++) {
        const struct step_slice *x = &r.slices[i];
        if ((x->what != STEP_DISPATCH && x->what != STEP_COMBINE) ||
            (x->lane == 0 && x->kind != SCHED_F))
            continue;
        check_rel(x->t1_s - x->t0_s, alone);
        n++;
    }
    CU_ASSERT_EQUAL(n, 6);     /* stage 0: F's two; stage 1: F's two and B's two */
    CU_ASSERT(r.fabric_alone >= 6);
    step_free(&r);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "which fabrics couple", test_couples },
        { "two stages at once over a shared leaf: time doubles", test_same_time },
        { "apart in time: standalone times, memoised", test_apart },
        { "partial overlap: replay and carry-over", test_overlap },
        { "full spine: the given durations, exactly", test_full_spine },
        { "parts, repeats and tails", test_parts },
        { "bad arguments", test_bad },
        { "step: both stages' first dispatch at once, 2:1 against full", test_step_same_time },
        { "step: all-to-alls apart in time keep their standalone time", test_step_apart },
    };
    return cu_run("fabric", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
