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

/* Piecewise: a message size ladder crosses protocols (MPI over shared memory copies a
 * small message through a shared buffer and a large one once, straight between the
 * processes), and one line fits neither end. A band is a run of consecutive points,
 * [first, last], x from x_lo to x_hi, with its own line (fit_latency_bw on its points;
 * where its times do not grow with x, a flat band: lat_s the relative least-squares
 * constant, sum (1/t) / sum (1/t^2), and bw_Bps = INFINITY). */
struct fit_band {
    int first, last;          /* point indices, inclusive */
    double x_lo, x_hi;        /* x[first], x[last] */
    struct fit_line line;     /* rms_rel over the band's points */
};

/* For k = 1 .. kmax bands, the split of x[n] (strictly increasing) into k bands of at
 * least min_pts points each that minimises the total sum of squared relative residuals
 * (dynamic programming over the split points: O(kmax n^2) segment costs, each O(n));
 * takes the fewest bands whose rms relative residual over all n points is at most tol,
 * else kmax's split (or the most bands n allows). Ties: the split found first (the
 * last band starting earliest).
 * bands[kmax] gets them in x order, *nb their count; resid[n] (may be NULL) each
 * point's relative residual against its band's line. 0; -EINVAL for bad points (as
 * fit_latency_bw, or x not increasing), kmax < 1, min_pts < 2 or n < min_pts; -ENOMEM. */
int fit_bands(const double *x, const double *t, int n, int kmax, int min_pts, double tol,
              struct fit_band *bands, int *nb, double *resid);

/* The band that covers v: bands meet at the geometric mean of one band's x_hi and the
 * next one's x_lo (a ladder's sizes grow by a factor); the first band covers everything
 * below it, the last everything above. nb >= 1. */
int fit_band_at(const struct fit_band *b, int nb, double v);

/* Median, minimum and maximum of v[n] (n >= 1; v is not changed). The median of an even
 * count is the mean of the middle two. 0, -EINVAL (n < 1), -ENOMEM. */
struct fit_stats {
    double median, min, max;
};
int fit_stats(const double *v, int n, struct fit_stats *out);

/* (max - min) / median: the spread of repeated samples as a fraction; 0 when median is 0. */
double fit_spread(const struct fit_stats *s);

#endif
