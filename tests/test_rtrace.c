/* test_rtrace.c: CUnit suite for traces/rtrace.c, the routing trace. Expected texts and
 * messages are worked by hand from traces/FORMAT.md ("Routing trace"); the sample trace's
 * counts from the closed form its comment states. Files are made in a mkdtemp folder.
 * Run from the repository root (the sample is traces/samples/routing-2x2x8x16.txt). */
#include "cu_run.h"
#include "zero_line.h"
#include "rtrace.h"
#include "tmp_dir.h"

#include <CUnit/Basic.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAMPLE "traces/samples/routing-2x2x8x16.txt"
#define HEADER_SHAPE "moesim-routing-trace 1 layers=L iterations=I gpus=G experts=E"
/* A header for 2 layers, 2 iterations, 8 GPUs, 16 experts, as the bad-entry tests use. */
#define H "moesim-routing-trace 1 layers=2 iterations=2 gpus=8 experts=16\n"

/* The suite's folder and what is made in it (removed by suite_clean). */
static char tmp_dir[64];
static const char *const tmp_names[] = { "t.txt", "w.txt", "w2.txt", "fifo", "dir" };

static int suite_init(void) { return tmp_dir_make(tmp_dir, sizeof(tmp_dir), "test_rtrace"); }

static char *tmp_path(char *out, size_t n, const char *name)
{
    return tmp_dir_path(out, n, tmp_dir, name);
}

static int suite_clean(void)
{
    return tmp_dir_remove(tmp_dir, tmp_names, sizeof(tmp_names) / sizeof(tmp_names[0]));
}

/* n bytes of text (NULs included) into the file tmp_dir/name; its path into path[128]. */
static int write_file(char *path, const char *name, const char *text, size_t n)
{
    FILE *f = fopen(tmp_path(path, 128, name), "wb");
    if (!f)
        return -1;
    size_t w = fwrite(text, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

/* The whole of path into a malloc'd, NUL-terminated buffer; *n its length. */
static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long size;

    if (f && !fseek(f, 0, SEEK_END) && (size = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
        (p = malloc((size_t)size + 1)) && fread(p, 1, (size_t)size, f) == (size_t)size) {
        p[size] = '\0';
        *n = (size_t)size;
    } else {
        free(p);
        p = NULL;
    }
    if (f)
        fclose(f);
    return p;
}

/* rtrace_write of t into tmp_dir/name; 0 or -1. */
static int write_trace(char *path, const char *name, const struct rtrace *t)
{
    FILE *f = fopen(tmp_path(path, 128, name), "w");
    if (!f)
        return -1;
    int rc = rtrace_write(f, t);
    return fclose(f) || rc ? -1 : 0;
}

static size_t entries(const struct rtrace *t)
{
    return (size_t)t->layers * t->iterations * t->gpus * t->experts;
}

/* ---- create, at, write ---- */

/* 2 x 3 x 4 x 5: 120 zeroed counts; (1, 2, 3) starts at ((1*3 + 2)*4 + 3)*5 = 115. Each
 * dimension below 1 is -EINVAL; 16385 x 16384 x 1 x 1 = 2^28 + 16384 and 4 x (2^31 - 1)
 * are past 2^28 entries: -E2BIG. *t is zeroed on error. */
static void test_create(void)
{
    struct rtrace t;

    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 2, 3, 4, 5), 0);
    CU_ASSERT(t.layers == 2 && t.iterations == 3 && t.gpus == 4 && t.experts == 5);
    for (int i = 0; i < 120; i++)
        CU_ASSERT_EQUAL(t.tokens[i], 0);
    CU_ASSERT_PTR_EQUAL(rtrace_at(&t, 0, 0, 0), t.tokens);
    CU_ASSERT_PTR_EQUAL(rtrace_at(&t, 1, 2, 3), t.tokens + 115);
    CU_ASSERT_PTR_NULL(rtrace_at(&t, 2, 0, 0));
    CU_ASSERT_PTR_NULL(rtrace_at(&t, 0, 3, 0));
    CU_ASSERT_PTR_NULL(rtrace_at(&t, 0, 0, 4));
    CU_ASSERT_PTR_NULL(rtrace_at(&t, -1, 0, 0));
    rtrace_free(&t);
    CU_ASSERT_PTR_NULL(t.tokens);
    rtrace_free(&t);                                /* a zeroed trace: no-op */
    rtrace_free(NULL);
    CU_ASSERT_EQUAL(rtrace_create(&t, 0, 1, 1, 1), -EINVAL);
    CU_ASSERT_EQUAL(rtrace_create(&t, 1, -1, 1, 1), -EINVAL);
    CU_ASSERT_EQUAL(rtrace_create(&t, 1, 1, 0, 1), -EINVAL);
    CU_ASSERT_EQUAL(rtrace_create(&t, 1, 1, 1, 0), -EINVAL);
    CU_ASSERT_EQUAL(rtrace_create(&t, 16385, 16384, 1, 1), -E2BIG);
    CU_ASSERT_EQUAL(rtrace_create(&t, 4, 2147483647, 2147483647, 2147483647), -E2BIG);
    CU_ASSERT(t.tokens == NULL && t.layers == 0 && t.experts == 0);
}

/* 1 layer, 2 iterations, 1 GPU, 3 experts with counts [[0, 5, 0], [7, 0, 2^64 - 1]]: by
 * the format, the header, the column line and the three nonzero entries in index order.
 * A failing write (/dev/full, unbuffered) is -EIO; a zeroed trace is refused. */
static void test_write_text(void)
{
    static const char want[] =
        "moesim-routing-trace 1 layers=1 iterations=2 gpus=1 experts=3\n"
        "# layer iteration gpu expert tokens\n"
        "0 0 0 1 5\n0 1 0 0 7\n0 1 0 2 18446744073709551615\n";
    struct rtrace t, zero = { 0 };
    char path[128], *text;
    size_t n = 0;
    FILE *full;

    CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, 1, 2, 1, 3), 0);
    rtrace_at(&t, 0, 0, 0)[1] = 5;
    rtrace_at(&t, 0, 1, 0)[0] = 7;
    rtrace_at(&t, 0, 1, 0)[2] = UINT64_MAX;
    CU_ASSERT_EQUAL_FATAL(write_trace(path, "w.txt", &t), 0);
    text = read_file(path, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(n, strlen(want));
    CU_ASSERT_STRING_EQUAL(text, want);
    free(text);
    full = fopen("/dev/full", "w");                 /* every write fails: ENOSPC */
    CU_ASSERT_PTR_NOT_NULL_FATAL(full);
    setvbuf(full, NULL, _IONBF, 0);
    CU_ASSERT_EQUAL(rtrace_write(full, &t), -EIO);
    fclose(full);
    rtrace_free(&t);
    CU_ASSERT_EQUAL(rtrace_write(stdout, &zero), -EINVAL);
}

/* splitmix64 (Steele, Lea, Flood, OOPSLA 2014). */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Round trip: seeded random traces of 1..4 x 1..3 x 1..9 x 1..17, about half the counts
 * 0, the rest small, up to 2^25 or 2^25 itself (at most 9 x 17 < 256 of them make at most
 * 2^33 = RTRACE_TOKENS_MAX per layer and iteration), load back count for count, and writing
 * what was loaded gives the same bytes (the order is the index order, whatever t). */
static void test_round_trip(void)
{
    uint64_t r = 0x7274726163652121ull;

    for (int round = 0; round < 40; round++) {
        struct rtrace t, back;
        struct rtrace_err err = { { 0 } };
        char path[128], path2[128], *a, *b;
        size_t na = 0, nb = 0;
        int l = 1 + (int)(rng_next(&r) % 4), it = 1 + (int)(rng_next(&r) % 3);
        int g = 1 + (int)(rng_next(&r) % 9), e = 1 + (int)(rng_next(&r) % 17);

        CU_ASSERT_EQUAL_FATAL(rtrace_create(&t, l, it, g, e), 0);
        for (size_t i = 0; i < entries(&t); i++) {
            uint64_t v = rng_next(&r), kind = v % 8;
            t.tokens[i] = kind < 4 ? 0 : kind < 6 ? v >> 50 : kind < 7 ? rng_next(&r) >> 39
                                                                    : RTRACE_TOKENS_MAX >> 8;
        }
        CU_ASSERT_EQUAL_FATAL(write_trace(path, "w.txt", &t), 0);
        CU_ASSERT_EQUAL_FATAL(rtrace_load(&back, path, round % 2 ? g : 0, round % 3 ? e : 0,
                                          &err), 0);
        CU_ASSERT(back.layers == l && back.iterations == it && back.gpus == g &&
                  back.experts == e);
        CU_ASSERT_EQUAL(memcmp(back.tokens, t.tokens, entries(&t) * sizeof(*t.tokens)), 0);
        CU_ASSERT_EQUAL_FATAL(write_trace(path2, "w2.txt", &back), 0);
        a = read_file(path, &na);
        b = read_file(path2, &nb);
        CU_ASSERT(a && b && na == nb && !memcmp(a, b, na));
        free(a);
        free(b);
        rtrace_free(&t);
        rtrace_free(&back);
    }
}

/* The sample: in layer l, iteration i, GPU g sends 30 - 4j tokens to expert
 * (2g + l + 4i + j) mod 16, j = 0..7, none elsewhere (its comment). So each (l, i, g)
 * sums to 128 and the whole trace to 2 * 2 * 8 * 128 = 4096. Rewritten by rtrace_write,
 * it is the sample from its header line on (the sample is sorted by `sort`). */
static void test_sample(void)
{
    struct rtrace t;
    struct rtrace_err err = { { 0 } };
    char path[128], *sample, *out, *from;
    uint64_t total = 0;
    size_t ns = 0, no = 0;

    CU_ASSERT_EQUAL_FATAL(rtrace_load(&t, SAMPLE, 8, 16, &err), 0);
    CU_ASSERT(t.layers == 2 && t.iterations == 2 && t.gpus == 8 && t.experts == 16);
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 2; i++)
            for (int g = 0; g < 8; g++) {
                uint64_t want[16] = { 0 }, sum = 0, *c = rtrace_at(&t, l, i, g);
                for (int j = 0; j < 8; j++)
                    want[(2 * g + l + 4 * i + j) % 16] = 30 - 4 * (uint64_t)j;
                for (int e = 0; e < 16; e++) {
                    CU_ASSERT_EQUAL(c[e], want[e]);
                    sum += c[e];
                }
                CU_ASSERT_EQUAL(sum, 128);
                total += sum;
            }
    CU_ASSERT_EQUAL(total, 4096);
    CU_ASSERT_EQUAL_FATAL(write_trace(path, "w.txt", &t), 0);
    sample = read_file(SAMPLE, &ns);
    out = read_file(path, &no);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sample);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    from = strstr(sample, "\nmoesim-routing-trace");
    CU_ASSERT_PTR_NOT_NULL_FATAL(from);
    CU_ASSERT_STRING_EQUAL(from + 1, out);
    free(sample);
    free(out);
    rtrace_free(&t);
}

/* Comments before and after the header, blank lines, tabs, trailing comments and CRLF
 * endings: the file below sets (1, 0, 2, 3) = 100 and (0, 1, 0, 0) = 200 of a
 * 2 x 2 x 3 x 4 trace and leaves the other 46 counts 0. Any line order loads. */
static void test_layout(void)
{
    static const char text[] =
        "# measured\r\n\n  # more\nmoesim-routing-trace\t1 layers=2  iterations=2 gpus=3 "
        "experts=4 # dims\r\n\n1 0 2 3 100  # comment\n\t0\t1\t0\t0\t200\r\n  \n# end";
    struct rtrace t;
    struct rtrace_err err = { { 0 } };
    char path[128];
    uint64_t sum = 0;

    CU_ASSERT_EQUAL_FATAL(write_file(path, "t.txt", text, sizeof(text) - 1), 0);
    CU_ASSERT_EQUAL_FATAL(rtrace_load(&t, path, 3, 4, &err), 0);
    CU_ASSERT(t.layers == 2 && t.iterations == 2 && t.gpus == 3 && t.experts == 4);
    CU_ASSERT_EQUAL(rtrace_at(&t, 1, 0, 2)[3], 100);
    CU_ASSERT_EQUAL(rtrace_at(&t, 0, 1, 0)[0], 200);
    for (size_t i = 0; i < entries(&t); i++)
        sum += t.tokens[i];
    CU_ASSERT_EQUAL(sum, 300);
    rtrace_free(&t);
}

/* The example of traces/FORMAT.md: 4 tokens per GPU to its top-2 experts, so each
 * (iteration, gpu) sums to 8 and no count passes 4; (0, 1, 1) is [2, 0, 4, 2]. */
static void test_format_example(void)
{
    static const char text[] =
        "# 1 MoE layer, 2 iterations, 2 GPUs, 4 experts; each GPU routes 4 tokens to\n"
        "# its top-2 experts: 8 assignments per GPU and iteration, at most 4 per expert\n"
        "moesim-routing-trace 1 layers=1 iterations=2 gpus=2 experts=4\n"
        "# layer iteration gpu expert tokens\n"
        "0 0 0 0 4\n0 0 0 2 3\n0 0 0 3 1\n"
        "0 0 1 1 4      # all of GPU 1's tokens pick experts 1 and 3\n"
        "0 0 1 3 4\n0 1 0 0 4\n0 1 0 1 4\n0 1 1 0 2\n0 1 1 2 4\n0 1 1 3 2\n";
    static const uint64_t last[4] = { 2, 0, 4, 2 };
    struct rtrace t;
    struct rtrace_err err = { { 0 } };
    char path[128];

    CU_ASSERT_EQUAL_FATAL(write_file(path, "t.txt", text, sizeof(text) - 1), 0);
    CU_ASSERT_EQUAL_FATAL(rtrace_load(&t, path, 2, 4, &err), 0);
    for (int it = 0; it < 2; it++)
        for (int g = 0; g < 2; g++) {
            const uint64_t *c = rtrace_at(&t, 0, it, g);
            CU_ASSERT_EQUAL(c[0] + c[1] + c[2] + c[3], 8);
            for (int e = 0; e < 4; e++)
                CU_ASSERT(c[e] <= 4);
        }
    CU_ASSERT_EQUAL(memcmp(rtrace_at(&t, 0, 1, 1), last, sizeof(last)), 0);
    rtrace_free(&t);
}

/* ---- bad input: -EINVAL, the exact message, *t zeroed ---- */

/* Loads path with want_gpus, want_experts; it must fail with -EINVAL, err.msg == want,
 * and leave t zeroed. */
static void expect_bad_path(const char *path, int want_gpus, int want_experts,
                            const char *want)
{
    struct rtrace t;
    struct rtrace_err err = { { 0 } };

    memset(&t, 0x5a, sizeof(t));
    CU_ASSERT_EQUAL(rtrace_load(&t, path, want_gpus, want_experts, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT(t.tokens == NULL && t.layers == 0 && t.iterations == 0 && t.gpus == 0 &&
              t.experts == 0);
}

/* n bytes of text, loaded wanting 8 GPUs and 16 experts: "<path>:<line>: <what>". */
static void expect_bad_n(const char *text, size_t n, int line, const char *what)
{
    char path[128], want[512];

    CU_ASSERT_EQUAL_FATAL(write_file(path, "t.txt", text, n), 0);
    snprintf(want, sizeof(want), "%s:%d: %s", path, line, what);
    expect_bad_path(path, 8, 16, want);
}

static void expect_bad(const char *text, int line, const char *what)
{
    expect_bad_n(text, strlen(text), line, what);
}

/* No header: an entry first (after a comment), an empty file, comments only (3 lines:
 * the end of the file is line 4), a header of five fields, another magic word. */
static void test_bad_header_missing(void)
{
    expect_bad("# c\n0 0 0 0 5\n", 2, "expected the header '" HEADER_SHAPE "'");
    expect_bad("", 1, "expected the header '" HEADER_SHAPE "', found the end of the file");
    expect_bad("# a\n\n  # b\n", 4,
               "expected the header '" HEADER_SHAPE "', found the end of the file");
    expect_bad("moesim-routing-trace 1 layers=2 iterations=2 gpus=8\n", 1,
               "expected the header '" HEADER_SHAPE "'");
    expect_bad("moesim-matrix 1 layers=2 iterations=2 gpus=8 experts=16\n", 1,
               "expected the header '" HEADER_SHAPE "'");
}

/* Each header field in turn: the version, a key out of order, blanks around '=', a
 * value of 0, a sign, past 2^31 - 1, an extra field, and the product past 2^28. */
static void test_bad_header_fields(void)
{
    expect_bad("\nmoesim-routing-trace 2 layers=2 iterations=2 gpus=8 experts=16\n", 2,
               "version '2' is not supported (expected 1)");
    expect_bad("moesim-routing-trace 1 iterations=2 layers=2 gpus=8 experts=16\n", 1,
               "expected 'layers=N' in the header, found 'iterations=2'");
    expect_bad("moesim-routing-trace 1 layers=2 iterations=2 gpus=8 experts =16\n", 1,
               "extra field '=16' after the header");
    expect_bad("moesim-routing-trace 1 layers=0 iterations=2 gpus=8 experts=16\n", 1,
               "layers '0' is not an integer in 1..2147483647");
    expect_bad("moesim-routing-trace 1 layers=2 iterations=+2 gpus=8 experts=16\n", 1,
               "iterations '+2' is not an integer in 1..2147483647");
    expect_bad("moesim-routing-trace 1 layers=2 iterations=2 gpus=2147483648 experts=16\n", 1,
               "gpus '2147483648' is not an integer in 1..2147483647");
    expect_bad("moesim-routing-trace 1 layers=2 iterations=2 gpus=8 experts=\n", 1,
               "experts '' is not an integer in 1..2147483647");
    expect_bad(H "moesim-routing-trace 1 layers=2 iterations=2 gpus=8 experts=16\n", 2,
               "header given twice (first at line 1)");
}

/* The wanted dimensions name both numbers; 0 and negative take any. 16384 x 1024 x 8 x 2
 * = 2^28 entries would load (not tried: 2 GiB); x 16 experts is 2^31. */
static void test_bad_dimensions(void)
{
    struct rtrace t;
    struct rtrace_err err = { { 0 } };
    char want[512];

    CU_ASSERT_EQUAL(rtrace_load(&t, SAMPLE, -1, 0, &err), 0);
    CU_ASSERT(t.gpus == 8 && t.experts == 16);
    rtrace_free(&t);

    snprintf(want, sizeof(want), "%s:13: gpus=8 in the header, but 16 GPUs expected", SAMPLE);
    expect_bad_path(SAMPLE, 16, 16, want);
    snprintf(want, sizeof(want), "%s:13: experts=16 in the header, but 8 experts expected",
             SAMPLE);
    expect_bad_path(SAMPLE, 8, 8, want);
    expect_bad("moesim-routing-trace 1 layers=16384 iterations=1024 gpus=8 experts=16\n", 1,
               "16384 x 1024 x 8 x 16 entries (layers x iterations x gpus x experts) are more "
               "than 268435456");
}

/* Entries need five fields; a sixth before any comment is an error. */
static void test_bad_fields(void)
{
    expect_bad(H "0 0 0 0\n", 2, "expected 'layer iteration gpu expert tokens'");
    expect_bad(H "0 0 0 0 5 7\n", 2, "extra field '7' after 'layer iteration gpu expert tokens'");
}

/* Ids out of range of the header, each in turn (one past the last, and far past), and
 * ids that are not numbers: signed ones shown bare, anything else quoted. */
static void test_bad_ids(void)
{
    expect_bad(H "# c\n2 0 0 0 5\n", 3, "layer 2 is not a layer index (0..1)");
    expect_bad(H "0 2 0 0 5\n", 2, "iteration 2 is not an iteration index (0..1)");
    expect_bad(H "0 0 8 0 5\n", 2, "gpu 8 is not a GPU id (0..7)");
    expect_bad(H "0 0 0 16 5\n", 2, "expert 16 is not an expert id (0..15)");
    expect_bad(H "0 0 0 99999999999999999999 5\n", 2,
               "expert 99999999999999999999 is not an expert id (0..15)");
    expect_bad(H "-1 0 0 0 5\n", 2, "layer -1 is not a layer index (0..1)");
    expect_bad(H "0 +1 0 0 5\n", 2, "iteration +1 is not an iteration index (0..1)");
    expect_bad(H "0 0 x 0 5\n", 2, "gpu 'x' is not a GPU id (0..7)");
    expect_bad(H "0 0 0 1e1 5\n", 2, "expert '1e1' is not an expert id (0..15)");
}

/* Counts are digits only: a sign, an exponent, a point, a hex prefix, text; 2^64 does
 * not fit 64 bits (2^64 - 1 does, but is more than RTRACE_TOKENS_MAX: token totals). */
static void test_bad_tokens(void)
{
    expect_bad(H "0 0 0 0 -5\n", 2, "tokens '-5' is not a non-negative integer");
    expect_bad(H "0 0 0 0 +5\n", 2, "tokens '+5' is not a non-negative integer");
    expect_bad(H "0 0 0 0 1e3\n", 2, "tokens '1e3' is not a non-negative integer");
    expect_bad(H "0 0 0 0 1.5\n", 2, "tokens '1.5' is not a non-negative integer");
    expect_bad(H "0 0 0 0 0x10\n", 2, "tokens '0x10' is not a non-negative integer");
    expect_bad(H "0 0 0 0 five\n", 2, "tokens 'five' is not a non-negative integer");
    expect_bad(H "0 0 0 0 18446744073709551616\n", 2,
               "tokens '18446744073709551616' is larger than 18446744073709551615");
}

/* A count is at most 2^33 (RTRACE_TOKENS_MAX), and so are the tokens of one layer and
 * iteration together, over its GPUs and experts: 2^33 alone loads, and 2^33 split over
 * two GPUs and two experts; 2^33 + 1 or 2^64 - 1 in one entry, or one token more than
 * 2^33 in a layer and iteration (entries of other iterations and layers do not count)
 * is refused at the line that passes the limit. */
static void test_bad_token_totals(void)
{
    static const char *const ok[] = {
        H "1 1 7 15 8589934592\n",
        H "0 1 0 0 4294967296\n0 1 7 15 4294967295\n0 1 3 3 1\n0 0 0 0 8589934592\n",
    };
    char path[128];
    struct rtrace t;
    struct rtrace_err err = { { 0 } };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CU_ASSERT_EQUAL_FATAL(write_file(path, "t.txt", ok[i], strlen(ok[i])), 0);
        CU_ASSERT_EQUAL(rtrace_load(&t, path, 8, 16, &err), 0);
        rtrace_free(&t);
    }
    CU_ASSERT_EQUAL(RTRACE_TOKENS_MAX, 8589934592ull);
    expect_bad(H "1 1 7 15 8589934593\n", 2, "tokens 8589934593 is more than 8589934592 (2^33)");
    expect_bad(H "0 0 0 0 18446744073709551615\n", 2,
               "tokens 18446744073709551615 is more than 8589934592 (2^33)");
    expect_bad(H "0 1 0 0 4294967296\n1 1 0 0 9\n0 0 2 2 9\n# c\n0 1 7 15 4294967296\n"
               "0 1 3 3 1\n0 1 3 4 0\n", 7,
               "layer 0 iteration 1: tokens add up to more than 8589934592 (2^33)");
    expect_bad(H "1 0 0 0 8589934592\n1 0 0 1 1\n", 3,
               "layer 1 iteration 0: tokens add up to more than 8589934592 (2^33)");
}

/* An entry on line 3 and again on line 6 (a comment and another entry between), with
 * another count: the message names both lines. Listing it with 0 counts as listing. */
static void test_bad_duplicate(void)
{
    expect_bad("# c\n" H "1 1 7 15 5\n# c\n0 0 0 0 1\n1 1 7 15 6\n", 6,
               "layer 1 iteration 1 gpu 7 expert 15 given twice (first at line 3)");
    expect_bad(H "\t0 1 2 3 0\n0 1 2 3 0 # again\n", 3,
               "layer 0 iteration 1 gpu 2 expert 3 given twice (first at line 2)");
}

/* Lines hold at most 4096 bytes: H + "0 0 0 0 " + 4088 zeros is 4096 bytes on line 2 and
 * loads (with CRLF too); one zero more is too long, as is a 1 MB line, and a long
 * comment before the header. */
static void test_bad_long_line(void)
{
    size_t n = 1 << 20;
    char *text = malloc(n + 128), path[128];
    struct rtrace t;
    struct rtrace_err err = { { 0 } };

    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    zero_line(text, H "0 0 0 0 ", 4088, "\r\n");
    CU_ASSERT_EQUAL_FATAL(write_file(path, "t.txt", text, strlen(text)), 0);
    CU_ASSERT_EQUAL(rtrace_load(&t, path, 8, 16, &err), 0);
    CU_ASSERT_EQUAL(t.tokens ? t.tokens[0] + t.tokens[1] : 1, 0);
    rtrace_free(&t);
    expect_bad(zero_line(text, H "0 0 0 0 ", 4089, "\n"), 2, "line longer than 4096 characters");
    expect_bad(zero_line(text, H "0 0 0 0 ", n, "\n"), 2, "line longer than 4096 characters");
    expect_bad(zero_line(text, "#", 4096, "\n" H), 1, "line longer than 4096 characters");
    free(text);
}

/* Tab is the one control byte a line may hold, comments included: a NUL after an entry
 * (which used to end a C string), \x01 in a comment before the header, DEL, \v, \f, and
 * a '\r' that does not end the line. */
static void test_bad_control(void)
{
    static const char nul[] = H "0 0 0 0 5\0 junk\n";

    expect_bad_n(nul, sizeof(nul) - 1, 2, "control character 0x00 in line");
    expect_bad("# \x01\n" H, 1, "control character 0x01 in line");
    expect_bad(H "0 0 0 0 5\x7f\n", 2, "control character 0x7f in line");
    expect_bad(H "0 0\v0 0 5\n", 2, "control character 0x0b in line");
    expect_bad(H "0 0 0 0\f5\n", 2, "control character 0x0c in line");
    expect_bad(H "0 0 0 0 5\r\r\n", 2, "control character 0x0d in line");
    expect_bad("moesim-routing-trace 1 layers=2\riterations=2 gpus=8 experts=16\n", 1,
               "control character 0x0d in line");
}

/* Only regular files are read: /dev/zero, a folder, a FIFO with no writer each fail at
 * once with no line; a missing file says why; a path with a newline is shown escaped. */
static void test_bad_files(void)
{
    char dir[128], fifo[128], want[512];

    expect_bad_path("/dev/zero", 0, 0, "/dev/zero: not a regular file");
    CU_ASSERT_EQUAL_FATAL(mkdir(tmp_path(dir, sizeof(dir), "dir"), 0700), 0);
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    expect_bad_path(dir, 0, 0, want);
    CU_ASSERT_EQUAL_FATAL(mkfifo(tmp_path(fifo, sizeof(fifo), "fifo"), 0600), 0);
    snprintf(want, sizeof(want), "%s: not a regular file", fifo);
    expect_bad_path(fifo, 0, 0, want);
    snprintf(want, sizeof(want), "/nonexistent-dir/a\\nb.txt: cannot open: %s",
             strerror(ENOENT));
    expect_bad_path("/nonexistent-dir/a\nb.txt", 0, 0, want);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "create, at, free", test_create },
        { "write: exact text", test_write_text },
        { "round trip: random traces", test_round_trip },
        { "sample: closed form, rewritten as is", test_sample },
        { "comments, blanks, tabs, CRLF", test_layout },
        { "FORMAT.md example", test_format_example },
        { "bad: no header", test_bad_header_missing },
        { "bad: header fields", test_bad_header_fields },
        { "bad: dimensions", test_bad_dimensions },
        { "bad: entry fields", test_bad_fields },
        { "bad: ids", test_bad_ids },
        { "bad: tokens", test_bad_tokens },
        { "bad: token counts and totals past 2^33", test_bad_token_totals },
        { "bad: duplicate entry", test_bad_duplicate },
        { "bad: long line", test_bad_long_line },
        { "bad: control characters", test_bad_control },
        { "bad: files", test_bad_files },
    };
    return cu_run("rtrace", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
