/*
 * nq_peer: a libnq peer driven by its command line, the C side of the
 * interop tests against net-queue.  netqueue_peer.py implements the same
 * command line with net-queue, so the driver can swap either end.
 *
 *   nq_peer server|client [options] [actions]
 *
 * Options:
 *   --protocol T    tcp (default), mqtt or grpc
 *   --host H        address to bind or connect (default 127.0.0.1); with
 *                   mqtt, the broker's, for both roles
 *   --port P        port; a tcp or grpc server given 0 binds a free one
 *   --qos N         mqtt: the QoS of publishes and subscriptions (libnq's
 *                   default when absent)
 *   --id UUID       own identity (default random)
 *   --key F         TLS private key (server; tcp only here)
 *   --cert F        TLS certificate chain (server) or trusted certificates (client)
 *   --timeout S     the whole run must end within S seconds (default 60)
 *
 * Actions, run in order:
 *   --send-hex HEX        put these bytes (client: to the server; server: to every client)
 *   --send-size N         put N pattern bytes, byte i being i % 251
 *   --send-each-hex HEX   server: one put of HEX per known sender, in order of first message
 *   --send-each-size N    server: the same with N pattern bytes
 *   --send-all-hex HEX    server: one put listing every known sender
 *   --targeted            server: put "to <uuid>" to each known sender
 *   --echo                server: send every message of the last --expect back to its sender
 *   --nowait              from now on, copy puts and do not wait for their completion
 *   --expect N            receive N messages
 *   --close               close and report the result
 *   --drain               receive what is left after close, until the closed error
 *
 * Output, one line per observation:
 *   listening PORT                       (servers, first; over mqtt the
 *                                         broker's port, printed once the
 *                                         server is subscribed)
 *   sent LEN                             (a put completed, or was queued with --nowait)
 *   got PEER LEN SHA256 HEXPREFIX        (HEXPREFIX: first 16 bytes, "-" when empty)
 *   closed ok|ERROR                      (ERROR: nq_strerror text with spaces as '_')
 *   drained closed|ERROR
 * A failed action prints "error ..." on standard error and exits 3; the
 * watchdog exits 124.  A run that ends without --close closes at exit.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <nq/nq.h>

#define MAX_SENDERS 64
#define EXIT_USAGE 1
#define EXIT_OPEN 2
#define EXIT_ACTION 3
#define EXIT_WATCHDOG 124

typedef struct peer_state {
    nq_comm *comm;
    int is_server;
    int wait_puts;
    int closed;
    int64_t deadline_ms;
    nq_id senders[MAX_SENDERS];
    size_t nsenders;
    nq_msg **last;
    size_t nlast;
} peer_state;

static void on_watchdog(int sig)
{
    static const char text[] = "error watchdog: the run took too long\n";
    ssize_t ignored;

    (void)sig;
    ignored = write(STDERR_FILENO, text, sizeof(text) - 1);
    (void)ignored;
    _exit(EXIT_WATCHDOG);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t remaining_ms(const peer_state *st)
{
    int64_t left = st->deadline_ms - now_ms();

    return left > 0 ? left : 0;
}

static _Noreturn void die(const char *what, int err)
{
    fprintf(stderr, "error %s: %s\n", what, err != 0 ? nq_strerror(err) : "failed");
    exit(EXIT_ACTION);
}

static _Noreturn void usage(const char *message)
{
    fprintf(stderr, "usage error: %s\n"
                    "usage: nq_peer server|client [--protocol tcp|mqtt|grpc] [--host H] [--port P] "
                    "[--qos N] [--id UUID] [--key F] [--cert F] [--timeout S] [actions]\n",
            message);
    exit(EXIT_USAGE);
}

/* The error text as one word, so observations stay space-separated. */
static void print_word(const char *prefix, int err)
{
    const char *text = err == NQ_OK ? "ok" : nq_strerror(err);

    printf("%s ", prefix);
    for (; *text != '\0'; text++) {
        putchar(*text == ' ' ? '_' : *text);
    }
    putchar('\n');
    fflush(stdout);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes HEX into a malloc'd buffer the caller frees; "" gives 0 bytes. */
static uint8_t *decode_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    uint8_t *buf;

    if (n % 2 != 0) {
        usage("hex payload has an odd number of digits");
    }
    buf = malloc(n / 2 + 1);
    if (buf == NULL) {
        die("decode_hex", NQ_ENOMEM);
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            usage("hex payload has a non-hex digit");
        }
        buf[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return buf;
}

/* The deterministic payload the driver recomputes: byte i is i % 251. */
static uint8_t *make_pattern(size_t len)
{
    uint8_t *buf = malloc(len + 1);

    if (buf == NULL) {
        die("make_pattern", NQ_ENOMEM);
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i % 251);
    }
    return buf;
}

static size_t parse_size(const char *text)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        usage("expected a non-negative number");
    }
    return (size_t)v;
}

/* The payload of a --*-hex or --*-size action; the caller frees it. */
static uint8_t *payload_arg(const char *action, const char *arg, size_t *len)
{
    size_t n = strlen(action);

    if (n >= 4 && strcmp(action + n - 4, "-hex") == 0) {
        return decode_hex(arg, len);
    }
    *len = parse_size(arg);
    return make_pattern(*len);
}

static void print_message(const nq_msg *msg)
{
    nq_id peer;
    char peer_text[NQ_ID_STRLEN];
    const void *data;
    size_t len;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rv;

    if ((rv = nq_msg_peer(msg, &peer)) != NQ_OK || (rv = nq_msg_data(msg, &data, &len)) != NQ_OK ||
        (rv = nq_id_format(&peer, peer_text, sizeof(peer_text))) != NQ_OK) {
        die("message", rv);
    }
    if (data == NULL) {
        die("message data is NULL", 0);
    }
    if (EVP_Digest(len > 0 ? data : "", len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        die("sha256", 0);
    }
    printf("got %s %zu ", peer_text, len);
    for (unsigned int i = 0; i < mdlen; i++) {
        printf("%02x", md[i]);
    }
    putchar(' ');
    if (len == 0) {
        putchar('-');
    }
    for (size_t i = 0; i < len && i < 16; i++) {
        printf("%02x", ((const uint8_t *)data)[i]);
    }
    putchar('\n');
    fflush(stdout);
}

static void forget_last(peer_state *st)
{
    for (size_t i = 0; i < st->nlast; i++) {
        nq_msg_free(st->last[i]);
    }
    free(st->last);
    st->last = NULL;
    st->nlast = 0;
}

static void remember_sender(peer_state *st, const nq_id *id)
{
    for (size_t i = 0; i < st->nsenders; i++) {
        if (nq_id_equal(&st->senders[i], id)) {
            return;
        }
    }
    if (st->nsenders == MAX_SENDERS) {
        die("too many senders", 0);
    }
    st->senders[st->nsenders++] = *id;
}

/* One put of len bytes at data to peers (NULL/0: the default target).  The
 * bytes must stay valid until it returns. */
static void put_bytes(peer_state *st, const void *data, size_t len, const nq_id *peers,
                      size_t npeers)
{
    nq_chunk chunk = {data, len};
    nq_future *future = NULL;
    int rv;

    rv = nq_put(st->comm, &chunk, 1, peers, npeers, st->wait_puts ? &future : NULL);
    if (rv != NQ_OK) {
        die("put", rv);
    }
    if (future != NULL) {
        rv = nq_future_wait(future, remaining_ms(st));
        nq_future_free(future);
        if (rv != NQ_OK) {
            die("put future", rv);
        }
    }
    printf("sent %zu\n", len);
    fflush(stdout);
}

static void put_each(peer_state *st, const void *data, size_t len)
{
    if (!st->is_server) {
        usage("--send-each-* is a server action");
    }
    for (size_t i = 0; i < st->nsenders; i++) {
        put_bytes(st, data, len, &st->senders[i], 1);
    }
}

static void do_expect(peer_state *st, size_t n)
{
    forget_last(st);
    st->last = calloc(n + 1, sizeof(*st->last));
    if (st->last == NULL) {
        die("expect", NQ_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        nq_msg *msg = NULL;
        nq_id peer;
        int rv = nq_get(st->comm, remaining_ms(st), &msg);

        if (rv != NQ_OK) {
            fprintf(stderr, "error expect: message %zu of %zu: %s\n", i + 1, n, nq_strerror(rv));
            exit(EXIT_ACTION);
        }
        print_message(msg);
        if ((rv = nq_msg_peer(msg, &peer)) != NQ_OK) {
            die("message peer", rv);
        }
        remember_sender(st, &peer);
        st->last[st->nlast++] = msg;
    }
}

static void do_echo(peer_state *st)
{
    if (!st->is_server) {
        usage("--echo is a server action");
    }
    for (size_t i = 0; i < st->nlast; i++) {
        const void *data;
        size_t len;
        nq_id peer;
        int rv;

        if ((rv = nq_msg_data(st->last[i], &data, &len)) != NQ_OK ||
            (rv = nq_msg_peer(st->last[i], &peer)) != NQ_OK) {
            die("echo", rv);
        }
        put_bytes(st, data, len, &peer, 1);
    }
}

static void do_targeted(peer_state *st)
{
    if (!st->is_server) {
        usage("--targeted is a server action");
    }
    for (size_t i = 0; i < st->nsenders; i++) {
        char text[3 + NQ_ID_STRLEN] = "to ";
        int rv = nq_id_format(&st->senders[i], text + 3, NQ_ID_STRLEN);

        if (rv != NQ_OK) {
            die("targeted", rv);
        }
        put_bytes(st, text, strlen(text), &st->senders[i], 1);
    }
}

static void do_close(peer_state *st)
{
    int rv = nq_close(st->comm);

    st->closed = 1;
    print_word("closed", rv);
}

static void do_drain(peer_state *st)
{
    for (;;) {
        nq_msg *msg = NULL;
        int rv = nq_get(st->comm, st->closed ? 0 : remaining_ms(st), &msg);

        if (rv == NQ_ECLOSED) {
            printf("drained closed\n");
            fflush(stdout);
            return;
        }
        if (rv != NQ_OK) {
            print_word("drained", rv);
            return;
        }
        print_message(msg);
        nq_msg_free(msg);
    }
}

/* Runs the actions in argv[first..argc). */
static void run_actions(peer_state *st, int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *arg = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_arg = strcmp(a, "--send-hex") == 0 || strcmp(a, "--send-size") == 0 ||
                        strcmp(a, "--send-each-hex") == 0 || strcmp(a, "--send-each-size") == 0 ||
                        strcmp(a, "--send-all-hex") == 0 || strcmp(a, "--expect") == 0;
        uint8_t *buf;
        size_t len;

        if (takes_arg && arg == NULL) {
            usage("action needs an argument");
        }
        if (strcmp(a, "--send-hex") == 0 || strcmp(a, "--send-size") == 0) {
            buf = payload_arg(a, arg, &len);
            put_bytes(st, buf, len, NULL, 0);
            free(buf);
        } else if (strcmp(a, "--send-each-hex") == 0 || strcmp(a, "--send-each-size") == 0) {
            buf = payload_arg(a, arg, &len);
            put_each(st, buf, len);
            free(buf);
        } else if (strcmp(a, "--send-all-hex") == 0) {
            if (!st->is_server) {
                usage("--send-all-hex is a server action");
            }
            buf = decode_hex(arg, &len);
            put_bytes(st, buf, len, st->senders, st->nsenders);
            free(buf);
        } else if (strcmp(a, "--targeted") == 0) {
            do_targeted(st);
        } else if (strcmp(a, "--echo") == 0) {
            do_echo(st);
        } else if (strcmp(a, "--nowait") == 0) {
            st->wait_puts = 0;
        } else if (strcmp(a, "--expect") == 0) {
            do_expect(st, parse_size(arg));
        } else if (strcmp(a, "--close") == 0) {
            do_close(st);
        } else if (strcmp(a, "--drain") == 0) {
            do_drain(st);
        } else {
            fprintf(stderr, "unknown action %s\n", a);
            usage("unknown action");
        }
        if (takes_arg) {
            i++;
        }
    }
}

/* 1 when a names a communicator option (as opposed to an action). */
static int is_option(const char *a)
{
    static const char *const options[] = {"--protocol", "--host", "--port", "--qos", "--id",
                                          "--key",      "--cert", "--timeout"};

    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (strcmp(a, options[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    peer_state st;
    nq_opts *opts = NULL;
    nq_protocol protocol = NQ_TCP;
    const char *host = "127.0.0.1";
    const char *key = NULL;
    const char *cert = NULL;
    long port = -1;
    long qos = -1;
    long timeout_s = 60;
    nq_id id;
    int have_id = 0;
    int i;
    int rv;
    struct sigaction sa;

    memset(&st, 0, sizeof(st));
    if (argc < 2 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0)) {
        usage("first argument must be server or client");
    }
    st.is_server = strcmp(argv[1], "server") == 0;
    st.wait_puts = 1;

    for (i = 2; i < argc && is_option(argv[i]); i += 2) {
        const char *a = argv[i];

        if (i + 1 >= argc) {
            usage("option needs an argument");
        }
        if (strcmp(a, "--protocol") == 0) {
            if (strcmp(argv[i + 1], "tcp") == 0) {
                protocol = NQ_TCP;
            } else if (strcmp(argv[i + 1], "mqtt") == 0) {
                protocol = NQ_MQTT;
            } else if (strcmp(argv[i + 1], "grpc") == 0) {
                protocol = NQ_GRPC;
            } else {
                usage("--protocol must be tcp, mqtt or grpc");
            }
        } else if (strcmp(a, "--host") == 0) {
            host = argv[i + 1];
        } else if (strcmp(a, "--port") == 0) {
            port = (long)parse_size(argv[i + 1]);
            if (port > 65535) {
                usage("port out of range");
            }
        } else if (strcmp(a, "--qos") == 0) {
            qos = (long)parse_size(argv[i + 1]);
        } else if (strcmp(a, "--id") == 0) {
            if (nq_id_parse(argv[i + 1], &id) != NQ_OK) {
                usage("bad --id");
            }
            have_id = 1;
        } else if (strcmp(a, "--key") == 0) {
            key = argv[i + 1];
        } else if (strcmp(a, "--cert") == 0) {
            cert = argv[i + 1];
        } else {
            timeout_s = (long)parse_size(argv[i + 1]);
        }
    }
    if (port < 0) {
        usage("--port is required");
    }
    if (protocol == NQ_MQTT && port == 0) {
        usage("over mqtt --port names the broker and cannot be 0");
    }
    if (protocol != NQ_TCP && (key != NULL || cert != NULL)) {
        usage("--key and --cert are for tcp");
    }
    if (protocol != NQ_MQTT && qos >= 0) {
        usage("--qos is for mqtt");
    }
    if (st.is_server && (key == NULL) != (cert == NULL)) {
        usage("a TLS server needs both --key and --cert");
    }
    if (!st.is_server && key != NULL) {
        usage("a client takes no --key");
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_watchdog;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) {
        die("sigaction", NQ_ESYS);
    }
    alarm((unsigned)timeout_s);
    st.deadline_ms = now_ms() + (int64_t)timeout_s * 1000;

    if ((rv = nq_opts_new(&opts)) != NQ_OK || (have_id && (rv = nq_opts_set_id(opts, &id)) != NQ_OK) ||
        (rv = nq_opts_set_netloc(opts, host, (uint16_t)port)) != NQ_OK ||
        (rv = nq_opts_set_int(opts, NQ_OPT_CLOSE_TIMEOUT_MS, timeout_s * 1000)) != NQ_OK ||
        (qos >= 0 && (rv = nq_opts_set_int(opts, NQ_OPT_MQTT_QOS, qos)) != NQ_OK) ||
        (cert != NULL && (rv = nq_opts_set_tls(opts, key, cert)) != NQ_OK)) {
        fprintf(stderr, "error options: %s\n", nq_strerror(rv));
        return EXIT_OPEN;
    }
    /* Over MQTT nq_open returns once the broker has acknowledged the
     * subscription, so clients started after "listening" are heard. */
    rv = nq_open(protocol, st.is_server ? NQ_SERVER : NQ_CLIENT, opts, &st.comm);
    nq_opts_free(opts);
    if (rv != NQ_OK) {
        fprintf(stderr, "error open: %s\n", nq_strerror(rv));
        return EXIT_OPEN;
    }
    if (st.is_server) {
        uint16_t bound = (uint16_t)port;

        if (protocol != NQ_MQTT && (rv = nq_local_port(st.comm, &bound)) != NQ_OK) {
            die("local port", rv);
        }
        printf("listening %u\n", (unsigned)bound);
        fflush(stdout);
    }

    run_actions(&st, argc, argv, i);
    if (!st.closed) {
        do_close(&st);
    }
    forget_last(&st);
    nq_destroy(st.comm);
    return 0;
}
