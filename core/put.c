/*
 * Puts: nq_put and nq_put_value build one frame, find the sessions it goes
 * to, and post one delivery per session to the loop that owns it.  Runs on
 * the caller's thread, except the deliveries, which run on the loops.
 */
#include <stdlib.h>
#include <string.h>

#include "core/communicator.h"
#include "core/redial.h"
#include "core/session.h"

/* ---- deliveries, on the session's loop -------------------------------------- */

/* Takes what a delivery carries and frees it unless it lives in its frame
 * (which the caller's work may release). */
static nqi_session *take_send(nqi_cmd *cmd, nqi_frame **frame, int *borrowed)
{
    nqi_send *d = (nqi_send *)cmd;
    nqi_session *s = d->session;
    *frame = d->frame;
    *borrowed = d->borrowed;
    if (!d->embedded) {
        nqi_block_free(d);
    }
    return s;
}

static void run_send(nqi_loop *l, nqi_cmd *cmd)
{
    (void)l;
    nqi_frame *f;
    int borrowed;
    nqi_session *held = take_send(cmd, &f, &borrowed);
    nqi_session *s = held;
    while (s->heir != NULL) {
        s = s->heir; /* the peer's new connection took the session over */
    }
    if (f->future != NULL && nqi_future_cancelled(f->future)) {
        nqi_future_withdrawn(f->future);
        nqi_frame_done(f, NQ_ECANCELED);
    } else if (s->ended && !s->waiting) {
        nqi_frame_done(f, s->error != 0 ? s->error : NQ_ECONNRESET);
    } else if (s->fin_queued) {
        nqi_frame_done(f, s->comm->purpose == NQ_CLIENT ? NQ_ECLOSED : NQ_ECONNRESET);
    } else if (nqi_session_queue(s, f) != NQ_OK) {
        nqi_frame_done(f, NQ_ENOMEM);
    } else if (!s->ended) {
        nqi_session_mark_dirty(s);
    }
    if (!borrowed) {
        nqi_session_unref(held);
    }
}

static void discard_send(nqi_cmd *cmd)
{
    nqi_frame *f;
    int borrowed;
    nqi_session *s = take_send(cmd, &f, &borrowed);
    nqi_frame_done(f, NQ_ECLOSED);
    if (!borrowed) {
        nqi_session_unref(s);
    }
}

/* ---- finding the targets ---------------------------------------------------- */

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

static void release_arrays(nqi_session **targets, nqi_session **small_targets, nqi_send **sends,
                           nqi_send **small_sends)
{
    if (targets != small_targets) {
        free(targets);
    }
    if (sends != small_sends) {
        free(sends);
    }
}

/* ---- posting ------------------------------------------------------------------ */

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
    /* Extra deliveries are allocated up front so a failure leaves nothing
     * half-sent.  The first target uses the delivery inside the frame. */
    nqi_send *small_sends[SMALL_TARGETS] = {NULL};
    nqi_send **sends = n <= SMALL_TARGETS ? small_sends : calloc((size_t)n, sizeof(*sends));
    int rv = sends == NULL ? NQ_ENOMEM : NQ_OK;
    for (int i = 1; i < n && rv == NQ_OK; i++) {
        sends[i] = nqi_block_calloc(sizeof(nqi_send));
        if (sends[i] == NULL) {
            rv = NQ_ENOMEM;
        }
    }
    nq_future *fut = NULL;
    if (rv == NQ_OK && out != NULL) {
        fut = nqi_future_new(n > 0 ? n : 1);
        if (fut == NULL) {
            rv = NQ_ENOMEM;
        } else {
            nqi_future_set_comm(fut, c);
        }
    }
    if (rv != NQ_OK) {
        for (int i = 0; i < n; i++) {
            if (c->purpose != NQ_CLIENT) {
                nqi_session_unref(targets[i]);
            }
            if (sends != NULL) {
                nqi_block_free(sends[i]);
            }
        }
        release_arrays(targets, small_targets, sends, small_sends);
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
        nqi_send *d = i == 0 ? &f->send : sends[i];
        d->cmd.run = run_send;
        d->cmd.discard = discard_send;
        d->session = targets[i]; /* the reference moves to the delivery */
        d->borrowed = c->purpose == NQ_CLIENT;
        d->frame = f;
        if (i > 0) {
            nqi_frame_ref(f); /* the first delivery takes the caller's */
        }
    }
    /* Post only after every reference is taken: a delivery may run and drop
     * its reference at once, and f is not touched after the last post. */
    for (int i = 0; i < n; i++) {
        nqi_send *d = i == 0 ? &f->send : sends[i];
        nqi_loop_post(&targets[i]->worker->loop, &d->cmd);
    }
    release_arrays(targets, small_targets, sends, small_sends);
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
    nqi_frame *f = nqi_frame_new(chunks, n, copy);
    if (f == NULL) {
        if (copy) {
            atomic_fetch_sub(&comm->send_bytes, total);
        }
        return NQ_ENOMEM;
    }
    if (copy) {
        f->owned_len = (size_t)total;
        f->send_bytes = &comm->send_bytes;
    }
    return post_frame(comm, f, peers, npeers, out);
}

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
    nqi_frame *f = nqi_frame_adopt(b.data, b.len);
    if (f == NULL) {
        nq_free(b.data);
        return NQ_ENOMEM;
    }
    return post_frame(comm, f, peers, npeers, out);
}
