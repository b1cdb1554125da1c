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
 * Errors: TRY_CUDA / TRY_NCCL log "host:rank file:line: the error's text" and return
 * -EIO.
 */
#ifndef MOEPROF_GPU_H
#define MOEPROF_GPU_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "eplayer.h"

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

#endif
