/*
 * pyrandom.h: CPython's random.seed(n) and random.shuffle(x), bit for bit,
 * so bench/iops sends its messages in the same order as net-queue's
 * iops.py (which calls random.seed(0) before shuffling).
 *
 * CPython's generator is MT19937 seeded through init_by_array with the
 * seed's 32-bit words; shuffle is Fisher-Yates from the end, drawing each
 * index with _randbelow (getrandbits(k) with rejection, k = n.bit_length()).
 */
#ifndef NQ_BENCH_PYRANDOM_H
#define NQ_BENCH_PYRANDOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct py_random {
    uint32_t mt[624];
    int index;
} py_random;

/* random.seed(seed) for a non-negative integer seed below 2^32. */
void py_random_seed(py_random *r, uint32_t seed);

/* random.shuffle() of n elements of elem_size bytes each. */
void py_random_shuffle(py_random *r, void *items, size_t n, size_t elem_size);

#endif /* NQ_BENCH_PYRANDOM_H */
