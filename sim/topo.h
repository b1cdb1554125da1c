/* topo.h: the cluster as links with capacities, and the route of each GPU pair.
 *
 * Every GPU has four links: NVLink egress and ingress into its node's non-blocking
 * NVLink switch, and NIC egress and ingress into the fabric (one NIC per GPU, a rail).
 * With nodes_per_leaf > 0 the fabric is leaf/spine: each leaf of nodes_per_leaf nodes
 * has one uplink and one downlink of (nodes_per_leaf * gpus_per_node * nic) /
 * oversubscription bytes/s; traffic between leaves crosses both. With
 * nodes_per_leaf = 0 all nodes hang off one non-blocking fabric switch.
 *
 * Capacities are achieved rates: line rate x efficiency (cfg nvlink_efficiency for the
 * NVLink links, nic_efficiency for NIC and leaf links), the fraction of the line rate a
 * point-to-point bandwidth test reaches. A transfer of b bytes alone on its path takes
 * lat + b / (efficiency x line rate) of its slowest link.
 *
 * Latency of a path (fluid model: data starts flowing after it):
 *   inside a node: 2 NVLink hops (GPU -> switch -> GPU)     = 2 nvl
 *   rail-direct:   NIC, fabric switch, NIC                    = 2 nic + 1 sw
 *                  (3 sw when the path goes leaf -> spine -> leaf)
 *   pxn:           NVLink to the GPU on the destination's rail, then rail-direct
 *   hierarchical:  rail-direct to the same-index GPU of the destination node, then NVLink
 * A forwarding GPU adds its own NVLink hops (2 nvl); pxn and hierarchical fall back to
 * rail-direct when source and destination already share a rail.
 * These are per-pair paths (uniform all-to-alls, matrices, sends, rings). A MoE layer's
 * traffic under hierarchical is built by traffic_moe as legs of the two-level dispatch
 * (traffic.h), each inside a node or on one rail, so each takes one tier here.
 */
#ifndef MOESIM_TOPO_H
#define MOESIM_TOPO_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define TOPO_MAX_HOPS 6

enum link_kind { LINK_NVL_TX, LINK_NVL_RX, LINK_NIC_TX, LINK_NIC_RX, LINK_LEAF_UP, LINK_LEAF_DOWN };

struct topo_link {
    enum link_kind kind;
    int owner;                /* GPU id, or leaf id for LEAF_UP/LEAF_DOWN */
    double cap_Bps;           /* achieved: line rate x efficiency */
};

struct topo {
    int nodes, gpus_per_node, gpus, leaves, nodes_per_leaf;
    enum route_kind route;
    double nvl_lat_s, nic_lat_s, sw_lat_s;
    double flow_quantum;      /* cluster.flow_quantum: 0 exact, else a2a.h's batching */
    int nlinks;
    struct topo_link *links;  /* owned */
};

int topo_create(struct topo **out, const struct cfg_cluster *c);  /* 0, -EINVAL, -ENOMEM */
void topo_free(struct topo *t);                                   /* NULL is a no-op */

/* Link ids of GPU g's four links, and of leaf l's two (valid only when leaves > 1). */
int topo_nvl_tx(const struct topo *t, int g);
int topo_nvl_rx(const struct topo *t, int g);
int topo_nic_tx(const struct topo *t, int g);
int topo_nic_rx(const struct topo *t, int g);
int topo_leaf_up(const struct topo *t, int l);
int topo_leaf_down(const struct topo *t, int l);
/* The leaf of GPU g (0 when leaves == 1). */
int topo_leaf_of(const struct topo *t, int g);

/* The path from src to dst (src != dst): writes up to TOPO_MAX_HOPS link ids into
 * links[], the latency into *lat_s, and returns the number of links. */
int topo_route(const struct topo *t, int src, int dst, int *links, double *lat_s);

bool topo_link_is_nvlink(const struct topo *t, int link);
/* "gpu3.nvl_tx", "gpu9.nic_rx", "leaf1.up": for reports and traces. */
void topo_link_name(const struct topo *t, int link, char *buf, size_t n);

#endif
