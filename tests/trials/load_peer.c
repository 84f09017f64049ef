/*
 * load_peer: one side of a load scenario (tests/trials/load.py).  It speaks
 * through the public API only and reports what it sees as lines
 *
 *   <ms since start> <event> [key=value ...]
 *
 * which the script reads to time, count and check.
 *
 *   load_peer serve --protocol P --port N [options]
 *       a server that checks every message (its sequence number per peer
 *       and its bytes) and, with --echo 1 (the default), sends it back to
 *       its sender.  Reports "listening port=N id=HEX" (its id, 32 hex
 *       digits: over MQTT its client id), "peers n=N" when the count changed
 *       and "stats ..." (below) when a counter changed (looked at every
 *       200 ms), "complete received=N" once --expect messages have arrived,
 *       and at SIGTERM "summary received=N bytes=N corrupt=N duplicates=N
 *       out_of_order=N errors=N".  With --pause-ms MS it stops calling
 *       nq_get for MS once the first message arrived and then reports
 *       "resumed taken=N bytes=N": what libnq received meanwhile.  With
 *       --only HEX it takes messages from that peer alone (nq_get_from)
 *       until SIGUSR1 ("only over"), so every other peer's messages wait at
 *       --queue.
 *   load_peer clients --protocol P --port N --count N [--threads T]
 *       opens N clients (T threads share the opening), each puts one
 *       message and waits for its echo.  Reports "opened n=N failed=N ms=N"
 *       and "echoed n=N of=N ms=N", then holds every connection until
 *       SIGTERM, when it exits without closing them.
 *   load_peer flood --protocol P --port N --count N --size B
 *                   [--send-limit B]
 *       one client that puts N numbered copied messages as fast as
 *       nq_put takes them; a put refused with NQ_EFULL is tried again 1 ms
 *       later.  Reports "efull first sent=N" at the first refusal, "sent n=N
 *       efull=N first_efull_ms=N ms=N hwm_kib=N" (its peak resident memory)
 *       "stats ..." and "closed rc=N ms=N".
 *   load_peer soak --protocol P --port N --clients N [--window W]
 *                  [--size-max B] [--rate R]
 *       N clients, each in a thread of its own, that keep W messages of
 *       varying size (16 .. B bytes) in flight and check each echo: its
 *       number comes next, its bytes are intact.  With --rate, each client
 *       sends at most R messages a second.  Reports "ready" once every
 *       client has its first echo, "progress received=N bytes=N corrupt=N
 *       duplicates=N out_of_order=N errors=N" (echoes, for all its clients)
 *       every 250 ms and, at SIGTERM, the same as "summary".
 *   load_peer exec PROGRAM [ARGS...]
 *       runs PROGRAM (the script's mosquitto) with the open-files limit
 *       raised and the parent-death signal set, as below.
 *
 * Common options: --host H (default 127.0.0.1), --key F --cert F (TLS over
 * TCP; a client gives only --cert, the certificate it trusts), --queue N
 * (NQ_OPT_QUEUE_SIZE), --acked 1 (NQ_DELIVERY_ACKED), --timeout-ms MS (how
 * long a client waits for what it expects, default 120000), --keepalive MS
 * (NQ_OPT_KEEPALIVE_MS), --handshake-ms MS (NQ_OPT_HANDSHAKE_TIMEOUT_MS),
 * --reconnect MS (NQ_OPT_RECONNECT_MS, with NQ_OPT_RECONNECT_MAX_MS at
 * 500), --id HEX (the communicator's id; for clients and soak, every
 * client's), --log 1 (libnq's warnings and errors as "log level=N
 * message"), --close-timeout MS (NQ_OPT_CLOSE_TIMEOUT_MS; -1 waits as long
 * as it takes; by default flood waits --timeout-ms, the others 5000).
 *
 * "stats peers=N connections=N lost=N protocol_errors=N
 * handshake_timeouts=N read_pauses=N resumed=N reconnects=N" gives the
 * communicator's counters (nq_stat).
 *
 * Every process raises its soft limit of open files to the hard limit (many
 * clients need a descriptor or more each) and dies with the process that
 * started it (PR_SET_PDEATHSIG), so that a killed script leaves nothing
 * behind.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <nq/nq.h>

#include "peer_args.h"

/* Every message starts with its sequence number and its length; the rest is
 * a pattern both derive from the sequence number, so that a changed byte
 * anywhere is seen. */
#define HEADER_SIZE 12
#define MIN_SIZE 16

static volatile sig_atomic_t stopping, only_over;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        only_over = 1;
    } else {
        stopping = 1;
    }
}

/* Sleeps ms, or less when asked to stop. */
static void nap_ms(int64_t ms)
{
    int64_t until = nqt_peer_ms() + ms;
    while (!stopping && nqt_peer_ms() < until) {
        int64_t left = until - nqt_peer_ms();
        usleep((useconds_t)(left > 50 ? 50000 : left > 0 ? left * 1000 : 0));
    }
}

/* ---- the options ---------------------------------------------------------- */

typedef struct args {
    const char *mode;
    nq_protocol protocol;
    int tls;
    const char *host;
    int port;
    const char *key, *cert;
    int64_t queue, send_limit, pause_ms, timeout_ms, keepalive_ms, handshake_ms, reconnect_ms;
    int64_t close_timeout_ms;
    long count, size, expect, threads, clients, window, size_max, rate;
    int acked, echo, log;
    int has_id, has_only;
    nq_id id, only;
} args;

static void usage(void)
{
    fprintf(stderr, "usage: load_peer serve|clients|flood|soak --protocol tcp|tls|mqtt|grpc "
                    "--port N [options] (see the comment at the top of load_peer.c)\n");
    exit(2);
}

static void parse(args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->host = "127.0.0.1";
    a->size = 64;
    a->threads = 1;
    a->window = 8;
    a->size_max = 4096;
    a->echo = 1;
    a->timeout_ms = 120000;
    a->keepalive_ms = -1;
    a->close_timeout_ms = -2; /* not given */
    const nqt_opt opts[] = {
        {"--protocol", NQT_OPT_PROTOCOL, &a->protocol, &a->tls},
        {"--host", NQT_OPT_STR, &a->host, NULL},
        {"--port", NQT_OPT_INT, &a->port, NULL},
        {"--key", NQT_OPT_STR, &a->key, NULL},
        {"--cert", NQT_OPT_STR, &a->cert, NULL},
        {"--queue", NQT_OPT_I64, &a->queue, NULL},
        {"--send-limit", NQT_OPT_I64, &a->send_limit, NULL},
        {"--pause-ms", NQT_OPT_I64, &a->pause_ms, NULL},
        {"--timeout-ms", NQT_OPT_I64, &a->timeout_ms, NULL},
        {"--count", NQT_OPT_LONG, &a->count, NULL},
        {"--size", NQT_OPT_LONG, &a->size, NULL},
        {"--expect", NQT_OPT_LONG, &a->expect, NULL},
        {"--threads", NQT_OPT_LONG, &a->threads, NULL},
        {"--clients", NQT_OPT_LONG, &a->clients, NULL},
        {"--window", NQT_OPT_LONG, &a->window, NULL},
        {"--size-max", NQT_OPT_LONG, &a->size_max, NULL},
        {"--rate", NQT_OPT_LONG, &a->rate, NULL},
        {"--acked", NQT_OPT_INT, &a->acked, NULL},
        {"--echo", NQT_OPT_INT, &a->echo, NULL},
        {"--keepalive", NQT_OPT_I64, &a->keepalive_ms, NULL},
        {"--handshake-ms", NQT_OPT_I64, &a->handshake_ms, NULL},
        {"--reconnect", NQT_OPT_I64, &a->reconnect_ms, NULL},
        {"--close-timeout", NQT_OPT_I64, &a->close_timeout_ms, NULL},
        {"--log", NQT_OPT_INT, &a->log, NULL},
        {"--id", NQT_OPT_ID, &a->id, &a->has_id},
        {"--only", NQT_OPT_ID, &a->only, &a->has_only},
    };
    if (argc < 2 || nqt_parse_opts(opts, sizeof(opts) / sizeof(opts[0]), 2, argc, argv) != 0) {
        usage();
    }
    a->mode = argv[1];
    if (a->size < MIN_SIZE) {
        a->size = MIN_SIZE;
    }
    if (a->size_max < MIN_SIZE) {
        a->size_max = MIN_SIZE;
    }
    if (a->threads < 1) {
        a->threads = 1;
    }
    if (a->window < 1) {
        a->window = 1;
    }
}

/* libnq's warnings and errors, as report lines. */
static void log_line(void *ctx, int level, const char *message)
{
    (void)ctx;
    if (level <= NQ_LOG_WARN) {
        nqt_report("log level=%d %s", level, message);
    }
}

/* The communicator's counters as a "stats" line, reported unless it is the
 * same as last (NULL: always); last then holds it. */
static void report_stats(nq_comm *c, char last[256])
{
    static const nq_stat_id ids[] = {NQ_STAT_PEERS,          NQ_STAT_CONNECTIONS,
                                     NQ_STAT_CONNECTIONS_LOST, NQ_STAT_PROTOCOL_ERRORS,
                                     NQ_STAT_HANDSHAKE_TIMEOUTS, NQ_STAT_READ_PAUSES,
                                     NQ_STAT_RESUMED,        NQ_STAT_RECONNECTS};
    int64_t v[sizeof(ids) / sizeof(ids[0])];
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        v[i] = 0;
        nq_stat(c, ids[i], &v[i]);
    }
    char line[256];
    snprintf(line, sizeof(line),
             "stats peers=%" PRId64 " connections=%" PRId64 " lost=%" PRId64
             " protocol_errors=%" PRId64 " handshake_timeouts=%" PRId64 " read_pauses=%" PRId64
             " resumed=%" PRId64 " reconnects=%" PRId64,
             v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    if (last == NULL || strcmp(line, last) != 0) {
        nqt_report("%s", line);
    }
    if (last != NULL) {
        memcpy(last, line, sizeof(line));
    }
}

/* The id of a communicator as 32 lower-case hex digits (its MQTT client
 * id). */
static void format_hex(const nq_id *id, char out[33])
{
    for (int i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", id->bytes[i]);
    }
}

static nq_comm *open_peer(const args *a, nq_purpose purpose, int *rc_out)
{
    nq_opts *o = NULL;
    int rc = nq_opts_new(&o);
    if (rc == NQ_OK) {
        rc = nq_opts_set_netloc(o, a->host, (uint16_t)a->port);
    }
    /* A peer that cannot finish its close handshake must not hold the
     * scenario up. */
    if (rc == NQ_OK) {
        rc = nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS,
                             a->close_timeout_ms >= -1          ? a->close_timeout_ms
                             : strcmp(a->mode, "flood") == 0 ? a->timeout_ms
                                                             : 5000);
    }
    if (rc == NQ_OK && a->queue > 0) {
        rc = nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, a->queue);
    }
    if (rc == NQ_OK && a->send_limit > 0) {
        rc = nq_opts_set_int(o, NQ_OPT_SEND_LIMIT, a->send_limit);
    }
    if (rc == NQ_OK && a->acked) {
        rc = nq_opts_set_int(o, NQ_OPT_DELIVERY, NQ_DELIVERY_ACKED);
    }
    if (rc == NQ_OK && a->keepalive_ms >= 0) {
        rc = nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, a->keepalive_ms);
    }
    if (rc == NQ_OK && a->handshake_ms > 0) {
        rc = nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, a->handshake_ms);
    }
    if (rc == NQ_OK && a->reconnect_ms > 0 && purpose == NQ_CLIENT) {
        rc = nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, a->reconnect_ms);
        if (rc == NQ_OK) {
            rc = nq_opts_set_int(o, NQ_OPT_RECONNECT_MAX_MS, 500);
        }
    }
    if (rc == NQ_OK && a->has_id) {
        rc = nq_opts_set_id(o, &a->id);
    }
    if (rc == NQ_OK && a->log) {
        rc = nq_opts_set_log(o, log_line, NULL);
    }
    if (rc == NQ_OK && (a->tls || a->cert != NULL)) {
        rc = nq_opts_set_tls(o, purpose == NQ_SERVER ? a->key : NULL, a->cert);
    }
    nq_comm *c = NULL;
    if (rc == NQ_OK) {
        rc = nq_open(a->protocol, purpose, o, &c);
    }
    nq_opts_free(o);
    if (rc_out != NULL) {
        *rc_out = rc;
    }
    return rc == NQ_OK ? c : NULL;
}

/* ---- the messages ---------------------------------------------------------- */

static uint8_t pattern_byte(uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 131u + i * 7u);
}

/* Writes message seq of size bytes (at least MIN_SIZE) into buf. */
static void fill_message(uint8_t *buf, uint64_t seq, size_t size)
{
    uint32_t len = (uint32_t)size;
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &len, 4);
    for (size_t i = HEADER_SIZE; i < size; i++) {
        buf[i] = pattern_byte(seq, i);
    }
}

/* The message's sequence number; *intact says whether its length and every
 * byte are what fill_message wrote. */
static uint64_t read_message(const nq_msg *m, int *intact)
{
    const void *d = NULL;
    size_t n = 0;
    uint64_t seq = UINT64_MAX;
    *intact = 0;
    if (nq_msg_data(m, &d, &n) != NQ_OK || n < HEADER_SIZE) {
        return seq;
    }
    const uint8_t *b = d;
    uint32_t len;
    memcpy(&seq, b, 8);
    memcpy(&len, b + 8, 4);
    int ok = len == n;
    for (size_t i = HEADER_SIZE; ok && i < n; i++) {
        ok = b[i] == pattern_byte(seq, i);
    }
    *intact = ok;
    return seq;
}

/* Which of these happened to a message, against the number expected next. */
typedef struct tally {
    atomic_long received, corrupt, duplicates, out_of_order, errors;
    atomic_llong bytes;
} tally;

/* Counts message seq of n bytes against *next, the number expected next. */
static void count_message(tally *t, uint64_t *next, uint64_t seq, size_t n, int intact)
{
    atomic_fetch_add(&t->received, 1);
    atomic_fetch_add(&t->bytes, (long long)n);
    if (!intact) {
        if (atomic_fetch_add(&t->corrupt, 1) < 5) {
            nqt_report("corrupt seq=%" PRIu64 " len=%zu", seq, n);
        }
        return;
    }
    if (seq < *next) {
        if (atomic_fetch_add(&t->duplicates, 1) < 5) {
            nqt_report("duplicate seq=%" PRIu64 " expected=%" PRIu64, seq, *next);
        }
        return;
    }
    if (seq > *next && atomic_fetch_add(&t->out_of_order, 1) < 5) {
        nqt_report("gap seq=%" PRIu64 " expected=%" PRIu64, seq, *next);
    }
    *next = seq + 1;
}

static void report_tally(const char *what, tally *t)
{
    nqt_report("%s received=%ld bytes=%lld corrupt=%ld duplicates=%ld out_of_order=%ld errors=%ld",
           what, atomic_load(&t->received), atomic_load(&t->bytes), atomic_load(&t->corrupt),
           atomic_load(&t->duplicates), atomic_load(&t->out_of_order), atomic_load(&t->errors));
}

/* ---- serve -------------------------------------------------------------------- */

/* The number each peer sends next, in a table of fixed size allocated (and
 * touched) before the first peer, so that it adds nothing to the memory a
 * scenario measures.  Open addressing: a peer beyond its capacity is not
 * checked ("untracked peers=N" says how many were not). */
#define PEER_TABLE_SIZE 65536

typedef struct peer_next {
    nq_id id;
    uint64_t next;
    int used;
} peer_next;

static peer_next *peer_table;
static long untracked_peers;

static uint64_t *next_of(const nq_id *id)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id->bytes[i]) * 16777619u;
    }
    for (uint32_t k = 0; k < PEER_TABLE_SIZE; k++) {
        peer_next *p = &peer_table[(h + k) % PEER_TABLE_SIZE];
        if (!p->used) {
            p->used = 1;
            p->id = *id;
            p->next = 0;
            return &p->next;
        }
        if (nq_id_equal(&p->id, id)) {
            return &p->next;
        }
    }
    untracked_peers++;
    return NULL;
}

static int serve(const args *a)
{
    peer_table = malloc(PEER_TABLE_SIZE * sizeof(*peer_table));
    if (peer_table == NULL) {
        return 1;
    }
    memset(peer_table, 0, PEER_TABLE_SIZE * sizeof(*peer_table));
    int rc;
    nq_comm *s = open_peer(a, NQ_SERVER, &rc);
    if (s == NULL) {
        nqt_report("error where=open code=%d", rc);
        return 1;
    }
    uint16_t port = 0;
    nq_local_port(s, &port);
    nq_id own;
    char hex[33] = "";
    if (nq_comm_id(s, &own) == NQ_OK) {
        format_hex(&own, hex);
    }
    nqt_report("listening port=%u id=%s", (unsigned)port, hex);
    static tally t;
    char last_stats[256] = "";
    int64_t last_peers = -1, peers_looked = 0;
    int paused = a->pause_ms <= 0, only = a->has_only;
    while (!stopping) {
        if (nqt_peer_ms() - peers_looked >= 200) {
            int64_t n = 0;
            nq_stat(s, NQ_STAT_PEERS, &n);
            if (n != last_peers) {
                nqt_report("peers n=%" PRId64, n);
                last_peers = n;
            }
            report_stats(s, last_stats);
            peers_looked = nqt_peer_ms();
        }
        if (!paused && atomic_load(&t.received) > 0) {
            /* The slow consumer: nothing is taken for a while, whatever
             * arrives. */
            paused = 1;
            nqt_report("paused");
            nap_ms(a->pause_ms);
            int64_t in = 0, bytes_in = 0;
            nq_stat(s, NQ_STAT_MSGS_IN, &in);
            nq_stat(s, NQ_STAT_BYTES_IN, &bytes_in);
            int64_t got = atomic_load(&t.received), got_bytes = atomic_load(&t.bytes);
            nqt_report("resumed taken=%" PRId64 " bytes=%" PRId64, in - got, bytes_in - got_bytes);
        }
        nq_msg *m = NULL;
        if (only && only_over) {
            only = 0;
            nqt_report("only over");
        }
        if (only) {
            rc = nq_get_from(s, &a->only, 1, 100, &m);
        } else {
            rc = nq_get(s, 100, &m);
        }
        if (rc == NQ_ETIMEDOUT) {
            continue;
        }
        if (rc != NQ_OK) {
            nqt_report("error where=get code=%d", rc);
            break;
        }
        nq_id from;
        nq_msg_peer(m, &from);
        int intact;
        uint64_t seq = read_message(m, &intact);
        uint64_t *next = next_of(&from);
        uint64_t ignored = seq;
        count_message(&t, next != NULL ? next : &ignored, seq, nq_msg_size(m), intact);
        if (a->echo) {
            const void *d;
            size_t n;
            nq_msg_data(m, &d, &n);
            nq_chunk ch = {d, n};
            /* A client killed meanwhile is no longer a peer: nothing to do. */
            (void)nq_put(s, &ch, 1, &from, 1, NULL);
        }
        nq_msg_free(m);
        if (a->expect > 0 && atomic_load(&t.received) == a->expect) {
            nqt_report("complete received=%ld", a->expect);
        }
    }
    report_tally("summary", &t);
    if (untracked_peers > 0) {
        nqt_report("untracked peers=%ld", untracked_peers);
    }
    int64_t t0 = nqt_peer_ms();
    rc = nq_close(s);
    nqt_report("closed rc=%d ms=%" PRId64, rc, nqt_peer_ms() - t0);
    nq_destroy(s);
    free(peer_table);
    return 0;
}

/* ---- clients -------------------------------------------------------------------- */

typedef struct share {
    const args *a;
    nq_comm **comms;
    long first, count;
    atomic_long *ok, *failed;
} share;

/* Opens a share of the clients and puts one message on each. */
static void *open_share(void *arg)
{
    share *o = arg;
    uint8_t buf[64];
    for (long i = o->first; i < o->first + o->count && !stopping; i++) {
        int rc;
        o->comms[i] = open_peer(o->a, NQ_CLIENT, &rc);
        if (o->comms[i] != NULL) {
            fill_message(buf, 0, sizeof(buf));
            rc = nq_put(o->comms[i], &(nq_chunk){buf, sizeof(buf)}, 1, NULL, 0, NULL);
        }
        if (rc != NQ_OK) {
            if (atomic_fetch_add(o->failed, 1) < 3) {
                nqt_report("error where=open client=%ld code=%d", i, rc);
            }
        } else {
            atomic_fetch_add(o->ok, 1);
        }
    }
    return NULL;
}

/* Waits for the echo of each client of a share. */
static void *echo_share(void *arg)
{
    share *o = arg;
    int64_t until = nqt_peer_ms() + o->a->timeout_ms;
    for (long i = o->first; i < o->first + o->count && !stopping; i++) {
        if (o->comms[i] == NULL) {
            continue;
        }
        nq_msg *m = NULL;
        int64_t left = until - nqt_peer_ms();
        int rc = nq_get(o->comms[i], left > 0 ? left : 0, &m);
        int intact = 0;
        uint64_t seq = rc == NQ_OK ? read_message(m, &intact) : UINT64_MAX;
        nq_msg_free(m);
        if (rc == NQ_OK && intact && seq == 0) {
            atomic_fetch_add(o->ok, 1);
        } else if (atomic_fetch_add(o->failed, 1) < 3) {
            nqt_report("error where=echo client=%ld code=%d seq=%" PRIu64 " intact=%d", i, rc, seq,
                   intact);
        }
    }
    return NULL;
}

/* Runs fn over the clients, split into a->threads shares that run at once;
 * *ok and *bad receive how many clients fn counted as done and as failed. */
static int run_shares(const args *a, nq_comm **comms, void *(*fn)(void *), long *ok, long *bad)
{
    atomic_long done = 0, failed = 0;
    long n = a->threads;
    pthread_t *threads = calloc((size_t)n, sizeof(*threads));
    share *shares = calloc((size_t)n, sizeof(*shares));
    int *running = calloc((size_t)n, sizeof(*running));
    if (threads == NULL || shares == NULL || running == NULL) {
        free(threads);
        free(shares);
        free(running);
        return 1;
    }
    for (long k = 0; k < n; k++) {
        long first = a->count * k / n, next = a->count * (k + 1) / n;
        shares[k] = (share){a, comms, first, next - first, &done, &failed};
        running[k] = pthread_create(&threads[k], NULL, fn, &shares[k]) == 0;
        if (!running[k]) {
            fn(&shares[k]); /* no thread to spare: this share runs here */
        }
    }
    for (long k = 0; k < n; k++) {
        if (running[k]) {
            pthread_join(threads[k], NULL);
        }
    }
    free(threads);
    free(shares);
    free(running);
    *ok = atomic_load(&done);
    *bad = atomic_load(&failed);
    return 0;
}

static int clients(const args *a)
{
    if (a->count < 1) {
        usage();
    }
    nq_comm **comms = calloc((size_t)a->count, sizeof(*comms));
    if (comms == NULL) {
        return 1;
    }
    long ok, bad;
    if (run_shares(a, comms, open_share, &ok, &bad) != 0) {
        return 1;
    }
    nqt_report("opened n=%ld failed=%ld ms=%" PRId64, ok, bad, nqt_peer_ms());
    if (run_shares(a, comms, echo_share, &ok, &bad) != 0) {
        return 1;
    }
    nqt_report("echoed n=%ld of=%ld ms=%" PRId64, ok, a->count, nqt_peer_ms());
    while (!stopping) {
        nap_ms(1000);
    }
    /* The connections end with the process: closing thousands of clients
     * one by one would take longer than the scenario, and what the server
     * then sees is no part of it. */
    _exit(0);
}

/* ---- flood ---------------------------------------------------------------------- */

/* This process's peak resident memory (VmHWM), in KiB, or -1. */
static long own_peak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    long kib = -1;
    char line[256];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

static int flood(const args *a)
{
    int rc;
    nq_comm *c = open_peer(a, NQ_CLIENT, &rc);
    if (c == NULL) {
        nqt_report("error where=open code=%d", rc);
        return 1;
    }
    uint8_t *buf = malloc((size_t)a->size);
    if (buf == NULL) {
        nq_destroy(c);
        return 1;
    }
    long sent = 0, efull = 0;
    int64_t first_efull = -1, until = nqt_peer_ms() + a->timeout_ms;
    while (sent < a->count && !stopping && nqt_peer_ms() < until) {
        fill_message(buf, (uint64_t)sent, (size_t)a->size);
        rc = nq_put(c, &(nq_chunk){buf, (size_t)a->size}, 1, NULL, 0, NULL);
        if (rc == NQ_EFULL) {
            /* The send limit is reached: the receiver holds the sender
             * back.  Try again shortly. */
            if (efull++ == 0) {
                first_efull = nqt_peer_ms();
                nqt_report("efull first sent=%ld", sent);
            }
            usleep(1000);
            continue;
        }
        if (rc != NQ_OK) {
            nqt_report("error where=put code=%d", rc);
            break;
        }
        sent++;
    }
    nqt_report("sent n=%ld efull=%ld first_efull_ms=%" PRId64 " ms=%" PRId64 " hwm_kib=%ld", sent,
           efull, first_efull, nqt_peer_ms(), own_peak_kib());
    int64_t t0 = nqt_peer_ms();
    rc = nq_close(c);
    report_stats(c, NULL);
    nqt_report("closed rc=%d ms=%" PRId64, rc, nqt_peer_ms() - t0);
    nq_destroy(c);
    free(buf);
    return sent == a->count ? 0 : 1;
}

/* ---- soak ------------------------------------------------------------------------ */

typedef struct soaker {
    const args *a;
    tally *t;
    atomic_long *ready;
    long index;
} soaker;

/* One client: keeps a->window messages in flight and checks every echo. */
static void *soak_one(void *arg)
{
    soaker *s = arg;
    const args *a = s->a;
    int rc;
    nq_comm *c = open_peer(a, NQ_CLIENT, &rc);
    uint8_t *buf = malloc((size_t)a->size_max);
    if (c == NULL || buf == NULL) {
        nqt_report("error where=open client=%ld code=%d", s->index, rc);
        atomic_fetch_add(&s->t->errors, 1);
        nq_destroy(c);
        free(buf);
        return NULL;
    }
    uint64_t sent = 0, next = 0;
    int64_t start = nqt_peer_ms();
    int first = 1;
    long span = a->size_max - MIN_SIZE + 1;
    while (!stopping) {
        int due = a->rate <= 0 || (int64_t)sent * 1000 / a->rate <= nqt_peer_ms() - start;
        if (sent - next < (uint64_t)a->window && due) {
            size_t size = MIN_SIZE + (size_t)((sent * 7919u + (uint64_t)s->index) % (uint64_t)span);
            fill_message(buf, sent, size);
            rc = nq_put(c, &(nq_chunk){buf, size}, 1, NULL, 0, NULL);
            if (rc == NQ_OK) {
                sent++;
                continue;
            }
            if (rc != NQ_EFULL) {
                nqt_report("error where=put client=%ld code=%d", s->index, rc);
                atomic_fetch_add(&s->t->errors, 1);
                break;
            }
        }
        nq_msg *m = NULL;
        rc = nq_get(c, 20, &m);
        if (rc == NQ_ETIMEDOUT) {
            continue;
        }
        if (rc != NQ_OK) {
            nqt_report("error where=get client=%ld code=%d", s->index, rc);
            atomic_fetch_add(&s->t->errors, 1);
            break;
        }
        int intact;
        uint64_t seq = read_message(m, &intact);
        count_message(s->t, &next, seq, nq_msg_size(m), intact);
        nq_msg_free(m);
        if (first) {
            first = 0;
            atomic_fetch_add(s->ready, 1);
        }
    }
    nq_destroy(c);
    free(buf);
    return NULL;
}

static int soak(const args *a)
{
    if (a->clients < 1) {
        usage();
    }
    static tally t;
    atomic_long ready = 0;
    pthread_t *threads = calloc((size_t)a->clients, sizeof(*threads));
    soaker *soakers = calloc((size_t)a->clients, sizeof(*soakers));
    if (threads == NULL || soakers == NULL) {
        return 1;
    }
    long running = 0;
    for (long i = 0; i < a->clients; i++) {
        soakers[i] = (soaker){a, &t, &ready, i};
        if (pthread_create(&threads[running], NULL, soak_one, &soakers[i]) != 0) {
            nqt_report("error where=thread client=%ld", i);
            atomic_fetch_add(&t.errors, 1);
            continue;
        }
        running++;
    }
    int said_ready = 0;
    while (!stopping) {
        nap_ms(250);
        if (!said_ready && atomic_load(&ready) == a->clients) {
            said_ready = 1;
            nqt_report("ready");
        }
        report_tally("progress", &t);
    }
    for (long i = 0; i < running; i++) {
        pthread_join(threads[i], NULL);
    }
    report_tally("summary", &t);
    free(threads);
    free(soakers);
    return 0;
}

/* ---- the process ----------------------------------------------------------------- */

/* A client per descriptor or more: the soft limit goes up to the hard one. */
static void raise_open_files(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
            perror("setrlimit");
        }
    }
}

int main(int argc, char **argv)
{
    nqt_peer_clock_start();
    /* Dies with the script; a script already gone leaves init as parent. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        return 1;
    }
    raise_open_files();
    if (argc > 2 && strcmp(argv[1], "exec") == 0) {
        /* Both survive execvp (the program must not change its user). */
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        return 127;
    }
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGUSR1, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    args a;
    parse(&a, argc, argv);
    if (strcmp(a.mode, "serve") == 0) {
        return serve(&a);
    }
    if (strcmp(a.mode, "clients") == 0) {
        return clients(&a);
    }
    if (strcmp(a.mode, "flood") == 0) {
        return flood(&a);
    }
    if (strcmp(a.mode, "soak") == 0) {
        return soak(&a);
    }
    usage();
    return 2;
}
