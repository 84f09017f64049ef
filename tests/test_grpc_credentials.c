/*
 * What only gRPC does with credentials: the name a client expects of the
 * server, anchors and keys read at nq_open, and a grpc server of another
 * kind that refuses a client in its handshake.  Client certificates, which
 * TCP takes too, are in test_credentials.c (run with "grpc").
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

static const struct test_case tests[] = {
    TEST(test_unreadable_anchors_and_a_wrong_client_key_fail_at_open),
    TEST(test_server_name_decides_which_certificate_is_accepted),
    TEST(test_refusal_in_a_grpc_handshake_ends_the_attempts),
};

int main(int argc, char **argv)
{
    int rv = run_tests(tests, TEST_COUNT(tests), argc, argv);
    if (dir[0] != 0) {
        nqt_remove_dir(dir);
    }
    return rv;
}
