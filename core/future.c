/* Futures: one per put, completed on an I/O thread when every peer's copy
 * has been handed to the transport. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "core/nqi.h"

enum { PENDING = 0, COMPLETING, DONE };

struct nq_future {
    atomic_int refs;
    atomic_int parts;
    atomic_int first_error;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* PENDING, COMPLETING (callback running), DONE */
    int result;
    nq_future_cb cb;
    void *cb_ctx;
};

static void future_unref(nq_future *f)
{
    if (atomic_fetch_sub(&f->refs, 1) == 1) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
    }
}

nq_future *nqi_future_new(int parts)
{
    nq_future *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&f->mu, NULL) != 0 || nqi_cond_init(&f->cv) != 0) {
        free(f);
        return NULL;
    }
    atomic_init(&f->refs, 2); /* the caller's, and one released on completion */
    atomic_init(&f->parts, parts);
    atomic_init(&f->first_error, 0);
    return f;
}

void nqi_future_add_parts(nq_future *f, int parts)
{
    atomic_fetch_add(&f->parts, parts);
}

/* The callback runs before waiters wake, so a wait that returns has seen
 * the callback's effects. */
static void complete(nq_future *f)
{
    int result = atomic_load(&f->first_error);
    pthread_mutex_lock(&f->mu);
    f->state = COMPLETING;
    f->result = result;
    nq_future_cb cb = f->cb;
    void *ctx = f->cb_ctx;
    pthread_mutex_unlock(&f->mu);
    if (cb != NULL) {
        cb(f, result, ctx);
    }
    pthread_mutex_lock(&f->mu);
    f->state = DONE;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    future_unref(f);
}

void nqi_future_part_done(nq_future *f, int result)
{
    if (result != NQ_OK) {
        int expected = 0;
        atomic_compare_exchange_strong(&f->first_error, &expected, result);
    }
    if (atomic_fetch_sub(&f->parts, 1) == 1) {
        complete(f);
    }
}

int nq_future_result(nq_future *future)
{
    if (future == NULL) {
        return NQ_EINVAL;
    }
    pthread_mutex_lock(&future->mu);
    int rv = future->state == DONE ? future->result : NQ_EPENDING;
    pthread_mutex_unlock(&future->mu);
    return rv;
}

int nq_future_wait(nq_future *future, int64_t timeout_ms)
{
    if (future == NULL || timeout_ms < -1) {
        return NQ_EINVAL;
    }
    struct timespec dl = {0, 0};
    if (timeout_ms > 0) {
        dl = nqi_deadline_after(timeout_ms);
    }
    pthread_mutex_lock(&future->mu);
    while (future->state != DONE) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&future->cv, &future->mu);
        } else if (pthread_cond_timedwait(&future->cv, &future->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    int rv = future->state == DONE ? future->result : NQ_ETIMEDOUT;
    pthread_mutex_unlock(&future->mu);
    return rv;
}

int nq_future_on_done(nq_future *future, nq_future_cb cb, void *ctx)
{
    if (future == NULL || cb == NULL) {
        return NQ_EINVAL;
    }
    pthread_mutex_lock(&future->mu);
    if (future->cb != NULL) {
        pthread_mutex_unlock(&future->mu);
        return NQ_EINVAL;
    }
    future->cb = cb;
    future->cb_ctx = ctx;
    /* Too late for complete() to see it: run it here. */
    int late = future->state != PENDING;
    int result = future->result;
    pthread_mutex_unlock(&future->mu);
    if (late) {
        cb(future, result, ctx);
    }
    return NQ_OK;
}

void nq_future_free(nq_future *future)
{
    if (future != NULL) {
        future_unref(future);
    }
}
