/* net.c: flow-level network with exact, incrementally repaired max-min fair sharing.
 *
 * The allocation is characterised by Bertsekas & Gallager (Data Networks, sec. 6.5.2):
 * a feasible rate vector is max-min fair iff every flow has a bottleneck link, i.e. a
 * saturated link on which no flow has a higher rate. It is unique. Every flow here
 * remembers one such link (bn); the flows that share a bottleneck form its group and
 * all have the group's rate (lvl).
 *
 * When flows start or finish, only some rates must change. Repair:
 *  1. X := the flows that lost their bottleneck (the groups of every link a finished
 *     flow crossed) plus the new flows. All other flows are fixed at their rates.
 *  2. Progressive filling over X alone, on capacities minus the fixed flows' use.
 *  3. Check the optimality condition where X touches the fixed part:
 *     (a) a touched link that is a fixed group's bottleneck must still be saturated and
 *         carry no X flow above the group's rate;
 *     (b) a link that became an X flow's bottleneck at level L must carry no fixed flow
 *         above L. Each link keeps an upper bound (maxb) of its flows' rates, so the
 *         O(flows on the link) scan happens only when the bound is above L.
 *     A violated group joins X and we go back to 2. When nothing is violated every
 *     flow has a bottleneck, so the result is the max-min fair allocation itself.
 * Cost per event: O(|X| * hops * log(links touched)) per round plus the scans of (b);
 * in an all-to-all a finishing flow usually frees its source's egress group and its
 * destination's ingress group: O(flows on the touched links), not O(all flows).
 *
 * Progress is lazy: a flow stores its remaining bytes at the time its rate last
 * changed; a global heap orders flows by finish time.
 */
#include "net.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pq.h"

struct flow {
    double bytes;
    double rem;               /* remaining bytes at t_upd */
    double t_upd;
    double rate;              /* committed rate (bytes/s) */
    double nrate;             /* rate being solved for, while in X */
    double t_end;
    int bn, nbn;              /* bottleneck link (committed, being solved); -1 none */
    int nl;
    int links[NET_MAX_HOPS];
    int pos[NET_MAX_HOPS];    /* index of this flow in links[i]'s flow list */
    bool in_x, pending, done;
};

struct link {
    double cap;
    double use;               /* sum of committed rates of the flows on it (fixed part during a repair) */
    double lvl;               /* rate of its group, when ngroup > 0 */
    double maxb;              /* upper bound on the rates of the flows on it */
    int *fl, nfl, capfl;      /* flows crossing it */
    int ngroup;               /* flows whose bottleneck it is (fixed ones during a repair) */
    unsigned stamp, dstamp;
    int local;                /* index among the links touched by the current round */
};

/* Per-round workspace over the links X touches, indexed by link->local. */
struct round {
    int *link;                /* local -> link id */
    int *off;                 /* CSR offsets into xf: X flows per touched link */
    int *xf;
    double *resid;
    int *left;                /* unfrozen X flows on it */
    double *lvl;              /* level at which it froze X flows, -1 if it froze none */
    int cap_links, cap_xf;
    struct pq heap;
};

struct net {
    int nlinks;
    struct link *links;
    struct flow *flows;
    int nflows, cap_flows, active;
    double now;
    struct pq finish;         /* running flows by finish time */
    int *x, nx, cap_x;        /* the flows being re-solved */
    int *tofree, ntofree, cap_tofree; /* links whose groups join X after a check */
    int *pend, npend, cap_pend;
    int *dirty, ndirty;       /* links whose use changed this event */
    unsigned stamp, dstamp;
    struct round r;
    net_link_fn observe;
    void *observe_arg;
    struct net_stats stats;
};

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int net_create(struct net **out, int nlinks, const double *cap_Bps)
{
    *out = NULL;
    if (nlinks < 1)
        return -EINVAL;
    for (int i = 0; i < nlinks; i++)
        if (!(cap_Bps[i] > 0) || !isfinite(cap_Bps[i]))
            return -EINVAL;
    struct net *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->nlinks = nlinks;
    n->links = calloc((size_t)nlinks, sizeof(*n->links));
    n->dirty = calloc((size_t)nlinks, sizeof(*n->dirty));
    if (!n->links || !n->dirty || pq_init(&n->finish, 16) || pq_init(&n->r.heap, 16)) {
        net_free(n);
        return -ENOMEM;
    }
    for (int i = 0; i < nlinks; i++)
        n->links[i].cap = cap_Bps[i];
    n->dstamp = 1;            /* links start at 0: not yet marked */
    *out = n;
    return 0;
}

void net_free(struct net *n)
{
    if (!n)
        return;
    for (int i = 0; n->links && i < n->nlinks; i++)
        free(n->links[i].fl);
    free(n->links);
    free(n->flows);
    free(n->x);
    free(n->tofree);
    free(n->pend);
    free(n->dirty);
    free(n->r.link);
    free(n->r.off);
    free(n->r.xf);
    free(n->r.resid);
    free(n->r.left);
    free(n->r.lvl);
    pq_destroy(&n->finish);
    pq_destroy(&n->r.heap);
    free(n);
}

void net_observe_links(struct net *n, net_link_fn fn, void *arg)
{
    n->observe = fn;
    n->observe_arg = arg;
}

static void mark_dirty(struct net *n, int l)
{
    struct link *k = &n->links[l];
    if (k->dstamp != n->dstamp) {
        k->dstamp = n->dstamp;
        n->dirty[n->ndirty++] = l;
    }
}

int net_add_flow(struct net *n, const int *links, int nlinks, double bytes, double t_s)
{
    if (!(t_s >= n->now) || !isfinite(t_s) || !(bytes >= 0) || !isfinite(bytes) ||
        nlinks < 1 || nlinks > NET_MAX_HOPS || n->nflows == 0x7fffffff)
        return -EINVAL;
    for (int i = 0; i < nlinks; i++)
        if (links[i] < 0 || links[i] >= n->nlinks)
            return -EINVAL;
    if (grow((void **)&n->flows, &n->cap_flows, n->nflows + 1, sizeof(*n->flows)) ||
        grow((void **)&n->pend, &n->cap_pend, n->npend + 1, sizeof(*n->pend)) ||
        pq_grow(&n->finish, n->cap_flows))
        return -ENOMEM;
    for (int i = 0; i < nlinks; i++) {
        struct link *k = &n->links[links[i]];
        if (grow((void **)&k->fl, &k->capfl, k->nfl + 1, sizeof(*k->fl)))
            return -ENOMEM;
    }
    int id = n->nflows++;
    struct flow *f = &n->flows[id];
    memset(f, 0, sizeof(*f));
    f->bytes = f->rem = bytes;
    f->t_upd = t_s;
    f->t_end = NAN;
    f->bn = f->nbn = -1;
    f->nl = nlinks;
    f->pending = true;
    for (int i = 0; i < nlinks; i++) {
        struct link *k = &n->links[links[i]];
        f->links[i] = links[i];
        f->pos[i] = k->nfl;
        k->fl[k->nfl++] = id;
    }
    n->pend[n->npend++] = id;
    n->now = t_s;
    n->active++;
    return id;
}

/* Flow f leaves the fixed part: its rate no longer counts in its links' use. */
static int x_add(struct net *n, int id)
{
    struct flow *f = &n->flows[id];
    if (f->in_x)
        return 0;
    if (grow((void **)&n->x, &n->cap_x, n->nx + 1, sizeof(*n->x)))
        return -ENOMEM;
    f->in_x = true;
    n->x[n->nx++] = id;
    if (f->pending)
        return 0;
    for (int i = 0; i < f->nl; i++)
        n->links[f->links[i]].use -= f->rate;
    if (f->bn >= 0)
        n->links[f->bn].ngroup--;
    f->bn = -1;
    return 0;
}

/* Every flow whose bottleneck is link l joins X. O(flows on l). */
static int free_group(struct net *n, int l)
{
    struct link *k = &n->links[l];
    for (int i = 0; i < k->nfl && k->ngroup > 0; i++) {
        int id = k->fl[i];
        if (n->flows[id].bn == l && x_add(n, id))
            return -ENOMEM;
    }
    return 0;
}

static int round_reserve(struct round *r, int need)
{
    if (need <= r->cap_links)
        return 0;
    int c = r->cap_links ? 2 * r->cap_links : 64;
    while (c < need)
        c *= 2;
    int *link = realloc(r->link, (size_t)c * sizeof(*link));
    if (link)
        r->link = link;
    int *off = realloc(r->off, (size_t)c * sizeof(*off));
    if (off)
        r->off = off;
    double *resid = realloc(r->resid, (size_t)c * sizeof(*resid));
    if (resid)
        r->resid = resid;
    int *left = realloc(r->left, (size_t)c * sizeof(*left));
    if (left)
        r->left = left;
    double *lvl = realloc(r->lvl, (size_t)c * sizeof(*lvl));
    if (lvl)
        r->lvl = lvl;
    if (!link || !off || !resid || !left || !lvl || pq_grow(&r->heap, c))
        return -ENOMEM;
    r->cap_links = c;
    return 0;
}

/* Index the links X touches (k->local) and size the workspace; returns their count. */
static int round_index(struct net *n)
{
    struct round *r = &n->r;
    int nt = 0, nxf = 0;
    n->stamp++;
    for (int i = 0; i < n->nx; i++) {
        struct flow *f = &n->flows[n->x[i]];
        for (int j = 0; j < f->nl; j++) {
            struct link *k = &n->links[f->links[j]];
            if (k->stamp != n->stamp) {
                k->stamp = n->stamp;
                k->local = nt++;
            }
        }
        nxf += f->nl;
    }
    if (grow((void **)&r->xf, &r->cap_xf, nxf, sizeof(*r->xf)) || round_reserve(r, nt + 1))
        return -ENOMEM;
    return nt;
}

static void round_fill_csr(struct net *n, int nt)
{
    struct round *r = &n->r;
    memset(r->left, 0, (size_t)nt * sizeof(*r->left));
    for (int i = 0; i < n->nx; i++) {
        struct flow *f = &n->flows[n->x[i]];
        for (int j = 0; j < f->nl; j++) {
            struct link *k = &n->links[f->links[j]];
            r->left[k->local]++;
            r->link[k->local] = f->links[j];
        }
    }
    r->off[0] = 0;
    for (int l = 0; l < nt; l++)
        r->off[l + 1] = r->off[l] + r->left[l];
    for (int l = 0; l < nt; l++)
        r->left[l] = 0;
    for (int i = 0; i < n->nx; i++) {
        struct flow *f = &n->flows[n->x[i]];
        for (int j = 0; j < f->nl; j++) {
            int l = n->links[f->links[j]].local;
            r->xf[r->off[l] + r->left[l]++] = n->x[i];
        }
    }
}

/* Progressive filling of X on the capacity the fixed flows leave. A link's share
 * resid/left never falls when a flow on it freezes elsewhere (that flow's level is at
 * most the share), so the heap is lazy: a popped link whose share grew is pushed back,
 * and freezing a flow costs O(1) per link instead of a heap update. */
static void round_fill(struct net *n, int nt)
{
    struct round *r = &n->r;
    pq_clear(&r->heap);
    for (int l = 0; l < nt; l++) {
        struct link *k = &n->links[r->link[l]];
        r->resid[l] = k->cap - k->use;
        r->lvl[l] = -1;
        pq_set(&r->heap, l, r->resid[l] / r->left[l]);
    }
    for (int i = 0; i < n->nx; i++)
        n->flows[n->x[i]].nbn = -1;
    double level = 0;
    while (!pq_empty(&r->heap)) {
        int l = pq_top(&r->heap);
        double share = r->resid[l] / r->left[l];
        if (share > pq_top_key(&r->heap)) {
            pq_set(&r->heap, l, share);
            continue;
        }
        pq_pop(&r->heap);
        level = share > level ? share : level;
        r->lvl[l] = level;
        for (int i = r->off[l]; i < r->off[l + 1]; i++) {
            struct flow *f = &n->flows[r->xf[i]];
            if (f->nbn >= 0)
                continue;
            f->nbn = r->link[l];
            f->nrate = level;
            for (int j = 0; j < f->nl; j++) {
                int m = n->links[f->links[j]].local;
                if (m == l)
                    continue;
                r->resid[m] -= level;
                if (--r->left[m] == 0)
                    pq_remove(&r->heap, m);
            }
        }
        r->left[l] = 0;
    }
}

static bool above(double a, double b) { return a > b * (1 + NET_EPS_REL) + 1e-300; }

/* Queue link l's group to join X after this check (duplicates are harmless). */
static int defer_free(struct net *n, int l)
{
    if (grow((void **)&n->tofree, &n->cap_tofree, n->ntofree + 1, sizeof(*n->tofree)))
        return -ENOMEM;
    n->tofree[n->ntofree++] = l;
    return 0;
}

/* Condition (b) on link l, bottleneck of X flows at level lvl: a fixed flow above lvl
 * must give way, so its group joins X. O(flows on l), only when maxb is above lvl. */
static int check_fixed_below(struct net *n, int l, double lvl, double max_x)
{
    struct link *k = &n->links[l];
    if (!above(k->maxb, lvl))
        return 0;
    double fixed_max = 0;
    int bad = 0;
    for (int i = 0; i < k->nfl; i++) {
        const struct flow *f = &n->flows[k->fl[i]];
        if (f->in_x)
            continue;
        if (above(f->rate, lvl)) {
            if (defer_free(n, f->bn))
                return -ENOMEM;
            bad++;
        }
        fixed_max = f->rate > fixed_max ? f->rate : fixed_max;
    }
    k->maxb = fixed_max > max_x ? fixed_max : max_x;
    return bad;
}

/* Checks (a) and (b) on every link X touches, against this round's rates; the
 * violated groups then join X. Returns the number of violations (0: max-min fair). */
static int round_verify(struct net *n, int nt)
{
    struct round *r = &n->r;
    int bad = 0;
    n->ntofree = 0;
    for (int l = 0; l < nt; l++) {
        int id = r->link[l];
        struct link *k = &n->links[id];
        double sum = 0, max_x = 0;
        for (int i = r->off[l]; i < r->off[l + 1]; i++) {
            double v = n->flows[r->xf[i]].nrate;
            sum += v;
            max_x = v > max_x ? v : max_x;
        }
        if (k->ngroup > 0) {
            bool saturated = !above(k->cap, k->use + sum);
            if (!saturated || above(max_x, k->lvl)) {
                if (defer_free(n, id))
                    return -ENOMEM;
                bad++;
            }
        }
        if (r->lvl[l] >= 0) {
            int b = check_fixed_below(n, id, r->lvl[l], max_x);
            if (b < 0)
                return b;
            bad += b;
        }
    }
    for (int i = 0; i < n->ntofree; i++)
        if (free_group(n, n->tofree[i]))
            return -ENOMEM;
    return bad;
}

static double flow_finish(const struct flow *f)
{
    return f->rate > 0 ? f->t_upd + f->rem / f->rate : INFINITY;
}

/* The solved rates become the rates. A flow whose rate did not change keeps its
 * progress record and its place in the finish heap. */
static void commit(struct net *n)
{
    for (int i = 0; i < n->nx; i++) {
        int id = n->x[i];
        struct flow *f = &n->flows[id];
        bool same = !f->pending && f->nrate == f->rate;
        if (!f->pending && !same) {
            f->rem -= f->rate * (n->now - f->t_upd);
            if (f->rem <= NET_EPS_REL * f->bytes)
                f->rem = 0;
            f->t_upd = n->now;
        }
        f->pending = false;
        f->in_x = false;
        f->rate = f->nrate;
        f->bn = f->nbn;
        struct link *b = &n->links[f->bn];
        b->ngroup++;
        b->lvl = f->rate;
        for (int j = 0; j < f->nl; j++) {
            struct link *k = &n->links[f->links[j]];
            k->use += f->rate;
            k->maxb = f->rate > k->maxb ? f->rate : k->maxb;
            if (n->observe)
                mark_dirty(n, f->links[j]);
        }
        if (!same)
            pq_set(&n->finish, id, flow_finish(f));
    }
    n->nx = 0;
}

static int repair(struct net *n)
{
    for (int i = 0; i < n->npend; i++)
        if (x_add(n, n->pend[i]))
            return -ENOMEM;
    n->npend = 0;
    if (n->nx == 0)
        return 0;
    n->stats.events++;
    for (;;) {
        int nt = round_index(n);
        if (nt < 0)
            return nt;
        round_fill_csr(n, nt);
        round_fill(n, nt);
        n->stats.rounds++;
        n->stats.flows_resolved += (uint64_t)n->nx;
        int bad = round_verify(n, nt);
        if (bad < 0)
            return bad;
        if (bad == 0)
            break;
    }
    commit(n);
    return 0;
}

static void flush_dirty(struct net *n)
{
    for (int i = 0; i < n->ndirty; i++) {
        struct link *k = &n->links[n->dirty[i]];
        if (k->nfl == 0)
            k->use = 0;       /* no drift once a link is idle */
        if (n->observe)
            n->observe(n->observe_arg, n->dirty[i], n->now, k->use);
    }
    n->ndirty = 0;
    n->dstamp++;
}

double net_next_finish_s(struct net *n, int *err)
{
    int e = 0;
    if (n->npend) {
        e = repair(n);
        flush_dirty(n);
    }
    if (err)
        *err = e;
    return pq_empty(&n->finish) ? INFINITY : pq_top_key(&n->finish);
}

/* Takes finished flow id off its links; its links' groups lose their bottleneck. */
static void retire(struct net *n, int id, double t)
{
    struct flow *f = &n->flows[id];
    f->done = true;
    f->t_end = t;
    f->rem = 0;
    for (int i = 0; i < f->nl; i++) {
        struct link *k = &n->links[f->links[i]];
        k->use -= f->rate;
        int moved = k->fl[--k->nfl];
        if (moved != id) {
            struct flow *g = &n->flows[moved];
            int p = f->pos[i];
            k->fl[p] = moved;
            for (int j = 0; j < g->nl; j++)
                if (g->links[j] == f->links[i])
                    g->pos[j] = p;
        }
        mark_dirty(n, f->links[i]);
    }
    if (f->bn >= 0)
        n->links[f->bn].ngroup--;
    f->rate = 0;
    n->active--;
}

/* Is the flow at the top of the heap done at time t (or within NET_EPS_REL of its size)? */
static bool top_done(const struct net *n, double t)
{
    int id = pq_top(&n->finish);
    if (id < 0)
        return false;
    const struct flow *f = &n->flows[id];
    double key = pq_top_key(&n->finish);
    return key <= t || (key - t) * f->rate <= NET_EPS_REL * f->bytes;
}

/* One event: every flow done at time t finishes, then the rates are repaired. */
static int step(struct net *n, double t, net_done_fn fn, void *arg, int *count)
{
    n->now = t;
    int *done = NULL, ndone = 0, cap = 0;
    while (top_done(n, t)) {
        int id = pq_pop(&n->finish);
        if (grow((void **)&done, &cap, ndone + 1, sizeof(*done))) {
            free(done);
            return -ENOMEM;
        }
        done[ndone++] = id;
        retire(n, id, t);
    }
    int e = 0;
    for (int i = 0; i < ndone && !e; i++) {
        const struct flow *f = &n->flows[done[i]];
        for (int j = 0; j < f->nl && !e; j++)
            if (n->links[f->links[j]].ngroup > 0)
                e = free_group(n, f->links[j]);
    }
    if (!e)
        e = repair(n);
    flush_dirty(n);
    for (int i = 0; i < ndone && !e; i++) {
        (*count)++;
        if (fn)
            fn(arg, done[i], t);
    }
    free(done);
    return e;
}

int net_advance(struct net *n, double t_s, net_done_fn fn, void *arg)
{
    if (!(t_s >= n->now))
        return -EINVAL;
    int count = 0;
    for (;;) {
        int e = 0;
        double next = net_next_finish_s(n, &e);
        if (e)
            return e;
        if (next > t_s || next == INFINITY)
            break;
        e = step(n, next > n->now ? next : n->now, fn, arg, &count);
        if (e)
            return e;
    }
    if (isfinite(t_s))
        n->now = t_s;
    return count;
}

double net_flow_rate_Bps(const struct net *n, int flow) { return n->flows[flow].rate; }
double net_flow_end_s(const struct net *n, int flow) { return n->flows[flow].t_end; }
double net_link_use_Bps(const struct net *n, int link) { return n->links[link].use; }
int net_active_flows(const struct net *n) { return n->active; }
struct net_stats net_get_stats(const struct net *n) { return n->stats; }
