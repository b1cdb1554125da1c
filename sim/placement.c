/* placement.c: expert -> slot maps. The EPLB kinds follow DeepSeek's reference
 * load balancer (github.com/deepseek-ai/EPLB, eplb.py: balanced_packing,
 * replicate_experts, rebalance_experts_hierarchical), written afresh for one layer,
 * with ties broken by lowest index and a contiguous fallback (placement.h). */
#include "placement.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* To add a kind: append it to enum placement_kind and give its word here. */
static const char *const kind_names[] = {
    [PLACEMENT_CONTIGUOUS] = "contiguous",
    [PLACEMENT_ROUND_ROBIN] = "round-robin",
    [PLACEMENT_EPLB] = "eplb",
    [PLACEMENT_EPLB_GLOBAL] = "eplb-global",
};
#define KINDS ((int)(sizeof(kind_names) / sizeof(kind_names[0])))

const char *placement_kind_name(enum placement_kind k)
{
    return (int)k >= 0 && (int)k < KINDS ? kind_names[k] : "?";
}

void placement_free(struct placement *p)
{
    if (!p)
        return;
    free(p->slot_expert);
    free(p->replica0);
    free(p->replica_slot);
    memset(p, 0, sizeof(*p));
}

void placement_gpu_load(const struct placement *p, const double *load, double *out)
{
    for (int g = 0; g < p->ep; g++)
        out[g] = 0.0;
    for (int s = 0; s < p->nslots; s++) {
        int e = p->slot_expert[s];
        out[s / p->slots_per_gpu] += load[e] / (p->replica0[e + 1] - p->replica0[e]);
    }
}

/* replicate_experts of eplb.py: phy2log[0..n) = 0..n-1, then each of the nphy - n
 * extra physical experts copies the logical expert with the largest w[e] / cnt[e]
 * (lowest e on ties). cnt[e] ends as e's replica count. w may be NULL when nphy == n.
 * O((nphy - n) * n). */
static void replicate(const double *w, int n, int nphy, int *phy2log, int *cnt)
{
    for (int e = 0; e < n; e++) {
        phy2log[e] = e;
        cnt[e] = 1;
    }
    for (int i = n; i < nphy; i++) {
        int best = 0;
        for (int e = 1; e < n; e++)
            if (w[e] / cnt[e] > w[best] / cnt[best])
                best = e;
        phy2log[i] = best;
        cnt[best]++;
    }
}

struct item {
    double w;
    int i;
};

/* Heavier first; equal weights by lowest index (the reference sorts descending and
 * leaves ties to torch.sort; we fix them). */
static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    int heavier = (x->w < y->w) - (x->w > y->w);
    return heavier ? heavier : (x->i > y->i) - (x->i < y->i);
}

/* Scratch for pack(): n items, `packs` pack weights and fill counts. */
struct pack_buf {
    struct item *items;
    double *pack_w;
    int *pack_n;
};

/* balanced_packing of eplb.py: n items of weight w into `packs` packs of n / packs
 * items each. Items in order of decreasing weight, each into the pack of least weight
 * that still has room (lowest pack on ties). pos[i] = pack * (n / packs) + rank, rank
 * = how many items entered that pack before i. One item per pack: pos[i] = i, as the
 * reference. O(n log n + n * packs). */
static void pack(const double *w, int n, int packs, int *pos, struct pack_buf *b)
{
    int per = n / packs;
    if (per == 1) {
        for (int i = 0; i < n; i++)
            pos[i] = i;
        return;
    }
    for (int i = 0; i < n; i++)
        b->items[i] = (struct item){ w[i], i };
    qsort(b->items, (size_t)n, sizeof(*b->items), item_cmp);
    for (int q = 0; q < packs; q++) {
        b->pack_w[q] = 0.0;
        b->pack_n[q] = 0;
    }
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int q = 0; q < packs; q++)
            if (b->pack_n[q] < per && (best < 0 || b->pack_w[q] < b->pack_w[best]))
                best = q;
        pos[b->items[k].i] = best * per + b->pack_n[best]++;
        b->pack_w[best] += b->items[k].w;
    }
}

/* Step 1 of rebalance_experts_hierarchical: mlog2log[m] = the logical expert that node
 * m / (E / nodes) holds as its (m mod (E / nodes))-th expert. The E / groups experts of a
 * group stay together, in order; balanced_packing puts groups / nodes groups on each node
 * by group load (sum of its experts' loads), rank r on a node taking that node's r-th
 * run of E / groups. One group per node: pack() is the identity, so mlog2log[m] = m. */
static void groups_to_nodes(const double *load, int experts, int groups, int nodes,
                            int *mlog2log, double *gw, int *gpos, struct pack_buf *b)
{
    int gs = experts / groups;
    for (int g = 0; g < groups; g++) {
        gw[g] = 0.0;
        for (int j = 0; j < gs; j++)
            gw[g] += load[g * gs + j];
    }
    pack(gw, groups, nodes, gpos, b);
    for (int g = 0; g < groups; g++)
        for (int j = 0; j < gs; j++)
            mlog2log[gpos[g] * gs + j] = g * gs + j;
}

/* rebalance_experts_hierarchical of eplb.py with num_groups = groups, num_nodes = nodes
 * (nodes | groups | E). Step 1: groups onto nodes (groups_to_nodes). Step 2: replicate
 * each node's E / nodes experts, in their step-1 order, into its nslots / nodes physical
 * experts. Step 3: pack those onto the node's ep / nodes GPUs by load per replica.
 * groups = nodes = 1 is the global policy. -ENOMEM. */
static int fill_eplb(struct placement *p, const double *load, int nodes, int groups)
{
    int en = p->experts / nodes, pn = p->nslots / nodes, gn = p->ep / nodes;
    int ni = pn > groups ? pn : groups, np = gn > nodes ? gn : nodes;
    int *mlog2log = malloc((size_t)p->experts * sizeof(*mlog2log));
    int *phy2log = malloc((size_t)pn * sizeof(*phy2log));
    int *cnt = malloc((size_t)en * sizeof(*cnt));
    int *pos = malloc((size_t)ni * sizeof(*pos));
    double *w = calloc((size_t)ni, sizeof(*w));     /* zeroed: gcc cannot see groups >= 1 */
    struct pack_buf b = {
        .items = malloc((size_t)ni * sizeof(*b.items)),
        .pack_w = malloc((size_t)np * sizeof(*b.pack_w)),
        .pack_n = malloc((size_t)np * sizeof(*b.pack_n)),
    };
    int rc = -ENOMEM;
    if (!mlog2log || !phy2log || !cnt || !pos || !w || !b.items || !b.pack_w || !b.pack_n)
        goto out_free;
    groups_to_nodes(load, p->experts, groups, nodes, mlog2log, w, pos, &b);
    for (int n = 0; n < nodes; n++) {
        const int *nm = mlog2log + (size_t)n * en;
        for (int j = 0; j < en; j++)
            w[j] = load[nm[j]];
        replicate(w, en, pn, phy2log, cnt);
        for (int j = 0; j < pn; j++)
            w[j] = load[nm[phy2log[j]]] / cnt[phy2log[j]];
        pack(w, pn, gn, pos, &b);
        for (int j = 0; j < pn; j++)
            p->slot_expert[n * pn + pos[j]] = nm[phy2log[j]];
    }
    rc = 0;
out_free:
    free(b.pack_n);
    free(b.pack_w);
    free(b.items);
    free(w);
    free(pos);
    free(cnt);
    free(phy2log);
    free(mlog2log);
    return rc;
}

/* Contiguous: GPU g holds experts [g k, (g+1) k), k = E / ep, in its first k slots; its
 * spg - k further slots copy its own experts by replicate() (largest load per replica
 * first), so its load is unchanged. load may be NULL when spg == k. -ENOMEM. */
static int fill_contiguous(struct placement *p, const double *load)
{
    int k = p->experts / p->ep, spg = p->slots_per_gpu;
    int *cnt = malloc((size_t)k * sizeof(*cnt));
    if (!cnt)
        return -ENOMEM;
    for (int g = 0; g < p->ep; g++) {
        int *se = p->slot_expert + (size_t)g * spg;
        replicate(load ? load + (size_t)g * k : NULL, k, spg, se, cnt);
        for (int j = 0; j < spg; j++)
            se[j] += g * k;
    }
    free(cnt);
    return 0;
}

/* Expert e on GPU e % ep, in slot (e % ep) * spg + e / ep (spg = E / ep). */
static void fill_round_robin(struct placement *p)
{
    for (int e = 0; e < p->experts; e++)
        p->slot_expert[(e % p->ep) * p->slots_per_gpu + e / p->ep] = e;
}

/* replica0 / replica_slot from slot_expert; slots of an expert in increasing order. */
static void build_csr(struct placement *p)
{
    memset(p->replica0, 0, ((size_t)p->experts + 1) * sizeof(*p->replica0));
    for (int s = 0; s < p->nslots; s++)
        p->replica0[p->slot_expert[s] + 1]++;
    for (int e = 0; e < p->experts; e++)
        p->replica0[e + 1] += p->replica0[e];
    /* replica0[e] is used as e's fill cursor, then shifted back one place. */
    for (int s = 0; s < p->nslots; s++)
        p->replica_slot[p->replica0[p->slot_expert[s]]++] = s;
    memmove(p->replica0 + 1, p->replica0, (size_t)p->experts * sizeof(*p->replica0));
    p->replica0[0] = 0;
}

/* Dimensions and arrays of *p, zeroed first. -ENOMEM (p zeroed). */
static int alloc(struct placement *p, int experts, int ep, int gpn, int nslots)
{
    memset(p, 0, sizeof(*p));
    p->slot_expert = malloc((size_t)nslots * sizeof(*p->slot_expert));
    p->replica0 = malloc(((size_t)experts + 1) * sizeof(*p->replica0));
    p->replica_slot = malloc((size_t)nslots * sizeof(*p->replica_slot));
    if (!p->slot_expert || !p->replica0 || !p->replica_slot) {
        placement_free(p);
        return -ENOMEM;
    }
    p->experts = experts;
    p->ep = ep;
    p->gpus_per_node = gpn;
    p->slots_per_gpu = nslots / ep;
    p->nslots = nslots;
    return 0;
}

/* Largest placement_gpu_load of p; buf holds ep doubles. */
static double max_gpu_load(const struct placement *p, const double *load, double *buf)
{
    placement_gpu_load(p, load, buf);
    double m = buf[0];
    for (int g = 1; g < p->ep; g++)
        m = buf[g] > m ? buf[g] : m;
    return m;
}

/* Replace the EPLB map *p by the contiguous one with own-GPU copies when that has a
 * strictly lower maximum GPU load (placement.h). Needs E % ep == 0. -ENOMEM. */
static int keep_better(struct placement *p, const double *load)
{
    struct placement alt;
    double *buf = malloc((size_t)p->ep * sizeof(*buf));
    int rc = buf ? alloc(&alt, p->experts, p->ep, p->gpus_per_node, p->nslots) : -ENOMEM;
    if (rc < 0)
        goto out_free_buf;
    rc = fill_contiguous(&alt, load);
    if (rc < 0)
        goto out_free_alt;
    build_csr(&alt);
    if (max_gpu_load(&alt, load, buf) < max_gpu_load(p, load, buf)) {
        struct placement t = *p;
        *p = alt;
        alt = t;
    }
out_free_alt:
    placement_free(&alt);
out_free_buf:
    free(buf);
    return rc;
}

/* The -EINVAL rules of placement_create_grouped; *gpn is clamped to ep, *nodes and
 * *groups set (groups 0: one per node; eplb-global: one). */
static bool args_ok(enum placement_kind kind, int experts, int ep, int *gpn, int redundant,
                    const double *load, int *nodes, int *groups)
{
    if (experts < 1 || ep < 1 || *gpn < 1 || redundant < 0 || *groups < 0 ||
        experts > INT_MAX - redundant || (experts + redundant) % ep != 0)
        return false;
    if (*gpn > ep)
        *gpn = ep;
    if (ep % *gpn != 0)
        return false;
    *nodes = ep / *gpn;
    switch (kind) {
    case PLACEMENT_CONTIGUOUS:
    case PLACEMENT_ROUND_ROBIN:
        return *groups == 0 && redundant == 0 && experts % ep == 0;
    case PLACEMENT_EPLB:
        if (!*groups)
            *groups = *nodes;
        if (*groups % *nodes != 0 || experts % *groups != 0 || redundant % *nodes != 0)
            return false;
        break;
    case PLACEMENT_EPLB_GLOBAL:
        if (*groups != 0)
            return false;
        *nodes = *groups = 1;
        break;
    default:
        return false;
    }
    if (!load)
        return false;
    for (int e = 0; e < experts; e++)
        if (!(load[e] >= 0.0) || !isfinite(load[e]))
            return false;
    return true;
}

int placement_create_grouped(struct placement *p, enum placement_kind kind, int experts,
                             int ep, int gpus_per_node, int redundant, int groups,
                             const double *load)
{
    int nodes = 1;
    if (!p)
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    if (!args_ok(kind, experts, ep, &gpus_per_node, redundant, load, &nodes, &groups))
        return -EINVAL;
    int rc = alloc(p, experts, ep, gpus_per_node, experts + redundant);
    if (rc < 0)
        return rc;
    if (kind == PLACEMENT_CONTIGUOUS)
        rc = fill_contiguous(p, NULL);
    else if (kind == PLACEMENT_ROUND_ROBIN)
        fill_round_robin(p);
    else
        rc = fill_eplb(p, load, nodes, groups);
    if (rc < 0)
        goto out_free_p;
    build_csr(p);
    if ((kind == PLACEMENT_EPLB || kind == PLACEMENT_EPLB_GLOBAL) && experts % ep == 0)
        rc = keep_better(p, load);
    if (rc < 0)
        goto out_free_p;
    return 0;
out_free_p:
    placement_free(p);
    return rc;
}

int placement_create(struct placement *p, enum placement_kind kind, int experts, int ep,
                     int gpus_per_node, int redundant, const double *load)
{
    return placement_create_grouped(p, kind, experts, ep, gpus_per_node, redundant, 0, load);
}
