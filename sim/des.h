/* des.h: the discrete-event core. A clock (seconds) and a queue of callbacks at times.
 *
 * Order: events run by time; events at the same time run in the order they were
 * scheduled (a 64-bit sequence number breaks ties), also when scheduled from inside a
 * callback, so a run is deterministic. Callbacks may schedule, cancel and stop.
 *
 * Structure: a 4-ary min-heap of (t_s, seq) keys beside a slot array holding each
 * event's callback and its heap position, so cancel is a real O(log n) removal (no
 * tombstones). Costs, n = pending events: des_at and des_cancel O(log n) (amortized,
 * the arrays grow by doubling), each event run O(log n), des_now/des_pending O(1).
 * Memory: 48 bytes per slot (24 key + 24 callback); slots are reused, and the arrays
 * only shrink at des_free.
 *
 * Ids: 0 is never an id. An id names one scheduling; after the event runs or is
 * cancelled the id is dead and des_cancel on it returns false, also when its slot is
 * reused (a 32-bit per-slot generation is part of the id; a stale id could only alias
 * after 2^32 - 1 further uses of the same slot).
 *
 * Not thread-safe; one struct des per simulation.
 */
#ifndef MOESIM_DES_H
#define MOESIM_DES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct des;                                          /* opaque */

/* An event's action; runs with des_now(d) == its time. arg is borrowed. */
typedef void (*des_fn)(struct des *d, void *arg);

int des_create(struct des **out);                    /* 0, -EINVAL, -ENOMEM; clock at 0 */
void des_free(struct des *d);                        /* NULL is a no-op; not from a callback */

/* Schedule fn(d, arg) at absolute time t_s (finite, >= des_now(d)). arg is borrowed:
 * it must stay valid until the event runs or is cancelled. *id_out (if not NULL)
 * gets the event's id. 0; -EINVAL (NULL d or fn, t_s NaN/infinite/in the past);
 * -ENOMEM (also past 2^32 - 1 pending events). */
int des_at(struct des *d, double t_s, des_fn fn, void *arg, uint64_t *id_out);

/* Remove a pending event: true if it was pending (it will not run); false for an id
 * that already ran, was cancelled, or was never issued. */
bool des_cancel(struct des *d, uint64_t id);

double des_now(const struct des *d);                 /* seconds */
size_t des_pending(const struct des *d);
double des_next_s(const struct des *d);              /* next event's time; INFINITY if none */

/* Run events in order while the next one is at t <= t_end_s (INFINITY: until none are
 * left). Returns the number of events run, or -EINVAL (NaN t_end_s) or -EBUSY (called
 * from a callback). When it returns because the queue is empty or the next event is
 * after a finite t_end_s, the clock is advanced to t_end_s (never moved backwards), so
 * run(a); run(b) with a <= b runs the same events at the same times as run(b). */
int64_t des_run(struct des *d, double t_end_s);

/* From a callback: make des_run return after the current event (clock left at it).
 * No effect outside des_run. */
void des_stop(struct des *d);

#endif
