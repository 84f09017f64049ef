/*
 * heap.h: glibc's malloc settings for the transports whose receive buffers
 * another library allocates (core/heap.c).
 */
#ifndef NQ_CORE_HEAP_H
#define NQ_CORE_HEAP_H

#include "core/base.h"

/* What nqi_heap_tune found or did, once per process. */
typedef enum nqi_heap_state {
    NQI_HEAP_TUNED = 1,       /* the thresholds below are set */
    NQI_HEAP_OFF = 2,         /* NQ_MALLOC_TUNING=off */
    NQI_HEAP_APP_CHOSE = 3,   /* the environment sets malloc's parameters */
    NQI_HEAP_NOT_GLIBC = 4,   /* another malloc, or a sanitizer's */
} nqi_heap_state;

/* Sets glibc's M_MMAP_THRESHOLD to NQI_HEAP_MMAP_THRESHOLD and
 * M_TRIM_THRESHOLD to NQI_HEAP_TRIM_THRESHOLD, the values glibc's own
 * sliding thresholds reach once a program frees a 32 MiB block, unless the
 * environment says otherwise; the first call decides, later ones return its
 * answer and log nothing.  Logs what it did on log. */
#define NQI_HEAP_MMAP_THRESHOLD (32 << 20)
#define NQI_HEAP_TRIM_THRESHOLD (64 << 20)
nqi_heap_state nqi_heap_tune(const nqi_log *log);

#endif
