/*
 * loop.h: a generic event loop, one thread each.  It knows nothing of
 * communicators, sessions or transports; its users register:
 *
 *   watchers  a descriptor, the epoll events wanted, and a callback
 *             (level-triggered);
 *   timers    a monotonic time in milliseconds and a callback;
 *   commands  posted from any thread through a lock-free queue, each with
 *             the function that runs it on the loop and the one that
 *             releases it if the loop is gone;
 *   tasks     deferred to the end of the current round, each queued once
 *             however often it is asked for (a session's flush).
 *
 * One round: wait for events (until the next timer), run the callbacks of
 * the ready watchers, run the posted commands, run the deferred tasks, run
 * the timers that are due.  Everything except nqi_loop_post runs on the
 * loop's own thread (or, before the thread starts and after it is joined,
 * on the one thread that owns the loop).
 */
#ifndef NQ_CORE_LOOP_H
#define NQ_CORE_LOOP_H

#include <stdint.h>

#include "core/base.h"

typedef struct nqi_loop nqi_loop;

/* ---- watchers -------------------------------------------------------------- */

typedef struct nqi_watch nqi_watch;
/* events are the epoll events that are ready. */
typedef void (*nqi_watch_fn)(nqi_watch *w, uint32_t events);

struct nqi_watch {
    int fd;
    uint32_t events; /* what epoll watches for now */
    int added;       /* registered with epoll */
    nqi_watch_fn fn;
};

/* Prepares a watcher for fd (not yet registered). */
void nqi_watch_init(nqi_watch *w, int fd, nqi_watch_fn fn);
/* Registers the watcher or changes its events.  epoll reports errors and
 * hang-ups even for 0.  Returns NQ_OK or NQ_ESYS. */
int nqi_watch_set(nqi_loop *l, nqi_watch *w, uint32_t events);
/* Unregisters the watcher (the descriptor stays open); events already
 * collected for it in this round are dropped, so its memory may go. */
void nqi_watch_stop(nqi_loop *l, nqi_watch *w);

/* ---- timers ---------------------------------------------------------------- */

typedef struct nqi_timer nqi_timer;
typedef void (*nqi_timer_fn)(nqi_timer *t);

struct nqi_timer {
    int64_t when;  /* nqi_now_ms() time it is due */
    size_t slot;   /* position in the loop's heap + 1; 0 when not armed */
    nqi_timer_fn fn;
};

void nqi_timer_init(nqi_timer *t, nqi_timer_fn fn);
/* Arms (or moves) the timer to fire at when.  Returns NQ_OK or NQ_ENOMEM. */
int nqi_timer_arm(nqi_loop *l, nqi_timer *t, int64_t when);
/* Arms the timer for when unless it is already due earlier. */
int nqi_timer_arm_by(nqi_loop *l, nqi_timer *t, int64_t when);
void nqi_timer_cancel(nqi_loop *l, nqi_timer *t);
static inline int nqi_timer_armed(const nqi_timer *t)
{
    return t->slot != 0;
}

/* ---- commands from other threads -------------------------------------------- */

typedef struct nqi_cmd nqi_cmd;

struct nqi_cmd {
    nqi_mpsc_node node; /* first member: the queue links commands */
    /* Runs the command on the loop; owns c from then on. */
    void (*run)(nqi_loop *l, nqi_cmd *c);
    /* Releases a command that will never run (the loop stopped). */
    void (*discard)(nqi_cmd *c);
};

/* Hands c to the loop from any thread and wakes it. */
void nqi_loop_post(nqi_loop *l, nqi_cmd *c);

/* ---- tasks at the end of the round ---------------------------------------- */

typedef struct nqi_task nqi_task;

struct nqi_task {
    nqi_task *next;
    int queued;
    void (*fn)(nqi_task *t);
};

void nqi_task_init(nqi_task *t, void (*fn)(nqi_task *t));
/* Queues t to run once after this round's commands; returns 1 if it was
 * queued now, 0 if it already was. */
int nqi_loop_defer(nqi_loop *l, nqi_task *t);

/* ---- the loop ---------------------------------------------------------------- */

struct nqi_loop {
    pthread_t thread;
    int started;
    int epfd;
    nqi_watch wake;        /* the eventfd other threads write */
    nqi_mpsc cmds;
    atomic_int wake_pending;
    nqi_timer **heap;      /* armed timers, earliest first */
    size_t nheap;
    size_t heap_cap;
    nqi_task *tasks;       /* deferred, in order */
    nqi_task **tasks_tail;
    void *batch;           /* this round's ready events (struct epoll_event) */
    int nbatch;
    int stopping;
    void (*on_start)(nqi_loop *l);
    void *data;            /* the owner's */
};

/* Prepares the loop (no thread yet).  Returns NQ_OK, NQ_ENOMEM or
 * NQ_ESYS; nqi_loop_fini releases it either way. */
int nqi_loop_init(nqi_loop *l, void *data);
/* Starts the thread, which first calls on_start (may be NULL).  The thread
 * blocks every signal. */
int nqi_loop_start(nqi_loop *l, void (*on_start)(nqi_loop *l));
/* On the loop: leave after this round (commands posted until then run). */
void nqi_loop_stop(nqi_loop *l);
/* Waits for the thread to leave. */
void nqi_loop_join(nqi_loop *l);
/* Discards every command still posted (after join). */
void nqi_loop_drain(nqi_loop *l);
/* Drains, then releases the loop's descriptors and memory. */
void nqi_loop_fini(nqi_loop *l);

#endif
