/* sweep.c: a sweep file's [sweep] section, checked, and its points expanded (sweep.h).
 *
 * The [sweep] lines are read with the INI parser config.c uses (inih), fed one line at a
 * time so that each handler call knows its line; config_load reads the rest of the file.
 * Expansion walks every combination of the axes' values (swax_count, swax_digits) and
 * keeps those the filters pass, each judged on config_read of the point.
 */
#include "sweep.h"
#include "textin.h"

#include <ini.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZIPS_MAX SWEEP_AXES_MAX
#define SETS_ALL (SWEEP_SETS_MAX + SWEEP_AXES_MAX)   /* the caller's and a point's */

/* Reading one sweep file. */
struct reader {
    struct sweep *s;
    const char *path;                 /* borrowed */
    char shown[CFG_PATH_MAX];         /* path, escaped */
    FILE *fp;
    int line;
    int rc;                           /* first error */
    struct cfg_err *err;
    char zip[ZIPS_MAX][CFG_LINE_MAX + 1];  /* the zip lines of all files, as written */
    char zip_where[ZIPS_MAX][CFG_PATH_MAX + 16];
    int nzips;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct cfg_err *err, int rc, const char *fmt, ...)
{
    char raw[CFG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    textin_escape(err->msg, sizeof(err->msg), raw);
    return rc;
}

/* inih reader: one line per call, counted; read errors stop the file. */
static char *read_line(char *str, int num, void *stream)
{
    struct reader *r = stream;
    size_t len;
    char raw[CFG_LINE_MAX + 2];
    if (r->rc || num < 1)
        return NULL;
    int e = textin_getline(r->fp, raw, CFG_LINE_MAX, &len);
    if (e == 0)
        return NULL;
    r->line++;
    if (e < 0) {          /* config_read says what is wrong with the line, at its place */
        r->rc = 1;
        return NULL;
    }
    size_t skip = strspn(raw, " \t");
    snprintf(str, (size_t)num, "%s", raw + skip);
    return str;
}

static int add_file(struct sweep *s, const char *path, struct cfg_err *err)
{
    if (s->nfiles == SWEEP_FILES_MAX)
        return fail(err, -EINVAL, "%s: more than %d sweep and base files", path, SWEEP_FILES_MAX);
    if (!(s->files[s->nfiles] = strdup(path)))
        return fail(err, -ENOMEM, "sweep: out of memory");
    s->nfiles++;
    return 0;
}

/* base = FILE...: relative to the sweep file's folder. */
static int on_base(struct reader *r, char *value, const char *at)
{
    const char *slash = strrchr(r->path, '/');
    int ndir = slash ? (int)(slash - r->path) + 1 : 0;
    char path[CFG_PATH_MAX];
    int n = 0;
    for (char *tok = strtok(value, " \t"); tok; tok = strtok(NULL, " \t"), n++) {
        if (snprintf(path, sizeof(path), "%.*s%s", tok[0] == '/' ? 0 : ndir, r->path, tok) >=
            (int)sizeof(path))
            return fail(r->err, -EINVAL, "%s: base: path too long", at);
        /* said here, at the base line; config_read would name the missing file alone */
        FILE *f;
        char why[128];
        if (textin_open(&f, path, why, sizeof(why)))
            return fail(r->err, -EINVAL, "%s: base: %s: %s", at, tok, why);
        fclose(f);
        int e = add_file(r->s, path, r->err);
        if (e)
            return e;
    }
    return n ? 0 : fail(r->err, -EINVAL, "%s: base: no file named", at);
}

static int on_axis(struct reader *r, const char *name, const char *value, const char *at)
{
    struct sweep *s = r->s;
    char why[160];
    for (int i = 0; i < s->naxes; i++)
        if (!strcmp(s->axis[i].key, name))
            return fail(r->err, -EINVAL, "%s: %s: repeated axis (first at %s)", at, name,
                        s->axis[i].where);
    if (s->naxes == SWEEP_AXES_MAX)
        return fail(r->err, -EINVAL, "%s: %s: more than %d axes", at, name, SWEEP_AXES_MAX);
    if (strlen(name) >= SWEEP_KEY_LEN)
        return fail(r->err, -EINVAL, "%s: %s: not a section.key", at, name);
    struct sweep_axis *a = &s->axis[s->naxes];
    int e = swax_parse(&a->v, value, why, sizeof(why));
    if (e == -EINVAL)
        return fail(r->err, e, "%s: %s: %s", at, name, why);
    if (e)
        return fail(r->err, e, "sweep: out of memory");
    s->naxes++;
    snprintf(a->key, sizeof(a->key), "%s", name);
    snprintf(a->where, sizeof(a->where), "%s", at);
    for (int i = 0; i < a->v.n; i++)          /* the key exists, each value is one of it */
        if ((e = config_check_value(name, a->v.v[i], at, r->err)))
            return e;
    return 0;
}

/* A key operand of a filter names a config key ("unknown key; did you mean" if not). */
static int check_filter_keys(const struct swhere *w, const char *at, struct cfg_err *err)
{
    static const struct config zero;
    char text[8];
    double num;
    int i = 0;
    for (const char *k; (k = swhere_next_key(w, &i));)
        if (config_value(&zero, k, &num, text, sizeof(text)) == -ENOENT) {
            config_check_value(k, "0", at, err);
            return -EINVAL;
        }
    return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct reader *r = user;
    struct sweep *s = r->s;
    char at[CFG_PATH_MAX + 16], why[160];
    if (r->rc || strcmp(section, CFG_SWEEP_SECTION))
        return !r->rc;
    snprintf(at, sizeof(at), "%s:%d", r->shown, r->line);
    char copy[CFG_LINE_MAX + 1];
    snprintf(copy, sizeof(copy), "%s", value);
    if (!strcmp(name, "base")) {
        r->rc = on_base(r, copy, at);
    } else if (!strcmp(name, "zip")) {
        if (r->nzips == ZIPS_MAX)
            r->rc = fail(r->err, -EINVAL, "%s: zip: more than %d zips", at, ZIPS_MAX);
        else {
            snprintf(r->zip[r->nzips], sizeof(r->zip[0]), "%s", value);
            snprintf(r->zip_where[r->nzips++], sizeof(r->zip_where[0]), "%s", at);
        }
    } else if (!strcmp(name, "where")) {
        if (s->nfilters == SWEEP_WHERE_MAX)
            r->rc = fail(r->err, -EINVAL, "%s: where: more than %d filters", at, SWEEP_WHERE_MAX);
        else if (swhere_parse(&s->filter[s->nfilters].w, value, why, sizeof(why)))
            r->rc = fail(r->err, -EINVAL, "%s: where: %s", at, why);
        else if (!(r->rc = check_filter_keys(&s->filter[s->nfilters].w, at, r->err)))
            snprintf(s->filter[s->nfilters++].where, sizeof(s->filter[0].where), "%s", at);
    } else if (strchr(name, '.')) {
        r->rc = on_axis(r, name, value, at);
    } else {
        r->rc = fail(r->err, -EINVAL, "%s: %s: unknown [sweep] key (an axis is section.key = "
                     "values; else zip, where, base)", at, name);
    }
    return !r->rc;
}

/* The [sweep] section of one file. A file that cannot be read or parsed is left to
 * config_read, which says what is wrong with it. */
static int read_sweep(struct reader *r, const char *path)
{
    char why[128];
    r->path = path;
    r->line = 0;
    textin_escape(r->shown, sizeof(r->shown), path);
    if (textin_open(&r->fp, path, why, sizeof(why)))
        return 0;
    ini_parse_stream(read_line, r, on_key, r);
    fclose(r->fp);
    int rc = r->rc == 1 ? 0 : r->rc;
    r->rc = 0;
    return rc;
}

/* zip lines: each names axes, at least two, each in at most one zip, of equal lengths.
 * Then the dims: an axis not zipped, or the first written of its zip, opens one. */
static int make_dims(struct sweep *s, struct reader *r)
{
    int zip_of[SWEEP_AXES_MAX];
    for (int a = 0; a < s->naxes; a++)
        zip_of[a] = -1;
    for (int z = 0; z < r->nzips; z++) {
        int n = 0, first = -1;
        const char *at = r->zip_where[z];
        for (char *k = strtok(r->zip[z], " \t,"); k; k = strtok(NULL, " \t,"), n++) {
            int a = 0;
            while (a < s->naxes && strcmp(s->axis[a].key, k))
                a++;
            if (a == s->naxes)
                return fail(r->err, -EINVAL, "%s: zip: %s: not an axis of this sweep", at, k);
            if (zip_of[a] >= 0)
                return fail(r->err, -EINVAL, "%s: zip: %s: already zipped (at %s)", at, k,
                            r->zip_where[zip_of[a]]);
            if (first >= 0 && s->axis[a].v.n != s->axis[first].v.n)
                return fail(r->err, -EINVAL, "%s: zip: %s: %d values, but %s has %d (zipped "
                            "axes advance together)", at, k, s->axis[a].v.n,
                            s->axis[first].key, s->axis[first].v.n);
            if (first < 0)
                first = a;
            zip_of[a] = z;
        }
        if (n < 2)
            return fail(r->err, -EINVAL, "%s: zip: name two axes or more", at);
    }
    s->ndims = 0;
    for (int a = 0; a < s->naxes; a++) {
        int b = 0;
        while (b < a && (zip_of[a] < 0 || zip_of[b] != zip_of[a]))
            b++;
        if (b < a) {
            s->axis[a].dim = s->axis[b].dim;
        } else {
            s->axis[a].dim = s->ndims;
            s->dim_size[s->ndims++] = s->axis[a].v.n;
        }
    }
    return 0;
}

/* ---- expansion ---- */

/* The sets of the caller, then those of a point (digit: one index per dim). */
struct point_sets {
    const char *v[SETS_ALL];
    char buf[SWEEP_AXES_MAX][SWEEP_SET_LEN];
    int n;
};

static void fill_sets(const struct sweep *s, const int *digit, struct point_sets *ps)
{
    ps->n = 0;
    for (int i = 0; i < s->nsets; i++)
        ps->v[ps->n++] = s->sets[i];
    for (int a = 0; a < s->naxes; a++) {
        snprintf(ps->buf[a], sizeof(ps->buf[a]), "%s=%s", s->axis[a].key,
                 s->axis[a].v.v[digit[s->axis[a].dim]]);
        ps->v[ps->n++] = ps->buf[a];
    }
}

static int lookup(void *arg, const char *name, double *num, char *text, size_t len)
{
    return config_value(arg, name, num, text, len);
}

/* FNV-1a, 64 bits (Fowler, Noll, Vo), over n bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

/* Every key's value of c, one "name=value\n" after another, into the hash. */
static uint64_t hash_config(uint64_t h, const struct config *c)
{
    char name[SWEEP_KEY_LEN], text[CFG_PATH_MAX], line[SWEEP_KEY_LEN + CFG_PATH_MAX + 32];
    double num;
    for (int i = 0; config_key_name(i, name, sizeof(name)); i++) {
        config_value(c, name, &num, text, sizeof(text));
        int n = snprintf(line, sizeof(line), "%s=%.17g/%s\n", name, num, text);
        h = fnv(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    return h;
}

/* The kinds of point; a sweep holds one, as its rows hold that kind's CSV columns. */
enum point_kind { KIND_LAYER, KIND_TRAIN, KIND_SERVE };
static const char *const kind_words[] = { "layer runs (schedule.kind none)", "training steps",
                                          "inference steps (prefill, decode)" };

static enum point_kind kind_of(const struct config *c)
{
    if (config_serving(c))
        return KIND_SERVE;
    return c->schedule.kind != SCHED_NONE ? KIND_TRAIN : KIND_LAYER;
}

/* Whether the combination digit passes the filters, its config read into *c when ps is
 * given (room for its sets; without, the point is the base). 1, 0, or an error. */
static int judge(const struct sweep *s, const int *digit, struct point_sets *ps,
                 struct config *c, struct cfg_err *err)
{
    char why[256];
    if (!ps)
        return 1;
    fill_sets(s, digit, ps);
    int e = config_read(c, (const char *const *)s->files, s->nfiles, ps->v, ps->n, err);
    if (e)
        return e;
    for (int f = 0; f < s->nfilters; f++) {
        int r = swhere_eval(&s->filter[f].w, lookup, c, why, sizeof(why));
        if (r < 0)
            return fail(err, -EINVAL, "%s: where: %s", s->filter[f].where, why);
        if (!r)
            return 0;
    }
    return 1;
}

/* The combinations the filters keep, into s->digit; every point of one kind. Points are
 * read (config_read) only where a filter or the kind's axis needs it. */
static int expand(struct sweep *s, const struct config *base, struct cfg_err *err)
{
    int64_t total = swax_count(s->dim_size, s->ndims);
    int kind_axis = -1, digit[SWEEP_AXES_MAX];
    enum point_kind first_kind = KIND_LAYER;
    if (total < 0)
        return fail(err, -EINVAL, "%s: the axes make more than %d points", s->files[s->nfiles - 1],
                    SWAX_POINTS_MAX);
    for (int a = 0; a < s->naxes; a++)
        if (!strcmp(s->axis[a].key, "schedule.kind"))
            kind_axis = a;
    struct point_sets *ps = NULL;
    struct config *c = NULL;
    bool read = s->nfilters > 0 || kind_axis >= 0;
    if ((read && (!(ps = malloc(sizeof(*ps))) || !(c = malloc(sizeof(*c))))) ||
        !(s->first = malloc(sizeof(*s->first))) ||
        !(s->digit = malloc((size_t)total * (size_t)s->ndims * sizeof(int)))) {
        free(ps);
        free(c);
        return fail(err, -ENOMEM, "sweep: out of memory");
    }
    int r = 0;
    for (int64_t i = 0; i < total; i++) {
        swax_digits(s->dim_size, s->ndims, i, digit);
        if ((r = judge(s, digit, ps, c, err)) < 0)
            break;
        if (!r)
            continue;
        const struct config *pc = read ? c : base;
        if (!s->npoints) {
            first_kind = kind_of(pc);
            *s->first = *pc;
        } else if (kind_of(pc) != first_kind) {
            r = fail(err, -EINVAL, "%s: schedule.kind: the sweep mixes %s and %s; sweep them "
                     "apart", s->axis[kind_axis].where, kind_words[first_kind],
                     kind_words[kind_of(pc)]);
            break;
        }
        memcpy(&s->digit[(size_t)s->npoints++ * s->ndims], digit, (size_t)s->ndims * sizeof(int));
    }
    free(ps);
    free(c);
    if (r < 0)
        return r;
    if (!s->npoints)
        return fail(err, -EINVAL, "%s: where: the filters drop every point",
                    s->nfilters ? s->filter[0].where : s->files[0]);
    s->step = first_kind != KIND_LAYER;
    s->serve = first_kind == KIND_SERVE;
    return 0;
}

static uint64_t hash_points(const struct sweep *s, const struct config *base)
{
    char buf[SWEEP_AXES_MAX][SWEEP_SET_LEN];
    const char *sets[SWEEP_AXES_MAX];
    uint64_t h = fnv(14695981039346656037ull, "moesim sweep 1\n", 15);
    h = hash_config(h, base);
    for (int p = 0; p < s->npoints; p++) {
        int n = sweep_point_sets(s, p, buf, sets);
        for (int a = 0; a < n; a++)
            h = fnv(h, sets[a], strlen(sets[a]) + 1);
        h = fnv(h, "\n", 1);
    }
    return h;
}

int sweep_load(struct sweep *s, const char *const *files, int nfiles,
               const char *const *sets, int nsets, struct cfg_err *err)
{
    struct reader *r = calloc(1, sizeof(*r));
    struct config base;
    int e = 0;
    if (!r)
        return fail(err, -ENOMEM, "sweep: out of memory");
    r->s = s;
    r->err = err;
    s->sets = sets;
    s->nsets = nsets;
    if (nsets > SETS_ALL - SWEEP_AXES_MAX)
        e = fail(err, -EINVAL, "--set: more than %d", SETS_ALL - SWEEP_AXES_MAX);
    for (int i = 0; i < nfiles && !e; i++)
        e = read_sweep(r, files[i]);
    for (int i = 0; i < nfiles && !e; i++)         /* the bases come first */
        e = add_file(s, files[i], err);
    if (!e)
        e = config_read(&base, (const char *const *)s->files, s->nfiles, sets, nsets, err);
    if (!e && !s->naxes)
        e = fail(err, -EINVAL, "%s: no axis in a [sweep] section (section.key = values)",
                 files[0]);
    if (!e)
        e = make_dims(s, r);
    if (!e)
        e = expand(s, &base, err);
    if (!e)
        s->hash = hash_points(s, &base);
    free(r);
    if (e)
        sweep_free(s);
    return e;
}

void sweep_free(struct sweep *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nfiles; i++)
        free(s->files[i]);
    for (int a = 0; a < s->naxes; a++)
        swax_free(&s->axis[a].v);
    free(s->digit);
    free(s->first);
    memset(s, 0, sizeof(*s));
}

const char *sweep_value(const struct sweep *s, int p, int a)
{
    return s->axis[a].v.v[s->digit[(size_t)p * s->ndims + s->axis[a].dim]];
}

int sweep_point_sets(const struct sweep *s, int p, char (*buf)[SWEEP_SET_LEN],
                     const char **sets)
{
    for (int a = 0; a < s->naxes; a++) {
        snprintf(buf[a], SWEEP_SET_LEN, "%s=%s", s->axis[a].key, sweep_value(s, p, a));
        sets[a] = buf[a];
    }
    return s->naxes;
}

int sweep_config(const struct sweep *s, int p, struct config *c, struct cfg_err *err)
{
    struct point_sets *ps = malloc(sizeof(*ps));
    if (!ps)
        return fail(err, -ENOMEM, "sweep: out of memory");
    fill_sets(s, &s->digit[(size_t)p * s->ndims], ps);
    int e = config_load(c, (const char *const *)s->files, s->nfiles, ps->v, ps->n, err);
    free(ps);
    return e;
}
