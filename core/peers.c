/*
 * Peers: the sessions of a communicator as the rest of libnq sees them.
 *
 * - The peer table: server sessions whose INI arrived, found by id by put
 *   and listed by nq_peers (a read-write lock; readers on callers' threads,
 *   writers on the loops).
 * - Live accounting: every session counts until it ends, and nq_close
 *   waits for the count to reach zero.
 * - Admission: the one path by which every transport turns a new
 *   connection into a server session, with its INI deadline.
 * - The end of a session, whatever ended it.
 *
 * Sessions are created, admitted and ended on the loop of their worker.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/peers.h"
#include "core/redial.h"
#include "core/transport.h"

/* ---- events ------------------------------------------------------------------- */

static void emit(nq_comm *c, int type, const nq_id *peer, int reason)
{
    nq_event ev = {.type = type, .peer = *peer, .reason = reason};
    c->opts.event_fn(c->opts.event_ctx, &ev);
}

/* s is the peer now; old, if not NULL, was until now (replaced). */
static void announce(nq_comm *c, nqi_session *s, nqi_session *old)
{
    pthread_mutex_lock(&c->events_mu);
    if (old != NULL && atomic_exchange(&old->announced, 0) && c->opts.event_fn != NULL) {
        emit(c, NQ_EVENT_DISCONNECTED, &old->peer, NQ_EREPLACED);
    }
    atomic_store(&s->announced, 1);
    if (c->opts.event_fn != NULL) {
        emit(c, NQ_EVENT_CONNECTED, &s->peer, NQ_OK);
    }
    pthread_mutex_unlock(&c->events_mu);
}

void nqi_peers_event(nq_comm *c, int type, const nq_id *peer, int reason)
{
    pthread_mutex_lock(&c->events_mu);
    if (c->opts.event_fn != NULL) {
        emit(c, type, peer, reason);
    }
    pthread_mutex_unlock(&c->events_mu);
}

/* s is no longer the peer (unless a replacement said so already). */
static void withdraw(nq_comm *c, nqi_session *s, int reason)
{
    pthread_mutex_lock(&c->events_mu);
    if (atomic_exchange(&s->announced, 0) && c->opts.event_fn != NULL) {
        emit(c, NQ_EVENT_DISCONNECTED, &s->peer, reason);
    }
    pthread_mutex_unlock(&c->events_mu);
}

/* ---- the peer table ---------------------------------------------------------- */

static void run_replace(nqi_loop *l, nqi_cmd *cmd)
{
    (void)l;
    nqi_session *s = NQI_CONTAINER(cmd, nqi_session, replace);
    nqi_session_end(s, NQ_EREPLACED);
    nqi_session_unref(s); /* the table's reference, moved to the command */
}

static void discard_replace(nqi_cmd *cmd)
{
    nqi_session_unref(NQI_CONTAINER(cmd, nqi_session, replace));
}

static void retire(nqi_session *s, int err);
static void unpark(nqi_session *s, int err);

/* With acknowledged delivery, s takes over old's session: old's queued and
 * unacknowledged frames, its counts and its tokens.  A live old connection
 * ends quietly; a parked one stops waiting. */
static void take_over(nqi_session *s, nqi_session *old)
{
    atomic_store(&s->announced, atomic_exchange(&old->announced, 0));
    char text[NQ_ID_STRLEN];
    nq_id_format(&s->peer, text, sizeof(text));
    nqi_logf(&s->comm->log, NQ_LOG_INFO, "peer %s is back; its session goes on", text);
    if (!old->ended) {
        old->heir = s; /* nqi_session_end hands the state over */
        nqi_session_end(old, NQ_EREPLACED);
        return;
    }
    nqi_timer_cancel(&old->worker->loop, &old->ini_timer);
    old->waiting = 0;
    nqi_ack_adopt(s, old);
    retire(old, NQ_EREPLACED);
}

/* Enters s in the table.  A live peer with the same id is replaced: the
 * newest connection wins, on every transport.  The old session leaves the
 * table at once (its DISCONNECTED, reason NQ_EREPLACED, goes out before the
 * new one's CONNECTED) and is ended on its own loop.  With acknowledged
 * delivery on both, the new connection takes the old session over instead,
 * with no event. */
static int peers_add(nq_comm *c, nqi_session *s)
{
    nqi_session *old = NULL;
    pthread_rwlock_wrlock(&c->peers_mu);
    size_t at = c->npeers;
    for (size_t i = 0; i < c->npeers; i++) {
        if (nq_id_equal(&c->peers[i]->peer, &s->peer)) {
            at = i;
            old = c->peers[i];
            break;
        }
    }
    if (old == NULL && c->npeers == c->peers_cap) {
        size_t ncap = c->peers_cap == 0 ? 8 : c->peers_cap * 2;
        nqi_session **np = realloc(c->peers, ncap * sizeof(*np));
        if (np == NULL) {
            pthread_rwlock_unlock(&c->peers_mu);
            return NQ_ENOMEM;
        }
        c->peers = np;
        c->peers_cap = ncap;
    }
    nqi_session_ref(s);
    c->peers[at] = s;
    if (old == NULL) {
        c->npeers++;
        nqi_stat_add(c, NQI_ST_PEERS, 1);
    }
    pthread_rwlock_unlock(&c->peers_mu);
    if (old != NULL && nqi_ack_can_adopt(s, old)) {
        take_over(s, old);
        nqi_session_unref(old); /* the table's reference */
        return NQ_OK;
    }
    announce(c, s, old);
    if (old != NULL) {
        char text[NQ_ID_STRLEN];
        nq_id_format(&s->peer, text, sizeof(text));
        nqi_logf(&c->log, NQ_LOG_INFO, "peer %s connected again; its old connection is replaced",
                 text);
        nqi_loop_post(&old->worker->loop, &old->replace);
    }
    return NQ_OK;
}

/* Takes s out of the table if it is still there (a replaced session is
 * not); returns 1 if it was. */
static int peers_remove(nq_comm *c, nqi_session *s)
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
    pthread_rwlock_unlock(&c->peers_mu);
    if (found) {
        nqi_stat_add(c, NQI_ST_PEERS, -1);
        nqi_session_unref(s);
    }
    return found;
}

/* ---- live sessions -------------------------------------------------------------- */

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

int nqi_live_wait(nq_comm *c, int64_t timeout_ms)
{
    struct timespec dl = nqi_deadline_after(timeout_ms);
    int rv = 0;
    pthread_mutex_lock(&c->live_mu);
    while (c->live > 0) {
        if (nqi_cond_until(&c->live_cv, &c->live_mu, timeout_ms < 0 ? NULL : &dl) != 0) {
            rv = c->live > 0 ? NQ_ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->live_mu);
    return rv;
}

/* ---- the INI ------------------------------------------------------------------ */

/* The admission callback's verdict on a server's new peer: NQ_OK, or
 * NQ_EAUTH with the session marked refused. */
static int admit(nqi_session *s)
{
    nq_comm *c = s->comm;
    char address[128] = "";
    if (c->transport->address != NULL) {
        c->transport->address(s, address, sizeof(address));
    }
    pthread_mutex_lock(&c->server_id_mu);
    char *identity = s->identity != NULL ? strdup(s->identity) : NULL;
    int lost = s->identity != NULL && identity == NULL;
    pthread_mutex_unlock(&c->server_id_mu);
    if (lost) {
        return NQ_ENOMEM;
    }
    nq_admission who = {s->peer, address, identity != NULL ? identity : ""};
    int verdict = c->opts.admit_fn(c->opts.admit_ctx, &who);
    free(identity);
    if (verdict == NQ_OK) {
        return NQ_OK;
    }
    char text[NQ_ID_STRLEN];
    nq_id_format(&s->peer, text, sizeof(text));
    nqi_logf(&c->log, NQ_LOG_WARN, "peer %s%s%s refused by the admission callback (%d)", text,
             address[0] != 0 ? " at " : "", address, verdict);
    nqi_stat_add(c, NQI_ST_REFUSED, 1);
    s->refused = 1;
    s->ini_received = 0; /* a stranger, as far as the end is concerned */
    return NQ_EAUTH;
}

static int on_ini(nqi_session *s)
{
    nq_comm *c = s->comm;
    if (c->purpose == NQ_SERVER && c->opts.admit_fn != NULL) {
        int verdict = admit(s);
        if (verdict != NQ_OK) {
            return verdict;
        }
    }
    int asked = c->transport->acked != NULL ? c->transport->acked(s) : 0;
    if (asked < 0) {
        return asked;
    }
    int rv = nqi_ack_agree(s, asked);
    if (rv == NQ_OK && s->ack.state != NQI_ACK_ON && c->transport->beats != NULL &&
        c->transport->beats(s)) {
        rv = nqi_ack_beat_alone(s);
    }
    if (rv != NQ_OK) {
        return rv;
    }
    if (c->purpose == NQ_CLIENT) {
        pthread_mutex_lock(&c->server_id_mu);
        c->server_id = s->peer;
        c->server_id_known = 1;
        pthread_mutex_unlock(&c->server_id_mu);
        nqi_redial_connected(c);
        announce(c, s, NULL);
        return 0;
    }
    /* From now on the timer watches frames in progress. */
    s->in_mark = s->in_bytes;
    nqi_timer_arm(&s->worker->loop, &s->ini_timer,
                  nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS]);
    nqi_frame *f = nqi_frame_handshake(&c->opts.id);
    if (f == NULL || nqi_session_queue(s, f) != NQ_OK) {
        if (f != NULL) {
            nqi_frame_unref(f);
        }
        s->ini_received = 0; /* a stranger, as far as the end is concerned */
        return NQ_ENOMEM;
    }
    f->kind = NQI_FRAME_INI;
    rv = peers_add(c, s);
    if (rv != NQ_OK) {
        s->ini_received = 0;
        return rv;
    }
    rv = nqi_ack_greet(s);
    if (rv != NQ_OK) {
        return rv;
    }
    nqi_session_mark_dirty(s);
    return 0;
}

static const nqi_session_owner peer_owner = {.ini = on_ini, .end = nqi_session_end};

/* ---- resume -------------------------------------------------------------------- */

void nqi_session_resume(nqi_session *s)
{
    atomic_store(&s->resume_requested, 0);
    if (!atomic_exchange(&s->paused, 0) || s->ended) {
        return;
    }
    if (s->comm->transport->resume != NULL) {
        s->comm->transport->resume(s);
    }
    nqi_ack_delivered(s); /* what was withheld */
}

static void run_resume(nqi_loop *l, nqi_cmd *cmd)
{
    (void)l;
    nqi_session *s = NQI_CONTAINER(cmd, nqi_session, resume);
    nqi_session_resume(s);
    nqi_session_unref(s); /* taken when posted */
}

static void discard_resume(nqi_cmd *cmd)
{
    nqi_session_unref(NQI_CONTAINER(cmd, nqi_session, resume));
}

void nqi_session_taken(nqi_session *s, long left)
{
    nq_comm *c = s->comm;
    /* One resume in flight at a time: the command lives in the session. */
    if (atomic_load(&s->paused) && left < (long)c->opts.ints[NQ_OPT_QUEUE_SIZE] &&
        !atomic_exchange(&s->resume_requested, 1)) {
        nqi_session_ref(s);
        nqi_loop_post(&s->worker->loop, &s->resume);
    }
    if (left == 0) {
        nqi_session_unref(s);
    }
}

/* ---- creation and admission ------------------------------------------------------ */

nqi_session *nqi_session_new(nqi_worker *w)
{
    nq_comm *c = w->comm;
    nqi_session *s = nqi_session_create(c, w, &peer_owner, c->transport->session_size);
    if (s != NULL) {
        s->resume.run = run_resume;
        s->resume.discard = discard_resume;
        s->replace.run = run_replace;
        s->replace.discard = discard_replace;
        nqi_list_append(&w->sessions, &s->link);
    }
    return s;
}

/* A frame in progress must gain this many bytes in each
 * NQ_OPT_HANDSHAKE_TIMEOUT_MS: a peer that trickles a frame in holds the
 * connection about twice as long as one that never sends its INI. */
#define PROGRESS_MIN 1024

/* Before the INI: the INI is overdue.  After it: a frame that is not
 * moving (unless we paused the peer ourselves) ends the connection. */
static void watch_input(nqi_timer *t)
{
    nqi_session *s = NQI_CONTAINER(t, nqi_session, ini_timer);
    nq_comm *c = s->comm;
    int64_t period = c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    if (s->ended) {
        return;
    }
    if (!s->ini_received) {
        nqi_logf(&c->log, NQ_LOG_WARN, "closing a connection that sent no INI within %lld ms",
                 (long long)period);
        nqi_session_end(s, NQ_ETIMEDOUT);
        return;
    }
    nqi_session_take_input(s);
    if (s->ended) {
        return;
    }
    uint64_t gained = s->in_bytes - s->in_mark;
    s->in_mark = s->in_bytes;
    /* Two looks in a row, so that a frame that just began is not judged by
     * one short glance. */
    int slow = !nqi_parser_idle(&s->parser) && !atomic_load(&s->paused) && gained < PROGRESS_MIN;
    s->in_slow = slow ? s->in_slow + 1 : 0;
    if (s->in_slow >= 2) {
        nqi_logf(&c->log, NQ_LOG_WARN,
                 "closing a connection whose frame in progress gained %llu bytes in %lld ms",
                 (unsigned long long)gained, (long long)period);
        nqi_session_end(s, NQ_ETIMEDOUT);
        return;
    }
    nqi_timer_arm(&s->worker->loop, t, nqi_now_ms() + period);
}

nqi_session *nqi_peers_admit(nqi_worker *w)
{
    nq_comm *c = w->comm;
    if (w->closing) {
        return NULL;
    }
    nqi_session *s = nqi_session_new(w);
    if (s == NULL) {
        return NULL;
    }
    nqi_live_inc(c);
    nqi_stat_add(c, NQI_ST_CONNECTIONS, 1);
    nqi_timer_init(&s->ini_timer, watch_input);
    int64_t deadline = nqi_now_ms() + c->opts.ints[NQ_OPT_HANDSHAKE_TIMEOUT_MS];
    if (nqi_timer_arm(&w->loop, &s->ini_timer, deadline) != NQ_OK) {
        nqi_session_end(s, NQ_ENOMEM);
        return NULL;
    }
    return s;
}

/* ---- the end ------------------------------------------------------------------------ */

/* Counts the end of a connection in the communicator's statistics. */
static void count_end(nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    if (s->refused) {
        return; /* counted as refused */
    }
    switch (err) {
    case 0:
    case NQ_ECLOSED:
        break;
    case NQ_EPROTO:
        nqi_stat_add(c, NQI_ST_PROTOCOL_ERRORS, 1);
        break;
    case NQ_ETLS:
    case NQ_EAUTH:
        nqi_stat_add(c, NQI_ST_TLS_ERRORS, 1);
        break;
    case NQ_ETIMEDOUT:
        nqi_stat_add(c, NQI_ST_HANDSHAKE_TIMEOUTS, 1);
        break;
    default:
        nqi_stat_add(c, NQI_ST_CONNECTIONS_LOST, 1);
        break;
    }
}

/* The session is over for good: its queued frames fail, it leaves the
 * worker, a client's get learns the end, and close stops waiting for it.
 * A session ended by silence (the heartbeat, a handshake never finished)
 * is NQ_ETIMEDOUT in events only: to futures, get and close, whose
 * NQ_ETIMEDOUT means that a wait ended, the connection was lost. */
static void retire(nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    err = err == NQ_ETIMEDOUT ? NQ_ECONNRESET : err;
    nqi_session_out_fail(s, err != 0 ? err : NQ_ECONNRESET);
    nqi_list_remove(&s->link);
    if (c->purpose == NQ_CLIENT) {
        nqi_msgq_finish(&c->msgq, err != 0 ? err : NQ_ECLOSED);
    }
    /* A client's close reports how its one connection ended.  A server's
     * close reports peers that were lost while it was closing; peers lost
     * earlier, and strangers it rejected, are counted, not reported. */
    int counted = c->purpose == NQ_CLIENT ||
                          (s->ini_received && atomic_load(&c->state) != NQI_OPEN)
                      ? err
                      : 0;
    nqi_live_dec(c, counted == NQ_ECLOSED ? 0 : counted);
    nqi_session_unref(s); /* the loop's reference */
}

/* A server session kept for its peer's return (NQ_OPT_RESUME_MS). */
static void park_over(nqi_timer *t)
{
    nqi_session *s = NQI_CONTAINER(t, nqi_session, ini_timer);
    char text[NQ_ID_STRLEN];
    nq_id_format(&s->peer, text, sizeof(text));
    nqi_logf(&s->comm->log, NQ_LOG_WARN, "peer %s did not come back within %lld ms", text,
             (long long)s->comm->opts.ints[NQ_OPT_RESUME_MS]);
    unpark(s, s->error);
}

static int park(nqi_session *s)
{
    nqi_ack_rewind(s);
    nqi_timer_init(&s->ini_timer, park_over);
    int rv = nqi_timer_arm(&s->worker->loop, &s->ini_timer,
                           nqi_now_ms() + s->comm->opts.ints[NQ_OPT_RESUME_MS]);
    if (rv == NQ_OK) {
        s->waiting = 1;
    }
    return rv;
}

/* The parked session's wait is over: it ends as its connection did. */
static void unpark(nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    nqi_timer_cancel(&s->worker->loop, &s->ini_timer);
    s->waiting = 0;
    nqi_session_out_fail(s, err != 0 ? err : NQ_ECONNRESET);
    peers_remove(c, s);
    withdraw(c, s, err);
    retire(s, err);
}

void nqi_session_end(nqi_session *s, int err)
{
    if (atomic_exchange(&s->ended, 1)) {
        /* Over already, unless it only waits to connect again. */
        if (nqi_redial_abandon(s)) {
            retire(s, err);
        } else if (s->waiting) {
            unpark(s, s->error != 0 ? s->error : err);
        }
        return;
    }
    nq_comm *c = s->comm;
    if (err == NQ_ECONNRESET && nqi_session_exchanged(s)) {
        /* A peer that answered our FIN and left resets the connection when
         * a PING of ours comes after it: nothing was lost. */
        err = 0;
    }
    s->error = err;
    int again = nqi_redial_wanted(s, err);
    /* A server session with acknowledged delivery waits for its peer
     * (parks), or hands itself to the peer's new connection: the peer
     * stays, so no event tells of the old connection. */
    int parks = s->heir == NULL && nqi_ack_park_wanted(s, err);
    int keep = again || parks || s->heir != NULL;

    /* Messages that arrived before the end are still delivered. */
    nqi_session_deliver(s);
    nqi_ack_stop(s);
    if (!keep) {
        nqi_session_out_fail(s, err != 0 ? err : NQ_ECONNRESET);
    }
    if (c->purpose == NQ_SERVER && s->ini_received && !parks) {
        peers_remove(c, s);
    }
    if (!parks && s->heir == NULL) {
        withdraw(c, s, err);
    }
    nqi_timer_cancel(&s->worker->loop, &s->ini_timer);

    c->transport->session_end(s);
    count_end(s, err);

    char peer[NQ_ID_STRLEN] = "(before INI)";
    if (s->ini_received) {
        nq_id_format(&s->peer, peer, sizeof(peer));
    }
    if (err != 0 && err != NQ_ECLOSED) {
        nqi_logf(&c->log, NQ_LOG_WARN, "connection with peer %s ended: %s", peer,
                 nq_strerror(err));
    } else {
        nqi_logf(&c->log, NQ_LOG_DEBUG, "connection with peer %s closed", peer);
    }
    if (s->heir != NULL) {
        nqi_ack_rewind(s);
        nqi_ack_adopt(s->heir, s);
        retire(s, err);
        return;
    }
    if (again && nqi_redial_schedule(s, err) == NQ_OK) {
        return;
    }
    if (parks) {
        if (park(s) == NQ_OK) {
            return;
        }
        /* The wait could not begin: end as without it. */
        peers_remove(c, s);
        withdraw(c, s, err);
    }
    retire(s, err);
}

void nqi_worker_end_sessions(nqi_worker *w, int err)
{
    nqi_node *n, *next;
    for (n = nqi_list_first(&w->sessions); n != NULL; n = next) {
        next = nqi_list_next(&w->sessions, n);
        nqi_session_end(NQI_CONTAINER(n, nqi_session, link), err);
    }
}
