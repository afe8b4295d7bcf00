/*
 * tier.c - the cold tier's S3 client; see tier.h.
 */
#include "tier.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../common/sigv4.h"
#include "../common/util.h"
#include "codec.h"

#define MIN_RATE (1u << 20) /* bytes/s a blob transfer is given time for */

struct tier {
    char describe[512];
    char endpoint[512]; /* scheme://host[:port], with the bucket for virtual-host style */
    char host[256];     /* as sent in Host and signed */
    char bucket[64];
    char prefix[256]; /* without slashes at either end; may be empty */
    int path_style;
    char region[64];
    char *access_key, *secret_key, *session_token;
    long timeout_ms, connect_timeout_ms;
    int insecure;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static pthread_key_t curl_key;

static void curl_handle_free(void *p)
{
    curl_easy_cleanup(p);
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_key_create(&curl_key, curl_handle_free);
}

/* One handle per thread: curl keeps the connections it opened in it. */
static CURL *thread_handle(void)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *h = pthread_getspecific(curl_key);
    if (h == NULL && (h = curl_easy_init()) != NULL)
        pthread_setspecific(curl_key, h);
    else if (h)
        curl_easy_reset(h);
    return h;
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
    } else {
        goto bad_url;
    }
    t->path_style = path_style;
    snprintf(t->region, sizeof t->region, "%s", region ? region : "us-east-1");
    if (set_endpoint(t, ep, err, errlen) != 0) {
        free(t);
        return -1;
    }
    if (c->access_key && *c->access_key) {
        t->access_key = strdup(c->access_key);
        t->secret_key = strdup(c->secret_key ? c->secret_key : "");
        if (c->session_token && *c->session_token)
            t->session_token = strdup(c->session_token);
    }
    t->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 10000;
    t->connect_timeout_ms = c->connect_timeout_ms > 0 ? c->connect_timeout_ms : 5000;
    t->insecure = c->insecure;
    snprintf(t->describe, sizeof t->describe, "%s (%s, %s style, region %s)", url, ep,
             path_style ? "path" : "virtual-host", t->region);
    pthread_once(&curl_once, curl_init_once);
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

void tier_close(tier *t)
{
    if (t == NULL)
        return;
    free(t->access_key);
    if (t->secret_key) {
        memset(t->secret_key, 0, strlen(t->secret_key));
        free(t->secret_key);
    }
    free(t->session_token);
    free(t);
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
    /* response body */
    int out_fd;
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t out_max;
    int too_large;
    int write_error;
    tier_meta *meta;
    void (*progress)(void *arg, const void *piece, size_t len, uint64_t written,
                     const tier_meta *meta);
    void *progress_arg;
} xfer;

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
        if (x->progress)
            x->progress(x->progress_arg, buf, len, x->out_len, x->meta);
        return len;
    }
    if (x->out_len + len > x->out_cap) {
        size_t cap = x->out_cap ? x->out_cap : 4096;
        while (cap < x->out_len + len)
            cap *= 2;
        uint8_t *p = realloc(x->out, cap);
        if (p == NULL)
            return 0;
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
    if (x->meta == NULL)
        return len;
    char line[256];
    if (len >= sizeof line)
        return len;
    memcpy(line, buf, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = strchr(line, ':');
    if (colon == NULL)
        return len;
    *colon = '\0';
    const char *v = colon + 1;
    while (*v == ' ')
        v++;
    if (strcasecmp(line, "x-amz-meta-cairn-codec") == 0)
        x->meta->codec = strcmp(v, "zstd") == 0  ? CODEC_ZSTD
                         : strcmp(v, "raw") == 0 ? CODEC_RAW
                                                 : -1;
    else if (strcasecmp(line, "x-amz-meta-cairn-size") == 0)
        x->meta->size = strtoull(v, NULL, 10);
    else if (strcasecmp(line, "content-length") == 0)
        x->meta->length = strtoull(v, NULL, 10);
    else if (strcasecmp(line, "last-modified") == 0) {
        time_t tm;
        if (sigv4_parse_http_date(v, &tm) == SIGV4_OK)
            x->meta->mtime = (int64_t)tm;
    }
    return len;
}

/* S3's URI encoding of an object name: everything but unreserved and '/'. */
static void encode_path(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

/* Runs method on an object name (NULL: the bucket itself).  Returns a tier
 * status; *http gets the HTTP status (0 if none came). */
static int perform(tier *t, const char *method, const char *name, xfer *x,
                   const tier_meta *put_meta, int self_copy, long timeout_ms, long *http)
{
    CURL *h = thread_handle();
    if (h == NULL)
        return TIER_ERROR;
    char objkey[1024], path[3200], url[4096];
    if (name)
        snprintf(objkey, sizeof objkey, "%s%s%s", t->prefix, t->prefix[0] ? "/" : "", name);
    else
        objkey[0] = '\0';
    char enc[3072];
    encode_path(objkey, enc, sizeof enc);
    if (t->path_style)
        snprintf(path, sizeof path, "/%s/%s", t->bucket, enc);
    else
        snprintf(path, sizeof path, "/%s", enc);
    if (name == NULL && t->path_style)
        snprintf(path, sizeof path, "/%s", t->bucket);
    snprintf(url, sizeof url, "%s%s", t->endpoint, path);

    /* the signed headers: host, the payload hash, the metadata */
    const char *payload = strcmp(method, "PUT") == 0 && (x->in_len > 0 || x->in_fd >= 0)
                              ? "UNSIGNED-PAYLOAD"
                              : SIGV4_EMPTY_SHA256;
    char codec_v[8] = "", size_v[24] = "", source[3200];
    sigv4_header hs[7];
    size_t nh = 0;
    hs[nh++] = (sigv4_header){"host", t->host};
    hs[nh++] = (sigv4_header){"x-amz-content-sha256", payload};
    if (self_copy) {
        snprintf(source, sizeof source, "/%s/%s", t->bucket, enc);
        hs[nh++] = (sigv4_header){"x-amz-copy-source", source};
        hs[nh++] = (sigv4_header){"x-amz-metadata-directive", "REPLACE"};
    }
    if (put_meta && put_meta->codec >= 0) {
        snprintf(codec_v, sizeof codec_v, "%s", put_meta->codec == CODEC_ZSTD ? "zstd" : "raw");
        snprintf(size_v, sizeof size_v, "%" PRIu64, put_meta->size);
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-codec", codec_v};
        hs[nh++] = (sigv4_header){"x-amz-meta-cairn-size", size_v};
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
    if (t->access_key) {
        sigv4_request req = {method, path, NULL, 0, hs, nh, payload};
        sigv4_credentials cred = {t->access_key, t->secret_key, t->session_token, t->region, "s3"};
        char amz_date[SIGV4_AMZ_DATE_SIZE];
        if (sigv4_sign_header(&req, &cred, time(NULL), amz_date, &authz, NULL) != SIGV4_OK) {
            curl_slist_free_all(sl);
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

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, t->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
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
    } else if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->in_len);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(sl);
    *http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    if (x->too_large)
        return TIER_BAD;
    if (cc != CURLE_OK)
        return TIER_ERROR;
    if (*http >= 200 && *http < 300)
        return TIER_OK;
    if (*http == 404)
        return TIER_NOTFOUND;
    if (*http == 401 || *http == 403)
        return TIER_DENIED;
    return TIER_ERROR;
}

static long budget(const tier *t, uint64_t len)
{
    return t->timeout_ms + (long)(len / MIN_RATE) * 1000;
}

int tier_put(tier *t, const char *name, int fd, const void *data, uint64_t len,
             const tier_meta *meta)
{
    xfer x = {.in_fd = fd, .in_data = data, .in_len = len, .out_fd = -1, .out_max = 1 << 20};
    long http;
    int rc = perform(t, "PUT", name, &x, meta, 0, budget(t, len), &http);
    free(x.out);
    return rc;
}

int tier_head(tier *t, const char *name, tier_meta *meta)
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 0, .meta = &m};
    long http;
    int rc = perform(t, "HEAD", name, &x, NULL, 0, t->timeout_ms, &http);
    if (meta)
        *meta = m;
    return rc;
}

int tier_get(tier *t, const char *name, int fd, void **data, size_t *len, uint64_t max,
             tier_meta *meta)
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1, .out_fd = fd, .out_max = max, .meta = &m};
    long http;
    int rc = perform(t, "GET", name, &x, NULL, 0, budget(t, max), &http);
    if (rc == TIER_OK && x.write_error)
        rc = TIER_ERROR;
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

int tier_get_stream(tier *t, const char *name, int fd, uint64_t max, tier_meta *meta,
                    void (*progress)(void *arg, const void *piece, size_t len, uint64_t written,
                                     const tier_meta *meta),
                    void *arg)
{
    tier_meta m = {.codec = -1};
    xfer x = {.in_fd = -1,
              .out_fd = fd,
              .out_max = max,
              .meta = &m,
              .progress = progress,
              .progress_arg = arg};
    long http;
    int rc = perform(t, "GET", name, &x, NULL, 0, budget(t, max), &http);
    if (rc == TIER_OK && x.write_error)
        rc = TIER_ERROR;
    m.length = x.out_len;
    if (meta)
        *meta = m;
    return rc;
}

int tier_refresh(tier *t, const char *name, const tier_meta *meta)
{
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    long http;
    int rc = perform(t, "PUT", name, &x, meta, 1, t->timeout_ms, &http);
    /* S3 may answer a copy 200 and put its error in the body */
    if (rc == TIER_OK && x.out && x.out_len && memmem(x.out, x.out_len, "<Error>", 7) != NULL)
        rc = TIER_ERROR;
    if (rc == TIER_ERROR && http == 404)
        rc = TIER_NOTFOUND;
    free(x.out);
    return rc;
}

int tier_delete(tier *t, const char *name)
{
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    long http;
    int rc = perform(t, "DELETE", name, &x, NULL, 0, t->timeout_ms, &http);
    free(x.out);
    return rc == TIER_NOTFOUND ? TIER_OK : rc;
}

int tier_ensure_bucket(tier *t)
{
    xfer x = {.in_fd = -1, .out_fd = -1, .out_max = 1 << 20};
    long http;
    int rc = perform(t, "HEAD", NULL, &x, NULL, 0, t->timeout_ms, &http);
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
    rc = perform(t, "PUT", NULL, &p, NULL, 0, t->timeout_ms, &http);
    free(p.out);
    free(x.out);
    return rc == TIER_OK || http == 409 ? TIER_OK : rc;
}
