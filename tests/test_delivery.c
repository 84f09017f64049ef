/*
 * Acknowledged delivery (NQ_OPT_DELIVERY = NQ_DELIVERY_ACKED), over the
 * protocol named on the command line: tcp, tls, mqtt or grpc.  Faults
 * come from the tests' proxy (tests/proxy.c): connection resets, and a
 * freeze that lets no byte through while both kernels keep answering.
 * Over MQTT the proxy stands between the client and the broker.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "harness.h"
#include "peers.h"
#include "proxy.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nqt_env g_env;
#define g_proto (g_env.proto)
static char g_prefix[32];

/* Where a proxy in front of the server s forwards to: over MQTT the
 * broker, which the client reaches through it. */
static uint16_t server_port(nq_comm *s)
{
    return g_proto == NQ_MQTT ? g_env.broker.port : nqt_port(s);
}

/* Options for 127.0.0.1:port; over MQTT a client given a port other than
 * 0 reaches the broker there (through a proxy), and pairs that run at once
 * need topic prefixes of their own. */
static nq_opts *options_in(const char *prefix, nq_purpose purpose, uint16_t port, int delivery)
{
    nq_opts *o = nqt_env_opts(&g_env, purpose, port, prefix);
    if (g_proto == NQ_MQTT && purpose == NQ_CLIENT && port != 0) {
        nq_opts_set_netloc(o, "127.0.0.1", port);
    }
    if (nq_opts_set_int(o, NQ_OPT_DELIVERY, delivery) != NQ_OK ||
        (purpose == NQ_SERVER && nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 2000) != NQ_OK)) {
        abort();
    }
    return o;
}

static nq_opts *options(nq_purpose purpose, uint16_t port, int delivery)
{
    return options_in(g_prefix, purpose, port, delivery);
}

static nq_comm *server_with(nq_opts *o)
{
    return nqt_open(g_proto, NQ_SERVER, o);
}

/* A client that reconnects at once and then every 200 ms at most. */
static nq_opts *reconnecting(nq_opts *o, nqt_recorder *r)
{
    if (nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, 20) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 200) != NQ_OK ||
        (r != NULL && nq_opts_set_events(o, nqt_record, r) != NQ_OK)) {
        abort();
    }
    return o;
}

static int put(nq_comm *c, const void *data, size_t len, const nq_id *to, nq_future **f)
{
    nq_chunk chunk = {.data = data, .len = len};
    return nq_put(c, &chunk, 1, to, to != NULL ? 1 : 0, f);
}

static int settle(nq_future *f, int64_t ms)
{
    int rv = nq_future_wait(f, ms);
    int result = rv == NQ_OK ? nq_future_result(f) : rv;
    return result;
}

/* ---- agreement ---------------------------------------------------------------------- */

/* Messages both ways with futures; the two libnq peers agree over every
 * transport (NQ_STAT_ACKED counts it). */
static int test_agreed_where_the_transport_can_carry_it(void)
{
    nq_comm *s = server_with(options(NQ_SERVER, 0, NQ_DELIVERY_ACKED));
    CHECK(s != NULL);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, server_port(s), NQ_DELIVERY_ACKED));
    CHECK(c != NULL);
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    enum { N = 100 };
    nq_future *up[N], *down[N];
    char text[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof(text[i]), "m%d", i);
        CHECK_OK(put(c, text[i], strlen(text[i]), NULL, &up[i]));
    }
    for (int i = 0; i < N; i++) {
        CHECK(nqt_expect(s, text[i], strlen(text[i]), &cid) == 0);
        CHECK_OK(put(s, text[i], strlen(text[i]), &cid, &down[i]));
    }
    for (int i = 0; i < N; i++) {
        CHECK(nqt_expect(c, text[i], strlen(text[i]), NULL) == 0);
        CHECK_RC(settle(up[i], WAIT_MS), NQ_OK);
        nq_future_free(up[i]);
    }
    CHECK(nqt_stat(c, NQ_STAT_ACKED) == 1);
    CHECK(nqt_stat(s, NQ_STAT_ACKED) == 1);
    CHECK_OK(nq_close(c));
    /* The client's last acknowledgement completes what the server sent. */
    for (int i = 0; i < N; i++) {
        CHECK_RC(settle(down[i], WAIT_MS), NQ_OK);
        nq_future_free(down[i]);
    }
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* Either side alone asking changes nothing: no agreement, messages flow. */
static int test_falls_back_when_one_side_does_not_ask(void)
{
    for (int asker = 0; asker < 2; asker++) {
        nq_comm *s = server_with(
            options(NQ_SERVER, 0, asker == 0 ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN));
        CHECK(s != NULL);
        nq_comm *c = nqt_open(
            g_proto, NQ_CLIENT,
            options(NQ_CLIENT, server_port(s), asker == 1 ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN));
        CHECK(c != NULL);
        CHECK(nqt_round_trip(s, c) == 0);
        CHECK(nqt_round_trip(s, c) == 0);
        CHECK(nqt_stat(c, NQ_STAT_ACKED) == 0);
        CHECK(nqt_stat(s, NQ_STAT_ACKED) == 0);
        CHECK_OK(nq_close(c));
        CHECK_OK(nq_close(s));
        nq_destroy(c);
        nq_destroy(s);
    }
    return 0;
}

static int test_server_with_workers_is_refused(void)
{
    nq_opts *o = options(NQ_SERVER, 0, NQ_DELIVERY_ACKED);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_WORKERS, 2));
    nq_comm *s = NULL;
    CHECK_RC(nq_open(NQ_TCP, NQ_SERVER, o, &s), NQ_EINVAL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_WRITTEN));
    CHECK_OK(nq_open(NQ_TCP, NQ_SERVER, o, &s));
    nq_destroy(s);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_DELIVERY, 2), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_RESUME_MS, -1), NQ_EINVAL);
    nq_opts_free(o);
    return 0;
}

/* ---- what a future means ----------------------------------------------------------- */

/* MQTT: the broker taking a publish is not the server having it.  With the
 * server's path to the broker frozen, a put is written (the broker
 * acknowledged it) but not received. */
static int test_future_waits_for_the_server_not_the_broker(void)
{
    for (int acked = 0; acked < 2; acked++) {
        int mode = acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN;
        nqt_proxy px;
        CHECK(nqt_proxy_start(&px, g_env.broker.port) == 0);
        nq_opts *so = options(NQ_SERVER, 0, mode);
        CHECK_OK(nq_opts_set_netloc(so, "127.0.0.1", px.port));
        nq_comm *s = server_with(so);
        CHECK(s != NULL);
        nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, 0, mode));
        CHECK(c != NULL);
        CHECK(nqt_round_trip(s, c) == 0);
        nqt_proxy_freeze(&px, 1);
        nq_future *f;
        CHECK_OK(put(c, "second", 6, NULL, &f));
        if (acked) {
            CHECK_RC(nq_future_wait(f, 500), NQ_ETIMEDOUT);
        } else {
            CHECK_RC(settle(f, WAIT_MS), NQ_OK);
        }
        nqt_proxy_freeze(&px, 0);
        CHECK(nqt_expect(s, "second", 6, NULL) == 0);
        CHECK_RC(settle(f, WAIT_MS), NQ_OK);
        nq_future_free(f);
        CHECK_OK(nq_close(c));
        CHECK_OK(nq_close(s));
        nqt_proxy_stop(&px);
        nq_destroy(c);
        nq_destroy(s);
    }
    return 0;
}

/* A server holding one undelivered message stops reading: a second message
 * is written (its future completes at once without acknowledgements) but
 * not received (with them, its future waits until get makes room). */
static int test_future_completes_when_the_peer_has_it(void)
{
    /* Over MQTT the broker's acknowledgement is not the server's either;
     * and there a full queue withholds the acknowledgements. */
    if (g_proto == NQ_MQTT) {
        CHECK(test_future_waits_for_the_server_not_the_broker() == 0);
    }
    /* (Without them, nothing over MQTT holds a sender back.) */
    for (int acked = g_proto == NQ_MQTT; acked < 2; acked++) {
        int mode = acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN;
        nq_opts *so = options(NQ_SERVER, 0, mode);
        CHECK_OK(nq_opts_set_int(so, NQ_OPT_QUEUE_SIZE, 1));
        nq_comm *s = server_with(so);
        CHECK(s != NULL);
        nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, server_port(s), mode));
        CHECK(c != NULL);
        nq_future *f1, *f2;
        CHECK_OK(put(c, "first", 5, NULL, &f1));
        CHECK_RC(settle(f1, WAIT_MS), NQ_OK);
        CHECK(nqt_wait_stat(s, NQ_STAT_READ_PAUSES, 1) == 0);
        CHECK_OK(put(c, "second", 6, NULL, &f2));
        if (acked) {
            CHECK_RC(nq_future_wait(f2, 500), NQ_ETIMEDOUT);
        } else {
            CHECK_RC(settle(f2, WAIT_MS), NQ_OK);
        }
        CHECK(nqt_expect(s, "first", 5, NULL) == 0);
        CHECK(nqt_expect(s, "second", 6, NULL) == 0);
        CHECK_RC(settle(f2, WAIT_MS), NQ_OK);
        nq_future_free(f1);
        nq_future_free(f2);
        CHECK_OK(nq_close(c));
        CHECK_OK(nq_close(s));
        nq_destroy(c);
        nq_destroy(s);
    }
    return 0;
}

/* A server that does not read holds an acknowledging sender back on every
 * transport, MQTT included (a broker takes every publish, so there the
 * acknowledgements do it): what it receives stays within its queue limit
 * plus the sender's window of unacknowledged data, and nothing is lost. */
static int test_a_reader_that_stops_holds_the_sender_back(void)
{
    enum { LIMIT = 16, SIZE = 64 * 1024, COUNT = 1000 };
    nq_opts *so = options(NQ_SERVER, 0, NQ_DELIVERY_ACKED);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_QUEUE_SIZE, LIMIT));
    nq_comm *s = server_with(so);
    CHECK(s != NULL);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, server_port(s), NQ_DELIVERY_ACKED));
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    static uint8_t buf[SIZE];
    for (uint32_t i = 0; i < COUNT; i++) {
        memcpy(buf, &i, sizeof(i));
        CHECK_OK(put(c, buf, SIZE, NULL, NULL));
    }
    /* Until the server stops taking more. */
    int64_t got = -1, now = nqt_stat(s, NQ_STAT_MSGS_IN);
    for (int i = 0; i < 100 && (now != got || now < LIMIT); i++) {
        got = now;
        usleep(200 * 1000);
        now = nqt_stat(s, NQ_STAT_MSGS_IN);
    }
    int64_t most = 1 + LIMIT + (int64_t)((20 << 20) / SIZE); /* the ping, the queue, ~20 MiB */
    if (now > most) {
        fprintf(stderr, "the server took %lld messages while not reading (at most %lld)\n",
                (long long)now, (long long)most);
    }
    CHECK(now <= most);
    CHECK(nqt_stat(s, NQ_STAT_READ_PAUSES) >= 1);
    for (uint32_t i = 0; i < COUNT; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *d;
        size_t len;
        nq_msg_data(m, &d, &len);
        uint32_t v;
        memcpy(&v, d, sizeof(v));
        CHECK(len == SIZE && v == i);
        nq_msg_free(m);
    }
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- across connections ------------------------------------------------------------ */

enum { FLOOD = 20000, WINDOW = 256, RESETS = 8 };

typedef struct flood {
    nq_comm *server;
    nq_comm *client;
    nq_id client_id;
    atomic_int server_got;
    atomic_int client_got;
    atomic_int errors;
    atomic_int put_failures;
} flood;

static uint32_t read_index(const nq_msg *m)
{
    const void *data;
    size_t len;
    uint32_t v = UINT32_MAX;
    if (nq_msg_data(m, &data, &len) == NQ_OK && len == sizeof(v)) {
        memcpy(&v, data, sizeof(v));
    }
    return v;
}

/* One side's reader: takes FLOOD messages, checks they come in order, and
 * (the server) echoes each to the client. */
typedef struct reader {
    flood *f;
    nq_comm *comm;
    atomic_int *got;
    const nq_id *echo_to; /* NULL: no echo */
    const char *who;
} reader;

static void *read_in_order(void *arg)
{
    reader *r = arg;
    flood *f = r->f;
    int64_t deadline = nqt_now_ms() + 90000;
    while (atomic_load(r->got) < FLOOD && nqt_now_ms() < deadline) {
        nq_msg *m = NULL;
        if (nq_get(r->comm, 100, &m) != NQ_OK) {
            continue;
        }
        uint32_t v = read_index(m);
        if (v != (uint32_t)atomic_load(r->got)) {
            fprintf(stderr, "%s got %u, expected %d\n", r->who, v, atomic_load(r->got));
            atomic_fetch_add(&f->errors, 1);
        }
        atomic_fetch_add(r->got, 1);
        if (r->echo_to != NULL && put(r->comm, &v, sizeof(v), r->echo_to, NULL) != NQ_OK) {
            atomic_fetch_add(&f->put_failures, 1);
        }
        nq_msg_free(m);
    }
    return NULL;
}

/* The client puts with a window of futures, every one of which must
 * succeed. */
static void *flood_writer(void *arg)
{
    flood *f = arg;
    static nq_future *window[WINDOW];
    static uint32_t values[FLOOD]; /* a zero-copy put's bytes outlive the call */
    for (uint32_t i = 0; i < FLOOD; i++) {
        values[i] = i;
        nq_future **slot = &window[i % WINDOW];
        if (*slot != NULL) {
            if (settle(*slot, 60000) != NQ_OK) {
                atomic_fetch_add(&f->put_failures, 1);
            }
            nq_future_free(*slot);
        }
        if (put(f->client, &values[i], sizeof(values[i]), NULL, slot) != NQ_OK) {
            atomic_fetch_add(&f->put_failures, 1);
            *slot = NULL;
        }
    }
    for (int k = 0; k < WINDOW; k++) {
        if (window[k] != NULL) {
            if (settle(window[k], 60000) != NQ_OK) {
                atomic_fetch_add(&f->put_failures, 1);
            }
            nq_future_free(window[k]);
            window[k] = NULL;
        }
    }
    return NULL;
}

/* 20,000 messages each way while the proxy resets the connection eight
 * times: every one arrives once, in order, and every future succeeds. */
static int test_exactly_once_across_resets(void)
{
    nq_comm *s = server_with(options(NQ_SERVER, 0, NQ_DELIVERY_ACKED));
    CHECK(s != NULL);
    nqt_proxy px;
    CHECK(nqt_proxy_start(&px, server_port(s)) == 0);
    flood f = {.server = s};
    f.client = nqt_open(g_proto, NQ_CLIENT,
                        reconnecting(options(NQ_CLIENT, px.port, NQ_DELIVERY_ACKED), NULL));
    CHECK(f.client != NULL);
    CHECK_OK(nq_comm_id(f.client, &f.client_id));
    reader server = {&f, s, &f.server_got, &f.client_id, "server"};
    reader client = {&f, f.client, &f.client_got, NULL, "client (echoes)"};
    pthread_t t[3];
    pthread_create(&t[0], NULL, read_in_order, &server);
    pthread_create(&t[1], NULL, read_in_order, &client);
    pthread_create(&t[2], NULL, flood_writer, &f);
    int resets = 0;
    int64_t deadline = nqt_now_ms() + 60000;
    while (resets < RESETS && nqt_now_ms() < deadline) {
        /* Reset while messages flow: after each tenth has arrived. */
        if (atomic_load(&f.server_got) >= (resets + 1) * (FLOOD / (RESETS + 2))) {
            CHECK(nqt_proxy_reset(&px) == 0);
            resets++;
        }
        usleep(1000);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
    }
    fprintf(stderr, "resets %d, reconnects %lld, resumed %lld, server got %d, client got %d\n",
            resets, (long long)nqt_stat(f.client, NQ_STAT_RECONNECTS),
            (long long)nqt_stat(s, NQ_STAT_RESUMED), atomic_load(&f.server_got),
            atomic_load(&f.client_got));
    CHECK(resets == RESETS);
    CHECK(atomic_load(&f.errors) == 0);
    CHECK(atomic_load(&f.put_failures) == 0);
    CHECK(atomic_load(&f.server_got) == FLOOD);
    CHECK(atomic_load(&f.client_got) == FLOOD);
    /* A reset may find the client between connections, or end one before
     * its INI reached the server: not every reset is a resumption. */
    CHECK(nqt_stat(f.client, NQ_STAT_RECONNECTS) >= RESETS / 2);
    CHECK(nqt_stat(s, NQ_STAT_RESUMED) >= RESETS / 2);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 200, &m), NQ_ETIMEDOUT); /* no duplicate behind the last */
    CHECK_RC(nq_get(f.client, 0, &m), NQ_ETIMEDOUT);
    CHECK_OK(nq_close(f.client));
    CHECK_OK(nq_close(s));
    nqt_proxy_stop(&px);
    nq_destroy(f.client);
    nq_destroy(s);
    return 0;
}

/* Large zero-copy puts (lent to grpc as slices over the caller's memory)
 * through resets: frames kept for resending go again whole from the same
 * memory, each arrives once, in order and intact, and every future
 * succeeds. */
static int test_large_messages_go_again_whole_across_resets(void)
{
    enum { N = 24, SIZE = 256 * 1024, CUTS = 3 };
    nq_comm *s = server_with(options(NQ_SERVER, 0, NQ_DELIVERY_ACKED));
    CHECK(s != NULL);
    nqt_proxy px;
    CHECK(nqt_proxy_start(&px, server_port(s)) == 0);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT,
                          reconnecting(options(NQ_CLIENT, px.port, NQ_DELIVERY_ACKED), NULL));
    CHECK(c != NULL);
    uint8_t *buf[N];
    nq_future *f[N];
    for (int i = 0; i < N; i++) {
        buf[i] = malloc(SIZE);
        CHECK(buf[i] != NULL);
        memset(buf[i], 'a' + i, SIZE);
        CHECK_OK(put(c, buf[i], SIZE, NULL, &f[i]));
    }
    int cuts = 0;
    for (int got = 0; got < N; got++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *data;
        size_t len;
        CHECK_OK(nq_msg_data(m, &data, &len));
        CHECK(len == SIZE);
        const uint8_t *p = data;
        CHECK(p[0] == 'a' + got && p[SIZE / 2] == 'a' + got && p[SIZE - 1] == 'a' + got);
        nq_msg_free(m);
        if (cuts < CUTS && got == (cuts + 1) * N / (CUTS + 2)) {
            CHECK(nqt_proxy_reset(&px) == 0);
            cuts++;
        }
    }
    for (int i = 0; i < N; i++) {
        CHECK_RC(settle(f[i], WAIT_MS), NQ_OK);
        nq_future_free(f[i]);
        free(buf[i]);
    }
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 200, &m), NQ_ETIMEDOUT);
    CHECK(nqt_stat(c, NQ_STAT_RECONNECTS) >= 1);
    CHECK(nqt_stat(s, NQ_STAT_RESUMED) >= 1);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nqt_proxy_stop(&px);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A new server process on the same port: what the old one may or may not
 * have had fails with NQ_ECONNRESET, what comes after goes to the new one. */
static int test_new_server_fails_what_it_may_not_have_had(void)
{
    nq_opts *so = options(NQ_SERVER, 0, NQ_DELIVERY_ACKED);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_CLOSE_TIMEOUT_MS, 100));
    nq_comm *s1 = server_with(so);
    CHECK(s1 != NULL);
    uint16_t port = nqt_port(s1);
    nqt_proxy px;
    CHECK(nqt_proxy_start(&px, server_port(s1)) == 0);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT,
                          reconnecting(options(NQ_CLIENT, px.port, NQ_DELIVERY_ACKED), NULL));
    CHECK(c != NULL);
    nq_future *f1, *f2, *f3;
    CHECK_OK(put(c, "one", 3, NULL, &f1));
    CHECK_RC(settle(f1, WAIT_MS), NQ_OK);
    nqt_proxy_freeze(&px, 1);
    CHECK_OK(put(c, "two", 3, NULL, &f2)); /* written, held by the proxy */
    CHECK_RC(nq_future_wait(f2, 300), NQ_ETIMEDOUT);
    CHECK_RC(nq_close(s1), NQ_ETIMEDOUT);
    nq_destroy(s1);
    nq_comm *s2 = server_with(options(NQ_SERVER, port, NQ_DELIVERY_ACKED));
    CHECK(s2 != NULL);
    nqt_proxy_freeze(&px, 0);
    CHECK_RC(settle(f2, WAIT_MS), NQ_ECONNRESET);
    CHECK_OK(put(c, "three", 5, NULL, &f3));
    CHECK_RC(settle(f3, WAIT_MS), NQ_OK);
    CHECK(nqt_expect(s2, "three", 5, NULL) == 0);
    nq_future_free(f1);
    nq_future_free(f2);
    nq_future_free(f3);
    CHECK(nqt_stat(s2, NQ_STAT_MSGS_IN) == 1); /* "two" never reached it */
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s2));
    nqt_proxy_stop(&px);
    nq_destroy(c);
    nq_destroy(s2);
    return 0;
}

/* Waits (at most ms) for a CONNECTED event after the first one: the
 * client is back.  The MQTT library's own reconnection backs off while the
 * path is frozen, by up to seconds. */
static int connected_again(nqt_recorder *r, int64_t ms)
{
    for (int64_t end = nqt_now_ms() + ms; nqt_now_ms() < end; usleep(50 * 1000)) {
        pthread_mutex_lock(&r->mu);
        int back = 0;
        for (int i = 1; i < r->n; i++) {
            back |= r->events[i].type == NQ_EVENT_CONNECTED;
        }
        pthread_mutex_unlock(&r->mu);
        if (back) {
            return 0;
        }
    }
    fprintf(stderr, "the client did not connect again within %lld ms\n", (long long)ms);
    return -1;
}

/* The proxy freezes: no byte passes, yet both kernels go on answering.
 * The heartbeat between the two libnq peers notices within about 1.5 x the
 * keep-alive setting, and the client reconnects when the path comes back;
 * with acknowledged delivery the server's session goes on.  Over MQTT
 * without it, the broker's keep-alive notices instead. */
/* A server and a client with keep-alive at keepalive_ms (0: off), the
 * server's watch of its input (NQ_OPT_HANDSHAKE_TIMEOUT_MS) at watch_ms (0:
 * the default), the client through a proxy, its events recorded, one round
 * trip made. */
typedef struct frozen_rig {
    nq_comm *s, *c;
    nqt_proxy px;
    nqt_recorder rc;
} frozen_rig;

static int frozen_rig_open_with(frozen_rig *r, int mode, int reconnect, int64_t keepalive_ms,
                                int64_t watch_ms)
{
    nq_opts *so = options(NQ_SERVER, 0, mode);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_KEEPALIVE_MS, keepalive_ms));
    if (watch_ms > 0) {
        CHECK_OK(nq_opts_set_int(so, NQ_OPT_HANDSHAKE_TIMEOUT_MS, watch_ms));
    }
    r->s = server_with(so);
    CHECK(r->s != NULL);
    CHECK(nqt_proxy_start(&r->px, server_port(r->s)) == 0);
    nqt_recorder_init(&r->rc);
    nq_opts *co = options(NQ_CLIENT, r->px.port, mode);
    CHECK_OK(nq_opts_set_int(co, NQ_OPT_KEEPALIVE_MS, keepalive_ms));
    if (reconnect) {
        reconnecting(co, &r->rc);
    } else {
        CHECK_OK(nq_opts_set_events(co, nqt_record, &r->rc));
    }
    r->c = nqt_open(g_proto, NQ_CLIENT, co);
    CHECK(r->c != NULL);
    return nqt_round_trip(r->s, r->c);
}

/* Lets everything through again, closes both cleanly and frees the rig. */
static int frozen_rig_close(frozen_rig *r)
{
    nqt_proxy_freeze(&r->px, NQT_PROXY_FLOWING);
    CHECK_OK(nq_close(r->c));
    CHECK_OK(nq_close(r->s));
    nqt_proxy_stop(&r->px);
    nq_destroy(r->c);
    nq_destroy(r->s);
    return 0;
}

/* ... with keep-alive at 1 s and the default watch. */
static int frozen_rig_open(frozen_rig *r, int mode, int reconnect)
{
    return frozen_rig_open_with(r, mode, reconnect, 1000, 0);
}

static int test_heartbeat_notices_a_frozen_path(void)
{
    for (int acked = 1; acked >= 0; acked--) {
        int mode = acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN;
        frozen_rig r;
        CHECK(frozen_rig_open(&r, mode, 1) == 0);
        nq_comm *s = r.s, *c = r.c;
        CHECK(nqt_wait_events(&r.rc, 1) == 0);
        nqt_proxy_freeze(&r.px, 1);
        int64_t t0 = nqt_now_ms();
        if (!acked && g_proto == NQ_MQTT) {
            /* MQTT's own keep-alive watches the path to the broker: about
             * twice its 3000 ms in effect (the least over MQTT). */
            CHECK(nqt_wait_events(&r.rc, 2) == 0);
            CHECK(nqt_now_ms() - t0 < 8000);
            nqt_proxy_freeze(&r.px, 0);
            CHECK(connected_again(&r.rc, 30000) == 0);
            CHECK(nqt_round_trip(s, c) == 0);
        } else {
            CHECK(nqt_wait_events(&r.rc, 2) == 0);
            int64_t took = nqt_now_ms() - t0;
            fprintf(stderr, "silence noticed after %lld ms (%s)\n", (long long)took,
                    acked ? "acked" : "written");
            CHECK(nqt_is_event(&r.rc, 1, NQ_EVENT_DISCONNECTED, NULL, NQ_ETIMEDOUT) == 0);
            CHECK(took >= 1000 && took < 5000);
            nqt_proxy_freeze(&r.px, 0);
            CHECK(connected_again(&r.rc, 30000) == 0);
            CHECK(nqt_round_trip(s, c) == 0);
            if (acked) {
                CHECK(nqt_stat(s, NQ_STAT_RESUMED) >= 1);
            }
            CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
        }
        CHECK(frozen_rig_close(&r) == 0);
    }
    return 0;
}

/* A client that does not reconnect, cut off by a frozen path: its event
 * says the heartbeat ended it (NQ_ETIMEDOUT), but get, its futures and
 * close, where NQ_ETIMEDOUT means that a wait ended, say the connection was
 * lost (NQ_ECONNRESET), so a loop that waits again on NQ_ETIMEDOUT ends. */
static int test_a_client_lost_to_silence_is_told_lost(void)
{
    for (int acked = 1; acked >= 0; acked--) {
        int mode = acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN;
        frozen_rig r;
        CHECK(frozen_rig_open(&r, mode, 0) == 0);
        nq_comm *s = r.s, *c = r.c;
        nqt_proxy_freeze(&r.px, 1);
        nq_future *f;
        CHECK_OK(put(c, "into the void", 13, NULL, &f));
        int64_t t0 = nqt_now_ms();
        nq_msg *m = NULL;
        int rv = NQ_ETIMEDOUT;
        while (rv == NQ_ETIMEDOUT && nqt_now_ms() - t0 < 20000) {
            rv = nq_get(c, 200, &m);
        }
        fprintf(stderr, "%s: get returned %d after %lld ms\n", acked ? "acked" : "written", rv,
                (long long)(nqt_now_ms() - t0));
        CHECK_RC(rv, NQ_ECONNRESET);
        if (g_proto != NQ_MQTT || acked) {
            CHECK(nqt_is_event(&r.rc, 1, NQ_EVENT_DISCONNECTED, NULL, NQ_ETIMEDOUT) == 0);
        }
        if (acked) {
            CHECK_RC(settle(f, WAIT_MS), NQ_ECONNRESET); /* the server never had it */
        }
        nq_future_free(f);
        CHECK_RC(nq_close(c), NQ_ECONNRESET);
        nqt_proxy_freeze(&r.px, 0);
        nqt_proxy_stop(&r.px);
        nq_close(s);
        nq_destroy(c);
        nq_destroy(s);
    }
    return 0;
}

/* A large message that comes slowly (the proxy passes 160 KiB/s) is not
 * silence: the server, which asks its kernel to wake it only for big parts
 * of a payload, reads what has come before each heartbeat judges the
 * client, so neither side drops the other and the message arrives whole. */
static int test_a_large_message_arriving_slowly_is_not_silence(void)
{
    enum { LEN = 768 * 1024 };
    static uint8_t data[LEN];
    for (size_t i = 0; i < LEN; i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    for (int acked = 1; acked >= 0; acked--) {
        int mode = acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN;
        frozen_rig r;
        CHECK(frozen_rig_open(&r, mode, 0) == 0);
        nqt_proxy_freeze(&r.px, NQT_PROXY_TRICKLE);
        int64_t t0 = nqt_now_ms();
        nq_future *f;
        CHECK_OK(put(r.c, data, LEN, NULL, &f));
        nq_msg *m = NULL;
        CHECK_OK(nq_get(r.s, 30000, &m));
        int64_t took = nqt_now_ms() - t0;
        fprintf(stderr, "%s: %d bytes in %lld ms\n", acked ? "acked" : "written", LEN,
                (long long)took);
        const void *got;
        size_t len;
        CHECK_OK(nq_msg_data(m, &got, &len));
        CHECK(len == LEN && memcmp(got, data, LEN) == 0);
        nq_msg_free(m);
        CHECK(took >= 3000); /* it did come slowly: 512 KiB alone takes 3.2 s */
        CHECK_RC(settle(f, WAIT_MS), NQ_OK);
        nq_future_free(f);
        CHECK(nqt_events(&r.rc) == 1); /* connected, never lost */
        CHECK(nqt_stat(r.s, NQ_STAT_CONNECTIONS_LOST) == 0);
        CHECK(frozen_rig_close(&r) == 0);
    }
    return 0;
}

/* The same without heartbeats, over TCP and TLS: the server asks its
 * kernel to wake it once enough of a payload has come, less what the layer
 * below may already hold of it (TLS: the start of one record).  Were it to
 * ask for more, the end of a message that comes slowly would wake it only
 * when its watch of the input looks, here after 60 s, past the get's 30 s.
 * Two lengths, so the records end at other places. */
static int test_a_large_message_arriving_slowly_wakes_its_reader(void)
{
    static const size_t lens[] = {320 * 1024 + 3, 200 * 1024 + 8077};
    static uint8_t data[320 * 1024 + 3];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 13 + 5);
    }
    frozen_rig r;
    CHECK(frozen_rig_open_with(&r, NQ_DELIVERY_WRITTEN, 0, 0, 60000) == 0);
    nqt_proxy_freeze(&r.px, NQT_PROXY_TRICKLE);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        int64_t t0 = nqt_now_ms();
        CHECK_OK(put(r.c, data, lens[k], NULL, NULL));
        nq_msg *m = NULL;
        CHECK_OK(nq_get(r.s, 30000, &m));
        int64_t took = nqt_now_ms() - t0;
        fprintf(stderr, "%zu bytes in %lld ms\n", lens[k], (long long)took);
        const void *got;
        size_t len;
        CHECK_OK(nq_msg_data(m, &got, &len));
        CHECK(len == lens[k] && memcmp(got, data, len) == 0);
        nq_msg_free(m);
        CHECK(took >= 1000); /* it did come slowly: 160 KiB/s */
    }
    return frozen_rig_close(&r);
}

/* The two sides' keep-alive settings differ (1 s against the default 15 s,
 * or off): the heartbeat judges silence by the slower side's, so an idle
 * healthy peer is never dropped.  The pairs idle side by side, for about
 * twice as long as the 1 s side alone would have waited. */
static int test_heartbeat_takes_the_slower_side(void)
{
    static const struct {
        int mode;
        int64_t server_ms, client_ms;
    } pairs[] = {
        {NQ_DELIVERY_ACKED, 1000, 15000},
        {NQ_DELIVERY_ACKED, 15000, 1000},
        {NQ_DELIVERY_ACKED, 1000, 0},
        {NQ_DELIVERY_WRITTEN, 1000, 15000},
        {NQ_DELIVERY_WRITTEN, 15000, 1000},
    };
    enum { N = sizeof(pairs) / sizeof(pairs[0]) };
    nqt_recorder rs[N], rc[N];
    nq_comm *s[N], *c[N];
    char prefix[N][48];
    for (int k = 0; k < N; k++) {
        nqt_recorder_init(&rs[k]);
        nqt_recorder_init(&rc[k]);
        snprintf(prefix[k], sizeof(prefix[k]), "%spair%d/", g_prefix, k);
        nq_opts *so = options_in(prefix[k], NQ_SERVER, 0, pairs[k].mode);
        CHECK_OK(nq_opts_set_int(so, NQ_OPT_KEEPALIVE_MS, pairs[k].server_ms));
        CHECK_OK(nq_opts_set_events(so, nqt_record, &rs[k]));
        s[k] = server_with(so);
        CHECK(s[k] != NULL);
        nq_opts *co = options_in(prefix[k], NQ_CLIENT, server_port(s[k]), pairs[k].mode);
        CHECK_OK(nq_opts_set_int(co, NQ_OPT_KEEPALIVE_MS, pairs[k].client_ms));
        CHECK_OK(nq_opts_set_events(co, nqt_record, &rc[k]));
        c[k] = nqt_open(g_proto, NQ_CLIENT, co);
        CHECK(c[k] != NULL);
        CHECK(nqt_round_trip(s[k], c[k]) == 0);
    }
    usleep(4000 * 1000);
    for (int k = 0; k < N; k++) {
        if (nqt_events(&rs[k]) != 1 || nqt_events(&rc[k]) != 1) {
            fprintf(stderr, "%s, keep-alive %lld ms (server) and %lld ms (client): "
                    "%d server and %d client events after 4 s idle\n",
                    pairs[k].mode == NQ_DELIVERY_ACKED ? "acked" : "written",
                    (long long)pairs[k].server_ms, (long long)pairs[k].client_ms,
                    nqt_events(&rs[k]), nqt_events(&rc[k]));
        }
        CHECK(nqt_events(&rs[k]) == 1); /* connected, and nothing since */
        CHECK(nqt_events(&rc[k]) == 1);
        CHECK(nqt_round_trip(s[k], c[k]) == 0);
        CHECK_OK(nq_close(c[k]));
        CHECK_OK(nq_close(s[k]));
        nq_destroy(c[k]);
        nq_destroy(s[k]);
    }
    return 0;
}

/* A lost peer stays listed for NQ_OPT_RESUME_MS, with no event, then
 * leaves as a lost peer. */
static int test_lost_peer_is_kept_for_resume_ms(void)
{
    nqt_recorder rs;
    nqt_recorder_init(&rs);
    nq_opts *so = options(NQ_SERVER, 0, NQ_DELIVERY_ACKED);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_RESUME_MS, 600));
    CHECK_OK(nq_opts_set_events(so, nqt_record, &rs));
    nq_comm *s = server_with(so);
    CHECK(s != NULL);
    nqt_proxy px;
    CHECK(nqt_proxy_start(&px, server_port(s)) == 0);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, options(NQ_CLIENT, px.port, NQ_DELIVERY_ACKED));
    CHECK(c != NULL);
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_wait_events(&rs, 1) == 0);
    CHECK(nqt_proxy_reset(&px) == 0);
    int64_t t0 = nqt_now_ms();
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNRESET);
    nq_future *f;
    CHECK_OK(put(s, "kept", 4, &cid, &f)); /* queues for the peer's return */
    usleep(200 * 1000);
    CHECK(nqt_events(&rs) == 1);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK(nqt_wait_events(&rs, 2) == 0);
    int64_t took = nqt_now_ms() - t0;
    CHECK(nqt_is_event(&rs, 1, NQ_EVENT_DISCONNECTED, &cid, NQ_ECONNRESET) == 0);
    CHECK(took >= 500);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 0);
    CHECK_RC(settle(f, WAIT_MS), NQ_ECONNRESET);
    nq_future_free(f);
    nq_close(c);
    CHECK_OK(nq_close(s));
    nqt_proxy_stop(&px);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- invisible to net-queue --------------------------------------------------------- */

static int read_exact(int fd, void *buf, size_t len)
{
    size_t at = 0;
    while (at < len) {
        ssize_t n = recv(fd, (char *)buf + at, len - at, 0);
        if (n <= 0) {
            return -1;
        }
        at += (size_t)n;
    }
    return 0;
}

static nq_opts *idle_beating(nq_opts *o)
{
    if (nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, 1000) != NQ_OK) {
        abort();
    }
    return o;
}

/* A byte of message i at offset k, as held_back_beats sends it. */
static uint8_t pattern_at(uint32_t i, size_t k)
{
    return (uint8_t)(i * 131 + k * 7);
}

static int held_back_beats(int mode)
{
    enum { SIZE = 4096, COUNT = 2560 }; /* 10 MiB: more than the sockets hold */
    nq_opts *so = idle_beating(options(NQ_SERVER, 0, mode));
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_QUEUE_SIZE, 1));
    nq_comm *s = server_with(so);
    CHECK(s != NULL);
    nq_opts *co = idle_beating(options(NQ_CLIENT, server_port(s), mode));
    CHECK_OK(nq_opts_set_int(co, NQ_OPT_SEND_LIMIT, 64 << 20));
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, co);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    static uint8_t buf[SIZE];
    for (uint32_t i = 0; i < COUNT; i++) {
        for (size_t k = 0; k < SIZE; k++) {
            buf[k] = pattern_at(i, k);
        }
        memcpy(buf, &i, sizeof(i));
        CHECK_OK(put(c, buf, SIZE, NULL, NULL)); /* copied */
    }
    /* Held back, the client writes nothing for longer than half its
     * keep-alive, again and again: each time a PING goes in its queue. */
    usleep(2500 * 1000);
    for (uint32_t i = 0; i < COUNT; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const uint8_t *d;
        size_t len;
        CHECK_OK(nq_msg_data(m, (const void **)&d, &len));
        uint32_t v;
        memcpy(&v, d, sizeof(v));
        int intact = len == SIZE && v == i;
        for (size_t k = sizeof(v); intact && k < SIZE; k++) {
            intact = d[k] == pattern_at(i, k);
        }
        if (!intact) {
            fprintf(stderr, "message %u of %u: %zu bytes, numbered %u\n", i, COUNT, len, v);
        }
        nq_msg_free(m);
        CHECK(intact);
    }
    CHECK_OK(nq_close(c));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A client the server holds back (its queue is full) and whose keep-alive
 * is short queues PING frames ahead of the data it could not write yet.
 * Over TLS, part of that data is already in a record that waits for the
 * socket, and must go as it was built: a PING put in between broke the
 * stream (the server got a wrong message, then a frame of absurd length,
 * and dropped the client).  Every message arrives, in order and intact,
 * with and without acknowledged delivery. */
static int test_beats_of_a_held_back_client_break_no_message(void)
{
    for (int acked = 0; acked <= 1; acked++) {
        if (held_back_beats(acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN) != 0) {
            fprintf(stderr, "with delivery %s\n", acked ? "acked" : "written");
            return -1;
        }
    }
    return 0;
}

static int net_queue_peer_sees_nothing(int mode)
{
    struct timeval tv = {.tv_sec = 1};
    uint8_t hdr[8], id[16], buf[64];
    /* A server: INI, one message, its echo, FIN. */
    nq_comm *s = server_with(idle_beating(options(NQ_SERVER, 0, mode)));
    CHECK(s != NULL);
    int fd = nqt_raw_connect(nqt_port(s));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    nq_id me;
    nq_id_random(&me);
    nqt_put_header(hdr, 16);
    CHECK(send(fd, hdr, 8, 0) == 8 && send(fd, me.bytes, 16, 0) == 16);
    nqt_put_header(hdr, 5);
    CHECK(send(fd, hdr, 8, 0) == 8 && send(fd, "hello", 5, 0) == 5);
    CHECK(read_exact(fd, hdr, 8) == 0 && read_exact(fd, id, 16) == 0);
    CHECK(hdr[7] == 16 && hdr[0] == 0);
    CHECK(nqt_expect(s, "hello", 5, &me) == 0);
    CHECK_OK(nqt_put_wait(s, "world", 5, &me, 1));
    CHECK(read_exact(fd, hdr, 8) == 0 && read_exact(fd, buf, 5) == 0);
    CHECK(hdr[7] == 5 && hdr[0] == 0 && memcmp(buf, "world", 5) == 0);
    usleep(1600 * 1000); /* longer than a heartbeat's period */
    CHECK(recv(fd, buf, 1, MSG_DONTWAIT) < 0); /* nothing else came */
    close(fd);
    CHECK(nqt_stat(s, NQ_STAT_ACKED) == 0);
    nq_destroy(s);

    /* A client: its INI, its message, nothing else. */
    uint16_t port;
    int lfd = nqt_raw_listen(&port);
    nq_comm *c = nqt_open(g_proto, NQ_CLIENT, idle_beating(options(NQ_CLIENT, port, mode)));
    CHECK(c != NULL);
    fd = nqt_raw_accept(lfd);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(read_exact(fd, hdr, 8) == 0 && read_exact(fd, id, 16) == 0);
    CHECK(hdr[7] == 16 && hdr[0] == 0);
    nqt_put_header(hdr, 16);
    CHECK(send(fd, hdr, 8, 0) == 8 && send(fd, me.bytes, 16, 0) == 16);
    nq_future *f;
    CHECK_OK(put(c, "hi", 2, NULL, &f));
    CHECK(read_exact(fd, hdr, 8) == 0 && read_exact(fd, buf, 2) == 0);
    CHECK(hdr[7] == 2 && hdr[0] == 0 && memcmp(buf, "hi", 2) == 0);
    CHECK_RC(settle(f, WAIT_MS), NQ_OK); /* written is all it can mean here */
    usleep(1600 * 1000);
    CHECK(recv(fd, buf, 1, MSG_DONTWAIT) < 0);
    nq_future_free(f);
    close(fd);
    close(lfd);
    nq_destroy(c);
    return 0;
}

/* A peer speaking net-queue's wire by hand, with a one-second receive
 * timeout: a libnq server and client, with acknowledged delivery or
 * without (where the heartbeat would go between libnq peers), show it
 * exactly the frames net-queue would, and no byte more, even idle for
 * longer than their keep-alive. */
static int test_a_net_queue_peer_sees_nothing_of_it(void)
{
    for (int acked = 1; acked >= 0; acked--) {
        if (net_queue_peer_sees_nothing(acked ? NQ_DELIVERY_ACKED : NQ_DELIVERY_WRITTEN) != 0) {
            fprintf(stderr, "with delivery %s\n", acked ? "acked" : "written");
            return -1;
        }
    }
    return 0;
}

/* ---- an urgent byte that lands between two looks --------------------------------- */

/* recv, as libnq calls it, with one lie on demand: the next urgent read
 * (MSG_OOB) after g_hide_urgent is set waits until the connection has
 * bytes to read, then says that no urgent byte has come.  So the byte
 * lands just after the library looked for it, and just before it peeks at
 * what follows: the moment a busy machine may give it. */
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
static recv_fn g_real_recv;
static atomic_int g_hide_urgent;

/* read, as libnq calls it, late on demand: the next read of a socket
 * after g_late_read is set waits 100 ms first, so that whatever the peer
 * sends right behind its bytes (a reset) has come too. */
typedef ssize_t (*read_fn)(int, void *, size_t);
static read_fn g_real_read;
static atomic_int g_late_read;

__attribute__((constructor)) static void find_real_recv(void)
{
    g_real_recv = (recv_fn)dlsym(RTLD_NEXT, "recv");
    g_real_read = (read_fn)dlsym(RTLD_NEXT, "read");
}

ssize_t read(int fd, void *buf, size_t len)
{
    struct stat st;
    if (atomic_load(&g_late_read) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
        atomic_exchange(&g_late_read, 0)) {
        usleep(100 * 1000);
    }
    return g_real_read(fd, buf, len);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if ((flags & MSG_OOB) != 0 && atomic_exchange(&g_hide_urgent, 0)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 2000);
        usleep(50 * 1000); /* and whatever was sent behind the byte */
        errno = EAGAIN;
        return -1;
    }
    return g_real_recv(fd, buf, len, flags);
}

/* What a libnq peer at keep-alive 1 s sends first: the urgent byte asking
 * for the heartbeat alone, its INI, and a PING telling its keep-alive. */
static int send_beating_hello(int fd, const nq_id *id)
{
    static const uint8_t beat = 0x03;
    static const uint8_t ping[16] = {0x80, 3, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8};
    uint8_t hdr[8];
    nqt_put_header(hdr, 16);
    return send(fd, &beat, 1, MSG_OOB) == 1 && send(fd, hdr, 8, 0) == 8 &&
                   send(fd, id->bytes, 16, 0) == 16 && send(fd, ping, 16, 0) == 16
               ? 0
               : -1;
}

/* The frames a libnq peer at keep-alive 1 s answers with: its INI, then
 * its PING (8 bytes, 1000 ms). */
static int expect_beating_hello(int fd)
{
    uint8_t hdr[8], id[16], ms[8];
    CHECK(read_exact(fd, hdr, 8) == 0 && read_exact(fd, id, 16) == 0);
    CHECK(hdr[7] == 16 && hdr[0] == 0);
    CHECK(read_exact(fd, hdr, 8) == 0);
    CHECK(hdr[0] == 0x80 && hdr[1] == 3 && hdr[7] == 8);
    CHECK(read_exact(fd, ms, 8) == 0);
    CHECK(ms[6] == 0x03 && ms[7] == 0xe8);
    return 0;
}

/* The peer's urgent byte arrives after the library looked for it but
 * before it peeked at the stream (on a loaded machine, TLS clients met it
 * in a storm of connections).  Bytes behind where the urgent byte would
 * stand mean the byte, if sent, is there: the library looks again, agrees
 * on the heartbeat, and reads the peer's PING as one; before, it took the
 * peer for one that sent no byte and ended on the PING with NQ_EPROTO. */
static int test_an_urgent_byte_that_lands_late_is_seen(void)
{
    struct timeval tv = {.tv_sec = 3};
    nq_id me;
    nq_id_random(&me);
    /* A server. */
    nq_comm *s = server_with(idle_beating(options(NQ_SERVER, 0, NQ_DELIVERY_WRITTEN)));
    CHECK(s != NULL);
    atomic_store(&g_hide_urgent, 1);
    int fd = nqt_raw_connect(nqt_port(s));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(send_beating_hello(fd, &me) == 0);
    CHECK(expect_beating_hello(fd) == 0);
    CHECK(atomic_load(&g_hide_urgent) == 0); /* the lie was told */
    close(fd);
    nq_destroy(s);

    /* A client. */
    uint16_t port;
    int lfd = nqt_raw_listen(&port);
    atomic_store(&g_hide_urgent, 1);
    nq_comm *c =
        nqt_open(g_proto, NQ_CLIENT, idle_beating(options(NQ_CLIENT, port, NQ_DELIVERY_WRITTEN)));
    CHECK(c != NULL);
    fd = nqt_raw_accept(lfd);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK(send_beating_hello(fd, &me) == 0);
    CHECK(expect_beating_hello(fd) == 0);
    CHECK(atomic_load(&g_hide_urgent) == 0);
    close(fd);
    close(lfd);
    nq_destroy(c);
    return 0;
}

/* ---- a reset behind a complete close --------------------------------------------- */

struct closing {
    nq_comm *comm;
    int rv;
};

static void *close_comm(void *arg)
{
    struct closing *cl = arg;
    cl->rv = nq_close(cl->comm);
    return NULL;
}

/* A client that closes before the server's INI has come sends its FIN
 * first.  The INI then starts the heartbeat, and the client's first PING
 * goes out behind its FIN.  A server that has answered the FIN and left
 * resets the connection when that PING comes; the reset lands right
 * behind the server's FIN.  Both FINs passed and nothing was lost, so the
 * close succeeds.  Before, the reset ended the session with NQ_ECONNRESET
 * and nq_close reported it. */
static int test_a_reset_behind_both_fins_is_a_clean_close(void)
{
    struct timeval tv = {.tv_sec = 3};
    nq_id me;
    nq_id_random(&me);
    uint16_t port;
    int lfd = nqt_raw_listen(&port);
    CHECK(lfd >= 0);
    nq_comm *c =
        nqt_open(g_proto, NQ_CLIENT, idle_beating(options(NQ_CLIENT, port, NQ_DELIVERY_WRITTEN)));
    CHECK(c != NULL);
    int fd = nqt_raw_accept(lfd);
    CHECK(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* The FIN must leave before the reset: held back by Nagle's rule (the
     * hello before it not yet acknowledged), it would be dropped by the
     * close without linger, and the client would rightly see a reset
     * before any FIN. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t fin[24], ping[16];
    CHECK(read_exact(fd, fin, 24) == 0); /* its INI */
    CHECK(fin[0] == 0 && fin[7] == 16);

    struct closing cl = {c, -1};
    pthread_t closer;
    CHECK(pthread_create(&closer, NULL, close_comm, &cl) == 0);
    int ok = read_exact(fd, fin, 24) == 0 && fin[0] == 0 && fin[7] == 16; /* its FIN */
    ok = ok && send_beating_hello(fd, &me) == 0; /* urgent byte, INI, PING */
    ok = ok && read_exact(fd, ping, 16) == 0 && ping[0] == 0x80 && ping[1] == 3;
    /* The FIN, and at once the reset (no linger). */
    atomic_store(&g_late_read, 1);
    nqt_put_header(fin, 16);
    memcpy(fin + 8, me.bytes, 16);
    ok = ok && send(fd, fin, 24, 0) == 24;
    struct linger no_linger = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof(no_linger));
    close(fd);
    close(lfd);
    pthread_join(closer, NULL);
    int late = atomic_exchange(&g_late_read, 0) == 0; /* the read came late */
    CHECK(ok);
    CHECK(late);
    CHECK_OK(cl.rv);
    nq_destroy(c);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_agreed_where_the_transport_can_carry_it),
    TEST(test_falls_back_when_one_side_does_not_ask),
    TEST_TCP(test_server_with_workers_is_refused), /* nothing of it is transport's */
    TEST(test_future_completes_when_the_peer_has_it),
    TEST(test_a_reader_that_stops_holds_the_sender_back),
    TEST(test_exactly_once_across_resets),
    TEST(test_large_messages_go_again_whole_across_resets),
    TEST(test_new_server_fails_what_it_may_not_have_had),
    TEST(test_heartbeat_notices_a_frozen_path),
    TEST(test_a_client_lost_to_silence_is_told_lost),
    TEST(test_heartbeat_takes_the_slower_side),
    TEST_STREAM(test_a_large_message_arriving_slowly_is_not_silence), /* the mark is the socket's */
    TEST_STREAM(test_a_large_message_arriving_slowly_wakes_its_reader),
    TEST(test_lost_peer_is_kept_for_resume_ms),
    TEST(test_beats_of_a_held_back_client_break_no_message),
    TEST_TCP(test_a_net_queue_peer_sees_nothing_of_it), /* a raw peer speaks plain TCP */
    TEST_TCP(test_an_urgent_byte_that_lands_late_is_seen),
    TEST_TCP(test_a_reset_behind_both_fins_is_a_clean_close),
};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (nqt_env_start(&g_env, &argc, &argv, "delivery") != 0) {
        return 1;
    }
    snprintf(g_prefix, sizeof(g_prefix), "acked%d/", (int)getpid());
    int stream = g_proto != NQ_TCP ? NQT_NOT_TCP : g_env.tls ? NQT_TLS : NQT_PLAIN_TCP;
    int rv = run_tests_for(tests, TEST_COUNT(tests), argc, argv, stream);
    nqt_env_stop(&g_env);
    return rv;
}
