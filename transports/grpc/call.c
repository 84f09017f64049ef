/*
 * gRPC calls on worker 0's loop: each call's state and its batches (at
 * most one of each kind in flight, as grpc requires), slices of a
 * session's output sent as messages, messages received fed to it, and the
 * loop's work when a batch completes.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <stdlib.h>
#include <string.h>

#include "transports/grpc/grpc.h"

/* ---- helpers ------------------------------------------------------------------ */

int64_t nqi_grpc_idle_ms(const nq_comm *c)
{
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    return 2 * (ka > 0 ? ka : 15000);
}

void nqi_grpc_arm(nqi_session *s, int64_t when)
{
    nqi_timer_arm_by(&s->worker->loop, &gsess_of(s)->timer, when);
}

int nqi_grpc_md_has(const grpc_metadata_array *md, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == n && memcmp(GRPC_SLICE_START_PTR(k), key, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- calls ---------------------------------------------------------------------- */

static void discard_op(nqi_cmd *cmd);

void nqi_grpc_op_init(gop *op, gcall *gc, int kind)
{
    op->kind = kind;
    op->gc = gc;
    op->cmd.run = nqi_grpc_completed;
    op->cmd.discard = discard_op;
}

int nqi_grpc_batch(gcall *gc, grpc_op *ops, size_t n, gop *op, int kind)
{
    nqi_grpc_op_init(op, gc, kind);
    if (grpc_call_start_batch(gc->call, ops, n, op, NULL) != GRPC_CALL_OK) {
        return -1;
    }
    gc->ops++;
    return 0;
}

gcall *nqi_grpc_call_new(nq_comm *c, grpc_call *call, int server)
{
    grpc_state *st = c->tp;
    gcall *gc = calloc(1, sizeof(*gc));
    if (gc == NULL) {
        return NULL;
    }
    gc->call = call;
    gc->server = server;
    gc->state = CALL_OPEN;
    gc->started_at = nqi_now_ms();
    grpc_metadata_array_init(&gc->md);
    grpc_metadata_array_init(&gc->trailing);
    gc->details = grpc_empty_slice();
    nqi_list_append(&st->calls, &gc->link);
    return gc;
}

void nqi_grpc_attach(gcall *gc, nqi_session *s)
{
    nqi_session_ref(s);
    gc->s = s;
}

void nqi_grpc_detach(gcall *gc)
{
    nqi_session *s = gc->s;
    if (s == NULL) {
        return;
    }
    gc->s = NULL;
    if (gc->sending) {
        /* Its completion will no longer reach the session: what it carried
         * counts as not sent, for a later call (or a restart) to send. */
        s->out_sent -= gc->send_len;
    }
    gsess *gs = gsess_of(s);
    if (gs->active == gc) {
        gs->active = NULL;
    }
    nqi_session_unref(s);
}

void nqi_grpc_call_free(grpc_state *st, gcall *gc)
{
    (void)st;
    nqi_list_remove(&gc->link);
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
    free(gc->identity);
    free(gc);
}

void nqi_grpc_call_maybe_release(grpc_state *st, gcall *gc)
{
    if (gc->ops == 0 && gc->state == CALL_DONE) {
        nqi_grpc_detach(gc);
        nqi_grpc_call_free(st, gc);
    }
}

int nqi_grpc_call_can_send(const gcall *gc)
{
    if (gc->sending) {
        return 0;
    }
    /* A server sends until its status goes; a client until it half-closes. */
    return gc->state < (gc->server ? CALL_STATUS_SENT : CALL_HALF_CLOSED);
}

/* ---- sending ------------------------------------------------------------------- */

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

int nqi_grpc_send_slice(nqi_session *s, gcall *gc)
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
    /* Pieces beyond the merge limit are lent; runs of smaller ones are
     * copied together (each alone when merging is off). */
    const nq_opts *o = &s->comm->opts;
    size_t copy_max = (size_t)o->ints[NQ_OPT_EFFICIENT_SIZE] - 1;
    int merge = o->ints[NQ_OPT_PUT_MERGE] != 0;
    grpc_slice slices[64];
    size_t nslices = 0;
    for (int i = 0; i < n;) {
        if (iov[i].iov_len > copy_max &&
            nqi_grpc_lend(st->lender, owners[i], &iov[i], &slices[nslices])) {
            nslices++;
            i++;
            continue;
        }
        int end = i + 1;
        while (merge && end < n && iov[end].iov_len <= copy_max) {
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
    if (nqi_grpc_batch(gc, &op, 1, &gc->op_send, OP_SEND) != 0) {
        grpc_byte_buffer_destroy(gc->send_buf);
        gc->send_buf = NULL;
        return -1;
    }
    gc->sending = 1;
    gc->send_len = total;
    s->out_sent += total;
    return 1;
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
    gc->sent += gc->send_len;
    nqi_session_ref(s);
    nqi_session_out_commit(s, gc->send_len);
    nqi_grpc_flush(s);
    nqi_session_unref(s);
}

/* ---- receiving ------------------------------------------------------------------- */

void nqi_grpc_start_recv(gcall *gc)
{
    if (gc->receiving || gc->state == CALL_DONE) {
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &gc->recv_buf;
    if (nqi_grpc_batch(gc, &op, 1, &gc->op_recv, OP_RECV) == 0) {
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
        /* The peer half-closed. */
        if (gc->server) {
            if (gc->state < CALL_HALF_CLOSED) {
                gc->state = CALL_HALF_CLOSED;
            }
            nqi_grpc_server_maybe_finish(gc);
        }
        return;
    }
    int rv = 0;
    int paused = 0;
    if (s != NULL && !s->ended) {
        nqi_session_ref(s);
        gsess *gs = gsess_of(s);
        if (!gc->server) {
            nqi_grpc_client_heard(s);
        }
        rv = feed(s, buf);
        if (rv == 0 && gc->server && s->ini_received && gs->has_id &&
            !nq_id_equal(&s->peer, &gs->id)) {
            nqi_logf(&s->comm->log, NQ_LOG_WARN, "gRPC: INI id differs from the nq-id metadata");
            rv = NQ_EPROTO;
        }
        if (rv != 0) {
            nqi_session_end(s, rv);
            grpc_call_cancel(gc->call, NULL);
        } else {
            paused = nqi_session_deliver(s);
            nqi_grpc_flush(s);
        }
        nqi_session_unref(s);
    }
    grpc_byte_buffer_destroy(buf);
    if (rv != 0) {
        return;
    }
    if (paused) {
        /* At NQ_OPT_QUEUE_SIZE: asking for no more messages lets HTTP/2's
         * flow control hold the sender back until get makes room. */
        gc->held = 1;
        return;
    }
    nqi_grpc_start_recv(gc);
}

/* ---- completions ------------------------------------------------------------------ */

void nqi_grpc_settle(grpc_state *st, gop *op)
{
    if (op->kind == OP_NEW_CALL) {
        if (st->new_call != NULL) {
            grpc_call_unref(st->new_call);
            st->new_call = NULL;
        }
        grpc_metadata_array_destroy(&st->new_md);
        st->requesting = 0;
    } else if (op->gc != NULL) {
        op->gc->ops--;
        if (op->kind == OP_END) {
            op->gc->state = CALL_DONE;
        }
    }
}

/* A completion the loop will never run: the calls themselves are freed by
 * the transport's shutdown. */
static void discard_op(nqi_cmd *cmd)
{
    gop *op = (gop *)cmd;
    if (op->kind == OP_NEW_CALL) {
        nqi_grpc_settle(NQI_CONTAINER(op, grpc_state, new_call_op), op);
    }
}

void nqi_grpc_completed(nqi_loop *l, nqi_cmd *cmd)
{
    nqi_worker *w = nqi_worker_of(l);
    grpc_state *st = w->comm->tp;
    gop *op = (gop *)cmd;
    if (op->kind == OP_NEW_CALL) {
        nqi_grpc_server_new_call(w, op->success);
        return;
    }
    gcall *gc = op->gc;
    gc->ops--;
    switch (op->kind) {
    case OP_START:
        if (!gc->server) {
            nqi_grpc_client_started(gc, op->success);
        }
        break;
    case OP_RECV:
        on_recv(gc, op->success);
        break;
    case OP_SEND:
        on_sent(gc, op->success);
        break;
    case OP_END:
        gc->state = CALL_DONE;
        if (gc->server) {
            nqi_grpc_server_call_over(gc);
        } else {
            nqi_grpc_client_call_over(gc);
        }
        break;
    default:
        break;
    }
    nqi_grpc_call_maybe_release(st, gc);
}
