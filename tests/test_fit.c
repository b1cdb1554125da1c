/* test_fit.c: CUnit suite for profile/fit.c, the latency + bytes / bandwidth fit of
 * `moeprof calibrate`, on synthetic timings: a hand-worked weighted fit, exact recovery
 * on noise-free ladders, a bound derived for seeded relative noise, and the statistics. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>

#include "cu_run.h"
#include "fit.h"
#include "rng.h"

#define N 10

/* calibrate's ladder: 8 B .. 2 MiB, x4 */
static void ladder(double *x)
{
    for (int i = 0; i < N; i++)
        x[i] = 8.0 * pow(4.0, i);
}

/* Points (0, 1), (1, 2), (2, 4), weights 1/t^2 = 1, 1/4, 1/16. Normal equations by hand:
 * sw = 21/16, swx = 3/8, swt = 7/4, swxx = 1/2, swxt = 1; det = sw swxx - swx^2 = 33/64;
 * slope = (sw swxt - swx swt) / det = (21/16 - 21/32) / (33/64) = 14/11;
 * lat = (swxx swt - swx swxt) / det = (7/8 - 3/8) / (33/64) = 32/33. */
static void test_hand_worked(void)
{
    const double x[3] = { 0, 1, 2 }, t[3] = { 1, 2, 4 };
    double r[3];
    struct fit_line f;
    CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, t, 3, &f, r), 0);
    CU_ASSERT_DOUBLE_EQUAL(f.lat_s, 32.0 / 33.0, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(f.bw_Bps, 11.0 / 14.0, 1e-14);
    /* r_i = (32/33 + 14/11 x_i - t_i) / t_i: (32/33 - 1) / 1 = -1/33, (74/33 - 2) / 2 =
     * 4/33, (116/33 - 4) / 4 = -4/33; as a weighted fit must, sum w (f - t) = sum r / t =
     * -1/33 + 2/33 - 1/33 = 0 and sum w x (f - t) = 2/33 - 2/33 = 0. */
    CU_ASSERT_DOUBLE_EQUAL(r[0], -1.0 / 33.0, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(r[1], 4.0 / 33.0, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(r[2], -4.0 / 33.0, 1e-14);
    CU_ASSERT_DOUBLE_EQUAL(f.rms_rel, sqrt((1.0 + 16.0 + 16.0) / (33.0 * 33.0) / 3.0), 1e-14);
}

/* Noise-free: t = lat + x / bw on the ladder gives lat and bw back to rounding, for an
 * MPI-over-shared-memory tier, an NVLink-like one and a pure bandwidth (lat = 0). */
static void test_exact(void)
{
    const double cases[][2] = { { 0.8e-6, 6.5e9 }, { 3e-6, 4.5e11 }, { 25e-6, 1.2e9 },
                                { 0, 5e10 } };
    double x[N], t[N], r[N];
    ladder(x);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const double lat = cases[k][0], bw = cases[k][1];
        for (int i = 0; i < N; i++)
            t[i] = lat + x[i] / bw;
        struct fit_line f;
        CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, t, N, &f, r), 0);
        CU_ASSERT(fabs(f.lat_s - lat) <= 1e-12 * (lat + x[N - 1] / bw));
        CU_ASSERT(fabs(f.bw_Bps - bw) <= 1e-9 * bw);
        CU_ASSERT(f.rms_rel < 1e-12);
        for (int i = 0; i < N; i++)
            CU_ASSERT(fabs(r[i]) < 1e-12);
    }
}

/* Relative noise: t_i = g(x_i) (1 + e_i), |e_i| <= eps, seeded. The true line has every
 * relative residual |g - t| / t = |e| / (1 + e) <= eps / (1 - eps), so the fit's rms is no
 * more (it minimises it), and each point's |f - t| / t <= sqrt(n) rms. Hence
 * |f(x_i) - g(x_i)| <= d g(x_i) with d = (1 + eps)(1 + sqrt(n) eps / (1 - eps)) - 1.
 * From the two ends x_0 and x_n-1 of the ladder: |slope_f - 1/bw| <= d (g_0 + g_n-1) /
 * (x_n-1 - x_0), and |lat_f - lat| <= d g_0 + x_0 |slope_f - 1/bw|. */
static void test_noise_bound(void)
{
    const double lat = 2e-6, bw = 8e9, eps = 0.05;
    const double d = (1 + eps) * (1 + sqrt(N) * eps / (1 - eps)) - 1;
    double x[N], t[N];
    ladder(x);
    const double g0 = lat + x[0] / bw, gn = lat + x[N - 1] / bw;
    const double dslope = d * (g0 + gn) / (x[N - 1] - x[0]), dlat = d * g0 + x[0] * dslope;
    struct rng r;
    double worst_rms = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        rng_seed(&r, seed);
        for (int i = 0; i < N; i++)
            t[i] = (lat + x[i] / bw) * (1 + eps * (2 * rng_double(&r) - 1));
        struct fit_line f;
        CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, t, N, &f, NULL), 0);
        CU_ASSERT(fabs(1 / f.bw_Bps - 1 / bw) <= dslope);
        CU_ASSERT(fabs(f.lat_s - lat) <= dlat);
        CU_ASSERT(f.lat_s >= 0);
        worst_rms = fmax(worst_rms, f.rms_rel);
    }
    CU_ASSERT(worst_rms <= eps / (1 - eps));
}

/* A relative fit does not care about the time unit: t x c gives lat x c and bw / c. */
static void test_scale_invariant(void)
{
    const double x[4] = { 8, 4096, 65536, 1048576 }, t[4] = { 1.1e-6, 2.9e-6, 13e-6, 160e-6 };
    double tc[4];
    struct fit_line f, fc;
    for (int i = 0; i < 4; i++)
        tc[i] = t[i] * 1024;     /* a power of two: exact */
    CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, t, 4, &f, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, tc, 4, &fc, NULL), 0);
    CU_ASSERT_DOUBLE_EQUAL(fc.lat_s, f.lat_s * 1024, 1e-12 * fc.lat_s);
    CU_ASSERT_DOUBLE_EQUAL(fc.bw_Bps, f.bw_Bps / 1024, 1e-12 * fc.bw_Bps);
    CU_ASSERT_DOUBLE_EQUAL(fc.rms_rel, f.rms_rel, 1e-12);
}

/* Points whose line crosses zero below x = 0 are refitted through the origin: (1, 1),
 * (2, 3): the line t = 2x - 1 would have lat = -1. Through the origin with weights 1,
 * 1/9: slope = (1 + 2*3/9) / (1 + 4/9) = (5/3) / (13/9) = 15/13. */
static void test_negative_intercept(void)
{
    const double x[2] = { 1, 2 }, t[2] = { 1, 3 };
    struct fit_line f;
    CU_ASSERT_EQUAL_FATAL(fit_latency_bw(x, t, 2, &f, NULL), 0);
    CU_ASSERT_EQUAL(f.lat_s, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(f.bw_Bps, 13.0 / 15.0, 1e-14);
}

static void test_bad_points(void)
{
    const double x[3] = { 8, 64, 512 }, down[3] = { 3e-6, 2e-6, 1e-6 };
    const double zero[3] = { 1e-6, 0, 2e-6 }, same_x[3] = { 8, 8, 8 }, t[3] = { 1, 2, 3 };
    const double neg_x[3] = { -1, 8, 64 };
    struct fit_line f;
    CU_ASSERT_EQUAL(fit_latency_bw(x, down, 3, &f, NULL), -EDOM);
    CU_ASSERT_EQUAL(fit_latency_bw(x, zero, 3, &f, NULL), -EINVAL);
    CU_ASSERT_EQUAL(fit_latency_bw(same_x, t, 3, &f, NULL), -EINVAL);
    CU_ASSERT_EQUAL(fit_latency_bw(neg_x, t, 3, &f, NULL), -EINVAL);
    CU_ASSERT_EQUAL(fit_latency_bw(x, t, 1, &f, NULL), -EINVAL);
}

static void test_stats(void)
{
    const double odd[5] = { 5, 1, 4, 2, 3 }, even[4] = { 10, 40, 20, 30 };
    struct fit_stats s;
    CU_ASSERT_EQUAL_FATAL(fit_stats(odd, 5, &s), 0);
    CU_ASSERT_EQUAL(s.median, 3.0);
    CU_ASSERT_EQUAL(s.min, 1.0);
    CU_ASSERT_EQUAL(s.max, 5.0);
    CU_ASSERT_DOUBLE_EQUAL(fit_spread(&s), 4.0 / 3.0, 1e-15);
    CU_ASSERT_EQUAL(odd[0], 5.0);            /* input untouched */
    CU_ASSERT_EQUAL_FATAL(fit_stats(even, 4, &s), 0);
    CU_ASSERT_EQUAL(s.median, 25.0);
    CU_ASSERT_EQUAL(fit_stats(even, 0, &s), -EINVAL);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "hand-worked weighted fit", test_hand_worked },
        { "noise-free ladders: exact", test_exact },
        { "seeded relative noise: derived bound", test_noise_bound },
        { "time unit does not matter", test_scale_invariant },
        { "negative intercept: through the origin", test_negative_intercept },
        { "bad points", test_bad_points },
        { "median and range", test_stats },
    };
    return cu_run("fit", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
