/*
 * thr: message throughput between two libnq peers, shaped like libzmq's
 * local_thr / remote_thr so the figures compare line by line.
 *
 *   thr local  [options]   server: receives --count messages and reports
 *   thr remote [options]   client: sends --count messages of --size bytes
 *
 * The receiver's clock runs from the first message to the last, as
 * local_thr's does; it prints bench_print_thr's lines and its peak RSS.  The
 * sender prints how long sending took including the close (the flush and
 * FIN handshake) and its own peak RSS.
 *
 * --futures on (the default, the realistic path) puts the same buffer
 * zero-copy with a future each and keeps at most --window futures pending:
 * before a put it waits for the oldest.  --futures off puts without a future,
 * so every message is copied; the send limit (NQ_OPT_SEND_LIMIT) is --window
 * messages' worth of bytes but at most COPY_LIMIT, and a put refused with
 * NQ_EFULL is retried after a short sleep.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#include "endpoint.h"
#include "report.h"

/* Copied bytes that may wait to be sent with --futures off. */
#define COPY_LIMIT ((int64_t)64 << 20)

static const char usage_text[] =
    "usage: thr local|remote [options]\n"
    "\n"
    "Throughput between two libnq peers, like libzmq's local_thr/remote_thr.\n"
    "local is the server and receives; remote is the client and sends.\n"
    "\n"
    "options:\n"
    "  --size N         message size in bytes (default 64)\n"
    "  --count N        number of messages (default 1000000)\n"
    "  --futures on|off remote: zero-copy puts with futures (default on), or\n"
    "                   copied puts without\n"
    "  --window N       remote: messages in flight at most (default 4096);\n"
    "                   copies also at most 64 MiB\n"
    "  --timeout S      give up after S seconds (default 600; 0 never)\n"
    "transport:\n"
    "%s"
    "\n"
    "Exit status: 0 done, 1 failed, 2 bad arguments, 4 protocol not built in.\n";

typedef struct config {
    bench_endpoint ep;
    int local;
    size_t size;
    uint64_t count;
    int futures;
    size_t window;
    int64_t timeout_s;
} config;

static void parse_args(int argc, char **argv, config *cfg)
{
    const char *role = NULL;
    const char *value;

    memset(cfg, 0, sizeof(*cfg));
    bench_endpoint_init(&cfg->ep);
    cfg->size = 64;
    cfg->count = 1000000;
    cfg->futures = 1;
    cfg->window = 4096;
    cfg->timeout_s = 600;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf(usage_text, bench_endpoint_usage);
            exit(BENCH_EXIT_OK);
        } else if (bench_take_value("--size", argc, argv, &i, &value)) {
            cfg->size = (size_t)bench_parse_int("--size", value, 0, (int64_t)1 << 40);
        } else if (bench_take_value("--count", argc, argv, &i, &value)) {
            cfg->count = (uint64_t)bench_parse_int("--count", value, 1, INT64_MAX);
        } else if (bench_take_value("--futures", argc, argv, &i, &value)) {
            cfg->futures = bench_parse_on_off("--futures", value);
        } else if (bench_take_value("--window", argc, argv, &i, &value)) {
            cfg->window = (size_t)bench_parse_int("--window", value, 1, 1 << 24);
        } else if (bench_take_value("--timeout", argc, argv, &i, &value)) {
            cfg->timeout_s = bench_parse_int("--timeout", value, 0, 1000000);
        } else if (bench_endpoint_option(&cfg->ep, argc, argv, &i)) {
            continue;
        } else if (argv[i][0] == '-') {
            bench_usage_error("unknown option %s", argv[i]);
        } else if (role == NULL) {
            role = argv[i];
        } else {
            bench_usage_error("unexpected argument \"%s\"", argv[i]);
        }
    }
    cfg->local = bench_parse_role(role);
}

static void receive(const config *cfg)
{
    nq_comm *comm = bench_open(&cfg->ep, NQ_SERVER, NULL, NULL);
    int64_t t0 = 0;
    nq_msg *msg;
    int rv;

    for (uint64_t i = 0; i < cfg->count; i++) {
        if ((rv = nq_get(comm, -1, &msg)) != NQ_OK) {
            bench_die_nq("get", rv);
        }
        if (i == 0) {
            t0 = bench_now_ns();
        }
        if (nq_msg_size(msg) != cfg->size) {
            bench_die(BENCH_EXIT_FAILED, "message %" PRIu64 " has %zu bytes, expected %zu", i,
                      nq_msg_size(msg), cfg->size);
        }
        nq_msg_free(msg);
    }
    int64_t t1 = bench_now_ns();
    bench_print_thr(cfg->size, cfg->count, t1 - t0);
    if ((rv = nq_close(comm)) != NQ_OK) {
        bench_die_nq("close", rv);
    }
    nq_destroy(comm);
    bench_print_rss();
}

static void limit_copies(nq_opts *opts, void *ctx)
{
    const config *cfg = ctx;
    int64_t size = (int64_t)(cfg->size > 0 ? cfg->size : 1);
    int64_t limit = (int64_t)cfg->window * size;
    int rv;

    if (limit > COPY_LIMIT) {
        limit = size > COPY_LIMIT ? size : COPY_LIMIT;
    }

    if (!cfg->futures && (rv = nq_opts_set_int(opts, NQ_OPT_SEND_LIMIT, limit)) != NQ_OK) {
        bench_die_nq("send limit", rv);
    }
}

static void check_future(nq_future *f)
{
    int rv = nq_future_wait(f, -1);

    if (rv != NQ_OK) {
        bench_die_nq("put", rv);
    }
    nq_future_free(f);
}

static void send_all(const config *cfg)
{
    nq_comm *comm = bench_open(&cfg->ep, NQ_CLIENT, limit_copies, (void *)cfg);
    uint8_t *buf = malloc(cfg->size > 0 ? cfg->size : 1);
    nq_future **ring = calloc(cfg->window, sizeof(*ring));
    uint64_t refused = 0;
    int rv;

    if (buf == NULL || ring == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory");
    }
    for (size_t k = 0; k < cfg->size; k++) {
        buf[k] = (uint8_t)k;
    }
    nq_chunk chunk = { buf, cfg->size };
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < cfg->count; i++) {
        if (cfg->futures) {
            nq_future **slot = &ring[i % cfg->window];
            if (*slot != NULL) {
                check_future(*slot);
            }
            if ((rv = nq_put(comm, &chunk, 1, NULL, 0, slot)) != NQ_OK) {
                bench_die_nq("put", rv);
            }
        } else {
            while ((rv = nq_put(comm, &chunk, 1, NULL, 0, NULL)) == NQ_EFULL) {
                refused++;
                bench_sleep(20e-6);
            }
            if (rv != NQ_OK) {
                bench_die_nq("put", rv);
            }
        }
    }
    for (size_t k = 0; k < cfg->window; k++) {
        if (ring[k] != NULL) {
            check_future(ring[k]);
        }
    }
    if ((rv = nq_close(comm)) != NQ_OK) {
        bench_die_nq("close", rv);
    }
    int64_t t1 = bench_now_ns();
    nq_destroy(comm);
    printf("sent: %" PRIu64 " [msg] in %.6f [s] including close\n", cfg->count,
           (double)(t1 - t0) / 1e9);
    printf("futures: %s, window %zu, refused puts %" PRIu64 "\n", cfg->futures ? "on" : "off",
           cfg->window, refused);
    bench_print_rss();
    free(ring);
    free(buf);
}

int main(int argc, char **argv)
{
    config cfg;

    bench_prog = "thr";
    parse_args(argc, argv, &cfg);
    bench_watchdog(cfg.timeout_s);
    if (cfg.local) {
        receive(&cfg);
    } else {
        send_all(&cfg);
    }
    return BENCH_EXIT_OK;
}
