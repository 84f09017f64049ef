/* Clocks, memory, arguments and output lines shared by every bench tool. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const char *bench_prog = "bench";

int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep(double seconds)
{
    struct timespec ts;

    if (seconds <= 0) {
        return;
    }
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

long bench_peak_rss_kib(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
    return ru.ru_maxrss;
}

static void on_watchdog(int sig)
{
    static const char text[] = ": watchdog: the run took too long\n";
    ssize_t ignored;

    (void)sig;
    ignored = write(STDERR_FILENO, bench_prog, strlen(bench_prog));
    ignored = write(STDERR_FILENO, text, sizeof(text) - 1);
    (void)ignored;
    _exit(BENCH_EXIT_WATCHDOG);
}

void bench_watchdog(int64_t seconds)
{
    if (seconds <= 0) {
        return;
    }
    signal(SIGALRM, on_watchdog);
    alarm((unsigned)seconds);
}

void bench_die(int status, const char *format, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

void bench_usage_error(const char *format, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fprintf(stderr, " (see %s --help)\n", bench_prog);
    exit(BENCH_EXIT_USAGE);
}

int bench_take_value(const char *name, int argc, char **argv, int *i, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        bench_usage_error("%s needs a value", name);
    }
    *value = argv[++*i];
    return 1;
}

int64_t bench_parse_int(const char *option, const char *text, int64_t min, int64_t max)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        bench_usage_error("%s wants an integer from %" PRId64 " to %" PRId64 ", not \"%s\"",
                          option, min, max, text);
    }
    return value;
}

double bench_parse_double(const char *option, const char *text, double min, double max)
{
    char *end;
    double value;

    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(value >= min && value <= max)) {
        bench_usage_error("%s wants a number from %g to %g, not \"%s\"", option, min, max, text);
    }
    return value;
}

int bench_parse_on_off(const char *option, const char *text)
{
    if (strcmp(text, "on") == 0) {
        return 1;
    }
    if (strcmp(text, "off") == 0) {
        return 0;
    }
    bench_usage_error("%s wants on or off, not \"%s\"", option, text);
    return 0;
}

int bench_parse_role(const char *role)
{
    if (role == NULL || (strcmp(role, "local") != 0 && strcmp(role, "remote") != 0)) {
        bench_usage_error("the role must be local or remote");
    }
    return strcmp(role, "local") == 0;
}

void bench_si(double units, char *buf, size_t len)
{
    static const char *const prefix[] = { "", "K", "M", "G", "T", "P", "E", "Z", "Y" };

    if (!(units > 0)) {
        snprintf(buf, len, "0");
        return;
    }
    /* Python's math.log(x, 1000) is log(x) / log(1000), truncated by int(). */
    int i = (int)(log(units) / log(1000.0));
    if (i < 0) {
        i = 0;
    }
    if (i > 8) {
        i = 8;
    }
    /* round(x, 2) printed by Python: the shortest form, at least one
     * decimal ("4.0", "33.7", "33.71"). */
    char num[64];
    snprintf(num, sizeof(num), "%.2f", units / pow(1000.0, i));
    size_t n = strlen(num);
    if (num[n - 1] == '0') {
        num[--n] = '\0';
    }
    snprintf(buf, len, "%s%s", num, prefix[i]);
}

void bench_print_thr(size_t size, uint64_t count, int64_t elapsed_ns)
{
    double seconds = (double)elapsed_ns / 1e9;
    double rate = seconds > 0 ? (double)count / seconds : 0;

    printf("message size: %zu [B]\n", size);
    printf("message count: %" PRIu64 "\n", count);
    printf("elapsed: %.6f [s]\n", seconds);
    printf("throughput: %.0f [msg/s]\n", rate);
    printf("throughput: %.3f [Gbit/s]\n", rate * (double)size * 8 / 1e9);
    fflush(stdout);
}

static int compare_ns(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted values. */
static double percentile_us(const int64_t *sorted, size_t count, double p)
{
    size_t rank = (size_t)ceil(p * (double)count);

    if (rank < 1) {
        rank = 1;
    }
    if (rank > count) {
        rank = count;
    }
    return (double)sorted[rank - 1] / 1e3;
}

void bench_print_lat(size_t size, int64_t *rtt_ns, size_t count)
{
    double sum = 0;

    qsort(rtt_ns, count, sizeof(*rtt_ns), compare_ns);
    for (size_t i = 0; i < count; i++) {
        sum += (double)rtt_ns[i];
    }
    double mean_us = count > 0 ? sum / (double)count / 1e3 : 0;
    printf("message size: %zu [B]\n", size);
    printf("roundtrip count: %zu\n", count);
    if (count > 0) {
        printf("rtt p50: %.2f [us]\n", percentile_us(rtt_ns, count, 0.50));
        printf("rtt p99: %.2f [us]\n", percentile_us(rtt_ns, count, 0.99));
        printf("rtt p99.9: %.2f [us]\n", percentile_us(rtt_ns, count, 0.999));
        printf("rtt max: %.2f [us]\n", (double)rtt_ns[count - 1] / 1e3);
    }
    printf("rtt mean: %.2f [us]\n", mean_us);
    printf("average latency: %.2f [us]\n", mean_us / 2);
    fflush(stdout);
}

void bench_print_rss(void)
{
    printf("peak RSS: %ld [KiB]\n", bench_peak_rss_kib());
    fflush(stdout);
}

void bench_print_listening(const char *host, unsigned port)
{
    printf("listening %s %u\n", host, port);
    fflush(stdout);
}
