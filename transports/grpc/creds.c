/*
 * gRPC credentials.  grpc takes keys, chains and trust anchors only as PEM
 * text, so the options' files and directories are read into text here at
 * nq_open, and the key is checked against its certificate so that a wrong
 * one fails there (NQ_ETLS), as over TCP.
 *
 * A server checks client certificates itself, on each call, rather than
 * in grpc's handshake: grpc's server closes a connection whose handshake
 * failed without sending the TLS alert, and under TLS 1.3 the client's
 * side of the handshake is over by then, so all a refused client would
 * learn is that the socket closed, which it cannot tell from a server
 * going away.  The handshake asks for a certificate and checks that the
 * client holds its key; the call then checks the chain against the
 * anchors (and that there is one, when required) and is refused with
 * UNAUTHENTICATED and the reason before any of its input is read, so the
 * client fails at once with NQ_EAUTH.  Bearer tokens are checked at the
 * same point.  A client sends its token with every call, renewed for each
 * connection attempt.
 */
#include <dirent.h>
#include <grpc/grpc_security.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "transports/cert_identity.h"
#include "transports/grpc/grpc.h"

#define BEARER "Bearer "
#define TOKEN_IDENTITY_MAX 1024

/* ---- PEM text ------------------------------------------------------------------ */

/* A growing text; failed once an allocation failed. */
typedef struct text {
    char *s;
    size_t len;
    size_t cap;
    int failed;
} text;

static void text_add(text *t, const void *data, size_t n)
{
    if (t->failed) {
        return;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap == 0 ? 8192 : t->cap;
        while (t->len + n + 1 > cap) {
            cap *= 2;
        }
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    memcpy(t->s + t->len, data, n);
    t->len += n;
    t->s[t->len] = '\0';
}

/* Appends a file's content and a line break, so that the next file's PEM
 * block starts on a line of its own.  Returns 0, or -1 when it cannot be
 * read. */
static int text_add_file(text *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        text_add(t, buf, n);
    }
    int failed = ferror(f);
    fclose(f);
    text_add(t, "\n", 1);
    return failed ? -1 : 0;
}

/* The files of an anchor directory: OpenSSL's hashed names ("5ed36f99.0")
 * and certificate files named *.pem or *.crt. */
static int anchor_file(const char *name)
{
    size_t n = strlen(name);
    if (n > 4 && (strcmp(name + n - 4, ".pem") == 0 || strcmp(name + n - 4, ".crt") == 0)) {
        return 1;
    }
    return n > 9 && strspn(name, "0123456789abcdef") == 8 && name[8] == '.' &&
           strspn(name + 9, "0123456789") == n - 9;
}

/* Appends the anchor files of dir (see anchor_file).  Returns 0, or -1
 * when the directory cannot be read. */
static int text_add_dir(text *t, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        if (anchor_file(e->d_name) &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < sizeof(path)) {
            text_add_file(t, path); /* an unreadable one adds nothing */
        }
    }
    closedir(d);
    return 0;
}

/* The distinct certificates of t as PEM text (a hash link and the file it
 * names, or a bundle beside its parts, give each certificate once), in
 * *out; their number is returned, or -1 without memory. */
static int unique_certificates(const text *t, char **out)
{
    *out = NULL;
    BIO *in = BIO_new_mem_buf(t->s != NULL ? t->s : "", (int)t->len);
    BIO *pem = BIO_new(BIO_s_mem());
    STACK_OF(X509) *seen = sk_X509_new_null();
    int n = in != NULL && pem != NULL && seen != NULL ? 0 : -1;
    X509 *x;
    while (n >= 0 && (x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        int dup = 0;
        for (int i = 0; i < sk_X509_num(seen) && !dup; i++) {
            dup = X509_cmp(sk_X509_value(seen, i), x) == 0;
        }
        if (dup || sk_X509_push(seen, x) == 0) {
            X509_free(x);
            n = dup ? n : -1;
            continue;
        }
        n = PEM_write_bio_X509(pem, x) == 1 ? n + 1 : -1;
    }
    ERR_clear_error(); /* the end of the text reads as an error */
    char *data = NULL;
    long len = n > 0 ? BIO_get_mem_data(pem, &data) : 0;
    if (n > 0 && (*out = malloc((size_t)len + 1)) != NULL) {
        memcpy(*out, data, (size_t)len);
        (*out)[len] = '\0';
    } else if (n > 0) {
        n = -1;
    }
    sk_X509_pop_free(seen, X509_free);
    BIO_free(in);
    BIO_free(pem);
    return n;
}

/* The trust anchors as PEM text in *out: nq_opts_set_tls_trust's file,
 * directory and text, else (a client) nq_opts_set_tls's file; NULL when
 * none is given (a client then trusts grpc's default roots).  Returns
 * NQ_OK, NQ_ETLS (logged) or NQ_ENOMEM. */
static int trust_pem(nq_comm *c, char **out)
{
    const nq_opts *o = &c->opts;
    const char *file = o->ca_file;
    if (file == NULL && o->ca_dir == NULL && o->ca_pem == NULL) {
        file = c->purpose == NQ_CLIENT ? o->cert_path : NULL;
    }
    *out = NULL;
    if (file == NULL && o->ca_dir == NULL && o->ca_pem == NULL) {
        return NQ_OK;
    }
    text t = {0};
    const char *unread = NULL;
    if (file != NULL && text_add_file(&t, file) != 0) {
        unread = file;
    }
    if (o->ca_dir != NULL && text_add_dir(&t, o->ca_dir) != 0) {
        unread = o->ca_dir;
    }
    if (o->ca_pem != NULL) {
        text_add(&t, o->ca_pem, strlen(o->ca_pem));
    }
    int n = unread == NULL && !t.failed ? unique_certificates(&t, out) : 0;
    free(t.s);
    if (t.failed || n < 0) {
        return NQ_ENOMEM;
    }
    if (unread != NULL) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: cannot read the trusted certificates in %s",
                 unread);
        return NQ_ETLS;
    }
    if (n == 0) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: no trusted certificate found");
        return NQ_ETLS;
    }
    return NQ_OK;
}

/* One of the identity's two parts as PEM text: the text itself, or the
 * file it names. */
static char *identity_part(const nq_opts *o, const char *part)
{
    if (o->id_key != NULL && o->id_pem) {
        return strdup(part);
    }
    text t = {0};
    if (text_add_file(&t, part) != 0 || t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* 1 when key is a private key and cert begins with the certificate that
 * goes with it. */
static int key_fits(const char *key, const char *cert)
{
    BIO *kb = BIO_new_mem_buf(key, -1);
    BIO *cb = BIO_new_mem_buf(cert, -1);
    EVP_PKEY *k = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    X509 *x = cb != NULL ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    int fits = k != NULL && x != NULL && X509_check_private_key(x, k) == 1;
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(kb);
    BIO_free(cb);
    return fits;
}

/* This side's key and chain as PEM text: nq_opts_set_tls_identity's, else
 * (a server) nq_opts_set_tls's files; both NULL for a client without one.
 * Returns NQ_OK or NQ_ETLS (logged; nothing is left allocated). */
static int identity_pem(nq_comm *c, grpc_ssl_pem_key_cert_pair *pair)
{
    const nq_opts *o = &c->opts;
    const char *key = o->id_key != NULL ? o->id_key : o->key_path;
    const char *cert = o->id_key != NULL ? o->id_cert : o->cert_path;
    pair->private_key = NULL;
    pair->cert_chain = NULL;
    if (c->purpose == NQ_CLIENT && o->id_key == NULL) {
        return NQ_OK;
    }
    char *k = identity_part(o, key);
    char *x = identity_part(o, cert);
    if (k == NULL || x == NULL || !key_fits(k, x)) {
        free(k);
        free(x);
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "gRPC: cannot load the private key and certificate chain");
        return NQ_ETLS;
    }
    pair->private_key = k;
    pair->cert_chain = x;
    return NQ_OK;
}

static void pair_free(grpc_ssl_pem_key_cert_pair *pair)
{
    free((char *)pair->private_key);
    free((char *)pair->cert_chain);
}

/* ---- credentials ----------------------------------------------------------------- */

/* The anchors of PEM text as a store for checking client certificates, or
 * NULL without memory. */
static X509_STORE *anchor_store(const char *pem)
{
    X509_STORE *store = X509_STORE_new();
    BIO *b = store != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
    int ok = b != NULL;
    X509 *x;
    while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        ok = X509_STORE_add_cert(store, x) == 1;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the text reads as an error */
    BIO_free(b);
    if (!ok) {
        X509_STORE_free(store);
        store = NULL;
    }
    return store;
}

int nqi_grpc_server_credentials(nq_comm *c, grpc_server_credentials **out)
{
    *out = NULL;
    if (!c->opts.tls) {
        *out = grpc_insecure_server_credentials_create();
        return *out != NULL ? NQ_OK : NQ_ENOMEM;
    }
    grpc_state *st = c->tp;
    int64_t auth = c->opts.ints[NQ_OPT_TLS_CLIENT_AUTH];
    grpc_ssl_pem_key_cert_pair pair;
    char *roots = NULL;
    int rv = identity_pem(c, &pair);
    if (rv == NQ_OK && auth > 0) {
        rv = trust_pem(c, &roots);
    }
    if (rv == NQ_OK && auth > 0 && (st->anchors = anchor_store(roots)) == NULL) {
        rv = NQ_ENOMEM;
    }
    if (rv == NQ_OK) {
        /* Asked for, never required nor checked here: see the top. */
        *out = grpc_ssl_server_credentials_create_ex(
            roots, &pair, 1,
            auth > 0 ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY
                     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        rv = *out != NULL ? NQ_OK : NQ_ETLS;
    }
    pair_free(&pair);
    free(roots);
    return rv;
}

int nqi_grpc_channel_credentials(nq_comm *c, grpc_channel_credentials **out)
{
    *out = NULL;
    if (!c->opts.tls) {
        *out = grpc_insecure_credentials_create();
        return *out != NULL ? NQ_OK : NQ_ENOMEM;
    }
    grpc_ssl_pem_key_cert_pair pair;
    char *roots = NULL;
    int rv = identity_pem(c, &pair);
    if (rv == NQ_OK) {
        rv = trust_pem(c, &roots);
    }
    if (rv == NQ_OK) {
        *out = grpc_ssl_credentials_create(roots, pair.private_key != NULL ? &pair : NULL, NULL,
                                           NULL);
        rv = *out != NULL ? NQ_OK : NQ_ETLS;
    }
    pair_free(&pair);
    free(roots);
    return rv;
}

void nqi_grpc_credentials_free(grpc_state *st)
{
    X509_STORE_free(st->anchors);
    st->anchors = NULL;
    free(st->bearer);
    st->bearer = NULL;
}

int nqi_grpc_check_credentials(nq_comm *c)
{
    const nq_opts *o = &c->opts;
    if (c->purpose == NQ_CLIENT && !o->tls && (o->token != NULL || o->secret_fn != NULL)) {
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "gRPC: a token is sent over TLS only (nq_opts_set_tls_trust or nq_opts_set_tls)");
        return NQ_EINVAL;
    }
    return NQ_OK;
}

/* ---- identities ------------------------------------------------------------------ */

/* The first value of an auth context's property, or NULL. */
static const grpc_auth_property *property(const grpc_auth_context *ctx, const char *name)
{
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    return grpc_auth_property_iterator_next(&it);
}

char *nqi_grpc_peer_identity(grpc_call *call)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (ctx == NULL) {
        return NULL;
    }
    const grpc_auth_property *p = property(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    char *identity = p != NULL ? nqi_cert_identity_pem(p->value, p->value_length) : NULL;
    grpc_auth_context_release(ctx);
    return identity;
}

/* Every certificate of PEM text (len bytes), or NULL. */
static STACK_OF(X509) *certificates(const char *pem, size_t len)
{
    STACK_OF(X509) *all = sk_X509_new_null();
    BIO *b = all != NULL && len <= INT32_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
    X509 *x;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(all, x) == 0) {
            X509_free(x);
        }
    }
    ERR_clear_error(); /* the end of the text reads as an error */
    BIO_free(b);
    return all;
}

/* Server: why the certificate the call's client presented is refused, or
 * NULL when it passes: the chain (what the client sent) must lead to one of
 * the anchors, for a TLS client, as OpenSSL's handshake would check it. */
static const char *certificate_refused(grpc_state *st, grpc_call *call, int required)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    const grpc_auth_property *leaf =
        ctx != NULL ? property(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME) : NULL;
    const grpc_auth_property *chain =
        ctx != NULL ? property(ctx, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME) : NULL;
    const char *why = NULL;
    if (leaf == NULL) {
        why = required ? "the client presented no certificate" : NULL;
        grpc_auth_context_release(ctx);
        return why;
    }
    STACK_OF(X509) *certs = certificates(leaf->value, leaf->value_length);
    STACK_OF(X509) *rest = chain != NULL ? certificates(chain->value, chain->value_length) : NULL;
    X509_STORE_CTX *check = X509_STORE_CTX_new();
    if (certs == NULL || sk_X509_num(certs) == 0 || check == NULL ||
        X509_STORE_CTX_init(check, st->anchors, sk_X509_value(certs, 0), rest) != 1 ||
        X509_STORE_CTX_set_default(check, "ssl_client") != 1) {
        why = "the client's certificate could not be read";
    } else if (X509_verify_cert(check) != 1) {
        why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(check));
    }
    ERR_clear_error();
    X509_STORE_CTX_free(check);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(rest, X509_free);
    grpc_auth_context_release(ctx);
    return why;
}

/* The bearer token of the call's "authorization" metadata, or NULL. */
static const grpc_slice *bearer_token(const grpc_metadata_array *md)
{
    size_t klen = strlen(NQI_GRPC_MD_AUTH);
    size_t blen = strlen(BEARER);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        const grpc_slice *v = &md->metadata[i].value;
        if (GRPC_SLICE_LENGTH(k) == klen &&
            memcmp(GRPC_SLICE_START_PTR(k), NQI_GRPC_MD_AUTH, klen) == 0 &&
            GRPC_SLICE_LENGTH(*v) > blen &&
            strncasecmp((const char *)GRPC_SLICE_START_PTR(*v), BEARER, blen) == 0) {
            return v;
        }
    }
    return NULL;
}

int nqi_grpc_server_identify(nq_comm *c, gcall *gc, char *why, size_t cap)
{
    grpc_state *st = c->tp;
    const char *from = gc->peer_key != NULL ? gc->peer_key : "an unknown address";
    const char *refused = NULL;
    if (st->anchors != NULL &&
        (refused = certificate_refused(st, gc->call,
                                       c->opts.ints[NQ_OPT_TLS_CLIENT_AUTH] == 2)) != NULL) {
        snprintf(why, cap, "client certificate refused: %s", refused);
        nqi_logf(&c->log, NQ_LOG_ERROR, "gRPC: %s (%s)", why, from);
        nqi_stat_add(c, NQI_ST_TLS_ERRORS, 1);
        return NQ_EAUTH;
    }
    char token_identity[TOKEN_IDENTITY_MAX + 1] = "";
    if (c->opts.accepted_tokens != NULL) {
        const grpc_slice *v = bearer_token(&gc->md);
        size_t skip = strlen(BEARER);
        if (v == NULL ||
            nqi_opts_token_identity(&c->opts, (const char *)GRPC_SLICE_START_PTR(*v) + skip,
                                    GRPC_SLICE_LENGTH(*v) - skip, token_identity,
                                    sizeof(token_identity)) != NQ_OK) {
            snprintf(why, cap, "%s",
                     v == NULL ? "no bearer token" : "a bearer token the server does not accept");
            nqi_logf(&c->log, NQ_LOG_WARN, "gRPC: refused a call from %s: %s", from, why);
            nqi_stat_add(c, NQI_ST_REFUSED, 1);
            return NQ_EAUTH;
        }
    }
    snprintf(why, cap, "out of memory");
    char *cert = c->opts.tls ? nqi_grpc_peer_identity(gc->call) : NULL;
    if (c->opts.accepted_tokens == NULL) {
        gc->identity = cert;
        return NQ_OK;
    }
    size_t n = (cert != NULL ? strlen(cert) + 1 : 0) + strlen("token:") +
               strlen(token_identity) + 1;
    gc->identity = malloc(n);
    if (gc->identity != NULL) {
        snprintf(gc->identity, n, "%s%stoken:%s", cert != NULL ? cert : "",
                 cert != NULL ? "\n" : "", token_identity);
    }
    free(cert);
    return gc->identity != NULL ? NQ_OK : NQ_ENOMEM;
}

/* ---- the client's token ------------------------------------------------------------ */

int nqi_grpc_client_token(nq_comm *c)
{
    grpc_state *st = c->tp;
    char *secret = NULL;
    size_t len = 0;
    int rv = nqi_opts_secret(&c->opts, c->opts.token, &secret, &len, &c->log);
    if (rv != NQ_OK || secret == NULL) {
        return rv;
    }
    /* What the callback gave must fit in the metadata as a token would. */
    int printable = len > 0;
    for (size_t i = 0; i < len && printable; i++) {
        printable = secret[i] > ' ' && secret[i] <= '~';
    }
    char *bearer = printable ? malloc(strlen(BEARER) + len + 1) : NULL;
    if (bearer != NULL) {
        snprintf(bearer, strlen(BEARER) + len + 1, "%s%s", BEARER, secret);
    }
    free(secret);
    if (!printable) {
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "gRPC: the secret callback gave a token that is not printable ASCII");
        return NQ_EAUTH;
    }
    if (bearer == NULL) {
        return NQ_ENOMEM;
    }
    free(st->bearer);
    st->bearer = bearer;
    return NQ_OK;
}
