/* layout.c: EP rank layouts (see layout.h). */
#include "layout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"

int lay_create(struct lay *l, int ranks, int experts, const int *slots_per_rank,
               const int *slot_expert)
{
    memset(l, 0, sizeof(*l));
    if (ranks < 1 || experts < 1 || !slots_per_rank)
        return -EINVAL;
    long n = 0;
    for (int r = 0; r < ranks; r++) {
        if (slots_per_rank[r] < 0 || slots_per_rank[r] > (1 << 24))
            return -EINVAL;
        n += slots_per_rank[r];
    }
    if (n < experts || n > (1 << 24) || !slot_expert)
        return -EINVAL;
    l->ranks = ranks;
    l->experts = experts;
    l->nslots = (int)n;
    l->rank0 = calloc((size_t)ranks + 1, sizeof(int));
    l->slot_expert = calloc((size_t)n, sizeof(int));
    l->slot_rank = calloc((size_t)n, sizeof(int));
    l->rep0 = calloc((size_t)experts + 1, sizeof(int));
    l->rep_slot = calloc((size_t)n, sizeof(int));
    if (!l->rank0 || !l->slot_expert || !l->slot_rank || !l->rep0 || !l->rep_slot) {
        lay_free(l);
        return -ENOMEM;
    }
    for (int r = 0; r < ranks; r++) {
        l->rank0[r + 1] = l->rank0[r] + slots_per_rank[r];
        if (slots_per_rank[r] > l->max_slots)
            l->max_slots = slots_per_rank[r];
        for (int s = l->rank0[r]; s < l->rank0[r + 1]; s++)
            l->slot_rank[s] = r;
    }
    for (int s = 0; s < l->nslots; s++) {
        int e = slot_expert[s];
        if (e < 0 || e >= experts) {
            lay_free(l);
            return -EINVAL;
        }
        l->slot_expert[s] = e;
        l->rep0[e + 1]++;
    }
    for (int e = 0; e < experts; e++) {
        if (l->rep0[e + 1] == 0) {
            lay_free(l);
            return -EINVAL;
        }
        l->rep0[e + 1] += l->rep0[e];
    }
    int *fill = calloc((size_t)experts, sizeof(int));
    if (!fill) {
        lay_free(l);
        return -ENOMEM;
    }
    for (int s = 0; s < l->nslots; s++) {
        int e = l->slot_expert[s];
        l->rep_slot[l->rep0[e] + fill[e]++] = s;
    }
    free(fill);
    return 0;
}

int lay_from_placement(struct lay *l, const struct placement *p)
{
    memset(l, 0, sizeof(*l));
    if (!p || p->ep < 1 || !p->slot_expert)
        return -EINVAL;
    int *per = malloc((size_t)p->ep * sizeof(int));
    if (!per)
        return -ENOMEM;
    for (int r = 0; r < p->ep; r++)
        per[r] = p->slots_per_gpu;
    int rc = lay_create(l, p->ep, p->experts, per, p->slot_expert);
    free(per);
    return rc;
}

int lay_contiguous(struct lay *l, int ranks, int experts)
{
    memset(l, 0, sizeof(*l));
    if (ranks < 1 || experts < 1 || experts % ranks)
        return -EINVAL;
    int *per = malloc((size_t)ranks * sizeof(int));
    int *ex = malloc((size_t)experts * sizeof(int));
    int rc = -ENOMEM;
    if (per && ex) {
        for (int r = 0; r < ranks; r++)
            per[r] = experts / ranks;
        for (int e = 0; e < experts; e++)
            ex[e] = e;
        rc = lay_create(l, ranks, experts, per, ex);
    }
    free(per);
    free(ex);
    return rc;
}

void lay_free(struct lay *l)
{
    if (!l)
        return;
    free(l->rank0);
    free(l->slot_expert);
    free(l->slot_rank);
    free(l->rep0);
    free(l->rep_slot);
    memset(l, 0, sizeof(*l));
}

int lay_pick(const struct lay *l, int src, int expert, int j)
{
    int r = l->rep0[expert + 1] - l->rep0[expert];
    return l->rep_slot[l->rep0[expert] + (int)(((long)src + j) % r)];
}
