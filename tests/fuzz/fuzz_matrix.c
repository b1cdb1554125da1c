/* fuzz_matrix.c: libFuzzer entry point for matrix_load (traces/matrix.c); how to build and
 * run it: README.md. The input is one matrix file, written to a temporary folder and
 * loaded for gpus = 1 + (last byte % 16) GPUs (11 for a file that ends in '\n').
 * Promises checked, as in tests/test_fuzz.c (matrix.h, traces/FORMAT.md):
 *   0 or -EINVAL (-EIO/-ENOMEM need a failing disk or allocator); on -EINVAL *m zeroed
 *   and a non-empty message of one line (no '\n') within CFG_ERR_MAX that starts with
 *   "path:"; on 0 the matrix equals the file's lines (a pair not listed: 0 bytes), read as
 *   FORMAT.md says, including its refusals: no control byte but tab (a '\r' only right
 *   before the '\n') and lines of at most 4096 bytes. The checks are tests/fuzz_oracle.h,
 *   the same as the mutation suite's.
 * A broken promise prints why and aborts, so libFuzzer keeps the input. */
#include "matrix.h"
#include "../fuzz_oracle.h"
#include "fuzz_input.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file every input is written to (fuzz_input.h). */
static char fuzz_path[CFG_PATH_MAX];

static void broken(const char *why, int rc, const char *msg)
{
    fprintf(stderr, "fuzz_matrix: rc %d: %s\n  msg: %.*s\n", rc, why,
            (int)strnlen(msg, CFG_ERR_MAX), msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int gpus = size ? 1 + data[size - 1] % 16 : 1;
    if (!fuzz_path[0])
        fuzz_input_path(fuzz_path, sizeof(fuzz_path), "fuzz_matrix", "m.txt");
    fuzz_input_write(fuzz_path, data, size);

    struct matrix m;
    struct matrix_err e;
    memset(&m, 0x5a, sizeof(m));                  /* must come back zeroed on error */
    memset(&e, 'x', sizeof(e));                   /* a message left unterminated shows */
    int rc = matrix_load(&m, fuzz_path, gpus, &e);
    const char *why = rc == 0 ? matrix_broken(&m, gpus, (const char *)data, size)
                    : rc != -EINVAL ? "not 0 or -EINVAL"
                    : m.gpus || m.bytes ? "*m not zeroed on error" : msg_broken(e.msg, fuzz_path);
    if (why)
        broken(why, rc, rc ? e.msg : "");
    if (rc == 0)
        matrix_free(&m);
    return 0;
}
