/* caltab.h: what `moeprof calibrate` writes, as text: the expert table moesim's compute
 * model reads ([calibration] expert_table, sim/compute.h's format) and the INI fragment
 * that moesim takes as one more config file (`moesim run cluster.ini calib.ini
 * model.ini`). Writes to a FILE the caller opened (sim/ofile.h commits it); no MPI.
 *
 * A network tier (ranks of one node; ranks on different nodes) becomes moesim's keys
 * of that tier (prefix nvlink_ or nic_; sim/topo.h: a link's capacity is line rate x
 * efficiency, a path's latency 2 nvlink hops inside a node, NIC + switch + NIC across):
 *   <p>_GBps       the ping-pong's bandwidth (one message alone on the path)
 *   <p>_efficiency the all-to-all's bandwidth / the ping-pong's (clipped to 1e-3 .. 1;
 *                  where the all-to-all is the faster, GBps is the all-to-all's and the
 *                  efficiency 1), so that GBps x efficiency, the rate moesim gives a
 *                  link, is the all-to-all's measured rate
 *   <p>_latency_us the all-to-all's intercept over the hops of the tier's path: / 2
 *                  (two NVLink hops; across nodes two NIC hops, with switch_latency_us
 *                  written as 0, the switch's share being in the measured intercept)
 * The all-to-all is the collective the MoE layer runs, so its figures are the ones
 * moesim's links carry; the ping-pong's latency is written as a comment.
 */
#ifndef MOEPROF_CALTAB_H
#define MOEPROF_CALTAB_H

#include <stdio.h>

#include "fit.h"

/* One row of the expert table: `tokens` rows through one expert; times in s over the
 * repetitions (and ranks). */
struct ctab_row {
    int tokens;
    struct fit_stats fwd_s, bwd_s;
};

/* One network tier. peers == 0: not measured (one rank per node, or one node). */
struct ctab_tier {
    int peers;                /* ranks each rank sends to in the tier's all-to-all */
    struct fit_line p2p, a2a; /* fitted to the medians of each size */
    /* the same fits made per repetition: their median and range, the figures' noise */
    struct fit_stats p2p_lat_s, p2p_bw_Bps, a2a_lat_s, a2a_bw_Bps;
};

/* The keys of a measured tier, in the file's units. */
struct ctab_keys {
    double GBps, efficiency, latency_us;
};
void ctab_keys(const struct ctab_tier *t, struct ctab_keys *k);

/* The expert table: comment lines (`what`, one line, then each row's range over the
 * repetitions), the header tokens,fwd_us,bwd_us and one row per entry (medians, us
 * with 3 decimals). 0, or -EIO when the stream reports an error. */
int ctab_table(FILE *f, const struct ctab_row *rows, int n, const char *what);

/* The fragment: comment lines (`what`), [cluster] with the keys of each measured tier
 * (a tier not measured: a comment saying so, its keys left to the other files), and
 * [calibration] expert_table = table (a path relative to the fragment's folder, as
 * moesim resolves it). 0, or -EIO. */
int ctab_fragment(FILE *f, const struct ctab_tier *intra, const struct ctab_tier *inter,
                  const char *table, const char *what);

#endif
