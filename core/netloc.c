/* Network locations: resolving host and port, and writing them as the
 * address strings paho and grpc take.  No state: any thread (resolving
 * blocks on DNS, so it runs where blocking is allowed). */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/base.h"

int nqi_netloc_resolve(const char *host, uint16_t port, int passive, const nqi_log *log,
                       struct addrinfo **out)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : AI_ADDRCONFIG;
    int rv = getaddrinfo(host, service, &hints, out);
    /* AI_ADDRCONFIG refuses loopback names on a host whose only addresses
     * are loopback ones (a network namespace, a container). */
    if (rv == EAI_ADDRFAMILY || (rv == EAI_NONAME && !passive)) {
        hints.ai_flags = passive ? AI_PASSIVE : 0;
        rv = getaddrinfo(host, service, &hints, out);
    }
    if (rv != 0) {
        nqi_logf(log, NQ_LOG_ERROR, "cannot resolve %s: %s", host, gai_strerror(rv));
        return NQ_EADDR;
    }
    return NQ_OK;
}

int nqi_netloc_format(char *buf, size_t cap, const char *scheme, const char *host,
                      uint16_t port)
{
    int v6 = strchr(host, ':') != NULL;
    int n = snprintf(buf, cap, "%s%s%s%s:%u", scheme, v6 ? "[" : "", host, v6 ? "]" : "",
                     (unsigned)port);
    return n >= 0 && (size_t)n < cap ? NQ_OK : NQ_EINVAL;
}

uint16_t nqi_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
