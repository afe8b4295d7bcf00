/*
 * log.c - see log.h.  One write() per line so concurrent lines never interleave.
 */
#include <pthread.h>
#include <signal.h>
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

/* Lines of log_fields go through a buffer that a thread writes out every
 * 200 ms (or sooner, when it fills): an access log of every request would
 * otherwise cost a write(2) per request. */
#define LBUF_SIZE (256u << 10)
static pthread_mutex_t lbuf_mu = PTHREAD_MUTEX_INITIALIZER;
static char lbuf[LBUF_SIZE];
static size_t lbuf_len;
static pthread_once_t flusher_once = PTHREAD_ONCE_INIT;

static void write_out(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* nowhere left to report it */
        p += w;
        n -= (size_t)w;
    }
}

/* {"ts":"...","level":"...","event":"..." into line; returns its length.  The
 * date changes once a second: it is formatted once a second per thread. */
static size_t line_head(char *line, size_t cap, int level, const char *event)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    static __thread time_t ts_sec = -1;
    static __thread char ts[32];
    if (now.tv_sec != ts_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        ts_sec = now.tv_sec;
    }
    size_t n = (size_t)snprintf(line, cap, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"",
                                ts, now.tv_nsec / 1000000, level_names[level]);
    n += log_json_escape(line + n, cap - n, event);
    return n;
}

void log_msg(int level, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024], line[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = line_head(line, sizeof line, level, event);
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
    n += log_json_escape(line + n, sizeof line - n - 4, msg);
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    pthread_mutex_lock(&lbuf_mu); /* after the buffered lines, in order */
    write_out(lbuf, lbuf_len);
    lbuf_len = 0;
    write_out(line, n);
    pthread_mutex_unlock(&lbuf_mu);
}

void log_flush(void)
{
    pthread_mutex_lock(&lbuf_mu);
    write_out(lbuf, lbuf_len);
    lbuf_len = 0;
    pthread_mutex_unlock(&lbuf_mu);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        log_flush();
    }
    return NULL;
}

static void start_flusher(void)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals are for the main thread */
    pthread_create(&t, &at, flusher_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
}

void log_fields(int level, const char *event, const char *fields)
{
    if (level < min_level)
        return;
    char line[4096];
    size_t n = line_head(line, sizeof line, level, event);
    int m = snprintf(line + n, sizeof line - n, "\",%s}\n", fields);
    if (m < 0 || (size_t)m >= sizeof line - n)
        m = snprintf(line + n, sizeof line - n, "\",\"truncated\":true}\n"); /* still JSON */
    n += (size_t)m;
    pthread_once(&flusher_once, start_flusher);
    pthread_mutex_lock(&lbuf_mu);
    if (lbuf_len + n > LBUF_SIZE) {
        write_out(lbuf, lbuf_len);
        lbuf_len = 0;
    }
    memcpy(lbuf + lbuf_len, line, n);
    lbuf_len += n;
    pthread_mutex_unlock(&lbuf_mu);
}
