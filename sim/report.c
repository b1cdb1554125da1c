/* report.c: the summary table, the CSV row and the per-GPU CSV. */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "csv.h"
#include "rtrace.h"

#define TOP_LINKS 5

struct report_bw report_bandwidth(const struct a2a_result *a)
{
    struct report_bw b = { 0 };
    double g = a->gpus;
    b.size_B = (double)(a->local_bytes + a->remote_bytes) / g;
    if (a->time_s > 0) {
        b.algbw_GBps = b.size_B / a->time_s / 1e9;
        b.busbw_GBps = (double)a->remote_bytes / g / a->time_s / 1e9;
        b.nvl_GBps = (double)a->nvlink_bytes / g / a->time_s / 1e9;
        b.net_GBps = (double)a->net_bytes / g / a->time_s / 1e9;
    }
    return b;
}

void report_link_rates(FILE *f, const struct cfg_cluster *k)
{
    fprintf(f, "NVLink %g GB/s x %g = %g GB/s, NIC %g GB/s x %g = %g GB/s", k->nvlink_Bps / 1e9,
            k->nvlink_eff, k->nvlink_Bps * k->nvlink_eff / 1e9, k->nic_Bps / 1e9, k->nic_eff,
            k->nic_Bps * k->nic_eff / 1e9);
}

/* "# routing ...": the law, then the gating settings that are not the defaults. */
static void routing_line(FILE *f, const struct report *r)
{
    const struct config *c = r->cfg;
    const struct cfg_routing *g = &c->routing;
    int groups = r->topo->gpus / c->parallel.ep;
    if (g->distribution == DIST_TRACE)
        fprintf(f, "# routing  trace %s", g->trace);
    else
        fprintf(f, "# routing  %lld tokens/GPU, %s", (long long)g->tokens_per_gpu,
                config_dist_name(g->distribution));
    if (g->distribution == DIST_ZIPF)
        fprintf(f, "(s=%g)", g->zipf_s);
    if (g->distribution == DIST_AFFINITY)
        fprintf(f, "(s=%g, concentration %g)", g->zipf_s, g->concentration);
    if (g->scoring != SCORE_SOFTMAX)
        fprintf(f, ", %s scores", config_score_name(g->scoring));
    if (g->max_nodes)
        fprintf(f, ", at most %d node%s per token", g->max_nodes, g->max_nodes > 1 ? "s" : "");
    fprintf(f, ", dedup %s, EP %d (%d group%s), seed %llu\n",
            g->dedup && g->distribution != DIST_TRACE ? "on" : "off", c->parallel.ep, groups,
            groups > 1 ? "s" : "", (unsigned long long)r->seed);
}

void report_bias_line(FILE *f, const struct config *c, const char *lead)
{
    const struct cfg_balance *b = &c->balance;
    if (!(b->bias_gamma > 0))
        return;
    if (!balance_run_iterates(c)) {
        fprintf(f, "%sbias     balance.bias_gamma %g not applied: a routing trace's counts are "
                "fixed\n", lead, b->bias_gamma);
        return;
    }
    fprintf(f, "%sbias     aux-loss-free, gamma %g: %s round %d of balance.iterations, with "
            "the bias after %d update%s (moesim balance's last iteration)\n", lead,
            b->bias_gamma, c->schedule.kind != SCHED_NONE ? "each MoE layer's routing is its "
            "own bias's" : "the routing is", b->iterations, b->iterations - 1,
            b->iterations == 2 ? "" : "s");
}

/* "# balance ...": placement, capacity and the load-balance metrics (routing.h). */
static void balance_line(FILE *f, const struct report *r)
{
    const struct cfg_balance *b = &r->cfg->balance;
    const struct routing *rt = r->routing;
    if (!rt)
        return;
    fprintf(f, "# balance  placement %s", config_place_name(b->placement));
    if (b->redundant_experts)
        fprintf(f, " +%d redundant", b->redundant_experts);
    if (b->capacity_factor > 0)
        fprintf(f, ", capacity factor %g: %.3f%% dropped", b->capacity_factor,
                100 * rt->drop_rate);
    else
        fprintf(f, ", dropless");
    fprintf(f, "; load max/mean: expert %.3f, GPU %.3f, node %.3f", rt->expert_load_max_over_mean,
            rt->gpu_load_max_over_mean, rt->node_load_max_over_mean);
    if (!isnan(rt->nodes_per_token))
        fprintf(f, "; per token %.3f nodes, %.3f experts per node", rt->nodes_per_token,
                rt->experts_per_node_per_token);
    fprintf(f, "\n");
    report_bias_line(f, r->cfg, "# ");
}

static void header(FILE *f, const struct report *r)
{
    const struct config *c = r->cfg;
    const struct cfg_cluster *k = &c->cluster;
    const struct topo *t = r->topo;
    fprintf(f, "# cluster  %s%s%d nodes x %d GPUs = %d, ", k->name, *k->name ? ": " : "",
            k->nodes, k->gpus_per_node, t->gpus);
    if (t->leaves > 1)
        fprintf(f, "%d leaves %g:1, ", t->leaves, k->oversubscription);
    else
        fprintf(f, "non-blocking fabric, ");
    fprintf(f, "route %s\n# links    ", config_route_name(k->route));
    report_link_rates(f, k);
    fprintf(f, " (line rate x efficiency = achieved, per GPU per direction)\n");
    if (c->traffic.pattern == PATTERN_MOE) {
        const struct cfg_model *m = &c->model;
        fprintf(f, "# model    %s%shidden %d, %d experts, top-%d, dispatch %g B/elem, combine %g B/elem\n",
                m->name, *m->name ? ": " : "", m->hidden, m->experts, m->top_k,
                m->dispatch_bytes_per_elem, m->combine_bytes_per_elem);
        routing_line(f, r);
        balance_line(f, r);
    } else if (c->traffic.pattern == PATTERN_ALLTOALL) {
        fprintf(f, "# traffic  uniform all-to-all, %llu B per pair\n",
                (unsigned long long)c->traffic.bytes_per_pair);
    } else {
        fprintf(f, "# traffic  matrix %s\n", c->traffic.matrix);
    }
}

static void phase_rows(FILE *f, const struct report *r)
{
    fprintf(f, "#\n#%9s %8s %13s %11s %8s %8s %9s %9s %9s %9s\n", "phase", "flows", "size",
            "time", "algbw", "busbw", "nvl_GBps", "net_GBps", "send_max", "recv_max");
    fprintf(f, "#%9s %8s %13s %11s %8s %8s %9s %9s %9s %9s\n", "", "", "(B)", "(us)", "(GB/s)",
            "(GB/s)", "(GB/s)", "(GB/s)", "/mean", "/mean");
    for (int p = 0; p < r->nphases; p++) {
        const struct a2a_result *a = r->phase[p];
        struct report_bw b = report_bandwidth(a);
        fprintf(f, " %9s %8d %13.0f %11.2f %8.2f %8.2f %9.2f %9.2f %9.3f %9.3f\n",
                r->phase_name[p], a->nflows, b.size_B, a->time_s * 1e6, b.algbw_GBps,
                b.busbw_GBps, b.nvl_GBps, b.net_GBps, a2a_send_max_over_mean(a),
                a2a_recv_max_over_mean(a));
    }
}

static int slowest_gpu(const double *finish, int n)
{
    int w = 0;
    for (int g = 1; g < n; g++)
        if (finish[g] > finish[w])
            w = g;
    return w;
}

/* Links by utilization = bytes / (capacity * phase time), busiest first; ties by id. */
static void top_links(FILE *f, const struct report *r, int p)
{
    const struct a2a_result *a = r->phase[p];
    const struct topo *t = r->topo;
    int best[TOP_LINKS], nb = 0;
    for (int l = 0; l < t->nlinks; l++) {
        double u = (double)a->link_bytes[l] / t->links[l].cap_Bps;
        if (a->link_bytes[l] == 0)
            continue;
        int i = nb < TOP_LINKS ? nb++ : TOP_LINKS;
        while (i > 0 && (double)a->link_bytes[best[i - 1]] / t->links[best[i - 1]].cap_Bps < u) {
            if (i < TOP_LINKS)
                best[i] = best[i - 1];
            i--;
        }
        if (i < TOP_LINKS)
            best[i] = l;
    }
    fprintf(f, "# busiest links in %s (utilization = bytes / (capacity x %s time)):\n",
            r->phase_name[p], r->phase_name[p]);
    for (int i = 0; i < nb; i++) {
        char name[64];
        int l = best[i];
        topo_link_name(t, l, name, sizeof(name));
        double busy = (double)a->link_bytes[l] / t->links[l].cap_Bps;
        fprintf(f, "#   %-16s %6.1f%%  %12llu B  busy %.2f us\n", name,
                a->time_s > 0 ? 100.0 * busy / a->time_s : 0.0,
                (unsigned long long)a->link_bytes[l], busy * 1e6);
    }
}

void report_summary(FILE *f, const struct report *r)
{
    header(f, r);
    phase_rows(f, r);
    uint64_t nvl = 0, net = 0, local = 0;
    for (int p = 0; p < r->nphases; p++) {
        nvl += r->phase[p]->nvlink_bytes;
        net += r->phase[p]->net_bytes;
        local += r->phase[p]->local_bytes;
    }
    fprintf(f, "#\n# bytes%s: NVLink %.6g GB, network %.6g GB, kept local %.6g GB\n",
            r->nphases > 1 ? " (dispatch + combine)" : "", nvl / 1e9, net / 1e9, local / 1e9);
    for (int p = 0; p < r->nphases; p++) {
        const struct a2a_result *a = r->phase[p];
        int s = slowest_gpu(a->recv_finish_s, a->gpus);
        fprintf(f, "# %s straggler: gpu%d receives %llu B, done at %.2f us\n", r->phase_name[p],
                s, (unsigned long long)a->recv_bytes[s], a->recv_finish_s[s] * 1e6);
    }
    for (int p = 0; p < r->nphases; p++)
        top_links(f, r, p);
    uint64_t ev = 0, rounds = 0, fl = 0;
    for (int p = 0; p < r->nphases; p++) {
        ev += r->phase[p]->stats.events;
        rounds += r->phase[p]->stats.rounds;
        fl += r->phase[p]->stats.flows_resolved;
    }
    fprintf(f, "# network model: %llu rate updates in %llu repair rounds, %llu flow re-solves",
            (unsigned long long)ev, (unsigned long long)rounds, (unsigned long long)fl);
    if (r->wall_s >= 0)
        fprintf(f, ", wall %.3f s", r->wall_s);
    fprintf(f, "\n");
}

/* The combine phase; a one-collective pattern counts as both, a MoE run without its
 * combine has none (zeros in the CSV). */
static const struct a2a_result *combine_of(const struct report *r)
{
    if (r->nphases > 1)
        return r->phase[1];
    return r->cfg->traffic.pattern == PATTERN_MOE ? NULL : r->phase[0];
}

static const char csv_cols[] =
    "pattern,route,gpus,ep,seed,flows,dispatch_s,combine_s,nvlink_bytes,net_bytes,local_bytes,"
    "algbw_GBps,busbw_GBps,nvl_GBps,net_GBps,combine_algbw_GBps,combine_busbw_GBps,"
    "send_max_over_mean,recv_max_over_mean,wall_s,drop_rate,expert_load_max_over_mean,"
    "gpu_load_max_over_mean,node_load_max_over_mean,nodes_per_token,experts_per_node_per_token";

/* Columns added after the identifying ones (csv.h): bias_rounds (balance.h). */
static const char csv_then[] = "bias_rounds";

void report_csv_header(FILE *f)
{
    csv_header_then(f, csv_cols, csv_then);
}

int report_csv(FILE *f, const struct report *r)
{
    const struct a2a_result *d = r->phase[0], *c = combine_of(r);
    struct report_bw b = report_bandwidth(d), bc = { 0 };
    if (c)
        bc = report_bandwidth(c);
    uint64_t nvl = 0, net = 0, local = 0;
    for (int p = 0; p < r->nphases; p++) {
        nvl += r->phase[p]->nvlink_bytes;
        net += r->phase[p]->net_bytes;
        local += r->phase[p]->local_bytes;
    }
    csv_header_then(f, csv_cols, csv_then);
    struct csv w;
    csv_begin(&w, f);
    csv_str(&w, config_pattern_name(r->cfg->traffic.pattern));
    csv_str(&w, config_route_name(r->topo->route));
    csv_int(&w, r->topo->gpus);
    csv_int(&w, r->cfg->parallel.ep);
    csv_u64(&w, r->seed);
    csv_int(&w, d->nflows);
    csv_num(&w, d->time_s);
    csv_num(&w, c ? c->time_s : 0.0);
    csv_u64(&w, nvl);
    csv_u64(&w, net);
    csv_u64(&w, local);
    const double bw[] = { b.algbw_GBps, b.busbw_GBps, b.nvl_GBps, b.net_GBps, bc.algbw_GBps,
                          bc.busbw_GBps, a2a_send_max_over_mean(d), a2a_recv_max_over_mean(d),
                          r->wall_s >= 0 ? r->wall_s : 0.0 };
    for (size_t i = 0; i < sizeof(bw) / sizeof(bw[0]); i++)
        csv_num(&w, bw[i]);
    /* NaN (an empty field) where the metric does not exist: no routing, a trace's token
     * metrics */
    const struct routing *rt = r->routing;
    const double bal[] = { rt ? rt->drop_rate : NAN, rt ? rt->expert_load_max_over_mean : NAN,
                           rt ? rt->gpu_load_max_over_mean : NAN,
                           rt ? rt->node_load_max_over_mean : NAN,
                           rt ? rt->nodes_per_token : NAN,
                           rt ? rt->experts_per_node_per_token : NAN };
    for (size_t i = 0; i < sizeof(bal) / sizeof(bal[0]); i++)
        csv_num(&w, bal[i]);
    csv_ident(&w, csv_cols, r->cfg);
    csv_int(&w, rt ? balance_bias_rounds(r->cfg) : 0);
    return csv_end(&w);
}

static const char gpu_cols[] = "gpu,send_finish_s,recv_finish_s,send_bytes,recv_bytes,"
                               "combine_send_finish_s,combine_recv_finish_s";

int report_gpu_csv(FILE *f, const struct report *r)
{
    const struct a2a_result *d = r->phase[0], *c = combine_of(r);
    struct csv w;
    csv_header(f, gpu_cols);
    csv_begin(&w, f);
    for (int g = 0; g < d->gpus; g++) {
        csv_int(&w, g);
        csv_num(&w, d->send_finish_s[g]);
        csv_num(&w, d->recv_finish_s[g]);
        csv_u64(&w, d->send_bytes[g]);
        csv_u64(&w, d->recv_bytes[g]);
        csv_num(&w, c ? c->send_finish_s[g] : 0.0);
        csv_num(&w, c ? c->recv_finish_s[g] : 0.0);
        csv_ident(&w, gpu_cols, r->cfg);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}

static const char link_cols[] = "phase,link,name,kind,owner,capacity_GBps,bytes,busy_s,"
                                "utilization";

int report_link_csv(FILE *f, const struct report *r)
{
    static const char *const kind[] = { "nvl_tx", "nvl_rx", "nic_tx", "nic_rx", "leaf_up",
                                        "leaf_down" };
    const struct topo *t = r->topo;
    struct csv w;
    csv_header(f, link_cols);
    csv_begin(&w, f);
    for (int p = 0; p < r->nphases; p++) {
        const struct a2a_result *a = r->phase[p];
        for (int l = 0; l < t->nlinks; l++) {
            if (a->link_bytes[l] == 0)
                continue;
            char name[64];
            topo_link_name(t, l, name, sizeof(name));
            double busy = (double)a->link_bytes[l] / t->links[l].cap_Bps;
            csv_str(&w, r->phase_name[p]);
            csv_int(&w, l);
            csv_str(&w, name);
            csv_str(&w, kind[t->links[l].kind]);
            csv_int(&w, t->links[l].owner);
            csv_num(&w, t->links[l].cap_Bps / 1e9);
            csv_u64(&w, a->link_bytes[l]);
            csv_num(&w, busy);
            csv_num(&w, a->time_s > 0 ? busy / a->time_s : 0.0);
            csv_ident(&w, link_cols, r->cfg);
            csv_end(&w);
        }
    }
    return ferror(f) ? -EIO : 0;
}

/* A view of the routing's per-source demand as a one-layer, one-iteration trace: the
 * layout of src_demand, [s * experts + e], is that of (layer 0, iteration 0). */
int report_routing_trace(FILE *f, const struct report *r)
{
    const struct routing *rt = r->routing;
    if (!rt)
        return -EINVAL;
    const struct rtrace view = { 1, 1, rt->gpus, rt->experts, rt->src_demand };
    return rtrace_write(f, &view);
}
