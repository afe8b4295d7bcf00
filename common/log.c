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

/* Appends len bytes of s as a JSON string body; stops short rather than
 * split an escape when out is full.  Returns bytes written (out is not
 * NUL-terminated); *used says how many of s's bytes went in. */
static size_t escape_n(char *out, size_t cap, const char *s, size_t len, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0, i = 0;
    for (; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    *used = i;
    return n;
}

size_t log_json_escape(char *out, size_t cap, const char *s)
{
    if (cap == 0)
        return 0;
    size_t used;
    size_t n = escape_n(out, cap, s, strlen(s), &used);
    out[n] = '\0';
    return n;
}

/* Lines of log_line_end go through a buffer that a thread writes out every
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

/* {"ts":"...","level":"...","event":"..." into line (cap >= 128); returns
 * its length.  The date changes once a second: it is formatted once a second
 * per thread, and the rest is copied, not printf'd (an access line per
 * request must be cheap). */
static size_t line_head(char *line, size_t cap, int level, const char *event)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    static __thread time_t ts_sec = -1;
    static __thread char ts[40];
    static __thread size_t ts_len;
    if (now.tv_sec != ts_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        ts_len = strftime(ts, sizeof ts, "{\"ts\":\"%Y-%m-%dT%H:%M:%S.", &tm);
        ts_sec = now.tv_sec;
    }
    size_t n = ts_len;
    memcpy(line, ts, n);
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    line[n++] = (char)('0' + ms / 100);
    line[n++] = (char)('0' + ms / 10 % 10);
    line[n++] = (char)('0' + ms % 10);
    static const char *heads[] = {
        "Z\",\"level\":\"debug\",\"event\":\"", "Z\",\"level\":\"info\",\"event\":\"",
        "Z\",\"level\":\"warn\",\"event\":\"", "Z\",\"level\":\"error\",\"event\":\""};
    size_t hl = strlen(heads[level]);
    memcpy(line + n, heads[level], hl);
    n += hl;
    size_t used;
    n += escape_n(line + n, cap - n, event, strlen(event), &used);
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

/* room kept at the end of a line for its close and a truncation mark */
#define LINE_SLACK 24

int log_line_begin(log_line *l, int level, const char *event)
{
    if (level < min_level)
        return 0;
    l->n = line_head(l->buf, sizeof l->buf - LINE_SLACK, level, event);
    l->buf[l->n++] = '"';
    l->truncated = 0;
    return 1;
}

/* Appends ,"key": and reports whether extra more bytes fit after it. */
static int field_key(log_line *l, const char *key, size_t extra)
{
    size_t kl = strlen(key);
    if (l->n + kl + 4 + extra > sizeof l->buf - LINE_SLACK) {
        l->truncated = 1;
        return 0;
    }
    l->buf[l->n++] = ',';
    l->buf[l->n++] = '"';
    memcpy(l->buf + l->n, key, kl);
    l->n += kl;
    l->buf[l->n++] = '"';
    l->buf[l->n++] = ':';
    return 1;
}

void log_line_str(log_line *l, const char *key, const char *val, size_t len)
{
    if (!field_key(l, key, 2))
        return;
    size_t cap = sizeof l->buf - LINE_SLACK - 1 - l->n;
    l->buf[l->n++] = '"';
    size_t used;
    l->n += escape_n(l->buf + l->n, cap, val, len, &used);
    if (used < len)
        l->truncated = 1;
    l->buf[l->n++] = '"';
}

/* Decimal digits of v into out (at least 21 bytes); returns how many. */
static size_t put_u64(char *out, uint64_t v)
{
    char t[20];
    size_t k = 0;
    do {
        t[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++)
        out[i] = t[k - 1 - i];
    return k;
}

void log_line_u64(log_line *l, const char *key, uint64_t v)
{
    if (field_key(l, key, 20))
        l->n += put_u64(l->buf + l->n, v);
}

void log_line_ms(log_line *l, const char *key, uint64_t ns)
{
    if (!field_key(l, key, 24))
        return;
    uint64_t us = (ns + 500) / 1000;
    l->n += put_u64(l->buf + l->n, us / 1000);
    l->buf[l->n++] = '.';
    unsigned f = (unsigned)(us % 1000);
    l->buf[l->n++] = (char)('0' + f / 100);
    l->buf[l->n++] = (char)('0' + f / 10 % 10);
    l->buf[l->n++] = (char)('0' + f % 10);
}

void log_line_end(log_line *l)
{
    if (l->truncated) {
        memcpy(l->buf + l->n, ",\"truncated\":true", 17);
        l->n += 17;
    }
    l->buf[l->n++] = '}';
    l->buf[l->n++] = '\n';
    pthread_once(&flusher_once, start_flusher);
    pthread_mutex_lock(&lbuf_mu);
    if (lbuf_len + l->n > LBUF_SIZE) {
        write_out(lbuf, lbuf_len);
        lbuf_len = 0;
    }
    memcpy(lbuf + lbuf_len, l->buf, l->n);
    lbuf_len += l->n;
    pthread_mutex_unlock(&lbuf_mu);
}
