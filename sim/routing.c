/* routing.c: synthetic top-k routing, summarised as per-pair and per-expert counts.
 *
 * How a token's top_k distinct experts are drawn (each exact for its law):
 *  - top_k == experts: every expert; no draws (counts are added in closed form).
 *  - uniform: Floyd's algorithm (Bentley & Floyd, "A sample of brilliance",
 *    CACM 30(9), 1987): exactly top_k calls to rng_below, a uniform top_k-subset,
 *    which is the set law of successive uniform draws without replacement. Counts
 *    depend only on the set, so the order of the draws does not matter.
 *  - weighted (zipf): popularity becomes integer weights w[e] summing to W (below).
 *    While the experts chosen so far hold at most 3/4 of W, a draw is from the
 *    full law by an alias table (Vose, "A linear algorithm for generating random
 *    numbers with a given distribution", IEEE TSE 17(9), 1991; O(1), one
 *    rng_below call) and a repeat is rejected: that is the law conditioned on
 *    "not chosen yet", i.e. a draw without replacement, accepted with probability
 *    >= 1/4 (<= 4 tries expected). Once they hold more (skewed laws, or top_k near
 *    experts), the chosen weights are subtracted from a Fenwick tree over w
 *    (Fenwick, "A new data structure for cumulative frequency tables", SP&E 24(3),
 *    1994) and x uniform in the remaining weight is mapped to its expert in
 *    O(log E); the weights are added back after the token. Integer weights make
 *    both tables exact for w/W and keep removal and restoration exact (no drift
 *    over millions of tokens). Worst case O(top_k log E) per token. The 3/4
 *    switch point was measured (E = 256, top-8, zipf_s 1 to 5): a Fenwick pick
 *    (descent, removal, restoration) costs about as much as several rejected
 *    draws. Measured at -O2 on one 2.1 GHz EPYC core, 256 GPUs x 4096 tokens x
 *    top-8 of 256: uniform 0.035 s, zipf 1.2 0.09 s, zipf 2 to 3 0.2 to 0.3 s.
 *
 * Weights: W = 2^(61 - ceil(log2 E)), so E * W <= 2^61 (the alias table works
 * with heights w[e] * E); w[e] = max(1, round(popularity[e] * W)), and the rounding
 * residual (at most E in size) is added to the heaviest expert, so the weights
 * sum to W exactly. Then |w[e] - popularity[e] W| <= E + 1 and w[e]/W differs from
 * popularity[e] by at most (E + 1)/W < 2E(E + 1)/2^61 (2^-44 at E = 256).
 */
#include "routing.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Stream of the Zipf rank permutation; the per-GPU streams are 0..gpus-1. */
#define ROUTING_STREAM_RANKS UINT64_MAX

/* Scratch of one source GPU's tokens, reused across sources. */
struct draw {
    int experts, top_k;
    bool weighted;
    /* weighted only: */
    uint64_t *weight;         /* experts: integer weights */
    uint64_t total;           /* W = 2^total_bits, the sum of weight */
    int total_bits;
    uint64_t *cut;            /* experts: alias column e keeps e when y < cut[e], y in [0, W) */
    int *alias;               /* experts: else it gives alias[e] */
    uint64_t *tree;           /* tree_size + 1: Fenwick tree over weight, 1-based,
                                 padded with weight-0 entries to a power of two */
    int tree_size, tree_top;  /* tree_top: largest power of two < tree_size (0 if 1) */
    /* all: */
    uint64_t *mark;           /* experts: stamp of the last token that chose e */
    int *chosen;              /* experts: the current token's experts (first top_k) */
    uint64_t *gpu_mark;       /* ep: stamp of the last token sent to GPU g of the group */
};

static void fenwick_build(uint64_t *tree, const uint64_t *w, int n, int size)
{
    tree[0] = 0;
    for (int i = 1; i <= size; i++)
        tree[i] = i <= n ? w[i - 1] : 0;
    for (int i = 1; i <= size; i++) {
        int j = i + (i & -i);
        if (j <= size)
            tree[j] += tree[i];
    }
}

/* Unsigned wrap-around makes a subtraction (delta = 0 - w) exact as well. */
static void fenwick_add(uint64_t *tree, int size, int e, uint64_t delta)
{
    for (int i = e + 1; i <= size; i += i & -i)
        tree[i] += delta;
}

/* The expert e with prefix(e) <= x < prefix(e + 1): x must be below the tree's
 * total, so entries of weight 0 (removed or padding) are never returned. The
 * padded size makes every probe in range (no bound test). A plain branch: under
 * the skewed laws that reach this path it predicts well, and measured faster
 * than a branch-free select, which serialises the loads. */
static int fenwick_find(const uint64_t *tree, int top, uint64_t x)
{
    int pos = 0;
    for (int step = top; step > 0; step >>= 1) {
        if (tree[pos + step] <= x) {
            pos += step;
            x -= tree[pos];
        }
    }
    return pos;
}

/* Vose's method in integers: column heights are weight * n against capacity W
 * (sum of weight * n = n W), so every cut is exact and P(e) = w[e] / W exactly.
 * small/large share one stack of n entries, growing from both ends. */
static void alias_build(uint64_t *cut, int *alias, const uint64_t *w, int n, uint64_t total,
                        uint64_t *height, int *stack)
{
    int ns = 0, nl = 0;

    for (int e = 0; e < n; e++) {
        height[e] = w[e] * (uint64_t)n;
        if (height[e] < total)
            stack[ns++] = e;
        else
            stack[n - 1 - nl++] = e;
    }
    while (ns > 0 && nl > 0) {
        int s = stack[--ns], l = stack[n - nl];
        nl--;
        cut[s] = height[s];
        alias[s] = l;
        height[l] -= total - height[s];
        if (height[l] < total)
            stack[ns++] = l;
        else
            stack[n - 1 - nl++] = l;
    }
    /* What is left is exactly full (the sum invariant holds in integers). */
    while (ns > 0) {
        int e = stack[--ns];
        cut[e] = total;
        alias[e] = e;
    }
    while (nl > 0) {
        int e = stack[n - nl--];
        cut[e] = total;
        alias[e] = e;
    }
}

/* W = 2^total_bits, so x uniform on [0, E W) splits into a uniform column (high
 * part) and an independent uniform height (low part): one rng_below per draw.
 * The select is written as a mask so that it costs no mispredicted branch. */
static int alias_draw(const struct draw *d, struct rng *r)
{
    uint64_t x = rng_below(r, (uint64_t)d->experts << d->total_bits);
    int col = (int)(x >> d->total_bits);
    int keep = -(int)((x & (d->total - 1)) < d->cut[col]);

    return (col & keep) | (d->alias[col] & ~keep);
}

/* Floyd: for j = E-K .. E-1 take t uniform in [0, j]; if t is taken, take j. */
static void pick_uniform(struct draw *d, struct rng *r, uint64_t stamp)
{
    int k = 0;
    for (int j = d->experts - d->top_k; j < d->experts; j++) {
        int t = (int)rng_below(r, (uint64_t)j + 1);
        if (d->mark[t] == stamp)
            t = j;
        d->mark[t] = stamp;
        d->chosen[k++] = t;
    }
}

/* Picks chosen[k..top_k) from the weight left by chosen[0..k) (chosen_w of W):
 * subtracts those from the tree, draws, removes each pick but the last, and
 * restores the tree. O((top_k + k) log E). */
static void pick_rest_fenwick(struct draw *d, struct rng *r, uint64_t stamp, int k,
                              uint64_t chosen_w)
{
    int size = d->tree_size;

    for (int j = 0; j < k; j++)
        fenwick_add(d->tree, size, d->chosen[j], 0 - d->weight[d->chosen[j]]);
    for (; k < d->top_k; k++) {
        int e = fenwick_find(d->tree, d->tree_top, rng_below(r, d->total - chosen_w));
        if (k + 1 < d->top_k)
            fenwick_add(d->tree, size, e, 0 - d->weight[e]);
        d->mark[e] = stamp;
        d->chosen[k] = e;
        chosen_w += d->weight[e];
    }
    for (int j = 0; j + 1 < d->top_k; j++)
        fenwick_add(d->tree, size, d->chosen[j], d->weight[d->chosen[j]]);
}

/* Rejection while the chosen hold at most 3/4 of W, then the Fenwick tree. The
 * rejection loop has no data-dependent branch: a repeat is written into
 * chosen[k] and k does not advance, so it is overwritten by the next draw (a
 * mispredicted "rejected?" branch measured about a third of the run time). */
static void pick_weighted(struct draw *d, struct rng *r, uint64_t stamp)
{
    uint64_t chosen_w = 0, limit = d->total - d->total / 4;
    int k = 0;

    while (k < d->top_k && chosen_w <= limit) {
        int e = alias_draw(d, r);
        uint64_t fresh = d->mark[e] != stamp;
        d->mark[e] = stamp;
        d->chosen[k] = e;
        chosen_w += d->weight[e] & (0 - fresh);
        k += (int)fresh;
    }
    if (k < d->top_k)
        pick_rest_fenwick(d, r, stamp, k, chosen_w);
}

/* p[e] = rank(e)^-s / H(E, s), ranks from a Fisher-Yates shuffle of the experts.
 * H is summed from the smallest term up, for accuracy. */
static void zipf_popularity(double *p, int experts, double s, uint64_t seed, int *perm)
{
    struct rng r;
    double h = 0;

    rng_seed_stream(&r, seed, ROUTING_STREAM_RANKS);
    for (int i = 0; i < experts; i++)
        perm[i] = i;
    for (int i = experts - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int rank = experts; rank >= 1; rank--)
        h += pow(rank, -s);
    for (int i = 0; i < experts; i++)   /* perm[i] has rank i + 1 */
        p[perm[i]] = pow(i + 1, -s) / h;
}

static int check_config(const struct config *c, int *gpus)
{
    long long g = (long long)c->cluster.nodes * c->cluster.gpus_per_node;
    int ep = c->parallel.ep, experts = c->model.experts, top_k = c->model.top_k;
    int64_t tokens = c->routing.tokens_per_gpu;

    if (c->cluster.nodes < 1 || c->cluster.gpus_per_node < 1 || g > INT_MAX)
        return -EINVAL;
    if (ep < 1 || g % ep != 0 || experts < 1 || experts > ROUTING_EXPERTS_MAX ||
        experts % ep != 0)
        return -EINVAL;
    if (top_k < 1 || top_k > experts || tokens < 0)
        return -EINVAL;
    if (c->routing.distribution != DIST_UNIFORM && c->routing.distribution != DIST_ZIPF)
        return -EINVAL;
    if (c->routing.distribution == DIST_ZIPF &&
        !(isfinite(c->routing.zipf_s) && c->routing.zipf_s >= 0))
        return -EINVAL;
    /* Largest count: an expert receives up to ep * tokens * 1, a pair up to tokens * top_k. */
    if ((uint64_t)tokens > UINT64_MAX / (uint64_t)top_k / (uint64_t)ep)
        return -EOVERFLOW;
    if ((size_t)g > SIZE_MAX / sizeof(uint64_t) / (size_t)g)
        return -ENOMEM;
    *gpus = (int)g;
    return 0;
}

static void draw_free(struct draw *d)
{
    free(d->weight);
    free(d->cut);
    free(d->alias);
    free(d->tree);
    free(d->mark);
    free(d->chosen);
    free(d->gpu_mark);
}

/* Integer weights, the alias table and the Fenwick tree from r->popularity. */
static int draw_init_weights(struct draw *d, const double *popularity)
{
    int n = d->experts, bits = 0, size = 1, big = 0;
    uint64_t *height, sum = 0;

    while (size < n) {        /* size = 2^bits = smallest power of two >= n */
        size *= 2;
        bits++;
    }
    d->tree_size = size;
    d->tree_top = size / 2;
    d->weight = calloc((size_t)n, sizeof(*d->weight));
    d->cut = calloc((size_t)n, sizeof(*d->cut));
    d->alias = calloc((size_t)n, sizeof(*d->alias));
    d->tree = calloc((size_t)size + 1, sizeof(*d->tree));
    height = calloc((size_t)n, sizeof(*height));
    if (!d->weight || !d->cut || !d->alias || !d->tree || !height) {
        free(height);
        return -ENOMEM;
    }
    d->total_bits = 61 - bits;
    d->total = (uint64_t)1 << d->total_bits;
    for (int e = 0; e < n; e++) {
        double w = round(ldexp(popularity[e], d->total_bits));
        d->weight[e] = w < 1 ? 1 : (uint64_t)w;
        sum += d->weight[e];
        if (d->weight[e] > d->weight[big])
            big = e;
    }
    /* The rounding residual (|W - sum| <= n) goes to the heaviest expert, which
     * holds at least W/n - 1 >= 2^(61 - 2 bits) - 1 > n for n <= 2^20, so it stays
     * positive; unsigned wrap-around handles either sign. */
    d->weight[big] += d->total - sum;
    alias_build(d->cut, d->alias, d->weight, n, d->total, height, d->chosen);
    fenwick_build(d->tree, d->weight, n, size);
    free(height);
    return 0;
}

/* Sets up the scratch, and r->popularity from the distribution. */
static int draw_init(struct draw *d, struct routing *r, const struct config *c, uint64_t seed)
{
    int n = r->experts;

    memset(d, 0, sizeof(*d));
    d->experts = n;
    d->top_k = r->top_k;
    d->weighted = c->routing.distribution == DIST_ZIPF;
    d->mark = calloc((size_t)n, sizeof(*d->mark));
    d->chosen = calloc((size_t)n, sizeof(*d->chosen));  /* n: also scratch for setup */
    d->gpu_mark = calloc((size_t)r->ep, sizeof(*d->gpu_mark));
    if (!d->mark || !d->chosen || !d->gpu_mark)
        goto out_free;
    if (!d->weighted) {
        for (int e = 0; e < n; e++)
            r->popularity[e] = 1.0 / n;
        return 0;
    }
    zipf_popularity(r->popularity, n, c->routing.zipf_s, seed, d->chosen);
    if (draw_init_weights(d, r->popularity))
        goto out_free;
    return 0;

out_free:
    draw_free(d);
    return -ENOMEM;
}

/* top_k == experts: each token reaches every expert and every GPU of the group. */
static void route_all(struct routing *r, int s, uint64_t tokens, bool dedup)
{
    int group = s / r->ep, per_gpu = r->experts / r->ep;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)group * r->ep;
    uint64_t *load = r->expert_tokens + (size_t)group * r->experts;

    for (int g = 0; g < r->ep; g++)
        row[g] += dedup ? tokens : tokens * (uint64_t)per_gpu;
    for (int e = 0; e < r->experts; e++)
        load[e] += tokens;
}

static void route_source(struct routing *r, struct draw *d, int s, uint64_t tokens,
                         bool dedup, uint64_t seed)
{
    int group = s / r->ep, per_gpu = r->experts / r->ep;
    uint64_t *row = r->pair_tokens + (size_t)s * r->gpus + (size_t)group * r->ep;
    uint64_t *load = r->expert_tokens + (size_t)group * r->experts;
    struct rng rng;

    rng_seed_stream(&rng, seed, (uint64_t)s);
    memset(d->mark, 0, (size_t)d->experts * sizeof(*d->mark));
    memset(d->gpu_mark, 0, (size_t)r->ep * sizeof(*d->gpu_mark));
    for (uint64_t t = 0; t < tokens; t++) {
        uint64_t stamp = t + 1;

        if (d->weighted)
            pick_weighted(d, &rng, stamp);
        else
            pick_uniform(d, &rng, stamp);
        for (int k = 0; k < d->top_k; k++) {
            int e = d->chosen[k], g = e / per_gpu;
            load[e]++;
            row[g] += !dedup || d->gpu_mark[g] != stamp;   /* no branch to mispredict */
            d->gpu_mark[g] = stamp;
        }
    }
}

int routing_generate(struct routing *r, const struct config *c, uint64_t seed)
{
    struct draw d;
    int gpus, rc;

    memset(r, 0, sizeof(*r));
    rc = check_config(c, &gpus);
    if (rc)
        return rc;
    r->gpus = gpus;
    r->experts = c->model.experts;
    r->ep = c->parallel.ep;
    r->top_k = c->model.top_k;
    r->pair_tokens = calloc((size_t)gpus * gpus, sizeof(*r->pair_tokens));
    r->expert_tokens = calloc((size_t)(gpus / r->ep) * r->experts, sizeof(*r->expert_tokens));
    r->popularity = calloc((size_t)r->experts, sizeof(*r->popularity));
    if (!r->pair_tokens || !r->expert_tokens || !r->popularity) {
        rc = -ENOMEM;
        goto out_free_routing;
    }
    rc = draw_init(&d, r, c, seed);
    if (rc)
        goto out_free_routing;
    for (int s = 0; s < gpus; s++) {
        uint64_t tokens = (uint64_t)c->routing.tokens_per_gpu;
        if (r->top_k == r->experts)
            route_all(r, s, tokens, c->routing.dedup);
        else
            route_source(r, &d, s, tokens, c->routing.dedup, seed);
    }
    draw_free(&d);
    return 0;

out_free_routing:
    routing_free(r);
    return rc;
}

void routing_free(struct routing *r)
{
    free(r->pair_tokens);
    free(r->expert_tokens);
    free(r->popularity);
    memset(r, 0, sizeof(*r));
}
