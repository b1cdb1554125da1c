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
#include "balance.h"
#include "balrep.h"
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
    "Simulates expert-parallel Mixture-of-Experts training on a GPU cluster: whole\n"
    "training steps, all-to-all traffic, routing and load balance.\n"
    "\n"
    "commands:\n"
    "  run CONFIG...   time one training step (with a [schedule] kind), or one MoE\n"
    "                  layer's dispatch and combine all-to-all (or a plain all-to-all,\n"
    "                  or a measured traffic matrix)\n"
    "  balance CONFIG... compare routing and balancing policies side by side on one\n"
    "                  MoE layer: loads, dropped tokens, traffic, time\n"
    "\n"
    "options:\n"
    "  -h, --help      this text; 'moesim run --help' for the command's options\n"
    "  -V, --version   the version\n";

static const char usage_run[] =
    "usage: moesim run CONFIG... [--set section.key=value]... [--seed N]\n"
    "                  [--trace FILE] [--csv FILE] [--gpu-csv FILE] [--link-csv FILE]\n"
    "                  [--layer-csv FILE]\n"
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
    "      --layer-csv FILE per model layer of a step: drops, loads, all-to-all and\n"
    "                     expert times (steps only)\n"
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
    const char *trace, *csv, *gpu_csv, *link_csv, *layer_csv;
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
    enum { OPT_SEED = 256, OPT_GPU_CSV, OPT_LINK_CSV, OPT_LAYER_CSV, OPT_NO_TIMING };
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },     { "seed", required_argument, NULL, OPT_SEED },
        { "trace", required_argument, NULL, 't' },   { "csv", required_argument, NULL, 'c' },
        { "gpu-csv", required_argument, NULL, OPT_GPU_CSV },
        { "link-csv", required_argument, NULL, OPT_LINK_CSV },
        { "layer-csv", required_argument, NULL, OPT_LAYER_CSV },
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
        case OPT_LAYER_CSV: o->layer_csv = optarg; break;
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
    bool placed = false;
    if ((e = balance_place_for(&in, &pl, &placed))) {
        fprintf(stderr, "moesim run: placement %s: %s\n", config_place_name(c->balance.placement),
                strerror(-e));
        goto out;
    }
    in.pl = placed ? &pl : NULL;
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
static int w_step_layer_csv(FILE *f, const void *x) { return steprep_layer_csv(f, x); }

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
    if (o->layer_csv) {
        fprintf(stderr, "moesim run: --layer-csv: only for a training step (set "
                "schedule.kind)\n");
        return 2;
    }
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
        { .path = o->layer_csv, .write = w_step_layer_csv },
    };
    int rc = write_outputs(outs, 4, &r);
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

/* ---- moesim balance ---- */

#define MAX_POLICIES 16
#define POLICY_SETS 16

static const char usage_balance[] =
    "usage: moesim balance CONFIG... [--set section.key=value]... [--seed N]\n"
    "                      [--policy NAME:KEY=VALUE[,KEY=VALUE...]]...\n"
    "                      [--csv FILE] [--iter-csv FILE] [--expert-csv FILE] [--no-timing]\n"
    "\n"
    "Compares routing and balancing policies side by side on one MoE layer of the\n"
    "workload the CONFIG files describe: each policy is that config with its own\n"
    "overrides, routed [balance] iterations times (bias updates, EPLB re-placement),\n"
    "and the last iteration's loads, dropped tokens, traffic and times are shown.\n"
    "Without --policy: the config as it is, then round-robin and EPLB placements (one\n"
    "redundant expert per GPU), the aux-loss-free bias, capacity factors 1.0 and 1.25\n"
    "and node-limited routing, where the layout allows them.\n"
    "\n"
    "  -s, --set K=V        override a key for every policy (repeatable)\n"
    "  -p, --policy P       NAME:KEY=VALUE,... e.g. eplb:balance.placement=eplb,\n"
    "                       balance.redundant_experts=8 (repeatable, at most 16)\n"
    "      --seed N         routing seed (default 1)\n"
    "  -c, --csv FILE       one row per policy\n"
    "      --iter-csv FILE  one row per policy and iteration (convergence)\n"
    "      --expert-csv FILE one row per policy, EP group and expert: load, drops\n"
    "      --no-timing      write wall_s as 0\n"
    "  -h, --help           this text\n"
    "\n"
    "Exit status: 0 done, 1 runtime failure, 2 bad input.\n";

struct policy {
    char name[CFG_NAME_MAX];
    char buf[CFG_LINE_MAX + 1];
    const char *sets[POLICY_SETS];
    int nsets;
    bool optional;            /* a default policy: skipped when the layout refuses it */
};

struct balance_opts {
    struct run_opts run;      /* files, sets, seed, csv, no_timing */
    const char *iter_csv, *expert_csv;
    struct policy pol[MAX_POLICIES];
    int npol;
};

/* "NAME:k=v,k=v" into p. 0, or 2 after saying what is wrong. */
static int parse_policy(const char *arg, struct policy *p)
{
    const char *colon = strchr(arg, ':');
    size_t nlen = colon ? (size_t)(colon - arg) : 0;
    if (!colon || nlen == 0 || nlen >= sizeof(p->name) || !colon[1])
        return bad("--policy '%s': want NAME:KEY=VALUE[,KEY=VALUE...]", arg);
    if (strlen(colon + 1) >= sizeof(p->buf))
        return bad("--policy '%s': too long", arg);
    memcpy(p->name, arg, nlen);
    p->name[nlen] = 0;
    if (strpbrk(p->name, ",\"\n"))
        return bad("--policy '%s': the name may not hold ',', '\"' or a newline", arg);
    strcpy(p->buf, colon + 1);
    for (char *tok = strtok(p->buf, ","); tok; tok = strtok(NULL, ",")) {
        if (p->nsets == POLICY_SETS)
            return bad("--policy '%s': more than 16 overrides", arg);
        p->sets[p->nsets++] = tok;
    }
    return 0;
}

static void add_default(struct balance_opts *o, const char *name, const char *a, const char *b,
                        const char *c)
{
    struct policy *p = &o->pol[o->npol++];
    snprintf(p->name, sizeof(p->name), "%s", name);
    const char *v[3] = { a, b, c };
    for (int i = 0; i < 3; i++)
        if (v[i]) {
            snprintf(p->buf + strlen(p->buf), sizeof(p->buf) - strlen(p->buf), "%s%s",
                     p->nsets ? "," : "", v[i]);
            p->nsets++;
        }
    /* split after building: the pointers must point into the final buffer */
    p->nsets = 0;
    for (char *tok = strtok(p->buf, ","); tok; tok = strtok(NULL, ","))
        p->sets[p->nsets++] = tok;
    p->optional = true;
}

/* The default comparison for the base config c. */
static void default_policies(struct balance_opts *o, const struct config *c)
{
    static char red[64], nodes[64];
    int ep = c->parallel.ep, gpn = c->cluster.gpus_per_node;
    int group_nodes = ep > gpn ? ep / gpn : 1;
    snprintf(red, sizeof(red), "balance.redundant_experts=%d", ep);
    snprintf(nodes, sizeof(nodes), "routing.max_nodes=%d", group_nodes / 2 ? group_nodes / 2 : 1);
    add_default(o, "as-configured", NULL, NULL, NULL);
    o->pol[0].optional = false;
    add_default(o, "round-robin", "balance.placement=round-robin", "balance.redundant_experts=0",
                NULL);
    add_default(o, "eplb", "balance.placement=eplb", red, NULL);
    add_default(o, "eplb-global", "balance.placement=eplb-global", red, NULL);
    add_default(o, "bias", "balance.bias_gamma=0.01", "balance.iterations=40",
                "routing.scoring=sigmoid");
    add_default(o, "capacity-1.0", "balance.capacity_factor=1.0", NULL, NULL);
    add_default(o, "capacity-1.25", "balance.capacity_factor=1.25", NULL, NULL);
    if (group_nodes > 1)
        add_default(o, "node-limited", nodes, NULL, NULL);
}

/* 0: parsed; 1: help printed; 2: bad usage (reported). */
static int parse_balance(int argc, char **argv, struct balance_opts *o)
{
    enum { OPT_SEED = 256, OPT_ITER_CSV, OPT_EXPERT_CSV, OPT_NO_TIMING };
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },     { "seed", required_argument, NULL, OPT_SEED },
        { "policy", required_argument, NULL, 'p' },  { "csv", required_argument, NULL, 'c' },
        { "iter-csv", required_argument, NULL, OPT_ITER_CSV },
        { "expert-csv", required_argument, NULL, OPT_EXPERT_CSV },
        { "no-timing", no_argument, NULL, OPT_NO_TIMING },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
    };
    struct run_opts *r = &o->run;
    r->seed = 1;
    opterr = 0;
    optind = 1;
    int ch, rc;
    while ((ch = getopt_long(argc, argv, ":s:p:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (r->nsets == MAX_SETS)
                return bad("more than %s --set options", "256");
            r->sets[r->nsets++] = optarg;
            break;
        case 'p':
            if (o->npol == MAX_POLICIES)
                return bad("more than %s --policy options", "16");
            if ((rc = parse_policy(optarg, &o->pol[o->npol++])))
                return rc;
            break;
        case OPT_SEED:
            if (parse_seed(optarg, &r->seed))
                return bad("--seed: '%s' is not a non-negative integer", optarg);
            break;
        case 'c': r->csv = optarg; break;
        case OPT_ITER_CSV: o->iter_csv = optarg; break;
        case OPT_EXPERT_CSV: o->expert_csv = optarg; break;
        case OPT_NO_TIMING: r->no_timing = 1; break;
        case 'h': fputs(usage_balance, stdout); return 1;
        case ':': return bad("option '%s' needs a value", argv[optind - 1]);
        default: return bad("unknown option '%s' (see moesim balance --help)", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (r->nfiles == MAX_SETS)
            return bad("more than %s CONFIG files", "256");
        r->files[r->nfiles++] = argv[i];
    }
    if (r->nfiles == 0)
        return bad("no CONFIG file given%s (see moesim balance --help)", "");
    return 0;
}

/* The config of one policy: the files, the common --set overrides, then its own. */
static int policy_config(const struct balance_opts *o, const struct policy *p, struct config *c,
                         struct cfg_err *err)
{
    const char *sets[MAX_SETS + POLICY_SETS];
    int n = 0;
    for (int i = 0; i < o->run.nsets; i++)
        sets[n++] = o->run.sets[i];
    for (int i = 0; i < p->nsets; i++)
        sets[n++] = p->sets[i];
    return config_load(c, o->run.files, o->run.nfiles, sets, n, err);
}

static int w_bal_csv(FILE *f, const void *x) { return balrep_csv(f, x); }
static int w_bal_iter(FILE *f, const void *x) { return balrep_iter_csv(f, x); }
static int w_bal_expert(FILE *f, const void *x) { return balrep_expert_csv(f, x); }

/* Runs every policy; a default policy the layout refuses is skipped and said so. */
static int run_policies(struct balance_opts *o, struct config *cfg, struct balance_result *res,
                        struct balrep_col *cols, int *ncols)
{
    for (int i = 0; i < o->npol; i++) {
        struct policy *p = &o->pol[i];
        struct cfg_err err = { { 0 } };
        int e = policy_config(o, p, &cfg[*ncols], &err);
        if (!e)
            e = balance_run(&res[*ncols], &cfg[*ncols], o->run.seed, &err);
        if (e == -EINVAL && p->optional) {
            printf("(skipped %s: %s)\n", p->name, err.msg);
            continue;
        }
        if (e == -EINVAL) {
            fprintf(stderr, "moesim balance: policy %s: %s\n", p->name, err.msg);
            return 2;
        }
        if (e) {
            fprintf(stderr, "moesim balance: policy %s: %s\n", p->name, strerror(-e));
            return 1;
        }
        cols[*ncols] = (struct balrep_col){ p->name, &cfg[*ncols], &res[*ncols] };
        (*ncols)++;
    }
    return 0;
}

static int cmd_balance(int argc, char **argv)
{
    double t_start = now_s();
    static struct balance_opts o;
    static struct config cfg[MAX_POLICIES];
    struct balance_result res[MAX_POLICIES];
    struct balrep_col cols[MAX_POLICIES];
    int ncols = 0;
    memset(&o, 0, sizeof(o));
    memset(res, 0, sizeof(res));
    int rc = parse_balance(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    /* the base config must load as given; it also decides the default policies */
    struct cfg_err err;
    int e = config_load(&cfg[0], o.run.files, o.run.nfiles, o.run.sets, o.run.nsets, &err);
    if (e) {
        fprintf(stderr, e == -EINVAL ? "%s\n" : "moesim balance: %s\n",
                e == -EINVAL ? err.msg : strerror(-e));
        return e == -EINVAL ? 2 : 1;
    }
    if (o.npol == 0)
        default_policies(&o, &cfg[0]);
    /* user policies are checked before any runs */
    for (int i = 0; i < o.npol; i++) {
        if (o.pol[i].optional)
            continue;
        if (policy_config(&o, &o.pol[i], &cfg[i], &err) == -EINVAL) {
            fprintf(stderr, "moesim balance: policy %s: %s\n", o.pol[i].name, err.msg);
            return 2;
        }
    }
    rc = run_policies(&o, cfg, res, cols, &ncols);
    if (!rc) {
        struct balrep r = { ncols, cols, o.run.seed, o.run.no_timing ? -1 : now_s() - t_start };
        struct output outs[] = {
            { .path = o.run.csv, .write = w_bal_csv },
            { .path = o.iter_csv, .write = w_bal_iter },
            { .path = o.expert_csv, .write = w_bal_expert },
        };
        if (!(rc = write_outputs(outs, 3, &r)))
            balrep_table(stdout, &r);
    }
    for (int i = 0; i < ncols; i++)
        balance_free(&res[i]);
    return rc;
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
    if (!strcmp(cmd, "balance"))
        return cmd_balance(argc - 1, argv + 1);
    fprintf(stderr, "moesim: unknown command '%s' (see moesim --help)\n", cmd);
    return 2;
}
