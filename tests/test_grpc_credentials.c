/*
 * Credentials only gRPC takes: the name a client expects of the server, a
 * grpc server of another kind that refuses a client in its handshake, and
 * bearer tokens (static, or from a secret callback at every attempt): what
 * the server learns of a client (nq_peer_identity, the admission callback)
 * and the error a refused client sees (NQ_EAUTH) without waiting for a
 * timeout.  Client certificates, which TCP takes too, are in
 * test_credentials.c (run with "grpc").
 */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS
/* A refusal comes with the handshake or the first call, well before
 * NQ_OPT_HANDSHAKE_TIMEOUT_MS (10 s by default). */
#define REFUSAL_MS 5000

static char dir[64];

/* The certificates of nqt_make_credentials, and one signed by the
 * authority for server.example alone. */
static int make_certificates(void)
{
    if (dir[0] != 0) {
        return 0;
    }
    CHECK(nqt_make_credentials(dir, "nqgcred") == 0);
    CHECK(nqt_make_signed_cert(dir, "named", "ca", "named", "DNS:server.example") == 0);
    return 0;
}

static const char *path(const char *name, const char *ext)
{
    return nqt_path(dir, name, ext);
}

/* Options for a server holding cert's certificate (signed by the
 * authority), asking clients for theirs with auth (0, 1 or 2). */
static nq_opts *server_opts(const char *cert, int auth)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    if (nq_opts_set_tls_identity(o, path(cert, "key"), path(cert, "pem"), 0) != NQ_OK ||
        nq_opts_set_tls_trust(o, path("ca", "pem"), NULL, NULL) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, auth) != NQ_OK) {
        nq_opts_free(o);
        return NULL;
    }
    return o;
}

/* Options for a client of s trusting the authority and presenting name's
 * certificate (NULL: none). */
static nq_opts *client_opts(nq_comm *s, const char *name, const nq_id *id)
{
    nq_opts *o = nqt_opts("127.0.0.1", nqt_port(s), id);
    int rv = nq_opts_set_tls_trust(o, path("ca", "pem"), NULL, NULL);
    if (rv == NQ_OK && name != NULL) {
        rv = nq_opts_set_tls_identity(o, path(name, "key"), path(name, "pem"), 0);
    }
    if (rv != NQ_OK) {
        nq_opts_free(o);
        return NULL;
    }
    return o;
}

static nq_comm *client_as(nq_comm *s, const char *name, const nq_id *id)
{
    nq_opts *o = client_opts(s, name, id);
    return o != NULL ? nqt_open(NQ_GRPC, NQ_CLIENT, o) : NULL;
}

/* The client's connection fails with want, well before the handshake
 * timeout. */
static int expect_failure(nq_comm *c, int want)
{
    int64_t start = nqt_now_ms();
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), want);
    int64_t took = nqt_now_ms() - start;
    if (took >= REFUSAL_MS) {
        fprintf(stderr, "the failure took %lld ms\n", (long long)took);
    }
    CHECK(took < REFUSAL_MS);
    return 0;
}

/* Anchors that cannot be read, and a client key that does not fit its
 * certificate, fail nq_open (test_credentials covers the server's key). */
static int test_unreadable_anchors_and_a_wrong_client_key_fail_at_open(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *c = NULL;
    nq_opts *o = server_opts("server", 2);
    CHECK(o != NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, path("missing", "pem"), NULL, NULL));
    CHECK_RC(nq_open(NQ_GRPC, NQ_SERVER, o, &c), NQ_ETLS);
    CHECK_OK(nq_opts_set_tls_trust(o, NULL, NULL, "no certificate here"));
    CHECK_RC(nq_open(NQ_GRPC, NQ_SERVER, o, &c), NQ_ETLS);
    nq_opts_free(o);
    o = nqt_opts("127.0.0.1", 1, NULL);
    CHECK_OK(nq_opts_set_tls_identity(o, path("client-a", "key"), path("server", "pem"), 0));
    CHECK_RC(nq_open(NQ_GRPC, NQ_CLIENT, o, &c), NQ_ETLS);
    CHECK_OK(nq_opts_set_tls_identity(o, path("client-a", "key"), path("client-a", "pem"), 0));
    CHECK_OK(nq_opts_set_tls_trust(o, NULL, path("client-a", "key"), NULL));
    CHECK_RC(nq_open(NQ_GRPC, NQ_CLIENT, o, &c), NQ_ETLS);
    nq_opts_free(o);
    CHECK(c == NULL);
    return 0;
}

/* A server whose certificate names server.example alone: a client that
 * connects to its address expecting that name is served, one expecting
 * the address is not (NQ_ETLS: the client refused the server). */
static int test_server_name_decides_which_certificate_is_accepted(void)
{
    CHECK(make_certificates() == 0);
    nq_opts *o = server_opts("named", 0);
    CHECK(o != NULL);
    nq_comm *s = nqt_open(NQ_GRPC, NQ_SERVER, o);
    CHECK(s != NULL);
    nq_id sid;
    nq_comm *c = NULL;
    o = client_opts(s, NULL, NULL);
    CHECK(o != NULL);
    CHECK_OK(nq_opts_set_tls_server_name(o, "server.example"));
    CHECK((c = nqt_open(NQ_GRPC, NQ_CLIENT, o)) != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_server_id(c, &sid));
    CHECK(strcmp(nqt_identity(c, &sid), "CN=named\nDNS:server.example") == 0);
    nq_destroy(c);
    CHECK((c = client_as(s, NULL, NULL)) != NULL);
    CHECK(expect_failure(c, NQ_ETLS) == 0);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}


/* ---- a grpc server that refuses in its handshake ---------------------------------- */

/* grpc's own TLS server, as servers other than libnq's are: it requires
 * client certificates and checks them in the handshake. */
typedef struct strict_server {
    grpc_completion_queue *cq;
    grpc_server *server;
    int port;
} strict_server;

static int strict_start(strict_server *h)
{
    char *key = nqt_slurp(path("server", "key"));
    char *cert = nqt_slurp(path("server", "pem"));
    char *ca = nqt_slurp(path("ca", "pem"));
    CHECK(key != NULL && cert != NULL && ca != NULL);
    grpc_init();
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    h->cq = grpc_completion_queue_create_for_next(NULL);
    h->server = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(h->server, h->cq, NULL);
    h->port = grpc_server_add_http2_port(h->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    grpc_server_start(h->server);
    free(key);
    free(cert);
    free(ca);
    CHECK(h->port > 0);
    return 0;
}

static void strict_stop(strict_server *h)
{
    grpc_server_shutdown_and_notify(h->server, h->cq, h);
    grpc_completion_queue_shutdown(h->cq);
    while (grpc_completion_queue_next(h->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_server_destroy(h->server);
    grpc_completion_queue_destroy(h->cq);
    grpc_shutdown();
}

/* Such a server closes a refused client's connection without saying why:
 * once its attempts run out (NQ_OPT_HANDSHAKE_TIMEOUT_MS), a client that
 * presented a certificate fails with NQ_EAUTH, one that had none with
 * NQ_ETLS. */
static int test_refusal_in_a_grpc_handshake_ends_the_attempts(void)
{
    CHECK(make_certificates() == 0);
    strict_server h;
    CHECK(strict_start(&h) == 0);
    const char *names[] = {"rogue", NULL};
    const int want[] = {NQ_EAUTH, NQ_ETLS};
    for (int i = 0; i < 2; i++) {
        nq_opts *o = nqt_opts("127.0.0.1", (uint16_t)h.port, NULL);
        CHECK_OK(nq_opts_set_tls_trust(o, path("ca", "pem"), NULL, NULL));
        if (names[i] != NULL) {
            CHECK_OK(nq_opts_set_tls_identity(o, path(names[i], "key"), path(names[i], "pem"),
                                              0));
        }
        CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 1000));
        nq_comm *c = nqt_open(NQ_GRPC, NQ_CLIENT, o);
        CHECK(c != NULL);
        CHECK(expect_failure(c, want[i]) == 0);
        nq_destroy(c);
    }
    strict_stop(&h);
    return 0;
}

/* ---- tokens ----------------------------------------------------------------------- */

/* A server over TLS that asks for client certificates (auth) and accepts
 * "tok-a" as alice and "tok-b" as bob. */
static nq_comm *token_server(int auth, nq_admit_fn admit, void *ctx)
{
    nq_opts *o = server_opts("server", auth);
    if (o == NULL || nq_opts_accept_token(o, "tok-a", "alice") != NQ_OK ||
        nq_opts_accept_token(o, "tok-b", "bob") != NQ_OK ||
        (admit != NULL && nq_opts_set_admission(o, admit, ctx) != NQ_OK)) {
        nq_opts_free(o);
        return NULL;
    }
    return nqt_open(NQ_GRPC, NQ_SERVER, o);
}

/* A client of s presenting name's certificate (NULL: none) and token
 * (NULL: none). */
static nq_comm *token_client(nq_comm *s, const char *name, const char *token, const nq_id *id)
{
    nq_opts *o = client_opts(s, name, id);
    if (o == NULL || (token != NULL && nq_opts_set_token(o, token) != NQ_OK)) {
        nq_opts_free(o);
        return NULL;
    }
    return nqt_open(NQ_GRPC, NQ_CLIENT, o);
}

static int test_accepted_token_is_served_and_named_after_the_certificate(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = token_server(1, NULL, NULL);
    CHECK(s != NULL);
    nq_id anon_id, a_id;
    CHECK_OK(nq_id_random(&anon_id));
    CHECK_OK(nq_id_random(&a_id));
    nq_comm *anon = token_client(s, NULL, "tok-a", &anon_id);
    nq_comm *a = token_client(s, "client-a", "tok-b", &a_id);
    CHECK(anon != NULL && a != NULL);
    CHECK(nqt_round_trip(s, anon) == 0);
    CHECK(nqt_round_trip(s, a) == 0);
    CHECK(strcmp(nqt_identity(s, &anon_id), "token:alice") == 0);
    CHECK(strcmp(nqt_identity(s, &a_id),
                 "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1\ntoken:bob") == 0);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 0);
    nq_destroy(anon);
    nq_destroy(a);
    nq_destroy(s);
    return 0;
}

static int test_wrong_or_missing_token_is_refused_at_once(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = token_server(0, NULL, NULL);
    CHECK(s != NULL);
    nq_comm *wrong = token_client(s, NULL, "tok-c", NULL);
    CHECK(wrong != NULL);
    CHECK(expect_failure(wrong, NQ_EAUTH) == 0);
    nq_comm *none = token_client(s, NULL, NULL, NULL);
    CHECK(none != NULL);
    CHECK(expect_failure(none, NQ_EAUTH) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_REFUSED, 2) == 0);
    size_t count = 9;
    CHECK_OK(nq_peers(s, NULL, 0, &count));
    CHECK(count == 0);
    nq_id id;
    CHECK_OK(nq_id_random(&id));
    nq_comm *right = token_client(s, NULL, "tok-a", &id);
    CHECK(right != NULL);
    CHECK(nqt_round_trip(s, right) == 0);
    CHECK(strcmp(nqt_identity(s, &id), "token:alice") == 0);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 2 && nqt_stat(s, NQ_STAT_TLS_ERRORS) == 0);
    nq_destroy(wrong);
    nq_destroy(none);
    nq_destroy(right);
    nq_destroy(s);
    return 0;
}

/* A secret callback handing out tokens[0], tokens[1], ... (NULL: it
 * fails), counting its calls. */
typedef struct secrets {
    const char *tokens[4];
    int calls;
} secrets;

static int next_secret(void *ctx, char *buf, size_t size, size_t *len)
{
    secrets *sec = ctx;
    const char *token = sec->tokens[sec->calls < 4 ? sec->calls : 3];
    sec->calls++;
    if (token == NULL || strlen(token) > size) {
        return NQ_EAUTH;
    }
    memcpy(buf, token, strlen(token));
    *len = strlen(token);
    return NQ_OK;
}

static nq_comm *secret_client(nq_comm *s, secrets *sec, int64_t reconnect_ms)
{
    nq_opts *o = client_opts(s, NULL, NULL);
    if (o == NULL || nq_opts_set_secret_fn(o, next_secret, sec) != NQ_OK ||
        nq_opts_set_int(o, NQ_OPT_RECONNECT_MS, reconnect_ms) != NQ_OK) {
        nq_opts_free(o);
        return NULL;
    }
    return nqt_open(NQ_GRPC, NQ_CLIENT, o);
}

/* The callback is asked before each attempt to connect: a token the server
 * refuses, then one it accepts, connect on the second attempt; the calls
 * of a connected client do not ask again.  A callback that fails fails
 * the attempt with NQ_EAUTH. */
static int test_secret_callback_gives_the_token_of_every_attempt(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = token_server(0, NULL, NULL);
    CHECK(s != NULL);
    secrets sec = {{"tok-c", "tok-b", "tok-b", "tok-b"}, 0};
    nq_comm *c = secret_client(s, &sec, 50);
    CHECK(c != NULL);
    /* A put made before then could go with the refused attempt. */
    CHECK(nqt_wait_stat(s, NQ_STAT_PEERS, 1) == 0);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(sec.calls == 2);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 1 && nqt_stat(c, NQ_STAT_RECONNECTS) == 1);
    nq_destroy(c);

    secrets failing = {{NULL, NULL, NULL, NULL}, 0};
    c = secret_client(s, &failing, 0);
    CHECK(c != NULL);
    CHECK(expect_failure(c, NQ_EAUTH) == 0);
    CHECK(failing.calls == 1);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- admission ---------------------------------------------------------------- */

/* An admission callback that lets id in only with a given identity, and
 * remembers what it was shown last. */
typedef struct gate {
    nq_id id;
    const char *needs;
    int calls;
    char identity[512];
} gate;

static int check_gate(void *ctx, const nq_admission *who)
{
    gate *g = ctx;
    g->calls++;
    snprintf(g->identity, sizeof(g->identity), "%s", who->identity);
    if (!nq_id_equal(&who->peer, &g->id)) {
        return NQ_OK;
    }
    return strcmp(who->identity, g->needs) == 0 ? NQ_OK : NQ_EAUTH;
}

/* Bob's token cannot claim alice's id. */
static int test_admission_binds_an_id_to_a_token(void)
{
    CHECK(make_certificates() == 0);
    gate g = {.needs = "token:alice"};
    CHECK_OK(nq_id_random(&g.id));
    nq_comm *s = token_server(0, check_gate, &g);
    CHECK(s != NULL);
    nq_comm *impostor = token_client(s, NULL, "tok-b", &g.id);
    CHECK(impostor != NULL);
    CHECK(expect_failure(impostor, NQ_EAUTH) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_REFUSED, 1) == 0);
    CHECK(strcmp(g.identity, "token:bob") == 0);
    nq_comm *real = token_client(s, NULL, "tok-a", &g.id);
    CHECK(real != NULL);
    CHECK(nqt_round_trip(s, real) == 0);
    CHECK(strcmp(g.identity, "token:alice") == 0);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 1 && g.calls == 2);
    nq_destroy(impostor);
    nq_destroy(real);
    nq_destroy(s);
    return 0;
}

/* A token is never sent in clear: a client without TLS that has one, or a
 * callback to give one, fails nq_open. */
static int test_token_without_tls_is_refused_at_open(void)
{
    nq_comm *c = NULL;
    nq_opts *o = nqt_opts("127.0.0.1", 1, NULL);
    CHECK_OK(nq_opts_set_token(o, "tok-a"));
    CHECK_RC(nq_open(NQ_GRPC, NQ_CLIENT, o, &c), NQ_EINVAL);
    nq_opts_free(o);
    secrets sec = {{"tok-a", NULL, NULL, NULL}, 0};
    o = nqt_opts("127.0.0.1", 1, NULL);
    CHECK_OK(nq_opts_set_secret_fn(o, next_secret, &sec));
    CHECK_RC(nq_open(NQ_GRPC, NQ_CLIENT, o, &c), NQ_EINVAL);
    nq_opts_free(o);
    CHECK(c == NULL && sec.calls == 0);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_unreadable_anchors_and_a_wrong_client_key_fail_at_open),
    TEST(test_server_name_decides_which_certificate_is_accepted),
    TEST(test_refusal_in_a_grpc_handshake_ends_the_attempts),
    TEST(test_accepted_token_is_served_and_named_after_the_certificate),
    TEST(test_wrong_or_missing_token_is_refused_at_once),
    TEST(test_secret_callback_gives_the_token_of_every_attempt),
    TEST(test_admission_binds_an_id_to_a_token),
    TEST(test_token_without_tls_is_refused_at_open),
};

int main(int argc, char **argv)
{
    int rv = run_tests(tests, TEST_COUNT(tests), argc, argv);
    if (dir[0] != 0) {
        nqt_remove_dir(dir);
    }
    return rv;
}
