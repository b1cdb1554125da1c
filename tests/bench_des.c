/* bench_des.c: event-engine throughput in the classic "hold" model (Jones, "An empirical
 * comparison of priority-queue and event-set implementations", CACM 29(4), 1986):
 * keep N events pending; each event, when run, schedules one new event at
 * now + Exp(1) seconds. One line per N, e.g.:
 *   des hold N=1000: 12.3 M events/s (12000000 events, 0.98 s)
 * The exponential draw (splitmix64 + log, seed 42) is inside the timed loop, as it is
 * in a simulation. Wall time by CLOCK_MONOTONIC; total under ~5 s at -O2.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "des.h"

struct hold {
    uint64_t rng;
    int64_t left;              /* events still to schedule */
    int err;
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Exp(1): -log(u) with u uniform in (0, 1] (53 random bits). */
static double exp1(uint64_t *s)
{
    return -log((double)((splitmix64(s) >> 11) + 1) * 0x1.0p-53);
}

static void hold_fn(struct des *d, void *arg)
{
    struct hold *h = arg;
    if (h->left <= 0)
        return;
    h->left--;
    int rc = des_at(d, des_now(d) + exp1(&h->rng), hold_fn, h, NULL);
    if (rc < 0) {
        h->err = rc;
        des_stop(d);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fill to n pending, then run `events` events in total (the first n included):
 * steady state holds n pending until the schedule budget is spent, then drains. */
static int bench(int64_t n, int64_t events)
{
    struct des *d;
    int rc = des_create(&d);
    if (rc < 0)
        return rc;
    struct hold h = { .rng = 42, .left = events - n, .err = 0 };
    for (int64_t i = 0; i < n && rc == 0; i++)
        rc = des_at(d, exp1(&h.rng), hold_fn, &h, NULL);
    if (rc < 0)
        goto out_free;
    double t0 = now_s();
    int64_t ran = des_run(d, INFINITY);
    double dt = now_s() - t0;
    if (ran < 0 || h.err < 0) {
        rc = ran < 0 ? (int)ran : h.err;
        goto out_free;
    }
    printf("des hold N=%" PRId64 ": %.1f M events/s (%" PRId64 " events, %.2f s)\n", n,
           (double)ran / dt * 1e-6, ran, dt);
out_free:
    des_free(d);
    return rc;
}

int main(void)
{
    static const struct { int64_t n, events; } runs[] = {
        /* add a row for another queue size; keep the total under ~5 s */
        { 1000, 12000000 },
        { 100000, 6000000 },
    };
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        int rc = bench(runs[i].n, runs[i].events);
        if (rc < 0) {
            fprintf(stderr, "bench_des: N=%" PRId64 ": %s\n", runs[i].n, strerror(-rc));
            return 1;
        }
    }
    return 0;
}
