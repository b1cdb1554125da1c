/* gpu.c: moeprof on GPUs (see gpu.h). */
#include "gpu.h"

#include <cuda_runtime_api.h>
#include <errno.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

#include "moe_cuda.h"

static void gpu_log(const char *what, const char *file, int line)
{
    char host[MPI_MAX_PROCESSOR_NAME] = "?";
    int len = 0, rank = -1;
    MPI_Get_processor_name(host, &len);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "%s:%d %s:%d: %s\n", host, rank, file, line, what);
}

#define TRY_CUDA(call)                                               \
    do {                                                             \
        cudaError_t try_cuda_rc_ = (call);                           \
        if (try_cuda_rc_ != cudaSuccess) {                           \
            gpu_log(cudaGetErrorString(try_cuda_rc_), __FILE__, __LINE__); \
            return -EIO;                                             \
        }                                                            \
    } while (0)

#define TRY_NCCL(call)                                               \
    do {                                                             \
        ncclResult_t try_nccl_rc_ = (call);                          \
        if (try_nccl_rc_ != ncclSuccess) {                           \
            gpu_log(ncclGetErrorString(try_nccl_rc_), __FILE__, __LINE__); \
            return -EIO;                                             \
        }                                                            \
    } while (0)

int gpu_select(MPI_Comm world, char *msg, size_t n)
{
    MPI_Comm node;
    int local = 0, locals = 1, len = 0;
    char host[MPI_MAX_PROCESSOR_NAME] = "?", why[256] = "";
    MPI_Get_processor_name(host, &len);
    if (MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &locals);
    MPI_Comm_free(&node);
    int rank = 0;
    MPI_Comm_rank(world, &rank);
    int devs = moe_cuda_probe(why, sizeof(why));
    if (devs < 1)
        return snprintf(msg, n, "moeprof run: --backend cuda: rank %d on %s: no GPU (%s)", rank,
                        host, why), -ENODEV;
    if (locals > devs)
        return snprintf(msg, n, "moeprof run: --backend cuda: %d ranks on %s share %d GPU(s); "
                        "start one rank per GPU", locals, host, devs), -ENODEV;
    TRY_CUDA(cudaSetDevice(local));
    return 0;
}

struct gpu_nccl {
    ncclComm_t comm;
    int rank, size;
    size_t row_bytes;
};

int gpu_nccl_create(struct gpu_nccl **out, MPI_Comm comm, size_t row_bytes)
{
    ncclUniqueId id;
    struct gpu_nccl *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    *out = g;                             /* the caller frees it on error too */
    g->row_bytes = row_bytes;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    if (g->rank == 0)
        TRY_NCCL(ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, comm) != MPI_SUCCESS)
        return -EIO;
    TRY_NCCL(ncclCommInitRank(&g->comm, g->size, id, g->rank));
    return 0;
}

void gpu_nccl_free(struct gpu_nccl *g)
{
    if (!g)
        return;
    if (g->comm)
        ncclCommDestroy(g->comm);
    free(g);
}

static int nccl_rows(void *arg, const void *send, const int32_t *send_rows, void *recv,
                     const int32_t *recv_rows)
{
    struct gpu_nccl *g = arg;
    const char *s = send;
    char *r = recv;
    size_t so = 0, ro = 0, self_s = 0, self_r = 0;
    cudaStream_t st = 0;                  /* legacy default stream */
    TRY_NCCL(ncclGroupStart());
    for (int p = 0; p < g->size; p++) {
        size_t sb = (size_t)send_rows[p] * g->row_bytes, rb = (size_t)recv_rows[p] * g->row_bytes;
        if (p == g->rank) {
            self_s = so;
            self_r = ro;
        } else {
            if (sb)
                TRY_NCCL(ncclSend(s + so, sb, ncclChar, p, g->comm, st));
            if (rb)
                TRY_NCCL(ncclRecv(r + ro, rb, ncclChar, p, g->comm, st));
        }
        so += sb;
        ro += rb;
    }
    TRY_NCCL(ncclGroupEnd());
    size_t own = (size_t)send_rows[g->rank] * g->row_bytes;
    if (own)
        TRY_CUDA(cudaMemcpyAsync(r + self_r, s + self_s, own, cudaMemcpyDeviceToDevice, st));
    TRY_CUDA(cudaStreamSynchronize(st));
    return 0;
}

static int dev_sync(void)
{
    TRY_CUDA(cudaDeviceSynchronize());
    return 0;
}

struct epl_io gpu_io(struct gpu_nccl *g)
{
    return (struct epl_io){ .copy = moe_cuda_copy, .rows = nccl_rows, .rows_arg = g,
                            .sync = dev_sync };
}

struct gpu_ev {
    cudaEvent_t *ev;              /* [2 records], event 2 i + {0, 1} of record i mod records */
    size_t n;                     /* 2 records */
    cudaEvent_t anchor;
    double anchor_s;              /* the anchor on this rank's monotonic clock */
};

int gpu_ev_create(struct gpu_ev **out, size_t records)
{
    struct gpu_ev *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    *out = e;                             /* the caller frees it on error too */
    e->ev = calloc(2 * (records ? records : 1), sizeof(cudaEvent_t));
    if (!e->ev)
        return -ENOMEM;
    TRY_CUDA(cudaEventCreate(&e->anchor));
    for (size_t i = 0; i < 2 * (records ? records : 1); i++, e->n++)
        TRY_CUDA(cudaEventCreate(&e->ev[i]));
    return 0;
}

void gpu_ev_free(struct gpu_ev *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        (void)cudaEventDestroy(e->ev[i]);
    if (e->anchor)
        (void)cudaEventDestroy(e->anchor);
    free(e->ev);
    free(e);
}

int gpu_ev_mark(void *arg, size_t k)
{
    struct gpu_ev *e = arg;
    TRY_CUDA(cudaEventRecord(e->ev[k % e->n], 0));
    return 0;
}

int gpu_ev_anchor(struct gpu_ev *e)
{
    TRY_CUDA(cudaEventRecord(e->anchor, 0));
    TRY_CUDA(cudaEventSynchronize(e->anchor));
    e->anchor_s = tmr_now_s();
    return 0;
}

int gpu_ev_resolve(struct gpu_ev *e, struct tmr *t, size_t from)
{
    if (t->n <= from)
        return 0;
    if (t->n - from > e->n / 2)
        return -EINVAL;                   /* more records than events: some were reused */
    TRY_CUDA(cudaEventSynchronize(e->ev[(2 * (t->n - 1) + 1) % e->n]));
    for (size_t i = from; i < t->n; i++) {
        float at_ms = 0.0f, dur_ms = 0.0f;
        TRY_CUDA(cudaEventElapsedTime(&at_ms, e->anchor, e->ev[(2 * i) % e->n]));
        TRY_CUDA(cudaEventElapsedTime(&dur_ms, e->ev[(2 * i) % e->n], e->ev[(2 * i + 1) % e->n]));
        t->rec[i].t0_s = e->anchor_s + 1e-3 * at_ms;
        t->rec[i].dur_s = 1e-3 * dur_ms;
    }
    return 0;
}
