/*
 * The protocol a test program runs over, named first on its command line
 * (tcp, tls, mqtt or grpc; tcp when none is named), and what it needs: a
 * self-signed certificate for TLS, a private broker for MQTT.
 */
#ifndef NQ_TESTS_ENV_H
#define NQ_TESTS_ENV_H

#include "broker.h"
#include "nq/nq.h"

typedef struct nqt_env {
    nq_protocol proto;
    int tls;
    nqt_broker broker;
    char dir[64]; /* TLS: the certificate's directory */
} nqt_env;

/* Takes the protocol's name off the command line if it is there and
 * readies what it needs; tag names the temporary directory.  0 or -1. */
int nqt_env_start(nqt_env *e, int *argc, char ***argv, const char *tag);
/* Stops the broker and removes the certificate. */
void nqt_env_stop(nqt_env *e);
/* Options for 127.0.0.1:port over e (the broker and mqtt_prefix for MQTT,
 * the key and certificate for TLS).  Aborts on failure. */
nq_opts *nqt_env_opts(const nqt_env *e, nq_purpose purpose, uint16_t port,
                      const char *mqtt_prefix);

#endif
