/* records.c: the outputs of a measured run (see records.h). */
#include "records.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "chrome.h"
#include "matrix.h"
#include "rtrace.h"
#include "traffic.h"

/* A record's start on rank 0's clock. */
static double start_on_0(const struct rec_run *r, int rank, const struct tmr_rec *x)
{
    return x->t0_s - r->offset_s[rank];
}

double rec_t_zero(const struct rec_run *r)
{
    double z = INFINITY;
    for (int k = 0; k < r->ranks; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++)
            if (start_on_0(r, k, &r->rec[i]) < z)
                z = start_on_0(r, k, &r->rec[i]);
    return isfinite(z) ? z : 0.0;
}

static bool is_a2a(int phase)
{
    return phase >= 0 && phase < TMR_NPHASES &&
           tmr_step_is_comm((enum tmr_step)(phase % TMR_NSTEPS));
}

/* Index of a record's (iteration, layer, phase) among iters x layers x phases; -1 when
 * out of range. */
static long rec_key(const struct rec_run *r, const struct tmr_rec *x)
{
    if (x->iter < 0 || x->iter >= r->iters || x->layer < 0 || x->layer >= r->layers ||
        x->phase < 0 || x->phase >= TMR_NPHASES)
        return -1;
    return ((long)x->iter * r->layers + x->layer) * TMR_NPHASES + x->phase;
}

int rec_waits(const struct rec_run *r, double *wait_s)
{
    const size_t nkeys = (size_t)r->iters * r->layers * TMR_NPHASES;
    const int groups = r->ranks / r->ep;
    const size_t nlast = nkeys * (size_t)groups;
    double *last = malloc((nlast ? nlast : 1) * sizeof(double));
    if (!last)
        return -ENOMEM;
    for (size_t i = 0; i < nlast; i++)
        last[i] = -INFINITY;
    for (int k = 0; k < r->ranks; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
            long key = rec_key(r, &r->rec[i]);
            double *l = &last[(size_t)(k / r->ep) * nkeys + (size_t)key];
            if (key >= 0 && is_a2a(r->rec[i].phase) && start_on_0(r, k, &r->rec[i]) > *l)
                *l = start_on_0(r, k, &r->rec[i]);
        }
    for (int k = 0; k < r->ranks; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
            const struct tmr_rec *x = &r->rec[i];
            long key = rec_key(r, x);
            wait_s[i] = 0.0;
            if (key < 0 || !is_a2a(x->phase))
                continue;
            double w = last[(size_t)(k / r->ep) * nkeys + (size_t)key] - start_on_0(r, k, x);
            wait_s[i] = w < 0 ? 0.0 : w > x->dur_s ? x->dur_s : w;
        }
    free(last);
    return 0;
}

/* Bytes rank k sent to rank d of its EP group (d = 0 .. ep-1) in all-to-all record x:
 * dispatch and the backward's combine send rank k's send_rows, combine and the
 * backward's dispatch its receive rows (the peers' send_rows to k); counts, its bytes
 * spread evenly over the peers. */
static uint64_t peer_bytes(const struct rec_run *r, int k, const struct tmr_rec *x, int d)
{
    const int base = k / r->ep * r->ep, me = k - base;
    const enum tmr_step s = (enum tmr_step)(x->phase % TMR_NSTEPS);
    const bool fwd = x->phase < TMR_NSTEPS;
    if (d == me)
        return 0;
    if (s == TMR_COUNTS)
        return x->bytes / (uint64_t)(r->ep - 1);
    const int32_t *rows = r->send_rows + ((size_t)x->layer * r->iters + x->iter) *
                                             (size_t)r->ranks * r->ep;
    int32_t n = (s == TMR_DISPATCH) == fwd ? rows[(size_t)k * r->ep + d]
                                           : rows[(size_t)(base + d) * r->ep + me];
    return (uint64_t)n * (uint64_t)r->hidden * r->elem_bytes;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n), n > 0; sorts v. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int rec_a2a_stats(const struct rec_run *r, const double *wait_s, int phase,
                  struct rec_a2a *out)
{
    memset(out, 0, sizeof(*out));
    if (!is_a2a(phase))
        return -EINVAL;
    size_t n = r->rec0[r->ranks];
    double *w = malloc((n ? n : 1) * sizeof(double));
    double *t = malloc((n ? n : 1) * sizeof(double));
    if (!w || !t) {
        free(w);
        free(t);
        return -ENOMEM;
    }
    size_t m = 0;
    for (int k = 0; k < r->ranks; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
            const struct tmr_rec *x = &r->rec[i];
            if (x->phase != phase || rec_key(r, x) < 0)
                continue;
            w[m] = wait_s[i];
            t[m] = x->dur_s - wait_s[i];
            out->wait_max_s = w[m] > out->wait_max_s ? w[m] : out->wait_max_s;
            m++;
            uint64_t b[REC_NTIERS] = { 0, 0 };
            for (int d = 0; d < r->ep; d++) {
                int peer = k / r->ep * r->ep + d;
                bool same = !r->node || r->node[peer] == r->node[k];
                b[same ? REC_INTRA : REC_INTER] += peer_bytes(r, k, x, d);
            }
            for (int q = 0; q < REC_NTIERS; q++)
                if (b[q]) {
                    out->bytes[q] += (double)b[q];
                    out->xfer_s[q] += x->dur_s - wait_s[i];
                }
        }
    out->calls = m;
    if (m) {
        out->wait_med_s = median(w, m);
        out->xfer_med_s = median(t, m);
    }
    free(w);
    free(t);
    return 0;
}

int rec_sign_rank(int n)
{
    int j = 0;
    double cdf = 0;
    for (int i = 0; i < n; i++) {
        cdf += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) - n * log(2.0));
        if (cdf > 0.025)
            break;
        j = i + 1;
    }
    return j;
}

int rec_overhead(const double *timed_s, const double *plain_s, int n, struct rec_overhead *o)
{
    memset(o, 0, sizeof(*o));
    if (n < 1)
        return -EINVAL;
    double *d = malloc((size_t)n * sizeof(double)), *p = malloc((size_t)n * sizeof(double));
    if (!d || !p) {
        free(d);
        free(p);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        d[i] = timed_s[i] / plain_s[i] - 1.0;   /* per pair: a slow pair weighs no more */
        p[i] = timed_s[i];
    }
    o->timed_med_s = median(p, (size_t)n);
    memcpy(p, plain_s, (size_t)n * sizeof(double));
    o->plain_med_s = median(p, (size_t)n);
    double dm = median(d, (size_t)n);             /* d sorted now */
    int j = rec_sign_rank(n);
    o->frac = dm;
    o->lo_frac = j ? d[j - 1] : -INFINITY;
    o->hi_frac = j ? d[n - j] : INFINITY;
    free(d);
    free(p);
    return 0;
}

int rec_phases_csv(FILE *f, const struct rec_run *r)
{
    size_t n = r->rec0[r->ranks];
    double *w = malloc((n ? n : 1) * sizeof(double));
    if (!w)
        return -ENOMEM;
    int rc = rec_waits(r, w);
    double z = rec_t_zero(r);
    fprintf(f, "rank,iteration,layer,phase,start_s,dur_s,bytes,wait_s\n");
    for (int k = 0; k < r->ranks && !rc; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
            const struct tmr_rec *x = &r->rec[i];
            fprintf(f, "%d,%d,%d,%s,%.9f,%.9f,%" PRIu64 ",%.9f\n", k, x->iter, x->layer,
                    tmr_phase_name(x->phase), start_on_0(r, k, x) - z, x->dur_s, x->bytes,
                    w[i]);
        }
    free(w);
    return rc ? rc : ferror(f) ? -EIO : 0;
}

int rec_chrome(FILE *f, const struct rec_run *r)
{
    return rec_chrome_with(f, r, NULL, NULL);
}

int rec_chrome_with(FILE *f, const struct rec_run *r,
                    int (*more)(struct chrome *, const struct rec_run *, const void *),
                    const void *arg)
{
    size_t n = r->rec0[r->ranks];
    double *w = malloc((n ? n : 1) * sizeof(double));
    if (!w)
        return -ENOMEM;
    struct chrome *ch;
    int rc = rec_waits(r, w);
    if (rc || (rc = chrome_open(&ch, f))) {
        free(w);
        return rc;
    }
    double z = rec_t_zero(r);
    for (int k = 0; k < r->ranks && !rc; k++) {
        char name[32];
        snprintf(name, sizeof(name), "rank %d", k);
        rc = chrome_process_name(ch, k, name);
        rc = rc ? rc : chrome_process_sort(ch, k, k);
        rc = rc ? rc : chrome_thread_name(ch, k, 0, "compute");
        rc = rc ? rc : chrome_thread_sort(ch, k, 0, 0);
        rc = rc ? rc : chrome_thread_name(ch, k, 1, "comm");
        rc = rc ? rc : chrome_thread_sort(ch, k, 1, 1);
    }
    for (int k = 0; k < r->ranks && !rc; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1] && !rc; i++) {
            const struct tmr_rec *x = &r->rec[i];
            enum tmr_step s = (enum tmr_step)(x->phase % TMR_NSTEPS);
            const char *pass = x->phase < TMR_NSTEPS ? "F" : "B";
            char name[48];
            snprintf(name, sizeof(name), "%s %s", pass, tmr_step_slice(s));
            struct chrome_arg args[4] = {
                { "layer", x->layer, NULL }, { "iteration", x->iter, NULL },
                { "bytes", (double)x->bytes, NULL }, { "wait_s", w[i], NULL },
            };
            double t0 = start_on_0(r, k, x) - z;
            rc = chrome_complete(ch, k, tmr_step_is_comm(s), pass, name, t0, t0 + x->dur_s,
                                 args, tmr_step_is_comm(s) ? 4 : 3);
        }
    if (!rc && more)
        rc = more(ch, r, arg);
    int rc2 = chrome_close(ch);
    free(w);
    return rc ? rc : rc2;
}

/* The all-to-all table of rec_summary. */
static int a2a_table(FILE *f, const struct rec_run *r)
{
    size_t n = r->rec0[r->ranks];
    double *w = malloc((n ? n : 1) * sizeof(double));
    if (!w)
        return -ENOMEM;
    int rc = rec_waits(r, w);
    fprintf(f, "# all-to-all: wait for the group's last arrival, then transfer; bandwidth per "
            "tier (intra: peers on the rank's node, inter: on other nodes) = bytes / transfer\n");
    fprintf(f, "# all-to-all      calls  wait    wait    xfer    intra     inter\n");
    fprintf(f, "#                        median  max     median  bw        bw\n");
    fprintf(f, "#                        (ms)    (ms)    (ms)    (GB/s)    (GB/s)\n");
    for (int p = 0; p < TMR_NPHASES && !rc; p++) {
        struct rec_a2a a;
        if (!is_a2a(p) || (rc = rec_a2a_stats(r, w, p, &a)) || !a.calls)
            continue;
        fprintf(f, "  %-15s %5zu %7.3f %7.3f %7.3f", tmr_phase_name(p), a.calls,
                1e3 * a.wait_med_s, 1e3 * a.wait_max_s, 1e3 * a.xfer_med_s);
        for (int q = 0; q < REC_NTIERS; q++)
            if (a.bytes[q] > 0 && a.xfer_s[q] > 0)
                fprintf(f, " %9.3f", a.bytes[q] / a.xfer_s[q] / 1e9);
            else
                fprintf(f, "         -");
        fprintf(f, "\n");
    }
    free(w);
    return rc;
}

int rec_summary(FILE *f, const struct rec_run *r)
{
    size_t n = r->rec0[r->ranks];
    double *d = malloc((n ? n : 1) * sizeof(double));
    double *rank_sum = calloc((size_t)r->ranks, sizeof(double));
    int *rank_n = calloc((size_t)r->ranks, sizeof(int));
    if (!d || !rank_sum || !rank_n) {
        free(d);
        free(rank_sum);
        free(rank_n);
        return -ENOMEM;
    }
    fprintf(f, "# phase           calls    min     median  max     imbal  bytes/call   bw\n");
    fprintf(f, "#                          (ms)    (ms)    (ms)    (max/mean)  (B)     (GB/s)\n");
    for (int p = 0; p < TMR_NPHASES; p++) {
        size_t m = 0;
        double bytes = 0, time = 0;
        memset(rank_sum, 0, (size_t)r->ranks * sizeof(double));
        memset(rank_n, 0, (size_t)r->ranks * sizeof(int));
        for (int k = 0; k < r->ranks; k++)
            for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++)
                if (r->rec[i].phase == p) {
                    d[m++] = r->rec[i].dur_s;
                    bytes += (double)r->rec[i].bytes;
                    time += r->rec[i].dur_s;
                    rank_sum[k] += r->rec[i].dur_s;
                    rank_n[k]++;
                }
        if (!m)
            continue;
        double med = median(d, m);
        double mx = 0, mean = 0;
        int kn = 0;
        for (int k = 0; k < r->ranks; k++) {
            if (!rank_n[k])
                continue;
            double v = rank_sum[k] / rank_n[k];
            mx = v > mx ? v : mx;
            mean += v;
            kn++;
        }
        mean /= kn;
        fprintf(f, "  %-15s %5zu %7.3f %7.3f %7.3f %6.2f %12.0f", tmr_phase_name(p), m,
                1e3 * d[0], 1e3 * med, 1e3 * d[m - 1], mean > 0 ? mx / mean : 0.0,
                bytes / (double)m);
        if (bytes > 0 && time > 0)
            fprintf(f, " %8.3f\n", bytes / time / 1e9);
        else
            fprintf(f, "        -\n");
    }
    int rc = a2a_table(f, r);
    fprintf(f, "# clock offsets vs rank 0 (s, +- error):");
    for (int k = 0; k < r->ranks; k++)
        fprintf(f, " %d:%.3g+-%.2g", k, r->offset_s[k], r->err_s[k]);
    fprintf(f, "\n");
    free(d);
    free(rank_sum);
    free(rank_n);
    return rc ? rc : ferror(f) ? -EIO : 0;
}

int rec_routing_trace(FILE *f, const struct rec_run *r)
{
    struct rtrace t;
    int rc = rtrace_create(&t, r->layers, r->iters, r->ranks, r->experts);
    if (rc)
        return rc;
    for (int l = 0; l < r->layers; l++)
        for (int it = 0; it < r->iters; it++)
            for (int k = 0; k < r->ranks; k++) {
                uint64_t *c = rtrace_at(&t, l, it, k);
                const int32_t *src = r->counts +
                    (((size_t)l * r->iters + it) * r->ranks + k) * r->experts;
                for (int e = 0; e < r->experts; e++)
                    c[e] = (uint64_t)src[e];
            }
    rc = rtrace_write(f, &t);
    rtrace_free(&t);
    return rc;
}

int rec_matrix(FILE *f, const struct rec_run *r, int layer, int iter, int combine, int dense)
{
    struct traffic m;
    int rc = traffic_create(&m, r->ranks);
    if (rc)
        return rc;
    for (int k = 0; k < r->ranks; k++) {
        const int32_t *rows = r->send_rows +
            (((size_t)layer * r->iters + iter) * r->ranks + k) * r->ep;
        int base = k / r->ep * r->ep;
        for (int d = 0; d < r->ep; d++) {
            uint64_t b = (uint64_t)rows[d] * (uint64_t)r->hidden * r->elem_bytes;
            if (combine)
                m.bytes[(size_t)(base + d) * r->ranks + k] = b;
            else
                m.bytes[(size_t)k * r->ranks + base + d] = b;
        }
    }
    struct matrix v = traffic_as_matrix(&m);
    rc = dense ? matrix_write_dense(f, &v, 16) : matrix_write(f, &v);
    traffic_free(&m);
    return rc;
}
