/*
 * s3.c - the S3 front end: which request is it, who sent it, may they, and
 * errors in S3's XML.
 *
 * A request is routed here when it carries AWS authentication, names an
 * existing bucket, or is not the native API's.  Addressing is path style
 * (/bucket/key) always, and virtual-host style (bucket.DOMAIN) when
 * --s3-domain is set.  The key is taken from the raw request target and
 * percent-decoded once, never normalized: "a//b/../c" is a key of its own.
 *
 * Authentication runs on the first call, before any body byte is read:
 * SigV4 header or presigned, SigV2 header or presigned (common/sigv4.c).
 * A bad signature is answered at once and the connection closed.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/checksum.h"
#include "../common/log.h"
#include <openssl/evp.h>

#include "../common/util.h"
#include "creds.h"
#include "admin.h"
#include "s3.h"

enum s3_op {
    OP_UNKNOWN,
    OP_LIST_BUCKETS,
    OP_ADMIN, /* /admin/...: signed like S3, answered by admin.c */
    OP_CREATE_BUCKET,
    OP_DELETE_BUCKET,
    OP_HEAD_BUCKET,
    OP_GET_LOCATION,
    OP_GET_VERSIONING,
    OP_LIST_V1,
    OP_LIST_V2,
    OP_LIST_VERSIONS,
    OP_DELETE_OBJECTS,
    OP_PUT_OBJECT,
    OP_COPY_OBJECT,
    OP_GET_OBJECT,
    OP_HEAD_OBJECT,
    OP_DELETE_OBJECT,
    OP_NOT_IMPLEMENTED,
    OP_METHOD_NOT_ALLOWED,
    OP_BUCKET_SUBRESOURCE_OK, /* ?acl and friends on a PUT: accepted, ignored */
    OP_CREATE_MULTIPART,
    OP_UPLOAD_PART,
    OP_UPLOAD_PART_COPY,
    OP_GET_OBJECT_TAGGING,
    OP_COMPLETE_MULTIPART,
    OP_ABORT_MULTIPART,
    OP_LIST_PARTS,
    OP_LIST_UPLOADS,
};

static const char *RESERVED[] = {"cas", "metrics", "healthz", "readyz", "status",      "admin",
                                 "v1",  "v2",      "v8",      "ac",     "favicon.ico", NULL};

int s3_bucket_ns(const char *bucket, size_t len, char *out, size_t cap)
{
    int n = snprintf(out, cap, "s3/%.*s", (int)len, bucket);
    return n >= 0 && (size_t)n < cap ? n : -1;
}

const char *s3_ns_bucket(const char *ns)
{
    return strncmp(ns, "s3/", 3) == 0 ? ns + 3 : NULL;
}

int s3_reserved_bucket(const char *name)
{
    for (int i = 0; RESERVED[i]; i++)
        if (strcmp(RESERVED[i], name) == 0)
            return 1;
    return 0;
}

static void s3_cleanup(request *r)
{
    s3_req *s = r->fe;
    if (s->body_started)
        body_free(&s->body);
    if (s->chunked_on)
        awschunked_free(&s->chunked);
    if (s->signer_on)
        sigv4_chunk_free(&s->signer);
    if (s->ck_alg != CKSUM_NONE)
        cksum_free(&s->ck);
    buf_free(&s->xml);
    free(s->key);
    free(s->resource);
    free(s->query);
    free(s);
}

/* Percent-decodes s[0..n) into a new string (plus as space when plus). */
char *s3_pct_decode(const char *s, size_t n, int plus, size_t *out_len)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && util_hexval((unsigned char)s[i + 1]) >= 0 &&
            util_hexval((unsigned char)s[i + 2]) >= 0) {
            d[j++] = (char)(util_hexval((unsigned char)s[i + 1]) << 4 |
                            util_hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (plus && s[i] == '+') {
            d[j++] = ' ';
        } else {
            d[j++] = s[i];
        }
    }
    d[j] = '\0';
    if (out_len)
        *out_len = j;
    return d;
}

const char *s3_param(request *r, const char *name)
{
    s3_req *s = r->fe;
    for (size_t i = 0; i < s->nparams; i++) {
        if (strcmp(s->params[i].name, name) != 0)
            continue;
        return s->params[i].value ? s->params[i].value : "";
    }
    return NULL;
}

int s3_count_param(request *r, const char *name, long dflt, long cap, long *out,
                   enum MHD_Result *ret)
{
    const char *v = s3_param(r, name);
    *out = dflt;
    if (v == NULL)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end != '\0' || errno == ERANGE || n > INT_MAX) {
        char msg[96];
        snprintf(msg, sizeof msg, "Provided %s not an integer or within integer range", name);
        *ret = s3_error(r, 400, "InvalidArgument", msg);
        return 1;
    }
    *out = n < cap ? n : cap;
    return 0;
}

int s3_url_encoding_param(request *r, int *url, enum MHD_Result *ret)
{
    const char *enc = s3_param(r, "encoding-type");
    *url = enc != NULL;
    if (enc && strcmp(enc, "url") != 0) {
        *ret = s3_error(r, 400, "InvalidArgument", "Invalid Encoding Method specified in Request");
        return 1;
    }
    return 0;
}

int s3_has_param(request *r, const char *name)
{
    return s3_param(r, name) != NULL;
}

void s3_format_iso8601(uint64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

void s3_format_http_date(uint64_t ms, char out[40])
{
    if (sigv4_format_http_date((time_t)(ms / 1000), out) != SIGV4_OK)
        strcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT");
}

void s3_common_headers(request *r, struct MHD_Response *resp)
{
    s3_req *s = r->fe;
    MHD_add_response_header(resp, "x-amz-request-id", s->request_id);
    MHD_add_response_header(resp, "Server", "cairn");
}

enum MHD_Result s3_empty(request *r, unsigned status, const char *name, const char *value)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    if (name)
        MHD_add_response_header(resp, name, value);
    s3_common_headers(r, resp);
    return http_queue(r, status, resp);
}

enum MHD_Result s3_stored(request *r, const char *md5_hex)
{
    s3_req *s = r->fe;
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    char etag[40];
    snprintf(etag, sizeof etag, "\"%.32s\"", md5_hex);
    MHD_add_response_header(resp, "ETag", etag);
    if (s->ck_value[0])
        MHD_add_response_header(resp, cksum_header(s->ck_alg), s->ck_value);
    s3_common_headers(r, resp);
    return http_queue(r, 200, resp);
}

/* The XML document b as the answer, with one more header if name is not
 * NULL. */
static enum MHD_Result xml_answer(request *r, unsigned status, buf *b, const char *name,
                                  const char *value)
{
    size_t len;
    char *data = buf_take(b, &len);
    if (data == NULL)
        return s3_error(r, 500, "InternalError", "out of memory building the response");
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/xml");
    if (name)
        MHD_add_response_header(resp, name, value);
    s3_common_headers(r, resp);
    return http_queue(r, status, resp);
}

enum MHD_Result s3_xml(request *r, unsigned status, buf *b)
{
    return xml_answer(r, status, b, NULL, NULL);
}

void s3_xml_name(buf *b, int url, const char *tag, const char *k, size_t n)
{
    if (!url) {
        buf_xml_elem(b, tag, k, n);
        return;
    }
    char *enc = sigv4_uri_encode(k, n, 1);
    if (enc == NULL) {
        b->broken = 1; /* (out of memory: the answer is an error, not a name left out) */
        return;
    }
    buf_printf(b, "<%s>%s</%s>", tag, enc, tag);
    free(enc);
}

/* An <Error> document: its code and message, extra elements (if not
 * NULL), where and which request.  Returns the resource named. */
static const char *error_doc(request *r, buf *b, const char *code, const char *msg,
                             const char *extra)
{
    s3_req *s = r->fe;
    buf_puts(b, S3_XML_HEAD "<Error>");
    buf_xml_elem(b, "Code", code, strlen(code));
    buf_xml_elem(b, "Message", msg, strlen(msg));
    if (extra)
        buf_puts(b, extra);
    if (s->bucket[0] && !s->bad_bucket)
        buf_xml_elem(b, "BucketName", s->bucket, strlen(s->bucket));
    if (s->key)
        buf_xml_elem(b, "Key", s->key, s->klen);
    const char *res = s->resource ? s->resource : "/";
    buf_xml_elem(b, "Resource", res, strlen(res));
    buf_xml_elem(b, "RequestId", s->request_id, strlen(s->request_id));
    buf_puts(b, "</Error>");
    return res;
}

enum MHD_Result s3_invalid_range(request *r, const char *range, uint64_t size)
{
    buf b = {0}, extra = {0};
    buf_xml_elem(&extra, "RangeRequested", range ? range : "", range ? strlen(range) : 0);
    buf_printf(&extra, "<ActualObjectSize>%llu</ActualObjectSize>", (unsigned long long)size);
    error_doc(r, &b, "InvalidRange", "The requested range is not satisfiable",
              extra.data ? extra.data : "");
    buf_free(&extra);
    char cr[48];
    snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
    return xml_answer(r, 416, &b, "Content-Range", cr);
}

enum MHD_Result s3_error(request *r, unsigned status, const char *code, const char *msg)
{
    buf b = {0};
    const char *res = error_doc(r, &b, code, msg, NULL);
    /* (not an answer yet when the call must run again, off this thread, for
     * the tier's word: see http_queue) */
    if ((status == 403 || status >= 500) && !store_would_block_peek())
        log_msg(status == 403 ? LOG_INFO : LOG_WARN, status == 403 ? "auth_failed" : "s3_error",
                "%s %s: %s %s", r->method, res, code, msg);
    return s3_xml(r, status, &b);
}

enum MHD_Result s3_store_error(request *r, int st)
{
    switch (st) {
    case STORE_NOTFOUND:
    case STORE_CORRUPT:
        return s3_error(r, 404, "NoSuchKey", "The specified key does not exist.");
    case STORE_BAD_KEY:
        return s3_error(r, 400, "KeyTooLongError", "Your key is too long.");
    case STORE_NOSPACE:
        return s3_error(r, 507, "SlowDown",
                        "The cache is full and nothing can be evicted; retry later.");
    case STORE_TIER_BEHIND:
        return s3_error(r, 507, "SlowDown",
                        "The cold tier is behind: the bytes waiting for it are at the bound "
                        "(--tier-queue-max); retry later.");
    case STORE_TOO_LARGE:
        return s3_error(r, 400, "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed object size.");
    case STORE_DIGEST_MISMATCH:
        return s3_error(r, 400, "XAmzContentSHA256Mismatch",
                        "The provided 'x-amz-content-sha256' header does not match what was "
                        "computed.");
    case STORE_SHUTDOWN:
        return s3_error(r, 503, "ServiceUnavailable", "The server is shutting down.");
    case STORE_UNAVAILABLE:
        return s3_error(r, 503, "ServiceUnavailable",
                        "The cold tier could not be reached to look this up; retry later.");
    case STORE_PRECONDITION: /* a condition that does not hold (or no longer, at the write) */
        return s3_error(r, 412, "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold");
    case STORE_NO_NAMESPACE: /* deleted while the request came */
        return s3_error(r, 404, "NoSuchBucket", "The specified bucket does not exist.");
    default:
        return s3_error(r, 500, "InternalError", store_strerror(st));
    }
}

struct XML_ParserStruct *s3_xml_parser(void *ud)
{
    XML_Parser xp = XML_ParserCreate("UTF-8");
    if (xp == NULL)
        return NULL;
    XML_SetUserData(xp, ud);
    XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
    return xp;
}

int s3_xml_parse(struct XML_ParserStruct *xp, const buf *b)
{
    const char *d = b->data ? b->data : "";
    /* S3's request documents have no DTD; one can only be there to define
     * entities, so it is refused before expat sees it */
    int ok = memmem(d, b->len, "<!DOCTYPE", 9) == NULL &&
             XML_Parse(xp, d, (int)b->len, 1) == XML_STATUS_OK;
    XML_ParserFree(xp);
    return ok;
}

int s3_bucket_exists(request *r)
{
    s3_req *s = r->fe;
    s->bucket_st = store_ns_get(r->srv->st, s->ns, NULL, NULL, NULL);
    return s->bucket_st == STORE_OK;
}

enum MHD_Result s3_bucket_error(request *r, int st)
{
    if (st == STORE_NOTFOUND)
        return s3_error(r, 404, "NoSuchBucket", "The specified bucket does not exist.");
    return s3_store_error(r, st);
}

enum MHD_Result s3_no_bucket(request *r)
{
    return s3_bucket_error(r, ((s3_req *)r->fe)->bucket_st);
}

/* ---- routing -------------------------------------------------------------- */

int s3_bucket_name_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '_' || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || (size_t)(end - p) < len)
            return 0;
        unsigned cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += len;
    }
    return 1;
}

static int has_aws_auth(request *r)
{
    const char *a = http_header(r, "Authorization");
    if (a && (strncmp(a, "AWS4-", 5) == 0 || strncmp(a, "AWS ", 4) == 0))
        return 1;
    const char *q = strchr(r->raw_uri, '?');
    return q && (strstr(q, "X-Amz-Signature=") || strstr(q, "AWSAccessKeyId="));
}

/* Parses bucket, key and query into a new s3_req.  Always claims the request
 * (S3 is the default front end); the bucket may be empty (service). */
int s3_route(request *r)
{
    s3_req *s = calloc(1, sizeof *s);
    if (s == NULL)
        return 0;
    r->fe = s;
    r->cleanup = s3_cleanup;
    uint64_t id = util_mono_ns() ^ ((uint64_t)(uintptr_t)r << 16);
    uint8_t idb[8];
    for (int i = 0; i < 8; i++)
        idb[i] = (uint8_t)(id >> (56 - 8 * i));
    util_hex(idb, 8, s->request_id);

    const char *raw = r->raw_uri;
    const char *q = strchr(raw, '?');
    size_t plen = q ? (size_t)(q - raw) : strlen(raw);
    if (q) {
        s->query = strdup(q + 1);
        if (s->query)
            sigv4_query_split(s->query, s->params, S3_MAX_PARAMS, &s->nparams);
        /* parameter values are used decoded from here on (signatures use the raw URI) */
        for (size_t i = 0; i < s->nparams; i++) {
            char *n = (char *)s->params[i].name, *v = (char *)s->params[i].value;
            char *dn = s3_pct_decode(n, strlen(n), 1, NULL);
            if (dn) {
                strcpy(n, dn); /* decoding never lengthens */
                free(dn);
            }
            if (v) {
                char *dv = s3_pct_decode(v, strlen(v), 1, NULL);
                if (dv) {
                    strcpy(v, dv);
                    free(dv);
                }
            }
        }
    }

    const char *path = raw[0] == '/' ? raw + 1 : raw;
    plen -= (size_t)(path - raw);
    const char *host = http_header(r, "Host");
    const char *dom = r->srv->cfg->s3_domain;
    size_t dl = strlen(dom);
    if (dl && host) {
        char h[256];
        snprintf(h, sizeof h, "%s", host);
        char *colon = strrchr(h, ':');
        if (colon && !strchr(colon, ']'))
            *colon = '\0';
        size_t hl = strlen(h);
        if (hl > dl + 1 && h[hl - dl - 1] == '.' && strcasecmp(h + hl - dl, dom) == 0) {
            snprintf(s->bucket, sizeof s->bucket, "%.*s", (int)(hl - dl - 1), h);
            s->vhost = 1;
            if (plen > 0)
                s->key = s3_pct_decode(path, plen, 0, &s->klen);
        }
    }
    if (s->bucket[0] == '\0' && plen > 0) {
        const char *slash = memchr(path, '/', plen);
        size_t bl = slash ? (size_t)(slash - path) : plen;
        char *b = s3_pct_decode(path, bl, 0, NULL);
        if (b && bl > 0 && strlen(b) < sizeof s->bucket) {
            snprintf(s->bucket, sizeof s->bucket, "%s", b);
        } else { /* ("//x" names no bucket; it is not the service either) */
            snprintf(s->bucket, sizeof s->bucket, "-invalid-"); /* (no bucket has it) */
            s->bad_bucket = bl == 0 ? BAD_BUCKET_NONE : BAD_BUCKET_UNKNOWN;
        }
        free(b);
        if (slash && (size_t)(slash - path) + 1 < plen)
            s->key = s3_pct_decode(slash + 1, plen - bl - 1, 0, &s->klen);
    }
    if (s->bucket[0])
        s3_bucket_ns(s->bucket, strlen(s->bucket), s->ns, sizeof s->ns);
    r->m.ns = s->bucket;
    size_t rl = strlen(s->bucket) + (s->key ? s->klen : 0) + 3;
    if (s->bad_bucket) /* (its path, as it came: XML takes no bytes that are not UTF-8) */
        s->resource = strdup(valid_utf8(r->path, strlen(r->path)) ? r->path : "/");
    else if ((s->resource = malloc(rl)) != NULL)
        snprintf(s->resource, rl, "/%s%s%s", s->bucket, s->key ? "/" : "", s->key ? s->key : "");
    return 1;
}

/* Should this request go to S3 rather than the native API?  Only when it
 * carries AWS authentication: without it, paths of the native API's form
 * (/ac/..., /cas/..., /<instance>/ac/<64 hex>) are the native API's, so a
 * bucket can never hide a Bazel instance of the same name. */
int s3_claims(request *r)
{
    return has_aws_auth(r);
}

/* S3's subresources and headers of features cairn does not have: a request
 * that names one is answered 501, never taken for the plain operation on
 * its bucket or object (DELETE /bucket?policy must not delete the bucket,
 * GET /bucket/key?attributes must not answer the body, a PUT asking for
 * encryption with the client's key or an object lock must not be stored
 * without them). */
static int unsupported_feature(request *r, int writes)
{
    static const char subresources[] =
        " accelerate acl analytics attributes cors encryption intelligent-tiering inventory"
        " legal-hold lifecycle logging metadataConfiguration metadataTable metrics notification"
        " object-lock ownershipControls policy policyStatus publicAccessBlock replication"
        " requestPayment restore retention select session tagging torrent website ";
    s3_req *s = r->fe;
    for (size_t i = 0; i < s->nparams; i++) {
        const char *name = s->params[i].name;
        size_t n = strlen(name);
        for (const char *p = subresources; n && (p = strstr(p + 1, name)) != NULL;)
            if (p[-1] == ' ' && p[n] == ' ')
                return 1;
    }
    if (!writes)
        return 0; /* (the headers below ask for something of a write) */
    const char *sse = http_header(r, "x-amz-server-side-encryption");
    return (sse && strcmp(sse, "AES256") != 0) || /* (S3's own keys: the disk's business) */
           http_header(r, "x-amz-server-side-encryption-customer-algorithm") ||
           http_header(r, "x-amz-copy-source-server-side-encryption-customer-algorithm") ||
           http_header(r, "x-amz-object-lock-mode") ||
           http_header(r, "x-amz-object-lock-retain-until-date") ||
           http_header(r, "x-amz-object-lock-legal-hold") || http_header(r, "x-amz-tagging");
}

static int classify(request *r)
{
    s3_req *s = r->fe;
    const char *m = r->method;
    int get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0, put = strcmp(m, "PUT") == 0,
        del = strcmp(m, "DELETE") == 0, post = strcmp(m, "POST") == 0;
    if (!(get || head || put || del || post))
        return OP_METHOD_NOT_ALLOWED;
    if (s->bucket[0] == '\0')
        return get || head ? OP_LIST_BUCKETS : OP_NOT_IMPLEMENTED;
    if (!s->vhost && s->key && strcmp(s->bucket, "admin") == 0)
        return OP_ADMIN; /* /admin itself stays a (reserved) bucket name */
    if (s->key == NULL && put && s3_has_param(r, "acl"))
        return OP_BUCKET_SUBRESOURCE_OK; /* (canned ACLs are accepted and ignored) */
    if (s->key && get && s3_has_param(r, "tagging"))
        return OP_GET_OBJECT_TAGGING; /* (none can be set: an empty set) */
    if (unsupported_feature(r, put || post))
        return OP_NOT_IMPLEMENTED;
    if (s->key == NULL) {
        if (get) {
            if (s3_has_param(r, "location"))
                return OP_GET_LOCATION;
            if (s3_has_param(r, "versioning"))
                return OP_GET_VERSIONING;
            if (s3_has_param(r, "versions"))
                return OP_LIST_VERSIONS;
            if (s3_has_param(r, "uploads"))
                return OP_LIST_UPLOADS;
            const char *lt = s3_param(r, "list-type");
            return lt && strcmp(lt, "2") == 0 ? OP_LIST_V2 : OP_LIST_V1;
        }
        if (head)
            return OP_HEAD_BUCKET;
        if (put)
            return s->nparams == 0 || s3_has_param(r, "x-id") ? OP_CREATE_BUCKET
                                                              : OP_NOT_IMPLEMENTED;
        if (del)
            return OP_DELETE_BUCKET;
        if (post && s3_has_param(r, "delete"))
            return OP_DELETE_OBJECTS;
        return OP_NOT_IMPLEMENTED;
    }
    if (post && s3_has_param(r, "uploads"))
        return OP_CREATE_MULTIPART;
    if (s3_has_param(r, "uploadId")) {
        if (put)
            return http_header(r, "x-amz-copy-source") ? OP_UPLOAD_PART_COPY : OP_UPLOAD_PART;
        if (post)
            return OP_COMPLETE_MULTIPART;
        if (del)
            return OP_ABORT_MULTIPART;
        if (get)
            return OP_LIST_PARTS;
        return OP_NOT_IMPLEMENTED;
    }
    if (s3_has_param(r, "uploads"))
        return OP_NOT_IMPLEMENTED;
    if (get)
        return OP_GET_OBJECT;
    if (head)
        return OP_HEAD_OBJECT;
    if (put)
        return http_header(r, "x-amz-copy-source") ? OP_COPY_OBJECT : OP_PUT_OBJECT;
    if (del)
        return OP_DELETE_OBJECT;
    return OP_NOT_IMPLEMENTED;
}

static int needed_right(int op)
{
    switch (op) {
    case OP_LIST_BUCKETS:
    case OP_HEAD_BUCKET:
    case OP_GET_LOCATION:
    case OP_GET_VERSIONING:
    case OP_LIST_V1:
    case OP_LIST_V2:
    case OP_LIST_VERSIONS:
    case OP_GET_OBJECT:
    case OP_HEAD_OBJECT:
    case OP_LIST_PARTS:
    case OP_LIST_UPLOADS:
    case OP_GET_OBJECT_TAGGING:
        return CREDS_READ;
    case OP_CREATE_BUCKET:
    case OP_DELETE_BUCKET:
    case OP_BUCKET_SUBRESOURCE_OK:
    case OP_ADMIN:
        return CREDS_ADMIN;
    default:
        return CREDS_WRITE;
    }
}

/* ---- authentication ------------------------------------------------------- */

/* May who (NULL: anonymous) read the bucket a copy's x-amz-copy-source names,
 * read as the copy will read it?  (A source it cannot read is the copy's 400.) */
static int may_read_copy_source(request *r, const char *who)
{
    char *bucket;
    const char *key;
    size_t klen;
    int bad = s3_copy_source_name(http_header(r, "x-amz-copy-source"), &bucket, &key, &klen);
    if (bad)
        return bad != COPY_SOURCE_MEMORY; /* (without memory: refused, not waved through) */
    int ok = creds_allowed(who, bucket, CREDS_READ);
    free(bucket);
    return ok;
}

typedef struct header_list {
    sigv4_header h[128];
    size_t n;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *k,
                                      const char *v)
{
    (void)kind;
    header_list *l = cls;
    if (l->n < sizeof l->h / sizeof l->h[0]) {
        l->h[l->n].name = k;
        l->h[l->n].value = v ? v : "";
        l->n++;
    }
    return MHD_YES;
}

/* The SigV4 signing key depends only on (secret, day, region, service): each
 * thread keeps the last one it derived, which saves four HMACs per request. */
static __thread struct {
    char access_key[SIGV4_ACCESS_KEY_MAX + 1];
    char date[9];
    char region[SIGV4_REGION_MAX + 1];
    char service[SIGV4_SERVICE_MAX + 1];
    unsigned char key[SIGV4_KEY_SIZE];
} key_cache;

static int verify(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                  const sigv4_verify_opts *opts, s3_req *s)
{
    int rc = sigv4_check(auth, opts);
    if (rc != SIGV4_OK)
        return rc;
    if (auth->kind != SIGV4_AUTH_V4_HEADER && auth->kind != SIGV4_AUTH_V4_QUERY)
        return sigv4_verify_signature(req, auth, secret, opts, NULL);
    if (strcmp(key_cache.access_key, auth->access_key) != 0 ||
        strcmp(key_cache.date, auth->date) != 0 || strcmp(key_cache.region, auth->region) != 0 ||
        strcmp(key_cache.service, auth->service) != 0) {
        key_cache.access_key[0] = '\0';
        if ((rc = sigv4_derive_key(secret, auth->date, auth->region, auth->service,
                                   key_cache.key)) != SIGV4_OK)
            return rc;
        snprintf(key_cache.access_key, sizeof key_cache.access_key, "%s", auth->access_key);
        snprintf(key_cache.date, sizeof key_cache.date, "%s", auth->date);
        snprintf(key_cache.region, sizeof key_cache.region, "%s", auth->region);
        snprintf(key_cache.service, sizeof key_cache.service, "%s", auth->service);
    }
    memcpy(s->signing_key, key_cache.key, SIGV4_KEY_SIZE);
    return sigv4_verify_signature_key(req, auth, key_cache.key, NULL);
}

/* 0 if the request may go on; otherwise an error was queued (returned in *ret). */
static int authenticate(request *r, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    header_list hl;
    hl.n = 0;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &hl);
    /* the raw query again: s->params were decoded in place */
    char *rawq = NULL;
    sigv4_param raw_params[S3_MAX_PARAMS];
    size_t nraw = 0;
    const char *q = strchr(r->raw_uri, '?');
    size_t plen = q ? (size_t)(q - r->raw_uri) : strlen(r->raw_uri);
    char *path = strndup(r->raw_uri, plen);
    if (q && (rawq = strdup(q + 1)) != NULL &&
        sigv4_query_split(rawq, raw_params, S3_MAX_PARAMS, &nraw) != SIGV4_OK) {
        free(rawq);
        free(path);
        *ret = s3_error(r, 400, "InvalidArgument", "Too many query parameters.");
        return -1;
    }
    sigv4_request req = {r->method, path, raw_params, nraw, hl.h, hl.n, NULL};
    sigv4_auth auth;
    int rc = sigv4_parse_auth(&req, &auth);
    if (rc == SIGV4_OK && auth.kind == SIGV4_AUTH_V4_HEADER &&
        http_header(r, "x-amz-content-sha256") == NULL) {
        /* S3 wants the header; curl --aws-sigv4 (before 8.x) omits it and signs
         * the SHA-256 of the body, which must then be empty, as it is for a GET */
        const char *cl = http_header(r, "Content-Length");
        if ((cl && strtoull(cl, NULL, 10) > 0) || http_header(r, "Transfer-Encoding")) {
            free(rawq);
            free(path);
            *ret = s3_error(r, 400, "InvalidRequest",
                            "Missing required header for this request: x-amz-content-sha256.");
            return -1;
        }
        req.payload_hash = SIGV4_EMPTY_SHA256;
        util_unhex(SIGV4_EMPTY_SHA256, 64, s->payload_sha256, 32);
        s->payload_sha256_set = 1;
    }
    int need = needed_right(s->op);
    const char *who = NULL; /* the key the request is signed with, once checked */
    /* the admin API acts on every bucket: it takes an admin key for all ("*") */
    const char *bucket = s->op == OP_ADMIN ? "*" : s->bucket[0] ? s->bucket : NULL;
    int result = 0;
    if (creds_count() == 0) {
        /* authentication off: signatures are not checked, everything is allowed */
        s->anonymous = rc == SIGV4_ERR_NO_AUTH;
    } else if (rc == SIGV4_ERR_NO_AUTH) {
        s->anonymous = 1;
        if (!creds_allowed(NULL, bucket, need)) {
            *ret = s3_error(r, 403, "AccessDenied", "Access Denied.");
            result = -1;
        }
    } else if (rc != SIGV4_OK) {
        int status;
        const char *code = sigv4_s3_error(rc, auth.kind, &status);
        *ret = s3_error(r, (unsigned)status, code, sigv4_strerror(rc));
        result = -1;
    } else {
        const char *secret = creds_secret(auth.access_key);
        sigv4_verify_opts opts = {.now = time(NULL), .region = NULL, .service = "s3"};
        char vhost[64];
        if (s->vhost) {
            snprintf(vhost, sizeof vhost, "%s", s->bucket);
            opts.vhost_bucket = vhost;
        }
        if (secret == NULL) {
            *ret = s3_error(r, 403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.");
            result = -1;
        } else if ((rc = verify(&req, &auth, secret, &opts, s)) != SIGV4_OK) {
            int status;
            const char *code = sigv4_s3_error(rc, auth.kind, &status);
            *ret = s3_error(r, (unsigned)status, code, sigv4_strerror(rc));
            result = -1;
        } else if (!creds_allowed(auth.access_key, bucket, need)) {
            *ret = s3_error(r, 403, "AccessDenied", "Access Denied.");
            result = -1;
        } else {
            who = auth.access_key;
            if (auth.kind == SIGV4_AUTH_V4_HEADER) {
                /* kept for aws-chunked bodies, whose chunks chain on this signature */
                s->auth = auth;
                s->signature_checked = 1;
            }
        }
    }
    /* a copy reads its source: the key must be allowed to (before anything
     * about the source is looked up, or told) */
    if (result == 0 && creds_count() > 0 &&
        (s->op == OP_COPY_OBJECT || s->op == OP_UPLOAD_PART_COPY) &&
        !may_read_copy_source(r, who)) {
        *ret = s3_error(r, 403, "AccessDenied", "Access Denied.");
        result = -1;
    }
    free(rawq);
    free(path);
    return result;
}

/* ---- the handler ---------------------------------------------------------- */

static enum MHD_Result first_call(request *r)
{
    s3_req *s = r->fe;
    enum MHD_Result ret;
    s->op = classify(r);
    switch (s->op) {
    case OP_LIST_BUCKETS:
    case OP_LIST_V1:
    case OP_LIST_V2:
    case OP_LIST_VERSIONS:
    case OP_LIST_UPLOADS:
    case OP_LIST_PARTS:
        r->m.op = MOP_LIST;
        break;
    case OP_CREATE_MULTIPART:
    case OP_UPLOAD_PART:
    case OP_UPLOAD_PART_COPY:
    case OP_COMPLETE_MULTIPART:
    case OP_ABORT_MULTIPART:
        r->m.op = MOP_MULTIPART;
        break;
    case OP_COPY_OBJECT:
        r->m.op = MOP_COPY;
        break;
    case OP_CREATE_BUCKET:
    case OP_DELETE_BUCKET:
    case OP_HEAD_BUCKET:
    case OP_GET_LOCATION:
    case OP_GET_VERSIONING:
    case OP_BUCKET_SUBRESOURCE_OK:
        r->m.op = MOP_BUCKET;
        break;
    case OP_DELETE_OBJECTS:
        r->m.op = MOP_DELETE;
        break;
    case OP_ADMIN:
        r->m.op = MOP_ADMIN;
        r->m.ns = NULL;
        break;
    default:
        break; /* by method */
    }
    /* what may wait for the cold tier (server.h), or takes long (with or
     * without a tier: the HTTP thread goes on answering the others): these
     * last calls change nothing before they ask the store (a copy's source,
     * a bucket); those below cannot be run twice (a conditional PUT has its
     * body stored first; an admin drain waits for the queue, a listing of
     * keys for the tier), ask the tier many times (ListBuckets: each of its
     * requests keeps its whole budget), or take long (a part copy, a
     * completion, a batch of deletes) */
    int op = s->op;
    if (op == OP_PUT_OBJECT || op == OP_COPY_OBJECT || op == OP_CREATE_MULTIPART ||
        op == OP_BUCKET_SUBRESOURCE_OK || op == OP_CREATE_BUCKET)
        r->may_offload = 1;
    /* a listing of keys with a tier lists the fleet's (and reads their records) */
    int lists_tier = store_has_tier(r->srv->st) &&
                     (op == OP_LIST_V1 || op == OP_LIST_V2 || op == OP_LIST_VERSIONS);
    if (op == OP_DELETE_OBJECTS || op == OP_COMPLETE_MULTIPART || op == OP_UPLOAD_PART_COPY ||
        op == OP_ADMIN || op == OP_LIST_BUCKETS || lists_tier ||
        (op == OP_PUT_OBJECT && (http_header(r, "If-None-Match") || http_header(r, "If-Match"))))
        r->offload_last = 1;
    /* listings of the tier (a page at a time, each with the tier's whole
     * timeout) are long too: however many there are, they leave half the
     * offload threads to cold reads */
    r->offload_long = op == OP_DELETE_OBJECTS || op == OP_COMPLETE_MULTIPART ||
                      op == OP_UPLOAD_PART_COPY || op == OP_LIST_BUCKETS || lists_tier ||
                      (op == OP_ADMIN && s->key && strcmp(s->key, "keys") == 0);
    if (s->op == OP_NOT_IMPLEMENTED)
        return s3_error(r, 501, "NotImplemented",
                        "A header or query you provided implies functionality that is not "
                        "implemented.");
    if (s->op == OP_METHOD_NOT_ALLOWED)
        return s3_error(r, 405, "MethodNotAllowed",
                        "The specified method is not allowed against this resource.");
    if (s->key && s->klen == 0)
        return s3_error(r, 400, "InvalidArgument", "The object key is empty.");
    if (s->key && !valid_utf8(s->key, s->klen)) {
        /* the error document must stay well-formed XML: leave the key out of it */
        free(s->key);
        s->key = NULL;
        s->klen = 0;
        snprintf(s->resource, strlen(s->resource) + 1, "/%s", s->bucket);
        return s3_error(r, 400, "InvalidURI",
                        "Couldn't parse the specified URI: the key is not valid UTF-8.");
    }
    if (s->key &&
        (s->op == OP_PUT_OBJECT || s->op == OP_COPY_OBJECT || s->op == OP_CREATE_MULTIPART) &&
        !store_key_fits(r->srv->st, s->ns, s->klen))
        return s3_store_error(r, STORE_BAD_KEY);
    if (s->bucket[0] &&
        (s->bad_bucket == BAD_BUCKET_NONE || !s3_bucket_name_ok(s->bucket, strlen(s->bucket))))
        return s3_error(r, 400, "InvalidBucketName", "The specified bucket is not valid.");
    if (authenticate(r, &ret) != 0)
        return ret;
    if (s->op == OP_ADMIN && creds_count() == 0 && !admin_local_client(r))
        return s3_error(r, 403, "AccessDenied",
                        "The admin API takes an admin key; with none configured, only "
                        "loopback clients may use it.");
    if (s->op == OP_PUT_OBJECT || s->op == OP_UPLOAD_PART) {
        if (s3_body_start(r, &ret) != 0)
            return ret;
        /* a failure to start is answered after the body, on a connection kept alive */
        if (s->op == OP_PUT_OBJECT)
            s3_put_object_begin(r);
        else
            s3_upload_part_begin(r);
    }
    return MHD_YES;
}

static void feed_xml(s3_req *s, const char *data, size_t n)
{
    if (s->xml.len + n > (s->op == OP_ADMIN ? S3_ADMIN_BODY_MAX : S3_XML_BODY_MAX)) {
        s->xml_too_big = 1;
        return;
    }
    buf_add(&s->xml, data, n);
}

/* An admin request, once its body is here and matches the SHA-256 it was
 * signed with. */
static enum MHD_Result admin_call(request *r)
{
    s3_req *s = r->fe;
    if (s->xml_too_big)
        return s3_error(r, 400, "EntityTooLarge", "The admin request's body is too large.");
    const char *announced = http_header(r, "x-amz-content-sha256");
    if (creds_count() > 0 && s->xml.len > 0 &&
        (announced == NULL || !util_is_hex64(announced, strlen(announced))))
        return s3_error(r, 400, "InvalidRequest",
                        "An admin request's body must be signed: send its SHA-256 in "
                        "x-amz-content-sha256 and sign with a header.");
    if (announced && util_is_hex64(announced, strlen(announced))) {
        uint8_t want[32], got[32];
        unsigned int n;
        util_unhex(announced, 64, want, 32);
        EVP_Digest(s->xml.data ? s->xml.data : "", s->xml.len, got, &n, cksum_md_sha256(), NULL);
        if (memcmp(want, got, 32) != 0)
            return s3_error(r, 400, "XAmzContentSHA256Mismatch",
                            "The provided 'x-amz-content-sha256' header does not match what was "
                            "computed.");
    }
    return admin_handle(r, s->key ? s->key : "", &s->xml);
}

static enum MHD_Result last_call(request *r)
{
    s3_req *s = r->fe;
    /* buckets are unversioned: every object's one version is "null" */
    if ((s->op == OP_GET_OBJECT || s->op == OP_HEAD_OBJECT || s->op == OP_DELETE_OBJECT ||
         s->op == OP_GET_OBJECT_TAGGING) &&
        s3_has_param(r, "versionId") && strcmp(s3_param(r, "versionId"), "null") != 0)
        return s3_error(r, 400, "InvalidArgument", "Invalid version id specified");
    switch (s->op) {
    case OP_LIST_BUCKETS:
        return s3_list_buckets(r);
    case OP_CREATE_BUCKET:
        return s3_create_bucket(r);
    case OP_DELETE_BUCKET:
        return s3_delete_bucket(r);
    case OP_HEAD_BUCKET:
        return s3_head_bucket(r);
    case OP_GET_LOCATION:
        return s3_get_bucket_location(r);
    case OP_GET_VERSIONING:
        return s3_get_bucket_versioning(r);
    case OP_LIST_V1:
        return s3_list_objects(r, 1);
    case OP_LIST_V2:
        return s3_list_objects(r, 2);
    case OP_LIST_VERSIONS:
        return s3_list_objects(r, 0);
    case OP_DELETE_OBJECTS:
        if (s->xml_too_big)
            return s3_error(r, 400, "MalformedXML", "The XML you provided was too large.");
        return s3_delete_objects(r);
    case OP_PUT_OBJECT:
        return s3_put_object_end(r);
    case OP_COPY_OBJECT:
        return s3_copy_object(r);
    case OP_GET_OBJECT:
        return s3_get_object(r, 0);
    case OP_HEAD_OBJECT:
        return s3_get_object(r, 1);
    case OP_GET_OBJECT_TAGGING:
        return s3_get_object_tagging(r);
    case OP_DELETE_OBJECT:
        return s3_delete_object(r);
    case OP_CREATE_MULTIPART:
        return s3_create_multipart(r);
    case OP_UPLOAD_PART:
        return s3_upload_part_end(r);
    case OP_UPLOAD_PART_COPY:
        return s3_upload_part_copy(r);
    case OP_COMPLETE_MULTIPART:
        return s3_complete_multipart(r);
    case OP_ABORT_MULTIPART:
        return s3_abort_multipart(r);
    case OP_LIST_PARTS:
        return s3_list_parts(r);
    case OP_LIST_UPLOADS:
        return s3_list_multipart_uploads(r);
    case OP_ADMIN:
        return admin_call(r);
    case OP_BUCKET_SUBRESOURCE_OK: {
        if (!s3_bucket_exists(r))
            return s3_no_bucket(r);
        return s3_empty(r, 200, NULL, NULL);
    }
    default:
        return s3_error(r, 501, "NotImplemented", "Not implemented.");
    }
}

enum MHD_Result s3_handle(request *r, const char *data, size_t *size)
{
    s3_req *s = r->fe;
    if (r->calls == 1)
        return first_call(r);
    if (*size > 0) {
        if ((s->op == OP_PUT_OBJECT || s->op == OP_UPLOAD_PART) && s->body_started)
            s3_body_feed(r, data, *size);
        else if (s->op == OP_DELETE_OBJECTS || s->op == OP_CREATE_BUCKET ||
                 s->op == OP_COMPLETE_MULTIPART || s->op == OP_ADMIN)
            feed_xml(s, data, *size);
        *size = 0;
        return MHD_YES;
    }
    return last_call(r);
}
