/* test_hier.c: the two-level (route = hierarchical) dispatch and combine of traffic.h,
 * timed through a2a.h, and the per-all-to-all precision of config.h.
 *
 * Every expected byte count is worked by hand from the legs traffic.h states (a token
 * crosses the network once per remote node, to the relay with its sender's local index,
 * then one NVLink hop per target GPU other than that relay); every expected time from the
 * fluid model (a flow starts after its path's latency and shares its links max-min
 * fairly) with the legs running concurrently. Where a routing is drawn, the oracle is
 * its own counts (src_node_tokens, pair_tokens), never the program's byte output. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "a2a.h"
#include "balance.h"
#include "config.h"
#include "cu_run.h"
#include "ini_text.h"
#include "placement.h"
#include "routing.h"
#include "rtrace.h"
#include "topo.h"
#include "traffic.h"

#define NVL 160e9
#define NIC 50e9
#define L_NVL 0.5e-6
#define L_NIC 1e-6
#define L_SW 0.3e-6
#define REL 1e-9

static struct config hand_config(int nodes, int gpn, enum route_kind route, int hidden,
                                 double dbpe, double cbpe)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.cluster.nodes = nodes;
    c.cluster.gpus_per_node = gpn;
    c.cluster.nvlink_Bps = NVL;
    c.cluster.nic_Bps = NIC;
    c.cluster.nvlink_lat_s = L_NVL;
    c.cluster.nic_lat_s = L_NIC;
    c.cluster.switch_lat_s = L_SW;
    c.cluster.oversubscription = 1;
    c.cluster.nvlink_eff = 1;
    c.cluster.nic_eff = 1;
    c.cluster.route = route;
    c.model.hidden = hidden;
    c.model.dispatch_bytes_per_elem = dbpe;
    c.model.combine_bytes_per_elem = cbpe;
    return c;
}

static uint64_t at(const struct traffic *m, int s, int d)
{
    return m->bytes[(size_t)s * m->gpus + d];
}

/* ---- one token by hand ---- */

/* 4 nodes x 4 GPUs, one EP group. One token on GPU 1 (node 0, local index 1) with
 * experts on GPUs 1 and 2 (its own node), 4, 5, 6 (node 1), 10, 11 (node 2) and 15
 * (node 3): k = 8 experts on m = 3 remote nodes. Its relays are the local-index-1 GPUs 5,
 * 9 and 13. With V = hidden x bytes per element:
 *   network: 1 -> 5, 1 -> 9, 1 -> 13, V each (m = 3 copies; rail: 6, one per remote GPU);
 *   NVLink:  1 -> 2 (own node), 5 -> 4, 5 -> 6, 9 -> 10, 9 -> 11, 13 -> 15, V each: one
 *            hop per target GPU other than its relay (5 is a target and keeps it);
 *   kept:    V on GPU 1. */
static void one_token(struct routing *r, uint64_t *pairs, uint64_t *nodes)
{
    static const int targets[] = { 1, 2, 4, 5, 6, 10, 11, 15 };
    memset(pairs, 0, 16 * 16 * sizeof(*pairs));
    memset(nodes, 0, 16 * 4 * sizeof(*nodes));
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
        pairs[1 * 16 + targets[i]] = 1;
    for (int n = 0; n < 4; n++)
        nodes[1 * 4 + n] = 1;
    *r = (struct routing){ .gpus = 16, .experts = 16, .ep = 16, .top_k = 8,
                           .gpus_per_node = 4, .nodes = 4, .pair_tokens = pairs,
                           .src_node_tokens = nodes };
}

static void test_one_token_legs(void)
{
    uint64_t pairs[256], nodes[64];
    struct routing r;
    one_token(&r, pairs, nodes);
    const double h = 7168, b = 2;
    const uint64_t V = (uint64_t)(h * b);
    struct config c = hand_config(4, 4, ROUTE_HIER, (int)h, b, b);
    struct traffic d, cb;
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
    static const int legs[][2] = { { 1, 5 }, { 1, 9 }, { 1, 13 }, { 1, 2 }, { 5, 4 },
                                   { 5, 6 }, { 9, 10 }, { 9, 11 }, { 13, 15 }, { 1, 1 } };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof(legs) / sizeof(legs[0]); i++) {
        CU_ASSERT_EQUAL(at(&d, legs[i][0], legs[i][1]), V);
        CU_ASSERT_EQUAL(at(&cb, legs[i][1], legs[i][0]), V);   /* the combine: reversed */
    }
    for (int i = 0; i < 256; i++)
        total += d.bytes[i];
    CU_ASSERT_EQUAL(total, 10 * V);                           /* and nothing else */

    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    struct a2a_result a;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &d, 0, false), 0);
    CU_ASSERT_EQUAL(a.net_bytes, 3 * V);                      /* m network copies */
    CU_ASSERT_EQUAL(a.nvlink_bytes, 6 * V);                   /* 5 forwards + 1 own node */
    CU_ASSERT_EQUAL(a.local_bytes, V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nic_tx(t, 1)], 3 * V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_tx(t, 1)], V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_tx(t, 5)], 2 * V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_tx(t, 9)], 2 * V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_tx(t, 13)], V);
    static const int rx_nic[] = { 5, 9, 13 }, rx_nvl[] = { 2, 4, 6, 10, 11, 15 };
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(a.link_bytes[topo_nic_rx(t, rx_nic[i])], V);
        CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_rx(t, rx_nic[i])], 0);
        CU_ASSERT_EQUAL(a.link_bytes[topo_nic_tx(t, rx_nic[i])], 0);
    }
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_rx(t, rx_nvl[i])], V);
        CU_ASSERT_EQUAL(a.link_bytes[topo_nic_rx(t, rx_nvl[i])], 0);
    }
    /* Concurrent legs: the 3 network legs share GPU 1's NIC (NIC/3 each), the relays'
     * two forwards share their NVLink egress (NVL/2 each); the tiers share no link, so
     *   time = max(2 L_nic + L_sw + 3V / NIC, 2 L_nvl + 2V / NVL)   (the first here). */
    double want = fmax(2 * L_NIC + L_SW + 3 * V / NIC, 2 * L_NVL + 2 * V / NVL);
    CU_ASSERT_DOUBLE_EQUAL(a.time_s, want, REL * want);
    a2a_free(&a);
    /* The combine is the mirror: the same links reversed, the same rates and latencies. */
    CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &cb, 0, false), 0);
    CU_ASSERT_EQUAL(a.net_bytes, 3 * V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nic_rx(t, 1)], 3 * V);
    CU_ASSERT_EQUAL(a.link_bytes[topo_nvl_rx(t, 5)], 2 * V);
    CU_ASSERT_DOUBLE_EQUAL(a.time_s, want, REL * want);
    a2a_free(&a);
    topo_free(t);
    traffic_free(&d);
    traffic_free(&cb);
}

/* The same token under rail and pxn: one entry per GPU pair, pair_tokens x V, as before
 * (6 remote pairs cross the network, 6V). */
static void test_one_token_rail_pxn(void)
{
    uint64_t pairs[256], nodes[64];
    struct routing r;
    one_token(&r, pairs, nodes);
    const enum route_kind routes[] = { ROUTE_RAIL, ROUTE_PXN };
    for (int i = 0; i < 2; i++) {
        struct config c = hand_config(4, 4, routes[i], 100, 2, 2);
        struct traffic d, cb;
        CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
        for (int s = 0; s < 16; s++)
            for (int x = 0; x < 16; x++) {
                CU_ASSERT_EQUAL(at(&d, s, x), pairs[s * 16 + x] * 200);
                CU_ASSERT_EQUAL(at(&cb, x, s), pairs[s * 16 + x] * 200);
            }
        struct topo *t;
        CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
        struct a2a_result a;
        CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &d, 0, false), 0);
        CU_ASSERT_EQUAL(a.net_bytes, 6 * 200);
        a2a_free(&a);
        topo_free(t);
        traffic_free(&d);
        traffic_free(&cb);
    }
}

/* Refused: no src_node_tokens, gpus_per_node that differs, and an EP group of 6 GPUs on
 * nodes of 4 (its relay on the second node could be outside the group). */
static void test_hier_bad(void)
{
    uint64_t pairs[256], nodes[64];
    struct routing r;
    one_token(&r, pairs, nodes);
    struct config c = hand_config(4, 4, ROUTE_HIER, 100, 2, 2);
    struct traffic d, cb;
    struct routing bad = r;
    bad.src_node_tokens = NULL;
    CU_ASSERT_EQUAL(traffic_moe(&d, &cb, &bad, &c), -EINVAL);
    CU_ASSERT_PTR_NULL(d.bytes);
    bad = r;
    bad.gpus_per_node = 8;
    CU_ASSERT_EQUAL(traffic_moe(&d, &cb, &bad, &c), -EINVAL);
    bad = r;
    bad.ep = 6;
    CU_ASSERT_EQUAL(traffic_moe(&d, &cb, &bad, &c), -EINVAL);
    bad.ep = 2;                                  /* inside a node: fine */
    CU_ASSERT_EQUAL(traffic_moe(&d, &cb, &bad, &c), 0);
    traffic_free(&d);
    traffic_free(&cb);
}

/* ---- drawn routings ---- */

static int load(struct config *c, const char *text, const char *const *sets, int nsets)
{
    return ini_text_load(c, text, sets, nsets);
}

/* top_k = experts: every token reaches every GPU of 2 nodes x 2 GPUs (routing in closed
 * form). With T tokens per GPU and dedup, src_node_tokens[s][n] = T for both nodes; legs
 * (by hand, e.g. from GPU 0): 0 -> 1 (own node) T, 0 -> 2 (network) T, relay 2 -> 3 T;
 * and symmetrically, so entry [0][1] carries 0's own T and the T it forwards for GPU 2:
 *   dispatch[s][own-node peer] = 2T, dispatch[s][same-index remote] = T, others 0.
 * Without dedup (2 experts per GPU): pair_tokens 2T, src_node_tokens 4T (per kept
 * assignment), and every leg doubles. */
static const char all4[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 2\nroute = hierarchical\n"
    "[model]\nhidden = 64\nexperts = 8\ntop_k = 8\n"
    "[routing]\ntokens_per_gpu = 10\n";

static void test_all_experts(void)
{
    for (int dedup = 1; dedup >= 0; dedup--) {
        struct config c;
        const char *sets[1] = { dedup ? "routing.dedup=on" : "routing.dedup=off" };
        CU_ASSERT_EQUAL_FATAL(load(&c, all4, sets, 1), 0);
        struct routing r;
        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 1), 0);
        uint64_t T = 10, V = 64 * 2;
        for (int s = 0; s < 4; s++)
            for (int n = 0; n < 2; n++)
                CU_ASSERT_EQUAL(r.src_node_tokens[s * 2 + n], dedup ? T : 4 * T);
        struct traffic d, cb;
        CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
        uint64_t unit = (dedup ? 1 : 2) * T * V;
        for (int s = 0; s < 4; s++) {
            int peer = s ^ 1, remote = (s + 2) % 4, other = remote ^ 1;
            CU_ASSERT_EQUAL(at(&d, s, s), unit);
            CU_ASSERT_EQUAL(at(&d, s, peer), 2 * unit);
            CU_ASSERT_EQUAL(at(&d, s, remote), (dedup ? 1 : 2) * unit);
            CU_ASSERT_EQUAL(at(&d, s, other), 0);
        }
        traffic_free(&d);
        traffic_free(&cb);
        routing_free(&r);
    }
}

/* src_node_tokens against pair_tokens on every routing path (fast draws, capacity,
 * node limit, replicas, trace), 4 nodes x 4 GPUs, zipf. For source s and node n with
 * pair counts p_d over n's GPUs d:
 *   dedup:   max_d p_d <= node <= sum_d p_d (a token reaching n reaches one GPU or more
 *            there), and the nodes summed over all (s, n) are the routing's node visits,
 *            nodes_per_token x the tokens routed;
 *   no dedup or a trace: node = sum_d p_d (both count kept assignments). */
static const char paths16[] =
    "[cluster]\nnodes = 4\ngpus_per_node = 4\nroute = hierarchical\n"
    "[model]\nhidden = 64\nexperts = 32\ntop_k = 6\n"
    "[routing]\ntokens_per_gpu = 300\ndistribution = zipf\nzipf_s = 1.2\n";

static void check_node_counts(const struct routing *r, bool dedup)
{
    uint64_t visits = 0;
    int bad = 0;
    for (int s = 0; s < 16; s++)
        for (int n = 0; n < 4; n++) {
            uint64_t sum = 0, max = 0, node = r->src_node_tokens[s * 4 + n];
            for (int d = n * 4; d < n * 4 + 4; d++) {
                uint64_t p = r->pair_tokens[s * 16 + d];
                sum += p;
                max = p > max ? p : max;
            }
            bad += dedup ? !(max <= node && node <= sum) : node != sum;
            visits += node;
        }
    CU_ASSERT_EQUAL(bad, 0);
    if (dedup)
        CU_ASSERT_DOUBLE_EQUAL((double)visits, r->nodes_per_token * 16 * 300, 1e-6);
}

static void test_node_counts(void)
{
    static const char *const cases[][3] = {
        { "routing.dedup=on", "balance.capacity_factor=0", "routing.max_nodes=0" },
        { "routing.dedup=off", "balance.capacity_factor=0", "routing.max_nodes=0" },
        { "routing.dedup=on", "balance.capacity_factor=1.1", "routing.max_nodes=0" },
        { "routing.dedup=on", "balance.capacity_factor=0", "routing.max_nodes=2" },
        { "routing.dedup=off", "balance.capacity_factor=1.1", "routing.max_nodes=2" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        CU_ASSERT_EQUAL_FATAL(load(&c, paths16, cases[i], 3), 0);
        struct routing r;
        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 5), 0);
        check_node_counts(&r, c.routing.dedup);
        routing_free(&r);
    }
    /* replicas: eplb with 16 redundant experts, one slot more per GPU */
    struct config c;
    const char *rep[3] = { "balance.placement=eplb", "balance.redundant_experts=16",
                           "routing.max_nodes=3" };
    CU_ASSERT_EQUAL_FATAL(load(&c, paths16, rep, 3), 0);
    struct routing r;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 5), 0);
    struct placement pl;
    bool placed;
    struct routing_in in = { .c = &c, .seed = 5 };
    CU_ASSERT_EQUAL_FATAL(balance_place_for(&in, &pl, &placed), 0);
    CU_ASSERT_FATAL(placed);
    routing_free(&r);
    in.pl = &pl;
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    check_node_counts(&r, true);
    /* a trace of the same demand: counts per kept assignment */
    struct rtrace t;
    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 1, 1, 16, 32), 0);
    memcpy(t.tokens, r.src_demand, 16 * 32 * sizeof(*t.tokens));
    routing_free(&r);
    c.routing.distribution = DIST_TRACE;
    c.routing.max_nodes = 0;
    in.trace = &t;
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    check_node_counts(&r, false);
    routing_free(&r);
    rtrace_free(&t);
    placement_free(&pl);
}

/* The 64-GPU skewed case: 8 nodes x 8 GPUs (H800-like links), 64 experts, top-8, zipf
 * popularity, node-limited routing with M = 1 .. 4. */
static const char skew64[] =
    "[cluster]\nnodes = 8\ngpus_per_node = 8\nnvlink_GBps = 160\nnic_GBps = 50\n"
    "nvlink_latency_us = 0.5\nnic_latency_us = 1\nswitch_latency_us = 0.3\n"
    "route = hierarchical\n"
    "[model]\nhidden = 1024\nexperts = 64\ntop_k = 8\n"
    "[routing]\ntokens_per_gpu = 512\ndistribution = zipf\nzipf_s = 1.0\n";

struct phase {
    double d_s, c_s;          /* dispatch and combine times */
    uint64_t d_net, c_net, d_nvl, c_nvl, d_bytes, c_bytes;
    uint64_t node_copies;     /* oracle: sum of src_node_tokens to remote nodes */
    double c_nvl_leg_s;       /* the combine's busiest NVLink link: bytes / capacity */
};

static void run_phase(const char *const *sets, int nsets, struct phase *p)
{
    struct config c;
    memset(p, 0, sizeof(*p));
    CU_ASSERT_EQUAL_FATAL(load(&c, skew64, sets, nsets), 0);
    struct routing r;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 1), 0);
    for (int s = 0; s < 64; s++)
        for (int n = 0; n < 8; n++)
            if (n != s / 8)
                p->node_copies += r.src_node_tokens[s * 8 + n];
    struct traffic d, cb;
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
    struct topo *t;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    struct a2a_result a;
    CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &d, 0, false), 0);
    p->d_s = a.time_s;
    p->d_net = a.net_bytes;
    p->d_nvl = a.nvlink_bytes;
    p->d_bytes = a.local_bytes + a.remote_bytes;
    a2a_free(&a);
    CU_ASSERT_EQUAL_FATAL(a2a_run(&a, t, &cb, 0, false), 0);
    p->c_s = a.time_s;
    p->c_net = a.net_bytes;
    p->c_nvl = a.nvlink_bytes;
    p->c_bytes = a.local_bytes + a.remote_bytes;
    for (int l = 0; l < t->nlinks; l++)
        if (topo_link_is_nvlink(t, l))
            p->c_nvl_leg_s = fmax(p->c_nvl_leg_s, (double)a.link_bytes[l] / t->links[l].cap_Bps);
    p->c_nvl_leg_s += 2 * c.cluster.nvlink_lat_s;
    a2a_free(&a);
    topo_free(t);
    traffic_free(&d);
    traffic_free(&cb);
    routing_free(&r);
}

/* Node-limited routing shortens the two-level dispatch: a token's network copies are its
 * remote nodes (at most M), so fewer nodes, fewer copies on the NICs. Network bytes are
 * exactly the routing's remote (token, node) pairs x hidden x 2; the time falls strictly
 * from M = 4 to M = 1. */
static void test_max_nodes(void)
{
    double prev = INFINITY;
    uint64_t prev_net = UINT64_MAX;
    for (int m = 1; m <= 4; m++) {
        char set[64];
        snprintf(set, sizeof(set), "routing.max_nodes=%d", m);
        const char *sets[1] = { set };
        struct phase p;
        run_phase(sets, 1, &p);
        CU_ASSERT_EQUAL(p.d_net, p.node_copies * 1024 * 2);
        /* every token reaches at most m nodes, at most m - 1 of them remote */
        CU_ASSERT(p.node_copies <= (uint64_t)64 * 512 * (uint64_t)m);
        if (m > 1) {
            CU_ASSERT(p.d_s > prev);
            CU_ASSERT(p.d_net > prev_net);
        }
        fprintf(stderr, "  M = %d: dispatch %.3f us, network %llu B\n", m, p.d_s * 1e6,
                (unsigned long long)p.d_net);
        prev = p.d_s;
        prev_net = p.d_net;
    }
}

/* The combine at the dispatch's precision moves the same bytes on each tier (one vector
 * per (token, node) on the network, after the relay's reduction: the routing's remote
 * node pairs again) and, being the dispatch's legs reversed on links of equal capacity
 * and latency, takes the same time. At DeepSeek-V3's precisions (FP8 with scales out,
 * BF16 back) it takes no more than the dispatch x (combine bytes / dispatch bytes) + the
 * NVLink leg (issue bound), and in this model no more than the scaled dispatch itself:
 * every leg scales by the same factor, so the max-min rates do and each leg's transfer
 * time scales while its latency does not. */
static void test_combine_mirror(void)
{
    struct phase p;
    const char *sets[1] = { "routing.max_nodes=4" };
    run_phase(sets, 1, &p);
    CU_ASSERT_EQUAL(p.c_net, p.d_net);
    CU_ASSERT_EQUAL(p.c_net, p.node_copies * 1024 * 2);
    CU_ASSERT_EQUAL(p.c_nvl, p.d_nvl);
    CU_ASSERT_DOUBLE_EQUAL(p.c_s, p.d_s, 1e-9 * p.d_s);

    const char *ds[3] = { "routing.max_nodes=4", "model.dispatch_dtype=fp8",
                          "model.combine_dtype=bf16" };
    run_phase(ds, 3, &p);
    double ratio = (double)p.c_bytes / (double)p.d_bytes;
    CU_ASSERT_DOUBLE_EQUAL(ratio, 2 / 1.03125, 1e-6);
    CU_ASSERT(p.c_s <= p.d_s * ratio + p.c_nvl_leg_s);
    CU_ASSERT(p.c_s <= p.d_s * ratio * (1 + 1e-9));
    fprintf(stderr, "  FP8 dispatch %.3f us, BF16 combine %.3f us (ratio %.4f)\n",
            p.d_s * 1e6, p.c_s * 1e6, ratio);
}

/* ---- precision ---- */

static const char small[] = "[model]\nhidden = 7168\nexperts = 8\ntop_k = 2\n";

/* FP8 carries one 4-byte scale per fp8_block elements: 1 + 4/128 = 1.03125 bytes per
 * element at the default block (exact in binary), 1 + 4/64 at 64; with hidden 100 and
 * block 128 one partial block: (100 + 4) / 100. BF16 and FP16 2, FP32 4. */
static void test_dtype_bytes(void)
{
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_FP8, 7168, 128), 1 + 4.0 / 128, 0);
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_FP8, 7168, 64), 1 + 4.0 / 64, 0);
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_FP8, 100, 128), 104.0 / 100, 0);
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_BF16, 7168, 128), 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_FP16, 7168, 128), 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(config_dtype_bytes(DTYPE_FP32, 7168, 128), 4, 0);
    CU_ASSERT(isnan(config_dtype_bytes(DTYPE_FP8, 7168, 0)));
    CU_ASSERT(isnan(config_dtype_bytes(DTYPE_FP8, 0, 128)));
    CU_ASSERT(isnan(config_dtype_bytes((enum dtype_kind)9, 7168, 128)));
    CU_ASSERT_STRING_EQUAL(config_dtype_name(DTYPE_FP8), "fp8");
}

/* The dispatch of N tokens x 7168 elements in FP8 with scales is N x 7168 x (1 + 4/128)
 * = N x 7392 bytes, exactly: here 3 tokens from GPU 0 to GPU 1 and 5 back. */
static void test_fp8_traffic(void)
{
    struct config c;
    const char *sets[2] = { "model.dispatch_dtype=fp8", "model.combine_dtype=fp8" };
    CU_ASSERT_EQUAL_FATAL(load(&c, small, sets, 2), 0);
    c.cluster.nodes = 1;
    c.cluster.gpus_per_node = 2;
    uint64_t pairs[4] = { 0, 3, 5, 0 };
    struct routing r = { .gpus = 2, .experts = 2, .ep = 2, .top_k = 1, .pair_tokens = pairs };
    struct traffic d, cb;
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&d, &cb, &r, &c), 0);
    CU_ASSERT_EQUAL(at(&d, 0, 1), 3 * 7168 + 3 * 7168 * 4 / 128);
    CU_ASSERT_EQUAL(at(&d, 0, 1), 3 * 7392);
    CU_ASSERT_EQUAL(at(&d, 1, 0), 5 * 7392);
    CU_ASSERT_EQUAL(at(&cb, 1, 0), 3 * 7392);
    traffic_free(&d);
    traffic_free(&cb);
}

/* Which key wins: the later of a dtype and its *_bytes_per_elem; gradients follow the
 * combine unless their own dtype is set. */
static void test_precision_keys(void)
{
    struct config c;
    CU_ASSERT_EQUAL_FATAL(load(&c, small, NULL, 0), 0);       /* defaults: all BF16 */
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_bytes_per_elem, 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.combine_bytes_per_elem, 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.combine_grad_bytes_per_elem, 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_grad_bytes_per_elem, 2, 0);
    CU_ASSERT_EQUAL(c.model.fp8_block, 128);

    const char *a[2] = { "model.dispatch_dtype=fp8", "model.dispatch_bytes_per_elem=3" };
    CU_ASSERT_EQUAL_FATAL(load(&c, small, a, 2), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_bytes_per_elem, 3, 0);
    const char *b[3] = { "model.dispatch_bytes_per_elem=3", "model.dispatch_dtype=fp8",
                         "model.fp8_block=64" };
    CU_ASSERT_EQUAL_FATAL(load(&c, small, b, 3), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_bytes_per_elem, 1 + 4.0 / 64, 0);

    /* today's rule kept: unset gradients at the combine's bytes per element */
    const char *g[1] = { "model.combine_bytes_per_elem=4" };
    CU_ASSERT_EQUAL_FATAL(load(&c, small, g, 1), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.combine_grad_bytes_per_elem, 4, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_grad_bytes_per_elem, 4, 0);
    const char *g2[3] = { "model.combine_dtype=fp32", "model.combine_grad_dtype=fp8",
                          "model.dispatch_grad_dtype=fp16" };
    CU_ASSERT_EQUAL_FATAL(load(&c, small, g2, 3), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.combine_bytes_per_elem, 4, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.combine_grad_bytes_per_elem, 1.03125, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.dispatch_grad_bytes_per_elem, 2, 0);
}

/* Refusals name the key: a dtype that is not one of the four, a zero block, and the
 * hierarchical route with EP groups that split a node (12 GPUs on nodes of 8). */
static void test_precision_bad(void)
{
    struct config c;
    struct cfg_err err;
    char path[] = "/tmp/moesim_test_hier_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("[cluster]\nnodes = 3\ngpus_per_node = 8\nroute = hierarchical\n"
          "[model]\nexperts = 24\n[parallel]\nep = 12\n", f);
    fclose(f);
    const char *files[1] = { path };
    const char *bad_dtype[2] = { "parallel.ep=24", "model.combine_grad_dtype=int8" };
    CU_ASSERT_EQUAL(config_load(&c, files, 1, bad_dtype, 2, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--set: model.combine_grad_dtype: 'int8' is not "
                                  "one of bf16|fp16|fp8|fp32"));
    const char *bad_block[2] = { "parallel.ep=24", "model.fp8_block=0" };
    CU_ASSERT_EQUAL(config_load(&c, files, 1, bad_block, 2, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "model.fp8_block"));
    CU_ASSERT_EQUAL(config_load(&c, files, 1, NULL, 0, &err), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ":8: parallel.ep: cluster.route = hierarchical "
                                  "needs parallel.ep = 12 to be a multiple or a divisor of "
                                  "cluster.gpus_per_node = 8"));
    const char *rail[1] = { "cluster.route=rail" };
    CU_ASSERT_EQUAL(config_load(&c, files, 1, rail, 1, &err), 0);
    remove(path);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "one token, hierarchical: legs and bytes per link", test_one_token_legs },
        { "one token, rail and pxn: one entry per pair", test_one_token_rail_pxn },
        { "hierarchical refused without its counts", test_hier_bad },
        { "every expert: legs in closed form, dedup on and off", test_all_experts },
        { "node counts on every routing path", test_node_counts },
        { "node limit shortens the dispatch (M = 4 .. 1)", test_max_nodes },
        { "combine mirrors the dispatch", test_combine_mirror },
        { "bytes per element of each dtype", test_dtype_bytes },
        { "FP8 traffic with scales", test_fp8_traffic },
        { "precision keys: which wins", test_precision_keys },
        { "precision and route refusals", test_precision_bad },
    };
    return cu_run("hier", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
