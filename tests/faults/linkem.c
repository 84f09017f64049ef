/*
 * linkem: a user-space link emulator between two TUN devices, for the fault
 * trials (this kernel has no netem and no iptables).
 *
 *   linkem --a NAME --b NAME --control PATH [--seed N]
 *
 * It creates the two TUN devices (layer 3, no packet information) and
 * prints "ready" once they exist; the caller moves each into a network
 * namespace of its own and gives them addresses (tests/faults/netlab.py
 * does all of it).  Every packet read from one device is written to the
 * other, after the faults in force for its direction:
 *
 *   loss P         drop each packet with probability P (0..1)
 *   delay MS       hold each packet MS milliseconds
 *   jitter MS      add up to MS more, at random (packets may reorder)
 *   reorder P      with probability P hold a packet 4 x (delay + 1) ms more
 *   partition on|off   drop everything
 *   blackhole PORT on|off   drop TCP and UDP packets to or from PORT
 *   cut            the next established-TCP segment (of each direction, by
 *                  default) becomes a reset: an RST with the segment's own
 *                  sequence number and no data, which its receiver takes
 *                  (it is the next byte it expects), so both ends lose
 *                  the connection
 *   reset          clear every fault
 *   stats          answer "forwarded N dropped M held K"
 *
 * Commands come as datagrams on the Unix socket at PATH; a command applies
 * to both directions, or to one when prefixed "a2b " or "b2a ".  Each
 * command is answered with "ok", the statistics, or "error: ...".  linkem
 * runs until SIGTERM or SIGINT.  At most HELD_MAX packets wait at once;
 * beyond that a packet is dropped (and counted).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PACKET_MAX 65536
#define HELD_MAX 20000
#define PORTS_MAX 16

typedef struct faults {
    double loss;
    int delay_ms;
    int jitter_ms;
    double reorder;
    int partition;
    int blackhole[PORTS_MAX];
    int nblackhole;
    int cut; /* turn the next established-TCP segment into a reset */
} faults;

typedef struct packet {
    int64_t due_us;
    uint64_t seq; /* ties keep arrival order */
    int to;       /* 0: device a, 1: device b */
    size_t len;
    uint8_t *data;
} packet;

static faults dir_faults[2]; /* [0]: a to b, [1]: b to a */
static packet *held[HELD_MAX]; /* a min-heap by (due_us, seq) */
static size_t nheld;
static uint64_t next_seq;
static uint64_t forwarded, dropped;
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static volatile sig_atomic_t stop;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* xorshift64*: reproducible with --seed. */
static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1du) >> 11) / (double)(UINT64_C(1) << 53);
}

static int earlier(const packet *x, const packet *y)
{
    return x->due_us < y->due_us || (x->due_us == y->due_us && x->seq < y->seq);
}

static void heap_push(packet *p)
{
    size_t i = nheld++;
    while (i > 0 && earlier(p, held[(i - 1) / 2])) {
        held[i] = held[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    held[i] = p;
}

static packet *heap_pop(void)
{
    packet *top = held[0];
    packet *last = held[--nheld];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= nheld) {
            break;
        }
        if (c + 1 < nheld && earlier(held[c + 1], held[c])) {
            c++;
        }
        if (!earlier(held[c], last)) {
            break;
        }
        held[i] = held[c];
        i = c;
    }
    if (nheld > 0) {
        held[i] = last;
    }
    return top;
}

/* The TCP or UDP ports of an IPv4 packet, or 0 when it has none. */
static int ports_of(const uint8_t *p, size_t len, int *src, int *dst)
{
    if (len < 20 || (p[0] >> 4) != 4) {
        return 0;
    }
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    int proto = p[9];
    if ((proto != 6 && proto != 17) || len < ihl + 4) {
        return 0;
    }
    *src = p[ihl] << 8 | p[ihl + 1];
    *dst = p[ihl + 2] << 8 | p[ihl + 3];
    return 1;
}

/* 1 when the faults of its direction drop this packet. */
static int drops(const faults *f, const uint8_t *p, size_t len)
{
    if (f->partition) {
        return 1;
    }
    int src, dst;
    if (f->nblackhole > 0 && ports_of(p, len, &src, &dst)) {
        for (int i = 0; i < f->nblackhole; i++) {
            if (f->blackhole[i] == src || f->blackhole[i] == dst) {
                return 1;
            }
        }
    }
    return f->loss > 0 && uniform() < f->loss;
}

/* The one's complement sum of len bytes, folded into 16 bits. */
static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
    for (size_t i = 0; i + 1 < len; i += 2) {
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    }
    if (len & 1) {
        sum += (uint32_t)(p[len - 1] << 8);
    }
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)~sum;
}

/* Rewrites an IPv4 TCP segment that acknowledges (an established
 * connection's, not a SYN) as a bare RST with its sequence number; returns
 * its new length, or 0 when it is not such a segment. */
static size_t make_reset(uint8_t *p, size_t len)
{
    if (len < 20 || (p[0] >> 4) != 4 || p[9] != 6) {
        return 0;
    }
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    if (len < ihl + 20) {
        return 0;
    }
    uint8_t *t = p + ihl;
    uint8_t flags = t[13];
    if (!(flags & 0x10) || (flags & 0x07)) { /* ACK, and not SYN, RST or FIN */
        return 0;
    }
    t[12] = 5 << 4;        /* a 20-byte header: no options */
    t[13] = 0x04 | 0x10;   /* RST, ACK */
    t[14] = t[15] = 0;     /* window */
    t[16] = t[17] = 0;     /* checksum, computed below */
    t[18] = t[19] = 0;     /* urgent pointer */
    size_t total = ihl + 20;
    p[2] = (uint8_t)(total >> 8);
    p[3] = (uint8_t)total;
    p[10] = p[11] = 0;
    uint16_t ipsum = fold(sum16(p, ihl, 0));
    p[10] = (uint8_t)(ipsum >> 8);
    p[11] = (uint8_t)ipsum;
    uint32_t pseudo = sum16(p + 12, 8, 0) + 6 + 20;
    uint16_t tcpsum = fold(sum16(t, 20, pseudo));
    t[16] = (uint8_t)(tcpsum >> 8);
    t[17] = (uint8_t)tcpsum;
    return total;
}

static void take(int from, const uint8_t *p, size_t len)
{
    faults *f = &dir_faults[from];
    if (drops(f, p, len) || nheld == HELD_MAX) {
        dropped++;
        return;
    }
    int64_t delay = (int64_t)f->delay_ms * 1000;
    if (f->jitter_ms > 0) {
        delay += (int64_t)(uniform() * f->jitter_ms * 1000);
    }
    if (f->reorder > 0 && uniform() < f->reorder) {
        delay += 4 * ((int64_t)f->delay_ms + 1) * 1000;
    }
    packet *k = malloc(sizeof(*k) + len);
    if (k == NULL) {
        dropped++;
        return;
    }
    k->data = (uint8_t *)(k + 1);
    memcpy(k->data, p, len);
    k->len = len;
    if (f->cut) {
        size_t n = make_reset(k->data, len);
        if (n > 0) {
            k->len = n;
            f->cut = 0;
        }
    }
    k->to = 1 - from;
    k->due_us = now_us() + delay;
    k->seq = next_seq++;
    heap_push(k);
}

/* Writes every packet that is due; returns ms until the next, or -1. */
static int release(const int fds[2])
{
    int64_t now = now_us();
    while (nheld > 0 && held[0]->due_us <= now) {
        packet *k = heap_pop();
        if (write(fds[k->to], k->data, k->len) == (ssize_t)k->len) {
            forwarded++;
        } else {
            dropped++;
        }
        free(k);
    }
    if (nheld == 0) {
        return -1;
    }
    int64_t wait = (held[0]->due_us - now + 999) / 1000;
    return wait > 1000 ? 1000 : (int)wait;
}

static int open_tun(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        perror("linkem: /dev/net/tun");
        exit(1);
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "linkem: cannot create %s: %s\n", name, strerror(errno));
        exit(1);
    }
    return fd;
}

/* Applies "[a2b|b2a] verb args" to one or both directions. */
static int command(char *line, char *reply, size_t cap)
{
    int lo = 0, hi = 1;
    if (strncmp(line, "a2b ", 4) == 0) {
        hi = 0;
        line += 4;
    } else if (strncmp(line, "b2a ", 4) == 0) {
        lo = 1;
        line += 4;
    }
    char verb[32] = "", arg1[32] = "", arg2[32] = "";
    if (sscanf(line, "%31s %31s %31s", verb, arg1, arg2) < 1) {
        snprintf(reply, cap, "error: empty command");
        return -1;
    }
    if (strcmp(verb, "stats") == 0) {
        snprintf(reply, cap, "forwarded %llu dropped %llu held %zu",
                 (unsigned long long)forwarded, (unsigned long long)dropped, nheld);
        return 0;
    }
    for (int d = lo; d <= hi; d++) {
        faults *f = &dir_faults[d];
        if (strcmp(verb, "reset") == 0) {
            memset(f, 0, sizeof(*f));
        } else if (strcmp(verb, "loss") == 0) {
            f->loss = atof(arg1);
        } else if (strcmp(verb, "delay") == 0) {
            f->delay_ms = atoi(arg1);
        } else if (strcmp(verb, "jitter") == 0) {
            f->jitter_ms = atoi(arg1);
        } else if (strcmp(verb, "reorder") == 0) {
            f->reorder = atof(arg1);
        } else if (strcmp(verb, "cut") == 0) {
            f->cut = 1;
        } else if (strcmp(verb, "partition") == 0) {
            f->partition = strcmp(arg1, "on") == 0;
        } else if (strcmp(verb, "blackhole") == 0) {
            int port = atoi(arg1);
            int on = strcmp(arg2, "off") != 0;
            int at = -1;
            for (int i = 0; i < f->nblackhole; i++) {
                at = f->blackhole[i] == port ? i : at;
            }
            if (on && at < 0 && f->nblackhole < PORTS_MAX) {
                f->blackhole[f->nblackhole++] = port;
            } else if (!on && at >= 0) {
                f->blackhole[at] = f->blackhole[--f->nblackhole];
            }
        } else {
            snprintf(reply, cap, "error: unknown command '%s'", verb);
            return -1;
        }
    }
    snprintf(reply, cap, "ok");
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    const char *a = NULL, *b = NULL, *control = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--a") == 0) {
            a = argv[i + 1];
        } else if (strcmp(argv[i], "--b") == 0) {
            b = argv[i + 1];
        } else if (strcmp(argv[i], "--control") == 0) {
            control = argv[i + 1];
        } else if (strcmp(argv[i], "--seed") == 0) {
            rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
        } else {
            fprintf(stderr, "linkem: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (a == NULL || b == NULL || control == NULL) {
        fprintf(stderr, "usage: linkem --a NAME --b NAME --control PATH [--seed N]\n");
        return 2;
    }
    int fds[2] = {open_tun(a), open_tun(b)};
    int ctl = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", control);
    unlink(control);
    if (ctl < 0 || bind(ctl, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("linkem: control socket");
        return 1;
    }
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    printf("ready\n");
    fflush(stdout);

    static uint8_t buf[PACKET_MAX];
    while (!stop) {
        struct pollfd p[3] = {
            {.fd = fds[0], .events = POLLIN},
            {.fd = fds[1], .events = POLLIN},
            {.fd = ctl, .events = POLLIN},
        };
        int timeout = release(fds);
        if (poll(p, 3, timeout) < 0 && errno != EINTR) {
            perror("linkem: poll");
            break;
        }
        for (int side = 0; side < 2; side++) {
            /* A bounded batch per round keeps the other side and the
             * control socket served. */
            for (int n = 0; n < 256 && (p[side].revents & POLLIN); n++) {
                ssize_t len = read(fds[side], buf, sizeof(buf));
                if (len <= 0) {
                    break;
                }
                take(side, buf, (size_t)len);
            }
        }
        if (p[2].revents & POLLIN) {
            char line[256], reply[256];
            struct sockaddr_un from;
            socklen_t flen = sizeof(from);
            ssize_t n = recvfrom(ctl, line, sizeof(line) - 1, 0, (struct sockaddr *)&from, &flen);
            if (n > 0) {
                line[n] = 0;
                line[strcspn(line, "\r\n")] = 0;
                command(line, reply, sizeof(reply));
                if (flen > sizeof(sa_family_t)) {
                    sendto(ctl, reply, strlen(reply), 0, (struct sockaddr *)&from, flen);
                }
            }
        }
    }
    unlink(control);
    return 0;
}
