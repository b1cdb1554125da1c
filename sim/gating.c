/* gating.c: per-token top-k choice of experts; see gating.h for the model.
 *
 * Fast draws (no scores), each exact for its law:
 *  - uniform: Floyd's algorithm (Bentley & Floyd, "A sample of brilliance", CACM 30(9),
 *    1987): exactly top_k calls to rng_below, a uniform top_k-subset, which is the set law
 *    of successive uniform draws without replacement. Its order is not uniform, so when
 *    the order matters (ordered) a Fisher-Yates shuffle of the top_k follows (top_k - 1
 *    more draws).
 *  - weighted (zipf): popularity becomes integer weights w[e] summing to W (below).
 *    While the experts chosen so far hold at most 3/4 of W, a draw is from the full law
 *    by an alias table (Vose, "A linear algorithm for generating random numbers with a
 *    given distribution", IEEE TSE 17(9), 1991; O(1), one rng_below call) and a repeat is
 *    rejected: that is the law conditioned on "not chosen yet", i.e. a draw without
 *    replacement, accepted with probability >= 1/4 (<= 4 tries expected). Once they hold
 *    more (skewed laws, or top_k near experts), the chosen weights are subtracted from a
 *    Fenwick tree over w (Fenwick, "A new data structure for cumulative frequency tables",
 *    SP&E 24(3), 1994) and x uniform in the remaining weight is mapped to its expert in
 *    O(log E); the weights are added back after the token. Integer weights make both
 *    tables exact for w/W and keep removal and restoration exact (no drift over millions
 *    of tokens). Worst case O(top_k log E) per token. The 3/4 switch point was measured
 *    (E = 256, top-8, zipf_s 1 to 5): a Fenwick pick (descent, removal, restoration) costs
 *    about as much as several rejected draws. The picks come in draw order, which is the
 *    priority order of successive sampling.
 *
 * Weights: W = 2^(61 - ceil(log2 E)), so E * W <= 2^61 (the alias table works with
 * heights w[e] * E); w[e] = max(1, round(popularity[e] * W)), and the rounding residual
 * (at most E in size) is added to the heaviest expert, so the weights sum to W exactly.
 * Then |w[e] - popularity[e] W| <= E + 1 and w[e]/W differs from popularity[e] by at most
 * (E + 1)/W < 2E(E + 1)/2^61 (2^-44 at E = 256).
 *
 * Scores, one pass over the experts per token:
 *  - uniform, zipf: with X_e ~ Exp(1), G_e = -log X_e is standard Gumbel, so
 *    exp(-l_e) = T_e = X_e / p_e: softmax s_e = (1/T_e) / sum (1/T), sigmoid
 *    s_e = 1 / (1 + T_e); -T_e (monotone in l_e) breaks ties. X_e by the ziggurat of
 *    Marsaglia & Tsang, "The Ziggurat Method for Generating Random Variables", J. Stat.
 *    Softw. 5(8), 2000 (256 layers, their REXP), exact: one 64-bit draw gives the layer
 *    (low 8 bits) and an independent 53-bit position (high bits, so the two are not
 *    correlated as in the 32-bit original; Doornik, "An Improved Ziggurat Method to
 *    Generate Normal Random Samples", 2005), accepted at once about 98.9% of the time;
 *    the tail beyond r = 7.697 is r - log U (memorylessness). No log per expert.
 *  - affinity: theta_e = g_e / sum g with g_e ~ Gamma(alpha_e, 1) (the Dirichlet as
 *    normalised Gammas), drawn in logs by Marsaglia & Tsang, "A simple method for
 *    generating gamma variables", ACM TOMS 26(3), 2000: for alpha >= 1, d = alpha - 1/3,
 *    c = 1/sqrt(9d), x standard normal, v = (1 + c x)^3 > 0, accept d v when
 *    log U < x^2/2 + d - d v + d log v (squeeze U < 1 - 0.0331 x^4 first); for alpha < 1
 *    their boost, log g = log Gamma(alpha + 1) + log(U) / alpha, which stays finite however
 *    small alpha is. Normals by Box & Muller (1958), both of each pair used. log g breaks
 *    ties (theta underflows to 0 for tiny alpha).
 */
#include "gating.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Popularity streams, above every token stream of routing.c (those are below 2^63):
 * the ranking of layer L is stream UINT64_MAX - L; the drift step to iteration i of
 * ranking L is stream 2^63 + L * GATING_INDEX_MAX + i. */
#define STREAM_RANKS UINT64_MAX
#define STREAM_DRIFT (UINT64_C(1) << 63)
#define TWO_PI 6.283185307179586
/* Exponential ziggurat (Marsaglia & Tsang 2000): 256 layers of area ZIG_V, base layer
 * (with the tail) ending at ZIG_R; positions have 53 bits. */
#define ZIG_LAYERS 256
#define ZIG_R 7.697117470131487
#define ZIG_V 3.949659822581572e-3
#define ZIG_M 0x1.0p53

struct gating {
    int experts, top_k;
    enum dist_kind dist;
    enum score_kind scoring;
    bool ordered, scored;
    uint64_t stamp;           /* of the current token */
    uint64_t *mark;           /* experts: stamp of the last token that chose (or saw) e */
    /* fast draws, weighted only */
    uint64_t *weight;         /* experts: integer weights */
    uint64_t total;           /* W = 2^total_bits, the sum of weight */
    int total_bits;
    uint64_t *cut;            /* experts: alias column e keeps e when y < cut[e], y in [0, W) */
    int *alias;               /* experts: else it gives alias[e] */
    uint64_t *tree;           /* tree_size + 1: Fenwick tree over weight, 1-based,
                                 padded with weight-0 entries to a power of two */
    int tree_size, tree_top;  /* tree_top: largest power of two < tree_size (0 if 1) */
    /* scores */
    double *p;                /* experts: popularity */
    double *invp;             /* experts: 1 / p */
    uint64_t zk[ZIG_LAYERS];  /* ziggurat: position below which layer i accepts at once */
    double zw[ZIG_LAYERS];    /* ziggurat: x per unit of position in layer i */
    double zf[ZIG_LAYERS];    /* ziggurat: exp(-x_i), the density at layer i's edge */
    double *bias;             /* experts (all 0 without a bias) */
    double *score, *key, *tie;/* experts: s, s + b, tie-breaker of the current token */
    int *cand;                /* experts: candidates of pick_among */
    double *gd, *gc;          /* experts, affinity: Marsaglia-Tsang d and c */
    double *ginv;             /* experts, affinity: 1/alpha when alpha < 1 (boost), else 0 */
    double normal;            /* the cached second normal of a Box-Muller pair */
    bool has_normal;
    /* node limit */
    int max_nodes, q, nodes;
    int *first, *members;     /* nodes + 1, first[nodes]: the node layout */
    double *node_score;       /* nodes: values, -inf once taken */
    double *qbest;            /* top_k: a node's q best keys, or pick_scored's block maxima */
};

/* ---- fast draws ---- */

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
static int alias_draw(const struct gating *g, struct rng *r)
{
    uint64_t x = rng_below(r, (uint64_t)g->experts << g->total_bits);
    int col = (int)(x >> g->total_bits);
    int keep = -(int)((x & (g->total - 1)) < g->cut[col]);

    return (col & keep) | (g->alias[col] & ~keep);
}

/* Floyd: for j = E-K .. E-1 take t uniform in [0, j]; if t is taken, take j. */
static void pick_uniform(struct gating *g, struct rng *r, int *chosen)
{
    int k = 0;
    for (int j = g->experts - g->top_k; j < g->experts; j++) {
        int t = (int)rng_below(r, (uint64_t)j + 1);
        if (g->mark[t] == g->stamp)
            t = j;
        g->mark[t] = g->stamp;
        chosen[k++] = t;
    }
    if (!g->ordered)
        return;
    for (int i = g->top_k - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1), t = chosen[i];
        chosen[i] = chosen[j];
        chosen[j] = t;
    }
}

/* Picks chosen[k..top_k) from the weight left by chosen[0..k) (chosen_w of W):
 * subtracts those from the tree, draws, removes each pick but the last, and
 * restores the tree. O((top_k + k) log E). */
static void pick_rest_fenwick(struct gating *g, struct rng *r, int *chosen, int k,
                              uint64_t chosen_w)
{
    int size = g->tree_size;

    for (int j = 0; j < k; j++)
        fenwick_add(g->tree, size, chosen[j], 0 - g->weight[chosen[j]]);
    for (; k < g->top_k; k++) {
        int e = fenwick_find(g->tree, g->tree_top, rng_below(r, g->total - chosen_w));
        if (k + 1 < g->top_k)
            fenwick_add(g->tree, size, e, 0 - g->weight[e]);
        g->mark[e] = g->stamp;
        chosen[k] = e;
        chosen_w += g->weight[e];
    }
    for (int j = 0; j + 1 < g->top_k; j++)
        fenwick_add(g->tree, size, chosen[j], g->weight[chosen[j]]);
}

/* Rejection while the chosen hold at most 3/4 of W, then the Fenwick tree. The
 * rejection loop has no data-dependent branch: a repeat is written into
 * chosen[k] and k does not advance, so it is overwritten by the next draw (a
 * mispredicted "rejected?" branch measured about a third of the run time). */
static void pick_weighted(struct gating *g, struct rng *r, int *chosen)
{
    uint64_t chosen_w = 0, limit = g->total - g->total / 4;
    int k = 0;

    while (k < g->top_k && chosen_w <= limit) {
        int e = alias_draw(g, r);
        uint64_t fresh = g->mark[e] != g->stamp;
        g->mark[e] = g->stamp;
        chosen[k] = e;
        chosen_w += g->weight[e] & (0 - fresh);
        k += (int)fresh;
    }
    if (k < g->top_k)
        pick_rest_fenwick(g, r, chosen, k, chosen_w);
}

/* Integer weights, the alias table and the Fenwick tree from the popularity. */
static int weights_init(struct gating *g, const double *popularity)
{
    int n = g->experts, bits = 0, size = 1, big = 0;
    uint64_t sum = 0;

    while (size < n) {        /* size = 2^bits = smallest power of two >= n */
        size *= 2;
        bits++;
    }
    g->tree_size = size;
    g->tree_top = size / 2;
    g->weight = calloc((size_t)n, sizeof(*g->weight));
    g->cut = calloc((size_t)n, sizeof(*g->cut));
    g->alias = calloc((size_t)n, sizeof(*g->alias));
    g->tree = calloc((size_t)size + 1, sizeof(*g->tree));
    uint64_t *height = calloc((size_t)n, sizeof(*height));
    int *stack = calloc((size_t)n, sizeof(*stack));
    if (!g->weight || !g->cut || !g->alias || !g->tree || !height || !stack) {
        free(height);
        free(stack);
        return -ENOMEM;
    }
    g->total_bits = 61 - bits;
    g->total = (uint64_t)1 << g->total_bits;
    for (int e = 0; e < n; e++) {
        double w = round(ldexp(popularity[e], g->total_bits));
        g->weight[e] = w < 1 ? 1 : (uint64_t)w;
        sum += g->weight[e];
        if (g->weight[e] > g->weight[big])
            big = e;
    }
    /* The rounding residual (|W - sum| <= n) goes to the heaviest expert, which
     * holds at least W/n - 1 >= 2^(61 - 2 bits) - 1 > n for n <= 2^20, so it stays
     * positive; unsigned wrap-around handles either sign. */
    g->weight[big] += g->total - sum;
    alias_build(g->cut, g->alias, g->weight, n, g->total, height, stack);
    fenwick_build(g->tree, g->weight, n, size);
    free(height);
    free(stack);
    return 0;
}

/* ---- scores ---- */

/* Uniform on (0, 1), never 0 or 1: logs stay finite. */
static double unit_open(struct rng *r)
{
    return ((double)(rng_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

static double normal_draw(struct gating *g, struct rng *r)
{
    if (g->has_normal) {
        g->has_normal = false;
        return g->normal;
    }
    double rad = sqrt(-2 * log(unit_open(r))), ang = TWO_PI * unit_open(r);
    g->normal = rad * sin(ang);
    g->has_normal = true;
    return rad * cos(ang);
}

/* log of a Gamma(alpha_e, 1) variate (Marsaglia & Tsang; the boost for alpha < 1). */
static double log_gamma_draw(struct gating *g, struct rng *r, int e)
{
    double d = g->gd[e], c = g->gc[e], x, v, u;
    for (;;) {
        do {
            x = normal_draw(g, r);
            v = 1 + c * x;
        } while (v <= 0);
        v = v * v * v;
        u = unit_open(r);
        if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d - d * v + d * log(v))
            break;
    }
    double lg = log(d * v);
    return g->ginv[e] > 0 ? lg + log(unit_open(r)) * g->ginv[e] : lg;
}

/* The tables of Marsaglia & Tsang's REXP, with 2^53 positions instead of 2^32. */
static void zig_init(struct gating *g)
{
    double de = ZIG_R, te = ZIG_R, q = ZIG_V / exp(-ZIG_R);
    g->zk[0] = (uint64_t)(de / q * ZIG_M);
    g->zk[1] = 0;
    g->zw[0] = q / ZIG_M;
    g->zw[ZIG_LAYERS - 1] = de / ZIG_M;
    g->zf[0] = 1;
    g->zf[ZIG_LAYERS - 1] = exp(-de);
    for (int i = ZIG_LAYERS - 2; i >= 1; i--) {
        de = -log(ZIG_V / de + exp(-de));
        g->zk[i + 1] = (uint64_t)(de / te * ZIG_M);
        te = de;
        g->zf[i] = exp(-de);
        g->zw[i] = de / ZIG_M;
    }
}

/* REXP's efix: the draw u missed the inner rectangle of its layer; retries until one is
 * accepted (tail, wedge, or a fresh draw's rectangle). */
static double exp_draw_slow(const struct gating *g, struct rng *r, uint64_t u)
{
    for (;;) {
        uint64_t j = u >> 11;
        int i = (int)(u & (ZIG_LAYERS - 1));
        if (j < g->zk[i])
            return (double)j * g->zw[i];
        if (i == 0)
            return ZIG_R - log(unit_open(r));
        double x = (double)j * g->zw[i];
        if (g->zf[i] + unit_open(r) * (g->zf[i - 1] - g->zf[i]) < exp(-x))
            return x;
        u = rng_u64(r);
    }
}

/* Exp(1) by the ziggurat: the inner rectangle (about 98.9% of draws) inline. */
static inline double exp_draw(const struct gating *g, struct rng *r)
{
    uint64_t u = rng_u64(r), j = u >> 11;
    int i = (int)(u & (ZIG_LAYERS - 1));
    return j < g->zk[i] ? (double)j * g->zw[i] : exp_draw_slow(g, r, u);
}

/* s, key and tie of every expert for one token. */
static void score_token(struct gating *g, struct rng *r)
{
    const int n = g->experts;
    const bool softmax = g->scoring == SCORE_SOFTMAX;
    const double *bias = g->bias;
    double *score = g->score, *key = g->key, *tie = g->tie, sum = 0;

    if (g->dist != DIST_AFFINITY && !softmax) {
        const double *invp = g->invp;
        for (int e = 0; e < n; e++) {
            double t = exp_draw(g, r) * invp[e];
            tie[e] = -t;
            score[e] = 1 / (1 + t);
            key[e] = score[e] + bias[e];
        }
        return;
    }
    if (g->dist != DIST_AFFINITY) {
        const double *invp = g->invp;
        for (int e = 0; e < n; e++) {
            double t = exp_draw(g, r) * invp[e];
            tie[e] = -t;
            score[e] = 1 / t;
            sum += score[e];
        }
    } else {
        double top = -INFINITY;
        for (int e = 0; e < n; e++) {
            tie[e] = log_gamma_draw(g, r, e);
            top = fmax(top, tie[e]);
        }
        for (int e = 0; e < n; e++) {
            score[e] = exp(tie[e] - top);
            sum += score[e];
        }
        if (!softmax) {
            for (int e = 0; e < n; e++) {
                double theta = score[e] / sum;
                score[e] = theta / (1 + theta);
                key[e] = score[e] + bias[e];
            }
            return;
        }
    }
    double scale = 1 / sum;
    for (int e = 0; e < n; e++) {
        score[e] *= scale;
        key[e] = score[e] + bias[e];
    }
}

/* Expert a ranks before expert b: higher key, then higher tie, then lower index. */
static inline bool ranks_before(const struct gating *g, int a, int b)
{
    if (g->key[a] != g->key[b])
        return g->key[a] > g->key[b];
    if (g->tie[a] != g->tie[b])
        return g->tie[a] > g->tie[b];
    return a < b;
}

/* Offers e to top[0..*n), kept sorted best first, at most k long. */
static inline void top_offer(const struct gating *g, int *top, int *n, int k, int e)
{
    int i = *n;
    if (i == k) {
        if (!ranks_before(g, e, top[k - 1]))
            return;
        i--;
    } else {
        (*n)++;
    }
    for (; i > 0 && ranks_before(g, e, top[i - 1]); i--)
        top[i] = top[i - 1];
    top[i] = e;
}

/* Top_k of the candidates cand[0..nc) (nc >= top_k) into chosen, best first. theta, the
 * least of the maxima of top_k blocks (block b: the candidates i = b mod top_k, so the
 * running maxima are independent chains), is at most the top_k-th key, so the top_k are
 * among the keys >= theta; both passes are branch-free, and only those few are sorted.
 * cand is reordered. */
static void pick_among(struct gating *g, int *cand, int nc, int *chosen)
{
    const double *key = g->key;
    const int k = g->top_k;
    double *block = g->qbest, theta = INFINITY;
    int nt = 0, kept = 0;
    for (int b = 0; b < k; b++)
        block[b] = -INFINITY;
    for (int i = 0, b = 0; i < nc; i++) {
        double v = key[cand[i]];
        block[b] = v > block[b] ? v : block[b];
        b = b + 1 == k ? 0 : b + 1;
    }
    for (int b = 0; b < k; b++)
        theta = block[b] < theta ? block[b] : theta;
    for (int i = 0; i < nc; i++) {
        int e = cand[i];
        cand[kept] = e;
        kept += key[e] >= theta;
    }
    for (int i = 0; i < kept; i++)
        top_offer(g, chosen, &nt, k, cand[i]);
}

static void pick_scored(struct gating *g, int *chosen)
{
    for (int e = 0; e < g->experts; e++)
        g->cand[e] = e;
    pick_among(g, g->cand, g->experts, chosen);
}

/* Sum of node n's q highest keys (all of them when it has fewer). q = 1 and 2 (DeepSeek-V3:
 * 8 experts over 4 nodes) keep their best in registers; larger q pass each key down a
 * sorted list, max up and min on. No branch to mispredict: keys are never NaN, so the
 * selects are maxsd/minsd (each written with its own comparison, or GCC shares one
 * comparison between a max and a min and branches on it). */
static double node_value(const struct gating *g, int n)
{
    const int q = g->q, lo = g->first[n], hi = g->first[n + 1], *m = g->members;
    const double *key = g->key;
    double b0 = -INFINITY, b1 = -INFINITY, s = 0;
    if (q == 1) {
        for (int i = lo; i < hi; i++)
            b0 = key[m[i]] > b0 ? key[m[i]] : b0;
        return hi > lo ? b0 : 0;
    }
    if (q == 2) {
        /* two independent chains (even and odd members), merged: half the latency */
        double c0 = -INFINITY, c1 = -INFINITY;
        int i = lo;
        for (; i + 1 < hi; i += 2) {
            double v = key[m[i]], w = key[m[i + 1]];
            double lv = v < b0 ? v : b0, lw = w < c0 ? w : c0;
            b0 = v > b0 ? v : b0;
            c0 = w > c0 ? w : c0;
            b1 = lv > b1 ? lv : b1;
            c1 = lw > c1 ? lw : c1;
        }
        if (i < hi) {
            double v = key[m[i]], lv = v < b0 ? v : b0;
            b0 = v > b0 ? v : b0;
            b1 = lv > b1 ? lv : b1;
        }
        double top = b0 > c0 ? b0 : c0, low = b0 < c0 ? b0 : c0, hi1 = b1 > c1 ? b1 : c1;
        return hi - lo >= 2 ? top + (low > hi1 ? low : hi1) : hi > lo ? top : 0;
    }
    double *best = g->qbest;
    for (int j = 0; j < q; j++)
        best[j] = -INFINITY;
    for (int i = lo; i < hi; i++) {
        double v = key[m[i]];
        for (int j = 0; j < q; j++) {
            double b = best[j];
            best[j] = b > v ? b : v;
            v = v < b ? v : b;
        }
    }
    for (int j = 0; j < q && j < hi - lo; j++)
        s += best[j];
    return s;
}

/* The best node left (highest value, then lowest index), taken out of node_score (set
 * to -inf; values are finite). Branch-free: the scan keeps the first strict maximum. */
static int node_next(struct gating *g)
{
    double *v = g->node_score, best = -INFINITY;
    int at = 0;
    for (int n = 0; n < g->nodes; n++) {
        bool above = v[n] > best;
        at = above ? n : at;
        best = above ? v[n] : best;
    }
    v[at] = -INFINITY;
    return at;
}

/* Top_k among the experts of the best nodes: M of them, more only if they hold fewer
 * than top_k distinct experts. Returns the nodes used. O(E + nodes M). */
static int pick_node_limited(struct gating *g, int *chosen, int *nodes_out)
{
    int used = 0, nc = 0;
    for (int n = 0; n < g->nodes; n++)
        g->node_score[n] = node_value(g, n);
    while (used < g->nodes && (used < g->max_nodes || nc < g->top_k)) {
        int n = node_next(g);
        nodes_out[used++] = n;
        for (int i = g->first[n]; i < g->first[n + 1]; i++) {
            int e = g->members[i];
            g->cand[nc] = e;
            nc += g->mark[e] != g->stamp;
            g->mark[e] = g->stamp;
        }
    }
    pick_among(g, g->cand, nc, chosen);
    return used;
}

int gating_pick(struct gating *g, struct rng *r, int *chosen, int *nodes_out)
{
    g->stamp++;
    g->has_normal = false;      /* a token's picks depend on r alone (replays, streams) */
    if (!g->scored) {
        if (g->dist == DIST_ZIPF)
            pick_weighted(g, r, chosen);
        else
            pick_uniform(g, r, chosen);
        return 0;
    }
    score_token(g, r);
    if (g->max_nodes && g->nodes)
        return pick_node_limited(g, chosen, nodes_out);
    pick_scored(g, chosen);
    return 0;
}

/* ---- setup ---- */

static int spec_check(const struct gating_spec *s)
{
    if (s->experts < 1 || s->experts > GATING_EXPERTS_MAX || s->top_k < 1 ||
        s->top_k > s->experts || !s->popularity || s->max_nodes < 0)
        return -EINVAL;
    if (s->distribution != DIST_UNIFORM && s->distribution != DIST_ZIPF &&
        s->distribution != DIST_AFFINITY)
        return -EINVAL;
    if (s->scoring != SCORE_SOFTMAX && s->scoring != SCORE_SIGMOID)
        return -EINVAL;
    if (s->distribution == DIST_AFFINITY && !(isfinite(s->concentration) && s->concentration > 0))
        return -EINVAL;
    for (int e = 0; e < s->experts; e++)
        if (!(s->popularity[e] > 0 && s->popularity[e] <= 1) ||
            (s->bias && !isfinite(s->bias[e])))
            return -EINVAL;
    return 0;
}

/* Marsaglia-Tsang constants per expert: alpha_e = c E p_e, boosted to alpha + 1 below 1. */
static void gamma_init(struct gating *g, double concentration)
{
    for (int e = 0; e < g->experts; e++) {
        double alpha = concentration * g->experts * g->p[e];
        g->ginv[e] = alpha < 1 ? 1 / alpha : 0;
        g->gd[e] = (alpha < 1 ? alpha + 1 : alpha) - 1.0 / 3;
        g->gc[e] = 1 / sqrt(9 * g->gd[e]);
    }
}

static int scores_init(struct gating *g, const struct gating_spec *s)
{
    size_t n = (size_t)g->experts;
    g->p = malloc(n * sizeof(*g->p));
    g->invp = malloc(n * sizeof(*g->invp));
    g->score = malloc(n * sizeof(*g->score));
    g->key = malloc(n * sizeof(*g->key));
    g->tie = malloc(n * sizeof(*g->tie));
    g->cand = malloc(n * sizeof(*g->cand));
    g->bias = calloc(n, sizeof(*g->bias));           /* no bias: all 0 */
    if (!g->p || !g->invp || !g->score || !g->key || !g->tie || !g->cand || !g->bias)
        return -ENOMEM;
    memcpy(g->p, s->popularity, n * sizeof(*g->p));
    for (size_t e = 0; e < n; e++)
        g->invp[e] = 1 / g->p[e];
    zig_init(g);
    if (s->bias)
        memcpy(g->bias, s->bias, n * sizeof(*g->bias));
    if (g->dist == DIST_AFFINITY) {
        g->gd = malloc(n * sizeof(*g->gd));
        g->gc = malloc(n * sizeof(*g->gc));
        g->ginv = malloc(n * sizeof(*g->ginv));
        if (!g->gd || !g->gc || !g->ginv)
            return -ENOMEM;
        gamma_init(g, s->concentration);
    }
    return 0;
}

int gating_create(struct gating **out, const struct gating_spec *s)
{
    *out = NULL;
    int rc = spec_check(s);
    if (rc)
        return rc;
    struct gating *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->experts = s->experts;
    g->top_k = s->top_k;
    g->dist = s->distribution;
    g->scoring = s->scoring;
    g->ordered = s->ordered;
    g->max_nodes = s->max_nodes;
    g->q = s->max_nodes && s->top_k / s->max_nodes > 1 ? s->top_k / s->max_nodes : 1;
    g->scored = s->distribution == DIST_AFFINITY || s->bias || s->max_nodes;
    g->mark = calloc((size_t)g->experts, sizeof(*g->mark));
    g->qbest = calloc((size_t)g->top_k, sizeof(*g->qbest));   /* q <= top_k */
    rc = !g->mark || !g->qbest ? -ENOMEM : 0;
    if (!rc && g->scored)
        rc = scores_init(g, s);
    else if (!rc && g->dist == DIST_ZIPF)
        rc = weights_init(g, s->popularity);
    if (rc) {
        gating_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Checks the layout: 0 with *twice set when an expert is on two nodes, or -EINVAL (an
 * expert twice on one node, or on none). */
static int nodes_check(const struct gating *g, int nodes, const int *first, const int *experts,
                       bool *twice)
{
    int *last = calloc((size_t)g->experts, sizeof(*last));   /* 1 + last node of e, 0 */
    int distinct = 0;
    if (!last)
        return -ENOMEM;
    *twice = false;
    for (int n = 0; n < nodes; n++) {
        if (first[n + 1] < first[n])
            goto out_free_last;
        for (int i = first[n]; i < first[n + 1]; i++) {
            int e = experts[i];
            if (e < 0 || e >= g->experts || last[e] == n + 1)
                goto out_free_last;
            *twice |= last[e] != 0;
            distinct += last[e] == 0;
            last[e] = n + 1;
        }
    }
    free(last);
    return distinct == g->experts ? 0 : -EINVAL;

out_free_last:
    free(last);
    return -EINVAL;
}

/* Without repeats, any M nodes hold top_k experts iff the M smallest do. */
static bool nodes_short(const struct gating *g, const int *first, bool twice)
{
    int *count = malloc((size_t)g->nodes * sizeof(*count));
    long long fewest = 0;
    if (!count)
        return true;
    for (int n = 0; n < g->nodes; n++)
        count[n] = first[n + 1] - first[n];
    qsort(count, (size_t)g->nodes, sizeof(*count), cmp_int);
    for (int n = 0; n < g->nodes && n < g->max_nodes; n++)
        fewest += count[n];
    free(count);
    return twice || (g->max_nodes < g->nodes && fewest < g->top_k);
}

int gating_set_nodes(struct gating *g, int nodes, const int *first, const int *experts,
                     bool *short_nodes)
{
    bool twice;
    if (nodes < 1 || !first || first[0] != 0 || (first[nodes] > 0 && !experts))
        return -EINVAL;
    int rc = nodes_check(g, nodes, first, experts, &twice);
    if (rc)
        return rc;
    int *f = malloc((size_t)(nodes + 1) * sizeof(*f));
    int *m = malloc((size_t)first[nodes] * sizeof(*m) + 1);
    double *ns = malloc((size_t)nodes * sizeof(*ns));
    if (!f || !m || !ns) {
        free(f);
        free(m);
        free(ns);
        return -ENOMEM;
    }
    memcpy(f, first, (size_t)(nodes + 1) * sizeof(*f));
    memcpy(m, experts, (size_t)first[nodes] * sizeof(*m));
    free(g->first);
    free(g->members);
    free(g->node_score);
    g->first = f;
    g->members = m;
    g->node_score = ns;
    g->nodes = nodes;
    if (short_nodes)
        *short_nodes = nodes_short(g, f, twice);
    return 0;
}

bool gating_scored(const struct gating *g)
{
    return g->scored;
}

const double *gating_scores(const struct gating *g)
{
    return g->scored ? g->score : NULL;
}

void gating_free(struct gating *g)
{
    if (!g)
        return;
    free(g->mark), free(g->weight), free(g->cut), free(g->alias), free(g->tree);
    free(g->p), free(g->invp), free(g->bias), free(g->score), free(g->key), free(g->tie), free(g->cand);
    free(g->gd), free(g->gc), free(g->ginv);
    free(g->first), free(g->members), free(g->node_score), free(g->qbest);
    free(g);
}

/* ---- popularity ---- */

static void shuffle(int *a, int n, struct rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* One drift step on perm (perm[i]: the expert of rank i + 1): m ranks drawn uniformly
 * without replacement (a partial Fisher-Yates over idx), their experts shuffled. */
static void drift_step(int *perm, int *idx, int *held, int n, int m, struct rng *r)
{
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int j = 0; j < m; j++) {
        int k = j + (int)rng_below(r, (uint64_t)(n - j)), t = idx[j];
        idx[j] = idx[k];
        idx[k] = t;
    }
    for (int j = 0; j < m; j++)
        held[j] = perm[idx[j]];
    shuffle(held, m, r);
    for (int j = 0; j < m; j++)
        perm[idx[j]] = held[j];
}

int gating_popularity(double *p, const struct config *c, int layer, int iteration,
                      uint64_t seed)
{
    const struct cfg_routing *rc = &c->routing;
    int n = c->model.experts;
    if (n < 1 || n > GATING_EXPERTS_MAX || layer < 0 || layer >= GATING_INDEX_MAX ||
        iteration < 0 || iteration >= GATING_INDEX_MAX)
        return -EINVAL;
    if (rc->distribution == DIST_UNIFORM) {
        for (int e = 0; e < n; e++)
            p[e] = 1.0 / n;
        return 0;
    }
    if ((rc->distribution != DIST_ZIPF && rc->distribution != DIST_AFFINITY) ||
        !(isfinite(rc->zipf_s) && rc->zipf_s >= 0) || !(rc->drift >= 0 && rc->drift <= 1))
        return -EINVAL;
    int *perm = malloc((size_t)n * 3 * sizeof(*perm));
    if (!perm)
        return -ENOMEM;
    uint64_t ranking = rc->per_layer ? (uint64_t)layer : 0;
    int m = (int)lround(rc->drift * n);
    struct rng r;
    rng_seed_stream(&r, seed, STREAM_RANKS - ranking);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    shuffle(perm, n, &r);
    for (int it = 1; m > 0 && it <= iteration; it++) {
        rng_seed_stream(&r, seed, STREAM_DRIFT + ranking * GATING_INDEX_MAX + (uint64_t)it);
        drift_step(perm, perm + n, perm + 2 * n, n, m, &r);
    }
    /* H(E, s) summed from the smallest term up, for accuracy. */
    double h = 0;
    for (int rank = n; rank >= 1; rank--)
        h += pow(rank, -rc->zipf_s);
    for (int i = 0; i < n; i++)
        p[perm[i]] = pow(i + 1, -rc->zipf_s) / h;
    free(perm);
    return 0;
}
