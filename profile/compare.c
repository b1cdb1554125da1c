/* compare.c: moesim's prediction against a measured run (compare.h). */
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chrome.h"
#include "compute.h"
#include "csv.h"
#include "model.h"
#include "ofile.h"
#include "runpt.h"

#define FILES_MAX 520                     /* CONFIG files + --calibration files */
#define FORCED 18                         /* the --set options compare adds */
#define SET_MAX (OFILE_PATH_MAX + 64)

/* files then calibration files into out; the count, or -1 when too many. */
static int all_files(const struct cmp_spec *s, const char **out)
{
    if (s->nfiles + s->ncalib > FILES_MAX)
        return -1;
    for (int i = 0; i < s->nfiles; i++)
        out[i] = s->files[i];
    for (int i = 0; i < s->ncalib; i++)
        out[s->nfiles + i] = s->calib[i];
    return s->nfiles + s->ncalib;
}

/* The config with the calibration files: 0 or -EINVAL / -ENOMEM with msg. extra: sets
 * after the user's (nextra of them). */
static int load(struct config *c, const struct cmp_spec *s, char (*extra)[SET_MAX], int nextra,
                char *msg, size_t n)
{
    const char *files[FILES_MAX];
    const char **sets = calloc((size_t)s->nsets + (size_t)nextra + 1, sizeof(*sets));
    int nf = all_files(s, files);
    if (!sets)
        return -ENOMEM;
    if (nf < 0) {
        free(sets);
        return snprintf(msg, n, "moeprof run: more than %d config and calibration files",
                        FILES_MAX), -EINVAL;
    }
    for (int i = 0; i < s->nsets; i++)
        sets[i] = s->sets[i];
    for (int i = 0; i < nextra; i++)
        sets[s->nsets + i] = extra[i];
    struct cfg_err err;
    int rc = config_load(c, files, nf, sets, s->nsets + nextra, &err);
    if (rc == -EINVAL)
        snprintf(msg, n, "%s", err.msg);
    else if (rc)
        snprintf(msg, n, "moeprof run: --compare: %s", strerror(-rc));
    free(sets);
    return rc;
}

int cmp_check(const struct cmp_spec *s, char *msg, size_t n)
{
    struct config c;
    int rc = load(&c, s, NULL, 0, msg, n);
    if (rc)
        return rc;
    struct compute *cm = NULL;
    struct cfg_err err;
    rc = compute_create(&cm, &c, &err);
    compute_free(cm);
    if (rc == -EINVAL)
        return snprintf(msg, n, "%s", err.msg), -EINVAL;
    if (rc)
        return snprintf(msg, n, "moeprof run: --compare: calibration.expert_table: %s",
                        strerror(-rc)), rc == -EIO ? -EINVAL : rc;
    /* eplb places from loads: moeprof took them from the popularity, moesim replaying
     * the recorded trace would take them from its counts, and the layouts could differ. */
    if ((c.balance.placement == PLACE_EPLB || c.balance.placement == PLACE_EPLB_GLOBAL) &&
        c.routing.distribution != DIST_TRACE)
        return snprintf(msg, n, "moeprof run: --compare: balance.placement = %s places from "
                        "expert loads, which moesim would take from the recorded trace and "
                        "this run from the popularity; use contiguous or round-robin, or "
                        "routing.distribution = trace", config_place_name(c.balance.placement)),
               -EINVAL;
    return 0;
}

/* The ranks as moesim's GPUs: nodes of equal size, consecutive ranks. */
static int node_blocks(const struct rec_run *r, int *nodes, char *msg, size_t n)
{
    int nn = 0;
    for (int k = 0; k < r->ranks; k++)
        nn += !r->node || r->node[k] == k;
    int gpn = r->ranks / nn;
    bool ok = nn * gpn == r->ranks;
    for (int k = 0; ok && r->node && k < r->ranks; k++)
        ok = r->node[k] == k / gpn * gpn;
    if (!ok)
        return snprintf(msg, n, "moeprof run: --compare: the %d ranks are not %d nodes of "
                        "consecutive ranks, equal in number (moesim's GPU g is rank g; start "
                        "mpirun with --map-by node:... or one block per node)", r->ranks, nn),
               -EINVAL;
    *nodes = nn;
    return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v); NAN for n = 0. */
static double median(double *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The phases each sum row adds. */
static bool in_sum(int id, int phase)
{
    int s = phase % TMR_NSTEPS;
    bool modelled = s == TMR_DISPATCH || s == TMR_EXPERTS || s == TMR_COMBINE;
    return modelled && (id == CMP_FWD_SUM ? phase < TMR_NSTEPS : phase >= TMR_NSTEPS);
}

/* Iteration it's routing of layer l (every rank's counts) equals its iteration 0's. */
static bool same_routing(const struct rec_run *r, int l, int it)
{
    size_t per = (size_t)r->ranks * r->experts;
    const int32_t *c0 = r->counts + (size_t)l * r->iters * per;
    return !memcmp(c0, c0 + (size_t)it * per, per * sizeof(int32_t));
}

/* The iterations compared for layer l (l < 0: all layers, those every layer routed like
 * its iteration 0). */
static const bool *used_of(const struct cmp_result *c, int l)
{
    return c->used + (size_t)(l < 0 ? c->layers : l) * (size_t)c->iters;
}

/* Record x counts in row id: its phase is the row's, or one the sum row adds. */
static bool in_row(int id, int phase)
{
    return id >= TMR_NPHASES ? in_sum(id, phase) : phase == id;
}

/* The measured values of row id of layer l (l < 0: every layer) on rank k into v, one per
 * used iteration: the durations of the row's records of that iteration added (a single
 * record for a phase of one layer); their waits likewise into w. The count. */
static size_t values(const struct cmp_result *c, const struct rec_run *r, const double *wait_s,
                     int l, int id, int k, double *v, double *w)
{
    const bool *used = used_of(c, l);
    size_t m = 0;
    for (int it = 0; it < r->iters; it++)
        v[it] = w[it] = NAN;              /* no record yet */
    for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
        const struct tmr_rec *x = &r->rec[i];
        if (x->iter < 0 || x->iter >= r->iters || x->layer < 0 || x->layer >= r->layers ||
            (l >= 0 && x->layer != l) || !used[x->iter] || !in_row(id, x->phase))
            continue;
        v[x->iter] = (isnan(v[x->iter]) ? 0 : v[x->iter]) + x->dur_s;
        w[x->iter] = (isnan(w[x->iter]) ? 0 : w[x->iter]) + wait_s[i];
    }
    for (int it = 0; it < r->iters; it++)
        if (!isnan(v[it])) {
            w[m] = w[it];
            v[m++] = v[it];
        }
    return m;
}

/* Predicted seconds of phase on GPU g; NAN where moesim has no such phase. */
static double predict(const struct runpt *p, const struct compute_t *ex, int phase, int g)
{
    const struct a2a_result *d = &p->res[0], *c = &p->res[1];
    const struct a2a_result *a = NULL;
    switch (phase) {
    case TMR_DISPATCH:                              /* F: tokens to the experts */
    case TMR_NSTEPS + TMR_COMBINE:                  /* B: dy to the experts, the same way */
        a = d;
        break;
    case TMR_COMBINE:
    case TMR_NSTEPS + TMR_DISPATCH:                 /* B: dx back, the combine's way */
        a = c;
        break;
    case TMR_EXPERTS:
        return ex[g].f_s;
    case TMR_NSTEPS + TMR_EXPERTS:
        return ex[g].b_s + ex[g].w_s;
    default:
        return NAN;
    }
    return fmax(a->send_finish_s[g], a->recv_finish_s[g]);
}

/* Rank k's prediction of row id of layer l (l < 0: the layers' sum) from v (c->pred_s or
 * c->wait_pred_s); NAN: not modelled. */
static double row_pred(const struct cmp_result *c, const double *v, int l, int id, int k)
{
    double p = 0;
    for (int j = l < 0 ? 0 : l; j < (l < 0 ? c->layers : l + 1); j++)
        for (int q = 0; q < TMR_NPHASES; q++)
            if (in_row(id, q))
                p += v[((size_t)j * c->ranks + k) * TMR_NPHASES + q];
    return p;
}

/* Layer l's pass as a timeline per rank (compare.h): the all-to-all pre from 0 on every
 * rank, the experts ex, then post, which waits for the last experts of the rank's EP
 * group: its predicted wait into c->wait_pred_s and added to its c->pred_s. */
static void timeline(struct cmp_result *c, int l, int ep, int pre, int ex, int post)
{
    double *p = c->pred_s + (size_t)l * c->ranks * TMR_NPHASES;
    double *w = c->wait_pred_s + (size_t)l * c->ranks * TMR_NPHASES;
    for (int g = 0; g < c->ranks; g += ep) {
        double last = -INFINITY;
        for (int k = g; k < g + ep; k++)
            last = fmax(last, p[k * TMR_NPHASES + pre] + p[k * TMR_NPHASES + ex]);
        for (int k = g; k < g + ep; k++) {
            double own = p[k * TMR_NPHASES + pre] + p[k * TMR_NPHASES + ex];
            w[k * TMR_NPHASES + pre] = w[k * TMR_NPHASES + ex] = 0;
            w[k * TMR_NPHASES + post] = last - own;
            p[k * TMR_NPHASES + post] += last - own;
        }
    }
}

/* The rows of layer l (l < 0: every layer) from the records and c->pred_s, appended to
 * c->row. 0 or -ENOMEM. */
static int rows(struct cmp_result *c, const struct rec_run *r, const double *wait_s, int l)
{
    size_t iters = r->iters > 0 ? (size_t)r->iters : 1;
    double *all = malloc(iters * (size_t)r->ranks * sizeof(double));
    double *allw = malloc(iters * (size_t)r->ranks * sizeof(double));
    double *pred = malloc((size_t)r->ranks * sizeof(double));
    double *pw = malloc((size_t)r->ranks * sizeof(double));
    double *rank_med = malloc((size_t)r->ranks * sizeof(double));
    int rc = -ENOMEM;
    if (!all || !allw || !pred || !pw || !rank_med)
        goto out;
    for (int id = 0; id < CMP_ROWS; id++) {
        struct cmp_row *w = &c->row[c->nrows];
        size_t m = 0, nk = 0;
        double worst = -INFINITY;
        *w = (struct cmp_row){ .layer = l, .id = id, .slow = -1, .pred_s = NAN,
                               .slow_pred_s = NAN, .wait_s = NAN, .wait_pred_s = NAN };
        double top = -INFINITY;           /* the slowest prediction */
        for (int k = 0; k < r->ranks; k++) {
            size_t got = values(c, r, wait_s, l, id, k, all + m, allw + m);
            pred[k] = row_pred(c, c->pred_s, l, id, k);
            pw[k] = row_pred(c, c->wait_pred_s, l, id, k);
            top = fmax(top, pred[k]);
            double med = median(all + m, got);    /* sorts this rank's values in place */
            if (got)
                rank_med[nk++] = med;
            if (got && med > worst) {
                worst = med;
                w->slow = k;
                w->slow_meas_s = med;
                w->slow_pred_s = pred[k];
            }
            m += got;
        }
        if (!m)
            continue;                     /* a phase this run has no records of */
        w->n = m;
        w->modelled = isfinite(pred[0]);
        w->meas_s = median(rank_med, nk);
        bool comm = id < TMR_NPHASES && tmr_step_is_comm((enum tmr_step)(id % TMR_NSTEPS));
        if (comm)
            w->wait_s = median(allw, m);
        if (w->modelled)
            w->pred_s = median(pred, (size_t)r->ranks);
        if (w->modelled && comm)
            w->wait_pred_s = median(pw, (size_t)r->ranks);
        if (w->modelled && id >= TMR_NPHASES)
            w->slow_pred_s = top;         /* the layer lasts as long as its slowest rank */
        c->nrows++;
    }
    rc = 0;
out:
    free(all);
    free(allw);
    free(pred);
    free(pw);
    free(rank_med);
    return rc;
}

/* moesim's prediction of layer l into c->pred_s: the layer's routing alone (layer 0 of a
 * trace of its own, which moesim replays) through moesim's one-layer run. 0; 1 or 2 with
 * msg, as cmp_run. */
static int predict_layer(struct cmp_result *c, const struct cmp_spec *s,
                         const struct rec_run *r, int l, char *msg, size_t n)
{
    /* The routing trace, for moesim to replay: a temporary ofile, never committed. */
    struct ofile tr;
    char p[OFILE_PATH_MAX];
    int rc;
    snprintf(p, sizeof(p), "%s/compare-routing.trace", s->dir);
    if ((rc = ofile_open(&tr, p)))
        return snprintf(msg, n, "moeprof run: --compare: %s: %s", p, strerror(-rc)), 1;
    if (tr.kind != OFILE_REPLACE) {
        ofile_abort(&tr);
        return snprintf(msg, n, "moeprof run: --compare: %s is not a regular file", p), 2;
    }
    struct rec_run one = *r;              /* layer l as the only layer */
    one.layers = 1;
    one.counts = r->counts + (size_t)l * r->iters * r->ranks * r->experts;
    if ((rc = rec_routing_trace(tr.f, &one)) || fflush(tr.f)) {
        ofile_abort(&tr);
        return snprintf(msg, n, "moeprof run: --compare: %s: %s", p, strerror(rc ? -rc : EIO)),
               1;
    }
    char forced[FORCED][SET_MAX];
    int nf = 0;
    snprintf(forced[nf++], SET_MAX, "cluster.nodes=%d", c->nodes);
    snprintf(forced[nf++], SET_MAX, "cluster.gpus_per_node=%d", r->ranks / c->nodes);
    snprintf(forced[nf++], SET_MAX, "parallel.pp=1");
    snprintf(forced[nf++], SET_MAX, "parallel.dp=0");
    snprintf(forced[nf++], SET_MAX, "parallel.ep=%d", r->ep);
    snprintf(forced[nf++], SET_MAX, "routing.distribution=trace");
    snprintf(forced[nf++], SET_MAX, "routing.trace=%s", tr.tmp);
    snprintf(forced[nf++], SET_MAX, "routing.dedup=false");
    snprintf(forced[nf++], SET_MAX, "routing.max_nodes=0");
    snprintf(forced[nf++], SET_MAX, "balance.capacity_factor=0");
    snprintf(forced[nf++], SET_MAX, "traffic.pattern=moe");
    snprintf(forced[nf++], SET_MAX, "traffic.combine=true");
    snprintf(forced[nf++], SET_MAX, "schedule.kind=none");
    snprintf(forced[nf++], SET_MAX, "model.dispatch_dtype=%s", s->dtype);
    snprintf(forced[nf++], SET_MAX, "model.combine_dtype=%s", s->dtype);
    snprintf(forced[nf++], SET_MAX, "model.combine_grad_dtype=%s", s->dtype);
    snprintf(forced[nf++], SET_MAX, "model.dispatch_grad_dtype=%s", s->dtype);
    rc = load(&c->cfg, s, forced, nf, msg, n);
    struct runpt pt;
    struct runpt_opts o = { .seed = s->seed };
    memset(&pt, 0, sizeof(pt));
    if (!rc)
        rc = runpt_run(&pt, &c->cfg, &o, msg, n);
    else
        rc = rc == -EINVAL ? 2 : 1;
    ofile_abort(&tr);                     /* moesim has read the trace */
    if (rc) {
        runpt_free(&pt);
        return rc;
    }
    struct compute *cm = NULL;
    struct model m;
    struct cfg_err err = { .msg = "" };
    struct compute_t *ex = calloc((size_t)r->ranks, sizeof(*ex));
    if (!ex) {
        rc = 1;
        snprintf(msg, n, "moeprof run: --compare: %s", strerror(ENOMEM));
        goto out;
    }
    if ((rc = compute_create(&cm, &c->cfg, &err)) || (rc = model_init(&m, &c->cfg))) {
        snprintf(msg, n, "moeprof run: --compare: %s", rc == -EINVAL && err.msg[0] ? err.msg
                 : rc == -EINVAL ? "the model of the config is incomplete (model.h)"
                 : strerror(-rc));
        rc = rc == -EINVAL ? 2 : 1;
        goto out;
    }
    compute_routed_experts(cm, &m, &pt.rt, ex);
    for (int k = 0; k < r->ranks; k++)
        for (int q = 0; q < TMR_NPHASES; q++) {
            size_t i = ((size_t)l * r->ranks + k) * TMR_NPHASES + q;
            c->pred_s[i] = predict(&pt, ex, q, k);
            c->wait_pred_s[i] = NAN;
        }
    int ep = r->ep > 0 && r->ranks % r->ep == 0 ? r->ep : r->ranks;
    timeline(c, l, ep, TMR_DISPATCH, TMR_EXPERTS, TMR_COMBINE);
    timeline(c, l, ep, TMR_NSTEPS + TMR_COMBINE, TMR_NSTEPS + TMR_EXPERTS,
             TMR_NSTEPS + TMR_DISPATCH);
out:
    compute_free(cm);
    free(ex);
    runpt_free(&pt);
    return rc;
}

int cmp_run(struct cmp_result *c, const struct cmp_spec *s, const struct rec_run *r,
            char *msg, size_t n)
{
    memset(c, 0, sizeof(*c));
    c->ranks = r->ranks;
    c->layers = r->layers;
    c->iters = r->iters;
    int nodes = 0, rc = 0;
    if (node_blocks(r, &nodes, msg, n))
        return 2;
    c->nodes = nodes;
    size_t w = 0;
    for (int i = 0; i < s->ncalib && w < sizeof(c->where); i++)
        w += (size_t)snprintf(c->where + w, sizeof(c->where) - w, "%s%s", i ? ", " : "",
                              s->calib[i]);
    if (!s->ncalib)
        snprintf(c->where, sizeof(c->where), "none (the config's own figures)");

    size_t L = r->layers > 0 ? (size_t)r->layers : 1, it = r->iters > 0 ? (size_t)r->iters : 1;
    size_t nrec = r->rec0[r->ranks];
    double *wait_s = malloc((nrec ? nrec : 1) * sizeof(double));
    c->pred_s = malloc(L * (size_t)r->ranks * TMR_NPHASES * sizeof(double));
    c->wait_pred_s = malloc(L * (size_t)r->ranks * TMR_NPHASES * sizeof(double));
    c->used = calloc((L + 1) * it, sizeof(bool));
    c->row = calloc((L + 1) * CMP_ROWS, sizeof(*c->row));
    if (!wait_s || !c->pred_s || !c->wait_pred_s || !c->used || !c->row || rec_waits(r, wait_s)) {
        free(wait_s);
        return snprintf(msg, n, "moeprof run: --compare: %s", strerror(ENOMEM)), 1;
    }
    for (int i = 0; i < r->iters; i++) {
        bool all = true;
        for (int l = 0; l < r->layers; l++) {
            bool u = same_routing(r, l, i);
            c->used[(size_t)l * it + (size_t)i] = u;
            all = all && u;
        }
        c->used[L * it + (size_t)i] = all;
        c->iters_used += all;
    }
    for (int l = 0; l < r->layers && !rc; l++)
        rc = predict_layer(c, s, r, l, msg, n);
    /* Per layer, then (with several) their sum. */
    for (int l = 0; l < r->layers + (r->layers > 1) && !rc; l++)
        if ((rc = rows(c, r, wait_s, l < r->layers ? l : -1))) {
            snprintf(msg, n, "moeprof run: --compare: %s", strerror(-rc));
            rc = 1;
        }
    free(wait_s);
    return rc;
}

void cmp_free(struct cmp_result *c)
{
    if (!c)
        return;
    free(c->pred_s);
    free(c->wait_pred_s);
    free(c->used);
    free(c->row);
    memset(c, 0, sizeof(*c));
}

static const char *row_name(int id)
{
    return id == CMP_FWD_SUM ? "fwd.modelled" : id == CMP_BWD_SUM ? "bwd.modelled"
                                                                  : tmr_phase_name(id);
}

static double err_pct(double pred, double meas)
{
    return isfinite(pred) && meas > 0 ? 100.0 * (pred - meas) / meas : NAN;
}

/* A time in ms, or "-" where it does not exist, right-aligned in width. */
static void ms(FILE *f, double v, int width)
{
    if (isfinite(v))
        fprintf(f, " %*.3f", width, 1e3 * v);
    else
        fprintf(f, " %*s", width, "-");
}

static void pct(FILE *f, double v, int width)
{
    if (isfinite(v))
        fprintf(f, " %+*.2f", width, v);
    else
        fprintf(f, " %*s", width, "-");
}

/* The iterations compared for layer l (l < 0: all). */
static int used_count(const struct cmp_result *c, int l)
{
    int k = 0;
    for (int it = 0; it < c->iters; it++)
        k += used_of(c, l)[it];
    return k;
}

int cmp_print(FILE *f, const struct cmp_result *c)
{
    fprintf(f, "# compare: moesim's layer on this run's routing, layout and placement (%s), "
            "%d node(s) x %d GPU(s), each of the %d layer(s) on its own routing; "
            "calibration: %s\n", config_place_name(c->cfg.balance.placement), c->nodes,
            c->nodes ? c->ranks / c->nodes : 0, c->layers, c->where);
    fprintf(f, "# error = (predicted - measured) / measured; '-': a phase moesim does not "
            "model (measured only)\n");
    fprintf(f, "# phase          measured predicted   error  slowest measured predicted"
            "   error     wait     wait\n");
    fprintf(f, "#                  median                      rank                          "
            "        median     pred\n");
    fprintf(f, "#                    (ms)      (ms)     (%%)              (ms)      (ms)     "
            "(%%)     (ms)     (ms)\n");
    for (int i = 0; i < c->nrows; i++) {
        const struct cmp_row *w = &c->row[i];
        if (i == 0 || w->layer != c->row[i - 1].layer) {
            if (w->layer >= 0)
                fprintf(f, "# layer %d: %d of %d iteration(s) (those with the layer's "
                        "iteration 0 routing)\n", w->layer, used_count(c, w->layer), c->iters);
            else
                fprintf(f, "# all %d layers, summed per rank and iteration: %d of %d "
                        "iteration(s) (those where every layer routed as in iteration 0)\n",
                        c->layers, c->iters_used, c->iters);
        }
        fprintf(f, "  %-14s", row_name(w->id));
        ms(f, w->meas_s, 8);
        ms(f, w->pred_s, 9);
        pct(f, err_pct(w->pred_s, w->meas_s), 7);
        fprintf(f, " %8d", w->slow);
        ms(f, w->slow_meas_s, 8);
        ms(f, w->slow_pred_s, 9);
        pct(f, err_pct(w->slow_pred_s, w->slow_meas_s), 7);
        ms(f, w->wait_s, 8);
        ms(f, w->wait_pred_s, 8);
        fprintf(f, "\n");
    }
    return ferror(f) ? -EIO : 0;
}

#define CMP_COLS "phase,modelled,measured_median_s,predicted_s,error_pct,slowest_rank," \
                 "slowest_measured_s,slowest_predicted_s,slowest_error_pct,wait_median_s,samples,layer"
#define CMP_THEN "wait_predicted_s"    /* after the identifying columns */

int cmp_csv(FILE *f, const struct cmp_result *c)
{
    struct csv w;
    int rc = 0;
    csv_header_then(f, CMP_COLS, CMP_THEN);
    csv_begin(&w, f);
    for (int i = 0; i < c->nrows && !rc; i++) {
        const struct cmp_row *x = &c->row[i];
        csv_str(&w, row_name(x->id));
        csv_int(&w, x->modelled);
        csv_num(&w, x->meas_s);
        csv_num(&w, x->pred_s);
        csv_num(&w, err_pct(x->pred_s, x->meas_s));
        csv_int(&w, x->slow);
        csv_num(&w, x->slow_meas_s);
        csv_num(&w, x->slow_pred_s);
        csv_num(&w, err_pct(x->slow_pred_s, x->slow_meas_s));
        csv_num(&w, x->wait_s);
        csv_u64(&w, x->n);
        if (x->layer >= 0)
            csv_int(&w, x->layer);
        else
            csv_str(&w, "all");
        csv_ident(&w, CMP_COLS, &c->cfg);
        csv_num(&w, x->wait_pred_s);
        rc = csv_end(&w);
    }
    return rc ? rc : ferror(f) ? -EIO : 0;
}

int cmp_chrome(struct chrome *ch, const struct rec_run *r, const void *arg)
{
    const struct cmp_result *c = arg;
    int rc = 0;
    double z = rec_t_zero(r);
    for (int k = 0; k < r->ranks && !rc; k++) {
        char name[48];
        int pid = r->ranks + k;
        snprintf(name, sizeof(name), "predicted rank %d", k);
        rc = chrome_process_name(ch, pid, name);
        rc = rc ? rc : chrome_process_sort(ch, pid, pid);
        rc = rc ? rc : chrome_thread_name(ch, pid, 0, "compute");
        rc = rc ? rc : chrome_thread_sort(ch, pid, 0, 0);
        rc = rc ? rc : chrome_thread_name(ch, pid, 1, "comm");
        rc = rc ? rc : chrome_thread_sort(ch, pid, 1, 1);
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1] && !rc; i++) {
            const struct tmr_rec *x = &r->rec[i];
            if (x->layer < 0 || x->layer >= r->layers || x->iter < 0 || x->iter >= r->iters)
                continue;
            int first = 0;                /* the layer's first compared iteration */
            while (first < r->iters && !used_of(c, x->layer)[first])
                first++;
            double p = c->pred_s[((size_t)x->layer * r->ranks + k) * TMR_NPHASES + x->phase];
            if (x->iter != first || !isfinite(p))
                continue;
            enum tmr_step st = (enum tmr_step)(x->phase % TMR_NSTEPS);
            const char *pass = x->phase < TMR_NSTEPS ? "F" : "B";
            char slice[48];
            snprintf(slice, sizeof(slice), "%s %s", pass, tmr_step_slice(st));
            struct chrome_arg args[3] = { { "measured_s", x->dur_s, NULL },
                                          { "predicted_s", p, NULL },
                                          { "layer", x->layer, NULL } };
            double t0 = x->t0_s - r->offset_s[k] - z;
            rc = chrome_complete(ch, pid, tmr_step_is_comm(st), pass, slice, t0, t0 + p, args, 3);
        }
    }
    return rc;
}

int cmp_write(const char *dir, const struct rec_run *r, const struct cmp_result *c)
{
    char p[OFILE_PATH_MAX];
    struct ofile o;
    int rc;
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof(p), "%s/%s", dir, k ? "compare.csv" : "trace.json");
        if ((rc = ofile_open(&o, p)))
            return rc;
        rc = k ? cmp_csv(o.f, c) : rec_chrome_with(o.f, r, cmp_chrome, c);
        if (rc) {
            ofile_abort(&o);
            return rc;
        }
        if ((rc = ofile_commit(&o)))
            return rc;
    }
    return 0;
}
