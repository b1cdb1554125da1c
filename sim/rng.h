/* rng.h: xoshiro256** pseudo-random numbers, seeded through splitmix64.
 *
 * Generator: D. Blackman and S. Vigna, "Scrambled Linear Pseudorandom Number
 * Generators", ACM TOMS 47(4), 2021; reference code at https://prng.di.unimi.it/.
 * Period 2^256 - 1; the state is never all zero after seeding.
 * The state lives in the caller's object (struct rng is plain data, copyable);
 * no function here allocates, blocks or fails. Same seed, same sequence, on every
 * platform.
 */
#ifndef MOESIM_RNG_H
#define MOESIM_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

/* State = the first four outputs of splitmix64 started at `seed` (the seeding
 * recommended by Blackman & Vigna). */
void rng_seed(struct rng *r, uint64_t seed);

/* An independent stream per `stream` (e.g. one per source GPU): seed and stream
 * are mixed through the splitmix64 finalizer into one splitmix64 start, then as
 * rng_seed. Different (seed, stream) give unrelated states; with 2^256 - 1 period,
 * overlap between streams of practical length has negligible probability. */
void rng_seed_stream(struct rng *r, uint64_t seed, uint64_t stream);

uint64_t rng_u64(struct rng *r);          /* uniform on [0, 2^64) */
double rng_double(struct rng *r);         /* uniform on [0, 1): k * 2^-53, 53 random bits */

/* Uniform on [0, n), without modulo bias (Lemire, "Fast Random Integer Generation
 * in an Interval", ACM TOMACS 29(1), 2019). One rng_u64 almost always; a retry
 * with probability below n / 2^64. n == 0 returns 0 and draws nothing. */
uint64_t rng_below(struct rng *r, uint64_t n);

#endif
