/*
 * endpoint.h: the transport options every libnq bench tool takes, and
 * opening a communicator from them.
 *
 *   --protocol tcp|mqtt|grpc   transport (default tcp)
 *   --host H                   address to bind or connect to (default 127.0.0.1)
 *   --port P                   port (default 51966, net-queue's); a server
 *                              given 0 binds a free one
 *   --tls                      TLS with --key (default key.pem) and --cert
 *                              (default cert.pem), as net-queue's --secure;
 *                              --key or --cert alone also turn TLS on.  A
 *                              client uses --cert as its trusted certificates
 *                              (over MQTT both roles do: they are clients of
 *                              the broker).
 *   --transport-size N         NQ_OPT_PROTOCOL_SIZE, the largest piece handed
 *                              to the transport (net-queue 2.x's option name)
 *   --mqtt-qos 0|1|2           MQTT publish/subscribe QoS (default libnq's)
 *   --version                  prints "libnq X.Y.Z" (the library loaded) and exits
 *
 * A server prints "listening HOST PORT" once it is bound.
 */
#ifndef NQ_BENCH_ENDPOINT_H
#define NQ_BENCH_ENDPOINT_H

#include <stdint.h>

#include <nq/nq.h>

typedef struct bench_endpoint {
    nq_protocol protocol;
    const char *protocol_name;
    const char *host;
    uint16_t port;
    int tls;
    const char *key_path;
    const char *cert_path;
    int64_t transport_size; /* 0: libnq's default */
    int mqtt_qos;           /* -1: libnq's default */
} bench_endpoint;

/* The usage lines of the options above, for a tool's --help. */
extern const char bench_endpoint_usage[];

/* Fills in the defaults. */
void bench_endpoint_init(bench_endpoint *ep);

/* Takes argv[*i] (and its value) when it is one of the options above and
 * returns 1, else returns 0. */
int bench_endpoint_option(bench_endpoint *ep, int argc, char **argv, int *i);

/* Parses "tcp", "mqtt" or "grpc"; anything else is a usage error. */
nq_protocol bench_parse_protocol(const char *text);

/* Creates options for ep, lets tune (may be NULL) adjust them, and opens a
 * communicator.  A protocol that is not built into this libnq ends the
 * process with BENCH_EXIT_UNSUPPORTED and the line
 * "PROG: protocol P is not built into this libnq"; any other failure ends
 * it with BENCH_EXIT_FAILED.  A server prints its listening line. */
nq_comm *bench_open(const bench_endpoint *ep, nq_purpose purpose,
                    void (*tune)(nq_opts *opts, void *ctx), void *ctx);

/* Ends the process with BENCH_EXIT_FAILED: "PROG: <what>: <nq_strerror>". */
void bench_die_nq(const char *what, int err) __attribute__((noreturn));

#endif /* NQ_BENCH_ENDPOINT_H */
