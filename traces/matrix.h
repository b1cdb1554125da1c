/* matrix.h: the measured traffic matrix file (traffic.pattern = matrix), in two forms.
 *
 * Pairs: one flow per line, `src dst bytes`, global GPU ids, decimal integers (digits
 * only, no sign). Dense (nccl-tests' alltoallv_perf matrix file): one row per source
 * GPU, G byte counts each, row i column j = bytes GPU i sends to GPU j. Both: fields
 * separated by spaces or tabs; '#' starts a comment that runs to the end of the line;
 * blank lines are ignored. The form is that of the first line with fields: G of them
 * (G != 3) is dense, anything else pairs (so a 3-GPU matrix is read as pairs). A pair
 * not listed moves 0 bytes; a pair may be listed once. src == dst is allowed (bytes
 * kept local). The bytes of all pairs add up to at most MATRIX_TOTAL_MAX. Full
 * description: traces/FORMAT.md.
 */
#ifndef MOESIM_MATRIX_H
#define MOESIM_MATRIX_H

#include <stdint.h>
#include <stdio.h>

/* Most bytes of one matrix, all pairs together: 2^63, as a configured layer's collective
 * (sim/config.h, CFG_ASSIGN_MAX), so that sums over its pairs, links and phases fit 64
 * bits. */
#define MATRIX_TOTAL_MAX (1ull << 63)
/* Size of an error message buffer (as sim/config.h's CFG_ERR_MAX). */
#define MATRIX_ERR_MAX 1280

/* A byte matrix: bytes[src * gpus + dst], global GPU ids; the diagonal holds bytes a GPU
 * keeps. Same layout as sim/traffic.h's struct traffic, which sim/ converts it to. */
struct matrix {
    int gpus;
    uint64_t *bytes;          /* gpus * gpus, owned (malloc'd; matrix_free frees it) */
};

struct matrix_err {
    char msg[MATRIX_ERR_MAX]; /* one line: "file:line: what is wrong" */
};

/* Frees m's bytes and zeroes *m; a zeroed *m is a no-op. */
void matrix_free(struct matrix *m);

/* Read path into *m, created for `gpus` GPUs (the caller frees it with
 * matrix_free). Returns 0; -EINVAL for bad input (unreadable file, bad line,
 * gpus < 1) with one line in err->msg, e.g.
 *   "path: cannot open: No such file or directory"
 *   "path:4: expected 'src dst bytes'"
 *   "path:4: src 9 is not a GPU id (0..7)"
 *   "path:4: bytes '-5' is not a non-negative integer"
 *   "path:4: bytes '99999999999999999999' is larger than 18446744073709551615"
 *   "path:4: extra field '7' after 'src dst bytes'"
 *   "path:4: pair 1 2 given twice (first at line 3)"
 *   "path:4: bytes 5 take the total past 9223372036854775808 (2^63)"
 * and for a dense file
 *   "path:3: expected 8 byte counts (one per GPU), got 5"
 *   "path:10: row 9 is past the last GPU (a dense matrix has 8 rows, one per GPU)"
 *   "path: 6 rows, expected 8 (a dense matrix has one row per GPU)"
 * -EIO on a read error, -ENOMEM (both also with err->msg). On error *m is zeroed. */
int matrix_load(struct matrix *m, const char *path, int gpus, struct matrix_err *err);

/* Write a '# src dst bytes' header, then every nonzero pair in src-major order,
 * one `src dst bytes` line each (borrows f and m; does not close f). Loading the
 * output gives m back (when its total keeps to MATRIX_TOTAL_MAX). Returns 0, or -EIO when a write fails. */
int matrix_write(FILE *f, const struct matrix *m);

/* The dense form: G lines of G counts, single spaces, each rounded up to a multiple of
 * align (1: as they are; nccl-tests' alltoallv_perf moves 16-byte units). 0, -EINVAL
 * (align 0), -ERANGE (an entry would round past 2^64 - 1; nothing written), -EIO. */
int matrix_write_dense(FILE *f, const struct matrix *m, uint64_t align);

#endif
