/* fuzz_oracle.h: what every result of the two parsers must satisfy, shared by the
 * mutation suite (tests/test_fuzz.c) and the libFuzzer harnesses (tests/fuzz/). Each
 * check returns NULL, or a short sentence saying which promise of config.h, cfg_check()
 * or traces/FORMAT.md the result breaks. Header-only: every user is one program. */
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
#include "sched.h"
#include "traffic.h"

#define MATRIX_LINE_MAX 4096      /* traces/FORMAT.md */

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
    INV((unsigned)k <= SCHED_DUALPIPEV && (unsigned)s->dp_reduce <= REDUCE_TREE && overlap <= 1);
    INV(s->microbatches >= 1 && s->micro_batch_tokens >= 1 && s->comm_sms >= 0);
    INV(isfinite(s->grad_bytes_per_param) && s->grad_bytes_per_param > 0);
    INV(s->grad_bytes_per_param <= 8);
    INV(memchr(c->calibration.expert_table, '\0', sizeof(c->calibration.expert_table)));
    INV(memchr(c->calibration.expert_table_src.where, '\0',
               sizeof(c->calibration.expert_table_src.where)));
    if (k == SCHED_NONE)
        return NULL;
    INV(c->traffic.pattern == PATTERN_MOE);
    INV(pieces <= m->layers && !sched_check(k, p->pp, s->microbatches, p->vpp));
    INV(s->comm_sms < cl->sms);
    INV(m->first_dense_layers == m->layers || m->expert_ffn_hidden >= 1);
    INV(m->first_dense_layers == 0 || m->ffn_hidden >= 1);
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
    INV(isfinite(cl->nvlink_lat_s + cl->nic_lat_s + cl->switch_lat_s));
    INV(cl->nvlink_lat_s >= 0 && cl->nic_lat_s >= 0 && cl->switch_lat_s >= 0);
    INV(isfinite(cl->oversubscription) && cl->oversubscription >= 1 && cl->nodes_per_leaf >= 0);
    INV(m->hidden >= 1 && m->experts >= 1 && m->top_k >= 1 && m->top_k <= m->experts);
    INV(m->shared_experts >= 0 && m->expert_ffn_hidden >= 0 && m->layers >= 1);
    INV(m->first_dense_layers >= 0 && m->first_dense_layers <= m->layers);
    INV(isfinite(m->dispatch_bytes_per_elem) && m->dispatch_bytes_per_elem > 0);
    INV(isfinite(m->combine_bytes_per_elem) && m->combine_bytes_per_elem > 0);
    INV(pp >= 1 && dp >= 1 && (long long)pp * dp == gpus);
    INV(ep >= 1 && ep <= dp && dp % ep == 0);
    INV(c->traffic.pattern != PATTERN_MOE || m->experts % ep == 0);
    INV(c->routing.tokens_per_gpu >= 0 && isfinite(c->routing.zipf_s) && c->routing.zipf_s >= 0);
    INV((unsigned)cl->route <= ROUTE_HIER && (unsigned)c->routing.distribution <= DIST_ZIPF);
    INV((unsigned)c->traffic.pattern <= PATTERN_MATRIX && dedup <= 1 && combine <= 1);
    INV(c->traffic.pattern != PATTERN_MATRIX || c->traffic.matrix[0]);
    INV(memchr(cl->name, '\0', CFG_NAME_MAX) && memchr(m->name, '\0', CFG_NAME_MAX));
    INV(memchr(c->traffic.matrix, '\0', sizeof(c->traffic.matrix)));
    INV(memchr(c->traffic.matrix_src.where, '\0', sizeof(c->traffic.matrix_src.where)));
    return config_step_broken(c);
}

/* NULL, or how m differs from the text of an accepted file read as FORMAT.md says: fields
 * separated by spaces and tabs, a '\r' only at the end of a line (lines_broken). */
static inline const char *matrix_broken(const struct traffic *m, int gpus, const char *p, size_t size)
{
    static const char blanks[] = " \t\r";
    size_t n = (size_t)gpus * (size_t)gpus;
    uint64_t *want = calloc(n, sizeof(*want)), f[3] = { 0 };
    unsigned char *seen = calloc(n, 1);
    const char *why = m->gpus != gpus || !m->bytes ? "wrong gpus or no bytes"
                                                   : lines_broken(p, size, MATRIX_LINE_MAX);
    if (!want || !seen)
        why = "out of memory in the oracle";
    for (size_t s = 0, e, end; s < size && !why; s = e + 1) {
        int nf = 0;
        for (e = s; e < size && p[e] != '\n'; e++) {}
        for (end = s; end < e && p[end] != '#'; end++) {}
        for (size_t i = s; i < end; i++) {
            if (strchr(blanks, p[i]))
                continue;
            uint64_t v = 0;
            for (; i < end && !strchr(blanks, p[i]); i++) {
                unsigned d = (unsigned char)p[i] - '0';
                if (d > 9 || v > (UINT64_MAX - d) / 10)
                    why = "accepted a field that is not a 64-bit decimal";
                v = v * 10 + d;
            }
            if (nf < 3)
                f[nf] = v;
            nf++;
        }
        if (nf != 0 && nf != 3)
            why = "accepted a line without three fields";
        else if (nf == 3 && (f[0] >= (uint64_t)gpus || f[1] >= (uint64_t)gpus))
            why = "accepted a GPU id out of range";
        else if (nf == 3 && !why) {
            size_t at = f[0] * (size_t)gpus + f[1];
            why = seen[at] ? "accepted a pair given twice" : NULL;
            seen[at] = 1;
            want[at] = f[2];
        }
    }
    for (size_t i = 0; i < n && !why; i++)
        if (m->bytes[i] != want[i])
            why = seen[i] ? "bytes differ from the file" : "a pair not in the file is not 0";
    free(want);
    free(seen);
    return why;
}

#endif
