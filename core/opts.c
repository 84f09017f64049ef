/* Options: setters validate, nq_open copies.  An nq_opts belongs to the
 * thread that builds it; a communicator's copy is only read. */
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

struct option_spec {
    int64_t min;
    int64_t max;
    int64_t def;
    int64_t alt; /* a second allowed value outside [min, max], or min */
};

#define GIB (INT64_C(1) << 30)

/* Indexed by nq_option; ranges as documented in nq.h. */
static const struct option_spec specs[NQI_OPT_COUNT] = {
    [NQ_OPT_GET_MERGE] = {0, 1, 1, 0},
    [NQ_OPT_PUT_MERGE] = {0, 1, 1, 0},
    [NQ_OPT_EFFICIENT_SIZE] = {1, GIB, 65536, 1},
    [NQ_OPT_PROTOCOL_SIZE] = {4096, GIB, 4 * 1024 * 1024, 4096},
    [NQ_OPT_QUEUE_SIZE] = {1, INT64_C(1) << 40, GIB, 1},
    [NQ_OPT_MESSAGE_SIZE] = {16, INT64_C(1) << 62, INT64_C(1) << 40, 16},
    [NQ_OPT_WORKERS] = {1, 64, 1, 1},
    [NQ_OPT_SEND_LIMIT] = {0, INT64_C(1) << 62, GIB, 0},
    [NQ_OPT_HANDSHAKE_TIMEOUT_MS] = {100, INT64_C(1) << 31, 10000, 100},
    [NQ_OPT_KEEPALIVE_MS] = {1000, INT64_C(1) << 31, 15000, 0},
    [NQ_OPT_CLOSE_TIMEOUT_MS] = {0, INT64_C(1) << 31, -1, -1},
    [NQ_OPT_MQTT_QOS] = {0, 2, 1, 0},
    [NQ_OPT_RECONNECT_MS] = {10, INT64_C(1) << 31, 0, 0},
    [NQ_OPT_RECONNECT_MAX_MS] = {10, INT64_C(1) << 31, 5000, 10},
    [NQ_OPT_RECONNECT_GIVE_UP_MS] = {0, INT64_C(1) << 31, -1, -1},
    [NQ_OPT_DELIVERY] = {NQ_DELIVERY_WRITTEN, NQ_DELIVERY_ACKED, NQ_DELIVERY_WRITTEN,
                         NQ_DELIVERY_WRITTEN},
    [NQ_OPT_RESUME_MS] = {0, INT64_C(1) << 31, 60000, 0},
    [NQ_OPT_DROP_OLDEST] = {0, 1, 0, 0},
    [NQ_OPT_TLS_CLIENT_AUTH] = {0, 2, 0, 0},
    [NQ_OPT_TLS_MIN_VERSION] = {12, 13, 12, 12},
    [NQ_OPT_MQTT_MAX_PUBLISH] = {1024, INT64_C(1) << 28, 0, 0},
};

static int valid_option(int option)
{
    return option >= NQ_OPT_GET_MERGE && option < NQI_OPT_COUNT;
}

int nqi_opts_defaults(nq_opts *o)
{
    memset(o, 0, sizeof(*o));
    int rv = nq_id_random(&o->id);
    if (rv != NQ_OK) {
        return rv;
    }
    strcpy(o->host, "127.0.0.1");
    o->port = 51966;
    for (int i = NQ_OPT_GET_MERGE; i < NQI_OPT_COUNT; i++) {
        o->ints[i] = specs[i].def;
    }
    return NQ_OK;
}

int nq_opts_new(nq_opts **out)
{
    if (out == NULL) {
        return NQ_EINVAL;
    }
    nq_opts *o = malloc(sizeof(*o));
    if (o == NULL) {
        return NQ_ENOMEM;
    }
    int rv = nqi_opts_defaults(o);
    if (rv != NQ_OK) {
        free(o);
        return rv;
    }
    *out = o;
    return NQ_OK;
}

/* The strings an nq_opts owns. */
#define OWNED_STRINGS(o) \
    &(o)->key_path, &(o)->cert_path, &(o)->mqtt_prefix, &(o)->id_key, &(o)->id_cert, \
        &(o)->ca_file, &(o)->ca_dir, &(o)->ca_pem, &(o)->login_user, &(o)->login_password, \
        &(o)->token, &(o)->accepted_tokens, &(o)->tls_server_name, &(o)->tls_alpn, \
        &(o)->mqtt_client_id

void nqi_opts_clear(nq_opts *o)
{
    char **owned[] = {OWNED_STRINGS(o)};
    for (size_t i = 0; i < NQI_ARRAY_LEN(owned); i++) {
        free(*owned[i]);
        *owned[i] = NULL;
    }
}

void nq_opts_free(nq_opts *opts)
{
    if (opts != NULL) {
        nqi_opts_clear(opts);
        free(opts);
    }
}

/* strdup that keeps NULL as NULL; *ok turns 0 when memory runs out. */
static char *dup_or_null(const char *s, int *ok)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = strdup(s);
    if (d == NULL) {
        *ok = 0;
    }
    return d;
}

int nqi_opts_copy(nq_opts *dst, const nq_opts *src)
{
    *dst = *src;
    int ok = 1;
    char **to[] = {OWNED_STRINGS(dst)};
    for (size_t i = 0; i < NQI_ARRAY_LEN(to); i++) {
        *to[i] = dup_or_null(*to[i], &ok); /* *to[i] is src's until replaced */
    }
    if (!ok) {
        nqi_opts_clear(dst);
        return NQ_ENOMEM;
    }
    return NQ_OK;
}

int nq_opts_set_id(nq_opts *opts, const nq_id *id)
{
    if (opts == NULL || id == NULL) {
        return NQ_EINVAL;
    }
    opts->id = *id;
    return NQ_OK;
}

int nq_opts_get_id(const nq_opts *opts, nq_id *out)
{
    if (opts == NULL || out == NULL) {
        return NQ_EINVAL;
    }
    *out = opts->id;
    return NQ_OK;
}

int nq_opts_set_netloc(nq_opts *opts, const char *host, uint16_t port)
{
    if (opts == NULL || host == NULL) {
        return NQ_EINVAL;
    }
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof(opts->host)) {
        return NQ_EINVAL;
    }
    memcpy(opts->host, host, len + 1);
    opts->port = port;
    return NQ_OK;
}

int nq_opts_set_int(nq_opts *opts, nq_option option, int64_t value)
{
    if (opts == NULL || !valid_option((int)option)) {
        return NQ_EINVAL;
    }
    const struct option_spec *s = &specs[option];
    if ((value < s->min || value > s->max) && value != s->alt) {
        return NQ_EINVAL;
    }
    opts->ints[option] = value;
    return NQ_OK;
}

int nq_opts_get_int(const nq_opts *opts, nq_option option, int64_t *out)
{
    if (opts == NULL || out == NULL || !valid_option((int)option)) {
        return NQ_EINVAL;
    }
    *out = opts->ints[option];
    return NQ_OK;
}

int nq_opts_set_tls(nq_opts *opts, const char *key_path, const char *cert_path)
{
    if (opts == NULL || (key_path != NULL && key_path[0] == '\0') ||
        (cert_path != NULL && cert_path[0] == '\0')) {
        return NQ_EINVAL;
    }
    int ok = 1;
    char *key = dup_or_null(key_path, &ok);
    char *cert = dup_or_null(cert_path, &ok);
    if (!ok) {
        free(key);
        free(cert);
        return NQ_ENOMEM;
    }
    free(opts->key_path);
    free(opts->cert_path);
    opts->key_path = key;
    opts->cert_path = cert;
    opts->tls = 1;
    return NQ_OK;
}

int nqi_opts_replace_strings(char **slots[], const char *values[], size_t n)
{
    char *copies[4];
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        copies[i] = dup_or_null(values[i], &ok);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok) {
            free(copies[i]);
            continue;
        }
        free(*slots[i]);
        *slots[i] = copies[i];
    }
    return ok ? NQ_OK : NQ_ENOMEM;
}

int nq_opts_set_tls_identity(nq_opts *opts, const char *key, const char *cert, int pem)
{
    if (opts == NULL || key == NULL || cert == NULL || key[0] == '\0' || cert[0] == '\0' ||
        (pem != 0 && pem != 1)) {
        return NQ_EINVAL;
    }
    char **slots[] = {&opts->id_key, &opts->id_cert};
    const char *values[] = {key, cert};
    int rv = nqi_opts_replace_strings(slots, values, 2);
    if (rv == NQ_OK) {
        opts->id_pem = pem;
        opts->tls = 1;
    }
    return rv;
}

int nq_opts_set_tls_trust(nq_opts *opts, const char *file, const char *dir, const char *pem)
{
    if (opts == NULL || (file == NULL && dir == NULL && pem == NULL) ||
        (file != NULL && file[0] == '\0') || (dir != NULL && dir[0] == '\0') ||
        (pem != NULL && pem[0] == '\0')) {
        return NQ_EINVAL;
    }
    char **slots[] = {&opts->ca_file, &opts->ca_dir, &opts->ca_pem};
    const char *values[] = {file, dir, pem};
    int rv = nqi_opts_replace_strings(slots, values, 3);
    if (rv == NQ_OK) {
        opts->tls = 1;
    }
    return rv;
}

int nq_opts_set_serializer(nq_opts *opts, nq_dump_fn dump, nq_load_fn load, void *ctx)
{
    if (opts == NULL || dump == NULL || load == NULL) {
        return NQ_EINVAL;
    }
    opts->dump = dump;
    opts->load = load;
    opts->serializer_ctx = ctx;
    return NQ_OK;
}

int nq_opts_set_log(nq_opts *opts, nq_log_fn fn, void *ctx)
{
    if (opts == NULL) {
        return NQ_EINVAL;
    }
    opts->log_fn = fn;
    opts->log_ctx = ctx;
    return NQ_OK;
}

int nq_opts_set_mqtt_prefix(nq_opts *opts, const char *prefix)
{
    if (opts == NULL || prefix == NULL || strlen(prefix) > 128 || strpbrk(prefix, "+#") != NULL) {
        return NQ_EINVAL;
    }
    char *copy = NULL;
    if (prefix[0] != '\0' && (copy = strdup(prefix)) == NULL) {
        return NQ_ENOMEM;
    }
    free(opts->mqtt_prefix);
    opts->mqtt_prefix = copy;
    return NQ_OK;
}

int nqi_opts_check_tls_roles(const nq_opts *o, nq_purpose purpose, const nqi_log *log)
{
    if (!o->tls) {
        return NQ_OK;
    }
    if (purpose == NQ_SERVER && o->id_key == NULL &&
        (o->key_path == NULL || o->cert_path == NULL)) {
        nqi_logf(log, NQ_LOG_ERROR, "a TLS server needs both a key and a certificate");
        return NQ_EINVAL;
    }
    if (purpose == NQ_SERVER && o->ints[NQ_OPT_TLS_CLIENT_AUTH] > 0 && o->ca_file == NULL &&
        o->ca_dir == NULL && o->ca_pem == NULL) {
        nqi_logf(log, NQ_LOG_ERROR,
                 "checking client certificates needs trust anchors (nq_opts_set_tls_trust)");
        return NQ_EINVAL;
    }
    if (purpose == NQ_CLIENT && o->key_path != NULL) {
        nqi_logf(log, NQ_LOG_ERROR, "a TLS client takes no private key");
        return NQ_EINVAL;
    }
    return NQ_OK;
}

size_t nqi_opts_merge_limit(const nq_opts *o, size_t cap)
{
    if (!o->ints[NQ_OPT_PUT_MERGE]) {
        return 0;
    }
    uint64_t below = (uint64_t)o->ints[NQ_OPT_EFFICIENT_SIZE] - 1;
    return below < cap ? (size_t)below : cap;
}

int nq_opts_set_admission(nq_opts *opts, nq_admit_fn fn, void *ctx)
{
    if (opts == NULL) {
        return NQ_EINVAL;
    }
    opts->admit_fn = fn;
    opts->admit_ctx = ctx;
    return NQ_OK;
}

int nq_opts_set_events(nq_opts *opts, nq_event_fn fn, void *ctx)
{
    if (opts == NULL) {
        return NQ_EINVAL;
    }
    opts->event_fn = fn;
    opts->event_ctx = fn != NULL ? ctx : NULL;
    return NQ_OK;
}
