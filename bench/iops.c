/*
 * iops: net-queue's iops.py benchmark, the same work done with libnq.
 *
 *   iops PROTOCOL PURPOSE MODE [options]
 *
 * Both sides build the same message list: one buffer B of 2^max bytes (byte
 * k is k mod 256); for each exponent i in range(min, max, step),
 * round((2^max / 2^i) ^ expo) references to the prefix B[:2^i]; then B
 * itself; the whole list repeated reps times and shuffled exactly as
 * Python's random.shuffle does after random.seed(0).  Nothing is copied:
 * every put sends a view of B with a future (zero-copy).
 *
 * Server: receive one barrier message per client, broadcast the barrier,
 * start the clock; sync: sleep --delay, receive every client's messages,
 * then broadcast the list; async: receive and send on two threads at once.
 * Close (waits for every client's FIN), stop the clock.
 * Client: send the barrier, receive the server's, start the clock; sync:
 * send the list, sleep --delay, receive the list; async: both at once.
 * Close (FIN, waits for the server's), stop the clock.
 *
 * Output, as iops.py prints it (sizes are the raw message sizes, put and
 * get both count as operations), plus peak memory:
 *   Time:       4.0s
 *   Data:       4.0K @ 2.1MB
 *   Transfer:   16.78GB @ 33.71Gbps
 *   Operations: 8.0K @ 2.01KIOPS
 *   Memory:     21.94MB
 *
 * --payload pickle wraps each message so a net-queue peer using its default
 * pickle serializer loads it: the barrier is the pickle of None and data is
 * a pickled bytes object (BINBYTES, BINBYTES8 from 4 GiB), header and trailer
 * sent as extra chunks around the view of B.  With it, this program runs
 * against iops.py itself.  The default, raw, sends the bytes alone (between
 * libnq peers); a raw receiver also checks the byte total it got.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#include "endpoint.h"
#include "pyrandom.h"
#include "report.h"

#define MAX_EXPONENT 40

static const char usage_text[] =
    "usage: iops PROTOCOL PURPOSE MODE [options]\n"
    "\n"
    "net-queue's iops.py benchmark with libnq.  PROTOCOL is tcp, mqtt or grpc,\n"
    "PURPOSE server or client, MODE sync or async.\n"
    "\n"
    "options (iops.py's, same defaults):\n"
    "  --min-size E     exponent of the smallest message (default 8)\n"
    "  --step-size E    exponent step between sizes; 0: only the largest (default 2)\n"
    "  --max-size E     exponent of the buffer and largest message (default 32)\n"
    "  --step-expo X    exponent of the count per size class (default 0.5)\n"
    "  --reps N         repetitions of the list (default 1)\n"
    "  --clients N      clients the server expects (default 1)\n"
    "  --delay S        seconds to wait before receiving (default 0)\n"
    "transport:\n"
    "%s"
    "others:\n"
    "  --payload raw|pickle  raw bytes (default) or pickles a net-queue peer loads\n"
    "  --timeout S      give up after S seconds (default 3600; 0 never)\n"
    "  --list           print the message sizes in sending order and exit\n"
    "\n"
    "Exit status: 0 done, 1 failed, 2 bad arguments, 4 protocol not built in.\n";

typedef struct config {
    bench_endpoint ep;
    nq_purpose purpose;
    int async;
    int min_size;
    int step_size;
    int max_size;
    double step_expo;
    int64_t reps;
    int64_t clients;
    double delay;
    int pickle;
    int list;
    int64_t timeout_s;
} config;

typedef struct workload {
    uint8_t *buffer;          /* 2^max bytes, byte k = k mod 256 */
    uint8_t *exponents;       /* the list: message i is B[:2^exponents[i]] */
    size_t count;
    uint8_t headers[MAX_EXPONENT + 1][11]; /* pickle header per exponent */
    size_t header_len[MAX_EXPONENT + 1];
} workload;

/* One side's run: the communicator and what it must send and receive. */
typedef struct run {
    const config *cfg;
    const workload *wl;
    nq_comm *comm;
    size_t expect;          /* messages to receive */
    uint64_t expect_bytes;  /* their total size when the peer sends raw */
    uint64_t got_bytes;
    nq_future **futures;    /* one per sent message, checked after close */
} run;

static const uint8_t pickled_none[4] = { 0x80, 0x05, 0x4e, 0x2e }; /* PROTO 5, NONE, STOP */
static const uint8_t pickle_stop[1] = { 0x2e };

static int parse_exponent(const char *option, const char *text)
{
    return (int)bench_parse_int(option, text, 0, MAX_EXPONENT);
}

static void parse_args(int argc, char **argv, config *cfg)
{
    const char *positional[3];
    int npositional = 0;
    const char *value;

    memset(cfg, 0, sizeof(*cfg));
    bench_endpoint_init(&cfg->ep);
    cfg->min_size = 8;
    cfg->step_size = 2;
    cfg->max_size = 32;
    cfg->step_expo = 0.5;
    cfg->reps = 1;
    cfg->clients = 1;
    cfg->timeout_s = 3600;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf(usage_text, bench_endpoint_usage);
            exit(BENCH_EXIT_OK);
        } else if (bench_take_value("--min-size", argc, argv, &i, &value)) {
            cfg->min_size = parse_exponent("--min-size", value);
        } else if (bench_take_value("--step-size", argc, argv, &i, &value)) {
            cfg->step_size = parse_exponent("--step-size", value);
        } else if (bench_take_value("--max-size", argc, argv, &i, &value)) {
            cfg->max_size = parse_exponent("--max-size", value);
        } else if (bench_take_value("--step-expo", argc, argv, &i, &value)) {
            cfg->step_expo = bench_parse_double("--step-expo", value, 0, 4);
        } else if (bench_take_value("--reps", argc, argv, &i, &value)) {
            cfg->reps = bench_parse_int("--reps", value, 1, 1000000000);
        } else if (bench_take_value("--clients", argc, argv, &i, &value)) {
            cfg->clients = bench_parse_int("--clients", value, 1, 100000);
        } else if (bench_take_value("--delay", argc, argv, &i, &value)) {
            cfg->delay = bench_parse_double("--delay", value, 0, 86400);
        } else if (bench_take_value("--payload", argc, argv, &i, &value)) {
            if (strcmp(value, "raw") != 0 && strcmp(value, "pickle") != 0) {
                bench_usage_error("--payload wants raw or pickle, not \"%s\"", value);
            }
            cfg->pickle = strcmp(value, "pickle") == 0;
        } else if (bench_take_value("--timeout", argc, argv, &i, &value)) {
            cfg->timeout_s = bench_parse_int("--timeout", value, 0, 1000000);
        } else if (strcmp(argv[i], "--list") == 0) {
            cfg->list = 1;
        } else if (bench_endpoint_option(&cfg->ep, argc, argv, &i)) {
            continue;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            bench_usage_error("unknown option %s", argv[i]);
        } else if (npositional < 3) {
            positional[npositional++] = argv[i];
        } else {
            bench_usage_error("unexpected argument \"%s\"", argv[i]);
        }
    }
    if (npositional != 3) {
        bench_usage_error("PROTOCOL PURPOSE MODE are required");
    }
    cfg->ep.protocol = bench_parse_protocol(positional[0]);
    cfg->ep.protocol_name = positional[0];
    if (strcmp(positional[1], "server") == 0) {
        cfg->purpose = NQ_SERVER;
    } else if (strcmp(positional[1], "client") == 0) {
        cfg->purpose = NQ_CLIENT;
    } else {
        bench_usage_error("PURPOSE must be server or client, not \"%s\"", positional[1]);
    }
    if (strcmp(positional[2], "sync") == 0) {
        cfg->async = 0;
    } else if (strcmp(positional[2], "async") == 0) {
        cfg->async = 1;
    } else {
        bench_usage_error("MODE must be sync or async, not \"%s\"", positional[2]);
    }
    if (cfg->min_size > cfg->max_size) {
        bench_usage_error("--min-size must not exceed --max-size");
    }
}

/* The pickle of a bytes object of 2^e bytes, up to the data: PROTO 5, then
 * BINBYTES with a 32-bit length, or BINBYTES8 with a 64-bit one. */
static void make_pickle_header(workload *wl, int e)
{
    uint64_t n = (uint64_t)1 << e;
    uint8_t *h = wl->headers[e];
    size_t at = 0;
    int width = n < ((uint64_t)1 << 32) ? 4 : 8;

    h[at++] = 0x80;
    h[at++] = 0x05;
    h[at++] = width == 4 ? 0x42 : 0x8e;
    for (int b = 0; b < width; b++) {
        h[at++] = (uint8_t)(n >> (8 * b));
    }
    wl->header_len[e] = at;
}

static void build_workload(const config *cfg, workload *wl)
{
    size_t per_rep = 1;

    memset(wl, 0, sizeof(*wl));
    /* iops.py: range(min, max, step) when step is not 0, then B itself. */
    if (cfg->step_size > 0) {
        for (int e = cfg->min_size; e < cfg->max_size; e += cfg->step_size) {
            per_rep += (size_t)nearbyint(pow(ldexp(1, cfg->max_size) / ldexp(1, e),
                                             cfg->step_expo));
        }
    }
    wl->count = per_rep * (size_t)cfg->reps;
    wl->exponents = malloc(wl->count);
    if (wl->exponents == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory for %zu messages", wl->count);
    }
    size_t at = 0;
    if (cfg->step_size > 0) {
        for (int e = cfg->min_size; e < cfg->max_size; e += cfg->step_size) {
            size_t splits = (size_t)nearbyint(pow(ldexp(1, cfg->max_size) / ldexp(1, e),
                                                  cfg->step_expo));
            memset(wl->exponents + at, e, splits);
            at += splits;
        }
    }
    wl->exponents[at++] = (uint8_t)cfg->max_size;
    for (int64_t r = 1; r < cfg->reps; r++) {
        memcpy(wl->exponents + (size_t)r * per_rep, wl->exponents, per_rep);
    }
    py_random rng;
    py_random_seed(&rng, 0);
    py_random_shuffle(&rng, wl->exponents, wl->count, 1);

    for (int e = 0; e <= cfg->max_size; e++) {
        make_pickle_header(wl, e);
    }
    if (cfg->list) {
        return;
    }
    size_t len = (size_t)1 << cfg->max_size;
    wl->buffer = malloc(len);
    if (wl->buffer == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory for a buffer of %zu bytes", len);
    }
    for (size_t k = 0; k < len; k++) {
        wl->buffer[k] = (uint8_t)k;
    }
}

static uint64_t message_size(const workload *wl, size_t i)
{
    return (uint64_t)1 << wl->exponents[i];
}

static void put_barrier(nq_comm *comm)
{
    nq_chunk chunk = { pickled_none, sizeof(pickled_none) };
    nq_future *f;
    int rv;

    if ((rv = nq_put(comm, &chunk, 1, NULL, 0, &f)) != NQ_OK) {
        bench_die_nq("barrier put", rv);
    }
    nq_future_free(f);
}

static void get_barrier(nq_comm *comm)
{
    nq_msg *msg;
    int rv;

    if ((rv = nq_get(comm, -1, &msg)) != NQ_OK) {
        bench_die_nq("barrier get", rv);
    }
    nq_msg_free(msg);
}

static void *receive_all(void *arg)
{
    run *r = arg;
    nq_msg *msg;
    int rv;

    for (size_t i = 0; i < r->expect; i++) {
        if ((rv = nq_get(r->comm, -1, &msg)) != NQ_OK) {
            bench_die_nq("get", rv);
        }
        r->got_bytes += nq_msg_size(msg);
        nq_msg_free(msg);
    }
    return NULL;
}

/* Sends the list (a server broadcasts it), one zero-copy put each. */
static void *send_all(void *arg)
{
    run *r = arg;
    const workload *wl = r->wl;
    int rv;

    for (size_t i = 0; i < wl->count; i++) {
        int e = wl->exponents[i];
        nq_chunk chunks[3];
        size_t n = 0;
        if (r->cfg->pickle) {
            chunks[n++] = (nq_chunk){ wl->headers[e], wl->header_len[e] };
        }
        chunks[n++] = (nq_chunk){ wl->buffer, (size_t)message_size(wl, i) };
        if (r->cfg->pickle) {
            chunks[n++] = (nq_chunk){ pickle_stop, sizeof(pickle_stop) };
        }
        if ((rv = nq_put(r->comm, chunks, n, NULL, 0, &r->futures[i])) != NQ_OK) {
            bench_die_nq("put", rv);
        }
    }
    return NULL;
}

static void run_both(run *r)
{
    pthread_t getter;
    pthread_t putter;

    if (pthread_create(&getter, NULL, receive_all, r) != 0) {
        bench_die(BENCH_EXIT_FAILED, "cannot start the receiving thread");
    }
    if (pthread_create(&putter, NULL, send_all, r) != 0) {
        bench_die(BENCH_EXIT_FAILED, "cannot start the sending thread");
    }
    pthread_join(getter, NULL);
    pthread_join(putter, NULL);
}

static void print_stats(const workload *wl, int64_t clients, int64_t elapsed_ns)
{
    /* iops.py: sizes = [len(m) for m in messages] * clients, on both sides. */
    double nsizes = (double)wl->count * (double)clients;
    double sum = 0;
    for (size_t i = 0; i < wl->count; i++) {
        sum += (double)message_size(wl, i);
    }
    sum *= (double)clients;
    double t = (double)elapsed_ns / 1e9;
    double ops = nsizes * 2;
    double bytes = sum * 2;
    char a[32], b[32];

    printf("Time:       %.1fs\n", t);
    bench_si(nsizes, a, sizeof(a));
    bench_si(sum / nsizes, b, sizeof(b));
    printf("Data:       %s @ %sB\n", a, b);
    bench_si(bytes, a, sizeof(a));
    bench_si(bytes * 8 / t, b, sizeof(b));
    printf("Transfer:   %sB @ %5sbps\n", a, b);
    bench_si(ops, a, sizeof(a));
    bench_si(ops / t, b, sizeof(b));
    printf("Operations: %s @ %sIOPS\n", a, b);
    bench_si((double)bench_peak_rss_kib() * 1024, a, sizeof(a));
    printf("Memory:     %sB\n", a);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    config cfg;
    workload wl;
    run r;
    int rv;

    bench_prog = "iops";
    parse_args(argc, argv, &cfg);
    if (cfg.list) {
        build_workload(&cfg, &wl);
        for (size_t i = 0; i < wl.count; i++) {
            printf("%" PRIu64 "\n", message_size(&wl, i));
        }
        free(wl.exponents);
        return BENCH_EXIT_OK;
    }
    bench_watchdog(cfg.timeout_s);
    /* Opened before the (possibly large) buffer is filled, so an unusable
     * transport or address is reported at once.  The peer's messages wait
     * in the queue meanwhile; the clock starts only after the barrier. */
    nq_comm *comm = bench_open(&cfg.ep, cfg.purpose, NULL, NULL);
    build_workload(&cfg, &wl);

    memset(&r, 0, sizeof(r));
    r.cfg = &cfg;
    r.wl = &wl;
    r.futures = calloc(wl.count, sizeof(*r.futures));
    if (r.futures == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory for %zu futures", wl.count);
    }
    int64_t peers = cfg.purpose == NQ_SERVER ? cfg.clients : 1;
    r.expect = wl.count * (size_t)peers;
    for (size_t i = 0; i < wl.count; i++) {
        r.expect_bytes += message_size(&wl, i);
    }
    r.expect_bytes *= (uint64_t)peers;
    r.comm = comm;

    int64_t t0;
    if (cfg.purpose == NQ_SERVER) {
        for (int64_t c = 0; c < cfg.clients; c++) {
            get_barrier(r.comm);
        }
        put_barrier(r.comm);
        t0 = bench_now_ns();
        if (cfg.async) {
            run_both(&r);
        } else {
            bench_sleep(cfg.delay);
            receive_all(&r);
            send_all(&r);
        }
    } else {
        put_barrier(r.comm);
        get_barrier(r.comm);
        t0 = bench_now_ns();
        if (cfg.async) {
            run_both(&r);
        } else {
            send_all(&r);
            bench_sleep(cfg.delay);
            receive_all(&r);
        }
    }
    rv = nq_close(r.comm);
    int64_t t1 = bench_now_ns();
    if (rv != NQ_OK) {
        bench_die_nq("close", rv);
    }

    size_t failed = 0;
    int first_error = NQ_OK;
    for (size_t i = 0; i < wl.count; i++) {
        int result = nq_future_result(r.futures[i]);
        if (result != NQ_OK) {
            failed++;
            if (first_error == NQ_OK) {
                first_error = result;
            }
        }
        nq_future_free(r.futures[i]);
    }
    nq_destroy(r.comm);
    if (failed > 0) {
        bench_die(BENCH_EXIT_FAILED, "%zu of %zu puts failed: %s", failed, wl.count,
                  nq_strerror(first_error));
    }
    if (!cfg.pickle && r.got_bytes != r.expect_bytes) {
        /* A raw receiver knows what a raw sender sends.  (A pickling peer's
         * messages are bigger, so --payload pickle checks only counts.) */
        bench_die(BENCH_EXIT_FAILED,
                  "received %" PRIu64 " bytes, expected %" PRIu64
                  " (a peer that sends pickles needs --payload pickle here)",
                  r.got_bytes, r.expect_bytes);
    }
    print_stats(&wl, cfg.clients, t1 - t0);
    free(r.futures);
    free(wl.buffer);
    free(wl.exponents);
    return BENCH_EXIT_OK;
}
