/*
 * glibc's malloc settings for the gRPC and MQTT transports.
 *
 * grpc reads from its socket into buffers it allocates, and paho does the
 * same for every MQTT packet; both free them as soon as libnq has copied the
 * message out.  glibc returns the top of a heap to the kernel once more
 * than M_TRIM_THRESHOLD is free there, and serves blocks above
 * M_MMAP_THRESHOLD with mmap.  Both thresholds slide up when a program
 * frees a large mmapped block, but only to twice the largest block freed so
 * far: a stream of 2 MiB messages keeps them low enough that nearly every
 * buffer those libraries take is fresh memory, which the kernel maps and
 * clears page by page as the socket is read into it.  libnq's own large
 * buffers are kept for reuse instead (core/pool.c); these are not libnq's.
 *
 * So, once per process, the first gRPC or MQTT communicator sets both
 * thresholds to where glibc's sliding thresholds end anyway in a program
 * that once frees a 32 MiB block: blocks up to 32 MiB come from the heap,
 * and up to 64 MiB of free memory at the top of each heap is kept for the
 * next allocation.  That is memory a process may hold after a burst; the
 * environment decides otherwise:
 *   - NQ_MALLOC_TUNING=off leaves malloc as it is;
 *   - so does any malloc parameter the environment sets for glibc
 *     (GLIBC_TUNABLES glibc.malloc.*, MALLOC_MMAP_THRESHOLD_,
 *     MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_).
 * An application that calls mallopt itself should call it after nq_open,
 * or set NQ_MALLOC_TUNING=off.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"

/* What the first call found or did. */
static enum {
    HEAP_TUNED = 1,     /* the thresholds are set */
    HEAP_OFF,           /* NQ_MALLOC_TUNING=off */
    HEAP_APP_CHOSE,     /* the environment sets malloc's parameters */
    HEAP_NOT_GLIBC,     /* another malloc, or a sanitizer's */
} state;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int environment_chose(void)
{
    static const char *const names[] = {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                        "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (getenv(names[i]) != NULL) {
            return 1;
        }
    }
    const char *tunables = getenv("GLIBC_TUNABLES");
    return tunables != NULL && strstr(tunables, "glibc.malloc.") != NULL;
}

static void decide(void)
{
    const char *off = getenv("NQ_MALLOC_TUNING");
    if (off != NULL && (strcmp(off, "off") == 0 || strcmp(off, "0") == 0)) {
        state = HEAP_OFF;
    } else if (environment_chose()) {
        state = HEAP_APP_CHOSE;
    } else if (mallopt(M_MMAP_THRESHOLD, NQI_HEAP_MMAP_THRESHOLD) == 1 &&
               mallopt(M_TRIM_THRESHOLD, NQI_HEAP_TRIM_THRESHOLD) == 1) {
        state = HEAP_TUNED;
    } else {
        state = HEAP_NOT_GLIBC; /* a sanitizer's malloc answers 0 */
    }
}

void nqi_heap_tune(const nqi_log *log)
{
    static atomic_int logged;
    pthread_once(&once, decide);
    if (atomic_exchange(&logged, 1) == 0) {
        if (state == HEAP_TUNED) {
            nqi_logf(log, NQ_LOG_INFO,
                     "malloc: blocks up to %d MiB from the heap, up to %d MiB kept free at its "
                     "top (NQ_MALLOC_TUNING=off leaves malloc as it is)",
                     NQI_HEAP_MMAP_THRESHOLD >> 20, NQI_HEAP_TRIM_THRESHOLD >> 20);
        } else if (state == HEAP_APP_CHOSE) {
            nqi_logf(log, NQ_LOG_INFO, "malloc: left as the environment sets it");
        }
    }
}
