/* bench_routing.c: token -> expert routing for 1M tokens (256 GPUs x 4096 tokens),
 * top-8 of 256 experts, dedup on. The fast draws (routing_generate: uniform and Zipf
 * popularity; with capacity, two passes), then the scored gating of routing_run (sigmoid
 * scores with a bias, node-limited to M = 4 of the 32 nodes, as DeepSeek-V3). Reports the
 * wall time (CLOCK_MONOTONIC), the median of REPS runs after one untimed warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "routing.h"

#define REPS 5
#define EXPERTS 256

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

/* Median seconds of routing_run on in over reps runs; negative errno on failure. */
static double time_routing(const struct routing_in *in, int reps)
{
    double t[REPS];
    for (int i = -1; i < reps; i++) {
        struct routing r;
        double t0 = now_s();
        int e = routing_run(&r, in);
        double dt = now_s() - t0;
        if (e)
            return e;
        routing_free(&r);
        if (i >= 0)
            t[i] = dt;
    }
    qsort(t, (size_t)reps, sizeof(t[0]), cmp);
    return t[reps / 2];
}

int main(void)
{
    struct config c;
    double bias[EXPERTS];
    memset(&c, 0, sizeof(c));
    c.cluster.nodes = 32;
    c.cluster.gpus_per_node = 8;
    c.model.experts = EXPERTS;
    c.model.top_k = 8;
    c.parallel.ep = 256;
    c.routing.tokens_per_gpu = 4096;
    c.routing.dedup = true;
    for (int e = 0; e < EXPERTS; e++)          /* a spread of +-0.01, as a bias a few */
        bias[e] = 0.001 * (e % 21 - 10);       /* hundred updates of gamma 1e-4 gives */
    const struct {
        const char *name;
        enum dist_kind d;
        double s, capacity;
        bool scored;
    } cases[] = {
        { "uniform", DIST_UNIFORM, 0, 0, false },
        { "zipf(0.6)", DIST_ZIPF, 0.6, 0, false },
        { "zipf(1.2)", DIST_ZIPF, 1.2, 0, false },
        { "uniform, capacity 1.25", DIST_UNIFORM, 0, 1.25, false },
        { "uniform, scored", DIST_UNIFORM, 0, 0, true },
        { "zipf(1.2), scored", DIST_ZIPF, 1.2, 0, true },
    };
    printf("# routing: 256 GPUs x 4096 tokens = 1048576 tokens, top-8 of 256 experts, dedup;"
           " median of %d (scored: of 3)\n", REPS);
    printf("# scored: sigmoid scores + a bias, at most 4 of the 32 nodes per token\n");
    printf("# %-24s %10s %12s\n", "routing", "time (s)", "Mtokens/s");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c.routing.distribution = cases[i].d;
        c.routing.zipf_s = cases[i].s;
        c.balance.capacity_factor = cases[i].capacity;
        c.routing.scoring = cases[i].scored ? SCORE_SIGMOID : SCORE_SOFTMAX;
        c.routing.max_nodes = cases[i].scored ? 4 : 0;
        struct routing_in in = { .c = &c, .bias = cases[i].scored ? bias : NULL, .seed = 1 };
        double t = time_routing(&in, cases[i].scored ? 3 : REPS);
        if (t < 0) {
            fprintf(stderr, "bench_routing: routing failed (%d)\n", (int)t);
            return 1;
        }
        printf("  %-24s %10.4f %12.1f\n", cases[i].name, t, 1048576 / t / 1e6);
    }
    return 0;
}
