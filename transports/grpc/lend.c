/*
 * Lending: payload pieces of NQ_OPT_EFFICIENT_SIZE bytes and more go to grpc
 * as slices over the frame's own memory instead of a copy.  grpc may hold such
 * a slice after the send completes, so each one pins its frame (the put's
 * future waits for it) and is counted here; the communicator's last step
 * waits until grpc has let go of every one.  The lender lives apart from
 * the transport's state so that a release that comes late still finds it.
 * Releases come on any of grpc's threads.
 */
#include <stdlib.h>

#include "transports/grpc/grpc.h"

/* How long the last step waits for grpc to release lent slices. */
#define LEND_WAIT_MS 10000

struct lender {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long lent;
};

struct lend {
    lender *owner;
    nqi_frame *frame;
};

lender *nqi_grpc_lender_new(void)
{
    lender *owner = calloc(1, sizeof(*owner));
    if (owner != NULL) {
        pthread_mutex_init(&owner->mu, NULL);
        nqi_cond_init(&owner->cv);
    }
    return owner;
}

/* grpc let go of a lent slice (on any thread, possibly much later). */
static void lend_release(void *arg)
{
    struct lend *l = arg;
    lender *owner = l->owner;
    nqi_frame_unpin(l->frame);
    free(l);
    pthread_mutex_lock(&owner->mu);
    if (--owner->lent == 0) {
        pthread_cond_broadcast(&owner->cv);
    }
    pthread_mutex_unlock(&owner->mu);
}

int nqi_grpc_lend(lender *owner, nqi_frame *f, const struct iovec *piece, grpc_slice *out)
{
    struct lend *l = malloc(sizeof(*l));
    if (l == NULL) {
        return 0;
    }
    l->owner = owner;
    l->frame = f;
    nqi_frame_pin(f);
    pthread_mutex_lock(&owner->mu);
    owner->lent++;
    pthread_mutex_unlock(&owner->mu);
    *out = grpc_slice_new_with_user_data(piece->iov_base, piece->iov_len, lend_release, l);
    return 1;
}

void nqi_grpc_lender_finish(nq_comm *c, lender *owner)
{
    if (owner == NULL) {
        return;
    }
    struct timespec dl = nqi_deadline_after(LEND_WAIT_MS);
    pthread_mutex_lock(&owner->mu);
    while (owner->lent > 0 && nqi_cond_until(&owner->cv, &owner->mu, &dl) == 0) {
    }
    long left = owner->lent;
    pthread_mutex_unlock(&owner->mu);
    if (left > 0) {
        /* Left allocated: the late releases still need it. */
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC still holds %ld sent slices after close", left);
        return;
    }
    pthread_mutex_destroy(&owner->mu);
    pthread_cond_destroy(&owner->cv);
    free(owner);
}
