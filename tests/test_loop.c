/*
 * Unit tests of the generic event loop (core/loop.c) on its own: watchers,
 * timers, commands from other threads and deferred tasks, with pipes and
 * no communicator.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/nqi.h"
#include "harness.h"

/* What the callbacks saw, in order. */
struct trace {
    int seen[64];
    int n;
};

static void note(struct trace *t, int what)
{
    if (t->n < (int)NQI_ARRAY_LEN(t->seen)) {
        t->seen[t->n++] = what;
    }
}

/* ---- timers ------------------------------------------------------------------ */

struct tick {
    nqi_timer timer;
    int id;
    nqi_loop *loop;
    struct trace *trace;
    int stops; /* the last one leaves the loop */
};

static void on_tick(nqi_timer *t)
{
    struct tick *k = NQI_CONTAINER(t, struct tick, timer);
    note(k->trace, k->id);
    if (k->stops) {
        nqi_loop_stop(k->loop);
    }
}

/* Timers fire earliest first whatever the order they were armed in; a
 * cancelled one never fires, a moved one fires at its new time. */
static int test_timers_fire_in_time_order(void)
{
    nqi_loop l;
    CHECK_OK(nqi_loop_init(&l, NULL));
    struct trace tr = {{0}, 0};
    struct tick ticks[8];
    int64_t now = nqi_now_ms();
    /* ids 0..7 armed with these delays (ms) */
    static const int delays[8] = {70, 10, 50, 30, 90, 20, 60, 40};
    for (int i = 0; i < 8; i++) {
        ticks[i] = (struct tick){.id = i, .loop = &l, .trace = &tr};
        nqi_timer_init(&ticks[i].timer, on_tick);
        CHECK_OK(nqi_timer_arm(&l, &ticks[i].timer, now + delays[i]));
    }
    nqi_timer_cancel(&l, &ticks[2].timer);                   /* 50 ms: never */
    CHECK(!nqi_timer_armed(&ticks[2].timer));
    CHECK_OK(nqi_timer_arm(&l, &ticks[6].timer, now + 5));    /* 60 -> 5 ms */
    CHECK_OK(nqi_timer_arm_by(&l, &ticks[7].timer, now + 500)); /* later: stays 40 */
    ticks[4].stops = 1;                                        /* 90 ms: the last */
    CHECK_OK(nqi_loop_start(&l, NULL));
    nqi_loop_join(&l);
    static const int want[7] = {6, 1, 5, 3, 7, 0, 4};
    CHECK(tr.n == 7);
    for (int i = 0; i < 7; i++) {
        CHECK(tr.seen[i] == want[i]);
    }
    CHECK(nqi_now_ms() - now >= 90);
    nqi_loop_fini(&l);
    return 0;
}

/* Many timers armed and cancelled at random keep the heap in order. */
static int test_timer_heap_survives_random_changes(void)
{
    nqi_loop l;
    CHECK_OK(nqi_loop_init(&l, NULL));
    enum { N = 500 };
    static nqi_timer t[N];
    unsigned seed = 7;
    for (int i = 0; i < N; i++) {
        nqi_timer_init(&t[i], NULL);
        seed = seed * 1103515245u + 12345u;
        CHECK_OK(nqi_timer_arm(&l, &t[i], (int64_t)(seed % 10000)));
    }
    for (int round = 0; round < 2000; round++) {
        seed = seed * 1103515245u + 12345u;
        nqi_timer *x = &t[seed % N];
        if (seed & 0x10000) {
            nqi_timer_cancel(&l, x);
        } else {
            CHECK_OK(nqi_timer_arm(&l, x, (int64_t)((seed >> 8) % 10000)));
        }
    }
    /* Every parent is due no later than its children, and every armed timer
     * knows its slot. */
    for (size_t i = 0; i < l.nheap; i++) {
        CHECK(l.heap[i]->slot == i + 1);
        if (i > 0) {
            CHECK(l.heap[(i - 1) / 2]->when <= l.heap[i]->when);
        }
    }
    size_t armed = 0;
    for (int i = 0; i < N; i++) {
        armed += nqi_timer_armed(&t[i]);
    }
    CHECK(armed == l.nheap);
    nqi_loop_fini(&l);
    return 0;
}

/* ---- watchers ---------------------------------------------------------------- */

struct pipe_watch {
    nqi_watch watch;
    int id;
    nqi_loop *loop;
    struct trace *trace;
    struct pipe_watch *victim; /* stopped by this one's callback */
    int write_end;
};

static void on_readable(nqi_watch *w, uint32_t events)
{
    struct pipe_watch *p = NQI_CONTAINER(w, struct pipe_watch, watch);
    note(p->trace, events & EPOLLIN ? p->id : -p->id);
    char buf[16];
    while (read(w->fd, buf, sizeof(buf)) > 0) {
    }
    if (p->victim != NULL) {
        nqi_watch_stop(p->loop, &p->victim->watch);
    }
    nqi_loop_stop(p->loop);
}

/* A watcher sees its descriptor become readable; a watcher stopped by
 * another's callback in the same round does not run, though its event was
 * already collected. */
static int test_watchers_report_readiness_and_stop_cleanly(void)
{
    nqi_loop l;
    CHECK_OK(nqi_loop_init(&l, NULL));
    struct trace tr = {{0}, 0};
    int a[2], b[2];
    CHECK(pipe2(a, O_NONBLOCK) == 0 && pipe2(b, O_NONBLOCK) == 0);
    struct pipe_watch pa = {.id = 1, .loop = &l, .trace = &tr};
    struct pipe_watch pb = {.id = 2, .loop = &l, .trace = &tr};
    pa.victim = &pb;
    pb.victim = &pa;
    nqi_watch_init(&pa.watch, a[0], on_readable);
    nqi_watch_init(&pb.watch, b[0], on_readable);
    CHECK_OK(nqi_watch_set(&l, &pa.watch, EPOLLIN));
    CHECK_OK(nqi_watch_set(&l, &pb.watch, EPOLLIN));
    /* Both ready before the loop's first wait: one round sees both. */
    CHECK(write(a[1], "x", 1) == 1);
    CHECK(write(b[1], "y", 1) == 1);
    CHECK_OK(nqi_loop_start(&l, NULL));
    nqi_loop_join(&l);
    CHECK(tr.n == 1);
    CHECK(tr.seen[0] == 1 || tr.seen[0] == 2);
    nqi_loop_fini(&l);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    return 0;
}

/* ---- commands and tasks ---------------------------------------------------------- */

struct counted_cmd {
    nqi_cmd cmd;
    int producer;
    int seq;
    struct tally *tally;
};

struct tally {
    int last[2];   /* the last seq seen per producer */
    int in_order;
    int ran;
    atomic_int discarded;
    nqi_task task;
    int task_runs;
};

static void run_counted(nqi_loop *l, nqi_cmd *c)
{
    struct counted_cmd *k = (struct counted_cmd *)c;
    struct tally *t = k->tally;
    if (k->seq != t->last[k->producer] + 1) {
        t->in_order = 0;
    }
    t->last[k->producer] = k->seq;
    t->ran++;
    /* Asked for by every command, the task runs once per round. */
    nqi_loop_defer(l, &t->task);
    free(k);
    if (t->ran == 2 * 1000) {
        nqi_loop_stop(l);
    }
}

static void discard_counted(nqi_cmd *c)
{
    struct counted_cmd *k = (struct counted_cmd *)c;
    atomic_fetch_add(&k->tally->discarded, 1);
    free(k);
}

static void on_task(nqi_task *task)
{
    NQI_CONTAINER(task, struct tally, task)->task_runs++;
}

struct producer {
    nqi_loop *loop;
    struct tally *tally;
    int id;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 1; i <= 1000; i++) {
        struct counted_cmd *k = malloc(sizeof(*k));
        if (k == NULL) {
            abort();
        }
        *k = (struct counted_cmd){{.run = run_counted, .discard = discard_counted}, p->id, i,
                                  p->tally};
        nqi_loop_post(p->loop, &k->cmd);
    }
    return NULL;
}

/* Commands from two threads all run, each thread's in order; deferred
 * tasks run once per round however often they are asked for; commands
 * posted after the loop left are discarded, not lost. */
static int test_commands_run_in_order_and_late_ones_are_discarded(void)
{
    nqi_loop l;
    CHECK_OK(nqi_loop_init(&l, NULL));
    struct tally t = {.in_order = 1};
    atomic_init(&t.discarded, 0);
    nqi_task_init(&t.task, on_task);
    CHECK_OK(nqi_loop_start(&l, NULL));
    pthread_t th[2];
    struct producer p[2] = {{&l, &t, 0}, {&l, &t, 1}};
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&th[i], NULL, produce, &p[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    nqi_loop_join(&l);
    CHECK(t.ran == 2000);
    CHECK(t.in_order);
    CHECK(t.task_runs >= 1 && t.task_runs <= t.ran);
    CHECK(!t.task.queued);
    struct producer late = {&l, &t, 0};
    t.last[0] = 0;
    produce(&late);
    nqi_loop_fini(&l);
    CHECK(atomic_load(&t.discarded) == 1000);
    return 0;
}

/* ---- wake-ups ---------------------------------------------------------------------- */

/* One command at a time: the poster waits until the loop has run it, so the
 * loop drains its queue and sleeps again before nearly every post. */
struct ping {
    nqi_cmd cmd; /* first member */
    struct pinger *by;
};

struct pinger {
    nqi_loop *loop;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    struct ping ping; /* outlives the poster: it may still be queued */
    int ran;          /* this poster's commands run, under mu */
    int stalled;      /* one did not run within the bound */
};

static void run_ping(nqi_loop *l, nqi_cmd *c)
{
    (void)l;
    struct pinger *p = ((struct ping *)c)->by;
    pthread_mutex_lock(p->mu);
    p->ran++;
    pthread_cond_broadcast(p->cv);
    pthread_mutex_unlock(p->mu);
}

static void run_stop(nqi_loop *l, nqi_cmd *c)
{
    (void)c;
    nqi_loop_stop(l);
}

static void discard_nothing(nqi_cmd *c)
{
    (void)c;
}

enum { PINGS = 10000 };

static void *ping_and_wait(void *arg)
{
    struct pinger *p = arg;
    p->ping = (struct ping){{.run = run_ping, .discard = discard_nothing}, p};
    for (int i = 0; i < PINGS && !p->stalled; i++) {
        nqi_loop_post(p->loop, &p->ping.cmd);
        struct timespec dl = nqi_deadline_after(10000);
        pthread_mutex_lock(p->mu);
        while (p->ran == i && !p->stalled) {
            if (nqi_cond_until(p->cv, p->mu, &dl) != 0) {
                p->stalled = 1;
            }
        }
        pthread_mutex_unlock(p->mu);
    }
    return NULL;
}

/* Two threads post to a loop that sleeps between their commands, each
 * waiting for its command to run before the next: every post wakes the
 * loop (a lost wake-up leaves a poster waiting out its 10 s bound). */
static int test_every_post_wakes_a_sleeping_loop(void)
{
    nqi_loop l;
    CHECK_OK(nqi_loop_init(&l, NULL));
    CHECK_OK(nqi_loop_start(&l, NULL));
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    nqi_cond_init(&cv);
    struct pinger p[2] = {{.loop = &l, .mu = &mu, .cv = &cv}, {.loop = &l, .mu = &mu, .cv = &cv}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&th[i], NULL, ping_and_wait, &p[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    nqi_cmd stop = {.run = run_stop, .discard = discard_nothing};
    nqi_loop_post(&l, &stop);
    /* Woken by hand as well, so that a loop that lost its wake-ups fails
     * the checks below rather than hanging here. */
    uint64_t one = 1;
    CHECK(write(l.wake.fd, &one, sizeof(one)) == sizeof(one));
    nqi_loop_join(&l);
    nqi_loop_fini(&l);
    CHECK(!p[0].stalled && !p[1].stalled);
    CHECK(p[0].ran == PINGS && p[1].ran == PINGS);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_timers_fire_in_time_order),
    TEST(test_timer_heap_survives_random_changes),
    TEST(test_watchers_report_readiness_and_stop_cleanly),
    TEST(test_commands_run_in_order_and_late_ones_are_discarded),
    TEST(test_every_post_wakes_a_sleeping_loop),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
