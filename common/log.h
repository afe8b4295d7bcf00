/*
 * log.h - JSON-lines logging to stderr.
 *
 * Every line is one JSON object: {"ts":"...","level":"...","event":"...","msg":"..."}.
 * Callers pass an event name (a stable identifier operators can grep and alert
 * on) and a printf-style message.  The message is JSON-escaped here, so callers
 * never build JSON by hand.  Secrets must never be passed in.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
int log_parse_level(const char *s, int *out);
void log_msg(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line with fields of the caller's instead of "msg", built without printf
 * (an access line per request must be cheap):
 *
 *     log_line l;
 *     if (log_line_begin(&l, LOG_INFO, "access")) {
 *         log_line_str(&l, "path", path, len);   (escaped here)
 *         log_line_u64(&l, "status", 200);
 *         log_line_end(&l);
 *     }
 *
 * A line that would not fit loses its last fields and says "truncated":true.
 * Lines are buffered and written every 200 ms (log_msg and log_flush write
 * them out sooner). */
typedef struct log_line {
    size_t n;
    int truncated;
    char buf[4096];
} log_line;
/* 0 when level is below the log level: then nothing else needs calling. */
int log_line_begin(log_line *l, int level, const char *event);
void log_line_str(log_line *l, const char *key, const char *val, size_t len);
void log_line_u64(log_line *l, const char *key, uint64_t v);
/* A duration in nanoseconds, written as milliseconds with three decimals. */
void log_line_ms(log_line *l, const char *key, uint64_t ns);
void log_line_end(log_line *l);
/* Writes out the buffered lines. */
void log_flush(void);
/* Appends s as a JSON string body (without quotes) to out; returns bytes written. */
size_t log_json_escape(char *out, size_t cap, const char *s);

#endif
