/*
 * Communicator tests over loopback: every item of the contract, the close
 * handshake, dead peers, hostile input and TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

/* The protocol under test (first argument: tcp, mqtt or grpc); MQTT peers
 * meet at a broker this process starts. */
static nq_protocol g_proto = NQ_TCP;
static nqt_broker g_broker;

/* ---- helpers ---------------------------------------------------------------- */

static nq_comm *open_with(nq_purpose purpose, nq_opts *o)
{
    nq_comm *c = NULL;
    if (g_proto == NQ_MQTT) {
        nq_opts_set_netloc(o, "127.0.0.1", g_broker.port);
    }
    int rv = nq_open(g_proto, purpose, o, &c);
    nq_opts_free(o);
    if (rv != NQ_OK) {
        fprintf(stderr, "nq_open: %s\n", nq_strerror(rv));
        return NULL;
    }
    return c;
}

static nq_comm *server_on(const char *host)
{
    return open_with(NQ_SERVER, nqt_opts(host, 0, NULL));
}

static nq_comm *client_of(nq_comm *server, const nq_id *id)
{
    return open_with(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(server), id));
}

/* Waits until the server lists n peers. */
static int wait_peers(nq_comm *server, size_t n)
{
    for (int i = 0; i < 1000; i++) {
        size_t count = 0;
        nq_peers(server, NULL, 0, &count);
        if (count == n) {
            return 0;
        }
        usleep(10000);
    }
    return 1;
}

/* ---- the contract ------------------------------------------------------------ */

static int test_put_get_both_ways(void)
{
    nq_comm *s = server_on("127.0.0.1");
    CHECK(s != NULL);
    CHECK(g_proto != NQ_TCP || nqt_port(s) != 0);
    nq_comm *c = client_of(s, NULL);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    nq_id sid, got;
    nq_comm_id(s, &sid);
    CHECK_OK(nq_server_id(c, &got));
    CHECK(nq_id_equal(&sid, &got));
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_put_before_connect_is_delivered(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    /* Queued before the connection exists: sent after the INI. */
    nq_chunk ch[3] = {{"a", 1}, {"bc", 2}, {"def", 3}};
    CHECK_OK(nq_put(c, ch, 3, NULL, 0, NULL));
    CHECK(nqt_expect(s, "abcdef", 6, NULL) == 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_broadcast_reaches_every_client(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *a = client_of(s, NULL);
    nq_comm *b = client_of(s, NULL);
    CHECK_OK(nqt_put_wait(a, "hi", 2, NULL, 0));
    CHECK_OK(nqt_put_wait(b, "hi", 2, NULL, 0));
    CHECK(wait_peers(s, 2) == 0);
    /* One future covers both copies. */
    CHECK_OK(nqt_put_wait(s, "all", 3, NULL, 0));
    CHECK(nqt_expect(a, "all", 3, NULL) == 0);
    CHECK(nqt_expect(b, "all", 3, NULL) == 0);
    nq_destroy(a);
    nq_destroy(b);
    nq_destroy(s);
    return 0;
}

static int test_broadcast_with_no_clients_succeeds(void)
{
    nq_comm *s = server_on("127.0.0.1");
    CHECK_OK(nqt_put_wait(s, "nobody", 6, NULL, 0));
    nq_destroy(s);
    return 0;
}

static int test_targeted_put_reaches_only_that_client(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id ida, idb;
    nq_id_random(&ida);
    nq_id_random(&idb);
    nq_comm *a = client_of(s, &ida);
    nq_comm *b = client_of(s, &idb);
    CHECK(wait_peers(s, 2) == 0);
    CHECK_OK(nqt_put_wait(s, "to-a", 4, &ida, 1));
    CHECK_OK(nqt_put_wait(s, "to-b", 4, &idb, 1));
    nq_id both[2] = {ida, idb};
    CHECK_OK(nqt_put_wait(s, "both", 4, both, 2));
    CHECK(nqt_expect(a, "to-a", 4, NULL) == 0);
    CHECK(nqt_expect(a, "both", 4, NULL) == 0);
    CHECK(nqt_expect(b, "to-b", 4, NULL) == 0);
    CHECK(nqt_expect(b, "both", 4, NULL) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(a, 100, &m), NQ_ETIMEDOUT);
    nq_destroy(a);
    nq_destroy(b);
    nq_destroy(s);
    return 0;
}

static int test_put_to_unknown_peer_fails(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id stranger;
    nq_id_random(&stranger);
    nq_chunk ch = {"x", 1};
    nq_future *f = NULL;
    CHECK_RC(nq_put(s, &ch, 1, &stranger, 1, &f), NQ_ENOPEER);
    CHECK(f == NULL);
    /* A client cannot name peers. */
    nq_comm *c = client_of(s, NULL);
    CHECK_RC(nq_put(c, &ch, 1, &stranger, 1, NULL), NQ_EINVAL);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_zero_and_sixteen_byte_payloads(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    const char sixteen[16] = "0123456789abcdef";
    CHECK_OK(nqt_put_wait(c, "", 0, NULL, 0));
    CHECK_OK(nqt_put_wait(c, sixteen, 16, NULL, 0));
    CHECK(nqt_expect(s, "", 0, NULL) == 0);
    CHECK(nqt_expect(s, sixteen, 16, NULL) == 0);
    /* Its own id would read as FIN on the other side. */
    nq_id own;
    nq_comm_id(c, &own);
    nq_chunk ch = {own.bytes, 16};
    CHECK_RC(nq_put(c, &ch, 1, NULL, 0, NULL), NQ_EINVAL);
    CHECK_OK(nq_close(c));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* Payloads around the size up to which a received payload shares its
 * message's block arrive intact, 16-byte aligned either way. */
static int test_small_payloads_arrive_intact_and_aligned(void)
{
    static const size_t sizes[] = {1, 15, 64, 255, 256, 257, 300, 1024, 4096};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    uint8_t buf[4096 + 16];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 7 + 3);
    }
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    for (int i = 0; i < N; i++) {
        CHECK_OK(nqt_put_wait(c, buf + i, sizes[i], NULL, 0));
    }
    for (int i = 0; i < N; i++) {
        nq_msg *m;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *data;
        size_t len;
        CHECK_OK(nq_msg_data(m, &data, &len));
        CHECK(len == sizes[i] && memcmp(data, buf + i, len) == 0);
        CHECK((uintptr_t)data % 16 == 0);
        nq_msg_free(m);
    }
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_large_message_arrives_intact(void)
{
    size_t len = 10 * 1024 * 1024 + 7;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 31 + (i >> 13));
    }
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    CHECK_OK(nqt_put_wait(c, buf, len, NULL, 0));
    CHECK(nqt_expect(s, buf, len, NULL) == 0);
    nq_id cid;
    nq_comm_id(c, &cid);
    CHECK_OK(nqt_put_wait(s, buf, len, &cid, 1));
    CHECK(nqt_expect(c, buf, len, NULL) == 0);
    nq_destroy(c);
    nq_destroy(s);
    free(buf);
    return 0;
}

static int test_ten_thousand_messages_keep_order(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    for (uint32_t i = 0; i < 10000; i++) {
        nq_chunk ch = {&i, sizeof(i)};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, NULL));
    }
    for (uint32_t i = 0; i < 10000; i++) {
        CHECK(nqt_expect(s, &i, sizeof(i), NULL) == 0);
    }
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static void count_cb(nq_future *f, int result, void *ctx)
{
    (void)f;
    if (result == NQ_OK) {
        atomic_fetch_add((_Atomic int *)ctx, 1);
    }
}

static int test_future_callbacks_run(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    _Atomic int done = 0;
    nq_future *fs[50];
    for (int i = 0; i < 50; i++) {
        nq_chunk ch = {"cb", 2};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &fs[i]));
        CHECK_OK(nq_future_on_done(fs[i], count_cb, &done));
        CHECK_RC(nq_future_on_done(fs[i], count_cb, &done), NQ_EINVAL);
    }
    for (int i = 0; i < 50; i++) {
        CHECK_OK(nq_future_wait(fs[i], WAIT_MS));
        CHECK_OK(nq_future_result(fs[i]));
        nq_future_free(fs[i]);
    }
    CHECK(atomic_load(&done) == 50);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_get_after_close_drains_then_reports_closed(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    nq_id cid;
    nq_comm_id(c, &cid);
    CHECK_OK(nqt_put_wait(c, "x", 1, NULL, 0));
    CHECK(wait_peers(s, 1) == 0);
    CHECK_OK(nqt_put_wait(s, "one", 3, &cid, 1));
    CHECK_OK(nqt_put_wait(s, "two", 3, &cid, 1));
    CHECK_OK(nq_close(c));
    CHECK(nqt_expect(c, "one", 3, NULL) == 0);
    CHECK(nqt_expect(c, "two", 3, NULL) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECLOSED);
    CHECK_RC(nq_put(c, NULL, 0, NULL, 0, NULL), NQ_ECLOSED);
    CHECK_OK(nq_close(s));
    CHECK(nqt_expect(s, "x", 1, NULL) == 0);
    CHECK_RC(nq_get(s, 0, &m), NQ_ECLOSED);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

struct closer {
    nq_comm *comm;
    int result;
    int64_t done_at;
};

static void *close_thread(void *arg)
{
    struct closer *cl = arg;
    cl->result = nq_close(cl->comm);
    cl->done_at = nqt_now_ms();
    return NULL;
}

/* 1 when fd is readable now. */
static int readable(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, wait_ms) == 1 && (p.revents & POLLIN);
}

/* The readiness descriptor is level-triggered: readable while a message
 * waits (still after taking one of two), not when the queue is empty, and
 * readable again for the final error. */
static int test_readiness_descriptor_is_level_triggered(void)
{
    nq_comm *s = server_on("127.0.0.1");
    CHECK(s != NULL);
    nq_comm *c = client_of(s, NULL);
    CHECK(c != NULL);
    int sfd = -1, cfd = -1, again = -1;
    CHECK_OK(nq_comm_fd(s, &sfd));
    CHECK_OK(nq_comm_fd(s, &again));
    CHECK(sfd >= 0 && again == sfd);
    CHECK_OK(nq_comm_fd(c, &cfd));
    CHECK(!readable(sfd, 0) && !readable(cfd, 0));
    CHECK_OK(nqt_put_wait(c, "one", 3, NULL, 0));
    CHECK_OK(nqt_put_wait(c, "two", 3, NULL, 0));
    CHECK(nqt_wait_stat(s, NQ_STAT_MSGS_IN, 2) == 0);
    CHECK(readable(sfd, 0));
    CHECK(readable(sfd, 0)); /* looking changes nothing */
    CHECK(nqt_expect(s, "one", 3, NULL) == 0);
    CHECK(readable(sfd, 0));
    CHECK(nqt_expect(s, "two", 3, NULL) == 0);
    CHECK(!readable(sfd, 0));
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 0, &m), NQ_ETIMEDOUT);
    CHECK(!readable(cfd, 0));
    nq_id cid;
    CHECK_OK(nq_comm_id(c, &cid));
    CHECK_OK(nqt_put_wait(s, "back", 4, &cid, 1));
    CHECK(readable(cfd, NQT_WAIT_MS));
    CHECK(nqt_expect(c, "back", 4, NULL) == 0);
    CHECK(!readable(cfd, 0));
    CHECK_OK(nq_close(c));
    CHECK(readable(cfd, 0)); /* the final error waits */
    CHECK_RC(nq_get(c, 0, &m), NQ_ECLOSED);
    CHECK(readable(cfd, 0)); /* and stays */
    CHECK_OK(nq_close(s));
    CHECK(readable(sfd, 0));
    CHECK_RC(nq_comm_fd(NULL, &sfd), NQ_EINVAL);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* 1 when m holds text and came from peer. */
static int msg_is(const nq_msg *m, const char *text, const nq_id *peer)
{
    const void *d;
    size_t n;
    nq_id from;
    return nq_msg_data(m, &d, &n) == NQ_OK && nq_msg_peer(m, &from) == NQ_OK &&
           n == strlen(text) && memcmp(d, text, n) == 0 && nq_id_equal(&from, peer);
}

/* Taking one peer's messages leaves the others' queued, in order. */
static int test_get_from_leaves_other_peers_in_order(void)
{
    nq_comm *s = server_on("127.0.0.1");
    CHECK(s != NULL);
    nq_comm *a = client_of(s, NULL);
    nq_comm *b = client_of(s, NULL);
    CHECK(a != NULL && b != NULL);
    nq_id aid, bid;
    CHECK_OK(nq_comm_id(a, &aid));
    CHECK_OK(nq_comm_id(b, &bid));
    CHECK_OK(nqt_put_wait(a, "a1", 2, NULL, 0));
    CHECK_OK(nqt_put_wait(b, "b1", 2, NULL, 0));
    CHECK_OK(nqt_put_wait(a, "a2", 2, NULL, 0));
    CHECK_OK(nqt_put_wait(b, "b2", 2, NULL, 0));
    CHECK(nqt_wait_stat(s, NQ_STAT_MSGS_IN, 4) == 0);
    nq_msg *m = NULL;
    const char *want_b[2] = {"b1", "b2"};
    for (int i = 0; i < 2; i++) {
        CHECK_OK(nq_get_from(s, &bid, 1, 0, &m));
        CHECK(msg_is(m, want_b[i], &bid));
        nq_msg_free(m);
    }
    CHECK_RC(nq_get_from(s, &bid, 1, 0, &m), NQ_ETIMEDOUT);
    CHECK_RC(nq_get_from(s, &bid, 1, 50, &m), NQ_ETIMEDOUT);
    CHECK_RC(nq_get_from(s, NULL, 0, 0, &m), NQ_EINVAL);
    CHECK(nqt_expect(s, "a1", 2, &aid) == 0);
    nq_id both[2] = {bid, aid};
    CHECK_OK(nq_get_from(s, both, 2, 0, &m));
    CHECK(nq_msg_size(m) == 2);
    nq_msg_free(m);
    /* A waiting get-from wakes for its peer, not for another's message. */
    CHECK_OK(nqt_put_wait(a, "a3", 2, NULL, 0));
    CHECK_OK(nqt_put_wait(b, "b3", 2, NULL, 0));
    CHECK_OK(nq_get_from(s, &bid, 1, NQT_WAIT_MS, &m));
    CHECK(msg_is(m, "b3", &bid));
    nq_msg_free(m);
    CHECK(nqt_expect(s, "a3", 2, &aid) == 0);
    CHECK_OK(nq_close(a));
    CHECK_OK(nq_close(b));
    CHECK_OK(nq_close(s));
    CHECK_RC(nq_get_from(s, &aid, 1, 0, &m), NQ_ECLOSED);
    nq_destroy(a);
    nq_destroy(b);
    nq_destroy(s);
    return 0;
}

/* Cancelling a put that has completed changes nothing and says so. */
static int test_cancel_after_completion_changes_nothing(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    CHECK(s != NULL && c != NULL);
    nq_chunk ch = {"done", 4};
    nq_future *f = NULL;
    CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f));
    CHECK_OK(nq_future_wait(f, NQT_WAIT_MS));
    CHECK_RC(nq_future_cancel(f), 0);
    CHECK_RC(nq_future_result(f), NQ_OK);
    CHECK_RC(nq_future_cancel(NULL), NQ_EINVAL);
    CHECK(nqt_expect(s, "done", 4, NULL) == 0);
    nq_future_free(f);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    CHECK(strcmp(nq_strerror(NQ_ECANCELED), "unknown error") != 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A peer that holds one undelivered message stops reading, so a large
 * message behind it stays partly written: what was put after it can be
 * withdrawn and never arrives, the large one cannot and does. */
static nq_comm *stalled_client(nq_comm *s, uint8_t **big, size_t big_len, nq_future **big_f)
{
    nq_opts *o = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, 1);
    nq_comm *c = open_with(NQ_CLIENT, o);
    nq_id cid;
    if (c == NULL || nqt_put_wait(c, "hello", 5, NULL, 0) != NQ_OK ||
        nqt_expect(s, "hello", 5, NULL) != 0 || nq_comm_id(c, &cid) != NQ_OK ||
        nqt_put_wait(s, "first", 5, &cid, 1) != NQ_OK ||
        nqt_wait_stat(c, NQ_STAT_READ_PAUSES, 1) != 0) {
        return NULL;
    }
    *big = calloc(1, big_len);
    nq_chunk ch = {*big, big_len};
    if (*big == NULL || nq_put(s, &ch, 1, &cid, 1, big_f) != NQ_OK) {
        return NULL;
    }
    return c;
}

static int test_cancel_withdraws_what_waits_behind_a_large_message(void)
{
    enum { BIG = 32 << 20 };
    nq_comm *s = server_on("127.0.0.1");
    CHECK(s != NULL);
    uint8_t *big = NULL;
    nq_future *big_f = NULL, *small_f = NULL, *both_f = NULL;
    nq_comm *a = stalled_client(s, &big, BIG, &big_f);
    CHECK(a != NULL);
    nq_comm *b = client_of(s, NULL);
    CHECK(b != NULL);
    CHECK_OK(nqt_put_wait(b, "hi", 2, NULL, 0));
    CHECK(nqt_expect(s, "hi", 2, NULL) == 0);
    nq_id aid, bid;
    CHECK_OK(nq_comm_id(a, &aid));
    CHECK_OK(nq_comm_id(b, &bid));
    nq_chunk small = {"small", 5};
    CHECK_OK(nq_put(s, &small, 1, &aid, 1, &small_f));
    /* A broadcast: b's copy goes out, a's waits behind the large one. */
    nq_id both[2] = {aid, bid};
    nq_chunk each = {"each", 4};
    CHECK_OK(nq_put(s, &each, 1, both, 2, &both_f));
    CHECK(nqt_expect(b, "each", 4, NULL) == 0);
    CHECK_RC(nq_future_cancel(small_f), 1);
    CHECK_RC(nq_future_cancel(small_f), 0); /* already withdrawn */
    CHECK_RC(nq_future_cancel(both_f), 1);  /* one of two copies */
    CHECK_RC(nq_future_cancel(big_f), 0);   /* started: it goes on */
    CHECK_RC(nq_future_wait(small_f, NQT_WAIT_MS), NQ_ECANCELED);
    CHECK(nqt_expect(a, "first", 5, NULL) == 0);
    nq_msg *m = NULL;
    CHECK_OK(nq_get(a, NQT_WAIT_MS, &m));
    CHECK(nq_msg_size(m) == BIG);
    nq_msg_free(m);
    CHECK_OK(nq_future_wait(big_f, NQT_WAIT_MS));
    CHECK_RC(nq_future_wait(both_f, NQT_WAIT_MS), NQ_ECANCELED);
    CHECK_RC(nq_get(a, 300, &m), NQ_ETIMEDOUT); /* neither withdrawn copy came */
    CHECK_OK(nqt_put_wait(s, "after", 5, &aid, 1));
    CHECK(nqt_expect(a, "after", 5, NULL) == 0);
    nq_future_free(small_f);
    nq_future_free(both_f);
    nq_future_free(big_f);
    free(big);
    CHECK_OK(nq_close(a));
    CHECK_OK(nq_close(b));
    CHECK_OK(nq_close(s));
    nq_destroy(a);
    nq_destroy(b);
    nq_destroy(s);
    return 0;
}

static int test_server_close_waits_for_clients(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    CHECK_OK(nqt_put_wait(c, "x", 1, NULL, 0));
    CHECK(wait_peers(s, 1) == 0);
    struct closer cl = {s, -100, 0};
    pthread_t t;
    pthread_create(&t, NULL, close_thread, &cl);
    usleep(300 * 1000);
    CHECK(cl.done_at == 0); /* still waiting for the client */
    /* The server still answers while it waits. */
    nq_id cid;
    nq_comm_id(c, &cid);
    int64_t closed_at = nqt_now_ms();
    CHECK_OK(nq_close(c));
    pthread_join(t, NULL);
    CHECK_OK(cl.result);
    CHECK(cl.done_at >= closed_at);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_close_flushes_pending_data(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *c = client_of(s, NULL);
    for (uint32_t i = 0; i < 1000; i++) {
        nq_chunk ch = {&i, sizeof(i)};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, NULL));
    }
    CHECK_OK(nq_close(c));
    for (uint32_t i = 0; i < 1000; i++) {
        CHECK(nqt_expect(s, &i, sizeof(i), NULL) == 0);
    }
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_reconnect_with_same_id_is_served(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id id;
    nq_id_random(&id);
    for (int round = 0; round < 3; round++) {
        nq_comm *c = client_of(s, &id);
        CHECK(nqt_round_trip(s, c) == 0);
        CHECK_OK(nq_close(c));
        nq_destroy(c);
        CHECK(wait_peers(s, 0) == 0);
    }
    nq_destroy(s);
    return 0;
}

static int test_unreachable_server_fails_futures_and_get(void)
{
    /* Bind a port, then free it, so nothing listens there. */
    nq_comm *s = server_on("127.0.0.1");
    uint16_t port = nqt_port(s);
    nq_destroy(s);
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", port, NULL));
    CHECK(c != NULL);
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_ECONNREFUSED);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNREFUSED);
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_close(c), NQ_ECONNREFUSED);
    CHECK(nqt_now_ms() - t0 < 5000);
    nq_destroy(c);
    return 0;
}

static int test_unresolvable_host_fails_cleanly(void)
{
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("no-such-host.invalid", 9, NULL));
    CHECK(c != NULL);
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_EADDR);
    nq_destroy(c);
    nq_comm *s = NULL;
    nq_opts *o = nqt_opts("no-such-host.invalid", 0, NULL);
    CHECK_RC(nq_open(NQ_TCP, NQ_SERVER, o, &s), NQ_EADDR);
    nq_opts_free(o);
    return 0;
}

static int test_address_in_use_is_reported(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_comm *s2 = NULL;
    nq_opts *o = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    CHECK_RC(nq_open(NQ_TCP, NQ_SERVER, o, &s2), NQ_EADDRINUSE);
    nq_opts_free(o);
    nq_destroy(s);
    return 0;
}

static int test_ipv6_and_host_names(void)
{
    nq_comm *s = server_on("::1");
    CHECK(s != NULL);
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("::1", nqt_port(s), NULL));
    CHECK(nqt_round_trip(s, c) == 0);
    nq_destroy(c);
    nq_destroy(s);
    /* A name resolving to several addresses: the client tries each. */
    s = server_on("localhost");
    CHECK(s != NULL);
    nq_comm *c2 = open_with(NQ_CLIENT, nqt_opts("localhost", nqt_port(s), NULL));
    CHECK(nqt_round_trip(s, c2) == 0);
    nq_destroy(c2);
    nq_destroy(s);
    return 0;
}

static int test_workers_share_clients(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_WORKERS, 3));
    nq_comm *s = open_with(NQ_SERVER, o);
    CHECK(s != NULL);
    nq_comm *cs[6];
    for (int i = 0; i < 6; i++) {
        cs[i] = client_of(s, NULL);
        CHECK(nqt_round_trip(s, cs[i]) == 0);
    }
    CHECK_OK(nqt_put_wait(s, "all", 3, NULL, 0));
    for (int i = 0; i < 6; i++) {
        CHECK(nqt_expect(cs[i], "all", 3, NULL) == 0);
        CHECK_OK(nq_close(cs[i]));
        nq_destroy(cs[i]);
    }
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

static int test_queue_size_holds_sender_back_without_loss(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, 4));
    nq_comm *s = open_with(NQ_SERVER, o);
    nq_comm *c = client_of(s, NULL);
    for (uint32_t i = 0; i < 300; i++) {
        nq_chunk ch = {&i, sizeof(i)};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, NULL));
    }
    CHECK(nqt_wait_stat(s, NQ_STAT_READ_PAUSES, 1) == 0);
    for (uint32_t i = 0; i < 300; i++) {
        CHECK(nqt_expect(s, &i, sizeof(i), NULL) == 0);
    }
    CHECK(nqt_stat(s, NQ_STAT_MSGS_IN) == 300);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* NQ_OPT_DROP_OLDEST: a flooding peer's oldest messages make room, on
 * every transport (MQTT included); the sender is never held back or told,
 * other peers' messages stay, the drops are counted. */
static int test_drop_oldest_keeps_a_flooding_peers_newest(void)
{
    nq_opts *bad = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_RC(nq_opts_set_int(bad, NQ_OPT_DROP_OLDEST, 2), NQ_EINVAL);
    nq_opts_free(bad);
    enum { LIMIT = 4, FLOOD = 200 };
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, LIMIT));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_DROP_OLDEST, 1));
    nq_comm *s = open_with(NQ_SERVER, o);
    CHECK(s != NULL);
    nq_id quiet_id, loud_id;
    CHECK_OK(nq_id_random(&quiet_id));
    CHECK_OK(nq_id_random(&loud_id));
    nq_comm *quiet = client_of(s, &quiet_id);
    nq_comm *loud = client_of(s, &loud_id);
    CHECK(quiet != NULL && loud != NULL);
    CHECK(nqt_put_wait(quiet, "older", 5, NULL, 0) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_MSGS_IN, 1) == 0);
    nq_future *last = NULL;
    static const uint32_t final = FLOOD - 1; /* read in place until sent */
    for (uint32_t i = 0; i < FLOOD; i++) {
        nq_chunk ch = {i == final ? &final : &i, sizeof(i)}; /* copied */
        CHECK_OK(nq_put(loud, &ch, 1, NULL, 0, i == final ? &last : NULL));
    }
    CHECK_OK(nq_future_wait(last, WAIT_MS));
    CHECK_OK(nq_future_result(last));
    nq_future_free(last);
    /* Every message was read, none held back: the sender is never paused. */
    CHECK(nqt_wait_stat(s, NQ_STAT_MSGS_IN, 1 + FLOOD) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_DROPPED, FLOOD - LIMIT) == 0);
    CHECK(nqt_stat(s, NQ_STAT_DROPPED) == FLOOD - LIMIT);
    CHECK(nqt_stat(s, NQ_STAT_READ_PAUSES) == 0);
    CHECK(nqt_expect(s, "older", 5, &quiet_id) == 0);
    for (uint32_t i = FLOOD - LIMIT; i < FLOOD; i++) {
        CHECK(nqt_expect(s, &i, sizeof(i), &loud_id) == 0);
    }
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 0, &m), NQ_ETIMEDOUT);
    nq_destroy(quiet);
    nq_destroy(loud);
    nq_destroy(s);
    return 0;
}

/* The admission callback's refusal on every transport: the refused peer is
 * never listed or served and learns it as the transport can tell it (TCP
 * and gRPC: NQ_EAUTH; MQTT: its INI is never answered). */
typedef struct refuse_one {
    pthread_mutex_t mu; /* the callback runs on an I/O thread, again and again */
    nq_id id;
    char address[128];  /* the refused peer's, as the callback saw it */
} refuse_one;

static int refuse_that_id(void *ctx, const nq_admission *who)
{
    refuse_one *r = ctx;
    if (!nq_id_equal(&who->peer, &r->id)) {
        return NQ_OK;
    }
    pthread_mutex_lock(&r->mu);
    snprintf(r->address, sizeof(r->address), "%s", who->address);
    pthread_mutex_unlock(&r->mu);
    return NQ_EAUTH;
}

static int test_admission_refusal_is_never_served(void)
{
    refuse_one r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    CHECK_OK(nq_id_random(&r.id));
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_admission(o, refuse_that_id, &r));
    nq_comm *s = open_with(NQ_SERVER, o);
    CHECK(s != NULL);
    nq_opts *co = nqt_opts("127.0.0.1", nqt_port(s), &r.id);
    CHECK_OK(nq_opts_set_int(co, NQ_OPT_CLOSE_TIMEOUT_MS, 500));
    nq_comm *refused = open_with(NQ_CLIENT, co);
    CHECK(refused != NULL);
    CHECK_OK(nq_put(refused, &(nq_chunk){"never", 5}, 1, NULL, 0, NULL));
    nq_msg *m = NULL;
    if (g_proto == NQ_MQTT) {
        CHECK_RC(nq_get(refused, 1000, &m), NQ_ETIMEDOUT); /* no answer, ever */
    } else {
        CHECK_RC(nq_get(refused, WAIT_MS, &m), NQ_EAUTH);
    }
    CHECK(nqt_wait_stat(s, NQ_STAT_REFUSED, 1) == 0);
    pthread_mutex_lock(&r.mu);
    char address[128];
    snprintf(address, sizeof(address), "%s", r.address);
    pthread_mutex_unlock(&r.mu);
    CHECK(strncmp(address, g_proto == NQ_MQTT ? "" : "127.0.0.1:", 10) == 0);
    nq_comm *welcome = client_of(s, NULL);
    CHECK(nqt_round_trip(s, welcome) == 0);
    CHECK_RC(nq_get(s, 200, &m), NQ_ETIMEDOUT);
    size_t count = 0;
    CHECK_OK(nq_peers(s, NULL, 0, &count));
    CHECK(count == 1 && nqt_stat(s, NQ_STAT_REFUSED) >= 1); /* MQTT: each INI again */
    nq_destroy(refused);
    nq_destroy(welcome);
    nq_destroy(s);
    return 0;
}

static int test_send_limit_refuses_copies(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_comm *s = open_with(NQ_SERVER, o);
    o = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_SEND_LIMIT, 1000));
    nq_comm *c = open_with(NQ_CLIENT, o);
    static uint8_t big[2000];
    nq_chunk ch = {big, sizeof(big)};
    CHECK_RC(nq_put(c, &ch, 1, NULL, 0, NULL), NQ_EFULL);
    /* Zero-copy puts are not limited: the caller holds that memory. */
    nq_future *f = NULL;
    CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f));
    CHECK_OK(nq_future_wait(f, WAIT_MS));
    nq_future_free(f);
    CHECK(nqt_expect(s, big, sizeof(big), NULL) == 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* Serializer over NUL-terminated strings. */
static int dump_str(void *ctx, const void *value, nq_bytes *out)
{
    (void)ctx;
    size_t n = strlen(value);
    out->data = nq_alloc(n);
    if (out->data == NULL) {
        return 1;
    }
    memcpy(out->data, value, n);
    out->len = n;
    return 0;
}

static int load_str(void *ctx, const nq_bytes *in, void **value)
{
    (void)ctx;
    if (memchr(in->data, 0, in->len) != NULL) {
        return 1;
    }
    char *s = malloc(in->len + 1);
    memcpy(s, in->data, in->len);
    s[in->len] = 0;
    *value = s;
    return 0;
}

static int test_values_use_the_serializer(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_opts_set_serializer(o, dump_str, load_str, NULL);
    nq_comm *s = open_with(NQ_SERVER, o);
    o = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    nq_opts_set_serializer(o, dump_str, load_str, NULL);
    nq_comm *c = open_with(NQ_CLIENT, o);
    nq_future *f = NULL;
    CHECK_OK(nq_put_value(c, "hello value", NULL, 0, &f));
    CHECK_OK(nq_future_wait(f, WAIT_MS));
    nq_future_free(f);
    void *v = NULL;
    nq_id peer, cid;
    CHECK_OK(nq_get_value(s, WAIT_MS, &peer, &v));
    nq_comm_id(c, &cid);
    CHECK(nq_id_equal(&peer, &cid));
    CHECK(strcmp(v, "hello value") == 0);
    free(v);
    /* A load failure is reported and consumes the message. */
    nq_chunk bad = {"a\0b", 3};
    CHECK_OK(nq_put(c, &bad, 1, NULL, 0, NULL));
    CHECK_RC(nq_get_value(s, WAIT_MS, NULL, &v), NQ_ESERIALIZE);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- dead peers ------------------------------------------------------------ */

static int test_peer_vanishing_without_fin_is_detected(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id ghost;
    nq_id_random(&ghost);
    int fd = nqt_raw_connect(nqt_port(s));
    CHECK(nqt_raw_send_frame(fd, ghost.bytes, 16) == 0);
    CHECK(nqt_raw_send_frame(fd, "last words", 10) == 0);
    CHECK(wait_peers(s, 1) == 0);
    CHECK(nqt_expect(s, "last words", 10, &ghost) == 0);
    close(fd);
    CHECK(nqt_wait_stat(s, NQ_STAT_CONNECTIONS_LOST, 1) == 0);
    CHECK(wait_peers(s, 0) == 0);
    nq_chunk ch = {"x", 1};
    CHECK_RC(nq_put(s, &ch, 1, &ghost, 1, NULL), NQ_ENOPEER);
    int64_t t0 = nqt_now_ms();
    CHECK_OK(nq_close(s));
    CHECK(nqt_now_ms() - t0 < 2000);
    nq_destroy(s);
    return 0;
}

static int test_pending_futures_fail_when_peer_dies(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id ghost;
    nq_id_random(&ghost);
    int fd = nqt_raw_connect(nqt_port(s));
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CHECK(nqt_raw_send_frame(fd, ghost.bytes, 16) == 0);
    CHECK(wait_peers(s, 1) == 0);
    /* More than the socket buffers hold: the put stays pending. */
    size_t len = 64 * 1024 * 1024;
    uint8_t *big = calloc(1, len);
    nq_chunk ch = {big, len};
    nq_future *f = NULL;
    CHECK_OK(nq_put(s, &ch, 1, &ghost, 1, &f));
    CHECK_RC(nq_future_wait(f, 200), NQ_ETIMEDOUT);
    close(fd);
    CHECK_RC(nq_future_wait(f, WAIT_MS), NQ_ECONNRESET);
    nq_future_free(f);
    free(big);
    nq_destroy(s);
    return 0;
}

static int test_server_vanishing_fails_client(void)
{
    /* A listener that accepts and then drops the connection. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 4) == 0);
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", ntohs(a.sin_port), NULL));
    int fd = accept(lfd, NULL, NULL);
    CHECK(fd >= 0);
    uint8_t ini[24];
    CHECK(nqt_raw_read_all(fd, ini, sizeof(ini), 2000) == 24);
    close(fd);
    close(lfd);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNRESET);
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_ECONNRESET);
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_close(c), NQ_ECONNRESET);
    CHECK(nqt_now_ms() - t0 < 2000);
    nq_destroy(c);
    return 0;
}

static int test_close_timeout_bounds_a_silent_server(void)
{
    /* A listener that accepts and never answers FIN. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 4) == 0);
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    nq_opts *o = nqt_opts("127.0.0.1", ntohs(a.sin_port), NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 300));
    nq_comm *c = open_with(NQ_CLIENT, o);
    int fd = accept(lfd, NULL, NULL);
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_close(c), NQ_ETIMEDOUT);
    CHECK(nqt_now_ms() - t0 < 3000);
    nq_destroy(c);
    close(fd);
    close(lfd);
    return 0;
}

/* ---- hostile input ------------------------------------------------------------ */

/* Runs one hostile connection against a server with a good client, and
 * checks that only the hostile one is dropped, with the counter. */
static int hostile_case(const void *bytes, size_t len, int close_after, nq_stat_id counter)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_MESSAGE_SIZE, 1024 * 1024));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 300));
    nq_comm *s = open_with(NQ_SERVER, o);
    nq_comm *good = client_of(s, NULL);
    CHECK(nqt_round_trip(s, good) == 0);
    int fd = nqt_raw_connect(nqt_port(s));
    CHECK(write(fd, bytes, len) == (ssize_t)len);
    if (close_after) {
        shutdown(fd, SHUT_WR);
    }
    CHECK(nqt_wait_stat(s, counter, 1) == 0);
    /* The server dropped the hostile connection: we read EOF. */
    uint8_t junk[64];
    CHECK(nqt_raw_read_all(fd, junk, sizeof(junk), 2000) >= 0);
    close(fd);
    CHECK(nqt_round_trip(s, good) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK_OK(nq_close(good));
    CHECK_OK(nq_close(s));
    nq_destroy(good);
    nq_destroy(s);
    return 0;
}

static int test_garbage_bytes_close_only_that_connection(void)
{
    const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    return hostile_case(garbage, sizeof(garbage) - 1, 0, NQ_STAT_PROTOCOL_ERRORS);
}

static int test_first_message_not_ini_is_rejected(void)
{
    uint8_t frame[8 + 5];
    nqt_put_header(frame, 5);
    memcpy(frame + 8, "hello", 5);
    return hostile_case(frame, sizeof(frame), 0, NQ_STAT_PROTOCOL_ERRORS);
}

static int test_huge_length_header_allocates_nothing(void)
{
    uint8_t frame[8 + 24];
    nqt_put_header(frame, 16);
    nq_id id;
    nq_id_random(&id);
    memcpy(frame + 8, id.bytes, 16);
    nqt_put_header(frame + 24, UINT64_C(1) << 63);
    return hostile_case(frame, sizeof(frame), 0, NQ_STAT_PROTOCOL_ERRORS);
}

static int test_length_over_message_size_is_rejected(void)
{
    uint8_t frame[8 + 24];
    nqt_put_header(frame, 16);
    nq_id id;
    nq_id_random(&id);
    memcpy(frame + 8, id.bytes, 16);
    nqt_put_header(frame + 24, 1024 * 1024 + 1);
    return hostile_case(frame, sizeof(frame), 0, NQ_STAT_PROTOCOL_ERRORS);
}

static int test_frame_cut_by_eof_is_a_lost_connection(void)
{
    uint8_t frame[8 + 24 + 3];
    nqt_put_header(frame, 16);
    nq_id id;
    nq_id_random(&id);
    memcpy(frame + 8, id.bytes, 16);
    nqt_put_header(frame + 24, 100);
    memcpy(frame + 32, "abc", 3);
    return hostile_case(frame, sizeof(frame), 1, NQ_STAT_CONNECTIONS_LOST);
}

static int test_silent_connections_time_out(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 300));
    nq_comm *s = open_with(NQ_SERVER, o);
    enum { FLOOD = 200 };
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = nqt_raw_connect(nqt_port(s));
    }
    nq_comm *good = client_of(s, NULL);
    CHECK(nqt_round_trip(s, good) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_HANDSHAKE_TIMEOUTS, FLOOD) == 0);
    for (int i = 0; i < FLOOD; i++) {
        close(fds[i]);
    }
    CHECK(nqt_round_trip(s, good) == 0);
    CHECK_OK(nq_close(good));
    CHECK_OK(nq_close(s));
    nq_destroy(good);
    nq_destroy(s);
    return 0;
}

/* ---- wire bytes ------------------------------------------------------------------ */

static int test_wire_handshake_bytes(void)
{
    nq_comm *s = server_on("127.0.0.1");
    nq_id sid, cid;
    nq_comm_id(s, &sid);
    nq_id_random(&cid);
    int fd = nqt_raw_connect(nqt_port(s));
    /* The server says nothing before the client speaks. */
    uint8_t buf[256];
    CHECK(nqt_raw_read_all(fd, buf, sizeof(buf), 200) == 0);
    CHECK(nqt_raw_send_frame(fd, cid.bytes, 16) == 0);
    CHECK(nqt_raw_send_frame(fd, "data", 4) == 0);
    CHECK(nqt_expect(s, "data", 4, &cid) == 0);
    CHECK_OK(nqt_put_wait(s, "back", 4, &cid, 1));
    CHECK(nqt_raw_send_frame(fd, cid.bytes, 16) == 0); /* FIN */
    ssize_t n = nqt_raw_read_all(fd, buf, sizeof(buf), 3000);
    /* INI, data, FIN, then EOF. */
    CHECK(n == 24 + 12 + 24);
    uint8_t h[8];
    nqt_put_header(h, 16);
    CHECK(memcmp(buf, h, 8) == 0 && memcmp(buf + 8, sid.bytes, 16) == 0);
    nqt_put_header(h, 4);
    CHECK(memcmp(buf + 24, h, 8) == 0 && memcmp(buf + 32, "back", 4) == 0);
    nqt_put_header(h, 16);
    CHECK(memcmp(buf + 36, h, 8) == 0 && memcmp(buf + 44, sid.bytes, 16) == 0);
    close(fd);
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

static int test_client_speaks_first_and_finishes_last(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 4) == 0);
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    nq_id cid, sid;
    nq_id_random(&cid);
    nq_id_random(&sid);
    nq_comm *c = open_with(NQ_CLIENT, nqt_opts("127.0.0.1", ntohs(a.sin_port), &cid));
    CHECK_OK(nq_put(c, (nq_chunk[]){{"abc", 3}}, 1, NULL, 0, NULL));
    int fd = accept(lfd, NULL, NULL);
    uint8_t buf[64];
    /* INI then data, without waiting for the server's INI. */
    CHECK(nqt_raw_read_all(fd, buf, 24 + 11, 3000) == 35);
    CHECK(memcmp(buf + 8, cid.bytes, 16) == 0);
    CHECK(memcmp(buf + 32, "abc", 3) == 0);
    CHECK(nqt_raw_send_frame(fd, sid.bytes, 16) == 0);
    struct closer cl = {c, -100, 0};
    pthread_t t;
    pthread_create(&t, NULL, close_thread, &cl);
    CHECK(nqt_raw_read_all(fd, buf, 24, 3000) == 24); /* client FIN */
    CHECK(memcmp(buf + 8, cid.bytes, 16) == 0);
    usleep(100 * 1000);
    CHECK(cl.done_at == 0); /* waits for the server's FIN */
    CHECK(nqt_raw_send_frame(fd, sid.bytes, 16) == 0);
    pthread_join(t, NULL);
    CHECK_OK(cl.result);
    nq_id got;
    CHECK_OK(nq_server_id(c, &got));
    CHECK(nq_id_equal(&got, &sid));
    nq_destroy(c);
    close(fd);
    close(lfd);
    return 0;
}

/* ---- TLS ------------------------------------------------------------------------- */

static char tls_dir[64];

/* Makes a self-signed certificate naming the hosts in san. */
static int make_cert_for(const char *name, const char *san)
{
    if (tls_dir[0] == 0 && nqt_temp_dir(tls_dir, "nqtls") != 0) {
        return 1;
    }
    return nqt_make_cert(tls_dir, name, san);
}

static int make_cert(const char *name)
{
    return make_cert_for(name, "DNS:localhost,IP:127.0.0.1");
}

static void tls_paths(const char *name, char *key, char *cert)
{
    snprintf(key, 128, "%s/%s.key", tls_dir, name);
    snprintf(cert, 128, "%s/%s.pem", tls_dir, name);
}

static nq_comm *tls_server(const char *name)
{
    char key[128], cert[128];
    tls_paths(name, key, cert);
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_opts_set_tls(o, key, cert);
    return open_with(NQ_SERVER, o);
}

static nq_comm *tls_client(nq_comm *s, const char *host, const char *trust)
{
    char key[128], cert[128];
    tls_paths(trust, key, cert);
    nq_opts *o = nqt_opts(host, nqt_port(s), NULL);
    nq_opts_set_tls(o, NULL, cert);
    return open_with(NQ_CLIENT, o);
}

static int test_tls_exchange_with_trusted_certificate(void)
{
    CHECK(make_cert("good") == 0);
    nq_comm *s = tls_server("good");
    CHECK(s != NULL);
    nq_comm *c = tls_client(s, "127.0.0.1", "good");
    CHECK(nqt_round_trip(s, c) == 0);
    size_t len = 3 * 1024 * 1024 + 5;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i ^ (i >> 9));
    }
    CHECK_OK(nqt_put_wait(c, buf, len, NULL, 0));
    CHECK(nqt_expect(s, buf, len, NULL) == 0);
    for (uint32_t i = 0; i < 2000; i++) {
        nq_chunk ch = {&i, sizeof(i)};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, NULL));
    }
    for (uint32_t i = 0; i < 2000; i++) {
        CHECK(nqt_expect(s, &i, sizeof(i), NULL) == 0);
    }
    nq_comm *c2 = tls_client(s, "localhost", "good");
    CHECK(nqt_round_trip(s, c2) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(c2));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(c2);
    nq_destroy(s);
    free(buf);
    return 0;
}

static int test_tls_untrusted_certificate_fails_cleanly(void)
{
    CHECK(make_cert("good") == 0);
    CHECK(make_cert("other") == 0);
    nq_comm *s = tls_server("good");
    nq_comm *c = tls_client(s, "127.0.0.1", "other");
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_ETLS);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ETLS);
    CHECK_RC(nq_close(c), NQ_ETLS);
    nq_destroy(c);
    CHECK(nqt_wait_stat(s, NQ_STAT_TLS_ERRORS, 1) == 0);
    /* The server goes on serving good clients. */
    nq_comm *ok = tls_client(s, "127.0.0.1", "good");
    CHECK(nqt_round_trip(s, ok) == 0);
    nq_destroy(ok);
    nq_destroy(s);
    return 0;
}

static int test_tls_wrong_host_name_fails(void)
{
    /* Trusted, but issued to another host. */
    CHECK(make_cert_for("elsewhere", "DNS:elsewhere.invalid") == 0);
    nq_comm *s = tls_server("elsewhere");
    nq_comm *c = tls_client(s, "127.0.0.1", "elsewhere");
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_ETLS);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_tls_plain_client_cannot_confuse_server(void)
{
    CHECK(make_cert("good") == 0);
    nq_comm *s = tls_server("good");
    nq_comm *plain = client_of(s, NULL);
    nq_msg *m = NULL;
    CHECK(nq_get(plain, WAIT_MS, &m) != NQ_OK);
    nq_destroy(plain);
    nq_comm *ok = tls_client(s, "127.0.0.1", "good");
    CHECK(nqt_round_trip(s, ok) == 0);
    nq_destroy(ok);
    nq_destroy(s);
    return 0;
}

static int test_tls_bad_key_files_fail_at_open(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_opts_set_tls(o, "/nonexistent.key", "/nonexistent.pem");
    nq_comm *s = NULL;
    CHECK_RC(nq_open(NQ_TCP, NQ_SERVER, o, &s), NQ_ETLS);
    /* A server without a key is a usage error. */
    nq_opts_set_tls(o, NULL, "/nonexistent.pem");
    CHECK_RC(nq_open(NQ_TCP, NQ_SERVER, o, &s), NQ_EINVAL);
    nq_opts_free(o);
    return 0;
}

/* Unknown protocols are invalid; a protocol this libnq was built without
 * (-DNQ_WITH_MQTT=OFF, -DNQ_WITH_GRPC=OFF) is not supported, in both roles. */
static int test_other_protocols_are_reported_unsupported(void)
{
    nq_comm *c = NULL;
    CHECK_RC(nq_open((nq_protocol)3, NQ_CLIENT, NULL, &c), NQ_EINVAL);
    CHECK_RC(nq_open((nq_protocol)42, NQ_CLIENT, NULL, &c), NQ_EINVAL);
    const nq_protocol left_out[] = {
#ifndef NQ_WITH_MQTT
        NQ_MQTT,
#endif
#ifndef NQ_WITH_GRPC
        NQ_GRPC,
#endif
        NQ_TCP /* end */
    };
    for (size_t i = 0; left_out[i] != NQ_TCP; i++) {
        CHECK_RC(nq_open(left_out[i], NQ_CLIENT, NULL, &c), NQ_ENOTSUP);
        CHECK_RC(nq_open(left_out[i], NQ_SERVER, NULL, &c), NQ_ENOTSUP);
    }
    CHECK(c == NULL);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_put_get_both_ways),
    TEST(test_put_before_connect_is_delivered),
    TEST(test_broadcast_reaches_every_client),
    TEST(test_broadcast_with_no_clients_succeeds),
    TEST(test_targeted_put_reaches_only_that_client),
    TEST(test_put_to_unknown_peer_fails),
    TEST(test_zero_and_sixteen_byte_payloads),
    TEST(test_small_payloads_arrive_intact_and_aligned),
    TEST(test_large_message_arrives_intact),
    TEST(test_ten_thousand_messages_keep_order),
    TEST(test_future_callbacks_run),
    TEST(test_get_after_close_drains_then_reports_closed),
    TEST(test_readiness_descriptor_is_level_triggered),
    TEST(test_get_from_leaves_other_peers_in_order),
    TEST(test_cancel_after_completion_changes_nothing),
    TEST_TCP(test_cancel_withdraws_what_waits_behind_a_large_message),
    TEST(test_server_close_waits_for_clients),
    TEST(test_close_flushes_pending_data),
    TEST(test_reconnect_with_same_id_is_served),
    TEST_TCP(test_unreachable_server_fails_futures_and_get),
    TEST_TCP(test_unresolvable_host_fails_cleanly),
    TEST_TCP(test_address_in_use_is_reported),
    TEST_TCP(test_ipv6_and_host_names),
    TEST_TCP(test_workers_share_clients),
    TEST_TCP(test_queue_size_holds_sender_back_without_loss),
    TEST(test_drop_oldest_keeps_a_flooding_peers_newest),
    TEST(test_admission_refusal_is_never_served),
    TEST(test_send_limit_refuses_copies),
    TEST(test_values_use_the_serializer),
    TEST_TCP(test_peer_vanishing_without_fin_is_detected),
    TEST_TCP(test_pending_futures_fail_when_peer_dies),
    TEST_TCP(test_server_vanishing_fails_client),
    TEST_TCP(test_close_timeout_bounds_a_silent_server),
    TEST_TCP(test_garbage_bytes_close_only_that_connection),
    TEST_TCP(test_first_message_not_ini_is_rejected),
    TEST_TCP(test_huge_length_header_allocates_nothing),
    TEST_TCP(test_length_over_message_size_is_rejected),
    TEST_TCP(test_frame_cut_by_eof_is_a_lost_connection),
    TEST_TCP(test_silent_connections_time_out),
    TEST_TCP(test_wire_handshake_bytes),
    TEST_TCP(test_client_speaks_first_and_finishes_last),
    TEST_TCP(test_tls_exchange_with_trusted_certificate),
    TEST_TCP(test_tls_untrusted_certificate_fails_cleanly),
    TEST_TCP(test_tls_wrong_host_name_fails),
    TEST_TCP(test_tls_plain_client_cannot_confuse_server),
    TEST_TCP(test_tls_bad_key_files_fail_at_open),
    TEST_TCP(test_other_protocols_are_reported_unsupported),
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "mqtt") == 0) {
        g_proto = NQ_MQTT;
        if (nqt_broker_start(&g_broker, NULL, NULL) != 0) {
            return 1;
        }
    }
    if (argc > 1 && strcmp(argv[1], "grpc") == 0) {
        g_proto = NQ_GRPC;
    }
    if (argc > 1 && (strcmp(argv[1], "mqtt") == 0 || strcmp(argv[1], "tcp") == 0 ||
                     strcmp(argv[1], "grpc") == 0)) {
        argc--;
        argv++;
    }
    int rv = run_tests_for(tests, TEST_COUNT(tests), argc, argv, g_proto == NQ_TCP);
    if (g_proto == NQ_MQTT) {
        nqt_broker_stop(&g_broker, SIGTERM);
    }
    if (tls_dir[0] != 0) {
        nqt_remove_dir(tls_dir);
    }
    return rv;
}
