/* cmd_sweep.c: `moesim sweep`: every point of a sweep file (sweep.h) run by the engine
 * of `moesim run` (runpt.h), one row each in DIR/results.csv (sweepdir.h), one point after
 * another, in --jobs worker processes, or over the ranks of mpirun (sweepmpi.h).
 *
 * A row: point, the value of every axis, seed, status (ok, or the one-line refusal of a
 * point the config's rules or limits refuse, or "failed: ..."), then the fields of
 * `moesim run --csv` for that point (empty when it did not run). Rows depend only on the
 * point, so however the points are spread, the rebuilt results.csv is the same bytes
 * (with --no-timing: wall_s is the one field measured).
 */
#include "cmd_sweep.h"
#include "csv.h"
#include "limits.h"
#include "ofile.h"
#include "runpt.h"
#include "sweep.h"
#include "sweepdir.h"
#include "sweepmpi.h"
#include "textin.h"
#include "timeline.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOBS_MAX 256
#define TRIES_MAX 2               /* runs of a point whose worker dies, before it is failed */

static const char usage[] =
    "usage: moesim sweep SWEEP.ini... -o DIR [--set section.key=value]... [--seed N]\n"
    "                    [--jobs N] [--trace-every] [--point-csvs] [--no-timing]\n"
    "\n"
    "Runs every point of the sweep files' [sweep] axes, as moesim run would run it, and\n"
    "writes one row per point to DIR/results.csv: point, every swept key, seed, status,\n"
    "then every column of moesim run --csv for that kind of run (a training step, an\n"
    "inference step or a layer; one kind per sweep).\n"
    "A sweep file is a config (its other sections and includes are the base of every\n"
    "point) with a [sweep] section:\n"
    "  model.top_k = 1,2,4,8                  a list\n"
    "  cluster.nodes = 2..64*2                a geometric range (2 4 8 ... 64)\n"
    "  schedule.microbatches = 8..32+8        an arithmetic range (8 16 24 32)\n"
    "  zip = model.experts model.expert_ffn_hidden   axes that advance together\n"
    "  where = parallel.ep divides parallel.dp and model.top_k <= 4   keep points where\n"
    "                                         it holds (< <= == != >= > divides, and)\n"
    "  base = ../examples/x.ini               configs read first (or: include = ...)\n"
    "Points run in the order written, the last axis fastest. A point's values are set\n"
    "as --set would set them, after the --set options given here. A point the config's\n"
    "rules refuse is a row with the refusal in status.\n"
    "\n"
    "  -o, --out DIR      the sweep's folder (made if missing): results.csv, and the\n"
    "                     journal of finished points that a rerun of the same command\n"
    "                     resumes from; a folder of another sweep is refused\n"
    "  -s, --set K=V      override a key of every point (repeatable)\n"
    "      --seed N       routing seed of every point (default 1)\n"
    "  -j, --jobs N       run points in N worker processes (default 1); under mpirun the\n"
    "                     ranks share the points and rank 0 writes\n"
    "      --trace-every  DIR/points/NNNN.trace.json for every point\n"
    "      --point-csvs   DIR/points/NNNN.gpu.csv and NNNN.layer.csv (steps) or\n"
    "                     NNNN.link.csv (layers) for every point\n"
    "      --no-timing    write wall_s as 0: the same inputs give the same bytes\n"
    "  -h, --help         this text\n"
    "\n"
    "On a terminal, a progress line on stderr. Exit status: 0 done (also when some\n"
    "points were refused), 1 runtime failure, 2 bad input (one line on stderr).\n";

struct sweep_opts {
    const char *files[SWEEP_FILES_MAX];
    const char *sets[SWEEP_SETS_MAX];
    int nfiles, nsets, jobs;
    const char *dir;
    uint64_t seed;
    bool trace_every, point_csvs, no_timing;
};

/* A sweep being run: the same on every process (workers are forks, ranks load it too). */
struct job {
    struct sweep_opts o;
    struct sweep sw;
    struct swdir dir;                 /* the parent's or rank 0's */
    char *header;                     /* results.csv's header line, no '\n' */
    int run_cols;                     /* columns of the run's CSV */
    struct limits lim;
};

__attribute__((format(printf, 1, 2)))
static int bad(const char *fmt, ...)
{
    char raw[2 * CFG_ERR_MAX], msg[2 * CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    textin_escape(msg, sizeof(msg), raw);
    fprintf(stderr, "moesim sweep: %s\n", msg);
    return 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 0: parsed; 1: help printed; 2: bad usage (reported). */
static int parse(int argc, char **argv, struct sweep_opts *o)
{
    enum { OPT_SEED = 256, OPT_TRACE, OPT_CSVS, OPT_NO_TIMING };
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },   { "set", required_argument, NULL, 's' },
        { "jobs", required_argument, NULL, 'j' },  { "seed", required_argument, NULL, OPT_SEED },
        { "trace-every", no_argument, NULL, OPT_TRACE },
        { "point-csvs", no_argument, NULL, OPT_CSVS },
        { "no-timing", no_argument, NULL, OPT_NO_TIMING },
        { "help", no_argument, NULL, 'h' },        { NULL, 0, NULL, 0 },
    };
    char *end;
    o->seed = 1;
    o->jobs = 1;
    opterr = 0;
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, ":o:s:j:h", opts, NULL)) != -1;) {
        switch (ch) {
        case 'o':
            if (o->dir)
                return bad("-o given twice ('%s' and '%s')", o->dir, optarg);
            o->dir = optarg;
            break;
        case 's':
            if (o->nsets == SWEEP_SETS_MAX)
                return bad("more than %d --set options", SWEEP_SETS_MAX);
            o->sets[o->nsets++] = optarg;
            break;
        case 'j':
            errno = 0;
            o->jobs = (int)strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || o->jobs < 1 || o->jobs > JOBS_MAX)
                return bad("--jobs: '%s' is not a number of processes 1..%d", optarg, JOBS_MAX);
            break;
        case OPT_SEED:
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (errno || *end || optarg[0] < '0' || optarg[0] > '9')
                return bad("--seed: '%s' is not a non-negative integer", optarg);
            break;
        case OPT_TRACE: o->trace_every = true; break;
        case OPT_CSVS: o->point_csvs = true; break;
        case OPT_NO_TIMING: o->no_timing = true; break;
        case 'h': fputs(usage, stdout); return 1;
        case ':': return bad("option '%s' needs a value", argv[optind - 1]);
        default: return bad("unknown option '%s' (see moesim sweep --help)", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nfiles == SWEEP_FILES_MAX)
            return bad("more than %d SWEEP files", SWEEP_FILES_MAX);
        o->files[o->nfiles++] = argv[i];
    }
    if (!o->nfiles)
        return bad("no SWEEP file given (see moesim sweep --help)");
    if (!o->dir)
        return bad("no -o DIR given: the folder for results.csv and the journal");
    return 0;
}

/* ---- one point ---- */

/* What fn writes to a memory stream, NUL-terminated (malloc'd), or NULL. */
static char *capture(int (*fn)(FILE *, const void *), const void *ctx, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        *rc = -ENOMEM;
        return NULL;
    }
    *rc = fn(f, ctx);
    if (fclose(f) && !*rc)
        *rc = -ENOMEM;
    if (*rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int w_run_csv(FILE *f, const void *x)
{
    const struct runpt *r = x;
    return r->mode == RUNPT_STEP ? steprep_csv(f, &r->srep) : report_csv(f, &r->rep);
}
static int w_trace(FILE *f, const void *x)
{
    const struct runpt *r = x;
    return r->mode == RUNPT_STEP ? steprep_trace(f, &r->srep) : timeline_write(f, &r->rep);
}
static int w_gpu_csv(FILE *f, const void *x)
{
    const struct runpt *r = x;
    return r->mode == RUNPT_STEP ? steprep_gpu_csv(f, &r->srep) : report_gpu_csv(f, &r->rep);
}
static int w_detail_csv(FILE *f, const void *x)
{
    const struct runpt *r = x;
    return r->mode == RUNPT_STEP ? steprep_layer_csv(f, &r->srep) : report_link_csv(f, &r->rep);
}

/* DIR/points/NNNN.<suffix>, written by fn (ofile.h). 0 or a negative errno. */
static int point_file(const struct job *x, int p, const char *suffix,
                      int (*fn)(FILE *, const void *), const struct runpt *r)
{
    char path[SWDIR_PATH_MAX + 64];
    struct ofile of;
    snprintf(path, sizeof(path), "%s/points/%04d.%s", x->o.dir, p, suffix);
    int e = ofile_open(&of, path);
    if (e)
        return e;
    if ((e = fn(of.f, r))) {
        ofile_abort(&of);
        return e;
    }
    return ofile_commit(&of);
}

/* The row of point p: its identity, status, then metrics (the run's CSV row) or empty
 * fields. *row malloc'd, no '\n'. 0 or -ENOMEM. */
static int make_row(const struct job *x, int p, const char *status, const char *metrics,
                    char **row)
{
    size_t len = 0;
    FILE *f = open_memstream(row, &len);
    struct csv w;
    if (!f)
        return -ENOMEM;
    csv_begin(&w, f);
    csv_int(&w, p);
    for (int a = 0; a < x->sw.naxes; a++)
        csv_str(&w, sweep_value(&x->sw, p, a));
    csv_u64(&w, x->o.seed);
    csv_str(&w, status);
    if (metrics)
        fprintf(f, ",%s", metrics);
    for (int i = 0; !metrics && i < x->run_cols; i++)
        fputc(',', f);
    if (fclose(f)) {
        free(*row);
        return -ENOMEM;
    }
    return 0;
}

/* The run's CSV row (its second line) of r, and the point's own files. */
static int run_outputs(const struct job *x, int p, const struct runpt *r, char **metrics)
{
    int e;
    char *csv = capture(w_run_csv, r, &e), *nl;
    if (!csv)
        return e;
    if (!(nl = strchr(csv, '\n'))) {
        free(csv);
        return -EIO;
    }
    memmove(csv, nl + 1, strlen(nl + 1) + 1);
    csv[strcspn(csv, "\n")] = '\0';
    *metrics = csv;
    e = x->o.trace_every ? point_file(x, p, "trace.json", w_trace, r) : 0;
    if (!e && x->o.point_csvs)
        e = point_file(x, p, "gpu.csv", w_gpu_csv, r);
    if (!e && x->o.point_csvs)
        e = point_file(x, p, r->mode == RUNPT_STEP ? "layer.csv" : "link.csv", w_detail_csv, r);
    return e;
}

/* Runs point p into *row. 0, or a negative errno (a write or memory failure, which ends
 * the sweep; a point the input refuses is a row). */
static int point_row(const struct job *x, int p, char **row)
{
    double t0 = now_s();
    static const char run_pre[] = "moesim run: ";
    char status[RUNPT_MSG_MAX + 16] = "ok", msg[RUNPT_MSG_MAX];
    char *metrics = NULL;
    struct config c;
    struct cfg_err err;
    struct runpt r = { 0 };
    struct runpt_opts ro = { .seed = x->o.seed, .trace = x->o.trace_every };
    int e = sweep_config(&x->sw, p, &c, &err);
    if (e == -EINVAL) {
        snprintf(status, sizeof(status), "%s", err.msg);
        e = 0;
    } else if (!e && limits_check((const struct config *[]){ &c }, 1, LIMITS_RUN, ro.trace, &x->lim,
                                msg, sizeof(msg)))
        snprintf(status, sizeof(status), "%s", msg);
    else if (!e && (e = runpt_run(&r, &c, &ro, msg, sizeof(msg))) > 0) {
        const char *m = strncmp(msg, run_pre, strlen(run_pre)) ? msg : msg + strlen(run_pre);
        snprintf(status, sizeof(status), "%s%s", e == 1 ? "failed: " : "", m);
        e = 0;
    } else if (!e) {
        runpt_set_wall(&r, x->o.no_timing ? -1 : now_s() - t0);
        e = run_outputs(x, p, &r, &metrics);
    }
    runpt_free(&r);
    if (!e)
        e = make_row(x, p, status, metrics, row);
    free(metrics);
    return e;
}

/* ---- progress: a line on a terminal ---- */

struct progress {
    struct limits_tty tty;
    struct limits_progress hook;
    double t0_s;
    int done, ran, total, not_ok;
};

static void progress_init(struct progress *g, int done, int total)
{
    limits_tty_init(&g->tty, "moesim sweep:");
    g->hook = limits_tty_hook(&g->tty);
    g->t0_s = now_s();
    g->done = done;
    g->total = total;
    g->ran = g->not_ok = 0;
}

/* One more point done, its row given (status is its fourth field and more). */
static void progress_tick(struct progress *g, const struct job *x, const char *row)
{
    const char *s = row;
    for (int f = 0; f < 2 + x->sw.naxes && s; f++) {   /* skip point, axes, seed: */
        s = *s == '"' ? strstr(s + 1, "\",") : s;        /* a quoted value has no '",' */
        s = s ? strchr(s, ',') : NULL;
        s = s ? s + 1 : NULL;
    }
    g->not_ok += !(s && !strncmp(s, "ok,", 3));
    g->done++;
    g->ran++;
    if (!g->hook.fn)
        return;
    char pre[96];
    double t = now_s() - g->t0_s, rate = t > 0 ? g->ran / t : 0;
    double eta = rate > 0 ? (g->total - g->done) / rate : 0;
    snprintf(pre, sizeof(pre), "moesim sweep: %.2f points/s, ETA %.0f s, %d not ok,", rate, eta,
             g->not_ok);
    limits_tty_prefix(&g->tty, pre);
    limits_tick(&g->hook, (double)g->done / g->total, "point", g->done, g->total);
}

/* A finished row: journaled (the parent's or rank 0's), counted. 0 or a negative errno. */
static int finish(struct job *x, struct progress *g, int p, char *row)
{
    int e = swdir_append(&x->dir, p, row);
    if (!e)
        progress_tick(g, x, row);
    free(row);
    return e;
}

/* ---- one process ---- */

static int run_serial(struct job *x, struct progress *g)
{
    for (int p = 0; p < x->sw.npoints; p++) {
        char *row;
        if (x->dir.row[p])
            continue;
        int e = point_row(x, p, &row);
        if (!e)
            e = finish(x, g, p, row);
        if (e)
            return e;
    }
    return 0;
}

/* ---- worker processes ---- */

struct worker {
    pid_t pid;                        /* 0: none */
    int task_fd, res_fd;              /* the parent's ends */
    int point;                        /* the point it runs; -1: idle */
};

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, (const char *)buf + put, n - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        put += (size_t)w;
    }
    return 0;
}

/* A worker: point numbers in, "length, row" out, until its task pipe closes. */
static int worker_loop(const struct job *x, int in, int out)
{
    int p;
    while (!read_full(in, &p, sizeof(p))) {
        char *row;
        if (point_row(x, p, &row))
            return 1;
        uint32_t n = (uint32_t)strlen(row);
        int e = write_full(out, &n, sizeof(n)) || write_full(out, row, n);
        free(row);
        if (e)
            return 1;
    }
    return 0;
}

/* Forks worker w (no other worker's pipes, nor the journal, stay open in it). */
static int spawn(struct job *x, struct worker *ws, int nw, struct worker *w)
{
    int t[2], r[2];
    if (pipe(t))
        return -errno;
    if (pipe(r)) {
        int e = -errno;
        close(t[0]);
        close(t[1]);
        return e;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(t[0]), close(t[1]), close(r[0]), close(r[1]);
        return e;
    }
    if (pid == 0) {
        close(t[1]);
        close(r[0]);
        close(x->dir.fd);
        for (int i = 0; i < nw; i++)
            if (ws[i].pid)
                close(ws[i].task_fd), close(ws[i].res_fd);
        _exit(worker_loop(x, t[0], r[1]));
    }
    close(t[0]);
    close(r[1]);
    *w = (struct worker){ pid, t[1], r[0], -1 };
    return 0;
}

/* A worker that died: reaped; its point back in the queue, or failed after TRIES_MAX. */
static int bury(struct job *x, struct progress *g, struct worker *w, int *queue, int *head,
                int *tries)
{
    int st = 0;
    char why[96];
    close(w->task_fd);
    close(w->res_fd);
    waitpid(w->pid, &st, 0);
    w->pid = 0;
    int p = w->point;
    if (p < 0)
        return 0;
    if (++tries[p] < TRIES_MAX) {
        queue[--*head] = p;             /* next to run */
        return 0;
    }
    if (WIFSIGNALED(st))
        snprintf(why, sizeof(why), "failed: worker killed by signal %d, %d times", WTERMSIG(st),
                 TRIES_MAX);
    else
        snprintf(why, sizeof(why), "failed: worker exited with status %d, %d times",
                 WEXITSTATUS(st), TRIES_MAX);
    char *row;
    int e = make_row(x, p, why, NULL, &row);
    return e ? e : finish(x, g, p, row);
}

/* Hands idle worker w the next queued point; 0, or bury's status when it cannot take it. */
static int dispatch(struct job *x, struct progress *g, struct worker *w, int *queue, int *head,
                    int *tries)
{
    w->point = queue[(*head)++];
    if (write_full(w->task_fd, &w->point, sizeof(int)))
        return bury(x, g, w, queue, head, tries);
    return 0;
}

/* One reply of busy worker w: its row finished, or its death buried. The worker gets its
 * next point (when one is queued before tail) before the row is journaled, so that it
 * runs while the journal syncs. */
static int reply(struct job *x, struct progress *g, struct worker *w, int *queue, int *head,
                 int tail, int *tries)
{
    uint32_t n;
    char *row = NULL;
    if (read_full(w->res_fd, &n, sizeof(n)) || !(row = malloc((size_t)n + 1)) ||
        read_full(w->res_fd, row, n)) {
        free(row);
        return bury(x, g, w, queue, head, tries);
    }
    row[n] = '\0';
    int p = w->point;
    w->point = -1;
    int e = *head < tail ? dispatch(x, g, w, queue, head, tries) : 0;
    int f = finish(x, g, p, row);
    return f ? f : e;
}

static int run_pool(struct job *x, struct progress *g)
{
    int n = x->sw.npoints, nw = x->o.jobs, head = TRIES_MAX * n, tail = head, e = 0, left = 0;
    int *queue = malloc(sizeof(int) * (size_t)(TRIES_MAX * n + n + 1));
    int *tries = calloc((size_t)n, sizeof(int));
    struct worker ws[JOBS_MAX] = { { 0 } };
    struct pollfd pf[JOBS_MAX];
    if (!queue || !tries) {
        free(queue);
        free(tries);
        return -ENOMEM;
    }
    for (int p = 0; p < n; p++)             /* room before head for points run again */
        if (!x->dir.row[p])
            queue[tail++] = p, left++;
    while (left > 0 && !e) {
        int busy = 0;
        for (int i = 0; i < nw && !e; i++) {
            if (!ws[i].pid && head < tail)
                e = spawn(x, ws, nw, &ws[i]);
            if (!e && ws[i].pid && ws[i].point < 0 && head < tail)
                e = dispatch(x, g, &ws[i], queue, &head, tries);
            if (ws[i].pid && ws[i].point >= 0)
                pf[busy++] = (struct pollfd){ ws[i].res_fd, POLLIN, 0 };
        }
        if (e || !busy)
            break;
        if (poll(pf, (nfds_t)busy, -1) < 0 && errno != EINTR)
            e = -errno;
        for (int i = 0, k = 0; i < nw && !e; i++) {
            if (!ws[i].pid || ws[i].point < 0)
                continue;
            if (pf[k++].revents) {
                int before = x->dir.ndone;
                e = reply(x, g, &ws[i], queue, &head, tail, tries);
                left -= x->dir.ndone - before;
            }
        }
    }
    for (int i = 0; i < nw; i++)
        if (ws[i].pid) {
            close(ws[i].task_fd);           /* end of work: the worker leaves its loop */
            close(ws[i].res_fd);
            waitpid(ws[i].pid, NULL, 0);
        }
    free(queue);
    free(tries);
    return e;
}

/* ---- MPI ranks ---- */

/* Points not done, spread round-robin: rank r runs pending[r], pending[r + size], ...;
 * the others send their rows to rank 0, which journals them between its own. */
static int run_ranks(struct job *x, struct progress *g, int rank, int size, const int *pending,
                     int npending)
{
    int e = 0;
    for (int i = rank; i < npending && !e; i += size) {
        char *row;
        int p = pending[i];
        if ((e = point_row(x, p, &row)))
            break;
        if (rank) {
            e = swmpi_send_row(p, row);
            free(row);
            continue;
        }
        if ((e = finish(x, g, p, row)))
            break;
        for (int q, r; !e;) {                       /* rows that came meanwhile */
            if ((r = swmpi_recv_row(&q, &row, false)) == 1)
                break;
            e = r < 0 ? r : finish(x, g, q, row);
        }
    }
    while (!rank && !e && x->dir.ndone < x->sw.npoints) {
        char *row;
        int q;
        if (!(e = swmpi_recv_row(&q, &row, true)))
            e = finish(x, g, q, row);
    }
    return e;
}

/* ---- the command ---- */

/* The header line of the points' CSV: a training step's, a layer's, or an inference
 * step's, which is the first line serverep_csv (through steprep_csv) writes, here of the
 * first point's config and an empty result: its columns depend on neither. */
static int w_run_header(FILE *f, const void *x)
{
    const struct sweep *sw = x;
    struct step_result none = { 0 };
    if (sw->serve)
        return steprep_csv(f, &(struct steprep){ .cfg = sw->first, .res = &none, .wall_s = -1 });
    if (sw->step)
        steprep_csv_header(f);
    else
        report_csv_header(f);
    return ferror(f) ? -EIO : 0;
}

/* The header of results.csv: point, the axes, seed, status, the run's columns. */
static int make_header(struct job *x)
{
    size_t len = 0;
    int e;
    char *run = capture(w_run_header, &x->sw, &e);
    if (!run)
        return e;
    run[strcspn(run, "\n")] = '\0';
    x->run_cols = 1;
    for (const char *s = run; *s; s++)
        x->run_cols += *s == ',';
    FILE *f = open_memstream(&x->header, &len);
    if (!f) {
        free(run);
        return -ENOMEM;
    }
    fputs("point", f);
    for (int a = 0; a < x->sw.naxes; a++)
        fprintf(f, ",%s", x->sw.axis[a].key);
    fprintf(f, ",seed,status,%s", run);
    free(run);
    return fclose(f) ? -ENOMEM : 0;
}

/* What DIR's manifest says of this sweep: anything that changes a row. */
static void make_manifest(const struct job *x, char *buf, size_t n)
{
    snprintf(buf, n, "moesim sweep 1\npoints %d\nhash %016" PRIx64 "\nseed %" PRIu64
             "\ntiming %s\ncolumns %.*s\n", x->sw.npoints, x->sw.hash, x->o.seed,
             x->o.no_timing ? "off" : "on", (int)(n / 2), x->header);
}

/* DIR opened (rank 0 or the only process), its points folder made. 0, or 1 or 2 said. */
static int open_dir(struct job *x)
{
    char manifest[SWDIR_MANIFEST_MAX + 8192], why[SWDIR_PATH_MAX + 256], path[SWDIR_PATH_MAX + 16];
    make_manifest(x, manifest, sizeof(manifest));
    int e = swdir_open(&x->dir, x->o.dir, x->sw.npoints, manifest, why, sizeof(why));
    if (e == -EEXIST || e == -EBUSY)
        return bad("%s", why);
    if (e) {
        fprintf(stderr, "moesim sweep: %s\n", e == -ENOMEM ? "out of memory" : why);
        return 1;
    }
    if ((x->o.trace_every || x->o.point_csvs) &&
        mkdir(swdir_path(&x->dir, "points", path, sizeof(path)), 0777) && errno != EEXIST) {
        fprintf(stderr, "moesim sweep: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* Every point run (one way or another), results.csv written; the summary on stdout. */
static int run_all(struct job *x, int rank, int size, const int *pending, int npending)
{
    struct progress g;
    int resumed = x->dir.ndone, e;
    progress_init(&g, resumed, x->sw.npoints);
    if (size > 1)
        e = run_ranks(x, &g, rank, size, pending, npending);
    else
        e = x->o.jobs > 1 ? run_pool(x, &g) : run_serial(x, &g);
    limits_tty_clear(&g.tty);
    if (e && size > 1) {              /* rank 0 would wait for this rank's rows forever */
        fprintf(stderr, "moesim sweep: rank %d: %s\n", rank, strerror(-e));
        swmpi_abort(1);
    }
    if (e) {
        fprintf(stderr, "moesim sweep: %s: %s\n", x->o.dir, strerror(-e));
        return 1;
    }
    if (rank)
        return 0;
    if (x->dir.ndone < x->sw.npoints) {
        fprintf(stderr, "moesim sweep: %d of %d points did not finish\n",
                x->sw.npoints - x->dir.ndone, x->sw.npoints);
        return 1;
    }
    if ((e = swdir_results(&x->dir, x->header))) {
        fprintf(stderr, "moesim sweep: %s/results.csv: %s\n", x->o.dir, strerror(-e));
        return 1;
    }
    printf("# sweep of %d points (%d run now, %d from the journal), %d not ok this run\n"
           "# results: %s/results.csv\n", x->sw.npoints, x->sw.npoints - resumed, resumed,
           g.not_ok, x->o.dir);
    return 0;
}

/* Rank 0 opens DIR and tells every rank the status and the points left. */
static int share_work(struct job *x, int rank, int size, int **pending, int *npending)
{
    int head[2] = { 0, 0 };
    if (!rank && !(head[0] = open_dir(x)))
        for (int p = 0; p < x->sw.npoints; p++)
            head[1] += !x->dir.row[p];
    if (size > 1 && swmpi_bcast(head, 2))
        return 1;
    if (head[0])
        return head[0];
    if (!(*pending = malloc(sizeof(int) * (size_t)(head[1] + 1))))
        return 1;
    *npending = 0;
    for (int p = 0; !rank && p < x->sw.npoints; p++)
        if (!x->dir.row[p])
            (*pending)[(*npending)++] = p;
    *npending = head[1];
    return size > 1 && swmpi_bcast(*pending, head[1]) ? 1 : 0;
}

static int sweep_main(struct job *x, int rank, int size)
{
    struct cfg_err err;
    int *pending = NULL, npending = 0, rc;
    int e = sweep_load(&x->sw, x->o.files, x->o.nfiles, x->o.sets, x->o.nsets, &err);
    if (e) {
        if (!rank)
            fprintf(stderr, "%s\n", e == -ENOMEM ? "moesim sweep: out of memory" : err.msg);
        return e == -ENOMEM ? 1 : 2;
    }
    if ((e = make_header(x))) {
        fprintf(stderr, "moesim sweep: the CSV header: %s\n", strerror(-e));
        return 1;
    }
    limits_default(&x->lim);
    rc = share_work(x, rank, size, &pending, &npending);
    if (!rc)
        rc = run_all(x, rank, size, pending, npending);
    free(pending);
    return rc;
}

int cmd_sweep(int argc, char **argv)
{
    static struct job x;
    int rank = 0, size = 1, rc;
    memset(&x, 0, sizeof(x));
    x.dir.fd = -1;
    if ((rc = parse(argc, argv, &x.o)))
        return rc == 1 ? 0 : 2;
    bool mpi = swmpi_launched();
    if (mpi && swmpi_init(&rank, &size)) {
        fprintf(stderr, "moesim sweep: MPI_Init failed\n");
        return 1;
    }
    if (size > 1 && x.o.jobs > 1)
        rc = rank ? 2 : bad("--jobs: not under mpirun, whose ranks share the points");
    else
        rc = sweep_main(&x, rank, size);
    swdir_close(&x.dir);
    sweep_free(&x.sw);
    free(x.header);
    if (mpi)
        swmpi_finalize();
    return rc;
}
