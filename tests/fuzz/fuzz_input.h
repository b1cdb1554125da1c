/* fuzz_input.h: where a libFuzzer harness of this folder writes its input, so that the
 * parser reads it as a user's file: one mkdtemp folder per process, in $TMPDIR or /tmp,
 * left behind. Header-only: every user is one program. Both calls abort on failure: a
 * harness that cannot write its input has nothing to report. */
#ifndef MOESIM_FUZZ_INPUT_H
#define MOESIM_FUZZ_INPUT_H

#include <stdio.h>
#include <stdlib.h>

#include "config.h"

/* path[n] = "<folder>/<name>"; the folder, "<$TMPDIR or /tmp>/<prog>.XXXXXX", is made at
 * the process's first call and kept for the later ones. */
static inline void fuzz_input_path(char *path, size_t n, const char *prog, const char *name)
{
    static char dir[CFG_PATH_MAX];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/%s.XXXXXX", tmp ? tmp : "/tmp", prog);
        if (!mkdtemp(dir))
            abort();
    }
    if (snprintf(path, n, "%s/%s", dir, name) >= (int)n)
        abort();
}

/* data[0..size) into the file path, replacing it (unlinked first: ext4 syncs a file that
 * is truncated and rewritten, which made runs several times slower). */
static inline void fuzz_input_write(const char *path, const void *data, size_t size)
{
    remove(path);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
}

#endif
