/*
 * json.h: a small JSON reader for the conformance peer (cases.json and the
 * run specs read from standard input).  It builds a tree of nodes that the
 * caller owns and frees with json_free.  Numbers are kept as doubles, which
 * holds every integer the cases use exactly.
 */
#ifndef CONFORMANCE_JSON_H
#define CONFORMANCE_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json json;
struct json {
    json_type type;
    double number;  /* JSON_NUMBER; JSON_BOOL: 0 or 1 */
    char *string;   /* JSON_STRING: the text, NUL-terminated */
    char *key;      /* a member of an object: its name */
    json *child;    /* JSON_ARRAY, JSON_OBJECT: the first element or member */
    json *next;     /* the next element or member of the parent */
};

/* Parses text (NUL-terminated).  Returns the tree, or NULL when text is not
 * JSON or memory ran out; then *error (if not NULL) points at a static
 * description. */
json *json_parse(const char *text, const char **error);

/* Frees a tree from json_parse.  NULL allowed. */
void json_free(json *node);

/* The member called key of an object, or NULL (also when node is NULL or
 * not an object). */
const json *json_get(const json *node, const char *key);

/* The string of a JSON_STRING node, else fallback. */
const char *json_string(const json *node, const char *fallback);

/* The value of a JSON_NUMBER node as an integer, else fallback. */
int64_t json_int(const json *node, int64_t fallback);

/* 1 for JSON true, 0 for anything else. */
int json_true(const json *node);

#endif /* CONFORMANCE_JSON_H */
