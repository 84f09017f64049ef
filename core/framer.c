/*
 * The frame parser (see framer.h): a pure unit, no I/O.  A parser belongs
 * to one session and is only touched on that session's loop.
 */
#include "core/framer.h"
#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

#include "nq/nq.h"

/* The first allocation for a payload that spans reads: the whole payload up
 * to FIRST_ALLOC, so that messages up to that size are read in place with
 * no move.  Beyond it each allocation is GROWTH times the last, bounded by
 * the length the header claims: a header alone commits at most FIRST_ALLOC
 * of address space (pages the kernel hands out only as bytes arrive), and a
 * payload never holds more than GROWTH times the bytes that came. */
#define FIRST_ALLOC (4 * 1024 * 1024)
#define GROWTH 8

void nqi_frame_header(uint8_t out[NQI_HEADER_SIZE], uint64_t len)
{
    for (int i = NQI_HEADER_SIZE - 1; i >= 0; i--) {
        out[i] = (uint8_t)(len & 0xff);
        len >>= 8;
    }
}

uint64_t nqi_frame_length(const uint8_t in[NQI_HEADER_SIZE])
{
    uint64_t len = 0;
    for (int i = 0; i < NQI_HEADER_SIZE; i++) {
        len = (len << 8) | in[i];
    }
    return len;
}

void nqi_control_header(uint8_t out[NQI_HEADER_SIZE], int type, size_t len)
{
    nqi_frame_header(out, (UINT64_C(1) << 63) | ((uint64_t)(type & 0xff) << 48) | (len & 0xffff));
}

void nqi_parser_init(nqi_parser *p, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
}

void nqi_parser_fini(nqi_parser *p)
{
    nqi_block_free(p->buf);
    p->buf = NULL;
    p->have = p->cap = 0;
    p->header_have = 0;
    p->in_payload = 0;
}

int nqi_parser_idle(const nqi_parser *p)
{
    return p->header_have == 0 && !p->in_payload;
}

/* Hands the finished payload to fn and resets for the next header. */
static int deliver(nqi_parser *p, nqi_frame_fn fn, void *ctx)
{
    uint8_t *data = p->buf;
    size_t len = p->have;
    p->buf = NULL;
    p->have = p->cap = 0;
    p->in_payload = 0;
    p->header_have = 0;
    return fn(ctx, data, len);
}

/* Ensures the payload buffer has free space, growing it within bounds. */
static int grow(nqi_parser *p)
{
    if (p->have < p->cap) {
        return 0;
    }
    uint64_t want = p->cap == 0 ? FIRST_ALLOC : (uint64_t)p->cap * GROWTH;
    if (want > p->need) {
        want = p->need;
    }
    if (want > SIZE_MAX) {
        return NQ_ENOMEM;
    }
    uint8_t *nb = nqi_block_realloc(p->buf, (size_t)want);
    if (nb == NULL) {
        return NQ_ENOMEM;
    }
    p->buf = nb;
    p->cap = (size_t)want;
    return 0;
}

/* Called when the header is complete. */
static int start_payload(nqi_parser *p, nqi_frame_fn fn, void *ctx)
{
    uint64_t raw = nqi_frame_length(p->header);
    p->control = 0;
    if (p->control_ok && (raw >> 63) != 0) {
        p->control = (int)((raw >> 48) & 0xff);
        p->need = raw & 0xffff;
        if (p->control == 0 || p->need > NQI_CONTROL_MAX ||
            (raw & UINT64_C(0x7f00ffffffff0000)) != 0) {
            return NQ_EPROTO;
        }
    } else {
        p->need = raw;
        if (p->need > p->max_message || p->need > (uint64_t)(SIZE_MAX / 2)) {
            return NQ_EPROTO;
        }
    }
    p->in_payload = 1;
    p->have = 0;
    if (p->need == 0) {
        return deliver(p, fn, ctx);
    }
    return 0;
}

int nqi_parser_feed(nqi_parser *p, const uint8_t *data, size_t len, nqi_frame_fn fn, void *ctx)
{
    int rv;
    while (len > 0) {
        if (!p->in_payload) {
            size_t take = NQI_HEADER_SIZE - p->header_have;
            if (take > len) {
                take = len;
            }
            memcpy(p->header + p->header_have, data, take);
            p->header_have += take;
            data += take;
            len -= take;
            if (p->header_have == NQI_HEADER_SIZE && (rv = start_payload(p, fn, ctx)) != 0) {
                return rv;
            }
            continue;
        }
        /* Small frames wholly inside this feed get one exact allocation. */
        if (p->have == 0 && p->need <= len) {
            size_t n = (size_t)p->need;
            uint8_t *b = nqi_block_alloc(n);
            if (b == NULL) {
                return NQ_ENOMEM;
            }
            memcpy(b, data, n);
            nqi_block_free(p->buf);
            p->buf = b;
            p->have = p->cap = n;
            data += n;
            len -= n;
            if ((rv = deliver(p, fn, ctx)) != 0) {
                return rv;
            }
            continue;
        }
        if ((rv = grow(p)) != 0) {
            return rv;
        }
        size_t take = p->cap - p->have;
        if (take > len) {
            take = len;
        }
        memcpy(p->buf + p->have, data, take);
        p->have += take;
        data += take;
        len -= take;
        if (p->have == p->need && (rv = deliver(p, fn, ctx)) != 0) {
            return rv;
        }
    }
    return 0;
}

int nqi_parser_window(nqi_parser *p, uint8_t **ptr, size_t *len)
{
    if (!p->in_payload) {
        return 0;
    }
    int rv = grow(p);
    if (rv != 0) {
        return rv;
    }
    *ptr = p->buf + p->have;
    *len = p->cap - p->have;
    return 1;
}

int nqi_parser_commit(nqi_parser *p, size_t n, nqi_frame_fn fn, void *ctx)
{
    p->have += n;
    if (p->have == p->need) {
        return deliver(p, fn, ctx);
    }
    return 0;
}
