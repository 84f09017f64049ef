/*
 * Client reconnection (NQ_OPT_RECONNECT_MS), over the protocol named on
 * the command line (tcp, tls, mqtt or grpc): a client that loses its
 * server, or finds none, keeps its puts and its get and connects again
 * with a growing delay; it stops at the give-up bound or at close.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "env.h"
#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nqt_env g_env;
#define g_proto (g_env.proto)
static char g_prefix[32];  /* MQTT: this run's topic prefix */
static int g_case;         /* MQTT: each case has a prefix of its own (next_case) */

static nq_opts *options(nq_purpose purpose, uint16_t port, const nq_id *id)
{
    char prefix[48];
    snprintf(prefix, sizeof(prefix), "%s%d/", g_prefix, g_case);
    nq_opts *o = nqt_env_opts(&g_env, purpose, port, prefix);
    if (id != NULL && nq_opts_set_id(o, id) != NQ_OK) {
        abort();
    }
    return o;
}

/* A server whose close drops its clients after 100 ms (a server's close
 * otherwise waits for its clients to close first). */
static nq_comm *server_on(uint16_t port)
{
    nq_opts *o = options(NQ_SERVER, port, NULL);
    if (nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 100) != NQ_OK) {
        abort();
    }
    return nqt_open(g_proto, NQ_SERVER, o);
}

/* Closes a server, dropping its clients; 0 on success. */
static int drop_server(nq_comm *s)
{
    int rv = nq_close(s);
    nq_destroy(s);
    return rv == NQ_ETIMEDOUT ? 0 : -1;
}

/* A client that reconnects after 50 ms at first, 400 ms at most, and gives
 * up after give_up_ms (-1: never). */
static nq_comm *reconnecting_client(uint16_t port, nqt_recorder *r, int64_t give_up_ms)
{
    nq_opts *o = options(NQ_CLIENT, port, NULL);
    /* Over MQTT an attempt fails when no server answers within this. */
    if (nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 500) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 50) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 400) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_RECONNECT_GIVE_UP_MS, give_up_ms) != NQ_OK ||
        (r != NULL && nq_opts_set_events(o, nqt_record, r) != NQ_OK)) {
        abort();
    }
    return nqt_open(g_proto, NQ_CLIENT, o);
}

/* A port nothing listens on (a server's, just closed).  Over MQTT the
 * broker's: the server is simply absent. */
static uint16_t vacant_port(void)
{
    if (g_proto == NQ_MQTT) {
        return 0;
    }
    nq_comm *s = server_on(0);
    if (s == NULL) {
        abort();
    }
    uint16_t port = nqt_port(s);
    nq_destroy(s);
    return port;
}

/* Puts len bytes to the server with a future. */
static int put(nq_comm *c, const void *data, size_t len, nq_future **f)
{
    nq_chunk chunk = {.data = data, .len = len};
    return nq_put(c, &chunk, 1, NULL, 0, f);
}

/* Waits for a future; returns its result, or NQ_ETIMEDOUT. */
static int settle(nq_future *f, int64_t ms)
{
    int rv = nq_future_wait(f, ms);
    return rv == NQ_OK ? nq_future_result(f) : rv;
}

static void next_case(void)
{
    g_case++;
}

/* ---- the cases ------------------------------------------------------------------------ */

static int test_option_ranges(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 1, NULL);
    int64_t v = -2;
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_RECONNECT_MS, &v));
    CHECK(v == 0); /* off by default, as in net-queue */
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_RECONNECT_MAX_MS, &v));
    CHECK(v == 5000);
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_RECONNECT_GIVE_UP_MS, &v));
    CHECK(v == -1);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 5), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, -1), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 0), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_RECONNECT_GIVE_UP_MS, -2), NQ_EINVAL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_GIVE_UP_MS, 0));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 0));
    nq_opts_free(o);
    return 0;
}

/* Without the option, a client whose server closes is done: get reports
 * the end and nothing reconnects. */
static int test_reconnection_is_off_by_default(void)
{
    next_case();
    nq_comm *s = server_on(0);
    CHECK(s != NULL);
    uint16_t port = nqt_port(s);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, port, NULL));
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(drop_server(s) == 0);
    nq_msg *m = NULL;
    int rv = nq_get(c, WAIT_MS, &m);
    CHECK(rv != NQ_OK && rv != NQ_ETIMEDOUT);
    s = server_on(port);
    CHECK(s != NULL);
    usleep(300 * 1000);
    CHECK(nqt_stat(c, NQ_STAT_RECONNECTS) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A put that waits for a server can be withdrawn: it never arrives, and
 * what is put after it does. */
static int test_a_put_waiting_for_a_server_can_be_cancelled(void)
{
    next_case();
    uint16_t port = vacant_port();
    nq_comm *c = reconnecting_client(port, NULL, -1);
    CHECK(c != NULL);
    nq_future *gone = NULL, *kept = NULL;
    CHECK_OK(put(c, "withdrawn", 9, &gone));
    CHECK_OK(put(c, "kept", 4, &kept));
    CHECK_RC(nq_future_cancel(gone), 1);
    CHECK_RC(nq_future_result(gone), NQ_ECANCELED);
    nq_comm *s = server_on(port);
    CHECK(s != NULL);
    CHECK_OK(nq_future_wait(kept, WAIT_MS));
    CHECK(nqt_expect(s, "kept", 4, NULL) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 300, &m), NQ_ETIMEDOUT);
    nq_future_free(gone);
    nq_future_free(kept);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* The server goes and a new one (a new id) comes up on its port: the
 * client hears the old one leave, reconnects, and what it put while
 * disconnected arrives, in order, at the new server. */
static int test_client_follows_a_restarted_server(void)
{
    next_case();
    nqt_recorder rc;
    nqt_recorder_init(&rc);
    nq_comm *s1 = server_on(0);
    CHECK(s1 != NULL);
    uint16_t port = nqt_port(s1);
    nq_id sid1, sid2, cid;
    CHECK_OK(nq_comm_id(s1, &sid1));
    nq_comm *c = reconnecting_client(port, &rc, -1);
    CHECK(c != NULL);
    CHECK_OK(nq_comm_id(c, &cid));
    CHECK(nqt_round_trip(s1, c) == 0);
    CHECK(drop_server(s1) == 0);
    CHECK(nqt_wait_events(&rc, 3) == 0);
    CHECK(nqt_is_event(&rc, 0, NQ_EVENT_CONNECTED, &sid1, NQ_OK) == 0);
    CHECK(nqt_is_event(&rc, 1, NQ_EVENT_DISCONNECTED, &sid1, NQ_ECONNRESET) == 0);
    CHECK(nqt_is_event(&rc, 2, NQ_EVENT_RECONNECTING, &sid1, NQ_ECONNRESET) == 0);

    nq_future *f[3];
    const char *text[3] = {"while", "the server", "was away"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(put(c, text[i], strlen(text[i]), &f[i]));
    }
    usleep(200 * 1000);
    CHECK(nq_future_wait(f[0], 0) == NQ_ETIMEDOUT);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, 0, &m), NQ_ETIMEDOUT); /* still open, still waiting */

    nq_comm *s2 = server_on(port);
    CHECK(s2 != NULL);
    CHECK_OK(nq_comm_id(s2, &sid2));
    for (int i = 0; i < 3; i++) {
        CHECK(nqt_expect(s2, text[i], strlen(text[i]), &cid) == 0);
        CHECK_OK(settle(f[i], WAIT_MS));
        nq_future_free(f[i]);
    }
    CHECK(nqt_round_trip(s2, c) == 0);
    int n = nqt_events(&rc);
    CHECK(nqt_is_event(&rc, n - 1, NQ_EVENT_CONNECTED, &sid2, NQ_OK) == 0);
    for (int i = 3; i < n - 1; i++) {
        int reason = nqt_event(&rc, i).reason;
        CHECK(nqt_is_event(&rc, i, NQ_EVENT_RECONNECTING, &sid1, reason) == 0);
        CHECK(reason != NQ_OK);
    }
    CHECK(nqt_stat(c, NQ_STAT_RECONNECTS) >= 1);
    nq_id known;
    CHECK_OK(nq_server_id(c, &known));
    CHECK(nq_id_equal(&known, &sid2));
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s2));
    nq_destroy(c);
    nq_destroy(s2);
    return 0;
}

/* A server away for longer than the transport's own retry schedule would
 * wait (grpc backs off from 1 s up to 2 minutes between connection
 * attempts): once it is back, the client reaches it within its own
 * NQ_OPT_RECONNECT_MAX_MS (400 ms here) and a little. */
static int test_client_is_back_within_its_own_backoff_after_a_long_absence(void)
{
    next_case();
    nq_comm *s1 = server_on(0);
    CHECK(s1 != NULL);
    uint16_t port = nqt_port(s1);
    nq_comm *c = reconnecting_client(port, NULL, -1);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s1, c) == 0);
    CHECK(drop_server(s1) == 0);
    usleep(6000 * 1000);
    nq_comm *s2 = server_on(port);
    CHECK(s2 != NULL);
    int64_t t0 = nqt_now_ms();
    CHECK(nqt_round_trip(s2, c) == 0);
    int64_t took = nqt_now_ms() - t0;
    fprintf(stderr, "back %lld ms after the server\n", (long long)took);
    CHECK(took < 1500);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s2));
    nq_destroy(c);
    nq_destroy(s2);
    return 0;
}

/* No server yet: the first connect fails and is retried until one comes
 * up; a put made before then is delivered. */
static int test_first_connect_is_retried(void)
{
    next_case();
    nqt_recorder rc;
    nqt_recorder_init(&rc);
    uint16_t port = vacant_port();
    nq_comm *c = reconnecting_client(port, &rc, -1);
    CHECK(c != NULL);
    nq_id cid, zero, sid;
    memset(&zero, 0, sizeof(zero));
    CHECK_OK(nq_comm_id(c, &cid));
    nq_future *f = NULL;
    CHECK_OK(put(c, "early", 5, &f));
    if (g_proto != NQ_MQTT) {
        /* Over MQTT the broker is there: the client waits for a server
         * without failing anything. */
        CHECK(nqt_wait_stat(c, NQ_STAT_RECONNECTS, 2) == 0);
        int reason = nqt_event(&rc, 0).reason;
        CHECK(nqt_is_event(&rc, 0, NQ_EVENT_RECONNECTING, &zero, reason) == 0);
        CHECK(reason != NQ_OK);
    }
    CHECK(nq_future_wait(f, 0) == NQ_ETIMEDOUT);
    nq_comm *s = server_on(port);
    CHECK(s != NULL);
    CHECK_OK(nq_comm_id(s, &sid));
    CHECK(nqt_expect(s, "early", 5, &cid) == 0);
    CHECK_OK(settle(f, WAIT_MS));
    nq_future_free(f);
    CHECK(nqt_round_trip(s, c) == 0);
    int n = nqt_events(&rc);
    CHECK(nqt_is_event(&rc, n - 1, NQ_EVENT_CONNECTED, &sid, NQ_OK) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* Closing a client that waits to reconnect returns at once with what
 * ended its last attempt, and fails what it had queued the same way. */
static int test_close_while_disconnected(void)
{
    next_case();
    uint16_t port = vacant_port();
    nq_comm *c = reconnecting_client(port, NULL, -1);
    CHECK(c != NULL);
    nq_future *f = NULL;
    CHECK_OK(put(c, "never", 5, &f));
    CHECK(nqt_wait_stat(c, NQ_STAT_RECONNECTS, 1) == 0);
    int64_t t0 = nqt_now_ms();
    int rv = nq_close(c);
    CHECK(nqt_now_ms() - t0 < 2000);
    CHECK(rv != NQ_OK);
    CHECK_RC(settle(f, WAIT_MS), rv);
    nq_msg *m = NULL;
    CHECK(nq_get(c, 0, &m) != NQ_OK);
    nq_future_free(f);
    nq_destroy(c);
    return 0;
}

/* With a give-up bound, a client that finds no server ends as it would
 * without reconnection: its put fails and get reports the end. */
static int test_give_up_bound_ends_the_client(void)
{
    next_case();
    nqt_recorder rc;
    nqt_recorder_init(&rc);
    uint16_t port = vacant_port();
    int64_t t0 = nqt_now_ms();
    nq_comm *c = reconnecting_client(port, &rc, 500);
    CHECK(c != NULL);
    nq_future *f = NULL;
    CHECK_OK(put(c, "lost", 4, &f));
    nq_msg *m = NULL;
    int rv = nq_get(c, WAIT_MS, &m);
    int64_t took = nqt_now_ms() - t0;
    CHECK(rv != NQ_OK && rv != NQ_ETIMEDOUT);
    CHECK(took >= 500 && took < 5000);
    CHECK_RC(settle(f, WAIT_MS), rv);
    nq_future_free(f);
    int n = nqt_events(&rc);
    CHECK(n >= 1);
    for (int i = 0; i < n; i++) {
        CHECK(nqt_event(&rc, i).type == NQ_EVENT_RECONNECTING);
    }
    CHECK_RC(nq_close(c), rv);
    nq_destroy(c);
    return 0;
}

/* ---- TCP: the bytes on the wire -------------------------------------------------------- */

/* Reads exactly len bytes (10 s at most); 0 on success. */
static int read_exactly(int fd, uint8_t *buf, size_t len)
{
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t have = 0;
    while (have < len) {
        ssize_t n = read(fd, buf + have, len - have);
        if (n <= 0) {
            return -1;
        }
        have += (size_t)n;
    }
    return 0;
}

/* A frame the lost connection wrote only in part goes again whole, after
 * a new INI, on the next connection; the old one's half is never seen. */
static int test_a_partly_written_frame_goes_again_whole(void)
{
    uint16_t port;
    int lfd = nqt_raw_listen(&port);
    nq_comm *c = reconnecting_client(port, NULL, -1);
    CHECK(c != NULL);
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    int a = nqt_raw_accept(lfd);
    CHECK(a >= 0);
    uint8_t ini[24], want[24];
    nqt_put_header(want, 16);
    memcpy(want + 8, cid.bytes, 16);
    CHECK(read_exactly(a, ini, sizeof(ini)) == 0);
    CHECK(memcmp(ini, want, sizeof(want)) == 0);
    nq_id sid;
    CHECK_OK(nq_id_random(&sid));
    CHECK(nqt_raw_send_frame(a, sid.bytes, 16) == 0);

    /* Larger than the socket buffers hold, so the first connection can
     * take only part of it. */
    size_t big = 48u << 20;
    uint8_t *data = malloc(big);
    CHECK(data != NULL);
    for (size_t i = 0; i < big; i++) {
        data[i] = (uint8_t)(i * 7 + i / 4093);
    }
    nq_future *f = NULL;
    CHECK_OK(put(c, data, big, &f));
    uint8_t *got = malloc(big + 8);
    CHECK(got != NULL);
    CHECK(read_exactly(a, got, 1 << 20) == 0);
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    setsockopt(a, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    close(a); /* a reset, mid-frame */
    CHECK(nq_future_wait(f, 0) == NQ_ETIMEDOUT);

    a = nqt_raw_accept(lfd);
    CHECK(a >= 0);
    CHECK(read_exactly(a, ini, sizeof(ini)) == 0);
    CHECK(memcmp(ini, want, sizeof(want)) == 0);
    CHECK(nqt_raw_send_frame(a, sid.bytes, 16) == 0);
    CHECK(read_exactly(a, got, big + 8) == 0);
    uint8_t head[8];
    nqt_put_header(head, big);
    CHECK(memcmp(got, head, 8) == 0);
    CHECK(memcmp(got + 8, data, big) == 0);
    CHECK_OK(settle(f, WAIT_MS));
    nq_future_free(f);
    CHECK(nqt_stat(c, NQ_STAT_RECONNECTS) == 1);
    /* This server never answers a FIN: leave before the client closes. */
    close(a);
    close(lfd);
    nq_destroy(c);
    free(data);
    free(got);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_option_ranges),
    TEST(test_reconnection_is_off_by_default),
    TEST(test_client_follows_a_restarted_server),
    TEST(test_client_is_back_within_its_own_backoff_after_a_long_absence),
    TEST(test_a_put_waiting_for_a_server_can_be_cancelled),
    TEST(test_first_connect_is_retried),
    TEST(test_close_while_disconnected),
    TEST(test_give_up_bound_ends_the_client),
    TEST_TCP(test_a_partly_written_frame_goes_again_whole),
};

int main(int argc, char **argv)
{
    if (nqt_env_start(&g_env, &argc, &argv, "reconnect") != 0) {
        return 1;
    }
    snprintf(g_prefix, sizeof(g_prefix), "redial%d/", (int)getpid());
    int rv = run_tests_for(tests, TEST_COUNT(tests), argc, argv, g_proto == NQ_TCP && !g_env.tls);
    nqt_env_stop(&g_env);
    return rv;
}
