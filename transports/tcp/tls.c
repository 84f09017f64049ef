/*
 * TLS for the TCP transport, on OpenSSL 3: the context made at nq_open, and
 * the stream operations a connection swaps in once TLS is attached.
 * Handshakes and records run non-blocking inside the event loop, so a slow
 * peer never stalls another.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "transports/cert_identity.h"
#include "transports/tcp/tcp.h"
#include "transports/tlsinfo.h"

/* Pieces of output per write; small ones are gathered into one record. */
#define MAX_PIECES 256
#define STAGE (16 * 1024)
/* The largest record on the wire (TLS 1.2's bound, above TLS 1.3's). */
#define RECORD_MAX (SSL3_RT_HEADER_LENGTH + SSL3_RT_MAX_ENCRYPTED_LENGTH)
/* OpenSSL's read buffer: two records of the largest size. */
#define READ_AHEAD (2 * RECORD_MAX)

/* Logs OpenSSL's error queue (and clears it) with a leading context. */
static void log_ssl_errors(nq_comm *c, const char *what)
{
    unsigned long e;
    int any = 0;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        nqi_logf(&c->log, NQ_LOG_ERROR, "%s: %s", what, buf);
        any = 1;
    }
    if (!any) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "%s", what);
    }
}

/* Loads a key and certificate chain given as PEM text. */
static int use_identity_pem(SSL_CTX *ctx, const char *key_pem, const char *cert_pem)
{
    int ok = 0;
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    BIO *cb = BIO_new_mem_buf(cert_pem, -1);
    EVP_PKEY *key = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    X509 *leaf = cb != NULL ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    if (key != NULL && leaf != NULL && SSL_CTX_use_certificate(ctx, leaf) == 1 &&
        SSL_CTX_use_PrivateKey(ctx, key) == 1) {
        ok = 1;
        X509 *extra;
        while (ok && (extra = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
            ok = SSL_CTX_add0_chain_cert(ctx, extra) == 1; /* takes extra */
            if (!ok) {
                X509_free(extra);
            }
        }
        ERR_clear_error(); /* the end of the chain reads as an error */
    }
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(kb);
    BIO_free(cb);
    return ok;
}

/* This side's key and chain: nq_opts_set_tls_identity's, else (a server)
 * nq_opts_set_tls's files.  A client without one presents none. */
static int load_identity(nq_comm *c, SSL_CTX *ctx)
{
    const nq_opts *o = &c->opts;
    const char *key = o->id_key != NULL ? o->id_key : o->key_path;
    const char *cert = o->id_key != NULL ? o->id_cert : o->cert_path;
    if (key == NULL || (c->purpose == NQ_CLIENT && o->id_key == NULL)) {
        return NQ_OK;
    }
    int ok = o->id_key != NULL && o->id_pem
                 ? use_identity_pem(ctx, key, cert)
                 : SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 &&
                       SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
    if (!ok || SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_errors(c, "cannot load the private key and certificate chain");
        return NQ_ETLS;
    }
    return NQ_OK;
}

/* Adds every certificate of PEM text to the context's trust store. */
static int trust_pem(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        n += X509_STORE_add_cert(store, x) == 1;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(b);
    return n > 0;
}

/* The anchors that verify the peer: nq_opts_set_tls_trust's, else (a
 * client) nq_opts_set_tls's file or the system's store. */
static int load_trust(nq_comm *c, SSL_CTX *ctx)
{
    const nq_opts *o = &c->opts;
    int ok = 1;
    if (o->ca_file != NULL || o->ca_dir != NULL) {
        ok = SSL_CTX_load_verify_locations(ctx, o->ca_file, o->ca_dir) == 1;
    }
    if (ok && o->ca_pem != NULL) {
        ok = trust_pem(ctx, o->ca_pem);
    }
    if (ok && o->ca_file == NULL && o->ca_dir == NULL && o->ca_pem == NULL &&
        c->purpose == NQ_CLIENT) {
        ok = o->cert_path != NULL ? SSL_CTX_load_verify_locations(ctx, o->cert_path, NULL) == 1
                                  : SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
    if (!ok) {
        log_ssl_errors(c, "cannot load the trusted certificates");
        return NQ_ETLS;
    }
    return NQ_OK;
}

int nqi_tls_ctx_new(nq_comm *c, void **out)
{
    int server = c->purpose == NQ_SERVER;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        log_ssl_errors(c, "cannot create a TLS context");
        return NQ_ENOMEM;
    }
    int lowest = c->opts.ints[NQ_OPT_TLS_MIN_VERSION] == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, lowest);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Peers often close without close_notify; the FIN handshake, not TLS,
     * says whether the session ended cleanly. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Records are read a few at a time, not header and body apart: half the
     * reads.  The buffer holds two full records. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, READ_AHEAD);
    int64_t client_auth = c->opts.ints[NQ_OPT_TLS_CLIENT_AUTH];
    if (load_identity(c, ctx) != NQ_OK) {
        goto fail;
    }
    if ((!server || client_auth > 0) && load_trust(c, ctx) != NQ_OK) {
        goto fail;
    }
    if (!server) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else if (client_auth > 0) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (client_auth == 2
                                                       ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                                       : 0), NULL);
        /* Sessions are not resumed across connections: each one shows its
         * certificate again. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    *out = ctx;
    return NQ_OK;
fail:
    SSL_CTX_free(ctx);
    return NQ_ETLS;
}

void nqi_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- the gate: no read before the urgent byte is known (conn.c) ---- */

static BIO_METHOD *gate_method;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;

static int gate_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    if (!nqi_tcp_urgent_known(BIO_get_data(b))) {
        BIO_set_retry_read(b);
        return -1;
    }
    int n = BIO_read(BIO_next(b), buf, len);
    BIO_copy_next_retry(b);
    return n;
}

static int gate_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    int n = BIO_write(BIO_next(b), buf, len);
    BIO_copy_next_retry(b);
    return n;
}

static long gate_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return BIO_ctrl(BIO_next(b), cmd, num, ptr);
}

static int gate_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void gate_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "nq urgent gate");
    if (m != NULL && (BIO_meth_set_read(m, gate_read) != 1 ||
                      BIO_meth_set_write(m, gate_write) != 1 ||
                      BIO_meth_set_ctrl(m, gate_ctrl) != 1 ||
                      BIO_meth_set_create(m, gate_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    gate_method = m;
}

/* The socket, behind the gate when this side sent an urgent byte (and so
 * looks for the peer's). */
static int bind_socket(SSL *ssl, tcp_conn *t)
{
    if (nqi_tcp_own_urgent(t->s->comm) == 0) {
        return SSL_set_fd(ssl, t->watch.fd) == 1 ? NQ_OK : NQ_ETLS;
    }
    pthread_once(&gate_once, gate_make);
    BIO *sock = BIO_new_socket(t->watch.fd, BIO_NOCLOSE);
    BIO *gate = gate_method != NULL ? BIO_new(gate_method) : NULL;
    if (sock == NULL || gate == NULL) {
        BIO_free(sock);
        BIO_free(gate);
        return NQ_ETLS;
    }
    BIO_set_data(gate, t);
    BIO_push(gate, sock);
    SSL_set_bio(ssl, gate, gate);
    return NQ_OK;
}

int nqi_tls_attach(tcp_conn *t, void *ctx)
{
    nq_comm *c = t->s->comm;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || bind_socket(ssl, t) != NQ_OK) {
        SSL_free(ssl);
        log_ssl_errors(c, "cannot create a TLS connection");
        return NQ_ETLS;
    }
    if (c->purpose == NQ_SERVER) {
        SSL_set_accept_state(ssl);
        t->tls_want = EPOLLIN;
    } else {
        const char *host =
            c->opts.tls_server_name != NULL ? c->opts.tls_server_name : c->opts.host;
        unsigned char addr[16];
        int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                       : SSL_set1_host(ssl, host) && SSL_set_tlsext_host_name(ssl, host);
        if (ok != 1) {
            SSL_free(ssl);
            log_ssl_errors(c, "cannot set the expected server name");
            return NQ_ETLS;
        }
        SSL_set_connect_state(ssl);
        t->tls_want = EPOLLOUT;
    }
    t->ssl = ssl;
    t->ops = &nqi_tls_ops;
    return NQ_OK;
}

int nqi_tls_refusal(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) {
        return 0;
    }
    switch (ERR_GET_REASON(e)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return 1;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return -1; /* ours failed to verify theirs: refused only on a server */
    default:
        return 0;
    }
}

/* A server that refuses a client's certificate under TLS 1.3 does so after
 * the client's handshake is over: its alert may come in just before the
 * reset that the client's first write meets.  Whether it did is in the
 * records already received. */
static int refusal_behind_reset(tcp_conn *t)
{
    if (t->s->comm->purpose != NQ_CLIENT || !SSL_is_init_finished(t->ssl)) {
        return 0;
    }
    uint8_t b;
    size_t n = 0;
    int r = SSL_peek_ex(t->ssl, &b, 1, &n);
    int refused = r != 1 && SSL_get_error(t->ssl, r) == SSL_ERROR_SSL &&
                  nqi_tls_refusal(ERR_peek_last_error()) > 0;
    if (refused) {
        log_ssl_errors(t->s->comm, "TLS: the server refused this client's certificate");
    }
    ERR_clear_error();
    return refused;
}

/* Maps an OpenSSL result to "would block" (recording the direction), EOF,
 * or an error. */
static long classify(tcp_conn *t, int ret, const char *what)
{
    nq_comm *c = t->s->comm;
    int e = SSL_get_error(t->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        t->tls_want = EPOLLIN;
        return NQI_WOULDBLOCK;
    case SSL_ERROR_WANT_WRITE:
        t->tls_want = EPOLLOUT;
        return NQI_WOULDBLOCK;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return refusal_behind_reset(t) ? NQ_EAUTH : NQ_ECONNRESET;
    default: {
        int server = c->purpose == NQ_SERVER;
        int r1 = nqi_tls_refusal(ERR_peek_error());
        int r2 = nqi_tls_refusal(ERR_peek_last_error());
        int refused = r1 > 0 || r2 > 0 || (server && (r1 < 0 || r2 < 0));
        if (t->state == TCP_HANDSHAKE) {
            long vr = SSL_get_verify_result(t->ssl);
            if (vr != X509_V_OK) {
                nqi_logf(&c->log, NQ_LOG_ERROR, "TLS: %s certificate rejected: %s",
                         server ? "client" : "server", X509_verify_cert_error_string(vr));
            }
        }
        log_ssl_errors(c, what);
        return refused ? NQ_EAUTH : NQ_ETLS;
    }
    }
}

static int tls_handshake(tcp_conn *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->tls_want = 0;
        nqi_session_set_identity(t->s, nqi_cert_identity(SSL_get0_peer_certificate(t->ssl)));
        return 1;
    }
    long rv = classify(t, r, "TLS handshake failed");
    if (rv == NQI_WOULDBLOCK) {
        return 0;
    }
    /* A handshake cut short is a TLS failure, whatever the socket said. */
    return rv == NQ_EAUTH ? NQ_EAUTH : NQ_ETLS;
}

static long tls_read(tcp_conn *t, uint8_t *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        t->tls_want = 0;
        return (long)n;
    }
    return classify(t, r, "TLS read failed");
}

/* A write that must wait for the socket leaves a record built from the
 * start of buf in OpenSSL, and maybe sent more of buf already: the next
 * write must offer the same bytes again (from wherever they are), so the
 * session may put nothing in between them (out_taken). */
static long write_record(tcp_conn *t, const void *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        t->tls_want = 0;
        t->s->out_taken = 0;
        return (long)n;
    }
    long rv = classify(t, r, "TLS write failed");
    if (rv == NQI_WOULDBLOCK && len > t->s->out_taken) {
        t->s->out_taken = len;
    }
    return rv;
}

/* TLS has no vectored write: when the first piece is small, pieces are
 * gathered into one record so many small frames still cost one write
 * (unless NQ_OPT_PUT_MERGE or NQ_OPT_EFFICIENT_SIZE say not to). */
static long tls_write(tcp_conn *t, const struct iovec *iov, int n, size_t total)
{
    (void)total;
    if (n == 1 || iov[0].iov_len > nqi_opts_merge_limit(&t->s->comm->opts, STAGE - 1)) {
        return write_record(t, iov[0].iov_base, iov[0].iov_len);
    }
    if (t->tls_stage == NULL) {
        t->tls_stage = malloc(STAGE);
        if (t->tls_stage == NULL) {
            return NQ_ENOMEM;
        }
    }
    size_t at = 0;
    for (int i = 0; i < n && at < STAGE; i++) {
        size_t take = iov[i].iov_len < STAGE - at ? iov[i].iov_len : STAGE - at;
        memcpy(t->tls_stage + at, iov[i].iov_base, take);
        at += take;
    }
    return write_record(t, t->tls_stage, at);
}

static uint32_t tls_wants(const tcp_conn *t)
{
    return t->tls_want;
}

static void tls_release(tcp_conn *t)
{
    SSL *ssl = t->ssl;
    if (ssl != NULL) {
        if (t->s->error == 0 && SSL_is_init_finished(ssl)) {
            SSL_shutdown(ssl); /* best effort close_notify; never waits */
        }
        SSL_free(ssl);
        t->ssl = NULL;
    }
    free(t->tls_stage);
    t->tls_stage = NULL;
}

const nqi_stream_ops nqi_tls_ops = {
    .max_pieces = MAX_PIECES,
    .held_max = RECORD_MAX,
    .read = tls_read,
    .write = tls_write,
    .handshake = tls_handshake,
    .wants = tls_wants,
    .release = tls_release,
};
