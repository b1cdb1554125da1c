/* calib.c: expert and message timings of `moeprof calibrate`; see calib.h. */
#include "calib.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef MOEPROF_CUDA
#include <cuda_runtime_api.h>
#endif

#include "fit.h"
#include "tensors.h"
#include "timer.h"
#include "trympi.h"

/* ---- the expert ---- */

/* A stage's clock: the host's, or (CUDA) two events around the stage. */
struct stage_clock {
    bool cuda;
    double t0_s;
#ifdef MOEPROF_CUDA
    cudaEvent_t ev[2];
#endif
};

static int clock_begin(struct stage_clock *k)
{
#ifdef MOEPROF_CUDA
    if (k->cuda)
        return cudaEventRecord(k->ev[0], 0) == cudaSuccess ? 0 : -EIO;
#endif
    k->t0_s = tmr_now_s();
    return 0;
}

static int clock_end(struct stage_clock *k, double *dt_s)
{
#ifdef MOEPROF_CUDA
    if (k->cuda) {
        float ms = 0;
        if (cudaEventRecord(k->ev[1], 0) != cudaSuccess ||
            cudaEventSynchronize(k->ev[1]) != cudaSuccess ||
            cudaEventElapsedTime(&ms, k->ev[0], k->ev[1]) != cudaSuccess)
            return -EIO;
        *dt_s = ms * 1e-3;
        return 0;
    }
#endif
    *dt_s = tmr_now_s() - k->t0_s;
    return 0;
}

static int clock_create(struct stage_clock *k, bool cuda)
{
    memset(k, 0, sizeof(*k));
    k->cuda = cuda;
#ifdef MOEPROF_CUDA
    if (cuda && (cudaEventCreate(&k->ev[0]) != cudaSuccess ||
                 cudaEventCreate(&k->ev[1]) != cudaSuccess))
        return -EIO;
#else
    if (cuda)
        return -ENOTSUP;
#endif
    return 0;
}

static void clock_free(struct stage_clock *k)
{
#ifdef MOEPROF_CUDA
    for (int i = 0; i < 2; i++)
        if (k->ev[i])
            cudaEventDestroy(k->ev[i]);
#else
    (void)k;
#endif
}

/* Expert 0's weights and gradients, a ctx for `rows` rows, and its four row buffers. */
struct expert_run {
    const struct moe_ops *ops;
    struct moe_cfg cfg;
    struct moe_weights w, dw;
    struct moe_ctx *ctx;
    void *x, *y, *dy, *dx;
};

static void expert_free(struct expert_run *e)
{
    e->ops->ctx_free(e->ctx);
    tns_weights_free(&e->w, e->ops, &e->cfg);
    tns_weights_free(&e->dw, e->ops, &e->cfg);
    e->ops->free(e->x);
    e->ops->free(e->y);
    e->ops->free(e->dy);
    e->ops->free(e->dx);
}

static int expert_create(struct expert_run *e, const struct moe_ops *ops,
                         const struct moe_cfg *c, int rows, uint64_t seed, int rank)
{
    memset(e, 0, sizeof(*e));
    e->ops = ops;
    e->cfg = *c;
    bool *held = calloc((size_t)c->experts, sizeof(bool));
    if (!held)
        return -ENOMEM;
    held[0] = true;
    int rc = tns_weights(&e->w, ops, c, held, false, seed, 0);
    rc = rc ? rc : tns_weights(&e->dw, ops, c, held, true, seed, 0);
    free(held);
    rc = rc ? rc : ops->ctx_create(&e->ctx, c, 0, rows);
    rc = rc ? rc : tns_tokens(&e->x, ops, rows, c->hidden, (int64_t)rank * rows, TNS_X, seed, 0);
    rc = rc ? rc : tns_tokens(&e->dy, ops, rows, c->hidden, (int64_t)rank * rows, TNS_DOUT,
                              seed, 0);
    rc = rc ? rc : ops->alloc(&e->y, (size_t)rows * c->hidden);
    rc = rc ? rc : ops->alloc(&e->dx, (size_t)rows * c->hidden);
    if (rc)
        expert_free(e);
    return rc;
}

/* One forward and one backward of `rows` rows, each timed (when k is not NULL). */
static int expert_pass(struct expert_run *e, struct stage_clock *k, int rows, double *fwd_s,
                       double *bwd_s)
{
    const int32_t r = rows;
    struct moe_groups g = { .n = 1, .first = 0, .expert = NULL, .rows = &r };
    int rc = MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -EIO;
    rc = rc ? rc : clock_begin(k);
    rc = rc ? rc : e->ops->experts_fwd(e->ctx, &e->w, &g, e->x, e->y);
    rc = rc ? rc : clock_end(k, fwd_s);
    if (!rc && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        rc = -EIO;
    rc = rc ? rc : clock_begin(k);
    rc = rc ? rc : e->ops->experts_bwd(e->ctx, &e->w, &g, e->x, e->dy, e->dx, &e->dw);
    rc = rc ? rc : clock_end(k, bwd_s);
    return rc;
}

/* rc of every rank: the first nonzero one (by rank), so that all ranks stop together. */
static int agree(int rc)
{
    int mine = rc, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
        return -EIO;
    return worst;
}

/* One sample of `rows` rows: the medians of `inner` passes (scratch op_s [2 inner]). */
static int expert_sample(struct expert_run *e, struct stage_clock *k, int rows, int inner,
                         double *op_s, double *fwd_s, double *bwd_s)
{
    for (int j = 0; j < inner; j++) {
        int rc = agree(expert_pass(e, k, rows, &op_s[j], &op_s[inner + j]));
        if (rc)
            return rc;
    }
    struct fit_stats f, b;
    int rc = fit_stats(op_s, inner, &f);
    rc = rc ? rc : fit_stats(op_s + inner, inner, &b);
    *fwd_s = f.median;
    *bwd_s = b.median;
    return rc;
}

int cal_expert(const struct moe_ops *ops, const struct moe_cfg *c, bool cuda,
               const int *tokens, int n, int reps, uint64_t seed, double *fwd_s,
               double *bwd_s)
{
    int rank, ranks;
    TRY_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    TRY_MPI(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
    struct expert_run e;
    struct stage_clock k = { .cuda = false };
    bool have_e = false;
    /* mine[2 (i reps + s) + 0/1]: this rank's samples; all: rank 0's gather of them */
    double *mine = calloc(2 * (size_t)n * reps, sizeof(double));
    double *all = rank == 0 ? calloc(2 * (size_t)n * reps * ranks, sizeof(double)) : NULL;
    double *op_s = calloc(2 * CAL_EXPERT_INNER_MAX, sizeof(double));
    int *inner = calloc((size_t)n, sizeof(int));
    int rc = mine && op_s && inner && (rank || all) ? 0 : -ENOMEM;
    rc = rc ? rc : clock_create(&k, cuda);
    if (!rc)
        have_e = !(rc = expert_create(&e, ops, c, tokens[n - 1], seed, rank));
    rc = agree(rc);
    /* A warm-up pass of each count sets its inner (the slowest rank's want); then the
     * repetitions, each over the whole ladder, so that a burst of load elsewhere lands
     * on a few samples of many counts rather than on every sample of one. */
    for (int i = 0; i < n && !rc; i++) {
        double f = 0, b = 0;
        if ((rc = agree(expert_pass(&e, &k, tokens[i], &f, &b))))
            break;
        double want = CAL_SAMPLE_S / (f + b);      /* inf for a 0 reading: the most */
        inner[i] = want >= CAL_EXPERT_INNER_MAX ? CAL_EXPERT_INNER_MAX
                   : want <= CAL_EXPERT_INNER_MIN ? CAL_EXPERT_INNER_MIN : (int)ceil(want);
    }
    if (!rc && MPI_Allreduce(MPI_IN_PLACE, inner, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD))
        rc = -EIO;
    for (int s = 0; s < reps && !rc; s++)
        for (int i = 0; i < n && !rc; i++) {
            double *m = mine + 2 * ((size_t)i * reps + s);
            rc = expert_sample(&e, &k, tokens[i], inner[i], op_s, &m[0], &m[1]);
        }
    if (!rc && MPI_Gather(mine, 2 * n * reps, MPI_DOUBLE, all, 2 * n * reps, MPI_DOUBLE, 0,
                          MPI_COMM_WORLD))
        rc = -EIO;
    for (int r = 0; !rc && all && r < ranks; r++)   /* to [i][r reps + s] */
        for (int i = 0; i < n; i++)
            for (int x = 0; x < reps; x++) {
                const double *m = all + 2 * (((size_t)r * n + i) * reps + x);
                fwd_s[((size_t)i * ranks + r) * reps + x] = m[0];
                bwd_s[((size_t)i * ranks + r) * reps + x] = m[1];
            }
    if (have_e)
        expert_free(&e);
    clock_free(&k);
    free(mine);
    free(all);
    free(op_s);
    free(inner);
    return rc;
}

/* ---- the tiers ---- */

int cal_tiers_create(struct cal_tiers *t)
{
    int rank, ranks;
    memset(t, 0, sizeof(*t));
    t->node = MPI_COMM_NULL;
    TRY_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    TRY_MPI(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
    TRY_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                                &t->node));
    TRY_MPI(MPI_Comm_rank(t->node, &t->node_rank));
    TRY_MPI(MPI_Comm_size(t->node, &t->node_size));
    int first = rank;
    TRY_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, t->node));
    t->node_of = calloc((size_t)ranks, sizeof(int));
    if (!t->node_of)
        return -ENOMEM;
    TRY_MPI(MPI_Allgather(&first, 1, MPI_INT, t->node_of, 1, MPI_INT, MPI_COMM_WORLD));
    t->inter_peer = -1;
    int here0 = 0, off = 0;
    for (int r = 0; r < ranks; r++) {
        here0 += t->node_of[r] == t->node_of[0];
        if (t->node_of[r] != t->node_of[0] && t->inter_peer < 0)
            t->inter_peer = r;
    }
    t->intra_peers = here0 - 1;
    int mine = ranks - t->node_size;
    TRY_MPI(MPI_Allreduce(&mine, &off, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    t->inter_peers = off;
    return 0;
}

void cal_tiers_free(struct cal_tiers *t)
{
    if (t->node != MPI_COMM_NULL)
        MPI_Comm_free(&t->node);
    free(t->node_of);
    t->node_of = NULL;
}

/* ---- messages ---- */

/* One operation of a message test on this rank: `op` runs it `inner` times. */
struct msg_op {
    int (*run)(struct msg_op *m, size_t bytes, int inner, double *op_s);
    MPI_Comm comm;
    int peer;                 /* ping-pong: the other rank of comm; -1: this rank idles */
    bool leader;              /* ping-pong: sends first */
    int *counts, *displs;     /* all-to-all: [comm size], counts in bytes per peer */
    const bool *to;           /* all-to-all: [comm size], the tier's peers */
    char *sbuf, *rbuf;
    char *flush;              /* cold: CAL_FLUSH_BYTES written before each operation */
    int fill;                 /* cold: the byte written next (each time another) */
};

/* Cold buffers: write CAL_FLUSH_BYTES elsewhere (the caches lose the buffers, as the
 * layer's GEMMs make them), then the send buffer (as the permute writes it), then
 * meet the other ranks of the operation (pair: a zero-byte exchange; all-to-all: a
 * barrier of its comm), untimed. Hot: nothing. */
static int prepare(struct msg_op *m, size_t send_bytes, bool pair)
{
    if (!m->flush)
        return 0;
    m->fill = (m->fill + 1) & 0xff;
    memset(m->flush, m->fill, CAL_FLUSH_BYTES);
    memset(m->sbuf, m->fill, send_bytes);
    if (pair)
        TRY_MPI(MPI_Sendrecv(NULL, 0, MPI_BYTE, m->peer, 1, NULL, 0, MPI_BYTE, m->peer, 1,
                             m->comm, MPI_STATUS_IGNORE));
    else
        TRY_MPI(MPI_Barrier(m->comm));
    return 0;
}

static int pingpong_run(struct msg_op *m, size_t bytes, int inner, double *op_s)
{
    for (int i = 0; i < inner; i++) {
        if (m->peer < 0) {
            op_s[i] = 0;          /* an idle rank's time is none of the test's */
            continue;
        }
        int rc = prepare(m, bytes, true);
        if (rc)
            return rc;
        double t0 = tmr_now_s();
        if (m->leader) {
            TRY_MPI(MPI_Send(m->sbuf, (int)bytes, MPI_BYTE, m->peer, 0, m->comm));
            TRY_MPI(MPI_Recv(m->rbuf, (int)bytes, MPI_BYTE, m->peer, 0, m->comm,
                             MPI_STATUS_IGNORE));
        } else {
            TRY_MPI(MPI_Recv(m->rbuf, (int)bytes, MPI_BYTE, m->peer, 0, m->comm,
                             MPI_STATUS_IGNORE));
            TRY_MPI(MPI_Send(m->sbuf, (int)bytes, MPI_BYTE, m->peer, 0, m->comm));
        }
        op_s[i] = (tmr_now_s() - t0) / 2;     /* one way: half the round trip */
    }
    return 0;
}

static int alltoall_run(struct msg_op *m, size_t bytes, int inner, double *op_s)
{
    int n;
    TRY_MPI(MPI_Comm_size(m->comm, &n));
    for (int r = 0, at = 0; r < n; r++) {
        m->counts[r] = m->to[r] ? (int)bytes : 0;
        m->displs[r] = at;
        at += m->counts[r];
    }
    for (int i = 0; i < inner; i++) {
        int rc = prepare(m, (size_t)m->displs[n - 1] + m->counts[n - 1], false);
        if (rc)
            return rc;
        double t0 = tmr_now_s();
        TRY_MPI(MPI_Alltoallv(m->sbuf, m->counts, m->displs, MPI_BYTE, m->rbuf, m->counts,
                              m->displs, MPI_BYTE, m->comm));
        op_s[i] = tmr_now_s() - t0;
    }
    return 0;
}

/* A world barrier that sleeps while it waits (20 us between polls), so that ranks done
 * or idle (a ping-pong's others) leave the cores to the ranks still timing, where
 * there are more ranks than cores; MPI's own wait polls without sleeping. */
static int quiet_barrier(void)
{
    MPI_Request rq;
    int done = 0;
    TRY_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &rq));
    while (!done) {
        TRY_MPI(MPI_Test(&rq, &done, MPI_STATUS_IGNORE));
        if (!done)
            nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 20000 }, NULL);
    }
    return 0;
}

/* Runs `inner` operations after a world barrier, each timed; each operation's time is
 * the slowest rank's (an elementwise max over the world), and *t_s, on every rank, the
 * median of the `inner`: a rank descheduled in one operation (a shared machine) moves
 * that operation, not the sample. op_s: scratch [2 CAL_INNER_MAX]. */
static int timed(struct msg_op *m, size_t bytes, int inner, double *op_s, double *t_s)
{
    TRY_MPI(MPI_Barrier(MPI_COMM_WORLD));
    int rc = m->run(m, bytes, inner, op_s);
    rc = rc ? rc : quiet_barrier();
    rc = agree(rc);
    if (rc)
        return rc;
    TRY_MPI(MPI_Allreduce(op_s, op_s + CAL_INNER_MAX, inner, MPI_DOUBLE, MPI_MAX,
                          MPI_COMM_WORLD));
    struct fit_stats st;
    if ((rc = fit_stats(op_s + CAL_INNER_MAX, inner, &st)))
        return rc;
    *t_s = st.median;
    return 0;
}

/* For each size two untimed operations, whose time sets its inner; then the
 * repetitions, each over the whole ladder (a burst of load spreads over the sizes). */
static int ladder(struct msg_op *m, const size_t *bytes, int nsizes, int reps, double *t_s)
{
    double *op_s = malloc(2 * CAL_INNER_MAX * sizeof(double));
    int *inner = malloc((size_t)nsizes * sizeof(int));
    int rc = agree(op_s && inner ? 0 : -ENOMEM);
    for (int i = 0; i < nsizes && !rc; i++) {
        double warm;
        if ((rc = timed(m, bytes[i], 2, op_s, &warm)))
            break;
        double want = CAL_SAMPLE_S / warm;
        inner[i] = want >= CAL_INNER_MAX ? CAL_INNER_MAX : want <= 1 ? 1 : (int)ceil(want);
        if (m->flush)             /* each operation costs a flush: a few per sample */
            inner[i] = CAL_COLD_INNER;
    }
    for (int s = 0; s < reps && !rc; s++)
        for (int i = 0; i < nsizes && !rc; i++) {
            double v;
            if (!(rc = timed(m, bytes[i], inner[i], op_s, &v)) && t_s)
                t_s[(size_t)i * reps + s] = v;
        }
    free(op_s);
    free(inner);
    return rc;
}

static size_t max_bytes(const size_t *bytes, int n)
{
    size_t m = 1;
    for (int i = 0; i < n; i++)
        m = bytes[i] > m ? bytes[i] : m;
    return m;
}

int cal_pingpong(const struct cal_tiers *t, bool inter, bool cold, const size_t *bytes,
                 int nsizes, int reps, double *t_s)
{
    int rank;
    TRY_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    struct msg_op m = { .run = pingpong_run, .peer = -1 };
    if (inter) {
        m.comm = MPI_COMM_WORLD;
        m.peer = rank == 0 ? t->inter_peer : rank == t->inter_peer ? 0 : -1;
        m.leader = rank == 0;
    } else {
        m.comm = t->node;
        m.peer = t->node_size < 2 ? -1 : t->node_rank == 0 ? 1 : t->node_rank == 1 ? 0 : -1;
        m.leader = t->node_rank == 0;
    }
    size_t mb = max_bytes(bytes, nsizes);
    m.sbuf = calloc(mb, 1);
    m.rbuf = calloc(mb, 1);
    m.flush = cold ? malloc(CAL_FLUSH_BYTES) : NULL;
    int rc = agree(m.sbuf && m.rbuf && (m.flush || !cold) ? 0 : -ENOMEM);
    if (!rc)
        rc = ladder(&m, bytes, nsizes, reps, rank == 0 ? t_s : NULL);
    free(m.sbuf);
    free(m.rbuf);
    free(m.flush);
    return rc;
}

int cal_alltoall(const struct cal_tiers *t, bool inter, bool cold, const size_t *bytes,
                 int nsizes, int reps, double *t_s)
{
    int rank, ranks;
    TRY_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    TRY_MPI(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
    struct msg_op m = { .run = alltoall_run, .comm = inter ? MPI_COMM_WORLD : t->node };
    int n = inter ? ranks : t->node_size, peers = 0;
    bool *to = calloc((size_t)n, sizeof(bool));
    m.counts = calloc((size_t)n, sizeof(int));
    m.displs = calloc((size_t)n, sizeof(int));
    for (int r = 0; to && r < n; r++) {
        to[r] = inter ? t->node_of[r] != t->node_of[rank] : r != t->node_rank;
        peers += to[r];
    }
    m.to = to;
    size_t mb = max_bytes(bytes, nsizes) * (size_t)(peers ? peers : 1);
    m.sbuf = calloc(mb, 1);
    m.rbuf = calloc(mb, 1);
    m.flush = cold ? malloc(CAL_FLUSH_BYTES) : NULL;
    int rc = agree(to && m.counts && m.displs && m.sbuf && m.rbuf && (m.flush || !cold)
                   ? 0 : -ENOMEM);
    if (!rc)
        rc = ladder(&m, bytes, nsizes, reps, rank == 0 ? t_s : NULL);
    free(m.flush);
    free(to);
    free(m.counts);
    free(m.displs);
    free(m.sbuf);
    free(m.rbuf);
    return rc;
}
