/* traffic.c: building the byte matrices of one collective. */
#include "traffic.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "routing.h"

int traffic_create(struct traffic *m, int gpus)
{
    memset(m, 0, sizeof(*m));
    if (gpus < 1)
        return -EINVAL;
    if ((size_t)gpus > SIZE_MAX / sizeof(*m->bytes) / (size_t)gpus)
        return -ENOMEM;
    m->bytes = calloc((size_t)gpus * (size_t)gpus, sizeof(*m->bytes));
    if (!m->bytes)
        return -ENOMEM;
    m->gpus = gpus;
    return 0;
}

_Static_assert(sizeof(((struct traffic_err *)0)->msg) == MATRIX_ERR_MAX,
               "a matrix message fits a traffic one");

void traffic_from_matrix(struct traffic *t, struct matrix *m)
{
    t->gpus = m->gpus;
    t->bytes = m->bytes;
    m->gpus = 0;
    m->bytes = NULL;
}

struct matrix traffic_as_matrix(const struct traffic *t)
{
    return (struct matrix){ t->gpus, t->bytes };
}

void traffic_free(struct traffic *m)
{
    free(m->bytes);
    m->bytes = NULL;
    m->gpus = 0;
}

int traffic_alltoall(struct traffic *m, int gpus, uint64_t bytes_per_pair)
{
    int rc = traffic_create(m, gpus);

    if (rc)
        return rc;
    for (size_t i = 0; i < (size_t)gpus * (size_t)gpus; i++)
        m->bytes[i] = bytes_per_pair;
    return 0;
}

/* round(x) as uint64_t, halves away from zero; x is >= 0 or NaN here.
 * (double)count is exact below 2^53; above, the product carries double rounding. */
static int round_bytes(double x, uint64_t *out)
{
    double v = round(x);

    if (!(v >= 0 && v < 0x1p64))
        return -ERANGE;
    *out = (uint64_t)v;
    return 0;
}

int traffic_transpose_scaled(struct traffic *out, const struct traffic *a, double scale)
{
    int n = a->gpus, rc;

    memset(out, 0, sizeof(*out));
    if (!(isfinite(scale) && scale >= 0))
        return -EINVAL;
    rc = traffic_create(out, n);
    if (rc)
        return rc;
    for (int s = 0; s < n; s++)
        for (int d = 0; d < n; d++) {
            rc = round_bytes((double)a->bytes[(size_t)s * n + d] * scale,
                             &out->bytes[(size_t)d * n + s]);
            if (rc)
                goto out_free_out;
        }
    return 0;

out_free_out:
    traffic_free(out);
    return rc;
}

static bool bytes_per_elem_ok(double bpe)
{
    return isfinite(bpe) && bpe >= 0;
}

/* Tokens per leg of the two-level dispatch (traffic.h), legs[a * n + b] for the leg from
 * GPU a to GPU b: the network leg s -> relay (one per remote node a token reaches), the
 * relay's NVLink forward to each other target GPU, and NVLink to targets on s's own node.
 * Sums of pair_tokens and src_node_tokens entries: below 2^64 as their totals are. */
static void hier_legs(uint64_t *legs, const struct routing *r)
{
    int n = r->gpus, gpn = r->gpus_per_node, nodes = r->nodes;
    for (int s = 0; s < n; s++) {
        int ns = s / gpn, ls = s % gpn;
        for (int d = 0; d < n; d++) {
            uint64_t t = r->pair_tokens[(size_t)s * n + d];
            int relay = d / gpn * gpn + ls;
            if (d / gpn == ns)
                legs[(size_t)s * n + d] += t;             /* own node, or kept (s == d) */
            else if (d != relay)
                legs[(size_t)relay * n + d] += t;         /* forwarded by the relay */
        }
        for (int nd = 0; nd < nodes; nd++)
            if (nd != ns)
                legs[(size_t)s * n + nd * gpn + ls] += r->src_node_tokens[(size_t)s * nodes + nd];
    }
}

/* The relay of every remote node a token reaches is in its EP group: groups of whole
 * nodes (gpn | ep) or inside one node (ep | gpn). */
static bool hier_ok(const struct routing *r, const struct config *c)
{
    int gpn = c->cluster.gpus_per_node;
    return r->src_node_tokens && r->gpus_per_node == gpn && r->nodes * gpn == r->gpus &&
           r->ep >= 1 && (r->ep % gpn == 0 || gpn % r->ep == 0);
}

int traffic_moe(struct traffic *dispatch, struct traffic *combine,
                const struct routing *r, const struct config *c)
{
    long long gpus = (long long)c->cluster.nodes * c->cluster.gpus_per_node;
    double hidden = c->model.hidden;
    double dbpe = c->model.dispatch_bytes_per_elem, cbpe = c->model.combine_bytes_per_elem;
    bool hier = config_a2a_route(c) == ROUTE_HIER;   /* low_latency: direct pairs */
    int n = r->gpus, rc;
    uint64_t *legs = NULL;

    memset(dispatch, 0, sizeof(*dispatch));
    memset(combine, 0, sizeof(*combine));
    if (n < 1 || gpus != n || !r->pair_tokens || c->model.hidden < 1 ||
        !bytes_per_elem_ok(dbpe) || !bytes_per_elem_ok(cbpe) || (hier && !hier_ok(r, c)))
        return -EINVAL;
    if (hier) {
        legs = calloc((size_t)n * (size_t)n, sizeof(*legs));
        if (!legs)
            return -ENOMEM;
        hier_legs(legs, r);
    }
    const uint64_t *tokens = hier ? legs : r->pair_tokens;
    rc = traffic_create(dispatch, n);
    if (rc)
        goto out_free_legs;
    rc = traffic_create(combine, n);
    if (rc)
        goto out_free_dispatch;
    for (int s = 0; s < n; s++)
        for (int d = 0; d < n; d++) {
            double elems = (double)tokens[(size_t)s * n + d] * hidden;
            rc = round_bytes(elems * dbpe, &dispatch->bytes[(size_t)s * n + d]);
            if (!rc)
                rc = round_bytes(elems * cbpe, &combine->bytes[(size_t)d * n + s]);
            if (rc)
                goto out_free_combine;
        }
    free(legs);
    return 0;

out_free_combine:
    traffic_free(combine);
out_free_dispatch:
    traffic_free(dispatch);
out_free_legs:
    free(legs);
    return rc;
}
