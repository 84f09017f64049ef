/*
 * transport.h: the table of hooks through which the core reaches a
 * transport, and nothing else.  A transport includes core/nqi.h; the core
 * includes only this.
 */
#ifndef NQ_CORE_TRANSPORT_H
#define NQ_CORE_TRANSPORT_H

#include "core/communicator.h"
#include "core/session.h"

/* What the core asks of a transport.  open, close and shutdown run on the
 * caller's thread of nq_open / nq_close / nq_destroy; every other hook runs
 * on the loop of the worker concerned. */
struct nqi_transport {
    const char *name;
    /* Bytes of the transport's state in every session (nqi_session_tp). */
    size_t session_size;
    /* 1 when a server spreads its connections over NQ_OPT_WORKERS threads. */
    int multi_worker;
    /* 1 when reading from one peer can be paused (flow control). */
    int pausable;
    /* At nq_open, before the workers start: check the options, bind,
     * connect to a broker, set up c->tp and each worker's tp and the
     * client's session state.  Returns an nq error; shutdown runs after a
     * failure too. */
    int (*open)(nq_comm *c);
    /* First thing on each worker's thread (may be NULL). */
    void (*worker_start)(nqi_worker *w);
    /* nq_close began: take no new connections on this worker (may be
     * NULL). */
    void (*worker_closing)(nqi_worker *w);
    /* Hand as much queued output to the wire as it takes now. */
    void (*flush)(nqi_session *s);
    /* A paused session may read again (NULL unless pausable). */
    void (*resume)(nqi_session *s);
    /* Reads now what has arrived and waits to be read, before the input
     * watch or the heartbeat judges the peer by its input: a transport
     * that asked to be woken only for a large part of a payload must not
     * look stalled or silent (may be NULL). */
    void (*take_input)(nqi_session *s);
    /* The session ended: release its connection's resources (its memory
     * goes with the session). */
    void (*session_end)(nqi_session *s);
    /* Client: its connection was lost (and released by session_end) and
     * the session was made ready to start again: connect anew on the
     * session's loop, as at open.  Returns an nq error, which counts as a
     * failed attempt.  NULL when the transport cannot reconnect. */
    int (*redial)(nqi_session *s);
    /* Acknowledged delivery (core/ack.h): a transport that can carry it
     * asks for it, on every connection of a communicator that wants it
     * (nqi_ack_wanted), in a way a peer that does not is blind to; this
     * says whether the peer asked on this connection (1 or 0), when its
     * INI arrives, or returns an nq error when the connection broke before
     * it could tell.  NULL: the transport cannot carry it. */
    int (*acked)(nqi_session *s);
    /* The heartbeat alone (core/ack.h): where acknowledged delivery was not
     * agreed, whether both sides agreed on PING frames only, in the
     * transport's own way and invisibly to a peer that does not (1 or 0),
     * when the peer's INI arrives.  NULL: never. */
    int (*beats)(nqi_session *s);
    /* The peer's address as text ("127.0.0.1:40312") into buf, for the
     * admission callback (NULL: the transport has none to tell, "").  On
     * the session's loop. */
    void (*address)(nqi_session *s, char *buf, size_t len);
    /* In nq_close once every session has ended, before the workers stop:
     * stop producing commands (may be NULL). */
    void (*close)(nq_comm *c);
    /* After the workers stopped: release the communicator's resources. */
    void (*shutdown)(nq_comm *c);
};

/* The transport for a protocol, or NULL when it is not built in
 * (transports/registry.c). */
const nqi_transport *nqi_transport_for(nq_protocol protocol);

#endif
