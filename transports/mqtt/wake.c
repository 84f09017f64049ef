/*
 * Quick connections when a process already has one.  paho.mqtt.c reads
 * all of a process's broker connections on one thread, which waits up to
 * a second at a time on the sockets it had when it started waiting; a new
 * connection's socket joins only after that wait, and its CONNECT goes
 * only after the next, so each communicator after the first took about two
 * seconds to open however near the broker.
 *
 * While a communicator connects, one of the process's other connected
 * communicators wakes that thread now and then: it asks the broker to
 * unsubscribe it from <prefix>nq/wake, a topic no one subscribes to.  A
 * broker answers every UNSUBSCRIBE with an UNSUBACK, matched or not (MQTT
 * 3.1.1, 3.10.4), and denies it to no one, so the answer arrives on a
 * socket that thread reads, and nothing else changes: no message goes to
 * any peer.
 *
 * Registration and the wake run on callers' threads (nq_open, nq_close);
 * the registry's lock is never held across a wait.
 */
#include "transports/mqtt/mqtt.h"

/* The first wakes come quickly (a connection needs two or three), later
 * ones, for a broker that is slow to answer, less and less often. */
#define WAKE_FIRST_MS 2
#define WAKE_MAX_MS 64

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static nqi_list registry = {{&registry.head, &registry.head}};

void nqi_mqtt_wake_join(mqtt_comm *st)
{
    pthread_mutex_lock(&registry_mu);
    if (st->wake_link.next == NULL) {
        nqi_list_append(&registry, &st->wake_link);
    }
    pthread_mutex_unlock(&registry_mu);
}

void nqi_mqtt_wake_leave(mqtt_comm *st)
{
    pthread_mutex_lock(&registry_mu);
    nqi_list_remove(&st->wake_link);
    pthread_mutex_unlock(&registry_mu);
}

/* Publishes one wake through the first connected communicator other than
 * st.  Returns 1 if one went out. */
static int wake_once(const mqtt_comm *st)
{
    int sent = 0;
    pthread_mutex_lock(&registry_mu);
    nqi_node *n;
    for (n = nqi_list_first(&registry); n != NULL && !sent; n = nqi_list_next(&registry, n)) {
        mqtt_comm *other = NQI_CONTAINER(n, mqtt_comm, wake_link);
        if (other == st || atomic_load(&other->lost) || !MQTTAsync_isConnected(other->client)) {
            continue;
        }
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        sent = MQTTAsync_unsubscribe(other->client, other->wake_topic, &ro) == MQTTASYNC_SUCCESS;
    }
    pthread_mutex_unlock(&registry_mu);
    return sent;
}

int nqi_mqtt_wake_until(mqtt_comm *st, const int *flag, int64_t timeout_ms)
{
    int64_t until = nqi_now_ms() + timeout_ms;
    int64_t every = WAKE_FIRST_MS;
    for (;;) {
        int64_t left = until - nqi_now_ms();
        int64_t slice = wake_once(st) ? every : left;
        every = every * 2 < WAKE_MAX_MS ? every * 2 : WAKE_MAX_MS;
        int value = nqi_mqtt_wait_flag(st, flag, slice < left ? slice : left);
        if (value != 0 || nqi_now_ms() >= until) {
            return value;
        }
    }
}
