/*
 * grpc.h: the gRPC transport's own state and the seams between its files.
 *
 * One bidirectional-streaming method /grpc/comm carries raw slices of the
 * framed byte stream (no protobuf), in one of two dialects:
 * - rounds, as net-queue does: the client sends what it has queued, half
 *   closes and reads what the server has queued until the call ends; it
 *   polls with new calls when idle.  The byte stream continues from call to
 *   call, so the server keys such sessions on the connection's address.
 * - streaming, between libnq peers: the client asks for it in its initial
 *   metadata (nq-stream, with its id in nq-id), the server agrees in its own,
 *   and one call stays open with data pushed both ways as soon as it is
 *   queued.  Sessions are keyed on the id, so a new connection resumes them.
 *
 *   grpc.c     the transport table; open, close and shutdown
 *   queue.c    the completion-queue thread, which forwards every finished
 *              batch to worker 0 as a command
 *   call.c     a call: its state, its batches (at most one of each kind in
 *              flight, as grpc requires), sending and receiving slices
 *   lend.c     large payload pieces lent to grpc as slices over the frame
 *   rounds.c   the rounds dialect
 *   stream.c   the streaming dialect
 *   server.c   a server: new calls, the sessions they carry, ending calls
 *   client.c   a client: starting calls, learning the dialect, polling
 *   creds.c    TLS credentials, peer identities and bearer tokens
 *
 * Everything but queue.c's thread and lend.c's release (any thread) runs on
 * worker 0's loop, or on the caller's thread in open, close and shutdown.
 */
#ifndef NQ_TRANSPORTS_GRPC_GRPC_H
#define NQ_TRANSPORTS_GRPC_GRPC_H

#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <sys/uio.h>

#include "core/nqi.h"

#define NQI_GRPC_METHOD "/grpc/comm"
#define NQI_GRPC_MD_ID "nq-id"
#define NQI_GRPC_MD_STREAM "nq-stream"
/* Acknowledged delivery (core/ack.h), asked for in a streaming call's
 * initial metadata: the client's on its call, the server's in its answer,
 * which the client reads before any message.  net-queue never asks for
 * streaming, so it never meets it. */
#define NQI_GRPC_MD_ACKED "nq-acked"
/* The heartbeat alone (core/ack.h), where acknowledged delivery is not
 * agreed: every libnq peer takes PING frames on a stream and says so in
 * the same place, so that an idle stream carries messages a proxy counts
 * as traffic. */
#define NQI_GRPC_MD_HEARTBEAT "nq-heartbeat"
/* A client's bearer token: "authorization: Bearer <token>". */
#define NQI_GRPC_MD_AUTH "authorization"

typedef struct gcall gcall;
typedef struct gdialect gdialect;

/* ---- batches ---------------------------------------------------------------- */

enum gop_kind { OP_NEW_CALL = 1, OP_START, OP_RECV, OP_SEND, OP_HALF_CLOSE, OP_END, OP_SHUTDOWN };

/* A batch in flight; its completion comes back to the loop as a command. */
typedef struct gop {
    nqi_cmd cmd; /* first member */
    int kind;
    int success;
    gcall *gc;
} gop;

/* ---- calls ------------------------------------------------------------------- */

enum gcall_state {
    CALL_OPEN = 0,     /* data may flow both ways */
    CALL_HALF_CLOSED,  /* server: the client half-closed; client: we did */
    CALL_STATUS_SENT,  /* server: our status is on its way */
    CALL_DONE          /* server: closed; client: the status arrived */
};

struct gcall {
    nqi_node link;     /* in the communicator's list of calls */
    grpc_call *call;
    nqi_session *s;    /* the session it carries (a reference), or NULL */
    int server;
    int state;         /* enum gcall_state */
    const gdialect *dialect;
    int ops;           /* batches in flight */
    int sending;       /* a send batch is in flight */
    int receiving;     /* a receive batch is in flight */
    int held;          /* not receiving: its session is paused */
    size_t send_len;
    uint64_t sent;     /* bytes of output it carried, for the debug log */
    grpc_byte_buffer *send_buf;
    grpc_byte_buffer *recv_buf;
    int heard_start;   /* client: the server's initial metadata arrived */
    int64_t started_at;
    grpc_metadata_array md; /* server: the request's; client: the server's */
    grpc_metadata_array trailing;
    grpc_status_code status;
    grpc_slice details;
    int cancelled;     /* server: how the call closed */
    nq_id id;          /* server: the id in nq-id */
    int has_id;
    int want_stream;   /* server: the client asked for streaming */
    int want_acked;    /* server: the client asked for acknowledged delivery */
    int want_beats;    /* server: the client takes heartbeat frames */
    char *peer_key;    /* server: the connection's address */
    char *identity;    /* server: what its certificate and token say, for
                          the session it opens (which takes it), or NULL */
    gop op_start, op_recv, op_send, op_half, op_end;
};

/* A session's transport state. */
typedef struct gsess {
    nqi_session *s;
    gcall *active;       /* the call carrying its output */
    nq_id id;            /* server: the id its calls carry (nq-id) */
    int has_id;
    char *key;           /* server: the connection its calls come on */
    int asked;           /* the peer asked for acknowledged delivery on the
                            call that carries the session */
    int beats;           /* the peer takes heartbeat frames on it */
    const gdialect *dialect; /* client: what the server speaks */
    int learned;         /* client: the server answered the question */
    int heard;           /* client: the server answered at least once */
    int64_t next_round;  /* client: when to start the next call, or 0 */
    int poll_ms;
    int64_t connect_by;  /* client: a failing connect is retried until then */
    int retry_ms;        /* client: the next retry's delay */
    nqi_timer timer;     /* client: learning and polling; server: idleness */
} gsess;

static inline gsess *gsess_of(nqi_session *s)
{
    return nqi_session_tp(s);
}

/* ---- dialects ------------------------------------------------------------- */

/* What differs between net-queue's rounds and libnq's streaming.  The
 * server picks one per call, the client one per session. */
struct gdialect {
    const char *name;
    /* Client: the call's initial metadata asks for streaming. */
    int asks_stream;
    /* Server: the client half-closed and our status went out before the
     * session finished. */
    void (*server_round_over)(gcall *gc, nqi_session *s);
    /* Server: the call is over (cancelled says how). */
    void (*server_call_end)(gcall *gc, nqi_session *s);
    /* Client: 1 when the call may half-close once its output is sent. */
    int (*client_may_half_close)(nqi_session *s);
    /* Client: the call ended with OK before the session finished. */
    void (*client_call_over)(nqi_session *s);
    /* Client: output is queued while no call is active. */
    void (*client_idle_output)(nqi_session *s);
};

extern const gdialect nqi_grpc_rounds;
extern const gdialect nqi_grpc_stream;

/* ---- lending ---------------------------------------------------------------- */

typedef struct lender lender;
lender *nqi_grpc_lender_new(void);
/* Waits until grpc released every lent slice, then frees the lender (or
 * leaves it allocated, logged, if grpc still holds some). */
void nqi_grpc_lender_finish(nq_comm *c, lender *owner);
/* A slice over the frame's memory (pinning the frame), or 0 if it cannot be
 * set up. */
int nqi_grpc_lend(lender *owner, nqi_frame *f, const struct iovec *piece, grpc_slice *out);

/* ---- the communicator ------------------------------------------------------- */

/* A net-queue client whose session has ended may still send one more
 * round on the same channel (see server.c): such channels are remembered. */
#define NQI_GRPC_SPENT_KEYS 64

typedef struct grpc_state {
    lender *lender;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    int cq_started;
    grpc_server *server;
    void *method;
    grpc_channel *channel;
    /* The server's one outstanding request for a new call. */
    gop new_call_op;
    grpc_call *new_call;
    grpc_metadata_array new_md;
    gpr_timespec new_deadline;
    int requesting;
    gop shutdown_op;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shutdown_done;
    atomic_int loop_stopped; /* completions are settled on the queue thread */
    atomic_int stopping;     /* the server is shutting down: no more requests */
    nqi_list calls;
    struct spent {
        char key[64];
        int64_t until;
    } spent[NQI_GRPC_SPENT_KEYS];
    unsigned spent_next;
    char *bearer;        /* client: "Bearer <token>" for this attempt, or NULL */
    struct x509_store_st *anchors; /* server: what client certificates are
                                      checked against (X509_STORE), or NULL */
} grpc_state;

/* ---- call.c ----------------------------------------------------------------- */

gcall *nqi_grpc_call_new(nq_comm *c, grpc_call *call, int server);
/* Frees a call once nothing is in flight and it is over. */
void nqi_grpc_call_maybe_release(grpc_state *st, gcall *gc);
void nqi_grpc_call_free(grpc_state *st, gcall *gc);
/* Makes op the command its completion becomes. */
void nqi_grpc_op_init(gop *op, gcall *gc, int kind);
/* Starts a batch; returns 0, or -1 when grpc refused it. */
int nqi_grpc_batch(gcall *gc, grpc_op *ops, size_t n, gop *op, int kind);
/* Separates the call from its session. */
void nqi_grpc_detach(gcall *gc);
/* Binds the call to s (taking a reference). */
void nqi_grpc_attach(gcall *gc, nqi_session *s);
void nqi_grpc_start_recv(gcall *gc);
/* Sends the next slice of s's output on gc: 1 sent, 0 nothing to send, -1
 * failed. */
int nqi_grpc_send_slice(nqi_session *s, gcall *gc);
/* 1 when the call may carry more output. */
int nqi_grpc_call_can_send(const gcall *gc);
/* Releases a batch completion that the loop will never run. */
void nqi_grpc_settle(grpc_state *st, gop *op);
/* The loop's work for a completed batch. */
void nqi_grpc_completed(nqi_loop *l, nqi_cmd *cmd);
/* key (nq-stream, nq-acked) among the call's metadata. */
int nqi_grpc_md_has(const grpc_metadata_array *md, const char *key);
/* Arms the session's timer for when unless it is due earlier. */
void nqi_grpc_arm(nqi_session *s, int64_t when);
/* How long a server keeps a session no call carries. */
int64_t nqi_grpc_idle_ms(const nq_comm *c);

/* server.c */
void nqi_grpc_request_call(nq_comm *c);
void nqi_grpc_server_new_call(nqi_worker *w, int success);
void nqi_grpc_server_maybe_finish(gcall *gc);
void nqi_grpc_server_call_over(gcall *gc);
void nqi_grpc_server_timer(nqi_timer *t);
/* A round whose session ended with FIN: remember its channel. */
void nqi_grpc_spent_add(grpc_state *st, const char *key);

/* client.c */
/* The client's session state, before the worker starts. */
void nqi_grpc_client_init(nqi_session *s);
void nqi_grpc_client_start_call(nqi_worker *w);
void nqi_grpc_client_maybe_half_close(gcall *gc);
void nqi_grpc_client_started(gcall *gc, int success);
void nqi_grpc_client_call_over(gcall *gc);
void nqi_grpc_client_timer(nqi_timer *t);
/* The client heard from the server. */
void nqi_grpc_client_heard(nqi_session *s);

/* creds.c */
/* The credentials of nq_open: insecure without TLS, else the options' key,
 * chain and anchors.  Return NQ_OK, NQ_ETLS (logged) or NQ_ENOMEM. */
int nqi_grpc_server_credentials(nq_comm *c, grpc_server_credentials **out);
int nqi_grpc_channel_credentials(nq_comm *c, grpc_channel_credentials **out);
/* Refuses (NQ_EINVAL, logged) a client's token without TLS. */
int nqi_grpc_check_credentials(nq_comm *c);
/* What the certificate of the call's peer says (cert_identity.h), or NULL
 * without one; malloc'd. */
char *nqi_grpc_peer_identity(grpc_call *call);
/* Server: checks a new call's client certificate (NQ_OPT_TLS_CLIENT_AUTH)
 * and bearer token (when tokens are accepted), and sets gc->identity (the
 * certificate's identity, then "\ntoken:<name>").  Returns NQ_OK, NQ_EAUTH
 * (refused: logged and counted) or NQ_ENOMEM, and then the reason for the
 * client's status in why (cap bytes). */
int nqi_grpc_server_identify(nq_comm *c, gcall *gc, char *why, size_t cap);
/* Frees what the credentials left in st (anchors, the client's token). */
void nqi_grpc_credentials_free(grpc_state *st);
/* Client: st->bearer for the next connection attempt, from the secret
 * callback or the token (unchanged when there is neither).  Returns NQ_OK,
 * NQ_EAUTH (the callback failed, logged) or NQ_ENOMEM. */
int nqi_grpc_client_token(nq_comm *c);

/* queue.c */
int nqi_grpc_queue_start(nq_comm *c);
void nqi_grpc_queue_stop(nq_comm *c);

/* grpc.c */
void nqi_grpc_flush(nqi_session *s);
/* The transport's acked hook: whether the peer asked on this session's
 * call. */
int nqi_grpc_acked(nqi_session *s);
/* The transport's beats hook: whether the peer takes heartbeat frames on
 * this session's call (a stream). */
int nqi_grpc_beats(nqi_session *s);
void nqi_grpc_resume(nqi_session *s);

#endif
