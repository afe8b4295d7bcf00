/* sigv4.h -- AWS request signing: Signature Version 4 (header, presigned URL,
 * aws-chunked bodies and trailers) and the legacy Signature Version 2.
 *
 * One module serves both sides of the wire: the server verifies S3 requests
 * with it and the cold-tier client signs its requests to S3 with it. The
 * rules are those of S3, not those of the other AWS services: the path is
 * never normalized and is URI-encoded exactly once. See the top of sigv4.c
 * for the design, and PROTOCOLS.md ("SigV4") for the facts it implements.
 *
 * Nothing here knows about HTTP libraries. A request is described by a
 * sigv4_request: the method, the raw path and the raw query parameters
 * exactly as they appear in the request target (still percent-encoded), and
 * the headers as received. All strings are NUL-terminated and borrowed: the
 * module never keeps a pointer to them after a call returns.
 *
 * Verifying a request on the server goes in steps, so that the server can
 * look up the secret key (and a cached signing key) in between:
 *
 *     sigv4_auth auth;
 *     rc = sigv4_parse_auth(&req, &auth);          // malformed? which kind?
 *     rc = sigv4_check(&auth, &opts);              // region, time, expiry
 *     secret = lookup(auth.access_key);            // InvalidAccessKeyId
 *     rc = sigv4_verify_signature(&req, &auth, secret, &opts, NULL);
 *
 * sigv4_verify() does the last three for a known secret. Every failure is a
 * distinct SIGV4_ERR_* code; sigv4_s3_error() maps it to the S3 error code
 * and HTTP status, sigv4_strerror() gives the message.
 *
 * All functions return SIGV4_OK (0) or a SIGV4_ERR_* code unless said
 * otherwise. Strings returned through char ** are malloc'd; free() them. */

#ifndef CAIRN_SIGV4_H
#define CAIRN_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD_TRAILER "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define SIGV4_STREAMING_UNSIGNED_TRAILER "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

#define SIGV4_KEY_SIZE 32             /* derived signing key, raw bytes */
#define SIGV4_SIG_SIZE 65             /* hex signature + NUL */
#define SIGV4_AMZ_DATE_SIZE 17        /* "20150830T123600Z" + NUL */
#define SIGV4_HTTP_DATE_SIZE 30       /* "Sun, 30 Aug 2015 12:36:00 GMT" + NUL */
#define SIGV4_SCOPE_SIZE 128          /* "20150830/region/service/aws4_request" + NUL */
#define SIGV4_ACCESS_KEY_MAX 128      /* longest accepted access key id */
#define SIGV4_REGION_MAX 63           /* longest accepted region name */
#define SIGV4_SERVICE_MAX 31          /* longest accepted service name */
#define SIGV4_SIGNED_HEADERS_MAX 2047 /* longest accepted SignedHeaders list */
#define SIGV4_V2_SIG_SIZE 29          /* base64 HMAC-SHA1 + NUL */
#define SIGV4_MAX_EXPIRES 604800      /* X-Amz-Expires upper bound: 7 days */
#define SIGV4_MAX_SKEW 900            /* default allowed clock skew: 15 minutes */

typedef enum sigv4_status {
    SIGV4_OK = 0,
    SIGV4_ERR_NOMEM,                  /* out of memory */
    SIGV4_ERR_INVALID_ARG,            /* caller error (signing side, bad options) */
    SIGV4_ERR_NO_AUTH,                /* no signature at all: anonymous request */
    SIGV4_ERR_MULTIPLE_AUTH,          /* both an Authorization header and a signed query */
    SIGV4_ERR_UNSUPPORTED_AUTH,       /* unknown Authorization scheme or algorithm */
    SIGV4_ERR_MALFORMED_AUTH,         /* Authorization header or query auth unparsable */
    SIGV4_ERR_MALFORMED_CREDENTIAL,   /* Credential=AKID/date/region/service/aws4_request */
    SIGV4_ERR_WRONG_REGION,           /* scope region is not the server's */
    SIGV4_ERR_WRONG_SERVICE,          /* scope service is not the expected one */
    SIGV4_ERR_SCOPE_DATE_MISMATCH,    /* scope date differs from the request date */
    SIGV4_ERR_MISSING_DATE,           /* no valid x-amz-date / Date / X-Amz-Date */
    SIGV4_ERR_BAD_EXPIRES,            /* X-Amz-Expires not in 0..604800, or bad Expires */
    SIGV4_ERR_EXPIRED,                /* presigned URL past its expiry */
    SIGV4_ERR_NOT_YET_VALID,          /* presigned URL dated in the future */
    SIGV4_ERR_TIME_SKEWED,            /* request time more than 15 minutes off */
    SIGV4_ERR_HOST_NOT_SIGNED,        /* "host" missing from SignedHeaders */
    SIGV4_ERR_UNSIGNED_HEADER,        /* an x-amz-* header is present but not signed */
    SIGV4_ERR_MISSING_CONTENT_SHA256, /* header auth without x-amz-content-sha256 */
    SIGV4_ERR_BAD_CONTENT_SHA256,     /* x-amz-content-sha256 neither hex nor a known literal */
    SIGV4_ERR_SIGNATURE_MISMATCH,     /* the signature is wrong */
    SIGV4_ERR_COUNT
} sigv4_status;

typedef enum sigv4_auth_kind {
    SIGV4_AUTH_NONE = 0,
    SIGV4_AUTH_V4_HEADER, /* Authorization: AWS4-HMAC-SHA256 ... */
    SIGV4_AUTH_V4_QUERY,  /* ?X-Amz-Algorithm=...&X-Amz-Signature=... */
    SIGV4_AUTH_V2_HEADER, /* Authorization: AWS AKID:signature */
    SIGV4_AUTH_V2_QUERY   /* ?AWSAccessKeyId=...&Expires=...&Signature=... */
} sigv4_auth_kind;

/* What x-amz-content-sha256 announces about the body. */
typedef enum sigv4_payload_kind {
    SIGV4_PAYLOAD_INVALID = 0,
    SIGV4_PAYLOAD_HEX,               /* 64 hex digits: the body's SHA-256 */
    SIGV4_PAYLOAD_UNSIGNED,          /* UNSIGNED-PAYLOAD */
    SIGV4_PAYLOAD_STREAMING,         /* aws-chunked, signed chunks */
    SIGV4_PAYLOAD_STREAMING_TRAILER, /* aws-chunked, signed chunks and trailer */
    SIGV4_PAYLOAD_STREAMING_UNSIGNED /* aws-chunked, unsigned, with trailer */
} sigv4_payload_kind;

/* A query parameter as it appears in the URL: "name=value" or just "name".
 * Both are still percent-encoded; value is NULL when there was no '='. */
typedef struct sigv4_param {
    const char *name;
    const char *value;
} sigv4_param;

/* A header as received. The name may have any case; repeated headers are
 * given as repeated entries, in the order they arrived. */
typedef struct sigv4_header {
    const char *name;
    const char *value;
} sigv4_header;

typedef struct sigv4_request {
    const char *method;        /* "GET", "PUT", ... */
    const char *path;          /* raw path, percent-encoded, without the query */
    const sigv4_param *params; /* raw query parameters, in URL order */
    size_t nparams;
    const sigv4_header *headers;
    size_t nheaders;
    /* The payload hash line of the canonical request. NULL means the S3
     * rule: the x-amz-content-sha256 header for header auth; for presigned
     * URLs the X-Amz-Content-Sha256 query parameter, else UNSIGNED-PAYLOAD. */
    const char *payload_hash;
} sigv4_request;

/* The parsed authentication of a request (any kind). */
typedef struct sigv4_auth {
    sigv4_auth_kind kind;
    char access_key[SIGV4_ACCESS_KEY_MAX + 1];
    char date[9];                                      /* V4: scope date, YYYYMMDD */
    char region[SIGV4_REGION_MAX + 1];                 /* V4: scope region */
    char service[SIGV4_SERVICE_MAX + 1];               /* V4: scope service */
    char scope[SIGV4_SCOPE_SIZE];                      /* V4: date/region/service/aws4_request */
    char amz_date[SIGV4_AMZ_DATE_SIZE];                /* V4: timestamp of the string to sign */
    time_t time;                                       /* request time (0 for V2 presigned) */
    long expires;                                      /* V4 presigned: X-Amz-Expires seconds */
    time_t expires_at;                                 /* presigned: last valid second; else 0 */
    char signed_headers[SIGV4_SIGNED_HEADERS_MAX + 1]; /* V4: as sent */
    char signature[SIGV4_SIG_SIZE];                    /* V4 hex, or V2 base64 */
} sigv4_auth;

typedef struct sigv4_verify_opts {
    time_t now;               /* the server's clock */
    const char *region;       /* accepted region; NULL accepts any */
    const char *service;      /* expected service; NULL means "s3" */
    long max_skew;            /* seconds; <= 0 means SIGV4_MAX_SKEW */
    const char *vhost_bucket; /* SigV2 only: bucket named by the Host header in
                                 virtual-hosted style; NULL for path style */
} sigv4_verify_opts;

/* Signing-side credentials and scope. */
typedef struct sigv4_credentials {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL when none */
    const char *region;
    const char *service; /* "s3" */
} sigv4_credentials;

/* Optional debugging output of the signing and verifying functions: what was
 * signed. S3 returns both in its SignatureDoesNotMatch error. */
typedef struct sigv4_trace {
    char *canonical_request; /* malloc'd (NULL for SigV2) */
    char *string_to_sign;    /* malloc'd */
} sigv4_trace;

void sigv4_trace_free(sigv4_trace *trace);

/* ---- Encoding and canonical forms ---------------------------------------- */

/* Percent-encode len bytes of s with the SigV4 unreserved set
 * (A-Z a-z 0-9 - _ . ~), uppercase hex; '/' stays as is when keep_slash.
 * Use it to turn an object key into a URL path (keep_slash = 1) or a query
 * value (keep_slash = 0). Returns NULL when out of memory. */
char *sigv4_uri_encode(const char *s, size_t len, int keep_slash);

/* Split a raw query string ("a=1&b&c=") in place into at most max params,
 * pointing into query. Empty pieces ("a=1&&b") are dropped. Sets *n. Returns
 * SIGV4_ERR_INVALID_ARG when there are more than max parameters. */
int sigv4_query_split(char *query, sigv4_param *params, size_t max, size_t *n);

/* The canonical URI of a raw path: decoded once, then encoded once. */
int sigv4_canonical_uri(const char *raw_path, char **out);

/* The canonical query string: every parameter decoded ('+' is a space) and
 * re-encoded ('/' too), sorted by name then value; X-Amz-Signature is left
 * out when exclude_signature. */
int sigv4_canonical_query(const sigv4_request *req, int exclude_signature, char **out);

/* The whole canonical request. signed_headers is the ';' list ("host;x-amz-date")
 * and chooses the headers, in its order; payload_hash is the last line. */
int sigv4_canonical_request(const sigv4_request *req, const char *signed_headers,
                            const char *payload_hash, int exclude_signature, char **out);

/* "date/region/service/aws4_request" into out (SIGV4_SCOPE_SIZE). */
int sigv4_scope(const char *date, const char *region, const char *service, char *out);

/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>". */
int sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical_request,
                         char **out);

/* ---- Keys and signatures ------------------------------------------------- */

/* The signing key for one day, region and service. It is the same for every
 * request of that day: servers and clients may cache it by
 * (access key, date, region, service). */
int sigv4_derive_key(const char *secret, const char *date, const char *region, const char *service,
                     unsigned char key[SIGV4_KEY_SIZE]);

/* Frees this thread's HMAC context now (a thread about to end whose end
 * nobody waits for: not in its exit, beside the process's own). */
void sigv4_thread_done(void);

/* Hex HMAC-SHA256 of string_to_sign under key. */
int sigv4_signature(const unsigned char key[SIGV4_KEY_SIZE], const char *string_to_sign,
                    char out[SIGV4_SIG_SIZE]);

/* The payload hash the canonical request uses for req under auth (see
 * sigv4_request.payload_hash). Sets *hash to a borrowed string. */
int sigv4_payload_hash(const sigv4_request *req, sigv4_auth_kind kind, const char **hash);

/* Classify an x-amz-content-sha256 value. */
sigv4_payload_kind sigv4_payload_kind_of(const char *value);

/* ---- Dates ----------------------------------------------------------------- */

/* "YYYYMMDDTHHMMSSZ" <-> time_t (UTC). */
int sigv4_format_amz_date(time_t t, char out[SIGV4_AMZ_DATE_SIZE]);
int sigv4_parse_amz_date(const char *s, time_t *t);

/* Format: RFC 7231 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"). Parse: that,
 * with a numeric zone ("+0000", as SigV2 clients send) or no weekday, and the
 * obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime
 * ("Sun Nov  6 08:49:37 1994") forms HTTP recipients must accept. */
int sigv4_format_http_date(time_t t, char out[SIGV4_HTTP_DATE_SIZE]);
int sigv4_parse_http_date(const char *s, time_t *t);

/* ---- Verifying (server side) ---------------------------------------------- */

/* Which kind of authentication the request carries. SIGV4_ERR_MULTIPLE_AUTH
 * when it has both an Authorization header and query authentication,
 * SIGV4_ERR_UNSUPPORTED_AUTH for an unknown Authorization scheme. */
int sigv4_detect(const sigv4_request *req, sigv4_auth_kind *kind);

/* Detect and parse the request's authentication into auth (any kind).
 * SIGV4_ERR_NO_AUTH for an anonymous request. auth->kind is set even when
 * parsing fails, for sigv4_s3_error(). */
int sigv4_parse_auth(const sigv4_request *req, sigv4_auth *auth);

/* Parse only an Authorization header value of the SigV4 form
 * ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."):
 * fills kind, access key, scope, signed headers and signature. */
int sigv4_parse_authorization(const char *value, sigv4_auth *auth);

/* Checks that need no secret: scope region and service, scope date against
 * the request date, host signed, X-Amz-Expires, expiry and clock skew. */
int sigv4_check(const sigv4_auth *auth, const sigv4_verify_opts *opts);

/* Compare the request's signature with the one computed with key (SigV4).
 * Constant time. trace (optional) receives what was signed. */
int sigv4_verify_signature_key(const sigv4_request *req, const sigv4_auth *auth,
                               const unsigned char key[SIGV4_KEY_SIZE], sigv4_trace *trace);

/* Same for any kind (SigV2 needs opts->vhost_bucket); derives the key. */
int sigv4_verify_signature(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                           const sigv4_verify_opts *opts, sigv4_trace *trace);

/* sigv4_check() then sigv4_verify_signature(). */
int sigv4_verify(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                 const sigv4_verify_opts *opts, sigv4_trace *trace);

/* S3 rejects x-amz-* headers that are present but not signed. Returns
 * SIGV4_ERR_UNSIGNED_HEADER and sets *name (when name is not NULL) to the
 * first such header, else SIGV4_OK. Only meaningful for SigV4. */
int sigv4_find_unsigned_amz_header(const sigv4_request *req, const sigv4_auth *auth,
                                   const char **name);

/* The S3 error code (and HTTP status) for a SIGV4_ERR_* code met with an
 * authentication of the given kind, e.g. "SignatureDoesNotMatch", 403. */
const char *sigv4_s3_error(int err, sigv4_auth_kind kind, int *http_status);

/* A one-line message for a SIGV4_ERR_* code. */
const char *sigv4_strerror(int err);

/* ---- aws-chunked bodies ----------------------------------------------------- */

struct evp_md_ctx_st;

/* Chunk signature state: each chunk is signed over the previous signature,
 * starting with the request's (seed) signature. */
typedef struct sigv4_chunk {
    unsigned char key[SIGV4_KEY_SIZE];
    char amz_date[SIGV4_AMZ_DATE_SIZE];
    char scope[SIGV4_SCOPE_SIZE];
    char prev[SIGV4_SIG_SIZE];
    struct evp_md_ctx_st *md; /* running SHA-256 of the current chunk */
} sigv4_chunk;

int sigv4_chunk_init(sigv4_chunk *c, const unsigned char key[SIGV4_KEY_SIZE], const char *amz_date,
                     const char *scope, const char *seed_signature);

/* Feed the current chunk's data, in as many pieces as convenient. */
int sigv4_chunk_update(sigv4_chunk *c, const void *data, size_t len);

/* End the current chunk: its signature into sig, which becomes the previous
 * signature of the next chunk. */
int sigv4_chunk_finish(sigv4_chunk *c, char sig[SIGV4_SIG_SIZE]);

/* End the current chunk and compare with the received chunk-signature
 * (constant time): SIGV4_OK or SIGV4_ERR_SIGNATURE_MISMATCH. */
int sigv4_chunk_verify(sigv4_chunk *c, const char *received, size_t len);

/* Trailer signature after the final (empty) chunk. trailer is the trailer
 * lines in canonical form, each "name:value\n" (lowercase name). */
int sigv4_chunk_trailer(sigv4_chunk *c, const void *trailer, size_t len, char sig[SIGV4_SIG_SIZE]);
int sigv4_chunk_verify_trailer(sigv4_chunk *c, const void *trailer, size_t len,
                               const char *received, size_t received_len);

void sigv4_chunk_free(sigv4_chunk *c);

/* ---- Signing (client side) --------------------------------------------------- */

/* Sign req with header authentication at time now. Every header in req is
 * signed (it must have "host"); the signer adds x-amz-date, and
 * x-amz-security-token when there is a session token, so req must not carry
 * them. The payload hash is req->payload_hash, else req's
 * x-amz-content-sha256 header (S3 wants that header: put it in req).
 * The caller sends: X-Amz-Date: <amz_date>, Authorization: <*authorization>
 * and X-Amz-Security-Token: <token> if any. */
int sigv4_sign_header(const sigv4_request *req, const sigv4_credentials *cred, time_t now,
                      char amz_date[SIGV4_AMZ_DATE_SIZE], char **authorization, sigv4_trace *trace);

/* Presign req for expires seconds (1..604800) from now. Every header in req
 * is signed (it must have "host"). *query receives the complete query string
 * (without '?'): req's own parameters as given, then the X-Amz-* ones.
 * The payload hash is req->payload_hash, else UNSIGNED-PAYLOAD. */
int sigv4_presign(const sigv4_request *req, const sigv4_credentials *cred, time_t now, long expires,
                  char **query, sigv4_trace *trace);

/* ---- Signature Version 2 ---------------------------------------------------- */

/* The SigV2 string to sign: method, Content-MD5, Content-Type, date line,
 * canonical x-amz-* headers, canonical resource. The date line is expires
 * when not NULL (presigned), else empty when an x-amz-date header is present,
 * else the Date header. vhost_bucket prefixes the resource for
 * virtual-hosted requests (NULL for path style). */
int sigv4_v2_string_to_sign(const sigv4_request *req, const char *vhost_bucket, const char *expires,
                            char **out);

/* base64(HMAC-SHA1(secret, string_to_sign)). */
int sigv4_v2_signature(const char *secret, const char *string_to_sign, char out[SIGV4_V2_SIG_SIZE]);

/* "AWS <access key>:<signature>" for req, which must carry its Date (or
 * x-amz-date) header already. */
int sigv4_v2_sign_header(const sigv4_request *req, const char *access_key, const char *secret,
                         const char *vhost_bucket, char **authorization);

/* req's own query parameters, then AWSAccessKeyId, Expires (expires_at, Unix
 * time) and Signature. */
int sigv4_v2_presign(const sigv4_request *req, const char *access_key, const char *secret,
                     const char *vhost_bucket, time_t expires_at, char **query);

#endif
