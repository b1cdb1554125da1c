/* records.c: the outputs of a measured run (see records.h). */
#include "records.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
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

int rec_phases_csv(FILE *f, const struct rec_run *r)
{
    double z = rec_t_zero(r);
    fprintf(f, "rank,iteration,layer,phase,start_s,dur_s,bytes\n");
    for (int k = 0; k < r->ranks; k++)
        for (size_t i = r->rec0[k]; i < r->rec0[k + 1]; i++) {
            const struct tmr_rec *x = &r->rec[i];
            fprintf(f, "%d,%d,%d,%s,%.9f,%.9f,%" PRIu64 "\n", k, x->iter, x->layer,
                    tmr_phase_name(x->phase), start_on_0(r, k, x) - z, x->dur_s, x->bytes);
        }
    return ferror(f) ? -EIO : 0;
}

int rec_chrome(FILE *f, const struct rec_run *r)
{
    struct chrome *ch;
    int rc = chrome_open(&ch, f);
    if (rc)
        return rc;
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
            struct chrome_arg args[3] = {
                { "layer", x->layer, NULL }, { "iteration", x->iter, NULL },
                { "bytes", (double)x->bytes, NULL },
            };
            double t0 = start_on_0(r, k, x) - z;
            rc = chrome_complete(ch, k, tmr_step_is_comm(s), pass, name, t0, t0 + x->dur_s,
                                 args, 3);
        }
    int rc2 = chrome_close(ch);
    return rc ? rc : rc2;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
        qsort(d, m, sizeof(double), cmp_double);
        double med = m % 2 ? d[m / 2] : 0.5 * (d[m / 2 - 1] + d[m / 2]);
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
    fprintf(f, "# clock offsets vs rank 0 (s, +- error):");
    for (int k = 0; k < r->ranks; k++)
        fprintf(f, " %d:%.3g+-%.2g", k, r->offset_s[k], r->err_s[k]);
    fprintf(f, "\n");
    free(d);
    free(rank_sum);
    free(rank_n);
    return ferror(f) ? -EIO : 0;
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
    if (!dense) {
        rc = matrix_write(f, &m);
    } else {
        for (int i = 0; i < r->ranks; i++)
            for (int j = 0; j < r->ranks; j++) {
                uint64_t b = m.bytes[(size_t)i * r->ranks + j];
                fprintf(f, "%" PRIu64 "%c", (b + 15) / 16 * 16, j + 1 < r->ranks ? ' ' : '\n');
            }
        rc = ferror(f) ? -EIO : 0;
    }
    traffic_free(&m);
    return rc;
}
