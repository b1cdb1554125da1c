/* fuzz_config.c: libFuzzer entry point for config_load (sim/config.c); how to build and
 * run it: README.md. The input is one INI file, written to a temporary folder and loaded;
 * after a "\0\0" the rest is --set strings, one per NUL-separated piece (at most 8). The
 * last byte picks options: even, "parallel.ep=8" goes first among the sets (it fits the
 * cluster presets with the default model); % 8 == 7, the file is left out (sets only).
 * Promises checked, as in tests/test_fuzz.c (config.h, cfg_check() in cfgcheck.c):
 *   0 or -EINVAL; on -EINVAL a non-empty message of one line (no '\n') within CFG_ERR_MAX
 *   that starts with "file:", "--set:" or "default:", the file being one that exists;
 *   on 0 every range of the schema and every cross-key check holds.
 * A broken promise prints why and aborts, so libFuzzer keeps the input. */
#include "config.h"
#include "../fuzz_oracle.h"
#include "fuzz_input.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUZZ_SETS 8

/* The file every input is written to (fuzz_input.h). */
static char fuzz_path[CFG_PATH_MAX];

static void broken(const char *why, int rc, const char *msg)
{
    fprintf(stderr, "fuzz_config: rc %d: %s\n  msg: %.*s\n", rc, why,
            (int)strnlen(msg, CFG_ERR_MAX), msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *files[] = { fuzz_path }, *sets[FUZZ_SETS + 1];
    char *copy = malloc(size + 2);
    int nsets = 0, nfiles = 1;
    size_t text = 0;
    if (!copy)
        return 0;
    if (!fuzz_path[0])
        fuzz_input_path(fuzz_path, sizeof(fuzz_path), "fuzz_config", "f.ini");
    memcpy(copy, data, size);
    copy[size] = copy[size + 1] = '\0';
    while (text + 1 < size && (copy[text] || copy[text + 1]))
        text++;
    text = text + 1 < size ? text : size;         /* the file: up to the first "\0\0" */
    if (size && data[size - 1] % 2 == 0)
        sets[nsets++] = "parallel.ep=8";
    if (size && data[size - 1] % 8 == 7)
        nfiles = 0;
#ifndef FUZZ_CONFIG_NO_SETS   /* -DFUZZ_CONFIG_NO_SETS: files alone, past a --set finding */
    for (size_t i = text + 2; i <= size && nsets < FUZZ_SETS + 1; i += strlen(copy + i) + 1)
        sets[nsets++] = copy + i;
#endif
    fuzz_input_write(fuzz_path, data, text);

    struct config c;
    struct cfg_err e;
    memset(&e, 'x', sizeof(e));                   /* a message left unterminated shows */
    int rc = config_load(&c, files, nfiles, sets, nsets, &e);
    const char *why = rc == 0 ? config_broken(&c) : rc == -EINVAL ? msg_broken(e.msg, NULL)
                                                                  : "not 0 or -EINVAL";
    if (why)
        broken(why, rc, rc ? e.msg : "");
    free(copy);
    return 0;
}
