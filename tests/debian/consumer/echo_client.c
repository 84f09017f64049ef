/*
 * A client of an echoing server, built against the installed libnq-dev:
 * echo_client HOST PORT MESSAGE... sends each message over TCP and checks
 * that the server sends it back unchanged.  Prints "OK" and exits 0 when
 * every message came back; exits 1 otherwise, 2 for bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#define WAIT_MS 10000

static int check(int rv, const char *what)
{
    if (rv != NQ_OK) {
        fprintf(stderr, "echo_client: %s: %s (%d)\n", what, nq_strerror(rv), rv);
    }
    return rv;
}

static int open_client(const char *host, uint16_t port, nq_comm **out)
{
    nq_opts *opts;
    int rv;
    if ((rv = check(nq_opts_new(&opts), "nq_opts_new")) != NQ_OK) {
        return rv;
    }
    if ((rv = check(nq_opts_set_netloc(opts, host, port), "nq_opts_set_netloc")) == NQ_OK) {
        rv = check(nq_open(NQ_TCP, NQ_CLIENT, opts, out), "nq_open");
    }
    nq_opts_free(opts);
    return rv;
}

/* Sends text (copied, no future) and waits for it to come back. */
static int echo(nq_comm *client, const char *text)
{
    int rv;
    nq_chunk chunk = {text, strlen(text)};
    if ((rv = check(nq_put(client, &chunk, 1, NULL, 0, NULL), "nq_put")) != NQ_OK) {
        return rv;
    }
    nq_msg *msg;
    if ((rv = check(nq_get(client, WAIT_MS, &msg), "nq_get")) != NQ_OK) {
        return rv;
    }
    const void *data;
    size_t len;
    if ((rv = check(nq_msg_data(msg, &data, &len), "nq_msg_data")) == NQ_OK &&
        (len != chunk.len || memcmp(data, text, len) != 0)) {
        fprintf(stderr, "echo_client: \"%s\" came back as %zu other bytes\n", text, len);
        rv = NQ_EPROTO;
    }
    nq_msg_free(msg);
    return rv;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: echo_client HOST PORT MESSAGE...\n");
        return 2;
    }
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "echo_client: bad port \"%s\"\n", argv[2]);
        return 2;
    }

    nq_comm *client;
    int rv = open_client(argv[1], (uint16_t)port, &client);
    if (rv != NQ_OK) {
        return 1;
    }
    for (int i = 3; i < argc && rv == NQ_OK; i++) {
        rv = echo(client, argv[i]);
    }
    int crv = check(nq_close(client), "nq_close");
    rv = rv == NQ_OK ? crv : rv;
    nq_destroy(client);
    if (rv != NQ_OK) {
        return 1;
    }
    printf("OK %d messages echoed by libnq %s\n", argc - 3, nq_version());
    return 0;
}
