/* test_des.c: the event core against hand-worked orders and a sorted-array oracle. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cu_run.h"
#include "des.h"

/* Each callback appends its tag and the clock to a log. */
#define LOG_MAX 64

struct log {
    int tags[LOG_MAX];
    double t_s[LOG_MAX];
    int n;
};

struct ev {
    struct log *log;
    int tag;
};

static void log_fn(struct des *d, void *arg)
{
    struct ev *e = arg;
    if (e->log->n < LOG_MAX) {
        e->log->tags[e->log->n] = e->tag;
        e->log->t_s[e->log->n] = des_now(d);
    }
    e->log->n++;
}

static void test_time_order(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    /* Scheduled at 3, 1, 2, 0.5: they run as 0.5, 1, 2, 3 (tags 3, 1, 2, 0). */
    double at[4] = { 3.0, 1.0, 2.0, 0.5 };
    struct ev ev[4];
    for (int i = 0; i < 4; i++) {
        ev[i] = (struct ev){ &lg, i };
        CU_ASSERT(des_at(d, at[i], log_fn, &ev[i], NULL) == 0);
    }
    CU_ASSERT_EQUAL(des_pending(d), 4);
    CU_ASSERT_DOUBLE_EQUAL(des_next_s(d), 0.5, 0);
    CU_ASSERT_EQUAL(des_run(d, INFINITY), 4);
    CU_ASSERT_EQUAL(lg.n, 4);
    int want[4] = { 3, 1, 2, 0 };
    double want_t[4] = { 0.5, 1.0, 2.0, 3.0 };
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(lg.tags[i], want[i]);
        CU_ASSERT_DOUBLE_EQUAL(lg.t_s[i], want_t[i], 0);
    }
    /* INFINITY leaves the clock at the last event; the queue is empty. */
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 3.0, 0);
    CU_ASSERT_EQUAL(des_pending(d), 0);
    CU_ASSERT(isinf(des_next_s(d)));
    des_free(d);
    des_free(NULL);
}

/* At t = 1: tags 0, 1, 2 scheduled in that order; tag 0's callback adds tag 10 at
 * t = 1 (now) and tag 11 at t = 2. FIFO among equal times: 0, 1, 2, 10 at t = 1 (10
 * was inserted after 1 and 2), then 20 (scheduled before the run at t = 2), then 11. */
struct fifo_ctx {
    struct log *log;
    struct ev later[2];
};

static void fifo_spawn(struct des *d, void *arg)
{
    struct fifo_ctx *c = arg;
    c->log->tags[c->log->n] = 0;
    c->log->t_s[c->log->n++] = des_now(d);
    CU_ASSERT(des_at(d, des_now(d), log_fn, &c->later[0], NULL) == 0);
    CU_ASSERT(des_at(d, 2.0, log_fn, &c->later[1], NULL) == 0);
}

static void test_fifo_ties(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    struct fifo_ctx ctx = { &lg, { { &lg, 10 }, { &lg, 11 } } };
    struct ev e1 = { &lg, 1 }, e2 = { &lg, 2 }, e20 = { &lg, 20 };
    CU_ASSERT(des_at(d, 1.0, fifo_spawn, &ctx, NULL) == 0);
    CU_ASSERT(des_at(d, 1.0, log_fn, &e1, NULL) == 0);
    CU_ASSERT(des_at(d, 2.0, log_fn, &e20, NULL) == 0);
    CU_ASSERT(des_at(d, 1.0, log_fn, &e2, NULL) == 0);
    CU_ASSERT_EQUAL(des_run(d, INFINITY), 6);
    int want[6] = { 0, 1, 2, 10, 20, 11 };
    CU_ASSERT_EQUAL_FATAL(lg.n, 6);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(lg.tags[i], want[i]);
    des_free(d);
}

/* Cancel from outside and from a callback; dead and unknown ids give false. */
struct cancel_ctx {
    uint64_t victim;
    bool got;
    uint64_t self;
    bool self_got;
};

static void cancel_fn(struct des *d, void *arg)
{
    struct cancel_ctx *c = arg;
    c->got = des_cancel(d, c->victim);
    c->self_got = des_cancel(d, c->self);    /* the running event's id is already dead */
}

static void test_cancel(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    struct ev e[4] = { { &lg, 0 }, { &lg, 1 }, { &lg, 2 }, { &lg, 3 } };
    uint64_t id[4];
    for (int i = 0; i < 4; i++)
        CU_ASSERT(des_at(d, 1.0 + i, log_fn, &e[i], &id[i]) == 0);
    CU_ASSERT(id[0] != 0 && id[1] != id[0]);
    CU_ASSERT(des_cancel(d, id[1]));          /* pending: removed */
    CU_ASSERT(!des_cancel(d, id[1]));         /* second time: already gone */
    CU_ASSERT(!des_cancel(d, 0));             /* 0 is never an id */
    CU_ASSERT(!des_cancel(d, UINT64_MAX));    /* never issued */
    CU_ASSERT_EQUAL(des_pending(d), 3);
    /* The callback at t = 2.5 cancels tag 3 (t = 4). */
    struct cancel_ctx cc = { .victim = id[3] };
    CU_ASSERT(des_at(d, 2.5, cancel_fn, &cc, &cc.self) == 0);
    CU_ASSERT_EQUAL(des_run(d, INFINITY), 3); /* tags 0, 2 and the canceller */
    CU_ASSERT(cc.got);
    CU_ASSERT(!cc.self_got);
    CU_ASSERT_EQUAL_FATAL(lg.n, 2);
    CU_ASSERT_EQUAL(lg.tags[0], 0);
    CU_ASSERT_EQUAL(lg.tags[1], 2);
    CU_ASSERT(!des_cancel(d, id[0]));         /* ran */
    /* A reused slot does not revive the old id: tag 0's slot is free again. */
    CU_ASSERT(des_at(d, 5.0, log_fn, &e[0], NULL) == 0);
    CU_ASSERT(!des_cancel(d, id[0]));
    CU_ASSERT(!des_cancel(d, id[2]));
    CU_ASSERT_EQUAL(des_pending(d), 1);
    des_free(d);                              /* with an event pending: no leak */
}

static void test_reject(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    struct ev e = { &lg, 0 };
    uint64_t id = 12345;
    CU_ASSERT_EQUAL(des_at(d, 1.0, log_fn, &e, NULL), 0);
    CU_ASSERT_EQUAL(des_run(d, INFINITY), 1);  /* clock at 1 */
    CU_ASSERT_EQUAL(des_at(d, 0.999, log_fn, &e, &id), -EINVAL);
    CU_ASSERT_EQUAL(id, 12345);                /* untouched on failure */
    CU_ASSERT_EQUAL(des_at(d, NAN, log_fn, &e, NULL), -EINVAL);
    CU_ASSERT_EQUAL(des_at(d, INFINITY, log_fn, &e, NULL), -EINVAL);
    CU_ASSERT_EQUAL(des_at(d, 2.0, NULL, &e, NULL), -EINVAL);
    CU_ASSERT_EQUAL(des_at(NULL, 2.0, log_fn, &e, NULL), -EINVAL);
    CU_ASSERT_EQUAL(des_run(d, NAN), -EINVAL);
    CU_ASSERT_EQUAL(des_create(NULL), -EINVAL);
    CU_ASSERT_EQUAL(des_at(d, 1.0, log_fn, &e, NULL), 0);   /* now itself is allowed */
    CU_ASSERT_EQUAL(des_pending(d), 1);
    des_free(d);
}

/* Events at 1, 2, 3, 4. run(2.5) runs 1 and 2 (2 <= 2.5) and leaves the clock at 2.5;
 * run(3) runs 3 (t == t_end runs); run(1) is a no-op (t_end in the past, clock stays);
 * run(INFINITY) runs 4. */
static void test_run_until(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    struct ev e[4];
    for (int i = 0; i < 4; i++) {
        e[i] = (struct ev){ &lg, i };
        CU_ASSERT(des_at(d, 1.0 + i, log_fn, &e[i], NULL) == 0);
    }
    CU_ASSERT_EQUAL(des_run(d, 2.5), 2);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 2.5, 0);
    CU_ASSERT_EQUAL(des_pending(d), 2);
    CU_ASSERT_EQUAL(des_run(d, 3.0), 1);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 3.0, 0);
    CU_ASSERT_EQUAL(des_run(d, 1.0), 0);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 3.0, 0);
    CU_ASSERT_EQUAL(des_run(d, INFINITY), 1);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 4.0, 0);
    /* Empty queue, finite end: the clock moves to it. */
    CU_ASSERT_EQUAL(des_run(d, 10.0), 0);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 10.0, 0);
    CU_ASSERT_EQUAL(lg.n, 4);
    des_free(d);
}

/* des_stop: the callback at t = 1 stops the run; 2 still pending, clock at 1. A nested
 * des_run from a callback is refused with -EBUSY. */
static void stop_fn(struct des *d, void *arg)
{
    int64_t *nested_rc = arg;
    *nested_rc = des_run(d, INFINITY);
    des_stop(d);
}

static void test_stop(void)
{
    struct des *d;
    CU_ASSERT_FATAL(des_create(&d) == 0);
    struct log lg = { 0 };
    struct ev e = { &lg, 2 };
    int64_t nested_rc = 0;
    CU_ASSERT(des_at(d, 1.0, stop_fn, &nested_rc, NULL) == 0);
    CU_ASSERT(des_at(d, 2.0, log_fn, &e, NULL) == 0);
    CU_ASSERT_EQUAL(des_run(d, 5.0), 1);
    CU_ASSERT_EQUAL(nested_rc, -EBUSY);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 1.0, 0);
    CU_ASSERT_EQUAL(des_pending(d), 1);
    CU_ASSERT_EQUAL(des_run(d, 5.0), 1);
    CU_ASSERT_DOUBLE_EQUAL(des_now(d), 5.0, 0);
    des_free(d);
}

/* ---- Randomized test against a sorted-array oracle ----
 * Seed 0x5eed (splitmix64). Times are small integers so ties are common. The oracle
 * keeps pending events in an array sorted by (t, insertion number); a new event goes
 * after all equal times (binary search for the upper bound), a cancel removes it, and
 * each des callback checks that it is the oracle's head and pops it. Callbacks and
 * the driver between bounded runs schedule (delay 0..3) and cancel random tags (live,
 * already run, or cancelled), comparing des_cancel's answer with the oracle's. */
#define RND_TAGS 20000

struct rnd;

struct rnd_arg {
    struct rnd *r;
    int tag;
};

struct rnd {
    struct des *d;
    uint64_t rng;
    uint64_t ids[RND_TAGS];
    struct rnd_arg args[RND_TAGS];
    int ntags;
    /* oracle: sorted pending (t, tag); tags increase with insertion order */
    double o_t[RND_TAGS];
    int o_tag[RND_TAGS];
    int o_n;
    int64_t ran;
    int mismatches;
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rnd_fn(struct des *d, void *arg);

static void rnd_schedule(struct rnd *r, double t_s)
{
    if (r->ntags >= RND_TAGS)
        return;
    int tag = r->ntags++;
    r->args[tag] = (struct rnd_arg){ r, tag };
    if (des_at(r->d, t_s, rnd_fn, &r->args[tag], &r->ids[tag]) != 0) {
        r->mismatches++;
        return;
    }
    int lo = 0, hi = r->o_n;            /* first index with o_t > t_s */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (r->o_t[mid] <= t_s)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(&r->o_t[lo + 1], &r->o_t[lo], (size_t)(r->o_n - lo) * sizeof(double));
    memmove(&r->o_tag[lo + 1], &r->o_tag[lo], (size_t)(r->o_n - lo) * sizeof(int));
    r->o_t[lo] = t_s;
    r->o_tag[lo] = tag;
    r->o_n++;
}

static void rnd_cancel(struct rnd *r)
{
    if (r->ntags == 0)
        return;
    int tag = (int)(splitmix64(&r->rng) % (uint64_t)r->ntags);
    int at = -1;
    for (int i = 0; i < r->o_n; i++)
        if (r->o_tag[i] == tag)
            at = i;
    bool got = des_cancel(r->d, r->ids[tag]);
    if (got != (at >= 0))
        r->mismatches++;
    if (at >= 0) {
        memmove(&r->o_t[at], &r->o_t[at + 1], (size_t)(r->o_n - at - 1) * sizeof(double));
        memmove(&r->o_tag[at], &r->o_tag[at + 1], (size_t)(r->o_n - at - 1) * sizeof(int));
        r->o_n--;
    }
}

/* A few random actions at the current time: 0-2 new events, maybe one cancel. */
static void rnd_actions(struct rnd *r)
{
    uint64_t x = splitmix64(&r->rng);
    int nnew = (int)(x % 3);
    for (int i = 0; i < nnew; i++)
        rnd_schedule(r, des_now(r->d) + (double)(splitmix64(&r->rng) % 4));
    if ((x >> 8) % 3 == 0)
        rnd_cancel(r);
}

static void rnd_fn(struct des *d, void *arg)
{
    struct rnd *r = ((struct rnd_arg *)arg)->r;
    int tag = ((struct rnd_arg *)arg)->tag;
    if (r->o_n == 0 || r->o_tag[0] != tag || r->o_t[0] != des_now(d)) {
        r->mismatches++;
    } else {
        r->o_n--;
        memmove(&r->o_t[0], &r->o_t[1], (size_t)r->o_n * sizeof(double));
        memmove(&r->o_tag[0], &r->o_tag[1], (size_t)r->o_n * sizeof(int));
    }
    r->ran++;
    rnd_actions(r);
}

static void test_random_oracle(void)
{
    struct rnd *r = calloc(1, sizeof(*r));
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_FATAL(des_create(&r->d) == 0);
    r->rng = 0x5eed;
    for (int i = 0; i < 200; i++)
        rnd_schedule(r, (double)(splitmix64(&r->rng) % 50));
    /* Bounded runs ending at 0.5, 8, 15.5, ... (ends between and on event times), with
     * outside actions after each, until all tags are used and the queue drains. */
    int64_t total = 0;
    for (double t_end = 0.5; (r->ntags < RND_TAGS || des_pending(r->d) > 0) && t_end < 1e7;
         t_end += 7.5) {
        int64_t n = des_run(r->d, t_end);
        CU_ASSERT(n >= 0);
        total += n;
        CU_ASSERT_DOUBLE_EQUAL(des_now(r->d), t_end, 0);
        if (r->o_n > 0 && r->o_t[0] <= t_end)
            r->mismatches++;              /* des left an event the oracle says was due */
        for (int i = 0; i < 5; i++)
            rnd_actions(r);
        if (des_pending(r->d) != (size_t)r->o_n)
            r->mismatches++;
    }
    CU_ASSERT_EQUAL(r->mismatches, 0);
    CU_ASSERT_EQUAL(r->o_n, 0);
    CU_ASSERT_EQUAL(des_pending(r->d), 0);
    CU_ASSERT_EQUAL(total, r->ran);
    CU_ASSERT(r->ntags == RND_TAGS);      /* the run used the whole tag budget */
    CU_ASSERT(r->ran > RND_TAGS / 2);
    des_free(r->d);
    free(r);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "time order", test_time_order },
        { "FIFO among equal times", test_fifo_ties },
        { "cancel", test_cancel },
        { "reject bad input", test_reject },
        { "run until t_end, resume", test_run_until },
        { "stop and no nesting", test_stop },
        { "random vs sorted-array oracle", test_random_oracle },
    };
    return cu_run("des", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
