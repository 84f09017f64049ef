/*
 * nqi.h: every internal declaration, for the transports and the tests.
 * The layers, lowest first (each calls only those below it):
 *
 *   base.h     primitives: options, log, ids, time, network locations,
 *              the command queue, block pools, lists
 *   loop.h     the generic event loop: watchers, timers, commands, tasks
 *   frame.h    futures, frames, received messages and the arrival queue
 *   session.h  one peer's byte stream (INI/FIN rules, output ring)
 *   ack.h      acknowledged delivery, in the session layer
 *   communicator.h  the state of a communicator and its workers (data)
 *   peers.h    the peer table, liveness, admission and the end of a session
 *   transport.h  the table of hooks through which the core reaches a
 *              transport; the public entry points (comm.c, put.c) sit on top
 *
 * Nothing here is part of the ABI; every symbol is hidden.
 */
#ifndef NQ_CORE_NQI_H
#define NQ_CORE_NQI_H

#include "core/ack.h"
#include "core/base.h"
#include "core/communicator.h"
#include "core/frame.h"
#include "core/loop.h"
#include "core/peers.h"
#include "core/session.h"
#include "core/transport.h"

#endif
