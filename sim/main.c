/* main.c: the moesim command line. Exit status: 0 done, 1 runtime failure, 2 bad input. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "a2a.h"
#include "config.h"
#include "matrix.h"
#include "ofile.h"
#include "placement.h"
#include "report.h"
#include "routing.h"
#include "rtrace.h"
#include "step.h"
#include "steprep.h"
#include "timeline.h"
#include "topo.h"
#include "traffic.h"

#define MOESIM_VERSION "0.1.0"
#define MAX_SETS 256

static const char usage_top[] =
    "usage: moesim <command> [options]\n"
    "\n"
    "Simulates expert-parallel Mixture-of-Experts traffic on a GPU cluster.\n"
    "\n"
    "commands:\n"
    "  run CONFIG...   time one training step (with a [schedule] kind), or one MoE\n"
    "                  layer's dispatch and combine all-to-all (or a plain all-to-all,\n"
    "                  or a measured traffic matrix)\n"
    "\n"
    "options:\n"
    "  -h, --help      this text; 'moesim run --help' for the command's options\n"
    "  -V, --version   the version\n";

static const char usage_run[] =
    "usage: moesim run CONFIG... [--set section.key=value]... [--seed N]\n"
    "                  [--trace FILE] [--csv FILE] [--gpu-csv FILE] [--link-csv FILE]\n"
    "                  [--no-timing]\n"
    "\n"
    "Reads the INI files in order (later values win), then the --set overrides.\n"
    "With [schedule] kind (gpipe | 1f1b | interleaved-1f1b | zb1p | dualpipe | dualpipev)\n"
    "it simulates one training step: every micro-batch's forward and backward on every\n"
    "pipeline stage, expert compute, all-to-alls, pipeline sends and the DP reduce.\n"
    "With kind none (the default) it builds the traffic of [traffic] pattern (moe |\n"
    "alltoall | matrix), simulates it through the flow-level network model and prints a\n"
    "summary.\n"
    "\n"
    "  -s, --set K=V      override any key, e.g. --set cluster.nodes=16 (repeatable)\n"
    "      --seed N       routing seed (default 1); same inputs and seed, same output\n"
    "  -t, --trace FILE   Chrome Trace Event JSON timeline (open in Perfetto)\n"
    "  -c, --csv FILE     one CSV row (with a header) for this run\n"
    "      --gpu-csv FILE per-GPU finish times and bytes (step: per-GPU time breakdown)\n"
    "      --link-csv FILE per-link bytes, busy time and utilization, per phase\n"
    "                     (not for steps)\n"
    "      --no-timing    write wall_s as 0, so repeated runs give identical files\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status: 0 done, 1 runtime failure, 2 bad input (one line on stderr says\n"
    "what and where; no output file is written).\n";

struct run_opts {
    const char *files[MAX_SETS];
    const char *sets[MAX_SETS];
    int nfiles, nsets;
    uint64_t seed;
    const char *trace, *csv, *gpu_csv, *link_csv;
    int no_timing;
};

static int bad(const char *fmt, const char *what)
{
    fprintf(stderr, "moesim run: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    return 2;
}

static int parse_seed(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *out = v;
    return 0;
}

/* 0: parsed; 1: help printed; 2: bad usage (reported). */
static int parse_run(int argc, char **argv, struct run_opts *o)
{
    enum { OPT_SEED = 256, OPT_GPU_CSV, OPT_LINK_CSV, OPT_NO_TIMING };
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },     { "seed", required_argument, NULL, OPT_SEED },
        { "trace", required_argument, NULL, 't' },   { "csv", required_argument, NULL, 'c' },
        { "gpu-csv", required_argument, NULL, OPT_GPU_CSV },
        { "link-csv", required_argument, NULL, OPT_LINK_CSV },
        { "no-timing", no_argument, NULL, OPT_NO_TIMING },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
    };
    o->seed = 1;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":s:t:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (o->nsets == MAX_SETS)
                return bad("more than %s --set options", "256");
            o->sets[o->nsets++] = optarg;
            break;
        case OPT_SEED:
            if (parse_seed(optarg, &o->seed))
                return bad("--seed: '%s' is not a non-negative integer", optarg);
            break;
        case 't': o->trace = optarg; break;
        case 'c': o->csv = optarg; break;
        case OPT_GPU_CSV: o->gpu_csv = optarg; break;
        case OPT_LINK_CSV: o->link_csv = optarg; break;
        case OPT_NO_TIMING: o->no_timing = 1; break;
        case 'h': fputs(usage_run, stdout); return 1;
        case ':': return bad("option '%s' needs a value", argv[optind - 1]);
        default: return bad("unknown option '%s' (see moesim run --help)", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nfiles == MAX_SETS)
            return bad("more than %s CONFIG files", "256");
        o->files[o->nfiles++] = argv[i];
    }
    if (o->nfiles == 0)
        return bad("no CONFIG file given%s (see moesim run --help)", "");
    return 0;
}

/* A failure to build the traffic; out of memory says what the G x G matrices need. */
static void traffic_failed(const char *what, int e, int gpus)
{
    fprintf(stderr, "moesim run: %s failed: %s", what, strerror(-e));
    if (e == -ENOMEM)
        fprintf(stderr, " (%d GPUs: each G x G byte matrix needs %.3g GB)", gpus,
                (double)gpus * gpus * sizeof(uint64_t) / 1e9);
    fprintf(stderr, "\n");
}

static enum placement_kind placement_of(enum place_kind k)
{
    switch (k) {
    case PLACE_ROUND_ROBIN: return PLACEMENT_ROUND_ROBIN;
    case PLACE_EPLB:        return PLACEMENT_EPLB;
    case PLACE_EPLB_GLOBAL: return PLACEMENT_EPLB_GLOBAL;
    default:                return PLACEMENT_CONTIGUOUS;
    }
}

/* [balance] placement: contiguous is routing's own layout (no map). The eplb kinds balance
 * the per-expert demand, summed over the EP groups, of a first routing pass of this very
 * layer and seed on the contiguous layout: EPLB sees the loads it is judged on, the most
 * a placement from past statistics could achieve. 0, or 1 (reported). */
static int build_placement(const struct config *c, const struct routing_in *in,
                           struct placement *pl)
{
    enum placement_kind kind = placement_of(c->balance.placement);
    int experts = c->model.experts, e;
    double *load = NULL;
    if (kind == PLACEMENT_EPLB || kind == PLACEMENT_EPLB_GLOBAL) {
        struct routing first;
        if ((e = routing_run(&first, in))) {
            traffic_failed("routing", e, config_gpus(c));
            return 1;
        }
        load = calloc((size_t)experts, sizeof(*load));
        for (int g = 0; load && g < first.gpus / first.ep; g++)
            for (int x = 0; x < experts; x++)
                load[x] += (double)first.expert_demand[(size_t)g * experts + x];
        routing_free(&first);
        if (!load) {
            fprintf(stderr, "moesim run: placement: %s\n", strerror(ENOMEM));
            return 1;
        }
    }
    e = placement_create(pl, kind, experts, c->parallel.ep, c->cluster.gpus_per_node,
                         c->balance.redundant_experts, load);
    free(load);
    if (e)
        fprintf(stderr, "moesim run: placement %s: %s\n", config_place_name(c->balance.placement),
                strerror(-e));
    return e ? 1 : 0;
}

/* The MoE layer's routing (layer 0, iteration 0; routing.h) into *r: the trace of
 * routing.trace when the distribution is trace, the placement of [balance]. 0, or 2 with
 * the message printed (bad input), or 1 (runtime failure). */
static int route_layer(const struct config *c, uint64_t seed, struct routing *r)
{
    struct rtrace tr = { 0 };
    struct placement pl = { 0 };
    struct routing_in in = { .c = c, .seed = seed };
    int g = config_gpus(c), e, rc = 1;
    if (c->routing.distribution == DIST_TRACE) {
        struct rtrace_err err;
        e = rtrace_load(&tr, c->routing.trace, g, c->model.experts, &err);
        if (e == -EINVAL) {
            fprintf(stderr, "%s: routing.trace: %s\n", c->routing.trace_src.where, err.msg);
            return 2;
        }
        if (e) {
            fprintf(stderr, "moesim run: %s\n", err.msg);
            return 1;
        }
        in.trace = &tr;
    }
    if (c->balance.placement != PLACE_CONTIGUOUS) {
        if (build_placement(c, &in, &pl))
            goto out;
        in.pl = &pl;
    }
    if ((e = routing_run(r, &in)))
        traffic_failed("routing", e, g);
    rc = e ? 1 : 0;
out:
    placement_free(&pl);
    rtrace_free(&tr);
    return rc;
}

/* The collective(s) of this run: dispatch + combine, or one; a MoE layer's routing stays
 * in *rt for the report. 0, or 2 with the message printed (bad input), or 1 (runtime
 * failure). */
static int build_traffic(const struct config *c, uint64_t seed, struct traffic *m, int *nm,
                         struct routing *rt)
{
    int g = config_gpus(c), e;
    if (c->traffic.pattern == PATTERN_ALLTOALL) {
        *nm = 1;
        e = traffic_alltoall(&m[0], g, c->traffic.bytes_per_pair);
        if (e)
            traffic_failed("traffic", e, g);
        return e ? 1 : 0;
    }
    if (c->traffic.pattern == PATTERN_MATRIX) {
        struct traffic_err err;
        *nm = 1;
        e = matrix_load(&m[0], c->traffic.matrix, g, &err);
        if (e == -EINVAL) {
            fprintf(stderr, "%s: traffic.matrix: %s\n", c->traffic.matrix_src.where, err.msg);
            return 2;
        }
        if (e)
            fprintf(stderr, "moesim run: %s: %s\n", c->traffic.matrix, strerror(-e));
        return e ? 1 : 0;
    }
    *nm = c->traffic.combine ? 2 : 1;
    if ((e = route_layer(c, seed, rt)))
        return e;
    e = traffic_moe(&m[0], &m[1], rt, c);
    if (e)
        traffic_failed("traffic", e, g);
    return e ? 1 : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One requested output: where it goes, what writes it, its NAME.tmp while written. */
struct output {
    const char *path;
    int (*write)(FILE *f, const void *ctx);
    struct ofile of;
};

static int w_timeline(FILE *f, const void *x) { return timeline_write(f, x); }
static int w_csv(FILE *f, const void *x) { return report_csv(f, x); }
static int w_gpu_csv(FILE *f, const void *x) { return report_gpu_csv(f, x); }
static int w_link_csv(FILE *f, const void *x) { return report_link_csv(f, x); }
static int w_step_trace(FILE *f, const void *x) { return steprep_trace(f, x); }
static int w_step_csv(FILE *f, const void *x) { return steprep_csv(f, x); }
static int w_step_gpu_csv(FILE *f, const void *x) { return steprep_gpu_csv(f, x); }

static int open_write(struct output *out, const void *r)
{
    int e = ofile_open(&out->of, out->path);
    if (e) {
        fprintf(stderr, "moesim run: %s: cannot write: %s\n", out->path, strerror(-e));
        return e;
    }
    if ((e = out->write(out->of.f, r)))
        fprintf(stderr, "moesim run: %s: write failed: %s\n", out->path, strerror(-e));
    return e;
}

/* A target that is a folder would fail its rename after others succeeded: refuse first. */
static int check_target(const struct output *out)
{
    struct stat st;
    if (stat(out->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "moesim run: %s: is a directory\n", out->path);
        return -EISDIR;
    }
    return 0;
}

/* Every file is written to NAME.tmp first; all are renamed only when all are complete,
 * and if a rename still fails, the ones already renamed are removed: a failed run
 * leaves no output. */
static int write_outputs(struct output *all, int nout, const void *r)
{
    enum { NOUT = 4 };
    if (nout > NOUT)
        return 1;
    int e = 0, committed = 0;
    for (int i = 0; i < nout && !e; i++)
        if (all[i].path)
            e = open_write(&all[i], r);
    for (int i = 0; i < nout && !e; i++)
        if (all[i].path)
            e = check_target(&all[i]);
    for (int i = 0; i < nout && !e; i++) {
        if (all[i].path && (e = ofile_commit(&all[i].of)))
            fprintf(stderr, "moesim run: %s: %s\n", all[i].path, strerror(-e));
        committed = e ? i : i + 1;
    }
    if (!e)
        return 0;
    for (int i = 0; i < nout; i++) {
        ofile_abort(&all[i].of);
        if (i < committed && all[i].path)
            remove(all[i].path);      /* renamed before a later output failed */
    }
    return 1;
}

static int simulate(const struct run_opts *o, const struct config *c, double t_start)
{
    struct topo *t = NULL;
    struct traffic m[2];
    struct a2a_result res[2];
    struct routing rt;
    int nm = 0, rc = 1;
    memset(m, 0, sizeof(m));
    memset(res, 0, sizeof(res));
    memset(&rt, 0, sizeof(rt));
    int e = topo_create(&t, &c->cluster);
    if (e) {
        fprintf(stderr, "moesim run: topology: %s\n", strerror(-e));
        goto out;
    }
    if ((rc = build_traffic(c, o->seed, m, &nm, &rt)))
        goto out;
    rc = 1;
    double t0 = 0;
    for (int p = 0; p < nm; p++) {
        e = a2a_run(&res[p], t, &m[p], t0, o->trace != NULL);
        if (e) {
            fprintf(stderr, "moesim run: simulation failed: %s\n", strerror(-e));
            goto out;
        }
        t0 += res[p].time_s;
    }
    struct report r = { .cfg = c, .topo = t, .seed = o->seed, .nphases = nm,
                        .routing = rt.pair_tokens ? &rt : NULL,
                        .wall_s = o->no_timing ? -1 : now_s() - t_start };
    static const char *const moe[] = { "dispatch", "combine" };
    for (int p = 0; p < nm; p++) {
        r.phase_name[p] = c->traffic.pattern == PATTERN_MOE ? moe[p]
                                                            : config_pattern_name(c->traffic.pattern);
        r.phase[p] = &res[p];
    }
    struct output outs[] = {
        { .path = o->trace, .write = w_timeline },
        { .path = o->csv, .write = w_csv },
        { .path = o->gpu_csv, .write = w_gpu_csv },
        { .path = o->link_csv, .write = w_link_csv },
    };
    if ((rc = write_outputs(outs, 4, &r)) == 0)
        report_summary(stdout, &r);
out:
    for (int p = 0; p < 2; p++) {
        a2a_free(&res[p]);
        traffic_free(&m[p]);
    }
    routing_free(&rt);
    topo_free(t);
    return rc;
}

/* One training step. 0, 1 (runtime failure) or 2 (bad input, reported). */
static int simulate_step(const struct run_opts *o, const struct config *c, double t_start)
{
    if (o->link_csv) {
        fprintf(stderr, "moesim run: --link-csv: not available for a training step "
                "(schedule.kind %s)\n", config_sched_name(c->schedule.kind));
        return 2;
    }
    struct step_result res;
    struct cfg_err err;
    int e = step_run(&res, c, o->seed, o->trace != NULL, &err);
    if (e == -EINVAL) {
        fprintf(stderr, "moesim run: %s\n", err.msg);
        return 2;
    }
    if (e) {
        fprintf(stderr, "moesim run: step simulation failed: %s\n", strerror(-e));
        return 1;
    }
    struct steprep r = { .cfg = c, .seed = o->seed, .res = &res,
                         .wall_s = o->no_timing ? -1 : now_s() - t_start };
    struct output outs[] = {
        { .path = o->trace, .write = w_step_trace },
        { .path = o->csv, .write = w_step_csv },
        { .path = o->gpu_csv, .write = w_step_gpu_csv },
    };
    int rc = write_outputs(outs, 3, &r);
    if (!rc)
        steprep_summary(stdout, &r);
    step_free(&res);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    double t_start = now_s();
    struct run_opts o;
    memset(&o, 0, sizeof(o));
    int rc = parse_run(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    struct config c;
    struct cfg_err err;
    int e = config_load(&c, o.files, o.nfiles, o.sets, o.nsets, &err);
    if (e == -EINVAL) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (e) {
        fprintf(stderr, "moesim run: %s\n", strerror(-e));
        return 1;
    }
    if (c.schedule.kind != SCHED_NONE)
        return simulate_step(&o, &c, t_start);
    return simulate(&o, &c, t_start);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_top, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_top, stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("moesim %s\n", MOESIM_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    fprintf(stderr, "moesim: unknown command '%s' (see moesim --help)\n", cmd);
    return 2;
}
