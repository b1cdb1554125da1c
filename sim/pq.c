/* pq.c: indexed binary min-heap; see pq.h. */
#include "pq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool less(const struct pq *q, int a, int b)
{
    double ka = q->key[a], kb = q->key[b];
    return ka < kb || (ka == kb && a < b);
}

static void place(struct pq *q, int i, int id)
{
    q->heap[i] = id;
    q->pos[id] = i;
}

static void sift_up(struct pq *q, int i)
{
    int id = q->heap[i];
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!less(q, id, q->heap[p]))
            break;
        place(q, i, q->heap[p]);
        i = p;
    }
    place(q, i, id);
}

static void sift_down(struct pq *q, int i)
{
    int id = q->heap[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && less(q, q->heap[c + 1], q->heap[c]))
            c++;
        if (!less(q, q->heap[c], id))
            break;
        place(q, i, q->heap[c]);
        i = c;
    }
    place(q, i, id);
}

int pq_init(struct pq *q, int max_id)
{
    memset(q, 0, sizeof(*q));
    return pq_grow(q, max_id);
}

int pq_grow(struct pq *q, int max_id)
{
    if (max_id <= q->max_id)
        return 0;
    int *heap = realloc(q->heap, (size_t)max_id * sizeof(*heap));
    if (!heap)
        return -ENOMEM;
    q->heap = heap;
    int *pos = realloc(q->pos, (size_t)max_id * sizeof(*pos));
    if (!pos)
        return -ENOMEM;
    q->pos = pos;
    double *key = realloc(q->key, (size_t)max_id * sizeof(*key));
    if (!key)
        return -ENOMEM;
    q->key = key;
    for (int i = q->max_id; i < max_id; i++)
        q->pos[i] = -1;
    q->max_id = max_id;
    return 0;
}

void pq_destroy(struct pq *q)
{
    free(q->heap);
    free(q->pos);
    free(q->key);
    memset(q, 0, sizeof(*q));
}

void pq_clear(struct pq *q)
{
    for (int i = 0; i < q->n; i++)
        q->pos[q->heap[i]] = -1;
    q->n = 0;
}

void pq_set(struct pq *q, int id, double key)
{
    int i = q->pos[id];
    if (i < 0) {
        q->key[id] = key;
        place(q, q->n++, id);
        sift_up(q, q->n - 1);
        return;
    }
    double old = q->key[id];
    q->key[id] = key;
    if (key < old)
        sift_up(q, i);
    else if (key > old)
        sift_down(q, i);
}

void pq_remove(struct pq *q, int id)
{
    int i = q->pos[id];
    if (i < 0)
        return;
    q->pos[id] = -1;
    int last = q->heap[--q->n];
    if (i == q->n)
        return;
    place(q, i, last);
    sift_down(q, i);
    sift_up(q, q->pos[last]);
}

int pq_pop(struct pq *q)
{
    int id = pq_top(q);
    if (id >= 0)
        pq_remove(q, id);
    return id;
}
