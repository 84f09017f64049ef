/* Futures: one per put, completed on an I/O thread when every peer's copy
 * has been handed to the transport.
 *
 * A future is one small block (its fields fit one cache line), touched by
 * the putting thread and by the I/O thread that completes it.  The
 * completion, the callback and the waiters meet on one atomic word, flags:
 * completing a future nobody waits on takes no lock, and a waiter sleeps on
 * that word itself (a futex), so a future needs no mutex or condition
 * variable to set up or tear down. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/frame.h"

/* COMPLETING: the result is final and the callback (if any) is being run;
 * DONE: waiters may return; CB_CLAIMED: a callback is being registered;
 * CB_SET: it is registered; WAITER: someone sleeps (or is about to) on
 * flags. */
enum { COMPLETING = 1, DONE = 2, CB_CLAIMED = 4, CB_SET = 8, WAITER = 16 };

struct nq_future {
    atomic_int flags;
    atomic_int parts;
    atomic_int first_error;
    atomic_int refs;
    int result;
    nq_future_cb cb;
    void *cb_ctx;
    nq_comm *comm;         /* the put's communicator                  */
    atomic_int cancelled;  /* nq_future_cancel asked                   */
    atomic_int withdrawn;  /* copies taken back before they started    */
};

static void future_unref(nq_future *f)
{
    if (atomic_fetch_sub(&f->refs, 1) == 1) {
        nqi_block_free(f);
    }
}

nq_future *nqi_future_new(int parts)
{
    nq_future *f = nqi_block_alloc(sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    atomic_init(&f->flags, 0);
    atomic_init(&f->parts, parts);
    atomic_init(&f->first_error, 0);
    atomic_init(&f->refs, 2); /* the caller's, and one released on completion */
    f->result = 0;
    f->cb = NULL;
    f->cb_ctx = NULL;
    f->comm = NULL;
    atomic_init(&f->cancelled, 0);
    atomic_init(&f->withdrawn, 0);
    return f;
}

void nqi_future_set_comm(nq_future *f, nq_comm *c)
{
    f->comm = c;
}

nq_comm *nqi_future_comm(const nq_future *f)
{
    return f->comm;
}

int nqi_future_cancel_asked(nq_future *f)
{
    return atomic_exchange(&f->cancelled, 1);
}

int nqi_future_cancelled(nq_future *f)
{
    return atomic_load(&f->cancelled);
}

void nqi_future_withdrawn(nq_future *f)
{
    atomic_fetch_add(&f->withdrawn, 1);
}

int nqi_future_withdrawn_count(nq_future *f)
{
    return atomic_load(&f->withdrawn);
}

/* Sleeps while flags still reads seen, until the absolute CLOCK_MONOTONIC
 * deadline (NULL: no limit).  Returns 0, or ETIMEDOUT. */
static int flags_wait(nq_future *f, int seen, const struct timespec *deadline)
{
    long rv = syscall(SYS_futex, &f->flags, FUTEX_WAIT_BITSET_PRIVATE, seen, deadline, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    return rv != 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

static void flags_wake(nq_future *f)
{
    syscall(SYS_futex, &f->flags, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- wake-ups held to the end of an I/O thread's round ----------------------
 *
 * One write can complete hundreds of futures, and a caller that waits on
 * the oldest of them, woken at the first, would sleep again at the next
 * one still open.  On an I/O thread that holds them, completions that find
 * a sleeping waiter keep the future and wake it when the round ends, once
 * the rest of the write is complete too.  DONE is set at once either way:
 * a waiter that has not gone to sleep yet does not wait for the round. */

enum { HELD_MAX = 64 };

typedef struct held_wakes {
    int on;
    int n;
    nq_future *f[HELD_MAX];
} held_wakes;

static _Thread_local held_wakes held;

/* The completion's last duty: wake the sleepers (now or at the round's
 * end) and drop its reference. */
static void wake_and_release(nq_future *f, int waiter)
{
    if (waiter && held.on && held.n < HELD_MAX) {
        held.f[held.n++] = f; /* the completion's reference goes with it */
        return;
    }
    if (waiter) {
        flags_wake(f);
    }
    future_unref(f);
}

void nqi_future_hold_wakes(int on)
{
    nqi_future_release_wakes();
    held.on = on;
}

void nqi_future_release_wakes(void)
{
    for (int i = 0; i < held.n; i++) {
        flags_wake(held.f[i]);
        future_unref(held.f[i]);
    }
    held.n = 0;
}

/* The callback runs before waiters wake, so a wait that returns has seen
 * the callback's effects.  Exactly one of complete() and nq_future_on_done
 * runs the callback: whichever sets its flag second. */
static void complete(nq_future *f)
{
    f->result = atomic_load_explicit(&f->first_error, memory_order_relaxed);
    /* Without a callback the two flags go at once (the common case: one
     * atomic operation); a callback set meanwhile finds COMPLETING and
     * runs in nq_future_on_done, as it would have a moment later. */
    int old = atomic_load_explicit(&f->flags, memory_order_relaxed);
    while (!(old & CB_SET)) {
        if (atomic_compare_exchange_weak(&f->flags, &old, old | COMPLETING | DONE)) {
            wake_and_release(f, old & WAITER);
            return;
        }
    }
    old = atomic_fetch_or(&f->flags, COMPLETING);
    if (old & CB_SET) {
        f->cb(f, f->result, f->cb_ctx);
    }
    old = atomic_fetch_or(&f->flags, DONE);
    wake_and_release(f, old & WAITER);
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
    /* The last part outstanding is this one alone: no other thread counts
     * it down. */
    if (atomic_load_explicit(&f->parts, memory_order_acquire) == 1 ||
        atomic_fetch_sub(&f->parts, 1) == 1) {
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
    struct timespec dl;
    if (timeout_ms > 0) {
        dl = nqi_deadline_after(timeout_ms);
    }
    int seen = atomic_fetch_or(&future->flags, WAITER) | WAITER;
    while (!(seen & DONE)) {
        if (flags_wait(future, seen, timeout_ms > 0 ? &dl : NULL) == ETIMEDOUT) {
            break;
        }
        seen = atomic_load(&future->flags);
    }
    return atomic_load(&future->flags) & DONE ? future->result : NQ_ETIMEDOUT;
}

int nq_future_on_done(nq_future *future, nq_future_cb cb, void *ctx)
{
    if (future == NULL || cb == NULL) {
        return NQ_EINVAL;
    }
    if (atomic_fetch_or(&future->flags, CB_CLAIMED) & CB_CLAIMED) {
        return NQ_EINVAL; /* one callback per future */
    }
    future->cb = cb;
    future->cb_ctx = ctx;
    int old = atomic_fetch_or(&future->flags, CB_SET);
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
