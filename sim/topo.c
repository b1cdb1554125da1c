/* topo.c: links and routes of the cluster; see topo.h. */
#include "topo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* GPU g owns links 4g .. 4g+3; leaf l owns 4*gpus + 2l (up) and + 1 (down). */
int topo_nvl_tx(const struct topo *t, int g) { (void)t; return 4 * g; }
int topo_nvl_rx(const struct topo *t, int g) { (void)t; return 4 * g + 1; }
int topo_nic_tx(const struct topo *t, int g) { (void)t; return 4 * g + 2; }
int topo_nic_rx(const struct topo *t, int g) { (void)t; return 4 * g + 3; }
static int leaf_up(const struct topo *t, int l) { return 4 * t->gpus + 2 * l; }
static int leaf_down(const struct topo *t, int l) { return 4 * t->gpus + 2 * l + 1; }

static int node_of(const struct topo *t, int g) { return g / t->gpus_per_node; }
static int local_of(const struct topo *t, int g) { return g % t->gpus_per_node; }
static int leaf_of(const struct topo *t, int g)
{
    return t->leaves > 1 ? node_of(t, g) / t->nodes_per_leaf : 0;
}

static void set_link(struct topo *t, int id, enum link_kind k, int owner, double cap)
{
    t->links[id] = (struct topo_link){ .kind = k, .owner = owner, .cap_Bps = cap };
}

int topo_create(struct topo **out, const struct cfg_cluster *c)
{
    *out = NULL;
    if (c->nodes < 1 || c->gpus_per_node < 1 || !(c->nvlink_Bps > 0) || !(c->nic_Bps > 0) ||
        !(c->nvlink_eff > 0 && c->nvlink_eff <= 1) || !(c->nic_eff > 0 && c->nic_eff <= 1) ||
        !(c->oversubscription >= 1) || c->nodes_per_leaf < 0)
        return -EINVAL;
    /* Achieved rates; x 1.0 is exact, so efficiency 1 gives the line rates bit for bit. */
    double nvl = c->nvlink_Bps * c->nvlink_eff, nic = c->nic_Bps * c->nic_eff;
    struct topo *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->nodes = c->nodes;
    t->gpus_per_node = c->gpus_per_node;
    t->gpus = c->nodes * c->gpus_per_node;
    t->route = c->route;
    t->nvl_lat_s = c->nvlink_lat_s;
    t->nic_lat_s = c->nic_lat_s;
    t->sw_lat_s = c->switch_lat_s;
    t->flow_quantum = c->flow_quantum;
    t->nodes_per_leaf = c->nodes_per_leaf;
    t->leaves = 1;
    if (c->nodes_per_leaf > 0 && c->nodes_per_leaf < c->nodes)
        t->leaves = (c->nodes + c->nodes_per_leaf - 1) / c->nodes_per_leaf;
    t->nlinks = 4 * t->gpus + (t->leaves > 1 ? 2 * t->leaves : 0);
    t->links = calloc((size_t)t->nlinks, sizeof(*t->links));
    if (!t->links) {
        free(t);
        return -ENOMEM;
    }
    for (int g = 0; g < t->gpus; g++) {
        set_link(t, topo_nvl_tx(t, g), LINK_NVL_TX, g, nvl);
        set_link(t, topo_nvl_rx(t, g), LINK_NVL_RX, g, nvl);
        set_link(t, topo_nic_tx(t, g), LINK_NIC_TX, g, nic);
        set_link(t, topo_nic_rx(t, g), LINK_NIC_RX, g, nic);
    }
    for (int l = 0; t->leaves > 1 && l < t->leaves; l++) {
        int first = l * t->nodes_per_leaf;
        int n = t->nodes - first < t->nodes_per_leaf ? t->nodes - first : t->nodes_per_leaf;
        double up = (double)n * t->gpus_per_node * nic / c->oversubscription;
        set_link(t, leaf_up(t, l), LINK_LEAF_UP, l, up);
        set_link(t, leaf_down(t, l), LINK_LEAF_DOWN, l, up);
    }
    *out = t;
    return 0;
}

void topo_free(struct topo *t)
{
    if (!t)
        return;
    free(t->links);
    free(t);
}

/* NIC of a to NIC of b (different nodes), through the leaves when they differ. */
static int fabric(const struct topo *t, int a, int b, int *links, double *lat_s)
{
    int n = 0;
    links[n++] = topo_nic_tx(t, a);
    *lat_s += 2 * t->nic_lat_s + t->sw_lat_s;
    int la = leaf_of(t, a), lb = leaf_of(t, b);
    if (la != lb) {
        links[n++] = leaf_up(t, la);
        links[n++] = leaf_down(t, lb);
        *lat_s += 2 * t->sw_lat_s;
    }
    links[n++] = topo_nic_rx(t, b);
    return n;
}

static int nvlink(const struct topo *t, int a, int b, int *links, double *lat_s)
{
    links[0] = topo_nvl_tx(t, a);
    links[1] = topo_nvl_rx(t, b);
    *lat_s += 2 * t->nvl_lat_s;
    return 2;
}

int topo_route(const struct topo *t, int src, int dst, int *links, double *lat_s)
{
    *lat_s = 0;
    if (node_of(t, src) == node_of(t, dst))
        return nvlink(t, src, dst, links, lat_s);
    if (t->route == ROUTE_RAIL || local_of(t, src) == local_of(t, dst))
        return fabric(t, src, dst, links, lat_s);
    if (t->route == ROUTE_PXN) {
        int relay = node_of(t, src) * t->gpus_per_node + local_of(t, dst);
        int n = nvlink(t, src, relay, links, lat_s);
        return n + fabric(t, relay, dst, links + n, lat_s);
    }
    int relay = node_of(t, dst) * t->gpus_per_node + local_of(t, src);
    int n = fabric(t, src, relay, links, lat_s);
    return n + nvlink(t, relay, dst, links + n, lat_s);
}

int topo_leaf_up(const struct topo *t, int l) { return leaf_up(t, l); }
int topo_leaf_down(const struct topo *t, int l) { return leaf_down(t, l); }
int topo_leaf_of(const struct topo *t, int g) { return leaf_of(t, g); }

bool topo_link_is_nvlink(const struct topo *t, int link)
{
    enum link_kind k = t->links[link].kind;
    return k == LINK_NVL_TX || k == LINK_NVL_RX;
}

void topo_link_name(const struct topo *t, int link, char *buf, size_t n)
{
    static const char *const kind[] = { "nvl_tx", "nvl_rx", "nic_tx", "nic_rx", "up", "down" };
    const struct topo_link *l = &t->links[link];
    const char *who = l->kind == LINK_LEAF_UP || l->kind == LINK_LEAF_DOWN ? "leaf" : "gpu";
    snprintf(buf, n, "%s%d.%s", who, l->owner, kind[l->kind]);
}
