/* balrep.c: the side-by-side table and CSVs of `moesim balance`; see balrep.h. */
#include "balrep.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>

#define NAME_W 26
#define COL_W 14

/* One table row: a label and one number per policy, "-" where it is not a number. */
static void row(FILE *f, const struct balrep *r, const char *label, const char *fmt,
                double (*get)(const struct balrep_col *))
{
    fprintf(f, "  %-*s", NAME_W, label);
    for (int i = 0; i < r->n; i++) {
        double v = get(&r->cols[i]);
        char buf[32];
        if (isnan(v))
            snprintf(buf, sizeof(buf), "-");
        else
            snprintf(buf, sizeof(buf), fmt, v);
        fprintf(f, " %*s", COL_W, buf);
    }
    fputc('\n', f);
}

static double g_drop(const struct balrep_col *c) { return 100 * c->res->drop_rate; }
static double g_exp(const struct balrep_col *c) { return c->res->expert_load_max_over_mean; }
static double g_gpu(const struct balrep_col *c) { return c->res->gpu_load_max_over_mean; }
static double g_node(const struct balrep_col *c) { return c->res->node_load_max_over_mean; }
static double g_npt(const struct balrep_col *c) { return c->res->nodes_per_token; }
static double g_epn(const struct balrep_col *c) { return c->res->experts_per_node_per_token; }
static double g_nvl(const struct balrep_col *c) { return c->res->nvlink_bytes / 1e9; }
static double g_net(const struct balrep_col *c) { return c->res->net_bytes / 1e9; }
static double g_disp(const struct balrep_col *c) { return c->res->dispatch_s * 1e3; }
static double g_expt(const struct balrep_col *c) { return c->res->expert_s * 1e3; }
static double g_comb(const struct balrep_col *c) { return c->res->combine_s * 1e3; }
static double g_layer(const struct balrep_col *c) { return c->res->layer_s * 1e3; }
static double g_red(const struct balrep_col *c) { return c->res->redundant; }
static double g_first(const struct balrep_col *c)
{
    return c->res->iterations > 1 ? c->res->iter[0].expert_load_max_over_mean : NAN;
}

static void text_row(FILE *f, const struct balrep *r, const char *label,
                     const char *(*get)(const struct balrep_col *))
{
    fprintf(f, "  %-*s", NAME_W, label);
    for (int i = 0; i < r->n; i++)
        fprintf(f, " %*.*s", COL_W, COL_W, get(&r->cols[i]));
    fputc('\n', f);
}

static const char *t_name(const struct balrep_col *c) { return c->name; }
static const char *t_place(const struct balrep_col *c)
{
    return config_place_name(c->cfg->balance.placement);
}

void balrep_table(FILE *f, const struct balrep *r)
{
    const struct config *c = r->cols[0].cfg;
    fprintf(f, "moesim balance: %s, %d GPUs (%d nodes x %d), EP %d, %d experts top-%d, %lld "
            "tokens/GPU, %s routing, seed %" PRIu64 "\n\n", c->model.name[0] ? c->model.name : "model",
            config_gpus(c), c->cluster.nodes, c->cluster.gpus_per_node, c->parallel.ep,
            c->model.experts, c->model.top_k, (long long)c->routing.tokens_per_gpu,
            config_dist_name(c->routing.distribution), r->seed);
    text_row(f, r, "policy", t_name);
    text_row(f, r, "placement", t_place);
    row(f, r, "redundant experts", "%.0f", g_red);
    row(f, r, "dropped tokens (%)", "%.2f", g_drop);
    row(f, r, "expert load max/mean", "%.3f", g_exp);
    row(f, r, "  (first iteration)", "%.3f", g_first);
    row(f, r, "GPU load max/mean", "%.3f", g_gpu);
    row(f, r, "node load max/mean", "%.3f", g_node);
    row(f, r, "nodes per token", "%.3f", g_npt);
    row(f, r, "experts per node per token", "%.3f", g_epn);
    row(f, r, "NVLink GB", "%.3f", g_nvl);
    row(f, r, "network GB", "%.3f", g_net);
    row(f, r, "dispatch ms", "%.3f", g_disp);
    row(f, r, "experts ms (slowest GPU)", "%.3f", g_expt);
    row(f, r, "combine ms", "%.3f", g_comb);
    row(f, r, "layer ms (forward)", "%.3f", g_layer);
    fprintf(f, "\n  loads and times are the last iteration's; layer = dispatch + experts + "
            "combine; %.2f s wall\n", r->wall_s < 0 ? 0 : r->wall_s);
}

int balrep_csv(FILE *f, const struct balrep *r)
{
    fprintf(f, "policy,distribution,scoring,placement,redundant_experts,capacity_factor,"
            "bias_gamma,max_nodes,iterations,drop_rate,expert_load_max_over_mean,"
            "gpu_load_max_over_mean,node_load_max_over_mean,nodes_per_token,"
            "experts_per_node_per_token,nvlink_bytes,net_bytes,dispatch_s,expert_s,combine_s,"
            "layer_s,seed,wall_s\n");
    for (int i = 0; i < r->n; i++) {
        const struct config *c = r->cols[i].cfg;
        const struct balance_result *b = r->cols[i].res;
        fprintf(f, "%s,%s,%s,%s,%d,%.9g,%.9g,%d,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%" PRIu64
                ",%" PRIu64 ",%.9g,%.9g,%.9g,%.9g,%" PRIu64 ",%.3f\n", r->cols[i].name,
                config_dist_name(c->routing.distribution), config_score_name(c->routing.scoring),
                config_place_name(c->balance.placement), b->redundant, c->balance.capacity_factor,
                c->balance.bias_gamma, c->routing.max_nodes, c->balance.iterations, b->drop_rate,
                b->expert_load_max_over_mean, b->gpu_load_max_over_mean,
                b->node_load_max_over_mean, b->nodes_per_token, b->experts_per_node_per_token,
                b->nvlink_bytes, b->net_bytes, b->dispatch_s, b->expert_s, b->combine_s,
                b->layer_s, r->seed, r->wall_s < 0 ? 0 : r->wall_s);
    }
    return ferror(f) ? -EIO : 0;
}

int balrep_iter_csv(FILE *f, const struct balrep *r)
{
    fprintf(f, "policy,iteration,expert_load_max_over_mean,gpu_load_max_over_mean,drop_rate\n");
    for (int i = 0; i < r->n; i++) {
        const struct balance_result *b = r->cols[i].res;
        for (int it = 0; it < b->iterations; it++)
            fprintf(f, "%s,%d,%.9g,%.9g,%.9g\n", r->cols[i].name, it,
                    b->iter[it].expert_load_max_over_mean, b->iter[it].gpu_load_max_over_mean,
                    b->iter[it].drop_rate);
    }
    return ferror(f) ? -EIO : 0;
}

int balrep_expert_csv(FILE *f, const struct balrep *r)
{
    fprintf(f, "policy,ep_group,expert,replicas,demand,kept,dropped,drop_rate,load_over_mean\n");
    for (int i = 0; i < r->n; i++) {
        const struct balance_result *b = r->cols[i].res;
        for (int g = 0; g < b->groups; g++) {
            const uint64_t *d = b->demand + (size_t)g * b->experts;
            const uint64_t *k = b->kept + (size_t)g * b->experts;
            double mean = 0;
            for (int e = 0; e < b->experts; e++)
                mean += (double)d[e] / b->experts;
            for (int e = 0; e < b->experts; e++)
                fprintf(f, "%s,%d,%d,%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.9g,%.9g\n",
                        r->cols[i].name, g, e, b->replicas[e], d[e], k[e], d[e] - k[e],
                        d[e] ? (double)(d[e] - k[e]) / (double)d[e] : 0.0,
                        mean > 0 ? (double)d[e] / mean : 0.0);
        }
    }
    return ferror(f) ? -EIO : 0;
}
