/* test_net.c: the flow-level network against hand-worked max-min cases and against a
 * slow, obviously correct reference (progressive filling from scratch at every event). */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "rng.h"

static struct net *mk(int nl, const double *cap)
{
    struct net *n = NULL;
    CU_ASSERT_EQUAL_FATAL(net_create(&n, nl, cap), 0);
    return n;
}

static double next(struct net *n)
{
    int e = 0;
    double t = net_next_finish_s(n, &e);
    CU_ASSERT_EQUAL(e, 0);
    return t;
}

/* One 1000 B flow on a 100 B/s link from t = 2 s: done at 2 + 1000/100 = 12 s. */
static void test_one_flow(void)
{
    double cap[] = { 100 };
    struct net *n = mk(1, cap);
    int l = 0;
    int f = net_add_flow(n, &l, 1, 1000, 2.0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 12.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 1);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, f), 12.0, 1e-12);
    net_free(n);
}

/* N = 5 equal 100 B flows on one 100 B/s link: 20 B/s each, all done at 5 s together. */
static void test_n_flows_one_link(void)
{
    double cap[] = { 100 };
    struct net *n = mk(1, cap);
    int l = 0;
    for (int i = 0; i < 5; i++)
        net_add_flow(n, &l, 1, 100, 0);
    next(n);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, i), 20.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 5);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, i), 5.0, 1e-12);
    net_free(n);
}

/* Processor sharing on a 1 B/s link, sizes 1, 2, 3 B: at rate 1/3 the 1 B flow ends at
 * 3 s; the others (1 B and 2 B left) share 1/2 each: the next ends at 5 s; the last
 * (1 B left) alone at 1 B/s ends at 6 s. */
static void test_processor_sharing(void)
{
    double cap[] = { 1 };
    struct net *n = mk(1, cap);
    int l = 0;
    for (int i = 1; i <= 3; i++)
        net_add_flow(n, &l, 1, i, 0);
    net_advance(n, INFINITY, NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 0), 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 1), 5.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 2), 6.0, 1e-12);
    net_free(n);
}

/* Bertsekas & Gallager style: link A (1 B/s) carries f0 and f1, link B (2 B/s) carries
 * f0 and f2. A's share 1/2 < B's 1, so A is the bottleneck of f0, f1 (0.5 each); f2
 * gets what B has left: 2 - 0.5 = 1.5. */
static void test_maxmin_two_links(void)
{
    double cap[] = { 1, 2 };
    struct net *n = mk(2, cap);
    int ab[] = { 0, 1 }, a = 0, b = 1;
    net_add_flow(n, ab, 2, 100, 0);
    net_add_flow(n, &a, 1, 100, 0);
    net_add_flow(n, &b, 1, 100, 0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 1), 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 1.5, 1e-12);
    net_free(n);
}

/* Bottleneck on the other side: L1 (10 B/s) carries a, b, c; L2 (4 B/s) carries a, d.
 * L2's share 2 < L1's 10/3, so a = d = 2; then b and c split L1's remaining 8: 4 each. */
static void test_maxmin_other_bottleneck(void)
{
    double cap[] = { 10, 4 };
    struct net *n = mk(2, cap);
    int both[] = { 0, 1 }, l1 = 0, l2 = 1;
    net_add_flow(n, both, 2, 100, 0);
    net_add_flow(n, &l1, 1, 100, 0);
    net_add_flow(n, &l1, 1, 100, 0);
    net_add_flow(n, &l2, 1, 100, 0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 1), 4.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 4.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 3), 2.0, 1e-12);
    net_free(n);
}

/* Parking lot: 3 links of 1 B/s in a row; the long flow crosses all three, one short
 * flow on each link: every link is shared by 2 flows, all rates 1/2. When the short flow
 * of link 0 (50 B) ends at 100 s, the long flow stays at 1/2 (links 1 and 2 still split). */
static void test_parking_lot(void)
{
    double cap[] = { 1, 1, 1 };
    struct net *n = mk(3, cap);
    int all[] = { 0, 1, 2 };
    net_add_flow(n, all, 3, 1000, 0);
    for (int l = 0; l < 3; l++)
        net_add_flow(n, &l, 1, l == 0 ? 50 : 1000, 0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 100.0, 1e-12);
    net_advance(n, 100.0, NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 0.5, 1e-12);
    net_free(n);
}

/* ---- the reference: progressive filling from scratch, every event, O(F^2 L) ---- */
struct rflow { int nl, links[NET_MAX_HOPS]; double bytes, start, rem, rate, end; bool on; };

static void ref_rates(struct rflow *f, int nf, const double *cap, int nl)
{
    double rem[64];
    bool frozen[256];
    for (int l = 0; l < nl; l++)
        rem[l] = cap[l];
    for (int i = 0; i < nf; i++) {
        f[i].rate = 0;
        frozen[i] = !f[i].on;
    }
    for (;;) {
        double inc = INFINITY;
        for (int l = 0; l < nl; l++) {
            int c = 0;
            for (int i = 0; i < nf; i++)
                for (int j = 0; j < f[i].nl; j++)
                    c += !frozen[i] && f[i].links[j] == l;
            if (c)
                inc = fmin(inc, rem[l] / c);
        }
        if (inc == INFINITY)
            return;
        for (int i = 0; i < nf; i++)
            if (!frozen[i]) {
                f[i].rate += inc;
                for (int j = 0; j < f[i].nl; j++)
                    rem[f[i].links[j]] -= inc;
            }
        for (int i = 0; i < nf; i++)
            for (int j = 0; j < f[i].nl && !frozen[i]; j++)
                if (rem[f[i].links[j]] <= 1e-12 * cap[f[i].links[j]])
                    frozen[i] = true;
    }
}

static void ref_run(struct rflow *f, int nf, const double *cap, int nl)
{
    double t = 0;
    int left = nf;
    while (left) {
        for (int i = 0; i < nf; i++)
            if (!f[i].on && f[i].end < 0 && f[i].start <= t) {
                f[i].on = true;
                f[i].rem = f[i].bytes;
            }
        ref_rates(f, nf, cap, nl);
        double tn = INFINITY;
        for (int i = 0; i < nf; i++) {
            if (f[i].on)
                tn = fmin(tn, t + f[i].rem / f[i].rate);
            else if (f[i].end < 0)
                tn = fmin(tn, f[i].start);
        }
        for (int i = 0; i < nf; i++)
            if (f[i].on)
                f[i].rem -= f[i].rate * (tn - t);
        t = tn;
        for (int i = 0; i < nf; i++)
            if (f[i].on && f[i].rem <= 1e-9 * f[i].bytes) {
                f[i].on = false;
                f[i].end = t;
                left--;
            }
    }
}

/* Random small networks: the incremental solver's completion times equal the
 * reference's within 1e-9 relative, on 400 seeded cases with staggered starts. */
static void test_random_vs_reference(void)
{
    struct rng r;
    rng_seed(&r, 12345);
    int worst_case = -1;
    double worst = 0;
    for (int c = 0; c < 400; c++) {
        int nl = 2 + (int)rng_below(&r, 10), nf = 1 + (int)rng_below(&r, 40);
        double cap[64];
        for (int l = 0; l < nl; l++)
            cap[l] = 1 + (double)rng_below(&r, 4) * 0.5;   /* few distinct capacities: ties */
        struct rflow f[256];
        memset(f, 0, sizeof(f));
        struct net *n = mk(nl, cap);
        int order[256];
        for (int i = 0; i < nf; i++) {
            f[i].nl = 1 + (int)rng_below(&r, nl < 4 ? nl : 4);
            for (int j = 0; j < f[i].nl; j++) {
                int l;
                bool dup;
                do {
                    l = (int)rng_below(&r, nl);
                    dup = false;
                    for (int k = 0; k < j; k++)
                        dup |= f[i].links[k] == l;
                } while (dup);
                f[i].links[j] = l;
            }
            f[i].bytes = 1 + (double)rng_below(&r, 8);        /* small integers: many ties */
            f[i].start = (double)rng_below(&r, 3) * 2.0;
            f[i].end = -1;
            order[i] = i;
        }
        /* add in order of start time, as an engine would */
        for (int i = 1; i < nf; i++)
            for (int j = i; j > 0 && f[order[j]].start < f[order[j - 1]].start; j--) {
                int tmp = order[j];
                order[j] = order[j - 1];
                order[j - 1] = tmp;
            }
        int id_of[256];
        for (int i = 0; i < nf; i++) {
            struct rflow *g = &f[order[i]];
            CU_ASSERT_EQUAL(net_advance(n, g->start, NULL, NULL) >= 0, 1);
            id_of[order[i]] = net_add_flow(n, g->links, g->nl, g->bytes, g->start);
        }
        CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL) >= 0, 1);
        ref_run(f, nf, cap, nl);
        for (int i = 0; i < nf; i++) {
            double got = net_flow_end_s(n, id_of[i]);
            double err = fabs(got - f[i].end) / f[i].end;
            if (!(err <= worst)) {
                worst = isnan(err) ? INFINITY : err;
                worst_case = c;
            }
        }
        net_free(n);
    }
    if (worst > 1e-9)
        printf("\n  worst relative error %.3g in case %d\n", worst, worst_case);
    CU_ASSERT(worst <= 1e-9);
}

/* Bad input: a start before the network's time, a negative size, a link out of range. */
static void test_bad_input(void)
{
    double cap[] = { 1 };
    struct net *n = mk(1, cap);
    int l = 0, bad = 3;
    CU_ASSERT(net_add_flow(n, &l, 1, 1, 5.0) >= 0);
    CU_ASSERT_EQUAL(net_add_flow(n, &l, 1, 1, 4.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, &l, 1, -1, 5.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, &bad, 1, 1, 5.0), -EINVAL);
    double zero[] = { 0 };
    struct net *z = NULL;
    CU_ASSERT_EQUAL(net_create(&z, 1, zero), -EINVAL);
    net_free(n);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("net", NULL, NULL);
    CU_add_test(s, "one flow", test_one_flow);
    CU_add_test(s, "N flows on one link", test_n_flows_one_link);
    CU_add_test(s, "processor sharing", test_processor_sharing);
    CU_add_test(s, "max-min: shared link bottleneck", test_maxmin_two_links);
    CU_add_test(s, "max-min: other bottleneck", test_maxmin_other_bottleneck);
    CU_add_test(s, "parking lot", test_parking_lot);
    CU_add_test(s, "random vs reference", test_random_vs_reference);
    CU_add_test(s, "bad input", test_bad_input);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int fails = (int)CU_get_number_of_failures();
    CU_cleanup_registry();
    return fails ? 1 : 0;
}
