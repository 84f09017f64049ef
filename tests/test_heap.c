/*
 * glibc's malloc settings (core/heap.c): the first gRPC communicator of a
 * process keeps blocks up to 32 MiB on the heap, unless the environment
 * says otherwise.  Each case runs in a process of its own (CTest runs one
 * case per process), so each starts from glibc's own settings.  Whether a
 * block was mmapped is read from mallinfo2's count of mmapped blocks.
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "peers.h"

/* Below 32 MiB, and far above where glibc's sliding threshold stands in a
 * process that never freed a block this large.  Freeing an mmapped block
 * slides the threshold up to its size: a case probes with this size once
 * before anything, and with smaller blocks before that. */
#define PROBE_BYTES (24u << 20)
#define SMALL_PROBE_BYTES (1u << 20)

/* 1 if a fresh block of n bytes is mmapped, 0 if it is on the heap. */
static int is_mmapped(size_t n)
{
    size_t before = mallinfo2().hblks;
    volatile char *p = malloc(n);
    if (p == NULL) {
        return -1;
    }
    p[0] = 1;
    size_t during = mallinfo2().hblks;
    free((void *)p);
    return during > before;
}

static atomic_int malloc_lines;

static void count_malloc_lines(void *ctx, int level, const char *message)
{
    (void)ctx;
    (void)level;
    if (strncmp(message, "malloc:", 7) == 0) {
        atomic_fetch_add(&malloc_lines, 1);
    }
}

static nq_comm *open_grpc_server(void)
{
    nq_opts *o = nqt_opts("127.0.0.1", 0, NULL);
    nq_opts_set_log(o, count_malloc_lines, NULL);
    return nqt_open(NQ_GRPC, NQ_SERVER, o);
}

/* is_mmapped(PROBE_BYTES) while a gRPC server is open; -1 if none opens. */
static int probe_beside_a_server(void)
{
    nq_comm *c = open_grpc_server();
    if (c == NULL) {
        return -1;
    }
    int mmapped = is_mmapped(PROBE_BYTES);
    return nq_close(c) == NQ_OK ? mmapped : -1;
}

/* Without a gRPC communicator glibc mmaps the probe; with one it does not,
 * and the choice is logged once however many communicators open. */
static int test_a_grpc_communicator_keeps_large_blocks_on_the_heap(void)
{
    CHECK(is_mmapped(SMALL_PROBE_BYTES) == 1);
    nq_comm *a = open_grpc_server();
    CHECK(a != NULL);
    nq_comm *b = open_grpc_server();
    CHECK(b != NULL);
    CHECK(is_mmapped(PROBE_BYTES) == 0);
    CHECK_OK(nq_close(a));
    CHECK_OK(nq_close(b));
    CHECK(is_mmapped(PROBE_BYTES) == 0);
    CHECK(atomic_load(&malloc_lines) == 1);
    return 0;
}

static int test_malloc_tuning_off_leaves_malloc_as_it_is(void)
{
    CHECK(setenv("NQ_MALLOC_TUNING", "off", 1) == 0);
    CHECK(probe_beside_a_server() == 1);
    CHECK(atomic_load(&malloc_lines) == 0);
    return 0;
}

/* glibc reads its MALLOC_*_ variables and GLIBC_TUNABLES as the process
 * starts, so setting one here changes nothing in glibc: what the case sees
 * is libnq leaving malloc alone because the environment names it. */
static int test_a_malloc_variable_in_the_environment_is_respected(void)
{
    CHECK(setenv("MALLOC_TRIM_THRESHOLD_", "131072", 1) == 0);
    CHECK(probe_beside_a_server() == 1);
    CHECK(atomic_load(&malloc_lines) == 1); /* "left as the environment sets it" */
    return 0;
}

static int test_malloc_tunables_in_the_environment_are_respected(void)
{
    CHECK(setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2", 1) == 0);
    CHECK(probe_beside_a_server() == 1);
    return 0;
}

static const struct test_case tests[] = {
    TEST(test_a_grpc_communicator_keeps_large_blocks_on_the_heap),
    TEST(test_malloc_tuning_off_leaves_malloc_as_it_is),
    TEST(test_a_malloc_variable_in_the_environment_is_respected),
    TEST(test_malloc_tunables_in_the_environment_are_respected),
};

int main(int argc, char **argv)
{
    return run_tests(tests, TEST_COUNT(tests), argc, argv);
}
