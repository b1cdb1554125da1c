/* sweepwhere.h: a sweep's `where =` filter, a point kept only when it holds.
 *
 *   filter  := test { "and" test }
 *   test    := operand op operand
 *   op      := "<" | "<=" | "==" | "!=" | ">=" | ">" | "divides"
 *   operand := section.key | number | word
 *
 * Tokens are separated by blanks (an operator may also touch its operands: a<=b).
 * A section.key operand reads the point's value (a lookup function the caller gives).
 * Numbers compare as doubles; "a divides b" holds when a != 0 and b / a is a whole
 * number. A word (any token that is neither a number nor has a '.') names a value of a
 * key that holds words (schedule.kind, balance.placement, a boolean: true/false) and
 * goes only with == and !=, compared ignoring case. Every test must hold ("and"; a
 * sweep's several `where` lines hold together too). No "or", no parentheses.
 */
#ifndef MOESIM_SWEEPWHERE_H
#define MOESIM_SWEEPWHERE_H

#include <stdbool.h>
#include <stddef.h>

#define SWHERE_TESTS_MAX 16
#define SWHERE_TOKEN_LEN 128

enum swhere_op { SWHERE_LT, SWHERE_LE, SWHERE_EQ, SWHERE_NE, SWHERE_GE, SWHERE_GT,
                 SWHERE_DIVIDES };

struct swhere_operand {
    enum { SWHERE_KEY, SWHERE_NUM, SWHERE_WORD } kind;
    char text[SWHERE_TOKEN_LEN];      /* as written */
    double num;                       /* SWHERE_NUM */
};

struct swhere {
    int n;
    struct {
        struct swhere_operand a, b;
        enum swhere_op op;
    } t[SWHERE_TESTS_MAX];
};

/* text into *w. 0, or -EINVAL with why[n] ("expected an operator after 'x'", ...). */
int swhere_parse(struct swhere *w, const char *text, char *why, size_t n);

/* The key operands of w, one after another: *i from 0; NULL after the last. */
const char *swhere_next_key(const struct swhere *w, int *i);

/* The value of key name at a point: a number in *num, or a word in text[len] (*num NAN);
 * 0, or -ENOENT. */
typedef int (*swhere_lookup)(void *arg, const char *name, double *num, char *text,
                             size_t len);

/* 1 when every test holds, 0 when one fails; -EINVAL with why[n] when a test cannot be
 * decided: a key the lookup does not know, a word against a number, a word with an
 * order or divides. */
int swhere_eval(const struct swhere *w, swhere_lookup fn, void *arg, char *why, size_t n);

#endif
