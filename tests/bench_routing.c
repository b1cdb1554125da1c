/* bench_routing.c: token -> expert routing for 1M tokens (256 GPUs x 4096 tokens),
 * top-8 of 256 experts, dedup on, uniform and Zipf popularity. Reports the wall time of
 * routing_generate (CLOCK_MONOTONIC), the median of 5 runs after one untimed warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "routing.h"

#define REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of routing_generate on c; negative errno on failure. */
static double time_routing(const struct config *c)
{
    double t[REPS];
    for (int i = -1; i < REPS; i++) {
        struct routing r;
        double t0 = now_s();
        int e = routing_generate(&r, c, 1);
        double dt = now_s() - t0;
        if (e)
            return e;
        routing_free(&r);
        if (i >= 0)
            t[i] = dt;
    }
    qsort(t, REPS, sizeof(t[0]), cmp);
    return t[REPS / 2];
}

int main(void)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.cluster.nodes = 32;
    c.cluster.gpus_per_node = 8;
    c.model.experts = 256;
    c.model.top_k = 8;
    c.parallel.ep = 256;
    c.routing.tokens_per_gpu = 4096;
    c.routing.dedup = true;
    const struct { enum dist_kind d; double s; } cases[] = {
        { DIST_UNIFORM, 0 }, { DIST_ZIPF, 0.6 }, { DIST_ZIPF, 1.2 },
    };
    printf("# routing_generate: 256 GPUs x 4096 tokens = 1048576 tokens, top-8 of 256 experts,"
           " dedup; median of %d\n", REPS);
    printf("# %-12s %10s %12s\n", "popularity", "time (s)", "Mtokens/s");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c.routing.distribution = cases[i].d;
        c.routing.zipf_s = cases[i].s;
        double t = time_routing(&c);
        if (t < 0) {
            fprintf(stderr, "bench_routing: routing failed (%d)\n", (int)t);
            return 1;
        }
        char name[32];
        snprintf(name, sizeof(name), cases[i].d == DIST_UNIFORM ? "uniform" : "zipf(%g)",
                 cases[i].s);
        printf("  %-12s %10.4f %12.1f\n", name, t, 1048576 / t / 1e6);
    }
    return 0;
}
