/*
 * upload.c - request bodies into the store, for every front end.
 *
 * A body arrives in pieces through the access handler.  body_feed() passes
 * each piece on to the store upload (decoding Content-Encoding: zstd on the
 * way) and enforces the body size limit on decoded bytes.  The first error
 * is remembered; the rest of the body is read and dropped, so that the answer
 * can go out on a connection that stays usable.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>

#include "../storage/multipart.h"
#include "server.h"

#define ZBUF_SIZE (256u << 10)

static void fail(body_sink *b, unsigned status, const char *why)
{
    if (b->status == 0) {
        b->status = status;
        b->error = why;
    }
}

/* Content-Length against max-body: 0, or the status to answer. */
static unsigned check_length(request *r, body_sink *b, int64_t *expect)
{
    const char *cl = http_header(r, "Content-Length");
    *expect = -1;
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (*end || end == cl) {
            b->error = "invalid Content-Length";
            return MHD_HTTP_BAD_REQUEST;
        }
        if (v > b->max_body) {
            b->error = "body larger than max-body";
            return MHD_HTTP_CONTENT_TOO_LARGE;
        }
        *expect = (int64_t)v;
    }
    return 0;
}

unsigned body_begin_part(request *r, body_sink *b, struct mpu_writer *part)
{
    memset(b, 0, sizeof *b);
    b->max_body = r->srv->cfg->max_body;
    b->part = part;
    int64_t expect;
    return check_length(r, b, &expect);
}

uint64_t body_size(const body_sink *b)
{
    return b->size;
}

unsigned body_begin(request *r, body_sink *b, int want_md5, int decode_zstd)
{
    memset(b, 0, sizeof *b);
    b->max_body = r->srv->cfg->max_body;
    int64_t expect;
    unsigned bad = check_length(r, b, &expect);
    if (bad)
        return bad;
    const char *ce = decode_zstd ? http_header(r, "Content-Encoding") : NULL;
    if (ce && *ce && strcasecmp(ce, "identity") != 0) {
        if (strcasecmp(ce, "zstd") != 0) {
            b->error = "unsupported Content-Encoding (identity and zstd are accepted)";
            return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
        }
        b->zstd = ZSTD_createDStream();
        b->zbuf = malloc(ZBUF_SIZE);
        if (b->zstd == NULL || b->zbuf == NULL) {
            b->error = "out of memory";
            return MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        ZSTD_initDStream(b->zstd);
        expect = -1; /* the decoded size is not known yet */
    }
    int st = store_upload_begin(r->srv->st, expect, want_md5, &b->up);
    if (st != STORE_OK) {
        b->error = store_strerror(st);
        return http_status_for(st);
    }
    return 0;
}

static void sink(body_sink *b, const void *data, size_t len)
{
    if (b->size + len > b->max_body) {
        fail(b, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than max-body");
        return;
    }
    b->size += len;
    int st = b->part ? mpu_part_write(b->part, data, len) : store_upload_write(b->up, data, len);
    if (st != STORE_OK)
        fail(b, http_status_for(st), store_strerror(st));
}

void body_feed(body_sink *b, const char *data, size_t len)
{
    if (b->status != 0 || len == 0)
        return;
    b->zstd_fed = 1;
    if (b->zstd == NULL) {
        sink(b, data, len);
        return;
    }
    ZSTD_inBuffer in = {data, len, 0};
    int full;
    do {
        ZSTD_outBuffer out = {b->zbuf, ZBUF_SIZE, 0};
        size_t rc = ZSTD_decompressStream(b->zstd, &out, &in);
        if (ZSTD_isError(rc)) {
            fail(b, MHD_HTTP_BAD_REQUEST, "body is not valid zstd");
            return;
        }
        b->zstd_left = rc; /* 0 once a frame is complete and nothing is held back */
        sink(b, b->zbuf, out.pos);
        full = out.pos == out.size; /* the decoder may hold more output */
    } while (b->status == 0 && (in.pos < in.size || full));
}

unsigned body_finish(body_sink *b, store_put_result *res)
{
    if (b->status != 0)
        return b->status;
    int st = store_upload_finish(b->up, res);
    if (st != STORE_OK)
        fail(b, http_status_for(st), store_strerror(st));
    return b->status;
}

unsigned body_commit(body_sink *b, const char *ns, const void *key, size_t klen,
                     const uint8_t *expect_digest, const void *meta, size_t meta_len,
                     store_put_result *res)
{
    if (b->status == 0 && b->zstd && (b->zstd_left != 0 || !b->zstd_fed))
        fail(b, MHD_HTTP_BAD_REQUEST, "zstd body is truncated");
    if (b->status != 0)
        return b->status;
    int st = store_upload_commit(b->up, ns, key, klen, expect_digest, meta, meta_len, NULL, res);
    b->up = NULL;
    if (st != STORE_OK) {
        fail(b, http_status_for(st), store_strerror(st));
        return b->status;
    }
    return MHD_HTTP_OK;
}

void body_free(body_sink *b)
{
    store_upload_abort(b->up);
    b->up = NULL;
    mpu_part_abort(b->part);
    b->part = NULL;
    ZSTD_freeDStream(b->zstd);
    b->zstd = NULL;
    free(b->zbuf);
    b->zbuf = NULL;
}
