/* csv.h: how every CSV that moesim writes spells its fields, so that files from any
 * writer read the same way (RFC 4180 text, '\n' line ends, a header line first).
 *
 * Numbers (doubles): fixed notation, never an exponent; rounded to CSV_DIGITS significant
 * digits, trailing zeros after the point and a bare point dropped: 0.25, 1500,
 * 2529240.51841, 0.000000123. |v| < CSV_ZERO is written 0 (no -0, no 1e-15 residue of a
 * difference of times). A non-finite value is an empty field: a metric that does not
 * exist for this run (NaN), never "nan" or "inf".
 * Integers are written as integers; strings as they are, or in double quotes (a quote
 * doubled) when they hold a comma, a quote, CR or LF.
 *
 * Identifying columns: every run CSV carries model, cluster, experts, top_k, nodes,
 * gpus_per_node, route, distribution, zipf_s, schedule, so that rows of different runs
 * can be told apart once files are put together. A file whose own columns already hold
 * one of these names keeps it there; the others are appended at the end. model,
 * experts, top_k, distribution and zipf_s are empty where there is no model (a plain
 * all-to-all, a traffic matrix), zipf_s also for a distribution without one.
 */
#ifndef MOESIM_CSV_H
#define MOESIM_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define CSV_DIGITS 12         /* significant digits of a number */
#define CSV_ZERO 1e-12        /* |v| below this is written 0 */
#define CSV_NUM_MAX 336       /* room for any number, its sign and the NUL (DBL_MAX: 309 digits) */

/* v as above into buf[size], NUL-terminated. Returns its length (0 for a non-finite v),
 * or -ENOSPC when it does not fit (buf then holds ""). */
int csv_format(char *buf, size_t size, double v);

/* A row being written to f (borrowed): fields are separated as they come. */
struct csv {
    FILE *f;
    int fields;               /* written so far in this row */
};

void csv_begin(struct csv *w, FILE *f);
void csv_num(struct csv *w, double v);
void csv_int(struct csv *w, long long v);
void csv_u64(struct csv *w, uint64_t v);
void csv_str(struct csv *w, const char *s);
/* Ends the row with '\n'; the next field starts a new row. 0, or -EIO once f has an error. */
int csv_end(struct csv *w);

/* The header line: cols (comma-separated names, no newline), then the identifying
 * columns cols does not hold, then '\n'. */
void csv_header(FILE *f, const char *cols);
/* csv_header with the columns `then` (comma-separated, may be NULL) after the identifying
 * ones: a file's columns added since, whose fields follow csv_ident's. */
void csv_header_then(FILE *f, const char *cols, const char *then);
/* The fields of the identifying columns that cols does not hold, for the run of c
 * (borrowed), in the order csv_header wrote them. */
void csv_ident(struct csv *w, const char *cols, const struct config *c);

#endif
