/* steprep.c: summary, CSV and trace of a training step; see steprep.h. */
#include "steprep.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "balance.h"
#include "chrome.h"
#include "csv.h"
#include "model.h"
#include "report.h"
#include "serverep.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static double wall(const struct steprep *r)
{
    return r->wall_s < 0 ? 0 : r->wall_s;
}

void steprep_summary(FILE *f, const struct steprep *r)
{
    const struct config *c = r->cfg;
    const struct step_result *s = r->res;
    if (config_serving(c)) {
        serverep_summary(f, r);
        return;
    }
    fprintf(f, "moesim: training step: %s on %s (%d GPUs: pp %d x dp %d, ep %d",
            c->model.name[0] ? c->model.name : "model",
            c->cluster.name[0] ? c->cluster.name : "cluster", s->gpus, s->pp, s->dp, s->ep);
    if (s->vpp > 1)
        fprintf(f, ", vpp %d", s->vpp);
    fprintf(f, "), %s, %d micro-batches x %lld tokens per DP rank, overlap %s, seed %llu\n",
            config_sched_name(c->schedule.kind), s->microbatches,
            (long long)c->schedule.micro_batch_tokens, c->schedule.overlap ? "on" : "off",
            (unsigned long long)r->seed);
    fprintf(f, "  links            ");
    report_link_rates(f, &c->cluster);
    fprintf(f, " (line rate x efficiency = achieved, per GPU per direction)\n");
    fprintf(f, "  step time        %10.4f s    tokens/s %12.0f    MFU %5.1f %%\n", s->step_s,
            s->tokens_per_s, 100 * s->mfu);
    fprintf(f, "  per GPU (mean)   compute %.4f s, comm %.4f s, exposed comm %.4f s, "
            "bubble %.4f s (%.1f %%), waiting for stragglers %.4f s\n",
            s->compute_s, s->comm_s, s->exposed_comm_s, s->bubble_s, 100 * s->bubble_frac,
            s->step_s - s->compute_s - s->exposed_comm_s - s->bubble_s);
    double mem = 0, cap = c->cluster.gpu_mem_bytes;
    for (int g = 0; g < s->gpus; g++)
        mem = fmax(mem, s->gpu[g].peak_act_bytes + s->gpu[g].param_bytes);
    fprintf(f, "  memory (max GPU) activations %.2f GiB, parameters %.2f GiB (BF16 weights); "
            "together %.2f GiB of %.4g GiB%s\n", s->peak_act_bytes / GIB, s->param_bytes / GIB,
            mem / GIB, cap / GIB, mem > cap ? ": DOES NOT FIT (before gradients and optimizer "
            "states)" : " (gradients and optimizer states not counted)");
    if (c->balance.capacity_factor > 0)
        fprintf(f, "  capacity factor %.3g: %.2f %% of the token-expert assignments dropped "
                "(not computed, not sent)\n", c->balance.capacity_factor, 100 * s->drop_rate);
    report_bias_line(f, c, "  ");
    fprintf(f, "\n  %5s %10s %10s %10s %10s %7s %12s %10s\n", "stage", "compute_s", "comm_s",
            "exposed_s", "bubble_s", "bubble", "peak_act_GiB", "param_GiB");
    for (int k = 0; k < s->pp; k++) {
        const struct step_stage *st = &s->stage[k];
        fprintf(f, "  %5d %10.4f %10.4f %10.4f %10.4f %6.1f%% %12.2f %10.2f\n", k, st->compute_s,
                st->comm_s, st->exposed_comm_s, st->bubble_s, 100 * st->bubble_frac,
                st->peak_act_bytes / GIB, st->param_bytes / GIB);
    }
    fprintf(f, "\n  longest DP reduce %.4f s; engine: %lld sub-ops, %lld events; "
            "all-to-alls and sends simulated %d, reused %d; %.2f s wall\n", s->dp_reduce_s,
            (long long)s->subops, (long long)s->events, s->a2a_simulated, s->a2a_reused,
            wall(r));
    if (s->fabric_shared || s->fabric_alone)
        fprintf(f, "  oversubscribed leaves: %d collectives met another stage's (or EP group's) "
                "on a leaf link and ran in one network, %d crossed one alone (%d standalone "
                "runs)\n", s->fabric_shared, s->fabric_alone, s->fabric_simulated);
}

static const char csv_cols[] =
    "schedule,pp,dp,ep,vpp,microbatches,micro_batch_tokens,gpus,seed,step_s,bubble_frac,mfu,"
    "exposed_comm_s,compute_s,comm_s,peak_activation_GiB,param_GiB,tokens_per_s,straggler_s,"
    "dp_reduce_s,overlap,drop_rate,wall_s";

/* Columns added after the identifying ones (csv.h): bias_rounds (balance.h). */
static const char csv_then[] = "bias_rounds";

void steprep_csv_header(FILE *f)
{
    csv_header_then(f, csv_cols, csv_then);
}

int steprep_csv(FILE *f, const struct steprep *r)
{
    const struct config *c = r->cfg;
    const struct step_result *s = r->res;
    struct csv w;
    if (config_serving(c))
        return serverep_csv(f, r);
    csv_header_then(f, csv_cols, csv_then);
    csv_begin(&w, f);
    csv_str(&w, config_sched_name(c->schedule.kind));
    const int ints[] = { s->pp, s->dp, s->ep, s->vpp, s->microbatches };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        csv_int(&w, ints[i]);
    csv_int(&w, c->schedule.micro_batch_tokens);
    csv_int(&w, s->gpus);
    csv_u64(&w, r->seed);
    const double nums[] = { s->step_s, s->bubble_frac, s->mfu, s->exposed_comm_s, s->compute_s,
                            s->comm_s, s->peak_act_bytes / GIB, s->param_bytes / GIB,
                            s->tokens_per_s,
                            s->step_s - s->compute_s - s->exposed_comm_s - s->bubble_s,
                            s->dp_reduce_s };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        csv_num(&w, nums[i]);
    csv_str(&w, c->schedule.overlap ? "on" : "off");
    csv_num(&w, s->drop_rate);
    csv_num(&w, wall(r));
    csv_ident(&w, csv_cols, c);
    csv_int(&w, model_cfg_moe_layers(&c->model) > 0 ? balance_bias_rounds(c) : 0);
    return csv_end(&w);
}

static const char gpu_cols[] = "gpu,stage,ep_group,compute_s,straggler_s,comm_s,"
                               "exposed_comm_s,bubble_s,peak_activation_GiB,param_GiB";

int steprep_gpu_csv(FILE *f, const struct steprep *r)
{
    const struct step_result *s = r->res;
    struct csv w;
    if (config_serving(r->cfg))
        return serverep_gpu_csv(f, r);
    csv_header(f, gpu_cols);
    csv_begin(&w, f);
    for (int g = 0; g < s->gpus; g++) {
        const struct step_gpu *x = &s->gpu[g];
        csv_int(&w, g);
        csv_int(&w, g / s->dp);
        csv_int(&w, (g % s->dp) / s->ep);
        const double nums[] = { x->compute_s, x->straggler_s, x->comm_s, x->exposed_comm_s,
                                x->bubble_s, x->peak_act_bytes / GIB, x->param_bytes / GIB };
        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
            csv_num(&w, nums[i]);
        csv_ident(&w, gpu_cols, r->cfg);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}

static const char layer_cols[] = "layer,moe,drop_rate,expert_load_max_over_mean,"
                                 "gpu_load_max_over_mean,dispatch_s,combine_s,experts_fwd_s";

int steprep_layer_csv(FILE *f, const struct steprep *r)
{
    const struct step_result *s = r->res;
    struct csv w;
    csv_header(f, layer_cols);
    csv_begin(&w, f);
    for (int l = 0; l < s->layers; l++) {
        const struct step_layer *x = &s->layer[l];
        csv_int(&w, l);
        csv_int(&w, x->moe);
        const double nums[] = { x->drop_rate, x->expert_load_max_over_mean,
                                x->gpu_load_max_over_mean, x->dispatch_s, x->combine_s,
                                x->experts_fwd_s };
        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
            csv_num(&w, nums[i]);
        csv_ident(&w, layer_cols, r->cfg);
        csv_end(&w);
    }
    return ferror(f) ? -EIO : 0;
}

int steprep_routing_trace(FILE *f, const struct steprep *r)
{
    if (!r->res->routing.tokens)
        return -EINVAL;
    return rtrace_write(f, &r->res->routing);
}

static const char *const kind_names[] = { "F", "B", "W" };
static const char *const stream_names[] = { "compute", "comm", "p2p" };

static int trace_tracks(struct chrome *ch, const struct step_result *s)
{
    int rc = 0;
    int groups = s->dp / s->ep;
    for (int l = 0; l < s->lanes && !rc; l++) {
        char name[96];
        int first = (l / groups) * s->dp + (l % groups) * s->ep;
        snprintf(name, sizeof(name), "stage %d, EP group %d (GPUs %d-%d)", l / groups,
                 l % groups, first, first + s->ep - 1);
        rc = chrome_process_name(ch, l, name);
        if (!rc)
            rc = chrome_process_sort(ch, l, l);
        for (int t = 0; t < 3 && !rc; t++) {
            rc = chrome_thread_name(ch, l, t, stream_names[t]);
            if (!rc)
                rc = chrome_thread_sort(ch, l, t, t);
        }
    }
    return rc;
}

int steprep_trace(FILE *f, const struct steprep *r)
{
    const struct step_result *s = r->res;
    if (!s->slices && s->subops)
        return -EINVAL;
    struct chrome *ch;
    int rc = chrome_open(&ch, f);
    if (rc)
        return rc;
    rc = trace_tracks(ch, s);
    for (int64_t i = 0; i < s->nslices && !rc; i++) {
        const struct step_slice *x = &s->slices[i];
        char name[48];
        if (x->what == STEP_DP_REDUCE)
            snprintf(name, sizeof(name), "%s", step_what_name(x->what));
        else
            snprintf(name, sizeof(name), "%s %s", kind_names[x->kind % 3],
                     step_what_name(x->what));
        struct chrome_arg args[3] = {
            { "mb", x->mb, NULL }, { "piece", x->piece, NULL }, { "layer", x->layer, NULL },
        };
        rc = chrome_complete(ch, x->lane, x->stream, kind_names[x->kind % 3], name, x->t0_s,
                             x->t1_s, args, 3);
    }
    int rc2 = chrome_close(ch);
    return rc ? rc : rc2;
}
