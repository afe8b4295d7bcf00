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

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
int log_parse_level(const char *s, int *out);
void log_msg(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line with fields of the caller's instead of "msg": fields is the inside
 * of a JSON object ("\"status\":200,..."), strings escaped with log_json_escape. */
void log_fields(int level, const char *event, const char *fields);
/* Writes out what log_fields buffered (it is written every 200 ms anyway). */
void log_flush(void);
/* Appends s as a JSON string body (without quotes) to out; returns bytes written. */
size_t log_json_escape(char *out, size_t cap, const char *s);

#endif
