/*
 * nq: network queues from the command line.
 *
 *   nq serve [options]           prints every message it receives, optionally
 *                                echoing each one back to its sender
 *   nq send [options] MESSAGE... sends each argument as one message and
 *                                prints the replies
 *
 * Output is one line per message, "<peer-uuid> <length> <text>", so that
 * scripts and tests can compare it exactly.  A failure is one line on
 * stderr, "nq: <what failed>: <reason> (<libnq's log line>)"; the exit status
 * is 0 on success, 1 when something failed and 2 for bad arguments.
 */
#define _POSIX_C_SOURCE 200809L

#include <nq/nq.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* net-queue's defaults, so that `nq serve` and a default net-queue client
 * find each other. */
#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 51966
#define DEFAULT_TIMEOUT_MS 10000

/* A server waits for its clients' FIN when it closes; a client that never
 * sends one must not keep Ctrl-C from ending the server. */
#define SERVE_CLOSE_TIMEOUT_MS 5000

/* How long a waiting server goes without looking at the stop flag. */
#define POLL_MS 100

static const char usage_text[] =
    "usage: nq serve [--protocol P] [--host H] [--port P] [--id UUID]\n"
    "                [--key FILE --cert FILE [--ca FILE [--require-client-cert]]]\n"
    "                [--user NAME [--password-file FILE]] [--client-id ID]\n"
    "                [--token-file FILE] [--echo] [--count N]\n"
    "       nq send  [--protocol P] [--host H] [--port P] [--id UUID]\n"
    "                [--cert FILE | [--key FILE --cert FILE] [--ca FILE]]\n"
    "                [--server-name NAME] [--user NAME [--password-file FILE]]\n"
    "                [--client-id ID] [--token-file FILE]\n"
    "                [--expect N] [--timeout MS] MESSAGE...\n"
    "       nq version\n"
    "       nq help\n"
    "\n"
    "Network queues from the command line, wire-compatible with net-queue.\n"
    "\n"
    "serve   listens and prints \"listening HOST PORT\", then one line per message:\n"
    "        \"PEER-UUID LENGTH TEXT\", where bytes outside printable ASCII appear\n"
    "        as \\xNN and a backslash as \\\\.  --echo sends each message back to\n"
    "        its sender.  --count N exits after N messages; otherwise SIGINT or\n"
    "        SIGTERM closes the server.\n"
    "send    sends each MESSAGE as one message, then prints N replies (--expect,\n"
    "        default 0) the same way.  --timeout bounds each send, each reply and\n"
    "        the close (default 10000 ms, -1 waits forever); running out of time\n"
    "        is an error.\n"
    "\n"
    "options:\n"
    "  --protocol P  tcp, mqtt (host and port name the broker) or grpc; default tcp\n"
    "  --host H      host name or address; default 127.0.0.1\n"
    "  --port P      port; default 51966; serve --port 0 picks a free port\n"
    "  --id UUID     this side's identity; default a random UUID\n"
    "  --key FILE    TLS with this PEM private key (needs --cert): a server's,\n"
    "                or a client's own, shown when the server asks\n"
    "  --cert FILE   with --key: the PEM certificate chain that goes with it;\n"
    "                send without --key: the PEM file of trusted certificates\n"
    "                (turns TLS on)\n"
    "  --ca FILE     the PEM file of trusted certificates: send checks the\n"
    "                server against it, serve the certificates clients show\n"
    "  --require-client-cert  serve: refuse clients without a certificate\n"
    "                that --ca trusts (with --ca alone one is checked if shown)\n"
    "  --server-name NAME  send over TLS: the name the server's certificate\n"
    "                must carry, when it is not --host\n"
    "  --user NAME   mqtt: the login given to the broker (both commands)\n"
    "  --password-file FILE  mqtt: its password, the file's first line\n"
    "  --client-id ID  mqtt: the client id given to the broker (default: the\n"
    "                id in hex)\n"
    "  --token-file FILE  grpc over TLS: send presents the token on the\n"
    "                file's first line; serve accepts the tokens listed, one\n"
    "                per line as \"TOKEN [IDENTITY]\" (# starts a comment), and\n"
    "                refuses every other client\n"
    "  With --protocol mqtt both commands are clients of the broker: --key and\n"
    "  --cert are the login certificate, --ca or a lone --cert the broker's\n"
    "  trusted certificates.\n"
    "\n"
    "Exit status: 0 on success, 1 when something failed, 2 for bad arguments.\n"
    "NQ_LOG=error|warn|info|debug replaces the default logging (warnings and\n"
    "errors) with libnq's own at that level.\n";

typedef struct args {
    bool serve; /* else send */
    nq_protocol protocol;
    const char *protocol_name;
    const char *host;
    uint16_t port;
    bool has_id;
    nq_id id;
    const char *key_path;
    const char *cert_path;
    const char *ca_path;
    bool require_client_cert;
    const char *server_name;
    const char *user;
    const char *password_file;
    const char *client_id;
    const char *token_file;
    bool echo;
    int64_t count; /* serve: messages before exiting; 0 runs until a signal */
    int64_t expect;
    int64_t timeout_ms;
    char **messages;
    int nmessages;
} args;

/* Set by the signal-waiting thread, read by the serve loop. */
static atomic_bool stop_requested;

/* libnq's warnings and errors.  A failing command must say why in one line,
 * so at first they are not printed: the first error (failing that, the first
 * warning) is kept and report() appends it.  Once a server is listening,
 * lines are printed as they come, since a lost client is news but not the
 * end of the server.  The hook runs on libnq's threads, hence the lock. */
static struct {
    pthread_mutex_t lock;
    bool live;
    int level; /* of the kept line; NQ_LOG_DEBUG while none is kept */
    char line[256];
} log_state = { PTHREAD_MUTEX_INITIALIZER, false, NQ_LOG_DEBUG, "" };

static void usage_error(const char *format, ...)
{
    va_list ap;

    fputs("nq: ", stderr);
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputs(" (see nq --help)\n", stderr);
    exit(EXIT_USAGE);
}

/* Prints "nq: <what failed>: <reason> (<kept log line>)" and returns the
 * failure status. */
static int report(int err, const char *format, ...)
{
    char detail[sizeof(log_state.line)];
    va_list ap;

    pthread_mutex_lock(&log_state.lock);
    memcpy(detail, log_state.line, sizeof(detail));
    pthread_mutex_unlock(&log_state.lock);

    fputs("nq: ", stderr);
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    if (detail[0] != '\0') {
        fprintf(stderr, ": %s (%s)\n", nq_strerror(err), detail);
    } else {
        fprintf(stderr, ": %s\n", nq_strerror(err));
    }
    return EXIT_FAILED;
}

static int report_system(int errnum, const char *what)
{
    fprintf(stderr, "nq: %s: %s\n", what, strerror(errnum));
    return EXIT_FAILED;
}

static void log_hook(void *ctx, int level, const char *message)
{
    (void)ctx;
    if (level > NQ_LOG_WARN) {
        return;
    }
    pthread_mutex_lock(&log_state.lock);
    if (log_state.live) {
        fprintf(stderr, "nq: %s\n", message);
    } else if (level < log_state.level) {
        snprintf(log_state.line, sizeof(log_state.line), "%s", message);
        log_state.level = level;
    }
    pthread_mutex_unlock(&log_state.lock);
}

/* From now on libnq's warnings and errors are printed as they come. */
static void log_live(void)
{
    pthread_mutex_lock(&log_state.lock);
    log_state.live = true;
    log_state.line[0] = '\0';
    pthread_mutex_unlock(&log_state.lock);
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */
/* ------------------------------------------------------------------------ */

static int64_t parse_integer(const char *option, const char *text, int64_t min, int64_t max)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        usage_error("%s wants an integer from %" PRId64 " to %" PRId64 ", not \"%s\"", option,
                    min, max, text);
    }
    return value;
}

/* Matches argv[*i] against "--name VALUE" or "--name=VALUE" and stores the
 * value.  Returns false when argv[*i] is another option. */
static bool take_value(const char *name, int argc, char **argv, int *i, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0) {
        return false;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return true;
    }
    if (arg[n] != '\0') {
        return false;
    }
    if (*i + 1 >= argc) {
        usage_error("%s needs a value", name);
    }
    *i += 1;
    *value = argv[*i];
    return true;
}

static void parse_protocol(args *a, const char *name)
{
    if (strcmp(name, "tcp") == 0) {
        a->protocol = NQ_TCP;
    } else if (strcmp(name, "mqtt") == 0) {
        a->protocol = NQ_MQTT;
    } else if (strcmp(name, "grpc") == 0) {
        a->protocol = NQ_GRPC;
    } else {
        usage_error("--protocol must be tcp, mqtt or grpc, not \"%s\"", name);
    }
    a->protocol_name = name;
}

static void only_for(const args *a, bool serve, const char *option)
{
    if (a->serve != serve) {
        usage_error("%s is not an option of %s", option, a->serve ? "serve" : "send");
    }
}

/* Fills *a from "nq serve|send ..." (argv[1] is the command).  Arguments
 * starting with "--" are options until a lone "--"; everything else is a
 * message, so that "-1" or "" can be sent as they are. */
static void parse_args(int argc, char **argv, args *a)
{
    bool options_done = false;
    const char *value;

    memset(a, 0, sizeof(*a));
    a->serve = strcmp(argv[1], "serve") == 0;
    a->protocol = NQ_TCP;
    a->protocol_name = "tcp";
    a->host = DEFAULT_HOST;
    a->port = DEFAULT_PORT;
    a->timeout_ms = DEFAULT_TIMEOUT_MS;
    a->messages = argv + 2;

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];

        if (options_done || strncmp(arg, "--", 2) != 0) {
            if (strcmp(arg, "-h") == 0 && !options_done) {
                fputs(usage_text, stdout);
                exit(EXIT_SUCCESS);
            }
            /* Messages are gathered in place, after the options. */
            a->messages[a->nmessages++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(EXIT_SUCCESS);
        } else if (take_value("--protocol", argc, argv, &i, &value)) {
            parse_protocol(a, value);
        } else if (take_value("--host", argc, argv, &i, &value)) {
            if (value[0] == '\0') {
                usage_error("--host must not be empty");
            }
            a->host = value;
        } else if (take_value("--port", argc, argv, &i, &value)) {
            a->port = (uint16_t)parse_integer("--port", value, a->serve ? 0 : 1, 65535);
        } else if (take_value("--id", argc, argv, &i, &value)) {
            if (nq_id_parse(value, &a->id) != NQ_OK) {
                usage_error("--id wants a UUID, not \"%s\"", value);
            }
            a->has_id = true;
        } else if (take_value("--key", argc, argv, &i, &value)) {
            a->key_path = value;
        } else if (take_value("--cert", argc, argv, &i, &value)) {
            a->cert_path = value;
        } else if (take_value("--ca", argc, argv, &i, &value)) {
            a->ca_path = value;
        } else if (take_value("--server-name", argc, argv, &i, &value)) {
            only_for(a, false, "--server-name");
            a->server_name = value;
        } else if (take_value("--user", argc, argv, &i, &value)) {
            a->user = value;
        } else if (take_value("--password-file", argc, argv, &i, &value)) {
            a->password_file = value;
        } else if (take_value("--client-id", argc, argv, &i, &value)) {
            a->client_id = value;
        } else if (take_value("--token-file", argc, argv, &i, &value)) {
            a->token_file = value;
        } else if (strcmp(arg, "--require-client-cert") == 0) {
            only_for(a, true, "--require-client-cert");
            a->require_client_cert = true;
        } else if (strcmp(arg, "--echo") == 0) {
            only_for(a, true, "--echo");
            a->echo = true;
        } else if (take_value("--count", argc, argv, &i, &value)) {
            only_for(a, true, "--count");
            a->count = parse_integer("--count", value, 1, INT64_MAX);
        } else if (take_value("--expect", argc, argv, &i, &value)) {
            only_for(a, false, "--expect");
            a->expect = parse_integer("--expect", value, 0, INT64_MAX);
        } else if (take_value("--timeout", argc, argv, &i, &value)) {
            only_for(a, false, "--timeout");
            a->timeout_ms = parse_integer("--timeout", value, -1, INT64_MAX);
        } else {
            usage_error("unknown option %s", arg);
        }
    }

    if (a->password_file != NULL && a->user == NULL) {
        usage_error("--password-file needs --user, the login it goes with");
    }
    if (a->serve) {
        if (a->nmessages > 0) {
            usage_error("serve takes no messages, but got \"%s\"", a->messages[0]);
        }
        if (a->protocol == NQ_MQTT) {
            /* Both roles are clients of the broker. */
            if (a->key_path != NULL && a->cert_path == NULL) {
                usage_error("--key needs --cert, the certificate chain that goes with it");
            }
        } else if ((a->key_path == NULL) != (a->cert_path == NULL)) {
            usage_error("serving over TLS needs both --key and --cert");
        }
        if (a->ca_path != NULL && a->key_path == NULL && a->protocol != NQ_MQTT) {
            usage_error("--ca checks client certificates of a TLS server: add --key and --cert");
        }
        if (a->require_client_cert && a->ca_path == NULL) {
            usage_error("--require-client-cert needs --ca to check the certificates against");
        }
    } else if (a->nmessages == 0) {
        usage_error("send needs at least one MESSAGE");
    } else if (a->key_path != NULL && a->cert_path == NULL) {
        usage_error("--key needs --cert, the certificate chain that goes with it");
    }
}

/* ------------------------------------------------------------------------ */
/* Shared by serve and send                                                  */
/* ------------------------------------------------------------------------ */

/* "host:port", with IPv6 addresses in brackets as in URLs. */
static void format_netloc(const args *a, char *buf, size_t buflen)
{
    if (strchr(a->host, ':') != NULL) {
        snprintf(buf, buflen, "[%s]:%u", a->host, (unsigned)a->port);
    } else {
        snprintf(buf, buflen, "%s:%u", a->host, (unsigned)a->port);
    }
}

/* TLS from --key, --cert, --ca, --require-client-cert and --server-name.
 * A client's lone --cert names the certificates it trusts; with --key it
 * is the client's own chain.  Over MQTT both commands take the client's
 * form. */
static int set_tls(const args *a, nq_purpose purpose, nq_opts *opts)
{
    int rc = NQ_OK;
    bool holds_key = purpose == NQ_SERVER && a->protocol != NQ_MQTT;
    if (holds_key && a->cert_path != NULL) {
        rc = nq_opts_set_tls(opts, a->key_path, a->cert_path);
    } else if (a->key_path != NULL) {
        rc = nq_opts_set_tls_identity(opts, a->key_path, a->cert_path, 0);
    } else if (a->cert_path != NULL) {
        rc = nq_opts_set_tls(opts, NULL, a->cert_path);
    }
    if (rc == NQ_OK && a->ca_path != NULL) {
        rc = nq_opts_set_tls_trust(opts, a->ca_path, NULL, NULL);
    }
    if (rc == NQ_OK && holds_key && a->ca_path != NULL) {
        rc = nq_opts_set_int(opts, NQ_OPT_TLS_CLIENT_AUTH, a->require_client_cert ? 2 : 1);
    }
    if (rc == NQ_OK && a->server_name != NULL) {
        rc = nq_opts_set_tls_server_name(opts, a->server_name);
    }
    return rc;
}

/* The lines of a small text file, without their line ends, one after the
 * other in *text (freed by the caller); NULL after reporting. */
static char *read_lines(const char *path, const char *option)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "nq: %s %s: %s\n", option, path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (n <= 0) {
        fprintf(stderr, "nq: %s %s is empty\n", option, path);
        free(text);
        return NULL;
    }
    return text;
}

/* Ends the line at p (at \n or \r\n) and returns the next one. */
static char *cut_line(char *p)
{
    char *end = p + strcspn(p, "\n");
    char *next = *end != '\0' ? end + 1 : end;
    if (end > p && end[-1] == '\r') {
        end--;
    }
    *end = '\0';
    return next;
}

/* --token-file: a client's token (the first line), or a server's list of
 * "TOKEN [IDENTITY]" lines. */
static int set_tokens(const args *a, nq_purpose purpose, nq_opts *opts)
{
    char *text = read_lines(a->token_file, "--token-file");
    if (text == NULL) {
        return NQ_EINVAL;
    }
    int rc = NQ_OK;
    if (purpose == NQ_CLIENT) {
        cut_line(text);
        rc = nq_opts_set_token(opts, text);
    }
    int accepted = 0;
    for (char *line = text, *next; purpose == NQ_SERVER && rc == NQ_OK && *line != '\0';
         line = next) {
        next = cut_line(line);
        line += strspn(line, " \t");
        if (*line == '\0' || *line == '#') {
            continue;
        }
        char *identity = line + strcspn(line, " \t");
        if (*identity != '\0') {
            *identity++ = '\0';
            identity += strspn(identity, " \t");
        }
        rc = nq_opts_accept_token(opts, line, identity);
        accepted++;
    }
    if (rc == NQ_OK && purpose == NQ_SERVER && accepted == 0) {
        rc = NQ_EINVAL;
    }
    if (rc != NQ_OK) {
        fprintf(stderr, "nq: --token-file %s holds no usable token\n", a->token_file);
    }
    free(text);
    return rc;
}

/* --user, --password-file, --client-id and --token-file. */
static int set_logins(const args *a, nq_purpose purpose, nq_opts *opts)
{
    int rc = NQ_OK;
    if (a->user != NULL) {
        char *password = NULL;
        if (a->password_file != NULL) {
            if ((password = read_lines(a->password_file, "--password-file")) == NULL) {
                return NQ_EINVAL;
            }
            cut_line(password);
        }
        rc = nq_opts_set_login(opts, a->user, password);
        free(password);
    }
    if (rc == NQ_OK && a->client_id != NULL) {
        rc = nq_opts_set_mqtt_client_id(opts, a->client_id);
    }
    if (rc == NQ_OK && a->token_file != NULL) {
        rc = set_tokens(a, purpose, opts);
    }
    return rc;
}

/* Opens the communicator described by *a.  Returns 0 or an exit status
 * after reporting the problem. */
static int open_comm(const args *a, nq_purpose purpose, int64_t close_timeout_ms, nq_comm **out)
{
    char netloc[300];
    nq_opts *opts;
    int rc;

    if ((rc = nq_opts_new(&opts)) != NQ_OK) {
        return report(rc, "create options");
    }
    if (a->has_id && (rc = nq_opts_set_id(opts, &a->id)) != NQ_OK) {
        nq_opts_free(opts);
        return report(rc, "set --id");
    }
    if ((rc = nq_opts_set_netloc(opts, a->host, a->port)) != NQ_OK) {
        nq_opts_free(opts);
        report(rc, "use --host %s", a->host);
        return EXIT_USAGE;
    }
    if ((rc = set_tls(a, purpose, opts)) != NQ_OK) {
        nq_opts_free(opts);
        report(rc, "use --key/--cert/--ca/--server-name");
        return EXIT_USAGE;
    }
    if ((rc = set_logins(a, purpose, opts)) != NQ_OK) {
        nq_opts_free(opts);
        report(rc, "use --user/--password-file/--client-id/--token-file");
        return EXIT_USAGE;
    }
    if ((rc = nq_opts_set_int(opts, NQ_OPT_CLOSE_TIMEOUT_MS, close_timeout_ms)) != NQ_OK) {
        nq_opts_free(opts);
        return report(rc, "set the close timeout");
    }
    /* NQ_LOG asks libnq for its own, possibly more verbose, logging. */
    if (getenv("NQ_LOG") == NULL && (rc = nq_opts_set_log(opts, log_hook, NULL)) != NQ_OK) {
        nq_opts_free(opts);
        return report(rc, "set the log hook");
    }

    rc = nq_open(a->protocol, purpose, opts, out);
    nq_opts_free(opts);
    if (rc == NQ_ENOTSUP && a->protocol != NQ_TCP) {
        fprintf(stderr, "nq: protocol %s is not built into this libnq\n", a->protocol_name);
        return EXIT_FAILED;
    }
    if (rc != NQ_OK) {
        format_netloc(a, netloc, sizeof(netloc));
        return report(rc, "open %s %s on %s", a->protocol_name,
                      purpose == NQ_SERVER ? "server" : "client", netloc);
    }
    return 0;
}

/* Prints "<peer-uuid> <length> <text>".  Returns 0 or an exit status. */
static int print_message(const nq_msg *msg)
{
    char peer_text[NQ_ID_STRLEN];
    const unsigned char *bytes;
    const void *data;
    size_t len;
    nq_id peer;
    int rc;

    if ((rc = nq_msg_peer(msg, &peer)) != NQ_OK ||
        (rc = nq_id_format(&peer, peer_text, sizeof(peer_text))) != NQ_OK ||
        (rc = nq_msg_data(msg, &data, &len)) != NQ_OK) {
        return report(rc, "read a received message");
    }

    printf("%s %zu ", peer_text, len);
    bytes = data;
    for (size_t i = 0; i < len; i++) {
        if (bytes[i] == '\\') {
            fputs("\\\\", stdout);
        } else if (bytes[i] >= 0x20 && bytes[i] < 0x7f) {
            putchar(bytes[i]);
        } else {
            printf("\\x%02x", bytes[i]);
        }
    }
    putchar('\n');
    /* Flushed per line: whoever reads a pipe sees each message as it comes. */
    if (fflush(stdout) != 0) {
        return report_system(errno, "write to standard output");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* serve                                                                     */
/* ------------------------------------------------------------------------ */

static void *wait_for_stop_signal(void *arg)
{
    const sigset_t *signals = arg;
    int signo;

    if (sigwait(signals, &signo) == 0) {
        atomic_store(&stop_requested, true);
    }
    return NULL;
}

/* Makes SIGINT and SIGTERM set stop_requested.  The signals are blocked
 * before libnq starts its threads, which inherit the mask, so they are
 * delivered only to the one thread that waits for them. */
static int handle_stop_signals(void)
{
    static sigset_t signals;
    pthread_t waiter;
    int rc;

    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    if ((rc = pthread_sigmask(SIG_BLOCK, &signals, NULL)) != 0) {
        return report_system(rc, "block SIGINT and SIGTERM");
    }
    if ((rc = pthread_create(&waiter, NULL, wait_for_stop_signal, &signals)) != 0) {
        return report_system(rc, "start the signal thread");
    }
    /* The thread is never joined: it may wait until the process exits. */
    pthread_detach(waiter);
    return 0;
}

/* Waits for a future until it completes or a stop is requested.  Returns
 * the put's result, or NQ_EPENDING when the wait was cut short. */
static int wait_unless_stopped(nq_future *future)
{
    int rc;

    while ((rc = nq_future_wait(future, POLL_MS)) == NQ_ETIMEDOUT) {
        if (atomic_load(&stop_requested)) {
            return NQ_EPENDING;
        }
    }
    return rc;
}

/* Sends msg back to its sender and waits until the bytes are with the
 * transport.  The put is zero-copy, so msg must stay alive until then: when
 * a stop cuts the wait short, the pending future goes to *pending and the
 * caller frees msg only after nq_close has settled it.  A failure concerns
 * one client, so it is reported and the server goes on. */
static void echo(nq_comm *comm, const nq_msg *msg, nq_future **pending)
{
    char peer_text[NQ_ID_STRLEN];
    nq_future *future;
    nq_chunk chunk;
    nq_id peer;
    int rc;

    if ((rc = nq_msg_peer(msg, &peer)) != NQ_OK ||
        (rc = nq_msg_data(msg, &chunk.data, &chunk.len)) != NQ_OK) {
        report(rc, "read a received message");
        return;
    }
    if ((rc = nq_put(comm, &chunk, 1, &peer, 1, &future)) == NQ_OK) {
        rc = wait_unless_stopped(future);
        if (rc == NQ_EPENDING) {
            *pending = future;
            return;
        }
        nq_future_free(future);
    }
    if (rc != NQ_OK) {
        nq_id_format(&peer, peer_text, sizeof(peer_text));
        report(rc, "echo to %s", peer_text);
    }
}

static int serve(const args *a)
{
    nq_future *pending = NULL;
    nq_msg *msg = NULL;
    nq_comm *comm;
    int64_t received = 0;
    uint16_t port;
    int status;
    int rc;

    if ((status = handle_stop_signals()) != 0) {
        return status;
    }
    if ((status = open_comm(a, NQ_SERVER, SERVE_CLOSE_TIMEOUT_MS, &comm)) != 0) {
        return status;
    }
    /* An MQTT server listens at its broker, which has the port. */
    if (a->protocol == NQ_MQTT) {
        port = a->port;
        rc = NQ_OK;
    } else {
        rc = nq_local_port(comm, &port);
    }
    if (rc != NQ_OK) {
        status = report(rc, "read the listening port");
    } else {
        printf("listening %s %u\n", a->host, (unsigned)port);
        if (fflush(stdout) != 0) {
            status = report_system(errno, "write to standard output");
        }
        log_live();
    }

    while (status == 0 && !atomic_load(&stop_requested) && (a->count == 0 || received < a->count)) {
        rc = nq_get(comm, POLL_MS, &msg);
        if (rc == NQ_ETIMEDOUT) {
            continue;
        }
        if (rc != NQ_OK) {
            status = report(rc, "receive");
            break;
        }
        received++;
        status = print_message(msg);
        if (status == 0 && a->echo) {
            echo(comm, msg, &pending);
            if (pending != NULL) {
                break;
            }
        }
        nq_msg_free(msg);
        msg = NULL;
    }

    rc = nq_close(comm);
    if (rc != NQ_OK && status == 0) {
        status = report(rc, "close");
    }
    /* nq_close has completed every future, so nothing reads msg any more. */
    nq_future_free(pending);
    nq_msg_free(msg);
    nq_destroy(comm);
    return status;
}

/* ------------------------------------------------------------------------ */
/* send                                                                      */
/* ------------------------------------------------------------------------ */

static int send_messages(const args *a)
{
    nq_future *future;
    nq_comm *comm;
    nq_msg *msg;
    int status;
    int rc;

    if ((status = open_comm(a, NQ_CLIENT, a->timeout_ms, &comm)) != 0) {
        return status;
    }

    for (int i = 0; i < a->nmessages && status == 0; i++) {
        /* argv outlives the communicator, so the zero-copy put is safe even
         * when the wait below gives up. */
        nq_chunk chunk = { a->messages[i], strlen(a->messages[i]) };

        if ((rc = nq_put(comm, &chunk, 1, NULL, 0, &future)) != NQ_OK) {
            status = report(rc, "send message %d", i + 1);
            break;
        }
        rc = nq_future_wait(future, a->timeout_ms);
        nq_future_free(future);
        if (rc != NQ_OK) {
            status = report(rc, "send message %d", i + 1);
        }
    }

    for (int64_t i = 0; i < a->expect && status == 0; i++) {
        if ((rc = nq_get(comm, a->timeout_ms, &msg)) != NQ_OK) {
            status = report(rc, "receive reply %" PRId64 " of %" PRId64, i + 1, a->expect);
            break;
        }
        status = print_message(msg);
        nq_msg_free(msg);
    }

    rc = nq_close(comm);
    if (rc != NQ_OK && status == 0) {
        status = report(rc, "close");
    }
    nq_destroy(comm);
    return status;
}

int main(int argc, char **argv)
{
    args a;

    if (argc < 2) {
        usage_error("missing command");
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        if (argc > 2) {
            usage_error("version takes no arguments");
        }
        printf("%s\n", nq_version());
        return EXIT_SUCCESS;
    }
    if (strcmp(argv[1], "serve") != 0 && strcmp(argv[1], "send") != 0) {
        usage_error("unknown command \"%s\"", argv[1]);
    }

    parse_args(argc, argv, &a);
    return a.serve ? serve(&a) : send_messages(&a);
}
