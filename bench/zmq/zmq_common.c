/* Command line and endpoints of the ZeroMQ bench programs. */
#include "zmq_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "report.h"

void zb_die(const char *what)
{
    bench_die(BENCH_EXIT_FAILED, "%s: %s", what, zmq_strerror(zmq_errno()));
    abort();
}

void zb_parse_args(int argc, char **argv, const char *usage_text, zb_config *cfg)
{
    const char *role = NULL;
    const char *value;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            exit(BENCH_EXIT_OK);
        } else if (bench_take_value("--host", argc, argv, &i, &value)) {
            cfg->host = value;
        } else if (bench_take_value("--port", argc, argv, &i, &value)) {
            cfg->port = (unsigned)bench_parse_int("--port", value, 0, 65535);
        } else if (bench_take_value("--size", argc, argv, &i, &value)) {
            cfg->size = (size_t)bench_parse_int("--size", value, 0, (int64_t)1 << 40);
        } else if (bench_take_value("--count", argc, argv, &i, &value)) {
            cfg->count = (uint64_t)bench_parse_int("--count", value, 1, 1 << 30);
        } else if (bench_take_value("--warmup", argc, argv, &i, &value)) {
            cfg->warmup = (uint64_t)bench_parse_int("--warmup", value, 0, 1 << 30);
        } else if (bench_take_value("--timeout", argc, argv, &i, &value)) {
            cfg->timeout_s = bench_parse_int("--timeout", value, 0, 1000000);
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

void zb_attach(void *sock, const zb_config *cfg)
{
    char endpoint[300];

    if (cfg->local && cfg->port == 0) {
        snprintf(endpoint, sizeof(endpoint), "tcp://%s:*", cfg->host);
    } else {
        snprintf(endpoint, sizeof(endpoint), "tcp://%s:%u", cfg->host, cfg->port);
    }
    if (!cfg->local) {
        if (zmq_connect(sock, endpoint) != 0) {
            zb_die(endpoint);
        }
        return;
    }
    if (zmq_bind(sock, endpoint) != 0) {
        zb_die(endpoint);
    }
    char last[300];
    size_t len = sizeof(last);
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, last, &len) != 0) {
        zb_die("ZMQ_LAST_ENDPOINT");
    }
    const char *colon = strrchr(last, ':');
    bench_print_listening(cfg->host, colon != NULL ? (unsigned)atoi(colon + 1) : cfg->port);
}
