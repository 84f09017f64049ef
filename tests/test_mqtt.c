/*
 * MQTT-only behaviour: each test starts its own mosquitto.  The contract
 * cases shared with TCP live in test_comm.c (run with "mqtt").
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"
#include "nq/nq.h"

#define WAIT_MS 10000

static nqt_broker broker;
static char tls_dir[64];

static nq_opts *opts_on(uint16_t port)
{
    nq_opts *o = NULL;
    if (nq_opts_new(&o) != NQ_OK) {
        abort();
    }
    nq_opts_set_netloc(o, "127.0.0.1", port);
    return o;
}

static nq_comm *open_mqtt(nq_purpose purpose, nq_opts *o)
{
    nq_comm *c = NULL;
    int rv = nq_open(NQ_MQTT, purpose, o, &c);
    nq_opts_free(o);
    if (rv != NQ_OK) {
        fprintf(stderr, "nq_open: %s\n", nq_strerror(rv));
        return NULL;
    }
    return c;
}

static int put_wait(nq_comm *c, const void *data, size_t len, const nq_id *peers, size_t npeers)
{
    nq_chunk ch = {data, len};
    nq_future *f = NULL;
    int rv = nq_put(c, &ch, 1, peers, npeers, &f);
    if (rv != NQ_OK) {
        return rv;
    }
    rv = nq_future_wait(f, WAIT_MS);
    nq_future_free(f);
    return rv;
}

static int expect_msg(nq_comm *c, const void *data, size_t len)
{
    nq_msg *m = NULL;
    CHECK_OK(nq_get(c, WAIT_MS, &m));
    const void *d;
    size_t n;
    nq_msg_data(m, &d, &n);
    CHECK(n == len);
    CHECK(len == 0 || memcmp(d, data, len) == 0);
    nq_msg_free(m);
    return 0;
}

static int round_trip(nq_comm *server, nq_comm *client)
{
    nq_id cid;
    nq_comm_id(client, &cid);
    CHECK_OK(put_wait(client, "ping", 4, NULL, 0));
    CHECK(expect_msg(server, "ping", 4) == 0);
    CHECK_OK(put_wait(server, "pong", 4, &cid, 1));
    CHECK(expect_msg(client, "pong", 4) == 0);
    return 0;
}

static int start_broker(int tls)
{
    char cert[128] = "", key[128] = "";
    if (tls) {
        strcpy(tls_dir, "/tmp/nqmqtlsXXXXXX");
        if (mkdtemp(tls_dir) == NULL) {
            return 1;
        }
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s/key.pem -out %s/cert.pem -days 2 -subj /CN=localhost "
                 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null && "
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-keyout %s/other.key -out %s/other.pem -days 2 -subj /CN=localhost "
                 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
                 tls_dir, tls_dir, tls_dir, tls_dir);
        if (system(cmd) != 0) {
            return 1;
        }
        snprintf(cert, sizeof(cert), "%s/cert.pem", tls_dir);
        snprintf(key, sizeof(key), "%s/key.pem", tls_dir);
    }
    return nqt_broker_start(&broker, tls ? cert : NULL, tls ? key : NULL);
}

static int test_slices_carry_a_large_message(void)
{
    CHECK(start_broker(0) == 0);
    nq_opts *o = opts_on(broker.port);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_PROTOCOL_SIZE, 64 * 1024));
    nq_comm *s = open_mqtt(NQ_SERVER, o);
    o = opts_on(broker.port);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_PROTOCOL_SIZE, 64 * 1024));
    nq_comm *c = open_mqtt(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    /* 10 MiB in 64 KiB publishes: 161 slices, the last one partial. */
    size_t len = 10 * 1024 * 1024 + 3;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 7 + (i >> 16));
    }
    CHECK_OK(put_wait(c, buf, len, NULL, 0));
    CHECK(expect_msg(s, buf, len) == 0);
    nq_id cid;
    nq_comm_id(c, &cid);
    CHECK_OK(put_wait(s, buf, len, &cid, 1));
    CHECK(expect_msg(c, buf, len) == 0);
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
        nq_opts *o = opts_on(broker.port);
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_QOS, qos));
        nq_comm *s = open_mqtt(NQ_SERVER, o);
        o = opts_on(broker.port);
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_QOS, qos));
        nq_comm *c = open_mqtt(NQ_CLIENT, o);
        CHECK(s != NULL && c != NULL);
        CHECK(round_trip(s, c) == 0);
        CHECK_OK(nq_close(c));
        CHECK_OK(nq_close(s));
        nq_destroy(c);
        nq_destroy(s);
    }
    nq_opts *o = opts_on(broker.port);
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
        nq_opts *o = opts_on(broker.port);
        CHECK_OK(nq_opts_set_mqtt_prefix(o, prefix[i]));
        s[i] = open_mqtt(NQ_SERVER, o);
        CHECK(s[i] != NULL);
    }
    for (int i = 0; i < 2; i++) {
        nq_opts *o = opts_on(broker.port);
        CHECK_OK(nq_opts_set_mqtt_prefix(o, prefix[i]));
        c[i] = open_mqtt(NQ_CLIENT, o);
        CHECK(c[i] != NULL);
        CHECK_OK(put_wait(c[i], prefix[i], strlen(prefix[i]), NULL, 0));
    }
    for (int i = 0; i < 2; i++) {
        CHECK(expect_msg(s[i], prefix[i], strlen(prefix[i])) == 0);
        nq_msg *m = NULL;
        CHECK_RC(nq_get(s[i], 200, &m), NQ_ETIMEDOUT);
        /* A broadcast reaches only this server's clients. */
        CHECK_OK(put_wait(s[i], "mine", 4, NULL, 0));
        CHECK(expect_msg(c[i], "mine", 4) == 0);
        CHECK_RC(nq_get(c[i], 200, &m), NQ_ETIMEDOUT);
    }
    nq_opts *o = opts_on(broker.port);
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
    nq_opts *o = opts_on(port);
    nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 2000);
    CHECK_RC(nq_open(NQ_MQTT, NQ_CLIENT, o, &c), NQ_ECONNREFUSED);
    CHECK_RC(nq_open(NQ_MQTT, NQ_SERVER, o, &c), NQ_ECONNREFUSED);
    nq_opts_free(o);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int test_broker_killed_mid_exchange_fails_cleanly(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = open_mqtt(NQ_SERVER, opts_on(broker.port));
    nq_comm *c = open_mqtt(NQ_CLIENT, opts_on(broker.port));
    CHECK(s != NULL && c != NULL);
    CHECK(round_trip(s, c) == 0);
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
    int64_t t0 = now_ms();
    CHECK_RC(nq_close(c), NQ_ECONNRESET);
    CHECK_OK(nq_close(s));
    CHECK(now_ms() - t0 < 5000);
    nq_destroy(c);
    nq_destroy(s);
    free(big);
    return 0;
}

static int test_close_sends_a_clean_disconnect(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = open_mqtt(NQ_SERVER, opts_on(broker.port));
    nq_id cid;
    nq_id_random(&cid);
    nq_opts *o = opts_on(broker.port);
    nq_opts_set_id(o, &cid);
    nq_comm *c = open_mqtt(NQ_CLIENT, o);
    CHECK(round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    /* mosquitto logs "Client <id> disconnected." only for a DISCONNECT
     * packet; a dropped connection reads differently. */
    char hex[33];
    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", cid.bytes[i]);
    }
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
    nq_opts *o = opts_on(broker.tls_port);
    nq_opts_set_tls(o, NULL, cert);
    nq_comm *s = open_mqtt(NQ_SERVER, o);
    o = opts_on(broker.tls_port);
    nq_opts_set_tls(o, NULL, cert);
    nq_comm *c = open_mqtt(NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    CHECK(round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    /* A certificate the client does not trust fails at open, clearly. */
    snprintf(cert, sizeof(cert), "%s/other.pem", tls_dir);
    o = opts_on(broker.tls_port);
    nq_opts_set_tls(o, NULL, cert);
    nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 3000);
    nq_comm *bad = NULL;
    CHECK_RC(nq_open(NQ_MQTT, NQ_CLIENT, o, &bad), NQ_ETLS);
    nq_opts_free(o);
    nqt_broker_stop(&broker, SIGTERM);
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf %s", tls_dir);
    CHECK(system(rm) == 0);
    return 0;
}

static int test_garbage_on_a_client_topic_hurts_only_that_topic(void)
{
    CHECK(start_broker(0) == 0);
    nq_comm *s = open_mqtt(NQ_SERVER, opts_on(broker.port));
    nq_comm *good = open_mqtt(NQ_CLIENT, opts_on(broker.port));
    CHECK(round_trip(s, good) == 0);
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
    CHECK(round_trip(s, good) == 0);
    nq_destroy(good);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_slices_carry_a_large_message),
    TEST(test_every_qos_level_works),
    TEST(test_prefixes_let_servers_share_a_broker),
    TEST(test_missing_broker_fails_at_open),
    TEST(test_broker_killed_mid_exchange_fails_cleanly),
    TEST(test_close_sends_a_clean_disconnect),
    TEST(test_tls_to_the_broker),
    TEST(test_garbage_on_a_client_topic_hurts_only_that_topic),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
