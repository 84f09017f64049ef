/*
 * lat: round-trip latency between two libnq peers, shaped like libzmq's
 * local_lat / remote_lat so the figures compare line by line.
 *
 *   lat local  [options]   server: sends every message back to its sender
 *   lat remote [options]   client: sends one message, waits for the reply,
 *                          --count times, and reports the distribution
 *
 * The first --warmup round trips are not counted.  Each counted round trip
 * is timed on its own, so the report has percentiles (p50, p99, p99.9, max)
 * and not only libzmq's mean ("average latency" is that mean halved, the
 * one-way figure local_lat prints).  --max-time bounds a slow transport:
 * the client stops after that many seconds (warm-up included) and reports
 * the round trips it timed; it tells the echo server to stop with an empty
 * message.
 *
 * --futures on (default) sends zero-copy with a future: the echo holds the
 * received message until its future completes.  --futures off copies.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#include "endpoint.h"
#include "report.h"

static const char usage_text[] =
    "usage: lat local|remote [options]\n"
    "\n"
    "Round-trip latency between two libnq peers, like libzmq's local_lat and\n"
    "remote_lat.  local is the server and echoes; remote is the client and\n"
    "measures.\n"
    "\n"
    "options:\n"
    "  --size N         message size in bytes (default 64)\n"
    "  --count N        timed round trips (default 100000)\n"
    "  --warmup N       untimed round trips first (default 1000)\n"
    "  --futures on|off zero-copy puts with futures (default on), or copied\n"
    "  --max-time S     remote: stop after S seconds, warm-up included, and\n"
    "                   report the round trips timed so far (default 0: never)\n"
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
    uint64_t warmup;
    int futures;
    double max_time;
    int64_t timeout_s;
} config;

static void parse_args(int argc, char **argv, config *cfg)
{
    const char *role = NULL;
    const char *value;

    memset(cfg, 0, sizeof(*cfg));
    bench_endpoint_init(&cfg->ep);
    cfg->size = 64;
    cfg->count = 100000;
    cfg->warmup = 1000;
    cfg->futures = 1;
    cfg->timeout_s = 600;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf(usage_text, bench_endpoint_usage);
            exit(BENCH_EXIT_OK);
        } else if (bench_take_value("--size", argc, argv, &i, &value)) {
            cfg->size = (size_t)bench_parse_int("--size", value, 0, (int64_t)1 << 40);
        } else if (bench_take_value("--count", argc, argv, &i, &value)) {
            cfg->count = (uint64_t)bench_parse_int("--count", value, 1, 1 << 30);
        } else if (bench_take_value("--warmup", argc, argv, &i, &value)) {
            cfg->warmup = (uint64_t)bench_parse_int("--warmup", value, 0, 1 << 30);
        } else if (bench_take_value("--futures", argc, argv, &i, &value)) {
            cfg->futures = bench_parse_on_off("--futures", value);
        } else if (bench_take_value("--max-time", argc, argv, &i, &value)) {
            cfg->max_time = bench_parse_double("--max-time", value, 0, 1e6);
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

/* Frees an echoed message once libnq no longer reads it.  Runs on an I/O
 * thread (or at once when the put already completed). */
static void release_message(nq_future *f, int result, void *ctx)
{
    (void)f;
    (void)result;
    nq_msg_free(ctx);
}

static void echo(const config *cfg)
{
    nq_comm *comm = bench_open(&cfg->ep, NQ_SERVER, NULL, NULL);
    nq_msg *msg;
    int rv;

    for (uint64_t i = 0; i < cfg->warmup + cfg->count; i++) {
        if ((rv = nq_get(comm, -1, &msg)) != NQ_OK) {
            bench_die_nq("get", rv);
        }
        if (nq_msg_size(msg) == 0 && cfg->size > 0) {
            /* The client ran out of --max-time. */
            nq_msg_free(msg);
            break;
        }
        nq_id peer;
        nq_chunk chunk;
        nq_msg_peer(msg, &peer);
        nq_msg_data(msg, &chunk.data, &chunk.len);
        if (cfg->futures) {
            nq_future *f;
            if ((rv = nq_put(comm, &chunk, 1, &peer, 1, &f)) != NQ_OK) {
                bench_die_nq("put", rv);
            }
            nq_future_on_done(f, release_message, msg);
            nq_future_free(f);
        } else {
            if ((rv = nq_put(comm, &chunk, 1, &peer, 1, NULL)) != NQ_OK) {
                bench_die_nq("put", rv);
            }
            nq_msg_free(msg);
        }
    }
    if ((rv = nq_close(comm)) != NQ_OK) {
        bench_die_nq("close", rv);
    }
    nq_destroy(comm);
    bench_print_rss();
}

static void ping(const config *cfg)
{
    nq_comm *comm = bench_open(&cfg->ep, NQ_CLIENT, NULL, NULL);
    uint8_t *buf = malloc(cfg->size > 0 ? cfg->size : 1);
    int64_t *rtt = malloc(cfg->count * sizeof(*rtt));
    nq_msg *msg;
    int rv;

    if (buf == NULL || rtt == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory");
    }
    for (size_t k = 0; k < cfg->size; k++) {
        buf[k] = (uint8_t)k;
    }
    nq_chunk chunk = { buf, cfg->size };
    uint64_t done = 0;
    int64_t stop_ns = cfg->max_time > 0 ? bench_now_ns() + (int64_t)(cfg->max_time * 1e9) : 0;
    for (uint64_t i = 0; i < cfg->warmup + cfg->count; i++) {
        nq_future *f = NULL;
        int64_t t0 = bench_now_ns();
        if (stop_ns != 0 && t0 > stop_ns) {
            nq_chunk stop = { buf, 0 };
            if ((rv = nq_put(comm, &stop, 1, NULL, 0, NULL)) != NQ_OK) {
                bench_die_nq("put", rv);
            }
            break;
        }
        if ((rv = nq_put(comm, &chunk, 1, NULL, 0, cfg->futures ? &f : NULL)) != NQ_OK) {
            bench_die_nq("put", rv);
        }
        if ((rv = nq_get(comm, -1, &msg)) != NQ_OK) {
            bench_die_nq("get", rv);
        }
        int64_t t1 = bench_now_ns();
        if (nq_msg_size(msg) != cfg->size) {
            bench_die(BENCH_EXIT_FAILED, "reply %" PRIu64 " has %zu bytes, expected %zu", i,
                      nq_msg_size(msg), cfg->size);
        }
        nq_msg_free(msg);
        if (f != NULL) {
            /* The reply came back, so the request was sent long ago. */
            if ((rv = nq_future_wait(f, -1)) != NQ_OK) {
                bench_die_nq("put", rv);
            }
            nq_future_free(f);
        }
        if (i >= cfg->warmup) {
            rtt[done++] = t1 - t0;
        }
    }
    if ((rv = nq_close(comm)) != NQ_OK) {
        bench_die_nq("close", rv);
    }
    nq_destroy(comm);
    if (done == 0) {
        bench_die(BENCH_EXIT_FAILED, "no round trip was timed within --max-time %g s",
                  cfg->max_time);
    }
    bench_print_lat(cfg->size, rtt, done);
    bench_print_rss();
    free(rtt);
    free(buf);
}

int main(int argc, char **argv)
{
    config cfg;

    bench_prog = "lat";
    parse_args(argc, argv, &cfg);
    bench_watchdog(cfg.timeout_s);
    if (cfg.local) {
        echo(&cfg);
    } else {
        ping(&cfg);
    }
    return BENCH_EXIT_OK;
}
