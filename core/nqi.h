/*
 * Internal declarations shared by the core and the transports.  Nothing
 * here is part of the ABI; every symbol is hidden.
 */
#ifndef NQ_CORE_NQI_H
#define NQ_CORE_NQI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "core/framer.h"
#include "core/pool.h"
#include "nq/nq.h"

#define NQI_OPT_COUNT 13
#define NQI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- options ---------------------------------------------------------- */

struct nq_opts {
    nq_id id;
    char host[256];
    uint16_t port;
    int64_t ints[NQI_OPT_COUNT];
    int tls;
    char *key_path;
    char *cert_path;
    char *mqtt_prefix;
    nq_dump_fn dump;
    nq_load_fn load;
    void *serializer_ctx;
    nq_log_fn log_fn;
    void *log_ctx;
};

/* Deep-copies src into dst (which must be zeroed).  Returns NQ_OK or
 * NQ_ENOMEM. */
int nqi_opts_copy(nq_opts *dst, const nq_opts *src);
/* Frees what nqi_opts_copy allocated inside o (not o itself). */
void nqi_opts_clear(nq_opts *o);
/* Initialises o with the defaults (o zeroed, nothing allocated). */
int nqi_opts_defaults(nq_opts *o);

/* ---- identities -------------------------------------------------------- */

#define NQI_ID_HEX_LEN 32
/* The id as 32 lower-case hex digits and a NUL (net-queue's uuid.hex). */
void nqi_id_hex(const nq_id *id, char out[NQI_ID_HEX_LEN + 1]);

/* ---- logging ---------------------------------------------------------- */

typedef struct nqi_log {
    nq_log_fn fn;
    void *ctx;
    int level; /* highest level passed on */
} nqi_log;

void nqi_log_init(nqi_log *log, nq_log_fn fn, void *ctx);
void nqi_logf(const nqi_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- futures ---------------------------------------------------------- */

/* A future owned by the caller (one reference) and by the puts in flight
 * (one reference until it completes).  parts is the number of peer copies
 * that must finish before it completes. */
nq_future *nqi_future_new(int parts);
/* One peer copy finished with result; the last one completes the future
 * with the first error seen, or NQ_OK. */
void nqi_future_part_done(nq_future *f, int result);
/* Records result as the first error (if it is one) without finishing a
 * part; the part follows with nqi_future_part_done(f, NQ_OK). */
void nqi_future_note_error(nq_future *f, int result);
/* Adds parts before any has finished (used when peers are counted late). */
void nqi_future_add_parts(nq_future *f, int parts);

/* ---- lock-free command queue (many producers, one consumer) ------------ */

typedef struct nqi_mpsc_node {
    _Atomic(struct nqi_mpsc_node *) next;
} nqi_mpsc_node;

typedef struct nqi_mpsc {
    _Atomic(nqi_mpsc_node *) head;
    nqi_mpsc_node *tail;
    nqi_mpsc_node stub;
} nqi_mpsc;

void nqi_mpsc_init(nqi_mpsc *q);
void nqi_mpsc_push(nqi_mpsc *q, nqi_mpsc_node *n);
/* Returns the oldest node, or NULL when empty (or when a producer is midway
 * through a push; that producer wakes the consumer afterwards). */
nqi_mpsc_node *nqi_mpsc_pop(nqi_mpsc *q);

/* ---- frames to send --------------------------------------------------- */

typedef struct nqi_session nqi_session;
typedef struct nqi_loop nqi_loop;
typedef struct nqi_transport nqi_transport;

enum nqi_cmd_type {
    NQI_CMD_SEND = 1, /* queue frame on session                     */
    NQI_CMD_ADOPT,    /* take over an accepted socket               */
    NQI_CMD_CLOSE,    /* begin the close handshake                  */
    NQI_CMD_RESUME,   /* a paused session may read again            */
    NQI_CMD_ABORT,    /* drop every connection now                  */
    NQI_CMD_STOP,     /* leave the loop                             */
    NQI_CMD_TRANSPORT /* for the transport's on_command             */
};

typedef struct nqi_frame nqi_frame;

typedef struct nqi_cmd {
    nqi_mpsc_node node; /* first member: the queue links commands */
    int type;
    int subtype; /* NQI_CMD_TRANSPORT: the transport's own kind */
    int fd;
    long long arg;
    void *ptr;
    int embedded; /* lives inside its frame; not freed alone */
    int borrowed; /* holds no reference to session (a client's own) */
    nqi_session *session;
    nqi_frame *frame;
} nqi_cmd;

/* One message on its way out: the 8-byte header and the payload chunks,
 * shared by every peer it goes to (reference counted). */
struct nqi_frame {
    atomic_int refs;
    int is_data;         /* 0 for INI/FIN                         */
    uint8_t header[NQI_HEADER_SIZE];
    uint64_t payload_len;
    size_t nchunks;
    nq_chunk *chunks;    /* points at inline storage or owned[]   */
    void *owned;         /* copied payload, freed with the frame  */
    size_t owned_len;    /* counted against the send limit        */
    nq_comm *comm;       /* for send-limit accounting             */
    nq_future *future;   /* NULL: nobody waits                    */
    /* Transports that lend the payload's memory past a commit (gRPC
     * slices) pin the frame: low 32 bits, pins held; high 32 bits, peer
     * completions (nqi_frame_done) deferred until the last pin goes. */
    _Atomic uint64_t pins;
    nqi_cmd cmd;         /* the first target's command            */
    nq_chunk inline_chunks[];
};

/* Builds a frame of n chunks.  copy: the chunks are copied into owned
 * memory.  Returns NULL on allocation failure. */
nqi_frame *nqi_frame_new(nq_comm *comm, const nq_chunk *chunks, size_t n, int copy);
/* Builds a frame around a buffer allocated with nq_alloc (taken over). */
nqi_frame *nqi_frame_adopt(nq_comm *comm, void *data, size_t len);
/* A 16-byte INI/FIN frame holding id. */
nqi_frame *nqi_frame_handshake(const nq_id *id);
void nqi_frame_ref(nqi_frame *f);
void nqi_frame_unref(nqi_frame *f);
/* Reports one peer copy's outcome to the frame's future.  While the frame
 * is pinned, the future's part (and the reference) is released when the
 * last pin goes, so the put's buffer stays untouched until then. */
void nqi_frame_done(nqi_frame *f, int result);
/* Pins the frame (and takes a reference) while a transport still reads its
 * payload after the bytes were committed.  Any thread may unpin. */
void nqi_frame_pin(nqi_frame *f);
void nqi_frame_unpin(nqi_frame *f);

/* ---- received messages ------------------------------------------------- */

struct nq_msg {
    struct nq_msg *next;
    nq_id peer;
    uint8_t *data; /* malloc'd, may be NULL when len is 0 */
    size_t len;
    nqi_session *session; /* counted against its queue_size; may be NULL */
};

typedef struct nqi_msgq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nq_msg *head;
    nq_msg *tail;
    int final_error; /* 0 while messages may still come */
    int waiters;     /* getters asleep on cv */
} nqi_msgq;

void nqi_msgq_init(nqi_msgq *q);
void nqi_msgq_fini(nqi_msgq *q);
/* Appends a chain of messages (first..last) and wakes sleeping getters. */
void nqi_msgq_push(nqi_msgq *q, nq_msg *first, nq_msg *last);
/* Sets the error get returns once the queue is empty (first one wins). */
void nqi_msgq_finish(nqi_msgq *q, int err);
/* Takes the oldest message.  Returns NQ_OK, NQ_ETIMEDOUT or final_error. */
int nqi_msgq_pop(nqi_msgq *q, int64_t timeout_ms, nq_msg **out);

/* ---- sessions ---------------------------------------------------------- */

enum nqi_conn_state {
    NQI_CONN_RESOLVING = 0,
    NQI_CONN_CONNECTING,
    NQI_CONN_TLS_HANDSHAKE,
    NQI_CONN_OPEN,
    NQI_CONN_DONE
};

typedef struct ssl_st nqi_ssl;

/* One connection to one peer and its protocol state. */
struct nqi_session {
    atomic_int refs;
    nq_comm *comm;
    nqi_loop *loop;
    nqi_session *loop_next; /* the loop's list of its sessions */
    nqi_session *loop_prev;
    nqi_session *dirty_next; /* sessions with output to flush */
    int dirty;

    /* transport */
    int fd;
    int conn_state;
    nqi_ssl *ssl;
    uint32_t epoll_events;
    int in_epoll;
    int want_write;          /* the last write hit a full socket */
    uint32_t tls_want;       /* epoll events the TLS layer waits for */
    struct addrinfo *addrs; /* client: candidates still to try */
    struct addrinfo *addr_next;
    int64_t deadline_ms;    /* server: INI must arrive before this */

    /* protocol */
    nq_id peer;
    int ini_received;
    int fin_received;
    int fin_queued;
    int fin_sent;
    int registered; /* in the comm's peer table */
    _Atomic int ended;
    int error; /* why it ended, 0 for a clean close */

    /* output: a ring of frames; out_off bytes of the head are sent */
    nqi_frame **out;
    size_t out_cap;
    size_t out_head;
    size_t out_len;
    uint64_t out_off;
    uint64_t out_sent;  /* bytes past out_off handed over, not yet confirmed */
    void *tp;           /* the transport's per-session state */
    char *topic;        /* MQTT: where this session publishes */
    nq_id route;        /* MQTT: the id in the peer's topic */
    uint8_t *tls_stage; /* TLS: small frames coalesced into one record */
    size_t tls_stage_len;

    /* input */
    nqi_parser parser;
    nq_msg *batch_head; /* messages parsed in this read, not yet queued */
    nq_msg *batch_tail;
    atomic_long queued; /* messages delivered to the queue, not yet taken */
    atomic_int paused;
    atomic_int resume_requested;
};

void nqi_session_ref(nqi_session *s);
void nqi_session_unref(nqi_session *s);

/* ---- event loops -------------------------------------------------------- */

struct nqi_loop {
    nq_comm *comm;
    int index;
    pthread_t thread;
    int started;
    int epfd;
    int evfd;
    nqi_mpsc cmds;
    atomic_int wake_pending;
    nqi_session *sessions;   /* every session this loop owns */
    nqi_session *dirty;      /* sessions to flush after this round */
    int closing;
    int stopping;
    int pending_ini;         /* server sessions still waiting for INI */
    int64_t timer_ms;        /* when to call the transport's on_timer, or 0 */
    int64_t listen_retry_ms; /* accept paused (out of descriptors) until */
    int listen_fd;           /* loop 0 of a server */
    uint8_t *stage;          /* receive staging buffer */
    size_t stage_cap;
    uint8_t *send_stage;     /* TCP: small frames gathered for one copy */
};

int nqi_loop_init(nqi_loop *l, nq_comm *comm, int index);
int nqi_loop_start(nqi_loop *l);
void nqi_loop_join(nqi_loop *l);
void nqi_loop_fini(nqi_loop *l);
/* Hands a command to the loop from any thread. */
void nqi_loop_post(nqi_loop *l, nqi_cmd *c);
/* Releases a command that will never run (its frame fails with
 * NQ_ECLOSED).  Not for NQI_CMD_TRANSPORT commands, which the transport
 * releases. */
void nqi_cmd_release(nqi_cmd *c);
/* Posts a command with no frame; returns NQ_ENOMEM if it cannot. */
int nqi_loop_post_simple(nqi_loop *l, int type, nqi_session *s, int fd);

/* ---- the communicator ---------------------------------------------------- */

enum nqi_comm_state { NQI_OPEN = 0, NQI_CLOSING, NQI_CLOSED };

enum nqi_stat_index {
    NQI_ST_MSGS_IN = 0,
    NQI_ST_MSGS_OUT,
    NQI_ST_BYTES_IN,
    NQI_ST_BYTES_OUT,
    NQI_ST_PEERS,
    NQI_ST_CONNECTIONS,
    NQI_ST_PROTOCOL_ERRORS,
    NQI_ST_TLS_ERRORS,
    NQI_ST_CONNECTIONS_LOST,
    NQI_ST_HANDSHAKE_TIMEOUTS,
    NQI_ST_READ_PAUSES,
    NQI_ST_COUNT
};

typedef struct ssl_ctx_st nqi_ssl_ctx;

struct nq_comm {
    const nqi_transport *transport;
    void *tp; /* the transport's per-communicator state */
    nq_protocol protocol;
    nq_purpose purpose;
    nq_opts opts;
    nqi_log log;
    atomic_int state;
    pthread_mutex_t close_mu; /* serialises nq_close callers */
    int close_result;

    nqi_loop *loops;
    int nloops;
    atomic_uint next_loop;
    nqi_ssl_ctx *ssl_ctx;
    atomic_int local_port;

    nqi_msgq msgq;
    atomic_llong send_bytes; /* copied bytes waiting to be sent */

    /* Sessions alive (connections not yet ended), for close. */
    pthread_mutex_t live_mu;
    pthread_cond_t live_cv;
    int live;
    int first_error;

    /* Peers that completed INI.  Readers are put and nq_peers. */
    pthread_rwlock_t peers_mu;
    nqi_session **peers;
    size_t npeers;
    size_t peers_cap;

    /* Client: its one session and the server's id once known. */
    nqi_session *client;
    pthread_mutex_t server_id_mu;
    int server_id_known;
    nq_id server_id;

    atomic_llong stats[NQI_ST_COUNT];
};

static inline void nqi_stat_add(nq_comm *c, int which, long long n)
{
    atomic_fetch_add_explicit(&c->stats[which], n, memory_order_relaxed);
}

int64_t nqi_now_ms(void);
/* A condition variable timed on CLOCK_MONOTONIC (as nqi_deadline_after
 * gives).  Returns pthread_cond_init's result. */
int nqi_cond_init(pthread_cond_t *cv);
/* CLOCK_MONOTONIC time timeout_ms from now (now for 0 or less). */
struct timespec nqi_deadline_after(int64_t timeout_ms);

/* Session life cycle, called on the owning loop. */
nqi_session *nqi_session_new(nq_comm *comm, nqi_loop *loop, int fd);
/* Records that the session's connection is over.  err is 0 for a clean
 * close.  Fails queued frames, unregisters, closes the socket, releases the
 * loop's reference. */
void nqi_session_end(nqi_session *s, int err);
/* Appends a frame (taking the caller's reference). */
int nqi_session_queue(nqi_session *s, nqi_frame *f);
/* Marks the session for a flush at the end of the loop round. */
void nqi_session_mark_dirty(nqi_session *s);
/* Fills iov with queued output from the current offset, at most max_iov
 * entries and max_bytes bytes.  Returns the count.  owners, if not NULL,
 * receives the frame each entry belongs to. */
int nqi_session_out_iov(nqi_session *s, struct iovec *iov, nqi_frame **owners, int max_iov,
                        size_t max_bytes, size_t *total);
/* Copies the n pieces back to back into dst; returns the bytes copied. */
size_t nqi_iov_copy(uint8_t *dst, const struct iovec *iov, int n);
/* Bytes queued and not yet handed to the transport (beyond out_sent). */
uint64_t nqi_session_out_pending(const nqi_session *s);
/* Accounts n bytes handed to the transport; completes finished frames. */
void nqi_session_out_commit(nqi_session *s, size_t n);
/* Feeds received bytes.  Returns 0 or an error that ends the session. */
int nqi_session_in(nqi_session *s, const uint8_t *data, size_t len);
/* Reading straight into the current message (see nqi_parser_window). */
int nqi_session_in_window(nqi_session *s, uint8_t **ptr, size_t *len);
int nqi_session_in_commit(nqi_session *s, size_t n);
/* Hands parsed messages to the arrival queue and pauses reading when the
 * peer's queue is full.  Returns 1 when the session should stop reading. */
int nqi_session_deliver(nqi_session *s);
/* Queues this side's FIN after pending data (client close). */
void nqi_session_queue_fin(nqi_session *s);
/* 1 when the close handshake has run its course and output is drained. */
int nqi_session_finished(const nqi_session *s);

/* Peer table (server). */
int nqi_peers_add(nq_comm *c, nqi_session *s);
void nqi_peers_remove(nq_comm *c, nqi_session *s);

/* Live-session accounting for close. */
void nqi_live_inc(nq_comm *c);
void nqi_live_dec(nq_comm *c, int err);

/* ---- transports -------------------------------------------------------------- */

/* What the core asks of a transport.  Every hook runs on the session's loop
 * thread except open and shutdown, which run on the caller's thread. */
struct nqi_transport {
    /* At nq_open, before the loops start: bind, connect to a broker...
     * Returns an nq error. */
    int (*open)(nq_comm *c);
    /* First thing on each loop thread (may be NULL). */
    void (*loop_start)(nqi_loop *l);
    /* Write as much queued output as the transport takes now. */
    void (*flush)(nqi_session *s);
    /* An epoll event on a session's descriptor (NULL without descriptors). */
    void (*on_event)(nqi_session *s, uint32_t events);
    /* A paused session may read again (NULL unless pausable). */
    void (*resume)(nqi_session *s);
    /* NQI_CMD_TRANSPORT commands posted by the transport's own threads. */
    void (*on_command)(nqi_loop *l, nqi_cmd *c);
    /* The loop's timer_ms has passed (may be NULL). */
    void (*on_timer)(nqi_loop *l);
    /* The session ended: release its transport resources. */
    void (*session_end)(nqi_session *s);
    /* In nq_close once every session has ended, before the loops stop:
     * stop producing commands (may be NULL). */
    void (*close)(nq_comm *c);
    /* After the loops stopped: release the communicator's resources. */
    void (*shutdown)(nq_comm *c);
    /* 1 when reading from one peer can be paused (flow control). */
    int pausable;
};

extern const nqi_transport nqi_tcp_transport;
extern const nqi_transport nqi_mqtt_transport;
extern const nqi_transport nqi_grpc_transport;

/* ---- TCP transport (transports/tcp) --------------------------------------- */

/* Accepting connections (loop 0 of a server) and taking one over. */
void nqi_tcp_on_listen(nqi_loop *l);
void nqi_tcp_adopt(nqi_loop *l, int fd);

/* ---- TLS (transports/tcp/tls.c) ------------------------------------------- */

int nqi_tls_ctx_new(nq_comm *c, nqi_ssl_ctx **out);
void nqi_tls_ctx_free(nqi_ssl_ctx *ctx);
/* Creates the SSL object for a connection.  Returns an nq error. */
int nqi_tls_attach(nqi_session *s);
/* Advances the handshake: 1 done, 0 in progress (events updated), or an nq
 * error. */
int nqi_tls_handshake(nqi_session *s);
/* Non-blocking read/write: bytes moved, 0 for EOF (read), -EAGAIN-like
 * NQI_WOULDBLOCK, or an nq error. */
#define NQI_WOULDBLOCK (-1000)
long nqi_tls_read(nqi_session *s, uint8_t *buf, size_t len);
long nqi_tls_write(nqi_session *s, const void *buf, size_t len);
void nqi_tls_free(nqi_session *s);
/* The direction the TLS layer waits for (EPOLLIN/EPOLLOUT), or 0. */
uint32_t nqi_tls_wants(nqi_session *s);

#endif
