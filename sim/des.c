/* des.c: 4-ary min-heap of (t_s, seq) keys, with each event's heap position kept in its
 * slot so cancel removes it in O(log n). */
#include "des.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define DES_ARY 4              /* children per heap node: half the depth of a binary heap,
                                  the 4 sibling keys in two cache lines; sift_down's
                                  unrolled path assumes 4 */
#define DES_CAP0 64u           /* first allocation, in slots */
#define DES_CAP_MAX UINT32_MAX /* slot indexes are 32-bit; UINT32_MAX itself = none */
#define DES_NONE UINT32_MAX

/* Heap entry: the ordering key and the slot that holds the event. */
struct des_key {
    double t_s;
    uint64_t seq;              /* insertion order; unique, so keys never compare equal */
    uint32_t slot;
};

/* A pending event (fn != NULL) or a free slot (fn == NULL). */
struct des_slot {
    des_fn fn;
    void *arg;
    uint32_t gen;              /* upper half of the id; bumped on free, never 0 */
    uint32_t pos;              /* pending: index in heap[]; free: next free slot */
};

struct des {
    struct des_key *heap;      /* heap[0 .. n-1]; capacity cap */
    struct des_slot *slots;    /* slots[0 .. cap-1]; exactly n of them pending */
    size_t n;
    uint32_t cap;
    uint32_t free_head;        /* DES_NONE iff n == cap */
    uint64_t next_seq;
    double now_s;
    bool running;
    bool stop;
};

int des_create(struct des **out)
{
    if (!out)
        return -EINVAL;
    struct des *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->free_head = DES_NONE;
    *out = d;
    return 0;
}

void des_free(struct des *d)
{
    if (!d)
        return;
    free(d->heap);
    free(d->slots);
    free(d);
}

/* Strict order on keys: time, then insertion order. Bitwise & and | so the compiler
 * emits setcc/cmov: which child is smallest is a coin flip that branches mispredict
 * (with bottom-up sift_down, bench_des gained a few percent; the gain is small because
 * each level waits on the loads of the level above). */
static inline bool key_less(const struct des_key *a, const struct des_key *b)
{
    return (a->t_s < b->t_s) | ((a->t_s == b->t_s) & (a->seq < b->seq));
}

static void heap_place(struct des *d, size_t i, struct des_key k)
{
    d->heap[i] = k;
    d->slots[k.slot].pos = (uint32_t)i;
}

/* Put k at hole i or above it. O(log n). */
static void sift_up(struct des *d, size_t i, struct des_key k)
{
    while (i > 0) {
        size_t p = (i - 1) / DES_ARY;
        if (!key_less(&k, &d->heap[p]))
            break;
        heap_place(d, i, d->heap[p]);
        i = p;
    }
    heap_place(d, i, k);
}

/* Put k at hole i or below it, within heap[0 .. n-1], where k is no less than the
 * parent of i. Bottom-up (Wegener 1993): walk the hole down along the smallest children
 * to a leaf, then sift k up from there; k was the last leaf, so it usually belongs near
 * the bottom, and this saves the comparison with k at each level. O(DES_ARY log n). */
static void sift_down(struct des *d, size_t i, struct des_key k)
{
    size_t n = d->n;
    for (;;) {
        size_t c = DES_ARY * i + 1;
        if (c >= n)
            break;
        size_t best = c;
        if (c + DES_ARY <= n) {
            size_t b01 = c + key_less(&d->heap[c + 1], &d->heap[c]);
            size_t b23 = c + 2 + key_less(&d->heap[c + 3], &d->heap[c + 2]);
            best = key_less(&d->heap[b23], &d->heap[b01]) ? b23 : b01;
        } else {
            for (size_t j = c + 1; j < n; j++)
                if (key_less(&d->heap[j], &d->heap[best]))
                    best = j;
        }
        heap_place(d, i, d->heap[best]);
        i = best;
    }
    sift_up(d, i, k);
}

/* Take heap[i] out of the heap; its slot is left for the caller to free. */
static void heap_remove(struct des *d, size_t i)
{
    d->n--;
    if (i == d->n)
        return;
    struct des_key last = d->heap[d->n];
    if (i > 0 && key_less(&last, &d->heap[(i - 1) / DES_ARY]))
        sift_up(d, i, last);
    else
        sift_down(d, i, last);
}

/* Double the capacity of both arrays; new slots go on the free list. */
static int grow(struct des *d)
{
    uint32_t old = d->cap;
    if (old == DES_CAP_MAX)
        return -ENOMEM;
    uint32_t cap = old == 0 ? DES_CAP0 : (old > DES_CAP_MAX / 2 ? DES_CAP_MAX : old * 2);
    struct des_key *heap = realloc(d->heap, (size_t)cap * sizeof(*heap));
    if (!heap)
        return -ENOMEM;
    d->heap = heap;            /* a larger heap with the old cap is harmless */
    struct des_slot *slots = realloc(d->slots, (size_t)cap * sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    d->slots = slots;
    /* Chain new slots low index first, so slot use is deterministic. */
    for (uint32_t s = cap; s-- > old;) {
        slots[s] = (struct des_slot){ .fn = NULL, .arg = NULL, .gen = 1, .pos = d->free_head };
        d->free_head = s;
    }
    d->cap = cap;
    return 0;
}

static void slot_release(struct des *d, uint32_t s)
{
    struct des_slot *sl = &d->slots[s];
    sl->fn = NULL;
    sl->arg = NULL;
    sl->gen = sl->gen == UINT32_MAX ? 1 : sl->gen + 1;
    sl->pos = d->free_head;
    d->free_head = s;
}

int des_at(struct des *d, double t_s, des_fn fn, void *arg, uint64_t *id_out)
{
    if (!d || !fn || !isfinite(t_s) || t_s < d->now_s)
        return -EINVAL;
    if (d->free_head == DES_NONE) {
        int rc = grow(d);
        if (rc < 0)
            return rc;
    }
    uint32_t s = d->free_head;
    struct des_slot *sl = &d->slots[s];
    d->free_head = sl->pos;
    sl->fn = fn;
    sl->arg = arg;
    struct des_key k = { .t_s = t_s, .seq = d->next_seq++, .slot = s };
    d->n++;
    sift_up(d, d->n - 1, k);
    if (id_out)
        *id_out = (uint64_t)sl->gen << 32 | s;
    return 0;
}

bool des_cancel(struct des *d, uint64_t id)
{
    if (!d)
        return false;
    uint32_t s = (uint32_t)id;
    uint32_t gen = (uint32_t)(id >> 32);
    if (s >= d->cap)
        return false;
    struct des_slot *sl = &d->slots[s];
    if (!sl->fn || sl->gen != gen)
        return false;
    heap_remove(d, sl->pos);
    slot_release(d, s);
    return true;
}

double des_now(const struct des *d)
{
    return d->now_s;
}

size_t des_pending(const struct des *d)
{
    return d->n;
}

double des_next_s(const struct des *d)
{
    return d->n > 0 ? d->heap[0].t_s : INFINITY;
}

int64_t des_run(struct des *d, double t_end_s)
{
    if (!d || isnan(t_end_s))
        return -EINVAL;
    if (d->running)
        return -EBUSY;
    d->running = true;
    d->stop = false;
    int64_t ran = 0;
    while (d->n > 0 && d->heap[0].t_s <= t_end_s) {
        struct des_key k = d->heap[0];
        struct des_slot *sl = &d->slots[k.slot];
        des_fn fn = sl->fn;
        void *arg = sl->arg;
        heap_remove(d, 0);
        slot_release(d, k.slot);   /* before fn: the event's id is dead while it runs */
        d->now_s = k.t_s;
        fn(d, arg);
        ran++;
        if (d->stop)
            break;
    }
    if (!d->stop && isfinite(t_end_s) && t_end_s > d->now_s)
        d->now_s = t_end_s;
    d->running = false;
    d->stop = false;
    return ran;
}

void des_stop(struct des *d)
{
    if (d && d->running)
        d->stop = true;
}
