/*
 * The gRPC transport, on grpc's C core: one bidirectional-streaming method
 * /grpc/comm carrying raw slices of the framed byte stream (no protobuf).
 *
 * Two ways of using a call:
 * - rounds, as net-queue does: the client sends what it has queued, half
 *   closes and reads what the server has queued until the call ends; it
 *   polls with new calls when idle.  The byte stream continues from call to
 *   call, so the server keys such sessions on the connection's address.
 * - streaming, between libnq peers: the client asks for it in its initial
 *   metadata (nq-stream, with its id in nq-id), the server agrees in its own,
 *   and one call stays open with data pushed both ways as soon as it is
 *   queued.  Sessions are keyed on the id, so a new connection resumes them.
 *
 * A completion-queue thread forwards every finished batch to the loop,
 * which owns sessions and calls.  At most one batch of each kind is in
 * flight per call, as grpc requires.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nqi.h"

#define METHOD "/grpc/comm"
#define MD_ID "nq-id"
#define MD_STREAM "nq-stream"
/* net-queue 2.2+ sends gRPC messages of up to 16 MiB. */
#define MIN_RECEIVE_LIMIT (16 * 1024 * 1024)
/* How long a client waits for the server's initial metadata before it
 * assumes a server that answers only at the end of each round. */
#define MODE_WAIT_MS 3000
#define POLL_MIN_MS 1
#define POLL_MAX_MS 100

enum op_kind { OP_NEW_CALL = 1, OP_START, OP_RECV, OP_SEND, OP_HALF_CLOSE, OP_END, OP_SHUTDOWN };
enum mode { MODE_UNKNOWN = 0, MODE_STREAM, MODE_ROUNDS };

typedef struct gcall gcall;

/* A batch in flight; its completion comes back to the loop as a command. */
struct gop {
    nqi_cmd cmd; /* first member */
    int kind;
    int success;
    gcall *gc;
};

struct gcall {
    gcall *next; /* the communicator's list of calls */
    gcall *prev;
    grpc_call *call;
    nqi_session *s; /* the session it carries (a reference), or NULL */
    int server;
    int ops; /* batches in flight */
    int sending;
    size_t send_len;
    grpc_byte_buffer *send_buf;
    grpc_byte_buffer *recv_buf;
    int receiving;
    int half_closed; /* server: the client half-closed; client: we did */
    int status_sent;
    int done; /* server: closed; client: status received */
    int started; /* client: the server's initial metadata arrived */
    int64_t started_at;
    int streaming;
    grpc_metadata_array md; /* server: the request's; client: the server's */
    grpc_metadata_array trailing;
    grpc_status_code status;
    grpc_slice details;
    int cancelled;
    gpr_timespec deadline;
    nq_id id; /* server: the id in nq-id */
    int has_id;
    int want_stream;
    char *peer_key; /* server: the connection's address */
    struct gop op_start, op_recv, op_send, op_half, op_end;
};

/* A session's transport state. */
struct gsess {
    gcall *active;
    nq_id id;
    int has_id;
    char *key;
    int mode;            /* client: what the server does */
    int heard;           /* client: the server answered at least once */
    int64_t next_round;  /* client, rounds: when to poll again */
    int poll_ms;
    int64_t idle_until;  /* server, rounds: expiry of a detached session */
};

/* A net-queue client whose session has ended may still send one more
 * round on the same channel: a poll that was already under way opens a new
 * session with a fresh INI and is never followed up, since the client has
 * closed.  Such rounds get an empty answer for a while instead of a session
 * that would hold the server's close and the client's id.  A new client
 * (a new communicator) comes on a new channel, from another address. */
#define SPENT_KEYS 64
#define SPENT_MS 10000

/* Payload pieces of at least LEND_MIN bytes go to grpc as slices over the
 * frame's own memory instead of a copy.  grpc may hold such a slice after
 * the send completes, so each one pins its frame (the put's future waits
 * for it) and is counted here; the communicator's last step waits until
 * grpc has let go of every one.  Separate from grpc_state so a release
 * that comes late still finds it. */
#define LEND_MIN (64 * 1024)
#define LEND_WAIT_MS 10000

typedef struct lender {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long lent;
} lender;

struct lend {
    lender *owner;
    nqi_frame *frame;
};

typedef struct grpc_state {
    lender *lender;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    int cq_started;
    grpc_server *server;
    void *method;
    grpc_channel *channel;
    /* The server's one outstanding request for a new call. */
    struct gop new_call_op;
    grpc_call *new_call;
    grpc_metadata_array new_md;
    gpr_timespec new_deadline;
    int requesting;
    struct gop shutdown_op;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shutdown_done;
    atomic_int loop_stopped;
    atomic_int stopping; /* the server is shutting down: no more requests */
    gcall *calls;
    /* Server: channels whose session in rounds ended with FIN (ring). */
    struct spent {
        char key[64];
        int64_t until;
    } spent[SPENT_KEYS];
    unsigned spent_next;
} grpc_state;

static void flush(nqi_session *s);

/* ---- helpers ------------------------------------------------------------------ */

static int64_t idle_limit_ms(const nq_comm *c)
{
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    return 2 * (ka > 0 ? ka : 15000);
}

static void arm(nqi_loop *l, int64_t when)
{
    if (l->timer_ms == 0 || when < l->timer_ms) {
        l->timer_ms = when;
    }
}

static void spent_add(grpc_state *st, const char *key)
{
    if (strlen(key) >= sizeof(st->spent[0].key)) {
        return;
    }
    struct spent *e = &st->spent[st->spent_next++ % SPENT_KEYS];
    strcpy(e->key, key);
    e->until = nqi_now_ms() + SPENT_MS;
}

static int spent_has(const grpc_state *st, const char *key)
{
    int64_t now = nqi_now_ms();
    for (int i = 0; i < SPENT_KEYS; i++) {
        if (st->spent[i].until > now && strcmp(st->spent[i].key, key) == 0) {
            return 1;
        }
    }
    return 0;
}

static int slice_equals(grpc_slice s, const char *text)
{
    size_t n = strlen(text);
    return GRPC_SLICE_LENGTH(s) == n && memcmp(GRPC_SLICE_START_PTR(s), text, n) == 0;
}

static struct gsess *gs_of(nqi_session *s)
{
    return s->tp;
}

static int start_batch(gcall *gc, grpc_op *ops, size_t n, struct gop *op, int kind)
{
    op->kind = kind;
    op->gc = gc;
    op->cmd.embedded = 1;
    op->cmd.type = NQI_CMD_TRANSPORT;
    op->cmd.subtype = kind;
    grpc_call_error e = grpc_call_start_batch(gc->call, ops, n, op, NULL);
    if (e != GRPC_CALL_OK) {
        return -1;
    }
    gc->ops++;
    return 0;
}

static gcall *gcall_new(nq_comm *c, grpc_call *call, int server)
{
    grpc_state *st = c->tp;
    gcall *gc = calloc(1, sizeof(*gc));
    if (gc == NULL) {
        return NULL;
    }
    gc->call = call;
    gc->server = server;
    gc->started_at = nqi_now_ms();
    grpc_metadata_array_init(&gc->md);
    grpc_metadata_array_init(&gc->trailing);
    gc->details = grpc_empty_slice();
    gc->next = st->calls;
    if (st->calls != NULL) {
        st->calls->prev = gc;
    }
    st->calls = gc;
    return gc;
}

static void detach(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    gc->s = NULL;
    struct gsess *gs = gs_of(s);
    if (gs != NULL && gs->active == gc) {
        gs->active = NULL;
    }
    nqi_session_unref(s);
}

static void gcall_free(grpc_state *st, gcall *gc)
{
    if (gc->prev != NULL) {
        gc->prev->next = gc->next;
    } else if (st->calls == gc) {
        st->calls = gc->next;
    }
    if (gc->next != NULL) {
        gc->next->prev = gc->prev;
    }
    if (gc->send_buf != NULL) {
        grpc_byte_buffer_destroy(gc->send_buf);
    }
    if (gc->recv_buf != NULL) {
        grpc_byte_buffer_destroy(gc->recv_buf);
    }
    grpc_metadata_array_destroy(&gc->md);
    grpc_metadata_array_destroy(&gc->trailing);
    grpc_slice_unref(gc->details);
    if (gc->call != NULL) {
        grpc_call_unref(gc->call);
    }
    free(gc->peer_key);
    free(gc);
}

/* Frees a call once nothing is in flight and it is over. */
static void maybe_release(grpc_state *st, gcall *gc)
{
    if (gc->ops == 0 && gc->done) {
        detach(gc);
        gcall_free(st, gc);
    }
}

/* grpc let go of a lent slice (on any thread, possibly much later). */
static void lend_release(void *arg)
{
    struct lend *l = arg;
    lender *owner = l->owner;
    nqi_frame_unpin(l->frame);
    free(l);
    pthread_mutex_lock(&owner->mu);
    if (--owner->lent == 0) {
        pthread_cond_broadcast(&owner->cv);
    }
    pthread_mutex_unlock(&owner->mu);
}

/* A slice over the frame's memory, or 0 if it cannot be set up. */
static int lend_slice(lender *owner, nqi_frame *f, const struct iovec *piece, grpc_slice *out)
{
    struct lend *l = malloc(sizeof(*l));
    if (l == NULL) {
        return 0;
    }
    l->owner = owner;
    l->frame = f;
    nqi_frame_pin(f);
    pthread_mutex_lock(&owner->mu);
    owner->lent++;
    pthread_mutex_unlock(&owner->mu);
    *out = grpc_slice_new_with_user_data(piece->iov_base, piece->iov_len, lend_release, l);
    return 1;
}

/* One slice holding a copy of the pieces [from, to). */
static grpc_slice copy_slice(const struct iovec *iov, int from, int to)
{
    size_t len = 0;
    for (int i = from; i < to; i++) {
        len += iov[i].iov_len;
    }
    grpc_slice slice = grpc_slice_malloc(len);
    nqi_iov_copy(GRPC_SLICE_START_PTR(slice), iov + from, to - from);
    return slice;
}

/* Sends the next slice of the session's output on its active call: large
 * pieces lent, runs of small ones copied together. */
static int send_slice(nqi_session *s, gcall *gc)
{
    grpc_state *st = s->comm->tp;
    size_t slice_max = (size_t)s->comm->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    struct iovec iov[64];
    nqi_frame *owners[64];
    size_t total;
    int n = nqi_session_out_iov(s, iov, owners, 64, slice_max, &total);
    if (n == 0) {
        return 0;
    }
    grpc_slice slices[64];
    size_t nslices = 0;
    for (int i = 0; i < n;) {
        if (iov[i].iov_len >= LEND_MIN && lend_slice(st->lender, owners[i], &iov[i],
                                                     &slices[nslices])) {
            nslices++;
            i++;
            continue;
        }
        int end = i + 1;
        while (end < n && iov[end].iov_len < LEND_MIN) {
            end++;
        }
        slices[nslices++] = copy_slice(iov, i, end);
        i = end;
    }
    gc->send_buf = grpc_raw_byte_buffer_create(slices, nslices);
    for (size_t i = 0; i < nslices; i++) {
        grpc_slice_unref(slices[i]);
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = gc->send_buf;
    if (start_batch(gc, &op, 1, &gc->op_send, OP_SEND) != 0) {
        grpc_byte_buffer_destroy(gc->send_buf);
        gc->send_buf = NULL;
        return -1;
    }
    gc->sending = 1;
    gc->send_len = total;
    s->out_sent += total;
    return 1;
}

static void start_recv(gcall *gc)
{
    if (gc->receiving || gc->done) {
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &gc->recv_buf;
    if (start_batch(gc, &op, 1, &gc->op_recv, OP_RECV) == 0) {
        gc->receiving = 1;
    }
}

/* Feeds a received gRPC message to the session.  Returns 0 or an error. */
static int feed(nqi_session *s, grpc_byte_buffer *buf)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buf)) {
        return NQ_EPROTO;
    }
    grpc_slice slice;
    int rv = 0;
    while (rv == 0 && grpc_byte_buffer_reader_next(&reader, &slice)) {
        rv = nqi_session_in(s, GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice));
        grpc_slice_unref(slice);
    }
    grpc_byte_buffer_reader_destroy(&reader);
    return rv;
}

static struct gsess *gsess_new(nqi_session *s)
{
    struct gsess *gs = calloc(1, sizeof(*gs));
    if (gs != NULL) {
        gs->poll_ms = POLL_MIN_MS;
        s->tp = gs;
    }
    return gs;
}

/* ---- server ------------------------------------------------------------------- */

static void request_call(nq_comm *c)
{
    grpc_state *st = c->tp;
    /* While closing, calls still come in: a client in rounds brings its
     * FIN in a new call (server_session() turns strangers away). */
    if (st->requesting || st->server == NULL || atomic_load(&st->stopping)) {
        return;
    }
    st->new_call = NULL;
    grpc_metadata_array_init(&st->new_md);
    st->new_call_op.kind = OP_NEW_CALL;
    st->new_call_op.cmd.embedded = 1;
    st->new_call_op.cmd.type = NQI_CMD_TRANSPORT;
    st->new_call_op.cmd.subtype = OP_NEW_CALL;
    if (grpc_server_request_registered_call(st->server, st->method, &st->new_call,
                                            &st->new_deadline, &st->new_md, NULL, st->cq, st->cq,
                                            &st->new_call_op) == GRPC_CALL_OK) {
        st->requesting = 1;
    } else {
        grpc_metadata_array_destroy(&st->new_md);
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot wait for new calls");
    }
}

/* The session a new call carries: by id when the client sent one, else by
 * its connection's address; created when new. */
static nqi_session *server_session(nqi_loop *l, gcall *gc)
{
    nq_comm *c = l->comm;
    for (nqi_session *s = l->sessions; s != NULL; s = s->loop_next) {
        struct gsess *gs = gs_of(s);
        if (gs == NULL) {
            continue;
        }
        if (gc->has_id ? (gs->has_id && nq_id_equal(&gs->id, &gc->id))
                       : (gs->key != NULL && gc->peer_key != NULL &&
                          strcmp(gs->key, gc->peer_key) == 0)) {
            return s;
        }
    }
    if (l->closing || (gc->peer_key != NULL && spent_has(c->tp, gc->peer_key))) {
        return NULL;
    }
    nqi_session *s = nqi_session_new(c, l, -1);
    if (s == NULL) {
        return NULL;
    }
    s->conn_state = NQI_CONN_OPEN;
    s->deadline_ms = nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    l->pending_ini++;
    nqi_live_inc(c);
    nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
    struct gsess *gs = gsess_new(s);
    if (gs == NULL || (!gc->has_id && gc->peer_key != NULL &&
                       (gs->key = strdup(gc->peer_key)) == NULL)) {
        nqi_session_end(s, NQ_ENOMEM);
        return NULL;
    }
    gs->id = gc->id;
    gs->has_id = gc->has_id;
    return s;
}

/* Ends the call with OK once the client has half-closed and everything
 * queued at that point has been sent. */
static void server_maybe_finish(gcall *gc)
{
    nqi_session *s = gc->s;
    if (gc->status_sent || gc->done || !gc->half_closed || gc->sending) {
        return;
    }
    if (s != NULL && !s->ended && gs_of(s)->active == gc && nqi_session_out_pending(s) > 0 &&
        (!gc->streaming || !nqi_session_finished(s))) {
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = GRPC_STATUS_OK;
    if (start_batch(gc, &op, 1, &gc->op_half, OP_HALF_CLOSE) == 0) {
        gc->status_sent = 1;
    }
    if (s == NULL || s->ended) {
        return;
    }
    if (nqi_session_finished(s)) {
        detach(gc);
        nqi_session_end(s, 0);
    } else if (!gc->streaming) {
        /* A round ended: the session waits for the next call. */
        detach(gc);
        gs_of(s)->idle_until = nqi_now_ms() + idle_limit_ms(s->comm);
        arm(s->loop, gs_of(s)->idle_until);
    }
    /* A stream half-closed before FIN stays attached: the call's end says
     * whether the client died (cancelled) or fell back to rounds. */
}

static void server_new_call(nqi_loop *l, int success)
{
    nq_comm *c = l->comm;
    grpc_state *st = c->tp;
    st->requesting = 0;
    grpc_call *call = st->new_call;
    grpc_metadata_array md = st->new_md;
    if (!success || call == NULL) {
        grpc_metadata_array_destroy(&md);
        return;
    }
    request_call(c);
    gcall *gc = gcall_new(c, call, 1);
    if (gc == NULL) {
        grpc_call_cancel(call, NULL);
        grpc_call_unref(call);
        grpc_metadata_array_destroy(&md);
        return;
    }
    gc->md = md;
    for (size_t i = 0; i < md.count; i++) {
        if (slice_equals(md.metadata[i].key, MD_ID)) {
            char hex[40] = "";
            size_t n = GRPC_SLICE_LENGTH(md.metadata[i].value);
            if (n < sizeof(hex)) {
                memcpy(hex, GRPC_SLICE_START_PTR(md.metadata[i].value), n);
                hex[n] = 0;
                gc->has_id = nq_id_parse(hex, &gc->id) == NQ_OK;
            }
        } else if (slice_equals(md.metadata[i].key, MD_STREAM)) {
            gc->want_stream = 1;
        }
    }
    if (!gc->has_id) {
        char *peer = grpc_call_get_peer(call);
        gc->peer_key = peer != NULL ? strdup(peer) : NULL;
        gpr_free(peer);
    }
    gc->streaming = gc->has_id && gc->want_stream;

    grpc_op end;
    memset(&end, 0, sizeof(end));
    end.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    end.data.recv_close_on_server.cancelled = &gc->cancelled;
    if (start_batch(gc, &end, 1, &gc->op_end, OP_END) != 0) {
        gc->done = 1;
        maybe_release(st, gc);
        return;
    }
    grpc_metadata agree;
    memset(&agree, 0, sizeof(agree));
    agree.key = grpc_slice_from_static_string(MD_STREAM);
    agree.value = grpc_slice_from_static_string("1");
    grpc_op start;
    memset(&start, 0, sizeof(start));
    start.op = GRPC_OP_SEND_INITIAL_METADATA;
    start.data.send_initial_metadata.count = gc->streaming ? 1 : 0;
    start.data.send_initial_metadata.metadata = gc->streaming ? &agree : NULL;
    start_batch(gc, &start, 1, &gc->op_start, OP_START);

    nqi_session *s = server_session(l, gc);
    if (s == NULL) {
        /* Closing, or a channel whose session is over: a polling client
         * gets an empty round, not an error. */
        gc->half_closed = 1;
        server_maybe_finish(gc);
        return;
    }
    struct gsess *gs = gs_of(s);
    if (gs->active != NULL && gs->active != gc && gc->streaming) {
        /* A reconnecting client: the new stream takes over the session. */
        gcall *old = gs->active;
        detach(old);
        grpc_call_cancel(old->call, NULL);
    }
    nqi_session_ref(s);
    gc->s = s;
    /* A round that overlaps the one carrying output (a poll beside a put)
     * feeds input and ends empty; output stays with the first. */
    if (gs->active == NULL) {
        gs->active = gc;
    }
    gs->idle_until = 0;
    start_recv(gc);
    flush(s);
}

/* ---- client ------------------------------------------------------------------- */

static void client_start_call(nqi_loop *l)
{
    nq_comm *c = l->comm;
    grpc_state *st = c->tp;
    nqi_session *s = c->client;
    if (s == NULL || s->ended) {
        return;
    }
    struct gsess *gs = gs_of(s);
    if (gs->active != NULL) {
        return;
    }
    grpc_call *call = grpc_channel_create_call(st->channel, NULL, GRPC_PROPAGATE_DEFAULTS, st->cq,
                                               grpc_slice_from_static_string(METHOD), NULL,
                                               gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    gcall *gc = call != NULL ? gcall_new(c, call, 0) : NULL;
    if (gc == NULL) {
        if (call != NULL) {
            grpc_call_unref(call);
        }
        nqi_session_end(s, NQ_ENOMEM);
        return;
    }
    grpc_op end;
    memset(&end, 0, sizeof(end));
    end.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    end.data.recv_status_on_client.trailing_metadata = &gc->trailing;
    end.data.recv_status_on_client.status = &gc->status;
    end.data.recv_status_on_client.status_details = &gc->details;
    if (start_batch(gc, &end, 1, &gc->op_end, OP_END) != 0) {
        gc->done = 1;
        maybe_release(st, gc);
        nqi_session_end(s, NQ_ECONNRESET);
        return;
    }
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(&c->opts.id, hex);
    grpc_metadata md[2];
    memset(md, 0, sizeof(md));
    md[0].key = grpc_slice_from_static_string(MD_ID);
    md[0].value = grpc_slice_from_copied_string(hex);
    md[1].key = grpc_slice_from_static_string(MD_STREAM);
    md[1].value = grpc_slice_from_static_string("1");
    grpc_op start[2];
    memset(start, 0, sizeof(start));
    /* The id always goes along, so the session survives a change of
     * connection; the stream is asked for until the server declines. */
    start[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    start[0].data.send_initial_metadata.count = gs->mode == MODE_ROUNDS ? 1 : 2;
    start[0].data.send_initial_metadata.metadata = md;
    start[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    start[1].data.recv_initial_metadata.recv_initial_metadata = &gc->md;
    int rv = start_batch(gc, start, 2, &gc->op_start, OP_START);
    grpc_slice_unref(md[0].value);
    if (rv != 0) {
        grpc_call_cancel(call, NULL);
        return;
    }
    nqi_session_ref(s);
    gc->s = s;
    gs->active = gc;
    if (gs->mode == MODE_UNKNOWN) {
        arm(l, nqi_now_ms() + MODE_WAIT_MS);
    } else if (gs->mode == MODE_ROUNDS) {
        /* A round's answers come whenever the server sends them. */
        start_recv(gc);
    }
    flush(s);
}

/* Rounds: half-close once everything queued has been sent. */
static void client_maybe_half_close(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL || gc->half_closed || gc->sending || gc->done) {
        return;
    }
    struct gsess *gs = gs_of(s);
    int rounds = gs->mode == MODE_ROUNDS;
    int stream_over = gs->mode == MODE_STREAM && nqi_session_finished(s);
    if ((!rounds && !stream_over) || nqi_session_out_pending(s) > 0) {
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (start_batch(gc, &op, 1, &gc->op_half, OP_HALF_CLOSE) == 0) {
        gc->half_closed = 1;
    }
}

static void client_learn_mode(gcall *gc, int mode)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    struct gsess *gs = gs_of(s);
    if (gs->mode == MODE_UNKNOWN) {
        gs->mode = mode;
        nqi_logf(&s->comm->log, NQ_LOG_DEBUG, "gRPC: the server %s",
                 mode == MODE_STREAM ? "streams" : "answers in rounds");
    }
    start_recv(gc);
    client_maybe_half_close(gc);
}

/* Why a call that never reached the server failed. */
static int connect_error(nq_comm *c, gcall *gc)
{
    char text[256];
    size_t n = GRPC_SLICE_LENGTH(gc->details);
    n = n < sizeof(text) - 1 ? n : sizeof(text) - 1;
    memcpy(text, GRPC_SLICE_START_PTR(gc->details), n);
    text[n] = 0;
    nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC call to %s:%u failed (status %d): %s", c->opts.host,
             (unsigned)c->opts.port, (int)gc->status, text);
    if (c->opts.tls && (strstr(text, "SSL") != NULL || strstr(text, "ssl") != NULL ||
                        strstr(text, "andshake") != NULL || strstr(text, "ertificate") != NULL)) {
        return NQ_ETLS;
    }
    return NQ_ECONNREFUSED;
}

static void client_call_over(nqi_loop *l, gcall *gc)
{
    nq_comm *c = l->comm;
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    nqi_session_ref(s);
    detach(gc);
    struct gsess *gs = gs_of(s);
    if (s->ended) {
        /* nothing to do */
    } else if (gc->status != GRPC_STATUS_OK) {
        nqi_session_end(s, gs->heard ? NQ_ECONNRESET : connect_error(c, gc));
    } else if (nqi_session_finished(s)) {
        nqi_session_end(s, 0);
    } else if (gs->mode != MODE_ROUNDS) {
        nqi_logf(&c->log, NQ_LOG_WARN, "gRPC: the server ended the stream before FIN");
        nqi_session_end(s, NQ_ECONNRESET);
    } else {
        int64_t when = nqi_now_ms() + gs->poll_ms;
        if (nqi_session_out_pending(s) > 0 || s->fin_queued) {
            when = nqi_now_ms();
        }
        gs->next_round = when;
        arm(l, when);
    }
    nqi_session_unref(s);
}

/* ---- completions on the loop ------------------------------------------------ */

static void on_recv(gcall *gc, int success)
{
    gc->receiving = 0;
    grpc_byte_buffer *buf = gc->recv_buf;
    gc->recv_buf = NULL;
    nqi_session *s = gc->s;
    if (!success) {
        if (buf != NULL) {
            grpc_byte_buffer_destroy(buf);
        }
        return;
    }
    if (buf == NULL) {
        if (gc->server) {
            gc->half_closed = 1;
            server_maybe_finish(gc);
        }
        return;
    }
    int rv = 0;
    if (s != NULL && !s->ended) {
        nqi_session_ref(s);
        if (!gc->server) {
            struct gsess *gs = gs_of(s);
            gs->heard = 1;
            gs->poll_ms = POLL_MIN_MS;
        }
        rv = feed(s, buf);
        if (rv == 0 && gc->server && s->ini_received && gs_of(s)->has_id &&
            !nq_id_equal(&s->peer, &gs_of(s)->id)) {
            nqi_logf(&s->comm->log, NQ_LOG_WARN, "gRPC: INI id differs from the nq-id metadata");
            rv = NQ_EPROTO;
        }
        if (rv != 0) {
            nqi_session_end(s, rv);
            grpc_call_cancel(gc->call, NULL);
        } else {
            nqi_session_deliver(s);
            flush(s);
        }
        nqi_session_unref(s);
    }
    grpc_byte_buffer_destroy(buf);
    if (rv == 0) {
        start_recv(gc);
    }
}

static void on_sent(gcall *gc, int success)
{
    gc->sending = 0;
    grpc_byte_buffer_destroy(gc->send_buf);
    gc->send_buf = NULL;
    nqi_session *s = gc->s;
    if (s == NULL || s->ended) {
        return;
    }
    s->out_sent -= gc->send_len;
    if (!success) {
        return; /* the call is failing; its end decides */
    }
    nqi_session_ref(s);
    nqi_session_out_commit(s, gc->send_len);
    flush(s);
    nqi_session_unref(s);
}

static void grpc_on_command(nqi_loop *l, nqi_cmd *cmd)
{
    nq_comm *c = l->comm;
    grpc_state *st = c->tp;
    struct gop *op = (struct gop *)cmd;
    if (op->kind == OP_NEW_CALL) {
        server_new_call(l, op->success);
        return;
    }
    gcall *gc = op->gc;
    gc->ops--;
    switch (op->kind) {
    case OP_START:
        if (!gc->server) {
            gc->started = 1;
            int stream = 0;
            for (size_t i = 0; i < gc->md.count; i++) {
                stream |= slice_equals(gc->md.metadata[i].key, MD_STREAM);
            }
            if (op->success) {
                client_learn_mode(gc, stream ? MODE_STREAM : MODE_ROUNDS);
            }
        }
        break;
    case OP_RECV:
        on_recv(gc, op->success);
        break;
    case OP_SEND:
        on_sent(gc, op->success);
        break;
    case OP_HALF_CLOSE:
        break;
    case OP_END:
        gc->done = 1;
        if (gc->server) {
            nqi_session *s = gc->s;
            if (s != NULL) {
                nqi_session_ref(s);
                detach(gc);
                if (!s->ended && gc->cancelled && gc->streaming) {
                    nqi_session_end(s, NQ_ECONNRESET);
                } else if (!s->ended) {
                    gs_of(s)->idle_until = nqi_now_ms() + idle_limit_ms(c);
                    arm(l, gs_of(s)->idle_until);
                }
                nqi_session_unref(s);
            }
        } else {
            client_call_over(l, gc);
        }
        break;
    default:
        break;
    }
    maybe_release(st, gc);
}

static void grpc_on_timer(nqi_loop *l)
{
    nq_comm *c = l->comm;
    int64_t now = nqi_now_ms();
    nqi_session *next;
    for (nqi_session *s = l->sessions; s != NULL; s = next) {
        next = s->loop_next;
        struct gsess *gs = gs_of(s);
        if (gs == NULL) {
            continue;
        }
        if (c->purpose == NQ_CLIENT) {
            gcall *gc = gs->active;
            if (gc != NULL && gs->mode == MODE_UNKNOWN && !gc->started &&
                now - gc->started_at >= MODE_WAIT_MS) {
                /* No answer yet: a server that speaks only at the end of a
                 * round.  Half-close so it does. */
                client_learn_mode(gc, MODE_ROUNDS);
            } else if (gc == NULL && gs->next_round > 0) {
                if (now >= gs->next_round) {
                    gs->next_round = 0;
                    if (gs->poll_ms < POLL_MAX_MS) {
                        gs->poll_ms *= 2;
                    }
                    client_start_call(l);
                } else {
                    arm(l, gs->next_round);
                }
            }
        } else if (gs->active == NULL && gs->idle_until > 0) {
            if (now >= gs->idle_until) {
                nqi_logf(&c->log, NQ_LOG_WARN, "gRPC: dropping a peer silent for %lld ms",
                         (long long)idle_limit_ms(c));
                nqi_session_end(s, NQ_ECONNRESET);
            } else {
                arm(l, gs->idle_until);
            }
        }
    }
}

/* ---- the transport's hooks --------------------------------------------------- */

static void flush(nqi_session *s)
{
    if (s->ended) {
        return;
    }
    struct gsess *gs = gs_of(s);
    gcall *gc = gs != NULL ? gs->active : NULL;
    if (gc == NULL) {
        /* Rounds: output waits for the next call, which starts now. */
        if (s->comm->purpose == NQ_CLIENT && gs != NULL && gs->mode == MODE_ROUNDS &&
            nqi_session_out_pending(s) > 0) {
            gs->next_round = nqi_now_ms();
            arm(s->loop, gs->next_round);
        }
        return;
    }
    if (!gc->sending && !gc->done && !gc->status_sent && !(gc->half_closed && !gc->server)) {
        if (send_slice(s, gc) < 0) {
            grpc_call_cancel(gc->call, NULL);
            return;
        }
    }
    if (gc->server) {
        server_maybe_finish(gc);
    } else {
        client_maybe_half_close(gc);
    }
}

static void grpc_loop_start(nqi_loop *l)
{
    nq_comm *c = l->comm;
    if (c->purpose == NQ_SERVER) {
        request_call(c);
    } else {
        client_start_call(l);
    }
}

static void grpc_session_end(nqi_session *s)
{
    struct gsess *gs = s->tp;
    if (gs == NULL) {
        return;
    }
    if (gs->active != NULL) {
        gcall *gc = gs->active;
        detach(gc);
        if (!gc->done && !gc->status_sent) {
            if (gc->server && (s->error == 0 || s->error == NQ_ECLOSED)) {
                /* A round cut short by close ends like any other round. */
                gc->half_closed = 1;
                server_maybe_finish(gc);
            } else {
                grpc_call_cancel(gc->call, NULL);
            }
        }
    }
    if (gs->key != NULL && s->error == 0 && s->fin_received) {
        spent_add(s->comm->tp, gs->key);
    }
    s->out_sent = 0;
    free(gs->key);
    free(gs);
    s->tp = NULL;
}

static void *cq_main(void *arg)
{
    nq_comm *c = arg;
    grpc_state *st = c->tp;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(st->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        struct gop *op = ev.tag;
        op->success = ev.success;
        if (op->kind == OP_SHUTDOWN) {
            pthread_mutex_lock(&st->mu);
            st->shutdown_done = 1;
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        if (atomic_load(&st->loop_stopped)) {
            /* Late completions after the loop stopped: settle them here. */
            if (op->kind == OP_NEW_CALL) {
                if (st->new_call != NULL) {
                    grpc_call_unref(st->new_call);
                    st->new_call = NULL;
                }
                grpc_metadata_array_destroy(&st->new_md);
                st->requesting = 0;
            } else {
                op->gc->ops--;
                if (op->kind == OP_END) {
                    op->gc->done = 1;
                }
            }
            continue;
        }
        nqi_loop_post(&c->loops[0], &op->cmd);
    }
    return NULL;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap == 0 ? 8192 : cap * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) {
            break;
        }
    }
    fclose(f);
    buf[len] = 0;
    return buf;
}

static int grpc_open(nq_comm *c)
{
    grpc_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NQ_ENOMEM;
    }
    c->tp = st;
    pthread_mutex_init(&st->mu, NULL);
    nqi_cond_init(&st->cv);
    grpc_init();
    st->lender = calloc(1, sizeof(*st->lender));
    if (st->lender == NULL) {
        return NQ_ENOMEM;
    }
    pthread_mutex_init(&st->lender->mu, NULL);
    nqi_cond_init(&st->lender->cv);
    st->cq = grpc_completion_queue_create_for_next(NULL);

    int64_t psize = c->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    grpc_arg args[6];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[0].value.integer = (int)psize;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = (int)(psize > MIN_RECEIVE_LIMIT ? psize : MIN_RECEIVE_LIMIT);
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_KEEPALIVE_TIME_MS;
    args[2].value.integer = ka > 0 ? (int)ka : INT32_MAX;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[3].value.integer = ka > 0 ? (int)(ka / 3 > 1000 ? ka / 3 : 1000) : 20000;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[4].value.integer = 1;
    /* Every client its own connection: grpc would otherwise share one
     * between channels to the same address, and a server that tells its
     * peers apart by address (net-queue) would take them for one. */
    args[5].type = GRPC_ARG_INTEGER;
    args[5].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[5].value.integer = 1;
    grpc_channel_args chargs = {6, args};

    char target[300];
    int v6 = strchr(c->opts.host, ':') != NULL;
    snprintf(target, sizeof(target), "%s%s%s:%u", v6 ? "[" : "", c->opts.host, v6 ? "]" : "",
             (unsigned)c->opts.port);

    if (c->purpose == NQ_SERVER) {
        st->server = grpc_server_create(&chargs, NULL);
        grpc_server_register_completion_queue(st->server, st->cq, NULL);
        st->method = grpc_server_register_method(st->server, METHOD, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
        grpc_server_credentials *creds;
        if (c->opts.tls) {
            char *key = read_file(c->opts.key_path);
            char *cert = read_file(c->opts.cert_path);
            grpc_ssl_pem_key_cert_pair pair = {key, cert};
            creds = key != NULL && cert != NULL
                        ? grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL)
                        : NULL;
            free(key);
            free(cert);
            if (creds == NULL) {
                nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot load the key and certificate");
                return NQ_ETLS;
            }
        } else {
            creds = grpc_insecure_server_credentials_create();
        }
        int port = grpc_server_add_http2_port(st->server, target, creds);
        grpc_server_credentials_release(creds);
        if (port <= 0) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot listen on %s", target);
            /* grpc does not say why; a port that is busy is the usual one. */
            return c->opts.port != 0 ? NQ_EADDRINUSE : NQ_EADDR;
        }
        atomic_store(&c->local_port, port);
        grpc_server_start(st->server);
    } else {
        grpc_channel_credentials *creds;
        if (c->opts.tls) {
            char *roots = NULL;
            if (c->opts.cert_path != NULL && (roots = read_file(c->opts.cert_path)) == NULL) {
                nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot read %s", c->opts.cert_path);
                return NQ_ETLS;
            }
            creds = grpc_ssl_credentials_create(roots, NULL, NULL, NULL);
            free(roots);
        } else {
            creds = grpc_insecure_credentials_create();
        }
        st->channel = grpc_channel_create(target, creds, &chargs);
        grpc_channel_credentials_release(creds);
        if (st->channel == NULL) {
            return NQ_EADDR;
        }
        if (gsess_new(c->client) == NULL) {
            return NQ_ENOMEM;
        }
        c->client->conn_state = NQI_CONN_OPEN;
    }
    if (pthread_create(&st->cq_thread, NULL, cq_main, c) != 0) {
        return NQ_ESYS;
    }
    st->cq_started = 1;
    return NQ_OK;
}

/* Once every session is over: stop the server, cancel what is left, and
 * let the loop settle the last completions. */
static void grpc_close(nq_comm *c)
{
    grpc_state *st = c->tp;
    if (st == NULL || st->server == NULL) {
        return;
    }
    atomic_store(&st->stopping, 1);
    st->shutdown_op.kind = OP_SHUTDOWN;
    grpc_server_shutdown_and_notify(st->server, st->cq, &st->shutdown_op);
    /* Calls still running (the round that carried our FIN, a last poll)
     * get a moment to end normally before they are cancelled. */
    struct timespec grace = nqi_deadline_after(1000);
    int cancelled = 0;
    pthread_mutex_lock(&st->mu);
    while (!st->shutdown_done) {
        if (cancelled) {
            pthread_cond_wait(&st->cv, &st->mu);
        } else if (pthread_cond_timedwait(&st->cv, &st->mu, &grace) == ETIMEDOUT) {
            pthread_mutex_unlock(&st->mu);
            grpc_server_cancel_all_calls(st->server);
            cancelled = 1;
            pthread_mutex_lock(&st->mu);
        }
    }
    pthread_mutex_unlock(&st->mu);
}

/* Settles the completions the loop did not run, minus the session work. */
static void settle_posted(nq_comm *c)
{
    grpc_state *st = c->tp;
    nqi_mpsc_node *n;
    while (c->loops != NULL && (n = nqi_mpsc_pop(&c->loops[0].cmds)) != NULL) {
        nqi_cmd *cmd = (nqi_cmd *)n;
        if (cmd->type != NQI_CMD_TRANSPORT) {
            nqi_cmd_release(cmd);
            continue;
        }
        struct gop *op = (struct gop *)cmd;
        if (op->kind == OP_NEW_CALL) {
            if (st->new_call != NULL) {
                grpc_call_unref(st->new_call);
                st->new_call = NULL;
            }
            grpc_metadata_array_destroy(&st->new_md);
            st->requesting = 0;
        }
    }
}

/* Waits until grpc has released every lent slice: their frames point at
 * the communicator and at memory the puts' owners may free once told. */
static void wait_lent(nq_comm *c, lender *owner)
{
    if (owner == NULL) {
        return;
    }
    struct timespec dl = nqi_deadline_after(LEND_WAIT_MS);
    pthread_mutex_lock(&owner->mu);
    int rv = 0;
    while (owner->lent > 0 && rv != ETIMEDOUT) {
        rv = pthread_cond_timedwait(&owner->cv, &owner->mu, &dl);
    }
    long left = owner->lent;
    pthread_mutex_unlock(&owner->mu);
    if (left > 0) {
        /* Left allocated: the late releases still need it. */
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC still holds %ld sent slices after close", left);
        return;
    }
    pthread_mutex_destroy(&owner->mu);
    pthread_cond_destroy(&owner->cv);
    free(owner);
}

static void grpc_shutdown_hook(nq_comm *c)
{
    grpc_state *st = c->tp;
    if (st == NULL) {
        return;
    }
    /* From here the completion-queue thread settles completions itself. */
    atomic_store(&st->loop_stopped, 1);
    settle_posted(c);
    for (gcall *gc = st->calls; gc != NULL; gc = gc->next) {
        grpc_call_cancel(gc->call, NULL);
    }
    if (st->server != NULL && !st->shutdown_done) {
        atomic_store(&st->stopping, 1);
        st->shutdown_op.kind = OP_SHUTDOWN;
        grpc_server_shutdown_and_notify(st->server, st->cq, &st->shutdown_op);
        grpc_server_cancel_all_calls(st->server);
        if (st->cq_started) {
            pthread_mutex_lock(&st->mu);
            while (!st->shutdown_done) {
                pthread_cond_wait(&st->cv, &st->mu);
            }
            pthread_mutex_unlock(&st->mu);
        }
    }
    /* Every cancelled batch completes before the queue reports shutdown. */
    if (st->cq != NULL) {
        grpc_completion_queue_shutdown(st->cq);
        if (st->cq_started) {
            pthread_join(st->cq_thread, NULL);
        } else {
            while (grpc_completion_queue_next(st->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
        }
    }
    settle_posted(c); /* posts that raced with loop_stopped */
    while (st->calls != NULL) {
        gcall *gc = st->calls;
        detach(gc);
        gcall_free(st, gc);
    }
    if (st->requesting && st->new_call != NULL) {
        grpc_call_unref(st->new_call);
        grpc_metadata_array_destroy(&st->new_md);
    }
    if (st->server != NULL) {
        grpc_server_destroy(st->server);
    }
    if (st->channel != NULL) {
        grpc_channel_destroy(st->channel);
    }
    if (st->cq != NULL) {
        grpc_completion_queue_destroy(st->cq);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    lender *owner = st->lender;
    free(st);
    c->tp = NULL;
    grpc_shutdown();
    wait_lent(c, owner);
}

const nqi_transport nqi_grpc_transport = {
    .open = grpc_open,
    .loop_start = grpc_loop_start,
    .flush = flush,
    .on_event = NULL,
    .resume = NULL,
    .on_command = grpc_on_command,
    .on_timer = grpc_on_timer,
    .session_end = grpc_session_end,
    .close = grpc_close,
    .shutdown = grpc_shutdown_hook,
    .pausable = 0,
};
