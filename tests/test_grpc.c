/*
 * gRPC-only behaviour: TLS through grpc's credentials, and peers whose
 * process dies mid-stream (run as child processes of this test binary).
 * The contract cases shared with TCP live in test_comm.c (run with "grpc").
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <pthread.h>

#include "grpc_hostile.h"
#include "harness.h"
#include "peers.h"
#include "proxy.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static char tls_dir[64];

static nq_comm *grpc_peer(nq_purpose purpose, nq_opts *o)
{
    return nqt_open(NQ_GRPC, purpose, o);
}

/* ---- child processes ------------------------------------------------------------ */

/* Runs this binary as a child in a role; its standard output comes back on
 * *out (a pipe). */
static pid_t spawn(const char *role, uint16_t port, FILE **out)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        char portarg[16];
        snprintf(portarg, sizeof(portarg), "%u", (unsigned)port);
        execl("/proc/self/exe", "test_grpc", role, portarg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *out = fdopen(fds[0], "r");
    return pid;
}

/* A client that says hello, starts a put too large to finish, and waits
 * to be killed. */
static int child_client(uint16_t port)
{
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", port, NULL));
    if (c == NULL || nqt_put_wait(c, "hello", 5, NULL, 0) != NQ_OK) {
        return 1;
    }
    size_t len = 512 * 1024 * 1024;
    void *big = calloc(1, len);
    nq_chunk ch = {big, len};
    nq_future *f = NULL;
    nq_put(c, &ch, 1, NULL, 0, &f);
    printf("ready\n");
    fflush(stdout);
    pause();
    return 0;
}

/* A server that prints its port and serves until killed. */
static int child_server(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    if (s == NULL) {
        return 1;
    }
    printf("%u\n", (unsigned)nqt_port(s));
    fflush(stdout);
    for (;;) {
        nq_msg *m = NULL;
        if (nq_get(s, -1, &m) == NQ_OK) {
            nq_id peer;
            nq_msg_peer(m, &peer);
            const void *d;
            size_t n;
            nq_msg_data(m, &d, &n);
            nq_chunk ch = {d, n};
            nq_put(s, &ch, 1, &peer, 1, NULL);
            nq_msg_free(m);
        }
    }
}

static int test_client_killed_mid_stream_leaves_server_serving(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    CHECK(s != NULL);
    nq_comm *good = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), NULL));
    CHECK(nqt_round_trip(s, good) == 0);
    FILE *out = NULL;
    pid_t pid = spawn("child-client", nqt_port(s), &out);
    CHECK(pid > 0);
    char line[32] = "";
    CHECK(fgets(line, sizeof(line), out) != NULL && strcmp(line, "ready\n") == 0);
    CHECK(nqt_expect(s, "hello", 5, NULL) == 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fclose(out);
    int64_t lost = 0;
    for (int i = 0; i < 1000 && lost == 0; i++) {
        nq_stat(s, NQ_STAT_CONNECTIONS_LOST, &lost);
        usleep(10000);
    }
    CHECK(lost == 1);
    CHECK(nqt_round_trip(s, good) == 0);
    CHECK_OK(nq_close(good));
    int64_t t0 = nqt_now_ms();
    CHECK_OK(nq_close(s));
    CHECK(nqt_now_ms() - t0 < 5000);
    nq_destroy(good);
    nq_destroy(s);
    return 0;
}

static int test_server_killed_fails_client_cleanly(void)
{
    FILE *out = NULL;
    pid_t pid = spawn("child-server", 0, &out);
    CHECK(pid > 0);
    unsigned port = 0;
    CHECK(fscanf(out, "%u", &port) == 1 && port > 0);
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", (uint16_t)port, NULL));
    CHECK_OK(nqt_put_wait(c, "echo", 4, NULL, 0));
    CHECK(nqt_expect(c, "echo", 4, NULL) == 0);
    size_t len = 256 * 1024 * 1024;
    uint8_t *big = calloc(1, len);
    nq_chunk ch = {big, len};
    nq_future *f = NULL;
    CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fclose(out);
    CHECK_RC(nq_future_wait(f, WAIT_MS), NQ_ECONNRESET);
    nq_future_free(f);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNRESET);
    int64_t t0 = nqt_now_ms();
    CHECK_RC(nq_close(c), NQ_ECONNRESET);
    CHECK(nqt_now_ms() - t0 < 5000);
    nq_destroy(c);
    free(big);
    return 0;
}

static int test_unreachable_server_fails_futures_and_get(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    uint16_t port = nqt_port(s);
    nq_destroy(s);
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", port, NULL));
    CHECK(c != NULL);
    CHECK_RC(nqt_put_wait(c, "x", 1, NULL, 0), NQ_ECONNREFUSED);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_ECONNREFUSED);
    nq_destroy(c);
    return 0;
}

/* A listener that takes connections and closes them at once, as a server
 * that is still starting (or a proxy with no backend yet) does. */
typedef struct {
    int fd;
    atomic_int stop;
    atomic_int taken;
} closer;

static void *close_each(void *arg)
{
    closer *k = arg;
    while (!atomic_load(&k->stop)) {
        struct pollfd p = {.fd = k->fd, .events = POLLIN};
        if (poll(&p, 1, 20) == 1) {
            int fd = accept(k->fd, NULL, NULL);
            if (fd >= 0) {
                atomic_fetch_add(&k->taken, 1);
                close(fd);
            }
        }
    }
    return NULL;
}

/* The client's first calls fail before any server answers (connections
 * closed at once); once a server is there, a later call must open with the
 * INI again, and the messages put meanwhile follow it. */
static int test_calls_that_never_reached_a_server_leave_the_ini_to_the_next(void)
{
    closer k = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    CHECK(k.fd >= 0);
    CHECK(setsockopt(k.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
    CHECK(bind(k.fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(k.fd, 16) == 0);
    CHECK(getsockname(k.fd, (struct sockaddr *)&a, &alen) == 0);
    uint16_t port = ntohs(a.sin_port);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, close_each, &k) == 0);
    nq_opts *o = nqt_opts("127.0.0.1", port, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 20000));
    nq_comm *c = grpc_peer(NQ_CLIENT, o);
    CHECK(c != NULL);
    enum { EACH = 20 };
    nq_future *fs[EACH];
    uint32_t vs[EACH]; /* lent to each put until its future completes */
    for (uint32_t i = 0; i < EACH; i++) {
        vs[i] = i;
        nq_chunk ch = {&vs[i], sizeof(vs[i])};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &fs[i]));
    }
    for (int i = 0; i < 500 && atomic_load(&k.taken) < 2; i++) {
        usleep(10 * 1000);
    }
    CHECK(atomic_load(&k.taken) >= 2);
    /* The server shares the port; then the closing listener goes. */
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", port, NULL));
    CHECK(s != NULL);
    atomic_store(&k.stop, 1);
    pthread_join(t, NULL);
    close(k.fd);
    for (uint32_t i = 0; i < EACH; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *d;
        size_t len;
        nq_msg_data(m, &d, &len);
        uint32_t v;
        CHECK(len == 4);
        memcpy(&v, d, 4);
        CHECK(v == i);
        nq_msg_free(m);
        CHECK_OK(nq_future_wait(fs[i], WAIT_MS));
        nq_future_free(fs[i]);
    }
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

typedef struct {
    pthread_mutex_t mu;
    int streams;
    int rounds;
} dialect_log;

static void note_dialect(void *ctx, int level, const char *message)
{
    (void)level;
    dialect_log *d = ctx;
    pthread_mutex_lock(&d->mu);
    d->streams += strstr(message, "the server streams") != NULL;
    d->rounds += strstr(message, "answers in rounds") != NULL;
    pthread_mutex_unlock(&d->mu);
}

/* A client whose connection takes longer than the three seconds it gives
 * a server to show its dialect (a slow path, a server busy with many
 * connections) still streams with a libnq server: the wait counts from the
 * connection, not from the call. */
static int test_a_slow_connection_is_not_taken_for_a_server_in_rounds(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    CHECK(s != NULL);
    nqt_proxy px;
    CHECK(nqt_proxy_start(&px, nqt_port(s)) == 0);
    nqt_proxy_freeze(&px, 1);
    dialect_log d = {.mu = PTHREAD_MUTEX_INITIALIZER};
    nq_opts *o = nqt_opts("127.0.0.1", px.port, NULL);
    CHECK_OK(nq_opts_set_log(o, note_dialect, &d));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 20000));
    nq_comm *c = grpc_peer(NQ_CLIENT, o);
    CHECK(c != NULL);
    CHECK_OK(nq_put(c, &(nq_chunk){"early", 5}, 1, NULL, 0, NULL));
    usleep(4000 * 1000); /* longer than the dialect wait */
    nqt_proxy_freeze(&px, 0);
    CHECK(nqt_expect(s, "early", 5, NULL) == 0);
    CHECK(nqt_round_trip(s, c) == 0);
    pthread_mutex_lock(&d.mu);
    int streams = d.streams, rounds = d.rounds;
    pthread_mutex_unlock(&d.mu);
    CHECK(streams == 1 && rounds == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_proxy_stop(&px);
    return 0;
}

/* ---- TLS ------------------------------------------------------------------------ */

static int make_certs(void)
{
    return nqt_temp_dir(tls_dir, "nqgrpctls") != 0 ||
           nqt_make_cert(tls_dir, "good", "DNS:localhost,IP:127.0.0.1") != 0 ||
           nqt_make_cert(tls_dir, "other", "DNS:localhost,IP:127.0.0.1") != 0;
}

static nq_comm *tls_peer(nq_purpose purpose, uint16_t port, const char *host, const char *name)
{
    char key[128], cert[128];
    snprintf(key, sizeof(key), "%s/%s.key", tls_dir, name);
    snprintf(cert, sizeof(cert), "%s/%s.pem", tls_dir, name);
    nq_opts *o = nqt_opts("127.0.0.1", port, NULL);
    nq_opts_set_netloc(o, host, port);
    nq_opts_set_tls(o, purpose == NQ_SERVER ? key : NULL, cert);
    return grpc_peer(purpose, o);
}

static int test_tls_with_trusted_and_untrusted_certificates(void)
{
    CHECK(make_certs() == 0);
    nq_comm *s = tls_peer(NQ_SERVER, 0, "127.0.0.1", "good");
    CHECK(s != NULL);
    nq_comm *c = tls_peer(NQ_CLIENT, nqt_port(s), "localhost", "good");
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    nq_comm *bad = tls_peer(NQ_CLIENT, nqt_port(s), "localhost", "other");
    CHECK_RC(nqt_put_wait(bad, "x", 1, NULL, 0), NQ_ETLS);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(bad, WAIT_MS, &m), NQ_ETLS);
    nq_destroy(bad);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_remove_dir(tls_dir);
    return 0;
}

static int test_many_clients_stream_at_once(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    enum { CLIENTS = 8, EACH = 200 };
    nq_comm *cs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cs[i] = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), NULL));
        CHECK(cs[i] != NULL);
    }
    for (uint32_t k = 0; k < EACH; k++) {
        for (int i = 0; i < CLIENTS; i++) {
            uint32_t v = (uint32_t)i << 16 | k;
            nq_chunk ch = {&v, sizeof(v)};
            CHECK_OK(nq_put(cs[i], &ch, 1, NULL, 0, NULL));
        }
    }
    uint32_t next[CLIENTS] = {0};
    for (int n = 0; n < CLIENTS * EACH; n++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *d;
        size_t len;
        nq_msg_data(m, &d, &len);
        CHECK(len == 4);
        uint32_t v;
        memcpy(&v, d, 4);
        CHECK((v & 0xffff) == next[v >> 16]);
        next[v >> 16]++;
        nq_msg_free(m);
    }
    CHECK_OK(nqt_put_wait(s, "bye", 3, NULL, 0));
    for (int i = 0; i < CLIENTS; i++) {
        CHECK(nqt_expect(cs[i], "bye", 3, NULL) == 0);
        CHECK_OK(nq_close(cs[i]));
        nq_destroy(cs[i]);
    }
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

/* Large zero-copy puts travel as slices over the caller's memory; each
 * buffer is scribbled over and freed the moment its future completes, so
 * a slice grpc still read after that would deliver the scribble (or, under
 * AddressSanitizer, fail on the freed memory). */
static int test_large_puts_free_their_buffers_on_completion(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), NULL));
    CHECK(s != NULL && c != NULL);
    enum { COUNT = 48, WINDOW = 6, LEN = 1024 * 1024 + 3 };
    uint8_t *bufs[COUNT];
    nq_future *futs[COUNT];
    for (int i = 0; i < COUNT; i++) {
        bufs[i] = malloc(LEN);
        CHECK(bufs[i] != NULL);
        memset(bufs[i], 'a' + i % 26, LEN);
        nq_chunk ch = {bufs[i], LEN};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &futs[i]));
        if (i >= WINDOW) {
            int k = i - WINDOW;
            CHECK_OK(nq_future_wait(futs[k], WAIT_MS));
            memset(bufs[k], 0xee, LEN);
            free(bufs[k]);
            nq_future_free(futs[k]);
        }
    }
    for (int k = COUNT - WINDOW; k < COUNT; k++) {
        CHECK_OK(nq_future_wait(futs[k], WAIT_MS));
        memset(bufs[k], 0xee, LEN);
        free(bufs[k]);
        nq_future_free(futs[k]);
    }
    for (int i = 0; i < COUNT; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *d;
        size_t len;
        nq_msg_data(m, &d, &len);
        CHECK(len == LEN);
        const uint8_t *b = d;
        for (size_t j = 0; j < len; j += 4093) {
            CHECK(b[j] == 'a' + i % 26);
        }
        CHECK(b[len - 1] == 'a' + i % 26);
        nq_msg_free(m);
    }
    CHECK_OK(nq_close(c));
    nq_destroy(c);
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

/* Frees a put's buffer the moment its future completes. */
static void scribble_and_free(nq_future *f, int result, void *ctx)
{
    (void)f;
    (void)result;
    uint8_t *buf = ctx;
    memset(buf, 0xee, 4 * 1024 * 1024);
    free(buf);
}

/* Closing with large puts still in grpc's hands (the close timeout cuts
 * the flush short): close returns, every future has completed by then
 * (delivered or failed, never pending), and each buffer, freed by its
 * future's callback, is no longer read (AddressSanitizer would tell). */
static int test_close_with_large_puts_in_flight(void)
{
    nq_opts *so = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_CLOSE_TIMEOUT_MS, 20));
    nq_comm *s = grpc_peer(NQ_SERVER, so);
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), NULL));
    CHECK(s != NULL && c != NULL);
    CHECK_OK(nqt_put_wait(c, "hello", 5, NULL, 0));
    nq_msg *m = NULL;
    CHECK_OK(nq_get(s, WAIT_MS, &m));
    nq_msg_free(m);
    enum { COUNT = 16, LEN = 4 * 1024 * 1024 };
    nq_future *futs[COUNT];
    for (int i = 0; i < COUNT; i++) {
        uint8_t *buf = malloc(LEN);
        CHECK(buf != NULL);
        memset(buf, 7, LEN);
        nq_chunk ch = {buf, LEN};
        CHECK_OK(nq_put(s, &ch, 1, NULL, 0, &futs[i]));
        CHECK_OK(nq_future_on_done(futs[i], scribble_and_free, buf));
    }
    int rv = nq_close(s);
    CHECK(rv == NQ_OK || rv == NQ_ETIMEDOUT);
    for (int i = 0; i < COUNT; i++) {
        CHECK(nq_future_result(futs[i]) != NQ_EPENDING);
        nq_future_free(futs[i]);
    }
    nq_destroy(s);
    nq_close(c);
    nq_destroy(c);
    return 0;
}

/* ---- back-pressure ----------------------------------------------------------------- */

/* A server at NQ_OPT_QUEUE_SIZE stops asking for messages, so HTTP/2's flow
 * control holds a gRPC sender back (its puts stay pending, the server holds
 * a bounded amount); once get makes room every message arrives, in order. */
static int test_queue_size_holds_a_sender_back_without_loss(void)
{
    enum { MESSAGES = 64, SIZE = 1 << 20 };
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, 4));
    nq_comm *s = grpc_peer(NQ_SERVER, o);
    nq_comm *c = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), NULL));
    CHECK(s != NULL && c != NULL);
    uint8_t *data = malloc(SIZE);
    CHECK(data != NULL);
    nq_future *f[MESSAGES];
    for (int i = 0; i < MESSAGES; i++) {
        memset(data, 0, 16);
        nq_chunk ch = {data, SIZE};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f[i]));
    }
    CHECK(nqt_wait_stat(s, NQ_STAT_READ_PAUSES, 1) == 0);
    usleep(1000 * 1000);
    CHECK(nq_future_result(f[MESSAGES - 1]) == NQ_EPENDING);
    CHECK(nqt_stat(s, NQ_STAT_MSGS_IN) < MESSAGES / 2);
    for (int i = 0; i < MESSAGES; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        CHECK(nq_msg_size(m) == SIZE);
        nq_msg_free(m);
    }
    for (int i = 0; i < MESSAGES; i++) {
        CHECK_RC(nq_future_wait(f[i], WAIT_MS), NQ_OK);
        nq_future_free(f[i]);
    }
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    free(data);
    return 0;
}

/* ---- hostile callers (grpc_hostile.h) ------------------------------------------ */

/* A framed message: header then bytes, appended at *at. */
static void frame_into(uint8_t *buf, size_t *at, const void *payload, size_t len)
{
    nqt_put_header(buf + *at, len);
    memcpy(buf + *at + 8, payload, len);
    *at += 8 + len;
}

/* A call from another connection that names a live peer's id in its
 * metadata is a stranger: whether it asks for a stream (a takeover) or sends
 * data (an injection), the server refuses it and the peer's session goes on
 * untouched.  (A stranger that sends the peer's INI meets the same-id rule
 * of every transport, tests/test_events.c.) */
static int test_metadata_alone_cannot_take_a_session(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    nq_id victim;
    CHECK_OK(nq_id_random(&victim));
    nq_comm *v = grpc_peer(NQ_CLIENT, nqt_opts("127.0.0.1", nqt_port(s), &victim));
    CHECK(s != NULL && v != NULL);
    CHECK(nqt_round_trip(s, v) == 0);
    uint8_t evil[64];
    size_t data_only = 0;
    frame_into(evil, &data_only, "evil", 4);
    struct {
        int stream;
        const uint8_t *bytes;
        size_t len;
    } attacks[] = {{1, evil, data_only}, {0, evil, data_only}};
    grpc_init();
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        nqt_hostile h;
        CHECK(nqt_hostile_start(&h, nqt_port(s), &victim, attacks[i].stream,
                                attacks[i].bytes, attacks[i].len) == 0);
        /* While the attack is under way the victim's exchange still goes
         * both ways, and nothing of the attacker's reaches get. */
        usleep(200 * 1000);
        CHECK(nqt_round_trip(s, v) == 0);
        CHECK(nqt_wait_stat(s, NQ_STAT_PROTOCOL_ERRORS, (int64_t)i + 1) == 0);
        CHECK(nqt_round_trip(s, v) == 0);
        nqt_hostile_finish(&h);
        CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
        CHECK(nqt_stat(v, NQ_STAT_CONNECTIONS_LOST) == 0);
    }
    grpc_shutdown();
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 0, &m), NQ_ETIMEDOUT);
    CHECK_OK(nq_close(v));
    CHECK_OK(nq_close(s));
    nq_destroy(v);
    nq_destroy(s);
    return 0;
}

/* ---- the heartbeat ----------------------------------------------------------------- */

/* Two libnq peers that did not agree on acknowledged delivery still agree
 * on the heartbeat: an idle stream carries a PING frame each way at least
 * once per keep-alive period, which a proxy counts as traffic, and neither
 * application sees any of it. */
static int test_an_idle_stream_carries_a_heartbeat_the_application_never_sees(void)
{
    nq_opts *so = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_KEEPALIVE_MS, 1000));
    nq_comm *s = grpc_peer(NQ_SERVER, so);
    CHECK(s != NULL);
    nq_opts *co = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    CHECK_OK(nq_opts_set_int(co, NQ_OPT_KEEPALIVE_MS, 1000));
    nq_comm *c = grpc_peer(NQ_CLIENT, co);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    int64_t s_out = nqt_stat(s, NQ_STAT_BYTES_OUT);
    int64_t c_out = nqt_stat(c, NQ_STAT_BYTES_OUT);
    int64_t s_in = nqt_stat(s, NQ_STAT_MSGS_IN);
    int64_t c_in = nqt_stat(c, NQ_STAT_MSGS_IN);
    usleep(4200 * 1000);
    /* A PING is an 8-byte header. */
    CHECK(nqt_stat(s, NQ_STAT_BYTES_OUT) - s_out >= 3 * 8);
    CHECK(nqt_stat(c, NQ_STAT_BYTES_OUT) - c_out >= 3 * 8);
    CHECK(nqt_stat(s, NQ_STAT_MSGS_IN) == s_in);
    CHECK(nqt_stat(c, NQ_STAT_MSGS_IN) == c_in);
    CHECK(nqt_stat(s, NQ_STAT_ACKED) == 0);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(s, 0, &m), NQ_ETIMEDOUT);
    CHECK_RC(nq_get(c, 0, &m), NQ_ETIMEDOUT);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_stat(c, NQ_STAT_CONNECTIONS_LOST) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* A stream whose client did not say it takes heartbeat frames (a libnq
 * before them) gets none: after the server's INI, nothing.  The same
 * stream saying so gets PING frames (top bit set, type 3), the first
 * right behind the INI, telling the server's keep-alive (8 bytes,
 * big-endian), in the INI's message or the next. */
static int test_heartbeat_frames_only_to_a_peer_that_takes_them(void)
{
    nq_opts *so = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_KEEPALIVE_MS, 1000));
    nq_comm *s = grpc_peer(NQ_SERVER, so);
    CHECK(s != NULL);
    grpc_init();
    for (int beats = 0; beats < 2; beats++) {
        nq_id id;
        CHECK_OK(nq_id_random(&id));
        uint8_t ini[32], head[64];
        size_t len = 0;
        frame_into(ini, &len, id.bytes, sizeof(id.bytes));
        nqt_hostile h;
        int stream = NQT_HOSTILE_STREAM | (beats ? NQT_HOSTILE_BEATS : 0);
        CHECK(nqt_hostile_start(&h, nqt_port(s), &id, stream, ini, len) == 0);
        long first = nqt_hostile_recv(&h, WAIT_MS, head, sizeof(head));
        CHECK(first == 24 || (beats && first == 40)); /* the server's INI */
        const uint8_t *ping = head + 24;
        if (beats && first == 24) {
            CHECK(nqt_hostile_recv(&h, WAIT_MS, head, sizeof(head)) == 16);
            ping = head;
        }
        if (beats) {
            static const uint8_t told[16] = {0x80, 3, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8};
            CHECK(memcmp(ping, told, sizeof(told)) == 0); /* 1000 ms */
            long next = nqt_hostile_recv(&h, 2500, head, sizeof(head));
            if (next != 16) {
                fprintf(stderr, "the next message: %ld bytes\n", next);
            }
            CHECK(next == 16);
            CHECK(memcmp(head, told, sizeof(told)) == 0);
        } else {
            CHECK(nqt_hostile_recv(&h, 2500, head, sizeof(head)) == -1);
        }
        nqt_hostile_finish(&h);
    }
    grpc_shutdown();
    nq_close(s); /* the hand-made calls were cut off: close may report it */
    nq_destroy(s);
    return 0;
}

/* A client that gives up its stream and starts another on the same
 * connection (as a reconnecting client does when its connection outlived
 * the call) starts a new session with its INI: the server neither reads
 * that INI as the old session's FIN nor feeds it to the old session's
 * parser; the newest stream replaces the old one. */
static int test_a_new_stream_on_the_same_connection_is_a_new_session(void)
{
    nq_comm *s = grpc_peer(NQ_SERVER, nqt_opts("127.0.0.1", 0, NULL));
    CHECK(s != NULL);
    nq_id id;
    CHECK_OK(nq_id_random(&id));
    uint8_t first_bytes[64], second_bytes[64];
    size_t first_len = 0, second_len = 0;
    frame_into(first_bytes, &first_len, id.bytes, sizeof(id.bytes));
    frame_into(first_bytes, &first_len, "one", 3);
    frame_into(second_bytes, &second_len, id.bytes, sizeof(id.bytes));
    frame_into(second_bytes, &second_len, "two", 3);
    grpc_init();
    nqt_hostile first, second;
    CHECK(nqt_hostile_start(&first, nqt_port(s), &id, 1, first_bytes, first_len) == 0);
    CHECK(nqt_expect(s, "one", 3, &id) == 0);
    CHECK(nqt_hostile_again(&second, &first, &id, 1, second_bytes, second_len) == 0);
    CHECK(nqt_expect(s, "two", 3, &id) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PROTOCOL_ERRORS) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    nqt_hostile_finish(&second);
    nqt_hostile_finish(&first);
    grpc_shutdown();
    /* The hand-made calls were cut off: close may report the loss. */
    nq_close(s);
    nq_destroy(s);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_queue_size_holds_a_sender_back_without_loss),
    TEST(test_metadata_alone_cannot_take_a_session),
    TEST(test_a_new_stream_on_the_same_connection_is_a_new_session),
    TEST(test_an_idle_stream_carries_a_heartbeat_the_application_never_sees),
    TEST(test_heartbeat_frames_only_to_a_peer_that_takes_them),
    TEST(test_client_killed_mid_stream_leaves_server_serving),
    TEST(test_server_killed_fails_client_cleanly),
    TEST(test_unreachable_server_fails_futures_and_get),
    TEST(test_calls_that_never_reached_a_server_leave_the_ini_to_the_next),
    TEST(test_a_slow_connection_is_not_taken_for_a_server_in_rounds),
    TEST(test_tls_with_trusted_and_untrusted_certificates),
    TEST(test_many_clients_stream_at_once),
    TEST(test_large_puts_free_their_buffers_on_completion),
    TEST(test_close_with_large_puts_in_flight),
};

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child-client") == 0) {
        return child_client((uint16_t)atoi(argv[2]));
    }
    if (argc == 3 && strcmp(argv[1], "child-server") == 0) {
        return child_server();
    }
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
