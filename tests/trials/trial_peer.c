/*
 * trial_peer: one side of a fault trial (tests/trials/).  It speaks through
 * the public API only and reports what it sees as lines
 *
 *   <ms since start> <event> [key=value ...]
 *
 * so that the trial scripts can time detections and count messages.
 *
 *   trial_peer serve --protocol P --host H --port N [options]
 *       echoes every message to its sender; reports "listening port=N",
 *       "peers n=N" whenever the peer count changes, and at the end
 *       "summary received=N duplicates=N out_of_order=N" and
 *       "closed rc=N ms=N" (how long nq_close took)
 *   trial_peer send --protocol P --host H --port N --count N [options]
 *       sends N numbered messages (--interval-us apart, --size bytes) with
 *       futures and reads the echoes; reports "connected", the first
 *       "error where=get|put|future code=N", and at the end
 *       "closed rc=N ms=N", then (every future having completed)
 *       "summary sent=N ok=N failed=N echoed=N duplicates=N out_of_order=N"
 *
 * Every peer event is reported as "event type=N reason=N"; a server's
 * summary adds resumed=N and a client's reconnects=N (the counters).
 *
 * Options: --id UUID, --keepalive MS, --close-timeout MS, --queue N,
 * --acked 1 (NQ_DELIVERY_ACKED), --reconnect MS (client: reconnect after
 * a loss, first after MS, at most 1 s apart),
 * --duration MS (stop after), --hold 1 (send: once every echo is back,
 * stay connected, idle, until the duration ends or an error comes), --key F --cert F (TLS; a client gives only
 * --cert, its trusted certificate).  SIGTERM or SIGINT ends it cleanly:
 * the summary is printed and the communicator closed.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nq/nq.h>

#include "peer_args.h"

#define MAX_PEERS 64

static volatile sig_atomic_t stopping;
static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

typedef struct args {
    const char *mode;
    nq_protocol protocol;
    int tls;
    const char *host;
    int port;
    const char *id;
    int64_t keepalive, close_timeout, queue, duration;
    const char *key, *cert;
    long count, size, interval_us;
    int hold;
    int acked;
    int64_t reconnect;
} args;

static void usage(void)
{
    fprintf(stderr, "usage: trial_peer serve|send --protocol tcp|tls|mqtt|grpc --host H --port N "
                    "[--count N --size B --interval-us U] [--id UUID] [--keepalive MS] "
                    "[--close-timeout MS] [--queue N] [--duration MS] [--key F] [--cert F]\n");
    exit(2);
}

static void parse(args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->host = "127.0.0.1";
    a->keepalive = a->close_timeout = a->queue = a->duration = -1;
    a->size = 16;
    const nqt_opt opts[] = {
        {"--protocol", NQT_OPT_PROTOCOL, &a->protocol, &a->tls},
        {"--host", NQT_OPT_STR, &a->host, NULL},
        {"--port", NQT_OPT_INT, &a->port, NULL},
        {"--id", NQT_OPT_STR, &a->id, NULL},
        {"--keepalive", NQT_OPT_I64, &a->keepalive, NULL},
        {"--close-timeout", NQT_OPT_I64, &a->close_timeout, NULL},
        {"--queue", NQT_OPT_I64, &a->queue, NULL},
        {"--duration", NQT_OPT_I64, &a->duration, NULL},
        {"--key", NQT_OPT_STR, &a->key, NULL},
        {"--cert", NQT_OPT_STR, &a->cert, NULL},
        {"--count", NQT_OPT_LONG, &a->count, NULL},
        {"--size", NQT_OPT_LONG, &a->size, NULL},
        {"--interval-us", NQT_OPT_LONG, &a->interval_us, NULL},
        {"--hold", NQT_OPT_INT, &a->hold, NULL},
        {"--acked", NQT_OPT_INT, &a->acked, NULL},
        {"--reconnect", NQT_OPT_I64, &a->reconnect, NULL},
    };
    if (argc < 2 || nqt_parse_opts(opts, sizeof(opts) / sizeof(opts[0]), 2, argc, argv) != 0) {
        usage();
    }
    a->mode = argv[1];
    if (a->size < 8) {
        a->size = 8;
    }
}

static void on_event(void *ctx, const nq_event *ev)
{
    (void)ctx;
    nqt_report("event type=%d reason=%d", ev->type, ev->reason);
}

static nq_comm *open_peer(const args *a, nq_purpose purpose)
{
    nq_opts *o;
    if (nq_opts_new(&o) != NQ_OK || nq_opts_set_netloc(o, a->host, (uint16_t)a->port) != NQ_OK) {
        return NULL;
    }
    nq_id id;
    if (a->id != NULL && (nq_id_parse(a->id, &id) != NQ_OK || nq_opts_set_id(o, &id) != NQ_OK)) {
        return NULL;
    }
    if (a->keepalive >= 0) {
        nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, a->keepalive);
    }
    if (a->close_timeout >= 0) {
        nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, a->close_timeout);
    }
    if (a->queue > 0) {
        nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, a->queue);
    }
    if (a->acked) {
        nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED);
    }
    if (a->reconnect > 0 && purpose == NQ_CLIENT) {
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, a->reconnect);
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 1000);
    }
    nq_opts_set_events(o, on_event, NULL);
    if ((a->tls || a->cert != NULL) && nq_opts_set_tls(o, a->key, a->cert) != NQ_OK) {
        return NULL;
    }
    nq_comm *c = NULL;
    int rc = nq_open(a->protocol, purpose, o, &c);
    nq_opts_free(o);
    if (rc != NQ_OK) {
        nqt_report("error where=open code=%d", rc);
        return NULL;
    }
    return c;
}

static uint64_t seq_of(const nq_msg *m)
{
    const void *d;
    size_t n;
    uint64_t seq = 0;
    if (nq_msg_data(m, &d, &n) == NQ_OK && n >= 8) {
        memcpy(&seq, d, 8);
    }
    return seq;
}

static int expired(const args *a)
{
    return a->duration >= 0 && nqt_peer_ms() >= a->duration;
}

static void close_and_report(nq_comm *c)
{
    int64_t t0 = nqt_peer_ms();
    int rc = nq_close(c);
    nqt_report("closed rc=%d ms=%" PRId64, rc, nqt_peer_ms() - t0);
    nq_destroy(c);
}

/* ---- serve ------------------------------------------------------------------- */

struct seen {
    nq_id id;
    uint64_t next; /* the sequence number expected next */
};

static int serve(const args *a)
{
    nq_comm *s = open_peer(a, NQ_SERVER);
    if (s == NULL) {
        return 1;
    }
    uint16_t port = 0;
    nq_local_port(s, &port);
    nqt_report("listening port=%u", (unsigned)port);
    static struct seen peers[MAX_PEERS];
    int npeers = 0;
    long received = 0, dups = 0, reorders = 0;
    size_t last_count = 0;
    while (!stopping && !expired(a)) {
        size_t count = 0;
        nq_peers(s, NULL, 0, &count);
        if (count != last_count) {
            nqt_report("peers n=%zu", count);
            last_count = count;
        }
        nq_msg *m = NULL;
        int rc = nq_get(s, 100, &m);
        if (rc == NQ_ETIMEDOUT) {
            continue;
        }
        if (rc != NQ_OK) {
            nqt_report("error where=get code=%d", rc);
            break;
        }
        nq_id from;
        nq_msg_peer(m, &from);
        uint64_t seq = seq_of(m);
        struct seen *p = NULL;
        for (int i = 0; i < npeers; i++) {
            p = nq_id_equal(&peers[i].id, &from) ? &peers[i] : p;
        }
        if (p == NULL && npeers < MAX_PEERS) {
            p = &peers[npeers++];
            p->id = from;
            p->next = 0;
        }
        received++;
        if (p != NULL) {
            if (seq < p->next) {
                if (dups++ < 5) {
                    nqt_report("duplicate seq=%" PRIu64 " expected=%" PRIu64 " len=%zu", seq, p->next,
                           nq_msg_size(m));
                }
            } else {
                if (seq > p->next && reorders++ < 5) {
                    nqt_report("gap seq=%" PRIu64 " expected=%" PRIu64, seq, p->next);
                }
                p->next = seq + 1;
            }
        }
        const void *d;
        size_t n;
        nq_msg_data(m, &d, &n);
        nq_chunk ch = {d, n};
        nq_put(s, &ch, 1, &from, 1, NULL);
        nq_msg_free(m);
    }
    int64_t resumed = 0;
    nq_stat(s, NQ_STAT_RESUMED, &resumed);
    nqt_report("summary received=%ld duplicates=%ld out_of_order=%ld resumed=%" PRId64, received, dups,
           reorders, resumed);
    close_and_report(s);
    return 0;
}

/* ---- send ------------------------------------------------------------------------ */

static atomic_long futures_ok, futures_failed;
static atomic_int first_future_error;

/* A put's future completed: its buffer (ctx) is free to go. */
static void on_done(nq_future *f, int result, void *ctx)
{
    (void)f;
    free(ctx);
    if (result == NQ_OK) {
        atomic_fetch_add(&futures_ok, 1);
    } else {
        atomic_fetch_add(&futures_failed, 1);
        int none = 0;
        if (atomic_compare_exchange_strong(&first_future_error, &none, result)) {
            nqt_report("error where=future code=%d", result);
        }
    }
}

static int send_all(const args *a)
{
    nq_comm *c = open_peer(a, NQ_CLIENT);
    if (c == NULL) {
        return 1;
    }
    long sent = 0, echoed = 0, dups = 0, reorders = 0;
    uint64_t next_echo = 0;
    int connected = 0, failed = 0;
    struct timespec next_send;
    clock_gettime(CLOCK_MONOTONIC, &next_send);
    while (!stopping && !expired(a) && !failed) {
        nq_id sid;
        if (!connected && nq_server_id(c, &sid) == NQ_OK) {
            connected = 1;
            nqt_report("connected");
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int due = sent < a->count && (now.tv_sec > next_send.tv_sec ||
                                      (now.tv_sec == next_send.tv_sec && now.tv_nsec >= next_send.tv_nsec));
        if (due) {
            uint64_t seq = (uint64_t)sent;
            uint8_t *data = calloc(1, (size_t)a->size);
            if (data == NULL) {
                return 1;
            }
            memcpy(data, &seq, 8);
            nq_chunk ch = {data, (size_t)a->size};
            nq_future *f = NULL;
            int rc = nq_put(c, &ch, 1, NULL, 0, &f);
            if (rc == NQ_OK) {
                /* The callback frees the buffer, whenever the put ends. */
                nq_future_on_done(f, on_done, data);
                nq_future_free(f);
            } else {
                free(data);
            }
            if (rc != NQ_OK) {
                nqt_report("error where=put code=%d", rc);
                failed = 1;
                break;
            }
            sent++;
            next_send.tv_nsec += a->interval_us * 1000;
            while (next_send.tv_nsec >= 1000000000L) {
                next_send.tv_nsec -= 1000000000L;
                next_send.tv_sec++;
            }
        }
        nq_msg *m = NULL;
        int rc = nq_get(c, due ? 0 : 5, &m);
        if (rc == NQ_OK) {
            uint64_t seq = seq_of(m);
            echoed++;
            if (seq < next_echo) {
                if (dups++ < 5) {
                    nqt_report("duplicate seq=%" PRIu64 " expected=%" PRIu64, seq, next_echo);
                }
            } else {
                reorders += seq > next_echo;
                next_echo = seq + 1;
            }
            nq_msg_free(m);
        } else if (rc != NQ_ETIMEDOUT) {
            nqt_report("error where=get code=%d", rc);
            failed = 1;
        }
        if (sent == a->count && echoed == a->count && !a->hold) {
            break;
        }
    }
    int64_t reconnects = 0;
    nq_stat(c, NQ_STAT_RECONNECTS, &reconnects);
    /* After close every future has completed. */
    int64_t t0 = nqt_peer_ms();
    int rc = nq_close(c);
    nqt_report("closed rc=%d ms=%" PRId64, rc, nqt_peer_ms() - t0);
    nqt_report("summary sent=%ld ok=%ld failed=%ld echoed=%ld duplicates=%ld out_of_order=%ld "
           "reconnects=%" PRId64,
           sent, atomic_load(&futures_ok), atomic_load(&futures_failed), echoed, dups, reorders,
           reconnects);
    nq_destroy(c);
    return 0;
}

int main(int argc, char **argv)
{
    nqt_peer_clock_start();
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    args a;
    parse(&a, argc, argv);
    if (strcmp(a.mode, "serve") == 0) {
        return serve(&a);
    }
    if (strcmp(a.mode, "send") == 0) {
        return send_all(&a);
    }
    usage();
    return 2;
}
