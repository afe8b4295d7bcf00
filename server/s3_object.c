/*
 * s3_object.c - S3 objects: PutObject, GetObject, HeadObject, DeleteObject,
 * CopyObject.
 *
 * Object metadata rides in the key record as a list of fields, each
 *     u8 tag, u16 length (little-endian), bytes
 * so that new fields can be added without touching old records.  User
 * metadata fields hold "name\0value" with the name lowercased, as S3 returns
 * them.  A copy moves no bytes: the new key points at the same blob.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "../common/util.h"
#include "s3.h"

enum {
    META_ETAG = 1,
    META_CONTENT_TYPE,
    META_CONTENT_ENCODING,
    META_CONTENT_DISPOSITION,
    META_CACHE_CONTROL,
    META_CONTENT_LANGUAGE,
    META_EXPIRES,
    META_USER,
    META_CHECKSUM, /* "<alg>\0<base64>" */
};

static const struct {
    int tag;
    const char *header;
    const char *override; /* response-* query parameter of GetObject */
} content_fields[] = {
    {META_CONTENT_TYPE, "Content-Type", "response-content-type"},
    {META_CONTENT_ENCODING, "Content-Encoding", "response-content-encoding"},
    {META_CONTENT_DISPOSITION, "Content-Disposition", "response-content-disposition"},
    {META_CACHE_CONTROL, "Cache-Control", "response-cache-control"},
    {META_CONTENT_LANGUAGE, "Content-Language", "response-content-language"},
    {META_EXPIRES, "Expires", "response-expires"},
};
#define NCONTENT (sizeof content_fields / sizeof content_fields[0])

static void meta_add(buf *b, int tag, const char *v, size_t n)
{
    if (n > 65535)
        n = 65535;
    uint8_t h[3] = {(uint8_t)tag, (uint8_t)n, (uint8_t)(n >> 8)};
    buf_add(b, (const char *)h, 3);
    buf_add(b, v, n);
}

/* Calls fn for each field; stops at a malformed tail. */
static void meta_each(const void *meta, size_t len,
                      void (*fn)(void *ctx, int tag, const char *v, size_t n), void *ctx)
{
    const uint8_t *p = meta, *end = p + len;
    while (end - p >= 3) {
        size_t n = (size_t)p[1] | (size_t)p[2] << 8;
        if ((size_t)(end - p - 3) < n)
            break;
        fn(ctx, p[0], (const char *)p + 3, n);
        p += 3 + n;
    }
}

typedef struct etag_ctx {
    char *out;
    size_t cap;
} etag_ctx;

static void find_etag(void *ctx, int tag, const char *v, size_t n)
{
    etag_ctx *e = ctx;
    if (tag == META_ETAG && n < e->cap) {
        memcpy(e->out, v, n);
        e->out[n] = '\0';
    }
}

void s3_meta_etag(const void *meta, size_t len, char *out, size_t cap)
{
    etag_ctx e = {out, cap};
    out[0] = '\0';
    meta_each(meta, len, find_etag, &e);
}

typedef struct user_meta_ctx {
    buf *b;
} user_meta_ctx;

static enum MHD_Result collect_user_meta(void *cls, enum MHD_ValueKind kind, const char *k,
                                         const char *v)
{
    (void)kind;
    user_meta_ctx *c = cls;
    if (strncasecmp(k, "x-amz-meta-", 11) != 0)
        return MHD_YES;
    char name[256];
    size_t n = strlen(k);
    if (n >= sizeof name)
        return MHD_YES;
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)tolower((unsigned char)k[i]);
    buf field = {0};
    buf_add(&field, name, n + 1);
    buf_puts(&field, v ? v : "");
    meta_add(c->b, META_USER, field.data, field.len);
    buf_free(&field);
    return MHD_YES;
}

void s3_meta_add_checksum(buf *b, const char *alg, const char *value)
{
    buf f = {0};
    buf_add(&f, alg, strlen(alg) + 1);
    buf_puts(&f, value);
    meta_add(b, META_CHECKSUM, f.data, f.len);
    buf_free(&f);
}

void s3_meta_add_etag(buf *b, const char *etag)
{
    meta_add(b, META_ETAG, etag, strlen(etag));
}

/* Metadata of a new object from the request's headers. */
void s3_request_meta(request *r, buf *b, const char *etag)
{
    if (etag)
        meta_add(b, META_ETAG, etag, strlen(etag));
    for (size_t i = 0; i < NCONTENT; i++) {
        const char *v = http_header(r, content_fields[i].header);
        if (v == NULL)
            continue;
        if (content_fields[i].tag == META_CONTENT_ENCODING) {
            /* aws-chunked is how the body travelled, not what it is */
            char clean[256];
            size_t n = 0;
            const char *p = v;
            while (*p && n + 1 < sizeof clean) {
                size_t tl = strcspn(p, ",");
                const char *t = p;
                while (tl && *t == ' ')
                    t++, tl--;
                size_t tl2 = tl;
                while (tl2 && t[tl2 - 1] == ' ')
                    tl2--;
                if (tl2 && !(tl2 == 11 && strncasecmp(t, "aws-chunked", 11) == 0) &&
                    n + tl2 + 2 < sizeof clean) {
                    if (n)
                        clean[n++] = ',';
                    memcpy(clean + n, t, tl2);
                    n += tl2;
                }
                p = t + tl;
                if (*p == ',')
                    p++;
                else
                    break;
            }
            if (n)
                meta_add(b, META_CONTENT_ENCODING, clean, n);
            continue;
        }
        meta_add(b, content_fields[i].tag, v, strlen(v));
    }
    user_meta_ctx c = {b};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_user_meta, &c);
}

typedef struct resp_ctx {
    request *r;
    struct MHD_Response *resp;
    int checksums; /* x-amz-checksum-mode: ENABLED on a full (not ranged) read */
} resp_ctx;

static void add_meta_header(void *ctx, int tag, const char *v, size_t n)
{
    resp_ctx *c = ctx;
    char *val = malloc(n + 1); /* not strndup: user fields hold a NUL */
    if (val == NULL)
        return;
    memcpy(val, v, n);
    val[n] = '\0';
    if (tag == META_USER || (tag == META_CHECKSUM && c->checksums)) {
        size_t nl = strlen(val);
        char name[64];
        snprintf(name, sizeof name, "x-amz-checksum-%.40s", val);
        /* (libmicrohttpd refuses an empty value: a space is one to HTTP,
         * whose parsers strip the white space around a value) */
        const char *value = val + nl + 1;
        if (nl < n)
            MHD_add_response_header(c->resp, tag == META_USER ? val : name, value[0] ? value : " ");
    } else {
        for (size_t i = 0; i < NCONTENT; i++)
            if (content_fields[i].tag == tag && !s3_has_param(c->r, content_fields[i].override))
                MHD_add_response_header(c->resp, content_fields[i].header, val);
    }
    free(val);
}

static void object_headers(request *r, struct MHD_Response *resp, const store_entry *e,
                           const char *etag, int checksums)
{
    char q[96], date[40];
    snprintf(q, sizeof q, "\"%s\"", etag);
    MHD_add_response_header(resp, "ETag", q);
    s3_format_http_date(e->mtime_ms, date);
    MHD_add_response_header(resp, "Last-Modified", date);
    resp_ctx c = {r, resp, checksums};
    meta_each(e->meta, e->meta_len, add_meta_header, &c);
    for (size_t i = 0; i < NCONTENT; i++) {
        const char *o = s3_param(r, content_fields[i].override);
        if (o)
            MHD_add_response_header(resp, content_fields[i].header, o);
    }
    s3_common_headers(r, resp);
}

/* ---- conditionals --------------------------------------------------------- */

/* Does an If-Match / If-None-Match list match etag?  "*" matches anything. */
static int etag_matches(const char *list, const char *etag)
{
    const char *p = list;
    size_t el = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        const char *t = p;
        size_t tl = strcspn(p, ",");
        while (tl && t[tl - 1] == ' ')
            tl--;
        if (tl >= 2 && t[0] == '"' && t[tl - 1] == '"') {
            t++;
            tl -= 2;
        }
        if (tl == el && memcmp(t, etag, el) == 0)
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

int s3_write_preconditions(request *r, int none_match, store_cond *cond, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    const char *inm = none_match ? http_header(r, "If-None-Match") : NULL;
    const char *im = http_header(r, "If-Match");
    cond->kind = STORE_COND_NONE;
    if (inm == NULL && im == NULL)
        return 0;
    /* the key as the fleet has it now, not as a copy here may still hold
     * it; and a key the tier could not be asked about is neither there nor
     * missing (a create-only PUT, If-None-Match: *, must not overwrite one
     * another node wrote) */
    store_entry e;
    uint64_t clock = 0;
    int st = store_check_key(r->srv->st, s->ns, s->key, s->klen);
    if (st == STORE_OK) {
        clock = store_cond_clock(r->srv->st); /* (after the check, which may drop a copy) */
        st = store_lookup(r->srv->st, s->ns, s->key, s->klen, &e);
    }
    if (st == STORE_NOTFOUND && e.tier_failed)
        st = STORE_UNAVAILABLE;
    if (st != STORE_OK && st != STORE_NOTFOUND) {
        *ret = s3_store_error(r, st);
        return 1;
    }
    /* the write holds to the key as seen (store_cond_set) */
    store_cond_set(cond, clock, st == STORE_OK ? &e : NULL);
    char cur[80] = "";
    if (st == STORE_OK) {
        s3_meta_etag(e.meta, e.meta_len, cur, sizeof cur);
        store_entry_clear(&e);
    }
    if ((inm && st == STORE_OK && etag_matches(inm, cur)) ||
        (im && (st != STORE_OK || !etag_matches(im, cur)))) {
        *ret = s3_store_error(r, STORE_PRECONDITION);
        return 1;
    }
    return 0;
}

/* 0 to go on, else the status to answer (304 or 412): the conditions of a
 * GET or HEAD, or with copy_source those of a copy's source (the
 * x-amz-copy-source-if-* headers, where the caller answers 412 for both). */
static unsigned check_conditions(request *r, int copy_source, const char *etag, uint64_t mtime_ms)
{
    static const char *const names[2][4] = {
        {"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"},
        {"x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
         "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since"}};
    const char *v[4];
    for (int i = 0; i < 4; i++)
        v[i] = http_header(r, names[copy_source][i]);
    const char *im = v[0], *inm = v[1], *ims = v[2], *ius = v[3];
    time_t t, mtime = (time_t)(mtime_ms / 1000);
    if (im && !etag_matches(im, etag))
        return 412;
    if (!im && ius && sigv4_parse_http_date(ius, &t) == SIGV4_OK && mtime > t)
        return 412;
    if (inm && etag_matches(inm, etag))
        return 304;
    if (!inm && ims && sigv4_parse_http_date(ims, &t) == SIGV4_OK && mtime <= t)
        return 304;
    return 0;
}

/* ---- GET and HEAD --------------------------------------------------------- */

static enum MHD_Result get_object_once(request *r, int head, int *vanished)
{
    s3_req *s = r->fe;
    store_entry e;
    int st = store_lookup(r->srv->st, s->ns, s->key, s->klen, &e);
    r->m.cache = st == STORE_OK         ? (e.from_tier ? MC_TIER : MC_LOCAL)
                 : st == STORE_NOTFOUND ? MC_MISS
                                        : MC_NONE;
    if (st == STORE_NOTFOUND && !s3_bucket_exists(r))
        return s3_no_bucket(r);
    if (st != STORE_OK)
        return s3_store_error(r, st);
    char etag[80];
    s3_meta_etag(e.meta, e.meta_len, etag, sizeof etag);
    unsigned cond = check_conditions(r, 0, etag, e.mtime_ms);
    if (cond) {
        store_entry_clear(&e);
        if (cond == 412)
            return s3_store_error(r, STORE_PRECONDITION);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        char q[96], date[40];
        snprintf(q, sizeof q, "\"%s\"", etag);
        MHD_add_response_header(resp, "ETag", q);
        s3_format_http_date(e.mtime_ms, date);
        MHD_add_response_header(resp, "Last-Modified", date);
        s3_common_headers(r, resp);
        return http_queue(r, 304, resp);
    }
    serve_opts o = {.sent = &r->m.sent,
                    .head = head,
                    .allow_zstd = 0,
                    .range = http_range(r, etag, e.mtime_ms),
                    .req = r,
                    .vanished = vanished};
    if (s3_has_param(r, "partNumber")) {
        /* an object is one part here: part 1 is a range of all of it, as S3
         * answers it for an object uploaded whole (206, Content-Range) */
        const char *pn = s3_param(r, "partNumber");
        if (strcmp(pn, "1") != 0) {
            store_entry_clear(&e);
            return s3_error(r, 416, "InvalidPartNumber",
                            "The requested partnumber is not satisfiable");
        }
        if (o.range == NULL && e.size > 0)
            o.range = "bytes=0-";
    }
    unsigned status;
    struct MHD_Response *resp = serve_entry(r->srv, &e, &o, &status);
    if (resp == NULL && vanished && *vanished) {
        store_entry_clear(&e);
        return MHD_YES; /* looked up again */
    }
    if (resp == NULL) {
        store_entry_clear(&e);
        return status == 404 ? s3_store_error(r, STORE_NOTFOUND)
                             : s3_error(r, status, "InternalError", "Reading the object failed.");
    }
    if (status == 416) {
        uint64_t size = e.size;
        store_entry_clear(&e);
        MHD_destroy_response(resp);
        return s3_invalid_range(r, o.range, size);
    }
    const char *mode = http_header(r, "x-amz-checksum-mode");
    object_headers(r, resp, &e, etag, status == 200 && mode && strcasecmp(mode, "ENABLED") == 0);
    if (MHD_get_response_header(resp, "Content-Type") == NULL)
        MHD_add_response_header(resp, "Content-Type", "binary/octet-stream");
    store_entry_clear(&e);
    return http_queue(r, status, resp);
}

enum MHD_Result s3_get_object(request *r, int head)
{
    return serve_looking_again(r, head, get_object_once);
}

enum MHD_Result s3_get_object_tagging(request *r)
{
    s3_req *s = r->fe;
    store_entry e;
    int st = store_lookup(r->srv->st, s->ns, s->key, s->klen, &e);
    if (st == STORE_NOTFOUND && !s3_bucket_exists(r))
        return s3_no_bucket(r);
    if (st != STORE_OK)
        return s3_store_error(r, st);
    store_entry_clear(&e);
    buf b = {0};
    buf_printf(&b, "%s<Tagging xmlns=\"%s\"><TagSet></TagSet></Tagging>", S3_XML_HEAD, S3_XMLNS);
    return s3_xml(r, 200, &b);
}

/* ---- PUT ------------------------------------------------------------------ */

unsigned s3_put_object_begin(request *r)
{
    s3_req *s = r->fe;
    unsigned status = body_begin(r, &s->body, 1, 0);
    s->body_started = status == 0;
    if (status)
        s->early_error = status == MHD_HTTP_CONTENT_TOO_LARGE ? "EntityTooLarge" : "InternalError";
    return status;
}

enum MHD_Result s3_put_object_end(request *r)
{
    s3_req *s = r->fe;
    enum MHD_Result ret;
    if (s->early_error) {
        if (strcmp(s->early_error, "EntityTooLarge") == 0)
            return s3_error(r, 400, "EntityTooLarge",
                            "Your proposed upload exceeds the maximum allowed object size.");
        return s3_error(r, 500, "InternalError", s->body.error ? s->body.error : "upload failed");
    }
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    if (s3_body_check(r, &ret) != 0)
        return ret;
    store_put_result res;
    unsigned status = body_finish(&s->body, &res);
    if (status != 0)
        return s3_store_error(r, status == 507 ? STORE_NOSPACE : STORE_IO);
    if (s3_body_verify(r, res.md5, res.digest, &ret) != 0)
        return ret;

    store_cond cond;
    if (s3_write_preconditions(r, 1, &cond, &ret))
        return ret;

    char etag[33];
    util_hex(res.md5, 16, etag);
    buf meta = {0};
    s3_request_meta(r, &meta, etag);
    if (s->ck_value[0])
        s3_meta_add_checksum(&meta, cksum_name(s->ck_alg), s->ck_value);
    int st = store_upload_commit(s->body.up, s->ns, s->key, s->klen, NULL, meta.data, meta.len,
                                 &cond, &res);
    s->body.up = NULL;
    buf_free(&meta);
    if (st != STORE_OK)
        return s3_store_error(r, st);
    return s3_stored(r, etag);
}

/* ---- DELETE --------------------------------------------------------------- */

enum MHD_Result s3_delete_object(request *r)
{
    s3_req *s = r->fe;
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    enum MHD_Result ret;
    store_cond cond;
    if (s3_write_preconditions(r, 0, &cond, &ret)) /* (S3 deletes take If-Match only) */
        return ret;
    int st = store_delete_blind(r->srv->st, s->ns, s->key, s->klen, &cond);
    if (st != STORE_OK && st != STORE_NOTFOUND)
        return s3_store_error(r, st);
    return s3_empty(r, 204, NULL, NULL);
}

/* ---- COPY ----------------------------------------------------------------- */

static void keep_checksum(void *ctx, int tag, const char *v, size_t n)
{
    if (tag == META_CHECKSUM)
        meta_add(ctx, tag, v, n);
}

/* What may refuse a copy once its source is found (and its conditions
 * held: s3_copy_source): the metadata directive (*replace; 400 if unknown),
 * a copy onto itself that changes nothing (400), the destination's
 * If-Match and If-None-Match (*cond: the destination as they saw it).  1
 * with *ret answered. */
static int copy_refused(request *r, int self, int *replace, store_cond *cond, enum MHD_Result *ret)
{
    const char *directive = http_header(r, "x-amz-metadata-directive");
    *replace = directive && strcasecmp(directive, "REPLACE") == 0;
    if (directive && !*replace && strcasecmp(directive, "COPY") != 0)
        *ret = s3_error(r, 400, "InvalidArgument", "Unknown metadata directive.");
    else if (self && !*replace)
        *ret = s3_error(r, 400, "InvalidRequest",
                        "This copy request is illegal because it is trying to copy an object to "
                        "itself without changing the object's metadata, storage class, website "
                        "redirect location or encryption attributes.");
    else
        return s3_write_preconditions(r, 1, cond, ret); /* the destination's */
    return 1;
}

enum MHD_Result s3_copied(request *r, const char *element, const char *etag, uint64_t mtime_ms)
{
    char when[32];
    s3_format_iso8601(mtime_ms ? mtime_ms : util_now_ms(), when);
    buf b = {0};
    buf_printf(&b, "%s<%s xmlns=\"%s\">", S3_XML_HEAD, element, S3_XMLNS);
    buf_printf(&b, "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>", when, etag);
    buf_printf(&b, "</%s>", element);
    return s3_xml(r, 200, &b);
}

int s3_copy_source_name(const char *src, char **bucket, const char **key, size_t *klen)
{
    /* "/bucket/key" or "bucket/key", URL-encoded, maybe "?versionId=..."; the
     * bucket ends at the first '/' of the decoded value, as S3 reads it */
    const char *p = src[0] == '/' ? src + 1 : src;
    const char *qm = strstr(p, "?versionId=");
    if (qm && strcmp(qm + 11, "null") != 0)
        return COPY_SOURCE_VERSION;
    size_t len = qm ? (size_t)(qm - p) : strlen(p);
    char *dec = malloc(len + 1);
    if (dec == NULL)
        return COPY_SOURCE_MEMORY;
    /* (S3 refuses a '%' not followed by two hex digits) */
    ssize_t got = util_pct_decode(p, len, (uint8_t *)dec, len);
    if (got < 0) {
        free(dec);
        return COPY_SOURCE_ENCODING;
    }
    size_t n = (size_t)got;
    dec[n] = '\0';
    char *slash = strchr(dec, '/');
    if (slash == NULL || slash[1] == '\0') {
        free(dec);
        return COPY_SOURCE_MALFORMED;
    }
    *slash = '\0';
    *bucket = dec;
    *key = slash + 1;
    *klen = n - (size_t)(*key - dec);
    return 0;
}

int s3_copy_source(request *r, store_entry *e, char etag[80], int *self, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    char *dec;
    const char *src_key;
    size_t src_klen;
    int bad = s3_copy_source_name(http_header(r, "x-amz-copy-source"), &dec, &src_key, &src_klen);
    if (bad) {
        *ret = bad == COPY_SOURCE_VERSION
                   ? s3_error(r, 400, "InvalidArgument", "Invalid version id specified")
               : bad == COPY_SOURCE_ENCODING
                   ? s3_error(r, 400, "InvalidArgument", "Invalid copy source encoding")
               : bad == COPY_SOURCE_MEMORY
                   ? s3_error(r, 500, "InternalError", "out of memory")
                   : s3_error(r, 400, "InvalidArgument",
                              "Copy Source must mention the source bucket and key: "
                              "sourcebucket/sourcekey.");
        return 1;
    }
    char src_ns[S3_NS_MAX];
    s3_bucket_ns(dec, strlen(dec), src_ns, sizeof src_ns);
    if (!s3_bucket_exists(r)) {
        free(dec);
        *ret = s3_no_bucket(r);
        return 1;
    }
    /* a copy takes the source's current version: a copy here that another
     * node's write made stale is dropped first (the tier not answering,
     * the copy here is taken, as a read would) */
    int st = store_check_key(r->srv->st, src_ns, src_key, src_klen);
    if (st == STORE_UNAVAILABLE)
        st = STORE_OK;
    if (st == STORE_OK)
        st = store_lookup(r->srv->st, src_ns, src_key, src_klen, e);
    if (st == STORE_OK && e->from_tier) {
        /* the source is still arriving from the cold tier: a copy links
         * its blob (or reads its file), so wait until it is here */
        store_entry_clear(e);
        int state;
        uint64_t size;
        st = store_warm(r->srv->st, src_ns, src_key, src_klen, &state, &size);
        if (st == STORE_OK)
            st = store_lookup(r->srv->st, src_ns, src_key, src_klen, e);
    }
    if (st != STORE_OK) {
        free(dec);
        int bst =
            st == STORE_NOTFOUND ? store_ns_get(r->srv->st, src_ns, NULL, NULL, NULL) : STORE_OK;
        *ret = bst != STORE_OK ? s3_bucket_error(r, bst) : s3_store_error(r, st);
        return 1;
    }
    *self =
        strcmp(src_ns, s->ns) == 0 && src_klen == s->klen && memcmp(src_key, s->key, s->klen) == 0;
    free(dec);
    s3_meta_etag(e->meta, e->meta_len, etag, 80);
    if (check_conditions(r, 1, etag, e->mtime_ms)) { /* (x-amz-copy-source-if-*) */
        store_entry_clear(e);
        *ret = s3_store_error(r, STORE_PRECONDITION);
        return 1;
    }
    return 0;
}

static enum MHD_Result copy_object_once(request *r, int head, int *vanished)
{
    (void)head;
    s3_req *s = r->fe;
    store_entry e;
    char etag[80];
    int self;
    enum MHD_Result ret;
    if (s3_copy_source(r, &e, etag, &self, &ret))
        return ret;
    int replace;
    store_cond cond;
    if (copy_refused(r, self, &replace, &cond, &ret)) {
        store_entry_clear(&e);
        return ret;
    }
    /* a copy onto itself (a metadata change: BuildKit's touch) goes only
     * onto the version it read: one written between its read and its
     * write is not put back to the older bytes, the copy reads again.  Its
     * own If-Match or If-None-Match must have seen that version too. */
    int changed = 0;
    if (self && cond.kind == STORE_COND_NONE)
        store_cond_set(&cond, 0, &e); /* (e is kept here: s3_copy_source waited for it) */
    else if (self)
        changed = !store_cond_is(&cond, &e);
    buf meta = {0};
    if (replace) {
        s3_request_meta(r, &meta, etag);
        meta_each(e.meta, e.meta_len, keep_checksum, &meta); /* the bytes are the same */
    } else {
        buf_add(&meta, e.meta, e.meta_len);
    }
    uint64_t mtime_ms = 0;
    int st = changed ? STORE_PRECONDITION
                     : store_link(r->srv->st, s->ns, s->key, s->klen, e.digest, meta.data, meta.len,
                                  &cond, &mtime_ms);
    buf_free(&meta);
    store_entry_clear(&e);
    if (st == STORE_NOTFOUND && vanished) {
        *vanished = 1; /* the source's blob went since its lookup: look again */
        return MHD_YES;
    }
    if (st == STORE_PRECONDITION && self) {
        /* the key changed between the copy's read and its write */
        if (vanished) {
            *vanished = 1; /* read again */
            return MHD_YES;
        }
        return s3_error(r, 503, "SlowDown",
                        "The object changed while it was copied onto itself; retry.");
    }
    if (st != STORE_OK)
        return s3_store_error(r, st);
    return s3_copied(r, "CopyObjectResult", etag, mtime_ms); /* as listings will show it */
}

enum MHD_Result s3_copy_object(request *r)
{
    /* as for a GET: a source overwritten between its lookup and the link
     * to its blob is looked up again */
    return serve_looking_again(r, 0, copy_object_once);
}
