/* The arrival queue: every received message of a communicator, in arrival
 * order, waiting for get.  Loops push, callers of get pop: one mutex, and
 * a futex word for getters that sleep.  Not a condition variable: glibc's
 * condition wait takes the mutex back marked contended, so the woken
 * getter's unlock would cost a system call on its way to the caller. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/frame.h"

void nqi_msgq_init(nqi_msgq *q)
{
    pthread_mutex_init(&q->mu, NULL);
    atomic_init(&q->seq, 0);
    q->head = q->tail = NULL;
    q->final_error = 0;
    q->waiters = 0;
    q->picky = 0;
    q->fd = -1;
    q->signalled = 0;
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
    if (q->fd >= 0) {
        close(q->fd);
        q->fd = -1;
    }
    pthread_mutex_destroy(&q->mu);
}

/* The descriptor follows the queue: its counter is set while a get would
 * return at once, and drained when it would not.  Under the mutex; the
 * writes cost a system call only when the state changes. */
static void sync_fd(nqi_msgq *q)
{
    int ready = q->head != NULL || q->final_error != 0;
    if (q->fd < 0 || ready == q->signalled) {
        return;
    }
    uint64_t v = 1;
    ssize_t n = ready ? write(q->fd, &v, sizeof(v)) : read(q->fd, &v, sizeof(v));
    (void)n; /* an eventfd takes the write and gives the read: never full, and set */
    q->signalled = ready;
}

int nqi_msgq_fd(nqi_msgq *q, int *fd)
{
    int rv = NQ_OK;
    pthread_mutex_lock(&q->mu);
    if (q->fd < 0) {
        q->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->signalled = 0;
        if (q->fd < 0) {
            rv = NQ_ESYS;
        }
    }
    sync_fd(q);
    *fd = q->fd;
    pthread_mutex_unlock(&q->mu);
    return rv;
}

/* Getters sleep while seq keeps the value they read under the mutex; a
 * push or the final error changes it (under the mutex) when any sleeps.
 * Returns 0, or ETIMEDOUT once the CLOCK_MONOTONIC deadline (NULL: none)
 * has passed. */
static int sleep_on(nqi_msgq *q, unsigned seen, const struct timespec *dl)
{
    long rv = syscall(SYS_futex, &q->seq, FUTEX_WAIT_BITSET_PRIVATE, seen, dl, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    return rv != 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

/* Under the mutex: how many sleeping getters to wake (0: none, -1: all). */
static int to_wake(nqi_msgq *q)
{
    if (q->waiters == 0) {
        return 0;
    }
    atomic_fetch_add_explicit(&q->seq, 1, memory_order_relaxed);
    /* A getter that takes only some peers' messages sleeps: every getter
     * must look. */
    return q->picky > 0 || q->waiters > 1 ? -1 : 1;
}

/* After the unlock, so that a getter does not wake only to wait for the
 * mutex. */
static void wake(nqi_msgq *q, int n)
{
    if (n != 0) {
        syscall(SYS_futex, &q->seq, FUTEX_WAKE_PRIVATE, n < 0 ? INT_MAX : n, NULL, NULL, 0);
    }
}

long nqi_msgq_push(nqi_msgq *q, nqi_msgq_peer *from, nq_msg *first, nq_msg *last)
{
    last->next = NULL;
    long n = 0;
    pthread_mutex_lock(&q->mu);
    nq_msg *prev = q->tail;
    for (nq_msg *m = first; m != NULL; prev = m, m = m->next) {
        m->prev = prev;
        m->peer_next = m->next;
        m->from = from;
        n++;
    }
    if (q->tail != NULL) {
        q->tail->next = first;
    } else {
        q->head = first;
    }
    q->tail = last;
    if (from->last != NULL) {
        from->last->peer_next = first;
    } else {
        from->first = first;
    }
    from->last = last;
    long count = from->count += n;
    sync_fd(q);
    int woken = to_wake(q);
    pthread_mutex_unlock(&q->mu);
    wake(q, woken);
    return count;
}

long nqi_msgq_count(nqi_msgq *q, const nqi_msgq_peer *from)
{
    pthread_mutex_lock(&q->mu);
    long count = from->count;
    pthread_mutex_unlock(&q->mu);
    return count;
}

/* Takes m out of the queue; it is its sender's oldest (taken and dropped
 * messages both leave a sender's list from the front). */
static void unlink_msg(nqi_msgq *q, nq_msg *m)
{
    if (m->prev != NULL) {
        m->prev->next = m->next;
    } else {
        q->head = m->next;
    }
    if (m->next != NULL) {
        m->next->prev = m->prev;
    } else {
        q->tail = m->prev;
    }
    nqi_msgq_peer *from = m->from;
    from->first = m->peer_next;
    if (from->first == NULL) {
        from->last = NULL;
    }
    from->count--;
    m->next = m->prev = m->peer_next = NULL;
    m->from = NULL;
}

size_t nqi_msgq_drop_oldest(nqi_msgq *q, nqi_msgq_peer *from, size_t n, nq_msg **out,
                            long *left)
{
    nq_msg *head = NULL;
    nq_msg *tail = NULL;
    size_t k = 0;
    pthread_mutex_lock(&q->mu);
    for (; k < n && from->first != NULL; k++) {
        nq_msg *m = from->first;
        unlink_msg(q, m);
        if (tail != NULL) {
            tail->next = m;
        } else {
            head = m;
        }
        tail = m;
    }
    *left = from->count;
    sync_fd(q);
    pthread_mutex_unlock(&q->mu);
    *out = head;
    return k;
}

void nqi_msgq_finish(nqi_msgq *q, int err)
{
    pthread_mutex_lock(&q->mu);
    if (q->final_error == 0) {
        q->final_error = err;
    }
    sync_fd(q);
    int woken = to_wake(q) != 0 ? -1 : 0;
    pthread_mutex_unlock(&q->mu);
    wake(q, woken);
}

/* The first queued message from one of the peers (all when npeers is 0). */
static nq_msg *find(nqi_msgq *q, const nq_id *peers, size_t npeers)
{
    if (npeers == 0) {
        return q->head;
    }
    for (nq_msg *m = q->head; m != NULL; m = m->next) {
        for (size_t i = 0; i < npeers; i++) {
            if (nq_id_equal(&m->peer, &peers[i])) {
                return m;
            }
        }
    }
    return NULL;
}

int nqi_msgq_pop_from(nqi_msgq *q, const nq_id *peers, size_t npeers, int64_t timeout_ms,
                      nq_msg **out, long *left)
{
    struct timespec dl = {0, 0};
    if (timeout_ms > 0) {
        dl = nqi_deadline_after(timeout_ms);
    }
    int rv = NQ_OK;
    pthread_mutex_lock(&q->mu);
    nq_msg *m = find(q, peers, npeers);
    while (m == NULL && q->final_error == 0) {
        if (timeout_ms == 0) {
            rv = NQ_ETIMEDOUT;
            break;
        }
        q->waiters++;
        q->picky += npeers > 0;
        unsigned seen = atomic_load_explicit(&q->seq, memory_order_relaxed);
        pthread_mutex_unlock(&q->mu);
        int timed_out = sleep_on(q, seen, timeout_ms < 0 ? NULL : &dl) == ETIMEDOUT;
        pthread_mutex_lock(&q->mu);
        q->waiters--;
        q->picky -= npeers > 0;
        m = find(q, peers, npeers);
        if (timed_out) {
            rv = m == NULL && q->final_error == 0 ? NQ_ETIMEDOUT : NQ_OK;
            break;
        }
    }
    if (rv == NQ_OK && m == NULL) {
        rv = q->final_error;
    }
    if (rv == NQ_OK) {
        nqi_msgq_peer *from = m->from;
        unlink_msg(q, m);
        if (left != NULL) {
            *left = from->count;
        }
        *out = m;
        sync_fd(q);
    }
    pthread_mutex_unlock(&q->mu);
    return rv;
}

int nqi_msgq_pop(nqi_msgq *q, int64_t timeout_ms, nq_msg **out, long *left)
{
    return nqi_msgq_pop_from(q, NULL, 0, timeout_ms, out, left);
}
