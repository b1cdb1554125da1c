/* sweepaxes.c: an axis's values from its text; the order points expand in (sweepaxes.h). */
#include "sweepaxes.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends s (n bytes) to v, growing it. 0, -E2BIG (past SWAX_VALUES_MAX or a value past
 * SWAX_VALUE_LEN - 1 bytes), -ENOMEM. */
static int push(struct swax_values *v, int *cap, const char *s, size_t n)
{
    if (v->n == SWAX_VALUES_MAX || n >= SWAX_VALUE_LEN)
        return -E2BIG;
    if (v->n == *cap) {
        int c = *cap ? 2 * *cap : 8;
        void *p = realloc(v->v, (size_t)c * sizeof(*v->v));
        if (!p)
            return -ENOMEM;
        v->v = p;
        *cap = c;
    }
    memcpy(v->v[v->n], s, n);
    v->v[v->n++][n] = '\0';
    return 0;
}

/* s as a whole decimal integer, all of it. */
static bool as_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = x;
    return true;
}

/* s as a finite decimal, all of it. */
static bool as_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x))
        return false;
    *out = x;
    return true;
}

/* The integer range a..b, step s (arithmetic) or factor s (geometric). */
static int range_int(struct swax_values *v, int *cap, long long a, long long b, long long s,
                     bool geo)
{
    char buf[32];
    for (long long x = a; x <= b;) {
        int e = push(v, cap, buf, (size_t)snprintf(buf, sizeof(buf), "%lld", x));
        if (e)
            return e;
        if ((geo && x > LLONG_MAX / s) || (!geo && x > LLONG_MAX - s))
            break;
        x = geo ? x * s : x + s;
    }
    return 0;
}

/* The decimal range: value i is a + i s, or a s^i; b included within 1e-9 |b|. */
static int range_num(struct swax_values *v, int *cap, double a, double b, double s, bool geo)
{
    char buf[40];
    double tol = 1e-9 * fmax(fabs(a), fabs(b));
    for (int i = 0;; i++) {
        double x = geo ? a * pow(s, i) : a + i * s;
        if (x > b + tol)
            return 0;
        if (fabs(x - b) <= tol)
            x = b;
        int e = push(v, cap, buf, (size_t)snprintf(buf, sizeof(buf), "%.12g", x));
        if (e)
            return e;
    }
}

/* One item "A..B[+S|*F]" (dots at the "..") into v. 0, -EINVAL with why, -E2BIG, -ENOMEM. */
static int parse_range(struct swax_values *v, int *cap, char *item, char *dots, char *why,
                       size_t wn)
{
    char *end = dots + 2, *op = strpbrk(end, "+*");
    bool geo = op && *op == '*';
    char sbuf[4] = "1";
    char *step = op ? op + 1 : sbuf;
    *dots = '\0';
    if (op)
        *op = '\0';
    long long ia, ib, is;
    double a, b, s;
    const char *what = NULL;
    if (!as_num(item, &a) || !as_num(end, &b) || !as_num(step, &s))
        what = "want A..B, A..B+STEP or A..B*FACTOR with numbers";
    else if (a > b)
        what = "the start is past the end";
    else if (!geo && s <= 0)
        what = "the step must be more than 0";
    else if (geo && s <= 1)
        what = "the factor must be more than 1";
    else if (geo && a <= 0)
        what = "a geometric range must start above 0";
    if (what) {
        snprintf(why, wn, "bad range '%s..%s%s%s': %s", item, end, op ? (geo ? "*" : "+") : "",
                 op ? step : "", what);
        return -EINVAL;
    }
    if (as_int(item, &ia) && as_int(end, &ib) && as_int(step, &is))
        return range_int(v, cap, ia, ib, is, geo);
    return range_num(v, cap, a, b, s, geo);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int swax_parse(struct swax_values *out, const char *text, char *why, size_t wn)
{
    struct swax_values v = { 0 };
    int cap = 0, e = 0, item = 0;
    char *copy = strdup(text);
    if (!copy)
        return -ENOMEM;
    if (!*trim(copy)) {
        snprintf(why, wn, "empty axis (want values: a,b,c or A..B+STEP or A..B*FACTOR)");
        e = -EINVAL;
    }
    for (char *s = copy, *next; !e && s; s = next) {
        next = strchr(s, ',');
        if (next)
            *next++ = '\0';
        char *it = trim(s), *dots = strstr(it, "..");
        item++;
        if (!*it) {
            snprintf(why, wn, "empty value (item %d)", item);
            e = -EINVAL;
        } else if (dots) {
            e = parse_range(&v, &cap, it, dots, why, wn);
        } else {
            e = push(&v, &cap, it, strlen(it));
        }
        if (e == -E2BIG) {
            snprintf(why, wn, "more than %d values, or a value longer than %d characters "
                     "(item %d)", SWAX_VALUES_MAX, SWAX_VALUE_LEN - 1, item);
            e = -EINVAL;
        }
    }
    free(copy);
    if (e) {
        swax_free(&v);
        return e;
    }
    *out = v;
    return 0;
}

void swax_free(struct swax_values *v)
{
    if (!v)
        return;
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

int64_t swax_count(const int *size, int ndims)
{
    int64_t n = 1;
    for (int d = 0; d < ndims; d++) {
        n *= size[d];
        if (n > SWAX_POINTS_MAX)
            return -E2BIG;
    }
    return n;
}

void swax_digits(const int *size, int ndims, int64_t i, int *digit)
{
    for (int d = ndims - 1; d >= 0; d--) {
        digit[d] = (int)(i % size[d]);
        i /= size[d];
    }
}
