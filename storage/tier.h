/*
 * tier.h - the cold tier's client: objects in an S3 bucket (AWS, GCS's XML
 * API, MinIO, another cairnd's S3 API), under a prefix, over libcurl and
 * signed with common/sigv4.
 *
 * Layout under the prefix, so that any node can resolve what another wrote:
 *   blobs/<64 hex>   a blob's stored bytes, exactly as the local store keeps
 *                    them (codec.h), with x-amz-meta-cairn-codec and
 *                    x-amz-meta-cairn-size (body bytes)
 *   keys/<namespace>/<key>
 *                    a key record, both parts escaped (store_tier.c, key_name:
 *                    a prefix of keys is a prefix of names, so they list)
 *   ns/<hex name>    a namespace that is created explicitly (an S3 bucket)
 *   packs/<namespace>/<time>-<random>
 *                    copies of many small key records of one namespace, with
 *                    the ETag each had, so that a warmup fetches them in a
 *                    few requests (store_tier.c, packs)
 * A blob larger than the part size goes up (and, on S3, is refreshed) as a
 * multipart upload.
 *
 * Each thread that calls in keeps its own curl handle, so connections are
 * reused.  Nothing here touches the store.
 */
#ifndef CAIRN_TIER_H
#define CAIRN_TIER_H

#include <stddef.h>
#include <stdint.h>

enum tier_status {
    TIER_OK = 0,
    TIER_NOTFOUND, /* 404 */
    TIER_DENIED,   /* 401/403: credentials */
    TIER_ERROR,    /* anything else: the network, 5xx, a timeout; worth a retry */
    TIER_BAD,      /* an answer that makes no sense (bad metadata, too large) */
    TIER_LOCAL,    /* not the tier's doing: memory, a temporary file or a thread here */
    TIER_LATE,     /* unsent: the request it was for has no time left (tier_waited): it
                      waited for a thread here, all busy with a slow tier, or an earlier
                      request to the tier for it timed out */
};

const char *tier_strerror(int status);

#define TIER_ERROR_TEXT 320
/* tier_strerror(status), and after it in brackets what the last request
 * to the tier this thread made failed with, in the tier's words or curl's
 * ("HTTP 403 RequestTimeTooSkewed: ...", "Failed to connect to ..."): for
 * a log line about the request just made.  The line is the thread's own,
 * until its next call. */
const char *tier_why(int status);

typedef struct tier_config {
    const char *url;      /* s3://bucket/prefix, gs://bucket/prefix, http(s)://host/bucket/prefix */
    const char *endpoint; /* for s3://: scheme://host[:port]; default AWS's for the region */
    const char *region;   /* default us-east-1 ("auto" for gs://) */
    int path_style;       /* 1 path style, 0 virtual host, -1 by endpoint (path style unless AWS) */
    const char *access_key, *secret_key, *session_token; /* no access key: unsigned requests */
    long timeout_ms;         /* a whole request that reads (reads must answer in time) */
    long connect_timeout_ms; /* connecting */
    int insecure;            /* skip TLS verification (tests with self-signed certificates) */
    uint64_t part_size;      /* blobs larger than this are uploaded in parts of this size
                                (S3 takes at most 5 GiB in one PUT); 0 = TIER_PART_DEFAULT */
} tier_config;

#define TIER_PART_DEFAULT (64ull << 20)
#define TIER_PART_MIN (5ull << 20) /* S3's least part size (but for the last part) */
#define TIER_PART_MAX (5ull << 30) /* and its largest */

typedef struct tier tier;

/* The last failure of any request to the tier, in the words tier_why puts
 * in brackets ("" if none yet), and when (ms since the epoch).  Returns its
 * length. */
size_t tier_last_failure(tier *t, char *out, size_t cap, uint64_t *when_ms);

int tier_open(tier **t, const tier_config *cfg, char *err, size_t errlen);
/* Requests this thread sends from now on have waited_ns less of their
 * budget (what they are for waited that long already); one with no budget
 * left fails (TIER_LATE) unsent.  With one_answer, they are all for one
 * answer to a client (a read), which has waited long enough once one of
 * them timed out: the rest fail TIER_LATE too, unsent.  0, 0 undoes it. */
void tier_waited(uint64_t waited_ns, int one_answer);
/* Has what this thread runs time left for a request to the tier? */
int tier_time_left(const tier *t);
/* With no time left: did it go in waiting for a thread to ask the tier
 * (tier_waited), rather than to another reader's failure (tier_spent)?
 * Then that is the tier's last failure (tier_last_failure), and 1. */
int tier_waited_out(tier *t);
/* What this thread runs for one answer took a failure of the tier's from
 * another reader's request (a timeout, likely): it has waited enough, and
 * sends none of its own (tier_waited's one_answer). */
void tier_spent(void);
/* Requests under way end within a second (failed), and new ones fail
 * unsent: for a stop that should not wait for a slow tier.  _reads: those
 * of every thread but the uploaders (tier_thread_uploads), so that a drain
 * can go on.  A multipart upload cut short is still aborted (2 s at most). */
void tier_abort_reads(tier *t);
void tier_abort_all(tier *t);
/* Has tier_abort_all been called (a failure now may be the stop's)? */
int tier_stopping(tier *t);
/* The calling thread sends what the queue owes the tier. */
void tier_thread_uploads(void);
void tier_close(tier *t);
/* A thread that sent requests and is about to end frees its signing
 * context now, not in its exit after whoever waits for it went on (and
 * perhaps exited with OpenSSL's cleanup).  Its connections are not its own:
 * they stay with the tier, idle, for the next request of any thread. */
void tier_thread_done(void);
/* Signs the requests from now on with these keys (no access key: unsigned),
 * as when their file changed; requests being signed finish with the old.
 * 1 if they differ from the old, 0 if not, -1 if memory ran short (the old
 * keys stay). */
int tier_set_keys(tier *t, const char *access, const char *secret, const char *token);
/* "s3://bucket/prefix" as configured, for logs (never with credentials). */
const char *tier_describe(const tier *t);

typedef struct tier_meta {
    int codec;       /* CODEC_RAW or CODEC_ZSTD; -1 when the object has none */
    uint64_t size;   /* body bytes (x-amz-meta-cairn-size) */
    uint64_t length; /* object bytes */
    int64_t mtime;   /* Last-Modified, seconds since the epoch; 0 if not given */
    /* a key record's: when its key was written (or, for an empty record,
     * deleted) at the node that did it, ms since the epoch; 0 if not given
     * (x-amz-meta-cairn-written) */
    uint64_t written_ms;
    /* the hex SHA-256 of an object put from memory (a key record, a pack),
     * sent as x-amz-meta-cairn-sha256; "" if none.  A whole GET of it into
     * memory checks the body against it: a record damaged on the way is
     * TIER_BAD, never taken */
    char sha256[65];
    /* a GET's answer did not say its length (no Content-Length): a body cut
     * short looks whole, so a body that fails its check is no proof of
     * damage in the tier */
    int unsized;
} tier_meta;

/* PUT an object from a file (fd, from offset 0) or from memory (fd < 0).
 * meta may be NULL.  From a file, longer than the part size: a multipart
 * upload (each part tried up to 3 times; aborted if it fails).  Every body
 * goes with its Content-MD5, which the store checks; and an answer whose
 * ETag is an MD5 (no encryption said) must be the body's, or the PUT
 * failed: damaged on the way (tier_put_damaged says so). */
int tier_put(tier *t, const char *name, int fd, const void *data, uint64_t len,
             const tier_meta *meta);
/* The same, with the ETag the tier gave the object (without quotes; empty
 * if none came) into etag. */
#define TIER_ETAG_CAP 128
int tier_put_tagged(tier *t, const char *name, int fd, const void *data, uint64_t len,
                    const tier_meta *meta, char etag[TIER_ETAG_CAP]);
/* Did this thread's last failed PUT reach the tier damaged (its ETag not
 * the MD5 of what was sent)?  Then the tier may hold the damaged bytes. */
int tier_put_damaged(void);
int tier_head(tier *t, const char *name, tier_meta *meta);
/* GET an object into fd (written from offset 0), or into a malloc'ed buffer
 * (*data, *len) when fd < 0.  An object longer than max is TIER_BAD. */
int tier_get(tier *t, const char *name, int fd, void **data, size_t *len, uint64_t max,
             tier_meta *meta);
/* Copies an object onto itself, with its own metadata (as a HEAD finds
 * it), which renews its date for the bucket's lifecycle rules, moving no
 * bytes through here.  On S3, longer than the part size: a multipart copy
 * (one copy takes at most 5 GiB there).  TIER_NOTFOUND when the object is
 * gone or not a blob of ours (no metadata): upload it again. */
int tier_refresh(tier *t, const char *name);
/* GET len bytes of an object from offset off (fewer where it ends) into a
 * malloc'ed buffer.  A tier that answers with the whole object instead is
 * TIER_BAD (unless that is what was asked). */
int tier_get_range(tier *t, const char *name, uint64_t off, uint64_t len, void **data, size_t *got);
/* tier_get into fd, calling progress with each piece once it is written
 * (meta holds the answer's headers from the first call on).  progress
 * returns 0, or non-zero when the bytes so far are damaged: the transfer
 * ends there, TIER_BAD (not resumed). */
int tier_get_stream(tier *t, const char *name, int fd, uint64_t max, tier_meta *meta,
                    int (*progress)(void *arg, const void *piece, size_t len, uint64_t written,
                                    const tier_meta *meta),
                    void *arg);
/* DELETE; a missing object is TIER_OK. */
int tier_delete(tier *t, const char *name);
/* Lists the objects whose names start with prefix (ListObjectsV2), in
 * order, calling each with the name (without the tier's prefix); each
 * returns nonzero to stop.  A tier status. */
int tier_list(tier *t, const char *prefix, int (*each)(void *arg, const char *name), void *arg);
/* The same, with delimiter "/": names past the next '/' after the prefix
 * are rolled up (and not passed to each). */
int tier_list_delimited(tier *t, const char *prefix, const char *delimiter,
                        int (*each)(void *arg, const char *name), void *arg);
/* The same, with each object's ETag (without quotes) and size. */
typedef struct tier_object {
    const char *name; /* without the tier's prefix */
    const char *etag;
    uint64_t size;
    int64_t mtime; /* LastModified, seconds since the epoch; 0 if not given */
} tier_object;
int tier_list_objects(tier *t, const char *prefix, const char *delimiter,
                      int (*each)(void *arg, const tier_object *o), void *arg);
/* The same, without a delimiter, for a caller that sorts what it gets: names
 * out of order (s3rver lists "a/b" before "a%2E") are taken, and only a
 * continuation token that comes again stops the listing (each stops it
 * too, past what the caller takes). */
int tier_list_any_order(tier *t, const char *prefix, int (*each)(void *arg, const tier_object *o),
                        void *arg);
/* Makes the bucket if it does not exist (a cairnd parent, a test's moto);
 * *made (if not NULL) says whether this call made it. */
int tier_ensure_bucket(tier *t, int *made);
/* Aborts the multipart uploads whose abort failed earlier (the tier went
 * away in the middle of them); call when the tier answers again.  Returns
 * how many are left. */
int tier_abort_abandoned(tier *t);
/* Is the tier another cairnd (http(s)://), whose bucket is ours to make? */
int tier_makes_bucket(const tier *t);
/* The longest object name (under the prefix) the tier takes. */
size_t tier_name_max(const tier *t);
/* --tier-timeout, in ms */
long tier_timeout_ms(const tier *t);

#endif
