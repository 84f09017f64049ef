/*
 * zmq_lat: ZeroMQ's side of bench/lat, a REQ/REP pair against libzmq,
 * doing what libzmq's own local_lat / remote_lat do and printing the same
 * lines as lat.
 *
 *   zmq_lat local  [options]   REP, binds, sends every message back
 *   zmq_lat remote [options]   REQ, connects, times each round trip
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "report.h"
#include "zmq_common.h"

static const char usage_text[] =
    "usage: zmq_lat local|remote [options]\n"
    "\n"
    "Round-trip latency of a ZeroMQ REQ/REP pair over TCP, printed like lat.\n"
    "local binds a REP socket and echoes; remote connects REQ and measures.\n"
    "\n"
    "options:\n"
    "  --host H      address (default 127.0.0.1)\n"
    "  --port P      port (default 5555); local --port 0 binds a free one\n"
    "  --size N      message size in bytes (default 64)\n"
    "  --count N     timed round trips (default 100000)\n"
    "  --warmup N    untimed round trips first (default 1000)\n"
    "  --timeout S   give up after S seconds (default 600; 0 never)\n";

static void echo(void *sock, const zb_config *cfg)
{
    zmq_msg_t msg;

    if (zmq_msg_init(&msg) != 0) {
        zb_die("message");
    }
    for (uint64_t i = 0; i < cfg->warmup + cfg->count; i++) {
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            zb_die("receive");
        }
        if (zmq_msg_send(&msg, sock, 0) < 0) {
            zb_die("send");
        }
    }
    zmq_msg_close(&msg);
}

static void ping(void *sock, const zb_config *cfg)
{
    int64_t *rtt = malloc(cfg->count * sizeof(*rtt));
    zmq_msg_t msg;

    if (rtt == NULL) {
        bench_die(BENCH_EXIT_FAILED, "out of memory");
    }
    for (uint64_t i = 0; i < cfg->warmup + cfg->count; i++) {
        int64_t t0 = bench_now_ns();
        if (zmq_msg_init_size(&msg, cfg->size) != 0) {
            zb_die("message");
        }
        if (zmq_msg_send(&msg, sock, 0) < 0) {
            zb_die("send");
        }
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            zb_die("receive");
        }
        int64_t t1 = bench_now_ns();
        if (zmq_msg_size(&msg) != cfg->size) {
            bench_die(BENCH_EXIT_FAILED, "reply %" PRIu64 " has %zu bytes, expected %zu", i,
                      zmq_msg_size(&msg), cfg->size);
        }
        zmq_msg_close(&msg);
        if (i >= cfg->warmup) {
            rtt[i - cfg->warmup] = t1 - t0;
        }
    }
    bench_print_lat(cfg->size, rtt, cfg->count);
    free(rtt);
}

int main(int argc, char **argv)
{
    zb_config cfg = { 0, "127.0.0.1", 5555, 64, 100000, 1000, 600 };
    void *ctx;
    void *sock;

    bench_prog = "zmq_lat";
    zb_parse_args(argc, argv, usage_text, &cfg);
    bench_watchdog(cfg.timeout_s);
    if ((ctx = zmq_ctx_new()) == NULL) {
        zb_die("context");
    }
    if ((sock = zmq_socket(ctx, cfg.local ? ZMQ_REP : ZMQ_REQ)) == NULL) {
        zb_die("socket");
    }
    zb_attach(sock, &cfg);
    if (cfg.local) {
        echo(sock, &cfg);
    } else {
        ping(sock, &cfg);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    bench_print_rss();
    return BENCH_EXIT_OK;
}
