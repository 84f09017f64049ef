/*
 * nq.h: the public interface of libnq, network queues for any language.
 *
 * libnq gives a program a *communicator*: put(data, peers...) returns a
 * future, get() blocks until a message arrives.  A communicator is either a
 * server (many clients) or a client (one server).  Peers are named by a
 * 16-byte identity (a UUID) that each side declares when it connects.
 *
 * libnq speaks the wire protocol of the Python library net-queue byte for
 * byte, so a libnq peer and a net-queue peer exchange messages (net-queue
 * must then use its bytes serializer, or the libnq side must read and write
 * pickles through a serializer callback).
 *
 * This header is the manual.  Every function says what it returns, who owns
 * what, and what may be called from which thread.
 *
 * Conventions
 * -----------
 * - Every function that can fail returns an int: NQ_OK (0) or a negative
 *   NQ_E* code.  nq_strerror() turns a code into a sentence.  Codes never
 *   change meaning and are never reused.
 * - Handles are opaque.  Objects are created by *_new / nq_open and released
 *   by the matching *_free / nq_destroy.
 * - Out parameters are pointers; on failure they are left untouched unless
 *   the function says otherwise.
 * - Timeouts are milliseconds as int64_t: -1 waits forever, 0 polls.
 * - Thread-safety: a communicator (nq_comm) is fully thread-safe: any thread
 *   may call put, get and close at any time.  An options object (nq_opts) is
 *   not: build it on one thread, then hand it to nq_open (which copies it).
 *   Futures may be waited on from any thread; messages belong to whoever
 *   received them.
 *
 * Symbols are versioned (NQ_1.0, ...).  A binary built against an older
 * release keeps working with a newer libnq.so.1.
 */
#ifndef NQ_NQ_H
#define NQ_NQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NQ_STATIC) || defined(SWIG)
#define NQ_API
#elif defined(__GNUC__)
#define NQ_API __attribute__((visibility("default")))
#else
#define NQ_API
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define NQ_VERSION_MAJOR 1
#define NQ_VERSION_MINOR 4
#define NQ_VERSION_PATCH 0
/* The version of this header as one number: major*10000 + minor*100 + patch. */
#define NQ_VERSION_NUMBER \
    (NQ_VERSION_MAJOR * 10000 + NQ_VERSION_MINOR * 100 + NQ_VERSION_PATCH)

/* The version of the library actually loaded, e.g. "1.1.0".  The string is
 * static; never free it.  Thread-safe. */
NQ_API const char *nq_version(void);

/* The version of the library actually loaded as one number (see
 * NQ_VERSION_NUMBER).  Compare it with NQ_VERSION_NUMBER to detect a program
 * running against an older library than it was built with.  Thread-safe. */
NQ_API int nq_version_number(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

#define NQ_OK            0
#define NQ_EINVAL       (-1)  /* an argument is invalid (the log says which)  */
#define NQ_ENOMEM       (-2)  /* out of memory                                */
#define NQ_ETIMEDOUT    (-3)  /* the wait ended before the event              */
#define NQ_ECLOSED      (-4)  /* the communicator is closed                   */
#define NQ_ECONNRESET   (-5)  /* the connection to the peer was lost          */
#define NQ_ENOPEER      (-6)  /* no connected peer has that id                */
#define NQ_ETLS         (-7)  /* TLS failed: certificate, key or handshake    */
#define NQ_EPROTO       (-8)  /* the peer broke the wire protocol             */
#define NQ_ECONNREFUSED (-9)  /* the server could not be reached              */
#define NQ_EADDR        (-10) /* the host name or address cannot be used      */
#define NQ_EADDRINUSE   (-11) /* the address is already in use                */
#define NQ_ENOTSUP      (-12) /* not supported (protocol not built in, ...)   */
#define NQ_ESYS         (-13) /* an operating system call failed              */
#define NQ_EFULL        (-14) /* a send limit was reached; nothing was queued */
#define NQ_ESERIALIZE   (-15) /* the serializer callback failed               */
#define NQ_EPENDING     (-16) /* the future has not completed yet             */
/* Since 1.1: */
#define NQ_EREPLACED    (-17) /* the peer connected again with the same id    */
/* Since 1.2: */
#define NQ_ECANCELED    (-18) /* the put was withdrawn (nq_future_cancel)     */
/* Since 1.3: */
#define NQ_EAUTH        (-19) /* the peer refused our credentials, or we its  */

/* A sentence describing an error code, e.g. "connection to the peer was
 * lost".  Unknown codes give "unknown error".  The string is static; never
 * free it.  Thread-safe. */
NQ_API const char *nq_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Identities                                                                */
/* ------------------------------------------------------------------------ */

/* A peer identity: a UUID in RFC 4122 byte order (the order of its canonical
 * text form), exactly as it travels on the wire. */
typedef struct nq_id {
    uint8_t bytes[16];
} nq_id;

/* Length of the canonical text form including the terminating NUL. */
#define NQ_ID_STRLEN 37

/* Fills *out with a random version-4 UUID from the system's random source.
 * Returns NQ_OK, NQ_EINVAL (out is NULL) or NQ_ESYS. */
NQ_API int nq_id_random(nq_id *out);

/* Parses "8f02c060-b59c-4520-9795-369445186a49" (or the same 32 hex digits
 * without dashes, either case).  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_id_parse(const char *text, nq_id *out);

/* Writes the canonical lower-case text form and a NUL into buf, which must
 * hold NQ_ID_STRLEN bytes.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_id_format(const nq_id *id, char *buf, size_t buflen);

/* 1 when a and b are the same identity, else 0. */
NQ_API int nq_id_equal(const nq_id *a, const nq_id *b);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* Memory: the first MQTT or gRPC communicator of a process sets glibc's
 * M_MMAP_THRESHOLD to 32 MiB and M_TRIM_THRESHOLD to 64 MiB (where glibc's
 * own sliding thresholds end once a program frees a 32 MiB block), since
 * paho and grpc read every message into buffers of their own and glibc
 * would otherwise map fresh pages for most of them.  A process may then
 * keep up to 64 MiB of freed memory at the top of each malloc heap.  The
 * environment variable NQ_MALLOC_TUNING=off leaves malloc as it is, and so
 * does any malloc parameter the environment sets (GLIBC_TUNABLES
 * glibc.malloc.*, MALLOC_*_).  TCP changes nothing. */
typedef enum nq_protocol {
    NQ_TCP = 0,  /* TCP, optionally with TLS (see nq_opts_set_tls) */
    NQ_MQTT = 1, /* MQTT through a broker                          */
    NQ_GRPC = 2  /* gRPC bidirectional stream                      */
} nq_protocol;

typedef enum nq_purpose {
    NQ_CLIENT = 0, /* connects to one server                 */
    NQ_SERVER = 1  /* accepts many clients                   */
} nq_purpose;

/* Integer options, set with nq_opts_set_int.  The first seven carry
 * net-queue's names and defaults. */
typedef enum nq_option {
    /* Receive each message into one contiguous buffer of its own (1) or
     * not (0).  libnq always delivers contiguous messages; the option is
     * accepted for net-queue compatibility.  Default 1. */
    NQ_OPT_GET_MERGE = 1,
    /* Coalesce small queued frames before sending (1): TCP copies runs of
     * small pieces into one buffer per vectored write, TLS into one record,
     * gRPC into one slice.  With 0 every piece goes to the transport as it
     * is (frames still leave in batches of vectored writes).  MQTT always
     * publishes contiguous slices of the stream.  Default 1. */
    NQ_OPT_PUT_MERGE = 2,
    /* Pieces shorter than this are candidates for coalescing (TCP copies at
     * most 256 bytes of a piece, TLS gathers behind a first piece shorter
     * than 16 KiB); gRPC hands pieces of this size and more to grpc without
     * copying them.  1 .. 2^30, default 65536. */
    NQ_OPT_EFFICIENT_SIZE = 3,
    /* Largest piece handed to the transport in one call (TCP write, MQTT
     * publish, gRPC message).  4096 .. 2^30, default 4194304. */
    NQ_OPT_PROTOCOL_SIZE = 4,
    /* Largest number of received, undelivered messages held per peer.  When
     * a peer reaches it, libnq stops reading from that peer (the transport's
     * flow control holds the sender back) until get() makes room; nothing is
     * dropped.  A broker cannot hold one publisher back, so over MQTT every
     * arriving message is queued, unless both sides agreed on
     * NQ_DELIVERY_ACKED: then a receiver withholds its acknowledgements
     * while the peer's queue is full, and a sender lets at most 16 MiB of
     * data wait for them, so the sender is held back end to end and the
     * queue stays within the limit plus that much.  With
     * NQ_OPT_DROP_OLDEST the limit holds on every transport and the peer's
     * oldest messages make room instead.
     * 1 .. 2^40, default 2^30. */
    NQ_OPT_QUEUE_SIZE = 5,
    /* Largest message accepted from the wire.  A longer frame is a protocol
     * error: the connection is closed, nothing is allocated for it.
     * 16 .. 2^62, default 2^40. */
    NQ_OPT_MESSAGE_SIZE = 6,
    /* Server: number of I/O threads that share the connections.
     * 1 .. 64, default 1.  Clients always use one. */
    NQ_OPT_WORKERS = 7,
    /* Bytes of copied data (puts without a future) that may wait in the send
     * queues of one communicator before put fails with NQ_EFULL.
     * 0 .. 2^62, default 2^30. */
    NQ_OPT_SEND_LIMIT = 8,
    /* Server: milliseconds a new connection may take to finish its TLS
     * handshake and send its INI before it is closed.  Later, a frame in
     * progress that gains less than 1 KiB in each of two such periods in a
     * row (while libnq is not holding the peer back) closes the connection
     * too: a peer cannot hold one by trickling bytes in.  A reconnecting
     * MQTT client also gives a server this long to answer its INI.
     * 100 .. 2^31, default 10000. */
    NQ_OPT_HANDSHAKE_TIMEOUT_MS = 9,
    /* Idle milliseconds before TCP keep-alive probes start; a peer that
     * stops answering is declared lost about three probe intervals later.
     * With bytes in flight, a peer that acknowledges none of them for as
     * long is lost too.  A peer that holds the sender back (its receive
     * window closed, see NQ_OPT_QUEUE_SIZE) stays as long as it answers
     * the kernel's probes of that window, and is lost after three of them
     * go unanswered; the kernel spaces them further apart the longer the
     * window stays closed, up to two minutes.
     * Between two libnq peers over TCP, TLS and gRPC whose keep-alive is
     * on (since 1.4; over MQTT with NQ_DELIVERY_ACKED), an idle connection
     * also carries a heartbeat frame each way at least this often, which
     * applications never see and a net-queue peer is never sent: a peer
     * silent for 1.5 times the larger of the two sides' settings is lost
     * (NQ_ETIMEDOUT, within one half period more), which notices a peer
     * that stopped (SIGSTOP, a hung process, a frozen path) where its
     * kernel still answers TCP's probes.  Silence is not counted while
     * libnq itself holds the peer back (NQ_OPT_QUEUE_SIZE).
     * Over gRPC, grpc pings this often when nothing came in, and no
     * libnq server refuses pings as too frequent; the heartbeat frames are
     * traffic to HTTP/2 proxies (keep the setting below their idle
     * timeouts) and data to grpc servers at their defaults.
     * Over MQTT the broker keeps it, in whole seconds (two thirds of this,
     * since a broker drops a client after one and a half), and no less
     * than 3000 ms in effect: the MQTT library sends its pings up to about
     * a second late, and a broker counting shorter dropped healthy idle
     * clients.
     * 0 disables keep-alive.  0 or 1000 .. 2^31, default 15000. */
    NQ_OPT_KEEPALIVE_MS = 10,
    /* Milliseconds nq_close waits for the close handshake before it drops
     * the remaining connections.  -1 waits forever (net-queue's behaviour).
     * -1 or 0 .. 2^31, default -1. */
    NQ_OPT_CLOSE_TIMEOUT_MS = 11,
    /* MQTT: the QoS of publishes and subscriptions, 0 .. 2, default 1.
     * Brokers deliver at the lower of the two sides' levels, so net-queue
     * peers (QoS 0) still interoperate. */
    NQ_OPT_MQTT_QOS = 12,
    /* Client reconnection (since 1.1), off by default as in net-queue.
     * With NQ_OPT_RECONNECT_MS > 0, a client whose connection is lost, or
     * whose connect fails, connects again after a delay that starts at this
     * many milliseconds and doubles after each failed attempt up to
     * NQ_OPT_RECONNECT_MAX_MS; each wait is drawn between half the delay
     * and the whole of it, so that clients of one server spread out.
     * Meanwhile the communicator stays open: puts queue (within
     * NQ_OPT_SEND_LIMIT for copied data) and go out once the server has
     * answered the new INI, in order, behind the INI; a frame the lost
     * connection had only partly written goes again whole (the server drops
     * a partial frame); get keeps waiting.  Frames the lost connection had
     * wholly written have completed their futures and are not resent
     * (with NQ_DELIVERY_ACKED on both sides, whatever the server lacks is
     * resent instead: see NQ_OPT_DELIVERY).  The
     * server may be a new process with a new id: the events tell.
     * nq_close while disconnected fails what is queued with the
     * error that ended the last connection and returns it (NQ_OK after a
     * clean one).  The transports: TCP, TLS, gRPC, MQTT.
     * 0 or 10 .. 2^31, default 0. */
    NQ_OPT_RECONNECT_MS = 13,
    /* The longest delay between two attempts.  10 .. 2^31, default 5000. */
    NQ_OPT_RECONNECT_MAX_MS = 14,
    /* Milliseconds after a connection was lost (or the first connect
     * failed) when the client stops trying: the communicator then ends as
     * it would without reconnection (queued puts fail, get reports the
     * last error).  -1 never gives up.  -1 or 0 .. 2^31, default -1. */
    NQ_OPT_RECONNECT_GIVE_UP_MS = 15,
    /* What a put's future promises (since 1.2): NQ_DELIVERY_WRITTEN or
     * NQ_DELIVERY_ACKED, below.  Both sides must ask for NQ_DELIVERY_ACKED;
     * they agree on it while connecting, invisibly to a net-queue peer, and
     * otherwise fall back to NQ_DELIVERY_WRITTEN (NQ_STAT_ACKED counts the
     * connections where it was agreed).  Over TCP and TLS the two libnq
     * peers agree through one urgent (out-of-band) byte each way, which the
     * byte stream never shows; over MQTT (since 1.4) on a topic of their
     * own, <prefix>nq/ack/<client-hex>, which net-queue peers never read
     * (a server's sessions then also outlive a broker restart); over gRPC
     * (since 1.4) in the initial metadata of libnq's streaming calls
     * (nq-acked), which a net-queue peer never makes or answers: its
     * polling rounds fall back.
     * A server with NQ_DELIVERY_ACKED runs on one worker (NQ_OPT_WORKERS
     * above 1 is refused at nq_open with NQ_EINVAL).
     * NQ_DELIVERY_WRITTEN by default. */
    NQ_OPT_DELIVERY = 16,
    /* Server with NQ_DELIVERY_ACKED: milliseconds a peer's session outlives
     * its lost connection, waiting for the peer to come back with its id
     * (a client with NQ_OPT_RECONNECT_MS).  Meanwhile the peer stays
     * listed, puts to it queue, and no event is reported; when it comes
     * back the session goes on where it stopped (NQ_STAT_RESUMED), else it
     * ends as a lost peer.  0 .. 2^31, default 60000. */
    NQ_OPT_RESUME_MS = 17,
    /* Since 1.3.  What a peer's full receive queue (NQ_OPT_QUEUE_SIZE)
     * does.  0, the default: lossless back-pressure, libnq stops reading
     * from the peer until get() makes room (over MQTT, see NQ_OPT_QUEUE_SIZE).
     * 1: reading goes on, and each message beyond the limit drops that
     * peer's oldest undelivered message, on every transport; the drops are
     * counted in NQ_STAT_DROPPED and logged (NQ_LOG_WARN, once per
     * connection).  The sender is never told: its put completed when the
     * message was written (or, with NQ_DELIVERY_ACKED, received), so choose
     * it only where the newest data matters more than every message
     * (net-queue 2.x's drop_oldest).  Other peers' messages are never
     * dropped for it.  0 or 1, default 0. */
    NQ_OPT_DROP_OLDEST = 18,
    /* Since 1.3 over TCP, since 1.4 over gRPC.  TLS server: whether clients
     * present certificates,
     * checked against the trust anchors of nq_opts_set_tls_trust (required
     * then).  0: not asked (the default, net-queue's behaviour); 1: asked,
     * and a certificate given must verify, but a client without one is
     * served; 2: required.  A refused client's connection ends in the
     * handshake (over gRPC, with its first call, refused UNAUTHENTICATED
     * before anything it sent is read): it sees NQ_EAUTH, the server counts
     * NQ_STAT_TLS_ERRORS and logs why.  nq_peer_identity tells what each
     * peer presented. */
    NQ_OPT_TLS_CLIENT_AUTH = 19,
    /* Since 1.3.  The lowest TLS version accepted, both roles, TCP: 12 for
     * TLS 1.2 (the default) or 13 for TLS 1.3. */
    NQ_OPT_TLS_MIN_VERSION = 20,
    /* Since 1.4, MQTT.  The largest PUBLISH packet libnq sends, in bytes,
     * fixed header and topic included, so that every slice fits a broker's
     * limit (AWS IoT Core: 131072).  Messages of any size still go
     * through, in more slices.  0, the default: libnq's own slices (at most
     * 256 KiB and NQ_OPT_PROTOCOL_SIZE).  Else 1024 to 2^28. */
    NQ_OPT_MQTT_MAX_PUBLISH = 21
} nq_option;

/* Values of NQ_OPT_DELIVERY.
 *
 * NQ_DELIVERY_WRITTEN: net-queue's meaning.  A put's future completes when
 *   the message was handed to the connection (the kernel, the MQTT client
 *   library, grpc); a connection lost later may lose it, and a message
 *   whose future failed may still have arrived.
 *
 * NQ_DELIVERY_ACKED: between two libnq peers that both ask for it.  Every
 *   message is numbered per session; the receiver acknowledges what its
 *   libnq has queued for get, and a put's future completes when the peer
 *   has the message.  When the connection is lost and the client comes
 *   back (NQ_OPT_RECONNECT_MS on the client, within the server's
 *   NQ_OPT_RESUME_MS), both sides resend what the other lacks and nothing
 *   else: while both processes live, every message arrives exactly once
 *   and in order, whatever the number of reconnections.  When one side is
 *   a new process (restarted, or a session that timed out), messages the
 *   old one may or may not have had fail with NQ_ECONNRESET and the rest
 *   go to the new one.  Both sides also send a heartbeat when idle, so a
 *   peer that stops (SIGSTOP, a hung process, a dead path) is noticed
 *   within 1.5 to 2 x NQ_OPT_KEEPALIVE_MS (the larger of the two sides'
 *   settings) even where TCP's keep-alive still gets answers (the session
 *   ends with NQ_ETIMEDOUT); silence is not counted while libnq itself
 *   holds the peer back (NQ_OPT_QUEUE_SIZE).  A client with NQ_DELIVERY_ACKED
 *   sends its first message once the server has answered its INI. */
#define NQ_DELIVERY_WRITTEN 0
#define NQ_DELIVERY_ACKED 1

typedef struct nq_opts nq_opts;

/* A log hook.  level is one of NQ_LOG_*; message is a NUL-terminated line
 * without a newline, valid only during the call.  Called from libnq's I/O
 * threads and from callers' threads; it must not block or call back into
 * the communicator. */
#define NQ_LOG_ERROR 0
#define NQ_LOG_WARN 1
#define NQ_LOG_INFO 2
#define NQ_LOG_DEBUG 3
typedef void (*nq_log_fn)(void *ctx, int level, const char *message);

/* Serialization.  nq_put_value hands the caller's value to dump, which
 * fills *out with bytes it allocated with nq_alloc (libnq frees them with
 * nq_free once they are sent).  nq_get_value hands the received bytes to
 * load, which stores the value it built in *value.  Both return NQ_OK or
 * any non-zero value for failure (reported as NQ_ESERIALIZE).  They run on
 * the calling thread of nq_put_value / nq_get_value. */
typedef struct nq_bytes {
    void *data;
    size_t len;
} nq_bytes;
typedef int (*nq_dump_fn)(void *ctx, const void *value, nq_bytes *out);
typedef int (*nq_load_fn)(void *ctx, const nq_bytes *in, void **value);

/* Creates an options object holding the defaults: a random id, netloc
 * 127.0.0.1:51966, no TLS, no serializer, no log hook.  The caller owns it
 * and frees it with nq_opts_free.  Returns NQ_OK, NQ_EINVAL or NQ_ENOMEM. */
NQ_API int nq_opts_new(nq_opts **out);

/* Frees an options object.  NULL is allowed. */
NQ_API void nq_opts_free(nq_opts *opts);

/* Sets this communicator's identity, sent to peers in INI and FIN.
 * Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_id(nq_opts *opts, const nq_id *id);

/* Reads back the identity.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_get_id(const nq_opts *opts, nq_id *out);

/* Sets the network location: for TCP and gRPC the address a server binds or
 * a client connects to; for MQTT the broker.  host is a host name, an IPv4
 * address or an IPv6 address (without brackets), at most 255 bytes; it is
 * copied.  A server given port 0 binds a free port (see nq_local_port).
 * Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_netloc(nq_opts *opts, const char *host, uint16_t port);

/* Sets an integer option.  Returns NQ_OK, or NQ_EINVAL when the option is
 * unknown or the value out of its range (the range is in nq_option). */
NQ_API int nq_opts_set_int(nq_opts *opts, nq_option option, int64_t value);

/* Reads an integer option.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_get_int(const nq_opts *opts, nq_option option, int64_t *out);

/* Turns TLS on (net-queue's SecurityOptions).  Paths are copied; files are
 * read at nq_open.
 * - Server: key_path (PEM private key) and cert_path (PEM certificate
 *   chain) are both required.
 * - Client: key_path must be NULL; cert_path names the PEM file of trusted
 *   certificates, or NULL to trust the system's store.  The client checks
 *   the chain and that the server's certificate names the netloc host (DNS
 *   name or IP address).
 * - MQTT: both roles are clients of the broker, so both take the client's
 *   form (key_path NULL); the broker holds the key.
 * TLS 1.2 is the lowest version offered.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_tls(nq_opts *opts, const char *key_path, const char *cert_path);

/* Since 1.3 for TCP, since 1.4 for MQTT and gRPC.  This communicator's own
 * key and certificate chain, in either role: a server's (instead of
 * nq_opts_set_tls's), or a client's, presented when the server asks
 * (NQ_OPT_TLS_CLIENT_AUTH; over MQTT, to the broker, in both roles).  With
 * pem 0, key and cert are paths of PEM files, read at nq_open; with pem 1
 * they are the PEM text itself (a secret from an environment variable,
 * never written to disk).  Both are copied.  Turns TLS on.  Returns NQ_OK,
 * NQ_EINVAL (a NULL or empty argument) or NQ_ENOMEM. */
NQ_API int nq_opts_set_tls_identity(nq_opts *opts, const char *key, const char *cert, int pem);

/* Since 1.3 for TCP, since 1.4 for MQTT and gRPC.  The trust anchors
 * that verify the peer's certificate (over MQTT, the broker's):
 * any of a PEM file, a directory of hashed PEM files (as made by `openssl
 * rehash`), and PEM text in memory; NULL leaves one out.  A client checks
 * the server against them (instead of nq_opts_set_tls's cert_path or the
 * system's store), a server checks client certificates against them
 * (NQ_OPT_TLS_CLIENT_AUTH).  Copied; files are read at nq_open.  Turns TLS
 * on.  Returns NQ_OK, NQ_EINVAL (all three NULL, or one empty) or
 * NQ_ENOMEM. */
NQ_API int nq_opts_set_tls_trust(nq_opts *opts, const char *file, const char *dir,
                                 const char *pem);

/* ---- Credentials (since 1.4) ---------------------------------------------
 * Logins, tokens and the names of TLS peers.  A transport that cannot use
 * one of these fails nq_open with NQ_ENOTSUP and says which in the log.
 * Credentials the other side refuses end the attempt with NQ_EAUTH (a new
 * client's nq_open, or the put, get and close of a client that was
 * connected), with the reason in the log hook. */

/* MQTT, both roles (each is a client of the broker): the username and
 * password sent in CONNECT.  password may be NULL (no password); user may
 * not.  Copied.  A broker that refuses them (CONNACK 4 or 5) fails the
 * connection with NQ_EAUTH.  The password travels in clear text unless TLS
 * is on.  Returns NQ_OK, NQ_EINVAL (NULL or empty user) or NQ_ENOMEM. */
NQ_API int nq_opts_set_login(nq_opts *opts, const char *user, const char *password);

/* gRPC client: a bearer token sent with every call as the metadata
 * "authorization: Bearer <token>", over TLS only (nq_open without TLS
 * returns NQ_EINVAL: a token is never sent in clear).  Printable ASCII
 * without spaces, at most 8192 bytes; copied.  A server that does not
 * accept it ends the call UNAUTHENTICATED: NQ_EAUTH.  A net-queue server
 * ignores it.  Returns NQ_OK, NQ_EINVAL or NQ_ENOMEM. */
NQ_API int nq_opts_set_token(nq_opts *opts, const char *token);

/* gRPC server: accepts clients presenting this bearer token, and names
 * them identity (what nq_peer_identity and the admission callback report,
 * at most 1024 bytes, no newline or tab).  Called again it adds another
 * token (the same token again replaces its identity).  Once any token is
 * accepted, a call without one of them is refused before its INI is read
 * (UNAUTHENTICATED, NQ_STAT_REFUSED counts it; tokens are compared in
 * constant time).  Copied.  Returns NQ_OK, NQ_EINVAL or NQ_ENOMEM. */
NQ_API int nq_opts_accept_token(nq_opts *opts, const char *token, const char *identity);

/* A fresh secret for every connection attempt: the MQTT password (with
 * nq_opts_set_login's user) or the gRPC token, read again before the first
 * connection and each reconnection, so that an expiring password or token
 * is renewed in time.  Writes at most size bytes into buf (no NUL needed)
 * and their number into *len; returns NQ_OK, or anything else to fail the
 * attempt with NQ_EAUTH.  Runs on the thread that connects (nq_open's
 * caller's, or one of libnq's or the MQTT library's threads): it must not
 * block for long or call into the communicator.  It replaces the static
 * password or token while set.  ctx must outlive every communicator
 * opened with these options.  Returns NQ_OK or NQ_EINVAL. */
typedef int (*nq_secret_fn)(void *ctx, char *buf, size_t size, size_t *len);
NQ_API int nq_opts_set_secret_fn(nq_opts *opts, nq_secret_fn fn, void *ctx);

/* TLS client: the name expected in the server's certificate and sent as
 * SNI, when it differs from the host connected to (an IP address, a proxy,
 * a broker behind a load balancer).  Over gRPC it is also the call's
 * :authority.  At most 255 bytes; copied.  Returns NQ_OK, NQ_EINVAL or
 * NQ_ENOMEM. */
NQ_API int nq_opts_set_tls_server_name(nq_opts *opts, const char *name);

/* MQTT over TLS: the ALPN protocols offered to the broker, comma separated
 * ("x-amzn-mqtt-ca" for AWS IoT Core on port 443), each 1 to 255 bytes,
 * at most 1024 in all; copied.  Returns NQ_OK, NQ_EINVAL or NQ_ENOMEM. */
NQ_API int nq_opts_set_tls_alpn(nq_opts *opts, const char *protocols);

/* MQTT: the client id given to the broker, instead of the communicator's
 * id in hex (topics still carry the communicator's id, so net-queue peers
 * see no difference).  For brokers that bind client ids to logins or cap
 * their length (23 bytes in MQTT 3.1.1's minimum), and for a server whose
 * hex id, seen by every client, must not let anyone take its broker
 * connection.  1 to 65535 bytes; copied.  Returns NQ_OK, NQ_EINVAL or
 * NQ_ENOMEM. */
NQ_API int nq_opts_set_mqtt_client_id(nq_opts *opts, const char *client_id);

/* MQTT: puts prefix in front of every topic (prefix + "c2s/<hex>"), so
 * several independent servers can share one broker.  The default, "", gives
 * net-queue's topics.  At most 128 bytes, without '+' or '#'; it is copied.
 * Returns NQ_OK, NQ_EINVAL or NQ_ENOMEM. */
NQ_API int nq_opts_set_mqtt_prefix(nq_opts *opts, const char *prefix);

/* Registers serializer callbacks for nq_put_value / nq_get_value.  ctx is
 * passed to both and must outlive every communicator opened with these
 * options.  Returns NQ_OK or NQ_EINVAL (a NULL function). */
NQ_API int nq_opts_set_serializer(nq_opts *opts, nq_dump_fn dump, nq_load_fn load, void *ctx);

/* Registers a log hook (NULL removes it).  Without a hook libnq is silent
 * unless the environment variable NQ_LOG is set to error, warn, info or
 * debug, which logs to standard error.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_log(nq_opts *opts, nq_log_fn fn, void *ctx);

/* ------------------------------------------------------------------------ */
/* Communicators                                                             */
/* ------------------------------------------------------------------------ */

typedef struct nq_comm nq_comm;
typedef struct nq_future nq_future;
typedef struct nq_msg nq_msg;

/* One piece of a message to send: len bytes at data.  The bytes are not
 * copied when a future is requested (see nq_put). */
typedef struct nq_chunk {
    const void *data;
    size_t len;
} nq_chunk;

/* Opens a communicator.  opts may be NULL for the defaults; it is copied and
 * may be freed at once.  Never blocks on the network: a server binds its
 * address before returning (so address errors are reported here), a client
 * connects in the background and reports failures on its futures and get.
 * The communicator is owned by the caller: nq_close it, then nq_destroy it.
 * With MQTT both roles connect to the broker in nq_open and wait (bounded
 * by NQ_OPT_HANDSHAKE_TIMEOUT_MS) until it has acknowledged the connection
 * and the subscription, so that nothing is published before the answers can
 * be received; a broker that cannot be reached gives NQ_ECONNREFUSED, a TLS
 * failure NQ_ETLS.
 * Returns NQ_OK, NQ_EINVAL, NQ_ENOMEM, NQ_ENOTSUP (protocol not built in),
 * NQ_EADDR, NQ_EADDRINUSE, NQ_ECONNREFUSED (MQTT), NQ_ETLS (key or
 * certificate cannot be loaded, or MQTT's TLS failed) or NQ_ESYS. */
NQ_API int nq_open(nq_protocol protocol, nq_purpose purpose, const nq_opts *opts, nq_comm **out);

/* Queues one message, the concatenation of n chunks, without blocking.
 * - Client: peers must be NULL/0; the message goes to the server.
 * - Server: with npeers == 0 the message goes to every connected client
 *   (none connected: it goes nowhere and the future succeeds, as in
 *   net-queue); otherwise to each listed peer.
 * - future: when out is not NULL, *out receives a future that completes
 *   when every peer's copy has been handed to the transport, and the chunks
 *   are sent zero-copy: the caller must keep them unchanged until then.
 *   When out is NULL the bytes are copied before nq_put returns, counted
 *   against NQ_OPT_SEND_LIMIT.
 * - A 16-byte message equal to this communicator's own id is refused with
 *   NQ_EINVAL, because the peer would read it as the close handshake.
 * Returns NQ_OK, NQ_EINVAL, NQ_ENOMEM, NQ_ECLOSED (after nq_close),
 * NQ_ENOPEER (a listed peer is not connected; nothing was queued) or
 * NQ_EFULL (copy refused by NQ_OPT_SEND_LIMIT; nothing was queued).  Later
 * failures (the connection is lost, TLS fails, ...) complete the future with
 * that error.  Thread-safe. */
NQ_API int nq_put(nq_comm *comm, const nq_chunk *chunks, size_t n, const nq_id *peers,
                  size_t npeers, nq_future **out);

/* Takes the next received message, in arrival order across all peers (FIFO
 * per peer), waiting up to timeout_ms.  *out is owned by the caller (free it
 * with nq_msg_free).  After nq_close, queued messages are still returned;
 * when none is left the result is NQ_ECLOSED.  A client whose connection
 * failed gets its queued messages, then the failure (NQ_ECONNRESET,
 * NQ_ECONNREFUSED, NQ_ETLS, NQ_EPROTO ...).  A connection that ended in
 * silence (keep-alive, the heartbeat) is NQ_ECONNRESET here, in futures
 * and in nq_close, whatever its event's reason says: NQ_ETIMEDOUT always
 * means that the wait ended (before 1.4 a client's get could return it for
 * good).  Returns NQ_OK, NQ_EINVAL, NQ_ETIMEDOUT or one of those errors.
 * Thread-safe. */
NQ_API int nq_get(nq_comm *comm, int64_t timeout_ms, nq_msg **out);

/* Takes the next message from one of the npeers listed peers (since 1.2),
 * as nq_get does, leaving other peers' messages queued in their order.
 * Once no message of theirs is left, the final error is returned as by
 * nq_get (NQ_ECLOSED after nq_close ...), even while other peers' messages
 * remain.  Returns NQ_OK, NQ_EINVAL (no peers), NQ_ETIMEDOUT or such an
 * error.  Thread-safe; getters of different peers may wait at once. */
NQ_API int nq_get_from(nq_comm *comm, const nq_id *peers, size_t npeers, int64_t timeout_ms,
                       nq_msg **out);

/* The communicator's readiness descriptor (since 1.2), for poll, epoll,
 * libuv, asyncio and the like: readable exactly while nq_get would return
 * at once (a message waits, or the final error), and not readable
 * otherwise.  It is level-triggered: a message left queued keeps it
 * readable, so a loop takes messages with nq_get(comm, 0, ...) until
 * NQ_ETIMEDOUT, or one per wake-up, and never misses one.  (Waiting on it
 * edge-triggered, EPOLLET, is the trap ZMQ_FD users know: after one wake-up
 * nothing more comes until the queue has been emptied and filled again.)
 * Only its readability means anything: do not read from it, write to it or
 * close it; it belongs to the communicator and is closed by nq_destroy.
 * Returns NQ_OK, NQ_EINVAL or NQ_ESYS.  Thread-safe. */
NQ_API int nq_comm_fd(nq_comm *comm, int *fd);

/* Closes the communicator, blocking until it is done: queued data is
 * flushed, then the close handshake runs (a client sends FIN after its data
 * and waits for the server's FIN; a server stops accepting and waits until
 * every client has finished), bounded by NQ_OPT_CLOSE_TIMEOUT_MS.  Peers that
 * are lost do not hold it up.  Over MQTT the broker tells only of a libnq
 * peer's loss, so a client that left no will (net-queue's, or an INI
 * anyone published on an open broker) is waited for while it is heard
 * from: silent for three NQ_OPT_KEEPALIVE_MS, it is taken for lost
 * (keep-alive 0: waited for as long as it takes).  Such clients that said
 * nothing after their INI are kept 1024 at most by an open MQTT server
 * (since 1.4): beyond that, the one silent longest ends as lost (logged),
 * so forged INIs cost a bounded number of sessions.  Futures still pending
 * fail with NQ_ECLOSED.
 * Idempotent.  A client returns NQ_OK when its connection ended with a
 * clean handshake, else how it ended (NQ_ECONNREFUSED, NQ_ECONNRESET,
 * NQ_ETLS, ...); a server returns NQ_OK unless a peer was lost while it was
 * closing.  NQ_ETIMEDOUT means the close timeout cut the handshake short.
 * The communicator is closed either way.  Thread-safe; do not call it from a
 * future callback or log hook. */
NQ_API int nq_close(nq_comm *comm);

/* Closes the communicator if needed and frees it.  Messages and futures
 * obtained from it remain valid and must still be freed.  NULL allowed. */
NQ_API void nq_destroy(nq_comm *comm);

/* This communicator's own identity.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_comm_id(const nq_comm *comm, nq_id *out);

/* Client: the server's identity once its INI has arrived (NQ_ENOPEER
 * before).  Server: NQ_EINVAL. */
NQ_API int nq_server_id(nq_comm *comm, nq_id *out);

/* The local port: for a server the port it listens on (useful with port 0),
 * for a client the source port of its connection (0 before it connects).
 * Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_local_port(nq_comm *comm, uint16_t *out);

/* Copies up to cap connected peer ids (clients that completed their INI)
 * into ids and stores their total number in *count.  Returns NQ_OK or
 * NQ_EINVAL.  Thread-safe; the list can change right after. */
NQ_API int nq_peers(nq_comm *comm, nq_id *ids, size_t cap, size_t *count);

/* Since 1.3.  What authenticated a connected peer (a client: its server)
 * over TLS on TCP: the subject of the certificate it presented, in RFC 2253
 * form ("CN=client-a,O=Example"), then one line per subject alternative
 * name ("\nDNS:client-a.example", "\nIP:127.0.0.1", "\nURI:...",
 * "\nemail:..."); "" when it presented none (plain TCP, or a client a
 * server with NQ_OPT_TLS_CLIENT_AUTH 0 or 1 did not get one from).  Writes
 * at most size bytes with a NUL into buf (truncated when short; buf may be
 * NULL with size 0) and the full length without the NUL into *len.  Returns
 * NQ_OK, NQ_ENOPEER (not connected now) or NQ_EINVAL.  Thread-safe.
 * Since 1.4 the same over gRPC with TLS, followed, for a client admitted
 * by a token (nq_opts_accept_token), by a line "\ntoken:<identity>" (no
 * newline in front when no certificate came first).  Over MQTT it is
 * always "": the broker stands between; with a broker that binds topics to
 * logins (docs/credentials.md) the peer's id is what the broker checked. */
NQ_API int nq_peer_identity(nq_comm *comm, const nq_id *peer, char *buf, size_t size,
                            size_t *len);

/* Counters, read with nq_stat. */
typedef enum nq_stat_id {
    NQ_STAT_MSGS_IN = 1,          /* data messages received                    */
    NQ_STAT_MSGS_OUT = 2,         /* data messages fully handed to the kernel  */
    NQ_STAT_BYTES_IN = 3,         /* payload bytes received                    */
    NQ_STAT_BYTES_OUT = 4,        /* wire bytes sent (headers included)        */
    NQ_STAT_PEERS = 5,            /* peers connected now                       */
    NQ_STAT_CONNECTIONS = 6,      /* connections accepted or made, in total    */
    NQ_STAT_PROTOCOL_ERRORS = 7,  /* connections closed for breaking protocol  */
    NQ_STAT_TLS_ERRORS = 8,       /* TLS handshakes or records that failed     */
    NQ_STAT_CONNECTIONS_LOST = 9, /* connections that ended without FIN        */
    NQ_STAT_HANDSHAKE_TIMEOUTS = 10, /* connections closed for never finishing INI */
    NQ_STAT_READ_PAUSES = 11,     /* times a peer hit NQ_OPT_QUEUE_SIZE        */
    NQ_STAT_RECONNECTS = 12,      /* client: attempts to connect again (1.1)   */
    NQ_STAT_ACKED = 13,           /* connections that agreed on NQ_DELIVERY_ACKED (1.2) */
    NQ_STAT_RESUMED = 14,         /* server: sessions a returning peer took up again (1.2) */
    NQ_STAT_DROPPED = 15,         /* messages dropped by NQ_OPT_DROP_OLDEST (1.3) */
    NQ_STAT_REFUSED = 16          /* server: peers the admission callback refused (1.3) */
} nq_stat_id;

/* Reads a counter.  Returns NQ_OK or NQ_EINVAL.  Thread-safe. */
NQ_API int nq_stat(nq_comm *comm, nq_stat_id stat, int64_t *out);

/* ------------------------------------------------------------------------ */
/* Futures                                                                   */
/* ------------------------------------------------------------------------ */

/* Called once when a future completes, with the put's result (NQ_OK or an
 * error).  It runs on a libnq I/O thread (with gRPC, possibly one of the
 * grpc library's threads), or on the registering thread when the future is
 * already complete; it must not block, must not call nq_close,
 * and must not free the future. */
typedef void (*nq_future_cb)(nq_future *future, int result, void *ctx);

/* Waits up to timeout_ms for the future.  Returns the put's result (NQ_OK,
 * NQ_ECONNRESET, NQ_ECLOSED, NQ_ETLS, ...) once complete, or NQ_ETIMEDOUT
 * when it is still pending.  A callback registered in time has run before
 * this returns the result.  Thread-safe. */
NQ_API int nq_future_wait(nq_future *future, int64_t timeout_ms);

/* The put's result if complete, else NQ_EPENDING.  Never blocks. */
NQ_API int nq_future_result(nq_future *future);

/* Registers the completion callback (one per future).  Returns NQ_OK or
 * NQ_EINVAL (NULL function, or a callback already registered). */
NQ_API int nq_future_on_done(nq_future *future, nq_future_cb cb, void *ctx);

/* Releases the caller's reference.  The put itself goes on; a registered
 * callback still runs.  NULL allowed. */
NQ_API void nq_future_free(nq_future *future);

/* Withdraws a put (since 1.2).  Every copy of it that has not started on
 * the wire is taken out of its queue and never reaches its peer (a copy
 * waiting for a reconnecting client's next connection counts as not
 * started, unless an earlier connection carried it).  A copy partly or
 * wholly written is finished as usual: the wire cannot cut a frame.
 * Returns how many copies were withdrawn.  When any was, the future
 * completes with NQ_ECANCELED once the other copies are done; a put to
 * several peers (a broadcast) is told apart by the count: equal to the
 * number of peers, no peer gets the message; smaller, the others get it.
 * 0 means nothing changed: every copy had started, or the future had
 * completed (its result stays what it was).  It waits until every I/O
 * thread of the communicator has looked, which takes little time.
 * Once nq_close has begun it changes nothing (it waits for the close).
 * Returns NQ_EINVAL for NULL or when called on one of libnq's own threads
 * (from a callback), NQ_ENOMEM.  Call it before nq_destroy of the
 * communicator.  Thread-safe. */
NQ_API int nq_future_cancel(nq_future *future);

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* The sender's identity.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_msg_peer(const nq_msg *msg, nq_id *out);

/* A view of the message's bytes, contiguous, valid until nq_msg_free.  A
 * zero-length message gives len 0 (data is then not NULL but must not be
 * read).  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_msg_data(const nq_msg *msg, const void **data, size_t *len);

/* The message's length in bytes (0 for NULL). */
NQ_API size_t nq_msg_size(const nq_msg *msg);

/* Frees a message.  NULL allowed. */
NQ_API void nq_msg_free(nq_msg *msg);

/* ------------------------------------------------------------------------ */
/* Values (serializer callbacks)                                             */
/* ------------------------------------------------------------------------ */

/* Allocates memory that libnq may free (for nq_dump_fn output and for
 * buffers handed to libnq).  Returns NULL on failure.  nq_alloc(0) returns
 * a valid pointer. */
NQ_API void *nq_alloc(size_t size);

/* Frees memory from nq_alloc.  NULL allowed. */
NQ_API void nq_free(void *ptr);

/* Serializes value with the registered dump callback and puts the bytes as
 * nq_put does (they are owned by libnq, so no caller memory is held).
 * Returns what nq_put returns, NQ_EINVAL when no serializer is registered,
 * or NQ_ESERIALIZE when dump fails. */
NQ_API int nq_put_value(nq_comm *comm, const void *value, const nq_id *peers, size_t npeers,
                        nq_future **out);

/* Gets a message as nq_get does and hands its bytes to the registered load
 * callback; *value receives what load produced and *peer (if not NULL) the
 * sender.  Returns what nq_get returns, NQ_EINVAL when no serializer is
 * registered, or NQ_ESERIALIZE when load fails (the message is consumed). */
NQ_API int nq_get_value(nq_comm *comm, int64_t timeout_ms, nq_id *peer, void **value);

/* ------------------------------------------------------------------------ */
/* Peer events (since 1.1)                                                   */
/* ------------------------------------------------------------------------ */

typedef enum nq_event_type {
    /* A peer introduced itself: on a server a client whose INI arrived, on
     * a client its server. */
    NQ_EVENT_CONNECTED = 1,
    /* A peer that was connected is gone; reason says how:
     *   NQ_OK          it closed with the FIN handshake
     *   NQ_ECLOSED     this side closed (nq_close dropped it)
     *   NQ_ECONNRESET  it was lost: reset, EOF without FIN, silence for
     *                  TCP keep-alive's schedule, an MQTT peer whose broker
     *                  connection died
     *   NQ_ETIMEDOUT   the heartbeat between libnq peers heard nothing
     *                  from it for its schedule (NQ_OPT_KEEPALIVE_MS)
     *   NQ_EREPLACED   it connected again with the same id; the new
     *                  connection is the peer now (a CONNECTED follows).
     *                  Over MQTT the broker ends the old connection first,
     *                  so the old one is reported lost (NQ_ECONNRESET)
     *   NQ_EPROTO, NQ_ETLS, ...  the connection broke for that reason */
    NQ_EVENT_DISCONNECTED = 2,
    /* A client with NQ_OPT_RECONNECT_MS will try to connect again: after a
     * lost connection (following its DISCONNECTED) and after every attempt
     * that failed.  peer is the last server it knew (all zero before the
     * first); reason says why the last connection or attempt ended.  A
     * CONNECTED follows once a server answers, else, when
     * NQ_OPT_RECONNECT_GIVE_UP_MS runs out, nothing more. */
    NQ_EVENT_RECONNECTING = 3
} nq_event_type;

/* One event, valid only during the callback. */
typedef struct nq_event {
    int type;   /* an nq_event_type */
    nq_id peer; /* the peer concerned */
    int reason; /* NQ_EVENT_DISCONNECTED: see above; else NQ_OK */
} nq_event;

/* Called for every event, in order for any one peer: a CONNECTED, then at
 * most one DISCONNECTED (and on a reconnecting client, RECONNECTING events
 * between one connection's DISCONNECTED and the next CONNECTED).  It runs on one of libnq's I/O threads: it must
 * return quickly, must not block and must not call nq_close. */
typedef void (*nq_event_fn)(void *ctx, const nq_event *event);

/* Registers the event callback (NULL removes it); ctx is passed to it and
 * must outlive every communicator opened with these options.  Returns
 * NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_events(nq_opts *opts, nq_event_fn fn, void *ctx);

/* ------------------------------------------------------------------------ */
/* Admission (since 1.3)                                                     */
/* ------------------------------------------------------------------------ */

/* A peer asking to be served, valid only during the callback. */
typedef struct nq_admission {
    nq_id peer;           /* the id its INI claims */
    const char *address;  /* its address ("127.0.0.1:40312", "[::1]:40312");
                           * "" over MQTT, where the broker stands between */
    const char *identity; /* what authenticated it, as nq_peer_identity
                           * gives it; "" when nothing did */
} nq_admission;

/* Server: called on one of libnq's I/O threads when a peer's INI arrives,
 * before the peer is listed, before its CONNECTED event and before any of
 * its messages is delivered.  Return NQ_OK to serve it; any other value
 * refuses it: nothing it sent is delivered, it is never listed, no event
 * is reported, NQ_STAT_REFUSED counts it, the log says so, and its
 * connection ends.  The peer learns why where the transport can tell it:
 * over TCP (and TLS) a libnq client fails with NQ_EAUTH (through one urgent
 * byte a net-queue client never sees; a server with NQ_DELIVERY_ACKED
 * sends none, and its refused clients see a reset), over gRPC with
 * NQ_EAUTH (the call ends UNAUTHENTICATED); an MQTT client gets no answer
 * to its INI (its get times out, its close needs NQ_OPT_CLOSE_TIMEOUT_MS;
 * what it publishes is dropped).  With it an
 * application binds ids to identities, so that no peer takes another's id.
 * It must return quickly and must not call into the communicator. */
typedef int (*nq_admit_fn)(void *ctx, const nq_admission *who);

/* Registers the admission callback (NULL removes it); ctx is passed to it
 * and must outlive every communicator opened with these options.  Only a
 * server calls it.  Returns NQ_OK or NQ_EINVAL. */
NQ_API int nq_opts_set_admission(nq_opts *opts, nq_admit_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* NQ_NQ_H */
