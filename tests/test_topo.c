/* test_topo.c: links, capacities, routes and latencies, checked by hand against topo.h. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "cu_run.h"
#include "topo.h"

static struct cfg_cluster cluster(int nodes, int gpn, enum route_kind route)
{
    struct cfg_cluster c;
    memset(&c, 0, sizeof(c));
    c.nodes = nodes;
    c.gpus_per_node = gpn;
    c.nvlink_Bps = 450e9;
    c.nic_Bps = 50e9;
    c.nvlink_eff = 1;
    c.nic_eff = 1;
    c.nvlink_lat_s = 1e-6;
    c.nic_lat_s = 2e-6;
    c.switch_lat_s = 0.5e-6;
    c.oversubscription = 1;
    c.route = route;
    return c;
}

/* 2 nodes x 4 GPUs: 4 links per GPU, no leaf links; capacities per kind. */
static void test_links(void)
{
    struct cfg_cluster c = cluster(2, 4, ROUTE_RAIL);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    CU_ASSERT_EQUAL(t->gpus, 8);
    CU_ASSERT_EQUAL(t->nlinks, 32);
    CU_ASSERT_EQUAL(t->links[topo_nvl_tx(t, 5)].kind, LINK_NVL_TX);
    CU_ASSERT_EQUAL(t->links[topo_nic_rx(t, 5)].owner, 5);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nvl_rx(t, 3)].cap_Bps, 450e9, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nic_tx(t, 3)].cap_Bps, 50e9, 0);
    char name[32];
    topo_link_name(t, topo_nic_rx(t, 7), name, sizeof(name));
    CU_ASSERT_STRING_EQUAL(name, "gpu7.nic_rx");
    topo_free(t);
}

/* Inside a node: NVLink tx of src, rx of dst; latency 2 NVLink hops = 2 us. */
static void test_route_intra(void)
{
    struct cfg_cluster c = cluster(2, 4, ROUTE_RAIL);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL(topo_route(t, 1, 2, l, &lat), 2);
    CU_ASSERT_EQUAL(l[0], topo_nvl_tx(t, 1));
    CU_ASSERT_EQUAL(l[1], topo_nvl_rx(t, 2));
    CU_ASSERT_DOUBLE_EQUAL(lat, 2e-6, 1e-18);
    topo_free(t);
}

/* Rail-direct 1 -> 6 (node 0 local 1 -> node 1 local 2): NIC tx 1, NIC rx 6;
 * latency NIC + switch + NIC = 2 + 0.5 + 2 = 4.5 us. */
static void test_route_rail(void)
{
    struct cfg_cluster c = cluster(2, 4, ROUTE_RAIL);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL(topo_route(t, 1, 6, l, &lat), 2);
    CU_ASSERT_EQUAL(l[0], topo_nic_tx(t, 1));
    CU_ASSERT_EQUAL(l[1], topo_nic_rx(t, 6));
    CU_ASSERT_DOUBLE_EQUAL(lat, 4.5e-6, 1e-18);
    topo_free(t);
}

/* PXN 1 -> 6: NVLink to GPU 2 (node 0, the destination's rail), then its NIC to 6:
 * nvl_tx 1, nvl_rx 2, nic_tx 2, nic_rx 6; latency 2 + 4.5 = 6.5 us. Same rail (1 -> 5)
 * stays rail-direct. */
static void test_route_pxn(void)
{
    struct cfg_cluster c = cluster(2, 4, ROUTE_PXN);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL_FATAL(topo_route(t, 1, 6, l, &lat), 4);
    CU_ASSERT_EQUAL(l[0], topo_nvl_tx(t, 1));
    CU_ASSERT_EQUAL(l[1], topo_nvl_rx(t, 2));
    CU_ASSERT_EQUAL(l[2], topo_nic_tx(t, 2));
    CU_ASSERT_EQUAL(l[3], topo_nic_rx(t, 6));
    CU_ASSERT_DOUBLE_EQUAL(lat, 6.5e-6, 1e-18);
    CU_ASSERT_EQUAL(topo_route(t, 1, 5, l, &lat), 2);
    CU_ASSERT_EQUAL(l[0], topo_nic_tx(t, 1));
    topo_free(t);
}

/* Hierarchical 1 -> 6: NIC to GPU 5 (node 1, the source's index), then NVLink to 6:
 * nic_tx 1, nic_rx 5, nvl_tx 5, nvl_rx 6; latency 4.5 + 2 = 6.5 us. */
static void test_route_hier(void)
{
    struct cfg_cluster c = cluster(2, 4, ROUTE_HIER);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL_FATAL(topo_route(t, 1, 6, l, &lat), 4);
    CU_ASSERT_EQUAL(l[0], topo_nic_tx(t, 1));
    CU_ASSERT_EQUAL(l[1], topo_nic_rx(t, 5));
    CU_ASSERT_EQUAL(l[2], topo_nvl_tx(t, 5));
    CU_ASSERT_EQUAL(l[3], topo_nvl_rx(t, 6));
    CU_ASSERT_DOUBLE_EQUAL(lat, 6.5e-6, 1e-18);
    topo_free(t);
}

/* 5 nodes of 4 GPUs, leaves of 2 nodes at 2:1: 3 leaves (the last holds one node);
 * uplink = nodes * 4 * 50 GB/s / 2 = 200 GB/s, 100 GB/s for the last. Between leaves a
 * path adds leaf up + leaf down and 2 more switches: 4.5 + 1 = 5.5 us. Within a leaf
 * (node 0 -> node 1) it does not. */
static void test_leaves(void)
{
    struct cfg_cluster c = cluster(5, 4, ROUTE_RAIL);
    c.nodes_per_leaf = 2;
    c.oversubscription = 2;
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    CU_ASSERT_EQUAL(t->leaves, 3);
    CU_ASSERT_EQUAL(t->nlinks, 4 * 20 + 6);
    CU_ASSERT_DOUBLE_EQUAL(t->links[80].cap_Bps, 200e9, 0);
    CU_ASSERT_EQUAL(t->links[80].kind, LINK_LEAF_UP);
    CU_ASSERT_DOUBLE_EQUAL(t->links[85].cap_Bps, 100e9, 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL_FATAL(topo_route(t, 0, 16, l, &lat), 4);
    CU_ASSERT_EQUAL(l[1], 80);           /* leaf 0 up */
    CU_ASSERT_EQUAL(l[2], 85);           /* leaf 2 down */
    CU_ASSERT_DOUBLE_EQUAL(lat, 5.5e-6, 1e-18);
    CU_ASSERT_EQUAL(topo_route(t, 0, 4, l, &lat), 2);
    CU_ASSERT_DOUBLE_EQUAL(lat, 4.5e-6, 1e-18);
    topo_free(t);
}

/* Capacities are line rate x efficiency on every tier: NVLink 450 x 0.75, NIC 50 x 0.5;
 * a leaf's uplink of 2 nodes of 4 NICs at 2:1 is 2 x 4 x 25 / 2 = 100 GB/s (the
 * oversubscription stays a ratio of achieved rates). Efficiency 1 is the line rate
 * exactly (test_links). Latencies do not change. */
static void test_efficiency(void)
{
    struct cfg_cluster c = cluster(4, 4, ROUTE_RAIL);
    c.nvlink_eff = 0.75;
    c.nic_eff = 0.5;
    c.nodes_per_leaf = 2;
    c.oversubscription = 2;
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c), 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nvl_tx(t, 3)].cap_Bps, 337.5e9, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nvl_rx(t, 9)].cap_Bps, 337.5e9, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nic_tx(t, 3)].cap_Bps, 25e9, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[topo_nic_rx(t, 9)].cap_Bps, 25e9, 0);
    CU_ASSERT_EQUAL(t->links[4 * 16].kind, LINK_LEAF_UP);
    CU_ASSERT_DOUBLE_EQUAL(t->links[4 * 16].cap_Bps, 100e9, 0);
    CU_ASSERT_DOUBLE_EQUAL(t->links[4 * 16 + 3].cap_Bps, 100e9, 0);
    int l[TOPO_MAX_HOPS];
    double lat;
    CU_ASSERT_EQUAL(topo_route(t, 0, 12, l, &lat), 4);
    CU_ASSERT_DOUBLE_EQUAL(lat, 2 * 2e-6 + 3 * 0.5e-6, 1e-18);
    topo_free(t);
}

/* An efficiency outside (0, 1], or NaN, is refused like a zero bandwidth. */
static void test_bad_efficiency(void)
{
    const double bad[] = { 0, -0.5, 1.0000001, NAN };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cfg_cluster c = cluster(2, 4, ROUTE_RAIL);
        struct topo *t = NULL;
        c.nvlink_eff = bad[i];
        CU_ASSERT_EQUAL(topo_create(&t, &c), -EINVAL);
        CU_ASSERT_PTR_NULL(t);
        c = cluster(2, 4, ROUTE_RAIL);
        c.nic_eff = bad[i];
        CU_ASSERT_EQUAL(topo_create(&t, &c), -EINVAL);
        CU_ASSERT_PTR_NULL(t);
    }
}

/* Zero bandwidth is refused (config rejects it too, this is the library's own guard). */
static void test_bad(void)
{
    struct cfg_cluster c = cluster(1, 8, ROUTE_RAIL);
    c.nic_Bps = 0;
    struct topo *t = NULL;
    CU_ASSERT_EQUAL(topo_create(&t, &c), -EINVAL);
    CU_ASSERT_PTR_NULL(t);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "links", test_links },
        { "route inside a node", test_route_intra },
        { "route rail", test_route_rail },
        { "route pxn", test_route_pxn },
        { "route hierarchical", test_route_hier },
        { "leaves and oversubscription", test_leaves },
        { "capacities at line rate x efficiency", test_efficiency },
        { "efficiency outside (0, 1]", test_bad_efficiency },
        { "bad cluster", test_bad },
    };
    return cu_run("topo", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
