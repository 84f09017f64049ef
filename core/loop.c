/*
 * The generic event loop (see loop.h): epoll, level-triggered (its own
 * wake-up descriptor edge-triggered), one thread.
 * Other threads hand it commands through a lock-free queue and wake it
 * with an eventfd, written only when the loop is not already due to wake.
 * Timers sit in a binary min-heap, so thousands of per-session deadlines
 * cost a logarithm each.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/frame.h"
#include "core/loop.h"

#define MAX_EVENTS 64

/* ---- watchers -------------------------------------------------------------- */

void nqi_watch_init(nqi_watch *w, int fd, nqi_watch_fn fn)
{
    w->fd = fd;
    w->events = 0;
    w->added = 0;
    w->fn = fn;
}

int nqi_watch_set(nqi_loop *l, nqi_watch *w, uint32_t events)
{
    if (w->added && w->events == events) {
        return NQ_OK;
    }
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) != 0) {
        return NQ_ESYS;
    }
    w->added = 1;
    w->events = events;
    return NQ_OK;
}

void nqi_watch_stop(nqi_loop *l, nqi_watch *w)
{
    if (w->added) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->added = 0;
        w->events = 0;
    }
    /* The rest of this round's batch must not reach a watcher that may be
     * freed once this returns. */
    struct epoll_event *evs = l->batch;
    for (int i = 0; i < l->nbatch; i++) {
        if (evs[i].data.ptr == w) {
            evs[i].data.ptr = NULL;
        }
    }
}

/* ---- timers: a binary min-heap of armed timers ------------------------------ */

static void heap_place(nqi_loop *l, size_t i, nqi_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(nqi_loop *l, size_t i)
{
    nqi_timer *t = l->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->when <= t->when) {
            break;
        }
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void sift_down(nqi_loop *l, size_t i)
{
    nqi_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->nheap) {
            break;
        }
        if (child + 1 < l->nheap && l->heap[child + 1]->when < l->heap[child]->when) {
            child++;
        }
        if (l->heap[child]->when >= t->when) {
            break;
        }
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void nqi_timer_init(nqi_timer *t, nqi_timer_fn fn)
{
    t->when = 0;
    t->slot = 0;
    t->fn = fn;
}

void nqi_timer_cancel(nqi_loop *l, nqi_timer *t)
{
    if (t->slot == 0) {
        return;
    }
    size_t i = t->slot - 1;
    t->slot = 0;
    nqi_timer *last = l->heap[--l->nheap];
    if (last == t) {
        return;
    }
    heap_place(l, i, last);
    sift_down(l, i);
    sift_up(l, last->slot - 1);
}

int nqi_timer_arm(nqi_loop *l, nqi_timer *t, int64_t when)
{
    if (t->slot != 0) {
        t->when = when;
        size_t i = t->slot - 1;
        sift_down(l, i);
        sift_up(l, t->slot - 1);
        return NQ_OK;
    }
    if (l->nheap == l->heap_cap) {
        size_t ncap = l->heap_cap == 0 ? 16 : l->heap_cap * 2;
        nqi_timer **nh = realloc(l->heap, ncap * sizeof(*nh));
        if (nh == NULL) {
            return NQ_ENOMEM;
        }
        l->heap = nh;
        l->heap_cap = ncap;
    }
    t->when = when;
    heap_place(l, l->nheap++, t);
    sift_up(l, t->slot - 1);
    return NQ_OK;
}

int nqi_timer_arm_by(nqi_loop *l, nqi_timer *t, int64_t when)
{
    if (t->slot != 0 && t->when <= when) {
        return NQ_OK;
    }
    return nqi_timer_arm(l, t, when);
}

/* Runs every timer that is due; one armed again for now runs next round. */
static void run_timers(nqi_loop *l)
{
    int64_t now = nqi_now_ms();
    size_t budget = l->nheap;
    while (l->nheap > 0 && l->heap[0]->when <= now && budget-- > 0) {
        nqi_timer *t = l->heap[0];
        nqi_timer_cancel(l, t);
        t->fn(t);
    }
}

/* Milliseconds epoll may sleep: until the next timer, or -1. */
static int wait_ms(const nqi_loop *l)
{
    if (l->tasks != NULL) {
        return 0;
    }
    if (l->nheap == 0) {
        return -1;
    }
    int64_t left = l->heap[0]->when - nqi_now_ms();
    if (left <= 0) {
        return 0;
    }
    return left > 60000 ? 60000 : (int)left;
}

/* ---- commands and tasks -------------------------------------------------- */

void nqi_loop_post(nqi_loop *l, nqi_cmd *c)
{
    nqi_mpsc_push(&l->cmds, &c->node);
    /* A wake-up already pending covers this command too, and so does a
     * loop that is awake: before it sleeps the loop clears the flag, then
     * fences, then looks at the queue again.  Reading the flag before
     * writing it spares its cache line a transfer on every put. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&l->wake_pending, memory_order_relaxed) &&
        !atomic_exchange(&l->wake_pending, 1)) {
        uint64_t one = 1;
        ssize_t n;
        do {
            n = write(l->wake.fd, &one, sizeof(one));
        } while (n < 0 && errno == EINTR);
    }
}

static void run_commands(nqi_loop *l)
{
    nqi_mpsc_node *n;
    while ((n = nqi_mpsc_pop(&l->cmds)) != NULL) {
        nqi_cmd *c = (nqi_cmd *)n;
        c->run(l, c);
    }
}

void nqi_loop_drain(nqi_loop *l)
{
    nqi_mpsc_node *n;
    while ((n = nqi_mpsc_pop(&l->cmds)) != NULL) {
        nqi_cmd *c = (nqi_cmd *)n;
        c->discard(c);
    }
}

void nqi_task_init(nqi_task *t, void (*fn)(nqi_task *t))
{
    t->next = NULL;
    t->queued = 0;
    t->fn = fn;
}

int nqi_loop_defer(nqi_loop *l, nqi_task *t)
{
    if (t->queued) {
        return 0;
    }
    t->queued = 1;
    t->next = NULL;
    *l->tasks_tail = t;
    l->tasks_tail = &t->next;
    return 1;
}

/* Runs the deferred tasks, including those queued while they run. */
static void run_tasks(nqi_loop *l)
{
    while (l->tasks != NULL) {
        nqi_task *t = l->tasks;
        l->tasks = t->next;
        if (l->tasks == NULL) {
            l->tasks_tail = &l->tasks;
        }
        t->next = NULL;
        t->queued = 0;
        t->fn(t);
    }
}

/* ---- the thread -------------------------------------------------------------- */

/* The eventfd is watched edge-triggered: every write is an event of its
 * own, so the counter is never read back (a system call less per wake-up;
 * it would take 2^64 wake-ups to fill).  The flag it stands for is cleared
 * just before the loop sleeps (loop_main), not here. */
static void on_wake(nqi_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
}

int nqi_loop_init(nqi_loop *l, void *data)
{
    memset(l, 0, sizeof(*l));
    l->data = data;
    l->epfd = -1;
    nqi_watch_init(&l->wake, -1, on_wake);
    nqi_mpsc_init(&l->cmds);
    atomic_init(&l->wake_pending, 0);
    l->tasks_tail = &l->tasks;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wake.fd < 0) {
        return NQ_ESYS;
    }
    return nqi_watch_set(l, &l->wake, EPOLLIN | EPOLLET);
}

static void *loop_main(void *arg)
{
    nqi_loop *l = arg;
    struct epoll_event evs[MAX_EVENTS];

    /* A round's completions wake their sleeping waiters once, at its end
     * (core/future.c). */
    nqi_future_hold_wakes(1);
    if (l->on_start != NULL) {
        l->on_start(l);
    }
    run_tasks(l);
    while (!l->stopping) {
        nqi_future_release_wakes();
        int timeout = wait_ms(l);
        if (timeout != 0) {
            /* About to sleep: from here a post must wake the loop.  A
             * command posted before the fence is seen here instead. */
            atomic_store(&l->wake_pending, 0);
            atomic_thread_fence(memory_order_seq_cst);
            if (!nqi_mpsc_empty(&l->cmds)) {
                timeout = 0;
            }
        }
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            break; /* only a broken epoll descriptor gets here */
        }
        l->batch = evs;
        l->nbatch = n > 0 ? n : 0;
        for (int i = 0; i < l->nbatch; i++) {
            nqi_watch *w = evs[i].data.ptr;
            if (w != NULL) {
                w->fn(w, evs[i].events);
            }
        }
        l->batch = NULL;
        l->nbatch = 0;
        run_commands(l);
        run_tasks(l);
        run_timers(l);
    }
    /* Commands that raced with the stop still own references. */
    run_commands(l);
    run_tasks(l);
    nqi_future_hold_wakes(0);
    return NULL;
}

int nqi_loop_start(nqi_loop *l, void (*on_start)(nqi_loop *l))
{
    l->on_start = on_start;
    /* I/O threads take no signals: the application's handlers stay on its
     * own threads, and a write to a dead peer cannot raise SIGPIPE for the
     * process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rv = pthread_create(&l->thread, NULL, loop_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        return NQ_ESYS;
    }
    l->started = 1;
    return NQ_OK;
}

void nqi_loop_stop(nqi_loop *l)
{
    l->stopping = 1;
}

void nqi_loop_join(nqi_loop *l)
{
    if (l->started) {
        pthread_join(l->thread, NULL);
        l->started = 0;
    }
}

void nqi_loop_fini(nqi_loop *l)
{
    nqi_loop_drain(l);
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    if (l->wake.fd >= 0) {
        close(l->wake.fd);
    }
    l->epfd = l->wake.fd = -1;
    free(l->heap);
    l->heap = NULL;
    l->nheap = l->heap_cap = 0;
}
