/*
 * s3_bucket.c - S3 buckets and listings: ListBuckets, CreateBucket,
 * DeleteBucket, HeadBucket, GetBucketLocation, GetBucketVersioning,
 * ListObjects (v1), ListObjectsV2, ListObjectVersions and DeleteObjects.
 *
 * A listing is one ordered scan of the bucket's keys in the index.  With a
 * delimiter, keys that share a common prefix are rolled into it and the scan
 * seeks past them, so a folder of a million keys costs one step.
 * Continuation tokens are the resume position, base64url-encoded: 'A'+key
 * means "after this key", 'F'+key "from this key on".
 */
#include <expat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../common/util.h"
#include "../storage/multipart.h"
#include "creds.h"
#include "s3.h"

#define OWNER_ID "cairn"

/* ---- buckets -------------------------------------------------------------- */

typedef struct bucket_item {
    char name[64];
    uint64_t created;
} bucket_item;

typedef struct bucket_list {
    bucket_item *v;
    size_t n, cap;
    const char *prefix;
    int oom;
} bucket_list;

static int list_one_bucket(void *ctx, const char *ns, uint64_t created)
{
    bucket_list *l = ctx;
    const char *bucket = s3_ns_bucket(ns);
    if (bucket == NULL || strlen(bucket) >= sizeof l->v->name ||
        strncmp(bucket, l->prefix, strlen(l->prefix)) != 0)
        return 0;
    if (util_grow(&l->v, &l->cap, l->n, sizeof *l->v, 64) != 0) {
        l->oom = 1;
        return 1;
    }
    snprintf(l->v[l->n].name, sizeof l->v->name, "%s", bucket);
    l->v[l->n++].created = created;
    return 0;
}

static int bucket_cmp(const void *a, const void *b)
{
    return strcmp(((const bucket_item *)a)->name, ((const bucket_item *)b)->name);
}

/* ListBuckets: by name, with prefix, max-buckets and continuation-token
 * (the last name of the page before). */
enum MHD_Result s3_list_buckets(request *r)
{
    const char *prefix = s3_param(r, "prefix"), *mb = s3_param(r, "max-buckets");
    const char *token = s3_param(r, "continuation-token");
    long max = 10000;
    if (mb) {
        char *end;
        max = strtol(mb, &end, 10);
        if (*mb == '\0' || *end != '\0' || max < 1 || max > 10000)
            return s3_error(r, 400, "InvalidArgument",
                            "Argument max-buckets must be an integer between 1 and 10000.");
    }
    bucket_list l = {.prefix = prefix ? prefix : ""};
    if (store_ns_list(r->srv->st, list_one_bucket, &l) != STORE_OK || l.oom) {
        free(l.v);
        return s3_error(r, 500, "InternalError", "Cannot read the bucket list.");
    }
    if (l.n > 1)
        qsort(l.v, l.n, sizeof *l.v, bucket_cmp);
    buf b = {0};
    buf_printf(&b,
               "%s<ListAllMyBucketsResult xmlns=\"%s\"><Owner><ID>%s</ID>"
               "<DisplayName>%s</DisplayName></Owner><Buckets>",
               S3_XML_HEAD, S3_XMLNS, OWNER_ID, OWNER_ID);
    long count = 0;
    const char *next = NULL;
    for (size_t i = 0; i < l.n; i++) {
        if (token && *token && strcmp(l.v[i].name, token) <= 0)
            continue;
        if (count == max) {
            next = l.v[i - 1].name; /* (i > 0: max >= 1 were emitted) */
            break;
        }
        char when[32];
        s3_format_iso8601(l.v[i].created, when);
        buf_puts(&b, "<Bucket>");
        buf_xml_elem(&b, "Name", l.v[i].name, strlen(l.v[i].name));
        buf_printf(&b, "<CreationDate>%s</CreationDate></Bucket>", when);
        count++;
    }
    buf_puts(&b, "</Buckets>");
    if (next)
        buf_xml_elem(&b, "ContinuationToken", next, strlen(next));
    if (prefix)
        buf_xml_elem(&b, "Prefix", prefix, strlen(prefix));
    buf_puts(&b, "</ListAllMyBucketsResult>");
    free(l.v);
    return s3_xml(r, 200, &b);
}

/* S3's rules for a new bucket's name: 3 to 63 of a-z, 0-9, '.' and '-',
 * a letter or digit at each end, no "..", not an IP address, and none of
 * the prefixes and suffixes S3 keeps for itself. */
static int new_bucket_name_ok(const char *b, size_t n)
{
    static const char *const prefixes[] = {"xn--", "sthree-", "amzn-s3-demo-"};
    static const char *const suffixes[] = {"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"};
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
              b[i] == '.'))
            return 0;
    if (b[0] == '-' || b[0] == '.' || b[n - 1] == '-' || b[n - 1] == '.' || strstr(b, ".."))
        return 0;
    unsigned a[4];
    char end;
    if (sscanf(b, "%3u.%3u.%3u.%3u%c", &a[0], &a[1], &a[2], &a[3], &end) == 4)
        return 0; /* 192.168.5.4 */
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(b, prefixes[i], strlen(prefixes[i])) == 0)
            return 0;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t sl = strlen(suffixes[i]);
        if (n >= sl && memcmp(b + n - sl, suffixes[i], sl) == 0)
            return 0;
    }
    return 1;
}

enum MHD_Result s3_create_bucket(request *r)
{
    s3_req *s = r->fe;
    const char *b = s->bucket;
    size_t n = strlen(b);
    int ok = n >= 3 && n <= 63 && !s3_reserved_bucket(b) && new_bucket_name_ok(b, n);
    if (!ok)
        return s3_error(r, 400, "InvalidBucketName",
                        s3_reserved_bucket(b)
                            ? "The specified bucket name is reserved by cairn's other APIs."
                            : "The specified bucket is not valid.");
    int st = store_ns_create(r->srv->st, s->ns, NULL, 0);
    if (st == STORE_EXISTS)
        return s3_error(r, 409, "BucketAlreadyOwnedByYou",
                        "Your previous request to create the named bucket succeeded and you "
                        "already own it.");
    if (st != STORE_OK)
        return s3_store_error(r, st);
    char loc[80];
    snprintf(loc, sizeof loc, "/%s", b);
    return s3_empty(r, 200, "Location", loc);
}

enum MHD_Result s3_delete_bucket(request *r)
{
    s3_req *s = r->fe;
    int st = store_ns_delete(r->srv->st, s->ns);
    if (st == STORE_NOT_EMPTY)
        return s3_error(r, 409, "BucketNotEmpty", "The bucket you tried to delete is not empty.");
    if (st != STORE_OK)
        return s3_bucket_error(r, st);
    mpu_drop_ns(r->srv->st, s->ns); /* as S3 does: its unfinished uploads go with it */
    return s3_empty(r, 204, NULL, NULL);
}

enum MHD_Result s3_head_bucket(request *r)
{
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    return s3_empty(r, 200, "x-amz-bucket-region", r->srv->cfg->region);
}

enum MHD_Result s3_get_bucket_location(request *r)
{
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    buf b = {0};
    const char *region = r->srv->cfg->region;
    buf_printf(&b, "%s<LocationConstraint xmlns=\"%s\">", S3_XML_HEAD, S3_XMLNS);
    if (strcmp(region, "us-east-1") != 0) /* us-east-1 is the empty constraint */
        buf_xml(&b, region, strlen(region));
    buf_puts(&b, "</LocationConstraint>");
    return s3_xml(r, 200, &b);
}

enum MHD_Result s3_get_bucket_versioning(request *r)
{
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    buf b = {0};
    buf_printf(&b, "%s<VersioningConfiguration xmlns=\"%s\"/>", S3_XML_HEAD, S3_XMLNS);
    return s3_xml(r, 200, &b);
}

/* ---- listing -------------------------------------------------------------- */

typedef struct lister {
    request *r;
    int version; /* 1, 2, 0 = versions */
    const char *prefix;
    size_t plen;
    const char *delim;
    size_t dlen;
    int url;           /* encoding-type=url */
    const char *after; /* the marker or start-after: a common prefix it lies in was listed */
    size_t after_len;
    int fetch_owner;
    long max;
    long count;
    int truncated;
    char *last; /* last key or common prefix emitted */
    size_t last_len;
    int last_is_prefix;
    buf contents, prefixes;
} lister;

static void emit_key(lister *l, buf *b, const char *tag, const char *k, size_t n)
{
    s3_xml_name(b, l->url, tag, k, n);
}

static void remember(lister *l, const char *k, size_t n, int is_prefix)
{
    char *p = realloc(l->last, n + 1);
    if (p == NULL)
        return;
    memcpy(p, k, n);
    p[n] = '\0';
    l->last = p;
    l->last_len = n;
    l->last_is_prefix = is_prefix;
}

static int list_cb(void *ctx, const store_list_item *it, char *seek, size_t *seek_len)
{
    lister *l = ctx;
    if (it->klen < l->plen || memcmp(it->key, l->prefix, l->plen) != 0)
        return STORE_LIST_STOP; /* past the prefix */
    const char *cp_end = NULL;
    if (l->dlen) {
        const char *rest = it->key + l->plen;
        size_t rl = it->klen - l->plen;
        for (size_t i = 0; i + l->dlen <= rl; i++)
            if (memcmp(rest + i, l->delim, l->dlen) == 0) {
                cp_end = rest + i + l->dlen;
                break;
            }
    }
    size_t cpl = cp_end ? (size_t)(cp_end - it->key) : 0;
    int seekable = cp_end && cpl <= 1024 && (unsigned char)it->key[cpl - 1] != 0xff;
    if (cp_end && l->after && cpl <= l->after_len && memcmp(it->key, l->after, cpl) == 0) {
        /* the marker lies in this common prefix: the page before listed it */
        if (!seekable)
            return STORE_LIST_NEXT;
        memcpy(seek, it->key, cpl);
        seek[cpl - 1] = (char)((unsigned char)seek[cpl - 1] + 1);
        *seek_len = cpl;
        return STORE_LIST_SEEK;
    }
    if (l->count >= l->max) {
        l->truncated = 1;
        return STORE_LIST_STOP;
    }
    l->count++;
    if (cp_end) {
        buf_puts(&l->prefixes, "<CommonPrefixes>");
        emit_key(l, &l->prefixes, "Prefix", it->key, cpl);
        buf_puts(&l->prefixes, "</CommonPrefixes>");
        remember(l, it->key, cpl, 1);
        /* seek past every key under this prefix: its last byte plus one */
        if (seekable) {
            memcpy(seek, it->key, cpl);
            seek[cpl - 1] = (char)((unsigned char)seek[cpl - 1] + 1);
            *seek_len = cpl;
            return STORE_LIST_SEEK;
        }
        return STORE_LIST_NEXT;
    }
    char when[32], etag[80];
    s3_format_iso8601(it->mtime_ms, when);
    s3_meta_etag(it->meta, it->meta_len, etag, sizeof etag);
    buf *b = &l->contents;
    buf_puts(b, l->version == 0 ? "<Version>" : "<Contents>");
    emit_key(l, b, "Key", it->key, it->klen);
    if (l->version == 0)
        buf_puts(b, "<VersionId>null</VersionId><IsLatest>true</IsLatest>");
    buf_printf(b,
               "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag><Size>%llu</Size>"
               "<StorageClass>STANDARD</StorageClass>",
               when, etag, (unsigned long long)it->size);
    if (l->version != 2 || l->fetch_owner)
        buf_printf(b, "<Owner><ID>%s</ID><DisplayName>%s</DisplayName></Owner>", OWNER_ID,
                   OWNER_ID);
    buf_puts(b, l->version == 0 ? "</Version>" : "</Contents>");
    remember(l, it->key, it->klen, 0);
    return STORE_LIST_NEXT;
}

static char *token_encode(const lister *l)
{
    size_t n = l->last_len + 1;
    char *raw = malloc(n);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (raw == NULL || out == NULL) {
        free(raw);
        free(out);
        return NULL;
    }
    raw[0] = l->last_is_prefix ? 'F' : 'A';
    memcpy(raw + 1, l->last, l->last_len);
    if (l->last_is_prefix) /* resume after everything under the prefix */
        raw[n - 1] = (char)((unsigned char)raw[n - 1] + 1);
    EVP_EncodeBlock((unsigned char *)out, (unsigned char *)raw, (int)n);
    free(raw);
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

/* Returns the decoded token (mode byte first) or NULL if malformed. */
static char *token_decode(const char *tok, size_t *len)
{
    size_t n = strlen(tok);
    if (n == 0 || n % 4 != 0 || n > 4096)
        return NULL;
    char *in = strdup(tok);
    unsigned char *out = malloc(n);
    if (in == NULL || out == NULL) {
        free(in);
        free(out);
        return NULL;
    }
    for (char *p = in; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    int got = EVP_DecodeBlock(out, (unsigned char *)in, (int)n);
    free(in);
    if (got < 1) {
        free(out);
        return NULL;
    }
    if (n >= 1 && tok[n - 1] == '=')
        got--;
    if (n >= 2 && tok[n - 2] == '=')
        got--;
    if (got < 1 || (out[0] != 'A' && out[0] != 'F')) {
        free(out);
        return NULL;
    }
    *len = (size_t)got;
    return (char *)out;
}

enum MHD_Result s3_list_objects(request *r, int version)
{
    s3_req *s = r->fe;
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    lister l = {0};
    l.r = r;
    l.version = version;
    l.prefix = s3_param(r, "prefix");
    l.prefix = l.prefix ? l.prefix : "";
    l.plen = strlen(l.prefix);
    l.delim = s3_param(r, "delimiter");
    l.delim = l.delim ? l.delim : "";
    l.dlen = strlen(l.delim);
    enum MHD_Result ret;
    if (s3_url_encoding_param(r, &l.url, &ret))
        return ret;
    const char *fo = s3_param(r, "fetch-owner");
    l.fetch_owner = fo && strcmp(fo, "true") == 0;
    long max;
    if (s3_count_param(r, "max-keys", 1000, LONG_MAX, &max, &ret))
        return ret; /* (echoed as asked, served at most 1000) */
    l.max = max < 1000 ? max : 1000;

    /* where to start */
    const char *from = l.prefix;
    size_t from_len = l.plen;
    int after = 0;
    char *tok = NULL;
    const char *marker = NULL, *token = NULL, *start_after = NULL;
    if (version == 2) {
        token = s3_param(r, "continuation-token");
        start_after = s3_param(r, "start-after");
        if (token) {
            size_t tl;
            if ((tok = token_decode(token, &tl)) == NULL)
                return s3_error(r, 400, "InvalidArgument",
                                "The continuation token provided is incorrect");
            from = tok + 1;
            from_len = tl - 1;
            after = tok[0] == 'A';
        } else if (start_after && *start_after && strcmp(start_after, l.prefix) >= 0) {
            /* (one before the prefix starts at it; one equal to it, after it) */
            from = start_after;
            from_len = strlen(start_after);
            after = 1;
            l.after = from;
            l.after_len = from_len;
        }
    } else {
        marker = s3_param(r, version == 1 ? "marker" : "key-marker");
        if (marker && *marker && strcmp(marker, l.prefix) >= 0) {
            from = marker;
            from_len = strlen(marker);
            after = 1;
            l.after = from;
            l.after_len = from_len;
        }
    }
    int st = STORE_OK;
    if (l.max > 0)
        st = store_list_fleet(r->srv->st, s->ns, l.prefix, l.plen, l.delim, l.dlen, l.max, from,
                              from_len, after, token != NULL || (marker && *marker), list_cb, &l);
    else
        l.truncated = 0;
    if (st != STORE_OK) {
        free(tok);
        buf_free(&l.contents);
        buf_free(&l.prefixes);
        free(l.last);
        return st == STORE_UNAVAILABLE ? s3_store_error(r, st)
                                       : s3_error(r, 500, "InternalError", "Listing failed.");
    }

    buf b = {0};
    const char *root = version == 0 ? "ListVersionsResult" : "ListBucketResult";
    buf_printf(&b, "%s<%s xmlns=\"%s\">", S3_XML_HEAD, root, S3_XMLNS);
    buf_xml_elem(&b, "Name", s->bucket, strlen(s->bucket));
    emit_key(&l, &b, "Prefix", l.prefix, l.plen);
    if (version == 2) {
        if (token)
            buf_xml_elem(&b, "ContinuationToken", token, strlen(token));
        if (start_after)
            emit_key(&l, &b, "StartAfter", start_after, strlen(start_after));
        buf_printf(&b, "<KeyCount>%ld</KeyCount>", l.count);
    } else if (version == 1) {
        emit_key(&l, &b, "Marker", marker ? marker : "", marker ? strlen(marker) : 0);
    } else {
        emit_key(&l, &b, "KeyMarker", marker ? marker : "", marker ? strlen(marker) : 0);
        buf_puts(&b, "<VersionIdMarker></VersionIdMarker>");
    }
    buf_printf(&b, "<MaxKeys>%ld</MaxKeys>", max);
    if (l.dlen)
        emit_key(&l, &b, "Delimiter", l.delim, l.dlen);
    if (l.url)
        buf_puts(&b, "<EncodingType>url</EncodingType>");
    buf_printf(&b, "<IsTruncated>%s</IsTruncated>", l.truncated ? "true" : "false");
    if (l.truncated && l.last) {
        if (version == 2) {
            char *next = token_encode(&l);
            if (next)
                buf_xml_elem(&b, "NextContinuationToken", next, strlen(next));
            free(next);
        } else if (version == 1) {
            emit_key(&l, &b, "NextMarker", l.last, l.last_len);
        } else {
            emit_key(&l, &b, "NextKeyMarker", l.last, l.last_len);
            buf_puts(&b, "<NextVersionIdMarker>null</NextVersionIdMarker>");
        }
    }
    buf_add(&b, l.contents.data ? l.contents.data : "", l.contents.len);
    buf_add(&b, l.prefixes.data ? l.prefixes.data : "", l.prefixes.len);
    buf_printf(&b, "</%s>", root);
    buf_free(&l.contents);
    buf_free(&l.prefixes);
    free(l.last);
    free(tok);
    return s3_xml(r, 200, &b);
}

/* ---- DeleteObjects -------------------------------------------------------- */

typedef struct del_item {
    char *key;
    size_t len;
    char *version; /* its <VersionId> other than "null", else NULL */
} del_item;

typedef struct del_parse {
    int depth;
    int in_key, in_quiet, in_version;
    buf text;
    del_item *items;
    size_t n, cap;
    char *version;       /* of the <Object> being read */
    size_t object_first; /* items[] index where it began */
    int quiet;
    int bad;
    int root_ok;
} del_parse;

static void XMLCALL del_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    del_parse *p = ud;
    p->depth++;
    if (p->depth == 1)
        p->root_ok = strcmp(name, "Delete") == 0;
    if (p->depth == 2 && strcmp(name, "Quiet") == 0)
        p->in_quiet = 1;
    if (p->depth == 2 && strcmp(name, "Object") == 0)
        p->object_first = p->n;
    if (p->depth == 3 && strcmp(name, "Key") == 0)
        p->in_key = 1;
    if (p->depth == 3 && strcmp(name, "VersionId") == 0)
        p->in_version = 1;
    p->text.len = 0;
}

static void XMLCALL del_end(void *ud, const XML_Char *name)
{
    del_parse *p = ud;
    const char *text = p->text.data ? p->text.data : "";
    if (p->in_key) {
        p->in_key = 0;
        char *key = util_memdup(text, p->text.len);
        if (key == NULL || util_grow(&p->items, &p->cap, p->n, sizeof *p->items, 64) != 0) {
            free(key);
            p->bad = 1;
            return;
        }
        p->items[p->n++] = (del_item){key, p->text.len, NULL};
    }
    if (p->in_quiet) {
        p->quiet = p->text.len == 4 && strncmp(text, "true", 4) == 0;
        p->in_quiet = 0;
    }
    if (p->in_version) {
        p->in_version = 0;
        free(p->version);
        p->version = NULL;
        if (!(p->text.len == 4 && memcmp(text, "null", 4) == 0) &&
            (p->version = util_memdup(text, p->text.len)) == NULL)
            p->bad = 1;
    }
    if (p->depth == 2 && strcmp(name, "Object") == 0) {
        /* (the version may come before or after the key) */
        if (p->version && p->n > p->object_first)
            p->items[p->n - 1].version = p->version;
        else
            free(p->version);
        p->version = NULL;
    }
    p->depth--;
}

static void XMLCALL del_text(void *ud, const XML_Char *s, int len)
{
    del_parse *p = ud;
    if (p->in_key || p->in_quiet || p->in_version)
        buf_add(&p->text, s, (size_t)len);
}

/* One key's <Error> in a DeleteResult. */
static void del_error(buf *b, const del_item *it, const char *code, const char *msg)
{
    buf_puts(b, "<Error>");
    buf_xml_elem(b, "Key", it->key, it->len);
    if (it->version)
        buf_xml_elem(b, "VersionId", it->version, strlen(it->version));
    buf_printf(b, "<Code>%s</Code><Message>%s</Message></Error>", code, msg);
}

enum MHD_Result s3_delete_objects(request *r)
{
    s3_req *s = r->fe;
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    del_parse p = {0};
    XML_Parser xp = s3_xml_parser(&p);
    if (xp == NULL)
        return s3_error(r, 500, "InternalError", "out of memory");
    XML_SetElementHandler(xp, del_start, del_end);
    XML_SetCharacterDataHandler(xp, del_text);
    int ok = s3_xml_parse(xp, &s->xml);
    enum MHD_Result ret;
    if (!ok || p.bad || !p.root_ok || p.n == 0 || p.n > 1000) {
        ret = s3_error(r, 400, "MalformedXML",
                       "The XML you provided was not well-formed or did not validate against "
                       "our published schema");
    } else {
        buf b = {0};
        buf_printf(&b, "%s<DeleteResult xmlns=\"%s\">", S3_XML_HEAD, S3_XMLNS);
        for (size_t i = 0; i < p.n; i++) {
            const del_item *it = &p.items[i];
            if (it->version) { /* unversioned: "null" is an object's one version */
                del_error(&b, it, "InvalidArgument", "Invalid version id specified");
                continue;
            }
            int st = it->len ? store_delete_blind(r->srv->st, s->ns, it->key, it->len, NULL)
                             : STORE_BAD_KEY;
            if (st == STORE_OK || st == STORE_NOTFOUND) {
                if (!p.quiet) {
                    buf_puts(&b, "<Deleted>");
                    buf_xml_elem(&b, "Key", it->key, it->len);
                    buf_puts(&b, "</Deleted>");
                }
            } else {
                del_error(&b, it, st == STORE_BAD_KEY ? "InvalidArgument" : "InternalError",
                          store_strerror(st));
            }
        }
        buf_puts(&b, "</DeleteResult>");
        ret = s3_xml(r, 200, &b);
    }
    for (size_t i = 0; i < p.n; i++) {
        free(p.items[i].key);
        free(p.items[i].version);
    }
    free(p.items);
    free(p.version);
    buf_free(&p.text);
    return ret;
}
