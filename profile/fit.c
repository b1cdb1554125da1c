/* fit.c: latency + bytes / bandwidth by relative least squares; sample statistics. See
 * fit.h. */
#include "fit.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int check_points(const double *x, const double *t, int n)
{
    if (n < 2)
        return -EINVAL;
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        if (!(t[i] > 0) || !isfinite(t[i]) || !(x[i] >= 0) || !isfinite(x[i]))
            return -EINVAL;
        distinct |= x[i] != x[0];
    }
    return distinct ? 0 : -EINVAL;
}

int fit_latency_bw(const double *x, const double *t, int n, struct fit_line *out,
                   double *resid)
{
    int rc = check_points(x, t, n);
    if (rc)
        return rc;
    /* Weighted means, then the centred sums: w_i = 1 / t_i^2. */
    double sw = 0, swx = 0, swt = 0;
    for (int i = 0; i < n; i++) {
        double w = 1.0 / (t[i] * t[i]);
        sw += w;
        swx += w * x[i];
        swt += w * t[i];
    }
    const double xm = swx / sw, tm = swt / sw;
    double sxx = 0, sxt = 0;
    for (int i = 0; i < n; i++) {
        double w = 1.0 / (t[i] * t[i]), dx = x[i] - xm;
        sxx += w * dx * dx;
        sxt += w * dx * (t[i] - tm);
    }
    double slope = sxt / sxx, lat = tm - slope * xm;
    if (lat < 0) {            /* through the origin: slope = sum w x t / sum w x^2 */
        double num = 0, den = 0;
        for (int i = 0; i < n; i++) {
            double w = 1.0 / (t[i] * t[i]);
            num += w * x[i] * t[i];
            den += w * x[i] * x[i];
        }
        lat = 0;
        slope = num / den;
    }
    if (!(slope > 0) || !isfinite(slope))
        return -EDOM;
    double ss = 0;
    for (int i = 0; i < n; i++) {
        double r = (lat + slope * x[i] - t[i]) / t[i];
        ss += r * r;
        if (resid)
            resid[i] = r;
    }
    *out = (struct fit_line){ .lat_s = lat, .bw_Bps = 1.0 / slope, .rms_rel = sqrt(ss / n) };
    return 0;
}

/* One band's line over x[n], t[n]: fit_latency_bw, or where the times do not grow
 * with x the flat line of least relative error, lat = sum (1/t) / sum (1/t^2). *sse gets
 * the sum of squared relative residuals; resid[n] (may be NULL) each one. */
static int fit_segment(const double *x, const double *t, int n, struct fit_line *out,
                       double *sse, double *resid)
{
    int rc = fit_latency_bw(x, t, n, out, resid);
    if (rc == -EDOM) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            s1 += 1.0 / t[i];
            s2 += 1.0 / (t[i] * t[i]);
        }
        out->lat_s = s1 / s2;
        out->bw_Bps = INFINITY;
        double ss = 0;
        for (int i = 0; i < n; i++) {
            double r = (out->lat_s - t[i]) / t[i];
            ss += r * r;
            if (resid)
                resid[i] = r;
        }
        out->rms_rel = sqrt(ss / n);
        rc = 0;
    }
    if (!rc)
        *sse = out->rms_rel * out->rms_rel * n;
    return rc;
}

/* The best split of x[0 .. n) into k bands given cost[i n + j] (points i..j; INFINITY
 * when too short): best[k][j] = min over i of best[k-1][i-1] + cost[i][j], where best
 * has kmax rows of n and from[k][j] the i that gave it. */
static void split_dp(const double *cost, int n, int kmax, double *best, int *from)
{
    for (int j = 0; j < n; j++) {
        best[j] = cost[j];            /* one band: points 0 .. j */
        from[j] = 0;
    }
    for (int k = 1; k < kmax; k++)
        for (int j = 0; j < n; j++) {
            double *b = &best[(size_t)k * n + j];
            *b = INFINITY;
            from[(size_t)k * n + j] = -1;
            for (int i = 1; i <= j; i++) {
                double v = best[(size_t)(k - 1) * n + i - 1] + cost[(size_t)i * n + j];
                if (v < *b) {
                    *b = v;
                    from[(size_t)k * n + j] = i;
                }
            }
        }
}

int fit_bands(const double *x, const double *t, int n, int kmax, int min_pts, double tol,
              struct fit_band *bands, int *nb, double *resid)
{
    int rc = check_points(x, t, n);
    if (rc || kmax < 1 || min_pts < 2 || n < min_pts)
        return rc ? rc : -EINVAL;
    for (int i = 1; i < n; i++)
        if (!(x[i] > x[i - 1]))
            return -EINVAL;
    if (kmax > n / min_pts)
        kmax = n / min_pts;
    double *cost = malloc(((size_t)n * n + (size_t)kmax * n) * sizeof(double));
    int *from = malloc((size_t)kmax * n * sizeof(int));
    if (!cost || !from) {
        free(cost);
        free(from);
        return -ENOMEM;
    }
    double *best = cost + (size_t)n * n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            struct fit_line l;
            double *c = &cost[(size_t)i * n + j];
            *c = INFINITY;
            if (j - i + 1 >= min_pts && fit_segment(x + i, t + i, j - i + 1, &l, c, NULL))
                *c = INFINITY;
        }
    split_dp(cost, n, kmax, best, from);
    int k = 0;                         /* the fewest bands within tol (index: k + 1 bands) */
    while (k + 1 < kmax && !(sqrt(best[(size_t)k * n + n - 1] / n) <= tol))
        k++;
    while (k > 0 && !isfinite(best[(size_t)k * n + n - 1]))
        k--;
    *nb = k + 1;
    for (int j = n - 1; k >= 0; k--) {  /* back from the last point */
        int i = from[(size_t)k * n + j];
        struct fit_band *b = &bands[k];
        double sse;
        b->first = i;
        b->last = j;
        b->x_lo = x[i];
        b->x_hi = x[j];
        fit_segment(x + i, t + i, j - i + 1, &b->line, &sse, resid ? resid + i : NULL);
        j = i - 1;
    }
    free(cost);
    free(from);
    return 0;
}

int fit_band_at(const struct fit_band *b, int nb, double v)
{
    for (int i = 0; i + 1 < nb; i++)
        if (v < sqrt(b[i].x_hi * b[i + 1].x_lo))
            return i;
    return nb - 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int fit_stats(const double *v, int n, struct fit_stats *out)
{
    if (n < 1)
        return -EINVAL;
    double *s = malloc((size_t)n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    out->median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    out->min = s[0];
    out->max = s[n - 1];
    free(s);
    return 0;
}

double fit_spread(const struct fit_stats *s)
{
    return s->median != 0 ? (s->max - s->min) / s->median : 0;
}
