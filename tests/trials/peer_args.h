/*
 * peer_args.h: what the trials' C peers (load_peer.c, trial_peer.c,
 * hostile_peer.c) share: the clock their report lines go by, the report
 * line itself, and their "--name value" options, read through a table.
 * Header-only, for one peer program each.
 */
#ifndef NQT_PEER_ARGS_H
#define NQT_PEER_ARGS_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nq/nq.h>

static struct timespec nqt_peer_started;

/* Starts the clock of the report lines; first thing in main. */
static inline void nqt_peer_clock_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &nqt_peer_started);
}

/* Milliseconds since nqt_peer_clock_start. */
static inline int64_t nqt_peer_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - nqt_peer_started.tv_sec) * 1000 +
           (now.tv_nsec - nqt_peer_started.tv_nsec) / 1000000;
}

/* One report line, "<ms since start> <text>", written whole (threads may
 * report at once) and flushed: the trial scripts read them as they come. */
static inline void nqt_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void nqt_report(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    flockfile(stdout);
    printf("%" PRId64 " %s\n", nqt_peer_ms(), line);
    fflush(stdout);
    funlockfile(stdout);
}

/* What an option's value is read into. */
typedef enum nqt_opt_kind {
    NQT_OPT_INT,      /* int *                                               */
    NQT_OPT_LONG,     /* long *                                              */
    NQT_OPT_I64,      /* int64_t *                                           */
    NQT_OPT_STR,      /* const char ** (the argv string itself)              */
    NQT_OPT_ID,       /* nq_id *, and flag: int * set to 1 (a bad id fails)  */
    NQT_OPT_PROTOCOL  /* nq_protocol *, and flag: int * set to 1 for "tls"
                       * (tcp and tls are NQ_TCP; mqtt, grpc)                */
} nqt_opt_kind;

typedef struct nqt_opt {
    const char *name; /* with its dashes: "--port" */
    nqt_opt_kind kind;
    void *at;
    int *flag;
} nqt_opt;

static inline int nqt_opt_read(const nqt_opt *o, const char *v)
{
    char *end = NULL;
    switch (o->kind) {
    case NQT_OPT_INT:
        *(int *)o->at = (int)strtol(v, &end, 10);
        break;
    case NQT_OPT_LONG:
        *(long *)o->at = strtol(v, &end, 10);
        break;
    case NQT_OPT_I64:
        *(int64_t *)o->at = (int64_t)strtoll(v, &end, 10);
        break;
    case NQT_OPT_STR:
        *(const char **)o->at = v;
        return 0;
    case NQT_OPT_ID:
        *o->flag = nq_id_parse(v, (nq_id *)o->at) == NQ_OK;
        return *o->flag ? 0 : -1;
    case NQT_OPT_PROTOCOL:
        *o->flag = strcmp(v, "tls") == 0;
        if (strcmp(v, "tcp") == 0 || *o->flag) {
            *(nq_protocol *)o->at = NQ_TCP;
        } else if (strcmp(v, "mqtt") == 0) {
            *(nq_protocol *)o->at = NQ_MQTT;
        } else if (strcmp(v, "grpc") == 0) {
            *(nq_protocol *)o->at = NQ_GRPC;
        } else {
            return -1;
        }
        return 0;
    }
    return end != NULL && end != v && *end == '\0' ? 0 : -1;
}

/* Reads argv[first..] as "--name value" pairs by the table opts (n
 * entries).  Returns 0, or -1 after saying on stderr which option is
 * unknown, has no value or a bad one. */
static inline int nqt_parse_opts(const nqt_opt *opts, size_t n, int first, int argc, char **argv)
{
    for (int i = first; i < argc; i += 2) {
        const nqt_opt *o = NULL;
        for (size_t j = 0; j < n && o == NULL; j++) {
            o = strcmp(opts[j].name, argv[i]) == 0 ? &opts[j] : NULL;
        }
        if (o == NULL) {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", argv[i]);
            return -1;
        }
        if (nqt_opt_read(o, argv[i + 1]) != 0) {
            fprintf(stderr, "bad value for %s: %s\n", argv[i], argv[i + 1]);
            return -1;
        }
    }
    return 0;
}

#endif
