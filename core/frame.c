/*
 * Frames: one message on its way out, shared (reference counted) by every
 * peer it goes to.  A put's chunks are either referenced (zero-copy, the
 * put's future waits for every copy) or copied into the frame's own block.
 * Any thread may drop a reference or a pin; the last one frees the frame.
 */
#include <stdlib.h>
#include <string.h>

#include "core/frame.h"

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
    f->send.embedded = 1;
    return f;
}

nqi_frame *nqi_frame_new(const nq_chunk *chunks, size_t n, int copy)
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
    f->kind = NQI_FRAME_DATA;
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

nqi_frame *nqi_frame_adopt(void *data, size_t len)
{
    nqi_frame *f = frame_alloc(1, 0);
    if (f == NULL) {
        return NULL;
    }
    f->kind = NQI_FRAME_DATA;
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

nqi_frame *nqi_frame_control(int type, const uint8_t *payload, size_t len)
{
    nqi_frame *f = frame_alloc(1, len);
    if (f == NULL) {
        return NULL;
    }
    uint8_t *copy = inline_payload(f);
    if (len > 0) {
        memcpy(copy, payload, len);
    }
    f->kind = NQI_FRAME_CONTROL;
    f->payload_len = len;
    nqi_control_header(f->header, type, len);
    f->inline_chunks[0].data = copy;
    f->inline_chunks[0].len = len;
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
    if (f->owned_len > 0 && f->send_bytes != NULL) {
        atomic_fetch_sub(f->send_bytes, (long long)f->owned_len);
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
