/*
 * log.c - see log.h.  One write() per line so concurrent lines never interleave.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int min_level = LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level)
{
    min_level = level;
}

int log_parse_level(const char *s, int *out)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

size_t log_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void log_msg(int level, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024], line[2600], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);

    size_t n =
        (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"",
                         ts, now.tv_nsec / 1000000, level_names[level]);
    n += log_json_escape(line + n, sizeof line - n, event);
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
    n += log_json_escape(line + n, sizeof line - n - 4, msg);
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}
