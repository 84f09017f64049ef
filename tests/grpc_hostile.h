/*
 * A hostile gRPC caller: a call to a libnq server's /grpc/comm made by hand
 * through grpc core, with whatever metadata and bytes an attacker chooses,
 * as a well-behaved libnq client would never send them.  tests/test_grpc.c
 * and tests/trials/hostile_peer.c use it.
 *
 * The functions are static inline in this header, not in a helper source
 * file, because the helper library every test links (tests/BUILD.bazel's
 * "helpers") is built without grpc.  The caller runs grpc_init before the
 * first call and grpc_shutdown after the last.
 */
#ifndef NQ_TESTS_GRPC_HOSTILE_H
#define NQ_TESTS_GRPC_HOSTILE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "nq/nq.h"

/* A call made by hand on a channel (a connection) of its own: /grpc/comm
 * with nq-id naming id, nq-stream when stream has NQT_HOSTILE_STREAM, also
 * nq-heartbeat when it has NQT_HOSTILE_BEATS, and one message. */
#define NQT_HOSTILE_STREAM 1
#define NQT_HOSTILE_BEATS 2
typedef struct nqt_hostile {
    grpc_channel *channel;
    int own_channel;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array got_md;
    grpc_metadata_array initial_md;
    grpc_status_code status;
    grpc_slice details;
    int ended;        /* the call's status has been taken off the queue */
    int send_pending; /* a message was handed to grpc: tag &send_pending */
} nqt_hostile;

/* Hands one message to grpc on h's call (grpc takes the bytes at once);
 * its completion comes on the queue with tag &h->send_pending. */
static inline int nqt_hostile_queue(nqt_hostile *h, const void *bytes, size_t len)
{
    grpc_slice payload = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int ok = grpc_call_start_batch(h->call, &op, 1, &h->send_pending, NULL) == GRPC_CALL_OK;
    grpc_byte_buffer_destroy(bb);
    h->send_pending = ok;
    return ok ? 0 : -1;
}

/* The call, on h->channel.  Returns 0, or -1 when grpc refused it. */
static inline int nqt_hostile_call(nqt_hostile *h, const nq_id *id, int stream,
                                   const void *bytes, size_t len)
{
    h->cq = grpc_completion_queue_create_for_pluck(NULL);
    h->call = grpc_channel_create_call(h->channel, NULL, GRPC_PROPAGATE_DEFAULTS, h->cq,
                                       grpc_slice_from_static_string("/grpc/comm"), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    char text[NQ_ID_STRLEN];
    if (h->call == NULL || nq_id_format(id, text, sizeof(text)) != NQ_OK) {
        return -1;
    }
    grpc_metadata md[3];
    memset(md, 0, sizeof(md));
    md[0].key = grpc_slice_from_static_string("nq-id");
    md[0].value = grpc_slice_from_copied_string(text);
    md[1].key = grpc_slice_from_static_string("nq-stream");
    md[1].value = grpc_slice_from_static_string("1");
    md[2].key = grpc_slice_from_static_string("nq-heartbeat");
    md[2].value = grpc_slice_from_static_string("1");
    grpc_metadata_array_init(&h->got_md);
    grpc_metadata_array_init(&h->initial_md);
    h->details = grpc_empty_slice();
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = (stream & NQT_HOSTILE_STREAM) == 0  ? 1
                                              : (stream & NQT_HOSTILE_BEATS) == 0 ? 2
                                                                                  : 3;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &h->got_md;
    ops[1].data.recv_status_on_client.status = &h->status;
    ops[1].data.recv_status_on_client.status_details = &h->details;
    ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[2].data.recv_initial_metadata.recv_initial_metadata = &h->initial_md;
    int ok = grpc_call_start_batch(h->call, ops, 3, h, NULL) == GRPC_CALL_OK;
    grpc_slice_unref(md[0].value);
    return ok ? nqt_hostile_queue(h, bytes, len) : -1;
}

/* A call on a new channel to 127.0.0.1:port. */
static inline int nqt_hostile_start(nqt_hostile *h, uint16_t port, const nq_id *id, int stream,
                                    const void *bytes, size_t len)
{
    memset(h, 0, sizeof(*h));
    char target[32];
    snprintf(target, sizeof(target), "127.0.0.1:%u", (unsigned)port);
    grpc_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.type = GRPC_ARG_INTEGER;
    arg.key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    arg.value.integer = 1;
    grpc_channel_args args = {1, &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    h->channel = grpc_channel_create(target, creds, &args);
    h->own_channel = 1;
    grpc_channel_credentials_release(creds);
    return nqt_hostile_call(h, id, stream, bytes, len);
}

/* Another call on the channel (the connection) of first. */
static inline int nqt_hostile_again(nqt_hostile *h, const nqt_hostile *first, const nq_id *id,
                                    int stream, const void *bytes, size_t len)
{
    memset(h, 0, sizeof(*h));
    h->channel = first->channel;
    return nqt_hostile_call(h, id, stream, bytes, len);
}

static inline gpr_timespec nqt_hostile_deadline(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Waits up to ms for a message on h's call: its length, or -1 when none
 * came (the call is then cancelled).  The first bytes go to head. */
static inline long nqt_hostile_recv(nqt_hostile *h, int ms, uint8_t *head, size_t cap)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    int tag;
    if (grpc_call_start_batch(h->call, &op, 1, &tag, NULL) != GRPC_CALL_OK) {
        return -1;
    }
    grpc_event ev = grpc_completion_queue_pluck(h->cq, &tag, nqt_hostile_deadline(ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_call_cancel(h->call, NULL);
        grpc_completion_queue_pluck(h->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    if (bb == NULL) {
        return -1;
    }
    grpc_byte_buffer_reader reader;
    grpc_byte_buffer_reader_init(&reader, bb);
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    long len = (long)GRPC_SLICE_LENGTH(all);
    memcpy(head, GRPC_SLICE_START_PTR(all), (size_t)len < cap ? (size_t)len : cap);
    grpc_slice_unref(all);
    grpc_byte_buffer_destroy(bb);
    return len;
}

/* Sends one more message on h's call once grpc has taken the last one,
 * waiting up to ms for that: 0 when the message went to grpc, -1 when the
 * last one failed (the call is over: the server ended or reset it), -2 when
 * the last one is still waiting (HTTP/2 flow control holds it). */
static inline int nqt_hostile_send(nqt_hostile *h, const void *bytes, size_t len, int ms)
{
    if (h->send_pending) {
        grpc_event ev = grpc_completion_queue_pluck(h->cq, &h->send_pending,
                                                    nqt_hostile_deadline(ms), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            return -2;
        }
        h->send_pending = 0;
        if (!ev.success) {
            return -1;
        }
    }
    return nqt_hostile_queue(h, bytes, len);
}

/* 1 when the server has ended h's call (its status arrived) within ms. */
static inline int nqt_hostile_ended(nqt_hostile *h, int ms)
{
    if (!h->ended) {
        grpc_event ev = grpc_completion_queue_pluck(h->cq, h, nqt_hostile_deadline(ms), NULL);
        h->ended = ev.type == GRPC_OP_COMPLETE;
    }
    return h->ended;
}

/* Ends the call (cancelling it if the server has not) and frees it all. */
static inline void nqt_hostile_finish(nqt_hostile *h)
{
    grpc_call_cancel(h->call, NULL);
    if (h->send_pending) {
        grpc_completion_queue_pluck(h->cq, &h->send_pending, gpr_inf_future(GPR_CLOCK_REALTIME),
                                    NULL);
    }
    if (!h->ended) {
        grpc_completion_queue_pluck(h->cq, h, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_call_unref(h->call);
    grpc_completion_queue_shutdown(h->cq);
    while (grpc_completion_queue_pluck(h->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(h->cq);
    if (h->own_channel) {
        grpc_channel_destroy(h->channel);
    }
    grpc_metadata_array_destroy(&h->got_md);
    grpc_metadata_array_destroy(&h->initial_md);
    grpc_slice_unref(h->details);
}

#endif
