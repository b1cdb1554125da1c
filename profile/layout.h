/* layout.h: which rank of an expert-parallel (EP) group holds which experts.
 *
 * A layout is a list of physical slots in rank order: rank r holds slots
 * [rank0[r], rank0[r + 1]), slot s holds logical expert slot_expert[s]. Ranks may hold
 * different numbers of slots (none included) and an expert may have several slots on
 * different ranks (replicas). Every expert has at least one slot.
 * Replica choice (the rule of sim/routing.h, so a replayed routing gives the same
 * bytes): on source rank s, the j-th token (j = 0, 1, ... in token order) routed to
 * expert e goes to replica (s + j) mod r of e's r slots, taken in slot order.
 * Cost: O(ranks + slots) memory; nothing here blocks.
 */
#ifndef MOEPROF_LAYOUT_H
#define MOEPROF_LAYOUT_H

struct placement;

struct lay {
    int ranks, experts, nslots;
    int *rank0;           /* ranks + 1: CSR offsets into slot_expert. Owned. */
    int *slot_expert;     /* nslots: logical expert of each slot. Owned. */
    int *slot_rank;       /* nslots: the rank holding each slot. Owned. */
    int *rep0;            /* experts + 1: CSR offsets into rep_slot. Owned. */
    int *rep_slot;        /* nslots: e's slots are rep_slot[rep0[e] .. rep0[e+1]), increasing. Owned. */
    int max_slots;        /* most slots on one rank */
};

/* From per-rank lists: rank r holds slots_per_rank[r] slots, their experts listed one
 * rank after the other in slot_expert (borrowed). 0, or -EINVAL (ranks or experts < 1,
 * a negative count, an expert id outside 0..experts-1, an expert without a slot),
 * -ENOMEM. On error *l is zeroed. */
int lay_create(struct lay *l, int ranks, int experts, const int *slots_per_rank,
               const int *slot_expert);

/* From a sim placement (borrowed): GPU g of the group is rank g. 0, -EINVAL, -ENOMEM. */
int lay_from_placement(struct lay *l, const struct placement *p);

/* Contiguous placement with E % ranks == 0: rank r holds experts [r E/ranks, (r+1) E/ranks). */
int lay_contiguous(struct lay *l, int ranks, int experts);

void lay_free(struct lay *l);     /* zeroed *l is a no-op */

/* The global slot that source rank `src` sends its j-th token for expert e to. */
int lay_pick(const struct lay *l, int src, int expert, int j);

#endif
