/*
 * tally.h: received messages grouped by sender, as every peer reports them:
 * per sender, in order of its first message, a count, a SHA-256 over each
 * message's 8-byte big-endian length and bytes, and the first few messages'
 * lengths and leading bytes (conformance/README.md).
 */
#ifndef CONFORMANCE_TALLY_H
#define CONFORMANCE_TALLY_H

#include <stddef.h>

#include <nq/nq.h>

#include "report.h"

typedef struct tally tally;

/* A new, empty tally (NULL when memory ran out); free it with tally_free. */
tally *tally_new(void);

/* Counts one message from peer.  Returns NQ_OK or NQ_ENOMEM. */
int tally_add(tally *t, const nq_id *peer, const void *data, size_t len);

/* The number of messages counted. */
size_t tally_count(const tally *t);

/* Appends ,"count":N,"from":[...] to b. */
void tally_write(const tally *t, jbuf *b);

void tally_free(tally *t);

#endif /* CONFORMANCE_TALLY_H */
