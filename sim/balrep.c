/* balrep.c: the side-by-side table and CSVs of `moesim balance`; see balrep.h. */
#include "balrep.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>

#include "csv.h"

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

static const char csv_cols[] =
    "policy,distribution,scoring,placement,redundant_experts,capacity_factor,bias_gamma,"
    "max_nodes,iterations,drop_rate,expert_load_max_over_mean,gpu_load_max_over_mean,"
    "node_load_max_over_mean,nodes_per_token,experts_per_node_per_token,nvlink_bytes,"
    "net_bytes,dispatch_s,expert_s,combine_s,layer_s,seed,wall_s";

/* Each row's identifying columns are its policy's config's. */
int balrep_csv(FILE *f, const struct balrep *r)
{
    struct csv w;
    csv_header(f, csv_cols);
    csv_begin(&w, f);
    for (int i = 0; i < r->n; i++) {
        const struct config *c = r->cols[i].cfg;
        const struct balance_result *b = r->cols[i].res;
        csv_str(&w, r->cols[i].name);
        csv_str(&w, config_dist_name(c->routing.distribution));
        csv_str(&w, config_score_name(c->routing.scoring));
        csv_str(&w, config_place_name(c->balance.placement));
        csv_int(&w, b->redundant);
        csv_num(&w, c->balance.capacity_factor);
        csv_num(&w, c->balance.bias_gamma);
        csv_int(&w, c->routing.max_nodes);
        csv_int(&w, c->balance.iterations);
        const double nums[] = { b->drop_rate, b->expert_load_max_over_mean,
                                b->gpu_load_max_over_mean, b->node_load_max_over_mean,
                                b->nodes_per_token, b->experts_per_node_per_token };
        for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
            csv_num(&w, nums[k]);
        csv_u64(&w, b->nvlink_bytes);
        csv_u64(&w, b->net_bytes);
        const double times[] = { b->dispatch_s, b->expert_s, b->combine_s, b->layer_s };
        for (size_t k = 0; k < sizeof(times) / sizeof(times[0]); k++)
            csv_num(&w, times[k]);
        csv_u64(&w, r->seed);
        csv_num(&w, r->wall_s < 0 ? 0 : r->wall_s);
        csv_ident(&w, csv_cols, c);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}

int balrep_iter_csv(FILE *f, const struct balrep *r)
{
    struct csv w;
    fputs("policy,iteration,expert_load_max_over_mean,gpu_load_max_over_mean,drop_rate\n", f);
    csv_begin(&w, f);
    for (int i = 0; i < r->n; i++) {
        const struct balance_result *b = r->cols[i].res;
        for (int it = 0; it < b->iterations; it++) {
            csv_str(&w, r->cols[i].name);
            csv_int(&w, it);
            csv_num(&w, b->iter[it].expert_load_max_over_mean);
            csv_num(&w, b->iter[it].gpu_load_max_over_mean);
            csv_num(&w, b->iter[it].drop_rate);
            csv_end(&w);
        }
    }
    return ferror(f) ? -EIO : 0;
}

/* The mean demand per expert of one EP group's counts d[0..experts). */
static double mean_demand(const uint64_t *d, int experts)
{
    double mean = 0;
    for (int e = 0; e < experts; e++)
        mean += (double)d[e] / experts;
    return mean;
}

int balrep_expert_iter_csv(FILE *f, const struct balrep *r)
{
    struct csv w;
    fputs("policy,iteration,ep_group,expert,demand,kept,load_over_mean\n", f);
    csv_begin(&w, f);
    for (int i = 0; i < r->n; i++) {
        const struct balance_result *b = r->cols[i].res;
        for (int it = 0; it < b->iterations; it++)
            for (int g = 0; g < b->groups; g++) {
                size_t at = ((size_t)it * b->groups + g) * b->experts;
                const uint64_t *d = b->iter_demand + at, *k = b->iter_kept + at;
                double mean = mean_demand(d, b->experts);
                for (int e = 0; e < b->experts; e++) {
                    csv_str(&w, r->cols[i].name);
                    csv_int(&w, it);
                    csv_int(&w, g);
                    csv_int(&w, e);
                    csv_u64(&w, d[e]);
                    csv_u64(&w, k[e]);
                    csv_num(&w, mean > 0 ? (double)d[e] / mean : 0.0);
                    csv_end(&w);
                }
            }
    }
    return ferror(f) ? -EIO : 0;
}

int balrep_expert_csv(FILE *f, const struct balrep *r)
{
    struct csv w;
    fputs("policy,ep_group,expert,replicas,demand,kept,dropped,drop_rate,load_over_mean\n", f);
    csv_begin(&w, f);
    for (int i = 0; i < r->n; i++) {
        const struct balance_result *b = r->cols[i].res;
        for (int g = 0; g < b->groups; g++) {
            const uint64_t *d = b->demand + (size_t)g * b->experts;
            const uint64_t *k = b->kept + (size_t)g * b->experts;
            double mean = mean_demand(d, b->experts);
            for (int e = 0; e < b->experts; e++) {
                csv_str(&w, r->cols[i].name);
                csv_int(&w, g);
                csv_int(&w, e);
                csv_int(&w, b->replicas[e]);
                csv_u64(&w, d[e]);
                csv_u64(&w, k[e]);
                csv_u64(&w, d[e] - k[e]);
                csv_num(&w, d[e] ? (double)(d[e] - k[e]) / (double)d[e] : 0.0);
                csv_num(&w, mean > 0 ? (double)d[e] / mean : 0.0);
                csv_end(&w);
            }
        }
    }
    return ferror(f) ? -EIO : 0;
}
