/*
 * ack.h: acknowledged delivery between libnq peers (NQ_OPT_DELIVERY =
 * NQ_DELIVERY_ACKED), in the session layer (core/ack.c).
 *
 * Agreement: a transport that can carry it asks for it on every connection
 * of a communicator that wants it, in a way a peer that does not is blind
 * to, and tells (its acked hook) whether the peer asked too when the
 * peer's INI arrives.  From then on both sides may send control frames
 * (framer.h): RESUME, ACK and PING.
 *
 *   RESUME  token (8 bytes) and received (8 bytes): who this side of the
 *           session is and how many of the peer's data frames it has.  The
 *           server sends its own behind its INI; the client answers the
 *           server's.  Until the peer's RESUME has come, a side sends no
 *           data.  A peer whose token is the one known from before gets
 *           what it lacks and nothing else; a new token is a new peer:
 *           frames an earlier one may have had fail, the rest go to it.
 *   ACK     received (8 bytes): the peer may complete the futures of that
 *           many data frames.
 *   PING    the sender's NQ_OPT_KEEPALIVE_MS (8 bytes; since 1.4, empty
 *           before): the first goes as soon as the two sides agreed, then
 *           whenever nothing else went out for half that period, so that
 *           silence for three half periods of the slower side (while this
 *           side does not hold the peer back) means the peer is gone.  A
 *           peer that tells 0 sends no more, and its silence means
 *           nothing; one that tells nothing (before 1.4) is judged by this
 *           side's own period.
 *
 * The heartbeat alone: a transport whose peers did not agree on
 * acknowledged delivery may still agree, in its own way, on PING frames
 * only (its beats hook), so that an idle connection carries messages a
 * proxy counts as traffic, and a peer that stopped (SIGSTOP, a hung
 * process, a dead path) is noticed where the kernels still answer each
 * other.  Nothing else changes: futures mean written.  Silence is judged
 * only once the peer told its period (a peer before 1.4 beat without
 * telling it, and its settings may differ).
 *
 * Everything runs on the session's loop.
 */
#ifndef NQ_CORE_ACK_H
#define NQ_CORE_ACK_H

#include "core/session.h"

enum { NQI_ACK_OFF = 0, NQI_ACK_OFFERED = 1, NQI_ACK_ON = 2 };
enum { NQI_CTL_RESUME = 1, NQI_CTL_ACK = 2, NQI_CTL_PING = 3 };

/* 1 when the communicator asks for acknowledged delivery. */
int nqi_ack_wanted(const nq_comm *c);
/* A new session: asks for it if the communicator does.  A client draws its
 * token and holds its data until the server's RESUME.  Returns NQ_OK or
 * NQ_ESYS (no randomness). */
int nqi_ack_init(nqi_session *s);
/* The peer's INI arrived; peer_asked says whether its connection asked for
 * acknowledged delivery.  Agreed: control frames may come and the
 * heartbeat starts (a client then waits for the server's RESUME).  Not
 * agreed: written frames complete, data flows.  Returns NQ_OK or
 * NQ_ENOMEM. */
int nqi_ack_agree(nqi_session *s, int peer_asked);
/* Acknowledged delivery was not agreed, but the transport agreed on the
 * heartbeat alone: PING frames may come, and one goes whenever nothing
 * else went out for half NQ_OPT_KEEPALIVE_MS.  Returns NQ_OK or
 * NQ_ENOMEM. */
int nqi_ack_beat_alone(nqi_session *s);
/* A connection without acknowledged delivery is gone: heartbeat frames
 * queued for it go with it (the next peer may not take them). */
void nqi_ack_forget_beats(nqi_session *s);
/* Server, after its INI was queued and the session took over any earlier
 * state of its peer (nqi_ack_adopt): where the two sides beat, tells its
 * keep-alive behind its INI; agreed, it then queues its RESUME and holds
 * data until the client's.  Returns NQ_OK, NQ_ENOMEM or NQ_ESYS. */
int nqi_ack_greet(nqi_session *s);
/* 1 when out_iov must stop before f (data waits for the peer's RESUME). */
static inline int nqi_ack_holds(const nqi_session *s, const nqi_frame *f)
{
    return s->ack.hold && (f->kind == NQI_FRAME_DATA || f->kind == NQI_FRAME_FIN);
}
/* A frame was wholly written.  Returns 1 when it took care of the frame
 * (a data frame kept until acknowledged, a control frame done), 0 when
 * the caller completes it as usual.  Queues nothing: the output is being
 * committed. */
int nqi_ack_written(nqi_session *s, nqi_frame *f);
/* The commit is over: an ACK that waited for the last one goes now. */
void nqi_ack_committed(nqi_session *s);
/* A control frame arrived (the parser's control type, its payload).
 * Returns 0 or an error that ends the session. */
int nqi_ack_control(nqi_session *s, int type, const uint8_t *data, size_t len);
/* Messages were delivered: acknowledge them. */
void nqi_ack_delivered(nqi_session *s);
/* The peer's FIN arrived.  A client's FIN was answered: everything it sent
 * arrived; it acknowledges the server's data one last time. */
int nqi_ack_fin(nqi_session *s);
/* 1 when nothing waits for an acknowledgement. */
int nqi_ack_settled(const nqi_session *s);
/* Flow control where the transport has none of its own (MQTT: a broker
 * takes every publish): a sender lets at most NQI_ACK_WINDOW bytes of data
 * wait for their acknowledgement, and a receiver whose queue reached
 * NQ_OPT_QUEUE_SIZE withholds acknowledgements (it is "paused") until
 * get() makes room, so the sender is held back end to end. */
#define NQI_ACK_WINDOW ((uint64_t)16 << 20)
/* 1 when a data frame not yet started must wait for acknowledgements. */
int nqi_ack_window_full(const nqi_session *s);
/* 1 while acknowledgements are withheld. */
int nqi_ack_withholds(const nqi_session *s);
/* The connection is gone: data frames go back to the head of the output
 * in order (kept ones first), control frames and a queued INI are
 * dropped, and the output starts over from the first byte. */
void nqi_ack_rewind(nqi_session *s);
/* Server: 1 when the lost connection's session should wait for its peer
 * (NQ_OPT_RESUME_MS) instead of ending. */
int nqi_ack_park_wanted(const nqi_session *s, int err);
/* Server: 1 when heir, a new connection with old's id, takes old's state. */
int nqi_ack_can_adopt(const nqi_session *heir, const nqi_session *old);
/* Server: heir takes over old's output (after old was rewound), counts and
 * tokens; old is left empty. */
void nqi_ack_adopt(nqi_session *heir, nqi_session *old);
/* The session ended: stops the heartbeat. */
void nqi_ack_stop(nqi_session *s);
/* Fails the kept frames with err and frees the ring. */
void nqi_ack_fail(nqi_session *s, int err);

#endif
