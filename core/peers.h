/*
 * peers.h: the sessions of a communicator as the rest of libnq sees them
 * (core/peers.c): the table of peers that sent their INI, the count of live
 * connections that close waits for, the one admission path every transport
 * uses for a new peer, and the end of a session.  Sessions are created,
 * admitted and ended on the loop of their worker.
 */
#ifndef NQ_CORE_PEERS_H
#define NQ_CORE_PEERS_H

#include "core/communicator.h"
#include "core/session.h"

/* A session on worker w with its transport state, on w's list.  Returns
 * NULL when out of memory.  Loop thread (or before the loop starts). */
nqi_session *nqi_session_new(nqi_worker *w);
/* Admits a new connection of a server (a stranger until its INI): a new
 * session counted as live and as a connection, closed unless its INI
 * arrives within NQ_OPT_HANDSHAKE_TIMEOUT_MS.  Returns NULL while the
 * communicator is closing or when out of memory.  Loop thread. */
nqi_session *nqi_peers_admit(nqi_worker *w);
/* Records that the session's connection is over (err 0 for a clean close):
 * delivers what arrived, fails queued frames, leaves the peer table and the
 * worker, lets the transport release its resources, counts and logs the
 * end, and releases the loop's reference.  Once only.  Loop thread. */
void nqi_session_end(nqi_session *s, int err);
/* Reports an event to the communicator's callback, if it has one, in
 * order with every other.  Any thread. */
void nqi_peers_event(nq_comm *c, int type, const nq_id *peer, int reason);
/* A paused session reads again.  Loop thread. */
void nqi_session_resume(nqi_session *s);
/* A getter took a message of s, which leaves left of them queued: a peer
 * paused by NQ_OPT_QUEUE_SIZE that is now below it is resumed on its loop,
 * and the last one queued releases the queue's reference to s.  Any
 * thread. */
void nqi_session_taken(nqi_session *s, long left);

/* Live-session accounting for close.  Any thread. */
void nqi_live_inc(nq_comm *c);
void nqi_live_dec(nq_comm *c, int err);
/* Waits until no session is alive; returns 0, or NQ_ETIMEDOUT. */
int nqi_live_wait(nq_comm *c, int64_t timeout_ms);

/* Ends every session the worker owns with err.  Loop thread. */
void nqi_worker_end_sessions(nqi_worker *w, int err);

#endif
