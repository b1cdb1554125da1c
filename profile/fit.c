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
