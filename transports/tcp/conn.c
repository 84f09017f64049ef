/*
 * One TCP connection's I/O, on the loop of the worker that owns it: the
 * watcher's events, reads into the session's parser (large payloads
 * straight into their message), and flushes of the session's output.  The
 * bytes themselves move through the connection's stream operations, plain
 * or TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "transports/tcp/tcp.h"

/* Bytes a connection reads per event, so one busy peer cannot starve the
 * others on its worker. */
#define READ_BUDGET (8 * 1024 * 1024)
/* Payload reads go straight into the message when it is at least this
 * long.  After such a message the next header is read alone: a read into
 * the stage would run on into the next payload, and that part would be
 * copied twice. */
#define DIRECT_READ_MIN (64 * 1024)

/* Acknowledged delivery is asked for with one urgent byte, the first byte
 * either side sends (before TLS, if any).  Without SO_OOBINLINE the kernel
 * keeps it out of the byte stream, so a peer that does not look for it
 * (net-queue, or libnq that sends none itself) never sees it.  One that
 * looks must do so before its first read, which would skip the byte and
 * forget it: until it knows, it reads nothing (TLS reads through a gate,
 * tls.c). */
#define URGENT_ASK 0x01
/* A server that refuses a client (the admission callback, or its
 * certificate) says so with another urgent byte before it closes: a libnq
 * client that finds it reports NQ_EAUTH instead of a lost connection. */
#define URGENT_REFUSED 0x02
/* A side that does not ask for acknowledged delivery but keeps a
 * keep-alive asks for the heartbeat alone (core/ack.h) with this byte
 * instead (since 1.4): two such sides send each other PING frames. */
#define URGENT_BEAT 0x03

uint8_t nqi_tcp_own_urgent(const nq_comm *c)
{
    if (nqi_ack_wanted(c)) {
        return URGENT_ASK;
    }
    return c->opts.ints[NQ_OPT_KEEPALIVE_MS] > 0 ? URGENT_BEAT : 0;
}

static void on_event(nqi_watch *w, uint32_t events);
static void stall_check(nqi_timer *timer);

void nqi_tcp_conn_init(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    t->s = s;
    t->ops = &nqi_plain_ops;
    nqi_watch_init(&t->watch, -1, on_event);
    nqi_timer_init(&t->stall, stall_check);
}

/* While bytes are in flight, a live peer keeps acknowledging them; one
 * that acknowledged nothing for keep-alive's whole schedule is gone.  A
 * peer that closed its window (nothing in flight, bytes waiting for room:
 * it holds us back) is alive while it answers the kernel's probes of that
 * window, which the kernel spaces ever further apart (up to two minutes)
 * however promptly they are answered: it is gone once NQI_TCP_PROBES of them in a
 * row went unanswered.  An idle connection is left to keep-alive. */
static void stall_check(nqi_timer *timer)
{
    tcp_conn *t = NQI_CONTAINER(timer, tcp_conn, stall);
    nqi_session *s = t->s;
    nq_comm *c = s->comm;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (s->ended || t->watch.fd < 0 ||
        getsockopt(t->watch.fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
        return;
    }
    if (ti.tcpi_unacked == 0 && !t->want_write) {
        return;
    }
    int64_t dead_after = nqi_tcp_dead_after_ms(c);
    int window_closed = ti.tcpi_unacked == 0;
    if (window_closed && ti.tcpi_probes >= NQI_TCP_PROBES) {
        nqi_logf(&c->log, NQ_LOG_WARN,
                 "peer answered none of %u probes of its closed window; dropping it",
                 (unsigned)ti.tcpi_probes);
        nqi_session_end(s, NQ_ECONNRESET);
        return;
    }
    if (!window_closed && (int64_t)ti.tcpi_last_ack_recv >= dead_after) {
        nqi_logf(&c->log, NQ_LOG_WARN, "peer acknowledged nothing for %u ms; dropping it",
                 ti.tcpi_last_ack_recv);
        nqi_session_end(s, NQ_ECONNRESET);
        return;
    }
    nqi_timer_arm(&s->worker->loop, &t->stall, nqi_now_ms() + nqi_tcp_probe_interval_ms(c));
}

/* Bytes went out (or wait): watch for acknowledgements, if keep-alive is on. */
static void watch_acks(tcp_conn *t)
{
    nqi_session *s = t->s;
    int64_t every = nqi_tcp_probe_interval_ms(s->comm);
    if (every > 0 && !nqi_timer_armed(&t->stall)) {
        nqi_timer_arm(&s->worker->loop, &t->stall, nqi_now_ms() + every);
    }
}

void nqi_tcp_update_events(tcp_conn *t)
{
    nqi_session *s = t->s;
    if (t->watch.fd < 0 || s->ended) {
        return;
    }
    uint32_t want = 0;
    switch (t->state) {
    case TCP_CONNECTING:
        want = EPOLLOUT;
        break;
    case TCP_HANDSHAKE:
        want = t->ops->wants(t);
        break;
    case TCP_OPEN:
        if (!atomic_load(&s->paused)) {
            want |= EPOLLIN;
        }
        if (t->want_write) {
            want |= EPOLLOUT;
        }
        want |= t->ops->wants(t);
        break;
    default:
        return;
    }
    if (nqi_watch_set(&s->worker->loop, &t->watch, want) != NQ_OK) {
        nqi_session_end(s, NQ_ESYS);
    }
}

void nqi_tcp_flush(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    if (s->ended || t->state != TCP_OPEN) {
        return;
    }
    struct iovec pieces[1024];
    int max_pieces = t->ops->max_pieces < 1024 ? t->ops->max_pieces : 1024;
    size_t max_bytes = (size_t)s->comm->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    t->want_write = 0;
    int wrote = 0;
    for (;;) {
        size_t total;
        int n = nqi_session_out_iov(s, pieces, NULL, max_pieces, max_bytes, &total);
        if (n == 0) {
            break;
        }
        long w = t->ops->write(t, pieces, n, total);
        if (w == NQI_WOULDBLOCK) {
            t->want_write = 1;
            break;
        }
        if (w < 0) {
            nqi_session_end(s, (int)w);
            return;
        }
        nqi_session_out_commit(s, (size_t)w);
        wrote = 1;
        if (t->want_write) {
            break;
        }
    }
    if (wrote || t->want_write) {
        watch_acks(t);
    }
    if (nqi_session_finished(s)) {
        nqi_session_end(s, 0);
        return;
    }
    nqi_tcp_update_events(t);
}

/* t->urgent once the connection broke before it could tell. */
#define URGENT_BROKEN (-2)

/* Takes the peer's urgent byte if it has come: 1 if so, 0 if not, -1 if
 * the connection broke. */
static int take_urgent(tcp_conn *t)
{
    uint8_t b;
    if (recv(t->watch.fd, &b, 1, MSG_OOB | MSG_DONTWAIT) == 1) {
        t->urgent = b == URGENT_ASK ? 1 : -1;
        t->refused = b == URGENT_REFUSED;
        t->peer_beats = b == URGENT_BEAT;
        return 1;
    }
    if (errno != EINVAL && errno != EAGAIN && errno != EWOULDBLOCK) {
        /* Reset or closed (an urgent byte may still wait: ENOTCONN): the
         * read that follows reports how. */
        t->urgent = URGENT_BROKEN;
        return -1;
    }
    return 0;
}

int nqi_tcp_urgent_known(tcp_conn *t)
{
    if (t->urgent != 0 || nqi_tcp_own_urgent(t->s->comm) == 0) {
        return 1;
    }
    if (take_urgent(t) != 0) {
        return 1;
    }
    /* No urgent byte known yet.  MSG_PEEK passes over one without
     * consuming it: bytes there to be read behind where it would be mean
     * that it would have come first, had there been one.  It may have
     * come since the look above, with bytes behind it: look again. */
    uint8_t b;
    ssize_t n = recv(t->watch.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        if (take_urgent(t) == 0) {
            t->urgent = -1;
        }
        return 1;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        t->urgent = URGENT_BROKEN;
        return 1;
    }
    return 0;
}

int nqi_tcp_acked(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    if (!nqi_ack_wanted(s->comm)) {
        return 0;
    }
    nqi_tcp_urgent_known(t);
    return t->urgent == 1 ? 1 : t->urgent == -1 ? 0 : NQ_ECONNRESET;
}

int nqi_tcp_beats(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    return nqi_tcp_own_urgent(s->comm) == URGENT_BEAT && nqi_tcp_urgent_known(t) && t->peer_beats;
}

/* Client, until the server's INI: looks for the urgent byte of a refusal.
 * It must be taken before a read passes it (the kernel then forgets it),
 * so this runs before every read until the INI is in; the byte comes in
 * the segment whose arrival wakes the read. */
static void look_for_refusal(tcp_conn *t)
{
    nqi_session *s = t->s;
    uint8_t b;
    if (s->comm->purpose == NQ_CLIENT && !s->ini_received && !t->refused &&
        recv(t->watch.fd, &b, 1, MSG_OOB | MSG_DONTWAIT) == 1) {
        t->refused = b == URGENT_REFUSED;
    }
}

/* Client: the connection ended because the server refused it. */
static int refused(tcp_conn *t)
{
    look_for_refusal(t);
    if (t->refused) {
        nqi_logf(&t->s->comm->log, NQ_LOG_ERROR, "the server refused this client");
    }
    return t->refused;
}

void nqi_tcp_tell_refused(tcp_conn *t)
{
    uint8_t no = URGENT_REFUSED;
    if (!nqi_ack_wanted(t->s->comm) &&
        send(t->watch.fd, &no, 1, MSG_OOB | MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        nqi_logf(&t->s->comm->log, NQ_LOG_DEBUG, "could not tell a refused client why");
    }
}

void nqi_tcp_address(nqi_session *s, char *buf, size_t len)
{
    tcp_conn *t = tcp_conn_of(s);
    struct sockaddr_storage a;
    socklen_t alen = sizeof(a);
    char host[INET6_ADDRSTRLEN] = "";
    buf[0] = '\0';
    if (t->watch.fd < 0 || getpeername(t->watch.fd, (struct sockaddr *)&a, &alen) != 0) {
        return;
    }
    if (a.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(v4->sin_port));
    } else if (a.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(v6->sin6_port));
    }
}

/* While a large payload is being read, the socket wakes its loop only
 * once LOW_WATER_MAX bytes of it (or all that is left of it) have come, not
 * for every few segments: a fast sender's receiver otherwise sleeps and
 * wakes several times a message.  Never more than the payload still owes
 * the socket, so the wait always ends: a layer that holds input (TLS) may
 * hold up to held_max bytes of it once its read would block, the only way
 * do_read stops reading unpaused.  A FIN or an error ends the wait as well.
 * The timers that judge a peer by its input (the input watch, the
 * heartbeat) first read what waits below the mark (nqi_tcp_take_input), so
 * a slow sender is not taken for a silent one. */
#define LOW_WATER_MAX (256 * 1024)

static void set_low_water(tcp_conn *t)
{
    nqi_session *s = t->s;
    int want = 1;
    if (s->parser.in_payload && s->parser.need >= DIRECT_READ_MIN && !t->draining) {
        uint64_t left = s->parser.need - s->parser.have;
        size_t held = t->ops->held_max;
        left = left > held ? left - held : 1;
        want = left < LOW_WATER_MAX ? (int)left : LOW_WATER_MAX;
    }
    int have = t->low_water > 0 ? t->low_water : 1;
    if (want != have &&
        setsockopt(t->watch.fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)) == 0) {
        t->low_water = want;
    }
}

/* Reads what the connection has, within a budget (unless the layer holds
 * input of its own).  A connection whose peer is gone is drained to its
 * end, paused or not: what arrived is delivered, then the session ends. */
static void do_read(tcp_conn *t)
{
    nqi_session *s = t->s;
    tcp_worker *tw = tcp_worker_of(s->worker);
    size_t budget = READ_BUDGET;
    if (!nqi_tcp_urgent_known(t)) {
        return; /* nothing but perhaps the urgent byte yet */
    }
    while (!s->ended && (!atomic_load(&s->paused) || t->draining)) {
        uint8_t *win;
        size_t winlen = 0;
        int direct = nqi_session_in_window(s, &win, &winlen);
        if (direct < 0) {
            nqi_session_end(s, direct);
            return;
        }
        int into_msg = direct && s->parser.need >= DIRECT_READ_MIN;
        uint8_t *buf = into_msg ? win : tw->stage;
        size_t cap = into_msg ? winlen : tw->stage_cap;
        if (!direct && t->after_large) {
            cap = NQI_HEADER_SIZE - s->parser.header_have;
        } else if (direct) {
            t->after_large = into_msg;
        }
        look_for_refusal(t);
        long n = t->ops->read(t, buf, cap);
        if (n == NQI_WOULDBLOCK) {
            break;
        }
        if (n <= 0) {
            int err = n == 0 ? NQ_ECONNRESET : (int)n;
            if (err == NQ_ECONNRESET && refused(t)) {
                err = NQ_EAUTH;
            }
            if (n == 0 && s->fin_received) {
                /* The peer finished the handshake and left; send what we
                 * still can and end cleanly if nothing is lost. */
                nqi_tcp_flush(s);
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
        if (nqi_session_deliver(s) && !t->draining) {
            nqi_tcp_update_events(t);
            break;
        }
        if (t->ops->held_max == 0 && !t->draining) {
            if ((size_t)n >= budget) {
                break;
            }
            budget -= (size_t)n;
        }
    }
    if (!s->ended) {
        nqi_session_deliver(s);
        set_low_water(t);
        if (s->flush.queued || nqi_session_finished(s)) {
            nqi_tcp_flush(s);
        }
    }
}

/* One step of the TLS handshake; once done, the byte stream opens. */
static void handshake(tcp_conn *t)
{
    nqi_session *s = t->s;
    int rv = t->ops->handshake(t);
    if (rv < 0) {
        nqi_session_end(s, rv);
        return;
    }
    if (rv == 0) {
        nqi_tcp_update_events(t);
        return;
    }
    t->state = TCP_OPEN;
    nqi_tcp_update_events(t);
    nqi_tcp_flush(s);
    if (!s->ended) {
        do_read(t);
    }
}

static void handle(tcp_conn *t, uint32_t events)
{
    switch (t->state) {
    case TCP_CONNECTING:
        nqi_tcp_connect_done(t);
        return;
    case TCP_HANDSHAKE:
        handshake(t);
        return;
    case TCP_OPEN:
        if ((events & (EPOLLHUP | EPOLLERR)) && atomic_load(&t->s->paused)) {
            /* epoll reports a reset even to a paused connection, and would
             * go on reporting it: take what is left and end. */
            t->draining = 1;
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            do_read(t);
        }
        if (!t->s->ended && (events & EPOLLOUT)) {
            nqi_tcp_flush(t->s);
        }
        return;
    default:
        return;
    }
}

static void on_event(nqi_watch *w, uint32_t events)
{
    tcp_conn *t = NQI_CONTAINER(w, tcp_conn, watch);
    nqi_session *s = t->s;
    /* The session may end, and drop the loop's reference, inside its own
     * event. */
    nqi_session_ref(s);
    if (!s->ended) {
        handle(t, events);
    }
    nqi_session_unref(s);
}

void nqi_tcp_conn_begin(tcp_conn *t, int fd)
{
    nqi_session *s = t->s;
    tcp_comm *tc = s->comm->tp;
    t->watch.fd = fd;
    uint8_t ask = nqi_tcp_own_urgent(s->comm);
    if (ask != 0 && send(fd, &ask, 1, MSG_OOB | MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        nqi_logf(&s->comm->log, NQ_LOG_DEBUG, "could not ask for %s; the connection goes without",
                 ask == URGENT_ASK ? "acknowledged delivery" : "a heartbeat");
    }
    if (tc->ssl_ctx != NULL) {
        int rv = nqi_tls_attach(t, tc->ssl_ctx);
        if (rv != NQ_OK) {
            nqi_session_end(s, rv);
            return;
        }
        t->state = TCP_HANDSHAKE;
        handshake(t);
        return;
    }
    t->state = TCP_OPEN;
    nqi_tcp_update_events(t);
    nqi_tcp_flush(s);
}

void nqi_tcp_take_input(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    if (t->low_water > 1 && t->state == TCP_OPEN && !atomic_load(&s->paused)) {
        do_read(t);
    }
}

void nqi_tcp_resume(nqi_session *s)
{
    tcp_conn *t = tcp_conn_of(s);
    nqi_tcp_update_events(t);
    /* TLS may hold decrypted bytes the socket will not signal again. */
    handle(t, EPOLLIN);
}
