/* exprep.c: per-expert load per MoE layer; see exprep.h. */
#include "exprep.h"

#include <errno.h>
#include <stdlib.h>

#include "csv.h"

static const char exp_cols[] = "layer,moe_layer,expert,demand,share,load_over_mean";

/* The rows of MoE layer m (model layer `layer`) of t, all iterations' demand added. */
static int layer_rows(struct csv *w, const struct rtrace *t, int m, int layer,
                      const struct config *c, uint64_t *sum)
{
    for (int e = 0; e < t->experts; e++)
        sum[e] = 0;
    uint64_t total = 0;
    for (int it = 0; it < t->iterations; it++)
        for (int g = 0; g < t->gpus; g++) {
            const uint64_t *v = rtrace_at(t, m, it, g);
            for (int e = 0; e < t->experts; e++)
                sum[e] += v[e];
        }
    for (int e = 0; e < t->experts; e++)
        total += sum[e];
    double mean = (double)total / t->experts;
    for (int e = 0; e < t->experts; e++) {
        csv_int(w, layer);
        csv_int(w, m);
        csv_int(w, e);
        csv_u64(w, sum[e]);
        csv_num(w, total ? (double)sum[e] / (double)total : 0.0);
        csv_num(w, mean > 0 ? (double)sum[e] / mean : 0.0);
        csv_ident(w, exp_cols, c);
        csv_end(w);
    }
    return 0;
}

/* Every MoE layer of t; model layer of MoE layer m: layer_of[m] (NULL: m itself). */
static int write_all(FILE *f, const struct rtrace *t, const int *layer_of,
                     const struct config *c)
{
    uint64_t *sum = malloc((size_t)t->experts * sizeof(uint64_t));
    if (!sum)
        return -ENOMEM;
    struct csv w;
    csv_header(f, exp_cols);
    csv_begin(&w, f);
    for (int m = 0; m < t->layers; m++)
        layer_rows(&w, t, m, layer_of ? layer_of[m] : m, c, sum);
    free(sum);
    return ferror(f) ? -EIO : 0;
}

int exprep_layer_csv(FILE *f, const struct report *r)
{
    const struct routing *rt = r->routing;
    if (!rt)
        return -EINVAL;
    const struct rtrace view = { 1, 1, rt->gpus, rt->experts, rt->src_demand };
    return write_all(f, &view, NULL, r->cfg);
}

int exprep_step_csv(FILE *f, const struct steprep *r)
{
    const struct step_result *s = r->res;
    if (!s->routing.tokens)
        return -EINVAL;
    int *layer_of = malloc((size_t)s->routing.layers * sizeof(int));
    if (!layer_of)
        return -ENOMEM;
    int m = 0;
    for (int l = 0; l < s->layers && m < s->routing.layers; l++)
        if (s->layer[l].moe)
            layer_of[m++] = l;
    for (; m < s->routing.layers; m++)
        layer_of[m] = -1;
    int rc = write_all(f, &s->routing, layer_of, r->cfg);
    free(layer_of);
    return rc;
}
