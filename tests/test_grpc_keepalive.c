/*
 * gRPC keep-alive: an idle libnq client goes on pinging (HTTP/2 PING, on
 * grpc's keep-alive schedule) and is never told "too_many_pings".  grpc's
 * own log says so: this program turns its keep-alive trace on
 * (GRPC_TRACE=http_keepalive, GRPC_VERBOSITY=debug, unless the caller set
 * them), takes every line grpc logs, and counts the pings each case sent,
 * the ones answered, and any GOAWAY for too many pings.
 *
 * The other side is a libnq server, or grpc's own server with every
 * setting at grpc's default (5 minutes between pings without data, two
 * strikes), which answers as a libnq server would with or without the
 * heartbeat: without it, such a server refuses an idle client's pings
 * after the third, as the second case shows; with it, grpc has no need to
 * ping (it pings after a period with no data in).
 */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS
/* The client's keep-alive period in these cases, and how long it idles
 * where a case watches for something not to happen. */
#define KEEPALIVE_MS 1000
#define IDLE_MS (6 * KEEPALIVE_MS)
/* Pings an idle client must send: more than the three a server at grpc's
 * defaults lets pass.  How long a case waits for them, or for a refusal,
 * at most: grpc pings after a period with no data in, and a busy machine
 * delays its timers, so the count in a fixed time is not the measure. */
#define PINGS_WANTED 4
#define PATIENCE_MS (30 * KEEPALIVE_MS)

/* ---- grpc's log ------------------------------------------------------------------ */

static atomic_int g_pings_started;
static atomic_int g_pings_answered;
static atomic_int g_too_many_pings;

static void count_log(gpr_log_func_args *args)
{
    const char *m = args->message;
    int keepalive = 1;
    if (strstr(m, "Start keepalive ping") != NULL) {
        atomic_fetch_add(&g_pings_started, 1);
    } else if (strstr(m, "Finish keepalive ping") != NULL) {
        atomic_fetch_add(&g_pings_answered, 1);
    } else if (strstr(m, "too_many_pings") != NULL || strstr(m, "Too many pings") != NULL) {
        atomic_fetch_add(&g_too_many_pings, 1);
    } else {
        keepalive = 0;
    }
    if (keepalive || args->severity == GPR_LOG_SEVERITY_ERROR) {
        fprintf(stderr, "grpc: %s\n", m);
    }
}

static void reset_counts(void)
{
    atomic_store(&g_pings_started, 0);
    atomic_store(&g_pings_answered, 0);
    atomic_store(&g_too_many_pings, 0);
}

/* Waits until *counter reaches at_least, or PATIENCE_MS pass. */
static int wait_count(atomic_int *counter, int at_least)
{
    int64_t until = nqt_now_ms() + PATIENCE_MS;
    while (atomic_load(counter) < at_least && nqt_now_ms() < until) {
        usleep(10 * 1000);
    }
    return atomic_load(counter);
}

static nq_opts *client_opts(uint16_t port)
{
    nq_opts *o = nqt_opts("127.0.0.1", port, NULL);
    if (nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, KEEPALIVE_MS) != NQ_OK) {
        abort();
    }
    return o;
}

/* ---- libnq to libnq --------------------------------------------------------------- */

/* A libnq server with its defaults (its keep-alive fifteen times slower
 * than the client's, so its heartbeat comes seldom): the idle client goes
 * on pinging, past the pings a server at grpc's defaults would let pass;
 * every ping is answered, none is refused, and the stream still carries
 * messages. */
static int test_an_idle_client_is_never_refused_by_a_libnq_server(void)
{
    nq_comm *s = nqt_open(NQ_GRPC, NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    CHECK(s != NULL);
    nq_comm *c = nqt_open(NQ_GRPC, NQ_CLIENT, client_opts(nqt_port(s)));
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    reset_counts();
    int64_t idle_from = nqt_now_ms();
    wait_count(&g_pings_answered, PINGS_WANTED);
    fprintf(stderr, "pings started %d, answered %d, too_many_pings %d, in %lld ms\n",
            atomic_load(&g_pings_started), atomic_load(&g_pings_answered),
            atomic_load(&g_too_many_pings), (long long)(nqt_now_ms() - idle_from));
    CHECK(atomic_load(&g_pings_started) >= PINGS_WANTED);
    CHECK(atomic_load(&g_pings_answered) >= PINGS_WANTED);
    CHECK(atomic_load(&g_too_many_pings) == 0);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_stat(c, NQ_STAT_CONNECTIONS_LOST) == 0);
    CHECK(nqt_stat(s, NQ_STAT_CONNECTIONS_LOST) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- grpc's own server, at its defaults ------------------------------------------- */

enum { TAG_NEW = 1, TAG_START, TAG_RECV, TAG_SEND, TAG_CLOSED };

/* One call at a time, answered as a libnq server answers a stream: its
 * initial metadata (nq-stream, and nq-heartbeat when beats), an INI to
 * the client's INI, then, when beats, a PING frame every half keep-alive
 * period. */
typedef struct plain_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    int beats;
    atomic_int stop;
    pthread_t thread;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    int cancelled;
    int sending;
    int greeted;
    int closed;
    int64_t next_ping;
} plain_server;

static int send_bytes(plain_server *p, const uint8_t *bytes, size_t len)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, len);
    p->send_buf = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = p->send_buf;
    if (grpc_call_start_batch(p->call, &op, 1, (void *)(intptr_t)TAG_SEND, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(p->send_buf);
        p->send_buf = NULL;
        return -1;
    }
    p->sending = 1;
    return 0;
}

static void recv_next(plain_server *p)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &p->recv_buf;
    grpc_call_start_batch(p->call, &op, 1, (void *)(intptr_t)TAG_RECV, NULL);
}

static void on_new_call(plain_server *p)
{
    grpc_metadata md[2];
    memset(md, 0, sizeof(md));
    md[0].key = grpc_slice_from_static_string("nq-stream");
    md[0].value = grpc_slice_from_static_string("1");
    md[1].key = grpc_slice_from_static_string("nq-heartbeat");
    md[1].value = grpc_slice_from_static_string("1");
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = p->beats ? 2 : 1;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[1].data.recv_close_on_server.cancelled = &p->cancelled;
    grpc_call_start_batch(p->call, ops, 1, (void *)(intptr_t)TAG_START, NULL);
    grpc_call_start_batch(p->call, ops + 1, 1, (void *)(intptr_t)TAG_CLOSED, NULL);
    recv_next(p);
}

static void *serve(void *arg)
{
    plain_server *p = arg;
    for (;;) {
        gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(50, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(p->cq, dl, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            return NULL;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            switch ((int)(intptr_t)ev.tag) {
            case TAG_NEW:
                if (ev.success) {
                    on_new_call(p);
                }
                break;
            case TAG_RECV:
                if (p->recv_buf == NULL) {
                    break; /* the client half-closed, or the call is over */
                }
                grpc_byte_buffer_destroy(p->recv_buf);
                p->recv_buf = NULL;
                if (!p->greeted && !p->sending) {
                    /* The client's INI: answer with ours. */
                    uint8_t ini[24] = {0, 0, 0, 0, 0, 0, 0, 16};
                    memset(ini + 8, 0x5a, 16);
                    p->greeted = send_bytes(p, ini, sizeof(ini)) == 0;
                    p->next_ping = nqt_now_ms() + KEEPALIVE_MS / 2;
                }
                recv_next(p);
                break;
            case TAG_SEND:
                p->sending = 0;
                grpc_byte_buffer_destroy(p->send_buf);
                p->send_buf = NULL;
                break;
            case TAG_CLOSED:
                p->closed = 1;
                break;
            default:
                break;
            }
        }
        if (p->beats && p->greeted && !p->sending && !p->closed &&
            atomic_load(&p->stop) == 0 && nqt_now_ms() >= p->next_ping) {
            uint8_t ping[8] = {0x80, 3, 0, 0, 0, 0, 0, 0};
            send_bytes(p, ping, sizeof(ping));
            p->next_ping = nqt_now_ms() + KEEPALIVE_MS / 2;
        }
        if (atomic_load(&p->stop) == 1) {
            atomic_store(&p->stop, 2);
            if (p->call != NULL) {
                grpc_call_cancel(p->call, NULL);
            }
            grpc_server_shutdown_and_notify(p->server, p->cq, (void *)(intptr_t)99);
            grpc_server_cancel_all_calls(p->server);
        }
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == (void *)(intptr_t)99) {
            grpc_completion_queue_shutdown(p->cq);
        }
    }
}

static int plain_server_start(plain_server *p, int beats)
{
    memset(p, 0, sizeof(*p));
    p->beats = beats;
    p->cq = grpc_completion_queue_create_for_next(NULL);
    p->server = grpc_server_create(NULL, NULL); /* grpc's defaults, all of them */
    grpc_server_register_completion_queue(p->server, p->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    p->port = grpc_server_add_http2_port(p->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    CHECK(p->port > 0);
    grpc_server_start(p->server);
    grpc_call_details_init(&p->details);
    grpc_metadata_array_init(&p->request_md);
    CHECK(grpc_server_request_call(p->server, &p->call, &p->details, &p->request_md, p->cq, p->cq,
                                   (void *)(intptr_t)TAG_NEW) == GRPC_CALL_OK);
    CHECK(pthread_create(&p->thread, NULL, serve, p) == 0);
    return 0;
}

static void plain_server_stop(plain_server *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    if (p->call != NULL) {
        grpc_call_unref(p->call);
    }
    grpc_server_destroy(p->server);
    grpc_completion_queue_destroy(p->cq);
    grpc_call_details_destroy(&p->details);
    grpc_metadata_array_destroy(&p->request_md);
}

/* grpc's own server at its defaults counts a ping that comes within five
 * minutes of the last as a strike, unless it sent data since, and ends the
 * connection after two strikes.  Its heartbeat frames (data) keep the
 * idle client's pings welcome; without them the third ping is refused.
 * So heartbeats are what makes a libnq client's keep-alive safe in front
 * of servers and proxies that keep grpc's defaults. */
static int test_heartbeats_keep_a_default_grpc_server_from_refusing_pings(void)
{
    grpc_init();
    for (int beats = 1; beats >= 0; beats--) {
        plain_server p;
        CHECK(plain_server_start(&p, beats) == 0);
        nq_opts *o = client_opts((uint16_t)p.port);
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 200)); /* no FIN comes */
        nq_comm *c = nqt_open(NQ_GRPC, NQ_CLIENT, o);
        CHECK(c != NULL);
        nq_id server;
        int64_t until = nqt_now_ms() + WAIT_MS;
        while (nq_server_id(c, &server) != NQ_OK && nqt_now_ms() < until) {
            usleep(10 * 1000);
        }
        CHECK_OK(nq_server_id(c, &server)); /* its INI came */
        reset_counts();
        if (beats) {
            usleep(IDLE_MS * 1000);
        } else {
            wait_count(&g_too_many_pings, 1);
        }
        fprintf(stderr, "heartbeat %s: pings started %d, answered %d, too_many_pings %d\n",
                beats ? "on" : "off", atomic_load(&g_pings_started),
                atomic_load(&g_pings_answered), atomic_load(&g_too_many_pings));
        if (beats) {
            /* grpc pings only after a keep-alive period without data in;
             * the frames keep coming, so it need not. */
            CHECK(atomic_load(&g_too_many_pings) == 0);
            nq_msg *m = NULL;
            CHECK_RC(nq_get(c, 0, &m), NQ_ETIMEDOUT); /* still connected */
        } else {
            CHECK(atomic_load(&g_pings_started) >= 2);
            CHECK(atomic_load(&g_too_many_pings) > 0); /* the check sees it */
        }
        nq_close(c);
        nq_destroy(c);
        plain_server_stop(&p);
    }
    grpc_shutdown();
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_an_idle_client_is_never_refused_by_a_libnq_server),
    TEST(test_heartbeats_keep_a_default_grpc_server_from_refusing_pings),
};

int main(int argc, char **argv)
{
    /* Before grpc starts: it reads them once. */
    setenv("GRPC_TRACE", "http_keepalive", 0);
    setenv("GRPC_VERBOSITY", "debug", 0);
    gpr_set_log_function(count_log);
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
