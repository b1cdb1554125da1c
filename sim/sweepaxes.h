/* sweepaxes.h: the values of one axis of a sweep, from the text of its [sweep] line, and
 * the order in which a sweep's points expand.
 *
 * An axis is comma-separated items, each a value as written or a range:
 *   A..B      A, A+1, ... up to B
 *   A..B+S    A, A+S, A+2S, ... up to B (arithmetic, S > 0)
 *   A..B*F    A, A*F, A*F^2, ... up to B (geometric, A > 0, F > 1)
 * B is included when the sequence meets it (within 1e-9 of B's size for decimals).
 * When A, B and S or F are all integers the values are integers, computed exactly; else
 * decimals, the i-th computed from A directly (A + i*S, A*F^i: no error accumulates) and
 * written with 12 significant digits. Blanks around items are dropped.
 *
 * Points expand like nested loops: axis 0 outermost, the last axis varying fastest.
 */
#ifndef MOESIM_SWEEPAXES_H
#define MOESIM_SWEEPAXES_H

#include <stddef.h>
#include <stdint.h>

#define SWAX_VALUES_MAX 4096          /* values of one axis */
#define SWAX_VALUE_LEN 64             /* bytes of one value, its NUL included */
#define SWAX_POINTS_MAX 1000000       /* points of a whole sweep, before its filters */

/* The values of one axis. */
struct swax_values {
    int n;
    char (*v)[SWAX_VALUE_LEN];        /* n values, owned */
};

/* text into *out. 0; -EINVAL with why[wn] saying what is wrong ("empty axis", "empty
 * value (item 3)", "bad range '1..0+1': the start is past the end", ...); -ENOMEM. */
int swax_parse(struct swax_values *out, const char *text, char *why, size_t wn);
void swax_free(struct swax_values *v);        /* zeroed or parsed; NULL is a no-op */

/* The points of ndims axes of size[0..ndims) (each >= 1): their product, or -E2BIG when
 * it passes SWAX_POINTS_MAX. ndims 0: one point. */
int64_t swax_count(const int *size, int ndims);

/* Point i (0 <= i < swax_count) as the index of each axis's value, digit[0..ndims):
 * the last axis varying fastest. */
void swax_digits(const int *size, int ndims, int64_t i, int *digit);

#endif
