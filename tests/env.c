/*
 * The protocol a test program runs over (see env.h).
 */
#include "env.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peers.h"

int nqt_env_start(nqt_env *e, int *argc, char ***argv, const char *tag)
{
    memset(e, 0, sizeof(*e));
    e->proto = NQ_TCP;
    const char *name = *argc > 1 ? (*argv)[1] : "tcp";
    if (strcmp(name, "tcp") == 0 || strcmp(name, "tls") == 0 || strcmp(name, "mqtt") == 0 ||
        strcmp(name, "grpc") == 0) {
        (*argc)--;
        (*argv)++;
    } else {
        name = "tcp";
    }
    if (strcmp(name, "tls") == 0) {
        e->tls = 1;
        char prefix[48];
        snprintf(prefix, sizeof(prefix), "nq-%s-", tag);
        return nqt_temp_dir(e->dir, prefix) == 0 &&
                       nqt_make_cert(e->dir, "server", "IP:127.0.0.1") == 0
                   ? 0
                   : -1;
    }
    if (strcmp(name, "mqtt") == 0) {
        e->proto = NQ_MQTT;
        return nqt_broker_start(&e->broker, NULL, NULL) == 0 ? 0 : -1;
    }
    if (strcmp(name, "grpc") == 0) {
        e->proto = NQ_GRPC;
    }
    return 0;
}

void nqt_env_stop(nqt_env *e)
{
    if (e->proto == NQ_MQTT) {
        nqt_broker_stop(&e->broker, SIGTERM);
    }
    if (e->tls) {
        nqt_remove_dir(e->dir);
    }
}

nq_opts *nqt_env_opts(const nqt_env *e, nq_purpose purpose, uint16_t port,
                      const char *mqtt_prefix)
{
    nq_opts *o = nqt_opts("127.0.0.1", port, NULL);
    if (e->proto == NQ_MQTT) {
        nq_opts_set_netloc(o, "127.0.0.1", e->broker.port);
        nq_opts_set_mqtt_prefix(o, mqtt_prefix);
    }
    if (e->tls) {
        char key[96], cert[96];
        snprintf(key, sizeof(key), "%s/server.key", e->dir);
        snprintf(cert, sizeof(cert), "%s/server.pem", e->dir);
        if (nq_opts_set_tls(o, purpose == NQ_SERVER ? key : NULL, cert) != NQ_OK) {
            abort();
        }
    }
    return o;
}
