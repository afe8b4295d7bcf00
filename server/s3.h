/*
 * s3.h - the S3 front end: shared state of one S3 request, and the pieces the
 * S3 files share (s3.c: routing, authentication, errors; s3_bucket.c: bucket
 * operations and listings; s3_object.c: objects).
 *
 * Buckets are store namespaces named "s3/<bucket>"; objects are keys in them.
 * What S3 must give back about an object (ETag, content headers, user
 * metadata, checksum) is kept in the key record's metadata, encoded by
 * s3_object.c.
 */
#ifndef CAIRN_S3_H
#define CAIRN_S3_H

#include "../common/checksum.h"
#include "../common/sigv4.h"
#include "awschunked.h"
#include "buf.h"
#include "server.h"

#define S3_MAX_PARAMS 64
#define S3_NS_MAX 80
/* The start of every XML answer, and S3's namespace for its root element. */
#define S3_XML_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define S3_XML_BODY_MAX (2u << 20)
#define S3_ADMIN_BODY_MAX (64u << 20) /* a warmup list: a million items or so */

enum { BAD_BUCKET_NONE = 1, BAD_BUCKET_UNKNOWN = 2 }; /* s3_req.bad_bucket */

typedef struct s3_req {
    char bucket[64];
    char ns[S3_NS_MAX]; /* "s3/<bucket>" */
    char *key;          /* decoded; NULL for bucket and service requests */
    size_t klen;
    char *resource; /* "/bucket/key" for error documents */
    char *query;    /* raw query, split in place into params */
    sigv4_param params[S3_MAX_PARAMS];
    size_t nparams;
    char request_id[17];
    int anonymous;
    int bucket_st;  /* what s3_bucket_exists found */
    int vhost;      /* the bucket came from the Host header */
    int bad_bucket; /* BAD_BUCKET_NONE: the path names none ("//x"), 400; _UNKNOWN: a name
                       too long for any bucket (or not decodable), no such bucket */
    int op;         /* enum s3_op */
    body_sink body;
    int body_started;
    buf xml; /* small request bodies: DeleteObjects and the like */
    int xml_too_big;
    /* the body's SHA-256 as announced in x-amz-content-sha256, if hex */
    uint8_t payload_sha256[32];
    int payload_sha256_set;
    const char *early_error; /* found before the body; answered after it */
    /* how the body travels and what it must match */
    sigv4_auth auth;
    unsigned char signing_key[SIGV4_KEY_SIZE];
    int signature_checked; /* auth holds a verified SigV4 signature */
    awschunked chunked;
    int chunked_on;
    sigv4_chunk signer;
    int signer_on;
    cksum_ctx ck;
    cksum_alg ck_alg;
    char ck_expect[CKSUM_B64_SIZE]; /* from the header; from the trailer if empty */
    char ck_value[CKSUM_B64_SIZE];  /* computed, once verified */
    uint8_t content_md5[16];
    int content_md5_set;
} s3_req;

/* Request bodies of PutObject and UploadPart (s3.c): aws-chunked decoding,
 * flexible checksums, Content-MD5 and x-amz-content-sha256.  start runs on the
 * first call (0, or an error was queued into *ret); check when the body has
 * ended (framing and limits); verify once the digests are known. */
int s3_body_start(request *r, enum MHD_Result *ret);
void s3_body_feed(request *r, const char *data, size_t len);
int s3_body_check(request *r, enum MHD_Result *ret);
int s3_body_verify(request *r, const uint8_t md5[16], const uint8_t *sha256, enum MHD_Result *ret);

/* A bucket is the store namespace "s3/<bucket>": the namespace of len bytes
 * of bucket into out (its length, or -1 if it does not fit), and the bucket
 * of a namespace (NULL for a namespace that is not a bucket's). */
int s3_bucket_ns(const char *bucket, size_t len, char *out, size_t cap);
/* A name S3 takes requests for (3 to 63 letters, digits, '-', '.', '_'; new
 * buckets follow stricter rules). */
int s3_bucket_name_ok(const char *b, size_t n);
const char *s3_ns_bucket(const char *ns);

/* Decoded value of query parameter name; NULL if absent ("" if no value).
 * The string lives as long as the request. */
const char *s3_param(request *r, const char *name);
/* A count in the query (max-keys, max-uploads, ...): dflt when absent, at
 * most cap; 1 with *ret answered (400 InvalidArgument) when it is not a
 * non-negative 32-bit integer in digits. */
int s3_count_param(request *r, const char *name, long dflt, long cap, long *out,
                   enum MHD_Result *ret);
/* A listing's encoding-type: *url set for "url"; 1 with *ret answered (400
 * InvalidArgument) for any other. */
int s3_url_encoding_param(request *r, int *url, enum MHD_Result *ret);
/* Percent-decodes s[0..n) into a new string (a '+' as a space when plus). */
char *s3_pct_decode(const char *s, size_t n, int plus, size_t *out_len);
/* An empty answer with the S3 headers, and one more header unless name is NULL. */
enum MHD_Result s3_empty(request *r, unsigned status, const char *name, const char *value);
/* 200 to a body stored (PutObject, UploadPart): its ETag (the MD5's hex),
 * and the checksum it was checked against, if any. */
enum MHD_Result s3_stored(request *r, const char *md5_hex);
int s3_has_param(request *r, const char *name);
enum MHD_Result s3_error(request *r, unsigned status, const char *code, const char *msg);
/* Queues an XML document (taking buf's data) with status. */
enum MHD_Result s3_xml(request *r, unsigned status, buf *b);
void s3_common_headers(request *r, struct MHD_Response *resp);
/* Does the request's bucket exist?  If not, s3_no_bucket answers why. */
int s3_bucket_exists(request *r);
/* 404 NoSuchBucket, or 503 when the cold tier could not say. */
enum MHD_Result s3_no_bucket(request *r);
/* The same for a bucket lookup's status st (a copy's source bucket). */
enum MHD_Result s3_bucket_error(request *r, int st);
/* The error for a store status (NoSuchKey, InternalError, ...). */
enum MHD_Result s3_store_error(request *r, int st);
/* 416 InvalidRange for a Range of an object of size bytes: its
 * Content-Range names the size, and the document S3's RangeRequested and
 * ActualObjectSize. */
enum MHD_Result s3_invalid_range(request *r, const char *range, uint64_t size);
/* Conditional writes against the request key's current object: If-Match,
 * and If-None-Match unless none_match is 0 (a delete).  0 to go on, with
 * *cond the key as seen, for the write to hold to (a write of it that
 * comes between: 412 from s3_store_error); 1 with *ret the answer sent
 * (412, or the store's error). */
int s3_write_preconditions(request *r, int none_match, store_cond *cond, enum MHD_Result *ret);
/* The object a copy's x-amz-copy-source names (CopyObject, UploadPartCopy),
 * here (a source still arriving from the cold tier is waited for): 0 with
 * *e filled (the caller clears it), its ETag in etag, and *self set when it
 * is the request's own key; else 1 with *ret answered (400 for a malformed
 * source, 404 for a missing bucket or key, 412 when its x-amz-copy-source-if-*
 * conditions fail, the store's error). */
int s3_copy_source(request *r, store_entry *e, char etag[80], int *self, enum MHD_Result *ret);
/* A copy source's name, read as S3 reads it (decoded, then the bucket up to
 * the first '/'): 0 with *bucket (malloc'ed, the caller frees it) and the key
 * after it; or why not. */
enum { COPY_SOURCE_VERSION = 1, COPY_SOURCE_MALFORMED, COPY_SOURCE_ENCODING, COPY_SOURCE_MEMORY };
int s3_copy_source_name(const char *src, char **bucket, const char **key, size_t *klen);
/* 200 to a copy: <element> (CopyObjectResult, CopyPartResult) with its ETag
 * (hex) and the key's time (mtime_ms; 0: now, for a part). */
enum MHD_Result s3_copied(request *r, const char *element, const char *etag, uint64_t mtime_ms);
void s3_format_iso8601(uint64_t ms, char out[32]);
/* <tag>k[0..n)</tag> in a listing: %XX-encoded under encoding-type=url
 * (url), else XML-escaped. */
void s3_xml_name(buf *b, int url, const char *tag, const char *k, size_t n);
/* An expat parser for a request document (user data ud) that refuses DTDs:
 * no entity of any kind is expanded.  s3_xml_parse parses b whole, frees the
 * parser, and says whether the document was well-formed. */
struct XML_ParserStruct *s3_xml_parser(void *ud);
int s3_xml_parse(struct XML_ParserStruct *xp, const buf *b);
void s3_format_http_date(uint64_t ms, char out[40]);

/* s3_bucket.c */
enum MHD_Result s3_list_buckets(request *r);
enum MHD_Result s3_create_bucket(request *r);
enum MHD_Result s3_delete_bucket(request *r);
enum MHD_Result s3_head_bucket(request *r);
enum MHD_Result s3_get_bucket_location(request *r);
enum MHD_Result s3_get_bucket_versioning(request *r);
enum MHD_Result s3_list_objects(request *r, int version); /* 1, 2, or 0 for versions */
enum MHD_Result s3_delete_objects(request *r);
/* Bucket names that front ends other than S3 use at the top level. */
int s3_reserved_bucket(const char *name);

/* s3_object.c */
unsigned s3_put_object_begin(request *r);
enum MHD_Result s3_put_object_end(request *r);
enum MHD_Result s3_get_object(request *r, int head);
enum MHD_Result s3_delete_object(request *r);
enum MHD_Result s3_copy_object(request *r);
/* An object's metadata from the request's headers (content headers, x-amz-meta-*),
 * with etag first unless it is NULL. */
void s3_request_meta(request *r, buf *b, const char *etag);
void s3_meta_add_etag(buf *b, const char *etag);
void s3_meta_add_checksum(buf *b, const char *alg, const char *value);
/* ETag (without quotes) of an object's metadata, into out (at least 80 bytes). */
void s3_meta_etag(const void *meta, size_t len, char *out, size_t cap);

/* s3_multipart.c */
enum MHD_Result s3_create_multipart(request *r);
unsigned s3_upload_part_begin(request *r);
enum MHD_Result s3_upload_part_end(request *r);
enum MHD_Result s3_upload_part_copy(request *r);
/* GetObjectTagging: objects here carry no tags (setting them is refused),
 * so an existing object's set is empty. */
enum MHD_Result s3_get_object_tagging(request *r);
enum MHD_Result s3_complete_multipart(request *r);
enum MHD_Result s3_abort_multipart(request *r);
enum MHD_Result s3_list_parts(request *r);
enum MHD_Result s3_list_multipart_uploads(request *r);

/* The S3 front end's entry points (http.c routes to them).  s3_claims: the
 * request carries AWS authentication or names an existing bucket. */
int s3_claims(request *r);
int s3_route(request *r);
enum MHD_Result s3_handle(request *r, const char *data, size_t *size);

#endif
