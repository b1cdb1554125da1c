/* test_traffic.c: CUnit suite for sim/traffic.c and the matrix file of
 * traces/matrix.c, pairs and dense. Expected values are worked by hand in each comment; the
 * config is filled by hand (config_load is not used here). */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "cu_run.h"
#include "zero_line.h"
#include "matrix.h"
#include "routing.h"
#include "traffic.h"

static uint64_t at(const struct traffic *m, int s, int d)
{
    return m->bytes[(size_t)s * m->gpus + d];
}

static uint64_t mat_at(const struct matrix *m, int s, int d)
{
    return m->bytes[(size_t)s * m->gpus + d];
}

/* Writes n bytes of text (NULs included) to a fresh temporary file; its path goes to
 * path[32]. */
static int write_temp_n(char *path, const char *text, size_t n)
{
    int fd;
    FILE *f;

    strcpy(path, "/tmp/test_traffic_XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -errno;
    }
    if (fwrite(text, 1, n, f) != n) {
        fclose(f);
        return -EIO;
    }
    return fclose(f) ? -EIO : 0;
}

static int write_temp(char *path, const char *text)
{
    return write_temp_n(path, text, strlen(text));
}

/* 3 GPUs, 100 B per pair: all 9 entries, the diagonal included, are 100
 * (total n^2 b = 900). gpus = 0 is -EINVAL. */
static void test_alltoall(void)
{
    struct traffic m;
    uint64_t total = 0;

    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 3, 100), 0);
    CU_ASSERT_EQUAL(m.gpus, 3);
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 3; d++) {
            CU_ASSERT_EQUAL(at(&m, s, d), 100);
            total += at(&m, s, d);
        }
    CU_ASSERT_EQUAL(total, 900);
    traffic_free(&m);
    CU_ASSERT_EQUAL(traffic_alltoall(&m, 0, 100), -EINVAL);
    CU_ASSERT_PTR_NULL(m.bytes);
    traffic_free(&m);
}

/* a = [[1, 3], [5, 7]], out[d][s] = round(a[s][d] * scale), halves away from 0:
 * scale 0.5: out = [[round 0.5, round 2.5], [round 1.5, round 3.5]] = [[1, 3], [2, 4]];
 * scale 2: out = 2 a^T = [[2, 10], [6, 14]]. Negative or NaN scale: -EINVAL;
 * 2^64 - 1 times 2 does not fit: -ERANGE. */
static void test_transpose_scaled(void)
{
    uint64_t a_bytes[4] = {1, 3, 5, 7};
    struct traffic a = {2, a_bytes}, out;
    static const uint64_t half[4] = {1, 3, 2, 4}, twice[4] = {2, 10, 6, 14};

    CU_ASSERT_EQUAL_FATAL(traffic_transpose_scaled(&out, &a, 0.5), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(out.bytes[i], half[i]);
    traffic_free(&out);
    CU_ASSERT_EQUAL_FATAL(traffic_transpose_scaled(&out, &a, 2.0), 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(out.bytes[i], twice[i]);
    traffic_free(&out);

    CU_ASSERT_EQUAL(traffic_transpose_scaled(&out, &a, -1.0), -EINVAL);
    CU_ASSERT_EQUAL(traffic_transpose_scaled(&out, &a, NAN), -EINVAL);
    a_bytes[1] = UINT64_MAX;
    CU_ASSERT_EQUAL(traffic_transpose_scaled(&out, &a, 2.0), -ERANGE);
    CU_ASSERT_PTR_NULL(out.bytes);
}

static struct config moe_config(int nodes, int gpus_per_node, int hidden, double dbpe, double cbpe)
{
    struct config c;

    memset(&c, 0, sizeof(c));
    c.cluster.nodes = nodes;
    c.cluster.gpus_per_node = gpus_per_node;
    c.model.hidden = hidden;
    c.model.dispatch_bytes_per_elem = dbpe;
    c.model.combine_bytes_per_elem = cbpe;
    return c;
}

/* Hand-built counts on 2 GPUs, pair_tokens = [[3, 1], [0, 2]], hidden 7168,
 * dispatch 1 B/elem (fp8), combine 2 B/elem (bf16):
 *   dispatch = tokens * 7168       = [[21504, 7168], [0, 14336]]
 *   combine  = (tokens * 14336)^T  = [[43008, 0], [14336, 28672]]
 * and hidden 3 at 0.5 B/elem: 1 token -> 1.5 B, rounded to 2. */
static void test_moe_by_hand(void)
{
    uint64_t pairs[4] = {3, 1, 0, 2};
    struct routing r = {.gpus = 2, .experts = 2, .ep = 2, .top_k = 1, .pair_tokens = pairs};
    struct config c = moe_config(1, 2, 7168, 1.0, 2.0);
    static const uint64_t dispatch_want[4] = {21504, 7168, 0, 14336};
    static const uint64_t combine_want[4] = {43008, 0, 14336, 28672};
    struct traffic dispatch, combine;

    CU_ASSERT_EQUAL_FATAL(traffic_moe(&dispatch, &combine, &r, &c), 0);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(dispatch.bytes[i], dispatch_want[i]);
        CU_ASSERT_EQUAL(combine.bytes[i], combine_want[i]);
    }
    traffic_free(&dispatch);
    traffic_free(&combine);

    c = moe_config(1, 2, 3, 0.5, 0.5);
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&dispatch, &combine, &r, &c), 0);
    CU_ASSERT_EQUAL(dispatch.bytes[1], 2);
    CU_ASSERT_EQUAL(combine.bytes[2], 2);
    traffic_free(&dispatch);
    traffic_free(&combine);
}

/* Generated routing without dedup: each GPU sends T * K token copies, so each
 * dispatch row sums to T K hidden bpe = 1000 * 4 * 1024 * 2 = 8192000 B and each
 * combine column (what returns to that GPU) to T K hidden cbpe = 1000 * 4 * 1024
 * * 1 = 4096000 B. A routing of 8 GPUs against a 4-GPU cluster is -EINVAL. */
static void test_moe_totals(void)
{
    struct config c = moe_config(2, 4, 1024, 2.0, 1.0);
    struct traffic dispatch, combine;
    struct routing r;

    c.model.experts = 16;
    c.model.top_k = 4;
    c.parallel.ep = 4;
    c.routing.tokens_per_gpu = 1000;
    c.routing.distribution = DIST_UNIFORM;
    CU_ASSERT_EQUAL_FATAL(routing_generate(&r, &c, 3), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_moe(&dispatch, &combine, &r, &c), 0);
    for (int s = 0; s < 8; s++) {
        uint64_t sent = 0, back = 0;
        for (int d = 0; d < 8; d++) {
            sent += at(&dispatch, s, d);
            back += at(&combine, d, s);
        }
        CU_ASSERT_EQUAL(sent, 8192000);
        CU_ASSERT_EQUAL(back, 4096000);
    }
    traffic_free(&dispatch);
    traffic_free(&combine);

    c.cluster.nodes = 1;
    CU_ASSERT_EQUAL(traffic_moe(&dispatch, &combine, &r, &c), -EINVAL);
    CU_ASSERT_PTR_NULL(dispatch.bytes);
    CU_ASSERT_PTR_NULL(combine.bytes);
    routing_free(&r);
}

/* matrix_write of [[0, 5], [7, 0]] is, by the format, exactly the header and the
 * two nonzero pairs in src-major order. */
static void test_matrix_write_text(void)
{
    uint64_t bytes[4] = {0, 5, 7, 0};
    struct matrix m = {2, bytes};
    char buf[128] = {0};
    FILE *f = tmpfile();

    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(matrix_write(f, &m), 0);
    rewind(f);
    CU_ASSERT_EQUAL(fread(buf, 1, sizeof(buf) - 1, f), strlen("# src dst bytes\n0 1 5\n1 0 7\n"));
    CU_ASSERT_STRING_EQUAL(buf, "# src dst bytes\n0 1 5\n1 0 7\n");
    fclose(f);
}

/* Round trip: a 4-GPU matrix with zeros, a nonzero diagonal and one pair that brings
 * the total to exactly 2^63 (MATRIX_TOTAL_MAX; the others add up to 1048635) loads back
 * entry for entry. */
static void test_matrix_round_trip(void)
{
    uint64_t bytes[16] = {11, 0, 1 << 20, 3, 0, 0, 0, 0, (1ull << 63) - 1048635, 1, 2, 0, 0,
                          0, 0, 42};
    struct matrix m = {4, bytes}, back;
    struct matrix_err err = {{0}};
    char path[32];
    FILE *f;

    CU_ASSERT_EQUAL_FATAL(write_temp(path, ""), 0);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(matrix_write(f, &m), 0);
    CU_ASSERT_EQUAL(fclose(f), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&back, path, 4, &err), 0);
    CU_ASSERT_EQUAL(back.gpus, 4);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(back.bytes[i], bytes[i]);
    matrix_free(&back);
    unlink(path);
}

/* Comments, blank lines, tabs and CRLF endings are accepted: the file below sets
 * m[0][1] = 100 and m[1][0] = 200 and leaves the other entries 0. */
static void test_matrix_load_layout(void)
{
    struct matrix m;
    struct matrix_err err = {{0}};
    char path[32];

    CU_ASSERT_EQUAL_FATAL(write_temp(path, "# measured\n\n0 1 100  # comment\n\t1\t0\t200\r\n  \n"), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&m, path, 2, &err), 0);
    CU_ASSERT_EQUAL(mat_at(&m, 0, 0), 0);
    CU_ASSERT_EQUAL(mat_at(&m, 0, 1), 100);
    CU_ASSERT_EQUAL(mat_at(&m, 1, 0), 200);
    CU_ASSERT_EQUAL(mat_at(&m, 1, 1), 0);
    matrix_free(&m);
    unlink(path);
}

/* Loads n bytes of text on 8 GPUs; it must fail with -EINVAL and err->msg ==
 * "<path>:<line>: <what>" exactly, and leave m zeroed. */
static void expect_bad_n(const char *text, size_t n, int line, const char *what)
{
    struct matrix m;
    struct matrix_err err = {{0}};
    char path[32], want[256];

    CU_ASSERT_EQUAL_FATAL(write_temp_n(path, text, n), 0);
    snprintf(want, sizeof(want), "%s:%d: %s", path, line, what);
    CU_ASSERT_EQUAL(matrix_load(&m, path, 8, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT_PTR_NULL(m.bytes);
    matrix_free(&m);
    unlink(path);
}

static void expect_bad(const char *text, int line, const char *what)
{
    expect_bad_n(text, strlen(text), line, what);
}

/* Loads path on 8 GPUs; it must fail with -EINVAL, err->msg == want, m zeroed. */
static void expect_bad_path(const char *path, const char *want)
{
    struct matrix m;
    struct matrix_err err = {{0}};

    CU_ASSERT_EQUAL(matrix_load(&m, path, 8, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT_PTR_NULL(m.bytes);
    CU_ASSERT_EQUAL(m.gpus, 0);
}

/* A line needs three fields: "0 1" on line 1. */
static void test_bad_too_few_fields(void)
{
    expect_bad("0 1\n", 1, "expected 'src dst bytes'");
}

/* GPU ids are 0..7 on 8 GPUs: src 9 on line 2 (after a comment line). */
static void test_bad_src_range(void)
{
    expect_bad("# c\n9 1 5\n", 2, "src 9 is not a GPU id (0..7)");
}

/* dst 8 is one past the last GPU. */
static void test_bad_dst_range(void)
{
    expect_bad("0 8 5\n", 1, "dst 8 is not a GPU id (0..7)");
}

/* A negative id is shown as written; a non-number is quoted. */
static void test_bad_src_text(void)
{
    expect_bad("-1 1 5\n", 1, "src -1 is not a GPU id (0..7)");
    expect_bad("0 1 5\nx 1 5\n", 2, "src 'x' is not a GPU id (0..7)");
}

/* Bytes are digits only: "-5" and "1.5" are refused. */
static void test_bad_bytes_negative(void)
{
    expect_bad("0 1 -5\n", 1, "bytes '-5' is not a non-negative integer");
    expect_bad("0 1 1.5\n", 1, "bytes '1.5' is not a non-negative integer");
}

/* 2^64 = 18446744073709551616 does not fit 64 bits. 2^64 - 1 does, but the pairs of a
 * matrix add up to at most 2^63 (MATRIX_TOTAL_MAX): one pair of 2^64 - 1, 2^62 + 2^62 and
 * one byte more, or two pairs of 2^63 (whose sum, 2^64, is 0 in 64 bits) are refused at
 * the line that passes it, whatever the lines between. */
static void test_bad_bytes_overflow(void)
{
    expect_bad("0 1 18446744073709551616\n", 1,
               "bytes '18446744073709551616' is larger than 18446744073709551615");
    expect_bad("0 1 18446744073709551615\n", 1,
               "bytes 18446744073709551615 take the total past 9223372036854775808 (2^63)");
    expect_bad("0 1 4611686018427387904\n1 0 4611686018427387904\n# c\n2 2 0\n0 2 1\n", 5,
               "bytes 1 take the total past 9223372036854775808 (2^63)");
    expect_bad("0 1 9223372036854775808\n1 0 9223372036854775808\n", 2,
               "bytes 9223372036854775808 take the total past 9223372036854775808 (2^63)");
    CU_ASSERT_EQUAL(MATRIX_TOTAL_MAX, 9223372036854775808ull);
}

/* A fourth field before any comment is an error. */
static void test_bad_extra_field(void)
{
    expect_bad("0 1 5 7\n", 1, "extra field '7' after 'src dst bytes'");
}

/* A pair given on line 2 and again on line 4. */
static void test_bad_duplicate(void)
{
    expect_bad("\n0 1 5\n1 2 3\n0 1 6\n", 4, "pair 0 1 given twice (first at line 2)");
}

/* A missing file: "path: cannot open: <strerror(ENOENT)>", -EINVAL. */
static void test_bad_cannot_open(void)
{
    const char *path = "/nonexistent-dir/matrix.txt";
    struct matrix m;
    struct matrix_err err = {{0}};
    char want[256];

    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    CU_ASSERT_EQUAL(matrix_load(&m, path, 8, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT_PTR_NULL(m.bytes);
}

/* ---- fuzzer findings (tests/fuzz/README.md): one test per bug ---- */

/* Bug 3: a NUL ended the line's text, so "0 1 5<NUL> junk" loaded as "0 1 5". Any control
 * byte but tab is an error at its line, comments included. */
static void test_bad_nul(void)
{
    static const char nul[] = "0 1 5\0 junk\n";

    expect_bad_n(nul, sizeof(nul) - 1, 1, "control character 0x00 in line");
    expect_bad("0 1 5\n2 3 4 # \x01\n", 2, "control character 0x01 in line");
    expect_bad("0 1 5\x7f\n", 1, "control character 0x7f in line");
}

/* Bug 5: FORMAT.md separates fields by spaces or tabs only; \v, \f and a '\r' that does
 * not end the line used to pass as blanks. (A '\r' before '\n' is CRLF: layout test.) */
static void test_bad_separator(void)
{
    expect_bad("0\v1 5\n", 1, "control character 0x0b in line");
    expect_bad("0 1\f5\n", 1, "control character 0x0c in line");
    expect_bad("0 1\r5\n", 1, "control character 0x0d in line");
    expect_bad("0 1 5\r\r\n", 1, "control character 0x0d in line");
}

/* Bug 4: lines are read into a 4096-byte buffer. "0 1 " + 4092 zeros is 4096 bytes and
 * loads (with CRLF too); one zero more on line 2 is too long, as is a 1 MB line. */
static void test_bad_long_line(void)
{
    size_t n = 1 << 20;
    char *text = malloc(n + 16), path[32];
    struct matrix m;
    struct matrix_err err = {{0}};

    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL_FATAL(write_temp(path, zero_line(text, "0 1 ", 4092, "\r\n")), 0);
    CU_ASSERT_EQUAL(matrix_load(&m, path, 8, &err), 0);
    CU_ASSERT_EQUAL(m.bytes ? mat_at(&m, 0, 1) : 1, 0);
    matrix_free(&m);
    unlink(path);
    expect_bad(zero_line(text, "\n0 1 ", 4093, "\n"), 2, "line longer than 4096 characters");
    expect_bad(zero_line(text, "\n0 1 ", n, "\n"), 2, "line longer than 4096 characters");
    free(text);
}

/* Bug 4: only regular files are read: /dev/zero (one endless line), a FIFO with no writer
 * (open would block), a folder. Each fails at once, with no line. */
static void test_bad_not_regular(void)
{
    char dir[32] = "/tmp/test_traffic_XXXXXX", fifo[48], want[96];

    expect_bad_path("/dev/zero", "/dev/zero: not a regular file");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    expect_bad_path(dir, want);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
    snprintf(want, sizeof(want), "%s: not a regular file", fifo);
    expect_bad_path(fifo, want);
    unlink(fifo);
    rmdir(dir);
}

/* The dense form of [[0, 5], [17, 0]]: as it is with align 1; rounded up to 16-byte
 * units (nccl-tests' alltoallv_perf) with align 16: 5 -> 16, 17 -> 32. align 0 is
 * -EINVAL; 2^64 - 1 cannot round up to a multiple of 16 (-ERANGE, nothing written). */
static void test_dense_write_text(void)
{
    uint64_t bytes[4] = {0, 5, 17, 0}, big[1] = {UINT64_MAX};
    struct matrix m = {2, bytes}, b = {1, big};
    char buf[128] = {0};
    FILE *f = tmpfile();

    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &m, 1), 0);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &m, 16), 0);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &m, 0), -EINVAL);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &b, 16), -ERANGE);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &b, 1), 0);
    rewind(f);
    CU_ASSERT(fread(buf, 1, sizeof(buf) - 1, f) > 0);
    CU_ASSERT_STRING_EQUAL(buf, "0 5\n17 0\n0 16\n32 0\n18446744073709551615\n");
    fclose(f);
}

/* The 4-GPU matrix of test_matrix_round_trip written dense loads back entry for entry,
 * as the pairs form does. */
static void test_dense_round_trip(void)
{
    uint64_t bytes[16] = {11, 0, 1 << 20, 3, 0, 0, 0, 0, (1ull << 63) - 1048635, 1, 2, 0, 0,
                          0, 0, 42};
    struct matrix m = {4, bytes}, back;
    struct matrix_err err = {{0}};
    char path[32];
    FILE *f;

    CU_ASSERT_EQUAL_FATAL(write_temp(path, ""), 0);
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(matrix_write_dense(f, &m, 1), 0);
    CU_ASSERT_EQUAL(fclose(f), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&back, path, 4, &err), 0);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(back.bytes[i], bytes[i]);
    matrix_free(&back);
    unlink(path);
}

/* Dense with comments, blank lines, tabs and CRLF on 4 GPUs: row i column j = 10 i + j. */
static void test_dense_layout(void)
{
    struct matrix m;
    struct matrix_err err = {{0}};
    char path[32];

    CU_ASSERT_EQUAL_FATAL(write_temp(path, "# from alltoallv_perf\n0 1 2 3\n\n10\t11 12 13 # c\r\n"
                                           "20 21 22 23\n  30 31 32 33  \n# end\n"), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&m, path, 4, &err), 0);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            CU_ASSERT_EQUAL(mat_at(&m, i, j), (uint64_t)(10 * i + j));
    matrix_free(&m);
    unlink(path);
}

/* 3 GPUs: a line of three fields is a pair (matrix.h), so these three lines set three
 * entries, not a dense 3 x 3. */
static void test_dense_three_gpus_are_pairs(void)
{
    struct matrix m;
    struct matrix_err err = {{0}};
    char path[32];

    CU_ASSERT_EQUAL_FATAL(write_temp(path, "0 1 5\n1 2 6\n2 0 7\n"), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&m, path, 3, &err), 0);
    CU_ASSERT_EQUAL(mat_at(&m, 0, 1), 5);
    CU_ASSERT_EQUAL(mat_at(&m, 1, 2), 6);
    CU_ASSERT_EQUAL(mat_at(&m, 2, 0), 7);
    CU_ASSERT_EQUAL(mat_at(&m, 0, 0) + mat_at(&m, 1, 1) + mat_at(&m, 2, 2) + mat_at(&m, 0, 2), 0);
    matrix_free(&m);
    unlink(path);
}

/* A dense row may pass the 4096 bytes of a pairs line: 300 GPUs, each entry 19 digits and
 * a blank (6000 bytes a row), entries 1 (leading zeros). A pairs line that long is still
 * refused (test_bad_long_line). */
static void test_dense_long_rows(void)
{
    const int g = 300;
    const char *one = "0000000000000000001 ";
    size_t n = (size_t)g * (size_t)g * strlen(one) + (size_t)g + 1;
    char *text = malloc(n), path[32];
    struct matrix m;
    struct matrix_err err = {{0}};
    size_t k = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    for (int i = 0; i < g; i++) {
        for (int j = 0; j < g; j++)
            k += (size_t)sprintf(text + k, "%s", one);
        text[k++] = '\n';
    }
    text[k] = '\0';
    CU_ASSERT_EQUAL_FATAL(write_temp(path, text), 0);
    CU_ASSERT_EQUAL_FATAL(matrix_load(&m, path, g, &err), 0);
    uint64_t sum = 0;
    for (size_t i = 0; i < (size_t)g * g; i++)
        sum += m.bytes[i];
    CU_ASSERT_EQUAL(sum, (uint64_t)g * g);
    matrix_free(&m);
    unlink(path);
    free(text);
}

/* Dense errors on 8 GPUs (the first line has 8 fields): a short row, a long one, a bad
 * count, a ninth row, and too few rows (no line: the file as a whole). */
static void test_dense_bad(void)
{
    static const char row[] = "0 1 2 3 4 5 6 7\n";
    char text[512], path[32], want[128];
    struct matrix m;
    struct matrix_err err = {{0}};

    snprintf(text, sizeof(text), "%s1 2 3 4 5\n", row);
    expect_bad(text, 2, "expected 8 byte counts (one per GPU), got 5");
    snprintf(text, sizeof(text), "%s# c\n1 2 3 4 5 6 7 8 9 10\n", row);
    expect_bad(text, 3, "expected 8 byte counts (one per GPU), got more than 8");
    snprintf(text, sizeof(text), "%s0 1 2 -5 4 5 6 7\n", row);
    expect_bad(text, 2, "bytes '-5' is not a non-negative integer");
    text[0] = '\0';
    for (int i = 0; i < 9; i++)
        strcat(text, row);
    expect_bad(text, 9, "row 9 is past the last GPU (a dense matrix has 8 rows, one per GPU)");
    text[0] = '\0';
    for (int i = 0; i < 6; i++)
        strcat(text, row);
    CU_ASSERT_EQUAL_FATAL(write_temp(path, text), 0);
    snprintf(want, sizeof(want), "%s: 6 rows, expected 8 (a dense matrix has one row per GPU)",
             path);
    CU_ASSERT_EQUAL(matrix_load(&m, path, 8, &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT_PTR_NULL(m.bytes);
    unlink(path);
}

/* Bug 1, for the matrix: a path with a newline is shown escaped, so the message is one line. */
static void test_bad_path_escaped(void)
{
    char want[128];

    snprintf(want, sizeof(want), "/nonexistent-dir/a\\nb.txt: cannot open: %s", strerror(ENOENT));
    expect_bad_path("/nonexistent-dir/a\nb.txt", want);
}

int main(void)
{
    static const struct cu_test tests[] = {
        {"alltoall closed form", test_alltoall},
        {"transpose scaled", test_transpose_scaled},
        {"moe bytes by hand", test_moe_by_hand},
        {"moe totals = T*K*hidden*bpe", test_moe_totals},
        {"matrix_write text", test_matrix_write_text},
        {"matrix round trip", test_matrix_round_trip},
        {"matrix comments, blanks, CRLF", test_matrix_load_layout},
        {"bad: too few fields", test_bad_too_few_fields},
        {"bad: src out of range", test_bad_src_range},
        {"bad: dst out of range", test_bad_dst_range},
        {"bad: src not a number", test_bad_src_text},
        {"bad: bytes negative or fractional", test_bad_bytes_negative},
        {"bad: bytes overflow", test_bad_bytes_overflow},
        {"bad: extra field", test_bad_extra_field},
        {"bad: duplicate pair", test_bad_duplicate},
        {"bad: cannot open", test_bad_cannot_open},
        {"bad: NUL and control characters", test_bad_nul},
        {"bad: VT, FF, CR as separators", test_bad_separator},
        {"bad: long line", test_bad_long_line},
        {"bad: not a regular file", test_bad_not_regular},
        {"bad: path escaped", test_bad_path_escaped},
        {"dense: write text, 16-byte units", test_dense_write_text},
        {"dense: round trip", test_dense_round_trip},
        {"dense: comments, blanks, CRLF", test_dense_layout},
        {"dense: 3 GPUs read as pairs", test_dense_three_gpus_are_pairs},
        {"dense: rows past 4096 bytes", test_dense_long_rows},
        {"dense: bad rows", test_dense_bad},
    };
    return cu_run("traffic", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
