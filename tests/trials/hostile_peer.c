/*
 * hostile_peer: the attacker of the hostile-peer scenarios over gRPC
 * (tests/trials/hostile.py), speaking grpc core by hand through
 * tests/grpc_hostile.h.  It reports what it got as lines
 *
 *   <ms since start> <event> [key=value ...]
 *
 *   hostile_peer header --port N --len L [--ini 1] [--piece B]
 *                       [--every-ms MS] [--max B] [--for-ms MS]
 *       one streaming call with a fresh id whose first message is the
 *       call's INI (with --ini 1) and the header of a frame of L bytes; then
 *       pieces of B zero bytes (default 65536), one every MS ms (default 0),
 *       until the server ends the call, --max bytes went (default 256 MiB) or
 *       --for-ms passed (default 3000).  Reports "attack sent=N ended=0|1
 *       ms=N status=N": the bytes handed to grpc after the header, whether
 *       the server ended the call (its status came, or a send failed), when
 *       (ms after the header went), and the status (-1: none came).
 *   hostile_peer hijack --port N --id HEX [--stream 0|1]
 *       a call that names another peer's id in its metadata (nq-id, and
 *       nq-stream with --stream 1, the default) and sends one frame, "evil";
 *       reports "hijack stream=S ended=0|1 ms=N status=N" after waiting up
 *       to --for-ms for the server to end the call.
 *
 * It dies with the process that started it (PR_SET_PDEATHSIG).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "grpc_hostile.h"
#include "peer_args.h"
#include "peers.h"

typedef struct args {
    const char *mode;
    int port, ini, stream;
    int64_t len, piece, every_ms, max, for_ms;
    nq_id id;
    int has_id;
} args;

static void usage(void)
{
    fprintf(stderr, "usage: hostile_peer header|hijack --port N [options] (see the comment at "
                    "the top of hostile_peer.c)\n");
    exit(2);
}

static void parse(args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->piece = 65536;
    a->max = (int64_t)256 << 20;
    a->for_ms = 3000;
    a->stream = 1;
    const nqt_opt opts[] = {
        {"--port", NQT_OPT_INT, &a->port, NULL},
        {"--len", NQT_OPT_I64, &a->len, NULL},
        {"--ini", NQT_OPT_INT, &a->ini, NULL},
        {"--piece", NQT_OPT_I64, &a->piece, NULL},
        {"--every-ms", NQT_OPT_I64, &a->every_ms, NULL},
        {"--max", NQT_OPT_I64, &a->max, NULL},
        {"--for-ms", NQT_OPT_I64, &a->for_ms, NULL},
        {"--stream", NQT_OPT_INT, &a->stream, NULL},
        {"--id", NQT_OPT_ID, &a->id, &a->has_id},
    };
    if (argc < 2 || nqt_parse_opts(opts, sizeof(opts) / sizeof(opts[0]), 2, argc, argv) != 0) {
        usage();
    }
    a->mode = argv[1];
    if (a->port <= 0 || a->piece < 1 || a->piece > (1 << 24)) {
        usage();
    }
}

/* A frame header announcing len bytes, after an INI naming id when ini. */
static size_t opening(uint8_t *buf, const nq_id *id, int ini, uint64_t len)
{
    size_t at = 0;
    if (ini) {
        nqt_put_header(buf, sizeof(id->bytes));
        memcpy(buf + 8, id->bytes, sizeof(id->bytes));
        at = 8 + sizeof(id->bytes);
    }
    nqt_put_header(buf + at, len);
    return at + 8;
}

static int header(const args *a)
{
    nq_id id;
    if (nq_id_random(&id) != NQ_OK) {
        return 1;
    }
    uint8_t first[32];
    size_t n = opening(first, &id, a->ini, (uint64_t)a->len);
    uint8_t *piece = calloc(1, (size_t)a->piece);
    nqt_hostile h;
    if (piece == NULL || nqt_hostile_start(&h, (uint16_t)a->port, &id, NQT_HOSTILE_STREAM,
                                           first, n) != 0) {
        nqt_report("error where=call");
        free(piece);
        return 1;
    }
    int64_t t0 = nqt_peer_ms(), sent = 0, ended_ms = -1;
    while (sent < a->max && nqt_peer_ms() - t0 < a->for_ms) {
        if (nqt_hostile_ended(&h, 0)) {
            ended_ms = nqt_peer_ms() - t0;
            break;
        }
        int64_t left = a->for_ms - (nqt_peer_ms() - t0);
        int rv = nqt_hostile_send(&h, piece, (size_t)a->piece, (int)(left > 0 ? left : 1));
        if (rv == -1) {
            /* The server ended or reset the stream. */
            ended_ms = nqt_peer_ms() - t0;
            nqt_hostile_ended(&h, 1000);
            break;
        }
        if (rv != 0) {
            break; /* held back by flow control until for_ms */
        }
        sent += a->piece;
        if (a->every_ms > 0) {
            /* Waiting for the call's end is the pause between pieces. */
            if (nqt_hostile_ended(&h, (int)a->every_ms)) {
                ended_ms = nqt_peer_ms() - t0;
                break;
            }
        }
    }
    if (ended_ms < 0 && nqt_hostile_ended(&h, 0)) {
        ended_ms = nqt_peer_ms() - t0;
    }
    nqt_report("attack sent=%" PRId64 " ended=%d ms=%" PRId64 " status=%d", sent, ended_ms >= 0,
               ended_ms, h.ended ? (int)h.status : -1);
    nqt_hostile_finish(&h);
    free(piece);
    return 0;
}

static int hijack(const args *a)
{
    if (!a->has_id) {
        usage();
    }
    uint8_t evil[12];
    nqt_put_header(evil, 4);
    memcpy(evil + 8, "evil", 4);
    nqt_hostile h;
    int64_t t0 = nqt_peer_ms();
    if (nqt_hostile_start(&h, (uint16_t)a->port, &a->id, a->stream ? NQT_HOSTILE_STREAM : 0, evil,
                          sizeof(evil)) != 0) {
        nqt_report("error where=call");
        return 1;
    }
    int ended = nqt_hostile_ended(&h, (int)a->for_ms);
    nqt_report("hijack stream=%d ended=%d ms=%" PRId64 " status=%d", a->stream, ended,
               ended ? nqt_peer_ms() - t0 : -1, ended ? (int)h.status : -1);
    nqt_hostile_finish(&h);
    return 0;
}

int main(int argc, char **argv)
{
    nqt_peer_clock_start();
    /* Dies with the script; a script already gone leaves init as parent. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        return 1;
    }
    args a;
    parse(&a, argc, argv);
    grpc_init();
    int rc = strcmp(a.mode, "header") == 0   ? header(&a)
             : strcmp(a.mode, "hijack") == 0 ? hijack(&a)
                                             : (usage(), 2);
    grpc_shutdown();
    return rc;
}
