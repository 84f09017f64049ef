/*
 * The TCP transport (see tcp.h): non-blocking sockets on the
 * communicator's workers.  A server listens on worker 0 and spreads the
 * connections it accepts over NQ_OPT_WORKERS workers; a client connects on
 * its one worker.  TLS, when asked for, wraps each socket through the
 * stream operations of tls.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/registry.h"
#include "transports/tcp/tcp.h"

/* Reads that do not go straight into a message are staged here. */
#define STAGE_SIZE (256 * 1024)

int64_t nqi_tcp_probe_interval_ms(const nq_comm *c)
{
    int64_t idle_s = c->opts.ints[NQ_OPT_KEEPALIVE_MS] / 1000;
    return idle_s <= 0 ? 0 : (idle_s / 3 > 0 ? idle_s / 3 : 1) * 1000;
}

int64_t nqi_tcp_dead_after_ms(const nq_comm *c)
{
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    return ka <= 0 ? 0 : ka + NQI_TCP_PROBES * nqi_tcp_probe_interval_ms(c);
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
    int cnt = NQI_TCP_PROBES;
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
    if (rv == NQ_OK) {
        rv = nqi_opts_refuse(&c->opts,
                             NQI_TAKES_TLS_IDENTITY | NQI_TAKES_TLS_TRUST | NQI_TAKES_CLIENT_AUTH |
                                 NQI_TAKES_MIN_VERSION | NQI_TAKES_SERVER_NAME,
                             "TCP", &c->log);
    }
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
        nqi_list_init(&tw->lingering);
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

/* ---- refused connections close with FIN ---------------------------------------- */

/* A refused client may still be sending (its INI's followers).  Closing
 * over bytes that arrive would reset the connection, and a reset makes
 * the client's kernel drop the reason it has not read yet (the TLS alert,
 * the urgent byte).  So the server stops writing, then reads and drops
 * until the client closes, for at most LINGER_MS. */
#define LINGER_MS 2000

typedef struct lingering {
    nqi_node link;
    nqi_watch watch;
    nqi_timer timer;
    tcp_worker *tw;
} lingering;

static void linger_end(lingering *g)
{
    nqi_loop *l = &g->tw->w->loop;
    nqi_watch_stop(l, &g->watch);
    nqi_timer_cancel(l, &g->timer);
    close(g->watch.fd);
    nqi_list_remove(&g->link);
    free(g);
}

static void linger_read(nqi_watch *w, uint32_t events)
{
    (void)events;
    lingering *g = NQI_CONTAINER(w, lingering, watch);
    uint8_t buf[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            linger_end(g); /* the client closed, or the connection broke */
            return;
        }
        if (n < 0) {
            return;
        }
    }
}

static void linger_expired(nqi_timer *t)
{
    linger_end(NQI_CONTAINER(t, lingering, timer));
}

/* Takes fd over: FIN now, close once the client closes or LINGER_MS pass
 * (at once when memory runs out). */
static void linger(nqi_worker *w, int fd)
{
    tcp_worker *tw = tcp_worker_of(w);
    shutdown(fd, SHUT_WR);
    lingering *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        close(fd);
        return;
    }
    g->tw = tw;
    nqi_watch_init(&g->watch, fd, linger_read);
    nqi_timer_init(&g->timer, linger_expired);
    nqi_list_append(&tw->lingering, &g->link);
    if (nqi_watch_set(&w->loop, &g->watch, EPOLLIN) != NQ_OK ||
        nqi_timer_arm(&w->loop, &g->timer, nqi_now_ms() + LINGER_MS) != NQ_OK) {
        linger_end(g);
    }
}

/* After the loops stopped: what still lingers closes now. */
static void linger_stop_all(tcp_worker *tw)
{
    nqi_node *n;
    while ((n = nqi_list_first(&tw->lingering)) != NULL) {
        lingering *g = NQI_CONTAINER(n, lingering, link);
        close(g->watch.fd);
        nqi_list_remove(n);
        free(g);
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
            nqi_tcp_tell_refused(t);
            linger(s->worker, t->watch.fd);
        } else {
            close(t->watch.fd);
        }
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
        linger_stop_all(tw);
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
    .address = nqi_tcp_address,
    .flush = nqi_tcp_flush,
    .resume = nqi_tcp_resume,
    .take_input = nqi_tcp_take_input,
    .session_end = tcp_session_end,
    .redial = tcp_redial,
    .acked = nqi_tcp_acked,
    .beats = nqi_tcp_beats,
    .close = NULL,
    .shutdown = tcp_shutdown,
};
