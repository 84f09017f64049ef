/*
 * What an MQTT peer presents to its broker: the client id, the login
 * (username and a password that a callback may renew before every
 * connection attempt), its TLS key and certificate, the trust anchors and
 * the ALPN protocols, and how a refusal of any of them is told apart from
 * an unreachable broker (NQ_EAUTH).  paho takes key, certificate and
 * anchors only as files, so PEM text given in memory is handed over as an
 * anonymous in-memory file (memfd), never written to disk.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/mqtt/mqtt.h"
#include "transports/tlsinfo.h"

/* An in-memory file holding text, named by its /proc/self/fd path (kept
 * open until nqi_mqtt_login_free, for paho's reconnections). */
static const char *pem_file(mqtt_login *l, int slot, const char *text, const char *more)
{
    int fd = memfd_create("nq-pem", MFD_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    size_t n = strlen(text), m = more != NULL ? strlen(more) : 0;
    int ok = write(fd, text, n) == (ssize_t)n && (m == 0 || (write(fd, "\n", 1) == 1 &&
                                                               write(fd, more, m) == (ssize_t)m));
    if (!ok) {
        close(fd);
        return NULL;
    }
    l->fds[slot] = fd;
    snprintf(l->paths[slot], sizeof(l->paths[slot]), "/proc/self/fd/%d", fd);
    return l->paths[slot];
}

/* The whole file as a string, or NULL. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (n <= 0) {
        free(text);
        return NULL;
    }
    return text;
}

int nqi_mqtt_login_prepare(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    mqtt_login *l = &st->login;
    for (size_t i = 0; i < NQI_ARRAY_LEN(l->fds); i++) {
        l->fds[i] = -1;
    }
    const nq_opts *o = &c->opts;
    if (o->id_key != NULL) {
        l->key = o->id_pem ? pem_file(l, 0, o->id_key, NULL) : o->id_key;
        l->cert = o->id_pem ? pem_file(l, 1, o->id_cert, NULL) : o->id_cert;
        if (l->key == NULL || l->cert == NULL) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT: cannot hold the key and certificate");
            return NQ_ESYS;
        }
    }
    l->ca_file = o->ca_file != NULL ? o->ca_file : o->cert_path;
    if (o->ca_pem != NULL) {
        /* paho takes one file of anchors: the text, and the file's too. */
        char *also = l->ca_file != NULL ? read_text(l->ca_file) : NULL;
        if (l->ca_file != NULL && also == NULL) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT: cannot read %s", l->ca_file);
            return NQ_ETLS;
        }
        l->ca_file = pem_file(l, 2, o->ca_pem, also);
        free(also);
        if (l->ca_file == NULL) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT: cannot hold the trust anchors");
            return NQ_ESYS;
        }
    }
    /* ALPN's wire form: each name after its length. */
    for (const char *p = o->tls_alpn; p != NULL;) {
        size_t n = strcspn(p, ",");
        l->alpn[l->alpn_len++] = (unsigned char)n;
        memcpy(l->alpn + l->alpn_len, p, n);
        l->alpn_len += (unsigned)n;
        p = p[n] == ',' ? p + n + 1 : NULL;
    }
    return NQ_OK;
}

/* paho reports OpenSSL's errors here, one line each, on its thread. */
static int on_ssl_error(const char *text, size_t len, void *ctx)
{
    nq_comm *c = ctx;
    nqi_logf(&c->log, NQ_LOG_WARN, "MQTT TLS: %.*s", (int)(len < 512 ? len : 512), text);
    return 0;
}

int nqi_mqtt_login_apply(nq_comm *c, MQTTAsync_connectOptions *co, MQTTAsync_SSLOptions *ssl)
{
    mqtt_comm *st = c->tp;
    mqtt_login *l = &st->login;
    const nq_opts *o = &c->opts;
    if (o->login_user != NULL) {
        free(l->password);
        int rv = nqi_opts_secret(o, o->login_password, &l->password, &l->password_len, &c->log);
        if (rv != NQ_OK) {
            return rv;
        }
        co->username = o->login_user;
        co->binarypwd.data = l->password;
        co->binarypwd.len = (int)l->password_len;
        co->password = NULL;
    }
    if (!o->tls) {
        return NQ_OK;
    }
    ssl->trustStore = l->ca_file;
    ssl->CApath = o->ca_dir;
    ssl->keyStore = l->cert;
    ssl->privateKey = l->key;
    ssl->enableServerCertAuth = 1;
    ssl->verify = 1;
    ssl->sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    ssl->ssl_error_cb = on_ssl_error;
    ssl->ssl_error_context = c;
    if (l->alpn_len > 0) {
        ssl->protos = l->alpn;
        ssl->protos_len = l->alpn_len;
    }
    co->ssl = ssl;
    return NQ_OK;
}

/* Before each of paho's reconnections: a fresh password from the secret
 * callback.  paho frees what it is given, so it gets its own copies. */
static int renew_login(void *ctx, MQTTAsync_connectData *data)
{
    nq_comm *c = ctx;
    char *secret = NULL;
    size_t len = 0;
    if (nqi_opts_secret(&c->opts, c->opts.login_password, &secret, &len, &c->log) != NQ_OK) {
        return 0; /* the last one is tried again; the log says why */
    }
    char *user = MQTTAsync_malloc(strlen(c->opts.login_user) + 1);
    char *pw = MQTTAsync_malloc(len + 1);
    if (user == NULL || pw == NULL) {
        MQTTAsync_free(user);
        MQTTAsync_free(pw);
        free(secret);
        return 0;
    }
    strcpy(user, c->opts.login_user);
    memcpy(pw, secret, len + 1);
    free(secret);
    data->username = user;
    data->binarypwd.data = pw;
    data->binarypwd.len = (int)len;
    return 1;
}

void nqi_mqtt_login_watch(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    if (c->opts.login_user != NULL && c->opts.secret_fn != NULL) {
        MQTTAsync_setUpdateConnectOptions(st->client, c, renew_login);
    }
}

/* paho tells only that its TLS connection failed.  Whether the broker
 * refused our certificate (or our lack of one) is in the broker's alert:
 * one handshake of our own, with the same key and certificate and no check
 * of the broker's (that one paho made), reads it.  Under TLS 1.3 the alert
 * follows the handshake, so a byte is awaited after it (2 s at most). */
static int broker_refuses_certificate(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    mqtt_login *l = &st->login;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return 0;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    int refused = 0;
    int fd = -1;
    SSL *ssl = NULL;
    if (l->cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, l->cert) != 1 ||
                            SSL_CTX_use_PrivateKey_file(ctx, l->key, SSL_FILETYPE_PEM) != 1)) {
        goto done;
    }
    if ((fd = nqi_mqtt_broker_socket(st, 2000)) < 0 || (ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
        goto done;
    }
    SSL_set_tlsext_host_name(ssl, c->opts.host);
    uint8_t b;
    size_t n = 0;
    if (SSL_connect(ssl) == 1) {
        SSL_peek_ex(ssl, &b, 1, &n);
    }
    for (unsigned long e; (e = ERR_get_error()) != 0;) {
        refused |= nqi_tls_refusal(e) > 0;
    }
done:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0) {
        close(fd);
    }
    SSL_CTX_free(ctx);
    return refused;
}

/* Appends a 16-bit length and the bytes. */
static size_t put_field(uint8_t *at, const void *data, size_t len)
{
    at[0] = (uint8_t)(len >> 8);
    at[1] = (uint8_t)len;
    memcpy(at + 2, data, len);
    return 2 + len;
}

/* paho does not always hand over the CONNACK's code: a broker that refuses
 * a login closes the connection right behind the CONNACK, and paho may meet
 * the close first.  Over plain TCP the question is asked again, with one
 * MQTT 3.1.1 CONNECT of our own carrying the same login (or none) under a
 * client id of its own, and the CONNACK read: 1 when it says 4 or 5. */
static int broker_refuses_login(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    mqtt_login *l = &st->login;
    const char *user = c->opts.login_user;
    size_t ulen = user != NULL ? strlen(user) : 0;
    char id[24];
    snprintf(id, sizeof(id), "nq-check-%.8s", st->own_hex);
    size_t body = 10 + 2 + strlen(id) + (user != NULL ? 2 + ulen : 0) +
                  (l->password != NULL ? 2 + l->password_len : 0);
    uint8_t *pkt = malloc(body + 5);
    if (pkt == NULL) {
        return 0;
    }
    size_t n = 0;
    pkt[n++] = 0x10; /* CONNECT */
    for (size_t left = body;;) {
        uint8_t b = left & 0x7f;
        left >>= 7;
        pkt[n++] = (uint8_t)(b | (left > 0 ? 0x80 : 0));
        if (left == 0) {
            break;
        }
    }
    n += put_field(pkt + n, "MQTT", 4);
    pkt[n++] = 4;                                          /* 3.1.1 */
    pkt[n++] = (user != NULL ? 0x80 : 0) | (l->password != NULL ? 0x40 : 0) | 0x02;
    pkt[n++] = 0;
    pkt[n++] = 10;                                         /* keep-alive, s */
    n += put_field(pkt + n, id, strlen(id));
    if (user != NULL) {
        n += put_field(pkt + n, user, ulen);
    }
    if (l->password != NULL) {
        n += put_field(pkt + n, l->password, l->password_len);
    }
    int refused = 0;
    int fd = nqi_mqtt_broker_socket(st, 2000);
    uint8_t ack[4];
    if (fd >= 0 && write(fd, pkt, n) == (ssize_t)n && recv(fd, ack, 4, MSG_WAITALL) == 4 &&
        ack[0] == 0x20 && ack[1] == 2) {
        refused = ack[3] == 4 || ack[3] == 5;
        if (ack[3] == 0) {
            static const uint8_t disconnect[2] = {0xe0, 0};
            if (write(fd, disconnect, 2) != 2) {
                refused = 0;
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    free(pkt);
    return refused;
}

int nqi_mqtt_login_refused(nq_comm *c, int code)
{
    /* CONNACK 4: bad username or password; 5: not authorized. */
    if (code == 4 || code == 5) {
        return 1;
    }
    if (c->opts.tls) {
        return broker_refuses_certificate(c);
    }
    return broker_refuses_login(c);
}

void nqi_mqtt_login_free(mqtt_comm *st)
{
    mqtt_login *l = &st->login;
    for (size_t i = 0; i < NQI_ARRAY_LEN(l->fds); i++) {
        if (l->fds[i] >= 0) {
            close(l->fds[i]);
        }
    }
    free(l->password);
    l->password = NULL;
}
