/*
 * checksum.h - streaming checksums of S3 "flexible checksums".
 *
 * S3 clients send a checksum of the body, either as a header
 * (x-amz-checksum-<alg>: <base64>) or as an aws-chunked trailer, and S3
 * answers BadDigest when it does not match. The algorithms are CRC32 (the
 * zlib one), CRC32C (Castagnoli), CRC64NVME, SHA1 and SHA256. The value on
 * the wire is always the base64 of the digest, big-endian for the CRCs:
 * CRC32 of "hello" is 0x3610a686, sent as base64(36 10 a6 86) = "NhCmhg==".
 *
 * Use:
 *
 *     cksum_ctx c;
 *     char b64[CKSUM_B64_SIZE];
 *     cksum_alg alg = cksum_from_name("x-amz-checksum-crc32");  // CKSUM_CRC32
 *     rc = cksum_init(&c, alg);
 *     rc = cksum_update(&c, piece, len);                        // as often as needed
 *     rc = cksum_final(&c, b64);                                // "NhCmhg=="
 *     rc = cksum_compare(alg, b64, received);                   // CKSUM_ERR_MISMATCH?
 *
 * cksum_final() releases what cksum_init() took; cksum_free() does it for a
 * computation abandoned half way (safe to call after cksum_final() too).
 *
 * The raw CRC functions follow zlib's crc32() convention: start with 0, pass
 * the previous result to continue, e.g. cksum_crc32(cksum_crc32(0, a, n), b, m)
 * is the CRC32 of a followed by b.
 *
 * Functions returning int return CKSUM_OK (0) or a CKSUM_ERR_* code.
 */
#ifndef CAIRN_CHECKSUM_H
#define CAIRN_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define CKSUM_MAX_DIGEST 32 /* SHA256; CRC32/CRC32C 4, CRC64NVME 8, SHA1 20 */
#define CKSUM_B64_SIZE 45   /* base64 of CKSUM_MAX_DIGEST bytes + NUL */
#define CKSUM_HEADER_PREFIX "x-amz-checksum-"

typedef enum cksum_alg {
    CKSUM_NONE = 0, /* unknown name; also "no checksum" */
    CKSUM_CRC32,
    CKSUM_CRC32C,
    CKSUM_CRC64NVME,
    CKSUM_SHA1,
    CKSUM_SHA256
} cksum_alg;

typedef enum cksum_status {
    CKSUM_OK = 0,
    CKSUM_ERR_NOMEM,       /* OpenSSL could not allocate */
    CKSUM_ERR_INVALID_ARG, /* unknown algorithm, or a context not initialized */
    CKSUM_ERR_MALFORMED,   /* received value is not base64 of the algorithm's size */
    CKSUM_ERR_MISMATCH,    /* received value differs from the computed one */
    CKSUM_ERR_COUNT
} cksum_status;

struct evp_md_ctx_st;

typedef struct cksum_ctx {
    cksum_alg alg;
    uint64_t crc;             /* running CRC (zlib convention) */
    struct evp_md_ctx_st *md; /* running SHA1/SHA256, NULL for the CRCs */
} cksum_ctx;

/* The algorithm named by an x-amz-checksum-<alg> header name, a trailer
 * name, or a bare name as in x-amz-checksum-algorithm / x-amz-sdk-checksum-
 * algorithm ("crc32", "CRC32C", "x-amz-checksum-crc64nvme", ...). Any case.
 * CKSUM_NONE when unknown, e.g. for x-amz-checksum-type or -mode. */
cksum_alg cksum_from_name(const char *name);

/* "crc32", "crc32c", "crc64nvme", "sha1", "sha256"; NULL for CKSUM_NONE. */
const char *cksum_name(cksum_alg alg);
/* "CRC32", ... as S3 writes it in x-amz-checksum-algorithm and XML. */
const char *cksum_upper_name(cksum_alg alg);
/* "x-amz-checksum-crc32", ... */
const char *cksum_header(cksum_alg alg);
/* Digest size in bytes; 0 for CKSUM_NONE. */
size_t cksum_digest_size(cksum_alg alg);

int cksum_init(cksum_ctx *c, cksum_alg alg);
int cksum_update(cksum_ctx *c, const void *data, size_t len);
/* The raw digest (big-endian for the CRCs) into out, its size into *len. */
int cksum_final_raw(cksum_ctx *c, unsigned char out[CKSUM_MAX_DIGEST], size_t *len);
/* The base64 of the digest, NUL-terminated, as S3 sends it. */
int cksum_final(cksum_ctx *c, char out[CKSUM_B64_SIZE]);
void cksum_free(cksum_ctx *c);

/* Checks that received is the base64 of a digest of alg's size
 * (CKSUM_ERR_MALFORMED), then that it equals computed (CKSUM_ERR_MISMATCH). */
int cksum_compare(cksum_alg alg, const char *computed, const char *received);
/* Only the first check of cksum_compare(). */
int cksum_valid(cksum_alg alg, const char *received);

/* Base64 of len bytes into out (outsize >= 4 * ((len + 2) / 3) + 1). */
int cksum_base64(const unsigned char *in, size_t len, char *out, size_t outsize);

/* The CRCs, zlib convention (see above). */
uint32_t cksum_crc32(uint32_t crc, const void *data, size_t len);
uint32_t cksum_crc32c(uint32_t crc, const void *data, size_t len);
uint64_t cksum_crc64nvme(uint64_t crc, const void *data, size_t len);

/* The two CRC32C implementations behind cksum_crc32c(), for tests and
 * benchmarks. cksum_crc32c_hw() must only be called when
 * cksum_crc32c_hw_available() says so. */
uint32_t cksum_crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t cksum_crc32c_hw(uint32_t crc, const void *data, size_t len);
int cksum_crc32c_hw_available(void);

/* OpenSSL's digests, fetched once: OpenSSL 3 looks an algorithm up by name,
 * under a lock, on every use of EVP_sha256() and its kind (about 0.2 us a
 * hash alone, 1 us with two threads hashing).  Use these with every
 * EVP_Digest* and HMAC call. */
const EVP_MD *cksum_md_sha256(void);
const EVP_MD *cksum_md_sha1(void);
const EVP_MD *cksum_md_md5(void);

/* The S3 error code and HTTP status for a CKSUM_ERR_* code: BadDigest (400)
 * for a mismatch, InvalidRequest (400) for a malformed value. */
const char *cksum_s3_error(int err, int *http_status);
const char *cksum_strerror(int err);

#endif
