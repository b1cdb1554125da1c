/* tmp_dir.h: a test suite's own folder under /tmp, made with mkdtemp by the suite's init
 * and removed, with the files it names, by its clean. Header-only. */
#ifndef MOESIM_TMP_DIR_H
#define MOESIM_TMP_DIR_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* dir[n] = "/tmp/<suite>.XXXXXX", made. 0, or -1 when mkdtemp fails. */
static inline int tmp_dir_make(char *dir, size_t n, const char *suite)
{
    snprintf(dir, n, "/tmp/%s.XXXXXX", suite);
    return mkdtemp(dir) ? 0 : -1;
}

/* out[n] = "<dir>/<name>"; returns out. */
static inline char *tmp_dir_path(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
    return out;
}

/* Removes dir/names[0 .. count) (files, links, FIFOs, empty folders; a missing one is
 * fine), then dir. 0, or -1 when something is left. */
static inline int tmp_dir_remove(const char *dir, const char *const *names, size_t count)
{
    char p[512];
    for (size_t i = 0; i < count; i++)
        if (remove(tmp_dir_path(p, sizeof(p), dir, names[i])) && errno != ENOENT)
            return -1;
    return rmdir(dir);
}

#endif
