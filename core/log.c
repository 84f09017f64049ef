/* The log hook, or standard error when NQ_LOG asks for it.  A log is set up
 * once at nq_open and only read after, from any thread. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

static const char *level_names[] = {"error", "warn", "info", "debug"};

static void stderr_log(void *ctx, int level, const char *message)
{
    (void)ctx;
    fprintf(stderr, "libnq %s: %s\n", level_names[level], message);
}

void nqi_log_init(nqi_log *log, nq_log_fn fn, void *ctx)
{
    log->fn = fn;
    log->ctx = ctx;
    log->level = NQ_LOG_DEBUG;
    if (fn != NULL) {
        return;
    }
    const char *env = getenv("NQ_LOG");
    log->level = -1;
    if (env == NULL) {
        return;
    }
    for (int i = 0; i < (int)NQI_ARRAY_LEN(level_names); i++) {
        if (strcmp(env, level_names[i]) == 0) {
            log->fn = stderr_log;
            log->level = i;
        }
    }
}

void nqi_logf(const nqi_log *log, int level, const char *fmt, ...)
{
    if (log == NULL || log->fn == NULL || level > log->level) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log->fn(log->ctx, level, line);
}
