/*
 * deploy_peer: the libnq side of the deployment tests (deploy.sh).  The
 * script starts the infrastructure (bridged mosquitto brokers, haproxy,
 * nginx) from the configurations beside it; this program opens libnq
 * servers and clients on either side of it and checks the contract through
 * it, or measures how fast messages cross it.
 *
 *   deploy_peer ports N
 *       prints N distinct ports that were free a moment ago
 *   deploy_peer certs
 *       makes the test certificates (tests/peers.h) and prints their
 *       directory
 *   deploy_peer mqtt --hub PORT --leaf PORT [--leaf PORT]
 *       the MQTT cases: servers attached to one broker, clients to others
 *   deploy_peer proxy --protocol tcp|grpc --front PORT --backends P1,P2
 *                     [--certs DIR] [--proxy-pid PID [--proxy-cmd CMD]]
 *       the proxy cases: two servers on the backend ports, clients through
 *       the proxy's front port (TLS with --certs: the servers present
 *       DIR/server, the clients trust DIR/ca); with the proxy's process id,
 *       last, it stops the proxy, and with the shell command that starts
 *       it, starts it again for a client that reconnects
 *   deploy_peer idle --protocol grpc --front PORT --backends P1,P2
 *                    --idle-ms MS
 *       the idle case: a proxy that ends a stream idle for MS (nginx's
 *       grpc_read_timeout and client_body_timeout) never ends libnq's,
 *       whose heartbeat crosses it
 *   deploy_peer bench --protocol P --servers P1[,P2] --front PORT
 *                     [--certs DIR] [--count N] [--size S] [--runs R]
 *       servers on the listed ports (over MQTT: one server, attached to the
 *       broker P1), a client through PORT; prints the median time of R runs
 *       of N messages of S bytes from the client to its server
 *   deploy_peer many --protocol P --port PORT --clients N [--certs DIR]
 *       a server in a process of its own on PORT (over MQTT: the broker),
 *       N clients that each say hello and get their echo; prints how long
 *       they took and the server's resident memory before and after
 *   deploy_peer hold --protocol P --role client|server --port PORT --id UUID
 *                    [--prefix X] [--certs DIR]
 *       one peer in a process of its own, for the cases that kill it:
 *       a client says hello and waits for the echo, a server echoes; then
 *       it prints "ready" and waits to be killed
 *
 * Every case prints "PASS name" or explains what failed on standard error;
 * the exit status is 0 when every case passed.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "peers.h"

#define MAX_PEERS 64
#define MAX_CLIENTS 16
/* A message whose sequence number is PING is answered even by a counting
 * server, and is not part of any sequence. */
#define PING 0xffffffffu

/* ------------------------------------------------------------------------ */
/* Peers                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct topology {
    nq_protocol protocol;
    const char *certs;  /* TLS when not NULL */
    const char *prefix; /* MQTT topic prefix, or NULL */
    int acked;          /* both sides ask for NQ_DELIVERY_ACKED */
} topology;

/* NQ_OPT_KEEPALIVE_MS of every peer, or 0 for the default. */
static int peer_keepalive_ms;

/* A server that echoes every message to its sender (or, counting, only
 * pings) and checks that each peer's sequence numbers arrive in order. */
typedef struct server {
    nq_comm *comm;
    nq_id id;
    int counting;
    pthread_t thread;
    nqt_recorder events;
    pthread_mutex_t mu;
    nq_id peers[MAX_PEERS];
    uint32_t next[MAX_PEERS];
    int npeers;
    atomic_int disorder;
    atomic_long received;
} server;

/* What a case left open when it failed, closed before the next one (the
 * servers live in static storage, so that their threads never outlive
 * it). */
static server *live_servers[16];
static nq_comm *live_clients[64];

static void track(void **list, size_t cap, void *item, void *replace)
{
    for (size_t i = 0; i < cap; i++) {
        if (list[i] == replace) {
            list[i] = item;
            return;
        }
    }
}
#define TRACK(list, item) track((void **)(list), TEST_COUNT(list), (item), NULL)
#define UNTRACK(list, item) track((void **)(list), TEST_COUNT(list), NULL, (item))

static nq_opts *peer_opts(const topology *t, uint16_t port, const nq_id *id)
{
    nq_opts *o = nqt_opts("127.0.0.1", port, id);
    /* A case that fails must not hang on a close handshake that cannot
     * finish. */
    nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 5000);
    if (t->acked) {
        nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED);
    }
    if (peer_keepalive_ms > 0) {
        nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, peer_keepalive_ms);
    }
    if (t->prefix != NULL) {
        nq_opts_set_mqtt_prefix(o, t->prefix);
    }
    return o;
}

/* A message's bytes, sender and sequence number (PING when it has none). */
static uint32_t read_msg(const nq_msg *m, const void **data, size_t *len, nq_id *peer)
{
    nq_msg_data(m, data, len);
    nq_msg_peer(m, peer);
    uint32_t seq = PING;
    if (*len >= sizeof(seq)) {
        memcpy(&seq, *data, sizeof(seq));
    }
    return seq;
}

/* The sequence check of one message from peer. */
static void server_check_order(server *s, const nq_id *peer, uint32_t seq)
{
    pthread_mutex_lock(&s->mu);
    int i = 0;
    while (i < s->npeers && !nq_id_equal(&s->peers[i], peer)) {
        i++;
    }
    if (i == s->npeers && i < MAX_PEERS) {
        s->peers[i] = *peer;
        s->next[i] = 0;
        s->npeers++;
    }
    if (i < MAX_PEERS) {
        if (seq != s->next[i]) {
            atomic_fetch_add(&s->disorder, 1);
        }
        s->next[i] = seq + 1;
    }
    pthread_mutex_unlock(&s->mu);
}

static void *server_loop(void *arg)
{
    server *s = arg;
    for (;;) {
        nq_msg *m = NULL;
        int rv = nq_get(s->comm, 200, &m);
        if (rv == NQ_ETIMEDOUT) {
            continue;
        }
        if (rv != NQ_OK) {
            break; /* closed */
        }
        const void *data;
        size_t len;
        nq_id peer;
        uint32_t seq = read_msg(m, &data, &len, &peer);
        if (seq != PING) {
            server_check_order(s, &peer, seq);
            atomic_fetch_add(&s->received, 1);
        }
        if (!s->counting || seq == PING) {
            nq_chunk ch = {data, len};
            /* The peer may be gone already; its own checks tell. */
            (void)nq_put(s->comm, &ch, 1, &peer, 1, NULL);
        }
        nq_msg_free(m);
    }
    return NULL;
}

static int server_open_as(server *s, const topology *t, uint16_t port, int counting,
                          const nq_id *id)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    nqt_recorder_init(&s->events);
    s->id = *id;
    s->counting = counting;
    nq_opts *o = peer_opts(t, port, &s->id);
    nq_opts_set_events(o, nqt_record, &s->events);
    if (t->certs != NULL && t->protocol != NQ_MQTT) {
        nq_opts_set_tls(o, nqt_path(t->certs, "server", "key"),
                        nqt_path(t->certs, "server", "pem"));
    }
    s->comm = nqt_open(t->protocol, NQ_SERVER, o);
    if (s->comm == NULL) {
        fprintf(stderr, "server on port %u did not open\n", (unsigned)port);
        return 1;
    }
    if (pthread_create(&s->thread, NULL, server_loop, s) != 0) {
        nq_destroy(s->comm);
        s->comm = NULL;
        return 1;
    }
    TRACK(live_servers, s);
    return 0;
}

static int server_open(server *s, const topology *t, uint16_t port, int counting)
{
    nq_id id;
    nq_id_random(&id);
    return server_open_as(s, t, port, counting, &id);
}

static void server_close(server *s)
{
    if (s->comm != NULL) {
        nq_close(s->comm);
        pthread_join(s->thread, NULL);
        nq_destroy(s->comm);
        s->comm = NULL;
        UNTRACK(live_servers, s);
    }
}

/* How many DISCONNECTED events with this reason (or, with any, with any
 * reason but NQ_OK) the server has seen. */
static int server_disconnects(server *s, int reason, int any)
{
    int n = 0;
    for (int i = 0; i < nqt_events(&s->events); i++) {
        nq_event ev = nqt_event(&s->events, i);
        if (ev.type == NQ_EVENT_DISCONNECTED &&
            (any ? ev.reason != NQ_OK : ev.reason == reason)) {
            n++;
        }
    }
    return n;
}

static int wait_disconnects(server *s, int reason, int any, int want, int64_t ms)
{
    int64_t until = nqt_now_ms() + ms;
    while (server_disconnects(s, reason, any) < want && nqt_now_ms() < until) {
        usleep(5000);
    }
    return server_disconnects(s, reason, any) >= want ? 0 : 1;
}

/* Clients opened through the proxy's front port, in this process and in
 * processes of their own. */
static int through_front;
static uint16_t front;

/* A client; with events, its events are recorded there, and with
 * reconnect_ms > 0 it reconnects after a loss. */
static nq_comm *client_open_with(const topology *t, uint16_t port, const nq_id *id,
                                 const char *trust, nqt_recorder *events, int reconnect_ms)
{
    through_front += port == front;
    nq_opts *o = peer_opts(t, port, id);
    if (events != NULL) {
        nq_opts_set_events(o, nqt_record, events);
    }
    if (reconnect_ms > 0) {
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, reconnect_ms);
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 200);
    }
    if (trust != NULL) {
        nq_opts_set_tls(o, NULL, trust);
    } else if (t->certs != NULL && t->protocol != NQ_MQTT) {
        nq_opts_set_tls(o, NULL, nqt_path(t->certs, "ca", "pem"));
    }
    nq_comm *c = nqt_open(t->protocol, NQ_CLIENT, o);
    if (c != NULL) {
        TRACK(live_clients, c);
    }
    return c;
}

static nq_comm *client_open(const topology *t, uint16_t port, const nq_id *id, const char *trust)
{
    return client_open_with(t, port, id, trust, NULL, 0);
}

static void client_drop(nq_comm *c)
{
    if (c != NULL) {
        UNTRACK(live_clients, c);
        nq_destroy(c);
    }
}

static void close_what_is_left(void)
{
    for (size_t i = 0; i < TEST_COUNT(live_clients); i++) {
        client_drop(live_clients[i]);
    }
    for (size_t i = 0; i < TEST_COUNT(live_servers); i++) {
        if (live_servers[i] != NULL) {
            server_close(live_servers[i]);
        }
    }
}

static int put_seq(nq_comm *c, uint32_t seq, size_t size)
{
    uint8_t buf[65536];
    if (size > sizeof(buf)) {
        size = sizeof(buf);
    }
    memset(buf, 'x', size);
    memcpy(buf, &seq, sizeof(seq) <= size ? sizeof(seq) : size);
    nq_chunk ch = {buf, size};
    return nq_put(c, &ch, 1, NULL, 0, NULL);
}

/* A round trip that is no part of any sequence: the client is connected,
 * and knows its server. */
static int ping(nq_comm *c)
{
    CHECK_OK(put_seq(c, PING, 64));
    nq_msg *m = NULL;
    CHECK_OK(nq_get(c, NQT_WAIT_MS, &m));
    nq_msg_free(m);
    return 0;
}

/* What a failed exchange leaves to go on: the counters of the client and of
 * each server, and the last events each server saw. */
static void describe(const char *who, nq_comm *c)
{
    static const struct {
        nq_stat_id id;
        const char *name;
    } stats[] = {{NQ_STAT_MSGS_OUT, "out"},           {NQ_STAT_MSGS_IN, "in"},
                 {NQ_STAT_PEERS, "peers"},            {NQ_STAT_CONNECTIONS, "connections"},
                 {NQ_STAT_CONNECTIONS_LOST, "lost"},  {NQ_STAT_RECONNECTS, "reconnects"},
                 {NQ_STAT_HANDSHAKE_TIMEOUTS, "ini timeouts"}, {NQ_STAT_PROTOCOL_ERRORS,
                                                                 "protocol errors"}};
    fprintf(stderr, "  %s:", who);
    for (size_t i = 0; i < sizeof(stats) / sizeof(stats[0]); i++) {
        fprintf(stderr, " %s %" PRId64, stats[i].name, nqt_stat(c, stats[i].id));
    }
    fprintf(stderr, "\n");
}

/* The last (at most) n events of r, each on a line of its own. */
static void describe_events(const char *who, nqt_recorder *r, int n)
{
    int nevents = nqt_events(r);
    for (int e = nevents > n ? nevents - n : 0; e < nevents; e++) {
        nq_event ev = nqt_event(r, e);
        char id[NQ_ID_STRLEN];
        nq_id_format(&ev.peer, id, sizeof(id));
        fprintf(stderr, "    %s event %d peer %s reason %d\n", who, ev.type, id, ev.reason);
    }
}

static void describe_all(nq_comm *client, server *servers, int nservers)
{
    describe("client", client);
    for (int j = 0; j < nservers; j++) {
        char name[32];
        snprintf(name, sizeof(name), "server %d", j);
        describe(name, servers[j].comm);
        describe_events(name, &servers[j].events, 16);
    }
}

/* Each client puts count messages of size bytes, numbered from first, all
 * of them before any echo is read; then each reads its echoes, which must
 * come back in order and from one server, whose index among servers goes
 * into landed[i]. */
static int exchange_from(nq_comm **clients, int n, uint32_t first, int count, size_t size,
                         server *servers, int nservers, int *landed)
{
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < count; k++) {
            CHECK_OK(put_seq(clients[i], first + (uint32_t)k, size));
        }
    }
    for (int i = 0; i < n; i++) {
        nq_id from = {{0}};
        for (int k = 0; k < count; k++) {
            nq_msg *m = NULL;
            int rv = nq_get(clients[i], NQT_WAIT_MS, &m);
            if (rv != NQ_OK) {
                fprintf(stderr, "client %d, echo %d: %s\n", i, k, nq_strerror(rv));
                describe_all(clients[i], servers, nservers);
                return 1;
            }
            const void *data;
            size_t len;
            nq_id peer;
            uint32_t seq = read_msg(m, &data, &len, &peer);
            nq_msg_free(m);
            if (len != size || seq != first + (uint32_t)k) {
                fprintf(stderr, "client %d: echo %u of %zu bytes where %u of %zu was due\n", i,
                        seq, len, first + (uint32_t)k, size);
                return 1;
            }
            if (k == 0) {
                from = peer;
            }
            CHECK(nq_id_equal(&from, &peer));
        }
        nq_id sid;
        CHECK_OK(nq_server_id(clients[i], &sid));
        CHECK(nq_id_equal(&sid, &from));
        landed[i] = -1;
        for (int j = 0; j < nservers; j++) {
            if (nq_id_equal(&servers[j].id, &sid)) {
                landed[i] = j;
            }
        }
        CHECK(landed[i] >= 0);
    }
    return 0;
}

static int exchange(nq_comm **clients, int n, int count, size_t size, server *servers,
                    int nservers, int *landed)
{
    return exchange_from(clients, n, 0, count, size, servers, nservers, landed);
}

static int close_clients(nq_comm **clients, int n)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (clients[i] == NULL) {
            continue;
        }
        int rv = nq_close(clients[i]);
        if (rv != NQ_OK) {
            fprintf(stderr, "client %d closed with %s\n", i, nq_strerror(rv));
            failed = 1;
        }
        client_drop(clients[i]);
        clients[i] = NULL;
    }
    return failed;
}

/* ------------------------------------------------------------------------ */
/* Peers in processes of their own                                           */
/* ------------------------------------------------------------------------ */

typedef struct child {
    pid_t pid;
    FILE *out;
} child;

/* Starts this program in hold mode and waits (10 s at most) for its
 * "ready". */
static int hold_start(child *ch, const topology *t, const char *role, uint16_t port,
                      const nq_id *id)
{
    char idtext[NQ_ID_STRLEN];
    char porttext[8];
    nq_id_format(id, idtext, sizeof(idtext));
    snprintf(porttext, sizeof(porttext), "%u", (unsigned)port);
    const char *proto = t->protocol == NQ_MQTT ? "mqtt" : t->protocol == NQ_GRPC ? "grpc" : "tcp";
    const char *argv[16] = {"deploy_peer", "hold", "--protocol", proto, "--role", role,
                            "--port", porttext, "--id", idtext};
    int argc = 10;
    if (t->prefix != NULL) {
        argv[argc++] = "--prefix";
        argv[argc++] = t->prefix;
    }
    if (t->certs != NULL) {
        argv[argc++] = "--certs";
        argv[argc++] = t->certs;
    }
    argv[argc] = NULL;
    through_front += port == front && strcmp(role, "client") == 0;
    int fds[2];
    CHECK(pipe(fds) == 0);
    ch->pid = fork();
    CHECK(ch->pid >= 0);
    if (ch->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    ch->out = fdopen(fds[0], "r");
    CHECK(ch->out != NULL);
    char line[64] = "";
    if (fgets(line, sizeof(line), ch->out) == NULL || strcmp(line, "ready\n") != 0) {
        fprintf(stderr, "the %s in its own process did not get ready\n", role);
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, NULL, 0);
        fclose(ch->out);
        return 1;
    }
    return 0;
}

static void hold_kill(child *ch)
{
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, NULL, 0);
    fclose(ch->out);
}

static int hold(const topology *t, const char *role, uint16_t port, const nq_id *id)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (strcmp(role, "server") == 0) {
        static server s;
        if (server_open_as(&s, t, port, 0, id) != 0) {
            return 1;
        }
    } else {
        nq_opts *o = peer_opts(t, port, id);
        if (t->certs != NULL && t->protocol != NQ_MQTT) {
            nq_opts_set_tls(o, NULL, nqt_path(t->certs, "ca", "pem"));
        }
        nq_comm *c = nqt_open(t->protocol, NQ_CLIENT, o);
        if (c == NULL || nqt_put_wait(c, "hello", 5, NULL, 0) != NQ_OK ||
            nqt_expect(c, "hello", 5, NULL) != 0) {
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        pause();
    }
}

/* ------------------------------------------------------------------------ */
/* MQTT across a bridge                                                      */
/* ------------------------------------------------------------------------ */

static uint16_t hub;
static uint16_t leaves[2];
static int nleaves;

/* Servers attach to the hub, clients to the leaves in turn: every message
 * crosses the bridge both ways. */
static int test_order_and_fin_across_the_bridge(void)
{
    topology t = {NQ_MQTT, NULL, NULL, 0};
    static server s;
    CHECK(server_open(&s, &t, hub, 0) == 0);
    enum { N = 6 };
    nq_comm *clients[N] = {0};
    int landed[N];
    for (int i = 0; i < N; i++) {
        clients[i] = client_open(&t, leaves[i % nleaves], NULL, NULL);
        CHECK(clients[i] != NULL);
    }
    CHECK(exchange(clients, N, 200, 256, &s, 1, landed) == 0);
    CHECK(close_clients(clients, N) == 0);
    /* Each client's FIN crossed the bridge: the server saw it close. */
    CHECK(wait_disconnects(&s, NQ_OK, 0, N, NQT_WAIT_MS) == 0);
    CHECK(atomic_load(&s.disorder) == 0);
    CHECK(atomic_load(&s.received) == N * 200);
    server_close(&s);
    return 0;
}

static int test_killed_client_is_noticed_through_its_will(void)
{
    topology t = {NQ_MQTT, NULL, NULL, 0};
    static server s;
    CHECK(server_open(&s, &t, hub, 0) == 0);
    nq_id id;
    nq_id_random(&id);
    child ch;
    CHECK(hold_start(&ch, &t, "client", leaves[nleaves - 1], &id) == 0);
    int64_t killed = nqt_now_ms();
    hold_kill(&ch);
    int rv = wait_disconnects(&s, 0, 1, 1, NQT_WAIT_MS);
    printf("killed client noticed after %" PRId64 " ms\n", nqt_now_ms() - killed);
    CHECK(rv == 0);
    CHECK(server_disconnects(&s, NQ_ECONNRESET, 0) == 1);
    server_close(&s);
    return 0;
}

static int test_killed_server_is_noticed_through_its_will(void)
{
    topology t = {NQ_MQTT, NULL, NULL, 0};
    nq_id id;
    nq_id_random(&id);
    child ch;
    CHECK(hold_start(&ch, &t, "server", hub, &id) == 0);
    nq_comm *c = client_open(&t, leaves[0], NULL, NULL);
    if (c == NULL || nqt_put_wait(c, "hello", 5, NULL, 0) != NQ_OK ||
        nqt_expect(c, "hello", 5, &id) != 0) {
        /* Another server on these topics would answer the next cases. */
        hold_kill(&ch);
        client_drop(c);
        fprintf(stderr, "the server in its own process did not answer\n");
        return 1;
    }
    int64_t killed = nqt_now_ms();
    hold_kill(&ch);
    nq_msg *m = NULL;
    int rv = nq_get(c, NQT_WAIT_MS, &m);
    printf("killed server noticed after %" PRId64 " ms\n", nqt_now_ms() - killed);
    CHECK_RC(rv, NQ_ECONNRESET);
    client_drop(c);
    return 0;
}

/* Acknowledged delivery is agreed across the bridge (on nq/ack/<hex>,
 * which it must carry), under a prefix too, and messages flow with it. */
static int test_acknowledged_delivery_is_agreed_across_the_bridge(void)
{
    const char *prefixes[2] = {NULL, "app1/"};
    for (int a = 0; a < 2; a++) {
        topology t = {NQ_MQTT, NULL, prefixes[a], 1};
        static server s;
        CHECK(server_open(&s, &t, hub, 0) == 0);
        nq_comm *c = client_open(&t, leaves[0], NULL, NULL);
        CHECK(c != NULL);
        int landed;
        CHECK(exchange(&c, 1, 50, 256, &s, 1, &landed) == 0);
        CHECK(nqt_stat(c, NQ_STAT_ACKED) == 1);
        CHECK(nqt_stat(s.comm, NQ_STAT_ACKED) == 1);
        CHECK(close_clients(&c, 1) == 0);
        server_close(&s);
    }
    return 0;
}

/* Three applications on the same brokers: net-queue's topics and two
 * prefixes, each server on a broker of its own, each application's clients
 * on all three.  No message crosses from one application to another. */
static int test_applications_with_prefixes_share_the_brokers(void)
{
    const char *prefixes[3] = {NULL, "app1/", "app2/"};
    uint16_t brokers[3] = {hub, leaves[0], leaves[nleaves - 1]};
    topology t[3];
    static server s[3];
    enum { PER_APP = 3 };
    nq_comm *clients[3][PER_APP] = {{0}};
    int landed[PER_APP];
    for (int a = 0; a < 3; a++) {
        t[a] = (topology){NQ_MQTT, NULL, prefixes[a], 0};
        CHECK(server_open(&s[a], &t[a], brokers[a], 0) == 0);
    }
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < PER_APP; i++) {
            clients[a][i] = client_open(&t[a], brokers[(a + 1 + i) % 3], NULL, NULL);
            CHECK(clients[a][i] != NULL);
        }
    }
    for (int a = 0; a < 3; a++) {
        if (exchange(clients[a], PER_APP, 50, 128, &s[a], 1, landed) != 0) {
            fprintf(stderr, "application %d (prefix %s) failed\n", a,
                    prefixes[a] != NULL ? prefixes[a] : "none");
            return 1;
        }
    }
    for (int a = 0; a < 3; a++) {
        size_t n = 0;
        nq_id ids[MAX_PEERS];
        CHECK_OK(nq_peers(s[a].comm, ids, MAX_PEERS, &n));
        CHECK(n == PER_APP);
        CHECK(atomic_load(&s[a].received) == PER_APP * 50);
        CHECK(atomic_load(&s[a].disorder) == 0);
        CHECK(close_clients(clients[a], PER_APP) == 0);
    }
    for (int a = 0; a < 3; a++) {
        CHECK(wait_disconnects(&s[a], NQ_OK, 0, PER_APP, NQT_WAIT_MS) == 0);
        server_close(&s[a]);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Through a proxy                                                           */
/* ------------------------------------------------------------------------ */

static topology proxied;
static uint16_t backends[2];
static pid_t proxy_pid;       /* 0: not known */
static const char *proxy_cmd; /* how to start it again, or NULL */
/* The two servers behind the proxy, opened by each case and closed after
 * it by close_what_is_left. */
static server backend[2];

static int open_backends_as(const topology *t)
{
    for (int j = 0; j < 2; j++) {
        CHECK(server_open(&backend[j], t, backends[j], 0) == 0);
    }
    return 0;
}

static int open_backends(void)
{
    return open_backends_as(&proxied);
}

/* One client (with id, if not NULL) through the proxy: count messages of
 * size bytes there and back, then a clean close.  landed: its server. */
static int through_one_client(const nq_id *id, int count, size_t size, int *landed)
{
    nq_comm *c = client_open(&proxied, front, id, NULL);
    CHECK(c != NULL);
    CHECK(exchange(&c, 1, count, size, backend, 2, landed) == 0);
    CHECK(close_clients(&c, 1) == 0);
    return 0;
}

/* Clients through the proxy are spread over both servers; each keeps its
 * server for the life of its connection (every echo comes from it, in
 * order), and its FIN reaches it. */
static int test_clients_keep_their_server(void)
{
    CHECK(open_backends() == 0);
    int n = MAX_CLIENTS;
    nq_comm *clients[MAX_CLIENTS] = {0};
    int landed[MAX_CLIENTS];
    for (int i = 0; i < n; i++) {
        /* One after the other, each answered before the next opens: the
         * case is about where clients land, not how many connect at once. */
        clients[i] = client_open(&proxied, front, NULL, NULL);
        CHECK(clients[i] != NULL);
        CHECK(ping(clients[i]) == 0);
    }
    CHECK(exchange(clients, n, 100, 256, backend, 2, landed) == 0);
    int on[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        on[landed[i]]++;
    }
    printf("clients per server: %d and %d\n", on[0], on[1]);
    CHECK(on[0] > 0 && on[1] > 0);
    for (int j = 0; j < 2; j++) {
        CHECK(atomic_load(&backend[j].received) == on[j] * 100);
        CHECK(atomic_load(&backend[j].disorder) == 0);
    }
    CHECK(close_clients(clients, n) == 0);
    for (int j = 0; j < 2; j++) {
        CHECK(wait_disconnects(&backend[j], NQ_OK, 0, on[j], NQT_WAIT_MS) == 0);
    }
    return 0;
}

/* One client's connection carries megabytes each way (nginx counts what a
 * gRPC client sends on its stream as one request body, and limits it unless
 * told not to). */
static int test_one_connection_carries_megabytes(void)
{
    CHECK(open_backends() == 0);
    int landed;
    return through_one_client(NULL, 4096, 1024, &landed);
}

/* Both sides ask for acknowledged delivery through the proxy, and agree on
 * the outcome: nginx passes the gRPC metadata that agrees on it; a TCP
 * proxy that drops urgent data (haproxy) makes them fall back, together.
 * Messages flow either way. */
static int test_acknowledged_delivery_through_the_proxy(void)
{
    topology t = proxied;
    t.acked = 1;
    CHECK(open_backends_as(&t) == 0);
    nq_comm *c = client_open(&t, front, NULL, NULL);
    CHECK(c != NULL);
    int landed;
    CHECK(exchange(&c, 1, 50, 256, backend, 2, &landed) == 0);
    int64_t agreed = nqt_stat(c, NQ_STAT_ACKED);
    printf("acknowledged delivery agreed: %s\n", agreed ? "yes" : "no, both fell back");
    CHECK(nqt_stat(backend[landed].comm, NQ_STAT_ACKED) == agreed);
    CHECK(t.protocol != NQ_GRPC || agreed == 1);
    CHECK(close_clients(&c, 1) == 0);
    return 0;
}

/* A client that connects again with the same id (a new gRPC call each
 * time) reaches the same server, whichever ids are chosen. */
static int test_a_client_id_always_reaches_the_same_server(void)
{
    CHECK(open_backends() == 0);
    for (int k = 0; k < 4; k++) {
        nq_id id;
        nq_id_random(&id);
        int first = -1;
        for (int again = 0; again < 3; again++) {
            int landed;
            CHECK(through_one_client(&id, 3, 64, &landed) == 0);
            if (again == 0) {
                first = landed;
            }
            CHECK(landed == first);
        }
    }
    return 0;
}

static int test_killed_client_is_noticed_through_the_proxy(void)
{
    CHECK(open_backends() == 0);
    nq_id id;
    nq_id_random(&id);
    child ch;
    CHECK(hold_start(&ch, &proxied, "client", front, &id) == 0);
    int64_t killed = nqt_now_ms();
    hold_kill(&ch);
    int64_t until = killed + NQT_WAIT_MS;
    while (server_disconnects(&backend[0], 0, 1) + server_disconnects(&backend[1], 0, 1) < 1 &&
           nqt_now_ms() < until) {
        usleep(5000);
    }
    printf("killed client noticed after %" PRId64 " ms\n", nqt_now_ms() - killed);
    CHECK(server_disconnects(&backend[0], NQ_ECONNRESET, 0) +
              server_disconnects(&backend[1], NQ_ECONNRESET, 0) ==
          1);
    return 0;
}

/* A client that trusts another certificate than the one the far end
 * presents is refused: what it checks is the server's (or, where the proxy
 * terminates TLS, the proxy's) own certificate. */
static int test_the_certificate_is_checked_through_the_proxy(void)
{
    CHECK(open_backends() == 0);
    nq_comm *c = client_open(&proxied, front, NULL, nqt_path(proxied.certs, "rogue", "pem"));
    CHECK(c != NULL);
    nq_msg *m = NULL;
    int rv = nq_get(c, NQT_WAIT_MS, &m);
    CHECK(rv == NQ_ETLS || rv == NQ_ECONNREFUSED);
    client_drop(c);
    int landed;
    return through_one_client(NULL, 3, 64, &landed);
}

/* The proxy stops (its process is told to, or dies): every client and
 * every server sees its peer lost, none waits on a dead connection.  The
 * last case, since the proxy stays down. */
static int test_a_stopped_proxy_is_a_lost_peer(void)
{
    CHECK(open_backends() == 0);
    enum { N = 4 };
    nq_comm *clients[N] = {0};
    int landed[N];
    for (int i = 0; i < N; i++) {
        clients[i] = client_open(&proxied, front, NULL, NULL);
        CHECK(clients[i] != NULL);
    }
    CHECK(exchange(clients, N, 10, 64, backend, 2, landed) == 0);
    int64_t stopped = nqt_now_ms();
    CHECK(kill(proxy_pid, SIGTERM) == 0);
    for (int i = 0; i < N; i++) {
        nq_msg *m = NULL;
        int rv = nq_get(clients[i], NQT_WAIT_MS, &m);
        if (rv != NQ_ECONNRESET) {
            fprintf(stderr, "client %d: %s where the lost connection was due\n", i,
                    nq_strerror(rv));
            return 1;
        }
    }
    int64_t until = stopped + NQT_WAIT_MS;
    while (server_disconnects(&backend[0], 0, 1) + server_disconnects(&backend[1], 0, 1) < N &&
           nqt_now_ms() < until) {
        usleep(5000);
    }
    printf("stopped proxy noticed by every peer after %" PRId64 " ms\n",
           nqt_now_ms() - stopped);
    CHECK(server_disconnects(&backend[0], 0, 1) + server_disconnects(&backend[1], 0, 1) == N);
    return 0;
}

/* Starts the proxy again with the script's command (--proxy-cmd), in a
 * process that ends with this one, and waits (10 s at most) until it
 * listens on the front port.  Returns its pid, or -1. */
static pid_t proxy_again(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* SIGTERM, not SIGKILL: nginx's master then takes its worker down. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl("/bin/sh", "sh", "-c", proxy_cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 1000; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(front)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int up = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0) {
            close(fd);
        }
        if (up) {
            return pid;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            break;
        }
        usleep(10000);
    }
    fprintf(stderr, "the proxy did not start again\n");
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static void proxy_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static int event_seen(nqt_recorder *r, int type)
{
    for (int i = 0; i < nqt_events(r); i++) {
        if (nqt_event(r, i).type == type) {
            return 1;
        }
    }
    return 0;
}

/* A client that reconnects (NQ_OPT_RECONNECT_MS) survives a restart of the
 * proxy: it is told that its connection was lost, connects again once the
 * proxy is back, and its messages flow again; through nginx, to the server
 * it had (its id picks it).  Starts the proxy again itself (the
 * stopped-proxy case ran before), and stops it at the end. */
static int test_a_client_reconnects_through_a_restarted_proxy(void)
{
    CHECK(open_backends() == 0);
    pid_t proxy = proxy_again();
    CHECK(proxy > 0);
    static nqt_recorder events;
    nqt_recorder_init(&events);
    nq_comm *c = client_open_with(&proxied, front, NULL, NULL, &events, 50);
    int before = -1;
    int landed = -1;
    int rv = c != NULL && exchange_from(&c, 1, 0, 10, 64, backend, 2, &before) == 0 ? 0 : 1;
    if (rv == 0) {
        proxy_stop(proxy);
        int64_t until = nqt_now_ms() + NQT_WAIT_MS;
        while (!event_seen(&events, NQ_EVENT_RECONNECTING) && nqt_now_ms() < until) {
            usleep(5000);
        }
        rv = !event_seen(&events, NQ_EVENT_RECONNECTING);
        proxy = rv == 0 ? proxy_again() : -1;
        rv = rv != 0 || proxy < 0;
    }
    int64_t back = nqt_now_ms();
    if (rv == 0) {
        /* Numbered on: the server it lands on may have seen it before. */
        rv = exchange_from(&c, 1, 10, 10, 64, backend, 2, &landed);
        printf("reconnected and answered %" PRId64 " ms after the proxy was back\n",
               nqt_now_ms() - back);
    }
    if (rv != 0) {
        describe_events("client", &events, 64);
    }
    if (proxy > 0) {
        close_clients(&c, 1);
        proxy_stop(proxy);
    }
    CHECK(rv == 0);
    CHECK(proxied.protocol != NQ_GRPC || landed == before);
    return 0;
}

/* How long the proxy lets a stream idle (deploy_peer idle --idle-ms). */
static int proxy_idle_ms;

/* The proxy ends a stream on which nothing passed for proxy_idle_ms (nginx:
 * grpc_read_timeout towards the server, client_body_timeout towards the
 * client).  Two libnq peers whose keep-alive is a third of that send a
 * heartbeat frame each way at least that often: a client left idle for
 * three such timeouts keeps its connection and its server, its messages
 * still go through, and heartbeats went out.  The peers do not ask for
 * acknowledged delivery, so it is the heartbeat alone that crosses the
 * proxy.  (nginx also takes grpc's HTTP/2 pings, which grpc sends after a
 * keep-alive period with nothing in, as reads; proxies that count only
 * messages, such as Envoy's stream idle timeout, need the heartbeat.) */
static int test_an_idle_stream_outlives_the_proxy_idle_timeout(void)
{
    peer_keepalive_ms = proxy_idle_ms / 3;
    CHECK(open_backends() == 0);
    nq_comm *c = client_open(&proxied, front, NULL, NULL);
    CHECK(c != NULL);
    int landed;
    CHECK(exchange(&c, 1, 10, 256, backend, 2, &landed) == 0);
    int64_t out = nqt_stat(c, NQ_STAT_BYTES_OUT);
    printf("idle for %d ms through a proxy that ends streams idle for %d ms\n",
           3 * proxy_idle_ms, proxy_idle_ms);
    usleep((useconds_t)(3 * proxy_idle_ms) * 1000);
    CHECK(nqt_stat(c, NQ_STAT_CONNECTIONS_LOST) == 0);
    CHECK(server_disconnects(&backend[landed], 0, 1) == 0);
    int again;
    CHECK(exchange_from(&c, 1, 10, 10, 256, backend, 2, &again) == 0);
    CHECK(again == landed);
    CHECK(nqt_stat(c, NQ_STAT_BYTES_OUT) > out + 10 * (8 + 256)); /* heartbeats too */
    CHECK(nqt_stat(c, NQ_STAT_ACKED) == 0);
    CHECK(close_clients(&c, 1) == 0);
    CHECK(wait_disconnects(&backend[landed], NQ_OK, 0, 1, NQT_WAIT_MS) == 0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Throughput                                                                */
/* ------------------------------------------------------------------------ */

static int compare_ms(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int bench(const topology *t, const uint16_t *ports, int nports, uint16_t via, int count,
                 size_t size, int runs)
{
    static server s[2];
    for (int j = 0; j < nports; j++) {
        CHECK(server_open(&s[j], t, ports[j], 1) == 0);
    }
    int64_t ms[32];
    for (int r = 0; r < runs; r++) {
        nq_comm *c = client_open(t, via, NULL, NULL);
        CHECK(c != NULL);
        /* A ping first: the connection is up and its server known. */
        CHECK(ping(c) == 0);
        nq_id sid;
        CHECK_OK(nq_server_id(c, &sid));
        server *to = nq_id_equal(&sid, &s[0].id) ? &s[0] : &s[1];
        long want = atomic_load(&to->received) + count;
        int64_t start = nqt_now_ms();
        for (int k = 0; k < count; k++) {
            CHECK_OK(put_seq(c, (uint32_t)k, size));
        }
        while (atomic_load(&to->received) < want) {
            /* The client gets nothing here but the end of its connection. */
            nq_msg *m = NULL;
            int rv = nq_get(c, 0, &m);
            if (rv != NQ_ETIMEDOUT) {
                fprintf(stderr, "the client's connection ended: %s\n", nq_strerror(rv));
                return 1;
            }
            CHECK(nqt_now_ms() - start < 60000);
            usleep(200);
        }
        ms[r] = nqt_now_ms() - start;
        CHECK(close_clients(&c, 1) == 0);
    }
    qsort(ms, (size_t)runs, sizeof(ms[0]), compare_ms);
    int64_t median = ms[runs / 2] > 0 ? ms[runs / 2] : 1;
    printf("count=%d size=%zu runs=%d median_ms=%" PRId64 " msgs_per_s=%.0f mib_per_s=%.1f\n",
           count, size, runs, median, count * 1000.0 / (double)median,
           (double)count * (double)size * 1000.0 / (double)median / 1048576.0);
    for (int j = 0; j < nports; j++) {
        server_close(&s[j]);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Many clients                                                              */
/* ------------------------------------------------------------------------ */

static long rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    char line[256];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

static int many(const topology *t, uint16_t port, int n)
{
    nq_id id;
    nq_id_random(&id);
    child ch;
    CHECK(hold_start(&ch, t, "server", port, &id) == 0);
    long before = rss_kib(ch.pid);
    nq_comm **clients = calloc((size_t)n, sizeof(*clients));
    CHECK(clients != NULL);
    int failed = 0;
    int64_t start = nqt_now_ms();
    for (int i = 0; i < n && !failed; i++) {
        clients[i] = client_open(t, port, NULL, NULL);
        failed = clients[i] == NULL || nq_put(clients[i], &(nq_chunk){"hello", 5}, 1, NULL, 0,
                                              NULL) != NQ_OK;
    }
    for (int i = 0; i < n && !failed; i++) {
        failed = nqt_expect(clients[i], "hello", 5, &id) != 0;
    }
    int64_t took = nqt_now_ms() - start;
    long after = rss_kib(ch.pid);
    if (!failed) {
        printf("clients=%d connect_ms=%" PRId64 " server_rss_kib=%ld..%ld per_client_kib=%.1f\n",
               n, took, before, after, (double)(after - before) / n);
    }
    for (int i = 0; i < n; i++) {
        client_drop(clients[i]);
    }
    free(clients);
    hold_kill(&ch);
    return failed;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: deploy_peer ports N | certs | mqtt ... | proxy ... | idle ... | "
                    "bench ... | many ... | hold ... (see the comment at the top of "
                    "deploy_peer.c)\n");
    return 2;
}

static int parse_ports(const char *text, uint16_t *out, int cap)
{
    int n = 0;
    char *end;
    while (n < cap && *text != 0) {
        long p = strtol(text, &end, 10);
        if (end == text || p <= 0 || p > 65535) {
            return -1;
        }
        out[n++] = (uint16_t)p;
        text = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int free_ports(int n)
{
    int fds[16];
    if (n < 1 || n > 16) {
        return usage();
    }
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(a);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0) {
            perror("free port");
            return 1;
        }
        printf("%u\n", (unsigned)ntohs(a.sin_port));
    }
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    return 0;
}

static int run_cases(const struct test_case *cases, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t start = nqt_now_ms();
        int rv = cases[i].fn();
        close_what_is_left();
        printf("%s %s (%" PRId64 " ms)\n", rv == 0 ? "PASS" : "FAIL", cases[i].name,
               nqt_now_ms() - start);
        fflush(stdout);
        failed += rv != 0;
    }
    return failed != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = argv[1];
    if (strcmp(cmd, "ports") == 0) {
        return argc == 3 ? free_ports(atoi(argv[2])) : usage();
    }
    if (strcmp(cmd, "certs") == 0) {
        char dir[64];
        if (nqt_make_credentials(dir, "nqdeploycerts") != 0) {
            return 1;
        }
        printf("%s\n", dir);
        return 0;
    }
    topology t = {NQ_TCP, NULL, NULL, 0};
    uint16_t ports[2] = {0, 0};
    int nports = 0;
    const char *role = "client";
    nq_id id;
    nq_id_random(&id);
    int count = 10000;
    long size = 1024;
    int runs = 5;
    int nclients = 0;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL) {
            return usage();
        }
        i++;
        if (strcmp(opt, "--protocol") == 0) {
            t.protocol = strcmp(val, "mqtt") == 0   ? NQ_MQTT
                         : strcmp(val, "grpc") == 0 ? NQ_GRPC
                                                    : NQ_TCP;
        } else if (strcmp(opt, "--certs") == 0) {
            t.certs = val;
        } else if (strcmp(opt, "--prefix") == 0) {
            t.prefix = val;
        } else if (strcmp(opt, "--role") == 0) {
            role = val;
        } else if (strcmp(opt, "--id") == 0) {
            if (nq_id_parse(val, &id) != NQ_OK) {
                return usage();
            }
        } else if (strcmp(opt, "--hub") == 0 || strcmp(opt, "--front") == 0 ||
                   strcmp(opt, "--port") == 0) {
            if (parse_ports(val, &hub, 1) != 1) {
                return usage();
            }
            front = hub;
        } else if (strcmp(opt, "--leaf") == 0) {
            if (nleaves == 2 || parse_ports(val, &leaves[nleaves++], 1) != 1) {
                return usage();
            }
        } else if (strcmp(opt, "--backends") == 0 || strcmp(opt, "--servers") == 0) {
            nports = parse_ports(val, ports, 2);
            if (nports < 1) {
                return usage();
            }
        } else if (strcmp(opt, "--count") == 0) {
            count = atoi(val);
        } else if (strcmp(opt, "--size") == 0) {
            size = atol(val);
        } else if (strcmp(opt, "--runs") == 0) {
            runs = atoi(val);
        } else if (strcmp(opt, "--clients") == 0) {
            nclients = atoi(val);
        } else if (strcmp(opt, "--proxy-pid") == 0) {
            proxy_pid = (pid_t)atoi(val);
        } else if (strcmp(opt, "--proxy-cmd") == 0) {
            proxy_cmd = val;
        } else if (strcmp(opt, "--idle-ms") == 0) {
            proxy_idle_ms = atoi(val);
        } else {
            return usage();
        }
    }
    if (strcmp(cmd, "hold") == 0) {
        return hub != 0 ? hold(&t, role, hub, &id) : usage();
    }
    if (strcmp(cmd, "many") == 0) {
        return hub != 0 && nclients > 0 ? many(&t, hub, nclients) : usage();
    }
    if (strcmp(cmd, "bench") == 0) {
        if (nports < 1 || front == 0 || count < 1 || size < 4 || size > 65536 || runs < 1 ||
            runs > 32) {
            return usage();
        }
        return bench(&t, ports, t.protocol == NQ_MQTT ? 1 : nports, front, count, (size_t)size,
                     runs);
    }
    if (strcmp(cmd, "mqtt") == 0) {
        if (hub == 0 || nleaves == 0) {
            return usage();
        }
        static const struct test_case cases[] = {
            TEST(test_order_and_fin_across_the_bridge),
            TEST(test_killed_client_is_noticed_through_its_will),
            TEST(test_killed_server_is_noticed_through_its_will),
            TEST(test_applications_with_prefixes_share_the_brokers),
            TEST(test_acknowledged_delivery_is_agreed_across_the_bridge),
        };
        return run_cases(cases, TEST_COUNT(cases));
    }
    if (strcmp(cmd, "idle") == 0) {
        if (front == 0 || nports != 2 || proxy_idle_ms < 3000) {
            return usage();
        }
        proxied = t;
        backends[0] = ports[0];
        backends[1] = ports[1];
        static const struct test_case cases[] = {
            TEST(test_an_idle_stream_outlives_the_proxy_idle_timeout),
        };
        return run_cases(cases, TEST_COUNT(cases));
    }
    if (strcmp(cmd, "proxy") == 0) {
        if (front == 0 || nports != 2) {
            return usage();
        }
        proxied = t;
        backends[0] = ports[0];
        backends[1] = ports[1];
        struct test_case cases[8];
        size_t n = 0;
        cases[n++] = (struct test_case)TEST(test_clients_keep_their_server);
        cases[n++] = (struct test_case)TEST(test_one_connection_carries_megabytes);
        if (t.protocol == NQ_GRPC) {
            cases[n++] = (struct test_case)TEST(test_a_client_id_always_reaches_the_same_server);
        }
        cases[n++] = (struct test_case)TEST(test_killed_client_is_noticed_through_the_proxy);
        cases[n++] = (struct test_case)TEST(test_acknowledged_delivery_through_the_proxy);
        if (t.certs != NULL) {
            cases[n++] = (struct test_case)TEST(test_the_certificate_is_checked_through_the_proxy);
        }
        if (proxy_pid > 0) {
            cases[n++] = (struct test_case)TEST(test_a_stopped_proxy_is_a_lost_peer);
            if (proxy_cmd != NULL) {
                cases[n++] =
                    (struct test_case)TEST(test_a_client_reconnects_through_a_restarted_proxy);
            }
        }
        int rv = run_cases(cases, n);
        /* Streaming mode makes one call per client; polling one per round. */
        printf("clients through the proxy: %d\n", through_front);
        return rv;
    }
    return usage();
}

