/* rtrace.c: reader and writer of the routing trace (format: rtrace.h, traces/FORMAT.md).
 * Lines are read into a fixed buffer (textin_getline); repeats are found with one bit per
 * entry, and the line of the first listing is looked up again only when there is one;
 * each (layer, iteration) keeps a running total of its tokens while loading. So a trace
 * costs its counts plus 1/64 of them, and 1/(gpus * experts) of them for the totals. */
#include "rtrace.h"
#include "textin.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define RTRACE_LINE_MAX 4096      /* longest line, bytes, without '\n' or a '\r' before it */
#define HEADER_FIELDS 6
#define ENTRY_FIELDS 5
#define HEADER_SHAPE RTRACE_MAGIC " 1 layers=L iterations=I gpus=G experts=E"
#define ENTRY_SHAPE "layer iteration gpu expert tokens"

/* The dimensions in the order of the header and of an entry's ids. */
static const char *const dim_key[4] = { "layers", "iterations", "gpus", "experts" };
static const char *const id_name[4] = { "layer", "iteration", "gpu", "expert" };
static const char *const id_noun[4] = { "a layer index", "an iteration index", "a GPU id",
                                        "an expert id" };

/* A load in progress. */
struct loader {
    struct rtrace *t;
    FILE *f;
    struct textin_at at;      /* at.line: the line last read */
    uint64_t header_line;     /* 0 until the header is read */
    unsigned char *seen;      /* bit i: entry i listed already */
    uint64_t *total;          /* tokens so far of each (layer, iteration), in index order */
};

int rtrace_create(struct rtrace *t, int layers, int iterations, int gpus, int experts)
{
    const int dim[4] = { layers, iterations, gpus, experts };
    uint64_t n = 1;

    memset(t, 0, sizeof(*t));
    for (int i = 0; i < 4; i++)
        if (dim[i] < 1)
            return -EINVAL;
    for (int i = 0; i < 4; i++) {
        n *= (uint64_t)dim[i];    /* at most 2^28 * (2^31 - 1): no overflow */
        if (n > RTRACE_ENTRIES_MAX)
            return -E2BIG;
    }
    t->tokens = calloc((size_t)n, sizeof(*t->tokens));
    if (!t->tokens)
        return -ENOMEM;
    t->layers = layers;
    t->iterations = iterations;
    t->gpus = gpus;
    t->experts = experts;
    return 0;
}

void rtrace_free(struct rtrace *t)
{
    if (!t)
        return;
    free(t->tokens);
    memset(t, 0, sizeof(*t));
}

uint64_t *rtrace_at(const struct rtrace *t, int layer, int iteration, int gpu)
{
    if (layer < 0 || layer >= t->layers || iteration < 0 || iteration >= t->iterations ||
        gpu < 0 || gpu >= t->gpus)
        return NULL;
    return t->tokens + (((size_t)layer * (size_t)t->iterations + (size_t)iteration) *
                            (size_t)t->gpus + (size_t)gpu) * (size_t)t->experts;
}

/* The header's fields into *ld->t, checked against want_gpus and want_experts. */
static int parse_header(struct loader *ld, char **field, int n, int want_gpus,
                        int want_experts)
{
    const struct textin_at *at = &ld->at;
    int dim[4], rc;

    if (n < HEADER_FIELDS || strcmp(field[0], RTRACE_MAGIC))
        return textin_fail(at, -EINVAL, "expected the header '" HEADER_SHAPE "'");
    if (n > HEADER_FIELDS)
        return textin_fail(at, -EINVAL, "extra field '%.40s' after the header",
                           field[HEADER_FIELDS]);
    if (strcmp(field[1], "1"))
        return textin_fail(at, -EINVAL, "version '%.40s' is not supported (expected 1)",
                           field[1]);
    for (int i = 0; i < 4; i++) {
        const char *f = field[2 + i];
        size_t k = strlen(dim_key[i]);
        uint64_t v;

        if (strncmp(f, dim_key[i], k) || f[k] != '=')
            return textin_fail(at, -EINVAL, "expected '%s=N' in the header, found '%.40s'",
                               dim_key[i], f);
        if (textin_u64(f + k + 1, &v) || v < 1 || v > INT_MAX)
            return textin_fail(at, -EINVAL, "%s '%.40s' is not an integer in 1..%d",
                               dim_key[i], f + k + 1, INT_MAX);
        dim[i] = (int)v;
    }
    if (want_gpus > 0 && dim[2] != want_gpus)
        return textin_fail(at, -EINVAL, "gpus=%d in the header, but %d GPUs expected", dim[2],
                           want_gpus);
    if (want_experts > 0 && dim[3] != want_experts)
        return textin_fail(at, -EINVAL, "experts=%d in the header, but %d experts expected",
                           dim[3], want_experts);
    rc = rtrace_create(ld->t, dim[0], dim[1], dim[2], dim[3]);
    if (rc == -E2BIG)
        return textin_fail(at, -EINVAL, "%d x %d x %d x %d entries (layers x iterations x "
                           "gpus x experts) are more than %d", dim[0], dim[1], dim[2], dim[3],
                           RTRACE_ENTRIES_MAX);
    if (!rc && (!(ld->seen = calloc(((size_t)dim[0] * dim[1] * dim[2] * dim[3] + 7) / 8, 1)) ||
                !(ld->total = calloc((size_t)dim[0] * (size_t)dim[1], sizeof(*ld->total)))))
        rc = -ENOMEM;
    if (rc)
        return textin_fail(at, rc, "%s", strerror(-rc));
    ld->header_line = at->line;
    return 0;
}

/* A line after the header, at *at: 0 when it holds no fields; 1 and the entry's index
 * and count in *i, *tokens; -EINVAL. */
static int parse_entry(const struct loader *ld, const struct textin_at *at, char *text,
                       size_t *i, uint64_t *tokens)
{
    const struct rtrace *t = ld->t;
    const int dim[4] = { t->layers, t->iterations, t->gpus, t->experts };
    char *field[ENTRY_FIELDS + 1];
    int n = textin_split(text, field, ENTRY_FIELDS), id[4], rc = 0;

    if (n == 0)
        return 0;
    if (!strcmp(field[0], RTRACE_MAGIC))
        return textin_fail(at, -EINVAL, "header given twice (first at line %" PRIu64 ")",
                           ld->header_line);
    if (n < ENTRY_FIELDS)
        return textin_fail(at, -EINVAL, "expected '" ENTRY_SHAPE "'");
    if (n > ENTRY_FIELDS)
        return textin_fail(at, -EINVAL, "extra field '%.40s' after '" ENTRY_SHAPE "'",
                           field[ENTRY_FIELDS]);
    for (int k = 0; k < 4 && !rc; k++)
        rc = textin_index(at, field[k], id_name[k], id_noun[k], dim[k], &id[k]);
    if (!rc)
        rc = textin_count(at, field[4], "tokens", tokens);
    if (rc)
        return rc;
    *i = (size_t)(rtrace_at(t, id[0], id[1], id[2]) - t->tokens) + (size_t)id[3];
    return 1;
}

/* Entry i is listed again at ld->at.line: the message, with the line of its first
 * listing, found by reading the file again up to there (each line before parsed, so
 * it parses the same; a file changed meanwhile only loses the "first at"). */
static int duplicate(const struct loader *ld, size_t i)
{
    const struct rtrace *t = ld->t;
    const int dim[4] = { t->layers, t->iterations, t->gpus, t->experts };
    char text[RTRACE_LINE_MAX + 2], scratch[8];
    struct textin_at at = { ld->at.path, 0, scratch, sizeof(scratch) };
    size_t len, j, rest = i;
    uint64_t tokens, first = 0;
    int id[4];

    for (int k = 3; k >= 0; k--) {
        id[k] = (int)(rest % (size_t)dim[k]);
        rest /= (size_t)dim[k];
    }
    if (fseek(ld->f, 0, SEEK_SET) == 0)
        while (!first && at.line + 1 < ld->at.line &&
               textin_getline(ld->f, text, RTRACE_LINE_MAX, &len) > 0)
            if (++at.line > ld->header_line && parse_entry(ld, &at, text, &j, &tokens) == 1 &&
                j == i)
                first = at.line;
    if (!first)
        return textin_fail(&ld->at, -EINVAL, "layer %d iteration %d gpu %d expert %d given "
                           "twice", id[0], id[1], id[2], id[3]);
    return textin_fail(&ld->at, -EINVAL, "layer %d iteration %d gpu %d expert %d given twice "
                       "(first at line %" PRIu64 ")", id[0], id[1], id[2], id[3], first);
}

/* One line, ld->at.line: the header until it is read, then an entry. */
static int parse_line(struct loader *ld, char *text, int want_gpus, int want_experts)
{
    char *field[HEADER_FIELDS + 1];
    uint64_t tokens;
    size_t i;
    int n, rc;

    if (!ld->header_line) {
        n = textin_split(text, field, HEADER_FIELDS);
        return n ? parse_header(ld, field, n, want_gpus, want_experts) : 0;
    }
    rc = parse_entry(ld, &ld->at, text, &i, &tokens);
    if (rc <= 0)
        return rc;
    if (tokens > RTRACE_TOKENS_MAX)
        return textin_fail(&ld->at, -EINVAL, "tokens %" PRIu64 " is more than %llu (2^33)",
                           tokens, RTRACE_TOKENS_MAX);
    if (ld->seen[i >> 3] & (1u << (i & 7)))
        return duplicate(ld, i);
    /* Both addends are at most 2^33: the sum cannot wrap. */
    size_t block = i / ((size_t)ld->t->gpus * (size_t)ld->t->experts);
    if (ld->total[block] + tokens > RTRACE_TOKENS_MAX)
        return textin_fail(&ld->at, -EINVAL, "layer %d iteration %d: tokens add up to more "
                           "than %llu (2^33)", (int)(block / (size_t)ld->t->iterations),
                           (int)(block % (size_t)ld->t->iterations), RTRACE_TOKENS_MAX);
    ld->total[block] += tokens;
    ld->seen[i >> 3] |= (unsigned char)(1u << (i & 7));
    ld->t->tokens[i] = tokens;
    return 0;
}

static int load_lines(struct loader *ld, int want_gpus, int want_experts)
{
    char text[RTRACE_LINE_MAX + 2];
    size_t len = 0;
    int rc;

    while ((rc = textin_getline(ld->f, text, RTRACE_LINE_MAX, &len)) > 0) {
        ld->at.line++;
        rc = parse_line(ld, text, want_gpus, want_experts);
        if (rc)
            return rc;
    }
    ld->at.line++;
    if (rc < 0)
        return textin_refusal(&ld->at, rc, text, len, RTRACE_LINE_MAX);
    if (!ld->header_line)
        return textin_fail(&ld->at, -EINVAL, "expected the header '" HEADER_SHAPE "', "
                           "found the end of the file");
    return 0;
}

int rtrace_load(struct rtrace *t, const char *path, int want_gpus, int want_experts,
                struct rtrace_err *err)
{
    struct loader ld = { t, NULL, { path, 0, err->msg, sizeof(err->msg) }, 0, NULL, NULL };
    char why[128];
    int rc;

    memset(t, 0, sizeof(*t));
    if (textin_open(&ld.f, path, why, sizeof(why)))
        return textin_fail(&ld.at, -EINVAL, "%s", why);
    rc = load_lines(&ld, want_gpus, want_experts);
    free(ld.seen);
    free(ld.total);
    fclose(ld.f);
    if (rc)
        rtrace_free(t);
    return rc;
}

int rtrace_write(FILE *f, const struct rtrace *t)
{
    const uint64_t *c = t->tokens;

    if (!c || t->layers < 1 || t->iterations < 1 || t->gpus < 1 || t->experts < 1)
        return -EINVAL;
    if (fprintf(f, RTRACE_MAGIC " %d layers=%d iterations=%d gpus=%d experts=%d\n"
                "# " ENTRY_SHAPE "\n", RTRACE_VERSION, t->layers, t->iterations, t->gpus,
                t->experts) < 0)
        return -EIO;
    for (int l = 0; l < t->layers; l++)
        for (int it = 0; it < t->iterations; it++)
            for (int g = 0; g < t->gpus; g++)
                for (int e = 0; e < t->experts; e++, c++)
                    if (*c && fprintf(f, "%d %d %d %d %" PRIu64 "\n", l, it, g, e, *c) < 0)
                        return -EIO;
    return ferror(f) ? -EIO : 0;
}
