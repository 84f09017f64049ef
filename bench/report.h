/*
 * report.h: what every benchmark tool shares, the libnq ones and the ZeroMQ
 * ones alike: clocks, peak memory, argument parsing and the output lines.
 * Printing through one set of functions is what makes the figures of two
 * tools comparable line by line.
 *
 * Nothing here uses libnq, so the ZeroMQ programs link it too.
 */
#ifndef NQ_BENCH_REPORT_H
#define NQ_BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses of every tool.  BENCH_EXIT_UNSUPPORTED tells bench/compare
 * that the chosen transport is not built into this libnq yet. */
#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAILED 1
#define BENCH_EXIT_USAGE 2
#define BENCH_EXIT_UNSUPPORTED 4
#define BENCH_EXIT_WATCHDOG 124

/* The tool's name, used as the prefix of every error line.  Set it first. */
extern const char *bench_prog;

/* Monotonic time in nanoseconds. */
int64_t bench_now_ns(void);

/* Sleeps for a number of seconds (fractions allowed). */
void bench_sleep(double seconds);

/* This process's peak resident set size in KiB (getrusage ru_maxrss). */
long bench_peak_rss_kib(void);

/* Ends the process with BENCH_EXIT_WATCHDOG after the given seconds, so a
 * stuck run cannot hold up a script.  0 disables it. */
void bench_watchdog(int64_t seconds);

/* "PROG: <message>" on standard error, then exit with status. */
void bench_die(int status, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* A usage error: the message and a hint, then exit BENCH_EXIT_USAGE. */
void bench_usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Matches argv[*i] against "--name VALUE" or "--name=VALUE": on a match
 * stores the value, advances *i past a separate value and returns 1; for
 * another argument returns 0.  A missing value is a usage error. */
int bench_take_value(const char *name, int argc, char **argv, int *i, const char **value);

/* Parse a whole argument or fail with a usage error naming the option. */
int64_t bench_parse_int(const char *option, const char *text, int64_t min, int64_t max);
double bench_parse_double(const char *option, const char *text, double min, double max);
/* "on" -> 1, "off" -> 0. */
int bench_parse_on_off(const char *option, const char *text);
/* The role of a local|remote tool (NULL: none given): 1 for "local", 0 for
 * "remote"; anything else is a usage error. */
int bench_parse_role(const char *role);

/* net-queue iops.py's convert_size(): SI prefixes (1000-based) and two
 * decimals as Python prints round(x, 2), e.g. "33.71G", "4.0", "0". */
void bench_si(double units, char *buf, size_t len);

/* The throughput lines, the same for every tool that measures throughput:
 *   message size: 64 [B]
 *   message count: 1000000
 *   elapsed: 0.412345 [s]
 *   throughput: 2425196 [msg/s]
 *   throughput: 1.242 [Gbit/s]
 * elapsed_ns runs from the first message received to the last, as in
 * libzmq's local_thr. */
void bench_print_thr(size_t size, uint64_t count, int64_t elapsed_ns);

/* The latency lines from count round-trip times (sorted in place):
 *   message size: 64 [B]
 *   roundtrip count: 20000
 *   rtt p50: 31.20 [us]   (also p99, p99.9, max, mean)
 *   average latency: 15.80 [us]   (libzmq's figure: mean round trip / 2) */
void bench_print_lat(size_t size, int64_t *rtt_ns, size_t count);

/* "peak RSS: N [KiB]" for this process. */
void bench_print_rss(void);

/* "listening HOST PORT", flushed, for scripts that start a server on port 0. */
void bench_print_listening(const char *host, unsigned port);

#endif /* NQ_BENCH_REPORT_H */
