/*
 * pool.h: small blocks shared across threads (core/pool.c) for frames,
 * futures, commands, received messages and their payloads.  A block from
 * these functions is freed only with nqi_block_free.
 */
#ifndef NQ_CORE_POOL_H
#define NQ_CORE_POOL_H

#include <stddef.h>

void *nqi_block_alloc(size_t n);
void *nqi_block_calloc(size_t n);
/* Like realloc, for blocks from nqi_block_alloc (NULL: a new block). */
void *nqi_block_realloc(void *p, size_t n);
void nqi_block_free(void *p);
/* Bytes of large blocks kept for reuse, and freeing them all (for tests),
 * and whether blocks are pooled at all (not under AddressSanitizer). */
size_t nqi_block_kept_bytes(void);
void nqi_block_drop_kept(void);
int nqi_block_pooled(void);

#endif
