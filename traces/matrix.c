/* matrix.c: reader and writer of the traffic matrix file (format: matrix.h,
 * traces/FORMAT.md). Lines are read into a fixed buffer (textin_getline), so no input
 * makes the reader allocate more than the matrix itself. */
#include "matrix.h"
#include "textin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MATRIX_FIELDS 3
#define MATRIX_LINE_MAX 4096      /* longest line, bytes, without '\n' or a '\r' before it */

/* One non-blank line; first_line[src * gpus + dst] is the line a pair was given on;
 * *total: the bytes of the lines before, at most MATRIX_TOTAL_MAX. */
static int parse_line(struct traffic *m, char *text, const struct textin_at *at,
                      uint64_t *first_line, uint64_t *total)
{
    char *field[MATRIX_FIELDS + 1];
    int n = textin_split(text, field, MATRIX_FIELDS), src = 0, dst = 0, rc;
    uint64_t bytes = 0;
    size_t i;

    if (n == 0)
        return 0;
    if (n < MATRIX_FIELDS)
        return textin_fail(at, -EINVAL, "expected 'src dst bytes'");
    if (n > MATRIX_FIELDS)
        return textin_fail(at, -EINVAL, "extra field '%.40s' after 'src dst bytes'",
                           field[MATRIX_FIELDS]);
    rc = textin_index(at, field[0], "src", "a GPU id", m->gpus, &src);
    if (!rc)
        rc = textin_index(at, field[1], "dst", "a GPU id", m->gpus, &dst);
    if (!rc)
        rc = textin_count(at, field[2], "bytes", &bytes);
    if (rc)
        return rc;
    i = (size_t)src * (size_t)m->gpus + (size_t)dst;
    if (first_line[i])
        return textin_fail(at, -EINVAL, "pair %d %d given twice (first at line %" PRIu64 ")",
                           src, dst, first_line[i]);
    if (bytes > MATRIX_TOTAL_MAX - *total)
        return textin_fail(at, -EINVAL, "bytes %" PRIu64 " take the total past %llu (2^63)",
                           bytes, MATRIX_TOTAL_MAX);
    *total += bytes;
    first_line[i] = at->line;
    m->bytes[i] = bytes;
    return 0;
}

/* Every line of f into m; first_line as in parse_line. */
static int load_lines(struct traffic *m, FILE *f, uint64_t *first_line, struct textin_at *at)
{
    char text[MATRIX_LINE_MAX + 2];
    size_t len = 0;
    uint64_t total = 0;
    int rc;

    while ((rc = textin_getline(f, text, MATRIX_LINE_MAX, &len)) > 0) {
        at->line++;
        rc = parse_line(m, text, at, first_line, &total);
        if (rc)
            return rc;
    }
    at->line++;
    return rc < 0 ? textin_refusal(at, rc, text, len, MATRIX_LINE_MAX) : 0;
}

int matrix_load(struct traffic *m, const char *path, int gpus, struct traffic_err *err)
{
    struct textin_at at = { path, 0, err->msg, sizeof(err->msg) };
    uint64_t *first_line;
    char why[128];
    FILE *f;
    int rc;

    memset(m, 0, sizeof(*m));
    if (gpus < 1)
        return textin_fail(&at, -EINVAL, "GPU count %d is not positive", gpus);
    if (textin_open(&f, path, why, sizeof(why)))
        return textin_fail(&at, -EINVAL, "%s", why);
    rc = traffic_create(m, gpus);
    if (rc) {
        textin_fail(&at, rc, "%s", strerror(-rc));
        goto out_close;
    }
    first_line = calloc((size_t)gpus * (size_t)gpus, sizeof(*first_line));
    if (!first_line) {
        rc = textin_fail(&at, -ENOMEM, "%s", strerror(ENOMEM));
        goto out_free_m;
    }
    rc = load_lines(m, f, first_line, &at);
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
