/* epoll_echo.c: a program that already runs an epoll loop serves libnq
 * peers from it, next to a socket of its own.
 *
 * One thread, one epoll set: the server's and the client's readiness
 * descriptors (nq_comm_fd) and one end of a socket pair the program uses
 * for itself.  Lines written to that socket become messages from the
 * client; the server echoes each message; the client counts the echoes.
 * The descriptors are level-triggered, so the loop takes what it can with
 * nq_get(comm, 0, ...) and never misses a message (do not add EPOLLET). */
#include <nq/nq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINES 100

static void check(int rc, const char *what)
{
    if (rc != NQ_OK) {
        fprintf(stderr, "epoll_echo: %s: %s\n", what, nq_strerror(rc));
        exit(1);
    }
}

static void watch(int ep, int fd, void *which)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = which};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        perror("epoll_echo: epoll_ctl");
        exit(1);
    }
}

int main(void)
{
    nq_comm *server, *client;
    nq_opts *opts;
    uint16_t port;

    check(nq_opts_new(&opts), "options");
    check(nq_opts_set_netloc(opts, "127.0.0.1", 0), "netloc");
    check(nq_open(NQ_TCP, NQ_SERVER, opts, &server), "open server");
    check(nq_local_port(server, &port), "port");
    check(nq_opts_set_netloc(opts, "127.0.0.1", port), "netloc");
    check(nq_open(NQ_TCP, NQ_CLIENT, opts, &client), "open client");
    nq_opts_free(opts);

    int own[2]; /* the program's own socket: own[1] writes, own[0] is watched */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, own) != 0) {
        perror("epoll_echo: socketpair");
        return 1;
    }
    int ep = epoll_create1(0);
    int server_fd, client_fd;
    check(nq_comm_fd(server, &server_fd), "server descriptor");
    check(nq_comm_fd(client, &client_fd), "client descriptor");
    watch(ep, server_fd, server);
    watch(ep, client_fd, client);
    watch(ep, own[0], own);

    for (int i = 0; i < LINES; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %d\n", i);
        if (write(own[1], line, (size_t)n) != n) {
            perror("epoll_echo: write");
            return 1;
        }
    }

    int echoed = 0;
    char pending[4096];
    size_t have = 0;
    while (echoed < LINES) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, 10000);
        if (n <= 0) {
            fprintf(stderr, "epoll_echo: nothing happened for 10 s\n");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *which = evs[i].data.ptr;
            nq_msg *msg;
            if (which == own) {
                /* Our own socket: each whole line goes out as a message. */
                ssize_t got = read(own[0], pending + have, sizeof(pending) - have);
                if (got <= 0) {
                    perror("epoll_echo: read");
                    return 1;
                }
                have += (size_t)got;
                char *nl;
                while ((nl = memchr(pending, '\n', have)) != NULL) {
                    size_t len = (size_t)(nl - pending);
                    nq_chunk chunk = {pending, len};
                    check(nq_put(client, &chunk, 1, NULL, 0, NULL), "put"); /* copied */
                    memmove(pending, nl + 1, have - len - 1);
                    have -= len + 1;
                }
            } else if (which == server) {
                /* Take one message per wake-up: the descriptor stays
                 * readable while more wait, so none is missed. */
                if (nq_get(server, 0, &msg) == NQ_OK) {
                    const void *data;
                    size_t len;
                    nq_id from;
                    check(nq_msg_data(msg, &data, &len), "data");
                    check(nq_msg_peer(msg, &from), "peer");
                    nq_chunk chunk = {data, len};
                    check(nq_put(server, &chunk, 1, &from, 1, NULL), "echo");
                    nq_msg_free(msg);
                }
            } else {
                while (nq_get(client, 0, &msg) == NQ_OK) {
                    echoed++;
                    nq_msg_free(msg);
                }
            }
        }
    }
    printf("epoll_echo: %d lines echoed through one epoll loop\n", echoed);
    close(ep);
    close(own[0]);
    close(own[1]);
    check(nq_close(client), "close client");
    check(nq_close(server), "close server");
    nq_destroy(client);
    nq_destroy(server);
    return 0;
}
