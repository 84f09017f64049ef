/*
 * The TCP transport (see tcp.h): non-blocking sockets on the
 * communicator's workers.  A server listens on worker 0 and spreads the
 * connections it accepts over NQ_OPT_WORKERS workers; a client connects on
 * its one worker.  TLS, when asked for, wraps each socket through the
 * stream operations of tls.c.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/registry.h"
#include "transports/tcp/tcp.h"

/* Reads that do not go straight into a message are staged here. */
#define STAGE_SIZE (256 * 1024)

/* Keep-alive probes before an idle peer is declared dead. */
#define PROBES 3

int64_t nqi_tcp_probe_interval_ms(const nq_comm *c)
{
    int64_t idle_s = c->opts.ints[NQ_OPT_KEEPALIVE_MS] / 1000;
    return idle_s <= 0 ? 0 : (idle_s / 3 > 0 ? idle_s / 3 : 1) * 1000;
}

int64_t nqi_tcp_dead_after_ms(const nq_comm *c)
{
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    return ka <= 0 ? 0 : ka + PROBES * nqi_tcp_probe_interval_ms(c);
}

/* Keep-alive measures a peer that went silent while idle.  No
 * TCP_USER_TIMEOUT: the kernel would apply it to a peer that acknowledges
 * every probe of a zero window, so holding a sender back with
 * NQ_OPT_QUEUE_SIZE would end its connection; conn.c watches the
 * acknowledgements instead while bytes are in flight. */
void nqi_tcp_socket_options(const nq_comm *c, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    if (ka <= 0) {
        return;
    }
    int idle = (int)(ka / 1000);
    int intvl = (int)(nqi_tcp_probe_interval_ms(c) / 1000);
    int cnt = PROBES;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int tcp_open(nq_comm *c)
{
    if (c->purpose == NQ_CLIENT) {
        nqi_tcp_conn_init(c->client);
    }
    int rv = nqi_opts_check_tls_roles(&c->opts, c->purpose, &c->log);
    if (rv != NQ_OK) {
        return rv;
    }
    tcp_comm *tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        return NQ_ENOMEM;
    }
    c->tp = tc;
    for (int i = 0; i < c->nworkers; i++) {
        tcp_worker *tw = calloc(1, sizeof(*tw));
        if (tw == NULL) {
            return NQ_ENOMEM;
        }
        c->workers[i].tp = tw;
        tw->w = &c->workers[i];
        nqi_watch_init(&tw->listen, -1, NULL);
        tw->stage = malloc(STAGE_SIZE);
        if (tw->stage == NULL) {
            return NQ_ENOMEM;
        }
        tw->stage_cap = STAGE_SIZE;
    }
    if (c->opts.tls && (rv = nqi_tls_ctx_new(c, &tc->ssl_ctx)) != NQ_OK) {
        return rv;
    }
    return c->purpose == NQ_SERVER ? nqi_tcp_listen(c) : NQ_OK;
}

static void tcp_worker_start(nqi_worker *w)
{
    if (w->comm->purpose == NQ_CLIENT) {
        nqi_tcp_connect_start(w);
    }
}

/* Reads and drops what has arrived, at most 64 KiB, without waiting. */
static void drain(int fd)
{
    uint8_t buf[4096];
    for (int i = 0; i < 16 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++) {
    }
}

static void tcp_session_end(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    if (t->s == NULL) {
        return; /* never set up */
    }
    t->ops->release(t);
    nqi_timer_cancel(&s->worker->loop, &t->stall);
    if (t->watch.fd >= 0) {
        nqi_watch_stop(&s->worker->loop, &t->watch);
        if (s->error == NQ_EAUTH && s->comm->purpose == NQ_SERVER) {
            /* A refused client's first bytes may be here unread; closing
             * over them would reset the connection before the client reads
             * why.  End it with FIN instead. */
            shutdown(t->watch.fd, SHUT_WR);
            drain(t->watch.fd);
        }
        close(t->watch.fd);
        t->watch.fd = -1;
    }
    if (t->addrs != NULL) {
        freeaddrinfo(t->addrs);
        t->addrs = t->addr_next = NULL;
    }
}

/* A client connects again: a fresh connection state, then as at open. */
static int tcp_redial(nqi_session *s)
{
    memset(tcp_conn_of(s), 0, sizeof(tcp_conn));
    nqi_tcp_conn_init(s);
    nqi_tcp_connect_start(s->worker);
    return NQ_OK;
}

static void tcp_shutdown(nq_comm *c)
{
    for (int i = 0; i < c->nworkers; i++) {
        tcp_worker *tw = c->workers[i].tp;
        if (tw == NULL) {
            continue;
        }
        if (tw->listen.fd >= 0) {
            close(tw->listen.fd);
        }
        free(tw->stage);
        free(tw->send_stage);
        free(tw);
        c->workers[i].tp = NULL;
    }
    tcp_comm *tc = c->tp;
    if (tc != NULL) {
        if (tc->ssl_ctx != NULL) {
            nqi_tls_ctx_free(tc->ssl_ctx);
        }
        free(tc);
        c->tp = NULL;
    }
}

const nqi_transport nqi_tcp_transport = {
    .name = "tcp",
    .session_size = sizeof(tcp_conn),
    .multi_worker = 1,
    .pausable = 1,
    .open = tcp_open,
    .worker_start = tcp_worker_start,
    .worker_closing = nqi_tcp_stop_listening,
    .flush = nqi_tcp_flush,
    .resume = nqi_tcp_resume,
    .session_end = tcp_session_end,
    .redial = tcp_redial,
    .acked = nqi_tcp_acked,
    .close = NULL,
    .shutdown = tcp_shutdown,
};
