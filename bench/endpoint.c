/* Transport options of the libnq bench tools and opening a communicator. */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

const char bench_endpoint_usage[] =
    "  --protocol P  tcp, mqtt or grpc (default tcp)\n"
    "  --host H      address to bind or connect to (default 127.0.0.1)\n"
    "  --port P      port (default 51966); a server given 0 binds a free one\n"
    "  --tls         TLS with --key (default key.pem) and --cert (default\n"
    "                cert.pem), as net-queue's --secure\n"
    "  --key F       server: PEM private key (turns TLS on)\n"
    "  --cert F      server: PEM certificate chain; client: PEM file of trusted\n"
    "                certificates (turns TLS on); MQTT: the broker's, for both\n"
    "  --transport-size N  largest piece handed to the transport at once\n"
    "                (NQ_OPT_PROTOCOL_SIZE; net-queue 2.x's name; default libnq's)\n"
    "  --mqtt-qos Q  MQTT: QoS 0, 1 or 2 (default: libnq's)\n"
    "  --version     print the version of the libnq in use and exit\n";

void bench_endpoint_init(bench_endpoint *ep)
{
    memset(ep, 0, sizeof(*ep));
    ep->protocol = NQ_TCP;
    ep->protocol_name = "tcp";
    ep->host = "127.0.0.1";
    ep->port = 51966;
    ep->key_path = "key.pem";
    ep->cert_path = "cert.pem";
    ep->mqtt_qos = -1;
}

nq_protocol bench_parse_protocol(const char *text)
{
    if (strcmp(text, "tcp") == 0) {
        return NQ_TCP;
    }
    if (strcmp(text, "mqtt") == 0) {
        return NQ_MQTT;
    }
    if (strcmp(text, "grpc") == 0) {
        return NQ_GRPC;
    }
    bench_usage_error("protocol must be tcp, mqtt or grpc, not \"%s\"", text);
    return NQ_TCP;
}

int bench_endpoint_option(bench_endpoint *ep, int argc, char **argv, int *i)
{
    const char *value;

    if (bench_take_value("--protocol", argc, argv, i, &value)) {
        ep->protocol = bench_parse_protocol(value);
        ep->protocol_name = value;
    } else if (bench_take_value("--host", argc, argv, i, &value)) {
        ep->host = value;
    } else if (bench_take_value("--port", argc, argv, i, &value)) {
        ep->port = (uint16_t)bench_parse_int("--port", value, 0, 65535);
    } else if (strcmp(argv[*i], "--tls") == 0) {
        ep->tls = 1;
    } else if (bench_take_value("--key", argc, argv, i, &value)) {
        ep->key_path = value;
        ep->tls = 1;
    } else if (bench_take_value("--cert", argc, argv, i, &value)) {
        ep->cert_path = value;
        ep->tls = 1;
    } else if (bench_take_value("--transport-size", argc, argv, i, &value)) {
        ep->transport_size = bench_parse_int("--transport-size", value, 4096, (int64_t)1 << 30);
    } else if (bench_take_value("--mqtt-qos", argc, argv, i, &value)) {
        ep->mqtt_qos = (int)bench_parse_int("--mqtt-qos", value, 0, 2);
    } else if (strcmp(argv[*i], "--version") == 0) {
        printf("libnq %s\n", nq_version());
        exit(BENCH_EXIT_OK);
    } else {
        return 0;
    }
    return 1;
}

void bench_die_nq(const char *what, int err)
{
    bench_die(BENCH_EXIT_FAILED, "%s: %s", what, nq_strerror(err));
    abort();
}

nq_comm *bench_open(const bench_endpoint *ep, nq_purpose purpose,
                    void (*tune)(nq_opts *opts, void *ctx), void *ctx)
{
    nq_opts *opts;
    nq_comm *comm;
    int rv;

    if ((rv = nq_opts_new(&opts)) != NQ_OK) {
        bench_die_nq("options", rv);
    }
    if ((rv = nq_opts_set_netloc(opts, ep->host, ep->port)) != NQ_OK) {
        bench_die_nq("--host/--port", rv);
    }
    if (ep->tls) {
        /* Over MQTT both roles are clients of the broker, which holds the key. */
        int has_key = purpose == NQ_SERVER && ep->protocol != NQ_MQTT;
        rv = nq_opts_set_tls(opts, has_key ? ep->key_path : NULL, ep->cert_path);
        if (rv != NQ_OK) {
            bench_die_nq("TLS options", rv);
        }
    }
    if (ep->transport_size > 0 &&
        (rv = nq_opts_set_int(opts, NQ_OPT_PROTOCOL_SIZE, ep->transport_size)) != NQ_OK) {
        bench_die_nq("--transport-size", rv);
    }
    if (ep->mqtt_qos >= 0 && (rv = nq_opts_set_int(opts, NQ_OPT_MQTT_QOS, ep->mqtt_qos)) != NQ_OK) {
        bench_die_nq("--mqtt-qos", rv);
    }
    if (tune != NULL) {
        tune(opts, ctx);
    }
    rv = nq_open(ep->protocol, purpose, opts, &comm);
    nq_opts_free(opts);
    if (rv == NQ_ENOTSUP) {
        bench_die(BENCH_EXIT_UNSUPPORTED, "protocol %s is not built into this libnq",
                  ep->protocol_name);
    }
    if (rv != NQ_OK) {
        bench_die_nq("open", rv);
    }
    if (purpose == NQ_SERVER) {
        uint16_t port = ep->port;
        if (ep->port == 0 && (rv = nq_local_port(comm, &port)) != NQ_OK) {
            bench_die_nq("local port", rv);
        }
        bench_print_listening(ep->host, port);
    }
    return comm;
}
