/* textin.c: regular files only, bounded lines, no control bytes, escaped echoes, fields
 * of the trace formats; see textin.h. Shared by sim/config.c, sim/compute.c,
 * traces/matrix.c and traces/rtrace.c, whose messages it words. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L     /* fdopen, getc_unlocked, O_CLOEXEC, strtok_r */
#endif
#include "textin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* why = "cannot open: <strerror>" for the call that just failed; returns its -errno. */
static int textin_cannot_open(char *why, size_t n)
{
    int e = errno;
    snprintf(why, n, "cannot open: %s", strerror(e));
    return e ? -e : -EIO;
}

int textin_open(FILE **out, const char *path, char *why, size_t n)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), fl, rc;

    *out = NULL;
    if (fd < 0)
        return textin_cannot_open(why, n);
    if (fstat(fd, &st) < 0) {
        rc = textin_cannot_open(why, n);
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, n, "not a regular file");
        rc = -EINVAL;
        goto out_close;
    }
    if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
        !(*out = fdopen(fd, "r"))) {
        rc = textin_cannot_open(why, n);
        goto out_close;
    }
    return 0;

out_close:
    close(fd);
    return rc;
}

/* Tab is the one control byte a line may hold: inih reads a NUL as the end of the line
 * and \v \f \r as blanks (a line led by one continues the previous key); matrix.c
 * separates fields by spaces and tabs only. */
static bool textin_refused(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

size_t textin_clean_len(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && !textin_refused((unsigned char)s[i]))
        i++;
    return i;
}

/* getc_unlocked: the locking getc costs a quarter more time on a 20 MB matrix file. */
int textin_getline(FILE *fp, char *buf, size_t max, size_t *len)
{
    size_t n = 0;
    int ch;

    while ((ch = getc_unlocked(fp)) != EOF && ch != '\n') {
        if (n > max)                    /* kept: max and a '\r'; one more is too many */
            return -E2BIG;
        buf[n++] = (char)ch;
    }
    if (ch == EOF && ferror(fp))
        return errno && errno != E2BIG && errno != EILSEQ ? -errno : -EIO;
    if (ch == EOF && n == 0)
        return 0;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (n > max)
        return -E2BIG;
    *len = n;
    return textin_clean_len(buf, n) < n ? -EILSEQ : 1;
}

void textin_escape(char *out, size_t n, const char *s)
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

int textin_fail(const struct textin_at *at, int rc, const char *fmt, ...)
{
    char raw[2048] = "";          /* a CFG_PATH_MAX path and any message of the readers */
    int used;
    va_list ap;

    if (at->line)
        used = snprintf(raw, sizeof(raw), "%s:%" PRIu64 ": ", at->path, at->line);
    else
        used = snprintf(raw, sizeof(raw), "%s: ", at->path);
    if (used >= 0 && (size_t)used < sizeof(raw)) {
        va_start(ap, fmt);
        vsnprintf(raw + used, sizeof(raw) - (size_t)used, fmt, ap);
        va_end(ap);
    }
    textin_escape(at->msg, at->n, raw);
    return rc;
}

int textin_refusal(const struct textin_at *at, int rc, const char *buf, size_t len, size_t max)
{
    struct textin_at file = *at;

    if (rc == -EILSEQ)
        return textin_fail(at, -EINVAL, "control character 0x%02x in line",
                           (unsigned char)buf[textin_clean_len(buf, len)]);
    if (rc == -E2BIG)
        return textin_fail(at, -EINVAL, "line longer than %zu characters", max);
    file.line = 0;
    return textin_fail(&file, -EIO, "read error: %s", strerror(-rc));
}

#define TEXTIN_BLANKS " \t"       /* field separators; no other control byte passes getline */
#define TEXTIN_SHOW 40            /* characters of an offending field quoted in a message */

int textin_split(char *text, char **field, int max)
{
    char *save = NULL, *hash = strchr(text, '#');
    int n = 0;

    if (hash)
        *hash = '\0';
    for (char *f = strtok_r(text, TEXTIN_BLANKS, &save); f && n <= max;
         f = strtok_r(NULL, TEXTIN_BLANKS, &save))
        field[n++] = f;
    return n;
}

int textin_u64(const char *s, uint64_t *out)
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
static bool textin_looks_integer(const char *s)
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

int textin_index(const struct textin_at *at, const char *s, const char *name, const char *noun,
                 int count, int *out)
{
    uint64_t v;

    if (textin_u64(s, &v) == 0 && v < (uint64_t)count) {
        *out = (int)v;
        return 0;
    }
    if (textin_looks_integer(s))
        return textin_fail(at, -EINVAL, "%s %.*s is not %s (0..%d)", name, TEXTIN_SHOW, s,
                           noun, count - 1);
    return textin_fail(at, -EINVAL, "%s '%.*s' is not %s (0..%d)", name, TEXTIN_SHOW, s, noun,
                       count - 1);
}

int textin_count(const struct textin_at *at, const char *s, const char *name, uint64_t *out)
{
    int rc = textin_u64(s, out);

    if (rc == -ERANGE)
        return textin_fail(at, -EINVAL, "%s '%.*s' is larger than %" PRIu64, name, TEXTIN_SHOW,
                           s, UINT64_MAX);
    if (rc)
        return textin_fail(at, -EINVAL, "%s '%.*s' is not a non-negative integer", name,
                           TEXTIN_SHOW, s);
    return 0;
}
