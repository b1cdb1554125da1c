/* maxmin.h: the state of the flow-level network, shared by net.c (flows, groups, time)
 * and maxmin.c (the max-min repair) and by nothing else; net.h is the public contract.
 *
 * Every running flow is a member of the group of its bottleneck link (struct link holds
 * the group); the group's level (lvl, bytes/s) is the rate of every member. After flows
 * start or finish, maxmin_solve() finds the new groups and levels and leaves them in
 * net.r; net.c commits them (moves the flows, advances the groups' clocks).
 */
#ifndef MOESIM_MAXMIN_H
#define MOESIM_MAXMIN_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "net.h"
#include "pq.h"

/* A flow's route and progress record: in its group's heap while it runs, in the pending
 * list (key = its size) until the repair that places it. */
struct member {
    double key;               /* its group's clock value at which it is done */
    int id;
    int nl;
    int links[NET_MAX_HOPS];  /* in a group, the group's own link first */
};

struct flow {
    double bytes;
    double t_end;             /* NAN while running */
    double nrate;             /* the round's rate for it, when it froze alone */
    int bn;                   /* its group's link; -1 while pending or done */
    int nbn;                  /* the round's link for it, when it froze alone */
    int hpos;                 /* index in its group's heap, or in the pending list */
    unsigned rstamp;          /* == net.rstamp: it froze alone, away from its group */
    bool done;
};

struct link {
    /* repair workspace first: the passes over members read these */
    unsigned kstamp;          /* == net.rstamp: in K, as index k */
    unsigned tstamp;          /* == net.rstamp: touched by the round */
    unsigned xstamp;          /* == net.xstamp: its group is in X, as entity ent */
    int nm;                   /* members of its group */
    int k, ent;
    int last_ent, last_edge;  /* newest edge to it, while edges are built */
    double d_use, d_max;      /* the round's change of use; largest new rate from outside */
    unsigned fstamp;          /* == net.xstamp: flagged into K */
    unsigned exact;           /* == net.rstamp: d_max is its exact new maxo */
    unsigned dstamp;          /* == net.dstamp: in the dirty list */
    double cap;
    double use;               /* sum of the rates of the grouped flows on it */
    double maxo;              /* upper bound on the rates of its flows outside its group */
    int *fl, nfl, capfl;      /* flows crossing it; done ones are dropped lazily */
    int nlive;
    /* its group: the flows whose bottleneck it is */
    struct member *m;         /* min-heap by (key, id) */
    int capm;
    double lvl;               /* the group's rate */
    double clk, t_clk;        /* bytes served to each member by time t_clk */
    double minb;              /* smallest member size since the clock last restarted */
};

/* The filling's min-heap of K links by share, keys inline (maxmin.c: kh_). */
struct kheap {
    double *key;              /* key[i]: share of the link at heap index i */
    int *k;                   /* k[i]: that link's K index */
    int *pos;                 /* pos[k]: its heap index, -1 when absent */
    int n;
};

/* An X group in a round, and its incidence with K links (cnt unfrozen members each). */
struct ent {
    double lvl;               /* level its block froze at */
    int id;                   /* group link */
    int e0, e1;               /* its edges */
    int h0;                   /* its members' hop edges: round.hedge from NET_MAX_HOPS * h0 */
    int nsplit;               /* members that froze alone elsewhere */
    bool frozen;
};

struct edge {
    int ent, k, cnt;
    int next;                 /* the next edge at the same K link, -1 at the end */
};

/* One round's workspace; per-link arrays are indexed by K index. */
struct round {
    struct ent *ent;
    int nent, cap_ent;
    struct edge *edge;
    int nedge, cap_edge;
    int *hedge;               /* per member of an entity, in heap order, per hop j >= 1: the
                               * edge of that hop's K link, -1 outside K (split_flow); at
                               * j = 0: 1 once the member split, else 0 */
    int nhedge, cap_hedge;
    int *khead;               /* first edge at each K link, -1 if none */
    int *kpend, cap_kpend;    /* pending flows by K link: poff[k] .. poff[k+1] */
    int *poff, *klink, *left, nk;
    int *pleft;               /* unfrozen pending flows on it */
    int64_t *kmem;            /* members of the groups with unfrozen flows on it (split_at) */
    int *nround;              /* the round's flows on it (the others are fixed) */
    double *resid, *klvl;     /* klvl: level at which it froze flows, -1 if none */
    int *touched, ntouched;   /* links whose use or outside rates change, by link id */
    struct member *split;     /* flows that froze alone, key = bytes left at commit */
    int nsplit, cap_split;
    struct kheap heap;
};

struct net {
    int nlinks;
    struct link *links;
    struct flow *flows;
    int nflows, cap_flows, active;
    double now;
    struct pq finish;         /* non-empty groups by next finish time */
    struct member *pend;      /* flows added since the last repair */
    int npend, cap_pend;
    int *xg, nxg;             /* X, by group link */
    int *flag, nflag;         /* links flagged into K */
    int *join, njoin, cap_join;   /* groups that join X after a check */
    int *done, ndone, cap_done;
    uint64_t *bits;           /* done flows by id, to sort long done lists */
    int cap_bits;
    int *dirty, ndirty;
    unsigned xstamp, rstamp, dstamp;
    struct round r;
    net_link_fn observe;
    void *observe_arg;
    struct net_stats stats;
};

/* Room for `need` elements of `elem` bytes in *p (capacity *cap, doubled). 0 or -ENOMEM. */
static inline int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 16;
    while (c < need)
        c = c > 0x3fffffff ? need : 2 * c;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* Group l joins X (to be re-solved); false if it was in. */
static inline bool x_add(struct net *n, int l)
{
    struct link *k = &n->links[l];
    if (k->xstamp == n->xstamp)
        return false;
    k->xstamp = n->xstamp;
    n->xg[n->nxg++] = l;
    return true;
}

/* The round's per-link arrays for nlinks links, in a zeroed r. 0 or -ENOMEM. */
int maxmin_init(struct round *r, int nlinks);
void maxmin_free(struct round *r);    /* zeroed struct is a no-op */

/* Re-solves X (n->xg), the pending flows and whatever they pull in, against the fixed
 * rest. Returns 0 when there was nothing to solve, 1 when the solution is in n->r
 * (klvl: new group levels by K link; split: members that change group; flows[].nbn and
 * nrate: the new group and rate of split and pending flows; touched links: d_use, d_max),
 * or -ENOMEM. */
int maxmin_solve(struct net *n);

#endif
