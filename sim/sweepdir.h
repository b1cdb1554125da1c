/* sweepdir.h: the output folder of a sweep, which nothing finished is lost from.
 *
 *   DIR/sweep.manifest  what sweep this folder holds: a few "name value" lines (the
 *                       points' count and hash, the seed, ...), written once, atomically
 *   DIR/journal         one line per finished point, "POINT HASH ROW\n" (HASH: 16 hex
 *                       digits of FNV-1a 64 of ROW), appended with one write(2) and
 *                       fsync(2) before the point counts as done
 *   DIR/results.csv     the header and every row in point order, rebuilt from the
 *                       journal when every point is in (ofile.h: temporary + rename)
 * Opening a folder whose manifest differs from the sweep's is refused; a journal line
 * that is torn (a crash mid-write), damaged or a repeat is dropped, and the file cut
 * back to the last sound line before anything is appended. The journal is locked
 * (flock) while open: two sweeps never write one folder.
 */
#ifndef MOESIM_SWEEPDIR_H
#define MOESIM_SWEEPDIR_H

#include <stddef.h>

#define SWDIR_PATH_MAX 1024
#define SWDIR_MANIFEST_MAX 4096

struct swdir {
    char dir[SWDIR_PATH_MAX];
    int fd;                           /* the journal, open for appending; -1: closed */
    int npoints;
    char **row;                       /* npoints: a finished point's row (owned), or NULL */
    int ndone;                        /* rows held */
};

/* Opens (making it and its parents if missing) folder dir for a sweep of npoints points
 * described by manifest (its text; "name value" lines). 0; -EEXIST with why[n] naming
 * the first manifest line that differs; -EBUSY (another sweep holds it); another -errno
 * with why[n] saying what failed on which file. The journal's rows are in d->row. */
int swdir_open(struct swdir *d, const char *dir, int npoints, const char *manifest, char *why,
               size_t n);

/* Appends point p's row (one line, no '\n') to the journal and syncs it; d->row[p] takes a
 * copy. 0 or a negative errno. */
int swdir_append(struct swdir *d, int p, const char *row);

/* Writes DIR/results.csv: header (one line, no '\n'), then the rows in point order; every
 * point must be done. 0 or a negative errno. */
int swdir_results(struct swdir *d, const char *header);

/* "DIR/name" into out[n]; out. */
char *swdir_path(const struct swdir *d, const char *name, char *out, size_t n);

void swdir_close(struct swdir *d);      /* zeroed, failed or open; NULL is a no-op */

#endif
