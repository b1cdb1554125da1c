/* fuzz_rtrace.c: libFuzzer entry point for rtrace_load (traces/rtrace.c); how to build and
 * run it: README.md. The input is one routing trace file, written to a temporary folder
 * and loaded wanting the dimensions its last byte b picks: any (b == '\n', or no input);
 * else want_gpus = 1 + (b >> 2) % 16 when b & 1, want_experts = 1 + (b >> 2) % 32 when
 * b & 2 (any otherwise). Promises checked, as in tests/test_fuzz.c (rtrace.h,
 * traces/FORMAT.md): 0 or -EINVAL (-EIO/-ENOMEM need a failing disk or allocator); on
 * -EINVAL *t zeroed and a non-empty message of one line (no '\n') within CFG_ERR_MAX that
 * starts with "path:"; on 0 the trace has the header's dimensions (and the wanted ones)
 * and the counts of the file's entries (an entry not listed: 0), read as FORMAT.md says,
 * including its refusals, and what rtrace_write writes of it loads back the same. The
 * checks are tests/fuzz_oracle.h, the same as the mutation suite's.
 * A broken promise prints why and aborts, so libFuzzer keeps the input. */
#include "rtrace.h"
#include "../fuzz_oracle.h"
#include "fuzz_input.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file every input is written to, and the one its round trip goes through. */
static char fuzz_path[CFG_PATH_MAX], rt_path[CFG_PATH_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned b = size && data[size - 1] != '\n' ? data[size - 1] : 0;
    int want_gpus = b & 1 ? 1 + (int)(b >> 2) % 16 : 0;
    int want_experts = b & 2 ? 1 + (int)(b >> 2) % 32 : 0;
    if (!fuzz_path[0]) {
        fuzz_input_path(fuzz_path, sizeof(fuzz_path), "fuzz_rtrace", "t.txt");
        fuzz_input_path(rt_path, sizeof(rt_path), "fuzz_rtrace", "rt.txt");
    }
    fuzz_input_write(fuzz_path, data, size);

    struct rtrace t;
    struct rtrace_err e;
    memset(&t, 0x5a, sizeof(t));                  /* must come back zeroed on error */
    memset(&e, 'x', sizeof(e));                   /* a message left unterminated shows */
    int rc = rtrace_load(&t, fuzz_path, want_gpus, want_experts, &e);
    const char *why = rtrace_outcome_broken(rc, &t, want_gpus, want_experts,
                                            (const char *)data, size, fuzz_path, e.msg, rt_path);
    if (why) {
        fprintf(stderr, "fuzz_rtrace: rc %d: %s\n  msg: %.*s\n", rc, why,
                rc ? (int)strnlen(e.msg, CFG_ERR_MAX) : 0, e.msg);
        abort();
    }
    if (rc == 0)
        rtrace_free(&t);
    return 0;
}
