/*
 * Hostile and heavy traffic over TCP: each case is a defect the trials
 * found (issue "Hostile and heavy traffic"), proved fixed.  The peers speak
 * the wire by hand where a well-behaved libnq peer would not misbehave.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "peers.h"
#include "nq/nq.h"

#define WAIT_MS NQT_WAIT_MS

static nq_comm *server_with(int64_t queue_size, int64_t keepalive_ms)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    if (queue_size > 0 && nq_opts_set_int(o, NQ_OPT_QUEUE_SIZE, queue_size) != NQ_OK) {
        abort();
    }
    if (keepalive_ms >= 0 && nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, keepalive_ms) != NQ_OK) {
        abort();
    }
    return nqt_open(NQ_TCP, NQ_SERVER, o);
}

/* Writes zeros until the peer stops taking them (an error) or max bytes
 * went; returns the bytes written. */
static size_t write_until_refused(int fd, size_t max)
{
    static uint8_t zeros[64 * 1024];
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    size_t sent = 0;
    while (sent < max) {
        ssize_t n = send(fd, zeros, sizeof(zeros), MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += (size_t)n;
    }
    return sent;
}

/* CPU seconds this process has used. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- strangers ------------------------------------------------------------------ */

/* A connection that has not introduced itself may announce no frame but
 * its 16-byte INI: a 1 GiB header (within message_size) is refused the
 * moment it is read, so the stranger cannot make the server hold what it
 * streams after it. */
static int test_long_first_frame_is_refused_at_its_header(void)
{
    nq_comm *s = server_with(0, -1);
    CHECK(s != NULL);
    int fd = nqt_raw_connect(nqt_port(s));
    uint8_t header[8];
    nqt_put_header(header, UINT64_C(1) << 30);
    CHECK(write(fd, header, sizeof(header)) == (ssize_t)sizeof(header));
    size_t taken = write_until_refused(fd, (size_t)256 << 20);
    CHECK(nqt_wait_stat(s, NQ_STAT_PROTOCOL_ERRORS, 1) == 0);
    /* Socket buffers hold a few MiB; the server read none of it. */
    CHECK(taken < (size_t)32 << 20);
    CHECK(nqt_stat(s, NQ_STAT_HANDSHAKE_TIMEOUTS) == 0);
    close(fd);
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

/* The same holds for a client facing a server that has not sent its INI. */
static int test_client_refuses_a_long_first_frame_from_its_server(void)
{
    uint16_t port;
    int lfd = nqt_raw_listen(&port);
    nq_comm *c = nqt_open(NQ_TCP, NQ_CLIENT, nqt_opts("127.0.0.1", port, NULL));
    CHECK(c != NULL);
    int fd = nqt_raw_accept(lfd);
    CHECK(fd >= 0);
    uint8_t ini[24];
    CHECK(nqt_raw_read_all(fd, ini, sizeof(ini), WAIT_MS) == (ssize_t)sizeof(ini));
    uint8_t header[8];
    nqt_put_header(header, UINT64_C(1) << 30);
    CHECK(write(fd, header, sizeof(header)) == (ssize_t)sizeof(header));
    size_t taken = write_until_refused(fd, (size_t)256 << 20);
    nq_msg *m = NULL;
    CHECK_RC(nq_get(c, WAIT_MS, &m), NQ_EPROTO);
    CHECK(taken < (size_t)32 << 20);
    close(fd);
    close(lfd);
    nq_destroy(c);
    return 0;
}

/* ---- tricklers ------------------------------------------------------------------ */

/* Sends INI with a fresh id, then the header of a frame of len bytes;
 * returns the socket. */
static int begin_frame(uint16_t port, uint64_t len)
{
    int fd = nqt_raw_connect(port);
    nq_id id;
    uint8_t header[8];
    if (nq_id_random(&id) != NQ_OK || nqt_raw_send_frame(fd, id.bytes, 16) != 0) {
        abort();
    }
    nqt_put_header(header, len);
    if (write(fd, header, sizeof(header)) != (ssize_t)sizeof(header)) {
        abort();
    }
    return fd;
}

/* 1 when the server ended the connection within ms (EOF or reset). */
static int closed_within(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t buf[64];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            return 1;
        }
        if (n < 0 && errno != EINTR) {
            return 0; /* timed out */
        }
    }
}

/* A peer that introduced itself and then trickles a frame in, a byte at a
 * time, is closed once the frame stops moving for two watch periods
 * (NQ_OPT_HANDSHAKE_TIMEOUT_MS each); one that sends slowly but steadily
 * is served. */
static int test_a_trickled_frame_is_timed_out(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_HANDSHAKE_TIMEOUT_MS, 300));
    nq_comm *s = nqt_open(NQ_TCP, NQ_SERVER, o);
    CHECK(s != NULL);
    int trickler = begin_frame(nqt_port(s), 1 << 20);
    enum { STEADY = 64 * 1024, PIECE = 2048 };
    int steady = begin_frame(nqt_port(s), STEADY);
    static uint8_t data[STEADY];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 13);
    }
    int trickler_closed = 0;
    /* 32 pieces of 2 KiB, 100 ms apart: 6 KiB per watch period. */
    for (int i = 0; i < STEADY / PIECE; i++) {
        if (!trickler_closed && send(trickler, "x", 1, MSG_NOSIGNAL) != 1) {
            trickler_closed = 1;
        }
        CHECK(send(steady, data + i * PIECE, PIECE, MSG_NOSIGNAL) == PIECE);
        usleep(100 * 1000);
    }
    CHECK(closed_within(trickler, 2000));
    CHECK(nqt_stat(s, NQ_STAT_HANDSHAKE_TIMEOUTS) == 1);
    nq_msg *m = NULL;
    CHECK_OK(nq_get(s, WAIT_MS, &m));
    const void *got;
    size_t len;
    CHECK_OK(nq_msg_data(m, &got, &len));
    CHECK(len == STEADY && memcmp(got, data, STEADY) == 0);
    nq_msg_free(m);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    close(trickler);
    close(steady);
    nq_destroy(s);
    return 0;
}

/* ---- flow control ------------------------------------------------------------ */

/* A peer held back by NQ_OPT_QUEUE_SIZE that resets its connection is
 * noticed at once: what it sent is delivered, it leaves the peer list, and
 * the server's I/O thread does not spin on the reset it cannot read. */
static int test_reset_of_a_paused_peer_is_noticed_without_spinning(void)
{
    nq_comm *s = server_with(1, -1);
    CHECK(s != NULL);
    int fd = nqt_raw_connect(nqt_port(s));
    nq_id id;
    CHECK_OK(nq_id_random(&id));
    CHECK(nqt_raw_send_frame(fd, id.bytes, sizeof(id.bytes)) == 0);
    enum { FRAMES = 100 };
    static uint8_t payload[1000];
    for (int i = 0; i < FRAMES; i++) {
        payload[0] = (uint8_t)i;
        CHECK(nqt_raw_send_frame(fd, payload, sizeof(payload)) == 0);
    }
    CHECK(nqt_wait_stat(s, NQ_STAT_READ_PAUSES, 1) == 0);
    CHECK(nqt_wait_stat(s, NQ_STAT_PEERS, 1) == 0);
    usleep(200 * 1000);
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) == 0);
    close(fd);
    CHECK(nqt_wait_stat_at_most(s, NQ_STAT_PEERS, 0) == 0);
    CHECK(nqt_stat(s, NQ_STAT_CONNECTIONS_LOST) == 1);
    /* Idle now: a second of it costs next to no CPU. */
    double before = cpu_seconds();
    usleep(1000 * 1000);
    double spent = cpu_seconds() - before;
    CHECK(spent < 0.3);
    /* What arrived before the reset is delivered, in order. */
    int64_t in = nqt_stat(s, NQ_STAT_MSGS_IN);
    CHECK(in >= 1 && in <= FRAMES);
    for (int i = 0; i < in; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *data;
        size_t len;
        CHECK_OK(nq_msg_data(m, &data, &len));
        CHECK(len == sizeof(payload) && ((const uint8_t *)data)[0] == (uint8_t)i);
        nq_msg_free(m);
    }
    CHECK_OK(nq_close(s));
    nq_destroy(s);
    return 0;
}

/* A sender held back by a reader at NQ_OPT_QUEUE_SIZE is held back, not
 * cut off: for four times keep-alive's whole schedule its connection stays
 * up with its puts pending (long enough for the kernel to space its probes
 * of the closed window further apart than that schedule), and once the
 * reader takes its messages every one arrives and every future succeeds. */
static int test_flow_control_is_not_a_disconnect(void)
{
    enum { MESSAGES = 64, SIZE = 1 << 20 };
    const int64_t keepalive_ms = 1000; /* a dead peer: after about 4 s */
    nq_comm *s = server_with(4, keepalive_ms);
    CHECK(s != NULL);
    nq_opts *o = nqt_opts("127.0.0.1", nqt_port(s), NULL);
    CHECK_OK(nq_opts_set_int(o, NQ_OPT_KEEPALIVE_MS, keepalive_ms));
    nq_comm *c = nqt_open(NQ_TCP, NQ_CLIENT, o);
    CHECK(c != NULL);
    uint8_t *data = malloc(SIZE);
    CHECK(data != NULL);
    for (size_t i = 0; i < SIZE; i++) {
        data[i] = (uint8_t)(i * 7);
    }
    nq_future *f[MESSAGES];
    for (int i = 0; i < MESSAGES; i++) {
        nq_chunk ch = {data, SIZE};
        CHECK_OK(nq_put(c, &ch, 1, NULL, 0, &f[i]));
    }
    CHECK(nqt_wait_stat(s, NQ_STAT_READ_PAUSES, 1) == 0);
    usleep(16 * 1000 * 1000);
    int pending = 0;
    for (int i = 0; i < MESSAGES; i++) {
        int rv = nq_future_result(f[i]);
        CHECK(rv == NQ_OK || rv == NQ_EPENDING);
        pending += rv == NQ_EPENDING;
    }
    CHECK(pending > 0);
    CHECK(nqt_stat(c, NQ_STAT_CONNECTIONS_LOST) == 0);
    CHECK(nqt_stat(s, NQ_STAT_PEERS) == 1);
    for (int i = 0; i < MESSAGES; i++) {
        nq_msg *m = NULL;
        CHECK_OK(nq_get(s, WAIT_MS, &m));
        const void *got;
        size_t len;
        CHECK_OK(nq_msg_data(m, &got, &len));
        CHECK(len == SIZE && memcmp(got, data, SIZE) == 0);
        nq_msg_free(m);
    }
    for (int i = 0; i < MESSAGES; i++) {
        CHECK_RC(nq_future_wait(f[i], WAIT_MS), NQ_OK);
        nq_future_free(f[i]);
    }
    CHECK_OK(nq_close(c));
    CHECK_OK(nq_close(s));
    nq_destroy(c);
    nq_destroy(s);
    free(data);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_long_first_frame_is_refused_at_its_header),
    TEST(test_client_refuses_a_long_first_frame_from_its_server),
    TEST(test_reset_of_a_paused_peer_is_noticed_without_spinning),
    TEST(test_flow_control_is_not_a_disconnect),
    TEST(test_a_trickled_frame_is_timed_out),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
