/* textin.c: regular files only, bounded lines, no control bytes, escaped echoes; see
 * textin.h. Shared by sim/config.c and traces/matrix.c, whose messages it words. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L     /* fdopen, getc_unlocked, O_CLOEXEC */
#endif
#include "textin.h"

#include <errno.h>
#include <fcntl.h>
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
