/*
 * s3_body.c - request bodies of PutObject and UploadPart: how they travel
 * (plain, or aws-chunked in its three forms, over Content-Length or HTTP
 * chunked) and what they must match (Content-MD5, one flexible checksum from
 * a header or a trailer, a hex x-amz-content-sha256).
 *
 * Every check that can be made before the body is made before it, and the
 * error is answered at once.  The rest is checked when the body has ended and
 * before anything becomes visible: a body that fails any check stores
 * nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../common/util.h"
#include "s3.h"

typedef struct amz_scan {
    int count;
    cksum_alg alg;
    const char *value;
} amz_scan;

static enum MHD_Result find_checksum_header(void *cls, enum MHD_ValueKind kind, const char *k,
                                            const char *v)
{
    (void)kind;
    amz_scan *a = cls;
    if (strncasecmp(k, CKSUM_HEADER_PREFIX, strlen(CKSUM_HEADER_PREFIX)) != 0)
        return MHD_YES;
    cksum_alg alg = cksum_from_name(k);
    if (alg == CKSUM_NONE)
        return MHD_YES; /* x-amz-checksum-type, -mode and friends */
    a->count++;
    a->alg = alg;
    a->value = v ? v : "";
    return MHD_YES;
}

static int decode_md5(const char *b64, uint8_t out[16])
{
    uint8_t tmp[32];
    size_t n = strlen(b64);
    if (n != 24 || b64[22] != '=' || b64[23] != '=')
        return -1;
    if (EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)n) != 18)
        return -1;
    memcpy(out, tmp, 16);
    return 0;
}

int s3_body_start(request *r, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    const char *sha = http_header(r, "x-amz-content-sha256");
    const char *md5 = http_header(r, "Content-MD5");
    if (md5) {
        if (decode_md5(md5, s->content_md5) != 0) {
            *ret = s3_error(r, 400, "InvalidDigest", "The Content-MD5 you specified was invalid.");
            return -1;
        }
        s->content_md5_set = 1;
    }
    if (sha && sigv4_payload_kind_of(sha) == SIGV4_PAYLOAD_HEX) {
        util_unhex(sha, 64, s->payload_sha256, 32);
        s->payload_sha256_set = 1;
    }

    /* one flexible checksum: a header with its value, or a declared trailer */
    amz_scan a = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, find_checksum_header, &a);
    const char *trailer = http_header(r, "x-amz-trailer");
    if (a.count > 1) {
        *ret = s3_error(r, 400, "InvalidRequest",
                        "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                        "not allowed.");
        return -1;
    }
    if (a.count == 1) {
        if (cksum_valid(a.alg, a.value) != CKSUM_OK) {
            *ret =
                s3_error(r, 400, "InvalidRequest", "Value for x-amz-checksum header is invalid.");
            return -1;
        }
        s->ck_alg = a.alg;
        snprintf(s->ck_expect, sizeof s->ck_expect, "%s", a.value);
    } else if (trailer && *trailer) {
        s->ck_alg = cksum_from_name(trailer);
        if (s->ck_alg == CKSUM_NONE) {
            *ret = s3_error(r, 400, "InvalidRequest",
                            "The value specified in the x-amz-trailer "
                            "header is not supported");
            return -1;
        }
    } else {
        const char *sdk = http_header(r, "x-amz-sdk-checksum-algorithm");
        s->ck_alg = sdk ? cksum_from_name(sdk) : CKSUM_NONE;
    }
    if (s->ck_alg != CKSUM_NONE && cksum_init(&s->ck, s->ck_alg) != CKSUM_OK) {
        *ret = s3_error(r, 500, "InternalError", "out of memory");
        return -1;
    }

    /* aws-chunked framing */
    int mode = sha ? awschunked_mode_of(sha) : AWSCHUNKED_INVALID;
    const char *ce = http_header(r, "Content-Encoding");
    if (mode == AWSCHUNKED_INVALID && ce && strcasestr(ce, "aws-chunked") && sha &&
        strncmp(sha, "STREAMING-", 10) == 0) {
        *ret = s3_error(r, 400, "InvalidArgument", "Unsupported x-amz-content-sha256 value.");
        return -1;
    }
    if (mode != AWSCHUNKED_INVALID) {
        sigv4_chunk *signer = NULL;
        if (mode != AWSCHUNKED_UNSIGNED_TRAILER && s->signature_checked) {
            if (sigv4_chunk_init(&s->signer, s->signing_key, s->auth.amz_date, s->auth.scope,
                                 s->auth.signature) != SIGV4_OK) {
                *ret = s3_error(r, 500, "InternalError", "out of memory");
                return -1;
            }
            s->signer_on = 1;
            signer = &s->signer;
        }
        /* without a verified request signature (authentication off) the chunks'
         * signatures cannot be checked either: the framing still is */
        int rc = signer || mode == AWSCHUNKED_UNSIGNED_TRAILER
                     ? awschunked_init(&s->chunked, mode, signer, trailer)
                     : awschunked_init_unverified(&s->chunked, mode, trailer);
        if (rc != AWSCHUNKED_OK) {
            int status;
            const char *code = awschunked_s3_error(rc, &status);
            *ret = s3_error(r, (unsigned)status, code, awschunked_strerror(rc));
            return -1;
        }
        s->chunked_on = 1;
    }
    return 0;
}

static int to_body(void *ctx, const char *data, size_t len)
{
    request *r = ctx;
    s3_req *s = r->fe;
    if (s->ck_alg != CKSUM_NONE)
        cksum_update(&s->ck, data, len);
    body_feed(&s->body, data, len);
    return 0;
}

void s3_body_feed(request *r, const char *data, size_t len)
{
    s3_req *s = r->fe;
    if (s->chunked_on)
        awschunked_feed(&s->chunked, data, len, to_body, r); /* errors are sticky */
    else
        to_body(r, data, len);
}

int s3_body_check(request *r, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    if (s->body.status == MHD_HTTP_CONTENT_TOO_LARGE) {
        *ret = s3_error(r, 400, "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed object size.");
        return -1;
    }
    if (s->body.status == MHD_HTTP_INSUFFICIENT_STORAGE) {
        *ret = s3_store_error(r, STORE_NOSPACE);
        return -1;
    }
    if (s->body.status != 0) {
        *ret = s3_error(r, s->body.status, "InternalError",
                        s->body.error ? s->body.error : "upload failed");
        return -1;
    }
    uint64_t got = body_size(&s->body);
    const char *want = http_header(r, "Content-Length");
    if (s->chunked_on) {
        int rc = awschunked_finish(&s->chunked);
        if (rc != AWSCHUNKED_OK) {
            int status;
            const char *code = awschunked_s3_error(rc, &status);
            *ret = s3_error(r, (unsigned)status, code, awschunked_strerror(rc));
            return -1;
        }
        want = http_header(r, "x-amz-decoded-content-length");
        const char *name, *value;
        if (awschunked_trailer_checksum(&s->chunked, &name, &value)) {
            cksum_alg alg = cksum_from_name(name);
            if (alg != s->ck_alg || s->ck_expect[0]) {
                *ret = s3_error(r, 400, "InvalidRequest",
                                "The checksum trailer does not match the declared algorithm.");
                return -1;
            }
            snprintf(s->ck_expect, sizeof s->ck_expect, "%s", value);
        }
    }
    if (want && strtoull(want, NULL, 10) != got) {
        *ret = s3_error(r, 400, "IncompleteBody",
                        "You did not provide the number of bytes specified by the Content-Length "
                        "HTTP header.");
        return -1;
    }
    if (s->ck_alg != CKSUM_NONE && http_header(r, "x-amz-trailer") && !s->ck_expect[0]) {
        *ret = s3_error(r, 400, "MalformedTrailerError",
                        "The request contained trailing data that was not well-formed or did not "
                        "conform to our published schema.");
        return -1;
    }
    return 0;
}

int s3_body_verify(request *r, const uint8_t md5[16], const uint8_t *sha256, enum MHD_Result *ret)
{
    s3_req *s = r->fe;
    if (s->content_md5_set && memcmp(s->content_md5, md5, 16) != 0) {
        *ret = s3_error(r, 400, "BadDigest",
                        "The Content-MD5 you specified did not match what we received.");
        return -1;
    }
    if (s->ck_alg != CKSUM_NONE) {
        char got[CKSUM_B64_SIZE];
        cksum_final(&s->ck, got);
        if (s->ck_expect[0] && cksum_compare(s->ck_alg, got, s->ck_expect) != CKSUM_OK) {
            char msg[128];
            snprintf(msg, sizeof msg, "The %s you specified did not match the calculated checksum.",
                     cksum_header(s->ck_alg));
            *ret = s3_error(r, 400, "BadDigest", msg);
            return -1;
        }
        snprintf(s->ck_value, sizeof s->ck_value, "%s", got);
    }
    if (sha256 && s->payload_sha256_set && memcmp(s->payload_sha256, sha256, 32) != 0) {
        *ret = s3_store_error(r, STORE_DIGEST_MISMATCH);
        return -1;
    }
    return 0;
}
