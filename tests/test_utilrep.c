/* test_utilrep.c: utilrep's bins and exprep's loads against values worked by hand. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a2a.h"
#include "cu_run.h"
#include "exprep.h"
#include "utilrep.h"

#define S 4194304.0            /* bytes per flow: 9.3 us at NVL, the latency 2 us */
#define NVL 450e9
#define L_NVL 1e-6

/* Field i (0-based) of CSV row `row` (1-based: 0 is the header) of text, as a number
 * (NaN when empty); no field of these files is quoted. */
static double field(const char *text, int row, int i)
{
    const char *p = text;
    for (int r = 0; r < row && p; r++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    for (int k = 0; k < i && p; k++) {
        p = strpbrk(p, ",\n");
        p = p && *p == ',' ? p + 1 : NULL;
    }
    if (!p || *p == ',' || *p == '\n')
        return NAN;
    return strtod(p, NULL);
}

static int rows(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n - 1;
}

/* Two GPUs of one node, one flow each way of S bytes: each flow alone on its NVLink
 * egress and ingress at NVL from 2 L_nvl (the path's latency) to T = 2 L_nvl + S / NVL.
 * Four bins of w = T / 4: a link's utilization in bin k is the part of the bin after
 * 2 L_nvl, (min(T, (k+1) w) - max(2 L_nvl, k w))^+ / w; both GPUs are in the collective
 * the whole time (comm 1); no compute, no NIC. */
static double busy_part(double T, int k)
{
    double w = T / 4, x = fmin(T, (k + 1) * w) - fmax(2 * L_NVL, k * w);
    return x > 0 ? x / w : 0;
}

static void test_layer_bins(void)
{
    struct cfg_cluster c;
    memset(&c, 0, sizeof(c));
    c.nodes = 1;
    c.gpus_per_node = 2;
    c.nvlink_Bps = NVL;
    c.nic_Bps = 50e9;
    c.nvlink_eff = c.nic_eff = 1;
    c.nvlink_lat_s = L_NVL;
    c.nic_lat_s = 2e-6;
    c.oversubscription = 1;
    c.route = ROUTE_RAIL;
    struct topo *t = NULL;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 2, (uint64_t)S), 0);
    struct a2a_result a;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &m, 0, true), 0);
    static struct config cfg;
    struct report r = { .cfg = &cfg, .topo = t, .nphases = 1, .phase_name = { "alltoall" },
                        .phase = { &a } };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_EQUAL_FATAL(utilrep_layer_csv(f, &r, 4), 0);
    fclose(f);
    double T = 2 * L_NVL + S / NVL, w = T / 4;
    CU_ASSERT_EQUAL(rows(text), 2 * 4 + t->nlinks * 4);
    for (int g = 0; g < 2; g++)
        for (int k = 0; k < 4; k++) {
            int row = 1 + g * 4 + k;
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 5), k * w, 1e-9 * T);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 6), (k + 1) * w, 1e-9 * T);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 7), 0, 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 8), 1, 1e-9);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 9), busy_part(T, k), 1e-9);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 10), 0, 1e-12);
            CU_ASSERT(isnan(field(text, row, 11)));
        }
    /* link rows: gpu0.nvl_tx (link 0) as the GPUs' nvlink; its rate in GB/s */
    int l0 = 1 + 2 * 4 + topo_nvl_tx(t, 0) * 4;
    for (int k = 0; k < 4; k++) {
        CU_ASSERT(isnan(field(text, l0 + k, 8)));
        CU_ASSERT_DOUBLE_EQUAL(field(text, l0 + k, 11), busy_part(T, k), 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(field(text, l0 + k, 12), (busy_part(T, k)) * NVL / 1e9, 1e-6);
    }
    /* the NIC links carry nothing */
    int n0 = 1 + 2 * 4 + topo_nic_tx(t, 1) * 4;
    for (int k = 0; k < 4; k++)
        CU_ASSERT_DOUBLE_EQUAL(field(text, n0 + k, 11), 0, 1e-12);
    free(text);
    a2a_free(&a);
    traffic_free(&m);
    topo_free(t);
}

/* A layer run without series is refused. */
static void test_layer_no_series(void)
{
    struct a2a_result a;
    memset(&a, 0, sizeof(a));
    static struct config cfg;
    struct report r = { .cfg = &cfg, .nphases = 1, .phase = { &a } };
    FILE *f = fopen("/dev/null", "w");
    CU_ASSERT_EQUAL(utilrep_layer_csv(f, &r, 4), -EINVAL);
    fclose(f);
}

/* One lane of two GPUs over a step of 4 s, four bins of 1 s: attn [0, 1], experts [1, 3],
 * a dispatch [1, 2] on the comm stream, a send [3, 4] (p2p: neither compute nor comm).
 * GPU 0 computes 3 s (no straggler wait); GPU 1 2 s: its 1 s wait comes out of the 2 s
 * of expert slice, which it is busy half of: compute [1, .5, .5, 0]; comm [0, 1, 0, 0]
 * for both. */
static void test_step_bins(void)
{
    struct step_slice sl[] = {
        { 0, 1, 0, 0, 0, 1, STEP_COMPUTE, STEP_ATTN, 0 },
        { 1, 3, 0, 0, 0, 1, STEP_COMPUTE, STEP_EXPERTS, 0 },
        { 1, 2, 0, 0, 0, 1, STEP_COMM, STEP_DISPATCH, 0 },
        { 3, 4, 0, 0, 0, -1, STEP_P2P, STEP_SEND, 0 },
    };
    struct step_gpu gpu[2] = { { .compute_s = 3, .comm_s = 1 },
                               { .compute_s = 2, .straggler_s = 1, .comm_s = 1 } };
    struct step_result s = { .gpus = 2, .pp = 1, .dp = 2, .ep = 2, .lanes = 1, .step_s = 4,
                             .gpu = gpu, .slices = sl, .nslices = 4, .subops = 4 };
    static struct config cfg;
    struct steprep r = { .cfg = &cfg, .res = &s };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_EQUAL_FATAL(utilrep_step_csv(f, &r, 4), 0);
    fclose(f);
    const double comp[2][4] = { { 1, 1, 1, 0 }, { 1, 0.5, 0.5, 0 } };
    const double comm[4] = { 0, 1, 0, 0 };
    CU_ASSERT_EQUAL(rows(text), 8);
    for (int g = 0; g < 2; g++)
        for (int k = 0; k < 4; k++) {
            CU_ASSERT_DOUBLE_EQUAL(field(text, 1 + g * 4 + k, 7), comp[g][k], 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(field(text, 1 + g * 4 + k, 8), comm[k], 1e-12);
            CU_ASSERT(isnan(field(text, 1 + g * 4 + k, 9)));
        }
    free(text);
    /* without slices: refused */
    s.slices = NULL;
    f = fopen("/dev/null", "w");
    CU_ASSERT_EQUAL(utilrep_step_csv(f, &r, 4), -EINVAL);
    fclose(f);
}

/* Model layers 0 (dense), 1, 2 (MoE); routing of two GPUs over 4 experts: MoE layer 0
 * demand {3,1,0,0} + {1,1,0,2} = {4,2,0,2} (share /8, load over the mean 2); MoE layer 1
 * all tokens on expert 3 from GPU 1: {0,0,0,5}. */
static void test_expert_loads(void)
{
    struct step_layer layer[3] = { { .moe = 0 }, { .moe = 1 }, { .moe = 1 } };
    struct rtrace rt;
    CU_ASSERT_EQUAL_FATAL(rtrace_create(&rt, 2, 1, 2, 4), 0);
    const uint64_t v[2][2][4] = { { { 3, 1, 0, 0 }, { 1, 1, 0, 2 } },
                                  { { 0, 0, 0, 0 }, { 0, 0, 0, 5 } } };
    for (int l = 0; l < 2; l++)
        for (int g = 0; g < 2; g++)
            memcpy(rtrace_at(&rt, l, 0, g), v[l][g], sizeof(v[l][g]));
    struct step_result s = { .layers = 3, .layer = layer, .routing = rt };
    static struct config cfg;
    struct steprep r = { .cfg = &cfg, .res = &s };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_EQUAL_FATAL(exprep_step_csv(f, &r), 0);
    fclose(f);
    const double want[2][4] = { { 4, 2, 0, 2 }, { 0, 0, 0, 5 } };
    const double tot[2] = { 8, 5 };
    CU_ASSERT_EQUAL(rows(text), 8);
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 4; e++) {
            int row = 1 + l * 4 + e;
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 0), l + 1, 0);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 1), l, 0);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 2), e, 0);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 3), want[l][e], 0);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 4), want[l][e] / tot[l], 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 5), want[l][e] / (tot[l] / 4), 1e-12);
        }
    free(text);
    rtrace_free(&rt);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "layer run: bins of a flow each way, closed form", test_layer_bins },
        { "layer run without series: -EINVAL", test_layer_no_series },
        { "step: compute less the straggler wait, comm, by hand", test_step_bins },
        { "expert loads per MoE layer, by hand", test_expert_loads },
    };
    return cu_run("utilrep", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
