/*
 * native.c - the native cache API, compatible with Bazel's HTTP remote cache
 * and bazel-remote:
 *
 *   GET|HEAD|PUT|DELETE [/<instance>]/cas/<sha256 hex>   content-addressed
 *   GET|HEAD|PUT|DELETE [/<instance>]/ac/<64 hex>        opaque values
 *
 * CAS bodies are checked against their name (mismatch: 400, nothing
 * stored), and live in one namespace "cas" whatever the instance: equal
 * bytes are the same entry.  Action cache entries live in "ac" or
 * "ac/<instance>", so instances do not see each other's results.  The empty
 * blob always exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/util.h"
#include "server.h"

#define NS_MAX 160

static const uint8_t empty_sha256[32] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

typedef struct native_req {
    int cas;
    char ns[NS_MAX];
    char hex[65];
    uint8_t digest[32];
    body_sink body;
    int body_started;
} native_req;

static void native_cleanup(request *r)
{
    native_req *n = r->fe;
    if (n->body_started)
        body_free(&n->body);
    free(n);
}

/* Instance names: one path segment of letters, digits and - _ . */
static int valid_instance(const char *s, size_t len)
{
    if (len == 0 || len > 100 || (len <= 2 && s[0] == '.'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Past a run of slashes: "//cas/x" and "/i//cas//x" are read as nginx and
 * Go's ServeMux read them, "/cas/x" and "/i/cas/x" (a base URL that ends in
 * "/", joined with "/cas/..."), not as an S3 path with an empty bucket name */
static const char *past_slashes(const char *p)
{
    while (*p == '/')
        p++;
    return p;
}

int native_route(request *r)
{
    const char *p = past_slashes(r->path);
    const char *inst = NULL;
    size_t inst_len = 0;
    const char *slash = strchr(p, '/');
    if (slash == NULL)
        return 0;
    if (!(slash - p == 3 && strncmp(p, "cas", 3) == 0) &&
        !(slash - p == 2 && strncmp(p, "ac", 2) == 0)) {
        inst = p;
        inst_len = (size_t)(slash - p);
        p = past_slashes(slash);
        if ((slash = strchr(p, '/')) == NULL)
            return 0;
    }
    int cas;
    if (slash - p == 3 && strncmp(p, "cas", 3) == 0)
        cas = 1;
    else if (slash - p == 2 && strncmp(p, "ac", 2) == 0)
        cas = 0;
    else
        return 0;
    if (inst && !valid_instance(inst, inst_len))
        return 0;
    native_req *n = calloc(1, sizeof *n);
    if (n == NULL)
        return 0;
    n->cas = cas;
    const char *name = past_slashes(slash);
    if (util_is_hex64(name, strlen(name))) {
        for (int i = 0; i < 64; i++)
            n->hex[i] = (char)((name[i] >= 'A' && name[i] <= 'F') ? name[i] + 32 : name[i]);
        util_unhex(n->hex, 64, n->digest, 32);
    }
    if (cas)
        snprintf(n->ns, sizeof n->ns, "cas");
    else if (inst)
        snprintf(n->ns, sizeof n->ns, "ac/%.*s", (int)inst_len, inst);
    else
        snprintf(n->ns, sizeof n->ns, "ac");
    r->fe = n;
    r->cleanup = native_cleanup;
    r->m.ns = n->ns;
    return 1;
}

static enum MHD_Result reply_get(request *r, int head, int *vanished)
{
    native_req *n = r->fe;
    store_entry e;
    int st = store_lookup(r->srv->st, n->ns, n->hex, 64, &e);
    if (st == STORE_NOTFOUND && n->cas && memcmp(n->digest, empty_sha256, 32) == 0) {
        r->m.cache = MC_LOCAL; /* the empty blob always exists */
        uint64_t start, len;   /* (and, like any empty body, satisfies no range) */
        if (http_parse_range(http_range(r, NULL, 0), 0, &start, &len) < 0)
            return http_queue(r, MHD_HTTP_RANGE_NOT_SATISFIABLE, serve_unsatisfiable(0));
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        return http_queue(r, MHD_HTTP_OK, resp);
    }
    r->m.cache = st == STORE_OK         ? (e.from_tier ? MC_TIER : MC_LOCAL)
                 : st == STORE_NOTFOUND ? MC_MISS
                                        : MC_NONE;
    if (st != STORE_OK)
        return http_text(r, http_status_for(st),
                         st == STORE_NOTFOUND ? "not found" : store_strerror(st));
    serve_opts o = {.sent = &r->m.sent,
                    .head = head,
                    .allow_zstd = http_accepts_encoding(r, "zstd"),
                    .range = http_range(r, NULL, 0), /* (no validator: an If-Range is false) */
                    .content_type = "application/octet-stream",
                    .req = r,
                    .vanished = vanished};
    unsigned status;
    struct MHD_Response *resp = serve_entry(r->srv, &e, &o, &status);
    store_entry_clear(&e);
    if (resp == NULL && vanished && *vanished)
        return MHD_YES; /* looked up again */
    if (resp == NULL)
        return http_text(r, status, status == MHD_HTTP_NOT_FOUND ? "not found" : "read failed");
    return http_queue(r, status, resp);
}

static enum MHD_Result reply_put(request *r, native_req *n)
{
    store_put_result res;
    unsigned status =
        body_commit(&n->body, n->ns, n->hex, 64, n->cas ? n->digest : NULL, NULL, 0, &res);
    if (status != MHD_HTTP_OK) {
        char msg[256];
        if (status == MHD_HTTP_BAD_REQUEST && n->body.error &&
            strcmp(n->body.error, store_strerror(STORE_DIGEST_MISMATCH)) == 0)
            snprintf(msg, sizeof msg, "body's SHA-256 does not match %s; nothing stored", n->hex);
        else
            snprintf(msg, sizeof msg, "%s; nothing stored",
                     n->body.error ? n->body.error : "upload failed");
        return http_text(r, status, msg);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    return http_queue(r, MHD_HTTP_OK, resp);
}

enum MHD_Result native_handle(request *r, const char *data, size_t *size)
{
    native_req *n = r->fe;
    int put = http_is(r, "PUT");
    if (r->calls == 1) {
        if (n->hex[0] == '\0')
            return http_text(r, MHD_HTTP_BAD_REQUEST,
                             "the name after /cas/ or /ac/ must be 64 hex characters (a SHA-256)");
        if (put) {
            unsigned status = body_begin(r, &n->body, 0, 1);
            n->body_started = status == 0;
            if (status != 0)
                return http_text(r, status, n->body.error);
        }
        return MHD_YES;
    }
    if (put) {
        if (*size > 0) {
            body_feed(&n->body, data, *size);
            *size = 0;
            return MHD_YES;
        }
        return reply_put(r, n);
    }
    if (*size > 0) {
        *size = 0; /* a body on a GET or DELETE is read and ignored */
        return MHD_YES;
    }
    if (http_is(r, "GET") || http_is(r, "HEAD"))
        return serve_looking_again(r, http_is(r, "HEAD"), reply_get);
    if (http_is(r, "DELETE")) {
        int st = store_delete(r->srv->st, n->ns, n->hex, 64);
        if (st == STORE_OK) {
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            return http_queue(r, MHD_HTTP_NO_CONTENT, resp);
        }
        return http_text(r, http_status_for(st),
                         st == STORE_NOTFOUND ? "not found" : store_strerror(st));
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen("method not allowed\n"), "method not allowed\n", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Allow", "GET, HEAD, PUT, DELETE");
    return http_queue(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}
