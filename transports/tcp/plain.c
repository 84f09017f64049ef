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
/* Pieces read from the session per write, and how they are gathered:
 * pieces up to GATHER_PIECE bytes (less when NQ_OPT_EFFICIENT_SIZE says so,
 * none when NQ_OPT_PUT_MERGE is 0) are copied into a stage of GATHER_STAGE
 * bytes. */
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

size_t nqi_tcp_gather(const struct iovec *in, int n, struct iovec *out, int max_out,
                      uint8_t *stage, size_t stage_cap, size_t piece_max, int *nout)
{
    int m = 0;
    int staging = 0; /* out[m - 1] is a run in stage ending at used */
    size_t used = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        size_t len = in[i].iov_len;
        if (len <= piece_max && stage != NULL) {
            if (used + len > stage_cap || (!staging && m == max_out)) {
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
            if (m == max_out) {
                break;
            }
            out[m++] = in[i];
            staging = 0;
        }
        bytes += len;
    }
    *nout = m;
    return bytes;
}

static long plain_write(tcp_conn *t, const struct iovec *pieces, int n, size_t total)
{
    (void)total;
    tcp_worker *tw = tcp_worker_of(t->s->worker);
    if (tw->send_stage == NULL) {
        tw->send_stage = malloc(GATHER_STAGE); /* none: pieces go out as they are */
    }
    struct iovec iov[MAX_IOV];
    int niov;
    size_t piece_max = nqi_opts_merge_limit(&t->s->comm->opts, GATHER_PIECE);
    size_t bytes = nqi_tcp_gather(pieces, n, iov, MAX_IOV, tw->send_stage, GATHER_STAGE,
                                  piece_max, &niov);
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)niov;
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
    .held_max = 0,
    .read = plain_read,
    .write = plain_write,
    .handshake = plain_handshake,
    .wants = plain_wants,
    .release = plain_release,
};
