/* stepgraph.c: a step's sub-op graph, built once after the tables (steptab.c) and
 * before the run; see stepeng.h and step.h.
 *
 * Every sub-op of every scheduled op of every lane, with its dependencies (sched.h's
 * between ops, chains within an op), in the lanes' stream queues; overlapped pairs (a
 * training schedule's F&B, an inference step's two micro-batches) interleaved segment
 * by segment. Cost: O(sub-ops + dependencies).
 */
#include "stepeng.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

/* ---- growable int array ---- */

static int ivec_push(struct ivec *a, int x)
{
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        int *v = realloc(a->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static int op_index(const struct eng *e, int mb, int piece, int kind, int g)
{
    return ((mb * e->pieces + piece) * 3 + kind) * e->groups + g;
}

static int add_sop(struct eng *e, int lane, int stream, int what, int kind, int mb, int piece,
                   int layer, double work_s)
{
    if (e->nsops == e->capsops) {
        int64_t cap = e->capsops ? 2 * e->capsops : 4096;
        struct sop *s = realloc(e->sops, (size_t)cap * sizeof(*s));
        if (!s)
            return -ENOMEM;
        e->sops = s;
        e->capsops = cap;
    }
    if (e->nsops >= INT32_MAX)
        return -ENOMEM;
    struct sop *s = &e->sops[e->nsops];
    memset(s, 0, sizeof(*s));
    s->eng = e;
    s->work_s = work_s;
    s->lane = lane;
    s->mb = mb;
    s->piece = piece;
    s->layer = layer;
    s->stream = (uint8_t)stream;
    s->what = (uint8_t)what;
    s->kind = (uint8_t)kind;
    s->t0_s = s->t1_s = NAN;
    return (int)e->nsops++;
}

static int add_dep(struct eng *e, int from, int to)
{
    if (from < 0 || to < 0)
        return 0;
    int rc = ivec_push(&e->from, from);
    return rc ? rc : ivec_push(&e->to, to);
}

/* Emission of one scheduled op: appends its sub-ops to `seq` (in order) and chains them. */
struct emit {
    struct eng *e;
    int lane, g, mb, piece, kind;
    bool full;                /* B: with the weight gradient */
    struct ivec *seq;
    int rc;
    int stage;                /* of the sub-ops emitted now (a staged pair's; else 0) */
};

static int emit(struct emit *x, int stream, int what, int layer, double work_s, int dep1, int dep2)
{
    if (x->rc)
        return -1;
    int id = add_sop(x->e, x->lane, stream, what, x->kind, x->mb, x->piece, layer, work_s);
    if (id < 0) {
        x->rc = id;
        return -1;
    }
    x->e->sops[id].stage = x->stage;
    int rc = add_dep(x->e, dep1, id);
    if (!rc && dep2 != dep1)
        rc = add_dep(x->e, dep2, id);
    if (!rc && stream != STEP_P2P)
        rc = ivec_push(x->seq, id);
    if (rc) {
        x->rc = rc;
        return -1;
    }
    return id;
}

/* Forward of one micro-batch on one piece. *first: a zero-time join that the op's
 * inputs feed; *exit_id: what the next piece waits for (the send); *lastc: the last
 * sub-op on the lane's streams. In a staged pair (lead > 0: decode's two micro-batches,
 * serve.h) a MoE layer runs in 5 stages: ATTN-0 | ATTN-1, gate, dispatch | shared expert
 * | experts, combine | the combine's arrival (no compute); a dense layer in 2: ATTN-0 |
 * ATTN-1, FFN. */
static void emit_forward(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    int p = x->piece, side = -1, st = e->lead > 0;
    int prev = *first = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, -1, -1);
    if (p == 0)
        prev = emit(x, STEP_COMPUTE, STEP_EMBED, -1, e->embed.f_s, prev, prev);
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        if (e->sp_s) {        /* attention TP (serve.h): gather the group's tokens */
            prev = emit(x, STEP_COMM, STEP_ATTN_GATHER, l, e->sp_s[x->g], prev, side);
            side = -1;
        }
        int id;
        if (st) {
            id = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn_split_s[0], prev, side);
            x->stage++;
            id = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn_split_s[1], id, id);
        } else {
            id = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn.f_s, prev, side);
        }
        side = -1;
        if (e->sp_s)          /* and scatter the summed outputs back */
            id = emit(x, STEP_COMM, STEP_ATTN_SCATTER, l, e->sp_s[x->g], id, id);
        if (!model_layer_is_moe(&e->m, l)) {
            prev = emit(x, STEP_COMPUTE, STEP_FFN, l, e->ffn.f_s, id, id);
            x->stage += st;
            continue;
        }
        const struct moe_tab *t = &e->moe[l];
        int gate = emit(x, STEP_COMPUTE, STEP_GATE, l, e->gate.f_s, id, id);
        int disp = emit(x, STEP_COMM, STEP_DISPATCH, l, t->disp_s[x->g], gate, gate);
        x->stage += st;
        if (e->c->model.shared_experts > 0 && !config_shared_routed(e->c))
            side = emit(x, STEP_COMPUTE, STEP_SHARED, l, e->shared.f_s, gate, gate);
        x->stage += st;
        int exp = emit(x, STEP_COMPUTE, STEP_EXPERTS, l,
                       group_max(t->f_s + (size_t)x->g * e->ep, e->ep), disp, disp);
        prev = emit(x, STEP_COMM, STEP_COMBINE, l, t->comb_s[x->g], exp, exp);
        x->stage += 2 * st;
    }
    if (p == e->pieces - 1) {
        prev = emit(x, STEP_COMPUTE, STEP_HEAD, -1, e->head.f_s, prev, side);
        side = -1;
    }
    *lastc = prev;
    *exit_id = prev;
    if (p < e->pieces - 1) {
        int a = sched_rank(e->s, x->mb, p), b = sched_rank(e->s, x->mb, p + 1);
        *exit_id = emit(x, STEP_P2P, STEP_SEND, -1, e->send_s[((size_t)a * e->pp + b) *
                        e->groups + x->g], prev, side);
    } else if (side >= 0) {
        *exit_id = *lastc = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, prev, side);
    }
}

/* Backward (input gradient; with the weight gradient when the schedule does not split). */
static void emit_backward(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    bool w = x->full;
    int p = x->piece, id;
    int prev = *first = emit(x, STEP_P2P, STEP_SEND, -1, 0.0, -1, -1);
    if (p == e->pieces - 1)
        prev = emit(x, STEP_COMPUTE, STEP_HEAD, -1, e->head.b_s + (w ? e->head.w_s : 0),
                    prev, prev);
    for (int l = e->piece_hi[p] - 1; l >= e->piece_lo[p]; l--) {
        if (!model_layer_is_moe(&e->m, l)) {
            id = emit(x, STEP_COMPUTE, STEP_FFN, l, e->ffn.b_s + (w ? e->ffn.w_s : 0), prev, prev);
        } else {
            const struct moe_tab *t = &e->moe[l];
            const double *bs = t->b_s + (size_t)x->g * e->ep, *ws = t->w_s + (size_t)x->g * e->ep;
            int side = -1;
            int cg = emit(x, STEP_COMM, STEP_COMBINE, l, t->bdisp_s[x->g], prev, prev);
            if (e->c->model.shared_experts > 0)
                side = emit(x, STEP_COMPUTE, STEP_SHARED, l,
                            e->shared.b_s + (w ? e->shared.w_s : 0), prev, prev);
            int exb = emit(x, STEP_COMPUTE, STEP_EXPERTS, l, group_max(bs, e->ep), cg, cg);
            if (w)
                emit(x, STEP_COMPUTE, STEP_EXPERTS_W, l, group_max(ws, e->ep), exb, exb);
            int dg = emit(x, STEP_COMM, STEP_DISPATCH, l, t->bcomb_s[x->g], exb, exb);
            id = emit(x, STEP_COMPUTE, STEP_GATE, l, e->gate.b_s + (w ? e->gate.w_s : 0), dg, side);
        }
        prev = emit(x, STEP_COMPUTE, STEP_ATTN, l, e->attn.b_s + (w ? e->attn.w_s : 0), id, id);
    }
    if (p == 0 && w)
        prev = emit(x, STEP_COMPUTE, STEP_EMBED, -1, e->embed.w_s, prev, prev);
    *lastc = prev;
    *exit_id = prev;
    if (p > 0) {
        int a = sched_rank(e->s, x->mb, p), b = sched_rank(e->s, x->mb, p - 1);
        *exit_id = emit(x, STEP_P2P, STEP_SEND, -1,
                        e->send_s[((size_t)a * e->pp + b) * e->groups + x->g], prev, prev);
    }
}

/* All weight gradients of a piece for one micro-batch (split-W schedules). */
static double piece_wgrad_s(const struct eng *e, int p, int g)
{
    double s = 0;
    if (p == 0)
        s += e->embed.w_s;
    if (p == e->pieces - 1)
        s += e->head.w_s;
    for (int l = e->piece_lo[p]; l < e->piece_hi[p]; l++) {
        s += e->attn.w_s;
        if (!model_layer_is_moe(&e->m, l)) {
            s += e->ffn.w_s;
            continue;
        }
        s += e->gate.w_s + e->shared.w_s;
        s += group_max(e->moe[l].w_s + (size_t)g * e->ep, e->ep);
    }
    return s;
}

/* The compute sub-op `what` of `layer` (-1: head) in B(x->mb, x->piece) on x's lane, or -1
 * when that B has none. A B's sub-ops are contiguous from its entry to its exit. */
static int b_subop(const struct emit *x, int what, int layer)
{
    const struct eng *e = x->e;
    int oi = op_index(e, x->mb, x->piece, SCHED_B, x->g);
    int hi = e->exitp[oi] > e->lastc[oi] ? e->exitp[oi] : e->lastc[oi];
    for (int i = e->entry[oi]; i >= 0 && i <= hi; i++)
        if (e->sops[i].stream == STEP_COMPUTE && e->sops[i].what == what &&
            e->sops[i].layer == layer)
            return i;
    return -1;
}

/* A W op of a filling schedule (fill_w) as chunks, each after the sub-op of its own B
 * that makes the chunk's output gradient, in the order the B makes them: the head's,
 * then per layer from the top: the shared experts', the routed experts', the rest
 * (attention, gate or dense FFN, and the embedding below the first layer). The sum is
 * piece_wgrad_s. *first is -1: the chunks' dependencies replace the op's. */
static void emit_wgrad_chunks(struct emit *x, int *first, int *exit_id, int *lastc)
{
    struct eng *e = x->e;
    int p = x->piece, id = -1;
    *first = -1;
    if (p == e->pieces - 1)
        id = emit(x, STEP_COMPUTE, STEP_WGRAD, -1, e->head.w_s, b_subop(x, STEP_HEAD, -1), -1);
    for (int l = e->piece_hi[p] - 1; l >= e->piece_lo[p]; l--) {
        double rest = e->attn.w_s + (p == 0 && l == e->piece_lo[p] ? e->embed.w_s : 0);
        if (!model_layer_is_moe(&e->m, l)) {
            rest += e->ffn.w_s;
        } else {
            rest += e->gate.w_s;
            if (e->c->model.shared_experts > 0)
                emit(x, STEP_COMPUTE, STEP_WGRAD, l, e->shared.w_s,
                     b_subop(x, STEP_SHARED, l), -1);
            else
                rest += e->shared.w_s;
            emit(x, STEP_COMPUTE, STEP_WGRAD, l,
                 group_max(e->moe[l].w_s + (size_t)x->g * e->ep, e->ep),
                 b_subop(x, STEP_EXPERTS, l), -1);
        }
        id = emit(x, STEP_COMPUTE, STEP_WGRAD, l, rest, b_subop(x, STEP_ATTN, l), -1);
    }
    *exit_id = *lastc = id;
}

/* Straggler wait of each GPU of lane (rank, g) in one op (at full speed). */
static void add_straggler(struct eng *e, int rank, int g, int piece, int kind, bool w_in_b)
{
    for (int l = e->piece_lo[piece]; l < e->piece_hi[piece]; l++) {
        if (!model_layer_is_moe(&e->m, l))
            continue;
        const struct moe_tab *t = &e->moe[l];
        const double *v[2] = { NULL, NULL };
        if (kind == SCHED_F)
            v[0] = t->f_s;
        else if (kind == SCHED_B)
            v[0] = t->b_s, v[1] = w_in_b ? t->w_s : NULL;
        else
            v[0] = t->w_s;
        for (int k = 0; k < 2 && v[k]; k++) {
            const double *x = v[k] + (size_t)g * e->ep;
            double mx = group_max(x, e->ep);
            for (int j = 0; j < e->ep; j++)
                e->straggler[(size_t)rank * e->dp + (size_t)g * e->ep + j] += mx - x[j];
        }
    }
}

/* Queues the next segment of q (from *i): a run of compute sub-ops and the
 * communication sub-ops right after it, all of stage *stage. Where q's next sub-op is of
 * a later stage, *stage moves on by one: a stage with no sub-ops is an empty segment. */
static int push_segment(struct eng *e, struct lane *ln, const struct ivec *q, int *i,
                        int *stage)
{
    bool seen_comm = false;
    int rc = 0;
    while (q && *i < q->n && !rc) {
        struct sop *s = &e->sops[q->v[*i]];
        bool comm = s->stream == STEP_COMM;
        if (s->stage != *stage) {
            (*stage)++;
            break;
        }
        if (!comm && seen_comm)
            break;
        seen_comm |= comm;
        if (comm && !e->overlap)
            s->queued_comm = 1;
        rc = ivec_push(comm && e->overlap ? &ln->mq : &ln->cq, q->v[*i]);
        (*i)++;
    }
    return rc;
}

/* Queue the sub-ops of seq on their lane's streams. A pair (two seqs) is interleaved
 * segment by segment, the first seq's `lead` segments first: F&B pairs and prefill's F&F
 * pair with lead 0 (one's attention and experts beside the other's dispatch and
 * combine), decode's staged F&F pair with lead 2 (emit_forward; serve.h). */
static int enqueue(struct eng *e, struct lane *ln, const struct ivec *a, const struct ivec *b,
                   int lead)
{
    const struct ivec *src[2] = { a, b };
    int i[2] = { 0, 0 }, stage[2] = { 0, 0 }, turn = 0, rc = 0;
    while (!rc && (i[0] < a->n || (b && i[1] < b->n))) {
        rc = push_segment(e, ln, src[turn], &i[turn], &stage[turn]);
        if (lead > 0)
            lead--;
        else if (b)
            turn ^= 1;
    }
    return rc;
}

/* The sub-ops whose end op `oi` (an op_index) waits for, by the dependencies of
 * sched.h; -1 where none. */
static void op_inputs(const struct eng *e, int oi, int in[3])
{
    int g = oi % e->groups, kind = (oi / e->groups) % 3;
    int p = (oi / e->groups / 3) % e->pieces, m = oi / e->groups / 3 / e->pieces;
    in[0] = in[1] = in[2] = -1;
    if (kind == SCHED_F && p > 0)
        in[0] = e->exitp[op_index(e, m, p - 1, SCHED_F, g)];
    if (kind == SCHED_B) {
        in[0] = e->lastc[op_index(e, m, p, SCHED_F, g)];
        if (p < e->pieces - 1)
            in[1] = e->exitp[op_index(e, m, p + 1, SCHED_B, g)];
    }
    if (kind == SCHED_W)
        in[0] = e->lastc[op_index(e, m, p, SCHED_B, g)];
}

/* The op tables (entry, exitp, lastc), every op not laid out yet (-1). */
static int op_tables_alloc(struct eng *e)
{
    size_t nop = (size_t)e->M * e->pieces * 3 * e->groups;
    e->entry = malloc(nop * sizeof(int));
    e->exitp = malloc(nop * sizeof(int));
    e->lastc = malloc(nop * sizeof(int));
    if (!e->entry || !e->exitp || !e->lastc)
        return -ENOMEM;
    for (size_t i = 0; i < nop; i++)
        e->entry[i] = e->exitp[i] = e->lastc[i] = -1;
    return 0;
}

/* Scheduled op `op` of rank r on EP group g: its sub-ops into seq (emptied first), the
 * activations it holds from its first sub-op (F) to its last compute (B), its entry,
 * exit and last sub-op in the op tables, its GPUs' straggler waits. */
static int emit_op(struct eng *e, int r, int g, const struct sched_op *op, struct ivec *seq)
{
    struct emit x = { e, r * e->groups + g, g, op->mb, op->piece, op->kind,
                      op->kind != SCHED_B || op->full, seq, 0, 0 };
    int first = -1, ex = -1, lc = -1;
    seq->n = 0;
    if (op->kind == SCHED_F)
        emit_forward(&x, &first, &ex, &lc);
    else if (op->kind == SCHED_B)
        emit_backward(&x, &first, &ex, &lc);
    else if (e->fill_w)
        emit_wgrad_chunks(&x, &first, &ex, &lc);
    else
        first = ex = lc = emit(&x, STEP_COMPUTE, STEP_WGRAD, -1,
                               piece_wgrad_s(e, op->piece, g), -1, -1);
    if (x.rc)
        return x.rc;
    if (op->kind == SCHED_F)
        e->sops[seq->v[0]].act = ACT_ADD;
    else if (op->kind == SCHED_B)
        e->sops[lc].act = ACT_SUB;
    size_t oi = (size_t)op_index(e, op->mb, op->piece, op->kind, g);
    e->entry[oi] = first;
    e->exitp[oi] = ex;
    e->lastc[oi] = lc;
    add_straggler(e, r, g, op->piece, op->kind, op->kind == SCHED_B && op->full);
    return 0;
}

/* The DP reduce of op's piece on lane `lane` (EP group g), after op's last sub-op. */
static int emit_reduce(struct eng *e, int lane, int g, const struct sched_op *op)
{
    struct ivec one = { 0 };
    struct emit x = { e, lane, g, -1, op->piece, op->kind, true, &one, 0, 0 };
    int lc = e->lastc[op_index(e, op->mb, op->piece, op->kind, g)];
    emit(&x, STEP_COMM, STEP_DP_REDUCE, -1, e->reduce_s[(size_t)op->piece * e->groups + g],
         lc, lc);
    int rc = x.rc ? x.rc : enqueue(e, &e->lanes[lane], &one, NULL, 0);
    free(one.v);
    return rc;
}

/* Queues the nseq ops emitted into seq (one op, or an overlapped F&B or F&F pair, recorded in
 * pair_f and pair_b) from rank r's k-th on lane (r, g); fill_w: a W's chunks also on the
 * lane's filler list, in order, for they may start early (try_start). */
static int queue_ops(struct eng *e, int r, int g, int k, int nseq, struct ivec seq[2])
{
    const struct sched_op *ops = &e->s->ops[r][k];
    struct lane *ln = &e->lanes[r * e->groups + g];
    int rc = 0;
    if (nseq == 2) {
        rc = ivec_push(&e->pair_f, op_index(e, ops[0].mb, ops[0].piece, ops[0].kind, g));
        if (!rc)
            rc = ivec_push(&e->pair_b, op_index(e, ops[1].mb, ops[1].piece, ops[1].kind, g));
    }
    if (!rc)
        rc = enqueue(e, ln, &seq[0], nseq == 2 ? &seq[1] : NULL, nseq == 2 ? e->lead : 0);
    if (!rc && e->fill_w && ops[0].kind == SCHED_W)
        for (int i = 0; i < seq[0].n && !rc; i++)
            rc = ivec_push(&ln->wq, seq[0].v[i]);
    return rc;
}

/* Lays out the ops of rank r's schedule on its EP group g, in order, each piece's DP
 * reduce after the piece's last backward op on the rank. left: scratch, per piece. */
static int emit_lane(struct eng *e, int r, int g, int *left, struct ivec seq[2])
{
    const struct sched *s = e->s;
    int rc = 0;
    memset(left, 0, (size_t)e->pieces * sizeof(int));
    for (int k = 0; k < s->nops[r]; k++)
        left[s->ops[r][k].piece]++;
    for (int k = 0; k < s->nops[r] && !rc; k++) {
        if (e->serve && s->ops[r][k].kind != SCHED_F)
            continue;             /* an inference step: the forward only */
        /* serve_pair: F(0) and F(1), the first two of a one-stage GPipe's list */
        bool pair = (s->ops[r][k].pair_next && e->overlap) ||
                    (e->serve_pair && k + 1 < s->nops[r] && s->ops[r][k + 1].kind == SCHED_F);
        int nseq = pair && k + 1 < s->nops[r] ? 2 : 1;
        for (int q = 0; q < nseq && !rc; q++)
            rc = emit_op(e, r, g, &s->ops[r][k + q], &seq[q]);
        if (!rc)
            rc = queue_ops(e, r, g, k, nseq, seq);
        for (int q = 0; q < nseq && !rc; q++) {
            const struct sched_op *op = &s->ops[r][k + q];
            if (--left[op->piece] || (op->kind == SCHED_F))
                continue;
            rc = emit_reduce(e, r * e->groups + g, g, op);
        }
        k += nseq - 1;
    }
    return rc;
}

/* Dependencies between ops (sched.h): F(m,p-1) -> F(m,p); F(m,p) -> B(m,p);
 * B(m,p+1) -> B(m,p); B(m,p) -> W(m,p). */
static int op_deps(struct eng *e)
{
    int rc = 0;
    for (int m = 0; m < e->M && !rc; m++)
        for (int p = 0; p < e->pieces && !rc; p++)
            for (int g = 0; g < e->groups && !rc; g++) {
                for (int kind = SCHED_F; kind <= SCHED_W && !rc; kind++) {
                    int oi = op_index(e, m, p, kind, g), in[3];
                    op_inputs(e, oi, in);
                    for (int k = 0; k < 3 && !rc; k++)
                        rc = add_dep(e, in[k], e->entry[oi]);
                }
            }
    return rc;
}

/* An overlapped pair starts when the inputs of both its ops are there (the reference
 * DualPipe receives both before it runs the chunk pair): each op's entry also waits for
 * its partner's inputs. */
static int pair_deps(struct eng *e)
{
    int rc = 0;
    for (int i = 0; i < e->pair_f.n && !rc; i++) {
        int fi = e->pair_f.v[i], bi = e->pair_b.v[i];
        int in[2][3];
        op_inputs(e, fi, in[0]);
        op_inputs(e, bi, in[1]);
        for (int k = 0; k < 3 && !rc; k++) {
            rc = add_dep(e, in[1][k], e->entry[fi]);
            if (!rc)
                rc = add_dep(e, in[0][k], e->entry[bi]);
        }
    }
    return rc;
}

/* The dependency edges as successor lists (CSR: succ0, nsucc into succ), in the order
 * the edges were added; nwait counts each sub-op's inputs. */
static int succ_csr(struct eng *e)
{
    e->succ = malloc((size_t)(e->from.n ? e->from.n : 1) * sizeof(int));
    if (!e->succ)
        return -ENOMEM;
    for (int i = 0; i < e->from.n; i++) {
        e->sops[e->from.v[i]].nsucc++;
        e->sops[e->to.v[i]].nwait++;
    }
    int64_t acc = 0;
    for (int64_t i = 0; i < e->nsops; i++) {
        e->sops[i].succ0 = (int)acc;
        acc += e->sops[i].nsucc;
        e->sops[i].nsucc = 0;
    }
    for (int i = 0; i < e->from.n; i++) {
        struct sop *f = &e->sops[e->from.v[i]];
        e->succ[f->succ0 + f->nsucc++] = e->to.v[i];
    }
    return 0;
}

int stepgraph_build(struct eng *e)
{
    int rc = op_tables_alloc(e);
    if (rc)
        return rc;
    struct ivec seq[2] = { { 0 }, { 0 } };
    int *left = calloc((size_t)e->pieces, sizeof(int));   /* ops left per piece on a rank */
    if (!left)
        return -ENOMEM;
    for (int r = 0; r < e->pp && !rc; r++)
        for (int g = 0; g < e->groups && !rc; g++)
            rc = emit_lane(e, r, g, left, seq);
    free(left);
    free(seq[0].v);
    free(seq[1].v);
    if (!rc)
        rc = op_deps(e);
    if (!rc)
        rc = pair_deps(e);
    return rc ? rc : succ_csr(e);
}
