/* maxmin.c: the max-min repair of net.c: new groups and levels after flows start or
 * finish, exact, on groups rather than flows. State: maxmin.h.
 *
 * Bertsekas & Gallager (Data Networks, 2nd ed., sec. 6.5.2): a feasible rate vector is
 * max-min fair iff every flow has a bottleneck link, i.e. a saturated link on which no
 * flow has a higher rate; that allocation is unique. In the state every running flow is
 * a member of one such link's group, at the group's level. A round:
 *  1. X: the groups to re-solve (net.c puts in the groups of every link a finished flow
 *     crossed); pending flows are re-solved one by one. Closure: a group whose link a
 *     member of X or a pending flow crosses joins X (its load changes, so step 4 would
 *     fail it). The closure follows the coupling of levels: a group's level depends on
 *     the lower levels of the other flows on its link.
 *     K: the links of X groups and of pending flows, plus links flagged by step 4.
 *  2. Progressive filling over K, an X group counted as a block of c flows on each K
 *     link its members cross c times: when a K link saturates, the unfrozen flows on it
 *     freeze at the current level: a whole block when it is the group's own link, else
 *     the group splits and only its members on that link move to that link's group.
 *     The fixed flows (all others) only take capacity. Links outside K are not limits.
 *  3. Every link whose load changes gets its change of use (d_use) in one pass over the
 *     members of X groups whose level or membership changed.
 *  4. Check what step 2 assumed: a link outside K must not be over capacity (if it is,
 *     it is flagged into K); a link that became a bottleneck at level L must carry no
 *     fixed flow above L (if it does, that flow's group joins X). Each link keeps an
 *     upper bound (maxo) on the rates of the flows on it outside its group, so the
 *     O(flows on the link) scan happens only when the bound is above L and some flow on
 *     the link is fixed. Any violation: another round, with X and K larger (they only
 *     grow, so rounds end). With none, every flow has a bottleneck: fixed groups keep
 *     theirs (no flow of the round crosses their links), and step 2 gave the others one.
 * Tolerances: a link is over capacity, a rate above a level, when larger by more than
 * NET_EPS_REL relative.
 *
 * Cost of a round: O(M h) for steps 1 and 3, M the members of X groups plus the pending
 * flows and h their hops; O(E + |K| log |K|) for step 2, E <= M h the (group, K link)
 * edges, with a lazy heap (a share never falls when flows freeze elsewhere); a split
 * costs O(min(members of the group, flows on the link)) to find its flows and O(hops)
 * per flow that splits (step 1 records each member hop's edge), a failed bound
 * O(flows on the link). No per-flow heap work: levels and finish times live in
 * the groups. M is what the event couples to: a source group and the hot destinations
 * above it in an all-to-all, every group when a hot destination's level moves.
 */
#include "maxmin.h"

#include <math.h>
#include <string.h>

/* ---- a round's unknowns: X, K and the edges between them ---- */

static bool above(double a, double b) { return a > b * (1 + NET_EPS_REL) + 1e-300; }

/* Link l joins K: all its capacity but the fixed flows' use is the round's (the round's
 * grouped flows add their rates back as they are counted). */
static void k_add(struct net *n, int l)
{
    struct link *k = &n->links[l];
    struct round *r = &n->r;
    if (k->kstamp == n->rstamp)
        return;
    k->kstamp = n->rstamp;
    k->k = r->nk;
    k->last_ent = -1;
    r->khead[r->nk] = -1;
    r->left[r->nk] = 0;
    r->pleft[r->nk] = 0;
    r->resid[r->nk] = k->cap - k->use;
    r->klvl[r->nk] = -1;
    r->klink[r->nk++] = l;
}

/* X group l becomes one of this round's entities, and its link joins K. */
static int ent_add(struct net *n, int l)
{
    struct round *r = &n->r;
    if (grow((void **)&r->ent, &r->cap_ent, r->nent + 1, sizeof(*r->ent)))
        return -ENOMEM;
    r->ent[r->nent] = (struct ent){ .id = l };
    n->links[l].ent = r->nent++;
    k_add(n, l);
    return 0;
}

/* Closure: a fixed group whose link a flow of the round crosses joins X. */
static int pull(struct net *n, int l)
{
    const struct link *k = &n->links[l];
    if (k->nm > 0 && k->xstamp != n->xstamp && x_add(n, l))
        return ent_add(n, l);
    return 0;
}

/* A new edge from entity e to K link k (the caller reserved room). */
static void edge_add(struct round *r, struct link *k, int e, int cnt)
{
    k->last_ent = e;
    k->last_edge = r->nedge;
    r->edge[r->nedge] = (struct edge){ .ent = e, .k = k->k, .cnt = cnt,
                                       .next = r->khead[k->k] };
    r->khead[k->k] = r->nedge++;
}

/* Edges of entity e: one per K link its members cross. Closure on the way: a member
 * crossing a fixed group's link pulls that group into X (and K). A K link is never a
 * fixed group's: X groups' links, pending flows' links (pulled) and flagged links (no
 * group) make up K. O(members * hops). */
static int ent_scan(struct net *n, int e)
{
    struct round *r = &n->r;
    struct link *links = n->links, *g = &links[r->ent[e].id];
    if (grow((void **)&r->edge, &r->cap_edge, r->nedge + 1 + g->nm * (NET_MAX_HOPS - 1),
             sizeof(*r->edge)) ||
        grow((void **)&r->hedge, &r->cap_hedge, (r->nhedge + g->nm) * NET_MAX_HOPS,
             sizeof(*r->hedge)))
        return -ENOMEM;
    r->ent[e].e0 = r->nedge;
    r->ent[e].h0 = r->nhedge;
    int *hedge = r->hedge + (size_t)r->nhedge * NET_MAX_HOPS;
    r->nhedge += g->nm;
    edge_add(r, g, e, g->nm);     /* every member crosses its group's link */
    r->left[g->k] += g->nm;
    r->resid[g->k] += g->nm * g->lvl;
    struct edge *edge = r->edge;
    int *left = r->left;
    double *resid = r->resid, lvl = g->lvl;
    unsigned rs = n->rstamp;
    for (const struct member *m = g->m, *end = g->m + g->nm; m < end;
         m++, hedge += NET_MAX_HOPS) {
        int nl = m->nl;
        hedge[0] = 0;
        for (int j = 1; j < nl; j++) {        /* links[0] is own */
            int l = m->links[j];
            struct link *k = &links[l];
            hedge[j] = -1;
            if (k->kstamp != rs && k->nm == 0)
                continue;
            if (k->kstamp != rs && x_add(n, l) && ent_add(n, l))
                return -ENOMEM;
            if (k->last_ent != e)
                edge_add(r, k, e, 0);
            hedge[j] = k->last_edge;
            edge[k->last_edge].cnt++;
            left[k->k]++;
            resid[k->k] += lvl;
        }
    }
    r->ent[e].e1 = r->nedge;
    n->stats.flows_resolved += (uint64_t)g->nm;
    return 0;
}

/* Entities, K and edges of this round; X grows by closure while it is scanned. */
static int round_build(struct net *n)
{
    struct round *r = &n->r;
    n->rstamp++;
    r->nent = r->nedge = r->nk = r->ntouched = r->nsplit = r->nhedge = 0;
    for (int i = 0; i < n->nflag; i++)
        k_add(n, n->flag[i]);
    for (int i = 0; i < n->nxg; i++)
        if (ent_add(n, n->xg[i]))
            return -ENOMEM;
    for (int i = 0; i < n->npend; i++) {
        const struct member *m = &n->pend[i];
        n->flows[m->id].nbn = -1;
        for (int j = 0; j < m->nl; j++) {
            k_add(n, m->links[j]);
            r->left[n->links[m->links[j]].k]++;
            r->pleft[n->links[m->links[j]].k]++;
            if (pull(n, m->links[j]))
                return -ENOMEM;
        }
    }
    n->stats.flows_resolved += (uint64_t)n->npend;
    for (int e = 0; e < r->nent; e++)
        if (ent_scan(n, e))
            return -ENOMEM;
    return 0;
}

/* Counting sort of the pending flows' hops by K link. */
static int round_csr(struct net *n)
{
    struct round *r = &n->r;
    int nph = 0;
    for (int i = 0; i < n->npend; i++)
        nph += n->pend[i].nl;
    if (grow((void **)&r->kpend, &r->cap_kpend, nph, sizeof(*r->kpend)))
        return -ENOMEM;
    memset(r->poff, 0, (size_t)(r->nk + 1) * sizeof(*r->poff));
    for (int i = 0; i < n->npend; i++)
        for (int j = 0; j < n->pend[i].nl; j++)
            r->poff[n->links[n->pend[i].links[j]].k + 1]++;
    for (int k = 0; k < r->nk; k++)
        r->poff[k + 1] += r->poff[k];
    for (int i = 0; i < n->npend; i++)
        for (int j = 0; j < n->pend[i].nl; j++)
            r->kpend[r->poff[n->links[n->pend[i].links[j]].k]++] = i;
    for (int k = r->nk; k > 0; k--)
        r->poff[k] = r->poff[k - 1];
    r->poff[0] = 0;
    return 0;
}

/* ---- progressive filling ---- */

static void kh_put(struct kheap *h, int i, double key, int k)
{
    h->key[i] = key;
    h->k[i] = k;
    h->pos[k] = i;
}

/* The smaller child is picked without a branch (the comparison is data-dependent and
 * mispredicted half the time); among equal keys the order is the heap's, which depends
 * only on the sequence of operations, so it is deterministic. */
static void kh_down(struct kheap *h, int i)
{
    double key = h->key[i];
    int k = h->k[i], half = (h->n - 1) / 2;
    const double *hk = h->key;
    while (i < half) {                    /* both children exist */
        int c = 2 * i + 1;
        c += hk[c + 1] < hk[c];
        if (!(hk[c] < key))
            break;
        kh_put(h, i, hk[c], h->k[c]);
        i = c;
    }
    if (i == half && 2 * i + 1 < h->n && hk[2 * i + 1] < key) {   /* an only child */
        kh_put(h, i, hk[2 * i + 1], h->k[2 * i + 1]);
        i = 2 * i + 1;
    }
    kh_put(h, i, key, k);
}

static void kh_up(struct kheap *h, int i)
{
    double key = h->key[i];
    int k = h->k[i];
    while (i > 0 && key < h->key[(i - 1) / 2]) {
        kh_put(h, i, h->key[(i - 1) / 2], h->k[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    kh_put(h, i, key, k);
}

/* Removes the entry at heap index i. */
static void kh_delete(struct kheap *h, int i)
{
    int k = h->k[h->n - 1];
    h->pos[h->k[i]] = -1;
    if (i == --h->n)
        return;
    kh_put(h, i, h->key[h->n], k);
    kh_down(h, i);
    kh_up(h, h->pos[k]);
}

/* cnt flows frozen elsewhere at level lvl leave K link k. Shares never fall when flows
 * freeze elsewhere (their level is at most the share), so the heap is lazy. */
static inline void k_release(struct round *r, int k, int cnt, double lvl)
{
    r->resid[k] -= cnt * lvl;
    r->left[k] -= cnt;
    if (r->left[k] == 0 && r->heap.pos[k] >= 0)
        kh_delete(&r->heap, r->heap.pos[k]);
}

/* The heap of K links by share (capacity left to the round / its unfrozen flows). */
static void fill_init(struct net *n)
{
    struct round *r = &n->r;
    struct kheap *h = &r->heap;
    h->n = 0;
    for (int k = 0; k < r->nk; k++) {
        r->nround[k] = r->left[k];
        h->pos[k] = -1;
        if (r->left[k] > 0) {
            h->key[h->n] = r->resid[k] / r->left[k];
            h->k[h->n] = k;
            h->pos[k] = h->n++;
        }
    }
    for (int i = h->n / 2 - 1; i >= 0; i--)
        kh_down(h, i);
    memset(r->kmem, 0, (size_t)r->nk * sizeof(*r->kmem));
    for (int i = 0; i < r->nedge; i++)        /* every edge starts with cnt > 0 */
        r->kmem[r->edge[i].k] += n->links[r->ent[r->edge[i].ent].id].nm;
}

/* Entity x's remaining block freezes at K link k. */
static void freeze_block(struct round *r, struct ent *x, int nm, int k, double lvl)
{
    for (int i = x->e0; i < x->e1; i++) {
        struct edge *d = &r->edge[i];
        if (d->cnt > 0 && d->k != k)
            k_release(r, d->k, d->cnt, lvl);
        if (d->cnt > 0)
            r->kmem[d->k] -= nm;
        d->cnt = 0;
    }
    x->frozen = true;
    x->lvl = lvl;
}

/* The pending flows on K link k that are still unfrozen freeze there. */
static void freeze_pending(struct net *n, int k, double lvl)
{
    struct round *r = &n->r;
    int l = r->klink[k];
    for (int i = r->poff[k]; i < r->poff[k + 1]; i++) {
        const struct member *m = &n->pend[r->kpend[i]];
        struct flow *f = &n->flows[m->id];
        if (f->nbn >= 0)
            continue;
        f->nbn = l;
        f->nrate = lvl;
        for (int j = 0; j < m->nl; j++) {
            int kj = n->links[m->links[j]].k;
            r->pleft[kj]--;
            if (kj != k)
                k_release(r, kj, 1, lvl);
        }
    }
}

/* Grouped flow id, of an unfrozen X group, freezes alone at link l. */
static int split_flow(struct net *n, int id, int l, double lvl)
{
    struct round *r = &n->r;
    struct flow *f = &n->flows[id];
    const struct member *m = &n->links[f->bn].m[f->hpos];
    int e = n->links[f->bn].ent;
    if (grow((void **)&r->split, &r->cap_split, r->nsplit + 1, sizeof(*r->split)))
        return -ENOMEM;
    r->split[r->nsplit++] = *m;
    f->rstamp = n->rstamp;
    f->nbn = l;
    f->nrate = lvl;
    r->ent[e].nsplit++;
    int *hedge = r->hedge + (size_t)(r->ent[e].h0 + f->hpos) * NET_MAX_HOPS;
    hedge[0] = 1;
    for (int j = 0; j < m->nl; j++) {
        const struct link *L = &n->links[m->links[j]];
        if (L->kstamp != n->rstamp)
            continue;
        struct edge *d = &r->edge[j == 0 ? r->ent[e].e0 : hedge[j]];
        if (--d->cnt == 0)
            r->kmem[d->k] -= n->links[r->ent[e].id].nm;
        if (m->links[j] != l)
            k_release(r, L->k, 1, lvl);
    }
    return 0;
}

/* The unfrozen members of X group x that cross link l freeze there. O(x's members). */
static int split_group(struct net *n, const struct ent *x, int l, double lvl)
{
    const struct link *g = &n->links[x->id];
    for (int i = 0; i < g->nm; i++) {
        const struct member *m = &g->m[i];
        bool on_l = false;
        for (int j = 0; j < m->nl; j++)
            on_l |= m->links[j] == l;
        if (on_l && n->flows[m->id].rstamp != n->rstamp && split_flow(n, m->id, l, lvl))
            return -ENOMEM;
    }
    return 0;
}

/* The `foreign` unfrozen members of other X groups on link l freeze there: O(flows on l),
 * up to the last of them. */
static int split_scan(struct net *n, int l, double lvl, int foreign)
{
    const struct link *L = &n->links[l];
    for (int i = 0; i < L->nfl && foreign > 0; i++) {
        const struct flow *f = &n->flows[L->fl[i]];
        if (f->bn < 0 || f->bn == l || f->rstamp == n->rstamp)
            continue;
        const struct link *g = &n->links[f->bn];
        if (g->xstamp == n->xstamp && !n->r.ent[g->ent].frozen) {
            if (split_flow(n, L->fl[i], l, lvl))
                return -ENOMEM;
            foreign--;
        }
    }
    return 0;
}

/* The foreign unfrozen X groups on K link k (`foreign` flows: the sum of their edges'
 * counts there, which splitting one group does not change for the others) split there,
 * through whichever is shorter: their member lists or the link's flow list. Both stop
 * at the last of those flows. */
static int split_at(struct net *n, int k, double lvl, int foreign)
{
    struct round *r = &n->r;
    int l = r->klink[k];
    if (r->kmem[k] > n->links[l].nfl)
        return split_scan(n, l, lvl, foreign);
    for (int i = r->khead[k]; i >= 0 && foreign > 0; i = r->edge[i].next) {
        const struct edge *d = &r->edge[i];
        if (d->cnt <= 0)
            continue;
        foreign -= d->cnt;
        if (split_group(n, &r->ent[d->ent], l, lvl))
            return -ENOMEM;
    }
    return 0;
}

/* K link k saturates at lvl: every unfrozen flow of the round on it freezes there: its
 * group's block (that group's first edge), pending flows, and members of other groups
 * (the rest of its unfrozen count), which split. */
static int freeze_link(struct net *n, int k, double lvl)
{
    struct round *r = &n->r;
    int l = r->klink[k], foreign = r->left[k] - r->pleft[k];
    const struct link *L = &n->links[l];
    r->klvl[k] = lvl;
    if (L->xstamp == n->xstamp) {
        struct ent *x = &r->ent[L->ent];
        foreign -= r->edge[x->e0].cnt;
        if (r->edge[x->e0].cnt > 0)
            freeze_block(r, x, L->nm, k, lvl);
    }
    freeze_pending(n, k, lvl);
    r->left[k] = 0;
    return foreign > 0 ? split_at(n, k, lvl, foreign) : 0;
}

/* Progressive filling of the round's flows on the capacity K links leave them. */
static int round_fill(struct net *n)
{
    struct round *r = &n->r;
    struct kheap *h = &r->heap;
    fill_init(n);
    double level = 0;
    while (h->n > 0) {
        int k = h->k[0];
        double share = r->resid[k] / r->left[k];
        if (share > h->key[0]) {
            h->key[0] = share;
            kh_down(h, 0);
            continue;
        }
        kh_delete(h, 0);
        level = share > level ? share : level;
        if (freeze_link(n, k, level))
            return -ENOMEM;
    }
    return 0;
}

/* ---- the change of use, and the check ---- */

static inline struct link *touch(struct net *n, int l)
{
    struct link *k = &n->links[l];
    if (k->tstamp != n->rstamp) {
        k->tstamp = n->rstamp;
        k->d_use = 0;
        k->d_max = 0;
        n->r.touched[n->r.ntouched++] = l;
    }
    return k;
}

/* A flow on m's links changes rate by d to rate, in group g. */
static void delta_flow(struct net *n, const struct member *m, int g, double d, double rate)
{
    for (int j = 0; j < m->nl; j++) {
        struct link *k = touch(n, m->links[j]);
        k->d_use += d;
        if (m->links[j] != g && rate > k->d_max)
            k->d_max = rate;
    }
}

/* The same for the members m[0..nm) of a group that stay, off their own link. */
static void delta_block(struct net *n, const struct member *m, int nm, double d,
                        double rate)
{
    struct link *links = n->links;
    int *touched = n->r.touched, nt = n->r.ntouched;
    unsigned rs = n->rstamp;
    for (const struct member *end = m + nm; m < end; m++) {
        int nl = m->nl;
        for (int j = 1; j < nl; j++) {        /* links[0] is own */
            int l = m->links[j];
            struct link *k = &links[l];
            if (k->tstamp != rs) {
                k->tstamp = rs;
                k->d_use = 0;
                k->d_max = 0;
                touched[nt++] = l;
            }
            k->d_use += d;
            k->d_max = rate > k->d_max ? rate : k->d_max;
        }
    }
    n->r.ntouched = nt;
}

/* Each touched link's change of use, and its largest new rate from outside its group.
 * A group whose level and members stay is skipped. */
static void round_delta(struct net *n)
{
    struct round *r = &n->r;
    for (int i = 0; i < n->npend; i++) {
        const struct flow *f = &n->flows[n->pend[i].id];
        delta_flow(n, &n->pend[i], f->nbn, f->nrate, f->nrate);
    }
    for (int e = 0; e < r->nent; e++) {
        const struct ent *x = &r->ent[e];
        struct link *g = touch(n, x->id);
        double d = x->lvl - g->lvl;
        if (x->nsplit == 0 && d == 0 && !n->observe)
            continue;
        g->d_use += (g->nm - x->nsplit) * d;    /* the block, on its own link */
        if (x->nsplit == 0) {
            delta_block(n, g->m, g->nm, d, x->lvl);
            continue;
        }
        const int *split = r->hedge + (size_t)x->h0 * NET_MAX_HOPS;
        for (int i = 0; i < g->nm; i++, split += NET_MAX_HOPS) {
            const struct member *m = &g->m[i];
            if (*split) {
                const struct flow *f = &n->flows[m->id];
                delta_flow(n, m, f->nbn, f->nrate - g->lvl, f->nrate);
            } else {
                delta_block(n, m, 1, d, x->lvl);
            }
        }
    }
}

/* Queue group l to join X after this check (duplicates are harmless). */
static int defer_join(struct net *n, int l)
{
    if (grow((void **)&n->join, &n->cap_join, n->njoin + 1, sizeof(*n->join)))
        return -ENOMEM;
    n->join[n->njoin++] = l;
    return 0;
}

/* The round's rate of running flow f, and its group through *g. */
static double round_rate(const struct net *n, const struct flow *f, int *g)
{
    if (f->bn < 0 || f->rstamp == n->rstamp) {
        *g = f->nbn;          /* pending, or split */
        return f->nrate;
    }
    const struct link *b = &n->links[f->bn];
    *g = f->bn;
    return b->xstamp == n->xstamp ? n->r.ent[b->ent].lvl : b->lvl;
}

/* Link l became a bottleneck at lvl: a fixed flow above lvl must give way, so its group
 * joins X. O(flows on l), only when maxo is above lvl; the scan also gives the exact
 * largest rate on l from outside its group. Returns the violations. */
static int check_fixed_below(struct net *n, int l, double lvl)
{
    struct link *k = &n->links[l];
    if (!above(k->maxo, lvl) || n->r.nround[k->k] == k->nlive)
        return 0;             /* bound below lvl, or no fixed flow on l */
    double out_max = 0;
    int bad = 0;
    for (int i = 0; i < k->nfl; i++) {
        const struct flow *f = &n->flows[k->fl[i]];
        if (f->done)
            continue;
        int g;
        double rate = round_rate(n, f, &g);
        if (f->bn >= 0 && n->links[f->bn].xstamp != n->xstamp && above(rate, lvl)) {
            if (defer_join(n, f->bn))
                return -ENOMEM;
            bad++;
        }
        if (g != l && rate > out_max)
            out_max = rate;
    }
    k->d_max = out_max;
    k->exact = n->rstamp;
    return bad;
}

/* Checks the round's assumptions on every link it touched; the violated groups join
 * X and the overfull links join K. Returns the violations (0: max-min fair). */
static int round_check(struct net *n)
{
    struct round *r = &n->r;
    int bad = 0;
    n->njoin = 0;
    for (int i = 0; i < r->ntouched; i++) {
        int l = r->touched[i];
        struct link *k = &n->links[l];
        double lvl = k->kstamp == n->rstamp ? r->klvl[k->k] : -1;
        if (lvl >= 0) {
            int b = check_fixed_below(n, l, lvl);
            if (b < 0)
                return b;
            bad += b;
        } else if (above(k->use + k->d_use, k->cap) && k->fstamp != n->xstamp) {
            k->fstamp = n->xstamp;
            n->flag[n->nflag++] = l;
            bad++;
        }
    }
    for (int i = 0; i < n->njoin; i++)
        x_add(n, n->join[i]);
    return bad;
}

/* Groups that emptied after they joined X leave it: nothing of theirs is re-solved. */
static void x_prune(struct net *n)
{
    int w = 0;
    for (int i = 0; i < n->nxg; i++) {
        struct link *k = &n->links[n->xg[i]];
        if (k->nm > 0)
            n->xg[w++] = n->xg[i];
        else
            k->xstamp = 0;
    }
    n->nxg = w;
}

int maxmin_init(struct round *r, int nlinks)
{
    size_t nl = (size_t)nlinks, ni = sizeof(int), nd = sizeof(double);
    r->khead = malloc(nl * ni);
    r->pleft = malloc(nl * ni);
    r->kmem = malloc(nl * sizeof(*r->kmem));
    r->poff = malloc((nl + 1) * ni);
    r->klink = malloc(nl * ni);
    r->left = malloc(nl * ni);
    r->nround = malloc(nl * ni);
    r->touched = malloc(nl * ni);
    r->resid = malloc(nl * nd);
    r->klvl = malloc(nl * nd);
    r->heap.key = malloc(nl * nd);
    r->heap.k = malloc(nl * ni);
    r->heap.pos = malloc(nl * ni);
    if (!r->khead || !r->pleft || !r->kmem || !r->poff || !r->klink || !r->left || !r->nround ||
        !r->touched || !r->resid || !r->klvl || !r->heap.key || !r->heap.k || !r->heap.pos)
        return -ENOMEM;
    return 0;
}

void maxmin_free(struct round *r)
{
    free(r->ent);
    free(r->edge);
    free(r->hedge);
    free(r->khead);
    free(r->pleft);
    free(r->kmem);
    free(r->kpend);
    free(r->poff);
    free(r->klink);
    free(r->left);
    free(r->nround);
    free(r->touched);
    free(r->resid);
    free(r->klvl);
    free(r->split);
    free(r->heap.key);
    free(r->heap.k);
    free(r->heap.pos);
    memset(r, 0, sizeof(*r));
}

int maxmin_solve(struct net *n)
{
    x_prune(n);
    if (n->npend == 0 && n->nxg == 0)
        return 0;
    n->stats.events++;
    for (;;) {
        int e = round_build(n);
        if (!e)
            e = round_csr(n);
        if (!e)
            e = round_fill(n);
        if (e)
            return e;
        round_delta(n);
        n->stats.rounds++;
        int bad = round_check(n);
        if (bad <= 0)
            return bad < 0 ? bad : 1;
    }
}
