/* test_ofile.c: atomic outputs leave either the complete file or nothing. */
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu_run.h"
#include "ofile.h"

/* Each test works in its own fresh folder under /tmp, removed at the end. */
struct tdir {
    char dir[64];
    char path[128];
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

/* The final name is a folder: rename(2) of a file onto a folder fails (EISDIR); the
 * tmp is removed and the folder is untouched. */
static void test_commit_fails_cleans_up(void)
{
    struct tdir t;
    CU_ASSERT_FATAL(tdir_make(&t, "taken") == 0);
    CU_ASSERT_FATAL(mkdir(t.path, 0700) == 0);
    struct ofile o;
    CU_ASSERT_FATAL(ofile_open(&o, t.path) == 0);
    fputs("data\n", o.f);
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

int main(void)
{
    static const struct cu_test tests[] = {
        { "commit leaves the final file", test_commit },
        { "abort leaves nothing", test_abort },
        { "missing folder", test_missing_folder },
        { "failed commit cleans up", test_commit_fails_cleans_up },
        { "bad arguments", test_bad_args },
    };
    return cu_run("ofile", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
