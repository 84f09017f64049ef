/*
 * A fuzz target for the frame parser (core/framer.c).
 *
 * Input layout:
 *   byte 0        low 4 bits: the schedule has (value + 1) bytes;
 *                 high 4 bits: the frame callback asks the parser to stop
 *                 at that frame (0: never).
 *   schedule      one byte per step, reused cyclically: bit 7 asks for the
 *                 window/commit path (used when the parser is inside a
 *                 payload), bits 0-6 give the step size (0: all the rest).
 *   stream        everything after the schedule: the bytes a peer sent.
 *
 * The target computes from the stream alone which frames and which protocol
 * error the parser must report, and at which stream offset each becomes
 * due, then checks that every step of the parser reports exactly those, with
 * exact lengths and contents, and that the payload buffer never grows beyond
 * what the bytes already received justify.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/framer.h"
#include "core/pool.h"
#include "nq/nq.h"

/* Small enough that lengths just above it are reachable by the fuzzer. */
#define MAX_MESSAGE ((uint64_t)1 << 20)

/* framer.h promises the buffer never exceeds eight times the received
 * bytes, beyond its first allocation. */
#define FIRST_ALLOC_BOUND (4 * 1024 * 1024)

/* What the frame callback returns to stop the parser. */
#define STOP_VALUE 1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Something the parser must report, due once `due` stream bytes are in. */
typedef struct event {
    size_t due;
    int is_error;      /* a length over MAX_MESSAGE */
    size_t payload;    /* stream offset of the payload */
    size_t len;
} event;

typedef struct run {
    const uint8_t *stream;
    size_t stream_len;
    event *events;
    size_t nevents;
    size_t next;           /* index of the next event to be reported */
    size_t step_end;       /* stream bytes handed over once this step ends */
    size_t frames;         /* frames delivered so far */
    size_t stop_at;        /* frame number whose callback returns STOP_VALUE */
    uint64_t delivered;    /* header plus payload bytes of delivered frames */
} run;

static void fail(const char *what, int line)
{
    fprintf(stderr, "fuzz_framer: invariant broken (line %d): %s\n", line, what);
    abort();
}

#define CHECK(cond)                  \
    do {                             \
        if (!(cond)) {               \
            fail(#cond, __LINE__);   \
        }                            \
    } while (0)

/* Cuts the stream the way a correct parser must, independently of it. */
static size_t expected_events(const uint8_t *s, size_t n, event *out)
{
    size_t count = 0;
    size_t at = 0;
    while (n - at >= NQI_HEADER_SIZE) {
        uint64_t len = nqi_frame_length(s + at);
        uint8_t again[NQI_HEADER_SIZE];
        nqi_frame_header(again, len);
        CHECK(memcmp(again, s + at, NQI_HEADER_SIZE) == 0);
        if (len > MAX_MESSAGE) {
            out[count++] = (event){.due = at + NQI_HEADER_SIZE, .is_error = 1};
            break;
        }
        if (n - at - NQI_HEADER_SIZE < len) {
            break;
        }
        size_t payload = at + NQI_HEADER_SIZE;
        at = payload + (size_t)len;
        out[count++] = (event){.due = at, .payload = payload, .len = (size_t)len};
    }
    return count;
}

static int on_frame(void *ctx, uint8_t *data, size_t len)
{
    run *r = ctx;
    CHECK(r->next < r->nevents);
    const event *e = &r->events[r->next];
    CHECK(!e->is_error);
    CHECK(e->due <= r->step_end);
    CHECK(len == e->len);
    CHECK((data == NULL) == (len == 0));
    CHECK(len == 0 || memcmp(data, r->stream + e->payload, len) == 0);
    nqi_block_free(data);
    r->next++;
    r->frames++;
    r->delivered += NQI_HEADER_SIZE + (uint64_t)len;
    CHECK(r->delivered <= r->step_end);
    return r->frames == r->stop_at ? STOP_VALUE : 0;
}

/* Checks the parser's state between steps against the model. */
static void check_between_steps(const nqi_parser *p, const run *r, size_t pos)
{
    size_t boundary = r->next == 0 ? 0 : r->events[r->next - 1].due;
    CHECK(nqi_parser_idle(p) == (pos == boundary));
    CHECK(r->delivered <= pos);
    CHECK(p->have <= p->cap);
    if (p->in_payload) {
        CHECK(p->cap <= p->need);
        CHECK(p->have < p->need);
        CHECK(p->cap <= FIRST_ALLOC_BOUND || p->cap <= 8 * p->have);
        CHECK(pos - boundary == NQI_HEADER_SIZE + p->have);
    } else {
        CHECK(p->buf == NULL);
        CHECK(pos - boundary == p->header_have);
    }
}

/* Hands the parser up to `want` bytes at pos through window/commit when the
 * parser offers a window, else through feed.  Sets *took to the count. */
static int step(nqi_parser *p, run *r, size_t pos, size_t want, int use_window, size_t *took)
{
    if (use_window) {
        uint8_t *win;
        size_t winlen;
        int rv = nqi_parser_window(p, &win, &winlen);
        if (rv < 0) {
            return rv;
        }
        if (rv == 1) {
            CHECK(winlen > 0);
            CHECK(winlen <= p->need - p->have);
            if (want > winlen) {
                want = winlen;
            }
            memcpy(win, r->stream + pos, want);
            *took = want;
            r->step_end = pos + want;
            return nqi_parser_commit(p, want, on_frame, r);
        }
        CHECK(rv == 0);
    }
    *took = want;
    r->step_end = pos + want;
    return nqi_parser_feed(p, r->stream + pos, want, on_frame, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t nsched = (size_t)(data[0] & 0x0f) + 1;
    if (size - 1 < nsched) {
        return 0;
    }
    const uint8_t *sched = data + 1;

    run r = {0};
    r.stop_at = data[0] >> 4;
    r.stream = data + 1 + nsched;
    r.stream_len = size - 1 - nsched;
    r.events = malloc((r.stream_len / NQI_HEADER_SIZE + 1) * sizeof(*r.events));
    if (r.events == NULL) {
        return 0;
    }
    r.nevents = expected_events(r.stream, r.stream_len, r.events);

    nqi_parser p;
    nqi_parser_init(&p, MAX_MESSAGE);
    size_t pos = 0;
    for (size_t i = 0; pos < r.stream_len; i++) {
        uint8_t s = sched[i % nsched];
        size_t want = s & 0x7f;
        if (want == 0 || want > r.stream_len - pos) {
            want = r.stream_len - pos;
        }
        size_t took = 0;
        int rv = step(&p, &r, pos, want, (s & 0x80) != 0, &took);
        CHECK(took > 0);
        if (rv == NQ_ENOMEM) {
            break;
        }
        if (rv == STOP_VALUE) {
            CHECK(r.frames == r.stop_at);
            break;
        }
        if (rv == NQ_EPROTO) {
            CHECK(r.next < r.nevents);
            CHECK(r.events[r.next].is_error);
            CHECK(r.events[r.next].due > pos && r.events[r.next].due <= pos + took);
            break;
        }
        CHECK(rv == 0);
        pos += took;
        CHECK(r.next == r.nevents || r.events[r.next].due > pos);
        check_between_steps(&p, &r, pos);
    }
    nqi_parser_fini(&p);
    CHECK(nqi_parser_idle(&p));
    free(r.events);
    return 0;
}
