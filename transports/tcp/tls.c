/*
 * TLS for the TCP transport, on OpenSSL 3.  Handshakes and records run
 * non-blocking inside the event loop, so a slow peer never stalls another.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/nqi.h"

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

int nqi_tls_ctx_new(nq_comm *c, nqi_ssl_ctx **out)
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

void nqi_tls_ctx_free(nqi_ssl_ctx *ctx)
{
    SSL_CTX_free(ctx);
}

int nqi_tls_attach(nqi_session *s)
{
    nq_comm *c = s->comm;
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (ssl == NULL || SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        log_ssl_errors(c, "cannot create a TLS connection");
        return NQ_ETLS;
    }
    if (c->purpose == NQ_SERVER) {
        SSL_set_accept_state(ssl);
        s->tls_want = EPOLLIN;
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
        s->tls_want = EPOLLOUT;
    }
    s->ssl = ssl;
    return NQ_OK;
}

uint32_t nqi_tls_wants(nqi_session *s)
{
    return s->tls_want;
}

/* Maps an OpenSSL result to "would block" (recording the direction), EOF,
 * or an error. */
static long classify(nqi_session *s, int ret, const char *what)
{
    int e = SSL_get_error(s->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        s->tls_want = EPOLLIN;
        return NQI_WOULDBLOCK;
    case SSL_ERROR_WANT_WRITE:
        s->tls_want = EPOLLOUT;
        return NQI_WOULDBLOCK;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return NQ_ECONNRESET;
    default:
        if (s->conn_state == NQI_CONN_TLS_HANDSHAKE && s->comm->purpose == NQ_CLIENT) {
            long vr = SSL_get_verify_result(s->ssl);
            if (vr != X509_V_OK) {
                nqi_logf(&s->comm->log, NQ_LOG_ERROR, "TLS: server certificate rejected: %s",
                         X509_verify_cert_error_string(vr));
            }
        }
        log_ssl_errors(s->comm, what);
        return NQ_ETLS;
    }
}

int nqi_tls_handshake(nqi_session *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->tls_want = 0;
        return 1;
    }
    long rv = classify(s, r, "TLS handshake failed");
    if (rv == NQI_WOULDBLOCK) {
        return 0;
    }
    /* A handshake cut short is a TLS failure, whatever the socket said. */
    return NQ_ETLS;
}

long nqi_tls_read(nqi_session *s, uint8_t *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(s->ssl, buf, len, &n);
    if (r == 1) {
        s->tls_want = 0;
        return (long)n;
    }
    return classify(s, r, "TLS read failed");
}

long nqi_tls_write(nqi_session *s, const void *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(s->ssl, buf, len, &n);
    if (r == 1) {
        s->tls_want = 0;
        return (long)n;
    }
    return classify(s, r, "TLS write failed");
}

void nqi_tls_free(nqi_session *s)
{
    if (s->ssl == NULL) {
        return;
    }
    if (s->error == 0 && SSL_is_init_finished(s->ssl)) {
        SSL_shutdown(s->ssl); /* best effort close_notify; never waits */
    }
    SSL_free(s->ssl);
    s->ssl = NULL;
}
