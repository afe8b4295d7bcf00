/*
 * test_checksum.c - unit tests of common/checksum.c.
 *
 * Known values (the CRC catalogue check values of "123456789", and base64
 * digests computed independently with Python's zlib, hashlib and a bitwise
 * CRC), the fast CRC code against a bit-at-a-time reference written here,
 * both CRC32C code paths (SSE4.2 and table) on many lengths and alignments,
 * incremental updates split at every offset, names, and the comparison of
 * received values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/checksum.h"

/* ---- Helpers ----------------------------------------------------------------------------- */

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static unsigned char *random_bytes(size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)rng();
    return b;
}

/* Bit-at-a-time reflected CRC, init and xorout all ones: the definition. */
static uint64_t ref_crc(uint64_t poly, uint64_t mask, const unsigned char *p, size_t n)
{
    uint64_t c = mask;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
    }
    return (c ^ mask) & mask;
}

static uint32_t ref_crc32(const unsigned char *p, size_t n)
{
    return (uint32_t)ref_crc(0xEDB88320u, 0xFFFFFFFFu, p, n);
}

static uint32_t ref_crc32c(const unsigned char *p, size_t n)
{
    return (uint32_t)ref_crc(0x82F63B78u, 0xFFFFFFFFu, p, n);
}

static uint64_t ref_crc64nvme(const unsigned char *p, size_t n)
{
    return ref_crc(0x9A6C9329AC4BC9B5ull, ~0ull, p, n);
}

static void digest_b64(cksum_alg alg, const void *data, size_t len, char out[CKSUM_B64_SIZE])
{
    cksum_ctx c;
    assert_int_equal(cksum_init(&c, alg), CKSUM_OK);
    assert_int_equal(cksum_update(&c, data, len), CKSUM_OK);
    assert_int_equal(cksum_final(&c, out), CKSUM_OK);
}

static const cksum_alg all_algs[] = {CKSUM_CRC32, CKSUM_CRC32C, CKSUM_CRC64NVME, CKSUM_SHA1,
                                     CKSUM_SHA256};
#define NALGS (sizeof(all_algs) / sizeof(all_algs[0]))

/* ---- Tests ------------------------------------------------------------------------------- */

static void test_check_values(void **state)
{
    (void)state;
    assert_int_equal(cksum_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(cksum_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(cksum_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(cksum_crc32c_hw(0, "123456789", 9), 0xE3069283u);
    assert_true(cksum_crc64nvme(0, "123456789", 9) == 0xAE8B14860A799888ull);
    assert_int_equal(cksum_crc32(0, "", 0), 0);
    assert_int_equal(cksum_crc32c(0, NULL, 0), 0);
    assert_true(cksum_crc64nvme(0, "", 0) == 0);
    /* "hello" (an S3 documentation favourite) */
    assert_int_equal(cksum_crc32(0, "hello", 5), 0x3610a686u);
    assert_int_equal(cksum_crc32c(0, "hello", 5), 0x9a71bb4cu);
    assert_true(cksum_crc64nvme(0, "hello", 5) == 0x3377857006524257ull);
}

/* Values from Python: base64.b64encode(zlib.crc32(s).to_bytes(4, "big")),
 * hashlib, and a bitwise CRC32C / CRC64NVME. */
static void test_known_base64(void **state)
{
    static const struct {
        cksum_alg alg;
        const char *in, *b64;
    } v[] = {
        {CKSUM_CRC32, "", "AAAAAA=="},
        {CKSUM_CRC32, "hello", "NhCmhg=="},
        {CKSUM_CRC32, "123456789", "y/Q5Jg=="},
        {CKSUM_CRC32, "The quick brown fox jumps over the lazy dog", "QU+jOQ=="},
        {CKSUM_CRC32C, "", "AAAAAA=="},
        {CKSUM_CRC32C, "hello", "mnG7TA=="},
        {CKSUM_CRC32C, "123456789", "4waSgw=="},
        {CKSUM_CRC32C, "The quick brown fox jumps over the lazy dog", "ImIEBA=="},
        {CKSUM_CRC64NVME, "", "AAAAAAAAAAA="},
        {CKSUM_CRC64NVME, "hello", "M3eFcAZSQlc="},
        {CKSUM_CRC64NVME, "123456789", "rosUhgp5mIg="},
        {CKSUM_CRC64NVME, "The quick brown fox jumps over the lazy dog", "12xUBUlUwUM="},
        {CKSUM_SHA1, "", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="},
        {CKSUM_SHA1, "hello", "qvTGHdzF6KLavt4PO0gs2a6pQ00="},
        {CKSUM_SHA1, "123456789", "98O8HYCOBHMq32eZZczDTKeuNEE="},
        {CKSUM_SHA256, "", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
        {CKSUM_SHA256, "hello", "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="},
        {CKSUM_SHA256, "123456789", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
    };
    char out[CKSUM_B64_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        digest_b64(v[i].alg, v[i].in, strlen(v[i].in), out);
        assert_string_equal(out, v[i].b64);
        assert_int_equal(cksum_compare(v[i].alg, out, v[i].b64), CKSUM_OK);
    }
}

/* bytes(range(256)) * 4 + b"abc": 1027 bytes, through the 8-byte loop and a
 * 3-byte tail. */
static void test_known_long(void **state)
{
    unsigned char buf[1027];
    char out[CKSUM_B64_SIZE];

    (void)state;
    for (size_t i = 0; i < 1024; i++)
        buf[i] = (unsigned char)i;
    memcpy(buf + 1024, "abc", 3);
    digest_b64(CKSUM_CRC32, buf, sizeof(buf), out);
    assert_string_equal(out, "wvqipg==");
    digest_b64(CKSUM_CRC32C, buf, sizeof(buf), out);
    assert_string_equal(out, "CEp4dw==");
    digest_b64(CKSUM_CRC64NVME, buf, sizeof(buf), out);
    assert_string_equal(out, "wh/AyUiXLCA=");
    digest_b64(CKSUM_SHA1, buf, sizeof(buf), out);
    assert_string_equal(out, "eZ9aDcYNeubE729d1fax3giQGxQ=");
    digest_b64(CKSUM_SHA256, buf, sizeof(buf), out);
    assert_string_equal(out, "L7FoZzo0TQk053jfosCoUaJS4yBUAz/smEuYg43yB2E=");
}

/* The trailer of the S3 documentation's aws-chunked example with trailing
 * headers: x-amz-checksum-crc32c:sOO8/Q== for 66560 bytes of 'a'. */
static void test_s3_example_trailer(void **state)
{
    char *body = malloc(66560);
    char out[CKSUM_B64_SIZE];
    cksum_ctx c;

    (void)state;
    assert_non_null(body);
    memset(body, 'a', 66560);
    assert_int_equal(cksum_init(&c, CKSUM_CRC32C), CKSUM_OK);
    assert_int_equal(cksum_update(&c, body, 65536), CKSUM_OK);
    assert_int_equal(cksum_update(&c, body, 1024), CKSUM_OK);
    assert_int_equal(cksum_final(&c, out), CKSUM_OK);
    assert_string_equal(out, "sOO8/Q==");
    assert_int_equal(cksum_compare(CKSUM_CRC32C, out, "sOO8/Q=="), CKSUM_OK);
    free(body);
}

/* The sliced tables against the bit-at-a-time definition, every length up
 * to 300 and every alignment up to 8. */
static void test_against_reference(void **state)
{
    unsigned char *buf = random_bytes(320);

    (void)state;
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; n <= 300; n++) {
            const unsigned char *p = buf + off;
            assert_int_equal(cksum_crc32(0, p, n), ref_crc32(p, n));
            assert_int_equal(cksum_crc32c_sw(0, p, n), ref_crc32c(p, n));
            assert_true(cksum_crc64nvme(0, p, n) == ref_crc64nvme(p, n));
        }
    }
    free(buf);
}

/* The SSE4.2 path and the table path agree on many lengths and alignments,
 * and on a large buffer. */
static void test_crc32c_paths(void **state)
{
    size_t big = (1u << 20) + 13;
    unsigned char *buf = random_bytes(big + 64);

    (void)state;
    if (!cksum_crc32c_hw_available())
        print_message("[   INFO   ] no SSE4.2: the hardware path is the table path\n");
    for (size_t off = 0; off < 16; off++) {
        for (size_t n = 0; n < 1100; n += (n < 80 ? 1 : 37)) {
            uint32_t seed = rng();
            assert_int_equal(cksum_crc32c_hw(0, buf + off, n), cksum_crc32c_sw(0, buf + off, n));
            assert_int_equal(cksum_crc32c_hw(seed, buf + off, n),
                             cksum_crc32c_sw(seed, buf + off, n));
        }
    }
    for (size_t off = 0; off < 8; off++)
        assert_int_equal(cksum_crc32c_hw(0, buf + off, big), cksum_crc32c_sw(0, buf + off, big));
    assert_int_equal(cksum_crc32c(0, buf, 4096), ref_crc32c(buf, 4096));
    free(buf);
}

/* Splitting the input anywhere, in two or three pieces or byte by byte,
 * gives the one-shot digest, for every algorithm. */
static void test_incremental(void **state)
{
    size_t n = 301;
    unsigned char *buf = random_bytes(n);

    (void)state;
    for (size_t a = 0; a < NALGS; a++) {
        char whole[CKSUM_B64_SIZE], part[CKSUM_B64_SIZE];
        cksum_ctx c;

        digest_b64(all_algs[a], buf, n, whole);
        for (size_t cut = 0; cut <= n; cut++) {
            size_t cut2 = cut + (n - cut) / 3;
            assert_int_equal(cksum_init(&c, all_algs[a]), CKSUM_OK);
            assert_int_equal(cksum_update(&c, buf, cut), CKSUM_OK);
            assert_int_equal(cksum_update(&c, buf + cut, cut2 - cut), CKSUM_OK);
            assert_int_equal(cksum_update(&c, buf + cut2, n - cut2), CKSUM_OK);
            assert_int_equal(cksum_final(&c, part), CKSUM_OK);
            assert_string_equal(part, whole);
        }
        assert_int_equal(cksum_init(&c, all_algs[a]), CKSUM_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(cksum_update(&c, buf + i, 1), CKSUM_OK);
        assert_int_equal(cksum_final(&c, part), CKSUM_OK);
        assert_string_equal(part, whole);
    }
    /* zlib convention of the raw functions */
    assert_int_equal(cksum_crc32(cksum_crc32(0, buf, 100), buf + 100, n - 100),
                     cksum_crc32(0, buf, n));
    assert_true(cksum_crc64nvme(cksum_crc64nvme(0, buf, 7), buf + 7, n - 7) ==
                cksum_crc64nvme(0, buf, n));
    free(buf);
}

static void test_raw_digest(void **state)
{
    unsigned char d[CKSUM_MAX_DIGEST];
    size_t len = 0;
    cksum_ctx c;

    (void)state;
    assert_int_equal(cksum_init(&c, CKSUM_CRC32), CKSUM_OK);
    assert_int_equal(cksum_update(&c, "hello", 5), CKSUM_OK);
    assert_int_equal(cksum_final_raw(&c, d, &len), CKSUM_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(d, "\x36\x10\xa6\x86", 4);

    assert_int_equal(cksum_init(&c, CKSUM_CRC64NVME), CKSUM_OK);
    assert_int_equal(cksum_update(&c, "123456789", 9), CKSUM_OK);
    assert_int_equal(cksum_final_raw(&c, d, &len), CKSUM_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(d, "\xae\x8b\x14\x86\x0a\x79\x98\x88", 8);

    assert_int_equal(cksum_init(&c, CKSUM_SHA256), CKSUM_OK);
    assert_int_equal(cksum_final_raw(&c, d, &len), CKSUM_OK);
    assert_int_equal(len, 32);
    assert_memory_equal(d, "\xe3\xb0\xc4\x42\x98\xfc\x1c\x14", 8);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(cksum_from_name("crc32"), CKSUM_CRC32);
    assert_int_equal(cksum_from_name("CRC32"), CKSUM_CRC32);
    assert_int_equal(cksum_from_name("x-amz-checksum-crc32"), CKSUM_CRC32);
    assert_int_equal(cksum_from_name("X-Amz-Checksum-CRC32C"), CKSUM_CRC32C);
    assert_int_equal(cksum_from_name("x-amz-checksum-crc64nvme"), CKSUM_CRC64NVME);
    assert_int_equal(cksum_from_name("CRC64NVME"), CKSUM_CRC64NVME);
    assert_int_equal(cksum_from_name("x-amz-checksum-sha1"), CKSUM_SHA1);
    assert_int_equal(cksum_from_name("Sha256"), CKSUM_SHA256);
    assert_int_equal(cksum_from_name("x-amz-checksum-type"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("x-amz-checksum-mode"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("x-amz-checksum-algorithm"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("x-amz-checksum-"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("md5"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("crc32cc"), CKSUM_NONE);
    assert_int_equal(cksum_from_name("crc"), CKSUM_NONE);
    assert_int_equal(cksum_from_name(""), CKSUM_NONE);
    assert_int_equal(cksum_from_name(NULL), CKSUM_NONE);

    for (size_t a = 0; a < NALGS; a++) {
        assert_int_equal(cksum_from_name(cksum_name(all_algs[a])), all_algs[a]);
        assert_int_equal(cksum_from_name(cksum_header(all_algs[a])), all_algs[a]);
        assert_int_equal(cksum_from_name(cksum_upper_name(all_algs[a])), all_algs[a]);
    }
    assert_string_equal(cksum_header(CKSUM_CRC64NVME), "x-amz-checksum-crc64nvme");
    assert_string_equal(cksum_upper_name(CKSUM_CRC32C), "CRC32C");
    assert_null(cksum_name(CKSUM_NONE));
    assert_int_equal(cksum_digest_size(CKSUM_CRC32), 4);
    assert_int_equal(cksum_digest_size(CKSUM_CRC32C), 4);
    assert_int_equal(cksum_digest_size(CKSUM_CRC64NVME), 8);
    assert_int_equal(cksum_digest_size(CKSUM_SHA1), 20);
    assert_int_equal(cksum_digest_size(CKSUM_SHA256), 32);
    assert_int_equal(cksum_digest_size(CKSUM_NONE), 0);
}

static void test_compare(void **state)
{
    (void)state;
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCmhg=="), CKSUM_OK);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCmhw=="), CKSUM_ERR_MISMATCH);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "nhCmhg=="), CKSUM_ERR_MISMATCH);
    /* wrong length for the algorithm, bad characters, bad padding */
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCmhg="), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCmhg==="), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCm hg="), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhCmhgA="), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", "NhC=hg=="), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", ""), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC32, "NhCmhg==", NULL), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_CRC64NVME, "rosUhgp5mIg=", "NhCmhg=="),
                     CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_compare(CKSUM_SHA256, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                                   "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
                     CKSUM_OK);
    assert_int_equal(cksum_valid(CKSUM_SHA1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk="), CKSUM_OK);
    assert_int_equal(cksum_valid(CKSUM_SHA1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk"), CKSUM_ERR_MALFORMED);
    assert_int_equal(cksum_valid(CKSUM_NONE, "AAAAAA=="), CKSUM_ERR_INVALID_ARG);
}

static void test_base64(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(cksum_base64((const unsigned char *)"\x36\x10\xa6\x86", 4, out, sizeof(out)),
                     CKSUM_OK);
    assert_string_equal(out, "NhCmhg==");
    assert_int_equal(cksum_base64((const unsigned char *)"abc", 3, out, sizeof(out)), CKSUM_OK);
    assert_string_equal(out, "YWJj");
    assert_int_equal(cksum_base64((const unsigned char *)"", 0, out, sizeof(out)), CKSUM_OK);
    assert_string_equal(out, "");
    assert_int_equal(cksum_base64((const unsigned char *)"\x36\x10\xa6\x86", 4, out, 8),
                     CKSUM_ERR_INVALID_ARG);
}

static void test_misuse_and_errors(void **state)
{
    char out[CKSUM_B64_SIZE];
    int status = 0;
    cksum_ctx c;

    (void)state;
    assert_int_equal(cksum_init(&c, CKSUM_NONE), CKSUM_ERR_INVALID_ARG);
    assert_int_equal(cksum_update(&c, "x", 1), CKSUM_ERR_INVALID_ARG);
    assert_int_equal(cksum_final(&c, out), CKSUM_ERR_INVALID_ARG);
    assert_string_equal(out, "");
    cksum_free(&c);

    /* final releases the digest; using it again is refused, freeing is safe */
    assert_int_equal(cksum_init(&c, CKSUM_SHA1), CKSUM_OK);
    assert_int_equal(cksum_final(&c, out), CKSUM_OK);
    assert_int_equal(cksum_update(&c, "x", 1), CKSUM_ERR_INVALID_ARG);
    assert_int_equal(cksum_final(&c, out), CKSUM_ERR_INVALID_ARG);
    cksum_free(&c);
    cksum_free(&c);

    /* abandoned half way */
    assert_int_equal(cksum_init(&c, CKSUM_SHA256), CKSUM_OK);
    assert_int_equal(cksum_update(&c, "x", 1), CKSUM_OK);
    cksum_free(&c);

    assert_string_equal(cksum_s3_error(CKSUM_ERR_MISMATCH, &status), "BadDigest");
    assert_int_equal(status, 400);
    assert_string_equal(cksum_s3_error(CKSUM_ERR_MALFORMED, &status), "InvalidRequest");
    assert_int_equal(status, 400);
    assert_string_equal(cksum_s3_error(CKSUM_ERR_NOMEM, &status), "InternalError");
    assert_int_equal(status, 500);
    for (int e = 0; e <= CKSUM_ERR_COUNT; e++)
        assert_non_null(cksum_strerror(e));
    assert_string_not_equal(cksum_strerror(CKSUM_ERR_MISMATCH),
                            cksum_strerror(CKSUM_ERR_MALFORMED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_known_base64),
        cmocka_unit_test(test_known_long),
        cmocka_unit_test(test_s3_example_trailer),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_crc32c_paths),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_raw_digest),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_misuse_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
