/* coll.h: the collectives of a training step, timed through the network model (a2a.h,
 * net.h): memoised all-to-alls, concurrent point-to-point sends, ring and tree
 * all-reduce.
 *
 * Memo: a collective's result depends only on its topology and byte matrix, so
 * coll_run keeps one result per distinct (topology, matrix): the matrix is hashed
 * (FNV-1a over its 64-bit words) and, on a hash match, compared in full, so a collision
 * can never return a wrong result. Cost of a hit: O(G^2) to hash and compare; a miss is
 * one a2a_run. Memory: the matrix copy and G finish times per entry.
 */
#ifndef MOESIM_COLL_H
#define MOESIM_COLL_H

#include "config.h"
#include "topo.h"
#include "traffic.h"

struct coll_memo;                                      /* opaque */

int coll_memo_create(struct coll_memo **out);          /* 0 or -ENOMEM */
void coll_memo_free(struct coll_memo *m);              /* NULL is a no-op */

/* Per-GPU finish time of the collective m on t started at 0 (the later of the GPU's
 * last send and last receive; 0 for a GPU without traffic). *finish_s (m->gpus
 * entries) is owned by the memo and valid until coll_memo_free. t is borrowed and must
 * outlive the memo (entries are keyed by its address). 0, -EINVAL, -ENOMEM. */
int coll_run(struct coll_memo *memo, const struct topo *t, const struct traffic *m,
             const double **finish_s);

/* Network runs done and lookups answered from the memo. */
void coll_counts(const struct coll_memo *memo, int *simulated, int *reused);

/* n concurrent flows of `bytes` each, src[i] -> dst[i] (GPUs of t, src[i] != dst[i]), each
 * starting after its path latency: end_s[i] is when flow i's last byte arrives.
 * 0, -EINVAL, -ENOMEM. */
int coll_pairs(const struct topo *t, const int *src, const int *dst, int n, double bytes,
               double *end_s);

/* All-reduce of `bytes` on every GPU of t, in rings of t->gpus / stride GPUs (GPU i
 * sends to i + stride mod gpus; all rings at once). Ring: 2 (n - 1) steps of bytes / n
 * (reduce-scatter, then all-gather), one step timed through the network. Tree (NCCL's
 * pipelined double binary tree, bandwidth term): 2 x (one neighbour transfer of the
 * whole buffer) + 2 (ceil(log2 n) - 1) path latencies. n < 2 or bytes <= 0: 0 s.
 * 0, -EINVAL (stride does not divide the GPUs), -ENOMEM. */
int coll_allreduce(struct coll_memo *memo, const struct topo *t, int stride, double bytes,
                   enum reduce_kind kind, double *time_s);

/* coll_allreduce as a plan: the matrix of one step (*m, the caller's: traffic_free), sent
 * *repeat times one after the other (ring: 2 (n - 1); tree: 2), then *tail_s of latency
 * (tree: 2 (ceil(log2 n) - 1) path latencies; ring: 0): time = repeat x step + tail.
 * n < 2 or bytes <= 0: a zero matrix, repeat 0, tail 0. 0, -EINVAL (*m zeroed), -ENOMEM. */
int coll_allreduce_plan(const struct topo *t, int stride, double bytes, enum reduce_kind kind,
                        struct traffic *m, int *repeat, double *tail_s);

/* One step of a ring inside every group of n consecutive GPUs of t, all groups at once:
 * GPU i sends chunk_bytes to the next GPU of its group (the group's last to its first).
 * The all-gather and the reduce-scatter of n chunks are n - 1 such steps each (NCCL's
 * ring algorithms). *m is the caller's (traffic_free); n < 2 or chunk_bytes 0: all zero.
 * 0, -EINVAL (n < 1 or n does not divide the GPUs; *m zeroed), -ENOMEM. */
int coll_group_ring_plan(const struct topo *t, int n, uint64_t chunk_bytes, struct traffic *m);

#endif
