/*
 * serve.c - stored bodies out, for every front end.
 *
 * Four ways out, cheapest first:
 *   - raw blob: sendfile from the blob file, whole or a range (a small blob
 *     kept in the index is copied from memory, whatever its codec);
 *   - zstd blob, client accepts zstd, no range: sendfile of the file as it
 *     is (it is a valid zstd stream) with Content-Encoding: zstd;
 *   - zstd blob, small answer: decode into one buffer before answering, so a
 *     corrupt blob is still a clean miss;
 *   - zstd blob, large answer: decode frame by frame as MHD asks for bytes.
 *     A frame that fails its checksum here aborts the connection: the client
 *     sees a truncated body, never a wrong one.
 * A large blob still arriving from the cold tier goes the last way too; where
 * its bytes are not here yet, the content reader suspends the connection
 * until they are (http_park), rather than hold up its HTTP thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/util.h"
#include "../storage/codec.h"
#include "server.h"

#define BUFFERED_MAX (1u << 20)
#define STREAM_BLOCK (1u << 20) /* one frame: MHD copies from its own buffer */

int http_parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    if (h == NULL || strncasecmp(h, "bytes=", 6) != 0)
        return 0;
    const char *p = h + 6;
    while (*p == ' ')
        p++;
    if (strchr(p, ',') != NULL)
        return 0; /* several ranges: answer with the whole body, as RFC 9110 allows */
    char *end;
    if (*p == '-') {
        if (p[1] < '0' || p[1] > '9')
            return 0;
        uint64_t n = strtoull(p + 1, &end, 10);
        if (*end != '\0')
            return 0;
        if (n == 0 || size == 0)
            return -1;
        if (n > size)
            n = size;
        *start = size - n;
        *len = n;
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    uint64_t a = strtoull(p, &end, 10);
    if (*end != '-')
        return 0;
    p = end + 1;
    uint64_t b = UINT64_MAX;
    if (*p != '\0') {
        if (*p < '0' || *p > '9')
            return 0;
        b = strtoull(p, &end, 10);
        if (*end != '\0' || b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return 1;
}

typedef struct stream_state {
    store_blob *blob;
    uint64_t start;
    request *req; /* or NULL */
    int parks;    /* has a request to suspend (and cut at once on an error) */
    store_waiter w;
    http_parker park;
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *s = cls;
    for (;;) {
        ssize_t n =
            store_blob_read_or_wait(s->blob, s->start + pos, buf, max, s->parks ? &s->w : NULL);
        if (n > 0)
            return n;
        if (n != -STORE_AGAIN)
            break;
        int parked = http_park(&s->park);
        if (parked > 0)
            return 0; /* called again once woken */
        if (parked < 0) {
            store_blob_forget_waiter(s->blob, &s->w);
            break;
        }
    }
    if (s->req)
        s->req->m.cache = MC_MISS; /* (cut short: damaged, or the tier failed it) not a hit */
    if (s->parks)
        http_abort_body(s->park.conn);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    stream_state *s = cls;
    if (s->parks)
        store_blob_forget_waiter(s->blob, &s->w);
    store_blob_close(s->blob);
    free(s);
}

static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static struct MHD_Response *body_response(server *srv, const store_entry *e, const serve_opts *o,
                                          uint64_t start, uint64_t len, int ranged,
                                          int *zstd_passthrough, unsigned *status)
{
    if (o->head) {
        /* the headers a GET would get: zstd as stored, when it would be
         * (not while the blob arrives: that is read decoded) */
        if (e->codec == CODEC_ZSTD && o->allow_zstd && !ranged && !store_entry_arriving(e)) {
            *zstd_passthrough = 1;
            len = e->stored;
        }
        return MHD_create_response_from_callback(len, 1, no_body, NULL, NULL);
    }
    store_blob *b;
    int st = store_blob_open(srv->st, e, &b);
    if (st != STORE_OK) {
        if (st == STORE_NOTFOUND && o->vanished)
            *o->vanished = 1;
        *status = http_status_for(st);
        return NULL;
    }
    store_blob_answer_end(b, start + len); /* a range of a blob arriving: its end waits too */
    struct MHD_Response *resp = NULL;
    const void *inl;
    size_t inl_len;
    int in_index = store_blob_bytes(b, &inl, &inl_len) == 0;
    if (in_index && e->codec == CODEC_ZSTD && o->allow_zstd && !ranged) {
        /* a small blob kept in the index: its one zstd frame, as stored */
        *zstd_passthrough = 1;
        resp = MHD_create_response_from_buffer(inl_len, (void *)inl, MHD_RESPMEM_MUST_COPY);
        store_blob_close(b);
    } else if (!in_index && store_blob_fd(b) >= 0 &&
               (e->codec == CODEC_RAW || (e->codec == CODEC_ZSTD && o->allow_zstd && !ranged))) {
        uint64_t flen = e->codec == CODEC_RAW ? len : e->stored;
        *zstd_passthrough = e->codec == CODEC_ZSTD;
        resp = MHD_create_response_from_fd_at_offset64(flen, store_blob_fd(b), start);
        if (resp)
            store_blob_take_fd(b);
        store_blob_close(b);
    } else if (len <= BUFFERED_MAX) {
        char *buf = malloc(len ? len : 1);
        ssize_t n = buf ? 0 : -STORE_IO;
        while (n >= 0 && (uint64_t)n < len) { /* a blob still arriving gives what is here */
            ssize_t got = store_blob_read(b, start + (uint64_t)n, buf + n, len - (size_t)n);
            n = got > 0 ? n + got : got < 0 ? got : -STORE_CORRUPT;
        }
        store_blob_close(b);
        if (n < 0 || (uint64_t)n != len) {
            free(buf);
            *status = n == -STORE_CORRUPT ? MHD_HTTP_NOT_FOUND : MHD_HTTP_INTERNAL_SERVER_ERROR;
            return NULL;
        }
        resp = MHD_create_response_from_buffer_with_free_callback(len, buf, free);
        if (resp == NULL)
            free(buf);
    } else {
        stream_state *s = calloc(1, sizeof *s);
        if (s == NULL) {
            store_blob_close(b);
        } else {
            s->blob = b;
            s->start = start;
            s->req = o->req;
            if (o->req) {
                s->parks = 1;
                http_parker_init(&s->park, o->req);
                s->w.wake = http_unpark;
                s->w.arg = &s->park;
            }
            store_blob_sequential(b);
            resp =
                MHD_create_response_from_callback(len, STREAM_BLOCK, stream_read, s, stream_free);
            if (resp == NULL)
                stream_free(s);
        }
    }
    if (resp == NULL)
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    return resp;
}

enum MHD_Result serve_looking_again(request *r, int head,
                                    enum MHD_Result (*once)(request *r, int head, int *vanished))
{
    for (int tries = 0;; tries++) {
        int vanished = 0;
        enum MHD_Result ret = once(r, head, tries < 3 ? &vanished : NULL);
        if (!vanished)
            return ret;
    }
}

struct MHD_Response *serve_unsatisfiable(uint64_t size)
{
    static const char msg[] = "range not satisfiable\n"; /* (S3 answers its own way) */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        char hdr[48];
        snprintf(hdr, sizeof hdr, "bytes */%" PRIu64, size);
        MHD_add_response_header(resp, "Content-Range", hdr);
        MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    }
    return resp;
}

struct MHD_Response *serve_entry(server *srv, const store_entry *e, const serve_opts *o,
                                 unsigned *status)
{
    uint64_t start = 0, len = e->size;
    char hdr[96];
    int ranged = http_parse_range(o->range, e->size, &start, &len);
    if (ranged < 0) {
        *status = MHD_HTTP_RANGE_NOT_SATISFIABLE;
        return serve_unsatisfiable(e->size);
    }
    int zstd_passthrough = 0;
    *status = MHD_HTTP_OK;
    struct MHD_Response *resp =
        body_response(srv, e, o, start, len, ranged, &zstd_passthrough, status);
    if (resp == NULL) {
        if (o->req) /* found, but not to be read (damaged: a miss; or failed): not a hit */
            o->req->m.cache = *status == MHD_HTTP_NOT_FOUND ? MC_MISS : MC_NONE;
        return NULL;
    }
    if (o->sent)
        *o->sent = o->head ? 0 : zstd_passthrough ? e->stored : len;
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    /* the body's SHA-256, which `cairn get` and `warmup --into` check (an
     * /ac/ value's or an S3 object's is not in its name) */
    char digest[65];
    util_hex(e->digest, 32, digest);
    MHD_add_response_header(resp, "x-cairn-sha256", digest);
    if (o->content_type)
        MHD_add_response_header(resp, "Content-Type", o->content_type);
    if (e->codec == CODEC_ZSTD)
        MHD_add_response_header(resp, "Vary", "Accept-Encoding");
    if (zstd_passthrough)
        MHD_add_response_header(resp, "Content-Encoding", "zstd");
    if (ranged) {
        snprintf(hdr, sizeof hdr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1,
                 e->size);
        MHD_add_response_header(resp, "Content-Range", hdr);
        *status = MHD_HTTP_PARTIAL_CONTENT;
    }
    return resp;
}
