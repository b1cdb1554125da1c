/* fabric.h: the collectives of every pipeline stage on one network, the whole cluster's,
 * coupled where they meet in time on a link that can limit them.
 *
 * Layout (step.h): stage r holds GPUs [r S, (r+1) S) of the cluster (S = stage_gpus), its
 * lane g (one EP group) the stage's GPUs [g E, (g+1) E) (E = lane_gpus). A collective is
 * given once, in a stage's numbering (0 .. S-1), as parts run one after the other: part
 * k's byte matrix is sent `repeat` times, each time once the job's flows of the previous
 * time are done (the steps of a ring), then `tail_s` of latency passes. A job is one
 * lane's share of one collective on one stage: the flows out of the lane's GPUs (the
 * matrix rows of its GPUs), each starting after its path latency (topo_route) and sharing
 * the cluster's links max-min fairly (net.h) with every flow in the same network.
 *
 * Coupling links: the up and down links of a leaf whose capacity is below that of the
 * NICs under it (oversubscription > 1). Only they let one lane's collective change
 * another's time: a GPU's own links (NVLink, NIC) carry its lane's collectives one at a
 * time (one communication stream per lane), and a leaf link at least as fast as its NICs
 * never limits a flow beyond them (the allocation without it is feasible with it and
 * max-min fair, hence the same allocation).
 *
 * A job that starts (fabric_start)
 *   - crossing no coupling link ends after the duration the caller gives (its memoised
 *     figure), one event, as without a fabric;
 *   - crossing some, while no job in flight crosses any of them, runs alone: it ends after
 *     its standalone time at its own place in the cluster: alone_s where that is the
 *     same (see fabric_create), else simulated once per (collective, lane, class of
 *     stages with the same leaf layout) and memoised;
 *   - otherwise runs in the shared network with the jobs in flight that cross one of its
 *     coupling links. One of them that was running alone joins it there: it is replayed
 *     alone from its own start to now (it met nobody so far) and its flows go on with
 *     the bytes they have left. A job in the shared network stays there to its end;
 *     rates are re-solved at every flow start and end (net.h).
 * Cost: a job alone is one event (and one standalone simulation for the first of its
 * kind); a shared job is a network simulation of its flows, plus the replay of each job
 * it pulls in.
 */
#ifndef MOESIM_FABRIC_H
#define MOESIM_FABRIC_H

#include <stdbool.h>

#include "des.h"
#include "topo.h"
#include "traffic.h"

#define FABRIC_MAX_PARTS 2

struct fabric;                                 /* opaque */

struct fabric_part {
    const struct traffic *m;  /* stage_gpus x stage_gpus bytes; borrowed, copied */
    int repeat;               /* times it is sent (>= 0; 0: the part, tail too, is skipped) */
    double tail_s;            /* latency after the last time (>= 0) */
};

struct fabric_counts {
    int alone;                /* jobs over coupling links that ran alone (memoised time) */
    int shared;               /* jobs that ran in the shared network */
    int simulated;            /* standalone simulations run for the memo */
};

/* Has t a coupling link (a leaf whose up or down link is below its NICs)? */
bool fabric_couples(const struct topo *t);

/* A fabric over t (the whole cluster) cut into stages of stage_gpus GPUs (dividing
 * t->gpus) and lanes of lane_gpus (dividing stage_gpus). stage_t (may be NULL): the
 * topology of one stage that the callers' alone_s figures were timed on, all lanes of a
 * stage at once; where a stage sits on t's leaves as stage_t's GPUs sit on its own and
 * the stage's lanes cross disjoint coupling links in a collective, a job of it alone
 * takes alone_s rather than a standalone run. t and stage_t are borrowed and must
 * outlive the fabric. 0, -EINVAL, -ENOMEM. */
int fabric_create(struct fabric **out, const struct topo *t, const struct topo *stage_t,
                  int stage_gpus, int lane_gpus);
void fabric_free(struct fabric *f);            /* NULL is a no-op */

/* Registers a collective of nparts (1 .. FABRIC_MAX_PARTS) parts; its flows are copied.
 * Returns its id (>= 0; a collective equal to one registered before gets that one's id),
 * -EINVAL (a matrix not stage_gpus wide, a negative repeat or tail) or -ENOMEM. */
int fabric_coll(struct fabric *f, const struct fabric_part *parts, int nparts);

/* Starts the job of lane `lane` of stage `stage` in collective coll at des_now(d);
 * fn(d, arg) runs at its end, from an event of d (arg borrowed until then). alone_s: its
 * duration if it crosses no coupling link (>= 0). Every start on one fabric uses the same
 * d, and the fabric must outlive d's events. 0, -EINVAL, -ENOMEM. */
int fabric_start(struct fabric *f, struct des *d, int coll, int stage, int lane,
                 double alone_s, des_fn fn, void *arg);

/* 0, or the negative errno a job met inside an event (it stopped d's loop). */
int fabric_error(const struct fabric *f);
struct fabric_counts fabric_get_counts(const struct fabric *f);

#endif
