/*
 * A gRPC client on worker 0's loop: it starts a call asking for streaming
 * (nq-stream, with its id in nq-id), learns from the server's initial
 * metadata which dialect the server speaks (one that says nothing for a
 * while once connected answers only at the end of each round: net-queue),
 * and in rounds
 * polls with a new call from 1 ms up to 100 ms apart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/grpc/grpc.h"

/* How long a client waits, once connected, for the server's initial
 * metadata before it assumes a server that answers only at the end of
 * each round; how often it looks whether it is connected before that. */
#define MODE_WAIT_MS 3000
#define CONNECTING_CHECK_MS 100
#define POLL_MIN_MS 1
#define POLL_MAX_MS 100

void nqi_grpc_client_heard(nqi_session *s)
{
    gsess *gs = gsess_of(s);
    gs->heard = 1;
    gs->poll_ms = POLL_MIN_MS;
}

void nqi_grpc_client_start_call(nqi_worker *w)
{
    nq_comm *c = w->comm;
    grpc_state *st = c->tp;
    nqi_session *s = c->client;
    if (s == NULL || s->ended) {
        return;
    }
    gsess *gs = gsess_of(s);
    if (gs->active != NULL) {
        return;
    }
    /* Until the server answers, every call is a new attempt to connect,
     * with a fresh token. */
    int rv = gs->heard ? NQ_OK : nqi_grpc_client_token(c);
    if (rv != NQ_OK) {
        nqi_session_end(s, rv);
        return;
    }
    grpc_call *call = grpc_channel_create_call(
        st->channel, NULL, GRPC_PROPAGATE_DEFAULTS, st->cq,
        grpc_slice_from_static_string(NQI_GRPC_METHOD), NULL,
        gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    gcall *gc = call != NULL ? nqi_grpc_call_new(c, call, 0) : NULL;
    if (gc == NULL) {
        if (call != NULL) {
            grpc_call_unref(call);
        }
        nqi_session_end(s, NQ_ENOMEM);
        return;
    }
    gc->dialect = gs->dialect;
    grpc_op end;
    memset(&end, 0, sizeof(end));
    end.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    end.data.recv_status_on_client.trailing_metadata = &gc->trailing;
    end.data.recv_status_on_client.status = &gc->status;
    end.data.recv_status_on_client.status_details = &gc->details;
    if (nqi_grpc_batch(gc, &end, 1, &gc->op_end, OP_END) != 0) {
        gc->state = CALL_DONE;
        nqi_grpc_call_maybe_release(st, gc);
        nqi_session_end(s, NQ_ECONNRESET);
        return;
    }
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(&c->opts.id, hex);
    grpc_metadata md[5];
    size_t nmd = 0;
    memset(md, 0, sizeof(md));
    /* The id always goes along, so the session survives a change of
     * connection; the stream is asked for until the server declines, and
     * the heartbeat and acknowledged delivery with it. */
    md[nmd].key = grpc_slice_from_static_string(NQI_GRPC_MD_ID);
    md[nmd++].value = grpc_slice_from_copied_string(hex);
    if (gs->dialect->asks_stream) {
        md[nmd].key = grpc_slice_from_static_string(NQI_GRPC_MD_STREAM);
        md[nmd++].value = grpc_slice_from_static_string("1");
        md[nmd].key = grpc_slice_from_static_string(NQI_GRPC_MD_HEARTBEAT);
        md[nmd++].value = grpc_slice_from_static_string("1");
        if (nqi_ack_wanted(c)) {
            md[nmd].key = grpc_slice_from_static_string(NQI_GRPC_MD_ACKED);
            md[nmd++].value = grpc_slice_from_static_string("1");
        }
    }
    grpc_slice bearer = grpc_empty_slice();
    if (st->bearer != NULL) {
        bearer = grpc_slice_from_copied_string(st->bearer);
        md[nmd].key = grpc_slice_from_static_string(NQI_GRPC_MD_AUTH);
        md[nmd++].value = bearer;
    }
    grpc_op start[2];
    memset(start, 0, sizeof(start));
    start[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    start[0].data.send_initial_metadata.count = nmd;
    start[0].data.send_initial_metadata.metadata = md;
    start[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    start[1].data.recv_initial_metadata.recv_initial_metadata = &gc->md;
    rv = nqi_grpc_batch(gc, start, 2, &gc->op_start, OP_START);
    grpc_slice_unref(md[0].value);
    grpc_slice_unref(bearer);
    if (rv != 0) {
        grpc_call_cancel(call, NULL);
        return;
    }
    nqi_grpc_attach(gc, s);
    gs->active = gc;
    if (!gs->learned) {
        nqi_grpc_arm(s, gc->started_at + MODE_WAIT_MS);
    } else {
        /* A round's answers come whenever the server sends them. */
        nqi_grpc_start_recv(gc);
    }
    nqi_grpc_flush(s);
}

void nqi_grpc_client_maybe_half_close(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL || gc->state != CALL_OPEN || gc->sending) {
        return;
    }
    gsess *gs = gsess_of(s);
    if (!gs->learned || !gs->dialect->client_may_half_close(s) ||
        nqi_session_out_pending(s) > 0) {
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (nqi_grpc_batch(gc, &op, 1, &gc->op_half, OP_HALF_CLOSE) == 0) {
        gc->state = CALL_HALF_CLOSED;
    }
}

static void learn(gcall *gc, const gdialect *d)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    gsess *gs = gsess_of(s);
    if (!gs->learned) {
        gs->learned = 1;
        gs->dialect = d;
        gc->dialect = d;
        nqi_logf(&s->comm->log, NQ_LOG_DEBUG, "gRPC: the server %s",
                 d == &nqi_grpc_stream ? "streams" : "answers in rounds");
    }
    nqi_grpc_start_recv(gc);
    nqi_grpc_client_maybe_half_close(gc);
}

void nqi_grpc_client_started(gcall *gc, int success)
{
    gc->heard_start = 1;
    nqi_session *s = gc->s;
    if (success && s != NULL && s->comm->opts.tls && !gsess_of(s)->heard) {
        nqi_session_set_identity(s, nqi_grpc_peer_identity(gc->call));
    }
    if (success) {
        int stream = nqi_grpc_md_has(&gc->md, NQI_GRPC_MD_STREAM);
        if (s != NULL) {
            /* Before any message of the call, so before the server's INI. */
            gsess_of(s)->asked = stream && nqi_grpc_md_has(&gc->md, NQI_GRPC_MD_ACKED);
            gsess_of(s)->beats = stream && nqi_grpc_md_has(&gc->md, NQI_GRPC_MD_HEARTBEAT);
        }
        learn(gc, stream ? &nqi_grpc_stream : &nqi_grpc_rounds);
    }
}

/* Why a call that never reached the server failed, and whether that is
 * final: a refused connection or a TLS failure is, anything else (grpc
 * reports passing trouble the same way) may clear.  grpc tells them apart
 * only in the status text. */
static int connect_error(nq_comm *c, gcall *gc, int *final)
{
    char text[256];
    size_t n = GRPC_SLICE_LENGTH(gc->details);
    n = n < sizeof(text) - 1 ? n : sizeof(text) - 1;
    memcpy(text, GRPC_SLICE_START_PTR(gc->details), n);
    text[n] = 0;
    int err = NQ_ECONNREFUSED;
    *final = strstr(text, "onnection refused") != NULL;
    if (c->opts.tls && (strstr(text, "SSL") != NULL || strstr(text, "ssl") != NULL ||
                        strstr(text, "andshake") != NULL || strstr(text, "ertificate") != NULL)) {
        err = NQ_ETLS;
        *final = 1;
    }
    if (gc->status == GRPC_STATUS_UNAUTHENTICATED || gc->status == GRPC_STATUS_PERMISSION_DENIED) {
        err = NQ_EAUTH; /* the server refused this client */
        *final = 1;
    }
    /* Only while nothing has gone out: a new call starts the stream anew. */
    int retry = !*final && nqi_now_ms() < gsess_of(c->client)->connect_by &&
                atomic_load(&c->stats[NQI_ST_BYTES_OUT]) == 0;
    nqi_logf(&c->log, retry ? NQ_LOG_INFO : NQ_LOG_ERROR, "gRPC call to %s:%u failed (status %d): %s%s",
             c->opts.host, (unsigned)c->opts.port, (int)gc->status, text,
             retry ? "; trying again" : "");
    /* A grpc server other than libnq's refuses a client certificate in the
     * handshake and closes the connection without a TLS alert: all the
     * client reads is that the socket closed, as when a server goes away.
     * Once that is all the attempts have met, it was most likely a refusal
     * of this client's certificate, or of the want of one. */
    if (!retry && !*final && c->opts.tls && strstr(text, "Socket closed") != NULL) {
        err = c->opts.id_key != NULL ? NQ_EAUTH : NQ_ETLS;
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "gRPC: the server closed every TLS connection before answering: %s",
                 err == NQ_EAUTH ? "it refuses this client's certificate"
                                 : "it may require a client certificate");
    }
    *final = !retry;
    return err;
}

void nqi_grpc_client_call_over(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    nq_comm *c = s->comm;
    nqi_session_ref(s);
    nqi_grpc_detach(gc);
    gsess *gs = gsess_of(s);
    if (s->ended) {
        /* nothing to do */
    } else if (gc->status != GRPC_STATUS_OK && !gs->heard) {
        int final;
        int err = connect_error(c, gc, &final);
        if (final) {
            nqi_session_end(s, err);
        } else {
            gs->next_round = nqi_now_ms() + gs->retry_ms;
            gs->retry_ms = gs->retry_ms < 1000 ? 2 * gs->retry_ms : 1000;
            nqi_grpc_arm(s, gs->next_round);
        }
    } else if (gc->status != GRPC_STATUS_OK) {
        nqi_session_end(s, NQ_ECONNRESET);
    } else if (nqi_session_finished(s)) {
        nqi_session_end(s, 0);
    } else {
        gs->dialect->client_call_over(s);
    }
    nqi_session_unref(s);
}

void nqi_grpc_client_timer(nqi_timer *t)
{
    gsess *gs = NQI_CONTAINER(t, gsess, timer);
    nqi_session *s = gs->s;
    if (s->ended) {
        return;
    }
    gcall *gc = gs->active;
    int64_t now = nqi_now_ms();
    if (gc != NULL && !gs->learned && !gc->heard_start) {
        grpc_state *st = s->comm->tp;
        if (grpc_channel_check_connectivity_state(st->channel, 0) != GRPC_CHANNEL_READY) {
            /* Still connecting (a busy server, many clients at once, a
             * slow path): that says nothing of the server's dialect, so
             * the wait counts from the connection. */
            gc->started_at = now;
            nqi_grpc_arm(s, now + CONNECTING_CHECK_MS);
        } else if (now - gc->started_at >= MODE_WAIT_MS) {
            /* No answer yet: a server that speaks only at the end of a
             * round.  Half-close so it does. */
            learn(gc, &nqi_grpc_rounds);
        } else {
            nqi_grpc_arm(s, gc->started_at + MODE_WAIT_MS);
        }
    } else if (gc == NULL && gs->next_round > 0) {
        if (now >= gs->next_round) {
            gs->next_round = 0;
            if (gs->poll_ms < POLL_MAX_MS) {
                gs->poll_ms *= 2;
            }
            nqi_grpc_client_start_call(s->worker);
        } else {
            nqi_grpc_arm(s, gs->next_round);
        }
    }
}

/* Client: its session's transport state, before the worker starts. */
void nqi_grpc_client_init(nqi_session *s)
{
    gsess *gs = gsess_of(s);
    gs->s = s;
    gs->dialect = &nqi_grpc_stream;
    gs->poll_ms = POLL_MIN_MS;
    gs->connect_by = nqi_now_ms() + s->comm->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    gs->retry_ms = 50;
    nqi_timer_init(&gs->timer, nqi_grpc_client_timer);
}
