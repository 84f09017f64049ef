/*
 * tally.c: per-sender counts and digests of received messages.
 */
#include "tally.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* As in casebook.py: items listed per sender, and bytes shown per item. */
#define ITEMS_MAX 16
#define ITEM_PREFIX 8

typedef struct item {
    size_t len;
    uint8_t prefix[ITEM_PREFIX];
} item;

typedef struct group {
    nq_id peer;
    size_t count;
    EVP_MD_CTX *md;
    item items[ITEMS_MAX];
} group;

struct tally {
    group *groups;
    size_t n;
    size_t cap;
    size_t total;
};

tally *tally_new(void)
{
    return calloc(1, sizeof(tally));
}

static group *group_for(tally *t, const nq_id *peer)
{
    group *g;

    for (size_t i = 0; i < t->n; i++) {
        if (nq_id_equal(&t->groups[i].peer, peer)) {
            return &t->groups[i];
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap == 0 ? 4 : t->cap * 2;
        group *grown = realloc(t->groups, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        t->groups = grown;
        t->cap = cap;
    }
    g = &t->groups[t->n];
    memset(g, 0, sizeof(*g));
    g->peer = *peer;
    g->md = EVP_MD_CTX_new();
    if (g->md == NULL || EVP_DigestInit_ex(g->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(g->md);
        return NULL;
    }
    t->n++;
    return g;
}

int tally_add(tally *t, const nq_id *peer, const void *data, size_t len)
{
    group *g = group_for(t, peer);
    uint8_t header[8];

    if (g == NULL) {
        return NQ_ENOMEM;
    }
    for (int i = 0; i < 8; i++) {
        header[i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    EVP_DigestUpdate(g->md, header, sizeof(header));
    if (len > 0) {
        EVP_DigestUpdate(g->md, data, len);
    }
    if (g->count < ITEMS_MAX) {
        item *it = &g->items[g->count];
        it->len = len;
        memcpy(it->prefix, data, len < ITEM_PREFIX ? len : ITEM_PREFIX);
    }
    g->count++;
    t->total++;
    return NQ_OK;
}

size_t tally_count(const tally *t)
{
    return t->total;
}

void tally_write(const tally *t, jbuf *b)
{
    jb_printf(b, ",\"count\":%zu,\"from\":[", t->total);
    for (size_t i = 0; i < t->n; i++) {
        const group *g = &t->groups[i];
        char peer[NQ_ID_STRLEN];
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_MD_CTX *copy = EVP_MD_CTX_new();

        nq_id_format(&g->peer, peer, sizeof(peer));
        if (copy == NULL || EVP_MD_CTX_copy_ex(copy, g->md) != 1 ||
            EVP_DigestFinal_ex(copy, md, &mdlen) != 1) {
            b->failed = 1;
        }
        EVP_MD_CTX_free(copy);
        jb_raw(b, i == 0 ? "{\"peer\":" : ",{\"peer\":");
        jb_str(b, peer);
        jb_printf(b, ",\"count\":%zu,\"digest\":\"", g->count);
        for (unsigned int k = 0; k < mdlen; k++) {
            jb_printf(b, "%02x", md[k]);
        }
        jb_raw(b, "\",\"items\":[");
        for (size_t k = 0; k < g->count && k < ITEMS_MAX; k++) {
            const item *it = &g->items[k];
            jb_printf(b, "%s[%zu,\"", k == 0 ? "" : ",", it->len);
            for (size_t j = 0; j < it->len && j < ITEM_PREFIX; j++) {
                jb_printf(b, "%02x", it->prefix[j]);
            }
            jb_raw(b, "\"]");
        }
        jb_raw(b, "]}");
    }
    jb_raw(b, "]");
}

void tally_free(tally *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        EVP_MD_CTX_free(t->groups[i].md);
    }
    free(t->groups);
    free(t);
}
