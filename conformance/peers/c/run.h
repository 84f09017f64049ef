/*
 * run.h: one role of one case, run step by step on libnq, reporting each
 * step as a JSON line (conformance/README.md describes the steps and the
 * lines).
 */
#ifndef CONFORMANCE_RUN_H
#define CONFORMANCE_RUN_H

#include <stdint.h>

#include "json.h"

/* What a run is told: the command line's options, or the members of one
 * JSON line of standard input.  Strings are owned by the spec. */
typedef struct run_spec {
    char *run;      /* echoed in every line; "" on the command line */
    char *role;     /* "server" or "client" */
    char *protocol; /* "tcp", "tls", "mqtt" or "grpc" */
    char *host;
    long port;
    char *case_name;
    char *id;       /* NULL: a random id */
    char *key;      /* a server's key; a client's own with cert */
    char *cert;     /* a server's chain; a client's own with key, else its trust */
    char *ca;       /* trust anchors: a server checks clients, a client its server */
    char *client_auth; /* a server: "optional" or "required"; NULL: not asked */
    char *token;          /* a gRPC client's bearer token */
    char *accept_token;   /* a gRPC server: the token it accepts, */
    char *token_identity; /* under this name */
    char *part;     /* the client group's label; NULL: the first group */
    long clients;   /* clients in the run, for "per_client" counts */
    long timeout_s; /* 0: the case book's */
} run_spec;

/* Fills spec from a JSON object (a line of standard input).  Returns 0, or
 * -1 when memory ran out. */
int run_spec_from_json(run_spec *spec, const json *obj);

/* Frees the spec's strings. */
void run_spec_clear(run_spec *spec);

/* Runs spec against the case book, writing its lines; returns when the run
 * has reported "done".  Safe to call from several threads at once. */
void run_execute(const json *book, const run_spec *spec);

#endif /* CONFORMANCE_RUN_H */
