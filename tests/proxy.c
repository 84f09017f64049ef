/*
 * The tests' fault-injecting TCP proxy (see proxy.h).
 */
#include "proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peers.h"

/* A blocking connect to 127.0.0.1:port (refused at once when nobody
 * listens), or -1. */
static int connect_upstream(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void drop(nqt_proxy *p, int i, int rst)
{
    for (int side = 0; side < 2; side++) {
        if (p->fds[i][side] >= 0) {
            if (rst) {
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(p->fds[i][side], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            }
            close(p->fds[i][side]);
            p->fds[i][side] = -1;
        }
    }
}

/* Relays what side of pair i has to the other side; 0, or -1 when the pair
 * is over.  The urgent byte, if the first byte was one, goes as one. */
static int relay(nqt_proxy *p, int i, int side, size_t most)
{
    int from = p->fds[i][side];
    int to = p->fds[i][1 - side];
    uint8_t buf[65536];
    if (!p->looked[i][side]) {
        /* As libnq does (transports/tcp/conn.c): the urgent byte, if any,
         * is read before any other, or a read would pass over it. */
        uint8_t b;
        if (recv(from, &b, 1, MSG_OOB | MSG_DONTWAIT) == 1) {
            if (send(to, &b, 1, MSG_OOB | MSG_NOSIGNAL) != 1) {
                return -1;
            }
        } else if (recv(from, buf, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
            return 0; /* nothing behind it yet */
        }
        p->looked[i][side] = 1;
    }
    ssize_t n = recv(from, buf, most < sizeof(buf) ? most : sizeof(buf), MSG_DONTWAIT);
    if (n == 0) {
        return -1;
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    size_t at = 0;
    while (at < (size_t)n) {
        ssize_t w = send(to, buf + at, (size_t)n - at, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                struct pollfd pf = {.fd = to, .events = POLLOUT};
                poll(&pf, 1, 100);
                if (atomic_load(&p->stop)) {
                    return -1;
                }
                continue;
            }
            return -1;
        }
        at += (size_t)w;
    }
    atomic_fetch_add(&p->relayed, (long)n);
    return 0;
}

static void *run(void *arg)
{
    nqt_proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        int want = atomic_load(&p->resets);
        if (want != atomic_load(&p->done_resets)) {
            for (int i = 0; i < NQT_PROXY_MAX; i++) {
                drop(p, i, 1);
            }
            atomic_store(&p->done_resets, want);
        }
        atomic_store(&p->frozen_seen, atomic_load(&p->frozen));
        struct pollfd pf[1 + 2 * NQT_PROXY_MAX];
        int who[1 + 2 * NQT_PROXY_MAX];
        int n = 0;
        pf[n].fd = p->listen_fd;
        pf[n].events = POLLIN;
        who[n++] = -1;
        int frozen = atomic_load(&p->frozen_seen);
        if (frozen != NQT_PROXY_FROZEN) {
            for (int i = 0; i < NQT_PROXY_MAX; i++) {
                for (int side = 0; side < 2; side++) {
                    if (p->fds[i][side] >= 0 && (side == 0 || frozen != NQT_PROXY_HELD_BACK)) {
                        pf[n].fd = p->fds[i][side];
                        pf[n].events = POLLIN | POLLPRI;
                        who[n++] = i * 2 + side;
                    }
                }
            }
        }
        if (poll(pf, (nfds_t)n, 20) <= 0) {
            continue;
        }
        for (int k = 1; k < n; k++) {
            int i = who[k] / 2;
            size_t most = frozen == NQT_PROXY_TRICKLE ? NQT_PROXY_TRICKLE_BYTES : SIZE_MAX;
            if (pf[k].revents != 0 && p->fds[i][0] >= 0 && relay(p, i, who[k] % 2, most) != 0) {
                drop(p, i, 0);
            }
        }
        if (frozen == NQT_PROXY_TRICKLE) {
            nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
        }
        if (pf[0].revents & POLLIN) {
            int c = accept(p->listen_fd, NULL, NULL);
            if (c < 0) {
                continue;
            }
            int u = connect_upstream(p->upstream);
            int slot = -1;
            for (int i = 0; i < NQT_PROXY_MAX && slot < 0; i++) {
                if (p->fds[i][0] < 0) {
                    slot = i;
                }
            }
            if (u < 0 || slot < 0) {
                close(c);
                if (u >= 0) {
                    close(u);
                }
                continue;
            }
            p->fds[slot][0] = c;
            p->fds[slot][1] = u;
            p->looked[slot][0] = p->looked[slot][1] = 0;
        }
    }
    return NULL;
}

int nqt_proxy_start(nqt_proxy *p, uint16_t upstream)
{
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < NQT_PROXY_MAX; i++) {
        p->fds[i][0] = p->fds[i][1] = -1;
    }
    p->upstream = upstream;
    p->listen_fd = nqt_raw_listen(&p->port);
    if (p->listen_fd < 0) {
        return -1;
    }
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        close(p->listen_fd);
        return -1;
    }
    return 0;
}

int nqt_proxy_reset(nqt_proxy *p)
{
    int want = atomic_fetch_add(&p->resets, 1) + 1;
    for (int i = 0; i < 500; i++) {
        if (atomic_load(&p->done_resets) == want) {
            return 0;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

void nqt_proxy_freeze(nqt_proxy *p, int frozen)
{
    atomic_store(&p->frozen, frozen);
    for (int i = 0; i < 500 && atomic_load(&p->frozen_seen) != frozen; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void nqt_proxy_stop(nqt_proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < NQT_PROXY_MAX; i++) {
        drop(p, i, 0);
    }
    close(p->listen_fd);
}
