/* test_routing.c: CUnit suite for sim/routing.c.
 *
 * Statistical checks: counts of independent tokens are binomial, so each is
 * compared with its mean within 5 sigma, sigma = sqrt(N p (1 - p)); on a fixed
 * seed a correct generator fails one such check with probability below 6e-7.
 * The config is filled by hand (config_load is not used here). */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cu_run.h"
#include "gating.h"
#include "placement.h"
#include "routing.h"
#include "rtrace.h"
#include "sample_oracle.h"
#include "traffic.h"

static struct config make_config(int nodes, int gpus_per_node, int experts, int top_k, int ep,
                                 int64_t tokens, enum dist_kind dist, double zipf_s, bool dedup)
{
    struct config c;

    memset(&c, 0, sizeof(c));
    c.cluster.nodes = nodes;
    c.cluster.gpus_per_node = gpus_per_node;
    c.model.experts = experts;
    c.model.top_k = top_k;
    c.model.hidden = 1024;
    c.parallel.ep = ep;
    c.routing.tokens_per_gpu = tokens;
    c.routing.distribution = dist;
    c.routing.zipf_s = zipf_s;
    c.routing.dedup = dedup;
    return c;
}

static uint64_t pair(const struct routing *r, int s, int d)
{
    return r->pair_tokens[(size_t)s * r->gpus + d];
}

static uint64_t row_sum(const struct routing *r, int s)
{
    uint64_t sum = 0;
    for (int d = 0; d < r->gpus; d++)
        sum += pair(r, s, d);
    return sum;
}

static bool within_5_sigma(uint64_t count, double n, double p)
{
    return fabs((double)count - n * p) <= 5 * sqrt(n * p * (1 - p));
}

/* Without dedup every token adds one per chosen expert: each row sums to
 * T * K = 1000 * 4 = 4000 exactly, and each group's experts receive
 * ep * T * K = 4 * 1000 * 4 = 16000 assignments; for both distributions. */
static void test_rows_without_dedup(void)
{
    for (int dist = DIST_UNIFORM; dist <= DIST_ZIPF; dist++) {
        struct config c = make_config(2, 4, 16, 4, 4, 1000, (enum dist_kind)dist, 1.2, false);
        struct routing r;

        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 1), 0);
        CU_ASSERT_EQUAL(r.gpus, 8);
        for (int s = 0; s < r.gpus; s++)
            CU_ASSERT_EQUAL(row_sum(&r, s), 4000);
        for (int g = 0; g < r.gpus / r.ep; g++) {
            uint64_t load = 0;
            for (int e = 0; e < r.experts; e++)
                load += r.expert_tokens[(size_t)g * r.experts + e];
            CU_ASSERT_EQUAL(load, 16000);
        }
        routing_free(&r);
    }
}

/* C(E - m, K) / C(E, K) = prod_{i < K} (E - m - i) / (E - i): the chance that a
 * uniform K-subset of E experts misses the m experts of one GPU. */
static double miss_probability(int experts, int m, int k)
{
    double p = 1;
    for (int i = 0; i < k; i++)
        p *= (double)(experts - m - i) / (experts - i);
    return p;
}

/* With dedup a token counts once per GPU it reaches: rows lie in [T, T K]. Under
 * uniform routing the count to each GPU of the group is Binomial(T, q) with
 * q = 1 - C(E - m, K) / C(E, K), m = E / ep. Case 1: E = 16, ep = 4, m = 4, K = 4:
 * q = 1 - 495/1820 = 0.72802. Case 2: E = 64, ep = 8, m = 8, K = 8:
 * q = 1 - 1420494075/4426165368 = 0.67907. T = 20000, within 5 sigma. */
static void test_dedup_expected_per_gpu(void)
{
    static const struct {
        int experts, ep, top_k;
        double q_hand;
    } cases[] = {{16, 4, 4, 1 - 495.0 / 1820}, {64, 8, 8, 1 - 1420494075.0 / 4426165368}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int t = 20000;
        struct config c = make_config(2, 8, cases[i].experts, cases[i].top_k, cases[i].ep, t,
                                      DIST_UNIFORM, 0, true);
        double q = 1 - miss_probability(cases[i].experts, cases[i].experts / cases[i].ep,
                                        cases[i].top_k);
        struct routing r;

        CU_ASSERT_DOUBLE_EQUAL(q, cases[i].q_hand, 1e-5);
        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 77), 0);
        for (int s = 0; s < r.gpus; s++) {
            uint64_t sum = row_sum(&r, s);
            int base = s / r.ep * r.ep;
            CU_ASSERT(sum >= (uint64_t)t && sum <= (uint64_t)t * r.top_k);
            for (int d = base; d < base + r.ep; d++)
                CU_ASSERT(within_5_sigma(pair(&r, s, d), t, q));
        }
        routing_free(&r);
    }
}

/* Uniform: each expert of a group is in a token's K-subset with probability K/E,
 * so its load is Binomial(ep T, K/E): 4 * 20000 tokens, p = 4/16, mean 20000,
 * sigma 122.5, within 5 sigma. */
static void test_expert_load_uniform(void)
{
    struct config c = make_config(2, 4, 16, 4, 4, 20000, DIST_UNIFORM, 0, true);
    struct routing r;

    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 5), 0);
    for (int g = 0; g < r.gpus / r.ep; g++)
        for (int e = 0; e < r.experts; e++)
            CU_ASSERT(within_5_sigma(r.expert_tokens[(size_t)g * r.experts + e],
                                     4.0 * 20000, 4.0 / 16));
    for (int e = 0; e < r.experts; e++)
        CU_ASSERT_DOUBLE_EQUAL(r.popularity[e], 1.0 / 16, 1e-15);
    routing_free(&r);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Zipf popularity by hand, E = 4, s = 1: H = 1 + 1/2 + 1/3 + 1/4 = 25/12, so the
 * sorted popularity is 12/25, 6/25, 4/25, 3/25. And s = 0 is uniform, 1/E each. */
static void test_zipf_popularity(void)
{
    static const double want[] = {12.0 / 25, 6.0 / 25, 4.0 / 25, 3.0 / 25};
    struct config c = make_config(1, 1, 4, 1, 1, 0, DIST_ZIPF, 1.0, false);
    struct routing r;
    double p[4];

    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 3), 0);
    memcpy(p, r.popularity, sizeof(p));
    qsort(p, 4, sizeof(p[0]), cmp_desc);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_DOUBLE_EQUAL(p[i], want[i], 1e-15);
    routing_free(&r);

    c.routing.zipf_s = 0;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 3), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_DOUBLE_EQUAL(r.popularity[i], 0.25, 1e-15);
    routing_free(&r);
}

/* The rank permutation is seeded: over 10 seeds with E = 8 the most popular
 * expert is not always the same one (all ten alike: probability 8^-9). */
static void test_zipf_hot_expert_moves(void)
{
    struct config c = make_config(1, 1, 8, 1, 1, 0, DIST_ZIPF, 1.2, false);
    int first_hot = -1;
    bool moved = false;

    for (uint64_t seed = 0; seed < 10; seed++) {
        struct routing r;
        int hot = 0;
        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, seed), 0);
        for (int e = 1; e < 8; e++)
            if (r.popularity[e] > r.popularity[hot])
                hot = e;
        if (first_hot < 0)
            first_hot = hot;
        moved |= hot != first_hot;
        routing_free(&r);
    }
    CU_ASSERT_TRUE(moved);
}

/* top_k = 1, Zipf(1.2), E = 8: each expert's load is Binomial(T, p_e) with
 * p_e = rank^-1.2 / H(8, 1.2) (checked against the formula after sorting).
 * 2 nodes x 2 GPUs, ep = 2: per group N = 2 * 100000 tokens, within 5 sigma. */
static void test_zipf_top1_frequencies(void)
{
    struct config c = make_config(2, 2, 8, 1, 2, 100000, DIST_ZIPF, 1.2, false);
    struct routing r;
    double p[8], h = 0;

    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 11), 0);
    for (int k = 1; k <= 8; k++)
        h += pow(k, -1.2);
    memcpy(p, r.popularity, sizeof(p));
    qsort(p, 8, sizeof(p[0]), cmp_desc);
    for (int k = 1; k <= 8; k++)
        CU_ASSERT_DOUBLE_EQUAL(p[k - 1], pow(k, -1.2) / h, 1e-15);
    for (int g = 0; g < 2; g++)
        for (int e = 0; e < 8; e++)
            CU_ASSERT(within_5_sigma(r.expert_tokens[(size_t)g * 8 + e], 2 * 100000.0,
                                     r.popularity[e]));
    routing_free(&r);
}

/* top_k > 1 under Zipf, against the enumeration oracle: expert e's load is
 * Binomial(T, P(e among the K)), within 5 sigma, T = 100000 on one GPU.
 * Cases cover both draw paths of routing.c: E = 3, K = 2, s = 3 (the top expert
 * holds 0.861 > 3/4, so the second pick comes from the Fenwick tree); by hand
 * P(e) = p_e + sum_{j != e} p_j p_e / (1 - p_j), which the oracle must match.
 * E = 8, K = 7, s = 1.2 (top_k near experts); E = 8, K = 3, s = 0.8 (rejection). */
static void test_zipf_topk_inclusion(void)
{
    static const struct {
        int experts, top_k;
        double s;
    } cases[] = {{3, 2, 3.0}, {8, 7, 1.2}, {8, 3, 0.8}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = cases[i].experts;
        struct config c = make_config(1, 1, n, cases[i].top_k, 1, 100000, DIST_ZIPF,
                                      cases[i].s, false);
        struct routing r;
        double incl[8];

        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 21 + i), 0);
        inclusion_oracle(r.popularity, n, cases[i].top_k, incl);
        if (n == 3) {
            for (int e = 0; e < 3; e++) {
                double hand = r.popularity[e];
                for (int j = 0; j < 3; j++)
                    if (j != e)
                        hand += r.popularity[j] * r.popularity[e] / (1 - r.popularity[j]);
                CU_ASSERT_DOUBLE_EQUAL(incl[e], hand, 1e-12);
            }
        }
        for (int e = 0; e < n; e++)
            CU_ASSERT(within_5_sigma(r.expert_tokens[e], 100000, incl[e]));
        routing_free(&r);
    }
}

/* Tokens only go to their own EP group: 8 GPUs, ep = 2 (four groups) and ep = 4,
 * pair_tokens[s][d] = 0 whenever s / ep != d / ep; and every pair inside a group
 * is used (uniform, T = 1000: a GPU is missed by all tokens with probability
 * below (1 - 3/8)^1000). */
static void test_stays_in_group(void)
{
    for (int ep = 2; ep <= 4; ep += 2)
        for (int dedup = 0; dedup <= 1; dedup++) {
            struct config c = make_config(2, 4, 8, 3, ep, 1000, DIST_UNIFORM, 0, dedup);
            struct routing r;
            CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 9), 0);
            for (int s = 0; s < 8; s++)
                for (int d = 0; d < 8; d++) {
                    if (s / ep != d / ep) {
                        CU_ASSERT_EQUAL(pair(&r, s, d), 0);
                    } else {
                        CU_ASSERT(pair(&r, s, d) > 0);
                    }
                }
            routing_free(&r);
        }
}

static bool same_routing(const struct routing *a, const struct routing *b)
{
    size_t pairs = (size_t)a->gpus * a->gpus, loads = (size_t)(a->gpus / a->ep) * a->experts;
    return a->gpus == b->gpus &&
           !memcmp(a->pair_tokens, b->pair_tokens, pairs * sizeof(*a->pair_tokens)) &&
           !memcmp(a->expert_tokens, b->expert_tokens, loads * sizeof(*a->expert_tokens)) &&
           !memcmp(a->popularity, b->popularity, (size_t)a->experts * sizeof(*a->popularity));
}

/* Same seed, identical result; another seed, a different pair matrix (8 x 8 sums
 * of ~1000 random choices agreeing entirely by chance is beyond negligible). */
static void test_seed_determinism(void)
{
    for (int dist = DIST_UNIFORM; dist <= DIST_ZIPF; dist++) {
        struct config c = make_config(2, 4, 32, 4, 8, 1000, (enum dist_kind)dist, 1.2, true);
        struct routing a, b, other;

        CU_ASSERT_EQUAL_FATAL(routing_generate(&a, &c, 100), 0);
        CU_ASSERT_EQUAL_FATAL(routing_generate(&b, &c, 100), 0);
        CU_ASSERT_EQUAL_FATAL(routing_generate(&other, &c, 101), 0);
        CU_ASSERT_TRUE(same_routing(&a, &b));
        CU_ASSERT_NOT_EQUAL(memcmp(a.pair_tokens, other.pair_tokens,
                                   64 * sizeof(*a.pair_tokens)), 0);
        routing_free(&a);
        routing_free(&b);
        routing_free(&other);
    }
}

/* A GPU's choices depend only on (seed, its id): group 0 (GPUs 0..3) of a
 * 2-node run equals the whole of a 1-node run with the same seed. */
static void test_per_gpu_streams(void)
{
    for (int dist = DIST_UNIFORM; dist <= DIST_ZIPF; dist++) {
        struct config one = make_config(1, 4, 16, 4, 4, 500, (enum dist_kind)dist, 1.2, true);
        struct config two = make_config(2, 4, 16, 4, 4, 500, (enum dist_kind)dist, 1.2, true);
        struct routing a, b;

        CU_ASSERT_EQUAL_FATAL(routing_generate(&a, &one, 8), 0);
        CU_ASSERT_EQUAL_FATAL(routing_generate(&b, &two, 8), 0);
        for (int s = 0; s < 4; s++)
            for (int d = 0; d < 4; d++)
                CU_ASSERT_EQUAL(pair(&a, s, d), pair(&b, s, d));
        CU_ASSERT_EQUAL(memcmp(a.expert_tokens, b.expert_tokens, 16 * sizeof(uint64_t)), 0);
        routing_free(&a);
        routing_free(&b);
    }
}

/* top_k == experts (8, ep = 4, m = 2 per GPU, T = 100): every token reaches every
 * GPU of its group: T = 100 per pair with dedup, T m = 200 without; every expert
 * gets ep T = 400. Same under Zipf (the set is forced). */
static void test_all_experts(void)
{
    for (int dist = DIST_UNIFORM; dist <= DIST_ZIPF; dist++)
        for (int dedup = 0; dedup <= 1; dedup++) {
            struct config c = make_config(2, 4, 8, 8, 4, 100, (enum dist_kind)dist, 2.0, dedup);
            struct routing r;
            CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 4), 0);
            for (int s = 0; s < 8; s++)
                for (int d = 0; d < 8; d++)
                    CU_ASSERT_EQUAL(pair(&r, s, d), s / 4 != d / 4 ? 0 : dedup ? 100 : 200);
            for (int i = 0; i < 2 * 8; i++)
                CU_ASSERT_EQUAL(r.expert_tokens[i], 400);
            routing_free(&r);
        }
}

/* No tokens: valid, all counts 0. */
static void test_zero_tokens(void)
{
    struct config c = make_config(1, 4, 8, 2, 4, 0, DIST_ZIPF, 1.0, true);
    struct routing r;

    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 1), 0);
    for (int s = 0; s < 4; s++)
        CU_ASSERT_EQUAL(row_sum(&r, s), 0);
    routing_free(&r);
}

/* Each inconsistent config is -EINVAL and leaves the result zeroed (safe to free). */
static void test_bad_config(void)
{
    struct config good = make_config(2, 4, 16, 4, 4, 10, DIST_ZIPF, 1.0, true);
    struct config bad[8];
    int n = 0;

    bad[n] = good, bad[n++].parallel.ep = 3;            /* 8 GPUs not divisible by 3 */
    bad[n] = good, bad[n++].model.experts = 10;         /* 10 experts over ep = 4 */
    bad[n] = good, bad[n++].model.top_k = 0;
    bad[n] = good, bad[n++].model.top_k = 17;           /* more than 16 experts */
    bad[n] = good, bad[n++].routing.tokens_per_gpu = -1;
    bad[n] = good, bad[n++].routing.zipf_s = -0.5;
    bad[n] = good, bad[n++].routing.zipf_s = NAN;
    bad[n] = good, bad[n++].cluster.nodes = 0;
    for (int i = 0; i < n; i++) {
        struct routing r;
        CU_ASSERT_EQUAL(routing_generate(&r, &bad[i], 1), -EINVAL);
        CU_ASSERT_PTR_NULL(r.pair_tokens);
        CU_ASSERT_EQUAL(r.gpus, 0);
        routing_free(&r);
    }
}

/* ---- routing_run: capacity, node limit, placement, trace, metrics ---- */

static uint64_t sum_u64(const uint64_t *v, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

/* log P(L = l) for L ~ Binomial(n, q), by lgamma: exact up to rounding for any n. */
static double log_binom_pmf(int n, int l, double q)
{
    return lgamma(n + 1.0) - lgamma(l + 1.0) - lgamma(n - l + 1.0) + l * log(q) +
           (n - l) * log1p(-q);
}

/* Uniform routing with capacity: a token's top-k set is a uniform k-subset, so expert e's
 * demand in a group of N tokens is Binomial(N, k/E), and the expected drop rate is
 * E * E[max(0, L - C)] / (N k) with C = floor(f N k / E) (routing.h), summed here over the
 * binomial pmf. 128 nodes x 8 GPUs, ep 4 (256 groups), E = 16, top-2, 25 tokens per GPU:
 * N = 100, mean load 12.5, sd 3.3, so every f below drops a different share: C = 6, 12,
 * 15, 25 for f = 0.5, 1, 1.25, 2 (expected 52.1%, 12.5%, 3.6%, 0.002%). Over the 4096
 * (group, expert) loads the simulated rate has sd below 0.3%; it must be within 1%. */
static void test_capacity_drop_rate(void)
{
    const double factors[] = { 0.5, 1.0, 1.25, 2.0 };
    const int experts = 16, k = 2, n = 4 * 25;
    for (int i = 0; i < 4; i++) {
        struct config c = make_config(128, 8, experts, k, 4, 25, DIST_UNIFORM, 0, true);
        c.balance.capacity_factor = factors[i];
        uint64_t cap = (uint64_t)floor(factors[i] * n * k / experts);
        double excess = 0;
        for (int l = (int)cap + 1; l <= n; l++)
            excess += (l - (double)cap) * exp(log_binom_pmf(n, l, (double)k / experts));
        double want = experts * excess / ((double)n * k);
        struct routing r;
        CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 3 + i), 0);
        size_t ge = (size_t)(r.gpus / r.ep) * r.experts;
        double got = (double)sum_u64(r.dropped, ge) / (double)sum_u64(r.expert_demand, ge);
        CU_ASSERT_DOUBLE_EQUAL(got, want, 0.01);
        CU_ASSERT_DOUBLE_EQUAL(r.drop_rate, got, 1e-15);
        for (size_t x = 0; x < ge; x++) {
            CU_ASSERT(r.expert_tokens[x] <= cap);
            CU_ASSERT_EQUAL(r.expert_tokens[x] + r.dropped[x], r.expert_demand[x]);
        }
        routing_free(&r);
    }
}

/* Priority by source GPU: one expert per GPU (E = ep = 4), top-2, 1000 tokens per GPU, a
 * bias of +10 makes expert 0 every token's first choice. A = 4 * 1000 * 2 = 8000, f = 1:
 * C = 2000, so expert 0 keeps sources 0 and 1 whole and drops sources 2 and 3 (2000).
 * The second choices spread over experts 1-3, about 1333 each: none dropped. Without dedup
 * pair_tokens[s][0] is what s keeps at expert 0: 1000, 1000, 0, 0. */
static void test_capacity_source_order(void)
{
    struct config c = make_config(1, 4, 4, 2, 4, 1000, DIST_UNIFORM, 0, false);
    double bias[4] = { 10, 0, 0, 0 };
    c.balance.capacity_factor = 1.0;
    struct routing r;
    struct routing_in in = { .c = &c, .bias = bias, .seed = 7 };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.expert_demand[0], 4000);
    CU_ASSERT_EQUAL(r.expert_tokens[0], 2000);
    CU_ASSERT_EQUAL(r.dropped[0], 2000);
    for (int e = 1; e < 4; e++)
        CU_ASSERT_EQUAL(r.dropped[e], 0);
    CU_ASSERT_EQUAL(pair(&r, 0, 0), 1000);
    CU_ASSERT_EQUAL(pair(&r, 1, 0), 1000);
    CU_ASSERT_EQUAL(pair(&r, 2, 0), 0);
    CU_ASSERT_EQUAL(pair(&r, 3, 0), 0);
    CU_ASSERT_DOUBLE_EQUAL(r.drop_rate, 2000.0 / 8000, 1e-15);
    routing_free(&r);
}

/* Priority by choice rank (GShard): E = ep = 4, top-2, uniform, T = 10000 tokens per GPU,
 * f = 0.5: C = 10000, the mean number of first choices per expert (Binomial(40000, 1/4),
 * sd 87). First choices are kept before second ones, so each source keeps about its own
 * first choices at each expert, T/4 = 2500, off by at most the excess of first choices
 * over C (5 sd = 433) either way. Keeping by token order instead would let sources 0 and 1
 * keep 5000 each and sources 2 and 3 nothing. So every |kept - 2500| < T/8 = 1250. */
static void test_capacity_rank_order(void)
{
    struct config c = make_config(1, 4, 4, 2, 4, 10000, DIST_UNIFORM, 0, false);
    c.balance.capacity_factor = 0.5;
    struct routing r;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 11), 0);
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 4; d++)
            CU_ASSERT(fabs((double)pair(&r, s, d) - 2500) < 1250);
    routing_free(&r);
}

/* Zipf draws come in priority order already (no extra draws with capacity), so a capacity
 * no expert reaches (f = 1e6: C = 1e6 N k / E) gives the dropless counts exactly. */
static void test_capacity_unreached(void)
{
    struct config c = make_config(2, 4, 16, 4, 8, 1000, DIST_ZIPF, 1.2, true);
    struct routing a, b;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&a, &c, 13), 0);
    c.balance.capacity_factor = 1e6;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&b, &c, 13), 0);
    CU_ASSERT_TRUE(same_routing(&a, &b));
    CU_ASSERT_EQUAL(b.drop_rate, 0.0);
    routing_free(&a);
    routing_free(&b);
}

/* Node limit M = 2 on 4 nodes of 4 GPUs (ep 16, E = 32, top-4, sigmoid): no token reaches
 * more than 2 nodes (mean and maximum), and experts per node per token = 4 / nodes per
 * token (kept / node visits, dropless). M = 4 = every node of the group picks exactly what
 * the unlimited router picks on the same streams (zero bias: the scored path both times). */
static void test_node_limited_run(void)
{
    struct config c = make_config(4, 4, 32, 4, 16, 2000, DIST_ZIPF, 0.8, true);
    double zero[32] = { 0 };
    c.routing.scoring = SCORE_SIGMOID;
    c.routing.max_nodes = 2;
    struct routing r, all, free_r;
    struct routing_in in = { .c = &c, .seed = 17 };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT(r.nodes_per_token <= 2.0 && r.nodes_per_token > 1.0);
    CU_ASSERT_EQUAL(r.nodes_per_token_max, 2);
    CU_ASSERT_DOUBLE_EQUAL(r.experts_per_node_per_token, 4 / r.nodes_per_token, 1e-12);
    c.routing.max_nodes = 4;
    CU_ASSERT_EQUAL_FATAL(routing_run(&all, &in), 0);
    c.routing.max_nodes = 0;
    in.bias = zero;
    CU_ASSERT_EQUAL_FATAL(routing_run(&free_r, &in), 0);
    CU_ASSERT_TRUE(same_routing(&all, &free_r));
    CU_ASSERT(free_r.nodes_per_token_max > 2);
    routing_free(&r);
    routing_free(&all);
    routing_free(&free_r);
}

/* Share of replica i (of nr) of the n kept assignments from source s: the j < n with
 * (s + j) mod nr = i (routing.h, "Replicas"). */
static uint64_t replica_share(uint64_t n, int s, int i, int nr)
{
    uint64_t hits = 0;
    for (uint64_t j = 0; j < n; j++)
        hits += (uint64_t)((s + j) % (uint64_t)nr) == (uint64_t)i;
    return hits;
}

/* A hand-made map (ep 2, 3 slots per GPU): GPU 0 holds experts 0, 1, 2 and GPU 1 holds
 * 3, 0, 1, so experts 0 and 1 have replicas on both GPUs (slots 0 and 4, 1 and 5). */
static int map_slot_expert[] = { 0, 1, 2, 3, 0, 1 }, map_replica0[] = { 0, 2, 4, 5, 6 };
static int map_replica_slot[] = { 0, 4, 1, 5, 2, 3 };

static struct placement replica_map(void)
{
    return (struct placement){ .experts = 4, .ep = 2, .gpus_per_node = 2, .slots_per_gpu = 3,
                               .nslots = 6, .slot_expert = map_slot_expert,
                               .replica0 = map_replica0, .replica_slot = map_replica_slot };
}

/* The map above on 2 nodes of 2 GPUs (two groups), E = 4, top-2, 1001 tokens per GPU,
 * no dedup. The slot and pair counts follow from each source's demand by the split rule,
 * counted here token by token; gpu_tokens add up to every kept assignment, 4 * 1001 * 2. */
static void test_replicas_split(void)
{
    const int *replica0 = map_replica0, *replica_slot = map_replica_slot;
    struct placement pl = replica_map();
    struct config c = make_config(2, 2, 4, 2, 2, 1001, DIST_UNIFORM, 0, false);
    struct routing r;
    struct routing_in in = { .c = &c, .pl = &pl, .seed = 19 };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.nslots, 6);
    for (int g = 0; g < 2; g++) {
        uint64_t slots[6] = { 0 };
        for (int s = 2 * g; s < 2 * g + 2; s++) {
            uint64_t to[2] = { 0 };
            for (int e = 0; e < 4; e++) {
                int nr = replica0[e + 1] - replica0[e];
                for (int i = 0; i < nr; i++) {
                    int x = replica_slot[replica0[e] + i];
                    uint64_t n = replica_share(r.src_demand[(size_t)s * 4 + e], s, i, nr);
                    slots[x] += n;
                    to[x / 3] += n;
                }
            }
            CU_ASSERT_EQUAL(pair(&r, s, 2 * g), to[0]);
            CU_ASSERT_EQUAL(pair(&r, s, 2 * g + 1), to[1]);
        }
        CU_ASSERT_EQUAL(memcmp(r.slot_tokens + 6 * g, slots, sizeof(slots)), 0);
    }
    CU_ASSERT_EQUAL(sum_u64(r.gpu_tokens, 4), 4 * 1001 * 2);
    CU_ASSERT_EQUAL(r.gpu_tokens[1], r.slot_tokens[3] + r.slot_tokens[4] + r.slot_tokens[5]);
    routing_free(&r);
    pl.experts = 5;                              /* does not match the model */
    CU_ASSERT_EQUAL(routing_run(&r, &in), -EINVAL);
}

/* Node limit with replicas (routing.h): experts are grouped by home node (GPU e * ep / E:
 * experts 0, 1 on node 0 and 2, 3 on node 1 of 2 nodes of 2 GPUs, ep 4, 2 slots per GPU),
 * whatever the placement; top-2 of M = 1 node (q = 2), uniform, 2000 tokens per GPU.
 * A: replicas stay home (GPU 0 {0,1}, 1 {1,0}, 2 {2,3}, 3 {3,2}): every token reaches one
 * node, and expert 0's kept assignments alternate between its slots 0 and 3 by the split
 * rule (both on the token's node). D: expert 0 lives only on node 1 and expert 1 only on
 * node 0 (GPU 0 {1,2}, 1 {1,3}, 2 {0,2}, 3 {0,3}): a token whose node is 0 takes experts 0
 * and 1, and expert 0 has no replica on node 0, so any replica serves: 2 nodes. A token
 * whose node is 1 stays there. The two nodes win equally often (the rule is symmetric), so
 * nodes per token = 1 + Binomial(8000, 1/2) / 8000, within 5 sigma = 0.028. */
static void test_node_limit_replicas(void)
{
    int home[] = { 0, 1, 1, 0, 2, 3, 3, 2 }, home_r0[] = { 0, 2, 4, 6, 8 };
    int home_rs[] = { 0, 3, 1, 2, 4, 7, 5, 6 };
    int away[] = { 1, 2, 1, 3, 0, 2, 0, 3 }, away_r0[] = { 0, 2, 4, 6, 8 };
    int away_rs[] = { 4, 6, 0, 2, 1, 5, 3, 7 };
    struct placement a = { .experts = 4, .ep = 4, .gpus_per_node = 2, .slots_per_gpu = 2,
                           .nslots = 8, .slot_expert = home, .replica0 = home_r0,
                           .replica_slot = home_rs };
    struct placement d = a;
    d.slot_expert = away;
    d.replica0 = away_r0;
    d.replica_slot = away_rs;
    struct config c = make_config(2, 2, 4, 2, 4, 2000, DIST_UNIFORM, 0, true);
    c.routing.max_nodes = 1;
    struct routing r;
    struct routing_in in = { .c = &c, .pl = &a, .seed = 37 };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.nodes_per_token, 1.0);
    CU_ASSERT_EQUAL(r.nodes_per_token_max, 1);
    uint64_t slot0 = 0, slot3 = 0;
    for (int s = 0; s < 4; s++) {
        slot0 += replica_share(r.src_demand[(size_t)s * 4], s, 0, 2);
        slot3 += replica_share(r.src_demand[(size_t)s * 4], s, 1, 2);
    }
    CU_ASSERT_EQUAL(r.slot_tokens[0], slot0);
    CU_ASSERT_EQUAL(r.slot_tokens[3], slot3);
    routing_free(&r);
    in.pl = &d;
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.nodes_per_token_max, 2);
    CU_ASSERT_DOUBLE_EQUAL(r.nodes_per_token, 1.5, 5 * sqrt(0.25 / 8000));
    routing_free(&r);
}

/* Writes t to a fresh temporary file, its name into path[32]. */
static int write_trace(char *path, const struct rtrace *t)
{
    strcpy(path, "/tmp/test_routing_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -errno;
    }
    int rc = rtrace_write(f, t);
    return fclose(f) || rc ? -EIO : 0;
}

/* Trace replay: the per-source demand of a routing run (zipf, no dedup), written as a trace
 * and read back, replays to the same pair counts and so to byte-identical dispatch and
 * combine matrices (traffic_moe). A trace has no per-token sets: the token metrics are NaN. */
static void test_trace_roundtrip(void)
{
    struct config c = make_config(2, 4, 16, 4, 8, 500, DIST_ZIPF, 1.2, false);
    struct routing r, back;
    struct rtrace t, loaded;
    struct rtrace_err err;
    char path[32];
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 23), 0);
    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 1, 1, 8, 16), 0);
    memcpy(t.tokens, r.src_demand, 8 * 16 * sizeof(*t.tokens));
    CU_ASSERT_EQUAL_FATAL(write_trace(path, &t), 0);
    CU_ASSERT_EQUAL_FATAL(rtrace_load(&loaded, path, 8, 16, &err), 0);
    remove(path);
    c.routing.distribution = DIST_TRACE;
    struct routing_in in = { .c = &c, .seed = 99, .trace = &loaded };
    CU_ASSERT_EQUAL_FATAL(routing_run(&back, &in), 0);
    CU_ASSERT_EQUAL(memcmp(r.pair_tokens, back.pair_tokens, 64 * sizeof(uint64_t)), 0);
    CU_ASSERT_EQUAL(memcmp(r.expert_tokens, back.expert_tokens, 16 * sizeof(uint64_t)), 0);
    CU_ASSERT(isnan(back.nodes_per_token) && isnan(back.experts_per_node_per_token));
    CU_ASSERT_EQUAL(back.nodes_per_token_max, -1);
    struct traffic d1, c1, d2, c2;
    c.model.hidden = 1024;
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&d1, &c1, &r, &c), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&d2, &c2, &back, &c), 0);
    CU_ASSERT_EQUAL(memcmp(d1.bytes, d2.bytes, 64 * sizeof(uint64_t)), 0);
    CU_ASSERT_EQUAL(memcmp(c1.bytes, c2.bytes, 64 * sizeof(uint64_t)), 0);
    traffic_free(&d1);
    traffic_free(&c1);
    traffic_free(&d2);
    traffic_free(&c2);
    routing_free(&r);
    routing_free(&back);
    rtrace_free(&t);
    rtrace_free(&loaded);
}

/* Capacity on a trace, by hand: 2 GPUs (one group), E = 2, top-1; source 0 sent 6 to
 * expert 0 and 2 to expert 1, source 1 sent 4 to expert 0. A = 12, f = 1: C = 6. Expert 0
 * keeps source 0's 6 and drops source 1's 4; expert 1 keeps 2. A missing trace, a node
 * limit, or a (layer, iteration) the trace lacks is -EINVAL. */
static void test_trace_capacity(void)
{
    struct config c = make_config(1, 2, 2, 1, 2, 0, DIST_TRACE, 0, true);
    struct rtrace t;
    struct routing r;
    c.balance.capacity_factor = 1.0;
    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 1, 1, 2, 2), 0);
    rtrace_at(&t, 0, 0, 0)[0] = 6;
    rtrace_at(&t, 0, 0, 0)[1] = 2;
    rtrace_at(&t, 0, 0, 1)[0] = 4;
    struct routing_in in = { .c = &c, .trace = &t };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.expert_tokens[0], 6);
    CU_ASSERT_EQUAL(r.dropped[0], 4);
    CU_ASSERT_EQUAL(r.expert_tokens[1], 2);
    CU_ASSERT_EQUAL(pair(&r, 0, 0), 6);
    CU_ASSERT_EQUAL(pair(&r, 0, 1), 2);
    CU_ASSERT_EQUAL(pair(&r, 1, 0), 0);
    CU_ASSERT_EQUAL(pair(&r, 1, 1), 0);
    CU_ASSERT_DOUBLE_EQUAL(r.drop_rate, 4.0 / 12, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.popularity[0], 10.0 / 12, 1e-15);
    routing_free(&r);
    in.iteration = 1;
    CU_ASSERT_EQUAL(routing_run(&r, &in), -EINVAL);
    in.iteration = 0;
    c.routing.max_nodes = 1;
    CU_ASSERT_EQUAL(routing_run(&r, &in), -EINVAL);
    c.routing.max_nodes = 0;
    in.trace = NULL;
    CU_ASSERT_EQUAL(routing_run(&r, &in), -EINVAL);
    rtrace_free(&t);
}

/* The metrics by hand: 2 nodes of 2 GPUs, ep 4, one expert per GPU, top-2, 100 tokens per
 * GPU; biases of +10 send every token to experts 0 (GPU 0, node 0) and 2 (GPU 2, node 1).
 * Demand per expert 400, 0, 400, 0 (mean 200): expert and GPU max/mean 2; nodes 400 and
 * 400: 1; every token reaches 2 nodes with 1 expert on each; nothing dropped. */
static void test_metrics_by_hand(void)
{
    struct config c = make_config(2, 2, 4, 2, 4, 100, DIST_UNIFORM, 0, true);
    double bias[4] = { 10, 0, 10, 0 };
    struct routing r;
    struct routing_in in = { .c = &c, .bias = bias, .seed = 29 };
    CU_ASSERT_EQUAL_FATAL(routing_run(&r, &in), 0);
    CU_ASSERT_EQUAL(r.gpu_tokens[0], 400);
    CU_ASSERT_EQUAL(r.gpu_tokens[1], 0);
    CU_ASSERT_EQUAL(r.gpu_tokens[2], 400);
    CU_ASSERT_DOUBLE_EQUAL(r.expert_load_max_over_mean, 2.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.gpu_load_max_over_mean, 2.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.node_load_max_over_mean, 1.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.nodes_per_token, 2.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(r.experts_per_node_per_token, 1.0, 1e-15);
    CU_ASSERT_EQUAL(r.nodes_per_token_max, 2);
    CU_ASSERT_EQUAL(r.drop_rate, 0.0);
    for (int s = 0; s < 4; s++) {
        CU_ASSERT_EQUAL(pair(&r, s, 0), 100);
        CU_ASSERT_EQUAL(pair(&r, s, 2), 100);
    }
    routing_free(&r);
}

/* Streams: layer 0, iteration 0 is routing_generate; another iteration or layer draws
 * other tokens (8 x 8 pair sums agreeing by chance: negligible); the same inputs on the
 * scored and capacity paths give the same result. */
static void test_run_streams(void)
{
    struct config c = make_config(2, 4, 32, 4, 8, 1000, DIST_ZIPF, 1.2, true);
    struct routing a, b, it1, l1;
    struct routing_in in = { .c = &c, .seed = 31 };
    CU_ASSERT_EQUAL_FATAL(routing_generate(&a, &c, 31), 0);
    CU_ASSERT_EQUAL_FATAL(routing_run(&b, &in), 0);
    CU_ASSERT_TRUE(same_routing(&a, &b));
    in.iteration = 1;
    CU_ASSERT_EQUAL_FATAL(routing_run(&it1, &in), 0);
    in.iteration = 0;
    in.layer = 1;
    CU_ASSERT_EQUAL_FATAL(routing_run(&l1, &in), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a.pair_tokens, it1.pair_tokens, 64 * sizeof(uint64_t)), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a.pair_tokens, l1.pair_tokens, 64 * sizeof(uint64_t)), 0);
    CU_ASSERT_EQUAL(memcmp(a.popularity, l1.popularity, 32 * sizeof(double)), 0);
    routing_free(&a);
    routing_free(&b);
    routing_free(&it1);
    routing_free(&l1);
    in.layer = GATING_INDEX_MAX;
    CU_ASSERT_EQUAL(routing_run(&a, &in), -EINVAL);

    double bias[32] = { 0 };
    bias[3] = 0.05;
    c.routing.scoring = SCORE_SIGMOID;
    c.routing.max_nodes = 1;
    c.balance.capacity_factor = 1.1;
    in.layer = 0;
    in.bias = bias;
    CU_ASSERT_EQUAL_FATAL(routing_run(&a, &in), 0);
    CU_ASSERT_EQUAL_FATAL(routing_run(&b, &in), 0);
    CU_ASSERT_TRUE(same_routing(&a, &b));
    CU_ASSERT_EQUAL(memcmp(a.dropped, b.dropped, 32 * sizeof(uint64_t)), 0);
    CU_ASSERT_EQUAL(memcmp(a.slot_tokens, b.slot_tokens, 32 * sizeof(uint64_t)), 0);
    routing_free(&a);
    routing_free(&b);
}

/* Every count of a and b, slots and drops included. */
static bool same_counts(const struct routing *a, const struct routing *b)
{
    size_t g = (size_t)(a->gpus / a->ep);
    return same_routing(a, b) && a->nslots == b->nslots &&
           !memcmp(a->src_node_tokens, b->src_node_tokens,
                   (size_t)a->gpus * a->nodes * sizeof(uint64_t)) &&
           !memcmp(a->src_demand, b->src_demand, (size_t)a->gpus * a->experts * sizeof(uint64_t)) &&
           !memcmp(a->dropped, b->dropped, g * a->experts * sizeof(uint64_t)) &&
           !memcmp(a->slot_tokens, b->slot_tokens, g * a->nslots * sizeof(uint64_t)) &&
           a->nodes_per_token == b->nodes_per_token;
}

/* routing_picks (routing.h): a run on EP 4 without placement keeps its picks; a run of
 * the same draws on EP 2 with replica_map's replicas replays them and counts
 * exactly what it counts drawing them itself (the oracle), dropless and with capacity.
 * The replay is real: source 0's kept picks rewritten to experts {0, 1} come back as its
 * demand (1001 each). Another seed replays nothing; a node limit keeps nothing. */
static void test_picks_replayed(void)
{
    struct placement pl = replica_map();
    for (int capped = 0; capped < 2; capped++) {
        struct config c = make_config(2, 2, 4, 2, 2, 1001, DIST_ZIPF, 1.0, true);
        struct config c4 = c;
        c4.parallel.ep = 4;
        c.balance.capacity_factor = c4.balance.capacity_factor = capped ? 1.1 : 0;
        struct routing_picks picks = { 0 };
        struct routing first, want, got;
        struct routing_in in4 = { .c = &c4, .seed = 5, .layer = 3, .picks = &picks };
        struct routing_in in = { .c = &c, .pl = &pl, .seed = 5, .layer = 3 };
        CU_ASSERT_EQUAL_FATAL(routing_run(&first, &in4), 0);
        CU_ASSERT_TRUE(picks.filled);
        CU_ASSERT_EQUAL(picks.n, 4u * 1001 * 2);
        CU_ASSERT_EQUAL_FATAL(routing_run(&want, &in), 0);
        in.picks = &picks;
        CU_ASSERT_EQUAL_FATAL(routing_run(&got, &in), 0);
        CU_ASSERT_TRUE(same_counts(&want, &got));
        routing_free(&got);
        for (size_t i = 0; i < 1001 * 2; i++)
            picks.chosen[i] = (int)(i % 2);
        CU_ASSERT_EQUAL_FATAL(routing_run(&got, &in), 0);
        CU_ASSERT_EQUAL(got.src_demand[0], 1001);
        CU_ASSERT_EQUAL(got.src_demand[1], 1001);
        CU_ASSERT_EQUAL(got.src_demand[2] + got.src_demand[3], 0);
        routing_free(&got);
        routing_free(&want);
        in.seed = 6;
        in.picks = NULL;
        CU_ASSERT_EQUAL_FATAL(routing_run(&want, &in), 0);
        in.picks = &picks;
        CU_ASSERT_EQUAL_FATAL(routing_run(&got, &in), 0);
        CU_ASSERT_TRUE(same_counts(&want, &got));
        routing_free(&got);
        routing_free(&want);
        routing_free(&first);
        routing_picks_free(&picks);
        c4.routing.max_nodes = 1;
        CU_ASSERT_EQUAL_FATAL(routing_run(&first, &in4), 0);
        CU_ASSERT_FALSE(picks.filled);
        CU_ASSERT_PTR_NULL(picks.chosen);
        routing_free(&first);
    }
}

/* DeepSeek-V3's update by hand: demand 5, 1, 3, 3 over two groups (mean 3): the
 * overloaded expert 0 loses gamma, the underloaded expert 1 gains it, 2 and 3 stay. */
static void test_bias_update(void)
{
    uint64_t demand[8] = { 2, 1, 1, 2, 3, 0, 2, 1 };
    struct routing r = { .gpus = 4, .ep = 2, .experts = 4, .expert_demand = demand };
    double bias[4] = { 0.5, 0.5, 0.5, 0.5 };
    routing_bias_update(bias, &r, 0.001);
    CU_ASSERT_DOUBLE_EQUAL(bias[0], 0.499, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(bias[1], 0.501, 1e-15);
    CU_ASSERT_EQUAL(bias[2], 0.5);
    CU_ASSERT_EQUAL(bias[3], 0.5);
}

int main(void)
{
    static const struct cu_test tests[] = {
        {"rows sum to T*K without dedup", test_rows_without_dedup},
        {"dedup: per-GPU tokens T(1 - C(E-m,K)/C(E,K))", test_dedup_expected_per_gpu},
        {"uniform expert load T*K/E", test_expert_load_uniform},
        {"zipf popularity by hand", test_zipf_popularity},
        {"zipf hot expert is seeded", test_zipf_hot_expert_moves},
        {"zipf top-1 frequencies", test_zipf_top1_frequencies},
        {"zipf top-k inclusion vs enumeration", test_zipf_topk_inclusion},
        {"traffic stays in the EP group", test_stays_in_group},
        {"same seed same result", test_seed_determinism},
        {"per-GPU streams", test_per_gpu_streams},
        {"top_k == experts", test_all_experts},
        {"zero tokens", test_zero_tokens},
        {"bad config is -EINVAL", test_bad_config},
        {"capacity: drop rate vs the binomial law", test_capacity_drop_rate},
        {"capacity: priority by source GPU", test_capacity_source_order},
        {"capacity: first choices before second", test_capacity_rank_order},
        {"capacity nobody reaches = dropless", test_capacity_unreached},
        {"node-limited routing", test_node_limited_run},
        {"replicas split evenly", test_replicas_split},
        {"node limit with replicas: home nodes", test_node_limit_replicas},
        {"trace round trip", test_trace_roundtrip},
        {"trace with capacity by hand", test_trace_capacity},
        {"metrics by hand", test_metrics_by_hand},
        {"streams per layer and iteration", test_run_streams},
        {"picks kept and replayed", test_picks_replayed},
        {"aux-loss-free bias update", test_bias_update},
    };
    return cu_run("routing", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
