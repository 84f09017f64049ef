/*
 * redial.h: a client's reconnection (NQ_OPT_RECONNECT_MS).  When its
 * connection is lost, a client that reconnects keeps its session (queued
 * puts, its place in get, its count in close) and connects again after a
 * growing, jittered delay; the transport makes the new connection through
 * its redial hook.  Everything here runs on the client's loop.
 */
#ifndef NQ_CORE_REDIAL_H
#define NQ_CORE_REDIAL_H

#include "core/session.h"

/* 1 when the end of this connection (err) should be followed by another:
 * a client with reconnection on, open, whose transport can redial, that
 * has not run past NQ_OPT_RECONNECT_GIVE_UP_MS, and an end that is not its
 * own close. */
int nqi_redial_wanted(const nqi_session *s, int err);

/* The connection ended (released by the transport): readies the session
 * for the next one, tells the events and arms the timer.  Returns NQ_OK,
 * or an error when the session must end after all. */
int nqi_redial_schedule(nqi_session *s, int err);

/* A server answered the INI: the next loss starts from the first delay. */
void nqi_redial_connected(nq_comm *c);

/* 1 when the session was waiting to connect again (the wait is over); the
 * caller then ends it for good. */
int nqi_redial_abandon(nqi_session *s);

#endif
