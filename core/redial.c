/*
 * Reconnection (see redial.h).  The wait before attempt n is drawn between
 * half and all of min(first * 2^n, max): "equal jitter", which keeps a
 * floor under the wait and still spreads clients that lost one server at
 * the same moment.
 */
#include "core/communicator.h"
#include "core/peers.h"
#include "core/redial.h"
#include "core/transport.h"

static int64_t opt(const nq_comm *c, int which)
{
    return c->opts.ints[which];
}

int nqi_redial_wanted(const nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    if (c->purpose != NQ_CLIENT || s != c->client || opt(c, NQ_OPT_RECONNECT_MS) <= 0 ||
        c->transport->redial == NULL || atomic_load(&c->state) != NQI_OPEN ||
        err == NQ_ECLOSED || err == NQ_ENOMEM) {
        return 0;
    }
    int64_t give_up = opt(c, NQ_OPT_RECONNECT_GIVE_UP_MS);
    const nqi_redial *r = &c->redial;
    return give_up < 0 || r->lost_at_ms == 0 || nqi_now_ms() - r->lost_at_ms < give_up;
}

/* xorshift64*: the jitter needs spread, not secrecy. */
static uint64_t next_random(nqi_redial *r)
{
    uint64_t x = r->jitter;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->jitter = x;
    return x * UINT64_C(2685821657736338717);
}

static void attempt(nqi_timer *t)
{
    nqi_redial *r = NQI_CONTAINER(t, nqi_redial, timer);
    nq_comm *c = NQI_CONTAINER(r, nq_comm, redial);
    nqi_session *s = c->client;
    if (!r->waiting) {
        return;
    }
    r->waiting = 0;
    s->waiting = 0;
    atomic_store(&s->ended, 0);
    nqi_stat_add(c, NQI_ST_RECONNECTS, 1);
    nqi_logf(&c->log, NQ_LOG_INFO, "connecting to %s port %u again", c->opts.host,
             (unsigned)c->opts.port);
    int rv = c->transport->redial(s);
    if (rv != NQ_OK) {
        nqi_session_end(s, rv);
    }
}

int nqi_redial_schedule(nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    nqi_redial *r = &c->redial;
    int rv = nqi_session_restart(s);
    if (rv != NQ_OK) {
        return rv;
    }
    int64_t now = nqi_now_ms();
    int64_t first = opt(c, NQ_OPT_RECONNECT_MS);
    int64_t max = opt(c, NQ_OPT_RECONNECT_MAX_MS);
    if (max < first) {
        max = first;
    }
    if (r->lost_at_ms == 0) {
        r->lost_at_ms = now;
        r->delay_ms = first;
    }
    if (r->jitter == 0) {
        r->jitter = ((uint64_t)now << 20) ^ (uint64_t)(uintptr_t)c ^ UINT64_C(0x9e3779b97f4a7c15);
    }
    int64_t wait = r->delay_ms / 2 + (int64_t)(next_random(r) % (uint64_t)(r->delay_ms / 2 + 1));
    r->delay_ms = r->delay_ms > max / 2 ? max : r->delay_ms * 2;
    int64_t give_up = opt(c, NQ_OPT_RECONNECT_GIVE_UP_MS);
    if (give_up >= 0 && now + wait > r->lost_at_ms + give_up) {
        /* One last attempt, at the bound. */
        wait = r->lost_at_ms + give_up - now;
        if (wait < 0) {
            wait = 0;
        }
    }
    nqi_timer_init(&r->timer, attempt);
    rv = nqi_timer_arm(&s->worker->loop, &r->timer, now + wait);
    if (rv != NQ_OK) {
        return rv;
    }
    r->waiting = 1;
    s->waiting = 1;
    nq_id server;
    pthread_mutex_lock(&c->server_id_mu);
    server = c->server_id; /* zero until a server answered */
    pthread_mutex_unlock(&c->server_id_mu);
    nqi_logf(&c->log, NQ_LOG_INFO, "connecting again in %lld ms", (long long)wait);
    nqi_peers_event(c, NQ_EVENT_RECONNECTING, &server, err);
    return NQ_OK;
}

void nqi_redial_connected(nq_comm *c)
{
    c->redial.lost_at_ms = 0;
}

int nqi_redial_abandon(nqi_session *s)
{
    nq_comm *c = s->comm;
    nqi_redial *r = &c->redial;
    if (c->purpose != NQ_CLIENT || s != c->client || !r->waiting) {
        return 0;
    }
    r->waiting = 0;
    s->waiting = 0;
    nqi_timer_cancel(&s->worker->loop, &r->timer);
    return 1;
}
