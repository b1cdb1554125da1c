/* rng.c: xoshiro256** and splitmix64, written from the algorithm descriptions in
 * Blackman & Vigna, "Scrambled Linear Pseudorandom Number Generators" (ACM TOMS
 * 47(4), 2021), and Steele, Lea & Flood, "Fast Splittable Pseudorandom Number
 * Generators" (OOPSLA 2014) for splitmix64, with the output mix Vigna's
 * splitmix64.c uses (D. Stafford's "Mix13", as in Java's SplittableRandom). */
#include "rng.h"

/* splitmix64 increment: 2^64 / golden ratio, odd. */
#define SPLITMIX_GAMMA UINT64_C(0x9e3779b97f4a7c15)

/* splitmix64 output function: a bijection of 64-bit words. */
static uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t splitmix64_next(uint64_t *x)
{
    *x += SPLITMIX_GAMMA;
    return splitmix64_mix(*x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Four consecutive splitmix64 outputs come from four distinct counter values
 * through a bijection, so at most one is zero: the state is never all zero. */
void rng_seed(struct rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64_next(&x);
}

/* For a fixed seed the start is a bijection of `stream` (mix, then xor with a
 * constant), so distinct streams get distinct splitmix64 starts. The stream is
 * offset by a second odd constant so that stream 0 is not rng_seed(seed). */
void rng_seed_stream(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = splitmix64_mix(seed + SPLITMIX_GAMMA) ^
                 splitmix64_mix(stream + UINT64_C(0x632be59bd9b4e019));
    rng_seed(r, x);
}

/* xoshiro256**: scrambler rotl(s1 * 5, 7) * 9, linear engine xoshiro256. */
uint64_t rng_u64(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_double(struct rng *r)
{
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

/* 64 x 64 -> 128-bit product, as high and low words. */
static void mul128(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
#ifdef __SIZEOF_INT128__
    __extension__ unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    *lo = (uint64_t)p;
#else
    uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

/* Lemire's method: floor(x * n / 2^64) is uniform on [0, n) once the low word
 * is at least 2^64 mod n (those x are rejected, which removes the bias). */
uint64_t rng_below(struct rng *r, uint64_t n)
{
    uint64_t hi, lo;

    if (n == 0)
        return 0;
    mul128(rng_u64(r), n, &hi, &lo);
    if (lo < n) {
        uint64_t threshold = (0 - n) % n;  /* 2^64 mod n */
        while (lo < threshold)
            mul128(rng_u64(r), n, &hi, &lo);
    }
    return hi;
}
