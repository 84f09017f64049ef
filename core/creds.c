/*
 * creds.c: the credential options of 1.4 (logins, tokens, TLS names, ALPN,
 * MQTT client ids), what each transport refuses of them, and the helpers
 * the transports share: the secret for one connection attempt and the
 * server's token check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

#define TOKEN_MAX 8192
#define TOKEN_IDENTITY_MAX 1024

/* Replaces *slot with a copy of value. */
static int set_string(char **slot, const char *value)
{
    char **slots[] = {slot};
    const char *values[] = {value};
    return nqi_opts_replace_strings(slots, values, 1);
}

/* Printable ASCII without spaces: what a bearer token may hold. */
static int token_text(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOKEN_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            return 0;
        }
    }
    return 1;
}

int nq_opts_set_login(nq_opts *opts, const char *user, const char *password)
{
    if (opts == NULL || user == NULL || user[0] == '\0' || strlen(user) > 65535 ||
        (password != NULL && strlen(password) > 65535)) {
        return NQ_EINVAL;
    }
    char **slots[] = {&opts->login_user, &opts->login_password};
    const char *values[] = {user, password};
    return nqi_opts_replace_strings(slots, values, 2);
}

int nq_opts_set_token(nq_opts *opts, const char *token)
{
    if (opts == NULL || token == NULL || !token_text(token)) {
        return NQ_EINVAL;
    }
    return set_string(&opts->token, token);
}

/* The line of accepted_tokens holding token, or NULL. */
static char *accepted_line(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *line = list; line != NULL && *line != '\0';) {
        const char *tab = strchr(line, '\t');
        const char *end = strchr(tab, '\n');
        if ((size_t)(end - tab - 1) == n && memcmp(tab + 1, token, n) == 0) {
            return (char *)line;
        }
        line = end + 1;
    }
    return NULL;
}

int nq_opts_accept_token(nq_opts *opts, const char *token, const char *identity)
{
    if (opts == NULL || token == NULL || identity == NULL || !token_text(token) ||
        strlen(identity) > TOKEN_IDENTITY_MAX || strpbrk(identity, "\t\n") != NULL) {
        return NQ_EINVAL;
    }
    const char *old = opts->accepted_tokens != NULL ? opts->accepted_tokens : "";
    char *line = accepted_line(old, token);
    size_t head = line != NULL ? (size_t)(line - old) : strlen(old);
    const char *tail = line != NULL ? strchr(line, '\n') + 1 : "";
    size_t n = head + strlen(identity) + strlen(token) + 2 + strlen(tail) + 1;
    char *list = malloc(n);
    if (list == NULL) {
        return NQ_ENOMEM;
    }
    snprintf(list, n, "%.*s%s\t%s\n%s", (int)head, old, identity, token, tail);
    free(opts->accepted_tokens);
    opts->accepted_tokens = list;
    return NQ_OK;
}

int nq_opts_set_secret_fn(nq_opts *opts, nq_secret_fn fn, void *ctx)
{
    if (opts == NULL) {
        return NQ_EINVAL;
    }
    opts->secret_fn = fn;
    opts->secret_ctx = ctx;
    return NQ_OK;
}

int nq_opts_set_tls_server_name(nq_opts *opts, const char *name)
{
    if (opts == NULL || name == NULL || name[0] == '\0' || strlen(name) > 255 ||
        strpbrk(name, " \t\r\n/") != NULL) {
        return NQ_EINVAL;
    }
    return set_string(&opts->tls_server_name, name);
}

int nq_opts_set_tls_alpn(nq_opts *opts, const char *protocols)
{
    if (opts == NULL || protocols == NULL || protocols[0] == '\0' || strlen(protocols) > 1024) {
        return NQ_EINVAL;
    }
    for (const char *p = protocols;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255) {
            return NQ_EINVAL;
        }
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    return set_string(&opts->tls_alpn, protocols);
}

int nq_opts_set_mqtt_client_id(nq_opts *opts, const char *client_id)
{
    if (opts == NULL || client_id == NULL || client_id[0] == '\0' ||
        strlen(client_id) > 65535) {
        return NQ_EINVAL;
    }
    return set_string(&opts->mqtt_client_id, client_id);
}

/* ---- what a transport takes ------------------------------------------------ */

int nqi_opts_refuse(const nq_opts *o, unsigned takes, const char *transport,
                    const nqi_log *log)
{
    static const struct {
        unsigned what;
        const char *name;
    } all[] = {
        {NQI_TAKES_TLS_IDENTITY, "a TLS identity (nq_opts_set_tls_identity)"},
        {NQI_TAKES_TLS_TRUST, "trust anchors (nq_opts_set_tls_trust)"},
        {NQI_TAKES_CLIENT_AUTH, "client certificates (NQ_OPT_TLS_CLIENT_AUTH)"},
        {NQI_TAKES_MIN_VERSION, "a lowest TLS version (NQ_OPT_TLS_MIN_VERSION)"},
        {NQI_TAKES_LOGIN, "a login (nq_opts_set_login)"},
        {NQI_TAKES_TOKEN, "a token (nq_opts_set_token)"},
        {NQI_TAKES_ACCEPT_TOKEN, "accepted tokens (nq_opts_accept_token)"},
        {NQI_TAKES_SERVER_NAME, "a TLS server name (nq_opts_set_tls_server_name)"},
        {NQI_TAKES_ALPN, "ALPN protocols (nq_opts_set_tls_alpn)"},
        {NQI_TAKES_CLIENT_ID, "an MQTT client id (nq_opts_set_mqtt_client_id)"},
    };
    unsigned asked = 0;
    asked |= o->id_key != NULL ? NQI_TAKES_TLS_IDENTITY : 0;
    asked |= o->ca_file != NULL || o->ca_dir != NULL || o->ca_pem != NULL ? NQI_TAKES_TLS_TRUST
                                                                          : 0;
    asked |= o->ints[NQ_OPT_TLS_CLIENT_AUTH] != 0 ? NQI_TAKES_CLIENT_AUTH : 0;
    asked |= o->ints[NQ_OPT_TLS_MIN_VERSION] != 12 ? NQI_TAKES_MIN_VERSION : 0;
    asked |= o->login_user != NULL ? NQI_TAKES_LOGIN : 0;
    asked |= o->token != NULL ? NQI_TAKES_TOKEN : 0;
    asked |= o->accepted_tokens != NULL ? NQI_TAKES_ACCEPT_TOKEN : 0;
    asked |= o->tls_server_name != NULL ? NQI_TAKES_SERVER_NAME : 0;
    asked |= o->tls_alpn != NULL ? NQI_TAKES_ALPN : 0;
    asked |= o->mqtt_client_id != NULL ? NQI_TAKES_CLIENT_ID : 0;
    for (size_t i = 0; i < NQI_ARRAY_LEN(all); i++) {
        if ((asked & all[i].what) && !(takes & all[i].what)) {
            nqi_logf(log, NQ_LOG_ERROR, "%s does not take %s", transport, all[i].name);
            return NQ_ENOTSUP;
        }
    }
    return NQ_OK;
}

/* ---- secrets and tokens ---------------------------------------------------- */

int nqi_opts_secret(const nq_opts *o, const char *fixed, char **out, size_t *len,
                    const nqi_log *log)
{
    *out = NULL;
    *len = 0;
    if (o->secret_fn == NULL) {
        if (fixed == NULL) {
            return NQ_OK;
        }
        *len = strlen(fixed);
        *out = strdup(fixed);
        return *out != NULL ? NQ_OK : NQ_ENOMEM;
    }
    char *buf = malloc(TOKEN_MAX + 1);
    if (buf == NULL) {
        return NQ_ENOMEM;
    }
    size_t n = 0;
    int rv = o->secret_fn(o->secret_ctx, buf, TOKEN_MAX, &n);
    if (rv != NQ_OK || n > TOKEN_MAX) {
        free(buf);
        nqi_logf(log, NQ_LOG_ERROR, "the secret callback gave no secret (%d)", rv);
        return NQ_EAUTH;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return NQ_OK;
}

/* Compares every byte of a and b whatever they hold. */
static int same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < alen; i++) {
        diff |= (unsigned char)(a[i] ^ b[blen != 0 ? i % blen : 0]);
    }
    return diff == 0;
}

int nqi_opts_token_identity(const nq_opts *o, const char *token, size_t len, char *identity,
                            size_t cap)
{
    int found = 0;
    for (const char *line = o->accepted_tokens; line != NULL && *line != '\0';) {
        const char *tab = strchr(line, '\t');
        const char *end = strchr(tab, '\n');
        if (same_secret(token, len, tab + 1, (size_t)(end - tab - 1)) && !found) {
            found = 1;
            snprintf(identity, cap, "%.*s", (int)(tab - line), line);
        }
        line = end + 1;
    }
    return found ? NQ_OK : NQ_EAUTH;
}
