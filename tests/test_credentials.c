/*
 * TLS credentials over TCP, and over gRPC (run with "grpc"): a server that
 * asks clients for certificates, clients that present them, trust anchors
 * from a file, a directory or memory, what each side learns of the other
 * (nq_peer_identity, the admission callback), and the error a refused side
 * sees (NQ_EAUTH) without waiting for a timeout.  The credential options
 * themselves are checked once (TEST_TCP); test_grpc_credentials.c has what
 * only gRPC does.
 */
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

static nq_protocol proto = NQ_TCP;
static char dir[64];

static int make_certificates(void)
{
    return dir[0] != 0 ? 0 : nqt_make_credentials(dir, "nqcred");
}

static const char *path(const char *name, const char *ext)
{
    return nqt_path(dir, name, ext);
}

/* A server with the authority's server certificate that asks clients for
 * theirs (auth 0, 1 or 2). */
static nq_comm *server_with(int auth)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_comm *s = NULL;
    if (nq_opts_set_tls_identity(o, path("server", "key"), path("server", "pem"), 0) ==
            NQ_OK &&
        nq_opts_set_tls_trust(o, path("ca", "pem"), NULL, NULL) == NQ_OK &&
        nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, auth) == NQ_OK) {
        nq_open(proto, NQ_SERVER, o, &s);
    }
    nq_opts_free(o);
    return s;
}

/* A client trusting the authority and presenting name's certificate (NULL:
 * none). */
static nq_comm *client_as(nq_comm *s, const char *name, const nq_id *id)
{
    nq_opts *o = nqt_opts("127.0.0.1", nqt_port(s), id);
    nq_comm *c = NULL;
    int rv = nq_opts_set_tls(o, NULL, path("ca", "pem"));
    if (rv == NQ_OK && name != NULL) {
        rv = nq_opts_set_tls_identity(o, path(name, "key"), path(name, "pem"), 0);
    }
    if (rv == NQ_OK) {
        nq_open(proto, NQ_CLIENT, o, &c);
    }
    nq_opts_free(o);
    return c;
}

/* A client presenting name's certificate (NULL: none) to a server asking
 * with auth is refused at once: it fails with NQ_EAUTH, the server counts a
 * TLS error, lists no peer, and goes on serving a client it trusts. */
static int expect_refused(int auth, const char *name)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = server_with(auth);
    CHECK(s != NULL);
    nq_comm *c = client_as(s, name, NULL);
    CHECK(c != NULL);
    int64_t start = nqt_now_ms();
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_EAUTH);
    CHECK(nqt_now_ms() - start < REFUSAL_MS);
    CHECK(nqt_wait_stat(s, NQ_STAT_TLS_ERRORS, 1) == 0);
    size_t count = 9;
    CHECK_OK(nq_peers(s, NULL, 0, &count));
    CHECK(count == 0);
    nq_destroy(c);
    nq_id cid;
    CHECK_OK(nq_id_random(&cid));
    c = client_as(s, "client-a", &cid);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(strncmp(nqt_identity(s, &cid), "CN=client-a\n", 12) == 0);
    CHECK(nqt_stat(s, NQ_STAT_TLS_ERRORS) == 1);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_required_client_certificate_serves_a_trusted_client_and_names_it(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = server_with(2);
    CHECK(s != NULL);
    nq_id cid;
    CHECK_OK(nq_id_random(&cid));
    nq_comm *c = client_as(s, "client-a", &cid);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(strcmp(nqt_identity(s, &cid), "CN=client-a\nDNS:client-a.example\nIP:127.0.0.1") == 0);
    nq_id sid;
    CHECK_OK(nq_server_id(c, &sid));
    CHECK(strcmp(nqt_identity(c, &sid), "CN=server\nDNS:localhost\nIP:127.0.0.1") == 0);
    /* A short buffer is cut, the length is the whole. */
    char small[4];
    size_t len = 0;
    CHECK_OK(nq_peer_identity(s, &cid, small, sizeof(small), &len));
    CHECK(strcmp(small, "CN=") == 0 && len == strlen("CN=client-a\nDNS:client-a.example\n"
                                                     "IP:127.0.0.1"));
    CHECK_OK(nq_peer_identity(s, &cid, NULL, 0, &len));
    nq_id stranger;
    CHECK_OK(nq_id_random(&stranger));
    CHECK_RC(nq_peer_identity(s, &stranger, small, sizeof(small), &len), NQ_ENOPEER);
    CHECK_RC(nq_peer_identity(s, &cid, NULL, 4, &len), NQ_EINVAL);
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

static int test_required_client_certificate_refuses_a_client_without_one(void)
{
    return expect_refused(2, NULL);
}

static int test_untrusted_client_certificate_is_refused(void)
{
    return expect_refused(1, "rogue");
}

static int test_optional_client_certificate_serves_clients_with_and_without(void)
{
    CHECK(make_certificates() == 0);
    nq_comm *s = server_with(1);
    CHECK(s != NULL);
    nq_id anon_id, a_id;
    CHECK_OK(nq_id_random(&anon_id));
    CHECK_OK(nq_id_random(&a_id));
    nq_comm *anon = client_as(s, NULL, &anon_id);
    nq_comm *a = client_as(s, "client-a", &a_id);
    CHECK(anon != NULL && a != NULL);
    CHECK(nqt_round_trip(s, anon) == 0);
    CHECK(nqt_round_trip(s, a) == 0);
    CHECK(strcmp(nqt_identity(s, &anon_id), "") == 0);
    CHECK(strncmp(nqt_identity(s, &a_id), "CN=client-a\n", 12) == 0);
    nq_destroy(anon);
    nq_destroy(a);
    nq_destroy(s);
    return 0;
}

/* Keys and anchors given as PEM text and as a hashed directory work as
 * files do, and (over TCP) TLS 1.3 can be made the lowest version. */
static int test_credentials_from_memory_and_a_directory(void)
{
    CHECK(make_certificates() == 0);
    char *server_key = nqt_slurp(path("server", "key"));
    char *server_cert = nqt_slurp(path("server", "pem"));
    char *client_key = nqt_slurp(path("client-a", "key"));
    char *client_cert = nqt_slurp(path("client-a", "pem"));
    char *ca = nqt_slurp(path("ca", "pem"));
    CHECK(server_key && server_cert && client_key && client_cert && ca);
    char anchors[96];
    snprintf(anchors, sizeof(anchors), "%s/anchors", dir);

    nq_opts *so = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_tls_identity(so, server_key, server_cert, 1));
    CHECK_OK(nq_opts_set_tls_trust(so, NULL, anchors, NULL));
    CHECK_OK(nq_opts_set_int(so, NQ_OPT_TLS_CLIENT_AUTH, 2));
    if (proto == NQ_TCP) {
        CHECK_OK(nq_opts_set_int(so, NQ_OPT_TLS_MIN_VERSION, 13));
    }
    nq_comm *s = NULL;
    CHECK_OK(nq_open(proto, NQ_SERVER, so, &s));
    nq_opts_free(so);

    nq_id cid;
    CHECK_OK(nq_id_random(&cid));
    nq_opts *co = nqt_opts("127.0.0.1", nqt_port(s), &cid);
    CHECK_OK(nq_opts_set_tls_identity(co, client_key, client_cert, 1));
    CHECK_OK(nq_opts_set_tls_trust(co, NULL, NULL, ca));
    nq_comm *c = NULL;
    CHECK_OK(nq_open(proto, NQ_CLIENT, co, &c));
    nq_opts_free(co);
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK(strncmp(nqt_identity(s, &cid), "CN=client-a\n", 12) == 0);
    nq_destroy(c);
    nq_destroy(s);
    free(server_key);
    free(server_cert);
    free(client_key);
    free(client_cert);
    free(ca);
    return 0;
}

static int test_credential_options_are_checked(void)
{
    CHECK(make_certificates() == 0);
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_RC(nq_opts_set_tls_identity(o, NULL, "x", 0), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_identity(o, "x", "", 0), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_identity(o, "x", "y", 2), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_trust(o, NULL, NULL, NULL), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_trust(o, "", NULL, NULL), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, 3), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_TLS_MIN_VERSION, 11), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_TLS_MIN_VERSION, 14), NQ_EINVAL);
    /* Checking client certificates needs anchors to check them against. */
    CHECK_OK(nq_opts_set_tls(o, path("server", "key"), path("server", "pem")));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, 2));
    nq_comm *c = NULL;
    CHECK_RC(nq_open(proto, NQ_SERVER, o, &c), NQ_EINVAL);
    /* A key that does not fit the certificate fails at open. */
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, 0));
    CHECK_OK(nq_opts_set_tls_identity(o, path("rogue", "key"), path("server", "pem"), 0));
    CHECK_RC(nq_open(proto, NQ_SERVER, o, &c), NQ_ETLS);
    CHECK_OK(nq_opts_set_tls_identity(o, "not a key", "not a certificate", 1));
    CHECK_RC(nq_open(proto, NQ_SERVER, o, &c), NQ_ETLS);
    nq_opts_free(o);
    CHECK(strcmp(nq_strerror(NQ_EAUTH), "unknown error") != 0);
    return 0;
}

static int test_login_and_token_options_are_checked(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_RC(nq_opts_set_login(o, NULL, "pw"), NQ_EINVAL);
    CHECK_RC(nq_opts_set_login(o, "", "pw"), NQ_EINVAL);
    CHECK_OK(nq_opts_set_login(o, "user", NULL));
    CHECK_OK(nq_opts_set_login(o, "user", "pw"));
    CHECK_RC(nq_opts_set_token(o, ""), NQ_EINVAL);
    CHECK_RC(nq_opts_set_token(o, "two words"), NQ_EINVAL);
    CHECK_RC(nq_opts_set_token(o, "line\n"), NQ_EINVAL);
    CHECK_OK(nq_opts_set_token(o, "abc.DEF-123_~+/="));
    CHECK_RC(nq_opts_accept_token(o, "tok", "bad\tname"), NQ_EINVAL);
    CHECK_RC(nq_opts_accept_token(o, "tok en", "name"), NQ_EINVAL);
    CHECK_OK(nq_opts_accept_token(o, "tok", "first"));
    CHECK_OK(nq_opts_accept_token(o, "tok", "second"));
    CHECK_OK(nq_opts_accept_token(o, "other", ""));
    CHECK_RC(nq_opts_set_tls_server_name(o, ""), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_server_name(o, "a b"), NQ_EINVAL);
    CHECK_OK(nq_opts_set_tls_server_name(o, "server.example"));
    CHECK_RC(nq_opts_set_tls_alpn(o, ""), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_alpn(o, "h2,,mqtt"), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls_alpn(o, "mqtt,"), NQ_EINVAL);
    CHECK_OK(nq_opts_set_tls_alpn(o, "x-amzn-mqtt-ca,mqtt"));
    CHECK_RC(nq_opts_set_mqtt_client_id(o, ""), NQ_EINVAL);
    CHECK_OK(nq_opts_set_mqtt_client_id(o, "device-7"));
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_MQTT_MAX_PUBLISH, 1023), NQ_EINVAL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_MAX_PUBLISH, 0));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_MAX_PUBLISH, 131072));
    CHECK_RC(nq_opts_set_secret_fn(NULL, NULL, NULL), NQ_EINVAL);
    nq_opts_free(o); /* everything it copied is freed (ASan's leak check) */
    return 0;
}

/* An option a transport cannot use fails nq_open, naming it, rather than
 * being ignored. */
struct refusal {
    int protocol;
    int purpose;
    int (*set)(nq_opts *o);
};

static int with_login(nq_opts *o) { return nq_opts_set_login(o, "user", "pw"); }
static int with_token(nq_opts *o) { return nq_opts_set_token(o, "token"); }
static int with_alpn(nq_opts *o) { return nq_opts_set_tls_alpn(o, "mqtt"); }
static int with_client_id(nq_opts *o) { return nq_opts_set_mqtt_client_id(o, "device"); }
static int with_server_name(nq_opts *o) { return nq_opts_set_tls_server_name(o, "x.example"); }
static int with_client_auth(nq_opts *o)
{
    return nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, 1);
}
static int with_accepted(nq_opts *o) { return nq_opts_accept_token(o, "token", "name"); }
static int with_tls13(nq_opts *o) { return nq_opts_set_int(o, NQ_OPT_TLS_MIN_VERSION, 13); }

static int test_each_transport_refuses_what_it_cannot_use(void)
{
    const struct refusal cases[] = {
        {NQ_TCP, NQ_CLIENT, with_login},      {NQ_TCP, NQ_CLIENT, with_token},
        {NQ_TCP, NQ_CLIENT, with_alpn},       {NQ_TCP, NQ_CLIENT, with_client_id},
        {NQ_TCP, NQ_SERVER, with_accepted},   {NQ_MQTT, NQ_CLIENT, with_token},
        {NQ_MQTT, NQ_SERVER, with_accepted},  {NQ_MQTT, NQ_CLIENT, with_server_name},
        {NQ_MQTT, NQ_SERVER, with_client_auth}, {NQ_GRPC, NQ_CLIENT, with_login},
        {NQ_GRPC, NQ_CLIENT, with_alpn},      {NQ_GRPC, NQ_CLIENT, with_client_id},
        {NQ_GRPC, NQ_SERVER, with_tls13},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
        CHECK_OK(cases[i].set(o));
        nq_comm *c = NULL;
        int rv = nq_open(cases[i].protocol, cases[i].purpose, o, &c);
        if (rv != NQ_ENOTSUP) {
            fprintf(stderr, "case %zu: nq_open gave %d, not NQ_ENOTSUP\n", i, rv);
        }
        CHECK_RC(rv, NQ_ENOTSUP);
        CHECK(c == NULL);
        nq_opts_free(o);
    }
    return 0;
}

/* Without TLS there is nothing to tell: the identity is empty. */
static int test_plain_peers_have_an_empty_identity(void)
{
    nq_comm *s = NULL;
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_open(proto, NQ_SERVER, o, &s));
    nq_opts_free(o);
    nq_id cid;
    CHECK_OK(nq_id_random(&cid));
    nq_comm *c = NULL;
    o = nqt_opts("127.0.0.1", nqt_port(s), &cid);
    CHECK_OK(nq_open(proto, NQ_CLIENT, o, &c));
    nq_opts_free(o);
    CHECK(nqt_round_trip(s, c) == 0);
    size_t len = 99;
    char buf[8] = "x";
    CHECK_OK(nq_peer_identity(s, &cid, buf, sizeof(buf), &len));
    CHECK(len == 0 && buf[0] == '\0');
    nq_destroy(c);
    nq_destroy(s);
    return 0;
}

/* ---- admission ---------------------------------------------------------------- */

/* An admission callback that refuses one id unless its identity begins
 * with a given text, and remembers what it was shown last. */
typedef struct gate {
    nq_id id;
    const char *needs; /* NULL: the id is refused whatever it shows */
    int calls;
    char address[128];
    char identity[512];
} gate;

static int check_gate(void *ctx, const nq_admission *who)
{
    gate *g = ctx;
    g->calls++;
    snprintf(g->address, sizeof(g->address), "%s", who->address);
    snprintf(g->identity, sizeof(g->identity), "%s", who->identity);
    if (!nq_id_equal(&who->peer, &g->id)) {
        return NQ_OK;
    }
    return g->needs != NULL && strncmp(who->identity, g->needs, strlen(g->needs)) == 0 ? NQ_OK
                                                                                     : NQ_EAUTH;
}

static int test_admission_refuses_a_peer_and_tells_it_why(void)
{
    gate g = {.needs = NULL};
    CHECK_OK(nq_id_random(&g.id));
    nqt_recorder events;
    nqt_recorder_init(&events);
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_admission(o, check_gate, &g));
    CHECK_OK(nq_opts_set_events(o, nqt_record, &events));
    nq_comm *s = NULL;
    CHECK_OK(nq_open(proto, NQ_SERVER, o, &s));
    nq_opts_free(o);

    nq_comm *refused = NULL;
    o = nqt_opts("127.0.0.1", nqt_port(s), &g.id);
    CHECK_OK(nq_open(proto, NQ_CLIENT, o, &refused));
    nq_opts_free(o);
    nq_future *f = NULL;
    nq_chunk ch = {"never", 5};
    CHECK_OK(nq_put(refused, &ch, 1, NULL, 0, &f));
    nq_msg *m = NULL;
    CHECK_RC(nq_get(refused, WAIT_MS, &m), NQ_EAUTH);
    /* Written before the refusal (its future says so), never delivered. */
    int put_rc = nq_future_wait(f, WAIT_MS);
    CHECK(put_rc == NQ_OK || put_rc == NQ_EAUTH);
    nq_future_free(f);
    CHECK(nqt_wait_stat(s, NQ_STAT_REFUSED, 1) == 0);
    CHECK(strncmp(g.address, "127.0.0.1:", 10) == 0 && strcmp(g.identity, "") == 0);

    nq_id other;
    CHECK_OK(nq_id_random(&other));
    nq_comm *welcome = NULL;
    o = nqt_opts("127.0.0.1", nqt_port(s), &other);
    CHECK_OK(nq_open(proto, NQ_CLIENT, o, &welcome));
    nq_opts_free(o);
    CHECK(nqt_round_trip(s, welcome) == 0);
    /* The refused peer's message never arrived, it was never listed, and
     * no event told of it. */
    CHECK_RC(nq_get(s, 100, &m), NQ_ETIMEDOUT);
    size_t count = 0;
    CHECK_OK(nq_peers(s, NULL, 0, &count));
    CHECK(count == 1 && g.calls == 2);
    CHECK(nqt_events(&events) == 1);
    CHECK(nqt_is_event(&events, 0, NQ_EVENT_CONNECTED, &other, 0) == 0);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 1 && nqt_stat(s, NQ_STAT_TLS_ERRORS) == 0);
    nq_destroy(refused);
    nq_destroy(welcome);
    nq_destroy(s);
    return 0;
}

/* With client certificates, the callback binds an id to an identity: a
 * client without client-a's certificate cannot claim client-a's id. */
static int test_admission_binds_an_id_to_a_certificate(void)
{
    CHECK(make_certificates() == 0);
    gate g = {.needs = "CN=client-a\n"};
    CHECK_OK(nq_id_random(&g.id));
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_tls_identity(o, path("server", "key"), path("server", "pem"), 0));
    CHECK_OK(nq_opts_set_tls_trust(o, path("ca", "pem"), NULL, NULL));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_TLS_CLIENT_AUTH, 1));
    CHECK_OK(nq_opts_set_admission(o, check_gate, &g));
    nq_comm *s = NULL;
    CHECK_OK(nq_open(proto, NQ_SERVER, o, &s));
    nq_opts_free(o);

    nq_comm *impostor = client_as(s, NULL, &g.id);
    CHECK(impostor != NULL);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(impostor, WAIT_MS, &m), NQ_EAUTH);
    CHECK(nqt_wait_stat(s, NQ_STAT_REFUSED, 1) == 0);
    nq_comm *real = client_as(s, "client-a", &g.id);
    CHECK(real != NULL);
    CHECK(nqt_round_trip(s, real) == 0);
    CHECK(strncmp(g.identity, "CN=client-a\n", 12) == 0);
    CHECK(nqt_stat(s, NQ_STAT_REFUSED) == 1);
    nq_destroy(impostor);
    nq_destroy(real);
    nq_destroy(s);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_required_client_certificate_serves_a_trusted_client_and_names_it),
    TEST(test_required_client_certificate_refuses_a_client_without_one),
    TEST(test_untrusted_client_certificate_is_refused),
    TEST(test_optional_client_certificate_serves_clients_with_and_without),
    TEST(test_credentials_from_memory_and_a_directory),
    TEST(test_credential_options_are_checked),
    TEST_TCP(test_login_and_token_options_are_checked),
    TEST_TCP(test_each_transport_refuses_what_it_cannot_use),
    TEST(test_plain_peers_have_an_empty_identity),
    TEST(test_admission_refuses_a_peer_and_tells_it_why),
    TEST(test_admission_binds_an_id_to_a_certificate),
};

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "tcp") == 0 || strcmp(argv[1], "grpc") == 0)) {
        proto = strcmp(argv[1], "grpc") == 0 ? NQ_GRPC : NQ_TCP;
        argc--;
        argv++;
    }
    int rv = run_tests_for(tests, TEST_COUNT(tests), argc, argv, proto == NQ_TCP);
    if (dir[0] != 0) {
        nqt_remove_dir(dir);
    }
    return rv;
}
