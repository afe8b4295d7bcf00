/*
 * checksum.c - CRC32, CRC32C, CRC64NVME, SHA1 and SHA256 for S3 checksums.
 *
 * Design
 * ------
 * All three CRCs are "reflected" CRCs (least significant bit first), so one
 * scheme serves them all: slicing-by-8. Table k maps a byte to the CRC of
 * that byte followed by k zero bytes, which lets the loop fold 8 input bytes
 * per step with 8 independent table lookups instead of 8 dependent ones
 * (about 2 GB/s instead of 400 MB/s). The tables (3 x 8 x 256 entries, 40 KB)
 * are computed once, on first use, under pthread_once.
 *
 *   CRC32      polynomial 0x04C11DB7, reflected 0xEDB88320 (zlib, Ethernet)
 *   CRC32C     polynomial 0x1EDC6F41, reflected 0x82F63B78 (Castagnoli)
 *   CRC64NVME  polynomial 0xAD93D23594C93659, reflected 0x9A6C9329AC4BC9B5
 *
 * All three start from all ones and end xored with all ones; that is done
 * inside the functions (zlib convention), so a caller keeps one plain value
 * per stream and starts it at 0.
 *
 * CRC32C has an instruction of its own on x86-64 with SSE4.2 (crc32, 8 bytes
 * per instruction, several GB/s). It is compiled with a target attribute, so
 * the rest of the file needs no -msse4.2, and chosen at run time with
 * __builtin_cpu_supports(); other CPUs use the table.
 *
 * The 8-byte loads use memcpy (no alignment assumptions) and assume a
 * little-endian CPU; big-endian CPUs take the byte-at-a-time loop.
 *
 * SHA1 and SHA256 are OpenSSL's EVP digests, fetched once (cksum_md_*);
 * base64 is EVP_EncodeBlock.
 */
#include "checksum.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define CRC32_POLY 0xEDB88320u
#define CRC32C_POLY 0x82F63B78u
#define CRC64NVME_POLY 0x9A6C9329AC4BC9B5ull

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CKSUM_LITTLE_ENDIAN 1
#else
#define CKSUM_LITTLE_ENDIAN 0
#endif

static uint32_t crc32_table[8][256];
static uint32_t crc32c_table[8][256];
static uint64_t crc64_table[8][256];
static int crc32c_have_hw;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* ---- Tables ---------------------------------------------------------------------------- */

static void cksum_table32(uint32_t t[8][256], uint32_t poly)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        t[0][n] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int n = 0; n < 256; n++)
            t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xff];
}

static void cksum_table64(uint64_t t[8][256], uint64_t poly)
{
    for (uint64_t n = 0; n < 256; n++) {
        uint64_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        t[0][n] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int n = 0; n < 256; n++)
            t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xff];
}

static void cksum_setup(void)
{
    cksum_table32(crc32_table, CRC32_POLY);
    cksum_table32(crc32c_table, CRC32C_POLY);
    cksum_table64(crc64_table, CRC64NVME_POLY);
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static void cksum_once(void)
{
    pthread_once(&tables_once, cksum_setup);
}

/* ---- Slicing-by-8 -------------------------------------------------------------------------- */

static uint32_t cksum_load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t cksum_load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The raw reflected CRC (no inversion) of len bytes with one table set. */
static uint32_t cksum_slice32(const uint32_t t[8][256], uint32_t crc, const unsigned char *p,
                              size_t len)
{
    if (CKSUM_LITTLE_ENDIAN) {
        while (len >= 8) {
            uint32_t lo = cksum_load32(p) ^ crc;
            uint32_t hi = cksum_load32(p + 4);
            crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
                  t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
                  t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
            p += 8;
            len -= 8;
        }
    }
    while (len-- > 0)
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    return crc;
}

static uint64_t cksum_slice64(const uint64_t t[8][256], uint64_t crc, const unsigned char *p,
                              size_t len)
{
    if (CKSUM_LITTLE_ENDIAN) {
        while (len >= 8) {
            uint64_t v = cksum_load64(p) ^ crc;
            crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
                  t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
                  t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
            p += 8;
            len -= 8;
        }
    }
    while (len-- > 0)
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    return crc;
}

/* ---- The CRCs -------------------------------------------------------------------------------- */

uint32_t cksum_crc32(uint32_t crc, const void *data, size_t len)
{
    cksum_once();
    return ~cksum_slice32(crc32_table, ~crc, data, len);
}

uint32_t cksum_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    cksum_once();
    return ~cksum_slice32(crc32c_table, ~crc, data, len);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
cksum_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = ~crc;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        c = _mm_crc32_u64(c, cksum_load64(p));
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

int cksum_crc32c_hw_available(void)
{
    cksum_once();
    return crc32c_have_hw;
}

uint32_t cksum_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
#if defined(__x86_64__)
    if (cksum_crc32c_hw_available())
        return cksum_crc32c_sse42(crc, data, len);
#endif
    return cksum_crc32c_sw(crc, data, len);
}

uint32_t cksum_crc32c(uint32_t crc, const void *data, size_t len)
{
    return cksum_crc32c_hw(crc, data, len);
}

uint64_t cksum_crc64nvme(uint64_t crc, const void *data, size_t len)
{
    cksum_once();
    return ~cksum_slice64(crc64_table, ~crc, data, len);
}

/* ---- Names ------------------------------------------------------------------------------------
 */

static const struct {
    cksum_alg alg;
    const char *name, *upper, *header;
    size_t size;
} cksum_algs[] = {
    {CKSUM_CRC32, "crc32", "CRC32", CKSUM_HEADER_PREFIX "crc32", 4},
    {CKSUM_CRC32C, "crc32c", "CRC32C", CKSUM_HEADER_PREFIX "crc32c", 4},
    {CKSUM_CRC64NVME, "crc64nvme", "CRC64NVME", CKSUM_HEADER_PREFIX "crc64nvme", 8},
    {CKSUM_SHA1, "sha1", "SHA1", CKSUM_HEADER_PREFIX "sha1", 20},
    {CKSUM_SHA256, "sha256", "SHA256", CKSUM_HEADER_PREFIX "sha256", 32},
};

#define CKSUM_NALGS (sizeof(cksum_algs) / sizeof(cksum_algs[0]))

static int cksum_index(cksum_alg alg)
{
    for (size_t i = 0; i < CKSUM_NALGS; i++)
        if (cksum_algs[i].alg == alg)
            return (int)i;
    return -1;
}

cksum_alg cksum_from_name(const char *name)
{
    size_t plen = strlen(CKSUM_HEADER_PREFIX);

    if (name == NULL)
        return CKSUM_NONE;
    if (strncasecmp(name, CKSUM_HEADER_PREFIX, plen) == 0)
        name += plen;
    for (size_t i = 0; i < CKSUM_NALGS; i++)
        if (strcasecmp(name, cksum_algs[i].name) == 0)
            return cksum_algs[i].alg;
    return CKSUM_NONE;
}

const char *cksum_name(cksum_alg alg)
{
    int i = cksum_index(alg);
    return i < 0 ? NULL : cksum_algs[i].name;
}

const char *cksum_upper_name(cksum_alg alg)
{
    int i = cksum_index(alg);
    return i < 0 ? NULL : cksum_algs[i].upper;
}

const char *cksum_header(cksum_alg alg)
{
    int i = cksum_index(alg);
    return i < 0 ? NULL : cksum_algs[i].header;
}

size_t cksum_digest_size(cksum_alg alg)
{
    int i = cksum_index(alg);
    return i < 0 ? 0 : cksum_algs[i].size;
}

/* ---- Streaming ---------------------------------------------------------------------------------
 */

static EVP_MD *md_sha256, *md_sha1, *md_md5;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
}

/* (where a fetch failed, the looked-up kind still works) */
const EVP_MD *cksum_md_sha256(void)
{
    pthread_once(&md_once, md_fetch);
    return md_sha256 ? md_sha256 : EVP_sha256();
}

const EVP_MD *cksum_md_sha1(void)
{
    pthread_once(&md_once, md_fetch);
    return md_sha1 ? md_sha1 : EVP_sha1();
}

const EVP_MD *cksum_md_md5(void)
{
    pthread_once(&md_once, md_fetch);
    return md_md5 ? md_md5 : EVP_md5();
}

static const EVP_MD *cksum_md(cksum_alg alg)
{
    if (alg == CKSUM_SHA1)
        return cksum_md_sha1();
    if (alg == CKSUM_SHA256)
        return cksum_md_sha256();
    return NULL;
}

int cksum_init(cksum_ctx *c, cksum_alg alg)
{
    const EVP_MD *md = cksum_md(alg);

    memset(c, 0, sizeof(*c));
    if (cksum_index(alg) < 0)
        return CKSUM_ERR_INVALID_ARG;
    c->alg = alg;
    if (md == NULL)
        return CKSUM_OK;
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || !EVP_DigestInit_ex(c->md, md, NULL)) {
        cksum_free(c);
        return CKSUM_ERR_NOMEM;
    }
    return CKSUM_OK;
}

int cksum_update(cksum_ctx *c, const void *data, size_t len)
{
    switch (c->alg) {
    case CKSUM_CRC32:
        c->crc = cksum_crc32((uint32_t)c->crc, data, len);
        return CKSUM_OK;
    case CKSUM_CRC32C:
        c->crc = cksum_crc32c((uint32_t)c->crc, data, len);
        return CKSUM_OK;
    case CKSUM_CRC64NVME:
        c->crc = cksum_crc64nvme(c->crc, data, len);
        return CKSUM_OK;
    case CKSUM_SHA1:
    case CKSUM_SHA256:
        if (c->md == NULL)
            return CKSUM_ERR_INVALID_ARG;
        if (len > 0 && !EVP_DigestUpdate(c->md, data, len))
            return CKSUM_ERR_NOMEM;
        return CKSUM_OK;
    default:
        return CKSUM_ERR_INVALID_ARG;
    }
}

static void cksum_put_be(uint64_t v, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)(v >> (8 * (len - 1 - i)));
}

int cksum_final_raw(cksum_ctx *c, unsigned char out[CKSUM_MAX_DIGEST], size_t *len)
{
    unsigned int mdlen = 0;
    int ok;

    *len = cksum_digest_size(c->alg);
    if (*len == 0)
        return CKSUM_ERR_INVALID_ARG;
    if (c->alg != CKSUM_SHA1 && c->alg != CKSUM_SHA256) {
        cksum_put_be(c->crc, out, *len);
        return CKSUM_OK;
    }
    if (c->md == NULL)
        return CKSUM_ERR_INVALID_ARG;
    ok = EVP_DigestFinal_ex(c->md, out, &mdlen);
    cksum_free(c);
    if (!ok || mdlen != *len)
        return CKSUM_ERR_NOMEM;
    return CKSUM_OK;
}

int cksum_final(cksum_ctx *c, char out[CKSUM_B64_SIZE])
{
    unsigned char digest[CKSUM_MAX_DIGEST];
    size_t len;
    int rc = cksum_final_raw(c, digest, &len);

    out[0] = '\0';
    if (rc != CKSUM_OK)
        return rc;
    return cksum_base64(digest, len, out, CKSUM_B64_SIZE);
}

void cksum_free(cksum_ctx *c)
{
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
}

/* ---- Base64 and comparison ------------------------------------------------------------------- */

int cksum_base64(const unsigned char *in, size_t len, char *out, size_t outsize)
{
    if (len > (size_t)(INT_MAX / 4) * 3 || outsize < 4 * ((len + 2) / 3) + 1)
        return CKSUM_ERR_INVALID_ARG;
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return CKSUM_OK;
}

static int cksum_is_b64(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

int cksum_valid(cksum_alg alg, const char *received)
{
    size_t size = cksum_digest_size(alg);
    size_t want = 4 * ((size + 2) / 3);
    size_t pad = (3 - size % 3) % 3;

    if (size == 0)
        return CKSUM_ERR_INVALID_ARG;
    if (received == NULL || strlen(received) != want)
        return CKSUM_ERR_MALFORMED;
    for (size_t i = 0; i < want; i++) {
        int ok = i < want - pad ? cksum_is_b64((unsigned char)received[i]) : received[i] == '=';
        if (!ok)
            return CKSUM_ERR_MALFORMED;
    }
    return CKSUM_OK;
}

int cksum_compare(cksum_alg alg, const char *computed, const char *received)
{
    int rc = cksum_valid(alg, received);

    if (rc != CKSUM_OK)
        return rc;
    if (strlen(computed) != strlen(received) ||
        CRYPTO_memcmp(computed, received, strlen(received)) != 0)
        return CKSUM_ERR_MISMATCH;
    return CKSUM_OK;
}

/* ---- Errors ---------------------------------------------------------------------------------- */

const char *cksum_s3_error(int err, int *http_status)
{
    int status = 400;
    const char *code = "InvalidRequest";

    if (err == CKSUM_ERR_MISMATCH)
        code = "BadDigest";
    else if (err == CKSUM_ERR_NOMEM || err == CKSUM_ERR_INVALID_ARG) {
        code = "InternalError";
        status = 500;
    }
    if (http_status != NULL)
        *http_status = status;
    return code;
}

const char *cksum_strerror(int err)
{
    switch (err) {
    case CKSUM_OK:
        return "ok";
    case CKSUM_ERR_NOMEM:
        return "out of memory";
    case CKSUM_ERR_INVALID_ARG:
        return "unknown checksum algorithm or unusable checksum state";
    case CKSUM_ERR_MALFORMED:
        return "the checksum value is not the base64 of a digest of the algorithm's size";
    case CKSUM_ERR_MISMATCH:
        return "the checksum you specified did not match the calculated checksum";
    default:
        return "unknown checksum error";
    }
}
