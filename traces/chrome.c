/* chrome.c: Chrome Trace Event JSON, streamed straight to a FILE, one event per line. */
#include "chrome.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CHROME_ID_MAX 9007199254740991ull  /* 2^53 - 1: largest exact JavaScript integer */

struct chrome {
    FILE *f;                               /* borrowed */
    uint64_t nevents;                      /* written so far: decides the "," separator */
};

int chrome_open(struct chrome **out, FILE *f)
{
    if (!out || !f)
        return -EINVAL;
    struct chrome *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->f = f;
    fputs("{\"traceEvents\":[\n", f);
    if (ferror(f)) {
        free(c);
        return -EIO;
    }
    *out = c;
    return 0;
}

int chrome_close(struct chrome *c)
{
    if (!c)
        return 0;
    FILE *f = c->f;
    fputs("\n],\n\"displayTimeUnit\":\"ms\"}\n", f);
    int rc = fflush(f) != 0 || ferror(f) ? -EIO : 0;
    free(c);
    return rc;
}

#define CHROME_NS_MAX 0x1p62                /* |time| in ns: 146 years, exact in int64_t */

/* t_s in whole nanoseconds, rounded to nearest (halves away from zero); false when it is
 * not finite or past CHROME_NS_MAX. */
static bool to_ns(double t_s, int64_t *ns)
{
    double x = t_s * 1e9;
    if (!isfinite(x) || fabs(x) > CHROME_NS_MAX)
        return false;
    *ns = (int64_t)llround(x);
    return true;
}

static bool args_ok(const struct chrome_arg *args, size_t n, bool numeric_only)
{
    if (n > 0 && !args)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!args[i].key)
            return false;
        if (args[i].str ? numeric_only : !isfinite(args[i].num))
            return false;
    }
    return true;
}

/* s as a JSON string: '"', '\\' and bytes < 0x20 escaped; runs of other bytes are
 * written with one fwrite. O(strlen(s)). */
static void put_str(FILE *f, const char *s)
{
    putc('"', f);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        fwrite(run, 1, (size_t)(p - run), f);
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else
            fprintf(f, "\\u%04x", ch);
        run = p + 1;
    }
    fputs(run, f);
    putc('"', f);
}

/* A finite number in JSON without an exponent: "%.15g" when that has none (integers
 * below 1e15 exact), else fixed notation with 15 significant digits, trailing zeros
 * dropped (1.5e-05 -> 0.000015; 1e+20 -> 100000000000000000000). */
static void put_num(FILE *f, double v)
{
    char buf[400];
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (!strchr(buf, 'e')) {
        fputs(buf, f);
        return;
    }
    int mag = (int)floor(log10(fabs(v)));
    int dec = mag >= 14 ? 0 : 14 - mag;
    snprintf(buf, sizeof(buf), "%.*f", dec, v);
    char *end = buf + strlen(buf);
    if (strchr(buf, '.')) {
        while (end[-1] == '0')
            *--end = 0;
        if (end[-1] == '.')
            *--end = 0;
    }
    fputs(buf, f);
}

/* ,"args":{"k":v,...} -- nothing when n is 0. */
static void put_args(FILE *f, const struct chrome_arg *args, size_t n)
{
    if (n == 0)
        return;
    fputs(",\"args\":{", f);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            putc(',', f);
        put_str(f, args[i].key);
        putc(':', f);
        if (args[i].str)
            put_str(f, args[i].str);
        else
            put_num(f, args[i].num);
    }
    putc('}', f);
}

/* Separator and the fields every event has: {"ph":"X","pid":3 */
static void put_head(struct chrome *c, char ph, int pid)
{
    if (c->nevents++ > 0)
        fputs(",\n", c->f);
    fprintf(c->f, "{\"ph\":\"%c\",\"pid\":%d", ph, pid);
}

/* ,"ts":1.500 -- whole nanoseconds written as microseconds, in integer arithmetic. */
static void put_time(FILE *f, const char *key, int64_t ns)
{
    uint64_t a = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;
    fprintf(f, ",\"%s\":%s%" PRIu64 ".%03u", key, ns < 0 ? "-" : "", a / 1000,
            (unsigned)(a % 1000));
}

static int put_end(struct chrome *c)
{
    fputs("}", c->f);
    return ferror(c->f) ? -EIO : 0;
}

/* {"ph":"M","pid":p[,"tid":t],"name":"<what>","args":{"<key>":<value>}} */
static int put_meta(struct chrome *c, int pid, const int *tid, const char *what,
                    const struct chrome_arg *arg)
{
    if (!c)
        return -EINVAL;
    if (ferror(c->f))
        return -EIO;
    put_head(c, 'M', pid);
    if (tid)
        fprintf(c->f, ",\"tid\":%d", *tid);
    fputs(",\"name\":", c->f);
    put_str(c->f, what);
    put_args(c->f, arg, 1);
    return put_end(c);
}

int chrome_process_name(struct chrome *c, int pid, const char *name)
{
    if (!name)
        return -EINVAL;
    struct chrome_arg a = { .key = "name", .str = name };
    return put_meta(c, pid, NULL, "process_name", &a);
}

int chrome_process_sort(struct chrome *c, int pid, int sort_index)
{
    struct chrome_arg a = { .key = "sort_index", .num = sort_index };
    return put_meta(c, pid, NULL, "process_sort_index", &a);
}

int chrome_thread_name(struct chrome *c, int pid, int tid, const char *name)
{
    if (!name)
        return -EINVAL;
    struct chrome_arg a = { .key = "name", .str = name };
    return put_meta(c, pid, &tid, "thread_name", &a);
}

int chrome_thread_sort(struct chrome *c, int pid, int tid, int sort_index)
{
    struct chrome_arg a = { .key = "sort_index", .num = sort_index };
    return put_meta(c, pid, &tid, "thread_sort_index", &a);
}

/* ,"cat":"...","name":"..." */
static void put_cat_name(FILE *f, const char *cat, const char *name)
{
    fputs(",\"cat\":", f);
    put_str(f, cat);
    fputs(",\"name\":", f);
    put_str(f, name);
}

int chrome_complete(struct chrome *c, int pid, int tid, const char *cat, const char *name,
                    double t0_s, double t1_s, const struct chrome_arg *args, size_t nargs)
{
    int64_t ns0, ns1;
    if (!c || !cat || !name || !to_ns(t0_s, &ns0) || !to_ns(t1_s, &ns1) || t1_s < t0_s ||
        !args_ok(args, nargs, false))
        return -EINVAL;
    if (ferror(c->f))
        return -EIO;
    put_head(c, 'X', pid);
    fprintf(c->f, ",\"tid\":%d", tid);
    put_cat_name(c->f, cat, name);
    put_time(c->f, "ts", ns0);
    put_time(c->f, "dur", ns1 - ns0);     /* >= 0: rounding keeps the order */
    put_args(c->f, args, nargs);
    return put_end(c);
}

int chrome_async(struct chrome *c, int pid, const char *cat, const char *name, uint64_t id,
                 double t0_s, double t1_s, const struct chrome_arg *args, size_t nargs)
{
    int64_t ns0, ns1;
    if (!c || !cat || !name || id > CHROME_ID_MAX || !to_ns(t0_s, &ns0) || !to_ns(t1_s, &ns1) ||
        t1_s < t0_s || !args_ok(args, nargs, false))
        return -EINVAL;
    if (ferror(c->f))
        return -EIO;
    put_head(c, 'b', pid);
    put_cat_name(c->f, cat, name);
    fprintf(c->f, ",\"id\":%" PRIu64, id);
    put_time(c->f, "ts", ns0);
    put_args(c->f, args, nargs);
    int rc = put_end(c);
    if (rc < 0)
        return rc;
    put_head(c, 'e', pid);
    put_cat_name(c->f, cat, name);
    fprintf(c->f, ",\"id\":%" PRIu64, id);
    put_time(c->f, "ts", ns1);
    return put_end(c);
}

int chrome_counter(struct chrome *c, int pid, const char *name, double t_s,
                   const struct chrome_arg *series, size_t nseries)
{
    int64_t ns;
    if (!c || !name || !to_ns(t_s, &ns) || nseries == 0 || !args_ok(series, nseries, true))
        return -EINVAL;
    if (ferror(c->f))
        return -EIO;
    put_head(c, 'C', pid);
    fputs(",\"name\":", c->f);
    put_str(c->f, name);
    put_time(c->f, "ts", ns);
    put_args(c->f, series, nseries);
    return put_end(c);
}
