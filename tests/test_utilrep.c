/* test_utilrep.c: utilrep's bins and exprep's loads against values worked by hand. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a2a.h"
#include "config.h"
#include "cu_run.h"
#include "exprep.h"
#include "sched.h"
#include "topo.h"
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

/* One stage of 4 GPUs in 2 nodes of 2 (dp 4, ep 2: lane 0 GPUs 0, 1 in node 0, lane 1
 * GPUs 2, 3 in node 1), NVLink NVL, NICs 50 GB/s, 4 bins of 1 s. Layer 0's dispatch
 * (matrix 0: 0 -> 1 6 GB, 1 -> 0 3 GB, 2 -> 1 4 GB) runs on lane 0 over [0, 2) and on
 * lane 1 over [1, 3); the DP reduce (matrix 1: 3 -> 2 1 GB) on lane 1 over [3, 4). Each
 * lane sends its own GPUs' rows at a constant rate over its sub-op:
 *   gpu0.nvl_tx, gpu1.nvl_rx: 3 GB/s in bins 0, 1; gpu1.nvl_tx, gpu0.nvl_rx 1.5 GB/s;
 *   gpu2.nic_tx, gpu1.nic_rx: 2 GB/s in bins 1, 2 (4 GB over 2 s, rail: NIC to NIC);
 *   gpu3.nvl_tx, gpu2.nvl_rx: 1 GB/s in bin 3; every other link nothing.
 * A GPU's nvlink and nic are the means of its two links' utilizations. */
static void test_step_links(void)
{
    static struct config cfg;
    struct cfg_cluster *c = &cfg.cluster;
    c->nodes = 2;
    c->gpus_per_node = 2;
    c->nvlink_Bps = NVL;
    c->nic_Bps = 50e9;
    c->nvlink_eff = c->nic_eff = 1;
    c->nvlink_lat_s = L_NVL;
    c->nic_lat_s = 2e-6;
    c->oversubscription = 1;
    c->route = ROUTE_RAIL;
    double m0[16] = { 0 }, m1[16] = { 0 };
    m0[0 * 4 + 1] = 6e9;
    m0[1 * 4 + 0] = 3e9;
    m0[2 * 4 + 1] = 4e9;
    m1[3 * 4 + 2] = 1e9;
    double *mats[2] = { m0, m1 };
    int a2a[8] = { 0, -1, -1, -1, -1, -1, -1, -1 }, reduce[1] = { 1 };
    struct step_slice sl[] = {
        { 0, 2, 0, 0, 0, 0, STEP_COMM, STEP_DISPATCH, SCHED_F },
        { 1, 3, 1, 0, 0, 0, STEP_COMM, STEP_DISPATCH, SCHED_F },
        { 3, 4, 1, -1, 0, -1, STEP_COMM, STEP_DP_REDUCE, SCHED_W },
    };
    struct step_gpu gpu[4] = { { 0 } };
    struct step_result s = { .gpus = 4, .pp = 1, .dp = 4, .ep = 2, .lanes = 2, .pieces = 1,
                             .layers = 2, .step_s = 4, .gpu = gpu, .slices = sl,
                             .nslices = 3, .subops = 3,
                             .comm = { mats, 2, 2, a2a, reduce } };
    struct steprep r = { .cfg = &cfg, .res = &s };
    struct topo *t = NULL;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, c), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_EQUAL_FATAL(utilrep_step_csv(f, &r, 4), 0);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(rows(text), 4 * 4 + t->nlinks * 4);
    double want[64][4] = { { 0 } };       /* GB/s per link and bin */
    for (int k = 0; k < 2; k++) {
        want[topo_nvl_tx(t, 0)][k] = want[topo_nvl_rx(t, 1)][k] = 3;
        want[topo_nvl_tx(t, 1)][k] = want[topo_nvl_rx(t, 0)][k] = 1.5;
        want[topo_nic_tx(t, 2)][k + 1] = want[topo_nic_rx(t, 1)][k + 1] = 2;
    }
    want[topo_nvl_tx(t, 3)][3] = want[topo_nvl_rx(t, 2)][3] = 1;
    CU_ASSERT_FATAL(t->nlinks <= 64);
    for (int l = 0; l < t->nlinks; l++)
        for (int k = 0; k < 4; k++) {
            int row = 1 + 16 + l * 4 + k;
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 1), l, 0);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 12), want[l][k], 1e-9);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 11), want[l][k] * 1e9 / t->links[l].cap_Bps,
                                   1e-12);
        }
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 4; k++) {
            int row = 1 + g * 4 + k;
            double nvl = (want[topo_nvl_tx(t, g)][k] + want[topo_nvl_rx(t, g)][k]) * 1e9 / NVL;
            double nic = (want[topo_nic_tx(t, g)][k] + want[topo_nic_rx(t, g)][k]) / 50;
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 9), nvl / 2, 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(field(text, row, 10), nic / 2, 1e-12);
        }
    free(text);
    topo_free(t);
}

/* The util CSV of text parsed: per link its bytes over the step (sum over bins of
 * util x capacity x width) and its highest utilization; per GPU and bin its nvlink and
 * nic against the mean of its links' (returned: the largest difference). */
struct step_util {
    double *bytes, max_util, gpu_diff;
};

static void parse_util(const char *text, const struct topo *t, int bins, struct step_util *u)
{
    double *util = calloc((size_t)t->nlinks * bins, sizeof(double));
    double *gpu = calloc((size_t)t->gpus * bins * 2, sizeof(double));
    u->bytes = calloc((size_t)t->nlinks, sizeof(double));
    u->max_util = u->gpu_diff = 0;
    CU_ASSERT_FATAL(util && gpu && u->bytes);
    for (const char *p = strchr(text, '\n') + 1; *p; p = strchr(p, '\n') + 1) {
        char kind[8];
        int id, k;
        double t0, t1, nvl, nic, x;
        if (sscanf(p, "%7[a-z],%d,%*[^,],%*[^,],%d,%lf,%lf,", kind, &id, &k, &t0, &t1) != 5 &&
            sscanf(p, "%7[a-z],%d,%*[^,],,%d,%lf,%lf,", kind, &id, &k, &t0, &t1) != 5)
            CU_FAIL_FATAL("unparsed row");
        const char *q = p;
        for (int i = 0; i < 9; i++)
            q = strchr(q, ',') + 1;
        if (!strcmp(kind, "gpu")) {
            CU_ASSERT_EQUAL_FATAL(sscanf(q, "%lf,%lf", &nvl, &nic), 2);
            gpu[((size_t)id * bins + k) * 2] = nvl;
            gpu[((size_t)id * bins + k) * 2 + 1] = nic;
        } else {
            q = strchr(strchr(q, ',') + 1, ',') + 1;
            CU_ASSERT_EQUAL_FATAL(sscanf(q, "%lf", &x), 1);
            util[(size_t)id * bins + k] = x;
            u->bytes[id] += x * t->links[id].cap_Bps * (t1 - t0);
            u->max_util = fmax(u->max_util, x);
        }
    }
    for (int g = 0; g < t->gpus; g++)
        for (int k = 0; k < bins; k++) {
            const int l[4] = { topo_nvl_tx(t, g), topo_nvl_rx(t, g), topo_nic_tx(t, g),
                               topo_nic_rx(t, g) };
            for (int i = 0; i < 2; i++) {
                double mean = (util[(size_t)l[2 * i] * bins + k] +
                               util[(size_t)l[2 * i + 1] * bins + k]) / 2;
                u->gpu_diff = fmax(u->gpu_diff,
                                   fabs(gpu[((size_t)g * bins + k) * 2 + i] - mean));
            }
        }
    free(util);
    free(gpu);
}

/* The bundled default step (32 GPUs in 4 nodes, pp 4, dp 8, 4 layers, DualPipe) with
 * ep 8 (one EP group per stage: a link serves one lane's collectives, one at a time, so
 * no link is above 1) and ep 4 (two groups). Each link carries, over the step, what the
 * communication sub-ops send through it: for each sub-op, every flow of its lane's rows
 * of its collective, a flow inside a node on the source's NVLink egress and the
 * destination's ingress, between nodes on their NICs (the rail route). */
static void test_step_link_bytes(void)
{
    static const char *const eps[2][1] = { { "parallel.ep=8" }, { "parallel.ep=4" } };
    for (int v = 0; v < 2; v++) {
        struct config c;
        struct cfg_err err;
        const char *files[1] = { "configs/examples/default.ini" };
        CU_ASSERT_EQUAL_FATAL(config_load(&c, files, 1, eps[v], 1, &err), 0);
        struct step_result s;
        CU_ASSERT_EQUAL_FATAL(step_run(&s, &c, 1, STEP_KEEP_SLICES, &err), 0);
        struct topo *t = NULL;
        CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
        double *want = calloc((size_t)t->nlinks, sizeof(double));
        CU_ASSERT_FATAL(want != NULL);
        int groups = s.dp / s.ep, gpn = t->gpus_per_node, ops = 0;
        for (int64_t i = 0; i < s.nslices; i++) {
            const struct step_slice *x = &s.slices[i];
            /* step.h's order: F dispatch, F combine, B combine gradient, B dispatch's */
            static const int nth[2][2] = { { 0, 1 }, { 3, 2 } };  /* [B][combine] */
            int m;
            if (x->what == STEP_DP_REDUCE)
                m = s.comm.reduce[x->piece];
            else if (x->what == STEP_DISPATCH || x->what == STEP_COMBINE)
                m = s.comm.a2a[4 * x->layer + nth[x->kind == SCHED_B][x->what == STEP_COMBINE]];
            else
                continue;
            ops++;
            int base = x->lane / groups * s.dp, g = x->lane % groups;
            for (int a = g * s.ep; a < (g + 1) * s.ep; a++)
                for (int b = 0; b < s.dp; b++) {
                    double bytes = s.comm.m[m][(size_t)a * s.dp + b];
                    int ga = base + a, gb = base + b;
                    if (a == b || bytes == 0)
                        continue;
                    bool same = ga / gpn == gb / gpn;
                    want[same ? topo_nvl_tx(t, ga) : topo_nic_tx(t, ga)] += bytes;
                    want[same ? topo_nvl_rx(t, gb) : topo_nic_rx(t, gb)] += bytes;
                }
        }
        CU_ASSERT(ops > 0);
        static struct config cfg;
        cfg = c;
        struct steprep r = { .cfg = &cfg, .res = &s };
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CU_ASSERT_EQUAL_FATAL(utilrep_step_csv(f, &r, 50), 0);
        fclose(f);
        struct step_util u;
        parse_util(text, t, 50, &u);
        double total = 0;
        for (int l = 0; l < t->nlinks; l++) {
            CU_ASSERT_DOUBLE_EQUAL(u.bytes[l], want[l], 1e-6 * want[l] + 1);
            total += want[l];
        }
        CU_ASSERT(total > 0);
        if (v == 0)
            CU_ASSERT(u.max_util <= 1 + 1e-9);
        CU_ASSERT(u.gpu_diff < 1e-9);
        free(u.bytes);
        free(want);
        free(text);
        topo_free(t);
        step_free(&s);
    }
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
        { "step: links from the collectives' bytes, by hand", test_step_links },
        { "step: link bytes = the sub-ops' flows, utilization <= 1", test_step_link_bytes },
        { "expert loads per MoE layer, by hand", test_expert_loads },
    };
    return cu_run("utilrep", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
