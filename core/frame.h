/*
 * frame.h: what a put becomes on its way out, and what get hands back.
 *
 *   futures   (core/future.c) the completion of one put, on one atomic word;
 *   frames    (core/frame.c) one message to send: the 8-byte header and the
 *             payload chunks, shared by every peer it goes to and pinned by
 *             transports that lend its memory;
 *   arrivals  (core/msgq.c) received messages waiting for get, in order.
 *
 * None of these knows of sockets, sessions' transports or communicators'
 * loops: they are reached from any thread, as each function says.
 */
#ifndef NQ_CORE_FRAME_H
#define NQ_CORE_FRAME_H

#include <stdint.h>

#include "core/base.h"
#include "core/framer.h"
#include "core/loop.h"

typedef struct nqi_session nqi_session;

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
/* On this thread (an I/O thread), from now on (on 1) or no longer (0),
 * completions wake sleeping waiters only at nqi_future_release_wakes,
 * which the thread calls at the end of each round. */
void nqi_future_hold_wakes(int on);
void nqi_future_release_wakes(void);
/* Cancellation (nq_future_cancel): the communicator the put went through;
 * the request (cancel_asked returns whether it was made before); each
 * copy withdrawn is counted.  Any thread. */
void nqi_future_set_comm(nq_future *f, nq_comm *c);
nq_comm *nqi_future_comm(const nq_future *f);
int nqi_future_cancel_asked(nq_future *f);
int nqi_future_cancelled(nq_future *f);
void nqi_future_withdrawn(nq_future *f);
int nqi_future_withdrawn_count(nq_future *f);

/* ---- frames to send --------------------------------------------------- */

typedef struct nqi_frame nqi_frame;

/* A frame's delivery to one session: posted to the session's loop, which
 * queues the frame on the session (core/put.c runs it). */
typedef struct nqi_send {
    nqi_cmd cmd;          /* first member */
    nqi_session *session; /* a reference, unless borrowed */
    nqi_frame *frame;     /* a reference */
    uint8_t embedded;     /* lives inside its frame; not freed alone */
    uint8_t borrowed;     /* holds no reference to session (a client's own) */
} nqi_send;

/* What a frame is (nqi_frame.kind). */
enum {
    NQI_FRAME_FIN = 0,     /* a 16-byte handshake frame after the INI   */
    NQI_FRAME_DATA = 1,    /* a put's message                           */
    NQI_FRAME_CONTROL = 2, /* acknowledged delivery's own (core/ack.c)  */
    NQI_FRAME_INI = 3      /* this side's INI                           */
};

struct nqi_frame {
    atomic_int refs;
    int kind;            /* NQI_FRAME_*                           */
    uint8_t header[NQI_HEADER_SIZE];
    uint64_t payload_len;
    size_t nchunks;
    nq_chunk *chunks;    /* points at inline storage or owned[]   */
    void *owned;         /* copied payload, freed with the frame  */
    size_t owned_len;    /* counted against *send_bytes          */
    atomic_llong *send_bytes; /* the communicator's copied-bytes count */
    nq_future *future;   /* NULL: nobody waits                    */
    /* Transports that lend the payload's memory past a commit (gRPC
     * slices) pin the frame: low 32 bits, pins held; high 32 bits, peer
     * completions (nqi_frame_done) deferred until the last pin goes. */
    _Atomic uint64_t pins;
    nqi_send send;       /* the first target's delivery           */
    nq_chunk inline_chunks[];
};

/* Builds a frame of n chunks.  copy: the chunks are copied into owned
 * memory.  Returns NULL on allocation failure. */
nqi_frame *nqi_frame_new(const nq_chunk *chunks, size_t n, int copy);
/* Builds a frame around a buffer allocated with nq_alloc (taken over). */
nqi_frame *nqi_frame_adopt(void *data, size_t len);
/* A 16-byte FIN frame holding id (an INI once its kind says so). */
nqi_frame *nqi_frame_handshake(const nq_id *id);
/* A control frame of acknowledged delivery: its header says type and
 * len (at most NQI_CONTROL_MAX) bytes of payload follow. */
nqi_frame *nqi_frame_control(int type, const uint8_t *payload, size_t len);
void nqi_frame_ref(nqi_frame *f);
void nqi_frame_unref(nqi_frame *f);
/* Reports one peer copy's outcome to the frame's future and drops that
 * copy's reference.  While the frame is pinned, the future's part (and the
 * reference) is released when the last pin goes, so the put's buffer stays
 * untouched until then. */
void nqi_frame_done(nqi_frame *f, int result);
/* Pins the frame (and takes a reference) while a transport still reads its
 * payload after the bytes were committed.  Any thread may unpin. */
void nqi_frame_pin(nqi_frame *f);
void nqi_frame_unpin(nqi_frame *f);

/* ---- received messages ------------------------------------------------- */

/* One sender's messages in the arrival queue, oldest first, linked by
 * peer_next: what NQ_OPT_DROP_OLDEST takes from, and how many there are.
 * Under the queue's mutex. */
typedef struct nqi_msgq_peer {
    struct nq_msg *first;
    struct nq_msg *last;
    long count;
} nqi_msgq_peer;

/* Payloads of at most this many bytes live in their message's block,
 * right behind it, 16-byte aligned (nqi_msg_inline). */
#define NQI_MSG_INLINE_MAX 256

struct nq_msg {
    struct nq_msg *next;      /* the arrival queue, both ways */
    struct nq_msg *prev;
    struct nq_msg *peer_next; /* its sender's next one in the queue */
    nqi_msgq_peer *from;      /* its sender's list while queued */
    nq_id peer;
    uint8_t *data; /* from the block pool or inline, may be NULL when len is 0 */
    size_t len;
    nqi_session *session; /* counted against its queue_size; may be NULL */
};

#define NQI_MSG_INLINE_AT ((sizeof(struct nq_msg) + 15) & ~(size_t)15)

static inline uint8_t *nqi_msg_inline(struct nq_msg *m)
{
    return (uint8_t *)m + NQI_MSG_INLINE_AT;
}

typedef struct nqi_msgq {
    pthread_mutex_t mu;
    atomic_uint seq; /* changes when sleeping getters must look (futex) */
    nq_msg *head;
    nq_msg *tail;
    int final_error; /* 0 while messages may still come */
    int waiters;     /* getters asleep on seq */
    int picky;       /* those of them that take only some peers' messages */
    int fd;          /* readiness eventfd once asked for, else -1 */
    int signalled;   /* its counter is not zero */
} nqi_msgq;

void nqi_msgq_init(nqi_msgq *q);
/* The readiness descriptor (made on first use, closed by fini): readable
 * exactly while a message or the final error waits.  Returns NQ_OK or
 * NQ_ESYS. */
int nqi_msgq_fd(nqi_msgq *q, int *fd);
/* Frees the messages still queued with free_msg, then the queue. */
void nqi_msgq_fini(nqi_msgq *q, void (*free_msg)(nq_msg *m));
/* Appends a chain of one sender's messages (first..last, linked by next)
 * to the queue and to the sender's list, and wakes sleeping getters.
 * Returns the sender's count of queued messages after the push. */
long nqi_msgq_push(nqi_msgq *q, nqi_msgq_peer *from, nq_msg *first, nq_msg *last);
/* The sender's count of queued messages. */
long nqi_msgq_count(nqi_msgq *q, const nqi_msgq_peer *from);
/* Takes up to n of the sender's oldest messages out of the queue and
 * returns how many, linked by next from *out (NULL when none); *left gets
 * the sender's count after. */
size_t nqi_msgq_drop_oldest(nqi_msgq *q, nqi_msgq_peer *from, size_t n, nq_msg **out,
                            long *left);
/* Sets the error get returns once the queue is empty (first one wins). */
void nqi_msgq_finish(nqi_msgq *q, int err);
/* Takes the oldest message; *left (when not NULL) gets its sender's count
 * of queued messages after.  Returns NQ_OK, NQ_ETIMEDOUT or final_error. */
int nqi_msgq_pop(nqi_msgq *q, int64_t timeout_ms, nq_msg **out, long *left);
/* Takes the oldest message from one of the npeers peers, leaving the
 * others in order, and sets *left as nqi_msgq_pop does.  Returns NQ_OK,
 * NQ_ETIMEDOUT, or final_error once no such message is left. */
int nqi_msgq_pop_from(nqi_msgq *q, const nq_id *peers, size_t npeers, int64_t timeout_ms,
                      nq_msg **out, long *left);

#endif
