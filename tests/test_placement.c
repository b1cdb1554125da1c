/* test_placement.c: expert placement against hand-worked maps of the EPLB greedy
 * (eplb.py of github.com/deepseek-ai/EPLB, worked step by step below), structural
 * invariants over many shapes, and the "never above contiguous" rule. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "cu_run.h"
#include "placement.h"
#include "rng.h"

#define MAX_EP 64
#define MAX_E 512

static void expect_map(const struct placement *p, const int *want, int n)
{
    CU_ASSERT_EQUAL_FATAL(p->nslots, n);
    for (int s = 0; s < n; s++)
        CU_ASSERT_EQUAL(p->slot_expert[s], want[s]);
}

static void expect_gpu_load(const struct placement *p, const double *load, const double *want)
{
    double got[MAX_EP];
    placement_gpu_load(p, load, got);
    for (int g = 0; g < p->ep; g++)
        CU_ASSERT_DOUBLE_EQUAL(got[g], want[g], 1e-12);
}

static double max_gpu_load(const struct placement *p, const double *load)
{
    double got[MAX_EP], m = 0.0;
    placement_gpu_load(p, load, got);
    for (int g = 0; g < p->ep; g++)
        m = got[g] > m ? got[g] : m;
    return m;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(placement_kind_name(PLACEMENT_CONTIGUOUS), "contiguous");
    CU_ASSERT_STRING_EQUAL(placement_kind_name(PLACEMENT_ROUND_ROBIN), "round-robin");
    CU_ASSERT_STRING_EQUAL(placement_kind_name(PLACEMENT_EPLB), "eplb");
    CU_ASSERT_STRING_EQUAL(placement_kind_name(PLACEMENT_EPLB_GLOBAL), "eplb-global");
    CU_ASSERT_STRING_EQUAL(placement_kind_name((enum placement_kind)99), "?");
}

/* E = 8 on ep = 4: expert e in slot e, GPU e / 2. gpus_per_node 8 > ep is taken as 4.
 * One replica each: replica0 = 0..8, replica_slot = 0..7. */
static void test_contiguous(void)
{
    struct placement p;
    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_CONTIGUOUS, 8, 4, 8, 0, NULL) == 0);
    CU_ASSERT_EQUAL(p.experts, 8);
    CU_ASSERT_EQUAL(p.ep, 4);
    CU_ASSERT_EQUAL(p.gpus_per_node, 4);
    CU_ASSERT_EQUAL(p.slots_per_gpu, 2);
    int want[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    expect_map(&p, want, 8);
    for (int e = 0; e <= 8; e++)
        CU_ASSERT_EQUAL(p.replica0[e], e);
    for (int e = 0; e < 8; e++)
        CU_ASSERT_EQUAL(p.replica_slot[e], e);
    /* Loads 1..8: GPU g holds 2g+1 and 2g+2, i.e. 3, 7, 11, 15. */
    double load[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, gl[4] = { 3, 7, 11, 15 };
    expect_gpu_load(&p, load, gl);
    placement_free(&p);
    CU_ASSERT_PTR_NULL(p.slot_expert);
    placement_free(&p);                          /* zeroed: no-op */
    placement_free(NULL);
}

/* E = 8 on ep = 4: expert e on GPU e % 4, in that GPU's slot e / 4: GPU g holds
 * experts g and g + 4, so slot_expert = {0,4, 1,5, 2,6, 3,7} and expert e's slot is
 * 2 (e % 4) + e / 4: 0, 2, 4, 6, 1, 3, 5, 7. */
static void test_round_robin(void)
{
    struct placement p;
    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_ROUND_ROBIN, 8, 4, 2, 0, NULL) == 0);
    int want[8] = { 0, 4, 1, 5, 2, 6, 3, 7 }, slot[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
    expect_map(&p, want, 8);
    for (int e = 0; e < 8; e++) {
        CU_ASSERT_EQUAL(p.replica0[e], e);
        CU_ASSERT_EQUAL(p.replica_slot[e], slot[e]);
    }
    /* Loads 1..8: GPU g holds g+1 and g+5: 6, 8, 10, 12. */
    double load[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, gl[4] = { 6, 8, 10, 12 };
    expect_gpu_load(&p, load, gl);
    placement_free(&p);
}

/* E = 4, ep = 2, one node of 2 GPUs, R = 2, loads {10,1,1,1}; spg = 3.
 * Replicate: load per replica 10,1,1,1 -> e0 (10) gets a copy (5); then 5 > 1 -> e0
 * again: counts {3,1,1,1}. Physical experts 0..5 = e0,e1,e2,e3,e0,e0 with loads
 * 10/3,1,1,1,10/3,10/3.
 * Pack onto 2 GPUs of 3, heaviest first (ties by lowest index): phy0 -> G0 (10/3);
 * phy4 -> G1 (10/3); phy5 -> G0 (tie, lowest) 20/3; phy1 -> G1 13/3; phy2 -> G1 16/3
 * (G1 full); phy3 -> G0 23/3.
 * Slots by rank in pack: G0 = phy0, phy5, phy3 = e0,e0,e3; G1 = phy4, phy1, phy2 =
 * e0,e1,e2. GPU loads 23/3, 16/3. Contiguous has max 11 > 23/3: no fallback.
 * One node, so eplb and eplb-global give the same map. */
static void test_eplb_one_node(void)
{
    double load[4] = { 10, 1, 1, 1 }, gl[2] = { 23.0 / 3, 16.0 / 3 };
    int want[6] = { 0, 0, 3, 0, 1, 2 };
    int r0[5] = { 0, 3, 4, 5, 6 }, rs[6] = { 0, 1, 3, 4, 5, 2 };
    enum placement_kind kinds[2] = { PLACEMENT_EPLB, PLACEMENT_EPLB_GLOBAL };
    for (int k = 0; k < 2; k++) {
        struct placement p;
        CU_ASSERT_FATAL(placement_create(&p, kinds[k], 4, 2, 2, 2, load) == 0);
        CU_ASSERT_EQUAL(p.slots_per_gpu, 3);
        expect_map(&p, want, 6);
        for (int e = 0; e <= 4; e++)
            CU_ASSERT_EQUAL(p.replica0[e], r0[e]);
        for (int j = 0; j < 6; j++)
            CU_ASSERT_EQUAL(p.replica_slot[j], rs[j]);
        expect_gpu_load(&p, load, gl);
        placement_free(&p);
    }
}

/* E = 8, ep = 4, 2 GPUs per node (2 nodes), R = 4, loads {8,4,2,2, 1,1,1,1}; spg = 3.
 *
 * eplb: node 0 keeps e0..e3, node 1 e4..e7; each gets 2 extra slots.
 * Node 0 replicate: 8 max -> e0 (4 each); then e0 4 ties e1 4 -> lowest, e0 (8/3).
 *   Physical 0..5 = e0,e1,e2,e3,e0,e0 with 8/3,4,2,2,8/3,8/3. Pack on G0, G1:
 *   phy1 (4) -> G0; phy0 (8/3) -> G1; phy4 -> G1 (8/3 < 4) 16/3; phy5 -> G0 (4 < 16/3)
 *   20/3; phy2 (2) -> G1 22/3 (full); phy3 -> G0 26/3.
 *   G0 = phy1, phy5, phy3 = e1,e0,e3; G1 = phy0, phy4, phy2 = e0,e0,e2.
 * Node 1 replicate: all 1 -> e4 (1/2); then e5 (first of the 1s) -> 1/2.
 *   Physical 0..5 = e4,e5,e6,e7,e4,e5 with 1/2,1/2,1,1,1/2,1/2. Pack on G2, G3:
 *   phy2 -> G2; phy3 -> G3; phy0 -> G2 (tie); phy1 -> G3; phy4 -> G2; phy5 -> G3.
 *   G2 = e6,e4,e4; G3 = e7,e5,e5; loads 2, 2.
 * GPU loads 26/3, 22/3, 2, 2; contiguous max is 8+4 = 12: no fallback.
 *
 * eplb-global: replicate over all 8 with 4 extra: e0 (8 -> 4); e0 (4 ties e1 4 -> 8/3);
 *   e1 (4 -> 2); e0 (8/3 -> 2). Counts e0 4, e1 2, others 1: physical 0..11 =
 *   e0..e7, e0, e0, e1, e0 with loads 2,2,2,2,1,1,1,1,2,2,2,2. Pack on 4 GPUs of 3:
 *   the eight 2s in index order 0,1,2,3,8,9,10,11 go G0,G1,G2,G3,G0,G1,G2,G3; the 1s
 *   (phy4..7) likewise. G0 = e0,e0,e4; G1 = e1,e0,e5; G2 = e2,e1,e6; G3 = e3,e0,e7.
 *   Every GPU 5 = the mean (20 / 4). */
static void test_eplb_two_nodes(void)
{
    double load[8] = { 8, 4, 2, 2, 1, 1, 1, 1 };
    struct placement p;
    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB, 8, 4, 2, 4, load) == 0);
    int want[12] = { 1, 0, 3, 0, 0, 2, 6, 4, 4, 7, 5, 5 };
    double gl[4] = { 26.0 / 3, 22.0 / 3, 2, 2 };
    expect_map(&p, want, 12);
    expect_gpu_load(&p, load, gl);
    /* Replica counts from the greedy: e0 3, e4 2, e5 2, the rest 1. */
    int cnt[8] = { 3, 1, 1, 1, 2, 2, 1, 1 };
    for (int e = 0; e < 8; e++)
        CU_ASSERT_EQUAL(p.replica0[e + 1] - p.replica0[e], cnt[e]);
    placement_free(&p);

    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB_GLOBAL, 8, 4, 2, 4, load) == 0);
    int want_g[12] = { 0, 0, 4, 1, 0, 5, 2, 1, 6, 3, 0, 7 };
    double gl_g[4] = { 5, 5, 5, 5 };
    expect_map(&p, want_g, 12);
    expect_gpu_load(&p, load, gl_g);
    placement_free(&p);
}

/* The worked example of DeepSeek's EPLB README (github.com/deepseek-ai/EPLB): two layers
 * of E = 12 experts, 16 replicas, num_groups 4 (3 experts each), 2 nodes, 8 GPUs (4 per
 * node, 2 slots each). Its published phy2log is want[] below; worked here by hand:
 *
 * Layer 0, loads 90,132,40,61,104,165,39,4,73,56,183,86.
 *   Groups: g0 262, g1 330, g2 116, g3 325. Onto 2 nodes of 2 groups, heaviest first:
 *   g1 N0, g3 N1, g0 N1 (325 < 330, now full), g2 N0. N0 = e3..e8, N1 = e9,e10,e11,e0,e1,e2.
 *   N0 replicates e5 (165 -> 82.5), then e4 (104 -> 52): physical e3,e4,e5,e6,e7,e8,e5,e4
 *   = 61,52,82.5,39,4,73,82.5,52. Pack heaviest first on G0..G3: e5 G0, e5' G1, e8 G2,
 *   e3 G3, e4 G3 (61 least; full), e4' G2 (full), e6 G0 (82.5 tie, lowest; full), e7 G1.
 *   Slots 0-7: 5,6 | 5,7 | 8,4 | 3,4.
 *   N1 replicates e10 (183 -> 91.5), then e1 (132 -> 66): physical e9,e10,e11,e0,e1,e2,
 *   e10,e1 = 56,91.5,86,90,66,40,91.5,66. Pack: e10 G4, e10' G5, e0 G6, e11 G7, e1 G7
 *   (full), e1' G6 (full), e9 G4 (tie, lowest; full), e2 G5. Slots 8-15: 10,9 | 10,2 |
 *   0,1 | 11,1.
 * Layer 1, loads 20,107,104,64,19,197,187,157,172,86,16,27.
 *   Groups: g0 231, g1 280, g2 516, g3 129: g2 N0, g1 N1, g0 N1 (full), g3 N0.
 *   N0 = e6..e11 replicates e6 (187 -> 93.5), then e8 (172 -> 86): physical e6,e7,e8,e9,
 *   e10,e11,e6,e8 = 93.5,157,86,86,16,27,93.5,86. Pack: e7 G0, e6 G1, e6' G2, then the
 *   three 86s in index order (e8, e9, e8'): G3, G3 (full), G1 (93.5 tie; full); e11 G2
 *   (full), e10 G0. Slots 0-7: 7,10 | 6,8 | 6,11 | 8,9. (Another order of the equal 86s
 *   gives 9,8 or 8,8 with e9 on G1: the published map has them in index order.)
 *   N1 = e3,e4,e5,e0,e1,e2 replicates e5 (197 -> 98.5), then e1 (107 -> 53.5): physical
 *   e3,e4,e5,e0,e1,e2,e5,e1 = 64,19,98.5,20,53.5,104,98.5,53.5. Pack: e2 G4, e5 G5,
 *   e5' G6, e3 G7, e1 G7 (full), e1' G5 (tie, lowest; full), e0 G6 (full), e4 G4.
 *   Slots 8-15: 2,4 | 5,1 | 5,0 | 3,1.
 * E % ep = 12 % 8 != 0: no contiguous fallback. Replica counts: how often each expert
 * appears in want[]; expert e's CSR lists exactly the slots s with want[s] = e. */
static void test_eplb_reference_example(void)
{
    static const double load[2][12] = {
        { 90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86 },
        { 20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27 },
    };
    static const int want[2][16] = {
        { 5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1 },
        { 7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1 },
    };
    static const int logcnt[2][12] = {
        { 1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1 },
        { 1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1 },
    };
    for (int l = 0; l < 2; l++) {
        struct placement p;
        CU_ASSERT_FATAL(placement_create_grouped(&p, PLACEMENT_EPLB, 12, 8, 4, 4, 4,
                                                 load[l]) == 0);
        CU_ASSERT_EQUAL(p.slots_per_gpu, 2);
        expect_map(&p, want[l], 16);
        for (int e = 0; e < 12; e++) {
            CU_ASSERT_EQUAL(p.replica0[e + 1] - p.replica0[e], logcnt[l][e]);
            int j = p.replica0[e];
            for (int s = 0; s < 16; s++)
                if (want[l][s] == e) {
                    CU_ASSERT_FATAL(j < p.replica0[e + 1]);
                    CU_ASSERT_EQUAL(p.replica_slot[j], s);
                    j++;
                }
        }
        placement_free(&p);
    }
}

/* The greedy can lose to contiguous; then the contiguous map with own-GPU copies is
 * kept. E = 4, ep = 2, one node, R = 2, loads {2,1,3,0}; spg = 3.
 * Contiguous: G0 = e0+e1 = 3, G1 = e2+e3 = 3 (max 3 = the mean, 6 / 2).
 * Greedy: replicate e2 (3 -> 3/2), then e0 (2 > 3/2 -> 1): physical e0,e1,e2,e3,e2,e0
 * with 1,1,3/2,0,3/2,1. Pack: phy2 -> G0 3/2; phy4 -> G1 3/2; phy0 -> G0 5/2;
 * phy1 -> G1 5/2; phy5 -> G0 7/2 (full); phy3 -> G1 5/2. Max 7/2 > 3, whatever
 * order torch.sort gives the equal loads: one GPU gets a 3/2 and two of the three 1s.
 * Fallback: G0 keeps e0,e1 and copies e0 (2 > 1); G1 keeps e2,e3 and copies e2 (3 > 0):
 * slot_expert {0,1,0, 2,3,2}; loads 1+1+1 = 3 and 3/2+0+3/2 = 3. */
static void test_fallback(void)
{
    double load[4] = { 2, 1, 3, 0 }, gl[2] = { 3, 3 };
    int want[6] = { 0, 1, 0, 2, 3, 2 };
    enum placement_kind kinds[2] = { PLACEMENT_EPLB, PLACEMENT_EPLB_GLOBAL };
    for (int k = 0; k < 2; k++) {
        struct placement p;
        CU_ASSERT_FATAL(placement_create(&p, kinds[k], 4, 2, 2, 2, load) == 0);
        expect_map(&p, want, 6);
        expect_gpu_load(&p, load, gl);
        placement_free(&p);
    }
    /* R = 0, E = 6 on 2 GPUs, loads {3,3,0,2,2,2}. Greedy: e0 -> G0, e1 -> G1, e3 -> G0
     * (tie) 5, e4 -> G1 5, e5 -> G0 7 (full), e2 -> G1 5: max 7. Contiguous: 3+3+0 = 6
     * and 2+2+2 = 6, so the result is the contiguous map. */
    double load6[6] = { 3, 3, 0, 2, 2, 2 }, gl6[2] = { 6, 6 };
    int want6[6] = { 0, 1, 2, 3, 4, 5 };
    struct placement p;
    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB, 6, 2, 2, 0, load6) == 0);
    expect_map(&p, want6, 6);
    expect_gpu_load(&p, load6, gl6);
    placement_free(&p);
}

/* Structural invariants of any result: sizes; every expert has >= 1 replica and the
 * counts sum to nslots; the CSR lists exactly the slots holding each expert, in
 * increasing order; GPU loads sum to the total load; the eplb kind keeps each expert
 * on its own node (node n holds experts [n E/nodes, (n+1) E/nodes)). */
static bool invariants_hold(const struct placement *p, enum placement_kind kind, int E, int ep,
                            int gpn, int R, const double *load)
{
    bool ok = p->experts == E && p->ep == ep && p->gpus_per_node == (gpn > ep ? ep : gpn) &&
              p->nslots == E + R && p->slots_per_gpu * ep == E + R;
    ok = ok && p->replica0[0] == 0 && p->replica0[E] == p->nslots;
    int nodes = ep / p->gpus_per_node;
    double total = 0.0, sum = 0.0, gl[MAX_EP];
    for (int e = 0; ok && e < E; e++) {
        total += load[e];
        ok = p->replica0[e + 1] > p->replica0[e];
        for (int j = p->replica0[e]; ok && j < p->replica0[e + 1]; j++) {
            int s = p->replica_slot[j];
            ok = s >= 0 && s < p->nslots && p->slot_expert[s] == e &&
                 (j == p->replica0[e] || s > p->replica_slot[j - 1]);
            if (ok && kind == PLACEMENT_EPLB)
                ok = (s / p->slots_per_gpu) / (ep / nodes) == e / (E / nodes);
        }
    }
    placement_gpu_load(p, load, gl);
    for (int g = 0; g < ep; g++)
        sum += gl[g];
    return ok && fabs(sum - total) <= 1e-9 * total;
}

/* Skewed loads: Zipf rank^-s times 1000 over a random permutation of the experts,
 * s in [0.5, 2); half the time rounded to integers, which makes ties. */
static void zipf_load(struct rng *r, double *load, int E)
{
    int perm[MAX_E];
    for (int e = 0; e < E; e++)
        perm[e] = e;
    for (int e = E - 1; e > 0; e--) {
        int j = (int)rng_below(r, (uint64_t)e + 1), t = perm[e];
        perm[e] = perm[j];
        perm[j] = t;
    }
    double s = 0.5 + 1.5 * rng_double(r);
    bool round_it = rng_below(r, 2);
    for (int e = 0; e < E; e++) {
        double x = 1000.0 * pow(e + 1, -s);
        load[perm[e]] = round_it ? floor(x) : x;
    }
}

/* A random valid shape for kind: ep from a list, gpus per node dividing it (or larger),
 * E and R meeting the kind's divisibility rules. */
static void random_shape(struct rng *r, enum placement_kind kind, int *E, int *ep, int *gpn,
                         int *R)
{
    static const int eps[] = { 1, 2, 3, 4, 6, 8, 16, 32 };
    static const int gpns[] = { 1, 2, 4, 8, 16 };
    do {
        *ep = eps[rng_below(r, sizeof(eps) / sizeof(eps[0]))];
        *gpn = gpns[rng_below(r, sizeof(gpns) / sizeof(gpns[0]))];
    } while (*gpn < *ep && *ep % *gpn != 0);
    int nodes = kind == PLACEMENT_EPLB && *gpn < *ep ? *ep / *gpn : 1;
    if (kind == PLACEMENT_CONTIGUOUS || kind == PLACEMENT_ROUND_ROBIN || rng_below(r, 2)) {
        *E = *ep * (1 + (int)rng_below(r, 8));   /* E % ep == 0: contiguous is defined */
    } else {
        *E = nodes * (1 + (int)rng_below(r, 12));
    }
    int up = (*E + *ep - 1) / *ep * *ep;
    *R = kind == PLACEMENT_CONTIGUOUS || kind == PLACEMENT_ROUND_ROBIN
             ? 0
             : up - *E + *ep * (int)rng_below(r, 4);
}

/* 4000 random shapes and loads per kind; each result also reproduces bit for bit. */
static void test_invariants(void)
{
    struct rng r;
    rng_seed(&r, 1);
    double load[MAX_E];
    for (int kind = PLACEMENT_CONTIGUOUS; kind <= PLACEMENT_EPLB_GLOBAL; kind++) {
        int bad = 0;
        for (int t = 0; t < 4000; t++) {
            int E, ep, gpn, R;
            random_shape(&r, (enum placement_kind)kind, &E, &ep, &gpn, &R);
            zipf_load(&r, load, E);
            struct placement p, q;
            if (placement_create(&p, (enum placement_kind)kind, E, ep, gpn, R, load) != 0) {
                bad++;
                continue;
            }
            bad += !invariants_hold(&p, (enum placement_kind)kind, E, ep, gpn, R, load);
            CU_ASSERT_FATAL(placement_create(&q, (enum placement_kind)kind, E, ep, gpn, R, load) == 0);
            bad += memcmp(p.slot_expert, q.slot_expert, (size_t)p.nslots * sizeof(int)) != 0;
            placement_free(&q);
            placement_free(&p);
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* Zipf s = 1, load[e] = 1 / (e + 1), E = 16 on ep = 4 (2 nodes of 2 GPUs), R = 4;
 * spg = 5. Contiguous: max G0 = 1 + 1/2 + 1/3 + 1/4 = 25/12; mean H16 / 4 = 0.8451822,
 * max/mean 2.465.
 *
 * eplb, node 0 (e0..e7, 2 extra): e0 (1 -> 1/2), e0 (1/2 ties e1 -> 1/3). Physical
 *   0..9 = e0..e7, e0, e0; loads 1/3,1/2,1/3,1/4,1/5,1/6,1/7,1/8,1/3,1/3. Pack heaviest
 *   first: phy1 G0 .5; phy0 G1 .333; phy2 G1 .667; phy8 G0 .833; phy9 G1 1; phy3 G0
 *   1.083; phy4 G1 1.2; phy5 G0 1.25; phy6 G1 1.343 (full); phy7 G0 1.375.
 *   G0 = 1/2+1/3+1/4+1/6+1/8 = 11/8, G1 = 3 (1/3) + 1/5 + 1/7 = 47/35.
 * Node 1 (e8..e15): e8 (1/9 -> 1/18), e9 (1/10 -> 1/20). By load per replica: e10 G2,
 *   e11 G3, e12 G3, e13 G2, e14 G3, e15 G2, e8 G2, e8' G3, e9 G2 (full), e9' G3.
 *   G2 = 1/11+1/14+1/16+1/18+1/20, G3 = 1/12+1/13+1/15+1/18+1/20.
 * Max 11/8, max/mean 1.627.
 *
 * eplb-global (4 extra): e0 (1 -> 1/2), e0 (ties e1 -> 1/3), e1 (1/2 -> 1/4), e0 (1/3
 *   ties e2 -> 1/4). Physical 16..19 = e0, e0, e1, e0. Heaviest first: e2 (1/3) G0;
 *   the eight 1/4s (phy 0,1,3,16,17,18,19) G1,G2,G3,G1,G2,G3,G0; then 1/5..1/16 each
 *   to the lightest GPU with room: G1 1/5, G2 1/6, G3 1/7, G0 1/8, G3 1/9, G2 1/10,
 *   G1 1/11, G0 1/12, G3 1/13, G2 1/14, G1 1/15, G0 1/16.
 *   G0 = 1/3+1/4+1/8+1/12+1/16 = 41/48, G1 = 1/2+1/5+1/11+1/15 = 283/330,
 *   G2 = 1/2+1/6+1/10+1/14, G3 = 1/2+1/7+1/9+1/13. Max 283/330, max/mean 1.015. */
static void test_zipf_lowers_max(void)
{
    double load[16];
    for (int e = 0; e < 16; e++)
        load[e] = 1.0 / (e + 1);
    struct placement p;
    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_CONTIGUOUS, 16, 4, 2, 0, NULL) == 0);
    CU_ASSERT_DOUBLE_EQUAL(max_gpu_load(&p, load), 25.0 / 12, 1e-12);
    placement_free(&p);

    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB, 16, 4, 2, 4, load) == 0);
    double gl[4] = { 11.0 / 8, 47.0 / 35, 1.0 / 11 + 1.0 / 14 + 1.0 / 16 + 1.0 / 18 + 1.0 / 20,
                     1.0 / 12 + 1.0 / 13 + 1.0 / 15 + 1.0 / 18 + 1.0 / 20 };
    expect_gpu_load(&p, load, gl);
    placement_free(&p);

    CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB_GLOBAL, 16, 4, 2, 4, load) == 0);
    double gl_g[4] = { 41.0 / 48, 283.0 / 330, 0.5 + 1.0 / 6 + 1.0 / 10 + 1.0 / 14,
                       0.5 + 1.0 / 7 + 1.0 / 9 + 1.0 / 13 };
    expect_gpu_load(&p, load, gl_g);
    int want[20] = { 2, 0, 7, 11, 15, 0, 0, 4, 10, 14, 1, 0, 5, 9, 13, 3, 1, 6, 8, 12 };
    expect_map(&p, want, 20);
    placement_free(&p);
}

/* Over 20000 random skewed loads and shapes with E % ep == 0, R >= 0: the eplb kinds'
 * max GPU load never exceeds contiguous's (R = 0) beyond rounding (1e-12 relative:
 * the fallback splits a load into equal replica shares on one GPU and sums them). */
static void test_never_raises(void)
{
    struct rng r;
    rng_seed(&r, 7);
    double load[MAX_E];
    int worse = 0, better = 0;
    for (int t = 0; t < 20000; t++) {
        enum placement_kind kind = t % 2 ? PLACEMENT_EPLB_GLOBAL : PLACEMENT_EPLB;
        int E, ep, gpn, R;
        do
            random_shape(&r, kind, &E, &ep, &gpn, &R);
        while (E % ep != 0);
        zipf_load(&r, load, E);
        struct placement c, p;
        CU_ASSERT_FATAL(placement_create(&c, PLACEMENT_CONTIGUOUS, E, ep, gpn, 0, NULL) == 0);
        CU_ASSERT_FATAL(placement_create(&p, kind, E, ep, gpn, R, load) == 0);
        double mc = max_gpu_load(&c, load), mp = max_gpu_load(&p, load);
        worse += mp > mc * (1 + 1e-12);
        better += mp < mc * (1 - 1e-9);
        placement_free(&p);
        placement_free(&c);
    }
    CU_ASSERT_EQUAL(worse, 0);
    /* Skewed loads on random permutations: the balancer wins most of the time. */
    CU_ASSERT(better > 10000);
}

/* expert_groups = nodes (or 0) is the one-group-per-node policy of test_eplb_two_nodes,
 * slot for slot: packing one group per node is the identity (eplb.py's
 * balanced_packing with one item per pack). Then over random shapes: groups = nodes gives
 * what groups = 0 gives. */
static void test_groups_equal_nodes(void)
{
    double load[MAX_E] = { 8, 4, 2, 2, 1, 1, 1, 1 };
    int want[12] = { 1, 0, 3, 0, 0, 2, 6, 4, 4, 7, 5, 5 };
    struct placement p, q;
    CU_ASSERT_FATAL(placement_create_grouped(&p, PLACEMENT_EPLB, 8, 4, 2, 4, 2, load) == 0);
    expect_map(&p, want, 12);
    placement_free(&p);
    struct rng r;
    rng_seed(&r, 3);
    int differ = 0, n = 0;
    for (int t = 0; t < 2000; t++) {
        int E, ep, gpn, R;
        random_shape(&r, PLACEMENT_EPLB, &E, &ep, &gpn, &R);
        zipf_load(&r, load, E);
        int nodes = gpn < ep ? ep / gpn : 1;
        CU_ASSERT_FATAL(placement_create(&p, PLACEMENT_EPLB, E, ep, gpn, R, load) == 0);
        CU_ASSERT_FATAL(placement_create_grouped(&q, PLACEMENT_EPLB, E, ep, gpn, R, nodes,
                                                 load) == 0);
        differ += memcmp(p.slot_expert, q.slot_expert, (size_t)p.nslots * sizeof(int)) != 0;
        n += nodes > 1;
        placement_free(&q);
        placement_free(&p);
    }
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT(n > 500);                          /* many of them span several nodes */
}

/* Random shapes with G expert groups, a multiple of the nodes that divides E: the
 * invariants of any map; each GPU holds slots_per_gpu slots (counted through the CSR);
 * each group's experts all on one node and each node home to G / nodes whole groups (so
 * its E / nodes experts); and a second run gives the same map. */
static void test_groups_properties(void)
{
    struct rng r;
    rng_seed(&r, 5);
    double load[MAX_E];
    int bad = 0, moved = 0;
    for (int t = 0; t < 3000; t++) {
        int E, ep, gpn, R;
        random_shape(&r, PLACEMENT_EPLB, &E, &ep, &gpn, &R);
        int nodes = gpn < ep ? ep / gpn : 1, en = E / nodes, G = 0;
        /* a multiple of nodes dividing E: nodes * d, d | E / nodes, drawn at random */
        do
            G = nodes * (1 + (int)rng_below(&r, (uint64_t)en));
        while (E % G);
        zipf_load(&r, load, E);
        struct placement p, q;
        CU_ASSERT_FATAL(placement_create_grouped(&p, PLACEMENT_EPLB, E, ep, gpn, R, G, load) == 0);
        /* as eplb-global: without the home-node rule, which G > nodes breaks */
        bad += !invariants_hold(&p, PLACEMENT_EPLB_GLOBAL, E, ep, gpn, R, load);
        int per_gpu[MAX_EP] = { 0 }, node_of[MAX_E], per_node[MAX_EP] = { 0 };
        for (int e = 0; e < E; e++) {
            node_of[e] = -1;
            for (int j = p.replica0[e]; j < p.replica0[e + 1]; j++) {
                int g = p.replica_slot[j] / p.slots_per_gpu, nd = g / (ep / nodes);
                per_gpu[g]++;
                bad += node_of[e] >= 0 && node_of[e] != nd;
                node_of[e] = nd;
            }
            per_node[node_of[e]]++;
            bad += e % (E / G) && node_of[e] != node_of[e - 1];   /* group on one node */
        }
        for (int g = 0; g < ep; g++)
            bad += per_gpu[g] != p.slots_per_gpu;
        for (int nd = 0; nd < nodes; nd++)
            bad += per_node[nd] != en;
        for (int e = 0; e < E; e++)
            moved += node_of[e] != e / en;
        CU_ASSERT_FATAL(placement_create_grouped(&q, PLACEMENT_EPLB, E, ep, gpn, R, G, load) == 0);
        bad += memcmp(p.slot_expert, q.slot_expert, (size_t)p.nslots * sizeof(int)) != 0;
        placement_free(&q);
        placement_free(&p);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(moved > 0);                        /* groups do leave their home node */
}

static void expect_einval(enum placement_kind kind, int E, int ep, int gpn, int R,
                          const double *load)
{
    struct placement p;
    memset(&p, 0xab, sizeof(p));
    CU_ASSERT_EQUAL(placement_create(&p, kind, E, ep, gpn, R, load), -EINVAL);
    CU_ASSERT(p.experts == 0 && p.nslots == 0 && p.slot_expert == NULL &&
              p.replica0 == NULL && p.replica_slot == NULL);
}

static void expect_einval_groups(enum placement_kind kind, int E, int ep, int gpn, int R,
                                 int G, const double *load)
{
    struct placement p;
    memset(&p, 0xab, sizeof(p));
    CU_ASSERT_EQUAL(placement_create_grouped(&p, kind, E, ep, gpn, R, G, load), -EINVAL);
    CU_ASSERT(p.experts == 0 && p.nslots == 0 && p.slot_expert == NULL);
}

static void test_bad_args(void)
{
    double load[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    double neg[8] = { 1, 1, -1, 1, 1, 1, 1, 1 };
    double nan_[8] = { 1, 1, NAN, 1, 1, 1, 1, 1 };
    double inf_[8] = { 1, 1, INFINITY, 1, 1, 1, 1, 1 };
    CU_ASSERT_EQUAL(placement_create(NULL, PLACEMENT_CONTIGUOUS, 8, 4, 4, 0, NULL), -EINVAL);
    expect_einval(PLACEMENT_CONTIGUOUS, 0, 4, 4, 0, NULL);       /* E < 1 */
    expect_einval(PLACEMENT_CONTIGUOUS, 8, 0, 4, 0, NULL);       /* ep < 1 */
    expect_einval(PLACEMENT_CONTIGUOUS, 8, 4, 0, 0, NULL);       /* gpus_per_node < 1 */
    expect_einval(PLACEMENT_EPLB_GLOBAL, 8, 4, 4, -4, load);     /* R < 0 */
    expect_einval(PLACEMENT_EPLB_GLOBAL, 8, 4, 4, 2, load);      /* 10 % 4 != 0 */
    expect_einval(PLACEMENT_EPLB_GLOBAL, 2147483647, 1, 1, 1, load); /* E + R overflows */
    expect_einval(PLACEMENT_CONTIGUOUS, 8, 4, 4, 4, NULL);       /* contiguous with R */
    expect_einval(PLACEMENT_ROUND_ROBIN, 8, 4, 4, 4, NULL);      /* round-robin with R */
    expect_einval(PLACEMENT_EPLB, 8, 6, 4, 4, load);             /* 6 % 4 != 0 */
    expect_einval(PLACEMENT_CONTIGUOUS, 12, 6, 4, 0, NULL);      /* 6 % 4 != 0, any kind */
    /* ep 4, 1 GPU per node: 4 nodes; E = 6 and R = 2 are not multiples of 4. The same
     * shape is valid for eplb-global (one node). */
    expect_einval(PLACEMENT_EPLB, 6, 4, 1, 2, load);
    struct placement p;
    CU_ASSERT(placement_create(&p, PLACEMENT_EPLB_GLOBAL, 6, 4, 1, 2, load) == 0);
    placement_free(&p);
    expect_einval(PLACEMENT_EPLB, 8, 4, 2, 0, NULL);             /* load missing */
    expect_einval(PLACEMENT_EPLB_GLOBAL, 8, 4, 2, 0, NULL);
    expect_einval(PLACEMENT_EPLB, 8, 4, 2, 0, neg);
    expect_einval(PLACEMENT_EPLB, 8, 4, 2, 0, nan_);
    expect_einval(PLACEMENT_EPLB_GLOBAL, 8, 4, 2, 0, inf_);
    expect_einval((enum placement_kind)7, 8, 4, 2, 0, load);
    /* expert groups: 2 nodes of 2 GPUs, E = 8, R = 4 */
    CU_ASSERT_EQUAL(placement_create_grouped(NULL, PLACEMENT_EPLB, 8, 4, 2, 4, 2, load), -EINVAL);
    expect_einval_groups(PLACEMENT_EPLB, 8, 4, 2, 4, -2, load);      /* G < 0 */
    expect_einval_groups(PLACEMENT_EPLB, 8, 4, 2, 4, 1, load);       /* 1 % 2 nodes */
    expect_einval_groups(PLACEMENT_EPLB, 8, 4, 2, 4, 6, load);       /* 8 % 6 */
    expect_einval_groups(PLACEMENT_EPLB_GLOBAL, 8, 4, 2, 4, 1, load); /* global: no groups */
    expect_einval_groups(PLACEMENT_CONTIGUOUS, 8, 4, 2, 0, 2, NULL);
    expect_einval_groups(PLACEMENT_ROUND_ROBIN, 8, 4, 2, 0, 2, NULL);
    CU_ASSERT(placement_create_grouped(&p, PLACEMENT_EPLB, 8, 4, 2, 4, 8, load) == 0);
    placement_free(&p);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "names", test_names },
        { "contiguous", test_contiguous },
        { "round_robin", test_round_robin },
        { "eplb_one_node", test_eplb_one_node },
        { "eplb_two_nodes", test_eplb_two_nodes },
        { "eplb_reference_example", test_eplb_reference_example },
        { "fallback", test_fallback },
        { "invariants", test_invariants },
        { "zipf_lowers_max", test_zipf_lowers_max },
        { "never_raises", test_never_raises },
        { "groups_equal_nodes", test_groups_equal_nodes },
        { "groups_properties", test_groups_properties },
        { "bad_args", test_bad_args },
    };
    return cu_run("placement", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
