/*
 * Peer events and the same-id rule, over the protocol named on the command
 * line (tcp, mqtt or grpc): every peer's CONNECTED is followed by at most
 * one DISCONNECTED with the reason, and a peer that connects again with its
 * id replaces its old connection (newest wins).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nq_protocol g_proto = NQ_TCP;
static nqt_broker g_broker;

/* ---- recording events ------------------------------------------------------------ */

typedef struct recorder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nq_event events[64];
    int n;
} recorder;

static void record(void *ctx, const nq_event *ev)
{
    recorder *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->n < (int)(sizeof(r->events) / sizeof(r->events[0]))) {
        r->events[r->n++] = *ev;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void recorder_init(recorder *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

/* Waits until n events are recorded; returns 0 then. */
static int wait_events(recorder *r, int n)
{
    int64_t until = nqt_now_ms() + WAIT_MS;
    pthread_mutex_lock(&r->mu);
    while (r->n < n && nqt_now_ms() < until) {
        pthread_mutex_unlock(&r->mu);
        usleep(5000);
        pthread_mutex_lock(&r->mu);
    }
    int got = r->n;
    pthread_mutex_unlock(&r->mu);
    if (got < n) {
        fprintf(stderr, "waited for %d events, got %d\n", n, got);
        return 1;
    }
    return 0;
}

/* The i-th event is of this type, for this peer, with this reason. */
static int is_event(recorder *r, int i, int type, const nq_id *peer, int reason)
{
    pthread_mutex_lock(&r->mu);
    nq_event ev = r->events[i];
    pthread_mutex_unlock(&r->mu);
    if (ev.type != type || (peer != NULL && !nq_id_equal(&ev.peer, peer))) {
        char got[NQ_ID_STRLEN];
        nq_id_format(&ev.peer, got, sizeof(got));
        fprintf(stderr, "event %d: type %d for %s, reason %d\n", i, ev.type, got, ev.reason);
    }
    CHECK(ev.type == type);
    CHECK(peer == NULL || nq_id_equal(&ev.peer, peer));
    if (ev.reason != reason) {
        fprintf(stderr, "event %d: reason %d (%s), wanted %d (%s)\n", i, ev.reason,
                nq_strerror(ev.reason), reason, nq_strerror(reason));
        return 1;
    }
    return 0;
}

/* MQTT: this test's topic prefix, so that cases never hear each other's
 * peers through the one broker. */
static char g_prefix[32];

static nq_comm *open_with(nq_purpose purpose, nq_opts *o, recorder *r)
{
    if (g_proto == NQ_MQTT) {
        nq_opts_set_netloc(o, "127.0.0.1", g_broker.port);
        nq_opts_set_mqtt_prefix(o, g_prefix);
    }
    if (r != NULL && nq_opts_set_events(o, record, r) != NQ_OK) {
        abort();
    }
    return nqt_open(g_proto, purpose, o);
}

/* ---- the cases ---------------------------------------------------------------------- */

/* Both sides hear of each other, then of the clean close (reason NQ_OK). */
static int test_events_follow_a_peer_from_connect_to_close(void)
{
    recorder rs, rc;
    recorder_init(&rs);
    recorder_init(&rc);
    nq_comm *s = open_with(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL), &rs);
    CHECK(s != NULL);
    nq_id cid, sid;
    CHECK_OK(nq_id_random(&cid));
    CHECK_OK(nq_comm_id(s, &sid));
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &cid), &rc);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(wait_events(&rs, 1) == 0 && wait_events(&rc, 1) == 0);
    CHECK(is_event(&rs, 0, NQ_EVENT_CONNECTED, &cid, NQ_OK) == 0);
    CHECK(is_event(&rc, 0, NQ_EVENT_CONNECTED, &sid, NQ_OK) == 0);
    CHECK_OK(nq_close(c));
    CHECK(wait_events(&rs, 2) == 0 && wait_events(&rc, 2) == 0);
    CHECK(is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &cid, NQ_OK) == 0);
    CHECK(is_event(&rc, 1, NQ_EVENT_DISCONNECTED, &sid, NQ_OK) == 0);
    CHECK_OK(nq_close(s));
    CHECK(rs.n == 2 && rc.n == 2);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A client connecting with the id of a live one replaces it: the old
 * connection is reported replaced before the new one is reported
 * connected, the old client loses its connection, and the id's messages
 * go to the new client. */
static int test_same_id_newest_connection_wins(void)
{
    recorder rs;
    recorder_init(&rs);
    nq_comm *s = open_with(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL), &rs);
    CHECK(s != NULL);
    nq_id id;
    CHECK_OK(nq_id_random(&id));
    nq_comm *old = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &id), NULL);
    CHECK(old != NULL);
    CHECK(nqt_round_trip(s, old) == 0);
    nq_comm *fresh = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &id), NULL);
    CHECK(fresh != NULL);
    CHECK(wait_events(&rs, 3) == 0);
    CHECK(is_event(&rs, 0, NQ_EVENT_CONNECTED, &id, NQ_OK) == 0);
    /* Over MQTT the broker ends the old connection first (one client id,
     * one connection): the old peer is lost before the new one arrives. */
    CHECK(is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &id,
                   g_proto == NQ_MQTT ? NQ_ECONNRESET : NQ_EREPLACED) == 0);
    CHECK(is_event(&rs, 2, NQ_EVENT_CONNECTED, &id, NQ_OK) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(old, WAIT_MS, &m), NQ_ECONNRESET);
    CHECK(nqt_round_trip(s, fresh) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK_OK(nq_close(fresh));
    CHECK_OK(nq_close(s));
    CHECK(wait_events(&rs, 4) == 0);
    CHECK(is_event(&rs, 3, NQ_EVENT_DISCONNECTED, &id, NQ_OK) == 0);
    nq_destroy(old);
    nq_destroy(fresh);
    nq_destroy(s);
    return 0;
}

/* A server's close drops a client that does not finish: reason NQ_ECLOSED
 * on the server, and the client hears its server is gone. */
static int test_close_timeout_reports_closed(void)
{
    recorder rs;
    recorder_init(&rs);
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 200));
    nq_comm *s = open_with(NQ_SERVER, o, &rs);
    CHECK(s != NULL);
    nq_id cid;
    CHECK_OK(nq_id_random(&cid));
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &cid), NULL);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_RC(nq_close(s), NQ_ETIMEDOUT);
    CHECK(wait_events(&rs, 2) == 0);
    CHECK(is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &cid, NQ_ECLOSED) == 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_events_follow_a_peer_from_connect_to_close),
    TEST(test_same_id_newest_connection_wins),
    TEST(test_close_timeout_reports_closed),
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "mqtt") == 0) {
        g_proto = NQ_MQTT;
        if (nqt_broker_start(&g_broker, NULL, NULL) != 0) {
            return 1;
        }
    } else if (argc > 1 && strcmp(argv[1], "grpc") == 0) {
        g_proto = NQ_GRPC;
    }
    if (argc > 1 && (strcmp(argv[1], "mqtt") == 0 || strcmp(argv[1], "tcp") == 0 ||
                     strcmp(argv[1], "grpc") == 0)) {
        argc--;
        argv++;
    }
    snprintf(g_prefix, sizeof(g_prefix), "events%d/", (int)getpid());
    int rv = run_tests(tests, TEST_COUNT(tests), argc, argv);
    if (g_proto == NQ_MQTT) {
        nqt_broker_stop(&g_broker, SIGTERM);
    }
    return rv;
}
