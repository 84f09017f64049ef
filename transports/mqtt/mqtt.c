/*
 * The MQTT transport, on paho.mqtt.c's asynchronous client and a broker.
 *
 * net-queue's layout: MQTT 3.1.1, client id = own UUID as 32 hex digits; a
 * client publishes to c2s/<own-hex> and subscribes to s2c/<own-hex>; the
 * server subscribes to c2s/+ and publishes to s2c/<client-hex>.  Payloads
 * are consecutive slices of the framed byte stream.  An optional prefix
 * lets several servers share a broker.
 *
 * paho runs its own threads: its callbacks only post commands to the
 * communicator's loop, which owns every session.  Output is cut into slices
 * as earlier ones are confirmed, so at most a small window per peer sits in
 * paho's queue whatever the message sizes.
 */
#include <MQTTAsync.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/nqi.h"

#define MAX_TOPIC 256

enum { MQ_DATA = 1, MQ_SENT, MQ_SEND_FAILED, MQ_LOST };

typedef struct mqtt_state {
    MQTTAsync client;
    char own_hex[NQI_ID_HEX_LEN + 1];
    char sub_topic[MAX_TOPIC];
    size_t prefix_len;
    int qos;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;         /* 0 waiting, 1 subscribed, or an nq error */
    int disconnected;  /* the DISCONNECT completed */
    atomic_int lost;
    struct sent *inflight; /* loop thread only */
} mqtt_state;

/* An arrival from paho's thread: the message and the id in its topic. */
struct arrival {
    nqi_cmd cmd; /* first member */
    MQTTAsync_message *msg;
    nq_id from;
};

/* A publish in flight; comes back as MQ_SENT or MQ_SEND_FAILED.  Listed
 * until then, because paho drops the callbacks of publishes it never got to
 * send when the broker goes away. */
struct sent {
    nqi_cmd cmd; /* first member */
    size_t len;
    struct sent *prev;
    struct sent *next;
};

static void signal_ready(mqtt_state *st, int value)
{
    pthread_mutex_lock(&st->mu);
    if (st->ready == 0) {
        st->ready = value;
    }
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* ---- paho's threads -------------------------------------------------------- */

static void on_subscribed(void *context, MQTTAsync_successData *resp)
{
    nq_comm *c = context;
    mqtt_state *st = c->tp;
    /* A SUBACK of 0x80 means the broker refused the subscription. */
    int granted = resp != NULL ? resp->alt.qos : 0;
    signal_ready(st, granted == 0x80 ? NQ_ECONNREFUSED : 1);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *resp)
{
    nq_comm *c = context;
    nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT subscribe failed: %s",
             resp != NULL && resp->message != NULL ? resp->message : "no reason given");
    signal_ready(c->tp, NQ_ECONNREFUSED);
}

/* 1 when the two socket addresses are the same address and port. */
static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/* paho leaves Nagle's algorithm on and offers no way to turn it off, which
 * holds small publishes back by tens of milliseconds.  Once connected, the
 * client's socket is the TCP socket whose peer is the broker: find it among
 * the process's descriptors and set TCP_NODELAY (harmless on any other
 * connection to the same broker). */
static void disable_nagle(const struct sockaddr_storage *broker)
{
    struct rlimit rl;
    rlim_t limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (limit > 65536) {
        limit = 65536;
    }
    for (int fd = 3; fd < (int)limit; fd++) {
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
            continue;
        }
        struct sockaddr_storage peer;
        len = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || !same_endpoint(&peer, broker)) {
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

/* The broker's address as the connection's peer would show it. */
static int broker_address(nq_comm *c, struct sockaddr_storage *out)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->opts.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(c->opts.host, port, &hints, &ai) != 0) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

static void on_connected(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    nq_comm *c = context;
    mqtt_state *st = c->tp;
    struct sockaddr_storage broker;
    if (broker_address(c, &broker) == 0) {
        disable_nagle(&broker);
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_subscribed;
    ro.onFailure = on_subscribe_failed;
    ro.context = c;
    int rc = MQTTAsync_subscribe(st->client, st->sub_topic, st->qos, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        signal_ready(st, NQ_ECONNREFUSED);
    }
}

/* 1 when a plain TCP connection to the broker succeeds within a second:
 * tells a TLS failure apart from an unreachable broker. */
static int broker_reachable(nq_comm *c)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->opts.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(c->opts.host, port, &hints, &ai) != 0) {
        return 0;
    }
    int ok = 0;
    for (struct addrinfo *a = ai; a != NULL && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = 1;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t len = sizeof(err);
            ok = poll(&p, 1, 1000) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static void on_connect_failed(void *context, MQTTAsync_failureData *resp)
{
    nq_comm *c = context;
    nqi_logf(&c->log, NQ_LOG_ERROR, "cannot connect to the MQTT broker at %s:%u: %s",
             c->opts.host, (unsigned)c->opts.port,
             resp != NULL && resp->message != NULL ? resp->message : "no reason given");
    int err = NQ_ECONNREFUSED;
    if (c->opts.tls && broker_reachable(c)) {
        err = NQ_ETLS;
    }
    signal_ready(c->tp, err);
}

static void post_transport(nq_comm *c, nqi_cmd *cmd, int subtype)
{
    cmd->type = NQI_CMD_TRANSPORT;
    cmd->subtype = subtype;
    cmd->embedded = 1; /* on_command frees the enclosing struct */
    nqi_loop_post(&c->loops[0], cmd);
}

static void on_connection_lost(void *context, char *cause)
{
    nq_comm *c = context;
    mqtt_state *st = c->tp;
    if (atomic_exchange(&st->lost, 1)) {
        return;
    }
    nqi_logf(&c->log, NQ_LOG_ERROR, "lost the MQTT broker: %s",
             cause != NULL ? cause : "connection closed");
    signal_ready(st, NQ_ECONNRESET);
    nqi_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd != NULL) {
        post_transport(c, cmd, MQ_LOST);
    }
}

/* Parses <prefix><dir>/<32 hex digits>. */
static int topic_id(mqtt_state *st, const char *topic, int len, const char *dir, nq_id *out)
{
    size_t dlen = strlen(dir);
    if (len < 0 || (size_t)len != st->prefix_len + dlen + NQI_ID_HEX_LEN ||
        memcmp(topic, st->sub_topic, st->prefix_len) != 0 ||
        memcmp(topic + st->prefix_len, dir, dlen) != 0) {
        return -1;
    }
    char hex[NQI_ID_HEX_LEN + 1];
    memcpy(hex, topic + st->prefix_len + dlen, NQI_ID_HEX_LEN);
    hex[NQI_ID_HEX_LEN] = 0;
    return nq_id_parse(hex, out) == NQ_OK ? 0 : -1;
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
    nq_comm *c = context;
    mqtt_state *st = c->tp;
    int len = topic_len > 0 ? topic_len : (int)strlen(topic);
    struct arrival *a = calloc(1, sizeof(*a));
    int ok = a != NULL;
    if (ok) {
        const char *dir = c->purpose == NQ_SERVER ? "c2s/" : "s2c/";
        ok = topic_id(st, topic, len, dir, &a->from) == 0;
        if (!ok) {
            nqi_logf(&c->log, NQ_LOG_WARN, "ignoring a message on unexpected topic %.*s", len,
                     topic);
            nqi_stat_add(c, NQI_ST_PROTOCOL_ERRORS, 1);
        }
    }
    MQTTAsync_free(topic);
    if (!ok) {
        free(a);
        MQTTAsync_freeMessage(&msg);
        return 1;
    }
    a->msg = msg;
    post_transport(c, &a->cmd, MQ_DATA);
    return 1;
}

static void on_sent(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    struct sent *sn = context;
    post_transport(sn->cmd.session->comm, &sn->cmd, MQ_SENT);
}

static void on_send_failed(void *context, MQTTAsync_failureData *resp)
{
    (void)resp;
    struct sent *sn = context;
    post_transport(sn->cmd.session->comm, &sn->cmd, MQ_SEND_FAILED);
}

/* ---- the loop thread ---------------------------------------------------------- */

/* paho writes a publish that does not fit the socket only after long
 * waits, so slices stay at most this large even when protocol_size allows
 * more (net-queue's peers accept any slice size). */
#define SLICE_MAX (256 * 1024)
/* In-flight bytes allowed per peer, whatever the message sizes.  More is
 * slower, not faster: once publishes queue up in paho behind a full socket,
 * paho sends them only on its later rounds (bench/compare, 2 MiB messages
 * through mosquitto: 8 MiB in flight gives a third of 1 MiB's rate). */
#define WINDOW (1024 * 1024)

static size_t slice_size(const nq_comm *c)
{
    int64_t p = c->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    return p < SLICE_MAX ? (size_t)p : SLICE_MAX;
}

static uint64_t window(const nq_comm *c)
{
    uint64_t two = 2 * (uint64_t)slice_size(c);
    return two > WINDOW ? two : WINDOW;
}

static void mqtt_flush(nqi_session *s)
{
    nq_comm *c = s->comm;
    mqtt_state *st = c->tp;
    if (s->ended) {
        return;
    }
    size_t slice = slice_size(c);
    while (s->out_sent < window(c) && !atomic_load(&st->lost)) {
        struct iovec iov[64];
        size_t total;
        int n = nqi_session_out_iov(s, iov, NULL, 64, slice, &total);
        if (n == 0) {
            break;
        }
        /* paho copies the payload into its own queue, so a slice that is
         * already contiguous goes as it is. */
        uint8_t *buf = n == 1 ? NULL : malloc(total);
        struct sent *sn = calloc(1, sizeof(*sn));
        if ((n > 1 && buf == NULL) || sn == NULL) {
            free(buf);
            free(sn);
            nqi_session_end(s, NQ_ENOMEM);
            return;
        }
        if (buf != NULL) {
            nqi_iov_copy(buf, iov, n);
        }
        sn->len = total;
        sn->cmd.session = s;
        nqi_session_ref(s);
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_sent;
        ro.onFailure = on_send_failed;
        ro.context = sn;
        int rc = MQTTAsync_send(st->client, s->topic, (int)total,
                                buf != NULL ? buf : iov[0].iov_base, st->qos, 0, &ro);
        free(buf);
        if (rc != MQTTASYNC_SUCCESS) {
            nqi_session_unref(s);
            free(sn);
            nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT publish refused (%d)", rc);
            nqi_session_end(s, NQ_ECONNRESET);
            return;
        }
        s->out_sent += total;
        sn->next = st->inflight;
        if (st->inflight != NULL) {
            st->inflight->prev = sn;
        }
        st->inflight = sn;
    }
    if (nqi_session_finished(s) && s->out_sent == 0) {
        nqi_session_end(s, 0);
    }
}

static char *topic_for(mqtt_state *st, const char *dir, const char *hex)
{
    size_t n = st->prefix_len + strlen(dir) + NQI_ID_HEX_LEN + 1;
    char *t = malloc(n);
    if (t != NULL) {
        snprintf(t, n, "%.*s%s%s", (int)st->prefix_len, st->sub_topic, dir, hex);
    }
    return t;
}

/* Server: the session for a client topic, created on its first message. */
static nqi_session *server_session(nqi_loop *l, const nq_id *from)
{
    for (nqi_session *s = l->sessions; s != NULL; s = s->loop_next) {
        if (nq_id_equal(&s->route, from)) {
            return s;
        }
    }
    nq_comm *c = l->comm;
    if (l->closing) {
        return NULL;
    }
    nqi_session *s = nqi_session_new(c, l, -1);
    if (s == NULL) {
        return NULL;
    }
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(from, hex);
    s->route = *from;
    s->topic = topic_for(c->tp, "s2c/", hex);
    s->conn_state = NQI_CONN_OPEN;
    s->deadline_ms = nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    l->pending_ini++;
    nqi_live_inc(c);
    nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
    if (s->topic == NULL) {
        nqi_session_end(s, NQ_ENOMEM);
        return NULL;
    }
    return s;
}

static void on_data(nqi_loop *l, struct arrival *a)
{
    nq_comm *c = l->comm;
    nqi_session *s = c->purpose == NQ_SERVER ? server_session(l, &a->from) : c->client;
    if (s == NULL || s->ended) {
        return;
    }
    nqi_session_ref(s);
    int had_ini = s->ini_received;
    int rv = nqi_session_in(s, a->msg->payload, (size_t)a->msg->payloadlen);
    if (rv == 0 && !had_ini && s->ini_received && c->purpose == NQ_SERVER &&
        !nq_id_equal(&s->peer, &s->route)) {
        nqi_logf(&c->log, NQ_LOG_WARN, "INI id differs from the id in the client's topic");
        rv = NQ_EPROTO;
    }
    if (rv != 0) {
        nqi_session_end(s, rv);
    } else {
        nqi_session_deliver(s);
        mqtt_flush(s);
    }
    nqi_session_unref(s);
}

static void unlink_sent(mqtt_state *st, struct sent *sn)
{
    if (sn->prev != NULL) {
        sn->prev->next = sn->next;
    } else if (st->inflight == sn) {
        st->inflight = sn->next;
    }
    if (sn->next != NULL) {
        sn->next->prev = sn->prev;
    }
    sn->prev = sn->next = NULL;
}

static void mqtt_on_command(nqi_loop *l, nqi_cmd *cmd)
{
    switch (cmd->subtype) {
    case MQ_DATA: {
        struct arrival *a = (struct arrival *)cmd;
        on_data(l, a);
        MQTTAsync_freeMessage(&a->msg);
        free(a);
        break;
    }
    case MQ_SENT:
    case MQ_SEND_FAILED: {
        struct sent *sn = (struct sent *)cmd;
        nqi_session *s = sn->cmd.session;
        unlink_sent(l->comm->tp, sn);
        if (!s->ended) {
            if (cmd->subtype == MQ_SENT) {
                s->out_sent -= sn->len;
                nqi_session_out_commit(s, sn->len);
                mqtt_flush(s);
            } else {
                nqi_session_end(s, NQ_ECONNRESET);
            }
        }
        /* run_command releases the session reference. */
        free(sn);
        break;
    }
    case MQ_LOST: {
        nqi_session *next;
        for (nqi_session *s = l->sessions; s != NULL; s = next) {
            next = s->loop_next;
            nqi_session_end(s, NQ_ECONNRESET);
        }
        free(cmd);
        break;
    }
    default:
        free(cmd);
        break;
    }
}

static void mqtt_loop_start(nqi_loop *l)
{
    if (l->comm->client != NULL) {
        nqi_session_mark_dirty(l->comm->client);
    }
}

static void mqtt_session_end(nqi_session *s)
{
    s->out_sent = 0;
}

/* ---- open and shutdown ------------------------------------------------------- */

static void on_disconnected(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    mqtt_state *st = context;
    pthread_mutex_lock(&st->mu);
    st->disconnected = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void on_disconnect_failed(void *context, MQTTAsync_failureData *resp)
{
    (void)resp;
    on_disconnected(context, NULL);
}

/* Waits for a flag under st->mu, at most timeout_ms. */
static void wait_flag(mqtt_state *st, const int *flag, int64_t timeout_ms)
{
    struct timespec dl = nqi_deadline_after(timeout_ms);
    pthread_mutex_lock(&st->mu);
    while (*flag == 0) {
        if (pthread_cond_timedwait(&st->cv, &st->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
}

static int mqtt_open(nq_comm *c)
{
    mqtt_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NQ_ENOMEM;
    }
    c->tp = st;
    pthread_mutex_init(&st->mu, NULL);
    nqi_cond_init(&st->cv);
    st->qos = (int)c->opts.ints[NQ_OPT_MQTT_QOS];
    nqi_id_hex(&c->opts.id, st->own_hex);
    const char *prefix = c->opts.mqtt_prefix != NULL ? c->opts.mqtt_prefix : "";
    st->prefix_len = strlen(prefix);
    if (c->purpose == NQ_SERVER) {
        snprintf(st->sub_topic, sizeof(st->sub_topic), "%sc2s/+", prefix);
    } else {
        snprintf(st->sub_topic, sizeof(st->sub_topic), "%ss2c/%s", prefix, st->own_hex);
        c->client->topic = topic_for(st, "c2s/", st->own_hex);
        if (c->client->topic == NULL) {
            return NQ_ENOMEM;
        }
        c->client->conn_state = NQI_CONN_OPEN;
    }

    char uri[300];
    int v6 = strchr(c->opts.host, ':') != NULL;
    snprintf(uri, sizeof(uri), "%s://%s%s%s:%u", c->opts.tls ? "ssl" : "tcp", v6 ? "[" : "",
             c->opts.host, v6 ? "]" : "", (unsigned)c->opts.port);
    int rc = MQTTAsync_create(&st->client, uri, st->own_hex, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot create an MQTT client for %s (%d)", uri, rc);
        st->client = NULL;
        return NQ_EADDR;
    }
    MQTTAsync_setCallbacks(st->client, c, on_connection_lost, on_message, NULL);

    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    co.keepAliveInterval = ka > 0 ? (int)(ka / 1000) : 0;
    co.cleansession = 1;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    int64_t timeout_ms = c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    co.connectTimeout = timeout_ms >= 2000 ? (int)(timeout_ms / 1000) : 1;
    co.onSuccess = on_connected;
    co.onFailure = on_connect_failed;
    co.context = c;
    if (c->opts.tls) {
        ssl.trustStore = c->opts.cert_path;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        co.ssl = &ssl;
    }
    rc = MQTTAsync_connect(st->client, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot start the MQTT connection to %s (%d)", uri, rc);
        return NQ_ECONNREFUSED;
    }
    /* Nothing may be published before the subscription exists, or the
     * broker would drop the peer's answers: wait for CONNACK and SUBACK. */
    wait_flag(st, &st->ready, timeout_ms + 1000);
    pthread_mutex_lock(&st->mu);
    int ready = st->ready;
    if (ready == 0) {
        st->ready = NQ_ETIMEDOUT;
    }
    pthread_mutex_unlock(&st->mu);
    if (ready == 1) {
        return NQ_OK;
    }
    if (ready == 0) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "the MQTT broker at %s did not answer in time", uri);
        return NQ_ECONNREFUSED;
    }
    return ready;
}

/* A clean MQTT DISCONNECT once every session is over, so paho posts
 * nothing more to the loop. */
static void mqtt_close(nq_comm *c)
{
    mqtt_state *st = c->tp;
    if (st == NULL || st->client == NULL) {
        return;
    }
    if (!atomic_load(&st->lost) && MQTTAsync_isConnected(st->client)) {
        MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
        dop.timeout = 1000;
        dop.onSuccess = on_disconnected;
        dop.onFailure = on_disconnect_failed;
        dop.context = st;
        if (MQTTAsync_disconnect(st->client, &dop) == MQTTASYNC_SUCCESS) {
            wait_flag(st, &st->disconnected, 2000);
        }
    }
    MQTTAsync_setCallbacks(st->client, NULL, NULL, NULL, NULL);
}

static void mqtt_shutdown(nq_comm *c)
{
    mqtt_state *st = c->tp;
    if (st == NULL) {
        return;
    }
    if (st->client != NULL) {
        MQTTAsync_destroy(&st->client);
    }
    /* paho is gone: discard what it posted after the loop stopped, then the
     * publishes it never answered. */
    nqi_mpsc_node *n;
    while (c->loops != NULL && (n = nqi_mpsc_pop(&c->loops[0].cmds)) != NULL) {
        nqi_cmd *cmd = (nqi_cmd *)n;
        if (cmd->type != NQI_CMD_TRANSPORT) {
            nqi_cmd_release(cmd);
            continue;
        }
        if (cmd->subtype == MQ_DATA) {
            MQTTAsync_freeMessage(&((struct arrival *)cmd)->msg);
        } else if (cmd->subtype == MQ_SENT || cmd->subtype == MQ_SEND_FAILED) {
            unlink_sent(st, (struct sent *)cmd);
            nqi_session_unref(cmd->session);
        }
        free(cmd);
    }
    while (st->inflight != NULL) {
        struct sent *sn = st->inflight;
        unlink_sent(st, sn);
        nqi_session_unref(sn->cmd.session);
        free(sn);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
    c->tp = NULL;
}

const nqi_transport nqi_mqtt_transport = {
    .open = mqtt_open,
    .loop_start = mqtt_loop_start,
    .flush = mqtt_flush,
    .on_event = NULL,
    .resume = NULL,
    .on_command = mqtt_on_command,
    .session_end = mqtt_session_end,
    .close = mqtt_close,
    .shutdown = mqtt_shutdown,
    .pausable = 0,
};
