/*
 * A fault-injecting TCP proxy for the tests, on 127.0.0.1: every
 * connection made to it is relayed to an upstream port, urgent bytes
 * included (the first byte of each direction may be one), until the test
 * resets every relayed connection (both ends get an RST) or freezes the
 * proxy (it stops relaying, so the peers' kernels still acknowledge and
 * answer keep-alive probes while no byte passes), or slows it to a trickle.
 * One thread; every wait in it is bounded.
 */
#ifndef NQ_TESTS_PROXY_H
#define NQ_TESTS_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define NQT_PROXY_MAX 16

typedef struct nqt_proxy {
    uint16_t port;     /* where clients connect */
    uint16_t upstream; /* where the proxy connects */
    int listen_fd;
    int fds[NQT_PROXY_MAX][2]; /* [i][0] the client's side, [i][1] upstream; -1 unused */
    int looked[NQT_PROXY_MAX][2]; /* the urgent byte was looked for on that side */
    atomic_int resets;  /* resets asked for; the thread does them */
    atomic_int done_resets;
    atomic_int frozen;
    atomic_int frozen_seen; /* the thread's copy: it relays nothing while set */
    atomic_int stop;
    atomic_long relayed; /* bytes relayed in all */
    pthread_t thread;
} nqt_proxy;

/* Starts a proxy on a free port relaying to upstream.  0 or -1. */
int nqt_proxy_start(nqt_proxy *p, uint16_t upstream);
/* Resets every relayed connection and waits (5 s at most) until done.
 * Returns 0, or -1 when the thread did not do it in time. */
int nqt_proxy_reset(nqt_proxy *p);
enum {
    NQT_PROXY_FLOWING = 0,
    NQT_PROXY_FROZEN = 1,    /* nothing passes */
    NQT_PROXY_HELD_BACK = 2, /* what the upstream sends waits; the rest passes */
    NQT_PROXY_TRICKLE = 3,   /* everything passes, slowly: NQT_PROXY_TRICKLE_BYTES
                              * per connection and direction every 50 ms */
};
#define NQT_PROXY_TRICKLE_BYTES 8192
/* Stops relaying (NQT_PROXY_FROZEN), one way (NQT_PROXY_HELD_BACK), slows
 * it (NQT_PROXY_TRICKLE), or resumes (NQT_PROXY_FLOWING); returns once the
 * thread follows. */
void nqt_proxy_freeze(nqt_proxy *p, int frozen);
/* Stops the thread and closes every socket. */
void nqt_proxy_stop(nqt_proxy *p);

#endif
