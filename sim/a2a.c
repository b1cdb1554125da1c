/* a2a.c: a collective as flows: the engine that joins the event core and the network. */
#include "a2a.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "des.h"
#include "limits.h"

/* Flows that start at the same time enter the network together, in one event. */
struct batch {
    struct run *run;
    int first, count;         /* into run->order */
};

struct run {
    struct a2a_result *r;
    const struct topo *t;
    struct des *d;
    struct net *n;
    int *order;               /* flow indices sorted by start time, then (src, dst) */
    int *net_id;              /* flow index -> network flow id */
    int *flow_of;             /* network flow id -> flow index */
    uint64_t wake;            /* pending completion event, 0 if none */
    int err;
    const struct limits_progress *prog;  /* NULL: none */
    int done, every;          /* flows completed; progress every `every` of them */
    double quantum_s;         /* > 0: completions batched per window (a2a.h) */
};

static void on_wake(struct des *d, void *arg);

/* After any change, the next completion is the network's: (re)schedule it. */
static void resched(struct run *u)
{
    int e = 0;
    double next = net_next_finish_s(u->n, &e);
    if (e) {
        u->err = e;
        des_stop(u->d);
        return;
    }
    if (u->wake)
        des_cancel(u->d, u->wake);
    u->wake = 0;
    if (isfinite(next) && (e = des_at(u->d, next, on_wake, u, &u->wake))) {
        u->err = e;
        des_stop(u->d);
    }
}

static void on_done(void *arg, int id, double t_end_s)
{
    struct run *u = arg;
    u->r->flows[u->flow_of[id]].end_s = t_end_s;
    if (u->prog && (++u->done % u->every == 0 || u->done == u->r->nflows))
        limits_tick(u->prog, (double)u->done / u->r->nflows, "flow", u->done, u->r->nflows);
}

static void on_wake(struct des *d, void *arg)
{
    struct run *u = arg;
    u->wake = 0;
    /* A window never reaches past the next start: flows are added in time order. */
    int e = u->quantum_s > 0 ?
        net_advance_window(u->n, fmin(des_now(d) + u->quantum_s, des_next_s(d)), on_done, u) :
        net_advance(u->n, des_now(d), on_done, u);
    if (e < 0) {
        u->err = e;
        des_stop(d);
        return;
    }
    resched(u);
}

static void on_start(struct des *d, void *arg)
{
    struct batch *b = arg;
    struct run *u = b->run;
    int e = net_advance(u->n, des_now(d), on_done, u);
    for (int i = 0; i < b->count && e >= 0; i++) {
        int fi = u->order[b->first + i];
        const struct a2a_flow *f = &u->r->flows[fi];
        int links[TOPO_MAX_HOPS];
        double lat;
        int nl = topo_route(u->t, f->src, f->dst, links, &lat);
        e = net_add_flow(u->n, links, nl, (double)f->bytes, des_now(d));
        if (e >= 0) {
            u->net_id[fi] = e;
            u->flow_of[e] = fi;
        }
    }
    if (e < 0) {
        u->err = e;
        des_stop(d);
        return;
    }
    resched(u);
}

static void on_link(void *arg, int link, double t_s, double use_Bps)
{
    struct run *u = arg;
    struct a2a_series *s = &u->r->series[link];
    if (s->n > 0 && s->s[s->n - 1].t_s == t_s) {
        s->s[s->n - 1].use_Bps = use_Bps;
        return;
    }
    if (s->n == s->cap) {
        int c = s->cap ? 2 * s->cap : 8;
        struct a2a_sample *p = realloc(s->s, (size_t)c * sizeof(*p));
        if (!p) {
            u->err = -ENOMEM;
            return;
        }
        s->s = p;
        s->cap = c;
    }
    s->s[s->n++] = (struct a2a_sample){ .t_s = t_s, .use_Bps = use_Bps };
}

static int alloc_result(struct a2a_result *r, const struct topo *t, const struct traffic *m,
                        bool series)
{
    int g = t->gpus, nf = 0;
    for (int s = 0; s < g; s++)
        for (int d = 0; d < g; d++)
            nf += s != d && m->bytes[(size_t)s * g + d] > 0;
    r->gpus = g;
    r->nlinks = t->nlinks;
    r->nflows = nf;
    r->flows = calloc(nf ? (size_t)nf : 1, sizeof(*r->flows));
    r->send_finish_s = calloc((size_t)g, sizeof(double));
    r->recv_finish_s = calloc((size_t)g, sizeof(double));
    r->send_bytes = calloc((size_t)g, sizeof(uint64_t));
    r->recv_bytes = calloc((size_t)g, sizeof(uint64_t));
    r->link_bytes = calloc((size_t)t->nlinks, sizeof(uint64_t));
    if (series)
        r->series = calloc((size_t)t->nlinks, sizeof(*r->series));
    if (!r->flows || !r->send_finish_s || !r->recv_finish_s || !r->send_bytes ||
        !r->recv_bytes || !r->link_bytes || (series && !r->series))
        return -ENOMEM;
    return 0;
}

/* Flows in (src, dst) order with their start times; bytes per link and per GPU. */
static void lay_out(struct a2a_result *r, const struct topo *t, const struct traffic *m)
{
    int g = t->gpus, k = 0;
    for (int s = 0; s < g; s++)
        for (int d = 0; d < g; d++) {
            uint64_t b = m->bytes[(size_t)s * g + d];
            if (s == d) {
                r->local_bytes += b;
                continue;
            }
            if (b == 0)
                continue;
            int links[TOPO_MAX_HOPS];
            double lat;
            int nl = topo_route(t, s, d, links, &lat);
            r->flows[k++] = (struct a2a_flow){ .src = s, .dst = d, .bytes = b,
                                               .start_s = r->t0_s + lat, .end_s = NAN };
            for (int i = 0; i < nl; i++)
                r->link_bytes[links[i]] += b;
            r->send_bytes[s] += b;
            r->recv_bytes[d] += b;
            r->remote_bytes += b;
        }
    for (int l = 0; l < t->nlinks; l++) {
        if (t->links[l].kind == LINK_NVL_TX)
            r->nvlink_bytes += r->link_bytes[l];
        else if (t->links[l].kind == LINK_NIC_TX)
            r->net_bytes += r->link_bytes[l];
    }
}

struct start_key {
    double t_s;
    int flow;
};

static int by_start(const void *a, const void *b)
{
    const struct start_key *x = a, *y = b;
    if (x->t_s != y->t_s)
        return x->t_s < y->t_s ? -1 : 1;
    return x->flow - y->flow;   /* flow indices follow (src, dst) order */
}

/* Orders flows by start time and schedules one start event per distinct time. */
static int simulate(struct run *u)
{
    struct a2a_result *r = u->r;
    size_t nf = (size_t)r->nflows, nb = 0;
    struct start_key *key = malloc((nf ? nf : 1) * sizeof(*key));
    struct batch *b = malloc((nf ? nf : 1) * sizeof(*b));
    int e = -ENOMEM;
    if (!key || !b)
        goto out;
    for (size_t i = 0; i < nf; i++)
        key[i] = (struct start_key){ .t_s = r->flows[i].start_s, .flow = (int)i };
    qsort(key, nf, sizeof(*key), by_start);
    for (size_t i = 0; i < nf; i++) {
        u->order[i] = key[i].flow;
        if (i == 0 || key[i].t_s != key[i - 1].t_s)
            b[nb++] = (struct batch){ .run = u, .first = (int)i };
        b[nb - 1].count++;
    }
    for (size_t i = 0; i < nb; i++)
        if ((e = des_at(u->d, key[b[i].first].t_s, on_start, &b[i], NULL)))
            goto out;
    int64_t ran = des_run(u->d, INFINITY);
    e = ran < 0 ? (int)ran : u->err ? u->err : net_active_flows(u->n) ? -EDEADLK : 0;
out:
    free(key);
    free(b);
    return e;
}

static void finish_times(struct a2a_result *r)
{
    for (int i = 0; i < r->nflows; i++) {
        const struct a2a_flow *f = &r->flows[i];
        double e = f->end_s - r->t0_s;
        if (e > r->send_finish_s[f->src])
            r->send_finish_s[f->src] = e;
        if (e > r->recv_finish_s[f->dst])
            r->recv_finish_s[f->dst] = e;
        if (e > r->time_s)
            r->time_s = e;
    }
}

int a2a_run(struct a2a_result *r, const struct topo *t, const struct traffic *m,
            double t0_s, bool series)
{
    return a2a_run_with(r, t, m, t0_s, series, NULL);
}

int a2a_run_with(struct a2a_result *r, const struct topo *t, const struct traffic *m,
                 double t0_s, bool series, const struct limits_progress *p)
{
    memset(r, 0, sizeof(*r));
    if (m->gpus != t->gpus || !(t0_s >= 0))
        return -EINVAL;
    r->t0_s = t0_s;
    int e = alloc_result(r, t, m, series);
    if (e)
        goto out_free_r;
    lay_out(r, t, m);
    struct run u = { .r = r, .t = t, .prog = p && p->fn ? p : NULL,
                     .every = r->nflows / 100 > 1 ? r->nflows / 100 : 1 };
    double *cap = malloc((size_t)t->nlinks * sizeof(*cap));
    u.order = malloc((r->nflows ? (size_t)r->nflows : 1) * sizeof(int));
    u.net_id = malloc((r->nflows ? (size_t)r->nflows : 1) * sizeof(int));
    u.flow_of = malloc((r->nflows ? (size_t)r->nflows : 1) * sizeof(int));
    e = -ENOMEM;
    if (!cap || !u.order || !u.net_id || !u.flow_of)
        goto out_free_run;
    double bound_s = 0;       /* the busiest link's bytes at its capacity */
    for (int l = 0; l < t->nlinks; l++) {
        cap[l] = t->links[l].cap_Bps;
        bound_s = fmax(bound_s, (double)r->link_bytes[l] / cap[l]);
    }
    u.quantum_s = t->flow_quantum * bound_s;
    if ((e = des_create(&u.d)) || (e = net_create(&u.n, t->nlinks, cap)))
        goto out_free_run;
    if (series)
        net_observe_links(u.n, on_link, &u);
    e = simulate(&u);
    r->stats = net_get_stats(u.n);
    finish_times(r);
out_free_run:
    net_free(u.n);
    des_free(u.d);
    free(cap);
    free(u.order);
    free(u.net_id);
    free(u.flow_of);
    if (!e)
        return 0;
out_free_r:
    a2a_free(r);
    return e;
}

void a2a_free(struct a2a_result *r)
{
    if (r->series)
        for (int l = 0; l < r->nlinks; l++)
            free(r->series[l].s);
    free(r->series);
    free(r->flows);
    free(r->send_finish_s);
    free(r->recv_finish_s);
    free(r->send_bytes);
    free(r->recv_bytes);
    free(r->link_bytes);
    memset(r, 0, sizeof(*r));
}

static double max_over_mean(const uint64_t *v, int n)
{
    double sum = 0, max = 0;
    for (int i = 0; i < n; i++) {
        sum += (double)v[i];
        max = (double)v[i] > max ? (double)v[i] : max;
    }
    return sum > 0 ? max / (sum / n) : 0;
}

double a2a_send_max_over_mean(const struct a2a_result *r)
{
    return max_over_mean(r->send_bytes, r->gpus);
}

double a2a_recv_max_over_mean(const struct a2a_result *r)
{
    return max_over_mean(r->recv_bytes, r->gpus);
}
