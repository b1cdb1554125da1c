/* test_ofile.c: outputs leave either the complete file or nothing new; they never
 * replace a FIFO, a symlink or a user's NAME.tmp; signals remove the temporaries. */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cu_run.h"
#include "ofile.h"

/* Each test works in its own fresh folder under /tmp, removed at the end. */
struct tdir {
    char dir[64];
    char path[256];
};

static int tdir_make(struct tdir *t, const char *leaf)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_ofile.XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, leaf);
    return 0;
}

/* Names in the folder, "." and ".." left out; -1 when it cannot be read. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The whole content of path into buf (NUL-terminated); its length or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return (long)n;
}

static void test_commit(void)
{
    struct tdir t;
    CU_ASSERT_FATAL(tdir_make(&t, "out.csv") == 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("a,b\n1,2\n", o.f);
    /* Before commit only the tmp exists. */
    CU_ASSERT(!exists(t.path));
    CU_ASSERT(exists(o.tmp));
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT(o.f == NULL);
    /* After: exactly one entry, out.csv, holding the 8 bytes written. */
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);
    char buf[64];
    CU_ASSERT_EQUAL(slurp(t.path, buf, sizeof(buf)), 8);
    CU_ASSERT_STRING_EQUAL(buf, "a,b\n1,2\n");
    /* A second commit replaces the first file whole. */
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("new\n", o.f);
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT_EQUAL(slurp(t.path, buf, sizeof(buf)), 4);
    CU_ASSERT_STRING_EQUAL(buf, "new\n");
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);
    ofile_abort(&o);                          /* after commit: no-op */
    CU_ASSERT(exists(t.path));
    CU_ASSERT_EQUAL(ofile_commit(&o), -EBADF);
    remove(t.path);
    rmdir(t.dir);
}

static void test_abort(void)
{
    struct tdir t;
    CU_ASSERT_FATAL(tdir_make(&t, "out.json") == 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("{\"half\":", o.f);
    ofile_abort(&o);
    CU_ASSERT_EQUAL(count_entries(t.dir), 0);
    ofile_abort(&o);                          /* twice: no-op */
    struct ofile z = { 0 };
    ofile_abort(&z);                          /* zeroed, never opened: no-op */
    ofile_abort(NULL);
    /* An abort keeps an earlier committed file as it was. */
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("old", o.f);
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("partial", o.f);
    ofile_abort(&o);
    char buf[16];
    CU_ASSERT_EQUAL(slurp(t.path, buf, sizeof(buf)), 3);
    CU_ASSERT_STRING_EQUAL(buf, "old");
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);
    remove(t.path);
    rmdir(t.dir);
}

static void test_missing_folder(void)
{
    struct tdir t;
    CU_ASSERT_FATAL(tdir_make(&t, "no/such/dir/out.csv") == 0);
    struct ofile o;
    /* The folder does not exist: open fails with fopen's ENOENT, nothing created. */
    CU_ASSERT_EQUAL(ofile_open(&o, t.path), -ENOENT);
    CU_ASSERT(o.f == NULL);
    ofile_abort(&o);
    CU_ASSERT_EQUAL(count_entries(t.dir), 0);
    /* The folder vanishes between open and commit: rename fails with ENOENT, nothing
     * is left (the tmp went with the folder). */
    char sub[96];
    snprintf(sub, sizeof(sub), "%s/sub", t.dir);
    snprintf(t.path, sizeof(t.path), "%s/out.csv", sub);
    CU_ASSERT_FATAL(mkdir(sub, 0700) == 0);
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("data\n", o.f);
    CU_ASSERT(unlink(o.tmp) == 0);
    CU_ASSERT(rmdir(sub) == 0);
    CU_ASSERT_EQUAL(ofile_commit(&o), -ENOENT);
    CU_ASSERT_EQUAL(count_entries(t.dir), 0);
    rmdir(t.dir);
}

/* The final name becomes a folder after the open: rename(2) of a file onto a folder
 * fails (EISDIR); the temporary is removed and the folder is untouched. */
static void test_commit_fails_cleans_up(void)
{
    struct tdir t;
    CU_ASSERT_FATAL(tdir_make(&t, "taken") == 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("data\n", o.f);
    CU_ASSERT_FATAL(mkdir(t.path, 0700) == 0);
    CU_ASSERT_EQUAL(ofile_commit(&o), -EISDIR);
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);  /* only the folder "taken" */
    CU_ASSERT_EQUAL(count_entries(t.path), 0);
    rmdir(t.path);
    rmdir(t.dir);
}

static void test_bad_args(void)
{
    struct ofile o;
    CU_ASSERT_EQUAL(ofile_open(&o, ""), -EINVAL);
    CU_ASSERT_EQUAL(ofile_open(&o, NULL), -EINVAL);
    CU_ASSERT_EQUAL(ofile_open(NULL, "x"), -EINVAL);
    char longp[OFILE_PATH_MAX + 1];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';          /* 1024 chars: one too many with the NUL */
    CU_ASSERT_EQUAL(ofile_open(&o, longp), -ENAMETOOLONG);
    CU_ASSERT_EQUAL(ofile_commit(NULL), -EBADF);
}

/* Removes every entry of dir (one level of subfolders too), then dir. */
static void tdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (remove(p) != 0 && errno == ENOTEMPTY) {
            tdir_remove(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* path = dir/name ("" when it does not fit); returns path. */
static char *in_dir(char *path, size_t n, const char *dir, const char *name)
{
    if (snprintf(path, n, "%s/%s", dir, name) >= (int)n)
        path[0] = '\0';
    return path;
}

/* Writes text to path through an ofile and commits it. */
static int put(const char *path, const char *text)
{
    struct ofile o;
    int e = ofile_open(&o, path);
    if (e)
        return e;
    fputs(text, o.f);
    return ofile_commit(&o);
}

/* A user's own "out.csv.tmp" is neither used nor removed: the temporary is
 * "out.csv.tmp.XXXXXX", made by mkstemp (O_EXCL), beside out.csv. */
static void test_user_tmp_survives(void)
{
    struct tdir t;
    char mine[300], buf[64];
    CU_ASSERT_FATAL(tdir_make(&t, "out.csv") == 0);
    FILE *f = fopen(in_dir(mine, sizeof(mine), t.dir, "out.csv.tmp"), "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("mine\n", f);
    fclose(f);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    CU_ASSERT_STRING_NOT_EQUAL(o.tmp, mine);
    CU_ASSERT_EQUAL(strncmp(o.tmp, mine, strlen(mine)), 0);   /* "out.csv.tmp" + ".XXXXXX" */
    CU_ASSERT_EQUAL(strlen(o.tmp), strlen(mine) + 7);
    fputs("new\n", o.f);
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT_EQUAL(slurp(mine, buf, sizeof(buf)), 5);
    CU_ASSERT_STRING_EQUAL(buf, "mine\n");
    CU_ASSERT_EQUAL(slurp(t.path, buf, sizeof(buf)), 4);
    CU_ASSERT_EQUAL(count_entries(t.dir), 2);                  /* out.csv, out.csv.tmp */
    tdir_remove(t.dir);
}

/* A symlink stays a link and its target gets the content: a link to an existing file,
 * a chain of two links to a new name (made where the chain ends), a link into another
 * folder (the temporary goes there, beside the target). */
static void test_symlink(void)
{
    struct tdir t;
    char link[300], target[300], a[300], b[300], c[300], sub[300], far[300], buf[64];
    struct stat st;
    CU_ASSERT_FATAL(tdir_make(&t, "x") == 0);
    CU_ASSERT_FATAL(put(in_dir(target, sizeof(target), t.dir, "target.csv"), "old\n") == 0);
    CU_ASSERT_FATAL(symlink("target.csv", in_dir(link, sizeof(link), t.dir, "link.csv")) == 0);
    CU_ASSERT_EQUAL(put(link, "new\n"), 0);
    CU_ASSERT(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT_EQUAL(slurp(target, buf, sizeof(buf)), 4);
    CU_ASSERT_STRING_EQUAL(buf, "new\n");
    CU_ASSERT_EQUAL(count_entries(t.dir), 2);

    /* a -> b -> c, c missing: c is created, a and b stay links */
    CU_ASSERT_FATAL(symlink("b", in_dir(a, sizeof(a), t.dir, "a")) == 0);
    CU_ASSERT_FATAL(symlink("c", in_dir(b, sizeof(b), t.dir, "b")) == 0);
    CU_ASSERT_EQUAL(put(a, "chain\n"), 0);
    CU_ASSERT(lstat(a, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT(lstat(b, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT_EQUAL(slurp(in_dir(c, sizeof(c), t.dir, "c"), buf, sizeof(buf)), 6);
    CU_ASSERT_EQUAL(count_entries(t.dir), 5);

    /* a link to sub/far.csv: relative to the link's folder */
    CU_ASSERT_FATAL(mkdir(in_dir(sub, sizeof(sub), t.dir, "sub"), 0700) == 0);
    CU_ASSERT_FATAL(symlink("sub/far.csv", in_dir(far, sizeof(far), t.dir, "far")) == 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, far) == 0);
    CU_ASSERT_EQUAL(strncmp(o.tmp, sub, strlen(sub)), 0);
    CU_ASSERT_EQUAL(count_entries(sub), 1);                    /* the temporary */
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT(lstat(in_dir(c, sizeof(c), sub, "far.csv"), &st) == 0 && S_ISREG(st.st_mode));
    CU_ASSERT_EQUAL(count_entries(sub), 1);
    CU_ASSERT_EQUAL(count_entries(t.dir), 7);
    tdir_remove(t.dir);
}

/* A FIFO is written in place and is still a FIFO after: this test holds its read end
 * (opened first, non-blocking, so the writer's open does not wait). */
static void test_fifo_in_place(void)
{
    struct tdir t;
    char buf[64];
    struct stat st;
    CU_ASSERT_FATAL(tdir_make(&t, "pipe") == 0);
    CU_ASSERT_FATAL(mkfifo(t.path, 0600) == 0);
    int rd = open(t.path, O_RDONLY | O_NONBLOCK);
    CU_ASSERT_FATAL(rd >= 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    CU_ASSERT_EQUAL(o.kind, OFILE_IN_PLACE);
    fputs("through\n", o.f);
    CU_ASSERT_EQUAL(ofile_commit(&o), 0);
    CU_ASSERT_EQUAL(read(rd, buf, sizeof(buf)), 8);
    CU_ASSERT_EQUAL(memcmp(buf, "through\n", 8), 0);
    close(rd);
    CU_ASSERT(lstat(t.path, &st) == 0 && S_ISFIFO(st.st_mode));
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);
    /* Nobody reading: writing fails with EPIPE (SIGPIPE ignored here), reported by
     * commit; the FIFO stays. Its open needs a reader, so one opens and leaves. */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    rd = open(t.path, O_RDONLY | O_NONBLOCK);
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    close(rd);
    fputs("lost\n", o.f);
    CU_ASSERT_EQUAL(ofile_commit(&o), -EPIPE);
    signal(SIGPIPE, old);
    CU_ASSERT(lstat(t.path, &st) == 0 && S_ISFIFO(st.st_mode));
    CU_ASSERT_EQUAL(count_entries(t.dir), 1);
    tdir_remove(t.dir);
}

/* Bad output paths are refused by the probe, before anything is created. */
static void test_probe_refusals(void)
{
    struct tdir t;
    char p[300], file[300];
    struct ofile o;
    CU_ASSERT_FATAL(tdir_make(&t, "x") == 0);
    CU_ASSERT_EQUAL(ofile_probe(&o, in_dir(p, sizeof(p), t.dir, "no/x.csv")), -ENOENT);
    CU_ASSERT_EQUAL(ofile_probe(&o, in_dir(p, sizeof(p), t.dir, "no/")), -ENOENT);
    CU_ASSERT_EQUAL(ofile_probe(&o, t.dir), -EISDIR);
    CU_ASSERT_EQUAL(ofile_probe(&o, in_dir(p, sizeof(p), t.dir, ".")), -EISDIR);
    CU_ASSERT_FATAL(put(in_dir(file, sizeof(file), t.dir, "file"), "") == 0);
    CU_ASSERT_EQUAL(ofile_probe(&o, in_dir(p, sizeof(p), file, "x")), -ENOTDIR);
    CU_ASSERT_FATAL(symlink("loop", in_dir(p, sizeof(p), t.dir, "loop")) == 0);
    CU_ASSERT_EQUAL(ofile_probe(&o, p), -ELOOP);
    char leaf[OFILE_NAME_MAX + 2];
    memset(leaf, 'n', sizeof(leaf) - 1);
    leaf[sizeof(leaf) - 1] = '\0';                              /* 256 bytes: one too many */
    CU_ASSERT_EQUAL(ofile_probe(&o, in_dir(p, sizeof(p), t.dir, leaf)), -ENAMETOOLONG);
    CU_ASSERT_EQUAL(count_entries(t.dir), 2);                   /* file, loop */
    /* A read-only file is not replaced; root may write anything, so only others see it. */
    CU_ASSERT_FATAL(chmod(file, 0444) == 0);
    if (geteuid() != 0) {
        CU_ASSERT_EQUAL(ofile_probe(&o, file), -EACCES);
    } else {
        printf("(read-only check skipped: running as root) ");
    }
    /* A name of exactly OFILE_NAME_MAX bytes is fine: its temporary's name is cut short. */
    leaf[OFILE_NAME_MAX] = '\0';
    CU_ASSERT_EQUAL(put(in_dir(p, sizeof(p), t.dir, leaf), "long\n"), 0);
    CU_ASSERT_EQUAL(count_entries(t.dir), 3);
    tdir_remove(t.dir);
}

/* One file, however named: a new name through "./" and "sub/.." spellings, a hard link
 * and a symlink to an existing file. Different names differ. */
static void test_identity(void)
{
    struct tdir t;
    char p[300], q[300];
    struct ofile_id a, b;
    CU_ASSERT_FATAL(tdir_make(&t, "f") == 0);
    CU_ASSERT_FATAL(mkdir(in_dir(p, sizeof(p), t.dir, "sub"), 0700) == 0);
    CU_ASSERT_EQUAL(ofile_identify(in_dir(p, sizeof(p), t.dir, "new.csv"), &a), 0);
    CU_ASSERT_EQUAL(ofile_identify(in_dir(q, sizeof(q), t.dir, "sub/../new.csv"), &b), 0);
    CU_ASSERT(ofile_same(&a, &b));
    CU_ASSERT_EQUAL(ofile_identify(in_dir(q, sizeof(q), t.dir, "./new.csv"), &b), 0);
    CU_ASSERT(ofile_same(&a, &b));
    CU_ASSERT_EQUAL(ofile_identify(in_dir(q, sizeof(q), t.dir, "other.csv"), &b), 0);
    CU_ASSERT(!ofile_same(&a, &b));
    CU_ASSERT_FATAL(put(t.path, "x") == 0);
    CU_ASSERT_EQUAL(ofile_identify(t.path, &a), 0);
    CU_ASSERT_FATAL(link(t.path, in_dir(q, sizeof(q), t.dir, "hard")) == 0);
    CU_ASSERT_EQUAL(ofile_identify(q, &b), 0);
    CU_ASSERT(ofile_same(&a, &b));
    CU_ASSERT_FATAL(symlink("f", in_dir(q, sizeof(q), t.dir, "soft")) == 0);
    CU_ASSERT_EQUAL(ofile_identify(q, &b), 0);
    CU_ASSERT(ofile_same(&a, &b));
    struct ofile o;                                             /* the probe agrees */
    CU_ASSERT_EQUAL(ofile_probe(&o, q), 0);
    CU_ASSERT(ofile_same(&a, &o.id));
    CU_ASSERT_EQUAL(o.kind, OFILE_REPLACE);
    CU_ASSERT_EQUAL(ofile_probe(&o, "-"), 0);
    CU_ASSERT_EQUAL(o.kind, OFILE_STDOUT);
    tdir_remove(t.dir);
}

/* Modes: a new file 0666 & ~umask (umask 027: 0640); a replaced file keeps its own
 * (0600 stays 0600 although a new file would be 0640). */
static void test_modes(void)
{
    struct tdir t;
    struct stat st;
    CU_ASSERT_FATAL(tdir_make(&t, "m.csv") == 0);
    mode_t old = umask(027);
    CU_ASSERT_EQUAL(put(t.path, "a"), 0);
    CU_ASSERT(stat(t.path, &st) == 0 && (st.st_mode & 07777) == 0640);
    CU_ASSERT_FATAL(chmod(t.path, 0600) == 0);
    CU_ASSERT_EQUAL(put(t.path, "b"), 0);
    CU_ASSERT(stat(t.path, &st) == 0 && (st.st_mode & 07777) == 0600);
    umask(old);
    tdir_remove(t.dir);
}

/* The signal table holds OFILE_MAX_OPEN temporaries: one more is -EMFILE, and aborting
 * them all leaves the folder empty. */
static void test_max_open(void)
{
    struct tdir t;
    static struct ofile o[OFILE_MAX_OPEN + 1];
    char p[300], name[16];
    CU_ASSERT_FATAL(tdir_make(&t, "x") == 0);
    for (int i = 0; i < OFILE_MAX_OPEN; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        CU_ASSERT_EQUAL(ofile_open(&o[i], in_dir(p, sizeof(p), t.dir, name)), 0);
    }
    CU_ASSERT_EQUAL(ofile_open(&o[OFILE_MAX_OPEN], in_dir(p, sizeof(p), t.dir, "more")), -EMFILE);
    CU_ASSERT_EQUAL(count_entries(t.dir), OFILE_MAX_OPEN);
    for (int i = 0; i <= OFILE_MAX_OPEN; i++)
        ofile_abort(&o[i]);
    CU_ASSERT_EQUAL(count_entries(t.dir), 0);
    tdir_remove(t.dir);
}

/* A child opens two outputs and kills itself with sig: it dies of sig (the handler
 * re-raises it) and neither temporary is left. With sig ignored before
 * ofile_catch_signals, it stays ignored: the child goes on and commits. */
static void kill_child(int sig, bool ignored)
{
    struct tdir t;
    char p[300];
    CU_ASSERT_FATAL(tdir_make(&t, "a.json") == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct ofile a, b;
        if (ignored)
            signal(sig, SIG_IGN);
        if (ofile_catch_signals() || ofile_open(&a, t.path) ||
            ofile_open(&b, in_dir(p, sizeof(p), t.dir, "b.csv")))
            _exit(3);
        fputs("{\"half\":", a.f);
        fflush(a.f);
        raise(sig);
        _exit(ofile_commit(&a) || ofile_commit(&b) ? 4 : 0);
    }
    int status;
    CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
    if (ignored) {
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CU_ASSERT_EQUAL(count_entries(t.dir), 2);               /* a.json, b.csv */
    } else {
        CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == sig);
        CU_ASSERT_EQUAL(count_entries(t.dir), 0);
    }
    tdir_remove(t.dir);
}

static void test_signals(void)
{
    kill_child(SIGINT, false);
    kill_child(SIGTERM, false);
    kill_child(SIGHUP, false);
    kill_child(SIGHUP, true);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "commit leaves the final file", test_commit },
        { "abort leaves nothing", test_abort },
        { "missing folder", test_missing_folder },
        { "failed commit cleans up", test_commit_fails_cleans_up },
        { "bad arguments", test_bad_args },
        { "a user's NAME.tmp survives", test_user_tmp_survives },
        { "symlinks stay links", test_symlink },
        { "a FIFO is written in place", test_fifo_in_place },
        { "bad paths refused by the probe", test_probe_refusals },
        { "one file, many names", test_identity },
        { "modes of new and replaced files", test_modes },
        { "at most OFILE_MAX_OPEN temporaries", test_max_open },
        { "signals remove the temporaries", test_signals },
    };
    return cu_run("ofile", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
