/* matrix.c: reader and writer of the traffic matrix file (format: matrix.h,
 * traces/FORMAT.md). Lines are read into a fixed buffer, so no input makes the reader
 * allocate more than the matrix itself. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* strtok_r, fdopen, O_CLOEXEC */
#endif
#include "matrix.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MATRIX_FIELDS 3
#define MATRIX_BLANKS " \t"        /* field separators; no other control character passes */
#define MATRIX_SHOW 40            /* characters of an offending field quoted in a message */
#define MATRIX_LINE_MAX 4096      /* longest line, bytes, without '\n' or a '\r' before it */

#ifdef __GNUC__
#define MATRIX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MATRIX_PRINTF(f, a)
#endif

/* Copies s into out[n] (n >= 1) with each control byte (< 0x20, 0x7f) written as \n, \r,
 * \t or \xNN, so that a message stays on one line whatever path it names. Stops before
 * an escape that does not fit whole. */
static void escape(char *out, size_t n, const char *s)
{
    size_t o = 0;

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8] = { (char)ch };
        size_t k;

        if (ch == '\n' || ch == '\r' || ch == '\t')
            snprintf(esc, sizeof(esc), "\\%c", ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't');
        else if (ch < 0x20 || ch == 0x7f)
            snprintf(esc, sizeof(esc), "\\x%02x", ch);
        k = strlen(esc);
        if (o + k >= n)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    out[o] = '\0';
}

/* err->msg = "path:line: <fmt>" (line 0: "path: <fmt>"), escaped; returns rc. */
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
    escape(err->msg, sizeof(err->msg), raw);
    return rc;
}

/* Opens path for reading, only if it is a regular file: /dev/zero would be one endless
 * line, a FIFO would block. O_NONBLOCK lets open return on a FIFO; it is cleared after.
 * NULL on failure, with err set ("cannot open: <strerror>" or "not a regular file"). */
static FILE *open_regular(const char *path, struct traffic_err *err)
{
    struct stat st;
    FILE *f = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), fl;
    bool stat_ok;

    if (fd < 0) {
        fail(err, -EINVAL, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    stat_ok = fstat(fd, &st) == 0;
    if (stat_ok && !S_ISREG(st.st_mode))
        fail(err, -EINVAL, path, 0, "not a regular file");
    else if (!stat_ok || (fl = fcntl(fd, F_GETFL)) < 0 ||
             fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || !(f = fdopen(fd, "r")))
        fail(err, -EINVAL, path, 0, "cannot open: %s", strerror(errno));
    if (!f)
        close(fd);
    return f;
}

/* Reads one line of f into text[MATRIX_LINE_MAX + 2] without its '\n' and a '\r' that
 * ends it, NUL-terminated; the line may hold NULs, *len counts them. Never reads more
 * than MATRIX_LINE_MAX + 2 bytes of a line. 1: a line; 0: end of file; -E2BIG: longer
 * than MATRIX_LINE_MAX; -errno: read error. getc_unlocked: f is matrix_load's own stream,
 * and the locking getc costs a quarter more time on a 20 MB file. */
static int read_line(FILE *f, char *text, size_t *len)
{
    size_t n = 0;
    int ch;

    while ((ch = getc_unlocked(f)) != EOF && ch != '\n') {
        if (n > MATRIX_LINE_MAX)      /* kept: MATRIX_LINE_MAX and a '\r'; one more is too many */
            return -E2BIG;
        text[n++] = (char)ch;
    }
    if (ch == EOF && ferror(f))
        return errno ? -errno : -EIO;
    if (ch == EOF && n == 0)
        return 0;
    if (n && text[n - 1] == '\r')
        n--;
    text[n] = '\0';
    *len = n;
    return n > MATRIX_LINE_MAX ? -E2BIG : 1;
}

/* Tab is the one control character a line may hold (a '\r' before the '\n' is gone):
 * a NUL would end the text early, '\v' '\f' and a stray '\r' are not separators. */
static int check_line(const char *text, size_t len, uint64_t line, const char *path,
                      struct traffic_err *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(err, -EINVAL, path, line, "control character 0x%02x in line", ch);
    }
    return 0;
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

    while ((rc = read_line(f, text, &len)) > 0) {
        rc = check_line(text, len, ++line, path, err);
        if (!rc)
            rc = parse_line(m, text, line, first_line, path, err);
        if (rc)
            return rc;
    }
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
    FILE *f;
    int rc;

    memset(m, 0, sizeof(*m));
    if (gpus < 1)
        return fail(err, -EINVAL, path, 0, "GPU count %d is not positive", gpus);
    f = open_regular(path, err);
    if (!f)
        return -EINVAL;
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
