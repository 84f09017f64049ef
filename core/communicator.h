/*
 * communicator.h: the state of a communicator and of its workers (its I/O
 * threads, each a generic loop plus the sessions it owns).  Data only:
 * sessions read their communicator's options, log, counters and arrival
 * queue here; the functions that act on it live in the layers above
 * (core/peers.c, core/comm.c, core/put.c).
 *
 * Who runs what: the public entry points run on the caller's thread and
 * hand work to a worker's loop through commands; everything that touches a
 * session runs on the loop of the worker that owns it.
 */
#ifndef NQ_CORE_COMMUNICATOR_H
#define NQ_CORE_COMMUNICATOR_H

#include "core/base.h"
#include "core/frame.h"
#include "core/loop.h"

typedef struct nqi_transport nqi_transport;
typedef struct nqi_session nqi_session;
typedef struct nqi_worker nqi_worker;

/* One I/O thread of a communicator. */
struct nqi_worker {
    nqi_loop loop;      /* first member; loop.data is the worker */
    nq_comm *comm;
    nqi_list sessions;  /* every session this worker owns */
    int closing;        /* nq_close began: no new peers */
    void *tp;           /* the transport's per-worker state */
    /* Preallocated, so that close never waits for memory. */
    nqi_cmd close_cmd;
    nqi_cmd abort_cmd;
    nqi_cmd stop_cmd;
};

static inline nqi_worker *nqi_worker_of(nqi_loop *l)
{
    return l->data;
}

/* ---- the communicator ---------------------------------------------------- */

/* A client's reconnection (core/redial.c), on its worker's loop. */
typedef struct nqi_redial {
    nqi_timer timer;    /* armed while the client waits to connect again */
    int waiting;        /* the connection is down until the timer fires */
    int64_t delay_ms;   /* the delay before the next attempt, before jitter */
    int64_t lost_at_ms; /* when the last connection was lost; 0 while up */
    uint64_t jitter;    /* state of the jitter's generator */
} nqi_redial;

enum nqi_comm_state { NQI_OPEN = 0, NQI_CLOSING, NQI_CLOSED };

/* Counters: slot nq_stat_id - 1 of nq_comm.stats, tied to the public ids
 * here so that neither list can move alone. */
enum nqi_stat_index {
    NQI_ST_MSGS_IN = NQ_STAT_MSGS_IN - 1,
    NQI_ST_MSGS_OUT = NQ_STAT_MSGS_OUT - 1,
    NQI_ST_BYTES_IN = NQ_STAT_BYTES_IN - 1,
    NQI_ST_BYTES_OUT = NQ_STAT_BYTES_OUT - 1,
    NQI_ST_PEERS = NQ_STAT_PEERS - 1,
    NQI_ST_CONNECTIONS = NQ_STAT_CONNECTIONS - 1,
    NQI_ST_PROTOCOL_ERRORS = NQ_STAT_PROTOCOL_ERRORS - 1,
    NQI_ST_TLS_ERRORS = NQ_STAT_TLS_ERRORS - 1,
    NQI_ST_CONNECTIONS_LOST = NQ_STAT_CONNECTIONS_LOST - 1,
    NQI_ST_HANDSHAKE_TIMEOUTS = NQ_STAT_HANDSHAKE_TIMEOUTS - 1,
    NQI_ST_READ_PAUSES = NQ_STAT_READ_PAUSES - 1,
    NQI_ST_RECONNECTS = NQ_STAT_RECONNECTS - 1,
    NQI_ST_ACKED = NQ_STAT_ACKED - 1,
    NQI_ST_RESUMED = NQ_STAT_RESUMED - 1,
    NQI_ST_DROPPED = NQ_STAT_DROPPED - 1,
    NQI_ST_REFUSED = NQ_STAT_REFUSED - 1,
    NQI_ST_COUNT /* the number of counters */
};
_Static_assert((int)NQI_ST_COUNT == (int)NQ_STAT_REFUSED,
               "a new nq_stat_id needs its slot in enum nqi_stat_index");

struct nq_comm {
    const nqi_transport *transport;
    void *tp; /* the transport's per-communicator state */
    nq_purpose purpose;
    nq_opts opts;
    nqi_log log;
    atomic_int state;
    pthread_mutex_t close_mu; /* serialises nq_close callers */
    int close_result;

    nqi_worker *workers;
    int nworkers;
    atomic_uint next_worker; /* round robin for new connections */
    atomic_int local_port;

    nqi_msgq msgq;
    atomic_llong send_bytes; /* copied bytes waiting to be sent */

    /* Sessions alive (connections not yet ended), for close. */
    pthread_mutex_t live_mu;
    pthread_cond_t live_cv;
    int live;
    int first_error;

    /* Serialises the event callbacks, so that a peer's events keep their
     * order across the loops (a replaced session ends on its own). */
    pthread_mutex_t events_mu;

    /* Peers that completed INI.  Readers are put and nq_peers. */
    pthread_rwlock_t peers_mu;
    nqi_session **peers;
    size_t npeers;
    size_t peers_cap;

    /* Client: its one session and the server's id once known. */
    nqi_session *client;
    nqi_redial redial;
    pthread_mutex_t server_id_mu; /* also guards every session's identity */
    int server_id_known;
    nq_id server_id;

    atomic_llong stats[NQI_ST_COUNT];
};

static inline void nqi_stat_add(nq_comm *c, int which, long long n)
{
    atomic_fetch_add_explicit(&c->stats[which], n, memory_order_relaxed);
}

#endif
