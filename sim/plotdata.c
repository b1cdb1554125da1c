/* plotdata.c: moesim's CSV files read back and turned into gnuplot data; see plot.h.
 *
 * OUT.dat holds whitespace-separated numbers in blocks (gnuplot's `index`), each block
 * ended by two blank lines; where a block is one line of a plot its first line is the
 * line's title in double quotes (`title columnheader(1)`). The variables go to a second
 * file of gnuplot assignments that runs before the script.
 */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "textin.h"

#define LINE_MAX_BYTES (1 << 20)

/* ---- reading ---- */

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t n, int rc, const char *fmt, ...)
{
    char raw[PLOT_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    textin_escape(err, n, raw);
    return rc;
}

/* Splits line (RFC 4180 fields, quotes undone) into NUL-terminated fields appended at
 * *out; returns the number of fields, or -1 for an unterminated quote. *out advances
 * past what was written (at most strlen(line) + 1 + number of fields bytes). */
static int split_csv(const char *line, char **out)
{
    char *o = *out;
    int nf = 0;
    const char *p = line;
    for (;;) {
        nf++;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p)
                    return -1;
                if (*p == '"' && p[1] == '"')
                    *o++ = '"', p += 2;
                else if (*p == '"')
                    break;
                else
                    *o++ = *p++;
            }
            p++;
        }
        while (*p && *p != ',')
            *o++ = *p++;
        *o++ = 0;
        if (!*p)
            break;
        p++;
    }
    *out = o;
    return nf;
}

void plot_table_free(struct plot_table *t)
{
    if (!t)
        return;
    free(t->col);
    free(t->cells);
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

/* Appends the fields of line to t->buf (grown as needed); their count, or -1, -ENOMEM. */
static int take_line(struct plot_table *t, size_t *used, size_t *cap, const char *line,
                     size_t len)
{
    size_t need = *used + 2 * len + 2;
    if (need > *cap) {
        size_t c = *cap ? *cap : 1 << 16;
        while (c < need)
            c *= 2;
        char *b = realloc(t->buf, c);
        if (!b)
            return -ENOMEM;
        t->buf = b;
        *cap = c;
    }
    char *o = t->buf + *used;
    int nf = split_csv(line, &o);
    if (nf > 0)
        *used = (size_t)(o - t->buf);
    return nf;
}

int plot_table_read(struct plot_table *t, const char *path, char *err, size_t n)
{
    memset(t, 0, sizeof(*t));
    t->path = path;
    FILE *fp;
    char why[256];
    int rc = textin_open(&fp, path, why, sizeof(why));
    if (rc)
        return fail(err, n, -EINVAL, "%s: %s", path, why);   /* missing or unreadable: input */
    char *line = malloc(LINE_MAX_BYTES + 2);
    size_t used = 0, cap = 0, len;
    long lines = 0, fields = 0;
    rc = line ? 0 : -ENOMEM;
    while (!rc && (rc = textin_getline(fp, line, LINE_MAX_BYTES, &len)) == 1) {
        lines++;
        int nf = take_line(t, &used, &cap, line, len);
        if (nf == -ENOMEM) {
            rc = -ENOMEM;
            break;
        }
        if (nf < 0) {
            rc = fail(err, n, -EINVAL, "%s:%ld: a quoted field is not closed", path, lines);
            break;
        }
        if (lines == 1)
            t->ncols = nf;
        else if (nf != t->ncols) {
            rc = fail(err, n, -EINVAL, "%s:%ld: %d fields, but the header has %d", path,
                      lines, nf, t->ncols);
            break;
        }
        fields += nf;
        rc = 0;
    }
    if (rc < 0 && rc != -EINVAL && rc != -ENOMEM) {
        struct textin_at at = { path, (uint64_t)lines + 1, err, n };
        rc = textin_refusal(&at, rc, line, len, LINE_MAX_BYTES);
    }
    free(line);
    fclose(fp);
    if (!rc && lines == 0)
        rc = fail(err, n, -EINVAL, "%s: empty file (no CSV header)", path);
    if (rc) {
        plot_table_free(t);
        t->path = path;
        return rc;
    }
    t->nrows = lines - 1;
    t->col = malloc((size_t)t->ncols * sizeof(char *));
    t->cells = malloc((size_t)(fields > 0 ? fields : 1) * sizeof(char *));
    if (!t->col || !t->cells) {
        plot_table_free(t);
        return -ENOMEM;
    }
    char *p = t->buf;
    for (int i = 0; i < t->ncols; i++, p += strlen(p) + 1)
        t->col[i] = p;
    for (long i = 0; i < t->nrows * t->ncols; i++, p += strlen(p) + 1)
        t->cells[i] = p;
    return 0;
}

int plot_col(const struct plot_table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->col[i], name))
            return i;
    return -1;
}

/* The header starts with these columns (comma-separated). */
static bool starts(const struct plot_table *t, const char *cols)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", cols);
    int i = 0;
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","), i++)
        if (i >= t->ncols || strcmp(t->col[i], s))
            return false;
    return true;
}

enum plot_kind plot_detect(const struct plot_table *t)
{
    if (starts(t, "point") && plot_col(t, "seed") > 0 && plot_col(t, "status") > 0)
        return PLOT_SWEEP;
    if (starts(t, "kind,id,name,tier,bin,t0_s,t1_s,compute,comm,nvlink,nic,util"))
        return PLOT_GPU_UTIL;
    if (starts(t, "layer,moe_layer,expert,demand") ||
        starts(t, "policy,ep_group,expert,replicas,demand") ||
        starts(t, "policy,iteration,ep_group,expert,demand"))
        return PLOT_EXPERT_LOAD;
    if (starts(t, "lane,stage,ep_group,first_gpu,stream,op,what"))
        return PLOT_GANTT;
    return PLOT_NONE;
}

/* In enum plot_kind order; to add a kind, add its name here and plots/<name with '_'>.gp. */
static const char *const kind_names[PLOT_NKINDS] = {
    "sweep", "gpu-util", "link-util", "expert-load", "gantt",
};

const char *plot_kind_name(enum plot_kind k)
{
    return k >= 0 && k < PLOT_NKINDS ? kind_names[k] : "?";
}

enum plot_kind plot_kind_parse(const char *s)
{
    for (int k = 0; k < PLOT_NKINDS; k++)
        if (!strcmp(s, kind_names[k]))
            return (enum plot_kind)k;
    return PLOT_NONE;
}

/* ---- helpers for the data ---- */

/* s as a number; NaN when empty or not all of it is one. */
static double num(const char *s)
{
    char *end;
    if (!*s)
        return NAN;
    double v = strtod(s, &end);
    return *end ? NAN : v;
}

/* A gnuplot single-quoted string of s (quotes doubled, control bytes as blanks). */
static void gp_str(FILE *f, const char *s)
{
    putc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            putc('\'', f);
        putc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
    }
    putc('\'', f);
}

static void gp_var(FILE *f, const char *name, const char *s)
{
    fprintf(f, "%s = ", name);
    gp_str(f, s);
    putc('\n', f);
}

/* name = s as a double-quoted gnuplot string, its '\n' kept as line breaks. */
static void gp_var_lines(FILE *f, const char *name, const char *s)
{
    fprintf(f, "%s = \"", name);
    for (; *s; s++) {
        if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else
            putc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
    }
    fputs("\"\n", f);
}

/* s into buf with a line break after a ", " or a blank where the line would pass
 * width characters (the canvas holds about WRAP_CHARS at the scripts' font); breaks
 * already in s are kept. A word longer than width stays whole. */
#define WRAP_CHARS 110
static void wrap(char *buf, size_t n, const char *s, size_t width)
{
    size_t len = 0, col = 0;
    buf[0] = 0;
    while (*s && len + 2 < n) {
        /* the next word and the separator after it */
        size_t w = strcspn(s, " \n");
        if (col && col + w > width && len && buf[len - 1] == ' ') {
            buf[len - 1] = '\n';
            col = 0;
        }
        for (size_t i = 0; i < w && len + 2 < n; i++, col++)
            buf[len++] = s[i];
        s += w;
        if (*s && len + 2 < n) {
            buf[len++] = *s;
            col = *s == '\n' ? 0 : col + 1;
            s++;
        }
    }
    buf[len] = 0;
}

/* A double-quoted title line of a block (gnuplot's columnheader): '"' taken out. */
static void dat_title(FILE *f, const char *s)
{
    putc('"', f);
    for (; *s; s++)
        putc(*s == '"' || (unsigned char)*s < 0x20 ? ' ' : *s, f);
    fputs("\"\n", f);
}

/* A point's label as a third field: the value in double quotes (none inside). */
static void dat_label(FILE *f, const char *s)
{
    fputs(" \"", f);
    for (; *s; s++)
        putc(*s == '"' || (unsigned char)*s < 0x20 ? ' ' : *s, f);
    putc('"', f);
}

/* The unit of a column by its name's ending, for an axis label; "" when none. */
static const char *unit_of(const char *col)
{
    static const struct { const char *end, *unit; } u[] = {
        { "_s", "s" }, { "_GiB", "GiB" }, { "_GBps", "GB/s" }, { "_bytes", "bytes" },
        { "_frac", "fraction" }, { "mfu", "fraction" }, { "_rate", "fraction" },
        { "_per_s", "1/s" }, { "_over_mean", "max/mean" },
    };
    size_t n = strlen(col);
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        size_t k = strlen(u[i].end);
        if (n >= k && !strcmp(col + n - k, u[i].end))
            return u[i].unit;
    }
    return "";
}

static void axis_label(char *buf, size_t n, const char *col)
{
    const char *u = unit_of(col);
    if (*u)
        snprintf(buf, n, "%s (%s)", col, u);
    else
        snprintf(buf, n, "%s", col);
}

/* The identifying columns (csv.h) that hold one value over rows [0, nrows) of t, and
 * that skip[] does not name, as "model M, cluster C, ..." into buf. */
static void config_line(char *buf, size_t n, const struct plot_table *t, const int *skip,
                        int nskip)
{
    static const char *const ids[] = { "model", "cluster", "nodes", "gpus_per_node",
                                       "experts", "top_k", "schedule", "route",
                                       "distribution", "pp", "dp", "ep", "microbatches" };
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        int c = plot_col(t, ids[i]);
        bool skipped = c < 0;
        for (int k = 0; k < nskip && !skipped; k++)
            skipped = skip[k] == c;
        /* one value over the rows that have one (a refused sweep point has none) */
        const char *v = "";
        for (long r = 0; r < t->nrows && !skipped; r++) {
            const char *x = plot_cell(t, r, c);
            if (*x && *v)
                skipped = strcmp(x, v) != 0;
            else if (*x)
                v = x;
        }
        if (skipped || !*v || !strcmp(v, "none"))
            continue;
        /* a line break before an item that would take the line past 90 characters */
        const char *nl = strrchr(buf, '\n');
        size_t col = len - (nl ? (size_t)(nl - buf) + 1 : 0);
        const char *sep = !len ? "" : col + strlen(ids[i]) + strlen(v) + 3 > 90 ? ",\n" : ", ";
        int k = snprintf(buf + len, n - len, "%s%s %s", sep, ids[i], v);
        if (k < 0 || (size_t)k >= n - len) {
            buf[len] = 0;
            break;
        }
        len += (size_t)k;
    }
}

/* A time unit for a span of T seconds: its scale (multiply seconds by it) and name. */
static double time_unit(double T, const char **name)
{
    if (T >= 1) {
        *name = "s";
        return 1;
    }
    if (T >= 1e-3) {
        *name = "ms";
        return 1e3;
    }
    *name = "us";
    return 1e6;
}

/* The variables every kind but sweep sets: title, subtitle (the configuration of t),
 * and xlabel "time (<unit>)" when unit is not NULL. */
static void head_vars(FILE *vars, const struct plot_table *t, const char *title,
                      const char *unit)
{
    char buf[64], cfg[1024];
    config_line(cfg, sizeof(cfg), t, NULL, 0);
    gp_var(vars, "title", title);
    gp_var_lines(vars, "subtitle", cfg);
    if (unit) {
        snprintf(buf, sizeof(buf), "time (%s)", unit);
        gp_var(vars, "xlabel", buf);
    }
}

static int need_col(const struct plot_table *t, const char *name, int *col, char *err,
                    size_t n)
{
    *col = plot_col(t, name);
    if (*col < 0)
        return fail(err, n, -EINVAL, "%s: no column '%s'", t->path, name);
    return 0;
}

static int need_cols(const struct plot_table *t, const char *const *names, int *cols, int k,
                     char *err, size_t n)
{
    for (int i = 0; i < k; i++)
        if (need_col(t, names[i], &cols[i], err, n))
            return -EINVAL;
    return 0;
}

static int done(FILE *dat, FILE *vars)
{
    return ferror(dat) || ferror(vars) ? -EIO : 0;
}

/* ---- sweep ---- */

/* One point of a sweep: the table and row it comes from, its line, its x. */
struct pt {
    const struct plot_table *t;
    long row;
    int line;
    double x;
};

static int pt_cmp(const void *a, const void *b)
{
    const struct pt *p = a, *q = b;
    if (p->line != q->line)
        return p->line < q->line ? -1 : 1;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    return p->row < q->row ? -1 : p->row > q->row;
}

/* Index of s in v[0..*n), appended when new (v holds borrowed strings). -1: full. */
static int intern(const char **v, int *n, int max, const char *s)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(v[i], s))
            return i;
    if (*n == max)
        return -1;
    v[*n] = s;
    return (*n)++;
}

#define MAX_LINES 64
#define MAX_CATS 256
#define LABEL_MAX 512

/* The swept keys' columns of t: [1, seed). */
static int swept(const struct plot_table *t, int *first, int *end)
{
    *first = 1;
    *end = plot_col(t, "seed");
    return *end > 1 ? 0 : -EINVAL;
}

/* The name of swept column c in a legend: the key without its section ("top_k" for
 * "model.top_k") when no other swept key [k0, k1) ends the same, else the whole name. */
static const char *short_key(const struct plot_table *t, int c, int k0, int k1)
{
    const char *dot = strrchr(t->col[c], '.');
    if (!dot)
        return t->col[c];
    for (int k = k0; k < k1; k++) {
        const char *d = strrchr(t->col[k], '.');
        if (k != c && d && !strcmp(d, dot))
            return t->col[c];
    }
    return dot + 1;
}

/* The line label of row r: "by=v, key=v" over the varying keys vary[0..nv), each named
 * by short_key among the swept keys [k0, k1). */
static void line_label(char *buf, size_t n, const struct plot_table *t, long r,
                       const int *vary, int nv, int k0, int k1)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < nv; i++) {
        int k = snprintf(buf + len, n - len, "%s%s=%s", i ? ", " : "",
                         short_key(t, vary[i], k0, k1), plot_cell(t, r, vary[i]));
        if (k < 0 || (size_t)k >= n - len)
            break;
        len += (size_t)k;
    }
}

/* xtics at 0, 1, ... named by the categories, into buf. */
static void cat_tics(char *buf, size_t n, const char *const *cats, int ncat)
{
    size_t len = (size_t)snprintf(buf, n, "set xtics (");
    for (int c = 0; c < ncat && len < n - 64; c++) {
        len += (size_t)snprintf(buf + len, n - len, "%s\"", c ? ", " : "");
        for (const char *s = cats[c]; *s && len < n - 64; s++)
            buf[len++] = *s == '"' || *s == '\\' || (unsigned char)*s < 0x20 ? ' ' : *s;
        len += (size_t)snprintf(buf + len, n - len, "\" %d", c);
    }
    snprintf(buf + len, n - len, ")");
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Numeric x: xtics at the values swept when there are at most 16 of them (else
 * gnuplot's), and xlog = 1 (a log2 axis) when they are positive and span 8x or more. */
static void num_tics(char *buf, size_t n, const struct pt *p, long np, FILE *vars)
{
    double v[17];
    int nv = 0;
    buf[0] = 0;
    for (long i = 0; i < np && nv <= 16; i++) {
        bool seen = false;
        for (int k = 0; k < nv && !seen; k++)
            seen = v[k] == p[i].x;
        if (!seen)
            v[nv++] = p[i].x;
    }
    qsort(v, (size_t)nv, sizeof(double), dbl_cmp);
    fprintf(vars, "xlog = %d\n", nv <= 16 && v[0] > 0 && v[nv - 1] >= 8 * v[0]);
    if (nv > 16)
        return;
    size_t len = (size_t)snprintf(buf, n, "set xtics (");
    for (int k = 0; k < nv; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%.12g", k ? ", " : "", v[k]);
    snprintf(buf + len, n - len, ")");
}

/* Legend below the plot: keycols columns of the longest label (about 7 pixels a
 * character at the scripts' font, 60 more for the line sample), keyrows rows of them,
 * over the 1000-pixel canvas; the script makes the canvas taller by the rows. */
static void key_vars(FILE *vars, const char *const *lines, int nline)
{
    size_t longest = 1;
    for (int i = 0; i < nline; i++)
        if (strlen(lines[i]) > longest)
            longest = strlen(lines[i]);
    int cols = (int)(940 / (longest * 7 + 60));
    cols = cols < 1 ? 1 : cols > nline ? nline : cols;
    fprintf(vars, "keycols = %d\nkeyrows = %d\n", cols, (nline + cols - 1) / cols);
}

/* Word x tics: xrot = the longest name's length when names side by side would overlap
 * (the longest, 7 pixels a character, wider than its share of the ~880-pixel plot less a
 * 2-character gap; the script turns them), else 0. */
static void cats_vars(FILE *vars, const char *const *cats, int ncat)
{
    size_t longest = 0;
    for (int c = 0; c < ncat; c++)
        if (strlen(cats[c]) > longest)
            longest = strlen(cats[c]);
    bool crowded = ncat > 0 && (longest + 2) * 7 > (size_t)(880 / ncat);
    fprintf(vars, "xrot = %zu\n", crowded ? longest : 0);
}

static int sweep_data(const struct plot_req *q, const struct plot_table *t, int nt,
                      FILE *dat, FILE *vars, char *err, size_t n)
{
    int k0, k1, st = plot_col(&t[0], "status");
    if (swept(&t[0], &k0, &k1))
        return fail(err, n, -EINVAL, "%s: no swept key before the seed column", t[0].path);
    for (int i = 1; i < nt; i++)
        if (t[i].ncols != t[0].ncols || plot_col(&t[i], "seed") != k1)
            return fail(err, n, -EINVAL, "%s: its columns differ from %s's", t[i].path,
                        t[0].path);
    const char *xs = q->x ? q->x : t[0].col[k0];
    const char *ys = q->y ? q->y : plot_col(&t[0], "step_s") >= 0 ? "step_s" : "dispatch_s";
    const char *bs = q->by ? q->by : k1 - k0 > 1 ? t[0].col[k0 + 1] : NULL;
    int xc, yc, bc = -1;
    if (need_col(&t[0], xs, &xc, err, n) || need_col(&t[0], ys, &yc, err, n) ||
        (bs && need_col(&t[0], bs, &bc, err, n)))
        return -EINVAL;
    for (int i = 1; i < nt; i++)
        for (int c = 0; c < t[0].ncols; c++)
            if (strcmp(t[i].col[c], t[0].col[c]))
                return fail(err, n, -EINVAL, "%s: its columns differ from %s's", t[i].path,
                            t[0].path);
    long total = 0;
    for (int i = 0; i < nt; i++)
        total += t[i].nrows;
    struct pt *p = malloc((size_t)(total ? total : 1) * sizeof(*p));
    if (!p)
        return -ENOMEM;
    /* x a result column (tpot_s against tokens_per_s_gpu): each line is a curve along the
     * first swept key that is not --by (its parameter, labelled at its points); else the
     * parameter is x itself */
    int pc = xc;
    for (int c = k0; (xc < k0 || xc >= k1) && c < k1 && pc == xc; c++)
        if (c != bc)
            pc = c;
    /* the keys that vary among the ok rows, besides x: by first, then the others */
    int vary[64], nv = 0;
    int keys[66], nk = 0;
    if (bc >= 0)
        keys[nk++] = bc;
    for (int c = k0; c <= k1 && nk < 65; c++)
        if (c != xc && c != bc)
            keys[nk++] = c;
    long np = 0, skipped = 0;
    bool xnum = true;
    for (int i = 0; i < nt; i++)
        for (long r = 0; r < t[i].nrows; r++) {
            if (strcmp(plot_cell(&t[i], r, st), "ok")) {
                skipped++;
                continue;
            }
            if (isnan(num(plot_cell(&t[i], r, yc))))
                continue;
            xnum = xnum && !isnan(num(plot_cell(&t[i], r, xc)));
            p[np++] = (struct pt){ &t[i], r, 0, 0 };
        }
    if (np == 0) {
        free(p);
        return fail(err, n, -EINVAL, "%s: no row with status ok and a value of %s", t[0].path,
                    ys);
    }
    /* rep[i]: the first ok row with row i's parameter; a key that takes one value per
     * parameter value (an axis zipped with it) moves along the line and does not split it */
    long *rep = malloc((size_t)np * sizeof(*rep));
    if (!rep) {
        free(p);
        return -ENOMEM;
    }
    for (long i = 0; i < np; i++) {
        const char *xv = plot_cell(p[i].t, p[i].row, pc);
        rep[i] = i;
        for (long j = 0; j < i && rep[i] == i; j++)
            if (rep[j] == j && !strcmp(plot_cell(p[j].t, p[j].row, pc), xv))
                rep[i] = j;
    }
    char with[512] = "";
    for (int k = 0; k < nk && nv < 64; k++) {
        bool v = false, along = true;
        for (long i = 1; i < np && !v; i++)
            v = strcmp(plot_cell(p[i].t, p[i].row, keys[k]), plot_cell(p[0].t, p[0].row, keys[k]));
        for (long i = 0; i < np && along; i++)
            along = !strcmp(plot_cell(p[i].t, p[i].row, keys[k]),
                            plot_cell(p[rep[i]].t, p[rep[i]].row, keys[k]));
        if (v && along && keys[k] != bc && keys[k] != pc)
            snprintf(with + strlen(with), sizeof(with) - strlen(with), "%s%s", *with ? ", " : "",
                     t[0].col[keys[k]]);
        else if ((v && !along) || keys[k] == bc)
            vary[nv++] = keys[k];
    }
    free(rep);
    const char *cats[MAX_CATS], *lines[MAX_LINES];
    char *labels = malloc((size_t)np * LABEL_MAX);
    int ncat = 0, nline = 0, rc = 0;
    if (!labels) {
        free(p);
        return -ENOMEM;
    }
    for (long i = 0; i < np && !rc; i++) {
        const char *xv = plot_cell(p[i].t, p[i].row, xc);
        p[i].x = xnum ? num(xv) : intern(cats, &ncat, MAX_CATS, xv);
        char *lab = labels + i * LABEL_MAX;
        line_label(lab, LABEL_MAX, p[i].t, p[i].row, vary, nv, k0, k1);
        if (!nv)
            snprintf(lab, LABEL_MAX, "%s", ys);
        p[i].line = intern(lines, &nline, MAX_LINES, lab);
        if (p[i].x < 0 && !xnum)
            rc = fail(err, n, -EINVAL, "%s: more than %d values of %s", t[0].path, MAX_CATS, xs);
        else if (p[i].line < 0)
            rc = fail(err, n, -EINVAL, "%s: more than %d lines (values of %s and the other "
                      "swept keys); choose --by or filter the rows", t[0].path, MAX_LINES,
                      bs ? bs : xs);
    }
    if (!rc) {
        qsort(p, (size_t)np, sizeof(*p), pt_cmp);
        for (long i = 0; i < np; i++) {
            if (i == 0 || p[i].line != p[i - 1].line)
                dat_title(dat, lines[p[i].line]);
            fprintf(dat, "%.12g %.12g", p[i].x, num(plot_cell(p[i].t, p[i].row, yc)));
            if (pc != xc)
                dat_label(dat, plot_cell(p[i].t, p[i].row, pc));
            putc('\n', dat);
            if (i + 1 == np || p[i + 1].line != p[i].line)
                fputs("\n\n", dat);
        }
        char buf[2048], cfg[1024], lab[256];
        int skip[3] = { xc, yc, bc };
        config_line(cfg, sizeof(cfg), &t[0], skip, 3);
        snprintf(buf, sizeof(buf), "%s against %s%s%s%s%s%s%s%s", ys, xs,
                 pc != xc ? " over " : "", pc != xc ? t[0].col[pc] : "", pc != xc ? " (labels)" : "",
                 *with ? " (and " : "", with, *with ? ")" : "", bs ? ", one line per " : "");
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s", bs ? bs : "");
        char wrapped[2048];
        wrap(wrapped, sizeof(wrapped), buf, WRAP_CHARS);
        gp_var_lines(vars, "title", wrapped);
        gp_var_lines(vars, "subtitle", cfg);
        key_vars(vars, lines, nline);
        if (!xnum)
            cats_vars(vars, cats, ncat);
        axis_label(lab, sizeof(lab), xs);
        gp_var(vars, "xlabel", lab);
        axis_label(lab, sizeof(lab), ys);
        gp_var(vars, "ylabel", lab);
        fprintf(vars, "nlines = %d\nxcat = %d\nncat = %d\nptlabels = %d\n", nline, !xnum, ncat,
                pc != xc);
        if (xnum && pc != xc)       /* measured values: gnuplot's tics on a linear axis */
            fprintf(vars, "xlog = 0\n"), buf[0] = 0;
        else if (xnum)
            num_tics(buf, sizeof(buf), p, np, vars);
        else
            cat_tics(buf, sizeof(buf), cats, ncat);
        gp_var(vars, "xtics_cmd", buf);
        fprintf(vars, "# %ld rows without status ok left out\n", skipped);
        rc = done(dat, vars);
    }
    free(labels);
    free(p);
    return rc;
}

/* ---- utilization ---- */

static int gpu_util_data(const struct plot_table *t, FILE *dat, FILE *vars, char *err,
                         size_t n)
{
    static const char *const names[] = { "kind", "id", "t0_s", "t1_s", "compute", "comm",
                                         "nvlink", "nic" };
    int c[8];
    if (need_cols(t, names, c, 8, err, n))
        return -EINVAL;
    double T = 0;
    int gpus = 0, bins = 0;
    bool links = false;
    for (long r = 0; r < t->nrows; r++)
        if (!strcmp(plot_cell(t, r, c[0]), "gpu")) {
            bins += num(plot_cell(t, r, c[1])) == 0;
            T = fmax(T, num(plot_cell(t, r, c[3])));
            gpus = (int)fmax(gpus, num(plot_cell(t, r, c[1])) + 1);
            links = links || !isnan(num(plot_cell(t, r, c[6])));
        }
    if (gpus == 0)
        return fail(err, n, -EINVAL, "%s: no gpu rows", t->path);
    const char *un;
    double sc = time_unit(T, &un);
    long prev = -1;
    for (long r = 0; r < t->nrows; r++) {
        if (strcmp(plot_cell(t, r, c[0]), "gpu"))
            continue;
        long id = (long)num(plot_cell(t, r, c[1]));
        if (prev >= 0 && id != prev)
            fputs("\n", dat);
        prev = id;
        double tm = (num(plot_cell(t, r, c[2])) + num(plot_cell(t, r, c[3]))) / 2 * sc;
        fprintf(dat, "%.12g %ld", tm, id);
        for (int k = 4; k < 8; k++) {
            double v = num(plot_cell(t, r, c[k]));
            fprintf(dat, " %.12g", isnan(v) ? 0 : v);
        }
        putc('\n', dat);
    }
    head_vars(vars, t, "utilization per GPU over time", un);
    fprintf(vars, "gpus = %d\nbins = %d\ntmax = %.12g\npanels = %d\n", gpus, bins, T * sc,
            links ? 4 : 2);
    return done(dat, vars);
}

/* Link rows by tier: NVLink as block 0, network (NIC and leaf links) as block 1; y is the
 * link's place in its tier, in link-id order. */
static int link_util_data(const struct plot_table *t, FILE *dat, FILE *vars, char *err,
                          size_t n)
{
    static const char *const names[] = { "kind", "id", "name", "tier", "t0_s", "t1_s", "util" };
    static const char *const tiers[] = { "nvlink", "net" };
    int c[7];
    if (need_cols(t, names, c, 7, err, n))
        return -EINVAL;
    double T = 0;
    int count[2] = { 0, 0 }, bins = 0;
    for (long r = 0; r < t->nrows; r++)
        if (!strcmp(plot_cell(t, r, c[0]), "link")) {
            T = fmax(T, num(plot_cell(t, r, c[5])));
            bins += num(plot_cell(t, r, c[1])) == num(plot_cell(t, 0, c[1]));
        }
    const char *un;
    double sc = time_unit(T, &un);
    char tics[2][4096];
    for (int k = 0; k < 2; k++) {
        long prev = -1;
        size_t len = (size_t)snprintf(tics[k], sizeof(tics[k]), "set ytics (");
        for (long r = 0; r < t->nrows; r++) {
            if (strcmp(plot_cell(t, r, c[0]), "link") || strcmp(plot_cell(t, r, c[3]), tiers[k]))
                continue;
            long id = (long)num(plot_cell(t, r, c[1]));
            if (id != prev) {
                if (prev >= 0)
                    fputs("\n", dat);
                if (len < sizeof(tics[k]) - 80)
                    len += (size_t)snprintf(tics[k] + len, sizeof(tics[k]) - len,
                                            "%s\"%.40s\" %d", count[k] ? ", " : "",
                                            plot_cell(t, r, c[2]), count[k]);
                count[k]++;
                prev = id;
            }
            double tm = (num(plot_cell(t, r, c[4])) + num(plot_cell(t, r, c[5]))) / 2 * sc;
            double u = num(plot_cell(t, r, c[6]));
            fprintf(dat, "%.12g %d %.12g\n", tm, count[k] - 1, isnan(u) ? 0 : u);
        }
        snprintf(tics[k] + len, sizeof(tics[k]) - len, ")");
        if (count[k] == 0)
            fputs("0 0 0\n", dat);     /* a tier without links: one empty cell */
        fputs("\n\n", dat);
    }
    if (count[0] + count[1] == 0)
        return fail(err, n, -EINVAL, "%s: no link rows (not a file of moesim run "
                    "--util-csv?)", t->path);
    head_vars(vars, t, "link utilization over time", un);
    fprintf(vars, "nvl_links = %d\nnet_links = %d\nbins = %d\ntmax = %.12g\n", count[0],
            count[1], bins, T * sc);
    gp_var(vars, "nvl_tics", count[0] <= 32 ? tics[0] : "");
    gp_var(vars, "net_tics", count[1] <= 32 ? tics[1] : "");
    return done(dat, vars);
}

/* ---- expert load ---- */

#define MAX_PANELS 16

/* moesim balance --expert-iter-csv: per policy (one block, one panel each) iteration x
 * expert, the load summed over the EP groups over its mean per expert. Rows come in
 * the file's order: policy, iteration, group, expert. */
static int expert_iter_data(const struct plot_table *t, FILE *dat, FILE *vars, char *err,
                            size_t n)
{
    static const char *const names[] = { "policy", "iteration", "expert", "demand" };
    int c[4];
    if (need_cols(t, names, c, 4, err, n))
        return -EINVAL;
    if (t->nrows == 0)
        return fail(err, n, -EINVAL, "%s: no rows", t->path);
    int experts = 0, iters = 0, np = 0;
    for (long r = 0; r < t->nrows; r++) {
        experts = (int)fmax(experts, num(plot_cell(t, r, c[2])) + 1);
        iters = (int)fmax(iters, num(plot_cell(t, r, c[1])) + 1);
    }
    if (experts < 1 || experts > 1 << 20)
        return fail(err, n, -EINVAL, "%s: bad expert numbers", t->path);
    double *load = calloc((size_t)experts, sizeof(double));
    if (!load)
        return -ENOMEM;
    char pols[MAX_PANELS * 48 + 64];
    size_t len = (size_t)snprintf(pols, sizeof(pols), "array policies[%d] = [", MAX_PANELS);
    for (long r = 0; r < t->nrows;) {
        /* rows [r, e): one policy's iteration */
        const char *pol = plot_cell(t, r, c[0]), *it = plot_cell(t, r, c[1]);
        long e = r;
        while (e < t->nrows && !strcmp(plot_cell(t, e, c[0]), pol) &&
               !strcmp(plot_cell(t, e, c[1]), it))
            e++;
        bool first = r == 0 || strcmp(plot_cell(t, r - 1, c[0]), pol);
        if (first && np == MAX_PANELS) {
            free(load);
            return fail(err, n, -EINVAL, "%s: more than %d policies", t->path, MAX_PANELS);
        }
        if (first) {
            if (np)
                fputs("\n\n", dat);
            char lab[48];
            snprintf(lab, sizeof(lab), "%.40s", pol);
            for (char *s = lab; *s; s++)
                if (*s == '"' || *s == '\\')
                    *s = ' ';
            len += (size_t)snprintf(pols + len, sizeof(pols) - len, "%s\"%s\"", np ? ", " : "",
                                    lab);
            np++;
        } else {
            fputs("\n", dat);
        }
        double tot = 0;
        for (int x = 0; x < experts; x++)
            load[x] = 0;
        for (long k = r; k < e; k++) {
            int x = (int)num(plot_cell(t, k, c[2]));
            double d = num(plot_cell(t, k, c[3]));
            if (x >= 0 && x < experts && !isnan(d)) {
                load[x] += d;
                tot += d;
            }
        }
        for (int x = 0; x < experts; x++)
            fprintf(dat, "%d %s %.12g\n", x, it, tot > 0 ? load[x] / (tot / experts) : 0);
        r = e;
    }
    free(load);
    for (int k = np; k < MAX_PANELS; k++)
        len += (size_t)snprintf(pols + len, sizeof(pols) - len, ", \"\"");
    snprintf(pols + len, sizeof(pols) - len, "]");
    head_vars(vars, t, "expert load / mean over the iterations of moesim balance", NULL);
    gp_var(vars, "ylabel", "iteration");
    gp_var(vars, "ytics_cmd", "");
    fprintf(vars, "experts = %d\nrows = %d\npanels = %d\n%s\n", experts, iters, np, pols);
    return done(dat, vars);
}

static int expert_data(const struct plot_table *t, FILE *dat, FILE *vars, char *err, size_t n)
{
    if (plot_col(t, "iteration") == 1)
        return expert_iter_data(t, dat, vars, err, n);
    bool bal = plot_col(t, "policy") == 0;
    static const char *const run_cols[] = { "moe_layer", "expert", "load_over_mean" };
    static const char *const bal_cols[] = { "policy", "expert", "load_over_mean", "ep_group" };
    int c[4];
    if (need_cols(t, bal ? bal_cols : run_cols, c, bal ? 4 : 3, err, n))
        return -EINVAL;
    if (t->nrows == 0)
        return fail(err, n, -EINVAL, "%s: no rows", t->path);
    int experts = 0, rows = 0, groups = 1;
    char tics[4096];
    size_t len = (size_t)snprintf(tics, sizeof(tics), "set ytics (");
    for (long r = 0; r < t->nrows; r++)
        if (bal)
            groups = (int)fmax(groups, num(plot_cell(t, r, c[3])) + 1);
    for (long r = 0; r < t->nrows; r++) {
        int e = (int)num(plot_cell(t, r, c[1]));
        bool first = r == 0 || e <= (int)num(plot_cell(t, r - 1, c[1]));
        if (first && r > 0)
            fputs("\n", dat);
        if (first) {
            rows++;
            if (bal && len < sizeof(tics) - 80) {
                char lab[96];
                if (groups > 1)
                    snprintf(lab, sizeof(lab), "%.40s g%s", plot_cell(t, r, c[0]),
                             plot_cell(t, r, c[3]));
                else
                    snprintf(lab, sizeof(lab), "%.40s", plot_cell(t, r, c[0]));
                for (char *s = lab; *s; s++)
                    if (*s == '"' || *s == '\\')
                        *s = ' ';
                len += (size_t)snprintf(tics + len, sizeof(tics) - len, "%s\"%s\" %d",
                                        rows > 1 ? ", " : "", lab, rows - 1);
            }
        }
        experts = e + 1 > experts ? e + 1 : experts;
        double y = bal ? rows - 1 : num(plot_cell(t, r, c[0]));
        fprintf(dat, "%d %.12g %.12g\n", e, y, num(plot_cell(t, r, c[2])));
    }
    snprintf(tics + len, sizeof(tics) - len, ")");
    head_vars(vars, t, bal ? "expert load / mean per balancing policy (moesim balance, "
                             "last iteration)" : "expert load / mean per MoE layer", NULL);
    gp_var(vars, "ylabel", bal ? (groups > 1 ? "policy, EP group" : "policy") : "MoE layer");
    gp_var(vars, "ytics_cmd", bal && rows <= 64 ? tics : "");
    fprintf(vars, "experts = %d\nrows = %d\npanels = 0\n", experts, rows);
    return done(dat, vars);
}

/* ---- Gantt ---- */

static int gantt_data(const struct plot_table *t, FILE *dat, FILE *vars, char *err, size_t n)
{
    static const char *const names[] = { "lane", "stage", "ep_group", "stream", "op", "t0_s",
                                         "t1_s" };
    /* the categories, as drawn: compute ops by F / B / W, then communication, then sends */
    static const char *const cat_title[] = { "F (forward)", "B (backward)",
                                             "W (weight gradients)",
                                             "comm (all-to-all, DP reduce)",
                                             "send (pipeline p2p)" };
    int c[7];
    if (need_cols(t, names, c, 7, err, n))
        return -EINVAL;
    if (t->nrows == 0)
        return fail(err, n, -EINVAL, "%s: no sub-ops", t->path);
    double T = 0;
    int lanes = 0, groups = 1;
    for (long r = 0; r < t->nrows; r++) {
        T = fmax(T, num(plot_cell(t, r, c[6])));
        lanes = (int)fmax(lanes, num(plot_cell(t, r, c[0])) + 1);
        groups = (int)fmax(groups, num(plot_cell(t, r, c[2])) + 1);
    }
    const char *un;
    double sc = time_unit(T, &un);
    int ncat = 0;
    char cats[16] = "";
    for (int k = 0; k < 5; k++) {
        bool any = false;
        for (long r = 0; r < t->nrows; r++) {
            const char *st = plot_cell(t, r, c[3]), *op = plot_cell(t, r, c[4]);
            int cat = !strcmp(st, "comm") ? 3 : !strcmp(st, "p2p") ? 4
                      : !strcmp(op, "F") ? 0 : !strcmp(op, "B") ? 1 : 2;
            if (cat != k)
                continue;
            if (!any)
                dat_title(dat, cat_title[k]);
            any = true;
            double t0 = num(plot_cell(t, r, c[5])) * sc, t1 = num(plot_cell(t, r, c[6])) * sc;
            double lane = num(plot_cell(t, r, c[0]));
            /* compute above the lane's line, communication and sends below */
            double y = k < 3 ? lane - 0.2 : lane + 0.2, h = k == 4 ? 0.06 : 0.17;
            fprintf(dat, "%.12g %.12g %.12g %.12g\n", (t0 + t1) / 2, y, (t1 - t0) / 2, h);
        }
        if (any) {
            fputs("\n\n", dat);
            size_t at = strlen(cats);
            snprintf(cats + at, sizeof(cats) - at, "%s%d", ncat++ ? " " : "", k);
        }
    }
    char tics[4096];
    size_t len = (size_t)snprintf(tics, sizeof(tics), "set ytics (");
    for (int l = 0; l < lanes && len < sizeof(tics) - 64; l++)
        len += groups > 1
                   ? (size_t)snprintf(tics + len, sizeof(tics) - len, "%s\"stage %d, EP %d\" %d",
                                      l ? ", " : "", l / groups, l % groups, l)
                   : (size_t)snprintf(tics + len, sizeof(tics) - len, "%s\"stage %d\" %d",
                                      l ? ", " : "", l, l);
    snprintf(tics + len, sizeof(tics) - len, ")");
    head_vars(vars, t, "pipeline of one training step", un);
    gp_var(vars, "ytics_cmd", lanes <= 64 ? tics : "");
    fprintf(vars, "lanes = %d\nncat = %d\ntmax = %.12g\n", lanes, ncat, T * sc);
    gp_var(vars, "cats", cats);
    return done(dat, vars);
}

int plot_csv_data(const struct plot_req *req, const struct plot_table *t, int nt, FILE *dat,
                  FILE *vars, char *err, size_t n)
{
    if (nt > 1 && req->kind != PLOT_SWEEP)
        return fail(err, n, -EINVAL, "%s: plots one file (several only for sweeps)",
                    plot_kind_name(req->kind));
    switch (req->kind) {
    case PLOT_SWEEP: return sweep_data(req, t, nt, dat, vars, err, n);
    case PLOT_GPU_UTIL: return gpu_util_data(t, dat, vars, err, n);
    case PLOT_LINK_UTIL: return link_util_data(t, dat, vars, err, n);
    case PLOT_EXPERT_LOAD: return expert_data(t, dat, vars, err, n);
    case PLOT_GANTT: return gantt_data(t, dat, vars, err, n);
    default: return fail(err, n, -EINVAL, "no kind");
    }
}
