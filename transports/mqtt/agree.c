/*
 * A libnq client's new connections, and acknowledged delivery over MQTT
 * (core/ack.h), on a topic of their own that net-queue peers neither
 * publish nor read, <prefix>nq/ack/<client-hex>:
 *
 *   "n"  a client, just before each INI it publishes: a new connection
 *        starts, so a session the server still has for it is over (the
 *        broker may never have told of the old connection's end: a will
 *        comes only when the broker notices);
 *   "c"  the same from a client that wants acknowledged delivery (where
 *        TCP asks with an urgent byte);
 *   "s"  a server that wants it, just before its answering INI;
 *   "r"  a server whose broker connection came back, to each client whose
 *        session it kept (NQ_OPT_RESUME_MS): connect again, and resume.
 *
 * The ask and the INI leave on one broker connection, the ask first, and a
 * broker hands one connection's publishes to a subscriber in the order it
 * took them, so the ask is in before the INI it goes with, and the old
 * session ends (with acknowledged delivery, is kept for the resume) before
 * the new INI comes.  A kept session's client may still have publishes of
 * its old connection on their way: until its "c", they are dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "transports/mqtt/mqtt.h"

/* Publishes one signal on the ack topic of the client with this hex id. */
static void signal_peer(nq_comm *c, const char *hex, char what)
{
    mqtt_comm *st = c->tp;
    char *topic = nqi_mqtt_topic(st, "nq/ack/", hex);
    if (topic == NULL) {
        return;
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    if (MQTTAsync_send(st->client, topic, 1, &what, st->qos, 0, &ro) != MQTTASYNC_SUCCESS) {
        nqi_logf(&c->log, NQ_LOG_WARN, "cannot publish on %s", topic);
    }
    free(topic);
}

void nqi_mqtt_ask(nqi_session *s)
{
    nq_comm *c = s->comm;
    mqtt_comm *st = c->tp;
    mqtt_sess_of(s)->told = 0;
    signal_peer(c, st->own_hex, nqi_ack_wanted(c) ? 'c' : 'n');
}

int nqi_mqtt_acked(nqi_session *s)
{
    nq_comm *c = s->comm;
    if (!nqi_ack_wanted(c)) {
        return 0;
    }
    mqtt_sess *ms = mqtt_sess_of(s);
    if (c->purpose == NQ_CLIENT) {
        return ms->told;
    }
    /* Our INI follows, so the client learns it before that. */
    char hex[NQI_ID_HEX_LEN + 1];
    nqi_id_hex(&ms->route, hex);
    signal_peer(c, hex, 's');
    return ms->asked;
}

void nqi_mqtt_signal(nqi_worker *w, const nq_id *from, const MQTTAsync_message *msg)
{
    nq_comm *c = w->comm;
    if (msg->payloadlen != 1) {
        return;
    }
    char what = ((const char *)msg->payload)[0];
    if (c->purpose == NQ_CLIENT) {
        nqi_session *s = c->client;
        if (what == 's') {
            mqtt_sess_of(s)->told = 1;
        } else if (what == 'r' && !s->ended) {
            /* Connected, or waiting for an answer to an INI that reached a
             * broker without the server's subscription: start again. */
            nqi_logf(&c->log, NQ_LOG_INFO, "the server asks to connect again");
            nqi_session_end(s, NQ_ECONNRESET);
        }
        return;
    }
    if (what != 'c' && what != 'n') {
        return; /* our own "s" and "r" */
    }
    nqi_session *old = nqi_mqtt_find(w, from);
    if (old != NULL && old->ini_received) {
        /* The client connects anew: its old connection is over. */
        nqi_session_end(old, NQ_ECONNRESET);
    }
    nqi_session *s = nqi_mqtt_server_session(w, from, 1);
    if (s != NULL) {
        mqtt_sess_of(s)->asked = what == 'c';
        mqtt_sess_of(s)->announced = 1;
        nqi_mqtt_stranger_gone(s);
    }
}

void nqi_mqtt_call_back(nqi_worker *w)
{
    nqi_node *n;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = nqi_list_next(&w->sessions, n)) {
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        if (s->waiting) {
            char hex[NQI_ID_HEX_LEN + 1];
            nqi_id_hex(&mqtt_sess_of(s)->route, hex);
            signal_peer(w->comm, hex, 'r');
        }
    }
}
