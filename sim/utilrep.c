/* utilrep.c: utilization over time, binned, and a step's sub-ops; see utilrep.h. */
#include "utilrep.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "csv.h"
#include "sched.h"

static const char util_cols[] =
    "kind,id,name,tier,bin,t0_s,t1_s,compute,comm,nvlink,nic,util,GBps";

/* The bins of [0, T]: bin k = [T k / n, T (k+1) / n) (computed, never accumulated, so
 * the last ends at T exactly). */
struct bins {
    int n;
    double T;
};

static double bin_t0(const struct bins *b, int k) { return b->T * k / b->n; }

/* Adds w x (the overlap of [a, b) with bin k) to acc[k] for every bin; time outside [0, T]
 * is dropped. O(bins the interval touches). */
static void bin_add(const struct bins *b, double *acc, double a, double t1, double w)
{
    if (!(t1 > a) || !(b->T > 0))
        return;
    int k = (int)floor(a / b->T * b->n);
    if (k < 0)
        k = 0;
    for (; k < b->n; k++) {
        double lo = bin_t0(b, k), hi = bin_t0(b, k + 1);
        if (lo >= t1)
            break;
        double x = fmin(t1, hi) - fmax(a, lo);
        if (x > 0)
            acc[k] += w * x;
    }
}

/* acc[k] / width of bin k (0 for an empty span). */
static double bin_mean(const struct bins *b, const double *acc, int k)
{
    double wd = bin_t0(b, k + 1) - bin_t0(b, k);
    return wd > 0 ? acc[k] / wd : 0;
}

static void row_head(struct csv *w, const char *kind, int id, const char *name,
                     const char *tier, const struct bins *b, int k)
{
    csv_str(w, kind);
    csv_int(w, id);
    csv_str(w, name);
    csv_str(w, tier);
    csv_int(w, k);
    csv_num(w, bin_t0(b, k));
    csv_num(w, bin_t0(b, k + 1));
}

/* One gpu row per bin from the four accumulators (NULL: the field is empty). */
static void gpu_rows(struct csv *w, const struct config *c, const struct bins *b, int g,
                     const double *comp, const double *comm, const double *nvl,
                     const double *nic)
{
    char name[32];
    snprintf(name, sizeof(name), "gpu%d", g);
    for (int k = 0; k < b->n; k++) {
        row_head(w, "gpu", g, name, "", b, k);
        const double *v[4] = { comp, comm, nvl, nic };
        for (int i = 0; i < 4; i++)
            csv_num(w, v[i] ? bin_mean(b, v[i], k) : NAN);
        csv_num(w, NAN);
        csv_num(w, NAN);
        csv_ident(w, util_cols, c);
        csv_end(w);
    }
}

/* One link row per bin from lk (its rate integrated over each bin, bytes). */
static void link_rows(struct csv *w, const struct config *c, const struct topo *t,
                      const struct bins *b, int l, const double *lk)
{
    char name[64];
    topo_link_name(t, l, name, sizeof(name));
    double cap = t->links[l].cap_Bps;
    for (int k = 0; k < b->n; k++) {
        row_head(w, "link", l, name, topo_link_is_nvlink(t, l) ? "nvlink" : "net", b, k);
        for (int i = 0; i < 4; i++)
            csv_num(w, NAN);
        double rate = bin_mean(b, lk, k);
        csv_num(w, rate / cap);
        csv_num(w, rate / 1e9);
        csv_ident(w, util_cols, c);
        csv_end(w);
    }
}

/* ---- a layer run ---- */

/* Adds link l's rate over every phase to acc, as rate / cap (utilization) when util. */
static void link_acc(const struct report *r, const struct bins *b, int l, double *acc,
                     bool util)
{
    double cap = r->topo->links[l].cap_Bps, scale = util ? 1 / cap : 1;
    for (int p = 0; p < r->nphases; p++) {
        const struct a2a_result *a = r->phase[p];
        const struct a2a_series *s = &a->series[l];
        double end = a->t0_s + a->time_s;
        for (int i = 0; i < s->n; i++) {
            double t1 = i + 1 < s->n ? s->s[i + 1].t_s : end;
            bin_add(b, acc, s->s[i].t_s, t1, s->s[i].use_Bps * scale);
        }
    }
}

int utilrep_layer_csv(FILE *f, const struct report *r, int bins)
{
    const struct topo *t = r->topo;
    struct bins b = { bins > 0 ? bins : UTILREP_BINS_DEFAULT, 0 };
    for (int p = 0; p < r->nphases; p++) {
        if (!r->phase[p]->series)
            return -EINVAL;
        b.T = fmax(b.T, r->phase[p]->t0_s + r->phase[p]->time_s);
    }
    double *acc = calloc((size_t)5 * b.n, sizeof(double));
    if (!acc)
        return -ENOMEM;
    double *comp = acc, *comm = acc + b.n, *nvl = acc + 2 * b.n, *nic = acc + 3 * b.n;
    double *lk = acc + 4 * b.n;
    struct csv w;
    csv_header(f, util_cols);
    csv_begin(&w, f);
    for (int g = 0; g < t->gpus; g++) {
        for (int i = 0; i < 4 * b.n; i++)
            acc[i] = 0;
        for (int p = 0; p < r->nphases; p++) {
            const struct a2a_result *a = r->phase[p];
            double fin = fmax(a->send_finish_s[g], a->recv_finish_s[g]);
            bin_add(&b, comm, a->t0_s, a->t0_s + fin, 1.0);
        }
        link_acc(r, &b, topo_nvl_tx(t, g), nvl, true);
        link_acc(r, &b, topo_nvl_rx(t, g), nvl, true);
        link_acc(r, &b, topo_nic_tx(t, g), nic, true);
        link_acc(r, &b, topo_nic_rx(t, g), nic, true);
        for (int k = 0; k < b.n; k++)
            nvl[k] /= 2, nic[k] /= 2;
        gpu_rows(&w, r->cfg, &b, g, comp, comm, nvl, nic);
    }
    for (int l = 0; l < t->nlinks; l++) {
        for (int k = 0; k < b.n; k++)
            lk[k] = 0;
        link_acc(r, &b, l, lk, false);
        link_rows(&w, r->cfg, t, &b, l, lk);
    }
    free(acc);
    return ferror(f) ? -EIO : 0;
}

/* ---- a step ---- */

static bool what_is_comm(int what)
{
    return what == STEP_DISPATCH || what == STEP_COMBINE || what == STEP_DP_REDUCE ||
           what == STEP_ATTN_GATHER || what == STEP_ATTN_SCATTER;
}

/* Sub-ops that a GPU's straggler wait is taken out of: those holding routed-expert work. */
static bool what_is_expert(int what)
{
    return what == STEP_EXPERTS || what == STEP_EXPERTS_W || what == STEP_WGRAD;
}

/* One lane's slices, binned: its compute sub-ops apart from those its GPUs' straggler
 * waits are taken out of (expert), and its communication; and their total lengths. */
struct lane_acc {
    double *other, *expert, *comm;     /* bins each */
    double other_s, expert_s;
};

/* Slices idx[0..n) of one lane into a (zeroed first). */
static void lane_fill(const struct step_result *s, const struct bins *b, const int64_t *idx,
                      int64_t n, struct lane_acc *a)
{
    for (int k = 0; k < b->n; k++)
        a->other[k] = a->expert[k] = a->comm[k] = 0;
    a->other_s = a->expert_s = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct step_slice *x = &s->slices[idx[i]];
        double d = x->t1_s - x->t0_s;
        if (x->stream == STEP_P2P)
            continue;
        if (what_is_comm(x->what)) {
            bin_add(b, a->comm, x->t0_s, x->t1_s, 1.0);
        } else if (what_is_expert(x->what)) {
            bin_add(b, a->expert, x->t0_s, x->t1_s, 1.0);
            a->expert_s += d;
        } else {
            bin_add(b, a->other, x->t0_s, x->t1_s, 1.0);
            a->other_s += d;
        }
    }
}

/* The slice indices grouped by lane (counting sort, stable): lane l's are
 * idx[first[l] .. first[l+1]). 0 or -ENOMEM. */
static int by_lane(const struct step_result *s, int64_t **idx, int64_t **first)
{
    *idx = malloc((size_t)(s->nslices + 1) * sizeof(int64_t));
    *first = calloc((size_t)s->lanes + 2, sizeof(int64_t));
    if (!*idx || !*first)
        return -ENOMEM;
    int64_t *c = *first;
    for (int64_t i = 0; i < s->nslices; i++)
        c[s->slices[i].lane + 2]++;
    for (int l = 0; l < s->lanes; l++)
        c[l + 2] += c[l + 1];
    for (int64_t i = 0; i < s->nslices; i++)
        (*idx)[c[s->slices[i].lane + 1]++] = i;
    return 0;
}

/* ---- a step's links ---- */

/* What one lane of one stage sends in one collective, per link of the cluster: n links
 * with their bytes, in the order first met. */
struct lane_bytes {
    bool done;
    int n;
    int *link;
    double *bytes;
};

/* The kept collective behind comm slice x (step.h's step_comm), or -1. */
static int comm_of(const struct step_result *s, const struct step_slice *x)
{
    const struct step_comm *c = &s->comm;
    if (x->what == STEP_DP_REDUCE)
        return x->piece >= 0 && x->piece < s->pieces ? c->reduce[x->piece] : -1;
    if (x->what == STEP_ATTN_GATHER || x->what == STEP_ATTN_SCATTER)
        return c->sp;
    if (x->layer < 0 || x->layer >= s->layers)
        return -1;
    bool back = x->kind == SCHED_B;
    int k = x->what == STEP_DISPATCH ? (back ? 3 : 0) : (back ? 2 : 1);
    return c->a2a[4 * x->layer + k];
}

/* *o: the rows of lane g's GPUs (stage numbering) of matrix m, routed on t from the
 * stage's first GPU base; acc (t->nlinks, zeroed) is scratch, zeroed again on return.
 * Cost: ep x dp routes. 0 or -ENOMEM. */
static int lane_bytes_of(struct lane_bytes *o, const struct topo *t, const double *m, int dp,
                         int ep, int base, int g, double *acc, int *met)
{
    int n = 0;
    for (int i = g * ep; i < (g + 1) * ep; i++)
        for (int j = 0; j < dp; j++) {
            double b = m[(size_t)i * dp + j];
            int links[TOPO_MAX_HOPS];
            double lat_s;
            if (i == j || !(b > 0))
                continue;
            int nl = topo_route(t, base + i, base + j, links, &lat_s);
            for (int h = 0; h < nl; h++) {
                if (acc[links[h]] == 0)
                    met[n++] = links[h];
                acc[links[h]] += b;
            }
        }
    o->done = true;
    o->n = n;
    o->link = malloc((size_t)(n + 1) * sizeof(int));
    o->bytes = malloc((size_t)(n + 1) * sizeof(double));
    int rc = o->link && o->bytes ? 0 : -ENOMEM;
    for (int k = 0; k < n; k++) {
        if (!rc) {
            o->link[k] = met[k];
            o->bytes[k] = acc[met[k]];
        }
        acc[met[k]] = 0;
    }
    return rc;
}

/* lk[l * bins + k]: the bytes link l carried in bin k over the step: each communication
 * sub-op adds its collective's bytes for its lane (lane_bytes, computed once per
 * collective, stage and lane) at a constant rate over the sub-op. 0, -ENOMEM. */
static int step_links(const struct step_result *s, const struct topo *t,
                      const struct bins *b, double *lk)
{
    int groups = s->dp / s->ep;
    size_t nkeys = (size_t)s->comm.n * s->pp * groups;
    struct lane_bytes *lb = calloc(nkeys + 1, sizeof(*lb));
    double *acc = calloc((size_t)t->nlinks, sizeof(double));
    int *met = malloc((size_t)t->nlinks * sizeof(int));
    int rc = lb && acc && met ? 0 : -ENOMEM;
    for (int64_t i = 0; i < s->nslices && !rc; i++) {
        const struct step_slice *x = &s->slices[i];
        int c = what_is_comm(x->what) ? comm_of(s, x) : -1;
        if (c < 0 || !(x->t1_s > x->t0_s))
            continue;
        int stage = x->lane / groups, g = x->lane % groups;
        struct lane_bytes *o = &lb[((size_t)c * s->pp + stage) * groups + g];
        if (!o->done && (rc = lane_bytes_of(o, t, s->comm.m[c], s->dp, s->ep, stage * s->dp,
                                            g, acc, met)))
            break;
        double d = x->t1_s - x->t0_s;
        for (int k = 0; k < o->n; k++)
            bin_add(b, lk + (size_t)o->link[k] * b->n, x->t0_s, x->t1_s, o->bytes[k] / d);
    }
    for (size_t k = 0; lb && k < nkeys; k++) {
        free(lb[k].link);
        free(lb[k].bytes);
    }
    free(lb);
    free(acc);
    free(met);
    return rc;
}

/* dst[k] = the mean utilization of links l0 and l1 in bin k, times the bin's width (the
 * accumulator gpu_rows divides). */
static void pair_util(const struct topo *t, const struct bins *b, const double *lk, int l0,
                      int l1, double *dst)
{
    for (int k = 0; k < b->n; k++)
        dst[k] = (lk[(size_t)l0 * b->n + k] / t->links[l0].cap_Bps +
                  lk[(size_t)l1 * b->n + k] / t->links[l1].cap_Bps) / 2;
}

int utilrep_step_csv(FILE *f, const struct steprep *r, int bins)
{
    const struct step_result *s = r->res;
    if (!s->slices && s->subops)
        return -EINVAL;
    struct bins b = { bins > 0 ? bins : UTILREP_BINS_DEFAULT, s->step_s };
    double *acc = calloc((size_t)6 * b.n, sizeof(double)), *lk = NULL;
    int64_t *idx = NULL, *first = NULL;
    struct topo *t = NULL;
    struct cfg_cluster cl = r->cfg->cluster;
    cl.route = config_a2a_route(r->cfg);   /* the routes the all-to-alls took */
    int rc = acc ? by_lane(s, &idx, &first) : -ENOMEM;
    if (!rc && s->comm.a2a && (rc = topo_create(&t, &cl)) == 0 &&
        !(lk = calloc((size_t)t->nlinks * b.n, sizeof(double))))
        rc = -ENOMEM;
    if (!rc && t)
        rc = step_links(s, t, &b, lk);
    if (rc)
        goto out;
    struct lane_acc a = { acc, acc + b.n, acc + 2 * b.n, 0, 0 };
    double *comp = acc + 3 * b.n, *nvl = acc + 4 * b.n, *nic = acc + 5 * b.n;
    struct csv w;
    csv_header(f, util_cols);
    csv_begin(&w, f);
    /* lanes are rank-major, EP groups in order: lane l holds GPUs [l ep, (l+1) ep) */
    for (int l = 0; l < s->lanes; l++) {
        lane_fill(s, &b, idx + first[l], first[l + 1] - first[l], &a);
        double all_s = a.other_s + a.expert_s;
        for (int j = 0; j < s->ep; j++) {
            int g = l * s->ep + j;
            /* this GPU's straggler wait comes out of the expert slices or, should those
             * be shorter, out of every compute slice */
            double wait_s = fmax(0.0, all_s - s->gpu[g].compute_s);
            bool in_exp = a.expert_s >= wait_s && a.expert_s > 0;
            double xw = in_exp ? 1 - wait_s / a.expert_s : 1;
            double ow = !in_exp && all_s > 0 ? 1 - wait_s / all_s : 1;
            for (int k = 0; k < b.n; k++)
                comp[k] = ow * (a.other[k] + xw * a.expert[k]);
            if (t) {
                pair_util(t, &b, lk, topo_nvl_tx(t, g), topo_nvl_rx(t, g), nvl);
                pair_util(t, &b, lk, topo_nic_tx(t, g), topo_nic_rx(t, g), nic);
            }
            gpu_rows(&w, r->cfg, &b, g, comp, a.comm, t ? nvl : NULL, t ? nic : NULL);
        }
    }
    for (int l = 0; t && l < t->nlinks; l++)
        link_rows(&w, r->cfg, t, &b, l, lk + (size_t)l * b.n);
    rc = ferror(f) ? -EIO : 0;
out:
    topo_free(t);
    free(lk);
    free(acc);
    free(idx);
    free(first);
    return rc;
}

/* ---- a step's sub-ops ---- */

static const char ops_cols[] =
    "lane,stage,ep_group,first_gpu,stream,op,what,mb,piece,layer,t0_s,t1_s";

int utilrep_ops_csv(FILE *f, const struct steprep *r)
{
    static const char *const streams[] = { "compute", "comm", "p2p" };
    static const char *const ops[] = { "F", "B", "W" };
    const struct step_result *s = r->res;
    if (!s->slices && s->subops)
        return -EINVAL;
    int groups = s->dp / s->ep;
    struct csv w;
    csv_header(f, ops_cols);
    csv_begin(&w, f);
    for (int64_t i = 0; i < s->nslices; i++) {
        const struct step_slice *x = &s->slices[i];
        int stage = x->lane / groups, grp = x->lane % groups;
        csv_int(&w, x->lane);
        csv_int(&w, stage);
        csv_int(&w, grp);
        csv_int(&w, stage * s->dp + grp * s->ep);
        csv_str(&w, what_is_comm(x->what) ? "comm" : streams[x->stream % 3]);
        csv_str(&w, x->what == STEP_DP_REDUCE ? "" : ops[x->kind % 3]);
        csv_str(&w, step_what_name(x->what));
        csv_int(&w, x->mb);
        csv_int(&w, x->piece);
        csv_int(&w, x->layer);
        csv_num(&w, x->t0_s);
        csv_num(&w, x->t1_s);
        csv_ident(&w, ops_cols, r->cfg);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}
