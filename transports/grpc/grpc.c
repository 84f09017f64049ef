/*
 * The gRPC transport (see grpc.h), on grpc's C core: the transport table,
 * nq_open's channel or server, and the orderly stop: the server shuts down
 * (calls still running get a moment to end), the completion queue drains,
 * and grpc lets go of every lent slice.  Every session lives on worker 0.
 */
#include <grpc/grpc_security.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "transports/grpc/grpc.h"
#include "transports/registry.h"

/* net-queue 2.2+ sends gRPC messages of up to 16 MiB. */
#define MIN_RECEIVE_LIMIT (16 * 1024 * 1024)
/* How long calls still running at close may take to end on their own. */
#define CLOSE_GRACE_MS 1000

/* ---- the hooks on worker 0's loop ------------------------------------------------ */

void nqi_grpc_flush(nqi_session *s)
{
    if (s->ended) {
        return;
    }
    gsess *gs = gsess_of(s);
    gcall *gc = gs->active;
    if (gc == NULL) {
        if (s->comm->purpose == NQ_CLIENT) {
            gs->dialect->client_idle_output(s);
        }
        return;
    }
    if (nqi_grpc_call_can_send(gc) && nqi_grpc_send_slice(s, gc) < 0) {
        grpc_call_cancel(gc->call, NULL);
        return;
    }
    if (gc->server) {
        nqi_grpc_server_maybe_finish(gc);
    } else {
        nqi_grpc_client_maybe_half_close(gc);
    }
}

/* A paused session's calls ask for messages again. */
void nqi_grpc_resume(nqi_session *s)
{
    grpc_state *st = s->comm->tp;
    nqi_node *n;
    for (n = nqi_list_first(&st->calls); n != NULL; n = nqi_list_next(&st->calls, n)) {
        gcall *gc = NQI_CONTAINER(n, gcall, link);
        if (gc->s == s && gc->held) {
            gc->held = 0;
            nqi_grpc_start_recv(gc);
        }
    }
}

int nqi_grpc_acked(nqi_session *s)
{
    return nqi_ack_wanted(s->comm) && gsess_of(s)->asked;
}

int nqi_grpc_beats(nqi_session *s)
{
    return gsess_of(s)->beats;
}

static void grpc_worker_start(nqi_worker *w)
{
    nq_comm *c = w->comm;
    if (c->purpose == NQ_SERVER) {
        nqi_grpc_request_call(c);
    } else {
        nqi_grpc_client_start_call(w);
    }
}

/* The peer's address from grpc's ("ipv4:127.0.0.1:40312",
 * "ipv6:%5B::1%5D:40312"), for the admission callback. */
static void grpc_address(nqi_session *s, char *buf, size_t len)
{
    const char *k = gsess_of(s)->key;
    size_t at = 0;
    buf[0] = '\0';
    if (k == NULL || len == 0) {
        return;
    }
    if (strncmp(k, "ipv4:", 5) == 0 || strncmp(k, "ipv6:", 5) == 0) {
        k += 5;
    }
    while (*k != '\0' && at + 1 < len) {
        if (strncmp(k, "%5B", 3) == 0 || strncmp(k, "%5D", 3) == 0) {
            buf[at++] = k[2] == 'B' ? '[' : ']';
            k += 3;
        } else {
            buf[at++] = *k++;
        }
    }
    buf[at] = '\0';
}

static void grpc_session_end(nqi_session *s)
{
    gsess *gs = gsess_of(s);
    if (gs->s == NULL) {
        return; /* never set up */
    }
    gcall *gc = gs->active;
    if (gc != NULL) {
        nqi_grpc_detach(gc);
        if (gc->state < CALL_STATUS_SENT) {
            if (gc->server && (s->error == 0 || s->error == NQ_ECLOSED)) {
                /* A round cut short by close ends like any other round. */
                gc->state = CALL_HALF_CLOSED;
                nqi_grpc_server_maybe_finish(gc);
            } else if (gc->server && s->error == NQ_EAUTH) {
                /* The admission callback refused the peer: say so. */
                grpc_call_cancel_with_status(gc->call, GRPC_STATUS_UNAUTHENTICATED,
                                             "refused by the server", NULL);
            } else {
                grpc_call_cancel(gc->call, NULL);
            }
        }
    }
    if (gs->key != NULL && !gs->has_id && s->error == 0 && s->fin_received) {
        nqi_grpc_spent_add(s->comm->tp, gs->key);
    }
    nqi_timer_cancel(&s->worker->loop, &gs->timer);
    free(gs->key);
    gs->key = NULL;
}

/* A client connects again: a fresh session state, then a first call as at
 * open (grpc's channel makes the connection). */
static int grpc_redial(nqi_session *s)
{
    memset(gsess_of(s), 0, sizeof(gsess));
    nqi_grpc_client_init(s);
    nqi_grpc_client_start_call(s->worker);
    return NQ_OK;
}

/* ---- open ------------------------------------------------------------------------ */

static int open_server(nq_comm *c, grpc_state *st, const char *target,
                       const grpc_channel_args *chargs)
{
    st->server = grpc_server_create(chargs, NULL);
    grpc_server_register_completion_queue(st->server, st->cq, NULL);
    st->method = grpc_server_register_method(st->server, NQI_GRPC_METHOD, NULL,
                                             GRPC_SRM_PAYLOAD_NONE, 0);
    grpc_server_credentials *creds;
    int rv = nqi_grpc_server_credentials(c, &creds);
    if (rv != NQ_OK) {
        return rv;
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
    return NQ_OK;
}

static int open_client(nq_comm *c, grpc_state *st, const char *target,
                       const grpc_channel_args *chargs)
{
    grpc_channel_credentials *creds;
    int rv = nqi_grpc_channel_credentials(c, &creds);
    if (rv != NQ_OK) {
        return rv;
    }
    st->channel = grpc_channel_create(target, creds, chargs);
    grpc_channel_credentials_release(creds);
    return st->channel != NULL ? NQ_OK : NQ_EADDR;
}

static int grpc_open(nq_comm *c)
{
    if (c->purpose == NQ_CLIENT) {
        nqi_grpc_client_init(c->client);
    }
    int rv = nqi_opts_check_tls_roles(&c->opts, c->purpose, &c->log);
    if (rv == NQ_OK) {
        rv = nqi_opts_refuse(&c->opts,
                             NQI_TAKES_TLS_IDENTITY | NQI_TAKES_TLS_TRUST | NQI_TAKES_CLIENT_AUTH |
                                 NQI_TAKES_TOKEN | NQI_TAKES_ACCEPT_TOKEN | NQI_TAKES_SERVER_NAME,
                             "gRPC", &c->log);
    }
    if (rv == NQ_OK) {
        rv = nqi_grpc_check_credentials(c);
    }
    if (rv != NQ_OK) {
        return rv;
    }
    /* grpc's receive buffers are fresh memory for every read otherwise. */
    nqi_heap_tune(&c->log);
    grpc_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NQ_ENOMEM;
    }
    c->tp = st;
    pthread_mutex_init(&st->mu, NULL);
    nqi_cond_init(&st->cv);
    nqi_list_init(&st->calls);
    grpc_init();
    st->lender = nqi_grpc_lender_new();
    if (st->lender == NULL) {
        return NQ_ENOMEM;
    }
    st->cq = grpc_completion_queue_create_for_next(NULL);

    int64_t psize = c->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    /* Keep-alive on TCP's schedule: a ping every keep-alive period, idle or
     * busy, and a peer that does not answer within three probe intervals
     * is gone (so a connection lives through the blips TCP lives
     * through).  Pings never stop for want of data and are never refused
     * as too frequent. */
    int64_t ping_every = ka > 0 ? ka : INT32_MAX;
    int64_t ping_timeout = ka > 0 ? 3 * (ka / 3000 > 0 ? ka / 3000 : 1) * 1000 : 20000;
    grpc_arg args[14];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[0].value.integer = (int)psize;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = (int)(psize > MIN_RECEIVE_LIMIT ? psize : MIN_RECEIVE_LIMIT);
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_KEEPALIVE_TIME_MS;
    args[2].value.integer = (int)ping_every;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[3].value.integer = (int)ping_timeout;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[4].value.integer = 1;
    /* Every client its own connection: grpc would otherwise share one
     * between channels to the same address, and a server that tells its
     * peers apart by address (net-queue) would take them for one. */
    args[5].type = GRPC_ARG_INTEGER;
    args[5].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[5].value.integer = 1;
    args[6].type = GRPC_ARG_INTEGER;
    args[6].key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA;
    args[6].value.integer = 0; /* no limit */
    args[7].type = GRPC_ARG_INTEGER;
    args[7].key = GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS;
    args[7].value.integer = (int)ping_every;
    args[8].type = GRPC_ARG_INTEGER;
    args[8].key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    args[8].value.integer = (int)(ping_every / 2);
    args[9].type = GRPC_ARG_INTEGER;
    args[9].key = GRPC_ARG_HTTP2_MAX_PING_STRIKES;
    args[9].value.integer = 0; /* no limit */
    size_t nargs = 10;
    int64_t redial = c->opts.ints[NQ_OPT_RECONNECT_MS];
    if (c->purpose == NQ_CLIENT && redial > 0) {
        /* A reconnecting client's new call fails at once while grpc waits
         * to try the connection again, which it does on a schedule of its
         * own (from 1 s up to 2 minutes apart): on ours instead, or a
         * server that was away long would be reached only that much
         * later. */
        int64_t most = c->opts.ints[NQ_OPT_RECONNECT_MAX_MS];
        most = most > redial ? most : redial;
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
        args[nargs++].value.integer = (int)(redial < INT32_MAX ? redial : INT32_MAX);
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
        args[nargs++].value.integer = (int)(most < INT32_MAX ? most : INT32_MAX);
    }
    const char *name = c->opts.tls_server_name;
    if (c->purpose == NQ_CLIENT && name != NULL) {
        /* The name the server's certificate must hold, and the calls'
         * :authority, instead of the netloc host. */
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs++].value.string = (char *)name;
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = GRPC_ARG_DEFAULT_AUTHORITY;
        args[nargs++].value.string = (char *)name;
    }
    grpc_channel_args chargs = {nargs, args};

    char target[300];
    if (nqi_netloc_format(target, sizeof(target), "", c->opts.host, c->opts.port) != NQ_OK) {
        return NQ_EADDR;
    }
    rv = c->purpose == NQ_SERVER ? open_server(c, st, target, &chargs)
                                 : open_client(c, st, target, &chargs);
    if (rv != NQ_OK) {
        return rv;
    }
    return nqi_grpc_queue_start(c);
}

/* ---- close and shutdown ---------------------------------------------------------- */

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
    struct timespec grace = nqi_deadline_after(CLOSE_GRACE_MS);
    int cancelled = 0;
    pthread_mutex_lock(&st->mu);
    while (!st->shutdown_done) {
        if (nqi_cond_until(&st->cv, &st->mu, cancelled ? NULL : &grace) != 0) {
            pthread_mutex_unlock(&st->mu);
            grpc_server_cancel_all_calls(st->server);
            cancelled = 1;
            pthread_mutex_lock(&st->mu);
        }
    }
    pthread_mutex_unlock(&st->mu);
}

static void grpc_shutdown_hook(nq_comm *c)
{
    grpc_state *st = c->tp;
    if (st == NULL) {
        return;
    }
    /* From here the completion-queue thread settles completions itself. */
    atomic_store(&st->loop_stopped, 1);
    nqi_loop_drain(&c->workers[0].loop);
    nqi_node *n;
    for (n = nqi_list_first(&st->calls); n != NULL; n = nqi_list_next(&st->calls, n)) {
        grpc_call_cancel(NQI_CONTAINER(n, gcall, link)->call, NULL);
    }
    if (st->server != NULL && !st->shutdown_done) {
        atomic_store(&st->stopping, 1);
        st->shutdown_op.kind = OP_SHUTDOWN;
        grpc_server_shutdown_and_notify(st->server, st->cq, &st->shutdown_op);
        grpc_server_cancel_all_calls(st->server);
        if (st->cq_started) {
            pthread_mutex_lock(&st->mu);
            while (!st->shutdown_done) {
                nqi_cond_until(&st->cv, &st->mu, NULL);
            }
            pthread_mutex_unlock(&st->mu);
        }
    }
    if (st->cq != NULL) {
        nqi_grpc_queue_stop(c);
    }
    nqi_loop_drain(&c->workers[0].loop); /* posts that raced with loop_stopped */
    while ((n = nqi_list_first(&st->calls)) != NULL) {
        gcall *gc = NQI_CONTAINER(n, gcall, link);
        nqi_grpc_detach(gc);
        nqi_grpc_call_free(st, gc);
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
    nqi_grpc_credentials_free(st);
    lender *owner = st->lender;
    free(st);
    c->tp = NULL;
    grpc_shutdown();
    nqi_grpc_lender_finish(c, owner);
}

const nqi_transport nqi_grpc_transport = {
    .name = "grpc",
    .session_size = sizeof(gsess),
    .multi_worker = 0,
    .pausable = 1,
    .open = grpc_open,
    .worker_start = grpc_worker_start,
    .worker_closing = NULL,
    .flush = nqi_grpc_flush,
    .resume = nqi_grpc_resume,
    .session_end = grpc_session_end,
    .address = grpc_address,
    .redial = grpc_redial,
    .acked = nqi_grpc_acked,
    .beats = nqi_grpc_beats,
    .close = grpc_close,
    .shutdown = grpc_shutdown_hook,
};
