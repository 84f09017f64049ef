/*
 * The connection to the MQTT broker, through paho.mqtt.c's asynchronous
 * client.  nqi_mqtt_connect and nqi_mqtt_disconnect run on the caller's
 * thread (nq_open, nq_close); paho's callbacks run on paho's threads and
 * never block: they record an answer for the waiting caller or post a
 * command to worker 0, whose loop owns every session.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/ack.h"
#include "transports/mqtt/mqtt.h"

/* ---- the broker's socket ------------------------------------------------------ */

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

/* Calls fn for each descriptor of the process that is a TCP socket
 * connected to the broker.  Lists /proc/self/fd, so only open descriptors
 * are looked at. */
static void each_broker_socket(mqtt_comm *st, void (*fn)(mqtt_comm *st, int fd))
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return;
    }
    int own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end != '\0' || end == e->d_name || fd == own) {
            continue;
        }
        int type = 0;
        socklen_t len = sizeof(type);
        if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
            continue;
        }
        struct sockaddr_storage peer;
        len = sizeof(peer);
        if (getpeername((int)fd, (struct sockaddr *)&peer, &len) == 0 &&
            same_endpoint(&peer, &st->broker)) {
            fn(st, (int)fd);
        }
    }
    closedir(d);
}

static void remember(mqtt_comm *st, int fd)
{
    int *grown = realloc(st->known_fds, (st->nknown + 1) * sizeof(*grown));
    if (grown != NULL) {
        st->known_fds = grown;
        st->known_fds[st->nknown++] = fd;
    }
}

/* paho leaves Nagle's algorithm on and offers no way to turn it off, which
 * holds small publishes back by tens of milliseconds.  Our socket is the
 * one to the broker that was not open before we connected: only that one
 * gets TCP_NODELAY. */
static void nodelay_if_new(mqtt_comm *st, int fd)
{
    for (size_t i = 0; i < st->nknown; i++) {
        if (st->known_fds[i] == fd) {
            return;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int nqi_mqtt_broker_socket(const mqtt_comm *st, int timeout_ms)
{
    if (st->broker.ss_family == 0) {
        return -1;
    }
    int fd = socket(st->broker.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    socklen_t alen = st->broker.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : sizeof(struct sockaddr_in);
    int ok = connect(fd, (const struct sockaddr *)&st->broker, alen) == 0;
    if (!ok && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof(err);
        ok = poll(&p, 1, timeout_ms) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ok = ok && fcntl(fd, F_SETFL, 0) == 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
         setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0;
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when a plain TCP connection to the broker succeeds within a second:
 * tells a TLS failure apart from an unreachable broker. */
static int broker_reachable(const mqtt_comm *st)
{
    int fd = nqi_mqtt_broker_socket(st, 1000);
    if (fd < 0) {
        return 0;
    }
    close(fd);
    return 1;
}

/* st->ready: 0 while waiting, READY once subscribed, CONNECT_FAILED when the
 * connection failed (classified on the caller's thread), or an nq error. */
#define READY 1
#define CONNECT_FAILED 2

static void signal_ready(mqtt_comm *st, int value)
{
    pthread_mutex_lock(&st->mu);
    if (st->ready == 0) {
        st->ready = value;
    }
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void on_subscribed(void *context, MQTTAsync_successData *resp)
{
    nq_comm *c = context;
    /* A SUBACK of 0x80 means the broker refused a subscription. */
    int refused = 0;
    mqtt_comm *st = c->tp;
    if (resp != NULL && st->nsub > 1 && resp->alt.qosList != NULL) {
        for (int i = 0; i < st->nsub; i++) {
            refused |= resp->alt.qosList[i] == 0x80;
        }
    } else if (resp != NULL) {
        refused = resp->alt.qos == 0x80;
    }
    if (refused) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "the MQTT broker refused our subscription to %s",
                 st->sub_topic);
    }
    signal_ready(c->tp, refused ? NQ_EAUTH : READY);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData *resp)
{
    nq_comm *c = context;
    nqi_logf(&c->log, NQ_LOG_ERROR, "MQTT subscribe failed: %s",
             resp != NULL && resp->message != NULL ? resp->message : "no reason given");
    signal_ready(c->tp, NQ_ECONNREFUSED);
}

/* A server's will is retained: a client watches it only once the server's
 * INI has come, so a server lost between its INI and that subscription is
 * still noticed.  A live server removes it (an empty retained message) on
 * every connection, before it subscribes and so before it answers anyone,
 * and again when someone puts one there while it lives. */
static void clear_own_will(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    if (c->purpose != NQ_SERVER) {
        return;
    }
    /* Never behind our DISCONNECT: paho 1.3 never frees a publish queued
     * after it (and a closing server hears its own "lost" on nq/lost/+).
     * nqi_mqtt_disconnect waits for a removal already under way. */
    pthread_mutex_lock(&st->mu);
    int leaving = st->leaving;
    st->clearing += !leaving;
    pthread_mutex_unlock(&st->mu);
    if (leaving) {
        return;
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    if (MQTTAsync_send(st->client, st->will_topic, 0, "", st->qos, 1, &ro) !=
        MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_WARN, "cannot clear our retained will on %s", st->will_topic);
    }
    pthread_mutex_lock(&st->mu);
    st->clearing--;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* Subscribes to the peers' topics (and, on a server, to their wills). */
static int subscribe(nq_comm *c, MQTTAsync_responseOptions *ro)
{
    mqtt_comm *st = c->tp;
    char lost[NQI_MQTT_TOPIC_MAX];
    pthread_mutex_lock(&st->mu);
    memcpy(lost, st->lost_topic, sizeof(lost));
    pthread_mutex_unlock(&st->mu);
    /* The peers' data, a server's clients' wills or a client's server's,
     * and acknowledged delivery's signals. */
    char *topics[3] = {st->sub_topic};
    int qos[3] = {st->qos, st->qos, st->qos};
    int n = 1;
    if (lost[0] != 0) {
        topics[n++] = lost;
    }
    if (st->ack_topic[0] != 0) {
        topics[n++] = st->ack_topic;
    }
    st->nsub = n;
    if (n == 1) {
        return MQTTAsync_subscribe(st->client, st->sub_topic, st->qos, ro);
    }
    return MQTTAsync_subscribeMany(st->client, n, topics, qos, ro);
}

static void on_connected(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    nq_comm *c = context;
    mqtt_comm *st = c->tp;
    if (st->broker.ss_family != 0) {
        each_broker_socket(st, nodelay_if_new);
    }
    clear_own_will(c);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_subscribed;
    ro.onFailure = on_subscribe_failed;
    ro.context = c;
    if (subscribe(c, &ro) != MQTTASYNC_SUCCESS) {
        signal_ready(st, NQ_ECONNREFUSED);
    }
}

static void run_call_back(nqi_loop *l, nqi_cmd *cmd)
{
    free(cmd);
    nqi_mqtt_call_back(nqi_worker_of(l));
}

static void discard_cmd(nqi_cmd *cmd)
{
    free(cmd);
}

/* A connection came back after a loss (paho reconnects a server's, and a
 * reconnecting client's): the broker forgot the subscriptions of the clean
 * session. */
static void on_reconnected(void *context, char *cause)
{
    (void)cause;
    nq_comm *c = context;
    mqtt_comm *st = c->tp;
    if (!atomic_exchange(&st->reconnecting, 0)) {
        return; /* the first connection, which on_connected handles */
    }
    clear_own_will(c);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    subscribe(c, &ro);
    atomic_store(&st->lost, 0);
    nqi_logf(&c->log, NQ_LOG_INFO, "reconnected to the MQTT broker");
    if (c->purpose == NQ_SERVER && nqi_ack_wanted(c)) {
        nqi_cmd *cmd = calloc(1, sizeof(*cmd));
        if (cmd != NULL) {
            cmd->run = run_call_back;
            cmd->discard = discard_cmd;
            nqi_loop_post(&c->workers[0].loop, cmd);
        }
    }
}

void nqi_mqtt_watch_server(nq_comm *c, const nq_id *server)
{
    mqtt_comm *st = c->tp;
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(server, hex);
    char topic[NQI_MQTT_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "%.*snq/lost/%s", (int)st->prefix_len, st->sub_topic, hex);
    pthread_mutex_lock(&st->mu);
    memcpy(st->lost_topic, topic, sizeof(topic)); /* subscribed again after a reconnect */
    pthread_mutex_unlock(&st->mu);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    if (MQTTAsync_subscribe(st->client, topic, st->qos, &ro) != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_WARN, "cannot watch the server's will on %s", topic);
    }
}

static void on_connect_failed(void *context, MQTTAsync_failureData *resp)
{
    nq_comm *c = context;
    mqtt_comm *st = c->tp;
    pthread_mutex_lock(&st->mu);
    st->connack = resp != NULL ? resp->code : 0;
    pthread_mutex_unlock(&st->mu);
    nqi_logf(&c->log, NQ_LOG_ERROR, "cannot connect to the MQTT broker at %s:%u: %s",
             c->opts.host, (unsigned)c->opts.port,
             resp != NULL && resp->message != NULL ? resp->message : "no reason given");
    signal_ready(c->tp, CONNECT_FAILED);
}

/* The broker is gone, posted to worker 0. */
static void run_lost(nqi_loop *l, nqi_cmd *cmd)
{
    free(cmd);
    /* The live sessions end; one that ended already (a client waiting to
     * connect again, a server's kept for its peer's return) waits on. */
    nqi_worker *w = nqi_worker_of(l);
    nqi_node *n, *next;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = next) {
        next = nqi_list_next(&w->sessions, n);
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        if (!s->ended) {
            nqi_session_end(s, NQ_ECONNRESET);
        }
    }
}

static void discard_lost(nqi_cmd *cmd)
{
    free(cmd);
}

static void on_connection_lost(void *context, char *cause)
{
    nq_comm *c = context;
    mqtt_comm *st = c->tp;
    if (atomic_exchange(&st->lost, 1)) {
        return;
    }
    if (st->redials) {
        atomic_store(&st->reconnecting, 1);
    }
    nqi_logf(&c->log, NQ_LOG_ERROR, "lost the MQTT broker: %s",
             cause != NULL ? cause : "connection closed");
    signal_ready(st, NQ_ECONNRESET);
    nqi_cmd *cmd = malloc(sizeof(*cmd));
    if (cmd != NULL) {
        cmd->run = run_lost;
        cmd->discard = discard_lost;
        nqi_loop_post(&c->workers[0].loop, cmd);
    }
}

/* A message from the broker on its way to worker 0: bytes from a peer, or
 * (will set) a peer's will. */
typedef struct arrival {
    nqi_cmd cmd; /* first member */
    MQTTAsync_message *msg;
    nq_id from;
    int kind;
} arrival;

enum { ARRIVED_DATA, ARRIVED_WILL, ARRIVED_SIGNAL };

static void run_arrival(nqi_loop *l, nqi_cmd *cmd)
{
    arrival *a = (arrival *)cmd;
    if (a->kind == ARRIVED_WILL) {
        nqi_mqtt_peer_lost(nqi_worker_of(l), &a->from);
    } else if (a->kind == ARRIVED_SIGNAL) {
        nqi_mqtt_signal(nqi_worker_of(l), &a->from, a->msg);
    } else {
        nqi_mqtt_arrived(nqi_worker_of(l), &a->from, a->msg);
    }
    MQTTAsync_freeMessage(&a->msg);
    free(a);
}

static void discard_arrival(nqi_cmd *cmd)
{
    arrival *a = (arrival *)cmd;
    MQTTAsync_freeMessage(&a->msg);
    free(a);
}

/* Parses <prefix><dir>/<32 hex digits>. */
static int topic_id(const mqtt_comm *st, const char *topic, int len, const char *dir, nq_id *out)
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
    mqtt_comm *st = c->tp;
    int len = topic_len > 0 ? topic_len : (int)strlen(topic);
    arrival *a = calloc(1, sizeof(*a));
    int ok = a != NULL;
    int news = 1;
    if (ok) {
        const char *dir = c->purpose == NQ_SERVER ? "c2s/" : "s2c/";
        ok = topic_id(st, topic, len, dir, &a->from) == 0;
        if (!ok && topic_id(st, topic, len, "nq/lost/", &a->from) == 0) {
            ok = 1;
            news = msg->payloadlen > 0; /* empty: a server's will removed */
            if (news && c->purpose == NQ_SERVER && nq_id_equal(&a->from, &c->opts.id)) {
                clear_own_will(c); /* ours, while we live: stale or forged */
            }
            a->kind = ARRIVED_WILL;
        }
        if (!ok && st->ack_topic[0] != 0 && topic_id(st, topic, len, "nq/ack/", &a->from) == 0) {
            ok = 1;
            a->kind = ARRIVED_SIGNAL;
        }
        if (!ok) {
            nqi_logf(&c->log, NQ_LOG_WARN, "ignoring a message on unexpected topic %.*s", len,
                     topic);
            nqi_stat_add(c, NQI_ST_PROTOCOL_ERRORS, 1);
        }
    }
    MQTTAsync_free(topic);
    if (!ok || !news) {
        free(a);
        MQTTAsync_freeMessage(&msg);
        return 1;
    }
    a->msg = msg;
    a->cmd.run = run_arrival;
    a->cmd.discard = discard_arrival;
    nqi_loop_post(&c->workers[0].loop, &a->cmd);
    return 1;
}

static void on_disconnected(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    mqtt_comm *st = context;
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

/* ---- the caller's thread ------------------------------------------------------ */

int nqi_mqtt_wait_flag(mqtt_comm *st, const int *flag, int64_t timeout_ms)
{
    struct timespec dl = nqi_deadline_after(timeout_ms);
    pthread_mutex_lock(&st->mu);
    while (*flag == 0 && nqi_cond_until(&st->cv, &st->mu, &dl) == 0) {
    }
    int value = *flag;
    pthread_mutex_unlock(&st->mu);
    return value;
}

/* Resolves the broker's address, for telling paho's socket apart and for
 * the reachability probe (so neither resolves on paho's thread). */
static void resolve_broker(nq_comm *c, mqtt_comm *st)
{
    struct addrinfo *ai;
    if (nqi_netloc_resolve(c->opts.host, c->opts.port, 0, &c->log, &ai) != NQ_OK) {
        return;
    }
    if (ai->ai_addrlen <= sizeof(st->broker)) {
        memcpy(&st->broker, ai->ai_addr, ai->ai_addrlen);
    }
    freeaddrinfo(ai);
}

#define MQTT_KEEPALIVE_MIN_S 2

int nqi_mqtt_connect(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    char uri[300];
    if (nqi_netloc_format(uri, sizeof(uri), c->opts.tls ? "ssl://" : "tcp://", c->opts.host,
                          c->opts.port) != NQ_OK) {
        return NQ_EADDR;
    }
    resolve_broker(c, st);
    const char *client_id = c->opts.mqtt_client_id != NULL ? c->opts.mqtt_client_id : st->own_hex;
    int rc = MQTTAsync_create(&st->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot create an MQTT client for %s (%d)", uri, rc);
        st->client = NULL;
        return NQ_EADDR;
    }
    MQTTAsync_setCallbacks(st->client, c, on_connection_lost, on_message, NULL);
    MQTTAsync_setConnected(st->client, c, on_reconnected);
    nqi_mqtt_login_watch(c);

    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    /* The broker publishes this if our connection dies without DISCONNECT. */
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    will.topicName = st->will_topic;
    will.message = NULL;
    will.payload.data = "lost";
    will.payload.len = 4;
    will.qos = st->qos;
    will.retained = c->purpose == NQ_SERVER; /* see clear_own_will */
    co.will = &will;
    if (st->redials) {
        co.automaticReconnect = 1;
        co.minRetryInterval = 1;
        co.maxRetryInterval = 10;
    }
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    /* MQTT's keep-alive is whole seconds, and a broker drops a client
     * after 1.5 of them: two thirds of ours keeps both sides' detection
     * within about twice NQ_OPT_KEEPALIVE_MS, as on TCP.  At least two,
     * though: paho sends its PINGREQ on the first of its rounds (up to
     * about 1.1 s apart when idle) after the keep-alive is due, so with one
     * second a busy machine's late ping made the broker drop an idle,
     * healthy client. */
    int64_t ka = c->opts.ints[NQ_OPT_KEEPALIVE_MS];
    int64_t ka_s = 2 * ka / 3000;
    co.keepAliveInterval = ka <= 0                      ? 0
                           : ka_s > MQTT_KEEPALIVE_MIN_S ? (int)ka_s
                                                         : MQTT_KEEPALIVE_MIN_S;
    co.cleansession = 1;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    /* paho 1.3 makes a connection in rounds of its 1-second poll, so a
     * connection of a process that has others takes about two seconds
     * where none of them can wake that poll (wake.c): never wait less than
     * four. */
    int64_t timeout_ms = c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    if (timeout_ms < 4000) {
        timeout_ms = 4000;
    }
    co.connectTimeout = (int)(timeout_ms / 1000);
    co.onSuccess = on_connected;
    co.onFailure = on_connect_failed;
    co.context = c;
    int rv = nqi_mqtt_login_apply(c, &co, &ssl);
    if (rv != NQ_OK) {
        return rv;
    }
    if (st->broker.ss_family != 0) {
        each_broker_socket(st, remember);
    }
    rc = MQTTAsync_connect(st->client, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "cannot start the MQTT connection to %s (%d)", uri, rc);
        return NQ_ECONNREFUSED;
    }
    /* Nothing may be published before the subscription exists, or the
     * broker would drop the peer's answers: wait for CONNACK and SUBACK. */
    int ready = nqi_mqtt_wake_until(st, &st->ready, timeout_ms + 1000);
    if (ready == 0) {
        signal_ready(st, NQ_ETIMEDOUT); /* a late answer changes nothing */
        nqi_logf(&c->log, NQ_LOG_ERROR, "the MQTT broker at %s did not answer in time", uri);
        return NQ_ECONNREFUSED;
    }
    if (ready == READY) {
        nqi_mqtt_wake_join(st);
        return NQ_OK;
    }
    if (ready == CONNECT_FAILED) {
        pthread_mutex_lock(&st->mu);
        int connack = st->connack;
        pthread_mutex_unlock(&st->mu);
        if (nqi_mqtt_login_refused(c, connack)) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "the MQTT broker at %s refused our credentials",
                     uri);
            return NQ_EAUTH;
        }
        return c->opts.tls && broker_reachable(st) ? NQ_ETLS : NQ_ECONNREFUSED;
    }
    return ready;
}

void nqi_mqtt_disconnect(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    if (st == NULL || st->client == NULL) {
        return;
    }
    nqi_mqtt_wake_leave(st);
    struct timespec dl = nqi_deadline_after(1000);
    pthread_mutex_lock(&st->mu);
    st->leaving = 1;
    while (st->clearing > 0 && nqi_cond_until(&st->cv, &st->mu, &dl) == 0) {
    }
    pthread_mutex_unlock(&st->mu);
    if (!atomic_load(&st->lost) && MQTTAsync_isConnected(st->client)) {
        /* A DISCONNECT discards the will, but peers whose sessions close
         * dropped (its timeout) still wait for us: say it ourselves.  A
         * peer whose session ended cleanly no longer listens. */
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        MQTTAsync_send(st->client, st->will_topic, 4, "lost", 0, 0, &ro);
        MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
        dop.timeout = 1000;
        dop.onSuccess = on_disconnected;
        dop.onFailure = on_disconnect_failed;
        dop.context = st;
        if (MQTTAsync_disconnect(st->client, &dop) == MQTTASYNC_SUCCESS) {
            nqi_mqtt_wait_flag(st, &st->disconnected, 2000);
        }
    }
    MQTTAsync_setCallbacks(st->client, NULL, NULL, NULL, NULL);
}
