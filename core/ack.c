/*
 * Acknowledged delivery (see ack.h): numbering, acknowledgements, the
 * RESUME exchange, rewinding a session's output for its next connection,
 * a server session taken over by its peer's new connection, and the
 * heartbeat.  Part of the session layer: it works on the session's output
 * ring and counters and calls nothing above it.  Runs on the session's
 * loop.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/communicator.h"
#include "core/transport.h"

/* ---- the output ring ------------------------------------------------------- */

static nqi_frame **at(nqi_session *s, size_t k)
{
    return &s->out[(s->out_head + k) % s->out_cap];
}


/* Queues a control frame behind what was handed over, the INI and earlier
 * control frames, ahead of data. */
static int queue_control(nqi_session *s, int type, const uint8_t *payload, size_t len,
                         nqi_frame **out)
{
    nqi_frame *f = nqi_frame_control(type, payload, len);
    if (f == NULL || nqi_session_queue(s, f) != NQ_OK) {
        if (f != NULL) {
            nqi_frame_unref(f);
        }
        return NQ_ENOMEM;
    }
    size_t k = nqi_session_first_unstarted(s);
    while (k < s->out_len - 1 &&
           ((*at(s, k))->kind == NQI_FRAME_INI || (*at(s, k))->kind == NQI_FRAME_CONTROL)) {
        k++;
    }
    for (size_t j = s->out_len - 1; j > k; j--) {
        *at(s, j) = *at(s, j - 1);
    }
    *at(s, k) = f;
    if (out != NULL) {
        *out = f;
    }
    nqi_session_mark_dirty(s);
    return NQ_OK;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static int send_resume(nqi_session *s)
{
    uint8_t p[16];
    put_u64(p, s->ack.token);
    put_u64(p + 8, s->ack.received);
    return queue_control(s, NQI_CTL_RESUME, p, sizeof(p), NULL);
}

/* Acknowledges what arrived, one ACK in the queue at a time; none while
 * a transport that cannot hold the peer back has its queue full. */
static void send_ack(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    if (a->state != NQI_ACK_ON || a->pending != NULL || a->received == a->told ||
        nqi_ack_withholds(s)) {
        return;
    }
    uint8_t p[8];
    put_u64(p, a->received);
    if (queue_control(s, NQI_CTL_ACK, p, sizeof(p), &a->pending) == NQ_OK) {
        a->told = a->received;
    }
}

static void forget_peer(nqi_session *s);

/* ---- the kept frames --------------------------------------------------------- */

static int keep(nqi_ack *a, nqi_frame *f)
{
    if (nqi_ring_reserve(&a->kept, &a->kept_cap, &a->kept_head, a->kept_len, a->kept_len + 1) !=
        NQ_OK) {
        return NQ_ENOMEM;
    }
    a->kept[(a->kept_head + a->kept_len) % a->kept_cap] = f;
    a->kept_len++;
    a->kept_bytes += NQI_HEADER_SIZE + f->payload_len;
    return NQ_OK;
}

/* Completes the oldest kept frame with result. */
static void settle_oldest(nqi_ack *a, int result)
{
    nqi_frame *f = a->kept[a->kept_head];
    a->kept_head = (a->kept_head + 1) % a->kept_cap;
    a->kept_len--;
    a->kept_bytes -= NQI_HEADER_SIZE + f->payload_len;
    a->base++;
    nqi_frame_done(f, result);
}

void nqi_ack_fail(nqi_session *s, int err)
{
    nqi_ack *a = &s->ack;
    while (a->kept_len > 0) {
        settle_oldest(a, err);
    }
    free(a->kept);
    a->kept = NULL;
    a->kept_cap = a->kept_head = 0;
}

/* 1 when acknowledgements are the session's flow control: agreed, over a
 * transport that cannot hold its peer back. */
static int acks_hold_back(const nqi_session *s)
{
    return s->ack.state == NQI_ACK_ON && !s->comm->transport->pausable;
}

int nqi_ack_window_full(const nqi_session *s)
{
    return acks_hold_back(s) && s->ack.kept_bytes >= NQI_ACK_WINDOW;
}

int nqi_ack_withholds(const nqi_session *s)
{
    return acks_hold_back(s) && atomic_load(&s->paused);
}

int nqi_ack_settled(const nqi_session *s)
{
    return s->ack.state != NQI_ACK_ON || s->ack.kept_len == 0;
}

/* ---- agreement ------------------------------------------------------------------ */

int nqi_ack_wanted(const nq_comm *c)
{
    return c->opts.ints[NQ_OPT_DELIVERY] == NQ_DELIVERY_ACKED;
}

static int draw_token(nqi_session *s)
{
    nq_id r;
    do {
        if (nq_id_random(&r) != NQ_OK) {
            return NQ_ESYS;
        }
        s->ack.token = get_u64(r.bytes);
    } while (s->ack.token == 0);
    return NQ_OK;
}

int nqi_ack_init(nqi_session *s)
{
    if (!nqi_ack_wanted(s->comm)) {
        return NQ_OK;
    }
    s->ack.state = NQI_ACK_OFFERED;
    if (s->comm->purpose == NQ_CLIENT) {
        s->ack.hold = 1;
        return draw_token(s);
    }
    return NQ_OK;
}

static void beat(nqi_timer *t);

static int64_t beat_period(const nq_comm *c)
{
    return c->opts.ints[NQ_OPT_KEEPALIVE_MS] / 2;
}

/* A PING, which tells the peer this side's keep-alive.  The first goes
 * behind this side's INI (a client's is queued before the server's
 * arrives; a server queues its own after agreeing, then greets). */
static int tell_keepalive(nqi_session *s)
{
    uint8_t p[8];
    put_u64(p, (uint64_t)s->comm->opts.ints[NQ_OPT_KEEPALIVE_MS]);
    return queue_control(s, NQI_CTL_PING, p, sizeof(p), NULL);
}

/* Looks every half keep-alive period from now on; a client tells its
 * keep-alive at once. */
static int start_beat(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    nq_comm *c = s->comm;
    a->peer_keepalive = -1;
    int rv = c->purpose == NQ_CLIENT ? tell_keepalive(s) : NQ_OK;
    if (rv != NQ_OK || beat_period(c) <= 0) {
        return rv;
    }
    nqi_timer_init(&a->beat, beat);
    a->beat_in = s->in_bytes;
    a->beat_out = a->out_bytes;
    a->silent = 0;
    return nqi_timer_arm(&s->worker->loop, &a->beat, nqi_now_ms() + beat_period(c));
}

int nqi_ack_agree(nqi_session *s, int peer_asked)
{
    nqi_ack *a = &s->ack;
    nq_comm *c = s->comm;
    a->beats_alone = 0;
    if (a->state == NQI_ACK_OFF) {
        return NQ_OK;
    }
    if (!peer_asked) {
        /* The peer is net-queue, or a libnq that does not ask: what was
         * written is done, as without acknowledgements. */
        nqi_logf(&c->log, NQ_LOG_INFO,
                 "the peer did not ask for acknowledged delivery; futures mean written");
        a->state = NQI_ACK_OFF;
        a->hold = 0;
        while (a->kept_len > 0) {
            settle_oldest(a, NQ_OK);
        }
        forget_peer(s);
        nqi_session_mark_dirty(s);
        return NQ_OK;
    }
    a->state = NQI_ACK_ON;
    s->parser.control_ok = 1;
    nqi_stat_add(c, NQI_ST_ACKED, 1);
    return start_beat(s);
}

int nqi_ack_beat_alone(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    if (a->state == NQI_ACK_ON) {
        return NQ_OK; /* it beats already */
    }
    a->beats_alone = 1;
    s->parser.control_ok = 1;
    return start_beat(s);
}

void nqi_ack_forget_beats(nqi_session *s)
{
    size_t j = 0;
    size_t len = s->out_len;
    for (size_t k = 0; k < len; k++) {
        nqi_frame *f = *at(s, k);
        if (f->kind == NQI_FRAME_CONTROL) {
            nqi_frame_done(f, NQ_OK);
            continue;
        }
        *at(s, j++) = f;
    }
    s->out_len = j;
    s->ack.beats_alone = 0;
}

int nqi_ack_greet(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    if (a->state != NQI_ACK_ON) {
        return a->beats_alone ? tell_keepalive(s) : NQ_OK;
    }
    if (tell_keepalive(s) != NQ_OK) {
        return NQ_ENOMEM;
    }
    if (a->token == 0 && draw_token(s) != NQ_OK) {
        return NQ_ESYS;
    }
    a->hold = 1;
    return send_resume(s);
}

/* Drops the first n data frames that wait at the head of the output
 * (nothing of them was handed over: data is held until now), completing
 * them with result.  Returns how many there were. */
static uint64_t drop_queued(nqi_session *s, uint64_t n, int result)
{
    size_t j = 0;
    uint64_t dropped = 0;
    size_t len = s->out_len;
    for (size_t k = 0; k < len; k++) {
        nqi_frame *f = *at(s, k);
        if (dropped < n && f->kind == NQI_FRAME_DATA) {
            dropped++;
            nqi_frame_done(f, result);
            continue;
        }
        *at(s, j++) = f;
    }
    s->out_len = j;
    return dropped;
}

/* The peer is not the one the session knew (a new process, a session the
 * server dropped, or a peer that no longer asks for acknowledgements):
 * what the earlier one may have had is unknown, so it fails, and the rest
 * starts a new count. */
static void forget_peer(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    while (a->kept_len > 0) {
        settle_oldest(a, NQ_ECONNRESET);
    }
    uint64_t lost = drop_queued(s, a->rewound, NQ_ECONNRESET);
    if (lost > 0) {
        nqi_logf(&s->comm->log, NQ_LOG_WARN,
                 "the peer is not the one this session knew; %llu messages it may not "
                 "have had failed",
                 (unsigned long long)lost);
    }
    a->base = a->acked = 0;
    a->received = a->told = 0;
    a->rewound = 0;
    a->peer_known = 0;
}

/* The peer's RESUME: it has `received` of our data frames. */
static int on_resume(nqi_session *s, uint64_t token, uint64_t received)
{
    nqi_ack *a = &s->ack;
    nq_comm *c = s->comm;
    if (!a->hold) {
        nqi_logf(&c->log, NQ_LOG_WARN, "peer sent a second RESUME");
        return NQ_EPROTO;
    }
    if (a->peer_known && token == a->peer_token) {
        if (received < a->base) {
            nqi_logf(&c->log, NQ_LOG_WARN, "peer resumes at message %llu, before %llu",
                     (unsigned long long)received, (unsigned long long)a->base);
            return NQ_EPROTO;
        }
        uint64_t n = received - a->base;
        uint64_t from_kept = 0;
        while (from_kept < n && a->kept_len > 0) {
            settle_oldest(a, NQ_OK);
            from_kept++;
        }
        uint64_t dropped = drop_queued(s, n - from_kept, NQ_OK);
        a->base += dropped;
        if (from_kept + dropped < n) {
            nqi_logf(&c->log, NQ_LOG_WARN, "peer resumes at message %llu, beyond what was sent",
                     (unsigned long long)received);
            return NQ_EPROTO;
        }
    } else {
        forget_peer(s);
        a->peer_token = token;
        a->peer_known = 1;
    }
    a->rewound = 0;
    a->hold = 0;
    if (c->purpose == NQ_CLIENT) {
        int rv = send_resume(s);
        if (rv != NQ_OK) {
            return rv;
        }
    }
    nqi_session_mark_dirty(s);
    return 0;
}

/* ---- the stream ---------------------------------------------------------------------- */

int nqi_ack_written(nqi_session *s, nqi_frame *f)
{
    nqi_ack *a = &s->ack;
    if (f->kind == NQI_FRAME_CONTROL) {
        nqi_frame_done(f, NQ_OK);
        if (f == a->pending) {
            /* The next one goes once the commit is over: queued now, it
             * would stand before bytes already written. */
            a->pending = NULL;
            a->again = 1;
        }
        return 1;
    }
    if (f->kind != NQI_FRAME_DATA || a->state == NQI_ACK_OFF) {
        return 0;
    }
    if (a->kept_len == 0 && a->base < a->acked) {
        /* Acknowledged before the transport confirmed the write. */
        a->base++;
        nqi_frame_done(f, NQ_OK);
        return 1;
    }
    if (keep(a, f) != NQ_OK) {
        nqi_frame_done(f, NQ_ENOMEM);
    }
    return 1;
}

int nqi_ack_control(nqi_session *s, int type, const uint8_t *data, size_t len)
{
    nqi_ack *a = &s->ack;
    switch (type) {
    case NQI_CTL_RESUME:
        if (len != 16 || a->state != NQI_ACK_ON) {
            break;
        }
        return on_resume(s, get_u64(data), get_u64(data + 8));
    case NQI_CTL_ACK: {
        if (len != 8 || a->hold || a->state != NQI_ACK_ON) {
            break;
        }
        uint64_t n = get_u64(data);
        if (n > a->acked) {
            a->acked = n;
        }
        int was_full = nqi_ack_window_full(s);
        while (a->kept_len > 0 && a->base < n) {
            settle_oldest(a, NQ_OK);
        }
        if (nqi_session_finished(s) || (was_full && !nqi_ack_window_full(s))) {
            nqi_session_mark_dirty(s); /* the transport ends it, or sends on */
        }
        return 0;
    }
    case NQI_CTL_PING:
        if (len == 8) {
            uint64_t ms = get_u64(data);
            a->peer_keepalive = ms > INT32_MAX ? INT32_MAX : (int64_t)ms;
        }
        return 0;
    default:
        /* A later version's: nothing to do with it. */
        return 0;
    }
    nqi_logf(&s->comm->log, NQ_LOG_WARN, "malformed control frame (type %d, %zu bytes)", type,
             len);
    return NQ_EPROTO;
}

void nqi_ack_delivered(nqi_session *s)
{
    send_ack(s);
}

void nqi_ack_committed(nqi_session *s)
{
    if (s->ack.again) {
        s->ack.again = 0;
        send_ack(s);
    }
}

int nqi_ack_fin(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    if (a->state != NQI_ACK_ON || s->comm->purpose != NQ_CLIENT) {
        return 0;
    }
    /* The server answered our FIN, which followed all our data. */
    while (a->kept_len > 0) {
        settle_oldest(a, NQ_OK);
    }
    a->pending = NULL; /* whatever is queued, one more goes behind the FIN */
    send_ack(s);
    return 0;
}

/* ---- across connections ------------------------------------------------------------ */

void nqi_ack_rewind(nqi_session *s)
{
    nqi_ack *a = &s->ack;
    size_t started = nqi_session_first_unstarted(s);
    uint64_t touched = a->kept_len;
    size_t j = 0;
    size_t len = s->out_len;
    for (size_t k = 0; k < len; k++) {
        nqi_frame *f = *at(s, k);
        if (f->kind == NQI_FRAME_CONTROL || f->kind == NQI_FRAME_INI) {
            nqi_frame_done(f, NQ_OK); /* the next connection makes its own */
            continue;
        }
        if (k < started && f->kind == NQI_FRAME_DATA) {
            touched++;
        }
        *at(s, j++) = f;
    }
    s->out_len = j;
    s->hello = NULL;
    a->pending = NULL;
    a->again = 0;
    s->out_off = 0;
    s->out_sent = 0;
    s->out_taken = 0;
    /* Kept frames go back in front, newest first so the oldest leads. */
    if (a->kept_len > 0 && nqi_ring_reserve(&s->out, &s->out_cap, &s->out_head, s->out_len,
                                            s->out_len + a->kept_len) != NQ_OK) {
        touched -= a->kept_len;
        nqi_ack_fail(s, NQ_ENOMEM);
    }
    while (a->kept_len > 0) {
        a->kept_len--;
        s->out_head = (s->out_head + s->out_cap - 1) % s->out_cap;
        s->out[s->out_head] = a->kept[(a->kept_head + a->kept_len) % a->kept_cap];
        s->out_len++;
    }
    a->kept_head = 0;
    a->kept_bytes = 0;
    a->rewound += touched;
    a->beats_alone = 0;
    nqi_ack_stop(s);
    if (nqi_ack_wanted(s->comm)) {
        a->state = NQI_ACK_OFFERED;
        a->hold = s->comm->purpose == NQ_CLIENT;
    }
}

int nqi_ack_park_wanted(const nqi_session *s, int err)
{
    nq_comm *c = s->comm;
    switch (err) {
    case 0:
    case NQ_ECLOSED:
    case NQ_EPROTO:
    case NQ_EREPLACED:
    case NQ_ENOMEM:
        return 0;
    default:
        break;
    }
    return c->purpose == NQ_SERVER && s->ini_received && s->ack.state == NQI_ACK_ON &&
           atomic_load(&c->state) == NQI_OPEN && c->opts.ints[NQ_OPT_RESUME_MS] > 0;
}

int nqi_ack_can_adopt(const nqi_session *heir, const nqi_session *old)
{
    return heir->ack.state == NQI_ACK_ON && old->ack.state != NQI_ACK_OFF &&
           heir->worker == old->worker && old->heir == NULL && (!old->ended || old->waiting);
}

void nqi_ack_adopt(nqi_session *heir, nqi_session *old)
{
    nqi_ack *a = &heir->ack;
    const nqi_ack *o = &old->ack;
    for (size_t k = 0; k < old->out_len; k++) {
        nqi_frame *f = *at(old, k);
        if (f->kind != NQI_FRAME_DATA) {
            nqi_frame_done(f, NQ_OK); /* a FIN answering the old connection */
        } else if (nqi_session_queue(heir, f) != NQ_OK) {
            nqi_frame_done(f, NQ_ENOMEM);
        }
    }
    old->out_len = 0;
    a->base = o->base;
    a->acked = o->acked;
    a->rewound = o->rewound;
    a->received = o->received;
    a->token = o->token;
    a->peer_token = o->peer_token;
    a->peer_known = o->peer_known;
    nqi_session_ref(heir);
    old->heir = heir;
    nqi_stat_add(heir->comm, NQI_ST_RESUMED, 1);
}

/* ---- heartbeat ------------------------------------------------------------------------ */

/* How many beats in a row with nothing received mean the peer is gone: three
 * half periods of the slower side, counted in this side's (a stall of this
 * process itself costs one beat, not many), or 0 when silence means
 * nothing (the peer sends no PINGs, or never told how often it does
 * without acknowledged delivery). */
static int silence_limit(const nqi_session *s)
{
    const nqi_ack *a = &s->ack;
    int64_t mine = s->comm->opts.ints[NQ_OPT_KEEPALIVE_MS];
    if (a->peer_keepalive < 0) {
        return a->state == NQI_ACK_ON ? 3 : 0;
    }
    if (a->peer_keepalive == 0) {
        return 0;
    }
    if (a->peer_keepalive <= mine) {
        return 3;
    }
    int64_t beats = (3 * a->peer_keepalive + mine - 1) / mine;
    return beats > INT32_MAX ? INT32_MAX : (int)beats;
}

static void beat(nqi_timer *t)
{
    nqi_ack *a = NQI_CONTAINER(t, nqi_ack, beat);
    nqi_session *s = NQI_CONTAINER(a, nqi_session, ack);
    nq_comm *c = s->comm;
    if (s->ended || (a->state != NQI_ACK_ON && !a->beats_alone)) {
        return;
    }
    nqi_session_take_input(s);
    if (s->ended) {
        return;
    }
    int heard = s->in_bytes != a->beat_in || atomic_load(&s->paused);
    a->beat_in = s->in_bytes;
    int limit = silence_limit(s);
    a->silent = heard || limit == 0 ? 0 : a->silent + 1;
    if (limit > 0 && a->silent >= limit) {
        nqi_logf(&c->log, NQ_LOG_WARN, "peer silent for %lld ms; dropping it",
                 (long long)(limit * beat_period(c)));
        s->owner->end(s, NQ_ETIMEDOUT);
        return;
    }
    if (a->out_bytes == a->beat_out) {
        tell_keepalive(s);
    }
    a->beat_out = a->out_bytes;
    nqi_timer_arm(&s->worker->loop, t, nqi_now_ms() + beat_period(c));
}

void nqi_ack_stop(nqi_session *s)
{
    if (nqi_timer_armed(&s->ack.beat)) {
        nqi_timer_cancel(&s->worker->loop, &s->ack.beat);
    }
}
