/* test_limits.c: sim/limits.c, the cost estimate of a run and its limits: sizes and
 * counts parsed, estimates against hand counts of small configs and against what the
 * simulator does on them, monotonic in every key, finite on absurd values, the key
 * named, and the progress hooks of a2a, step and balance. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "a2a.h"
#include "balance.h"
#include "config.h"
#include "cu_run.h"
#include "ini_text.h"
#include "limits.h"
#include "step.h"
#include "topo.h"
#include "traffic.h"

/* ---- parsing ---- */

static void test_parse_bytes(void)
{
    double v = 0;
    /* SI suffixes are powers of 1000, binary ones of 1024 (as config sizes) */
    CU_ASSERT(limits_parse_bytes("8G", &v) == 0 && v == 8e9);
    CU_ASSERT(limits_parse_bytes("512M", &v) == 0 && v == 512e6);
    CU_ASSERT(limits_parse_bytes("1000000", &v) == 0 && v == 1e6);
    CU_ASSERT(limits_parse_bytes("4KiB", &v) == 0 && v == 4096);
    CU_ASSERT(limits_parse_bytes("1.5GiB", &v) == 0 && v == 1.5 * 1073741824.0);
    CU_ASSERT(limits_parse_bytes("2TB", &v) == 0 && v == 2e12);
    CU_ASSERT(limits_parse_bytes("3MB", &v) == 0 && v == 3e6);
    static const char *const bad[] = { "", "G", "-1", "0", "0G", "8g", "8 G", " 8G", "8GG",
                                       "1e400", "nan", "inf", "+8G", "8Gi", "1e308T" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = -1;
        CU_ASSERT_EQUAL(limits_parse_bytes(bad[i], &v), -EINVAL);
        CU_ASSERT_EQUAL(v, -1);          /* untouched on error */
    }
}

static void test_parse_count(void)
{
    double v = 0;
    CU_ASSERT(limits_parse_count("2e8", &v) == 0 && v == 2e8);
    CU_ASSERT(limits_parse_count("200000000", &v) == 0 && v == 2e8);
    CU_ASSERT(limits_parse_count("1", &v) == 0 && v == 1);
    static const char *const bad[] = { "", "0", "-5", "abc", "1e999", "5k", "2e8 ", "nan" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(limits_parse_count(bad[i], &v), -EINVAL);
}

/* The default memory limit is half of sysconf's physical memory. */
static void test_default(void)
{
    struct limits l;
    limits_default(&l);
    CU_ASSERT_EQUAL(l.max_events, 2e8);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
        CU_ASSERT_EQUAL(l.max_bytes, (double)pages * page / 2);
    CU_ASSERT(l.max_bytes > 0 && isfinite(l.max_bytes));
}

/* ---- configs ---- */

/* One MoE layer: 2 nodes x 4 GPUs, 8 experts top-2, EP 4, 1000 tokens per GPU. */
static const char layer_ini[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 4\n"
    "[model]\nhidden = 256\nexperts = 8\ntop_k = 2\n"
    "[parallel]\nep = 4\n"
    "[routing]\ntokens_per_gpu = 1000\n";

/* A training step: 2 nodes x 2 GPUs, pp 2 (dp 2, ep 2: one EP group per stage), 1f1b,
 * 4 micro-batches, 4 layers of which the first is dense, a shared expert. */
static const char step_ini[] =
    "[cluster]\nnodes = 2\ngpus_per_node = 2\n"
    "[model]\nhidden = 256\nexperts = 4\ntop_k = 2\nshared_experts = 1\n"
    "expert_ffn_hidden = 512\nffn_hidden = 1024\nlayers = 4\nfirst_dense_layers = 1\n"
    "seq_len = 128\nvocab = 1000\nheads = 4\n"
    "[parallel]\npp = 2\nep = 2\n"
    "[schedule]\nkind = 1f1b\nmicrobatches = 4\nmicro_batch_tokens = 128\n";

static struct config load1(const char *ini, const char *set)
{
    struct config c;
    const char *sets[1] = { set };
    memset(&c, 0, sizeof(c));
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, ini, sets, set ? 1 : 0), 0);
    return c;
}

/* ---- estimates against hand counts ---- */

/* All-to-all on 8 GPUs: every ordered pair but the diagonal, 8 * 7 = 56 flows, two events
 * each; one 8 x 8 matrix. a2a_run runs exactly those flows. */
static void test_alltoall_count(void)
{
    struct config c = load1(layer_ini, "traffic.pattern=alltoall");
    struct limits_est e;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.flows, 56);
    CU_ASSERT_EQUAL(e.tokens, 0);
    CU_ASSERT_EQUAL(e.subops, 0);
    CU_ASSERT_EQUAL(e.events, 112);
    CU_ASSERT(e.bytes >= limits_matrix_bytes(8));
    struct topo *t;
    struct traffic m;
    struct a2a_result r;
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 8, c.traffic.bytes_per_pair), 0);
    CU_ASSERT_EQUAL_FATAL(a2a_run(&r, t, &m, 0, false), 0);
    CU_ASSERT_EQUAL(r.nflows, e.flows);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
    /* bytes_per_pair 0: no flow */
    c.traffic.bytes_per_pair = 0;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.flows, 0);
}

/* A MoE layer: 8 GPUs x 1000 tokens routed once (dropless, contiguous); dispatch and
 * combine each at most one flow per ordered pair inside an EP group: 8 * 3 per phase.
 * Capacity routes twice; an eplb placement adds a pass (so 4 with capacity); without
 * the combine, one phase. */
static void test_layer_count(void)
{
    struct config c = load1(layer_ini, NULL);
    struct limits_est e, tr;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.tokens, 8000);
    CU_ASSERT_EQUAL(e.flows, 48);
    CU_ASSERT_EQUAL(e.events, 8000 + 96);
    limits_estimate(&tr, &c, LIMITS_RUN, true);
    CU_ASSERT(tr.bytes > e.bytes);       /* the utilization series */
    CU_ASSERT_EQUAL(tr.events, e.events);
    c.balance.capacity_factor = 1;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.tokens, 16000);
    c.balance.placement = PLACE_EPLB;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.tokens, 32000);
    c.traffic.combine = false;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.flows, 24);
}

/* The step of step_ini, sub-ops counted by hand (step.h):
 *   F piece 0 (layers 0-1): join, embed, attn, ffn, attn, gate, dispatch, shared,
 *     experts, combine, send = 11
 *   F piece 1 (layers 2-3): join, 2 x (attn gate dispatch shared experts combine), head = 14
 *   B piece 1: join, head, 2 x (combine shared experts experts_w dispatch gate attn), send = 17
 *   B piece 0: join, combine shared experts experts_w dispatch gate attn, ffn, attn, embed = 11
 * 53 per micro-batch, 4 micro-batches, and one DP reduce per piece: 214. The estimate
 * bounds it within 25%: per micro-batch 3 * 13 + 1 * 4 + 6 * 2 + 4 = 59, plus 2 * 2
 * reduces: 240. Tokens: 3 MoE layers x 2 GPUs x 128. Flows: 4 all-to-alls per MoE layer
 * of 2 * 1 flows, the sends of both rank pairs (2 * 1 * 2), two ring steps per piece
 * (2 * 2 * 2): 24 + 4 + 8 = 36. */
static void test_step_count(void)
{
    struct config c = load1(step_ini, NULL);
    struct limits_est e;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.subops, 240);
    CU_ASSERT_EQUAL(e.tokens, 3 * 2 * 128);
    CU_ASSERT_EQUAL(e.flows, 36);
    CU_ASSERT_EQUAL(e.events, 240 + 768 + 72);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, true, &err), 0);
    CU_ASSERT_EQUAL(r.subops, 214);
    CU_ASSERT_EQUAL(r.events, 214);
    CU_ASSERT(e.subops >= r.subops && e.subops <= 1.25 * r.subops);
    CU_ASSERT(r.a2a_simulated <= e.flows);  /* each simulated collective has a flow */
    step_free(&r);
    struct limits_est tr;
    limits_estimate(&tr, &c, LIMITS_RUN, true);
    CU_ASSERT(tr.bytes >= e.bytes + 214 * sizeof(struct step_slice));
    /* zb1p: each B without the experts' weight gradient (B piece 1: 15, B piece 0: 9),
     * W chunks: piece 1 head + 2 x (shared, experts, rest) = 7, piece 0 shared, experts,
     * rest + the dense layer's = 4: 60 per micro-batch, 4 x 60 + 2 = 242. Estimate: 59 +
     * 3 x 2 + 1 + 1 = 67 per micro-batch, 4 x 67 + 4 = 272. */
    c.schedule.kind = SCHED_ZB1P;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.subops, 272);
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, false, &err), 0);
    CU_ASSERT_EQUAL(r.subops, 242);
    CU_ASSERT(e.subops >= r.subops && e.subops <= 1.25 * r.subops);
    step_free(&r);
}

/* step_ini with MoE on every other layer, no dense prefix: layers 1 and 3 MoE, 0 and 2
 * dense (model.h). Sub-ops by hand as above:
 *   F piece 0: join, embed, attn, ffn, attn gate dispatch shared experts combine, send = 11
 *   F piece 1: join, attn, ffn, attn gate dispatch shared experts combine, head = 10
 *   B piece 1: join, head, combine shared experts experts_w dispatch gate attn, ffn, attn,
 *     send = 12
 *   B piece 0: join, combine shared experts experts_w dispatch gate attn, ffn, attn,
 *     embed = 11
 * 44 per micro-batch, x 4, + 2 reduces: 178. The estimate: per micro-batch 2 * 13 +
 * 2 * 4 + 12 + 4 = 50, x 4, + 4: 204. Tokens: 2 MoE layers x 2 GPUs x 128. Flows:
 * 4 * 2 * 2 + 4 + 8 = 28. */
static void test_step_count_moe_every(void)
{
    static const char *const sets[] = { "model.first_dense_layers=0", "model.moe_every=2" };
    struct config c;
    memset(&c, 0, sizeof(c));
    CU_ASSERT_EQUAL_FATAL(ini_text_load(&c, step_ini, sets, 2), 0);
    struct limits_est e;
    limits_estimate(&e, &c, LIMITS_RUN, false);
    CU_ASSERT_EQUAL(e.subops, 204);
    CU_ASSERT_EQUAL(e.tokens, 2 * 2 * 128);
    CU_ASSERT_EQUAL(e.flows, 28);
    struct step_result r;
    struct cfg_err err;
    CU_ASSERT_EQUAL_FATAL(step_run(&r, &c, 1, 0, &err), 0);
    CU_ASSERT_EQUAL(r.subops, 178);
    CU_ASSERT(e.subops >= r.subops && e.subops <= 1.25 * r.subops);
    step_free(&r);
}

/* A balance policy: iterations x 8 GPUs x 1000 tokens, the measured iteration's dispatch
 * and combine (2 x 8 x 3 flows); an eplb placement adds a first pass. Policies one after
 * another add their events; the peak holds the earlier ones' kept results. */
static void test_balance_count(void)
{
    struct config c = load1(layer_ini, "balance.iterations=5");
    struct limits_est e, sum;
    limits_estimate(&e, &c, LIMITS_BALANCE, false);
    CU_ASSERT_EQUAL(e.tokens, 5 * 8000);
    CU_ASSERT_EQUAL(e.flows, 48);
    CU_ASSERT(e.kept_bytes > 0 && e.kept_bytes < e.bytes);
    c.balance.placement = PLACE_EPLB_GLOBAL;
    limits_estimate(&e, &c, LIMITS_BALANCE, false);
    CU_ASSERT_EQUAL(e.tokens, 6 * 8000);
    memset(&sum, 0, sizeof(sum));
    limits_add(&sum, &e);
    limits_add(&sum, &e);
    CU_ASSERT_EQUAL(sum.events, 2 * e.events);
    CU_ASSERT_EQUAL(sum.bytes, e.kept_bytes + e.bytes);
    CU_ASSERT_EQUAL(sum.kept_bytes, 2 * e.kept_bytes);
}

/* ---- every key ---- */

static void set_key(struct config *c, const struct limits_key *k, int64_t v)
{
    char *p = (char *)c + k->off;
    int iv = (int)v;
    if (k->is64)
        memcpy(p, &v, sizeof(v));
    else
        memcpy(p, &iv, sizeof(iv));
}

/* Raising any key never lowers the events or the bytes, for each kind of run. */
static void test_monotonic(void)
{
    struct config base[4] = { load1(layer_ini, NULL), load1(layer_ini, "traffic.pattern=alltoall"),
                              load1(step_ini, NULL), load1(layer_ini, "balance.iterations=3") };
    base[2].schedule.kind = SCHED_INTERLEAVED_1F1B;   /* vpp counts too */
    enum limits_cmd cmd[4] = { LIMITS_RUN, LIMITS_RUN, LIMITS_RUN, LIMITS_BALANCE };
    int nk;
    const struct limits_key *keys = limits_keys(&nk);
    CU_ASSERT(nk >= 9);
    for (int b = 0; b < 4; b++)
        for (int k = 0; k < nk; k++)
            for (int trace = 0; trace < 2; trace++) {
                struct config c = base[b];
                struct limits_est prev = { 0 }, e;
                for (int64_t v = 1; v <= (1 << 24); v *= 2) {
                    set_key(&c, &keys[k], v);
                    limits_estimate(&e, &c, cmd[b], trace);
                    if (v > 1 && (e.events < prev.events || e.bytes < prev.bytes)) {
                        fprintf(stderr, "config %d %s = %lld lowers the estimate\n", b,
                                keys[k].name, (long long)v);
                        CU_FAIL("not monotonic");
                    }
                    prev = e;
                }
            }
}

/* Every key at its type's largest value: finite estimates above any limit, refused with
 * a key named. */
static void test_absurd(void)
{
    int nk;
    const struct limits_key *keys = limits_keys(&nk);
    struct config base[2] = { load1(layer_ini, NULL), load1(step_ini, NULL) };
    struct limits l = { 2e8, 1e12 };
    for (int b = 0; b < 2; b++)
        for (int cmd = LIMITS_RUN; cmd <= LIMITS_BALANCE; cmd++) {
            struct config c = base[b];
            for (int k = 0; k < nk; k++)
                set_key(&c, &keys[k], keys[k].is64 ? INT64_MAX : INT_MAX);
            struct limits_est e;
            limits_estimate(&e, &c, cmd, true);
            CU_ASSERT(isfinite(e.events) && isfinite(e.bytes));
            CU_ASSERT(e.events > l.max_events && e.bytes > l.max_bytes);
            char msg[512] = "";
            const struct config *pc = &c;
            CU_ASSERT_EQUAL(limits_check(&pc, 1, cmd, true, &l, msg, sizeof(msg)), -E2BIG);
            CU_ASSERT(strstr(msg, " = ") != NULL && strstr(msg, "--max-mem") != NULL);
            CU_ASSERT(strchr(msg, '\n') == NULL);
        }
}

/* The key named is the one the run is absurd in; memory before events. The small configs
 * here need fewer events than the real ones, so the limit is 1e7. */
static void test_dominant(void)
{
    struct limits l = { 1e7, 1e12 };
    char msg[512];
    struct {
        const char *ini, *set;
        enum limits_cmd cmd;
        const char *want, *limit;
    } cases[] = {
        { layer_ini, "routing.tokens_per_gpu=100000000", LIMITS_RUN,
          "routing.tokens_per_gpu = 100000000: ", "--max-events" },
        { step_ini, "schedule.microbatches=1048576", LIMITS_RUN,
          "schedule.microbatches = 1048576: ", "--max-events" },
        { step_ini, "model.layers=100000", LIMITS_RUN, "model.layers = 100000: ",
          "--max-events" },
        { layer_ini, "balance.iterations=1000000", LIMITS_BALANCE,
          "balance.iterations = 1000000: ", "--max-events" },
        { layer_ini, "cluster.nodes=100000", LIMITS_RUN, "cluster.nodes = 100000: ",
          "--max-mem" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c = load1(cases[i].ini, cases[i].set);
        const struct config *pc = &c;
        msg[0] = 0;
        CU_ASSERT_EQUAL(limits_check(&pc, 1, cases[i].cmd, false, &l, msg, sizeof(msg)), -E2BIG);
        if (strncmp(msg, cases[i].want, strlen(cases[i].want)) || !strstr(msg, cases[i].limit)) {
            fprintf(stderr, "want '%s...%s', got '%s'\n", cases[i].want, cases[i].limit, msg);
            CU_FAIL("wrong key or limit named");
        }
        /* the same config without the absurd value passes */
        struct config ok = load1(cases[i].ini, NULL);
        pc = &ok;
        CU_ASSERT_EQUAL(limits_check(&pc, 1, cases[i].cmd, false, &l, msg, sizeof(msg)), 0);
    }
    /* Balance over policies: the largest value of the key over them is named. */
    struct config two[2] = { load1(layer_ini, "balance.iterations=40"),
                             load1(layer_ini, "balance.iterations=1000000") };
    const struct config *pc[2] = { &two[0], &two[1] };
    CU_ASSERT_EQUAL(limits_check(pc, 2, LIMITS_BALANCE, false, &l, msg, sizeof(msg)), -E2BIG);
    CU_ASSERT(strncmp(msg, "balance.iterations = 1000000: ", 30) == 0);
}

/* ---- progress hooks ---- */

struct ticks {
    int n, nlayer, nevent;
    double last_frac;
    int64_t last_done, last_total;
    bool backwards, out_of_range;
};

static void on_tick(void *arg, double frac, const char *unit, int64_t done, int64_t total)
{
    struct ticks *t = arg;
    t->backwards |= frac < t->last_frac;
    t->out_of_range |= !(frac >= 0 && frac <= 1) || done < 1 || done > total;
    t->nlayer += !strcmp(unit, "layer");
    t->nevent += !strcmp(unit, "event");
    t->n++;
    t->last_frac = frac;
    t->last_done = done;
    t->last_total = total;
}

/* a2a: 56 flows, a tick per flow done (1% of 56 rounds to 1), the last at 56/56, 100%. */
static void test_progress_a2a(void)
{
    struct config c = load1(layer_ini, "traffic.pattern=alltoall");
    struct topo *t;
    struct traffic m;
    struct a2a_result r, plain;
    struct ticks tk = { 0 };
    struct limits_progress p = { on_tick, &tk };
    CU_ASSERT_EQUAL_FATAL(topo_create(&t, &c.cluster), 0);
    CU_ASSERT_EQUAL_FATAL(traffic_alltoall(&m, 8, 1000), 0);
    CU_ASSERT_EQUAL_FATAL(a2a_run_with(&r, t, &m, 0, false, &p), 0);
    CU_ASSERT_EQUAL(tk.n, 56);
    CU_ASSERT(tk.last_done == 56 && tk.last_total == 56 && tk.last_frac == 1.0);
    CU_ASSERT(!tk.backwards && !tk.out_of_range);
    /* the hook changes nothing */
    CU_ASSERT_EQUAL_FATAL(a2a_run(&plain, t, &m, 0, false), 0);
    CU_ASSERT_EQUAL(plain.time_s, r.time_s);
    a2a_free(&plain);
    a2a_free(&r);
    traffic_free(&m);
    topo_free(t);
}

/* step: one tick per layer (4), then events every 1% of 214 sub-ops (every 2): 107. */
static void test_progress_step(void)
{
    struct config c = load1(step_ini, NULL);
    struct step_result r, plain;
    struct cfg_err err;
    struct ticks tk = { 0 };
    struct limits_progress p = { on_tick, &tk };
    CU_ASSERT_EQUAL_FATAL(step_run_with(&r, &c, 1, false, &err, &p), 0);
    CU_ASSERT_EQUAL(tk.nlayer, 4);
    CU_ASSERT_EQUAL(tk.nevent, 107);
    CU_ASSERT(tk.last_done == 214 && tk.last_total == 214 && tk.last_frac == 1.0);
    CU_ASSERT(!tk.backwards && !tk.out_of_range);
    CU_ASSERT_EQUAL_FATAL(step_run(&plain, &c, 1, false, &err), 0);
    CU_ASSERT_EQUAL(plain.step_s, r.step_s);
    step_free(&plain);
    step_free(&r);
}

/* balance: a tick per iteration, 3 of them, the last 3/3. */
static void test_progress_balance(void)
{
    struct config c = load1(layer_ini, "balance.iterations=3");
    struct balance_result r;
    struct cfg_err err = { { 0 } };
    struct ticks tk = { 0 };
    struct limits_progress p = { on_tick, &tk };
    CU_ASSERT_EQUAL_FATAL(balance_run_with(&r, &c, 1, &err, &p), 0);
    CU_ASSERT_EQUAL(tk.n, 3);
    CU_ASSERT(tk.last_done == 3 && tk.last_total == 3 && tk.last_frac == 1.0);
    CU_ASSERT(!tk.backwards && !tk.out_of_range);
    balance_free(&r);
    /* NULL hook, and a hook without fn, are no-ops */
    struct limits_progress none = { NULL, NULL };
    CU_ASSERT_EQUAL_FATAL(balance_run_with(&r, &c, 1, &err, &none), 0);
    balance_free(&r);
}

/* A line that is off (stderr not a terminal) gives a hook without fn. */
static void test_tty_off(void)
{
    struct limits_tty t;
    limits_tty_init(&t, "x");
    t.on = false;
    struct limits_progress p = limits_tty_hook(&t);
    CU_ASSERT_PTR_NULL(p.fn);
    limits_tty_clear(&t);
    CU_ASSERT_EQUAL(t.width, 0);
}

int main(void)
{
    static const struct cu_test tests[] = {
        { "parse bytes", test_parse_bytes },
        { "parse count", test_parse_count },
        { "default limits", test_default },
        { "all-to-all count", test_alltoall_count },
        { "layer count", test_layer_count },
        { "step count", test_step_count },
        { "step count, MoE every other layer", test_step_count_moe_every },
        { "balance count", test_balance_count },
        { "monotonic in every key", test_monotonic },
        { "absurd values", test_absurd },
        { "dominant key", test_dominant },
        { "progress a2a", test_progress_a2a },
        { "progress step", test_progress_step },
        { "progress balance", test_progress_balance },
        { "progress line off", test_tty_off },
    };
    return cu_run("limits", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
