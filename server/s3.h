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

#include "../common/sigv4.h"
#include "buf.h"
#include "server.h"

#define S3_MAX_PARAMS 64
#define S3_NS_MAX 80
#define S3_XML_BODY_MAX (2u << 20)

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
    int op; /* enum s3_op */
    body_sink body;
    int body_started;
    buf xml; /* small request bodies: DeleteObjects and the like */
    int xml_too_big;
    /* the body's SHA-256 as announced in x-amz-content-sha256, if hex */
    uint8_t payload_sha256[32];
    int payload_sha256_set;
} s3_req;

/* Decoded value of query parameter name; NULL if absent ("" if no value).
 * The string lives as long as the request. */
const char *s3_param(request *r, const char *name);
int s3_has_param(request *r, const char *name);
enum MHD_Result s3_error(request *r, unsigned status, const char *code, const char *msg);
/* Queues an XML document (taking buf's data) with status. */
enum MHD_Result s3_xml(request *r, unsigned status, buf *b);
void s3_common_headers(request *r, struct MHD_Response *resp);
int s3_bucket_exists(request *r);
/* The error for a store status (NoSuchKey, InternalError, ...). */
enum MHD_Result s3_store_error(request *r, int st);
void s3_format_iso8601(uint64_t ms, char out[32]);
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
/* ETag (without quotes) of an object's metadata, into out (at least 80 bytes). */
void s3_meta_etag(const void *meta, size_t len, char *out, size_t cap);

/* The S3 front end's entry points (http.c routes to them).  s3_claims: the
 * request carries AWS authentication or names an existing bucket. */
int s3_claims(request *r);
int s3_route(request *r);
enum MHD_Result s3_handle(request *r, const char *data, size_t *size);

#endif
