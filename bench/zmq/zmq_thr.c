/*
 * zmq_thr: ZeroMQ's side of bench/thr, a PUSH/PULL pair against libzmq,
 * doing what libzmq's own local_thr / remote_thr do and printing the same
 * lines as thr.
 *
 *   zmq_thr local  [options]   PULL, binds, receives --count messages
 *   zmq_thr remote [options]   PUSH, connects, sends --count messages
 *
 * The receiver's clock runs from the first message to the last.  The
 * sender builds each message with zmq_msg_init_size and sends it, as
 * remote_thr does, and its time includes the close (linger: until sent).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "report.h"
#include "zmq_common.h"

static const char usage_text[] =
    "usage: zmq_thr local|remote [options]\n"
    "\n"
    "Throughput of a ZeroMQ PUSH/PULL pair over TCP, printed like thr.\n"
    "local binds a PULL socket and receives; remote connects PUSH and sends.\n"
    "\n"
    "options:\n"
    "  --host H      address (default 127.0.0.1)\n"
    "  --port P      port (default 5555); local --port 0 binds a free one\n"
    "  --size N      message size in bytes (default 64)\n"
    "  --count N     number of messages (default 1000000)\n"
    "  --timeout S   give up after S seconds (default 600; 0 never)\n";

static void receive(void *ctx, const zb_config *cfg)
{
    void *sock = zmq_socket(ctx, ZMQ_PULL);
    zmq_msg_t msg;
    int64_t t0 = 0;

    if (sock == NULL) {
        zb_die("socket");
    }
    zb_attach(sock, cfg);
    if (zmq_msg_init(&msg) != 0) {
        zb_die("message");
    }
    for (uint64_t i = 0; i < cfg->count; i++) {
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            zb_die("receive");
        }
        if (i == 0) {
            t0 = bench_now_ns();
        }
        if (zmq_msg_size(&msg) != cfg->size) {
            bench_die(BENCH_EXIT_FAILED, "message %" PRIu64 " has %zu bytes, expected %zu", i,
                      zmq_msg_size(&msg), cfg->size);
        }
    }
    int64_t t1 = bench_now_ns();
    zmq_msg_close(&msg);
    bench_print_thr(cfg->size, cfg->count, t1 - t0);
    zmq_close(sock);
}

static void send_all(void *ctx, const zb_config *cfg)
{
    void *sock = zmq_socket(ctx, ZMQ_PUSH);
    zmq_msg_t msg;

    if (sock == NULL) {
        zb_die("socket");
    }
    zb_attach(sock, cfg);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < cfg->count; i++) {
        if (zmq_msg_init_size(&msg, cfg->size) != 0) {
            zb_die("message");
        }
        if (zmq_msg_send(&msg, sock, 0) < 0) {
            zb_die("send");
        }
        zmq_msg_close(&msg);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    int64_t t1 = bench_now_ns();
    printf("sent: %" PRIu64 " [msg] in %.6f [s] including close\n", cfg->count,
           (double)(t1 - t0) / 1e9);
}

int main(int argc, char **argv)
{
    zb_config cfg = { 0, "127.0.0.1", 5555, 64, 1000000, 0, 600 };
    void *ctx;

    bench_prog = "zmq_thr";
    zb_parse_args(argc, argv, usage_text, &cfg);
    bench_watchdog(cfg.timeout_s);
    if ((ctx = zmq_ctx_new()) == NULL) {
        zb_die("context");
    }
    if (cfg.local) {
        receive(ctx, &cfg);
        zmq_ctx_term(ctx);
    } else {
        send_all(ctx, &cfg);
    }
    bench_print_rss();
    return BENCH_EXIT_OK;
}
