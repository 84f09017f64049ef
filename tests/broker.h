/*
 * A private mosquitto broker for a test process: its own directory, a free
 * port on 127.0.0.1 (and optionally a TLS listener), started and stopped by
 * the test itself.
 */
#ifndef NQ_TESTS_BROKER_H
#define NQ_TESTS_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct nqt_broker {
    pid_t pid;
    uint16_t port;     /* plain listener */
    uint16_t tls_port; /* 0 without TLS */
    char dir[64];
    const char *global; /* extra settings (nqt_broker_start_with), or NULL */
    const char *tls;
} nqt_broker;

/* Starts a broker; with cert and key (PEM paths) it also listens with TLS.
 * Returns 0, or -1 with a message on standard error. */
int nqt_broker_start(nqt_broker *b, const char *cert, const char *key);

/* The same with extra mosquitto settings, kept by the caller for the
 * broker's life: global ones and the plain listener's (a password file, an
 * ACL file, use_username_as_clientid; with them "allow_anonymous true" is
 * not set) and the TLS listener's (a CA, require_certificate...).  Files they name must be readable by the
 * broker's user. */
int nqt_broker_start_with(nqt_broker *b, const char *cert, const char *key, const char *global,
                          const char *tls);

/* Stops it with sig and starts it again on the same ports (a broker
 * restart: it remembers nothing).  Returns 0, or -1 with a message. */
int nqt_broker_restart(nqt_broker *b, int sig);

/* Stops it with sig (SIGTERM normally, SIGKILL to simulate a crash) and
 * removes its directory. */
void nqt_broker_stop(nqt_broker *b, int sig);

/* Publishes n messages at QoS 0 on one MQTT 3.1.1 connection of its own,
 * speaking the wire by hand (as a stranger would, with no will and no
 * subscription): message i goes to topics[i].  Returns once the broker has
 * read them all (it closed the connection after the DISCONNECT), 0; or -1
 * with a message on standard error. */
int nqt_broker_publish(const nqt_broker *b, size_t n, char *const *topics,
                       const void *const *payloads, const size_t *lens);

#endif
