/* caltab.c: the expert table and the INI fragment of `moeprof calibrate`; see caltab.h. */
#include "caltab.h"

#include <errno.h>
#include <math.h>

/* Every line written stays under moesim's INI line limit (199 characters). */

/* sim/config.c's ranges of the keys written: GBps 1e-3 .. 1e9, efficiency 1e-3 .. 1,
 * latency 0 .. 1e6 us. A figure outside is clipped into them (and says so). */
#define KEY_GBPS_MIN 1e-3
#define KEY_GBPS_MAX 1e9
#define KEY_EFF_MIN 1e-3
#define KEY_LAT_US_MAX 1e6

static double clip(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void ctab_keys(const struct ctab_tier *t, struct ctab_keys *k)
{
    double line = t->p2p.bw_Bps, eff = t->a2a.bw_Bps / line;
    if (eff > 1) {            /* the all-to-all beat the ping-pong: its rate is the line */
        line = t->a2a.bw_Bps;
        eff = 1;
    }
    k->GBps = clip(line / 1e9, KEY_GBPS_MIN, KEY_GBPS_MAX);
    k->efficiency = clip(eff, KEY_EFF_MIN, 1);
    k->latency_us = clip(t->a2a.lat_s / 2 * 1e6, 0, KEY_LAT_US_MAX);
}

int ctab_table(FILE *f, const struct ctab_row *rows, int n, const char *what)
{
    fprintf(f, "# %s\n", what);
    fprintf(f, "# one routed expert's FFN on `tokens` rows: median over repetitions and "
               "ranks, in us; bwd_us = input + weight gradient\n");
    fprintf(f, "# range over the repetitions (us): tokens fwd_min fwd_max bwd_min bwd_max\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "#   %d %.3f %.3f %.3f %.3f\n", rows[i].tokens, rows[i].fwd_s.min * 1e6,
                rows[i].fwd_s.max * 1e6, rows[i].bwd_s.min * 1e6, rows[i].bwd_s.max * 1e6);
    fprintf(f, "tokens,fwd_us,bwd_us\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "%d,%.3f,%.3f\n", rows[i].tokens, rows[i].fwd_s.median * 1e6,
                rows[i].bwd_s.median * 1e6);
    return ferror(f) ? -EIO : 0;
}

/* The comment lines of one tier's measurement: both fits with their noise. */
static void tier_comment(FILE *f, const struct ctab_tier *t)
{
    fprintf(f, "; ping-pong:  latency %.3f us (%.3f .. %.3f over repetitions), bandwidth "
               "%.4g GB/s (%.4g .. %.4g), fit error %.2f %% rms\n",
            t->p2p.lat_s * 1e6, t->p2p_lat_s.min * 1e6, t->p2p_lat_s.max * 1e6,
            t->p2p.bw_Bps / 1e9, t->p2p_bw_Bps.min / 1e9, t->p2p_bw_Bps.max / 1e9,
            t->p2p.rms_rel * 100);
    fprintf(f, "; all-to-all (%d peer(s)): latency %.3f us (%.3f .. %.3f), bandwidth %.4g GB/s "
               "(%.4g .. %.4g) per rank, fit error %.2f %% rms\n",
            t->peers, t->a2a.lat_s * 1e6, t->a2a_lat_s.min * 1e6, t->a2a_lat_s.max * 1e6,
            t->a2a.bw_Bps / 1e9, t->a2a_bw_Bps.min / 1e9, t->a2a_bw_Bps.max / 1e9,
            t->a2a.rms_rel * 100);
    ctab_bands_note(f, "; ", "ping-pong", 1, &t->p2p_bands, &t->layer);
    ctab_bands_note(f, "; ", "all-to-all", t->peers, &t->a2a_bands, &t->layer);
}

int ctab_choose(struct ctab_bands *b, double x, struct fit_line *line)
{
    b->chosen = fit_band_at(b->b, b->nb, x);
    b->bw_from = -1;
    *line = b->b[b->chosen].line;
    /* a flat band: the nearest band's bandwidth, the larger sizes' first */
    for (int d = 1; !isfinite(line->bw_Bps) && d < b->nb; d++)
        for (int k = b->chosen + d; k >= b->chosen - d; k -= 2 * d)
            if (k >= 0 && k < b->nb && isfinite(b->b[k].line.bw_Bps) &&
                !isfinite(line->bw_Bps)) {
                line->bw_Bps = b->b[k].line.bw_Bps;
                b->bw_from = k;
            }
    return isfinite(line->bw_Bps) ? 0 : -EDOM;
}

int ctab_bands_note(FILE *f, const char *lead, const char *name, int peers,
                    const struct ctab_bands *b, const struct mband_span *layer)
{
    if (!b->nb)
        return ferror(f) ? -EIO : 0;
    for (int i = 0; i < b->nb; i++) {
        const struct fit_line *l = &b->b[i].line;
        fprintf(f, "%s%s band %d: %.0f .. %.0f B per peer: latency %.3f us, ", lead, name,
                i + 1, b->b[i].x_lo / peers, b->b[i].x_hi / peers, l->lat_s * 1e6);
        if (isfinite(l->bw_Bps))
            fprintf(f, "bandwidth %.4g GB/s", l->bw_Bps / 1e9);
        else
            fprintf(f, "flat (no bandwidth)");
        fprintf(f, ", rms %.2f %%%s\n", l->rms_rel * 100, i == b->chosen ? " (written)" : "");
    }
    if (b->chosen < 0) {
        fprintf(f, "%s%s written: one line over the sizes %.0f .. %.0f B per peer "
                   "(--fit-bytes)\n", lead, name, b->lo_B, b->hi_B);
        return ferror(f) ? -EIO : 0;
    }
    if (layer->ep < 2) {
        fprintf(f, "%s%s written: band %d, the largest messages (the layer sends no "
                   "all-to-all: parallel.ep = %d)\n", lead, name, b->chosen + 1, layer->ep);
        return ferror(f) ? -EIO : 0;
    }
    const int lo = fit_band_at(b->b, b->nb, layer->lo_B * peers);
    const int hi = fit_band_at(b->b, b->nb, layer->hi_B * peers);
    fprintf(f, "%s%s written: band %d, which holds the layer's %.0f B per peer (uniform "
               "routing, ep %d)\n", lead, name, b->chosen + 1, layer->uniform_B, layer->ep);
    if (b->bw_from >= 0 && b->bw_from != b->chosen)
        fprintf(f, "%s%s: band %d is flat (latency-bound at these sizes): written with its "
                   "latency and band %d's bandwidth\n", lead, name, b->chosen + 1,
                b->bw_from + 1);
    if (layer->hi_B * peers > b->b[b->nb - 1].x_hi)
        fprintf(f, "%s%s: the layer's messages pass the ladder's largest, %.0f B per peer: "
                   "the line is extrapolated\n", lead, name, b->b[b->nb - 1].x_hi / peers);
    if (layer->lo_B < layer->hi_B) {
        fprintf(f, "%s%s: the layer's routing sends %.0f .. %.0f B to a peer, ", lead, name,
                layer->lo_B, layer->hi_B);
        if (lo == hi)
            fprintf(f, "inside band %d\n", lo + 1);
        else
            fprintf(f, "across bands %d .. %d (--fit-bytes %.0f..%.0f fits one line over "
                       "them)\n", lo + 1, hi + 1, floor(layer->lo_B), ceil(layer->hi_B));
    }
    return ferror(f) ? -EIO : 0;
}

static void tier_keys(FILE *f, const struct ctab_tier *t, const char *prefix)
{
    struct ctab_keys k;
    ctab_keys(t, &k);
    fprintf(f, "%s_GBps = %.9g\n", prefix, k.GBps);
    fprintf(f, "%s_efficiency = %.9g\n", prefix, k.efficiency);
    fprintf(f, "%s_latency_us = %.9g\n", prefix, k.latency_us);
}

int ctab_fragment(FILE *f, const struct ctab_tier *intra, const struct ctab_tier *inter,
                  const char *table, const char *what)
{
    fprintf(f, "; %s\n", what);
    fprintf(f, "; moesim run CLUSTER.ini THIS.ini MODEL.ini: these keys override the "
               "cluster's.\n");
    fprintf(f, "; GBps = the ping-pong's bandwidth, efficiency = the all-to-all's / it "
               "(so the links carry the all-to-all's rate), latency_us = the all-to-all's "
               "intercept / 2 hops\n");
    fprintf(f, "; each from the line written per test: the protocol band holding the layer's "
               "all-to-all bytes per peer, or --fit-bytes's sizes (below)\n");
    fprintf(f, "[cluster]\n");
    fprintf(f, "; inside a node (ranks of one node: MPI_Comm_split_type SHARED)\n");
    if (intra->peers > 0) {
        tier_comment(f, intra);
        tier_keys(f, intra, "nvlink");
    } else {
        fprintf(f, "; not measured: one rank per node; nvlink_* keys left to the cluster "
                   "config\n");
    }
    fprintf(f, "; across nodes\n");
    if (inter->peers > 0) {
        tier_comment(f, inter);
        tier_keys(f, inter, "nic");
        fprintf(f, "; the switch's latency is inside the measured intercept\n");
        fprintf(f, "switch_latency_us = 0\n");
    } else {
        fprintf(f, "; not measured: every rank on one node; nic_* keys left to the cluster "
                   "config\n");
    }
    fprintf(f, "\n[calibration]\n");
    fprintf(f, "expert_table = %s\n", table);
    return ferror(f) ? -EIO : 0;
}
