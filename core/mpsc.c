/* An intrusive many-producer, one-consumer queue (after Dmitry Vyukov's
 * design): a push is one atomic exchange, so caller threads never take a
 * lock to hand work to an I/O thread. */
#include "core/base.h"

void nqi_mpsc_init(nqi_mpsc *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->head, &q->stub);
    q->tail = &q->stub;
}

void nqi_mpsc_push(nqi_mpsc *q, nqi_mpsc_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    nqi_mpsc_node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

nqi_mpsc_node *nqi_mpsc_pop(nqi_mpsc *q)
{
    nqi_mpsc_node *tail = q->tail;
    nqi_mpsc_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &q->stub) {
        if (next == NULL) {
            return NULL;
        }
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire)) {
        return NULL; /* a producer is between its exchange and its link */
    }
    nqi_mpsc_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    return NULL;
}

int nqi_mpsc_empty(nqi_mpsc *q)
{
    /* A tail other than the stub is a node not yet taken; a head other
     * than the stub, a push under way or done. */
    return q->tail == &q->stub &&
           atomic_load_explicit(&q->stub.next, memory_order_acquire) == NULL &&
           atomic_load_explicit(&q->head, memory_order_acquire) == &q->stub;
}
