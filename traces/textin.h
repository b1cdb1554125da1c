/* textin.h: the low half of reading a text file a person wrote (sim/config.c's INI files,
 * traces/matrix.c's traffic matrices, traces/rtrace.c's routing traces): open only a
 * regular file, read one bounded line at a time, refuse control bytes, escape text
 * echoed into a one-line message; for the trace formats (traces/FORMAT.md), split a
 * line into blank-separated fields and read decimal ones, wording what is wrong.
 * Nothing here allocates or keeps state between calls; sizes are in bytes.
 */
#ifndef MOESIM_TEXTIN_H
#define MOESIM_TEXTIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Opens path for reading if it is a regular file (or a link to one): a FIFO fails at
 * once (opened O_NONBLOCK, cleared after), a folder or a device such as /dev/zero is
 * refused before a byte is read. 0: *out is open, the caller's to fclose. Else *out is
 * NULL and why[n] holds "not a regular file" (returns -EINVAL) or "cannot open:
 * <strerror>" (returns the -errno of the call that failed: open, fstat, fcntl, fdopen). */
int textin_open(FILE **out, const char *path, char *why, size_t n);

/* Bytes at the start of s[0..len) before the first byte a line may not hold: a control
 * byte (< 0x20, 0x7f) other than tab, NUL and '\r' included. len when there is none. */
size_t textin_clean_len(const char *s, size_t len);

/* Reads one line of fp into buf[max + 2], NUL-terminated, without its '\n' and without
 * one '\r' right before it (or before the end of the file); *len = bytes kept. Reads at
 * most max + 2 bytes of a line, so an endless one costs no more. getc_unlocked: no
 * other thread may use fp meanwhile.
 *   1        a line of at most max bytes, none refused by textin_clean_len
 *   0        end of file, nothing read
 *   -E2BIG   longer than max bytes; fp stands after max + 2 bytes of the line, or
 *            after its '\n' if that came first (callers stop at the first -E2BIG)
 *   -EILSEQ  a line with a refused byte: buf and *len as for 1, the byte is
 *            buf[textin_clean_len(buf, *len)]; -E2BIG wins over it
 *   -errno   read error (-EIO for an errno of 0, E2BIG or EILSEQ)
 * On -E2BIG and -errno, buf and *len hold nothing of use. */
int textin_getline(FILE *fp, char *buf, size_t max, size_t *len);

/* Copies s into out[n] (n >= 1), NUL-terminated, with each control byte written as
 * "\n", "\r", "\t" or "\xNN" (other bytes < 0x20, 0x7f), so text echoed into a message
 * keeps it on one line. Stops before an escape that does not fit whole. */
void textin_escape(char *out, size_t n, const char *s);

/* ---- fields of the trace formats: `#` comments, fields split on spaces and tabs ---- */

/* Where a reader stands, for its messages: msg[n] (n >= 1) receives "path:line: what",
 * or "path: what" when line is 0. Borrows path and msg. */
struct textin_at {
    const char *path;
    uint64_t line;
    char *msg;
    size_t n;
};

/* Writes at->msg from the printf format, escaped by textin_escape so that it stays one
 * line whatever the path holds, cut to fit. Returns rc. */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
int textin_fail(const struct textin_at *at, int rc, const char *fmt, ...);

/* Words a refusal rc < 0 of textin_getline(fp, buf, max, &len) met at at->line:
 * -EILSEQ "control character 0xNN in line" and -E2BIG "line longer than <max>
 * characters" return -EINVAL; any other rc writes "path: read error: <strerror>" and
 * returns -EIO. */
int textin_refusal(const struct textin_at *at, int rc, const char *buf, size_t len, size_t max);

/* Cuts text at its first '#' and splits the rest on spaces and tabs, in place, into
 * field[0 .. max] (max + 1 slots). Returns the number of fields, counting at most
 * max + 1: enough to see one too many. */
int textin_split(char *text, char **field, int max);

/* s as a decimal written with digits only (no sign, blank, point or exponent): 0, and
 * *out; -EINVAL when s is empty or holds another character; -ERANGE above 2^64 - 1. */
int textin_u64(const char *s, uint64_t *out);

/* Field `name` s as an index 0 .. count-1 (count >= 1) into *out: 0, or -EINVAL with
 * "<name> 9 is not <noun> (0..<count-1>)"; s is shown bare when it is an optionally
 * signed run of digits, else quoted, and cut to its first 40 characters. */
int textin_index(const struct textin_at *at, const char *s, const char *name, const char *noun,
                 int count, int *out);

/* Field `name` s as a count 0 .. 2^64-1 into *out: 0, or -EINVAL with "<name> '-5' is
 * not a non-negative integer" or "<name> '<s>' is larger than 18446744073709551615". */
int textin_count(const struct textin_at *at, const char *s, const char *name, uint64_t *out);

#endif
