/* rtrace.h: the routing trace: per MoE layer (numbered from 0 over the MoE layers only,
 * dense layers skipped), iteration and source GPU, how many tokens
 * went to each expert (token-expert assignments: a token routed to k experts counts
 * once at each). Written by moesim and moeprof, read to replay routing.
 *
 * Text. `#` starts a comment that runs to the end of the line; blank lines are ignored.
 * The first other line is the header, then one line per entry:
 *   moesim-routing-trace 1 layers=L iterations=I gpus=G experts=E
 *   layer iteration gpu expert tokens
 * decimal integers with digits only, fields separated by spaces or tabs. An entry not
 * listed is 0; an entry may be listed once; the order of the lines does not matter.
 * Full description: traces/FORMAT.md.
 */
#ifndef MOESIM_RTRACE_H
#define MOESIM_RTRACE_H

#include <stdint.h>
#include <stdio.h>


#define RTRACE_MAGIC "moesim-routing-trace"   /* first field of the header */
#define RTRACE_VERSION 1                      /* second field: the format's version */
/* Size of an error message buffer (as sim/config.h's CFG_ERR_MAX). */
#define RTRACE_ERR_MAX 1280
/* Most entries (layers * iterations * gpus * experts) of one trace: 2 GiB of counts. */
#define RTRACE_ENTRIES_MAX (1 << 28)
/* Most tokens of one (layer, iteration), every GPU and expert together (so of one entry
 * too): sim/config.h's CFG_ASSIGN_MAX, so that a replayed layer's bytes (x hidden x bytes
 * per element) fit 64 bits as a synthetic one's do, and any sum of counts (at most 2^28
 * such totals) fits too. */
#define RTRACE_TOKENS_MAX (1ull << 33)

struct rtrace {
    int layers, iterations, gpus, experts;
    /* layers * iterations * gpus * experts counts, entry (l, it, g, e) at
     * [((l * iterations + it) * gpus + g) * experts + e]. Owned. */
    uint64_t *tokens;
};

struct rtrace_err {
    char msg[RTRACE_ERR_MAX];    /* one line, no trailing newline */
};

/* *t sized as given, every count 0 (*t is overwritten, not freed). Returns 0; -EINVAL
 * when a dimension is below 1; -E2BIG when their product passes RTRACE_ENTRIES_MAX;
 * -ENOMEM. On error *t is zeroed. */
int rtrace_create(struct rtrace *t, int layers, int iterations, int gpus, int experts);

/* Frees t's counts and zeroes *t; NULL and a zeroed *t are no-ops. */
void rtrace_free(struct rtrace *t);

/* The `experts` counts of (layer, iteration, gpu), expert e at [e]; NULL when an id is
 * out of range. Points into t->tokens (borrowed). */
uint64_t *rtrace_at(const struct rtrace *t, int layer, int iteration, int gpu);

/* Read path into *t (the caller frees it with rtrace_free); the dimensions come from
 * the header. want_gpus, want_experts > 0 must equal the header's, <= 0 take any.
 * Returns 0; -EINVAL for bad input with one line in err->msg, e.g.
 *   "path: cannot open: No such file or directory"
 *   "path:3: expected the header 'moesim-routing-trace 1 layers=L iterations=I gpus=G experts=E'"
 *   "path:1: gpus=8 in the header, but 16 GPUs expected"
 *   "path:5: expert 16 is not an expert id (0..15)"
 *   "path:5: tokens '1e3' is not a non-negative integer"
 *   "path:5: tokens 9999999999 is more than 8589934592 (2^33)"
 *   "path:7: layer 0 iteration 1: tokens add up to more than 8589934592 (2^33)"
 *   "path:9: layer 0 iteration 1 gpu 2 expert 3 given twice (first at line 5)"
 * (every message: traces/FORMAT.md); -EIO on a read error, -ENOMEM (both also with
 * err->msg). On error *t is zeroed. Memory: the counts, one bit per entry and, while
 * loading, one running total per (layer, iteration). */
int rtrace_load(struct rtrace *t, const char *path, int want_gpus, int want_experts,
                struct rtrace_err *err);

/* Writes the header, a '# layer iteration gpu expert tokens' line, then every nonzero
 * entry in index order (layer, then iteration, gpu, expert ascending), single spaces,
 * '\n' line ends (borrows f and t; does not close f). Loading the output gives t back
 * when its totals keep to RTRACE_TOKENS_MAX; the same t gives the same bytes. Returns 0;
 * -EIO when a write fails (a failure the stream still buffers shows at the caller's
 * fclose); -EINVAL for a t without counts or with a dimension below 1 (a t that
 * rtrace_create did not make; a view that borrows its counts is fine). */
int rtrace_write(FILE *f, const struct rtrace *t);

#endif
