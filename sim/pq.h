/* pq.h: indexed binary min-heap of integer ids keyed by doubles.
 * Ties on the key go to the smaller id, so pop order is deterministic.
 * push/update/remove/pop O(log n); top and contains O(1). */
#ifndef MOESIM_PQ_H
#define MOESIM_PQ_H

#include <stdbool.h>

struct pq {
    int n;          /* ids in the heap */
    int max_id;     /* ids are 0 .. max_id-1 */
    int *heap;      /* heap[i] = id */
    int *pos;       /* pos[id] = index in heap, -1 when absent */
    double *key;    /* key[id] */
};

int pq_init(struct pq *q, int max_id);          /* 0 or -ENOMEM */
int pq_grow(struct pq *q, int max_id);          /* keeps contents; 0 or -ENOMEM */
void pq_destroy(struct pq *q);                  /* zeroed struct is a no-op */
void pq_clear(struct pq *q);                    /* O(n) */
void pq_set(struct pq *q, int id, double key);  /* insert, or change the key of, id */
void pq_remove(struct pq *q, int id);           /* absent id: no-op */
int pq_pop(struct pq *q);                       /* smallest; -1 when empty */

static inline bool pq_empty(const struct pq *q) { return q->n == 0; }
static inline int pq_top(const struct pq *q) { return q->n ? q->heap[0] : -1; }
static inline double pq_top_key(const struct pq *q) { return q->key[q->heap[0]]; }
static inline bool pq_contains(const struct pq *q, int id) { return q->pos[id] >= 0; }

#endif
