/* limits.c: a run's cost from its config, the limits, the progress line; see limits.h.
 *
 * Bytes per item, from the modules' layouts (x86-64) and measured peak RSS
 * (docs/PERFORMANCE.md, "Limits"):
 *   a flow: 32 B result record (a2a_flow), 12 B of indices, 40 B start key and batch, the
 *     network's flow, group member and heap entries; about 210 B measured on a 1024-GPU
 *     all-to-all: 256.
 *   a link utilization sample: 16 B; up to 58 samples per flow measured: 128 per flow.
 *   a step sub-op: 72 B (struct sop), 8 B of stream queues, about 3 dependency edges of
 *     12 B (two ints and a successor slot): 128; with --trace, a 40 B step_slice more.
 *   the process itself (code, libraries, stdio): about 2 MB measured: 4 MiB.
 */
#include "limits.h"
#include "balance.h"
#include "model.h"
#include "serve.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BASE_BYTES (4.0 * 1048576)
#define FLOW_BYTES 256.0
#define SERIES_FLOW_BYTES (128.0 * 16)
#define SUBOP_BYTES 128.0
#define SLICE_BYTES 40.0
#define LINK_BYTES 256.0      /* topology link, network link state, per-link results */
#define GPU_BYTES 128.0       /* per-GPU results and tables */

void limits_default(struct limits *l)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    l->max_events = LIMITS_EVENTS_DEFAULT;
    l->max_bytes = pages > 0 && page > 0 ? (double)pages * (double)page / 2 : LIMITS_MEM_FALLBACK;
}

/* A positive finite number at s, starting with a digit or '.'; *end after it. */
static int parse_number(const char *s, double *out, char **end)
{
    if (!((*s >= '0' && *s <= '9') || *s == '.'))
        return -EINVAL;
    errno = 0;
    double v = strtod(s, end);
    if (errno || *end == s || !isfinite(v) || !(v > 0))
        return -EINVAL;
    *out = v;
    return 0;
}

int limits_parse_bytes(const char *s, double *out)
{
    /* As config.c's sizes: SI and binary suffixes. */
    static const struct {
        const char *suffix;
        double mul;
    } units[] = {
        { "", 1 },          { "K", 1e3 },         { "M", 1e6 },         { "G", 1e9 },
        { "T", 1e12 },      { "KB", 1e3 },        { "MB", 1e6 },        { "GB", 1e9 },
        { "TB", 1e12 },     { "KiB", 1024.0 },    { "MiB", 1048576.0 }, { "GiB", 1073741824.0 },
        { "TiB", 1099511627776.0 },
    };
    char *end;
    double v;
    if (parse_number(s, &v, &end))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(end, units[i].suffix) && isfinite(v * units[i].mul)) {
            *out = v * units[i].mul;
            return 0;
        }
    return -EINVAL;
}

int limits_parse_count(const char *s, double *out)
{
    char *end;
    double v;
    if (parse_number(s, &v, &end) || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

double limits_matrix_bytes(int gpus)
{
    return 8.0 * gpus * gpus;
}

/* ---- the estimate ---- */

/* The layout, from the keys that define it (derived keys recomputed). */
struct shape {
    double nodes, gpn, G, links;
    double E, slots;          /* experts; physical slots per EP group */
    double pp, dp, ep;        /* ep: of the stage (a step) or of all GPUs */
};

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void shape_of(struct shape *s, const struct config *c, bool step)
{
    const struct cfg_cluster *cl = &c->cluster;
    s->nodes = clamp(cl->nodes, 1, INFINITY);
    s->gpn = clamp(cl->gpus_per_node, 1, INFINITY);
    s->G = s->nodes * s->gpn;
    double leaves = cl->nodes_per_leaf > 0 && cl->nodes_per_leaf < s->nodes
                        ? ceil(s->nodes / cl->nodes_per_leaf) : 0;
    s->links = 4 * s->G + 2 * leaves;
    s->E = clamp(c->model.experts, 1, INFINITY);
    s->slots = s->E + clamp(c->balance.redundant_experts, 0, INFINITY);
    s->pp = step ? clamp(c->parallel.pp, 1, s->G) : 1;
    s->dp = clamp(floor(s->G / s->pp), 1, INFINITY);
    s->ep = clamp(c->parallel.ep < 1 ? s->dp : c->parallel.ep, 1, s->dp);
}

/* One routing result and its scratch on g GPUs (routing.h's arrays; gating per expert). */
static double routing_bytes(double g, const struct shape *s)
{
    double groups = fmax(1, floor(g / s->ep));
    return 8 * g * g + 8 * g * (g / s->gpn) + 8 * g * s->E + 24 * groups * s->E +
           8 * groups * s->slots + 8 * g + 256 * s->E + 64 * g;
}

/* Routing passes per routed layer over `rounds` rounds (balance.h): capacity routes twice
 * (count, then keep); an eplb placement adds a pass under contiguous placement. */
static double passes(const struct config *c, double rounds)
{
    double p = c->balance.capacity_factor > 0 ? 2 : 1;
    bool eplb = c->balance.placement == PLACE_EPLB || c->balance.placement == PLACE_EPLB_GLOBAL;
    return p * (rounds + (eplb ? 1 : 0));
}

/* The rounds a run routes each MoE layer: balance.iterations under the aux-loss-free bias
 * (balance_run_iterates), else one. */
static double run_rounds(const struct config *c)
{
    return balance_run_iterates(c) ? clamp(c->balance.iterations, 1, INFINITY) : 1;
}

static double tokens_of(int64_t t)
{
    return clamp((double)t, 0, INFINITY);
}

/* moesim run without a schedule: one layer's dispatch and combine (or an all-to-all, or
 * a matrix) through the network. */
static void est_layer(struct limits_est *e, const struct config *c, bool trace)
{
    struct shape s;
    shape_of(&s, c, false);
    double G = s.G, mats, rbytes = 0;
    if (c->traffic.pattern == PATTERN_MOE) {
        e->tokens = G * tokens_of(c->routing.tokens_per_gpu) * passes(c, run_rounds(c));
        e->flows = G * (s.ep - 1) * (c->traffic.combine ? 2 : 1);
        mats = 2;
        rbytes = routing_bytes(G, &s);
    } else {
        e->flows = c->traffic.pattern == PATTERN_ALLTOALL && c->traffic.bytes_per_pair == 0
                       ? 0 : G * (G - 1);
        mats = c->traffic.pattern == PATTERN_MATRIX ? 2 : 1;  /* the reader's line table */
    }
    e->bytes = BASE_BYTES + s.links * LINK_BYTES + G * GPU_BYTES + mats * 8 * G * G + rbytes +
               e->flows * (FLOW_BYTES + (trace ? SERIES_FLOW_BYTES : 0));
}

/* moesim run with a schedule: one training step (step.h). */
static void est_step(struct limits_est *e, const struct config *c, bool trace)
{
    struct shape s;
    shape_of(&s, c, true);
    double pp = s.pp, dp = s.dp, ep = s.ep, groups = fmax(1, floor(dp / ep));
    double pieces = c->schedule.kind == SCHED_INTERLEAVED_1F1B ? pp * clamp(c->parallel.vpp, 1, INFINITY)
                    : c->schedule.kind == SCHED_DUALPIPEV ? 2 * pp : pp;
    double L = clamp(c->model.layers, 1, INFINITY);
    double Lm = clamp(model_cfg_moe_layers(&c->model), 0, L), Ld = L - Lm;
    /* an inference step: one forward of its micro-batches of serve_microbatch_tokens
     * tokens (serve.h) */
    bool serve = config_serving(c);
    double M = clamp(serve ? c->serve.microbatches : c->schedule.microbatches, 1, INFINITY);
    double T = serve ? (double)serve_microbatch_tokens(c) : (double)c->schedule.micro_batch_tokens;
    double shared = c->model.shared_experts > 0 ? 1 : 0;
    /* Per micro-batch through all pieces: a MoE layer's F is attn, gate, dispatch, shared,
     * experts, combine, its B combine, shared, experts, experts_w, dispatch, gate, attn; a
     * dense layer's F and B attn and ffn each; per piece and op a join and a send (F: a
     * side send), a W; embed and head in F and B. Then a DP reduce per piece and lane
     * (a rank holds at most two copies of a piece). */
    double per_mb = Lm * (11 + 2 * shared) + Ld * 4 + 6 * pieces + 4;
    /* zb1p's W is chunks (step.h): per MoE layer the routed experts' (out of the B), the
     * shared experts' and the rest, one per dense layer, the head's. */
    if (c->schedule.kind == SCHED_ZB1P)
        per_mb += Lm * (1 + shared) + Ld + 1;
    e->subops = groups * (M * per_mb + 2 * pieces);
    e->tokens = Lm * dp * tokens_of((int64_t)T) * passes(c, run_rounds(c));
    /* Four all-to-alls per MoE layer on the stage (each flow inside an EP group), the
     * sends between rank pairs, two ring steps per piece's DP reduce. */
    double a2a_flows = dp * (ep - 1);
    e->flows = 4 * Lm * a2a_flows + pp * (pp - 1) * dp + 2 * pieces * dp;
    double memo = (4 * Lm + 2 * pieces) * (8 * dp * dp + 8 * dp + 64);
    double layer = routing_bytes(dp, &s) + 4 * 8 * dp * dp + fmax(a2a_flows, dp) * FLOW_BYTES;
    double tables = Lm * (32 * dp + 32 * groups + 64) + L * 64 + pieces * dp * 8 +
                    pp * pp * groups * 8 + pp * groups * (16 * ep + 128);
    double ops = M * pieces * 3 * (16 + groups * 12);    /* schedule, op maps */
    e->bytes = BASE_BYTES + (s.links + 4 * dp) * LINK_BYTES + s.G * GPU_BYTES + memo + layer +
               tables + ops + e->subops * (SUBOP_BYTES + (trace ? SLICE_BYTES : 0));
}

/* moesim balance, one policy (balance.h). */
static void est_balance(struct limits_est *e, const struct config *c)
{
    struct shape s;
    shape_of(&s, c, false);
    double G = s.G, it = clamp(c->balance.iterations, 1, INFINITY);
    e->tokens = G * tokens_of(c->routing.tokens_per_gpu) * passes(c, it);
    e->flows = 2 * G * (s.ep - 1);
    e->kept_bytes = it * 24 + fmax(1, floor(G / s.ep)) * s.E * 16 + s.E * 4 + 256;
    e->bytes = BASE_BYTES + s.links * LINK_BYTES + G * GPU_BYTES + routing_bytes(G, &s) +
               2 * 8 * G * G + e->flows * FLOW_BYTES + e->kept_bytes;
}

void limits_estimate(struct limits_est *e, const struct config *c, enum limits_cmd cmd,
                     bool trace)
{
    memset(e, 0, sizeof(*e));
    if (cmd == LIMITS_BALANCE)
        est_balance(e, c);
    else if (c->schedule.kind != SCHED_NONE)
        est_step(e, c, trace);
    else
        est_layer(e, c, trace);
    e->events = e->tokens + 2 * e->flows + e->subops;
}

void limits_add(struct limits_est *sum, const struct limits_est *e)
{
    sum->tokens += e->tokens;
    sum->flows += e->flows;
    sum->subops += e->subops;
    sum->events += e->events;
    sum->bytes = fmax(sum->bytes, sum->kept_bytes + e->bytes);
    sum->kept_bytes += e->kept_bytes;
}

/* ---- the check ---- */

#define KEY(name, field, is64) { name, offsetof(struct config, field), is64 }
/* The keys that scale the work or the memory; to add one, add a row (int or int64_t). */
static const struct limits_key keys[] = {
    KEY("cluster.nodes", cluster.nodes, false),
    KEY("cluster.gpus_per_node", cluster.gpus_per_node, false),
    KEY("model.layers", model.layers, false),
    KEY("model.experts", model.experts, false),
    KEY("routing.tokens_per_gpu", routing.tokens_per_gpu, true),
    KEY("schedule.microbatches", schedule.microbatches, false),
    KEY("schedule.micro_batch_tokens", schedule.micro_batch_tokens, true),
    KEY("balance.iterations", balance.iterations, false),
    KEY("parallel.vpp", parallel.vpp, false),
};
#define NKEYS ((int)(sizeof(keys) / sizeof(keys[0])))

const struct limits_key *limits_keys(int *n)
{
    *n = NKEYS;
    return keys;
}

static int64_t key_get(const struct config *c, int k)
{
    const char *p = (const char *)c + keys[k].off;
    int64_t v64;
    int v;
    if (keys[k].is64) {
        memcpy(&v64, p, sizeof(v64));
        return v64;
    }
    memcpy(&v, p, sizeof(v));
    return v;
}

static void key_set_one(struct config *c, int k)
{
    char *p = (char *)c + keys[k].off;
    int64_t v64 = 1;
    int v = 1;
    if (keys[k].is64)
        memcpy(p, &v64, sizeof(v64));
    else
        memcpy(p, &v, sizeof(v));
}

/* The runs of c[0..n) one after another; key k (>= 0) set to 1 in each. */
static void est_all(struct limits_est *sum, const struct config *const *c, int n,
                    enum limits_cmd cmd, bool trace, int k)
{
    struct config tmp;
    struct limits_est e;
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < n; i++) {
        const struct config *ci = c[i];
        if (k >= 0) {
            tmp = *c[i];
            key_set_one(&tmp, k);
            ci = &tmp;
        }
        limits_estimate(&e, ci, cmd, trace);
        limits_add(sum, &e);
    }
}

int limits_dominant(const struct config *const *c, int n, enum limits_cmd cmd, bool trace,
                    bool bytes)
{
    struct limits_est all, e;
    est_all(&all, c, n, cmd, trace, -1);
    double best = bytes ? all.bytes : all.events;
    int key = -1;
    for (int k = 0; k < NKEYS; k++) {
        est_all(&e, c, n, cmd, trace, k);
        double v = bytes ? e.bytes : e.events;
        if (v < best) {
            best = v;
            key = k;
        }
    }
    return key;
}

static const char *fmt_bytes(char *buf, size_t len, double b)
{
    if (b >= 1e12)
        snprintf(buf, len, "%.3g TB", b / 1e12);
    else if (b >= 1e9)
        snprintf(buf, len, "%.3g GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(buf, len, "%.3g MB", b / 1e6);
    else if (b >= 1e3)
        snprintf(buf, len, "%.3g kB", b / 1e3);
    else
        snprintf(buf, len, "%.0f B", b);
    return buf;
}

int limits_check(const struct config *const *c, int n, enum limits_cmd cmd, bool trace,
                 const struct limits *l, char *msg, size_t len)
{
    struct limits_est e;
    est_all(&e, c, n, cmd, trace, -1);
    bool mem = e.bytes > l->max_bytes;
    if (!mem && !(e.events > l->max_events))
        return 0;
    char who[96] = "the run", need[32], lim[32];
    int k = limits_dominant(c, n, cmd, trace, mem);
    if (k >= 0) {
        int64_t v = key_get(c[0], k);
        for (int i = 1; i < n; i++)
            v = key_get(c[i], k) > v ? key_get(c[i], k) : v;
        snprintf(who, sizeof(who), "%s = %lld", keys[k].name, (long long)v);
    }
    if (mem)
        snprintf(msg, len, "%s: the run needs about %s of memory, more than the limit of %s "
                 "(--max-mem)%s", who, fmt_bytes(need, sizeof(need), e.bytes),
                 fmt_bytes(lim, sizeof(lim), l->max_bytes), trace ? " with --trace" : "");
    else
        snprintf(msg, len, "%s: the run needs about %.3g events (routed tokens, flow starts and "
                 "ends, step sub-ops), more than the limit of %.3g (--max-events)", who,
                 e.events, l->max_events);
    return -E2BIG;
}

/* ---- the progress line ---- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void limits_tty_init(struct limits_tty *t, const char *prefix)
{
    memset(t, 0, sizeof(*t));
    t->on = isatty(STDERR_FILENO) == 1;
    t->last_s = -1;
    limits_tty_prefix(t, prefix);
}

void limits_tty_prefix(struct limits_tty *t, const char *prefix)
{
    snprintf(t->prefix, sizeof(t->prefix), "%s", prefix);
    t->last_s = -1;           /* a new prefix is drawn at once */
}

static void tty_draw(void *arg, double frac, const char *unit, int64_t done, int64_t total)
{
    struct limits_tty *t = arg;
    double now = mono_s();
    if (t->last_s >= 0 && now - t->last_s < 0.1)
        return;
    t->last_s = now;
    char line[192];
    int n = snprintf(line, sizeof(line), "%s %d%% (%s %lld/%lld)", t->prefix,
                     (int)(100 * clamp(frac, 0, 1)), unit, (long long)done, (long long)total);
    n = n < (int)sizeof(line) ? n : (int)sizeof(line) - 1;
    fprintf(stderr, "\r%s%*s", line, t->width > n ? t->width - n : 0, "");
    fflush(stderr);
    t->width = t->width > n ? t->width : n;
}

struct limits_progress limits_tty_hook(struct limits_tty *t)
{
    return (struct limits_progress){ t->on ? tty_draw : NULL, t };
}

void limits_tty_clear(struct limits_tty *t)
{
    if (t->width > 0) {
        fprintf(stderr, "\r%*s\r", t->width, "");
        fflush(stderr);
    }
    t->width = 0;
}
