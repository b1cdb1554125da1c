/* gpu.h: moeprof on GPUs: one rank per GPU, the CUDA backend's device memory behind the
 * layer's epl_io, and the rows all-to-all over NCCL. Built where nvcc and NCCL are found
 * (the Makefile defines MOEPROF_CUDA and links kernels/'s CUDA backend); not in the
 * sanitizer build. Untested on more than one GPU.
 *
 * NCCL: one communicator per EP group, its unique id made on the group's rank 0 and
 * sent over MPI (MPI_Bcast); a rows exchange is one ncclGroupStart/End of an ncclSend
 * and an ncclRecv per peer with rows to move (ncclChar, rows x row_bytes), the rank's
 * own rows copied device to device, all on the legacy default stream, which the CUDA
 * backend's ctx streams (created blocking) are ordered with; it returns once the
 * stream is done (the contract of exchange.h's xch_rows). The per-expert counts still
 * go over MPI (host memory: they size the receive buffers).
 * Forced routing runs on this backend through epl_force (force.h: frc_apply_copy).
 * Errors: TRY_CUDA / TRY_NCCL log "host:rank file:line: the error's text" and return
 * -EIO.
 */
#ifndef MOEPROF_GPU_H
#define MOEPROF_GPU_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "eplayer.h"
#include "timer.h"

/* Collective over world: each rank takes GPU (its rank among the ranks of its node),
 * cudaSetDevice. 0; -ENODEV with msg (one line naming host and rank) when the node has
 * no GPU or fewer GPUs than ranks; -EIO. */
int gpu_select(MPI_Comm world, char *msg, size_t n);

struct gpu_nccl;                  /* opaque */

/* Collective over the EP group comm (borrowed for the object's life). 0, -ENOMEM,
 * -EIO. */
int gpu_nccl_create(struct gpu_nccl **out, MPI_Comm comm, size_t row_bytes);
void gpu_nccl_free(struct gpu_nccl *g);          /* NULL is a no-op */

/* The io of a layer on the CUDA backend with g's rows exchange (g borrowed). */
struct epl_io gpu_io(struct gpu_nccl *g);

/* Phase timing with CUDA events. The layer marks each timed phase's start and end
 * (epl_io.mark: events 2 i and 2 i + 1 for the timer's record i, taken modulo the
 * pool) on the legacy default stream, which orders every blocking stream's work (the
 * ctxs' streams, NCCL's): an event there completes when all the work queued before it
 * has, so start to end is the phase as the device ran it, the host's waits included.
 * Nothing waits per phase. At an iteration's start gpu_ev_anchor records an anchor
 * event, waits for it and reads the host's monotonic clock (timer.h): the anchor's time
 * on the rank's timeline, late by the wait's wake-up (microseconds). After the
 * iteration gpu_ev_resolve waits for its last event and rewrites records [from, n):
 * t0_s = anchor + elapsed(anchor, start), dur_s = elapsed(start, end), with
 * cudaEventElapsedTime's resolution (about 0.5 us). Untested on a GPU. */
struct gpu_ev;                    /* opaque */

/* Events for `records` timed phases per iteration. 0, -ENOMEM, -EIO. */
int gpu_ev_create(struct gpu_ev **out, size_t records);
void gpu_ev_free(struct gpu_ev *e);              /* NULL is a no-op */
int gpu_ev_mark(void *e, size_t k);              /* epl_io.mark; e a struct gpu_ev */
int gpu_ev_anchor(struct gpu_ev *e);
int gpu_ev_resolve(struct gpu_ev *e, struct tmr *t, size_t from);

#endif
