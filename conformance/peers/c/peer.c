/*
 * nq_conformance_peer: the C conformance peer.  Runs one role of a case
 * from the case book on libnq and reports what it observes as JSON lines
 * (conformance/README.md).
 *
 *   nq_conformance_peer --role server|client --protocol tcp|tls|mqtt|grpc --port P
 *                       --case NAME [--host H] [--id UUID] [--key F] [--cert F] [--ca F]
 *                       [--client-auth optional|required] [--token T]
 *                       [--accept-token T --token-identity NAME] [--part LABEL]
 *                       [--clients N] [--timeout S] [--cases-file F]
 *   nq_conformance_peer --stdin [--cases-file F]
 *
 * With --stdin every line of standard input is one run: a JSON object with
 * the options' names as members plus "run", echoed in every line of that
 * run.  Runs go on in parallel, one thread each; the program ends once
 * standard input has ended and every run is done.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "run.h"

#ifndef CONFORMANCE_CASES_FILE
#define CONFORMANCE_CASES_FILE "cases.json"
#endif

/* A run that outlives its budget by this much is stuck: the process ends. */
#define WATCHDOG_SLACK_S 30

typedef struct runner {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    long active;
} runner;

typedef struct job {
    runner *owner;
    const json *book;
    run_spec spec;
} job;

static _Noreturn void usage(const char *problem)
{
    fprintf(stderr,
            "nq_conformance_peer: %s\n"
            "usage: nq_conformance_peer --role server|client --protocol tcp|tls|mqtt|grpc --port P\n"
            "           --case NAME [--host H] [--id UUID] [--key F] [--cert F] [--ca F]\n"
            "           [--client-auth optional|required] [--token T]\n"
            "           [--accept-token T --token-identity NAME] [--part LABEL]\n"
            "           [--clients N] [--timeout S] [--cases-file F]\n"
            "       nq_conformance_peer --stdin [--cases-file F]\n",
            problem);
    exit(2);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;

    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (cap - len < 4096) {
            char *grown = realloc(text, cap + 65536);
            if (grown == NULL) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = grown;
            cap += 65536;
        }
        size_t n = fread(text + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    fclose(f);
    text[len] = '\0';
    return text;
}

static json *load_book(const char *path)
{
    char *text = read_file(path);
    const char *error = NULL;
    json *book;

    if (text == NULL) {
        fprintf(stderr, "nq_conformance_peer: cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    book = json_parse(text, &error);
    free(text);
    if (book == NULL) {
        fprintf(stderr, "nq_conformance_peer: %s: %s\n", path, error);
        exit(2);
    }
    return book;
}

static long number_arg(const char *text)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0) {
        usage("expected a non-negative number");
    }
    return v;
}

static char *copy_arg(const char *text)
{
    char *copy = strdup(text);

    if (copy == NULL) {
        usage("out of memory");
    }
    return copy;
}

static void *run_job(void *arg)
{
    job *j = arg;
    runner *owner = j->owner;

    run_execute(j->book, &j->spec);
    run_spec_clear(&j->spec);
    free(j);
    pthread_mutex_lock(&owner->lock);
    if (--owner->active == 0) {
        pthread_cond_broadcast(&owner->idle);
    }
    pthread_mutex_unlock(&owner->lock);
    return NULL;
}

/* Starts one run per line of standard input; returns once input has ended
 * and every run is done. */
static void serve_stdin(const json *book)
{
    runner owner = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    char *line = NULL;
    size_t cap = 0;

    while (getline(&line, &cap, stdin) >= 0) {
        const char *error = NULL;
        json *obj = json_parse(line, &error);
        job *j;
        pthread_t thread;
        pthread_attr_t attr;

        if (obj == NULL) {
            if (strspn(line, " \t\r\n") != strlen(line)) {
                fprintf(stderr, "nq_conformance_peer: a run that is not JSON (%s): %s", error, line);
            }
            continue;
        }
        j = calloc(1, sizeof(*j));
        if (j == NULL || run_spec_from_json(&j->spec, obj) != 0) {
            fprintf(stderr, "nq_conformance_peer: out of memory for a run\n");
            free(j);
            json_free(obj);
            continue;
        }
        json_free(obj);
        j->owner = &owner;
        j->book = book;
        pthread_mutex_lock(&owner.lock);
        owner.active++;
        pthread_mutex_unlock(&owner.lock);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, run_job, j) != 0) {
            fprintf(stderr, "nq_conformance_peer: cannot start a thread; running the run inline\n");
            run_job(j);
        }
        pthread_attr_destroy(&attr);
    }
    free(line);
    pthread_mutex_lock(&owner.lock);
    while (owner.active > 0) {
        pthread_cond_wait(&owner.idle, &owner.lock);
    }
    pthread_mutex_unlock(&owner.lock);
}

int main(int argc, char **argv)
{
    const char *cases_file = CONFORMANCE_CASES_FILE;
    int from_stdin = 0;
    run_spec spec;
    json *book;

    memset(&spec, 0, sizeof(spec));
    spec.clients = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--stdin") == 0) {
            from_stdin = 1;
            continue;
        }
        if (v == NULL) {
            usage("an option needs a value");
        }
        i++;
        if (strcmp(a, "--cases-file") == 0) {
            cases_file = v;
        } else if (strcmp(a, "--role") == 0) {
            spec.role = copy_arg(v);
        } else if (strcmp(a, "--protocol") == 0) {
            spec.protocol = copy_arg(v);
        } else if (strcmp(a, "--host") == 0) {
            spec.host = copy_arg(v);
        } else if (strcmp(a, "--port") == 0) {
            spec.port = number_arg(v);
        } else if (strcmp(a, "--case") == 0) {
            spec.case_name = copy_arg(v);
        } else if (strcmp(a, "--id") == 0) {
            spec.id = copy_arg(v);
        } else if (strcmp(a, "--key") == 0) {
            spec.key = copy_arg(v);
        } else if (strcmp(a, "--cert") == 0) {
            spec.cert = copy_arg(v);
        } else if (strcmp(a, "--ca") == 0) {
            spec.ca = copy_arg(v);
        } else if (strcmp(a, "--client-auth") == 0) {
            spec.client_auth = copy_arg(v);
        } else if (strcmp(a, "--token") == 0) {
            spec.token = copy_arg(v);
        } else if (strcmp(a, "--accept-token") == 0) {
            spec.accept_token = copy_arg(v);
        } else if (strcmp(a, "--token-identity") == 0) {
            spec.token_identity = copy_arg(v);
        } else if (strcmp(a, "--part") == 0) {
            spec.part = copy_arg(v);
        } else if (strcmp(a, "--clients") == 0) {
            spec.clients = number_arg(v);
        } else if (strcmp(a, "--timeout") == 0) {
            spec.timeout_s = number_arg(v);
        } else {
            usage("unknown option");
        }
    }
    signal(SIGPIPE, SIG_IGN);
    book = load_book(cases_file);
    if (from_stdin) {
        serve_stdin(book);
    } else {
        if (spec.role == NULL || spec.case_name == NULL) {
            usage("--role and --case are required without --stdin");
        }
        spec.run = copy_arg("");
        if (spec.protocol == NULL) {
            spec.protocol = copy_arg("tcp");
        }
        if (spec.host == NULL) {
            spec.host = copy_arg("127.0.0.1");
        }
        alarm((unsigned)((spec.timeout_s > 0 ? spec.timeout_s : json_int(json_get(book, "timeout"), 60)) +
                         WATCHDOG_SLACK_S));
        run_execute(book, &spec);
        run_spec_clear(&spec);
    }
    json_free(book);
    return 0;
}
