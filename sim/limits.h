/* limits.h: what a run will cost, estimated from its config before it starts, the limits
 * it must stay under, and a progress hook for the long loops.
 *
 * Work is counted in events, the discrete steps the simulator takes:
 *   tokens   routed tokens (routing.h: each draws its top_k experts), over every routing
 *            pass: layers of a step, balance iterations, the extra pass of an eplb
 *            placement, the second pass of capacity;
 *   flows    network flows (a2a.h, coll.h); each is two events, its start and its end;
 *   subops   training-step sub-ops (step.h); each is one engine event.
 * events = tokens + 2 flows + subops. Each count is an upper bound of what the run does
 * (every collective a step may memoise is counted as run). The time an event takes
 * varies (tens of ns for a token, microseconds for a flow of skewed traffic).
 * Memory is the peak of what the run holds: byte matrices (8 G^2 bytes each, G GPUs),
 * routing tables, flows, step sub-ops, the timeline when --trace is asked. Sizes of
 * arrays follow from the modules' layouts; per-flow and per-sub-op bytes and the
 * samples per flow of a link utilization series are measured (docs/PERFORMANCE.md).
 * Everything is in double: absurd values give large finite estimates, never an overflow.
 */
#ifndef MOESIM_LIMITS_H
#define MOESIM_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LIMITS_EVENTS_DEFAULT 2e8     /* a few minutes of routing at most */
#define LIMITS_MEM_FALLBACK 4e9       /* when physical memory cannot be read */

enum limits_cmd { LIMITS_RUN, LIMITS_BALANCE };

struct limits {
    double max_events;
    double max_bytes;
};

struct limits_est {
    double tokens, flows, subops;
    double events;            /* tokens + 2 flows + subops */
    double bytes;             /* peak bytes held */
    double kept_bytes;        /* still held when it is done (a balance policy's result) */
};

/* A key the estimate scales with (struct config field, int or int64_t). */
struct limits_key {
    const char *name;         /* "section.key" */
    size_t off;               /* offsetof(struct config, ...) */
    bool is64;
};

/* max_events LIMITS_EVENTS_DEFAULT; max_bytes half of the physical memory
 * (sysconf(_SC_PHYS_PAGES) * page size), LIMITS_MEM_FALLBACK when unknown. */
void limits_default(struct limits *l);

/* "8G", "512M", "1.5GiB", "1000000": K M G T KB MB GB TB are powers of 1000, KiB MiB GiB
 * TiB of 1024 (as config sizes). Positive and finite. 0 or -EINVAL. */
int limits_parse_bytes(const char *s, double *out);
/* "200000000", "2e8": a positive finite number. 0 or -EINVAL. */
int limits_parse_count(const char *s, double *out);

/* The cost of c run by cmd (LIMITS_RUN: a step when schedule.kind != none, else one
 * layer's traffic; LIMITS_BALANCE: one policy), trace: a timeline is recorded. c is a
 * config_load result; other values are estimated as far as they go (derived keys are
 * recomputed from nodes, gpus_per_node and pp). */
void limits_estimate(struct limits_est *e, const struct config *c, enum limits_cmd cmd,
                     bool trace);
/* e run after the runs in *sum: events add up; the peak is the kept bytes of the runs
 * before plus e's peak. */
void limits_add(struct limits_est *sum, const struct limits_est *e);

/* The keys the estimate scales with, *n of them. */
const struct limits_key *limits_keys(int *n);
/* The key whose value, set to 1 in every config, lowers the estimate (events when
 * bytes is false, else bytes) the most; -1 when none lowers it. */
int limits_dominant(const struct config *const *c, int n, enum limits_cmd cmd, bool trace,
                    bool bytes);

/* The n configs, run one after another, against l: 0, or -E2BIG with msg[len] one line
 * naming the dominant key, its value, the estimate and the limit (memory first). */
int limits_check(const struct config *const *c, int n, enum limits_cmd cmd, bool trace,
                 const struct limits *l, char *msg, size_t len);

/* One G x G byte matrix: 8 G^2 bytes. */
double limits_matrix_bytes(int gpus);

/* Progress of a long loop: fn(arg, frac, unit, done, total), frac the part of the whole
 * call done (0..1), done of total `unit`s ("layer", "iteration", "flow", "event").
 * fn NULL: none; the loops test the pointer and do nothing more. */
struct limits_progress {
    void (*fn)(void *arg, double frac, const char *unit, int64_t done, int64_t total);
    void *arg;
};

static inline void limits_tick(const struct limits_progress *p, double frac, const char *unit,
                               int64_t done, int64_t total)
{
    if (p && p->fn)
        p->fn(p->arg, frac, unit, done, total);
}

/* A progress line on standard error when it is a terminal: "PREFIX 37% (layer 12/61)",
 * redrawn with '\r' at most every 0.1 s; nothing when stderr is not a terminal. */
struct limits_tty {
    char prefix[96];
    bool on;                  /* stderr is a terminal */
    double last_s;            /* when last drawn; < 0: not yet */
    int width;                /* characters drawn on the line (0: nothing to clear) */
};
void limits_tty_init(struct limits_tty *t, const char *prefix);
void limits_tty_prefix(struct limits_tty *t, const char *prefix);   /* for the next lines */
/* The hook drawing on t; its fn is NULL when t is off. */
struct limits_progress limits_tty_hook(struct limits_tty *t);
void limits_tty_clear(struct limits_tty *t);    /* blanks the line if one was drawn */

#endif
