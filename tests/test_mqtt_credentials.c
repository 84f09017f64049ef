/*
 * MQTT peers with credentials, against a mosquitto set up as a managed
 * broker would be: logins from a password file, client certificates whose
 * subject is the username, and ACL patterns that bind each client's topics
 * to its login (the secure profile of docs/credentials.md).  Also the
 * broker-facing options: client id, largest publish, ALPN.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nqt_broker broker;
static char dir[64];
static char global[1024];
static char tls[512];

/* A directory the broker's user can read. */
static int make_dir(void)
{
    CHECK(nqt_temp_dir(dir, "nqmqcred") == 0);
    CHECK(chmod(dir, 0755) == 0);
    return 0;
}

static int run(const char *cmd)
{
    int rv = system(cmd);
    if (rv != 0) {
        fprintf(stderr, "failed (%d): %s\n", rv, cmd);
    }
    return rv == 0 ? 0 : -1;
}

/* Adds user:password to dir/passwords (made by the first call). */
static int add_login(const char *user, const char *password)
{
    char file[128], cmd[512];
    snprintf(file, sizeof(file), "%s/passwords", dir);
    snprintf(cmd, sizeof(cmd), "mosquitto_passwd %s -b '%s' '%s' '%s' && chmod 644 '%s'",
             access(file, F_OK) == 0 ? "" : "-c", file, user, password, file);
    CHECK(run(cmd) == 0);
    return 0;
}

/* The secure profile's ACL: the server (user "server") reads every
 * client's c2s topic and writes every s2c topic; each other login may write
 * only c2s/<its login> and read only s2c/<its login>: a client's login is
 * its id in hex.  Everyone leaves and reads wills. */
static int write_acl(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/acl", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "user server\ntopic read c2s/+\ntopic write s2c/+\n"
               "topic read nq/lost/+\ntopic write nq/lost/+\ntopic readwrite nq/ack/+\n\n"
               "pattern write c2s/%%u\npattern read s2c/%%u\n"
               "pattern write nq/lost/%%u\npattern read nq/lost/+\n"
               "pattern readwrite nq/ack/%%u\n");
    fclose(f);
    CHECK(chmod(path, 0644) == 0);
    return 0;
}

static nq_opts *login_opts(uint16_t port, const nq_id *id, const char *user, const char *password)
{
    nq_opts *o = nqt_opts("127.0.0.1", port, id);
    nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 4000);
    if (user != NULL) {
        nq_opts_set_login(o, user, password);
    }
    return o;
}

/* nq_open's result, whatever it is (the communicator closed again). */
static int open_result(nq_purpose purpose, nq_opts *o)
{
    nq_comm *c = NULL;
    int rv = nq_open(NQ_MQTT, purpose, o, &c);
    nq_opts_free(o);
    if (c != NULL) {
        nq_destroy(c);
    }
    return rv;
}

static void hex_of(const nq_id *id, char out[33])
{
    char text[NQ_ID_STRLEN];
    nq_id_format(id, text, sizeof(text));
    size_t n = 0;
    for (const char *p = text; *p != '\0' && n < 32; p++) {
        if (*p != '-') {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

struct secret {
    const char *password;
    int calls;
    int fail;
};

static int give_secret(void *ctx, char *buf, size_t size, size_t *len)
{
    struct secret *s = ctx;
    __atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
    if (s->fail) {
        return -1;
    }
    size_t n = strlen(s->password);
    if (n > size) {
        return -1;
    }
    memcpy(buf, s->password, n);
    *len = n;
    return NQ_OK;
}

static int test_logins_are_checked_by_the_broker(void)
{
    CHECK(make_dir() == 0);
    CHECK(add_login("server", "server-pw") == 0);
    snprintf(global, sizeof(global), "allow_anonymous false\npassword_file %s/passwords", dir);
    CHECK(add_login("alice", "alice-pw") == 0);
    CHECK(nqt_broker_start_with(&broker, NULL, NULL, global, NULL) == 0);

    nq_comm *s = nqt_open(NQ_MQTT, NQ_SERVER, login_opts(broker.port, NULL, "server", "server-pw"));
    nq_comm *c = nqt_open(NQ_MQTT, NQ_CLIENT, login_opts(broker.port, NULL, "alice", "alice-pw"));
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);

    /* A wrong password, an unknown user and no login at all are refused
     * at once, with the error that says so. */
    for (int i = 0; i < 3; i++) { /* the answer must not depend on timing */
        int64_t t0 = nqt_now_ms();
        CHECK_RC(open_result(NQ_CLIENT, login_opts(broker.port, NULL, "alice", "wrong")),
                 NQ_EAUTH);
        CHECK(nqt_now_ms() - t0 < 3000);
    }
    CHECK_RC(open_result(NQ_CLIENT, login_opts(broker.port, NULL, "mallory", "x")), NQ_EAUTH);
    CHECK_RC(open_result(NQ_SERVER, login_opts(broker.port, NULL, NULL, NULL)), NQ_EAUTH);

    /* The secret callback gives the password of each attempt. */
    struct secret sec = {"alice-pw", 0, 0};
    nq_opts *o = login_opts(broker.port, NULL, "alice", NULL);
    CHECK_OK(nq_opts_set_secret_fn(o, give_secret, &sec));
    nq_comm *c2 = nqt_open(NQ_MQTT, NQ_CLIENT, o);
    CHECK(c2 != NULL);
    CHECK(sec.calls == 1);
    CHECK(nqt_round_trip(s, c2) == 0);
    sec.fail = 1;
    o = login_opts(broker.port, NULL, "alice", "alice-pw");
    CHECK_OK(nq_opts_set_secret_fn(o, give_secret, &sec));
    CHECK_RC(open_result(NQ_CLIENT, o), NQ_EAUTH);
    CHECK(sec.calls == 2);

    /* The refusals disturbed nobody. */
    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c2));
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c2);
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    nqt_remove_dir(dir);
    return 0;
}

/* With the ACL patterns, a third party with a login of its own can neither
 * speak for a client nor listen to it. */
static int test_acl_patterns_stop_foreign_publishes(void)
{
    CHECK(make_dir() == 0);
    nq_id alice_id, mallory_id;
    char alice[33], mallory[33];
    nq_id_random(&alice_id);
    nq_id_random(&mallory_id);
    hex_of(&alice_id, alice);
    hex_of(&mallory_id, mallory);
    CHECK(add_login("server", "server-pw") == 0);
    /* Client ids become logins, so no login can take another's connection. */
    snprintf(global, sizeof(global),
             "allow_anonymous false\npassword_file %s/passwords\nacl_file %s/acl\n"
             "use_username_as_clientid true",
             dir, dir);
    CHECK(add_login(alice, "alice-pw") == 0);
    CHECK(add_login(mallory, "mallory-pw") == 0);
    CHECK(write_acl() == 0);
    CHECK(nqt_broker_start_with(&broker, NULL, NULL, global, NULL) == 0);

    nq_comm *s = nqt_open(NQ_MQTT, NQ_SERVER, login_opts(broker.port, NULL, "server", "server-pw"));
    nq_comm *c = nqt_open(NQ_MQTT, NQ_CLIENT, login_opts(broker.port, &alice_id, alice, "alice-pw"));
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);

    /* Mallory, logged in, publishes garbage on Alice's topic: the broker
     * drops it, the server never sees it. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "mosquitto_pub -h 127.0.0.1 -p %u -u %s -P mallory-pw -q 1 -t c2s/%s -m 'not a frame'",
             (unsigned)broker.port, mallory, alice);
    CHECK(run(cmd) == 0);
    /* A libnq client claiming Alice's id with Mallory's login: its INI is
     * dropped like the garbage (mosquitto grants the subscription to
     * Alice's answers, and never delivers them), so it is never served. */
    nq_opts *o = login_opts(broker.port, &alice_id, mallory, "mallory-pw");
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, 500));
    nq_comm *fake = nqt_open(NQ_MQTT, NQ_CLIENT, o);
    CHECK(fake != NULL);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(fake, 1000, &m), NQ_ETIMEDOUT);
    nq_destroy(fake);
    CHECK(nqt_stat(s, NQ_STAT_PROTOCOL_ERRORS) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK(nqt_round_trip(s, c) == 0);

    /* The same publish with Alice's login does reach the server (and
     * breaks her session): the check above is the ACL's doing. */
    snprintf(cmd, sizeof(cmd),
             "mosquitto_pub -h 127.0.0.1 -p %u -u %s -P alice-pw -i other-%s -q 1 -t c2s/%s "
             "-m 'not a frame'",
             (unsigned)broker.port, alice, alice, alice);
    CHECK(run(cmd) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_PROTOCOL_ERRORS, 1) == 0);

    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    nqt_remove_dir(dir);
    return 0;
}

/* require_certificate with use_identity_as_username: the certificate is
 * the login, and the ACL patterns bind it to the client's topics. */
static int test_client_certificates_log_in(void)
{
    CHECK(make_dir() == 0);
    nq_id alice_id;
    char alice[33];
    nq_id_random(&alice_id);
    hex_of(&alice_id, alice);
    CHECK(nqt_make_ca(dir, "ca") == 0);
    CHECK(nqt_make_signed_cert(dir, "broker", "ca", "broker", "DNS:localhost,IP:127.0.0.1") == 0);
    CHECK(nqt_make_signed_cert(dir, "server", "ca", "server", "DNS:server.example") == 0);
    CHECK(nqt_make_signed_cert(dir, "alice", "ca", alice, "DNS:alice.example") == 0);
    CHECK(nqt_make_cert(dir, "rogue", "DNS:alice.example") == 0);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "chmod 644 '%s'/*.key", dir);
    CHECK(run(cmd) == 0);
    CHECK(write_acl() == 0);
    snprintf(global, sizeof(global), "allow_anonymous false\nacl_file %s/acl", dir);
    snprintf(tls, sizeof(tls), "cafile %s/ca.pem\nrequire_certificate true\nuse_identity_as_username true",
             dir);
    char path[4][128];
    snprintf(path[0], sizeof(path[0]), "%s/broker.pem", dir);
    snprintf(path[1], sizeof(path[1]), "%s/broker.key", dir);
    CHECK(nqt_broker_start_with(&broker, path[0], path[1], global, tls) == 0);

    snprintf(path[0], sizeof(path[0]), "%s/ca.pem", dir);
    snprintf(path[1], sizeof(path[1]), "%s/server.key", dir);
    snprintf(path[2], sizeof(path[2]), "%s/server.pem", dir);
    nq_opts *o = login_opts(broker.tls_port, NULL, NULL, NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, path[0], NULL, NULL));
    CHECK_OK(nq_opts_set_tls_identity(o, path[1], path[2], 0));
    nq_comm *s = nqt_open(NQ_MQTT, NQ_SERVER, o);
    CHECK(s != NULL);

    /* Alice's identity given as PEM text, as from a mounted secret. */
    snprintf(path[1], sizeof(path[1]), "%s/alice.key", dir);
    snprintf(path[2], sizeof(path[2]), "%s/alice.pem", dir);
    char *key = NULL, *cert = NULL, *ca = NULL;
    size_t cap = 0;
    FILE *f;
    CHECK((f = fopen(path[1], "r")) != NULL && getdelim(&key, &cap, '\0', f) > 0 && !fclose(f));
    cap = 0;
    CHECK((f = fopen(path[2], "r")) != NULL && getdelim(&cert, &cap, '\0', f) > 0 && !fclose(f));
    cap = 0;
    CHECK((f = fopen(path[0], "r")) != NULL && getdelim(&ca, &cap, '\0', f) > 0 && !fclose(f));
    o = login_opts(broker.tls_port, &alice_id, NULL, NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, NULL, NULL, ca));
    CHECK_OK(nq_opts_set_tls_identity(o, key, cert, 1));
    nq_comm *c = nqt_open(NQ_MQTT, NQ_CLIENT, o);
    CHECK(c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);

    /* Without a certificate, or with one the broker does not trust: the
     * broker's refusal, quickly. */
    o = login_opts(broker.tls_port, NULL, NULL, NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, path[0], NULL, NULL));
    int64_t t0 = nqt_now_ms();
    CHECK_RC(open_result(NQ_CLIENT, o), NQ_EAUTH);
    CHECK(nqt_now_ms() - t0 < 4000);
    snprintf(path[1], sizeof(path[1]), "%s/rogue.key", dir);
    snprintf(path[2], sizeof(path[2]), "%s/rogue.pem", dir);
    o = login_opts(broker.tls_port, &alice_id, NULL, NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, path[0], NULL, NULL));
    CHECK_OK(nq_opts_set_tls_identity(o, path[1], path[2], 0));
    CHECK_RC(open_result(NQ_CLIENT, o), NQ_EAUTH);

    CHECK(nqt_round_trip(s, c) == 0);
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    free(key);
    free(cert);
    free(ca);
    nqt_broker_stop(&broker, SIGTERM);
    nqt_remove_dir(dir);
    return 0;
}

/* A server known by another client id cannot be pushed off the broker by
 * someone connecting with its hex id, which every client sees. */
static int test_client_id_keeps_the_server_on_the_broker(void)
{
    CHECK(nqt_broker_start(&broker, NULL, NULL) == 0);
    nq_id server_id;
    char server[33];
    nq_id_random(&server_id);
    hex_of(&server_id, server);
    nq_opts *o = login_opts(broker.port, &server_id, NULL, NULL);
    CHECK_OK(nq_opts_set_mqtt_client_id(o, "server-7f3a9c"));
    nq_comm *s = nqt_open(NQ_MQTT, NQ_SERVER, o);
    nq_comm *c = nqt_open(NQ_MQTT, NQ_CLIENT, login_opts(broker.port, NULL, NULL, NULL));
    CHECK(s != NULL && c != NULL);
    CHECK(nqt_round_trip(s, c) == 0);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -i %s -t nobody -m x",
             (unsigned)broker.port, server);
    CHECK(run(cmd) == 0);
    usleep(300 * 1000);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    CHECK(nqt_round_trip(s, c) == 0);
    /* The client id is the broker's business: topics keep the id. */
    nq_id seen;
    CHECK_OK(nq_server_id(c, &seen));
    CHECK(nq_id_equal(&seen, &server_id));
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* A broker that drops larger packets: with NQ_OPT_MQTT_MAX_PUBLISH every
 * slice fits, and a large message still arrives whole. */
static int test_largest_publish_fits_the_broker(void)
{
    CHECK(nqt_broker_start_with(&broker, NULL, NULL, "allow_anonymous true\nmax_packet_size 4096",
                                NULL) == 0);
    nq_opts *o = login_opts(broker.port, NULL, NULL, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_MAX_PUBLISH, 4096));
    nq_comm *s = nqt_open(NQ_MQTT, NQ_SERVER, o);
    o = login_opts(broker.port, NULL, NULL, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_MQTT_MAX_PUBLISH, 4096));
    nq_comm *c = nqt_open(NQ_MQTT, NQ_CLIENT, o);
    CHECK(s != NULL && c != NULL);
    size_t len = 300 * 1000 + 7;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 13 + (i >> 12));
    }
    CHECK_OK(nqt_put_wait(c, buf, len, NULL, 0));
    CHECK(nqt_expect(s, buf, len, NULL) == 0);
    CHECK(nqt_round_trip(s, c) == 0);
    nq_destroy(c);
    nq_destroy(s);
    free(buf);
    nqt_broker_stop(&broker, SIGTERM);
    return 0;
}

/* A TLS listener that records the ALPN protocols a client offers, then
 * hangs up (it is no broker). */
struct alpn_listener {
    int fd;
    uint16_t port;
    SSL_CTX *ctx;
    unsigned char offered[256];
    unsigned offered_len;
};

static int record_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)out;
    (void)outlen;
    struct alpn_listener *l = arg;
    l->offered_len = inlen < sizeof(l->offered) ? inlen : sizeof(l->offered);
    memcpy(l->offered, in, l->offered_len);
    return SSL_TLSEXT_ERR_NOACK;
}

static void *serve_alpn(void *arg)
{
    struct alpn_listener *l = arg;
    int fd = accept(l->fd, NULL, NULL);
    if (fd >= 0) {
        SSL *ssl = SSL_new(l->ctx);
        SSL_set_fd(ssl, fd);
        SSL_accept(ssl);
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static int test_alpn_protocols_are_offered(void)
{
    CHECK(make_dir() == 0);
    CHECK(nqt_make_cert(dir, "broker", "DNS:localhost,IP:127.0.0.1") == 0);
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/broker.pem", dir);
    snprintf(key, sizeof(key), "%s/broker.key", dir);
    struct alpn_listener l = {0};
    l.ctx = SSL_CTX_new(TLS_server_method());
    CHECK(l.ctx != NULL);
    CHECK(SSL_CTX_use_certificate_chain_file(l.ctx, cert) == 1);
    CHECK(SSL_CTX_use_PrivateKey_file(l.ctx, key, SSL_FILETYPE_PEM) == 1);
    SSL_CTX_set_alpn_select_cb(l.ctx, record_alpn, &l);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    l.fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l.fd >= 0 && bind(l.fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l.fd, 4) == 0);
    CHECK(getsockname(l.fd, (struct sockaddr *)&a, &alen) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, serve_alpn, &l) == 0);

    nq_opts *o = login_opts(ntohs(a.sin_port), NULL, NULL, NULL);
    CHECK_OK(nq_opts_set_tls_trust(o, cert, NULL, NULL));
    CHECK_OK(nq_opts_set_tls_alpn(o, "x-amzn-mqtt-ca,mqtt"));
    CHECK(open_result(NQ_CLIENT, o) != NQ_OK); /* no broker behind it */
    pthread_join(t, NULL);
    close(l.fd);
    SSL_CTX_free(l.ctx);
    static const unsigned char want[] = "\x0ex-amzn-mqtt-ca\x04mqtt";
    CHECK(l.offered_len == sizeof(want) - 1);
    CHECK(memcmp(l.offered, want, sizeof(want) - 1) == 0);
    nqt_remove_dir(dir);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_logins_are_checked_by_the_broker),
    TEST(test_acl_patterns_stop_foreign_publishes),
    TEST(test_client_certificates_log_in),
    TEST(test_client_id_keeps_the_server_on_the_broker),
    TEST(test_largest_publish_fits_the_broker),
    TEST(test_alpn_protocols_are_offered),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
