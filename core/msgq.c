/* The arrival queue: every received message of a communicator, in arrival
 * order, waiting for get.  Loops push, callers of get pop: one mutex, and
 * a condition variable for getters that sleep. */
#include <errno.h>
#include <time.h>

#include "core/frame.h"

void nqi_msgq_init(nqi_msgq *q)
{
    pthread_mutex_init(&q->mu, NULL);
    nqi_cond_init(&q->cv);
    q->head = q->tail = NULL;
    q->final_error = 0;
    q->waiters = 0;
}

void nqi_msgq_fini(nqi_msgq *q, void (*free_msg)(nq_msg *m))
{
    nq_msg *m = q->head;
    while (m != NULL) {
        nq_msg *next = m->next;
        free_msg(m);
        m = next;
    }
    q->head = q->tail = NULL;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* Only a getter that sleeps needs a wake-up, and after the unlock, so that
 * it does not wake only to wait for the mutex. */
static void wake(nqi_msgq *q, int waiters)
{
    if (waiters == 1) {
        pthread_cond_signal(&q->cv);
    } else if (waiters > 1) {
        pthread_cond_broadcast(&q->cv);
    }
}

void nqi_msgq_push(nqi_msgq *q, nq_msg *first, nq_msg *last)
{
    last->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail != NULL) {
        q->tail->next = first;
    } else {
        q->head = first;
    }
    q->tail = last;
    int waiters = q->waiters;
    pthread_mutex_unlock(&q->mu);
    wake(q, waiters);
}

void nqi_msgq_finish(nqi_msgq *q, int err)
{
    pthread_mutex_lock(&q->mu);
    if (q->final_error == 0) {
        q->final_error = err;
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int nqi_msgq_pop(nqi_msgq *q, int64_t timeout_ms, nq_msg **out)
{
    struct timespec dl = {0, 0};
    if (timeout_ms > 0) {
        dl = nqi_deadline_after(timeout_ms);
    }
    int rv = NQ_OK;
    pthread_mutex_lock(&q->mu);
    while (q->head == NULL && q->final_error == 0) {
        if (timeout_ms == 0) {
            rv = NQ_ETIMEDOUT;
            break;
        }
        q->waiters++;
        int timed_out = nqi_cond_until(&q->cv, &q->mu, timeout_ms < 0 ? NULL : &dl) != 0;
        q->waiters--;
        if (timed_out) {
            rv = q->head == NULL && q->final_error == 0 ? NQ_ETIMEDOUT : NQ_OK;
            break;
        }
    }
    nq_msg *m = q->head;
    if (rv == NQ_OK && m == NULL) {
        rv = q->final_error;
    }
    if (rv == NQ_OK) {
        q->head = m->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        m->next = NULL;
        *out = m;
    }
    pthread_mutex_unlock(&q->mu);
    return rv;
}
