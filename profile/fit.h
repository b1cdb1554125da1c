/* fit.h: the numbers `moeprof calibrate` makes from its timings: a line t = lat + x / bw
 * fitted to (x, t) points, and the median and range of repeated samples. Nothing here
 * uses MPI or the clock, so tests feed it synthetic timings.
 *
 * The fit minimises the relative residuals, sum_i ((lat + x_i / bw - t_i) / t_i)^2: a
 * weighted least squares with weights 1 / t_i^2, so an 8-byte message (microseconds)
 * and a 4 MiB one (milliseconds) count alike, as a ladder of sizes spanning six orders
 * of magnitude needs. It is the closed form of the 2-parameter weighted fit, written
 * about the weighted means (slope = sum w (x - xm)(t - tm) / sum w (x - xm)^2), which
 * keeps the cancellation of the textbook determinant form away. On points that lie on
 * a line it returns that line to rounding (tests/test_fit.c). A negative intercept
 * (noise on a latency far below the smallest time) is refitted through the origin
 * (lat = 0), since a latency is never negative.
 */
#ifndef MOEPROF_FIT_H
#define MOEPROF_FIT_H

#include <stddef.h>

struct fit_line {
    double lat_s;             /* intercept, s (>= 0) */
    double bw_Bps;            /* 1 / slope, bytes/s (> 0) */
    double rms_rel;           /* sqrt(mean of resid[i]^2) */
};

/* Fits x[n] (bytes, >= 0) against t[n] (s, > 0, finite); n >= 2 with at least two
 * distinct x. resid[n] (may be NULL) gets each point's relative residual (fit - t) / t.
 * 0; -EINVAL for bad points (n < 2, t <= 0 or not finite, x < 0, one distinct x);
 * -EDOM when the times do not grow with x (slope <= 0: no bandwidth to report). */
int fit_latency_bw(const double *x, const double *t, int n, struct fit_line *out,
                   double *resid);

/* Median, minimum and maximum of v[n] (n >= 1; v is not changed). The median of an even
 * count is the mean of the middle two. 0, -EINVAL (n < 1), -ENOMEM. */
struct fit_stats {
    double median, min, max;
};
int fit_stats(const double *v, int n, struct fit_stats *out);

/* (max - min) / median: the spread of repeated samples as a fraction; 0 when median is 0. */
double fit_spread(const struct fit_stats *s);

#endif
