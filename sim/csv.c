/* csv.c: the fields of every moesim CSV; see csv.h. */
#include "csv.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The number is rounded once, by printf's %.*e (correctly rounded in glibc), to
 * CSV_DIGITS digits d1.d2...d12 and an exponent X; those digits are then placed in
 * fixed notation: X >= 0 puts X + 1 of them (zeros padding) before the point, X < 0
 * puts -X - 1 zeros after "0.". Rounding first means 9.9999999999996 becomes 10, and a
 * huge value gets zeros, not the noise digits of its binary expansion. */
int csv_format(char *buf, size_t size, double v)
{
    char e[CSV_DIGITS + 16], digits[CSV_DIGITS + 1];
    size_t n = 0, nd = 0;
    if (size == 0)
        return -ENOSPC;
    buf[0] = 0;
    if (!isfinite(v))
        return 0;
    if (fabs(v) < CSV_ZERO) {
        if (size < 2)
            return -ENOSPC;
        strcpy(buf, "0");
        return 1;
    }
    snprintf(e, sizeof(e), "%.*e", CSV_DIGITS - 1, fabs(v));   /* "d.ddddddddddde+XX" */
    for (const char *p = e; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int x = atoi(strchr(e, 'e') + 1);
    /* sign; x >= 0: x + 1 digits, then a point and the nd - x - 1 others when there are
     * any; x < 0: "0.", -x - 1 zeros and the nd digits */
    size_t need = (v < 0) + (x >= 0 ? ((size_t)x + 1 < nd ? nd + 1 : (size_t)x + 1)
                                    : 2 + (size_t)(-x - 1) + nd);
    if (need + 1 > size)
        return -ENOSPC;
    if (v < 0)
        buf[n++] = '-';
    if (x >= 0) {
        for (int i = 0; i <= x; i++)
            buf[n++] = (size_t)i < nd ? digits[i] : '0';
        if ((size_t)x + 1 < nd) {
            buf[n++] = '.';
            for (size_t i = (size_t)x + 1; i < nd; i++)
                buf[n++] = digits[i];
        }
    } else {
        buf[n++] = '0';
        buf[n++] = '.';
        for (int i = 0; i < -x - 1; i++)
            buf[n++] = '0';
        for (size_t i = 0; i < nd; i++)
            buf[n++] = digits[i];
    }
    buf[n] = 0;
    return (int)n;          /* n == need */
}

void csv_begin(struct csv *w, FILE *f)
{
    w->f = f;
    w->fields = 0;
}

static void sep(struct csv *w)
{
    if (w->fields++ > 0)
        putc(',', w->f);
}

void csv_num(struct csv *w, double v)
{
    char buf[CSV_NUM_MAX];
    sep(w);
    csv_format(buf, sizeof(buf), v);
    fputs(buf, w->f);
}

void csv_int(struct csv *w, long long v)
{
    sep(w);
    fprintf(w->f, "%lld", v);
}

void csv_u64(struct csv *w, uint64_t v)
{
    sep(w);
    fprintf(w->f, "%" PRIu64, v);
}

void csv_str(struct csv *w, const char *s)
{
    sep(w);
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, w->f);
        return;
    }
    putc('"', w->f);
    for (; *s; s++) {
        if (*s == '"')
            putc('"', w->f);
        putc(*s, w->f);
    }
    putc('"', w->f);
}

int csv_end(struct csv *w)
{
    putc('\n', w->f);
    w->fields = 0;
    return ferror(w->f) ? -EIO : 0;
}

/* ---- identifying columns ---- */

enum { ID_MODEL, ID_CLUSTER, ID_EXPERTS, ID_TOP_K, ID_NODES, ID_GPN, ID_ROUTE, ID_DIST,
       ID_ZIPF_S, ID_SCHEDULE, ID_N };
/* In the order they are appended; to add one, add its name here and its field below. */
static const char *const id_names[ID_N] = {
    "model", "cluster", "experts", "top_k", "nodes", "gpus_per_node", "route", "distribution",
    "zipf_s", "schedule",
};

/* Whether the comma-separated list cols holds the column name. */
static bool has_col(const char *cols, const char *name)
{
    size_t k = strlen(name);
    for (const char *p = cols; p; p = strchr(p, ',')) {
        if (*p == ',')
            p++;
        if (!strncmp(p, name, k) && (p[k] == ',' || p[k] == 0))
            return true;
    }
    return false;
}

void csv_header(FILE *f, const char *cols)
{
    csv_header_then(f, cols, NULL);
}

void csv_header_then(FILE *f, const char *cols, const char *then)
{
    fputs(cols, f);
    for (int i = 0; i < ID_N; i++)
        if (!has_col(cols, id_names[i]))
            fprintf(f, ",%s", id_names[i]);
    if (then)
        fprintf(f, ",%s", then);
    putc('\n', f);
}

void csv_ident(struct csv *w, const char *cols, const struct config *c)
{
    bool model = c->schedule.kind != SCHED_NONE || c->traffic.pattern == PATTERN_MOE;
    enum dist_kind d = c->routing.distribution;
    for (int i = 0; i < ID_N; i++) {
        if (has_col(cols, id_names[i]))
            continue;
        switch (i) {
        case ID_MODEL: csv_str(w, model ? c->model.name : ""); break;
        case ID_CLUSTER: csv_str(w, c->cluster.name); break;
        case ID_EXPERTS: model ? csv_int(w, c->model.experts) : csv_str(w, ""); break;
        case ID_TOP_K: model ? csv_int(w, c->model.top_k) : csv_str(w, ""); break;
        case ID_NODES: csv_int(w, c->cluster.nodes); break;
        case ID_GPN: csv_int(w, c->cluster.gpus_per_node); break;
        case ID_ROUTE: csv_str(w, config_route_name(c->cluster.route)); break;
        case ID_DIST: csv_str(w, model ? config_dist_name(d) : ""); break;
        case ID_ZIPF_S:
            csv_num(w, model && (d == DIST_ZIPF || d == DIST_AFFINITY) ? c->routing.zipf_s
                                                                      : NAN);
            break;
        case ID_SCHEDULE: csv_str(w, config_sched_name(c->schedule.kind)); break;
        }
    }
}
