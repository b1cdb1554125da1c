/* cmd_calib.c: `moeprof calibrate`; see cmd_calib.h. */
#include "cmd_calib.h"
#include "args.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "caltab.h"
#include "config.h"
#include "fit.h"
#include "moe_cpu.h"
#include "msgband.h"
#ifdef MOEPROF_CUDA
#include "gpu.h"
#include "moe_cuda.h"
#endif
#include "ofile.h"

#define MSG_MAX 4096
#define FILES_MAX 256
#define REPS_MAX 1000
#define TOKENS_MAX 64          /* rows of the expert ladder at most (1, 2, 4, ... 2^30) */

/* The message ladder: 8 B per peer, x2, up to 2 MiB or, where the configured layer or
 * --fit-bytes names larger messages, the power of two that covers them, at most MSG_TOP
 * (a MoE dispatch of a few thousand tokens of a few thousand elements sends ~10^5..10^7
 * B per peer). x2 steps place a protocol switch within a factor of 2. */
#define MSG_LOW ((size_t)8)
#define MSG_TOP_MIN ((size_t)2 << 20)
#define MSG_TOP ((size_t)16 << 20)
#define MSG_SIZES_MAX 32
/* Bands (fit.h): up to 3, each of 4 sizes at least (2 more than its line has
 * parameters, so that a band is not made of a few noisy points); a band more only
 * while the lines miss the medians by more than BAND_TOL rms (the noise of a quiet
 * run's medians is a few percent). */
#define BAND_MIN_POINTS 4
#define BAND_TOL 0.05

static const char usage[] =
    "usage: moeprof calibrate CONFIG... [--set section.key=value]... [--out FILE]\n"
    "                         [--reps N] [--buffers hot|cold] [--backend cpu|cuda]\n"
    "                         [--seed N] [--fit-bytes A..B]\n"
    "\n"
    "Measures what moesim's model needs, on the ranks mpirun started:\n"
    "  - one routed expert's FFN, forward and backward, on 1, 2, 4, ... up to\n"
    "    routing.tokens_per_gpu x model.top_k rows ([model] hidden, expert_ffn_hidden),\n"
    "    every rank at once, on the backend in use;\n"
    "  - ping-pong and all-to-all time against bytes (8 B .. 2 MiB per peer, x2, up\n"
    "    to 16 MiB for a layer that sends more; over MPI, host memory) between ranks\n"
    "    of one node and, with several nodes, across\n"
    "    nodes, fitted piecewise: bands of sizes (MPI switches protocol with the size),\n"
    "    each with its own latency + bytes / bandwidth (relative least squares).\n"
    "Prints every median with its range over the repetitions, each band's line and\n"
    "residuals, and the written line fitted per repetition (the figures' noise). The\n"
    "line written is the band's that holds the layer's all-to-all bytes per peer\n"
    "(tokens_per_gpu x top_k x hidden x element bytes / parallel.ep).\n"
    "\n"
    "  --out FILE    write the INI fragment FILE ([cluster] nvlink_* / nic_* keys,\n"
    "                [calibration] expert_table) and the expert table beside it (FILE\n"
    "                less .ini, plus .csv); use it as moesim's second config file:\n"
    "                moesim run CLUSTER.ini FILE MODEL.ini\n"
    "  --reps N      repetitions of every measurement (5; 1..1000)\n"
    "  --buffers     hot (operations back to back, buffers in cache) or cold (64 MiB\n"
    "                written elsewhere, then the send buffer, before each operation,\n"
    "                as a layer's GEMMs leave the caches); the message tests (hot)\n"
    "  --backend     cpu (fp32) or cuda (bf16, one rank per GPU; where nvcc and NCCL\n"
    "                were found at build time)\n"
    "  --seed N      the expert's weights and rows (1)\n"
    "  --fit-bytes A..B  write one line fitted to the sizes from A to B bytes per peer\n"
    "                (integers, K or M suffix: x1024, x1048576; at least 2 of the\n"
    "                ladder's sizes, B at most 16M) instead of the layer's band\n";

struct cal_args {
    const char *files[FILES_MAX];
    int nfiles;
    const char *sets[FILES_MAX];
    int nsets;
    const char *out;
    int reps;
    bool cuda, cold, help;
    uint64_t seed;
    double fit_lo_B, fit_hi_B;          /* --fit-bytes; 0, 0: the layer's band */
};

/* msg = "" + the formatted text; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static int bad(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(msg, n, "moeprof calibrate: ");
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < n)
        vsnprintf(msg + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* One size of --fit-bytes: digits, then K (x1024) or M (x1048576) or nothing, up to
 * (but not past) the '.' of "..", or the end. 0, or -1. */
static int fit_size(const char *s, size_t len, double *out)
{
    char num[24];
    size_t k = len;
    double unit = 1;
    if (len && (s[len - 1] == 'K' || s[len - 1] == 'M')) {
        unit = s[len - 1] == 'K' ? 1024.0 : 1048576.0;
        k--;
    }
    long long v;
    if (!k || k >= sizeof(num))
        return -1;
    memcpy(num, s, k);
    num[k] = 0;
    if (args_uint(num, 0, (long long)MSG_TOP, &v))
        return -1;
    *out = (double)v * unit;
    return 0;
}

/* --fit-bytes A..B: 0 <= A < B <= MSG_TOP. 0, or -1. */
static int fit_range(const char *s, double *lo, double *hi)
{
    const char *dots = strstr(s, "..");
    if (!dots || fit_size(s, (size_t)(dots - s), lo) ||
        fit_size(dots + 2, strlen(dots + 2), hi))
        return -1;
    return *lo < *hi && *hi <= (double)MSG_TOP ? 0 : -1;
}

static int parse(struct cal_args *a, int argc, char **argv, char *msg, size_t n)
{
    enum { O_OUT = 256, O_REPS, O_BACKEND, O_SEED, O_BUFFERS, O_FIT };
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },
        { "out", required_argument, NULL, O_OUT },
        { "reps", required_argument, NULL, O_REPS },
        { "backend", required_argument, NULL, O_BACKEND },
        { "seed", required_argument, NULL, O_SEED },
        { "buffers", required_argument, NULL, O_BUFFERS },
        { "fit-bytes", required_argument, NULL, O_FIT },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    memset(a, 0, sizeof(*a));
    a->reps = 5;
    a->seed = 1;
    opterr = 0;
    optind = 1;
    int ch;
    long long v;
    while ((ch = getopt_long(argc, argv, ":s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (a->nsets == FILES_MAX)
                return bad(msg, n, "more than 256 --set options");
            a->sets[a->nsets++] = optarg;
            break;
        case O_OUT:
            if (a->out)
                return bad(msg, n, "--out given twice ('%s' and '%s')", a->out, optarg);
            a->out = optarg;
            break;
        case O_REPS:
            if (args_uint(optarg, 1, REPS_MAX, &v))
                return bad(msg, n, "--reps: '%s' is not an integer in 1..1000", optarg);
            a->reps = (int)v;
            break;
        case O_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return bad(msg, n, "--backend: '%s' is not cpu or cuda", optarg);
            a->cuda = !strcmp(optarg, "cuda");
            break;
        case O_BUFFERS:
            if (strcmp(optarg, "hot") && strcmp(optarg, "cold"))
                return bad(msg, n, "--buffers: '%s' is not hot or cold", optarg);
            a->cold = !strcmp(optarg, "cold");
            break;
        case O_SEED:
            if (args_uint(optarg, 0, 1ll << 62, &v))
                return bad(msg, n, "--seed: '%s' is not a non-negative integer",
                           optarg);
            a->seed = (uint64_t)v;
            break;
        case O_FIT:
            if (fit_range(optarg, &a->fit_lo_B, &a->fit_hi_B))
                return bad(msg, n, "--fit-bytes: '%s' is not A..B, bytes per peer with "
                           "0 <= A < B <= 16M (integers, K or M suffix)", optarg);
            break;
        case 'h':
            a->help = true;
            return 0;
        case ':':
            return bad(msg, n, "option '%s' needs a value", argv[optind - 1]);
        default:
            return bad(msg, n, "unknown option '%s' (see moeprof calibrate --help)",
                       argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (a->nfiles == FILES_MAX)
            return bad(msg, n, "more than 256 CONFIG files");
        a->files[a->nfiles++] = argv[i];
    }
    if (!a->nfiles)
        return bad(msg, n, "no CONFIG file given (see moeprof calibrate --help)");
    return 0;
}

/* The checks calibrate adds to config_load's. */
static int check_config(const struct cal_args *a, const struct config *c,
                        struct cfg_loader *k, char *msg, size_t n)
{
    static const char *const ffn_key[] = { "model", "expert_ffn_hidden" };
    static const char *const hidden_key[] = { "model", "hidden" };
    static const char *const tokens_keys[] = { "routing", "tokens_per_gpu", "model", "top_k" };
    struct cfg_err err;
    int rc = 0;
#ifndef MOEPROF_CUDA
    if (a->cuda)
        return bad(msg, n, "--backend cuda: not built into this moeprof "
                   "(nvcc and NCCL were not found at build time)");
#endif
    if (c->model.expert_ffn_hidden < 1)
        rc = config_rule_fail(k, ffn_key, 1, &err, "model.expert_ffn_hidden = %d: not set "
                              "(calibrate needs the experts' width)",
                              c->model.expert_ffn_hidden);
    else if (a->cuda && (c->model.hidden % 8 || c->model.expert_ffn_hidden % 8))
        rc = config_rule_fail(k, c->model.hidden % 8 ? hidden_key : ffn_key, 1, &err,
                              "%s = %d is not a multiple of 8 (--backend cuda)",
                              c->model.hidden % 8 ? "model.hidden" : "model.expert_ffn_hidden",
                              c->model.hidden % 8 ? c->model.hidden
                                                  : c->model.expert_ffn_hidden);
    else if ((double)c->routing.tokens_per_gpu * c->model.top_k > (double)(1 << 30))
        rc = config_rule_fail(k, tokens_keys, 2, &err, "routing.tokens_per_gpu = %lld: too "
                              "many rows for one expert (x model.top_k = %d; at most 2^30)",
                              (long long)c->routing.tokens_per_gpu, c->model.top_k);
    if (rc)
        snprintf(msg, n, "%s", err.msg);
    return rc ? -EINVAL : 0;
}

/* --out FILE: the table's path (FILE less ".ini", plus ".csv"), and its name as the
 * fragment writes it (the fragment's folder is the table's). */
static int out_paths(const char *out, char *table, size_t n, const char **name, char *msg,
                     size_t mn)
{
    size_t len = strlen(out);
    if (!len || !strcmp(out, "-"))
        return bad(msg, mn, "--out '%s': needs a file name (the expert "
                   "table goes beside it)", out);
    if (len > 4 && !strcmp(out + len - 4, ".ini"))
        len -= 4;
    if (len + 5 > n || len + 5 > CFG_PATH_MAX)
        return bad(msg, mn, "--out '%s': name too long", out);
    snprintf(table, n, "%.*s.csv", (int)len, out);
    const char *slash = strrchr(table, '/');
    *name = slash ? slash + 1 : table;
    /* what inih would read otherwise: comments, or blanks it strips */
    const size_t nl = strlen(*name);          /* >= 4: ".csv" */
    if ((*name)[strcspn(*name, ";#\r\n")] || **name == ' ' || **name == '\t' ||
        (nl > 4 && ((*name)[nl - 5] == ' ' || (*name)[nl - 5] == '\t')))
        return bad(msg, mn, "--out '%s': the table's name '%s' would not "
                   "read back from an INI file (';', '#' or blanks at its ends)", out, *name);
    return 0;
}

/* Neither output is an input (a CONFIG file or a file the config names), nor the other
 * output, and both can be written. */
static int check_out(const struct cal_args *a, const struct config *c, const char *table,
                     char *msg, size_t n)
{
    const char *outs[2] = { a->out, table };
    struct ofile_id id[2];
    for (int i = 0; i < 2; i++) {
        struct ofile o;
        int rc = ofile_probe(&o, outs[i]);
        if (rc)
            return bad(msg, n, "--out %s: %s", outs[i], strerror(-rc));
        if (o.kind != OFILE_REPLACE)
            return bad(msg, n, "--out %s: %s", outs[i],
                       "not a regular file (the fragment names the table by its path)");
        if ((rc = ofile_identify(outs[i], &id[i])))
            return bad(msg, n, "--out %s: %s", outs[i], strerror(-rc));
    }
    if (ofile_same(&id[0], &id[1]))
        return bad(msg, n, "--out %s: the fragment and the table %s are "
                   "one file", a->out, table);
    const char *ins[FILES_MAX + 3];
    int nin = 0;
    for (int i = 0; i < a->nfiles; i++)
        ins[nin++] = a->files[i];
    ins[nin++] = c->calibration.expert_table;
    ins[nin++] = c->routing.trace;
    ins[nin++] = c->traffic.matrix;
    for (int i = 0; i < nin; i++) {
        struct ofile_id in;
        if (!ins[i][0] || ofile_identify(ins[i], &in))
            continue;
        for (int j = 0; j < 2; j++)
            if (ofile_same(&in, &id[j]))
                return bad(msg, n, "--out: would overwrite %s, an input "
                           "(%s)", outs[j], ins[i]);
    }
    return 0;
}

/* The expert ladder: 1, 2, 4, ... below top, then top. */
static int token_ladder(int top, int *tok)
{
    int n = 0;
    for (int t = 1; t < top && n < TOKENS_MAX - 1; t *= 2)
        tok[n++] = t;
    tok[n++] = top;
    return n;
}

/* ---- printing (rank 0) ---- */

static int print_experts(const int *tok, int n, int reps, int ranks, const double *fwd,
                         const double *bwd, struct ctab_row *rows)
{
    const int m = reps * ranks;
    printf("# expert FFN: one routed expert on `tokens` rows, every rank at once; median "
           "and range over %d repetitions x %d ranks\n", reps, ranks);
    printf("#   tokens      fwd      min      max      bwd      min      max  fwd spread\n");
    printf("#              (us)     (us)     (us)     (us)     (us)     (us)        (%%)\n");
    for (int i = 0; i < n; i++) {
        rows[i].tokens = tok[i];
        int rc = fit_stats(fwd + (size_t)i * m, m, &rows[i].fwd_s);
        rc = rc ? rc : fit_stats(bwd + (size_t)i * m, m, &rows[i].bwd_s);
        if (rc)
            return rc;
        printf("  %8d %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %11.1f\n", tok[i],
               rows[i].fwd_s.median * 1e6, rows[i].fwd_s.min * 1e6, rows[i].fwd_s.max * 1e6,
               rows[i].bwd_s.median * 1e6, rows[i].bwd_s.min * 1e6, rows[i].bwd_s.max * 1e6,
               fit_spread(&rows[i].fwd_s) * 100);
    }
    return 0;
}

/* The message sizes timed and what the written line is fitted to. */
struct msg_plan {
    size_t bytes[MSG_SIZES_MAX];        /* per peer, increasing */
    int n;
    struct mband_span layer;            /* the configured layer's bytes per peer */
    double fit_lo_B, fit_hi_B;          /* --fit-bytes; 0, 0: the layer's band */
};

/* The ladder: MSG_LOW x 2^i up to the top (see MSG_TOP). */
static void plan_ladder(struct msg_plan *p)
{
    double want = p->fit_hi_B > p->layer.hi_B ? p->fit_hi_B : p->layer.hi_B;
    size_t top = MSG_TOP_MIN;
    while (top < want && top < MSG_TOP)
        top *= 2;
    p->n = 0;
    for (size_t b = MSG_LOW; b <= top && p->n < MSG_SIZES_MAX; b *= 2)
        p->bytes[p->n++] = b;
}

/* The ladder's points inside --fit-bytes: [*i0, *i1]; the count. */
static int plan_range(const struct msg_plan *p, int *i0, int *i1)
{
    *i0 = p->n;
    *i1 = -1;
    for (int i = 0; i < p->n; i++)
        if (p->bytes[i] >= p->fit_lo_B && p->bytes[i] <= p->fit_hi_B) {
            *i0 = *i0 < i ? *i0 : i;
            *i1 = i;
        }
    return *i1 - *i0 + 1;
}

/* For comparison, one line over the whole ladder (what calibrate wrote before bands):
 * its rms over every size and over the written line's sizes [i0, i1], beside the
 * written line's there. */
static void one_line_note(const char *name, const double *x, const double *med, int n,
                          int i0, int i1, const struct fit_line *w)
{
    struct fit_line one;
    double r[MSG_SIZES_MAX], ss = 0;
    if (fit_latency_bw(x, med, n, &one, r))
        return;
    for (int i = i0; i <= i1; i++)
        ss += r[i] * r[i];
    printf("# %s, one line over every size (not written): latency %.3f us, bandwidth "
           "%.4g GB/s, rms %.2f %%; over the written sizes rms %.2f %%, the written "
           "line's %.2f %%\n", name, one.lat_s * 1e6, one.bw_Bps / 1e9, one.rms_rel * 100,
           sqrt(ss / (i1 - i0 + 1)) * 100, w->rms_rel * 100);
}

/* Fits samples t [n x reps] of one test, x = peers x size: the bands of the medians
 * (each size printed with its band's line and residual), the written line (the band
 * that holds the layer's bytes per peer, or a line over --fit-bytes's sizes) and that
 * line fitted again per repetition (its latency and bandwidth statistics). 0, or -EDOM
 * (the written line has no bandwidth), -EINVAL, -ENOMEM. */
static int fit_test(const char *name, int peers, const struct msg_plan *p, const double *t,
                    int reps, struct fit_line *fit, struct fit_stats *lat,
                    struct fit_stats *bw, struct ctab_bands *bands)
{
    const int n = p->n;
    double x[MSG_SIZES_MAX], med[MSG_SIZES_MAX], resid[MSG_SIZES_MAX], y[MSG_SIZES_MAX];
    struct fit_stats st[MSG_SIZES_MAX];
    for (int i = 0; i < n; i++) {
        x[i] = (double)peers * p->bytes[i];
        int rc = fit_stats(t + (size_t)i * reps, reps, &st[i]);
        if (rc)
            return rc;
        med[i] = st[i].median;
    }
    int rc = fit_bands(x, med, n, CTAB_BANDS_MAX, BAND_MIN_POINTS, BAND_TOL, bands->b,
                       &bands->nb, resid);
    if (rc)
        return rc;
    int i0, i1, band = 0;
    if (p->fit_hi_B > 0) {
        bands->bw_from = -1;
        bands->chosen = -1;
        plan_range(p, &i0, &i1);
        rc = fit_latency_bw(x + i0, med + i0, i1 - i0 + 1, fit, NULL);
    } else {
        rc = ctab_choose(bands, p->layer.ep < 2 ? INFINITY : peers * p->layer.uniform_B,
                         fit);
        i0 = bands->b[bands->chosen].first;
        i1 = bands->b[bands->chosen].last;
    }
    if (rc)
        return rc;
    double ss = 0;            /* the written line's rms over its sizes (a flat band's
                                 borrowed bandwidth changes its own) */
    for (int i = i0; i <= i1; i++) {
        double r = (fit->lat_s + x[i] / fit->bw_Bps - med[i]) / med[i];
        ss += r * r;
    }
    fit->rms_rel = sqrt(ss / (i1 - i0 + 1));
    bands->lo_B = (double)p->bytes[i0];
    bands->hi_B = (double)p->bytes[i1];
    for (int i = 0; i < n; i++) {
        while (i > bands->b[band].last)
            band++;
        const struct fit_line *l = &bands->b[band].line;
        printf("  %-10s %8zu %9.2f %9.2f %9.2f %4d %9.2f %7.1f\n", name, p->bytes[i],
               med[i] * 1e6, st[i].min * 1e6, st[i].max * 1e6, band + 1,
               (l->lat_s + (isfinite(l->bw_Bps) ? x[i] / l->bw_Bps : 0)) * 1e6,
               resid[i] * 100);
    }
    double *ls = malloc(2 * (size_t)reps * sizeof(double)), *bs = ls ? ls + reps : NULL;
    int ok = 0;
    if (!ls)
        return -ENOMEM;
    for (int s = 0; s < reps; s++) {
        struct fit_line f;
        for (int i = i0; i <= i1; i++)
            y[i] = t[(size_t)i * reps + s];
        if (!fit_latency_bw(x + i0, y + i0, i1 - i0 + 1, &f, NULL)) {
            ls[ok] = f.lat_s;
            bs[ok++] = f.bw_Bps;
        }
    }
    if (ok) {
        fit_stats(ls, ok, lat);
        fit_stats(bs, ok, bw);
    } else {
        *lat = (struct fit_stats){ fit->lat_s, fit->lat_s, fit->lat_s };
        *bw = (struct fit_stats){ fit->bw_Bps, fit->bw_Bps, fit->bw_Bps };
    }
    free(ls);
    ctab_bands_note(stdout, "# ", name, peers, bands, &p->layer);
    one_line_note(name, x, med, n, i0, i1, fit);
    printf("# %s fit written (%zu .. %zu B per peer, x = %d peer(s) x size): latency %.3f "
           "us, bandwidth %.4g GB/s, rms relative residual %.2f %%; fitted per repetition "
           "(%d of %d): latency %.3f .. %.3f us, bandwidth %.4g .. %.4g GB/s\n", name,
           p->bytes[i0], p->bytes[i1], peers, fit->lat_s * 1e6, fit->bw_Bps / 1e9,
           fit->rms_rel * 100, ok, reps, lat->min * 1e6, lat->max * 1e6, bw->min / 1e9,
           bw->max / 1e9);
    return 0;
}

/* Both tests of a tier, on every rank; fits and prints on rank 0. 0, -EDOM (a fit with
 * no bandwidth: rank 0 only), -EIO, -ENOMEM. */
static int measure_tier(const struct cal_tiers *t, bool inter, bool cold, int reps, int rank,
                        const struct msg_plan *p, struct ctab_tier *out)
{
    double *pp = NULL, *aa = NULL;
    if (rank == 0) {
        pp = calloc((size_t)p->n * reps, sizeof(double));
        aa = calloc((size_t)p->n * reps, sizeof(double));
    }
    int mine = rank == 0 && (!pp || !aa) ? -ENOMEM : 0, rc = 0;
    MPI_Allreduce(&mine, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    rc = rc ? rc : cal_pingpong(t, inter, cold, p->bytes, p->n, reps, pp);
    rc = rc ? rc : cal_alltoall(t, inter, cold, p->bytes, p->n, reps, aa);
    out->peers = inter ? t->inter_peers : t->intra_peers;
    out->layer = p->layer;
    if (!rc && rank == 0) {
        if (inter)
            printf("# across nodes: ping-pong between ranks 0 and %d; all-to-all from every "
                   "rank to the %d rank(s) of other nodes\n", t->inter_peer, out->peers);
        else
            printf("# inside a node: ping-pong between a node's first two ranks (each node "
                   "at once); all-to-all among a node's ranks, %d peer(s) each\n", out->peers);
        printf("# test           size    median       min       max band  band fit   resid\n");
        printf("#                 (B)      (us)      (us)      (us)           (us)     (%%)\n");
        rc = fit_test("ping-pong", 1, p, pp, reps, &out->p2p, &out->p2p_lat_s,
                      &out->p2p_bw_Bps, &out->p2p_bands);
        rc = rc ? rc : fit_test("all-to-all", out->peers, p, aa, reps, &out->a2a,
                                &out->a2a_lat_s, &out->a2a_bw_Bps, &out->a2a_bands);
    }
    free(pp);
    free(aa);
    return rc;
}

/* The plan of config c: the layer's bytes per peer at elem_bytes per element, the
 * ladder, and --fit-bytes (already in p) holding 2 of its sizes at least. 0, or -EINVAL
 * with msg. */
static int make_plan(const struct config *c, int elem_bytes, uint64_t seed,
                     struct msg_plan *p, char *msg, size_t n)
{
    int rc = mband_layer(c, elem_bytes, seed, &p->layer);
    if (rc)
        return bad(msg, n, "routing.distribution = %s: the experts' popularity: %s",
                   config_dist_name(c->routing.distribution), strerror(-rc));
    plan_ladder(p);
    int i0, i1;
    if (p->fit_hi_B > 0 && plan_range(p, &i0, &i1) < 2)
        return bad(msg, n, "--fit-bytes %.0f..%.0f: holds %d of the ladder's sizes "
                   "(%zu, %zu, ... %zu B per peer); a line needs 2", p->fit_lo_B,
                   p->fit_hi_B, plan_range(p, &i0, &i1) > 0 ? 1 : 0, p->bytes[0],
                   p->bytes[1], p->bytes[p->n - 1]);
    return 0;
}

/* ---- output (rank 0) ---- */

static int write_outputs(const char *frag, const char *table, const char *table_name,
                         const struct ctab_row *rows, int nrows, const struct ctab_tier *tier,
                         const char *what)
{
    struct ofile t, f;
    int rc = ofile_open(&t, table);
    if (rc)
        return rc;
    rc = ofile_open(&f, frag);
    if (rc) {
        ofile_abort(&t);
        return rc;
    }
    rc = ctab_table(t.f, rows, nrows, what);
    rc = rc ? rc : ctab_fragment(f.f, &tier[0], &tier[1], table_name, what);
    if (rc) {
        ofile_abort(&t);
        ofile_abort(&f);
        return rc;
    }
    rc = ofile_commit(&t);
    if (rc) {
        ofile_abort(&f);
        return rc;
    }
    return ofile_commit(&f);
}

/* ---- the command ---- */

/* Every rank's verdict: the lowest rank with rc != 0 prints msg; true when any had one. */
static bool refused(int rank, int rc, const char *msg)
{
    int size, mine, first;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    mine = rc ? rank : size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == rank)
        fprintf(stderr, "%s\n", msg);
    return first < size;
}

static void die(int rank, const char *what, int rc)
{
    fprintf(stderr, "moeprof calibrate: rank %d: %s: %s\n", rank, what, strerror(-rc));
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

int cmd_calibrate(int argc, char **argv)
{
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    char msg[MSG_MAX] = "", table[OFILE_PATH_MAX] = "";
    const char *table_name = NULL;
    struct cal_args a;
    struct config c;
    struct cfg_loader *keys = NULL;
    struct cfg_err err;
    int rc = parse(&a, argc, argv, msg, sizeof(msg));
    if (!rc && a.help) {
        if (rank == 0)
            fputs(usage, stdout);
        return 0;
    }
    if (!rc && (rc = config_load_keys(&c, &keys, a.files, a.nfiles, a.sets, a.nsets, &err)))
        snprintf(msg, sizeof(msg), "%s", err.msg);
    if (!rc)
        rc = check_config(&a, &c, keys, msg, sizeof(msg));
    struct msg_plan plan = { .fit_lo_B = a.fit_lo_B, .fit_hi_B = a.fit_hi_B };
    if (!rc)
        rc = make_plan(&c, a.cuda ? 2 : 4, a.seed, &plan, msg, sizeof(msg));
    if (!rc && a.out)
        rc = out_paths(a.out, table, sizeof(table), &table_name, msg, sizeof(msg));
    if (!rc && a.out && rank == 0)
        rc = check_out(&a, &c, table, msg, sizeof(msg));
    config_keys_free(keys);
    if (refused(rank, rc, msg))
        return 2;
#ifdef MOEPROF_CUDA
    if (a.cuda && refused(rank, gpu_select(MPI_COMM_WORLD, msg, sizeof(msg)), msg))
        return 2;
#endif
    if (rank == 0)
        ofile_catch_signals();

    const struct moe_ops *ops = moe_cpu_ops();
#ifdef MOEPROF_CUDA
    if (a.cuda)
        ops = moe_cuda_ops();
#endif
    struct moe_cfg mc = { .hidden = c.model.hidden, .ffn = c.model.expert_ffn_hidden,
                          .experts = c.model.experts, .shared = 0, .top_k = 1,
                          .score = MOE_SCORE_SOFTMAX, .norm_topk = true, .route_scale = 1.0f };
    int tok[TOKENS_MAX];
    const int ntok = token_ladder((int)(c.routing.tokens_per_gpu * c.model.top_k), tok);
    const size_t m = (size_t)ntok * a.reps * ranks;
    double *fwd = rank == 0 ? calloc(m, sizeof(double)) : NULL;
    double *bwd = rank == 0 ? calloc(m, sizeof(double)) : NULL;
    struct ctab_row rows[TOKENS_MAX];
    struct ctab_tier tier[2];
    struct cal_tiers where;
    memset(tier, 0, sizeof(tier));
    if (rank == 0 && (!fwd || !bwd))
        die(rank, "setup", -ENOMEM);

    rc = cal_tiers_create(&where);
    if (rc)
        die(rank, "node layout", rc);
    int nodes = 0;
    for (int r = 0; r < ranks; r++)
        nodes += where.node_of[r] == r;
    char what[512];
    snprintf(what, sizeof(what), "moeprof calibrate: %d rank(s) on %d node(s), backend %s, "
             "hidden %d, expert ffn %d, %d repetitions, %s buffers", ranks, nodes, ops->name,
             mc.hidden, mc.ffn, a.reps, a.cold ? "cold" : "hot");
    if (rank == 0)
        printf("# %s\n", what);

    rc = cal_expert(ops, &mc, a.cuda, tok, ntok, a.reps, a.seed, fwd, bwd);
    if (rc)
        die(rank, "expert timing", rc);
    if (rank == 0 && (rc = print_experts(tok, ntok, a.reps, ranks, fwd, bwd, rows)))
        die(rank, "expert table", rc);
    fflush(stdout);

    /* the tiers: every rank takes part in each, so they agree on which run */
    int status = 0;
    for (int inter = 0; inter < 2; inter++) {
        if (inter ? where.inter_peer < 0 : where.intra_peers < 1) {
            if (rank == 0)
                printf("# %s: not measured (%s)\n", inter ? "across nodes" : "inside a node",
                       inter ? "every rank is on one node" : "one rank per node");
            continue;
        }
        rc = measure_tier(&where, inter, a.cold, a.reps, rank, &plan, &tier[inter]);
        if (rc == -EDOM) {
            fprintf(stderr, "moeprof calibrate: %s: the times do not grow with the bytes; "
                    "no bandwidth to fit\n", inter ? "across nodes" : "inside a node");
            status = 1;
        } else if (rc) {
            die(rank, "message timing", rc);
        }
        fflush(stdout);
    }
    if (rank == 0 && !status && a.out) {
        rc = write_outputs(a.out, table, table_name, rows, ntok, tier, what);
        if (rc) {
            fprintf(stderr, "moeprof calibrate: --out %s: %s\n", a.out, strerror(-rc));
            status = 1;
        } else {
            printf("# wrote %s (moesim run CLUSTER.ini %s MODEL.ini) and %s\n", a.out, a.out,
                   table);
        }
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    cal_tiers_free(&where);
    free(fwd);
    free(bwd);
    return status;
}
