/*
 * Sessions: one peer's byte stream, independent of the transport (see
 * session.h).  Runs on the loop of the session's worker, except ref and
 * unref (any thread).
 */
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/communicator.h"
#include "core/session.h"
#include "core/transport.h"

/* ---- life ------------------------------------------------------------------- */

static void flush_task(nqi_task *t)
{
    nqi_session *s = NQI_CONTAINER(t, nqi_session, flush);
    if (!s->ended) {
        s->comm->transport->flush(s);
    }
    nqi_session_unref(s); /* taken by nqi_session_mark_dirty */
}

nqi_session *nqi_session_create(nq_comm *c, nqi_worker *w, const nqi_session_owner *owner,
                                size_t tp_size)
{
    nqi_session *s = calloc(1, sizeof(*s) + tp_size);
    if (s == NULL) {
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->comm = c;
    s->worker = w;
    s->owner = owner;
    nqi_task_init(&s->flush, flush_task);
    /* Until the peer has introduced itself, only its 16-byte INI may come:
     * a longer header is refused before a byte of it is held. */
    nqi_parser_init(&s->parser, sizeof(s->peer.bytes));
    if (nqi_ack_init(s) != NQ_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void nqi_session_ref(nqi_session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void nqi_session_unref(nqi_session *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* A session ends (failing its output) before its last reference goes;
     * one that never ran releases what it queued here. */
    nqi_session_out_fail(s, NQ_ECLOSED);
    nqi_parser_fini(&s->parser);
    if (s->heir != NULL) {
        nqi_session_unref(s->heir);
    }
    free(s->out);
    free(s->identity);
    free(s);
}

void nqi_session_set_identity(nqi_session *s, char *text)
{
    pthread_mutex_lock(&s->comm->server_id_mu);
    char *old = s->identity;
    s->identity = text;
    pthread_mutex_unlock(&s->comm->server_id_mu);
    free(old);
}

/* ---- output ---------------------------------------------------------------- */

int nqi_ring_reserve(nqi_frame ***ring, size_t *cap, size_t *head, size_t len, size_t want)
{
    if (want <= *cap) {
        return NQ_OK;
    }
    size_t ncap = *cap == 0 ? 16 : *cap;
    while (ncap < want) {
        ncap *= 2;
    }
    nqi_frame **nr = malloc(ncap * sizeof(*nr));
    if (nr == NULL) {
        return NQ_ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        nr[i] = (*ring)[(*head + i) % *cap];
    }
    free(*ring);
    *ring = nr;
    *cap = ncap;
    *head = 0;
    return NQ_OK;
}

int nqi_session_queue(nqi_session *s, nqi_frame *f)
{
    if (nqi_ring_reserve(&s->out, &s->out_cap, &s->out_head, s->out_len, s->out_len + 1) !=
        NQ_OK) {
        return NQ_ENOMEM;
    }
    s->out[(s->out_head + s->out_len) % s->out_cap] = f;
    s->out_len++;
    return NQ_OK;
}

void nqi_session_mark_dirty(nqi_session *s)
{
    if (nqi_loop_defer(&s->worker->loop, &s->flush)) {
        nqi_session_ref(s);
    }
}

int nqi_session_out_iov(nqi_session *s, struct iovec *iov, nqi_frame **owners, int max_iov,
                        size_t max_bytes, size_t *total)
{
    int n = 0;
    size_t bytes = 0;
    uint64_t skip = s->out_off + s->out_sent;
    for (size_t k = 0; k < s->out_len && n < max_iov && bytes < max_bytes; k++) {
        nqi_frame *f = s->out[(s->out_head + k) % s->out_cap];
        if (nqi_ack_holds(s, f) ||
            (skip == 0 && f->kind == NQI_FRAME_DATA && nqi_ack_window_full(s))) {
            break;
        }
        for (size_t i = 0; i <= f->nchunks && n < max_iov && bytes < max_bytes; i++) {
            const uint8_t *base;
            size_t len;
            if (i == 0) {
                base = f->header;
                len = NQI_HEADER_SIZE;
            } else {
                base = f->chunks[i - 1].data;
                len = f->chunks[i - 1].len;
            }
            if (skip >= len) {
                skip -= len;
                continue;
            }
            base += skip;
            len -= (size_t)skip;
            skip = 0;
            if (len > max_bytes - bytes) {
                len = max_bytes - bytes;
            }
            iov[n].iov_base = (void *)base;
            iov[n].iov_len = len;
            if (owners != NULL) {
                owners[n] = f;
            }
            n++;
            bytes += len;
        }
    }
    *total = bytes;
    return n;
}

size_t nqi_iov_copy(uint8_t *dst, const struct iovec *iov, int n)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(dst + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    return at;
}

uint64_t nqi_session_out_pending(const nqi_session *s)
{
    uint64_t total = 0;
    for (size_t k = 0; k < s->out_len; k++) {
        const nqi_frame *f = s->out[(s->out_head + k) % s->out_cap];
        if (nqi_ack_holds(s, f)) {
            break;
        }
        total += NQI_HEADER_SIZE + f->payload_len;
    }
    return total - s->out_off - s->out_sent;
}

void nqi_session_out_commit(nqi_session *s, size_t n)
{
    nq_comm *c = s->comm;
    nqi_stat_add(c, NQI_ST_BYTES_OUT, (long long)n);
    s->ack.out_bytes += n;
    /* The data frames this completes are counted at once, before any of
     * their futures completes. */
    long long msgs = 0;
    uint64_t off = s->out_off;
    size_t rest = n;
    for (size_t k = 0; k < s->out_len; k++) {
        const nqi_frame *f = s->out[(s->out_head + k) % s->out_cap];
        uint64_t left = NQI_HEADER_SIZE + f->payload_len - off;
        if (rest < left) {
            break;
        }
        rest -= (size_t)left;
        off = 0;
        msgs += f->kind == NQI_FRAME_DATA;
    }
    if (msgs > 0) {
        nqi_stat_add(c, NQI_ST_MSGS_OUT, msgs);
    }
    while (n > 0 && s->out_len > 0) {
        nqi_frame *f = s->out[s->out_head];
        uint64_t left = NQI_HEADER_SIZE + f->payload_len - s->out_off;
        if (n < left) {
            s->out_off += n;
            break;
        }
        n -= (size_t)left;
        s->out_off = 0;
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
        if (f == s->hello) {
            s->hello = NULL;
        }
        if (!nqi_ack_written(s, f)) {
            nqi_frame_done(f, NQ_OK);
        }
    }
    nqi_ack_committed(s);
}

size_t nqi_session_first_unstarted(const nqi_session *s)
{
    uint64_t skip = s->out_off + s->out_sent + s->out_taken;
    size_t k = 0;
    while (k < s->out_len && skip > 0) {
        uint64_t size = NQI_HEADER_SIZE + s->out[(s->out_head + k) % s->out_cap]->payload_len;
        k++;
        if (skip < size) {
            break;
        }
        skip -= size;
    }
    return k;
}

size_t nqi_session_withdraw(nqi_session *s, nq_future *fut)
{
    size_t k0 = nqi_session_first_unstarted(s);
    uint64_t carried = s->ack.rewound; /* an earlier connection took them */
    size_t j = k0, withdrawn = 0;
    size_t len = s->out_len;
    for (size_t k = k0; k < len; k++) {
        nqi_frame *f = s->out[(s->out_head + k) % s->out_cap];
        if (f->kind == NQI_FRAME_DATA && carried > 0) {
            carried--;
        } else if (f->kind == NQI_FRAME_DATA && f->future == fut) {
            nqi_future_withdrawn(fut);
            nqi_frame_done(f, NQ_ECANCELED);
            withdrawn++;
            continue;
        }
        s->out[(s->out_head + j++) % s->out_cap] = f;
    }
    s->out_len = j;
    return withdrawn;
}

void nqi_session_out_fail(nqi_session *s, int err)
{
    err = err == NQ_ETIMEDOUT ? NQ_ECONNRESET : err;
    while (s->out_len > 0) {
        nqi_frame *f = s->out[s->out_head];
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
        nqi_frame_done(f, err);
    }
    s->out_off = 0;
    s->out_sent = 0;
    s->out_taken = 0;
    s->hello = NULL;
    s->ack.pending = NULL;
    nqi_ack_fail(s, err);
}

int nqi_session_restart(nqi_session *s)
{
    if (nqi_ack_wanted(s->comm)) {
        nqi_ack_rewind(s); /* what was not acknowledged goes again */
    } else {
        nqi_ack_forget_beats(s);
    }
    nqi_parser_fini(&s->parser);
    nqi_parser_init(&s->parser, sizeof(s->peer.bytes));
    s->ini_received = 0;
    s->fin_received = 0;
    atomic_store(&s->paused, 0);
    atomic_store(&s->resume_requested, 0);
    if (s->fin_queued && s->out_len > 0) {
        /* Nothing is queued behind a FIN: the tail is the answer to the old
         * peer's FIN, which the new peer must not see. */
        size_t tail = (s->out_head + s->out_len - 1) % s->out_cap;
        nqi_frame *fin = s->out[tail];
        s->out_len--;
        nqi_frame_done(fin, NQ_OK);
    }
    s->fin_queued = 0;
    s->out_off = 0;
    s->out_sent = 0;
    s->out_taken = 0;
    if (s->hello != NULL) {
        return NQ_OK; /* the INI still leads the queue */
    }
    nqi_frame *ini = nqi_frame_handshake(&s->comm->opts.id);
    if (ini == NULL) {
        return NQ_ENOMEM;
    }
    ini->kind = NQI_FRAME_INI;
    if (nqi_session_queue(s, ini) != NQ_OK) {
        nqi_frame_unref(ini);
        return NQ_ENOMEM;
    }
    /* Move it from the tail to the head. */
    for (size_t k = s->out_len - 1; k > 0; k--) {
        s->out[(s->out_head + k) % s->out_cap] = s->out[(s->out_head + k - 1) % s->out_cap];
    }
    s->out[s->out_head] = ini;
    s->hello = ini;
    return NQ_OK;
}

int nqi_session_queue_fin(nqi_session *s)
{
    if (s->fin_queued || s->ended) {
        return NQ_OK;
    }
    nqi_frame *f = nqi_frame_handshake(&s->comm->opts.id);
    if (f == NULL || nqi_session_queue(s, f) != NQ_OK) {
        if (f != NULL) {
            nqi_frame_unref(f);
        }
        return NQ_ENOMEM;
    }
    s->fin_queued = 1;
    nqi_session_mark_dirty(s);
    return NQ_OK;
}

int nqi_session_finished(const nqi_session *s)
{
    return s->out_len == 0 && nqi_session_exchanged(s);
}

int nqi_session_exchanged(const nqi_session *s)
{
    if (!s->fin_received || !s->fin_queued || !nqi_ack_settled(s)) {
        return 0;
    }
    for (size_t k = 0; k < s->out_len; k++) {
        if (s->out[(s->out_head + k) % s->out_cap]->kind != NQI_FRAME_CONTROL) {
            return 0; /* this side's FIN, at least, is still to go */
        }
    }
    return 1;
}

/* ---- input ----------------------------------------------------------------- */

static int on_frame(void *ctx, uint8_t *data, size_t len)
{
    nqi_session *s = ctx;
    nq_comm *c = s->comm;
    if (!s->ini_received) {
        if (len != sizeof(s->peer.bytes)) {
            nqi_block_free(data);
            nqi_logf(&c->log, NQ_LOG_WARN,
                     "first message is %zu bytes, not a 16-byte INI; dropping connection", len);
            return NQ_EPROTO;
        }
        memcpy(s->peer.bytes, data, sizeof(s->peer.bytes));
        nqi_block_free(data);
        s->ini_received = 1;
        s->parser.max_message = (uint64_t)c->opts.ints[NQ_OPT_MESSAGE_SIZE];
        return s->owner->ini(s);
    }
    if (s->parser.control != 0) {
        int rv = nqi_ack_control(s, s->parser.control, data, len);
        nqi_block_free(data);
        return rv;
    }
    if (len == sizeof(s->peer.bytes) && memcmp(data, s->peer.bytes, len) == 0) {
        nqi_block_free(data);
        if (s->fin_received) {
            nqi_logf(&c->log, NQ_LOG_WARN, "peer sent a second FIN");
            return NQ_EPROTO;
        }
        s->fin_received = 1;
        int rv = nqi_ack_fin(s);
        return rv != 0 ? rv : nqi_session_queue_fin(s);
    }
    if (s->fin_received) {
        nqi_block_free(data);
        nqi_logf(&c->log, NQ_LOG_WARN, "peer sent data after its FIN");
        return NQ_EPROTO;
    }
    /* A small payload moves into its message's block: the getter then
     * frees one block instead of two (nq_msg_free). */
    int inline_data = len > 0 && len <= NQI_MSG_INLINE_MAX;
    nq_msg *m = nqi_block_alloc(inline_data ? NQI_MSG_INLINE_AT + len : sizeof(*m));
    if (m == NULL) {
        nqi_block_free(data);
        return NQ_ENOMEM;
    }
    if (inline_data) {
        memcpy(nqi_msg_inline(m), data, len);
        nqi_block_free(data);
        data = nqi_msg_inline(m);
    }
    m->next = NULL;
    m->peer = s->peer;
    m->data = data;
    m->len = len;
    m->session = s;
    if (s->batch_tail != NULL) {
        s->batch_tail->next = m;
    } else {
        s->batch_head = m;
    }
    s->batch_tail = m;
    if (s->ack.state == NQI_ACK_ON) {
        s->ack.received++;
    }
    s->batch_bytes += len; /* counted when the batch is queued */
    return 0;
}

static int parse_result(nqi_session *s, int rv)
{
    if (rv == NQ_EPROTO && !nqi_parser_idle(&s->parser)) {
        if (s->ini_received) {
            nqi_logf(&s->comm->log, NQ_LOG_WARN,
                     "frame of %llu bytes exceeds the message size limit of %llu",
                     (unsigned long long)s->parser.need,
                     (unsigned long long)s->parser.max_message);
        } else {
            nqi_logf(&s->comm->log, NQ_LOG_WARN,
                     "first frame of %llu bytes cannot be a 16-byte INI; dropping connection",
                     (unsigned long long)s->parser.need);
        }
    }
    return rv;
}

int nqi_session_in(nqi_session *s, const uint8_t *data, size_t len)
{
    s->in_bytes += len;
    return parse_result(s, nqi_parser_feed(&s->parser, data, len, on_frame, s));
}

int nqi_session_in_window(nqi_session *s, uint8_t **ptr, size_t *len)
{
    return nqi_parser_window(&s->parser, ptr, len);
}

int nqi_session_in_commit(nqi_session *s, size_t n)
{
    s->in_bytes += n;
    return parse_result(s, nqi_parser_commit(&s->parser, n, on_frame, s));
}

void nqi_session_take_input(nqi_session *s)
{
    if (s->comm->transport->take_input != NULL) {
        s->comm->transport->take_input(s);
    }
}

/* NQ_OPT_DROP_OLDEST: the peer's n oldest undelivered messages make room
 * (fewer when getters took some meanwhile). */
static void drop_oldest(nqi_session *s, size_t n)
{
    nq_comm *c = s->comm;
    nq_msg *m = NULL;
    long left = 0;
    size_t k = nqi_msgq_drop_oldest(&c->msgq, &s->inq, n, &m, &left);
    if (k == 0) {
        return;
    }
    nqi_stat_add(c, NQI_ST_DROPPED, (long long)k);
    while (m != NULL) {
        nq_msg *next = m->next;
        m->session = NULL; /* no longer counted */
        nq_msg_free(m);
        m = next;
    }
    if (left == 0) {
        nqi_session_unref(s); /* the queue's; the caller holds another */
    }
    if (!s->dropping) {
        s->dropping = 1;
        char text[NQ_ID_STRLEN];
        nq_id_format(&s->peer, text, sizeof(text));
        nqi_logf(&c->log, NQ_LOG_WARN,
                 "peer %s: receive queue full (%lld messages); dropping its oldest",
                 text, (long long)c->opts.ints[NQ_OPT_QUEUE_SIZE]);
    }
}

int nqi_session_deliver(nqi_session *s)
{
    nq_msg *first = s->batch_head;
    if (first == NULL) {
        return atomic_load(&s->paused);
    }
    long n = 0;
    for (nq_msg *m = first; m != NULL; m = m->next) {
        n++;
    }
    /* The counters once per batch: an atomic operation per message would
     * cost more than the rest of its parse. */
    nqi_stat_add(s->comm, NQI_ST_MSGS_IN, n);
    nqi_stat_add(s->comm, NQI_ST_BYTES_IN, (long long)s->batch_bytes);
    s->batch_bytes = 0;
    nq_msg *last = s->batch_tail;
    s->batch_head = s->batch_tail = NULL;
    long queued = nqi_msgq_push(&s->comm->msgq, &s->inq, first, last);
    if (queued == n) {
        /* The queue's reference, for as long as any of them waits (the
         * getter that takes the last releases it; until this runs, the
         * caller's reference keeps s). */
        nqi_session_ref(s);
    }
    nqi_ack_delivered(s);

    nq_comm *c = s->comm;
    long limit = (long)c->opts.ints[NQ_OPT_QUEUE_SIZE];
    if (c->opts.ints[NQ_OPT_DROP_OLDEST]) {
        if (queued > limit) {
            drop_oldest(s, (size_t)(queued - limit));
        }
        return 0;
    }
    /* A transport that cannot stop reading a peer withholds its
     * acknowledgements instead, where they were agreed. */
    int can_pause = c->transport->pausable || s->ack.state == NQI_ACK_ON;
    if (can_pause && queued >= limit && atomic_load(&c->state) == NQI_OPEN &&
        !atomic_load(&s->paused)) {
        atomic_store(&s->paused, 1);
        nqi_stat_add(c, NQI_ST_READ_PAUSES, 1);
        /* A getter may have made room between the count and the flag. */
        if (nqi_msgq_count(&c->msgq, &s->inq) < limit) {
            atomic_store(&s->paused, 0);
        }
    }
    return atomic_load(&s->paused);
}
