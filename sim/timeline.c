/* timeline.c: see timeline.h. */
#include "timeline.h"

#include <errno.h>
#include <stdio.h>

#include "chrome.h"

#define PHASE_TID 1

static int names(struct chrome *c, const struct topo *t)
{
    int e = 0;
    char buf[64];
    for (int g = 0; g < t->gpus && !e; g++) {
        snprintf(buf, sizeof(buf), "gpu %d (node %d)", g, g / t->gpus_per_node);
        e = chrome_process_name(c, g, buf);
        if (!e)
            e = chrome_process_sort(c, g, g);
        if (!e)
            e = chrome_thread_name(c, g, PHASE_TID, "phase");
    }
    if (!e && t->leaves > 1)
        e = chrome_process_name(c, t->gpus, "fabric");
    return e;
}

static int flows(struct chrome *c, const struct a2a_result *a, uint64_t *id)
{
    int e = 0;
    for (int i = 0; i < a->nflows && !e; i++) {
        const struct a2a_flow *f = &a->flows[i];
        struct chrome_arg to[] = { { .key = "dst", .num = f->dst },
                                   { .key = "bytes", .num = (double)f->bytes } };
        struct chrome_arg from[] = { { .key = "src", .num = f->src },
                                     { .key = "bytes", .num = (double)f->bytes } };
        e = chrome_async(c, f->src, "send", "send", (*id)++, f->start_s, f->end_s, to, 2);
        if (!e)
            e = chrome_async(c, f->dst, "recv", "recv", (*id)++, f->start_s, f->end_s, from, 2);
    }
    return e;
}

/* A link's counter lives in its GPU's process, or in the fabric process for leaves. */
static int counters(struct chrome *c, const struct topo *t, const struct a2a_result *a)
{
    static const char *const kind[] = { "nvl_tx", "nvl_rx", "nic_tx", "nic_rx" };
    int e = 0;
    for (int l = 0; l < t->nlinks && !e; l++) {
        const struct topo_link *k = &t->links[l];
        char name[64];
        int pid = t->gpus;
        if (k->kind <= LINK_NIC_RX) {
            pid = k->owner;
            snprintf(name, sizeof(name), "%s", kind[k->kind]);
        } else {
            topo_link_name(t, l, name, sizeof(name));
        }
        const struct a2a_series *s = &a->series[l];
        for (int i = 0; i < s->n && !e; i++) {
            struct chrome_arg v = { .key = "GBps", .num = s->s[i].use_Bps / 1e9 };
            e = chrome_counter(c, pid, name, s->s[i].t_s, &v, 1);
        }
    }
    return e;
}

int timeline_write(FILE *f, const struct report *r)
{
    for (int p = 0; p < r->nphases; p++)
        if (!r->phase[p]->series)
            return -EINVAL;
    struct chrome *c = NULL;
    int e = chrome_open(&c, f);
    if (e)
        return e;
    e = names(c, r->topo);
    uint64_t id = 1;
    for (int p = 0; p < r->nphases && !e; p++) {
        const struct a2a_result *a = r->phase[p];
        for (int g = 0; g < r->topo->gpus && !e; g++)
            e = chrome_complete(c, g, PHASE_TID, "phase", r->phase_name[p], a->t0_s,
                                a->t0_s + a->time_s, NULL, 0);
        if (!e)
            e = flows(c, a, &id);
        if (!e)
            e = counters(c, r->topo, a);
    }
    int e2 = chrome_close(c);
    return e ? e : e2;
}
