/*
 * json.c: a recursive-descent JSON reader (RFC 8259), enough for the case
 * book and run specs: nesting is bounded, \u escapes become UTF-8 (surrogate
 * pairs included).
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct reader {
    const char *p;
    const char *error;
} reader;

static json *parse_value(reader *r, int depth);

static void skip_space(reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r') {
        r->p++;
    }
}

static json *new_node(reader *r, json_type type)
{
    json *node = calloc(1, sizeof(*node));

    if (node == NULL) {
        r->error = "out of memory";
        return NULL;
    }
    node->type = type;
    return node;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads a string after its opening quote into a malloc'd buffer.  Escapes
 * never grow the text (\uXXXX gives at most 4 bytes for 6), so the raw length
 * bounds the result. */
static char *parse_string(reader *r)
{
    const char *end = r->p;
    char *out;
    size_t n = 0;

    while (*end != '"') {
        if (*end == '\0') {
            r->error = "unterminated string";
            return NULL;
        }
        end += (*end == '\\' && end[1] != '\0') ? 2 : 1;
    }
    out = malloc((size_t)(end - r->p) + 1);
    if (out == NULL) {
        r->error = "out of memory";
        return NULL;
    }
    while (*r->p != '"') {
        char c = *r->p++;
        unsigned cp;

        if ((unsigned char)c < 0x20) {
            r->error = "control character in string";
            free(out);
            return NULL;
        }
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        c = *r->p++;
        switch (c) {
        case '"': case '\\': case '/':
            out[n++] = c;
            break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u':
            if (hex4(r->p, &cp) != 0) {
                r->error = "bad \\u escape";
                free(out);
                return NULL;
            }
            r->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && r->p[0] == '\\' && r->p[1] == 'u') {
                unsigned low;
                if (hex4(r->p + 2, &low) == 0 && low >= 0xdc00 && low < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                    r->p += 6;
                }
            }
            n += put_utf8(out + n, cp);
            break;
        default:
            r->error = "bad escape";
            free(out);
            return NULL;
        }
    }
    r->p++;
    out[n] = '\0';
    return out;
}

static json *parse_container(reader *r, int depth, int object)
{
    json *node = new_node(r, object ? JSON_OBJECT : JSON_ARRAY);
    json **tail;
    char close = object ? '}' : ']';

    if (node == NULL) {
        return NULL;
    }
    tail = &node->child;
    skip_space(r);
    if (*r->p == close) {
        r->p++;
        return node;
    }
    for (;;) {
        char *key = NULL;
        json *value;

        skip_space(r);
        if (object) {
            if (*r->p != '"') {
                r->error = "expected a member name";
                break;
            }
            r->p++;
            if ((key = parse_string(r)) == NULL) {
                break;
            }
            skip_space(r);
            if (*r->p != ':') {
                r->error = "expected ':'";
                free(key);
                break;
            }
            r->p++;
        }
        if ((value = parse_value(r, depth + 1)) == NULL) {
            free(key);
            break;
        }
        value->key = key;
        *tail = value;
        tail = &value->next;
        skip_space(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        if (*r->p == close) {
            r->p++;
            return node;
        }
        r->error = object ? "expected ',' or '}'" : "expected ',' or ']'";
        break;
    }
    json_free(node);
    return NULL;
}

static json *parse_value(reader *r, int depth)
{
    json *node;

    if (depth > MAX_DEPTH) {
        r->error = "nested too deeply";
        return NULL;
    }
    skip_space(r);
    switch (*r->p) {
    case '{':
        r->p++;
        return parse_container(r, depth, 1);
    case '[':
        r->p++;
        return parse_container(r, depth, 0);
    case '"':
        r->p++;
        if ((node = new_node(r, JSON_STRING)) == NULL) {
            return NULL;
        }
        if ((node->string = parse_string(r)) == NULL) {
            free(node);
            return NULL;
        }
        return node;
    case 't':
    case 'f':
    case 'n': {
        static const struct { const char *word; json_type type; double value; } words[] = {
            {"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
            size_t n = strlen(words[i].word);
            if (strncmp(r->p, words[i].word, n) == 0) {
                r->p += n;
                if ((node = new_node(r, words[i].type)) != NULL) {
                    node->number = words[i].value;
                }
                return node;
            }
        }
        r->error = "unknown word";
        return NULL;
    }
    default: {
        char *end;
        double v = strtod(r->p, &end);
        if (end == r->p || !(*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))) {
            r->error = "unexpected character";
            return NULL;
        }
        r->p = end;
        if ((node = new_node(r, JSON_NUMBER)) != NULL) {
            node->number = v;
        }
        return node;
    }
    }
}

json *json_parse(const char *text, const char **error)
{
    reader r = {text, NULL};
    json *root = parse_value(&r, 0);

    if (root != NULL) {
        skip_space(&r);
        if (*r.p != '\0') {
            r.error = "text after the value";
            json_free(root);
            root = NULL;
        }
    }
    if (root == NULL && error != NULL) {
        *error = r.error != NULL ? r.error : "invalid JSON";
    }
    return root;
}

void json_free(json *node)
{
    while (node != NULL) {
        json *next = node->next;
        json_free(node->child);
        free(node->string);
        free(node->key);
        free(node);
        node = next;
    }
}

const json *json_get(const json *node, const char *key)
{
    if (node == NULL || node->type != JSON_OBJECT) {
        return NULL;
    }
    for (const json *m = node->child; m != NULL; m = m->next) {
        if (strcmp(m->key, key) == 0) {
            return m;
        }
    }
    return NULL;
}

const char *json_string(const json *node, const char *fallback)
{
    return node != NULL && node->type == JSON_STRING ? node->string : fallback;
}

int64_t json_int(const json *node, int64_t fallback)
{
    return node != NULL && node->type == JSON_NUMBER ? (int64_t)node->number : fallback;
}

int json_true(const json *node)
{
    return node != NULL && node->type == JSON_BOOL && node->number != 0;
}
