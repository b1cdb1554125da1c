/* textin.h: the low half of reading a text file a person wrote (config.c's INI files,
 * traces/matrix.c's traffic matrices): open only a regular file, read one bounded line
 * at a time, refuse control bytes, escape text echoed into a one-line message.
 * Nothing here allocates or keeps state between calls; sizes are in bytes.
 */
#ifndef MOESIM_TEXTIN_H
#define MOESIM_TEXTIN_H

#include <stddef.h>
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

#endif
