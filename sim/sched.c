/* sched.c: pipeline-parallel schedules (see sched.h).
 *
 * Each schedule is written per rank as its publication or reference implementation
 * writes it; the lists hold no time. sched_ideal_run is the dependency-driven executor
 * the tests use to check the lists against the published bubble and memory figures.
 */
#include "sched.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Rules per kind. GPipe, 1F1B and ZB-H1 run any M >= 1 (with M < pp, 1F1B warm-up is
 * min(pp - rank - 1, M)). Interleaving: Megatron-LM's schedule takes micro-batches in
 * groups of pp per chunk and asserts M % pp == 0 (Narayanan et al. 2021, sec. 2.2); with
 * vpp = 1 there are no groups and any M runs. DualPipe: the reference (deepseek-ai/
 * DualPipe, dualpipe.py, DualPipe.step) asserts pp even, M even and M >= 2 pp; its main
 * loop runs M/2 - pp + half_rank + 1 >= 1 times. DualPipeV (dualpipev.py) asserts only
 * M >= 2 pp; its main loop runs M - 2 pp + rank + 1 >= 1 times. */
const char *sched_check(enum sched_kind kind, int pp, int microbatches, int vpp)
{
    if (kind == SCHED_NONE)
        return "no pipeline schedule (kind none)";
    if (kind < SCHED_NONE || kind > SCHED_DUALPIPEV)
        return "unknown schedule kind";
    if (pp < 1)
        return "pp must be >= 1";
    if (microbatches < 1)
        return "microbatches must be >= 1";
    if (vpp < 1)
        return "vpp must be >= 1";
    if (kind != SCHED_INTERLEAVED_1F1B && vpp != 1)
        return "vpp > 1 needs schedule interleaved-1f1b";
    /* Keeps ops and sched_ideal_run's tables (3 per micro-batch and piece, pieces <=
     * 2 pp vpp) inside an int. */
    if ((int64_t)pp * vpp > INT32_MAX / 6 || (int64_t)pp * vpp * microbatches > INT32_MAX / 6)
        return "pp * vpp * microbatches is too large";
    switch (kind) {
    case SCHED_INTERLEAVED_1F1B:
        if (vpp > 1 && microbatches % pp != 0)
            return "interleaved-1f1b with vpp > 1 needs microbatches divisible by pp";
        break;
    case SCHED_DUALPIPE:
        if (pp % 2 != 0)
            return "dualpipe needs an even pp";
        if (microbatches % 2 != 0)
            return "dualpipe needs an even number of microbatches";
        if (microbatches < 2 * pp)
            return "dualpipe needs microbatches >= 2 * pp";
        break;
    case SCHED_DUALPIPEV:
        if (microbatches < 2 * pp)
            return "dualpipev needs microbatches >= 2 * pp";
        break;
    default:
        break;
    }
    return NULL;
}

int sched_rank(const struct sched *s, int mb, int piece)
{
    if (!s || mb < 0 || mb >= s->microbatches || piece < 0 || piece >= s->pieces)
        return -EINVAL;
    switch (s->kind) {
    case SCHED_INTERLEAVED_1F1B:
        return piece % s->pp;
    case SCHED_DUALPIPE:
        return mb < s->microbatches / 2 ? piece : s->pp - 1 - piece;
    case SCHED_DUALPIPEV:
        return piece < s->pp ? piece : 2 * s->pp - 1 - piece;
    default:
        return piece;
    }
}

/* One rank's list while it is written; cap is the most ops a rank can have. A builder
 * that would write past it, or breaks a rule of its reference, sets bad. */
struct sb {
    struct sched_op *ops;
    int n, cap;
    bool bad;
};

static void sb_op(struct sb *b, enum sched_op_kind kind, int mb, int piece, bool pair_next,
                  bool full)
{
    if (b->n < b->cap)
        b->ops[b->n++] = (struct sched_op){ kind, mb, piece, pair_next, full };
    else
        b->bad = true;
}

static void sb_f(struct sb *b, int mb, int piece)
{
    sb_op(b, SCHED_F, mb, piece, false, false);
}

/* A B; full: with its weight gradient (no W op follows for it). */
static void sb_b(struct sb *b, int mb, int piece, bool full)
{
    sb_op(b, SCHED_B, mb, piece, false, full);
}

static void sb_w(struct sb *b, int mb, int piece)
{
    sb_op(b, SCHED_W, mb, piece, false, false);
}

/* GPipe (Huang et al. 2019): every forward, then every full backward, in micro-batch
 * order. */
static void build_gpipe(struct sb *b, const struct sched *s, int r)
{
    for (int m = 0; m < s->microbatches; m++)
        sb_f(b, m, r);
    for (int m = 0; m < s->microbatches; m++)
        sb_b(b, m, r, true);
}

/* 1F1B (PipeDream-Flush; Megatron-LM forward_backward_pipelining_without_interleaving):
 * warm-up min(pp - r - 1, M) forwards, steady state one forward then one backward,
 * cool-down the remaining backwards.
 * With split_w this is ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024,
 * sec. 3.1, fig. 3): the same F and B order (so the same activation memory), B the input
 * gradient, and W's placed to fill bubbles. The paper draws the schedule rather than
 * stating a rule; ours: in the steady state a W follows the B once the F just issued
 * is pp - 1 or more ahead of the oldest W not yet run, so rank r holds back up to r W's
 * (early on, its upstream ranks still run F,B without W and the period stays F+B); each
 * cool-down B is followed by one W; the held-back W's close the list, filling the tail
 * that 1F1B leaves idle. It gives the paper's bubble, (pp-1)(F+B-W) with B the input
 * gradient, on every rank when W <= F and W <= B (tests). */
static void build_1f1b(struct sb *b, const struct sched *s, int r)
{
    int M = s->microbatches;
    int warm = s->pp - r - 1 < M ? s->pp - r - 1 : M;
    int nf = 0, nb = 0, nw = 0;

    while (nf < warm)
        sb_f(b, nf++, r);
    while (nf < M) {
        sb_f(b, nf, r);
        sb_b(b, nb++, r, !s->split_w);
        if (s->split_w && nf - nw >= s->pp - 1)
            sb_w(b, nw++, r);
        nf++;
    }
    while (nb < M) {
        sb_b(b, nb++, r, !s->split_w);
        if (s->split_w)
            sb_w(b, nw++, r);
    }
    while (s->split_w && nw < M)
        sb_w(b, nw++, r);
}

/* Megatron-LM interleaved 1F1B (Narayanan et al. 2021, sec. 2.2; forward_backward_
 * pipelining_with_interleaving): the rank's M * vpp (micro-batch, chunk) units run in
 * "virtual" order k: groups of pp micro-batches, each group through chunk 0, 1, ...,
 * vpp-1 forward (chunks reversed backward). Warm-up 2 (pp - r - 1) + (vpp - 1) pp units
 * (at most all), then one forward and one backward each, then the remaining backwards.
 * Chunk c of rank r is piece c pp + r. With vpp = 1 unit k is micro-batch k. */
static void interleaved_unit(const struct sched *s, int k, bool fwd, int r, int *mb, int *piece)
{
    int pp = s->pp, vpp = s->vpp;
    int c = (k % (pp * vpp)) / pp;

    if (!fwd)
        c = vpp - 1 - c;
    *mb = (k / (pp * vpp)) * pp + k % pp;
    *piece = c * pp + r;
}

static void build_interleaved(struct sb *b, const struct sched *s, int r)
{
    int total = s->microbatches * s->vpp;
    int warm = 2 * (s->pp - r - 1) + (s->vpp - 1) * s->pp;
    int mb, piece;

    if (warm > total)
        warm = total;
    for (int k = 0; k < total + warm; k++) {
        if (k < total) {
            interleaved_unit(s, k, true, r, &mb, &piece);
            sb_f(b, mb, piece);
        }
        if (k >= warm) {
            interleaved_unit(s, k - warm, false, r, &mb, &piece);
            sb_b(b, mb, piece, true);
        }
    }
}

/* DualPipe and DualPipeV in the terms of the reference (deepseek-ai/DualPipe,
 * dualpipe.py and dualpipev.py, step()): each rank holds two pieces, "phase" 0 and 1;
 * the k-th F (and the k-th B) of a phase is that phase's k-th micro-batch; W's of B's
 * run with zero bubble (enable_zb) wait in a FIFO until a weight step pops them; every
 * other B (those in F&B pairs among them) is a full backward, with no W op. */
struct dp {
    struct sb *out;
    int piece[2];             /* this rank's piece in phase 0, 1 */
    int mb0[2];               /* micro-batch of the phase's first F */
    int nf[2], nb[2];         /* F and B issued per phase */
    struct sched_op *wq;      /* deferred W's, FIFO; wq_cap = 2 n: every B of the rank */
    int wq_head, wq_tail, wq_cap;
};

static void dp_f(struct dp *d, int ph, bool pair_next)
{
    sb_op(d->out, SCHED_F, d->mb0[ph] + d->nf[ph]++, d->piece[ph], pair_next, false);
}

static void dp_b(struct dp *d, int ph, bool zb)
{
    int mb = d->mb0[ph] + d->nb[ph]++;

    sb_b(d->out, mb, d->piece[ph], !zb);
    if (zb && d->wq_tail < d->wq_cap)
        d->wq[d->wq_tail++] = (struct sched_op){ SCHED_W, mb, d->piece[ph], false, false };
    else if (zb)
        d->out->bad = true;
}

static void dp_w(struct dp *d)
{
    if (d->wq_head < d->wq_tail)
        sb_w(d->out, d->wq[d->wq_head].mb, d->wq[d->wq_head].piece);
    else
        d->out->bad = true;   /* the reference's queue would be empty */
    d->wq_head++;
}

/* F of phase pf overlapped with B (full) of phase pb: one F&B pair. */
static void dp_fb(struct dp *d, int pf, int pb)
{
    dp_f(d, pf, true);
    dp_b(d, pb, false);
}

/* The reference's eight steps, named as there (nF0 = n forwards of phase 0, ...);
 * H = ranks per half (DualPipe pp/2, DualPipeV pp), h = this rank's distance from the
 * nearer end (DualPipe half_rank = min(r, pp-1-r), DualPipeV r), n = F's per phase
 * (DualPipe M/2, DualPipeV M). Step 4 runs n - 2H + h + 1 >= 1 times (sched_check). */
static void dp_steps(struct dp *d, int H, int h, int n)
{
    for (int i = 0; i < 2 * (H - h - 1); i++)              /* 1: nF0 */
        dp_f(d, 0, false);
    for (int i = 0; i < h + 1; i++) {                      /* 2: nF0F1 */
        dp_f(d, 0, false);
        dp_f(d, 1, false);
    }
    for (int i = 0; i < H - h - 1; i++) {                  /* 3: nB1W1F1, zero bubble */
        dp_b(d, 1, true);
        dp_w(d);
        dp_f(d, 1, false);
    }
    for (int i = 0; i < n - 2 * H + h + 1; i++) {          /* 4: nF0B1F1B0 */
        if (i == 0 && h == H - 1) {
            /* Middle ranks: "we don't overlap these two chunks to further reduce
             * bubble size" (reference). */
            dp_f(d, 0, false);
            dp_b(d, 1, false);
        } else {
            dp_fb(d, 0, 1);
        }
        dp_fb(d, 1, 0);
    }
    for (int i = 0; i < H - h - 1; i++) {                  /* 5: nB1F1B0 */
        dp_b(d, 1, false);
        dp_fb(d, 1, 0);
    }
    bool zb = false;                                       /* 6: nB1B0, second half ZB */
    for (int i = 0; i < h + 1; i++) {
        if (i == (h + 1) / 2 && h % 2 == 1)
            zb = true;
        dp_b(d, 1, zb);
        if (i == (h + 1) / 2 && h % 2 == 0)
            zb = true;
        dp_b(d, 0, zb);
    }
    for (int i = 0; i < H - h - 1; i++) {                  /* 7: nWB0, zero bubble */
        dp_w(d);
        dp_b(d, 0, true);
    }
    for (int i = 0; i < h + 1; i++)                        /* 8: nW */
        dp_w(d);
    if (d->wq_head != d->wq_tail)
        d->out->bad = true;   /* W's left: the reference asserts the queue is empty */
}

static void build_dualpipe(struct sb *b, const struct sched *s, int r, struct sched_op *wq)
{
    int pp = s->pp, n, H, h;
    struct dp d = { .out = b, .wq = wq };

    if (s->kind == SCHED_DUALPIPE) {
        /* Phase 0 is the direction that enters at this rank's end of the pipe: ranks in
         * the first half see micro-batches 0..M/2-1 (piece r) first, the second half
         * M/2..M-1 (piece pp-1-r). */
        bool second = r >= pp / 2;
        n = s->microbatches / 2;
        H = pp / 2;
        h = r < pp - 1 - r ? r : pp - 1 - r;
        for (int ph = 0; ph < 2; ph++) {
            int dir = ph ^ second;
            d.piece[ph] = dir ? pp - 1 - r : r;
            d.mb0[ph] = dir * n;
        }
    } else {
        /* Phase 0 is the down stroke of the V (piece r), phase 1 the up stroke. */
        n = s->microbatches;
        H = pp;
        h = r;
        d.piece[0] = r;
        d.piece[1] = 2 * pp - 1 - r;
    }
    d.wq_cap = 2 * n;
    dp_steps(&d, H, h, n);
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    if (s->ops)
        for (int r = 0; r < s->pp; r++)
            free(s->ops[r]);
    free(s->ops);
    free(s->nops);
    free(s);
}

static int build_rank(struct sched *s, int r, int cap, struct sched_op *wq)
{
    struct sb b = { s->ops[r], 0, cap, false };

    switch (s->kind) {
    case SCHED_GPIPE:
        build_gpipe(&b, s, r);
        break;
    case SCHED_1F1B:
    case SCHED_ZB1P:
        build_1f1b(&b, s, r);
        break;
    case SCHED_INTERLEAVED_1F1B:
        build_interleaved(&b, s, r);
        break;
    case SCHED_DUALPIPE:
    case SCHED_DUALPIPEV:
        build_dualpipe(&b, s, r, wq);
        break;
    default:
        return -EINVAL;
    }
    if (b.bad)
        return -EINVAL;
    s->nops[r] = b.n;
    return 0;
}

int sched_create(struct sched **out, enum sched_kind kind, int pp, int microbatches, int vpp)
{
    int err = -ENOMEM;

    if (!out || sched_check(kind, pp, microbatches, vpp))
        return -EINVAL;
    struct sched *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->kind = kind;
    s->pp = pp;
    s->microbatches = microbatches;
    s->vpp = vpp;
    s->pieces = kind == SCHED_INTERLEAVED_1F1B ? pp * vpp
              : kind == SCHED_DUALPIPEV        ? 2 * pp
                                               : pp;
    s->split_w = kind == SCHED_ZB1P || kind == SCHED_DUALPIPE || kind == SCHED_DUALPIPEV;
    s->nops = calloc(pp, sizeof(*s->nops));
    s->ops = calloc(pp, sizeof(*s->ops));
    if (!s->nops || !s->ops)
        goto out_free_s;
    /* Per rank: pieces / pp pieces (dualpipe: two directions of M/2 micro-batches, the
     * same count), each with M F's, M B's and, with split_w, at most M W's. */
    int per_piece = s->split_w ? 3 : 2;
    int cap = per_piece * microbatches * (s->pieces / pp);
    struct sched_op *wq = malloc(2 * (size_t)microbatches * sizeof(*wq));
    if (!wq)
        goto out_free_s;
    for (int r = 0; r < pp; r++) {
        s->ops[r] = malloc((size_t)cap * sizeof(**s->ops));
        if (!s->ops[r])
            goto out_free_wq;
        err = build_rank(s, r, cap, wq);
        if (err)
            goto out_free_wq;
        err = -ENOMEM;
    }
    free(wq);
    *out = s;
    return 0;

out_free_wq:
    free(wq);
out_free_s:
    sched_free(s);
    return err;
}

/* ---- ideal run ---- */

void sched_ideal_free(struct sched_ideal *r)
{
    if (!r)
        return;
    free(r->busy_s);
    free(r->bubble_s);
    free(r->peak_act);
    for (int i = 0; r->start_s && i < r->nranks; i++)
        free(r->start_s[i]);
    for (int i = 0; r->end_s && i < r->nranks; i++)
        free(r->end_s[i]);
    free(r->start_s);
    free(r->end_s);
    *r = (struct sched_ideal){ 0 };
}

/* End times of every op, by kind, micro-batch and piece; < 0 while not run. */
struct ideal_tab {
    const struct sched *s;
    double *end[3];
};

static double *tab_slot(const struct ideal_tab *t, const struct sched_op *op)
{
    return &t->end[op->kind][(size_t)op->mb * t->s->pieces + op->piece];
}

/* When op's dependencies (sched.h) are all done: their latest end; -1 when one is not. */
static double deps_done_s(const struct ideal_tab *t, const struct sched_op *op)
{
    struct sched_op dep[2];
    int n = 0;
    double at = 0.0;

    switch (op->kind) {
    case SCHED_F:
        if (op->piece > 0)
            dep[n++] = (struct sched_op){ SCHED_F, op->mb, op->piece - 1, false, false };
        break;
    case SCHED_B:
        dep[n++] = (struct sched_op){ SCHED_F, op->mb, op->piece, false, false };
        if (op->piece < t->s->pieces - 1)
            dep[n++] = (struct sched_op){ SCHED_B, op->mb, op->piece + 1, false, false };
        break;
    case SCHED_W:
        dep[n++] = (struct sched_op){ SCHED_B, op->mb, op->piece, false, false };
        break;
    }
    for (int i = 0; i < n; i++) {
        double e = *tab_slot(t, &dep[i]);
        if (e < 0)
            return -1.0;
        at = fmax(at, e);
    }
    return at;
}

/* An op the schedule could not have made: out of range, W or a split B without split_w,
 * full on a non-B, on a rank that does not hold its piece, or run twice (a W counts as
 * run once its full B has). */
static bool op_bad(const struct ideal_tab *t, const struct sched_op *op, int rank)
{
    const struct sched *s = t->s;

    if ((unsigned)op->kind > SCHED_W || (op->kind != SCHED_B && op->full))
        return true;
    if (!s->split_w && (op->kind == SCHED_W || (op->kind == SCHED_B && !op->full)))
        return true;
    if (sched_rank(s, op->mb, op->piece) != rank)
        return true;
    return *tab_slot(t, op) >= 0;
}

/* Runs rank r's list as far as dependencies allow; 1 if it ran something, 0 if not,
 * -EINVAL on a bad op or a pair without a partner. */
static int ideal_advance(const struct ideal_tab *t, struct sched_ideal *out, int r, int *next,
                         double *free_s, const double dur_s[3], double fb_s)
{
    const struct sched *s = t->s;
    int ran = 0;

    while (next[r] < s->nops[r]) {
        int i = next[r];
        const struct sched_op *op = &s->ops[r][i];
        int n = op->pair_next ? 2 : 1;
        if (i + n > s->nops[r] || (n == 2 && op[1].pair_next))
            return -EINVAL;
        double start = free_s[r];
        for (int j = 0; j < n; j++) {
            if (op_bad(t, &op[j], r))
                return -EINVAL;
            double d = deps_done_s(t, &op[j]);
            if (d < 0)
                return ran;
            start = fmax(start, d);
        }
        double len = n == 2 ? fb_s : dur_s[op->kind];
        if (n == 1 && op->full)
            len += dur_s[SCHED_W];
        for (int j = 0; j < n; j++) {
            *tab_slot(t, &op[j]) = start + len;
            if (op[j].full)
                *tab_slot(t, &(struct sched_op){ SCHED_W, op[j].mb, op[j].piece, false,
                                                 false }) = start + len;
            out->start_s[r][i + j] = start;
            out->end_s[r][i + j] = start + len;
        }
        free_s[r] = start + len;
        out->busy_s[r] += len;
        next[r] += n;
        ran = 1;
    }
    return ran;
}

/* Activation held on rank r: +pp/pieces at each F's start, - at its B's end. */
struct act_ev {
    double t_s;
    double d;
};

static int act_cmp(const void *a, const void *b)
{
    const struct act_ev *x = a, *y = b;

    if (x->t_s != y->t_s)
        return x->t_s < y->t_s ? -1 : 1;
    return (x->d > y->d) - (x->d < y->d);  /* releases first: [F start, B end) */
}

static int ideal_peak(const struct ideal_tab *t, struct sched_ideal *out, int r)
{
    const struct sched *s = t->s;
    struct act_ev *ev = malloc(2 * (size_t)s->nops[r] * sizeof(*ev));
    double unit = (double)s->pp / s->pieces, held = 0.0, peak = 0.0;
    int n = 0;

    if (!ev)
        return -ENOMEM;
    for (int i = 0; i < s->nops[r]; i++) {
        const struct sched_op *op = &s->ops[r][i];
        if (op->kind == SCHED_F)
            ev[n++] = (struct act_ev){ out->start_s[r][i], unit };
        else if (op->kind == SCHED_B)
            ev[n++] = (struct act_ev){ out->end_s[r][i], -unit };
    }
    qsort(ev, n, sizeof(*ev), act_cmp);
    for (int i = 0; i < n; i++) {
        held += ev[i].d;
        peak = fmax(peak, held);
    }
    out->peak_act[r] = peak;
    free(ev);
    return 0;
}

/* -EINVAL for a negative op count or a missing list. */
static int ideal_alloc(struct sched_ideal *out, const struct sched *s)
{
    int pp = s->pp;

    out->nranks = pp;
    out->busy_s = calloc(pp, sizeof(double));
    out->bubble_s = calloc(pp, sizeof(double));
    out->peak_act = calloc(pp, sizeof(double));
    out->start_s = calloc(pp, sizeof(double *));
    out->end_s = calloc(pp, sizeof(double *));
    if (!out->busy_s || !out->bubble_s || !out->peak_act || !out->start_s || !out->end_s)
        return -ENOMEM;
    for (int r = 0; r < pp; r++) {
        if (s->nops[r] < 0 || !s->ops[r])
            return -EINVAL;
        out->start_s[r] = calloc(s->nops[r] ? s->nops[r] : 1, sizeof(double));
        out->end_s[r] = calloc(s->nops[r] ? s->nops[r] : 1, sizeof(double));
        if (!out->start_s[r] || !out->end_s[r])
            return -ENOMEM;
    }
    return 0;
}

/* Passes over the ranks until one runs nothing: each pass runs at least one op, and a
 * blocked rank costs one look per pass, so O(ops * pp) worst case. */
int sched_ideal_run(const struct sched *s, double f_s, double b_s, double w_s, double fb_s,
                    struct sched_ideal *out)
{
    const double dur_s[3] = { f_s, b_s, w_s };
    struct ideal_tab t = { .s = s };
    int err = -ENOMEM;

    if (!out)
        return -EINVAL;
    *out = (struct sched_ideal){ 0 };
    if (!s || s->pp < 1 || s->pieces < 1 || s->microbatches < 1 || !s->nops || !s->ops)
        return -EINVAL;
    for (int k = 0; k < 4; k++) {
        double v = k < 3 ? dur_s[k] : fb_s;
        if (!isfinite(v) || v < 0)
            return -EINVAL;
    }
    size_t nslot = (size_t)s->microbatches * s->pieces;
    int *next = calloc(s->pp, sizeof(*next));
    double *free_s = calloc(s->pp, sizeof(*free_s));
    for (int k = 0; k < 3; k++) {
        t.end[k] = malloc(nslot * sizeof(double));
        for (size_t i = 0; t.end[k] && i < nslot; i++)
            t.end[k][i] = -1.0;
    }
    if (!next || !free_s || !t.end[0] || !t.end[1] || !t.end[2])
        goto out_free;
    err = ideal_alloc(out, s);
    if (err)
        goto out_free;
    for (bool moved = true; moved;) {
        moved = false;
        for (int r = 0; r < s->pp; r++) {
            err = ideal_advance(&t, out, r, next, free_s, dur_s, fb_s);
            if (err < 0)
                goto out_free;
            moved |= err > 0;
        }
    }
    /* Nothing moved: every list is done, or the lists wait on each other (deadlock). */
    err = -EINVAL;
    for (int r = 0; r < s->pp; r++) {
        if (next[r] < s->nops[r])
            goto out_free;
        out->makespan_s = fmax(out->makespan_s, free_s[r]);
    }
    /* ... and every F, B and W (or full B) of every micro-batch and piece ran. */
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < nslot; i++)
            if (t.end[k][i] < 0)
                goto out_free;
    for (int r = 0; r < s->pp; r++) {
        out->bubble_s[r] = out->makespan_s - out->busy_s[r];
        err = ideal_peak(&t, out, r);
        if (err)
            goto out_free;
    }
    err = 0;
out_free:
    for (int k = 0; k < 3; k++)
        free(t.end[k]);
    free(free_s);
    free(next);
    if (err)
        sched_ideal_free(out);
    return err;
}
