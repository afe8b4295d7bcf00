/*
 * cairn.c - the command-line client.
 *
 * Talks to cairnd over HTTP (libcurl); the server is CAIRN_URL or --url.
 * Commands so far work on the native content-addressed API:
 *   cairn put FILE...        upload each file to /cas/<sha256>, print the digest
 *   cairn get DIGEST [-o F]  download a blob (to stdout or F), verified by digest
 *   cairn head DIGEST        does the server have it? (exit 0 yes, 1 no)
 *   cairn status             the server's /status JSON
 * Exit codes: 0 success, 1 not found / failed check, 2 usage, 3 server or network error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "../common/util.h"

static const char *base_url;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cairn [--url URL] COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  put FILE...          upload files to the content-addressed store; prints digests\n"
            "  get DIGEST [-o FILE] download a blob, verified by its SHA-256\n"
            "  head DIGEST          exit 0 if the server has the blob, 1 if not\n"
            "  status               print the server's status (JSON)\n"
            "\n"
            "The server is --url, or CAIRN_URL, or http://127.0.0.1:8080.\n"
            "Exit codes: 0 ok, 1 not found or digest mismatch, 2 usage, 3 server or network "
            "error.\n");
}

static int file_sha256(FILE *f, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], d[32];
    unsigned int n;
    size_t got;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(ctx, buf, got);
    EVP_DigestFinal_ex(ctx, d, &n);
    EVP_MD_CTX_free(ctx);
    util_hex(d, 32, hex);
    return ferror(f) ? -1 : 0;
}

static CURL *easy(const char *path)
{
    char url[2048];
    size_t bl = strlen(base_url);
    snprintf(url, sizeof url, "%.*s%s", (int)(bl && base_url[bl - 1] == '/' ? bl - 1 : bl),
             base_url, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
    return c;
}

static int perform(CURL *c, long *status)
{
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "cairn: %s: %s\n", base_url, curl_easy_strerror(rc));
        curl_easy_cleanup(c);
        return 3;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    return 0;
}

static int cmd_put(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    int worst = 0;
    for (int i = 0; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        char hex[65], path[80];
        if (f == NULL || file_sha256(f, hex) != 0) {
            fprintf(stderr, "cairn: %s: %s\n", argv[i], strerror(errno));
            if (f)
                fclose(f);
            worst = 1;
            continue;
        }
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        rewind(f);
        snprintf(path, sizeof path, "/cas/%s", hex);
        CURL *c = easy(path);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READDATA, f);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
        long status = 0;
        int rc = perform(c, &status);
        fclose(f);
        if (rc != 0)
            return rc;
        if (status / 100 != 2) {
            fprintf(stderr, "cairn: %s: server answered %ld\n", argv[i], status);
            worst = 3;
            continue;
        }
        printf("%s  %s\n", hex, argv[i]);
    }
    return worst;
}

static int cmd_get(int argc, char **argv)
{
    const char *out = NULL;
    if (argc == 3 && strcmp(argv[1], "-o") == 0)
        out = argv[2];
    else if (argc != 1) {
        usage(stderr);
        return 2;
    }
    if (!util_is_hex64(argv[0], strlen(argv[0]))) {
        fprintf(stderr, "cairn: '%s' is not a SHA-256 digest\n", argv[0]);
        return 2;
    }
    char tmp[4096], path[80];
    FILE *f;
    if (out) {
        snprintf(tmp, sizeof tmp, "%s.cairn-partial", out);
        f = fopen(tmp, "w+b");
    } else {
        f = tmpfile();
    }
    if (f == NULL) {
        fprintf(stderr, "cairn: %s\n", strerror(errno));
        return 3;
    }
    snprintf(path, sizeof path, "/cas/%s", argv[0]);
    CURL *c = easy(path);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "zstd");
    long status = 0;
    int rc = perform(c, &status);
    if (rc == 0 && status == 404) {
        fprintf(stderr, "cairn: %s: not found\n", argv[0]);
        rc = 1;
    } else if (rc == 0 && status != 200) {
        fprintf(stderr, "cairn: server answered %ld\n", status);
        rc = 3;
    }
    char hex[65];
    if (rc == 0) {
        fflush(f);
        rewind(f);
        if (file_sha256(f, hex) != 0 || strcasecmp(hex, argv[0]) != 0) {
            fprintf(stderr, "cairn: downloaded body does not match %s; discarded\n", argv[0]);
            rc = 1;
        }
    }
    if (rc == 0 && !out) {
        rewind(f);
        char buf[1 << 16];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stdout);
    }
    fclose(f);
    if (out) {
        if (rc == 0 && rename(tmp, out) != 0) {
            fprintf(stderr, "cairn: %s: %s\n", out, strerror(errno));
            rc = 3;
        }
        if (rc != 0)
            remove(tmp);
    }
    return rc;
}

static int cmd_head(int argc, char **argv)
{
    if (argc != 1 || !util_is_hex64(argv[0], strlen(argv[0]))) {
        usage(stderr);
        return 2;
    }
    char path[80];
    snprintf(path, sizeof path, "/cas/%s", argv[0]);
    CURL *c = easy(path);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    long status = 0;
    int rc = perform(c, &status);
    if (rc != 0)
        return rc;
    return status == 200 ? 0 : status == 404 ? 1 : 3;
}

static int cmd_status(void)
{
    CURL *c = easy("/status");
    long status = 0;
    int rc = perform(c, &status);
    return rc ? rc : status == 200 ? 0 : 3;
}

int main(int argc, char **argv)
{
    base_url = getenv("CAIRN_URL");
    if (base_url == NULL || *base_url == '\0')
        base_url = "http://127.0.0.1:8080";
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--url") == 0) {
        base_url = argv[i + 1];
        i += 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("cairn %s\n", CAIRN_VERSION);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(cmd, "put") == 0)
        rc = cmd_put(argc - i, argv + i);
    else if (strcmp(cmd, "get") == 0)
        rc = cmd_get(argc - i, argv + i);
    else if (strcmp(cmd, "head") == 0)
        rc = cmd_head(argc - i, argv + i);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status();
    else {
        fprintf(stderr, "cairn: unknown command '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
