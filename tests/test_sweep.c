/* test_sweep.c: sim/sweepaxes.c, sim/sweepwhere.c and sim/sweep.c. Expected values are
 * worked by hand from the grammar in their headers: a range's values are its closed
 * form (A + iS, A F^i up to B), a sweep's points are the product of its axes in nested
 * loop order (the last written fastest), a zip is one axis, a filter drops what fails it.
 */
#include "cu_run.h"
#include "sweep.h"
#include "tmp_dir.h"

#include <CUnit/Basic.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static int suite_init(void) { return tmp_dir_make(dir, sizeof(dir), "test_sweep"); }

static int suite_clean(void)
{
    static const char *const names[] = { "base.ini", "s.ini" };
    return tmp_dir_remove(dir, names, 2);
}

/* The values of text, joined by '|', into out[n]; or "ERR: why". */
static const char *values(const char *text, char *out, size_t n)
{
    struct swax_values v = { 0 };
    char why[160];
    out[0] = '\0';
    if (swax_parse(&v, text, why, sizeof(why))) {
        snprintf(out, n, "ERR: %s", why);
        return out;
    }
    for (int i = 0; i < v.n; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "|" : "", v.v[i]);
    swax_free(&v);
    return out;
}

#define EXPECT_VALUES(text, want)                                  \
    do {                                                           \
        char got_[512];                                            \
        values(text, got_, sizeof(got_));                          \
        CU_ASSERT_STRING_EQUAL(got_, want);                        \
        if (strcmp(got_, want))                                    \
            fprintf(stderr, "\n  %s: got %s\n", text, got_);       \
    } while (0)

/* Lists as written; A..B+S = A, A+S, ... <= B; A..B*F = A F^i <= B; A..B steps by 1. */
static void test_lists_and_ranges(void)
{
    EXPECT_VALUES("1, 2,4 ,8", "1|2|4|8");
    EXPECT_VALUES("dualpipe,1f1b", "dualpipe|1f1b");
    EXPECT_VALUES("2..64*2", "2|4|8|16|32|64");
    EXPECT_VALUES("2..60*2", "2|4|8|16|32");           /* 64 > 60 */
    EXPECT_VALUES("8..32+8", "8|16|24|32");
    EXPECT_VALUES("8..30+8", "8|16|24");
    EXPECT_VALUES("1..3", "1|2|3");
    EXPECT_VALUES("5..5*2", "5");
    EXPECT_VALUES("1, 4..6, 10", "1|4|5|6|10");
    /* decimals: 0.1 + i 0.1 is 0.30000000000000004 at i = 2, written to 12 digits */
    EXPECT_VALUES("0.1..0.3+0.1", "0.1|0.2|0.3");
    EXPECT_VALUES("0.5..4*2", "0.5|1|2|4");
}

static void test_bad_axes(void)
{
    char got[256];
    static const char *const bad[] = { "", "  ", "1,,2", "1,", "4..2+1", "1..8+0", "1..8+-1",
                                       "1..8*1", "0..8*2", "a..8", "1..b", "1..8+x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        values(bad[i], got, sizeof(got));
        CU_ASSERT(!strncmp(got, "ERR: ", 5));
        if (strncmp(got, "ERR: ", 5))
            fprintf(stderr, "\n  '%s' accepted: %s\n", bad[i], got);
    }
    CU_ASSERT(strstr(values("", got, sizeof(got)), "empty axis") != NULL);
    CU_ASSERT(strstr(values("4..2+1", got, sizeof(got)), "the start is past the end") != NULL);
    CU_ASSERT(strstr(values("1..8*1", got, sizeof(got)), "factor must be more than 1") != NULL);
    /* 1..5000: more values than SWAX_VALUES_MAX = 4096 */
    CU_ASSERT(strstr(values("1..5000", got, sizeof(got)), "more than 4096 values") != NULL);
}

/* Sizes {2, 3}: 6 points; i = 3 d0 + d1, the last fastest. */
static void test_digits(void)
{
    const int size[] = { 2, 3 }, big[] = { 1000, 1000, 2 };
    int d[2];
    CU_ASSERT_EQUAL(swax_count(size, 2), 6);
    CU_ASSERT_EQUAL(swax_count(size, 0), 1);
    CU_ASSERT_EQUAL(swax_count(big, 3), -E2BIG);      /* 2e6 > SWAX_POINTS_MAX */
    for (int i = 0; i < 6; i++) {
        swax_digits(size, 2, i, d);
        CU_ASSERT_EQUAL(d[0], i / 3);
        CU_ASSERT_EQUAL(d[1], i % 3);
    }
}

/* ---- filters ---- */

/* A lookup over "a.x", "a.y" (numbers) and "a.k" (a word). */
struct vals {
    double x, y;
    const char *k;
};

static int look(void *arg, const char *name, double *num, char *text, size_t len)
{
    const struct vals *v = arg;
    *num = NAN;
    text[0] = '\0';
    if (!strcmp(name, "a.x"))
        *num = v->x;
    else if (!strcmp(name, "a.y"))
        *num = v->y;
    else if (!strcmp(name, "a.k"))
        snprintf(text, len, "%s", v->k);
    else
        return -ENOENT;
    return 0;
}

static int eval(const char *text, double x, double y, const char *k)
{
    struct swhere w;
    struct vals v = { x, y, k };
    char why[160];
    if (swhere_parse(&w, text, why, sizeof(why)))
        return -100;
    return swhere_eval(&w, look, &v, why, sizeof(why));
}

static void test_filters(void)
{
    CU_ASSERT_EQUAL(eval("a.x divides a.y", 8, 16, ""), 1);
    CU_ASSERT_EQUAL(eval("a.x divides a.y", 8, 12, ""), 0);
    CU_ASSERT_EQUAL(eval("a.x divides a.y", 0, 12, ""), 0);       /* 0 divides nothing */
    CU_ASSERT_EQUAL(eval("a.x<=4", 4, 0, ""), 1);
    CU_ASSERT_EQUAL(eval("a.x < 4", 4, 0, ""), 0);
    CU_ASSERT_EQUAL(eval("a.x >= a.y and a.x != 3", 3, 2, ""), 0);
    CU_ASSERT_EQUAL(eval("a.x >= a.y and a.x != 3", 5, 2, ""), 1);
    CU_ASSERT_EQUAL(eval("a.x == 2 and a.k == 1F1B", 2, 0, "1f1b"), 1);  /* words: any case */
    CU_ASSERT_EQUAL(eval("a.k != dualpipe", 0, 0, "dualpipe"), 0);
    CU_ASSERT_EQUAL(eval("16 > a.x", 8, 0, ""), 1);
    /* parse errors */
    static const char *const bad[] = { "", "a.x", "a.x <", "a.x 4", "a.x < 4 or a.y > 1",
                                       "a.x < 4 and", "< 4", "a.x < and" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(eval(bad[i], 1, 1, ""), -100);
    /* undecidable: an unknown key, a word against a number, a word with an order */
    CU_ASSERT_EQUAL(eval("a.z < 4", 1, 1, ""), -EINVAL);
    CU_ASSERT_EQUAL(eval("a.k < 4", 1, 1, "x"), -EINVAL);
    CU_ASSERT_EQUAL(eval("a.k < abc", 1, 1, "x"), -EINVAL);
}

/* ---- sweep files ---- */

static const char base_text[] =
    "[cluster]\nnodes = 1\ngpus_per_node = 8\n[model]\nexperts = 8\ntop_k = 2\n";

static void write_file(const char *name, const char *text)
{
    char p[256];
    FILE *f = fopen(tmp_dir_path(p, sizeof(p), dir, name), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* Writes s.ini = base = base.ini + body, loads it into s. */
static int load(struct sweep *s, const char *body, const char *const *sets, int nsets,
                struct cfg_err *err)
{
    char p[256], text[2048];
    write_file("base.ini", base_text);
    snprintf(text, sizeof(text), "[sweep]\nbase = base.ini\n%s", body);
    write_file("s.ini", text);
    const char *files[] = { tmp_dir_path(p, sizeof(p), dir, "s.ini") };
    memset(s, 0, sizeof(*s));
    return sweep_load(s, files, 1, sets, nsets, err);
}

/* Point p's values of every axis joined by ' '. */
static const char *point(const struct sweep *s, int p, char *out, size_t n)
{
    out[0] = '\0';
    for (int a = 0; a < s->naxes; a++)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", a ? " " : "", sweep_value(s, p, a));
    return out;
}

/* 4 top_k x 2 expert counts = 8 points, experts fastest. */
static void test_expand_order(void)
{
    struct sweep s;
    struct cfg_err err;
    char got[128];
    int rc = load(&s, "model.top_k = 1,2,4,8\nmodel.experts = 8,16\n", NULL, 0, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.npoints, 8);
    CU_ASSERT_EQUAL(s.ndims, 2);
    CU_ASSERT_FALSE(s.step);
    static const char *const want[] = { "1 8", "1 16", "2 8", "2 16", "4 8", "4 16", "8 8",
                                        "8 16" };
    for (int p = 0; p < 8; p++)
        CU_ASSERT_STRING_EQUAL(point(&s, p, got, sizeof(got)), want[p]);
    /* point 6's config: top_k 8 of 8 experts */
    struct config c;
    CU_ASSERT_EQUAL(sweep_config(&s, 6, &c, &err), 0);
    CU_ASSERT_EQUAL(c.model.top_k, 8);
    CU_ASSERT_EQUAL(c.model.experts, 8);
    sweep_free(&s);
}

/* top_k 1,2 then experts and their width zipped (3 each): 2 x 3 = 6 points; the zip sits
 * at the place of model.experts, the first of it written. */
static void test_zip(void)
{
    struct sweep s;
    struct cfg_err err;
    char got[128];
    int rc = load(&s, "model.top_k = 1,2\nmodel.experts = 8,16,32\n"
                      "model.expert_ffn_hidden = 1024,512,256\n"
                      "zip = model.experts model.expert_ffn_hidden\n", NULL, 0, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.npoints, 6);
    CU_ASSERT_EQUAL(s.ndims, 2);
    CU_ASSERT_STRING_EQUAL(point(&s, 0, got, sizeof(got)), "1 8 1024");
    CU_ASSERT_STRING_EQUAL(point(&s, 1, got, sizeof(got)), "1 16 512");
    CU_ASSERT_STRING_EQUAL(point(&s, 5, got, sizeof(got)), "2 32 256");
    sweep_free(&s);
}

/* Filters see derived keys: nodes 1, 2 of 8 GPUs give dp 8, 16; ep 8, 16 kept where ep | dp:
 * (1, 8), (2, 8), (2, 16) - 3 of 4. A second where line drops top_k 4 (<= 2). */
static void test_filter_points(void)
{
    struct sweep s;
    struct cfg_err err;
    char got[128];
    int rc = load(&s, "cluster.nodes = 1,2\nparallel.ep = 8,16\nmodel.top_k = 2,4\n"
                      "where = parallel.ep divides parallel.dp\nwhere = model.top_k <= 2\n",
                  NULL, 0, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(s.npoints, 3);
    CU_ASSERT_STRING_EQUAL(point(&s, 0, got, sizeof(got)), "1 8 2");
    CU_ASSERT_STRING_EQUAL(point(&s, 1, got, sizeof(got)), "2 8 2");
    CU_ASSERT_STRING_EQUAL(point(&s, 2, got, sizeof(got)), "2 16 2");
    sweep_free(&s);
}

/* A point the rules refuse stays (its run reports it): top_k 16 of 8 experts. The user's
 * --set comes before the axes: top_k=4 is overridden by the axis. */
static void test_refused_point_stays(void)
{
    struct sweep s;
    struct cfg_err err;
    struct config c;
    const char *sets[] = { "model.top_k=4", "model.experts=16" };
    int rc = load(&s, "model.top_k = 1,32\n", sets, 2, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.npoints, 2);
    CU_ASSERT_EQUAL(sweep_config(&s, 0, &c, &err), 0);
    CU_ASSERT_EQUAL(c.model.top_k, 1);
    CU_ASSERT_EQUAL(c.model.experts, 16);
    CU_ASSERT_EQUAL(sweep_config(&s, 1, &c, &err), -EINVAL);
    CU_ASSERT(strstr(err.msg, "model.top_k") != NULL);
    sweep_free(&s);
}

/* Errors name "<dir>/s.ini:<line>: <key>: what"; line 1 is [sweep], line 2 base. */
static void expect_err(const char *body, const char *want)
{
    struct sweep s;
    struct cfg_err err;
    char full[512];
    snprintf(full, sizeof(full), "%s/s.ini:%s", dir, want);
    int rc = load(&s, body, NULL, 0, &err);
    CU_ASSERT_EQUAL(rc, -EINVAL);
    CU_ASSERT(!strncmp(err.msg, full, strlen(full)));
    if (strncmp(err.msg, full, strlen(full)))
        fprintf(stderr, "\n  got:  %s\n  want: %s...\n", err.msg, full);
}

static void test_bad_files(void)
{
    expect_err("model.topk = 1,2\n", "3: model.topk: unknown key; did you mean model.top_k?");
    expect_err("model.top_k = 1\nmodel.experts =\n", "4: model.experts: empty axis");
    expect_err("cluster.nodes = 64..2*2\n", "3: cluster.nodes: bad range '64..2*2'");
    expect_err("model.top_k = 1,abc\n", "3: model.top_k: 'abc' is not");
    expect_err("model.top_k = 1,2\nmodel.top_k = 4\n", "4: model.top_k: repeated axis");
    expect_err("model.experts = 8,16\nmodel.expert_ffn_hidden = 1,2,3\n"
               "zip = model.experts model.expert_ffn_hidden\n",
               "5: zip: model.expert_ffn_hidden: 3 values, but model.experts has 2");
    expect_err("model.experts = 8,16\nzip = model.experts model.top_k\n",
               "4: zip: model.top_k: not an axis");
    expect_err("model.top_k = 1,2\nwhere = model.top_k <\n", "4: where: expected a value");
    expect_err("model.top_k = 1,2\nwhere = model.topk < 2\n",
               "4: model.topk: unknown key; did you mean model.top_k?");
    expect_err("model.top_k = 1,2\nwhere = model.top_k < dualpipe\n",
               "4: where: 'model.top_k < dualpipe' compares a number with a word");
    expect_err("model.top_k = 1,2\nwhere = model.top_k > 8\n", "4: where: the filters drop");
    expect_err("schedule.kind = none,1f1b\n", "3: schedule.kind: the sweep mixes layer runs "
               "(schedule.kind none) and training steps");
    expect_err("schedule.kind = decode,1f1b\n", "3: schedule.kind: the sweep mixes inference "
               "steps (prefill, decode) and training steps");
    expect_err("schedule.kind = prefill,none\n", "3: schedule.kind: the sweep mixes inference "
               "steps (prefill, decode) and layer runs (schedule.kind none)");
    expect_err("top_k = 1\n", "3: top_k: unknown [sweep] key");
}

/* The kind of the points: prefill and decode are one (inference steps, one CSV); the
 * config the header is made of is of that kind, read from the first point or the base. */
static void test_kinds(void)
{
    struct sweep s;
    struct cfg_err err;
    int rc = load(&s, "schedule.kind = prefill,decode\n", NULL, 0, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.npoints, 2);
    CU_ASSERT(s.step && s.serve);
    CU_ASSERT_EQUAL(s.first->schedule.kind, SCHED_PREFILL);
    sweep_free(&s);
    const char *sets[] = { "schedule.kind=decode" };     /* no point read: the base's kind */
    rc = load(&s, "serve.batch = 1,2,4\n", sets, 1, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(s.npoints, 3);
    CU_ASSERT(s.step && s.serve);
    CU_ASSERT_EQUAL(s.first->schedule.kind, SCHED_DECODE);
    sweep_free(&s);
    rc = load(&s, "schedule.kind = 1f1b,gpipe\n", NULL, 0, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(s.step && !s.serve);
    sweep_free(&s);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "lists and ranges", test_lists_and_ranges },
        { "bad axes", test_bad_axes },
        { "expansion digits", test_digits },
        { "filters", test_filters },
        { "expansion order", test_expand_order },
        { "zipped axes", test_zip },
        { "filtered points", test_filter_points },
        { "refused point stays", test_refused_point_stays },
        { "bad sweep files", test_bad_files },
        { "kinds of point", test_kinds },
    };
    return cu_run("sweep", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
