/*
 * s3_multipart.c - S3 multipart uploads: Create, UploadPart, UploadPartCopy,
 * Complete, Abort, ListParts, ListMultipartUploads (storage/multipart.c keeps
 * the state).
 *
 * UploadPartCopy reads the source's bytes (a range of them, or all) into the
 * part, as if they had been uploaded: the part is checked and stored like any
 * other, and the object the upload makes keeps each body once, as always.
 *
 * Completion checks the client's part list (ascending numbers, ETags that
 * match, every part but the last at least 5 MiB), then the store streams the
 * parts into one blob.  The ETag is S3's: MD5 of the concatenated binary part
 * MD5s, then "-<count>".  A second Complete of an upload that already
 * completed answers as the first did, if the object is still the one it made.
 */
#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../common/checksum.h"
#include "../common/util.h"
#include "../storage/multipart.h"
#include "s3.h"

#define MIN_PART_SIZE (5u << 20)

static enum MHD_Result invalid_part(request *r)
{
    return s3_error(r, 400, "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not "
                    "have been uploaded, or the specified entity tag may not match the part's "
                    "entity tag.");
}

static enum MHD_Result no_such_upload(request *r)
{
    /* being completed or aborted by another request: its outcome decides
     * (a completion that fails gives the upload back), so ask again soon */
    const char *id = s3_param(r, "uploadId");
    if (id && mpu_closing(r->srv->st, id))
        return s3_error(r, 503, "SlowDown",
                        "The upload is being completed or aborted by another request; try again.");
    return s3_error(r, 404, "NoSuchUpload",
                    "The specified upload does not exist. The upload ID may be invalid, or the "
                    "upload may have been aborted or completed.");
}

/* The answer to a store status of an upload's part or completion:
 * STORE_NOTFOUND is the upload gone (no_such_upload). */
static enum MHD_Result upload_error(request *r, int st)
{
    return st == STORE_NOTFOUND ? no_such_upload(r) : s3_store_error(r, st);
}

/* The upload named by ?uploadId, which must belong to this bucket and key. */
static int load_upload(request *r, mpu_info *info)
{
    s3_req *s = r->fe;
    const char *id = s3_param(r, "uploadId");
    if (id == NULL || mpu_get(r->srv->st, id, info) != STORE_OK)
        return -1;
    if (strcmp(info->ns, s->ns) != 0 || info->klen != s->klen ||
        memcmp(info->key, s->key, s->klen) != 0) {
        mpu_info_clear(info);
        return -1;
    }
    return 0;
}

/* The parts of a loaded upload; on failure, answers, releases info and
 * returns -1 (the upload may have completed or been aborted meanwhile). */
static int load_parts(request *r, mpu_info *info, mpu_part **parts, size_t *np,
                      enum MHD_Result *ret)
{
    int st = mpu_parts(r->srv->st, info->id, parts, np);
    if (st == STORE_OK)
        return 0;
    mpu_info_clear(info);
    *ret = upload_error(r, st);
    return -1;
}

enum MHD_Result s3_create_multipart(request *r)
{
    s3_req *s = r->fe;
    if (!store_key_fits(r->srv->st, s->ns, s->klen))
        return s3_store_error(r, STORE_BAD_KEY);
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    buf meta = {0};
    s3_request_meta(r, &meta, NULL);
    char id[MPU_ID_LEN + 1];
    int st = mpu_create(r->srv->st, s->ns, s->key, s->klen, meta.data, meta.len, id);
    buf_free(&meta);
    if (st != STORE_OK)
        return s3_store_error(r, st);
    buf b = {0};
    buf_printf(&b, "%s<InitiateMultipartUploadResult xmlns=\"%s\">", S3_XML_HEAD, S3_XMLNS);
    buf_xml_elem(&b, "Bucket", s->bucket, strlen(s->bucket));
    buf_xml_elem(&b, "Key", s->key, s->klen);
    buf_printf(&b, "<UploadId>%s</UploadId></InitiateMultipartUploadResult>", id);
    return s3_xml(r, 200, &b);
}

/* ---- UploadPart ----------------------------------------------------------- */

static int part_number(request *r)
{
    const char *pn = s3_param(r, "partNumber");
    if (pn == NULL || *pn == '\0')
        return -1;
    char *end;
    long n = strtol(pn, &end, 10);
    return *end || n < 1 || n > MPU_MAX_PARTS ? -1 : (int)n;
}

/* 0 if the body can flow; else the reason is kept for the last call. */
unsigned s3_upload_part_begin(request *r)
{
    s3_req *s = r->fe;
    int n = part_number(r);
    if (n < 0) {
        s->early_error = "InvalidArgument";
        return 400;
    }
    mpu_info info;
    if (load_upload(r, &info) != 0) {
        s->early_error = "NoSuchUpload";
        return 404;
    }
    mpu_info_clear(&info);
    mpu_writer *w;
    int st = mpu_part_begin(r->srv->st, s3_param(r, "uploadId"), n, &w);
    if (st != STORE_OK) {
        s->early_error = st == STORE_NOTFOUND ? "NoSuchUpload" : "InternalError";
        return st == STORE_NOTFOUND ? 404 : 500;
    }
    unsigned status = body_begin_part(r, &s->body, w);
    s->body_started = 1; /* body_free releases the part writer either way */
    if (status)
        s->early_error = "EntityTooLarge";
    return status;
}

enum MHD_Result s3_upload_part_end(request *r)
{
    s3_req *s = r->fe;
    if (s->early_error) {
        if (strcmp(s->early_error, "NoSuchUpload") == 0)
            return no_such_upload(r);
        if (strcmp(s->early_error, "InvalidArgument") == 0)
            return s3_error(r, 400, "InvalidArgument",
                            "Part number must be an integer between 1 and 10000, inclusive");
        if (strcmp(s->early_error, "EntityTooLarge") == 0)
            return s3_error(r, 400, "EntityTooLarge",
                            "Your proposed upload exceeds the maximum allowed object size.");
        return s3_error(r, 500, "InternalError", "Cannot start the part.");
    }
    enum MHD_Result ret;
    if (s3_body_check(r, &ret) != 0)
        return ret;
    uint8_t md5[16], sha256[32];
    uint64_t size;
    int st = mpu_part_finish(s->body.part, md5, sha256, &size);
    if (st != STORE_OK) /* (NOTFOUND: the upload went while the part came) */
        return upload_error(r, st);
    if (s3_body_verify(r, md5, sha256, &ret) != 0)
        return ret;
    /* parts take room as blobs do: a node at --max-size takes none (a
     * part sent again takes only what it adds to the copy it replaces) */
    uint64_t old = mpu_part_replaces(s->body.part);
    if ((st = store_room_for_part(r->srv->st, size > old ? size - old : 0)) != STORE_OK) {
        mpu_part_abort(s->body.part);
        s->body.part = NULL;
        return s3_store_error(r, st);
    }
    st = mpu_part_commit(s->body.part);
    s->body.part = NULL;
    if (st == STORE_NOTFOUND)
        return no_such_upload(r);
    if (st != STORE_OK)
        return s3_store_error(r, st);
    char etag[33];
    util_hex(md5, 16, etag);
    return s3_stored(r, etag); /* (with the part's checksum, as S3 answers it) */
}

/* ---- UploadPartCopy ------------------------------------------------------- */

/* x-amz-copy-source-range: "bytes=first-last", both given, first <= last. */
static int copy_range(const char *v, uint64_t *first, uint64_t *last)
{
    if (strncmp(v, "bytes=", 6) != 0 || !isdigit((unsigned char)v[6]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long a = strtoull(v + 6, &end, 10);
    if (errno || *end != '-' || !isdigit((unsigned char)end[1]))
        return -1;
    unsigned long long b = strtoull(end + 1, &end, 10);
    if (errno || *end || b < a)
        return -1;
    *first = a;
    *last = b;
    return 0;
}

/* Reads body bytes [off, off+len) of an open blob into the part. */
static int copy_into_part(store_blob *b, uint64_t off, uint64_t len, mpu_writer *w)
{
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return STORE_IO;
    int st = STORE_OK;
    while (len > 0 && st == STORE_OK) {
        ssize_t n = store_blob_read(b, off, buf, len < cap ? (size_t)len : cap);
        if (n <= 0) {
            st = n < 0 ? (int)-n : STORE_CORRUPT; /* (shorter than its entry says) */
            break;
        }
        st = mpu_part_write(w, buf, (size_t)n);
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    free(buf);
    return st;
}

static enum MHD_Result upload_part_copy_once(request *r, int head, int *vanished)
{
    (void)head;
    int n = part_number(r);
    if (n < 0)
        return s3_error(r, 400, "InvalidArgument",
                        "Part number must be an integer between 1 and 10000, inclusive");
    mpu_info info;
    if (load_upload(r, &info) != 0)
        return no_such_upload(r);
    mpu_info_clear(&info);
    store_entry e;
    char etag[80];
    int self;
    enum MHD_Result ret;
    if (s3_copy_source(r, &e, etag, &self, &ret))
        return ret;
    uint64_t first = 0, len = e.size, last;
    const char *range = http_header(r, "x-amz-copy-source-range");
    const char *bad = NULL;
    char why[96];
    if (range && copy_range(range, &first, &last) != 0) {
        bad = "The x-amz-copy-source-range value must be of the form bytes=first-last where "
              "first and last are the zero-based offsets of the first and last bytes to copy";
    } else if (range && last >= e.size) {
        snprintf(why, sizeof why, "Range specified is not valid for source object of size: %llu",
                 (unsigned long long)e.size);
        bad = why;
    }
    if (bad) {
        store_entry_clear(&e);
        return s3_error(r, 400, "InvalidArgument", bad);
    }
    if (range)
        len = last - first + 1;
    if (len > r->srv->cfg->max_body) {
        store_entry_clear(&e);
        return s3_error(r, 400, "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed object size.");
    }
    store_blob *b;
    int st = store_blob_open(r->srv->st, &e, &b);
    store_entry_clear(&e);
    if (st == STORE_NOTFOUND && vanished) {
        *vanished = 1; /* the source's blob went since its lookup: look again */
        return MHD_YES;
    }
    if (st != STORE_OK)
        return s3_store_error(r, st);
    mpu_writer *w;
    if ((st = mpu_part_begin(r->srv->st, s3_param(r, "uploadId"), n, &w)) != STORE_OK) {
        store_blob_close(b);
        return upload_error(r, st);
    }
    /* its room is taken before gigabytes are copied, and held until the
     * part counts for itself (or is refused) */
    uint64_t old = mpu_part_replaces(w), need = len > old ? len - old : 0;
    st = store_reserve_part(r->srv->st, need);
    int64_t held = st == STORE_OK ? (int64_t)need : 0;
    if (st == STORE_OK)
        st = copy_into_part(b, first, len, w);
    store_blob_close(b);
    uint8_t md5[16], sha256[32];
    uint64_t size;
    if (st == STORE_OK)
        st = mpu_part_finish(w, md5, sha256, &size);
    if (st != STORE_OK) {
        mpu_part_abort(w);
        store_multipart_bytes(r->srv->st, -held);
        return upload_error(r, st);
    }
    st = mpu_part_commit(w);
    store_multipart_bytes(r->srv->st, -held); /* (the part's file counts now) */
    if (st != STORE_OK)
        return upload_error(r, st);
    char hex[33];
    util_hex(md5, 16, hex);
    return s3_copied(r, "CopyPartResult", hex, 0);
}

enum MHD_Result s3_upload_part_copy(request *r)
{
    /* a source overwritten between its lookup and the opening of its blob
     * is looked up again, as for a GET */
    return serve_looking_again(r, 0, upload_part_copy_once);
}

/* ---- CompleteMultipartUpload ---------------------------------------------- */

typedef struct complete_parse {
    int depth;
    int in_number, in_etag;
    buf text;
    int *numbers;
    char (*etags)[33];
    size_t n, cap;
    int cur_number;
    char cur_etag[33];
    int bad;
    int root_ok;
} complete_parse;

static void XMLCALL cp_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    complete_parse *p = ud;
    p->depth++;
    if (p->depth == 1)
        p->root_ok = strcmp(name, "CompleteMultipartUpload") == 0;
    if (p->depth == 2 && strcmp(name, "Part") == 0) {
        p->cur_number = -1;
        p->cur_etag[0] = '\0';
    }
    if (p->depth == 3) {
        p->in_number = strcmp(name, "PartNumber") == 0;
        p->in_etag = strcmp(name, "ETag") == 0;
    }
    p->text.len = 0;
}

static void XMLCALL cp_end(void *ud, const XML_Char *name)
{
    complete_parse *p = ud;
    const char *t = p->text.data ? p->text.data : "";
    if (p->in_number) {
        char *end;
        long v = strtol(t, &end, 10);
        p->cur_number = (*t && !*end && v >= 1 && v <= MPU_MAX_PARTS) ? (int)v : -2;
        p->in_number = 0;
    } else if (p->in_etag) {
        /* "\"hex\"", or hex, possibly as &quot;hex&quot; (already decoded here) */
        size_t n = p->text.len;
        if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
            t++;
            n -= 2;
        }
        if (n == 32 && util_is_hex64(t, 32) == 0) {
            uint8_t tmp[16];
            if (util_unhex(t, 32, tmp, 16) == 0)
                util_hex(tmp, 16, p->cur_etag);
        }
        p->in_etag = 0;
    } else if (p->depth == 2 && strcmp(name, "Part") == 0) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 64;
            int *nn = realloc(p->numbers, cap * sizeof *nn);
            if (nn)
                p->numbers = nn;
            char(*ne)[33] = nn ? realloc(p->etags, cap * sizeof *ne) : NULL;
            if (ne == NULL) {
                p->bad = 1;
                p->depth--;
                return;
            }
            p->etags = ne;
            p->cap = cap;
        }
        if (p->cur_number < 0)
            p->bad = 1;
        p->numbers[p->n] = p->cur_number;
        memcpy(p->etags[p->n], p->cur_etag, 33);
        p->n++;
    }
    p->depth--;
}

static void XMLCALL cp_text(void *ud, const XML_Char *s, int len)
{
    complete_parse *p = ud;
    if (p->in_number || p->in_etag)
        buf_add(&p->text, s, (size_t)len);
}

static void complete_result(request *r, buf *b, const char *etag)
{
    s3_req *s = r->fe;
    buf_printf(b, "%s<CompleteMultipartUploadResult xmlns=\"%s\"><Location>", S3_XML_HEAD,
               S3_XMLNS);
    buf_xml(b, s->resource, strlen(s->resource));
    buf_puts(b, "</Location>");
    buf_xml_elem(b, "Bucket", s->bucket, strlen(s->bucket));
    buf_xml_elem(b, "Key", s->key, s->klen);
    buf_printf(b, "<ETag>&quot;%s&quot;</ETag></CompleteMultipartUploadResult>", etag);
}

/* S3's multipart ETag from the listed parts' MD5s. */
static void multipart_etag(complete_parse *p, char out[48])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, cksum_md_md5(), NULL);
    for (size_t i = 0; i < p->n; i++) {
        uint8_t md5[16];
        util_unhex(p->etags[i], 32, md5, 16);
        EVP_DigestUpdate(ctx, md5, 16);
    }
    uint8_t d[16];
    unsigned int n;
    EVP_DigestFinal_ex(ctx, d, &n);
    EVP_MD_CTX_free(ctx);
    util_hex(d, 16, out);
    snprintf(out + 32, 16, "-%zu", p->n);
}

static enum MHD_Result complete(request *r, complete_parse *p)
{
    s3_req *s = r->fe;
    char etag[48];
    for (size_t i = 0; i < p->n; i++)
        if (p->etags[i][0] == '\0')
            return invalid_part(r);
    multipart_etag(p, etag);
    mpu_info info;
    if (load_upload(r, &info) != 0) {
        /* already completed? then answer as the first Complete did */
        store_entry e;
        char cur[80] = "";
        if (store_lookup(r->srv->st, s->ns, s->key, s->klen, &e) == STORE_OK) {
            s3_meta_etag(e.meta, e.meta_len, cur, sizeof cur);
            store_entry_clear(&e);
        }
        if (strcmp(cur, etag) == 0) {
            buf b = {0};
            complete_result(r, &b, etag);
            return s3_xml(r, 200, &b);
        }
        return no_such_upload(r);
    }
    mpu_part *parts;
    size_t np;
    enum MHD_Result ret = MHD_NO;
    if (load_parts(r, &info, &parts, &np, &ret) != 0)
        return ret;
    int st, failed = 0;
    for (size_t i = 0; i < p->n && !failed; i++) {
        if (i > 0 && p->numbers[i] <= p->numbers[i - 1]) {
            ret = s3_error(r, 400, "InvalidPartOrder",
                           "The list of parts was not in ascending order. Parts must be ordered "
                           "by part number.");
            failed = 1;
            break;
        }
        mpu_part *found = NULL;
        for (size_t j = 0; j < np; j++)
            if (parts[j].number == p->numbers[i])
                found = &parts[j];
        char have[33] = "";
        if (found)
            util_hex(found->md5, 16, have);
        if (found == NULL || strcmp(have, p->etags[i]) != 0) {
            ret = invalid_part(r);
            failed = 1;
        } else if (i + 1 < p->n && found->size < MIN_PART_SIZE) {
            ret = s3_error(r, 400, "EntityTooSmall",
                           "Your proposed upload is smaller than the minimum allowed object size.");
            failed = 1;
        }
    }
    free(parts);
    store_cond cond;
    if (!failed && s3_write_preconditions(r, 1, &cond, &ret))
        failed = 1; /* (If-None-Match: "*", If-Match: the key's current object) */
    if (!failed) {
        buf meta = {0};
        s3_meta_add_etag(&meta, etag);
        buf_add(&meta, info.meta, info.meta_len);
        store_put_result res;
        st = mpu_complete(r->srv->st, info.id, p->numbers, (const char(*)[33])p->etags, p->n,
                          meta.data, meta.len, &cond, &res);
        buf_free(&meta);
        if (st == STORE_OK) {
            buf b = {0};
            complete_result(r, &b, etag);
            ret = s3_xml(r, 200, &b);
        } else {
            ret = st == STORE_DIGEST_MISMATCH ? invalid_part(r) /* (sent again meanwhile) */
                                              : upload_error(r, st);
        }
    }
    mpu_info_clear(&info);
    return ret;
}

enum MHD_Result s3_complete_multipart(request *r)
{
    s3_req *s = r->fe;
    if (s->xml_too_big)
        return s3_error(r, 400, "MalformedXML", "The XML you provided was too large.");
    complete_parse p = {0};
    XML_Parser xp = s3_xml_parser(&p);
    if (xp == NULL)
        return s3_error(r, 500, "InternalError", "out of memory");
    XML_SetElementHandler(xp, cp_start, cp_end);
    XML_SetCharacterDataHandler(xp, cp_text);
    int ok = s3_xml_parse(xp, &s->xml);
    enum MHD_Result ret;
    if (!ok || p.bad || !p.root_ok || p.n == 0 || p.n > MPU_MAX_PARTS)
        ret = s3_error(r, 400, "MalformedXML",
                       "The XML you provided was not well-formed or did not validate against our "
                       "published schema");
    else
        ret = complete(r, &p);
    free(p.numbers);
    free(p.etags);
    buf_free(&p.text);
    return ret;
}

enum MHD_Result s3_abort_multipart(request *r)
{
    mpu_info info;
    if (load_upload(r, &info) != 0)
        return no_such_upload(r);
    int st = mpu_abort(r->srv->st, info.id);
    mpu_info_clear(&info);
    if (st != STORE_OK && st != STORE_NOTFOUND)
        return s3_store_error(r, st);
    return s3_empty(r, 204, NULL, NULL);
}

enum MHD_Result s3_list_parts(request *r)
{
    s3_req *s = r->fe;
    long max, after;
    enum MHD_Result ret;
    if (s3_count_param(r, "max-parts", 1000, 1000, &max, &ret) ||
        s3_count_param(r, "part-number-marker", 0, INT_MAX, &after, &ret))
        return ret;
    mpu_info info;
    if (load_upload(r, &info) != 0)
        return no_such_upload(r);
    mpu_part *parts;
    size_t np;
    if (load_parts(r, &info, &parts, &np, &ret) != 0)
        return ret;
    buf b = {0};
    buf_printf(&b, "%s<ListPartsResult xmlns=\"%s\">", S3_XML_HEAD, S3_XMLNS);
    buf_xml_elem(&b, "Bucket", s->bucket, strlen(s->bucket));
    buf_xml_elem(&b, "Key", s->key, s->klen);
    buf_printf(&b, "<UploadId>%s</UploadId><PartNumberMarker>%ld</PartNumberMarker>", info.id,
               after);
    long count = 0, last = 0;
    int truncated = 0;
    buf items = {0};
    for (size_t i = 0; i < np; i++) {
        if (parts[i].number <= after)
            continue;
        if (count == max) {
            truncated = max > 0; /* (max 0 asks for none: no page follows, as for ListObjects) */
            break;
        }
        char when[32], hex[33];
        s3_format_iso8601(parts[i].mtime_ms, when);
        util_hex(parts[i].md5, 16, hex);
        buf_printf(&items,
                   "<Part><PartNumber>%d</PartNumber><LastModified>%s</LastModified>"
                   "<ETag>&quot;%s&quot;</ETag><Size>%llu</Size></Part>",
                   parts[i].number, when, hex, (unsigned long long)parts[i].size);
        last = parts[i].number;
        count++;
    }
    buf_printf(&b,
               "<NextPartNumberMarker>%ld</NextPartNumberMarker><MaxParts>%ld</MaxParts>"
               "<IsTruncated>%s</IsTruncated><StorageClass>STANDARD</StorageClass>",
               last, max, truncated ? "true" : "false");
    buf_add(&b, items.data ? items.data : "", items.len);
    buf_puts(&b, "</ListPartsResult>");
    buf_free(&items);
    free(parts);
    mpu_info_clear(&info);
    return s3_xml(r, 200, &b);
}

/* ListMultipartUploads: uploads sorted by key, then by upload ID (S3 pages
 * by both markers so); keys with the delimiter after the prefix are rolled
 * up into common prefixes, each counted as one entry. */
typedef struct upload_item {
    char *key;
    size_t klen;
    char id[MPU_ID_LEN + 1];
    uint64_t created_ms;
} upload_item;

typedef struct uploads_ctx {
    const char *prefix;
    size_t plen;
    upload_item *items;
    size_t n, cap;
    int oom;
} uploads_ctx;

static int collect_upload(void *ctx, const mpu_info *info)
{
    uploads_ctx *u = ctx;
    if (info->klen < u->plen || memcmp(info->key, u->prefix, u->plen) != 0)
        return 0;
    if (util_grow(&u->items, &u->cap, u->n, sizeof *u->items, 64) != 0) {
        u->oom = 1;
        return 1;
    }
    upload_item *it = &u->items[u->n];
    if ((it->key = util_memdup(info->key, info->klen)) == NULL) {
        u->oom = 1;
        return 1;
    }
    it->klen = info->klen;
    memcpy(it->id, info->id, sizeof it->id);
    it->created_ms = info->created_ms;
    u->n++;
    return 0;
}

static void uploads_free(uploads_ctx *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->items[i].key);
    free(u->items);
}

static int upload_cmp(const void *pa, const void *pb)
{
    const upload_item *a = pa, *b = pb;
    int c = util_bytes_cmp(a->key, a->klen, b->key, b->klen);
    return c ? c : strcmp(a->id, b->id);
}

enum MHD_Result s3_list_multipart_uploads(request *r)
{
    s3_req *s = r->fe;
    if (!s3_bucket_exists(r))
        return s3_no_bucket(r);
    const char *prefix = s3_param(r, "prefix"), *delim = s3_param(r, "delimiter");
    const char *km = s3_param(r, "key-marker"), *um = s3_param(r, "upload-id-marker");
    int url;
    enum MHD_Result ret;
    if (s3_url_encoding_param(r, &url, &ret))
        return ret;
    if (delim && !*delim)
        delim = NULL;
    if (km && !*km)
        km = NULL;
    if (km == NULL || (um && !*um))
        um = NULL; /* (an upload-id-marker counts only with a key-marker) */
    long max;
    if (s3_count_param(r, "max-uploads", 1000, 1000, &max, &ret))
        return ret;
    uploads_ctx u = {.prefix = prefix ? prefix : ""};
    u.plen = strlen(u.prefix);
    mpu_list(r->srv->st, s->ns, collect_upload, &u);
    if (u.oom) {
        uploads_free(&u);
        return s3_error(r, 500, "InternalError", "out of memory");
    }
    if (u.n > 1)
        qsort(u.items, u.n, sizeof *u.items, upload_cmp);
    size_t kml = km ? strlen(km) : 0, dl = delim ? strlen(delim) : 0;
    buf items = {0}, prefixes = {0};
    long count = 0;
    int truncated = 0;
    const char *next_key = NULL, *next_id = "";
    size_t next_kl = 0;
    const char *last_cp = NULL; /* the common prefix emitted last, and its length */
    size_t last_cpl = 0;
    for (size_t i = 0; i < u.n; i++) {
        upload_item *it = &u.items[i];
        if (km) {
            int c = util_bytes_cmp(it->key, it->klen, km, kml);
            if (c < 0 || (c == 0 && (um == NULL || strcmp(it->id, um) <= 0)))
                continue;
        }
        size_t cpl = 0; /* the length of its common prefix, if it has one */
        if (delim) {
            const char *d = it->klen >= u.plen + dl
                                ? memmem(it->key + u.plen, it->klen - u.plen, delim, dl)
                                : NULL;
            if (d)
                cpl = (size_t)(d - it->key) + dl;
        }
        if (cpl && last_cp && cpl == last_cpl && memcmp(it->key, last_cp, cpl) == 0)
            continue; /* rolled up already */
        if (cpl && cpl == kml && memcmp(it->key, km, cpl) == 0)
            continue; /* the marker is this common prefix: it was on an earlier page */
        if (count == max) {
            truncated = max > 0; /* (max 0 asks for none: no page follows, as for ListObjects) */
            break;
        }
        count++;
        if (cpl) {
            buf_puts(&prefixes, "<CommonPrefixes>");
            s3_xml_name(&prefixes, url, "Prefix", it->key, cpl);
            buf_puts(&prefixes, "</CommonPrefixes>");
            last_cp = it->key;
            last_cpl = cpl;
            next_key = it->key, next_kl = cpl, next_id = "";
            continue;
        }
        char when[32];
        s3_format_iso8601(it->created_ms, when);
        buf_puts(&items, "<Upload>");
        s3_xml_name(&items, url, "Key", it->key, it->klen);
        buf_printf(&items,
                   "<UploadId>%s</UploadId><Initiated>%s</Initiated><StorageClass>STANDARD"
                   "</StorageClass></Upload>",
                   it->id, when);
        next_key = it->key, next_kl = it->klen, next_id = it->id;
    }
    buf b = {0};
    buf_printf(&b, "%s<ListMultipartUploadsResult xmlns=\"%s\">", S3_XML_HEAD, S3_XMLNS);
    buf_xml_elem(&b, "Bucket", s->bucket, strlen(s->bucket));
    s3_xml_name(&b, url, "KeyMarker", km ? km : "", kml);
    buf_xml_elem(&b, "UploadIdMarker", um ? um : "", um ? strlen(um) : 0);
    if (truncated && next_key) {
        s3_xml_name(&b, url, "NextKeyMarker", next_key, next_kl);
        buf_xml_elem(&b, "NextUploadIdMarker", next_id, strlen(next_id));
    }
    if (delim)
        s3_xml_name(&b, url, "Delimiter", delim, dl);
    s3_xml_name(&b, url, "Prefix", u.prefix, u.plen);
    if (url)
        buf_puts(&b, "<EncodingType>url</EncodingType>");
    buf_printf(&b, "<MaxUploads>%ld</MaxUploads><IsTruncated>%s</IsTruncated>", max,
               truncated ? "true" : "false");
    buf_add(&b, items.data ? items.data : "", items.len);
    buf_add(&b, prefixes.data ? prefixes.data : "", prefixes.len);
    buf_puts(&b, "</ListMultipartUploadsResult>");
    buf_free(&items);
    buf_free(&prefixes);
    uploads_free(&u);
    return s3_xml(r, 200, &b);
}
