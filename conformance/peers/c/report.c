/*
 * report.c: JSON lines on standard output, one writer at a time.
 */
#include "report.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

void jb_init(jbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void jb_free(jbuf *b)
{
    free(b->data);
    jb_init(b);
}

static int reserve(jbuf *b, size_t more)
{
    size_t cap;
    char *grown;

    if (b->failed) {
        return -1;
    }
    if (b->len + more + 1 <= b->cap) {
        return 0;
    }
    cap = b->cap == 0 ? 256 : b->cap;
    while (cap < b->len + more + 1) {
        cap *= 2;
    }
    grown = realloc(b->data, cap);
    if (grown == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

static void append(jbuf *b, const char *text, size_t n)
{
    if (reserve(b, n) == 0) {
        memcpy(b->data + b->len, text, n);
        b->len += n;
        b->data[b->len] = '\0';
    }
}

void jb_raw(jbuf *b, const char *text)
{
    append(b, text, strlen(text));
}

void jb_str(jbuf *b, const char *text)
{
    append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            append(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            append(b, esc, 6);
        } else {
            append(b, (const char *)p, 1);
        }
    }
    append(b, "\"", 1);
}

void jb_printf(jbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void jb_start(jbuf *b, const char *run)
{
    b->len = 0;
    b->failed = 0;
    jb_raw(b, "{\"run\":");
    jb_str(b, run);
}

void report_line(jbuf *b)
{
    jb_raw(b, "}\n");
    pthread_mutex_lock(&out_lock);
    if (b->failed) {
        fputs("{\"event\":\"error\",\"detail\":\"out of memory writing a report\"}\n", stdout);
    } else {
        fwrite(b->data, 1, b->len, stdout);
    }
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    b->len = 0;
    b->failed = 0;
}

const char *report_error_name(int err)
{
    static const char *const names[] = {
        "ok", "invalid", "no_memory", "timeout", "closed", "connection_reset", "no_peer", "tls",
        "protocol", "refused", "address", "address_in_use", "not_supported", "system", "full",
        "serialize", "pending", "replaced", "canceled", "auth"};

    if (err <= 0 && -err < (int)(sizeof(names) / sizeof(names[0]))) {
        return names[-err];
    }
    return "unknown";
}

void jb_result(jbuf *b, int err)
{
    jb_raw(b, ",\"result\":");
    jb_str(b, report_error_name(err));
    if (err != NQ_OK) {
        jb_raw(b, ",\"detail\":");
        jb_str(b, nq_strerror(err));
    }
}
