#include "peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

nq_opts *nqt_opts(const char *host, uint16_t port, const nq_id *id)
{
    nq_opts *o = NULL;
    if (nq_opts_new(&o) != NQ_OK || nq_opts_set_netloc(o, host, port) != NQ_OK) {
        abort();
    }
    if (id != NULL) {
        nq_opts_set_id(o, id);
    }
    return o;
}

nq_comm *nqt_open(nq_protocol protocol, nq_purpose purpose, nq_opts *o)
{
    nq_comm *c = NULL;
    int rv = nq_open(protocol, purpose, o, &c);
    nq_opts_free(o);
    if (rv != NQ_OK) {
        fprintf(stderr, "nq_open: %s\n", nq_strerror(rv));
        return NULL;
    }
    return c;
}

uint16_t nqt_port(nq_comm *c)
{
    uint16_t p = 0;
    nq_local_port(c, &p);
    return p;
}

int nqt_put_wait(nq_comm *c, const void *data, size_t len, const nq_id *peers, size_t npeers)
{
    nq_chunk ch = {data, len};
    nq_future *f = NULL;
    int rv = nq_put(c, &ch, 1, peers, npeers, &f);
    if (rv != NQ_OK) {
        return rv;
    }
    rv = nq_future_wait(f, NQT_WAIT_MS);
    nq_future_free(f);
    return rv;
}

int nqt_expect(nq_comm *c, const void *data, size_t len, const nq_id *peer)
{
    nq_msg *m = NULL;
    CHECK_OK(nq_get(c, NQT_WAIT_MS, &m));
    const void *d;
    size_t n;
    CHECK_OK(nq_msg_data(m, &d, &n));
    int same = n == len && (len == 0 || memcmp(d, data, len) == 0);
    nq_id got;
    nq_msg_peer(m, &got);
    if (!same) {
        fprintf(stderr, "got %zu bytes instead: %.*s\n", n, (int)(n < 40 ? n : 40),
                (const char *)d);
    }
    nq_msg_free(m);
    CHECK(same);
    CHECK(peer == NULL || nq_id_equal(&got, peer));
    return 0;
}

int nqt_round_trip(nq_comm *server, nq_comm *client)
{
    nq_id cid;
    nq_comm_id(client, &cid);
    CHECK_OK(nqt_put_wait(client, "ping", 4, NULL, 0));
    CHECK(nqt_expect(server, "ping", 4, &cid) == 0);
    CHECK_OK(nqt_put_wait(server, "pong", 4, &cid, 1));
    CHECK(nqt_expect(client, "pong", 4, NULL) == 0);
    return 0;
}

int64_t nqt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nqt_stat(nq_comm *c, nq_stat_id s)
{
    int64_t v = -1;
    nq_stat(c, s, &v);
    return v;
}

int nqt_wait_stat(nq_comm *c, nq_stat_id s, int64_t want)
{
    for (int i = 0; i < 1000; i++) {
        if (nqt_stat(c, s) >= want) {
            return 0;
        }
        usleep(10000);
    }
    return 1;
}

int nqt_wait_stat_at_most(nq_comm *c, nq_stat_id s, int64_t want)
{
    for (int i = 0; i < 1000; i++) {
        if (nqt_stat(c, s) <= want) {
            return 0;
        }
        usleep(10000);
    }
    return 1;
}

int nqt_temp_dir(char *dir, const char *prefix)
{
    snprintf(dir, 64, "/tmp/%sXXXXXX", prefix);
    return mkdtemp(dir) == NULL;
}

void nqt_remove_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
}

int nqt_make_cert(const char *dir, const char *name, const char *san)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s/%s.key' -out '%s/%s.pem' -days 2 -subj /CN=localhost "
             "-addext subjectAltName=%s 2>/dev/null",
             dir, name, dir, name, san);
    return system(cmd) != 0;
}

int nqt_make_ca(const char *dir, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s/%s.key' -out '%s/%s.pem' -days 2 -subj /CN=%s "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign 2>/dev/null",
             dir, name, dir, name, name);
    return system(cmd) != 0;
}

int nqt_make_signed_cert(const char *dir, const char *name, const char *ca, const char *cn,
                         const char *san)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s/%s.key' -out '%s/%s.csr' -subj '/CN=%s' "
             "-addext subjectAltName=%s 2>/dev/null && "
             "openssl x509 -req -in '%s/%s.csr' -CA '%s/%s.pem' -CAkey '%s/%s.key' "
             "-CAcreateserial -copy_extensions copyall -days 2 -out '%s/%s.pem' 2>/dev/null",
             dir, name, dir, name, cn, san, dir, name, dir, ca, dir, ca, dir, name);
    return system(cmd) != 0;
}

int nqt_make_credentials(char *dir, const char *prefix)
{
    CHECK(nqt_temp_dir(dir, prefix) == 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "mkdir '%s/anchors' && cp '%s/ca.pem' '%s/anchors/' && openssl rehash '%s/anchors'",
             dir, dir, dir, dir);
    CHECK(nqt_make_ca(dir, "ca") == 0);
    CHECK(nqt_make_signed_cert(dir, "server", "ca", "server", "DNS:localhost,IP:127.0.0.1") == 0);
    CHECK(nqt_make_signed_cert(dir, "client-a", "ca", "client-a",
                               "DNS:client-a.example,IP:127.0.0.1") == 0);
    CHECK(nqt_make_cert(dir, "rogue", "DNS:client-a.example") == 0);
    CHECK(system(cmd) == 0);
    return 0;
}

const char *nqt_path(const char *dir, const char *name, const char *ext)
{
    static char buf[4][128];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 128, "%s/%s.%s", dir, name, ext);
    return p;
}

char *nqt_slurp(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *text = calloc(1, 65536);
    size_t n = text != NULL ? fread(text, 1, 65535, f) : 0;
    fclose(f);
    if (text != NULL && n == 0) {
        free(text);
        text = NULL;
    }
    return text;
}

const char *nqt_identity(nq_comm *comm, const nq_id *peer)
{
    static char buf[512];
    size_t len = 0;
    if (nq_peer_identity(comm, peer, buf, sizeof(buf), &len) != NQ_OK) {
        return "(not connected)";
    }
    return buf;
}

/* ---- speaking the wire by hand ----------------------------------------------- */

/* A raw TCP connection to a server, for speaking the protocol by hand. */
int nqt_raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        abort();
    }
    return fd;
}

int nqt_raw_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        abort();
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int nqt_raw_accept(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    return poll(&p, 1, NQT_WAIT_MS) == 1 ? accept(lfd, NULL, NULL) : -1;
}

void nqt_put_header(uint8_t *out, uint64_t len)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(len & 0xff);
        len >>= 8;
    }
}

int nqt_raw_send_frame(int fd, const void *data, size_t len)
{
    uint8_t h[8];
    nqt_put_header(h, len);
    if (write(fd, h, 8) != 8) {
        return -1;
    }
    return len == 0 || write(fd, data, len) == (ssize_t)len ? 0 : -1;
}

/* Reads until EOF or timeout; returns bytes read. */
ssize_t nqt_raw_read_all(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t have = 0;
    while (have < cap) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
    }
    return (ssize_t)have;
}

/* ---- events ---------------------------------------------------------------------------- */

void nqt_recorder_init(nqt_recorder *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

void nqt_record(void *ctx, const nq_event *ev)
{
    nqt_recorder *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->n < (int)(sizeof(r->events) / sizeof(r->events[0]))) {
        r->events[r->n++] = *ev;
    }
    pthread_mutex_unlock(&r->mu);
}

nq_event nqt_event(nqt_recorder *r, int i)
{
    pthread_mutex_lock(&r->mu);
    nq_event ev = r->events[i];
    pthread_mutex_unlock(&r->mu);
    return ev;
}

int nqt_events(nqt_recorder *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

int nqt_wait_events(nqt_recorder *r, int n)
{
    int64_t until = nqt_now_ms() + NQT_WAIT_MS;
    while (nqt_events(r) < n && nqt_now_ms() < until) {
        usleep(5000);
    }
    int got = nqt_events(r);
    if (got < n) {
        fprintf(stderr, "waited for %d events, got %d\n", n, got);
        return 1;
    }
    return 0;
}

int nqt_is_event(nqt_recorder *r, int i, int type, const nq_id *peer, int reason)
{
    pthread_mutex_lock(&r->mu);
    nq_event ev = r->events[i];
    pthread_mutex_unlock(&r->mu);
    if (ev.type != type || (peer != NULL && !nq_id_equal(&ev.peer, peer)) ||
        ev.reason != reason) {
        char got[NQ_ID_STRLEN];
        nq_id_format(&ev.peer, got, sizeof(got));
        fprintf(stderr, "event %d: type %d for %s, reason %d (%s); wanted type %d, reason %d (%s)\n",
                i, ev.type, got, ev.reason, nq_strerror(ev.reason), type, reason,
                nq_strerror(reason));
        return 1;
    }
    return 0;
}
