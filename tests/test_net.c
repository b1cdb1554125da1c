/* test_net.c: the flow-level network (sim/net.c, and its max-min repair sim/maxmin.c,
 * which has no API of its own) against hand-worked max-min cases, one per mechanism of
 * the repair, and against a slow, obviously correct reference (progressive filling from
 * scratch at every event) on random networks and skewed all-to-alls. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
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

/* A bottleneck group splits. A (2 B/s) carries f0, f1; B (2.4 B/s) carries f0: A is the
 * bottleneck of both at 1 B/s. At t = 1 s two flows join B: B's share 2.4/3 = 0.8 < A's
 * 1, so f0 moves to B's group at 0.8 with them, and f1 takes A's rest, 2 - 0.8 = 1.2. */
static void test_group_split(void)
{
    double cap[] = { 2, 2.4 };
    struct net *n = mk(2, cap);
    int ab[] = { 0, 1 }, a = 0, b = 1;
    net_add_flow(n, ab, 2, 100, 0);
    net_add_flow(n, &a, 1, 100, 0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 1.0, 1e-12);
    net_advance(n, 1.0, NULL, NULL);
    net_add_flow(n, &b, 1, 100, 1.0);
    net_add_flow(n, &b, 1, 100, 1.0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 0.8, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 1), 1.2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 0.8, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_link_use_Bps(n, 1), 2.4, 1e-12);
    net_free(n);
}

/* A link that was no bottleneck fills up. A (1 B/s): f0, f1 (1 B); C (1.2 B/s): f0, f2;
 * D (0.5 B/s): f2. A and D tie at 0.5: all three flows at 0.5, C carries 1.0 < 1.2.
 * f1 ends at 1/0.5 = 2 s; f0 alone on A would take 1, but C then carries 1.5 > 1.2: C
 * becomes f0's bottleneck at 1.2 - 0.5 = 0.7. */
static void test_link_fills_up(void)
{
    double cap[] = { 1, 1.2, 0.5 };
    struct net *n = mk(3, cap);
    int ac[] = { 0, 1 }, a = 0, cd[] = { 1, 2 };
    net_add_flow(n, ac, 2, 100, 0);
    net_add_flow(n, &a, 1, 1, 0);
    net_add_flow(n, cd, 2, 100, 0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_link_use_Bps(n, 1), 1.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, 2.0, NULL, NULL), 1);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 0.7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 0.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_link_use_Bps(n, 1), 1.2, 1e-12);
    net_free(n);
}

/* A flow bottlenecked elsewhere must give way. A (1 B/s): f0, f1; B (3 B/s): f1, f2.
 * A's share 0.5 < B's 1.5: f0 = f1 = 0.5, f2 = 2.5. At t = 1 s five flows join B:
 * B's share 3/7 < A's 0.5, so f1 leaves A's group for B's at 3/7 and f0 takes A's rest,
 * 1 - 3/7 = 4/7. */
static void test_fixed_flow_gives_way(void)
{
    double cap[] = { 1, 3 };
    struct net *n = mk(2, cap);
    int a = 0, ab[] = { 0, 1 }, b = 1;
    net_add_flow(n, &a, 1, 100, 0);
    net_add_flow(n, ab, 2, 100, 0);
    net_add_flow(n, &b, 1, 100, 0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 2.5, 1e-12);
    net_advance(n, 1.0, NULL, NULL);
    for (int i = 0; i < 5; i++)
        net_add_flow(n, &b, 1, 100, 1.0);
    next(n);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 0), 4.0 / 7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 1), 3.0 / 7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 3.0 / 7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 7), 3.0 / 7, 1e-12);
    net_free(n);
}

/* A long group clock next to a small flow. One 1e6 B/s link; a 1e9 B flow alone for
 * 500 s (5e8 B served, past 2^20 * 100 B: the clock restarts when the small flow joins),
 * then a 100 B flow joins: 5e5 B/s each, it ends at 500 + 100/5e5 = 500.0002 s; the big
 * flow, with 5e8 - 100 B left, ends alone at 500.0002 + 499.9999 = 1000.0001 s. */
static void test_clock_restart(void)
{
    double cap[] = { 1e6 };
    struct net *n = mk(1, cap);
    int l = 0;
    int big = net_add_flow(n, &l, 1, 1e9, 0);
    net_advance(n, 500.0, NULL, NULL);
    int small = net_add_flow(n, &l, 1, 100, 500.0);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 2);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, small), 500.0002, 500.0002 * 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, big), 1000.0001, 1000.0001 * 1e-12);
    net_free(n);
}

/* The clock restarts as it runs, too. One 1 B/s link: a 1e8 B flow and a 1 B flow from
 * t = 0, 0.5 B/s each: the small one ends at 2 s; the big one, alone, has received
 * 1 + (5e6 - 2) B at 5e6 s (past 2^20 * 1 B) when a 10 B flow joins: 0.5 B/s each, the
 * new one ends at 5e6 + 20 s, and the big one, 1e8 - (5e6 - 1) - 10 B left, at
 * 5e6 + 20 + 94999991 = 100000011 s. */
static void test_clock_restart_running(void)
{
    double cap[] = { 1 };
    struct net *n = mk(1, cap);
    int l = 0;
    int big = net_add_flow(n, &l, 1, 1e8, 0);
    int small = net_add_flow(n, &l, 1, 1, 0);
    net_advance(n, 5e6, NULL, NULL);
    int late = net_add_flow(n, &l, 1, 10, 5e6);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 2);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, small), 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, late), 5000020.0, 5000020.0 * 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, big), 100000011.0, 100000011.0 * 1e-12);
    net_free(n);
}

/* A 0 B flow ends when it starts (t = 3 s); a 10 B flow beside it on the 1 B/s link
 * keeps the whole link and ends at 10 s. */
static void test_zero_bytes(void)
{
    double cap[] = { 1 };
    struct net *n = mk(1, cap);
    int l = 0;
    int f = net_add_flow(n, &l, 1, 10, 0);
    net_advance(n, 3.0, NULL, NULL);
    int z = net_add_flow(n, &l, 1, 0, 3.0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 3.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 2);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, z), 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, f), 10.0, 1e-12);
    net_free(n);
}

struct order {
    int ids[8], n;
};

/* Counts flows reported in id order 0, 1, 2, ... (stops counting at the first gap). */
static void count_in_order(void *arg, int flow, double t_end_s)
{
    int *seen = arg;
    (void)t_end_s;
    if (flow == *seen)
        (*seen)++;
}

static void record(void *arg, int flow, double t_end_s)
{
    struct order *o = arg;
    (void)t_end_s;
    if (o->n < 8)
        o->ids[o->n++] = flow;
}

/* Flows that end at the same time are reported in id order: f0 (on link 1) and f1, f2
 * (on link 0), all 1 B at 1 B/s, 0.5 B/s on link 0: f0 ends at 1 s, f1 and f2 at 2 s;
 * then, added at 2 s in the order f3 (link 1), f4 (link 0), 1 B each, both end at 3 s. */
static void test_done_order(void)
{
    double cap[] = { 1, 1 };
    struct net *n = mk(2, cap);
    int l0 = 0, l1 = 1;
    struct order o = { .n = 0 };
    net_add_flow(n, &l1, 1, 1, 0);
    net_add_flow(n, &l0, 1, 1, 0);
    net_add_flow(n, &l0, 1, 1, 0);
    CU_ASSERT_EQUAL(net_advance(n, 2.0, record, &o), 3);
    net_add_flow(n, &l1, 1, 1, 2.0);
    net_add_flow(n, &l0, 1, 1, 2.0);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, record, &o), 2);
    int want[] = { 0, 1, 2, 3, 4 };
    CU_ASSERT_EQUAL(o.n, 5);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(o.ids[i], want[i]);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 3), 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 4), 3.0, 1e-12);
    net_free(n);
}

/* 200 flows of 1 B, even ids on link 1, odd ids on link 0, 100 B/s each: 1 B/s for
 * every flow, all end at 1 s, and are reported in id order 0, 1, ..., 199. */
static void test_many_done_together(void)
{
    double cap[] = { 100, 100 };
    struct net *n = mk(2, cap);
    for (int i = 0; i < 200; i++) {
        int l = i % 2 ? 0 : 1;
        net_add_flow(n, &l, 1, 1, 0);
    }
    int seen = 0;
    CU_ASSERT_DOUBLE_EQUAL(next(n), 1.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, count_in_order, &seen), 200);
    CU_ASSERT_EQUAL(seen, 200);
    net_free(n);
}

struct watch {
    double use[8];
    double t[8];
};

static void watch_link(void *arg, int link, double t_s, double use_Bps)
{
    struct watch *w = arg;
    w->use[link] = use_Bps;
    w->t[link] = t_s;
}

/* The link observer reports each link's new total. A (1 B/s): f0 (1 B), f1 (1 B);
 * B (2 B/s): f0, f2 (4 B). f0 = f1 = 0.5 on A, f2 = 1.5: A carries 1, B 2 from t = 0.
 * f0 and f1 end at 2 s: A carries 0; f2 (1 B left) takes all of B, 2. It ends at 2.5 s:
 * B carries 0. */
static void test_observer(void)
{
    double cap[] = { 1, 2 };
    struct net *n = mk(2, cap);
    struct watch w = { { 0 }, { 0 } };
    net_observe_links(n, watch_link, &w);
    int ab[] = { 0, 1 }, a = 0, b = 1;
    net_add_flow(n, ab, 2, 1, 0);
    net_add_flow(n, &a, 1, 1, 0);
    net_add_flow(n, &b, 1, 4, 0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w.use[0], 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w.use[1], 2.0, 1e-12);
    net_advance(n, 2.0, NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(w.use[0], 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w.t[0], 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w.use[1], 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 2.0, 1e-12);
    net_advance(n, INFINITY, NULL, NULL);
    CU_ASSERT_DOUBLE_EQUAL(w.use[1], 0.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(w.t[1], 2.5, 1e-12);
    net_free(n);
}

/* ---- batched completions (net_advance_window) ---- */

struct ends { int n, id[8]; double t[8]; };

static void note_end(void *arg, int flow, double t_end_s)
{
    struct ends *e = arg;
    e->id[e->n] = flow;
    e->t[e->n++] = t_end_s;
}

/* Flows of 100, 110 and 1000 B on one 100 B/s link: 100/3 B/s each, the first done at
 * t = 3 s. A window to 4 s: the second has 10 B left at 100/3 B/s, done at 3.3 s at the
 * old rate (exactly: at 50 B/s from 3 s, 3.2 s); the third (900 B left at 3 s) is not,
 * and is re-solved once, at 3.3 s, when it has 1000 - 3.3 x 100/3 = 890 B left: alone
 * at 100 B/s, done at 12.2 s (exactly: 12.1 s). */
static void test_window_closed_form(void)
{
    double cap[] = { 100 };
    struct net *n = mk(1, cap);
    int l = 0;
    net_add_flow(n, &l, 1, 100, 0);
    net_add_flow(n, &l, 1, 110, 0);
    net_add_flow(n, &l, 1, 1000, 0);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 3.0, 1e-12);
    struct ends e = { 0 };
    CU_ASSERT_EQUAL(net_advance_window(n, 4.0, note_end, &e), 2);
    CU_ASSERT_EQUAL(e.n, 2);
    CU_ASSERT_EQUAL(e.id[0], 0);
    CU_ASSERT_EQUAL(e.id[1], 1);
    CU_ASSERT_DOUBLE_EQUAL(e.t[0], 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e.t[1], 3.3, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_rate_Bps(n, 2), 100.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_left_bytes(n, 2), 890.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 12.2, 1e-12);
    CU_ASSERT_EQUAL(net_advance(n, INFINITY, NULL, NULL), 1);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 2), 12.2, 1e-12);
    net_free(n);
}

/* Ties: two 100 B flows and a 200 B one on a 100 B/s link, 100/3 B/s each: the two end
 * together at 3 s. A window to 3.5 s takes both, in id order, and not the third (100 B
 * left, at the old rate 6 s); re-solved at 3 s it runs alone and ends at 4 s, as without
 * the window. A window that ends before the next completion does nothing; one that ends
 * before the network's time is refused. */
static void test_window_ties(void)
{
    double cap[] = { 100 };
    struct net *n = mk(1, cap);
    int l = 0;
    net_add_flow(n, &l, 1, 200, 0);
    net_add_flow(n, &l, 1, 100, 0);
    net_add_flow(n, &l, 1, 100, 0);
    struct ends e = { 0 };
    CU_ASSERT_EQUAL(net_advance_window(n, 2.9, note_end, &e), 0);
    CU_ASSERT_EQUAL(net_advance_window(n, 3.5, note_end, &e), 2);
    CU_ASSERT_EQUAL(e.n, 2);
    CU_ASSERT_EQUAL(e.id[0], 1);
    CU_ASSERT_EQUAL(e.id[1], 2);
    CU_ASSERT_DOUBLE_EQUAL(e.t[0], 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(e.t[1], 3.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance_window(n, 2.0, note_end, &e), -EINVAL);
    CU_ASSERT_DOUBLE_EQUAL(next(n), 4.0, 1e-12);
    CU_ASSERT_EQUAL(net_advance_window(n, INFINITY, note_end, &e), 1);
    CU_ASSERT_DOUBLE_EQUAL(net_flow_end_s(n, 0), 4.0, 1e-12);
    net_free(n);
}

/* ---- the reference: progressive filling from scratch, every event, O(F^2 L) ---- */
#define RMAXF 512
#define RMAXL 64

struct rflow { int nl, links[NET_MAX_HOPS]; double bytes, start, rem, rate, end; bool on; };

struct rcase {
    int nf, nl;
    double cap[RMAXL];
    struct rflow f[RMAXF];
};

/* Max-min rates of the flows with on[i] (the others get 0): raise every unfrozen flow
 * by the smallest fair share of the links, freeze the flows of saturated links. */
static void ref_rates(struct rflow *f, int nf, const double *cap, int nl, const bool *on)
{
    double rem[RMAXL];
    int cnt[RMAXL];
    bool frozen[RMAXF];
    for (int l = 0; l < nl; l++)
        rem[l] = cap[l];
    for (int i = 0; i < nf; i++) {
        f[i].rate = 0;
        frozen[i] = !on[i];
    }
    for (;;) {
        memset(cnt, 0, sizeof(cnt));
        for (int i = 0; i < nf; i++)
            for (int j = 0; j < f[i].nl && !frozen[i]; j++)
                cnt[f[i].links[j]]++;
        double inc = INFINITY;
        for (int l = 0; l < nl; l++)
            if (cnt[l])
                inc = fmin(inc, rem[l] / cnt[l]);
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

/* Completion times: rates from scratch at every start and every finish. */
static void ref_run(struct rflow *f, int nf, const double *cap, int nl)
{
    bool on[RMAXF] = { false };
    double t = 0;
    int left = nf;
    for (int i = 0; i < nf; i++)
        f[i].on = false;
    while (left) {
        for (int i = 0; i < nf; i++)
            if (!f[i].on && f[i].end < 0 && f[i].start <= t) {
                f[i].on = true;
                f[i].rem = f[i].bytes;
            }
        for (int i = 0; i < nf; i++)
            on[i] = f[i].on;
        ref_rates(f, nf, cap, nl, on);
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

static void observe_use(void *arg, int link, double t_s, double use_Bps)
{
    double *seen = arg;
    (void)t_s;
    seen[link] = use_Bps;
}

/* Runs case c through the network in start order, as an engine would. At every event
 * the rates of the running flows are compared with ref_rates on the same set, and each
 * link's use (and, with `observe`, the link observer's last report) with the sum of its
 * flows' rates; at the end, completion times with ref_run. Returns the worst relative
 * error of any of these. With `window`, each completion goes through net_advance_window
 * with the window ending at it: the batching's exact case. */
static double drive(struct rcase *c, bool observe, bool window)
{
    int order[RMAXF], id[RMAXF];
    for (int i = 0; i < c->nf; i++) {
        order[i] = i;
        id[i] = -1;
        c->f[i].end = -1;
    }
    for (int i = 1; i < c->nf; i++)     /* stable: ties keep their index order */
        for (int j = i; j > 0 && c->f[order[j]].start < c->f[order[j - 1]].start; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    struct net *n = mk(c->nl, c->cap);
    double seen[RMAXL] = { 0 };
    if (observe)
        net_observe_links(n, observe_use, seen);
    struct rcase now = *c;
    double worst = 0;
    int added = 0;
    for (;;) {
        double t = next(n);
        bool on[RMAXF] = { false };
        double use[RMAXL] = { 0 };
        for (int i = 0; i < c->nf; i++)
            on[i] = id[i] >= 0 && isnan(net_flow_end_s(n, id[i]));
        ref_rates(now.f, c->nf, c->cap, c->nl, on);
        for (int i = 0; i < c->nf; i++) {
            if (!on[i])
                continue;
            double got = net_flow_rate_Bps(n, id[i]);
            worst = fmax(worst, fabs(got - now.f[i].rate) / now.f[i].rate);
            for (int j = 0; j < c->f[i].nl; j++)
                use[c->f[i].links[j]] += got;
        }
        for (int l = 0; l < c->nl; l++) {
            worst = fmax(worst, fabs(net_link_use_Bps(n, l) - use[l]) / c->cap[l]);
            if (observe)
                worst = fmax(worst, fabs(seen[l] - use[l]) / c->cap[l]);
        }
        double t_add = added < c->nf ? c->f[order[added]].start : INFINITY;
        if (t == INFINITY && t_add == INFINITY)
            break;
        bool win = window && t <= t_add;    /* a window that ends at the next completion */
        int done = win ? net_advance_window(n, t, NULL, NULL)
                       : net_advance(n, fmin(t, t_add), NULL, NULL);
        CU_ASSERT_FATAL(done >= (win ? 1 : 0));
        for (; added < c->nf && c->f[order[added]].start <= fmin(t, t_add); added++) {
            const struct rflow *g = &c->f[order[added]];
            id[order[added]] = net_add_flow(n, g->links, g->nl, g->bytes, g->start);
            CU_ASSERT_FATAL(id[order[added]] >= 0);
        }
    }
    ref_run(c->f, c->nf, c->cap, c->nl);
    for (int i = 0; i < c->nf; i++) {
        double got = net_flow_end_s(n, id[i]);
        double err = fabs(got - c->f[i].end) / fmax(c->f[i].end, 1e-300);
        worst = isnan(err) ? INFINITY : fmax(worst, err);
    }
    net_free(n);
    return worst;
}

static void pick_links(struct rng *r, struct rflow *f, int nl, int max_hops)
{
    f->nl = 1 + (int)rng_below(r, nl < max_hops ? nl : max_hops);
    for (int j = 0; j < f->nl; j++) {
        int l;
        bool dup;
        do {
            l = (int)rng_below(r, nl);
            dup = false;
            for (int k = 0; k < j; k++)
                dup |= f->links[k] == l;
        } while (dup);
        f->links[j] = l;
    }
}

static void report(const char *what, double worst, int worst_case)
{
    if (!(worst <= 1e-9))
        printf("\n  %s: worst relative error %.3g in case %d\n", what, worst, worst_case);
    CU_ASSERT(worst <= 1e-9);
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
            pick_links(&r, &f[i], nl, 4);
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
    report("end times", worst, worst_case);
}

/* Random networks with up to 6 hops per flow, real-valued sizes and capacities or
 * integer ones (ties), up to 5 start times: at every event every rate and every link's
 * use equals the reference's within 1e-9 relative, and so do the completion times.
 * Half the cases watch the links through the observer; a third complete their flows
 * through zero-width windows. */
static void test_random_every_event(void)
{
    struct rng r;
    rng_seed(&r, 777);
    static struct rcase c;
    int worst_case = -1;
    double worst = 0;
    for (int k = 0; k < 300; k++) {
        bool ties = k % 2;
        c.nl = 2 + (int)rng_below(&r, 12);
        c.nf = 1 + (int)rng_below(&r, 60);
        for (int l = 0; l < c.nl; l++)
            c.cap[l] = ties ? 1 + (double)rng_below(&r, 3) : 0.5 + 2 * rng_double(&r);
        for (int i = 0; i < c.nf; i++) {
            pick_links(&r, &c.f[i], c.nl, NET_MAX_HOPS);
            c.f[i].bytes = ties ? 1 + (double)rng_below(&r, 4) : 0.1 + 10 * rng_double(&r);
            c.f[i].start = (double)rng_below(&r, 5) * (ties ? 1.0 : 0.37);
        }
        double e = drive(&c, k % 4 < 2, k % 3 == 0);
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            worst_case = k;
        }
    }
    report("rates, uses and end times", worst, worst_case);
}

/* An all-to-all in miniature, shaped like a skewed MoE dispatch: G GPUs (3..12), link g
 * is GPU g's egress, link G + g its ingress, and a flow from every GPU to every other
 * crosses those two. Destination popularity is Zipf(1.2) over a random order, so a few
 * ingress links are hot; sizes are all different, or small integers (exact ties, and
 * equal capacities in half the cases); flows start at up to 3 times. Checked as in
 * test_random_every_event; half the cases through zero-width windows. */
static void test_skewed_alltoall_vs_reference(void)
{
    struct rng r;
    rng_seed(&r, 4242);
    static struct rcase c;
    int worst_case = -1;
    double worst = 0;
    for (int k = 0; k < 150; k++) {
        int g = 3 + (int)rng_below(&r, 10), rank[16];
        bool ties = k % 3 == 0;
        c.nl = 2 * g;
        c.nf = 0;
        for (int l = 0; l < c.nl; l++)
            c.cap[l] = k % 2 ? 1.0 : 1 + (double)rng_below(&r, 3) * 0.5;
        for (int d = 0; d < g; d++)
            rank[d] = d;
        for (int d = g - 1; d > 0; d--) {
            int j = (int)rng_below(&r, (uint64_t)d + 1), tmp = rank[d];
            rank[d] = rank[j];
            rank[j] = tmp;
        }
        for (int s = 0; s < g; s++)
            for (int d = 0; d < g; d++) {
                if (s == d)
                    continue;
                struct rflow *f = &c.f[c.nf++];
                double zipf = pow(rank[d] + 1, -1.2);
                f->nl = 2;
                f->links[0] = s;
                f->links[1] = g + d;
                f->bytes = ties ? 1 + (double)rng_below(&r, 3) * (rank[d] < 2 ? 4 : 1)
                                : 100 * zipf * (0.5 + rng_double(&r));
                f->start = (double)rng_below(&r, 3) * (ties ? 1.0 : 0.05);
            }
        double e = drive(&c, k % 4 == 1, k % 2 == 0);
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            worst_case = k;
        }
    }
    report("rates, uses and end times", worst, worst_case);
}

/* Bad input: a start before the network's time, a negative size, a link out of range,
 * a link twice in one route, no link, too many. */
static void test_bad_input(void)
{
    double cap[] = { 1, 1 };
    struct net *n = mk(2, cap);
    int l = 0, bad = 3, twice[] = { 1, 1 }, many[NET_MAX_HOPS + 1] = { 0 };
    CU_ASSERT(net_add_flow(n, &l, 1, 1, 5.0) >= 0);
    CU_ASSERT_EQUAL(net_add_flow(n, &l, 1, 1, 4.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, &l, 1, -1, 5.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, &bad, 1, 1, 5.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, twice, 2, 1, 5.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, &l, 0, 1, 5.0), -EINVAL);
    CU_ASSERT_EQUAL(net_add_flow(n, many, NET_MAX_HOPS + 1, 1, 5.0), -EINVAL);
    double zero[] = { 0 };
    struct net *z = NULL;
    CU_ASSERT_EQUAL(net_create(&z, 1, zero), -EINVAL);
    net_free(n);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "one flow", test_one_flow },
        { "N flows on one link", test_n_flows_one_link },
        { "processor sharing", test_processor_sharing },
        { "max-min: shared link bottleneck", test_maxmin_two_links },
        { "max-min: other bottleneck", test_maxmin_other_bottleneck },
        { "parking lot", test_parking_lot },
        { "group splits", test_group_split },
        { "link fills up", test_link_fills_up },
        { "fixed flow gives way", test_fixed_flow_gives_way },
        { "clock restart", test_clock_restart },
        { "clock restart, running", test_clock_restart_running },
        { "zero bytes", test_zero_bytes },
        { "done in id order", test_done_order },
        { "many done together", test_many_done_together },
        { "link observer", test_observer },
        { "window: closed form", test_window_closed_form },
        { "window: ties", test_window_ties },
        { "random vs reference", test_random_vs_reference },
        { "random, every event", test_random_every_event },
        { "skewed all-to-all vs reference", test_skewed_alltoall_vs_reference },
        { "bad input", test_bad_input },
    };
    return cu_run("net", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
