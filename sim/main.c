/* main.c: the moesim command line. Exit status: 0 done, 1 runtime failure, 2 bad input. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "a2a.h"
#include "balance.h"
#include "balrep.h"
#include "cmd_sweep.h"
#include "config.h"
#include "exprep.h"
#include "limits.h"
#include "matrix.h"
#include "ofile.h"
#include "placement.h"
#include "plot.h"
#include "report.h"
#include "routing.h"
#include "rtrace.h"
#include "runpt.h"
#include "step.h"
#include "steprep.h"
#include "textin.h"
#include "timeline.h"
#include "topo.h"
#include "traffic.h"
#include "utilrep.h"

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
    "  sweep SWEEP.ini... -o DIR  run every point of a sweep's axes (top_k, experts,\n"
    "                  schedules, ...): one CSV row each, in parallel with --jobs or mpirun\n"
    "  plot FILE|DIR... -o OUT  draw a sweep, utilization, expert loads or a step's\n"
    "                  pipeline as OUT.png and OUT.svg (gnuplot)\n"
    "\n"
    "options:\n"
    "  -h, --help      this text; 'moesim run --help' for the command's options\n"
    "  -V, --version   the version\n";

static const char usage_run[] =
    "usage: moesim run CONFIG... [--set section.key=value]... [--seed N]\n"
    "                  [--trace FILE] [--csv FILE] [--gpu-csv FILE] [--link-csv FILE]\n"
    "                  [--layer-csv FILE] [--routing-trace FILE] [--matrix-out FILE]\n"
    "                  [--util-csv FILE [--util-bins N]] [--expert-csv FILE] [--ops-csv FILE]\n"
    "                  [--no-timing] [--max-mem BYTES] [--max-events N]\n"
    "\n"
    "Reads the INI files in order (later values win), then the --set overrides.\n"
    "With [schedule] kind (gpipe | 1f1b | interleaved-1f1b | zb1p | dualpipe | dualpipev)\n"
    "it simulates one training step: every micro-batch's forward and backward on every\n"
    "pipeline stage, expert compute, all-to-alls, pipeline sends and the DP reduce.\n"
    "With kind prefill | decode it simulates one inference forward step of the whole\n"
    "model for [serve] batch (TTFT, time per output token, tokens/s, KV cache).\n"
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
    "      --routing-trace FILE the routing drawn, as a routing trace (traces/FORMAT.md):\n"
    "                     tokens per (MoE layer, source GPU, expert); replay it with\n"
    "                     routing.distribution=trace, routing.trace=FILE\n"
    "      --matrix-out FILE the dispatch byte matrix of a MoE layer, 'src dst bytes'\n"
    "                     (traces/FORMAT.md; combine is its transpose; not for steps)\n"
    "      --util-csv FILE per GPU and time bin: compute and comm busy fractions, NVLink\n"
    "                     and NIC utilization; per link and bin its utilization (layer\n"
    "                     runs); format in README, moesim plot draws it\n"
    "      --util-bins N  time bins of --util-csv over the run (1..100000, default 200)\n"
    "      --expert-csv FILE per MoE layer and expert: tokens routed, share, load/mean\n"
    "      --ops-csv FILE every sub-op of a step: lane, stream, F/B/W, start, end (steps\n"
    "                     only; moesim plot draws the pipeline)\n"
    "      --no-timing    write wall_s as 0, so repeated runs give identical files\n"
    "      --max-mem BYTES  refuse (exit 2) a run estimated to need more memory; suffix\n"
    "                     K M G T (1000^n) or KiB MiB GiB TiB; default half the RAM\n"
    "      --max-events N refuse a run estimated to take more events (routed tokens,\n"
    "                     flow starts and ends, step sub-ops); default 2e8\n"
    "  -h, --help         this text\n"
    "\n"
    "An output FILE is written to a temporary file beside it, renamed when complete; - is\n"
    "standard output (the summary is then left out); a FIFO or device is written in\n"
    "place. An output may not name an input or another output. On a terminal, long\n"
    "runs show their progress on stderr.\n"
    "Exit status: 0 done, 1 runtime failure (a write error too), 2 bad input (one line\n"
    "on stderr says what and where; no output file is written), 128 + N when killed by\n"
    "signal N (temporary files removed).\n";

/* ---- output options: one table per command ---- */

static int w_timeline(FILE *f, const void *x) { return timeline_write(f, x); }
static int w_csv(FILE *f, const void *x) { return report_csv(f, x); }
static int w_gpu_csv(FILE *f, const void *x) { return report_gpu_csv(f, x); }
static int w_link_csv(FILE *f, const void *x) { return report_link_csv(f, x); }
static int w_step_trace(FILE *f, const void *x) { return steprep_trace(f, x); }
static int w_step_csv(FILE *f, const void *x) { return steprep_csv(f, x); }
static int w_step_gpu_csv(FILE *f, const void *x) { return steprep_gpu_csv(f, x); }
static int w_step_layer_csv(FILE *f, const void *x) { return steprep_layer_csv(f, x); }
static int w_rtrace(FILE *f, const void *x) { return report_routing_trace(f, x); }
static int w_step_rtrace(FILE *f, const void *x) { return steprep_routing_trace(f, x); }
static int w_matrix(FILE *f, const void *x)
{
    const struct report *r = x;
    struct traffic d, c;
    if (!r->routing)
        return -EINVAL;
    int rc = traffic_moe(&d, &c, r->routing, r->cfg);
    if (!rc) {
        struct matrix v = traffic_as_matrix(&d);
        rc = matrix_write(f, &v);
        traffic_free(&d);
        traffic_free(&c);
    }
    return rc;
}
static int w_util(FILE *f, const void *x)
{
    const struct report *r = x;
    return utilrep_layer_csv(f, r, r->util_bins);
}
static int w_step_util(FILE *f, const void *x)
{
    const struct steprep *r = x;
    return utilrep_step_csv(f, r, r->util_bins);
}
static int w_expert(FILE *f, const void *x) { return exprep_layer_csv(f, x); }
static int w_step_expert(FILE *f, const void *x) { return exprep_step_csv(f, x); }
static int w_step_ops(FILE *f, const void *x) { return utilrep_ops_csv(f, x); }
static int w_bal_csv(FILE *f, const void *x) { return balrep_csv(f, x); }
static int w_bal_iter(FILE *f, const void *x) { return balrep_iter_csv(f, x); }
static int w_bal_expert(FILE *f, const void *x) { return balrep_expert_csv(f, x); }
static int w_bal_expert_iter(FILE *f, const void *x) { return balrep_expert_iter_csv(f, x); }

/* An output option, --NAME FILE, given at most once. write[MODE_LAYER] writes it from
 * moesim run's struct report (and from moesim balance's struct balrep), write[MODE_STEP]
 * from a training step's struct steprep; NULL: not available there. To add an output,
 * add a row to the command's table and give its writer: the option, the duplicate and
 * collision checks, the temporary file and the commit come with the row. */
enum { MODE_LAYER, MODE_STEP };
struct out_def {
    const char *name;                  /* long option without "--" */
    int short_opt;                     /* 0: none */
    int (*write[2])(FILE *f, const void *ctx);
};

#define MAX_OUTS 12
enum { RUN_TRACE = 0, RUN_ROUTING_TRACE = 5, RUN_MATRIX = 6, RUN_UTIL = 7, RUN_EXPERT = 8,
       RUN_OPS = 9 };  /* run_outs' rows of
                                          --trace and --routing-trace (what they write is
                                          recorded only when they are asked for) and of
                                          --matrix-out (a MoE layer's only) */
static const struct out_def run_outs[] = {
    { "trace", 't', { w_timeline, w_step_trace } },
    { "csv", 'c', { w_csv, w_step_csv } },
    { "gpu-csv", 0, { w_gpu_csv, w_step_gpu_csv } },
    { "link-csv", 0, { w_link_csv, NULL } },
    { "layer-csv", 0, { NULL, w_step_layer_csv } },
    { "routing-trace", 0, { w_rtrace, w_step_rtrace } },
    { "matrix-out", 0, { w_matrix, NULL } },
    { "util-csv", 0, { w_util, w_step_util } },        /* need the run's time series */
    { "expert-csv", 0, { w_expert, w_step_expert } },  /* needs the routing kept */
    { "ops-csv", 0, { NULL, w_step_ops } },            /* needs the slices kept */
};
static const struct out_def balance_outs[] = {
    { "csv", 'c', { w_bal_csv, NULL } },
    { "iter-csv", 0, { w_bal_iter, NULL } },
    { "expert-csv", 0, { w_bal_expert, NULL } },
    { "expert-iter-csv", 0, { w_bal_expert_iter, NULL } },
};
#define NROWS(t) (int)(sizeof(t) / sizeof((t)[0]))
_Static_assert(NROWS(run_outs) <= MAX_OUTS && NROWS(balance_outs) <= MAX_OUTS,
               "raise MAX_OUTS");

struct run_opts {
    const char *files[MAX_SETS];
    const char *sets[MAX_SETS];
    int nfiles, nsets;
    uint64_t seed;
    const char *out[MAX_OUTS];         /* by row of the command's out_def table; NULL: none */
    int no_timing;
    int util_bins;                     /* --util-bins; 0: the default */
    struct limits lim;                 /* --max-mem, --max-events */
};

/* "moesim CMD: " and the message, one line on stderr (control bytes escaped, as a
 * path may hold them). Returns 2, the status of bad input. */
__attribute__((format(printf, 2, 3)))
static int bad(const char *cmd, const char *fmt, ...)
{
    char raw[2 * CFG_ERR_MAX], msg[2 * CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    textin_escape(msg, sizeof(msg), raw);
    fprintf(stderr, "moesim %s: %s\n", cmd, msg);
    return 2;
}

/* --max-mem BYTES (mem) or --max-events N into l. 0, or 2 after saying what is wrong. */
static int parse_limit(const char *cmd, bool mem, const char *arg, struct limits *l)
{
    if (mem && limits_parse_bytes(arg, &l->max_bytes))
        return bad(cmd, "--max-mem: '%s' is not a size (a positive number, optional suffix "
                   "K M G T KB MB GB TB KiB MiB GiB TiB)", arg);
    if (!mem && limits_parse_count(arg, &l->max_events))
        return bad(cmd, "--max-events: '%s' is not a positive number", arg);
    return 0;
}

/* Refuses runs (one after another) whose estimate passes o's limits: 0, or 2 and one line
 * naming the key that weighs most. */
static int check_limits(const char *cmd, const struct run_opts *o, const struct config *const *c,
                        int n, enum limits_cmd k)
{
    char msg[512];
    bool trace = k == LIMITS_RUN && (o->out[RUN_TRACE] || o->out[RUN_UTIL] || o->out[RUN_OPS]);
    return limits_check(c, n, k, trace, &o->lim, msg, sizeof(msg)) ? bad(cmd, "%s", msg) : 0;
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

/* getopt_long's table: fixed[0..nfixed), then one entry per row of defs (val OPT_OUT +
 * row), then the terminating zeros. opts has room for MAX_FIXED + MAX_OUTS + 1. */
#define OPT_OUT 512
#define MAX_FIXED 8
static void build_opts(struct option *opts, const struct option *fixed, int nfixed,
                       const struct out_def *defs, int ndefs)
{
    int n = 0;
    for (int i = 0; i < nfixed; i++)
        opts[n++] = fixed[i];
    for (int i = 0; i < ndefs; i++)
        opts[n++] = (struct option){ defs[i].name, required_argument, NULL, OPT_OUT + i };
    opts[n] = (struct option){ NULL, 0, NULL, 0 };
}

/* The row of defs that getopt's ch selects (its long option or its short letter), or -1. */
static int out_row(int ch, const struct out_def *defs, int ndefs)
{
    for (int i = 0; i < ndefs; i++)
        if (ch == OPT_OUT + i || (defs[i].short_opt && ch == defs[i].short_opt))
            return i;
    return -1;
}

/* Records an output option; one given twice is refused (which one would win is a guess). */
static int set_output(const char *cmd, const char **slot, const char *name, const char *arg)
{
    if (*slot)
        return bad(cmd, "--%s given twice ('%s' and '%s')", name, *slot, arg);
    *slot = arg;
    return 0;
}

/* 0: parsed; 1: help printed; 2: bad usage (reported). */
static int parse_run(int argc, char **argv, struct run_opts *o)
{
    enum { OPT_SEED = 256, OPT_NO_TIMING, OPT_MAX_MEM, OPT_MAX_EVENTS, OPT_UTIL_BINS };
    static const struct option fixed[] = {
        { "set", required_argument, NULL, 's' },     { "seed", required_argument, NULL, OPT_SEED },
        { "no-timing", no_argument, NULL, OPT_NO_TIMING },
        { "util-bins", required_argument, NULL, OPT_UTIL_BINS },
        { "max-mem", required_argument, NULL, OPT_MAX_MEM },
        { "max-events", required_argument, NULL, OPT_MAX_EVENTS },
        { "help", no_argument, NULL, 'h' },
    };
    _Static_assert(NROWS(fixed) <= MAX_FIXED, "raise MAX_FIXED");
    struct option opts[MAX_FIXED + MAX_OUTS + 1];
    build_opts(opts, fixed, NROWS(fixed), run_outs, NROWS(run_outs));
    o->seed = 1;
    limits_default(&o->lim);
    opterr = 0;
    optind = 1;
    int ch, row, rc;
    uint64_t bins;
    while ((ch = getopt_long(argc, argv, ":s:t:c:h", opts, NULL)) != -1) {
        if ((row = out_row(ch, run_outs, NROWS(run_outs))) >= 0) {
            if ((rc = set_output("run", &o->out[row], run_outs[row].name, optarg)))
                return rc;
            continue;
        }
        switch (ch) {
        case 's':
            if (o->nsets == MAX_SETS)
                return bad("run", "more than %d --set options", MAX_SETS);
            o->sets[o->nsets++] = optarg;
            break;
        case OPT_SEED:
            if (parse_seed(optarg, &o->seed))
                return bad("run", "--seed: '%s' is not a non-negative integer", optarg);
            break;
        case OPT_NO_TIMING: o->no_timing = 1; break;
        case OPT_UTIL_BINS:
            if (parse_seed(optarg, &bins) || bins < 1 || bins > UTILREP_BINS_MAX)
                return bad("run", "--util-bins: '%s' is not a whole number from 1 to %d", optarg,
                           UTILREP_BINS_MAX);
            o->util_bins = (int)bins;
            break;
        case OPT_MAX_MEM:
        case OPT_MAX_EVENTS:
            if ((rc = parse_limit("run", ch == OPT_MAX_MEM, optarg, &o->lim)))
                return rc;
            break;
        case 'h': fputs(usage_run, stdout); return 1;
        case ':': return bad("run", "option '%s' needs a value", argv[optind - 1]);
        default: return bad("run", "unknown option '%s' (see moesim run --help)", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nfiles == MAX_SETS)
            return bad("run", "more than %d CONFIG files", MAX_SETS);
        o->files[o->nfiles++] = argv[i];
    }
    if (o->nfiles == 0)
        return bad("run", "no CONFIG file given (see moesim run --help)");
    if (o->util_bins && !o->out[RUN_UTIL])
        return bad("run", "--util-bins: only with --util-csv");
    return 0;
}

/* ---- the files a run reads: no output may name one ---- */

struct input {
    char what[CFG_PATH_MAX + 64];      /* "config file cfg.ini", "routing.trace (cfg.ini:7)" */
    struct ofile_id id;
};
struct inputs {
    struct input *v;
    int n, cap;
};

/* Adds path as an input, existing or not (a routing trace may be named and not read);
 * one that cannot be identified (its folder is missing) is left out: no output can be
 * written there. 0 or -ENOMEM. */
__attribute__((format(printf, 3, 4)))
static int add_input(struct inputs *in, const char *path, const char *fmt, ...)
{
    struct ofile_id id;
    if (!path[0] || ofile_identify(path, &id))
        return 0;
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 16;
        struct input *v = realloc(in->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        in->v = v;
        in->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->v[in->n].what, sizeof(in->v[in->n].what), fmt, ap);
    va_end(ap);
    in->v[in->n++].id = id;
    return 0;
}

static int add_config_file(struct inputs *in, const char *path, const char *by, int depth);

/* An `include = path` of one config file (before any section; config.h). */
struct include_scan {
    struct inputs *in;
    const char *path;                  /* the including file */
    int depth, rc;
};

static int on_include(void *user, const char *section, const char *name, const char *value)
{
    struct include_scan *s = user;
    char path[CFG_PATH_MAX];
    const char *slash = strrchr(s->path, '/');
    int ndir = value[0] == '/' || !slash ? 0 : (int)(slash - s->path) + 1;
    if (section[0] || strcmp(name, "include") || !value[0] || s->rc)
        return 1;
    if (snprintf(path, sizeof(path), "%.*s%s", ndir, s->path, value) < (int)sizeof(path))
        s->rc = add_config_file(s->in, path, s->path, s->depth + 1);
    return 1;
}

/* A config file and, read with the same INI parser, the files it includes. config_load
 * has read them all without error, so no include chain is deeper than the limit. */
static int add_config_file(struct inputs *in, const char *path, const char *by, int depth)
{
    int e = by ? add_input(in, path, "config file %s (included by %s)", path, by)
               : add_input(in, path, "config file %s", path);
    if (e || depth >= CFG_INCLUDE_DEPTH)
        return e;
    struct include_scan s = { in, path, depth, 0 };
    ini_parse(path, on_include, &s);
    return s.rc;
}

/* The config files and the files c names. 0 or -ENOMEM. */
static int add_inputs(struct inputs *in, const char *const *files, int nfiles,
                      const struct config *c)
{
    int e = 0;
    for (int i = 0; i < nfiles && !e; i++)
        e = add_config_file(in, files[i], NULL, 0);
    if (!e)
        e = add_input(in, c->routing.trace, "routing.trace (%s)", c->routing.trace_src.where);
    if (!e)
        e = add_input(in, c->traffic.matrix, "traffic.matrix (%s)", c->traffic.matrix_src.where);
    if (!e)
        e = add_input(in, c->calibration.expert_table, "calibration.expert_table (%s)",
                      c->calibration.expert_table_src.where);
    return e;
}

/* ---- outputs: checked before the run, written and committed in one place ---- */

struct output {
    const char *name;                  /* option without "--", for messages */
    const char *path;                  /* NULL: not requested */
    int (*write)(FILE *f, const void *ctx);
    struct ofile of;
};

/* outs[i] for row i of defs, with the writer of mode. */
static void outputs_init(struct output *outs, const struct out_def *defs, int ndefs,
                         const char *const *paths, int mode)
{
    for (int i = 0; i < ndefs; i++)
        outs[i] = (struct output){ defs[i].name, paths[i], defs[i].write[mode], { 0 } };
}

/* ofile_probe's refusal in words. */
static const char *probe_why(int e)
{
    switch (e) {
    case -EINVAL: return "empty file name";
    case -ENOENT: return "no such folder";
    case -EISDIR: return "is a folder";
    case -ENAMETOOLONG: return "name too long";
    default: return strerror(-e);
    }
}

/* Before the run: every requested output can be written and names neither an input nor
 * another output (by device and inode, or by folder and name for a new file). 0, or 2
 * with one line said. */
static int outputs_check(const char *cmd, struct output *outs, int n, const struct inputs *in)
{
    for (int i = 0; i < n; i++) {
        struct output *a = &outs[i];
        if (!a->path)
            continue;
        int e = ofile_probe(&a->of, a->path);
        if (e)
            return bad(cmd, "--%s '%s': %s", a->name, a->path, probe_why(e));
        for (int j = 0; j < i; j++)
            if (outs[j].path && ofile_same(&a->of.id, &outs[j].of.id))
                return bad(cmd, "--%s '%s': names the same file as --%s '%s'", a->name, a->path,
                           outs[j].name, outs[j].path);
        for (int k = 0; k < in->n; k++)
            if (ofile_same(&a->of.id, &in->v[k].id))
                return bad(cmd, "--%s '%s': names an input of the run, the %s", a->name,
                           a->path, in->v[k].what);
    }
    return 0;
}

/* Whether an output goes to standard output (then the summary is not printed). */
static bool outputs_to_stdout(const struct output *outs, int n)
{
    for (int i = 0; i < n; i++)
        if (outs[i].path && outs[i].of.kind == OFILE_STDOUT)
            return true;
    return false;
}

/* Opens, writes and (in place) commits, or (to a temporary) flushes one output. */
static int output_write(const char *cmd, struct output *out, const void *ctx)
{
    int e = ofile_open(&out->of, out->path);
    if (e) {
        bad(cmd, "--%s '%s': cannot write: %s", out->name, out->path, strerror(-e));
        return e;
    }
    errno = 0;
    e = out->write(out->of.f, ctx);
    if (e == -EIO && errno)
        e = -errno;                           /* the failed write's reason, which ferror loses */
    if (!e)
        e = out->of.kind == OFILE_REPLACE ? ofile_flush(&out->of) : ofile_commit(&out->of);
    if (e)
        bad(cmd, "--%s '%s': write failed: %s", out->name, out->path, strerror(-e));
    return e;
}

/* Regular files first, each to its temporary; then the outputs written in place
 * (standard output, a FIFO, a device), which cannot be taken back; then the renames.
 * A failure before the renames leaves no new file. A rename failing after others
 * succeeded leaves those complete files: removing them would lose what they replaced.
 * 0, or 1 with one line said. */
static int outputs_write(const char *cmd, struct output *outs, int n, const void *ctx)
{
    int e = 0;
    for (int pass = 0; pass < 2 && !e; pass++)
        for (int i = 0; i < n && !e; i++)
            if (outs[i].path && (outs[i].of.kind == OFILE_REPLACE) == (pass == 0))
                e = output_write(cmd, &outs[i], ctx);
    for (int i = 0; i < n && !e; i++)
        if (outs[i].of.f && (e = ofile_commit(&outs[i].of)))
            bad(cmd, "--%s '%s': %s", outs[i].name, outs[i].path, strerror(-e));
    for (int i = 0; i < n; i++)
        ofile_abort(&outs[i].of);
    return e ? 1 : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One run of c (runpt.h), its outputs written, then its summary unless an output went to
 * standard output. 0, 1 (runtime failure) or 2 (bad input), reported. */
static int run_config(const struct run_opts *o, const struct config *c, struct output *outs,
                      int nout, double t_start)
{
    struct runpt r;
    char msg[RUNPT_MSG_MAX];
    struct runpt_opts ro = {
        .seed = o->seed, .tty = true,
        .trace = o->out[RUN_TRACE] || o->out[RUN_UTIL] || o->out[RUN_OPS],
        .routing = o->out[RUN_ROUTING_TRACE] || o->out[RUN_EXPERT] };
    int rc = runpt_run(&r, c, &ro, msg, sizeof(msg));
    r.rep.util_bins = r.srep.util_bins = o->util_bins;
    if (rc) {
        fprintf(stderr, "%s\n", msg);
    } else {
        runpt_set_wall(&r, o->no_timing ? -1 : now_s() - t_start);
        rc = outputs_write("run", outs, nout, runpt_ctx(&r));
        if (!rc && !outputs_to_stdout(outs, nout) && r.mode == RUNPT_STEP)
            steprep_summary(stdout, &r.srep);
        else if (!rc && !outputs_to_stdout(outs, nout))
            report_summary(stdout, &r.rep);
    }
    runpt_free(&r);
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
    int mode = c.schedule.kind != SCHED_NONE ? MODE_STEP : MODE_LAYER, n = NROWS(run_outs);
    for (int i = 0; i < n; i++) {
        if (!o.out[i] || run_outs[i].write[mode])
            continue;
        if (mode == MODE_STEP)
            return bad("run", "--%s: not available for a training step (schedule.kind %s)",
                       run_outs[i].name, config_sched_name(c.schedule.kind));
        return bad("run", "--%s: only for a training step (set schedule.kind)", run_outs[i].name);
    }
    if (o.out[RUN_ROUTING_TRACE] && mode == MODE_LAYER && c.traffic.pattern != PATTERN_MOE)
        return bad("run", "--routing-trace: traffic.pattern %s has no routing (only moe)",
                   config_pattern_name(c.traffic.pattern));
    static const int moe_only[] = { RUN_MATRIX, RUN_EXPERT };   /* a layer run's */
    for (int k = 0; k < NROWS(moe_only); k++) {
        int i = moe_only[k];
        if (o.out[i] && mode == MODE_LAYER && c.traffic.pattern != PATTERN_MOE)
            return bad("run", "--%s: only for traffic.pattern moe (not %s)", run_outs[i].name,
                       config_pattern_name(c.traffic.pattern));
    }
    struct output outs[MAX_OUTS];
    struct inputs in = { 0 };
    outputs_init(outs, run_outs, n, o.out, mode);
    if (add_inputs(&in, o.files, o.nfiles, &c)) {
        fprintf(stderr, "moesim run: out of memory\n");
        rc = 1;
    } else if (!(rc = outputs_check("run", outs, n, &in)) &&
               !(rc = check_limits("run", &o, (const struct config *[]){ &c }, 1, LIMITS_RUN)))
        rc = run_config(&o, &c, outs, n, t_start);
    free(in.v);
    return rc;
}

/* ---- moesim balance ---- */

#define MAX_POLICIES 16
#define POLICY_SETS 16

static const char usage_balance[] =
    "usage: moesim balance CONFIG... [--set section.key=value]... [--seed N]\n"
    "                      [--policy NAME:KEY=VALUE[,KEY=VALUE...]]...\n"
    "                      [--csv FILE] [--iter-csv FILE] [--expert-csv FILE]\n"
    "                      [--expert-iter-csv FILE] [--no-timing]\n"
    "                      [--max-mem BYTES] [--max-events N]\n"
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
    "      --expert-iter-csv FILE  the same loads for every iteration\n"
    "      --no-timing      write wall_s as 0\n"
    "      --max-mem BYTES  refuse (exit 2) when all policies together are estimated to\n"
    "      --max-events N   need more memory or events (defaults as for moesim run)\n"
    "  -h, --help           this text\n"
    "\n"
    "Outputs as for moesim run (- is standard output, then without the table).\n"
    "Exit status: 0 done, 1 runtime failure, 2 bad input (one line on stderr, starting\n"
    "'moesim balance:'), 128 + N when killed by signal N.\n";

struct policy {
    char name[CFG_NAME_MAX];
    char buf[CFG_LINE_MAX + 1];
    const char *sets[POLICY_SETS];
    int nsets;
    bool optional;            /* a default policy: skipped when the layout refuses it */
};

struct balance_opts {
    struct run_opts run;      /* files, sets, seed, outputs (balance_outs), no_timing */
    struct policy pol[MAX_POLICIES];
    int npol;
};

/* "NAME:k=v,k=v" into p. 0, or 2 after saying what is wrong. */
static int parse_policy(const char *arg, struct policy *p)
{
    const char *colon = strchr(arg, ':');
    size_t nlen = colon ? (size_t)(colon - arg) : 0;
    if (!colon || nlen == 0 || nlen >= sizeof(p->name) || !colon[1])
        return bad("balance", "--policy '%s': want NAME:KEY=VALUE[,KEY=VALUE...]", arg);
    if (strlen(colon + 1) >= sizeof(p->buf))
        return bad("balance", "--policy '%s': too long", arg);
    memcpy(p->name, arg, nlen);
    p->name[nlen] = 0;
    if (strpbrk(p->name, ",\"\t") || textin_clean_len(p->name, nlen) < nlen)
        return bad("balance", "--policy '%s': the name may not hold ',', '\"' or a control "
                   "character", arg);
    strcpy(p->buf, colon + 1);
    for (char *tok = strtok(p->buf, ","); tok; tok = strtok(NULL, ",")) {
        if (p->nsets == POLICY_SETS)
            return bad("balance", "--policy '%s': more than %d overrides", arg, POLICY_SETS);
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
    /* expert_groups is eplb's alone: the other placements drop the base config's */
    add_default(o, "round-robin", "balance.placement=round-robin", "balance.redundant_experts=0",
                "balance.expert_groups=0");
    add_default(o, "eplb", "balance.placement=eplb", red, NULL);
    add_default(o, "eplb-global", "balance.placement=eplb-global", red, "balance.expert_groups=0");
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
    enum { OPT_SEED = 256, OPT_NO_TIMING, OPT_MAX_MEM, OPT_MAX_EVENTS };
    static const struct option fixed[] = {
        { "set", required_argument, NULL, 's' },     { "seed", required_argument, NULL, OPT_SEED },
        { "policy", required_argument, NULL, 'p' },
        { "no-timing", no_argument, NULL, OPT_NO_TIMING },
        { "max-mem", required_argument, NULL, OPT_MAX_MEM },
        { "max-events", required_argument, NULL, OPT_MAX_EVENTS },
        { "help", no_argument, NULL, 'h' },
    };
    _Static_assert(NROWS(fixed) <= MAX_FIXED, "raise MAX_FIXED");
    struct option opts[MAX_FIXED + MAX_OUTS + 1];
    build_opts(opts, fixed, NROWS(fixed), balance_outs, NROWS(balance_outs));
    struct run_opts *r = &o->run;
    r->seed = 1;
    limits_default(&r->lim);
    opterr = 0;
    optind = 1;
    int ch, row, rc;
    while ((ch = getopt_long(argc, argv, ":s:p:c:h", opts, NULL)) != -1) {
        if ((row = out_row(ch, balance_outs, NROWS(balance_outs))) >= 0) {
            if ((rc = set_output("balance", &r->out[row], balance_outs[row].name, optarg)))
                return rc;
            continue;
        }
        switch (ch) {
        case 's':
            if (r->nsets == MAX_SETS)
                return bad("balance", "more than %d --set options", MAX_SETS);
            r->sets[r->nsets++] = optarg;
            break;
        case 'p':
            if (o->npol == MAX_POLICIES)
                return bad("balance", "more than %d --policy options", MAX_POLICIES);
            if ((rc = parse_policy(optarg, &o->pol[o->npol++])))
                return rc;
            break;
        case OPT_SEED:
            if (parse_seed(optarg, &r->seed))
                return bad("balance", "--seed: '%s' is not a non-negative integer", optarg);
            break;
        case OPT_NO_TIMING: r->no_timing = 1; break;
        case OPT_MAX_MEM:
        case OPT_MAX_EVENTS:
            if ((rc = parse_limit("balance", ch == OPT_MAX_MEM, optarg, &r->lim)))
                return rc;
            break;
        case 'h': fputs(usage_balance, stdout); return 1;
        case ':': return bad("balance", "option '%s' needs a value", argv[optind - 1]);
        default:
            return bad("balance", "unknown option '%s' (see moesim balance --help)",
                       argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (r->nfiles == MAX_SETS)
            return bad("balance", "more than %d CONFIG files", MAX_SETS);
        r->files[r->nfiles++] = argv[i];
    }
    if (r->nfiles == 0)
        return bad("balance", "no CONFIG file given (see moesim balance --help)");
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

/* Runs every policy; a default policy the layout refuses is skipped and said so on
 * stdout, unless quiet (an output goes there). */
static int run_policies(struct balance_opts *o, struct config *cfg, struct balance_result *res,
                        struct balrep_col *cols, int *ncols, bool quiet)
{
    struct limits_tty tty;
    char pre[CFG_NAME_MAX + 32];
    limits_tty_init(&tty, "moesim balance:");
    struct limits_progress pg = limits_tty_hook(&tty);
    for (int i = 0; i < o->npol; i++) {
        struct policy *p = &o->pol[i];
        struct cfg_err err = { { 0 } };
        snprintf(pre, sizeof(pre), "moesim balance: %s (%d/%d)", p->name, i + 1, o->npol);
        limits_tty_prefix(&tty, pre);
        int e = policy_config(o, p, &cfg[*ncols], &err);
        if (!e)
            e = balance_run_with(&res[*ncols], &cfg[*ncols], o->run.seed, &err, &pg);
        limits_tty_clear(&tty);
        if (e == -EINVAL && p->optional) {
            if (!quiet)
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

/* The limits over every policy, loaded into cfg as run_policies will load them (a default
 * policy the layout refuses is left out). 0, or 2 with one line said. */
static int balance_limits(const struct balance_opts *o, struct config *cfg)
{
    const struct config *pc[MAX_POLICIES];
    int n = 0;
    for (int i = 0; i < o->npol; i++) {
        struct cfg_err err;
        if (!policy_config(o, &o->pol[i], &cfg[n], &err))
            pc[n] = &cfg[n], n++;
    }
    return check_limits("balance", &o->run, pc, n, LIMITS_BALANCE);
}

/* The base config, which must load as given and decides the default policies, and
 * the user policies, checked before any runs; their files are the inputs. 0, or 1 or 2
 * with one line said. */
static int balance_configs(struct balance_opts *o, struct config *cfg, struct inputs *in)
{
    const struct run_opts *r = &o->run;
    struct cfg_err err;
    int e = config_load(&cfg[0], r->files, r->nfiles, r->sets, r->nsets, &err);
    if (e == -EINVAL)
        return bad("balance", "%s", err.msg);
    if (!e && !(e = add_inputs(in, r->files, r->nfiles, &cfg[0])) && o->npol == 0)
        default_policies(o, &cfg[0]);
    for (int i = 0; i < o->npol && !e; i++) {
        if (o->pol[i].optional)
            continue;
        e = policy_config(o, &o->pol[i], &cfg[i], &err);
        if (e == -EINVAL)
            return bad("balance", "policy %s: %s", o->pol[i].name, err.msg);
        if (!e)
            e = add_inputs(in, NULL, 0, &cfg[i]);
    }
    if (e)
        fprintf(stderr, "moesim balance: %s\n", strerror(-e));
    return e ? 1 : 0;
}

static int cmd_balance(int argc, char **argv)
{
    double t_start = now_s();
    static struct balance_opts o;
    static struct config cfg[MAX_POLICIES];
    struct balance_result res[MAX_POLICIES];
    struct balrep_col cols[MAX_POLICIES];
    struct output outs[MAX_OUTS];
    struct inputs in = { 0 };
    int ncols = 0, nout = NROWS(balance_outs);
    memset(&o, 0, sizeof(o));
    memset(res, 0, sizeof(res));
    int rc = parse_balance(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    outputs_init(outs, balance_outs, nout, o.run.out, MODE_LAYER);
    if (!(rc = balance_configs(&o, cfg, &in)) && !(rc = outputs_check("balance", outs, nout, &in)) &&
        !(rc = balance_limits(&o, cfg)))
        rc = run_policies(&o, cfg, res, cols, &ncols, outputs_to_stdout(outs, nout));
    if (!rc) {
        struct balrep r = { ncols, cols, o.run.seed, o.run.no_timing ? -1 : now_s() - t_start };
        if (!(rc = outputs_write("balance", outs, nout, &r)) && !outputs_to_stdout(outs, nout))
            balrep_table(stdout, &r);
    }
    for (int i = 0; i < ncols; i++)
        balance_free(&res[i]);
    free(in.v);
    return rc;
}

/* A closed standard stream is opened read-only on /dev/null: a file this process opens
 * later must not become fd 1 (the summary would go into it), and writes to a closed
 * stdout must still fail (EBADF), to be reported. */
static void keep_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF && open("/dev/null", O_RDONLY) != fd)
            return;
}

/* Standard output's write errors (a full disk, a closed pipe) fail the run: 1 and one
 * line, unless rc already says a failure, whose line was said. */
static int finish_stdout(const char *who, int rc)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return rc;
    if (rc == 0)
        fprintf(stderr, "%s: standard output: %s\n", who, strerror(errno ? errno : EIO));
    return rc ? rc : 1;
}

/* Exit status: 0 done, 1 runtime failure, 2 bad input; a run killed by SIGINT, SIGTERM
 * or SIGHUP removes its temporary files first and dies of the signal (128 + its number).
 * SIGPIPE and SIGXFSZ are ignored, so that a closed pipe or a file-size limit is a write
 * error like any other: reported, temporaries removed, exit 1. */
int main(int argc, char **argv)
{
    keep_std_fds();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    int e = ofile_catch_signals();
    if (e) {
        fprintf(stderr, "moesim: cannot catch signals: %s\n", strerror(-e));
        return 1;
    }
    if (argc < 2) {
        fputs("moesim: no command: give run, balance, sweep or plot (see moesim --help)\n", stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_top, stdout);
        return finish_stdout("moesim", 0);
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("moesim %s\n", MOESIM_VERSION);
        return finish_stdout("moesim", 0);
    }
    if (!strcmp(cmd, "run"))
        return finish_stdout("moesim run", cmd_run(argc - 1, argv + 1));
    if (!strcmp(cmd, "balance"))
        return finish_stdout("moesim balance", cmd_balance(argc - 1, argv + 1));
    if (!strcmp(cmd, "sweep"))
        return finish_stdout("moesim sweep", cmd_sweep(argc - 1, argv + 1));
    if (!strcmp(cmd, "plot"))
        return finish_stdout("moesim plot", plot_main(argc - 1, argv + 1));
    char esc[2 * CFG_ERR_MAX];
    textin_escape(esc, sizeof(esc), cmd);          /* one line, whatever cmd holds */
    fprintf(stderr, "moesim: unknown command '%s' (see moesim --help)\n", esc);
    return 2;
}
