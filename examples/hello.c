/* hello.c: a server and a client in one program trade one message over TCP.
 * libnq never blocks on the network except in get, close and future waits,
 * so one thread can drive both ends. */
#include <nq/nq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every libnq call returns NQ_OK or a negative code. */
static void check(int rc, const char *what)
{
    if (rc != NQ_OK) {
        fprintf(stderr, "hello: %s: %s\n", what, nq_strerror(rc));
        exit(1);
    }
}

static void print(const char *who, const nq_msg *msg)
{
    const void *data;
    size_t len;

    check(nq_msg_data(msg, &data, &len), "read message");
    printf("%s got \"%.*s\"\n", who, (int)len, (const char *)data);
}

int main(void)
{
    nq_comm *server, *client;
    nq_future *sent;
    nq_opts *opts;
    nq_msg *msg;
    nq_id sender;
    uint16_t port;

    /* Port 0: the server binds a free port, nq_local_port says which. */
    check(nq_opts_new(&opts), "options");
    check(nq_opts_set_netloc(opts, "127.0.0.1", 0), "netloc");
    check(nq_open(NQ_TCP, NQ_SERVER, opts, &server), "open server");
    check(nq_local_port(server, &port), "port");

    /* Options are copied at open, so the same object configures the client,
     * which connects in the background. */
    check(nq_opts_set_netloc(opts, "127.0.0.1", port), "netloc");
    check(nq_open(NQ_TCP, NQ_CLIENT, opts, &client), "open client");
    nq_opts_free(opts);

    /* With a future the bytes are not copied: they must stay unchanged until
     * the future completes, here when the kernel has them. */
    static const char hello[] = "hello, libnq";
    nq_chunk chunk = { hello, strlen(hello) };
    check(nq_put(client, &chunk, 1, NULL, 0, &sent), "put");
    check(nq_future_wait(sent, -1), "send");
    nq_future_free(sent);

    /* The server answers only the sender; without a future, put copies. */
    check(nq_get(server, 5000, &msg), "server get");
    print("server", msg);
    check(nq_msg_peer(msg, &sender), "sender");
    nq_chunk reply = { "welcome", 7 };
    check(nq_put(server, &reply, 1, &sender, 1, NULL), "reply");
    nq_msg_free(msg);

    check(nq_get(client, 5000, &msg), "client get");
    print("client", msg);
    nq_msg_free(msg);

    /* The client closes first (FIN handshake); the server then finds no
     * client left to wait for. */
    check(nq_close(client), "close client");
    check(nq_close(server), "close server");
    nq_destroy(client);
    nq_destroy(server);
    return 0;
}
