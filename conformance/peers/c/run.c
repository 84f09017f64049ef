/*
 * run.c: the step interpreter of the C peer.  Each step of the role is run
 * in order and reported as one line; conformance/README.md is the
 * reference, casebook.py and peers/python/peer.py the same rules in Python.
 */
#define _POSIX_C_SOURCE 200809L

#include "run.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nq/nq.h>

#include "report.h"
#include "tally.h"

/* The step index reported for the open inside a reopen: JSON null. */
#define STEP_NONE INT_MIN

typedef struct run_state {
    const run_spec *spec;
    nq_comm *comm;
    nq_id id;
    nq_protocol protocol;
    int closed;
    int64_t timeout_ms;
    int64_t deadline_ms;
    nq_id *senders;
    size_t nsenders;
    size_t senders_cap;
    nq_msg **last;
    size_t nlast;
    size_t last_cap;
    /* A zero-copy put that timed out may still read the messages in last:
     * they are then never freed. */
    int last_pinned;
    jbuf out;
} run_state;

static const char *const ops[] = {"put", "expect", "echo", "close", "drain", "sleep", "reopen",
                                  "identity"};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t remaining_ms(const run_state *st)
{
    int64_t left = st->deadline_ms - now_ms();

    return left > 0 ? left : 0;
}

/* ---- lines ------------------------------------------------------------- */

static void line_step(run_state *st, int index, const char *op)
{
    jb_start(&st->out, st->spec->run);
    if (index == STEP_NONE) {
        jb_raw(&st->out, ",\"step\":null");
    } else {
        jb_printf(&st->out, ",\"step\":%d", index);
    }
    jb_raw(&st->out, ",\"op\":");
    jb_str(&st->out, op);
}

static void emit_event(run_state *st, const char *event, const char *detail)
{
    jb_start(&st->out, st->spec->run);
    jb_raw(&st->out, ",\"event\":");
    jb_str(&st->out, event);
    if (detail != NULL) {
        jb_raw(&st->out, ",\"detail\":");
        jb_str(&st->out, detail);
    }
    report_line(&st->out);
}

/* ---- the case book ---------------------------------------------------- */

static const json *find_case(const json *book, const char *name)
{
    const json *cases = json_get(book, "cases");

    for (const json *c = cases != NULL ? cases->child : NULL; c != NULL; c = c->next) {
        if (strcmp(json_string(json_get(c, "name"), ""), name) == 0) {
            return c;
        }
    }
    return NULL;
}

static const json *find_steps(const json *c, const char *role, const char *part)
{
    const json *groups;

    if (strcmp(role, "server") == 0) {
        return json_get(c, "server");
    }
    groups = json_get(c, "clients");
    for (const json *g = groups != NULL ? groups->child : NULL; g != NULL; g = g->next) {
        if (part == NULL || part[0] == '\0' ||
            strcmp(json_string(json_get(g, "label"), "client"), part) == 0) {
            return json_get(g, "steps");
        }
    }
    return NULL;
}

static const char *step_op(const json *step)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (json_get(step, ops[i]) != NULL) {
            return ops[i];
        }
    }
    return NULL;
}

/* ---- what was received ------------------------------------------------- */

static int remember_sender(run_state *st, const nq_id *peer)
{
    for (size_t i = 0; i < st->nsenders; i++) {
        if (nq_id_equal(&st->senders[i], peer)) {
            return NQ_OK;
        }
    }
    if (st->nsenders == st->senders_cap) {
        size_t cap = st->senders_cap == 0 ? 8 : st->senders_cap * 2;
        nq_id *grown = realloc(st->senders, cap * sizeof(*grown));
        if (grown == NULL) {
            return NQ_ENOMEM;
        }
        st->senders = grown;
        st->senders_cap = cap;
    }
    st->senders[st->nsenders++] = *peer;
    return NQ_OK;
}

static void forget_last(run_state *st)
{
    if (!st->last_pinned) {
        for (size_t i = 0; i < st->nlast; i++) {
            nq_msg_free(st->last[i]);
        }
        free(st->last);
    }
    st->last = NULL;
    st->nlast = 0;
    st->last_cap = 0;
    st->last_pinned = 0;
}

static int keep_last(run_state *st, nq_msg *msg)
{
    if (st->nlast == st->last_cap) {
        size_t cap = st->last_cap == 0 ? 16 : st->last_cap * 2;
        nq_msg **grown = realloc(st->last, cap * sizeof(*grown));
        if (grown == NULL) {
            return NQ_ENOMEM;
        }
        st->last = grown;
        st->last_cap = cap;
    }
    st->last[st->nlast++] = msg;
    return NQ_OK;
}

/* One nq_get into t; the message is kept for echo. */
static int take(run_state *st, tally *t)
{
    nq_msg *msg = NULL;
    const void *data;
    size_t len;
    nq_id peer;
    int rv = nq_get(st->comm, remaining_ms(st), &msg);

    if (rv != NQ_OK) {
        return rv;
    }
    if ((rv = nq_msg_data(msg, &data, &len)) != NQ_OK || (rv = nq_msg_peer(msg, &peer)) != NQ_OK ||
        (rv = tally_add(t, &peer, data, len)) != NQ_OK || (rv = remember_sender(st, &peer)) != NQ_OK ||
        (rv = keep_last(st, msg)) != NQ_OK) {
        nq_msg_free(msg);
        return rv;
    }
    return NQ_OK;
}

/* ---- payloads ------------------------------------------------------------ */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* text with "{self}" and "{to}" replaced; to may be NULL (then ""). */
static uint8_t *expand_text(const char *text, const nq_id *self, const nq_id *to, size_t *len)
{
    char self_text[NQ_ID_STRLEN];
    char to_text[NQ_ID_STRLEN] = "";
    size_t n = 0;
    uint8_t *out;

    nq_id_format(self, self_text, sizeof(self_text));
    if (to != NULL) {
        nq_id_format(to, to_text, sizeof(to_text));
    }
    out = malloc(strlen(text) * (NQ_ID_STRLEN / 4 + 1) + 1);
    if (out == NULL) {
        return NULL;
    }
    while (*text != '\0') {
        if (strncmp(text, "{self}", 6) == 0) {
            memcpy(out + n, self_text, strlen(self_text));
            n += strlen(self_text);
            text += 6;
        } else if (strncmp(text, "{to}", 4) == 0) {
            memcpy(out + n, to_text, strlen(to_text));
            n += strlen(to_text);
            text += 4;
        } else {
            out[n++] = (uint8_t)*text++;
        }
    }
    *len = n;
    return out;
}

/* The bytes of a payload spec built by this run for receiver to (or NULL).
 * The caller frees *out. */
static int build_payload(const run_state *st, const json *spec, const nq_id *to, uint8_t **out,
                         size_t *len)
{
    const json *v;

    if ((v = json_get(spec, "text")) != NULL) {
        *out = expand_text(json_string(v, ""), &st->id, to, len);
    } else if ((v = json_get(spec, "hex")) != NULL) {
        const char *hex = json_string(v, "");
        size_t n = strlen(hex) / 2;
        if ((*out = malloc(n + 1)) != NULL) {
            for (size_t i = 0; i < n; i++) {
                int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                    free(*out);
                    return NQ_EINVAL;
                }
                (*out)[i] = (uint8_t)(hi << 4 | lo);
            }
        }
        *len = n;
    } else if ((v = json_get(spec, "size")) != NULL) {
        size_t n = (size_t)json_int(v, 0);
        if ((*out = malloc(n + 1)) != NULL) {
            for (size_t i = 0; i < n; i++) {
                (*out)[i] = (uint8_t)(i % 251);
            }
        }
        *len = n;
    } else if (json_true(json_get(spec, "own_id"))) {
        if ((*out = malloc(sizeof(st->id.bytes))) != NULL) {
            memcpy(*out, st->id.bytes, sizeof(st->id.bytes));
        }
        *len = sizeof(st->id.bytes);
    } else {
        return NQ_EINVAL;
    }
    return *out == NULL ? NQ_ENOMEM : NQ_OK;
}

/* Message k of a repeat: k as 8 big-endian bytes, then the payload. */
static uint8_t *indexed(const uint8_t *base, size_t len, uint64_t k)
{
    uint8_t *msg = malloc(len + 8);

    if (msg != NULL) {
        for (int i = 0; i < 8; i++) {
            msg[i] = (uint8_t)(k >> (56 - 8 * i));
        }
        memcpy(msg + 8, base, len);
    }
    return msg;
}

/* ---- steps --------------------------------------------------------------- */

typedef struct pending {
    nq_future *future;
    uint8_t *buf; /* freed once the future is done; NULL: not owned here */
} pending;

/* The first failure of a step wins. */
static void note(int *first, int rv)
{
    if (*first == NQ_OK && rv != NQ_OK) {
        *first = rv;
    }
}

/* Waits for a zero-copy put; 1 when its bytes are free again. */
static int settle(run_state *st, nq_future *future, int *first)
{
    int rv = nq_future_wait(future, remaining_ms(st));

    nq_future_free(future);
    note(first, rv);
    return rv != NQ_ETIMEDOUT;
}

/* Puts one payload of a put step: to its peers, repeat times. */
static void put_payload(run_state *st, const json *step, const json *payload, size_t *count_out,
                        int *first_out)
{
    const char *to = json_string(json_get(step, "to"), "default");
    const char *wait = json_string(json_get(step, "wait"), "each");
    const json *repeat = json_get(step, "repeat");
    int64_t rounds = repeat != NULL ? json_int(repeat, 0) : 1;
    int copy = strcmp(wait, "no") == 0;
    int each = strcmp(wait, "each") == 0;
    size_t ntargets = 1;
    nq_id unknown;
    uint8_t **bases = NULL;
    size_t *lens = NULL;
    pending *pend = NULL;
    size_t npend = 0;
    size_t count = 0;
    int first = NQ_OK;
    int pinned = 0;

    if (strcmp(to, "each") == 0) {
        ntargets = st->nsenders;
    } else if (strcmp(to, "unknown") == 0) {
        nq_id_random(&unknown);
    }
    bases = calloc(ntargets + 1, sizeof(*bases));
    lens = calloc(ntargets + 1, sizeof(*lens));
    if (!each && !copy && rounds > 0) {
        pend = calloc((size_t)rounds * (ntargets + 1), sizeof(*pend));
    }
    if (bases == NULL || lens == NULL || (!each && !copy && rounds > 0 && pend == NULL)) {
        note(&first, NQ_ENOMEM);
        goto done;
    }
    for (size_t t = 0; t < ntargets; t++) {
        const nq_id *receiver = strcmp(to, "each") == 0 ? &st->senders[t] : NULL;
        int rv = build_payload(st, payload, receiver, &bases[t], &lens[t]);
        if (rv != NQ_OK) {
            note(&first, rv);
            goto done;
        }
    }
    for (int64_t k = 0; k < rounds; k++) {
        for (size_t t = 0; t < ntargets; t++) {
            const nq_id *peers = NULL;
            size_t npeers = 0;
            uint8_t *msg = bases[t];
            size_t len = lens[t];
            nq_chunk chunk;
            nq_future *future = NULL;
            int rv;

            if (strcmp(to, "each") == 0) {
                peers = &st->senders[t];
                npeers = 1;
            } else if (strcmp(to, "senders") == 0) {
                peers = st->senders;
                npeers = st->nsenders;
            } else if (strcmp(to, "unknown") == 0) {
                peers = &unknown;
                npeers = 1;
            }
            if (repeat != NULL) {
                if ((msg = indexed(bases[t], lens[t], (uint64_t)k)) == NULL) {
                    note(&first, NQ_ENOMEM);
                    continue;
                }
                len += 8;
            }
            count++;
            chunk.data = msg;
            chunk.len = len;
            rv = nq_put(st->comm, &chunk, 1, peers, npeers, copy ? NULL : &future);
            note(&first, rv);
            if (rv != NQ_OK || copy) {
                if (msg != bases[t]) {
                    free(msg);
                }
            } else if (each) {
                if (settle(st, future, &first)) {
                    if (msg != bases[t]) {
                        free(msg);
                    }
                } else {
                    pinned = 1;
                }
            } else {
                pend[npend].future = future;
                pend[npend].buf = msg != bases[t] ? msg : NULL;
                npend++;
            }
        }
    }
    for (size_t i = 0; i < npend; i++) {
        if (settle(st, pend[i].future, &first)) {
            free(pend[i].buf);
        } else {
            pinned = 1;
        }
    }
done:
    if (bases != NULL && !pinned) {
        for (size_t t = 0; t < ntargets; t++) {
            free(bases[t]);
        }
    }
    free(bases);
    free(lens);
    free(pend);
    *count_out += count;
    note(first_out, first);
}

/* A put step: its payload, then those listed under "then", one after the
 * other with nothing in between. */
static void do_put(run_state *st, int index, const json *step)
{
    size_t count = 0;
    int first = NQ_OK;
    put_payload(st, step, json_get(step, "put"), &count, &first);
    const json *then = json_get(step, "then");
    for (const json *p = then != NULL && then->type == JSON_ARRAY ? then->child : NULL; p != NULL;
         p = p->next) {
        put_payload(st, step, p, &count, &first);
    }
    line_step(st, index, "put");
    jb_result(&st->out, first);
    jb_printf(&st->out, ",\"count\":%zu", count);
    report_line(&st->out);
}

static void do_expect(run_state *st, int index, const json *step)
{
    const json *e = json_get(step, "expect");
    int64_t wanted = e != NULL && e->type == JSON_OBJECT
                         ? json_int(json_get(e, "per_client"), 1) * st->spec->clients
                         : json_int(e, 0);
    tally *t = tally_new();
    int result = t == NULL ? NQ_ENOMEM : NQ_OK;

    forget_last(st);
    for (int64_t i = 0; i < wanted && result == NQ_OK; i++) {
        result = take(st, t);
    }
    line_step(st, index, "expect");
    jb_result(&st->out, result);
    if (t != NULL) {
        tally_write(t, &st->out);
    }
    report_line(&st->out);
    tally_free(t);
}

static void do_echo(run_state *st, int index)
{
    int first = NQ_OK;

    for (size_t i = 0; i < st->nlast; i++) {
        const void *data;
        size_t len;
        nq_id peer;
        nq_future *future = NULL;
        nq_chunk chunk;
        int rv;

        if ((rv = nq_msg_data(st->last[i], &data, &len)) != NQ_OK ||
            (rv = nq_msg_peer(st->last[i], &peer)) != NQ_OK) {
            note(&first, rv);
            continue;
        }
        chunk.data = data;
        chunk.len = len;
        rv = nq_put(st->comm, &chunk, 1, &peer, 1, &future);
        note(&first, rv);
        if (rv == NQ_OK && !settle(st, future, &first)) {
            st->last_pinned = 1;
        }
    }
    line_step(st, index, "echo");
    jb_result(&st->out, first);
    jb_printf(&st->out, ",\"count\":%zu", st->nlast);
    report_line(&st->out);
}

static void do_close(run_state *st, int index, int implicit)
{
    int64_t start = now_ms();
    int rv = nq_close(st->comm);

    st->closed = 1;
    line_step(st, index, "close");
    if (implicit) {
        jb_raw(&st->out, ",\"implicit\":true");
    }
    jb_result(&st->out, rv);
    jb_printf(&st->out, ",\"ms\":%lld", (long long)(now_ms() - start));
    report_line(&st->out);
}

static void do_drain(run_state *st, int index)
{
    tally *t = tally_new();
    int end = t == NULL ? NQ_ENOMEM : NQ_OK;

    forget_last(st);
    while (end == NQ_OK) {
        end = take(st, t);
    }
    line_step(st, index, "drain");
    jb_result(&st->out, NQ_OK);
    jb_raw(&st->out, ",\"end\":");
    jb_str(&st->out, report_error_name(end));
    jb_raw(&st->out, ",\"detail\":");
    jb_str(&st->out, nq_strerror(end));
    if (t != NULL) {
        tally_write(t, &st->out);
    }
    report_line(&st->out);
    tally_free(t);
}

static void do_sleep(run_state *st, int index, const json *step)
{
    int64_t ms = json_int(json_get(step, "sleep"), 0);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
    line_step(st, index, "sleep");
    jb_result(&st->out, NQ_OK);
    report_line(&st->out);
}

/* What authenticated each known sender (nq_peer_identity), in order; the
 * first failure is the step's result. */
static void do_identity(run_state *st, int index)
{
    int first = NQ_OK;

    line_step(st, index, "identity");
    jb_raw(&st->out, ",\"peers\":[");
    for (size_t i = 0; i < st->nsenders; i++) {
        char peer[NQ_ID_STRLEN];
        size_t len = 0;
        char *text = NULL;
        int rv = nq_peer_identity(st->comm, &st->senders[i], NULL, 0, &len);

        if (rv == NQ_OK && (text = malloc(len + 1)) == NULL) {
            rv = NQ_ENOMEM;
        }
        if (rv == NQ_OK) {
            rv = nq_peer_identity(st->comm, &st->senders[i], text, len + 1, &len);
        }
        note(&first, rv);
        nq_id_format(&st->senders[i], peer, sizeof(peer));
        jb_raw(&st->out, i == 0 ? "{\"peer\":" : ",{\"peer\":");
        jb_str(&st->out, peer);
        jb_raw(&st->out, ",\"identity\":");
        jb_str(&st->out, rv == NQ_OK ? text : "");
        jb_raw(&st->out, "}");
        free(text);
    }
    jb_raw(&st->out, "]");
    jb_result(&st->out, first);
    report_line(&st->out);
}

/* The spec's TLS options: a server's key and chain, a client's own key
 * and chain (with a key) or its trust (a lone cert), the anchors of "ca",
 * the server's "client_auth", and the tokens a client sends and a server
 * accepts. */
static int set_tls(nq_opts *opts, const run_spec *spec, int server)
{
    int rv = NQ_OK;

    if (spec->cert != NULL) {
        if (server || spec->key == NULL) {
            rv = nq_opts_set_tls(opts, server ? spec->key : NULL, spec->cert);
        } else {
            rv = nq_opts_set_tls_identity(opts, spec->key, spec->cert, 0);
        }
    }
    if (rv == NQ_OK && spec->ca != NULL) {
        rv = nq_opts_set_tls_trust(opts, spec->ca, NULL, NULL);
    }
    if (rv == NQ_OK && spec->client_auth != NULL) {
        int64_t auth = strcmp(spec->client_auth, "required") == 0   ? 2
                       : strcmp(spec->client_auth, "optional") == 0 ? 1
                                                                     : -1;
        rv = nq_opts_set_int(opts, NQ_OPT_TLS_CLIENT_AUTH, auth);
    }
    if (rv == NQ_OK && spec->token != NULL) {
        rv = nq_opts_set_token(opts, spec->token);
    }
    if (rv == NQ_OK && spec->accept_token != NULL) {
        rv = nq_opts_accept_token(opts, spec->accept_token,
                                  spec->token_identity != NULL ? spec->token_identity : "");
    }
    return rv;
}

static int open_comm(run_state *st, int index, int listening)
{
    const run_spec *spec = st->spec;
    int server = strcmp(spec->role, "server") == 0;
    nq_opts *opts = NULL;
    int rv;

    if ((rv = nq_opts_new(&opts)) == NQ_OK && (rv = nq_opts_set_id(opts, &st->id)) == NQ_OK &&
        (rv = nq_opts_set_netloc(opts, spec->host, (uint16_t)spec->port)) == NQ_OK &&
        (rv = nq_opts_set_int(opts, NQ_OPT_CLOSE_TIMEOUT_MS, st->timeout_ms)) == NQ_OK &&
        (rv = set_tls(opts, spec, server)) == NQ_OK) {
        rv = nq_open(st->protocol, server ? NQ_SERVER : NQ_CLIENT, opts, &st->comm);
    }
    nq_opts_free(opts);
    if (rv != NQ_OK) {
        st->comm = NULL;
    }
    line_step(st, index, "open");
    jb_result(&st->out, rv);
    report_line(&st->out);
    if (rv != NQ_OK) {
        return rv;
    }
    st->closed = 0;
    if (listening) {
        uint16_t port = (uint16_t)spec->port;
        if (st->protocol != NQ_MQTT) {
            nq_local_port(st->comm, &port);
        }
        jb_start(&st->out, spec->run);
        jb_printf(&st->out, ",\"event\":\"listening\",\"port\":%u", (unsigned)port);
        report_line(&st->out);
    }
    return NQ_OK;
}

static void do_reopen(run_state *st, int index)
{
    int closed = NQ_OK;
    int rv;

    if (!st->closed) {
        closed = nq_close(st->comm);
    }
    forget_last(st);
    nq_destroy(st->comm);
    st->comm = NULL;
    st->closed = 1;
    rv = open_comm(st, STEP_NONE, 0);
    line_step(st, index, "reopen");
    jb_raw(&st->out, ",\"result\":");
    jb_str(&st->out, rv == NQ_OK ? "ok" : "failed");
    jb_raw(&st->out, ",\"close\":");
    jb_str(&st->out, report_error_name(closed));
    report_line(&st->out);
}

static void run_steps(run_state *st, const json *steps)
{
    int index = 0;

    for (const json *step = steps->child; step != NULL; step = step->next, index++) {
        const char *op = step_op(step);

        if (op == NULL) {
            emit_event(st, "error", "a step holds no known operation");
            return;
        }
        if (st->comm == NULL) {
            /* A reopen that failed leaves nothing to run the rest on. */
            emit_event(st, "error", "no communicator (a reopen failed)");
            return;
        }
        if (strcmp(op, "put") == 0) {
            do_put(st, index, step);
        } else if (strcmp(op, "expect") == 0) {
            do_expect(st, index, step);
        } else if (strcmp(op, "echo") == 0) {
            do_echo(st, index);
        } else if (strcmp(op, "close") == 0) {
            do_close(st, index, 0);
        } else if (strcmp(op, "drain") == 0) {
            do_drain(st, index);
        } else if (strcmp(op, "sleep") == 0) {
            do_sleep(st, index, step);
        } else if (strcmp(op, "identity") == 0) {
            do_identity(st, index);
        } else {
            do_reopen(st, index);
        }
    }
    if (st->comm != NULL && !st->closed) {
        do_close(st, index, 1);
    }
}

void run_execute(const json *book, const run_spec *spec)
{
    run_state st;
    const json *c;
    const json *steps = NULL;
    const char *problem = NULL;

    memset(&st, 0, sizeof(st));
    st.spec = spec;
    jb_init(&st.out);
    st.timeout_ms = (spec->timeout_s > 0 ? spec->timeout_s : json_int(json_get(book, "timeout"), 60)) * 1000;
    st.deadline_ms = now_ms() + st.timeout_ms;
    if (strcmp(spec->protocol, "tcp") == 0 || strcmp(spec->protocol, "tls") == 0) {
        st.protocol = NQ_TCP;
    } else if (strcmp(spec->protocol, "mqtt") == 0) {
        st.protocol = NQ_MQTT;
    } else if (strcmp(spec->protocol, "grpc") == 0) {
        st.protocol = NQ_GRPC;
    } else {
        problem = "unknown protocol";
    }
    if (strcmp(spec->role, "server") != 0 && strcmp(spec->role, "client") != 0) {
        problem = "role must be server or client";
    } else if (spec->id != NULL ? nq_id_parse(spec->id, &st.id) != NQ_OK : nq_id_random(&st.id) != NQ_OK) {
        problem = "bad id";
    } else if ((c = find_case(book, spec->case_name)) == NULL) {
        problem = "no such case";
    } else if ((steps = find_steps(c, spec->role, spec->part)) == NULL || steps->type != JSON_ARRAY) {
        problem = "no steps for this role";
    }
    if (problem != NULL) {
        emit_event(&st, "error", problem);
    } else if (open_comm(&st, -1, strcmp(spec->role, "server") == 0) == NQ_OK) {
        run_steps(&st, steps);
    }
    forget_last(&st);
    nq_destroy(st.comm);
    free(st.senders);
    emit_event(&st, "done", NULL);
    jb_free(&st.out);
}

static char *copy_member(const json *obj, const char *key, int *failed)
{
    const char *text = json_string(json_get(obj, key), NULL);
    char *copy;

    if (text == NULL) {
        return NULL;
    }
    copy = strdup(text);
    if (copy == NULL) {
        *failed = 1;
    }
    return copy;
}

int run_spec_from_json(run_spec *spec, const json *obj)
{
    int failed = 0;

    memset(spec, 0, sizeof(*spec));
    spec->run = copy_member(obj, "run", &failed);
    spec->role = copy_member(obj, "role", &failed);
    spec->protocol = copy_member(obj, "protocol", &failed);
    spec->host = copy_member(obj, "host", &failed);
    spec->case_name = copy_member(obj, "case", &failed);
    spec->id = copy_member(obj, "id", &failed);
    spec->key = copy_member(obj, "key", &failed);
    spec->cert = copy_member(obj, "cert", &failed);
    spec->ca = copy_member(obj, "ca", &failed);
    spec->client_auth = copy_member(obj, "client_auth", &failed);
    spec->token = copy_member(obj, "token", &failed);
    spec->accept_token = copy_member(obj, "accept_token", &failed);
    spec->token_identity = copy_member(obj, "token_identity", &failed);
    spec->part = copy_member(obj, "part", &failed);
    spec->port = (long)json_int(json_get(obj, "port"), 0);
    spec->clients = (long)json_int(json_get(obj, "clients"), 1);
    spec->timeout_s = (long)json_int(json_get(obj, "timeout"), 0);
    if (!failed && spec->run == NULL) {
        failed = (spec->run = strdup("")) == NULL;
    }
    if (!failed && spec->host == NULL) {
        failed = (spec->host = strdup("127.0.0.1")) == NULL;
    }
    if (!failed && spec->role == NULL) {
        failed = (spec->role = strdup("")) == NULL;
    }
    if (!failed && spec->protocol == NULL) {
        failed = (spec->protocol = strdup("tcp")) == NULL;
    }
    if (!failed && spec->case_name == NULL) {
        failed = (spec->case_name = strdup("")) == NULL;
    }
    if (failed) {
        run_spec_clear(spec);
        return -1;
    }
    return 0;
}

void run_spec_clear(run_spec *spec)
{
    free(spec->run);
    free(spec->role);
    free(spec->protocol);
    free(spec->host);
    free(spec->case_name);
    free(spec->id);
    free(spec->key);
    free(spec->cert);
    free(spec->ca);
    free(spec->client_auth);
    free(spec->token);
    free(spec->accept_token);
    free(spec->token_identity);
    free(spec->part);
    memset(spec, 0, sizeof(*spec));
}
