/* fuzz_matrix.c: libFuzzer entry point for matrix_load (traces/matrix.c); how to build and
 * run it: README.md. The input is one matrix file, written to a temporary folder and
 * loaded for gpus = 1 + (last byte % 16) GPUs (11 for a file that ends in '\n').
 * Promises checked, as in tests/test_fuzz.c (matrix.h, traces/FORMAT.md):
 *   0 or -EINVAL (-EIO/-ENOMEM need a failing disk or allocator); on -EINVAL *m zeroed
 *   and a non-empty message of one line (no '\n') within CFG_ERR_MAX that starts with
 *   "path:"; on 0 the matrix equals the file's lines (a pair not listed: 0 bytes), read as
 *   FORMAT.md says. matrix.c now refuses a NUL, \v, \f and a '\r' not right before the
 *   '\n' (tests/test_traffic.c), so a file it accepts holds none of them; the oracle
 *   below still reads \r \v \f as blanks and a NUL as the end of a line's text, which
 *   is the same reading for such a file, and checks neither those refusals nor the
 *   4096-byte line limit.
 * A broken promise prints why and aborts, so libFuzzer keeps the input. */
#include "matrix.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file every input is written to; made once per process, in $TMPDIR or /tmp. */
static char fuzz_path[CFG_PATH_MAX];

static void broken(const char *why, int rc, const char *msg)
{
    fprintf(stderr, "fuzz_matrix: rc %d: %s\n  msg: %.*s\n", rc, why,
            (int)strnlen(msg, CFG_ERR_MAX), msg);
    abort();
}

/* NULL, or how m differs from the lines of text (an accepted file). */
static const char *matrix_broken(const struct traffic *m, int gpus, const uint8_t *p, size_t size)
{
    static const char blanks[] = " \t\r\v\f";
    size_t n = (size_t)gpus * (size_t)gpus;
    uint64_t *want = calloc(n, sizeof(*want)), f[3] = { 0 };
    unsigned char *seen = calloc(n, 1);
    const char *why = m->gpus != gpus || !m->bytes ? "wrong gpus or no bytes" : NULL;
    if (!want || !seen)
        abort();
    for (size_t s = 0, e, end; s < size && !why; s = e + 1) {
        int nf = 0;
        for (e = s; e < size && p[e] != '\n'; e++) {}
        for (end = s; end < e && p[end] != '#' && p[end]; end++) {}
        for (size_t i = s; i < end; i++) {
            if (strchr(blanks, p[i]))
                continue;
            uint64_t v = 0;
            for (; i < end && !strchr(blanks, p[i]); i++) {
                unsigned d = (unsigned)p[i] - '0';
                if (d > 9 || v > (UINT64_MAX - d) / 10)
                    why = "accepted a field that is not a 64-bit decimal";
                v = v * 10 + d;
            }
            if (nf < 3)
                f[nf] = v;
            nf++;
        }
        if (nf != 0 && nf != 3)
            why = "accepted a line without three fields";
        else if (nf == 3 && (f[0] >= (uint64_t)gpus || f[1] >= (uint64_t)gpus))
            why = "accepted a GPU id out of range";
        else if (nf == 3 && !why) {
            size_t at = f[0] * (size_t)gpus + f[1];
            why = seen[at] ? "accepted a pair given twice" : NULL;
            seen[at] = 1;
            want[at] = f[2];
        }
    }
    for (size_t i = 0; i < n && !why; i++)
        if (m->bytes[i] != want[i])
            why = seen[i] ? "bytes differ from the file" : "a pair not in the file is not 0";
    free(want);
    free(seen);
    return why;
}

static const char *msg_broken(const char *msg, const char *path)
{
    size_t n = strnlen(msg, CFG_ERR_MAX), l = strlen(path);
    if (n == CFG_ERR_MAX)
        return "message longer than CFG_ERR_MAX-1 bytes";
    if (!n || memchr(msg, '\n', n))
        return n ? "message of more than one line" : "empty message";
    return strncmp(msg, path, l) || msg[l] != ':' ? "message does not start with 'path:'" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int gpus = size ? 1 + data[size - 1] % 16 : 1;
    if (!fuzz_path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz_matrix.XXXXXX", tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_path))
            abort();
        strcat(fuzz_path, "/m.txt");
    }
    FILE *f = fopen(fuzz_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();

    struct traffic m;
    struct traffic_err e;
    memset(&m, 0x5a, sizeof(m));                  /* must come back zeroed on error */
    memset(&e, 'x', sizeof(e));                   /* a message left unterminated shows */
    int rc = matrix_load(&m, fuzz_path, gpus, &e);
    const char *why = rc == 0 ? matrix_broken(&m, gpus, data, size)
                    : rc != -EINVAL ? "not 0 or -EINVAL"
                    : m.gpus || m.bytes ? "*m not zeroed on error" : msg_broken(e.msg, fuzz_path);
    if (why)
        broken(why, rc, rc ? e.msg : "");
    if (rc == 0)
        traffic_free(&m);
    return 0;
}
