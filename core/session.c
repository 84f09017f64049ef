/*
 * Sessions: the protocol state of one connection, independent of the
 * transport.  Output is a ring of shared frames with a byte offset into the
 * head; input runs through the frame parser and net-queue's INI/FIN rules:
 * the first 16-byte message is the peer's INI, a later 16-byte message equal
 * to the peer's id is its FIN, anything else is data.
 */
#include <stdlib.h>
#include <string.h>

#include "core/nqi.h"

/* ---- frames ------------------------------------------------------------ */

/* A copied payload up to this size lives in the frame's own block, after
 * its one chunk (frame_alloc(1, len), then inline_payload()). */
#define INLINE_PAYLOAD 256

static uint8_t *inline_payload(nqi_frame *f)
{
    return (uint8_t *)&f->inline_chunks[1];
}

static nqi_frame *frame_alloc(size_t nchunks, size_t inline_bytes)
{
    nqi_frame *f = nqi_block_calloc(sizeof(*f) + nchunks * sizeof(nq_chunk) + inline_bytes);
    if (f == NULL) {
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->nchunks = nchunks;
    f->chunks = f->inline_chunks;
    f->cmd.embedded = 1;
    return f;
}

nqi_frame *nqi_frame_new(nq_comm *comm, const nq_chunk *chunks, size_t n, int copy)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += chunks[i].len;
    }
    int inline_copy = copy && total <= INLINE_PAYLOAD;
    nqi_frame *f = frame_alloc(copy ? 1 : n, inline_copy ? (size_t)total : 0);
    if (f == NULL) {
        return NULL;
    }
    f->is_data = 1;
    f->comm = comm;
    f->payload_len = total;
    nqi_frame_header(f->header, total);
    if (!copy) {
        memcpy(f->inline_chunks, chunks, n * sizeof(nq_chunk));
        return f;
    }
    uint8_t *buf = inline_copy ? inline_payload(f) : malloc((size_t)total);
    if (buf == NULL) {
        nqi_block_free(f);
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].len > 0) {
            memcpy(buf + at, chunks[i].data, chunks[i].len);
            at += chunks[i].len;
        }
    }
    f->owned = inline_copy ? NULL : buf;
    f->inline_chunks[0].data = buf;
    f->inline_chunks[0].len = (size_t)total;
    return f;
}

nqi_frame *nqi_frame_adopt(nq_comm *comm, void *data, size_t len)
{
    nqi_frame *f = frame_alloc(1, 0);
    if (f == NULL) {
        return NULL;
    }
    f->is_data = 1;
    f->comm = comm;
    f->payload_len = len;
    nqi_frame_header(f->header, len);
    f->owned = data;
    f->inline_chunks[0].data = data;
    f->inline_chunks[0].len = len;
    return f;
}

nqi_frame *nqi_frame_handshake(const nq_id *id)
{
    nqi_frame *f = frame_alloc(1, sizeof(id->bytes));
    if (f == NULL) {
        return NULL;
    }
    uint8_t *copy = inline_payload(f);
    memcpy(copy, id->bytes, sizeof(id->bytes));
    f->payload_len = sizeof(id->bytes);
    nqi_frame_header(f->header, sizeof(id->bytes));
    f->inline_chunks[0].data = copy;
    f->inline_chunks[0].len = sizeof(id->bytes);
    return f;
}

void nqi_frame_ref(nqi_frame *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void nqi_frame_unref(nqi_frame *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (f->owned_len > 0 && f->comm != NULL) {
        atomic_fetch_sub(&f->comm->send_bytes, (long long)f->owned_len);
    }
    free(f->owned);
    nqi_block_free(f);
}

#define PIN_COUNT 0xffffffffu
#define PIN_DEFERRED_ONE ((uint64_t)1 << 32)

void nqi_frame_done(nqi_frame *f, int result)
{
    if (f->future != NULL) {
        uint64_t old = atomic_load(&f->pins);
        if ((old & PIN_COUNT) != 0) {
            /* Before deferring: the last unpin may finish the part at once. */
            nqi_future_note_error(f->future, result);
        }
        while ((old & PIN_COUNT) != 0) {
            if (atomic_compare_exchange_weak(&f->pins, &old, old + PIN_DEFERRED_ONE)) {
                return; /* the last unpin finishes this part */
            }
        }
        nqi_future_part_done(f->future, result);
    }
    nqi_frame_unref(f);
}

void nqi_frame_pin(nqi_frame *f)
{
    nqi_frame_ref(f);
    atomic_fetch_add(&f->pins, 1);
}

void nqi_frame_unpin(nqi_frame *f)
{
    uint64_t old = atomic_load(&f->pins);
    uint64_t next;
    do {
        /* The last pin takes every deferred completion with it. */
        next = (old & PIN_COUNT) == 1 ? 0 : old - 1;
    } while (!atomic_compare_exchange_weak(&f->pins, &old, next));
    if (next == 0) {
        for (uint64_t n = old >> 32; n > 0; n--) {
            nqi_future_part_done(f->future, NQ_OK);
            nqi_frame_unref(f);
        }
    }
    nqi_frame_unref(f);
}

/* ---- session life cycle ---------------------------------------------------- */

nqi_session *nqi_session_new(nq_comm *comm, nqi_loop *loop, int fd)
{
    nqi_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->comm = comm;
    s->loop = loop;
    s->fd = fd;
    nqi_parser_init(&s->parser, (uint64_t)comm->opts.ints[NQ_OPT_MESSAGE_SIZE]);
    s->loop_next = loop->sessions;
    if (loop->sessions != NULL) {
        loop->sessions->loop_prev = s;
    }
    loop->sessions = s;
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
    nqi_parser_fini(&s->parser);
    free(s->out);
    free(s->tls_stage);
    free(s->topic);
    free(s);
}

/* Counts the end of a connection in the communicator's statistics. */
static void count_end(nq_comm *c, int err)
{
    switch (err) {
    case 0:
    case NQ_ECLOSED:
        break;
    case NQ_EPROTO:
        nqi_stat_add(c, NQI_ST_PROTOCOL_ERRORS, 1);
        break;
    case NQ_ETLS:
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

void nqi_session_end(nqi_session *s, int err)
{
    if (atomic_exchange(&s->ended, 1)) {
        return;
    }
    nq_comm *c = s->comm;
    nqi_loop *l = s->loop;
    s->error = err;
    s->conn_state = NQI_CONN_DONE;

    /* Messages that arrived before the end are still delivered. */
    nqi_session_deliver(s);

    int fail = err != 0 ? err : NQ_ECONNRESET;
    while (s->out_len > 0) {
        nqi_frame *f = s->out[s->out_head];
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
        nqi_frame_done(f, fail);
    }
    if (s->registered) {
        nqi_peers_remove(c, s);
    }
    if (!s->ini_received && c->purpose == NQ_SERVER && l->pending_ini > 0) {
        l->pending_ini--;
    }
    if (s->loop_prev != NULL) {
        s->loop_prev->loop_next = s->loop_next;
    } else if (l->sessions == s) {
        l->sessions = s->loop_next;
    }
    if (s->loop_next != NULL) {
        s->loop_next->loop_prev = s->loop_prev;
    }
    s->loop_next = s->loop_prev = NULL;

    c->transport->session_end(s);
    count_end(c, err);

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

/* ---- output ---------------------------------------------------------------- */

int nqi_session_queue(nqi_session *s, nqi_frame *f)
{
    if (s->out_len == s->out_cap) {
        size_t ncap = s->out_cap == 0 ? 16 : s->out_cap * 2;
        nqi_frame **nr = malloc(ncap * sizeof(*nr));
        if (nr == NULL) {
            return NQ_ENOMEM;
        }
        for (size_t i = 0; i < s->out_len; i++) {
            nr[i] = s->out[(s->out_head + i) % s->out_cap];
        }
        free(s->out);
        s->out = nr;
        s->out_cap = ncap;
        s->out_head = 0;
    }
    s->out[(s->out_head + s->out_len) % s->out_cap] = f;
    s->out_len++;
    return NQ_OK;
}

void nqi_session_mark_dirty(nqi_session *s)
{
    if (!s->dirty) {
        s->dirty = 1;
        s->dirty_next = s->loop->dirty;
        s->loop->dirty = s;
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
        total += NQI_HEADER_SIZE + s->out[(s->out_head + k) % s->out_cap]->payload_len;
    }
    return total - s->out_off - s->out_sent;
}

void nqi_session_out_commit(nqi_session *s, size_t n)
{
    nq_comm *c = s->comm;
    nqi_stat_add(c, NQI_ST_BYTES_OUT, (long long)n);
    while (n > 0 && s->out_len > 0) {
        nqi_frame *f = s->out[s->out_head];
        uint64_t left = NQI_HEADER_SIZE + f->payload_len - s->out_off;
        if (n < left) {
            s->out_off += n;
            return;
        }
        n -= (size_t)left;
        s->out_off = 0;
        s->out_head = (s->out_head + 1) % s->out_cap;
        s->out_len--;
        if (f->is_data) {
            nqi_stat_add(c, NQI_ST_MSGS_OUT, 1);
        }
        nqi_frame_done(f, NQ_OK);
    }
}

void nqi_session_queue_fin(nqi_session *s)
{
    if (s->fin_queued || s->ended) {
        return;
    }
    nqi_frame *f = nqi_frame_handshake(&s->comm->opts.id);
    if (f == NULL || nqi_session_queue(s, f) != NQ_OK) {
        if (f != NULL) {
            nqi_frame_unref(f);
        }
        nqi_session_end(s, NQ_ENOMEM);
        return;
    }
    s->fin_queued = 1;
    nqi_session_mark_dirty(s);
}

int nqi_session_finished(const nqi_session *s)
{
    return s->fin_received && s->fin_queued && s->out_len == 0;
}

/* ---- input ----------------------------------------------------------------- */

static int on_ini(nqi_session *s, const uint8_t *id)
{
    nq_comm *c = s->comm;
    memcpy(s->peer.bytes, id, sizeof(s->peer.bytes));
    s->ini_received = 1;
    if (c->purpose == NQ_CLIENT) {
        pthread_mutex_lock(&c->server_id_mu);
        c->server_id = s->peer;
        c->server_id_known = 1;
        pthread_mutex_unlock(&c->server_id_mu);
        return 0;
    }
    if (s->loop->pending_ini > 0) {
        s->loop->pending_ini--;
    }
    int rv = nqi_peers_add(c, s);
    if (rv != NQ_OK) {
        char text[NQ_ID_STRLEN];
        nq_id_format(&s->peer, text, sizeof(text));
        nqi_logf(&c->log, NQ_LOG_WARN, "refusing a second connection for live peer %s",
                 text);
        s->ini_received = 0;
        return rv;
    }
    nqi_frame *f = nqi_frame_handshake(&c->opts.id);
    if (f == NULL || nqi_session_queue(s, f) != NQ_OK) {
        if (f != NULL) {
            nqi_frame_unref(f);
        }
        return NQ_ENOMEM;
    }
    nqi_session_mark_dirty(s);
    return 0;
}

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
        int rv = on_ini(s, data);
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
        nqi_session_queue_fin(s);
        return 0;
    }
    if (s->fin_received) {
        nqi_block_free(data);
        nqi_logf(&c->log, NQ_LOG_WARN, "peer sent data after its FIN");
        return NQ_EPROTO;
    }
    nq_msg *m = nqi_block_alloc(sizeof(*m));
    if (m == NULL) {
        nqi_block_free(data);
        return NQ_ENOMEM;
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
    nqi_stat_add(c, NQI_ST_MSGS_IN, 1);
    nqi_stat_add(c, NQI_ST_BYTES_IN, (long long)len);
    return 0;
}

static int parse_result(nqi_session *s, int rv)
{
    if (rv == NQ_EPROTO && !nqi_parser_idle(&s->parser)) {
        nqi_logf(&s->comm->log, NQ_LOG_WARN,
                 "frame of %llu bytes exceeds the message size limit of %lld",
                 (unsigned long long)s->parser.need,
                 (long long)s->comm->opts.ints[NQ_OPT_MESSAGE_SIZE]);
    }
    return rv;
}

int nqi_session_in(nqi_session *s, const uint8_t *data, size_t len)
{
    return parse_result(s, nqi_parser_feed(&s->parser, data, len, on_frame, s));
}

int nqi_session_in_window(nqi_session *s, uint8_t **ptr, size_t *len)
{
    return nqi_parser_window(&s->parser, ptr, len);
}

int nqi_session_in_commit(nqi_session *s, size_t n)
{
    return parse_result(s, nqi_parser_commit(&s->parser, n, on_frame, s));
}

int nqi_session_deliver(nqi_session *s)
{
    nq_msg *first = s->batch_head;
    if (first == NULL) {
        return atomic_load(&s->paused);
    }
    long n = 0;
    for (nq_msg *m = first; m != NULL; m = m->next) {
        nqi_session_ref(s);
        n++;
    }
    nq_msg *last = s->batch_tail;
    s->batch_head = s->batch_tail = NULL;
    long queued = atomic_fetch_add(&s->queued, n) + n;
    nqi_msgq_push(&s->comm->msgq, first, last);

    nq_comm *c = s->comm;
    long limit = (long)c->opts.ints[NQ_OPT_QUEUE_SIZE];
    if (c->transport->pausable && queued >= limit && atomic_load(&c->state) == NQI_OPEN &&
        !atomic_load(&s->paused)) {
        atomic_store(&s->paused, 1);
        nqi_stat_add(c, NQI_ST_READ_PAUSES, 1);
        /* A getter may have made room between the count and the flag. */
        if (atomic_load(&s->queued) < limit) {
            atomic_store(&s->paused, 0);
        }
    }
    return atomic_load(&s->paused);
}
