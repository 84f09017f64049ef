/*
 * report.h: the peer's observations, written as JSON lines on standard
 * output.  A line is built in a jbuf, then written whole under one lock, so
 * runs on several threads never interleave their lines.
 */
#ifndef CONFORMANCE_REPORT_H
#define CONFORMANCE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <nq/nq.h>

/* A growing text buffer.  On allocation failure it stops growing and
 * report_line writes an error event instead. */
typedef struct jbuf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} jbuf;

void jb_init(jbuf *b);
void jb_free(jbuf *b);
/* Appends text as it is. */
void jb_raw(jbuf *b, const char *text);
/* Appends text as a quoted JSON string. */
void jb_str(jbuf *b, const char *text);
/* Appends printf-formatted text. */
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts a line for run: {"run":"<run>", */
void jb_start(jbuf *b, const char *run);

/* Ends the line with "}" and writes it with a newline to standard output,
 * then resets b for the next line. */
void report_line(jbuf *b);

/* The observation name of a libnq result ("ok", "no_peer", "tls", ...). */
const char *report_error_name(int err);

/* Appends ,"result":"<name>" and, for a failure, ,"detail":"<nq_strerror>". */
void jb_result(jbuf *b, int err);

#endif /* CONFORMANCE_REPORT_H */
