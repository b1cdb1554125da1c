/* test_textin.c: CUnit suite for traces/textin.c. Each expectation is worked by hand from
 * the contract in textin.h and the ASCII table: control bytes are 0x00..0x1f and 0x7f;
 * tab is 0x09, '\n' 0x0a, '\r' 0x0d. Lines are read from tmpfile()s holding exact bytes;
 * files for textin_open are made in a mkdtemp folder. */
#include "cu_run.h"
#include "textin.h"
#include "tmp_dir.h"

#include <CUnit/Basic.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The suite's folder and what is made in it (removed by suite_clean). */
static char tmp_dir[64];
static const char *const tmp_names[] = { "reg", "reg_link", "fifo", "fifo_link", "dir" };

static int suite_init(void) { return tmp_dir_make(tmp_dir, sizeof(tmp_dir), "test_textin"); }

static char *tmp_path(char *out, size_t n, const char *name)
{
    return tmp_dir_path(out, n, tmp_dir, name);
}

static int suite_clean(void)
{
    return tmp_dir_remove(tmp_dir, tmp_names, sizeof(tmp_names) / sizeof(tmp_names[0]));
}

/* ---- textin_escape ---- */

static void expect_escape(const char *s, size_t n, const char *want)
{
    char out[64];
    memset(out, 'Z', sizeof(out));
    textin_escape(out, n, s);
    CU_ASSERT_STRING_EQUAL(out, want);
    for (size_t i = n; i < sizeof(out); i++)
        CU_ASSERT_EQUAL(out[i], 'Z');
}

/* Each class: \n \r \t by letter; other bytes below 0x20 (\v \f ESC 0x01 0x1f) and 0x7f
 * as \xNN, two lower-case hex digits; space, '~', UTF-8 and 0x80..0xff as they are. */
static void test_escape_classes(void)
{
    expect_escape("a\nb\rc\td", 64, "a\\nb\\rc\\td");
    expect_escape("\v\f\x01\x1f", 64, "\\x0b\\x0c\\x01\\x1f");
    expect_escape("\x1b[31m\x7f", 64, "\\x1b[31m\\x7f");
    expect_escape(" ~\xc3\xa9\x80\xff", 64, " ~\xc3\xa9\x80\xff");
    expect_escape("", 64, "");
}

/* Bytes 1..255 in one string: \t \n \r take 2 characters (6), the other 28 below 0x20
 * take 4 (112), 0x20..0x7e 1 each (95), 0x7f 4, 0x80..0xff 1 each (128): 345 in all. */
static void test_escape_every_byte(void)
{
    char s[256], out[400];
    for (int b = 1; b < 256; b++)
        s[b - 1] = (char)b;
    s[255] = '\0';
    textin_escape(out, sizeof(out), s);
    CU_ASSERT_EQUAL(strlen(out), 345);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\\x08\\t\\n\\x0b\\x0c\\r\\x0e"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "}~\\x7f\x80"));
    CU_ASSERT_PTR_NULL(strchr(out, '\n'));
}

/* An escape is written whole or not at all; out keeps n - 1 characters and the NUL.
 * "a\nb" is "a\\nb", 4 characters: n 5 holds it, n 4 stops before 'b', n 3 before "\\n". */
static void test_escape_truncates(void)
{
    expect_escape("a\nb", 5, "a\\nb");
    expect_escape("a\nb", 4, "a\\n");
    expect_escape("a\nb", 3, "a");
    expect_escape("\x01", 5, "\\x01");
    expect_escape("\x01", 4, "");
    expect_escape("abc", 1, "");
}

/* ---- textin_clean_len ---- */

/* Refused alone: 0x00..0x08 (9), 0x0a..0x1f (22) and 0x7f: 32 of the 256 bytes. */
static void test_clean_len_bytes(void)
{
    int refused = 0;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        refused += textin_clean_len(&c, 1) == 0;
    }
    CU_ASSERT_EQUAL(refused, 32);
    CU_ASSERT_EQUAL(textin_clean_len("\t", 1), 1);
    CU_ASSERT_EQUAL(textin_clean_len(" ", 1), 1);
    CU_ASSERT_EQUAL(textin_clean_len("\x80", 1), 1);
    CU_ASSERT_EQUAL(textin_clean_len("\xff", 1), 1);
    CU_ASSERT_EQUAL(textin_clean_len("\x7f", 1), 0);
}

/* The offset of the first refused byte, NUL included; len bytes and no more are looked at.
 * A '\r' is refused wherever it is: only textin_getline drops the one that ends a line. */
static void test_clean_len_offset(void)
{
    CU_ASSERT_EQUAL(textin_clean_len("ab\tc", 4), 4);
    CU_ASSERT_EQUAL(textin_clean_len("ab\0c", 4), 2);
    CU_ASSERT_EQUAL(textin_clean_len("ab\rc", 4), 2);
    CU_ASSERT_EQUAL(textin_clean_len("abc\r", 4), 3);
    CU_ASSERT_EQUAL(textin_clean_len("a\v\x01", 3), 1);
    CU_ASSERT_EQUAL(textin_clean_len("ab\x01", 2), 2);
    CU_ASSERT_EQUAL(textin_clean_len("", 0), 0);
}

/* ---- textin_getline, max = 4: buf[6], the rest of buf must stay 'Z' ---- */

#define MAX 4

/* A file holding the n bytes of a string literal s, NULs included. */
#define BYTES_FILE(s) bytes_file((s), sizeof(s) - 1)

static FILE *bytes_file(const char *bytes, size_t n)
{
    FILE *f = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL_FATAL(fwrite(bytes, 1, n, f), n);
    rewind(f);
    return f;
}

/* Next line of f: expects rc and, for 1 and -EILSEQ, the n bytes of want and *len = n. */
static void expect_line(FILE *f, size_t max, int rc, const char *want, size_t n)
{
    char buf[16];
    size_t len = 99;
    memset(buf, 'Z', sizeof(buf));
    CU_ASSERT_EQUAL(textin_getline(f, buf, max, &len), rc);
    if (rc == 1 || rc == -EILSEQ) {
        CU_ASSERT_EQUAL(len, n);
        CU_ASSERT(len == n && !memcmp(buf, want, n) && buf[n] == '\0');
    }
    for (size_t i = max + 2; i < sizeof(buf); i++)
        CU_ASSERT_EQUAL(buf[i], 'Z');
}

/* Up to the limit: 4 bytes, 4 bytes + CRLF, 4 bytes with no '\n' before the end. */
static void test_getline_at_limit(void)
{
    FILE *f = BYTES_FILE("abcd\nabcd\r\nabcd");
    expect_line(f, MAX, 1, "abcd", 4);
    expect_line(f, MAX, 1, "abcd", 4);
    expect_line(f, MAX, 1, "abcd", 4);
    expect_line(f, MAX, 0, NULL, 0);
    fclose(f);
}

/* One byte past: "abcde" is read to its '\n' (byte 6 of the line, within max + 2), so
 * "xy" is next. "abcde\r\n" and "abcdefgh\n": reading stops after max + 2 = 6 bytes of
 * the line, "abcde\r" and "abcdef", leaving "\n" (read next as an empty line) and "gh\n";
 * the second stop is at offset 6 + 3 + 7 + 6 = 22. */
static void test_getline_past_limit(void)
{
    FILE *f = BYTES_FILE("abcde\nxy\nabcde\r\nabcdefgh\n");
    expect_line(f, MAX, -E2BIG, NULL, 0);
    expect_line(f, MAX, 1, "xy", 2);
    expect_line(f, MAX, -E2BIG, NULL, 0);
    expect_line(f, MAX, 1, "", 0);
    expect_line(f, MAX, -E2BIG, NULL, 0);
    CU_ASSERT_EQUAL(ftell(f), 22);
    expect_line(f, MAX, 1, "gh", 2);
    fclose(f);
}

/* max 0: only an empty line, CRLF or not, fits. */
static void test_getline_max_zero(void)
{
    FILE *f = BYTES_FILE("\n\r\na\n");
    expect_line(f, 0, 1, "", 0);
    expect_line(f, 0, 1, "", 0);
    expect_line(f, 0, -E2BIG, NULL, 0);
    expect_line(f, 0, 0, NULL, 0);
    fclose(f);
}

/* One '\r' ends a line before '\n' or the end of the file; one anywhere else is refused:
 * "a\rb" at offset 1, and in "ab\r\r" the first of the two at offset 2. */
static void test_getline_crlf(void)
{
    FILE *f = BYTES_FILE("ab\r\n\r\na\rb\nab\r\r\nab\r");
    expect_line(f, MAX, 1, "ab", 2);
    expect_line(f, MAX, 1, "", 0);
    expect_line(f, MAX, -EILSEQ, "a\rb", 3);
    expect_line(f, MAX, -EILSEQ, "ab\r", 3);
    expect_line(f, MAX, 1, "ab", 2);
    expect_line(f, MAX, 0, NULL, 0);
    fclose(f);
}

/* A NUL is a refused byte, kept in buf and counted in *len, not the end of the line;
 * the line after it reads as usual. */
static void test_getline_nul(void)
{
    char buf[MAX + 2];
    size_t len = 0;
    FILE *f = BYTES_FILE("a\0b\nc\n");
    CU_ASSERT_EQUAL(textin_getline(f, buf, MAX, &len), -EILSEQ);
    CU_ASSERT_EQUAL(len, 3);
    CU_ASSERT_EQUAL(textin_clean_len(buf, len), 1);
    CU_ASSERT(!memcmp(buf, "a\0b\0", 4));
    expect_line(f, MAX, 1, "c", 1);
    fclose(f);
}

/* Tab passes; \v, \f, ESC, 0x7f do not; a long line is -E2BIG whatever it holds. Blank
 * lines are lines of 0 bytes; an empty file is at its end at once. */
static void test_getline_bytes(void)
{
    FILE *f = BYTES_FILE("\ta b\n\v\n\f\n\x1b\n\x7f\n\x01" "bcde\n\n");
    expect_line(f, MAX, 1, "\ta b", 4);
    expect_line(f, MAX, -EILSEQ, "\v", 1);
    expect_line(f, MAX, -EILSEQ, "\f", 1);
    expect_line(f, MAX, -EILSEQ, "\x1b", 1);
    expect_line(f, MAX, -EILSEQ, "\x7f", 1);
    expect_line(f, MAX, -E2BIG, NULL, 0);
    expect_line(f, MAX, 1, "", 0);
    expect_line(f, MAX, 0, NULL, 0);
    fclose(f);
    f = BYTES_FILE("");
    expect_line(f, MAX, 0, NULL, 0);
    fclose(f);
}

/* A stream open for writing only fails its first read: glibc sets errno to EBADF. */
static void test_getline_read_error(void)
{
    char p[128], buf[MAX + 2];
    size_t len = 0;
    FILE *f = fopen(tmp_path(p, sizeof(p), "reg"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(textin_getline(f, buf, MAX, &len), -EBADF);
    fclose(f);
}

/* ---- textin_open ---- */

/* Opens path; expects rc, why (checked when rc != 0) and *out NULL exactly on failure. */
static void expect_open(const char *path, int rc, const char *why)
{
    FILE *f = stdin;                /* anything but NULL */
    char got[64] = "";
    CU_ASSERT_EQUAL(textin_open(&f, path, got, sizeof(got)), rc);
    if (rc) {
        CU_ASSERT_PTR_NULL(f);
        CU_ASSERT_STRING_EQUAL(got, why);
    } else {
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fclose(f);
    }
}

/* A regular file, and a link to one, open blocking (O_NONBLOCK cleared) and close-on-exec,
 * and read from the first byte. */
static void test_open_regular(void)
{
    char p[128], l[128], buf[MAX + 2];
    size_t len = 0;
    FILE *f = NULL, *w = fopen(tmp_path(p, sizeof(p), "reg"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    fputs("x\n", w);
    fclose(w);
    CU_ASSERT_EQUAL_FATAL(textin_open(&f, p, buf, sizeof(buf)), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fcntl(fileno(f), F_GETFL) & O_NONBLOCK, 0);
    CU_ASSERT_EQUAL(fcntl(fileno(f), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    CU_ASSERT_EQUAL(textin_getline(f, buf, MAX, &len), 1);
    CU_ASSERT_STRING_EQUAL(buf, "x");
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(symlink(p, tmp_path(l, sizeof(l), "reg_link")), 0);
    expect_open(l, 0, NULL);
}

/* A FIFO with no writer (open would block without O_NONBLOCK; alarm turns a hang into
 * a failed run), a link to it, a folder and /dev/zero: -EINVAL, unread. why is cut to
 * n - 1 = 7 characters for n = 8. No descriptor is left open: the next open gets the
 * same number as before. */
static void test_open_not_regular(void)
{
    char p[128], l[128], why[8];
    FILE *f = NULL;
    int fd0 = open("/dev/null", O_RDONLY), fd1;
    close(fd0);
    alarm(10);
    CU_ASSERT_EQUAL_FATAL(mkfifo(tmp_path(p, sizeof(p), "fifo"), 0600), 0);
    expect_open(p, -EINVAL, "not a regular file");
    CU_ASSERT_EQUAL_FATAL(symlink(p, tmp_path(l, sizeof(l), "fifo_link")), 0);
    expect_open(l, -EINVAL, "not a regular file");
    alarm(0);
    CU_ASSERT_EQUAL_FATAL(mkdir(tmp_path(p, sizeof(p), "dir"), 0700), 0);
    expect_open(p, -EINVAL, "not a regular file");
    expect_open("/dev/zero", -EINVAL, "not a regular file");
    CU_ASSERT_EQUAL(textin_open(&f, p, why, sizeof(why)), -EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "not a r");
    fd1 = open("/dev/null", O_RDONLY);
    CU_ASSERT_EQUAL(fd1, fd0);
    close(fd1);
}

/* A missing file: open's own errno, and its text after "cannot open: ". */
static void test_open_missing(void)
{
    char p[128], want[64];
    snprintf(want, sizeof(want), "cannot open: %s", strerror(ENOENT));
    expect_open(tmp_path(p, sizeof(p), "missing"), -ENOENT, want);
    snprintf(want, sizeof(want), "cannot open: %s", strerror(ENOTDIR));
    expect_open("/dev/null/x", -ENOTDIR, want);
}

/* ---- fields of the trace formats ---- */

/* Digits only: 0 and 2^64 - 1 = 18446744073709551615 read; 2^64 is -ERANGE; empty, a
 * sign, a blank, hex, an exponent are -EINVAL, and a non-digit wins over the range. */
static void test_u64(void)
{
    uint64_t v = 7;
    CU_ASSERT(textin_u64("0", &v) == 0 && v == 0);
    CU_ASSERT(textin_u64("007", &v) == 0 && v == 7);
    CU_ASSERT(textin_u64("18446744073709551615", &v) == 0 && v == UINT64_MAX);
    CU_ASSERT_EQUAL(textin_u64("18446744073709551616", &v), -ERANGE);
    CU_ASSERT_EQUAL(textin_u64("99999999999999999999999", &v), -ERANGE);
    CU_ASSERT_EQUAL(v, UINT64_MAX);                   /* left alone on error */
    static const char *const bad[] = { "", "+1", "-1", "1 ", " 1", "0x1", "1e3", "1.0",
                                       "99999999999999999999x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(textin_u64(bad[i], &v), -EINVAL);
}

/* "a b\tc # d e": the comment goes, three fields; with max 2 the count stops at 3 (one
 * too many seen); a line of blanks or only a comment has none; '#' inside a field cuts it. */
static void test_split(void)
{
    char t1[] = " a b\tc # d e", t2[] = "a b c d e", t3[] = " \t # x", t4[] = "ab#c d";
    char *f[4];
    CU_ASSERT_EQUAL_FATAL(textin_split(t1, f, 3), 3);
    CU_ASSERT(!strcmp(f[0], "a") && !strcmp(f[1], "b") && !strcmp(f[2], "c"));
    CU_ASSERT_EQUAL_FATAL(textin_split(t2, f, 2), 3);
    CU_ASSERT_STRING_EQUAL(f[2], "c");
    CU_ASSERT_EQUAL(textin_split(t3, f, 3), 0);
    CU_ASSERT_EQUAL_FATAL(textin_split(t4, f, 3), 1);
    CU_ASSERT_STRING_EQUAL(f[0], "ab");
}

/* "path: what" at line 0, "path:5: what" at line 5, the rc passed through; a newline in
 * the path is escaped; a 12-byte msg keeps 11 characters. */
static void test_fail(void)
{
    char msg[64];
    struct textin_at at = { "p", 0, msg, sizeof(msg) };
    CU_ASSERT_EQUAL(textin_fail(&at, -EINVAL, "x %d", 1), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p: x 1");
    at.line = 5;
    CU_ASSERT_EQUAL(textin_fail(&at, -EIO, "y"), -EIO);
    CU_ASSERT_STRING_EQUAL(msg, "p:5: y");
    at.path = "a\nb";
    textin_fail(&at, 0, "z");
    CU_ASSERT_STRING_EQUAL(msg, "a\\nb:5: z");
    at.n = 12;
    textin_fail(&at, 0, "0123456789");
    CU_ASSERT_STRING_EQUAL(msg, "a\\nb:5: 012");
}

/* Ids 0..count-1; an integer-looking field bare, anything else quoted and cut to 40. */
static void test_index_count(void)
{
    char msg[128], long_field[60];
    struct textin_at at = { "p", 3, msg, sizeof(msg) };
    int id = -1;
    uint64_t v = 0;
    CU_ASSERT(textin_index(&at, "7", "dst", "a GPU id", 8, &id) == 0 && id == 7);
    CU_ASSERT_EQUAL(textin_index(&at, "8", "dst", "a GPU id", 8, &id), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:3: dst 8 is not a GPU id (0..7)");
    CU_ASSERT_EQUAL(textin_index(&at, "-0", "e", "an expert", 1, &id), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:3: e -0 is not an expert (0..0)");
    memset(long_field, 'x', sizeof(long_field) - 1);
    long_field[sizeof(long_field) - 1] = '\0';
    CU_ASSERT_EQUAL(textin_index(&at, long_field, "src", "a GPU id", 2, &id), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:3: src 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is not a "
                                "GPU id (0..1)");
    CU_ASSERT(textin_count(&at, "18446744073709551615", "n", &v) == 0 && v == UINT64_MAX);
    CU_ASSERT_EQUAL(textin_count(&at, "18446744073709551616", "n", &v), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:3: n '18446744073709551616' is larger than "
                                "18446744073709551615");
    CU_ASSERT_EQUAL(textin_count(&at, "-5", "n", &v), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:3: n '-5' is not a non-negative integer");
}

/* textin_getline's three refusals: the first control byte (0x01 after "ab"), the limit,
 * and a read error, which names no line and returns -EIO. */
static void test_refusal(void)
{
    char msg[128], want[128];
    struct textin_at at = { "p", 4, msg, sizeof(msg) };
    CU_ASSERT_EQUAL(textin_refusal(&at, -EILSEQ, "ab\x01\x02", 4, 10), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:4: control character 0x01 in line");
    CU_ASSERT_EQUAL(textin_refusal(&at, -E2BIG, "", 0, 10), -EINVAL);
    CU_ASSERT_STRING_EQUAL(msg, "p:4: line longer than 10 characters");
    CU_ASSERT_EQUAL(textin_refusal(&at, -EISDIR, "", 0, 10), -EIO);
    snprintf(want, sizeof(want), "p: read error: %s", strerror(EISDIR));
    CU_ASSERT_STRING_EQUAL(msg, want);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "escape: each control byte class", test_escape_classes },
        { "escape: bytes 1..255", test_escape_every_byte },
        { "escape: cut before a whole escape", test_escape_truncates },
        { "clean_len: refused bytes", test_clean_len_bytes },
        { "clean_len: offset of the first", test_clean_len_offset },
        { "getline: exactly at the limit", test_getline_at_limit },
        { "getline: past the limit", test_getline_past_limit },
        { "getline: max 0", test_getline_max_zero },
        { "getline: CRLF and stray CR", test_getline_crlf },
        { "getline: NUL", test_getline_nul },
        { "getline: tab, control bytes, blank lines", test_getline_bytes },
        { "getline: read error", test_getline_read_error },
        { "open: regular file and link", test_open_regular },
        { "open: FIFO, folder, /dev/zero", test_open_not_regular },
        { "open: missing file", test_open_missing },
        { "u64: digits only", test_u64 },
        { "split: comment, blanks, one too many", test_split },
        { "fail: path, line, escaped, cut", test_fail },
        { "index and count: wording", test_index_count },
        { "refusal: control byte, long line, read error", test_refusal },
    };
    return cu_run("textin", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
