/* ofile.c: outputs through a mkstemp temporary and rename(2), or in place. */
#include "ofile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINK_HOPS_MAX 40               /* symlinks followed before -ELOOP (Linux's limit) */
static const char tmp_suffix[] = ".tmp.XXXXXX";

/* ---- the temporaries a signal must remove (see ofile.h for why this is global) ---- */

static char reg_tmp[OFILE_MAX_OPEN][OFILE_PATH_MAX + 16];
static volatile sig_atomic_t reg_live[OFILE_MAX_OPEN];

/* The signals that remove the temporaries. To catch another, add it here. */
static const int caught[] = { SIGINT, SIGTERM, SIGHUP };
#define NCAUGHT (int)(sizeof(caught) / sizeof(caught[0]))

static void block_caught(sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    for (int i = 0; i < NCAUGHT; i++)
        sigaddset(&s, caught[i]);
    sigprocmask(SIG_BLOCK, &s, old);
}

static void unblock_caught(const sigset_t *old)
{
    sigprocmask(SIG_SETMASK, old, NULL);
}

/* Only async-signal-safe calls: unlink, raise. SA_RESETHAND restored the default
 * action, so the raised signal kills the process as soon as the handler returns. */
static void on_signal(int sig)
{
    int saved = errno;
    for (int i = 0; i < OFILE_MAX_OPEN; i++)
        if (reg_live[i])
            unlink(reg_tmp[i]);
    raise(sig);
    errno = saved;
}

int ofile_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < NCAUGHT; i++)
        sigaddset(&sa.sa_mask, caught[i]);
    for (int i = 0; i < NCAUGHT; i++) {
        struct sigaction old;
        if (sigaction(caught[i], NULL, &old) != 0)
            return -errno;
        if (old.sa_handler == SIG_IGN)
            continue;
        if (sigaction(caught[i], &sa, NULL) != 0)
            return -errno;
    }
    return 0;
}

/* ---- where a path leads ---- */

/* dst = src, or -ENAMETOOLONG. */
static int copy_path(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= OFILE_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Splits path into its folder ("." when it has no '/', "/" for the root) and name. */
static int split(const char *path, char *dir, const char **leaf)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
        *leaf = path;
        return 0;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    *leaf = slash + 1;
    return strlen(*leaf) > OFILE_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Follows the chain of symlinks from path to the name that is finally written: the
 * first one that is not a symlink, or does not exist. 0 or a negative errno. */
static int follow_links(const char *path, char *out)
{
    char link[OFILE_PATH_MAX], dir[OFILE_PATH_MAX];
    int e = copy_path(out, path);
    for (int hops = 0; !e; hops++) {
        struct stat st;
        if (lstat(out, &st) != 0)
            return errno == ENOENT ? 0 : -errno;
        if (!S_ISLNK(st.st_mode))
            return 0;
        if (hops == LINK_HOPS_MAX)
            return -ELOOP;
        ssize_t n = readlink(out, link, sizeof(link));
        if (n < 0)
            return -errno;
        if ((size_t)n >= sizeof(link))
            return -ENAMETOOLONG;
        link[n] = '\0';
        const char *leaf;
        if (link[0] == '/' || !strchr(out, '/')) {
            e = copy_path(out, link);          /* absolute, or relative to "." */
            continue;
        }
        split(out, dir, &leaf);
        if (strlen(dir) + 1 + (size_t)n >= OFILE_PATH_MAX)
            return -ENAMETOOLONG;
        strcat(strcat(strcpy(out, dir), "/"), link);
    }
    return e;
}

/* The identity of target, which lstat says does not exist: its folder's plus its name.
 * -ENOENT for a missing folder (or no name: "dir/"), -ENOTDIR when it is no folder. */
static int id_of_new(const char *target, struct ofile_id *id, char *dir)
{
    const char *leaf;
    int e = split(target, dir, &leaf);
    if (e)
        return e;
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if (!leaf[0])
        return -ENOENT;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    strcpy(id->leaf, leaf);
    return 0;
}

static bool is_stdout(const struct stat *st)
{
    struct stat so;
    return fstat(STDOUT_FILENO, &so) == 0 && so.st_dev == st->st_dev && so.st_ino == st->st_ino;
}

int ofile_identify(const char *path, struct ofile_id *id)
{
    char target[OFILE_PATH_MAX], dir[OFILE_PATH_MAX];
    struct stat st;
    if (!path || !path[0] || !id)
        return -EINVAL;
    if (strlen(path) >= OFILE_PATH_MAX)
        return -ENAMETOOLONG;
    memset(id, 0, sizeof(*id));
    if (!strcmp(path, "-")) {
        if (fstat(STDOUT_FILENO, &st) != 0)
            return -errno;
    } else if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return -errno;
        int e = follow_links(path, target);
        return e ? e : id_of_new(target, id, dir);
    }
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    return 0;
}

bool ofile_same(const struct ofile_id *a, const struct ofile_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && !strcmp(a->leaf, b->leaf);
}

/* The mode a new file gets: 0666 less the umask (read by setting it and back). */
static mode_t new_file_mode(void)
{
    mode_t mask = umask(0);
    umask(mask);
    return 0666 & ~mask;
}

/* ofile_probe's checks of an OFILE_REPLACE target: the file, if it exists, and its
 * folder must be writable. */
static int probe_replace(struct ofile *o, const struct stat *st)
{
    char dir[OFILE_PATH_MAX];
    const char *leaf;
    int e = follow_links(o->path, o->target);
    if (e)
        return e;
    if (!st) {
        if ((e = id_of_new(o->target, &o->id, dir)))
            return e;
        o->mode = new_file_mode();
    } else {
        if ((e = split(o->target, dir, &leaf)))
            return e;
        o->mode = st->st_mode & 07777;
        o->uid = st->st_uid;
        o->gid = st->st_gid;
        o->replaces = true;
        if (access(o->target, W_OK) != 0)     /* a read-only file is not replaced either */
            return -errno;
    }
    return access(dir, W_OK | X_OK) == 0 ? 0 : -errno;
}

int ofile_probe(struct ofile *o, const char *path)
{
    if (!o)
        return -EINVAL;
    memset(o, 0, sizeof(*o));
    o->slot = -1;
    if (!path || !path[0])
        return -EINVAL;
    int e = copy_path(o->path, path);
    if (e)
        return e;
    struct stat st;
    if (!strcmp(path, "-")) {
        if (fstat(STDOUT_FILENO, &st) != 0)
            return -errno;
        o->kind = OFILE_STDOUT;
    } else if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return -errno;
        o->kind = OFILE_REPLACE;
        return probe_replace(o, NULL);
    } else if (S_ISDIR(st.st_mode)) {
        return -EISDIR;
    } else if (is_stdout(&st)) {
        o->kind = OFILE_STDOUT;
    } else if (S_ISREG(st.st_mode)) {
        o->kind = OFILE_REPLACE;
        if ((e = probe_replace(o, &st)))
            return e;
    } else {
        o->kind = OFILE_IN_PLACE;
        strcpy(o->target, path);
        if (access(path, W_OK) != 0)
            return -errno;
    }
    o->id.dev = st.st_dev;
    o->id.ino = st.st_ino;
    return 0;
}

/* ---- writing ---- */

/* "DIR/NAME.tmp.XXXXXX" into o->tmp, NAME shortened so that the name fits. */
static int tmp_template(struct ofile *o)
{
    char dir[OFILE_PATH_MAX];
    const char *leaf;
    int e = split(o->target, dir, &leaf);
    if (e)
        return e;
    size_t room = OFILE_NAME_MAX - (sizeof(tmp_suffix) - 1), n = strlen(leaf);
    if (n > room)
        n = room;
    if (strlen(dir) + 1 + n + sizeof(tmp_suffix) > sizeof(o->tmp))
        return -ENAMETOOLONG;
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    int len = snprintf(o->tmp, sizeof(o->tmp), "%s%s%.*s%s", dir, sep, (int)n, leaf, tmp_suffix);
    return len < 0 ? -EINVAL : 0;
}

/* Creates the temporary and enters it in the signal table, with the signals blocked so
 * that none falls between the two. The fd, or a negative errno. */
static int create_tmp(struct ofile *o)
{
    int slot = 0;
    while (slot < OFILE_MAX_OPEN && reg_live[slot])
        slot++;
    if (slot == OFILE_MAX_OPEN)
        return -EMFILE;
    int e = tmp_template(o);
    if (e)
        return e;
    sigset_t old;
    block_caught(&old);
    int fd = mkstemp(o->tmp);
    e = errno;
    if (fd >= 0) {
        strcpy(reg_tmp[slot], o->tmp);
        atomic_signal_fence(memory_order_seq_cst);
        reg_live[slot] = 1;
        o->slot = slot;
    }
    unblock_caught(&old);
    return fd >= 0 ? fd : -e;
}

/* Removes the temporary (unless it was renamed) and its table entry. */
static void retire_tmp(struct ofile *o, bool renamed)
{
    sigset_t old;
    block_caught(&old);
    if (!renamed)
        unlink(o->tmp);
    if (o->slot >= 0)
        reg_live[o->slot] = 0;
    unblock_caught(&old);
    o->slot = -1;
    o->tmp[0] = '\0';
}

static int open_replace(struct ofile *o)
{
    int fd = create_tmp(o);
    if (fd < 0)
        return fd;
    int e = 0;
    /* chown first: it clears set-user-ID bits that fchmod then puts back */
    if (o->replaces && (o->uid != geteuid() || o->gid != getegid()))
        (void)!fchown(fd, o->uid, o->gid);     /* only root may give a file away */
    if (fchmod(fd, o->mode) != 0 || !(o->f = fdopen(fd, "w"))) {
        e = -errno;
        close(fd);
        retire_tmp(o, false);
    }
    return e;
}

static int open_in_place(struct ofile *o)
{
    int fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? -errno : 0;
    if (!e && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
        e = -EAGAIN;                   /* replaced by a file since the probe: not in place */
    if (!e && !(o->f = fdopen(fd, "w")))
        e = -errno;
    if (e)
        close(fd);
    return e;
}

int ofile_open(struct ofile *o, const char *path)
{
    int e = ofile_probe(o, path);
    if (!e) {
        switch (o->kind) {
        case OFILE_STDOUT: o->f = stdout; break;
        case OFILE_IN_PLACE: e = open_in_place(o); break;
        case OFILE_REPLACE: e = open_replace(o); break;
        }
    }
    if (e && o)
        o->f = NULL;
    return e;
}

int ofile_flush(struct ofile *o)
{
    if (!o || !o->f)
        return -EBADF;
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        return errno ? -errno : -EIO;
    return 0;
}

int ofile_commit(struct ofile *o)
{
    if (!o || !o->f)
        return -EBADF;
    int e = ofile_flush(o);
    if (o->kind != OFILE_STDOUT) {
        errno = 0;
        if (fclose(o->f) != 0 && !e)
            e = errno ? -errno : -EIO;
    }
    o->f = NULL;
    if (o->kind != OFILE_REPLACE)
        return e;
    if (!e && rename(o->tmp, o->target) != 0)
        e = -errno;
    retire_tmp(o, !e);
    return e;
}

void ofile_abort(struct ofile *o)
{
    if (!o || !o->f)
        return;
    if (o->kind != OFILE_STDOUT)
        fclose(o->f);
    o->f = NULL;
    if (o->kind == OFILE_REPLACE)
        retire_tmp(o, false);
}
