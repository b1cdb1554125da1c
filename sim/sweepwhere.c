/* sweepwhere.c: a sweep's filter, parsed and evaluated (sweepwhere.h). */
#include "sweepwhere.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Operators in the order of enum swhere_op; two-character ones before their prefixes
 * when matching. */
static const char *const op_words[] = { "<", "<=", "==", "!=", ">=", ">", "divides" };
static const char op_chars[] = "<>=!";

/* The next token of *s into tok[SWHERE_TOKEN_LEN]: a run of operator characters, or a run
 * of anything else but blanks and operator characters. 0 at the end; 1; -E2BIG. */
static int next_token(const char **s, char *tok)
{
    const char *p = *s + strspn(*s, " \t");
    size_t n = strchr(op_chars, *p) && *p ? strspn(p, op_chars) : strcspn(p, " \t<>=!");
    if (!n)
        return 0;
    if (n >= SWHERE_TOKEN_LEN)
        return -E2BIG;
    memcpy(tok, p, n);
    tok[n] = '\0';
    *s = p + n;
    return 1;
}

static int op_of(const char *tok)
{
    for (int i = 0; i < (int)(sizeof(op_words) / sizeof(op_words[0])); i++)
        if (!strcmp(tok, op_words[i]))
            return i;
    return -1;
}

static int operand(struct swhere_operand *o, const char *tok, char *why, size_t n)
{
    char *end;
    if (op_of(tok) >= 0 || !strcmp(tok, "and")) {
        snprintf(why, n, "expected a key, number or word, got '%s'", tok);
        return -EINVAL;
    }
    snprintf(o->text, sizeof(o->text), "%s", tok);
    o->num = strtod(tok, &end);
    if (end != tok && !*end && isfinite(o->num))
        o->kind = SWHERE_NUM;
    else
        o->kind = strchr(tok, '.') ? SWHERE_KEY : SWHERE_WORD;
    return 0;
}

int swhere_parse(struct swhere *w, const char *text, char *why, size_t n)
{
    char tok[SWHERE_TOKEN_LEN];
    const char *s = text;
    int r;
    w->n = 0;
    for (;;) {
        if (w->n == SWHERE_TESTS_MAX) {
            snprintf(why, n, "more than %d tests", SWHERE_TESTS_MAX);
            return -EINVAL;
        }
        const char *after = w->n ? "'and'" : "the start";
        if ((r = next_token(&s, tok)) <= 0) {
            if (r < 0)
                snprintf(why, n, "a token longer than %d characters", SWHERE_TOKEN_LEN - 1);
            else
                snprintf(why, n, "expected a test (KEY OP VALUE) after %s", after);
            return -EINVAL;
        }
        if (operand(&w->t[w->n].a, tok, why, n))
            return -EINVAL;
        int op = next_token(&s, tok) == 1 ? op_of(tok) : -1;
        if (op < 0) {
            snprintf(why, n, "expected an operator (< <= == != >= > divides) after '%s'",
                     w->t[w->n].a.text);
            return -EINVAL;
        }
        w->t[w->n].op = op;
        if (next_token(&s, tok) != 1) {
            snprintf(why, n, "expected a value after '%s %s'", w->t[w->n].a.text, op_words[op]);
            return -EINVAL;
        }
        if (operand(&w->t[w->n].b, tok, why, n))
            return -EINVAL;
        w->n++;
        if ((r = next_token(&s, tok)) == 0)
            return 0;
        if (r < 0 || strcmp(tok, "and")) {
            snprintf(why, n, "expected 'and' or the end after '%s', got '%.40s'",
                     w->t[w->n - 1].b.text, r < 0 ? s : tok);
            return -EINVAL;
        }
    }
}

const char *swhere_next_key(const struct swhere *w, int *i)
{
    for (; *i < 2 * w->n; (*i)++) {
        const struct swhere_operand *o = *i % 2 ? &w->t[*i / 2].b : &w->t[*i / 2].a;
        if (o->kind == SWHERE_KEY)
            return (*i)++, o->text;
    }
    return NULL;
}

/* The value of o: a number (*num) or a word (word[SWHERE_TOKEN_LEN], *num NAN). */
static int value(const struct swhere_operand *o, swhere_lookup fn, void *arg, double *num,
                 char *word, char *why, size_t n)
{
    *num = NAN;
    word[0] = '\0';
    if (o->kind == SWHERE_NUM)
        *num = o->num;
    else if (o->kind == SWHERE_WORD)
        snprintf(word, SWHERE_TOKEN_LEN, "%s", o->text);
    else if (fn(arg, o->text, num, word, SWHERE_TOKEN_LEN)) {
        snprintf(why, n, "'%s' is not a key", o->text);
        return -EINVAL;
    }
    return 0;
}

/* One test: 1, 0, or -EINVAL. */
static int test(enum swhere_op op, double x, double y, const char *wx, const char *wy,
                const char *ax, const char *ay, char *why, size_t n)
{
    bool nx = !isnan(x), ny = !isnan(y);   /* a boolean key has both a number and a word */
    if (nx && ny) {
        switch (op) {
        case SWHERE_LT: return x < y;
        case SWHERE_LE: return x <= y;
        case SWHERE_EQ: return x == y;
        case SWHERE_NE: return x != y;
        case SWHERE_GE: return x >= y;
        case SWHERE_GT: return x > y;
        case SWHERE_DIVIDES: return x != 0 && fmod(y, x) == 0;
        }
    }
    if (wx[0] && wy[0] && (op == SWHERE_EQ || op == SWHERE_NE))
        return (strcasecmp(wx, wy) == 0) == (op == SWHERE_EQ);
    if (!(wx[0] && wy[0]))
        snprintf(why, n, "'%s %s %s' compares a number with a word ('%s')", ax, op_words[op], ay,
                 nx ? wy : wx);
    else
        snprintf(why, n, "'%s %s %s': words go only with == and !=", ax, op_words[op], ay);
    return -EINVAL;
}

int swhere_eval(const struct swhere *w, swhere_lookup fn, void *arg, char *why, size_t n)
{
    char wa[SWHERE_TOKEN_LEN], wb[SWHERE_TOKEN_LEN];
    int all = 1;
    for (int i = 0; i < w->n; i++) {
        double a, b;
        if (value(&w->t[i].a, fn, arg, &a, wa, why, n) || value(&w->t[i].b, fn, arg, &b, wb, why, n))
            return -EINVAL;
        int r = test(w->t[i].op, a, b, wa, wb, w->t[i].a.text, w->t[i].b.text, why, n);
        if (r < 0)
            return r;
        all &= r;      /* every test is decided, so a bad one shows on every point */
    }
    return all;
}
