/* ini_text.h: load a config from INI text held by a test (written to a temporary file,
 * read by config_load with the given --set overrides, removed). Prints the loader's
 * message on failure; returns config_load's code (-1 when the file cannot be made). */
#ifndef INI_TEXT_H
#define INI_TEXT_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

static inline int ini_text_load(struct config *c, const char *text, const char *const *sets,
                                int nsets)
{
    char path[] = "/tmp/moesim_test_ini_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        remove(path);
        return -1;
    }
    fputs(text, f);
    fclose(f);
    struct cfg_err err;
    const char *files[1] = { path };
    int rc = config_load(c, files, 1, sets, nsets, &err);
    if (rc)
        fprintf(stderr, "config: %s\n", err.msg);
    remove(path);
    return rc;
}

#endif
