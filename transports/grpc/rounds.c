/*
 * The rounds dialect, net-queue's own: each call is a round in which the
 * client sends what it has queued, half-closes, and reads what the server
 * has queued until the call ends; an idle client polls with new calls.
 * Worker 0's loop.
 */
#include "transports/grpc/grpc.h"

/* The session waits for the client's next round, for the idle limit. */
static void await_next_round(nqi_session *s)
{
    nqi_grpc_arm(s, nqi_now_ms() + nqi_grpc_idle_ms(s->comm));
}

static void server_round_over(gcall *gc, nqi_session *s)
{
    nqi_grpc_detach(gc);
    await_next_round(s);
}

static void server_call_end(gcall *gc, nqi_session *s)
{
    (void)gc;
    await_next_round(s);
}

static int client_may_half_close(nqi_session *s)
{
    (void)s;
    return 1;
}

/* The next round starts at once when there is output or a FIN to carry,
 * else after the poll interval. */
static void client_call_over(nqi_session *s)
{
    gsess *gs = gsess_of(s);
    int64_t now = nqi_now_ms();
    gs->next_round = nqi_session_out_pending(s) > 0 || s->fin_queued ? now : now + gs->poll_ms;
    nqi_grpc_arm(s, gs->next_round);
}

static void client_idle_output(nqi_session *s)
{
    if (nqi_session_out_pending(s) > 0) {
        gsess *gs = gsess_of(s);
        gs->next_round = nqi_now_ms();
        nqi_grpc_arm(s, gs->next_round);
    }
}

const gdialect nqi_grpc_rounds = {
    .name = "rounds",
    .asks_stream = 0,
    .server_round_over = server_round_over,
    .server_call_end = server_call_end,
    .client_may_half_close = client_may_half_close,
    .client_call_over = client_call_over,
    .client_idle_output = client_idle_output,
};
