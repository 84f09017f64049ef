/*
 * The TCP transport: non-blocking sockets on the communicator's event
 * loops.  Output leaves in vectored writes that batch every queued frame;
 * a large payload is read straight into its message buffer.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/nqi.h"

#define MAX_IOV 256
/* Pieces read from the session per write, and how they are gathered. */
#define GATHER_IOV 1024
#define GATHER_PIECE 256
#define GATHER_STAGE (64 * 1024)
#define READ_BUDGET (8 * 1024 * 1024)
/* Payload reads go straight into the message when at least this much of
 * it is still to come. */
#define DIRECT_READ_MIN (64 * 1024)

static void flush(nqi_session *s);
static void on_event(nqi_session *s, uint32_t events);

static void set_socket_options(nq_comm *c, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    if (ka <= 0) {
        return;
    }
    int idle = (int)(ka / 1000);
    int intvl = idle / 3 > 0 ? idle / 3 : 1;
    int cnt = 3;
    /* Unacknowledged data gives up on the same schedule as an idle peer. */
    unsigned int user_timeout = (unsigned int)(ka + (int64_t)intvl * cnt * 1000);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

static int resolve(nq_comm *c, int passive, struct addrinfo **out)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->opts.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : AI_ADDRCONFIG;
    int rv = getaddrinfo(c->opts.host, port, &hints, out);
    if (rv == EAI_ADDRFAMILY || (rv == EAI_NONAME && !passive)) {
        hints.ai_flags = passive ? AI_PASSIVE : 0;
        rv = getaddrinfo(c->opts.host, port, &hints, out);
    }
    if (rv != 0) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot resolve %s: %s", c->opts.host, gai_strerror(rv));
        return NQ_EADDR;
    }
    return NQ_OK;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int tcp_listen(nq_comm *c)
{
    struct addrinfo *ai;
    int rv = resolve(c, 1, &ai);
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
    nqi_loop *l = &c->loops[0];
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->listen_fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return NQ_ESYS;
    }
    l->listen_fd = fd;
    atomic_store(&c->local_port, bound_port(fd));
    return NQ_OK;
}

static void update_events(nqi_session *s)
{
    if (s->fd < 0 || s->ended) {
        return;
    }
    uint32_t want = 0;
    switch (s->conn_state) {
    case NQI_CONN_CONNECTING:
        want = EPOLLOUT;
        break;
    case NQI_CONN_TLS_HANDSHAKE:
        want = nqi_tls_wants(s);
        break;
    case NQI_CONN_OPEN:
        if (!atomic_load(&s->paused)) {
            want |= EPOLLIN;
        }
        if (s->want_write) {
            want |= EPOLLOUT;
        }
        if (s->ssl != NULL) {
            want |= nqi_tls_wants(s);
        }
        break;
    default:
        return;
    }
    if (want == s->epoll_events && s->in_epoll) {
        return;
    }
    struct epoll_event ev = {.events = want, .data.ptr = s};
    int op = s->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(s->loop->epfd, op, s->fd, &ev) != 0) {
        nqi_session_end(s, NQ_ESYS);
        return;
    }
    s->in_epoll = 1;
    s->epoll_events = want;
}

void nqi_tcp_adopt(nqi_loop *l, int fd)
{
    nq_comm *c = l->comm;
    if (l->closing) {
        close(fd);
        nqi_live_dec(c, 0);
        return;
    }
    nqi_session *s = nqi_session_new(c, l, fd);
    if (s == NULL) {
        close(fd);
        nqi_live_dec(c, 0);
        return;
    }
    l->pending_ini++;
    s->deadline_ms = nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    s->conn_state = NQI_CONN_OPEN;
    if (c->ssl_ctx != NULL) {
        int rv = nqi_tls_attach(s);
        if (rv != NQ_OK) {
            nqi_session_end(s, rv);
            return;
        }
        s->conn_state = NQI_CONN_TLS_HANDSHAKE;
    }
    update_events(s);
}

void nqi_tcp_on_listen(nqi_loop *l)
{
    nq_comm *c = l->comm;
    while (l->listen_fd >= 0) {
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop watching the listener for a
                 * moment instead of spinning on it. */
                nqi_logf(&c->log, NQ_LOG_WARN, "accept failed: %s; pausing accepts",
                         strerror(errno));
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->listen_fd, NULL);
                l->listen_retry_ms = nqi_now_ms() + 100;
            }
            return;
        }
        set_socket_options(c, fd);
        nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
        nqi_live_inc(c);
        unsigned int pick = atomic_fetch_add(&c->next_loop, 1) % (unsigned int)c->nloops;
        nqi_loop *target = &c->loops[pick];
        if (target == l || nqi_loop_post_simple(target, NQI_CMD_ADOPT, NULL, fd) != NQ_OK) {
            nqi_tcp_adopt(l, fd);
        }
    }
}

/* Client: tries the next resolved address. */
static void try_connect(nqi_session *s)
{
    nq_comm *c = s->comm;
    while (s->addr_next != NULL) {
        struct addrinfo *a = s->addr_next;
        s->addr_next = a->ai_next;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        set_socket_options(c, fd);
        s->fd = fd;
        s->in_epoll = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            s->conn_state = NQI_CONN_CONNECTING;
            update_events(s);
            return;
        }
        close(fd);
        s->fd = -1;
    }
    nqi_logf(&c->log, NQ_LOG_ERROR, "cannot connect to %s port %u", c->opts.host,
             (unsigned)c->opts.port);
    nqi_session_end(s, NQ_ECONNREFUSED);
}

static void client_start(nqi_loop *l)
{
    nqi_session *s = l->comm->client;
    if (s == NULL || l->index != 0) {
        return;
    }
    if (s->ended) {
        return;
    }
    int rv = resolve(s->comm, 0, &s->addrs);
    if (rv != NQ_OK) {
        nqi_session_end(s, rv);
        return;
    }
    s->addr_next = s->addrs;
    try_connect(s);
}

static void on_connected(nqi_session *s)
{
    nq_comm *c = s->comm;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        nqi_logf(&c->log, NQ_LOG_DEBUG, "connect attempt failed: %s", strerror(err));
        close(s->fd); /* also leaves epoll */
        s->fd = -1;
        s->in_epoll = 0;
        try_connect(s);
        return;
    }
    freeaddrinfo(s->addrs);
    s->addrs = s->addr_next = NULL;
    nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
    atomic_store(&c->local_port, bound_port(s->fd));
    if (c->ssl_ctx != NULL) {
        int rv = nqi_tls_attach(s);
        if (rv != NQ_OK) {
            nqi_session_end(s, rv);
            return;
        }
        s->conn_state = NQI_CONN_TLS_HANDSHAKE;
        on_event(s, EPOLLOUT);
        return;
    }
    s->conn_state = NQI_CONN_OPEN;
    update_events(s);
    flush(s);
}

/* Reads what the socket has, within a budget so one busy peer cannot starve
 * the others on its loop. */
static void do_read(nqi_session *s)
{
    uint8_t *stage = s->loop->stage;
    size_t budget = READ_BUDGET;
    while (!s->ended && !atomic_load(&s->paused)) {
        uint8_t *win;
        size_t winlen = 0;
        int direct = nqi_session_in_window(s, &win, &winlen);
        if (direct < 0) {
            nqi_session_end(s, direct);
            return;
        }
        uint64_t left = direct ? s->parser.need - s->parser.have : 0;
        int into_msg = direct && left >= DIRECT_READ_MIN;
        uint8_t *buf = into_msg ? win : stage;
        size_t cap = into_msg ? winlen : s->loop->stage_cap;
        long n;
        if (s->ssl != NULL) {
            n = nqi_tls_read(s, buf, cap);
        } else {
            n = read(s->fd, buf, cap);
            if (n < 0) {
                n = (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? NQI_WOULDBLOCK
                                                                                : NQ_ECONNRESET;
            }
        }
        if (n == NQI_WOULDBLOCK) {
            break;
        }
        if (n <= 0) {
            int err = n == 0 ? NQ_ECONNRESET : (int)n;
            if (n == 0 && s->fin_received) {
                /* The peer finished the handshake and left; send what we
                 * still can and end cleanly if nothing is lost. */
                flush(s);
                err = nqi_session_finished(s) ? 0 : NQ_ECONNRESET;
            }
            nqi_session_end(s, err);
            return;
        }
        int rv = into_msg ? nqi_session_in_commit(s, (size_t)n)
                          : nqi_session_in(s, buf, (size_t)n);
        if (rv != 0) {
            nqi_session_end(s, rv);
            return;
        }
        if (nqi_session_deliver(s)) {
            update_events(s);
            break;
        }
        if (s->ssl == NULL) {
            if ((size_t)n >= budget) {
                break;
            }
            budget -= (size_t)n;
        }
    }
    if (!s->ended) {
        nqi_session_deliver(s);
        if (s->dirty || nqi_session_finished(s)) {
            flush(s);
        }
    }
}

static void on_event(nqi_session *s, uint32_t events)
{
    switch (s->conn_state) {
    case NQI_CONN_CONNECTING:
        on_connected(s);
        return;
    case NQI_CONN_TLS_HANDSHAKE: {
        int rv = nqi_tls_handshake(s);
        if (rv < 0) {
            nqi_session_end(s, rv);
            return;
        }
        if (rv == 0) {
            update_events(s);
            return;
        }
        s->conn_state = NQI_CONN_OPEN;
        update_events(s);
        flush(s);
        if (!s->ended) {
            do_read(s);
        }
        return;
    }
    case NQI_CONN_OPEN:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            do_read(s);
        }
        if (!s->ended && (events & EPOLLOUT)) {
            flush(s);
        }
        return;
    default:
        return;
    }
}

/* TLS has no vectored write: small pieces are gathered into one record so
 * many small frames still cost one write. */
static long tls_write_iov(nqi_session *s, struct iovec *iov, int n)
{
    enum { STAGE = 16 * 1024 };
    if (iov[0].iov_len >= STAGE || n == 1) {
        return nqi_tls_write(s, iov[0].iov_base, iov[0].iov_len);
    }
    if (s->tls_stage == NULL) {
        s->tls_stage = malloc(STAGE);
        if (s->tls_stage == NULL) {
            return NQ_ENOMEM;
        }
    }
    size_t at = 0;
    for (int i = 0; i < n && at < STAGE; i++) {
        size_t take = iov[i].iov_len < STAGE - at ? iov[i].iov_len : STAGE - at;
        memcpy(s->tls_stage + at, iov[i].iov_base, take);
        at += take;
    }
    return nqi_tls_write(s, s->tls_stage, at);
}

/* The kernel copies each piece of a vectored write on its own, which for
 * frames of a few bytes costs more than the bytes.  gather() rewrites the
 * pieces in[0..n) as out[] (at most MAX_IOV), copying each piece of at most
 * GATHER_PIECE bytes into stage, so that runs of small frames go out as one
 * piece.  The pieces out[] covers are a prefix of in[]'s, in order; returns
 * their count and *total their bytes. */
static int gather(const struct iovec *in, int n, struct iovec *out, uint8_t *stage,
                  size_t *total)
{
    int m = 0;
    int staging = 0; /* out[m - 1] is a run in stage ending at used */
    size_t used = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t len = in[i].iov_len;
        if (len <= GATHER_PIECE && stage != NULL) {
            if (used + len > GATHER_STAGE || (!staging && m == MAX_IOV)) {
                break;
            }
            memcpy(stage + used, in[i].iov_base, len);
            if (staging) {
                out[m - 1].iov_len += len;
            } else {
                out[m].iov_base = stage + used;
                out[m].iov_len = len;
                m++;
                staging = 1;
            }
            used += len;
        } else {
            if (m == MAX_IOV) {
                break;
            }
            out[m++] = in[i];
            staging = 0;
        }
        bytes += len;
    }
    *total = bytes;
    return m;
}

static void flush(nqi_session *s)
{
    if (s->ended || s->conn_state != NQI_CONN_OPEN) {
        return;
    }
    struct iovec pieces[GATHER_IOV];
    struct iovec iov[MAX_IOV];
    size_t max_bytes = (size_t)s->comm->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    if (s->ssl == NULL && s->loop->send_stage == NULL) {
        s->loop->send_stage = malloc(GATHER_STAGE); /* none: pieces go out as they are */
    }
    s->want_write = 0;
    for (;;) {
        size_t total;
        int max_iov = s->ssl != NULL ? MAX_IOV : GATHER_IOV;
        int n = nqi_session_out_iov(s, pieces, NULL, max_iov, max_bytes, &total);
        if (n == 0) {
            break;
        }
        long w;
        if (s->ssl != NULL) {
            w = tls_write_iov(s, pieces, n);
        } else {
            n = gather(pieces, n, iov, s->loop->send_stage, &total);
            struct msghdr mh;
            memset(&mh, 0, sizeof(mh));
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)n;
            w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                w = (errno == EAGAIN || errno == EWOULDBLOCK) ? NQI_WOULDBLOCK : NQ_ECONNRESET;
            }
        }
        if (w == NQI_WOULDBLOCK) {
            s->want_write = 1;
            break;
        }
        if (w < 0) {
            nqi_session_end(s, (int)w);
            return;
        }
        nqi_session_out_commit(s, (size_t)w);
        if (s->ssl == NULL && (size_t)w < total) {
            s->want_write = 1;
            break;
        }
    }
    if (nqi_session_finished(s)) {
        nqi_session_end(s, 0);
        return;
    }
    update_events(s);
}

static int tcp_open(nq_comm *c)
{
    return c->purpose == NQ_SERVER ? tcp_listen(c) : NQ_OK;
}

static void resume(nqi_session *s)
{
    update_events(s);
    /* TLS may hold decrypted bytes the socket will not signal again. */
    on_event(s, EPOLLIN);
}

static void session_end(nqi_session *s)
{
    nqi_tls_free(s);
    if (s->fd >= 0) {
        close(s->fd); /* also removes it from epoll */
        s->fd = -1;
    }
    if (s->addrs != NULL) {
        freeaddrinfo(s->addrs);
        s->addrs = s->addr_next = NULL;
    }
}

const nqi_transport nqi_tcp_transport = {
    .open = tcp_open,
    .loop_start = client_start,
    .flush = flush,
    .on_event = on_event,
    .resume = resume,
    .on_command = NULL,
    .session_end = session_end,
    .close = NULL,
    .shutdown = NULL,
    .pausable = 1,
};
