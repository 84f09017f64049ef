/*
 * mqtt.h: the MQTT transport's own state and the seams between its files.
 *
 *   mqtt.c    the transport table; open, close and shutdown (caller's thread)
 *   broker.c  the connection to the broker through paho.mqtt.c: connect,
 *             subscribe, disconnect, and paho's callbacks, which run on
 *             paho's threads and only post commands to worker 0
 *   wake.c    a process's connected communicators speed up a new one's
 *             connection (paho's reading thread)
 *   route.c   the loop side: sessions by topic, arrivals fed to them, and
 *             the publish window of each session's output (paho's answer to
 *             a publish, too, only posts a command)
 *
 * net-queue's layout: MQTT 3.1.1, client id = own UUID as 32 hex digits; a
 * client publishes to c2s/<own-hex> and subscribes to s2c/<own-hex>; the
 * server subscribes to c2s/+ and publishes to s2c/<client-hex>.  Payloads
 * are consecutive slices of the framed byte stream.  An optional prefix
 * lets several servers share a broker.
 *
 * Liveness, which net-queue's layout lacks: every libnq peer leaves a will
 * on <prefix>nq/lost/<own-hex>, which the broker publishes when the peer's
 * connection dies without a DISCONNECT, and which a closing peer publishes
 * itself before its DISCONNECT (for the peers its close timeout dropped).
 * A server subscribes to <prefix>nq/lost/+ and a client, once it knows its
 * server, to its server's; a will ends the session it names as lost.  net-queue peers
 * neither leave nor read wills.  A server's broker connection reconnects by
 * itself and subscribes again; its sessions end when the connection drops,
 * since the broker's restart loses what was in flight, unless they agreed
 * on acknowledged delivery (agree.c, on <prefix>nq/ack/<client-hex>): then
 * they wait for their clients' return and resend what was lost.
 */
#ifndef NQ_TRANSPORTS_MQTT_MQTT_H
#define NQ_TRANSPORTS_MQTT_MQTT_H

#include <MQTTAsync.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "core/nqi.h"

#define NQI_MQTT_TOPIC_MAX 256

/* What the communicator presents to the broker (login.c). */
typedef struct mqtt_login {
    int fds[3];             /* in-memory PEM files (key, cert, anchors), or -1 */
    char paths[3][32];      /* their /proc/self/fd names */
    const char *key;        /* files handed to paho */
    const char *cert;
    const char *ca_file;
    unsigned char alpn[1100]; /* ALPN protocols in wire form */
    unsigned alpn_len;
    char *password;         /* the one of the latest attempt */
    size_t password_len;
} mqtt_login;

/* The communicator's state. */
typedef struct mqtt_comm {
    MQTTAsync client;
    char own_hex[NQI_ID_HEX_LEN + 1];
    char sub_topic[NQI_MQTT_TOPIC_MAX];
    char lost_topic[NQI_MQTT_TOPIC_MAX]; /* server: nq/lost/+; client: our will's */
    char will_topic[NQI_MQTT_TOPIC_MAX];
    char ack_topic[NQI_MQTT_TOPIC_MAX]; /* server: nq/ack/+; client: its own
                                         * with acknowledged delivery, else "" */
    char wake_topic[NQI_MQTT_TOPIC_MAX]; /* nq/wake, which no one reads (wake.c) */
    nqi_node wake_link;                  /* on wake.c's registry */
    size_t prefix_len;
    int qos;
    struct sockaddr_storage broker; /* resolved at open; family 0 if not */
    int *known_fds;  /* sockets to the broker that were open before ours */
    size_t nknown;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;         /* 0 waiting, 1 subscribed, or an nq error */
    int connack;       /* paho's code for the failed connection (under mu) */
    int nsub;          /* topics in the last subscription (paho's thread) */
    int disconnected;  /* the DISCONNECT completed */
    int leaving;       /* close has begun: no retained will is removed now */
    int clearing;      /* removals of our retained will being queued */
    atomic_int lost;   /* the broker connection is down */
    atomic_int reconnecting; /* lost, and paho reconnects */
    int redials;       /* paho reconnects: a server, or a client with
                        * NQ_OPT_RECONNECT_MS */
    nqi_list inflight; /* publishes awaiting paho's answer; loop only */
    nqi_list strangers; /* server: will-less clients heard from only in their
                         * INI, longest silent first; loop only (route.c) */
    size_t nstrangers;
    uint64_t strangers_dropped;
    mqtt_login login;
} mqtt_comm;

/* A session's state: where it publishes and whom its topic names. */
typedef struct mqtt_sess {
    char *topic;
    nq_id route;
    unsigned epoch;   /* client: its connections so far; a publish of an
                       * earlier one is answered to nobody */
    nqi_timer answer; /* client reconnecting: a server must answer the INI;
                       * server closing: a client without a will must be
                       * heard from */
    int64_t heard_at; /* server: when the client's last publish came */
    int announced;    /* server: the client announced its connection (agree.c),
                       * so it left a will */
    int asked;        /* server: the client asked for acknowledged delivery */
    nqi_node stranger_link; /* server: on mqtt_comm's strangers */
    int told;         /* client: the server asked, for this connection */
} mqtt_sess;

static inline mqtt_sess *mqtt_sess_of(nqi_session *s)
{
    return nqi_session_tp(s);
}

/* login.c */
/* Makes the files and ALPN list the connection needs (nq_open's thread). */
int nqi_mqtt_login_prepare(nq_comm *c);
/* Fills the login and TLS parts of a connection attempt's options (the
 * password fetched anew).  Returns an nq error (NQ_EAUTH: no secret). */
int nqi_mqtt_login_apply(nq_comm *c, MQTTAsync_connectOptions *co, MQTTAsync_SSLOptions *ssl);
/* Has paho renew the password before each of its reconnections. */
void nqi_mqtt_login_watch(nq_comm *c);
/* 1 when a failed connection was the broker refusing what we presented:
 * CONNACK code (from paho's failure) 4 or 5, or a refused certificate
 * (over TLS, one handshake of its own to read the broker's alert). */
int nqi_mqtt_login_refused(nq_comm *c, int code);
void nqi_mqtt_login_free(mqtt_comm *st);

/* broker.c */
/* A blocking socket connected to the broker's resolved address, with
 * timeout_ms to connect and for each later read or write, or -1. */
int nqi_mqtt_broker_socket(const mqtt_comm *st, int timeout_ms);
/* Creates the paho client and connects; waits (bounded by the handshake
 * timeout) until the broker acknowledged the connection and the
 * subscription.  Returns an nq error. */
int nqi_mqtt_connect(nq_comm *c);
/* Sends DISCONNECT and waits briefly for it; paho calls nothing after. */
void nqi_mqtt_disconnect(nq_comm *c);
/* Client: subscribes to the will topic of the server with this id. */
void nqi_mqtt_watch_server(nq_comm *c, const nq_id *server);
/* Waits for a flag under st->mu, at most timeout_ms; returns its value. */
int nqi_mqtt_wait_flag(mqtt_comm *st, const int *flag, int64_t timeout_ms);

/* wake.c (callers' threads) */
/* A connected communicator joins the process's registry; leaving is
 * idempotent, and comes before the paho client is destroyed. */
void nqi_mqtt_wake_join(mqtt_comm *st);
void nqi_mqtt_wake_leave(mqtt_comm *st);
/* nqi_mqtt_wait_flag, while the registry's other communicators wake
 * paho's reading thread now and then. */
int nqi_mqtt_wake_until(mqtt_comm *st, const int *flag, int64_t timeout_ms);

/* mqtt.c (loop thread) */
/* Server: a new session's timers. */
void nqi_mqtt_server_session_init(nqi_session *s);
/* Client reconnecting: a server must answer its INI within the handshake
 * timeout, or the attempt has failed. */
void nqi_mqtt_await_answer(nqi_session *s);

/* agree.c (loop thread): new connections, acknowledged delivery's ask and
 * answer */
/* Client: announces a new connection (and asks), just before its INI. */
void nqi_mqtt_ask(nqi_session *s);
/* The transport's acked hook: whether the peer asked (a server tells its
 * own ask on the way). */
int nqi_mqtt_acked(nqi_session *s);
/* A signal arrived on the ack topic of the client with this id. */
void nqi_mqtt_signal(nqi_worker *w, const nq_id *from, const MQTTAsync_message *msg);
/* Server, its broker connection back: asks the clients of kept sessions to
 * connect again. */
void nqi_mqtt_call_back(nqi_worker *w);

/* route.c (loop thread) */
/* Server: the live session of the client with this id, or NULL. */
nqi_session *nqi_mqtt_find(nqi_worker *w, const nq_id *from);
/* Server: that session, made (admitted) when there is none; but while a
 * session of the client is kept for its return (NQ_OPT_RESUME_MS), only
 * when anew (its next connection announced itself), else NULL: what comes
 * before the announcement belongs to the old connection. */
nqi_session *nqi_mqtt_server_session(nqi_worker *w, const nq_id *from, int anew);
/* "<prefix><dir><hex>", malloc'd, or NULL. */
char *nqi_mqtt_topic(const mqtt_comm *st, const char *dir, const char *hex);
/* Server: the session leaves the strangers (it spoke, announced itself or
 * ended); a session that is not one is left alone. */
void nqi_mqtt_stranger_gone(nqi_session *s);
/* A message from paho arrived for the id in its topic. */
void nqi_mqtt_arrived(nqi_worker *w, const nq_id *from, const MQTTAsync_message *msg);
/* The broker published the will of the peer with this id. */
void nqi_mqtt_peer_lost(nqi_worker *w, const nq_id *who);
void nqi_mqtt_flush(nqi_session *s);
/* Releases the publishes paho never answered (after paho is gone). */
void nqi_mqtt_forget_inflight(mqtt_comm *st);

#endif
