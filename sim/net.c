/* net.c: flow-level network: flows, their groups, and time. The max-min repair that
 * decides the groups is maxmin.c; their shared state is maxmin.h.
 *
 * Rates are exactly max-min fair after every event (Bertsekas & Gallager, Data
 * Networks, sec. 6.5.2): every running flow is a member of the group of its bottleneck
 * link, at the group's level; maxmin.c re-solves, after each start or finish, only the
 * groups the event couples to, and this file commits the result.
 *
 * Progress is lazy, per group: the fluid form of virtual time in fair queueing (Demers,
 * Keshav & Shenker, SIGCOMM 1989; Parekh & Gallager, IEEE/ACM ToN 1(3), 1993). A
 * group's clock clk counts the bytes each member has received; a member is done when
 * clk reaches its key (clk when it joined + its bytes left then). A group whose level
 * changes advances its clock, O(1), and moves in the heap of groups by next finish,
 * O(log groups), however many members it has; a flow that joins, leaves or finishes
 * costs O(log members) in its group's heap.
 *
 * Cost per event: O(members of the re-solved groups * hops) simple passes plus
 * O(log) per group and per moved flow (see maxmin.c); in the worst case every group is
 * re-solved, O(flows * hops) per event and O(flows^2 * hops) for a whole run.
 * Memory: O(flows * hops + links).
 */
#include "net.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "maxmin.h"
#include "pq.h"

/* A group's clock restarts at 0 (keys keep their distance to it) before it passes
 * CLK_REBASE times its smallest member's size, so a remainder key - clk keeps a
 * relative error below 2^20 * 2^-52 ~ 2.3e-10 of that size, under NET_EPS_REL. */
#define CLK_REBASE 1048576.0

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
    size_t nl = (size_t)nlinks;
    n->nlinks = nlinks;
    n->links = calloc(nl, sizeof(*n->links));
    n->xg = malloc(nl * sizeof(*n->xg));
    n->flag = malloc(nl * sizeof(*n->flag));
    n->dirty = malloc(nl * sizeof(*n->dirty));
    if (!n->links || !n->xg || !n->flag || !n->dirty || maxmin_init(&n->r, nlinks) ||
        pq_init(&n->finish, nlinks)) {
        net_free(n);
        return -ENOMEM;
    }
    for (int i = 0; i < nlinks; i++)
        n->links[i].cap = cap_Bps[i];
    n->xstamp = n->rstamp = n->dstamp = 1;
    *out = n;
    return 0;
}

void net_free(struct net *n)
{
    if (!n)
        return;
    for (int i = 0; n->links && i < n->nlinks; i++) {
        free(n->links[i].fl);
        free(n->links[i].m);
    }
    free(n->links);
    free(n->flows);
    free(n->pend);
    free(n->xg);
    free(n->flag);
    free(n->join);
    free(n->done);
    free(n->bits);
    free(n->dirty);
    maxmin_free(&n->r);
    pq_destroy(&n->finish);
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

/* ---- groups: member heaps and clocks ---- */

static bool mem_less(const struct member *a, const struct member *b)
{
    return a->key < b->key || (a->key == b->key && a->id < b->id);
}

static void mem_place(struct net *n, struct link *g, int i, const struct member *m)
{
    g->m[i] = *m;
    n->flows[m->id].hpos = i;
}

static void mem_sift_up(struct net *n, struct link *g, int i)
{
    struct member m = g->m[i];
    while (i > 0 && mem_less(&m, &g->m[(i - 1) / 2])) {
        mem_place(n, g, i, &g->m[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    mem_place(n, g, i, &m);
}

static void mem_sift_down(struct net *n, struct link *g, int i)
{
    struct member m = g->m[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= g->nm)
            break;
        if (c + 1 < g->nm && mem_less(&g->m[c + 1], &g->m[c]))
            c++;
        if (!mem_less(&g->m[c], &m))
            break;
        mem_place(n, g, i, &g->m[c]);
        i = c;
    }
    mem_place(n, g, i, &m);
}

/* Restarts g's clock at 0; keys keep their distance to it. O(members). */
static void grp_rebase(struct net *n, struct link *g)
{
    double minb = INFINITY;
    for (int i = 0; i < g->nm; i++) {
        double b = n->flows[g->m[i].id].bytes;
        g->m[i].key -= g->clk;
        minb = b > 0 && b < minb ? b : minb;
    }
    g->clk = 0;
    g->minb = minb;
}

/* g's clock reaches now at its current level. */
static void grp_advance(struct net *n, struct link *g)
{
    g->clk += g->lvl * (n->now - g->t_clk);
    g->t_clk = n->now;
    if (g->clk > CLK_REBASE * g->minb)
        grp_rebase(n, g);
}

/* The flow of record m (key = its bytes left) joins group l; room reserved. The clock
 * restarts first if it is too long for the newcomer's size (see CLK_REBASE). */
static void grp_join(struct net *n, int l, const struct member *m)
{
    struct link *g = &n->links[l];
    struct flow *f = &n->flows[m->id];
    double b = f->bytes > 0 ? f->bytes : INFINITY;
    if (g->nm == 0) {
        g->clk = 0;
        g->t_clk = n->now;
        g->minb = INFINITY;
    } else if (g->clk > CLK_REBASE * fmin(g->minb, b)) {
        grp_rebase(n, g);
    }
    g->minb = fmin(g->minb, b);
    f->bn = l;
    struct member *in = &g->m[g->nm++];
    *in = *m;
    in->key += g->clk;
    for (int j = 1; j < in->nl; j++)          /* the group's own link first */
        if (in->links[j] == l) {
            in->links[j] = in->links[0];
            in->links[0] = l;
        }
    mem_sift_up(n, g, g->nm - 1);
}

/* The member at heap index i leaves group l, whose clock is current: its record, with
 * key = its bytes left. */
static struct member grp_leave(struct net *n, int l, int i)
{
    struct link *g = &n->links[l];
    struct member m = g->m[i];
    m.key = m.key > g->clk ? m.key - g->clk : 0;
    n->flows[m.id].bn = -1;
    g->nm--;
    if (i < g->nm) {
        int moved = g->m[g->nm].id;
        mem_place(n, g, i, &g->m[g->nm]);
        mem_sift_down(n, g, i);
        mem_sift_up(n, g, n->flows[moved].hpos);
    }
    return m;
}

/* Puts group l back in the finish heap at its next completion. */
static void grp_resched(struct net *n, int l)
{
    struct link *g = &n->links[l];
    if (g->nm == 0) {
        pq_remove(&n->finish, l);
        return;
    }
    double t = g->lvl > 0 ? g->t_clk + (g->m[0].key - g->clk) / g->lvl : INFINITY;
    pq_set(&n->finish, l, t);
}

static int check_links(const struct net *n, const int *links, int nl)
{
    if (nl < 1 || nl > NET_MAX_HOPS)
        return -EINVAL;
    for (int i = 0; i < nl; i++) {
        if (links[i] < 0 || links[i] >= n->nlinks)
            return -EINVAL;
        for (int j = 0; j < i; j++)
            if (links[j] == links[i])
                return -EINVAL;
    }
    return 0;
}

int net_add_flow(struct net *n, const int *links, int nlinks, double bytes, double t_s)
{
    if (!(t_s >= n->now) || !isfinite(t_s) || !(bytes >= 0) || !isfinite(bytes) ||
        n->nflows == 0x7fffffff || check_links(n, links, nlinks))
        return -EINVAL;
    if (grow((void **)&n->flows, &n->cap_flows, n->nflows + 1, sizeof(*n->flows)) ||
        grow((void **)&n->pend, &n->cap_pend, n->npend + 1, sizeof(*n->pend)))
        return -ENOMEM;
    for (int i = 0; i < nlinks; i++) {
        struct link *k = &n->links[links[i]];
        if (grow((void **)&k->fl, &k->capfl, k->nfl + 1, sizeof(*k->fl)))
            return -ENOMEM;
    }
    int id = n->nflows++;
    n->flows[id] = (struct flow){ .bytes = bytes, .t_end = NAN, .bn = -1, .nbn = -1,
                                  .hpos = n->npend };
    struct member *m = &n->pend[n->npend++];
    *m = (struct member){ .key = bytes, .id = id, .nl = nlinks };
    for (int i = 0; i < nlinks; i++) {
        struct link *k = &n->links[links[i]];
        m->links[i] = links[i];
        k->fl[k->nfl++] = id;
        k->nlive++;
    }
    n->now = t_s;
    n->active++;
    return id;
}

/* ---- commit: the repair's solution becomes the state ---- */

/* Room in the heaps of the groups that gain flows, before anything changes. */
static int commit_reserve(struct net *n)
{
    struct round *r = &n->r;
    for (int k = 0; k < r->nk; k++)
        r->left[k] = 0;
    for (int i = 0; i < r->nsplit; i++)
        r->left[n->links[n->flows[r->split[i].id].nbn].k]++;
    for (int i = 0; i < n->npend; i++)
        r->left[n->links[n->flows[n->pend[i].id].nbn].k]++;
    for (int k = 0; k < r->nk; k++) {
        struct link *L = &n->links[r->klink[k]];
        if (grow((void **)&L->m, &L->capm, L->nm + r->left[k], sizeof(*L->m)))
            return -ENOMEM;
    }
    return 0;
}

static int commit(struct net *n)
{
    struct round *r = &n->r;
    if (commit_reserve(n))
        return -ENOMEM;
    for (int e = 0; e < r->nent; e++)
        grp_advance(n, &n->links[r->ent[e].id]);
    for (int i = 0; i < r->nsplit; i++) {
        const struct flow *f = &n->flows[r->split[i].id];
        r->split[i] = grp_leave(n, f->bn, f->hpos);
    }
    for (int i = 0; i < r->nsplit; i++)
        grp_join(n, n->flows[r->split[i].id].nbn, &r->split[i]);
    for (int i = 0; i < n->npend; i++)
        grp_join(n, n->flows[n->pend[i].id].nbn, &n->pend[i]);
    for (int k = 0; k < r->nk; k++)
        if (r->klvl[k] >= 0)
            n->links[r->klink[k]].lvl = r->klvl[k];
    for (int k = 0; k < r->nk; k++)
        grp_resched(n, r->klink[k]);
    for (int i = 0; i < r->ntouched; i++) {
        struct link *k = &n->links[r->touched[i]];
        k->use += k->d_use;
        if (k->exact == n->rstamp || k->d_max > k->maxo)
            k->maxo = k->d_max;
        if (n->observe)
            mark_dirty(n, r->touched[i]);
    }
    n->npend = n->nxg = n->nflag = 0;
    n->xstamp++;
    return 0;
}

/* Re-solves what the event touched and commits it. */
static int repair(struct net *n)
{
    int e = maxmin_solve(n);
    return e > 0 ? commit(n) : e;
}

/* ---- time ---- */

static void flush_dirty(struct net *n)
{
    for (int i = 0; i < n->ndirty; i++) {
        struct link *k = &n->links[n->dirty[i]];
        if (k->nlive == 0)
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

/* Is the first member of the first group done at time t (or within NET_EPS_REL of its
 * size)? */
static bool top_done(const struct net *n, double t)
{
    int l = pq_top(&n->finish);
    if (l < 0)
        return false;
    const struct link *g = &n->links[l];
    double tf = pq_top_key(&n->finish);
    return tf <= t || (tf - t) * g->lvl <= NET_EPS_REL * n->flows[g->m[0].id].bytes;
}

/* Drops done flows from link k's list once they are the majority: O(1) amortized. */
static void fl_compact(struct net *n, struct link *k)
{
    if (k->nfl <= 2 * k->nlive + 8)
        return;
    int w = 0;
    for (int i = 0; i < k->nfl; i++)
        if (!n->flows[k->fl[i]].done)
            k->fl[w++] = k->fl[i];
    k->nfl = w;
}

/* The first member of group l finishes at t. */
static void retire(struct net *n, int l, double t)
{
    double rate = n->links[l].lvl;
    struct member m = grp_leave(n, l, 0);
    struct flow *f = &n->flows[m.id];
    grp_resched(n, l);
    f->done = true;
    f->t_end = t;
    for (int i = 0; i < m.nl; i++) {
        struct link *k = &n->links[m.links[i]];
        k->use -= rate;
        k->nlive--;
        fl_compact(n, k);
        mark_dirty(n, m.links[i]);
        if (k->nm > 0)
            x_add(n, m.links[i]);
    }
    n->active--;
}

static int by_id(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The done list in flow id order: qsort when short, a pass over a bitmap of ids when
 * long (O(done + flows / 64)). */
static int sort_done(struct net *n)
{
    int words = (n->nflows + 63) / 64;
    if ((int64_t)n->ndone * 64 < words || n->ndone < 64) {
        qsort(n->done, (size_t)n->ndone, sizeof(*n->done), by_id);
        return 0;
    }
    if (grow((void **)&n->bits, &n->cap_bits, words, sizeof(*n->bits)))
        return -ENOMEM;
    memset(n->bits, 0, (size_t)words * sizeof(*n->bits));
    for (int i = 0; i < n->ndone; i++)
        n->bits[n->done[i] / 64] |= (uint64_t)1 << (n->done[i] % 64);
    int k = 0;
    for (int w = 0; w < words; w++)
        for (uint64_t b = n->bits[w]; b; b &= b - 1)
            n->done[k++] = 64 * w + __builtin_ctzll(b);
    return 0;
}

/* Retires, into the done list, every flow that finishes by `until` at the current rates,
 * each at its finish time clamped to [now, until]; *last gets the latest. */
static int retire_until(struct net *n, double until, double *last)
{
    n->ndone = 0;
    *last = n->now;
    while (top_done(n, until)) {
        int l = pq_top(&n->finish);
        double t = fmin(fmax(pq_top_key(&n->finish), n->now), until);
        if (grow((void **)&n->done, &n->cap_done, n->ndone + 1, sizeof(*n->done)))
            return -ENOMEM;
        n->done[n->ndone++] = n->links[l].m[0].id;
        retire(n, l, t);
        *last = fmax(*last, t);
    }
    return 0;
}

/* One event: every flow done at time t finishes, then the rates are repaired. */
static int step(struct net *n, double t, net_done_fn fn, void *arg, int *count)
{
    double last;
    n->now = t;
    if (retire_until(n, t, &last))
        return -ENOMEM;
    int e = repair(n);
    flush_dirty(n);
    if (!e)
        e = sort_done(n);
    for (int i = 0; i < n->ndone && !e; i++) {
        (*count)++;
        if (fn)
            fn(arg, n->done[i], t);
    }
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

struct end_key {
    double t_s;
    int id;
};

static int by_end(const void *a, const void *b)
{
    const struct end_key *x = a, *y = b;
    if (x->t_s != y->t_s)
        return x->t_s < y->t_s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int net_advance_window(struct net *n, double until_s, net_done_fn fn, void *arg)
{
    if (!(until_s >= n->now))
        return -EINVAL;
    int e = 0;
    double first = net_next_finish_s(n, &e), last;
    if (e || !(first <= until_s))
        return e;
    if (retire_until(n, until_s, &last))
        return -ENOMEM;
    n->now = last;
    e = repair(n);
    flush_dirty(n);
    struct end_key *k = e ? NULL : malloc((size_t)n->ndone * sizeof(*k) + 1);
    if (!k)
        return e ? e : -ENOMEM;
    for (int i = 0; i < n->ndone; i++)
        k[i] = (struct end_key){ n->flows[n->done[i]].t_end, n->done[i] };
    qsort(k, (size_t)n->ndone, sizeof(*k), by_end);
    for (int i = 0; i < n->ndone && fn; i++)
        fn(arg, k[i].id, k[i].t_s);
    free(k);
    return n->ndone;
}

double net_flow_rate_Bps(const struct net *n, int flow)
{
    const struct flow *f = &n->flows[flow];
    return f->bn >= 0 ? n->links[f->bn].lvl : 0;
}

double net_flow_end_s(const struct net *n, int flow) { return n->flows[flow].t_end; }
double net_flow_left_bytes(const struct net *n, int flow)
{
    const struct flow *f = &n->flows[flow];
    if (f->done)
        return 0;
    if (f->bn < 0)
        return n->pend[f->hpos].key;          /* added since the last repair */
    const struct link *g = &n->links[f->bn];
    double left = g->m[f->hpos].key - (g->clk + g->lvl * (n->now - g->t_clk));
    return left > 0 ? left : 0;
}

double net_link_use_Bps(const struct net *n, int link) { return n->links[link].use; }
int net_active_flows(const struct net *n) { return n->active; }
struct net_stats net_get_stats(const struct net *n) { return n->stats; }
