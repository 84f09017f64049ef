/*
 * The completion-queue thread: grpc reports every finished batch here, and
 * the thread hands it to worker 0's loop as a command.  Once the loop has
 * stopped (shutdown), it settles late completions itself.
 */
#include "transports/grpc/grpc.h"

static void *cq_main(void *arg)
{
    nq_comm *c = arg;
    grpc_state *st = c->tp;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(st->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        gop *op = ev.tag;
        op->success = ev.success;
        if (op->kind == OP_SHUTDOWN) {
            pthread_mutex_lock(&st->mu);
            st->shutdown_done = 1;
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        if (atomic_load(&st->loop_stopped)) {
            nqi_grpc_settle(st, op);
            continue;
        }
        nqi_loop_post(&c->workers[0].loop, &op->cmd);
    }
    return NULL;
}

int nqi_grpc_queue_start(nq_comm *c)
{
    grpc_state *st = c->tp;
    if (pthread_create(&st->cq_thread, NULL, cq_main, c) != 0) {
        return NQ_ESYS;
    }
    st->cq_started = 1;
    return NQ_OK;
}

void nqi_grpc_queue_stop(nq_comm *c)
{
    grpc_state *st = c->tp;
    /* Every cancelled batch completes before the queue reports shutdown. */
    grpc_completion_queue_shutdown(st->cq);
    if (st->cq_started) {
        pthread_join(st->cq_thread, NULL);
        st->cq_started = 0;
        return;
    }
    while (grpc_completion_queue_next(st->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
}
