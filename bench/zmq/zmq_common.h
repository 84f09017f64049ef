/*
 * zmq_common.h: the command line shared by the ZeroMQ counterparts of thr
 * and lat, and binding or connecting a socket from it.
 *
 *   zmq_thr|zmq_lat local|remote [--host H] [--port P] [--size N]
 *                   [--count N] [--warmup N] [--timeout S]
 *
 * local binds tcp://HOST:PORT (port 0 binds a free one and prints it in
 * the "listening HOST PORT" line, as the libnq tools do); remote connects.
 */
#ifndef NQ_BENCH_ZMQ_COMMON_H
#define NQ_BENCH_ZMQ_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef struct zb_config {
    int local;
    const char *host;
    unsigned port;
    size_t size;
    uint64_t count;
    uint64_t warmup;
    int64_t timeout_s;
} zb_config;

/* Parses the command line; the defaults are given in *cfg.  usage_text is
 * printed for --help. */
void zb_parse_args(int argc, char **argv, const char *usage_text, zb_config *cfg);

/* Binds (local) or connects (remote) sock; a local socket prints its
 * listening line.  Failures end the process. */
void zb_attach(void *sock, const zb_config *cfg);

/* Ends the process: "PROG: <what>: <zmq_strerror(errno)>". */
void zb_die(const char *what) __attribute__((noreturn));

#endif /* NQ_BENCH_ZMQ_COMMON_H */
