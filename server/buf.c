/*
 * buf.c - see buf.h.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(buf *b, size_t extra)
{
    if (b->broken)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->broken = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_add(buf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

void buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_xml(buf *b, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        char num[8];
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                snprintf(num, sizeof num, "&#%u;", c);
                rep = num;
            }
        }
        if (rep) {
            buf_add(b, s + start, i - start);
            buf_puts(b, rep);
            start = i + 1;
        }
    }
    buf_add(b, s + start, n - start);
}

void buf_xml_elem(buf *b, const char *tag, const char *s, size_t n)
{
    buf_printf(b, "<%s>", tag);
    buf_xml(b, s, n);
    buf_printf(b, "</%s>", tag);
}

int buf_ok(const buf *b)
{
    return !b->broken;
}

char *buf_take(buf *b, size_t *len)
{
    if (b->data == NULL)
        buf_add(b, "", 0);
    char *d = b->broken ? NULL : b->data;
    if (len)
        *len = b->len;
    if (b->broken)
        free(b->data);
    memset(b, 0, sizeof *b);
    return d;
}

void buf_free(buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}
