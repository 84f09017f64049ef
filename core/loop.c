/*
 * Event loops: one thread per loop owns its sockets (epoll, level-triggered).
 * Other threads hand it commands through a lock-free queue and wake it with
 * an eventfd, written only when the loop is not already due to wake.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/nqi.h"

#define STAGE_SIZE (256 * 1024)
#define MAX_EVENTS 64
#define TIMER_MS 100

int nqi_loop_init(nqi_loop *l, nq_comm *comm, int index)
{
    memset(l, 0, sizeof(*l));
    l->comm = comm;
    l->index = index;
    l->listen_fd = -1;
    l->epfd = -1;
    l->evfd = -1;
    nqi_mpsc_init(&l->cmds);
    atomic_init(&l->wake_pending, 0);
    l->stage = malloc(STAGE_SIZE);
    if (l->stage == NULL) {
        return NQ_ENOMEM;
    }
    l->stage_cap = STAGE_SIZE;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0) {
        return NQ_ESYS;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->evfd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) {
        return NQ_ESYS;
    }
    return NQ_OK;
}

void nqi_cmd_release(nqi_cmd *c)
{
    int embedded = c->embedded;
    int borrowed = c->borrowed;
    if (c->type == NQI_CMD_SEND) {
        nqi_frame_done(c->frame, NQ_ECLOSED);
    } else if (c->type == NQI_CMD_ADOPT && c->fd >= 0) {
        close(c->fd);
    }
    if (c->session != NULL && !borrowed) {
        nqi_session_unref(c->session);
    }
    if (!embedded) {
        nqi_block_free(c);
    }
}

void nqi_loop_fini(nqi_loop *l)
{
    /* Commands posted after the loop stopped (a late get's resume, say)
     * still hold references. */
    nqi_mpsc_node *n;
    while ((n = nqi_mpsc_pop(&l->cmds)) != NULL) {
        nqi_cmd_release((nqi_cmd *)n);
    }
    if (l->listen_fd >= 0) {
        close(l->listen_fd);
        l->listen_fd = -1;
    }
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    if (l->evfd >= 0) {
        close(l->evfd);
    }
    l->epfd = l->evfd = -1;
    free(l->stage);
    l->stage = NULL;
    free(l->send_stage);
    l->send_stage = NULL;
}

void nqi_loop_post(nqi_loop *l, nqi_cmd *c)
{
    nqi_mpsc_push(&l->cmds, &c->node);
    /* A wake-up already pending covers this command too: the loop clears
     * the flag, then fences, then drains the queue.  Reading the flag before
     * writing it spares its cache line a transfer on every put. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&l->wake_pending, memory_order_relaxed) &&
        !atomic_exchange(&l->wake_pending, 1)) {
        uint64_t one = 1;
        ssize_t n;
        do {
            n = write(l->evfd, &one, sizeof(one));
        } while (n < 0 && errno == EINTR);
    }
}

int nqi_loop_post_simple(nqi_loop *l, int type, nqi_session *s, int fd)
{
    nqi_cmd *c = nqi_block_calloc(sizeof(*c));
    if (c == NULL) {
        return NQ_ENOMEM;
    }
    c->type = type;
    c->session = s;
    c->fd = fd;
    if (s != NULL) {
        nqi_session_ref(s);
    }
    nqi_loop_post(l, c);
    return NQ_OK;
}

static void resume(nqi_session *s)
{
    atomic_store(&s->resume_requested, 0);
    if (atomic_exchange(&s->paused, 0) && !s->ended && s->comm->transport->resume != NULL) {
        s->comm->transport->resume(s);
    }
}

static void begin_close(nqi_loop *l)
{
    nq_comm *c = l->comm;
    l->closing = 1;
    if (l->listen_fd >= 0) {
        close(l->listen_fd);
        l->listen_fd = -1;
    }
    nqi_session *next;
    for (nqi_session *s = l->sessions; s != NULL; s = next) {
        next = s->loop_next;
        nqi_session_ref(s);
        if (c->purpose == NQ_CLIENT) {
            nqi_session_queue_fin(s);
        } else if (!s->ini_received) {
            /* Strangers that never introduced themselves are not peers to
             * wait for. */
            nqi_session_end(s, NQ_ECLOSED);
        }
        resume(s);
        nqi_session_unref(s);
    }
}

static void run_command(nqi_loop *l, nqi_cmd *c)
{
    nqi_session *s = c->session;
    /* An embedded command dies with its frame, which the work below may
     * release: keep what we need from it first. */
    int embedded = c->embedded;
    int borrowed = c->borrowed;
    switch (c->type) {
    case NQI_CMD_SEND:
        if (s->ended) {
            nqi_frame_done(c->frame, s->error != 0 ? s->error : NQ_ECONNRESET);
        } else if (s->fin_queued) {
            nqi_frame_done(c->frame, l->comm->purpose == NQ_CLIENT ? NQ_ECLOSED : NQ_ECONNRESET);
        } else if (nqi_session_queue(s, c->frame) != NQ_OK) {
            nqi_frame_done(c->frame, NQ_ENOMEM);
        } else {
            nqi_session_mark_dirty(s);
        }
        break;
    case NQI_CMD_ADOPT:
        nqi_tcp_adopt(l, c->fd);
        break;
    case NQI_CMD_CLOSE:
        begin_close(l);
        break;
    case NQI_CMD_RESUME:
        resume(s);
        break;
    case NQI_CMD_ABORT: {
        nqi_session *next;
        for (nqi_session *x = l->sessions; x != NULL; x = next) {
            next = x->loop_next;
            nqi_session_end(x, NQ_ECLOSED);
        }
        break;
    }
    case NQI_CMD_STOP:
        l->stopping = 1;
        break;
    case NQI_CMD_TRANSPORT:
        l->comm->transport->on_command(l, c);
        break;
    default:
        break;
    }
    if (s != NULL && !borrowed) {
        nqi_session_unref(s);
    }
    if (!embedded) {
        nqi_block_free(c);
    }
}

static void drain_commands(nqi_loop *l)
{
    nqi_mpsc_node *n;
    while ((n = nqi_mpsc_pop(&l->cmds)) != NULL) {
        run_command(l, (nqi_cmd *)n);
    }
}

static void flush_dirty(nqi_loop *l)
{
    while (l->dirty != NULL) {
        nqi_session *s = l->dirty;
        l->dirty = s->dirty_next;
        s->dirty_next = NULL;
        s->dirty = 0;
        if (!s->ended) {
            s->comm->transport->flush(s);
        }
        nqi_session_unref(s);
    }
}

/* Closes server connections that did not finish INI in time and re-arms a
 * listener paused for lack of descriptors. */
static void check_timers(nqi_loop *l)
{
    int64_t now = nqi_now_ms();
    if (l->pending_ini > 0) {
        nqi_session *next;
        for (nqi_session *s = l->sessions; s != NULL; s = next) {
            next = s->loop_next;
            if (!s->ini_received && s->deadline_ms > 0 && now >= s->deadline_ms) {
                nqi_logf(&l->comm->log, NQ_LOG_WARN,
                         "closing a connection that sent no INI within %lld ms",
                         (long long)l->comm->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS]);
                nqi_session_end(s, NQ_ETIMEDOUT);
            }
        }
    }
    if (l->timer_ms > 0 && now >= l->timer_ms) {
        l->timer_ms = 0;
        if (l->comm->transport->on_timer != NULL) {
            l->comm->transport->on_timer(l);
        }
    }
    if (l->listen_retry_ms > 0 && now >= l->listen_retry_ms && l->listen_fd >= 0) {
        l->listen_retry_ms = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->listen_fd};
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->listen_fd, &ev);
    }
}

static void *loop_main(void *arg)
{
    nqi_loop *l = arg;
    nq_comm *c = l->comm;
    struct epoll_event evs[MAX_EVENTS];

    if (c->transport->loop_start != NULL) {
        c->transport->loop_start(l);
    }
    flush_dirty(l);
    for (;;) {
        if (l->stopping && l->sessions == NULL) {
            break;
        }
        int timeout = (l->pending_ini > 0 || l->listen_retry_ms > 0) ? TIMER_MS : -1;
        if (l->timer_ms > 0) {
            int64_t left = l->timer_ms - nqi_now_ms();
            left = left < 0 ? 0 : left;
            if (timeout < 0 || left < timeout) {
                timeout = (int)left;
            }
        }
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "epoll_wait failed: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &l->evfd) {
                uint64_t v;
                while (read(l->evfd, &v, sizeof(v)) < 0 && errno == EINTR) {
                }
                atomic_store(&l->wake_pending, 0);
                atomic_thread_fence(memory_order_seq_cst);
            } else if (p == &l->listen_fd) {
                nqi_tcp_on_listen(l);
            } else {
                /* The session may end, and drop the loop's reference,
                 * inside its own event. */
                nqi_session *s = p;
                nqi_session_ref(s);
                if (!s->ended) {
                    c->transport->on_event(s, evs[i].events);
                }
                nqi_session_unref(s);
            }
        }
        drain_commands(l);
        flush_dirty(l);
        check_timers(l);
    }
    /* Commands that raced with the stop still own references. */
    drain_commands(l);
    flush_dirty(l);
    return NULL;
}

int nqi_loop_start(nqi_loop *l)
{
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

void nqi_loop_join(nqi_loop *l)
{
    if (l->started) {
        pthread_join(l->thread, NULL);
        l->started = 0;
    }
}
