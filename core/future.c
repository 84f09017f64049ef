/* Futures: one per put, completed on an I/O thread when every peer's copy
 * has been handed to the transport. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "core/nqi.h"

/* flags: the completion and the callback meet on one atomic word, so that
 * completing a future nobody waits on takes no lock.  COMPLETING: the
 * result is final and the callback (if any) is being run; DONE: waiters may
 * return; CB_SET: a callback is registered; WAITER: someone sleeps on cv. */
enum { COMPLETING = 1, DONE = 2, CB_SET = 4, WAITER = 8 };

struct nq_future {
    atomic_int refs;
    atomic_int parts;
    atomic_int first_error;
    atomic_int flags;
    int result;
    nq_future_cb cb;
    void *cb_ctx;
    pthread_mutex_t mu; /* waiters and callback registration */
    pthread_cond_t cv;  /* set up by the first waiter */
    int cv_ready;
};

static void future_unref(nq_future *f)
{
    if (atomic_fetch_sub(&f->refs, 1) == 1) {
        pthread_mutex_destroy(&f->mu);
        if (f->cv_ready) {
            pthread_cond_destroy(&f->cv);
        }
        nqi_block_free(f);
    }
}

nq_future *nqi_future_new(int parts)
{
    nq_future *f = nqi_block_calloc(sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        nqi_block_free(f);
        return NULL;
    }
    atomic_init(&f->refs, 2); /* the caller's, and one released on completion */
    atomic_init(&f->parts, parts);
    atomic_init(&f->first_error, 0);
    atomic_init(&f->flags, 0);
    return f;
}

void nqi_future_add_parts(nq_future *f, int parts)
{
    atomic_fetch_add(&f->parts, parts);
}

/* The callback runs before waiters wake, so a wait that returns has seen
 * the callback's effects.  Exactly one of complete() and nq_future_on_done
 * runs the callback: whichever sets its flag second. */
static void complete(nq_future *f)
{
    f->result = atomic_load(&f->first_error);
    int old = atomic_fetch_or(&f->flags, COMPLETING);
    if (old & CB_SET) {
        f->cb(f, f->result, f->cb_ctx);
    }
    old = atomic_fetch_or(&f->flags, DONE);
    if (old & WAITER) {
        pthread_mutex_lock(&f->mu);
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
    }
    future_unref(f);
}

void nqi_future_note_error(nq_future *f, int result)
{
    if (result != NQ_OK) {
        int expected = 0;
        atomic_compare_exchange_strong(&f->first_error, &expected, result);
    }
}

void nqi_future_part_done(nq_future *f, int result)
{
    nqi_future_note_error(f, result);
    if (atomic_fetch_sub(&f->parts, 1) == 1) {
        complete(f);
    }
}

int nq_future_result(nq_future *future)
{
    if (future == NULL) {
        return NQ_EINVAL;
    }
    return atomic_load(&future->flags) & DONE ? future->result : NQ_EPENDING;
}

/* Without a condition variable (its set-up failed): look every 1 ms. */
static int poll_wait(nq_future *f, int64_t timeout_ms)
{
    int64_t end = timeout_ms < 0 ? INT64_MAX : nqi_now_ms() + timeout_ms;
    while (!(atomic_load(&f->flags) & DONE) && nqi_now_ms() < end) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return atomic_load(&f->flags) & DONE ? f->result : NQ_ETIMEDOUT;
}

int nq_future_wait(nq_future *future, int64_t timeout_ms)
{
    if (future == NULL || timeout_ms < -1) {
        return NQ_EINVAL;
    }
    if (atomic_load(&future->flags) & DONE) {
        return future->result;
    }
    if (timeout_ms == 0) {
        return NQ_ETIMEDOUT;
    }
    struct timespec dl = {0, 0};
    if (timeout_ms > 0) {
        dl = nqi_deadline_after(timeout_ms);
    }
    pthread_mutex_lock(&future->mu);
    if (!future->cv_ready) {
        if (nqi_cond_init(&future->cv) != 0) {
            pthread_mutex_unlock(&future->mu);
            return poll_wait(future, timeout_ms);
        }
        future->cv_ready = 1;
    }
    atomic_fetch_or(&future->flags, WAITER);
    while (!(atomic_load(&future->flags) & DONE)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&future->cv, &future->mu);
        } else if (pthread_cond_timedwait(&future->cv, &future->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    int rv = atomic_load(&future->flags) & DONE ? future->result : NQ_ETIMEDOUT;
    pthread_mutex_unlock(&future->mu);
    return rv;
}

int nq_future_on_done(nq_future *future, nq_future_cb cb, void *ctx)
{
    if (future == NULL || cb == NULL) {
        return NQ_EINVAL;
    }
    pthread_mutex_lock(&future->mu);
    if (atomic_load(&future->flags) & CB_SET) {
        pthread_mutex_unlock(&future->mu);
        return NQ_EINVAL;
    }
    future->cb = cb;
    future->cb_ctx = ctx;
    int old = atomic_fetch_or(&future->flags, CB_SET);
    pthread_mutex_unlock(&future->mu);
    /* Too late for complete() to see it: run it here. */
    if (old & COMPLETING) {
        cb(future, future->result, ctx);
    }
    return NQ_OK;
}

void nq_future_free(nq_future *future)
{
    if (future != NULL) {
        future_unref(future);
    }
}
