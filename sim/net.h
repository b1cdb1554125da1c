/* net.h: flow-level network. Links are capacities (bytes/s); flows share them
 * max-min fairly (progressive filling), and rates are recomputed whenever flows start
 * or finish.
 *
 * Exactness: the allocation after every event is THE max-min fair one (unique), within
 * NET_EPS_REL relative error; it is not an approximation of it. Speed comes from
 * repairing the previous allocation instead of recomputing it, on groups of flows that
 * share a bottleneck (see net.c, maxmin.c): an event costs O(flows of the groups it
 * couples to * hops) in plain passes, plus O(log) per group whose rate changes and per
 * flow that changes group; at worst O(all flows * hops).
 *
 * Time: the network is passive. The caller adds flows at a time >= the last one used
 * and asks for the next completion; net_advance() completes flows up to a time. A
 * remainder below NET_EPS_REL * size is snapped to zero, so a flow never finishes
 * "almost" and reschedules forever.
 */
#ifndef MOESIM_NET_H
#define MOESIM_NET_H

#include <stdint.h>

#define NET_EPS_REL 1e-9
#define NET_MAX_HOPS 6

struct net;                                            /* opaque */

/* Called for each completed flow, in completion order (time, then flow id: the flows
 * that finish at one event come in increasing id). */
typedef void (*net_done_fn)(void *arg, int flow, double t_end_s);
/* Called when a link's total rate changes: new total from t_s on. */
typedef void (*net_link_fn)(void *arg, int link, double t_s, double use_Bps);

struct net_stats {
    uint64_t events;          /* distinct times at which rates were recomputed */
    uint64_t rounds;          /* repair rounds (>= events) */
    uint64_t flows_resolved;  /* sum over rounds of the flows whose rates were recomputed:
                               * members of re-solved groups, and new flows */
};

/* cap_Bps: nlinks capacities, each > 0 (borrowed, copied). 0, -EINVAL or -ENOMEM. */
int net_create(struct net **out, int nlinks, const double *cap_Bps);
void net_free(struct net *n);                          /* NULL is a no-op */
void net_observe_links(struct net *n, net_link_fn fn, void *arg);

/* A flow of `bytes` over links[0..nlinks) (1..NET_MAX_HOPS distinct links; borrowed,
 * copied) that starts sharing at t_s (>= the last time given to the network). Returns
 * its id (0, 1, 2, ... in order of adding) or -EINVAL (bad time, size or links) or
 * -ENOMEM. */
int net_add_flow(struct net *n, const int *links, int nlinks, double bytes, double t_s);

/* Time of the next completion; INFINITY when no flow is running. Settles the rates of
 * flows added since the last call first. 0 or negative errno through *err (may be NULL). */
double net_next_finish_s(struct net *n, int *err);

/* Completes, in order, every flow that finishes at or before t_s; calls fn for each.
 * Returns the number completed, or a negative errno. */
int net_advance(struct net *n, double t_s, net_done_fn fn, void *arg);

/* net_advance's batched form, an approximation for speed (a2a.h, cluster.flow_quantum):
 * every flow that finishes at or before until_s at the current rates completes at its
 * own time (clamped to until_s), with no re-solve between them; the rates are re-solved
 * once, at the last of those times, so the bandwidth they free idles until then. fn is
 * called in order of (time, flow id). With until_s = the next completion this is one
 * event of net_advance, bit for bit. Returns the number completed (0 when none finishes
 * by until_s), -EINVAL (until_s before the network's time) or -ENOMEM. */
int net_advance_window(struct net *n, double until_s, net_done_fn fn, void *arg);

double net_flow_rate_Bps(const struct net *n, int flow);   /* 0 once finished */
double net_flow_end_s(const struct net *n, int flow);      /* NAN while running */
/* Bytes flow still has to send at the network's current time (the last time given to
 * net_add_flow or net_advance): its size until its rate is settled, 0 once finished. */
double net_flow_left_bytes(const struct net *n, int flow);
double net_link_use_Bps(const struct net *n, int link);
int net_active_flows(const struct net *n);
struct net_stats net_get_stats(const struct net *n);

#endif
