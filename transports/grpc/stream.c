/*
 * The streaming dialect, between libnq peers: one call stays open and data
 * is pushed both ways as soon as it is queued; the call ends only after
 * the close handshake.  Worker 0's loop.
 */
#include "transports/grpc/grpc.h"

/* A stream the client half-closed before FIN stays attached: the call's end
 * says whether the client died (cancelled) or fell back to rounds. */
static void server_round_over(gcall *gc, nqi_session *s)
{
    (void)gc;
    (void)s;
}

static void server_call_end(gcall *gc, nqi_session *s)
{
    if (gc->cancelled) {
        nqi_session_end(s, NQ_ECONNRESET);
    } else {
        nqi_grpc_arm(s, nqi_now_ms() + nqi_grpc_idle_ms(s->comm));
    }
}

/* Only once the close handshake is done. */
static int client_may_half_close(nqi_session *s)
{
    return nqi_session_finished(s);
}

static void client_call_over(nqi_session *s)
{
    nqi_logf(&s->comm->log, NQ_LOG_WARN, "gRPC: the server ended the stream before FIN");
    nqi_session_end(s, NQ_ECONNRESET);
}

/* Output waits for the call, which is being set up. */
static void client_idle_output(nqi_session *s)
{
    (void)s;
}

const gdialect nqi_grpc_stream = {
    .name = "stream",
    .asks_stream = 1,
    .server_round_over = server_round_over,
    .server_call_end = server_call_end,
    .client_may_half_close = client_may_half_close,
    .client_call_over = client_call_over,
    .client_idle_output = client_idle_output,
};
