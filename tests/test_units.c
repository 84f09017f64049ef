/*
 * Unit tests of the pure parts: the frame parser, the command queue,
 * futures, options and identities.  No sockets.
 */
#include <pthread.h>
#include <stdlib.h>

#include "core/nqi.h"
#include "harness.h"
#include "transports/tcp/tcp.h"

/* ---- frame parser ------------------------------------------------------------ */

struct collected {
    size_t count;
    size_t lens[64];
    uint8_t first[64];
    size_t total;
};

static int collect(void *ctx, uint8_t *data, size_t len)
{
    struct collected *c = ctx;
    if (c->count < 64) {
        c->lens[c->count] = len;
        c->first[c->count] = len > 0 ? data[0] : 0;
    }
    c->count++;
    c->total += len;
    nqi_block_free(data);
    return 0;
}

/* Builds header + payload of len bytes all equal to fill. */
static size_t make_frame(uint8_t *out, size_t len, uint8_t fill)
{
    nqi_frame_header(out, len);
    memset(out + NQI_HEADER_SIZE, fill, len);
    return NQI_HEADER_SIZE + len;
}

static int test_header_is_big_endian_u64(void)
{
    uint8_t h[8];
    nqi_frame_header(h, 0x0102030405060708ULL);
    const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(memcmp(h, want, 8) == 0);
    CHECK(nqi_frame_length(h) == 0x0102030405060708ULL);
    nqi_frame_header(h, 16);
    const uint8_t ini[8] = {0, 0, 0, 0, 0, 0, 0, 16};
    CHECK(memcmp(h, ini, 8) == 0);
    return 0;
}

static int test_parser_splits_frames_at_any_boundary(void)
{
    uint8_t stream[512];
    size_t n = 0;
    n += make_frame(stream + n, 0, 0);
    n += make_frame(stream + n, 16, 'a');
    n += make_frame(stream + n, 100, 'b');
    n += make_frame(stream + n, 1, 'c');
    /* Every feed size from 1 byte to the whole stream gives the same frames. */
    for (size_t step = 1; step <= n; step++) {
        nqi_parser p;
        nqi_parser_init(&p, 1 << 20);
        struct collected c = {0};
        for (size_t at = 0; at < n; at += step) {
            size_t len = n - at < step ? n - at : step;
            CHECK_OK(nqi_parser_feed(&p, stream + at, len, collect, &c));
        }
        CHECK(c.count == 4);
        CHECK(c.lens[0] == 0 && c.lens[1] == 16 && c.lens[2] == 100 && c.lens[3] == 1);
        CHECK(c.first[1] == 'a' && c.first[2] == 'b' && c.first[3] == 'c');
        CHECK(nqi_parser_idle(&p));
        nqi_parser_fini(&p);
    }
    return 0;
}

static int test_parser_rejects_length_over_limit(void)
{
    uint8_t h[8];
    nqi_parser p;
    nqi_parser_init(&p, 1000);
    struct collected c = {0};
    nqi_frame_header(h, 1001);
    CHECK_RC(nqi_parser_feed(&p, h, 8, collect, &c), NQ_EPROTO);
    nqi_parser_fini(&p);
    nqi_parser_init(&p, UINT64_C(1) << 62);
    nqi_frame_header(h, UINT64_C(1) << 63);
    CHECK_RC(nqi_parser_feed(&p, h, 8, collect, &c), NQ_EPROTO);
    nqi_parser_fini(&p);
    CHECK(c.count == 0);
    return 0;
}

/* Control frames of acknowledged delivery: refused as an oversized length
 * unless the peer agreed to them; then parsed whatever the message limit,
 * with their type; malformed ones refused. */
static int control_seen;
static int collect_control(void *ctx, uint8_t *data, size_t len)
{
    nqi_parser *p = ctx;
    control_seen = p->control * 1000 + (int)len;
    nqi_block_free(data);
    return 0;
}

static int test_parser_takes_control_frames_only_when_agreed(void)
{
    uint8_t buf[8 + 16] = {0};
    nqi_parser p;
    nqi_parser_init(&p, 16);
    nqi_control_header(buf, 1, 16);
    CHECK(buf[0] == 0x80 && buf[1] == 1 && buf[7] == 16);
    CHECK_RC(nqi_parser_feed(&p, buf, sizeof(buf), collect_control, &p), NQ_EPROTO);
    nqi_parser_fini(&p);

    nqi_parser_init(&p, 16);
    p.control_ok = 1;
    control_seen = 0;
    CHECK_OK(nqi_parser_feed(&p, buf, sizeof(buf), collect_control, &p));
    CHECK(control_seen == 1016);
    nqi_control_header(buf, 3, 0);
    CHECK_OK(nqi_parser_feed(&p, buf, 8, collect_control, &p));
    CHECK(control_seen == 3000);
    nqi_frame_header(buf, 4); /* data again: control is 0 */
    CHECK_OK(nqi_parser_feed(&p, buf, 12, collect_control, &p));
    CHECK(control_seen == 4);
    nqi_control_header(buf, 2, NQI_CONTROL_MAX + 1);
    CHECK_RC(nqi_parser_feed(&p, buf, 8, collect_control, &p), NQ_EPROTO);
    nqi_parser_fini(&p);

    uint8_t odd[8] = {0x80, 2, 0, 0, 1, 0, 0, 8}; /* bits outside type and length */
    nqi_parser_init(&p, 16);
    p.control_ok = 1;
    CHECK_RC(nqi_parser_feed(&p, odd, 8, collect_control, &p), NQ_EPROTO);
    nqi_parser_fini(&p);
    uint8_t none[8] = {0x80, 0, 0, 0, 0, 0, 0, 0}; /* type 0 */
    nqi_parser_init(&p, 16);
    p.control_ok = 1;
    CHECK_RC(nqi_parser_feed(&p, none, 8, collect_control, &p), NQ_EPROTO);
    nqi_parser_fini(&p);
    return 0;
}

static int test_parser_allocation_grows_with_arrivals(void)
{
    /* A header claiming 1 GiB allocates only as bytes arrive. */
    uint8_t h[8];
    nqi_parser p;
    nqi_parser_init(&p, UINT64_C(1) << 40);
    struct collected c = {0};
    nqi_frame_header(h, UINT64_C(1) << 30);
    CHECK_OK(nqi_parser_feed(&p, h, 8, collect, &c));
    uint8_t *win;
    size_t len;
    CHECK(nqi_parser_window(&p, &win, &len) == 1);
    size_t first = p.cap;
    CHECK(first <= 4 * 1024 * 1024);
    uint8_t data[1000] = {0};
    CHECK_OK(nqi_parser_feed(&p, data, sizeof(data), collect, &c));
    CHECK(p.cap == first);
    /* Filling what is there lets it grow, by a bounded factor. */
    while (p.have < p.cap) {
        CHECK(nqi_parser_window(&p, &win, &len) == 1);
        memset(win, 0x5a, len);
        CHECK_OK(nqi_parser_commit(&p, len, collect, &c));
    }
    CHECK(nqi_parser_window(&p, &win, &len) == 1);
    CHECK(p.cap > first && p.cap <= 8 * first);
    CHECK(c.count == 0);
    nqi_parser_fini(&p);
    return 0;
}

/* A payload up to a few MiB that arrives in pieces is read in place: its
 * buffer is allocated once, at its full length. */
static int test_parser_allocates_a_medium_payload_once(void)
{
    uint8_t h[8];
    nqi_parser p;
    nqi_parser_init(&p, UINT64_C(1) << 40);
    struct collected c = {0};
    nqi_frame_header(h, 3 * 1024 * 1024);
    CHECK_OK(nqi_parser_feed(&p, h, 8, collect, &c));
    uint8_t *win;
    size_t len;
    CHECK(nqi_parser_window(&p, &win, &len) == 1);
    CHECK(len == 3 * 1024 * 1024);
    uint8_t *start = win;
    while (c.count == 0) {
        CHECK(nqi_parser_window(&p, &win, &len) == 1);
        CHECK(win == start + p.have);
        size_t take = len < 100000 ? len : 100000;
        memset(win, 0x11, take);
        CHECK_OK(nqi_parser_commit(&p, take, collect, &c));
    }
    CHECK(c.count == 1 && c.lens[0] == 3 * 1024 * 1024 && c.first[0] == 0x11);
    nqi_parser_fini(&p);
    return 0;
}

static int test_parser_window_reads_straight_into_message(void)
{
    size_t len = 300 * 1000;
    uint8_t h[8];
    nqi_frame_header(h, len);
    nqi_parser p;
    nqi_parser_init(&p, 1 << 20);
    struct collected c = {0};
    CHECK_OK(nqi_parser_feed(&p, h, 8, collect, &c));
    size_t have = 0;
    while (c.count == 0) {
        uint8_t *win;
        size_t room;
        CHECK(nqi_parser_window(&p, &win, &room) == 1);
        CHECK(room > 0);
        size_t take = room > 7000 ? 7000 : room;
        if (take > len - have) {
            take = len - have;
        }
        memset(win, 'z', take);
        have += take;
        CHECK_OK(nqi_parser_commit(&p, take, collect, &c));
        /* The first block holds the whole 300 kB payload: no growth. */
        CHECK(p.cap == len || c.count == 1);
    }
    CHECK(c.count == 1 && c.lens[0] == len && c.first[0] == 'z');
    CHECK(nqi_parser_window(&p, &(uint8_t *){0}, &(size_t){0}) == 0);
    nqi_parser_fini(&p);
    return 0;
}

static int stop_at_second(void *ctx, uint8_t *data, size_t len)
{
    (void)len;
    nqi_block_free(data);
    return ++*(int *)ctx == 2 ? NQ_EPROTO : 0;
}

static int test_parser_stops_when_callback_fails(void)
{
    uint8_t stream[64];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        n += make_frame(stream + n, 4, (uint8_t)i);
    }
    nqi_parser p;
    nqi_parser_init(&p, 100);
    int seen = 0;
    CHECK_RC(nqi_parser_feed(&p, stream, n, stop_at_second, &seen), NQ_EPROTO);
    CHECK(seen == 2);
    nqi_parser_fini(&p);
    return 0;
}

/* ---- command queue ------------------------------------------------------------- */

struct item {
    nqi_mpsc_node node; /* first member */
    int producer;
    int seq;
};

struct producer_arg {
    nqi_mpsc *q;
    int id;
    int count;
    struct item *items;
};

static void *produce(void *arg)
{
    struct producer_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        a->items[i].producer = a->id;
        a->items[i].seq = i;
        nqi_mpsc_push(a->q, &a->items[i].node);
    }
    return NULL;
}

static int test_mpsc_keeps_each_producers_order(void)
{
    enum { PRODUCERS = 4, COUNT = 50000 };
    nqi_mpsc q;
    nqi_mpsc_init(&q);
    CHECK(nqi_mpsc_pop(&q) == NULL);
    pthread_t t[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (struct producer_arg){&q, i, COUNT, calloc(COUNT, sizeof(struct item))};
        pthread_create(&t[i], NULL, produce, &args[i]);
    }
    int next[PRODUCERS] = {0};
    int got = 0;
    while (got < PRODUCERS * COUNT) {
        struct item *it = (struct item *)nqi_mpsc_pop(&q);
        if (it == NULL) {
            continue;
        }
        CHECK(it->seq == next[it->producer]);
        next[it->producer]++;
        got++;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        free(args[i].items);
    }
    CHECK(nqi_mpsc_pop(&q) == NULL);
    return 0;
}

/* The consumer's look before it sleeps: nothing queued and no push under
 * way, whatever state the last pops left (a node still to take as the
 * tail, a push between its exchange and its link). */
static int test_mpsc_is_empty_only_with_nothing_on_its_way(void)
{
    nqi_mpsc q;
    nqi_mpsc_init(&q);
    CHECK(nqi_mpsc_empty(&q));
    struct item a = {{NULL}, 0, 1}, b = {{NULL}, 0, 2}, c = {{NULL}, 0, 3};
    nqi_mpsc_push(&q, &a.node);
    nqi_mpsc_push(&q, &b.node);
    CHECK(!nqi_mpsc_empty(&q));
    CHECK(nqi_mpsc_pop(&q) == &a.node);
    CHECK(!nqi_mpsc_empty(&q)); /* b is the tail, not taken yet */
    CHECK(nqi_mpsc_pop(&q) == &b.node);
    CHECK(nqi_mpsc_pop(&q) == NULL && nqi_mpsc_empty(&q));
    /* The first half of a push by hand: exchanged, not linked. */
    atomic_store(&c.node.next, NULL);
    nqi_mpsc_node *prev = atomic_exchange(&q.head, &c.node);
    CHECK(nqi_mpsc_pop(&q) == NULL && !nqi_mpsc_empty(&q));
    atomic_store(&prev->next, &c.node);
    CHECK(!nqi_mpsc_empty(&q));
    CHECK(nqi_mpsc_pop(&q) == &c.node);
    CHECK(nqi_mpsc_pop(&q) == NULL && nqi_mpsc_empty(&q));
    return 0;
}

/* ---- small blocks --------------------------------------------------------------- */

static int test_blocks_keep_contents_through_realloc(void)
{
    size_t sizes[] = {0, 1, 100, 128, 129, 600, 1024, 1025, 70000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = nqi_block_alloc(sizes[i]);
        CHECK(p != NULL);
        for (size_t k = 0; k < sizes[i]; k++) {
            p[k] = (uint8_t)(k * 7 + i);
        }
        size_t grown = sizes[i] * 3 + 5;
        uint8_t *q = nqi_block_realloc(p, grown);
        CHECK(q != NULL);
        for (size_t k = 0; k < sizes[i]; k++) {
            CHECK(q[k] == (uint8_t)(k * 7 + i));
        }
        memset(q + sizes[i], 0xab, grown - sizes[i]);
        nqi_block_free(q);
    }
    uint8_t *z = nqi_block_calloc(300);
    CHECK(z != NULL);
    for (size_t k = 0; k < 300; k++) {
        CHECK(z[k] == 0);
    }
    nqi_block_free(z);
    nqi_block_free(NULL);
    return 0;
}

struct handoff {
    nqi_mpsc q;
    int count;
    atomic_int bad;
};

struct handed {
    nqi_mpsc_node node;
    uint32_t seq;
    uint8_t fill[100];
};

/* Allocates blocks and hands them to the main thread, which frees them:
 * the pattern the library has between a putting thread and an I/O thread.
 * The thread ends holding blocks of its own (freed while it ran). */
static void *hand_blocks(void *arg)
{
    struct handoff *h = arg;
    for (int i = 0; i < h->count; i++) {
        struct handed *b = nqi_block_alloc(sizeof(*b) + (size_t)(i % 3) * 200);
        if (b == NULL) {
            atomic_fetch_add(&h->bad, 1);
            continue;
        }
        b->seq = (uint32_t)i;
        memset(b->fill, (int)(i & 0xff), sizeof(b->fill));
        nqi_mpsc_push(&h->q, &b->node);
        if (i % 64 == 0) {
            nqi_block_free(nqi_block_alloc(64));
        }
    }
    return NULL;
}

static int test_blocks_move_between_threads(void)
{
    enum { COUNT = 200000 };
    for (int round = 0; round < 3; round++) {
        struct handoff h;
        nqi_mpsc_init(&h.q);
        h.count = COUNT;
        atomic_init(&h.bad, 0);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, hand_blocks, &h) == 0);
        int got = 0;
        while (got < COUNT - atomic_load(&h.bad)) {
            struct handed *b = (struct handed *)nqi_mpsc_pop(&h.q);
            if (b == NULL) {
                continue;
            }
            for (size_t k = 0; k < sizeof(b->fill); k++) {
                CHECK(b->fill[k] == (uint8_t)(b->seq & 0xff));
            }
            nqi_block_free(b);
            got++;
        }
        CHECK(pthread_join(t, NULL) == 0);
        CHECK(atomic_load(&h.bad) == 0);
    }
    return 0;
}

/* ---- futures ---------------------------------------------------------------- */

static void record(nq_future *f, int result, void *ctx)
{
    (void)f;
    *(int *)ctx = result;
}

static int test_future_completes_after_every_part(void)
{
    nq_future *f = nqi_future_new(3);
    CHECK(f != NULL);
    int seen = 1;
    CHECK_OK(nq_future_on_done(f, record, &seen));
    nqi_future_part_done(f, NQ_OK);
    nqi_future_part_done(f, NQ_ECONNRESET);
    CHECK_RC(nq_future_result(f), NQ_EPENDING);
    CHECK_RC(nq_future_wait(f, 10), NQ_ETIMEDOUT);
    CHECK(seen == 1);
    nqi_future_part_done(f, NQ_ECLOSED);
    /* The first error wins. */
    CHECK_RC(nq_future_wait(f, -1), NQ_ECONNRESET);
    CHECK(seen == NQ_ECONNRESET);
    nq_future_free(f);
    return 0;
}

static int test_future_callback_on_completed_future_runs_at_once(void)
{
    nq_future *f = nqi_future_new(1);
    nqi_future_part_done(f, NQ_OK);
    int seen = 99;
    CHECK_OK(nq_future_on_done(f, record, &seen));
    CHECK(seen == NQ_OK);
    CHECK_RC(nq_future_on_done(f, NULL, NULL), NQ_EINVAL);
    CHECK_RC(nq_future_wait(NULL, 0), NQ_EINVAL);
    nq_future_free(f);
    return 0;
}

struct waiter {
    nq_future *future;
    int result;
};

static void *wait_forever(void *arg)
{
    struct waiter *w = arg;
    w->result = nq_future_wait(w->future, -1);
    return NULL;
}

static void count_call(nq_future *f, int result, void *ctx)
{
    (void)f;
    (void)result;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

static void *complete_part(void *arg)
{
    nqi_future_part_done(arg, NQ_OK);
    return NULL;
}

/* Several threads sleep on one future and all wake with its result; a
 * callback registered while the future completes on another thread runs
 * exactly once; a second registration is refused. */
static int test_future_waiters_and_racing_callback(void)
{
    nq_future *f = nqi_future_new(1);
    CHECK(f != NULL);
    enum { WAITERS = 4 };
    struct waiter w[WAITERS];
    pthread_t t[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        w[i] = (struct waiter){f, 99};
        CHECK(pthread_create(&t[i], NULL, wait_forever, &w[i]) == 0);
    }
    CHECK_RC(nq_future_wait(f, 20), NQ_ETIMEDOUT);
    nqi_future_part_done(f, NQ_ECONNRESET);
    for (int i = 0; i < WAITERS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(w[i].result == NQ_ECONNRESET);
    }
    nq_future_free(f);

    for (int round = 0; round < 2000; round++) {
        f = nqi_future_new(1);
        CHECK(f != NULL);
        atomic_int calls = 0;
        pthread_t done;
        CHECK(pthread_create(&done, NULL, complete_part, f) == 0);
        CHECK_OK(nq_future_on_done(f, count_call, &calls));
        CHECK_RC(nq_future_on_done(f, count_call, &calls), NQ_EINVAL);
        CHECK(pthread_join(done, NULL) == 0);
        CHECK_RC(nq_future_wait(f, -1), NQ_OK);
        CHECK(atomic_load(&calls) == 1);
        nq_future_free(f);
    }
    return 0;
}

/* Large blocks come back for the next payload of about their size, within
 * a bound on what is kept; small and huge ones are never kept. */
static int test_large_blocks_are_reused_within_a_bound(void)
{
    nqi_block_drop_kept(); /* what earlier cases in this process left */
    CHECK(nqi_block_kept_bytes() == 0);
    uint8_t *a = nqi_block_alloc(2 * 1024 * 1024);
    CHECK(a != NULL);
    memset(a, 0x5a, 2 * 1024 * 1024);
    nqi_block_free(a);
    uint8_t *b = nqi_block_alloc(2 * 1024 * 1024 - 100);
    CHECK(b != NULL);
    if (nqi_block_pooled()) {
        CHECK(b == a); /* the same memory, already mapped */
    } else {
        CHECK(nqi_block_kept_bytes() == 0);
    }
    CHECK(nqi_block_kept_bytes() == 0);
    nqi_block_free(b);

    /* A much smaller request does not take a big block. */
    uint8_t *c = nqi_block_alloc(300 * 1024);
    CHECK(c != NULL && (c != b || !nqi_block_pooled()));
    nqi_block_free(c);

    enum { MANY = 8 };
    uint8_t *blocks[MANY];
    for (int i = 0; i < MANY; i++) {
        blocks[i] = nqi_block_alloc(4 * 1024 * 1024);
        CHECK(blocks[i] != NULL);
    }
    for (int i = 0; i < MANY; i++) {
        nqi_block_free(blocks[i]);
    }
    CHECK(nqi_block_kept_bytes() <= 16 * 1024 * 1024);
    if (nqi_block_pooled()) {
        CHECK(nqi_block_kept_bytes() >= 8 * 1024 * 1024);
    }
    uint8_t *huge = nqi_block_alloc(64 * 1024 * 1024);
    CHECK(huge != NULL);
    size_t kept = nqi_block_kept_bytes();
    nqi_block_free(huge);
    CHECK(nqi_block_kept_bytes() == kept);
    return 0;
}

/* ---- the arrival queue -------------------------------------------------------- */

struct getter {
    nqi_msgq *q;
    int got;
    int end;
};

static void *get_until_finished(void *arg)
{
    struct getter *g = arg;
    nq_msg *m;
    int rv;
    while ((rv = nqi_msgq_pop(g->q, -1, &m, NULL)) == NQ_OK) {
        g->got += (int)m->len;
        nq_msg_free(m);
    }
    g->end = rv;
    return NULL;
}

static nq_msg *counted_msg(size_t len)
{
    nq_msg *m = nqi_block_calloc(sizeof(*m));
    if (m != NULL) {
        m->len = len; /* no data: the length is the count it stands for */
    }
    return m;
}

/* A sender's oldest messages leave from the middle of the queue; the rest
 * keep their order, and the sender's list and count follow takes and drops. */
static int test_arrival_queue_drops_one_senders_oldest(void)
{
    nqi_msgq q;
    nqi_msgq_init(&q);
    nqi_msgq_peer a = {NULL, NULL, 0}, b = {NULL, NULL, 0};
    nq_id ida = {{1}}, idb = {{2}};
    /* arrival order: a1 b1 a2 b2 a3 (len = sender * 10 + n) */
    const size_t order[] = {11, 21, 12, 22, 13};
    for (size_t i = 0; i < NQI_ARRAY_LEN(order); i++) {
        nq_msg *m = counted_msg(order[i]);
        CHECK(m != NULL);
        m->peer = order[i] < 20 ? ida : idb;
        CHECK(nqi_msgq_push(&q, order[i] < 20 ? &a : &b, m, m) == (long)(order[i] % 10));
    }
    CHECK(nqi_msgq_count(&q, &a) == 3 && nqi_msgq_count(&q, &b) == 2);
    nq_msg *dropped = NULL;
    long left = -1;
    CHECK(nqi_msgq_drop_oldest(&q, &a, 2, &dropped, &left) == 2 && left == 1);
    CHECK(dropped != NULL && dropped->len == 11 && dropped->next != NULL &&
          dropped->next->len == 12 && dropped->next->next == NULL);
    nq_msg_free(dropped->next);
    nq_msg_free(dropped);
    nq_msg *m = NULL;
    CHECK_OK(nqi_msgq_pop_from(&q, &ida, 1, 0, &m, &left)); /* a3, past b1 and b2 */
    CHECK(m->len == 13 && a.first == NULL && a.last == NULL && left == 0);
    nq_msg_free(m);
    CHECK(nqi_msgq_drop_oldest(&q, &a, 1, &dropped, &left) == 0 && dropped == NULL && left == 0);
    CHECK_OK(nqi_msgq_pop(&q, 0, &m, &left));
    CHECK(m->len == 21 && b.first != NULL && b.first->len == 22 && left == 1);
    nq_msg_free(m);
    CHECK(nqi_msgq_drop_oldest(&q, &b, 5, &dropped, &left) == 1 && dropped->len == 22 &&
          left == 0);
    nq_msg_free(dropped);
    CHECK(q.head == NULL && q.tail == NULL && b.first == NULL && b.last == NULL);
    CHECK(nqi_msgq_count(&q, &a) == 0 && nqi_msgq_count(&q, &b) == 0);
    CHECK_RC(nqi_msgq_pop(&q, 0, &m, &left), NQ_ETIMEDOUT);
    /* a sender's list starts again after it emptied */
    nq_msg *x = counted_msg(14);
    CHECK(x != NULL);
    CHECK(nqi_msgq_push(&q, &a, x, x) == 1);
    CHECK(a.first == x && a.last == x && q.head == x);
    nqi_msgq_fini(&q, (void (*)(nq_msg *))nqi_block_free);
    return 0;
}

/* Getters that sleep on the queue are woken for single messages and for
 * chains alike: every message is taken exactly once, none is left behind,
 * and the final error reaches every getter. */
static int test_arrival_queue_wakes_every_sleeping_getter(void)
{
    nqi_msgq q;
    nqi_msgq_init(&q);
    nqi_msgq_peer from = {NULL, NULL, 0};
    enum { GETTERS = 4, SINGLES = 20000, CHAINS = 2000, CHAIN = 5 };
    struct getter g[GETTERS];
    pthread_t t[GETTERS];
    for (int i = 0; i < GETTERS; i++) {
        g[i] = (struct getter){&q, 0, 0};
        CHECK(pthread_create(&t[i], NULL, get_until_finished, &g[i]) == 0);
    }
    for (int i = 0; i < SINGLES; i++) {
        nq_msg *m = counted_msg(1);
        CHECK(m != NULL);
        nqi_msgq_push(&q, &from, m, m);
        if (i % 1000 == 0) {
            nanosleep(&(struct timespec){0, 200000}, NULL); /* let getters sleep */
        }
    }
    for (int i = 0; i < CHAINS; i++) {
        nq_msg *first = NULL, *last = NULL;
        for (int k = 0; k < CHAIN; k++) {
            nq_msg *m = counted_msg(1);
            CHECK(m != NULL);
            if (last != NULL) {
                last->next = m;
            } else {
                first = m;
            }
            last = m;
        }
        nqi_msgq_push(&q, &from, first, last);
    }
    /* Everything is taken while the queue is still open (a lost wake-up
     * would leave messages behind sleeping getters). */
    int empty = 0;
    for (int spins = 0; spins < 10000 && !empty; spins++) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        pthread_mutex_lock(&q.mu);
        empty = q.head == NULL;
        pthread_mutex_unlock(&q.mu);
    }
    CHECK(empty);
    nqi_msgq_finish(&q, NQ_ECLOSED);
    int got = 0;
    for (int i = 0; i < GETTERS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_RC(g[i].end, NQ_ECLOSED);
        got += g[i].got;
    }
    CHECK(got == SINGLES + CHAINS * CHAIN);
    nq_msg *m;
    CHECK_RC(nqi_msgq_pop(&q, 0, &m, NULL), NQ_ECLOSED);
    nqi_msgq_fini(&q, nq_msg_free);
    return 0;
}

struct sleeper {
    nq_future *f;
    int result;
    atomic_int back; /* nq_future_wait returned */
};

static void *wait_long(void *arg)
{
    struct sleeper *w = arg;
    w->result = nq_future_wait(w->f, 20000);
    atomic_store(&w->back, 1);
    return NULL;
}

/* On a thread that holds wake-ups (an I/O thread in its round), a future
 * completes at once (its result reads at once), but a waiter already asleep
 * is woken only when the thread releases them, and then is. */
static int test_held_wake_ups_wait_for_their_release(void)
{
    struct sleeper w = {nqi_future_new(1), 0, 0};
    CHECK(w.f != NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_long, &w) == 0);
    nanosleep(&(struct timespec){0, 100 * 1000000}, NULL); /* let it sleep */
    nqi_future_hold_wakes(1);
    nqi_future_part_done(w.f, NQ_OK);
    CHECK_OK(nq_future_result(w.f));
    nanosleep(&(struct timespec){0, 200 * 1000000}, NULL);
    CHECK(!atomic_load(&w.back));
    nqi_future_release_wakes();
    for (int ms = 0; ms < 10000 && !atomic_load(&w.back); ms++) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK(atomic_load(&w.back));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_OK(w.result);
    nqi_future_hold_wakes(0);
    nq_future_free(w.f);
    return 0;
}

/* A pinned frame's future waits for the last pin, errors included. */
static int test_pinned_frame_defers_its_future(void)
{
    static const uint8_t payload[4] = {1, 2, 3, 4};
    nq_chunk ch = {payload, sizeof(payload)};
    nqi_frame *f = nqi_frame_new(&ch, 1, 0);
    CHECK(f != NULL);
    f->future = nqi_future_new(2); /* two peers share the frame */
    CHECK(f->future != NULL);
    nq_future *fut = f->future;
    int seen = 99;
    CHECK_OK(nq_future_on_done(fut, record, &seen));
    nqi_frame_ref(f);  /* the second peer's reference */
    nqi_frame_pin(f);  /* two slices still read it */
    nqi_frame_pin(f);
    nqi_frame_done(f, NQ_OK);
    nqi_frame_done(f, NQ_ECONNRESET);
    CHECK_RC(nq_future_result(fut), NQ_EPENDING);
    nqi_frame_unpin(f);
    CHECK_RC(nq_future_result(fut), NQ_EPENDING);
    CHECK(seen == 99);
    nqi_frame_unpin(f); /* the last pin: both parts finish, the frame goes */
    CHECK_RC(nq_future_wait(fut, 0), NQ_ECONNRESET);
    CHECK(seen == NQ_ECONNRESET);
    nq_future_free(fut);

    /* Released before the peer finishes: nothing is deferred. */
    f = nqi_frame_new(&ch, 1, 0);
    CHECK(f != NULL);
    f->future = fut = nqi_future_new(1);
    nqi_frame_pin(f);
    nqi_frame_unpin(f);
    CHECK_RC(nq_future_result(fut), NQ_EPENDING);
    nqi_frame_done(f, NQ_OK);
    CHECK_RC(nq_future_wait(fut, 0), NQ_OK);
    nq_future_free(fut);
    return 0;
}

struct unpinner {
    nqi_frame *frame;
    int pins;
};

static void *unpin_all(void *arg)
{
    struct unpinner *u = arg;
    for (int i = 0; i < u->pins; i++) {
        nqi_frame_unpin(u->frame);
    }
    return NULL;
}

/* Unpins on another thread race the peers' completions: every future
 * completes exactly once, and only after its frame's last pin. */
static int test_pins_released_on_another_thread(void)
{
    static const uint8_t payload[64];
    nq_chunk ch = {payload, sizeof(payload)};
    for (int round = 0; round < 2000; round++) {
        nqi_frame *f = nqi_frame_new(&ch, 1, 0);
        CHECK(f != NULL);
        nq_future *fut = f->future = nqi_future_new(3);
        CHECK(fut != NULL);
        nqi_frame_ref(f);
        nqi_frame_ref(f);
        struct unpinner u = {f, 1 + round % 3};
        for (int i = 0; i < u.pins; i++) {
            nqi_frame_pin(f);
        }
        pthread_t t;
        CHECK(pthread_create(&t, NULL, unpin_all, &u) == 0);
        nqi_frame_done(f, NQ_OK);
        nqi_frame_done(f, NQ_OK);
        nqi_frame_done(f, round % 2 ? NQ_OK : NQ_ECLOSED);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK_RC(nq_future_wait(fut, 0), round % 2 ? NQ_OK : NQ_ECLOSED);
        nq_future_free(fut);
    }
    return 0;
}

/* ---- options and identities ---------------------------------------------------- */

static int test_options_validate_ranges(void)
{
    nq_opts *o = NULL;
    CHECK_OK(nq_opts_new(&o));
    int64_t v;
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_PROTOCOL_SIZE, &v));
    CHECK(v == 4194304);
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_QUEUE_SIZE, &v));
    CHECK(v == INT64_C(1) << 30);
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_MESSAGE_SIZE, &v));
    CHECK(v == INT64_C(1) << 40);
    CHECK_OK(nq_opts_get_int(o, NQ_OPT_EFFICIENT_SIZE, &v));
    CHECK(v == 65536);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_PROTOCOL_SIZE, 100), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_WORKERS, 0), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_WORKERS, 65), NQ_EINVAL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_WORKERS, 4));
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_GET_MERGE, 2), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, 5), NQ_EINVAL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, 0));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, -1));
    CHECK_RC(nq_opts_set_int(o, NQ_OPT_CLOSE_TIMEOUT_MS, -2), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, (nq_option)0, 1), NQ_EINVAL);
    CHECK_RC(nq_opts_set_int(o, (nq_option)999, 1), NQ_EINVAL);
    CHECK_RC(nq_opts_set_netloc(o, "", 1), NQ_EINVAL);
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = 0;
    CHECK_RC(nq_opts_set_netloc(o, longhost, 1), NQ_EINVAL);
    CHECK_RC(nq_opts_set_tls(o, "", NULL), NQ_EINVAL);
    CHECK_RC(nq_opts_set_serializer(o, NULL, NULL, NULL), NQ_EINVAL);
    nq_opts_free(o);
    return 0;
}

static int test_ids_parse_and_format(void)
{
    nq_id id;
    CHECK_OK(nq_id_parse("8f02c060-b59c-4520-9795-369445186a49", &id));
    CHECK(id.bytes[0] == 0x8f && id.bytes[15] == 0x49);
    char text[NQ_ID_STRLEN];
    CHECK_OK(nq_id_format(&id, text, sizeof(text)));
    CHECK(strcmp(text, "8f02c060-b59c-4520-9795-369445186a49") == 0);
    nq_id same;
    CHECK_OK(nq_id_parse("8F02C060B59C45209795369445186A49", &same));
    CHECK(nq_id_equal(&id, &same));
    CHECK_RC(nq_id_parse("8f02c060-b59c-4520-9795-369445186a4", &id), NQ_EINVAL);
    CHECK_RC(nq_id_parse("8f02c060+b59c-4520-9795-369445186a49", &id), NQ_EINVAL);
    CHECK_RC(nq_id_parse("zz02c060-b59c-4520-9795-369445186a49", &id), NQ_EINVAL);
    CHECK_RC(nq_id_format(&id, text, 36), NQ_EINVAL);
    nq_id r1, r2;
    CHECK_OK(nq_id_random(&r1));
    CHECK_OK(nq_id_random(&r2));
    CHECK(!nq_id_equal(&r1, &r2));
    CHECK((r1.bytes[6] >> 4) == 4 && (r1.bytes[8] & 0xc0) == 0x80);
    return 0;
}

static int test_errors_have_texts_and_version_matches(void)
{
    for (int e = NQ_OK; e >= NQ_EAUTH; e--) {
        CHECK(strcmp(nq_strerror(e), "unknown error") != 0);
    }
    CHECK(strcmp(nq_strerror(-999), "unknown error") == 0);
    CHECK(nq_version_number() == NQ_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", NQ_VERSION_MAJOR, NQ_VERSION_MINOR,
             NQ_VERSION_PATCH);
    CHECK(strcmp(nq_version(), want) == 0);
    return 0;
}

/* NQ_OPT_PUT_MERGE and NQ_OPT_EFFICIENT_SIZE bound what a transport copies
 * to coalesce frames, and TCP's gathering follows that bound. */
static int test_merge_options_bound_what_is_gathered(void)
{
    nq_opts *o = NULL;
    CHECK_OK(nq_opts_new(&o));
    CHECK(nqi_opts_merge_limit(o, 256) == 256);       /* default 65536: the cap */
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_EFFICIENT_SIZE, 100));
    CHECK(nqi_opts_merge_limit(o, 256) == 99);        /* shorter than 100 */
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_EFFICIENT_SIZE, 1));
    CHECK(nqi_opts_merge_limit(o, 256) == 0);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_EFFICIENT_SIZE, 65536));
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_PUT_MERGE, 0));
    CHECK(nqi_opts_merge_limit(o, 256) == 0);
    nq_opts_free(o);

    /* Ten frames: an 8-byte header and a 50-byte payload each. */
    static uint8_t bytes[10][58];
    struct iovec in[20];
    for (int i = 0; i < 10; i++) {
        memset(bytes[i], 'a' + i, sizeof(bytes[i]));
        in[2 * i] = (struct iovec){bytes[i], 8};
        in[2 * i + 1] = (struct iovec){bytes[i] + 8, 50};
    }
    uint8_t stage[4096];
    struct iovec out[20];
    int n;
    CHECK(nqi_tcp_gather(in, 20, out, 20, stage, sizeof(stage), 256, &n) == 580);
    CHECK(n == 1 && out[0].iov_base == stage && out[0].iov_len == 580);
    CHECK(memcmp(stage, bytes[0], 58) == 0 && memcmp(stage + 522, bytes[9], 58) == 0);
    /* A limit between the two sizes copies only the headers: runs break. */
    CHECK(nqi_tcp_gather(in, 20, out, 20, stage, sizeof(stage), 49, &n) == 580);
    CHECK(n == 20 && out[1].iov_base == bytes[0] + 8);
    /* Merging off: the pieces go as they are, at most max_out of them. */
    CHECK(nqi_tcp_gather(in, 20, out, 7, stage, sizeof(stage), 0, &n) == 4 * 8 + 3 * 50);
    CHECK(n == 7 && out[6].iov_base == in[6].iov_base);
    /* A full stage ends the run. */
    CHECK(nqi_tcp_gather(in, 20, out, 20, stage, 100, 256, &n) == 58 + 8);
    CHECK(n == 1);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_header_is_big_endian_u64),
    TEST(test_parser_splits_frames_at_any_boundary),
    TEST(test_parser_rejects_length_over_limit),
    TEST(test_parser_takes_control_frames_only_when_agreed),
    TEST(test_parser_allocation_grows_with_arrivals),
    TEST(test_parser_allocates_a_medium_payload_once),
    TEST(test_parser_window_reads_straight_into_message),
    TEST(test_parser_stops_when_callback_fails),
    TEST(test_mpsc_keeps_each_producers_order),
    TEST(test_mpsc_is_empty_only_with_nothing_on_its_way),
    TEST(test_blocks_keep_contents_through_realloc),
    TEST(test_blocks_move_between_threads),
    TEST(test_future_completes_after_every_part),
    TEST(test_future_callback_on_completed_future_runs_at_once),
    TEST(test_future_waiters_and_racing_callback),
    TEST(test_arrival_queue_drops_one_senders_oldest),
    TEST(test_arrival_queue_wakes_every_sleeping_getter),
    TEST(test_large_blocks_are_reused_within_a_bound),
    TEST(test_held_wake_ups_wait_for_their_release),
    TEST(test_pinned_frame_defers_its_future),
    TEST(test_pins_released_on_another_thread),
    TEST(test_options_validate_ranges),
    TEST(test_merge_options_bound_what_is_gathered),
    TEST(test_ids_parse_and_format),
    TEST(test_errors_have_texts_and_version_matches),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
