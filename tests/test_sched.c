/* test_sched.c: pipeline schedules against hand-written lists, the published bubble
 * and activation figures, and invariants over many shapes.
 *
 * Figures: DeepSeek-V3 report (arXiv:2412.19437) table 2 and the README of
 * github.com/deepseek-ai/DualPipe ("Pipeline Bubbles and Memory Usage Comparison"):
 *   1F1B      bubble (PP-1)(F+B)           activation PP
 *   ZB1P      bubble (PP-1)(F+B-2W)        activation PP
 *   DualPipe  bubble (PP/2-1)(F&B+B-3W)    activation PP+1
 *   DualPipeV bubble (PP/2-1)(F&B+B-3W)    activation PP+1, PP = stages = 2 x devices
 * with B the full backward, W its weight-gradient part, F&B an overlapped F and B.
 * Bubble is sched.h's: makespan - busy on a rank (ranks start together at t = 0). In
 * sched_ideal_run a B that is not full takes b_s and a full B b_s + w_s, so a published
 * (F, B, W) is run as f_s = F, b_s = B - W, w_s = W.
 */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "rng.h"
#include "sched.h"

static bool near(double x, double want)
{
    return fabs(x - want) <= 1e-9 * fmax(1.0, fabs(want));
}

/* Creates the schedule and runs it ideally; NULL (with a failed assertion) on error. */
static struct sched *run(enum sched_kind kind, int pp, int M, int vpp, double f_s,
                         double b_s, double w_s, double fb_s, struct sched_ideal *r)
{
    struct sched *s = NULL;
    int rc = sched_create(&s, kind, pp, M, vpp);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        return NULL;
    rc = sched_ideal_run(s, f_s, b_s, w_s, fb_s, r);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc) {
        sched_free(s);
        return NULL;
    }
    return s;
}

static double max_of(const double *v, int n)
{
    double m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = fmax(m, v[i]);
    return m;
}

/* Rules: see sched_check in sched.c and the references named there. */
static void test_check(void)
{
    /* accepted */
    CU_ASSERT_PTR_NULL(sched_check(SCHED_GPIPE, 1, 1, 1));
    CU_ASSERT_PTR_NULL(sched_check(SCHED_1F1B, 8, 3, 1));   /* M < pp: warm-up min(.., M) */
    CU_ASSERT_PTR_NULL(sched_check(SCHED_ZB1P, 8, 1, 1));
    CU_ASSERT_PTR_NULL(sched_check(SCHED_INTERLEAVED_1F1B, 4, 8, 2));
    CU_ASSERT_PTR_NULL(sched_check(SCHED_INTERLEAVED_1F1B, 4, 7, 1));  /* no groups */
    CU_ASSERT_PTR_NULL(sched_check(SCHED_DUALPIPE, 8, 16, 1));
    CU_ASSERT_PTR_NULL(sched_check(SCHED_DUALPIPE, 2, 4, 1));
    CU_ASSERT_PTR_NULL(sched_check(SCHED_DUALPIPEV, 3, 7, 1));   /* odd pp and M: fine */
    CU_ASSERT_PTR_NULL(sched_check(SCHED_DUALPIPEV, 1, 2, 1));
    /* refused, each naming its rule */
    const char *why;
    CU_ASSERT_PTR_NOT_NULL(sched_check(SCHED_NONE, 1, 1, 1));
    CU_ASSERT_PTR_NOT_NULL(sched_check((enum sched_kind)99, 1, 1, 1));
    CU_ASSERT_PTR_NOT_NULL(sched_check(SCHED_1F1B, 0, 1, 1));
    CU_ASSERT_PTR_NOT_NULL(sched_check(SCHED_1F1B, 2, 0, 1));
    CU_ASSERT_PTR_NOT_NULL(sched_check(SCHED_INTERLEAVED_1F1B, 2, 2, 0));
    why = sched_check(SCHED_1F1B, 4, 8, 2);
    CU_ASSERT(why && strstr(why, "vpp"));
    why = sched_check(SCHED_INTERLEAVED_1F1B, 4, 6, 2);
    CU_ASSERT(why && strstr(why, "divisible by pp"));
    why = sched_check(SCHED_DUALPIPE, 3, 12, 1);
    CU_ASSERT(why && strstr(why, "even pp"));
    why = sched_check(SCHED_DUALPIPE, 4, 9, 1);
    CU_ASSERT(why && strstr(why, "even number of microbatches"));
    why = sched_check(SCHED_DUALPIPE, 4, 6, 1);
    CU_ASSERT(why && strstr(why, ">= 2 * pp"));
    why = sched_check(SCHED_DUALPIPEV, 4, 7, 1);
    CU_ASSERT(why && strstr(why, "dualpipev") && strstr(why, ">= 2 * pp"));
    CU_ASSERT_PTR_NOT_NULL(sched_check(SCHED_GPIPE, 1 << 16, 1 << 16, 1));  /* too large */
    /* sched_create refuses what sched_check refuses, and a NULL out. */
    struct sched *s = NULL;
    CU_ASSERT_EQUAL(sched_create(&s, SCHED_DUALPIPE, 3, 12, 1), -EINVAL);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(sched_create(NULL, SCHED_1F1B, 2, 2, 1), -EINVAL);
    sched_free(NULL);
}

/* Compares rank r's list with want, written as "F0.1 B0.1 F1.1& ..." (kind, micro-batch
 * '.' piece; '&' = pair_next; a trailing '+' on a B = full). */
static void expect_list(const struct sched *s, int r, const char *want)
{
    char got[1024] = "";
    size_t n = 0;
    for (int i = 0; i < s->nops[r] && n + 32 < sizeof(got); i++) {
        const struct sched_op *op = &s->ops[r][i];
        n += snprintf(got + n, sizeof(got) - n, "%s%c%d.%d%s%s", i ? " " : "",
                      "FBW"[op->kind], op->mb, op->piece, op->full ? "+" : "",
                      op->pair_next ? "&" : "");
    }
    if (strcmp(got, want))
        fprintf(stderr, "\n  rank %d: got  %s\n          want %s\n", r, got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
}

/* Lists worked by hand from each reference's rules ("+" marks a full B, "&" a pair). */
struct list_case {
    enum sched_kind kind;
    int pp, M, vpp;
    const char *want[2];      /* rank 0, rank 1 (pp = 2) */
};

static const struct list_case list_cases[] = {
    /* 1F1B, M = 3: rank 0 warms up with pp - 0 - 1 = 1 F; rank 1 with none. */
    { SCHED_1F1B, 2, 3, 1,
      { "F0.0 F1.0 B0.0+ F2.0 B1.0+ B2.0+", "F0.1 B0.1+ F1.1 B1.1+ F2.1 B2.1+" } },
    /* GPipe, M = 2: all F, then all B. */
    { SCHED_GPIPE, 2, 2, 1, { "F0.0 F1.0 B0.0+ B1.0+", "F0.1 F1.1 B0.1+ B1.1+" } },
    /* ZB-H1, M = 3: 1F1B order; rank r holds back its first r W's (a W goes after the
     * steady-state B while F's issued - W's issued >= pp - 1), every cool-down B is
     * followed by a W, the held-back W's close the list. */
    { SCHED_ZB1P, 2, 3, 1,
      { "F0.0 F1.0 B0.0 W0.0 F2.0 B1.0 W1.0 B2.0 W2.0",
        "F0.1 B0.1 F1.1 B1.1 W0.1 F2.1 B2.1 W1.1 W2.1" } },
    /* Interleaved, vpp = 2, M = 2: units k in groups of pp = 2 micro-batches per chunk:
     * k = 0..3 is (mb, chunk) (0,0) (1,0) (0,1) (1,1), chunks reversed backward; rank r's
     * chunk c is piece 2c + r. Warm-up 2 (pp - r - 1) + (vpp - 1) pp: 4 (all) on rank
     * 0, 2 on rank 1. */
    { SCHED_INTERLEAVED_1F1B, 2, 2, 2,
      { "F0.0 F1.0 F0.2 F1.2 B0.2+ B1.2+ B0.0+ B1.0+",
        "F0.1 F1.1 F0.3 B0.3+ F1.3 B1.3+ B0.1+ B1.1+" } },
    /* DualPipe, M = 4 (dualpipe.py step(), pp = 2: half_rank 0 on both ranks, both are
     * "middle" ranks). Rank 0: phase 0 = mb 0,1 on piece 0, phase 1 = mb 2,3 on piece 1.
     * Steps 1, 3, 5, 7 run 0 times; step 2 once: F0 F1; step 4 once (n - pp + 1 = 1),
     * i = 0 on a middle rank: F0, B1 not overlapped, then the pair F1&B0; step 6 once:
     * B1 full, then zero bubble switches on (half_rank even) so B0 is split; step 8: its
     * W. Rank 1 (second half) is the mirror: phase 0 = mb 2,3 on piece 0. */
    { SCHED_DUALPIPE, 2, 4, 1,
      { "F0.0 F2.1 F1.0 B2.1+ F3.1& B0.0+ B3.1+ B1.0 W1.0",
        "F2.0 F0.1 F3.0 B0.1+ F1.1& B2.0+ B1.1+ B3.0 W3.0" } },
    /* DualPipeV, pp = 1, M = 2: pieces 0 and 1 both on rank 0. Step 1: 0; step 2: F0
     * (mb 0, piece 0), F1 (mb 0, piece 1); step 3: 0; step 4 runs M - 2 + 1 = 1 time, i
     * = 0 on the last rank: F0 (mb 1), B1 (mb 0) not overlapped, then pair F1 (mb 1) &
     * B0 (mb 0); step 6 once: B1 (mb 1) full, zero bubble on, B0 (mb 1) split; step 8
     * its W. */
    { SCHED_DUALPIPEV, 1, 2, 1, { "F0.0 F0.1 F1.0 B0.1+ F1.1& B0.0+ B1.1+ B1.0 W1.0" } },
};

static void test_lists(void)
{
    for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
        const struct list_case *c = &list_cases[i];
        struct sched *s;
        CU_ASSERT_FATAL(sched_create(&s, c->kind, c->pp, c->M, c->vpp) == 0);
        CU_ASSERT_EQUAL(s->split_w, c->kind == SCHED_ZB1P || c->kind == SCHED_DUALPIPE ||
                                    c->kind == SCHED_DUALPIPEV);
        for (int r = 0; r < c->pp; r++)
            expect_list(s, r, c->want[r]);
        sched_free(s);
    }
}

static void test_rank(void)
{
    struct sched *s;
    CU_ASSERT_FATAL(sched_create(&s, SCHED_DUALPIPE, 4, 8, 1) == 0);
    CU_ASSERT_EQUAL(sched_rank(s, 0, 1), 1);      /* first half: forward direction */
    CU_ASSERT_EQUAL(sched_rank(s, 4, 1), 2);      /* second half: piece p on rank 3 - p */
    CU_ASSERT_EQUAL(sched_rank(s, 8, 0), -EINVAL);
    CU_ASSERT_EQUAL(sched_rank(s, 0, 4), -EINVAL);
    sched_free(s);
    CU_ASSERT_FATAL(sched_create(&s, SCHED_DUALPIPEV, 4, 8, 1) == 0);
    CU_ASSERT_EQUAL(sched_rank(s, 0, 3), 3);
    CU_ASSERT_EQUAL(sched_rank(s, 0, 4), 3);      /* 2 pp - 1 - p */
    CU_ASSERT_EQUAL(sched_rank(s, 0, 7), 0);
    sched_free(s);
    CU_ASSERT_FATAL(sched_create(&s, SCHED_INTERLEAVED_1F1B, 4, 8, 2) == 0);
    CU_ASSERT_EQUAL(sched_rank(s, 3, 6), 2);      /* p mod pp */
    sched_free(s);
    CU_ASSERT_EQUAL(sched_rank(NULL, 0, 0), -EINVAL);
}

/* GPipe and 1F1B: bubble (PP-1)(F+B) on every rank (every rank idles pp - 1 forward
 * slots before or after and pp - 1 backward slots); activation: 1F1B holds PP on rank 0
 * (its pp - 1 warm-up F's plus the first steady one), GPipe M on every rank. M >= pp.
 * Both (F, B) = (1, 1) (equal op times) and (1, 2); B is run as b_s = B, w_s = 0, and
 * for (1, 2) also as b_s = w_s = 1. */
static void test_gpipe_1f1b(void)
{
    static const int pps[] = { 2, 4, 8 };
    static const double fbw[][3] = { { 1, 1, 0 }, { 1, 2, 0 }, { 1, 1, 1 } };
    for (unsigned i = 0; i < 3; i++)
        for (int M = pps[i]; M <= 3 * pps[i] + 1; M += pps[i] / 2 + 1)
            for (unsigned t = 0; t < 3; t++) {
                int pp = pps[i];
                double F = fbw[t][0], B = fbw[t][1] + fbw[t][2];
                for (int k = 0; k < 2; k++) {
                    struct sched_ideal r;
                    enum sched_kind kind = k ? SCHED_GPIPE : SCHED_1F1B;
                    struct sched *s = run(kind, pp, M, 1, F, fbw[t][1], fbw[t][2], 0, &r);
                    if (!s)
                        continue;
                    for (int q = 0; q < pp; q++)
                        CU_ASSERT(near(r.bubble_s[q], (pp - 1) * (F + B)));
                    CU_ASSERT(near(r.makespan_s, (M + pp - 1) * (F + B)));
                    CU_ASSERT(near(max_of(r.peak_act, pp), k ? M : pp));
                    CU_ASSERT(near(r.peak_act[0], k ? M : pp));
                    sched_ideal_free(&r);
                    sched_free(s);
                }
            }
}

/* ZB-H1: bubble (PP-1)(F+B-2W) on every rank, activation PP (rank 0), M >= pp. Equal
 * op times F = B_input = W = 1 (full B = 2): pp - 1. Also (F, B_input, W) = (1.5, 1.25,
 * 0.5): (pp-1)(1.5 + 1.75 - 1) = 2.25 (pp-1). The closed form needs W <= F and W <=
 * B_input (Qi et al. 2024, sec. 3.1, assume equal times). */
static void test_zb1p(void)
{
    static const int pps[] = { 2, 4, 8 };
    static const double fbw[][3] = { { 1, 1, 1 }, { 1.5, 1.25, 0.5 } };
    for (unsigned i = 0; i < 3; i++)
        for (int M = pps[i]; M <= 3 * pps[i] + 1; M += pps[i] / 2 + 1)
            for (unsigned t = 0; t < 2; t++) {
                int pp = pps[i];
                double F = fbw[t][0], W = fbw[t][2], B = fbw[t][1] + W;
                struct sched_ideal r;
                struct sched *s = run(SCHED_ZB1P, pp, M, 1, F, fbw[t][1], W, 0, &r);
                if (!s)
                    continue;
                for (int q = 0; q < pp; q++)
                    CU_ASSERT(near(r.bubble_s[q], (pp - 1) * (F + B - 2 * W)));
                CU_ASSERT(near(max_of(r.peak_act, pp), pp));
                sched_ideal_free(&r);
                sched_free(s);
            }
}

/* DualPipe and DualPipeV: bubble (H-1)(F&B+B-3W), H = PP/2 (DualPipe; PP = ranks) or
 * H = pp (DualPipeV: PP = 2 pp stages on pp ranks, F, B, W per stage = per piece).
 * The table's accounting: it is exact when F = B - W (forward as long as the input
 * gradient; the figures draw F = B_input = W) and W <= F, for F&B between B and F+B:
 *  - F&B = F+B (nothing gained by overlapping): every rank's bubble is the formula;
 *  - F&B < F+B: the ranks that run the fewest pairs, DualPipe's two middle ranks (pp/2-1,
 *    pp/2, which do not overlap their first main-loop pair) and DualPipeV's bottom of
 *    the V (pp-2, pp-1), have the formula; the others less (they gain fb < F+B on more
 *    pairs): the formula is the worst rank's.
 * Cases: F = B_input = W = 1 (B = 2) with F&B = 3, 2.5, 2 -> (H-1) x 2, 1.5, 1; and
 * F = B_input = 1, W = 0.5 (B = 1.5) with F&B = 2.5 -> (H-1) x 2.5.
 * Activation: PP+1 micro-batches through 1/PP of the model on the worst rank:
 * DualPipe pp+1; DualPipeV (2 pp + 1) stage units, each half of sched.h's unit (a
 * piece is 1/(2 pp) of the model): pp + 1/2. The README draws pp = 8, M = 20 (DualPipe;
 * every row 66 units long, 6 idle, at F&B = 3) and pp = 4, M = 10 (DualPipeV). */
static void test_dualpipe(void)
{
    static const double cases[][3] = { { 1, 3 }, { 1, 2.5 }, { 1, 2 }, { 0.5, 2.5 } };
    for (int v = 0; v < 2; v++) {
        enum sched_kind kind = v ? SCHED_DUALPIPEV : SCHED_DUALPIPE;
        for (int pp = v ? 1 : 2; pp <= 8; pp += v ? 1 : 2)
            for (int M = 2 * pp; M <= 4 * pp + 2; M += 2)
                for (unsigned t = 0; t < 4; t++) {
                    double F = 1, W = cases[t][0], B = F + W, FB = cases[t][1];
                    int H = v ? pp : pp / 2, mid = v ? pp - 1 : pp / 2;
                    double want = (H - 1) * (FB + B - 3 * W);
                    struct sched_ideal r;
                    struct sched *s = run(kind, pp, M, 1, F, F, W, FB, &r);
                    if (!s)
                        continue;
                    CU_ASSERT(near(max_of(r.bubble_s, pp), want));
                    CU_ASSERT(near(r.bubble_s[mid], want));
                    CU_ASSERT(near(r.bubble_s[mid > 0 ? mid - 1 : 0], want));
                    for (int q = 0; FB == F + B && q < pp; q++)
                        CU_ASSERT(near(r.bubble_s[q], want));
                    CU_ASSERT(near(max_of(r.peak_act, pp), v ? pp + 0.5 : pp + 1));
                    sched_ideal_free(&r);
                    sched_free(s);
                }
    }
    /* The README's pictures at F = B_input = W = 1, F&B = 3: DualPipe pp = 8, M = 20
     * runs 20 F + 20 B (2 each) = 60 busy per rank in 66; DualPipeV pp = 4, M = 10 runs
     * 2 pieces x 10 x 3 = 60 in 66. */
    for (int v = 0; v < 2; v++) {
        struct sched_ideal r;
        struct sched *s = run(v ? SCHED_DUALPIPEV : SCHED_DUALPIPE, v ? 4 : 8, v ? 10 : 20,
                              1, 1, 1, 1, 3, &r);
        if (!s)
            continue;
        CU_ASSERT(near(r.makespan_s, 66));
        CU_ASSERT(near(r.busy_s[0], 60));
        sched_ideal_free(&r);
        sched_free(s);
    }
}

/* The relation the DualPipe formula assumes. In the table's terms B is the full backward
 * and B - W its input-gradient part (sched_ideal_run's b_s), and the formula
 * (H-1)(F&B + B - 3W) = (H-1)(F&B + (B-W) - 2W) holds exactly when F = B - W (the
 * DualPipe figures draw F, B_input and W as equal chunks), W <= F and F&B between
 * max(F, B) and F + B. Where F != B - W, with the same W and F&B conditions, the worst
 * rank's bubble lies between the formula with min(F, B-W) and with max(F, B-W) in place
 * of B - W:
 *   (H-1)(F&B + min(F, B-W) - 2W) <= bubble <= (H-1)(F&B + max(F, B-W) - 2W),
 * and equals the upper end when F > B - W: the formula then falls short by exactly
 * (H-1)(F - (B-W)); when F < B - W it overstates by at most (H-1)(B-W - F).
 * Hand-worked instance: DualPipeV pp = 2 (H = 2), M = 4, F = 2, B-W = 1, W = 1, F&B = 4.
 * Rank 0 runs F0 F1 F2 (piece 0) [0, 6], F0 (piece 3) [6, 8], B0, W0 (piece 3) [8, 10],
 * F1 (piece 3) [10, 12], the pair F3 & B1 [12, 16]; the next pair needs rank 1's B0 of
 * piece 1, done at 18: idle 2; likewise before its last pair (idle [24, 26]). Bubble 4 =
 * 1 x (4 + 2 - 2); the formula says 1 x (4 + 3 - 3) = 3.
 * The rest: shapes drawn at random (pp, M >= 2 pp, F, B-W, W, F&B within the bounds);
 * the bounds and the exact cases are this test's statement, checked on every draw. */
static void test_dualpipe_relation(void)
{
    struct sched_ideal r;
    struct sched *s = run(SCHED_DUALPIPEV, 2, 4, 1, 2, 1, 1, 4, &r);
    if (s) {
        CU_ASSERT(near(r.bubble_s[0], 4) && near(max_of(r.bubble_s, 2), 4));
        CU_ASSERT(near(r.start_s[0][7], 12) && near(r.end_s[0][7], 16));
        CU_ASSERT(near(r.start_s[0][9], 18));
        sched_ideal_free(&r);
        sched_free(s);
    }
    struct rng g;
    int exact = 0, over = 0, under = 0;
    rng_seed(&g, 20250101);
    for (int i = 0; i < 3000; i++) {
        int v = (int)rng_below(&g, 2);
        int pp = v ? 1 + (int)rng_below(&g, 8) : 2 + 2 * (int)rng_below(&g, 4);
        int M = 2 * pp + 2 * (int)rng_below(&g, 4), H = v ? pp : pp / 2;
        double F = 0.1 + rng_double(&g), Bi = i % 3 == 0 ? F : 0.1 + rng_double(&g);
        double W = fmin(F, Bi) * rng_double(&g), B = Bi + W;
        double FB = fmax(F, B) + (F + B - fmax(F, B)) * rng_double(&g);
        s = run(v ? SCHED_DUALPIPEV : SCHED_DUALPIPE, pp, M, 1, F, Bi, W, FB, &r);
        if (!s)
            continue;
        double got = max_of(r.bubble_s, pp), formula = (H - 1) * (FB + B - 3 * W);
        double lo = (H - 1) * (FB + fmin(F, Bi) - 2 * W), hi = (H - 1) * (FB + fmax(F, Bi) - 2 * W);
        double tol = 1e-9 * fmax(1.0, hi);
        bool ok = got >= lo - tol && got <= hi + tol;
        if (F == Bi) {
            ok = ok && near(got, formula);
            exact++;
        } else if (F > Bi) {
            ok = ok && near(got, hi);
            under++;
        } else {
            over++;
        }
        CU_ASSERT(ok);
        if (!ok)
            fprintf(stderr, "\n  %s pp %d M %d F %g B-W %g W %g F&B %g: bubble %g, formula %g, "
                    "bounds [%g, %g]", v ? "dualpipev" : "dualpipe", pp, M, F, Bi, W, FB, got,
                    formula, lo, hi);
        sched_ideal_free(&r);
        sched_free(s);
    }
    CU_ASSERT(exact > 500 && under > 500 && over > 500);
}

/* Interleaved 1F1B: bubble (PP-1)(F+B)/vpp on every rank, F and B per rank-stage, so a
 * piece takes F/vpp and B/vpp (Narayanan et al. 2021, sec. 2.2). Activation on rank 0:
 * its 2 (pp-1) + (vpp-1) pp warm-up units plus the first steady one, each 1/vpp of a
 * stage: pp + (pp-1)/vpp when M >= 2 pp (there are that many units), else all its
 * units: M. (F, B) = (1, 2) and (1, 1). */
static void test_interleaved(void)
{
    static const int pps[] = { 2, 4, 8 };
    for (unsigned i = 0; i < 3; i++)
        for (int vpp = 2; vpp <= 4; vpp++)
            for (int M = pps[i]; M <= 3 * pps[i]; M += pps[i])
                for (int B = 1; B <= 2; B++) {
                    int pp = pps[i];
                    double F = 1;
                    struct sched_ideal r;
                    struct sched *s = run(SCHED_INTERLEAVED_1F1B, pp, M, vpp, F / vpp,
                                          (double)B / vpp, 0, 0, &r);
                    if (!s)
                        continue;
                    for (int q = 0; q < pp; q++)
                        CU_ASSERT(near(r.bubble_s[q], (pp - 1) * (F + B) / vpp));
                    double act = M >= 2 * pp ? pp + (double)(pp - 1) / vpp : M;
                    CU_ASSERT(near(r.peak_act[0], act));
                    CU_ASSERT(near(max_of(r.peak_act, pp), act));
                    sched_ideal_free(&r);
                    sched_free(s);
                }
}

/* ---- invariants ---- */

/* Which (kind, micro-batch, piece) are where: rank and index, -1 when absent. */
struct where {
    int *rank, *idx;          /* [(kind * M + mb) * pieces + piece] */
};

static int slot(const struct sched *s, int kind, int mb, int piece)
{
    return (kind * s->microbatches + mb) * s->pieces + piece;
}

/* Every op once, on sched_rank's rank; a W exactly for each B that is not full (none
 * without split_w); F before B before W in the rank's list; pairs are an F then a full
 * B of another micro-batch. Returns a description of the first violation, or NULL. */
static const char *check_lists(const struct sched *s, struct where *w)
{
    int n = 3 * s->microbatches * s->pieces;
    for (int i = 0; i < n; i++)
        w->rank[i] = w->idx[i] = -1;
    for (int r = 0; r < s->pp; r++)
        for (int i = 0; i < s->nops[r]; i++) {
            const struct sched_op *op = &s->ops[r][i];
            if (op->mb < 0 || op->mb >= s->microbatches || op->piece < 0 ||
                op->piece >= s->pieces || op->kind > SCHED_W)
                return "op out of range";
            if (sched_rank(s, op->mb, op->piece) != r)
                return "op on the wrong rank";
            int k = slot(s, op->kind, op->mb, op->piece);
            if (w->rank[k] >= 0)
                return "op twice";
            w->rank[k] = r;
            w->idx[k] = i;
            if (op->pair_next) {
                if (i + 1 >= s->nops[r] || op->kind != SCHED_F || op[1].kind != SCHED_B ||
                    !op[1].full || op[1].pair_next || op[1].mb == op->mb)
                    return "bad pair";
            }
            if (op->full && op->kind != SCHED_B)
                return "full on a non-B";
            if (!s->split_w && (op->kind == SCHED_W || (op->kind == SCHED_B && !op->full)))
                return "W or split B without split_w";
        }
    for (int m = 0; m < s->microbatches; m++)
        for (int p = 0; p < s->pieces; p++) {
            int f = slot(s, SCHED_F, m, p), b = slot(s, SCHED_B, m, p);
            int wi = slot(s, SCHED_W, m, p);
            if (w->rank[f] < 0 || w->rank[b] < 0)
                return "F or B missing";
            bool full = s->ops[w->rank[b]][w->idx[b]].full;
            if (full != (w->rank[wi] < 0))
                return "W missing for a split B, or present for a full one";
            if (w->idx[f] > w->idx[b] || (!full && w->idx[b] > w->idx[wi]))
                return "F, B, W out of order on their rank";
        }
    return NULL;
}

/* The ideal timeline with the times given: ops of a rank one after the other (a pair
 * together), each as long as it should be, after its dependencies' ends; makespan,
 * busy, bubble consistent; peak activation recounted by brute force. */
static const char *check_timeline(const struct sched *s, const struct where *w,
                                  const struct sched_ideal *r, const double dur[4])
{
    double last = 0;
    for (int q = 0; q < s->pp; q++) {
        double busy = 0, free_s = 0;
        for (int i = 0; i < s->nops[q]; i++) {
            const struct sched_op *op = &s->ops[q][i];
            double t0 = r->start_s[q][i], t1 = r->end_s[q][i];
            bool partner = i > 0 && op[-1].pair_next;
            double len = op->pair_next || partner ? dur[3]
                       : dur[op->kind] + (op->full ? dur[SCHED_W] : 0);
            if (!near(t1 - t0, len))
                return "op has the wrong length";
            if (partner) {
                if (t0 != r->start_s[q][i - 1] || t1 != r->end_s[q][i - 1])
                    return "pair not run together";
            } else {
                if (t0 < free_s - 1e-12)
                    return "rank runs two ops at once";
                busy += len;
            }
            free_s = t1;
            last = fmax(last, t1);
            /* dependencies (sched.h), wherever they ran */
            int dep[2], nd = 0;
            if (op->kind == SCHED_F && op->piece > 0)
                dep[nd++] = slot(s, SCHED_F, op->mb, op->piece - 1);
            if (op->kind == SCHED_B) {
                dep[nd++] = slot(s, SCHED_F, op->mb, op->piece);
                if (op->piece < s->pieces - 1)
                    dep[nd++] = slot(s, SCHED_B, op->mb, op->piece + 1);
            }
            if (op->kind == SCHED_W)
                dep[nd++] = slot(s, SCHED_B, op->mb, op->piece);
            for (int d = 0; d < nd; d++)
                if (r->end_s[w->rank[dep[d]]][w->idx[dep[d]]] > t0 + 1e-12)
                    return "op starts before a dependency ends";
        }
        if (!near(r->busy_s[q], busy) || !near(r->bubble_s[q], r->makespan_s - busy))
            return "busy or bubble wrong";
        /* peak: at each F start, the F's started and B's not ended, in pp/pieces */
        double peak = 0;
        for (int i = 0; i < s->nops[q]; i++) {
            if (s->ops[q][i].kind != SCHED_F)
                continue;
            double t = r->start_s[q][i];
            int held = 0;
            for (int j = 0; j < s->nops[q]; j++) {
                const struct sched_op *op = &s->ops[q][j];
                if (op->kind != SCHED_F)
                    continue;
                int b = slot(s, SCHED_B, op->mb, op->piece);
                if (r->start_s[q][j] <= t && r->end_s[q][w->idx[b]] > t)
                    held++;
            }
            peak = fmax(peak, held * (double)s->pp / s->pieces);
        }
        if (!near(r->peak_act[q], peak))
            return "peak activation wrong";
    }
    if (!near(r->makespan_s, last))
        return "makespan wrong";
    return NULL;
}

/* Every kind, pp 1..8, M 1..24, vpp 1..3 where sched_check accepts: lists and an ideal
 * run with random times (F, B_input, W in [0.1, 1.1), F&B between the longer of F and
 * full B and their sum). */
static void test_invariants(void)
{
    struct rng g;
    struct where w;
    int tried = 0, bad = 0;
    w.rank = malloc(3 * 24 * 8 * 3 * sizeof(int));
    w.idx = malloc(3 * 24 * 8 * 3 * sizeof(int));
    CU_ASSERT_FATAL(w.rank && w.idx);
    rng_seed(&g, 20240917);
    for (int kind = SCHED_GPIPE; kind <= SCHED_DUALPIPEV; kind++)
        for (int pp = 1; pp <= 8; pp++)
            for (int M = 1; M <= 24; M++)
                for (int vpp = 1; vpp <= 3; vpp++) {
                    if (sched_check(kind, pp, M, vpp))
                        continue;
                    struct sched *s;
                    struct sched_ideal r;
                    const char *why = NULL;
                    double dur[4];
                    for (int k = 0; k < 3; k++)
                        dur[k] = 0.1 + rng_double(&g);
                    double lo = fmax(dur[0], dur[1] + dur[2]), hi = dur[0] + dur[1] + dur[2];
                    dur[3] = lo + (hi - lo) * rng_double(&g);
                    tried++;
                    if (sched_create(&s, kind, pp, M, vpp)) {
                        why = "create failed";
                    } else {
                        why = check_lists(s, &w);
                        if (!why && sched_ideal_run(s, dur[0], dur[1], dur[2], dur[3], &r))
                            why = "ideal run failed (deadlock?)";
                        else if (!why) {
                            why = check_timeline(s, &w, &r, dur);
                            sched_ideal_free(&r);
                        }
                        sched_free(s);
                    }
                    if (why && bad++ < 5)
                        fprintf(stderr, "\n  kind %d pp %d M %d vpp %d: %s", kind, pp, M,
                                vpp, why);
                }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(tried > 1000);
    free(w.rank);
    free(w.idx);
}

/* Hand-made lists the ideal run must refuse. pp = 2, M = 2, 1F1B pieces. */
static void test_refuse(void)
{
    struct sched_op r0[4], r1[4];
    struct sched_op *ops[2] = { r0, r1 };
    int nops[2] = { 4, 4 };
    struct sched s = { SCHED_1F1B, 2, 2, 1, 2, false, nops, ops };
    struct sched_ideal out;
#define OP(k, m, p) ((struct sched_op){ .kind = (k), .mb = (m), .piece = (p), \
                                        .full = (k) == SCHED_B })
    /* Rank 0: F0 B0 F1 B1; rank 1: F1 F0 B0 B1. Rank 0's B0 waits for rank 1's B0,
     * behind rank 1's F1, which waits for rank 0's F1, behind rank 0's B0: deadlock. */
    r0[0] = OP(SCHED_F, 0, 0), r0[1] = OP(SCHED_B, 0, 0);
    r0[2] = OP(SCHED_F, 1, 0), r0[3] = OP(SCHED_B, 1, 0);
    r1[0] = OP(SCHED_F, 1, 1), r1[1] = OP(SCHED_F, 0, 1);
    r1[2] = OP(SCHED_B, 0, 1), r1[3] = OP(SCHED_B, 1, 1);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    CU_ASSERT_PTR_NULL(out.busy_s);              /* left zeroed */
    /* Rank 1 as F0 B0 F1 B1 instead: it runs. F = B = 1: rank 0 F0 [0,1]; rank 1 F0
     * [1,2], B0 [2,3]; rank 0 B0 [3,4], F1 [4,5]; rank 1 F1 [5,6], B1 [6,7]; rank 0 B1
     * [7,8]: makespan 8, busy 4 and bubble 4 on each rank; one micro-batch held. */
    r1[0] = OP(SCHED_F, 0, 1), r1[1] = OP(SCHED_B, 0, 1);
    r1[2] = OP(SCHED_F, 1, 1), r1[3] = OP(SCHED_B, 1, 1);
    CU_ASSERT_FATAL(sched_ideal_run(&s, 1, 1, 0, 0, &out) == 0);
    CU_ASSERT(near(out.makespan_s, 8) && near(out.bubble_s[0], 4) && near(out.bubble_s[1], 4));
    CU_ASSERT(near(out.peak_act[0], 1) && near(out.peak_act[1], 1));
    sched_ideal_free(&out);
    sched_ideal_free(NULL);
    /* A B before its own F on the same rank: deadlock. */
    r0[0] = OP(SCHED_B, 0, 0), r0[1] = OP(SCHED_F, 0, 0);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[0] = OP(SCHED_F, 0, 0), r0[1] = OP(SCHED_B, 0, 0);
    /* An op on the wrong rank, twice, a W or a split B without split_w, a pair at the
     * end of a list, a bad time. */
    r0[3] = OP(SCHED_B, 1, 1);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[3] = OP(SCHED_B, 0, 0);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[3] = OP(SCHED_W, 1, 0);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[3] = OP(SCHED_B, 1, 0);
    r0[3].full = false;
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[3] = OP(SCHED_B, 1, 0);
    r0[3].pair_next = true;
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    r0[3].pair_next = false;
    CU_ASSERT_EQUAL(sched_ideal_run(&s, -1, 1, 0, 0, &out), -EINVAL);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, NAN, 0, 0, &out), -EINVAL);
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, INFINITY, 0, &out), -EINVAL);
    CU_ASSERT_EQUAL(sched_ideal_run(NULL, 1, 1, 0, 0, &out), -EINVAL);
    /* A list missing an op: rank 1 without its last B. */
    nops[1] = 3;
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), -EINVAL);
    nops[1] = 4;
    CU_ASSERT_EQUAL(sched_ideal_run(&s, 1, 1, 0, 0, &out), 0);
    sched_ideal_free(&out);
#undef OP
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "check", test_check },
        { "hand-worked lists", test_lists },
        { "rank of a piece", test_rank },
        { "gpipe and 1f1b: published bubble and activation", test_gpipe_1f1b },
        { "zb1p: published bubble and activation", test_zb1p },
        { "dualpipe and dualpipev: published bubble and activation", test_dualpipe },
        { "dualpipe: the formula's F = B - W, and bounds elsewhere", test_dualpipe_relation },
        { "interleaved 1f1b: bubble / vpp", test_interleaved },
        { "invariants over every schedule and shape", test_invariants },
        { "ideal run refuses bad lists", test_refuse },
    };
    return cu_run("sched", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
