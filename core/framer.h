/*
 * The frame codec: net-queue's framing is an 8-byte big-endian payload
 * length followed by the payload.  This unit does no I/O; transports feed it
 * bytes and it hands out complete frames.
 */
#ifndef NQ_CORE_FRAMER_H
#define NQ_CORE_FRAMER_H

#include <stddef.h>
#include <stdint.h>

#define NQI_HEADER_SIZE 8

/* Writes the header for a payload of len bytes. */
void nqi_frame_header(uint8_t out[NQI_HEADER_SIZE], uint64_t len);

/* Reads a header. */
uint64_t nqi_frame_length(const uint8_t in[NQI_HEADER_SIZE]);

/* Acknowledged delivery's control frames (core/ack.c), sent only to a peer
 * that agreed to them: the header's top bit (a length no net-queue frame
 * can have) marks them, its second byte is the type and its low 16 bits
 * the payload's length, at most NQI_CONTROL_MAX. */
#define NQI_CONTROL_MAX 64
void nqi_control_header(uint8_t out[NQI_HEADER_SIZE], int type, size_t len);

/* Called for each complete frame.  data is a malloc'd buffer of len bytes
 * that the callee now owns (NULL when len is 0).  Returning non-zero stops
 * the parser, which returns that value; the frame is owned by the callee
 * either way. */
typedef int (*nqi_frame_fn)(void *ctx, uint8_t *data, size_t len);

/*
 * An incremental parser.  The payload buffer of a frame grows as its bytes
 * arrive (never more than eight times what has arrived, beyond a first
 * allocation of at most 4 MiB of address space that the kernel backs only
 * as bytes are written), so a hostile length costs little until the bytes
 * are really sent.
 */
typedef struct nqi_parser {
    uint8_t header[NQI_HEADER_SIZE];
    size_t header_have;
    int in_payload;      /* 1 once the header is complete              */
    uint64_t need;       /* payload length of the current frame          */
    uint8_t *buf;        /* payload bytes received so far                */
    size_t have;
    size_t cap;
    uint64_t max_message;
    int control_ok;      /* control frames may come (the peer agreed)    */
    int control;         /* the frame being read: its control type, or 0 */
} nqi_parser;

/* Prepares a parser that rejects payloads longer than max_message. */
void nqi_parser_init(nqi_parser *p, uint64_t max_message);

/* Frees any partial frame. */
void nqi_parser_fini(nqi_parser *p);

/* Feeds len bytes.  Calls fn for every frame they complete.  Returns 0,
 * NQ_EPROTO (a length over max_message), NQ_ENOMEM, or what fn returned. */
int nqi_parser_feed(nqi_parser *p, const uint8_t *data, size_t len, nqi_frame_fn fn, void *ctx);

/* When the parser is inside a payload, gives the free space of its buffer so
 * a transport can read straight into it (growing it first if it is full),
 * and returns 1; else returns 0 (read into a staging buffer and use feed).
 * Returns NQ_ENOMEM if growing fails. */
int nqi_parser_window(nqi_parser *p, uint8_t **ptr, size_t *len);

/* Accounts for n bytes written into the window; completes the frame (calling
 * fn) when it is full.  Returns as nqi_parser_feed. */
int nqi_parser_commit(nqi_parser *p, size_t n, nqi_frame_fn fn, void *ctx);

/* 1 when no partial frame is held. */
int nqi_parser_idle(const nqi_parser *p);

#endif
