/* matrix.c: reader and writer of the traffic matrix file (format: matrix.h,
 * traces/FORMAT.md). Lines are read into a fixed buffer (textin_getline), so no input
 * makes the reader allocate more than the matrix itself. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* strtok_r */
#endif
#include "matrix.h"
#include "textin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MATRIX_FIELDS 3
#define MATRIX_BLANKS " \t"        /* field separators; no other control character passes */
#define MATRIX_SHOW 40            /* characters of an offending field quoted in a message */
#define MATRIX_LINE_MAX 4096      /* longest line, bytes, without '\n' or a '\r' before it */

#ifdef __GNUC__
#define MATRIX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MATRIX_PRINTF(f, a)
#endif

/* err->msg = "path:line: <fmt>" (line 0: "path: <fmt>"), escaped so that it stays one
 * line whatever path it names; returns rc. */
MATRIX_PRINTF(5, 6)
static int fail(struct traffic_err *err, int rc, const char *path, uint64_t line,
                const char *fmt, ...)
{
    char raw[sizeof(err->msg)] = "";
    size_t n = sizeof(raw);
    int used;
    va_list ap;

    if (line)
        used = snprintf(raw, n, "%s:%" PRIu64 ": ", path, line);
    else
        used = snprintf(raw, n, "%s: ", path);
    if (used >= 0 && (size_t)used < n) {
        va_start(ap, fmt);
        vsnprintf(raw + used, n - (size_t)used, fmt, ap);
        va_end(ap);
    }
    textin_escape(err->msg, sizeof(err->msg), raw);
    return rc;
}

/* Decimal digits only. 0; -EINVAL: empty or not all digits; -ERANGE: > 2^64 - 1. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    bool overflow = false;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (*s < '0' || *s > '9')
            return -EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        v = v * 10 + d;
    }
    if (overflow)
        return -ERANGE;
    *out = v;
    return 0;
}

/* An optionally signed run of digits: shown bare in messages, anything else quoted. */
static bool looks_integer(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int parse_gpu(const char *s, const char *what, int gpus, int *out,
                     struct traffic_err *err, const char *path, uint64_t line)
{
    uint64_t v;

    if (parse_u64(s, &v) == 0 && v < (uint64_t)gpus) {
        *out = (int)v;
        return 0;
    }
    if (looks_integer(s))
        return fail(err, -EINVAL, path, line, "%s %.*s is not a GPU id (0..%d)",
                    what, MATRIX_SHOW, s, gpus - 1);
    return fail(err, -EINVAL, path, line, "%s '%.*s' is not a GPU id (0..%d)",
                what, MATRIX_SHOW, s, gpus - 1);
}

static int parse_bytes(const char *s, uint64_t *out, struct traffic_err *err,
                       const char *path, uint64_t line)
{
    int rc = parse_u64(s, out);

    if (rc == -ERANGE)
        return fail(err, -EINVAL, path, line, "bytes '%.*s' is larger than %" PRIu64,
                    MATRIX_SHOW, s, UINT64_MAX);
    if (rc)
        return fail(err, -EINVAL, path, line, "bytes '%.*s' is not a non-negative integer",
                    MATRIX_SHOW, s);
    return 0;
}

/* Cuts the comment and splits on blanks; returns the number of fields, counting at
 * most MATRIX_FIELDS + 1 (enough to see an extra one). */
static int split(char *text, char **field)
{
    char *save = NULL, *hash = strchr(text, '#');
    int n = 0;

    if (hash)
        *hash = '\0';
    for (char *f = strtok_r(text, MATRIX_BLANKS, &save); f && n <= MATRIX_FIELDS;
         f = strtok_r(NULL, MATRIX_BLANKS, &save))
        field[n++] = f;
    return n;
}

/* One non-blank line; first_line[src * gpus + dst] is the line a pair was given on. */
static int parse_line(struct traffic *m, char *text, uint64_t line, uint64_t *first_line,
                      const char *path, struct traffic_err *err)
{
    char *field[MATRIX_FIELDS + 1];
    int n = split(text, field), src = 0, dst = 0, rc;
    uint64_t bytes = 0;
    size_t at;

    if (n == 0)
        return 0;
    if (n < MATRIX_FIELDS)
        return fail(err, -EINVAL, path, line, "expected 'src dst bytes'");
    if (n > MATRIX_FIELDS)
        return fail(err, -EINVAL, path, line, "extra field '%.*s' after 'src dst bytes'",
                    MATRIX_SHOW, field[MATRIX_FIELDS]);
    rc = parse_gpu(field[0], "src", m->gpus, &src, err, path, line);
    if (!rc)
        rc = parse_gpu(field[1], "dst", m->gpus, &dst, err, path, line);
    if (!rc)
        rc = parse_bytes(field[2], &bytes, err, path, line);
    if (rc)
        return rc;
    at = (size_t)src * (size_t)m->gpus + (size_t)dst;
    if (first_line[at])
        return fail(err, -EINVAL, path, line, "pair %d %d given twice (first at line %" PRIu64 ")",
                    src, dst, first_line[at]);
    first_line[at] = line;
    m->bytes[at] = bytes;
    return 0;
}

/* Every line of f into m; first_line as in parse_line. */
static int load_lines(struct traffic *m, FILE *f, uint64_t *first_line, const char *path,
                      struct traffic_err *err)
{
    char text[MATRIX_LINE_MAX + 2];
    uint64_t line = 0;
    size_t len = 0;
    int rc;

    while ((rc = textin_getline(f, text, MATRIX_LINE_MAX, &len)) > 0) {
        rc = parse_line(m, text, ++line, first_line, path, err);
        if (rc)
            return rc;
    }
    if (rc == -EILSEQ)
        return fail(err, -EINVAL, path, line + 1, "control character 0x%02x in line",
                    (unsigned char)text[textin_clean_len(text, len)]);
    if (rc == -E2BIG)
        return fail(err, -EINVAL, path, line + 1, "line longer than %d characters",
                    MATRIX_LINE_MAX);
    if (rc < 0)
        return fail(err, -EIO, path, 0, "read error: %s", strerror(-rc));
    return 0;
}

int matrix_load(struct traffic *m, const char *path, int gpus, struct traffic_err *err)
{
    uint64_t *first_line;
    char why[128];
    FILE *f;
    int rc;

    memset(m, 0, sizeof(*m));
    if (gpus < 1)
        return fail(err, -EINVAL, path, 0, "GPU count %d is not positive", gpus);
    if (textin_open(&f, path, why, sizeof(why)))
        return fail(err, -EINVAL, path, 0, "%s", why);
    rc = traffic_create(m, gpus);
    if (rc) {
        fail(err, rc, path, 0, "%s", strerror(-rc));
        goto out_close;
    }
    first_line = calloc((size_t)gpus * (size_t)gpus, sizeof(*first_line));
    if (!first_line) {
        rc = fail(err, -ENOMEM, path, 0, "%s", strerror(ENOMEM));
        goto out_free_m;
    }
    rc = load_lines(m, f, first_line, path, err);
    free(first_line);
    if (rc)
        goto out_free_m;
    fclose(f);
    return 0;

out_free_m:
    traffic_free(m);
out_close:
    fclose(f);
    return rc;
}

int matrix_write(FILE *f, const struct traffic *m)
{
    if (fprintf(f, "# src dst bytes\n") < 0)
        return -EIO;
    for (int s = 0; s < m->gpus; s++)
        for (int d = 0; d < m->gpus; d++) {
            uint64_t b = m->bytes[(size_t)s * m->gpus + d];
            if (b && fprintf(f, "%d %d %" PRIu64 "\n", s, d, b) < 0)
                return -EIO;
        }
    return 0;
}
