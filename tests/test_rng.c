/* test_rng.c: CUnit suite for sim/rng.c (xoshiro256**, splitmix64 seeding,
 * unbiased bounded integers). Statistical checks use a 5-sigma bound on a fixed
 * seed: a correct generator fails one with probability below 6e-7. */
#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cu_run.h"
#include "rng.h"

/* The reference outputs of xoshiro256** from state {1, 2, 3, 4}, as published
 * with the reference xoshiro256starstar.c (used by e.g. Rust rand_xoshiro's tests).
 * The first two by hand: rotl(2 * 5, 7) * 9 = 1280 * 9 = 11520; the update gives
 * s[1] = 0, so the second is rotl(0, 7) * 9 = 0. */
static void test_reference_vector(void)
{
    static const uint64_t want[] = {11520u, 0u, 1509978240u, UINT64_C(1215971899390074240),
                                    UINT64_C(1216172134540287360), UINT64_C(607988272756665600)};
    struct rng r = {{1, 2, 3, 4}};

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        CU_ASSERT_EQUAL(rng_u64(&r), want[i]);
}

/* rng_seed(0) takes the first four splitmix64 outputs from state 0, whose published
 * values (Vigna's splitmix64.c) are e220a8397b1dcdaf 6e789e6aa1b965f4
 * 06c45d188009454f f88bb8a8724c81ec. */
static void test_seed_is_splitmix64(void)
{
    struct rng r;

    rng_seed(&r, 0);
    CU_ASSERT_EQUAL(r.s[0], UINT64_C(0xe220a8397b1dcdaf));
    CU_ASSERT_EQUAL(r.s[1], UINT64_C(0x6e789e6aa1b965f4));
    CU_ASSERT_EQUAL(r.s[2], UINT64_C(0x06c45d188009454f));
    CU_ASSERT_EQUAL(r.s[3], UINT64_C(0xf88bb8a8724c81ec));
}

/* Same seed, same sequence; a different seed, a different one (the chance that
 * 100 outputs agree by accident is 2^-6400). */
static void test_determinism(void)
{
    struct rng a, b, c;
    int same_ab = 1, same_ac = 1;

    rng_seed(&a, 12345);
    rng_seed(&b, 12345);
    rng_seed(&c, 12346);
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_u64(&a), y = rng_u64(&b), z = rng_u64(&c);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CU_ASSERT_TRUE(same_ab);
    CU_ASSERT_FALSE(same_ac);

    rng_seed_stream(&a, 7, 3);
    rng_seed_stream(&b, 7, 3);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(rng_u64(&a), rng_u64(&b));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* 1000 streams of one seed, and stream 0 of 1000 seeds: all first outputs
 * distinct. By the birthday bound, 1000 independent 64-bit words collide with
 * probability about 1000^2 / 2^65 = 3e-14. Also stream 0 is not rng_seed(seed). */
static void test_streams_differ(void)
{
    enum { N = 1000 };
    uint64_t first[2 * N];
    struct rng r, plain;

    for (int i = 0; i < N; i++) {
        rng_seed_stream(&r, 42, (uint64_t)i);
        first[i] = rng_u64(&r);
        rng_seed_stream(&r, (uint64_t)i + 1000, 0);
        first[N + i] = rng_u64(&r);
    }
    qsort(first, 2 * N, sizeof(first[0]), cmp_u64);
    for (int i = 1; i < 2 * N; i++)
        CU_ASSERT_NOT_EQUAL(first[i - 1], first[i]);

    rng_seed_stream(&r, 42, 0);
    rng_seed(&plain, 42);
    CU_ASSERT_NOT_EQUAL(rng_u64(&r), rng_u64(&plain));
}

/* rng_below(n) is in [0, n); n = 1 and n = 0 give 0; n = 2^64 - 1 stays below. */
static void test_below_range(void)
{
    struct rng r;
    int ok7 = 1, ok_max = 1;

    rng_seed(&r, 1);
    for (int i = 0; i < 1000; i++) {
        CU_ASSERT_EQUAL(rng_below(&r, 1), 0);
        CU_ASSERT_EQUAL(rng_below(&r, 0), 0);
        ok7 &= rng_below(&r, 7) < 7;
        ok_max &= rng_below(&r, UINT64_MAX) < UINT64_MAX;
    }
    CU_ASSERT_TRUE(ok7);
    CU_ASSERT_TRUE(ok_max);
}

/* N = 10^6 draws of rng_below(10): each count is Binomial(N, 1/10), mean 10^5,
 * sigma = sqrt(N * 0.1 * 0.9) = 300; each must be within 5 sigma = 1500. */
static void test_below_uniform(void)
{
    enum { N = 1000000, B = 10 };
    uint64_t count[B] = {0};
    double mean = (double)N / B, sigma = sqrt(N * 0.1 * 0.9);
    struct rng r;

    rng_seed(&r, 2024);
    for (int i = 0; i < N; i++)
        count[rng_below(&r, B)]++;
    for (int b = 0; b < B; b++)
        CU_ASSERT(fabs((double)count[b] - mean) <= 5 * sigma);
}

/* No modulo bias: for n = 3 * 2^62, P(x < 2^62) = 1/3 exactly, while x mod n of a
 * 64-bit word would give 1/2 (both [0, 2^62) and [3 * 2^62, 2^64) land there).
 * N = 10^5: sigma = sqrt(N * 1/3 * 2/3) = 149; within 5 sigma of N/3, and 1/2 is
 * 112 sigma away. */
static void test_below_unbiased(void)
{
    enum { N = 100000 };
    uint64_t n = UINT64_C(3) << 62, low = 0;
    double sigma = sqrt(N * (1.0 / 3) * (2.0 / 3));
    struct rng r;

    rng_seed(&r, 99);
    for (int i = 0; i < N; i++)
        low += rng_below(&r, n) < (UINT64_C(1) << 62);
    CU_ASSERT(fabs((double)low - N / 3.0) <= 5 * sigma);
}

/* rng_double: in [0, 1), a multiple of 2^-53; the mean of N = 10^6 draws of
 * U[0, 1) has sigma = sqrt(1/12 / N) = 2.9e-4, so within 5 sigma of 1/2. */
static void test_double(void)
{
    enum { N = 1000000 };
    double sum = 0;
    int in_range = 1, on_grid = 1;
    struct rng r;

    rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        double x = rng_double(&r), k = x * 0x1p53;
        in_range &= x >= 0 && x < 1;
        on_grid &= k == floor(k);
        sum += x;
    }
    CU_ASSERT_TRUE(in_range);
    CU_ASSERT_TRUE(on_grid);
    CU_ASSERT(fabs(sum / N - 0.5) <= 5 * sqrt(1.0 / 12 / N));
}

int main(void)
{
    static const struct cu_test tests[] = {
        {"xoshiro256** reference vector", test_reference_vector},
        {"seeding is splitmix64", test_seed_is_splitmix64},
        {"same seed same sequence", test_determinism},
        {"streams differ", test_streams_differ},
        {"rng_below range", test_below_range},
        {"rng_below uniform (5 sigma)", test_below_uniform},
        {"rng_below unbiased for n = 3 * 2^62", test_below_unbiased},
        {"rng_double in [0,1), mean 1/2", test_double},
    };
    return cu_run("rng", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
