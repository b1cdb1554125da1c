/* placement.h: which GPU of an expert-parallel (EP) group holds each routed expert,
 * with redundant replicas (physical slots beyond the E logical experts).
 *
 * Physical slot s is on GPU s / slots_per_gpu of the group; every GPU has exactly
 * slots_per_gpu slots; every logical expert has at least one slot. A token routed to
 * an expert with several replicas is assumed to go to each replica equally often, so
 * a replica carries load / replicas (placement_gpu_load).
 *
 * Kinds (E = experts, R = redundant, spg = slots_per_gpu = (E + R) / ep):
 *   contiguous   expert e in slot e, on GPU e / (E / ep); R = 0.
 *   round-robin  expert e on GPU e % ep, in slot (e % ep) * spg + e / ep; R = 0.
 *   eplb         DeepSeek's EPLB, rebalance_experts_hierarchical (github.com/
 *                deepseek-ai/EPLB, eplb.py) with G expert groups (groups argument; 0:
 *                G = nodes = ep / gpus_per_node). Group i is experts [i E/G, (i+1) E/G).
 *                1. Groups onto nodes: heaviest group (sum of its loads) first, each to
 *                   the node of least load with fewer than G/nodes groups; a node's
 *                   experts are its groups' runs in the order they arrived. G = nodes:
 *                   node n keeps the n-th contiguous chunk of E/nodes experts.
 *                2. Each node replicates its experts into its (E + R)/nodes slots (each
 *                   new replica to the expert with the largest load per replica).
 *                3. Each node packs those physical experts onto its GPUs by load per
 *                   replica (heaviest first, each to the least-loaded GPU with a free
 *                   slot); a GPU's slots in the order its replicas arrived.
 *   eplb-global  the same with one node: replicate over all E experts, pack onto all
 *                ep GPUs (the reference's rebalance_experts with num_nodes = 1).
 * Ties are broken by lowest index (group, expert, physical expert, node, GPU), so the
 * result is deterministic. The reference's replicate (torch max) and packing (Python
 * min) take the first on ties too; its descending sort leaves equal weights in an order
 * torch does not promise (std::sort or a SIMD sort, build-dependent), where we keep
 * index order. It computes in float32, we in double: equal only up to rounding when
 * a tie or near-tie of sums of load / replicas falls differently. Its README example
 * (12 experts, 4 groups, 2 nodes, 8 GPUs, 16 slots) comes out exactly
 * (tests/test_placement.c).
 *
 * Never worse than contiguous: the greedy can lose to the contiguous map (E = 6 on
 * 2 GPUs, R = 0, loads {3,3,0,2,2,2}: greedy max 7, contiguous 6). So when E % ep == 0
 * the EPLB kinds also build the contiguous map with each GPU's R/ep extra slots holding
 * copies of its own experts (largest load per replica first; per-GPU load unchanged)
 * and keep it when its maximum GPU load is strictly below the greedy's. Hence their
 * max GPU load never exceeds contiguous's (up to rounding of load / replicas sums).
 *
 * Cost: eplb kinds O((E + R) log(E + R) + G log G + G nodes + (E + R) * (E / nodes +
 * ep / nodes)) time, O(E + R) memory; the others O(E).
 */
#ifndef MOESIM_PLACEMENT_H
#define MOESIM_PLACEMENT_H

/* The config's [balance] placement word maps to one of these (placement_kind_name). */
enum placement_kind { PLACEMENT_CONTIGUOUS, PLACEMENT_ROUND_ROBIN, PLACEMENT_EPLB, PLACEMENT_EPLB_GLOBAL };

struct placement {
    int experts;          /* logical routed experts E */
    int ep;               /* GPUs in the EP group */
    int gpus_per_node;    /* GPUs of the group per node (ep is a multiple of it, or ep < it: then = ep) */
    int slots_per_gpu;    /* (E + redundant) / ep */
    int nslots;           /* E + redundant = ep * slots_per_gpu */
    int *slot_expert;     /* nslots: logical expert held in physical slot s; slot s is on GPU s / slots_per_gpu. Owned. */
    int *replica0;        /* experts + 1: CSR offsets into replica_slot. Owned. */
    int *replica_slot;    /* nslots: the slots of expert e are replica_slot[replica0[e] .. replica0[e+1]) in increasing order. Owned. */
};

/* Fill *p (overwritten, not freed). load: E non-negative finite loads (tokens per
 * expert), borrowed for the call; needed by the eplb kinds, ignored (may be NULL) by
 * the others. gpus_per_node >= 1; above ep it is taken as ep; ep must be a multiple of
 * it (for every kind: the struct's invariant). groups: eplb's expert groups G, 0 for one
 * per node; must be 0 for the other kinds.
 * Returns 0; -EINVAL (E < 1, ep < 1, gpus_per_node < 1, redundant < 0, groups < 0,
 * E + redundant not a multiple of ep, ep not a multiple of gpus_per_node, unknown kind;
 * contiguous/round-robin with redundant > 0, groups > 0 or E % ep != 0; eplb with
 * G % nodes != 0, E % G != 0 or redundant % nodes != 0; eplb-global with groups > 0;
 * an eplb kind with load NULL, negative or not finite); -ENOMEM. On error *p is zeroed. */
int placement_create_grouped(struct placement *p, enum placement_kind kind, int experts,
                             int ep, int gpus_per_node, int redundant, int groups,
                             const double *load);

/* placement_create_grouped with groups = 0. */
int placement_create(struct placement *p, enum placement_kind kind, int experts, int ep,
                     int gpus_per_node, int redundant, const double *load);

void placement_free(struct placement *p);       /* frees the arrays, zeroes *p; zeroed *p is a no-op */

/* out[g], g < ep: load on GPU g when expert e's load[e] (E values, borrowed) is split
 * evenly among its replicas. p from a successful placement_create. O(nslots). */
void placement_gpu_load(const struct placement *p, const double *load, double *out);

/* "contiguous", "round-robin", "eplb", "eplb-global"; "?" for any other value. */
const char *placement_kind_name(enum placement_kind k);

#endif
