/*
 * Uses an installed libnq: a TCP server on a free loopback port and a client
 * exchange one message, which is checked byte for byte along with its
 * sender.  Prints "OK" and exits 0 when all went well.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#define WAIT_MS 10000

static const char greeting[] = "hello from an installed libnq";

static int check(int rv, const char *what)
{
    if (rv != NQ_OK) {
        fprintf(stderr, "consumer: %s: %s (%d)\n", what, nq_strerror(rv), rv);
    }
    return rv;
}

/* Opens a communicator for 127.0.0.1:port. */
static int open_comm(nq_purpose purpose, uint16_t port, nq_comm **out)
{
    nq_opts *opts;
    int rv;
    if ((rv = check(nq_opts_new(&opts), "nq_opts_new")) != NQ_OK) {
        return rv;
    }
    if ((rv = check(nq_opts_set_netloc(opts, "127.0.0.1", port), "nq_opts_set_netloc")) ==
        NQ_OK) {
        rv = check(nq_open(NQ_TCP, purpose, opts, out), "nq_open");
    }
    nq_opts_free(opts);
    return rv;
}

/* Sends the greeting from client and checks what server receives. */
static int exchange(nq_comm *server, nq_comm *client)
{
    int rv;
    nq_chunk chunk = {greeting, sizeof(greeting) - 1};
    nq_future *sent;
    if ((rv = check(nq_put(client, &chunk, 1, NULL, 0, &sent), "nq_put")) != NQ_OK) {
        return rv;
    }
    rv = check(nq_future_wait(sent, WAIT_MS), "nq_future_wait");
    nq_future_free(sent);
    if (rv != NQ_OK) {
        return rv;
    }

    nq_msg *msg;
    if ((rv = check(nq_get(server, WAIT_MS, &msg), "nq_get")) != NQ_OK) {
        return rv;
    }
    const void *data;
    size_t len;
    nq_id from;
    nq_id client_id;
    if ((rv = check(nq_msg_data(msg, &data, &len), "nq_msg_data")) == NQ_OK &&
        (rv = check(nq_msg_peer(msg, &from), "nq_msg_peer")) == NQ_OK &&
        (rv = check(nq_comm_id(client, &client_id), "nq_comm_id")) == NQ_OK) {
        if (len != sizeof(greeting) - 1 || memcmp(data, greeting, len) != 0) {
            fprintf(stderr, "consumer: received %zu bytes that are not the greeting\n", len);
            rv = NQ_EPROTO;
        } else if (!nq_id_equal(&from, &client_id)) {
            fprintf(stderr, "consumer: the message does not carry the client's id\n");
            rv = NQ_EPROTO;
        }
    }
    nq_msg_free(msg);
    return rv;
}

int main(void)
{
    if (nq_version_number() / 10000 != NQ_VERSION_MAJOR) {
        fprintf(stderr, "consumer: header %d but library %s\n", NQ_VERSION_NUMBER, nq_version());
        return 1;
    }

    nq_comm *server = NULL;
    nq_comm *client = NULL;
    uint16_t port = 0;
    int rv = open_comm(NQ_SERVER, 0, &server);
    if (rv == NQ_OK) {
        rv = check(nq_local_port(server, &port), "nq_local_port");
    }
    if (rv == NQ_OK) {
        rv = open_comm(NQ_CLIENT, port, &client);
    }
    if (rv == NQ_OK) {
        rv = exchange(server, client);
    }
    if (client != NULL) {
        int crv = check(nq_close(client), "nq_close (client)");
        rv = rv == NQ_OK ? crv : rv;
        nq_destroy(client);
    }
    if (server != NULL) {
        int srv = check(nq_close(server), "nq_close (server)");
        rv = rv == NQ_OK ? srv : rv;
        nq_destroy(server);
    }
    if (rv != NQ_OK) {
        return 1;
    }
    printf("OK libnq %s\n", nq_version());
    return 0;
}
