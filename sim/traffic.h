/* traffic.h: byte matrices of one collective: bytes[src * gpus + dst], global GPU ids.
 * The diagonal holds bytes a GPU keeps (local, never on a link).
 * The functions that build a matrix create it (as traffic_create) into an
 * uninitialised struct; the caller owns it and frees it with traffic_free. On
 * error the output is left zeroed. */
#ifndef MOESIM_TRAFFIC_H
#define MOESIM_TRAFFIC_H

#include <stdint.h>

#include "config.h"
#include "matrix.h"

struct routing;

struct traffic {
    int gpus;
    uint64_t *bytes;          /* gpus * gpus, owned */
};

struct traffic_err {
    char msg[CFG_ERR_MAX];    /* one line: "file:line: what is wrong" */
};

int traffic_create(struct traffic *m, int gpus);   /* zeroed; 0, -EINVAL (gpus < 1) or -ENOMEM */
void traffic_free(struct traffic *m);              /* NULL bytes is a no-op */

/* traces/matrix.h's plain byte matrix and struct traffic share their layout: *m moves
 * into *t (t owns the bytes, m is zeroed). */
void traffic_from_matrix(struct traffic *t, struct matrix *m);
/* A view of t as a matrix for matrix_write / matrix_write_dense (borrows t's bytes: do
 * not matrix_free it). */
struct matrix traffic_as_matrix(const struct traffic *t);

/* Plain uniform all-to-all: every ordered pair (and the diagonal) gets bytes_per_pair. */
int traffic_alltoall(struct traffic *m, int gpus, uint64_t bytes_per_pair);

/* Transpose of a with every entry scaled: out[d][s] = round(a[s][d] * scale),
 * halves away from zero (as llround): the combine matrix from the dispatch one
 * when they differ in bytes per element. Borrows a. 0; -EINVAL when scale is
 * negative or not finite; -ERANGE when an entry reaches 2^64; -ENOMEM. */
int traffic_transpose_scaled(struct traffic *out, const struct traffic *a, double scale);

/* MoE dispatch and combine of one layer from routing counts (borrows r and c). The route
 * is config_a2a_route(c): cluster.route, or rail for an inference step with serve.a2a =
 * low_latency (DeepEP's low-latency kernels: each token straight to each target GPU, no
 * relay, no dedup per node). With route rail or pxn, one entry per GPU pair (its path is
 * topo_route's):
 *   dispatch[s][d] = round(pair_tokens[s][d] * hidden * dispatch_bytes_per_elem)
 *   combine[d][s]  = round(pair_tokens[s][d] * hidden * combine_bytes_per_elem)
 * (combine returns each token's expert outputs: the transpose).
 * With route hierarchical, the two levels of DeepEP's normal (internode) kernels, one entry
 * per leg, every leg inside a node (NVLink) or between the same-index GPUs of two nodes
 * (one rail), so topo_route gives each leg its own tier. Token counts per leg, with
 * relay(s, N) = the GPU of node N with s's local index:
 *   network  s -> relay(s, N), N a node other than s's: src_node_tokens[s][N] (a token
 *            crosses the network once per remote node it reaches);
 *   forward  relay(s, N) -> d, d on N, d != relay: pair_tokens[s][d], summed over the
 *            sources s of one relay (a target that is the relay keeps the token);
 *   local    s -> d on s's node: pair_tokens[s][d] (the diagonal: kept).
 * dispatch = tokens * hidden * dispatch_bytes_per_elem per leg; combine = the transpose at
 * combine_bytes_per_elem: each expert GPU sends one (locally summed) output per token over
 * NVLink to the relay with the token source's local index, the relay sums the node's
 * outputs (weighted) and sends one vector per (token, node) over the network. Requires
 * r->src_node_tokens, r->gpus_per_node = c->cluster.gpus_per_node and EP groups of whole
 * nodes or inside one node (so the relay is in the token's group).
 * Uses c->model (hidden, *_bytes_per_elem) and checks r->gpus == nodes * gpus_per_node.
 * 0; -EINVAL on a mismatch, hidden < 1, or a negative or non-finite bytes per
 * element; -ERANGE when an entry reaches 2^64; -ENOMEM. */
int traffic_moe(struct traffic *dispatch, struct traffic *combine,
                const struct routing *r, const struct config *c);

#endif
