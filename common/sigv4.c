/* sigv4.c -- AWS Signature Version 4 and 2, for S3.
 *
 * Design
 * ------
 * A signature is an HMAC over a canonical form of the request. Both sides
 * must build exactly the same bytes, so everything here is about building
 * those bytes from what was actually on the wire:
 *
 *   canonical request   method, URI, query, headers, signed header list and
 *                       payload hash, one per line (sigv4_canonical_request)
 *   string to sign      algorithm, timestamp, scope, SHA-256 of the above
 *   signing key         HMAC chain "AWS4"+secret -> date -> region ->
 *                       service -> "aws4_request" (sigv4_derive_key)
 *   signature           hex HMAC-SHA256(signing key, string to sign)
 *
 * S3 rules, not generic SigV4 ones: the path is decoded once and encoded once
 * (never normalized: "//", "." and ".." stay), because that is what S3 does
 * and what S3 clients sign. Query names and values are decoded ('+' is a
 * space, as in HTML forms and as botocore puts it on the wire) and encoded
 * again with '/' encoded too. Decoding a malformed escape ("%zz") keeps the
 * '%' as a literal byte, as URL decoders do.
 *
 * The verifier works on what was received, never on what it thinks a client
 * should have sent: the SignedHeaders list is used verbatim and in its own
 * order, header values are the received ones (trimmed, inner whitespace
 * folded, repeats joined with ','). A signed header that is absent counts as
 * empty; the signature decides. Signatures are compared with CRYPTO_memcmp.
 *
 * Verification is split so that a server can look the secret up (and cache
 * the signing key, valid for a whole day) between parsing and computing, and
 * so that every reason to refuse has its own SIGV4_ERR_* code: parsing
 * (sigv4_parse_auth), checks that need no secret (sigv4_check), and the
 * signature itself (sigv4_verify_signature_key).
 *
 * Memory: canonical strings are built in a small growable buffer (strbuf)
 * whose out-of-memory state is sticky, so that building code stays linear and
 * checks once at the end. Parsed authentication lives in fixed-size fields of
 * sigv4_auth: anything longer than those limits is malformed.
 *
 * Crypto is OpenSSL libcrypto only: EVP_Digest / EVP_MD_CTX for SHA-256,
 * EVP_MAC for HMAC-SHA256 (a keyed context kept per thread), HMAC() for
 * HMAC-SHA1, EVP_EncodeBlock for base64,
 * CRYPTO_memcmp for comparisons, OPENSSL_cleanse for key material. */

#include "sigv4.h"
#include "checksum.h"
#include "util.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Small ASCII helpers (locale independent) ----------------------------- */

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Case-insensitive equality of a NUL-terminated string and len bytes. */
static int name_eq(const char *s, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)name[i]))
            return 0;
    }
    return s[len] == '\0';
}

static int has_prefix_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        if (*s == '\0' || ascii_lower((unsigned char)*s) != ascii_lower((unsigned char)*prefix))
            return 0;
    }
    return 1;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- Growable string buffer ------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len;
    size_t cap;
    int oom; /* sticky: set on the first failed allocation */
} strbuf;

static void sb_add(strbuf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_addc(strbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* Hand the buffer's string to *out (an empty string when nothing was added). */
static int sb_finish(strbuf *b, char **out)
{
    if (!b->oom && b->p == NULL)
        sb_add(b, "", 0);
    if (b->oom) {
        free(b->p);
        *out = NULL;
        return SIGV4_ERR_NOMEM;
    }
    *out = b->p;
    return SIGV4_OK;
}

/* ---- Percent-decoding and encoding ------------------------------------------ */

/* The next decoded byte of *pp, or -1 at the end. A '%' not followed by two
 * hex digits is a literal '%'. */
static int next_decoded(const char **pp, int plus_is_space)
{
    const char *p = *pp;

    if (*p == '\0')
        return -1;
    if (p[0] == '%' && util_hexval((unsigned char)p[1]) >= 0 &&
        util_hexval((unsigned char)p[2]) >= 0) {
        *pp = p + 3;
        return util_hexval((unsigned char)p[1]) * 16 + util_hexval((unsigned char)p[2]);
    }
    *pp = p + 1;
    if (*p == '+' && plus_is_space)
        return ' ';
    return (unsigned char)*p;
}

static int is_unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static void encode_byte(strbuf *b, int c, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    char esc[3];

    if (is_unreserved(c) || (c == '/' && keep_slash)) {
        sb_addc(b, (char)c);
        return;
    }
    esc[0] = '%';
    esc[1] = digits[(c >> 4) & 15];
    esc[2] = digits[c & 15];
    sb_add(b, esc, 3);
}

/* Decode raw once and append it encoded once. */
static void reencode(strbuf *b, const char *raw, int plus_is_space, int keep_slash)
{
    int c;

    while ((c = next_decoded(&raw, plus_is_space)) >= 0)
        encode_byte(b, c, keep_slash);
}

static void decode_append(strbuf *b, const char *raw, int plus_is_space)
{
    int c;

    while ((c = next_decoded(&raw, plus_is_space)) >= 0)
        sb_addc(b, (char)c);
}

/* Decode raw into out[size]; -1 when too long or when it decodes to a NUL. */
static int decode_into(const char *raw, char *out, size_t size)
{
    size_t n = 0;
    int c;

    while ((c = next_decoded(&raw, 1)) >= 0) {
        if (c == 0 || n + 1 >= size)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

/* Does raw (a query name) decode to plain? */
static int raw_equals(const char *raw, const char *plain)
{
    int c;

    while ((c = next_decoded(&raw, 1)) >= 0) {
        if (*plain == '\0' || (unsigned char)*plain != c)
            return 0;
        plain++;
    }
    return *plain == '\0';
}

char *sigv4_uri_encode(const char *s, size_t len, int keep_slash)
{
    strbuf b = {0};
    char *out;
    size_t i;

    for (i = 0; i < len; i++)
        encode_byte(&b, (unsigned char)s[i], keep_slash);
    if (sb_finish(&b, &out) != SIGV4_OK)
        return NULL;
    return out;
}

int sigv4_query_split(char *query, sigv4_param *params, size_t max, size_t *n)
{
    char *p = query;

    *n = 0;
    while (p != NULL && *p != '\0') {
        char *end = strchr(p, '&');
        char *eq;

        if (end != NULL)
            *end = '\0';
        if (*p != '\0') {
            if (*n == max)
                return SIGV4_ERR_INVALID_ARG;
            eq = strchr(p, '=');
            params[*n].name = p;
            params[*n].value = NULL;
            if (eq != NULL) {
                *eq = '\0';
                params[*n].value = eq + 1;
            }
            (*n)++;
        }
        p = end ? end + 1 : NULL;
    }
    return SIGV4_OK;
}

/* ---- Request lookups ---------------------------------------------------------- */

static const char *find_header(const sigv4_request *req, const char *name)
{
    size_t i, len = strlen(name);

    for (i = 0; i < req->nheaders; i++) {
        if (name_eq(req->headers[i].name, name, len))
            return req->headers[i].value ? req->headers[i].value : "";
    }
    return NULL;
}

static size_t count_headers(const sigv4_request *req, const char *name)
{
    size_t i, n = 0, len = strlen(name);

    for (i = 0; i < req->nheaders; i++)
        n += name_eq(req->headers[i].name, name, len);
    return n;
}

static const sigv4_param *find_param(const sigv4_request *req, const char *name)
{
    size_t i;

    for (i = 0; i < req->nparams; i++) {
        if (raw_equals(req->params[i].name, name))
            return &req->params[i];
    }
    return NULL;
}

/* The decoded value of the query parameter name: 1 found, 0 absent, -1 when
 * repeated, too long or holding a NUL. */
static int get_param(const sigv4_request *req, const char *name, char *out, size_t size)
{
    const sigv4_param *found = NULL;
    size_t i;

    for (i = 0; i < req->nparams; i++) {
        if (!raw_equals(req->params[i].name, name))
            continue;
        if (found != NULL)
            return -1;
        found = &req->params[i];
    }
    if (found == NULL)
        return 0;
    if (decode_into(found->value ? found->value : "", out, size) < 0)
        return -1;
    return 1;
}

/* Is name (any case) an element of the ';' list? */
static int list_has(const char *list, const char *name)
{
    size_t nlen = strlen(name);

    while (*list) {
        const char *end = strchr(list, ';');
        size_t len = end ? (size_t)(end - list) : strlen(list);

        if (len == nlen && name_eq(name, list, len))
            return 1;
        if (end == NULL)
            break;
        list = end + 1;
    }
    return 0;
}

/* ---- Canonical request ------------------------------------------------------- */

int sigv4_canonical_uri(const char *raw_path, char **out)
{
    strbuf b = {0};

    if (raw_path == NULL || raw_path[0] == '\0')
        sb_addc(&b, '/');
    else
        reencode(&b, raw_path, 0, 1);
    return sb_finish(&b, out);
}

typedef struct query_entry {
    char *s;         /* "name=value", both encoded */
    size_t name_len; /* length of the name part */
} query_entry;

static int query_entry_cmp(const void *a, const void *b)
{
    const query_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = memcmp(x->s, y->s, n);

    if (r != 0)
        return r;
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    return strcmp(x->s + x->name_len + 1, y->s + y->name_len + 1);
}

static void query_entries_free(query_entry *e, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(e[i].s);
    free(e);
}

int sigv4_canonical_query(const sigv4_request *req, int exclude_signature, char **out)
{
    query_entry *e;
    strbuf b = {0};
    size_t i, n = 0;

    *out = NULL;
    e = calloc(req->nparams ? req->nparams : 1, sizeof(*e));
    if (e == NULL)
        return SIGV4_ERR_NOMEM;
    for (i = 0; i < req->nparams; i++) {
        const sigv4_param *p = &req->params[i];
        strbuf one = {0};

        if (exclude_signature && raw_equals(p->name, "X-Amz-Signature"))
            continue;
        reencode(&one, p->name, 1, 0);
        e[n].name_len = one.len;
        sb_addc(&one, '=');
        reencode(&one, p->value ? p->value : "", 1, 0);
        if (sb_finish(&one, &e[n].s) != SIGV4_OK) {
            query_entries_free(e, n);
            return SIGV4_ERR_NOMEM;
        }
        n++;
    }
    qsort(e, n, sizeof(*e), query_entry_cmp);
    for (i = 0; i < n; i++) {
        if (i > 0)
            sb_addc(&b, '&');
        sb_adds(&b, e[i].s);
    }
    query_entries_free(e, n);
    return sb_finish(&b, out);
}

/* Append a header value trimmed; with fold, inner whitespace runs become one
 * space. */
static void add_header_value(strbuf *b, const char *v, int fold)
{
    const char *end = v + strlen(v);

    while (v < end && is_space((unsigned char)*v))
        v++;
    while (end > v && is_space((unsigned char)end[-1]))
        end--;
    /* copy runs of non-space at once; with fold, each run of spaces is one */
    while (v < end) {
        const char *run = v;

        while (v < end && !(fold && is_space((unsigned char)*v)))
            v++;
        sb_add(b, run, (size_t)(v - run));
        if (v < end) {
            sb_addc(b, ' ');
            while (v < end && is_space((unsigned char)*v))
                v++;
        }
    }
}

/* "name:value\n" for one signed header: every received value, in order,
 * joined with ','. */
static void add_canonical_header(strbuf *b, const sigv4_request *req, const char *name, size_t len)
{
    size_t i;
    int first = 1;

    sb_add(b, name, len);
    sb_addc(b, ':');
    for (i = 0; i < req->nheaders; i++) {
        if (!name_eq(req->headers[i].name, name, len))
            continue;
        if (!first)
            sb_addc(b, ',');
        add_header_value(b, req->headers[i].value ? req->headers[i].value : "", 1);
        first = 0;
    }
    sb_addc(b, '\n');
}

/* Every element of the SignedHeaders list must be a non-empty run of visible
 * ASCII other than ';'. */
static int signed_headers_valid(const char *list)
{
    size_t len = 0;

    if (*list == '\0')
        return 0;
    for (; *list; list++) {
        unsigned char c = (unsigned char)*list;

        if (c == ';') {
            if (len == 0)
                return 0;
            len = 0;
        } else if (c <= 0x20 || c >= 0x7f) {
            return 0;
        } else {
            len++;
        }
    }
    return len > 0;
}

int sigv4_canonical_request(const sigv4_request *req, const char *signed_headers,
                            const char *payload_hash, int exclude_signature, char **out)
{
    strbuf b = {0};
    const char *p = signed_headers;
    char *part;
    int rc;

    *out = NULL;
    if (req->method == NULL || payload_hash == NULL || !signed_headers_valid(signed_headers))
        return SIGV4_ERR_INVALID_ARG;
    sb_adds(&b, req->method);
    sb_addc(&b, '\n');

    rc = sigv4_canonical_uri(req->path, &part);
    if (rc != SIGV4_OK)
        goto fail;
    sb_adds(&b, part);
    sb_addc(&b, '\n');
    free(part);

    rc = sigv4_canonical_query(req, exclude_signature, &part);
    if (rc != SIGV4_OK)
        goto fail;
    sb_adds(&b, part);
    sb_addc(&b, '\n');
    free(part);

    for (;;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        add_canonical_header(&b, req, p, len);
        if (end == NULL)
            break;
        p = end + 1;
    }
    sb_addc(&b, '\n');
    sb_adds(&b, signed_headers);
    sb_addc(&b, '\n');
    sb_adds(&b, payload_hash);
    return sb_finish(&b, out);

fail:
    free(b.p);
    return rc;
}

int sigv4_scope(const char *date, const char *region, const char *service, char *out)
{
    int n = snprintf(out, SIGV4_SCOPE_SIZE, "%s/%s/%s/aws4_request", date, region, service);

    if (n < 0 || n >= SIGV4_SCOPE_SIZE || strlen(date) != 8)
        return SIGV4_ERR_INVALID_ARG;
    return SIGV4_OK;
}

/* ---- Hashes, keys, signatures -------------------------------------------------- */

/* OpenSSL 3 looks an algorithm up by name on every EVP_sha256() use and
 * builds a new HMAC context on every HMAC() call: about 3 us of a 4 KiB GET's
 * budget.  So the digest is fetched once (cksum_md_sha256), and each thread
 * keeps one keyed HMAC context, re-keyed only when the key changes (a server
 * signs with the same derived key all day). */
static EVP_MAC *hmac_alg;
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static pthread_key_t hmac_key;

typedef struct hmac_cache {
    EVP_MAC_CTX *ctx;
    unsigned char key[32];
    int keyed; /* ctx holds key: only derived 32-byte keys are kept, never a secret */
} hmac_cache;

static void hmac_cache_free(void *p)
{
    hmac_cache *c = p;
    EVP_MAC_CTX_free(c->ctx);
    free(c);
}

static void crypto_init(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    pthread_key_create(&hmac_key, hmac_cache_free);
}

static int sha256_hex(const void *data, size_t len, char out[SIGV4_SIG_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, cksum_md_sha256(), NULL) || mdlen != 32)
        return SIGV4_ERR_NOMEM;
    hex_encode(md, 32, out);
    return SIGV4_OK;
}

void sigv4_thread_done(void)
{
    pthread_once(&crypto_once, crypto_init);
    hmac_cache *c = pthread_getspecific(hmac_key);
    if (c != NULL) {
        pthread_setspecific(hmac_key, NULL);
        hmac_cache_free(c);
    }
}

static hmac_cache *thread_hmac(void)
{
    pthread_once(&crypto_once, crypto_init);
    if (hmac_alg == NULL)
        return NULL;
    hmac_cache *c = pthread_getspecific(hmac_key);
    if (c == NULL && (c = calloc(1, sizeof *c)) != NULL) {
        if ((c->ctx = EVP_MAC_CTX_new(hmac_alg)) == NULL || pthread_setspecific(hmac_key, c) != 0) {
            hmac_cache_free(c);
            return NULL;
        }
    }
    return c;
}

static int hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       unsigned char out[32])
{
    hmac_cache *c = thread_hmac();
    size_t outlen = 0;
    int ok;

    if (c == NULL)
        return SIGV4_ERR_NOMEM;
    if (c->keyed && keylen == sizeof c->key && memcmp(c->key, key, keylen) == 0) {
        ok = EVP_MAC_init(c->ctx, NULL, 0, NULL);
    } else {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        ok = EVP_MAC_init(c->ctx, key, keylen, params);
        c->keyed = ok && keylen == sizeof c->key;
        if (c->keyed)
            memcpy(c->key, key, keylen);
    }
    if (!ok || !EVP_MAC_update(c->ctx, data, len) || !EVP_MAC_final(c->ctx, out, &outlen, 32) ||
        outlen != 32) {
        c->keyed = 0;
        return SIGV4_ERR_NOMEM;
    }
    return SIGV4_OK;
}

int sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical_request,
                         char **out)
{
    char hash[SIGV4_SIG_SIZE];
    strbuf b = {0};
    int rc;

    *out = NULL;
    rc = sha256_hex(canonical_request, strlen(canonical_request), hash);
    if (rc != SIGV4_OK)
        return rc;
    sb_adds(&b, SIGV4_ALGORITHM "\n");
    sb_adds(&b, amz_date);
    sb_addc(&b, '\n');
    sb_adds(&b, scope);
    sb_addc(&b, '\n');
    sb_adds(&b, hash);
    return sb_finish(&b, out);
}

int sigv4_derive_key(const char *secret, const char *date, const char *region, const char *service,
                     unsigned char key[SIGV4_KEY_SIZE])
{
    const char *steps[4];
    unsigned char k[32];
    strbuf seed = {0};
    int i, rc;

    steps[0] = date;
    steps[1] = region;
    steps[2] = service;
    steps[3] = "aws4_request";
    sb_adds(&seed, "AWS4");
    sb_adds(&seed, secret);
    if (seed.oom)
        return SIGV4_ERR_NOMEM;
    rc = hmac_sha256(seed.p, seed.len, steps[0], strlen(steps[0]), k);
    OPENSSL_cleanse(seed.p, seed.len);
    free(seed.p);
    for (i = 1; i < 4 && rc == SIGV4_OK; i++)
        rc = hmac_sha256(k, sizeof(k), steps[i], strlen(steps[i]), k);
    if (rc == SIGV4_OK)
        memcpy(key, k, SIGV4_KEY_SIZE);
    OPENSSL_cleanse(k, sizeof(k));
    return rc;
}

int sigv4_signature(const unsigned char key[SIGV4_KEY_SIZE], const char *string_to_sign,
                    char out[SIGV4_SIG_SIZE])
{
    unsigned char mac[32];
    int rc = hmac_sha256(key, SIGV4_KEY_SIZE, string_to_sign, strlen(string_to_sign), mac);

    if (rc == SIGV4_OK)
        hex_encode(mac, sizeof(mac), out);
    return rc;
}

/* Constant-time comparison of a received signature with the expected one. */
static int signature_matches(const char *expected, const char *received, size_t len)
{
    size_t n = strlen(expected);

    return len == n && CRYPTO_memcmp(expected, received, n) == 0;
}

sigv4_payload_kind sigv4_payload_kind_of(const char *value)
{
    size_t i;

    if (value == NULL)
        return SIGV4_PAYLOAD_INVALID;
    if (strcmp(value, SIGV4_UNSIGNED_PAYLOAD) == 0)
        return SIGV4_PAYLOAD_UNSIGNED;
    if (strcmp(value, SIGV4_STREAMING_PAYLOAD) == 0)
        return SIGV4_PAYLOAD_STREAMING;
    if (strcmp(value, SIGV4_STREAMING_PAYLOAD_TRAILER) == 0)
        return SIGV4_PAYLOAD_STREAMING_TRAILER;
    if (strcmp(value, SIGV4_STREAMING_UNSIGNED_TRAILER) == 0)
        return SIGV4_PAYLOAD_STREAMING_UNSIGNED;
    for (i = 0; i < 64; i++) {
        if (util_hexval((unsigned char)value[i]) < 0)
            return SIGV4_PAYLOAD_INVALID;
    }
    return value[64] == '\0' ? SIGV4_PAYLOAD_HEX : SIGV4_PAYLOAD_INVALID;
}

int sigv4_payload_hash(const sigv4_request *req, sigv4_auth_kind kind, const char **hash)
{
    const sigv4_param *p;
    const char *v;

    *hash = req->payload_hash;
    if (*hash != NULL)
        return SIGV4_OK;
    if (kind == SIGV4_AUTH_V4_QUERY) {
        p = find_param(req, "X-Amz-Content-Sha256");
        *hash = (p != NULL && p->value != NULL) ? p->value : SIGV4_UNSIGNED_PAYLOAD;
        return SIGV4_OK;
    }
    v = find_header(req, "x-amz-content-sha256");
    if (v == NULL)
        return SIGV4_ERR_MISSING_CONTENT_SHA256;
    if (sigv4_payload_kind_of(v) == SIGV4_PAYLOAD_INVALID)
        return SIGV4_ERR_BAD_CONTENT_SHA256;
    *hash = v;
    return SIGV4_OK;
}

void sigv4_trace_free(sigv4_trace *trace)
{
    if (trace == NULL)
        return;
    free(trace->canonical_request);
    free(trace->string_to_sign);
    trace->canonical_request = NULL;
    trace->string_to_sign = NULL;
}

/* Store what was signed into trace, or free it. Takes ownership. */
static void trace_keep(sigv4_trace *trace, char *canonical, char *sts)
{
    if (trace == NULL) {
        free(canonical);
        free(sts);
        return;
    }
    sigv4_trace_free(trace);
    trace->canonical_request = canonical;
    trace->string_to_sign = sts;
}

/* Canonical request, string to sign and signature in one go. */
static int sign_canonical(const sigv4_request *req, const char *signed_headers,
                          const char *payload_hash, int exclude_signature, const char *amz_date,
                          const char *scope, const unsigned char key[SIGV4_KEY_SIZE],
                          char sig[SIGV4_SIG_SIZE], sigv4_trace *trace)
{
    char *canonical = NULL, *sts = NULL;
    int rc;

    rc = sigv4_canonical_request(req, signed_headers, payload_hash, exclude_signature, &canonical);
    if (rc == SIGV4_OK)
        rc = sigv4_string_to_sign(amz_date, scope, canonical, &sts);
    if (rc == SIGV4_OK)
        rc = sigv4_signature(key, sts, sig);
    trace_keep(trace, canonical, sts);
    return rc;
}

/* ---- Dates ----------------------------------------------------------------------- */

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const day_names[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(long long y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return days[m - 1] + (m == 2 && leap);
}

static int make_time(int y, int mo, int d, int h, int mi, int s, time_t *t)
{
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || s > 59 || h < 0 || mi < 0 || s < 0)
        return SIGV4_ERR_MISSING_DATE;
    *t = (time_t)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s);
    return SIGV4_OK;
}

/* n digits at s as a number, or -1. */
static int read_digits(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int sigv4_parse_amz_date(const char *s, time_t *t)
{
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return SIGV4_ERR_MISSING_DATE;
    return make_time(read_digits(s, 4), read_digits(s + 4, 2), read_digits(s + 6, 2),
                     read_digits(s + 9, 2), read_digits(s + 11, 2), read_digits(s + 13, 2), t);
}

/* snprintf into a scratch buffer first: the compiler cannot know that
 * gmtime_r() keeps every field in range. */
static int copy_formatted(char *out, size_t size, const char *tmp, int n)
{
    if (n < 0 || (size_t)n >= size)
        return SIGV4_ERR_INVALID_ARG;
    memcpy(out, tmp, (size_t)n + 1);
    return SIGV4_OK;
}

int sigv4_format_amz_date(time_t t, char out[SIGV4_AMZ_DATE_SIZE])
{
    struct tm tm;
    char tmp[96];
    int n;

    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return SIGV4_ERR_INVALID_ARG;
    n = snprintf(tmp, sizeof(tmp), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return copy_formatted(out, SIGV4_AMZ_DATE_SIZE, tmp, n);
}

/* Writes v as n decimal digits. */
static void put_digits(char *p, int v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* By arithmetic, not gmtime_r and snprintf: every S3 answer about an object
 * carries one (Last-Modified), and the C library's way costs a time-zone
 * lookup and a format parse each time. */
int sigv4_format_http_date(time_t t, char out[SIGV4_HTTP_DATE_SIZE])
{
    long long days = (long long)t / 86400, secs = (long long)t % 86400;

    if (t < 0 || days > 2932896) /* 9999-12-31 */
        return SIGV4_ERR_INVALID_ARG;
    /* civil_from_days (H. Hinnant), the inverse of days_from_civil */
    long long z = days + 719468, era = z / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int y = (int)(yoe + era * 400 + (m <= 2));

    memcpy(out, day_names[(days + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    memcpy(out + 3, ", ", 2);
    put_digits(out + 5, d, 2);
    out[7] = ' ';
    memcpy(out + 8, month_names[m - 1], 3);
    out[11] = ' ';
    put_digits(out + 12, y, 4);
    out[16] = ' ';
    put_digits(out + 17, (int)(secs / 3600), 2);
    out[19] = ':';
    put_digits(out + 20, (int)(secs / 60 % 60), 2);
    out[22] = ':';
    put_digits(out + 23, (int)(secs % 60), 2);
    memcpy(out + 25, " GMT", 5);
    return SIGV4_OK;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Zone of an HTTP date: seconds east of UTC, or -1 when not understood. */
static int parse_zone(const char *s, long *offset)
{
    int hh, mm;

    if (strcmp(s, "GMT") == 0 || strcmp(s, "UTC") == 0 || strcmp(s, "UT") == 0 ||
        strcmp(s, "Z") == 0) {
        *offset = 0;
        return 0;
    }
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 5)
        return -1;
    hh = read_digits(s + 1, 2);
    mm = read_digits(s + 3, 2);
    if (hh < 0 || mm < 0 || hh > 23 || mm > 59)
        return -1;
    *offset = (hh * 3600L + mm * 60L) * (s[0] == '-' ? -1 : 1);
    return 0;
}

/* 1 or 2 digits; NULL when there are none. */
static const char *read_day(const char *s, int *day)
{
    int n = 0;

    *day = 0;
    while (is_digit((unsigned char)*s) && n < 2) {
        *day = *day * 10 + (*s++ - '0');
        n++;
    }
    return n ? s : NULL;
}

/* A three-letter month name; NULL when not one. */
static const char *read_month(const char *s, int *mon)
{
    int i;

    for (i = 0; i < 12; i++) {
        if (has_prefix_nocase(s, month_names[i])) {
            *mon = i + 1;
            return s + 3;
        }
    }
    return NULL;
}

/* "hh:mm:ss"; NULL when malformed. */
static const char *read_clock(const char *s, int *h, int *mi, int *sec)
{
    *h = read_digits(s, 2);
    if (*h < 0 || s[2] != ':')
        return NULL;
    *mi = read_digits(s + 3, 2);
    if (*mi < 0 || s[5] != ':')
        return NULL;
    *sec = read_digits(s + 6, 2);
    return *sec < 0 ? NULL : s + 8;
}

/* The zone that ends a date, alone on the rest of the line. */
static int read_final_zone(const char *s, long *offset)
{
    char zone[8];
    size_t len;

    s = skip_spaces(s);
    len = strcspn(s, " \t");
    if (len == 0 || len >= sizeof(zone) || *skip_spaces(s + len) != '\0')
        return -1;
    memcpy(zone, s, len);
    zone[len] = '\0';
    return parse_zone(zone, offset);
}

/* "06 Nov 1994 08:49:37 GMT" (IMF-fixdate, RFC 1123, numeric zones too) or
 * "06-Nov-94 08:49:37 GMT" (RFC 850: two-digit years 70..99 are 19xx). */
static int parse_day_month_year(const char *s, time_t *t)
{
    int day, mon, year, h, mi, sec;
    char sep;
    long offset;

    s = read_day(s, &day);
    if (s == NULL || (*s != ' ' && *s != '-'))
        return SIGV4_ERR_MISSING_DATE;
    sep = *s++;
    s = read_month(s, &mon);
    if (s == NULL || *s++ != sep)
        return SIGV4_ERR_MISSING_DATE;
    year = read_digits(s, 4);
    if (year >= 0 && sep == ' ') {
        s += 4;
    } else if (sep == '-' && (year = read_digits(s, 2)) >= 0 && !is_digit((unsigned char)s[2])) {
        year += year < 70 ? 2000 : 1900;
        s += 2;
    } else {
        return SIGV4_ERR_MISSING_DATE;
    }
    if (*s++ != ' ' || (s = read_clock(s, &h, &mi, &sec)) == NULL || (*s != ' ' && *s != '\t') ||
        read_final_zone(s, &offset) < 0 || make_time(year, mon, day, h, mi, sec, t) != SIGV4_OK)
        return SIGV4_ERR_MISSING_DATE;
    *t -= offset;
    return SIGV4_OK;
}

/* asctime: "Nov  6 08:49:37 1994", always GMT. */
static int parse_asctime(const char *s, time_t *t)
{
    int day, mon, year, h, mi, sec;

    s = read_month(s, &mon);
    if (s == NULL || *s != ' ')
        return SIGV4_ERR_MISSING_DATE;
    s = read_day(skip_spaces(s), &day);
    if (s == NULL || *s++ != ' ' || (s = read_clock(s, &h, &mi, &sec)) == NULL || *s++ != ' ')
        return SIGV4_ERR_MISSING_DATE;
    year = read_digits(s, 4);
    if (year < 0 || *skip_spaces(s + 4) != '\0')
        return SIGV4_ERR_MISSING_DATE;
    return make_time(year, mon, day, h, mi, sec, t);
}

int sigv4_parse_http_date(const char *s, time_t *t)
{
    s = skip_spaces(s);
    /* The weekday, if any, is not checked. */
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
        s++;
    if (*s == ',')
        s++;
    s = skip_spaces(s);
    if (is_digit((unsigned char)*s))
        return parse_day_month_year(s, t);
    return parse_asctime(s, t);
}

/* ---- Parsing authentication ---------------------------------------------------------- */

/* Does s start with the token tok, followed by whitespace or the end? */
static int starts_with_token(const char *s, const char *tok)
{
    size_t n = strlen(tok);

    return strncmp(s, tok, n) == 0 && (s[n] == '\0' || s[n] == ' ' || s[n] == '\t');
}

int sigv4_detect(const sigv4_request *req, sigv4_auth_kind *kind)
{
    const char *hdr = find_header(req, "authorization");
    int v4q = find_param(req, "X-Amz-Algorithm") != NULL ||
              find_param(req, "X-Amz-Credential") != NULL ||
              find_param(req, "X-Amz-Signature") != NULL;
    int v2q = find_param(req, "AWSAccessKeyId") != NULL;

    *kind = SIGV4_AUTH_NONE;
    if ((hdr != NULL && (v4q || v2q)) || (v4q && v2q))
        return SIGV4_ERR_MULTIPLE_AUTH;
    if (v4q)
        *kind = SIGV4_AUTH_V4_QUERY;
    else if (v2q)
        *kind = SIGV4_AUTH_V2_QUERY;
    if (hdr == NULL)
        return SIGV4_OK;
    if (count_headers(req, "authorization") > 1)
        return SIGV4_ERR_MULTIPLE_AUTH;
    hdr = skip_spaces(hdr);
    if (starts_with_token(hdr, SIGV4_ALGORITHM))
        *kind = SIGV4_AUTH_V4_HEADER;
    else if (starts_with_token(hdr, "AWS"))
        *kind = SIGV4_AUTH_V2_HEADER;
    else
        return SIGV4_ERR_UNSUPPORTED_AUTH;
    return SIGV4_OK;
}

/* Copy len bytes into a field of size bytes; -1 when empty, too long or not
 * visible ASCII. */
static int copy_field(char *dst, size_t size, const char *src, size_t len)
{
    size_t i;

    if (len == 0 || len >= size)
        return -1;
    for (i = 0; i < len; i++) {
        if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] >= 0x7f)
            return -1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* "AKID/20130524/us-east-1/s3/aws4_request". The access key is everything
 * before the last four '/'-separated parts. */
static int parse_credential(const char *s, size_t len, sigv4_auth *auth)
{
    const char *slash[4];
    size_t i, found = 0;

    for (i = len; i > 0 && found < 4; i--) {
        if (s[i - 1] == '/')
            slash[found++] = s + i - 1;
    }
    if (found < 4)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    /* slash[3] < slash[2] < slash[1] < slash[0] */
    if (copy_field(auth->access_key, sizeof(auth->access_key), s, (size_t)(slash[3] - s)) < 0 ||
        copy_field(auth->date, sizeof(auth->date), slash[3] + 1,
                   (size_t)(slash[2] - slash[3] - 1)) < 0 ||
        copy_field(auth->region, sizeof(auth->region), slash[2] + 1,
                   (size_t)(slash[1] - slash[2] - 1)) < 0 ||
        copy_field(auth->service, sizeof(auth->service), slash[1] + 1,
                   (size_t)(slash[0] - slash[1] - 1)) < 0)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    if ((size_t)(s + len - slash[0] - 1) != 12 || memcmp(slash[0] + 1, "aws4_request", 12) != 0)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    if (strlen(auth->date) != 8 || read_digits(auth->date, 8) < 0)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    if (sigv4_scope(auth->date, auth->region, auth->service, auth->scope) != SIGV4_OK)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    return SIGV4_OK;
}

static int set_signed_headers(sigv4_auth *auth, const char *s, size_t len)
{
    if (len == 0 || len >= sizeof(auth->signed_headers))
        return SIGV4_ERR_MALFORMED_AUTH;
    memcpy(auth->signed_headers, s, len);
    auth->signed_headers[len] = '\0';
    return signed_headers_valid(auth->signed_headers) ? SIGV4_OK : SIGV4_ERR_MALFORMED_AUTH;
}

static int set_signature(sigv4_auth *auth, const char *s, size_t len)
{
    if (len == 0 || len >= sizeof(auth->signature))
        return SIGV4_ERR_MALFORMED_AUTH;
    memcpy(auth->signature, s, len);
    auth->signature[len] = '\0';
    return SIGV4_OK;
}

/* One "Key=value" component of the Authorization header. seen has one bit
 * per known key, to refuse repeats. */
static int parse_component(sigv4_auth *auth, const char *key, size_t klen, const char *val,
                           size_t vlen, unsigned *seen)
{
    static const char *const keys[3] = {"Credential", "SignedHeaders", "Signature"};
    unsigned i;

    for (i = 0; i < 3; i++) {
        if (klen == strlen(keys[i]) && memcmp(key, keys[i], klen) == 0)
            break;
    }
    if (i == 3 || (*seen & (1u << i)))
        return SIGV4_ERR_MALFORMED_AUTH;
    *seen |= 1u << i;
    if (i == 0)
        return parse_credential(val, vlen, auth);
    if (i == 1)
        return set_signed_headers(auth, val, vlen);
    return set_signature(auth, val, vlen);
}

int sigv4_parse_authorization(const char *value, sigv4_auth *auth)
{
    const char *p = skip_spaces(value);
    unsigned seen = 0;
    int rc;

    memset(auth, 0, sizeof(*auth));
    if (!starts_with_token(p, SIGV4_ALGORITHM))
        return SIGV4_ERR_UNSUPPORTED_AUTH;
    auth->kind = SIGV4_AUTH_V4_HEADER;
    p += strlen(SIGV4_ALGORITHM);
    for (;;) {
        const char *key, *eq, *val, *end;

        p = skip_spaces(p);
        key = p;
        eq = strchr(p, '=');
        if (eq == NULL)
            return SIGV4_ERR_MALFORMED_AUTH;
        val = eq + 1;
        end = val + strcspn(val, ",");
        p = end;
        while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        rc = parse_component(auth, key, (size_t)(eq - key), val, (size_t)(end - val), &seen);
        if (rc != SIGV4_OK)
            return rc;
        if (*p == '\0')
            break;
        p++; /* the ',' */
    }
    return seen == 7 ? SIGV4_OK : SIGV4_ERR_MALFORMED_AUTH;
}

/* An x-amz-date value in ISO 8601 basic form (surrounding blanks allowed)
 * into auth->time and auth->amz_date. */
static int parse_amz_date_value(const char *v, sigv4_auth *auth)
{
    char tmp[SIGV4_AMZ_DATE_SIZE];
    size_t len;

    v = skip_spaces(v);
    len = strcspn(v, " \t\r\n");
    if (len != 16 || *skip_spaces(v + len) != '\0')
        return SIGV4_ERR_MISSING_DATE;
    memcpy(tmp, v, len);
    tmp[len] = '\0';
    if (sigv4_parse_amz_date(tmp, &auth->time) != SIGV4_OK)
        return SIGV4_ERR_MISSING_DATE;
    memcpy(auth->amz_date, tmp, SIGV4_AMZ_DATE_SIZE);
    return SIGV4_OK;
}

/* The request time of header authentication: x-amz-date, else Date. SigV2
 * clients put an HTTP date in x-amz-date. */
static int header_time(const sigv4_request *req, sigv4_auth *auth)
{
    const char *v = find_header(req, "x-amz-date");

    if (v != NULL) {
        if (parse_amz_date_value(v, auth) == SIGV4_OK)
            return SIGV4_OK;
        if (auth->kind != SIGV4_AUTH_V2_HEADER || sigv4_parse_http_date(v, &auth->time) != SIGV4_OK)
            return SIGV4_ERR_MISSING_DATE;
        return sigv4_format_amz_date(auth->time, auth->amz_date);
    }
    v = find_header(req, "date");
    if (v == NULL || sigv4_parse_http_date(v, &auth->time) != SIGV4_OK)
        return SIGV4_ERR_MISSING_DATE;
    return sigv4_format_amz_date(auth->time, auth->amz_date);
}

static int parse_v4_header(const sigv4_request *req, sigv4_auth *auth)
{
    int rc = sigv4_parse_authorization(find_header(req, "authorization"), auth);

    if (rc != SIGV4_OK)
        return rc;
    return header_time(req, auth);
}

/* Decimal seconds, at most max; -1 otherwise. */
static long parse_seconds(const char *s, long max)
{
    long v = 0;

    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (!is_digit((unsigned char)*s))
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    return v;
}

static int parse_v4_query(const sigv4_request *req, sigv4_auth *auth)
{
    char alg[32], cred[SIGV4_ACCESS_KEY_MAX + SIGV4_SCOPE_SIZE + 2], date[32], expires[32];
    char sig[SIGV4_SIG_SIZE];
    int rc;

    auth->kind = SIGV4_AUTH_V4_QUERY;
    rc = get_param(req, "X-Amz-Algorithm", alg, sizeof(alg));
    if (rc == 0)
        return SIGV4_ERR_MALFORMED_AUTH;
    if (rc < 0 || strcmp(alg, SIGV4_ALGORITHM) != 0)
        return SIGV4_ERR_UNSUPPORTED_AUTH;
    if (get_param(req, "X-Amz-Credential", cred, sizeof(cred)) <= 0)
        return SIGV4_ERR_MALFORMED_CREDENTIAL;
    rc = parse_credential(cred, strlen(cred), auth);
    if (rc != SIGV4_OK)
        return rc;
    if (get_param(req, "X-Amz-SignedHeaders", auth->signed_headers, sizeof(auth->signed_headers)) <=
            0 ||
        !signed_headers_valid(auth->signed_headers))
        return SIGV4_ERR_MALFORMED_AUTH;
    if (get_param(req, "X-Amz-Signature", sig, sizeof(sig)) <= 0 ||
        set_signature(auth, sig, strlen(sig)) != SIGV4_OK)
        return SIGV4_ERR_MALFORMED_AUTH;
    if (get_param(req, "X-Amz-Date", date, sizeof(date)) <= 0 ||
        sigv4_parse_amz_date(date, &auth->time) != SIGV4_OK)
        return SIGV4_ERR_MISSING_DATE;
    memcpy(auth->amz_date, date, SIGV4_AMZ_DATE_SIZE);
    rc = get_param(req, "X-Amz-Expires", expires, sizeof(expires));
    if (rc == 0)
        return SIGV4_ERR_MALFORMED_AUTH;
    auth->expires = rc < 0 ? -1 : parse_seconds(expires, SIGV4_MAX_EXPIRES);
    if (auth->expires < 0)
        return SIGV4_ERR_BAD_EXPIRES;
    auth->expires_at = auth->time + auth->expires;
    return SIGV4_OK;
}

/* "AWS AKID:signature"; the access key is everything before the last ':'. */
static int parse_v2_header(const sigv4_request *req, sigv4_auth *auth)
{
    const char *p = skip_spaces(find_header(req, "authorization")) + 3;
    const char *colon, *end;

    auth->kind = SIGV4_AUTH_V2_HEADER;
    p = skip_spaces(p);
    end = p + strlen(p);
    while (end > p && is_space((unsigned char)end[-1]))
        end--;
    colon = end;
    while (colon > p && colon[-1] != ':')
        colon--;
    if (colon == p)
        return SIGV4_ERR_MALFORMED_AUTH;
    if (copy_field(auth->access_key, sizeof(auth->access_key), p, (size_t)(colon - 1 - p)) < 0 ||
        copy_field(auth->signature, sizeof(auth->signature), colon, (size_t)(end - colon)) < 0)
        return SIGV4_ERR_MALFORMED_AUTH;
    return header_time(req, auth);
}

static int parse_v2_query(const sigv4_request *req, sigv4_auth *auth)
{
    char expires[32];
    long long v = 0;
    size_t i;

    auth->kind = SIGV4_AUTH_V2_QUERY;
    if (get_param(req, "AWSAccessKeyId", auth->access_key, sizeof(auth->access_key)) <= 0 ||
        auth->access_key[0] == '\0' ||
        get_param(req, "Signature", auth->signature, sizeof(auth->signature)) <= 0 ||
        auth->signature[0] == '\0')
        return SIGV4_ERR_MALFORMED_AUTH;
    /* An unencoded '+' of the base64 signature arrives as a space. */
    for (i = 0; auth->signature[i]; i++) {
        if (auth->signature[i] == ' ')
            auth->signature[i] = '+';
    }
    if (get_param(req, "Expires", expires, sizeof(expires)) <= 0)
        return SIGV4_ERR_MALFORMED_AUTH;
    for (i = 0; expires[i]; i++) {
        if (!is_digit((unsigned char)expires[i]) || i >= 12)
            return SIGV4_ERR_BAD_EXPIRES;
        v = v * 10 + (expires[i] - '0');
    }
    if (i == 0)
        return SIGV4_ERR_BAD_EXPIRES;
    auth->expires_at = (time_t)v;
    return SIGV4_OK;
}

int sigv4_parse_auth(const sigv4_request *req, sigv4_auth *auth)
{
    sigv4_auth_kind kind;
    int rc;

    memset(auth, 0, sizeof(*auth));
    rc = sigv4_detect(req, &kind);
    if (rc != SIGV4_OK)
        return rc;
    switch (kind) {
    case SIGV4_AUTH_V4_HEADER:
        rc = parse_v4_header(req, auth);
        break;
    case SIGV4_AUTH_V4_QUERY:
        rc = parse_v4_query(req, auth);
        break;
    case SIGV4_AUTH_V2_HEADER:
        rc = parse_v2_header(req, auth);
        break;
    case SIGV4_AUTH_V2_QUERY:
        rc = parse_v2_query(req, auth);
        break;
    default:
        rc = SIGV4_ERR_NO_AUTH;
        break;
    }
    auth->kind = kind; /* also on failure: sigv4_s3_error() needs it */
    return rc;
}

/* ---- Checking and verifying ----------------------------------------------------------- */

static int check_v4(const sigv4_auth *auth, const sigv4_verify_opts *opts, long skew)
{
    const char *service = opts->service ? opts->service : "s3";

    if (strcmp(auth->service, service) != 0)
        return SIGV4_ERR_WRONG_SERVICE;
    if (opts->region != NULL && strcmp(auth->region, opts->region) != 0)
        return SIGV4_ERR_WRONG_REGION;
    if (memcmp(auth->date, auth->amz_date, 8) != 0)
        return SIGV4_ERR_SCOPE_DATE_MISMATCH;
    if (!list_has(auth->signed_headers, "host"))
        return SIGV4_ERR_HOST_NOT_SIGNED;
    if (auth->kind == SIGV4_AUTH_V4_HEADER) {
        if (auth->time > opts->now + skew || auth->time < opts->now - skew)
            return SIGV4_ERR_TIME_SKEWED;
        return SIGV4_OK;
    }
    if (auth->expires < 0 || auth->expires > SIGV4_MAX_EXPIRES)
        return SIGV4_ERR_BAD_EXPIRES;
    if (auth->time > opts->now + skew)
        return SIGV4_ERR_NOT_YET_VALID;
    if (opts->now > auth->expires_at)
        return SIGV4_ERR_EXPIRED;
    return SIGV4_OK;
}

int sigv4_check(const sigv4_auth *auth, const sigv4_verify_opts *opts)
{
    long skew = opts->max_skew > 0 ? opts->max_skew : SIGV4_MAX_SKEW;

    switch (auth->kind) {
    case SIGV4_AUTH_V4_HEADER:
    case SIGV4_AUTH_V4_QUERY:
        return check_v4(auth, opts, skew);
    case SIGV4_AUTH_V2_HEADER:
        if (auth->time > opts->now + skew || auth->time < opts->now - skew)
            return SIGV4_ERR_TIME_SKEWED;
        return SIGV4_OK;
    case SIGV4_AUTH_V2_QUERY:
        return opts->now > auth->expires_at ? SIGV4_ERR_EXPIRED : SIGV4_OK;
    default:
        return SIGV4_ERR_NO_AUTH;
    }
}

int sigv4_verify_signature_key(const sigv4_request *req, const sigv4_auth *auth,
                               const unsigned char key[SIGV4_KEY_SIZE], sigv4_trace *trace)
{
    const char *payload;
    char sig[SIGV4_SIG_SIZE];
    int rc;

    if (auth->kind != SIGV4_AUTH_V4_HEADER && auth->kind != SIGV4_AUTH_V4_QUERY)
        return SIGV4_ERR_INVALID_ARG;
    rc = sigv4_payload_hash(req, auth->kind, &payload);
    if (rc != SIGV4_OK)
        return rc;
    rc = sign_canonical(req, auth->signed_headers, payload, auth->kind == SIGV4_AUTH_V4_QUERY,
                        auth->amz_date, auth->scope, key, sig, trace);
    if (rc != SIGV4_OK)
        return rc;
    if (!signature_matches(sig, auth->signature, strlen(auth->signature)))
        return SIGV4_ERR_SIGNATURE_MISMATCH;
    return SIGV4_OK;
}

static int verify_v2_as(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                        const sigv4_verify_opts *opts, const char *expires, sigv4_trace *trace)
{
    char sig[SIGV4_V2_SIG_SIZE];
    char *sts = NULL;
    int rc = sigv4_v2_string_to_sign(req, opts->vhost_bucket, expires, &sts);

    if (rc == SIGV4_OK)
        rc = sigv4_v2_signature(secret, sts, sig);
    trace_keep(trace, NULL, sts);
    if (rc != SIGV4_OK)
        return rc;
    if (!signature_matches(sig, auth->signature, strlen(auth->signature)))
        return SIGV4_ERR_SIGNATURE_MISMATCH;
    return SIGV4_OK;
}

static int verify_v2(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                     const sigv4_verify_opts *opts, sigv4_trace *trace)
{
    char expires[32];
    const char *exp = NULL;
    int rc;

    if (auth->kind == SIGV4_AUTH_V2_QUERY) {
        if (get_param(req, "Expires", expires, sizeof(expires)) <= 0)
            return SIGV4_ERR_MALFORMED_AUTH;
        exp = expires;
    }
    rc = verify_v2_as(req, auth, secret, opts, exp, trace);
    /* A path-style request of a bucket alone ("/bucket?location") is signed
     * by botocore, as S3 takes it, with the bucket's resource ending in '/'. */
    const char *p = req->path;
    if (rc == SIGV4_ERR_SIGNATURE_MISMATCH && opts->vhost_bucket == NULL && p && p[0] == '/' &&
        p[1] != '\0' && strchr(p + 1, '/') == NULL && strlen(p) < 256) {
        char slashed[258];
        sigv4_request bucket_req = *req;
        snprintf(slashed, sizeof slashed, "%s/", p);
        bucket_req.path = slashed;
        rc = verify_v2_as(&bucket_req, auth, secret, opts, exp, NULL); /* (trace: the first) */
    }
    return rc;
}

int sigv4_verify_signature(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                           const sigv4_verify_opts *opts, sigv4_trace *trace)
{
    unsigned char key[SIGV4_KEY_SIZE];
    int rc;

    if (auth->kind == SIGV4_AUTH_V2_HEADER || auth->kind == SIGV4_AUTH_V2_QUERY)
        return verify_v2(req, auth, secret, opts, trace);
    rc = sigv4_derive_key(secret, auth->date, auth->region, auth->service, key);
    if (rc == SIGV4_OK)
        rc = sigv4_verify_signature_key(req, auth, key, trace);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int sigv4_verify(const sigv4_request *req, const sigv4_auth *auth, const char *secret,
                 const sigv4_verify_opts *opts, sigv4_trace *trace)
{
    int rc = sigv4_check(auth, opts);

    if (rc != SIGV4_OK)
        return rc;
    return sigv4_verify_signature(req, auth, secret, opts, trace);
}

int sigv4_find_unsigned_amz_header(const sigv4_request *req, const sigv4_auth *auth,
                                   const char **name)
{
    size_t i;

    for (i = 0; i < req->nheaders; i++) {
        const char *h = req->headers[i].name;

        if (has_prefix_nocase(h, "x-amz-") && !list_has(auth->signed_headers, h)) {
            if (name != NULL)
                *name = h;
            return SIGV4_ERR_UNSIGNED_HEADER;
        }
    }
    return SIGV4_OK;
}

/* ---- aws-chunked ------------------------------------------------------------------------ */

int sigv4_chunk_init(sigv4_chunk *c, const unsigned char key[SIGV4_KEY_SIZE], const char *amz_date,
                     const char *scope, const char *seed_signature)
{
    memset(c, 0, sizeof(*c));
    if (strlen(amz_date) != 16 || strlen(scope) >= sizeof(c->scope) || strlen(seed_signature) != 64)
        return SIGV4_ERR_INVALID_ARG;
    memcpy(c->key, key, SIGV4_KEY_SIZE);
    memcpy(c->amz_date, amz_date, SIGV4_AMZ_DATE_SIZE);
    strcpy(c->scope, scope);
    memcpy(c->prev, seed_signature, SIGV4_SIG_SIZE);
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || !EVP_DigestInit_ex(c->md, cksum_md_sha256(), NULL)) {
        sigv4_chunk_free(c);
        return SIGV4_ERR_NOMEM;
    }
    return SIGV4_OK;
}

int sigv4_chunk_update(sigv4_chunk *c, const void *data, size_t len)
{
    if (c->md == NULL)
        return SIGV4_ERR_INVALID_ARG;
    if (len > 0 && !EVP_DigestUpdate(c->md, data, len))
        return SIGV4_ERR_NOMEM;
    return SIGV4_OK;
}

/* Sign "<algorithm>\n<date>\n<scope>\n<prev>\n<tail>" and make it the new
 * previous signature. */
static int chunk_sign(sigv4_chunk *c, const char *algorithm, const char *tail,
                      char sig[SIGV4_SIG_SIZE])
{
    char sts[512];
    int n = snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s\n%s", algorithm, c->amz_date, c->scope,
                     c->prev, tail);
    int rc;

    if (n < 0 || (size_t)n >= sizeof(sts))
        return SIGV4_ERR_INVALID_ARG;
    rc = sigv4_signature(c->key, sts, sig);
    if (rc == SIGV4_OK)
        memcpy(c->prev, sig, SIGV4_SIG_SIZE);
    return rc;
}

int sigv4_chunk_finish(sigv4_chunk *c, char sig[SIGV4_SIG_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char tail[2 * SIGV4_SIG_SIZE];

    if (c->md == NULL)
        return SIGV4_ERR_INVALID_ARG;
    if (!EVP_DigestFinal_ex(c->md, md, &mdlen) || mdlen != 32 ||
        !EVP_DigestInit_ex(c->md, cksum_md_sha256(), NULL))
        return SIGV4_ERR_NOMEM;
    memcpy(tail, SIGV4_EMPTY_SHA256 "\n", 65);
    hex_encode(md, 32, tail + 65);
    return chunk_sign(c, SIGV4_ALGORITHM "-PAYLOAD", tail, sig);
}

int sigv4_chunk_verify(sigv4_chunk *c, const char *received, size_t len)
{
    char sig[SIGV4_SIG_SIZE];
    int rc = sigv4_chunk_finish(c, sig);

    if (rc != SIGV4_OK)
        return rc;
    return signature_matches(sig, received, len) ? SIGV4_OK : SIGV4_ERR_SIGNATURE_MISMATCH;
}

int sigv4_chunk_trailer(sigv4_chunk *c, const void *trailer, size_t len, char sig[SIGV4_SIG_SIZE])
{
    char hash[SIGV4_SIG_SIZE];
    int rc = sha256_hex(trailer, len, hash);

    if (rc != SIGV4_OK)
        return rc;
    return chunk_sign(c, SIGV4_ALGORITHM "-TRAILER", hash, sig);
}

int sigv4_chunk_verify_trailer(sigv4_chunk *c, const void *trailer, size_t len,
                               const char *received, size_t received_len)
{
    char sig[SIGV4_SIG_SIZE];
    int rc = sigv4_chunk_trailer(c, trailer, len, sig);

    if (rc != SIGV4_OK)
        return rc;
    return signature_matches(sig, received, received_len) ? SIGV4_OK : SIGV4_ERR_SIGNATURE_MISMATCH;
}

void sigv4_chunk_free(sigv4_chunk *c)
{
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
    OPENSSL_cleanse(c->key, sizeof(c->key));
}

/* ---- Signing ------------------------------------------------------------------------------ */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every header name of h, lowercase, sorted, once, joined with ';'. */
static int join_header_names(const sigv4_header *h, size_t n, char **out)
{
    char **names = calloc(n ? n : 1, sizeof(*names));
    strbuf b = {0};
    size_t i, j;
    int rc = SIGV4_OK;

    *out = NULL;
    if (names == NULL)
        return SIGV4_ERR_NOMEM;
    for (i = 0; i < n && rc == SIGV4_OK; i++) {
        names[i] = strdup(h[i].name);
        if (names[i] == NULL)
            rc = SIGV4_ERR_NOMEM;
        for (j = 0; names[i] && names[i][j]; j++)
            names[i][j] = (char)ascii_lower((unsigned char)names[i][j]);
    }
    if (rc == SIGV4_OK) {
        qsort(names, n, sizeof(*names), str_cmp);
        for (i = 0; i < n; i++) {
            if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
                continue;
            if (i > 0)
                sb_addc(&b, ';');
            sb_adds(&b, names[i]);
        }
        rc = sb_finish(&b, out);
    }
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* The SignedHeaders list of a client request: every header, and "host". */
static int signed_header_list(const sigv4_header *h, size_t n, char **out)
{
    int rc = join_header_names(h, n, out);

    if (rc == SIGV4_OK && (!signed_headers_valid(*out) || !list_has(*out, "host"))) {
        free(*out);
        *out = NULL;
        rc = SIGV4_ERR_INVALID_ARG;
    }
    return rc;
}

/* req's headers plus extra ones, in a new array. */
static sigv4_header *headers_plus(const sigv4_request *req, const sigv4_header *extra,
                                  size_t nextra)
{
    sigv4_header *h = malloc((req->nheaders + nextra) * sizeof(*h));

    if (h == NULL)
        return NULL;
    if (req->nheaders > 0)
        memcpy(h, req->headers, req->nheaders * sizeof(*h));
    if (nextra > 0)
        memcpy(h + req->nheaders, extra, nextra * sizeof(*h));
    return h;
}

static int check_credentials(const sigv4_credentials *cred)
{
    if (cred == NULL || cred->access_key == NULL || cred->secret_key == NULL ||
        cred->region == NULL || cred->service == NULL || cred->access_key[0] == '\0')
        return SIGV4_ERR_INVALID_ARG;
    return SIGV4_OK;
}

int sigv4_sign_header(const sigv4_request *req, const sigv4_credentials *cred, time_t now,
                      char amz_date[SIGV4_AMZ_DATE_SIZE], char **authorization, sigv4_trace *trace)
{
    sigv4_header extra[2];
    sigv4_request signed_req = *req;
    char scope[SIGV4_SCOPE_SIZE], sig[SIGV4_SIG_SIZE], date[9];
    unsigned char key[SIGV4_KEY_SIZE];
    char *list = NULL;
    sigv4_header *all = NULL;
    size_t nextra = 0;
    strbuf b = {0};
    const char *payload;
    int rc;

    *authorization = NULL;
    rc = check_credentials(cred);
    if (rc != SIGV4_OK || find_header(req, "x-amz-date") || find_header(req, "authorization") ||
        (cred->session_token && find_header(req, "x-amz-security-token")))
        return SIGV4_ERR_INVALID_ARG;
    payload = req->payload_hash ? req->payload_hash : find_header(req, "x-amz-content-sha256");
    if (payload == NULL || sigv4_format_amz_date(now, amz_date) != SIGV4_OK)
        return SIGV4_ERR_INVALID_ARG;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (sigv4_scope(date, cred->region, cred->service, scope) != SIGV4_OK)
        return SIGV4_ERR_INVALID_ARG;

    extra[nextra].name = "x-amz-date";
    extra[nextra++].value = amz_date;
    if (cred->session_token) {
        extra[nextra].name = "x-amz-security-token";
        extra[nextra++].value = cred->session_token;
    }
    all = headers_plus(req, extra, nextra);
    if (all == NULL)
        return SIGV4_ERR_NOMEM;
    signed_req.headers = all;
    signed_req.nheaders = req->nheaders + nextra;

    rc = signed_header_list(all, signed_req.nheaders, &list);
    if (rc == SIGV4_OK)
        rc = sigv4_derive_key(cred->secret_key, date, cred->region, cred->service, key);
    if (rc == SIGV4_OK)
        rc = sign_canonical(&signed_req, list, payload, 0, amz_date, scope, key, sig, trace);
    if (rc == SIGV4_OK) {
        sb_adds(&b, SIGV4_ALGORITHM " Credential=");
        sb_adds(&b, cred->access_key);
        sb_addc(&b, '/');
        sb_adds(&b, scope);
        sb_adds(&b, ", SignedHeaders=");
        sb_adds(&b, list);
        sb_adds(&b, ", Signature=");
        sb_adds(&b, sig);
        rc = sb_finish(&b, authorization);
    }
    OPENSSL_cleanse(key, sizeof(key));
    free(list);
    free(all);
    return rc;
}

/* Append "name=value" (value encoded here) to a query string being built. */
static void add_query_param(strbuf *b, const char *name, const char *value)
{
    if (b->len > 0)
        sb_addc(b, '&');
    sb_adds(b, name);
    sb_addc(b, '=');
    while (*value)
        encode_byte(b, (unsigned char)*value++, 0);
}

/* req's own parameters, raw, as a query string. */
static void add_raw_params(strbuf *b, const sigv4_request *req)
{
    size_t i;

    for (i = 0; i < req->nparams; i++) {
        if (b->len > 0)
            sb_addc(b, '&');
        sb_adds(b, req->params[i].name);
        if (req->params[i].value != NULL) {
            sb_addc(b, '=');
            sb_adds(b, req->params[i].value);
        }
    }
}

static int has_presign_param(const sigv4_request *req)
{
    static const char *const names[] = {
        "X-Amz-Algorithm",     "X-Amz-Credential", "X-Amz-Date",          "X-Amz-Expires",
        "X-Amz-SignedHeaders", "X-Amz-Signature",  "X-Amz-Security-Token"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (find_param(req, names[i]) != NULL)
            return 1;
    }
    return 0;
}

/* The X-Amz-* parameters of a presigned URL, without the signature. */
static void add_presign_params(strbuf *b, const sigv4_credentials *cred, const char *scope,
                               const char *amz_date, long expires, const char *list)
{
    char credential[SIGV4_ACCESS_KEY_MAX + SIGV4_SCOPE_SIZE + 2];
    char secs[24];

    snprintf(credential, sizeof(credential), "%s/%s", cred->access_key, scope);
    snprintf(secs, sizeof(secs), "%ld", expires);
    add_query_param(b, "X-Amz-Algorithm", SIGV4_ALGORITHM);
    add_query_param(b, "X-Amz-Credential", credential);
    add_query_param(b, "X-Amz-Date", amz_date);
    add_query_param(b, "X-Amz-Expires", secs);
    add_query_param(b, "X-Amz-SignedHeaders", list);
    if (cred->session_token)
        add_query_param(b, "X-Amz-Security-Token", cred->session_token);
}

int sigv4_presign(const sigv4_request *req, const sigv4_credentials *cred, time_t now, long expires,
                  char **query, sigv4_trace *trace)
{
    char amz_date[SIGV4_AMZ_DATE_SIZE], scope[SIGV4_SCOPE_SIZE], sig[SIGV4_SIG_SIZE], date[9];
    unsigned char key[SIGV4_KEY_SIZE];
    sigv4_request signed_req = *req;
    sigv4_param *params = NULL;
    strbuf b = {0};
    char *list = NULL, *auth_query = NULL;
    size_t n = 0;
    int rc;

    *query = NULL;
    rc = check_credentials(cred);
    if (rc != SIGV4_OK || expires < 1 || expires > SIGV4_MAX_EXPIRES || has_presign_param(req) ||
        strlen(cred->access_key) > SIGV4_ACCESS_KEY_MAX ||
        sigv4_format_amz_date(now, amz_date) != SIGV4_OK)
        return SIGV4_ERR_INVALID_ARG;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (sigv4_scope(date, cred->region, cred->service, scope) != SIGV4_OK)
        return SIGV4_ERR_INVALID_ARG;
    rc = signed_header_list(req->headers, req->nheaders, &list);
    if (rc != SIGV4_OK)
        return rc;

    /* The auth parameters, split in place into the parameter list to sign. */
    add_presign_params(&b, cred, scope, amz_date, expires, list);
    rc = sb_finish(&b, &auth_query);
    if (rc == SIGV4_OK) {
        params = malloc((req->nparams + 6) * sizeof(*params));
        rc = params ? SIGV4_OK : SIGV4_ERR_NOMEM;
    }
    if (rc == SIGV4_OK) {
        if (req->nparams > 0)
            memcpy(params, req->params, req->nparams * sizeof(*params));
        sigv4_query_split(auth_query, params + req->nparams, 6, &n);
        signed_req.params = params;
        signed_req.nparams = req->nparams + n;
        rc = sigv4_derive_key(cred->secret_key, date, cred->region, cred->service, key);
    }
    if (rc == SIGV4_OK)
        rc = sign_canonical(&signed_req, list,
                            req->payload_hash ? req->payload_hash : SIGV4_UNSIGNED_PAYLOAD, 0,
                            amz_date, scope, key, sig, trace);
    if (rc == SIGV4_OK) {
        memset(&b, 0, sizeof(b));
        add_raw_params(&b, req);
        add_presign_params(&b, cred, scope, amz_date, expires, list);
        add_query_param(&b, "X-Amz-Signature", sig);
        rc = sb_finish(&b, query);
    }
    OPENSSL_cleanse(key, sizeof(key));
    free(params);
    free(auth_query);
    free(list);
    return rc;
}

/* ---- Signature Version 2 ------------------------------------------------------------------ */

/* Query parameters that are part of the SigV2 canonical resource: the S3
 * sub-resources and response overrides (AWS documentation and botocore). */
static const char *const v2_subresources[] = {
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
};

static const char *v2_subresource(const char *raw_name)
{
    size_t i;

    for (i = 0; i < sizeof(v2_subresources) / sizeof(v2_subresources[0]); i++) {
        if (raw_equals(raw_name, v2_subresources[i]))
            return v2_subresources[i];
    }
    return NULL;
}

typedef struct v2_entry {
    const char *name; /* one of v2_subresources */
    const char *raw_value;
} v2_entry;

static int v2_entry_cmp(const void *a, const void *b)
{
    const v2_entry *x = a, *y = b;
    int r = strcmp(x->name, y->name);

    if (r != 0)
        return r;
    return strcmp(x->raw_value ? x->raw_value : "", y->raw_value ? y->raw_value : "");
}

/* "[/bucket]/raw/path[?sub&sub=value]": values decoded, as the docs say. */
static int v2_add_resource(strbuf *b, const sigv4_request *req, const char *vhost_bucket)
{
    v2_entry *e = calloc(req->nparams ? req->nparams : 1, sizeof(*e));
    size_t i, n = 0;

    if (e == NULL)
        return SIGV4_ERR_NOMEM;
    if (vhost_bucket != NULL) {
        sb_addc(b, '/');
        sb_adds(b, vhost_bucket);
    }
    sb_adds(b, req->path && req->path[0] ? req->path : "/");
    for (i = 0; i < req->nparams; i++) {
        const char *name = v2_subresource(req->params[i].name);

        if (name != NULL) {
            e[n].name = name;
            e[n++].raw_value = req->params[i].value;
        }
    }
    qsort(e, n, sizeof(*e), v2_entry_cmp);
    for (i = 0; i < n; i++) {
        sb_addc(b, i == 0 ? '?' : '&');
        sb_adds(b, e[i].name);
        if (e[i].raw_value != NULL && e[i].raw_value[0] != '\0') {
            sb_addc(b, '=');
            decode_append(b, e[i].raw_value, 1);
        }
    }
    free(e);
    return SIGV4_OK;
}

/* The first value of a header, trimmed, followed by '\n'. */
static void v2_add_header_line(strbuf *b, const sigv4_request *req, const char *name)
{
    const char *v = find_header(req, name);

    if (v != NULL)
        add_header_value(b, v, 0);
    sb_addc(b, '\n');
}

/* "x-amz-name:value[,value]\n" for every x-amz-* header, sorted by name. */
static int v2_add_amz_headers(strbuf *b, const sigv4_request *req)
{
    sigv4_header *h = malloc((req->nheaders ? req->nheaders : 1) * sizeof(*h));
    char *list = NULL;
    const char *p;
    size_t i, n = 0;
    int rc;

    if (h == NULL)
        return SIGV4_ERR_NOMEM;
    for (i = 0; i < req->nheaders; i++) {
        if (has_prefix_nocase(req->headers[i].name, "x-amz-"))
            h[n++] = req->headers[i];
    }
    rc = join_header_names(h, n, &list);
    free(h);
    if (rc != SIGV4_OK)
        return rc;
    for (p = list; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        sb_add(b, p, len);
        sb_addc(b, ':');
        for (i = 0, n = 0; i < req->nheaders; i++) {
            if (!name_eq(req->headers[i].name, p, len))
                continue;
            if (n++ > 0)
                sb_addc(b, ',');
            add_header_value(b, req->headers[i].value ? req->headers[i].value : "", 0);
        }
        sb_addc(b, '\n');
        if (end == NULL)
            break;
        p = end + 1;
    }
    free(list);
    return SIGV4_OK;
}

int sigv4_v2_string_to_sign(const sigv4_request *req, const char *vhost_bucket, const char *expires,
                            char **out)
{
    strbuf b = {0};
    const char *date;
    int rc;

    *out = NULL;
    if (req->method == NULL)
        return SIGV4_ERR_INVALID_ARG;
    sb_adds(&b, req->method);
    sb_addc(&b, '\n');
    v2_add_header_line(&b, req, "content-md5");
    v2_add_header_line(&b, req, "content-type");
    if (expires != NULL) {
        sb_adds(&b, expires);
    } else if (find_header(req, "x-amz-date") == NULL) {
        date = find_header(req, "date");
        if (date != NULL)
            add_header_value(&b, date, 0);
    }
    sb_addc(&b, '\n');
    rc = v2_add_amz_headers(&b, req);
    if (rc == SIGV4_OK)
        rc = v2_add_resource(&b, req, vhost_bucket);
    if (rc != SIGV4_OK) {
        free(b.p);
        return rc;
    }
    return sb_finish(&b, out);
}

int sigv4_v2_signature(const char *secret, const char *string_to_sign, char out[SIGV4_V2_SIG_SIZE])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (HMAC(cksum_md_sha1(), secret, (int)strlen(secret), (const unsigned char *)string_to_sign,
             strlen(string_to_sign), mac, &len) == NULL ||
        len != 20)
        return SIGV4_ERR_NOMEM;
    EVP_EncodeBlock((unsigned char *)out, mac, 20);
    return SIGV4_OK;
}

int sigv4_v2_sign_header(const sigv4_request *req, const char *access_key, const char *secret,
                         const char *vhost_bucket, char **authorization)
{
    char sig[SIGV4_V2_SIG_SIZE];
    char *sts = NULL;
    strbuf b = {0};
    int rc;

    *authorization = NULL;
    if (find_header(req, "date") == NULL && find_header(req, "x-amz-date") == NULL)
        return SIGV4_ERR_INVALID_ARG;
    rc = sigv4_v2_string_to_sign(req, vhost_bucket, NULL, &sts);
    if (rc == SIGV4_OK)
        rc = sigv4_v2_signature(secret, sts, sig);
    free(sts);
    if (rc != SIGV4_OK)
        return rc;
    sb_adds(&b, "AWS ");
    sb_adds(&b, access_key);
    sb_addc(&b, ':');
    sb_adds(&b, sig);
    return sb_finish(&b, authorization);
}

int sigv4_v2_presign(const sigv4_request *req, const char *access_key, const char *secret,
                     const char *vhost_bucket, time_t expires_at, char **query)
{
    char expires[24], sig[SIGV4_V2_SIG_SIZE];
    char *sts = NULL;
    strbuf b = {0};
    int rc;

    *query = NULL;
    if (find_param(req, "AWSAccessKeyId") || find_param(req, "Expires") ||
        find_param(req, "Signature") || expires_at < 0)
        return SIGV4_ERR_INVALID_ARG;
    snprintf(expires, sizeof(expires), "%lld", (long long)expires_at);
    rc = sigv4_v2_string_to_sign(req, vhost_bucket, expires, &sts);
    if (rc == SIGV4_OK)
        rc = sigv4_v2_signature(secret, sts, sig);
    free(sts);
    if (rc != SIGV4_OK)
        return rc;
    add_raw_params(&b, req);
    add_query_param(&b, "AWSAccessKeyId", access_key);
    add_query_param(&b, "Expires", expires);
    add_query_param(&b, "Signature", sig);
    return sb_finish(&b, query);
}

/* ---- Errors --------------------------------------------------------------------------------- */

static const char *const messages[SIGV4_ERR_COUNT] = {
    [SIGV4_OK] = "OK",
    [SIGV4_ERR_NOMEM] = "Out of memory.",
    [SIGV4_ERR_INVALID_ARG] = "Invalid argument.",
    [SIGV4_ERR_NO_AUTH] = "Anonymous access is not allowed.",
    [SIGV4_ERR_MULTIPLE_AUTH] = "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                "query parameter, Signature query string parameter or the "
                                "Authorization header should be specified.",
    [SIGV4_ERR_UNSUPPORTED_AUTH] = "Unsupported Authorization Type.",
    [SIGV4_ERR_MALFORMED_AUTH] = "The authorization header or query parameters are malformed.",
    [SIGV4_ERR_MALFORMED_CREDENTIAL] = "Error parsing the Credential parameter; the Credential "
                                       "is mal-formed; expecting "
                                       "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
    [SIGV4_ERR_WRONG_REGION] = "The authorization header is malformed; the region is wrong.",
    [SIGV4_ERR_WRONG_SERVICE] = "The authorization header is malformed; incorrect service.",
    [SIGV4_ERR_SCOPE_DATE_MISMATCH] = "Invalid credential date. Date is not the same as "
                                      "X-Amz-Date.",
    [SIGV4_ERR_MISSING_DATE] = "AWS authentication requires a valid Date or x-amz-date header.",
    [SIGV4_ERR_BAD_EXPIRES] = "X-Amz-Expires must be a number of seconds between 0 and 604800.",
    [SIGV4_ERR_EXPIRED] = "Request has expired.",
    [SIGV4_ERR_NOT_YET_VALID] = "Request is not valid yet.",
    [SIGV4_ERR_TIME_SKEWED] = "The difference between the request time and the current time is "
                              "too large.",
    [SIGV4_ERR_HOST_NOT_SIGNED] = "The host header must be signed.",
    [SIGV4_ERR_UNSIGNED_HEADER] = "There were headers present in the request which were not "
                                  "signed.",
    [SIGV4_ERR_MISSING_CONTENT_SHA256] = "Missing required header for this request: "
                                         "x-amz-content-sha256.",
    [SIGV4_ERR_BAD_CONTENT_SHA256] = "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
                                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
                                     "STREAMING-UNSIGNED-PAYLOAD-TRAILER or a valid sha256 value.",
    [SIGV4_ERR_SIGNATURE_MISMATCH] = "The request signature we calculated does not match the "
                                     "signature you provided. Check your key and signing method.",
};

const char *sigv4_strerror(int err)
{
    if (err < 0 || err >= SIGV4_ERR_COUNT)
        return "Unknown error.";
    return messages[err];
}

/* The S3 code for a malformed authentication of this kind. */
static const char *malformed_code(sigv4_auth_kind kind)
{
    if (kind == SIGV4_AUTH_V4_HEADER)
        return "AuthorizationHeaderMalformed";
    if (kind == SIGV4_AUTH_V4_QUERY)
        return "AuthorizationQueryParametersError";
    return "InvalidArgument";
}

const char *sigv4_s3_error(int err, sigv4_auth_kind kind, int *http_status)
{
    int status = 403;
    const char *code = "AccessDenied";

    switch (err) {
    case SIGV4_OK:
        status = 200;
        code = "OK";
        break;
    case SIGV4_ERR_NOMEM:
    case SIGV4_ERR_INVALID_ARG:
        status = 500;
        code = "InternalError";
        break;
    case SIGV4_ERR_MULTIPLE_AUTH:
        status = 400;
        code = "InvalidArgument";
        break;
    case SIGV4_ERR_UNSUPPORTED_AUTH:
        status = 400;
        code =
            kind == SIGV4_AUTH_V4_QUERY ? "AuthorizationQueryParametersError" : "InvalidArgument";
        break;
    case SIGV4_ERR_MALFORMED_AUTH:
    case SIGV4_ERR_MALFORMED_CREDENTIAL:
    case SIGV4_ERR_WRONG_REGION:
    case SIGV4_ERR_WRONG_SERVICE:
    case SIGV4_ERR_SCOPE_DATE_MISMATCH:
        status = 400;
        code = malformed_code(kind);
        break;
    case SIGV4_ERR_MISSING_DATE:
        if (kind == SIGV4_AUTH_V4_QUERY) {
            status = 400;
            code = "AuthorizationQueryParametersError";
        }
        break;
    case SIGV4_ERR_BAD_EXPIRES:
        status = 400;
        code = "AuthorizationQueryParametersError";
        break;
    case SIGV4_ERR_TIME_SKEWED:
        code = "RequestTimeTooSkewed";
        break;
    case SIGV4_ERR_MISSING_CONTENT_SHA256:
        status = 400;
        code = "InvalidRequest";
        break;
    case SIGV4_ERR_BAD_CONTENT_SHA256:
        status = 400;
        code = "InvalidArgument";
        break;
    case SIGV4_ERR_SIGNATURE_MISMATCH:
        code = "SignatureDoesNotMatch";
        break;
    default: /* NO_AUTH, EXPIRED, NOT_YET_VALID, HOST_NOT_SIGNED, UNSIGNED_HEADER */
        break;
    }
    if (http_status != NULL)
        *http_status = status;
    return code;
}
