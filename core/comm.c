/*
 * Communicators: the public entry points other than put (core/put.c).
 * Each checks its arguments, then hands work to the workers' loops (close)
 * or takes it from the arrival queue (get).  A communicator's workers are
 * set up and stopped here; the commands that begin the close, drop every
 * connection and stop a worker are preallocated in it, so close never
 * waits for memory.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/peers.h"
#include "core/redial.h"
#include "core/transport.h"

/* ---- workers ---------------------------------------------------------------- */

/* nq_close began: a client sends FIN after its data, a server stops taking
 * connections and drops strangers; every paused peer reads again so that
 * its FIN can arrive. */
static void run_close(nqi_loop *l, nqi_cmd *cmd)
{
    (void)cmd;
    nqi_worker *w = nqi_worker_of(l);
    nq_comm *c = w->comm;
    w->closing = 1;
    if (c->transport->worker_closing != NULL) {
        c->transport->worker_closing(w);
    }
    nqi_node *n, *next;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = next) {
        next = nqi_list_next(&w->sessions, n);
        nqi_session *s = NQI_CONTAINER(n, nqi_session, link);
        nqi_session_ref(s);
        if (s->waiting) {
            /* Disconnected: what waits for the next connection fails with
             * what ended the last one (a server stops waiting for a peer
             * to come back). */
            nqi_session_end(s, s->error != 0 ? s->error : NQ_ECLOSED);
        } else if (c->purpose == NQ_CLIENT) {
            if (nqi_session_queue_fin(s) != NQ_OK) {
                nqi_session_end(s, NQ_ENOMEM);
            }
        } else if (!s->ini_received) {
            /* Strangers that never introduced themselves are not peers to
             * wait for. */
            nqi_session_end(s, NQ_ECLOSED);
        }
        nqi_session_resume(s);
        nqi_session_unref(s);
    }
}

static void run_abort(nqi_loop *l, nqi_cmd *cmd)
{
    (void)cmd;
    nqi_worker_end_sessions(nqi_worker_of(l), NQ_ECLOSED);
}

static void run_stop(nqi_loop *l, nqi_cmd *cmd)
{
    (void)cmd;
    nqi_worker *w = nqi_worker_of(l);
    w->closing = 1;
    nqi_worker_end_sessions(w, NQ_ECLOSED);
    nqi_loop_stop(l);
}

static void discard_nothing(nqi_cmd *cmd)
{
    (void)cmd;
}

static void worker_on_start(nqi_loop *l)
{
    nqi_worker *w = nqi_worker_of(l);
    if (w->comm->transport->worker_start != NULL) {
        w->comm->transport->worker_start(w);
    }
}

static int worker_init(nqi_worker *w, nq_comm *c)
{
    w->comm = c;
    nqi_list_init(&w->sessions);
    w->close_cmd = (nqi_cmd){.run = run_close, .discard = discard_nothing};
    w->abort_cmd = (nqi_cmd){.run = run_abort, .discard = discard_nothing};
    w->stop_cmd = (nqi_cmd){.run = run_stop, .discard = discard_nothing};
    return nqi_loop_init(&w->loop, w);
}

/* Stops and joins every started worker after ending their sessions. */
static void stop_workers(nq_comm *c, int abort_first)
{
    for (int i = 0; i < c->nworkers; i++) {
        nqi_worker *w = &c->workers[i];
        if (w->loop.started) {
            if (abort_first) {
                nqi_loop_post(&w->loop, &w->abort_cmd);
            }
            nqi_loop_post(&w->loop, &w->stop_cmd);
        }
    }
    for (int i = 0; i < c->nworkers; i++) {
        nqi_loop_join(&c->workers[i].loop);
    }
}

/* ---- open and destroy ------------------------------------------------------ */

/* A message nobody took: the last one of its sender's releases the queue's
 * reference to the session. */
static void free_untaken(nq_msg *m)
{
    nqi_session *s = m->session;
    nqi_msgq_peer *from = m->from;
    m->session = NULL;
    nq_msg_free(m);
    if (s != NULL && --from->count == 0) {
        nqi_session_unref(s);
    }
}

static void comm_free(nq_comm *c)
{
    if (c->transport->shutdown != NULL) {
        c->transport->shutdown(c);
    }
    for (int i = 0; i < c->nworkers; i++) {
        nqi_loop_fini(&c->workers[i].loop);
    }
    free(c->workers);
    if (c->client != NULL) {
        nqi_session_unref(c->client);
    }
    nqi_msgq_fini(&c->msgq, free_untaken);
    for (size_t i = 0; i < c->npeers; i++) {
        nqi_session_unref(c->peers[i]);
    }
    free(c->peers);
    pthread_mutex_destroy(&c->close_mu);
    pthread_mutex_destroy(&c->live_mu);
    pthread_cond_destroy(&c->live_cv);
    pthread_rwlock_destroy(&c->peers_mu);
    pthread_mutex_destroy(&c->events_mu);
    pthread_mutex_destroy(&c->server_id_mu);
    nqi_opts_clear(&c->opts);
    free(c);
}

/* Creates the client's session with its INI queued first. */
static int start_client_session(nq_comm *c)
{
    nqi_session *s = nqi_session_new(&c->workers[0]);
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
    ini->kind = NQI_FRAME_INI;
    s->hello = ini;
    return NQ_OK;
}

int nq_open(nq_protocol protocol, nq_purpose purpose, const nq_opts *opts, nq_comm **out)
{
    if (out == NULL || (purpose != NQ_CLIENT && purpose != NQ_SERVER) ||
        (protocol != NQ_TCP && protocol != NQ_MQTT && protocol != NQ_GRPC)) {
        return NQ_EINVAL;
    }
    const nqi_transport *transport = nqi_transport_for(protocol);
    if (transport == NULL) {
        return NQ_ENOTSUP;
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
    c->purpose = purpose;
    nqi_log_init(&c->log, c->opts.log_fn, c->opts.log_ctx);
    if (purpose == NQ_SERVER && transport->multi_worker && c->opts.ints[NQ_OPT_WORKERS] > 1 &&
        nqi_ack_wanted(c)) {
        /* A returning peer's new connection must find its session on the
         * same thread. */
        nqi_logf(&c->log, NQ_LOG_ERROR,
                 "NQ_DELIVERY_ACKED needs a server with one worker (NQ_OPT_WORKERS is %lld)",
                 (long long)c->opts.ints[NQ_OPT_WORKERS]);
        nqi_opts_clear(&c->opts);
        free(c);
        return NQ_EINVAL;
    }
    atomic_init(&c->state, NQI_OPEN);
    pthread_mutex_init(&c->close_mu, NULL);
    pthread_mutex_init(&c->live_mu, NULL);
    nqi_cond_init(&c->live_cv);
    pthread_rwlock_init(&c->peers_mu, NULL);
    pthread_mutex_init(&c->events_mu, NULL);
    pthread_mutex_init(&c->server_id_mu, NULL);
    nqi_msgq_init(&c->msgq);

    int n = purpose == NQ_SERVER && transport->multi_worker ? (int)c->opts.ints[NQ_OPT_WORKERS]
                                                             : 1;
    c->workers = calloc((size_t)n, sizeof(*c->workers));
    if (c->workers == NULL) {
        comm_free(c);
        return NQ_ENOMEM;
    }
    for (int i = 0; i < n && rv == NQ_OK; i++) {
        rv = worker_init(&c->workers[i], c);
        c->nworkers = i + 1; /* initialised, so released by comm_free */
    }
    if (rv == NQ_OK && purpose == NQ_CLIENT) {
        rv = start_client_session(c);
    }
    if (rv == NQ_OK) {
        rv = transport->open(c);
    }
    for (int i = 0; i < n && rv == NQ_OK; i++) {
        rv = nqi_loop_start(&c->workers[i].loop, worker_on_start);
    }
    if (rv != NQ_OK) {
        /* Workers that started have nothing to do yet; stop them. */
        stop_workers(c, 1);
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
    for (int i = 0; i < c->nworkers; i++) {
        nqi_loop_post(&c->workers[i].loop, &c->workers[i].close_cmd);
    }
    int rv = nqi_live_wait(c, c->opts.ints[NQ_OPT_CLOSE_TIMEOUT_MS]);
    if (rv == NQ_ETIMEDOUT) {
        nqi_logf(&c->log, NQ_LOG_WARN, "close handshake timed out; dropping connections");
        for (int i = 0; i < c->nworkers; i++) {
            nqi_loop_post(&c->workers[i].loop, &c->workers[i].abort_cmd);
        }
        nqi_live_wait(c, -1);
    }
    if (c->transport->close != NULL) {
        c->transport->close(c);
    }
    stop_workers(c, 0);
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

/* ---- get and messages ------------------------------------------------------- */

/* A message left the arrival queue for the caller, leaving left of its
 * sender's. */
static void taken(nq_msg *m, long left, nq_msg **out)
{
    nqi_session *s = m->session;
    if (s != NULL) {
        m->session = NULL;
        nqi_session_taken(s, left);
    }
    *out = m;
}

int nq_get(nq_comm *comm, int64_t timeout_ms, nq_msg **out)
{
    if (comm == NULL || out == NULL || timeout_ms < -1) {
        return NQ_EINVAL;
    }
    nq_msg *m;
    long left = 0;
    int rv = nqi_msgq_pop(&comm->msgq, timeout_ms, &m, &left);
    if (rv == NQ_OK) {
        taken(m, left, out);
    }
    return rv;
}

int nq_get_from(nq_comm *comm, const nq_id *peers, size_t npeers, int64_t timeout_ms,
                nq_msg **out)
{
    if (comm == NULL || out == NULL || peers == NULL || npeers == 0 || timeout_ms < -1) {
        return NQ_EINVAL;
    }
    nq_msg *m;
    long left = 0;
    int rv = nqi_msgq_pop_from(&comm->msgq, peers, npeers, timeout_ms, &m, &left);
    if (rv == NQ_OK) {
        taken(m, left, out);
    }
    return rv;
}

/* nq_future_cancel's look at one worker's queues. */
typedef struct sweep {
    nqi_cmd cmd; /* first member */
    nq_future *future;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *left;
} sweep;

static void sweep_done(sweep *w)
{
    pthread_mutex_lock(w->mu);
    if (--*w->left == 0) {
        pthread_cond_broadcast(w->cv);
    }
    pthread_mutex_unlock(w->mu);
}

static void run_sweep(nqi_loop *l, nqi_cmd *cmd)
{
    sweep *w = (sweep *)cmd;
    nqi_worker *wk = nqi_worker_of(l);
    for (nqi_node *n = nqi_list_first(&wk->sessions); n != NULL;
         n = nqi_list_next(&wk->sessions, n)) {
        nqi_session_withdraw(NQI_CONTAINER(n, nqi_session, link), w->future);
    }
    sweep_done(w);
}

static void discard_sweep(nqi_cmd *cmd)
{
    sweep_done((sweep *)cmd);
}

int nq_future_cancel(nq_future *f)
{
    if (f == NULL) {
        return NQ_EINVAL;
    }
    nq_comm *c = nqi_future_comm(f);
    if (c == NULL || nq_future_result(f) != NQ_EPENDING) {
        return 0;
    }
    for (int i = 0; i < c->nworkers; i++) {
        if (pthread_equal(pthread_self(), c->workers[i].loop.thread)) {
            nqi_logf(&c->log, NQ_LOG_ERROR, "nq_future_cancel called on an I/O thread");
            return NQ_EINVAL;
        }
    }
    sweep *w = calloc((size_t)c->nworkers, sizeof(*w));
    if (w == NULL) {
        return NQ_ENOMEM;
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    nqi_cond_init(&cv);
    int left = c->nworkers;
    /* While the communicator is open its loops run, and close's own
     * commands (the last of which stops them) queue behind these. */
    pthread_mutex_lock(&c->close_mu);
    if (atomic_load(&c->state) != NQI_OPEN) {
        pthread_mutex_unlock(&c->close_mu);
        pthread_cond_destroy(&cv);
        free(w);
        return 0;
    }
    nqi_future_cancel_asked(f); /* deliveries not yet queued are withdrawn on arrival */
    for (int i = 0; i < c->nworkers; i++) {
        w[i].cmd.run = run_sweep;
        w[i].cmd.discard = discard_sweep;
        w[i].future = f;
        w[i].mu = &mu;
        w[i].cv = &cv;
        w[i].left = &left;
        nqi_loop_post(&c->workers[i].loop, &w[i].cmd);
    }
    pthread_mutex_unlock(&c->close_mu);
    pthread_mutex_lock(&mu);
    while (left > 0) {
        nqi_cond_until(&cv, &mu, NULL);
    }
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    free(w);
    return nqi_future_withdrawn_count(f);
}

int nq_comm_fd(nq_comm *comm, int *fd)
{
    if (comm == NULL || fd == NULL) {
        return NQ_EINVAL;
    }
    return nqi_msgq_fd(&comm->msgq, fd);
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
    if (msg->data != nqi_msg_inline(msg)) {
        nqi_block_free(msg->data);
    }
    nqi_block_free(msg);
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

/* Copies text (NULL: "") into buf as nq_peer_identity says. */
static void give_text(const char *text, char *buf, size_t size, size_t *len)
{
    size_t n = text != NULL ? strlen(text) : 0;
    if (size > 0) {
        size_t take = n < size - 1 ? n : size - 1;
        memcpy(buf, text != NULL ? text : "", take);
        buf[take] = '\0';
    }
    *len = n;
}

int nq_peer_identity(nq_comm *comm, const nq_id *peer, char *buf, size_t size, size_t *len)
{
    if (comm == NULL || peer == NULL || len == NULL || (size > 0 && buf == NULL)) {
        return NQ_EINVAL;
    }
    int rv = NQ_ENOPEER;
    pthread_rwlock_rdlock(&comm->peers_mu);
    pthread_mutex_lock(&comm->server_id_mu);
    if (comm->purpose == NQ_CLIENT) {
        if (comm->server_id_known && nq_id_equal(&comm->server_id, peer) &&
            comm->client != NULL) {
            give_text(comm->client->identity, buf, size, len);
            rv = NQ_OK;
        }
    } else {
        for (size_t i = 0; i < comm->npeers && rv != NQ_OK; i++) {
            if (nq_id_equal(&comm->peers[i]->peer, peer)) {
                give_text(comm->peers[i]->identity, buf, size, len);
                rv = NQ_OK;
            }
        }
    }
    pthread_mutex_unlock(&comm->server_id_mu);
    pthread_rwlock_unlock(&comm->peers_mu);
    return rv;
}

int nq_stat(nq_comm *comm, nq_stat_id stat, int64_t *out)
{
    if (comm == NULL || out == NULL || stat < NQ_STAT_MSGS_IN || stat > NQ_STAT_REFUSED) {
        return NQ_EINVAL;
    }
    *out = atomic_load(&comm->stats[stat - NQ_STAT_MSGS_IN]);
    return NQ_OK;
}
