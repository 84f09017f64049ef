/*
 * The MQTT transport (see mqtt.h): an MQTT server is one more client of the
 * broker, so both roles connect to it in nq_open.  Every session lives on
 * worker 0; paho's threads only post commands there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/heap.h"
#include "transports/mqtt/mqtt.h"
#include "transports/registry.h"

/* No server answered the INI of a reconnecting client in time. */
static void no_answer(nqi_timer *t)
{
    mqtt_sess *ms = NQI_CONTAINER(t, mqtt_sess, answer);
    nqi_session *s = NQI_CONTAINER((void *)ms, nqi_session, tp);
    if (s->ini_received || s->ended) {
        return;
    }
    nqi_logf(&s->comm->log, NQ_LOG_WARN, "no MQTT server answered within %lld ms",
             (long long)s->comm->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS]);
    nqi_session_end(s, NQ_ECONNREFUSED);
}

void nqi_mqtt_await_answer(nqi_session *s)
{
    nq_comm *c = s->comm;
    if (c->opts.ints[NQ_OPT_RECONNECT_MS] <= 0) {
        return; /* a client that does not reconnect waits as long as it takes */
    }
    int64_t by = nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    if (nqi_timer_arm(&s->worker->loop, &mqtt_sess_of(s)->answer, by) != NQ_OK) {
        nqi_session_end(s, NQ_ENOMEM);
    }
}

/* A server closes and waits for its clients' FINs.  The broker tells of a
 * libnq client's end (its will), but of no other: a net-queue client that
 * died, or an INI someone forged, would hold the close up for good.  Such a
 * client is waited for while it is heard from; one silent for three
 * keep-alive periods of the closing server's is taken for lost. */
#define QUIET_PERIODS 3

static void quiet_while_closing(nqi_timer *t)
{
    mqtt_sess *ms = NQI_CONTAINER(t, mqtt_sess, answer);
    nqi_session *s = NQI_CONTAINER((void *)ms, nqi_session, tp);
    if (s->ended) {
        return;
    }
    int64_t quiet = QUIET_PERIODS * s->comm->opts.ints[NQ_OPT_KEEPALIVE_MS];
    int64_t by = ms->heard_at + quiet;
    if (nqi_now_ms() < by) {
        if (nqi_timer_arm(&s->worker->loop, &ms->answer, by) != NQ_OK) {
            nqi_session_end(s, NQ_ENOMEM);
        }
        return;
    }
    char text[NQ_ID_STRLEN];
    nq_id_format(&s->peer, text, sizeof(text));
    nqi_logf(&s->comm->log, NQ_LOG_WARN,
             "closing: MQTT peer %s, which left no will, was silent for %lld ms; taken for lost",
             text, (long long)quiet);
    nqi_session_end(s, NQ_ECONNRESET);
}

void nqi_mqtt_server_session_init(nqi_session *s)
{
    mqtt_sess *ms = mqtt_sess_of(s);
    nqi_timer_init(&ms->answer, quiet_while_closing);
    ms->heard_at = nqi_now_ms();
}

static void mqtt_worker_closing(nqi_worker *w)
{
    if (w->comm->purpose != NQ_SERVER || w->comm->opts.ints[NQ_OPT_KEEPALIVE_MS] <= 0) {
        return; /* keep-alive off: waits as long as it takes */
    }
    int64_t now = nqi_now_ms();
    nqi_node *n;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = nqi_list_next(&w->sessions, n)) {
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        mqtt_sess *ms = mqtt_sess_of(s);
        if (s->ended || s->waiting || !s->ini_received || ms->announced) {
            continue;
        }
        /* Silence before the close does not count: the client had no
         * reason to speak. */
        ms->heard_at = now;
        quiet_while_closing(&ms->answer);
    }
}

static int mqtt_open(nq_comm *c)
{
    if (c->opts.tls && c->opts.key_path != NULL) {
        /* Both roles are clients of the broker, which holds the key; paho
         * runs the TLS session. */
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "MQTT peers take only the broker's trusted certificates, no key");
        return NQ_EINVAL;
    }
    int rv = nqi_opts_refuse(&c->opts,
                             NQI_TAKES_TLS_IDENTITY | NQI_TAKES_TLS_TRUST | NQI_TAKES_LOGIN |
                                 NQI_TAKES_ALPN | NQI_TAKES_CLIENT_ID,
                             "MQTT", &c->log);
    if (rv != NQ_OK) {
        return rv;
    }
    /* paho's buffer for each packet is fresh memory otherwise. */
    nqi_heap_tune(&c->log);
    mqtt_comm *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NQ_ENOMEM;
    }
    c->tp = st;
    pthread_mutex_init(&st->mu, NULL);
    nqi_cond_init(&st->cv);
    nqi_list_init(&st->inflight);
    nqi_list_init(&st->strangers);
    st->qos = (int)c->opts.ints[NQ_OPT_MQTT_QOS];
    st->redials = c->purpose == NQ_SERVER || c->opts.ints[NQ_OPT_RECONNECT_MS] > 0;
    nqi_id_hex(&c->opts.id, st->own_hex);
    const char *prefix = c->opts.mqtt_prefix != NULL ? c->opts.mqtt_prefix : "";
    st->prefix_len = strlen(prefix);
    snprintf(st->will_topic, sizeof(st->will_topic), "%snq/lost/%s", prefix, st->own_hex);
    snprintf(st->wake_topic, sizeof(st->wake_topic), "%snq/wake", prefix);
    if (c->purpose == NQ_SERVER || nqi_ack_wanted(c)) {
        snprintf(st->ack_topic, sizeof(st->ack_topic), "%snq/ack/%s", prefix,
                 c->purpose == NQ_SERVER ? "+" : st->own_hex);
    }
    if (c->purpose == NQ_SERVER) {
        snprintf(st->sub_topic, sizeof(st->sub_topic), "%sc2s/+", prefix);
        snprintf(st->lost_topic, sizeof(st->lost_topic), "%snq/lost/+", prefix);
    } else {
        snprintf(st->sub_topic, sizeof(st->sub_topic), "%ss2c/%s", prefix, st->own_hex);
        mqtt_sess *ms = mqtt_sess_of(c->client);
        nqi_timer_init(&ms->answer, no_answer);
        ms->topic = nqi_mqtt_topic(st, "c2s/", st->own_hex);
        if (ms->topic == NULL) {
            return NQ_ENOMEM;
        }
    }
    rv = nqi_mqtt_login_prepare(c);
    return rv == NQ_OK ? nqi_mqtt_connect(c) : rv;
}

static void mqtt_worker_start(nqi_worker *w)
{
    /* The client's INI waits in its queue. */
    if (w->comm->client != NULL) {
        nqi_mqtt_ask(w->comm->client);
        nqi_mqtt_await_answer(w->comm->client);
        nqi_session_mark_dirty(w->comm->client);
    }
}

static void mqtt_session_end(nqi_session *s)
{
    mqtt_sess *ms = mqtt_sess_of(s);
    nqi_timer_cancel(&s->worker->loop, &ms->answer);
    free(ms->topic);
    ms->topic = NULL;
    if (s->comm->purpose == NQ_SERVER) {
        nqi_mqtt_stranger_gone(s);
    }
}

/* A reconnecting client tries again: once its broker connection is back
 * (paho restores it), it publishes its INI anew under a new epoch. */
static int mqtt_redial(nqi_session *s)
{
    nq_comm *c = s->comm;
    mqtt_comm *st = c->tp;
    if (atomic_load(&st->lost)) {
        return NQ_ECONNRESET; /* paho is still reconnecting to the broker */
    }
    mqtt_sess *ms = mqtt_sess_of(s);
    ms->epoch++;
    ms->topic = nqi_mqtt_topic(st, "c2s/", st->own_hex);
    if (ms->topic == NULL) {
        return NQ_ENOMEM;
    }
    nqi_mqtt_ask(s);
    nqi_mqtt_await_answer(s);
    nqi_session_mark_dirty(s);
    return NQ_OK;
}

/* A clean DISCONNECT once every session is over, so paho posts nothing
 * more to the loop. */
static void mqtt_close(nq_comm *c)
{
    nqi_mqtt_disconnect(c);
}

static void mqtt_shutdown(nq_comm *c)
{
    mqtt_comm *st = c->tp;
    if (st == NULL) {
        return;
    }
    nqi_mqtt_wake_leave(st);
    if (st->client != NULL) {
        MQTTAsync_destroy(&st->client);
    }
    /* paho is gone: discard what it posted after the loop stopped, then the
     * publishes it never answered. */
    nqi_loop_drain(&c->workers[0].loop);
    nqi_mqtt_forget_inflight(st);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->known_fds);
    nqi_mqtt_login_free(st);
    free(st);
    c->tp = NULL;
}

const nqi_transport nqi_mqtt_transport = {
    .name = "mqtt",
    .session_size = sizeof(mqtt_sess),
    .multi_worker = 0,
    .pausable = 0,
    .open = mqtt_open,
    .worker_start = mqtt_worker_start,
    .worker_closing = mqtt_worker_closing,
    .flush = nqi_mqtt_flush,
    .resume = NULL,
    .session_end = mqtt_session_end,
    .redial = mqtt_redial,
    .acked = nqi_mqtt_acked,
    .close = mqtt_close,
    .shutdown = mqtt_shutdown,
};
