/*
 * tier.c - the cold tier's S3 client; see tier.h.
 */
#include "tier.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <expat.h>
#include <stdatomic.h>

#include "../common/checksum.h"
#include "../common/log.h"
#include "../common/sigv4.h"
#include "../common/util.h"
#include "codec.h"

#define MIN_RATE (1u << 20) /* bytes/s a blob transfer is given time for */
#define AB_MAX 64           /* abandoned multipart uploads remembered */
#define AB_NAME_CAP 512     /* (their names: a blob's, under the prefix) */
#define HANDLES_KEPT 128    /* idle curl handles kept, with their open connections */

struct tier {
    char describe[512];
    char endpoint[512]; /* scheme://host[:port], with the bucket for virtual-host style */
    char host[256];     /* as sent in Host and signed */
    char bucket[64];
    char prefix[256]; /* without slashes at either end; may be empty */
    int path_style;
    char region[64];
    pthread_mutex_t keys_mu; /* the keys change when their file does (tier_set_keys) */
    char *access_key, *secret_key, *session_token;
    long timeout_ms, connect_timeout_ms;
    int insecure;
    uint64_t part_size; /* objects larger than this go up (and are copied) in parts */
    int copy_in_parts;  /* S3 itself: one copy moves at most 5 GiB; GCS and cairnd have no
                           such limit (and no UploadPartCopy) */
    int parent;         /* http(s)://: another cairnd, whose bucket we make */
    atomic_int no_parts, no_part_copy; /* the server answered 501 to them */
    /* what the store's ETags of single PUTs are: ETAG_UNKNOWN until a PUT
     * tells (etag_is), then ETAG_MD5, or ETAG_OTHER (a read back found the
     * object intact under an ETag that is not its MD5) */
    atomic_int etags;
    /* multipart uploads whose abort failed (the tier went away meanwhile):
     * aborted once it answers again (tier_abort_abandoned) */
    pthread_mutex_t ab_mu;
    struct abandoned {
        char name[AB_NAME_CAP], uid[1201];
    } * ab;
    atomic_uint nab;
    /* Idle curl handles.  A handle keeps the connections it opened (and
     * their TLS sessions), so a request takes one from here and gives it
     * back: a thread that lives for one request (a large blob's fetch, a
     * warmup) reuses the connections of those before it. */
    pthread_mutex_t handles_mu;
    CURL *handles[HANDLES_KEPT];
    unsigned nhandles;
    /* What every handle shares: TLS sessions, so that a new handle (a
     * burst of more requests than handles kept) resumes one instead of a
     * full handshake.  NULL with a libcurl that cannot share them safely
     * (share_open), or could not make it: each handle keeps its own. */
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    atomic_int stopping; /* STOP_READS, STOP_ALL: requests under way end, new ones fail */
    /* the last failure, as the tier or curl told it, for /status */
    pthread_mutex_t err_mu;
    char last_error[TIER_ERROR_TEXT];
    uint64_t last_error_ms;
};

/* The last failure of this thread's request (see tier_why). */
static _Thread_local char thread_error[TIER_ERROR_TEXT];
/* This thread sends what the queue owes the tier (tier_thread_uploads). */
static _Thread_local int uploader;

#define DIGEST_CHUNK (1u << 20) /* a file body's bytes read at a time for its Content-MD5 */

enum { STOP_NONE, STOP_READS, STOP_ALL };
#define AT_STOP_MS 2000 /* what a request may take once the stop began (at_stop) */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void tier_thread_done(void)
{
    sigv4_thread_done();
}

/* A handle for one request: an idle one (its options reset when it was
 * given back, its connections kept), or a new one.  NULL if memory runs
 * short. */
static CURL *handle_take(tier *t)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *h = NULL;
    pthread_mutex_lock(&t->handles_mu);
    if (t->nhandles > 0)
        h = t->handles[--t->nhandles];
    pthread_mutex_unlock(&t->handles_mu);
    if (h == NULL && (h = curl_easy_init()) != NULL && t->share != NULL)
        curl_easy_setopt(h, CURLOPT_SHARE, t->share); /* kept by curl_easy_reset */
    return h;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access how, void *arg)
{
    (void)h;
    (void)how;
    pthread_mutex_lock(&((tier *)arg)->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h;
    pthread_mutex_unlock(&((tier *)arg)->share_mu[data]);
}

/* The share of t's handles (after curl_global_init). */
static void share_open(tier *t)
{
    /* Before libcurl 8.12 the cache hands one OpenSSL session object to
     * every connection that resumes it, and connections on two threads
     * resuming at once race on it (curl pull request 14751); 8.12 keeps
     * sessions serialized, each connection its own copy.  Resolved names
     * stay each handle's own: handles resolving at different times spread
     * over the addresses a tier's name rotates through. */
    if (curl_version_info(CURLVERSION_NOW)->version_num < 0x080c00)
        return;
    if ((t->share = curl_share_init()) == NULL)
        return;
    if (curl_share_setopt(t->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(t->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(t->share, CURLSHOPT_USERDATA, t) != CURLSHE_OK ||
        curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        curl_share_cleanup(t->share);
        t->share = NULL;
    }
}

static void handle_give(tier *t, CURL *h)
{
    curl_easy_reset(h); /* (its options point at the request's memory, gone now) */
    pthread_mutex_lock(&t->handles_mu);
    if (t->nhandles < HANDLES_KEPT) {
        t->handles[t->nhandles++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&t->handles_mu);
    if (h != NULL)
        curl_easy_cleanup(h); /* enough are idle */
}

const char *tier_strerror(int status)
{
    switch (status) {
    case TIER_OK:
        return "ok";
    case TIER_NOTFOUND:
        return "not found in the tier";
    case TIER_DENIED:
        return "the tier refused the credentials";
    case TIER_ERROR:
        return "the tier did not answer, or failed";
    case TIER_BAD:
        return "the tier's answer makes no sense";
    case TIER_LOCAL:
        return "a local error (memory, disk or threads)";
    case TIER_LATE:
        return "not asked: no time left (the wait for a thread, or an earlier request, took it)";
    default:
        return "unknown tier error";
    }
}

static void copy_trimmed(char *dst, size_t cap, const char *s, size_t n)
{
    while (n && *s == '/') {
        s++;
        n--;
    }
    while (n && s[n - 1] == '/')
        n--;
    snprintf(dst, cap, "%.*s", (int)n, s);
}

/* "bucket/prefix" into t->bucket and t->prefix. */
static int split_bucket(tier *t, const char *s, const char *dflt_bucket)
{
    while (*s == '/')
        s++;
    size_t bl = strcspn(s, "/");
    if (bl == 0 && dflt_bucket) {
        snprintf(t->bucket, sizeof t->bucket, "%s", dflt_bucket);
    } else if (bl == 0 || bl >= sizeof t->bucket) {
        return -1;
    } else {
        memcpy(t->bucket, s, bl);
        t->bucket[bl] = '\0';
    }
    const char *rest = s + bl;
    copy_trimmed(t->prefix, sizeof t->prefix, rest, strlen(rest));
    return 0;
}

static int set_endpoint(tier *t, const char *ep, char *err, size_t errlen)
{
    const char *p = strstr(ep, "://");
    if (p == NULL || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
        snprintf(err, errlen, "tier endpoint %s: want http://HOST[:PORT] or https://...", ep);
        return -1;
    }
    size_t scheme = (size_t)(p + 3 - ep);
    size_t hl = strcspn(p + 3, "/");
    if (hl == 0 || hl >= sizeof t->host - 80) {
        snprintf(err, errlen, "tier endpoint %s has no host", ep);
        return -1;
    }
    if (t->path_style) {
        snprintf(t->host, sizeof t->host, "%.*s", (int)hl, p + 3);
        snprintf(t->endpoint, sizeof t->endpoint, "%.*s%s", (int)scheme, ep, t->host);
    } else {
        snprintf(t->host, sizeof t->host, "%s.%.*s", t->bucket, (int)hl, p + 3);
        snprintf(t->endpoint, sizeof t->endpoint, "%.*s%s", (int)scheme, ep, t->host);
    }
    return 0;
}

int tier_open(tier **out, const tier_config *c, char *err, size_t errlen)
{
    tier *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *url = c->url;
    char ep[256] = "";
    int path_style = c->path_style;
    const char *region = c->region && *c->region ? c->region : NULL;
    if (strncmp(url, "s3://", 5) == 0) {
        if (split_bucket(t, url + 5, NULL) != 0)
            goto bad_url;
        t->copy_in_parts = 1;
        if (c->endpoint && *c->endpoint) {
            snprintf(ep, sizeof ep, "%s", c->endpoint);
            if (path_style < 0)
                path_style = strstr(ep, "amazonaws.com") == NULL;
        } else {
            if (region == NULL)
                region = "us-east-1";
            snprintf(ep, sizeof ep, "https://s3.%s.amazonaws.com", region);
            if (path_style < 0)
                path_style = 0;
        }
    } else if (strncmp(url, "gs://", 5) == 0) {
        /* GCS's XML API takes SigV4 with HMAC keys; "auto" is its region */
        if (split_bucket(t, url + 5, NULL) != 0)
            goto bad_url;
        snprintf(ep, sizeof ep, "%s",
                 c->endpoint && *c->endpoint ? c->endpoint : "https://storage.googleapis.com");
        if (region == NULL)
            region = "auto";
        if (path_style < 0)
            path_style = 1;
    } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        /* another cairnd (or any S3 server) by its own address: its S3 API,
         * path style, bucket "cairn-tier" unless the path names one */
        const char *host = strstr(url, "://") + 3;
        size_t hl = strcspn(host, "/");
        snprintf(ep, sizeof ep, "%.*s", (int)(host + hl - url), url);
        if (split_bucket(t, host + hl, "cairn-tier") != 0)
            goto bad_url;
        path_style = 1;
        t->parent = 1;
    } else {
        goto bad_url;
    }
    t->path_style = path_style;
    snprintf(t->region, sizeof t->region, "%s", region ? region : "us-east-1");
    if (set_endpoint(t, ep, err, errlen) != 0) {
        free(t);
        return -1;
    }
    pthread_mutex_init(&t->keys_mu, NULL);
    pthread_mutex_init(&t->ab_mu, NULL);
    pthread_mutex_init(&t->handles_mu, NULL);
    pthread_mutex_init(&t->err_mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&t->share_mu[i], NULL);
    if ((t->ab = calloc(AB_MAX, sizeof *t->ab)) == NULL) {
        snprintf(err, errlen, "out of memory");
        tier_close(t);
        return -1;
    }
    if (tier_set_keys(t, c->access_key, c->secret_key, c->session_token) < 0) {
        snprintf(err, errlen, "out of memory");
        tier_close(t);
        return -1;
    }
    t->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 10000;
    t->connect_timeout_ms = c->connect_timeout_ms > 0 ? c->connect_timeout_ms : 5000;
    t->insecure = c->insecure;
    t->part_size = c->part_size ? c->part_size : TIER_PART_DEFAULT;
    if (t->part_size < TIER_PART_MIN)
        t->part_size = TIER_PART_MIN;
    if (t->part_size > TIER_PART_MAX)
        t->part_size = TIER_PART_MAX;
    snprintf(t->describe, sizeof t->describe, "%s (%s, %s style, region %s)", url, ep,
             path_style ? "path" : "virtual-host", t->region);
    pthread_once(&curl_once, curl_init_once);
    share_open(t);
    *out = t;
    return 0;
bad_url:
    snprintf(err, errlen,
             "tier %s: want s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] or "
             "http(s)://HOST[:PORT][/BUCKET[/PREFIX]]",
             url);
    free(t);
    return -1;
}

/* A multipart upload of name that is left in the bucket. */
static void log_left(const char *name)
{
    log_msg(LOG_WARN, "tier_upload_left",
            "a multipart upload of %s could not be aborted; the bucket's "
            "AbortIncompleteMultipartUpload rule will remove its parts",
            name);
}

static void free_secret(char *p)
{
    if (p) {
        memset(p, 0, strlen(p));
        free(p);
    }
}

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int tier_set_keys(tier *t, const char *access, const char *secret, const char *token)
{
    char *a = NULL, *sk = NULL, *tok = NULL;
    if (access && *access) {
        a = strdup(access);
        sk = strdup(secret ? secret : "");
        tok = token && *token ? strdup(token) : NULL;
        if (a == NULL || sk == NULL || (token && *token && tok == NULL)) {
            free(a);
            free_secret(sk);
            free_secret(tok);
            return -1;
        }
    }
    pthread_mutex_lock(&t->keys_mu);
    char *old_a = t->access_key, *old_sk = t->secret_key, *old_tok = t->session_token;
    int changed = !same_str(a, old_a) || !same_str(sk, old_sk) || !same_str(tok, old_tok);
    t->access_key = a;
    t->secret_key = sk;
    t->session_token = tok;
    pthread_mutex_unlock(&t->keys_mu);
    free(old_a);
    free_secret(old_sk);
    free_secret(old_tok);
    return changed;
}

void tier_close(tier *t)
{
    if (t == NULL)
        return;
    tier_set_keys(t, NULL, NULL, NULL);
    pthread_mutex_destroy(&t->keys_mu);
    for (unsigned i = 0; i < atomic_load(&t->nab); i++)
        log_left(t->ab[i].name);
    pthread_mutex_destroy(&t->ab_mu);
    for (unsigned i = 0; i < t->nhandles; i++)
        curl_easy_cleanup(t->handles[i]);
    pthread_mutex_destroy(&t->handles_mu);
    pthread_mutex_destroy(&t->err_mu);
    if (t->share != NULL) /* after its handles: curl refuses while any uses it */
        curl_share_cleanup(t->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&t->share_mu[i]);
    free(t->ab);
    free(t);
}

int tier_makes_bucket(const tier *t)
{
    return t->parent;
}

/* S3 and GCS take object names of this many bytes */
#define S3_NAME_MAX 1024
/* a cairnd parent takes keys of this many bytes less its bucket's name: its
 * index's keys are 511 bytes, "s3/<bucket>", a NUL, then the key */
#define CAIRND_NAME_MAX 507

long tier_timeout_ms(const tier *t)
{
    return t->timeout_ms;
}

size_t tier_name_max(const tier *t)
{
    size_t max = t->parent ? CAIRND_NAME_MAX - strlen(t->bucket) : S3_NAME_MAX;
    size_t pl = t->prefix[0] ? strlen(t->prefix) + 1 : 0;
    return max > pl ? max - pl : 0;
}

const char *tier_describe(const tier *t)
{
    return t->describe;
}

/* ---- one request ------------------------------------------------------------- */

typedef struct xfer {
    /* request body */
    int in_fd;
    const uint8_t *in_data;
    uint64_t in_len, in_off;
    uint64_t in_start; /* in_off when the request began (seek_cb) */
    /* response body */
    int out_fd;
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t out_max;
    int too_large;
    int damaged;     /* progress found the bytes so far damaged */
    int write_error; /* the body could not be kept here (a full disk, memory) */
    char etag[128];  /* the answer's ETag header, as sent (quoted) */
    int encrypted;   /* the answer says the object is encrypted: its ETag may not be an MD5 */
    int garbled;     /* a body from memory that is not what its x-amz-meta-cairn-sha256 says */
    uint8_t md5[16]; /* a PUT's body's, when its ETag was not that (put_damaged) */
    int suspect;     /* a part whose ETag is not its MD5, the store's ETags not known yet */
    /* a GET resumed at byte resume_from (> 0): its body is taken only from
     * a 206 whose Content-Range starts there (else refused, unwritten) */
    uint64_t resume_from;
    long status;
    int range_ok, refused;
    tier_meta *meta;
    int (*progress)(void *arg, const void *piece, size_t len, uint64_t written,
                    const tier_meta *meta);
    void *progress_arg;
    /* a body that stops arriving for stall_ns, once it started, ends the
     * transfer there (progress_cb), not at the end of its budget */
    uint64_t stall_ns, last_ns;
    tier *t;     /* (progress_cb: tier_abort_all ends it too) */
    int at_stop; /* (the treq's) */
    /* the start of an error's body: S3's <Code> and <Message>, for the log */
    char errbody[2048];
    size_t errlen;
} xfer;

/* curl sends the body again (a kept connection that the server closed as
 * the request went out: curl retries on a new one): from offset. */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
    xfer *x = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->in_len - x->in_start)
        return CURL_SEEKFUNC_FAIL;
    x->in_off = x->in_start + (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Is this thread's request to the tier to end (tier_abort_reads, _all)? */
static int stopped_for(tier *t)
{
    int st = atomic_load_explicit(&t->stopping, memory_order_relaxed);
    return st == STOP_ALL || (st == STOP_READS && !uploader);
}

/* curl calls it at least once a second: nonzero ends the transfer */
static int progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    xfer *x = arg;
    if (!x->at_stop && stopped_for(x->t))
        return 1;
    return x->stall_ns && x->last_ns != 0 && util_mono_ns() - x->last_ns > x->stall_ns;
}

void tier_abort_reads(tier *t)
{
    int none = STOP_NONE;
    atomic_compare_exchange_strong(&t->stopping, &none, STOP_READS);
}

void tier_abort_all(tier *t)
{
    atomic_store(&t->stopping, STOP_ALL);
}

int tier_stopping(tier *t)
{
    return atomic_load(&t->stopping) == STOP_ALL;
}

void tier_thread_uploads(void)
{
    uploader = 1;
}

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t want = size * n;
    uint64_t left = x->in_len - x->in_off;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (x->in_fd >= 0) {
        ssize_t got = util_pread_all(x->in_fd, buf, want, (off_t)x->in_off);
        if (got <= 0)
            return CURL_READFUNC_ABORT;
        want = (size_t)got;
    } else {
        memcpy(buf, x->in_data + x->in_off, want);
    }
    x->in_off += want;
    return want;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    if (x->resume_from && (x->status != 206 || !x->range_ok)) {
        x->refused = 1; /* the whole object again, another part, or an error's body */
        return 0;
    }
    if (x->status < 200 || x->status > 299) {
        size_t room = sizeof x->errbody - x->errlen, take = len < room ? len : room;
        memcpy(x->errbody + x->errlen, buf, take);
        x->errlen += take;
        if (x->out_fd >= 0)
            return len; /* an error's body, not the object's: not kept, nor shown to readers */
    }
    if ((uint64_t)x->out_len + len > x->out_max) {
        x->too_large = 1;
        return 0;
    }
    if (x->out_fd >= 0) {
        /* the whole length at once: the file system allocates it in one go
         * rather than a block at a time as the pieces arrive */
        if (x->out_len == 0 && x->meta && x->meta->length > len && x->meta->length <= x->out_max)
            (void)fallocate(x->out_fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)x->meta->length);
        if (util_write_all(x->out_fd, buf, len) != 0) {
            x->write_error = 1;
            return 0;
        }
        x->out_len += len;
        if (x->stall_ns)
            x->last_ns = util_mono_ns();
        if (x->progress && x->progress(x->progress_arg, buf, len, x->out_len, x->meta) != 0) {
            x->damaged = 1; /* no use fetching the rest */
            return 0;
        }
        return len;
    }
    if (x->out_len + len > x->out_cap) {
        size_t cap = x->out_cap ? x->out_cap : 4096;
        while (cap < x->out_len + len)
            cap *= 2;
        uint8_t *p = realloc(x->out, cap);
        if (p == NULL) {
            x->write_error = 1;
            return 0;
        }
        x->out = p;
        x->out_cap = cap;
    }
    memcpy(x->out + x->out_len, buf, len);
    x->out_len += len;
    return len;
}

static size_t header_cb(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    char line[256];
    size_t cl = len < sizeof line ? len : sizeof line - 1;
    memcpy(line, buf, cl);
    line[cl] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) {   /* a status line: a new answer's headers begin */
        const char *sp = strchr(line, ' '); /* (its reason phrase may be cut: of no matter) */
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->range_ok = 0;
        if (x->meta) /* (HTTP/2 and chunked bodies say where they end) */
            x->meta->unsized = strncmp(line, "HTTP/1", 6) == 0;
        return len;
    }
    if (len >= sizeof line)
        return len; /* a header this long is none of those read here */
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return len;
    *colon = '\0';
    const char *v = colon + 1;
    while (*v == ' ')
        v++;
    if (strcasecmp(line, "etag") == 0)
        snprintf(x->etag, sizeof x->etag, "%s", v);
    if (strncasecmp(line, "x-amz-server-side-encryption", 28) == 0)
        x->encrypted = 1;
    if (x->resume_from && strcasecmp(line, "content-range") == 0) {
        char *end;
        x->range_ok = strncmp(v, "bytes ", 6) == 0 && strtoull(v + 6, &end, 10) == x->resume_from &&
                      *end == '-';
    }
    if (x->meta == NULL)
        return len;
    /* GCS's XML API names custom metadata x-goog-meta-* in its answers */
    const char *mkey = strncasecmp(line, "x-amz-meta-", 11) == 0    ? line + 11
                       : strncasecmp(line, "x-goog-meta-", 12) == 0 ? line + 12
                                                                    : "";
    if (strcasecmp(mkey, "cairn-codec") == 0)
        x->meta->codec = strcmp(v, "zstd") == 0  ? CODEC_ZSTD
                         : strcmp(v, "raw") == 0 ? CODEC_RAW
                                                 : -1;
    else if (strcasecmp(mkey, "cairn-size") == 0)
        x->meta->size = strtoull(v, NULL, 10);
    else if (strcasecmp(mkey, "cairn-written") == 0)
        x->meta->written_ms = strtoull(v, NULL, 10);
    else if (strcasecmp(mkey, "cairn-sha256") == 0 && util_is_hex64(v, strlen(v)))
        memcpy(x->meta->sha256, v, 65);
    else if (strcasecmp(line, "content-length") == 0) {
        x->meta->length = strtoull(v, NULL, 10);
        x->meta->unsized = 0;
    } else if (strcasecmp(line, "transfer-encoding") == 0 && strcasestr(v, "chunked")) {
        x->meta->unsized = 0;
    } else if (strcasecmp(line, "last-modified") == 0) {
        time_t tm;
        if (sigv4_parse_http_date(v, &tm) == SIGV4_OK)
            x->meta->mtime = (int64_t)tm;
    }
    return len;
}

/* S3's URI encoding: everything but unreserved characters, and '/' unless
 * keep_slash (an object name keeps them, a query value does not). */
static void uri_encode(const char *s, char *out, size_t cap, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && keep_slash)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

/* One request to the tier. */
typedef struct treq {
    const char *method;
    const char *name; /* the object; NULL: the bucket itself */
    const char
        *query; /* raw and percent-encoded ("uploads", "partNumber=1&uploadId=..."), or NULL */
    const tier_meta *meta; /* sent as x-amz-meta-cairn-*, or NULL */
    int at_stop;           /* sent, within AT_STOP_MS, after tier_abort_all too */
    int copy;              /* x-amz-copy-source: the object itself */
    int replace;           /* with copy: x-amz-metadata-directive REPLACE */
    const char *range;     /* with copy: x-amz-copy-source-range; else a GET's Range */
    const char *if_match;  /* with copy: x-amz-copy-source-if-match (the source unchanged);
                              else If-Match */
    long timeout_ms;
} treq;

static __thread long waited_ms;
static __thread int one_answer_now;

void tier_waited(uint64_t waited_ns, int one_answer)
{
    waited_ms = (long)(waited_ns / 1000000u);
    one_answer_now = one_answer;
}

static void note_failure(tier *t, const xfer *x, CURLcode cc, const char *eb, long http);
static void keep_failure(tier *t, int bare);
static int missing_bucket(const xfer *x);

/* The MD5 of the body a request sends (from memory, or read from its
 * file) and, if sha is not NULL, its SHA-256.  0, or -1 (memory, a read,
 * or a stop that ends requests under way). */
static int body_digests(tier *t, const xfer *x, uint8_t md5[16], uint8_t sha[32])
{
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *h = sha ? EVP_MD_CTX_new() : NULL;
    uint8_t *buf = x->in_fd >= 0 ? malloc(DIGEST_CHUNK) : NULL;
    int ok = m && (h || !sha) && (buf || x->in_fd < 0) &&
             EVP_DigestInit_ex(m, cksum_md_md5(), NULL) &&
             (!h || EVP_DigestInit_ex(h, cksum_md_sha256(), NULL));
    for (uint64_t off = x->in_off; ok && off < x->in_len;) {
        size_t n = x->in_len - off < DIGEST_CHUNK ? (size_t)(x->in_len - off) : DIGEST_CHUNK;
        const uint8_t *p = x->in_data + off;
        if (x->in_fd >= 0) {
            ssize_t got = util_pread_all(x->in_fd, buf, n, (off_t)off);
            ok = got > 0;
            n = ok ? (size_t)got : 0;
            p = buf;
        }
        ok =
            ok && EVP_DigestUpdate(m, p, n) && (!h || EVP_DigestUpdate(h, p, n)) && !stopped_for(t);
        off += n;
    }
    ok = ok && EVP_DigestFinal_ex(m, md5, NULL) && (!h || EVP_DigestFinal_ex(h, sha, NULL));
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(h);
    free(buf);
    return ok ? 0 : -1;
}

/* Is the answer's ETag (quoted or not) the MD5 of what was sent?  -1 when
 * it cannot say: no ETag, one that is no MD5 (a multipart object's), or an
 * encrypted object's (SSE-KMS and SSE-C ETags are not MD5s on S3, nor on
 * MinIO SSE-S3). */
static int etag_is(const xfer *x, const uint8_t md5[16])
{
    const char *e = x->etag;
    size_t n = strlen(e);
    if (n >= 2 && e[0] == '"' && e[n - 1] == '"')
        e++, n -= 2;
    uint8_t got[16];
    if (x->encrypted || n != 32 || util_unhex(e, 32, got, 16) != 0)
        return -1;
    return memcmp(got, md5, 16) == 0;
}

enum { ETAG_UNKNOWN, ETAG_MD5, ETAG_OTHER };

static _Thread_local int put_damaged;

int tier_put_damaged(void)
{
    return put_damaged;
}

/* Runs one request.  Returns a tier status; *http gets the HTTP status (0 if
 * none came). */
static int perform(tier *t, const treq *r, xfer *x, long *http)
{
    *http = 0;
    put_damaged = 0;
    thread_error[0] = '\0';
    long timeout_ms = r->timeout_ms - waited_ms;
    if (timeout_ms <= 0)
        return TIER_LATE; /* its time went in waiting (tier_waited) */
    if (r->at_stop && atomic_load(&t->stopping) && timeout_ms > AT_STOP_MS)
        timeout_ms = AT_STOP_MS;
    else if (stopped_for(t)) {
        snprintf(thread_error, sizeof thread_error, "not sent: cairnd is stopping");
        return TIER_ERROR;
    }
    const char *method = r->method, *name = r->name;
    char objkey[1024], path[3200], url[11000];
    if (name && (size_t)snprintf(objkey, sizeof objkey, "%s%s%s", t->prefix,
                                 t->prefix[0] ? "/" : "", name) >= sizeof objkey)
        return TIER_BAD; /* longer than S3 takes */
    if (name == NULL)
        objkey[0] = '\0';
    char enc[3072];
    uri_encode(objkey, enc, sizeof enc, 1);
    if (t->path_style)
        snprintf(path, sizeof path, "/%s/%s", t->bucket, enc);
    else
        snprintf(path, sizeof path, "/%s", enc);
    if (name == NULL && t->path_style)
        snprintf(path, sizeof path, "/%s", t->bucket);
    if ((size_t)snprintf(url, sizeof url, "%s%s%s%s", t->endpoint, path, r->query ? "?" : "",
                         r->query ? r->query : "") >= sizeof url)
        return TIER_BAD;
    char *qbuf = NULL; /* split in place for the signer */
    sigv4_param params[4];
    size_t np = 0;
    if (r->query && ((qbuf = strdup(r->query)) == NULL ||
                     sigv4_query_split(qbuf, params, 4, &np) != SIGV4_OK)) {
        free(qbuf);
        return TIER_ERROR;
    }

    /* the signed headers: host, the payload hash, the copy source, the metadata */
    int has_body = (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) &&
                   (x->in_len > x->in_off || x->in_fd >= 0);
    const char *payload = has_body ? "UNSIGNED-PAYLOAD" : SIGV4_EMPTY_SHA256;
    char codec_v[8] = "", size_v[24] = "", written_v[24] = "", source[3200];
    char md5_v[CKSUM_B64_SIZE], sha_v[65] = "";
    uint8_t md5[16], sha[32];
    sigv4_header hs[12];
    size_t nh = 0;
    hs[nh++] = (sigv4_header){"host", t->host};
    hs[nh++] = (sigv4_header){"x-amz-content-sha256", payload};
    if (has_body) {
        /* the store checks what arrives against its Content-MD5; an object
         * from memory (a record) carries its SHA-256, for whoever reads it */
        int whole = strcmp(method, "PUT") == 0 && r->query == NULL && x->in_fd < 0;
        if (body_digests(t, x, md5, whole ? sha : NULL) != 0 ||
            cksum_base64(md5, 16, md5_v, sizeof md5_v) != CKSUM_OK) {
            free(qbuf);
            if (!stopped_for(t))
                return TIER_LOCAL;
            snprintf(thread_error, sizeof thread_error, "not sent: cairnd is stopping");
            return TIER_ERROR;
        }
        hs[nh++] = (sigv4_header){"content-md5", md5_v};
        if (whole)
            util_hex(sha, 32, sha_v);
    } else if (r->meta && r->meta->sha256[0]) {
        snprintf(sha_v, sizeof sha_v, "%s", r->meta->sha256); /* (a copy onto itself) */
    }
    if (sha_v[0])
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-sha256", sha_v};
    if (r->copy) {
        snprintf(source, sizeof source, "/%s/%s", t->bucket, enc);
        hs[nh++] = (sigv4_header){"x-amz-copy-source", source};
        if (r->range)
            hs[nh++] = (sigv4_header){"x-amz-copy-source-range", r->range};
        if (r->if_match)
            hs[nh++] = (sigv4_header){"x-amz-copy-source-if-match", r->if_match};
        if (r->replace)
            hs[nh++] = (sigv4_header){"x-amz-metadata-directive", "REPLACE"};
    } else {
        if (r->range)
            hs[nh++] = (sigv4_header){"range", r->range};
        if (r->if_match)
            hs[nh++] = (sigv4_header){"if-match", r->if_match};
    }
    if (r->meta && r->meta->codec >= 0) {
        snprintf(codec_v, sizeof codec_v, "%s", r->meta->codec == CODEC_ZSTD ? "zstd" : "raw");
        snprintf(size_v, sizeof size_v, "%" PRIu64, r->meta->size);
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-codec", codec_v};
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-size", size_v};
    }
    if (r->meta && r->meta->written_ms) {
        snprintf(written_v, sizeof written_v, "%" PRIu64, r->meta->written_ms);
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-written", written_v};
    }
    struct curl_slist *sl = NULL;
    char line[3400];
    for (size_t i = 1; i < nh; i++) {
        snprintf(line, sizeof line, "%s: %s", hs[i].name, hs[i].value);
        sl = curl_slist_append(sl, line);
    }
    snprintf(line, sizeof line, "Host: %s", t->host);
    sl = curl_slist_append(sl, line);
    sl = curl_slist_append(sl, "Expect:");
    char *authz = NULL;
    pthread_mutex_lock(&t->keys_mu);
    if (t->access_key) {
        sigv4_request req = {method, path, np ? params : NULL, np, hs, nh, payload};
        sigv4_credentials cred = {t->access_key, t->secret_key, t->session_token, t->region, "s3"};
        char amz_date[SIGV4_AMZ_DATE_SIZE];
        int signed_ok =
            sigv4_sign_header(&req, &cred, time(NULL), amz_date, &authz, NULL) == SIGV4_OK;
        if (!signed_ok) {
            pthread_mutex_unlock(&t->keys_mu);
            curl_slist_free_all(sl);
            free(qbuf);
            return TIER_ERROR;
        }
        snprintf(line, sizeof line, "X-Amz-Date: %s", amz_date);
        sl = curl_slist_append(sl, line);
        snprintf(line, sizeof line, "Authorization: %s", authz);
        sl = curl_slist_append(sl, line);
        if (t->session_token) {
            snprintf(line, sizeof line, "X-Amz-Security-Token: %s", t->session_token);
            sl = curl_slist_append(sl, line);
        }
        free(authz);
    }
    pthread_mutex_unlock(&t->keys_mu);
    CURL *h = handle_take(t);
    if (h == NULL) {
        curl_slist_free_all(sl);
        free(qbuf);
        return TIER_LOCAL; /* no memory here */
    }

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, t->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    x->t = t;
    x->at_stop = r->at_stop;
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (t->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024); /* fewer, larger writes of a blob */
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        /* a body from read_cb, its length known: also for POST */
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        x->in_start = x->in_off;
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(x->in_len - x->in_off));
        if (strcmp(method, "POST") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    char eb[CURL_ERROR_SIZE];
    eb[0] = '\0';
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, eb); /* (handle_give's reset lets go of it) */
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(sl);
    free(qbuf);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    handle_give(t, h);
    int rc = x->write_error                 ? TIER_LOCAL
             : x->too_large || x->damaged   ? TIER_BAD
             : cc != CURLE_OK               ? TIER_ERROR
             : *http >= 200 && *http < 300  ? TIER_OK
             : *http == 404                 ? TIER_NOTFOUND
             : *http == 401 || *http == 403 ? TIER_DENIED
                                            : TIER_ERROR;
    if (rc == TIER_ERROR && *http == 416 && x->out_fd < 0 && r->range &&
        strncmp(r->range, "bytes=0-", 8) == 0) {
        /* no first byte: an object of none (a delete's key record), which
         * S3 answers so; its bytes in range are none, not a failure */
        rc = TIER_OK;
        x->out_len = 0;
    }
    /* A single PUT tells what the store's ETags are; a part's is checked
     * only once they are known to be MD5s (a part cannot be read back) */
    int single = r->query == NULL, kind = atomic_load(&t->etags), is = -1;
    if (rc == TIER_OK && has_body && strcmp(method, "PUT") == 0 && kind != ETAG_OTHER &&
        (single || kind == ETAG_MD5) && (is = etag_is(x, md5)) == 0) {
        rc = TIER_ERROR; /* stored, but not what was sent: or its ETag is no MD5 (tier_put) */
        put_damaged = 1;
        memcpy(x->md5, md5, 16);
    } else if (is == 1 && single && kind == ETAG_UNKNOWN) {
        atomic_store(&t->etags, ETAG_MD5);
    } else if (rc == TIER_OK && has_body && !single && kind == ETAG_UNKNOWN &&
               etag_is(x, md5) == 0) {
        x->suspect = 1; /* (the whole object is read back once complete: put_in_parts) */
    }
    /* (a single PUT's is noted once its read back tells: tier_put_tagged) */
    if (rc != TIER_OK && rc != TIER_LOCAL && (rc != TIER_NOTFOUND || missing_bucket(x)) &&
        !(put_damaged && single))
        note_failure(t, x, cc, eb, *http);
    if (cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_ABORTED_BY_CALLBACK)
        tier_spent(); /* a client waited a whole budget: it gets its answer now */
    return rc;
}

static long budget(const tier *t, uint64_t len)
{
    return t->timeout_ms + (long)(len / MIN_RATE) * 1000;
}

/* ---- S3's XML answers ---------------------------------------------------------- */

typedef struct xml_find {
    const char *want; /* an element's local name */
    char *out;
    size_t cap, len;
    int depth, in, found, error, overflow;
} xml_find;

static const char *local_name(const char *n)
{
    const char *c = strrchr(n, ':');
    return c ? c + 1 : n;
}

/* Parses a whole XML answer with the given handlers: 0, or -1 if it is not
 * XML (or expat has no memory). */
static int xml_parse(const uint8_t *xml, size_t len, XML_StartElementHandler start,
                     XML_EndElementHandler end, XML_CharacterDataHandler text, void *ud)
{
    XML_Parser p = XML_ParserCreate(NULL);
    if (p == NULL)
        return -1;
    XML_SetUserData(p, ud);
    XML_SetElementHandler(p, start, end);
    XML_SetCharacterDataHandler(p, text);
    int ok = XML_Parse(p, (const char *)xml, (int)len, 1) == XML_STATUS_OK;
    XML_ParserFree(p);
    return ok ? 0 : -1;
}

static void XMLCALL xf_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    xml_find *f = ud;
    const char *ln = local_name(name);
    if (f->depth++ == 0 && strcmp(ln, "Error") == 0)
        f->error = 1;
    if (!f->found && strcmp(ln, f->want) == 0)
        f->in = 1;
}

static void XMLCALL xf_end(void *ud, const XML_Char *name)
{
    xml_find *f = ud;
    f->depth--;
    if (f->in && strcmp(local_name(name), f->want) == 0) {
        f->in = 0;
        f->found = 1;
    }
}

static void XMLCALL xf_text(void *ud, const XML_Char *s, int len)
{
    xml_find *f = ud;
    if (!f->in)
        return;
    size_t n = (size_t)len;
    if (n > f->cap - 1 - f->len) {
        n = f->cap - 1 - f->len;
        f->overflow = 1; /* longer than any we expect: not to be used cut */
    }
    memcpy(f->out + f->len, s, n);
    f->len += n;
    f->out[f->len] = '\0';
}

/* The text of the first element named want in an S3 answer: 1 found, 0 not
 * there, -1 an <Error> document (S3 may answer 200 and fail in the body) or
 * not XML. */
static int xml_text(const uint8_t *xml, size_t len, const char *want, char *out, size_t cap)
{
    xml_find f = {.want = want, .out = out, .cap = cap};
    out[0] = '\0';
    int ok = xml_parse(xml, len, xf_start, xf_end, xf_text, &f) == 0;
    if (!ok || f.error || f.overflow)
        return -1;
    return f.found;
}

/* The text of the first element named want in an error's body, which may
 * be cut short: 1 found, 0 not. */
static int error_field(const char *body, size_t len, const char *want, char *out, size_t cap)
{
    xml_find f = {.want = want, .out = out, .cap = cap};
    out[0] = '\0';
    (void)xml_parse((const uint8_t *)body, len, xf_start, xf_end, xf_text, &f);
    return f.found || f.overflow;
}

/* Cuts a UTF-8 sequence that the end of s cut short (the tier's words are
 * cut to fit; what is left must still be UTF-8 in a JSON log). */
static void utf8_trim(char *s, size_t *n)
{
    size_t i = *n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--, back++;
    if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
        return; /* ASCII last, or nothing to look at */
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = (lead & 0xE0) == 0xC0   ? 2
                  : (lead & 0xF0) == 0xE0 ? 3
                  : (lead & 0xF8) == 0xF0 ? 4
                                          : 0;
    if (want != back + 1) {
        *n = i - 1;
        s[*n] = '\0';
    }
}

/* What a failed request's answer said, in one line for the log and
 * /status: "HTTP 403 SignatureDoesNotMatch: The request signature we
 * calculated does not match...", or curl's own words ("Failed to connect to
 * ... Connection refused", "SSL certificate problem: ..."), so that an
 * operator can tell a clock that is off from a wrong key from a
 * certificate. */
static void note_failure(tier *t, const xfer *x, CURLcode cc, const char *eb, long http)
{
    char *out = thread_error, code[96], msg[160]; /* (both fit in out) */
    size_t cap = sizeof thread_error;
    int bare = 0; /* an HTTP status alone: a HEAD's answer has no body */
    if (x->too_large)
        snprintf(out, cap, "an answer larger than %" PRIu64 " bytes", x->out_max);
    else if (x->damaged)
        snprintf(out, cap, "damaged: the %" PRIu64 " bytes that arrived failed their checks",
                 x->out_len);
    else if (x->garbled)
        snprintf(out, cap,
                 "damaged on the way: the body's SHA-256 is not the "
                 "x-amz-meta-cairn-sha256 it was stored with");
    else if (put_damaged && cc == CURLE_OK && http >= 200 && http < 300)
        snprintf(out, cap,
                 "damaged on the way: the stored object's ETag %s is not the MD5 of "
                 "the bytes sent",
                 x->etag);
    else if (cc == CURLE_ABORTED_BY_CALLBACK && stopped_for(t))
        snprintf(out, cap, "cut short: cairnd is stopping");
    else if (cc == CURLE_ABORTED_BY_CALLBACK && x->stall_ns)
        snprintf(out, cap, "the body stopped arriving for %" PRIu64 " s",
                 x->stall_ns / 1000000000u);
    else if (cc != CURLE_OK)
        snprintf(out, cap, "%s", eb[0] ? eb : curl_easy_strerror(cc));
    else {
        int has_code = error_field(x->errbody, x->errlen, "Code", code, sizeof code);
        int has_msg = has_code && error_field(x->errbody, x->errlen, "Message", msg, sizeof msg);
        int w = has_msg    ? snprintf(out, cap, "HTTP %ld %s: %s", http, code, msg)
                : has_code ? snprintf(out, cap, "HTTP %ld %s", http, code)
                           : snprintf(out, cap, "HTTP %ld", http);
        (void)w; /* (cut to fit) */
        bare = !has_code;
    }
    keep_failure(t, bare);
}

/* This thread's thread_error, trimmed, as the tier's last failure (a bare
 * "HTTP 403" does not replace the same status in more words). */
static void keep_failure(tier *t, int bare)
{
    char *out = thread_error;
    size_t n = strlen(out);
    utf8_trim(out, &n);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ' || out[n - 1] == '.'))
        out[--n] = '\0';
    pthread_mutex_lock(&t->err_mu);
    if (!bare || strncmp(t->last_error, out, n) != 0 || t->last_error[n] != ' ')
        memcpy(t->last_error, out, n + 1);
    t->last_error_ms = util_now_ms();
    pthread_mutex_unlock(&t->err_mu);
}

/* A 200 whose body is an S3 <Error> (a copy or a CompleteMultipartUpload
 * that failed after its answer began): TIER_ERROR, noted in S3's words. */
static int error_in_body(tier *t, xfer *x, long http)
{
    if (x->out == NULL || x->out_len == 0 || memmem(x->out, x->out_len, "<Error>", 7) == NULL)
        return TIER_OK;
    x->errlen = x->out_len < sizeof x->errbody ? x->out_len : sizeof x->errbody;
    memcpy(x->errbody, x->out, x->errlen);
    note_failure(t, x, CURLE_OK, "", http);
    return TIER_ERROR;
}

/* A 404 that is not about the object: the bucket is not there (a wrong
 * name, or it was removed), which the operator must hear of. */
static int missing_bucket(const xfer *x)
{
    char code[64];
    return x->errlen && error_field(x->errbody, x->errlen, "Code", code, sizeof code) &&
           strcmp(code, "NoSuchBucket") == 0;
}

int tier_time_left(const tier *t)
{
    return t->timeout_ms - waited_ms > 0;
}

int tier_waited_out(tier *t)
{
    if (waited_ms < t->timeout_ms || waited_ms >= LONG_MAX / 2)
        return 0; /* (time left, or spent on another reader's failure: counted there) */
    snprintf(thread_error, sizeof thread_error,
             "a read waited --tier-timeout (%ld ms) for a thread to ask the tier, which is slow "
             "or asked by many reads at once: it was answered as a miss",
             t->timeout_ms);
    keep_failure(t, 0);
    return 1;
}

void tier_spent(void)
{
    if (one_answer_now)
        waited_ms = LONG_MAX / 2;
}

size_t tier_last_failure(tier *t, char *out, size_t cap, uint64_t *when_ms)
{
    pthread_mutex_lock(&t->err_mu);
    size_t n = (size_t)snprintf(out, cap, "%s", t->last_error);
    *when_ms = t->last_error_ms;
    pthread_mutex_unlock(&t->err_mu);
    return n < cap ? n : cap - 1;
}

const char *tier_why(int status)
{
    static _Thread_local char line[TIER_ERROR_TEXT + 96];
    if (thread_error[0] && status != TIER_OK && status != TIER_LOCAL && status != TIER_LATE)
        snprintf(line, sizeof line, "%s (%s)", tier_strerror(status), thread_error);
    else
        snprintf(line, sizeof line, "%s", tier_strerror(status));
    return line;
}

/* ---- multipart: objects larger than the part size ------------------------------- */

#define PARTS_MAX 10000u /* S3's limit on parts of one upload */
#define TIER_NOTIMPL 100 /* (here only) the server has no such request: 501 */
#define PART_TRIES 3     /* a part that fails is sent again this often, then the upload fails */

/* The part size for an object of len bytes: the configured one, or larger
 * (whole MiB) when that would make more than PARTS_MAX parts. */
static uint64_t part_len(const tier *t, uint64_t len)
{
    uint64_t p = t->part_size;
    if ((len + p - 1) / p > PARTS_MAX) {
        p = (len + PARTS_MAX - 1) / PARTS_MAX;
        p = (p + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    }
    return p;
}

/* Starts a multipart upload of name with meta; its upload ID, encoded for a
 * query, into uid. */
static int mpu_start(tier *t, const char *name, const tier_meta *meta, char *uid, size_t cap)
{
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    treq r = {.method = "POST",
              .name = name,
              .query = "uploads",
              .meta = meta,
              .timeout_ms = t->timeout_ms};
    long http;
    int rc = perform(t, &r, &x, &http);
    if (http == 501)
        rc = TIER_NOTIMPL;
    char id[400];
    if (rc == TIER_OK && xml_text(x.out, x.out_len, "UploadId", id, sizeof id) != 1)
        rc = TIER_ERROR;
    if (rc == TIER_OK)
        uri_encode(id, uid, cap, 0);
    free(x.out);
    return rc;
}

/* Sends part n: len bytes from offset off of fd, or (fd < 0) copied from
 * the object itself.  Its ETag (quoted, as S3 gives it) into etag. */
static int mpu_part(tier *t, const char *name, const char *uid, unsigned n, int fd, uint64_t off,
                    uint64_t len, const char *if_match, char etag[128], int *suspect)
{
    char q[1300], range[64];
    snprintf(q, sizeof q, "partNumber=%u&uploadId=%s", n, uid);
    snprintf(range, sizeof range, "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    int rc = TIER_ERROR;
    for (int attempt = 0; attempt < PART_TRIES; attempt++) {
        if (attempt)
            usleep(200000u << attempt); /* 0.4 s, 0.8 s */
        xfer x = {.in_fd = fd, .out_fd = -1, .out_max = 1 << 20};
        treq r = {.method = "PUT", .name = name, .query = q, .timeout_ms = budget(t, len)};
        if (fd >= 0) {
            x.in_off = off;
            x.in_len = off + len;
        } else {
            r.copy = 1;
            r.range = range;
            r.if_match = if_match;
        }
        long http;
        rc = perform(t, &r, &x, &http);
        if (http == 501)
            rc = TIER_NOTIMPL; /* s3rver has no UploadPartCopy */
        if (rc == TIER_OK && r.copy)
            rc = error_in_body(t, &x, http); /* <CopyPartResult><ETag>, or an <Error> */
        if (rc == TIER_OK && r.copy && xml_text(x.out, x.out_len, "ETag", etag, 128) != 1)
            rc = TIER_ERROR;
        if (rc == TIER_OK && !r.copy) {
            if (x.etag[0]) {
                snprintf(etag, 128, "%s", x.etag);
                *suspect |= x.suspect;
            } else {
                rc = TIER_NOTIMPL; /* no ETag to complete the upload with: one PUT */
            }
        }
        free(x.out);
        if (rc != TIER_ERROR || http == 412 || stopped_for(t))
            break; /* 412: the source changed since its HEAD, trying again will not help */
    }
    return rc;
}

static int mpu_complete(tier *t, const char *name, const char *uid, char (*etags)[128], unsigned n)
{
    size_t cap = 64 + (size_t)n * 200, len = 0;
    char *body = malloc(cap);
    if (body == NULL)
        return TIER_ERROR;
    len += (size_t)snprintf(body + len, cap - len, "<CompleteMultipartUpload>");
    for (unsigned i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                                etags[i]);
    len += (size_t)snprintf(body + len, cap - len, "</CompleteMultipartUpload>");
    char q[1300];
    snprintf(q, sizeof q, "uploadId=%s", uid);
    xfer x = {
        .in_fd = -1, .in_data = (uint8_t *)body, .in_len = len, .out_fd = -1, .out_max = 1 << 20};
    /* S3 may take a while to put many parts together */
    treq r = {.method = "POST", .name = name, .query = q, .timeout_ms = 6 * t->timeout_ms};
    long http;
    int rc = perform(t, &r, &x, &http);
    char tag[128];
    if (rc == TIER_OK)
        rc = error_in_body(t, &x, http); /* answered 200, failed in the body */
    if (rc == TIER_OK && x.out_len && xml_text(x.out, x.out_len, "ETag", tag, sizeof tag) < 0)
        rc = TIER_ERROR;
    free(x.out);
    free(body);
    return rc;
}

/* Aborts an upload: 0 when it is gone (404: gone already) or the tier
 * refuses for good (a server without aborts, 501), -1 when the tier did
 * not answer, or failed (worth another try). */
static int mpu_abort(tier *t, const char *name, const char *uid)
{
    char q[1300];
    snprintf(q, sizeof q, "uploadId=%s", uid);
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    /* (also while stopping: an upload cut short is aborted, not left) */
    treq r = {
        .method = "DELETE", .name = name, .query = q, .at_stop = 1, .timeout_ms = t->timeout_ms};
    long http = 0;
    int rc = perform(t, &r, &x, &http);
    free(x.out);
    return rc == TIER_ERROR && (http == 0 || (http >= 500 && http != 501)) ? -1 : 0;
}

/* Remembers an upload whose abort failed, to abort it later. */
static void mpu_abandon(tier *t, const char *name, const char *uid)
{
    pthread_mutex_lock(&t->ab_mu);
    unsigned n = atomic_load(&t->nab);
    if (n < AB_MAX && strlen(name) < AB_NAME_CAP) {
        snprintf(t->ab[n].name, sizeof t->ab[n].name, "%s", name);
        snprintf(t->ab[n].uid, sizeof t->ab[n].uid, "%s", uid);
        atomic_store(&t->nab, n + 1);
    } else {
        log_left(name);
    }
    pthread_mutex_unlock(&t->ab_mu);
}

int tier_abort_abandoned(tier *t)
{
    if (atomic_load(&t->nab) == 0)
        return 0;
    pthread_mutex_lock(&t->ab_mu);
    unsigned n = atomic_load(&t->nab), kept = 0;
    int failed = 0;
    for (unsigned i = 0; i < n; i++) {
        /* (under the lock: another worker that comes by waits, rather than
         * aborting the same uploads twice.  One failure: the tier went away
         * again, and the rest wait for the next time) */
        if (!failed && !(failed = mpu_abort(t, t->ab[i].name, t->ab[i].uid) != 0))
            continue;
        if (kept != i)
            t->ab[kept] = t->ab[i];
        kept++;
    }
    atomic_store(&t->nab, kept);
    pthread_mutex_unlock(&t->ab_mu);
    if (kept < n)
        log_msg(LOG_INFO, "tier_uploads_aborted",
                "%u multipart uploads left by a tier that went away aborted (or refused)",
                n - kept);
    return (int)kept;
}

static int md5_piece(void *arg, const void *piece, size_t len, uint64_t written,
                     const tier_meta *meta)
{
    (void)written, (void)meta;
    EVP_DigestUpdate(arg, piece, len);
    return 0;
}

/* The MD5 of the object name as the tier has it (len bytes): 0, or -1. */
static int read_back_md5(tier *t, const char *name, uint64_t len, uint8_t md5[16])
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC), rc = -1;
    tier_meta meta;
    if (m && null >= 0 && EVP_DigestInit_ex(m, cksum_md_md5(), NULL) &&
        tier_get_stream(t, name, null, len, &meta, md5_piece, m) == TIER_OK && meta.length == len &&
        EVP_DigestFinal_ex(m, md5, NULL))
        rc = 0;
    EVP_MD_CTX_free(m);
    if (null >= 0)
        close(null);
    return rc;
}

/* An upload (len bytes whose MD5 is want) answered with an ETag that is not
 * that MD5, before the store's ETags were known to be MD5s: the object read
 * back tells whether it arrived intact (TIER_OK: the store's ETags are not
 * MD5s, learned and logged once), or damaged (TIER_ERROR, put_damaged,
 * noted: it goes again). */
static int read_back_check(tier *t, const char *name, uint64_t len, const uint8_t want[16])
{
    uint8_t back[16];
    if (read_back_md5(t, name, len, back) == 0 && memcmp(back, want, 16) == 0) {
        if (atomic_exchange(&t->etags, ETAG_OTHER) != ETAG_OTHER)
            log_msg(LOG_WARN, "tier_etags",
                    "the tier's ETags are not the MD5s of objects (%s, read back intact): "
                    "uploads are checked by their Content-MD5 alone",
                    name);
        return TIER_OK;
    }
    put_damaged = 1;
    snprintf(thread_error, sizeof thread_error,
             "damaged on the way: %s read back is not the bytes sent", name);
    keep_failure(t, 0);
    return TIER_ERROR;
}

/* Writes name in parts, from fd (fd >= 0) or from the object itself (a
 * refresh), with meta. */
static int put_in_parts(tier *t, const char *name, int fd, uint64_t len, const tier_meta *meta,
                        const char *if_match)
{
    uint64_t plen = part_len(t, len);
    unsigned n = (unsigned)((len + plen - 1) / plen);
    char(*etags)[128] = calloc(n, sizeof *etags);
    char uid[1201];
    if (etags == NULL)
        return TIER_ERROR;
    int rc = mpu_start(t, name, meta, uid, sizeof uid);
    if (rc != TIER_OK) {
        free(etags);
        return rc;
    }
    int suspect = 0;
    for (unsigned i = 0; i < n && rc == TIER_OK; i++) {
        uint64_t off = (uint64_t)i * plen;
        rc = mpu_part(t, name, uid, i + 1, fd, off, off + plen > len ? len - off : plen, if_match,
                      etags[i], &suspect);
    }
    if (rc == TIER_OK)
        rc = mpu_complete(t, name, uid, etags, n);
    if (rc == TIER_OK && suspect) { /* (complete: nothing to abort; put over) */
        xfer whole = {.in_fd = fd, .in_len = len};
        uint8_t want[16];
        rc = body_digests(t, &whole, want, NULL) != 0 ? TIER_LOCAL
                                                      : read_back_check(t, name, len, want);
        free(etags);
        return rc;
    }
    if (rc != TIER_OK) {
        char why[TIER_ERROR_TEXT]; /* (the failure's words, not the abort's) */
        memcpy(why, thread_error, sizeof why);
        if (mpu_abort(t, name, uid) != 0)
            mpu_abandon(t, name, uid); /* its parts would be stored, and billed, until then */
        memcpy(thread_error, why, sizeof why);
    }
    free(etags);
    return rc;
}

/* An ETag without its quotes (S3 quotes them; a listing and a PUT's answer
 * may not agree on that), cut to fit. */
static void etag_copy(char out[TIER_ETAG_CAP], const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n >= TIER_ETAG_CAP)
        n = TIER_ETAG_CAP - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* ---- objects ----------------------------------------------------------------------- */

int tier_put(tier *t, const char *name, int fd, const void *data, uint64_t len,
             const tier_meta *meta)
{
    return tier_put_tagged(t, name, fd, data, len, meta, NULL);
}

int tier_put_tagged(tier *t, const char *name, int fd, const void *data, uint64_t len,
                    const tier_meta *meta, char etag[TIER_ETAG_CAP])
{
    if (etag)
        etag[0] = '\0';
    if (fd >= 0 && len > t->part_size && !atomic_load(&t->no_parts)) {
        int rc = put_in_parts(t, name, fd, len, meta, NULL);
        if (rc != TIER_NOTIMPL)
            return rc;
        atomic_store(&t->no_parts, 1); /* a server without multipart uploads: one PUT */
        log_msg(LOG_WARN, "tier_no_multipart",
                "the tier does not take multipart uploads (it answered 501, or parts without "
                "an ETag); blobs go up in one PUT");
    }
    xfer x = {.in_fd = fd, .in_data = data, .in_len = len, .out_fd = -1, .out_max = 1 << 20};
    treq r = {.method = "PUT", .name = name, .meta = meta, .timeout_ms = budget(t, len)};
    long http;
    int rc = perform(t, &r, &x, &http);
    free(x.out);
    if (rc == TIER_ERROR && put_damaged) /* damaged on the way, or the store's ETags are no MD5s */
        rc = read_back_check(t, name, len, x.md5);
    if (rc == TIER_OK && etag)
        etag_copy(etag, x.etag, strlen(x.etag));
    return rc;
}

/* A HEAD; the answer's ETag as sent (quoted) into etag, if given. */
static int head(tier *t, const char *name, tier_meta *meta, char etag[128])
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 0, .meta = &m};
    long http;
    treq r = {.method = "HEAD", .name = name, .timeout_ms = t->timeout_ms};
    int rc = perform(t, &r, &x, &http);
    if (meta)
        *meta = m;
    if (etag)
        memcpy(etag, x.etag, sizeof x.etag);
    return rc;
}

int tier_head(tier *t, const char *name, tier_meta *meta)
{
    return head(t, name, meta, NULL);
}

int tier_get(tier *t, const char *name, int fd, void **data, size_t *len, uint64_t max,
             tier_meta *meta)
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1, .out_fd = fd, .out_max = max, .meta = &m};
    long http;
    treq r = {.method = "GET", .name = name, .timeout_ms = budget(t, max)};
    int rc = perform(t, &r, &x, &http);
    uint8_t want[32], got[32];
    if (rc == TIER_OK && fd < 0 && m.sha256[0] && util_unhex(m.sha256, 64, want, 32) == 0 &&
        (EVP_Digest(x.out ? x.out : (uint8_t *)"", x.out_len, got, NULL, cksum_md_sha256(), NULL) !=
             1 ||
         memcmp(got, want, 32) != 0)) {
        x.garbled = 1; /* (a record: never taken) */
        note_failure(t, &x, CURLE_OK, "", http);
        rc = TIER_BAD;
    }
    if (rc == TIER_OK && fd < 0) {
        *data = x.out;
        *len = x.out_len;
        x.out = NULL;
    } else if (fd >= 0) {
        m.length = x.out_len;
    }
    free(x.out);
    if (meta)
        *meta = m;
    return rc;
}

int tier_get_range(tier *t, const char *name, uint64_t off, uint64_t len, void **data, size_t *got)
{
    char range[64];
    snprintf(range, sizeof range, "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = len};
    treq r = {.method = "GET", .name = name, .range = range, .timeout_ms = budget(t, len)};
    long http;
    int rc = perform(t, &r, &x, &http);
    if (rc == TIER_OK && http != 206 && !(off == 0 && x.out_len <= len))
        rc = TIER_BAD; /* the whole object, not the range asked for */
    if (rc == TIER_OK) {
        *data = x.out;
        *got = x.out_len;
        x.out = NULL;
    }
    free(x.out);
    return rc;
}

int tier_get_stream(tier *t, const char *name, int fd, uint64_t max, tier_meta *meta,
                    int (*progress)(void *arg, const void *piece, size_t len, uint64_t written,
                                    const tier_meta *meta),
                    void *arg)
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1,
              .out_fd = fd,
              .out_max = max,
              .meta = &m,
              .progress = progress,
              .progress_arg = arg,
              /* a body that stalls for twice the tier timeout is resumed */
              .stall_ns = (uint64_t)t->timeout_ms * 2000000u};
    long http;
    /* one budget for the blob, resumes included */
    long whole = budget(t, max);
    uint64_t deadline = util_mono_ns() + (uint64_t)whole * 1000000u;
    treq r = {.method = "GET", .name = name, .timeout_ms = whole};
    int rc = perform(t, &r, &x, &http);
    /* An answer cut short (a connection reset, a body that stalled): the
     * rest, from where it stopped, of the same object (If-Match its ETag),
     * twice at most, within what is left of the read's budget.  Readers of
     * the blob see a pause, not a failure.  Only a 206 that starts where
     * the bytes stopped is taken. */
    uint64_t total = m.length;
    if (http == 200 && !total && m.codec == CODEC_RAW && m.size) {
        /* no Content-Length (chunked, or up to the close): a raw blob's
         * length is its body's, so a body that ended short was cut */
        total = m.size;
        if (rc == TIER_OK && x.out_len < total)
            rc = TIER_ERROR;
    }
    char range[48], etag[sizeof x.etag];
    snprintf(etag, sizeof etag, "%s", x.etag);
    int resumable = http == 200 && etag[0] && total > 0, resumed = 0;
    for (int tries = 0; tries < 2 && resumable && rc == TIER_ERROR && !x.refused && x.out_len > 0 &&
                        x.out_len < total;
         tries++) {
        /* a moment first, longer the second time: a tier that dropped the
         * connection may be restarting, and answer no sooner */
        struct timespec pause = {0, (tries ? 400 : 100) * 1000000L};
        if (util_mono_ns() + (uint64_t)pause.tv_nsec + 100000000u > deadline)
            break; /* (less than 0.1 s of the budget would be left) */
        nanosleep(&pause, NULL);
        uint64_t now = util_mono_ns();
        uint64_t had = x.out_len;
        log_msg(LOG_INFO, "tier_resume",
                "%s: cut short at %" PRIu64 " of %" PRIu64 " bytes; asking for the rest", name, had,
                total);
        snprintf(range, sizeof range, "bytes=%" PRIu64 "-", had);
        treq rest = {.method = "GET",
                     .name = name,
                     .range = range,
                     .if_match = etag,
                     .timeout_ms = (long)((deadline - now) / 1000000u)};
        x.resume_from = had;
        x.last_ns = 0; /* (the stall clock starts again with the rest's first bytes) */
        rc = perform(t, &rest, &x, &http);
        resumed = 1;
    }
    if (resumed && (x.refused || (rc == TIER_OK && x.out_len != total)))
        rc = TIER_ERROR; /* (an answer that did not continue the body: not damage) */
    m.length = x.out_len;
    if (meta)
        *meta = m;
    return rc;
}

int tier_refresh(tier *t, const char *name)
{
    /* the copy keeps the object as the tier has it: its own length and
     * metadata (another node may have stored the body otherwise) */
    tier_meta m;
    char etag[128];
    int rc = head(t, name, &m, etag);
    if (rc != TIER_OK)
        return rc;
    if (m.codec < 0 || m.length == 0)
        return TIER_NOTFOUND; /* not one of ours, or damaged: to be uploaded again */
    /* and only the object that HEAD saw: one uploaded again meanwhile
     * (stored otherwise) would get the wrong metadata; a 412 is tried again */
    const char *if_match = etag[0] ? etag : NULL;
    if (t->copy_in_parts && m.length > t->part_size && !atomic_load(&t->no_part_copy)) {
        rc = put_in_parts(t, name, -1, m.length, &m, if_match); /* gone: TIER_NOTFOUND */
        if (rc != TIER_NOTIMPL)
            return rc;
        atomic_store(&t->no_part_copy, 1); /* no UploadPartCopy there: one copy */
        log_msg(LOG_WARN, "tier_no_part_copy",
                "the tier does not copy in parts; blobs are refreshed in one copy");
    }
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    treq r = {.method = "PUT",
              .name = name,
              .meta = &m,
              .copy = 1,
              .replace = 1,
              .if_match = if_match,
              .timeout_ms = t->timeout_ms};
    long http;
    rc = perform(t, &r, &x, &http);
    /* S3 may answer a copy 200 and put its error in the body */
    if (rc == TIER_OK)
        rc = error_in_body(t, &x, http);
    if (rc == TIER_ERROR && http == 404)
        rc = TIER_NOTFOUND;
    free(x.out);
    return rc;
}

int tier_delete(tier *t, const char *name)
{
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    long http;
    treq r = {.method = "DELETE", .name = name, .timeout_ms = t->timeout_ms};
    int rc = perform(t, &r, &x, &http);
    free(x.out);
    return rc == TIER_NOTFOUND ? TIER_OK : rc;
}

/* ---- listing ------------------------------------------------------------------------ */

typedef struct list_state {
    size_t skip; /* the tier's own prefix and its slash, cut from each name */
    int (*each)(void *arg, const tier_object *o);
    void *arg;
    char text[1100]; /* the text of the element being read */
    size_t tlen;
    int in_contents, stopped, truncated, error, depth, overflow, backwards;
    int ordered; /* the store lists names in order (all but S3 Express's directory buckets) */
    char name[1100], etag[TIER_ETAG_CAP]; /* of the <Contents> being read */
    char last[1100]; /* the last name listed: S3 lists in order, so each is past it */
    uint64_t size;
    int64_t mtime;
    char token[1100]; /* NextContinuationToken */
} list_state;

static void XMLCALL ls_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    list_state *l = ud;
    const char *ln = local_name(name);
    if (l->depth++ == 0 && strcmp(ln, "Error") == 0)
        l->error = 1;
    if (strcmp(ln, "Contents") == 0) {
        l->in_contents = 1;
        l->name[0] = l->etag[0] = '\0';
        l->size = 0;
        l->mtime = 0;
    }
    l->tlen = 0;
    l->text[0] = '\0';
}

static void XMLCALL ls_text(void *ud, const XML_Char *s, int len)
{
    list_state *l = ud;
    size_t n = (size_t)len;
    if (n > sizeof l->text - 1 - l->tlen) {
        n = sizeof l->text - 1 - l->tlen;
        l->overflow = 1; /* a name or token longer than S3 makes them */
    }
    memcpy(l->text + l->tlen, s, n);
    l->tlen += n;
    l->text[l->tlen] = '\0';
}

static void XMLCALL ls_end(void *ud, const XML_Char *name)
{
    list_state *l = ud;
    const char *ln = local_name(name);
    l->depth--;
    if (strcmp(ln, "Contents") == 0) {
        l->in_contents = 0;
        tier_object o = {l->name, l->etag, l->size, l->mtime};
        if (l->ordered && l->name[0] && l->last[0] && strcmp(l->name, l->last) <= 0)
            l->backwards = 1; /* (strcmp: bytes as unsigned, S3's order) */
        else if (l->name[0])
            memcpy(l->last, l->name, strlen(l->name) + 1);
        if (!l->stopped && !l->backwards && l->name[0] && l->each(l->arg, &o) != 0)
            l->stopped = 1;
    } else if (l->in_contents && strcmp(ln, "Key") == 0) {
        if (l->tlen > l->skip)
            memcpy(l->name, l->text + l->skip, l->tlen - l->skip + 1);
    } else if (l->in_contents && strcmp(ln, "ETag") == 0) {
        etag_copy(l->etag, l->text, l->tlen);
    } else if (l->in_contents && strcmp(ln, "Size") == 0) {
        l->size = strtoull(l->text, NULL, 10);
    } else if (l->in_contents && strcmp(ln, "LastModified") == 0) {
        struct tm tm = {0}; /* 2026-11-28T18:34:25.000Z */
        const char *end = strptime(l->text, "%Y-%m-%dT%H:%M:%S", &tm);
        l->mtime = end ? (int64_t)timegm(&tm) : 0;
    } else if (strcmp(ln, "IsTruncated") == 0) {
        l->truncated = strcmp(l->text, "true") == 0;
    } else if (strcmp(ln, "NextContinuationToken") == 0) {
        snprintf(l->token, sizeof l->token, "%s", l->text);
    }
}

typedef struct by_name {
    int (*each)(void *arg, const char *name);
    void *arg;
} by_name;

static int each_by_name(void *arg, const tier_object *o)
{
    by_name *b = arg;
    return b->each(b->arg, o->name);
}

int tier_list(tier *t, const char *prefix, int (*each)(void *arg, const char *name), void *arg)
{
    return tier_list_delimited(t, prefix, NULL, each, arg);
}

int tier_list_delimited(tier *t, const char *prefix, const char *delimiter,
                        int (*each)(void *arg, const char *name), void *arg)
{
    by_name b = {each, arg};
    return tier_list_objects(t, prefix, delimiter, each_by_name, &b);
}

/* A listing's page the node cannot go on from: the tier's last failure
 * (tier_last_failure) and the log say why.  TIER_BAD. */
static int list_failed(tier *t, const char *full, const char *why)
{
    snprintf(thread_error, sizeof thread_error, "the listing of %.200s %.90s", full, why);
    keep_failure(t, 0);
    log_msg(LOG_WARN, "tier_list_failed", "%s", thread_error);
    return TIER_BAD;
}

static int list_objects(tier *t, const char *prefix, const char *delimiter, int any_order,
                        int (*each)(void *arg, const tier_object *o), void *arg)
{
    char full[1100], enc_prefix[3300], enc_token[3300], query[7000], enc_delim[16] = "";
    int n = snprintf(full, sizeof full, "%s%s%s", t->prefix, t->prefix[0] ? "/" : "", prefix);
    if (n < 0 || (size_t)n >= sizeof full)
        return TIER_BAD;
    uri_encode(full, enc_prefix, sizeof enc_prefix, 0);
    if (delimiter)
        uri_encode(delimiter, enc_delim, sizeof enc_delim, 0);
    size_t bl = strlen(t->bucket);
    list_state l = {.skip = strlen(t->prefix) + (t->prefix[0] ? 1 : 0),
                    .each = each,
                    .arg = arg,
                    .ordered =
                        !any_order && !(bl > 6 && strcmp(t->bucket + bl - 6, "--x-s3") == 0)};
    char last_token[sizeof l.token] = "";
    for (;;) {
        uri_encode(l.token, enc_token, sizeof enc_token, 0);
        /* the parameters in canonical (sorted) order */
        snprintf(query, sizeof query, "%s%s%s%s%s%slist-type=2&prefix=%s",
                 l.token[0] ? "continuation-token=" : "", l.token[0] ? enc_token : "",
                 l.token[0] ? "&" : "", delimiter ? "delimiter=" : "", enc_delim,
                 delimiter ? "&" : "", enc_prefix);
        xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 16u << 20};
        treq r = {.method = "GET", .query = query, .timeout_ms = t->timeout_ms};
        long http;
        int rc = perform(t, &r, &x, &http);
        if (rc != TIER_OK) {
            free(x.out);
            return rc == TIER_NOTFOUND ? TIER_ERROR : rc; /* no bucket: not "no keys" */
        }
        l.truncated = 0;
        l.token[0] = '\0';
        l.depth = 0;
        int ok = xml_parse(x.out, x.out_len, ls_start, ls_end, ls_text, &l) == 0;
        free(x.out);
        if (!ok || l.error)
            return list_failed(t, full, "got an answer that is not a listing (ListObjectsV2 XML)");
        if (l.overflow)
            return list_failed(t, full, "names an object or a token longer than S3 makes them");
        if (l.backwards || (l.truncated && strcmp(l.token, last_token) == 0)) {
            /* a page that names what came before, or the same token again:
             * a listing that would go round for ever */
            return list_failed(t, full,
                               "does not go forward (a name or a continuation token came again)");
        }
        if (l.stopped || !l.truncated)
            return TIER_OK;
        if (!l.token[0])
            return list_failed(t, full, "is cut short (IsTruncated) with no continuation token");
        memcpy(last_token, l.token, sizeof last_token);
    }
}

int tier_list_objects(tier *t, const char *prefix, const char *delimiter,
                      int (*each)(void *arg, const tier_object *o), void *arg)
{
    return list_objects(t, prefix, delimiter, 0, each, arg);
}

int tier_list_any_order(tier *t, const char *prefix, int (*each)(void *arg, const tier_object *o),
                        void *arg)
{
    return list_objects(t, prefix, NULL, 1, each, arg);
}

int tier_ensure_bucket(tier *t, int *made)
{
    if (made)
        *made = 0;
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    long http;
    treq r = {.method = "HEAD", .timeout_ms = t->timeout_ms};
    int rc = perform(t, &r, &x, &http);
    if (rc != TIER_NOTFOUND)
        return rc;
    char body[200];
    int n = 0;
    if (strcmp(t->region, "us-east-1") != 0 && strcmp(t->region, "auto") != 0)
        n = snprintf(body, sizeof body,
                     "<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint>"
                     "</CreateBucketConfiguration>",
                     t->region);
    xfer p = {.in_fd = -1,
              .in_data = (const uint8_t *)body,
              .in_len = (uint64_t)n,
              .out_fd = -1,
              .out_max = 1 << 20};
    /* a bucket PUT is a bucket's path: name NULL */
    treq pr = {.method = "PUT", .timeout_ms = t->timeout_ms};
    rc = perform(t, &pr, &p, &http);
    free(p.out);
    free(x.out);
    if (made)
        *made = rc == TIER_OK;
    return rc == TIER_OK || http == 409 ? TIER_OK : rc;
}
