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

#include "transports/tcp/tcp.h"

/* Pieces of output per write; small ones are gathered into one record. */
#define MAX_PIECES 256
#define STAGE (16 * 1024)

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

int nqi_tls_ctx_new(nq_comm *c, void **out)
{
    int server = c->purpose == NQ_SERVER;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        log_ssl_errors(c, "cannot create a TLS context");
        return NQ_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Peers often close without close_notify; the FIN handshake, not TLS,
     * says whether the session ended cleanly. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    const char *cert = c->opts.cert_path;
    if (server) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            log_ssl_errors(c, "cannot load the certificate chain");
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->opts.key_path, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            log_ssl_errors(c, "cannot load the private key");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = cert != NULL ? SSL_CTX_load_verify_locations(ctx, cert, NULL)
                              : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            log_ssl_errors(c, "cannot load the trusted certificates");
            goto fail;
        }
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

/* The socket, behind the gate when acknowledged delivery is asked for. */
static int bind_socket(SSL *ssl, tcp_conn *t)
{
    if (!nqi_ack_wanted(t->s->comm)) {
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
        const char *host = c->opts.host;
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
        return NQ_ECONNRESET;
    default:
        if (t->state == TCP_HANDSHAKE && c->purpose == NQ_CLIENT) {
            long vr = SSL_get_verify_result(t->ssl);
            if (vr != X509_V_OK) {
                nqi_logf(&c->log, NQ_LOG_ERROR, "TLS: server certificate rejected: %s",
                         X509_verify_cert_error_string(vr));
            }
        }
        log_ssl_errors(c, what);
        return NQ_ETLS;
    }
}

static int tls_handshake(tcp_conn *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->tls_want = 0;
        return 1;
    }
    long rv = classify(t, r, "TLS handshake failed");
    if (rv == NQI_WOULDBLOCK) {
        return 0;
    }
    /* A handshake cut short is a TLS failure, whatever the socket said. */
    return NQ_ETLS;
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

static long write_record(tcp_conn *t, const void *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        t->tls_want = 0;
        return (long)n;
    }
    return classify(t, r, "TLS write failed");
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
    .holds_input = 1,
    .read = tls_read,
    .write = tls_write,
    .handshake = tls_handshake,
    .wants = tls_wants,
    .release = tls_release,
};
