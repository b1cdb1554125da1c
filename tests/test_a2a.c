/* test_a2a.c: whole collectives through the engine, against closed forms. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <string.h>

#include "a2a.h"
#include "cu_run.h"

#define S 1048576.0            /* 1 MiB per pair */
#define NVL 450e9
#define NIC 50e9
#define L_NVL 1e-6
#define L_NIC 2e-6
#define L_SW 0.5e-6

static struct topo *mk_topo(int nodes, int gpn)
{
    struct cfg_cluster c;
    memset(&c, 0, sizeof(c));
    c.nodes = nodes;
    c.gpus_per_node = gpn;
    c.nvlink_Bps = NVL;
    c.nic_Bps = NIC;
    c.nvlink_eff = 1;
    c.nic_eff = 1;
    c.nvlink_lat_s = L_NVL;
    c.nic_lat_s = L_NIC;
    c.switch_lat_s = L_SW;
    c.oversubscription = 1;
    c.route = ROUTE_RAIL;
    struct topo *t = NULL;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    return t;
}

/* Uniform all-to-all on one node of G = 8: each NVLink egress carries 7 flows of S at
 * B/7 each, so every flow ends at 2 L_nvl + 7 S / B_nvl. The diagonal stays local. */
static void test_one_node(void)
{
    struct topo *t = mk_topo(1, 8);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 8, (uint64_t)S), 0);
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
    double want = 2 * L_NVL + 7 * S / NVL;
    CU_ASSERT_EQUAL(r.nflows, 56);
    CU_ASSERT_DOUBLE_EQUAL(r.time_s, want, want * 1e-9);
    for (int g = 0; g < 8; g++) {
        CU_ASSERT_DOUBLE_EQUAL(r.recv_finish_s[g], want, want * 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r.send_finish_s[g], want, want * 1e-9);
    }
    CU_ASSERT_EQUAL(r.local_bytes, 8 * (uint64_t)S);
    CU_ASSERT_EQUAL(r.nvlink_bytes, 56 * (uint64_t)S);
    CU_ASSERT_EQUAL(r.net_bytes, 0);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

/* 4 nodes x 8, rail-direct: each NIC egress carries the 24 inter-node flows, at
 * 50/24 GB/s each (every NIC ingress also has 24), so the collective ends at
 * 2 L_nic + L_sw + 24 S / B_nic; the 7 NVLink flows end at 2 L_nvl + 7 S / B_nvl. */
static void test_four_nodes(void)
{
    struct topo *t = mk_topo(4, 8);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 32, (uint64_t)S), 0);
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
    double want = 2 * L_NIC + L_SW + 24 * S / NIC;
    double nvl = 2 * L_NVL + 7 * S / NVL;
    CU_ASSERT_DOUBLE_EQUAL(r.time_s, want, want * 1e-9);
    for (int i = 0; i < r.nflows; i++) {
        const struct a2a_flow *f = &r.flows[i];
        double e = f->src / 8 == f->dst / 8 ? nvl : want;
        CU_ASSERT_DOUBLE_EQUAL(f->end_s, e, e * 1e-9);
    }
    CU_ASSERT_EQUAL(r.net_bytes, 32 * 24 * (uint64_t)S);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

/* A hot GPU: on one node of 8, every pair carries S and the 7 others send GPU 0 an extra
 * X. Until 7 S / B every link carries 7 flows at B/7; then only the 7 flows into GPU 0
 * remain, with X each, sharing its ingress at B/7: GPU 0 receives until
 * 2 L + 7 (S + X) / B, the others at 2 L + 7 S / B. The hot GPU's extra time is its
 * extra bytes (7 X) over its ingress bandwidth. */
static void test_hot_gpu(void)
{
    const double X = 3 * S;
    struct topo *t = mk_topo(1, 8);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 8, (uint64_t)S), 0);
    for (int s = 1; s < 8; s++)
        m.bytes[s * 8 + 0] += (uint64_t)X;
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
    double cold = 2 * L_NVL + 7 * S / NVL, hot = cold + 7 * X / NVL;
    CU_ASSERT_DOUBLE_EQUAL(r.recv_finish_s[0], hot, hot * 1e-9);
    for (int g = 1; g < 8; g++)
        CU_ASSERT_DOUBLE_EQUAL(r.recv_finish_s[g], cold, cold * 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(a2a_recv_max_over_mean(&r), 7 * (S + X) / (7 * S + 7 * X / 8), 1e-12);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

/* A phase started at t0 = 1 s reports times relative to t0 and flows at absolute time. */
static void test_offset(void)
{
    struct topo *t = mk_topo(1, 2);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 2), 0);
    m.bytes[1] = 450000;       /* 0 -> 1: 450 kB at 450 GB/s = 1 us, plus 2 us latency */
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 1.0, true), 0);
    CU_ASSERT_DOUBLE_EQUAL(r.time_s, 3e-6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.flows[0].end_s, 1.0 + 3e-6, 1e-15);
    /* the link series: 450 GB/s from the flow's start, 0 from its end */
    const struct a2a_series *s = &r.series[topo_nvl_tx(t, 0)];
    CU_ASSERT_EQUAL_FATAL(s->n, 2);
    CU_ASSERT_DOUBLE_EQUAL(s->s[0].t_s, 1.0 + 2e-6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(s->s[0].use_Bps, NVL, 1e-3);
    CU_ASSERT_DOUBLE_EQUAL(s->s[1].use_Bps, 0, 0);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

/* No traffic: no flows, zero time; a matrix of the wrong size is refused. */
static void test_empty_and_bad(void)
{
    struct topo *t = mk_topo(1, 4);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 4), 0);
    struct a2a_result r;
    CU_ASSERT_EQUAL(a2a_run(&r, t, &m, 0, false), 0);
    CU_ASSERT_EQUAL(r.nflows, 0);
    CU_ASSERT_DOUBLE_EQUAL(r.time_s, 0, 0);
    a2a_free(&r);
    traffic_free(&m);
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 3), 0);
    CU_ASSERT_EQUAL(a2a_run(&r, t, &m, 0, false), -EINVAL);
    traffic_free(&m);
    topo_free(t);
}

/* Batched completions (flow_quantum): on one node of 3 GPUs, GPU 0 sends M = 1 MB to GPU 1
 * and 1.1 M to GPU 2, sharing its NVLink egress at B/2 each from 2 L: the first ends at
 * 2 L + 2 M / B. Exactly, the second then runs alone: 0.1 M at B, done at 2 L + 2.1 M / B.
 * The bound is the egress's 2.1 M / B; a window of q x bound takes the second at its old
 * rate (0.1 M at B/2: 0.2 M / B more) when q x 2.1 >= 0.2, i.e. q = 0.1: done at
 * 2 L + 2.2 M / B; with q = 0.05 the window is too short and the answer the exact one. */
static void test_quantum(void)
{
    struct topo *t = mk_topo(1, 3);
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 3), 0);
    const double M = 1e6;
    m.bytes[1] = 1000000;
    m.bytes[2] = 1100000;
    const double q[] = { 0, 0.05, 0.1 }, extra[] = { 0.1, 0.1, 0.2 };
    for (int i = 0; i < 3; i++) {
        t->flow_quantum = q[i];
        struct a2a_result r;
        CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
        double first = 2 * L_NVL + 2 * M / NVL, want = first + extra[i] * M / NVL;
        CU_ASSERT_DOUBLE_EQUAL(r.flows[0].end_s, first, first * 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r.flows[1].end_s, want, want * 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r.time_s, want, want * 1e-9);
        a2a_free(&r);
    }
    traffic_free(&m);
    topo_free(t);
}

/* A window never reaches past the next flow start: on 2 nodes of 2, GPU 0 sends 450 kB
 * to GPU 1 over NVLink (from 2 L_nvl = 2 us, 1 us at 450 GB/s: done at 3 us), GPU 1 sends
 * 1.8 MB to GPU 0 (4 us: done at 6 us), and GPU 0 sends 1 MB to GPU 2 over the network,
 * which starts at 2 L_nic + L_sw = 4.5 us and takes 20 us at 50 GB/s. A window of
 * 0.9 x the bound (the NIC's 20 us) from 3 us would take the 6 us completion before that
 * start; it stops at 4.5 us instead, and the ends are the exact 3, 6 and 24.5 us. */
static void test_quantum_stops_at_start(void)
{
    struct topo *t = mk_topo(2, 2);
    t->flow_quantum = 0.9;
    struct traffic m;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&m, 4), 0);
    m.bytes[1] = 450000;
    m.bytes[2] = 1000000;
    m.bytes[4] = 1800000;
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
    CU_ASSERT_DOUBLE_EQUAL(r.flows[0].end_s, 3e-6, 1e-15);      /* (src, dst) order */
    CU_ASSERT_DOUBLE_EQUAL(r.flows[1].end_s, 24.5e-6, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.flows[2].end_s, 6e-6, 1e-15);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "uniform, one node", test_one_node },
        { "uniform, four nodes", test_four_nodes },
        { "hot GPU", test_hot_gpu },
        { "start offset and link series", test_offset },
        { "empty and bad", test_empty_and_bad },
        { "flow_quantum: batched completions", test_quantum },
        { "flow_quantum: windows stop at starts", test_quantum_stops_at_start },
    };
    return cu_run("a2a", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
