/* plot.c: the `moesim plot` command: arguments, the files, gnuplot; see plot.h. */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ofile.h"
#include "textin.h"

#define MAX_INPUTS 64
#define PATH_BYTES 4096
#define DIR_BYTES 1100        /* the temporary folder: TMPDIR cut to 1000 bytes */

static const char usage_plot[] =
    "usage: moesim plot FILE|DIR... -o OUT [--kind KIND] [--x KEY] [--y COL] [--by KEY]\n"
    "                   [--plots DIR]\n"
    "\n"
    "Draws a CSV file of moesim as OUT.png and OUT.svg with gnuplot, and writes the data\n"
    "it drew as OUT.dat. A DIR stands for DIR/results.csv (a sweep). The kind comes from\n"
    "the file's header:\n"
    "  sweep        a sweep's results.csv: COL against a swept KEY, one line per value\n"
    "               of --by (and of every other swept key that varies); defaults: x the\n"
    "               first swept key, y step_s (a layer sweep: dispatch_s), by the second.\n"
    "               An x that is a result column (--x tpot_s --y tokens_per_s_gpu): each\n"
    "               line runs along the first swept key besides --by, its values as labels\n"
    "  gpu-util     moesim run --util-csv: GPU x time heatmaps of compute and comm busy\n"
    "               fractions, NVLink and NIC utilization\n"
    "  link-util    the same file with --kind link-util: link x time heatmaps, NVLink and\n"
    "               network tiers apart\n"
    "  expert-load  moesim run --expert-csv (MoE layer x expert) or moesim balance\n"
    "               --expert-csv (policy x expert), --expert-iter-csv (iteration x\n"
    "               expert, a panel per policy): load / mean\n"
    "  gantt        moesim run --ops-csv: the step's pipeline, F / B / W / comm coloured\n"
    "\n"
    "  -o, --output OUT  the pictures' name without .png / .svg (required)\n"
    "  -k, --kind KIND   one of the kinds above\n"
    "      --x KEY, --y COL, --by KEY  a sweep's axes and lines (column names)\n"
    "      --plots DIR   where the gnuplot scripts are (default: $MOESIM_PLOTS, the\n"
    "                    program's ../../plots or ../share/moesim/plots, ./plots)\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 done; 1 runtime failure: gnuplot not found on PATH or failing (one\n"
    "line on stderr; OUT.dat is still written); 2 bad input (one line on stderr, nothing\n"
    "written).\n";

__attribute__((format(printf, 1, 2)))
static int bad(const char *fmt, ...)
{
    char raw[PLOT_ERR_MAX], msg[PLOT_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    textin_escape(msg, sizeof(msg), raw);
    fprintf(stderr, "moesim plot: %s\n", msg);
    return 2;
}

struct plot_opts {
    const char *in[MAX_INPUTS];
    int nin;
    const char *out, *plots;
    struct plot_req req;
};

/* 0: parsed; 1: help printed; 2: bad usage (reported). */
static int parse(int argc, char **argv, struct plot_opts *o)
{
    enum { OPT_X = 256, OPT_Y, OPT_BY, OPT_PLOTS };
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' }, { "kind", required_argument, NULL, 'k' },
        { "x", required_argument, NULL, OPT_X },     { "y", required_argument, NULL, OPT_Y },
        { "by", required_argument, NULL, OPT_BY },
        { "plots", required_argument, NULL, OPT_PLOTS },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
    };
    o->req.kind = PLOT_NONE;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":o:k:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': o->out = optarg; break;
        case 'k':
            if ((o->req.kind = plot_kind_parse(optarg)) == PLOT_NONE)
                return bad("--kind '%s': want sweep, gpu-util, link-util, expert-load or gantt",
                           optarg);
            break;
        case OPT_X: o->req.x = optarg; break;
        case OPT_Y: o->req.y = optarg; break;
        case OPT_BY: o->req.by = optarg; break;
        case OPT_PLOTS: o->plots = optarg; break;
        case 'h': fputs(usage_plot, stdout); return 1;
        case ':': return bad("option '%s' needs a value", argv[optind - 1]);
        default: return bad("unknown option '%s' (see moesim plot --help)", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nin == MAX_INPUTS)
            return bad("more than %d input files", MAX_INPUTS);
        o->in[o->nin++] = argv[i];
    }
    if (o->nin == 0)
        return bad("no input FILE or DIR given (see moesim plot --help)");
    if (!o->out || !o->out[0])
        return bad("no -o OUT given (the pictures' name, without .png / .svg)");
    if ((o->req.x || o->req.y || o->req.by) && o->req.kind != PLOT_NONE &&
        o->req.kind != PLOT_SWEEP)
        return bad("--x, --y and --by are for sweeps, not --kind %s", plot_kind_name(o->req.kind));
    return 0;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads the inputs (DIR: DIR/results.csv) into t; decides the kind. 0 or the status. */
static int read_inputs(struct plot_opts *o, struct plot_table *t, char (*paths)[PATH_BYTES])
{
    char err[PLOT_ERR_MAX];
    for (int i = 0; i < o->nin; i++) {
        if (is_dir(o->in[i]))
            snprintf(paths[i], PATH_BYTES, "%s/results.csv", o->in[i]);
        else
            snprintf(paths[i], PATH_BYTES, "%s", o->in[i]);
        int e = plot_table_read(&t[i], paths[i], err, sizeof(err));
        if (e == -EINVAL)
            return bad("%s", err);
        if (e) {
            fprintf(stderr, "moesim plot: %s: %s\n", paths[i], strerror(-e));
            return 1;
        }
        enum plot_kind k = plot_detect(&t[i]);
        if (k == PLOT_NONE)
            return bad("%s: not a CSV that moesim plot knows (its header starts '%.60s'): "
                       "give a sweep's results.csv, or a file of moesim run --util-csv, "
                       "--expert-csv, --ops-csv or moesim balance --expert-csv, --expert-iter-csv", paths[i],
                       t[i].ncols ? t[i].col[0] : "");
        if (o->req.kind == PLOT_NONE && i == 0)
            o->req.kind = k;
        bool fits = k == o->req.kind || (k == PLOT_GPU_UTIL && o->req.kind == PLOT_LINK_UTIL);
        if (!fits)
            return bad("%s: a %s file, not %s", paths[i], plot_kind_name(k),
                       plot_kind_name(o->req.kind));
    }
    if ((o->req.x || o->req.y || o->req.by) && o->req.kind != PLOT_SWEEP)
        return bad("--x, --y and --by are for sweeps; %s is a %s file", paths[0],
                   plot_kind_name(o->req.kind));
    return 0;
}

/* The gnuplot program on PATH into buf, or false. */
static bool find_gnuplot(char *buf, size_t n)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && snprintf(buf, n, "%.*s/gnuplot", (int)len, p) < (int)n &&
            access(buf, X_OK) == 0 && !is_dir(buf))
            return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

/* The script of kind (plots/<name>.gp with '-' as '_') into buf: --plots, $MOESIM_PLOTS,
 * beside the program, ./plots. False when none is there. */
static bool find_script(const struct plot_opts *o, char *buf, size_t n)
{
    char name[64], exe[PATH_BYTES], dirs[4][PATH_BYTES];
    int nd = 0;
    snprintf(name, sizeof(name), "%s.gp", plot_kind_name(o->req.kind));
    for (char *s = name; *s; s++)
        if (*s == '-')
            *s = '_';
    if (o->plots) {
        snprintf(buf, n, "%s/%s", o->plots, name);
        return access(buf, R_OK) == 0;
    }
    const char *env = getenv("MOESIM_PLOTS");
    if (env && *env)
        snprintf(dirs[nd++], PATH_BYTES, "%s", env);
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        snprintf(dirs[nd++], PATH_BYTES, "%.4000s/../../plots", exe);
        snprintf(dirs[nd++], PATH_BYTES, "%.4000s/../share/moesim/plots", exe);
    }
    snprintf(dirs[nd++], PATH_BYTES, "plots");
    for (int i = 0; i < nd; i++)
        if (snprintf(buf, n, "%s/%s", dirs[i], name) < (int)n && access(buf, R_OK) == 0)
            return true;
    return false;
}

/* A gnuplot single-quoted string. */
static void gp_quote(FILE *f, const char *s)
{
    putc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            putc('\'', f);
        putc(*s, f);
    }
    putc('\'', f);
}

/* Runs gnuplot on vars (the data's variables), then fmt, out and dat, then the script,
 * its stderr into errpath. Returns its exit status (0 done), or -1 when it did not run
 * or died of a signal. */
static int run_gnuplot(const char *gp, const char *dir, const char *vars, const char *script,
                       const char *fmt, const char *out, const char *dat, const char *errpath)
{
    char head[PATH_BYTES];
    snprintf(head, sizeof(head), "%.1100s/head.gp", dir);
    FILE *f = fopen(head, "w");
    if (!f)
        return -1;
    fprintf(f, "fmt = '%s'\nout = ", fmt);
    gp_quote(f, out);
    fputs("\ndat = ", f);
    gp_quote(f, dat);
    fputs("\n", f);
    if (fclose(f))
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execl(gp, "gnuplot", vars, head, script, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What gnuplot said on stderr (errpath): its first non-blank line into first[n], and with
 * echo every line to ours, prefixed. Returns the number of non-blank lines. */
static int gnuplot_said(const char *errpath, bool echo, char *first, size_t n)
{
    FILE *f = fopen(errpath, "r");
    char buf[1024];
    int lines = 0;
    first[0] = 0;
    if (!f)
        return 0;
    while (fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\n")] = 0;
        if (!buf[strspn(buf, " \t")])
            continue;
        if (!lines++)
            textin_escape(first, n, buf + strspn(buf, " \t"));
        if (echo) {
            char esc[2048];
            textin_escape(esc, sizeof(esc), buf);
            fprintf(stderr, "moesim plot: gnuplot: %s\n", esc);
        }
    }
    fclose(f);
    return lines;
}

/* OUT.png and OUT.svg, each gnuplot's output to a temporary renamed when it succeeds.
 * 0, or 1 with one line said. */
static int render(const char *gp, const char *script, const char *dir, const char *vars,
                  const char *dat, const char (*outs)[PATH_BYTES])
{
    static const char *const fmts[] = { "png", "svg" };
    char errpath[PATH_BYTES], first[1024];
    snprintf(errpath, sizeof(errpath), "%.1100s/gnuplot.err", dir);
    for (int i = 0; i < 2; i++) {
        struct ofile of;
        int e = ofile_open(&of, outs[i]);
        if (e) {
            fprintf(stderr, "moesim plot: %s: cannot write: %s\n", outs[i], strerror(-e));
            return 1;
        }
        int st = run_gnuplot(gp, dir, vars, script, fmts[i], of.tmp, dat, errpath);
        if (st != 0) {
            ofile_abort(&of);
            gnuplot_said(errpath, false, first, sizeof(first));
            fprintf(stderr, "moesim plot: gnuplot failed on %s (%s %d)%s%s\n", script,
                    st < 0 ? "did not run or was killed:" : "exit status", st,
                    first[0] ? ": " : "", first);
            return 1;
        }
        gnuplot_said(errpath, true, first, sizeof(first));
        if ((e = ofile_commit(&of))) {
            fprintf(stderr, "moesim plot: %s: %s\n", outs[i], strerror(-e));
            return 1;
        }
    }
    return 0;
}

/* OUT less a .png or .svg ending, then OUT.dat, OUT.png, OUT.svg; none may name an
 * input. 0 or 2 (said). */
static int out_names(const struct plot_opts *o, char (*in)[PATH_BYTES], char (*outs)[PATH_BYTES])
{
    static const char *const ext[] = { "png", "svg", "dat" };
    size_t len = strlen(o->out);
    if (len > 4 && (!strcmp(o->out + len - 4, ".png") || !strcmp(o->out + len - 4, ".svg")))
        len -= 4;
    for (int i = 0; i < 3; i++) {
        if (snprintf(outs[i], PATH_BYTES, "%.*s.%s", (int)len, o->out, ext[i]) >= PATH_BYTES)
            return bad("-o '%s': name too long", o->out);
        struct ofile probe;
        int e = ofile_probe(&probe, outs[i]);
        if (e)
            return bad("-o: %s: %s", outs[i], e == -ENOENT ? "no such folder" : strerror(-e));
        for (int k = 0; k < o->nin; k++) {
            struct ofile_id id;
            if (!ofile_identify(in[k], &id) && ofile_same(&id, &probe.id))
                return bad("-o: %s is an input", outs[i]);
        }
    }
    return 0;
}

/* The data (OUT.dat, committed) and the variables (vars, in the temporary folder). 0, or
 * the status with one line said. */
static int write_data(const struct plot_opts *o, const struct plot_table *t, const char *dat,
                      const char *vars)
{
    char err[PLOT_ERR_MAX];
    struct ofile of;
    int e = ofile_open(&of, dat);
    if (e) {
        fprintf(stderr, "moesim plot: %s: cannot write: %s\n", dat, strerror(-e));
        return 1;
    }
    FILE *v = fopen(vars, "w");
    if (!v) {
        ofile_abort(&of);
        fprintf(stderr, "moesim plot: %s: %s\n", vars, strerror(errno));
        return 1;
    }
    e = plot_csv_data(&o->req, t, o->nin, of.f, v, err, sizeof(err));
    if (fclose(v) && !e)
        e = -EIO;
    if (e) {
        ofile_abort(&of);
        if (e == -EINVAL)
            return bad("%s", err);
        fprintf(stderr, "moesim plot: %s\n", strerror(-e));
        return 1;
    }
    if ((e = ofile_commit(&of))) {
        fprintf(stderr, "moesim plot: %s: %s\n", dat, strerror(-e));
        return 1;
    }
    return 0;
}

static void remove_tmp(const char *dir)
{
    static const char *const names[] = { "vars.gp", "head.gp", "gnuplot.err" };
    char p[PATH_BYTES];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%.1100s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int plot_main(int argc, char **argv)
{
    static struct plot_opts o;
    static struct plot_table t[MAX_INPUTS];
    static char paths[MAX_INPUTS][PATH_BYTES], outs[3][PATH_BYTES];
    char gp[PATH_BYTES], script[PATH_BYTES], dir[DIR_BYTES], vars[PATH_BYTES];
    memset(&o, 0, sizeof(o));
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (!(rc = read_inputs(&o, t, paths)) && !(rc = out_names(&o, paths, outs))) {
        bool have_gp = find_gnuplot(gp, sizeof(gp));
        bool have_script = find_script(&o, script, sizeof(script));
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%.1000s/moesim-plot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "moesim plot: temporary folder %s: %s\n", dir, strerror(errno));
            rc = 1;
        } else {
            snprintf(vars, sizeof(vars), "%.1100s/vars.gp", dir);
            if (!(rc = write_data(&o, t, outs[2], vars))) {
                if (!have_gp) {
                    fprintf(stderr, "moesim plot: gnuplot not found on PATH: no %s, %s; the "
                            "data is in %s\n", outs[0], outs[1], outs[2]);
                    rc = 1;
                } else if (!have_script) {
                    fprintf(stderr, "moesim plot: no gnuplot script %s found (give --plots "
                            "DIR or set MOESIM_PLOTS); the data is in %s\n", script, outs[2]);
                    rc = 1;
                } else {
                    rc = render(gp, script, dir, vars, outs[2], outs);
                }
            }
            remove_tmp(dir);
        }
    }
    for (int i = 0; i < o.nin; i++)
        plot_table_free(&t[i]);
    return rc;
}
