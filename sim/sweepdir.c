/* sweepdir.c: a sweep's folder: manifest, journal, results (sweepdir.h). */
#include "sweepdir.h"
#include "ofile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* FNV-1a 64 (Fowler, Noll, Vo) of s. */
static uint64_t row_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

char *swdir_path(const struct swdir *d, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", d->dir, name);
    return out;
}

/* The whole of path into a NUL-terminated buffer (malloc'd) of *len bytes; NULL and errno
 * set on failure (ENOENT: no file). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *b = realloc(buf, cap = 2 * cap + 8192);
            if (!b) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The manifest: written when missing, else the same text or -EEXIST. */
static int check_manifest(struct swdir *d, const char *manifest, char *why, size_t n)
{
    char path[SWDIR_PATH_MAX + 32];
    size_t len;
    swdir_path(d, "sweep.manifest", path, sizeof(path));
    char *old = slurp(path, &len);
    if (!old && errno != ENOENT) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (old) {
        int rc = 0;
        if (strcmp(old, manifest)) {
            const char *a = old, *b = manifest;
            while (*a && *a == *b)       /* the first line that differs */
                a++, b++;
            while (a > old && a[-1] != '\n')
                a--, b--;
            snprintf(why, n, "%s holds another sweep ('%.*s' there, '%.*s' here): give a new "
                     "-o folder, or remove it to start over", d->dir, (int)strcspn(a, "\n"), a,
                     (int)strcspn(b, "\n"), b);
            rc = -EEXIST;
        }
        free(old);
        return rc;
    }
    struct ofile o;
    int e = ofile_open(&o, path);
    if (!e) {
        fputs(manifest, o.f);
        e = ofile_commit(&o);
    }
    if (e)
        snprintf(why, n, "%s: %s", path, strerror(-e));
    return e;
}

/* One journal line s (its '\n' replaced by NUL): its row into d->row. false: unsound. */
static int take_line(struct swdir *d, char *s)
{
    char *end;
    errno = 0;
    long p = strtol(s, &end, 10);
    if (errno || end == s || *end != ' ' || p < 0 || p >= d->npoints || d->row[p])
        return 0;
    uint64_t h = strtoull(end + 1, &end, 16);
    if (*end != ' ' || h != row_hash(end + 1))
        return 0;
    if (!(d->row[p] = strdup(end + 1)))
        return -ENOMEM;
    d->ndone++;
    return 1;
}

/* The journal's sound lines into d->row; the file cut after the last of them. */
static int read_journal(struct swdir *d, const char *path, char *why, size_t n)
{
    size_t len = 0, keep = 0;
    char *buf = slurp(path, &len);
    if (!buf) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return -errno;
    }
    for (size_t at = 0; at < len;) {
        char *nl = memchr(buf + at, '\n', len - at);
        if (!nl)
            break;                          /* torn: the write did not finish */
        *nl = '\0';
        int r = take_line(d, buf + at);
        if (r < 0) {
            free(buf);
            return r;
        }
        at = (size_t)(nl - buf) + 1;
        if (r)
            keep = at;
    }
    free(buf);
    if (keep < len && ftruncate(d->fd, (off_t)keep)) {
        snprintf(why, n, "%s: cannot cut a torn line: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

int swdir_open(struct swdir *d, const char *dir, int npoints, const char *manifest, char *why,
               size_t n)
{
    char path[SWDIR_PATH_MAX + 32];
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    if (snprintf(d->dir, sizeof(d->dir), "%s", dir) >= (int)sizeof(d->dir)) {
        snprintf(why, n, "%s: name too long", dir);
        return -ENAMETOOLONG;
    }
    for (char *s = d->dir + 1;; s++) {          /* the folder and missing parents */
        char c = *s;
        if (c && c != '/')
            continue;
        *s = '\0';
        int e = mkdir(d->dir, 0777) && errno != EEXIST ? errno : 0;
        *s = c;
        if (e) {
            snprintf(why, n, "%s: cannot make the folder: %s", d->dir, strerror(e));
            return -e;
        }
        if (!c)
            break;
    }
    d->npoints = npoints;
    if (!(d->row = calloc((size_t)npoints, sizeof(*d->row))))
        return -ENOMEM;
    swdir_path(d, "journal", path, sizeof(path));
    d->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (d->fd < 0) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(d->fd, LOCK_EX | LOCK_NB)) {
        snprintf(why, n, "%s is in use by another sweep", dir);
        return -EBUSY;
    }
    int e = check_manifest(d, manifest, why, n);
    return e ? e : read_journal(d, path, why, n);
}

int swdir_append(struct swdir *d, int p, const char *row)
{
    size_t len = strlen(row) + 40;
    char *line = malloc(len);
    if (!line)
        return -ENOMEM;
    int n = snprintf(line, len, "%d %016" PRIx64 " %s\n", p, row_hash(row), row);
    ssize_t w = write(d->fd, line, (size_t)n);
    int e = w == n ? 0 : w < 0 ? -errno : -EIO;
    free(line);
    if (!e && fsync(d->fd))
        e = -errno;
    if (!e && !d->row[p]) {
        if (!(d->row[p] = strdup(row)))
            return -ENOMEM;
        d->ndone++;
    }
    return e;
}

int swdir_results(struct swdir *d, const char *header)
{
    char path[SWDIR_PATH_MAX + 32];
    struct ofile o;
    int e = ofile_open(&o, swdir_path(d, "results.csv", path, sizeof(path)));
    if (e)
        return e;
    fprintf(o.f, "%s\n", header);
    for (int p = 0; p < d->npoints; p++)
        fprintf(o.f, "%s\n", d->row[p] ? d->row[p] : "");
    return ofile_commit(&o);
}

void swdir_close(struct swdir *d)
{
    if (!d)
        return;
    if (d->fd >= 0)
        close(d->fd);
    for (int p = 0; d->row && p < d->npoints; p++)
        free(d->row[p]);
    free(d->row);
    memset(d, 0, sizeof(*d));
    d->fd = -1;
}
