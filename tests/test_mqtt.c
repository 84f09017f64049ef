/*
 * MQTT-only behaviour: each test starts its own mosquitto.  The contract
 * cases shared with TCP live in test_comm.c (run with "mqtt").
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"
#include "peers.h"
#include "proxy.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nqt_broker broker;

/* An id as MQTT topics and client ids carry it: 32 hex digits. */
static void id_hex(const nq_id *id, char hex[33])
{
    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", id->bytes[i]);
    }
}

static nq_comm *mqtt_peer(nq_purpose purpose, nq_opts *o)
{
    return nqt_open(NQ_MQTT, purpose, o);
}
static char tls_dir[64];

static int start_broker(int tls)
{
    if (!tls) {
        return nqt_broker_start(&broker, NULL, NULL);
    }
    if (nqt_temp_dir(tls_dir, "nqmqtls") != 0 ||
        nqt_make_cert(tls_dir, "cert", "DNS:localhost,IP:127.0.0.1") != 0 ||
        nqt_make_cert(tls_dir, "other", "DNS:localhost,IP:127.0.0.1") != 0) {
        return 1;
    }
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tls_dir);
    snprintf(key, sizeof(key), "%s/cert.key", tls_dir);
    return nqt_broker_start(&broker, cert, key);
}

static int test_slices_carry_a_large_message(void)
{
    CHECK(start_broker(0) == 0);
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_PROTOCOL_SIZE, 64 * 1024));
    nq_comm *s = mqtt_peer(NQ_SERVER, o);
    o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_PROTOCOL_SIZE, 64 * 1024));
    nq_comm *c = mqtt_peer(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    /* 10 MiB in 64 KiB publishes: 161 slices, the last one partial. */
    size_t len = 10 * 1024 * 1024 + 3;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + (i >> 16));
    }
    CHECK_OK(nqt_put_wait(c, buf, len, NULL, 0));
    CHECK(nqt_expect(s, buf, len, NULL) == 0);
    nq_id cid;
    nq_comm_id(c, &cid);
    CHECK_OK(nqt_put_wait(s, buf, len, &cid, 1));
    CHECK(nqt_expect(c, buf, len, NULL) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    free(buf);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static int test_every_qos_level_works(void)
{
    CHECK(start_broker(0) == 0);
    for (int qos = 0; qos <= 2; qos++) {
        nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_QOS, qos));
        nq_comm *s = mqtt_peer(NQ_SERVER, o);
        o = nqt_opts("127.0.0.1", broker.port, NULL);
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_QOS, qos));
        nq_comm *c = mqtt_peer(NQ_CLIENT, o);
        CHECK(s != NULL && c != NULL);
        CHECK(nqt_round_trip(s, c) == 0);
        CHECK_OK(nq_close(c));
        CHECK_OK(nq_close(s));
        nq_destroy(c);
        nq_destroy(s);
    }
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_MQTT_QOS, 3), NQ_EINVAL);
    nq_opts_free(o);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static int test_prefixes_let_servers_share_a_broker(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s[2], *c[2];
    const char *prefix[2] = {"app-one/", "app-two/"};
    for (int i = 0; i < 2; i++) {
        nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
        CHECK_OK(nq_opts_set_mqtt_prefix(o, prefix[i]));
        s[i] = mqtt_peer(NQ_SERVER, o);
        CHECK(s[i] != NULL);
    }
    for (int i = 0; i < 2; i++) {
        nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
        CHECK_OK(nq_opts_set_mqtt_prefix(o, prefix[i]));
        c[i] = mqtt_peer(NQ_CLIENT, o);
        CHECK(c[i] != NULL);
        CHECK_OK(nqt_put_wait(c[i], prefix[i], strlen(prefix[i]), NULL, 0));
    }
    for (int i = 0; i < 2; i++) {
        CHECK(nqt_expect(s[i], prefix[i], strlen(prefix[i]), NULL) == 0);
        nq_msg *m = NULL;
        CHECK_RC(nq_get(s[i], 200, &m), NQ_ETIMEDOUT);
        /* A broadcast reaches only this server's clients. */
        CHECK_OK(nqt_put_wait(s[i], "mine", 4, NULL, 0));
        CHECK(nqt_expect(c[i], "mine", 4, NULL) == 0);
        CHECK_RC(nq_get(c[i], 200, &m), NQ_ETIMEDOUT);
    }
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_RC(nq_opts_set_mqtt_prefix(o, "bad/+/"), NQ_EINVAL);
    nq_opts_free(o);
    for (int i = 0; i < 2; i++) {
        nq_destroy(c[i]);
        nq_destroy(s[i]);
    }
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static int test_missing_broker_fails_at_open(void)
{
    CHECK(start_broker(0) == 0);
    uint16_t port = broker.port;
    nqt_broker_stop(&broker, SIGTERM);
    nq_comm *c = NULL;
    nq_opts *o = nqt_opts("127.0.0.1", port, NULL);
    nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 2000);
    CHECK_RC(nq_open(NQ_MQTT, NQ_CLIENT, o, &c), NQ_ECONNREFUSED);
    CHECK_RC(nq_open(NQ_MQTT, NQ_SERVER, o, &c), NQ_ECONNREFUSED);
    nq_opts_free(o);
    return 0;
}

static int test_broker_killed_mid_exchange_fails_cleanly(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, NULL));
    nq_comm *c = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    /* A large put in flight when the broker dies. */
    size_t len = 256 * 1024 * 1024;
    uint8_t *big = calloc(1, len);
    nq_chunk ch = {big, len};
    nq_future *f = NULL;
    CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f));
    nqt_broker_stop(&broker, SIGKILL);
    CHECK_RC(nq_future_wait(f, WAIT_MS), NQ_ECONNRESET);
    nq_future_free(f);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNRESET);
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_close(c), NQ_ECONNRESET);
    CHECK_OK(nq_close(s));
    CHECK(nqt_now_ms() - t0 < 5000);
    nq_destroy(c);
    nq_destroy(s);
    free(big);
    return 0;
}

static int test_close_sends_a_clean_disconnect(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, NULL));
    nq_id cid;
    nq_id_random(&cid);
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    nq_opts_set_id(o, &cid);
    nq_comm *c = mqtt_peer(NQ_CLIENT, o);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    /* mosquitto logs "Client <id> disconnected." only for a DISCONNECT
     * packet; a dropped connection reads differently. */
    char hex[33];
    id_hex(&cid, hex);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "grep -q 'Client %s disconnected\\.' %s/broker.log", hex,
             broker.dir);
    int found = 0;
    for (int i = 0; i < 50 && !found; i++) {
        found = system(cmd) == 0;
        if (!found) {
            usleep(20000);
        }
    }
    CHECK(found);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static int test_tls_to_the_broker(void)
{
    CHECK(start_broker(1) == 0);
    char cert[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tls_dir);
    nq_opts *o = nqt_opts("127.0.0.1", broker.tls_port, NULL);
    nq_opts_set_tls(o, NULL, cert);
    nq_comm *s = mqtt_peer(NQ_SERVER, o);
    o = nqt_opts("127.0.0.1", broker.tls_port, NULL);
    nq_opts_set_tls(o, NULL, cert);
    nq_comm *c = mqtt_peer(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    /* A certificate the client does not trust fails at open, clearly. */
    snprintf(cert, sizeof(cert), "%s/other.pem", tls_dir);
    o = nqt_opts("127.0.0.1", broker.tls_port, NULL);
    nq_opts_set_tls(o, NULL, cert);
    nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 3000);
    nq_comm *bad = NULL;
    CHECK_RC(nq_open(NQ_MQTT, NQ_CLIENT, o, &bad), NQ_ETLS);
    nq_opts_free(o);
    nqt_broker_stop(&broker, SIGTERM);
    nqt_remove_dir(tls_dir);
    return 0;
}

static int test_garbage_on_a_client_topic_hurts_only_that_topic(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, NULL));
    nq_comm *good = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(nqt_round_trip(s, good) == 0);
    /* A stranger publishes garbage where a client would. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "mosquitto_pub -h 127.0.0.1 -p %u -t c2s/0123456789abcdef0123456789abcdef "
             "-m 'not a frame at all'",
             (unsigned)broker.port);
    int64_t before = 0, after = 0;
    nq_stat(s, NQ_STAT_PROTOCOL_ERRORS, &before);
    if (system(cmd) != 0) {
        fprintf(stderr, "mosquitto_pub not available\n");
        return 1;
    }
    for (int i = 0; i < 200 && after == before; i++) {
        nq_stat(s, NQ_STAT_PROTOCOL_ERRORS, &after);
        usleep(10000);
    }
    CHECK(after == before + 1);
    CHECK(nqt_round_trip(s, good) == 0);
    nq_destroy(good);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* With reconnection on, both sides outlive a broker restart: the server's
 * and the client's broker connections come back, the client introduces
 * itself again, and what it put while the broker was down arrives. */
static int test_broker_restart_is_survived_with_reconnection(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, NULL));
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 50));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 500));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 1000));
    nq_comm *c = mqtt_peer(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_broker_restart(&broker, SIGKILL) == 0);
    nq_chunk chunk = {.data = "after the restart", .len = 17};
    nq_future *f = NULL;
    CHECK_OK(nq_put(c, &chunk, 1, NULL, 0, &f));
    CHECK(nqt_expect(s, "after the restart", 17, &cid) == 0);
    CHECK_OK(nq_future_wait(f, WAIT_MS));
    CHECK_OK(nq_future_result(f));
    nq_future_free(f);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_stat(c, NQ_STAT_RECONNECTS) >= 1);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* With acknowledged delivery a broker killed mid-stream loses nothing:
 * messages in flight when it died go again once both sides are back, none
 * twice, in order, and every future succeeds. */
enum { KEPT = 3000 };

typedef struct kept_reader {
    nq_comm *server;
    int got;
    int disorder;
} kept_reader;

static void *read_kept(void *arg)
{
    kept_reader *r = arg;
    int64_t deadline = nqt_now_ms() + 90000;
    while (r->got < KEPT && nqt_now_ms() < deadline) {
        nq_msg *m = NULL;
        if (nq_get(r->server, 100, &m) != NQ_OK) {
            continue;
        }
        const void *data;
        size_t len;
        uint32_t v = UINT32_MAX;
        if (nq_msg_data(m, &data, &len) == NQ_OK && len == sizeof(v)) {
            memcpy(&v, data, sizeof(v));
        }
        r->disorder += v != (uint32_t)r->got;
        __atomic_add_fetch(&r->got, 1, __ATOMIC_SEQ_CST);
        nq_msg_free(m);
    }
    return NULL;
}

/* Puts KEPT numbered messages, one every half millisecond: a stream. */
typedef struct kept_writer {
    nq_comm *client;
    uint32_t *values;
    nq_future **futures;
    int errors;
} kept_writer;

static void *write_kept(void *arg)
{
    kept_writer *w = arg;
    for (uint32_t i = 0; i < KEPT; i++) {
        w->values[i] = i;
        nq_chunk chunk = {.data = &w->values[i], .len = sizeof(w->values[i])};
        w->errors += nq_put(w->client, &chunk, 1, NULL, 0, &w->futures[i]) != NQ_OK;
        usleep(500);
    }
    return NULL;
}

static int test_broker_killed_mid_stream_loses_nothing_acknowledged(void)
{
    CHECK(start_broker(0) == 0);
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED));
    nq_comm *s = mqtt_peer(NQ_SERVER, o);
    o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 50));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 500));
    nq_comm *c = mqtt_peer(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_stat(s, NQ_STAT_ACKED) == 1);
    kept_reader r = {.server = s};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, read_kept, &r) == 0);
    static uint32_t values[KEPT];
    static nq_future *futures[KEPT];
    kept_writer wr = {.client = c, .values = values, .futures = futures};
    pthread_t tw;
    CHECK(pthread_create(&tw, NULL, write_kept, &wr) == 0);
    /* The broker dies with messages on their way through it. */
    for (int i = 0; i < 5000 && __atomic_load_n(&r.got, __ATOMIC_SEQ_CST) < KEPT / 3; i++) {
        usleep(1000);
    }
    int before = __atomic_load_n(&r.got, __ATOMIC_SEQ_CST);
    CHECK(nqt_broker_restart(&broker, SIGKILL) == 0);
    pthread_join(tw, NULL);
    CHECK(wr.errors == 0);
    int restarted = before < KEPT;
    int failed = 0;
    for (uint32_t i = 0; i < KEPT; i++) {
        int rv = nq_future_wait(futures[i], 60000);
        failed += rv != NQ_OK || nq_future_result(futures[i]) != NQ_OK;
        nq_future_free(futures[i]);
    }
    pthread_join(t, NULL);
    fprintf(stderr, "got %d, out of order %d, failed futures %d, resumed %lld\n", r.got,
            r.disorder, failed, (long long)nqt_stat(s, NQ_STAT_RESUMED));
    CHECK(restarted);
    CHECK(failed == 0);
    CHECK(r.got == KEPT);
    CHECK(r.disorder == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 300, &m), NQ_ETIMEDOUT); /* nothing twice */
    CHECK(nqt_stat(s, NQ_STAT_RESUMED) >= 1);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

typedef struct {
    nq_comm *c;
    atomic_int done;
    int rv;
} closer;

static void *close_it(void *arg)
{
    closer *k = arg;
    k->rv = nq_close(k->c);
    atomic_store(&k->done, 1);
    return NULL;
}

static size_t peer_count(nq_comm *c)
{
    nq_id ids[8];
    size_t n = 0;
    return nq_peers(c, ids, 8, &n) == NQ_OK ? n : 999;
}

/* A broker, a server with keep-alive at 1 s, and a libnq client that has
 * made a round trip with it. */
static int quick_server_and_client(nq_comm **s, nq_comm **c)
{
    CHECK(start_broker(0) == 0);
    nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, 1000));
    *s = mqtt_peer(NQ_SERVER, o);
    CHECK(*s != NULL);
    *c = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(*c != NULL);
    CHECK(nqt_round_trip(*s, *c) == 0);
    return 0;
}

/* A closing server waits for its clients' FINs.  An INI anyone published
 * on an open broker (or a net-queue client that died: neither leaves a
 * will) no longer holds the close up for good: silent for three keep-alive
 * periods, it is taken for lost.  A libnq client, which left a will, is
 * still waited for however quiet. */
static int test_a_forged_ini_does_not_hold_a_closing_server(void)
{
    nq_comm *s, *c;
    CHECK(quick_server_and_client(&s, &c) == 0);
    /* The forged INI: a frame of 16 bytes, the id its topic names. */
    static const char hex[] = "0123456789abcdef0123456789abcdef";
    uint8_t frame[24];
    nqt_put_header(frame, 16);
    for (int i = 0; i < 16; i++) {
        sscanf(hex + 2 * i, "%2hhx", &frame[8 + i]);
    }
    char file[96], cmd[256];
    snprintf(file, sizeof(file), "%s/ini", broker.dir);
    FILE *f = fopen(file, "wb");
    CHECK(f != NULL && fwrite(frame, 1, sizeof(frame), f) == sizeof(frame));
    fclose(f);
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -t c2s/%s -f %s",
             (unsigned)broker.port, hex, file);
    CHECK(system(cmd) == 0);
    for (int i = 0; i < 500 && peer_count(s) != 2; i++) {
        usleep(10000);
    }
    CHECK(peer_count(s) == 2);
    closer k = {.c = s};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, close_it, &k) == 0);
    /* Three seconds of silence drop the stranger; the client stays. */
    for (int i = 0; i < 1000 && peer_count(s) != 1; i++) {
        usleep(10000);
    }
    CHECK(peer_count(s) == 1);
    usleep(300 * 1000);
    CHECK(!atomic_load(&k.done));
    CHECK_OK(nq_close(c));
    pthread_join(t, NULL);
    CHECK(atomic_load(&k.done));
    CHECK_RC(k.rv, NQ_ECONNRESET); /* a peer was lost while it closed */
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* INIs anyone can publish on an open broker, with no will and never a word
 * after, cost a bounded number of sessions: past 1024 such strangers the
 * one silent longest is dropped.  A will-less client that spoke (a
 * net-queue client) and a libnq client stay, and the exchange goes on. */
static int test_forged_inis_cost_a_bounded_number_of_sessions(void)
{
    enum { BOUND = 1024, FORGED = BOUND + 200 };
    nq_comm *s, *c;
    CHECK(quick_server_and_client(&s, &c) == 0);
    /* First a will-less client that speaks: its INI, then "hi". */
    enum { N = FORGED + 2 };
    static char *topics[N];
    static uint8_t frames[N][24];
    static const void *payloads[N];
    static size_t lens[N];
    nq_id speaker;
    for (size_t i = 0; i < N; i++) {
        nq_id id;
        CHECK_OK(nq_id_random(&id));
        if (i == 0) {
            speaker = id;
        } else if (i == 1) {
            id = speaker;
        }
        char hex[NQ_ID_STRLEN];
        id_hex(&id, hex);
        topics[i] = malloc(64);
        CHECK(topics[i] != NULL);
        snprintf(topics[i], 64, "c2s/%s", hex);
        if (i == 1) {
            nqt_put_header(frames[i], 2);
            memcpy(frames[i] + 8, "hi", 2);
            lens[i] = 10;
        } else {
            nqt_put_header(frames[i], 16);
            memcpy(frames[i] + 8, id.bytes, 16);
            lens[i] = 24;
        }
        payloads[i] = frames[i];
    }
    CHECK(nqt_broker_publish(&broker, N, topics, payloads, lens) == 0);
    for (size_t i = 0; i < N; i++) {
        free(topics[i]);
    }
    /* Every INI made a session (the client's, the speaker's, the forged
     * ones); the 200 beyond the bound ended. */
    CHECK(nqt_wait_stat(s, NQ_STAT_CONNECTIONS, 2 + FORGED) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_CONNECTIONS_LOST, FORGED - BOUND) == 0);
    usleep(200 * 1000);
    CHECK(nqt_stat(s, NQ_STAT_CONNECTIONS_LOST) == FORGED - BOUND);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 2 + BOUND);
    static nq_id listed[4 * BOUND];
    size_t n = 0;
    CHECK_OK(nq_peers(s, listed, 4 * BOUND, &n));
    int has_speaker = 0, has_client = 0;
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    for (size_t i = 0; i < n; i++) {
        has_speaker |= nq_id_equal(&listed[i], &speaker);
        has_client |= nq_id_equal(&listed[i], &cid);
    }
    CHECK(has_speaker && has_client);
    nq_msg *m = NULL;
    CHECK_OK(nq_get(s, WAIT_MS, &m));
    nq_id from;
    const void *data;
    size_t len;
    CHECK_OK(nq_msg_peer(m, &from));
    CHECK_OK(nq_msg_data(m, &data, &len));
    CHECK(nq_id_equal(&from, &speaker) && len == 2 && memcmp(data, "hi", 2) == 0);
    nq_msg_free(m);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    /* The strangers and the speaker left no will: silent, they are taken
     * for lost while the server closes. */
    CHECK_RC(nq_close(s), NQ_ECONNRESET);
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* Communicators of one process wake paho's reading thread for each other
 * while one connects (wake.c), with UNSUBSCRIBEs the broker answers
 * itself: the server and its clients, acknowledging or not, see nothing
 * of them. */
static int test_communicators_of_one_process_leave_no_trace_connecting(void)
{
    CHECK(start_broker(0) == 0);
    enum { CLIENTS = 4 };
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(s != NULL);
    nq_comm *c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        nq_opts *o = nqt_opts("127.0.0.1", broker.port, NULL);
        if (i % 2 == 0) { /* these read a topic of their own too */
            CHECK_OK(nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED));
        }
        c[i] = mqtt_peer(NQ_CLIENT, o);
        CHECK(c[i] != NULL);
    }
    for (int i = 0; i < CLIENTS; i++) {
        char text[8];
        snprintf(text, sizeof(text), "c%d", i);
        CHECK_OK(nqt_put_wait(c[i], text, strlen(text), NULL, 0));
    }
    int seen[CLIENTS] = {0};
    for (int i = 0; i < CLIENTS; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *d;
        size_t len;
        nq_msg_data(m, &d, &len);
        CHECK(len == 2 && ((const char *)d)[0] == 'c');
        int k = ((const char *)d)[1] - '0';
        CHECK(k >= 0 && k < CLIENTS && !seen[k]);
        seen[k] = 1;
        nq_msg_free(m);
    }
    /* One more communicator connects while all these listen. */
    nq_comm *late = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(late != NULL);
    CHECK(nqt_round_trip(s, late) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 200, &m), NQ_ETIMEDOUT);
    for (int i = 0; i < CLIENTS; i++) {
        CHECK_RC(nq_get(c[i], 50, &m), NQ_ETIMEDOUT);
        CHECK(nqt_stat(c[i], NQ_STAT_PROTOCOL_ERRORS) == 0);
    }
    nq_id ids[CLIENTS + 2];
    size_t n = 0;
    CHECK_OK(nq_peers(s, ids, CLIENTS + 2, &n));
    CHECK(n == CLIENTS + 1);
    CHECK(nqt_stat(s, NQ_STAT_PROTOCOL_ERRORS) == 0);
    CHECK(nqt_stat(s, NQ_STAT_CONNECTIONS) == CLIENTS + 1);
    CHECK(nqt_stat(s, NQ_STAT_CONNECTIONS_LOST) == 0);
    nq_destroy(late);
    for (int i = 0; i < CLIENTS; i++) {
        nq_destroy(c[i]);
    }
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* A client watches its server's will once the server's INI has come.  A
 * server lost after its INI left but before that watch reached the broker
 * is noticed all the same: the broker keeps a server's will (retained)
 * until the server connects again.  Here the client's way from the broker
 * holds back the server's INI until the server is gone.  Before, the will
 * went by before the client watched for it, and its get timed out. */
static int test_a_server_lost_before_its_will_is_watched_is_noticed(void)
{
    CHECK(start_broker(0) == 0);
    nqt_proxy ps, pc;
    CHECK(nqt_proxy_start(&ps, broker.port) == 0);
    CHECK(nqt_proxy_start(&pc, broker.port) == 0);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", ps.port, NULL));
    CHECK(s != NULL);
    nqt_proxy_freeze(&ps, NQT_PROXY_FROZEN); /* the client's INI waits at the server's door */
    nq_comm *c = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", pc.port, NULL));
    CHECK(c != NULL);
    nqt_proxy_freeze(&pc, NQT_PROXY_HELD_BACK); /* the server's INI will wait at the client's */
    nqt_proxy_freeze(&ps, NQT_PROXY_FLOWING);
    CHECK(nqt_wait_stat(s, NQ_STAT_PEERS, 1) == 0); /* it answered */
    usleep(300 * 1000);
    nqt_proxy_stop(&ps); /* the server's connection to the broker is gone */
    usleep(300 * 1000);
    nqt_proxy_freeze(&pc, NQT_PROXY_FLOWING);
    nq_msg *m = NULL;
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNRESET);
    printf("the lost server noticed after %lld ms\n", (long long)(nqt_now_ms() - t0));
    nq_destroy(c);
    nq_destroy(s);
    nqt_proxy_stop(&pc);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* Someone on an open broker puts a will, retained, where a live server's
 * goes.  The server hears it and removes it: a client that comes later is
 * served, not told at once that its server was lost. */
static int test_a_forged_will_of_a_live_server_does_not_last(void)
{
    CHECK(start_broker(0) == 0);
    nq_id sid;
    nq_id_random(&sid);
    nq_comm *s = mqtt_peer(NQ_SERVER, nqt_opts("127.0.0.1", broker.port, &sid));
    CHECK(s != NULL);
    char hex[33], cmd[256], look[256];
    id_hex(&sid, hex);
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -t nq/lost/%s -q 1 -r -m lost",
             (unsigned)broker.port, hex);
    CHECK(system(cmd) == 0);
    /* A subscriber gets a retained message at once, or nothing for 1 s. */
    snprintf(look, sizeof(look),
             "mosquitto_sub -h 127.0.0.1 -p %u -t nq/lost/%s -C 1 -W 1 >/dev/null 2>&1",
             (unsigned)broker.port, hex);
    int gone = 0;
    for (int i = 0; i < 5 && !gone; i++) {
        gone = system(look) != 0;
    }
    CHECK(gone);
    nq_comm *c = mqtt_peer(NQ_CLIENT, nqt_opts("127.0.0.1", broker.port, NULL));
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_slices_carry_a_large_message),
    TEST(test_every_qos_level_works),
    TEST(test_prefixes_let_servers_share_a_broker),
    TEST(test_communicators_of_one_process_leave_no_trace_connecting),
    TEST(test_missing_broker_fails_at_open),
    TEST(test_broker_killed_mid_exchange_fails_cleanly),
    TEST(test_close_sends_a_clean_disconnect),
    TEST(test_tls_to_the_broker),
    TEST(test_garbage_on_a_client_topic_hurts_only_that_topic),
    TEST(test_a_forged_ini_does_not_hold_a_closing_server),
    TEST(test_forged_inis_cost_a_bounded_number_of_sessions),
    TEST(test_broker_restart_is_survived_with_reconnection),
    TEST(test_broker_killed_mid_stream_loses_nothing_acknowledged),
    TEST(test_a_server_lost_before_its_will_is_watched_is_noticed),
    TEST(test_a_forged_will_of_a_live_server_does_not_last),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
