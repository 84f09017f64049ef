/*
 * session.h: one peer's byte stream, independent of the transport.
 *
 *   output  a ring of shared frames; out_off bytes of the head are
 *           committed, out_sent more are handed to the transport and not
 *           yet confirmed;
 *   input   the frame parser and net-queue's rules: the first message
 *           must be the peer's 16-byte INI (a longer header is refused at
 *           once), a later 16-byte message equal to the peer's id is its
 *           FIN, anything else is data;
 *   flow    messages are handed to the arrival queue in batches; a peer
 *           holding NQ_OPT_QUEUE_SIZE undelivered messages pauses (on a
 *           transport that can hold a sender back).
 *
 * A session is reference counted; the loop of its worker owns its state
 * and every function here runs on that loop's thread unless it says
 * otherwise.  It reads its communicator's options, log, counters and
 * arrival queue, and calls nothing above it: the INI goes to its owner's
 * hook (core/peers.c), and the end of the connection is decided by the
 * layer above (nqi_session_end).  A transport's own per-session state
 * follows the struct (nqi_session_tp).
 */
#ifndef NQ_CORE_SESSION_H
#define NQ_CORE_SESSION_H

#include <stddef.h>
#include <sys/uio.h>

#include "core/frame.h"
#include "core/framer.h"
#include "core/loop.h"

typedef struct nqi_worker nqi_worker;

/* Acknowledged delivery's state in a session (core/ack.c).  Data frames
 * are numbered per session from 0 in each direction. */
typedef struct nqi_ack {
    int state;          /* NQI_ACK_OFF, _OFFERED (asked for), _ON (agreed)   */
    int hold;           /* data waits for the peer's RESUME                   */
    nqi_frame **kept;   /* a ring of data frames written, not acknowledged    */
    size_t kept_cap;
    size_t kept_head;
    size_t kept_len;
    uint64_t kept_bytes; /* their wire bytes                                   */
    uint64_t base;      /* the number of the oldest unacknowledged data frame
                         * (kept, else the first data frame queued)           */
    uint64_t acked;     /* the highest count the peer acknowledged            */
    uint64_t rewound;   /* data frames at the head of the output that an
                         * earlier connection carried, at least in part       */
    uint64_t received;  /* data frames received from the peer                 */
    uint64_t told;      /* the count the last ACK carried                     */
    nqi_frame *pending; /* an ACK queued and not yet written                  */
    int again;          /* it was written while more arrived: send another   */
    uint64_t token;     /* this side of the session                           */
    uint64_t peer_token; /* the peer's, once known                            */
    int peer_known;
    nqi_timer beat;     /* heartbeat                                          */
    uint64_t beat_in;   /* in_bytes at the last beat                          */
    uint64_t beat_out;  /* out_bytes at the last beat                         */
    int silent;         /* beats in a row with nothing received               */
    int beats_alone;    /* only the heartbeat was agreed: PINGs go when idle,
                         * and come; nothing else changes                     */
    int64_t peer_keepalive; /* the peer's NQ_OPT_KEEPALIVE_MS, as its first
                         * PING tells; -1 until one does (a peer before 1.4
                         * tells nothing)                                     */
    uint64_t out_bytes; /* bytes written on the connection                    */
} nqi_ack;

/* What a session asks of whoever owns it. */
typedef struct nqi_session_owner {
    /* The peer's INI arrived (s->peer holds its id).  Returns 0, or an
     * error that ends the session. */
    int (*ini)(nqi_session *s);
    /* The session must end with err (its heartbeat heard nothing). */
    void (*end)(nqi_session *s, int err);
} nqi_session_owner;

struct nqi_session {
    atomic_int refs;
    nq_comm *comm;
    nqi_worker *worker; /* its loop owns the session */
    const nqi_session_owner *owner;
    nqi_node link;      /* in the worker's list of sessions */
    nqi_task flush;     /* output to hand to the transport this round */
    nqi_cmd resume;     /* posted by get when a paused peer may read again */
    nqi_timer ini_timer; /* server: the INI must arrive before it fires; then
                          * a frame in progress must keep moving */
    nqi_cmd replace;     /* posted when a new connection takes its id */

    /* protocol */
    nq_id peer;
    int ini_received;
    int refused;        /* server: the admission callback turned it away */
    int fin_received;
    int fin_queued;
    atomic_int announced; /* its CONNECTED went out; a DISCONNECTED is owed */
    _Atomic int ended;
    int error;      /* why it ended, 0 for a clean close */

    /* output: a ring of frames; out_off bytes of the head are sent */
    nqi_frame **out;
    size_t out_cap;
    size_t out_head;
    size_t out_len;
    uint64_t out_off;
    uint64_t out_sent; /* bytes past out_off handed over, not yet confirmed */
    /* Bytes past out_off + out_sent that a write which must be repeated
     * as it was took (a TLS record the socket has no room for yet, built
     * from them): they are offered again, and nothing may go in between. */
    uint64_t out_taken;
    nqi_frame *hello;  /* client: its INI while queued and not wholly sent */

    /* input */
    nqi_parser parser;
    uint64_t in_bytes;   /* received in all */
    uint64_t in_mark;    /* in_bytes when the progress watch last looked */
    int in_slow;         /* looks in a row that found a frame barely moving */
    nq_msg *batch_head; /* messages parsed in this read, not yet queued */
    nq_msg *batch_tail;
    uint64_t batch_bytes; /* their payload bytes */
    nqi_msgq_peer inq;  /* its messages in the arrival queue, not yet taken
                         * (the queue's mutex); while there are any, the
                         * queue holds one reference to the session */
    char *identity;     /* what the peer's TLS certificate says, or NULL
                         * (the communicator's server_id_mu) */
    int dropping;       /* NQ_OPT_DROP_OLDEST has dropped some (logged once) */
    atomic_int paused;
    atomic_int resume_requested;

    /* across connections */
    int waiting;        /* its connection is gone and it waits for another:
                         * a reconnecting client, a server's session kept
                         * for its peer's return (NQ_OPT_RESUME_MS) */
    nqi_session *heir;  /* server: the session that took its state over (a
                         * reference), where puts still on their way go */
    nqi_ack ack;

    /* the transport's state: its session_size bytes */
    max_align_t tp[];
};

/* Takes text (malloc'd, or NULL) as what authenticated the peer, for
 * nq_peer_identity.  Any thread. */
void nqi_session_set_identity(nqi_session *s, char *text);

/* Allocates a session with tp_size bytes of zeroed transport state and one
 * reference (the loop's), not yet on any list.  Returns NULL when out of
 * memory. */
nqi_session *nqi_session_create(nq_comm *c, nqi_worker *w, const nqi_session_owner *owner,
                                size_t tp_size);
static inline void *nqi_session_tp(nqi_session *s)
{
    return s->tp;
}
/* Any thread. */
void nqi_session_ref(nqi_session *s);
void nqi_session_unref(nqi_session *s);

/* ---- output ---------------------------------------------------------------- */

/* Makes a ring of frames (len of them from head) hold at least want,
 * doubling it and moving the oldest to index 0.  Returns NQ_OK or
 * NQ_ENOMEM (the ring unchanged). */
int nqi_ring_reserve(nqi_frame ***ring, size_t *cap, size_t *head, size_t len, size_t want);
/* Appends a frame (taking the caller's reference).  Returns NQ_OK or
 * NQ_ENOMEM (the reference stays the caller's). */
int nqi_session_queue(nqi_session *s, nqi_frame *f);
/* Asks for the transport's flush at the end of this loop round. */
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
/* The index in the ring of the first frame nothing of which was handed
 * to the transport, nor taken by a write it must repeat (out_taken). */
size_t nqi_session_first_unstarted(const nqi_session *s);
/* Takes out of the ring the copies of fut's put that have not started
 * (nor gone out on an earlier connection), completing them with
 * NQ_ECANCELED.  Returns how many. */
size_t nqi_session_withdraw(nqi_session *s, nq_future *fut);
/* Fails every queued frame with err and empties the ring.  A session that
 * ended by silence (NQ_ETIMEDOUT) fails them with NQ_ECONNRESET: a future's
 * NQ_ETIMEDOUT means that a wait for it ended. */
void nqi_session_out_fail(nqi_session *s, int err);
/* Client: makes a session whose connection was lost ready for a new one.
 * Drops what the old connection left half-read, forgets the peer's INI and
 * FIN, and rewinds output so that a frame the old connection only partly
 * wrote goes again whole, behind a new INI (unless the INI itself never
 * went out); a FIN queued in answer to the old peer's is dropped.  Returns
 * NQ_OK or NQ_ENOMEM. */
int nqi_session_restart(nqi_session *s);
/* Queues this side's FIN after pending data.  Returns NQ_OK or NQ_ENOMEM
 * (the caller ends the session). */
int nqi_session_queue_fin(nqi_session *s);
/* 1 when the close handshake has run its course and output is drained. */
int nqi_session_finished(const nqi_session *s);
/* 1 when both FINs have passed, the peer has everything this side put,
 * and nothing but control frames waits: a lost connection now loses
 * nothing. */
int nqi_session_exchanged(const nqi_session *s);

/* ---- input ----------------------------------------------------------------- */

/* Feeds received bytes.  Returns 0 or an error that ends the session. */
int nqi_session_in(nqi_session *s, const uint8_t *data, size_t len);
/* Reading straight into the current message (see nqi_parser_window). */
int nqi_session_in_window(nqi_session *s, uint8_t **ptr, size_t *len);
int nqi_session_in_commit(nqi_session *s, size_t n);
/* Before a timer judges the peer by its input (the input watch, the
 * heartbeat): the transport reads what has arrived and waits below its
 * wake-up mark.  May end the session. */
void nqi_session_take_input(nqi_session *s);
/* Hands parsed messages to the arrival queue and pauses reading when the
 * peer's queue is full.  Returns 1 when the session should stop reading. */
int nqi_session_deliver(nqi_session *s);

#endif
