/*
 * buf.h - a growable byte buffer for building response bodies (XML, JSON).
 *
 * Appends never fail visibly: on out-of-memory the buffer is marked broken
 * and the caller checks buf_ok() once, before sending.
 */
#ifndef CAIRN_BUF_H
#define CAIRN_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data;
    size_t len, cap;
    int broken;
} buf;

void buf_add(buf *b, const char *s, size_t n);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) with XML's five special characters escaped (and control
 * characters as numeric references). */
void buf_xml(buf *b, const char *s, size_t n);
/* <tag>escaped text</tag> */
void buf_xml_elem(buf *b, const char *tag, const char *s, size_t n);
int buf_ok(const buf *b);
/* Hands the data over (NUL-terminated); the buffer is empty afterwards. */
char *buf_take(buf *b, size_t *len);
void buf_free(buf *b);

#endif
