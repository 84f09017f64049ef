/*
 * Peer events and the same-id rule, over the protocol named on the command
 * line (tcp, mqtt or grpc): every peer's CONNECTED is followed by at most
 * one DISCONNECTED with the reason, and a peer that connects again with its
 * id replaces its old connection (newest wins).
 */
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

/* MQTT: this test's topic prefix, so that cases never hear each other's
 * peers through the one broker. */
static char g_prefix[32];

static nq_comm *open_with(nq_purpose purpose, nq_opts *o, nqt_recorder *r)
{
    if (g_proto == NQ_MQTT) {
        nq_opts_set_netloc(o, "127.0.0.1", g_broker.port);
        nq_opts_set_mqtt_prefix(o, g_prefix);
    }
    if (r != NULL && nq_opts_set_events(o, nqt_record, r) != NQ_OK) {
        abort();
    }
    return nqt_open(g_proto, purpose, o);
}

/* ---- the cases ---------------------------------------------------------------------- */

/* Both sides hear of each other, then of the clean close (reason NQ_OK). */
static int test_events_follow_a_peer_from_connect_to_close(void)
{
    nqt_recorder rs, rc;
    nqt_recorder_init(&rs);
    nqt_recorder_init(&rc);
    nq_comm *s = open_with(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL), &rs);
    CHECK(s != NULL);
    nq_id cid, sid;
    CHECK_OK(nq_id_random(&cid));
    CHECK_OK(nq_comm_id(s, &sid));
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &cid), &rc);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_wait_events(&rs, 1) == 0 && nqt_wait_events(&rc, 1) == 0);
    CHECK(nqt_is_event(&rs, 0, NQ_EVENT_CONNECTED, &cid, NQ_OK) == 0);
    CHECK(nqt_is_event(&rc, 0, NQ_EVENT_CONNECTED, &sid, NQ_OK) == 0);
    CHECK_OK(nq_close(c));
    CHECK(nqt_wait_events(&rs, 2) == 0 && nqt_wait_events(&rc, 2) == 0);
    CHECK(nqt_is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &cid, NQ_OK) == 0);
    CHECK(nqt_is_event(&rc, 1, NQ_EVENT_DISCONNECTED, &sid, NQ_OK) == 0);
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
    nqt_recorder rs;
    nqt_recorder_init(&rs);
    nq_comm *s = open_with(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL), &rs);
    CHECK(s != NULL);
    nq_id id;
    CHECK_OK(nq_id_random(&id));
    nq_comm *old = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &id), NULL);
    CHECK(old != NULL);
    CHECK(nqt_round_trip(s, old) == 0);
    nq_comm *fresh = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &id), NULL);
    CHECK(fresh != NULL);
    CHECK(nqt_wait_events(&rs, 3) == 0);
    CHECK(nqt_is_event(&rs, 0, NQ_EVENT_CONNECTED, &id, NQ_OK) == 0);
    /* Over MQTT the broker ends the old connection first (one client id,
     * one connection): the old peer is lost before the new one arrives. */
    CHECK(nqt_is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &id,
                   g_proto == NQ_MQTT ? NQ_ECONNRESET : NQ_EREPLACED) == 0);
    CHECK(nqt_is_event(&rs, 2, NQ_EVENT_CONNECTED, &id, NQ_OK) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(old, WAIT_MS, &m), NQ_ECONNRESET);
    CHECK(nqt_round_trip(s, fresh) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK_OK(nq_close(fresh));
    CHECK_OK(nq_close(s));
    CHECK(nqt_wait_events(&rs, 4) == 0);
    CHECK(nqt_is_event(&rs, 3, NQ_EVENT_DISCONNECTED, &id, NQ_OK) == 0);
    nq_destroy(old);
    nq_destroy(fresh);
    nq_destroy(s);
    return 0;
}

/* A server's close drops a client that does not finish: reason NQ_ECLOSED
 * on the server, and the client hears its server is gone. */
static int test_close_timeout_reports_closed(void)
{
    nqt_recorder rs;
    nqt_recorder_init(&rs);
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
    CHECK(nqt_wait_events(&rs, 2) == 0);
    CHECK(nqt_is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &cid, NQ_ECLOSED) == 0);
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
