/*
 * Small blocks: frames, futures and their copied payloads are allocated by
 * the thread that puts and freed by an I/O thread, millions of times a
 * second.  With malloc alone the two threads meet on the lock of the arena
 * the block came from.  Here a thread keeps the blocks it frees in a list
 * per size class; once the list holds TLS_MAX blocks it is handed whole to a
 * shared stack, and a thread that has no block of its own left takes the
 * whole shared stack.  Both are single atomic operations, and neither reads
 * a block another thread may be taking (no ABA: the stack is pushed to and
 * emptied whole, never popped one block at a time).
 *
 * The shared stack holds about SHARED_MAX blocks per class at most; beyond
 * that blocks go back to malloc.  A thread's blocks are handed over (or
 * freed) when it exits.
 * Large blocks (received payloads from LARGE_MIN up) are kept for reuse
 * too, a few at a time and at most LARGE_KEPT bytes in all: a fresh large
 * allocation is memory the kernel must map and clear page by page as the
 * socket writes into it, and malloc hands freed large blocks back to the
 * kernel (so a stream of 2 MiB messages would take a page fault every
 * 4 KiB received).
 * Under AddressSanitizer blocks go straight to malloc and free, so that a
 * use after free is still caught.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOLED 0
#endif
#endif
#ifndef POOLED
#define POOLED 1
#endif

enum { CLASSES = 4, TLS_MAX = 128, SHARED_MAX = 4096 };
static const size_t class_size[CLASSES] = {128, 256, 512, 1024};
#define UNPOOLED 0xffu

/* In front of every block; keeps the block 16-byte aligned. */
typedef struct block {
    alignas(16) struct block *next;
    unsigned cls;
} block;

enum { LARGE_SLOTS = 4 };
#define LARGE_MIN ((size_t)256 * 1024)
#define LARGE_KEPT ((size_t)16 * 1024 * 1024)

/* Kept large blocks and their usable sizes, under large_mu. */
static pthread_mutex_t large_mu = PTHREAD_MUTEX_INITIALIZER;
static struct block *large[LARGE_SLOTS];
static size_t large_size[LARGE_SLOTS];
static size_t large_total;

/* A thread's blocks: those it freed itself (own, counted, with a tail so
 * that they can be handed over in one piece) and those it took from the
 * shared stack (taken; only allocated from). */
typedef struct tls_cache {
    block *own[CLASSES];
    block *own_tail[CLASSES];
    unsigned own_count[CLASSES];
    block *taken[CLASSES];
    int registered;
} tls_cache;

static _Atomic(block *) shared_head[CLASSES];
static atomic_int shared_count[CLASSES];
static _Thread_local tls_cache cache;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static int class_of(size_t n)
{
    for (int i = 0; i < CLASSES; i++) {
        if (n <= class_size[i]) {
            return i;
        }
    }
    return -1;
}

static void free_chain(block *b)
{
    while (b != NULL) {
        block *next = b->next;
        free(b);
        b = next;
    }
}

/* Pushes the chain first..last of n blocks onto the shared stack, or frees
 * it when the stack holds enough.  The count is approximate (see take_all),
 * which only loosens the bound a little. */
static void shared_push(unsigned cls, block *first, block *last, unsigned n)
{
    if (atomic_fetch_add_explicit(&shared_count[cls], (int)n, memory_order_relaxed) >= SHARED_MAX) {
        atomic_fetch_sub_explicit(&shared_count[cls], (int)n, memory_order_relaxed);
        free_chain(first);
        return;
    }
    block *old = atomic_load_explicit(&shared_head[cls], memory_order_relaxed);
    do {
        last->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&shared_head[cls], &old, first,
                                                    memory_order_release, memory_order_relaxed));
}

/* Takes the whole shared stack.  Pushes that land between the exchange and
 * the reset are not counted until the next take. */
static block *take_all(unsigned cls)
{
    block *b = atomic_exchange_explicit(&shared_head[cls], NULL, memory_order_acquire);
    if (b != NULL) {
        atomic_store_explicit(&shared_count[cls], 0, memory_order_relaxed);
    }
    return b;
}

static void hand_over_own(unsigned cls)
{
    if (cache.own[cls] != NULL) {
        shared_push(cls, cache.own[cls], cache.own_tail[cls], cache.own_count[cls]);
    }
    cache.own[cls] = cache.own_tail[cls] = NULL;
    cache.own_count[cls] = 0;
}

static void thread_exit(void *arg)
{
    (void)arg;
    cache.registered = 0; /* a later free in another destructor registers again */
    for (unsigned i = 0; i < CLASSES; i++) {
        hand_over_own(i);
        free_chain(cache.taken[i]);
        cache.taken[i] = NULL;
    }
}

static void make_exit_key(void)
{
    (void)pthread_key_create(&exit_key, thread_exit);
}

/* Asks for thread_exit at this thread's end (once per thread). */
static void register_thread(void)
{
    cache.registered = 1;
    pthread_once(&exit_once, make_exit_key);
    (void)pthread_setspecific(exit_key, &cache);
}

/* A kept block of at least n bytes (and not much more), or NULL. */
static block *large_take(size_t n)
{
    block *b = NULL;
    pthread_mutex_lock(&large_mu);
    for (int i = 0; i < LARGE_SLOTS; i++) {
        size_t have = large_size[i];
        if (large[i] != NULL && have >= n && have - n <= n / 2) {
            b = large[i];
            large[i] = NULL;
            large_total -= have;
            break;
        }
    }
    pthread_mutex_unlock(&large_mu);
    return b;
}

/* Keeps b for reuse if there is room; returns 0 if the caller must free it. */
static int large_keep(block *b, size_t size)
{
    int kept = 0;
    pthread_mutex_lock(&large_mu);
    if (large_total + size <= LARGE_KEPT) {
        for (int i = 0; i < LARGE_SLOTS && !kept; i++) {
            if (large[i] == NULL) {
                large[i] = b;
                large_size[i] = size;
                large_total += size;
                kept = 1;
            }
        }
    }
    pthread_mutex_unlock(&large_mu);
    return kept;
}

static size_t usable(block *b)
{
    return malloc_usable_size(b) - sizeof(block);
}

void *nqi_block_alloc(size_t n)
{
    int cls = POOLED ? class_of(n) : -1;
    if (cls >= 0) {
        block *b = cache.own[cls];
        if (b != NULL) {
            cache.own[cls] = b->next;
            if (--cache.own_count[cls] == 0) {
                cache.own_tail[cls] = NULL;
            }
            return b + 1;
        }
        if ((b = cache.taken[cls]) == NULL && (b = take_all((unsigned)cls)) != NULL &&
            !cache.registered) {
            register_thread();
        }
        if (b != NULL) {
            cache.taken[cls] = b->next;
            return b + 1;
        }
    }
    if (POOLED && cls < 0 && n >= LARGE_MIN && n <= LARGE_KEPT) {
        block *b = large_take(n);
        if (b != NULL) {
            return b + 1;
        }
    }
    size_t size = cls >= 0 ? class_size[cls] : n;
    block *b = malloc(sizeof(block) + size);
    if (b == NULL) {
        return NULL;
    }
    b->cls = cls >= 0 ? (unsigned)cls : UNPOOLED;
    return b + 1;
}

void *nqi_block_calloc(size_t n)
{
    void *p = nqi_block_alloc(n);
    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

void nqi_block_free(void *p)
{
    if (p == NULL) {
        return;
    }
    block *b = (block *)p - 1;
    unsigned cls = b->cls;
    if (cls == UNPOOLED) {
        if (POOLED) {
            size_t size = usable(b);
            if (size >= LARGE_MIN && size <= LARGE_KEPT && large_keep(b, size)) {
                return;
            }
        }
        free(b);
        return;
    }
    if (!cache.registered) {
        register_thread();
    }
    b->next = cache.own[cls];
    cache.own[cls] = b;
    if (cache.own_count[cls]++ == 0) {
        cache.own_tail[cls] = b;
    }
    if (cache.own_count[cls] >= TLS_MAX) {
        /* Enough for this thread: the others may need them. */
        hand_over_own(cls);
    }
}

void *nqi_block_realloc(void *p, size_t n)
{
    if (p == NULL) {
        return nqi_block_alloc(n);
    }
    block *b = (block *)p - 1;
    if (b->cls == UNPOOLED) {
        block *nb = realloc(b, sizeof(block) + n);
        return nb != NULL ? nb + 1 : NULL;
    }
    size_t have = class_size[b->cls];
    if (n <= have) {
        return p;
    }
    void *np = nqi_block_alloc(n);
    if (np != NULL) {
        memcpy(np, p, have);
        nqi_block_free(p);
    }
    return np;
}

size_t nqi_block_kept_bytes(void)
{
    pthread_mutex_lock(&large_mu);
    size_t total = large_total;
    pthread_mutex_unlock(&large_mu);
    return total;
}

void nqi_block_drop_kept(void)
{
    pthread_mutex_lock(&large_mu);
    for (int i = 0; i < LARGE_SLOTS; i++) {
        free(large[i]);
        large[i] = NULL;
        large_size[i] = 0;
    }
    large_total = 0;
    pthread_mutex_unlock(&large_mu);
}

int nqi_block_pooled(void)
{
    return POOLED;
}
