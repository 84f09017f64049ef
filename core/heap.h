/*
 * heap.h: glibc's malloc settings for the transports whose receive buffers
 * another library allocates (core/heap.c).
 */
#ifndef NQ_CORE_HEAP_H
#define NQ_CORE_HEAP_H

#include "core/base.h"

/* Sets glibc's M_MMAP_THRESHOLD to NQI_HEAP_MMAP_THRESHOLD and
 * M_TRIM_THRESHOLD to NQI_HEAP_TRIM_THRESHOLD, the values glibc's own
 * sliding thresholds reach once a program frees a 32 MiB block, unless the
 * environment says otherwise.  The first call decides, and logs what it
 * did on log; later ones do nothing. */
#define NQI_HEAP_MMAP_THRESHOLD (32 << 20)
#define NQI_HEAP_TRIM_THRESHOLD (64 << 20)
void nqi_heap_tune(const nqi_log *log);

#endif
