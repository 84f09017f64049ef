/*
 * The MQTT transport on worker 0's loop: topics to sessions (a server
 * admits a client on its first message), arrivals fed to their session,
 * and each session's output published in slices as earlier ones are
 * confirmed, so at most a small window per peer sits in paho's queue
 * whatever the message sizes.  paho's answer to a publish comes on paho's
 * thread and is only posted here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/mqtt/mqtt.h"

/* paho writes a publish that does not fit the socket only after long
 * waits, so slices stay at most this large even when protocol_size allows
 * more (net-queue's peers accept any slice size). */
#define SLICE_MAX (256 * 1024)
/* In-flight bytes allowed per peer, whatever the message sizes.  More is
 * slower, not faster: once publishes queue up in paho behind a full socket,
 * paho sends them only on its later rounds (bench/compare, 2 MiB messages
 * through mosquitto: 8 MiB in flight gives a third of 1 MiB's rate). */
#define WINDOW (1024 * 1024)

char *nqi_mqtt_topic(const mqtt_comm *st, const char *dir, const char *hex)
{
    size_t n = st->prefix_len + strlen(dir) + NQI_ID_HEX_LEN + 1;
    char *t = malloc(n);
    if (t != NULL) {
        snprintf(t, n, "%.*s%s%s", (int)st->prefix_len, st->sub_topic, dir, hex);
    }
    return t;
}

/* ---- publishes ------------------------------------------------------------------- */

/* A publish in flight; paho's answer comes back as this command.  Listed
 * until then, because paho drops the callbacks of publishes it never got to
 * send when the broker goes away. */
typedef struct sent {
    nqi_cmd cmd;    /* first member */
    nqi_session *s; /* a reference */
    unsigned epoch; /* the session's connection it went out on */
    size_t len;
    int ok;
    nqi_node link;  /* in mqtt_comm.inflight */
} sent;

static void release_sent(sent *sn)
{
    nqi_list_remove(&sn->link);
    nqi_session_unref(sn->s);
    free(sn);
}

static void run_sent(nqi_loop *l, nqi_cmd *cmd)
{
    (void)l;
    sent *sn = (sent *)cmd;
    nqi_session *s = sn->s;
    if (!s->ended && sn->epoch == mqtt_sess_of(s)->epoch) {
        if (sn->ok) {
            s->out_sent -= sn->len;
            nqi_session_out_commit(s, sn->len);
            nqi_mqtt_flush(s);
        } else {
            nqi_session_end(s, NQ_ECONNRESET);
        }
    }
    release_sent(sn);
}

static void discard_sent(nqi_cmd *cmd)
{
    release_sent((sent *)cmd);
}

/* paho's thread. */
static void on_sent(void *context, MQTTAsync_successData *resp)
{
    (void)resp;
    sent *sn = context;
    sn->ok = 1;
    nqi_loop_post(&sn->s->worker->loop, &sn->cmd);
}

/* paho's thread. */
static void on_send_failed(void *context, MQTTAsync_failureData *resp)
{
    (void)resp;
    sent *sn = context;
    sn->ok = 0;
    nqi_loop_post(&sn->s->worker->loop, &sn->cmd);
}

void nqi_mqtt_forget_inflight(mqtt_comm *st)
{
    nqi_node *n;
    while ((n = nqi_list_first(&st->inflight)) != NULL) {
        release_sent(NQI_CONTAINER(n, sent, link));
    }
}

/* A PUBLISH's bytes besides its payload: the fixed header (at most 5),
 * the topic's length and the topic (a prefix and "c2s/" or "s2c/" and a
 * hex id), and the packet id. */
#define PUBLISH_OVERHEAD(prefix_len) (5 + 2 + (prefix_len) + 4 + NQI_ID_HEX_LEN + 2)

static size_t slice_size(const nq_comm *c)
{
    int64_t p = c->opts.ints[NQ_OPT_PROTOCOL_SIZE];
    size_t slice = p < SLICE_MAX ? (size_t)p : SLICE_MAX;
    int64_t most = c->opts.ints[NQ_OPT_MQTT_MAX_PUBLISH];
    if (most > 0) {
        const mqtt_comm *st = c->tp;
        size_t room = (size_t)most - PUBLISH_OVERHEAD(st->prefix_len);
        slice = room < slice ? room : slice;
    }
    return slice;
}

static uint64_t window(const nq_comm *c)
{
    uint64_t two = 2 * (uint64_t)slice_size(c);
    return two > WINDOW ? two : WINDOW;
}

/* The bytes that may be published now.  A reconnecting client holds its
 * data back until a server has answered its INI: a broker drops what no
 * one subscribes to, so data sent ahead of an answer could be lost with
 * its future already complete. */
static size_t allowed(const nqi_session *s, size_t slice)
{
    if (s->comm->purpose != NQ_CLIENT || s->ini_received ||
        s->comm->opts.ints[NQ_OPT_RECONNECT_MS] <= 0) {
        return slice;
    }
    if (s->hello == NULL) {
        return 0; /* the INI is out; data waits for the answer */
    }
    uint64_t left = NQI_HEADER_SIZE + s->hello->payload_len - s->out_off - s->out_sent;
    return left < slice ? (size_t)left : slice;
}

void nqi_mqtt_flush(nqi_session *s)
{
    nq_comm *c = s->comm;
    mqtt_comm *st = c->tp;
    if (s->ended) {
        return;
    }
    size_t slice = slice_size(c);
    while (s->out_sent < window(c) && !atomic_load(&st->lost)) {
        struct iovec iov[64];
        size_t total;
        size_t most = allowed(s, slice);
        int n = most == 0 ? 0 : nqi_session_out_iov(s, iov, NULL, 64, most, &total);
        if (n == 0) {
            break;
        }
        /* paho copies the payload into its own queue, so a slice that is
         * already contiguous goes as it is. */
        uint8_t *buf = n == 1 ? NULL : malloc(total);
        sent *sn = calloc(1, sizeof(*sn));
        if ((n > 1 && buf == NULL) || sn == NULL) {
            free(buf);
            free(sn);
            nqi_session_end(s, NQ_ENOMEM);
            return;
        }
        if (buf != NULL) {
            nqi_iov_copy(buf, iov, n);
        }
        sn->cmd.run = run_sent;
        sn->cmd.discard = discard_sent;
        sn->len = total;
        sn->s = s;
        sn->epoch = mqtt_sess_of(s)->epoch;
        nqi_session_ref(s);
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_sent;
        ro.onFailure = on_send_failed;
        ro.context = sn;
        int rc = MQTTAsync_send(st->client, mqtt_sess_of(s)->topic, (int)total,
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
        nqi_list_append(&st->inflight, &sn->link);
    }
    if (nqi_session_finished(s) && s->out_sent == 0) {
        nqi_session_end(s, 0);
    }
}

/* ---- arrivals -------------------------------------------------------------------- */

/* The first session of the client with this id that is live (waiting 0)
 * or kept for the client's return (waiting 1). */
static nqi_session *with_route(nqi_worker *w, const nq_id *from, int waiting)
{
    nqi_node *n;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = nqi_list_next(&w->sessions, n)) {
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        int match = waiting ? s->waiting : !s->ended;
        if (match && nq_id_equal(&mqtt_sess_of(s)->route, from)) {
            return s;
        }
    }
    return NULL;
}

nqi_session *nqi_mqtt_find(nqi_worker *w, const nq_id *from)
{
    return with_route(w, from, 0);
}

nqi_session *nqi_mqtt_server_session(nqi_worker *w, const nq_id *from, int anew)
{
    nqi_session *s = nqi_mqtt_find(w, from);
    if (s != NULL || (!anew && with_route(w, from, 1) != NULL)) {
        return s;
    }
    s = nqi_peers_admit(w);
    if (s == NULL) {
        return NULL;
    }
    mqtt_sess *ms = mqtt_sess_of(s);
    nqi_mqtt_server_session_init(s);
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(from, hex);
    ms->route = *from;
    ms->topic = nqi_mqtt_topic(w->comm->tp, "s2c/", hex);
    if (ms->topic == NULL) {
        nqi_session_end(s, NQ_ENOMEM);
        return NULL;
    }
    return s;
}

/* ---- strangers ------------------------------------------------------------------- */

/* A client that left no will and has said nothing but its INI is either a
 * net-queue client that only listens or an INI anyone published on an open
 * broker: nothing on the wire tells them apart.  A server keeps at most
 * STRANGERS_MAX of them; beyond that, the one silent longest makes room.
 * Forged INIs so cost a bounded number of sessions however many come, and
 * a real client is dropped only while they flood. */
#define STRANGERS_MAX 1024

void nqi_mqtt_stranger_gone(nqi_session *s)
{
    mqtt_sess *ms = mqtt_sess_of(s);
    if (ms->stranger_link.next != NULL) {
        nqi_list_remove(&ms->stranger_link);
        ((mqtt_comm *)s->comm->tp)->nstrangers--;
    }
}

static void stranger_arrived(nqi_session *s)
{
    mqtt_comm *st = s->comm->tp;
    nqi_list_append(&st->strangers, &mqtt_sess_of(s)->stranger_link);
    if (++st->nstrangers <= STRANGERS_MAX) {
        return;
    }
    nqi_node *first = nqi_list_first(&st->strangers);
    mqtt_sess *oldest = NQI_CONTAINER(first, mqtt_sess, stranger_link);
    nqi_session *gone = NQI_CONTAINER((void *)oldest, nqi_session, tp);
    nqi_mqtt_stranger_gone(gone);
    st->strangers_dropped++;
    if ((st->strangers_dropped & (st->strangers_dropped - 1)) == 0) { /* 1, 2, 4, ... */
        nqi_logf(&s->comm->log, NQ_LOG_WARN,
                 "%d MQTT clients that left no will were heard only in their INI: "
                 "the longest silent is dropped (%llu so far)",
                 STRANGERS_MAX, (unsigned long long)st->strangers_dropped);
    }
    nqi_session_end(gone, NQ_ECONNRESET);
}

void nqi_mqtt_arrived(nqi_worker *w, const nq_id *from, const MQTTAsync_message *msg)
{
    nq_comm *c = w->comm;
    nqi_session *s = c->purpose == NQ_SERVER ? nqi_mqtt_server_session(w, from, 0) : c->client;
    if (s == NULL || s->ended) {
        return;
    }
    nqi_session_ref(s);
    int had_ini = s->ini_received;
    if (c->purpose == NQ_SERVER) {
        mqtt_sess_of(s)->heard_at = nqi_now_ms();
        if (had_ini) {
            nqi_mqtt_stranger_gone(s); /* it spoke */
        }
    }
    int rv = nqi_session_in(s, msg->payload, (size_t)msg->payloadlen);
    if (rv == 0 && !had_ini && s->ini_received && c->purpose == NQ_SERVER &&
        !nq_id_equal(&s->peer, &mqtt_sess_of(s)->route)) {
        nqi_logf(&c->log, NQ_LOG_WARN, "INI id differs from the id in the client's topic");
        rv = NQ_EPROTO;
    }
    if (rv == 0 && !had_ini && s->ini_received && c->purpose == NQ_SERVER &&
        !mqtt_sess_of(s)->announced) {
        stranger_arrived(s);
    }
    if (rv == 0 && !had_ini && s->ini_received && c->purpose == NQ_CLIENT) {
        nqi_mqtt_watch_server(c, &s->peer);
    }
    if (rv != 0) {
        nqi_session_end(s, rv);
    } else {
        nqi_session_deliver(s);
        nqi_mqtt_flush(s);
    }
    nqi_session_unref(s);
}

void nqi_mqtt_peer_lost(nqi_worker *w, const nq_id *who)
{
    nq_comm *c = w->comm;
    nqi_session *s = NULL;
    if (c->purpose == NQ_CLIENT) {
        s = c->client->ini_received && nq_id_equal(&c->client->peer, who) ? c->client : NULL;
    } else {
        s = nqi_mqtt_find(w, who);
    }
    if (s == NULL || s->ended) {
        return;
    }
    char text[NQ_ID_STRLEN];
    nq_id_format(who, text, sizeof(text));
    nqi_logf(&c->log, NQ_LOG_WARN, "the broker lost peer %s", text);
    nqi_session_end(s, NQ_ECONNRESET);
}
