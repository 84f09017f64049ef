/*
 * Communicators: the public entry points.  Each is a thin layer that checks
 * its arguments, then hands work to the event loops (put, close) or takes
 * it from the arrival queue (get).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/nqi.h"

/* ---- peers and live sessions ---------------------------------------------- */

int nqi_peers_add(nq_comm *c, nqi_session *s)
{
    int rv = NQ_OK;
    pthread_rwlock_wrlock(&c->peers_mu);
    for (size_t i = 0; i < c->npeers; i++) {
        if (nq_id_equal(&c->peers[i]->peer, &s->peer)) {
            rv = NQ_EPROTO;
            goto out;
        }
    }
    if (c->npeers == c->peers_cap) {
        size_t ncap = c->peers_cap == 0 ? 8 : c->peers_cap * 2;
        nqi_session **np = realloc(c->peers, ncap * sizeof(*np));
        if (np == NULL) {
            rv = NQ_ENOMEM;
            goto out;
        }
        c->peers = np;
        c->peers_cap = ncap;
    }
    nqi_session_ref(s);
    c->peers[c->npeers++] = s;
    s->registered = 1;
    nqi_stat_add(c, NQI_ST_PEERS, 1);
out:
    pthread_rwlock_unlock(&c->peers_mu);
    return rv;
}

void nqi_peers_remove(nq_comm *c, nqi_session *s)
{
    int found = 0;
    pthread_rwlock_wrlock(&c->peers_mu);
    for (size_t i = 0; i < c->npeers; i++) {
        if (c->peers[i] == s) {
            c->peers[i] = c->peers[--c->npeers];
            found = 1;
            break;
        }
    }
    s->registered = 0;
    pthread_rwlock_unlock(&c->peers_mu);
    if (found) {
        nqi_stat_add(c, NQI_ST_PEERS, -1);
        nqi_session_unref(s);
    }
}

void nqi_live_inc(nq_comm *c)
{
    pthread_mutex_lock(&c->live_mu);
    c->live++;
    pthread_mutex_unlock(&c->live_mu);
}

void nqi_live_dec(nq_comm *c, int err)
{
    pthread_mutex_lock(&c->live_mu);
    c->live--;
    if (err != 0 && c->first_error == 0) {
        c->first_error = err;
    }
    pthread_cond_broadcast(&c->live_cv);
    pthread_mutex_unlock(&c->live_mu);
}

/* Waits until no session is alive; returns 0, or NQ_ETIMEDOUT. */
static int wait_live(nq_comm *c, int64_t timeout_ms)
{
    struct timespec dl = nqi_deadline_after(timeout_ms);
    int rv = 0;
    pthread_mutex_lock(&c->live_mu);
    while (c->live > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&c->live_cv, &c->live_mu);
        } else if (pthread_cond_timedwait(&c->live_cv, &c->live_mu, &dl) == ETIMEDOUT) {
            rv = c->live > 0 ? NQ_ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->live_mu);
    return rv;
}

/* ---- open and destroy ------------------------------------------------------ */

static void comm_free(nq_comm *c)
{
    if (c->transport != NULL && c->transport->shutdown != NULL) {
        c->transport->shutdown(c);
    }
    for (int i = 0; i < c->nloops; i++) {
        nqi_loop_fini(&c->loops[i]);
    }
    free(c->loops);
    if (c->client != NULL) {
        nqi_session_unref(c->client);
    }
    nqi_msgq_fini(&c->msgq);
    for (size_t i = 0; i < c->npeers; i++) {
        nqi_session_unref(c->peers[i]);
    }
    free(c->peers);
    if (c->ssl_ctx != NULL) {
        nqi_tls_ctx_free(c->ssl_ctx);
    }
    pthread_mutex_destroy(&c->close_mu);
    pthread_mutex_destroy(&c->live_mu);
    pthread_cond_destroy(&c->live_cv);
    pthread_rwlock_destroy(&c->peers_mu);
    pthread_mutex_destroy(&c->server_id_mu);
    nqi_opts_clear(&c->opts);
    free(c);
}

static int check_tls_options(nq_comm *c)
{
    if (!c->opts.tls) {
        return NQ_OK;
    }
    if (c->protocol == NQ_MQTT) {
        /* Both roles are clients of the broker, which holds the key; paho
         * runs the TLS session. */
        if (c->opts.key_path != NULL) {
            nqi_logf(&c->log, NQ_LOG_ERROR,
                     "MQTT peers take only the broker's trusted certificates, no key");
            return NQ_EINVAL;
        }
        return NQ_OK;
    }
    if (c->purpose == NQ_SERVER && (c->opts.key_path == NULL || c->opts.cert_path == NULL)) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "a TLS server needs both a key and a certificate");
        return NQ_EINVAL;
    }
    if (c->purpose == NQ_CLIENT && c->opts.key_path != NULL) {
        nqi_logf(&c->log, NQ_LOG_ERROR, "a TLS client takes no private key");
        return NQ_EINVAL;
    }
    return nqi_tls_ctx_new(c, &c->ssl_ctx);
}

/* Creates the client's session with its INI queued first. */
static int start_client_session(nq_comm *c)
{
    nqi_session *s = nqi_session_new(c, &c->loops[0], -1);
    if (s == NULL) {
        return NQ_ENOMEM;
    }
    nqi_session_ref(s); /* the communicator's reference */
    c->client = s;
    nqi_live_inc(c);
    nqi_frame *ini = nqi_frame_handshake(&c->opts.id);
    if (ini == NULL || nqi_session_queue(s, ini) != NQ_OK) {
        if (ini != NULL) {
            nqi_frame_unref(ini);
        }
        return NQ_ENOMEM;
    }
    s->conn_state = NQI_CONN_RESOLVING;
    return NQ_OK;
}

int nq_open(nq_protocol protocol, nq_purpose purpose, const nq_opts *opts, nq_comm **out)
{
    if (out == NULL || (purpose != NQ_CLIENT && purpose != NQ_SERVER)) {
        return NQ_EINVAL;
    }
    const nqi_transport *transport;
    switch (protocol) {
    case NQ_TCP:
        transport = &nqi_tcp_transport;
        break;
    case NQ_MQTT:
        transport = &nqi_mqtt_transport;
        break;
    case NQ_GRPC:
        transport = &nqi_grpc_transport;
        break;
    default:
        return NQ_EINVAL;
    }
    nq_comm *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NQ_ENOMEM;
    }
    int rv = opts != NULL ? nqi_opts_copy(&c->opts, opts) : nqi_opts_defaults(&c->opts);
    if (rv != NQ_OK) {
        free(c);
        return rv;
    }
    c->transport = transport;
    c->protocol = protocol;
    c->purpose = purpose;
    nqi_log_init(&c->log, c->opts.log_fn, c->opts.log_ctx);
    atomic_init(&c->state, NQI_OPEN);
    pthread_mutex_init(&c->close_mu, NULL);
    pthread_mutex_init(&c->live_mu, NULL);
    nqi_cond_init(&c->live_cv);
    pthread_rwlock_init(&c->peers_mu, NULL);
    pthread_mutex_init(&c->server_id_mu, NULL);
    nqi_msgq_init(&c->msgq);

    /* Only TCP servers spread connections over several loops. */
    int nloops = purpose == NQ_SERVER && protocol == NQ_TCP ? (int)c->opts.ints[NQ_OPT_WORKERS] : 1;
    c->loops = calloc((size_t)nloops, sizeof(*c->loops));
    if (c->loops == NULL) {
        comm_free(c);
        return NQ_ENOMEM;
    }
    c->nloops = nloops;
    for (int i = 0; i < nloops && rv == NQ_OK; i++) {
        rv = nqi_loop_init(&c->loops[i], c, i);
    }
    if (rv == NQ_OK) {
        rv = check_tls_options(c);
    }
    if (rv == NQ_OK && purpose == NQ_CLIENT) {
        rv = start_client_session(c);
    }
    if (rv == NQ_OK) {
        rv = transport->open(c);
    }
    for (int i = 0; i < nloops && rv == NQ_OK; i++) {
        rv = nqi_loop_start(&c->loops[i]);
    }
    if (rv != NQ_OK) {
        /* Loops that started have nothing to do yet; stop them. */
        for (int i = 0; i < nloops; i++) {
            if (c->loops[i].started) {
                c->loops[i].stopping = 1;
                nqi_loop_post_simple(&c->loops[i], NQI_CMD_ABORT, NULL, -1);
                nqi_loop_post_simple(&c->loops[i], NQI_CMD_STOP, NULL, -1);
                nqi_loop_join(&c->loops[i]);
            }
        }
        if (c->client != NULL) {
            nqi_session_end(c->client, NQ_ECLOSED);
        }
        comm_free(c);
        return rv;
    }
    *out = c;
    return NQ_OK;
}

int nq_close(nq_comm *c)
{
    if (c == NULL) {
        return NQ_EINVAL;
    }
    pthread_mutex_lock(&c->close_mu);
    if (atomic_load(&c->state) == NQI_CLOSED) {
        pthread_mutex_unlock(&c->close_mu);
        return c->close_result;
    }
    atomic_store(&c->state, NQI_CLOSING);
    for (int i = 0; i < c->nloops; i++) {
        while (nqi_loop_post_simple(&c->loops[i], NQI_CMD_CLOSE, NULL, -1) != NQ_OK) {
        }
    }
    int rv = wait_live(c, c->opts.ints[NQ_OPT_CLOSE_TIMEOUT_MS]);
    if (rv == NQ_ETIMEDOUT) {
        nqi_logf(&c->log, NQ_LOG_WARN, "close handshake timed out; dropping connections");
        for (int i = 0; i < c->nloops; i++) {
            while (nqi_loop_post_simple(&c->loops[i], NQI_CMD_ABORT, NULL, -1) != NQ_OK) {
            }
        }
        wait_live(c, -1);
    }
    if (c->transport->close != NULL) {
        c->transport->close(c);
    }
    for (int i = 0; i < c->nloops; i++) {
        while (nqi_loop_post_simple(&c->loops[i], NQI_CMD_STOP, NULL, -1) != NQ_OK) {
        }
    }
    for (int i = 0; i < c->nloops; i++) {
        nqi_loop_join(&c->loops[i]);
    }
    nqi_msgq_finish(&c->msgq, NQ_ECLOSED);
    pthread_mutex_lock(&c->live_mu);
    c->close_result = rv != 0 ? rv : c->first_error;
    pthread_mutex_unlock(&c->live_mu);
    atomic_store(&c->state, NQI_CLOSED);
    pthread_mutex_unlock(&c->close_mu);
    return c->close_result;
}

void nq_destroy(nq_comm *c)
{
    if (c == NULL) {
        return;
    }
    nq_close(c);
    comm_free(c);
}

/* ---- put ------------------------------------------------------------------- */

/* 1 when the n chunks hold exactly the 16 bytes of id. */
static int equals_id(const nq_chunk *chunks, size_t n, const nq_id *id)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].len > sizeof(id->bytes) - at ||
            memcmp(id->bytes + at, chunks[i].data, chunks[i].len) != 0) {
            return 0;
        }
        at += chunks[i].len;
    }
    return at == sizeof(id->bytes);
}

/* Puts to at most this many peers keep their bookkeeping on the stack, so a
 * put costs no allocation beyond its frame and future. */
#define SMALL_TARGETS 8

/* Collects referenced sessions to send to into small, or into a new array
 * when there are more; returns their count or an error. */
static int collect_targets(nq_comm *c, const nq_id *peers, size_t npeers, nqi_session **small,
                           nqi_session ***out)
{
    if (c->purpose == NQ_CLIENT) {
        /* Lent, not referenced: the client's session outlives its loop. */
        small[0] = c->client;
        *out = small;
        return 1;
    }
    int rv = 0;
    pthread_rwlock_rdlock(&c->peers_mu);
    size_t want = npeers == 0 ? c->npeers : npeers;
    nqi_session **t = want <= SMALL_TARGETS ? small : malloc(want * sizeof(*t));
    if (t == NULL) {
        pthread_rwlock_unlock(&c->peers_mu);
        return NQ_ENOMEM;
    }
    for (size_t i = 0; i < want; i++) {
        nqi_session *s = NULL;
        if (npeers == 0) {
            s = c->peers[i];
        } else {
            for (size_t k = 0; k < c->npeers; k++) {
                if (nq_id_equal(&c->peers[k]->peer, &peers[i])) {
                    s = c->peers[k];
                    break;
                }
            }
        }
        if (s == NULL) {
            rv = NQ_ENOPEER;
            break;
        }
        nqi_session_ref(s);
        t[rv++] = s;
    }
    pthread_rwlock_unlock(&c->peers_mu);
    if (rv < 0 || (npeers > 0 && (size_t)rv != npeers)) {
        int got = rv < 0 ? 0 : rv;
        for (int i = 0; i < got; i++) {
            nqi_session_unref(t[i]);
        }
        if (t != small) {
            free(t);
        }
        return NQ_ENOPEER;
    }
    *out = t;
    return rv;
}

static void release_arrays(nqi_session **targets, nqi_session **small_targets, nqi_cmd **cmds,
                           nqi_cmd **small_cmds)
{
    if (targets != small_targets) {
        free(targets);
    }
    if (cmds != small_cmds) {
        free(cmds);
    }
}

/* Queues an already built frame to the targets and releases the caller's
 * reference to it. */
static int post_frame(nq_comm *c, nqi_frame *f, const nq_id *peers, size_t npeers,
                      nq_future **out)
{
    nqi_session *small_targets[SMALL_TARGETS];
    nqi_session **targets = NULL;
    int n = collect_targets(c, peers, npeers, small_targets, &targets);
    if (n < 0) {
        nqi_frame_unref(f);
        return n;
    }
    /* Extra commands are allocated up front so a failure leaves nothing
     * half-sent.  The first target uses the command inside the frame. */
    nqi_cmd *small_cmds[SMALL_TARGETS] = {NULL};
    nqi_cmd **cmds = n <= SMALL_TARGETS ? small_cmds : calloc((size_t)n, sizeof(*cmds));
    int rv = cmds == NULL ? NQ_ENOMEM : NQ_OK;
    for (int i = 1; i < n && rv == NQ_OK; i++) {
        cmds[i] = nqi_block_calloc(sizeof(nqi_cmd));
        if (cmds[i] == NULL) {
            rv = NQ_ENOMEM;
        }
    }
    nq_future *fut = NULL;
    if (rv == NQ_OK && out != NULL) {
        fut = nqi_future_new(n > 0 ? n : 1);
        if (fut == NULL) {
            rv = NQ_ENOMEM;
        }
    }
    if (rv != NQ_OK) {
        for (int i = 0; i < n; i++) {
            if (c->purpose != NQ_CLIENT) {
                nqi_session_unref(targets[i]);
            }
            if (cmds != NULL) {
                nqi_block_free(cmds[i]);
            }
        }
        release_arrays(targets, small_targets, cmds, small_cmds);
        nqi_frame_unref(f);
        return rv;
    }
    f->future = fut;
    if (fut != NULL) {
        *out = fut;
        if (n == 0) {
            nqi_future_part_done(fut, NQ_OK);
            /* The frame keeps no reference to a finished future. */
            f->future = NULL;
        }
    }
    for (int i = 0; i < n; i++) {
        nqi_cmd *cmd = i == 0 ? &f->cmd : cmds[i];
        cmd->type = NQI_CMD_SEND;
        cmd->session = targets[i]; /* the reference moves to the command */
        cmd->borrowed = c->purpose == NQ_CLIENT;
        cmd->frame = f;
        if (i > 0) {
            nqi_frame_ref(f); /* the first command takes the caller's */
        }
    }
    /* Post only after every reference is taken: a command may run and drop
     * its reference at once, and f is not touched after the last post. */
    for (int i = 0; i < n; i++) {
        nqi_cmd *cmd = i == 0 ? &f->cmd : cmds[i];
        nqi_loop_post(targets[i]->loop, cmd);
    }
    release_arrays(targets, small_targets, cmds, small_cmds);
    if (n == 0) {
        nqi_frame_unref(f);
    }
    return NQ_OK;
}

int nq_put(nq_comm *comm, const nq_chunk *chunks, size_t n, const nq_id *peers, size_t npeers,
           nq_future **out)
{
    if (comm == NULL || (n > 0 && chunks == NULL) || (npeers > 0 && peers == NULL)) {
        return NQ_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].data == NULL && chunks[i].len > 0) {
            return NQ_EINVAL;
        }
    }
    if (comm->purpose == NQ_CLIENT && npeers > 0) {
        nqi_logf(&comm->log, NQ_LOG_ERROR, "a client sends only to its server; pass no peers");
        return NQ_EINVAL;
    }
    if (atomic_load(&comm->state) != NQI_OPEN) {
        return NQ_ECLOSED;
    }
    if (equals_id(chunks, n, &comm->opts.id)) {
        nqi_logf(&comm->log, NQ_LOG_ERROR,
                 "refusing a 16-byte message equal to this communicator's id (it means FIN)");
        return NQ_EINVAL;
    }
    int copy = out == NULL;
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        total += (long long)chunks[i].len;
    }
    if (copy) {
        long long limit = comm->opts.ints[NQ_OPT_SEND_LIMIT];
        long long now = atomic_fetch_add(&comm->send_bytes, total) + total;
        if (now > limit && total > 0) {
            atomic_fetch_sub(&comm->send_bytes, total);
            return NQ_EFULL;
        }
    }
    nqi_frame *f = nqi_frame_new(comm, chunks, n, copy);
    if (f == NULL) {
        if (copy) {
            atomic_fetch_sub(&comm->send_bytes, total);
        }
        return NQ_ENOMEM;
    }
    f->owned_len = copy ? (size_t)total : 0;
    return post_frame(comm, f, peers, npeers, out);
}

/* ---- get and messages ------------------------------------------------------- */

/* A message leaves the arrival queue: its peer may read again if it was
 * held back by NQ_OPT_QUEUE_SIZE. */
static void taken(nq_comm *c, nq_msg *m)
{
    nqi_session *s = m->session;
    m->session = NULL;
    if (s == NULL) {
        return;
    }
    long left = atomic_fetch_sub(&s->queued, 1) - 1;
    if (atomic_load(&s->paused) && left < (long)c->opts.ints[NQ_OPT_QUEUE_SIZE] &&
        !atomic_exchange(&s->resume_requested, 1)) {
        if (nqi_loop_post_simple(s->loop, NQI_CMD_RESUME, s, -1) != NQ_OK) {
            atomic_store(&s->resume_requested, 0);
        }
    }
    nqi_session_unref(s);
}

int nq_get(nq_comm *comm, int64_t timeout_ms, nq_msg **out)
{
    if (comm == NULL || out == NULL || timeout_ms < -1) {
        return NQ_EINVAL;
    }
    nq_msg *m;
    int rv = nqi_msgq_pop(&comm->msgq, timeout_ms, &m);
    if (rv != NQ_OK) {
        return rv;
    }
    taken(comm, m);
    *out = m;
    return NQ_OK;
}

int nq_msg_peer(const nq_msg *msg, nq_id *out)
{
    if (msg == NULL || out == NULL) {
        return NQ_EINVAL;
    }
    *out = msg->peer;
    return NQ_OK;
}

int nq_msg_data(const nq_msg *msg, const void **data, size_t *len)
{
    static const uint8_t empty[1];
    if (msg == NULL || data == NULL || len == NULL) {
        return NQ_EINVAL;
    }
    *data = msg->data != NULL ? msg->data : empty;
    *len = msg->len;
    return NQ_OK;
}

size_t nq_msg_size(const nq_msg *msg)
{
    return msg != NULL ? msg->len : 0;
}

void nq_msg_free(nq_msg *msg)
{
    if (msg == NULL) {
        return;
    }
    if (msg->session != NULL) {
        nqi_session_unref(msg->session);
    }
    nqi_block_free(msg->data);
    nqi_block_free(msg);
}

/* ---- values ------------------------------------------------------------------ */

int nq_put_value(nq_comm *comm, const void *value, const nq_id *peers, size_t npeers,
                 nq_future **out)
{
    if (comm == NULL || comm->opts.dump == NULL) {
        return NQ_EINVAL;
    }
    nq_bytes b = {NULL, 0};
    if (comm->opts.dump(comm->opts.serializer_ctx, value, &b) != 0 ||
        (b.data == NULL && b.len > 0)) {
        nq_free(b.data);
        return NQ_ESERIALIZE;
    }
    if (atomic_load(&comm->state) != NQI_OPEN) {
        nq_free(b.data);
        return NQ_ECLOSED;
    }
    nq_chunk one = {b.data, b.len};
    if (equals_id(&one, 1, &comm->opts.id) || (comm->purpose == NQ_CLIENT && npeers > 0)) {
        nq_free(b.data);
        return NQ_EINVAL;
    }
    nqi_frame *f = nqi_frame_adopt(comm, b.data, b.len);
    if (f == NULL) {
        nq_free(b.data);
        return NQ_ENOMEM;
    }
    return post_frame(comm, f, peers, npeers, out);
}

int nq_get_value(nq_comm *comm, int64_t timeout_ms, nq_id *peer, void **value)
{
    if (comm == NULL || value == NULL || comm->opts.load == NULL) {
        return NQ_EINVAL;
    }
    nq_msg *m;
    int rv = nq_get(comm, timeout_ms, &m);
    if (rv != NQ_OK) {
        return rv;
    }
    nq_bytes in = {m->data, m->len};
    rv = comm->opts.load(comm->opts.serializer_ctx, &in, value) == 0 ? NQ_OK : NQ_ESERIALIZE;
    if (peer != NULL) {
        *peer = m->peer;
    }
    nq_msg_free(m);
    return rv;
}

/* ---- queries ------------------------------------------------------------------- */

int nq_comm_id(const nq_comm *comm, nq_id *out)
{
    if (comm == NULL || out == NULL) {
        return NQ_EINVAL;
    }
    *out = comm->opts.id;
    return NQ_OK;
}

int nq_server_id(nq_comm *comm, nq_id *out)
{
    if (comm == NULL || out == NULL || comm->purpose != NQ_CLIENT) {
        return NQ_EINVAL;
    }
    pthread_mutex_lock(&comm->server_id_mu);
    int known = comm->server_id_known;
    if (known) {
        *out = comm->server_id;
    }
    pthread_mutex_unlock(&comm->server_id_mu);
    return known ? NQ_OK : NQ_ENOPEER;
}

int nq_local_port(nq_comm *comm, uint16_t *out)
{
    if (comm == NULL || out == NULL) {
        return NQ_EINVAL;
    }
    *out = (uint16_t)atomic_load(&comm->local_port);
    return NQ_OK;
}

int nq_peers(nq_comm *comm, nq_id *ids, size_t cap, size_t *count)
{
    if (comm == NULL || count == NULL || (cap > 0 && ids == NULL)) {
        return NQ_EINVAL;
    }
    pthread_rwlock_rdlock(&comm->peers_mu);
    for (size_t i = 0; i < comm->npeers && i < cap; i++) {
        ids[i] = comm->peers[i]->peer;
    }
    *count = comm->npeers;
    pthread_rwlock_unlock(&comm->peers_mu);
    return NQ_OK;
}

int nq_stat(nq_comm *comm, nq_stat_id stat, int64_t *out)
{
    if (comm == NULL || out == NULL || stat < NQ_STAT_MSGS_IN || stat > NQ_STAT_READ_PAUSES) {
        return NQ_EINVAL;
    }
    *out = atomic_load(&comm->stats[stat - 1]);
    return NQ_OK;
}
