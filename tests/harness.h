/*
 * A minimal test harness: each test is a function returning 0 on success;
 * CHECK fails the test with the file, line and condition.  A test binary
 * runs the test named on its command line, or all of them.
 */
#ifndef NQ_TESTS_HARNESS_H
#define NQ_TESTS_HARNESS_H

#include <stdio.h>
#include <string.h>

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

/* CHECK for nq return codes, printing the error's text. */
#define CHECK_RC(expr, want)                                                          \
    do {                                                                              \
        int rc_ = (expr);                                                             \
        if (rc_ != (want)) {                                                          \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n", __FILE__, \
                    __LINE__, #expr, rc_, nq_strerror(rc_), (want), nq_strerror(want)); \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, NQ_OK)

typedef int (*test_fn)(void);

struct test_case {
    const char *name;
    test_fn fn;
    int tcp_only; /* 1: uses raw sockets or plain TCP's features; 2: TCP's,
                   * with or without TLS */
};

#define TEST(name) {#name, name, 0}
#define TEST_TCP(name) {#name, name, 1}
#define TEST_STREAM(name) {#name, name, 2}
#define TEST_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* What a program's run speaks, for run_tests_for. */
enum { NQT_NOT_TCP = 0, NQT_PLAIN_TCP = 1, NQT_TLS = 2 };

/* Runs the test named by argv[1], or all; the TCP-only ones only over
 * plain TCP (tcp NQT_PLAIN_TCP, or 1), the TEST_STREAM ones over TLS as
 * well (NQT_TLS). */
static inline int run_tests_for(const struct test_case *tests, size_t n, int argc, char **argv,
                                int tcp)
{
    int failed = 0;
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        int only = tests[i].tcp_only;
        int left_out = (only == 1 && tcp != NQT_PLAIN_TCP) || (only == 2 && tcp == NQT_NOT_TCP);
        if ((argc > 1 && strcmp(argv[1], tests[i].name) != 0) || left_out) {
            continue;
        }
        ran++;
        int rv = tests[i].fn();
        printf("%s %s\n", rv == 0 ? "PASS" : "FAIL", tests[i].name);
        fflush(stdout);
        failed += rv != 0;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(none)");
        return 2;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed != 0;
}

static inline int run_tests(const struct test_case *tests, size_t n, int argc, char **argv)
{
    return run_tests_for(tests, n, argc, argv, 1);
}

#endif
