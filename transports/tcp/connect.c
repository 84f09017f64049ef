/*
 * A TCP client's connection, made on its worker's loop: resolve the
 * netloc, then try each address in turn until one connects.
 */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

/* Tries the next resolved address; ends the session when none is left. */
static void try_next(tcp_conn *t)
{
    nqi_session *s = t->s;
    nq_comm *c = s->comm;
    while (t->addr_next != NULL) {
        struct addrinfo *a = t->addr_next;
        t->addr_next = a->ai_next;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        nqi_tcp_socket_options(c, fd);
        t->watch.fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            t->state = TCP_CONNECTING;
            nqi_tcp_update_events(t);
            return;
        }
        close(fd);
        t->watch.fd = -1;
    }
    nqi_logf(&c->log, NQ_LOG_ERROR, "cannot connect to %s port %u", c->opts.host,
             (unsigned)c->opts.port);
    nqi_session_end(s, NQ_ECONNREFUSED);
}

void nqi_tcp_connect_start(nqi_worker *w)
{
    nq_comm *c = w->comm;
    nqi_session *s = c->client;
    if (s == NULL || s->ended) {
        return;
    }
    tcp_conn *t = tcp_conn_of(s);
    int rv = nqi_netloc_resolve(c->opts.host, c->opts.port, 0, &c->log, &t->addrs);
    if (rv != NQ_OK) {
        nqi_session_end(s, rv);
        return;
    }
    t->addr_next = t->addrs;
    try_next(t);
}

/* 1 when the socket's two ends are the same address and port. */
static int connected_to_itself(int fd)
{
    struct sockaddr_storage here, there;
    socklen_t hl = sizeof(here), tl = sizeof(there);
    memset(&here, 0, sizeof(here));
    memset(&there, 0, sizeof(there));
    return getsockname(fd, (struct sockaddr *)&here, &hl) == 0 &&
           getpeername(fd, (struct sockaddr *)&there, &tl) == 0 && hl == tl &&
           memcmp(&here, &there, hl) == 0;
}

void nqi_tcp_connect_done(tcp_conn *t)
{
    nqi_session *s = t->s;
    nq_comm *c = s->comm;
    int fd = t->watch.fd;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        nqi_logf(&c->log, NQ_LOG_DEBUG, "connect attempt failed: %s", strerror(err));
        nqi_watch_stop(&s->worker->loop, &t->watch);
        close(fd);
        t->watch.fd = -1;
        try_next(t);
        return;
    }
    if (connected_to_itself(fd)) {
        /* Nothing listened and the kernel picked the server's port as our
         * own: TCP's simultaneous open joined the socket to itself. */
        nqi_logf(&c->log, NQ_LOG_WARN, "connected to itself (nothing listens on port %u)",
                 (unsigned)c->opts.port);
        nqi_watch_stop(&s->worker->loop, &t->watch);
        close(fd);
        t->watch.fd = -1;
        try_next(t);
        return;
    }
    freeaddrinfo(t->addrs);
    t->addrs = t->addr_next = NULL;
    nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
    atomic_store(&c->local_port, nqi_socket_port(fd));
    nqi_tcp_conn_begin(t, fd);
}
