/*
 * Helpers shared by the communicator tests: opening peers, exchanging and
 * checking messages, waiting for counters, making certificates.  Functions
 * returning int return 0 on success, so tests CHECK them.
 */
#ifndef NQ_TESTS_PEERS_H
#define NQ_TESTS_PEERS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "nq/nq.h"

#define NQT_WAIT_MS 10000

/* Options for host:port and, if not NULL, id.  Aborts if out of memory. */
nq_opts *nqt_opts(const char *host, uint16_t port, const nq_id *id);

/* Opens a communicator and frees o; NULL (with a message) on failure. */
nq_comm *nqt_open(nq_protocol protocol, nq_purpose purpose, nq_opts *o);

/* The communicator's local port (a server's listening port). */
uint16_t nqt_port(nq_comm *c);

/* Puts one buffer and waits for its future; returns the put's result. */
int nqt_put_wait(nq_comm *c, const void *data, size_t len, const nq_id *peers, size_t npeers);

/* Gets one message and checks its bytes, and its sender when peer is not
 * NULL. */
int nqt_expect(nq_comm *c, const void *data, size_t len, const nq_id *peer);

/* The client says ping, the server answers pong to that client only. */
int nqt_round_trip(nq_comm *server, nq_comm *client);

int64_t nqt_now_ms(void);
int64_t nqt_stat(nq_comm *c, nq_stat_id s);
/* Waits (10 s at most) until a counter reaches want. */
int nqt_wait_stat(nq_comm *c, nq_stat_id s, int64_t want);
/* Waits (10 s at most) until a counter falls to want or below. */
int nqt_wait_stat_at_most(nq_comm *c, nq_stat_id s, int64_t want);

/* Peer events as a communicator reports them (nq_opts_set_events(o,
 * nqt_record, &recorder)). */
typedef struct nqt_recorder {
    pthread_mutex_t mu;
    nq_event events[64];
    int n;
} nqt_recorder;
void nqt_recorder_init(nqt_recorder *r);
void nqt_record(void *ctx, const nq_event *ev);
/* Waits (10 s at most) until n events are recorded. */
int nqt_wait_events(nqt_recorder *r, int n);
/* Event i has this type, reason and, when peer is not NULL, this peer. */
int nqt_is_event(nqt_recorder *r, int i, int type, const nq_id *peer, int reason);
/* The number of events recorded so far. */
int nqt_events(nqt_recorder *r);
/* Event i as recorded (read under the recorder's lock). */
nq_event nqt_event(nqt_recorder *r, int i);

/* Makes a fresh directory /tmp/<prefix>XXXXXX into dir (64 bytes). */
int nqt_temp_dir(char *dir, const char *prefix);
/* Removes it and everything in it. */
void nqt_remove_dir(const char *dir);
/* Writes dir/name.key and dir/name.pem, a self-signed certificate for the
 * subject alternative names in san ("DNS:localhost,IP:127.0.0.1"). */
int nqt_make_cert(const char *dir, const char *name, const char *san);
/* A certificate authority dir/name.key, dir/name.pem (subject CN=name). */
int nqt_make_ca(const char *dir, const char *name);
/* dir/name.key and dir/name.pem for subject CN=cn and the names in san,
 * signed by the authority dir/ca.  Returns 0 on success. */
int nqt_make_signed_cert(const char *dir, const char *name, const char *ca, const char *cn,
                         const char *san);

/* The certificates of the credential tests, in a fresh directory
 * /tmp/<prefix>XXXXXX (dir, 64 bytes): an authority "ca"; "server"
 * (DNS:localhost, IP:127.0.0.1) and "client-a" (CN=client-a,
 * DNS:client-a.example, IP:127.0.0.1) signed by it; "rogue", self-signed
 * for DNS:client-a.example; and dir/anchors, the authority's certificate
 * hashed as `openssl rehash` does. */
int nqt_make_credentials(char *dir, const char *prefix);
/* "dir/name.ext", in one of four static buffers used in turn. */
const char *nqt_path(const char *dir, const char *name, const char *ext);
/* A file's text (at most 64 KiB), malloc'd, or NULL. */
char *nqt_slurp(const char *file);
/* comm's view of peer's identity (nq_peer_identity) in a static buffer, or
 * "(not connected)". */
const char *nqt_identity(nq_comm *comm, const nq_id *peer);

/* Speaking the wire by hand.  A raw TCP connection to 127.0.0.1:port
 * (aborts on failure); a frame's 8-byte header; one frame written (0 or
 * -1); bytes read until EOF, cap or timeout (returns the count). */
int nqt_raw_connect(uint16_t port);
/* A listening socket on 127.0.0.1 (its port in *port; aborts on failure),
 * and a connection accepted on it within 10 s (-1 when none came). */
int nqt_raw_listen(uint16_t *port);
int nqt_raw_accept(int lfd);
void nqt_put_header(uint8_t *out, uint64_t len);
int nqt_raw_send_frame(int fd, const void *data, size_t len);
ssize_t nqt_raw_read_all(int fd, uint8_t *buf, size_t cap, int timeout_ms);

#endif
