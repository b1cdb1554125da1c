/* test_coll.c: the step's collectives (sim/coll.c) against closed forms: link rates and
 * latencies as topo.h states them, max-min sharing by hand. */
#include <math.h>
#include <stdlib.h>

#include "coll.h"
#include "cu_run.h"

#define NVL_BPS 100e9
#define NIC_BPS 25e9
#define NVL_LAT 1e-6
#define NIC_LAT 2e-6
#define SW_LAT 0.5e-6

/* Links at line rate x efficiency (e_nvl for NVLink, e_nic for the NICs). */
static struct topo *make_topo_eff(int nodes, int gpn, double e_nvl, double e_nic)
{
    struct cfg_cluster c = { .nodes = nodes, .gpus_per_node = gpn, .nvlink_Bps = NVL_BPS,
                             .nic_Bps = NIC_BPS, .nvlink_eff = e_nvl, .nic_eff = e_nic,
                             .nvlink_lat_s = NVL_LAT, .nic_lat_s = NIC_LAT,
                             .switch_lat_s = SW_LAT, .oversubscription = 1,
                             .route = ROUTE_RAIL };
    struct topo *t = NULL;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    return t;
}

static struct topo *make_topo(int nodes, int gpn)
{
    return make_topo_eff(nodes, gpn, 1, 1);
}

/* Ring of 4 GPUs in one node: each step GPU i sends bytes/4 to i+1 over its own NVLink
 * egress and the next GPU's ingress (no sharing): 2 NVLink hops of latency + bytes/4/B;
 * 2 (n-1) = 6 steps. */
static void test_ring(void)
{
    struct topo *t = make_topo(1, 4);
    struct coll_memo *m;
    CU_ASSERT_EQUAL_FATAL(coll_memo_create(&m), 0);
    double s, bytes = 4e9;
    CU_ASSERT_EQUAL(coll_allreduce(m, t, 1, bytes, REDUCE_RING, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 6 * (2 * NVL_LAT + bytes / 4 / NVL_BPS), 1e-12);
    /* stride 2: rings {0, 2} and {1, 3} of n = 2, at once: 2 steps of bytes / 2 */
    CU_ASSERT_EQUAL(coll_allreduce(m, t, 2, bytes, REDUCE_RING, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 2 * (2 * NVL_LAT + bytes / 2 / NVL_BPS), 1e-12);
    /* stride 4: one GPU per ring, nothing to reduce; stride 3 does not divide 4 */
    CU_ASSERT_EQUAL(coll_allreduce(m, t, 4, bytes, REDUCE_RING, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 0, 0);
    CU_ASSERT_EQUAL(coll_allreduce(m, t, 3, bytes, REDUCE_RING, &s), -EINVAL);
    coll_memo_free(m);
    topo_free(t);
}

/* Tree over n = 4: 2 x (the whole buffer to a neighbour) + 2 (log2 4 - 1) latencies. */
static void test_tree(void)
{
    struct topo *t = make_topo(1, 4);
    struct coll_memo *m;
    CU_ASSERT_EQUAL_FATAL(coll_memo_create(&m), 0);
    double s, bytes = 1e9;
    CU_ASSERT_EQUAL(coll_allreduce(m, t, 1, bytes, REDUCE_TREE, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 2 * (2 * NVL_LAT + bytes / NVL_BPS) + 2 * 1 * 2 * NVL_LAT, 1e-12);
    coll_memo_free(m);
    topo_free(t);
}

/* Two nodes of 2 GPUs, rail routes: 0 -> 2 and 1 -> 3 use their own NICs: each ends at
 * latency (2 NIC + 1 switch) + bytes / NIC. 0 -> 2 and 1 -> 2 share GPU 2's NIC ingress
 * (1 -> 2 is not on 2's rail: rail routing still goes NIC to NIC): half the rate each,
 * both end at latency + 2 bytes / NIC. */
static void test_pairs(void)
{
    struct topo *t = make_topo(2, 2);
    double bytes = 1e8, end[2], lat = 2 * NIC_LAT + SW_LAT;
    int src[2] = { 0, 1 }, dst[2] = { 2, 3 };
    CU_ASSERT_EQUAL(coll_pairs(t, src, dst, 2, bytes, end), 0);
    CU_ASSERT_DOUBLE_EQUAL(end[0], lat + bytes / NIC_BPS, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(end[1], lat + bytes / NIC_BPS, 1e-12);
    int dst2[2] = { 2, 2 };
    CU_ASSERT_EQUAL(coll_pairs(t, src, dst2, 2, bytes, end), 0);
    CU_ASSERT_DOUBLE_EQUAL(end[0], lat + 2 * bytes / NIC_BPS, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(end[1], lat + 2 * bytes / NIC_BPS, 1e-12);
    int same[1] = { 1 };
    CU_ASSERT_EQUAL(coll_pairs(t, same, same, 1, bytes, end), -EINVAL);
    topo_free(t);
}

/* The same matrix on the same topology is simulated once; another topology is not a
 * hit. The result is the a2a's: one 1e9 B flow 0 -> 1 in a node, 2 NVLink hops + 1e9/B. */
/* One flow alone on its path, with efficiency e: lat + bytes / (e x line rate) of the
 * path's tier. Over NVLink (GPU 0 -> 1 of a node): 2 NVLink hops; over the NICs (GPU 0
 * -> GPU 2, same rail on the next node): 2 NICs + 1 switch. e = 1 is the line rate. */
static void test_pair_efficiency(void)
{
    const double e[] = { 1, 0.836, 0.5, 0.98 };
    double bytes = 1e8, end;
    for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
        struct topo *nvl = make_topo_eff(1, 2, e[i], 1), *nic = make_topo_eff(2, 2, 1, e[i]);
        int a = 0, b = 1, c = 2;
        CU_ASSERT_EQUAL(coll_pairs(nvl, &a, &b, 1, bytes, &end), 0);
        CU_ASSERT_DOUBLE_EQUAL(end, 2 * NVL_LAT + bytes / (e[i] * NVL_BPS), 1e-12);
        CU_ASSERT_EQUAL(coll_pairs(nic, &a, &c, 1, bytes, &end), 0);
        CU_ASSERT_DOUBLE_EQUAL(end, 2 * NIC_LAT + SW_LAT + bytes / (e[i] * NIC_BPS), 1e-12);
        topo_free(nvl);
        topo_free(nic);
    }
}

/* The latest GPU's finish of a uniform all-to-all of s bytes per pair. */
static double alltoall_s(const struct topo *t, double s)
{
    struct coll_memo *m;
    struct traffic x;
    const double *fin;
    double worst = 0;
    CU_ASSERT_EQUAL_FATAL(coll_memo_create(&m), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&x, t->gpus, (uint64_t)s), 0);
    CU_ASSERT_EQUAL_FATAL(coll_run(m, t, &x, &fin), 0);
    for (int g = 0; g < t->gpus; g++)
        worst = fmax(worst, fin[g]);
    traffic_free(&x);
    coll_memo_free(m);
    return worst;
}

/* Uniform all-to-all, S per pair, rail routes. One node of 4: each NVLink egress carries
 * 3 flows at B/3 from 2 NVLink latencies on: 2 L + 3 S / (e B). Two nodes of 4: NIC tx
 * carries 4 flows (the other node's GPUs) from 2 NIC + 1 switch latency: 4 S / (e nic);
 * NVLink's 3 S / B = 3e-5 s is far below the NICs' 4 S / nic = 1.6e-4 s, so the NICs
 * bound the time and the time past the latency scales as 1 / e_nic alone: NVLink's
 * efficiency does not move it (while its legs still finish first). */
static void test_alltoall_efficiency(void)
{
    const double S = 1e6, e = 0.5;
    double lat_nvl = 2 * NVL_LAT, lat_nic = 2 * NIC_LAT + SW_LAT;
    struct topo *one = make_topo_eff(1, 4, 1, 1), *one_e = make_topo_eff(1, 4, e, 1);
    double t1 = alltoall_s(one, S), te = alltoall_s(one_e, S);
    CU_ASSERT_DOUBLE_EQUAL(t1, lat_nvl + 3 * S / NVL_BPS, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(te, lat_nvl + 3 * S / (e * NVL_BPS), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL((te - lat_nvl) / (t1 - lat_nvl), 1 / e, 1e-9);
    struct topo *two = make_topo_eff(2, 4, 1, 1), *two_e = make_topo_eff(2, 4, 1, e);
    struct topo *two_nvl = make_topo_eff(2, 4, e, 1);
    t1 = alltoall_s(two, S);
    te = alltoall_s(two_e, S);
    CU_ASSERT_DOUBLE_EQUAL(t1, lat_nic + 4 * S / NIC_BPS, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(te, lat_nic + 4 * S / (e * NIC_BPS), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL((te - lat_nic) / (t1 - lat_nic), 1 / e, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(alltoall_s(two_nvl, S), t1, 1e-12);
    topo_free(one);
    topo_free(one_e);
    topo_free(two);
    topo_free(two_e);
    topo_free(two_nvl);
}

static void test_memo(void)
{
    struct topo *t1 = make_topo(1, 2), *t2 = make_topo(1, 2);
    struct coll_memo *m;
    CU_ASSERT_EQUAL_FATAL(coll_memo_create(&m), 0);
    struct traffic tr;
    CU_ASSERT_EQUAL_FATAL(traffic_create(&tr, 2), 0);
    tr.bytes[1] = 1000000000;
    const double *f1, *f2, *f3;
    int sim, reu;
    CU_ASSERT_EQUAL(coll_run(m, t1, &tr, &f1), 0);
    CU_ASSERT_EQUAL(coll_run(m, t1, &tr, &f2), 0);
    CU_ASSERT_PTR_EQUAL(f1, f2);
    CU_ASSERT_DOUBLE_EQUAL(f1[0], 2 * NVL_LAT + 1e9 / NVL_BPS, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(f1[1], 2 * NVL_LAT + 1e9 / NVL_BPS, 1e-12);
    CU_ASSERT_EQUAL(coll_run(m, t2, &tr, &f3), 0);
    tr.bytes[1] = 1;          /* a different matrix */
    CU_ASSERT_EQUAL(coll_run(m, t1, &tr, &f3), 0);
    coll_counts(m, &sim, &reu);
    CU_ASSERT_EQUAL(sim, 3);
    CU_ASSERT_EQUAL(reu, 1);
    traffic_free(&tr);
    coll_memo_free(m);
    topo_free(t1);
    topo_free(t2);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "ring all-reduce: 2(n-1) steps of bytes/n", test_ring },
        { "tree all-reduce", test_tree },
        { "point-to-point sends, alone and sharing an ingress", test_pairs },
        { "one flow: lat + bytes / (efficiency x line rate)", test_pair_efficiency },
        { "uniform all-to-all: 1 / efficiency of the bottleneck tier", test_alltoall_efficiency },
        { "memo: one simulation per (topology, matrix)", test_memo },
    };
    return cu_run("coll", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
