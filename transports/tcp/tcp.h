/*
 * tcp.h: the TCP transport's own state and the seams between its files.
 *
 *   tcp.c      the transport table, open and shutdown, socket options
 *   listen.c   a server's listening socket (worker 0) and the hand-over of
 *              accepted connections to the workers
 *   connect.c  a client's connection: resolve, try each address
 *   conn.c     one connection's I/O on its worker: events, reads, flushes
 *   plain.c    the stream operations on a plain socket
 *   tls.c      the same operations over OpenSSL, and the TLS context
 *
 * Everything here runs on the loop of the worker that owns the connection,
 * except open and shutdown (the caller of nq_open / nq_destroy).
 */
#ifndef NQ_TRANSPORTS_TCP_TCP_H
#define NQ_TRANSPORTS_TCP_TCP_H

#include <sys/uio.h>

#include "core/nqi.h"

typedef struct tcp_conn tcp_conn;

/* "Try again when the socket is ready" from a stream operation. */
#define NQI_WOULDBLOCK (-1000)

/* How bytes move on a connection: a plain socket, or TLS over it.  A
 * connection swaps in one table; conn.c never asks which. */
typedef struct nqi_stream_ops {
    /* Most pieces of output handed to one write. */
    int max_pieces;
    /* The most bytes of input the layer may keep from the socket once a
     * read would block (TLS: the start of one record), or 0.  A layer that
     * may hold input the socket no longer signals is read until its read
     * would block. */
    size_t held_max;
    /* Reads up to len bytes: the count, 0 at EOF, NQI_WOULDBLOCK, or an nq
     * error. */
    long (*read)(tcp_conn *t, uint8_t *buf, size_t len);
    /* Writes a prefix of the n pieces (total bytes): the count written,
     * NQI_WOULDBLOCK, or an nq error.  Sets t->want_write when the socket
     * took less than it was offered. */
    long (*write)(tcp_conn *t, const struct iovec *pieces, int n, size_t total);
    /* Advances the handshake: 1 done, 0 in progress, or an nq error. */
    int (*handshake)(tcp_conn *t);
    /* epoll events the layer itself waits for. */
    uint32_t (*wants)(const tcp_conn *t);
    /* Releases the layer's state; the socket is still open. */
    void (*release)(tcp_conn *t);
} nqi_stream_ops;

extern const nqi_stream_ops nqi_plain_ops;
extern const nqi_stream_ops nqi_tls_ops;

enum tcp_state { TCP_RESOLVING = 0, TCP_CONNECTING, TCP_HANDSHAKE, TCP_OPEN };

/* One connection: the transport's part of a session. */
struct tcp_conn {
    nqi_session *s;
    nqi_watch watch;           /* the socket; fd -1 when there is none */
    int state;
    int want_write;            /* the last write found the socket full */
    const nqi_stream_ops *ops;
    void *ssl;                 /* TLS: the connection's SSL */
    uint32_t tls_want;         /* TLS: the direction it waits for */
    uint8_t *tls_stage;        /* TLS: small frames gathered into one record */
    nqi_timer stall;           /* while bytes are in flight: is the peer alive? */
    int draining;              /* the peer is gone: read what is left, paused or not */
    int after_large;           /* the last payload was read in place: read the
                                * next header alone */
    int low_water;             /* SO_RCVLOWAT as set (0: the kernel's 1) */
    int urgent;                /* acknowledged delivery: the peer's urgent byte
                                * came (1), did not (-1), not known yet (0) */
    int refused;               /* client: the server's urgent byte said it
                                * refused this client */
    int peer_beats;            /* the peer's urgent byte asked for the
                                * heartbeat alone */
    struct addrinfo *addrs;    /* client: the resolved addresses */
    struct addrinfo *addr_next; /* client: the next one to try */
};

static inline tcp_conn *tcp_conn_of(nqi_session *s)
{
    return nqi_session_tp(s);
}

/* A worker's state. */
typedef struct tcp_worker {
    nqi_worker *w;
    nqi_watch listen;      /* worker 0 of a server; fd -1 otherwise */
    nqi_timer listen_retry; /* accepting paused for lack of descriptors */
    uint8_t *stage;        /* reads that do not go straight into a message */
    size_t stage_cap;
    uint8_t *send_stage;   /* plain: small frames gathered for one copy */
    nqi_list lingering;    /* refused connections closing (tcp.c) */
} tcp_worker;

static inline tcp_worker *tcp_worker_of(nqi_worker *w)
{
    return w->tp;
}

/* The communicator's state. */
typedef struct tcp_comm {
    void *ssl_ctx; /* SSL_CTX, or NULL without TLS */
} tcp_comm;

/* plain.c: the kernel copies each piece of a vectored write on its own,
 * which for frames of a few bytes costs more than the bytes.  Rewrites the
 * pieces in[0..n) as out[] (at most max_out), copying each piece of at most
 * piece_max bytes into stage (stage_cap bytes; NULL: no copies), so that
 * runs of small frames go out as one piece.  The pieces out[] covers are a
 * prefix of in[]'s, in order; *nout gets their count and the return value
 * is their bytes. */
size_t nqi_tcp_gather(const struct iovec *in, int n, struct iovec *out, int max_out,
                      uint8_t *stage, size_t stage_cap, size_t piece_max, int *nout);

/* tcp.c */
/* Keep-alive and TCP_NODELAY for a new socket. */
void nqi_tcp_socket_options(const nq_comm *c, int fd);
/* Unanswered probes (keep-alive's, or of a closed window) before a peer is
 * declared dead. */
#define NQI_TCP_PROBES 3
/* Keep-alive's schedule in ms: the probe interval, and the silence after
 * which a peer is dead (idle time + three intervals); 0 when it is off. */
int64_t nqi_tcp_probe_interval_ms(const nq_comm *c);
int64_t nqi_tcp_dead_after_ms(const nq_comm *c);

/* conn.c */
/* Gives a new session its connection state (no socket yet). */
void nqi_tcp_conn_init(nqi_session *s);
/* The socket is connected (client) or accepted (server): start TLS or
 * open the byte stream. */
void nqi_tcp_conn_begin(tcp_conn *t, int fd);
/* Watches for what the connection's state needs. */
void nqi_tcp_update_events(tcp_conn *t);
void nqi_tcp_flush(nqi_session *s);
void nqi_tcp_resume(nqi_session *s);
/* Reads what waits below the socket's low-water mark (transport hook). */
void nqi_tcp_take_input(nqi_session *s);
/* 1 when the peer asked for acknowledged delivery (its urgent byte), 0
 * when it did not, NQ_ECONNRESET when the connection broke first. */
int nqi_tcp_acked(nqi_session *s);
/* 1 when both sides asked for the heartbeat alone (core/ack.h). */
int nqi_tcp_beats(nqi_session *s);
/* The urgent byte this side sends first (acknowledged delivery asked for,
 * or the heartbeat alone), or 0 for none. */
uint8_t nqi_tcp_own_urgent(const nq_comm *c);
/* 1 once it is known whether the peer sent the urgent byte (or this side
 * sent none, and so looks for none): until then nothing may be read from
 * the socket. */
int nqi_tcp_urgent_known(tcp_conn *t);
/* Server: tells a refused client so (one urgent byte), unless the urgent
 * byte already asked for acknowledged delivery on this connection. */
void nqi_tcp_tell_refused(tcp_conn *t);
/* The peer's address as "host:port" (IPv6 in brackets). */
void nqi_tcp_address(nqi_session *s, char *buf, size_t len);

/* listen.c */
int nqi_tcp_listen(nq_comm *c);
void nqi_tcp_stop_listening(nqi_worker *w);

/* connect.c */
void nqi_tcp_connect_start(nqi_worker *w);
/* A connect attempt finished (writable socket). */
void nqi_tcp_connect_done(tcp_conn *t);

/* tls.c */
int nqi_tls_ctx_new(nq_comm *c, void **out);
void nqi_tls_ctx_free(void *ctx);
/* Puts TLS on the connection's socket (swapping in nqi_tls_ops).  Returns
 * an nq error. */
int nqi_tls_attach(tcp_conn *t, void *ctx);

#endif
