/* test_gating.c: CUnit suite for sim/gating.c, the per-token router.
 *
 * Statistical checks: counts over N independent tokens are binomial, compared with their
 * mean within 5 sigma, sigma = sqrt(N q (1 - q)); two independent counts of the same law
 * differ by less than 5 sqrt(2 N q (1 - q)). On a fixed seed a correct router fails one
 * such check with probability below 6e-7. Laws come from closed forms or from exact
 * enumeration (inclusion_oracle), never from the router itself. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cu_run.h"
#include "gating.h"
#include "rng.h"
#include "sample_oracle.h"

#define MAXE 64

static bool within_5_sigma(double count, double n, double q)
{
    return fabs(count - n * q) <= 5 * sqrt(n * q * (1 - q));
}

/* p_e = rank^-s / H with rank(e) = e + 1 (expert 0 the most popular). */
static void zipf_by_rank(double *p, int n, double s)
{
    double h = 0;
    for (int r = n; r >= 1; r--)
        h += pow(r, -s);
    for (int e = 0; e < n; e++)
        p[e] = pow(e + 1, -s) / h;
}

static void uniform_p(double *p, int n)
{
    for (int e = 0; e < n; e++)
        p[e] = 1.0 / n;
}

static struct gating *make(int experts, int top_k, enum dist_kind d, const double *p,
                           double conc, enum score_kind sc, const double *bias, int max_nodes,
                           bool ordered)
{
    struct gating *g = NULL;
    struct gating_spec s = { .experts = experts, .top_k = top_k, .distribution = d,
                             .popularity = p, .concentration = conc, .scoring = sc,
                             .bias = bias, .max_nodes = max_nodes, .ordered = ordered };
    CU_ASSERT_EQUAL(gating_create(&g, &s), 0);
    return g;
}

/* Inclusion counts (incl[e]: tokens that chose e) and first-choice counts over n tokens. */
static void count_picks(struct gating *g, int top_k, uint64_t seed, int n, double *incl,
                        double *first, int experts)
{
    struct rng r;
    int chosen[MAXE];
    rng_seed_stream(&r, seed, 0);
    memset(incl, 0, (size_t)experts * sizeof(*incl));
    if (first)
        memset(first, 0, (size_t)experts * sizeof(*first));
    for (int t = 0; t < n; t++) {
        gating_pick(g, &r, chosen, NULL);
        for (int j = 0; j < top_k; j++)
            incl[chosen[j]]++;
        if (first)
            first[chosen[0]]++;
    }
}

/* ---- popularity ---- */

static struct config pop_config(int experts, enum dist_kind d, double s, bool per_layer,
                                double drift)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.model.experts = experts;
    c.routing.distribution = d;
    c.routing.zipf_s = s;
    c.routing.per_layer = per_layer;
    c.routing.drift = drift;
    return c;
}

/* per_layer off: every layer has layer 0's ranking. On: layer 0 keeps it (stream
 * UINT64_MAX, as before layers existed) and layer 1 differs (E = 16: the same ranking by
 * chance has probability 1/16!). Uniform ignores both: 1/E. */
static void test_popularity_layers(void)
{
    double a[16], b[16], c0[16];
    struct config off = pop_config(16, DIST_ZIPF, 1.2, false, 0);
    struct config on = pop_config(16, DIST_ZIPF, 1.2, true, 0);
    CU_ASSERT_EQUAL(gating_popularity(a, &off, 0, 0, 5), 0);
    CU_ASSERT_EQUAL(gating_popularity(b, &off, 3, 0, 5), 0);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    CU_ASSERT_EQUAL(gating_popularity(c0, &on, 0, 0, 5), 0);
    CU_ASSERT_EQUAL(memcmp(a, c0, sizeof(a)), 0);
    CU_ASSERT_EQUAL(gating_popularity(b, &on, 1, 0, 5), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof(a)), 0);
    struct config u = pop_config(16, DIST_UNIFORM, 1.2, true, 1);
    CU_ASSERT_EQUAL(gating_popularity(b, &u, 7, 9, 5), 0);
    for (int e = 0; e < 16; e++)
        CU_ASSERT_DOUBLE_EQUAL(b[e], 1.0 / 16, 1e-15);
    CU_ASSERT_EQUAL(gating_popularity(b, &off, GATING_INDEX_MAX, 0, 5), -EINVAL);
    CU_ASSERT_EQUAL(gating_popularity(b, &off, 0, -1, 5), -EINVAL);
}

static int changed(const double *a, const double *b, int n)
{
    int c = 0;
    for (int e = 0; e < n; e++)
        c += a[e] != b[e];
    return c;
}

/* Drift: m = round(d E) experts trade ranks by a uniform permutation per iteration
 * (gating.h). Zipf(1) values are distinct, so an expert's p changes iff its rank does.
 * d = 0: never. d = 1: a fresh ranking (same by chance: 1/64!). d = 0.25, E = 64: m = 16;
 * at most 16 change per step, and a uniform permutation of 16 has one fixed point on
 * average (variance 1), so over 400 steps the mean change is 15 within 5 / sqrt(400). */
static void test_popularity_drift(void)
{
    enum { E = 64, STEPS = 400 };
    double prev[E], cur[E];
    struct config c = pop_config(E, DIST_ZIPF, 1.0, false, 0);
    CU_ASSERT_EQUAL(gating_popularity(prev, &c, 0, 0, 9), 0);
    CU_ASSERT_EQUAL(gating_popularity(cur, &c, 0, 50, 9), 0);
    CU_ASSERT_EQUAL(changed(prev, cur, E), 0);
    c.routing.drift = 1;
    CU_ASSERT_EQUAL(gating_popularity(cur, &c, 0, 1, 9), 0);
    CU_ASSERT(changed(prev, cur, E) > 0);
    c.routing.drift = 0.25;
    double sum = 0;
    int most = 0;
    for (int it = 1; it <= STEPS; it++) {
        CU_ASSERT_EQUAL_FATAL(gating_popularity(cur, &c, 0, it, 9), 0);
        int k = changed(prev, cur, E);
        sum += k;
        most = k > most ? k : most;
        memcpy(prev, cur, sizeof(cur));
    }
    CU_ASSERT(most <= 16);
    CU_ASSERT_DOUBLE_EQUAL(sum / STEPS, 15.0, 5.0 / sqrt(STEPS));
}

/* ---- fast draws and scores: one law ---- */

/* Uniform, E = 16, top-4, N = 40000: every expert in K/E = 1/4 of the tokens, on the
 * fast draws (no bias) and on scores (a zero bias forces them), within 5 sigma each and
 * of each other. With order asked for, the first choice of the fast draws is uniform too
 * (1/16; Floyd alone puts expert 0 first only when its first draw is 0: 1/13). */
static void test_uniform_paths_agree(void)
{
    enum { E = 16, K = 4, N = 40000 };
    double p[E], zero[E] = { 0 }, fast[E], scored[E], first[E];
    uniform_p(p, E);
    struct gating *gf = make(E, K, DIST_UNIFORM, p, 1, SCORE_SOFTMAX, NULL, 0, true);
    struct gating *gs = make(E, K, DIST_UNIFORM, p, 1, SCORE_SOFTMAX, zero, 0, false);
    CU_ASSERT_FALSE(gating_scored(gf));
    CU_ASSERT_TRUE(gating_scored(gs));
    count_picks(gf, K, 1, N, fast, first, E);
    count_picks(gs, K, 2, N, scored, NULL, E);
    for (int e = 0; e < E; e++) {
        CU_ASSERT(within_5_sigma(fast[e], N, 0.25));
        CU_ASSERT(within_5_sigma(scored[e], N, 0.25));
        CU_ASSERT(fabs(fast[e] - scored[e]) <= 5 * sqrt(2.0 * N * 0.25 * 0.75));
        CU_ASSERT(within_5_sigma(first[e], N, 1.0 / E));
    }
    gating_free(gf);
    gating_free(gs);
}

/* Zipf, E = 10, top-3, s = 1.2 and s = 3 (the top expert holds 0.83 of p: the fast draws
 * reach their Fenwick tree): inclusion frequencies of both paths against the enumeration
 * oracle and each other, and first choices against p itself (Gumbel-max: the first pick is
 * one draw from p), N = 60000. Softmax and sigmoid keep the order of the logits, so with a
 * zero bias they pick identically on the same stream. */
static void test_zipf_paths_agree(void)
{
    enum { E = 10, K = 3, N = 60000 };
    const double ss[] = { 1.2, 3.0 };
    for (int i = 0; i < 2; i++) {
        double p[E], zero[E] = { 0 }, oracle[E], fast[E], scored[E], sig[E], f1[E], f2[E];
        zipf_by_rank(p, E, ss[i]);
        inclusion_oracle(p, E, K, oracle);
        struct gating *gf = make(E, K, DIST_ZIPF, p, 1, SCORE_SOFTMAX, NULL, 0, false);
        struct gating *gs = make(E, K, DIST_ZIPF, p, 1, SCORE_SOFTMAX, zero, 0, false);
        struct gating *gg = make(E, K, DIST_ZIPF, p, 1, SCORE_SIGMOID, zero, 0, false);
        count_picks(gf, K, 3, N, fast, f1, E);
        count_picks(gs, K, 4, N, scored, f2, E);
        count_picks(gg, K, 4, N, sig, NULL, E);
        for (int e = 0; e < E; e++) {
            CU_ASSERT(within_5_sigma(fast[e], N, oracle[e]));
            CU_ASSERT(within_5_sigma(scored[e], N, oracle[e]));
            CU_ASSERT(fabs(fast[e] - scored[e]) <=
                      5 * sqrt(2.0 * N * oracle[e] * (1 - oracle[e])) + 1e-9);
            CU_ASSERT(within_5_sigma(f1[e], N, p[e]));
            CU_ASSERT(within_5_sigma(f2[e], N, p[e]));
            CU_ASSERT_EQUAL(sig[e], scored[e]);
        }
        gating_free(gf);
        gating_free(gs);
        gating_free(gg);
    }
}

/* ---- affinity ---- */

/* theta ~ Dirichlet(c E p): E[theta_e] = p_e and Var(theta_e) = p_e (1 - p_e) / (c E + 1)
 * (the Dirichlet's moments), seen through the softmax scores (s = theta). Zipf(1), E = 8,
 * N = 20000 tokens, c = 0.05, 1, 20: the mean within 5 sigma of the mean; the sample
 * variance within 12% (its relative sd is sqrt((kurtosis - 1) / N), under 2.4% for these
 * Beta marginals). */
static void test_affinity_moments(void)
{
    enum { E = 8, K = 2, N = 20000 };
    const double cs[] = { 0.05, 1, 20 };
    double p[E];
    zipf_by_rank(p, E, 1.0);
    for (int i = 0; i < 3; i++) {
        struct gating *g = make(E, K, DIST_AFFINITY, p, cs[i], SCORE_SOFTMAX, NULL, 0, false);
        double sum[E] = { 0 }, sq[E] = { 0 };
        int chosen[K];
        struct rng r;
        rng_seed_stream(&r, 13, (uint64_t)i);
        for (int t = 0; t < N; t++) {
            gating_pick(g, &r, chosen, NULL);
            const double *s = gating_scores(g);
            for (int e = 0; e < E; e++) {
                sum[e] += s[e];
                sq[e] += s[e] * s[e];
            }
        }
        for (int e = 0; e < E; e++) {
            double var = p[e] * (1 - p[e]) / (cs[i] * E + 1);
            double mean = sum[e] / N, svar = sq[e] / N - mean * mean;
            CU_ASSERT_DOUBLE_EQUAL(mean, p[e], 5 * sqrt(var / N));
            CU_ASSERT_DOUBLE_EQUAL(svar, var, 0.12 * var);
        }
        gating_free(g);
    }
}

/* The two limits of gating.h. c = 1e6: theta is p within about 1e-4 while Zipf(1) over 8
 * has p_3 - p_4 = 0.031, so every token picks experts 0, 1, 2 in that order. c = 1e-4:
 * log g_e ~ log(U_e) / alpha_e, an exponential race with rates alpha_e ~ p_e, i.e.
 * successive sampling from p: inclusions match the oracle (E = 8, top-3, N = 40000). */
static void test_affinity_limits(void)
{
    enum { E = 8, K = 3, N = 40000 };
    double p[E], incl[E], first[E], oracle[E];
    zipf_by_rank(p, E, 1.0);
    struct gating *g = make(E, K, DIST_AFFINITY, p, 1e6, SCORE_SOFTMAX, NULL, 0, false);
    struct rng r;
    int chosen[K];
    bool all_same = true;
    rng_seed_stream(&r, 17, 0);
    for (int t = 0; t < 2000; t++) {
        gating_pick(g, &r, chosen, NULL);
        all_same &= chosen[0] == 0 && chosen[1] == 1 && chosen[2] == 2;
    }
    CU_ASSERT_TRUE(all_same);
    gating_free(g);
    g = make(E, K, DIST_AFFINITY, p, 1e-4, SCORE_SOFTMAX, NULL, 0, false);
    inclusion_oracle(p, E, K, oracle);
    count_picks(g, K, 19, N, incl, first, E);
    for (int e = 0; e < E; e++) {
        CU_ASSERT(within_5_sigma(incl[e], N, oracle[e]));
        CU_ASSERT(within_5_sigma(first[e], N, p[e]));
    }
    gating_free(g);
}

/* ---- bias ---- */

/* Uniform, E = 8, top-2, softmax scores in (0, 1): a bias of -10 on expert 3 keeps it out
 * of every token, +10 on expert 5 puts it first in every token; the scores are those of
 * the same stream without bias (the bias changes the selection only). */
static void test_bias(void)
{
    enum { E = 8, K = 2 };
    double p[E], bias[E] = { 0 }, zero[E] = { 0 }, s_bias[E];
    uniform_p(p, E);
    bias[3] = -10;
    bias[5] = 10;
    struct gating *gb = make(E, K, DIST_UNIFORM, p, 1, SCORE_SOFTMAX, bias, 0, false);
    struct gating *g0 = make(E, K, DIST_UNIFORM, p, 1, SCORE_SOFTMAX, zero, 0, false);
    struct rng ra, rb;
    int cb[K], c0[K];
    bool three = false, five_first = true, same_scores = true;
    rng_seed_stream(&ra, 23, 0);
    rng_seed_stream(&rb, 23, 0);
    for (int t = 0; t < 5000; t++) {
        gating_pick(gb, &ra, cb, NULL);
        memcpy(s_bias, gating_scores(gb), sizeof(s_bias));
        gating_pick(g0, &rb, c0, NULL);
        three |= cb[0] == 3 || cb[1] == 3;
        five_first &= cb[0] == 5;
        same_scores &= !memcmp(s_bias, gating_scores(g0), sizeof(s_bias));
    }
    CU_ASSERT_FALSE(three);
    CU_ASSERT_TRUE(five_first);
    CU_ASSERT_TRUE(same_scores);
    gating_free(gb);
    gating_free(g0);
}

/* ---- node limit ---- */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The node-limited rule of gating.h recomputed from the token's scores, by sorting:
 * node values (sum of the q best s + b of its experts), the M best nodes (ties: lower
 * node), then the top_k of their experts by s + b (ties: lower expert). */
static void node_oracle(const double *s, const double *bias, int experts, int nodes,
                        const int *first, const int *members, int m, int k, int *want,
                        int *want_nodes)
{
    int q = k / m > 1 ? k / m : 1;
    double value[MAXE], key[MAXE];
    bool ok[MAXE] = { false };
    for (int e = 0; e < experts; e++)
        key[e] = s[e] + bias[e];
    for (int n = 0; n < nodes; n++) {
        double v[MAXE];
        int c = 0;
        for (int i = first[n]; i < first[n + 1]; i++)
            v[c++] = key[members[i]];
        qsort(v, (size_t)c, sizeof(v[0]), cmp_desc);
        value[n] = 0;
        for (int j = 0; j < q && j < c; j++)
            value[n] += v[j];
    }
    for (int i = 0; i < m; i++) {
        int best = -1;
        for (int n = 0; n < nodes; n++) {
            bool taken = false;
            for (int j = 0; j < i; j++)
                taken |= want_nodes[j] == n;
            if (!taken && (best < 0 || value[n] > value[best]))
                best = n;
        }
        want_nodes[i] = best;
        for (int j = first[best]; j < first[best + 1]; j++)
            ok[members[j]] = true;
    }
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < experts; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++)
                taken |= want[i] == e;
            if (ok[e] && !taken && (best < 0 || key[e] > key[best]))
                best = e;
        }
        want[j] = best;
    }
}

/* E = 32 on 8 nodes of 4 (node n: experts 4n .. 4n+3), top-4 of at most M = 2 nodes
 * (q = 2), sigmoid scores, small random biases: for 3000 tokens the picks and nodes equal
 * the oracle's, and the picks lie on at most 2 nodes. M = 8 (every node) picks exactly what
 * the router picks without a node limit, on the same stream. */
static void test_node_limited(void)
{
    enum { E = 32, K = 4, NODES = 8, M = 2 };
    double p[E], bias[E];
    int first[NODES + 1], members[E];
    struct rng br;
    rng_seed(&br, 29);
    zipf_by_rank(p, E, 0.8);
    for (int e = 0; e < E; e++) {
        bias[e] = (rng_double(&br) - 0.5) * 0.2;
        members[e] = e;
    }
    for (int n = 0; n <= NODES; n++)
        first[n] = 4 * n;
    struct gating *g = make(E, K, DIST_ZIPF, p, 1, SCORE_SIGMOID, bias, M, false);
    bool short_nodes = true;
    CU_ASSERT_EQUAL_FATAL(gating_set_nodes(g, NODES, first, members, &short_nodes), 0);
    CU_ASSERT_FALSE(short_nodes);
    struct rng r;
    rng_seed_stream(&r, 31, 0);
    bool match = true, within = true;
    for (int t = 0; t < 3000; t++) {
        int chosen[K], nodes[NODES], want[K], want_nodes[M];
        int nn = gating_pick(g, &r, chosen, nodes);
        node_oracle(gating_scores(g), bias, E, NODES, first, members, M, K, want, want_nodes);
        match &= nn == M && !memcmp(chosen, want, sizeof(want)) &&
                 !memcmp(nodes, want_nodes, sizeof(want_nodes));
        for (int j = 0; j < K; j++)
            within &= chosen[j] / 4 == nodes[0] || chosen[j] / 4 == nodes[1];
    }
    CU_ASSERT_TRUE(match);
    CU_ASSERT_TRUE(within);
    gating_free(g);

    struct gating *all = make(E, K, DIST_ZIPF, p, 1, SCORE_SIGMOID, bias, NODES, false);
    struct gating *free_g = make(E, K, DIST_ZIPF, p, 1, SCORE_SIGMOID, bias, 0, false);
    CU_ASSERT_EQUAL_FATAL(gating_set_nodes(all, NODES, first, members, NULL), 0);
    struct rng ra, rb;
    rng_seed_stream(&ra, 37, 0);
    rng_seed_stream(&rb, 37, 0);
    bool same = true;
    for (int t = 0; t < 3000; t++) {
        int a[K], b[K], nodes[NODES];
        CU_ASSERT_EQUAL(gating_pick(all, &ra, a, nodes), NODES);
        gating_pick(free_g, &rb, b, NULL);
        same &= !memcmp(a, b, sizeof(a));
    }
    CU_ASSERT_TRUE(same);
    gating_free(all);
    gating_free(free_g);
}

/* Replicas on several nodes: experts 0..5 on 3 nodes of 2, expert 0 also on node 2
 * (members {0,1}, {2,3}, {4,5,0}), top-2 of M = 1 node (q = 2). An expert on two nodes
 * makes short_nodes true; every token's picks are on its one node: node 0 {0,1}, node 1
 * {2,3}, node 2 {4,5,0}. A bad layout (expert 5 on no node, or twice on node 2) is
 * -EINVAL. */
static void test_node_replicas(void)
{
    enum { E = 6, K = 2 };
    double p[E];
    int first[] = { 0, 2, 4, 7 }, members[] = { 0, 1, 2, 3, 4, 5, 0 };
    int bad_first[] = { 0, 2, 4, 5 }, bad_members[] = { 0, 1, 2, 3, 4 };
    int dup_members[] = { 0, 1, 2, 3, 4, 5, 5 };
    uniform_p(p, E);
    struct gating *g = make(E, K, DIST_UNIFORM, p, 1, SCORE_SOFTMAX, NULL, 1, false);
    bool short_nodes = false;
    CU_ASSERT_EQUAL(gating_set_nodes(g, 3, bad_first, bad_members, NULL), -EINVAL);
    CU_ASSERT_EQUAL(gating_set_nodes(g, 3, first, dup_members, NULL), -EINVAL);
    CU_ASSERT_EQUAL_FATAL(gating_set_nodes(g, 3, first, members, &short_nodes), 0);
    CU_ASSERT_TRUE(short_nodes);
    struct rng r;
    rng_seed_stream(&r, 41, 0);
    bool ok = true;
    for (int t = 0; t < 2000; t++) {
        int chosen[K], nodes[3];
        CU_ASSERT_EQUAL(gating_pick(g, &r, chosen, nodes), 1);
        for (int j = 0; j < K; j++) {
            bool on = false;
            for (int i = first[nodes[0]]; i < first[nodes[0] + 1]; i++)
                on |= members[i] == chosen[j];
            ok &= on;
        }
    }
    CU_ASSERT_TRUE(ok);
    gating_free(g);
}

/* Same stream, same picks, on every path; a bad spec is -EINVAL with *out NULL. */
static void test_determinism_and_spec(void)
{
    enum { E = 12, K = 3 };
    double p[E], zero[E] = { 0 };
    zipf_by_rank(p, E, 1.1);
    const struct { enum dist_kind d; const double *bias; } cases[] = {
        { DIST_UNIFORM, NULL }, { DIST_ZIPF, NULL }, { DIST_ZIPF, zero }, { DIST_AFFINITY, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gating *a = make(E, K, cases[i].d, p, 0.5, SCORE_SIGMOID, cases[i].bias, 0, true);
        struct gating *b = make(E, K, cases[i].d, p, 0.5, SCORE_SIGMOID, cases[i].bias, 0, true);
        struct rng ra, rb;
        rng_seed_stream(&ra, 43, i);
        rng_seed_stream(&rb, 43, i);
        bool same = true;
        for (int t = 0; t < 500; t++) {
            int x[K], y[K];
            gating_pick(a, &ra, x, NULL);
            gating_pick(b, &rb, y, NULL);
            same &= !memcmp(x, y, sizeof(x));
        }
        CU_ASSERT_TRUE(same);
        gating_free(a);
        gating_free(b);
    }
    struct gating *g = (struct gating *)&g;
    struct gating_spec s = { .experts = E, .top_k = E + 1, .distribution = DIST_UNIFORM,
                             .popularity = p };
    CU_ASSERT_EQUAL(gating_create(&g, &s), -EINVAL);
    CU_ASSERT_PTR_NULL(g);
    s.top_k = K;
    s.distribution = DIST_AFFINITY;         /* concentration 0 */
    CU_ASSERT_EQUAL(gating_create(&g, &s), -EINVAL);
    s.distribution = DIST_TRACE;
    CU_ASSERT_EQUAL(gating_create(&g, &s), -EINVAL);
    double nan_bias[E] = { 0 };
    nan_bias[2] = NAN;
    s.distribution = DIST_ZIPF;
    s.bias = nan_bias;
    CU_ASSERT_EQUAL(gating_create(&g, &s), -EINVAL);
    gating_free(NULL);
}

int main(void)
{
    static const struct cu_test tests[] = {
        {"popularity: per-layer rankings", test_popularity_layers},
        {"popularity: drift re-ranks round(d E) experts", test_popularity_drift},
        {"uniform: fast draws and scores agree", test_uniform_paths_agree},
        {"zipf: fast draws, softmax and sigmoid scores agree", test_zipf_paths_agree},
        {"affinity: Dirichlet mean and variance", test_affinity_moments},
        {"affinity: large and small concentration limits", test_affinity_limits},
        {"bias changes the selection, not the scores", test_bias},
        {"node-limited picks against an oracle; M = nodes is unlimited", test_node_limited},
        {"node limit with replicas on several nodes", test_node_replicas},
        {"determinism and bad specs", test_determinism_and_spec},
    };
    return cu_run("gating", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
