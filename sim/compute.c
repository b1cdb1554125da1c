/* compute.c: roofline times of a model's ops on one GPU, and the expert calibration
 * table; see compute.h. */
#include "compute.h"
#include "routing.h"
#include "textin.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF16_B 2.0                /* bytes per GEMM operand element */
#define TABLE_LINE_MAX 256        /* longest table line, bytes, without '\n' or '\r' */
#define TABLE_FIELDS_MAX 3        /* tokens, fwd_us, bwd_us */
#define TABLE_SHOW 40             /* characters of an offending field quoted in a message */
#define TABLE_TOKENS_MAX 9007199254740992.0  /* 2^53: token counts stay exact as doubles */
/* Longest time of a row: 1e9 us (1000 s) for one expert's GEMMs is beyond any GPU, and
 * keeps a step's sums of expert times (x tokens / row.tokens beyond the last row, x ops,
 * layers and micro-batches) far from overflowing a double. */
#define TABLE_US_MAX 1e9

#ifdef __GNUC__
#define COMPUTE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define COMPUTE_PRINTF(f, a)
#endif

struct compute_row {
    double tokens;
    double fwd_s;
    double bwd_s;                 /* input + weight gradient */
};

struct compute {
    double gemm_peak, gemm_bytes; /* the weight GEMMs' peak (FLOP/s), bytes per operand */
    double peak_flops, hbm_Bps, gemm_eff, half_rows, hbm_eff;
    int sms, comm_sms;
    struct compute_row *rows;     /* calibration table, tokens increasing; owned */
    size_t nrows;                 /* 0: no table */
};

/* err->msg = "<where>: <fmt>" (where is "path:line", "path" or a config key), escaped
 * to one line; returns rc. */
COMPUTE_PRINTF(4, 5)
static int fail(struct cfg_err *err, int rc, const char *where, const char *fmt, ...)
{
    char raw[sizeof(err->msg)];
    int used = snprintf(raw, sizeof(raw), "%s: ", where);
    va_list ap;

    if (used >= 0 && (size_t)used < sizeof(raw)) {
        va_start(ap, fmt);
        vsnprintf(raw + used, sizeof(raw) - (size_t)used, fmt, ap);
        va_end(ap);
    }
    textin_escape(err->msg, sizeof(err->msg), raw);
    return rc;
}

/* ---- the calibration table ----
 * Format (compute.h): '#' comment lines and blank lines anywhere; then the header
 * "tokens,fwd_us" or "tokens,fwd_us,bwd_us"; then rows of as many comma-separated
 * fields, blanks around a field allowed. */

struct table_reader {
    const char *path;
    uint64_t line;
    char where[CFG_PATH_MAX + 32];   /* "path:line" of the current line */
    int nfields;                     /* from the header; 0 before it */
    struct compute_row *rows;
    size_t nrows, cap;
};

static const char *at_line(struct table_reader *r, uint64_t line)
{
    snprintf(r->where, sizeof(r->where), "%s:%" PRIu64, r->path, line);
    return r->where;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    return s;
}

/* Splits text at commas into trimmed fields; counts up to TABLE_FIELDS_MAX + 1. */
static int split_fields(char *text, char **field)
{
    int n = 0;

    for (char *s = text; s && n <= TABLE_FIELDS_MAX; n++) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        field[n] = trim(s);
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

/* Decimal digits only, 1..2^53. */
static bool parse_tokens(const char *s, double *out)
{
    double v = 0;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
        if (v > TABLE_TOKENS_MAX)
            return false;
    }
    *out = v;
    return v > 0;
}

/* A decimal number from 0 to TABLE_US_MAX ("12", "0.5", "1e3"), in microseconds; *out
 * in seconds. No sign in front, no hex, inf or nan. */
static bool parse_us(const char *s, double *out)
{
    char *end;
    double v;

    if (!((*s >= '0' && *s <= '9') || *s == '.') || s[strspn(s, "0123456789.eE+-")])
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v) || v < 0 || v > TABLE_US_MAX)
        return false;
    *out = v * 1e-6;
    return true;
}

static const char *const table_names[TABLE_FIELDS_MAX] = { "tokens", "fwd_us", "bwd_us" };

static int parse_header(struct table_reader *r, char **field, int n, struct cfg_err *err)
{

    if (n >= 2 && n <= TABLE_FIELDS_MAX) {
        int i = 0;
        while (i < n && !strcmp(field[i], table_names[i]))
            i++;
        if (i == n) {
            r->nfields = n;
            return 0;
        }
    }
    return fail(err, -EINVAL, at_line(r, r->line),
                "expected the header 'tokens,fwd_us' or 'tokens,fwd_us,bwd_us'");
}

static int add_row(struct table_reader *r, const struct compute_row *row)
{
    if (r->nrows == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        struct compute_row *rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows)
            return -ENOMEM;
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->nrows++] = *row;
    return 0;
}

static int parse_row(struct table_reader *r, char **field, int n, struct cfg_err *err)
{
    struct compute_row row;
    const char *where = at_line(r, r->line);

    if (n > r->nfields)
        return fail(err, -EINVAL, where, "extra field '%.*s' (the header names %d)",
                    TABLE_SHOW, field[r->nfields], r->nfields);
    if (n < r->nfields)
        return fail(err, -EINVAL, where, "%d fields, the header names %d", n, r->nfields);
    if (!parse_tokens(field[0], &row.tokens))
        return fail(err, -EINVAL, where, "tokens '%.*s' is not a whole number from 1 to 2^53",
                    TABLE_SHOW, field[0]);
    if (r->nrows && row.tokens <= r->rows[r->nrows - 1].tokens)
        return fail(err, -EINVAL, where,
                    "tokens %.0f is not above the row before (%.0f): tokens must increase",
                    row.tokens, r->rows[r->nrows - 1].tokens);
    for (int i = 1; i < n; i++) {
        double *t = i == 1 ? &row.fwd_s : &row.bwd_s;
        if (!parse_us(field[i], t))
            return fail(err, -EINVAL, where, "%s '%.*s' is not a number from 0 to %.0f us",
                        table_names[i], TABLE_SHOW, field[i], TABLE_US_MAX);
    }
    if (n == 2)
        row.bwd_s = 2 * row.fwd_s;   /* input and weight gradient, each as the forward */
    if (add_row(r, &row))
        return fail(err, -ENOMEM, where, "%s", strerror(ENOMEM));
    return 0;
}

static int read_lines(struct table_reader *r, FILE *f, struct cfg_err *err)
{
    char text[TABLE_LINE_MAX + 2], *field[TABLE_FIELDS_MAX + 1];
    size_t len = 0;
    int rc;

    while ((rc = textin_getline(f, text, TABLE_LINE_MAX, &len)) > 0) {
        char *s = trim(text);
        int n;

        r->line++;
        if (!*s || *s == '#')
            continue;
        n = split_fields(s, field);
        rc = r->nfields ? parse_row(r, field, n, err) : parse_header(r, field, n, err);
        if (rc)
            return rc;
    }
    if (rc == -EILSEQ)
        return fail(err, -EINVAL, at_line(r, r->line + 1), "control character 0x%02x in line",
                    (unsigned char)text[textin_clean_len(text, len)]);
    if (rc == -E2BIG)
        return fail(err, -EINVAL, at_line(r, r->line + 1), "line longer than %d characters",
                    TABLE_LINE_MAX);
    if (rc < 0)
        return fail(err, -EIO, r->path, "read error: %s", strerror(-rc));
    if (!r->nfields)
        return fail(err, -EINVAL, at_line(r, r->line + 1),
                    "expected the header 'tokens,fwd_us' or 'tokens,fwd_us,bwd_us', "
                    "found the end of the file");
    if (!r->nrows)
        return fail(err, -EINVAL, at_line(r, r->line + 1),
                    "expected a row after the header, found the end of the file");
    return 0;
}

static int load_table(struct compute *cm, const char *path, struct cfg_err *err)
{
    struct table_reader r = { .path = path };
    char why[128];
    FILE *f;
    int rc;

    if (textin_open(&f, path, why, sizeof(why)))
        return fail(err, -EINVAL, path, "%s", why);
    rc = read_lines(&r, f, err);
    fclose(f);
    if (rc) {
        free(r.rows);
        return rc;
    }
    cm->rows = r.rows;
    cm->nrows = r.nrows;
    return 0;
}

/* ---- the model ---- */

static int check_cluster(const struct config *c, struct cfg_err *err)
{
    const struct cfg_cluster *k = &c->cluster;

    if (!(k->gpu_flops > 0 && isfinite(k->gpu_flops)))
        return fail(err, -EINVAL, "cluster.gpu_tflops_bf16", "must be a positive number");
    if (config_serving(c) && c->serve.gemm_dtype == DTYPE_FP8 &&
        !(k->gpu_flops_fp8 > 0 && isfinite(k->gpu_flops_fp8)))
        return fail(err, -EINVAL, "cluster.gpu_tflops_fp8", "must be a positive number");
    if (!(k->hbm_Bps > 0 && isfinite(k->hbm_Bps)))
        return fail(err, -EINVAL, "cluster.hbm_GBps", "must be a positive number");
    if (!(k->gemm_eff > 0 && k->gemm_eff <= 1))
        return fail(err, -EINVAL, "cluster.gemm_efficiency", "must be in (0, 1]");
    if (!(k->gemm_half_rows >= 0 && isfinite(k->gemm_half_rows)))
        return fail(err, -EINVAL, "cluster.gemm_half_rows", "must be a number >= 0");
    if (!(k->hbm_eff > 0 && k->hbm_eff <= 1))
        return fail(err, -EINVAL, "cluster.hbm_efficiency", "must be in (0, 1]");
    if (k->sms < 1)
        return fail(err, -EINVAL, "cluster.sms", "must be at least 1");
    if (c->schedule.comm_sms < 0 || c->schedule.comm_sms >= k->sms)
        return fail(err, -EINVAL, "schedule.comm_sms", "must be in 0..cluster.sms - 1 (%d)",
                    k->sms - 1);
    return 0;
}

int compute_create(struct compute **out, const struct config *c, struct cfg_err *err)
{
    struct compute *cm;
    int rc;

    *out = NULL;
    rc = check_cluster(c, err);
    if (rc)
        return rc;
    cm = calloc(1, sizeof(*cm));
    if (!cm)
        return fail(err, -ENOMEM, "compute", "%s", strerror(ENOMEM));
    cm->peak_flops = c->cluster.gpu_flops;
    bool fp8 = config_serving(c) && c->serve.gemm_dtype == DTYPE_FP8;
    cm->gemm_peak = fp8 ? c->cluster.gpu_flops_fp8 : c->cluster.gpu_flops;
    cm->gemm_bytes = fp8 ? 1.0 : BF16_B;
    cm->hbm_Bps = c->cluster.hbm_Bps;
    cm->gemm_eff = c->cluster.gemm_eff;
    cm->half_rows = c->cluster.gemm_half_rows;
    cm->hbm_eff = c->cluster.hbm_eff;
    cm->sms = c->cluster.sms;
    cm->comm_sms = c->schedule.comm_sms;
    if (c->calibration.expert_table[0]) {
        rc = load_table(cm, c->calibration.expert_table, err);
        if (rc) {
            free(cm);
            return rc;
        }
    }
    *out = cm;
    return 0;
}

void compute_free(struct compute *cm)
{
    if (!cm)
        return;
    free(cm->rows);
    free(cm);
}

double compute_gemm_eff(const struct compute *cm, double m)
{
    return m > 0 ? cm->gemm_eff * m / (m + cm->half_rows) : 0;
}

/* 2 m n k / (peak eff(m)) written as 2 n k (m + half) / (peak gemm_eff): no 0/0 as m
 * goes to 0 (and m <= 0 is 0 s). */
double compute_gemm_s(const struct compute *cm, double m, double k, double n)
{
    double flops_s, bytes_s;

    if (!(m > 0))
        return 0;
    flops_s = 2 * n * k * (m + cm->half_rows) / (cm->gemm_peak * cm->gemm_eff);
    bytes_s = (m * k + k * n + m * n) * cm->gemm_bytes / (cm->hbm_Bps * cm->hbm_eff);
    return fmax(flops_s, bytes_s);
}

double compute_mem_s(const struct compute *cm, double bytes)
{
    return bytes / (cm->hbm_Bps * cm->hbm_eff);
}

double compute_core_s(const struct compute *cm, double flops)
{
    return flops / (cm->peak_flops * cm->gemm_eff);
}

/* The table's row at or below n, from the first row when n is below it. */
static size_t row_below(const struct compute *cm, double n)
{
    size_t lo = 0, hi = cm->nrows;       /* rows[lo].tokens <= n < rows[hi].tokens */

    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (cm->rows[mid].tokens <= n)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* One routed expert from the table; tokens > 0. */
static struct compute_t table_time(const struct compute *cm, double tokens)
{
    const struct compute_row *r = cm->rows, *last = &cm->rows[cm->nrows - 1];
    struct compute_t t;
    double fwd, bwd, x;

    if (tokens <= r[0].tokens || tokens >= last->tokens) {
        const struct compute_row *near = tokens <= r[0].tokens ? &r[0] : last;
        x = tokens / near->tokens;
        fwd = near->fwd_s * x;
        bwd = near->bwd_s * x;
    } else {
        size_t i = row_below(cm, tokens);
        x = (tokens - r[i].tokens) / (r[i + 1].tokens - r[i].tokens);
        fwd = r[i].fwd_s + (r[i + 1].fwd_s - r[i].fwd_s) * x;
        bwd = r[i].bwd_s + (r[i + 1].bwd_s - r[i].bwd_s) * x;
    }
    t.f_s = fwd;
    t.b_s = bwd / 2;
    t.w_s = bwd / 2;
    return t;
}

struct compute_t compute_op(const struct compute *cm, const struct model *m, enum model_op op,
                            double tokens)
{
    const struct model_opdesc *d = &m->op[op];
    struct compute_t t = { 0, 0, 0 };
    double gemm_s = 0, core_s, mem_s;

    if (!(tokens > 0))
        return t;
    if (op == MODEL_EXPERT && cm->nrows)
        return table_time(cm, tokens);
    for (int i = 0; i < d->ngemm; i++)
        gemm_s += compute_gemm_s(cm, tokens, d->gemm[i].k, d->gemm[i].n);
    core_s = compute_core_s(cm, tokens * d->core_flops_per_token);
    mem_s = compute_mem_s(cm, tokens * d->mem_bytes_per_token);
    t.f_s = gemm_s + core_s + mem_s;
    t.b_s = gemm_s + 2 * core_s + 2 * mem_s;
    t.w_s = gemm_s;
    return t;
}

double compute_share(const struct compute *cm)
{
    return (double)(cm->sms - cm->comm_sms) / cm->sms;
}

double compute_peak_flops(const struct compute *cm)
{
    return cm->peak_flops;
}

void compute_routed_experts(const struct compute *cm, const struct model *m,
                            const struct routing *r, struct compute_t *per_gpu)
{
    int per_slot_gpu = r->nslots / r->ep;
    memset(per_gpu, 0, (size_t)r->gpus * sizeof(*per_gpu));
    for (int g = 0; g < r->gpus / r->ep; g++)
        for (int x = 0; x < r->nslots; x++) {
            struct compute_t t = compute_op(cm, m, MODEL_EXPERT,
                                            (double)r->slot_tokens[(size_t)g * r->nslots + x]);
            struct compute_t *o = &per_gpu[g * r->ep + x / per_slot_gpu];
            o->f_s += t.f_s;
            o->b_s += t.b_s;
            o->w_s += t.w_s;
        }
}
