/* msgband.c: the per-peer all-to-all bytes of a configured layer; see msgband.h. */
#include "msgband.h"

#include <errno.h>
#include <stdlib.h>

#include "gating.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int mband_layer(const struct config *c, int elem_bytes, uint64_t seed, struct mband_span *s)
{
    const int E = c->model.experts, ep = c->parallel.ep;
    const double rows_B = (double)c->routing.tokens_per_gpu * c->model.top_k *
                          c->model.hidden * elem_bytes;
    *s = (struct mband_span){ .ep = ep };
    if (E < 1 || elem_bytes < 1)
        return -EINVAL;
    if (ep < 2)
        return 0;
    s->uniform_B = s->lo_B = s->hi_B = rows_B / ep;
    if (c->routing.distribution != DIST_ZIPF && c->routing.distribution != DIST_AFFINITY)
        return 0;
    double *p = malloc((size_t)E * sizeof(double));
    if (!p)
        return -ENOMEM;
    int rc = gating_popularity(p, c, 0, 0, seed);
    if (!rc) {
        qsort(p, (size_t)E, sizeof(double), cmp_double);
        const int m_lo = E / ep, m_hi = (E + ep - 1) / ep;
        double lo = 0, hi = 0;
        for (int i = 0; i < m_lo; i++)
            lo += p[i];
        for (int i = 0; i < m_hi; i++)
            hi += p[E - 1 - i];
        s->lo_B = rows_B * lo;
        s->hi_B = rows_B * hi;
    }
    free(p);
    return rc;
}
