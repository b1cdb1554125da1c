/* moe_sync.h: the gradient-ordering sync of moe.h as the backends share it (callers
 * see only the opaque struct moe_grad_sync). A sync is a mutex, held by a bound ctx's
 * accumulating stage from its start to its end, a count of the ctxs bound, and one
 * slot for the backend (CUDA: the event the last such stage recorded). moe.c. */
#ifndef MOESIM_MOE_SYNC_H
#define MOESIM_MOE_SYNC_H

#include <pthread.h>
#include <stdint.h>

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_SYNC_MAGIC 0x6d6f6773u       /* "mogs": a live sync */

struct moe_grad_sync {
    uint32_t magic;                      /* MOE_SYNC_MAGIC until destroyed */
    const struct moe_ops *ops;           /* the backend whose ctxs may bind */
    pthread_mutex_t lock;
    int bound;                           /* ctxs bound now; under lock */
    void *dev;                           /* the backend's ordering state, or NULL */
};

/* 0, or -ENOMEM when the mutex cannot be made. */
int moe_sync_init(struct moe_grad_sync *s, const struct moe_ops *ops);
/* 0, or -EBUSY (nothing done) while ctxs are bound to s. */
int moe_sync_destroy(struct moe_grad_sync *s);

/* ops->sync_bind's contract (moe.h) for a ctx the backend has checked as its own. */
int moe_sync_bind(struct moe_ctx *ctx, struct moe_grad_sync *s, const struct moe_ops *ops);

/* Around a stage that adds into weight gradients: lock and unlock the ctx's sync; no-ops
 * for a ctx bound to none (or NULL). */
void moe_sync_enter(const struct moe_ctx *ctx);
void moe_sync_leave(const struct moe_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif
