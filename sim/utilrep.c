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
        char name[64];
        topo_link_name(t, l, name, sizeof(name));
        double cap = t->links[l].cap_Bps;
        for (int k = 0; k < b.n; k++)
            lk[k] = 0;
        link_acc(r, &b, l, lk, false);
        for (int k = 0; k < b.n; k++) {
            row_head(&w, "link", l, name, topo_link_is_nvlink(t, l) ? "nvlink" : "net", &b, k);
            for (int i = 0; i < 4; i++)
                csv_num(&w, NAN);
            double rate = bin_mean(&b, lk, k);
            csv_num(&w, rate / cap);
            csv_num(&w, rate / 1e9);
            csv_ident(&w, util_cols, r->cfg);
            csv_end(&w);
        }
    }
    free(acc);
    return ferror(f) ? -EIO : 0;
}

/* ---- a step ---- */

static bool what_is_comm(int what)
{
    return what == STEP_DISPATCH || what == STEP_COMBINE || what == STEP_DP_REDUCE;
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

int utilrep_step_csv(FILE *f, const struct steprep *r, int bins)
{
    const struct step_result *s = r->res;
    if (!s->slices && s->subops)
        return -EINVAL;
    struct bins b = { bins > 0 ? bins : UTILREP_BINS_DEFAULT, s->step_s };
    double *acc = calloc((size_t)4 * b.n, sizeof(double));
    int64_t *idx = NULL, *first = NULL;
    int rc = acc ? by_lane(s, &idx, &first) : -ENOMEM;
    if (rc)
        goto out;
    struct lane_acc a = { acc, acc + b.n, acc + 2 * b.n, 0, 0 };
    double *comp = acc + 3 * b.n;
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
            gpu_rows(&w, r->cfg, &b, g, comp, a.comm, NULL, NULL);
        }
    }
    rc = ferror(f) ? -EIO : 0;
out:
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
