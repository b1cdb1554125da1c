/* main.c: the moeprof command line. Run under mpirun; every rank runs this.
 * Exit status: 0 done, 1 runtime failure, 2 bad input (one line from the lowest rank
 * that found it; the others exit 2 quietly). A failure in the middle of the run, where
 * the other ranks may be inside a collective, aborts the job (MPI_Abort).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "balance.h"
#include "bind.h"
#include "clock.h"
#include "cmd_calib.h"
#include "cmd_topo.h"
#include "compare.h"
#include "config.h"
#include "eplayer.h"
#include "gating.h"
#include "layout.h"
#include "moe_cpu.h"
#ifdef MOEPROF_CUDA
#include "gpu.h"
#include "moe_cuda.h"
#endif
#include "ofile.h"
#include "placement.h"
#include "records.h"
#include "rtrace.h"
#include "skew.h"
#include "stack.h"
#include "force.h"
#include "tensors.h"
#include "timer.h"

#define MSG_MAX 4096
#define CLOCK_ROUNDS 20
/* Zipf skew (skew.h): moesim's router's shares from SKEW_DRAWS tokens; the gate's bias
 * calibrated on SKEW_TOKENS tokens no rank routes, in at most SKEW_ROUNDS rounds. */
#define SKEW_DRAWS (1 << 16)
#define SKEW_TOKENS 4096
#define SKEW_ROUNDS 400
#define SKEW_TOL 5e-4

static const char usage_top[] =
    "usage: moeprof <command> [options]   (under mpirun -np N)\n"
    "\n"
    "Measures an expert-parallel Mixture-of-Experts layer on real ranks.\n"
    "\n"
    "commands:\n"
    "  run CONFIG...   run the layer forward and backward, time every phase\n"
    "  calibrate CONFIG...  time the expert FFN, ping-pong and all-to-all; write\n"
    "                  moesim's [calibration] and [cluster] keys (--out FILE)\n"
    "  topo            this node's CPUs, GPUs and NICs (hwloc); a [cluster] fragment\n"
    "\n"
    "  -h, --help      this text; 'moeprof COMMAND --help' for a command's options\n";

struct world {
    int rank, size;
};

/* Every rank brings rc and msg; if any rc is nonzero, the lowest such rank prints its
 * msg and every rank returns true (the caller exits 2). */
static bool refused(const struct world *w, int rc, const char *msg)
{
    int mine = rc ? w->rank : w->size, first = w->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == w->size)
        return false;
    if (first == w->rank)
        fprintf(stderr, "%s\n", msg);
    return true;
}

/* A runtime failure on this rank: one line, then the whole job goes down. */
static void die(const struct world *w, const char *what, int rc)
{
    fprintf(stderr, "moeprof: rank %d: %s: %s\n", w->rank, what, strerror(rc < 0 ? -rc : rc));
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

/* A rule on config keys broken: msg = "where: section.key: what", blaming the key of
 * names (nn pairs) set last, worded as config_load's own rules (config_rule_fail).
 * Returns -EINVAL. */
__attribute__((format(printf, 6, 7)))
static int blame(struct cfg_loader *k, const char *const *names, int nn, char *msg, size_t n,
                 const char *fmt, ...)
{
    char what[MSG_MAX];
    struct cfg_err err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    config_rule_fail(k, names, nn, &err, "%s", what);
    snprintf(msg, n, "%s", err.msg);
    return -EINVAL;
}

/* parallel.ep: a multiple of it must be the ranks mpirun started. An ep the config set
 * is blamed where it was set; a derived one (0, or not set: parallel.dp) on the keys it
 * derives from, as config_load's own ep rules do. */
static int check_ep(struct cfg_loader *k, const struct config *c, int ranks, char *msg,
                    size_t n)
{
    static const char *const keys[] = { "parallel", "ep", "parallel", "dp", "parallel", "pp",
                                        "cluster", "nodes", "cluster", "gpus_per_node" };
    const int ep = c->parallel.ep;
    if (ranks % ep == 0)
        return 0;
    if (strcmp(config_key_where(k, "parallel", "ep"), "default"))
        return blame(k, keys, 1, msg, n, "parallel.ep = %d needs a multiple of %d ranks; "
                     "mpirun started %d", ep, ep, ranks);
    return blame(k, keys + 2, 4, msg, n, "parallel.ep = 0 (dp = %d) needs a multiple of %d "
                 "ranks; mpirun started %d", ep, ep, ranks);
}

/* The checks moeprof adds to config_load's. 0, or -EINVAL with msg. */
static int check_run(const struct args *a, const struct config *c, struct cfg_loader *k,
                     int ranks, char *msg, size_t n)
{
    static const char *const hidden_key[] = { "model", "hidden" };
    static const char *const ffn_key[] = { "model", "expert_ffn_hidden" };
    static const char *const dist_key[] = { "routing", "distribution" };
    static const char *const tokens_keys[] = { "routing", "tokens_per_gpu", "model", "top_k" };
#ifndef MOEPROF_CUDA
    if (a->backend == ARGS_CUDA || a->comm == ARGS_NCCL)
        return snprintf(msg, n, "moeprof run: --%s: not built into this moeprof (nvcc and "
                        "NCCL were not found at build time; only --backend cpu --comm mpi)",
                        a->backend == ARGS_CUDA ? "backend cuda" : "comm nccl"), -EINVAL;
#endif
    /* Device buffers move over NCCL, host buffers over MPI (no CUDA-aware MPI assumed). */
    if ((a->backend == ARGS_CUDA) != (a->comm == ARGS_NCCL))
        return snprintf(msg, n, "moeprof run: --backend %s --comm %s: the cuda backend runs "
                        "with nccl, the cpu backend with mpi",
                        a->backend == ARGS_CUDA ? "cuda" : "cpu",
                        a->comm == ARGS_NCCL ? "nccl" : "mpi"), -EINVAL;
    if (a->backend == ARGS_CUDA && c->model.hidden % 8)
        return blame(k, hidden_key, 1, msg, n, "model.hidden = %d is not a multiple of 8 "
                     "(--backend cuda)", c->model.hidden);
    if (a->backend == ARGS_CUDA && c->model.expert_ffn_hidden % 8)
        return blame(k, ffn_key, 1, msg, n, "model.expert_ffn_hidden = %d is not a multiple "
                     "of 8 (--backend cuda)", c->model.expert_ffn_hidden);
    if (check_ep(k, c, ranks, msg, n))
        return -EINVAL;
    if (c->model.expert_ffn_hidden < 1)
        return blame(k, ffn_key, 1, msg, n, "model.expert_ffn_hidden = %d: not set (moeprof "
                     "needs the experts' width)", c->model.expert_ffn_hidden);
    if (c->routing.distribution != DIST_UNIFORM && c->routing.distribution != DIST_ZIPF &&
        c->routing.distribution != DIST_TRACE)
        return blame(k, dist_key, 1, msg, n, "routing.distribution = %s: moeprof runs "
                     "uniform, zipf or trace", config_dist_name(c->routing.distribution));
    if (a->aux_alpha > 0.0 && c->routing.distribution == DIST_TRACE)
        return blame(k, dist_key, 1, msg, n, "routing.distribution = trace: forced routing "
                     "has no aux loss (--aux-alpha %g)", a->aux_alpha);
    if ((double)ranks * c->routing.tokens_per_gpu * c->model.top_k > (double)(INT32_MAX / 2))
        return blame(k, tokens_keys, 2, msg, n, "routing.tokens_per_gpu = %lld: too many "
                     "tokens for one layer (x model.top_k = %d x %d ranks)",
                     (long long)c->routing.tokens_per_gpu, c->model.top_k, ranks);
    return 0;
}

/* routing.distribution = trace: the trace, for mpirun's ranks and the config's experts,
 * with layers for every --layers, and on this rank, in every (layer, iteration), counts
 * a forced routing can take (force.h: tokens_per_gpu x top_k in all, none above
 * tokens_per_gpu). 0, or -EINVAL with msg. */
static int load_trace(const struct config *c, const struct args *a, int rank, int ranks,
                      struct rtrace *t, char *msg, size_t n)
{
    struct rtrace_err err;
    const int E = c->model.experts, K = c->model.top_k;
    const uint64_t T = (uint64_t)c->routing.tokens_per_gpu;
    int rc = rtrace_load(t, c->routing.trace, ranks, E, &err);
    if (rc)
        return snprintf(msg, n, "%s: routing.trace: %s", c->routing.trace_src.where, err.msg),
               rc == -EINVAL ? rc : -EINVAL;
    if (t->layers < a->layers)
        return snprintf(msg, n, "%s: routing.trace: %s has %d layer(s), --layers asks for %d",
                        c->routing.trace_src.where, c->routing.trace, t->layers, a->layers),
               -EINVAL;
    for (int l = 0; l < a->layers; l++)
        for (int it = 0; it < t->iterations; it++) {
            const uint64_t *cnt = rtrace_at(t, l, it, rank);
            uint64_t sum = 0;
            int over = -1;
            for (int e = 0; e < E; e++) {
                sum += cnt[e];
                over = over < 0 && cnt[e] > T ? e : over;
            }
            if (sum != T * K || over >= 0) {
                if (over >= 0)
                    snprintf(msg, n, "%s: routing.trace: layer %d iteration %d gpu %d: expert "
                             "%d has %llu tokens, more than routing.tokens_per_gpu = %llu",
                             c->routing.trace_src.where, l, it, rank, over,
                             (unsigned long long)cnt[over], (unsigned long long)T);
                else
                    snprintf(msg, n, "%s: routing.trace: layer %d iteration %d gpu %d: %llu "
                             "token-expert assignments, but routing.tokens_per_gpu x "
                             "model.top_k = %llu", c->routing.trace_src.where, l, it, rank,
                             (unsigned long long)sum, (unsigned long long)(T * K));
                return -EINVAL;
            }
        }
    return 0;
}

/* The EP layout of the config's placement (eplb from the loads of layer 0, iteration 0:
 * the popularity, or a trace's counts summed over the ranks, as moesim's). */
static int make_layout(const struct config *c, struct cfg_loader *k, const struct rtrace *t,
                       uint64_t seed, struct lay *l, char *msg, size_t n)
{
    static const char *const keys[] = { "balance", "placement", "parallel", "ep", "model",
                                        "experts", "balance", "redundant_experts",
                                        "balance", "expert_groups" };
    const int E = c->model.experts, ep = c->parallel.ep;
    double *load = calloc((size_t)E, sizeof(double));
    if (!load)
        return -ENOMEM;
    int rc = 0;
    if (t && t->tokens)
        for (int g = 0; g < t->gpus; g++)
            for (int e = 0; e < E; e++)
                load[e] += (double)rtrace_at(t, 0, 0, g)[e];
    else
        rc = gating_popularity(load, c, 0, 0, seed);
    struct placement pl;
    bool placed = false;
    if (!rc)
        rc = balance_place(c, load, &pl, &placed);
    if (!rc)
        rc = placed ? lay_from_placement(l, &pl) : lay_contiguous(l, ep, E);
    if (placed)
        placement_free(&pl);
    free(load);
    if (rc == -EINVAL)         /* a layout the placement's rules refuse: the config's */
        blame(k, keys, 5, msg, n, "balance.placement = %s cannot place %d experts (+%d "
              "redundant) on EP groups of %d ranks (parallel.ep)",
              config_place_name(c->balance.placement), E, c->balance.redundant_experts, ep);
    else if (rc)
        snprintf(msg, n, "moeprof run: balance.placement = %s: %s",
                 config_place_name(c->balance.placement), strerror(-rc));
    return rc;
}

/* --out DIR: made if missing, and writable; its routing.trace is not the trace read. */
static int check_out(const char *dir, const struct config *c, char *msg, size_t n)
{
    struct stat st;
    if (stat(dir, &st) != 0 && mkdir(dir, 0777) != 0)
        return snprintf(msg, n, "moeprof run: --out %s: %s", dir, strerror(errno)), -EINVAL;
    char p[OFILE_PATH_MAX];
    snprintf(p, sizeof(p), "%s/phases.csv", dir);
    struct ofile o;
    int rc = ofile_probe(&o, p);
    if (rc)
        return snprintf(msg, n, "moeprof run: --out %s: %s", dir, strerror(-rc)), -EINVAL;
    struct ofile_id in, out;
    snprintf(p, sizeof(p), "%s/routing.trace", dir);
    if (c->routing.distribution == DIST_TRACE && !ofile_identify(c->routing.trace, &in) &&
        !ofile_identify(p, &out) && ofile_same(&in, &out))
        return snprintf(msg, n, "moeprof run: --out %s: would overwrite routing.trace = %s, "
                        "the trace it replays", dir, c->routing.trace), -EINVAL;
    return 0;
}

struct layer_run {
    struct epl *l;
    float *bias;
};

static int write_file(const char *dir, const char *name, const struct rec_run *r,
                      int (*fn)(FILE *, const struct rec_run *, int, int, int, int), int layer,
                      int iter, int combine, int dense)
{
    char p[OFILE_PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct ofile o;
    int rc = ofile_open(&o, p);
    if (rc)
        return rc;
    rc = fn(o.f, r, layer, iter, combine, dense);
    if (rc) {
        ofile_abort(&o);
        return rc;
    }
    return ofile_commit(&o);
}

static int w_csv(FILE *f, const struct rec_run *r, int a, int b, int c, int d)
{
    (void)a, (void)b, (void)c, (void)d;
    return rec_phases_csv(f, r);
}

static int w_chrome(FILE *f, const struct rec_run *r, int a, int b, int c, int d)
{
    (void)a, (void)b, (void)c, (void)d;
    return rec_chrome(f, r);
}

static int w_rtrace(FILE *f, const struct rec_run *r, int a, int b, int c, int d)
{
    (void)a, (void)b, (void)c, (void)d;
    return rec_routing_trace(f, r);
}

static int write_outputs(const char *dir, const struct rec_run *r, const struct cmp_result *cmp)
{
    int rc = write_file(dir, "phases.csv", r, w_csv, 0, 0, 0, 0);
    if (cmp)                             /* trace.json with the prediction, compare.csv */
        rc = rc ? rc : cmp_write(dir, r, cmp);
    else
        rc = rc ? rc : write_file(dir, "trace.json", r, w_chrome, 0, 0, 0, 0);
    rc = rc ? rc : write_file(dir, "routing.trace", r, w_rtrace, 0, 0, 0, 0);
    for (int l = 0; l < r->layers && !rc; l++)
        for (int it = 0; it < r->iters && !rc; it++)
            for (int k = 0; k < 4 && !rc; k++) {
                char name[96];
                snprintf(name, sizeof(name), "%s-l%d-i%d.%s", k & 1 ? "combine" : "dispatch", l,
                         it, k & 2 ? "alltoallv" : "matrix");
                rc = write_file(dir, name, r, rec_matrix, l, it, k & 1, k >> 1);
            }
    return rc;
}

/* The expert-side buffers line: buf[3 k ..] = rank k's peak rows (one layer, one
 * forward), its buffers' bytes (all layers) and theirs at the worst case. */
static void print_buffers(const double *buf, int ranks, int avg_rows)
{
    double pk_min = buf[0], pk_max = buf[0], b_max = 0, worst = 0;
    for (int k = 0; k < ranks; k++) {
        pk_min = buf[3 * k] < pk_min ? buf[3 * k] : pk_min;
        pk_max = buf[3 * k] > pk_max ? buf[3 * k] : pk_max;
        b_max = buf[3 * k + 1] > b_max ? buf[3 * k + 1] : b_max;
        worst = buf[3 * k + 2] > worst ? buf[3 * k + 2] : worst;
    }
    printf("# expert-side buffers sized from the counts: rows received per layer %.0f .. %.0f "
           "over ranks (average %d); peak %.2f MiB per rank, all layers (%.2f MiB for the "
           "worst case, ep x T x K rows)\n", pk_min, pk_max, avg_rows, b_max / 1048576.0,
           worst / 1048576.0);
}

/* Seconds one timed phase costs (tmr_start + tmr_stop), the median of 9 runs of 4096. */
static double timer_cost_s(void)
{
    struct tmr t;
    double run[9];
    if (tmr_create(&t, 4096))
        return NAN;
    for (int k = 0; k < 9; k++) {
        t.n = 0;
        double t0 = tmr_now_s();
        for (int i = 0; i < 4096; i++)
            tmr_stop(&t, TMR_F, TMR_ROUTE, tmr_start(&t), 0);
        run[k] = (tmr_now_s() - t0) / 4096;
    }
    tmr_free(&t);
    for (int i = 1; i < 9; i++)          /* insertion sort; 9 values */
        for (int j = i; j > 0 && run[j] < run[j - 1]; j--) {
            double v = run[j];
            run[j] = run[j - 1];
            run[j - 1] = v;
        }
    return run[4];
}

/* The instrumentation overhead lines: measured over the pairs (it_s: slowest rank's
 * time, timed and untimed per pair), and the timer's own cost for the phases of one
 * iteration, a bound on what timing adds besides its effect on caches. */
static void print_overhead(const double *it_s, int pairs, size_t phases_per_iter)
{
    double *t = malloc((size_t)pairs * sizeof(double)), *p = malloc((size_t)pairs * sizeof(double));
    struct rec_overhead o;
    if (!t || !p || pairs < 1) {
        free(t);
        free(p);
        return;
    }
    for (int i = 0; i < pairs; i++) {
        t[i] = it_s[2 * i];
        p[i] = it_s[2 * i + 1];
    }
    if (!rec_overhead(t, p, pairs, &o)) {
        printf("# iteration (slowest rank, median of %d): %.3f ms timed, %.3f ms untimed; "
               "instrumentation overhead %+.2f %% (paired median", pairs, 1e3 * o.timed_med_s,
               1e3 * o.plain_med_s, 100.0 * o.frac);
        if (isfinite(o.lo_frac))
            printf(", 95 %% CI %+.2f .. %+.2f %%)\n", 100.0 * o.lo_frac, 100.0 * o.hi_frac);
        else
            printf("; fewer than 6 pairs: no confidence interval)\n");
        double c = timer_cost_s();
        printf("# timer cost: %.0f ns per phase x %zu phases = %.2f us per iteration "
               "(%.4f %% of the untimed median)\n", 1e9 * c, phases_per_iter,
               1e6 * c * (double)phases_per_iter,
               100.0 * c * (double)phases_per_iter / o.plain_med_s);
    }
    free(t);
    free(p);
}

/* routing.distribution = zipf: layer l's selection bias (skew.h), calibrated on rank 0
 * and sent to every rank; fit keeps the worst layer's fit. */
static int calibrate_skew(const struct world *w, const struct config *c,
                          const struct moe_ops *ops,
                          int (*copy)(void *, const void *, size_t),
                          const struct moe_cfg *mc, uint64_t seed, int l,
                          struct layer_run *x, struct skw_fit *fit)
{
    const int E = mc->experts;
    double *pop = calloc((size_t)E, sizeof(double)), *share = calloc((size_t)E, sizeof(double));
    void *xc = NULL;
    struct skw_fit f = { 0, 0.0 };
    int rc = 0;
    x->bias = calloc((size_t)E, sizeof(float));
    if (!pop || !share || !x->bias) {     /* the caller aborts the job */
        free(pop);
        free(share);
        return -ENOMEM;
    }
    if (w->rank == 0) {
        rc = gating_popularity(pop, c, l, 0, seed);
        rc = rc ? rc : skw_target(share, c, pop, SKEW_DRAWS, seed ^ (0x5eedull << 32) ^ (uint64_t)l);
        rc = rc ? rc : tns_tokens(&xc, ops, SKEW_TOKENS, mc->hidden, (int64_t)1 << 40, TNS_X,
                                  seed, l);
        rc = rc ? rc : skw_calibrate(x->bias, &f, ops, copy, mc, epl_weights(x->l), xc,
                                     SKEW_TOKENS, share, SKEW_ROUNDS, SKEW_TOL);
        ops->free(xc);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!rc) {
        MPI_Bcast(x->bias, E, MPI_FLOAT, 0, MPI_COMM_WORLD);
        rc = epl_set_bias(x->l, x->bias);
    }
    if (f.err > fit->err || f.rounds > fit->rounds)
        *fit = (struct skw_fit){ f.rounds > fit->rounds ? f.rounds : fit->rounds,
                                 f.err > fit->err ? f.err : fit->err };
    free(pop);
    free(share);
    return rc;
}

int main(int argc, char **argv)
{
    struct world w;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w.size);
    char msg[MSG_MAX] = "";
    int rc = 0;

    if (argc >= 2 && !strcmp(argv[1], "calibrate")) {
        rc = cmd_calibrate(argc - 1, argv + 1);
        MPI_Finalize();
        return rc;
    }
    if (argc >= 2 && !strcmp(argv[1], "topo")) {
        rc = cmd_topo(argc - 1, argv + 1, w.rank, w.size);
        MPI_Finalize();
        return rc;
    }
    if (argc < 2 || strcmp(argv[1], "run")) {
        bool help = argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
        if (w.rank == 0) {
            if (help)
                fputs(usage_top, stdout);
            else
                fprintf(stderr, "moeprof: %s%s%s (see moeprof --help)\n",
                        argc < 2 ? "no command" : "unknown command '",
                        argc < 2 ? "" : argv[1], argc < 2 ? "" : "'");
        }
        MPI_Finalize();
        return help ? 0 : 2;
    }
    struct args a;
    struct config c;
    struct lay lay = { 0 };
    struct rtrace trace = { 0 };
    struct cfg_loader *keys = NULL;
    rc = args_parse(&a, argc - 1, argv + 1, msg, sizeof(msg));
    if (!rc && a.help) {
        if (w.rank == 0)
            fputs(args_usage, stdout);
        MPI_Finalize();
        return 0;
    }
    if (!rc)
        rc = args_config(&a, &c, &keys, msg, sizeof(msg));
    if (!rc)
        rc = check_run(&a, &c, keys, w.size, msg, sizeof(msg));
    if (!rc)
        rc = c.routing.distribution == DIST_TRACE
                 ? load_trace(&c, &a, w.rank, w.size, &trace, msg, sizeof(msg)) : 0;
    if (!rc)
        rc = make_layout(&c, keys, &trace, a.seed, &lay, msg, sizeof(msg));
    struct cmp_spec cs = { .files = a.files, .nfiles = a.nfiles, .calib = a.calib,
                           .ncalib = a.ncalib, .sets = a.sets, .nsets = a.nsets, .dir = a.out,
                           .dtype = a.backend == ARGS_CUDA ? "bf16" : "fp32", .seed = a.seed };
    if (!rc && a.compare)
        rc = cmp_check(&cs, msg, sizeof(msg));
    if (!rc && a.out && w.rank == 0)
        rc = check_out(a.out, &c, msg, sizeof(msg));
    config_keys_free(keys);
    if (refused(&w, rc, msg)) {
        lay_free(&lay);
        rtrace_free(&trace);
        MPI_Finalize();
        return 2;
    }
#ifdef MOEPROF_CUDA
    if (a.backend == ARGS_CUDA && refused(&w, gpu_select(MPI_COMM_WORLD, msg, sizeof(msg)), msg)) {
        lay_free(&lay);
        rtrace_free(&trace);
        MPI_Finalize();
        return 2;
    }
#endif
    if (w.rank == 0)
        ofile_catch_signals();
    struct bind_run bound;
    if ((rc = bind_ranks((enum bind_mode)a.bind, &bound)))
        die(&w, "--bind", rc);

    const int ep = c.parallel.ep, T = (int)c.routing.tokens_per_gpu, L = a.layers;
    const struct moe_ops *ops = moe_cpu_ops();
    const struct epl_io *io = NULL;
#ifdef MOEPROF_CUDA
    struct gpu_nccl *nccl = NULL;
    struct gpu_ev *gev = NULL;            /* phase timing with CUDA events (gpu.h) */
    struct epl_io gio;
    if (a.backend == ARGS_CUDA)
        ops = moe_cuda_ops();
#endif
    struct moe_cfg mc = { .hidden = c.model.hidden, .ffn = c.model.expert_ffn_hidden,
                          .experts = c.model.experts, .shared = c.model.shared_experts,
                          .top_k = c.model.top_k,
                          .score = c.routing.scoring == SCORE_SIGMOID ? MOE_SCORE_SIGMOID
                                                                      : MOE_SCORE_SOFTMAX,
                          .norm_topk = true, .route_scale = 1.0f,
                          .aux_alpha = (float)a.aux_alpha };
    MPI_Comm ep_comm;
    MPI_Comm_split(MPI_COMM_WORLD, w.rank / ep, w.rank, &ep_comm);
#ifdef MOEPROF_CUDA
    if (a.backend == ARGS_CUDA) {
        rc = gpu_nccl_create(&nccl, ep_comm, (size_t)mc.hidden * ops->elem_bytes);
        if (rc)
            die(&w, "NCCL communicator", rc);
        gio = gpu_io(nccl);
        rc = gpu_ev_create(&gev, (size_t)L * TMR_NPHASES);
        if (rc)
            die(&w, "CUDA events", rc);
        gio.mark = gpu_ev_mark;
        gio.mark_arg = gev;
        io = &gio;
    }
#endif
    /* The layers, stacked (stack.h): this rank's tokens x enter layer 0, the output
     * gradient dout enters the last layer's backward. */
    struct layer_run *lr = calloc((size_t)L, sizeof(*lr));
    struct epl **layers = calloc((size_t)L, sizeof(*layers));
    struct skw_fit fit = { 0, 0.0 };
    struct stk stack;
    void *x0 = NULL, *dout = NULL;
    if (!lr || !layers)
        die(&w, "setup", -ENOMEM);
    for (int l = 0; l < L; l++) {
        struct layer_run *x = &lr[l];
        struct epl_spec s = { .cfg = mc, .lay = &lay, .comm = ep_comm, .tokens = T,
                              .seed = a.seed, .layer = l, .io = io };
        rc = epl_create(&x->l, ops, &s);
        layers[l] = x->l;
        if (!rc && c.routing.distribution == DIST_ZIPF)
            rc = calibrate_skew(&w, &c, ops, io ? io->copy : NULL, &mc, a.seed, l, x, &fit);
        if (rc)
            die(&w, "layer setup", rc);
    }
    rc = tns_tokens(&x0, ops, T, mc.hidden, (int64_t)w.rank * T, TNS_X, a.seed, 0);
    rc = rc ? rc : tns_tokens(&dout, ops, T, mc.hidden, (int64_t)w.rank * T, TNS_DOUT, a.seed, 0);
    rc = rc ? rc : stk_create(&stack, ops, io ? io->copy : NULL, layers, L, T, mc.hidden);
    if (rc)
        die(&w, "layer setup", rc);

    /* Clock offsets, then warm-up, timed and untimed iterations. */
    double *off = calloc((size_t)w.size, sizeof(double));
    double *err = calloc((size_t)w.size, sizeof(double));
    struct tmr tm;
    size_t per_rank = (size_t)a.iters * L * TMR_NPHASES;
    size_t cnt_n = (size_t)L * a.iters * mc.experts, rows_n = (size_t)L * a.iters * ep;
    int32_t *cnt = calloc(cnt_n, sizeof(int32_t)), *rows = calloc(rows_n, sizeof(int32_t));
    if (!off || !err || !cnt || !rows || tmr_create(&tm, per_rank))
        die(&w, "setup", -ENOMEM);
    rc = clk_offsets(MPI_COMM_WORLD, CLOCK_ROUNDS, off, err);
    if (rc)
        die(&w, "clock offsets", rc);

    /* Warm-up, then --iters pairs of one timed and one untimed iteration, timed first
     * in even pairs and second in odd ones, so that drift and order cancel in the
     * pairs' ratios (records.h, rec_overhead). it_s[2 pair + (untimed)]. */
    double *it_s = calloc(2 * (size_t)a.iters, sizeof(double));
    int32_t *forced = NULL;
    if (trace.tokens && !(forced = calloc((size_t)T * mc.top_k + 1, sizeof(int32_t))))
        die(&w, "setup", -ENOMEM);
    double *it_max = calloc(2 * (size_t)a.iters, sizeof(double));
    if (!it_s || !it_max)
        die(&w, "setup", -ENOMEM);
    for (int it = 0; it < a.warmup + 2 * a.iters; it++) {
        int pair = (it - a.warmup) / 2, second = (it - a.warmup) % 2;
        bool timed = it >= a.warmup && second == (pair & 1);
        struct tmr *t = timed ? &tm : NULL;
        for (int l = 0; l < L; l++) {
            epl_zero_grads(lr[l].l);
            /* A trace: pair p replays its iteration p mod iterations (warm-up: 0). */
            if (forced) {
                int src = it < a.warmup ? 0 : pair % trace.iterations;
                rc = frc_fill(forced, rtrace_at(&trace, l, src, w.rank), mc.experts, T,
                              mc.top_k);
                rc = rc ? rc : epl_force(lr[l].l, forced);
                if (rc)
                    die(&w, "forced routing", rc);
            }
        }
        MPI_Barrier(MPI_COMM_WORLD);
        const size_t first = tm.n;       /* this iteration's first record */
        (void)first;
#ifdef MOEPROF_CUDA
        if (t && gev && (rc = gpu_ev_anchor(gev)))
            die(&w, "CUDA events", rc);
#endif
        double t0 = tmr_now_s();
        tm.iter = pair;
        rc = stk_forward(&stack, x0, t);
        rc = rc ? rc : stk_backward(&stack, dout, t);
#ifdef MOEPROF_CUDA
        if (!rc && t && gev)              /* the phases' times from their events */
            rc = gpu_ev_resolve(gev, &tm, first);
#endif
        if (rc)
            die(&w, "layer", rc);
        double dt = tmr_now_s() - t0;
        if (it < a.warmup)
            continue;
        it_s[2 * pair + !timed] = dt;
        if (timed)
            for (int l = 0; l < L; l++) {
                memcpy(cnt + ((size_t)l * a.iters + pair) * mc.experts,
                       epl_expert_counts(lr[l].l), (size_t)mc.experts * sizeof(int32_t));
                memcpy(rows + ((size_t)l * a.iters + pair) * ep, epl_send_rows(lr[l].l),
                       (size_t)ep * sizeof(int32_t));
            }
    }

    /* The node of every rank: the lowest world rank sharing its memory. */
    MPI_Comm node_comm;
    int node_id = w.rank;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL,
                        &node_comm);
    MPI_Allreduce(MPI_IN_PLACE, &node_id, 1, MPI_INT, MPI_MIN, node_comm);
    MPI_Comm_free(&node_comm);
    int *node = calloc((size_t)w.size, sizeof(int));
    if (!node)
        die(&w, "gather", -ENOMEM);
    MPI_Gather(&node_id, 1, MPI_INT, node, 1, MPI_INT, 0, MPI_COMM_WORLD);

    /* The expert side's buffers, sized from the counts (eplayer.h): per rank, the most
     * rows one layer received and the bytes of every layer's buffers. */
    double buf[3] = { 0, 0, 0 }, *all_buf = NULL;
    for (int l = 0; l < L; l++) {
        struct epl_rows r = epl_rows(lr[l].l);
        buf[0] = r.peak > buf[0] ? r.peak : buf[0];
        buf[1] += r.cap_bytes;
        buf[2] += (double)r.worst * r.cap_bytes / (r.cap ? r.cap : 1);
    }
    if (w.rank == 0 && !(all_buf = calloc(3 * (size_t)w.size, sizeof(double))))
        die(&w, "gather", -ENOMEM);
    MPI_Gather(buf, 3, MPI_DOUBLE, all_buf, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);

    /* Gather everything on rank 0. */
    int nrec = (int)tm.n, rec_bytes = (int)(tm.n * sizeof(struct tmr_rec));
    int *all_n = calloc((size_t)w.size, sizeof(int)), *displ = calloc((size_t)w.size, sizeof(int));
    size_t *rec0 = calloc((size_t)w.size + 1, sizeof(size_t));
    struct tmr_rec *all = NULL;
    int32_t *all_cnt = NULL, *all_rows = NULL;
    if (!all_n || !displ || !rec0)
        die(&w, "gather", -ENOMEM);
    MPI_Gather(&nrec, 1, MPI_INT, all_n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (w.rank == 0) {
        for (int k = 0; k < w.size; k++) {
            rec0[k + 1] = rec0[k] + (size_t)all_n[k];
            displ[k] = (int)(rec0[k] * sizeof(struct tmr_rec));
            all_n[k] *= (int)sizeof(struct tmr_rec);
        }
        all = calloc(rec0[w.size] ? rec0[w.size] : 1, sizeof(struct tmr_rec));
        all_cnt = calloc(cnt_n * w.size, sizeof(int32_t));
        all_rows = calloc(rows_n * w.size, sizeof(int32_t));
        if (!all || !all_cnt || !all_rows)
            die(&w, "gather", -ENOMEM);
    }
    MPI_Gatherv(tm.rec, rec_bytes, MPI_BYTE, all, all_n, displ, MPI_BYTE, 0, MPI_COMM_WORLD);
    MPI_Reduce(it_s, it_max, 2 * a.iters, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    /* Counts and rows arrive rank-major; records.h wants (layer, iter, rank). */
    MPI_Gather(cnt, (int)cnt_n, MPI_INT32_T, all_cnt, (int)cnt_n, MPI_INT32_T, 0, MPI_COMM_WORLD);
    MPI_Gather(rows, (int)rows_n, MPI_INT32_T, all_rows, (int)rows_n, MPI_INT32_T, 0,
               MPI_COMM_WORLD);

    int exit_rc = 0;
    if (w.rank == 0) {
        int32_t *cnt_li = calloc(cnt_n * w.size, sizeof(int32_t));
        int32_t *rows_li = calloc(rows_n * w.size, sizeof(int32_t));
        if (!cnt_li || !rows_li)
            die(&w, "gather", -ENOMEM);
        for (int k = 0; k < w.size; k++)
            for (size_t li = 0; li < (size_t)L * a.iters; li++) {
                memcpy(cnt_li + (li * w.size + k) * mc.experts,
                       all_cnt + (size_t)k * cnt_n + li * mc.experts,
                       (size_t)mc.experts * sizeof(int32_t));
                memcpy(rows_li + (li * w.size + k) * ep, all_rows + (size_t)k * rows_n + li * ep,
                       (size_t)ep * sizeof(int32_t));
            }
        struct rec_run r = { .ranks = w.size, .ep = ep, .layers = L, .iters = a.iters,
                             .experts = mc.experts, .hidden = mc.hidden,
                             .elem_bytes = ops->elem_bytes, .rec = all, .rec0 = rec0,
                             .offset_s = off, .err_s = err, .counts = cnt_li,
                             .send_rows = rows_li, .node = node };
        int nodes = 0;
        for (int k = 0; k < w.size; k++)
            nodes += node[k] == k;
        printf("# moeprof run: %d ranks on %d node(s), EP groups of %d, %d experts (%s), "
               "top-%d, %d shared, hidden %d, expert ffn %d, %d tokens/rank, %d layer(s), "
               "%d timed + %d untimed iterations (+%d warm-up), backend %s, comm %s\n",
               w.size, nodes, ep, mc.experts, config_place_name(c.balance.placement),
               mc.top_k, mc.shared, mc.hidden, mc.ffn, T, L, a.iters, a.iters, a.warmup,
               ops->name, a.comm == ARGS_NCCL ? "nccl" : "mpi");
        if (c.routing.distribution == DIST_ZIPF)
            printf("# routing zipf(%g): the gate's selection bias calibrated on %d tokens to "
                   "moesim's router's expert shares: worst share error %.4f (%d rounds)\n",
                   c.routing.zipf_s, SKEW_TOKENS, fit.err, fit.rounds);
        else if (c.routing.distribution == DIST_TRACE)
            printf("# routing forced from %s (%d iteration(s), replayed in turn)\n",
                   c.routing.trace, trace.iterations);
        bind_print(stdout, &bound);
        rec_summary(stdout, &r);
        print_buffers(all_buf, w.size, T * mc.top_k);
        if (mc.aux_alpha > 0.0f) {
            printf("# aux loss (alpha %g; f and P over the EP group's %d x %d tokens), rank 0's "
                   "group, last iteration:", a.aux_alpha, ep, T);
            for (int l = 0; l < L; l++)
                printf(" layer %d %.6g", l, epl_aux_loss(lr[l].l));
            printf("\n");
        }
        print_overhead(it_max, a.iters, tm.n / (size_t)(a.iters ? a.iters : 1));
        struct cmp_result cmp = { 0 };
        if (a.compare && (exit_rc = cmp_run(&cmp, &cs, &r, msg, sizeof(msg))))
            fprintf(stderr, "%s\n", msg);          /* nothing written */
        else if (a.compare)
            cmp_print(stdout, &cmp);
        if (a.out && !exit_rc) {
            int wr = write_outputs(a.out, &r, a.compare ? &cmp : NULL);
            if (wr) {
                fprintf(stderr, "moeprof: --out %s: %s\n", a.out, strerror(-wr));
                exit_rc = 1;
            }
        }
        cmp_free(&cmp);
        free(cnt_li);
        free(rows_li);
    }
    stk_free(&stack);
    for (int l = 0; l < L; l++) {
        epl_free(lr[l].l);
        free(lr[l].bias);
    }
    ops->free(x0);
    ops->free(dout);
    free(lr);
    free(layers);
    free(off);
    free(err);
    free(cnt);
    free(rows);
    free(all_n);
    free(displ);
    free(rec0);
    free(all);
    free(it_s);
    free(it_max);
    free(forced);
    rtrace_free(&trace);
    free(node);
    free(all_cnt);
    free(all_rows);
    free(all_buf);
    tmr_free(&tm);
    bind_free(&bound);
    lay_free(&lay);
#ifdef MOEPROF_CUDA
    gpu_nccl_free(nccl);
    gpu_ev_free(gev);
#endif
    MPI_Comm_free(&ep_comm);
    MPI_Finalize();
    return exit_rc;
}
