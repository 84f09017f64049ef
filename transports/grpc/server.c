/*
 * A gRPC server on worker 0's loop: one outstanding request for a new
 * call at a time; each new call finds (or admits) the session it carries,
 * by the client's id when it sends one, else by its connection's address
 * (net-queue's rounds); a call ends with OK once the client half-closed and
 * its output is sent.
 */
#include <grpc/support/alloc.h>
#include <stdlib.h>
#include <string.h>

#include "transports/grpc/grpc.h"

/* A net-queue client whose session has ended may still send one more
 * round on the same channel: a poll that was already under way opens a new
 * session with a fresh INI and is never followed up, since the client has
 * closed.  Such rounds get an empty answer for a while instead of a session
 * that would hold the server's close and the client's id.  A new client
 * (a new communicator) comes on a new channel, from another address. */
#define SPENT_MS 10000

void nqi_grpc_spent_add(grpc_state *st, const char *key)
{
    if (strlen(key) >= sizeof(st->spent[0].key)) {
        return;
    }
    struct spent *e = &st->spent[st->spent_next++ % NQI_GRPC_SPENT_KEYS];
    strcpy(e->key, key);
    e->until = nqi_now_ms() + SPENT_MS;
}

static int spent_has(const grpc_state *st, const char *key)
{
    int64_t now = nqi_now_ms();
    for (int i = 0; i < NQI_GRPC_SPENT_KEYS; i++) {
        if (st->spent[i].until > now && strcmp(st->spent[i].key, key) == 0) {
            return 1;
        }
    }
    return 0;
}

void nqi_grpc_request_call(nq_comm *c)
{
    grpc_state *st = c->tp;
    /* While closing, calls still come in: a client in rounds brings its
     * FIN in a new call (server_session() turns strangers away). */
    if (st->requesting || st->server == NULL || atomic_load(&st->stopping)) {
        return;
    }
    st->new_call = NULL;
    grpc_metadata_array_init(&st->new_md);
    nqi_grpc_op_init(&st->new_call_op, NULL, OP_NEW_CALL);
    if (grpc_server_request_registered_call(st->server, st->method, &st->new_call,
                                            &st->new_deadline, &st->new_md, NULL, st->cq, st->cq,
                                            &st->new_call_op) == GRPC_CALL_OK) {
        st->requesting = 1;
    } else {
        grpc_metadata_array_destroy(&st->new_md);
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot wait for new calls");
    }
}

/* The session a new call carries.  A round belongs to the session bound
 * to the same connection and, when the client sent one, the same id.  A
 * stream is always a new session: a client starts one only with a new
 * INI (its first connection, or a reconnection after it gave the last
 * call up), even on the same HTTP/2 connection, so its bytes never
 * continue an old session's.  Metadata alone never moves a session: the
 * new one's INI meets the rule for a live id (core/peers.c: the newest
 * connection wins, or with acknowledged delivery takes the old session
 * over) like any other. */
static nqi_session *server_session(nqi_worker *w, gcall *gc)
{
    nq_comm *c = w->comm;
    if (gc->peer_key == NULL) {
        return NULL;
    }
    nqi_node *n;
    for (n = nqi_list_first(&w->sessions);
         n != NULL && gc->dialect != &nqi_grpc_stream; n = nqi_list_next(&w->sessions, n)) {
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        gsess *gs = gsess_of(s);
        if (!s->ended && gs->key != NULL && strcmp(gs->key, gc->peer_key) == 0 &&
            gs->has_id == gc->has_id && (!gc->has_id || nq_id_equal(&gs->id, &gc->id))) {
            return gs->s;
        }
    }
    if (!gc->has_id && spent_has(c->tp, gc->peer_key)) {
        return NULL;
    }
    nqi_session *s = nqi_peers_admit(w);
    if (s == NULL) {
        return NULL;
    }
    gsess *gs = gsess_of(s);
    gs->s = s;
    nqi_timer_init(&gs->timer, nqi_grpc_server_timer);
    gs->id = gc->id;
    gs->has_id = gc->has_id;
    /* Before a byte is read, so that admission sees it. */
    nqi_session_set_identity(s, gc->identity);
    gc->identity = NULL;
    if ((gs->key = strdup(gc->peer_key)) == NULL) {
        nqi_session_end(s, NQ_ENOMEM);
        return NULL;
    }
    return s;
}

void nqi_grpc_server_maybe_finish(gcall *gc)
{
    nqi_session *s = gc->s;
    if (gc->state != CALL_HALF_CLOSED || gc->sending) {
        return;
    }
    if (s != NULL && !s->ended && gsess_of(s)->active == gc && nqi_session_out_pending(s) > 0) {
        return; /* the status follows the output */
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = GRPC_STATUS_OK;
    if (nqi_grpc_batch(gc, &op, 1, &gc->op_half, OP_HALF_CLOSE) == 0) {
        gc->state = CALL_STATUS_SENT;
    }
    if (s == NULL || s->ended) {
        return;
    }
    int finished = nqi_session_finished(s);
    nqi_logf(&s->comm->log, NQ_LOG_DEBUG,
             "gRPC: a %s call from %s ends with %llu bytes of output%s", gc->dialect->name,
             gc->peer_key, (unsigned long long)gc->sent, finished ? ", the session's last" : "");
    if (finished) {
        nqi_grpc_detach(gc);
        nqi_session_end(s, 0);
    } else {
        gc->dialect->server_round_over(gc, s);
    }
}

/* Reads nq-id, nq-stream, nq-acked and nq-heartbeat from the request's
 * metadata, and the
 * connection's address. */
static void read_metadata(gcall *gc)
{
    const grpc_metadata_array *md = &gc->md;
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice key = md->metadata[i].key;
        size_t klen = GRPC_SLICE_LENGTH(key);
        const void *k = GRPC_SLICE_START_PTR(key);
        if (klen == strlen(NQI_GRPC_MD_ID) && memcmp(k, NQI_GRPC_MD_ID, klen) == 0) {
            char hex[40] = "";
            size_t n = GRPC_SLICE_LENGTH(md->metadata[i].value);
            if (n < sizeof(hex)) {
                memcpy(hex, GRPC_SLICE_START_PTR(md->metadata[i].value), n);
                hex[n] = 0;
                gc->has_id = nq_id_parse(hex, &gc->id) == NQ_OK;
            }
        } else if (klen == strlen(NQI_GRPC_MD_STREAM) &&
                   memcmp(k, NQI_GRPC_MD_STREAM, klen) == 0) {
            gc->want_stream = 1;
        } else if (klen == strlen(NQI_GRPC_MD_ACKED) &&
                   memcmp(k, NQI_GRPC_MD_ACKED, klen) == 0) {
            gc->want_acked = 1;
        } else if (klen == strlen(NQI_GRPC_MD_HEARTBEAT) &&
                   memcmp(k, NQI_GRPC_MD_HEARTBEAT, klen) == 0) {
            gc->want_beats = 1;
        }
    }
    char *peer = grpc_call_get_peer(gc->call);
    gc->peer_key = peer != NULL ? strdup(peer) : NULL;
    gpr_free(peer);
}

void nqi_grpc_server_new_call(nqi_worker *w, int success)
{
    nq_comm *c = w->comm;
    grpc_state *st = c->tp;
    st->requesting = 0;
    grpc_call *call = st->new_call;
    grpc_metadata_array md = st->new_md;
    if (!success || call == NULL) {
        grpc_metadata_array_destroy(&md);
        return;
    }
    nqi_grpc_request_call(c);
    gcall *gc = nqi_grpc_call_new(c, call, 1);
    if (gc == NULL) {
        grpc_call_cancel(call, NULL);
        grpc_call_unref(call);
        grpc_metadata_array_destroy(&md);
        return;
    }
    grpc_metadata_array_destroy(&gc->md);
    gc->md = md;
    read_metadata(gc);
    char why[256];
    int rv = nqi_grpc_server_identify(c, gc, why, sizeof(why));
    if (rv != NQ_OK) {
        /* Refused before any of its input is read. */
        grpc_call_cancel_with_status(
            call, rv == NQ_EAUTH ? GRPC_STATUS_UNAUTHENTICATED : GRPC_STATUS_RESOURCE_EXHAUSTED,
            why, NULL);
        nqi_grpc_call_free(st, gc);
        return;
    }
    gc->dialect = gc->has_id && gc->want_stream ? &nqi_grpc_stream : &nqi_grpc_rounds;

    grpc_op end;
    memset(&end, 0, sizeof(end));
    end.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    end.data.recv_close_on_server.cancelled = &gc->cancelled;
    if (nqi_grpc_batch(gc, &end, 1, &gc->op_end, OP_END) != 0) {
        gc->state = CALL_DONE;
        nqi_grpc_call_maybe_release(st, gc);
        return;
    }
    int streaming = gc->dialect == &nqi_grpc_stream;
    /* A stream is agreed, and with it the heartbeat, and acknowledged
     * delivery asked for when this server wants it; a round's answer
     * carries nothing of libnq's. */
    grpc_metadata agree[3];
    size_t nagree = 0;
    memset(agree, 0, sizeof(agree));
    if (streaming) {
        agree[nagree].key = grpc_slice_from_static_string(NQI_GRPC_MD_STREAM);
        agree[nagree++].value = grpc_slice_from_static_string("1");
        agree[nagree].key = grpc_slice_from_static_string(NQI_GRPC_MD_HEARTBEAT);
        agree[nagree++].value = grpc_slice_from_static_string("1");
        if (nqi_ack_wanted(c)) {
            agree[nagree].key = grpc_slice_from_static_string(NQI_GRPC_MD_ACKED);
            agree[nagree++].value = grpc_slice_from_static_string("1");
        }
    }
    grpc_op start;
    memset(&start, 0, sizeof(start));
    start.op = GRPC_OP_SEND_INITIAL_METADATA;
    start.data.send_initial_metadata.count = nagree;
    start.data.send_initial_metadata.metadata = nagree > 0 ? agree : NULL;
    nqi_grpc_batch(gc, &start, 1, &gc->op_start, OP_START);

    nqi_session *s = server_session(w, gc);
    if (s == NULL) {
        /* Closing, or a channel whose session is over: a polling client
         * gets an empty round, not an error. */
        nqi_logf(&c->log, NQ_LOG_DEBUG, "gRPC: an empty round for %s",
                 gc->peer_key != NULL ? gc->peer_key : "an unknown address");
        gc->state = CALL_HALF_CLOSED;
        nqi_grpc_server_maybe_finish(gc);
        return;
    }
    gsess *gs = gsess_of(s);
    if (streaming) {
        gs->asked = gc->want_acked;
        gs->beats = gc->want_beats;
    }
    nqi_grpc_attach(gc, s);
    /* A round that overlaps the one carrying output (a poll beside a put)
     * feeds input and ends empty; output stays with the first. */
    if (gs->active == NULL) {
        gs->active = gc;
    }
    nqi_timer_cancel(&w->loop, &gs->timer);
    nqi_grpc_start_recv(gc);
    nqi_grpc_flush(s);
}

void nqi_grpc_server_call_over(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    if (gc->cancelled) {
        nqi_logf(&s->comm->log, NQ_LOG_DEBUG, "gRPC: a %s call from %s was cancelled",
                 gc->dialect->name, gc->peer_key);
    }
    nqi_session_ref(s);
    nqi_grpc_detach(gc);
    if (!s->ended) {
        gc->dialect->server_call_end(gc, s);
    }
    nqi_session_unref(s);
}

/* A session no call has carried for the idle limit is dropped. */
void nqi_grpc_server_timer(nqi_timer *t)
{
    gsess *gs = NQI_CONTAINER(t, gsess, timer);
    nqi_session *s = gs->s;
    if (gs->active != NULL || s->ended) {
        return;
    }
    nqi_logf(&s->comm->log, NQ_LOG_WARN, "gRPC: dropping a peer silent for %lld ms",
             (long long)nqi_grpc_idle_ms(s->comm));
    nqi_session_end(s, NQ_ECONNRESET);
}
