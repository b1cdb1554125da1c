/* fuzz_oracle.h: what every result of the three parsers (config, traffic matrix, routing
 * trace) must satisfy, shared by the mutation suite (tests/test_fuzz.c) and the libFuzzer
 * harnesses (tests/fuzz/). Each check returns NULL, or a short sentence saying which
 * promise of config.h, cfg_check(), rtrace.h or traces/FORMAT.md the result breaks.
 * Header-only: every user is one program. */
#ifndef MOESIM_FUZZ_ORACLE_H
#define MOESIM_FUZZ_ORACLE_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "rtrace.h"
#include "sched.h"
#include "traffic.h"

#define TRACE_LINE_MAX 4096       /* both trace formats, traces/FORMAT.md */
/* Routing traces up to this many entries (32 MiB of counts) are checked whole: every count
 * and a round trip. A larger one (up to 2^28, 2 GiB) costs seconds and its size in memory
 * to read through, so only its dimensions and the counts its file lists are checked. */
#define ORACLE_SCAN_MAX (1u << 22)

/* NULL, or what is wrong with an error message; path: the matrix file, NULL for config. */
static inline const char *msg_broken(const char *msg, const char *path)
{
    char file[CFG_PATH_MAX];
    struct stat st;
    size_t n = strnlen(msg, CFG_ERR_MAX), l = path ? strlen(path) : strcspn(msg, ":");
    if (n == CFG_ERR_MAX)
        return "message longer than CFG_ERR_MAX-1 bytes";
    if (!n || memchr(msg, '\n', n))
        return n ? "message of more than one line" : "empty message";
    if (path)
        return strncmp(msg, path, l) || msg[l] != ':' ? "message does not start with 'path:'" : NULL;
    if (!strncmp(msg, "--set:", 6) || !strncmp(msg, "default:", 8))
        return NULL;
    if (msg[l] != ':' || l >= sizeof(file))
        return "message does not start with 'file:'";
    snprintf(file, sizeof(file), "%.*s", (int)l, msg);
    return stat(file, &st) ? "message does not start with the name of a file" : NULL;
}

/* A control byte no accepted input holds: all but tab (config.h, traces/FORMAT.md). */
static inline bool forbidden(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/* NULL, or the rule of both readers that an accepted text breaks: lines of at most max
 * bytes without their '\n' and a '\r' before it, no forbidden byte. */
static inline const char *lines_broken(const char *p, size_t n, size_t max)
{
    for (size_t s = 0, e, end; s < n; s = e + 1) {
        for (e = s; e < n && p[e] != '\n'; e++) {}
        end = e > s && p[e - 1] == '\r' ? e - 1 : e;
        if (end - s > max)
            return "accepted a line over the length limit";
        for (size_t i = s; i < end; i++)
            if (forbidden((unsigned char)p[i]))
                return "accepted a control character";
    }
    return NULL;
}

#define INV(cond) do { if (!(cond)) return "accepted, but not " #cond; } while (0)

/* lo <= v <= hi, give or take a rounding of the unit conversion (GB/s * 1e9 and such). */
static inline bool in_si(double v, double lo, double hi)
{
    return isfinite(v) && v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12);
}

/* NULL, or the first value outside the ranges README.md lists for the numeric keys
 * (in SI units: GB/s x 1e9, us x 1e-6, TFLOP/s x 1e12, GiB x 2^30), or a collective past
 * the limits of cfg_check_volume: CFG_ASSIGN_MAX token-expert assignments per layer, 2^63
 * bytes per uniform all-to-all. */
static inline const char *config_ranges_broken(const struct config *c)
{
    const struct cfg_cluster *cl = &c->cluster;
    const struct cfg_model *m = &c->model;
    const double gpus = (double)cl->nodes * cl->gpus_per_node;
    INV(cl->nodes <= CFG_GPUS_MAX && cl->gpus_per_node <= CFG_GPUS_MAX);
    INV(in_si(cl->nvlink_Bps, 1e6, 1e18) && in_si(cl->nic_Bps, 1e6, 1e18));
    INV(cl->nvlink_eff >= 1e-3 && cl->nvlink_eff <= 1 && cl->nic_eff >= 1e-3 &&
        cl->nic_eff <= 1);
    INV(in_si(cl->nvlink_lat_s, 0, 1) && in_si(cl->nic_lat_s, 0, 1));
    INV(in_si(cl->switch_lat_s, 0, 1));
    INV(cl->oversubscription <= 1000 && cl->nodes_per_leaf <= CFG_GPUS_MAX);
    INV(in_si(cl->gpu_flops, 1e9, 1e18) && in_si(cl->hbm_Bps, 1e6, 1e15));
    INV(cl->sms <= 65536 && cl->gemm_eff >= 1e-3 && cl->hbm_eff >= 1e-3);
    INV(cl->gemm_half_rows <= 1e9 && in_si(cl->gpu_mem_bytes, 1e-3 * 0x1p30, 1e6 * 0x1p30));
    INV(m->hidden <= 1 << 24 && m->experts <= 1 << 20 && m->top_k <= 1 << 20);
    INV(m->shared_experts <= 1 << 20 && m->expert_ffn_hidden <= 1 << 24);
    INV(m->layers <= 1 << 20 && m->first_dense_layers <= 1 << 20);
    INV(m->moe_every >= 1 && m->moe_every <= 1 << 20 && (unsigned)m->ffn_act <= FFN_GELU);
    INV(m->dispatch_bytes_per_elem < 64 && m->combine_bytes_per_elem < 64);
    INV(m->combine_grad_bytes_per_elem < 64 && m->dispatch_grad_bytes_per_elem < 64);
    INV(m->fp8_block >= 1 && m->fp8_block <= 1 << 24 && (unsigned)m->dispatch_dtype <= DTYPE_FP32);
    INV(c->parallel.vpp <= 1 << 20 && c->parallel.pp <= CFG_GPUS_MAX);
    INV(c->routing.tokens_per_gpu <= 1000000000 && c->routing.zipf_s <= 50);
    INV(in_si(c->routing.concentration, 1e-3, 1e6) && c->routing.drift >= 0);
    INV(c->routing.drift <= 1 && c->routing.max_nodes >= 0 && c->routing.max_nodes <= CFG_GPUS_MAX);
    INV(in_si(c->balance.capacity_factor, 0, 1e6) && in_si(c->balance.bias_gamma, 0, 1));
    INV(c->balance.iterations >= 1 && c->balance.iterations <= 1000000);
    INV(c->balance.redundant_experts >= 0 && c->balance.redundant_experts <= 1 << 20);
    INV(c->schedule.microbatches <= 1 << 20 && c->schedule.micro_batch_tokens <= 1000000000);
    INV(c->schedule.comm_sms <= 65536);
    INV(c->traffic.pattern != PATTERN_MOE ||
        gpus * (double)c->routing.tokens_per_gpu * m->top_k <= (double)CFG_ASSIGN_MAX);
    INV(c->traffic.pattern != PATTERN_MOE || c->schedule.kind == SCHED_NONE ||
        c->parallel.dp * (double)c->schedule.micro_batch_tokens * m->top_k <= (double)CFG_ASSIGN_MAX);
    INV(c->traffic.pattern != PATTERN_ALLTOALL ||
        gpus * gpus * (double)c->traffic.bytes_per_pair <= 0x1p63);
    return NULL;
}

/* NULL, or the first broken promise about the keys of training steps: their ranges, and
 * when a step is asked (schedule.kind != none) cfg_check()'s rules between them. */
static inline const char *config_step_broken(const struct config *c)
{
    const struct cfg_cluster *cl = &c->cluster;
    const struct cfg_model *m = &c->model;
    const struct cfg_parallel *p = &c->parallel;
    const struct cfg_schedule *s = &c->schedule;
    enum sched_kind k = s->kind;
    long long pieces = k == SCHED_INTERLEAVED_1F1B ? (long long)p->pp * p->vpp
                     : k == SCHED_DUALPIPEV ? 2LL * p->pp : p->pp;
    unsigned char overlap;                        /* a bool other than 0/1 is UB to load */
    memcpy(&overlap, &s->overlap, 1);
    INV(isfinite(cl->gpu_flops) && cl->gpu_flops > 0 && isfinite(cl->hbm_Bps) && cl->hbm_Bps > 0);
    INV(cl->sms >= 1 && cl->gemm_eff > 0 && cl->gemm_eff <= 1);
    INV(cl->hbm_eff > 0 && cl->hbm_eff <= 1);
    INV(isfinite(cl->gemm_half_rows) && cl->gemm_half_rows > 0);
    INV(isfinite(cl->gpu_mem_bytes) && cl->gpu_mem_bytes > 0);
    INV(m->seq_len >= 1 && m->vocab >= 1 && m->ffn_hidden >= 0 && m->heads >= 1);
    INV(m->kv_heads >= 1 && m->head_dim >= 0 && (unsigned)m->attention <= ATTN_MLA);
    INV(m->q_lora_rank >= 0 && m->kv_lora_rank >= 0 && m->qk_nope_head_dim >= 0);
    INV(m->qk_rope_head_dim >= 0 && m->v_head_dim >= 0);
    INV(p->vpp >= 1 && (p->vpp == 1 || k == SCHED_INTERLEAVED_1F1B));
    INV((unsigned)k <= SCHED_DECODE && (unsigned)s->dp_reduce <= REDUCE_TREE && overlap <= 1);
    /* an inference step: one stage, its tokens countable (cfgcheck.c) */
    INV(!config_serving(c) || (p->pp == 1 && c->serve.batch >= 1 &&
                               (c->serve.microbatches == 1 || c->serve.microbatches == 2) &&
                               c->serve.cached_fraction >= 0 && c->serve.cached_fraction < 1));
    INV(s->microbatches >= 1 && s->micro_batch_tokens >= 1 && s->comm_sms >= 0);
    INV(isfinite(s->grad_bytes_per_param) && s->grad_bytes_per_param > 0);
    INV(s->grad_bytes_per_param <= 8);
    INV(memchr(c->calibration.expert_table, '\0', sizeof(c->calibration.expert_table)));
    INV(memchr(c->calibration.expert_table_src.where, '\0',
               sizeof(c->calibration.expert_table_src.where)));
    if (k == SCHED_NONE)
        return NULL;
    INV(c->traffic.pattern == PATTERN_MOE);
    INV(pieces <= m->layers && !sched_check(config_serving(c) ? SCHED_GPIPE : k, p->pp, s->microbatches, p->vpp));
    INV(s->comm_sms < cl->sms);
    /* model.h's rule, one layer at a time: after the dense prefix every moe_every-th */
    int moe = 0;
    for (int l = m->first_dense_layers; l < m->layers; l++)
        moe += (l + 1) % m->moe_every == 0;
    INV(moe == 0 || m->expert_ffn_hidden >= 1);
    INV(moe == m->layers || m->ffn_hidden >= 1);
    INV(m->attention != ATTN_GQA || (m->head_dim >= 1 && m->heads % m->kv_heads == 0));
    INV(m->attention != ATTN_MLA ||
        (m->kv_lora_rank >= 1 && m->qk_nope_head_dim >= 1 && m->v_head_dim >= 1));
    return NULL;
}

/* NULL, or the first broken promise of config.h and cfg_check() in an accepted config. */
static inline const char *config_broken(const struct config *c)
{
    const struct cfg_cluster *cl = &c->cluster;
    const struct cfg_model *m = &c->model;
    int gpus = config_gpus(c), ep = c->parallel.ep, pp = c->parallel.pp, dp = c->parallel.dp;
    unsigned char dedup, combine;                 /* a bool other than 0/1 is UB to load */
    memcpy(&dedup, &c->routing.dedup, 1);
    memcpy(&combine, &c->traffic.combine, 1);
    INV(cl->nodes >= 1 && cl->gpus_per_node >= 1 && gpus >= 1 && gpus <= CFG_GPUS_MAX);
    INV(isfinite(cl->nvlink_Bps) && cl->nvlink_Bps > 0 && isfinite(cl->nic_Bps) && cl->nic_Bps > 0);
    INV(cl->nvlink_eff > 0 && cl->nvlink_eff <= 1 && cl->nic_eff > 0 && cl->nic_eff <= 1);
    INV(isfinite(cl->nvlink_lat_s + cl->nic_lat_s + cl->switch_lat_s));
    INV(cl->nvlink_lat_s >= 0 && cl->nic_lat_s >= 0 && cl->switch_lat_s >= 0);
    INV(isfinite(cl->oversubscription) && cl->oversubscription >= 1 && cl->nodes_per_leaf >= 0);
    INV(m->hidden >= 1 && m->experts >= 1 && m->top_k >= 1 && m->top_k <= m->experts);
    INV(m->shared_experts >= 0 && m->expert_ffn_hidden >= 0 && m->layers >= 1);
    INV(m->first_dense_layers >= 0 && m->first_dense_layers <= m->layers);
    INV(isfinite(m->dispatch_bytes_per_elem) && m->dispatch_bytes_per_elem > 0);
    INV(isfinite(m->combine_bytes_per_elem) && m->combine_bytes_per_elem > 0);
    INV(isfinite(m->combine_grad_bytes_per_elem) && m->combine_grad_bytes_per_elem > 0);
    INV(isfinite(m->dispatch_grad_bytes_per_elem) && m->dispatch_grad_bytes_per_elem > 0);
    INV(pp >= 1 && dp >= 1 && (long long)pp * dp == gpus);
    INV(ep >= 1 && ep <= dp && dp % ep == 0);
    /* every GPU of an EP group holds as many slots; without redundant ones, experts */
    INV(c->traffic.pattern != PATTERN_MOE ||
        ((m->experts + c->balance.redundant_experts) % ep == 0 &&
         (c->balance.redundant_experts > 0 || m->experts % ep == 0)));
    INV(cl->route != ROUTE_HIER || c->traffic.pattern != PATTERN_MOE ||
        ep % cl->gpus_per_node == 0 || cl->gpus_per_node % ep == 0);
    INV(c->routing.tokens_per_gpu >= 0 && isfinite(c->routing.zipf_s) && c->routing.zipf_s >= 0);
    INV((unsigned)cl->route <= ROUTE_HIER && (unsigned)c->routing.distribution <= DIST_ZIPF);
    INV((unsigned)c->traffic.pattern <= PATTERN_MATRIX && dedup <= 1 && combine <= 1);
    INV(c->traffic.pattern != PATTERN_MATRIX || c->traffic.matrix[0]);
    INV(memchr(cl->name, '\0', CFG_NAME_MAX) && memchr(m->name, '\0', CFG_NAME_MAX));
    INV(memchr(c->traffic.matrix, '\0', sizeof(c->traffic.matrix)));
    INV(memchr(c->traffic.matrix_src.where, '\0', sizeof(c->traffic.matrix_src.where)));
    const char *why = config_ranges_broken(c);
    return why ? why : config_step_broken(c);
}

/* p[0..n) as a decimal of digits only, at most 2^64 - 1 (traces/FORMAT.md). */
static inline bool oracle_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return n > 0;
}

/* The line of p[0..size) that starts at s: its end (a '\n' or size) in *e, and the fields
 * before its first '#', split on spaces, tabs and '\r' (traces/FORMAT.md; lines_broken
 * keeps a '\r' to the end of a line): (start, length) of the first max in f. Returns how
 * many fields there are. */
static inline int oracle_line(const char *p, size_t size, size_t s, size_t *e, size_t (*f)[2],
                              int max)
{
    static const char blanks[] = " \t\r";
    size_t end;
    int nf = 0;
    for (*e = s; *e < size && p[*e] != '\n'; ++*e) {}
    for (end = s; end < *e && p[end] != '#'; end++) {}
    for (size_t i = s; i < end; i++) {
        if (strchr(blanks, p[i]))
            continue;
        size_t j = i;
        for (; j < end && !strchr(blanks, p[j]); j++) {}
        if (nf < max) {
            f[nf][0] = i;
            f[nf][1] = j - i;
        }
        nf++;
        i = j;
    }
    return nf;
}

/* NULL, or how m differs from the text of an accepted dense file (first data line at s0,
 * gpus != 3 fields): exactly gpus data lines of gpus 64-bit decimals adding up to at most
 * 2^63; lines before s0 within TRACE_LINE_MAX, the rest within TRACE_LINE_MAX + 21 gpus. */
static inline const char *matrix_dense_broken(const struct matrix *m, int gpus, const char *p,
                                              size_t size, size_t s0)
{
    size_t g = (size_t)gpus, (*f)[2] = calloc(g, sizeof(*f));
    uint64_t v, total = 0;
    size_t row = 0;
    const char *why = lines_broken(p, s0, TRACE_LINE_MAX);
    why = why ? why : lines_broken(p + s0, size - s0, TRACE_LINE_MAX + 21 * g);
    if (!f)
        why = "out of memory in the oracle";
    for (size_t s = s0, e; s < size && !why; s = e + 1) {
        int nf = oracle_line(p, size, s, &e, f, gpus);
        if (nf == 0)
            continue;
        if (nf != gpus || row >= g)
            why = nf != gpus ? "accepted a dense row without one field per GPU"
                             : "accepted a dense matrix with more rows than GPUs";
        for (size_t j = 0; j < g && !why; j++) {
            if (!oracle_u64(p + f[j][0], f[j][1], &v))
                why = "accepted a field that is not a 64-bit decimal";
            else if (v > (1ull << 63) - total)
                why = "accepted bytes adding up to more than 2^63";
            else if (m->bytes[row * g + j] != v)
                why = "bytes differ from the dense file";
            total += why ? 0 : v;
        }
        row++;
    }
    if (!why && row != g)
        why = "accepted a dense matrix with fewer rows than GPUs";
    free(f);
    return why;
}

/* NULL, or how m differs from the text of an accepted file read as FORMAT.md says: fields
 * separated by spaces and tabs, a '\r' only at the end of a line (lines_broken); the
 * form (pairs or dense) is that of the first line with fields. */
static inline const char *matrix_broken(const struct matrix *m, int gpus, const char *p, size_t size)
{
    size_t n = (size_t)gpus * (size_t)gpus, f[3][2];
    if (m->gpus != gpus || !m->bytes)
        return "wrong gpus or no bytes";
    for (size_t s = 0, e; s < size; s = e + 1) {
        int nf = oracle_line(p, size, s, &e, f, 3);
        if (nf == gpus && gpus != 3)
            return matrix_dense_broken(m, gpus, p, size, s);
        if (nf)
            break;
    }
    uint64_t *want = calloc(n, sizeof(*want)), v[3], total = 0;
    unsigned char *seen = calloc(n, 1);
    const char *why = lines_broken(p, size, TRACE_LINE_MAX);
    if (!want || !seen)
        why = "out of memory in the oracle";
    for (size_t s = 0, e; s < size && !why; s = e + 1) {
        int nf = oracle_line(p, size, s, &e, f, 3);
        if (nf == 0)
            continue;
        if (nf != 3)
            why = "accepted a line without three fields";
        for (int k = 0; k < 3 && !why; k++)
            if (!oracle_u64(p + f[k][0], f[k][1], &v[k]))
                why = "accepted a field that is not a 64-bit decimal";
        if (!why && (v[0] >= (uint64_t)gpus || v[1] >= (uint64_t)gpus))
            why = "accepted a GPU id out of range";
        else if (!why) {
            size_t at = v[0] * (size_t)gpus + v[1];
            why = seen[at] ? "accepted a pair given twice"
                : v[2] > (1ull << 63) - total ? "accepted pairs adding up to more than 2^63 bytes"
                : NULL;
            seen[at] = 1;
            want[at] = v[2];
            total += v[2];
        }
    }
    for (size_t i = 0; i < n && !why; i++)
        if (m->bytes[i] != want[i])
            why = seen[i] ? "bytes differ from the file" : "a pair not in the file is not 0";
    free(want);
    free(seen);
    return why;
}

struct oracle_entry { uint64_t at, tokens; };

static inline int oracle_entry_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct oracle_entry *)a)->at, y = ((const struct oracle_entry *)b)->at;
    return (x > y) - (x < y);
}

/* NULL, or what is wrong with the header line's fields f[0..6) (start, length) against
 * FORMAT.md and the dimensions *t was given; dim[4] gets the header's numbers. */
static inline const char *rtrace_header_broken(const struct rtrace *t, int want_gpus,
                                               int want_experts, const char *p,
                                               size_t (*f)[2], uint64_t *dim)
{
    static const char *const key[4] = { "layers=", "iterations=", "gpus=", "experts=" };
    static const char magic[] = "moesim-routing-trace";
    const int got[4] = { t->layers, t->iterations, t->gpus, t->experts };
    uint64_t entries = 1;
    if (f[0][1] != strlen(magic) || memcmp(p + f[0][0], magic, f[0][1]))
        return "accepted a header without the word moesim-routing-trace";
    if (f[1][1] != 1 || p[f[1][0]] != '1')
        return "accepted a version other than 1";
    for (int k = 0; k < 4; k++) {
        size_t kn = strlen(key[k]), at = f[2 + k][0], n = f[2 + k][1];
        if (n < kn || memcmp(p + at, key[k], kn) || !oracle_u64(p + at + kn, n - kn, &dim[k]))
            return "accepted a header field other than key=digits in order";
        if (dim[k] < 1 || dim[k] > 2147483647)
            return "accepted a dimension outside 1..2^31-1";
        if ((uint64_t)got[k] != dim[k])
            return "dimensions differ from the header";
        entries *= dim[k];            /* 4 factors below 2^31: checked before it can wrap */
        if (entries > (1u << 28))
            return "accepted more than 2^28 entries";
    }
    if ((want_gpus > 0 && dim[2] != (uint64_t)want_gpus) ||
        (want_experts > 0 && dim[3] != (uint64_t)want_experts))
        return "accepted dimensions other than the wanted ones";
    return NULL;
}

/* NULL, or how t differs from the text of an accepted routing trace read as FORMAT.md says
 * (fields separated by spaces and tabs, a '\r' only at the end of a line): the first line
 * with fields is the header, each later one an entry of ids in range, none twice, whose
 * count t holds; every entry not listed is 0 (checked up to ORACLE_SCAN_MAX entries).
 * Memory: one record per entry line. */
static inline const char *rtrace_broken(const struct rtrace *t, int want_gpus, int want_experts,
                                        const char *p, size_t size)
{
    struct oracle_entry *list = NULL;
    size_t nlist = 0, cap = 0, nonzero = 0, f[6][2];
    uint64_t dim[4] = { 0 }, v[5];
    bool header = false;
    const char *why = t->tokens ? lines_broken(p, size, TRACE_LINE_MAX) : "no counts";
    for (size_t s = 0, e; s < size && !why; s = e + 1) {
        int nf = oracle_line(p, size, s, &e, f, 6);
        if (nf == 0)
            continue;
        if (!header) {
            header = true;
            why = nf != 6 ? "accepted a header without six fields"
                          : rtrace_header_broken(t, want_gpus, want_experts, p, f, dim);
            continue;
        }
        if (nf != 5)
            why = "accepted an entry without five fields";
        for (int k = 0; k < 5 && !why; k++)
            if (!oracle_u64(p + f[k][0], f[k][1], &v[k]))
                why = "accepted a field that is not a 64-bit decimal";
        for (int k = 0; k < 4 && !why; k++)
            if (v[k] >= dim[k])
                why = "accepted an id out of range";
        if (!why && nlist == cap && !(list = realloc(list, (cap = 2 * cap + 64) * sizeof(*list))))
            why = "out of memory in the oracle";
        if (!why) {
            list[nlist].at = ((v[0] * dim[1] + v[1]) * dim[2] + v[2]) * dim[3] + v[3];
            list[nlist++].tokens = v[4];
        }
    }
    if (!why && !header)
        why = "accepted a file without a header";
    if (!why && nlist)
        qsort(list, nlist, sizeof(*list), oracle_entry_cmp);
    /* Sorted by index, the entries of one (layer, iteration) are adjacent. */
    uint64_t block_size = dim[2] * dim[3], block_total = 0;
    for (size_t i = 0; i < nlist && !why; i++) {
        if (i && list[i].at / block_size != list[i - 1].at / block_size)
            block_total = 0;
        block_total += list[i].tokens > (1ull << 33) ? (1ull << 33) + 1 : list[i].tokens;
        if (i && list[i].at == list[i - 1].at)
            why = "accepted an entry given twice";
        else if (t->tokens[list[i].at] != list[i].tokens)
            why = "tokens differ from the file";
        else if (block_total > (1ull << 33))
            why = "accepted a layer and iteration of more than 2^33 tokens";
        nonzero += list[i].tokens != 0;
    }
    size_t n = why ? 0 : (size_t)(dim[0] * dim[1] * dim[2] * dim[3]);
    for (size_t i = 0; i < n && n <= ORACLE_SCAN_MAX && !why; i++)
        nonzero -= t->tokens[i] != 0;
    if (!why && n <= ORACLE_SCAN_MAX && nonzero)
        why = "an entry not in the file is not 0";
    free(list);
    return why;
}

/* NULL, or what breaks rtrace_write's promise for t: its output, written to rt_path,
 * loads back the same. */
static inline const char *rtrace_round_trip_broken(const struct rtrace *t, const char *rt_path)
{
    struct rtrace back;
    struct rtrace_err e;
    FILE *f = fopen(rt_path, "w");
    size_t n = (size_t)t->layers * t->iterations * t->gpus * t->experts;
    int rc = f ? rtrace_write(f, t) : -EIO;
    if (!f || fclose(f) || rc)
        return "rtrace_write failed";
    if (rtrace_load(&back, rt_path, t->gpus, t->experts, &e))
        return "what rtrace_write wrote does not load";
    const char *why = back.layers != t->layers || back.iterations != t->iterations ||
                      back.gpus != t->gpus || back.experts != t->experts ||
                      memcmp(back.tokens, t->tokens, n * sizeof(*t->tokens))
                    ? "what rtrace_write wrote loads as another trace" : NULL;
    rtrace_free(&back);
    return why;
}

/* NULL, or what is wrong with rc = rtrace_load(t, path, want_gpus, want_experts, err) of
 * the bytes p[0..size), *t filled with 0x5a bytes before: 0 and a trace as the file says
 * that round-trips (through rt_path; up to ORACLE_SCAN_MAX entries), or -EINVAL, *t zeroed
 * and a one-line message starting with path (-EIO/-ENOMEM need a failing disk or
 * allocator). */
static inline const char *rtrace_outcome_broken(int rc, const struct rtrace *t, int want_gpus,
                                                int want_experts, const char *p, size_t size,
                                                const char *path, const char *msg,
                                                const char *rt_path)
{
    const char *why;
    if (rc == -EINVAL)
        return t->tokens || t->layers || t->iterations || t->gpus || t->experts
             ? "*t not zeroed on error" : msg_broken(msg, path);
    if (rc)
        return "not 0 or -EINVAL";
    why = rtrace_broken(t, want_gpus, want_experts, p, size);
    if (why || (size_t)t->layers * t->iterations * t->gpus * t->experts > ORACLE_SCAN_MAX)
        return why;
    return rtrace_round_trip_broken(t, rt_path);
}

#endif
