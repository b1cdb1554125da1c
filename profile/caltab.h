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
 * Each line is the one of the protocol band (fit.h) that holds the configured layer's
 * all-to-all size per peer (msgband.h), or fitted to the sizes `--fit-bytes` names; the
 * comments list every band, with its latency, bandwidth and fit error, and say why the
 * written one was chosen.
 */
#ifndef MOEPROF_CALTAB_H
#define MOEPROF_CALTAB_H

#include <stdio.h>

#include "fit.h"
#include "msgband.h"

/* One row of the expert table: `tokens` rows through one expert; times in s over the
 * repetitions (and ranks). */
struct ctab_row {
    int tokens;
    struct fit_stats fwd_s, bwd_s;
};

/* One test's protocol bands (fit_bands on the medians) and which line was written. */
#define CTAB_BANDS_MAX 3
struct ctab_bands {
    struct fit_band b[CTAB_BANDS_MAX];  /* x = peers x bytes per peer */
    int nb;                   /* 0: no bands (one line over the whole ladder) */
    int chosen;               /* the band written; -1: a line over --fit-bytes's sizes */
    int bw_from;              /* >= 0: the chosen band is flat, written with this band's
                                 bandwidth (its latency its own) */
    double lo_B, hi_B;        /* bytes per peer of the points the written line fits */
};

/* One network tier. peers == 0: not measured (one rank per node, or one node). */
struct ctab_tier {
    int peers;                /* ranks each rank sends to in the tier's all-to-all */
    struct fit_line p2p, a2a; /* the written lines: fitted to the medians of the chosen
                                 band's sizes (or of --fit-bytes's) */
    /* the same fits made per repetition: their median and range, the figures' noise */
    struct fit_stats p2p_lat_s, p2p_bw_Bps, a2a_lat_s, a2a_bw_Bps;
    struct ctab_bands p2p_bands, a2a_bands;
    struct mband_span layer;  /* the configured layer's bytes per peer (ep 0: unknown) */
};

/* Chooses the band of b (b->nb >= 1) that holds x (fit_band_at; x = peers x the
 * layer's bytes per peer, INFINITY for the largest messages) into b->chosen and its
 * line into *line. A flat band (latency-bound there: no bandwidth) is written with its
 * own latency and the bandwidth of the nearest band that has one, a larger sizes' band
 * before a smaller's at the same distance (b->bw_from; -1 when its own). 0, or -EDOM
 * when no band has a bandwidth. */
int ctab_choose(struct ctab_bands *b, double x, struct fit_line *line);

/* Comment lines of one test's bands (nothing when b->nb is 0), each led by `lead`
 * ("; " in the fragment, "# " on stdout): every band's sizes per peer (x / peers),
 * latency, bandwidth and rms, the written one marked, and why it was chosen (the
 * layer's size per peer and the bands its range reaches, or --fit-bytes). 0, -EIO. */
int ctab_bands_note(FILE *f, const char *lead, const char *name, int peers,
                    const struct ctab_bands *b, const struct mband_span *layer);

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
