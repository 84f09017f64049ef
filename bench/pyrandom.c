/* CPython's random.seed(n) and random.shuffle(), for identical orders. */
#include "pyrandom.h"

#include <string.h>

enum { MT_N = 624, MT_M = 397 };

static void init_genrand(py_random *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++) {
        r->mt[i] = 1812433253U * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    }
    r->index = MT_N;
}

/* CPython seeds from an integer through init_by_array with its 32-bit
 * words, least significant first; 0 is the one-word key {0}. */
void py_random_seed(py_random *r, uint32_t seed)
{
    const uint32_t key[1] = { seed };
    const int key_length = 1;
    int i = 1;
    int j = 0;

    init_genrand(r, 19650218U);
    for (int k = MT_N > key_length ? MT_N : key_length; k > 0; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525U)) + key[j] +
                   (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
        if (j >= key_length) {
            j = 0;
        }
    }
    for (int k = MT_N - 1; k > 0; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941U)) -
                   (uint32_t)i;
        i++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000U;
    r->index = MT_N;
}

static uint32_t genrand_uint32(py_random *r)
{
    static const uint32_t mag01[2] = { 0x0U, 0x9908b0dfU };
    uint32_t y;

    if (r->index >= MT_N) {
        int kk;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (r->mt[kk] & 0x80000000U) | (r->mt[kk + 1] & 0x7fffffffU);
            r->mt[kk] = r->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1U];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (r->mt[kk] & 0x80000000U) | (r->mt[kk + 1] & 0x7fffffffU);
            r->mt[kk] = r->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1U];
        }
        y = (r->mt[MT_N - 1] & 0x80000000U) | (r->mt[0] & 0x7fffffffU);
        r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1U];
        r->index = 0;
    }
    y = r->mt[r->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* random.getrandbits(k) for 1 <= k <= 64: whole 32-bit words, least
 * significant first, the last one shifted down to the bits still wanted. */
static uint64_t getrandbits(py_random *r, int k)
{
    if (k <= 32) {
        return genrand_uint32(r) >> (32 - k);
    }
    uint64_t low = genrand_uint32(r);
    uint64_t high = genrand_uint32(r) >> (64 - k);
    return low | (high << 32);
}

/* random._randbelow(n) for n >= 1. */
static uint64_t randbelow(py_random *r, uint64_t n)
{
    int k = 0;
    for (uint64_t v = n; v != 0; v >>= 1) {
        k++;
    }
    uint64_t x = getrandbits(r, k);
    while (x >= n) {
        x = getrandbits(r, k);
    }
    return x;
}

void py_random_shuffle(py_random *r, void *items, size_t n, size_t elem_size)
{
    unsigned char *base = items;
    unsigned char tmp[64];

    if (elem_size > sizeof(tmp)) {
        return;
    }
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)randbelow(r, (uint64_t)i + 1);
        memcpy(tmp, base + i * elem_size, elem_size);
        memcpy(base + i * elem_size, base + j * elem_size, elem_size);
        memcpy(base + j * elem_size, tmp, elem_size);
    }
}
