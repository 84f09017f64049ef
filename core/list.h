/*
 * list.h: one intrusive, circular, doubly linked list for every module (a
 * worker's sessions, MQTT's publishes in flight, gRPC's calls).  A node
 * lives inside the object it links; the list allocates nothing.  Not
 * thread-safe: each list belongs to one thread or one lock.
 */
#ifndef NQ_CORE_LIST_H
#define NQ_CORE_LIST_H

#include <stddef.h>

typedef struct nqi_node {
    struct nqi_node *next; /* NULL while not on a list */
    struct nqi_node *prev;
} nqi_node;

typedef struct nqi_list {
    nqi_node head; /* the sentinel */
} nqi_list;

/* The object of type holding node ptr in its field member. */
#define NQI_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void nqi_list_init(nqi_list *l)
{
    l->head.next = l->head.prev = &l->head;
}

/* Appends n, which must not be on a list. */
static inline void nqi_list_append(nqi_list *l, nqi_node *n)
{
    n->prev = l->head.prev;
    n->next = &l->head;
    l->head.prev->next = n;
    l->head.prev = n;
}

/* Takes n off its list; a node on no list is left alone. */
static inline void nqi_list_remove(nqi_node *n)
{
    if (n->next == NULL) {
        return;
    }
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* The first node, or NULL. */
static inline nqi_node *nqi_list_first(const nqi_list *l)
{
    return l->head.next == &l->head ? NULL : l->head.next;
}

/* The node after n, or NULL at the end.  To remove nodes while walking,
 * take the next one before removing the current one. */
static inline nqi_node *nqi_list_next(const nqi_list *l, const nqi_node *n)
{
    return n->next == &l->head ? NULL : n->next;
}

#endif
