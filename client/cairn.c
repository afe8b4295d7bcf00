/*
 * cairn.c - the command-line client: warmup, everyday use, maintenance.
 *
 * It talks to cairnd over HTTP (libcurl).  The server is --url, else
 * CAIRN_URL, else the config file's `url`, else http://127.0.0.1:8080.  S3
 * and admin requests are signed with SigV4 (common/sigv4.c) by the key in
 * --access-key/--secret-key, CAIRN_ACCESS_KEY/CAIRN_SECRET_KEY,
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the config file; native API
 * requests (/cas/, /ac/) are not signed.  The config file is --config, else
 * CAIRN_CONFIG, else ~/.config/cairn/config: "name = value" lines for url,
 * access_key and secret_key.
 *
 * Entries are named as the admin API names them (server/admin.h): BUCKET/KEY
 * for an S3 object, DIGEST or cas/DIGEST for a CAS blob, ac/KEY or
 * ac/INSTANCE/KEY for an action-cache entry; %XX escapes bytes below 0x21.
 *
 * Exit codes: 0 ok; 1 not found, or a check failed (digest, missing items);
 * 2 usage; 3 server or network error; 130 interrupted.
 */
#include <dirent.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "../common/checksum.h"
#include "../common/log.h"
#include "../common/sigv4.h"
#include "../common/util.h"
#include "../server/buf.h"
#include "../storage/index.h"

enum { EXIT_OK = 0, EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_SERVER = 3, EXIT_INTERRUPTED = 130 };

static struct {
    char url[1024];
    char access_key[256];
    char secret_key[256];
    int json;
} cfg;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cairn: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(cairn --help, or cairn COMMAND --help)\n");
    return EXIT_USAGE;
}

/* ---- items ---------------------------------------------------------------- */

/* An entry as the server names it, and where it is: a URL path (raw,
 * percent-encoded) and whether it is the S3 API's (signed) or the native one's. */
typedef struct item {
    char *name; /* the item, as given */
    char *path; /* "/cas/<hex>", "/<inst>/ac/<hex>", "/bucket/key" */
    int s3;
    char digest[65]; /* known in advance for CAS blobs, else "" */
} item;

static int pct_decode(const char *s, size_t n, buf *out)
{
    uint8_t *d = malloc(n ? n : 1);
    ssize_t dn = d ? util_pct_decode(s, n, d, n) : -1;
    if (dn > 0)
        buf_add(out, (const char *)d, (size_t)dn);
    free(d);
    return dn < 0 ? -1 : 0;
}

/* S3's URI encoding of a key: everything but unreserved characters and '/'. */
static void pct_encode_key(buf *out, const char *s, size_t n)
{
    char *e = sigv4_uri_encode(s, n, 1);
    if (e)
        buf_puts(out, e);
    free(e);
}

/* Item line -> where it lives (0), or -1 if it names nothing. */
static int item_parse(const char *line, item *it)
{
    memset(it, 0, sizeof *it);
    buf d = {0}, path = {0};
    if (pct_decode(line, strlen(line), &d) != 0 || d.len == 0) {
        free(d.data);
        return -1;
    }
    const char *s = d.data;
    if (d.len == 64 && util_is_hex64(s, 64)) {
        buf_puts(&path, "/cas/");
        buf_puts(&path, s);
        memcpy(it->digest, s, 65);
    } else if (d.len == 68 && memcmp(s, "cas/", 4) == 0 && util_is_hex64(s + 4, 64)) {
        buf_puts(&path, "/");
        buf_puts(&path, s);
        memcpy(it->digest, s + 4, 65);
    } else if (d.len > 3 && memcmp(s, "ac/", 3) == 0) {
        const char *last = strrchr(s + 3, '/');
        if (last) { /* ac/INSTANCE/KEY -> /INSTANCE/ac/KEY */
            buf_puts(&path, "/");
            pct_encode_key(&path, s + 3, (size_t)(last - s - 3));
            buf_puts(&path, "/ac/");
            pct_encode_key(&path, last + 1, strlen(last + 1));
        } else {
            buf_puts(&path, "/");
            pct_encode_key(&path, s, d.len);
        }
    } else {
        const char *slash = strchr(s, '/');
        if (slash == NULL || slash == s || slash[1] == '\0' || memchr(s, '\0', d.len) ||
            strncmp(s, "cas/", 4) == 0) {
            free(d.data);
            free(path.data);
            return -1;
        }
        buf_puts(&path, "/");
        pct_encode_key(&path, s, d.len);
        it->s3 = 1;
    }
    it->name = strdup(line);
    it->path = path.data;
    free(d.data);
    return it->name ? 0 : -1;
}

static void item_free(item *it)
{
    free(it->name);
    free(it->path);
}

/* ---- HTTP ----------------------------------------------------------------- */

typedef struct response {
    long status;
    buf body;
    int fd; /* the body goes here instead, when >= 0 */
    EVP_MD_CTX *sha;
    char digest[65]; /* x-cairn-sha256 */
    uint64_t length;
    char etag[80], modified[64], type[128];
} response;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    response *r = arg;
    size_t len = size * n;
    if (r->sha)
        EVP_DigestUpdate(r->sha, p, len);
    if (r->fd >= 0)
        return util_write_all(r->fd, p, len) == 0 ? len : 0;
    buf_add(&r->body, p, len);
    return len;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    while (*v == ' ')
        v++;
    size_t vl = (size_t)(line + len - v);
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    response *r = arg;
    size_t len = size * n;
    char cl[32] = "";
    header_value(p, len, "x-cairn-sha256", r->digest, sizeof r->digest);
    header_value(p, len, "ETag", r->etag, sizeof r->etag);
    header_value(p, len, "Last-Modified", r->modified, sizeof r->modified);
    header_value(p, len, "Content-Type", r->type, sizeof r->type);
    header_value(p, len, "Content-Length", cl, sizeof cl);
    if (cl[0])
        r->length = strtoull(cl, NULL, 10);
    return len;
}

typedef struct call {
    CURL *c;
    struct curl_slist *headers;
    char *auth;
} call;

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char d[32];
    unsigned int dl;
    EVP_Digest(data ? data : "", data ? len : 0, d, &dl, cksum_md_sha256(), NULL);
    util_hex(d, 32, hex);
}

/* Prepares a request: method, raw path, raw query ("" for none), and the
 * SHA-256 (hex) of the body it will send, for the signature (NULL: none).
 * S3 and admin requests are signed when a key is known. */
static int call_init(call *k, const char *method, const char *path, const char *query,
                     const char *payload_sha256, int sign)
{
    memset(k, 0, sizeof *k);
    char url[4096];
    size_t bl = strlen(cfg.url);
    while (bl && cfg.url[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s%s%s%s", (int)bl, cfg.url, path, query[0] ? "?" : "", query);
    k->c = curl_easy_init();
    if (k->c == NULL)
        return -1;
    curl_easy_setopt(k->c, CURLOPT_URL, url);
    curl_easy_setopt(k->c, CURLOPT_PATH_AS_IS, 1L); /* "a/../b" is a key, not a path to fold */
    curl_easy_setopt(k->c, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
    curl_easy_setopt(k->c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(k->c, CURLOPT_NOBODY, 1L);
    if (!sign || cfg.access_key[0] == '\0')
        return 0;
    /* host as curl will send it: the URL's authority */
    const char *h = strstr(cfg.url, "://");
    h = h ? h + 3 : cfg.url;
    size_t hl = strcspn(h, "/");
    char host[300];
    snprintf(host, sizeof host, "%.*s", (int)hl, h);
    char hash[65];
    if (payload_sha256)
        snprintf(hash, sizeof hash, "%s", payload_sha256);
    else
        sha256_hex(NULL, 0, hash);
    char *q = strdup(query);
    sigv4_param params[64];
    size_t np = 0;
    if (q == NULL || sigv4_query_split(q, params, 64, &np) != SIGV4_OK) {
        free(q);
        return -1;
    }
    sigv4_header hs[] = {{"host", host}, {"x-amz-content-sha256", hash}};
    sigv4_request req = {method, path, params, np, hs, 2, hash};
    sigv4_credentials cred = {cfg.access_key, cfg.secret_key, NULL, "us-east-1", "s3"};
    char date[SIGV4_AMZ_DATE_SIZE];
    int rc = sigv4_sign_header(&req, &cred, time(NULL), date, &k->auth, NULL);
    free(q);
    if (rc != SIGV4_OK)
        return -1;
    char line[4200];
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", hash);
    k->headers = curl_slist_append(k->headers, line);
    snprintf(line, sizeof line, "x-amz-date: %s", date);
    k->headers = curl_slist_append(k->headers, line);
    snprintf(line, sizeof line, "Authorization: %s", k->auth);
    k->headers = curl_slist_append(k->headers, line);
    curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, k->headers);
    return 0;
}

static void call_free(call *k)
{
    curl_easy_cleanup(k->c);
    curl_slist_free_all(k->headers);
    free(k->auth);
}

/* One request with its answer in *r (body in memory unless r->fd >= 0).
 * 0, or EXIT_SERVER when the server could not be reached. */
static int request(const char *method, const char *path, const char *query, const void *body,
                   size_t body_len, int sign, response *r)
{
    call k;
    char hash[65];
    sha256_hex(body, body_len, hash);
    if (call_init(&k, method, path, query, hash, sign) != 0) {
        fprintf(stderr, "cairn: cannot prepare the request (bad URL or key?)\n");
        return EXIT_SERVER;
    }
    curl_easy_setopt(k.c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k.c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(k.c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(k.c, CURLOPT_HEADERDATA, r);
    if (body) {
        curl_easy_setopt(k.c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(k.c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(k.c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(k.c, CURLINFO_RESPONSE_CODE, &r->status);
    call_free(&k);
    if (rc != CURLE_OK) {
        fprintf(stderr, "cairn: %s: %s\n", cfg.url, curl_easy_strerror(rc));
        return EXIT_SERVER;
    }
    return 0;
}

/* Prints the server's error for a failed answer; returns the exit code. */
static int server_said(const char *what, response *r)
{
    const char *b = r->body.data ? r->body.data : "";
    const char *m = strstr(b, "<Message>"), *e = strstr(b, "\"error\":\"");
    if (r->status == 404 && (m == NULL || strstr(b, "NoSuchKey") || strstr(b, "NoSuchBucket"))) {
        fprintf(stderr, "cairn: %s: not found\n", what);
        return EXIT_CHECK;
    }
    if (m) {
        const char *end = strstr(m, "</Message>");
        fprintf(stderr, "cairn: %s: %ld: %.*s\n", what, r->status, end ? (int)(end - m - 9) : 200,
                m + 9);
    } else if (e) {
        const char *end = strchr(e + 9, '"');
        fprintf(stderr, "cairn: %s: %ld: %.*s\n", what, r->status, end ? (int)(end - e - 9) : 200,
                e + 9);
    } else {
        fprintf(stderr, "cairn: %s: the server answered %ld\n", what, r->status);
    }
    return r->status == 404 ? EXIT_CHECK : EXIT_SERVER;
}

/* A number field of one of the admin API's flat JSON objects. */
static uint64_t json_u64(const char *json, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static void json_str(const char *json, const char *name, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", name);
    const char *p = json ? strstr(json, pat) : NULL;
    out[0] = '\0';
    if (p) {
        p += strlen(pat);
        const char *e = strchr(p, '"');
        snprintf(out, cap, "%.*s", e ? (int)(e - p) : 0, p);
    }
}

/* ---- progress --------------------------------------------------------------- */

typedef struct progress {
    int tty;
    uint64_t t0, last;
    const char *what;
} progress;

static void human(uint64_t b, char *out, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4)
        v /= 1024, i++;
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* On a terminal, a bar redrawn in place (5 times a second); elsewhere, a
 * plain line every 5 seconds.  final ends the line. */
static void progress_show(progress *p, uint64_t done, uint64_t total, uint64_t bytes, int final)
{
    uint64_t now = util_mono_ns();
    if (!final && (now - p->last < (p->tty ? 200000000ull : 5000000000ull) ||
                   (!p->tty && total && done >= total)))
        return; /* (a plain line for the end comes with final) */
    p->last = now;
    double secs = (double)(now - p->t0) / 1e9;
    char b[32], rate[32];
    human(bytes, b, sizeof b);
    human(secs > 0 ? (uint64_t)((double)bytes / secs) : 0, rate, sizeof rate);
    char eta[32] = "";
    if (done && done < total && secs > 0) {
        uint64_t left = (uint64_t)(secs * (double)(total - done) / (double)done);
        snprintf(eta, sizeof eta, " ETA %llu:%02llu", (unsigned long long)(left / 60),
                 (unsigned long long)(left % 60));
    }
    if (p->tty) {
        int w = 30, fill = total ? (int)((double)w * (double)done / (double)total) : w;
        char bar[40];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[w] = '\0';
        fprintf(stderr, "\r\033[K%s [%s] %llu/%llu items  %s  %s/s%s", p->what, bar,
                (unsigned long long)done, (unsigned long long)total, b, rate, eta);
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %llu/%llu items, %s, %s/s%s\n", p->what, (unsigned long long)done,
                (unsigned long long)total, b, rate, eta);
    }
    fflush(stderr);
}

/* ---- item lists --------------------------------------------------------------- */

typedef struct item_list {
    buf text; /* item lines, '\n'-separated */
    size_t n;
} item_list;

static int list_add_line(item_list *l, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    while (len && (*line == ' ' || *line == '\t'))
        line++, len--;
    if (len == 0 || line[0] == '#')
        return 0;
    char tmp[4096];
    item it;
    snprintf(tmp, sizeof tmp, "%.*s", (int)len, line);
    if (len >= sizeof tmp || item_parse(tmp, &it) != 0) {
        fprintf(stderr, "cairn: '%s' is not an item (BUCKET/KEY, DIGEST, cas/DIGEST, ac/KEY)\n",
                tmp);
        return -1;
    }
    item_free(&it);
    buf_add(&l->text, line, len);
    buf_add(&l->text, "\n", 1);
    l->n++;
    return 0;
}

static int list_add_text(item_list *l, const char *text, size_t n)
{
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (list_add_line(l, p, len) != 0)
            return -1;
        p = nl ? nl + 1 : end;
    }
    return 0;
}

static int list_add_file(item_list *l, const char *file)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "cairn: %s: %s\n", file, strerror(errno));
        return -1;
    }
    buf b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        buf_add(&b, buf, n);
    if (f != stdin)
        fclose(f);
    int rc = list_add_text(l, b.data ? b.data : "", b.len);
    free(b.data);
    return rc;
}

/* ListObjectsV2 through the S3 API: every key under bucket/prefix. */
typedef struct lister {
    buf text;
    char *cur; /* the element's text */
    size_t curn;
    int in;
    char key[2048], token[2048], size[32], modified[64];
    size_t keylen;
    int truncated;
    item_list *out;
    const char *bucket;
    FILE *print; /* ls: print a line per key instead */
    int json_first;
    int buckets; /* a ListBuckets answer: print each <Name> */
} lister;

static void XMLCALL ls_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    lister *ls = ud;
    ls->in = strcmp(name, "Key") == 0 || strcmp(name, "Size") == 0 || strcmp(name, "Name") == 0 ||
             strcmp(name, "LastModified") == 0 || strcmp(name, "NextContinuationToken") == 0 ||
             strcmp(name, "IsTruncated") == 0;
    ls->curn = 0;
}

static void XMLCALL ls_text(void *ud, const XML_Char *s, int len)
{
    lister *ls = ud;
    if (!ls->in)
        return;
    char *p = realloc(ls->cur, ls->curn + (size_t)len + 1);
    if (p == NULL)
        return;
    ls->cur = p;
    memcpy(p + ls->curn, s, (size_t)len);
    ls->curn += (size_t)len;
    p[ls->curn] = '\0';
}

static void XMLCALL ls_end(void *ud, const XML_Char *name)
{
    lister *ls = ud;
    const char *v = ls->in && ls->cur ? ls->cur : "";
    if (strcmp(name, "Key") == 0) {
        /* (asked for URL-encoded: a key may hold bytes XML cannot carry) */
        ssize_t n = util_pct_decode(v, strlen(v), (uint8_t *)ls->key, sizeof ls->key - 1);
        if (n < 0) /* (not URL-encoded after all: as it came) */
            n = snprintf(ls->key, sizeof ls->key, "%s", v);
        ls->keylen = (size_t)n < sizeof ls->key ? (size_t)n : sizeof ls->key - 1;
        ls->key[ls->keylen] = '\0';
    } else if (strcmp(name, "Size") == 0)
        snprintf(ls->size, sizeof ls->size, "%s", v);
    else if (strcmp(name, "LastModified") == 0)
        snprintf(ls->modified, sizeof ls->modified, "%s", v);
    else if (strcmp(name, "NextContinuationToken") == 0)
        snprintf(ls->token, sizeof ls->token, "%s", v);
    else if (strcmp(name, "IsTruncated") == 0)
        ls->truncated = strcmp(v, "true") == 0;
    else if (strcmp(name, "Name") == 0 && ls->buckets)
        fprintf(ls->print, cfg.json ? "%s\"%s\"" : "%s%s\n",
                cfg.json && ls->json_first++ ? "," : "", v);
    else if (strcmp(name, "Contents") == 0) {
        buf line = {0};
        static const char hex[] = "0123456789ABCDEF";
        buf_puts(&line, ls->bucket);
        buf_puts(&line, "/");
        for (const char *k = ls->key; k < ls->key + ls->keylen; k++) {
            unsigned char c = (unsigned char)*k; /* (a NUL too, escaped) */
            if (c < 0x21 || c == '%' || c == 0x7f) {
                char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                buf_add(&line, e, 3);
            } else {
                buf_add(&line, k, 1);
            }
        }
        char esc[8200];
        if (ls->print && cfg.json && log_json_escape(esc, sizeof esc, line.data) < sizeof esc - 8)
            fprintf(ls->print, "%s{\"item\":\"%s\",\"size\":%s,\"modified\":\"%s\"}",
                    ls->json_first++ ? ",\n" : "[\n", esc, ls->size, ls->modified);
        else if (ls->print)
            fprintf(ls->print, "%12s  %s  %s\n", ls->size, ls->modified, line.data);
        else
            list_add_line(ls->out, line.data, line.len);
        free(line.data);
    }
    ls->in = 0;
}

/* Feeds an S3 listing to the lister: 0, or EXIT_SERVER if it does not parse. */
static int ls_parse(lister *ls, const buf *body)
{
    XML_Parser xp = XML_ParserCreate(NULL);
    int rc = 0;
    XML_SetUserData(xp, ls);
    XML_SetElementHandler(xp, ls_start, ls_end);
    XML_SetCharacterDataHandler(xp, ls_text);
    if (XML_Parse(xp, body->data ? body->data : "", (int)body->len, 1) != XML_STATUS_OK) {
        fprintf(stderr, "cairn: the server's listing does not parse\n");
        rc = EXIT_SERVER;
    }
    XML_ParserFree(xp);
    return rc;
}

static int list_prefix(const char *url, const char *bucket_prefix, item_list *out, FILE *print)
{
    char saved[sizeof cfg.url];
    memcpy(saved, cfg.url, sizeof saved);
    if (url)
        snprintf(cfg.url, sizeof cfg.url, "%s", url);
    const char *slash = strchr(bucket_prefix, '/');
    char bucket[128];
    snprintf(bucket, sizeof bucket, "%.*s",
             (int)(slash ? (size_t)(slash - bucket_prefix) : strlen(bucket_prefix)), bucket_prefix);
    const char *prefix = slash ? slash + 1 : "";
    lister ls = {.out = out, .bucket = bucket, .print = print};
    int rc = 0;
    do {
        buf q = {0}, path = {0};
        if (ls.token[0]) {
            buf_puts(&q, "continuation-token=");
            char *e = curl_easy_escape(NULL, ls.token, 0);
            buf_puts(&q, e);
            curl_free(e);
            buf_puts(&q, "&");
        }
        /* keys URL-encoded: XML 1.0 cannot carry some bytes keys may hold */
        buf_puts(&q, "encoding-type=url&list-type=2");
        if (prefix[0]) {
            buf_puts(&q, "&prefix=");
            char *e = curl_easy_escape(NULL, prefix, 0);
            buf_puts(&q, e);
            curl_free(e);
        }
        buf_puts(&path, "/");
        buf_puts(&path, bucket);
        response r = {.fd = -1};
        ls.token[0] = '\0';
        ls.truncated = 0;
        rc = request("GET", path.data, q.data, NULL, 0, 1, &r);
        if (rc == 0 && r.status != 200)
            rc = server_said(bucket_prefix, &r);
        if (rc == 0)
            rc = ls_parse(&ls, &r.body);
        free(r.body.data);
        free(q.data);
        free(path.data);
    } while (rc == 0 && ls.truncated && ls.token[0]);
    if (print && cfg.json)
        fprintf(print, ls.json_first ? "\n]\n" : "[]\n");
    free(ls.cur);
    memcpy(cfg.url, saved, sizeof saved);
    return rc;
}

/* The keys under BUCKET/PREFIX that the server holds or can fetch from its
 * cold tier (written by any node of a fleet), from its admin API; a server
 * that will not say (no admin key, or an older cairnd) is asked for its S3
 * listing instead, which has only what it holds. */
static int list_keys(const char *url, const char *bucket_prefix, item_list *out)
{
    char saved[sizeof cfg.url];
    memcpy(saved, cfg.url, sizeof saved);
    if (url)
        snprintf(cfg.url, sizeof cfg.url, "%s", url);
    buf q = {0};
    buf_puts(&q, "prefix=");
    char *e = curl_easy_escape(NULL, bucket_prefix, 0);
    buf_puts(&q, e);
    curl_free(e);
    response r = {.fd = -1};
    int rc = request("GET", "/admin/keys", q.data, NULL, 0, 1, &r);
    free(q.data);
    memcpy(cfg.url, saved, sizeof saved);
    if (rc == 0 && (r.status == 401 || r.status == 403 || r.status == 404 || r.status == 405)) {
        free(r.body.data);
        return list_prefix(url, bucket_prefix, out, NULL);
    }
    if (rc == 0 && r.status != 200)
        rc = server_said(bucket_prefix, &r);
    if (rc == 0 && list_add_text(out, r.body.data ? r.body.data : "", r.body.len) != 0)
        rc = EXIT_SERVER;
    free(r.body.data);
    return rc;
}

static int list_hot(const char *url, const char *window, const char *limit, item_list *out)
{
    char saved[sizeof cfg.url];
    memcpy(saved, cfg.url, sizeof saved);
    if (url)
        snprintf(cfg.url, sizeof cfg.url, "%s", url);
    uint64_t secs;
    if (util_parse_duration(window, &secs) != 0) {
        memcpy(cfg.url, saved, sizeof saved);
        return die_usage("--window '%s' is not a duration (like 90m, 24h, 7d)", window);
    }
    char q[128];
    snprintf(q, sizeof q, "window=%llu&limit=%s", (unsigned long long)secs, limit);
    response r = {.fd = -1};
    int rc = request("GET", "/admin/hot", q, NULL, 0, 1, &r);
    if (rc == 0 && r.status != 200)
        rc = server_said("the hot set", &r);
    if (rc == 0 && list_add_text(out, r.body.data ? r.body.data : "", r.body.len) != 0)
        rc = EXIT_SERVER;
    free(r.body.data);
    memcpy(cfg.url, saved, sizeof saved);
    return rc;
}

/* ---- warmup ----------------------------------------------------------------- */

static void warmup_usage(FILE *f)
{
    fprintf(f, "Usage: cairn warmup [OPTIONS] [FILE|-]...\n"
               "\n"
               "Makes entries local and hot before jobs need them.  Items come from FILE(s) or\n"
               "standard input (one per line), from --prefix, or from --hot.\n"
               "\n"
               "By default the server pulls them from its cold tier into its local store, with\n"
               "no bytes through this client (admin key needed); with --into DIR they are\n"
               "downloaded into DIR instead, in parallel, verified by digest, skipping files\n"
               "already there.  Interrupted (Ctrl-C), it stops; run it again to resume: what\n"
               "was warmed is found local.\n"
               "\n"
               "Options:\n"
               "  --prefix BUCKET/PREFIX  every key under it, on the server or in its cold tier\n"
               "  --hot                   the hot set: entries read or written within --window\n"
               "  --window DURATION       for --hot (default 24h)\n"
               "  --limit N               for --hot: at most N entries (default 100000)\n"
               "  --from URL              list --prefix or --hot on this server instead\n"
               "  --into DIR              download into DIR instead of warming the server\n"
               "  --parallel N            requests at a time (default 8)\n"
               "  --json                  print the summary as JSON\n"
               "\n"
               "Exit: 0 all warmed or already local; 1 some missing or failed their check;\n"
               "3 server error; 130 interrupted.\n");
}

static void summary(uint64_t n, uint64_t local, uint64_t warmed, uint64_t missing, uint64_t failed,
                    uint64_t bytes, double secs, const char *state, const char *into)
{
    if (cfg.json) {
        printf("{\"items\":%llu,\"local\":%llu,\"warmed\":%llu,\"missing\":%llu,"
               "\"failed\":%llu,\"bytes\":%llu,\"seconds\":%.3f,\"state\":\"%s\"}\n",
               (unsigned long long)n, (unsigned long long)local, (unsigned long long)warmed,
               (unsigned long long)missing, (unsigned long long)failed, (unsigned long long)bytes,
               secs, state);
        return;
    }
    char b[32], rate[32];
    human(bytes, b, sizeof b);
    human(secs > 0 ? (uint64_t)((double)bytes / secs) : 0, rate, sizeof rate);
    printf("%llu items: %llu already %s, %llu warmed, %llu missing, %llu failed; %s in %.1f s "
           "(%s/s)%s\n",
           (unsigned long long)n, (unsigned long long)local, into ? "there" : "local",
           (unsigned long long)warmed, (unsigned long long)missing, (unsigned long long)failed, b,
           secs, rate,
           strcmp(state, "done") == 0 ? "" : "; stopped: run the same command again to resume");
}

/* Starts an admin job (POST path?query with body), follows it with a
 * progress display until it ends (Ctrl-C stops it), and leaves its last
 * state in *last: 0, or an exit code. */
static int run_job(const char *what, const char *path, const char *query, const char *body,
                   size_t body_len, buf *last, char state[32])
{
    response r = {.fd = -1};
    int rc = request("POST", path, query, body, body_len, 1, &r);
    if (rc != 0)
        return rc;
    if (r.status != 202) {
        rc = server_said(what, &r);
        free(r.body.data);
        return rc;
    }
    unsigned long long id = json_u64(r.body.data, "job");
    free(r.body.data);
    char jpath[64];
    snprintf(jpath, sizeof jpath, "/admin/jobs/%llu", id);
    progress p = {isatty(STDERR_FILENO), util_mono_ns(), 0, what};
    snprintf(state, 32, "running");
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        int stop = interrupted;
        response s = {.fd = -1};
        if ((rc = request(stop ? "DELETE" : "GET", jpath, "", NULL, 0, 1, &s)) != 0)
            break;
        if (s.status != 200) {
            rc = server_said(what, &s);
            free(s.body.data);
            break;
        }
        free(last->data);
        *last = s.body;
        json_str(last->data, "state", state, 32);
        int over = strcmp(state, "running") != 0;
        progress_show(&p, json_u64(last->data, "done"), json_u64(last->data, "items"),
                      json_u64(last->data, "bytes"), over);
        if (over)
            break;
        if (stop)
            interrupted = 0; /* stopped: wait for the workers to finish what they started */
    }
    return rc;
}

/* Warms the items of l, or (l NULL) every key under prefix, which the
 * server lists itself (here and in its cold tier). */
static int warmup_server(item_list *l, const char *prefix, unsigned parallel)
{
    char state[32];
    buf q = {0};
    buf_printf(&q, "parallel=%u", parallel);
    if (prefix) {
        char *e = curl_easy_escape(NULL, prefix, 0);
        buf_printf(&q, "&prefix=%s", e ? e : "");
        curl_free(e);
    }
    buf last = {0};
    int rc = run_job("warmup", "/admin/warmup", q.data, l && l->text.data ? l->text.data : "",
                     l ? l->text.len : 0, &last, state);
    free(q.data);
    if (rc == 0 && strcmp(state, "failed") == 0) {
        char why[200] = "";
        json_str(last.data, "error", why, sizeof why);
        fprintf(stderr, "cairn: warmup: %s\n", why);
        rc = EXIT_SERVER;
    } else if (rc == 0) {
        uint64_t missing = json_u64(last.data, "missing"), failed = json_u64(last.data, "failed");
        summary(json_u64(last.data, "items"), json_u64(last.data, "local"),
                json_u64(last.data, "warmed"), missing, failed, json_u64(last.data, "bytes"),
                (double)json_u64(last.data, "elapsed_ms") / 1000, state, NULL);
        rc = strcmp(state, "done") != 0 ? EXIT_INTERRUPTED
             : missing || failed        ? EXIT_CHECK
                                        : EXIT_OK;
    }
    free(last.data);
    return rc;
}

/* --into DIR: parallel downloads with curl's multi interface. */
typedef struct fetch {
    item it;
    char final[4096], tmp[4200];
    response r;
    call k;
} fetch;

static int make_parents(char *path)
{
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* DIR/<the item's name, decoded>, refusing names that climb out of DIR. */
static int target_path(const char *dir, const item *it, char *out, size_t cap)
{
    buf d = {0};
    const char *name = it->name;
    if (it->digest[0] && strncmp(name, "cas/", 4) != 0) {
        snprintf(out, cap, "%s/cas/%s", dir, it->digest);
        return 0;
    }
    if (pct_decode(name, strlen(name), &d) != 0)
        return -1;
    int bad = d.data[0] == '/' || strstr(d.data, "/../") || strncmp(d.data, "../", 3) == 0 ||
              (d.len >= 3 && strcmp(d.data + d.len - 3, "/..") == 0) || strstr(d.data, "//") ||
              memchr(d.data, '\0', d.len);
    if (!bad)
        snprintf(out, cap, "%s/%s", dir, d.data);
    free(d.data);
    return bad ? -1 : 0;
}

/* Items in the order of where they live (a CAS blob has one place however
 * it was named). */
static int item_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return strcmp(x->path, y->path);
}

static int warmup_into(item_list *l, const char *dir, unsigned parallel)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: %s: %s\n", dir, strerror(errno));
        return EXIT_SERVER;
    }
    item *items = calloc(l->n ? l->n : 1, sizeof *items);
    size_t n = 0;
    for (char *p = l->text.data, *nl; p && *p; p = nl + 1) {
        nl = strchr(p, '\n');
        *nl = '\0';
        if (item_parse(p, &items[n]) == 0)
            n++;
        *nl = '\n';
    }
    /* one download per file: the same entry named twice (DIGEST and
     * cas/DIGEST, or a repeated line) must not be written twice at once */
    qsort(items, n, sizeof *items, item_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && item_cmp(&items[u - 1], &items[i]) == 0)
            item_free(&items[i]);
        else
            items[u++] = items[i];
    }
    n = u;
    unsigned seq = 0;
    fetch *slots = calloc(parallel, sizeof *slots);
    CURLM *m = curl_multi_init();
    progress pr = {isatty(STDERR_FILENO), util_mono_ns(), 0, "download"};
    uint64_t done = 0, local = 0, warmed = 0, missing = 0, failed = 0, bytes = 0;
    size_t next = 0;
    unsigned active = 0;
    int server_down = 0;
    while ((next < n && !interrupted) || active > 0) {
        /* start transfers into free slots */
        for (unsigned s = 0; s < parallel && next < n && !interrupted; s++) {
            if (slots[s].k.c)
                continue;
            fetch *f = &slots[s];
            item *it = &items[next++];
            struct stat st;
            if (target_path(dir, it, f->final, sizeof f->final) != 0) {
                fprintf(stderr, "cairn: %s: not a safe file name; skipped\n", it->name);
                failed++, done++;
                continue;
            }
            if (stat(f->final, &st) == 0) {
                if (S_ISDIR(st.st_mode)) {
                    fprintf(stderr, "cairn: %s: %s is a folder (of other keys); not kept\n",
                            it->name, f->final);
                    failed++, done++;
                } else {
                    local++, done++; /* there already */
                }
                continue;
            }
            snprintf(f->tmp, sizeof f->tmp, "%s.cairn-partial-%d-%u", f->final, (int)getpid(),
                     seq++);
            if (make_parents(f->tmp) != 0 ||
                (f->r.fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                0644)) < 0) {
                fprintf(stderr, "cairn: %s: %s\n", f->tmp, strerror(errno));
                failed++, done++;
                continue;
            }
            f->it = *it;
            f->r.sha = EVP_MD_CTX_new();
            EVP_DigestInit_ex(f->r.sha, cksum_md_sha256(), NULL);
            if (call_init(&f->k, "GET", it->path, "", NULL, it->s3) != 0) {
                close(f->r.fd);
                unlink(f->tmp);
                EVP_MD_CTX_free(f->r.sha);
                memset(f, 0, sizeof *f);
                failed++, done++;
                continue;
            }
            curl_easy_setopt(f->k.c, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(f->k.c, CURLOPT_WRITEDATA, &f->r);
            curl_easy_setopt(f->k.c, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(f->k.c, CURLOPT_HEADERDATA, &f->r);
            curl_easy_setopt(f->k.c, CURLOPT_PRIVATE, f);
            curl_multi_add_handle(m, f->k.c);
            active++;
        }
        int running;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            fetch *f;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            unsigned char d[32];
            unsigned int dl;
            char hex[65];
            EVP_DigestFinal_ex(f->r.sha, d, &dl);
            util_hex(d, 32, hex);
            const char *want = f->it.digest[0] ? f->it.digest : f->r.digest;
            int ok = msg->data.result == CURLE_OK && status == 200 && want[0] &&
                     strcasecmp(hex, want) == 0 && close(f->r.fd) == 0;
            if (!ok && f->r.fd >= 0)
                close(f->r.fd);
            int moved = ok && rename(f->tmp, f->final) == 0;
            if (moved) {
                warmed++;
                bytes += f->r.length;
            } else {
                int err = errno;
                unlink(f->tmp);
                if (ok) { /* (a right body: its name is taken, by a folder of other keys say) */
                    fprintf(stderr, "cairn: %s: cannot put it at %s: %s; not kept\n", f->it.name,
                            f->final, strerror(err));
                    failed++;
                } else if (msg->data.result != CURLE_OK) {
                    fprintf(stderr, "cairn: %s: %s\n", f->it.name,
                            curl_easy_strerror(msg->data.result));
                    failed++;
                    server_down = msg->data.result == CURLE_COULDNT_CONNECT;
                } else if (status == 404) {
                    missing++;
                } else {
                    fprintf(stderr, "cairn: %s: %s; not kept\n", f->it.name,
                            status != 200 ? "the server refused it"
                            : want[0]     ? "the body does not match its digest"
                                          : "the server gave no digest to check it by");
                    failed++;
                }
            }
            done++;
            curl_multi_remove_handle(m, f->k.c);
            call_free(&f->k);
            EVP_MD_CTX_free(f->r.sha);
            memset(f, 0, sizeof *f);
            active--;
        }
        progress_show(&pr, done, n, bytes, 0);
        if (active)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    progress_show(&pr, done, n, bytes, 1);
    curl_multi_cleanup(m);
    free(slots);
    for (size_t i = 0; i < n; i++)
        item_free(&items[i]);
    free(items);
    double secs = (double)(util_mono_ns() - pr.t0) / 1e9;
    const char *state = interrupted ? "stopped" : "done";
    summary(n, local, warmed, missing, failed, bytes, secs, state, dir);
    return interrupted         ? EXIT_INTERRUPTED
           : server_down       ? EXIT_SERVER
           : missing || failed ? EXIT_CHECK
                               : EXIT_OK;
}

static int cmd_warmup(int argc, char **argv)
{
    item_list l = {0};
    const char *into = NULL, *from = NULL, *prefix = NULL, *window = "24h", *limit = "100000";
    int hot = 0, files = 0;
    unsigned parallel = 8;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            warmup_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--hot") == 0) {
            hot = 1;
        } else if (strcmp(a, "--json") == 0) {
            cfg.json = 1;
        } else if (strcmp(a, "--into") == 0 && v) {
            into = v, i++;
        } else if (strcmp(a, "--from") == 0 && v) {
            from = v, i++;
        } else if (strcmp(a, "--prefix") == 0 && v) {
            prefix = v, i++;
        } else if (strcmp(a, "--window") == 0 && v) {
            window = v, i++;
        } else if (strcmp(a, "--limit") == 0 && v) {
            limit = v, i++;
        } else if (strcmp(a, "--parallel") == 0 && v) {
            char *e;
            unsigned long p = strtoul(v, &e, 10);
            if (*e || p == 0 || p > 64)
                return die_usage("--parallel '%s': 1 to 64", v);
            parallel = (unsigned)p, i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            return die_usage("warmup: unknown option '%s'", a);
        } else {
            files++;
            if (list_add_file(&l, a) != 0)
                return EXIT_USAGE;
        }
    }
    int rc = 0;
    /* a prefix alone, warmed here: the server lists it in the job */
    int server_lists = prefix && !from && !into && !hot && !files;
    if (prefix && !server_lists && (rc = list_keys(from, prefix, &l)) != 0)
        return rc;
    if (hot && (rc = list_hot(from, window, limit, &l)) != 0)
        return rc;
    if (!files && !prefix && !hot) {
        if (isatty(STDIN_FILENO))
            return die_usage("%s",
                             "warmup: what?  Give a FILE, - (standard input), --prefix or --hot");
        if (list_add_file(&l, "-") != 0)
            return EXIT_USAGE;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    rc = into           ? warmup_into(&l, into, parallel)
         : server_lists ? warmup_server(NULL, prefix, parallel)
                        : warmup_server(&l, NULL, parallel);
    free(l.text.data);
    return rc;
}

/* ---- everyday commands ---------------------------------------------------------- */

static int file_sha256(int fd, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], d[32];
    unsigned int n;
    ssize_t got;
    EVP_DigestInit_ex(ctx, cksum_md_sha256(), NULL);
    while ((got = read(fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)got);
    EVP_DigestFinal_ex(ctx, d, &n);
    EVP_MD_CTX_free(ctx);
    util_hex(d, 32, hex);
    return got < 0 ? -1 : 0;
}

static size_t on_read(char *p, size_t size, size_t n, void *arg)
{
    ssize_t got = read(*(int *)arg, p, size * n);
    return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
}

/* PUT of a file: to the CAS (printing its digest), or to an S3 key. */
static int put_one(const char *file, const char *dest)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char hex[65];
    if (fd < 0 || fstat(fd, &st) != 0 || file_sha256(fd, hex) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cairn: %s: %s\n", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_CHECK;
    }
    char name[4200];
    snprintf(name, sizeof name, "%s", dest ? dest : hex);
    item it;
    if (item_parse(name, &it) != 0) {
        close(fd);
        return die_usage("'%s' is not an item (BUCKET/KEY, or cas/DIGEST)", name);
    }
    call k;
    int rc = EXIT_SERVER;
    /* an S3 PUT is signed with the body's SHA-256, which the server checks */
    if (call_init(&k, "PUT", it.path, "", hex, it.s3) == 0) {
        k.headers = curl_slist_append(k.headers, "Expect:");
        curl_easy_setopt(k.c, CURLOPT_HTTPHEADER, k.headers);
        curl_easy_setopt(k.c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(k.c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(k.c, CURLOPT_READDATA, &fd);
        curl_easy_setopt(k.c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        response r = {.fd = -1};
        curl_easy_setopt(k.c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(k.c, CURLOPT_WRITEDATA, &r);
        CURLcode cc = curl_easy_perform(k.c);
        if (cc != CURLE_OK) {
            fprintf(stderr, "cairn: %s: %s\n", cfg.url, curl_easy_strerror(cc));
        } else {
            curl_easy_getinfo(k.c, CURLINFO_RESPONSE_CODE, &r.status);
            if (r.status / 100 == 2) {
                rc = EXIT_OK;
                if (cfg.json)
                    printf("{\"item\":\"%s\",\"sha256\":\"%s\",\"size\":%lld}\n", name, hex,
                           (long long)st.st_size);
                else
                    printf("%s  %s\n", dest ? dest : hex, file);
            } else {
                rc = server_said(file, &r);
            }
        }
        free(r.body.data);
        call_free(&k);
    }
    item_free(&it);
    close(fd);
    return rc;
}

static int cmd_put(int argc, char **argv)
{
    const char *key = NULL;
    int nfiles = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("Usage: cairn put FILE...           into the content-addressed store; prints "
                   "each digest\n"
                   "       cairn put FILE --key BUCKET/KEY   as an S3 object\n");
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--json") == 0) {
            cfg.json = 1;
            continue;
        }
        nfiles++;
    }
    if (nfiles == 0 || (key && nfiles != 1))
        return die_usage("%s", "put: FILE... (or one FILE with --key BUCKET/KEY)");
    int worst = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "--json") == 0)
            continue;
        int rc = put_one(argv[i], key);
        if (rc > worst)
            worst = rc;
    }
    return worst;
}

static int cmd_get(int argc, char **argv)
{
    const char *out = NULL, *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("Usage: cairn get ITEM [-o FILE]\n"
                   "Downloads ITEM (DIGEST, BUCKET/KEY, ac/KEY) to FILE or standard output,\n"
                   "checked against its SHA-256 first: a body that does not match is not "
                   "kept.\n");
            return EXIT_OK;
        }
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (name == NULL)
            name = argv[i];
        else
            return die_usage("get: one ITEM at a time ('%s')", argv[i]);
    }
    item it;
    if (name == NULL || item_parse(name, &it) != 0)
        return die_usage("get: '%s' is not an item", name ? name : "");
    char tmp[4200];
    int fd;
    if (out) {
        snprintf(tmp, sizeof tmp, "%s.cairn-partial", out);
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
        snprintf(tmp, sizeof tmp, "/tmp/cairn-get-XXXXXX");
        fd = mkstemp(tmp);
    }
    if (fd < 0) {
        fprintf(stderr, "cairn: %s: %s\n", tmp, strerror(errno));
        item_free(&it);
        return EXIT_SERVER;
    }
    response r = {.fd = fd, .sha = EVP_MD_CTX_new()};
    EVP_DigestInit_ex(r.sha, cksum_md_sha256(), NULL);
    int rc = request("GET", it.path, "", NULL, 0, it.s3, &r);
    if (rc == 0 && r.status != 200) {
        rc = server_said(name, &r);
    } else if (rc == 0) {
        unsigned char d[32];
        unsigned int dl;
        char hex[65];
        EVP_DigestFinal_ex(r.sha, d, &dl);
        util_hex(d, 32, hex);
        const char *want = it.digest[0] ? it.digest : r.digest;
        if (want[0] && strcasecmp(hex, want) != 0) {
            fprintf(stderr, "cairn: %s: the body does not match its SHA-256; not kept\n", name);
            rc = EXIT_CHECK;
        }
    }
    EVP_MD_CTX_free(r.sha);
    if (rc == 0 && out == NULL) {
        char buf[1 << 16];
        ssize_t n;
        lseek(fd, 0, SEEK_SET);
        while ((n = read(fd, buf, sizeof buf)) > 0)
            if (util_write_all(STDOUT_FILENO, buf, (size_t)n) != 0) {
                rc = EXIT_SERVER;
                break;
            }
    }
    close(fd);
    if (rc == 0 && out && rename(tmp, out) != 0) {
        fprintf(stderr, "cairn: %s: %s\n", out, strerror(errno));
        rc = EXIT_SERVER;
    }
    if (rc != 0 || out == NULL)
        unlink(tmp);
    item_free(&it);
    return rc;
}

static int cmd_stat(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "--help") == 0) {
        printf("Usage: cairn stat ITEM...   size, digest and date of each (exit 1 if one is "
               "missing)\n");
        return EXIT_OK;
    }
    if (argc == 0)
        return die_usage("%s", "stat: ITEM...");
    int worst = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cfg.json = 1;
            continue;
        }
        item it;
        if (item_parse(argv[i], &it) != 0)
            return die_usage("stat: '%s' is not an item", argv[i]);
        response r = {.fd = -1};
        int rc = request("HEAD", it.path, "", NULL, 0, it.s3, &r);
        if (rc == 0 && r.status != 200) {
            if (r.status == 404) {
                fprintf(stderr, "cairn: %s: not found\n", argv[i]);
                rc = EXIT_CHECK;
            } else {
                rc = server_said(argv[i], &r);
            }
        } else if (rc == 0) {
            const char *digest = it.digest[0] ? it.digest : r.digest;
            if (cfg.json)
                printf("{\"item\":\"%s\",\"size\":%llu,\"sha256\":\"%s\",\"modified\":\"%s\","
                       "\"type\":\"%s\"}\n",
                       argv[i], (unsigned long long)r.length, digest, r.modified, r.type);
            else
                printf("%s\n  size      %llu\n  sha256    %s\n  modified  %s\n  type      %s\n",
                       argv[i], (unsigned long long)r.length, digest[0] ? digest : "-",
                       r.modified[0] ? r.modified : "-", r.type[0] ? r.type : "-");
        }
        if (rc > worst)
            worst = rc;
        free(r.body.data);
        item_free(&it);
    }
    return worst;
}

static int cmd_rm(int argc, char **argv)
{
    if (argc == 0 || strcmp(argv[0], "--help") == 0) {
        printf("Usage: cairn rm ITEM...   delete S3 objects or native entries\n");
        return argc ? EXIT_OK : EXIT_USAGE;
    }
    int worst = 0;
    for (int i = 0; i < argc; i++) {
        item it;
        if (item_parse(argv[i], &it) != 0)
            return die_usage("rm: '%s' is not an item", argv[i]);
        response r = {.fd = -1};
        int rc = request("DELETE", it.path, "", NULL, 0, it.s3, &r);
        if (rc == 0 && r.status / 100 != 2)
            rc = server_said(argv[i], &r);
        if (rc > worst)
            worst = rc;
        free(r.body.data);
        item_free(&it);
    }
    return worst;
}

static int cmd_ls(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "--help") == 0) {
        printf("Usage: cairn ls BUCKET[/PREFIX]   the keys, with size and date\n"
               "       cairn ls                   the buckets\n");
        return EXIT_OK;
    }
    const char *what = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            cfg.json = 1;
        else
            what = argv[i];
    }
    if (what)
        return list_prefix(NULL, what, NULL, stdout);
    response r = {.fd = -1};
    int rc = request("GET", "/", "", NULL, 0, 1, &r);
    if (rc == 0 && r.status != 200)
        rc = server_said("ListBuckets", &r);
    lister ls = {.print = stdout, .buckets = 1};
    if (rc == 0 && cfg.json)
        printf("[");
    if (rc == 0)
        rc = ls_parse(&ls, &r.body);
    if (rc == 0 && cfg.json)
        printf("]\n");
    free(ls.cur);
    free(r.body.data);
    return rc;
}

/* ---- stats: from /metrics ------------------------------------------------------- */

/* Sum of the samples of metric name whose labels contain every of labels. */
static double metric(const char *text, const char *name, const char *labels)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
            const char *sp = memchr(p, ' ', eol ? (size_t)(eol - p) : strlen(p));
            int match = 1;
            if (labels) {
                char want[256];
                snprintf(want, sizeof want, "%s", labels);
                for (char *t = strtok(want, ","); t; t = strtok(NULL, ","))
                    if (!memmem(p, (size_t)(sp - p), t, strlen(t)))
                        match = 0;
            }
            if (sp && match)
                sum += strtod(sp + 1, NULL);
        }
        p = eol ? eol + 1 : NULL;
    }
    return sum;
}

static int cmd_stats(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "--help") == 0) {
        printf("Usage: cairn stats [--json]   hit ratios, sizes, tier state, top namespaces\n");
        return EXIT_OK;
    }
    if (argc >= 1 && strcmp(argv[0], "--json") == 0)
        cfg.json = 1;
    response r = {.fd = -1};
    int rc = request("GET", "/metrics", "", NULL, 0, 0, &r);
    if (rc == 0 && r.status != 200)
        rc = server_said("/metrics", &r);
    if (rc != 0) {
        free(r.body.data);
        return rc;
    }
    const char *t = r.body.data ? r.body.data : "";
    static const char *fe[] = {"native", "s3"};
    double hits[2], misses[2], tier_hits[2];
    for (int i = 0; i < 2; i++) {
        char l[64];
        snprintf(l, sizeof l, "frontend=\"%s\"", fe[i]);
        hits[i] = metric(t, "cairn_cache_hits_total", l);
        snprintf(l, sizeof l, "frontend=\"%s\",level=\"tier\"", fe[i]);
        tier_hits[i] = metric(t, "cairn_cache_hits_total", l);
        snprintf(l, sizeof l, "frontend=\"%s\"", fe[i]);
        misses[i] = metric(t, "cairn_cache_misses_total", l);
    }
    double stored = metric(t, "cairn_store_stored_bytes", NULL),
           logical = metric(t, "cairn_store_logical_bytes", NULL),
           saved = metric(t, "cairn_store_dedup_saved_bytes", NULL),
           keys = metric(t, "cairn_store_entries", "kind=\"keys\""),
           blobs = metric(t, "cairn_store_entries", "kind=\"blobs\""),
           maxb = metric(t, "cairn_store_max_bytes", NULL),
           tier_on = metric(t, "cairn_tier_enabled", NULL),
           queue = metric(t, "cairn_tier_queue_entries", NULL),
           qbytes = metric(t, "cairn_tier_queue_bytes", NULL),
           fails = metric(t, "cairn_tier_upload_failures_total", NULL),
           evictions = metric(t, "cairn_evictions_total", NULL);
    /* top namespaces by bytes stored */
    typedef struct nsr {
        char name[80];
        double bytes, keys, hits, misses;
    } nsr;
    nsr top[256];
    int ntop = 0;
    for (const char *p = strstr(t, "\ncairn_namespace_stored_bytes{namespace=\""); p && ntop < 256;
         p = strstr(p + 1, "\ncairn_namespace_stored_bytes{namespace=\"")) {
        const char *n = p + strlen("\ncairn_namespace_stored_bytes{namespace=\"");
        const char *e = strchr(n, '"');
        if (e == NULL)
            break;
        nsr *x = &top[ntop++];
        snprintf(x->name, sizeof x->name, "%.*s", (int)(e - n), n);
        char l[128];
        snprintf(l, sizeof l, "namespace=\"%.80s\"", x->name);
        x->bytes = metric(t, "cairn_namespace_stored_bytes", l);
        x->keys = metric(t, "cairn_namespace_keys", l);
        x->hits = metric(t, "cairn_namespace_hits_total", l);
        x->misses = metric(t, "cairn_namespace_misses_total", l);
    }
    for (int i = 1; i < ntop; i++) /* by bytes, largest first */
        for (int j = i; j > 0 && top[j].bytes > top[j - 1].bytes; j--) {
            nsr tmp = top[j];
            top[j] = top[j - 1];
            top[j - 1] = tmp;
        }
    if (cfg.json) {
        printf(
            "{\"hits\":{\"native\":%.0f,\"s3\":%.0f},\"tier_hits\":{\"native\":%.0f,\"s3\":%.0f},"
            "\"misses\":{\"native\":%.0f,\"s3\":%.0f},\"stored_bytes\":%.0f,"
            "\"logical_bytes\":%.0f,\"dedup_saved_bytes\":%.0f,\"keys\":%.0f,\"blobs\":%.0f,"
            "\"max_bytes\":%.0f,\"evictions\":%.0f,\"tier\":%s,\"tier_queue\":%.0f,"
            "\"tier_queue_bytes\":%.0f,\"tier_upload_failures\":%.0f,\"namespaces\":[",
            hits[0], hits[1], tier_hits[0], tier_hits[1], misses[0], misses[1], stored, logical,
            saved, keys, blobs, maxb, evictions, tier_on ? "true" : "false", queue, qbytes, fails);
        for (int i = 0; i < ntop && i < 10; i++)
            printf("%s{\"namespace\":\"%s\",\"stored_bytes\":%.0f,\"keys\":%.0f,\"hits\":%.0f,"
                   "\"misses\":%.0f}",
                   i ? "," : "", top[i].name, top[i].bytes, top[i].keys, top[i].hits,
                   top[i].misses);
        printf("]}\n");
        free(r.body.data);
        return EXIT_OK;
    }
    char a[32], b[32], c[32], d[32];
    printf("%-10s %12s %14s %12s %10s\n", "front end", "hits", "of which tier", "misses",
           "hit ratio");
    for (int i = 0; i < 2; i++) {
        double all = hits[i] + misses[i];
        if (all == 0)
            printf("%-10s %12.0f %14.0f %12.0f %10s\n", fe[i], hits[i], tier_hits[i], misses[i],
                   "-");
        else
            printf("%-10s %12.0f %14.0f %12.0f %9.1f%%\n", fe[i], hits[i], tier_hits[i], misses[i],
                   100 * hits[i] / all);
    }
    human((uint64_t)stored, a, sizeof a);
    human((uint64_t)logical, b, sizeof b);
    human((uint64_t)saved, c, sizeof c);
    human((uint64_t)maxb, d, sizeof d);
    printf("\nstored     %s of %s (%s before compression; dedup saves %s)\n", a, d, b, c);
    printf("entries    %.0f keys, %.0f blobs; %.0f evictions since start\n", keys, blobs,
           evictions);
    if (tier_on) {
        human((uint64_t)qbytes, a, sizeof a);
        printf("tier       %.0f queued (%s), %.0f failed attempts since start\n", queue, a, fails);
    } else {
        printf("tier       none\n");
    }
    if (ntop) {
        printf("\n%-32s %12s %10s %10s %10s\n", "namespace", "stored", "keys", "hits", "misses");
        for (int i = 0; i < ntop && i < 10; i++) {
            human((uint64_t)top[i].bytes, a, sizeof a);
            printf("%-32s %12s %10.0f %10.0f %10.0f\n", top[i].name, a, top[i].keys, top[i].hits,
                   top[i].misses);
        }
    }
    free(r.body.data);
    return EXIT_OK;
}

/* ---- maintenance ------------------------------------------------------------------- */

/* POST path?query; a 504 (not yet) is asked again until deadline_s.  With a
 * deadline, query names the parameter that gets the seconds each request
 * may wait: at most 5 (what the server allows) and what the deadline has
 * left. */
static int admin_post(const char *what, const char *path, const char *query, uint64_t deadline_s)
{
    response r = {.fd = -1};
    uint64_t end = util_mono_ns() + deadline_s * 1000000000ull;
    int rc;
    for (;;) {
        char q[64];
        if (deadline_s) {
            uint64_t now = util_mono_ns(),
                     left = now < end ? (end - now + 999999999) / 1000000000 : 1;
            snprintf(q, sizeof q, "%.40s=%u", query, (unsigned)(left < 5 ? left : 5));
        }
        rc = request("POST", path, deadline_s ? q : query, "", 0, 1, &r);
        if (rc != 0 || r.status != 504 || util_mono_ns() >= end || interrupted)
            break;
        free(r.body.data);
        memset(&r, 0, sizeof r);
        r.fd = -1;
    }
    if (rc == 0 && r.status != 200)
        rc = server_said(what, &r);
    if (rc == 0) {
        const char *b = r.body.data ? r.body.data : "";
        if (cfg.json) {
            fputs(b, stdout);
        } else {
            char s[32], q[32];
            human(json_u64(b, "stored_bytes"), s, sizeof s);
            human(json_u64(b, "tier_queue_bytes"), q, sizeof q);
            printf("stored %s in %llu blobs (%llu keys); tier queue %llu (%s)\n", s,
                   (unsigned long long)json_u64(b, "blobs"),
                   (unsigned long long)json_u64(b, "keys"),
                   (unsigned long long)json_u64(b, "tier_queue"), q);
        }
    } else if (r.status == 504) {
        fprintf(stderr, "cairn: %s: the queue did not empty in time\n", what);
    }
    free(r.body.data);
    return rc;
}

static int cmd_evict(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[0], "--to") == 0) {
        uint64_t v;
        if (util_parse_size(argv[1], &v) != 0)
            return die_usage("evict: '%s' is not a size", argv[1]);
        char q[64];
        snprintf(q, sizeof q, "to=%llu", (unsigned long long)v);
        return admin_post("evict", "/admin/evict", q, 0);
    }
    printf("Usage: cairn evict --to SIZE   evict least recently used blobs (only those the "
           "tier holds, when there is one) until SIZE is stored\n");
    return argc == 1 && strcmp(argv[0], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
}

static int cmd_drain(int argc, char **argv)
{
    uint64_t timeout = 600;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (util_parse_duration(argv[i + 1], &timeout) != 0)
                return die_usage("drain: '%s' is not a duration", argv[i + 1]);
            i++;
        } else {
            printf("Usage: cairn drain [--timeout DURATION]   wait until every queued upload "
                   "has reached the cold tier (default 10m), then report\n");
            return strcmp(argv[i], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
        }
    }
    signal(SIGINT, on_sigint);
    /* the server waits a few seconds per request; ask until the deadline */
    return admin_post("drain", "/admin/drain", "timeout", timeout);
}

static int cmd_verify(int argc, char **argv)
{
    unsigned parallel = 2;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cfg.json = 1;
        } else if (strcmp(argv[i], "--parallel") == 0 && i + 1 < argc) {
            parallel = (unsigned)strtoul(argv[++i], NULL, 10);
            if (parallel == 0 || parallel > 64)
                return die_usage("%s", "verify: --parallel takes 1 to 64");
        } else {
            printf("Usage: cairn verify [--parallel N] [--json]\n"
                   "Scrubs every blob on the server: reads it whole (every frame's checksum)\n"
                   "and checks its SHA-256, while it serves.  Damaged blobs are quarantined\n"
                   "(moved to DATA/quarantine/; their keys become misses) and listed.\n"
                   "Exit 1 when one was damaged.  Admin key needed.\n");
            return strcmp(argv[i], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
        }
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    char q[64], state[32];
    snprintf(q, sizeof q, "parallel=%u", parallel);
    buf last = {0};
    int rc = run_job("verify", "/admin/verify", q, "", 0, &last, state);
    if (rc == 0) {
        const char *b = last.data ? last.data : "";
        uint64_t corrupt = json_u64(b, "corrupt"), unreadable = json_u64(b, "unreadable");
        if (cfg.json) {
            fputs(b, stdout);
        } else {
            char by[32];
            human(json_u64(b, "bytes"), by, sizeof by);
            printf("%llu blobs: %llu good, %llu damaged (quarantined), %llu gone meanwhile, "
                   "%llu unreadable; %s checked in %.1f s%s\n",
                   (unsigned long long)json_u64(b, "items"),
                   (unsigned long long)json_u64(b, "good"), (unsigned long long)corrupt,
                   (unsigned long long)json_u64(b, "gone"), (unsigned long long)unreadable, by,
                   (double)json_u64(b, "elapsed_ms") / 1000,
                   strcmp(state, "done") == 0 ? "" : "; stopped");
            const char *q2 = strstr(b, "\"quarantined\":[");
            for (const char *p = q2 ? strchr(q2, '[') : NULL; p && (p = strchr(p, '"'));) {
                const char *e = strchr(p + 1, '"');
                if (e == NULL)
                    break;
                printf("quarantined %.*s\n", (int)(e - p - 1), p + 1);
                p = e + 1;
            }
        }
        rc = strcmp(state, "done") != 0 ? EXIT_INTERRUPTED
             : corrupt                  ? EXIT_CHECK
             : unreadable               ? EXIT_SERVER
                                        : EXIT_OK;
    }
    free(last.data);
    return rc;
}

static int cmd_gc(int argc, char **argv)
{
    const char *older = "";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cfg.json = 1;
        } else if (strcmp(argv[i], "--multipart-older-than") == 0 && i + 1 < argc) {
            static char q[64];
            uint64_t s;
            if (util_parse_duration(argv[++i], &s) != 0)
                return die_usage("gc: '%s' is not a duration", argv[i]);
            snprintf(q, sizeof q, "multipart-older-than=%llu", (unsigned long long)s);
            older = q;
        } else {
            printf("Usage: cairn gc [--multipart-older-than DURATION] [--json]\n"
                   "Removes blob files the index does not know (left by a crash) and multipart\n"
                   "uploads abandoned for longer than DURATION (default 7d, as cairnd does by\n"
                   "itself every hour).  Admin key needed.\n");
            return strcmp(argv[i], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
        }
    }
    response r = {.fd = -1};
    int rc = request("POST", "/admin/gc", older, "", 0, 1, &r);
    if (rc == 0 && r.status != 200)
        rc = server_said("gc", &r);
    if (rc == 0 && cfg.json)
        fputs(r.body.data ? r.body.data : "", stdout);
    else if (rc == 0)
        printf("%llu orphan blob files removed, %llu abandoned multipart uploads removed\n",
               (unsigned long long)json_u64(r.body.data, "orphans_removed"),
               (unsigned long long)json_u64(r.body.data, "multipart_expired"));
    free(r.body.data);
    return rc;
}

/* ---- backup and restore ---------------------------------------------------------- */

/* GET path into file (via file.partial): 0, or an exit code. */
static int download(const char *path, const char *file, uint64_t *len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.partial", file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cairn: %s: %s\n", tmp, strerror(errno));
        return EXIT_SERVER;
    }
    response r = {.fd = fd};
    int rc = request("GET", path, "", NULL, 0, 1, &r);
    if (rc == 0 && r.status != 200)
        rc = server_said(path, &r);
    struct stat st;
    if (rc == 0 && (fsync(fd) != 0 || fstat(fd, &st) != 0))
        rc = EXIT_SERVER;
    close(fd);
    if (rc == 0 && rename(tmp, file) != 0)
        rc = EXIT_SERVER;
    if (rc != 0)
        unlink(tmp);
    else if (len)
        *len = (uint64_t)st.st_size;
    return rc;
}

static int backup_usage(FILE *f, int rc)
{
    fprintf(f, "Usage: cairn backup DIR [--blobs untiered|all|none]\n"
               "A hot backup of the server into DIR (new or empty): a consistent, compacted\n"
               "copy of its index (DIR/index.mdb; it holds the small blobs too), then the\n"
               "blob files that copy names (DIR/blobs/): by default those the cold tier does\n"
               "not hold (all of them without a tier).  The server goes on serving.  Admin\n"
               "key needed.  `cairn restore DIR --data NEWDIR` makes a data folder of it.\n");
    return rc;
}

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmd_backup(int argc, char **argv)
{
    const char *dir = NULL, *which = "untiered";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return backup_usage(stdout, EXIT_OK);
        if (strcmp(argv[i], "--blobs") == 0 && i + 1 < argc)
            which = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            cfg.json = 1;
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else
            return backup_usage(stderr, EXIT_USAGE);
    }
    int all = strcmp(which, "all") == 0, none = strcmp(which, "none") == 0;
    if (dir == NULL || (!all && !none && strcmp(which, "untiered") != 0))
        return backup_usage(stderr, EXIT_USAGE);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: %s: %s\n", dir, strerror(errno));
        return EXIT_SERVER;
    }
    char file[4200];
    snprintf(file, sizeof file, "%s/index.mdb", dir);
    if (access(file, F_OK) == 0) {
        fprintf(stderr, "cairn: %s holds a backup already\n", dir);
        return EXIT_USAGE;
    }
    uint64_t t0 = util_mono_ns(), index_len = 0;
    int rc = download("/admin/backup", file, &index_len);
    if (rc != 0)
        return rc;
    /* the copy is a working index: open it, and list the blob files it names */
    idx ix;
    char err[256];
    if (idx_open(&ix, dir, 1ull << 40, 0, err, sizeof err) != 0) {
        fprintf(stderr, "cairn: the index copy does not open (%s); backup removed\n", err);
        unlink(file);
        return EXIT_SERVER;
    }
    MDB_txn *t;
    MDB_cursor *c;
    buf want = {0};    /* 32-byte digests and 8-byte sizes */
    buf pending = {0}; /* digests of keys whose records the tier does not have yet */
    uint64_t nblobs = 0, tiered = 0, inl = 0;
    if (mdb_txn_begin(ix.env, NULL, MDB_RDONLY, &t) == 0) {
        /* a blob the tier holds is left to it only when every key of it is
         * there too: the tier queue of the copy says which are not */
        if (mdb_cursor_open(t, ix.tierq, &c) == 0) {
            MDB_val k, v;
            for (int g = mdb_cursor_get(c, &k, &v, MDB_FIRST); g == 0;
                 g = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                tq_rec q;
                key_rec kr;
                if (k.mv_size < 1 || ((const char *)k.mv_data)[0] != 'k' ||
                    idx_tq_decode(&v, &q) != 0 || idx_get_key(t, &ix, q.name, q.name_len, &kr) != 0)
                    continue;
                buf_add(&pending, (const char *)kr.digest, 32);
            }
            mdb_cursor_close(c);
            if (pending.len)
                qsort(pending.data, pending.len / 32, 32, cmp32);
        }
        if (mdb_cursor_open(t, ix.blobs, &c) == 0) {
            MDB_val k, v;
            for (int g = mdb_cursor_get(c, &k, &v, MDB_FIRST); g == 0;
                 g = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                blob_rec b;
                if (k.mv_size != 32 || idx_get_blob(t, &ix, k.mv_data, &b) != 0)
                    continue;
                nblobs++;
                if (b.format != BLOB_FILE) {
                    inl++;
                    continue;
                }
                int keys_pending = b.tier && pending.len &&
                                   bsearch(k.mv_data, pending.data, pending.len / 32, 32, cmp32);
                int left = b.tier && !keys_pending; /* the tier can give it all back */
                if (left)
                    tiered++;
                if (none || (left && !all))
                    continue;
                uint8_t sz[8];
                util_put_le64(sz, b.stored);
                buf_add(&want, k.mv_data, 32);
                buf_add(&want, (const char *)sz, 8);
            }
            mdb_cursor_close(c);
        }
        mdb_txn_abort(t);
    }
    idx_close(&ix);
    free(pending.data);
    size_t n = want.len / 40;
    progress pr = {isatty(STDERR_FILENO), util_mono_ns(), 0, "backup"};
    uint64_t bytes = 0, gone = 0;
    for (size_t i = 0; i < n && rc == 0 && !interrupted; i++) {
        const uint8_t *d = (const uint8_t *)want.data + 40 * i;
        char hex[65], path[128], dst[4300];
        util_hex(d, 32, hex);
        snprintf(path, sizeof path, "/admin/blob/%s", hex);
        snprintf(dst, sizeof dst, "%s/blobs/%.2s/%s", dir, hex, hex);
        uint64_t got = 0;
        if (make_parents(dst) != 0) {
            fprintf(stderr, "cairn: %s: %s\n", dst, strerror(errno));
            rc = EXIT_SERVER;
            break;
        }
        int r = download(path, dst, &got);
        if (r == EXIT_CHECK) {
            gone++; /* evicted since the copy: its record is dropped at restore */
        } else if (r != 0) {
            rc = r;
        } else if (got != util_get_le64(d + 32)) {
            fprintf(stderr, "cairn: blob %s: %llu bytes, its record says %llu\n", hex,
                    (unsigned long long)got, (unsigned long long)util_get_le64(d + 32));
            rc = EXIT_SERVER;
        }
        bytes += got;
        progress_show(&pr, i + 1, n, bytes, 0);
    }
    if (n)
        progress_show(&pr, n, n, bytes, 1);
    free(want.data);
    double secs = (double)(util_mono_ns() - t0) / 1e9;
    if (interrupted)
        rc = EXIT_INTERRUPTED;
    if (cfg.json)
        printf("{\"index_bytes\":%llu,\"blobs\":%llu,\"inline\":%llu,\"files\":%llu,"
               "\"file_bytes\":%llu,\"left_to_tier\":%llu,\"gone\":%llu,\"seconds\":%.3f}\n",
               (unsigned long long)index_len, (unsigned long long)nblobs, (unsigned long long)inl,
               (unsigned long long)(n - gone), (unsigned long long)bytes,
               (unsigned long long)(all ? 0 : tiered), (unsigned long long)gone, secs);
    else {
        char a[32], b[32];
        human(index_len, a, sizeof a);
        human(bytes, b, sizeof b);
        printf("backup in %s: index %s (%llu blobs, %llu of them inside it), %llu blob files "
               "(%s)%s, %llu gone meanwhile; %.1f s%s\n",
               dir, a, (unsigned long long)nblobs, (unsigned long long)inl,
               (unsigned long long)(n - gone), b,
               !all && tiered ? ", the rest left to the cold tier" : "", (unsigned long long)gone,
               secs, rc ? " (INCOMPLETE)" : "");
    }
    return rc;
}

/* Copies file src to dst (new). */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = in >= 0 ? open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
    char b[1 << 16];
    ssize_t n = 0;
    while (out >= 0 && (n = read(in, b, sizeof b)) > 0)
        if (util_write_all(out, b, (size_t)n) != 0) {
            n = -1;
            break;
        }
    int rc = in >= 0 && out >= 0 && n == 0 && fsync(out) == 0 ? 0 : -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

static int cmd_restore(int argc, char **argv)
{
    const char *dir = NULL, *data = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else {
            printf("Usage: cairn restore DIR --data DATA\n"
                   "Makes a data folder of a backup (DATA must be new or empty; cairnd not "
                   "running on it).\nStart cairnd on it: blobs that are not in the backup "
                   "are dropped from the index,\nand those the cold tier holds are read "
                   "through it again.\n");
            return strcmp(argv[i], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
        }
    }
    if (dir == NULL || data == NULL)
        return die_usage("%s", "restore: DIR --data DATA");
    char src[4600], dst[4600];
    snprintf(src, sizeof src, "%s/index.mdb", dir);
    if (access(src, R_OK) != 0) {
        fprintf(stderr, "cairn: %s: no backup there\n", dir);
        return EXIT_USAGE;
    }
    if (mkdir(data, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn: %s: %s\n", data, strerror(errno));
        return EXIT_SERVER;
    }
    snprintf(dst, sizeof dst, "%s/index.mdb", data);
    if (access(dst, F_OK) == 0) {
        fprintf(stderr, "cairn: %s is not empty: restore into a new folder\n", data);
        return EXIT_USAGE;
    }
    /* the marker first: a restore cut short still makes cairnd check the index
     * against the blobs that did arrive */
    char marker[4700];
    snprintf(marker, sizeof marker, "%s/RESTORED", data);
    int m = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (m < 0 || fsync(m) != 0 || close(m) != 0) {
        fprintf(stderr, "cairn: %s: %s\n", marker, strerror(errno));
        return EXIT_SERVER;
    }
    if (copy_file(src, dst) != 0) {
        fprintf(stderr, "cairn: %s: %s\n", dst, strerror(errno));
        return EXIT_SERVER;
    }
    uint64_t files = 0;
    for (int i = 0; i < 256; i++) {
        char sub[4300];
        snprintf(sub, sizeof sub, "%s/blobs/%02x", dir, i);
        DIR *d = opendir(sub);
        if (d == NULL)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!util_is_hex64(de->d_name, strlen(de->d_name)))
                continue; /* . and .., and unfinished downloads */
            snprintf(src, sizeof src, "%s/%s", sub, de->d_name);
            snprintf(dst, sizeof dst, "%s/blobs/%02x/%s", data, i, de->d_name);
            if (make_parents(dst) != 0 || copy_file(src, dst) != 0) {
                fprintf(stderr, "cairn: %s: %s\n", dst, strerror(errno));
                closedir(d);
                return EXIT_SERVER;
            }
            files++;
        }
        closedir(d);
    }
    printf("restored into %s: the index and %llu blob files; start cairnd --data %s\n", data,
           (unsigned long long)files, data);
    return EXIT_OK;
}

/* ---- main ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "Usage: cairn [--url URL] [--config FILE] [--json] COMMAND [ARGS]\n"
               "\n"
               "Warmup:\n"
               "  warmup [FILE|-]      make entries local before jobs need them (--help for "
               "more)\n"
               "Everyday use:\n"
               "  put FILE...          into the content-addressed store; prints digests\n"
               "  put FILE --key B/K   as an S3 object\n"
               "  get ITEM [-o FILE]   download, checked against its SHA-256\n"
               "  stat ITEM...         size, digest, date\n"
               "  ls [BUCKET[/PREFIX]] buckets, or keys\n"
               "  rm ITEM...           delete\n"
               "  stats                hit ratios, sizes, tier state, top namespaces\n"
               "  status               the server's /status (JSON)\n"
               "Maintenance (admin key):\n"
               "  verify               scrub every blob; quarantine and list damaged ones\n"
               "  gc                   remove orphan files and abandoned multipart uploads\n"
               "  backup DIR           a hot backup: the index, and the blob files the tier lacks\n"
               "  restore DIR --data D a data folder from a backup (offline)\n"
               "  evict --to SIZE      evict down to SIZE\n"
               "  drain                upload the tier queue, then report\n"
               "\n"
               "ITEM: BUCKET/KEY (S3), DIGEST or cas/DIGEST (CAS), ac/KEY or ac/INSTANCE/KEY.\n"
               "Server: --url, CAIRN_URL, the config file's url, or http://127.0.0.1:8080.\n"
               "Key (S3 and admin requests): --access-key/--secret-key, CAIRN_ACCESS_KEY/\n"
               "CAIRN_SECRET_KEY, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the config file\n"
               "(--config, CAIRN_CONFIG, ~/.config/cairn/config: 'name = value' lines).\n"
               "Exit codes: 0 ok, 1 not found or a failed check, 2 usage, 3 server or network "
               "error, 130 interrupted.\n");
}

static void set(char *dst, size_t cap, const char *v)
{
    if (v && *v && dst[0] == '\0')
        snprintf(dst, cap, "%s", v);
}

static int read_config(const char *file, int must)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        if (must)
            fprintf(stderr, "cairn: %s: %s\n", file, strerror(errno));
        return must ? -1 : 0;
    }
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (line[0] == '#' || eq == NULL)
            continue;
        char *k = line, *v = eq + 1;
        *eq = '\0';
        while (*k == ' ' || *k == '\t')
            k++;
        for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--)
            *e = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\r\n")] = '\0';
        if (strcmp(k, "url") == 0)
            set(cfg.url, sizeof cfg.url, v);
        else if (strcmp(k, "access_key") == 0)
            set(cfg.access_key, sizeof cfg.access_key, v);
        else if (strcmp(k, "secret_key") == 0)
            set(cfg.secret_key, sizeof cfg.secret_key, v);
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int i = 1;
    /* flags first: they win over the environment, which wins over the file */
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("cairn %s\n", CAIRN_VERSION);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            cfg.json = 1;
        } else if (strcmp(a, "--url") == 0 && v) {
            set(cfg.url, sizeof cfg.url, v), i++;
        } else if (strcmp(a, "--config") == 0 && v) {
            config = v, i++;
        } else if (strcmp(a, "--access-key") == 0 && v) {
            set(cfg.access_key, sizeof cfg.access_key, v), i++;
        } else if (strcmp(a, "--secret-key") == 0 && v) {
            set(cfg.secret_key, sizeof cfg.secret_key, v), i++;
        } else {
            return die_usage("unknown option '%s'", a);
        }
    }
    set(cfg.url, sizeof cfg.url, getenv("CAIRN_URL"));
    set(cfg.access_key, sizeof cfg.access_key, getenv("CAIRN_ACCESS_KEY"));
    set(cfg.secret_key, sizeof cfg.secret_key, getenv("CAIRN_SECRET_KEY"));
    if (cfg.access_key[0] == '\0') {
        set(cfg.access_key, sizeof cfg.access_key, getenv("AWS_ACCESS_KEY_ID"));
        set(cfg.secret_key, sizeof cfg.secret_key, getenv("AWS_SECRET_ACCESS_KEY"));
    }
    if (config == NULL)
        config = getenv("CAIRN_CONFIG");
    char home_cfg[1024];
    if (config == NULL && getenv("HOME")) {
        snprintf(home_cfg, sizeof home_cfg, "%s/.config/cairn/config", getenv("HOME"));
        if (read_config(home_cfg, 0) != 0)
            return EXIT_USAGE;
    } else if (config && read_config(config, 1) != 0) {
        return EXIT_USAGE;
    }
    set(cfg.url, sizeof cfg.url, "http://127.0.0.1:8080");
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int n = argc - i, rc;
    char **args = argv + i;
    if (strcmp(cmd, "warmup") == 0)
        rc = cmd_warmup(n, args);
    else if (strcmp(cmd, "put") == 0)
        rc = cmd_put(n, args);
    else if (strcmp(cmd, "get") == 0)
        rc = cmd_get(n, args);
    else if (strcmp(cmd, "stat") == 0 || strcmp(cmd, "head") == 0)
        rc = cmd_stat(n, args);
    else if (strcmp(cmd, "ls") == 0)
        rc = cmd_ls(n, args);
    else if (strcmp(cmd, "rm") == 0)
        rc = cmd_rm(n, args);
    else if (strcmp(cmd, "stats") == 0)
        rc = cmd_stats(n, args);
    else if (strcmp(cmd, "status") == 0) {
        response r = {.fd = -1};
        rc = request("GET", "/status", "", NULL, 0, 0, &r);
        if (rc == 0)
            fputs(r.body.data ? r.body.data : "", stdout);
        rc = rc ? rc : r.status == 200 ? EXIT_OK : EXIT_SERVER;
        free(r.body.data);
    } else if (strcmp(cmd, "evict") == 0)
        rc = cmd_evict(n, args);
    else if (strcmp(cmd, "drain") == 0)
        rc = cmd_drain(n, args);
    else if (strcmp(cmd, "verify") == 0)
        rc = cmd_verify(n, args);
    else if (strcmp(cmd, "gc") == 0)
        rc = cmd_gc(n, args);
    else if (strcmp(cmd, "backup") == 0)
        rc = cmd_backup(n, args);
    else if (strcmp(cmd, "restore") == 0)
        rc = cmd_restore(n, args);
    else
        rc = die_usage("unknown command '%s'", cmd);
    curl_global_cleanup();
    return rc;
}
