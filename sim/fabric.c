/* fabric.c: the collectives of every stage on one network; see fabric.h.
 *
 * Sessions. A session is a network (net.h) on the whole cluster's links, driven by an
 * event queue (des.h): the shared network runs on the step's queue; a standalone run for
 * the memo and a replay each run on a private one. A job in a session goes through its
 * parts, each `repeat` phases; a phase starts the job's flows in batches of equal path
 * latency (one event each) and ends when the last of them ends; the step after a part
 * (its tail, then the next part or the job's end) is an event too, so the caller's end
 * never runs inside the network's loop (net_advance).
 *
 * Which links a job crosses: topo.h routes traffic between leaves through the source
 * leaf's uplink and the destination leaf's downlink whatever the route (a relay sits in
 * the source's or the destination's node), so a job's coupling links follow from the
 * leaves of its flows' ends, without routing them.
 */
#include "fabric.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "maxmin.h"      /* grow(): the solver's doubling buffer helper */
#include "net.h"

/* A leaf link is below its NICs when short by more than rounding. */
#define BELOW_REL 1e-9
/* The shared network is rebuilt from its running flows once it holds this many flows
 * and four times as many as run (finished flows keep their records until then). */
#define REBUILD_FLOWS (1 << 20)

struct fflow {
    int src, dst;             /* stage numbering */
    double bytes;
};

struct fpart {
    struct fflow *fl;         /* by (src, dst) */
    int *row;                 /* stage_gpus + 1: src s's flows are fl[row[s] .. row[s + 1]) */
    int nfl, repeat;
    double tail_s;
};

struct ivec {
    int *v;
    int n, cap;               /* n = -1: not computed yet */
};

struct fcoll {
    struct fpart part[FABRIC_MAX_PARTS];
    int nparts;
    uint64_t hash;
    double *alone_s;          /* [class * lanes + lane]: standalone time, NAN until run */
    struct ivec *cl;          /* [stage * lanes + lane]: the coupling links it crosses */
    signed char *apart;       /* per stage: its lanes cross disjoint coupling links; -1 unknown */
};

struct jflow {
    int links[TOPO_MAX_HOPS];
    int nl, ord;
    int net;                  /* its id in the session's network; -1 until it starts */
    bool done;
    double lat_s, bytes;
};

struct job;

struct fref {
    struct job *j;
    int k;                    /* index in j->fl */
};

struct batch {                /* flows fl[first .. first + count) start together */
    struct job *j;
    int first, count;
};

enum sess_mode { SESS_SHARED, SESS_MEMO, SESS_REPLAY };

struct sess {
    struct fabric *f;
    enum sess_mode mode;
    struct des *d;
    struct net *n;            /* NULL: closed */
    uint64_t wake;            /* pending completion event, 0 if none */
    struct fref *ref;         /* by network flow id: whose flow it is */
    int cap, nflows;          /* ref's room; flows added to the network */
    struct job **jobs;        /* its jobs (shared network) */
    int njobs, capjobs;
    int *err;                 /* where its first error goes */
    int own_err;
    double end_s;             /* SESS_MEMO: when its job ended */
};

struct job {
    struct fabric *f;
    struct sess *s;           /* where it runs; NULL: alone (its end is one event) */
    int coll, stage, lane;
    double t0_s;
    des_fn fn;                /* the caller's end; NULL for a memo run */
    void *arg;
    uint64_t ev;              /* pending: its alone end, or its next step (on_next) */
    double ev_t;
    bool ev_pending;          /* on_next pending at ev_t */
    int part, rep, left;      /* part and phase it is in; flows of the phase not done */
    double phase_t0;
    struct jflow *fl;         /* the part's flows (in a session), by (latency, ord) */
    int nfl, capfl;
    struct batch *b;
    int nb, capb;
    const struct ivec *cl;    /* its coupling links (borrowed from the collective) */
    unsigned stamp;           /* == f->stamp: found (fabric_start) */
    int apos, spos;           /* index in f->all, in its session's jobs (-1: none) */
};

struct jvec {
    struct job **v;
    int n, cap;
};

struct fabric {
    const struct topo *t;
    int S, E, stages, lanes;  /* GPUs per stage and per lane; stages; lanes per stage */
    double *cap;              /* per link */
    bool *coupling;           /* per link */
    int *cls, nclass;         /* per stage: its class (same leaf layout, same times) */
    bool *as_given;           /* per class: sits on the leaves as the callers' stage
                               * topology does (their figures hold there) */
    struct fcoll *coll;
    int ncoll, capcoll;
    struct sess g;            /* the shared network */
    struct des *d;            /* the caller's queue (fabric_start) */
    struct jvec *on;          /* per link: jobs in flight crossing it (coupling links) */
    struct jvec all;          /* every job in flight */
    struct jvec found;        /* fabric_start's scratch */
    unsigned stamp;
    unsigned *mark;           /* per link, for coupling_links */
    struct fabric_counts counts;
    int err;
};

static void on_next(struct des *d, void *arg);
static void on_batch(struct des *d, void *arg);
static void on_wake(struct des *d, void *arg);

/* ---- small containers (grow() is maxmin.h's) ---- */

static int jvec_push(struct jvec *a, struct job *j)
{
    if (grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)))
        return -ENOMEM;
    a->v[a->n++] = j;
    return 0;
}

static void jvec_drop(struct jvec *a, const struct job *j)
{
    for (int i = 0; i < a->n; i++)
        if (a->v[i] == j) {
            a->v[i] = a->v[--a->n];
            return;
        }
}

/* ---- the cluster ---- */

static bool below(double cap, double nics) { return cap < nics * (1 - BELOW_REL); }

/* Does a leaf link of t fall below its NICs? flag (per link, may be NULL) gets each leaf
 * link's answer. A leaf's GPUs are consecutive (topo.h). */
static bool scan_leaves(const struct topo *t, bool *flag)
{
    bool any = false;
    for (int g = 0; t->leaves > 1 && g < t->gpus;) {
        int l = topo_leaf_of(t, g);
        double tx = 0, rx = 0;
        for (; g < t->gpus && topo_leaf_of(t, g) == l; g++) {
            tx += t->links[topo_nic_tx(t, g)].cap_Bps;
            rx += t->links[topo_nic_rx(t, g)].cap_Bps;
        }
        bool up = below(t->links[topo_leaf_up(t, l)].cap_Bps, tx);
        bool down = below(t->links[topo_leaf_down(t, l)].cap_Bps, rx);
        if (flag) {
            flag[topo_leaf_up(t, l)] = up;
            flag[topo_leaf_down(t, l)] = down;
        }
        any = any || up || down;
    }
    return any;
}

bool fabric_couples(const struct topo *t) { return scan_leaves(t, NULL); }

/* Do stages a and b sit alike on the leaves (leaf of each GPU relative to the stage's
 * first, with the same capacities)? Then a job takes the same time on either. */
static bool same_layout(const struct fabric *f, int a, int b)
{
    const struct topo *t = f->t;
    if (t->leaves < 2)
        return true;
    int ga = a * f->S, gb = b * f->S;
    int la = topo_leaf_of(t, ga), lb = topo_leaf_of(t, gb);
    for (int i = 0; i < f->S; i++) {
        int x = topo_leaf_of(t, ga + i), y = topo_leaf_of(t, gb + i);
        int ux = topo_leaf_up(t, x), uy = topo_leaf_up(t, y);
        int dx = topo_leaf_down(t, x), dy = topo_leaf_down(t, y);
        if (x - la != y - lb || t->links[ux].cap_Bps != t->links[uy].cap_Bps ||
            t->links[dx].cap_Bps != t->links[dy].cap_Bps || f->coupling[ux] != f->coupling[uy] ||
            f->coupling[dx] != f->coupling[dy])
            return false;
    }
    return true;
}

/* Does stage r sit on the leaves of t as GPUs 0 .. S-1 sit on those of st: the same
 * leaf of each GPU relative to the first, at the same capacities? With equal
 * capacities a leaf of t holds no GPU of another stage, so a collective of r alone
 * takes on t the time it takes on st. */
static bool like_stage_topo(const struct fabric *f, const struct topo *st, int r)
{
    const struct topo *t = f->t;
    if (!st || st->gpus != f->S)
        return false;
    int base = r * f->S, l0 = topo_leaf_of(t, base);
    for (int i = 0; i < f->S; i++) {
        int x = topo_leaf_of(t, base + i), y = topo_leaf_of(st, i);
        if (x - l0 != y)
            return false;
        if (st->leaves > 1 &&
            (t->links[topo_leaf_up(t, x)].cap_Bps != st->links[topo_leaf_up(st, y)].cap_Bps ||
             t->links[topo_leaf_down(t, x)].cap_Bps != st->links[topo_leaf_down(st, y)].cap_Bps))
            return false;
    }
    return true;
}

int fabric_create(struct fabric **out, const struct topo *t, const struct topo *stage_t,
                  int stage_gpus, int lane_gpus)
{
    *out = NULL;
    if (stage_gpus < 1 || lane_gpus < 1 || t->gpus % stage_gpus || stage_gpus % lane_gpus)
        return -EINVAL;
    struct fabric *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->t = t;
    f->S = stage_gpus;
    f->E = lane_gpus;
    f->stages = t->gpus / stage_gpus;
    f->lanes = stage_gpus / lane_gpus;
    f->cap = malloc((size_t)t->nlinks * sizeof(*f->cap));
    f->coupling = calloc((size_t)t->nlinks, sizeof(*f->coupling));
    f->mark = calloc((size_t)t->nlinks, sizeof(*f->mark));
    f->on = calloc((size_t)t->nlinks, sizeof(*f->on));
    f->cls = malloc((size_t)f->stages * sizeof(*f->cls));
    if (!f->cap || !f->coupling || !f->mark || !f->on || !f->cls) {
        fabric_free(f);
        return -ENOMEM;
    }
    for (int l = 0; l < t->nlinks; l++)
        f->cap[l] = t->links[l].cap_Bps;
    scan_leaves(t, f->coupling);
    int *first = malloc((size_t)f->stages * sizeof(*first));   /* each class's first stage */
    if (!first) {
        fabric_free(f);
        return -ENOMEM;
    }
    for (int r = 0; r < f->stages; r++) {
        int k = 0;
        while (k < f->nclass && !same_layout(f, first[k], r))
            k++;
        if (k == f->nclass)
            first[f->nclass++] = r;
        f->cls[r] = k;
    }
    f->as_given = malloc((size_t)f->nclass * sizeof(*f->as_given));
    for (int k = 0; f->as_given && k < f->nclass; k++)
        f->as_given[k] = like_stage_topo(f, stage_t, first[k]);
    free(first);
    if (!f->as_given) {
        fabric_free(f);
        return -ENOMEM;
    }
    f->g.f = f;
    f->g.err = &f->err;
    *out = f;
    return 0;
}

/* ---- collectives ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;              /* FNV-1a, 64-bit prime */
    }
    return h;
}

static int part_copy(struct fpart *p, const struct fabric_part *in, int S)
{
    const struct traffic *m = in->m;
    size_t nfl = 0;
    for (int s = 0; s < S; s++)
        for (int d = 0; d < S; d++)
            nfl += s != d && m->bytes[(size_t)s * S + d] > 0;
    if (nfl > INT32_MAX)
        return -ENOMEM;
    p->fl = malloc((nfl ? nfl : 1) * sizeof(*p->fl));
    p->row = malloc(((size_t)S + 1) * sizeof(*p->row));
    if (!p->fl || !p->row)
        return -ENOMEM;
    p->repeat = in->repeat;
    p->tail_s = in->tail_s;
    for (int s = 0; s < S; s++) {
        p->row[s] = p->nfl;
        for (int d = 0; d < S; d++) {
            uint64_t b = m->bytes[(size_t)s * S + d];
            if (s != d && b > 0)
                p->fl[p->nfl++] = (struct fflow){ s, d, (double)b };
        }
    }
    p->row[S] = p->nfl;
    return 0;
}

static uint64_t coll_hash(const struct fcoll *c)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, &c->nparts, sizeof(c->nparts));
    for (int k = 0; k < c->nparts; k++) {
        const struct fpart *p = &c->part[k];
        h = fnv(h, &p->repeat, sizeof(p->repeat));
        h = fnv(h, &p->tail_s, sizeof(p->tail_s));
        h = fnv(h, &p->nfl, sizeof(p->nfl));
        h = fnv(h, p->fl, (size_t)p->nfl * sizeof(*p->fl));
    }
    return h;
}

static bool coll_equal(const struct fcoll *a, const struct fcoll *b)
{
    if (a->hash != b->hash || a->nparts != b->nparts)
        return false;
    for (int k = 0; k < a->nparts; k++) {
        const struct fpart *p = &a->part[k], *q = &b->part[k];
        if (p->repeat != q->repeat || p->tail_s != q->tail_s || p->nfl != q->nfl ||
            memcmp(p->fl, q->fl, (size_t)p->nfl * sizeof(*p->fl)))
            return false;
    }
    return true;
}

static void coll_free(struct fcoll *c, int ncl)
{
    for (int k = 0; k < FABRIC_MAX_PARTS; k++) {
        free(c->part[k].fl);
        free(c->part[k].row);
    }
    for (int i = 0; c->cl && i < ncl; i++)
        free(c->cl[i].v);
    free(c->cl);
    free(c->alone_s);
    free(c->apart);
}

int fabric_coll(struct fabric *f, const struct fabric_part *parts, int nparts)
{
    if (nparts < 1 || nparts > FABRIC_MAX_PARTS)
        return -EINVAL;
    for (int k = 0; k < nparts; k++)
        if (parts[k].m->gpus != f->S || parts[k].repeat < 0 || !(parts[k].tail_s >= 0) ||
            !isfinite(parts[k].tail_s))
            return -EINVAL;
    if (grow((void **)&f->coll, &f->capcoll, f->ncoll + 1, sizeof(*f->coll)))
        return -ENOMEM;
    int ncl = f->stages * f->lanes;
    struct fcoll c = { .nparts = nparts };
    int rc = 0;
    for (int k = 0; k < nparts && !rc; k++)
        rc = part_copy(&c.part[k], &parts[k], f->S);
    if (!rc) {
        c.hash = coll_hash(&c);
        for (int i = 0; i < f->ncoll; i++)
            if (coll_equal(&f->coll[i], &c)) {
                coll_free(&c, 0);
                return i;
            }
        c.alone_s = malloc((size_t)f->nclass * f->lanes * sizeof(*c.alone_s));
        c.cl = calloc((size_t)ncl, sizeof(*c.cl));
        c.apart = malloc((size_t)f->stages);
        rc = c.alone_s && c.cl && c.apart ? 0 : -ENOMEM;
    }
    if (rc) {
        coll_free(&c, ncl);
        return rc;
    }
    for (int i = 0; i < f->nclass * f->lanes; i++)
        c.alone_s[i] = NAN;
    for (int i = 0; i < ncl; i++)
        c.cl[i].n = -1;
    memset(c.apart, -1, (size_t)f->stages);
    f->coll[f->ncoll] = c;
    return f->ncoll++;
}

/* The coupling links lane `lane` of stage `stage` crosses in collective c (computed once;
 * see the top of the file). */
static int coupling_links(struct fabric *f, int c, int stage, int lane, const struct ivec **out)
{
    struct ivec *v = &f->coll[c].cl[stage * f->lanes + lane];
    *out = v;
    if (v->n >= 0)
        return 0;
    const struct topo *t = f->t;
    int base = stage * f->S;
    v->n = 0;
    f->stamp++;
    for (int k = 0; k < f->coll[c].nparts; k++) {
        const struct fpart *p = &f->coll[c].part[k];
        if (p->repeat == 0)
            continue;
        for (int i = p->row[lane * f->E]; i < p->row[(lane + 1) * f->E]; i++) {
            int la = topo_leaf_of(t, base + p->fl[i].src), lb = topo_leaf_of(t, base + p->fl[i].dst);
            if (la == lb)
                continue;
            int l2[2] = { topo_leaf_up(t, la), topo_leaf_down(t, lb) };
            for (int x = 0; x < 2; x++) {
                if (!f->coupling[l2[x]] || f->mark[l2[x]] == f->stamp)
                    continue;
                f->mark[l2[x]] = f->stamp;
                if (grow((void **)&v->v, &v->cap, v->n + 1, sizeof(*v->v))) {
                    v->n = -1;
                    return -ENOMEM;
                }
                v->v[v->n++] = l2[x];
            }
        }
    }
    return 0;
}

/* Do the lanes of stage `stage` cross disjoint coupling links in collective c? Then the
 * caller's figure (all lanes at once) is each lane's time alone. */
static int lanes_apart(struct fabric *f, int c, int stage, bool *out)
{
    signed char *a = &f->coll[c].apart[stage];
    if (*a < 0) {
        const struct ivec *cl;
        for (int g = 0; g < f->lanes; g++) {   /* first, as it uses the marks itself */
            int e = coupling_links(f, c, stage, g, &cl);
            if (e)
                return e;
        }
        bool apart = true;
        f->stamp++;
        for (int g = 0; g < f->lanes && apart; g++) {
            cl = &f->coll[c].cl[stage * f->lanes + g];
            for (int i = 0; i < cl->n; i++)
                apart = apart && f->mark[cl->v[i]] != f->stamp;
            for (int i = 0; i < cl->n; i++)
                f->mark[cl->v[i]] = f->stamp;
        }
        *a = apart;
    }
    *out = *a;
    return 0;
}

/* ---- sessions ---- */

static int sess_open(struct sess *s, struct fabric *f, enum sess_mode mode, struct des *d)
{
    int *err = s->err;
    memset(s, 0, sizeof(*s));
    s->f = f;
    s->mode = mode;
    s->d = d;
    s->err = mode == SESS_SHARED ? err : &s->own_err;
    s->end_s = NAN;
    return net_create(&s->n, f->t->nlinks, f->cap);
}

static void sess_close(struct sess *s)
{
    if (s->wake)
        des_cancel(s->d, s->wake);
    s->wake = 0;
    net_free(s->n);
    s->n = NULL;
    free(s->ref);
    free(s->jobs);
    s->ref = NULL;
    s->jobs = NULL;
    s->cap = s->nflows = s->njobs = s->capjobs = 0;
}

static void sess_fail(struct sess *s, int e)
{
    if (!*s->err)
        *s->err = e;
    des_stop(s->d);
}

static int sess_add_job(struct sess *s, struct job *j)
{
    if (grow((void **)&s->jobs, &s->capjobs, s->njobs + 1, sizeof(*s->jobs)))
        return -ENOMEM;
    j->s = s;
    j->spos = s->njobs;
    s->jobs[s->njobs++] = j;
    return 0;
}

static void sess_drop_job(struct sess *s, struct job *j)
{
    s->jobs[j->spos] = s->jobs[--s->njobs];
    s->jobs[j->spos]->spos = j->spos;
    j->spos = -1;
}

/* After any change, the next completion is the network's: (re)schedule it. */
static void resched(struct sess *s)
{
    int e = 0;
    double next = net_next_finish_s(s->n, &e);
    if (s->wake)
        des_cancel(s->d, s->wake);
    s->wake = 0;
    if (!e && isfinite(next))
        e = des_at(s->d, next, on_wake, s, &s->wake);
    if (e)
        sess_fail(s, e);
}

/* Flow k of j joins s's network at t with `bytes` left. */
static int add_flow(struct sess *s, struct job *j, int k, double bytes, double t)
{
    struct jflow *x = &j->fl[k];
    int id = net_add_flow(s->n, x->links, x->nl, bytes, t);
    if (id < 0)
        return id;
    if (grow((void **)&s->ref, &s->cap, id + 1, sizeof(*s->ref)))
        return -ENOMEM;
    s->ref[id] = (struct fref){ j, k };
    s->nflows = id + 1;
    x->net = id;
    return 0;
}

/* ---- a job's parts and phases ---- */

static int by_latency(const void *a, const void *b)
{
    const struct jflow *x = a, *y = b;
    if (x->lat_s != y->lat_s)
        return x->lat_s < y->lat_s ? -1 : 1;
    return x->ord - y->ord;
}

/* j's flows of its part: its lane's rows, on its stage's GPUs, routed, by latency. */
static int build_flows(struct job *j)
{
    const struct fabric *f = j->f;
    const struct fpart *p = &f->coll[j->coll].part[j->part];
    int lo = p->row[j->lane * f->E], n = p->row[(j->lane + 1) * f->E] - lo;
    int base = j->stage * f->S;
    if (grow((void **)&j->fl, &j->capfl, n, sizeof(*j->fl)) ||
        grow((void **)&j->b, &j->capb, n, sizeof(*j->b)))
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        const struct fflow *x = &p->fl[lo + i];
        struct jflow *y = &j->fl[i];
        y->nl = topo_route(f->t, base + x->src, base + x->dst, y->links, &y->lat_s);
        y->ord = i;
        y->bytes = x->bytes;
    }
    qsort(j->fl, (size_t)n, sizeof(*j->fl), by_latency);
    j->nfl = n;
    j->nb = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || j->fl[i].lat_s != j->fl[i - 1].lat_s)
            j->b[j->nb++] = (struct batch){ j, i, 0 };
        j->b[j->nb - 1].count++;
    }
    return 0;
}

/* on_next runs for j at t: its next part, or its end. */
static void schedule_next(struct sess *s, struct job *j, double t)
{
    j->ev_t = t;
    j->ev_pending = true;
    int e = des_at(s->d, t, on_next, j, &j->ev);
    if (e)
        sess_fail(s, e);
}

/* A phase of j's part starts at t: its batches start after their latency. */
static void phase_begin(struct sess *s, struct job *j, double t)
{
    j->phase_t0 = t;
    j->left = j->nfl;
    for (int i = 0; i < j->nfl; i++) {
        j->fl[i].net = -1;
        j->fl[i].done = false;
    }
    for (int k = 0; k < j->nb; k++) {
        int e = des_at(s->d, t + j->fl[j->b[k].first].lat_s, on_batch, &j->b[k], NULL);
        if (e) {
            sess_fail(s, e);
            return;
        }
    }
}

/* The last flow of j's phase ended at t: the next phase, or the part's tail. */
static void phase_end(struct sess *s, struct job *j, double t)
{
    const struct fpart *p = &j->f->coll[j->coll].part[j->part];
    if (++j->rep < p->repeat)
        phase_begin(s, j, t);
    else
        schedule_next(s, j, t + p->tail_s);
}

static void on_flow(void *arg, int id, double t_end_s)
{
    struct sess *s = arg;
    struct job *j = s->ref[id].j;
    j->fl[s->ref[id].k].done = true;
    if (--j->left == 0)
        phase_end(s, j, t_end_s);
}

static void on_wake(struct des *d, void *arg)
{
    struct sess *s = arg;
    s->wake = 0;
    int e = net_advance(s->n, des_now(d), on_flow, s);
    if (e < 0)
        sess_fail(s, e);
    else
        resched(s);
}

static void on_batch(struct des *d, void *arg)
{
    struct batch *b = arg;
    struct job *j = b->j;
    struct sess *s = j->s;
    double now = des_now(d);
    int e = net_advance(s->n, now, on_flow, s);
    for (int i = 0; i < b->count && e >= 0; i++)
        e = add_flow(s, j, b->first + i, j->fl[b->first + i].bytes, now);
    if (e < 0)
        sess_fail(s, e);
    else
        resched(s);
}

static void job_free(struct job *j)
{
    free(j->fl);
    free(j->b);
    free(j);
}

/* j leaves the fabric's books (it ended, or the fabric goes). */
static void job_forget(struct fabric *f, struct job *j)
{
    for (int i = 0; i < j->cl->n; i++)
        jvec_drop(&f->on[j->cl->v[i]], j);
    f->all.v[j->apos] = f->all.v[--f->all.n];
    f->all.v[j->apos]->apos = j->apos;
}

/* j's last part is over at t (an event of s). */
static void job_done(struct sess *s, struct job *j, double t)
{
    if (s->mode == SESS_MEMO) {
        s->end_s = t;
        return;
    }
    if (s->mode == SESS_REPLAY) {    /* ends within rounding of now: it ends in the shared network */
        j->part = j->f->coll[j->coll].nparts - 1;
        j->ev_pending = true;
        j->ev_t = t;
        return;
    }
    struct fabric *f = s->f;
    sess_drop_job(s, j);
    job_forget(f, j);
    f->counts.shared++;
    des_fn fn = j->fn;
    void *arg = j->arg;
    job_free(j);
    if (s->njobs == 0)
        sess_close(s);
    fn(f->d, arg);
}

static void on_next(struct des *d, void *arg)
{
    struct job *j = arg;
    struct sess *s = j->s;
    double now = des_now(d);
    const struct fcoll *c = &j->f->coll[j->coll];
    j->ev_pending = false;
    j->ev = 0;
    while (++j->part < c->nparts && c->part[j->part].repeat == 0)
        ;
    if (j->part == c->nparts) {
        job_done(s, j, now);
        return;
    }
    int e = build_flows(j);
    if (e) {
        sess_fail(s, e);
        return;
    }
    j->rep = 0;
    if (j->nfl == 0)
        schedule_next(s, j, now + c->part[j->part].tail_s);
    else
        phase_begin(s, j, now);
}

/* ---- jobs alone, and joining the shared network ---- */

static void on_alone(struct des *d, void *arg)
{
    struct job *j = arg;
    struct fabric *f = j->f;
    des_fn fn = j->fn;
    void *a = j->arg;
    job_forget(f, j);
    f->counts.alone++;
    job_free(j);
    fn(d, a);
}

/* j from t0 in a private session of its own, until `until` (INFINITY: its end). */
static int run_private(struct job *j, struct sess *s, struct des **d, enum sess_mode mode,
                       double until)
{
    int e = des_create(d);
    if (!e)
        e = sess_open(s, j->f, mode, *d);
    if (e)
        return e;
    j->s = s;
    j->part = -1;
    schedule_next(s, j, j->t0_s);
    int64_t ran = des_run(*d, until);
    if (ran < 0)
        return (int)ran;
    if (!s->own_err && isfinite(until)) {
        int e = net_advance(s->n, until, on_flow, s);
        s->own_err = e < 0 ? e : 0;
    }
    return s->own_err;
}

/* Standalone time of lane `lane` of stage `stage` in collective c: memoised per class. */
static int alone_time(struct fabric *f, int c, int stage, int lane, double *out)
{
    double *slot = &f->coll[c].alone_s[f->cls[stage] * f->lanes + lane];
    if (!isnan(*slot)) {
        *out = *slot;
        return 0;
    }
    struct job j = { .f = f, .coll = c, .stage = stage, .lane = lane, .spos = -1 };
    struct sess s = { 0 };
    struct des *d = NULL;
    int e = run_private(&j, &s, &d, SESS_MEMO, INFINITY);
    if (!e && isnan(s.end_s))
        e = -EDEADLK;
    if (!e) {
        *slot = *out = s.end_s;
        f->counts.simulated++;
    }
    sess_close(&s);
    des_free(d);
    free(j.fl);
    free(j.b);
    return e;
}

/* j, alone since its start, joins the shared network at now: replayed alone from its
 * start, its flows carried over with the bytes they have left, its pending steps moved
 * to the shared queue. */
static int join_shared(struct fabric *f, struct job *j, double now)
{
    struct sess s = { 0 };
    struct des *d = NULL;
    des_cancel(f->d, j->ev);
    int e = run_private(j, &s, &d, SESS_REPLAY, now);
    if (!e)
        e = sess_add_job(&f->g, j);
    if (!e && j->ev_pending) {
        e = des_at(f->d, fmax(j->ev_t, now), on_next, j, &j->ev);
    } else {
        for (int k = 0; !e && k < j->nb; k++) {
            const struct batch *b = &j->b[k];
            if (j->fl[b->first].net < 0) {
                e = des_at(f->d, j->phase_t0 + j->fl[b->first].lat_s, on_batch, &j->b[k], NULL);
                continue;
            }
            for (int i = b->first; !e && i < b->first + b->count; i++)
                if (!j->fl[i].done)
                    e = add_flow(&f->g, j, i, net_flow_left_bytes(s.n, j->fl[i].net), now);
        }
    }
    sess_close(&s);
    des_free(d);
    return e;
}

/* The shared network anew with its running flows only, once finished ones dominate. */
static int rebuild(struct fabric *f, double now)
{
    struct sess *g = &f->g;
    if (g->nflows < REBUILD_FLOWS || g->nflows < 4 * net_active_flows(g->n))
        return 0;
    struct net *old = g->n;
    struct fref *ref = g->ref;
    g->n = NULL;
    g->ref = NULL;
    g->cap = g->nflows = 0;
    int e = net_create(&g->n, f->t->nlinks, f->cap);
    for (int i = 0; !e && i < g->njobs; i++) {
        struct job *j = g->jobs[i];
        for (int k = 0; !e && k < j->nfl; k++)
            if (j->fl[k].net >= 0 && !j->fl[k].done)
                e = add_flow(g, j, k, net_flow_left_bytes(old, j->fl[k].net), now);
    }
    net_free(old);
    free(ref);
    return e;
}

/* The jobs in flight that cross one of j's coupling links go to f->found; j joins the
 * links' lists. */
static int meet(struct fabric *f, struct job *j)
{
    int e = 0;
    f->stamp++;
    f->found.n = 0;
    for (int i = 0; !e && i < j->cl->n; i++) {
        struct jvec *on = &f->on[j->cl->v[i]];
        for (int k = 0; !e && k < on->n; k++)
            if (on->v[k]->stamp != f->stamp) {
                on->v[k]->stamp = f->stamp;
                e = jvec_push(&f->found, on->v[k]);
            }
        if (!e)
            e = jvec_push(on, j);
    }
    return e;
}

/* j met nobody: its end after its standalone time (alone_s where that holds). */
static int start_alone(struct fabric *f, struct job *j, double now, double alone_s)
{
    double t = alone_s;
    bool apart = false;
    int e = 0;
    if (f->as_given[f->cls[j->stage]])
        e = lanes_apart(f, j->coll, j->stage, &apart);
    if (!e && !apart)
        e = alone_time(f, j->coll, j->stage, j->lane, &t);
    return e ? e : des_at(f->d, now + t, on_alone, j, &j->ev);
}

/* j met f->found: it runs in the shared network, and those of them running alone join. */
static int start_shared(struct fabric *f, struct job *j, double now)
{
    int e = 0;
    if (!f->g.n)
        e = sess_open(&f->g, f, SESS_SHARED, f->d);
    if (!e) {
        int a = net_advance(f->g.n, now, on_flow, &f->g);
        e = a < 0 ? a : rebuild(f, now);
    }
    for (int i = 0; !e && i < f->found.n; i++)
        if (!f->found.v[i]->s)
            e = join_shared(f, f->found.v[i], now);
    if (!e)
        e = sess_add_job(&f->g, j);
    if (e)
        return e;
    schedule_next(&f->g, j, now);
    resched(&f->g);
    return f->err;
}

int fabric_start(struct fabric *f, struct des *d, int coll, int stage, int lane,
                 double alone_s, des_fn fn, void *arg)
{
    if (coll < 0 || coll >= f->ncoll || stage < 0 || stage >= f->stages || lane < 0 ||
        lane >= f->lanes || !(alone_s >= 0) || !fn || (f->d && f->d != d))
        return -EINVAL;
    f->d = d;
    double now = des_now(d);
    const struct ivec *cl;
    int e = coupling_links(f, coll, stage, lane, &cl);
    if (e || cl->n == 0)
        return e ? e : des_at(d, now + alone_s, fn, arg, NULL);
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (struct job){ .f = f, .coll = coll, .stage = stage, .lane = lane, .t0_s = now,
                       .fn = fn, .arg = arg, .cl = cl, .part = -1, .spos = -1,
                       .apos = f->all.n };
    if ((e = jvec_push(&f->all, j))) {
        free(j);
        return e;
    }
    if ((e = meet(f, j)))
        return e;
    return f->found.n ? start_shared(f, j, now) : start_alone(f, j, now, alone_s);
}

int fabric_error(const struct fabric *f) { return f->err; }

struct fabric_counts fabric_get_counts(const struct fabric *f) { return f->counts; }

void fabric_free(struct fabric *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->all.n; i++)
        job_free(f->all.v[i]);
    free(f->all.v);
    sess_close(&f->g);
    for (int i = 0; i < f->ncoll; i++)
        coll_free(&f->coll[i], f->stages * f->lanes);
    free(f->coll);
    for (int l = 0; f->on && l < f->t->nlinks; l++)
        free(f->on[l].v);
    free(f->on);
    free(f->found.v);
    free(f->cap);
    free(f->coupling);
    free(f->mark);
    free(f->cls);
    free(f->as_given);
    free(f);
}
