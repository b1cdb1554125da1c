/* ofile.h: output files written atomically: write to "path.tmp", rename when complete.
 *
 * A reader of `path` sees either the previous file or the complete new one, never a
 * half-written one: an interrupted run leaves at most "path.tmp" (killed mid-write),
 * a failed one leaves nothing new. rename(2) is atomic against crashes of this
 * process, not against power loss (no fsync: sweeps write many small files).
 *
 *     struct ofile o;
 *     int rc = ofile_open(&o, "out/run.csv");
 *     if (rc < 0) return rc;
 *     fprintf(o.f, ...);                  // write through o.f
 *     if (error) { ofile_abort(&o); return error; }
 *     return ofile_commit(&o);            // closes in every case
 *
 * The struct is the caller's (stack is fine); after commit or abort it is closed and
 * may be opened again. Not safe for two writers of the same path at once.
 */
#ifndef MOESIM_OFILE_H
#define MOESIM_OFILE_H

#include <stdio.h>

#define OFILE_PATH_MAX 1024            /* bytes of path, including the NUL */

struct ofile {
    FILE *f;                           /* open while between open and commit/abort */
    char path[OFILE_PATH_MAX];         /* final name */
    char tmp[OFILE_PATH_MAX + 4];      /* path + ".tmp" */
};

/* Create (truncate) "path.tmp" for writing. 0; -EINVAL (NULL o or path, empty path);
 * -ENAMETOOLONG; or fopen's -errno (-ENOENT for a missing folder, -EACCES, ...).
 * On failure o is left closed (ofile_abort is a no-op on it). */
int ofile_open(struct ofile *o, const char *path);

/* Flush, check for write errors, close, rename tmp to path (replacing it). 0, or a
 * negative errno (-EIO for a write error seen by ferror, else the failing call's),
 * and then the tmp is removed and path is untouched. -EBADF if o is not open. */
int ofile_commit(struct ofile *o);

/* Close and remove the tmp. Safe on a zeroed, failed, committed or aborted struct. */
void ofile_abort(struct ofile *o);

#endif
