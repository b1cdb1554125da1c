/* ofile.h: output files that never destroy what they should not.
 *
 * A regular file, or a name that does not exist yet, is written to a unique temporary
 * file beside it ("NAME.tmp.XXXXXX", mkstemp(3), so never a user's "NAME.tmp") and
 * renamed onto NAME when complete: a reader sees the previous file or the complete new
 * one, and a failed run leaves nothing new. A symlink is followed to the end of its
 * chain: the temporary goes beside the final target and is renamed onto it, so the link
 * stays a link. A new file gets mode 0666 & ~umask; a replaced one keeps its mode (and
 * its owner and group, where the process may set them). Replacing a file breaks hard
 * links to it: its other names keep the old content.
 * Anything that is not a regular file (a FIFO, a character or block device, a socket) is
 * written in place: opened without O_CREAT or O_TRUNC, never renamed over. "-" is
 * standard output, and so is any path naming the file standard output is open on.
 * rename(2) is atomic against crashes of this process, not against power loss (no fsync).
 *
 *     struct ofile o;
 *     int rc = ofile_open(&o, "out/run.csv");
 *     if (rc < 0) return rc;
 *     fprintf(o.f, ...);                  // write through o.f
 *     if (error) { ofile_abort(&o); return error; }
 *     return ofile_commit(&o);            // closes in every case
 *
 * The struct is the caller's (stack is fine); after commit or abort it is closed and may
 * be opened again. Not safe for two writers of the same path at once. Errors are
 * negative errnos, so that strerror(-e) words them.
 *
 * Signals: ofile_catch_signals() makes SIGINT, SIGTERM and SIGHUP remove every temporary
 * file still open before the process dies of the signal. The names live in a small
 * fixed table (OFILE_MAX_OPEN entries), the module's one piece of mutable global state:
 * a signal handler can reach nothing else, and it may only call async-signal-safe
 * functions (unlink, raise). The program is assumed single-threaded: open and commit
 * block those signals while they create or retire a temporary file.
 */
#ifndef MOESIM_OFILE_H
#define MOESIM_OFILE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#define OFILE_PATH_MAX 1024            /* bytes of path, including the NUL */
#define OFILE_NAME_MAX 255             /* bytes of one file name (Linux NAME_MAX) */
#define OFILE_MAX_OPEN 16              /* temporary files open at once */

enum ofile_kind {
    OFILE_REPLACE,                     /* regular file or new name: temporary + rename */
    OFILE_IN_PLACE,                    /* FIFO, device, socket: written as it is */
    OFILE_STDOUT,                      /* "-" or the file standard output is open on */
};

/* Which file a path names, to tell whether two paths are one file: device and inode
 * when it exists; else its folder's device and inode plus the name in the folder. So
 * "x", "./x" and "/abs/x" are one file, and so are two links to it. */
struct ofile_id {
    dev_t dev;
    ino_t ino;
    char leaf[OFILE_NAME_MAX + 1];     /* "" for a file that exists */
};

struct ofile {
    FILE *f;                           /* open between open and commit/abort */
    enum ofile_kind kind;
    struct ofile_id id;
    char path[OFILE_PATH_MAX];         /* as given, for messages */
    char target[OFILE_PATH_MAX];       /* symlinks followed: the file written */
    char tmp[OFILE_PATH_MAX + 16];     /* OFILE_REPLACE while open: the temporary */
    mode_t mode;                       /* OFILE_REPLACE: the mode the file will have */
    uid_t uid;                         /* OFILE_REPLACE of an existing file: its owner */
    gid_t gid;
    bool replaces;                     /* OFILE_REPLACE: the target exists */
    int slot;                          /* its entry in the signal table; -1: none */
};

/* Checks that path can be written and fills o's kind, id and target without opening or
 * creating anything (o->f stays NULL). 0, or: -EINVAL (NULL or empty path); -ENAMETOOLONG;
 * -ENOENT (a missing folder); -ENOTDIR; -EISDIR (a folder); -ELOOP; -EACCES (not
 * writable, or no file can be created in its folder); -EBADF ("-" while standard output
 * is closed); another negative errno of stat, lstat or readlink. */
int ofile_probe(struct ofile *o, const char *path);

/* The identity of any path, existing or not, symlinks followed (for inputs, which need
 * not be writable). 0, or a negative errno as for ofile_probe. */
int ofile_identify(const char *path, struct ofile_id *id);
bool ofile_same(const struct ofile_id *a, const struct ofile_id *b);

/* Probes path again (it may have changed since) and opens it: the temporary for
 * OFILE_REPLACE, the file itself in place, or stdout. 0, or ofile_probe's errors, or
 * -EMFILE (OFILE_MAX_OPEN temporaries already open), or a failing call's -errno.
 * On failure o is left closed (ofile_abort is a no-op on it). */
int ofile_open(struct ofile *o, const char *path);

/* Flushes o->f and checks it for write errors, without closing: 0, or a negative errno
 * (-EIO when ferror has no other word for it). */
int ofile_flush(struct ofile *o);

/* Flush, check for write errors, close (stdout stays open), and for OFILE_REPLACE rename
 * the temporary onto the target. 0, or a negative errno, and then the temporary is
 * removed and the target is untouched. -EBADF if o is not open. */
int ofile_commit(struct ofile *o);

/* Close and remove the temporary. What was written in place stays written. Safe on a
 * zeroed, failed, committed or aborted struct, and on NULL. */
void ofile_abort(struct ofile *o);

/* SIGINT, SIGTERM and SIGHUP: remove the open temporaries, then die of the signal (the
 * shell sees 128 + its number). A signal ignored when the process started stays ignored
 * (nohup, background jobs). 0, or sigaction's -errno. */
int ofile_catch_signals(void);

#endif
