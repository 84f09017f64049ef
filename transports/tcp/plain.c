/*
 * The stream operations of a plain TCP socket: read(2), and sendmsg(2) of
 * many frames at once, with runs of small frames gathered into one buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

/* Pieces one sendmsg takes. */
#define MAX_IOV 256
/* Pieces read from the session per write, and how they are gathered. */
#define GATHER_IOV 1024
#define GATHER_PIECE 256
#define GATHER_STAGE (64 * 1024)

static long plain_read(tcp_conn *t, uint8_t *buf, size_t len)
{
    ssize_t n = read(t->watch.fd, buf, len);
    if (n >= 0) {
        return (long)n;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? NQI_WOULDBLOCK
                                                                       : NQ_ECONNRESET;
}

/* The kernel copies each piece of a vectored write on its own, which for
 * frames of a few bytes costs more than the bytes.  gather() rewrites the
 * pieces in[0..n) as out[] (at most MAX_IOV), copying each piece of at most
 * GATHER_PIECE bytes into stage, so that runs of small frames go out as one
 * piece.  The pieces out[] covers are a prefix of in[]'s, in order; returns
 * their count and *total their bytes. */
static int gather(const struct iovec *in, int n, struct iovec *out, uint8_t *stage,
                  size_t *total)
{
    int m = 0;
    int staging = 0; /* out[m - 1] is a run in stage ending at used */
    size_t used = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t len = in[i].iov_len;
        if (len <= GATHER_PIECE && stage != NULL) {
            if (used + len > GATHER_STAGE || (!staging && m == MAX_IOV)) {
                break;
            }
            memcpy(stage + used, in[i].iov_base, len);
            if (staging) {
                out[m - 1].iov_len += len;
            } else {
                out[m].iov_base = stage + used;
                out[m].iov_len = len;
                m++;
                staging = 1;
            }
            used += len;
        } else {
            if (m == MAX_IOV) {
                break;
            }
            out[m++] = in[i];
            staging = 0;
        }
        bytes += len;
    }
    *total = bytes;
    return m;
}

static long plain_write(tcp_conn *t, const struct iovec *pieces, int n, size_t total)
{
    (void)total;
    tcp_worker *tw = tcp_worker_of(t->s->worker);
    if (tw->send_stage == NULL) {
        tw->send_stage = malloc(GATHER_STAGE); /* none: pieces go out as they are */
    }
    struct iovec iov[MAX_IOV];
    size_t bytes;
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)gather(pieces, n, iov, tw->send_stage, &bytes);
    ssize_t w;
    do {
        w = sendmsg(t->watch.fd, &mh, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? NQI_WOULDBLOCK : NQ_ECONNRESET;
    }
    if ((size_t)w < bytes) {
        t->want_write = 1;
    }
    return (long)w;
}

static int plain_handshake(tcp_conn *t)
{
    (void)t;
    return 1;
}

static uint32_t plain_wants(const tcp_conn *t)
{
    (void)t;
    return 0;
}

static void plain_release(tcp_conn *t)
{
    (void)t;
}

const nqi_stream_ops nqi_plain_ops = {
    .max_pieces = GATHER_IOV,
    .holds_input = 0,
    .read = plain_read,
    .write = plain_write,
    .handshake = plain_handshake,
    .wants = plain_wants,
    .release = plain_release,
};
