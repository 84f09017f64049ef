/*
 * A TCP server's listening socket, watched by worker 0, and the hand-over
 * of each accepted connection to the worker whose turn it is (a command to
 * that worker's loop, which admits it there).
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

/* How long accepting pauses when the process runs out of descriptors. */
#define RETRY_MS 100

/* An accepted socket on its way to another worker. */
typedef struct adopt {
    nqi_cmd cmd; /* first member */
    int fd;
} adopt;

/* Admits the socket as a new session on w (closing it if w cannot). */
static void take(nqi_worker *w, int fd)
{
    nqi_session *s = nqi_peers_admit(w);
    if (s == NULL) {
        close(fd);
        return;
    }
    nqi_tcp_conn_init(s);
    nqi_tcp_conn_begin(tcp_conn_of(s), fd);
}

static void run_adopt(nqi_loop *l, nqi_cmd *cmd)
{
    adopt *a = (adopt *)cmd;
    take(nqi_worker_of(l), a->fd);
    free(a);
}

static void discard_adopt(nqi_cmd *cmd)
{
    adopt *a = (adopt *)cmd;
    close(a->fd);
    free(a);
}

static void resume_accepting(nqi_timer *t)
{
    tcp_worker *tw = NQI_CONTAINER(t, tcp_worker, listen_retry);
    if (tw->listen.fd >= 0 && nqi_watch_set(&tw->w->loop, &tw->listen, EPOLLIN) != NQ_OK) {
        nqi_timer_arm(&tw->w->loop, &tw->listen_retry, nqi_now_ms() + RETRY_MS);
    }
}

static void on_listen(nqi_watch *watch, uint32_t events)
{
    (void)events;
    tcp_worker *tw = NQI_CONTAINER(watch, tcp_worker, listen);
    nqi_worker *w = tw->w;
    nq_comm *c = w->comm;
    while (tw->listen.fd >= 0) {
        int fd = accept4(tw->listen.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop watching the listener for a
                 * moment instead of spinning on it. */
                nqi_logf(&c->log, NQ_LOG_WARN, "accept failed: %s; pausing accepts",
                         strerror(errno));
                nqi_watch_stop(&w->loop, &tw->listen);
                nqi_timer_arm(&w->loop, &tw->listen_retry, nqi_now_ms() + RETRY_MS);
            }
            return;
        }
        nqi_tcp_socket_options(c, fd);
        unsigned int pick = atomic_fetch_add(&c->next_worker, 1) % (unsigned int)c->nworkers;
        nqi_worker *target = &c->workers[pick];
        adopt *a = target != w ? malloc(sizeof(*a)) : NULL;
        if (a == NULL) {
            take(w, fd);
            continue;
        }
        a->cmd.run = run_adopt;
        a->cmd.discard = discard_adopt;
        a->fd = fd;
        nqi_loop_post(&target->loop, &a->cmd);
    }
}

int nqi_tcp_listen(nq_comm *c)
{
    struct addrinfo *ai;
    int rv = nqi_netloc_resolve(c->opts.host, c->opts.port, 1, &c->log, &ai);
    if (rv != NQ_OK) {
        return rv;
    }
    int fd = -1;
    int err = 0;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
            break;
        }
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot listen on %s port %u: %s", c->opts.host,
                 (unsigned)c->opts.port, strerror(err));
        if (err == EADDRINUSE) {
            return NQ_EADDRINUSE;
        }
        return err == EADDRNOTAVAIL || err == EAFNOSUPPORT ? NQ_EADDR : NQ_ESYS;
    }
    nqi_worker *w = &c->workers[0];
    tcp_worker *tw = tcp_worker_of(w);
    nqi_watch_init(&tw->listen, fd, on_listen);
    nqi_timer_init(&tw->listen_retry, resume_accepting);
    if (nqi_watch_set(&w->loop, &tw->listen, EPOLLIN) != NQ_OK) {
        return NQ_ESYS; /* shutdown closes fd */
    }
    atomic_store(&c->local_port, nqi_socket_port(fd));
    return NQ_OK;
}

void nqi_tcp_stop_listening(nqi_worker *w)
{
    tcp_worker *tw = tcp_worker_of(w);
    if (tw->listen.fd < 0) {
        return;
    }
    nqi_watch_stop(&w->loop, &tw->listen);
    nqi_timer_cancel(&w->loop, &tw->listen_retry);
    close(tw->listen.fd);
    tw->listen.fd = -1;
}
