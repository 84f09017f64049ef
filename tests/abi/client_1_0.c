/*
 * A program written against libnq 1.0, for the symbol-versioning test
 * (versioned_client_test.sh): it is linked against a library with the
 * released symbol table only, then run against the library being built.
 * It must keep to the 1.0 API, so that it stays what an old program is.
 *
 * Over TCP on a free loopback port, a server and a client with fixed ids
 * exchange a message in each direction (one sent with a future and a
 * completion callback, one as a serialized value), and the server's
 * counters and peer list are checked.  Prints "OK" and exits 0 when all
 * went well.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nq/nq.h>

#define WAIT_MS 10000

static const char server_text[] = "11111111-2222-4333-8444-555555555555";
static const char client_text[] = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
static const char request[] = "request from a 1.0 program";
static const char reply[] = "reply as a value";

static int check(int rv, const char *what)
{
    if (rv != NQ_OK) {
        fprintf(stderr, "client_1_0: %s: %s (%d)\n", what, nq_strerror(rv), rv);
    }
    return rv;
}

static int fail(const char *what)
{
    fprintf(stderr, "client_1_0: %s\n", what);
    return NQ_EPROTO;
}

/* Values are NUL-terminated strings, sent without the NUL. */
static int dump_text(void *ctx, const void *value, nq_bytes *out)
{
    (void)ctx;
    size_t len = strlen(value);
    if ((out->data = nq_alloc(len)) == NULL) {
        return NQ_ENOMEM;
    }
    memcpy(out->data, value, len);
    out->len = len;
    return NQ_OK;
}

/* The value is a malloc'ed string the caller frees. */
static int load_text(void *ctx, const nq_bytes *in, void **value)
{
    (void)ctx;
    char *text = malloc(in->len + 1);
    if (text == NULL) {
        return NQ_ENOMEM;
    }
    memcpy(text, in->data, in->len);
    text[in->len] = '\0';
    *value = text;
    return NQ_OK;
}

static void count_done(nq_future *future, int result, void *ctx)
{
    (void)future;
    if (result == NQ_OK) {
        atomic_fetch_add((atomic_int *)ctx, 1);
    }
}

static int open_comm(nq_purpose purpose, const char *id_text, uint16_t port, nq_comm **out)
{
    nq_opts *opts;
    nq_id id;
    nq_id back;
    int64_t workers;
    int rv;
    if ((rv = check(nq_opts_new(&opts), "nq_opts_new")) != NQ_OK) {
        return rv;
    }
    if ((rv = check(nq_id_parse(id_text, &id), "nq_id_parse")) == NQ_OK &&
        (rv = check(nq_opts_set_id(opts, &id), "nq_opts_set_id")) == NQ_OK &&
        (rv = check(nq_opts_get_id(opts, &back), "nq_opts_get_id")) == NQ_OK &&
        (rv = check(nq_opts_set_netloc(opts, "127.0.0.1", port), "nq_opts_set_netloc")) == NQ_OK &&
        (rv = check(nq_opts_set_int(opts, NQ_OPT_WORKERS, 2), "nq_opts_set_int")) == NQ_OK &&
        (rv = check(nq_opts_get_int(opts, NQ_OPT_WORKERS, &workers), "nq_opts_get_int")) == NQ_OK &&
        (rv = check(nq_opts_set_log(opts, NULL, NULL), "nq_opts_set_log")) == NQ_OK &&
        (rv = check(nq_opts_set_serializer(opts, dump_text, load_text, NULL),
                    "nq_opts_set_serializer")) == NQ_OK) {
        if (!nq_id_equal(&id, &back) || workers != 2) {
            rv = fail("options do not read back what was set");
        } else {
            rv = check(nq_open(NQ_TCP, purpose, opts, out), "nq_open");
        }
    }
    nq_opts_free(opts);
    return rv;
}

/* The client's request: sent zero-copy with a future and a callback. */
static int send_request(nq_comm *server, nq_comm *client)
{
    atomic_int done = 0;
    nq_chunk chunks[] = {{request, 8}, {request + 8, sizeof(request) - 1 - 8}};
    nq_future *sent;
    int rv;
    if ((rv = check(nq_put(client, chunks, 2, NULL, 0, &sent), "nq_put")) != NQ_OK) {
        return rv;
    }
    if ((rv = check(nq_future_on_done(sent, count_done, &done), "nq_future_on_done")) == NQ_OK &&
        (rv = check(nq_future_wait(sent, WAIT_MS), "nq_future_wait")) == NQ_OK &&
        (rv = check(nq_future_result(sent), "nq_future_result")) == NQ_OK &&
        atomic_load(&done) != 1) {
        rv = fail("the completion callback did not run once");
    }
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
        if (len != sizeof(request) - 1 || nq_msg_size(msg) != len ||
            memcmp(data, request, len) != 0) {
            rv = fail("the server received other bytes than the request");
        } else if (!nq_id_equal(&from, &client_id)) {
            rv = fail("the request does not carry the client's id");
        }
    }
    nq_msg_free(msg);
    return rv;
}

/* The server's reply, a value sent to the one listed peer. */
static int send_reply(nq_comm *server, nq_comm *client)
{
    nq_id peers[2];
    size_t count;
    int rv;
    if ((rv = check(nq_peers(server, peers, 2, &count), "nq_peers")) != NQ_OK) {
        return rv;
    }
    if (count != 1) {
        return fail("the server does not list exactly one peer");
    }
    if ((rv = check(nq_put_value(server, reply, peers, 1, NULL), "nq_put_value")) != NQ_OK) {
        return rv;
    }
    void *value;
    nq_id from;
    nq_id server_id;
    char from_text[NQ_ID_STRLEN];
    if ((rv = check(nq_get_value(client, WAIT_MS, &from, &value), "nq_get_value")) != NQ_OK) {
        return rv;
    }
    if ((rv = check(nq_server_id(client, &server_id), "nq_server_id")) == NQ_OK &&
        (rv = check(nq_id_format(&from, from_text, sizeof(from_text)), "nq_id_format")) ==
            NQ_OK) {
        if (strcmp(value, reply) != 0) {
            rv = fail("the client received another value than the reply");
        } else if (!nq_id_equal(&from, &server_id) || strcmp(from_text, server_text) != 0) {
            rv = fail("the reply does not carry the server's id");
        }
    }
    free(value);
    return rv;
}

static int check_counters(nq_comm *server)
{
    int64_t in;
    int64_t peers;
    int rv;
    if ((rv = check(nq_stat(server, NQ_STAT_MSGS_IN, &in), "nq_stat")) == NQ_OK &&
        (rv = check(nq_stat(server, NQ_STAT_PEERS, &peers), "nq_stat")) == NQ_OK &&
        (in != 1 || peers != 1)) {
        rv = fail("the server's counters are wrong");
    }
    return rv;
}

int main(void)
{
    if (nq_version_number() / 10000 != 1 || strncmp(nq_version(), "1.", 2) != 0) {
        fprintf(stderr, "client_1_0: libnq %s is not a 1.x release\n", nq_version());
        return 1;
    }
    nq_id spare;
    void *block = nq_alloc(0);
    nq_free(block);
    if (block == NULL || check(nq_id_random(&spare), "nq_id_random") != NQ_OK) {
        return 1;
    }

    nq_comm *server = NULL;
    nq_comm *client = NULL;
    uint16_t port = 0;
    int rv = open_comm(NQ_SERVER, server_text, 0, &server);
    if (rv == NQ_OK) {
        rv = check(nq_local_port(server, &port), "nq_local_port");
    }
    if (rv == NQ_OK) {
        rv = open_comm(NQ_CLIENT, client_text, port, &client);
    }
    if (rv == NQ_OK) {
        rv = send_request(server, client);
    }
    if (rv == NQ_OK) {
        rv = send_reply(server, client);
    }
    if (rv == NQ_OK) {
        rv = check_counters(server);
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
