/* Error texts, versions and the allocator shared with callers.  Pure
 * functions and static strings: any thread. */
#include <stdlib.h>

#include "core/base.h"

const char *nq_strerror(int err)
{
    switch (err) {
    case NQ_OK: return "success";
    case NQ_EINVAL: return "invalid argument";
    case NQ_ENOMEM: return "out of memory";
    case NQ_ETIMEDOUT: return "timed out";
    case NQ_ECLOSED: return "communicator is closed";
    case NQ_ECONNRESET: return "connection to the peer was lost";
    case NQ_ENOPEER: return "no connected peer has that id";
    case NQ_ETLS: return "TLS failure (certificate, key or handshake)";
    case NQ_EPROTO: return "peer broke the wire protocol";
    case NQ_ECONNREFUSED: return "server could not be reached";
    case NQ_EADDR: return "host name or address cannot be used";
    case NQ_EADDRINUSE: return "address already in use";
    case NQ_ENOTSUP: return "not supported by this build";
    case NQ_ESYS: return "operating system call failed";
    case NQ_EFULL: return "send limit reached";
    case NQ_ESERIALIZE: return "serializer failed";
    case NQ_EPENDING: return "not completed yet";
    case NQ_EREPLACED: return "peer connected again with the same id";
    case NQ_ECANCELED: return "the put was withdrawn";
    case NQ_EAUTH: return "credentials were refused";
    default: return "unknown error";
    }
}

#define STRING(x) #x
#define VERSION_TEXT(a, b, c) STRING(a) "." STRING(b) "." STRING(c)

const char *nq_version(void)
{
    return VERSION_TEXT(NQ_VERSION_MAJOR, NQ_VERSION_MINOR, NQ_VERSION_PATCH);
}

int nq_version_number(void)
{
    return NQ_VERSION_NUMBER;
}

void *nq_alloc(size_t size)
{
    return malloc(size == 0 ? 1 : size);
}

void nq_free(void *ptr)
{
    free(ptr);
}
