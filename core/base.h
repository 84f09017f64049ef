/*
 * base.h: the primitives every other layer of libnq stands on, none of
 * which knows of communicators, sessions or transports: options, logging,
 * identities, monotonic time and deadline waits, network locations, the
 * lock-free command queue, the block pools and the intrusive list.
 * Nothing here is part of the ABI; every symbol is hidden.
 */
#ifndef NQ_CORE_BASE_H
#define NQ_CORE_BASE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/list.h"
#include "core/pool.h"
#include "nq/nq.h"

#define NQI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- options (core/opts.c) ------------------------------------------------ */

/* One past the last nq_option: the size of the table of integer options. */
#define NQI_OPT_COUNT (NQ_OPT_MQTT_MAX_PUBLISH + 1)

struct nq_opts {
    nq_id id;
    char host[256];
    uint16_t port;
    int64_t ints[NQI_OPT_COUNT];
    int tls;
    char *key_path;
    char *cert_path;
    /* nq_opts_set_tls_identity: paths, or PEM text when id_pem */
    char *id_key;
    char *id_cert;
    int id_pem;
    /* nq_opts_set_tls_trust */
    char *ca_file;
    char *ca_dir;
    char *ca_pem;
    char *mqtt_prefix;
    /* credentials (since 1.4) */
    char *login_user;
    char *login_password;
    char *token;
    /* nq_opts_accept_token: lines "identity\ttoken\n" */
    char *accepted_tokens;
    char *tls_server_name;
    char *tls_alpn;
    char *mqtt_client_id;
    nq_secret_fn secret_fn;
    void *secret_ctx;
    nq_dump_fn dump;
    nq_load_fn load;
    void *serializer_ctx;
    nq_log_fn log_fn;
    void *log_ctx;
    nq_event_fn event_fn;
    void *event_ctx;
    nq_admit_fn admit_fn;
    void *admit_ctx;
};

/* Deep-copies src into dst (which must be zeroed).  Returns NQ_OK or
 * NQ_ENOMEM. */
int nqi_opts_copy(nq_opts *dst, const nq_opts *src);
/* Frees what nqi_opts_copy allocated inside o (not o itself). */
void nqi_opts_clear(nq_opts *o);
/* Initialises o with the defaults (o zeroed, nothing allocated). */
int nqi_opts_defaults(nq_opts *o);
/* Replaces the strings *slots[i] of an nq_opts with copies of values[i]
 * (NULL stays NULL), all or none (at most 4).  Returns NQ_OK or
 * NQ_ENOMEM. */
int nqi_opts_replace_strings(char **slots[], const char *values[], size_t n);

/* ---- logging (core/log.c) -------------------------------------------------- */

typedef struct nqi_log {
    nq_log_fn fn;
    void *ctx;
    int level; /* highest level passed on */
} nqi_log;

void nqi_log_init(nqi_log *log, nq_log_fn fn, void *ctx);
void nqi_logf(const nqi_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The longest piece of output a transport may copy to coalesce small frames
 * (NQ_OPT_PUT_MERGE, NQ_OPT_EFFICIENT_SIZE): 0 when merging is off, else
 * the smaller of efficient_size - 1 and the transport's own cap. */
size_t nqi_opts_merge_limit(const nq_opts *o, size_t cap);

/* ---- TLS options shared by the transports that hold keys (core/opts.c) ----- */

/* Checks the TLS options of a transport whose server holds a key and whose
 * client may only name trusted certificates (TCP, gRPC): logs and returns
 * NQ_EINVAL when they do not fit purpose, else NQ_OK. */
int nqi_opts_check_tls_roles(const nq_opts *o, nq_purpose purpose, const nqi_log *log);

/* ---- credentials (core/creds.c) -------------------------------------------- */

/* What a transport takes beyond nq_opts_set_tls, for nqi_opts_refuse. */
#define NQI_TAKES_TLS_IDENTITY 0x001u
#define NQI_TAKES_TLS_TRUST 0x002u
#define NQI_TAKES_CLIENT_AUTH 0x004u
#define NQI_TAKES_MIN_VERSION 0x008u
#define NQI_TAKES_LOGIN 0x010u
#define NQI_TAKES_TOKEN 0x020u
#define NQI_TAKES_ACCEPT_TOKEN 0x040u
#define NQI_TAKES_SERVER_NAME 0x080u
#define NQI_TAKES_ALPN 0x100u
#define NQI_TAKES_CLIENT_ID 0x200u

/* Logs and returns NQ_ENOTSUP when o asks for a credential option outside
 * takes (NQI_TAKES_*), else NQ_OK. */
int nqi_opts_refuse(const nq_opts *o, unsigned takes, const char *transport,
                    const nqi_log *log);
/* The secret for one connection attempt: from o's secret callback when it
 * has one, else a copy of fixed (NULL gives NULL).  *out is malloc'd and
 * NUL-terminated, *len its length.  Returns NQ_OK, NQ_ENOMEM, or NQ_EAUTH
 * (logged) when the callback fails. */
int nqi_opts_secret(const nq_opts *o, const char *fixed, char **out, size_t *len,
                    const nqi_log *log);
/* Server: whether token (len bytes) is one of o's accepted tokens, compared
 * in constant time; writes the identity it stands for into identity (cap
 * bytes, NUL-terminated).  Returns NQ_OK or NQ_EAUTH. */
int nqi_opts_token_identity(const nq_opts *o, const char *token, size_t len, char *identity,
                            size_t cap);

/* ---- identities (core/id.c) ------------------------------------------------ */

#define NQI_ID_HEX_LEN 32
/* The id as 32 lower-case hex digits and a NUL (net-queue's uuid.hex). */
void nqi_id_hex(const nq_id *id, char out[NQI_ID_HEX_LEN + 1]);

/* ---- time and deadline waits (core/time.c) -------------------------------- */

int64_t nqi_now_ms(void);
/* A condition variable timed on CLOCK_MONOTONIC (as nqi_deadline_after
 * gives).  Returns pthread_cond_init's result. */
int nqi_cond_init(pthread_cond_t *cv);
/* CLOCK_MONOTONIC time timeout_ms from now (now for 0 or less). */
struct timespec nqi_deadline_after(int64_t timeout_ms);
/* One wait on cv (mu held) until the deadline, or without one when dl is
 * NULL.  Returns 0, or ETIMEDOUT once the deadline has passed. */
int nqi_cond_until(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *dl);

/* ---- network locations (core/netloc.c) ------------------------------------- */

struct addrinfo;

/* Resolves host and port for a stream socket: passive for a listener (any
 * family), else for connecting.  Logs and returns NQ_EADDR when the name
 * cannot be resolved; on success *out is freed with freeaddrinfo. */
int nqi_netloc_resolve(const char *host, uint16_t port, int passive, const nqi_log *log,
                       struct addrinfo **out);
/* Writes "<scheme>host:port" into buf, with an IPv6 address in brackets
 * ("tcp://[::1]:1883"); scheme may be "".  Returns NQ_OK, or NQ_EINVAL when
 * it does not fit. */
int nqi_netloc_format(char *buf, size_t cap, const char *scheme, const char *host,
                      uint16_t port);
/* The local port a socket is bound to, or 0. */
uint16_t nqi_socket_port(int fd);

/* ---- lock-free command queue, many producers, one consumer (core/mpsc.c) --- */

typedef struct nqi_mpsc_node {
    _Atomic(struct nqi_mpsc_node *) next;
} nqi_mpsc_node;

typedef struct nqi_mpsc {
    _Atomic(nqi_mpsc_node *) head;
    nqi_mpsc_node *tail;
    nqi_mpsc_node stub;
} nqi_mpsc;

void nqi_mpsc_init(nqi_mpsc *q);
void nqi_mpsc_push(nqi_mpsc *q, nqi_mpsc_node *n);
/* Returns the oldest node, or NULL when empty (or when a producer is midway
 * through a push; that producer wakes the consumer afterwards). */
nqi_mpsc_node *nqi_mpsc_pop(nqi_mpsc *q);
/* Consumer: 1 when no node is queued and no push is under way. */
int nqi_mpsc_empty(nqi_mpsc *q);

#endif
