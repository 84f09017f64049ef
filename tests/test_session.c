/*
 * Unit tests of a session (core/session.c) with no socket and no transport:
 * net-queue's INI/FIN rules on the input, the output ring and its commits,
 * pinned frames, and the pause at NQ_OPT_QUEUE_SIZE.  A stand-in
 * communicator, worker and transport table hold what the session reads.
 */
#include <stdlib.h>

#include "core/nqi.h"
#include "harness.h"

/* ---- the stand-ins -------------------------------------------------------------- */

struct fixture {
    nq_comm comm;
    nqi_worker worker;
    nqi_transport transport;
    int flushes;
    int inis;
    nq_id ini_seen;
    int ini_result; /* what the owner answers an INI with */
};

static struct fixture *fx; /* the fixture of the test running */

static void fake_flush(nqi_session *s)
{
    (void)s;
    fx->flushes++;
}

static int fake_ini(nqi_session *s)
{
    fx->inis++;
    fx->ini_seen = s->peer;
    return fx->ini_result;
}

static const nqi_session_owner fake_owner = {.ini = fake_ini};

static struct fixture *fixture_new(int pausable, int64_t queue_size)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || nqi_opts_defaults(&f->comm.opts) != NQ_OK) {
        abort();
    }
    fx = f;
    f->comm.opts.ints[NQ_OPT_QUEUE_SIZE] = queue_size;
    f->comm.purpose = NQ_SERVER;
    f->comm.transport = &f->transport;
    f->transport.flush = fake_flush;
    f->transport.pausable = pausable;
    nqi_log_init(&f->comm.log, NULL, NULL);
    nqi_msgq_init(&f->comm.msgq);
    f->worker.comm = &f->comm;
    nqi_list_init(&f->worker.sessions);
    if (nqi_loop_init(&f->worker.loop, &f->worker) != NQ_OK) {
        abort();
    }
    return f;
}

static void stop_at_once(nqi_loop *l)
{
    nqi_loop_stop(l);
}

/* One round of the worker's loop: runs the flushes the session asked for. */
static void run_round(struct fixture *f)
{
    if (nqi_loop_start(&f->worker.loop, stop_at_once) == NQ_OK) {
        nqi_loop_join(&f->worker.loop);
        f->worker.loop.stopping = 0;
    }
}

static void fixture_free(struct fixture *f)
{
    run_round(f);
    nqi_loop_fini(&f->worker.loop);
    nqi_msgq_fini(&f->comm.msgq, nq_msg_free);
    nqi_opts_clear(&f->comm.opts);
    free(f);
}

/* Header and payload of one frame, appended at *at. */
static void put_frame(uint8_t *buf, size_t *at, const void *payload, size_t len)
{
    nqi_frame_header(buf + *at, len);
    memcpy(buf + *at + NQI_HEADER_SIZE, payload, len);
    *at += NQI_HEADER_SIZE + len;
}

/* Takes the oldest message as nq_get does: the sender's last one queued
 * releases the queue's reference to its session. */
static int pop_msg(struct fixture *f, nq_msg **m)
{
    long left = -1;
    int rv = nqi_msgq_pop(&f->comm.msgq, 0, m, &left);
    if (rv == NQ_OK && (*m)->session != NULL) {
        if (left == 0) {
            nqi_session_unref((*m)->session);
        }
        (*m)->session = NULL;
    }
    return rv;
}

static int take_message(struct fixture *f, const char *want, const nq_id *from)
{
    nq_msg *m;
    CHECK_OK(pop_msg(f, &m));
    CHECK(m->len == strlen(want) && memcmp(m->data, want, m->len) == 0);
    CHECK(nq_id_equal(&m->peer, from));
    nq_msg_free(m);
    return 0;
}

/* ---- input ---------------------------------------------------------------------- */

static int test_first_message_must_be_a_16_byte_ini(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    uint8_t wire[64];
    size_t n = 0;
    put_frame(wire, &n, "hello", 5);
    CHECK_RC(nqi_session_in(s, wire, n), NQ_EPROTO);
    CHECK(!s->ini_received && f->inis == 0);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* Before its INI a peer may send only a 16-byte frame: a longer header is
 * refused as soon as its 8 bytes are in, before anything is held for it. */
static int test_a_stranger_cannot_announce_a_long_frame(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    uint8_t header[NQI_HEADER_SIZE];
    nqi_frame_header(header, UINT64_C(1) << 30); /* within message_size */
    CHECK_RC(nqi_session_in(s, header, sizeof(header)), NQ_EPROTO);
    CHECK(s->parser.buf == NULL && s->parser.cap == 0);
    nqi_session_unref(s);

    s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    nqi_frame_header(header, 17);
    CHECK_RC(nqi_session_in(s, header, sizeof(header)), NQ_EPROTO);
    nqi_session_unref(s);

    /* After the INI, frames up to message_size are welcome. */
    s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    nq_id peer;
    CHECK_OK(nq_id_random(&peer));
    uint8_t wire[64];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    nqi_frame_header(wire + n, UINT64_C(1) << 30);
    CHECK_OK(nqi_session_in(s, wire, n + NQI_HEADER_SIZE));
    CHECK(s->ini_received && s->parser.in_payload);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* INI names the peer (the owner hears of it once), data is delivered in
 * order under that name, a 16-byte message that is not the peer's id is
 * data, the peer's id is its FIN, which queues ours; nothing may follow. */
static int test_ini_data_and_fin_follow_net_queue_rules(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    nq_id peer, other;
    CHECK_OK(nq_id_random(&peer));
    CHECK_OK(nq_id_random(&other));
    uint8_t wire[256];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    put_frame(wire, &n, "one", 3);
    put_frame(wire, &n, other.bytes, 16);
    put_frame(wire, &n, "", 0);
    /* Fed one byte at a time: frames cut anywhere. */
    for (size_t i = 0; i < n; i++) {
        CHECK_OK(nqi_session_in(s, wire + i, 1));
    }
    CHECK(f->inis == 1 && s->ini_received);
    CHECK(nq_id_equal(&f->ini_seen, &peer) && nq_id_equal(&s->peer, &peer));
    CHECK(nqi_session_deliver(s) == 0);
    CHECK(take_message(f, "one", &peer) == 0);
    nq_msg *m;
    CHECK_OK(pop_msg(f, &m));
    CHECK(m->len == 16 && memcmp(m->data, other.bytes, 16) == 0);
    nq_msg_free(m);
    CHECK_OK(pop_msg(f, &m));
    CHECK(m->len == 0);
    nq_msg_free(m);
    int64_t in = atomic_load(&f->comm.stats[NQI_ST_MSGS_IN]);
    CHECK(in == 3);

    CHECK(!s->fin_queued && s->out_len == 0);
    n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    CHECK_OK(nqi_session_in(s, wire, n));
    CHECK(s->fin_received && s->fin_queued && s->out_len == 1);
    CHECK(s->flush.queued); /* our FIN waits for the transport's flush */
    /* Ours is our own id. */
    CHECK(s->out[s->out_head]->payload_len == 16);
    CHECK(memcmp(s->out[s->out_head]->chunks[0].data, f->comm.opts.id.bytes, 16) == 0);
    CHECK(!nqi_session_finished(s));
    nqi_session_out_commit(s, NQI_HEADER_SIZE + 16);
    CHECK(nqi_session_finished(s));

    n = 0;
    put_frame(wire, &n, "late", 4);
    CHECK_RC(nqi_session_in(s, wire, n), NQ_EPROTO);
    run_round(f);
    CHECK(f->flushes == 1);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

static int test_second_fin_is_a_protocol_error(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    nq_id peer;
    CHECK_OK(nq_id_random(&peer));
    uint8_t wire[128];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    put_frame(wire, &n, peer.bytes, 16);
    CHECK_OK(nqi_session_in(s, wire, n));
    CHECK(s->fin_received);
    n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    CHECK_RC(nqi_session_in(s, wire, n), NQ_EPROTO);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* The owner may refuse a peer (a live id, say): its answer ends the input. */
static int test_owner_can_refuse_an_ini(void)
{
    struct fixture *f = fixture_new(1, 100);
    f->ini_result = NQ_EPROTO;
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    nq_id peer;
    CHECK_OK(nq_id_random(&peer));
    uint8_t wire[128];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    put_frame(wire, &n, "after", 5);
    CHECK_RC(nqi_session_in(s, wire, n), NQ_EPROTO);
    CHECK(f->inis == 1);
    CHECK(s->batch_head == NULL); /* nothing after the refused INI was parsed */
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* ---- flow -------------------------------------------------------------------------- */

/* A pausable peer stops at NQ_OPT_QUEUE_SIZE undelivered messages; taking
 * one below the limit asks for a resume.  A transport that cannot hold a
 * sender back never pauses. */
static int test_deliver_pauses_at_queue_size(void)
{
    for (int pausable = 1; pausable >= 0; pausable--) {
        struct fixture *f = fixture_new(pausable, 3);
        nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
        CHECK(s != NULL);
        nq_id peer;
        CHECK_OK(nq_id_random(&peer));
        uint8_t wire[256];
        size_t n = 0;
        put_frame(wire, &n, peer.bytes, 16);
        put_frame(wire, &n, "a", 1);
        put_frame(wire, &n, "b", 1);
        CHECK_OK(nqi_session_in(s, wire, n));
        CHECK(nqi_session_deliver(s) == 0);
        n = 0;
        put_frame(wire, &n, "c", 1);
        CHECK_OK(nqi_session_in(s, wire, n));
        CHECK(nqi_session_deliver(s) == pausable);
        CHECK(nqi_msgq_count(&f->comm.msgq, &s->inq) == 3);
        CHECK(atomic_load(&f->comm.stats[NQI_ST_READ_PAUSES]) == pausable);
        /* Queued messages hold one reference to their session between
         * them, released with the last one taken. */
        CHECK(atomic_load(&s->refs) == 2);
        for (int i = 0; i < 3; i++) {
            nq_msg *m;
            CHECK_OK(pop_msg(f, &m));
            nq_msg_free(m);
            CHECK(atomic_load(&s->refs) == (i < 2 ? 2 : 1));
        }
        CHECK(nqi_msgq_count(&f->comm.msgq, &s->inq) == 0);
        nqi_session_unref(s);
        fixture_free(f);
    }
    return 0;
}

/* ---- output -------------------------------------------------------------------------- */

/* Frames leave in order through any cut of their bytes, across the ring's
 * growth and wrap-around; each future completes when its last byte is
 * committed, not before; bytes handed over but unconfirmed are skipped by
 * the next iov. */
static int test_output_ring_commits_frames_in_order(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    enum { FRAMES = 40 };
    static uint8_t payload[FRAMES][40];
    nq_future *fut[FRAMES];
    uint64_t total = 0;
    /* Half first, committed, so the head has moved before the ring grows. */
    for (int round = 0; round < 2; round++) {
        for (int i = round * FRAMES / 2; i < (round + 1) * FRAMES / 2; i++) {
            memset(payload[i], i, (size_t)i + 1);
            nq_chunk ch[2] = {{payload[i], 1}, {payload[i] + 1, (size_t)i}};
            nqi_frame *fr = nqi_frame_new(ch, 2, 0);
            CHECK(fr != NULL);
            fr->future = fut[i] = nqi_future_new(1);
            CHECK_OK(nqi_session_queue(s, fr));
            total += NQI_HEADER_SIZE + (size_t)i + 1;
        }
        if (round == 0) {
            CHECK(nqi_session_out_pending(s) == total);
            nqi_session_out_commit(s, NQI_HEADER_SIZE + 1 + NQI_HEADER_SIZE + 2);
            total -= NQI_HEADER_SIZE + 1 + NQI_HEADER_SIZE + 2;
            CHECK_RC(nq_future_result(fut[0]), NQ_OK);
            CHECK_RC(nq_future_result(fut[1]), NQ_OK);
            CHECK_RC(nq_future_result(fut[2]), NQ_EPENDING);
        }
    }
    CHECK(s->out_len == FRAMES - 2 && s->out_cap >= FRAMES - 2);
    /* Read back in pieces of 7 bytes: the bytes are the frames, in order. */
    uint8_t *want = malloc(total);
    uint8_t *got = malloc(total);
    CHECK(want != NULL && got != NULL);
    size_t at = 0;
    for (int i = 2; i < FRAMES; i++) {
        nqi_frame_header(want + at, (uint64_t)i + 1);
        memcpy(want + at + NQI_HEADER_SIZE, payload[i], (size_t)i + 1);
        at += NQI_HEADER_SIZE + (size_t)i + 1;
    }
    size_t done = 0;
    int frame = 2;
    size_t frame_end = NQI_HEADER_SIZE + 3;
    while (done < total) {
        struct iovec iov[4];
        size_t len;
        int n = nqi_session_out_iov(s, iov, NULL, 4, 7, &len);
        CHECK(n > 0 && len <= 7);
        /* Handed over, then confirmed: the next iov starts past them. */
        s->out_sent += len;
        CHECK(nqi_session_out_pending(s) == total - done - len);
        s->out_sent -= len;
        done += nqi_iov_copy(got + done, iov, n);
        nqi_session_out_commit(s, len);
        while (frame < FRAMES && done >= frame_end) {
            CHECK_RC(nq_future_result(fut[frame]), NQ_OK);
            frame++;
            frame_end += frame < FRAMES ? NQI_HEADER_SIZE + (size_t)frame + 1 : 0;
        }
        if (frame < FRAMES) {
            CHECK_RC(nq_future_result(fut[frame]), NQ_EPENDING);
        }
    }
    CHECK(memcmp(got, want, total) == 0);
    CHECK(s->out_len == 0 && nqi_session_out_pending(s) == 0);
    CHECK(atomic_load(&f->comm.stats[NQI_ST_MSGS_OUT]) == FRAMES);
    for (int i = 0; i < FRAMES; i++) {
        nq_future_free(fut[i]);
    }
    free(want);
    free(got);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* A frame committed while a transport still lends its memory completes its
 * future only when the last pin goes; failing the ring fails the rest. */
static int test_pinned_output_and_failure(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    CHECK(s != NULL);
    static const uint8_t data[100];
    nq_chunk ch = {data, sizeof(data)};
    nq_future *fut[3];
    nqi_frame *fr[3];
    for (int i = 0; i < 3; i++) {
        fr[i] = nqi_frame_new(&ch, 1, 0);
        CHECK(fr[i] != NULL);
        fr[i]->future = fut[i] = nqi_future_new(1);
        CHECK_OK(nqi_session_queue(s, fr[i]));
    }
    nqi_frame_pin(fr[0]); /* lent to a transport */
    nqi_session_out_commit(s, NQI_HEADER_SIZE + sizeof(data));
    CHECK_RC(nq_future_result(fut[0]), NQ_EPENDING);
    nqi_frame_unpin(fr[0]);
    CHECK_RC(nq_future_result(fut[0]), NQ_OK);
    nqi_session_out_fail(s, NQ_ECONNRESET);
    CHECK_RC(nq_future_result(fut[1]), NQ_ECONNRESET);
    CHECK_RC(nq_future_result(fut[2]), NQ_ECONNRESET);
    CHECK(s->out_len == 0 && nqi_session_out_pending(s) == 0);
    for (int i = 0; i < 3; i++) {
        nq_future_free(fut[i]);
    }
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* ---- acknowledged delivery -------------------------------------------------------- */

/* A server session that agreed to acknowledged delivery (no heartbeat) and
 * has its peer's INI. */
static nqi_session *acked_session(struct fixture *f, nq_id *peer)
{
    f->comm.opts.ints[NQ_OPT_DELIVERY] = NQ_DELIVERY_ACKED;
    f->comm.opts.ints[NQ_OPT_KEEPALIVE_MS] = 0;
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    if (s == NULL || nq_id_random(peer) != NQ_OK) {
        return NULL;
    }
    uint8_t wire[32];
    size_t n = 0;
    put_frame(wire, &n, peer->bytes, 16);
    if (nqi_session_in(s, wire, n) != NQ_OK || nqi_ack_agree(s, 1) != NQ_OK) {
        return NULL;
    }
    return s;
}

static nq_future *queue_data(nqi_session *s, const char *text)
{
    nq_chunk ch = {text, strlen(text)};
    nqi_frame *fr = nqi_frame_new(&ch, 1, 0);
    if (fr == NULL) {
        return NULL;
    }
    nq_future *fut = fr->future = nqi_future_new(1); /* the caller's and the put's */
    if (nqi_session_queue(s, fr) != NQ_OK) {
        return NULL;
    }
    return fut;
}

/* One write that carries an ACK and the data behind it: the next ACK is
 * queued after the commit, not in front of bytes already written. */
static int test_an_ack_is_never_queued_ahead_of_written_bytes(void)
{
    struct fixture *f = fixture_new(1, 100);
    nq_id peer;
    nqi_session *s = acked_session(f, &peer);
    CHECK(s != NULL && s->ack.state == NQI_ACK_ON);
    uint8_t wire[64];
    size_t n = 0;
    put_frame(wire, &n, "one", 3);
    CHECK_OK(nqi_session_in(s, wire, n));
    nqi_session_deliver(s);
    CHECK(s->out_len == 1 && s->out[s->out_head]->kind == NQI_FRAME_CONTROL);
    nq_future *fut = queue_data(s, "data");
    CHECK(fut != NULL && s->out_len == 2);
    n = 0;
    put_frame(wire, &n, "two", 3);
    CHECK_OK(nqi_session_in(s, wire, n)); /* a second ACK is due */
    nqi_session_deliver(s);
    CHECK(s->out_len == 2);
    nqi_session_out_commit(s, 2 * NQI_HEADER_SIZE + 8 + 4);
    CHECK(s->out_off == 0 && s->out_len == 1);
    CHECK(s->out[s->out_head]->kind == NQI_FRAME_CONTROL);
    CHECK(s->ack.kept_len == 1);
    CHECK_RC(nq_future_result(fut), NQ_EPENDING); /* kept until the peer says */
    CHECK(take_message(f, "one", &peer) == 0 && take_message(f, "two", &peer) == 0);
    nq_future_free(fut);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* A lost connection: written frames go back in front in order, the one cut
 * short whole; the peer's RESUME completes what it has and the rest goes
 * again from there. */
static int test_rewind_and_resume_send_what_the_peer_lacks(void)
{
    struct fixture *f = fixture_new(1, 100);
    nq_id peer;
    nqi_session *s = acked_session(f, &peer);
    CHECK(s != NULL);
    nq_future *fut[3];
    const char *text[3] = {"d1", "d2", "d3"};
    for (int i = 0; i < 3; i++) {
        fut[i] = queue_data(s, text[i]);
        CHECK(fut[i] != NULL);
    }
    nqi_session_out_commit(s, 2 * (NQI_HEADER_SIZE + 2) + 3); /* d3 cut short */
    CHECK(s->ack.kept_len == 2 && s->out_off == 3);
    nqi_ack_rewind(s);
    CHECK(s->out_len == 3 && s->out_off == 0 && s->ack.kept_len == 0);
    CHECK(s->ack.rewound == 3 && s->ack.base == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(memcmp(s->out[(s->out_head + i) % s->out_cap]->chunks[0].data, text[i], 2) == 0);
    }
    /* The same peer comes back with the first of them. */
    s->ack.state = NQI_ACK_ON;
    s->ack.hold = 1;
    s->ack.peer_known = 1;
    s->ack.peer_token = 42;
    uint8_t wire[32];
    nqi_control_header(wire, NQI_CTL_RESUME, 16);
    memset(wire + 8, 0, 16);
    wire[15] = 42; /* token */
    wire[23] = 1;  /* received */
    CHECK_OK(nqi_session_in(s, wire, sizeof(wire) - 8));
    CHECK(!s->ack.hold && s->ack.base == 1 && s->ack.rewound == 0);
    CHECK_RC(nq_future_result(fut[0]), NQ_OK);
    CHECK_RC(nq_future_result(fut[1]), NQ_EPENDING);
    CHECK(s->out_len == 2);
    /* A stranger's RESUME after another loss: what it may have had fails. */
    nqi_ack_rewind(s);
    s->ack.state = NQI_ACK_ON;
    s->ack.hold = 1;
    s->ack.rewound = 1; /* d2 went out before the loss */
    wire[15] = 7;
    wire[23] = 0;
    CHECK_OK(nqi_session_in(s, wire, sizeof(wire) - 8));
    CHECK_RC(nq_future_result(fut[1]), NQ_ECONNRESET);
    CHECK_RC(nq_future_result(fut[2]), NQ_EPENDING);
    CHECK(s->out_len == 1 && s->ack.peer_token == 7 && s->ack.base == 0);
    for (int i = 0; i < 3; i++) {
        nq_future_free(fut[i]);
    }
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* Acknowledged delivery not agreed, the heartbeat alone agreed: PING
 * frames come and are nothing to the application, data flows and
 * completes as written, RESUME and ACK are protocol errors; heartbeat
 * frames queued for a lost connection go with it. */
static int test_the_heartbeat_alone_takes_pings_and_nothing_else(void)
{
    struct fixture *f = fixture_new(1, 100);
    f->comm.opts.ints[NQ_OPT_KEEPALIVE_MS] = 0;
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    nq_id peer;
    CHECK(s != NULL && nq_id_random(&peer) == NQ_OK);
    uint8_t wire[64];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    CHECK_OK(nqi_session_in(s, wire, n));
    CHECK_OK(nqi_ack_agree(s, 0));
    CHECK_OK(nqi_ack_beat_alone(s));
    CHECK(s->ack.state == NQI_ACK_OFF && s->ack.beats_alone && s->parser.control_ok);
    nqi_control_header(wire, NQI_CTL_PING, 0);
    n = NQI_HEADER_SIZE;
    put_frame(wire, &n, "x", 1);
    CHECK_OK(nqi_session_in(s, wire, n));
    nqi_session_deliver(s);
    CHECK(take_message(f, "x", &peer) == 0);
    CHECK(s->out_len == 0); /* no ACK */
    nq_future *fut = queue_data(s, "data");
    CHECK(fut != NULL);
    nqi_session_out_commit(s, NQI_HEADER_SIZE + 4);
    CHECK_RC(nq_future_result(fut), NQ_OK);
    nq_future_free(fut);
    nqi_frame *ping = nqi_frame_control(NQI_CTL_PING, NULL, 0);
    CHECK(ping != NULL && nqi_session_queue(s, ping) == NQ_OK);
    nqi_ack_forget_beats(s);
    CHECK(s->out_len == 0 && !s->ack.beats_alone);
    s->ack.beats_alone = 1;
    nqi_control_header(wire, NQI_CTL_ACK, 8);
    memset(wire + NQI_HEADER_SIZE, 0, 8);
    CHECK_RC(nqi_session_in(s, wire, NQI_HEADER_SIZE + 8), NQ_EPROTO);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

/* Once both FINs have passed, a PING still waiting is all that is left:
 * the exchange is complete, and a reset then loses nothing.  Not while
 * this side's FIN waits, nor while data waits. */
static int test_a_ping_left_after_both_fins_is_a_complete_exchange(void)
{
    struct fixture *f = fixture_new(1, 100);
    nqi_session *s = nqi_session_create(&f->comm, &f->worker, &fake_owner, 0);
    nq_id peer;
    CHECK(s != NULL && nq_id_random(&peer) == NQ_OK);
    uint8_t wire[64];
    size_t n = 0;
    put_frame(wire, &n, peer.bytes, 16);
    CHECK_OK(nqi_session_in(s, wire, n));
    nq_future *fut = queue_data(s, "data");
    CHECK(fut != NULL);
    CHECK_OK(nqi_session_queue_fin(s));
    CHECK(!nqi_session_exchanged(s)); /* the peer's FIN is still to come */
    CHECK_OK(nqi_session_in(s, wire, n));
    CHECK(s->fin_received && !nqi_session_exchanged(s)); /* data waits */
    nqi_session_out_commit(s, NQI_HEADER_SIZE + 4);
    CHECK(!nqi_session_exchanged(s)); /* our FIN waits */
    nqi_frame *ping = nqi_frame_control(NQI_CTL_PING, NULL, 0);
    CHECK(ping != NULL && nqi_session_queue(s, ping) == NQ_OK);
    nqi_session_out_commit(s, NQI_HEADER_SIZE + 16);
    CHECK(s->out_len == 1 && !nqi_session_finished(s));
    CHECK(nqi_session_exchanged(s));
    CHECK_RC(nq_future_result(fut), NQ_OK);
    nq_future_free(fut);
    nqi_session_unref(s);
    fixture_free(f);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_first_message_must_be_a_16_byte_ini),
    TEST(test_a_stranger_cannot_announce_a_long_frame),
    TEST(test_ini_data_and_fin_follow_net_queue_rules),
    TEST(test_second_fin_is_a_protocol_error),
    TEST(test_owner_can_refuse_an_ini),
    TEST(test_deliver_pauses_at_queue_size),
    TEST(test_output_ring_commits_frames_in_order),
    TEST(test_pinned_output_and_failure),
    TEST(test_an_ack_is_never_queued_ahead_of_written_bytes),
    TEST(test_rewind_and_resume_send_what_the_peer_lacks),
    TEST(test_the_heartbeat_alone_takes_pings_and_nothing_else),
    TEST(test_a_ping_left_after_both_fins_is_a_complete_exchange),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
