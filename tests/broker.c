#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A port that was free a moment ago. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static int port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Copies src into the broker's directory so the broker's own user can read
 * it after it drops root. */
static int copy_in(const char *dir, const char *name, const char *src)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s/%s' && chmod 644 '%s/%s'", src, dir, name, dir, name);
    return system(cmd) == 0 ? 0 : -1;
}

static int launch(nqt_broker *b);

static int try_start(nqt_broker *b, const char *cert)
{
    b->port = free_port();
    b->tls_port = cert != NULL ? free_port() : 0;
    char conf[128];
    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "per_listener_settings false\npersistence false\n");
    /* Run as root, mosquitto would change to its own user, and the kernel
     * then forgets the parent-death signal that takes it down with a test
     * that crashes: it keeps the user it was started as. */
    if (geteuid() == 0) {
        fprintf(f, "user root\n");
    }

    fprintf(f, "set_tcp_nodelay true\n");
    fprintf(f, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n");
    fprintf(f, "listener %u 127.0.0.1\n", (unsigned)b->port);
    /* Global settings, and the plain listener's. */
    fprintf(f, "%s\n", b->global != NULL ? b->global : "allow_anonymous true");
    if (cert != NULL) {
        fprintf(f, "listener %u 127.0.0.1\ncertfile %s/cert.pem\nkeyfile %s/key.pem\n",
                (unsigned)b->tls_port, b->dir, b->dir);
        fprintf(f, "%s\n", b->tls != NULL ? b->tls : "");
    }
    fclose(f);
    chmod(conf, 0644);
    return launch(b);
}

/* Runs mosquitto with the directory's configuration and waits until it
 * listens. */
static int launch(nqt_broker *b)
{
    char conf[128];
    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->dir);
    char log[128];
    snprintf(log, sizeof(log), "%s/broker.log", b->dir);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        /* The broker must not outlive a test that crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            b->pid = 0;
            return -1; /* exited: the port was taken, or no broker */
        }
        if (port_open(b->port) && (b->tls_port == 0 || port_open(b->tls_port))) {
            return 0;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    b->pid = 0;
    return -1;
}

int nqt_broker_start(nqt_broker *b, const char *cert, const char *key)
{
    return nqt_broker_start_with(b, cert, key, NULL, NULL);
}

int nqt_broker_start_with(nqt_broker *b, const char *cert, const char *key, const char *global,
                          const char *tls)
{
    memset(b, 0, sizeof(*b));
    b->global = global;
    b->tls = tls;
    strcpy(b->dir, "/tmp/nqbrokerXXXXXX");
    if (mkdtemp(b->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    chmod(b->dir, 0755);
    if (cert != NULL && (copy_in(b->dir, "cert.pem", cert) != 0 || copy_in(b->dir, "key.pem", key) != 0)) {
        fprintf(stderr, "broker: cannot copy the TLS files\n");
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        if (try_start(b, cert) == 0) {
            return 0;
        }
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s/broker.log >&2", b->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "broker: no log\n");
    }
    fprintf(stderr, "broker: mosquitto did not start (is it installed?)\n");
    return -1;
}

/* Sends sig and reaps the broker.  mosquitto, signalled just after it
 * started, has been seen to take a SIGTERM and keep running: after five
 * seconds it is killed. */
static void end_broker(nqt_broker *b, int sig)
{
    if (b->pid <= 0) {
        return;
    }
    kill(b->pid, sig);
    for (int i = 0; i < 500; i++) {
        if (waitpid(b->pid, NULL, WNOHANG) == b->pid) {
            b->pid = 0;
            return;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "broker: mosquitto outlived signal %d for 5 s; killing it\n", sig);
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

int nqt_broker_restart(nqt_broker *b, int sig)
{
    end_broker(b, sig);
    for (int attempt = 0; attempt < 50; attempt++) {
        if (launch(b) == 0) {
            return 0;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "broker: mosquitto did not start again on port %u\n", (unsigned)b->port);
    return -1;
}

void nqt_broker_stop(nqt_broker *b, int sig)
{
    end_broker(b, sig);
    if (b->dir[0] != 0 && getenv("NQ_KEEP_BROKER_DIR") == NULL) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", b->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "broker: could not remove %s\n", b->dir);
        }
    }
}

/* ---- a stranger's publishes ------------------------------------------------------ */

/* Appends MQTT's variable-length remaining length. */
static size_t put_length(uint8_t *at, size_t len)
{
    size_t n = 0;
    do {
        uint8_t byte = (uint8_t)(len % 128);
        len /= 128;
        at[n++] = (uint8_t)(byte | (len > 0 ? 0x80 : 0));
    } while (len > 0);
    return n;
}

static int send_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nqt_broker_publish(const nqt_broker *b, size_t n, char *const *topics,
                       const void *const *payloads, const size_t *lens)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(b->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "publish: cannot connect to the broker: %s\n", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* CONNECT: MQTT 3.1.1, clean session, keep-alive 60 s, client id. */
    static const char id[] = "nq-test-stranger";
    uint8_t pkt[512];
    size_t body = 10 + 2 + sizeof(id) - 1;
    size_t at = 0;
    pkt[at++] = 0x10;
    at += put_length(pkt + at, body);
    static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60};
    memcpy(pkt + at, head, sizeof(head));
    at += sizeof(head);
    pkt[at++] = 0;
    pkt[at++] = (uint8_t)(sizeof(id) - 1);
    memcpy(pkt + at, id, sizeof(id) - 1);
    at += sizeof(id) - 1;
    uint8_t connack[4];
    int rv = -1;
    if (send_all(fd, pkt, at) != 0 || recv(fd, connack, 4, MSG_WAITALL) != 4 ||
        connack[0] != 0x20 || connack[3] != 0) {
        fprintf(stderr, "publish: the broker refused the connection\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t tlen = strlen(topics[i]);
        if (tlen > 256 || lens[i] > sizeof(pkt) - 300) {
            fprintf(stderr, "publish: message %zu too long for this helper\n", i);
            goto out;
        }
        at = 0;
        pkt[at++] = 0x30; /* PUBLISH, QoS 0 */
        at += put_length(pkt + at, 2 + tlen + lens[i]);
        pkt[at++] = (uint8_t)(tlen >> 8);
        pkt[at++] = (uint8_t)tlen;
        memcpy(pkt + at, topics[i], tlen);
        at += tlen;
        memcpy(pkt + at, payloads[i], lens[i]);
        at += lens[i];
        if (send_all(fd, pkt, at) != 0) {
            fprintf(stderr, "publish: the broker closed the connection at message %zu\n", i);
            goto out;
        }
    }
    static const uint8_t disconnect[] = {0xe0, 0};
    if (send_all(fd, disconnect, sizeof(disconnect)) != 0) {
        goto out;
    }
    /* The broker closes once it has read everything before the DISCONNECT. */
    uint8_t sink[64];
    ssize_t got;
    while ((got = recv(fd, sink, sizeof(sink), 0)) > 0) {
    }
    rv = got == 0 ? 0 : -1;
    if (rv != 0) {
        fprintf(stderr, "publish: the broker did not close the connection\n");
    }
out:
    close(fd);
    return rv;
}
