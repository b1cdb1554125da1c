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

#include "config.h"
#include "cu_run.h"
#include "routing.h"

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

/* Oracle for successive weighted draws without replacement, by exact enumeration
 * over subsets: P(first |S| picks are S) satisfies P({}) = 1 and
 * P(S + e) += P(S) p_e / (1 - p(S)); then P(e among the K) = sum of P(S) over
 * |S| = K, e in S. E <= 12. */
static void inclusion_oracle(const double *p, int experts, int k, double *incl)
{
    size_t n = (size_t)1 << experts;
    double *prob = calloc(n, sizeof(*prob));

    CU_ASSERT_PTR_NOT_NULL_FATAL(prob);
    prob[0] = 1;
    memset(incl, 0, (size_t)experts * sizeof(*incl));
    for (size_t set = 0; set < n; set++) {
        double mass = 0;
        int size = 0;
        for (size_t b = set; b; b &= b - 1)
            size++;
        if (prob[set] == 0)
            continue;
        if (size == k) {
            for (int e = 0; e < experts; e++)
                if (set >> e & 1)
                    incl[e] += prob[set];
            continue;
        }
        for (int e = 0; e < experts; e++)
            if (set >> e & 1)
                mass += p[e];
        for (int e = 0; e < experts; e++)
            if (!(set >> e & 1))
                prob[set | (size_t)1 << e] += prob[set] * p[e] / (1 - mass);
    }
    free(prob);
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
    };
    return cu_run("routing", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
