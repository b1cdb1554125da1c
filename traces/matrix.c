/* matrix.c: reader and writers of the traffic matrix file, pairs and dense (format:
 * matrix.h, traces/FORMAT.md). Lines are read into one buffer of the longest dense row
 * (textin_getline), so no input makes the reader allocate more than the matrix and
 * that buffer. */
#include "matrix.h"
#include "textin.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MATRIX_FIELDS 3
#define MATRIX_LINE_MAX 4096      /* longest line, bytes, without '\n' or a '\r' before it */

/* Longest dense row: 20 digits and a blank per GPU, and room for a comment. */
static size_t dense_line_max(int gpus)
{
    return MATRIX_LINE_MAX + 21 * (size_t)gpus;
}

enum matrix_format { MATRIX_AUTO, MATRIX_PAIRS, MATRIX_DENSE };

struct load {
    struct matrix *m;
    enum matrix_format fmt;       /* MATRIX_AUTO until the first line with fields */
    int rows;                     /* dense rows read */
    uint64_t total;               /* bytes of the lines before, at most MATRIX_TOTAL_MAX */
    uint64_t *first_line;         /* pairs: [src * gpus + dst], the line a pair was given on */
};

static int add_bytes(struct load *ld, const struct textin_at *at, size_t i, uint64_t bytes)
{
    if (bytes > MATRIX_TOTAL_MAX - ld->total)
        return textin_fail(at, -EINVAL, "bytes %" PRIu64 " take the total past %llu (2^63)",
                           bytes, MATRIX_TOTAL_MAX);
    ld->total += bytes;
    ld->m->bytes[i] = bytes;
    return 0;
}

/* One `src dst bytes` line, split into its n fields. */
static int parse_pair(struct load *ld, char **field, int n, const struct textin_at *at)
{
    struct matrix *m = ld->m;
    int src = 0, dst = 0, rc;
    uint64_t bytes = 0;
    size_t i;

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
    if (ld->first_line[i])
        return textin_fail(at, -EINVAL, "pair %d %d given twice (first at line %" PRIu64 ")",
                           src, dst, ld->first_line[i]);
    rc = add_bytes(ld, at, i, bytes);
    if (!rc)
        ld->first_line[i] = at->line;
    return rc;
}

/* One dense row (the next source GPU), split into its n fields. */
static int parse_row(struct load *ld, char **field, int n, const struct textin_at *at)
{
    const int g = ld->m->gpus;
    int rc = 0;

    if (ld->rows == g)
        return textin_fail(at, -EINVAL, "row %d is past the last GPU (a dense matrix has %d "
                           "rows, one per GPU)", ld->rows + 1, g);
    if (n != g)
        return textin_fail(at, -EINVAL, "expected %d byte counts (one per GPU), got %s%d", g,
                           n > g ? "more than " : "", n > g ? g : n);
    for (int j = 0; j < g && !rc; j++) {
        uint64_t bytes = 0;
        rc = textin_count(at, field[j], "bytes", &bytes);
        if (!rc)
            rc = add_bytes(ld, at, (size_t)ld->rows * (size_t)g + (size_t)j, bytes);
    }
    ld->rows++;
    return rc;
}

/* Every line of f into ld->m. A dense row may be dense_line_max bytes, any other line
 * MATRIX_LINE_MAX (text holds the longer): a line past MATRIX_LINE_MAX is refused as too
 * long unless it is a dense row, or a comment after the first one. */
static int load_lines(struct load *ld, FILE *f, char *text, char **field,
                      struct textin_at *at)
{
    const int g = ld->m->gpus, maxf = g > MATRIX_FIELDS ? g : MATRIX_FIELDS;
    const size_t lmax = dense_line_max(g);
    size_t len = 0;
    int rc;

    while ((rc = textin_getline(f, text, lmax, &len)) != 0) {
        at->line++;
        bool dense = ld->fmt == MATRIX_DENSE;
        if (rc == -E2BIG || (rc == -EILSEQ && len > MATRIX_LINE_MAX && !dense))
            return textin_refusal(at, -E2BIG, text, len, dense ? lmax : MATRIX_LINE_MAX);
        if (rc < 0)
            return textin_refusal(at, rc, text, len, MATRIX_LINE_MAX);
        int n = textin_split(text, field, maxf);
        if (n && ld->fmt == MATRIX_AUTO)
            ld->fmt = n == g && g != MATRIX_FIELDS ? MATRIX_DENSE : MATRIX_PAIRS;
        if (len > MATRIX_LINE_MAX && ld->fmt != MATRIX_DENSE)
            return textin_refusal(at, -E2BIG, text, len, MATRIX_LINE_MAX);
        if (!n)
            continue;
        rc = ld->fmt == MATRIX_DENSE ? parse_row(ld, field, n, at) : parse_pair(ld, field, n, at);
        if (rc)
            return rc;
    }
    if (ld->fmt == MATRIX_DENSE && ld->rows < g) {
        at->line = 0;
        return textin_fail(at, -EINVAL, "%d rows, expected %d (a dense matrix has one row per "
                           "GPU)", ld->rows, g);
    }
    return 0;
}

void matrix_free(struct matrix *m)
{
    free(m->bytes);
    m->bytes = NULL;
    m->gpus = 0;
}

int matrix_load(struct matrix *m, const char *path, int gpus, struct matrix_err *err)
{
    struct textin_at at = { path, 0, err->msg, sizeof(err->msg) };
    struct load ld = { .m = m, .fmt = MATRIX_AUTO };
    char why[128], *text = NULL, **field = NULL;
    FILE *f;
    int rc;

    memset(m, 0, sizeof(*m));
    if (gpus < 1)
        return textin_fail(&at, -EINVAL, "GPU count %d is not positive", gpus);
    if (textin_open(&f, path, why, sizeof(why)))
        return textin_fail(&at, -EINVAL, "%s", why);
    if ((size_t)gpus <= SIZE_MAX / sizeof(*m->bytes) / (size_t)gpus)
        m->bytes = calloc((size_t)gpus * (size_t)gpus, sizeof(*m->bytes));
    if (!m->bytes) {
        rc = textin_fail(&at, -ENOMEM, "%s", strerror(ENOMEM));
        goto out_close;
    }
    m->gpus = gpus;
    ld.first_line = calloc((size_t)gpus * (size_t)gpus, sizeof(*ld.first_line));
    text = malloc(dense_line_max(gpus) + 2);
    field = calloc((size_t)(gpus > MATRIX_FIELDS ? gpus : MATRIX_FIELDS) + 1, sizeof(*field));
    if (!ld.first_line || !text || !field) {
        rc = textin_fail(&at, -ENOMEM, "%s", strerror(ENOMEM));
        goto out_free_m;
    }
    rc = load_lines(&ld, f, text, field, &at);
    if (rc)
        goto out_free_m;
    free(ld.first_line);
    free(text);
    free(field);
    fclose(f);
    return 0;

out_free_m:
    free(ld.first_line);
    free(text);
    free(field);
    matrix_free(m);
out_close:
    fclose(f);
    return rc;
}

int matrix_write(FILE *f, const struct matrix *m)
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

int matrix_write_dense(FILE *f, const struct matrix *m, uint64_t align)
{
    if (align < 1)
        return -EINVAL;
    for (size_t i = 0; i < (size_t)m->gpus * (size_t)m->gpus; i++)
        if (m->bytes[i] > UINT64_MAX - (align - 1))
            return -ERANGE;
    for (int s = 0; s < m->gpus; s++)
        for (int d = 0; d < m->gpus; d++) {
            uint64_t b = m->bytes[(size_t)s * m->gpus + d];
            if (fprintf(f, "%" PRIu64 "%c", (b + align - 1) / align * align,
                        d + 1 < m->gpus ? ' ' : '\n') < 0)
                return -EIO;
        }
    return 0;
}
